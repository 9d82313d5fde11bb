"""The engine's use cases end to end: real store on disk, real client, the simulator on loopback."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from datetime import UTC, datetime

import pytest
from PIL import Image

from studio.config import Secret
from studio.engine import Engine, RunAPIError, StoreError
from studio.history import HistoryError, StepState
from studio.params import EditParams, ParamsError
from studio.simulator.tasks import LatencyProfile
from studio.visitor import Visitor
from tests.support.engines import make_engine, make_image

pytestmark = pytest.mark.anyio


@pytest.fixture
async def engine(sim, clean_env):
    engine = make_engine(clean_env, sim.base_url, sim.api_key)
    yield engine
    await engine.aclose()


async def _start(engine: Engine, width: int = 320, height: int = 240):
    image = await engine.read_image(make_image(width, height))
    return await engine.start_session(image, name="test")


async def test_a_chain_of_edits_feeds_each_result_to_the_next_step(engine, sim):
    session = await _start(engine)
    steps = []
    for prompt in ("make it blue", "add snow", "make it night"):
        step = await engine.edit(session.session_id, EditParams(prompt=prompt))
        assert step.state is StepState.COMPLETED, step.error
        steps.append(step)
    session = await engine.load_session(session.session_id)
    assert [s.step_id for s in session.path()[1:]] == [s.step_id for s in steps]
    # What the service received as each step's source is, byte for byte, the previous result.
    sources = [session.origin.result, *(s.result for s in steps[:-1])]
    for step, source in zip(steps, sources, strict=True):
        assert sim.tasks[step.task_id].source_bytes == await engine.image_bytes(source)
    assert session.total_cost_cents == 15
    # One create per step, each under its own step id as the idempotency key.
    creates = [r for r in sim.requests if r.method == "POST" and r.path.endswith("text_to_image")]
    assert [r.headers["idempotency-key"] for r in creates] == [s.step_id for s in steps]


async def test_match_source_sends_the_ratio_nearest_to_a_portrait_source(engine, sim):
    session = await _start(engine, width=600, height=800)
    step = await engine.edit(session.session_id, EditParams(prompt="add a hat"))
    assert sim.tasks[step.task_id].body["aspect_ratio"] == "3:4"
    assert step.result.height > step.result.width


async def test_generation_without_a_source_sends_no_source_url(engine, sim):
    session = await engine.start_session(None)
    step = await engine.edit(
        session.session_id, EditParams(prompt="a red bicycle", safety_tolerance=5)
    )
    assert step.state is StepState.COMPLETED
    assert step.kind == "generate"
    body = sim.tasks[step.task_id].body
    assert "source_image_url" not in body
    assert body["safety_tolerance"] == 5


async def test_a_failed_task_keeps_the_service_message_and_a_retry_is_a_new_sibling(engine, sim):
    session = await _start(engine)
    sim.faults.fail_tasks(message="Content moderated", times=1)
    failed = await engine.edit(session.session_id, EditParams(prompt="make it blue"))
    assert failed.state is StepState.FAILED
    assert "Content moderated" in failed.error
    assert failed.cost_cents == 0
    retried = await engine.wait((await engine.retry(session.session_id, failed.step_id)).step_id)
    assert retried.state is StepState.COMPLETED
    session = await engine.load_session(session.session_id)
    assert session.steps[failed.step_id] == failed  # never rewritten
    assert retried.parent_id == failed.parent_id
    assert retried.step_id != failed.step_id
    assert session.current_step_id == retried.step_id


async def test_trying_again_the_second_of_a_failed_queue_runs_both_instructions_in_order(
    engine, sim
):
    """RunAPI failed the first of two instructions typed ahead, so the second never ran. Try
    again on the second ran it alone, on the original: the first instruction was gone (UX
    audit 5). Now both run again, the second on the first's new result, paid once each."""
    session = await _start(engine)
    sid = session.session_id
    sim.faults.fail_tasks(message="Upstream error", times=1)
    first = await engine.submit_edit(sid, EditParams(prompt="make it blue"))
    second = await engine.submit_edit(sid, EditParams(prompt="add snow"))
    assert (await engine.wait(first.step_id)).state is StepState.FAILED
    second = await engine.wait(second.step_id)
    assert second.state is StepState.FAILED
    assert "Try again runs the one before again" in second.error
    tasks_before = len(sim.tasks)
    again = await engine.wait((await engine.retry(sid, second.step_id)).step_id)
    assert again.state is StepState.COMPLETED
    session = await engine.load_session(sid)
    path = session.path()
    assert [s.params.prompt for s in path[1:]] == ["make it blue", "add snow"]
    redone = path[1]
    assert (redone.retry_of, again.retry_of) == (first.step_id, second.step_id)
    assert again.parent_id == redone.step_id
    assert again.source.image_sha256 == redone.result.sha256
    assert len(sim.tasks) == tasks_before + 2  # each instruction sent once more, no more


