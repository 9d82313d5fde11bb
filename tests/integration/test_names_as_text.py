"""A session's name is the visitor's text: the page shows it as text in every sentence that
quotes it (renamed, deleted, the delete question), never as links, images or HTML."""

from __future__ import annotations

import gradio as gr
import pytest

from studio.ui import layout
from studio.ui.app import assets_dir
from studio.ui.bridge import Bridge
from studio.ui.handlers import Handlers, PageContext
from tests.support.engines import make_engine, make_image

pytestmark = pytest.mark.anyio
NAME = '<img src="http://127.0.0.1:9/x.png"> [a](http://127.0.0.1:9/) **b**'


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


def _no_markup(text: str) -> None:
    assert "<img" not in text
    assert "](" not in text
    assert "http://" not in text
    assert "**" not in text


async def test_renamed_deleted_and_the_delete_question_show_a_name_as_text(page):
    engine = page.bridge.engine
    session = await engine.start_session(await engine.read_image(make_image()), name="s")
    sid = session.session_id
    renamed = await page.on_rename(sid, None, NAME)
    _no_markup(str(renamed[page.c.status]))
    asked = await page.on_delete_ask(sid, None)
    _no_markup(str(asked[page.c.delete_text]))
    gone = await page.on_delete(sid, None)
    _no_markup(str(gone[page.c.status]))
