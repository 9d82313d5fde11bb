"""Working as people do: two tabs on one session, typing ahead while an edit runs, switching
away mid-edit, watching the time tick, Compare's faster side first, and a lost connection.

The simulator is slowed per test (`sim.latency`) so an edit runs long enough to act during it.
"""

from __future__ import annotations

import itertools
import re
import time

import pytest
from playwright.sync_api import expect

from studio.history import StepState
from studio.simulator.tasks import LatencyProfile
from tests.browser.conftest import LOADED, open_page, running_studio
from tests.browser.test_editor import _big_enough
from tests.browser.test_studio_flow import (
    DONE,
    _current,
    _edit,
    _only_session,
    _open_session,
    _session_name,
    _start_from_example,
    _thumbs,
)
from tests.support.sent import assert_sent_as_kept

pytestmark = [pytest.mark.browser, pytest.mark.slow]
# An edit takes about eight seconds: long enough to type two more instructions meanwhile.
STEADY = LatencyProfile(3.0, 5.0, 3.0, 5.0)


def _submit(page, prompt: str) -> None:  # type: ignore[no-untyped-def]
    """Type an instruction and press Enter; it is on its way once the box is cleared."""
    box = page.locator("#prompt textarea")
    box.fill(prompt)
    box.press("Enter")
    expect(box).to_have_value("")


def _session(studio, session_id: str):  # type: ignore[no-untyped-def]
    return studio.run(studio.engine.load_session(session_id))


def _made_by(session, prompt: str) -> list:  # type: ignore[no-untyped-def]
    return [s for s in session.steps.values() if s.params and s.params.prompt == prompt]


def _stored(session, prompt: str):  # type: ignore[no-untyped-def]
    """The step of `session` made by `prompt`, or None while there is none."""
    return next(iter(_made_by(session, prompt)), None)


def _by_prompt(session, prompt: str):  # type: ignore[no-untyped-def]
    (step,) = _made_by(session, prompt)
    return step


def test_two_pages_on_one_session_each_edit_what_they_show_and_see_each_others_steps(
    browser, page, studio
):
    _start_from_example(page)
    origin = _only_session(studio).origin
    with open_page(browser, studio.url) as other:  # a second visitor, or a second window
        expect(_thumbs(other)).to_have_count(1)  # it opened the same session, at its origin
        _edit(page, "make it blue")
        blue = _by_prompt(_only_session(studio), "make it blue")

        # The other page shows the new step without a reload, and without moving: it still
        # shows the original, and the new step lies ahead of it (one Redo away).
        expect(other.locator("#history")).to_contain_text("make it blue", timeout=20_000)
        expect(other.locator("#status")).to_contain_text("Ready")
        expect(_current(other)).to_have_attribute("aria-label", re.compile("^Step 0: Original"))

        # Its edit builds on what it shows (the original), not on the newest step.
        _edit(other, "add snow")
        snow = _by_prompt(_only_session(studio), "add snow")
        assert snow.parent_id == origin.step_id

        # The first page now sees that step as another branch, and still shows its own.
        expect(_thumbs(page, "#branches")).to_contain_text("add snow", timeout=20_000)
        expect(page.locator("#status")).to_contain_text(DONE)
        _edit(page, "make it night")
        night = _by_prompt(_only_session(studio), "make it night")
        assert night.parent_id == blue.step_id


def test_an_instruction_after_the_session_was_deleted_elsewhere_starts_a_new_one(page, studio):
    """The session was deleted in another tab; this tab's next Enter was refused with "There
    is no step 28f6a5f2-… in this session", and left an empty "Untitled session" behind at
    each Enter (UX audit 12, 2 of 2). It makes a new picture in a new session."""
    _start_from_example(page)
    _edit(page, "make it black and white")
    session = _only_session(studio)
    studio.run(studio.engine.delete_session(session.session_id))  # (another tab, the CLI)
    expect(page.locator("#status")).to_contain_text("no longer here", timeout=20_000)
    _submit(page, "a red bicycle against a white wall")
    expect(page.locator("#status")).to_contain_text(DONE, timeout=30_000)
    expect(page.locator("#status")).not_to_contain_text("There is no step")
    (made,) = studio.run(studio.engine.list_sessions())
    steps = studio.run(studio.engine.load_session(made.session_id)).steps.values()
    assert [s.params.prompt for s in steps if s.params] == ["a red bicycle against a white wall"]


