"""Disk: an image kept once (the store's copy), exports that go away, uploads only for a known
visitor and within their share. Real store, real Gradio upload folder, the simulator on loopback."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gradio as gr
import pytest

from studio.engine import BUSY_EXPORTING, LimitError
from studio.history import StepState
from studio.limits import Limits, LimitSettings
from studio.params import EditParams, RegionRequest
from studio.ui import layout
from studio.ui.app import assets_dir
from studio.ui.bridge import Bridge
from studio.ui.files import (
    EXPORT_KEPT_S,
    EXPORT_TTL_S,
    EXPORT_YOUNG_S,
    EXPORTS_KEPT,
    EXPORTS_PER_ADDRESS,
    EXPORTS_PER_VISITOR,
    FITTED_KEPT,
    FITTED_PER_VISITOR,
    export_written,
    fitted_name,
    keep_fitted,
    make_exports_folder,
    new_export,
    prune_exports,
)
from studio.ui.handlers import Handlers, PageContext
from studio.visitor import Visitor
from tests.support.engines import make_engine, make_image

pytestmark = pytest.mark.anyio


@pytest.fixture
def page(sim, clean_env, tmp_path):
    bridge = Bridge(lambda: make_engine(clean_env, sim.base_url, sim.api_key))
    with gr.Blocks():
        c = layout.render(examples=[], browser_secret="test", banner="")
    ctx = PageContext(
        assets=assets_dir(), examples=[], exports=tmp_path, simulator=True, server_key=False
    )
    try:
        yield Handlers(c, bridge, ctx)
    finally:
        bridge.close()


def _uploaded(data: bytes, name: str) -> Path:
    """A file where Gradio's upload route leaves it."""
    folder = Path(gr.utils.get_upload_folder()) / os.urandom(8).hex()
    folder.mkdir(parents=True)
    path = folder / name
    path.write_bytes(data)
    return path


async def test_an_uploaded_image_is_kept_once_in_the_store(page, clean_env):
    data = make_image(320, 240)
    upload = _uploaded(data, "beach.png")
    await page.on_source(None, None, {"path": str(upload), "orig_name": "beach.png"})
    assert not upload.exists()
    stored = [p for p in (clean_env / "images").rglob("*.png")]
    assert [p.read_bytes() for p in stored] == [data]


async def test_a_refused_upload_is_not_kept_either(page):
    upload = _uploaded(b"<html>not an image</html>", "page.png")
    with pytest.warns(UserWarning, match="web page"):  # the toast, outside a running page
        await page.on_source(None, None, {"path": str(upload), "orig_name": "page.png"})
    assert not upload.exists()


async def test_an_imported_zip_upload_is_not_kept(page, sim, clean_env, tmp_path):
    engine = page.bridge.engine
    session = await engine.start_session(await engine.read_image(make_image()), name="s")
    upload = _uploaded(await engine.export_session(session.session_id), "s.zip")
    await page.on_import(None, None, str(upload))
    assert not upload.exists()
    assert len(await engine.list_sessions()) == 2


async def test_the_page_s_export_is_written_into_the_exports_folder_and_imports_back(
    page, tmp_path
):
    engine = page.bridge.engine
    session = await engine.start_session(await engine.read_image(make_image()), name="trip")
    update = await page.on_history_tool(
        session.session_id, None, gr.EventData(None, {"act": "export"})
    )
    # A link at the studio's own address, naming no path of the server (review 57 L2).
    link = update[page.c.export_file].value
    assert link.startswith('<a href="/studio/export/')
    assert 'download="trip.zip"' in link
    assert str(tmp_path) not in link
    # Counted as the session list counts them (it said one more: the original).
    assert update[page.c.status].startswith("Exported the original and 0 steps")
    (path,) = tmp_path.glob("*/trip.zip")  # in the exports folder
    again = await engine.import_session(await asyncio.to_thread(path.read_bytes))
    assert again.origin.result == session.origin.result


_WRITTEN = itertools.count()


