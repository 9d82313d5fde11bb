"""The page's handlers without a browser: real bridge, engine, store and simulator on loopback.

Each handler returns (or yields) component updates; these tests read them as the page would.
"""

from __future__ import annotations

import asyncio
import itertools
import warnings
from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

from studio.ui import layout
from studio.ui.app import assets_dir
from studio.ui.bridge import Bridge, Engine
from studio.ui.handlers import SAID_S, Handlers, PageContext
from studio.ui.key import KeyHandlers
from tests.support.engines import make_engine, make_image
from tests.support.tree import read_tree

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


async def _start(h: Handlers, tmp_path: Path) -> tuple[str, str]:
    shown = await h.on_source(None, None, _photo(tmp_path))
    return shown[h.c.browser], shown[h.c.tab_step]


async def _settle(h: Handlers, session_id: str, shown: dict, pair=None) -> list[dict]:
    """Tick as the page's timer does until nothing runs, then once more from scratch (a reload
    of the tab's view); every tick's update, in order."""
    c, ticks = h.c, []
    version, tab_step = shown[c.version], shown[c.tab_step]
    for _ in range(400):
        idle = not h.bridge.engine.running(session_id)
        # Once idle, a version of this session the tab never saw: a full render, as on reload.
        seen = f"{session_id}@never" if idle else version
        update = await h.on_tick(session_id, tab_step, seen, pair)
        ticks.append(update)
        if idle:
            return ticks
        version = update.get(c.version, version)
        await asyncio.sleep(0.05)
    raise AssertionError("the session never settled")


def _tree(html: str):
    return read_tree(html)


def _act(verb: str) -> gr.EventData:
    """A click on a plain button of the page (+ New, undo, a panel's toggle), as it sends it."""
    return gr.EventData(None, {"act": verb})


_NEW = _act("new")


def _value(update):
    """What a component update shows (a component instance, or a bare value)."""
    return update.constructor_args.get("value") if hasattr(update, "constructor_args") else update


def _visible(update) -> bool:
    """Whether a component update shows it (`gr.update(...)`, or a component instance)."""
    if isinstance(update, dict):
        return update.get("visible") is True
    return getattr(update, "constructor_args", {}).get("visible") is True


async def _edit(h: Handlers, session_id, tab_step, prompt: str, safety=2, *more):
    form = ("match", "png", True, False, safety, None)
    return await h.on_edit(session_id, tab_step, prompt, "pro", *form, *more)


async def test_an_upload_starts_a_session_showing_the_image(page, tmp_path):
    shown = await page.on_source(None, None, _photo(tmp_path))
    c = page.c
    assert shown[c.status] == "Ready: type an instruction and press Enter."
    assert _value(shown[c.result]).endswith(".png")  # the canvas shows it
    assert shown[c.browser]  # the browser remembers the new session
    assert len(await page.bridge.call(Engine.list_sessions)) == 1


async def test_a_file_that_is_not_an_image_is_refused_in_one_sentence_and_nothing_is_stored(
    page, tmp_path
):
    path = tmp_path / "notes.html"
    path.write_text("<html><body>hello</body></html>")
    with pytest.warns(UserWarning, match="web page"):
        shown = await page.on_source(None, None, str(path))
    assert shown[page.c.status].startswith("⚠ The file is a web page")
    assert await page.bridge.call(Engine.list_sessions) == []


async def test_an_edit_returns_at_once_then_the_timer_shows_progress_and_the_result(page, tmp_path):
    session_id, origin = await _start(page, tmp_path)
    c = page.c
    queued = await _edit(page, session_id, origin, "make it blue")
    assert c.prompt not in queued  # only the page itself empties the box
    assert queued[c.tab_step] != origin  # the tab now shows the new step
    assert queued[c.status].startswith("◷")
    # The canvas keeps the image the edit builds on; the status under it says a run is on.
    assert _value(queued[c.result]).endswith(".png")
    ticks = await _settle(page, session_id, queued)
    final = ticks[-1]
    assert final[c.status].startswith("✓ Done in")
    assert c.tab_step not in final  # a tick never moves the tab
    assert _tree(final[c.history]).line[-1].startswith("Step 1: make it blue")
    assert _value(final[c.result]) != _value(final[c.before])
    assert all(c.prompt not in t for t in ticks)  # never wipes typing


async def test_instructions_typed_during_an_edit_run_in_order_on_each_result(page, tmp_path, sim):
    session_id, tab_step = await _start(page, tmp_path)
    steps = []
    for prompt in ("make it blue", "add snow", "make it night"):
        shown = await _edit(page, session_id, tab_step, prompt)
        tab_step = shown[page.c.tab_step]
        steps.append(tab_step)
    await _settle(page, session_id, shown)
    session = await page.bridge.call(Engine.load_session, session_id)
    path = session.make_current(steps[-1]).path()
    assert [s.params.prompt for s in path[1:]] == ["make it blue", "add snow", "make it night"]
    assert all(s.state == "completed" for s in path)
    for parent, child in itertools.pairwise(path[1:]):
        received = sim.tasks[child.task_id].source_bytes
        assert received == await page.bridge.engine.image_bytes(parent.result)


async def test_an_edit_builds_on_the_step_the_tab_shows_not_on_the_current_one(page, tmp_path):
    session_id, origin = await _start(page, tmp_path)
    first = await _edit(page, session_id, origin, "make it blue")
    await _settle(page, session_id, first)
    # Another tab (or the CLI) moved the session on meanwhile; this tab still shows the original.
    await _edit(page, session_id, first[page.c.tab_step], "add snow")
    second = await _edit(page, session_id, origin, "make it red")
    await _settle(page, session_id, second)
    session = await page.bridge.call(Engine.load_session, session_id)
    assert session.steps[second[page.c.tab_step]].parent_id == origin


