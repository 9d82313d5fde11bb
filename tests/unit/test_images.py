"""Image intake over the corpus: what is accepted, what is refused and why, what goes to RunAPI."""

from __future__ import annotations

import io
import os
import struct
import tracemalloc
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageCms, PngImagePlugin

from studio.images import (
    MAX_UPLOAD_SIDE,
    ImageError,
    SourceImage,
    check_result,
    describe,
    make_thumbnail,
    open_source,
    peek,
    prepare_upload,
    supported_formats,
)
from studio.params import nearest_aspect_ratio
from tests.support import corpus
from tests.support.corpus import Case

BAD = [pytest.param(case, id=case.name) for case in corpus.bad_cases()]
GOOD = [pytest.param(case, id=case.name) for case in corpus.good_cases()]


def decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


@pytest.mark.parametrize("case", BAD)
def test_open_source_refuses_with_its_own_reason_when_the_file_is_bad(case: Case):
    with pytest.raises(ImageError) as caught:
        open_source(case.data)
    assert caught.value.reason == case.reason
    message = str(caught.value)
    assert message.endswith(".")
    assert "\n" not in message
    assert message.count(". ") == 0  # one sentence


@pytest.mark.parametrize("case", GOOD)
def test_open_source_reports_format_and_upright_size_when_the_file_is_good(case: Case):
    source = open_source(case.data)
    assert source.data is case.data
    assert (source.format, (source.width, source.height)) == (case.format, case.size)
    assert source.aspect_ratio == nearest_aspect_ratio(source.width, source.height)


@pytest.mark.parametrize("case", GOOD)
def test_prepare_upload_sends_an_upright_png_or_jpeg_within_the_side_cap(case: Case):
    upload = prepare_upload(open_source(case.data))
    sent = decode(upload.data)
    assert sent.format == upload.mime_type.removeprefix("image/").upper()
    assert (upload.file_name, upload.mime_type) in {
        ("source.png", "image/png"),
        ("source.jpg", "image/jpeg"),
    }
    assert sent.mode in ("RGB", "RGBA")
    assert sent.size == (upload.width, upload.height)
    assert max(sent.size) <= MAX_UPLOAD_SIDE
    assert sent.getexif().get(0x0112, 1) == 1
    if case.upload == "same":
        assert upload.data is case.data
    else:
        assert upload.mime_type == f"image/{case.upload}"
    if case.upload_size:
        assert sent.size == case.upload_size


def test_every_supported_format_has_an_accepted_corpus_case():
    assert {case.format for case in corpus.good_cases()} == set(supported_formats())


def test_the_byte_cap_is_named_in_the_message_when_a_file_is_too_large():
    with pytest.raises(ImageError, match="over the 1 MB limit") as caught:
        open_source(bytes(1024 * 1024 + 1), max_bytes=1024 * 1024)
    assert caught.value.reason == "too_large"


def test_the_pixel_cap_is_named_in_the_message_when_the_header_declares_a_bomb():
    with pytest.raises(ImageError, match="over the 80 megapixel limit"):
        open_source(corpus.png_bomb())


def test_upload_is_byte_identical_when_a_result_is_chained():
    result = corpus.encode(corpus.photo((1024, 1024)), "PNG")
    first = prepare_upload(open_source(check_result(result).data))
    again = prepare_upload(open_source(first.data))
    assert first.data is result
    assert again.data is result


def test_upload_downscales_to_the_side_cap_and_keeps_the_original_when_the_photo_is_large():
    case = next(case for case in corpus.good_cases() if case.name == "big-jpeg")
    source = open_source(case.data)
    upload = prepare_upload(source, max_side=1000)
    assert (upload.width, upload.height) == (1000, 667)
    assert source.data is case.data


def test_rotated_jpeg_is_turned_upright_when_uploaded():
    upload = prepare_upload(open_source(corpus.rotated_jpeg(orientation=6)))
    sent = decode(upload.data).convert("RGB")
    # Orientation 6 means "rotate 90 degrees clockwise to view": the top-left red corner moves
    # to the top-right.
    red, green, _ = sent.getpixel((sent.width - 3, 2))  # type: ignore[misc]
    assert (red > 200, green < 60) == (True, True)