async def test_a_refused_create_fails_the_step_with_a_plain_sentence(engine, sim):
    session = await _start(engine)
    sim.balance_cents = 0
    step = await engine.edit(session.session_id, EditParams(prompt="make it blue"))
    assert step.state is StepState.FAILED
    assert "credit" in step.error.lower()
    assert sim.api_key not in step.error


async def test_an_edit_survives_a_burst_of_server_errors_and_a_dropped_create(engine, sim):
    session = await _start(engine)
    sim.faults.server_error(status=503, times=2)
    sim.faults.drop_connection(times=1, route="create")
    step = await engine.edit(session.session_id, EditParams(prompt="make it blue"))
    assert step.state is StepState.COMPLETED
    assert len(sim.tasks) == 1  # the retried create replayed the first task


async def test_compare_runs_pro_and_max_at_the_same_time_from_the_same_parent(engine, sim):
    session = await _start(engine)
    pro, max_ = await engine.compare(session.session_id, EditParams(prompt="make it blue"))
    pro, max_ = await asyncio.gather(engine.wait(pro.step_id), engine.wait(max_.step_id))
    assert (pro.params.model, max_.params.model) == ("pro", "max")
    assert pro.state is max_.state is StepState.COMPLETED
    assert pro.parent_id == max_.parent_id == session.current_step_id
    a, b = sim.tasks[pro.task_id], sim.tasks[max_.task_id]
    # They overlapped: each started before the other finished.
    assert a.created_at < b.finished_at
    assert b.created_at < a.finished_at
    # Neither is current until the user keeps one; keeping max leaves pro as a sibling branch.
    assert (await engine.load_session(session.session_id)).current_step_id == pro.parent_id
    kept = await engine.keep(session.session_id, max_.step_id)
    assert kept.current_step_id == max_.step_id
    assert [s.step_id for s in kept.branches] == [pro.step_id]
    after = await engine.edit(session.session_id, EditParams(prompt="add snow"))
    assert after.parent_id == max_.step_id


async def test_compare_shows_the_other_result_when_one_model_fails(engine, sim):
    session = await _start(engine)
    sim.faults.fail_tasks(message="Upstream error", times=1)
    pair = await engine.compare(session.session_id, EditParams(prompt="make it blue"))
    finished = await asyncio.gather(*(engine.wait(s.step_id) for s in pair))
    states = sorted(str(s.state) for s in finished)
    assert states == ["completed", "failed"]


async def test_many_sessions_editing_at_once_keep_their_own_steps(engine, sim):
    sessions = [await _start(engine) for _ in range(6)]

    async def chain(index: int, session_id: str) -> None:
        for n in range(2):
            step = await engine.edit(session_id, EditParams(prompt=f"s{index} e{n}"))
            assert step.state is StepState.COMPLETED

    await asyncio.gather(*(chain(i, s.session_id) for i, s in enumerate(sessions)))
    for index, session in enumerate(sessions):
        loaded = await engine.load_session(session.session_id)
        assert [s.params.prompt for s in loaded.path()[1:]] == [f"s{index} e0", f"s{index} e1"]
    assert len(sim.tasks) == 12


async def test_export_and_import_round_trip_keeps_images_byte_identical(engine, sim, clean_env):
    session = await _start(engine)
    for prompt in ("make it blue", "add snow"):
        await engine.edit(session.session_id, EditParams(prompt=prompt))
    original = await engine.load_session(session.session_id)
    data = await engine.export_session(session.session_id)

    assert sim.api_key.encode() not in data
    assert str(clean_env).encode() not in data
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        document = json.loads(archive.read("session.json"))
        prompts = [s["params"]["prompt"] for s in document["steps"] if s["params"]]
        assert prompts == ["make it blue", "add snow"]
        last_png = archive.read(document["steps"][-1]["image"])
    # The instruction and model travel inside the PNG too.
    assert Image.open(io.BytesIO(last_png)).text["kontext-studio:prompt"] == "add snow"

    imported = await engine.import_session(data)
    assert imported.session_id != original.session_id
    originals = [s.result.sha256 for s in original.path()]
    assert [s.result.sha256 for s in imported.path()] == originals
    assert [s.params.prompt for s in imported.path()[1:]] == ["make it blue", "add snow"]