async def test_undo_and_redo_move_along_the_chain(page, tmp_path):
    session_id, origin = await _start(page, tmp_path)
    shown = await _edit(page, session_id, origin, "make it blue")
    await _settle(page, session_id, shown)
    c = page.c
    undone = await page.on_history_tool(session_id, shown[c.tab_step], _act("undo"))
    assert undone[c.status] == "Ready: type an instruction and press Enter."
    assert undone[c.tab_step] == origin
    # The undone step is on the line ahead (Redo), the original is the highlighted one.
    tree = _tree(undone[c.history])
    assert (len(tree.line), tree.current, tree.ahead) == (2, 0, [1])
    redone = await page.on_history_tool(session_id, origin, _act("redo"))
    assert redone[c.status].startswith("✓ Done")


async def test_instructions_typed_ahead_chain_even_before_the_page_heard_back(page, tmp_path):
    # Three Enters of one tab, each sent before the reply to the one before reached the page:
    # all three carry the step the tab showed then. Numbered, they chain in the order typed.
    session_id, origin = await _start(page, tmp_path)
    tab = gr.Request(session_hash="tab-1", headers={}, cookies={})
    shown = None
    for n, prompt in enumerate(("make it blue", "add snow", "make it night"), 1):
        shown = await _edit(page, session_id, origin, prompt, 2, str(n), False, "1", tab)
    await _settle(page, session_id, shown)
    session = await page.bridge.call(Engine.load_session, session_id)
    path = session.make_current(shown[page.c.tab_step]).path()
    assert [s.params.prompt for s in path[1:]] == ["make it blue", "add snow", "make it night"]
    assert _tree(shown[page.c.history]).done == 3  # the page drops its own queued tiles


async def test_an_enter_sent_after_some_replies_arrived_still_follows_the_one_before(
    page, tmp_path
):
    # The second Enter left before the reply to the first reached the page (it carries the
    # original); the third after that reply only (it carries the first edit's step). Each still
    # follows the one before it: nothing branches that was typed as a chain.
    session_id, origin = await _start(page, tmp_path)
    tab = gr.Request(session_hash="tab-1", headers={}, cookies={})
    first = await _edit(page, session_id, origin, "make it blue", 2, "1", False, "1", tab)
    await _edit(page, session_id, origin, "add snow", 2, "2", False, "1", tab)
    shown = await _edit(
        page, session_id, first[page.c.tab_step], "make it night", 2, "3", False, "1", tab
    )
    session = await page.bridge.call(Engine.load_session, session_id)
    path = session.make_current(shown[page.c.tab_step]).path()
    assert [s.params.prompt for s in path[1:]] == ["make it blue", "add snow", "make it night"]
    await _settle(page, session_id, shown)


async def test_an_edit_a_cli_run_left_open_shows_no_cancel_on_the_page(
    page, tmp_path, sim, clean_env
):
    """A CLI run ended at its deadline with its edit left open (its create may have reached
    RunAPI, so it can no longer be cancelled). The page drew a ✕ on it anyway, whose click only
    said so; a step that is queued and can be cancelled keeps its ✕."""
    from studio.params import EditParams

    session_id, _ = await _start(page, tmp_path)
    sim.faults.server_error(503, times=10_000)  # RunAPI answers nothing but 503 for now
    cli = make_engine(clean_env, sim.base_url, sim.api_key, task_deadline_s=1.5)
    left = await cli.edit(session_id, EditParams(prompt="blue"))
    await cli.aclose()
    shown = await page.on_tick(session_id, left.step_id, f"{session_id}@never", None)
    tree = _tree(shown[page.c.history])
    assert tree.line[-1].startswith("Step 1: blue")
    assert left.step_id not in tree.cancels
    queued = await _edit(page, session_id, left.step_id, "add snow")
    assert _tree(queued[page.c.history]).cancels == [queued[page.c.tab_step]]
    cancelled = await page.on_history_click(
        session_id,
        queued[page.c.tab_step],
        gr.EventData(None, {"act": "cancel", "step": queued[page.c.tab_step]}),
    )
    session = await page.bridge.call(Engine.load_session, session_id)
    assert queued[page.c.tab_step] not in session.steps
    assert left.step_id in session.steps
    assert cancelled[page.c.tab_step] == left.step_id
    sim.faults.reset()


async def test_cancelling_a_queued_tile_removes_that_one_only(page, tmp_path, sim):
    session_id, origin = await _start(page, tmp_path)
    first = await _edit(page, session_id, origin, "make it blue")
    middle = await _edit(page, session_id, first[page.c.tab_step], "add snow")
    last = await _edit(page, session_id, middle[page.c.tab_step], "make it night")
    assert _tree(last[page.c.history]).cancels[-2:] == [
        middle[page.c.tab_step],
        last[page.c.tab_step],
    ]
    click = gr.EventData(None, {"act": "cancel", "step": middle[page.c.tab_step]})
    cancelled = await page.on_history_click(session_id, last[page.c.tab_step], click)
    assert cancelled[page.c.tab_step] == last[page.c.tab_step]  # the tab stays where it was
    # Its words go back into the box (the page puts them there), as an undo's do.
    assert 'data-withdrawn-text="add snow"' in cancelled[page.c.history]
    assert "back in the box" in cancelled[page.c.status]
    await _settle(page, session_id, cancelled)
    session = await page.bridge.call(Engine.load_session, session_id)
    path = session.make_current(last[page.c.tab_step]).path()
    assert [s.params.prompt for s in path[1:]] == ["make it blue", "make it night"]
    assert len(sim.tasks) == 2  # the cancelled edit was never sent


