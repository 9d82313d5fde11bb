"""Bounded work: what one import may hold, what it counts against a visitor's share, and what a
page of a long session costs to load (real store on disk, the simulator on loopback)."""

from __future__ import annotations

import contextlib
import io
import os
import zipfile

import pytest
from PIL import Image

from studio.bundle import MAX_STEPS, MAX_TEXT_CHARS, BundleError, strip_png_text
from studio.history import StepState
from studio.limits import LimitError, Limits, LimitSettings
from studio.params import MAX_PROMPT_CHARS, EditParams
from studio.runapi import RunAPIError
from studio.store import THUMBNAILS_PER_CALL
from studio.visitor import Visitor
from tests.support.engines import make_engine, make_image
from tests.support.zips import rewrite_export

pytestmark = pytest.mark.anyio
A = Visitor("browser:a")


@pytest.fixture
async def engine(sim, clean_env):
    engine = make_engine(clean_env, sim.base_url, sim.api_key)
    yield engine
    await engine.aclose()


async def _export(engine, prompts: list[str]) -> bytes:
    session = await engine.start_session(await engine.read_image(make_image()), name="long")
    for prompt in prompts:
        step = await engine.edit(session.session_id, EditParams(prompt=prompt))
        assert step.state is StepState.COMPLETED
    return await engine.export_session(session.session_id)


def _failed_tries(document, count: int, prompt: str) -> None:
    """The export's steps plus `count` failed tries of `prompt` after its last step."""
    steps = document["steps"]
    last = steps[-1]
    for n in range(count):
        step = {
            **last,
            "step_id": f"00000000-0000-4000-8000-{n:012d}",
            "parent_id": last["step_id"],
        }
        step.update(state="failed", error="refused", image=None, result=None, task_id=None)
        step["params"] = {**last["params"], "prompt": prompt}
        steps.append(step)


@pytest.mark.parametrize(
    ("count", "prompt", "refusal"),
    [
        pytest.param(MAX_STEPS, "x", f"more than {MAX_STEPS}", id="too-many-steps"),
        pytest.param(
            MAX_TEXT_CHARS // MAX_PROMPT_CHARS + 1,
            "y" * MAX_PROMPT_CHARS,
            "characters",
            id="too-much-text",
        ),
    ],
)
async def test_an_import_holding_more_than_edits_could_make_is_refused_and_stores_nothing(
    engine, count, prompt, refusal
):
    data = await _export(engine, ["make it blue"])
    before = await engine.list_sessions()
    huge = rewrite_export(data, lambda d: _failed_tries(d, count, prompt))
    with pytest.raises(BundleError, match=refusal):
        await engine.import_session(huge)
    assert len(await engine.list_sessions()) == len(before)


def _noisy_png(side: int = 96) -> bytes:
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


async def test_imports_and_results_count_against_the_visitors_share_like_uploads(sim, clean_env):
    local = make_engine(clean_env / "other", sim.base_url, sim.api_key)
    try:
        data = await _export(local, ["make it blue", "add snow"])
    finally:
        await local.aclose()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = [n for n in archive.namelist() if n.startswith("images/")]
        # As stored: the text chunks an export adds to each PNG are taken off again.
        images = sum(len(strip_png_text(archive.read(n))) for n in names)
    upload = _noisy_png()
    # Room for the import's images or for the upload beside them, not for both.
    caps = Limits(LimitSettings(upload_bytes=images + len(upload) - 1))
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=caps)
    try:
        await engine.start_session(await engine.read_image(upload), name="one", visitor=A)
        with pytest.raises(LimitError, match="does not fit"):
            await engine.import_session(data, visitor=A)
        assert len(await engine.list_sessions(visitor=A)) == 1
        # The other way round: the import's images (results among them) leave no room.
        b = Visitor("browser:b")
        await engine.import_session(data, visitor=b)
        with pytest.raises(LimitError, match="does not fit"):
            await engine.start_session(await engine.read_image(upload), name="two", visitor=b)
    finally:
        await engine.aclose()


async def test_tabs_loading_one_session_share_one_read_until_it_changes(engine):
    session = await engine.start_session(await engine.read_image(make_image()), name="s")
    first = await engine.load_session(session.session_id)
    assert await engine.load_session(session.session_id) is first
    await engine.edit(session.session_id, EditParams(prompt="make it blue"))
    again = await engine.load_session(session.session_id)
    assert again is not first
    assert len(again.steps) == 2


async def test_a_page_makes_a_bounded_number_of_thumbnails_at_a_time(engine):
    refs = []
    for n in range(THUMBNAILS_PER_CALL + 5):
        image = await engine.read_image(make_image(40, 30, colour=(n, 2 * n, 3)))
        refs.append((await engine.start_session(image)).current.result)
    assert len(await engine.thumbnails(refs)) == THUMBNAILS_PER_CALL
    assert len(await engine.thumbnails(refs)) == len(refs)


async def test_a_visitor_checks_only_a_few_keys_a_minute_with_runapi(sim, clean_env):
    from studio.config import Secret
    from studio.engine import KEY_CHECKS_PER_MINUTE

    engine = make_engine(clean_env, sim.base_url, sim.api_key)
    try:
        for n in range(KEY_CHECKS_PER_MINUTE):
            with contextlib.suppress(RunAPIError):
                await engine.check_key(Secret(f"sk-guess-{n}"), visitor=A)
        asked = len(sim.requests)
        with pytest.raises(LimitError, match="wait a minute"):
            await engine.check_key(Secret("sk-guess-next"), visitor=A)
        assert len(sim.requests) == asked  # RunAPI was not asked
        # Another visitor is not held back by A's checks.
        assert await engine.check_key(Secret(sim.api_key), visitor=Visitor("browser:b")) >= 0
    finally:
        await engine.aclose()
