"""Decoding images from outside, shared fairly between hosted visitors: large images wait for
each other and never hold up small ones, each visitor decodes a bounded number of large pixels
a minute, and an import is checked from its headers before any image in it is decoded (real
store on disk, the simulator on loopback)."""

from __future__ import annotations

import asyncio
import io
import struct
import zipfile
import zlib

import pytest
from PIL import Image

from studio.bundle import BundleError
from studio.images import HEAVY_PIXELS, ImageError, peek
from studio.limits import LimitError, Limits, LimitSettings
from studio.params import EditParams
from studio.visitor import Visitor
from tests.support.engines import make_engine, make_image, make_photo
from tests.support.zips import build_zip, rewrite_export

pytestmark = pytest.mark.anyio


def _flat_png(side: int) -> bytes:
    """A large image of few bytes: cheap to send, costly to decode."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (10, 20, 30)).save(buffer, "PNG")
    return buffer.getvalue()


LARGE = _flat_png(3000)  # 9 megapixels: a large decode
assert HEAVY_PIXELS <= 3000 * 3000


def _pixels_missing(png: bytes) -> bytes:
    """`png` whose pixel data holds only a few rows: every chunk whole (CRCs valid, IEND in
    place), so only a decode finds that it is damaged."""
    out, at = [png[:8]], 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind, body = png[at + 4 : at + 8], png[at + 8 : at + 8 + length]
        at += 12 + length
        if kind == b"IDAT":
            if out[-1][4:8] == b"IDAT":
                continue  # one short IDAT in place of them all
            body = zlib.compress(b"\0" * 64)
        out.append(struct.pack(">I", len(body)) + kind + body)
        out[-1] += struct.pack(">I", zlib.crc32(kind + body))
    return b"".join(out)


def _stored_images(home) -> set[str]:
    return {p.name for p in (home / "images").rglob("*") if p.is_file()}


async def test_a_visitor_decodes_a_bounded_number_of_large_pixels_a_minute(sim, clean_env):
    caps = Limits(LimitSettings(decode_pixels_per_minute=20_000_000))
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=caps)
    a, b = Visitor("browser:a"), Visitor("browser:b")
    try:
        for _ in range(2):  # 18 of their 20 megapixels
            await engine.read_image(LARGE, visitor=a)
        with pytest.raises(LimitError, match="wait a minute") as refused:
            await engine.read_image(LARGE, visitor=a)
        assert "\n" not in str(refused.value)
        # Small images are not counted, and other visitors have their own minute.
        assert (await engine.read_image(make_image(), visitor=a)).width == 320
        assert (await engine.read_image(LARGE, visitor=b)).width == 3000
        # The studio's own user (the CLI, a studio that is not hosted) is never refused.
        for _ in range(3):
            await engine.read_image(LARGE)
    finally:
        await engine.aclose()


def _photo_jpeg(side: int, *, progressive: bool) -> bytes:
    """A photo-like JPEG (noise: no format makes it small), baseline or progressive."""
    import numpy as np

    pixels = np.random.default_rng(7).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=80, progressive=progressive)
    return buffer.getvalue()


async def test_a_progressive_jpeg_counts_as_the_large_decode_it_is(sim, clean_env):
    """A JPEG is checked at an eighth of each side, so a camera photo hardly counts; but a
    progressive one is decoded whole first, whatever the scale (80 megapixels: 489 MB against
    33 MB baseline), and four callers sending them, counted as a 64th, took the studio to
    2.2 GB (review 41 F1). It counts as the large decode it is."""
    baseline = _photo_jpeg(2400, progressive=False)
    progressive = _photo_jpeg(2400, progressive=True)
    assert Image.open(io.BytesIO(progressive)).info.get("progressive")
    caps = Limits(LimitSettings(decode_pixels_per_minute=15_000_000))
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=caps)
    a, b = Visitor("browser:a"), Visitor("browser:b")
    try:
        for _ in range(4):  # 5.8 megapixels each, checked at a 64th: nearly free
            assert (await engine.read_image(baseline, visitor=a)).width == 2400
        assert (await engine.read_image(progressive, visitor=b)).width == 2400
        with pytest.raises(LimitError, match="wait a minute"):
            await engine.read_image(progressive, visitor=b)
    finally:
        await engine.aclose()


def _scan_per_colour_jpeg(width: int, height: int, *, interleaved: bool = False) -> bytes:
    """A baseline JPEG (grey, one-bit Huffman codes) whose three colours come in a scan each,
    or in one `interleaved` scan: the same picture, the same size on disk."""

    def segment(marker: int, body: bytes) -> bytes:
        return struct.pack(">HH", marker, len(body) + 2) + body

    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    parts = [b"\xff\xd8", segment(0xFFDB, b"\x00" + bytes([1] * 64))]
    frame = struct.pack(">BHHB", 8, height, width, 3)
    parts.append(segment(0xFFC0, frame + b"".join(bytes([c, 0x11, 0]) for c in (1, 2, 3))))
    one_code = bytes([1] + [0] * 15) + b"\x00"
    parts.append(segment(0xFFC4, b"\x00" + one_code + b"\x10" + one_code))
    if interleaved:
        parts.append(segment(0xFFDA, b"\x03\x01\x00\x02\x00\x03\x00\x00\x3f\x00"))
        parts.append(bytes((2 * blocks * 3 + 7) // 8))
    else:
        for colour in (1, 2, 3):
            parts.append(segment(0xFFDA, bytes([1, colour, 0]) + b"\x00\x3f\x00"))
            parts.append(bytes((2 * blocks + 7) // 8))
    return b"".join([*parts, b"\xff\xd9"])


async def test_a_jpeg_in_a_scan_per_colour_counts_as_the_large_decode_it_is(sim, clean_env):
    """libjpeg holds every coefficient of the whole image for any JPEG of more than one scan,
    progressive or not: an 80-megapixel baseline one of a scan per colour, 0.94 MB, took 463 MB
    at each decode, counted as a 64th (review 50 F1). It counts twice its pixels, as a
    progressive one does; the same picture in one scan still counts a 64th."""
    split = _scan_per_colour_jpeg(4000, 3000)
    one_scan = _scan_per_colour_jpeg(4000, 3000, interleaved=True)
    assert peek(split).decode_pixels == 2 * 4000 * 3000
    thumbnail = _scan_per_colour_jpeg(160, 120, interleaved=True)
    app1 = struct.pack(">HH", 0xFFE1, len(thumbnail) + 2) + thumbnail  # (an embedded thumbnail)
    assert peek(split[:2] + app1 + split[2:]).decode_pixels == 2 * 4000 * 3000
    assert peek(one_scan).decode_pixels == 4000 * 3000 // 64
    camera = make_photo(1600, 1200, fmt="JPEG")  # (with an EXIF thumbnail, its own scan)
    with_thumbnail = Image.open(io.BytesIO(camera))
    thumb = io.BytesIO()
    with_thumbnail.resize((160, 120)).save(thumb, "JPEG")
    exif = with_thumbnail.getexif()
    buffer = io.BytesIO()
    with_thumbnail.save(buffer, "JPEG", exif=exif.tobytes() + thumb.getvalue())
    assert peek(buffer.getvalue()).decode_pixels == 1600 * 1200 // 64
    caps = Limits(LimitSettings(decode_pixels_per_minute=30_000_000))
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=caps)
    a, b = Visitor("browser:a"), Visitor("browser:b")
    try:
        for _ in range(4):
            assert (await engine.read_image(one_scan, visitor=a)).width == 4000
        assert (await engine.read_image(split, visitor=b)).width == 4000
        with pytest.raises(LimitError, match="wait a minute"):
            await engine.read_image(split + b"\x00", visitor=b)
    finally:
        await engine.aclose()


async def _export_from_large_source(sim, home) -> bytes:
    local = make_engine(home, sim.base_url, sim.api_key)
    try:
        session = await local.start_session(await local.read_image(LARGE), name="large")
        await local.edit(session.session_id, EditParams(prompt="make it blue"))
        return await local.export_session(session.session_id)
    finally:
        await local.aclose()


async def test_an_import_of_more_large_pixels_than_a_minute_allows_is_refused_undecoded(
    sim, clean_env, tmp_path
):
    data = await _export_from_large_source(sim, tmp_path / "maker")
    caps = Limits(LimitSettings(decode_pixels_per_minute=5_000_000))
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=caps)
    a = Visitor("browser:a")
    try:
        before = _stored_images(clean_env)
        with pytest.raises(LimitError, match="9 megapixels of large images") as refused:
            await engine.import_session(data, visitor=a)
        assert "import them in turn" in str(refused.value)
        assert await engine.list_sessions(visitor=a) == []
        assert _stored_images(clean_env) == before
    finally:
        await engine.aclose()


async def test_an_import_that_lies_about_an_image_is_refused_before_any_image_is_decoded(
    sim, clean_env, tmp_path
):
    """Every header is compared with its step's description first: an export whose first image
    is damaged past its header and whose last one is not the size its step says is refused for
    the lie (from the headers), not for the damage (which only a decode finds)."""
    data = await _export_from_large_source(sim, tmp_path / "maker")

    def lie(document):
        document["steps"][-1]["result"]["width"] += 1

    data = rewrite_export(data, lie)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    source = sorted(n for n in files if n.startswith("images/"))[0]
    assert Image.open(io.BytesIO(files[source])).size == (3000, 3000)
    files[source] = _pixels_missing(files[source])
    engine = make_engine(clean_env, sim.base_url, sim.api_key)
    try:
        with pytest.raises(BundleError, match="not the image its step describes"):
            await engine.import_session(build_zip(files))
        assert await engine.list_sessions() == []
    finally:
        await engine.aclose()


async def test_a_failing_import_of_small_images_counts_what_it_made_the_studio_decode(
    sim, clean_env, tmp_path
):
    """An import whose images are each just under the large size, damaged past their headers
    so that it fails only once they are decoded, was free to send again and again: what it
    decoded now counts against the visitor's minute, and their next import waits."""
    local = make_engine(tmp_path / "maker", sim.base_url, sim.api_key)
    try:
        session = await local.start_session(await local.read_image(make_image(2000, 1500)))
        data = await local.export_session(session.session_id)
    finally:
        await local.aclose()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    (source,) = [n for n in files if n.startswith("images/")]
    damaged = build_zip({**files, source: _pixels_missing(files[source])})
    caps = Limits(LimitSettings(decode_pixels_per_minute=5_000_000))
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=caps)
    a, b = Visitor("browser:a"), Visitor("browser:b")
    try:
        with pytest.raises(ImageError, match="cut off"):
            await engine.import_session(damaged, visitor=a)  # 3 of their 5 megapixels
        with pytest.raises(ImageError, match="cut off"):
            await engine.import_session(damaged, visitor=a)  # 6: past them
        with pytest.raises(LimitError, match="wait a minute"):
            await engine.import_session(data, visitor=a)
        assert await engine.list_sessions(visitor=a) == []
        # Another visitor has their own minute, and a whole import of small images goes in.
        assert (await engine.import_session(data, visitor=b)).name
    finally:
        await engine.aclose()