def test_cmyk_jpeg_keeps_its_colours_when_converted():
    im = Image.new("RGB", (32, 32), (200, 30, 40)).convert("CMYK")
    sent = decode(prepare_upload(open_source(corpus.encode(im, "JPEG", quality=100))).data)
    assert sent.mode == "RGB"
    assert all(
        abs(a - b) <= 12 for a, b in zip(sent.getpixel((16, 16)), (200, 30, 40), strict=True)
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(corpus.png16_grey(value=32768), id="16-bit-grey"),
        pytest.param(corpus.png16_rgb(), id="16-bit-rgb"),
    ],
)
def test_sixteen_bit_png_is_scaled_not_clipped_when_converted(data: bytes):
    sent = decode(prepare_upload(open_source(data)).data)
    assert sent.mode == "RGB"
    assert sent.getpixel((0, 0)) == (128, 128, 128)


def test_palette_transparency_becomes_an_rgba_png_when_converted():
    sent = decode(prepare_upload(open_source(corpus.transparent_gif())).data)
    assert sent.format == "PNG"
    assert sent.mode == "RGBA"
    assert sent.getpixel((2, 2))[3] == 0  # type: ignore[index]
    assert sent.getpixel((15, 5)) == (255, 0, 0, 255)


def test_animated_gif_sends_its_first_frame():
    sent = decode(prepare_upload(open_source(corpus.animated_gif())).data)
    assert sent.convert("RGB").getpixel((5, 5)) == (255, 0, 0)


def test_greyscale_stays_grey_when_converted_to_rgb():
    sent = decode(
        prepare_upload(open_source(corpus.encode(corpus.photo((32, 32), "L"), "PNG"))).data
    )
    red, green, blue = sent.getpixel((20, 10))  # type: ignore[misc]
    assert red == green == blue


def test_check_result_reports_the_format_and_keeps_the_bytes():
    data = corpus.encode(corpus.photo((96, 64)), "JPEG")
    result = check_result(data)
    assert (result.data, result.format, result.width, result.height) == (data, "jpeg", 96, 64)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_check_result_refuses_when_the_download_is_cut_off(fmt: str):
    data = corpus.encode(corpus.photo((96, 64)), fmt)
    with pytest.raises(ImageError):
        check_result(data[:-200])


def test_check_result_refuses_a_png_damaged_in_its_pixel_data():
    # PNG results are checked without a decode: a changed byte in the pixel data must still fail.
    data = bytearray(corpus.encode(corpus.photo((96, 64)), "PNG"))
    at = data.index(b"IDAT") + 40
    data[at] ^= 0xFF
    with pytest.raises(ImageError):
        check_result(bytes(data))


def _png_with_exif_after_the_pixels(orientation: int) -> bytes:
    data = corpus.encode(corpus.photo((96, 64)), "PNG")
    exif = Image.Exif()
    exif[0x0112] = orientation
    body = exif.tobytes().removeprefix(b"Exif\x00\x00")  # a PNG chunk holds the TIFF part
    chunk = len(body).to_bytes(4, "big") + b"eXIf" + body
    chunk += zlib.crc32(b"eXIf" + body).to_bytes(4, "big")
    end = data.index(b"IEND") - 4
    return data[:end] + chunk + data[end:]


def test_a_png_s_orientation_is_read_also_after_its_pixel_data():
    data = _png_with_exif_after_the_pixels(orientation=6)
    assert (check_result(data).width, check_result(data).height) == (64, 96)
    assert (open_source(data).width, open_source(data).height) == (64, 96)
    assert (describe(data).width, describe(data).height) == (64, 96)


def test_describe_reads_a_stored_image_as_open_source_does():
    for fmt in ("PNG", "JPEG"):
        data = corpus.encode(corpus.photo((96, 64)), fmt)
        assert describe(data) == open_source(data)


@pytest.mark.parametrize(
    ("data", "pil_format", "size"),
    [
        pytest.param(
            corpus.encode(corpus.photo((3000, 2000)), "JPEG"), "JPEG", (256, 171), id="jpeg"
        ),
        pytest.param(
            corpus.encode(corpus.photo((100, 400), "RGBA"), "PNG"), "PNG", (64, 256), id="alpha"
        ),
        pytest.param(corpus.rotated_jpeg(), "JPEG", (48, 64), id="rotated-small"),
    ],
)
def test_make_thumbnail_is_small_and_upright(data: bytes, pil_format: str, size: tuple[int, int]):
    thumbnail = decode(make_thumbnail(data))
    assert (thumbnail.format, thumbnail.size) == (pil_format, size)


def test_make_thumbnail_refuses_a_bomb():
    with pytest.raises(ImageError) as caught:
        make_thumbnail(corpus.jpeg_bomb())
    assert caught.value.reason == "too_many_pixels"


