"""Bounded work: what one import may hold, what it counts against a visitor's share, and what a
page of a long session costs to load (real store on disk, the simulator on loopback)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import threading
import zipfile
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from studio.bundle import MAX_STEPS, MAX_TEXT_CHARS, BundleError, read_bundle, strip_png_text
from studio.engine import IMPORTED_MARK
from studio.history import StepState
from studio.limits import (
    SESSION_BYTES,
    STEP_BYTES,
    LimitError,
    Limits,
    LimitSettings,
    taken_bytes,
)
from studio.params import MAX_PROMPT_CHARS, EditParams
from studio.runapi import RunAPIError
from studio.store import THUMBNAILS_PER_CALL, text_bytes
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
    # Room for the imported session or for the upload's beside it, not for both: each takes
    # its images, its rows and its text.
    imported = read_bundle(data, now=datetime.now(UTC)).session
    text = text_bytes(imported) + len(IMPORTED_MARK) + len("one")
    both = taken_bytes(images + len(upload), 2, len(imported.steps) + 1, text)
    caps = Limits(LimitSettings(upload_bytes=both - 1))
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


async def test_thumbnails_asked_for_at_once_wait_their_turn_and_a_small_ask_goes_first(engine):
    """Eight pages of one visitor asking at once for the same twenty new thumbnails (each a full
    decode) do not hold the threads every store read shares: another visitor's one thumbnail
    is made after at most a couple of theirs, not after all twenty."""
    a_refs = []
    for n in range(20):
        image = await engine.read_image(make_image(400, 300, colour=(n, 2 * n, 3)))
        a_refs.append((await engine.start_session(image, visitor=A)).current.result)
    b = Visitor("browser:b")
    b_image = await engine.read_image(make_image(400, 300, colour=(250, 1, 1)))
    b_ref = (await engine.start_session(b_image, visitor=b)).current.result
    pages = [asyncio.create_task(engine.thumbnails(a_refs, visitor=A)) for _ in range(8)]
    await asyncio.sleep(0)  # their asks are in
    (b_thumb,) = (await engine.thumbnails([b_ref], visitor=b)).values()
    assert b_thumb.is_file()
    made_for_a = [
        p for p in b_thumb.parent.iterdir() if p != b_thumb and not p.name.startswith(".")
    ]
    assert len(made_for_a) < 5
    for page in pages:  # and every page of A's gets all twenty
        assert len(await page) == 20


async def test_a_small_thumbnail_is_made_before_large_ones_of_visitors_as_new(engine):
    """Six fresh visitors' pages ask at once for the thumbnail of a 7.8-megapixel image each,
    then a seventh fresh visitor's page for a small one's: theirs is made after at most two of
    the large ones, not after all six (first come first served held it for seconds behind
    forty: review 53 F1)."""
    large = []
    for n in range(6):
        buffer = io.BytesIO()
        Image.new("RGB", (2800, 2800), (n, 40, 80)).save(buffer, "PNG")
        who = Visitor(f"browser:large-{n}")
        image = await engine.read_image(buffer.getvalue(), visitor=who)
        large.append((who, (await engine.start_session(image, visitor=who)).current.result))
    small = Visitor("browser:small")
    image = await engine.read_image(make_image(64, 64), visitor=small)
    small_ref = (await engine.start_session(image, visitor=small)).current.result
    pages = [asyncio.create_task(engine.thumbnails([ref], visitor=who)) for who, ref in large]
    await asyncio.sleep(0)  # their asks are in
    (thumb,) = (await engine.thumbnails([small_ref], visitor=small)).values()
    made_before = [p for p in thumb.parent.iterdir() if p != thumb and not p.name.startswith(".")]
    assert len(made_before) <= 2
    for page in pages:  # and every one of theirs is made
        assert len(await page) == 1


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


async def test_a_balance_is_asked_only_with_a_key_runapi_accepted_through_a_counted_check(
    sim, clean_env
):
    from studio.config import Secret

    engine = make_engine(clean_env, sim.base_url, sim.api_key)
    try:
        guessed = Visitor("browser:a", api_key=Secret("sk-a-guess"))
        assert await engine.balance_cents(visitor=guessed) is None
        assert sim.requests == []  # a balance is never a way to try keys
        own = Visitor("browser:a", api_key=Secret(sim.api_key))
        assert await engine.balance_cents(visitor=own) is None
        assert await engine.check_key(Secret(sim.api_key), visitor=own) == sim.balance_cents
        assert await engine.balance_cents(visitor=own) == sim.balance_cents
    finally:
        await engine.aclose()


async def test_imports_count_their_steps_and_text_so_a_pile_of_them_is_refused(sim, clean_env):
    local = make_engine(clean_env / "other", sim.base_url, sim.api_key)
    try:
        data = await _export(local, ["make it blue"])
    finally:
        await local.aclose()
    # Four hundred failed tries of a long instruction: a few kilobytes zipped, 1.3 MB of rows.
    bulk = rewrite_export(data, lambda d: _failed_tries(d, 400, "z" * 990))
    engine = make_engine(
        clean_env, sim.base_url, sim.api_key, limits=Limits(LimitSettings(upload_bytes=2 << 20))
    )
    try:
        first = await engine.import_session(bulk, visitor=A)
        held = await engine.held_bytes(visitor=A)
        assert held > 400 * (STEP_BYTES + 990)
        with pytest.raises(LimitError, match="each visitor may keep; this one does not fit"):
            await engine.import_session(bulk, visitor=A)
        assert [s.session_id for s in await engine.list_sessions(visitor=A)] == [first.session_id]
        assert await engine.held_bytes(visitor=A) == held
    finally:
        await engine.aclose()


async def test_empty_sessions_count_against_the_share_too(sim, clean_env):
    caps = Limits(LimitSettings(upload_bytes=20 * (SESSION_BYTES + STEP_BYTES)))
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=caps)
    try:
        for _ in range(19):  # each takes a session's and a step's row, and its name
            await engine.start_session_from_bytes(None, visitor=A)
        with pytest.raises(LimitError, match="does not fit"):
            await engine.start_session_from_bytes(None, visitor=A)
        assert len(await engine.list_sessions(visitor=A)) == 19
        await engine.start_session(None)  # the studio's own user is never counted
    finally:
        await engine.aclose()


class _HeldImages(ThreadingHTTPServer):
    """A loopback server that answers every request with a PNG once `release` is set."""

    def __init__(self, image: bytes) -> None:
        self.image, self.asked, self.release = image, 0, threading.Event()
        self.two_asked, self.four_asked = threading.Event(), threading.Event()
        super().__init__(("127.0.0.1", 0), _HeldHandler)


class _HeldHandler(BaseHTTPRequestHandler):
    server: _HeldImages

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def do_GET(self):
        self.server.asked += 1
        if self.server.asked >= 2:
            self.server.two_asked.set()
        if self.server.asked >= 4:
            self.server.four_asked.set()
        self.server.release.wait(30)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.server.image)))
        self.end_headers()
        self.wfile.write(self.server.image)


@pytest.fixture
def held_images():
    server = _HeldImages(make_image())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


async def test_a_visitor_reads_two_images_or_imports_at_once_and_a_third_is_refused(
    sim, clean_env, held_images
):
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=Limits(LimitSettings()))
    link = f"http://127.0.0.1:{held_images.server_port}/photo.png"
    try:
        exported = await _export(engine, ["make it blue"])
        reading = [
            asyncio.create_task(engine.start_session_from_link(link, visitor=A)) for _ in range(2)
        ]
        assert await asyncio.to_thread(held_images.two_asked.wait, 10)
        # Both of A's links hang on the server: A's next image, link or import is refused at
        # once, and nothing is stored for it.
        photo = make_image(64, 48, colour=(1, 2, 3))
        for attempt in (
            engine.start_session_from_bytes(photo, visitor=A),
            engine.read_link(link, visitor=A),
            engine.import_session(exported, visitor=A),
        ):
            with pytest.raises(LimitError, match="two images or imports being read"):
                await asyncio.wait_for(attempt, 5)
        assert held_images.asked == 2
        assert await engine.list_sessions(visitor=A) == []
        # Another visitor, and the studio's own user, are not held back by A's reads.
        await engine.start_session_from_bytes(photo, visitor=Visitor("browser:b"))
        await engine.import_session(exported)
        held_images.release.set()
        await asyncio.wait_for(asyncio.gather(*reading), 10)
        await engine.start_session_from_bytes(photo, visitor=A)  # A's reads are done
        assert len(await engine.list_sessions(visitor=A)) == 3
    finally:
        held_images.release.set()
        await engine.aclose()


async def test_visitors_from_one_address_read_four_images_or_imports_at_once(
    sim, clean_env, held_images
):
    """Fresh identities buy no more reading at once: two visitors from one address each hold
    two links on a hanging server; a third visitor from there is refused at once, one from
    elsewhere is not."""
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=Limits(LimitSettings()))
    link = f"http://127.0.0.1:{held_images.server_port}/photo.png"
    here = [Visitor(f"browser:{n}", address="192.0.2.7") for n in "abc"]
    try:
        reading = [
            asyncio.create_task(engine.start_session_from_link(link, visitor=who))
            for who in here[:2]
            for _ in range(2)
        ]
        assert await asyncio.to_thread(held_images.four_asked.wait, 10)
        photo = make_image(64, 48, colour=(1, 2, 3))
        with pytest.raises(LimitError, match="network address already have four") as refused:
            await asyncio.wait_for(engine.start_session_from_bytes(photo, visitor=here[2]), 5)
        assert "\n" not in str(refused.value)
        elsewhere = Visitor("browser:d", address="198.51.100.9")
        await engine.start_session_from_bytes(photo, visitor=elsewhere)
        held_images.release.set()
        await asyncio.wait_for(asyncio.gather(*reading), 10)
        await engine.start_session_from_bytes(photo, visitor=here[2])  # room again
    finally:
        held_images.release.set()
        await engine.aclose()


async def test_an_export_waits_behind_those_of_another_address_only_as_long_as_it_is_fair(engine):
    """Exports are written a couple at a time for everyone; first come first served, ten
    cookies of one address exporting large sessions in turn held another visitor's one-step
    export 9.4 s (review 17, F1). A place that comes free goes to the address that exported
    least lately: the other visitor's export is written next, not last."""
    crowd = [Visitor(f"browser:crowd{n}", address="198.51.100.7") for n in range(8)]
    other = Visitor("browser:elsewhere", address="203.0.113.9")
    photo = await engine.read_image(make_image(1200, 900))
    sessions = {
        who: (await engine.start_session(photo, name="mine", visitor=who)).session_id
        for who in [*crowd, other]
    }
    done: list[Visitor] = []

    async def export(who: Visitor) -> None:
        await engine.export_session(sessions[who], visitor=who)
        done.append(who)

    crowding = [asyncio.create_task(export(who)) for who in crowd]
    await asyncio.sleep(0)  # (the crowd's exports have all asked for their place)
    await export(other)
    await asyncio.gather(*crowding)
    # At most the two being written and the two given the places that freed as it arrived.
    assert done.index(other) <= 4, [who.owner for who in done]
