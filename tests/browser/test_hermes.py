"""The real Hermes Agent (from PyPI, in its own virtual environment) using the studio both ways:
its MCP client against the studio's MCP server, and its own `image_generate` tool through the
plugin `kontext-studio hermes install` writes. A scripted model on loopback plays the LLM and
records what Hermes shows it.

`.ci/run` creates the Hermes environment; without it these tests skip, except in CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from studio.store import Store
from tests.browser.conftest import running_studio
from tests.support.engines import make_image
from tests.support.scripted_model import ChatRequest, Reply, ScriptedModel, ToolCall

pytestmark = pytest.mark.slow

HERMES_VERSION = "0.19.0"
# Read at import: the autouse clean_env fixture removes KONTEXT_STUDIO_* before each test.
HERMES_VENV = Path(
    os.environ.get("KONTEXT_STUDIO_HERMES")
    or Path.home() / ".cache" / "kontext-studio" / "hermes-venv"
)
# Seconds; a hang guard for one `hermes -z` run, never a performance assertion.
HERMES_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def hermes() -> Path:
    """The `hermes` executable of hermes-agent[mcp] HERMES_VERSION."""
    executable = HERMES_VENV / "bin" / "hermes"
    installed = list(
        HERMES_VENV.glob(f"lib/python3*/site-packages/hermes_agent-{HERMES_VERSION}.dist-info")
    )
    if not executable.exists() or not installed:
        message = f"hermes-agent[mcp]=={HERMES_VERSION} is not in {HERMES_VENV} (.ci/run makes it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return executable


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    path.write_bytes(make_image(400, 300))
    return path


def run_hermes(
    hermes: Path, tmp_path: Path, config: dict, prompt: str
) -> subprocess.CompletedProcess:
    """`hermes -z PROMPT` with HOME and HERMES_HOME in this test's folder, and no RunAPI key."""
    hermes_home = tmp_path / ".hermes"
    hermes_home.mkdir(exist_ok=True)
    path = hermes_home / "config.yaml"
    existing = yaml.safe_load(path.read_text()) if path.exists() else {}
    path.write_text(yaml.safe_dump({**(existing or {}), **config}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNAPI_", "KONTEXT_STUDIO_"))}
    env.update(HOME=str(tmp_path), HERMES_HOME=str(hermes_home), KONTEXT_STUDIO_SIM_LATENCY="fast")
    done = subprocess.run(
        [str(hermes), "-z", prompt],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HERMES_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def mcp_result_lines(message: str) -> list[str]:
    """The lines of an MCP tool's result as the model reads it, inside Hermes' wrapping
    (`<untrusted_tool_result ...>` around `{"result": "..."}`)."""
    wrapped = json.loads(message[message.index("{") : message.rindex("}") + 1])
    return str(wrapped["result"]).splitlines()


def test_hermes_mcp_client_gets_the_image_and_the_json_summary(
    hermes, photo, sim, clean_env, tmp_path
):
    def script(request: ChatRequest) -> Reply:
        if not request.tool_results:
            edit = request.tool("edit_image")  # offered as mcp__kontext__edit_image
            return Reply(
                tool_calls=(ToolCall(edit, {"image": str(photo), "instruction": "make it night"}),)
            )
        return Reply(text="Here it is at night.")

    model = ScriptedModel(script).start()
    try:
        with running_studio(sim, clean_env, mcp=True) as studio:
            config = model.hermes_config()
            config["mcp_servers"] = {
                "kontext": {"url": studio.url + "gradio_api/mcp/", "timeout": 120}
            }
            done = run_hermes(hermes, tmp_path, config, f"Make this photo night: {photo}")
            (session,) = studio.run(studio.engine.list_sessions())
            stored = studio.run(studio.engine.load_session(session.session_id)).current
            stored_path = studio.engine.image_path(stored.result)
    finally:
        model.stop()
    assert model.errors == []
    assert "night" in done.stdout
    (message,) = model.requests[-1].tool_results
    lines = mcp_result_lines(message)
    # The image arrived as MCP image content: Hermes cached it and shows the model its path.
    (media,) = [line.removeprefix("MEDIA:") for line in lines if line.startswith("MEDIA:")]
    with Image.open(media) as delivered, Image.open(stored_path) as original:
        assert delivered.size == original.size
    # And the step summary arrived as JSON, not as a Python repr.
    (summary,) = [json.loads(line) for line in lines if line.startswith("{")]
    assert summary["session_id"] == session.session_id
    assert (summary["state"], summary["prompt"], summary["cost_cents"]) == (
        "completed",
        "make it night",
        5,
    )
    assert summary["image_url"].endswith(stored_path.name)
    assert "'path':" not in message


def test_hermes_image_generate_chains_two_edits_into_one_studio_session(hermes, photo, tmp_path):
    studio_home = tmp_path / "studio"
    installed = subprocess.run(
        [sys.executable, "-m", "studio.cli", "--home", str(studio_home), "hermes", "install",
         "--hermes-home", str(tmp_path / ".hermes")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    answers: list[dict] = []

    def script(request: ChatRequest) -> Reply:
        results = request.tool_results
        if not results:
            edit = {"prompt": "make it night", "image_url": str(photo)}
            return Reply(tool_calls=(ToolCall(request.tool("image_generate"), edit),))
        answers[:] = [json.loads(r) for r in results]
        if len(results) == 1:  # "then add snow": the previous output is the next source
            edit = {"prompt": "add snow", "image_url": answers[0]["image"]}
            return Reply(tool_calls=(ToolCall("image_generate", edit),))
        return Reply(text="Night, then snow.")

    model = ScriptedModel(script).start()
    try:
        done = run_hermes(
            hermes,
            tmp_path,
            model.hermes_config(),
            f"Make this photo night, then add snow: {photo}",
        )
    finally:
        model.stop()
    assert model.errors == []
    assert "snow" in done.stdout
    night, snow = answers
    for answer in (night, snow):
        assert answer["success"] is True
        assert answer["provider"] == "kontext"
        assert answer["model"] == "flux-kontext-pro"
        assert answer["simulator"] is True
        assert "simulator" in answer["note"]
        assert Path(answer["image"]).is_file()
    assert snow["studio"]["session_id"] == night["studio"]["session_id"]
    store = Store.open(studio_home)
    try:
        (listed,) = store.list_sessions()
        session = store.load_session(listed.session_id)
    finally:
        store.close()
    origin, first, second = [session.steps[s.step_id] for s in session.path()]
    assert (first.step_id, second.step_id) == (
        night["studio"]["step_id"],
        snow["studio"]["step_id"],
    )
    assert second.parent_id == first.step_id
    assert [first.params.prompt, second.params.prompt] == ["make it night", "add snow"]
    assert origin.result is not None
    assert len(session.steps) == 3
