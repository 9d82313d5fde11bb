"""A completed (so charged) task whose image link does not answer is not a failed edit: the
studio reads the task again for a fresh link, keeps the step "completed, fetching" across a
restart, and fails only when RunAPI no longer has it. Loopback only."""

from __future__ import annotations

import asyncio

import pytest

from studio.engine import Engine
from studio.history import HistoryError, Step, StepState
from studio.params import EditParams
from studio.runner import (
    FETCHING,
    LEFT_OPEN_NOT_CANCELLED,
    NOT_ANSWERING,
    STORING,
    UNANSWERED,
)
from tests.support.engines import make_engine, make_image

pytestmark = pytest.mark.anyio


async def _session(engine: Engine) -> str:
    image = await engine.read_image(make_image())
    return (await engine.start_session(image, name="paid")).session_id


async def _kept_and_paid_once(engine: Engine, sim, step: Step) -> None:  # type: ignore[no-untyped-def]
    """`step` completed with its image in the store, from one task charged once."""
    assert step.state is StepState.COMPLETED
    assert step.error is None
    assert step.result is not None
    assert await engine.image_bytes(step.result)
    assert step.cost_cents == 5
    assert sim.tasks_by_key() == {step.step_id: 1}  # one task, charged once


def _downloads(sim) -> list[object]:  # type: ignore[no-untyped-def]
    return [r for r in sim.requests if r.path.startswith("/results/")]


async def test_an_expired_result_link_is_fetched_again_one_task_one_image_charged_once(
    sim, clean_env
):
    sim.faults.expire_first_result_urls()
    engine = make_engine(clean_env, sim.base_url, sim.api_key)
    step = await engine.edit(await _session(engine), EditParams(prompt="blue"))
    await _kept_and_paid_once(engine, sim, step)
    assert len(_downloads(sim)) == 2  # the expired link, then the fresh one
    await engine.aclose()


async def test_a_paid_result_still_fetching_at_a_restart_is_fetched_after_it(sim, clean_env):
    sim.faults.expire_results()  # every link answers 404 for now
    engine = make_engine(clean_env, sim.base_url, sim.api_key, task_deadline_s=1.5)
    session_id = await _session(engine)
    step = await engine.edit(session_id, EditParams(prompt="blue"))
    # Given up on for now, but not failed: completed at RunAPI, fetching here.
    stored = (await engine.load_session(session_id)).steps[step.step_id]
    assert stored.state is StepState.RUNNING
    assert stored.error == FETCHING
    await engine.aclose()

    sim.faults.reset()  # the links work again
    engine = make_engine(clean_env, sim.base_url, sim.api_key)
    await engine.resume_unfinished()
    done = await engine.wait(step.step_id)
    assert done.state is StepState.COMPLETED
    assert done.error is None
    assert sim.tasks_by_key() == {step.step_id: 1}
    await engine.aclose()


async def test_a_result_runapi_no_longer_has_fails_saying_so(sim, clean_env):
    sim.faults.expire_results()
    engine = make_engine(clean_env, sim.base_url, sim.api_key)
    session_id = await _session(engine)
    step = await engine.submit_edit(session_id, EditParams(prompt="blue"))
    for _ in range(200):  # until its first link has failed
        if (await engine.load_session(session_id)).steps[step.step_id].error == FETCHING:
            break
        await asyncio.sleep(0.05)
    with sim.state.lock:
        sim.state.tasks.clear()  # RunAPI has forgotten the task
    failed = await engine.wait(step.step_id)
    assert failed.state is StepState.FAILED
    assert "no longer has it" in (failed.error or "")
    assert failed.cost_cents == 5  # it was charged: said, not hidden
    await engine.aclose()


async def test_a_create_whose_answers_keep_dropping_is_asked_again_not_failed(sim, clean_env):
    # Each create reaches RunAPI (a task is made, so it will be charged) and then its answer is
    # lost, more times than the client retries: the step must not fail with a task running.
    sim.faults.drop_connection(times=6, route="create")
    engine = make_engine(clean_env, sim.base_url, sim.api_key)
    step = await engine.edit(await _session(engine), EditParams(prompt="blue"))
    assert step.state is StepState.COMPLETED, step.error
    assert step.result is not None
    assert sim.tasks_by_key() == {step.step_id: 1}  # the repeats replayed the one task
    await engine.aclose()