async def test_compare_on_a_failed_step_checks_the_edit_limits(page, sim, tmp_path):
    session_id, origin = await _start(page, tmp_path)
    sim.faults.fail_tasks(message="Content moderated", times=1)
    failed = await _edit(page, session_id, origin, "make it blue")
    ticks = await _settle(page, session_id, failed)
    assert ticks[-1][page.c.status] == "✗ Failed: The edit failed on RunAPI: Content moderated."
    creates = len(sim.tasks)
    with pytest.warns(UserWarning, match="0 to 2 when editing"):
        refused = await page.on_compare(
            session_id, failed[page.c.tab_step], "make it red", "match", "png", True, False, 6, None
        )
    assert refused[page.c.status] == (
        "⚠ The safety tolerance must be a whole number from 0 to 2 when editing."
    )
    assert len(sim.tasks) == creates  # nothing was created, nothing paid
    session = await page.bridge.call(Engine.load_session, session_id)
    assert len(session.steps) == 2  # the original and the failed step, nothing more


async def test_keep_without_candidates_says_so(page, tmp_path):
    session_id, origin = await _start(page, tmp_path)
    click = gr.EventData(None, {"act": "keep", "step": "not-a-step"})
    with pytest.warns(UserWarning, match="no step"):
        shown = await page.on_history_click(session_id, origin, click)
    assert shown[page.c.status].startswith("⚠")


async def test_pro_vs_max_shows_both_results_and_keeping_max_continues_from_max(page, tmp_path):
    session_id, origin = await _start(page, tmp_path)
    c = page.c
    started = await page.on_compare(
        session_id, origin, "make it red", "match", "png", True, False, 2, None
    )
    assert started[c.status] == "◷ 2 results on their way: keep the one you like."
    picks = started[c.picks]
    ticks = await _settle(page, session_id, started, picks)
    panel = _value(ticks[-1][c.candidates])
    assert panel.count('data-act="keep"') == 2
    assert "pro ✓" in panel
    assert "max ✓" in panel
    kept = await page.on_history_click(
        session_id, origin, gr.EventData(None, {"act": "keep", "step": picks[1]})
    )
    assert " · max · " in kept[c.status]
    assert kept[c.status].endswith("Kept: next edits use max.")
    assert kept[c.options].props["model"] == f"max|{picks[1]}"  # the next edit takes max
    assert kept[c.tab_step] == picks[1]


async def test_a_tick_that_crossed_an_edit_never_moves_the_tab_and_is_drawn_again(page, tmp_path):
    session_id, origin = await _start(page, tmp_path)
    c = page.c
    # The page as drawn at the origin (a version of this session it never saw: drawn in full).
    first = await page.on_tick(session_id, origin, f"{session_id}@never|{origin}", None)
    edited = await _edit(page, session_id, origin, "make it blue")
    # A tick sent before the edit answered still carries the origin as the tab's step.
    stale = await page.on_tick(session_id, origin, first[c.version], None)
    assert c.tab_step not in stale
    # The next tick carries the tab's real step: it sees the stale drawing and draws again.
    healed = await page.on_tick(session_id, edited[c.tab_step], stale[c.version], None)
    assert _tree(healed[c.history]).line[-1].startswith("Step 1: make it blue")
    await _settle(page, session_id, edited)


async def test_the_timer_leaves_an_idle_page_alone_and_hands_news_on_to_be_drawn(page, tmp_path):
    session_id, origin = await _start(page, tmp_path)
    c = page.c
    first = await page.on_tick(session_id, origin, f"{session_id}@never|{origin}", None)
    # Nothing new: the timer's tick leaves the page alone.
    assert await page.on_beat(session_id, origin, first[c.version], None) == {c.status: gr.skip()}
    edited = await _edit(page, session_id, origin, "make it blue")
    # News (an edit, as another tab sees it) sets `news`, whose change draws the page: a new
    # value at each tick, so that each is a change.
    beats = [await page.on_beat(session_id, origin, first[c.version], None) for _ in range(2)]
    assert [set(b) for b in beats] == [{c.news}, {c.news}]
    assert beats[0][c.news] != beats[1][c.news]
    drawn = await page.on_tick(session_id, origin, first[c.version], None)
    assert _tree(drawn[c.history]).line[-1].startswith("Step 1: make it blue")
    await _settle(page, session_id, edited)


async def test_an_upload_is_named_after_its_file_and_a_paste_after_its_first_instruction(
    page, tmp_path
):
    path = _photo(tmp_path)
    await page.on_source(None, None, {"path": path, "orig_name": "Beach day.png"})
    await page.on_source(None, None, {"path": path, "orig_name": "image.png"})  # a paste
    names = sorted(s.name for s in await page.bridge.call(Engine.list_sessions))
    assert names == ["Beach day.png", "Untitled session"]


async def test_a_new_session_stores_nothing_until_an_instruction_generates_in_it(
    page, tmp_path, sim
):
    session_id, origin = await _start(page, tmp_path)
    cleared = await page.on_header_click(session_id, origin, _NEW)
    c = page.c
    assert cleared[c.browser] is None
    assert cleared[c.tab_step] is None
    assert len(await page.bridge.call(Engine.list_sessions)) == 1  # nothing empty left behind
    shown = await _edit(page, None, None, "a red bicycle", safety=5)  # 5 is fine for a generation
    new_id = shown[c.browser]
    assert new_id != session_id
    await _settle(page, new_id, shown)
    generated = await page.bridge.call(Engine.load_session, new_id)
    assert generated.current.kind == "generate"
    assert generated.name == "a red bicycle"
    (task,) = sim.tasks.values()
    assert task.source_bytes is None  # nothing was edited
    assert (
        len((await page.bridge.call(Engine.load_session, session_id)).steps) == 1
    )  # the old one as it was