def write_export(
    folder: Path, name: str, data: bytes, *, owner: str | None = None, address: str | None = None
) -> Path:
    """An export as the page writes one, a hundredth of a second after the one before (the
    file system's clock is coarser than a loop of writes)."""
    target = new_export(folder, name, owner=owner, address=address)
    assert target is not None, "refused"
    target.write_bytes(data)
    export_written(target, kept=True)
    _age(target, EXPORT_YOUNG_S + 60 - next(_WRITTEN) / 100)  # (its answer long handed out)
    return target


def _age(export: Path, seconds: float) -> None:
    """Make `export` look written `seconds` ago."""
    then = time.time() - seconds
    os.utime(export.parent, (then, then))


def test_exports_are_removed_when_old_or_too_many(tmp_path):
    written = [write_export(tmp_path, f"s{n}", b"zip") for n in range(EXPORTS_KEPT + 4)]
    kept = [p for p in written if p.exists()]
    assert len(kept) == EXPORTS_KEPT
    assert kept == written[-EXPORTS_KEPT:]
    # Unguessable folders: nothing in an export's link can be derived from the session.
    assert all(len(p.parent.name) >= 21 for p in kept)
    assert prune_exports(tmp_path, now=time.time() + EXPORT_TTL_S + 1) == EXPORTS_KEPT
    assert not any(p.exists() for p in written)


def test_the_sliders_fitted_copies_take_no_export_place_and_are_bounded_on_their_own(tmp_path):
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    copies = []
    for n in range(FITTED_KEPT + 5):
        keep_fitted(pairs)
        copies.append(pairs / f"{n}.png")
        copies[-1].write_bytes(b"png")
    assert [p.exists() for p in copies].count(True) == FITTED_KEPT  # the oldest went
    written = [write_export(tmp_path, f"s{n}", b"zip") for n in range(EXPORTS_KEPT)]
    assert all(p.exists() for p in written)  # all 32 places are exports'
    assert copies[-1].exists()  # and the copies are not pruned as one of them
    keep_fitted(pairs, now=time.time() + EXPORT_TTL_S + 1)
    assert not any(p.exists() for p in copies)


def test_one_visitors_fitted_copies_never_push_out_anothers(tmp_path):
    """The slider's fitted copies were kept 64 for everyone, the oldest going first: one
    visitor comparing many pairs removed another's copy from under their slider (review 20)."""
    pairs = tmp_path / "pairs"
    pairs.mkdir()

    def fit(owner: str, n: int) -> Path:
        keep_fitted(pairs, owner)
        copy = pairs / fitted_name(f"left{n}", f"right{n}", 640, 480, owner)
        copy.write_bytes(b"png")
        return copy

    theirs = [fit("browser:b", n) for n in range(3)]
    mine = [fit("browser:a", n) for n in range(200)]
    assert all(p.exists() for p in theirs)
    assert [p.exists() for p in mine].count(True) == FITTED_PER_VISITOR  # their newest
    assert all(p.exists() for p in mine[-FITTED_PER_VISITOR:])
    crowd = [fit(f"browser:{n}", 0) for n in range(50)]  # many visitors, one each
    assert len(list(pairs.iterdir())) == FITTED_KEPT
    assert all(p.exists() for p in crowd)
    assert all(p.exists() for p in theirs)  # the most crowded gave theirs up
    assert [p.exists() for p in mine].count(True) == FITTED_KEPT - 50 - len(theirs)


def test_one_visitors_exports_never_push_out_anothers(tmp_path):
    theirs = write_export(tmp_path, "b", b"zip", owner="browser:b")
    mine = [
        write_export(tmp_path, f"a{n}", b"zip", owner="browser:a") for n in range(EXPORTS_KEPT + 4)
    ]
    assert theirs.exists()
    assert [p for p in mine if p.exists()] == mine[-EXPORTS_PER_VISITOR:]


