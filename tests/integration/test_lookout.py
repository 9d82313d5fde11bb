"""A hosted studio's first look at an image from outside, taken in a child process with a CPU and
memory limit (`studio.lookout`): real children, a real store, the simulator on loopback."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import struct
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from studio.history import StepState
from studio.images import ImageError, open_source, peek
from studio.limits import Limits, LimitSettings
from studio.lookout import COSTLY, Lookout
from studio.params import EditParams, RegionError, RegionRequest
from studio.visitor import Visitor
from tests.support.engines import make_engine, make_image, make_photo

pytestmark = pytest.mark.anyio
A = Visitor("browser:a")


@pytest.fixture
def lookout():
    lookout = Lookout(1)
    yield lookout
    lookout.close()


def _hosted(sim, home, lookout: Lookout):  # type: ignore[no-untyped-def]
    """A hosted engine (visitors may spend the server's key) taking its looks from `lookout`."""
    caps = LimitSettings(visitor_budget_cents=10, total_budget_cents=15)
    return make_engine(home, sim.base_url, sim.api_key, limits=Limits(caps), lookout=lookout)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # (a zombie until reaped: closing the child reaps it)
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().split(")")[-1].split()[0] == "Z"


def test_a_look_in_a_child_says_what_a_look_here_says(lookout):
    for fmt in ("PNG", "JPEG", "WEBP", "TIFF", "GIF", "BMP"):
        data = make_photo(640, 480, fmt=fmt)
        assert lookout.look(data) == peek(data), fmt
    [pid] = lookout.children()
    assert pid != os.getpid()
    # ... and refuses what a look here refuses, with the same sentence.
    with pytest.raises(ImageError) as refused:
        lookout.look(b"<svg xmlns='http://www.w3.org/2000/svg'></svg>")
    with pytest.raises(ImageError) as here:
        peek(b"<svg xmlns='http://www.w3.org/2000/svg'></svg>")
    assert (refused.value.reason, str(refused.value)) == (here.value.reason, str(here.value))
    assert lookout.children() == [pid]  # a refusal costs the child nothing: it stays


def test_a_child_that_ended_while_idle_is_replaced_and_the_next_look_is_not_blamed(lookout):
    data = make_image()
    lookout.look(data)
    [pid] = lookout.children()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lookout.look(data) == peek(data)
    [replaced] = lookout.children()
    assert replaced != pid
    assert _gone(pid)


def test_a_look_past_its_limit_is_refused_and_its_child_stopped():
    data = make_photo(640, 480, fmt="WEBP")  # (a WebP's look copies the file once)
    strict = Lookout(1, extra_bytes=-len(data) // 2)
    try:
        with pytest.raises(ImageError) as refused:
            strict.look(data)
        assert str(refused.value) == str(COSTLY)
        assert strict.children() == []  # the child that grew is not kept
        assert Lookout(1).look(data) == peek(data)  # (the same file, within the limit)
    finally:
        strict.close()


async def test_a_hosted_upload_refused_by_its_look_keeps_nothing(sim, clean_env):
    strict = Lookout(1, cpu_s=-1.0)  # every look costs more than this
    engine = _hosted(sim, clean_env, strict)
    data = make_image()
    try:
        with pytest.raises(ImageError, match="far more work to read than an image needs"):
            await engine.read_image(data, visitor=A)
        assert await engine.held_bytes(visitor=A) == 0
        assert not engine._store.has_image(hashlib.sha256(data).hexdigest())
    finally:
        await engine.aclose()
        strict.close()


def _mask(width: int, height: int) -> bytes:
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (40, 40, 200, 160))
    buffer = io.BytesIO()
    mask.save(buffer, "PNG")
    return buffer.getvalue()


async def test_a_hosted_studio_reads_uploads_and_masks_through_its_children(sim, clean_env):
    lookout = Lookout(1)
    engine = _hosted(sim, clean_env, lookout)
    try:
        source = await engine.read_image(make_photo(640, 480, fmt="JPEG"), visitor=A)
        assert (source.format, source.width, source.height) == ("jpeg", 640, 480)
        [pid] = lookout.children()
        session = await engine.start_session(source, visitor=A)
        with pytest.raises(RegionError, match="The mask is not an image the studio can read"):
            await engine.submit_edit(
                session.session_id,
                EditParams(prompt="red"),
                visitor=A,
                region=RegionRequest(mask=b"GIF89a" + bytes(7)),
            )
        step = await engine.edit(
            session.session_id,
            EditParams(prompt="red"),
            visitor=A,
            region=RegionRequest(mask=_mask(640, 480)),
        )
        assert step.state is StepState.COMPLETED
        assert step.region is not None
        assert lookout.children() == [pid]
    finally:
        await engine.aclose()
        lookout.close()


def test_a_check_in_a_child_decodes_as_a_check_here_does(lookout):
    photo = make_photo(640, 480, fmt="PNG")
    checked = lookout.check(photo, lookout.look(photo).decode_pixels)
    assert checked == open_source(photo)
    for damaged in (photo[: len(photo) // 2], photo[:30_000] + bytes(100) + photo[30_100:]):
        with pytest.raises(ImageError) as refused:
            lookout.check(damaged, 640 * 480)
        with pytest.raises(ImageError) as here:
            open_source(damaged)
        assert str(refused.value) == str(here.value)


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5", encoding="ascii")


def _status(field: str) -> int:
    rows = Path("/proc/self/status").read_text(encoding="ascii").splitlines()
    return next(int(r.split()[1]) for r in rows if r.startswith(field + ":")) * 1024


async def test_a_hosted_studio_decodes_a_large_upload_in_a_child_not_in_itself(sim, clean_env):
    lookout = Lookout(1)
    engine = _hosted(sim, clean_env, lookout)
    photo = make_photo(4000, 3000, fmt="PNG")  # 12 megapixels: 48 MB decoded
    try:
        await engine.read_image(make_image(), visitor=A)  # (the child started)
        _reset_peak()
        before = _status("VmRSS")
        source = await engine.read_image(photo, visitor=A)
        peak = _status("VmHWM")
        assert (source.width, source.height) == (4000, 3000)
        assert peak - before < 24 * 2**20  # (decoded here: over 48 MB)
    finally:
        await engine.aclose()
        lookout.close()


def test_a_conversion_and_a_thumbnail_in_a_child_are_those_made_here(lookout):
    from studio.images import make_thumbnail, prepare_upload

    photo = make_photo(3000, 2000, fmt="WEBP")  # (converted: a WebP goes up as JPEG)
    source = open_source(photo)
    assert lookout.prepare_upload(source) == prepare_upload(source)
    chained = open_source(make_photo(640, 480, fmt="PNG"))  # (goes up as it is)
    assert lookout.prepare_upload(chained).data is chained.data
    assert lookout.make_thumbnail(photo, 256) == make_thumbnail(photo, max_side=256)


async def test_a_hosted_edit_of_a_large_photo_decodes_it_in_children_only(sim, clean_env):
    lookout = Lookout(2)
    engine = _hosted(sim, clean_env, lookout)
    photo = make_photo(4000, 3000, fmt="WEBP")  # 12 megapixels: 48 MB decoded, each time
    try:
        warm = await engine.start_session(
            await engine.read_image(make_image(), visitor=A), visitor=A
        )
        await engine.edit(warm.session_id, EditParams(prompt="warm"), visitor=A)
        _reset_peak()
        before = _status("VmRSS")
        session = await engine.start_session(await engine.read_image(photo, visitor=A), visitor=A)
        step = await engine.edit(session.session_id, EditParams(prompt="red"), visitor=A)
        loaded = await engine.load_session(session.session_id, visitor=A)
        refs = [s.result for s in loaded.steps.values() if s.result is not None]
        thumbs = await engine.thumbnails(refs, visitor=A)
        peak = _status("VmHWM")
        assert step.state is StepState.COMPLETED
        assert len(thumbs) == 2
        assert peak - before < 64 * 2**20  # (decoded here: 184 MB)
    finally:
        await engine.aclose()
        lookout.close()


def _lying_avif(side: int, says: int) -> bytes:
    """A solid AVIF of `side` x `side` whose size box (`ispe`) says `says` x `says`."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (120, 130, 140)).save(buffer, "AVIF", speed=10, quality=10)
    data = bytearray(buffer.getvalue())
    at = data.find(b"ispe")
    data[at + 8 : at + 16] = struct.pack(">II", says, says)
    return bytes(data)


async def test_an_image_whose_decode_costs_more_than_its_header_says_is_refused(sim, clean_env):
    """An AVIF whose box says 100 x 100 holding a 16384 x 16384 picture was counted as 10,000
    pixels and held 548 MB and the GIL for most of a second at each decode (review 50 F5). Its
    check, in a child, measures what it costs against what its header said: refused, never
    stored, so nothing decodes it again; as an image and as a mask."""
    lying = _lying_avif(8192, 100)  # (130 MB to decode, counted 10,000 pixels)
    assert peek(lying).decode_pixels == 100 * 100
    honest = _lying_avif(640, 640)
    lookout = Lookout(1)
    engine = _hosted(sim, clean_env, lookout)
    try:
        assert (await engine.read_image(honest, visitor=A)).width == 640
        with pytest.raises(ImageError, match="far more work to read than an image needs"):
            await engine.read_image(lying, visitor=A)
        assert not engine._store.has_image(hashlib.sha256(lying).hexdigest())
        session = await engine.start_session(await engine.read_image(honest, visitor=A), visitor=A)
        with pytest.raises(RegionError, match="far more work to read"):
            await engine.submit_edit(
                session.session_id,
                EditParams(prompt="red"),
                visitor=A,
                region=RegionRequest(mask=lying),
            )
    finally:
        await engine.aclose()
        lookout.close()


def _webp_frames(frames: int) -> bytes:
    """An animated WebP of `frames` copies of one tiny frame."""
    buffer = io.BytesIO()
    first, second = (Image.new("RGB", (8, 8), (c, 0, 0)) for c in (0, 200))
    first.save(buffer, "WEBP", save_all=True, append_images=[second], lossless=True)
    data = buffer.getvalue()
    at, chunks = 12, []
    while at < len(data):
        size = int.from_bytes(data[at + 4 : at + 8], "little")
        chunks.append(data[at : at + 8 + size + (size & 1)])
        at += 8 + size + (size & 1)
    frame = next(c for c in chunks if c.startswith(b"ANMF"))
    body = b"WEBP" + b"".join(c for c in chunks if not c.startswith(b"ANMF")) + frame * frames
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def test_a_webp_of_far_more_frames_than_its_bytes_hold_is_refused_undecoded(lookout):
    """libwebp's demuxer keeps a record of each frame as Pillow opens the file: 330,000
    one-pixel frames, 15 MB, 45 ms and 50 MB at each look (review 50 F2)."""
    assert lookout.look(_webp_frames(500)).format == "webp"
    for look in (peek, lookout.look):
        with pytest.raises(ImageError, match="far more parts than an image needs"):
            look(_webp_frames(40_000))


def test_a_webp_over_the_pixel_cap_says_so_when_looked_at_in_a_child(lookout):
    """Pillow's WebP reader allocates its canvas twice as it opens the file, which a child's
    memory limit stops past 134 megapixels: the studio said "damaged, export it again" of a
    12000 x 12000 WebP (review 50 F3). Its size is read from its first chunk first."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "WEBP", lossless=True)
    small = bytearray(buffer.getvalue())
    assert small[12:16] == b"VP8L"
    bits = int.from_bytes(small[21:25], "little") & ~((1 << 28) - 1)
    small[21:25] = (bits | (11_999 << 14) | 11_999).to_bytes(4, "little")
    for look in (peek, lookout.look):
        with pytest.raises(ImageError, match=r"12000 x 12000 pixels \(144 megapixels\), over"):
            look(bytes(small))


def test_a_child_finds_every_module_where_its_studio_found_it(tmp_path):
    """A studio whose packages come from PYTHONPATH or the user's site (a Docker Space's
    `pip install --user`) on an interpreter that has none of them: its children found no Pillow
    and every image was refused, silently (review 50 F4)."""
    import subprocess
    import sys
    import sysconfig

    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    bare = subprocess.run([base, "-c", "import PIL"], capture_output=True)
    if not base.exists() or bare.returncode == 0:
        pytest.skip("needs an interpreter without Pillow beside this environment")
    here = str(Path(__file__).resolve().parents[2])
    packages = sysconfig.get_paths()["purelib"]
    script = (
        "from studio.lookout import Lookout\n"
        "from studio.images import ImageError\n"
        f"data = open({str(tmp_path / 'photo.png')!r}, 'rb').read()\n"
        "lookout = Lookout(1)\n"
        "print(lookout.look(data).width)\n"
        "lookout.ready()\n"
    )
    (tmp_path / "photo.png").write_bytes(make_photo(320, 240))
    ran = subprocess.run(
        [base, "-s", "-c", script],
        env={"PYTHONPATH": f"{here}:{packages}", "PATH": os.defpath},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr[-500:]
    assert ran.stdout.split() == ["320"]


def test_a_child_that_does_not_answer_in_time_says_busy_not_that_the_file_is_to_blame(
    lookout, monkeypatch
):
    """A child works at low priority: on a machine kept busy it may take far longer than its
    CPU. One that neither answered nor ended in time said the visitor's file took "far more
    work to read than an image needs" (review 51 F1): it says the studio is busy."""
    from studio import lookout as module

    data = make_photo(640, 480)
    lookout.look(data)
    [pid] = lookout.children()
    monkeypatch.setattr(module, "_ANSWER_WAIT_S", 0.5)
    os.kill(pid, signal.SIGSTOP)  # (as a child the machine gives no time to)
    with pytest.raises(ImageError) as refused:
        lookout.look(data)
    assert refused.value.reason == "busy"
    assert "try again in a moment" in str(refused.value)
    assert lookout.look(data) == peek(data)  # (another child)
    assert lookout.children() != [pid]


def test_a_child_started_while_a_thousand_connections_are_open_answers(tmp_path):
    """`select` refuses a descriptor past 1023: a child started while someone held a thousand
    connections to the studio could not be read, and every image failed for everyone
    (review 51 F2). (In a process of its own, holding 1,100 descriptors.)"""
    import subprocess
    import sys

    (tmp_path / "photo.png").write_bytes(make_photo(320, 240))
    script = (
        "import os, resource\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 1200), hard), hard))\n"
        "held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]\n"
        "from studio.images import open_source, peek\n"
        "from studio.lookout import Lookout\n"
        f"data = open({str(tmp_path / 'photo.png')!r}, 'rb').read()\n"
        "lookout = Lookout(1)\n"
        "assert lookout.look(data) == peek(data)\n"
        "assert lookout.check(data, 320 * 240) == open_source(data)\n"
        "print('answered')\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert ran.stdout.split() == ["answered"], ran.stderr[-800:]


def test_a_child_that_ends_mid_request_is_logged_with_how_it_ended(lookout, caplog, monkeypatch):
    """A child that ended as it worked was blamed on the file and nothing said why (review 51
    F1): the log says how it ended and the last thing it said (once in a while at most)."""
    from studio import lookout as module

    monkeypatch.setattr(module, "_LAST_REPORT", -module._REPORT_EVERY_S)
    data = make_photo(640, 480)
    lookout.look(data)
    [pid] = lookout.children()
    os.kill(pid, signal.SIGSTOP)
    threading.Timer(0.3, os.kill, (pid, signal.SIGSEGV)).start()
    threading.Timer(0.35, os.kill, (pid, signal.SIGCONT)).start()
    with caplog.at_level("WARNING", logger="studio.lookout"), pytest.raises(ImageError):
        lookout.look(data)
    ended = [r.getMessage() for r in caplog.records if "ended before it answered" in r.getMessage()]
    assert ended, caplog.text
    assert "Fatal Python error: Segmentation fault" in ended[0] or "signal 11" in ended[0]


def _noise_jpeg(width: int, height: int) -> bytes:
    import numpy as np

    pixels = np.random.default_rng(3).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_a_child_that_comes_free_takes_a_small_request_before_a_large_one_asked_first(lookout):
    """One child, busy with a 24-megapixel check; a 12-megapixel check is asked for, then a
    look at a small image: the look is answered first, not after the second large decode
    (first come first served held a 64 x 64 upload for seconds behind forty fresh visitors'
    large ones: review 53 F1)."""
    busy, large, small = _noise_jpeg(6000, 4000), _noise_jpeg(4000, 3000), make_image(64, 64)
    lookout.look(small)  # its child started
    answered: list[str] = []

    def ask(name: str, work) -> None:  # type: ignore[no-untyped-def]
        work()
        answered.append(name)

    threads = [
        threading.Thread(target=ask, args=("busy", lambda: lookout.check(busy, 24_000_000))),
        threading.Thread(target=ask, args=("large", lambda: lookout.check(large, 12_000_000))),
        threading.Thread(target=ask, args=("small", lambda: lookout.look(small))),
    ]
    for thread in threads:
        thread.start()
        time.sleep(0.05)  # each asks after the one before
    for thread in threads:
        thread.join()
    assert answered == ["busy", "small", "large"]