async def test_the_safety_slider_top_follows_whether_the_next_step_edits(page, tmp_path):
    session_id, origin = await _start(page, tmp_path)
    # (Filled in when Advanced opens.)
    opened = await page.on_fold(session_id, origin, None, None, 5, _act("advanced"))
    assert opened[page.c.folds["advanced"]].visible is True
    editing = opened[page.c.safety]
    assert (editing.maximum, editing.value) == (2, 2)
    generating = (await page.on_fold(None, None, None, None, 5, _act("advanced")))[page.c.safety]
    assert (generating.maximum, generating.value) == (6, 5)
    # A name the page has no panel under changes nothing.
    # (Its one answer is among the event's outputs: the status line is not, and Gradio
    # answered that with an error and a traceback.)
    assert await page.on_fold(session_id, origin, None, None, 5, _act("status")) == {
        page.c.delete_confirm: gr.skip()
    }


async def test_the_download_is_named_after_the_session_and_step(page, tmp_path):
    shown = await page.on_source(None, None, {"path": _photo(tmp_path), "orig_name": "Cat.png"})
    session_id = shown[page.c.browser]
    done = await _edit(page, session_id, shown[page.c.tab_step], "make it blue")
    final = (await _settle(page, session_id, done))[-1]
    download = Path(final[page.c.download].constructor_args["value"])
    assert download.name == "cat-png-step-1.png"
    session = await page.bridge.call(Engine.load_session, session_id)
    stored = page.bridge.image_path(session.current)
    same = await asyncio.to_thread(lambda: download.read_bytes() == Path(stored).read_bytes())
    assert same


async def test_the_download_is_the_image_with_a_data_folder_given_relative(
    sim, clean_env, tmp_path, monkeypatch
):
    """Started with `--home data/a`, Download failed without a word: its named copy was a link
    to a relative path, pointing nowhere from the downloads folder (UX audit 10)."""
    monkeypatch.chdir(clean_env.parent)
    relative = Path(clean_env.name)
    bridge = Bridge(lambda: make_engine(relative, sim.base_url, sim.api_key))
    with gr.Blocks():
        c = layout.render(examples=[], browser_secret="test", banner="")
    ctx = PageContext(
        assets=assets_dir(), examples=[], exports=tmp_path, simulator=True, server_key=False
    )
    h = Handlers(c, bridge, ctx)
    try:
        shown = await h.on_source(None, None, {"path": _photo(tmp_path), "orig_name": "Cat.png"})
        session_id = shown[c.browser]
        done = await _edit(h, session_id, shown[c.tab_step], "make it blue")
        final = (await _settle(h, session_id, done))[-1]
        download = Path(final[c.download].constructor_args["value"])
        session = await bridge.call(Engine.load_session, session_id)
        stored = bridge.image_path(session.current)
        same = await asyncio.to_thread(lambda: download.read_bytes() == Path(stored).read_bytes())
        assert same
    finally:
        bridge.close()


async def test_rename_then_delete_after_a_confirmation(page, tmp_path):
    first, _ = await _start(page, tmp_path)
    second, tab = await _start(page, tmp_path)
    c = page.c
    renamed = await page.on_rename(second, tab, "  Holiday   photos ")
    assert renamed[c.session_name] == "Holiday photos"
    listed = _value(renamed[c.header])  # the session list, in HTML
    assert f'data-act="open" data-step="{second}"' in listed
    assert '<span class="name">Holiday photos</span>' in listed
    asked = await page.on_delete_ask(second, tab)
    assert "Delete “Holiday photos” with its 0 steps" in asked[c.delete_text]
    assert asked[c.delete_confirm].visible is True
    assert len(await page.bridge.call(Engine.list_sessions)) == 2  # asking deletes nothing
    deleted = await page.on_delete(second, tab)
    assert deleted[c.browser] == first  # the page goes on with the session that is left
    assert deleted[c.status] == "Deleted “Holiday photos” and the images only it used."
    assert [s.session_id for s in await page.bridge.call(Engine.list_sessions)] == [first]


async def test_deleting_one_of_two_sessions_of_one_name_names_it_as_the_list_does(page, tmp_path):
    """Deleting "Rocket example (2)" said "Deleted 'Rocket example'" while that one was still
    in the list (UX audit 12): the question and the answer name it as the list does."""
    first, _ = await _start(page, tmp_path)
    second, tab = await _start(page, tmp_path)
    c = page.c
    for session_id in (first, second):
        await page.on_rename(session_id, tab, "Holiday")
    asked = await page.on_delete_ask(second, tab)
    assert "Delete “Holiday (2)”" in asked[c.delete_text]
    deleted = await page.on_delete(second, tab)
    assert deleted[c.status] == "Deleted “Holiday (2)” and the images only it used."


async def test_a_session_deleted_in_another_tab_is_said_so_and_the_next_edit_starts_anew(
    page, tmp_path
):
    """Another tab deleted the session this one shows: it said only "There is no such
    session.", looked like the start page, and refused every instruction typed there with the
    same sentence (UX audit 5). It says what happened, forgets the session, and the next
    instruction starts a new one."""
    c = page.c
    session_id, origin = await _start(page, tmp_path)
    shown = await page.on_tick(session_id, origin, f"{session_id}@never", None)
    await page.on_delete(session_id, origin)  # (from the other tab)
    gone = await page.on_tick(session_id, origin, shown[c.version], None)
    assert "no longer here" in gone[c.status]
    assert "deleted" in gone[c.status]
    assert gone[c.browser] is None  # the page forgets it
    form = ("match", "png", True, False, 2, None)
    made = await page.on_edit(None, None, "a red bicycle on white", "pro", *form)
    assert made[c.browser] not in (None, session_id)
    assert "no such session" not in str(made.get(c.status, "")).lower()