async def test_replay_applies_a_saved_chain_to_a_new_source(engine, sim):
    session = await _start(engine)
    for prompt in ("make it blue", "add snow"):
        await engine.edit(session.session_id, EditParams(prompt=prompt, model="max"))
    data = await engine.export_session(session.session_id)
    new_source = await engine.read_image(make_image(400, 400, colour=(10, 200, 10)))
    replayed = await engine.replay(data, new_source)
    path = replayed.path()
    assert [(s.params.prompt, s.params.model) for s in path[1:]] == [
        ("make it blue", "max"),
        ("add snow", "max"),
    ]
    assert all(s.state is StepState.COMPLETED for s in path)
    assert sim.tasks[path[1].task_id].source_bytes == new_source.data


async def test_import_refuses_a_zip_that_is_not_an_export(engine):
    from studio.bundle import BundleError

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(BundleError, match="not a Kontext Studio"):
        await engine.import_session(buffer.getvalue())
    assert await engine.list_sessions() == []


async def test_compare_on_a_failed_step_checks_the_edit_limits_and_creates_nothing(engine, sim):
    session = await _start(engine)
    sim.faults.fail_tasks(message="Content moderated", times=1)
    failed = await engine.edit(session.session_id, EditParams(prompt="make it blue"))
    assert failed.state is StepState.FAILED
    creates = len(sim.tasks)
    risky = EditParams(prompt="make it red", safety_tolerance=6)  # allowed only when generating
    with pytest.raises(ParamsError, match="from 0 to 2 when editing"):
        await engine.compare(session.session_id, risky)
    assert len(sim.tasks) == creates
    stored = await engine.load_session(session.session_id)
    assert set(stored.steps) == {session.current_step_id, failed.step_id}


async def test_a_finished_step_leaves_nothing_behind_in_memory(engine, sim):
    session = await _start(engine)
    await engine.edit(session.session_id, EditParams(prompt="make it blue"))
    pro, max_ = await engine.compare(session.session_id, EditParams(prompt="add snow"))
    async for _ in engine.watch_session(session.session_id):
        pass
    assert not {pro.step_id, max_.step_id} & engine.running(session.session_id).keys()
    sizes = engine.in_memory
    assert sizes["runs"] == 0
    assert sizes["watched_sessions"] == 0
    assert sizes["session_locks"] == 0


async def test_a_session_started_without_a_name_is_called_after_its_first_instruction(engine):
    session = await engine.start_session(None)
    assert session.name == "Untitled session"
    await engine.edit(session.session_id, EditParams(prompt="  a red bicycle\nagainst a wall "))
    assert (await engine.load_session(session.session_id)).name == "a red bicycle against a wall"
    # Only the first instruction names it; a name given by a person is never replaced.
    await engine.edit(session.session_id, EditParams(prompt="make it blue"))
    await engine.rename_session(session.session_id, "Bicycles")
    await engine.edit(session.session_id, EditParams(prompt="add snow"))
    assert (await engine.load_session(session.session_id)).name == "Bicycles"


async def test_an_import_is_marked_as_such(engine):
    session = await _start(engine)
    imported = await engine.import_session(await engine.export_session(session.session_id))
    assert imported.name == "test (imported)"
    again = await engine.import_session(await engine.export_session(imported.session_id))
    assert again.name == "test (imported)"


def _age(folder, seconds: float = 3600) -> None:
    """Make every file under `folder` look `seconds` old, as after an hour of other work."""
    import os
    import time

    for path in folder.rglob("*"):
        if path.is_file():
            os.utime(path, (time.time() - seconds, time.time() - seconds))


async def test_deleting_a_session_removes_the_images_only_it_used(engine, clean_env):
    kept = await _start(engine)
    doomed = await _start(engine)  # the same source image as `kept`
    step = await engine.edit(doomed.session_id, EditParams(prompt="make it blue"))
    await engine.thumbnails([step.result, kept.origin.result])
    _age(clean_env)
    only_doomed = engine.image_path(step.result)
    shared = engine.image_path(kept.origin.result)
    assert only_doomed.exists()

    await engine.delete_session(doomed.session_id)

    assert [s.session_id for s in await engine.list_sessions()] == [kept.session_id]
    assert not only_doomed.exists()
    assert shared.exists()  # still the source of the session that is left
    thumbs = {p.name.split(".")[0] for p in (clean_env / "thumbs").iterdir()}
    assert thumbs == {kept.origin.result.sha256}
    with pytest.raises(StoreError, match="no such session"):
        await engine.load_session(doomed.session_id)