def test_many_visitors_exports_never_push_out_a_young_one_when_the_folder_is_full(tmp_path):
    """Alice's export link was just handed out; other visitors export until every place is
    taken: hers stays, and the next visitor is refused (None: the page says one sentence)
    rather than pushing out anyone's young export. Once hers is older than EXPORT_KEPT_S, a
    new export may take its place; and a visitor who holds exports gives up their own first."""
    alice = write_export(tmp_path, "alice", b"zip", owner="browser:alice")
    others = [
        write_export(tmp_path, f"s{n}", b"zip", owner=f"browser:{n // EXPORTS_PER_VISITOR}")
        for n in range(EXPORTS_KEPT - 1)
    ]
    assert new_export(tmp_path, "one more", owner="browser:late") is None
    assert alice.exists()
    assert all(p.exists() for p in others)
    mine = write_export(tmp_path, "again", b"zip", owner="browser:0")  # their own oldest goes
    assert not others[0].exists()
    assert mine.exists()
    assert alice.exists()
    _age(alice, EXPORT_KEPT_S + 1)
    late = write_export(tmp_path, "late", b"zip", owner="browser:late")
    assert late.exists()
    assert not alice.exists()
    assert all(p.exists() for p in others[1:])


def _flood(folder: Path, count: int, address: Callable[[int], str]) -> list[Path]:
    """`count` exports of free cookies (four each, as many as one may keep), export `n` from
    `address(n)`."""
    return [
        write_export(
            folder,
            f"f{n}",
            b"zip",
            owner=f"browser:f{n // EXPORTS_PER_VISITOR}",
            address=address(n),
        )
        for n in range(count)
    ]


def test_fresh_identities_from_one_address_cannot_take_every_export_place(tmp_path):
    """Eight free cookies from one address exporting four times each once filled all 32
    places, and every other visitor was refused for as long as they kept at it: an address
    now holds at most EXPORTS_PER_ADDRESS, its own oldest going first."""
    alice = write_export(tmp_path, "alice", b"zip", owner="browser:alice", address="192.0.2.1")
    flood = _flood(tmp_path, EXPORTS_KEPT, lambda n: "198.51.100.7")
    kept = [p for p in flood if p.exists()]
    assert kept == flood[-EXPORTS_PER_ADDRESS:]
    assert alice.exists()
    bob = new_export(tmp_path, "bob", owner="browser:bob", address="203.0.113.5")
    assert bob is not None  # room for a visitor from elsewhere


def test_a_visitors_exports_and_their_addresss_take_at_most_their_shares_of_the_disk(tmp_path):
    """Exports were counted by number only: two cookies of one address clicking Export five
    times each on a 15 MB session kept 138 MB, 4.3 times what their sessions held, and one
    address could keep 1.6 GB (review 26 F1). A visitor's exports take at most their share in
    bytes (their oldest go), and an address's at most its share (a new one is refused while its
    young ones hold it)."""
    shares = (3_000, 5_000)  # (a visitor's, their address's)
    here = "198.51.100.9"

    def export(owner: str, size: int) -> Path | None:
        target = new_export(tmp_path, "s", owner=owner, address=here, shares=shares)
        if target is not None:
            target.write_bytes(b"z" * size)
            export_written(target, kept=True, shares=shares)
        return target

    first, second = export("browser:a", 1_200), export("browser:a", 1_200)
    assert first is not None
    assert second is not None
    third = export("browser:a", 1_200)  # 3,600 bytes of A's: A's oldest goes
    assert third is not None
    assert not first.exists()
    assert second.exists()
    assert third.exists()
    # B, from the same address: 2,400 of A's and 2,600 of B's is within the address's 5,000 ...
    b1, b2 = export("browser:b", 1_300), export("browser:b", 1_300)
    assert b1 is not None
    assert b2 is not None
    assert b1.exists()
    # ... and a fresh cookie there finds the address's young exports holding its share.
    assert export("browser:c", 1_000) is None
    # Another address has its own share.
    elsewhere = new_export(tmp_path, "s", owner="browser:d", address="203.0.113.7", shares=shares)
    assert elsewhere is not None


