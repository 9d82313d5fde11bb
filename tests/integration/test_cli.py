"""`kontext-studio` end to end: each command in a subprocess against the simulator on loopback."""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from studio.store import Store
from tests.support.engines import make_image

# Seconds; a hang guard for one command, never a performance assertion.
COMMAND_TIMEOUT_S = 60
# Python lists every module it imports, on stderr (`-X importtime`).
_IMPORT_TIMES = {"PYTHONPROFILEIMPORTTIME": "1"}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "photo.png").write_bytes(make_image(320, 240))
    return folder


@pytest.fixture
def env(sim, clean_env) -> dict[str, str]:
    """The environment of a command that talks to the test session's simulator."""
    return {
        **os.environ,
        "RUNAPI_BASE_URL": sim.base_url,
        "RUNAPI_API_KEY": sim.api_key,
        "KONTEXT_STUDIO_POLL_SCALE": "0.05",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }


@pytest.fixture
def cli(env, workdir, sim):
    """Run `python -m studio.cli ARGS` in `workdir`; every run is checked for the key."""

    def run(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, "-m", "studio.cli", *args],
            env={**env, **(extra_env or {})},
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        assert sim.api_key not in done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        return done

    return run


def _sessions(home: Path) -> list:
    store = Store.open(home)
    try:
        return store.list_sessions()
    finally:
        store.close()


def _is_image(path: Path, fmt: str = "PNG") -> bool:
    with Image.open(io.BytesIO(path.read_bytes())) as im:
        im.load()
        return im.format == fmt


def test_edit_writes_a_real_image_and_prints_its_path_when_given_a_file(cli, workdir):
    done = cli("edit", "photo.png", "make it blue", "-o", "blue.png")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(workdir / "blue.png")
    assert _is_image(workdir / "blue.png")
    # Progress on stderr: one line per phase, with elapsed seconds, ending with the cost.
    lines = done.stderr.splitlines()
    assert lines[0].startswith("pro: queued")
    assert lines[-1].startswith("pro: completed")
    assert lines[-1].endswith("$0.05")


