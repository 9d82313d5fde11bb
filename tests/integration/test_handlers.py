"""The page's handlers without a browser: real bridge, engine, store and simulator on loopback.

Each handler returns (or yields) component updates; these tests read them as the page would.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest

from studio.ui import layout
from studio.ui.app import assets_dir
from studio.ui.bridge import Bridge
from studio.ui.handlers import Handlers, PageContext
from tests.support.engines import make_engine, make_image

pytestmark = pytest.mark.anyio


@pytest.fixture
def page(sim, clean_env, tmp_path):
    bridge = Bridge(lambda: make_engine(clean_env, sim.base_url, sim.api_key))
    with gr.Blocks():
        c = layout.render(examples=[], browser_secret="test", banner="")
    ctx = PageContext(
        assets=assets_dir(),
        examples=[],
        exports=tmp_path,
        simulator=True,
        server_key=False,
    )
    try:
        yield Handlers(c, bridge, ctx)
    finally:
        bridge.close()


def _photo(tmp_path: Path) -> str:
    path = tmp_path / "photo.png"
    path.write_bytes(make_image(320, 240))
    return str(path)


async def _run(stream) -> list[dict]:
    return [update async for update in stream]


async def _edit(h: Handlers, session_id: str, prompt: str, safety: float = 2) -> list[dict]:
    return await _run(
        h.on_edit(session_id, prompt, "pro", "match", "png", True, False, safety, None)
    )


async def test_an_upload_starts_a_session_showing_the_image(page, tmp_path):
    shown = await page.on_source(None, _photo(tmp_path))
    c = page.c
    assert shown[c.status] == "Ready: type an instruction and press Enter."
    assert shown[c.source].endswith(".png")
    assert shown[c.browser]  # the browser remembers the new session
    assert len(await page.bridge.list_sessions()) == 1


async def test_a_file_that_is_not_an_image_is_refused_in_one_sentence_and_nothing_is_stored(
    page, tmp_path
):
    path = tmp_path / "notes.html"
    path.write_text("<html><body>hello</body></html>")
    with pytest.warns(UserWarning, match="web page"):
        shown = await page.on_source(None, str(path))
    assert shown[page.c.status].startswith("⚠ The file is a web page")
    assert await page.bridge.list_sessions() == []


async def test_an_edit_clears_the_instruction_shows_progress_then_the_result(page, tmp_path):
    session_id = (await page.on_source(None, _photo(tmp_path)))[page.c.browser]
    updates = await _edit(page, session_id, "make it blue")
    c = page.c
    assert updates[0][c.prompt] == ""
    # What is typed next is never wiped.
    assert all(u.get(c.prompt, gr.skip()) == gr.skip() for u in updates[1:])
    final = updates[-1]
    assert final[c.status].startswith("✓ Done in")
    assert [caption for _, caption in final[c.history]][-1].endswith("make it blue")
    assert final[c.result]
    assert final[c.result] != final[c.slider][0]


async def test_undo_and_redo_move_along_the_chain(page, tmp_path):
    session_id = (await page.on_source(None, _photo(tmp_path)))[page.c.browser]
    await _edit(page, session_id, "make it blue")
    c = page.c
    undone = await page.on_undo(session_id)
    assert undone[c.status] == "Ready: type an instruction and press Enter."
    assert len(undone[c.history]) == 1
    redone = await page.on_redo(session_id)
    assert redone[c.status].startswith("✓ Done")


async def test_compare_on_a_failed_step_checks_the_edit_limits(page, sim, tmp_path):
    session_id = (await page.on_source(None, _photo(tmp_path)))[page.c.browser]
    sim.faults.fail_tasks(message="Content moderated", times=1)
    failed = await _edit(page, session_id, "make it blue")
    assert failed[-1][page.c.status] == "✗ Failed: The edit failed on RunAPI: Content moderated."
    creates = len(sim.tasks)
    with pytest.warns(UserWarning, match="0 to 2 when editing"):
        refused = await _run(
            page.on_compare(session_id, "make it red", "match", "png", True, False, 6, None)
        )
    assert refused[-1][page.c.status] == (
        "⚠ The safety tolerance must be a whole number from 0 to 2 when editing."
    )
    assert len(sim.tasks) == creates  # nothing was created, nothing paid
    session = await page.bridge.load_session(session_id)
    assert len(session.steps) == 2  # the original and the failed step, nothing more


async def test_keep_without_a_comparison_says_so(page, tmp_path):
    session_id = (await page.on_source(None, _photo(tmp_path)))[page.c.browser]
    with pytest.warns(UserWarning, match="no comparison"):
        shown = await page.on_keep_max(session_id, None)
    assert "run Compare first" in shown[page.c.status]


async def test_compare_shows_both_results_and_keep_max_continues_from_max(page, tmp_path):
    session_id = (await page.on_source(None, _photo(tmp_path)))[page.c.browser]
    updates = await _run(
        page.on_compare(session_id, "make it red", "match", "png", True, False, 2, None)
    )
    c = page.c
    final = updates[-1]
    assert final[c.compare_pro]
    assert final[c.compare_max]
    assert "✓" in final[c.compare_pro_text]
    assert "✓" in final[c.compare_max_text]
    kept = await page.on_keep_max(session_id, final[c.compare_pair])
    assert " · max · " in kept[c.status]