async def test_a_small_image_is_never_held_up_by_other_visitors_large_ones(sim, clean_env):
    """Two visitors' 40-megapixel images are being decoded when a third visitor's small photo
    arrives: it is read before either of theirs is done, not after one of them."""
    caps = Limits(LimitSettings())
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=caps)
    huge = _flat_png(6400)
    finished: list[str] = []

    async def read(name: str, data: bytes) -> None:
        await engine.read_image(data, visitor=Visitor(f"browser:{name}"))
        finished.append(name)

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(read("large-1", huge))
            group.create_task(read("large-2", huge))
            await asyncio.sleep(0.3)  # both large decodes have begun (or wait their turn)
            group.create_task(read("small", make_image()))
        assert finished[0] == "small", finished
    finally:
        await engine.aclose()


async def test_a_small_source_is_converted_for_upload_before_large_ones_queued_before_it(
    sim, clean_env
):
    """Four visitors' edits of 12-megapixel photos are being converted for upload, two at a
    time, when a fifth visitor edits a 64 x 64 image: theirs is uploaded and created next, not
    after the four (first come first served held such an edit for 58 s: review 52 F1)."""
    import numpy as np

    caps = Limits(LimitSettings(visitor_budget_cents=100, total_budget_cents=1000))
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=caps)
    pixels = np.random.default_rng(5).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    try:
        sessions = []
        for n in range(4):  # four different photos (no upload is shared), four visitors
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, "JPEG", quality=86 + n)
            who = Visitor(f"browser:large-{n}")
            session = await engine.start_session_from_bytes(buffer.getvalue(), visitor=who)
            sessions.append((session.session_id, who))
        small = Visitor("browser:small")
        small_session = await engine.start_session_from_bytes(make_image(64, 64), visitor=small)
        sim.requests.clear()

        async def run(session_id: str, prompt: str, who: Visitor) -> str:
            step = await engine.submit_edit(session_id, EditParams(prompt=prompt), visitor=who)
            return str((await engine.wait(step.step_id)).state)

        async with asyncio.TaskGroup() as group:
            runs = [
                group.create_task(run(sid, f"large {n}", who))
                for n, (sid, who) in enumerate(sessions)
            ]
            await asyncio.sleep(0.2)  # two conversions under way, two waiting for a place
            runs.append(group.create_task(run(small_session.session_id, "small", small)))
        assert [r.result() for r in runs] == ["completed"] * 5
        created = [
            r.json["prompt"]
            for r in sim.requests
            if r.method == "POST" and r.path == "/api/v1/flux_kontext/text_to_image"
        ]
        assert sorted(created) == sorted(["large 0", "large 1", "large 2", "large 3", "small"])
        assert created.index("small") <= 2, created
    finally:
        await engine.aclose()