async def test_a_create_asked_again_sends_the_same_body_even_when_its_upload_is_short_lived(
    sim, clean_env
):
    # The first create reaches RunAPI (a task is made: it will be charged) and its answers are
    # lost past the client's retries; RunAPI's uploads live five minutes here, so the studio
    # would not have reused the upload for a new create. Asked again, the create must carry the
    # very same source URL: another body under the same key is refused (409), and the edit
    # failed while its first task was charged (the fault drill found one such in 24 edits).
    sim.file_ttl_s = 300
    sim.faults.drop_connection(times=6, route="create")
    engine = make_engine(clean_env, sim.base_url, sim.api_key)
    step = await engine.edit(await _session(engine), EditParams(prompt="blue"))
    assert step.state is StepState.COMPLETED, step.error
    assert sim.tasks_by_key() == {step.step_id: 1}
    await engine.aclose()


async def test_reads_refused_past_the_clients_retries_do_not_fail_a_running_task(sim, clean_env):
    engine = make_engine(clean_env, sim.base_url, sim.api_key)
    session_id = await _session(engine)
    step = await engine.submit_edit(session_id, EditParams(prompt="blue"))
    for _ in range(200):  # until its task exists
        if (await engine.load_session(session_id)).steps[step.step_id].task_id:
            break
        await asyncio.sleep(0.02)
    sim.faults.server_error(503, times=8)  # every read the client tries, and more
    done = await engine.wait(step.step_id)
    assert done is not None
    assert done.state is StepState.COMPLETED, done.error
    assert done.cost_cents == 5
    assert sim.tasks_by_key() == {step.step_id: 1}
    await engine.aclose()


async def test_runapi_silent_until_the_deadline_leaves_the_edit_open_for_the_next_start(
    sim, clean_env
):
    sim.faults.server_error(503, times=10_000)  # RunAPI answers nothing but 503 for now
    engine = make_engine(clean_env, sim.base_url, sim.api_key, task_deadline_s=1.5)
    session_id = await _session(engine)
    step = await engine.edit(session_id, EditParams(prompt="blue"))
    stored = (await engine.load_session(session_id)).steps[step.step_id]
    assert not stored.is_finished  # open, not failed: RunAPI may have the task
    await engine.aclose()

    sim.faults.reset()
    engine = make_engine(clean_env, sim.base_url, sim.api_key)
    await engine.resume_unfinished()
    done = await engine.wait(step.step_id)
    assert done is not None
    assert done.state is StepState.COMPLETED
    assert sim.tasks_by_key() == {step.step_id: 1}
    await engine.aclose()


async def test_a_paid_result_the_server_cannot_save_yet_is_saved_once_it_can(sim, clean_env):
    """A completed task's image that came but could not be written (the studio's file
    descriptors all taken by a flood of connections) failed the step with cost 0: paid for and
    lost (review 20 F1). It is tried again, as an image that did not come is."""
    sim.faults.expire_results()  # held at "fetching", before anything is written
    engine = make_engine(clean_env, sim.base_url, sim.api_key)
    session_id = await _session(engine)
    step = await engine.submit_edit(session_id, EditParams(prompt="blue"))

    async def error_is(expected: str) -> None:
        for _ in range(300):
            if (await engine.load_session(session_id)).steps[step.step_id].error == expected:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"the step never said {expected!r}")

    await error_is(FETCHING)
    images = clean_env / "images"
    away = images.rename(clean_env / "images-away")
    images.write_bytes(b"not a folder")  # every image write fails now
    try:
        sim.faults.reset()  # the link answers: the image comes, and cannot be saved
        await error_is(STORING)
        stored = (await engine.load_session(session_id)).steps[step.step_id]
        assert stored.state is StepState.RUNNING  # not failed
    finally:
        images.unlink()
        away.rename(images)
    await _kept_and_paid_once(engine, sim, await engine.wait(step.step_id))
    await engine.aclose()