def test_three_instructions_typed_during_an_edit_run_in_order_on_each_result(page, studio, sim):
    _start_from_example(page)
    sim.latency = STEADY
    prompts = ["make it black and white", "add snow", "make it night"]
    for prompt in prompts:
        _submit(page, prompt)
    # Queued behind the running one, visible in the history (and cancellable).
    history = page.locator("#history")
    expect(history.locator("li.queued", has_text="make it night")).to_contain_text("queued")
    expect(history.locator("li.queued", has_text="add snow")).to_contain_text("queued")
    expect(history.get_by_role("button", name="Cancel the queued edit: add snow")).to_be_visible()
    # Done with the last one: "Done" alone also shows between two of them, while the tab sits
    # on a finished step with the next still queued.
    last = history.locator("li.node", has_text="make it night")
    expect(last).to_have_class(re.compile(r"\bcompleted\b"), timeout=60_000)
    expect(history.locator("li.queued, li.running")).to_have_count(0)
    expect(page.locator("#status")).to_contain_text(DONE)
    expect(_thumbs(page)).to_have_count(4)

    path = _only_session(studio).path()
    assert [s.params.prompt for s in path[1:]] == prompts
    assert all(s.state is StepState.COMPLETED for s in path)
    for previous, step in itertools.pairwise(path):
        sent, kept = sim.tasks[step.task_id].source_bytes, studio.image_bytes(previous.result)
        assert_sent_as_kept(sent, kept, original=previous.params is None)


def test_switching_session_mid_edit_stays_put_while_the_edit_finishes_in_its_own(page, studio, sim):
    _start_from_example(page, 0)
    other_id = _only_session(studio).session_id
    _start_from_example(page, 1)
    expect(_session_name(page)).to_have_text("Chelsea example")
    sessions = studio.run(studio.engine.list_sessions())
    editing_id = next(s.session_id for s in sessions if s.session_id != other_id)
    sim.latency = LatencyProfile(3.0, 3.0, 3.0, 3.0)
    _submit(page, "make it black and white")
    expect(page.locator("#status")).to_contain_text("◷")

    # Open the other session while the edit runs.
    _open_session(page, "Astronaut example")
    expect(page.locator("#status")).to_contain_text("Ready")
    expect(_session_name(page)).to_have_text("Astronaut example")

    # The edit finishes in its own session (in the store) while the page shows the other one.
    for _ in range(60):
        (edit,) = [s for s in _session(studio, editing_id).steps.values() if s.params]
        if edit.is_finished:
            break
        page.wait_for_timeout(500)
    assert edit.state is StepState.COMPLETED
    # Two ticks later the page is still where the user went.
    page.wait_for_timeout(3_000)
    expect(_session_name(page)).to_have_text("Astronaut example")
    expect(page.locator("#status")).to_contain_text("Ready")
    expect(_thumbs(page)).to_have_count(1)


# The line under the canvas while an edit waits in RunAPI's queue, with its elapsed seconds.
_QUEUED_SECONDS = r"Waiting in RunAPI's queue… ([0-9.]+) s"


def test_the_elapsed_time_ticks_within_one_phase(page, studio, sim):
    _start_from_example(page)
    # A long wait in RunAPI's queue: the phase outlasts the test however loaded the machine.
    sim.latency = LatencyProfile(120.0, 1.0, 120.0, 1.0)
    _submit(page, "make it black and white")
    status = page.locator("#status")
    expect(status).to_contain_text(re.compile(_QUEUED_SECONDS), timeout=20_000)
    first = re.search(_QUEUED_SECONDS, status.inner_text())
    assert first is not None
    # The same phase, a later time, without anything else happening on the page.
    page.wait_for_function(
        """([pattern, first]) => {
          const shown = document.querySelector('#status').innerText.match(new RegExp(pattern));
          return shown !== null && parseFloat(shown[1]) > first;
        }""",
        arg=[_QUEUED_SECONDS, float(first.group(1))],
        timeout=15_000,
    )