def test_prepare_upload_refuses_when_the_source_bytes_are_not_an_image():
    bogus = SourceImage(
        data=b"GIF89a" + os.urandom(8), format="gif", width=1, height=1, aspect_ratio="1:1"
    )
    with pytest.raises(ImageError):
        prepare_upload(bogus)


# A fresh process decodes four large PNGs cut off in their pixel data, two threads at once, and
# says how much its memory grew.
_CUT_OFF_DECODES = """
import concurrent.futures, io, sys
from PIL import Image
from studio.images import ImageError, open_source

buffer = io.BytesIO()
Image.new("RGB", (8000, 5000), (10, 20, 30)).save(buffer, "PNG")
data = buffer.getvalue()
data = data[: len(data) - 2048] + data[-12:]  # the pixel data cut short, IEND kept


def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024


def one(_):
    try:
        open_source(data)
    except ImageError as exc:
        return str(exc)


before = rss_mb()
with concurrent.futures.ThreadPoolExecutor(2) as pool:
    answers = list(pool.map(one, range(4)))
    print(rss_mb() - before, answers[0])
"""


def test_a_large_image_cut_off_gives_its_memory_back_when_refused():
    """A 40-megapixel PNG cut off past its header is refused after a decode that takes about
    160 MB; refused or not, that memory goes back (it stayed with each worker thread)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _CUT_OFF_DECODES], capture_output=True, text=True, check=True
    )
    grown_mb, answer = done.stdout.split(" ", 1)
    assert answer.startswith("The image file is")  # refused: cut off, or damaged
    assert int(grown_mb) < 60, f"{grown_mb} MB kept after four refused decodes"


def test_a_png_s_orientation_after_its_pixel_data_is_read_without_decoding_a_pixel():
    """Pillow decoded every pixel of a PNG to read an eXIf chunk after the image data: each look
    at an 80-megapixel PNG's header took 0.8 s and 329 MB, outside every lane and before it was
    counted (review 41 F2). Here the pixel data is damaged past the header: only a decode finds
    it, and the header is read without one."""
    data = _png_with_exif_after_the_pixels(orientation=6)
    start = data.index(b"IDAT") - 4
    length = int.from_bytes(data[start : start + 4], "big")
    body = zlib.compress(b"\0" * 8)  # (a few bytes of rows: whole chunks, valid CRCs)
    idat = len(body).to_bytes(4, "big") + b"IDAT" + body
    idat += zlib.crc32(b"IDAT" + body).to_bytes(4, "big")
    damaged = data[:start] + idat + data[start + 12 + length :]
    assert (peek(damaged).width, peek(damaged).height) == (64, 96)
    assert (describe(damaged).width, describe(damaged).height) == (64, 96)
    with pytest.raises(ImageError):
        open_source(damaged)


def _padded(kind: str, parts: int) -> bytes:
    """A 64 x 64 image padded with `parts` empty parts where Pillow reads them one by one."""
    buffer = io.BytesIO()
    Image.new("P" if kind == "GIF" else "RGB", (64, 64)).save(buffer, kind)
    data = buffer.getvalue()
    if kind == "PNG":
        at = data.index(b"IDAT") - 4
        empty = (0).to_bytes(4, "big") + b"zzZz" + zlib.crc32(b"zzZz").to_bytes(4, "big")
        return data[:at] + empty * parts + data[at:]
    if kind == "JPEG":
        return data[:2] + b"\xff\xfe\x00\x02" * parts + data[2:]  # empty comments
    at = data.index(b"\x2c")  # the GIF's image descriptor: comments before it
    return data[:at] + b"\x21\xfe\x00" * parts + data[at:]


@pytest.mark.parametrize("kind", ["PNG", "JPEG", "GIF"])
def test_an_image_padded_with_many_empty_parts_is_refused_before_pillow_reads_them(kind):
    """Pillow reads each chunk, segment or block with Python code: a 64 x 64 PNG padded with
    3.1 million empty chunks (36 MB) cost 18 s of CPU a try, the GIL held, uncounted and unpaid
    (review 42 F1); a GIF with a million empty comments, 12 s."""
    assert peek(_padded(kind, 10)).width == 64  # (a few are fine)
    for check in (peek, open_source, describe):
        with pytest.raises(ImageError, match="far more parts than an image needs"):
            check(_padded(kind, 5_000))


@pytest.mark.parametrize(
    ("marker", "item"),
    [
        (0xED, b"8BIM\x04\x04\x00\x00" + bytes(4)),  # Photoshop's resources
        (0xDB, b"\x00" + bytes(range(1, 65))),  # quantization tables
    ],
)
def test_a_jpeg_of_far_more_items_than_an_image_needs_is_refused(marker, item):
    """Pillow reads each of Photoshop's resources and each quantization table in a JPEG with
    Python code: a hundred segments packed with empty resources (6.5 MB) took 0.28 s at each
    look at its header; 700 segments of a thousand tables each (45 MB), 2.25 s (review 44)."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, "JPEG")
    data = buffer.getvalue()

    def segments(count: int, times: int) -> bytes:
        body = (b"Photoshop 3.0\x00" if marker == 0xED else b"") + item * count
        return (b"\xff" + bytes([marker]) + struct.pack(">H", len(body) + 2) + body) * times

    assert open_source(data[:2] + segments(4, 1) + data[2:]).width == 64  # (a few are fine)
    with pytest.raises(ImageError, match="far more parts than an image needs"):
        open_source(data[:2] + segments(65_000 // len(item), 20) + data[2:])


def test_a_gif_of_a_far_longer_comment_than_an_image_needs_is_refused():
    """Pillow makes a GIF's comment by adding each block to the text before it, copying it
    each time: one comment of 20,000 full blocks (in a 27 MB file) took 1.3 s at each look."""
    buffer = io.BytesIO()
    Image.new("P", (64, 64)).save(buffer, "GIF", comment=b"made by hand " * 10)
    data = buffer.getvalue()
    assert open_source(data).width == 64  # (a comment is fine)
    at = data.index(b"\x2c")  # the image descriptor: a comment before it
    comment = b"\x21\xfe" + (b"\xff" + b"a" * 255) * 300 + b"\x00"
    with pytest.raises(ImageError, match="far more parts than an image needs"):
        open_source(data[:at] + comment + data[at:])


@pytest.mark.parametrize("kind", ["JPEG", "GIF"])
def test_an_image_with_far_more_bytes_between_its_parts_than_an_image_needs_is_refused(kind):
    """Pillow skips bytes between a JPEG's segments, or a GIF's blocks, one at a time in Python:
    a 64 x 64 image with 4 MB of them took 0.2 to 0.35 s at each look, and was taken
    (review 46 F2)."""
    buffer = io.BytesIO()
    Image.new("P" if kind == "GIF" else "RGB", (64, 64)).save(buffer, kind)
    data = buffer.getvalue()
    palette = 3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0
    at = 2 if kind == "JPEG" else 13 + palette  # after the start of the image; its palette

    def padded(junk: int) -> bytes:
        return data[:at] + (b"\xff\x00" if kind == "JPEG" else b"") + bytes(junk) + data[at:]

    assert open_source(padded(64)).width == 64  # (a few are fine)
    with pytest.raises(ImageError, match="far more parts than an image needs"):
        open_source(padded(200_000))


def test_a_jpeg_walk_reads_no_length_where_pillow_reads_none():
    """An end-of-image marker carries no length, and Pillow reads on past it as it looks at the
    header: a walk that read the next two bytes as its length stepped over the segments Pillow
    then reads (here, each span a thousand quantization tables, review 46 F2)."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, "JPEG")
    data = buffer.getvalue()
    tables = (b"\x00" + bytes(range(1, 65))) * 500
    span = b"\xff\xd9" + b"\xff\xdb" + struct.pack(">H", len(tables) + 2) + tables
    rest = 2 + 0xFFDB - len(span) - 4  # (a comment, to where "FF DB" read as a length led)
    span += b"\xff\xfe" + struct.pack(">H", rest + 2) + bytes(rest)
    assert peek(data[:2] + span + data[2:]).width == 64  # (one is a header Pillow reads)
    with pytest.raises(ImageError, match="far more parts than an image needs"):
        peek(data[:2] + span * 20 + data[2:])


@pytest.mark.parametrize("kind", [b"iCCP", b"zTXt", b"iTXt"])
def test_a_png_of_far_more_chunks_to_inflate_than_an_image_needs_is_refused(kind):
    """Pillow inflates each colour profile and compressed text of a PNG, up to a megabyte each,
    at every look: 900 profiles of a megabyte of zeros, in a 0.9 MB file, took 1.9 s a look
    (found beside review 46 F3: 64 texts, 65 MB and 0.2 s a look)."""
    body = {
        b"iCCP": b"icc\x00\x00",
        b"zTXt": b"Comment\x00\x00",
        b"iTXt": b"Comment\x00\x01\x00\x00\x00",
    }
    body_of_kind = body[kind] + zlib.compress(bytes(1_000), 9)
    chunk = len(body_of_kind).to_bytes(4, "big") + kind + body_of_kind
    chunk += zlib.crc32(kind + body_of_kind).to_bytes(4, "big")
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, "PNG")
    data = buffer.getvalue()
    at = data.index(b"IDAT") - 4
    assert open_source(data[:at] + chunk * 2 + data[at:]).width == 64  # (a few are fine)
    with pytest.raises(ImageError, match="far more parts than an image needs"):
        open_source(data[:at] + chunk * 100 + data[at:])


def test_a_png_whose_chunks_inflate_to_far_more_than_an_image_needs_is_refused():
    """Pillow inflates each compressed text of a PNG, up to a megabyte each and 64 MB in all,
    at every look: 63 of them in a 66 KB file, four looks at once an address, took a studio to
    5.6 GB from 20 addresses (review 47 F1)."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(
        buffer,
        "PNG",
        icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
    )
    data = buffer.getvalue()
    at = data.index(b"IDAT") - 4

    def texts(count: int) -> bytes:
        body = b"Comment\x00\x00" + zlib.compress(bytes(1_000_000), 9)
        chunk = len(body).to_bytes(4, "big") + b"zTXt" + body
        return (chunk + zlib.crc32(b"zTXt" + body).to_bytes(4, "big")) * count

    assert open_source(data[:at] + texts(2) + data[at:]).width == 64  # (a profile, two texts)
    with pytest.raises(ImageError, match="far more parts than an image needs"):
        open_source(data[:at] + texts(8) + data[at:])


def test_a_jpeg_of_more_scans_than_any_encoder_writes_is_refused():
    """Each scan of a progressive JPEG is another pass of libjpeg over the whole image."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, "JPEG", progressive=True)
    data = buffer.getvalue()
    assert open_source(data).width == 64
    at = data.index(b"\xff\xda")
    scan = data[at : data.index(b"\xff", at + 4)]  # (a scan's header: its marker and length)
    with pytest.raises(ImageError, match="far more parts than an image needs"):
        open_source(data[:at] + scan * 300 + data[at:])


def _striped_tiff(strips: int) -> bytes:
    """A TIFF one pixel wide and `strips` rows high, each row a strip of its own, all of them
    pointing at one byte (little-endian, one directory)."""
    at_offsets = 10
    offsets = struct.pack(f"<{strips}I", *([8] * strips))
    at_counts = at_offsets + len(offsets)
    counts = struct.pack(f"<{strips}H", *([1] * strips))
    at_ifd = at_counts + len(counts)
    tags = [
        (256, 4, 1, 1),  # width
        (257, 4, 1, strips),  # height
        (258, 3, 1, 8),  # bits per sample
        (259, 3, 1, 1),  # no compression
        (262, 3, 1, 1),  # black is zero
        (273, 4, strips, at_offsets),  # strip offsets
        (277, 3, 1, 1),  # samples per pixel
        (278, 4, 1, 1),  # rows per strip
        (279, 3, strips, at_counts),  # strip byte counts
    ]
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *t) for t in tags)
    return b"II*\x00" + struct.pack("<I", at_ifd) + b"\x80\x00" + offsets + counts + ifd + bytes(4)


def test_a_tiff_of_far_more_strips_than_an_image_needs_is_refused_before_pillow_reads_them():
    """Pillow makes each strip of a TIFF a part to decode, in Python, when it opens the file:
    one pixel wide, 2 million one-row strips in 12 MB took 3.75 s at each look at its header
    and 10 s and 706 MB to check, counted as 2 megapixels (review 43 F1)."""
    assert open_source(_striped_tiff(100)).height == 100  # (a few are fine)
    for check in (peek, open_source):
        with pytest.raises(ImageError, match="far more parts than an image needs"):
            check(_striped_tiff(20_000))


def _tiff_with_entries(entries: int, kind: int, count: int) -> bytes:
    """An 8 x 8 grey TIFF whose directory also has `entries` entries of TIFF type `kind`
    (5: fractions, 7: bytes), each of `count` values, all of them naming the same bytes."""
    unit = {5: 8, 7: 1}[kind]
    blob = b"\x01\x00\x00\x00" * (count * unit // 4 + 1)
    tags = [
        (256, 3, 1, 8),  # width
        (257, 3, 1, 8),  # height
        (258, 3, 1, 8),  # bits per sample
        (259, 3, 1, 1),  # no compression
        (262, 3, 1, 1),  # black is zero
        (273, 4, 1, 8),  # the strip: 64 bytes after the header
        (277, 3, 1, 1),  # samples per pixel
        (278, 3, 1, 8),  # rows per strip
        (279, 4, 1, 64),  # strip byte count
    ]
    at_blob = 8 + 64
    tags += [(40000 + n, kind, count, at_blob) for n in range(entries)]
    at_ifd = at_blob + len(blob)
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *t) for t in tags)
    return b"II*\x00" + struct.pack("<I", at_ifd) + b"\x80" * 64 + blob + ifd + bytes(4)


def test_a_tiff_entry_of_far_more_numbers_than_an_image_needs_is_refused_before_pillow():
    """Pillow makes each number of the entries it reads a Python object, one by one, when it
    opens the file: an 8 x 8 TIFF whose two resolutions held 6 million fractions each took 23 s
    of CPU and 1.1 GB at each look at its header (review 44 F1)."""
    assert open_source(_tiff_with_entries(1, 5, 1_000)).width == 8  # (a few are fine)
    for check in (peek, open_source, describe):
        with pytest.raises(ImageError, match="far more parts than an image needs"):
            check(_tiff_with_entries(1, 5, 20_000))


def test_a_tiff_whose_entries_name_more_bytes_than_the_file_has_is_refused_before_pillow():
    """Pillow copies each entry's bytes when it opens the file: a hundred entries naming the
    same 10 MB took 2 GB at each look (review 44 F1)."""
    assert open_source(_tiff_with_entries(1, 7, 100_000)).width == 8  # (its own bytes: fine)
    for check in (peek, open_source):
        with pytest.raises(ImageError, match="far more parts than an image needs"):
            check(_tiff_with_entries(100, 7, 100_000))


def _exif_sharing_bytes(entries: int, count: int, orientation: int | None = 6) -> bytes:
    """EXIF data whose first directory has an `orientation` (if any) and `entries` entries of
    `count` bytes each, all of them naming the same bytes."""
    tags = [(274, 3, 1, orientation)] if orientation else []
    tags += [(0x9000 + n, 7, count, 0) for n in range(entries)]
    at_blob = 8 + 2 + 12 * len(tags) + 4
    ifd = struct.pack("<H", len(tags))
    for tag, kind, n, value in tags:
        ifd += struct.pack("<HHII", tag, kind, n, value or at_blob)
    return b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + ifd + bytes(4) + b"\x01" * count


def _with_exif(kind: str, exif: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48)).save(buffer, kind, exif=exif)
    data = buffer.getvalue()
    if kind == "PNG":  # (after the pixels, where Pillow reads it only as it decodes them)
        at = data.index(b"eXIf") - 4
        chunk = data[at : at + 12 + int.from_bytes(data[at : at + 4], "big")]
        data = data.replace(chunk, b"")
        end = data.index(b"IEND") - 4
        data = data[:end] + chunk + data[end:]
    return data


@pytest.mark.parametrize("kind", ["JPEG", "PNG", "WEBP"])
def test_exif_whose_entries_name_the_same_bytes_many_times_is_refused_before_pillow(kind):
    """Pillow copies each EXIF entry's bytes as it reads an image's orientation: a 10 MB PNG
    or WebP whose hundred entries all named the same 10 MB took 1 GB at each look at its header,
    a 64 KB JPEG 85 MB (review 44, F1's cause through EXIF)."""
    honest = _with_exif(kind, _exif_sharing_bytes(1, 30_000))
    assert (open_source(honest).width, open_source(honest).height) == (48, 64)  # upright
    shared = _with_exif(kind, _exif_sharing_bytes(20 if kind == "JPEG" else 100, 30_000))
    for check in (peek, open_source, describe):
        with pytest.raises(ImageError, match="far more parts than an image needs"):
            check(shared)


def test_exif_behind_many_exif_headers_is_refused_before_pillow():
    """Pillow takes each "Exif" header off the front of an image's EXIF by copying the rest: a
    WebP whose EXIF was 300,000 of them (1.8 MB) took 6.2 s at each look at its orientation."""
    exif = Image.Exif()
    exif[274] = 6
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48)).save(buffer, "WEBP", exif=b"Exif\x00\x00" + exif.tobytes())
    assert (open_source(buffer.getvalue()).width, open_source(buffer.getvalue()).height) == (48, 64)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48)).save(buffer, "WEBP", exif=b"Exif\x00\x00" * 1000 + exif.tobytes())
    with pytest.raises(ImageError, match="far more parts than an image needs"):
        peek(buffer.getvalue())


