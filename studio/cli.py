"""The `kontext-studio` command: the composition root and the only reader of the environment.

It turns flags and environment into `Settings`, starts the simulator when no key is configured,
builds the engine, and hands it to the browser studio or to a command.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from studio import __version__
from studio.config import Secret, Settings

if TYPE_CHECKING:
    from studio.simulator import Simulator

# Exit codes a script can rely on (documented in the README).
EXIT_OK = 0
EXIT_FAILED = 1  # the service refused or the edit failed
EXIT_USAGE = 2  # bad arguments or input (argparse uses 2 as well)
EXIT_INTERRUPTED = 130

SIMULATOR_NOTICE = (
    "No RUNAPI_API_KEY is set: using the built-in RunAPI simulator. "
    "Its images are simple deterministic edits, not Flux."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kontext-studio",
        description=(
            "Edit images with FLUX.1 Kontext through RunAPI. With no command, start the browser "
            "studio. With no RUNAPI_API_KEY, everything runs on the built-in simulator."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--home",
        type=Path,
        help="data directory (default: KONTEXT_STUDIO_HOME or the platform's user data folder)",
    )
    parser.add_argument(
        "--host", default=None, help="address to serve the studio on (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=None, help="port for the studio (default 7860)")
    parser.add_argument(
        "--hosted",
        action="store_true",
        default=None,
        help="shared mode: visitors bring their own key, see only their own "
        "sessions, and links may not reach private addresses",
    )
    parser.add_argument("--mcp", action="store_true", help="also serve the studio as an MCP server")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    simulate = commands.add_parser(
        "simulate", help="run the RunAPI simulator on loopback and print its base URL"
    )
    simulate.add_argument(
        "--port",
        type=int,
        default=8765,
        dest="sim_port",
        help="port (default 8765; 0 picks a free one)",
    )
    simulate.add_argument(
        "--latency",
        choices=["fast", "demo"],
        default="demo",
        help="how long tasks take (default demo: a few seconds)",
    )
    simulate.add_argument(
        "--api-key",
        default=None,
        help="the key clients must send (default: RUNAPI_API_KEY, else sk-sim)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "simulate":
            return _simulate(args)
        return _serve(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(home=args.home, host=args.host, port=args.port, hosted=args.hosted)


def _simulate(args: argparse.Namespace) -> int:
    from studio.simulator import Simulator

    key = args.api_key or os.environ.get("RUNAPI_API_KEY") or "sk-sim"
    sim = Simulator(api_key=key, latency=args.latency)
    sim.start(port=args.sim_port)
    print(sim.base_url, flush=True)
    print(
        f"RUNAPI_BASE_URL={sim.base_url} RUNAPI_API_KEY=<the key you chose>  (Ctrl+C stops)",
        file=sys.stderr,
        flush=True,
    )
    try:
        threading.Event().wait()  # until Ctrl+C
    finally:
        sim.stop()
    return EXIT_OK


def start_simulator_if_needed(settings: Settings) -> tuple[Settings, Simulator | None]:
    """With no key, start the simulator in this process and point the settings at it."""
    if settings.api_key is not None:
        return settings, None
    from dataclasses import replace

    from studio.simulator import Simulator

    key = "sk-sim-" + secrets.token_hex(8)
    sim = Simulator(api_key=key, latency="demo", state_dir=settings.home / "simulator")
    sim.start()
    return replace(settings, api_key=Secret(key), simulator_url=sim.base_url), sim


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    settings, sim = start_simulator_if_needed(settings)
    if sim is not None:
        print(SIMULATOR_NOTICE, file=sys.stderr, flush=True)
    try:
        from studio.ui.serve import serve_studio

        serve_studio(settings, mcp=args.mcp)
    finally:
        if sim is not None:
            sim.stop()
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
