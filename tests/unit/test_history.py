"""The session tree: chain, branch, undo/redo, retry, delete, rename, costs and step states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from studio.history import (
    HistoryError,
    ImageRef,
    Session,
    Step,
    StepSource,
    StepState,
    is_untitled,
    link_name,
    name_from_prompt,
)
from studio.params import EditParams, ParamsError
from tests.support.sessions import with_step

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
PHOTO = ImageRef(sha256="a" * 64, format="jpeg", width=1200, height=800)


def image(n: int) -> ImageRef:
    return ImageRef(sha256=f"{n:064x}", format="png", width=1024, height=1024)


def start(origin: ImageRef | None = PHOTO) -> Session:
    return Session.start("s1", "Holiday", origin, T0, origin_step_id="origin")


def edit(session: Session, step_id: str, prompt: str = "make it blue", *, cost: int = 5) -> Session:
    """Add a step and run it to completion, as the engine would."""
    session = session.add_step(step_id, EditParams(prompt=prompt), T0)
    step = session.current.start(f"task-{step_id}", T0 + timedelta(seconds=1))
    step = step.complete(image(len(session.steps)), T0 + timedelta(seconds=9), cost_cents=cost)
    return with_step(session, step)


def failing(session: Session, step_id: str) -> Session:
    session = session.add_step(step_id, EditParams(prompt="make it red"), T0)
    return with_step(session, session.current.fail("Content policy", T0, cost_cents=0))


def ids(steps: tuple[Step, ...]) -> list[str]:
    return [step.step_id for step in steps]


def test_start_makes_a_completed_origin_step_holding_the_source():
    session = start()
    origin = session.current
    assert (origin.kind, origin.state, origin.result, origin.params) == (
        "origin",
        StepState.COMPLETED,
        PHOTO,
        None,
    )
    assert origin.source == StepSource(kind="upload", image_sha256=PHOTO.sha256)
    assert not session.can_undo
    assert not session.can_redo


def test_start_without_an_image_makes_the_first_step_a_generation():
    session = start(None).add_step("a", EditParams(prompt="a red fox"), T0)
    assert session.origin.result is None
    assert session.current.kind == "generate"
    assert session.current.source.kind == "none"


def test_add_step_chains_each_output_into_the_next_source():
    session = edit(edit(start(), "a"), "b")
    assert ids(session.path()) == ["origin", "a", "b"]
    a, b = session.steps["a"], session.steps["b"]
    assert a.source == StepSource(kind="step", image_sha256=PHOTO.sha256)
    assert b.source == StepSource(kind="step", image_sha256=a.result.sha256 if a.result else None)
    assert (b.kind, b.parent_id, b.state) == ("edit", "a", StepState.COMPLETED)


def test_a_step_typed_ahead_waits_for_the_image_of_the_step_still_running():
    session = start().add_step("a", EditParams(prompt="blue"), T0)
    session = session.add_step("b", EditParams(prompt="red"), T0)
    waiting = session.current
    assert (waiting.parent_id, waiting.kind, waiting.is_waiting) == ("a", "edit", True)
    ready = waiting.with_source_image(image(9).sha256)
    assert not ready.is_waiting
    assert ready.source == StepSource(kind="step", image_sha256=image(9).sha256)


def test_a_step_typed_ahead_is_checked_against_the_edit_limits():
    session = start(None).add_step("a", EditParams(prompt="a fox"), T0)  # generates
    with pytest.raises(ParamsError, match="0 to 2 when editing"):
        session.add_step("b", EditParams(prompt="snow", safety_tolerance=5), T0)


def test_cancel_removes_that_step_only_and_the_ones_after_it_follow_the_step_before_it():
    session = start().add_step("a", EditParams(prompt="blue"), T0)
    session = session.add_step("b", EditParams(prompt="red"), T0)
    session = session.add_step("c", EditParams(prompt="green"), T0)
    cancelled = session.cancel("b")
    assert set(cancelled.steps) == {"origin", "a", "c"}
    assert ids(cancelled.path()) == ["origin", "a", "c"]  # c now runs on a's image
    assert cancelled.steps["c"].is_waiting
    assert cancelled.current_step_id == "c"
    # Cancelling the step the tab shows moves it back to the step before it.
    assert session.cancel("c").current_step_id == "b"


def test_a_step_already_sent_to_the_service_cannot_be_cancelled():
    session = edit(start(), "a").add_step("b", EditParams(prompt="red"), T0)
    session = with_step(session, session.current.start("task-b", T0))
    with pytest.raises(HistoryError, match="already started"):
        session.cancel("b")


def test_add_step_branches_from_the_parent_when_the_current_step_failed():
    session = failing(edit(start(), "a"), "bad").add_step("b", EditParams(prompt="green"), T0)
    assert session.steps["b"].parent_id == "a"


def test_after_instructions_typed_ahead_all_fail_the_next_builds_on_the_last_image():
    """Typed ahead, the second waits for the first; when the first fails, so does the second.
    With the second current, the session could not say what the next edit builds on (the
    failed step's parent had no image either): every page showing it raised (UX audit 1)."""
    session = edit(start(), "a")
    session = session.add_step("x1", EditParams(prompt="one"), T0)
    session = session.add_step("x2", EditParams(prompt="two"), T0)
    assert session.steps["x2"].parent_id == "x1"
    for step_id in ("x1", "x2"):
        session = with_step(session, session.steps[step_id].fail("failed", T0, cost_cents=0))
    assert session.current_step_id == "x2"
    assert session.next_parent.step_id == "a"
    assert session.next_is_edit
    again = session.add_step("x3", EditParams(prompt="three"), T0)
    assert again.steps["x3"].parent_id == "a"
    assert again.steps["x3"].source.image_sha256 == session.steps["a"].result.sha256
    # The second tried again runs on that image too (its parent has none to give it).
    retried = session.retry("x2", "r2", T0).steps["r2"]
    assert retried.parent_id == "a"
    assert retried.source.image_sha256 == session.steps["a"].result.sha256
    assert retried.retry_of == "x2"
    assert retried.params.prompt == "two"


def typed_ahead_both_failed() -> Session:
    """Two instructions typed ahead; RunAPI failed the first (it had a task), so the second
    never ran."""
    session = edit(start(), "a")
    session = session.add_step("x1", EditParams(prompt="one"), T0)
    session = session.add_step("x2", EditParams(prompt="two"), T0)
    sent = session.steps["x1"].start("task-x1", T0)
    session = with_step(session, sent.fail("RunAPI lost the task", T0, cost_cents=0))
    return with_step(session, session.steps["x2"].fail("the step before failed", T0))


def test_trying_again_a_step_that_waited_for_a_failed_one_runs_both_again_in_order():
    """RunAPI failed the first of two instructions typed ahead, and the second with it. Tried
    again alone, the second ran on the image before the first: the first instruction was gone
    from the path without a word (UX audit 5)."""
    session = typed_ahead_both_failed()
    assert ids(session.to_try_again("x2")) == ["x1", "x2"]
    assert ids(session.to_try_again("x1")) == ["x1"]  # it ran: it alone is tried again
    assert ids(session.to_try_again("a")) == ["a"]
    first = session.retry("x1", "r1", T0)
    both = first.retry("x2", "r2", T0, after="r1")
    r1, r2 = both.steps["r1"], both.steps["r2"]
    assert (r1.parent_id, r1.params.prompt, r1.retry_of) == ("a", "one", "x1")
    assert (r2.parent_id, r2.params.prompt, r2.retry_of) == ("r1", "two", "x2")
    assert r2.is_waiting  # it runs on the first one's image, once there is one
    assert ids(both.path()) == ["origin", "a", "r1", "r2"]


def test_after_the_failed_first_was_tried_again_the_second_runs_on_that_try():
    """The user tried the first again (as its sentence said) and it worked: the second,
    tried again, runs on that result, not on the image before the first."""
    session = typed_ahead_both_failed()
    session = session.retry("x1", "r1", T0)
    done = session.steps["r1"].start("task-r1", T0).complete(image(9), T0, cost_cents=5)
    session = with_step(session, done)
    assert ids(session.to_try_again("x2")) == ["x2"]
    r2 = session.retry("x2", "r2", T0).steps["r2"]
    assert r2.parent_id == "r1"
    assert r2.source.image_sha256 == image(9).sha256
    # A try of the first that failed again is passed over, as the first was.
    again = typed_ahead_both_failed().retry("x1", "r1", T0)
    failed = again.steps["r1"].start("task-r1", T0).fail("again", T0, cost_cents=0)
    again = with_step(again, failed)
    assert ids(again.to_try_again("x2")) == ["x1", "x2"]


def test_add_step_branches_when_an_older_step_is_made_current():
    session = edit(edit(start(), "a"), "b").make_current("a")
    session = edit(session, "c")
    assert ids(session.children("a")) == ["b", "c"]
    assert ids(session.path()) == ["origin", "a", "c"]
    assert ids(session.branches) == ["b"]


def test_redo_after_undo_goes_back_to_the_same_child():
    session = edit(edit(start(), "a"), "b").make_current("a")
    session = edit(edit(session, "c"), "d")
    session = session.undo().undo()
    assert session.current_step_id == "a"
    assert ids(session.redo().redo().path()) == ["origin", "a", "c", "d"]


def test_a_tab_s_redo_line_runs_through_the_steps_it_undid_not_those_made_since():
    # This tab made b and went back to a; another then made c after a (the session's newest).
    session = edit(edit(edit(start(), "a"), "b").undo(), "c")
    seen = session.seen_from("a")
    assert seen.redo().current_step_id == "c"  # (seen from the session: its own path)
    mine = session.seen_from("a", via=("b",))
    assert mine.current_step_id == "a"
    assert mine.redo().current_step_id == "b"
    # Deeper: the tab went back two steps; what it undid comes back in order.
    deep = edit(edit(edit(start(), "a"), "b"), "b2").undo().undo()
    deep = edit(deep, "c")
    assert ids(deep.seen_from("a", via=("b", "b2")).redo().redo().path()) == [
        "origin",
        "a",
        "b",
        "b2",
    ]
    # A line that no longer holds (a step gone, or not after the one before) goes as far as
    # it does.
    assert session.seen_from("a", via=("gone",)).redo().current_step_id == "c"
    assert session.seen_from("origin", via=("b",)).redo().current_step_id == "a"
    assert session.seen_from("c", via=("b",)).current_step_id == "c"


def test_new_step_after_undo_clears_redo():
    session = edit(edit(start(), "a"), "b").undo()
    assert session.can_redo
    session = edit(session, "c")
    assert not session.can_redo
    with pytest.raises(HistoryError, match="nothing to redo"):
        session.redo()


def test_undo_is_refused_at_the_origin():
    with pytest.raises(HistoryError, match="nothing to undo"):
        start().undo()


@pytest.mark.parametrize(
    ("target", "redo"),
    [
        pytest.param("a", ("c", "b"), id="itself-changes-nothing"),
        pytest.param("origin", ("c", "b", "a"), id="up-the-path-is-undo"),
        pytest.param("b", ("c",), id="down-the-redo-stack-is-redo"),
        pytest.param("c", (), id="to-the-bottom-of-the-redo-stack"),
        pytest.param("x", (), id="elsewhere-clears-redo"),
    ],
)
def test_make_current_moves_along_or_off_the_path(target, redo):
    session = edit(edit(edit(start(), "x").make_current("origin"), "a"), "b")
    session = edit(session, "c").undo().undo()
    assert (session.current_step_id, session.redo_stack) == ("a", ("c", "b"))
    session = session.make_current(target)
    assert (session.current_step_id, session.redo_stack) == (target, redo)


def test_retry_adds_a_sibling_with_the_same_params_and_leaves_the_failed_step_alone():
    before = failing(edit(start(), "a"), "bad")
    after = before.retry("bad", "again", T0 + timedelta(minutes=1))
    retried = after.current
    assert retried.step_id == "again"
    assert (retried.parent_id, retried.params, retried.retry_of) == (
        "a",
        before.steps["bad"].params,
        "bad",
    )
    assert (retried.state, retried.task_id, retried.error) == (StepState.QUEUED, None, None)
    assert after.steps["bad"] == before.steps["bad"]
    assert ids(after.children("a")) == ["bad", "again"]


def test_a_finished_step_can_be_tried_again_but_not_the_original_or_a_running_one():
    session = edit(start(), "a")
    again = session.retry("a", "again", T0).current
    assert (again.parent_id, again.params, again.retry_of) == (
        "origin",
        session.steps["a"].params,
        None,
    )
    with pytest.raises(HistoryError, match="Only a finished edit"):
        session.retry("origin", "again", T0)
    with pytest.raises(HistoryError, match="Only a finished edit"):
        session.add_step("b", EditParams(prompt="red"), T0).retry("b", "again", T0)


def test_rename_collapses_whitespace_and_refuses_an_empty_name():
    assert start().rename("  Beach \n day ").name == "Beach day"
    with pytest.raises(HistoryError, match="cannot be empty"):
        start().rename("   ")


def test_total_cost_counts_every_billed_step_including_branches():
    session = edit(edit(start(), "a", cost=5), "b", cost=10).make_current("a")
    session = failing(edit(session, "c", cost=5), "bad")
    session = session.add_step("queued", EditParams(prompt="later"), T0)
    assert session.total_cost_cents == 20


def test_step_states_advance_and_record_timings():
    queued = start().add_step("a", EditParams(prompt="blue"), T0).current
    running = queued.start("task-1", T0 + timedelta(seconds=2))
    done = running.complete(image(1), T0 + timedelta(seconds=12.5), cost_cents=5)
    assert (queued.state, running.state, done.state) == ("queued", "running", "completed")
    assert (done.task_id, done.submitted_at, done.elapsed_s) == (
        "task-1",
        T0 + timedelta(seconds=2),
        10.5,
    )
    assert queued.task_id is None  # the old values are untouched


def test_a_queued_step_can_fail_when_the_create_is_refused():
    failed = start().add_step("a", EditParams(prompt="blue"), T0).current.fail("No credits", T0)
    assert (failed.state, failed.error, failed.elapsed_s) == (StepState.FAILED, "No credits", 0.0)


QUEUED = start().add_step("q", EditParams(prompt="blue"), T0).current
RUNNING = QUEUED.start("t", T0)
COMPLETED = RUNNING.complete(image(1), T0)
FAILED = RUNNING.fail("boom", T0)


@pytest.mark.parametrize(
    "transition",
    [
        pytest.param(lambda: QUEUED.complete(image(1), T0), id="queued-to-completed"),
        pytest.param(lambda: RUNNING.start("t2", T0), id="running-to-running"),
        pytest.param(lambda: COMPLETED.fail("late", T0), id="completed-to-failed"),
        pytest.param(lambda: COMPLETED.start("t", T0), id="completed-to-running"),
        pytest.param(lambda: FAILED.complete(image(1), T0), id="failed-to-completed"),
        pytest.param(lambda: FAILED.with_upload("https://x/y.png", T0), id="upload-after-failure"),
    ],
)
def test_illegal_transitions_raise(transition):
    with pytest.raises(HistoryError, match="Cannot"):
        transition()


def test_upload_is_recorded_on_the_source_while_unfinished():
    step = QUEUED.with_upload("https://files.example/x.png", T0 + timedelta(hours=1))
    assert step.source.uploaded_url == "https://files.example/x.png"
    assert step.source.image_sha256 == PHOTO.sha256


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        Session.start("s", "x", None, datetime(2025, 1, 1))


@pytest.mark.parametrize(
    ("name", "untitled"),
    [
        pytest.param("Untitled session", True, id="placeholder"),
        pytest.param("Session 2026-11-30 23:40", True, id="an-earlier-studio's-minute-name"),
        pytest.param("Session at the beach", False, id="a-person's-name"),
        pytest.param("Chelsea example", False, id="an-example"),
    ],
)
def test_a_session_is_untitled_only_under_the_placeholder_names(name, untitled):
    assert is_untitled(name) is untitled


def test_a_name_from_an_instruction_is_one_line_and_short():
    assert name_from_prompt("  make it\n night  ") == "make it night"
    long = name_from_prompt("word " * 40)
    assert len(long) <= 60
    assert long.endswith("…")


@pytest.mark.parametrize(
    ("url", "name"),
    [
        pytest.param(
            "https://example.com/photos/cat%20in%20hat.jpg?x=1", "cat in hat.jpg", id="file"
        ),
        pytest.param("https://example.com/", "example.com", id="host-only"),
        pytest.param("not a link", None, id="nothing-to-name-it-by"),
    ],
)
def test_a_link_names_a_session_by_its_file_or_host(url, name):
    assert link_name(url) == name