async def test_clean_up_leaves_an_image_stored_moments_ago_alone(engine, clean_env):
    # An edit stores its image a moment before the step that refers to it (maybe in another
    # process): an unreferenced file that is new is not touched.
    ref = await engine._put_image(make_image(64, 64), "png", 64, 64)
    await engine.collect_garbage()
    assert engine.image_path(ref).exists()
    _age(clean_env)
    await engine.collect_garbage()
    assert not engine.image_path(ref).exists()


async def test_a_delete_removes_its_own_images_and_a_pass_over_the_rest_runs_now_and_then(
    engine, clean_env
):
    """A delete looks at its own session's images; every other file of the store is looked at
    in the background, at most every `FULL_COLLECT_EVERY_S` (each delete looked at every file:
    a second per 40,000 images, on the threads every visitor's reads share)."""
    left_behind = await engine._put_image(make_image(64, 64, colour=(1, 2, 3)), "png", 64, 64)
    doomed = await _start(engine)
    step = await engine.edit(doomed.session_id, EditParams(prompt="make it blue"))
    _age(clean_env)
    await engine.delete_session(doomed.session_id)
    assert not engine.image_path(step.result).exists()
    for _ in range(100):  # the pass over the rest, in the background
        if not engine.image_path(left_behind).exists():
            break
        await asyncio.sleep(0.05)
    assert not engine.image_path(left_behind).exists()
    # The next delete soon after removes its own images, and leaves the rest to the next pass.
    later = await engine._put_image(make_image(64, 64, colour=(4, 5, 6)), "png", 64, 64)
    second = await _start(engine)
    made = await engine.edit(second.session_id, EditParams(prompt="make it red"))
    _age(clean_env)
    await engine.delete_session(second.session_id)
    await asyncio.sleep(0.2)
    assert not engine.image_path(made.result).exists()
    assert engine.image_path(later).exists()


async def test_a_session_with_an_edit_running_cannot_be_deleted(engine, sim):
    session = await _start(engine)
    step = await engine.submit_edit(session.session_id, EditParams(prompt="make it blue"))
    with pytest.raises(HistoryError, match="still running"):
        await engine.delete_session(session.session_id)
    await engine.wait(step.step_id)
    await engine.delete_session(session.session_id)
    assert await engine.list_sessions() == []


async def test_a_refused_pasted_key_says_so_and_leaves_no_failed_step(engine, sim):
    session = await _start(engine)
    wrong = Secret("sk-pasted-but-wrong")
    with pytest.raises(RunAPIError, match="the key you pasted") as refused:
        await engine.check_key(wrong)
    assert "RUNAPI_API_KEY" not in str(refused.value)
    with pytest.raises(RunAPIError, match="the key you pasted"):
        await engine.submit_edit(
            session.session_id, EditParams(prompt="x"), visitor=Visitor(api_key=wrong)
        )
    with pytest.raises(RunAPIError, match="the key you pasted"):
        await engine.compare(
            session.session_id, EditParams(prompt="x"), visitor=Visitor(api_key=wrong)
        )
    assert len((await engine.load_session(session.session_id)).steps) == 1  # the origin only
    assert not [r for r in sim.requests if r.method == "POST"]  # nothing was created
    assert engine.in_memory["visitor_clients"] == 0  # the refused key's client is gone

    good = Secret(sim.api_key)  # a key the simulator accepts, pasted by a visitor
    assert await engine.check_key(good) == sim.balance_cents
    step = await engine.edit(
        session.session_id, EditParams(prompt="x"), visitor=Visitor(api_key=good)
    )
    assert step.state is StepState.COMPLETED
    balance_calls = [r for r in sim.requests if r.path.endswith("/me/balance")]
    # The refused key is asked about once (then remembered as refused), the accepted one
    # once, not per edit.
    assert len(balance_calls) == 2


