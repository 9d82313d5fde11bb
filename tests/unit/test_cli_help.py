"""`kontext-studio --help`: every command listed, tidy, and the same as the README's copy."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from studio.cli import EXIT_USAGE, build_parser, main
from studio.cli.errors import CommandError
from studio.cli.launch import sim_latency
from studio.cli.output import result_name, slug
from studio.cli.parser import HELP_WIDTH
from studio.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
COMMANDS = [
    "edit",
    "chain",
    "compare",
    "generate",
    "replay",
    "sessions",
    "simulate",
    "hermes",
    "bench",
]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_help_lists_every_command_with_a_one_line_help():
    text = build_parser().format_help()
    for command in COMMANDS:
        [line] = [line for line in text.splitlines() if line.strip().startswith(command + " ")]
        assert len(line.split(None, 1)[1]) > 10, line
    assert set(_subcommands(build_parser())) == set(COMMANDS)


def test_every_help_text_fits_the_fixed_width():
    parser = build_parser()
    pages = [parser, *_subcommands(parser).values()]
    pages += _subcommands(_subcommands(parser)["sessions"]).values()
    pages += _subcommands(_subcommands(parser)["hermes"]).values()
    for page in pages:
        for line in page.format_help().splitlines():
            assert len(line) <= HELP_WIDTH, line


def test_main_prints_the_parser_help_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == build_parser().format_help()


def test_the_readme_shows_the_exact_help_when_it_has_the_markers():
    text = README.read_text(encoding="utf-8") if README.exists() else ""
    found = re.search(r"<!-- cli-help -->\n(.*?)<!-- /cli-help -->", text, re.DOTALL)
    if found is None:
        pytest.skip("README.md has no <!-- cli-help --> section yet")
    pasted = "\n".join(line for line in found.group(1).splitlines() if not line.startswith("```"))
    assert pasted.strip() == build_parser().format_help().strip()


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["edit", "a.png", "x", "--model", "ultra"], id="unknown-model"),
        pytest.param(["edit", "a.png"], id="missing-instruction"),
        pytest.param(["frobnicate"], id="unknown-command"),
        pytest.param(["sessions"], id="sessions-without-action"),
        pytest.param(["hermes"], id="hermes-without-action"),
    ],
)
def test_a_bad_argument_is_one_line_on_stderr_and_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("kontext-studio: error: ")


@pytest.mark.parametrize(
    ("value", "latency"),
    [
        pytest.param(None, "demo", id="unset"),
        pytest.param("", "demo", id="blank"),
        pytest.param(" Quick ", "quick", id="spaces-and-case"),
        pytest.param("fast", "fast", id="fast"),
    ],
)
def test_sim_latency_comes_from_the_environment(value, latency):
    environ = {} if value is None else {"KONTEXT_STUDIO_SIM_LATENCY": value}
    assert sim_latency(Settings.from_env(environ)) == latency


def test_an_unknown_sim_latency_is_a_usage_error():
    with pytest.raises(CommandError, match="fast, demo or quick") as error:
        sim_latency(Settings.from_env({"KONTEXT_STUDIO_SIM_LATENCY": "slow"}))
    assert error.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize(
    ("prompt", "fmt", "tag", "name"),
    [
        pytest.param(
            "Make it NIGHT, please!", "png", "", "0123abcd-2-make-it-night-please.png", id="words"
        ),
        pytest.param("Café au lait", "jpeg", "", "0123abcd-2-cafe-au-lait.jpg", id="accents-jpeg"),
        pytest.param("日本語", "png", "max", "0123abcd-2-edit-max.png", id="no-ascii-with-tag"),
        pytest.param("a" * 80, "png", "", f"0123abcd-2-{'a' * 40}.png", id="long"),
    ],
)
def test_result_names_carry_session_number_and_instruction(prompt, fmt, tag, name):
    assert result_name("0123abcd-ffff-4fff-8fff-ffffffffffff", 2, prompt, fmt, tag) == name


def test_slug_never_ends_with_a_dash():
    assert slug("a" * 39 + " b c") == "a" * 39


def test_a_port_in_use_is_said_in_one_sentence():
    import socket

    from studio.cli.launch import port_in_use

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        sentence = port_in_use("127.0.0.1", port)
    assert sentence == (
        f"Port {port} on 127.0.0.1 is already in use (another studio?); stop it, "
        "or pick another port with --port."
    )
    assert port_in_use("127.0.0.1", port) is None  # free again once closed


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_answer_without_loading_gradio(flag):
    # Gradio takes seconds to import; only the browser studio needs it (and `bench`'s pages).
    code = (
        "import contextlib, io, sys\n"
        "from studio.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
        f"    main([{flag!r}])\n"
        "print(bool(out.getvalue().strip()), 'gradio' in sys.modules)\n"
    )
    answer = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert answer.stdout.split() == ["True", "False"]