def test_a_jpeg_of_far_more_exif_segments_than_an_image_needs_is_refused():
    """Pillow joins a JPEG's EXIF segments, copying what it has at each: 300 of 64 KB took 0.3 s
    a look (700, within the 50 MB cap, about 1.7 s)."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48)).save(buffer, "JPEG", exif=_exif_sharing_bytes(1, 100))
    data = buffer.getvalue()
    body = b"Exif\x00\x00" + bytes(65_000)
    more = b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body
    at = data.index(b"\xff\xdb")  # (after the first EXIF: the quantization tables)
    assert open_source(data[:at] + more + data[at:]).height == 64  # (one more is fine)
    with pytest.raises(ImageError, match="far more parts than an image needs"):
        open_source(data[:at] + more * 20 + data[at:])


@pytest.mark.skipif("avif" not in supported_formats(), reason="this Pillow reads no AVIF")
def test_an_avif_whose_exif_entries_name_the_same_bytes_is_refused_before_pillow_opens_it():
    """Pillow reads an AVIF's EXIF as it opens the file, copying each entry's bytes: a 1 MB
    file whose hundred entries named the same megabyte took 100 MB before it could be refused;
    its EXIF item is found through the file's boxes first."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48)).save(buffer, "AVIF", exif=_exif_sharing_bytes(1, 30_000))
    assert (open_source(buffer.getvalue()).width, open_source(buffer.getvalue()).height) == (48, 64)
    buffer = io.BytesIO()
    exif = _exif_sharing_bytes(100, 1_000_000, orientation=None)  # (else Pillow writes it anew)
    Image.new("RGB", (64, 48)).save(buffer, "AVIF", exif=exif)
    data = buffer.getvalue()
    tracemalloc.start()
    try:
        with pytest.raises(ImageError, match="far more parts than an image needs"):
            peek(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20, f"{peak >> 20} MB to refuse a {len(data) / 2**20:.1f} MB AVIF"


def test_a_heic_whose_metadata_items_name_the_same_bytes_is_refused_before_it_is_opened():
    """pillow_heif copies each metadata item's bytes as it opens a HEIC: 990 items naming the
    same megabyte of a 1 MB file took 2 GB and 1.45 s a look (review 48 F1). The file here (made
    by review 48's `heif_exif_fan.py 20 4`) has 20 EXIF items naming the same 4 KB."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48)).save(buffer, "HEIF", exif=_exif_sharing_bytes(1, 30_000))
    assert (open_source(buffer.getvalue()).width, open_source(buffer.getvalue()).height) == (48, 64)
    fan = (Path(__file__).parent.parent / "support" / "heic_metadata_fan.heic").read_bytes()
    with pytest.raises(ImageError, match="far more parts than an image needs"):
        peek(fan)


def test_an_avif_listing_far_more_items_than_an_image_needs_is_refused_at_once():
    """An AVIF's item locations may take no bytes at all each: a 6 KB file listing a thousand
    items of a thousand places each made the studio's own walk take 0.75 s of Python a look
    (review 49 F1)."""

    def box(kind: bytes, body: bytes, full: bool = False) -> bytes:
        body = bytes(4) + body if full else body  # (a full box: its version and flags)
        return struct.pack(">I", 8 + len(body)) + kind + body

    items = struct.pack(">HHH", 1, 0, 1000) * 1000  # (each: its id, reference, 1000 places)
    iloc = box(b"iloc", b"\x00\x00" + struct.pack(">H", 1000) + items, full=True)
    meta = box(b"meta", box(b"iinf", struct.pack(">H", 0), full=True) + iloc, full=True)
    data = box(b"ftyp", b"avif" + bytes(4) + b"mif1avif") + meta
    with pytest.raises(ImageError, match="far more parts than an image needs"):
        peek(data)


def test_exif_kept_as_text_in_a_png_is_bounded_as_exif_is():
    """ImageMagick keeps a PNG's EXIF in a compressed text chunk, which Pillow reads when it
    looks for the orientation (hexadecimal, after three lines); the studio read only an eXIf
    chunk's, so such a turned PNG was said to be as stored, and sent upright."""

    def png(exif: bytes) -> bytes:
        text = b"\nexif\n%8d\n" % len(exif) + exif.hex().encode()
        body = b"Raw profile type exif\x00\x00" + zlib.compress(text)
        chunk = len(body).to_bytes(4, "big") + b"zTXt" + body
        chunk += zlib.crc32(b"zTXt" + body).to_bytes(4, "big")
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48)).save(buffer, "PNG")
        data = buffer.getvalue()
        at = data.index(b"IDAT") - 4
        return data[:at] + chunk + data[at:]

    honest = open_source(png(_exif_sharing_bytes(1, 30_000)))
    assert (honest.width, honest.height) == (48, 64)  # (its orientation read there: upright)
    assert (prepare_upload(honest).width, prepare_upload(honest).height) == (48, 64)
    with pytest.raises(ImageError, match="far more parts than an image needs"):
        open_source(png(_exif_sharing_bytes(30, 30_000)))