async def test_the_engine_learns_each_model_s_durations_and_keeps_them_across_a_restart(
    sim, clean_env
):
    from studio.config import Secret, Settings

    settings = Settings(
        api_key=Secret(sim.api_key), base_url=sim.base_url, home=clean_env, poll_scale=0.05
    )
    engine = Engine.from_settings(settings)
    try:
        session = await _start(engine)
        steps = [
            await engine.edit(session.session_id, EditParams(prompt=f"edit {n}")) for n in range(6)
        ]
        assert all(step.state is StepState.COMPLETED for step in steps)
        learned = engine.schedule.durations("flux-kontext-pro")
        assert len(learned) == 6
        # What is learned is the wait itself, not the step's elapsed time (upload, download).
        assert all(seen < step.elapsed_s for seen, step in zip(learned, steps, strict=True))
        assert engine.schedule.durations("flux-kontext-max") == []

        def reads(step):
            return sum(1 for r in sim.requests if r.method == "GET" and step.task_id in r.path)

        # Once finishes are known, a task is read just before and at the expected finish
        # instead of all along the prior (scaled for this simulator).
        assert sum(map(reads, steps[-2:])) < sum(map(reads, steps[:2]))
    finally:
        await engine.aclose()
    again = Engine.from_settings(settings)
    try:
        # A new process (a CLI run, an agent's call) starts from what the last one learned.
        assert again.schedule.durations("flux-kontext-pro") == learned
        # With the read before each finish: the bracket the next probe halves.
        brackets = again.schedule.samples("flux-kontext-pro")
        assert all(0 <= after < seen for seen, after in brackets)
        assert any(after > 0 for _, after in brackets)
    finally:
        await again.aclose()


async def test_cancelling_the_middle_of_three_queued_edits_runs_the_last_on_the_first(engine, sim):
    session = await _start(engine)
    sid = session.session_id
    first = await engine.submit_edit(sid, EditParams(prompt="make it blue"))
    middle = await engine.submit_edit(sid, EditParams(prompt="add snow"))
    last = await engine.submit_edit(sid, EditParams(prompt="make it night"))
    cancelled = await engine.cancel(sid, middle.step_id)
    assert middle.step_id not in cancelled.steps
    assert cancelled.steps[last.step_id].parent_id == first.step_id
    done = await engine.wait(last.step_id)
    assert done.state is StepState.COMPLETED, done.error
    session = await engine.load_session(sid)
    assert [s.params.prompt for s in session.path()[1:] if s.params] == [
        "make it blue",
        "make it night",
    ]
    first_done = session.steps[first.step_id]
    # The last one ran on the first one's image; the cancelled one was never sent.
    assert sim.tasks[done.task_id].source_bytes == await engine.image_bytes(first_done.result)
    assert len(sim.tasks) == 2


async def test_an_edit_typed_ahead_counts_its_seconds_from_when_it_starts(engine, sim):
    """The status of an edit typed ahead counted from when it was typed: four seconds after
    it was sent it said "Sent to RunAPI… 73.6 s", its wait behind the one before included
    (UX audit 10). Its seconds start when it leaves the queue, as its "Done in" does."""
    sim.latency = LatencyProfile(0.6, 0.6, 0.6, 0.6)
    session = await _start(engine)
    sid = session.session_id
    first = await engine.submit_edit(sid, EditParams(prompt="make it blue"))
    second = await engine.submit_edit(sid, EditParams(prompt="add snow"))
    assert (await engine.wait(first.step_id)).state is StepState.COMPLETED
    await asyncio.sleep(0.2)
    waited = (datetime.now(UTC) - second.created_at).total_seconds()
    running = engine.running(sid)[second.step_id]
    assert running.phase != "queued", running
    assert waited > 1.0  # (the first took its 1.2 s)
    assert running.elapsed_s < waited - 0.8, (running.elapsed_s, waited)


async def test_candidates_run_one_instruction_several_times_and_keeping_one_leaves_branches(
    engine, sim
):
    session = await _start(engine)
    sid = session.session_id
    steps = await engine.candidates(sid, EditParams(prompt="make it blue"), count=3)
    assert len({s.step_id for s in steps}) == 3
    assert {s.parent_id for s in steps} == {session.origin.step_id}
    done = await asyncio.gather(*(engine.wait(s.step_id) for s in steps))
    assert all(s.state is StepState.COMPLETED for s in done)
    assert len(sim.tasks) == 3  # three runs, three idempotency keys, three charges
    still = await engine.load_session(sid)
    assert still.current_step_id == session.origin.step_id  # none is current until kept
    kept = await engine.keep(sid, steps[1].step_id)
    assert kept.current_step_id == steps[1].step_id
    others = {b.step_id for b in kept.branches}
    assert others == {steps[0].step_id, steps[2].step_id}  # the others stay as branches
    with pytest.raises(HistoryError, match="2 to 4 results"):
        await engine.candidates(sid, EditParams(prompt="make it red"), count=5)