async def test_an_edit_left_open_at_the_deadline_is_asked_for_again_while_the_studio_runs(
    sim, clean_env
):
    """RunAPI silent past the deadline: the step stays open, says why in the store (the API
    showed it queued, without a word), and is asked for again while the studio runs. It
    waited for a restart, days on a hosted studio, with a paid image at RunAPI (review 55
    F4). One task, one image, charged once."""
    sim.faults.server_error(503, times=10_000)  # RunAPI answers nothing but 503 for now
    engine = make_engine(clean_env, sim.base_url, sim.api_key, task_deadline_s=1.5)
    try:
        session_id = await _session(engine)
        step = await engine.edit(session_id, EditParams(prompt="blue"))
        stored = (await engine.load_session(session_id)).steps[step.step_id]
        assert not stored.is_finished  # open, not failed: RunAPI may have the task
        assert stored.error == UNANSWERED.format(waited="2 seconds")
        # Its create may have reached RunAPI: it is not cancelled before it is asked for again
        # (review 56 F1: a click on its ✕ then lost a task RunAPI charged, outside the budgets).
        with pytest.raises(HistoryError, match="can no longer be cancelled") as refused:
            await engine.cancel(session_id, step.step_id)
        assert str(refused.value) == LEFT_OPEN_NOT_CANCELLED
        assert step.step_id in (await engine.load_session(session_id)).steps
        sim.faults.reset()  # RunAPI answers again; the studio is not restarted
        for _ in range(300):
            stored = (await engine.load_session(session_id)).steps[step.step_id]
            if stored.is_finished:
                break
            await asyncio.sleep(0.05)
        await _kept_and_paid_once(engine, sim, stored)
    finally:
        await engine.aclose()


async def test_an_edit_a_cli_run_left_open_cannot_be_cancelled_from_a_studio_already_running(
    sim, clean_env
):
    """A CLI run ends at the deadline with its edit left open (its create may have reached
    RunAPI); a studio already running on the same data directory did not know it, and its ✕
    cancelled it and gave its price back. The next start asks for it again."""
    studio = make_engine(clean_env, sim.base_url, sim.api_key)  # running before the CLI run
    sim.faults.server_error(503, times=10_000)
    cli = make_engine(clean_env, sim.base_url, sim.api_key, task_deadline_s=1.5)
    session_id = await _session(cli)
    step = await cli.edit(session_id, EditParams(prompt="blue"))
    await cli.aclose()  # the CLI run ends; the step stays open in the store
    try:
        with pytest.raises(HistoryError) as refused:
            await studio.cancel(session_id, step.step_id)
        assert str(refused.value) == LEFT_OPEN_NOT_CANCELLED
        stored = (await studio.load_session(session_id)).steps[step.step_id]
        assert not stored.is_finished
    finally:
        await studio.aclose()
    sim.faults.reset()
    again = make_engine(clean_env, sim.base_url, sim.api_key)  # the next start
    try:
        await again.resume_unfinished()
        await _kept_and_paid_once(again, sim, await again.wait(step.step_id))
    finally:
        await again.aclose()


async def test_a_retry_after_runapi_lost_the_uploaded_source_sends_it_again(sim, clean_env):
    """RunAPI no longer has the copy of the source the studio uploaded (a purge, a restart of
    its storage): the edit fails, refunded. Its *Try again* went with the same lost copy and
    failed the same way (UX audit 1); it uploads the source again and completes."""
    engine = make_engine(clean_env, sim.base_url, sim.api_key)
    try:
        session_id = await _session(engine)
        first = await engine.edit(session_id, EditParams(prompt="blue"))
        assert first.state is StepState.COMPLETED
        with sim.state.lock:
            sim.state.files.clear()  # RunAPI lost its copy
        origin = (await engine.load_session(session_id)).origin.step_id
        failed = await engine.submit_edit(
            session_id, EditParams(prompt="green"), parent_step_id=origin
        )
        failed = await engine.wait(failed.step_id)
        assert failed is not None
        assert failed.state is StepState.FAILED
        uploads = [r for r in sim.requests if r.path == "/api/v1/files"]
        again = await engine.retry(session_id, failed.step_id)
        done = await engine.wait(again.step_id)
        assert done is not None
        assert done.state is StepState.COMPLETED
        assert len([r for r in sim.requests if r.path == "/api/v1/files"]) == len(uploads) + 1
    finally:
        await engine.aclose()


async def test_while_runapi_does_not_answer_a_running_step_says_so(sim, clean_env):
    """RunAPI stops answering while an edit runs: the step's update says so beside its phase
    (the page's status only counted up: UX audit 1), and no longer once it answers again."""
    engine = make_engine(clean_env, sim.base_url, sim.api_key)
    try:
        session_id = await _session(engine)
        sim.faults.server_error(503, times=10_000)
        step = await engine.submit_edit(session_id, EditParams(prompt="blue"))
        for _ in range(300):
            update = engine.running(session_id).get(step.step_id)
            if update is not None and update.note == NOT_ANSWERING:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the step never said RunAPI was not answering")
        sim.faults.reset()
        for _ in range(600):
            update = engine.running(session_id).get(step.step_id)
            if update is None or not update.note:
                break
            await asyncio.sleep(0.05)
        assert update is None or not update.note
        await _kept_and_paid_once(engine, sim, await engine.wait(step.step_id))
    finally:
        await engine.aclose()