def test_exporting_a_session_again_replaces_the_visitors_earlier_export_of_it(tmp_path):
    """Each click on Export wrote one more whole copy: five clicks each from two cookies kept
    4.3 times what their sessions held (review 26 F1). A visitor's new export of a session
    replaces their earlier ones of it; another session's, or another visitor's, stay."""

    def export(owner: str, session: str) -> Path:
        target = new_export(tmp_path, "s", owner=owner, address="198.51.100.9", session=session)
        assert target is not None
        target.write_bytes(b"zip")
        export_written(target, kept=True)
        return target

    first = export("browser:a", "s1")
    other_session = export("browser:a", "s2")
    other_visitor = export("browser:b", "s1")
    again = [export("browser:a", "s1") for _ in range(4)]
    assert not first.exists()
    assert [t.exists() for t in again] == [False, False, False, True]
    assert other_session.exists()
    assert other_visitor.exists()


def test_an_export_link_says_nothing_of_whose_it_is_or_what_it_is_of(tmp_path):
    """Export links are handed on; their folder named keyed tags of the visitor, their network
    address and the session, so two links could be told to come from one visitor, one
    network or one session (review 41 F3). Each is a random name, whoever made it."""
    links = [
        new_export(tmp_path, "s", owner=owner, address="198.51.100.9", session=session)
        for owner, session in [("browser:a", "s1")] * 2 + [("browser:a", "s2"), ("browser:b", "s1")]
    ]
    names = [link.parent.name for link in links if link is not None]
    assert len(names) == 4
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{32}", name) for name in names)
    for size in (4, 6, 8):  # no tag shared anywhere in them
        pieces = [{n[i : i + size] for i in range(len(n) - size + 1)} for n in names]
        assert not any(a & b for i, a in enumerate(pieces) for b in pieces[i + 1 :]), size


def test_an_export_being_written_or_just_written_never_makes_room_for_another(tmp_path):
    """Ten cookies of one address exporting at once: the ninth export made room by removing
    the address's oldest, the first, while it was still being written (its answer failed:
    review 17, a retest of F1). Exports being written, or written within EXPORT_YOUNG_S,
    keep their place; one more from that address is refused until one is old enough."""
    here = "198.51.100.7"
    writing = [
        new_export(tmp_path, f"w{n}", owner=f"browser:w{n}", address=here)
        for n in range(EXPORTS_PER_ADDRESS)
    ]
    assert all(target is not None for target in writing)
    assert new_export(tmp_path, "one more", owner="browser:late", address=here) is None
    for target in writing:
        assert target is not None
        target.write_bytes(b"zip")
        export_written(target, kept=True)
    assert new_export(tmp_path, "one more", owner="browser:late", address=here) is None
    assert all(t is not None and t.exists() for t in writing)  # each answer's file still there
    assert writing[0] is not None
    _age(writing[0], EXPORT_YOUNG_S + 1)
    late = new_export(tmp_path, "one more", owner="browser:late", address=here)
    assert late is not None
    assert not writing[0].exists()  # the address's oldest, handed out long enough ago
    assert all(t is not None and t.exists() for t in writing[1:])
    elsewhere = new_export(tmp_path, "bob", owner="browser:bob", address="203.0.113.5")
    assert elsewhere is not None


def test_a_few_addresses_holding_every_export_place_give_one_up_to_a_visitor_from_elsewhere(
    tmp_path,
):
    """Four addresses' free cookies (eight places each) once held all 32 places, young, and
    every other visitor's Export was refused for as long as they re-exported: now a visitor
    from elsewhere takes the oldest place of an address holding the most, while a visitor
    holding as few places as the asker keeps theirs."""
    alice = write_export(tmp_path, "alice", b"zip", owner="browser:alice", address="192.0.2.1")
    flood = _flood(tmp_path, EXPORTS_KEPT - 1, lambda n: f"198.51.100.{n // EXPORTS_PER_ADDRESS}")
    assert all(p.exists() for p in flood)
    for n in range(3):
        bob = new_export(tmp_path, f"bob{n}", owner=f"browser:bob{n}", address=f"203.0.113.{n}")
        assert bob is not None
        bob.write_bytes(b"zip")
    assert alice.exists()
    gone = [p for p in flood if not p.exists()]
    assert len(gone) == 3
    assert all(p.name.startswith("f") for p in gone)
    # Alice and the three each hold one: a fourth asker from elsewhere takes a flood place too,
    # never one of theirs.
    assert new_export(tmp_path, "carol", owner="browser:carol", address="203.0.113.9")
    assert alice.exists()


