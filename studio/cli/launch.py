"""Starting things: the simulator when no key is set, the browser studio, `simulate`.

Imports `config` and, lazily, `simulator` and `ui` (Gradio is loaded only to serve the studio).
"""

from __future__ import annotations

import argparse
import errno
import secrets
import socket
import sys
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

from studio.cli.errors import EXIT_OK, CommandError
from studio.config import Secret, Settings

if TYPE_CHECKING:
    from studio.simulator import Simulator

SimLatency = Literal["fast", "demo", "quick"]
SIM_LATENCIES: tuple[SimLatency, ...] = ("fast", "demo", "quick")
SIMULATOR_NOTICE = (
    "No RUNAPI_API_KEY is set: using the built-in RunAPI simulator. "
    "Its images are simple deterministic edits, not Flux."
)
HOSTED_NOTICE = (
    "Hosted mode: pasted links may not reach private addresses and fail with one plain sentence."
)
# The real poll schedule waits 4.5 s before the first read (studio/runapi/policy.py); against a
# simulator that finishes in well under a second, read at this fraction of it instead.
FAST_SIM_POLL_SCALE = 0.05


def sim_latency(settings: Settings) -> SimLatency:
    """`KONTEXT_STUDIO_SIM_LATENCY`: fast, demo or quick (default demo, to watch the states)."""
    value = settings.sim_latency
    if value not in SIM_LATENCIES:
        raise CommandError("KONTEXT_STUDIO_SIM_LATENCY must be fast, demo or quick.")
    return value


def start_simulator_if_needed(
    settings: Settings, *, latency: SimLatency = "demo"
) -> tuple[Settings, Simulator | None]:
    """With no key, start the simulator in this process and point the settings at it."""
    if settings.api_key is not None:
        return settings, None
    from studio.simulator import Simulator

    key = "sk-sim-" + secrets.token_hex(8)
    sim = Simulator(api_key=key, latency=latency, state_dir=settings.home / "simulator")
    sim.start()
    settings = replace(settings, api_key=Secret(key), simulator_url=sim.base_url)
    if latency != "demo" and settings.poll_scale == 1.0:
        settings = replace(settings, poll_scale=FAST_SIM_POLL_SCALE)
    return settings, sim


def simulate(args: argparse.Namespace) -> int:
    """`kontext-studio simulate`: serve the simulator until Ctrl+C."""
    from studio.simulator import Simulator

    configured = Settings.from_env().api_key
    key = args.api_key or (configured.reveal() if configured else "sk-sim")
    sim = Simulator(api_key=key, latency=args.latency)
    sim.start(port=args.sim_port)
    sys.stdout.write(f"{sim.base_url}\n")
    sys.stdout.flush()
    sys.stderr.write(
        f"RUNAPI_BASE_URL={sim.base_url} RUNAPI_API_KEY=<the key you chose>  (Ctrl+C stops)\n"
    )
    try:
        threading.Event().wait()  # until Ctrl+C
    finally:
        sim.stop()
    return EXIT_OK


def port_in_use(host: str, port: int) -> str | None:
    """One sentence if the studio cannot listen on `host:port` (taken, or not an address of
    this machine), else None. Checked before anything starts; Gradio's own refusal is a
    traceback about "empty ports"."""
    try:
        with socket.create_server((host, port)):
            return None
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            return (
                f"Port {port} on {host} is already in use (another studio?); stop it, "
                "or pick another port with --port."
            )
        return f"The studio cannot listen on {host}:{port} ({error.strerror or error})."


def serve(args: argparse.Namespace) -> int:
    """`kontext-studio` with no command: the browser studio (it resumes unfinished edits)."""
    settings = Settings.from_env(
        home=args.home,
        host=args.host,
        port=args.port,
        hosted=args.hosted,
        share=args.share,
        auth=args.auth,
        root_path=args.root_path,
    )
    if problem := port_in_use(settings.host, settings.port):
        raise CommandError(problem)
    settings, sim = start_simulator_if_needed(settings, latency=sim_latency(settings))
    if sim is not None:
        sys.stderr.write(f"{SIMULATOR_NOTICE}\n")
    if settings.hosted:
        sys.stderr.write(f"{HOSTED_NOTICE}\n")
    try:
        from studio.ui.serve import serve_studio

        serve_studio(settings, mcp=args.mcp, verbose=args.verbose)
    except OSError as error:
        # Taken between the check and the start (Gradio says "Cannot find empty port").
        if "empty port" not in str(error):
            raise
        raise CommandError(
            port_in_use(settings.host, settings.port) or f"Port {settings.port} is taken."
        ) from None
    finally:
        if sim is not None:
            sim.stop()
    return EXIT_OK
