"""Who may touch a session: one check in the engine, so knowing an id is never enough."""

from __future__ import annotations

import pytest

from studio.engine import StoreError
from studio.history import StepState
from studio.limits import LimitError, Limits, LimitSettings
from studio.params import EditParams
from studio.visitor import Visitor
from tests.support.engines import make_engine, make_image

pytestmark = pytest.mark.anyio
A, B = Visitor("browser:a"), Visitor("browser:b")


@pytest.fixture
async def engine(sim, clean_env):
    caps = Limits(LimitSettings(visitor_budget_cents=10, max_running=2, per_minute=10))
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=caps)
    yield engine
    await engine.aclose()


async def _session_of(engine, owner):
    image = await engine.read_image(make_image())
    return await engine.start_session(image, name="mine", visitor=owner)


async def test_another_visitors_session_is_no_such_session_for_every_use(engine, sim):
    session = await _session_of(engine, A)
    step = await engine.edit(session.session_id, EditParams(prompt="blue"), visitor=A)
    assert step.state is StepState.COMPLETED
    sid, creates = session.session_id, len(sim.tasks)
    attempts = [
        engine.load_session(sid, visitor=B),
        engine.submit_edit(sid, EditParams(prompt="red"), visitor=B),
        engine.compare(sid, EditParams(prompt="red"), visitor=B),
        engine.retry(sid, step.step_id, visitor=B),
        engine.keep(sid, step.step_id, visitor=B),
        engine.navigate(sid, lambda s: s.undo(), visitor=B),
        engine.cancel(sid, step.step_id, visitor=B),
        engine.export_session(sid, visitor=B),
        engine.session_version(sid, visitor=B),
    ]
    for attempt in attempts:
        with pytest.raises(StoreError, match="There is no such session"):
            await attempt
    assert len(sim.tasks) == creates  # nothing was created for B
    assert [s.session_id for s in await engine.list_sessions(visitor=B)] == []
    assert [s.session_id for s in await engine.list_sessions(visitor=A)] == [sid]
    assert await engine.owns_image(step.result.sha256, visitor=A)
    assert not await engine.owns_image(step.result.sha256, visitor=B)
    assert (await engine.load_session(sid, visitor=A)).current_step_id == step.step_id


async def test_past_the_visitors_budget_nothing_is_created_or_stored(engine, sim):
    session = await _session_of(engine, A)
    await engine.edit(session.session_id, EditParams(prompt="blue", model="max"), visitor=A)
    creates = len(sim.tasks)
    with pytest.raises(LimitError, match="today's share"):
        await engine.submit_edit(session.session_id, EditParams(prompt="red"), visitor=A)
    assert len(sim.tasks) == creates
    stored = await engine.load_session(session.session_id, visitor=A)
    assert len(stored.steps) == 2  # the original and the one paid edit


async def test_a_visitor_with_their_own_key_is_not_held_to_the_budget(engine, sim):
    from studio.config import Secret

    session = await _session_of(engine, A)
    for prompt in ("blue", "red", "green"):
        step = await engine.edit(
            session.session_id,
            EditParams(prompt=prompt, model="max"),
            visitor=A.with_key(Secret(sim.api_key)),
        )
        assert step.state is StepState.COMPLETED


async def test_an_upload_past_the_visitors_share_of_disk_is_refused_and_stores_nothing(
    sim, clean_env
):
    from studio.limits import LimitError, taken_bytes

    first_data = make_image(300, 200)
    big_data = make_image(300, 200, colour=(9, 9, 9))
    # Room for the first session and not for both (each: its image, rows and name).
    both = taken_bytes(len(first_data) + len(big_data), 2, 2, len("one") + len("two"))
    caps = Limits(LimitSettings(upload_bytes=both - 1))
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=caps)
    try:
        first = await engine.read_image(first_data)
        await engine.start_session(first, name="one", visitor=A)
        big = await engine.read_image(big_data)
        with pytest.raises(LimitError, match="does not fit"):
            await engine.start_session(big, name="two", visitor=A)
        assert len(await engine.list_sessions(visitor=A)) == 1
        await engine.start_session(big, name="theirs", visitor=B)  # B has a share of their own
    finally:
        await engine.aclose()