def test_a_turned_tiff_is_said_upright_as_it_is_sent():
    """Pillow gives a TIFF's size upright already: the studio turned it a second time, so a
    portrait TIFF was said to be landscape ("Match source" then asked for 4:3) and sent upright."""
    buffer = io.BytesIO()
    Image.new("RGB", (400, 300)).save(buffer, "TIFF", tiffinfo={274: 6})  # turned a quarter
    source = open_source(buffer.getvalue())
    assert (source.width, source.height, source.aspect_ratio) == (300, 400, "3:4")
    assert (peek(buffer.getvalue()).width, peek(buffer.getvalue()).height) == (300, 400)
    upload = prepare_upload(source)
    assert (upload.width, upload.height) == (300, 400)


def _rle_bmp(width: int, height: int) -> bytes:
    """An 8-bit run-length BMP whose every run is one pixel."""
    pixels = (b"\x01\x05" * width + b"\x00\x00") * height + b"\x00\x01"
    palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
    at = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", at + len(pixels), 0, 0, at) + info + palette + pixels


def test_a_large_run_length_bmp_is_refused_before_pillow_decodes_it_in_python():
    """Pillow decodes a run-length BMP with Python code, a run at a time: 0.33 s a megapixel,
    the GIL held (review 43 F2)."""
    assert open_source(_rle_bmp(64, 64)).width == 64
    with pytest.raises(ImageError, match="save it as PNG first"):
        peek(_rle_bmp(1100, 1000))


