"""Import attacks against a real engine: real store on disk, the simulator on loopback."""

from __future__ import annotations

import asyncio
import io
import tracemalloc
import zipfile

import pytest

from studio.bundle import UNFINISHED_WHEN_EXPORTED, BundleError
from studio.engine import Engine, ImageError
from studio.history import StepState, new_id
from studio.params import EditParams
from studio.store import Store, StoreError
from tests.support.engines import make_client, make_engine, make_image
from tests.support.zips import bomb, build_zip, rewrite_export

pytestmark = pytest.mark.anyio

# Far below the 1 GiB the bomb inflates to: what reading the 1 MB ZIP may cost, with room to spare.
BOMB_MEMORY_BOUND = 64 << 20


@pytest.fixture
async def engine(sim, clean_env):
    engine = make_engine(clean_env, sim.base_url, sim.api_key)
    yield engine
    await engine.aclose()


async def _export_with_one_edit(engine: Engine) -> bytes:
    image = await engine.read_image(make_image())
    session = await engine.start_session(image, name="source")
    await engine.edit(session.session_id, EditParams(prompt="make it blue"))
    return await engine.export_session(session.session_id)


def _stored_images(home) -> set[str]:
    return {p.name for p in (home / "images").rglob("*") if p.is_file()}


async def test_unfinished_steps_in_a_zip_never_create_or_poll_a_task(engine, sim, clean_env):
    data = await _export_with_one_edit(engine)
    # A real task on the simulator, whose id the ZIP claims as its own running step.
    victim = await engine.start_session(None)
    paid = await engine.edit(victim.session_id, EditParams(prompt="a red bicycle"))
    known_task = paid.task_id
    assert known_task in sim.tasks

    def add_unfinished(document):
        edit = document["steps"][1]
        for state, task_id in (("queued", None), ("running", known_task)) * 25:
            document["steps"].append(
                {
                    **edit,
                    "step_id": new_id(),
                    "state": state,
                    "task_id": task_id,
                    "image": None,
                    "result": None,
                    "cost_cents": None,
                    "completed_at": None,
                    "params": {**edit["params"], "model": "max"},
                }
            )

    seen = len(sim.requests)
    imported = await engine.import_session(rewrite_export(data, add_unfinished))
    unfinished = [s for s in imported.steps.values() if s.error == UNFINISHED_WHEN_EXPORTED]
    assert len(unfinished) == 50
    assert all(s.state is StepState.FAILED and s.task_id is None for s in unfinished)

    # A restart against the same data directory resumes nothing of it.
    await engine.aclose()
    restarted = Engine(Store.open(clean_env), make_client(sim.base_url, sim.api_key))
    try:
        assert await restarted.resume_unfinished() == []
        await asyncio.sleep(0.3)  # what a resumed step would have done by now: create or poll
    finally:
        await restarted.aclose()
    assert sim.requests[seen:] == []
    assert len(sim.tasks) == 2  # the two edits above, nothing more


@pytest.mark.parametrize(
    "declared",
    [pytest.param(None, id="honest-header"), pytest.param(1000, id="lying-header")],
)
async def test_a_zip_bomb_is_refused_with_bounded_memory_and_leaves_nothing(
    engine, clean_env, declared
):
    data = bomb("session.json", 1024, declared_size=declared)  # 1 GiB of spaces in about 1 MB
    before = _stored_images(clean_env)
    tracemalloc.start()
    try:
        with pytest.raises(BundleError) as refused:
            await engine.import_session(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"ZIP {len(data) / 2**20:.1f} MiB inflating to 1 GiB: peak {peak / 2**20:.1f} MiB")
    assert peak < BOMB_MEMORY_BOUND
    assert "\n" not in str(refused.value)
    assert await engine.list_sessions() == []
    assert _stored_images(clean_env) == before


async def test_an_image_that_does_not_decode_refuses_the_whole_import(engine, clean_env):
    data = await _export_with_one_edit(engine)
    sessions = await engine.list_sessions()
    images = _stored_images(clean_env)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    last = sorted(n for n in files if n.startswith("images/"))[-1]
    files[last] = files[last][: len(files[last]) // 2]  # a truncated PNG
    with pytest.raises((ImageError, BundleError)):
        await engine.import_session(build_zip(files))
    assert await engine.list_sessions() == sessions
    assert _stored_images(clean_env) == images


async def test_an_image_that_is_not_the_one_described_is_refused(engine, clean_env):
    data = await _export_with_one_edit(engine)

    def lie(document):
        document["steps"][1]["result"]["width"] = 4000

    with pytest.raises(BundleError, match="not the image its step describes"):
        await engine.import_session(rewrite_export(data, lie))


class _FailingStore(Store):
    """A real store whose session insert fails, as a full disk or a locked database would."""

    def create_session(self, session):
        raise StoreError("The history database could not be used (disk full).")


async def test_a_failed_write_takes_back_the_images_it_added(sim, clean_env, tmp_path):
    source = make_engine(tmp_path / "elsewhere", sim.base_url, sim.api_key)
    try:
        data = await _export_with_one_edit(source)
    finally:
        await source.aclose()
    failing = Engine(_FailingStore.open(clean_env), make_client(sim.base_url, sim.api_key))
    try:
        with pytest.raises(StoreError):
            await failing.import_session(data)
        assert _stored_images(clean_env) == set()
    finally:
        await failing.aclose()