def test_pro_vs_max_shows_the_faster_side_before_the_slower_one_finishes(page, studio, sim):
    _start_from_example(page, 2)
    sim.latency = LatencyProfile(0.5, 1.0, 2.0, 14.0)  # max takes well over ten seconds
    box = page.locator("#prompt textarea")
    # Refused (too long), the instruction goes back into the box, and nothing is queued.
    box.fill("x" * 4001)
    page.locator("#compare").click()
    expect(page.locator("#status")).to_contain_text("⚠", timeout=10_000)
    expect(box).to_have_value("x" * 4001)
    assert not sim.tasks
    box.fill("make it night")
    page.locator("#compare").click()
    # Taken from the box as Enter takes it: an Enter after it does not send it again (it stayed
    # in the box: UX audit 1).
    expect(box).to_have_value("")
    box.fill("typed meanwhile")
    candidates = page.locator("#candidates")
    expect(candidates).to_be_in_viewport()
    # Pro's result is shown while max is still under way.
    expect(candidates.locator("img")).to_have_count(1, timeout=20_000)
    expect(candidates).to_contain_text("pro ✓")
    expect(candidates).to_contain_text("max ◷")
    (max_task,) = [t for t in sim.tasks.values() if t.model == "flux-kontext-max"]
    assert max_task.finished_at is None
    expect(candidates).to_contain_text("max ✓", timeout=40_000)
    # Keep max: the next edit goes on with max.
    candidates.locator("button.keep", has_text="Keep max").click()
    expect(page.locator("#model").get_by_label("max · $0.10")).to_be_checked()
    # The bar took the server's word on the model without being drawn again: what was typed
    # meanwhile is still in the box.
    expect(box).to_have_value("typed meanwhile")


def test_while_runapi_does_not_answer_the_status_says_so(page, studio, sim):
    """The status only counted up ("Sent to RunAPI… 17 s") while RunAPI did not answer (UX
    audit 1); it says so, and goes on once RunAPI answers again."""
    _start_from_example(page)
    sim.faults.server_error(503, times=10_000)
    _submit(page, "make it black and white")
    status = page.locator("#status")
    expect(status).to_contain_text("RunAPI is not answering", timeout=30_000)
    # One typed ahead behind it says what holds it up: it said only "◷ Queued… 42.8 s"
    # (UX audit 5).
    _submit(page, "add snow")
    expect(status).to_contain_text("Queued behind the edit before it", timeout=10_000)
    expect(status).to_contain_text("RunAPI is not answering")
    sim.faults.reset()
    expect(status).to_contain_text(DONE, timeout=60_000)
    expect(status).not_to_contain_text("not answering")


def test_a_lost_connection_is_named_as_such(browser, sim, clean_env):
    with running_studio(sim, clean_env) as studio, open_page(browser, studio.url) as tab:
        _start_from_example(tab)
        sim.latency = LatencyProfile(30.0, 1.0, 30.0, 1.0)
        _submit(tab, "make it black and white")
        expect(tab.locator("#status")).to_contain_text("◷")
        studio.demo.close()  # the studio stops (or the network drops)
        expect(tab.locator("#status")).to_contain_text(
            "The studio cannot be reached", timeout=20_000
        )


def test_an_instruction_sent_while_the_studio_is_down_comes_back_into_the_box(
    browser, sim, clean_env
):
    """The studio stopped (a crash, the network): Enter emptied the box, nothing was sent, no
    tile and no word; when the studio came back the page reloaded and the text was gone (UX
    audit 5). It comes back into the box with a sentence, and stays there once the studio is
    back."""
    with running_studio(sim, clean_env) as studio, open_page(browser, studio.url) as tab:
        _start_from_example(tab)
        studio.demo.close()  # the studio stops (or the network drops)
        expect(tab.locator("#status")).to_contain_text(
            "The studio cannot be reached", timeout=20_000
        )
        box = tab.locator("#prompt textarea")
        box.fill("add a castle on the hill")
        box.press("Enter")
        # Known to be down, the page keeps the words where they are: it emptied the box for
        # five seconds, as if sent, before they came back (audit 13).
        assert box.input_value() == "add a castle on the hill"
        expect(box).to_have_value("add a castle on the hill", timeout=10_000)
        expect(tab.locator("#status")).to_contain_text("nothing was sent")
        tab.wait_for_timeout(7_000)  # two more looks for the studio, still not there
        expect(tab.locator("#status")).to_contain_text("nothing was sent")
        expect(box).to_have_value("add a castle on the hill")
        expect(tab.locator("#history li.pending")).to_have_count(0)
        assert len(sim.tasks) == 0