async def test_a_pending_choice_is_answered_by_a_keep_from_anywhere_and_only_by_its_own(
    engine, sim
):
    """The page notes results waiting for a Keep; a keep of one of them (the API's
    `keep_result`, an agent's) answers it, so a page on that step no longer asks for one. A
    step clicked elsewhere leaves it waiting."""
    session = await _start(engine)
    sid, origin = session.session_id, session.origin.step_id
    steps = await engine.candidates(sid, EditParams(prompt="make it blue"), models=("pro", "max"))
    ids = tuple(s.step_id for s in steps)
    await engine.note_choice(sid, origin, ids)
    await asyncio.gather(*(engine.wait(i) for i in ids))
    await engine.keep(sid, origin)  # (a click on the original: not one of them)
    assert await engine.pending_choice(sid) == (origin, ids)
    await engine.keep(sid, ids[1])
    assert await engine.pending_choice(sid) is None


async def test_images_a_killed_run_left_unreferenced_are_removed_after_the_next_start(
    engine, clean_env
):
    """An import killed midway stored its images and no session: they stayed until some
    visitor's delete started a pass over the store (review 17 L1). A start schedules one."""
    left = await engine._put_image(make_image(64, 64, colour=(9, 8, 7)), "png", 64, 64)
    _age(clean_env)  # stored by the run that was killed, before the grace
    kept = await _start(engine)
    engine.collect_after_start(delay_s=0.05)
    for _ in range(200):
        if not engine.image_path(left).exists():
            break
        await asyncio.sleep(0.05)
    assert not engine.image_path(left).exists()
    assert engine.image_path(kept.origin.result).exists()


def _uploads(sim) -> list[str]:  # type: ignore[no-untyped-def]
    """The key each upload to RunAPI was made with."""
    return [
        r.headers.get("authorization", "")
        for r in sim.requests
        if r.method == "POST" and r.path == "/api/v1/files"
    ]


async def test_a_source_runapi_lost_is_uploaded_again_and_each_key_uploads_its_own(engine, sim):
    """The studio kept one upload of an image for everyone, whoever's key made it, and kept it
    when RunAPI could no longer fetch it: every edit of that image failed the same way for the
    rest of its hour, on every key (review 21 F1)."""
    session = await _start(engine)
    first = await engine.edit(session.session_id, EditParams(prompt="make it blue"))
    assert first.state is StepState.COMPLETED
    with sim.state.lock:
        sim.state.files.clear()  # RunAPI lost the uploaded file
    origin = session.origin.step_id
    lost = await engine.edit(
        session.session_id, EditParams(prompt="make it red"), parent_step_id=origin
    )
    assert lost.state is StepState.FAILED
    again = await engine.edit(
        session.session_id, EditParams(prompt="make it red"), parent_step_id=origin
    )
    assert again.state is StepState.COMPLETED  # uploaded afresh
    assert len(_uploads(sim)) == 2
    # A visitor with a key of their own edits the same image: uploaded with their key.
    sim.accept_key("sk-another-account")
    theirs = Visitor(api_key=Secret("sk-another-account"))
    own = await engine.start_session(await engine.read_image(make_image()), visitor=theirs)
    mine = await engine.edit(own.session_id, EditParams(prompt="make it green"), visitor=theirs)
    assert mine.state is StepState.COMPLETED
    assert _uploads(sim)[-1] == "Bearer sk-another-account"


async def test_an_upload_made_for_one_visitor_is_never_another_visitors_shortcut(engine, sim):
    """Two visitors on the server's key edit the same photo: each edit of theirs uploads it for
    them (reusing the other's upload started their edit sooner, so anyone could tell that
    someone had edited that exact photo lately); a visitor's own second edit reuses theirs."""
    a, b = Visitor("browser:a"), Visitor("browser:b")
    photo = make_image(300, 200)
    sessions = {}
    for who in (a, b):
        sessions[who] = await engine.start_session(
            await engine.read_image(photo, visitor=who), visitor=who
        )
    for prompt in ("make it blue", "make it red"):
        step = await engine.edit(
            sessions[a].session_id,
            EditParams(prompt=prompt),
            parent_step_id=sessions[a].origin.step_id,
            visitor=a,
        )
        assert step.state is StepState.COMPLETED
    assert len(_uploads(sim)) == 1  # a's second edit of it: a's own upload again
    step = await engine.edit(sessions[b].session_id, EditParams(prompt="make it red"), visitor=b)
    assert step.state is StepState.COMPLETED
    assert len(_uploads(sim)) == 2
