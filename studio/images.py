"""Image intake: sniffing, caps, decoding, EXIF orientation, modes, downscaling and encoding.

Imports Pillow, pillow_heif and `studio.params` only (no network, no store). Alpha is kept, never
flattened on white: an image with transparency goes to RunAPI as an RGBA PNG.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import logging
import math
import re
import struct
import sys
import threading
import traceback
import zlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Literal

import pillow_heif
from PIL import Image, ImageCms, ImageFile, ImageOps, JpegImagePlugin, PngImagePlugin, features

from studio.params import nearest_aspect_ratio

log = logging.getLogger(__name__)

pillow_heif.register_heif_opener()  # HEIC; AVIF is built into Pillow since 11.3 (checked on 12.3).

# 50 MiB: a 61 MP camera JPEG is about 30 MB; the same number as `Settings.max_upload_bytes`.
MAX_SOURCE_BYTES = 50 * 1024 * 1024
# Memory: a rejected file costs its bytes only (the pixel cap is checked on the header). An accepted
# one grows the process by under 2 x width x height x 4 bytes (640 MB at the cap; 12 MP PNG: ~82 MB
# measured); JPEGs decode at a reduced scale through `draft` (24 MP JPEG: ~53 MB measured).
# 80 MP: covers 61 MP full-frame cameras and 50 MP phone modes, and stays under Pillow's own bomb
# warning (~89.5 MP), so Pillow's internal checks (GIF frames, TIFF tiles) never warn about an image
# we accept. Checked on the header, before any pixel is decoded.
MAX_SOURCE_PIXELS = 80_000_000
# Full decodes of this many pixels or more run at most `HEAVY_AT_ONCE` at once (`_heavy`).
HEAVY_PIXELS = 8_000_000
HEAVY_AT_ONCE = 2
_HEAVY_DECODES = threading.BoundedSemaphore(HEAVY_AT_ONCE)
_MALLOC_TRIM = getattr(ctypes.CDLL(None), "malloc_trim", None) if sys.platform == "linux" else None
# Flux Kontext answers with about one megapixel (contract: "Upstream"); 2048 px on the long side
# keeps twice that detail per side while keeping uploads small.
MAX_UPLOAD_SIDE = 2048
# What an image may be made of (`_few_parts`): this many parts, and one more for each
# `PART_BYTES` of the file (a PNG's pixels come in chunks of 8-64 KB).
PARTS = 1_000
PART_BYTES = 1024
# The largest run-length compressed BMP taken (Pillow decodes those in Python).
RLE_PIXELS = 1_000_000
# Scans a JPEG may have (a progressive one has about ten; each is another pass over the image).
SCANS = 256
# Where `_open_header` notes a JPEG's scans in its image's `info` (`_whole_image_held`).
_SCANS_KEY = "kontext_scans"
# The chunks of a PNG that Pillow inflates (colour profiles, compressed texts) it may have, and
# the bytes they may inflate to in all (Pillow takes a profile of up to a megabyte).
PNG_INFLATED = 16
PNG_INFLATED_BYTES = 4 * 2**20
# The metadata items (EXIF, XMP) an AVIF or HEIF file may have (an image has one of each).
ISOBMFF_METADATA = 16
# The segments a JPEG's EXIF may come in (a long one takes two or three).
EXIF_SEGMENTS = 8
# The bytes a GIF's comments may hold in all.
GIF_COMMENT_BYTES = 65_536
# Numbers a TIFF's first directory may hold besides its strips or tiles (a colour map has 768).
TIFF_VALUES = 10_000
# Pillow's names for what we take, probed in this order (AVIF first: it also claims HEIC's "mif1"
# brand and steps aside, where libheif could otherwise misreport an AVIF as HEIC).
_KNOWN_FORMATS = {
    "PNG": "png",
    "JPEG": "jpeg",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tiff",
    "AVIF": "avif",
    "HEIF": "heic",
}
# PNG and JPEG (what the studio sends, gets back and mostly is given) are told by their first
# bytes and read by the plugins Pillow loads first; every other plugin (and HEIC's) loads only
# for another file: all of them took a tenth of a CLI edit's start.
_QUICK_FORMATS = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"))


@functools.cache
def _pil_formats() -> dict[str, str]:
    """Pillow's name to ours for each format this installation reads (every plugin loaded).
    AVIF is built into Pillow from 11.3 when its wheel has libavif; older Pillows lack it."""
    Image.init()
    return {
        pil: ours
        for pil, ours in _KNOWN_FORMATS.items()
        if pil in Image.OPEN and (pil != "AVIF" or features.check("avif"))
    }


_WORDS = {
    ours: ours.upper() for ours in ("png", "jpeg", "webp", "gif", "bmp", "tiff", "heic", "avif")
}
_WORDS["webp"] = "WebP"


def supported_formats() -> tuple[str, ...]:
    """What this installation reads, in the README's order (all eight with Pillow 12 and
    pillow-heif)."""
    return tuple(f for f in _WORDS if f in _pil_formats().values())


@functools.cache
def _format_words() -> str:
    found = supported_formats()
    return ", ".join(_WORDS[f] for f in found[:-1]) + " or " + _WORDS[found[-1]]


# Formats Pillow cannot name from its plugins but users do bring.
_OTHER_MAGIC = {b"%PDF": "PDF", b"\xff\x0a": "JPEG XL", b"\x00\x00\x00\x0cJXL ": "JPEG XL"}
_LOSSLESS = {"png", "gif", "bmp", "tiff"}
_UPLOAD_MODES = {"png": ("RGB", "RGBA"), "jpeg": ("RGB",)}
_ORIENTATION_TAG = 0x0112
# Modes that resample well as they are; any other is converted before downscaling.
_RESAMPLE_MODES = {"RGB", "RGBA", "L", "LA", "CMYK", "YCbCr"}


class ImageError(Exception):
    """An image the studio will not take; `str()` is one sentence for the user, `reason` a code.

    Reasons: empty, too_large, not_an_image, svg, html, truncated, corrupt, too_many_pixels,
    unsupported_format, unreadable (and, from `studio.links`, the link reasons).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SourceImage:
    """A checked image as the user gave it; `width` and `height` are after EXIF orientation."""

    data: bytes
    format: str
    width: int
    height: int
    aspect_ratio: str