async def test_a_visitor_s_second_export_at_once_is_refused_and_the_first_is_written(
    sim, clean_env, tmp_path
):
    """One export at a time for each visitor, written to its file as it goes: the second click
    while the first is being written gets one sentence and leaves nothing; another visitor's
    export at the same moment is written; each imports back whole."""
    engine = make_engine(clean_env, sim.base_url, sim.api_key)
    a, b = Visitor("browser:a"), Visitor("browser:b")
    try:
        image = await engine.read_image(make_image(640, 480))
        ours = await engine.start_session(image, name="a's", visitor=a)
        theirs = await engine.start_session(image, name="b's", visitor=b)
        targets = [tmp_path / "first.zip", tmp_path / "second.zip", tmp_path / "b.zip"]
        first, second, other = await asyncio.gather(
            engine.export_to(ours.session_id, targets[0], visitor=a),
            engine.export_to(ours.session_id, targets[1], visitor=a),
            engine.export_to(theirs.session_id, targets[2], visitor=b),
            return_exceptions=True,
        )
        assert isinstance(second, LimitError)
        assert str(second) == BUSY_EXPORTING
        assert not targets[1].exists()
        assert first == targets[0].stat().st_size
        assert other == targets[2].stat().st_size
        again = await engine.import_session(targets[0].read_bytes(), visitor=a)
        assert again.origin.result == ours.origin.result
        await engine.export_to(ours.session_id, tmp_path / "later.zip", visitor=a)  # done: free
    finally:
        await engine.aclose()


async def test_an_export_that_would_take_the_disk_below_its_floor_is_refused(
    sim, clean_env, tmp_path
):
    """Exports are written outside every visitor's share: a hosted visitor's is refused with
    one sentence (and leaves nothing) when the disk it goes to is at its floor."""
    a = Visitor("browser:a")
    maker = make_engine(clean_env, sim.base_url, sim.api_key)
    try:
        image = await maker.read_image(make_image(640, 480))
        mine = (await maker.start_session(image, name="a's", visitor=a)).session_id
    finally:
        await maker.aclose()
    floor = Limits(LimitSettings(disk_floor_bytes=2**62))  # every disk is at its floor
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=floor)
    try:
        target = tmp_path / "theirs.zip"
        with pytest.raises(LimitError, match="disk is nearly full"):
            await engine.export_to(mine, target, visitor=a)
        assert not target.exists()
    finally:
        await engine.aclose()


