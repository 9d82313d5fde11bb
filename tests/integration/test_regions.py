"""Keep the rest, end to end: the engine, a real store, the drifting simulator on loopback.

The simulator's edits come back at about one megapixel, zoomed 2-4 %, shifted, colour-cast and
changed in one patch (plus its mark and caption), so each test has something real to undo.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from studio.engine import Engine
from studio.history import HistoryError, Step, StepState
from studio.params import EditParams, RegionError, RegionRequest
from studio.simulator.render import changed_boxes
from studio.visitor import Visitor
from tests.support.engines import make_engine, make_image, make_photo

pytestmark = pytest.mark.anyio

RATIO = "4:3"


@pytest.fixture
async def engine(sim, clean_env):
    sim.latency = "quick"
    engine = make_engine(clean_env, sim.base_url, sim.api_key)
    yield engine
    await engine.aclose()


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _creates(sim) -> int:
    return sum(1 for r in sim.requests if r.method == "POST" and r.path.endswith("text_to_image"))


async def _start(engine: Engine, width: int = 800, height: int = 600):
    image = await engine.read_image(make_photo(width, height))
    return await engine.start_session(image, name="photo")


async def test_a_box_edit_keeps_every_pixel_outside_the_box_at_the_source_s_full_size(engine):
    session = await _start(engine, 1600, 1200)  # larger than the model's one megapixel
    box = (500, 300, 400, 350)
    step = await engine.edit(
        session.session_id, EditParams(prompt="add a red hat"), region=RegionRequest(box=box)
    )
    assert step.state is StepState.COMPLETED, step.error
    assert (step.result.width, step.result.height) == (1600, 1200)
    assert step.raw_result is not None
    assert step.raw_result.width * step.raw_result.height < 1.1e6  # the model's own output
    assert step.region is not None
    assert (step.region.kind, step.region.box) == ("box", box)
    source = _pixels(await engine.image_bytes(session.origin.result))
    result = _pixels(await engine.image_bytes(step.result))
    x, y, w, h = box
    outside = np.ones(source.shape[:2], bool)
    outside[y : y + h, x : x + w] = False
    assert (result[outside] == source[outside]).all()  # bit for bit
    inside = (result[y : y + h, x : x + w] != source[y : y + h, x : x + w]).any(axis=2)
    assert inside.mean() > 0.5  # and the edit did land inside the box


async def test_a_mask_of_another_size_is_scaled_to_the_source(engine):
    session = await _start(engine)
    mask = Image.new("L", (80, 60), 0)
    mask.paste(255, (20, 15, 60, 45))  # the middle half, at a tenth of the size
    data = io.BytesIO()
    mask.save(data, "PNG")
    step = await engine.edit(
        session.session_id,
        EditParams(prompt="make it night"),
        region=RegionRequest(mask=data.getvalue()),
    )
    assert step.state is StepState.COMPLETED, step.error
    source = _pixels(await engine.image_bytes(session.origin.result))
    result = _pixels(await engine.image_bytes(step.result))
    changed = (result != source).any(axis=2)
    assert not changed[:140].any()
    assert not changed[:, :190].any()
    assert changed[150:450, 200:600].mean() > 0.5


async def test_five_chained_edits_with_keep_the_rest_leave_the_untouched_pixels_as_they_were(
    engine,
):
    session = await _start(engine)
    original = _pixels(await engine.image_bytes(session.origin.result))
    touched = np.zeros(original.shape[:2], bool)
    prompts = ["add a red hat", "make the car blue", "add a dog", "remove the lamp", "add snow"]
    for prompt in prompts:
        step = await engine.edit(session.session_id, EditParams(prompt=prompt, keep_rest=True))
        assert step.state is StepState.COMPLETED, step.error
        assert step.region is not None
        assert step.region.kind == "auto"
        assert step.region.mask_sha256 is not None  # the region found is kept with the step
        for x, y, w, h in changed_boxes((800, 600), prompt, RATIO):
            touched[y : y + h, x : x + w] = True
    result = _pixels(await engine.image_bytes(step.result))
    assert result.shape == original.shape
    same = (result == original).all(axis=2)
    assert same[~touched].mean() >= 0.99


@pytest.mark.parametrize(
    ("region", "message"),
    [
        pytest.param(RegionRequest(box=(900, 10, 50, 50)), "outside the image", id="box-outside"),
        pytest.param(RegionRequest(mask=b"<html>no</html>"), "not an image", id="not-an-image"),
        pytest.param("empty", "empty", id="empty-mask"),
    ],
)
async def test_a_bad_region_is_refused_before_anything_is_stored_or_created(
    engine, sim, region, message
):
    if region == "empty":
        black = io.BytesIO()
        Image.new("L", (40, 30), 0).save(black, "PNG")
        region = RegionRequest(mask=black.getvalue())
    session = await _start(engine)
    before = _creates(sim)
    with pytest.raises(RegionError, match=message):
        await engine.submit_edit(session.session_id, EditParams(prompt="add a hat"), region=region)
    assert _creates(sim) == before
    assert len((await engine.load_session(session.session_id)).steps) == 1  # the origin only


async def test_export_import_and_replay_keep_the_region(engine, sim):
    session = await _start(engine)
    boxed = await engine.edit(
        session.session_id,
        EditParams(prompt="add a red hat"),
        region=RegionRequest(box=(100, 100, 200, 150)),
    )
    kept = await engine.edit(session.session_id, EditParams(prompt="add a dog", keep_rest=True))
    assert kept.state is StepState.COMPLETED, kept.error
    data = await engine.export_session(session.session_id)
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert any(name.endswith("-raw.png") for name in names)  # the model's own output too
    imported = await engine.import_session(data)
    steps = {s.params.prompt: s for s in imported.steps.values() if s.params}
    assert steps["add a red hat"].region == boxed.region
    assert steps["add a red hat"].raw_result == boxed.raw_result
    assert steps["add a dog"].region.kind == "auto"
    for step in steps.values():
        assert await engine.image_bytes(step.result)  # every image came along
    # Replayed on a photo twice the size: the box is scaled, the rest found again.
    bigger = await engine.read_image(make_photo(1600, 1200, seed=3))
    replayed = await engine.replay(data, bigger)
    first, second = replayed.path()[1:]
    assert first.region.kind == "box"
    assert second.region.kind == "auto"
    assert (second.result.width, second.result.height) == (1600, 1200)
    source = _pixels(await engine.image_bytes(replayed.origin.result))
    result = _pixels(await engine.image_bytes(first.result))
    outside = np.ones(source.shape[:2], bool)
    outside[200:500, 200:600] = False  # (100, 100, 200, 150) on an image twice the size
    assert (result[outside] == source[outside]).all()


async def test_another_visitor_s_sessions_are_read_while_blends_run(engine, clean_env):
    """Two keep-the-rest edits finish together and blend in turn, on a machine with one worker
    thread for everything else: another visitor's page (their session list, read ten times)
    is answered while the first blend runs, not after the blends."""
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(1))
    image = await engine.read_image(make_image(2400, 1800, fmt="JPEG"))
    sessions = [await engine.start_session(image, name=f"photo {i}") for i in range(2)]
    box = RegionRequest(box=(600, 400, 900, 800))
    steps = [
        await engine.submit_edit(
            s.session_id, EditParams(prompt=f"add hat {i}", output_format="jpeg"), region=box
        )
        for i, s in enumerate(sessions)
    ]

    def phases() -> list[str]:
        return [u.phase for s in sessions for u in engine.running(s.session_id).values()]

    def stored() -> set[str]:
        return {p.name for p in (clean_env / "images").rglob("*.*") if not p.name.startswith(".")}

    before = stored()
    # Both past the model, and two outputs stored (a step keeps its own): the blends come
    # next, in turn. (On a busy machine the first may be blended and stored by then: the
    # second's blend is still to come.)
    while len(stored() - before) < 2 or phases().count("downloading") < len(phases()):  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    victim = Visitor("browser:victim")
    for _ in range(10):
        assert await engine.list_sessions(visitor=victim) == []
    assert phases(), "the other visitor's page waited for the blends"
    for session, step in zip(sessions, steps, strict=True):
        with contextlib.suppress(HistoryError):  # (still running: wait for it)
            await engine.wait(step.step_id)
        done = (await engine.load_session(session.session_id)).steps[step.step_id]
        assert done.state is StepState.COMPLETED
        assert done.result is not None
        assert (done.result.width, done.result.height) == (2400, 1800)  # at the source's size


async def test_one_visitors_pile_of_blends_puts_anothers_back_by_one_blend_at_most(
    engine, clean_env
):
    """Three keep-the-rest edits of one visitor wait to be blended, then one of another's: the
    other's goes after the first of theirs, not after all three (first come, first served put
    it last). The lane is held meanwhile, as by a long blend under way, until all four wait."""
    a, b = Visitor("browser:a"), Visitor("browser:b")
    image = await engine.read_image(make_image(1600, 1200, fmt="JPEG"))
    box = RegionRequest(box=(600, 400, 900, 800))

    async def submit(n: int, who: Visitor):  # type: ignore[no-untyped-def]
        session = await engine.start_session(image, name=f"photo {n}", visitor=who)
        params = EditParams(prompt=f"add hat {n}", output_format="jpeg")
        return await engine.submit_edit(session.session_id, params, region=box, visitor=who)

    lane = engine._runner._blend_turns

    async def waiting(count: int) -> None:  # blends waiting for their turn in the lane
        while len(lane._waiting) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    async with lane.place(0):  # a blend under way
        steps = [await submit(n, a) for n in range(3)]
        await waiting(3)
        steps.append(await submit(3, b))
        await waiting(4)
    done = []
    for step, who in zip(steps, [a, a, a, b], strict=True):
        with contextlib.suppress(HistoryError):  # (still running: wait for it)
            await engine.wait(step.step_id)
        session = await engine.load_session(step.session_id, visitor=who)
        done.append(session.steps[step.step_id])
    assert all(s.state is StepState.COMPLETED and s.region is not None for s in done)
    # Blended second, B is stored before A's last (whose blend comes two blends after B's);
    # first come, first served it was blended, and stored, last.
    order = [s.step_id for s in sorted(done, key=lambda s: s.completed_at)]
    assert order.index(steps[3].step_id) < 3


async def test_a_small_blend_goes_ahead_of_large_ones_of_visitors_as_new_as_its_own(
    engine, clean_env
):
    """Three visitors' keep-the-rest edits of 1600 x 1200 photos wait to be blended, then a
    fourth visitor's of a 64 x 64 image: it is blended first. First come, first served (and
    turns by the number of blends, every visitor here having had none) put it last, behind
    three large blends it has nothing to do with."""
    big = await engine.read_image(make_image(1600, 1200, fmt="JPEG"))
    small = await engine.read_image(make_image(64, 64, fmt="JPEG"))
    lane = engine._runner._blend_turns

    async def submit(n: int, image, box) -> Step:  # type: ignore[no-untyped-def]
        who = Visitor(f"browser:{n}")
        session = await engine.start_session(image, name=f"photo {n}", visitor=who)
        params = EditParams(prompt=f"add hat {n}", output_format="jpeg")
        region = RegionRequest(box=box)
        return await engine.submit_edit(session.session_id, params, region=region, visitor=who)

    async def waiting(count: int) -> None:  # blends waiting for their turn in the lane
        while len(lane._waiting) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    async with lane.place(0):  # a blend under way
        steps = []
        for n in range(3):
            steps.append(await submit(n, big, (600, 400, 900, 800)))
            await waiting(n + 1)
        steps.append(await submit(3, small, (8, 8, 40, 40)))
        await waiting(4)
    done = []
    for step in steps:
        with contextlib.suppress(HistoryError):  # (still running: wait for it)
            await engine.wait(step.step_id)
        done.append((await engine.load_session(step.session_id)).steps[step.step_id])
    assert all(s.state is StepState.COMPLETED and s.region is not None for s in done)
    order = [s.step_id for s in sorted(done, key=lambda s: s.completed_at)]
    assert order[0] == steps[3].step_id