def test_an_edit_loads_neither_the_browser_studio_nor_what_other_commands_need(cli, workdir):
    # Every agent call is a new process: Gradio (seconds), YAML (hermes), numpy and OpenCV
    # (regions) are loaded only by what uses them. The process leaves at once when done.
    done = cli("edit", "photo.png", "make it blue", "-o", "blue.png", extra_env=_IMPORT_TIMES)
    assert done.returncode == 0, done.stderr
    loaded = {
        line.rsplit("|", 1)[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert {"studio.engine", "httpx"} <= loaded  # the listing is Python's own, and whole
    assert not loaded & {"gradio", "yaml", "numpy", "cv2"}
    assert done.stdout.strip() == str(workdir / "blue.png")
    assert _is_image(workdir / "blue.png")


def test_a_file_named_with_o_holds_what_its_name_says(cli, workdir):
    """-o b.jpg wrote PNG bytes, a new folder named with a slash became a file with no ending,
    and a JPEG asked for of a transparent image kept to a region went into a .jpg as a PNG,
    all without a word (audit 15)."""
    done = cli("edit", "photo.png", "make it blue", "-o", "b.jpg")
    assert done.returncode == 0, done.stderr
    assert _is_image(workdir / "b.jpg", "JPEG")
    done = cli("edit", "photo.png", "make it blue", "-o", "new/")
    assert done.returncode == 0, done.stderr
    [written] = (workdir / "new").iterdir()
    assert written.suffix == ".png"
    assert _is_image(written)
    clear = Image.new("RGBA", (320, 240), (200, 120, 80, 255))
    clear.paste((0, 0, 0, 0), (0, 0, 100, 100))
    clear.save(workdir / "clear.png")
    done = cli("edit", "clear.png", "add a hat", "--keep-rest", "-o", "d.jpg")
    assert done.returncode == 0, done.stderr
    assert not (workdir / "d.jpg").exists()
    assert _is_image(workdir / "d.png")
    assert done.stdout.strip() == str(workdir / "d.png")
    assert "keeps the source's transparency, so it is a PNG: written to d.png" in done.stderr


def test_edit_json_names_the_step_the_task_and_what_was_sent(cli, workdir, sim):
    done = cli(
        "edit",
        "photo.png",
        "add a hat",
        "--json",
        "--model",
        "max",
        "--aspect",
        "1:1",
        "--format",
        "jpeg",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["state"] == "completed"
    assert result["model"] == "max"
    assert result["cost_cents"] == 10
    assert result["error"] is None
    assert len(result["step_ids"]) == 1
    [path] = result["paths"]
    assert path.endswith("-1-add-a-hat.jpg")
    assert path.startswith(str(workdir))
    assert _is_image(Path(path), "JPEG")
    body = sim.tasks[result["task_ids"][0]].body
    assert (body["model"], body["aspect_ratio"], body["output_format"]) == (
        "flux-kontext-max",
        "1:1",
        "jpeg",
    )


def test_chain_feeds_each_result_to_the_next_step_in_one_session(cli, workdir, sim, clean_env):
    done = cli(
        "chain",
        "photo.png",
        "-p",
        "make it blue",
        "-p",
        "add snow",
        "-p",
        "night",
        "-o",
        "out",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    paths = [Path(p) for p in result["paths"]]
    assert [p.parent for p in paths] == [workdir / "out"] * 3
    assert [p.name.split("-", 1)[1] for p in paths] == [
        "1-make-it-blue.png",
        "2-add-snow.png",
        "3-night.png",
    ]
    sources = [workdir / "photo.png", *paths[:-1]]
    for task_id, source in zip(result["task_ids"], sources, strict=True):
        assert sim.tasks[task_id].source_bytes == source.read_bytes()
    listed = json.loads(cli("sessions", "list", "--json").stdout)["sessions"]
    assert [(s["session_id"], s["step_count"], s["cost_cents"]) for s in listed] == [
        (result["session_id"], 3, 15)
    ]


def test_a_result_passed_back_continues_its_own_session_from_that_step(cli, workdir, sim):
    first = json.loads(cli("edit", "photo.png", "make it night", "--json", "-q").stdout)
    [night] = first["steps"]
    # Any copy of the result (here, the written file) is recognised by its content.
    again = cli("edit", night["path"], "add snow", "--json", "-q")
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    [snow] = second["steps"]
    assert second["session_id"] == first["session_id"]
    assert Path(snow["path"]).name.split("-", 1)[1] == "2-add-snow.png"
    assert snow["image_url"] == Path(snow["path"]).as_uri()
    assert sim.tasks[snow["task_id"]].source_bytes == Path(night["path"]).read_bytes()
    # The same step again: a sibling branch, written beside the first (never over it).
    branch = json.loads(cli("edit", night["path"], "add snow", "--json", "-q").stdout)
    assert branch["paths"][0] != snow["path"]
    assert Path(snow["path"]).exists()
    shown = json.loads(cli("sessions", "show", first["session_id"], "--json").stdout)
    parents = {s["step_id"]: s["parent_id"] for s in shown["steps"]}
    assert parents[snow["step_id"]] == parents[branch["step_ids"][0]] == night["step_id"]
    assert len(json.loads(cli("sessions", "list", "--json").stdout)["sessions"]) == 1


def test_json_steps_carry_the_shared_step_summary(cli, sim):
    result = json.loads(cli("generate", "a red bicycle", "--json", "-q").stdout)
    [step] = result["steps"]
    assert set(step) == {
        "session_id", "step_id", "state", "model", "aspect_ratio", "prompt", "task_id",
        "seconds", "cost_cents", "error", "image_url", "path", "region", "raw_image_url",
        "raw_path",
    }  # fmt: skip
    assert (step["session_id"], step["aspect_ratio"]) == (result["session_id"], "1:1")
    assert result["simulator"] is False  # a key (here, the test simulator's) is configured


def test_compare_writes_both_results_with_their_times_and_costs(cli, workdir, sim):
    done = cli("compare", "photo.png", "make it blue", "-q")
    assert done.returncode == 0, done.stderr
    pro, max_ = (line.split("\t") for line in done.stdout.splitlines())
    assert (pro[0], pro[2], max_[0], max_[2]) == ("pro", "$0.05", "max", "$0.10")
    assert pro[1].endswith(" s")
    assert all(_is_image(Path(line[3])) for line in (pro, max_))
    assert sorted(t.model for t in sim.tasks.values()) == ["flux-kontext-max", "flux-kontext-pro"]
    assert done.stderr == ""


def test_generate_sends_no_source(cli, sim):
    done = cli("generate", "a red bicycle", "--json", "--aspect", "16:9")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    body = sim.tasks[result["task_ids"][0]].body
    assert "source_image_url" not in body
    assert body["aspect_ratio"] == "16:9"
    assert _is_image(Path(result["paths"][0]))


def test_edit_reads_the_source_from_a_link(cli, workdir, sim):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(workdir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/photo.png"
        done = cli("edit", url, "make it blue", "--json", "-q")
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0, done.stderr
    assert _is_image(Path(json.loads(done.stdout)["paths"][0]))


def test_a_session_exports_imports_and_replays_on_a_new_source(cli, workdir, sim):
    chained = json.loads(cli("chain", "photo.png", "-p", "blue", "-p", "snow", "--json").stdout)
    session_id = chained["session_id"]
    shown = json.loads(cli("sessions", "show", session_id[:8], "--json").stdout)
    assert [s["prompt"] for s in shown["steps"]] == [None, "blue", "snow"]
    assert shown["cost_cents"] == 10
    exported = cli("sessions", "export", session_id, "-o", "s.zip")
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.strip() == str(workdir / "s.zip")
    imported = json.loads(cli("sessions", "import", "s.zip", "--json").stdout)
    assert imported["session_id"] != session_id
    again = json.loads(cli("sessions", "show", imported["session_id"], "--json").stdout)
    assert [Path(s["image"]).read_bytes() for s in again["steps"]] == [
        Path(s["image"]).read_bytes() for s in shown["steps"]
    ]
    (workdir / "other.png").write_bytes(make_image(200, 300, colour=(10, 200, 10)))
    replayed = cli("replay", "s.zip", "other.png", "-o", "replay", "--json", "-q")
    assert replayed.returncode == 0, replayed.stderr
    result = json.loads(replayed.stdout)
    assert [s["prompt"] for s in result["steps"]] == ["blue", "snow"]
    assert sim.tasks[result["task_ids"][0]].source_bytes == (workdir / "other.png").read_bytes()
    assert all(_is_image(Path(p)) for p in result["paths"])
    listed = cli("sessions", "list").stdout.splitlines()
    assert len(listed) == 3
    assert sum(session_id in line for line in listed) == 1


@pytest.mark.parametrize(
    ("args", "words"),
    [
        pytest.param(["edit", "photo.png", "x", "--model", "ultra"], "invalid choice", id="model"),
        pytest.param(["edit", "photo.png", "x", "--aspect", "2:1"], "invalid choice", id="ratio"),
        pytest.param(["edit", "photo.png", "   "], "instruction is empty", id="blank-prompt"),
        pytest.param(["chain", "photo.png"], "-p/--prompt", id="chain-without-steps"),
        pytest.param(["edit", "missing.png", "x"], "missing.png does not exist", id="missing"),
        pytest.param(
            ["edit", "photo.png", "x", "-o", "no/such/out.png"],
            "does not exist",
            id="output-folder-missing",
        ),
        pytest.param(
            ["edit", "photo.png", "x", "--format", "jpeg", "-o", "a.png"],
            "names a PNG file, but --format asks for JPEG",
            id="output-name-says-another-format",
        ),
        pytest.param(
            ["edit", "photo.png", "x", "-o", "out.webp"],
            "does not end in .png or .jpg",
            id="output-name-of-a-format-not-written",
        ),
        pytest.param(["edit", "notes.txt", "x"], "image", id="not-an-image"),
        pytest.param(["sessions", "show", "nope"], "no session", id="unknown-session"),
        pytest.param(["sessions", "import", "photo.png"], "not a Kontext Studio", id="not-a-zip"),
    ],
)
def test_bad_input_is_one_sentence_exit_2_and_writes_nothing(
    cli, workdir, sim, clean_env, args, words
):
    (workdir / "notes.txt").write_text("not a picture\n")
    before = sorted(p.name for p in workdir.iterdir())
    done = cli(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = [line for line in done.stderr.splitlines() if "simulator" not in line]
    assert line.startswith("kontext-studio: error: ")
    assert words in line
    assert sorted(p.name for p in workdir.iterdir()) == before
    assert sim.tasks == {}
    assert _sessions(clean_env) == []


def test_a_failed_task_exits_1_with_the_service_message(cli, workdir, sim):
    sim.faults.fail_tasks(message="Content moderated", times=1)
    done = cli("edit", "photo.png", "make it blue", "--json", "-v")
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["state"] == "failed"
    assert "Content moderated" in result["error"]
    assert result["paths"] == []
    assert "kontext-studio: error:" in done.stderr
    assert "Content moderated" in done.stderr
    assert not list(workdir.glob("*-1-make-it-blue.png"))


def test_a_refused_key_exits_1_and_never_shows_the_key(cli, sim):
    done = cli(
        "edit",
        "photo.png",
        "make it blue",
        "-v",
        extra_env={"RUNAPI_API_KEY": "sk-wrong-key-abcdef123456"},
    )
    assert done.returncode == 1
    assert "sk-wrong-key-abcdef123456" not in done.stdout + done.stderr
    assert "kontext-studio: error:" in done.stderr


def test_with_no_key_the_built_in_simulator_runs_and_says_so(cli, workdir):
    done = cli(
        "edit",
        "photo.png",
        "make it blue",
        extra_env={
            "RUNAPI_API_KEY": "",
            "RUNAPI_BASE_URL": "",
            "KONTEXT_STUDIO_SIM_LATENCY": "quick",
            "KONTEXT_STUDIO_POLL_SCALE": "",
        },
    )
    assert done.returncode == 0, done.stderr
    assert "simulator" in done.stderr.splitlines()[0]
    assert _is_image(Path(done.stdout.strip()))
    scripted = cli(
        "generate",
        "a red bicycle",
        "--json",
        extra_env={"RUNAPI_API_KEY": "", "KONTEXT_STUDIO_SIM_LATENCY": "quick"},
    )
    assert json.loads(scripted.stdout)["simulator"] is True  # scripts are told too


def test_ctrl_c_leaves_the_step_in_the_history_and_exits_130(env, workdir, sim, clean_env):
    sim.latency = "demo"  # seconds, so there is time to interrupt (reset per test restores it)
    proc = subprocess.Popen(
        [sys.executable, "-m", "studio.cli", "edit", "photo.png", "make it blue"],
        env=env,
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "pending" in line or "processing" in line:
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=COMMAND_TIMEOUT_S)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130
    assert "stays in the history" in err
    assert "Traceback" not in err
    assert out == ""
    [summary] = _sessions(clean_env)
    store = Store.open(clean_env)
    try:
        [unfinished] = store.unfinished_steps()
    finally:
        store.close()
    assert unfinished.session_id == summary.session_id
    assert unfinished.task_id in sim.tasks


def test_box_and_keep_rest_keep_the_photo_at_its_size_and_write_the_raw_output(cli, workdir, sim):
    from tests.support.engines import make_photo

    (workdir / "big.png").write_bytes(make_photo(1200, 900))
    mask = Image.new("L", (120, 90), 0)
    mask.paste(255, (30, 20, 90, 70))
    mask.save(workdir / "mask.png")
    edited = json.loads(
        cli("edit", "big.png", "add a hat", "--box", "100,100,400,300", "--json", "-q").stdout
    )
    chained = json.loads(
        cli(
            "chain", "big.png", "-p", "add a dog", "-p", "add snow", "--keep-rest", "--json", "-q"
        ).stdout
    )
    masked = json.loads(
        cli("compare", "big.png", "add a lamp", "--mask", "mask.png", "--json", "-q").stdout
    )
    steps = [*edited["steps"], *chained["steps"], *masked["steps"]]
    assert [s["region"] for s in steps] == ["box", "auto", "auto", "mask", "mask"]
    for step in steps:
        assert Image.open(step["path"]).size == (1200, 900)
        raw = Path(step["raw_path"])
        assert raw.name.endswith("-raw.png")
        assert Image.open(raw).size != (1200, 900)  # the model's own, about one megapixel
        assert step["raw_image_url"] == raw.as_uri()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--box", "10,10,wide,20"], "four whole numbers"),
        (["--box", "5000,10,20,20"], "outside the image"),
        (["--mask", "photo.png", "--box", "1,1,2,2"], "not allowed with"),
    ],
)
def test_a_bad_region_exits_2_with_one_sentence_and_creates_nothing(cli, sim, flags, message):
    creates = len(sim.tasks)
    done = cli("edit", "photo.png", "add a hat", *flags)
    assert done.returncode == 2
    assert message in done.stderr
    assert len(sim.tasks) == creates