async def test_a_wrong_pasted_key_is_named_at_once_and_an_edit_with_it_is_refused(
    page, tmp_path, sim
):
    session_id, origin = await _start(page, tmp_path)
    c = page.c
    keys = _key_handlers(page)
    checked = await keys.on_key("sk-pasted-but-wrong", False)
    assert checked[c.key_note].startswith("⚠ RunAPI did not accept the key you pasted")
    assert "refused the key you pasted" in checked[c.header].props["banner"]
    form = ("match", "png", True, False, 2, "sk-pasted-but-wrong")
    with pytest.warns(UserWarning, match="the key you pasted"):
        refused = await page.on_edit(session_id, origin, "make it blue", "pro", *form)
    assert c.prompt not in refused  # the page puts what was typed back in the box
    assert "the key you pasted" in refused[c.status]
    assert (
        len((await page.bridge.call(Engine.load_session, session_id)).steps) == 1
    )  # no failed step
    assert "sk-pasted-but-wrong" not in repr(refused)

    accepted = await keys.on_key(sim.api_key, True)
    assert accepted[c.key_note].startswith("✓ RunAPI accepted your key.")
    assert "$" not in accepted[c.key_note]  # (the header's balance follows the edits; this not)
    assert accepted[c.key_store] == sim.api_key  # kept in the browser, as asked
    assert "remembered in this browser" in accepted[c.header].props["banner"]
    forgotten = await keys.on_remember(sim.api_key, False)
    assert forgotten[c.key_store] is None


def _key_handlers(page: Handlers) -> KeyHandlers:
    return KeyHandlers(
        page.c,
        page.bridge,
        simulator=True,
        server_key=False,
        hosted=False,
        tab_keys=page.ctx.tab_keys,
    )


async def test_a_key_pasted_in_a_tab_comes_back_into_its_box_after_a_reload(page, tmp_path, sim):
    """A key pasted without "Remember" was gone after a reload of the tab, without a word
    until the next Enter was refused. The tab keeps a token (never the key); the load given
    that token puts the key back in the box (whose change checks it again)."""
    session_id, _ = await _start(page, tmp_path)
    c = page.c
    keys = _key_handlers(page)
    pasted = await keys.on_key(sim.api_key, False, "")
    token = pasted[c.key_token]
    assert token
    assert sim.api_key not in token
    assert pasted[c.key_store] is None  # not remembered in the browser: not asked
    loaded = await page.on_load(session_id, None, token)
    assert loaded[c.user_key]["value"] == sim.api_key
    # Checked again as it goes back into the box: the same token, nothing more held.
    again = await keys.on_key(sim.api_key, False, token)
    assert again[c.key_token] == token
    assert len(page.ctx.tab_keys) == 1
    # A token that is not one, or another tab's that was emptied, puts nothing back.
    assert "value" not in (await page.on_load(session_id, None, "made-up"))[c.user_key]
    cleared = await keys.on_key("", False, token)
    assert cleared[c.key_token] == ""
    assert len(page.ctx.tab_keys) == 0
    assert "value" not in (await page.on_load(session_id, None, token))[c.user_key]


async def test_a_pasted_key_with_letters_no_key_has_gets_one_sentence_and_reaches_no_log(
    page, tmp_path, sim, caplog
):
    caplog.set_level("DEBUG")
    session_id, origin = await _start(page, tmp_path)
    keys = _key_handlers(page)
    pasted = "sk-SECRETKEY-999 \u0436"
    checked = await keys.on_key(pasted, False)
    assert checked[page.c.key_note].startswith("⚠ RunAPI did not accept the key you pasted")
    form = ("match", "png", True, False, 2, pasted)
    with pytest.warns(UserWarning, match="the key you pasted"):
        await page.on_edit(session_id, origin, "make it blue", "pro", *form)
    assert not [r for r in sim.requests if "SECRETKEY" in str(r.headers)]  # never sent
    assert "SECRETKEY" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]  # no traceback either


async def test_a_tick_between_two_renders_never_pulls_the_page_back(page, tmp_path):
    # The browser's storage still names the session the page showed before, while the version
    # already belongs to the one it shows now (states arrive one by one): nothing is re-rendered.
    old, _ = await _start(page, tmp_path)
    shown = await page.on_source(None, None, _photo(tmp_path))
    c = page.c
    tick = await page.on_tick(old, shown[c.tab_step], shown[c.version], None)
    assert tick == {c.status: gr.skip()}
    cleared = await page.on_header_click(shown[c.browser], shown[c.tab_step], _NEW)
    assert await page.on_tick(old, None, cleared[c.version], None) == {c.status: gr.skip()}


async def test_a_tick_sent_before_the_tab_left_its_session_never_pulls_it_back(page, tmp_path):
    # The tab's timer fired while + New, or a delete, was on its way: the tick names the session
    # the tab is leaving. The reply that moved the tab shows what follows; the tick must not
    # draw that session back over it (nor its browser storage).
    first, _ = await _start(page, tmp_path)
    c = page.c
    tab = gr.Request(session_hash="tab-1", headers={}, cookies={})
    picked = gr.EventData(None, {"act": "open", "step": first})
    shown = await page.on_header_click(first, None, picked, tab)
    assert shown[c.browser] == first
    await page.on_header_click(first, shown[c.tab_step], _NEW, tab)
    # (A tick that saw the session change meanwhile: it would draw the whole page again.)
    stale = f"{first}@never|{shown[c.tab_step]}"
    tick = await page.on_tick(first, shown[c.tab_step], stale, None, None, tab)
    assert tick == {c.status: gr.skip()}

    second = await page.on_source(None, None, _photo(tmp_path), tab)
    deleted = await page.on_delete(second[c.browser], second[c.tab_step], tab)
    assert deleted[c.browser] == first
    tick = await page.on_tick(second[c.browser], second[c.tab_step], second[c.version], None, tab)
    assert tick == {c.status: gr.skip()}
    # The session the tab shows now still gets its news.
    news = await page.on_tick(first, None, f"{first}@never|", None, None, tab)
    assert news[c.browser] == first