def _studio_with_exports(parent: Path) -> tuple[subprocess.Popen[str], Path]:
    """Another studio process that made its exports folder under `parent` and wrote an export."""
    code = (
        "import sys, time; from pathlib import Path; "
        "from studio.ui.files import make_exports_folder, new_export; "
        "f = make_exports_folder(Path(sys.argv[1])); "
        "new_export(f, 'a session').write_bytes(b'PK zip'); "
        "print(f, flush=True); time.sleep(600)"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(parent)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, Path(process.stdout.readline().strip())


def test_a_stopped_studios_exports_are_removed_when_the_next_starts(tmp_path):
    """A studio killed (or stopped) with exports waiting leaves them in the temporary directory;
    the next studio to start removes them, and never a running studio's."""
    killed, killed_folder = _studio_with_exports(tmp_path)
    running, running_folder = _studio_with_exports(tmp_path)
    try:
        killed.kill()
        killed.wait()
        assert any(killed_folder.rglob("*.zip"))
        mine = make_exports_folder(tmp_path)
        assert not killed_folder.exists()
        assert any(running_folder.rglob("*.zip"))
        assert mine.is_dir()
        assert mine != running_folder
    finally:
        running.kill()
        running.wait()


async def test_edits_stop_at_the_visitors_share_and_the_disk_floor_before_anything_is_paid(
    sim, clean_env
):
    """An edit's result counts against its visitor's share before it runs (a model's image,
    and for a step kept to a region the full-size blend too): past the share, or with the disk
    at its floor, the edit is refused with one sentence, nothing is created at RunAPI and
    nothing is stored (review 8 F6: keep-the-rest edits grew the store without bound)."""
    a = Visitor("browser:a")
    # (13.6 MB: a box on the 3-megapixel photo may take 13.59 MB on its own; with what the
    # visitor keeps already, it does not fit.)
    share = int(13.6 * 2**20)
    limits = Limits(LimitSettings(visitor_budget_cents=500, upload_bytes=share))
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=limits)
    try:
        photo = await engine.read_image(make_image(2000, 1500), visitor=a)
        session = await engine.start_session(photo, name="big", visitor=a)
        first = await engine.edit(session.session_id, EditParams(prompt="add a hat"), visitor=a)
        assert first.state is StepState.COMPLETED  # the model's image fits the share
        tasks = len(sim.tasks)
        steps = len((await engine.load_session(session.session_id, visitor=a)).steps)
        # Kept to a box on the photo, the result would also store a blend at the photo's own
        # 3 megapixels (9 MB): with what the visitor keeps, past the share.
        with pytest.raises(LimitError, match="another edit's result does not fit"):
            await engine.submit_edit(
                session.session_id,
                EditParams(prompt="add a scarf"),
                parent_step_id=session.origin.step_id,
                visitor=a,
                region=RegionRequest(box=(10, 10, 100, 100)),
            )
        assert len(sim.tasks) == tasks
        assert len((await engine.load_session(session.session_id, visitor=a)).steps) == steps
        # A source whose full-size blend alone takes more than the share is told so, not that
        # what the visitor keeps leaves no room (review 56 F4: every visitor was told that).
        huge = await engine.read_image(make_image(2400, 1800), visitor=a)
        alone = await engine.start_session(huge, name="huge", visitor=a)
        with pytest.raises(LimitError) as refused:
            await engine.submit_edit(
                alone.session_id,
                EditParams(prompt="add a scarf"),
                visitor=a,
                region=RegionRequest(box=(10, 10, 100, 100)),
            )
        assert str(refused.value).startswith(
            "Keeping the rest of this image at its full size may take up to 17 MB, more than "
            "the 14 MB each visitor may keep"
        )
        assert len(sim.tasks) == tasks
        # Four results of a plain edit (no region) may take 20 MB: the sentence says to ask for
        # fewer, not to leave out *Keep the rest*, which was not asked for.
        with pytest.raises(LimitError) as refused:
            await engine.candidates(
                session.session_id, EditParams(prompt="add a scarf"), count=4, visitor=a
            )
        assert str(refused.value) == (
            "These results may take up to 20 MB, more than the 14 MB each visitor may keep: "
            "ask for fewer at once."
        )
        assert len(sim.tasks) == tasks
    finally:
        await engine.aclose()
    floor = Limits(LimitSettings(visitor_budget_cents=500, disk_floor_bytes=2**62))
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=floor)
    try:
        with pytest.raises(LimitError, match="disk is nearly full"):
            await engine.submit_edit(session.session_id, EditParams(prompt="add snow"), visitor=a)
        assert len(sim.tasks) == tasks
    finally:
        await engine.aclose()


