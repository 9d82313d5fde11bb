"""The `kontext-studio` argument parser: every command, flag and one-line help.

Imports `params` (the choices) and the stdlib. The README pastes `kontext-studio --help`, and
`tests/unit/test_cli_help.py` keeps the two the same, so the width is fixed here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from studio import __version__
from studio.cli.errors import EXIT_USAGE
from studio.params import ASPECT_RATIOS, MATCH_SOURCE, MODELS, OUTPUT_FORMATS

PROG = "kontext-studio"
# Fixed, so the help does not change with the terminal it is printed in (the README pastes it).
HELP_WIDTH = 88


class _Formatter(argparse.HelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=HELP_WIDTH, max_help_position=28)


class CommandParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line, `kontext-studio: error: ...`, exit 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{PROG}: error: {message} (see '{self.prog} --help').\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    """The parser for `kontext-studio` and all its commands."""
    parser = CommandParser(
        prog=PROG,
        formatter_class=_Formatter,
        description=(
            "Edit images with FLUX.1 Kontext through RunAPI. With no command, start the browser "
            "studio. With no RUNAPI_API_KEY, everything runs on the built-in simulator."
        ),
        epilog="Exit codes: 0 ok, 1 the edit or the service failed, 2 bad arguments or input, "
        "130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--home",
        type=Path,
        help="data directory (default: KONTEXT_STUDIO_HOME or the platform's user data folder)",
    )
    parser.add_argument("--host", help="address to serve the studio on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port for the studio (default 7860)")
    parser.add_argument(
        "--hosted",
        action="store_true",
        default=None,
        help="for a studio others can reach (on by itself with --share, a --host that is not "
        "loopback, or on a Space): links may not point at private addresses",
    )
    parser.add_argument(
        "--share",
        action="store_true",
        default=None,
        help="also ask Gradio for a public share link (hosted mode turns on)",
    )
    parser.add_argument(
        "--auth",
        action="append",
        metavar="USER:PASSWORD",
        help="require this login to open the studio; repeat for more (or KONTEXT_STUDIO_AUTH)",
    )
    parser.add_argument(
        "--root-path",
        metavar="PATH",
        help="the path a reverse proxy serves the studio under, e.g. /studio",
    )
    parser.add_argument("--mcp", action="store_true", help="also serve the studio as an MCP server")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log details (and tracebacks) on stderr"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_edit_commands(commands)
    _add_session_commands(commands)
    _add_simulate(commands)
    _add_hermes(commands)
    _add_bench(commands)
    return parser


def _output_options() -> CommandParser:
    common = CommandParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout, for scripts"
    )
    common.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    # Also accepted after the command; SUPPRESS keeps a `-v` given before it.
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    return common


def _edit_options(*, model: bool = True) -> CommandParser:
    options = CommandParser(add_help=False)
    if model:
        options.add_argument("--model", choices=MODELS, default="pro", help="default pro")
    options.add_argument(
        "--aspect",
        choices=[*ASPECT_RATIOS, MATCH_SOURCE],
        default=MATCH_SOURCE,
        metavar="RATIO",
        help=f"{', '.join(ASPECT_RATIOS)} or {MATCH_SOURCE} (default: the source's own)",
    )
    options.add_argument(
        "--format",
        choices=OUTPUT_FORMATS,
        default=None,
        help="default: the -o file's (.png or .jpg), else png",
    )
    return options


def _region_options() -> CommandParser:
    options = CommandParser(add_help=False)
    where = options.add_mutually_exclusive_group()
    where.add_argument(
        "--mask",
        type=Path,
        metavar="MASK.png",
        help="change only where this image is white (or opaque); scaled to the source",
    )
    where.add_argument(
        "--box", metavar="X,Y,W,H", help="change only inside this box (pixels of the source)"
    )
    options.add_argument(
        "--keep-rest",
        action="store_true",
        help="keep every pixel the edit did not change, at the source's full size (without "
        "--mask or --box, the studio finds what changed)",
    )
    return options


def _add_edit_commands(commands: argparse._SubParsersAction[CommandParser]) -> None:
    output, source = _output_options(), "an image file, '-' for stdin, or an http(s) link"
    region = _region_options()
    edit = commands.add_parser(
        "edit",
        help="edit an image (a file or a link) with one instruction",
        parents=[_edit_options(), region, output],
        formatter_class=_Formatter,
    )
    edit.add_argument("source", metavar="SOURCE", help=source)
    edit.add_argument("prompt", metavar="INSTRUCTION", help='what to change, e.g. "make it night"')
    edit.add_argument("-o", "--output", help="file (.png or .jpg) or folder to write (default: .)")

    chain = commands.add_parser(
        "chain",
        help="apply several instructions in turn, each to the previous result",
        parents=[_edit_options(), region, output],
        formatter_class=_Formatter,
    )
    chain.add_argument("source", metavar="SOURCE", help=source)
    chain.add_argument(
        "-p",
        "--prompt",
        dest="prompts",
        action="append",
        required=True,
        metavar="INSTRUCTION",
        help="one step; repeat for each step, in order",
    )
    chain.add_argument("-o", "--output", type=Path, help="folder to write to (default: .)")

    compare = commands.add_parser(
        "compare",
        help="run one instruction on pro and max side by side",
        parents=[_edit_options(model=False), region, output],
        formatter_class=_Formatter,
    )
    compare.add_argument("source", metavar="SOURCE", help=source)
    compare.add_argument("prompt", metavar="INSTRUCTION", help="what to change")
    compare.add_argument("-o", "--output", type=Path, help="folder to write to (default: .)")

    generate = commands.add_parser(
        "generate",
        help="make a new image from an instruction, without a source",
        parents=[_edit_options(), output],
        formatter_class=_Formatter,
    )
    generate.add_argument("prompt", metavar="INSTRUCTION", help="what to make")
    generate.add_argument(
        "-o", "--output", help="file (.png or .jpg) or folder to write (default: .)"
    )

    replay = commands.add_parser(
        "replay",
        help="apply the instructions of an exported session to a new image",
        parents=[region, output],
        formatter_class=_Formatter,
    )
    replay.add_argument("bundle", metavar="SESSION.zip", type=Path, help="a session export")
    replay.add_argument("source", metavar="NEW_SOURCE", help=source)
    replay.add_argument("-o", "--output", type=Path, help="folder to write to (default: .)")


def _add_session_commands(commands: argparse._SubParsersAction[CommandParser]) -> None:
    sessions = commands.add_parser(
        "sessions",
        help="list, show, export or import sessions",
        formatter_class=_Formatter,
    )
    actions = sessions.add_subparsers(dest="action", metavar="ACTION", required=True)
    output = _output_options()
    actions.add_parser(
        "list",
        help="every session, most recent first",
        parents=[output],
        formatter_class=_Formatter,
    )
    show = actions.add_parser(
        "show", help="one session's steps", parents=[output], formatter_class=_Formatter
    )
    show.add_argument("session_id", metavar="ID", help="a session id (or a unique prefix of one)")
    export = actions.add_parser(
        "export", help="write a session as a ZIP", parents=[output], formatter_class=_Formatter
    )
    export.add_argument("session_id", metavar="ID", help="a session id (or a unique prefix of one)")
    export.add_argument(
        "-o", "--output", type=Path, metavar="FILE.zip", help="default: ./<name>.zip"
    )
    import_ = actions.add_parser(
        "import",
        help="add an exported ZIP as a new session",
        parents=[output],
        formatter_class=_Formatter,
    )
    import_.add_argument("bundle", metavar="FILE.zip", type=Path, help="a session export")


def _add_simulate(commands: argparse._SubParsersAction[CommandParser]) -> None:
    simulate = commands.add_parser(
        "simulate",
        help="run the RunAPI simulator on loopback and print its base URL",
        formatter_class=_Formatter,
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
        choices=["fast", "demo", "quick"],
        default="demo",
        help="how long tasks take (default demo: a few seconds)",
    )
    simulate.add_argument(
        "--api-key",
        default=None,
        help="the key clients must send (default: RUNAPI_API_KEY, else sk-sim)",
    )


def _add_hermes(commands: argparse._SubParsersAction[CommandParser]) -> None:
    hermes = commands.add_parser(
        "hermes",
        help="make this studio Hermes Agent's image backend (install, uninstall)",
        formatter_class=_Formatter,
    )
    actions = hermes.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, words in (
        ("install", "install the Kontext plugin and enable it in Hermes' config"),
        ("uninstall", "remove the plugin and what install added to Hermes' config"),
    ):
        parser = actions.add_parser(action, help=words, formatter_class=_Formatter)
        parser.add_argument(
            "--hermes-home",
            type=Path,
            metavar="DIR",
            help="Hermes' folder (default: HERMES_HOME, else ~/.hermes)",
        )


def _add_bench(commands: argparse._SubParsersAction[CommandParser]) -> None:
    bench = commands.add_parser(
        "bench",
        help="measure the studio against the simulator: the README's Numbers",
        formatter_class=_Formatter,
        description="Poll schedule beside the official SDK, compare, load, intake and cold "
        "start, on loopback against the simulator; with --drill, the fault drill instead. "
        "Prints Markdown tables.",
    )
    bench.add_argument(
        "--json", dest="json_file", type=Path, metavar="FILE", help="also write every number here"
    )
    bench.add_argument(
        "--scale",
        type=float,
        default=0.25,
        help="task durations (3 s, 10 s) and the SDK's interval times this (default 0.25; "
        "1 for real time)",
    )
    bench.add_argument("--rounds", type=int, default=5, help="measured rounds per case (default 5)")
    bench.add_argument(
        "--warmup",
        type=int,
        default=0,
        help="uncounted edits after each poll case's first three (default 0; compare: 3 at least)",
    )
    bench.add_argument(
        "--only",
        action="append",
        choices=["poll", "process", "compare", "load", "page", "intake", "regions", "cold"],
        metavar="SECTION",
        help="run only this section (repeatable): poll, process, compare, load, page, intake, "
        "regions or cold",
    )
    bench.add_argument(
        "--edits", type=int, help="edits for the load (default 100) or the drill (default 500)"
    )
    bench.add_argument(
        "--pages", type=int, default=5, help="idle Chromium pages for memory (default 5)"
    )
    bench.add_argument(
        "--drill",
        action="store_true",
        help="the fault drill: a quarter of calls faulted, then a SIGKILL halfway",
    )
    bench.add_argument(
        "--engine-only", action="store_true", help="drill the engine alone, without the web server"
    )
    bench.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