async def test_the_slider_for_a_session_it_may_not_open_changes_only_itself(page, tmp_path):
    # Replayed with a session id that is not the caller's (or not at all): the slider's event
    # updates only its own two outputs (Gradio fails an event whose reply names others).
    shown = await page.on_pair("not-a-session-of-yours", None, "a", "b")
    assert set(shown) <= {page.c.slider, page.c.pair_note}


async def test_an_upload_gone_before_its_handler_read_it_gets_one_sentence(page, tmp_path):
    # The same file sent twice at once: Gradio hands both events one path, the first takes it.
    gone = str(tmp_path / "sent-twice.zip")
    for handler in (page.on_import, page.on_source):
        with pytest.warns(UserWarning, match="no longer here"):
            shown = await handler(None, None, gone)
        assert "no longer here" in str(shown[page.c.status])


async def test_steps_of_two_shapes_are_fitted_into_one_frame_under_a_name_nobody_can_guess(
    page, tmp_path
):
    session_id, origin = await _start(page, tmp_path)  # 4:3
    form = ("1:1", "png", True, False, 2, None)
    shown = await page.on_edit(session_id, origin, "make it square", "pro", *form)
    await _settle(page, session_id, shown)
    session = await page.bridge.call(Engine.load_session, session_id)
    square = session.current
    assert square.result.width == square.result.height
    pair = await page.on_pair(session_id, None, origin, square.step_id)
    assert "differ in shape" in pair[page.c.pair_note]
    left, right = _value(pair[page.c.slider])
    fitted = Path(str(getattr(right, "path", right)))
    assert await asyncio.to_thread(fitted.is_file)
    # Both show in one frame: the fitted copy has the left step's shape (at the page's size).
    with Image.open(Path(str(getattr(left, "path", left)))) as a, Image.open(fitted) as b:
        assert abs(a.width / a.height - b.width / b.height) < 0.01
        assert max(b.size) <= max(a.size)
    # Its address says nothing of the two images (whoever knew their hashes could fetch it).
    left_sha = Path(str(getattr(left, "path", left))).stem
    assert left_sha[:16] not in fitted.name
    assert square.result.sha256[:16] not in fitted.name


def test_an_update_of_one_prop_sends_that_prop_and_no_python_object(page):
    """Gradio takes any name quoted in a block's script for an event of the block's; an update of
    one prop would then also send the block's other props as the repr of a Python function (a
    memory address of the server, in every balance and banner the page was sent)."""
    from dataclasses import fields

    from gradio.blocks import postprocess_update_dict

    every = [getattr(page.c, f.name) for f in fields(page.c)]
    blocks = [b for b in every if isinstance(b, gr.HTML) and b.props]
    assert blocks, "the page has HTML blocks with props"
    for block in blocks:
        for name in block.props:
            sent = postprocess_update_dict(block, {name: "<p>x</p>"})
            assert sent["props"] == {name: "<p>x</p>"}
            others = {k: v for k, v in sent.items() if k not in ("props", "__type__")}
            assert others == {}, (block.elem_id, name, others)


def test_the_page_config_names_no_address_of_the_server():
    """Every visitor is sent the page's config: a Python object's repr in it (a tab state's
    callback was one) tells them where the server's code sits in memory."""
    import json
    import re

    with gr.Blocks() as demo:
        layout.render(examples=[], browser_secret="test", banner="")
    text = json.dumps(demo.get_config_file(), default=str)
    assert "delete_callback" in text
    assert not re.search(r" at 0x[0-9a-f]+", text)


def test_what_no_one_opened_loads_no_code_with_the_page():
    """Gradio loads the code of every component that is itself visible, under a hidden panel
    or not: the dropdowns, radios, checkboxes, text boxes and buttons of the folded panels and
    of the upload view held up every page's first draw (README, Numbers: page). They are
    hidden until what holds them shows; the page loads only what its first view draws."""
    with gr.Blocks() as demo:
        layout.render(examples=[], browser_secret="test", banner="")
    loaded = {
        block["type"]
        for block in demo.get_config_file()["components"]
        if block["props"].get("visible", True) is not False
    }
    assert not loaded & {"textbox", "button", "dropdown", "radio", "checkbox", "slider"}
    assert {"image", "html", "uploadbutton"} <= loaded  # (the canvas, the bar, Import)


async def test_what_the_first_draw_left_out_shows_with_the_load_event_and_as_a_panel_opens(
    page, tmp_path
):
    """What folded panels and the upload view hold is hidden in the page's first draw (above),
    and shown by its load event, once the page can be used (a panel opened then found its
    controls still loading); and again as each panel opens. A remembered key comes back into
    its box, shown."""
    c = page.c
    tab = gr.Request(session_hash="tab-one", headers={})
    blank = await page.on_load(None, None, None, None, tab)  # type: ignore[call-arg]
    assert _visible(blank[c.empty])
    for part in c.held_back:
        assert _visible(blank[part]), part.elem_id
    kept = await page.on_load(None, "rk-remembered", None, None, tab)  # type: ignore[call-arg]
    assert _visible(kept[c.user_key])
    assert kept[c.user_key]["value"] == "rk-remembered"
    session_id, origin = await _start(page, tmp_path)
    for name, parts in c.fold_parts.items():
        opened = await page.on_fold(session_id, origin, None, None, 2, _act(name), tab)
        assert _visible(opened[c.folds[name]]), name
        for part in parts:
            assert _visible(opened[part]), (name, part.elem_id)
    shown = await page.on_fold(session_id, origin, None, None, 2, _act("manage"), tab)
    name = _value(shown[c.session_name])
    assert isinstance(name, str)
    assert name  # (filled in, ready to edit)


