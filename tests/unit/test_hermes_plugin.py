"""The Hermes plugin's own rules, loaded without Hermes: ratios, models, sources, the command."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from studio.cli.hermes_plugin import (
    kontext_model,
    kontext_ratio,
    runapi_environment,
    source_argument,
    studio_command,
)


@pytest.mark.parametrize(
    ("asked", "editing", "sent"),
    [
        pytest.param("landscape", False, "16:9", id="generate-landscape"),
        pytest.param("portrait", False, "9:16", id="generate-portrait"),
        pytest.param("square", True, "1:1", id="edit-square-chosen"),
        pytest.param("portrait", True, "9:16", id="edit-portrait-chosen"),
        pytest.param("landscape", True, "match", id="edit-hermes-default-keeps-the-photo-shape"),
        pytest.param(None, True, "match", id="edit-none"),
        pytest.param("4:3", True, "4:3", id="kontext-ratio-as-is"),
        pytest.param("panorama", False, "16:9", id="unknown-generates-landscape"),
    ],
)
def test_hermes_ratio_names_become_kontext_ratios(asked, editing, sent):
    assert kontext_ratio(asked, editing=editing) == sent


def test_the_model_is_the_first_kontext_name_given_else_pro():
    assert kontext_model(None, "fal-ai/flux-2-pro") == "pro"
    assert kontext_model("max", "pro") == "max"
    assert kontext_model(None, "flux-kontext-max") == "max"
    assert kontext_model() == "pro"


def test_sources_are_paths_links_or_bytes_on_stdin(tmp_path):
    photo = tmp_path / "my photo.png"
    assert source_argument(str(photo)) == (str(photo), None)
    assert source_argument(photo.as_uri()) == (str(photo), None)
    assert source_argument("https://example.com/a.png") == ("https://example.com/a.png", None)
    data = b"\x89PNG fake"
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    assert source_argument(uri) == ("-", data)
    with pytest.raises(ValueError, match="base64"):
        source_argument("data:image/png;base64,%%%")


def test_the_command_puts_options_first_and_text_after_a_double_dash():
    settings = {"command": ["/venv/bin/kontext-studio"], "home": "/data/studio"}
    command = studio_command(
        settings, "-make it night", model="max", ratio="match", source="/p.png", output=Path("/o")
    )
    assert command == [
        "/venv/bin/kontext-studio", "--home", "/data/studio", "edit", "--json", "-q",
        "--model", "max", "--aspect", "match", "-o", "/o", "--", "/p.png", "-make it night",
    ]  # fmt: skip
    generate = studio_command(
        settings, "a fox", model="pro", ratio="1:1", source=None, output=Path("/o")
    )
    assert generate[3] == "generate"
    assert generate[-2:] == ["--", "a fox"]


def test_the_runapi_key_comes_from_the_environment_or_hermes_runapi_chat_provider():
    config = {
        "providers": {
            "other": {"base_url": "https://api.example.com/v1", "api_key": "sk-other"},
            "runapi": {"base_url": "https://runapi.ai/v1", "key_env": "MY_RUNAPI_KEY"},
        }
    }
    env = runapi_environment({"MY_RUNAPI_KEY": "sk-run"}, config)
    assert (env["RUNAPI_API_KEY"], env["RUNAPI_BASE_URL"]) == ("sk-run", "https://runapi.ai/v1")
    assert runapi_environment({"RUNAPI_API_KEY": "sk-own"}, config)["RUNAPI_API_KEY"] == "sk-own"
    assert "RUNAPI_API_KEY" not in runapi_environment(
        {}, {"providers": {"o": config["providers"]["other"]}}
    )
