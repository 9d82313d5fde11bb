"""The `kontext-studio` command: the composition root and the only reader of the environment.

It turns flags and environment into `Settings`, starts the simulator when no key is configured,
builds the engine, and hands it to the browser studio or to one command (one `asyncio.run`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import NoReturn

# httpx imports its own command line (rich, click, pygments: about 0.1 s, a quarter of an edit's
# start) whenever those are installed, as Gradio's dependencies are. Nothing here runs httpx's
# command line, and every CLI run (each agent call) paid for it: an empty module in its place
# makes httpx fall back to its stub. Gradio still imports rich itself when the studio serves.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", types.ModuleType("httpx._main"))

from studio.runapi import tls

# The RunAPI client's certificates load on a second core while the rest is imported (a tenth of
# an edit's CPU, which every agent call paid before its first request could go out).
if not {"-h", "--help", "--version"} & set(sys.argv):
    tls.preload()

from studio.cli.commands import (
    Job,
    Run,
    plan_chain,
    plan_compare,
    plan_edit,
    plan_generate,
    plan_replay,
)
from studio.cli.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
)
from studio.cli.launch import (
    SIMULATOR_NOTICE,
    serve,
    sim_latency,
    simulate,
    start_simulator_if_needed,
)
from studio.cli.output import Output
from studio.cli.parser import PROG, build_parser
from studio.cli.sessions import plan_sessions
from studio.config import Secret, Settings, SettingsError
from studio.engine import USER_ERRORS, Engine, RunAPIError

log = logging.getLogger(__name__)

PLANS: dict[str, Callable[[argparse.Namespace, Settings], Job]] = {
    "edit": plan_edit,
    "chain": plan_chain,
    "compare": plan_compare,
    "generate": plan_generate,
    "replay": plan_replay,
    "sessions": plan_sessions,
}
UNEXPECTED = "Something unexpected went wrong; run with --verbose to see the details."
INTERRUPTED = "Interrupted."
INTERRUPTED_EDIT = (
    "Interrupted: the edit stays in the history and will complete when the studio next starts."
)
# The history commands never reach the service, so they need no key and no simulator; the
# engine still wants a client, which this placeholder configures and nothing ever calls.
_OFFLINE_KEY = Secret("offline")


def main(argv: Sequence[str] | None = None) -> int:
    """Run `kontext-studio` with `argv` (default: the process's arguments); the exit code."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    return _dispatch(build_parser().parse_args(argv))


def entry() -> NoReturn:
    """The process's entry point (`kontext-studio`, `python -m studio.cli`): `main`, then exit.

    A one-shot command (`edit`, `chain`...) has closed its store and written its output by the
    time it returns, so the process leaves at once instead of tearing the interpreter down
    (collecting every module's objects: a few tenths of a second of each CLI run, which every
    agent call pays). The browser studio and the other commands exit the ordinary way.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    args = build_parser().parse_args()
    code = _dispatch(args)
    if args.command in PLANS:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _dispatch(args: argparse.Namespace) -> int:
    _configure_logging(verbose=args.verbose)
    try:
        if args.command == "simulate":
            return simulate(args)
        if args.command == "hermes":
            from studio.cli.hermes import run_hermes  # YAML: loaded for this command alone

            return run_hermes(args)
        if args.command == "bench":
            from studio.bench import run_bench

            return run_bench(args)
        if args.command is None:
            return serve(args)
        return run_command(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except CommandError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return exc.exit_code
    except SettingsError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return EXIT_USAGE


def run_command(args: argparse.Namespace) -> int:
    """Check the input, start what the command needs, run it once, and say how it went."""
    out = Output(json_mode=args.json, quiet=args.quiet)
    run: Run | None = None
    sim = None
    try:
        settings = Settings.from_env(home=args.home)
        job = PLANS[args.command](args, settings)  # every input check that needs no engine
        if job.needs_service:
            settings, sim = start_simulator_if_needed(settings, latency=sim_latency(settings))
            if sim is not None:
                out.note(SIMULATOR_NOTICE)
        else:
            settings = replace(settings, api_key=settings.api_key or _OFFLINE_KEY)

        async def execute() -> int:
            nonlocal run
            engine = Engine.from_settings(settings)
            run = Run(engine, out, simulator=sim is not None)
            try:
                return await job.run(run)
            finally:
                await engine.aclose()  # unfinished steps stay queued or running in the store

        return asyncio.run(execute())
    except KeyboardInterrupt:
        message = INTERRUPTED_EDIT if run is not None and run.unfinished else INTERRUPTED
        return _fail(out, message, EXIT_INTERRUPTED, state="interrupted")
    except CommandError as exc:
        return _fail(out, str(exc), exc.exit_code)
    except SettingsError as exc:
        return _fail(out, str(exc), EXIT_USAGE)
    except USER_ERRORS as exc:
        # The service refusing is a failure; anything else known is the user's input.
        return _fail(out, str(exc), EXIT_FAILED if isinstance(exc, RunAPIError) else EXIT_USAGE)
    except Exception:
        log.debug("The command failed unexpectedly", exc_info=True)
        return _fail(out, UNEXPECTED, EXIT_FAILED)
    finally:
        if sim is not None:
            sim.stop()


def _fail(out: Output, message: str, exit_code: int, *, state: str = "failed") -> int:
    out.error(message)
    out.result([], {"state": state, "error": message})
    return exit_code


def _configure_logging(*, verbose: bool) -> None:
    """One line per record on stderr. Tracebacks and our debug records only with --verbose;
    other libraries stay at warnings, so no request header is ever logged."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(verbose=verbose))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    # Errors the studio did not expect are logged (their sentence says so), without their
    # traceback unless `verbose` (review 20 F2: nothing reached the log).
    logging.getLogger("studio").setLevel(logging.DEBUG if verbose else logging.ERROR)
    # Except what an operator must see: a setting that leaves a reachable studio unguarded.
    logging.getLogger("studio.config").setLevel(logging.DEBUG if verbose else logging.WARNING)


class _Formatter(logging.Formatter):
    def __init__(self, *, verbose: bool) -> None:
        super().__init__(f"{PROG}: %(levelname)s: %(name)s: %(message)s")
        self._verbose = verbose

    def formatException(self, ei: object) -> str:
        return super().formatException(ei) if self._verbose else ""  # type: ignore[arg-type]


__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "SIMULATOR_NOTICE",
    "build_parser",
    "entry",
    "main",
    "start_simulator_if_needed",
]