@dataclass(frozen=True, slots=True)
class UploadImage:
    """What goes to `POST /api/v1/files`: upright, within the side cap, PNG or JPEG."""

    data: bytes
    file_name: str
    mime_type: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class ResultImage:
    """A downloaded result, checked but never re-encoded."""

    data: bytes
    format: str
    width: int
    height: int


def open_source(data: bytes, *, max_bytes: int = MAX_SOURCE_BYTES) -> SourceImage:
    """Check that `data` is one whole image the studio takes.

    Cheap checks come first (size, markup, header, pixel count); only then are pixels decoded, so
    truncated and damaged files are caught too.

    Args:
        data: the file's bytes.
        max_bytes: the byte cap.

    Returns:
        The image with its original bytes, format and upright size.

    Raises:
        ImageError: for anything that is not a whole, supported image within the caps.
    """
    with _decoding():
        im = _open_header(data, max_bytes)
        width, height = _upright_size(im, data)
        cost = decode_pixels(im)
        if im.format == "JPEG":
            # Decoding at 1/8 scale still reads every byte, so truncation is caught for less memory.
            im.draft(None, (max(1, im.width // 8), max(1, im.height // 8)))
        with _heavy(im, cost):
            im.load()
    return SourceImage(
        data=data,
        format=_KNOWN_FORMATS[_pil_format(im)],
        width=width,
        height=height,
        aspect_ratio=nearest_aspect_ratio(width, height),
    )


def prepare_upload(source: SourceImage, *, max_side: int = MAX_UPLOAD_SIDE) -> UploadImage:
    """The image to upload for `source`, re-encoded only when it must be.

    An upright 8-bit RGB/RGBA PNG or RGB JPEG within `max_side` goes through as it is, less its
    metadata (where and with what it was taken: `_without_metadata`), so a chained result (whose
    only metadata is the studio's own mark) is sent exactly as it came back. Anything else is
    converted once: downscaled, turned upright, converted to RGB or RGBA, then saved as PNG
    (alpha or lossless source) or as JPEG at quality 95.

    Raises:
        ImageError: when `source.data` does not decode (it should have come from `open_source`).
    """
    with _decoding():
        im = _open_header(source.data, max(len(source.data), 1))
        width, height = _upright_size(im, source.data)
        kind = _KNOWN_FORMATS[_pil_format(im)]
        if _can_pass_through(im, source.data, kind, max_side) and (
            sent := _without_metadata(source.data, kind)
        ):
            return _upload(sent, "png" if kind == "png" else "jpeg", width, height)
        icc = im.info.get("icc_profile") if im.mode in ("RGB", "RGBA") else None
        with _heavy(im):
            upright = _decode_upright(im, max_side)
        if kind in _LOSSLESS or upright.mode == "RGBA":
            return _upload(_encode(upright, "PNG", icc), "png", *upright.size)
        return _upload(_encode(upright, "JPEG", icc), "jpeg", *upright.size)


def check_result(data: bytes) -> ResultImage:
    """Check that a downloaded result is one whole image, and say what it is; the bytes are kept
    as they are.

    A PNG (what the studio asks for by default) is checked without decoding its pixels: every
    chunk's CRC through `IEND` (Pillow's `verify`), so a cut-off or damaged download is refused
    at a small part of a decode's cost (a decode, at about 40 ms a megapixel here, was most of
    the studio's CPU per edit under load). Other formats are decoded as `open_source` does.

    Raises:
        ImageError: when the result is not a whole image.
    """
    with _decoding():
        im = _open_header(data, MAX_SOURCE_BYTES)
        if im.format == "PNG":
            width, height = _upright_size(im, data)  # (its eXIf chunk read on its own)
            im.verify()
            return ResultImage(data=data, format="png", width=width, height=height)
    source = open_source(data)
    return ResultImage(data=data, format=source.format, width=source.width, height=source.height)


def describe(data: bytes) -> SourceImage:
    """What `open_source` says of bytes it has already accepted (a stored image), read from the
    header alone: no pixel is decoded. Not a check: never call it on bytes from outside.

    Raises:
        ImageError: when the header cannot be read.
    """
    with _decoding():
        im = _open_header(data, max(len(data), 1))
        width, height = _upright_size(im, data)
        return SourceImage(
            data=data,
            format=_KNOWN_FORMATS[_pil_format(im)],
            width=width,
            height=height,
            aspect_ratio=nearest_aspect_ratio(width, height),
        )


@dataclass(frozen=True, slots=True)
class Header:
    """What an image's header says, read without decoding a pixel (`peek`)."""

    format: str
    width: int  # upright
    height: int
    # Pixels a full check decodes (`open_source`, `decode_pixels`): what the engine schedules
    # and counts decodes by.
    decode_pixels: int


def peek(data: bytes, *, max_bytes: int = MAX_SOURCE_BYTES) -> Header:
    """The header of bytes from outside, checked as `open_source` checks it first (size, markup,
    format, pixel count) but with no pixel decoded: what a full check will cost, before paying it.

    Raises:
        ImageError: for anything `open_source` would refuse from the header alone.
    """
    with _decoding():
        im = _open_header(data, max_bytes)
        width, height = _upright_size(im, data)
        return Header(
            format=_KNOWN_FORMATS[_pil_format(im)],
            width=width,
            height=height,
            decode_pixels=decode_pixels(im),
        )


def decode_pixels(im: Image.Image) -> int:
    """What a full check of `im` (its header read, nothing decoded) costs, counted in pixels of
    a full decode: all of them; a JPEG's an eighth of each side (decoded at reduced scale,
    `draft`); but a progressive JPEG's twice all of them: the decoder holds every coefficient
    of the whole image (two bytes a sample) before it makes a pixel, whatever the scale (80
    megapixels took 489 MB against 33 MB for the same picture baseline; four callers sending
    such files, counted as a 64th, took the studio to 2.2 GB: review 41 F1). So does any JPEG
    whose image comes in more than one scan, progressive or not (a baseline one with a scan for
    each colour, 80 megapixels in 0.94 MB: 463 MB at each decode, review 50 F1)."""
    pixels = im.width * im.height
    if im.format != "JPEG":
        return pixels
    return pixels * 2 if _whole_image_held(im) else pixels // 64


def _whole_image_held(im: Image.Image) -> bool:
    """Whether libjpeg decodes `im` (a JPEG) through a buffer of the whole image's coefficients:
    when it is progressive, or has more than one scan (`_open_header` counts them)."""
    return bool(im.info.get("progressive") or im.info.get(_SCANS_KEY, 1) > 1)


def make_thumbnail(data: bytes, *, max_side: int = 256) -> bytes:
    """A small upright copy for history strips: PNG when the image has alpha, JPEG otherwise.

    Raises:
        ImageError: when `data` is not an image the studio takes.
    """
    with _decoding():
        header = _open_header(data, MAX_SOURCE_BYTES)
        with _heavy(header):
            im = _decode_upright(header, max_side)
            if profile := _rgb_profile(header):
                # (A photo in Display P3 or Adobe RGB: its tile drawn as sRGB looked washed out
                # beside the canvas, which honours the profile: audit 15.)
                im = to_profile(im, profile, None)
        if im.mode == "RGBA":
            return _encode(im, "PNG", None)
        return _encode(im, "JPEG", None, quality=85)


def colour_profile(data: bytes) -> bytes | None:
    """The RGB colour profile an image's file carries (Display P3 on phones' photos), or None:
    none, or one that does not describe RGB (a greyscale or CMYK profile, whose image the studio
    decodes to RGB without it).

    Raises:
        ImageError: when `data` is not an image the studio takes.
    """
    with _decoding():
        return _rgb_profile(_open_header(data, MAX_SOURCE_BYTES))


def to_profile(im: Image.Image, profile: bytes, target: bytes | None) -> Image.Image:
    """`im` (RGB or RGBA, in colour `profile`) converted to `target` (None: sRGB); alpha kept.
    A profile LittleCMS cannot use leaves `im` as it is."""
    if profile == target:
        return im
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        goal = ImageCms.ImageCmsProfile(
            io.BytesIO(target) if target else ImageCms.createProfile("sRGB")
        )
        converted = ImageCms.profileToProfile(
            im.convert("RGB"), source, goal, renderingIntent=ImageCms.Intent.PERCEPTUAL
        )
    except (OSError, ImageCms.PyCMSError):
        return im
    assert converted is not None  # (not in place)
    if im.mode == "RGBA":
        converted.putalpha(im.getchannel("A"))
    return converted


def _rgb_profile(im: Image.Image) -> bytes | None:
    icc = im.info.get("icc_profile")
    if not icc:
        return None
    try:
        space = ImageCms.ImageCmsProfile(io.BytesIO(icc)).profile.xcolor_space
    except (OSError, ImageCms.PyCMSError):
        return None
    return bytes(icc) if space.strip() == "RGB" else None


def decode_full(data: bytes, *, max_bytes: int = MAX_SOURCE_BYTES) -> Image.Image:
    """The whole image at its own size, upright, as 8-bit RGB or RGBA (RGBA when it has any
    transparency): the pixels a region edit keeps bit for bit. Same caps as `open_source`.

    Raises:
        ImageError: for anything that is not a whole, supported image within the caps.
    """
    with _decoding():
        header = _open_header(data, max_bytes)
        with _heavy(header):
            return _decode_upright(header, max_side=1 << 30)


def decode_grey_and_alpha(data: bytes) -> tuple[Image.Image, Image.Image | None]:
    """A drawn mask: its luminance (mode L), and its alpha when it has any transparency.

    Raises:
        ImageError: when `data` is not an image the studio takes.
    """
    with _decoding():
        im = _open_header(data, MAX_SOURCE_BYTES)
        with _heavy(im):
            im.load()
            upright = ImageOps.exif_transpose(im)
            alpha = None
            if upright.has_transparency_data:
                rgba = upright.convert("RGBA")
                alpha = rgba.getchannel("A")
                del rgba
                if alpha.getextrema() == (255, 255):
                    alpha = None
            if upright.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
                upright = upright.convert("I").point(lambda value: value * (1 / 256))
            return upright.convert("L"), alpha


def encode_image(
    im: Image.Image, image_format: str, *, compress_level: int = 6, icc: bytes | None = None
) -> bytes:
    """`im` as PNG (lossless; `compress_level` trades time for size) or as JPEG at quality 95,
    carrying colour profile `icc` if given."""
    buffer = io.BytesIO()
    options: dict[str, object] = {"icc_profile": icc} if icc else {}
    if image_format == "png":
        im.save(buffer, "PNG", compress_level=compress_level, **options)
    else:
        im.convert("RGB").save(buffer, "JPEG", quality=95, subsampling=0, **options)
    return buffer.getvalue()


def _open_header(data: bytes, max_bytes: int) -> ImageFile.ImageFile:
    """Identify `data` from its header without decoding pixels; reject it as early as possible."""
    if not data:
        raise ImageError("empty", "The file is empty; pick an image file.")
    if len(data) > max_bytes:
        raise _too_large(max_bytes, len(data))
    if markup := _markup_kind(data):
        reason, message = _MARKUP_ERRORS[markup]
        raise ImageError(reason, message.format(formats=_format_words()))
    prefix = data[:16]
    if not _few_parts(data):
        raise _too_many_parts()
    if (canvas := _webp_canvas(data)) and canvas[0] * canvas[1] > MAX_SOURCE_PIXELS:
        # (Pillow's WebP reader allocates the canvas twice as it opens the file: refused first,
        # the limit's own sentence, not a failed allocation's: review 50 F3.)
        raise _too_many_pixels(*canvas)
    failure: Exception | None = None
    for name in _candidates(prefix):
        # What `Image.open` does, without its global bomb check (which only warns below ~179 MP):
        # our own cap is checked here, before any pixel is decoded.
        factory, accept = Image.OPEN[name]
        matched = accept(prefix) if accept else False
        if not matched or isinstance(matched, str):
            continue
        try:
            im = factory(io.BytesIO(data), "")
        except (SyntaxError, IndexError, TypeError, struct.error) as exc:
            failure = exc  # as in `Image.open`: e.g. AVIF also claims HEIC's "mif1" brand
            continue
        width, height = im.size
        if width < 1 or height < 1:
            raise _corrupt()
        if (
            im.format == "BMP"
            and im.info.get("compression") in (1, 2)
            and (width * height > RLE_PIXELS)
        ):
            # (Pillow decodes a run-length BMP with Python code, a run at a time: 0.33 s a
            # megapixel, the GIL held: review 43 F2.)
            raise ImageError(
                "rle_bmp",
                f"Run-length compressed BMP images over {RLE_PIXELS // 1_000_000} megapixel "
                "are not taken; save it as PNG first.",
            )
        if im.format == "JPEG":
            im.info[_SCANS_KEY] = _jpeg_scans(data, im)
        exif = im.info.get("exif")
        if isinstance(exif, bytes) and not _directories_fit(exif, _parts_bound(data)):
            raise _too_many_parts()  # (WebP, HEIF and AVIF: found by their own libraries)
        if width * height > MAX_SOURCE_PIXELS:
            raise _too_many_pixels(width, height)
        return im
    if failure is not None:
        raise failure
    raise _not_supported(prefix)


def _too_many_pixels(width: int, height: int) -> ImageError:
    megapixels = math.ceil(width * height / 1_000_000)
    return ImageError(
        "too_many_pixels",
        f"The image is {width} x {height} pixels ({megapixels} megapixels), over the "
        f"{MAX_SOURCE_PIXELS // 1_000_000} megapixel limit; shrink it first.",
    )


def _webp_canvas(data: bytes) -> tuple[int, int] | None:
    """A WebP's canvas size, from its first chunk (None when `data` is no WebP, or that chunk
    says none)."""
    if len(data) < 30 or not (data.startswith(b"RIFF") and data[8:12] == b"WEBP"):
        return None
    kind = data[12:16]
    if kind == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        return width, int.from_bytes(data[27:30], "little") + 1
    if kind == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width = int.from_bytes(data[26:28], "little") & 0x3FFF
        return width, int.from_bytes(data[28:30], "little") & 0x3FFF
    return None


def _too_many_parts() -> ImageError:
    return ImageError(
        "too_many_parts",
        "The image file is made of far more parts than an image needs; save it again "
        "from an image editor.",
    )


def _few_parts(data: bytes) -> bool:
    """Whether `data`, when it is a PNG, JPEG, GIF or TIFF, is made of no more parts (chunks,
    segments, blocks, strips) than an image needs, walking their lengths only, and no further than
    that bound. Pillow reads each part with Python code, so a small picture padded with
    millions of empty ones cost seconds of CPU at each look at its header, the GIL held,
    before a pixel was counted: 3.1 million empty PNG chunks, 36 MB, 18 s a try, failed and
    unpaid, four addresses holding other visitors' pages at 1.5 s median (review 42 F1); a GIF
    with a million empty comments, 3 MB, 12 s. Parts that carry the pixels count by their
    bytes (a PNG's IDAT chunks of at least `PART_BYTES` on average)."""
    bound = _parts_bound(data)
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png_parts(data, bound)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_parts(data, bound)
    if data.startswith((b"GIF87a", b"GIF89a")):
        return _gif_parts(data, bound)
    if data.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return _tiff_parts(data, bound)
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return _webp_parts(data, bound)
    if data[4:8] == b"ftyp":  # AVIF and HEIF
        try:
            return _isobmff_parts(data, bound)
        except _TooManyBoxes:
            return False
    return True


def _parts_bound(data: bytes) -> int:
    return PARTS + len(data) // PART_BYTES


class _TooManyBoxes(Exception):
    pass


def _isobmff_boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """Each box between `start` and `end` (ISO/IEC 14496-12 4.2): its type, and where its
    contents start and end; at most `PARTS` of them."""
    for _ in range(PARTS + 1):
        if start + 8 > end:
            return
        size, head = int.from_bytes(data[start : start + 4], "big"), 8
        kind = data[start + 4 : start + 8]
        if size == 1:  # (a 64-bit size follows)
            size, head = int.from_bytes(data[start + 8 : start + 16], "big"), 16
        elif size == 0:  # (to the end)
            size = end - start
        if size < head:
            return
        yield kind, start + head, min(start + size, end)
        start += size
    raise _TooManyBoxes


def _isobmff_box(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    return next(((s, e) for k, s, e in _isobmff_boxes(data, start, end) if k == kind), None)


def _isobmff_parts(data: bytes, bound: int) -> bool:
    """(An AVIF's or HEIF's metadata items: at most `ISOBMFF_METADATA`, naming no more bytes
    than the file has, as pillow_heif copies each one's (990 naming the same megabyte of a
    1 MB HEIC took 2 GB and 1.45 s a look: review 48 F1); each EXIF item's directories, which
    Pillow reads as it opens an AVIF (a 1 MB AVIF whose hundred entries named the same megabyte
    took 100 MB): `_directories_fit`.)"""
    metadata = [(kind, spans) for kind, spans in _isobmff_items(data) if kind in _METADATA]
    held = sum(min(n, max(0, len(data) - at)) for _, spans in metadata for at, n in spans)
    if len(metadata) > ISOBMFF_METADATA or held > len(data):
        return False
    for kind, spans in metadata:
        item = b"".join(data[start : start + length] for start, length in spans)
        if kind == b"Exif" and not _directories_fit(item[4:], bound):  # (after its offset)
            return False
    return True


# The item types of an AVIF's or HEIF's metadata: EXIF, XMP (a MIME item), a URI item.
_METADATA = (b"Exif", b"mime", b"uri ")


def _isobmff_items(data: bytes) -> list[tuple[bytes, list[tuple[int, int]]]]:
    """Each item of an AVIF or HEIF file as its type and where its bytes are (start, length),
    found through its boxes as libheif and libavif find them (meta: iinf names the items, iloc
    says where each is: ISO/IEC 23008-12 9.2, 14496-12 8.11.3); none when they do not parse."""
    meta = _isobmff_box(data, 0, len(data), b"meta")
    if meta is None:
        return []
    inside: dict[bytes, tuple[int, int]] = {}
    for kind, start, end in _isobmff_boxes(data, meta[0] + 4, meta[1]):  # (after its version)
        inside.setdefault(kind, (start, end))
    iinf, iloc, idat = inside.get(b"iinf"), inside.get(b"iloc"), inside.get(b"idat")
    if iinf is None or iloc is None:
        return []
    read = _Reader(data, iinf[0])
    version = read.int(4) >> 24
    read.at += 2 if version == 0 else 4  # (how many entries: the boxes say)
    kinds = {}
    for kind, start, _end in _isobmff_boxes(data, read.at, iinf[1]):
        entry = _Reader(data, start)
        version = entry.int(4) >> 24
        if kind == b"infe" and version >= 2:
            item = entry.int(2 if version == 2 else 4)
            entry.at += 2  # (its protection)
            kinds[item] = data[entry.at : entry.at + 4]
    read = _Reader(data, iloc[0])
    version = read.int(4) >> 24
    sizes, more = read.int(1), read.int(1)
    offset_size, length_size, base_size = sizes >> 4, sizes & 15, more >> 4
    index_size = more & 15 if version in (1, 2) else 0
    items, parts = [], 0
    for _ in range(read.int(2 if version < 2 else 4)):
        parts += 1  # (items and their extents together, as an extent may take no bytes at all)
        if parts > PARTS or read.at > iloc[1]:
            raise _TooManyBoxes
        item = read.int(2 if version < 2 else 4)
        method = read.int(2) & 15 if version in (1, 2) else 0
        read.at += 2  # (its data reference)
        base = read.int(base_size)
        spans = []
        for _ in range(read.int(2)):
            parts += 1
            if parts > PARTS or read.at > iloc[1]:
                raise _TooManyBoxes
            read.at += index_size
            offset, length = read.int(offset_size), read.int(length_size)
            start = base + offset + (idat[0] if method == 1 and idat else 0)
            spans.append((start, length or max(0, len(data) - start)))
        if method in (0, 1):  # (in the file, or in its idat box)
            items.append((kinds.get(item, b""), spans))
    return items


class _Reader:
    """Big-endian numbers of `data`, one after another from `at`."""

    def __init__(self, data: bytes, at: int) -> None:
        self.data, self.at = data, at

    def int(self, size: int) -> int:
        self.at += size
        return int.from_bytes(self.data[self.at - size : self.at], "big")


def _png_parts(data: bytes, bound: int) -> bool:
    """(Its chunks; at most `PNG_INFLATED` of those Pillow inflates (colour profiles and
    compressed texts), to `PNG_INFLATED_BYTES` in all, inflated here as far as that to know:
    900 colour profiles of a megabyte of zeros, in 0.9 MB, took 1.9 s a look; 63 texts of a
    megabyte, in 66 KB, 64 MB and 0.2-0.45 s a look, four at once an address (review 47 F1);
    the EXIF directories of its eXIf chunk, or of a text chunk holding EXIF as ImageMagick
    writes it: `_directories_fit`.)"""
    other, exifs, inflated, room = 0, 0, 0, PNG_INFLATED_BYTES
    for parts, (kind, at, length) in enumerate(_png_walk(data), start=1):
        other += kind != b"IDAT"
        if kind in (b"iCCP", b"zTXt", b"iTXt"):
            inflated += 1
            room -= _inflated_size(_png_compressed(kind, data[at : at + length]), room + 1)
        if parts > bound or other > PARTS or inflated > PNG_INFLATED or room < 0:
            return False
        if kind == b"eXIf" or _is_exif_text(data, kind, at):
            exif = data[at : at + length]
            if kind != b"eXIf":
                exif = _png_text_exif(kind, exif)
            exifs += bool(exif)
            if exifs > 2 or not _directories_fit(exif, bound):  # (an image has one)
                return False
    return True


def _png_compressed(kind: bytes, body: bytes) -> bytes:
    """The deflated bytes of a PNG colour profile or compressed text chunk (nothing when it
    holds none): after its name, its method (and an international text's language and
    translated keyword)."""
    rest = body.partition(b"\x00")[2]
    if kind == b"iTXt":
        if rest[:1] != b"\x01":  # (not compressed)
            return b""
        return rest[2:].partition(b"\x00")[2].partition(b"\x00")[2]
    return rest[1:]


def _inflated_size(deflated: bytes, most: int) -> int:
    """How many bytes `deflated` inflates to, up to `most`, a piece at a time (none kept)."""
    inflater, size = zlib.decompressobj(), 0
    try:
        while deflated and size < most:
            size += len(inflater.decompress(deflated, min(most - size, 2**16)))
            deflated = inflater.unconsumed_tail
    except zlib.error:
        pass  # (what Pillow does with it is Pillow's)
    return size


def _inflate(deflated: bytes, most: int) -> bytes:
    """At most `most` bytes of `deflated`, inflated (nothing when it is not zlib data)."""
    try:
        return zlib.decompressobj().decompress(deflated, most)
    except zlib.error:
        return b""


def _is_exif_text(data: bytes, kind: bytes, at: int) -> bool:
    """Whether the PNG chunk of `kind` whose data starts at `at` is text holding EXIF, as
    ImageMagick writes it (and Pillow reads it, when there is no eXIf chunk)."""
    return kind in (b"tEXt", b"zTXt", b"iTXt") and data.startswith(b"Raw profile type exif\x00", at)


def _png_text_exif(kind: bytes, body: bytes) -> bytes:
    """The EXIF data of a PNG text chunk named "Raw profile type exif" (hexadecimal after three
    lines, as Pillow reads it), or nothing."""
    keyword, _, text = body.partition(b"\x00")
    if keyword != b"Raw profile type exif":
        return b""
    if kind != b"tEXt":  # (as much as Pillow takes of one)
        text = _inflate(_png_compressed(kind, body), PngImagePlugin.MAX_TEXT_CHUNK)
    try:
        return bytes.fromhex("".join(text.decode("latin-1").split("\n")[3:]))
    except ValueError:
        return b""


def _png_walk(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """Each chunk of the PNG `data` as its type, where its data starts and its declared length,
    up to IEND, walking the chunk lengths only (no CRC, no decompression)."""
    at = 8  # after the signature
    while at + 8 <= len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        kind = data[at + 4 : at + 8]
        yield kind, at + 8, length
        if kind == b"IEND":
            return
        at += 12 + length  # length, type, data, CRC


# The JPEG markers Pillow knows, and those of them that carry no length: what it reads, read the
# same way (a walk that read a length where Pillow reads none would step over what it reads).
_JPEG_MARKERS = frozenset(code & 0xFF for code in JpegImagePlugin.MARKER)
_JPEG_BARE = frozenset(
    code & 0xFF for code, (*_, read) in JpegImagePlugin.MARKER.items() if not read
)


def _jpeg_parts(data: bytes, bound: int) -> bool:
    """(The segments before the first scan: what Pillow reads; libjpeg reads the rest, of which
    each scan of a progressive one is another pass: a scan's marker appears nowhere else, as a
    0xFF in the coded data is followed by 0 or a restart's number. Each of Photoshop's
    resources, quantization tables and a frame's components is a part too, as Pillow reads them
    one by one in Python: 100 segments of empty resources, 6.5 MB, took 0.28 s a look; 700 of a
    thousand tables each, 45 MB, 2.25 s (review 44); and each byte Pillow skips between them (4
    MB of them, 0.2 s: review 46 F2). Its EXIF (at most `EXIF_SEGMENTS`, which Pillow joins,
    copying what it has at each: 300 of 64 KB took 0.3 s a look) and multi-picture directories:
    `_directories_fit`.)"""
    if data.count(b"\xff\xda") > SCANS:
        return False
    at, parts, junk, exif, mpf = 2, 0, 0, list[bytes](), b""
    while at + 4 <= len(data):
        if data[at] != 0xFF:  # bytes between segments, which Pillow skips one at a time
            found = data.find(b"\xff", at)
            junk += (found if found >= 0 else len(data)) - at
            if junk > bound:
                return False
            at = found if found >= 0 else len(data)
            continue
        parts += 1
        if parts > PARTS:
            return False
        marker = data[at + 1]
        if marker == 0xDA:  # the first scan
            break
        if marker == 0xFF:  # a fill byte
            at += 1
        elif marker == 0x00 or marker in _JPEG_BARE:  # (0x00: an escaped 0xFF, out of place)
            at += 2
        elif marker not in _JPEG_MARKERS:
            break  # (Pillow stops there: "no marker found")
        else:
            end = at + 2 + int.from_bytes(data[at + 2 : at + 4], "big")
            if marker == 0xE1 and data.startswith(b"Exif\x00\x00", at + 4):
                # (Pillow adds each to the first, copying what it has each time)
                exif.append(data[at + (10 if exif else 4) : end])
                if len(exif) > EXIF_SEGMENTS:
                    return False
            if marker == 0xE2 and not mpf and data.startswith(b"MPF\x00", at + 4):
                mpf = data[at + 8 : end]  # (Pillow reads the first, to open the file)
            if marker == 0xED:  # Photoshop's resources, which Pillow reads one by one
                parts += data.count(b"8BIM", at + 4, end)
            elif marker == 0xDB:  # quantization tables (65 bytes or more each), the same
                parts += (end - at) // 65
            elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a frame's
                parts += (end - at) // 3  # components (3 bytes each), the same
            at = end
    return _directories_fit(b"".join(exif), bound) and _directories_fit(mpf, bound)


def _jpeg_scans(data: bytes, im: ImageFile.ImageFile) -> int:
    """The scans of a JPEG's image: from its first (whose header Pillow read last) to its end (a
    scan's marker, like the end's, appears nowhere in coded data; an embedded thumbnail's come
    before, a multi-picture file's next image after)."""
    first = data.rfind(b"\xff\xda", 0, im.fp.tell() if im.fp is not None else len(data))
    if first < 0:
        return 1
    end = data.find(b"\xff\xd9", first)
    return data.count(b"\xff\xda", first, end if end >= 0 else len(data))


def _webp_parts(data: bytes, bound: int) -> bool:
    """(Its chunks: libwebp's demuxer, which Pillow makes at each open, keeps a record of each
    frame, the GIL held: 330,000 one-pixel frames in 15 MB took 45 ms and 50 MB a look: review
    50 F2.)"""
    at, parts = 12, 0
    while at + 8 <= len(data):
        parts += 1
        if parts > bound:
            return False
        at += 8 + (size := int.from_bytes(data[at + 4 : at + 8], "little")) + (size & 1)
    return True


_GIF_BLOCK = re.compile(rb"[!,;]")  # what starts a GIF's extension, image or end


def _gif_parts(data: bytes, bound: int) -> bool:
    """(The blocks before the first image: what Pillow reads to open it. It makes a comment
    by adding each block to the text before, copying it each time: so comments hold at most
    `GIF_COMMENT_BYTES` in all, as 20,000 blocks of one, in 27 MB, took 1.3 s a look. Each
    byte it skips between blocks is a part: 4 MB of them took 0.35 s, review 46 F2.)"""
    if len(data) < 13:
        return True
    flags = data[10]
    at = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    blocks, comment = 0, 0
    while at < len(data) and data[at] not in (0x2C, 0x3B):  # (the first image; the end)
        if data[at] != 0x21:  # bytes between blocks, which Pillow skips one at a time
            found = _GIF_BLOCK.search(data, at)
            blocks += (found.start() if found else len(data)) - at
            if blocks > bound:
                return False
            at = found.start() if found else len(data)
            continue
        label = data[at + 1] if at + 1 < len(data) else 0  # an extension: its sub-blocks
        at += 2
        while at < len(data) and data[at]:
            blocks += 1
            if label == 0xFE:
                comment += data[at]
            if blocks > bound or comment > GIF_COMMENT_BYTES:
                return False
            at += 1 + data[at]
        at += 1
        blocks += 1
        if blocks > bound:
            return False
    return True


def _tiff_parts(data: bytes, bound: int) -> bool:
    """(A TIFF file's directories: `_directories_fit`; a TIFF of one-pixel-wide strips, 2
    million of them in 12 MB, took 3.75 s at each look at its header and 10 s and 706 MB to
    check: review 43 F1.)"""
    return _directories_fit(data, bound)


def _directories_fit(blob: bytes, bound: int) -> bool:
    """Whether the TIFF-structured `blob` (a TIFF file, or an image's EXIF or MPF data, which
    share the layout) has directories Pillow reads at a bounded cost: the first one, and the
    EXIF, GPS and interoperability ones it points to (what Pillow reads to open a TIFF, to find
    an image's orientation and to turn it upright). Pillow copies the bytes of each entry they
    hold and makes each number it reads a Python object, one by one: so they have at most
    `PARTS` entries in all; the strips or tiles at most `bound` each; the other entries at most
    `TIFF_VALUES` numbers in all, and their bytes at most the blob's (two resolutions of 6
    million fractions each took 23 s and 1.1 GB at each look; a hundred entries naming the same
    10 MB, 2 GB: review 44 F1). Bytes past the blob's end are not copied (Pillow skips the
    entry), so they do not count."""
    prefixes = 0
    while blob.startswith(b"Exif\x00\x00", 6 * prefixes):
        prefixes += 1  # (Pillow takes off each, copying the rest each time: 1.8 MB of them, 6 s)
        if prefixes > 2:
            return False
    blob = blob[6 * prefixes :]
    if blob[:4] not in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return True  # (not a TIFF layout: Pillow reads none of it)
    order: Literal["little", "big"] = "little" if blob[:2] == b"II" else "big"
    big = blob[2:4] in (b"+\x00", b"\x00+")  # BigTIFF: 8-byte counts and offsets
    size = 8 if big else 4
    head, width = (8, 20) if big else (2, 12)  # a directory's count; an entry
    todo = [int.from_bytes(blob[8:16] if big else blob[4:8], order)]
    seen: set[int] = set()
    values, held, entries = 0, 0, 0
    while todo:
        at = todo.pop()
        if at in seen or len(seen) == 4:
            continue
        seen.add(at)
        first = entries
        entries += int.from_bytes(blob[at : at + head], order)
        if entries > PARTS:
            return False
        for n in range(entries - first):
            entry = at + head + n * width
            tag = int.from_bytes(blob[entry : entry + 2], order)
            kind = int.from_bytes(blob[entry + 2 : entry + 4], order)
            count = int.from_bytes(blob[entry + 4 : entry + 4 + size], order)
            value = int.from_bytes(blob[entry + 4 + size : entry + width], order)
            taken = count * _TIFF_UNITS.get(kind, 0)  # (Pillow skips a type it does not know)
            if taken > size:  # (what fits in the value's place stays there)
                present = max(0, len(blob) - value)
                held += min(taken, present)
                if taken > present:
                    taken = 0  # (cut off: Pillow skips it, and makes no number of it)
            if tag in (273, 279, 324, 325):  # strip and tile offsets, and their byte counts
                if count > bound:
                    return False
            elif taken and kind not in _TIFF_BYTES:
                values += count
            if tag in (34665, 34853, 40965) and count == 1:  # EXIF, GPS, interoperability
                todo.append(value)
    return values <= TIFF_VALUES and held <= len(blob)


# The bytes of each value of a TIFF entry's type (TIFF 6.0 section 2, BigTIFF's 16-18), and the
# types Pillow keeps as bytes or text rather than numbers.
_TIFF_UNITS = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_TIFF_UNITS |= {16: 8, 17: 8, 18: 8}
_TIFF_BYTES = (1, 2, 6, 7)


def _candidates(prefix: bytes) -> Iterator[str]:
    """The formats to try for a file that starts with `prefix`, in order."""
    for magic, name in _QUICK_FORMATS:
        if prefix.startswith(magic):
            Image.preinit()  # loads the PNG and JPEG plugins
            yield name
            return
    yield from _pil_formats()


def _heavy(im: Image.Image, pixels: int | None = None) -> AbstractContextManager[object]:
    """Room for a full decode of `im` (of `pixels`, when it costs another number than its size
    says: `decode_pixels`): at most `HEAVY_AT_ONCE` decodes of `HEAVY_PIXELS` or more run at
    once in this process, whoever asks (an 80-megapixel PNG of a few hundred kilobytes takes
    about 300 MB), so many large images at once wait for each other instead of taking the
    memory together; smaller ones never wait. A JPEG decoded at reduced scale costs the
    reduced size, unless it is progressive."""
    if pixels is None:
        pixels = im.width * im.height
        if im.format == "JPEG" and _whole_image_held(im):
            pixels = decode_pixels(im)  # (called before any `draft`: its whole size, twice)
    if pixels < HEAVY_PIXELS:
        return nullcontext()
    return _heavy_slot(im)


@contextmanager
def _heavy_slot(im: Image.Image) -> Iterator[None]:
    with _HEAVY_DECODES:
        try:
            yield
        except BaseException as exc:
            # A decode that fails (a file damaged or cut off) took the memory too: its pixels
            # (held by the image, and by the decoder in the failed call's frame) go now, not
            # with the last reference to the exception.
            im.close()
            traceback.clear_frames(exc.__traceback__)
            raise
        finally:
            give_back_memory()


def give_back_memory() -> None:
    """Hand freed memory back to the system after a large decode: glibc keeps large freed
    buffers in the worker thread's arena otherwise, so memory a burst of large images took
    (freed, but kept) would stay with the process."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


@contextmanager
def _decoding() -> Iterator[None]:
    """Turn whatever Pillow raises on hostile bytes into an `ImageError`; never show its text."""
    try:
        yield
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(
            "too_many_pixels", "The image is too large to decode in the memory this studio has."
        ) from None
    except Image.DecompressionBombError:
        raise ImageError(
            "too_many_pixels",
            f"The image has over {MAX_SOURCE_PIXELS // 1_000_000} megapixels; shrink it first.",
        ) from None
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, struct.error...)
        log.debug("image decoding failed: %r", exc)
        if "truncated" in str(exc):
            raise ImageError(
                "truncated", "The image file is cut off; download or export it again."
            ) from None
        raise _corrupt() from None


def _markup_kind(data: bytes) -> str | None:
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not head.startswith(b"<"):
        return None
    if b"<svg" in head:
        return "svg"
    if any(tag in head for tag in (b"<!doctype html", b"<html", b"<head", b"<body")):
        return "html"
    return "markup"


_MARKUP_ERRORS = {
    "svg": ("svg", "The file is an SVG drawing; export it as PNG or JPEG first."),
    "html": ("html", "The file is a web page (HTML), not an image."),
    "markup": ("not_an_image", "The file is text, not an image; the studio takes {formats}."),
}


def _not_supported(prefix: bytes) -> ImageError:
    ours = _pil_formats()  # every plugin loaded
    names = [name for magic, name in _OTHER_MAGIC.items() if prefix.startswith(magic)]
    names += [
        name
        for name, (_factory, accept) in Image.OPEN.items()
        if name not in ours and accept is not None and accept(prefix)
    ]
    if names:
        return ImageError(
            "unsupported_format",
            f"The file is in {names[0]} format, which the studio does not take; "
            f"save it as {_format_words()}.",
        )
    return ImageError(
        "not_an_image", f"The file is not an image the studio can read; it takes {_format_words()}."
    )


def _corrupt() -> ImageError:
    return ImageError(
        "corrupt", "The image file is damaged and cannot be decoded; export it again."
    )


def _too_large(max_bytes: int, size_bytes: int) -> ImageError:
    return ImageError(
        "too_large",
        f"The file is {_megabytes(size_bytes)}, over the {_megabytes(max_bytes)} limit; "
        "pick a smaller one.",
    )


def _megabytes(size_bytes: int) -> str:
    return f"{math.ceil(size_bytes / (1024 * 1024))} MB"


def _pil_format(im: ImageFile.ImageFile) -> str:
    # A JPEG with a multi-picture extension (many phones) reports "MPO"; its first image is a JPEG.
    return "JPEG" if im.format == "MPO" else str(im.format)


def _orientation(im: Image.Image, data: bytes | None = None) -> int:
    if data is not None and im.format == "PNG" and "exif" not in im.info:
        # Pillow decodes every pixel of a PNG to read an eXIf chunk after the image data (an
        # 80-megapixel PNG of 250 KB: 0.8 s and 329 MB for each look at its header, outside
        # every lane: review 41 F2); the chunk (or EXIF kept as text) is found by walking the
        # chunks' lengths, and read on its own.
        exif = Image.Exif()
        found = _png_exif(data)
        if found is not None:
            with contextlib.suppress(Exception):  # (a damaged one says nothing)
                exif.load(found)
    else:
        exif = im.getexif()
    value = exif.get(_ORIENTATION_TAG, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _png_exif(data: bytes) -> bytes | None:
    """The EXIF data of the PNG `data` as Pillow reads it: its eXIf chunk, else EXIF kept as
    text (None: neither)."""
    text = None
    for kind, at, length in _png_walk(data):
        if kind == b"eXIf":
            return data[at : at + length]
        if text is None and _is_exif_text(data, kind, at):
            text = _png_text_exif(kind, data[at : at + length]) or None
    return text


def _upright_size(im: Image.Image, data: bytes | None = None) -> tuple[int, int]:
    width, height = im.size
    if im.format == "TIFF":  # (Pillow gives a TIFF's size upright, and turns it as it loads)
        return width, height
    return (height, width) if _orientation(im, data) in (5, 6, 7, 8) else (width, height)


def _can_pass_through(im: ImageFile.ImageFile, data: bytes, kind: str, max_side: int) -> bool:
    if kind not in _UPLOAD_MODES or im.mode not in _UPLOAD_MODES[kind]:
        return False
    # A 16-bit PNG also opens as "RGB"/"RGBA"; byte 24 is the IHDR bit depth (PNG spec 11.2.2).
    if kind == "png" and data[24] != 8:
        return False
    return max(im.size) <= max_side and _orientation(im, data) == 1


# What an upload that goes as it is leaves behind: where a photo was taken, the camera, its
# captions (EXIF, XMP, Photoshop's IPTC, comments, PNG texts). RunAPI is sent pixels, not them.
# The studio's own mark on what a model made (`provenance.xmp_packet`, which names nothing of
# anyone's) stays: a result chained on goes up exactly as it came back.
_JPEG_METADATA = frozenset((0xE1, 0xED, 0xFE))
_PNG_METADATA = frozenset((b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"))
_OWN_MARK = b'xmp:CreatorTool="Kontext Studio">'


def _is_metadata(part: bytes, kind: bytes | int) -> bool:
    """Whether a PNG chunk or JPEG segment (`part`, whole) of type `kind` is metadata to leave
    behind."""
    if kind not in _PNG_METADATA and kind not in _JPEG_METADATA:
        return False
    return _OWN_MARK not in part


def _without_metadata(data: bytes, kind: str) -> bytes | None:
    """`data` (a JPEG or PNG going up as it is) without its metadata segments or chunks, every
    other byte as it was (colour profile, pixels); None if its parts are not as expected (it is
    then converted, which keeps none)."""
    if kind == "png":
        out = [data[:8]]
        for chunk, at, length in _png_walk(data):
            if not _is_metadata(part := data[at - 8 : at + length + 4], chunk):
                out.append(part)
            if chunk == b"IEND":
                return _joined(data, out)
        return None
    out, at = [data[:2]], 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xDA:  # the first scan: the rest is the image
            out.append(data[at:])
            return _joined(data, out)
        if marker in _JPEG_BARE or marker in (0x00, 0xFF) or marker not in _JPEG_MARKERS:
            return None
        end = at + 2 + int.from_bytes(data[at + 2 : at + 4], "big")
        if not _is_metadata(part := data[at:end], marker):
            out.append(part)
        at = end
    return None


def _joined(data: bytes, parts: list[bytes]) -> bytes:
    """`parts` of `data` joined: `data` itself when none was left out (no copy)."""
    return data if sum(map(len, parts)) == len(data) else b"".join(parts)


def _decode_upright(im: ImageFile.ImageFile, max_side: int) -> Image.Image:
    """Decode the first frame small (draft for JPEG), upright, in RGB or RGBA."""
    scale = min(1.0, max_side / max(im.size))
    target = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    if im.format in ("JPEG", "MPO"):
        im.draft("RGB" if im.mode == "RGB" else None, target)
    im.load()
    mode = "RGBA" if im.has_transparency_data else "RGB"
    out: Image.Image = im
    if out.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        # 16-bit grey: convert("L") would clip everything above 255 to white, so scale first.
        out = out.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    if out.mode not in _RESAMPLE_MODES or "transparency" in out.info:
        out = out.convert(mode)  # palettes and 1-bit resample badly; convert while still small
    if max(out.size) > max_side:
        out.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    if out.mode != mode:
        out = out.convert(mode)
    if _orientation(out) != 1:
        out = ImageOps.exif_transpose(out)
    out.info.pop("exif", None)
    return out


def _encode(im: Image.Image, pil_format: str, icc: bytes | None, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    options: dict[str, object] = {"icc_profile": icc} if icc else {}
    if pil_format == "JPEG":
        # 4:4:4 chroma: at quality 95 the default 4:2:0 would still soften coloured edges.
        options.update(quality=quality, subsampling=0)
    im.save(buffer, pil_format, **options)
    return buffer.getvalue()


def _upload(data: bytes, kind: str, width: int, height: int) -> UploadImage:
    extension = "png" if kind == "png" else "jpg"
    return UploadImage(
        data=data,
        file_name=f"source.{extension}",
        mime_type=f"image/{kind}",
        width=width,
        height=height,
    )