async def test_the_compare_dropdowns_go_with_renders_only_once_their_panel_opened(page, tmp_path):
    """Every finished step is a choice of "Compare two steps": sent with every render, a long
    history's list went twice into each answer (about 140 KB for 1,000 steps). A tab gets it
    when it opens the panel, and from then on with each render, so a new step is there."""
    c = page.c
    tab = gr.Request(session_hash="tab-one", headers={})
    session_id, origin = await _start(page, tmp_path)
    shown = await _edit(page, session_id, origin, "make it blue")
    await _settle(page, session_id, shown)
    step = shown[c.tab_step]
    closed = await page.on_history_tool(session_id, step, _act("undo"), tab)
    assert c.pair_a not in closed
    assert c.pair_b not in closed
    opened = await page.on_fold(session_id, origin, None, None, 2, _act("steps-box"), tab)
    labels = [label for label, _ in opened[c.pair_a].constructor_args["choices"]]
    assert labels == ["Original", "1 · make it blue · pro"]
    # Seen from the original: itself on both sides (it has no parent).
    assert _value(opened[c.pair_a]) == _value(opened[c.pair_b]) == origin
    again = await page.on_history_tool(session_id, origin, _act("redo"), tab)
    assert _value(again[c.pair_b]) == step
    other_tab = await page.on_history_tool(
        session_id, step, _act("undo"), gr.Request(session_hash="t2", headers={})
    )
    assert c.pair_a not in other_tab


async def test_a_page_waiting_for_its_thumbnails_lets_another_visitors_page_be_drawn(
    page, monkeypatch
):
    """The studio draws one page at a time for everyone; a fresh import's page held that place
    while its thumbnails were made (seconds of decoding on their own thread), then rested as
    long: every other visitor's page waited up to 21 s (review 18 F1). The place is given up
    while thumbnails are made: another visitor's page is drawn meanwhile."""
    import io
    import os
    import weakref

    from studio.ui import turns
    from studio.ui import visitor as visitors
    from studio.visitor import Visitor

    monkeypatch.setattr(turns, "_GATES", weakref.WeakKeyDictionary())
    importer = Visitor("browser:importer", address="198.51.100.1")
    other = Visitor("browser:other", address="203.0.113.2")
    engine = page.bridge.engine
    for n in range(8):  # large images whose thumbnails are not made yet (as after an import)
        photo = Image.frombytes("RGB", (48, 48), os.urandom(48 * 48 * 3)).resize((2400, 2400))
        data = io.BytesIO()
        photo.save(data, "PNG", compress_level=1)
        source = page.bridge.run(engine.read_image(data.getvalue(), visitor=importer), 60)
        page.bridge.run(engine.start_session(source, name=f"big {n}", visitor=importer), 60)
    small = page.bridge.run(engine.read_image(make_image(), visitor=other), 60)
    page.bridge.run(engine.start_session(small, name="mine", visitor=other), 60)
    done: list[str] = []

    async def draw(who: Visitor) -> None:
        visitors._WHO.set(who)
        await page.page(None)
        done.append(who.owner or "")

    theirs = asyncio.create_task(draw(importer))
    await asyncio.sleep(0.2)  # (their page is making its thumbnails)
    await draw(other)
    await theirs
    assert done == ["browser:other", "browser:importer"]


async def test_the_tab_s_step_is_settled_the_moment_an_edit_s_reply_is_made(page, tmp_path):
    """Two Enters of one tab: the second is taken once the first's reply is made, while Gradio
    is still turning that reply into the page's update (a thread for each component before
    the tab's step). The first's step then landed in the tab after the second's: the page
    stayed on the first edit, and the next Enter went after it (CI, test_editor). The tab's
    step is now set before Gradio lets anything else run."""
    from gradio.state_holder import SessionState

    from studio.ui.events import wire

    with gr.Blocks() as demo:
        c = layout.render(examples=[], browser_secret="test", banner="")
        h = Handlers(c, page.bridge, page.ctx)
        keys = KeyHandlers(
            c,
            page.bridge,
            simulator=True,
            server_key=False,
            hosted=False,
            tab_keys=page.ctx.tab_keys,
        )
        wire(c, h, keys, demo)
    edit = next(fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == "on_edit")
    session_id, origin = await _start(h, tmp_path)
    reply = await _edit(h, session_id, origin, "make it blue")
    state = SessionState(demo)
    drawn = asyncio.create_task(demo.postprocess_data(edit, reply, state))
    await asyncio.sleep(0)  # Gradio's postprocessing, up to where it first lets others run
    assert state[c.tab_step._id] == reply[c.tab_step]
    await drawn


async def test_a_reloaded_tab_comes_back_on_its_step_and_a_step_it_cannot_have_is_ignored(
    page, tmp_path
):
    session_id, origin = await _start(page, tmp_path)
    shown = await _edit(page, session_id, origin, "make it blue")
    await _settle(page, session_id, shown)
    blue = shown[page.c.tab_step]
    back = await page.on_load(session_id, None, None, f"{session_id}|{origin}")
    assert back[page.c.tab_step] == origin
    other, _ = await _start(page, tmp_path)
    for sent in (f"{session_id}|no-such-step", f"{other}|{origin}", "nonsense", None):
        assert (await page.on_load(session_id, None, None, sent))[page.c.tab_step] == blue