def test_uploads_waiting_when_the_studio_is_killed_are_removed_when_it_starts_again(
    sim, clean_env, tmp_path
):
    """An upload waits in Gradio's upload folder until the event that sends it is handled; a
    studio killed then left it there for good, in nobody's share (review 15, L1). The next
    start removes it, and nothing another program keeps in that folder."""
    import io

    import httpx
    from PIL import Image

    from tests.integration.test_launch import _free_port, _Process

    uploads = tmp_path / "gradio-uploads"
    uploads.mkdir()
    someone_elses = uploads / "another-app" / "keep.txt"
    someone_elses.parent.mkdir()
    someone_elses.write_text("not the studio's")
    env = {
        **os.environ,
        "GRADIO_TEMP_DIR": str(uploads),
        "RUNAPI_API_KEY": sim.api_key,
        "RUNAPI_BASE_URL": sim.base_url,
    }
    png = io.BytesIO()
    Image.new("RGB", (64, 48), "teal").save(png, "PNG")

    def start() -> tuple[_Process, str]:
        port = _free_port()
        args = [sys.executable, "-m", "studio.cli", "--hosted", "--port", str(port)]
        studio = _Process([*args, "--home", str(clean_env)], env, tmp_path)
        studio.wait_for_line("Kontext Studio is running at")
        return studio, f"http://127.0.0.1:{port}"

    killed, url = start()
    try:
        with httpx.Client(base_url=url, trust_env=False, timeout=30) as http:
            token = http.get("/").cookies.get("kontext_visitor")  # a visitor's
            http.headers["Cookie"] = f"kontext_visitor={token}"
            sent = http.post(
                "/gradio_api/upload", files={"files": ("photo.png", png.getvalue(), "image/png")}
            )
            assert sent.status_code == 200, sent.text
            (waiting,) = [Path(name) for name in sent.json()]
        assert waiting.is_file()
    finally:
        killed.proc.kill()
        killed.stop()
    assert waiting.is_file()  # the killed studio left it
    again, _ = start()
    try:
        assert not waiting.exists()
        assert someone_elses.read_text() == "not the studio's"
    finally:
        again.stop()


def _noise(side: int, seed: int) -> bytes:
    """A PNG of noise, which compresses to nothing: about 3 bytes a pixel."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _stored_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in (home / "images").rglob("*") if p.is_file())


async def test_deleting_sessions_is_no_way_past_the_share_and_their_images_go_soon_after(
    sim, clean_env, monkeypatch
):
    """A deleted session's images stayed on disk for ten minutes or more, counted nowhere:
    upload-and-delete cycles from one cookie stored five times the share in three minutes
    (review 19 F2). They go at once when older than the grace, else once it is over, and count
    against the visitor's share until then."""
    monkeypatch.setattr("studio.engine.LEAVING_GRACE_S", 4.0)
    a = Visitor("browser:a")
    photo = _noise(600, 0)  # about 1 MB
    share = 3 * len(photo)
    limits = Limits(LimitSettings(visitor_budget_cents=500, upload_bytes=share))
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=limits)
    try:
        refused = []
        for n in range(6):
            try:
                source = await engine.read_image(_noise(600, n), visitor=a)
                session = await engine.start_session(source, visitor=a)
            except LimitError as error:
                refused.append(str(error))
                continue
            await engine.delete_session(session.session_id, visitor=a)
            assert _stored_bytes(clean_env) <= share  # never past the share
        assert await engine.list_sessions(visitor=a) == []
        assert refused  # (unless the machine took the grace between two cycles)
        assert "of sessions you deleted in the last minute" in refused[0]
        for _ in range(100):  # once the grace is over, they go, and the room comes back
            if _stored_bytes(clean_env) == 0:
                break
            await asyncio.sleep(0.1)
        assert _stored_bytes(clean_env) == 0
        source = await engine.read_image(_noise(600, 99), visitor=a)
        assert await engine.start_session(source, visitor=a)
    finally:
        await engine.aclose()


async def test_an_edit_of_a_new_image_past_the_share_stores_nothing(sim, clean_env):
    """An API edit refused for the share once its session was made left its source on disk:
    one key sending refused edits stored 30 MB a second (review 19 F3). The room for the edit's
    result is asked for with the image's, before the image is stored."""
    a = Visitor("browser:a")
    photo = _noise(600, 1)
    limits = Limits(LimitSettings(visitor_budget_cents=500, upload_bytes=3 * len(photo)))
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=limits)
    try:
        with pytest.raises(LimitError, match="does not fit"):
            await engine.place_edit(photo, name="refused", visitor=a)
        assert await engine.list_sessions(visitor=a) == []
        assert _stored_bytes(clean_env) == 0
        assert len(sim.tasks) == 0
    finally:
        await engine.aclose()