def test_a_display_p3_photo_s_tile_shows_the_colours_its_canvas_does():
    """The history's tile dropped the photo's profile: a Display P3 photo's tile (sRGB, as
    every tile is) showed its values unconverted, washed out beside the canvas (audit 15)."""
    from tests.support.icc import display_p3

    p3 = display_p3()
    photo = io.BytesIO()
    Image.new("RGB", (600, 400), (200, 120, 80)).save(photo, "JPEG", quality=95, icc_profile=p3)
    srgb = ImageCms.profileToProfile(
        Image.new("RGB", (1, 1), (200, 120, 80)),
        ImageCms.ImageCmsProfile(io.BytesIO(p3)),
        ImageCms.createProfile("sRGB"),
    ).getpixel((0, 0))
    assert max(abs(a - b) for a, b in zip(srgb, (200, 120, 80), strict=True)) > 8
    tile = decode(make_thumbnail(photo.getvalue()))
    assert tile.info.get("icc_profile") is None  # (an sRGB tile)
    shown = tile.convert("RGB").getpixel((100, 60))
    assert max(abs(a - b) for a, b in zip(shown, srgb, strict=True)) <= 3


def _gps_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0132] = "2026:05:01 10:00:00"  # DateTime
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)})
    return exif


def test_a_photo_sent_to_runapi_as_it_is_leaves_where_it_was_taken_behind():
    """An upright JPEG or PNG within the size RunAPI takes went up byte for byte, its GPS
    position, camera and captions with it (audit 15). Now only those go: the pixels and the
    colour profile are the same bytes."""
    from tests.support.icc import display_p3

    p3 = display_p3()
    im = corpus.photo((640, 480))
    xmp = b"<x:xmpmeta><exif:GPSLatitude>48,51.5N</exif:GPSLatitude></x:xmpmeta>"
    jpeg = corpus.encode(im, "JPEG", quality=90, exif=_gps_exif(), icc_profile=p3, xmp=xmp)
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "taken at home, 12 Rue de Rivoli")
    png = corpus.encode(im, "PNG", exif=_gps_exif(), icc_profile=p3, pnginfo=info)
    for data in (jpeg, png):
        assert b"PhoneMaker" in data
        upload = prepare_upload(open_source(data))
        assert b"PhoneMaker" not in upload.data
        assert b"GPSLatitude" not in upload.data
        assert b"Rue de Rivoli" not in upload.data
        sent, original = decode(upload.data), decode(data)
        assert not sent.getexif()
        assert sent.info.get("icc_profile") == p3
        assert sent.tobytes() == original.tobytes()  # the same image, not re-encoded
        assert len(data) - len(upload.data) < 1000
