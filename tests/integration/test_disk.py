"""Disk: an image kept once (the store's copy), exports that go away, uploads only for a known
visitor and within their share. Real store, real Gradio upload folder, the simulator on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import gradio as gr
import pytest

from studio.ui import layout
from studio.ui.app import assets_dir
from studio.ui.bridge import Bridge
from studio.ui.files import (
    EXPORT_TTL_S,
    EXPORTS_KEPT,
    EXPORTS_PER_VISITOR,
    make_exports_folder,
    prune_exports,
    write_export,
)
from studio.ui.handlers import Handlers, PageContext
from tests.support.engines import make_engine, make_image

pytestmark = pytest.mark.anyio


@pytest.fixture
def page(sim, clean_env, tmp_path):
    bridge = Bridge(lambda: make_engine(clean_env, sim.base_url, sim.api_key))
    with gr.Blocks():
        c = layout.render(examples=[], browser_secret="test", banner="")
    ctx = PageContext(
        assets=assets_dir(), examples=[], exports=tmp_path, simulator=True, server_key=False
    )
    try:
        yield Handlers(c, bridge, ctx)
    finally:
        bridge.close()


def _uploaded(data: bytes, name: str) -> Path:
    """A file where Gradio's upload route leaves it."""
    folder = Path(gr.utils.get_upload_folder()) / os.urandom(8).hex()
    folder.mkdir(parents=True)
    path = folder / name
    path.write_bytes(data)
    return path


async def test_an_uploaded_image_is_kept_once_in_the_store(page, clean_env):
    data = make_image(320, 240)
    upload = _uploaded(data, "beach.png")
    await page.on_source(None, None, {"path": str(upload), "orig_name": "beach.png"})
    assert not upload.exists()
    stored = [p for p in (clean_env / "images").rglob("*.png")]
    assert [p.read_bytes() for p in stored] == [data]


async def test_a_refused_upload_is_not_kept_either(page):
    upload = _uploaded(b"<html>not an image</html>", "page.png")
    with pytest.warns(UserWarning, match="web page"):  # the toast, outside a running page
        await page.on_source(None, None, {"path": str(upload), "orig_name": "page.png"})
    assert not upload.exists()


async def test_an_imported_zip_upload_is_not_kept(page, sim, clean_env, tmp_path):
    engine = page.bridge.engine
    session = await engine.start_session(await engine.read_image(make_image()), name="s")
    upload = _uploaded(await engine.export_session(session.session_id), "s.zip")
    await page.on_import(None, None, str(upload))
    assert not upload.exists()
    assert len(await engine.list_sessions()) == 2


def test_exports_are_removed_when_old_or_too_many(tmp_path):
    written = [write_export(tmp_path, f"s{n}", b"zip") for n in range(EXPORTS_KEPT + 4)]
    kept = [p for p in written if p.exists()]
    assert len(kept) == EXPORTS_KEPT
    assert kept == written[-EXPORTS_KEPT:]
    # Unguessable folders: nothing in an export's link can be derived from the session.
    assert all(len(p.parent.name) >= 21 for p in kept)
    assert prune_exports(tmp_path, now=time.time() + EXPORT_TTL_S + 1) == EXPORTS_KEPT
    assert not any(p.exists() for p in written)


def test_one_visitors_exports_never_push_out_anothers(tmp_path):
    theirs = write_export(tmp_path, "b", b"zip", owner="browser:b")
    mine = [
        write_export(tmp_path, f"a{n}", b"zip", owner="browser:a") for n in range(EXPORTS_KEPT + 4)
    ]
    assert theirs.exists()
    assert [p for p in mine if p.exists()] == mine[-EXPORTS_PER_VISITOR:]


def _studio_with_exports(parent: Path) -> tuple[subprocess.Popen[str], Path]:
    """Another studio process that made its exports folder under `parent` and wrote an export."""
    code = (
        "import sys, time; from pathlib import Path; "
        "from studio.ui.files import make_exports_folder, write_export; "
        "f = make_exports_folder(Path(sys.argv[1])); write_export(f, 'a session', b'PK zip'); "
        "print(f, flush=True); time.sleep(600)"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(parent)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, Path(process.stdout.readline().strip())


def test_a_stopped_studios_exports_are_removed_when_the_next_starts(tmp_path):
    """A studio killed (or stopped) with exports waiting leaves them in the temporary directory;
    the next studio to start removes them, and never a running studio's."""
    killed, killed_folder = _studio_with_exports(tmp_path)
    running, running_folder = _studio_with_exports(tmp_path)
    try:
        killed.kill()
        killed.wait()
        assert any(killed_folder.rglob("*.zip"))
        mine = make_exports_folder(tmp_path)
        assert not killed_folder.exists()
        assert any(running_folder.rglob("*.zip"))
        assert mine.is_dir()
        assert mine != running_folder
    finally:
        running.kill()
        running.wait()