async def test_an_enter_s_reply_draws_its_edit_running_and_one_typed_ahead_queued(
    page, tmp_path, sim
):
    """The reply to an Enter could be drawn before the runner began the upload (a loaded
    machine): its tile said "queued" with a ✕ beside "Uploading the source…" until the upload
    was done. Taken by the runner, it is running at once, without ✕; one typed ahead waits
    for it, queued, and may still be cancelled."""
    session_id, origin = await _start(page, tmp_path)
    c = page.c
    sim.faults.slow(3.0, times=1, route="files")
    first = await _edit(page, session_id, origin, "make it blue")
    tree = _tree(first[c.history])
    assert "running" in tree.line[-1]
    assert tree.cancels == []
    second = await _edit(page, session_id, first[c.tab_step], "add snow")
    tree = _tree(second[c.history])
    assert "running" in tree.line[-2]
    assert "queued" in tree.line[-1]
    assert tree.cancels == [second[c.tab_step]]
    await _settle(page, session_id, second)


async def test_a_cancel_too_late_is_said_under_the_tree_drawn_again_without_a_toast(
    page, tmp_path, sim
):
    """A ✕ the page drew just before its edit started (the one before it finished) answered in
    a toast as well as the status line; one whose step had gone named the step's id ("There is
    no step 6ab318a3-… in this session": audit 16)."""
    session_id, origin = await _start(page, tmp_path)
    c = page.c
    sim.faults.slow(3.0, times=1, route="files")
    first = await _edit(page, session_id, origin, "make it blue")
    step = first[c.tab_step]
    with warnings.catch_warnings(record=True) as toasts:
        warnings.simplefilter("always")
        late = await page.on_history_click(session_id, step, _click("cancel", step))
        gone = await page.on_history_click(session_id, step, _click("cancel", "6ab318a3-ebb7"))
    assert late[c.status] == "⚠ That edit has already started; it can no longer be cancelled."
    assert "running" in _tree(late[c.history]).line[-1]  # drawn again, as it is
    assert gone[c.status].startswith("⚠ That queued edit was no longer there to cancel")
    assert "6ab318a3" not in gone[c.status]
    assert [str(t.message) for t in toasts if "cancel" in str(t.message)] == []
    await _settle(page, session_id, first)
    assert len(sim.tasks) == 1  # it ran, once


async def test_cancelled_stays_in_the_status_line_a_moment_before_the_timer_ticks_on(
    page, tmp_path, sim
):
    """ "Cancelled the queued edit…" was replaced by the running edit's time half a second
    later (audit 16): the timer leaves it a few seconds; news would replace it at once."""
    session_id, (_first, middle, last) = await _three_queued(page, tmp_path, sim)
    c = page.c
    tab_step, tab = last[c.tab_step], gr.Request(session_hash="tab-1", headers={})
    cancelled = await page.on_history_click(
        session_id, tab_step, _click("cancel", middle[c.tab_step]), tab
    )
    assert cancelled[c.status].startswith("Cancelled the queued edit")
    version = cancelled[c.version]
    assert await page.on_beat(session_id, tab_step, version, None, None, tab) == {
        c.status: gr.skip()
    }
    await asyncio.sleep(SAID_S + 0.2)
    ticked = await page.on_beat(session_id, tab_step, version, None, None, tab)
    assert ticked[c.status].startswith("◷ Queued behind the edit before it")
    await _settle(page, session_id, cancelled)


async def test_a_cancel_s_answer_stays_over_the_timer_and_over_news_a_moment(page, tmp_path, sim):
    """A ✕ refused (its edit had just started) was replaced by the running edit's time within
    0.6 s, and on a phone, whose ✕ was in a chip that went at the tap, nothing else said it;
    "Cancelled…" went within 0.7 s when a tick found the session changed, the cancel being news
    itself (audit 17)."""
    session_id, (first, middle, last) = await _three_queued(page, tmp_path, sim)
    c = page.c
    tab_step, tab = last[c.tab_step], gr.Request(session_hash="tab-1", headers={})
    late = await page.on_history_click(
        session_id, tab_step, _click("cancel", first[c.tab_step]), tab
    )
    assert late[c.status] == "⚠ That edit has already started; it can no longer be cancelled."
    assert await page.on_beat(session_id, tab_step, late[c.version], None, None, tab) == {
        c.status: gr.skip()
    }
    before = late[c.version]
    cancelled = await page.on_history_click(
        session_id, tab_step, _click("cancel", middle[c.tab_step]), tab
    )
    assert cancelled[c.status].startswith("Cancelled the queued edit")
    news = await page.on_tick(session_id, tab_step, before, None, None, tab)
    assert c.history in news  # the news is drawn, under the word the tab was given
    assert c.status not in news
    await _settle(page, session_id, cancelled)


async def _three_queued(page, tmp_path, sim):  # type: ignore[no-untyped-def]
    """A session and three edits sent in a row: the first runs on (its upload is slow), the
    other two wait their turn. The session and the three replies."""
    session_id, origin = await _start(page, tmp_path)
    c = page.c
    sim.faults.slow(8.0, times=1, route="files")
    first = await _edit(page, session_id, origin, "make it blue")
    middle = await _edit(page, session_id, first[c.tab_step], "add snow")
    last = await _edit(page, session_id, middle[c.tab_step], "make it night")
    return session_id, (first, middle, last)


def _click(act: str, step: str) -> gr.EventData:
    """A click on a tile's button (its ✕: "cancel"), as the page sends it."""
    return gr.EventData(None, {"act": act, "step": step})