async def test_bytes_another_visitor_holds_are_decoded_for_a_visitor_who_does_not(sim, clean_env):
    """Only a visitor's own stored images skip the decode: skipping it for another visitor's
    copy answered seven times faster, so anyone could tell that someone had that exact photo
    here (review 53 F2). Seen here by what each read counts against the minute's decodes."""
    caps = Limits(LimitSettings(decode_pixels_per_minute=20_000_000))
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=caps)
    a, b = Visitor("browser:a"), Visitor("browser:b")
    try:
        await engine.start_session_from_bytes(LARGE, visitor=a)  # 9 of a's 20 megapixels
        for _ in range(3):  # a's own photo again: its header only, nothing counted
            assert (await engine.read_image(LARGE, visitor=a)).width == 3000
        for _ in range(2):  # 18 of b's 20: decoded, as any photo new to b is
            assert (await engine.read_image(LARGE, visitor=b)).width == 3000
        with pytest.raises(LimitError, match="wait a minute"):
            await engine.read_image(LARGE, visitor=b)
    finally:
        await engine.aclose()


async def test_a_visitor_never_finds_ready_a_thumbnail_another_visitor_had_made(sim, clean_env):
    """Each visitor's thumbnails are their own: a page drawn for a photo another visitor has
    makes its thumbnail as a new photo's page does (one found ready answered faster, and told
    that someone had that exact photo here: review 53 F2), and pages of the same visitor share
    theirs."""
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=Limits(LimitSettings()))
    a, b = Visitor("browser:a"), Visitor("browser:b")
    photo = make_photo(800, 600)
    try:
        ref_a = (await engine.start_session_from_bytes(photo, visitor=a)).current.result
        ref_b = (await engine.start_session_from_bytes(photo, visitor=b)).current.result
        assert ref_a is not None
        assert ref_b is not None
        assert ref_a.sha256 == ref_b.sha256
        (thumb_a,) = (await engine.thumbnails([ref_a], visitor=a)).values()
        (thumb_b,) = (await engine.thumbnails([ref_b], visitor=b)).values()
        assert thumb_a != thumb_b
        assert thumb_a.is_file()
        assert thumb_b.is_file()
        made = thumb_a.stat().st_mtime_ns
        assert (await engine.thumbnails([ref_a], visitor=a)) == {ref_a.sha256: thumb_a}
        assert thumb_a.stat().st_mtime_ns == made  # a's second page: a's own, not made again
    finally:
        await engine.aclose()