def test_a_page_reloaded_while_pro_vs_max_runs_shows_both_again_with_their_keep_buttons(
    page, studio, sim
):
    """Closing the tab (or reloading) while pro vs max ran came back with no side by side and
    no Keep buttons, only two branch chips, and the next instruction quietly went on from the
    old step (UX audit 5). The choice is still there: the results, their Keep buttons, and the
    status saying one waits to be kept."""
    _start_from_example(page, 2)
    sim.latency = LatencyProfile(0.5, 1.0, 2.0, 8.0)
    box = page.locator("#prompt textarea")
    box.fill("make it night")
    page.locator("#compare").click()
    candidates = page.locator("#candidates")
    expect(candidates).to_contain_text("pro", timeout=10_000)
    page.reload()
    expect(candidates).to_be_visible(timeout=20_000)
    expect(candidates).to_contain_text("max", timeout=10_000)
    expect(page.locator("#status")).to_contain_text("Keep one of the results")
    expect(candidates.locator("button.keep", has_text="Keep max")).to_be_visible(timeout=40_000)
    for keep in candidates.locator("button.keep").all():
        _big_enough(keep)  # (71 x 23 px: UX audit 5)
    # Still refused to go on before one is kept, as in the tab that asked.
    box.fill("add stars")
    box.press("Enter")
    expect(page.locator("#status")).to_contain_text("Keep one of the results first", timeout=10_000)
    expect(box).to_have_value("add stars")
    # The status line in view says it: no toast says it again, over the history (it stayed
    # over the kept step, UX audit 5, and over the tab's step, UX audit 6). (Gradio's own timer
    # would close it 10 s after it opened: well after these 3 s.)
    toast = page.locator("[data-testid=toast-body]", has_text="Keep one of the results first")
    expect(toast).to_have_count(0, timeout=3_000)
    candidates.locator("button.keep", has_text="Keep max").click()
    expect(page.locator("#model").get_by_label("max · $0.10")).to_be_checked(timeout=10_000)
    expect(candidates).to_be_hidden()
    page.reload()
    expect(page.locator("#status")).to_contain_text(DONE, timeout=20_000)
    expect(candidates).to_be_hidden()


def test_a_tab_reloaded_while_another_edits_comes_back_on_its_own_step(page, studio, sim):
    """One tab on the original, another sends an edit; the first, reloaded while that edit
    ran, came back on it (the session's newest step), and its next instruction edited that
    picture (audit 15). It comes back where it was, and its edit branches from there."""
    _start_from_example(page)
    _edit(page, "make it blue")
    origin = _only_session(studio).origin
    other = page.context.new_page()  # a second tab of the same browser
    other.goto(studio.url)
    expect(other.locator(LOADED)).to_be_attached(timeout=30_000)
    other.locator('#history button.tile[aria-label^="Step 0"]').click()
    expect(_current(other)).to_have_attribute("aria-label", re.compile("^Step 0: Original"))
    sim.latency = STEADY
    _submit(page, "add snow")
    expect(_current(page)).to_have_attribute("aria-label", re.compile("^Step 2: add snow"))
    other.reload()
    expect(other.locator(LOADED)).to_be_attached(timeout=30_000)
    expect(_current(other)).to_have_attribute("aria-label", re.compile("^Step 0: Original"))
    assert (
        not _only_session(studio)
        .steps[_by_prompt(_only_session(studio), "add snow").step_id]
        .is_finished
    )
    _submit(other, "make it night")
    # (The page's own queued tile shows at once: the step is stored once the server has it.)
    deadline = time.monotonic() + 30
    while not (night := _stored(_only_session(studio), "make it night")):
        assert time.monotonic() < deadline, "the edit never reached the store"
        time.sleep(0.1)
    assert night.parent_id == origin.step_id


def test_an_enter_the_moment_the_studio_stops_gives_the_words_back_at_once(browser, sim, clean_env):
    """Enter pressed after the studio stopped, before the page's look every few seconds found
    it out: the box stayed empty, the status "Ready", for up to five seconds before the words
    came back (audit 15). One look at the Enter, and they are back with the sentence."""
    with running_studio(sim, clean_env) as studio, open_page(browser, studio.url) as tab:
        _start_from_example(tab)
        studio.demo.close()  # the studio stops (or the network drops)
        # A moment later: Gradio has seen its stream end (it then holds an Enter), and the
        # page's looks (two misses, three seconds apart) have not said so yet.
        tab.wait_for_timeout(1_500)
        box = tab.locator("#prompt textarea")
        box.fill("add a castle on the hill")
        box.press("Enter")
        expect(tab.locator("#status")).to_contain_text("cannot be reached just now, so nothing")
        expect(box).to_have_value("add a castle on the hill")
        expect(tab.locator("#history li.pending")).to_have_count(0)
        assert len(sim.tasks) == 0