def _noisy_jpeg(width: int, height: int, n: int) -> bytes:
    """A photo-like JPEG of its own for each `n` (noise: costly to decode for its size)."""
    import numpy as np

    pixels = np.random.default_rng(11).integers(0, 256, (height, width, 3), dtype=np.uint8)
    pixels[0, 0, 0] = n
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


async def test_a_small_upload_goes_ahead_of_larger_ones_from_visitors_as_new(sim, clean_env):
    """Eight fresh visitors' 7.9-megapixel photos (just under a large decode) are being read
    when a ninth fresh visitor sends a 64 x 64 image: it is read before most of theirs.
    (All at nothing decoded lately, first come first served held such an upload 2.5 s behind
    forty: review 53 F1.)"""
    caps = Limits(LimitSettings())
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=caps)
    photos = [_noisy_jpeg(3240, 2430, n) for n in range(8)]
    assert HEAVY_PIXELS > 3240 * 2430
    finished: list[str] = []

    async def read(name: str, data: bytes) -> None:
        await engine.read_image(data, visitor=Visitor(f"browser:{name}"))
        finished.append(name)

    try:
        warm = (
            engine.read_image(make_image(300 + n), visitor=Visitor(f"browser:{n}"))
            for n in range(3)
        )
        await asyncio.gather(*warm)  # the children started, as on a studio at work
        async with asyncio.TaskGroup() as group:
            for n, photo in enumerate(photos):
                group.create_task(read(f"large-{n}", photo))
            await asyncio.sleep(0.15)  # two decodes under way, six waiting
            group.create_task(read("small", make_image(64, 64)))
        assert finished.index("small") <= 4, finished
    finally:
        await engine.aclose()
