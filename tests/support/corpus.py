"""The bad and awkward image corpus, built in memory at test time (nothing binary is committed).

Each `Case` carries its bytes and what `open_source` and `prepare_upload` should make of them.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from PIL import Image

from studio.images import MAX_SOURCE_BYTES


@dataclass(frozen=True)
class Case:
    """One corpus file. `reason` set: rejected with it. Otherwise accepted as `format` and `size`.

    `upload` is "same" when the bytes must go up unchanged, else the re-encoded format;
    `upload_size` is the uploaded image's size.
    """

    name: str
    data: bytes
    reason: str | None = None
    format: str | None = None
    size: tuple[int, int] | None = None
    upload: str | None = None
    upload_size: tuple[int, int] | None = None


def encode(im: Image.Image, pil_format: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, pil_format, **options)
    return buffer.getvalue()


def photo(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A smooth colour image (gradients compress like photos, unlike noise); RGBA fades out."""
    red = Image.linear_gradient("L").resize(size)
    green = Image.linear_gradient("L").rotate(90).resize(size)
    blue = Image.new("L", size, 128)
    if mode == "RGBA":
        return Image.merge("RGBA", (red, green, blue, green))
    return Image.merge("RGB", (red, green, blue)).convert(mode)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def crafted_png(width: int, height: int, *, bit_depth: int, color_type: int, rows: bytes) -> bytes:
    """A PNG written by hand, so the header can declare what the pixels do not back up."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def png_bomb() -> bytes:
    """100000 x 100000 declared in a file of a few dozen bytes."""
    return crafted_png(100_000, 100_000, bit_depth=8, color_type=2, rows=b"\x00" * 301)


def jpeg_bomb() -> bytes:
    """A small JPEG whose frame header claims 60000 x 60000 pixels."""
    data = bytearray(encode(photo((16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)
    return bytes(data)


def png16_rgb(width: int = 8, height: int = 4) -> bytes:
    """16-bit RGB, which Pillow cannot write: every channel 0x8000 (mid grey)."""
    row = b"\x00" + b"\x80\x00" * 3 * width
    return crafted_png(width, height, bit_depth=16, color_type=2, rows=row * height)


def png16_grey(size: tuple[int, int] = (8, 4), value: int = 32768) -> bytes:
    return encode(Image.new("I;16", size, value), "PNG")


def rotated_jpeg(size: tuple[int, int] = (64, 48), orientation: int = 6) -> bytes:
    im = photo(size)
    im.paste((255, 0, 0), (0, 0, 8, 8))  # a red corner, to check which way it turned
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(im, "JPEG", exif=exif.tobytes(), quality=95)


def transparent_gif() -> bytes:
    im = Image.new("P", (20, 10), 1)
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    im.paste(0, (0, 0, 10, 10))
    return encode(im, "GIF", transparency=0)


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (30, 20), colour) for colour in ("red", "lime", "blue")]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


def with_middle_damaged(data: bytes, length: int = 64) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(length) + data[middle + length :]


def bad_cases() -> list[Case]:
    png = encode(photo((300, 200)).rotate(7), "PNG")  # rotated: gradients alone compress too well
    jpeg = encode(photo((300, 200)), "JPEG")
    return [
        Case("text", b"Dear user,\nthis is a letter, not a picture.\n" * 4, reason="not_an_image"),
        Case("empty", b"", reason="empty"),
        Case("random-bytes", bytes(range(256)) * 4, reason="not_an_image"),
        Case("truncated-png", png[: len(png) // 2], reason="truncated"),
        Case("truncated-jpeg", jpeg[: len(jpeg) // 2], reason="truncated"),
        Case("corrupt-png-middle", with_middle_damaged(png), reason="corrupt"),
        Case("png-without-pixel-data", png[:33], reason="corrupt"),
        Case("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10"/>', reason="svg"),
        Case(
            "svg-with-xml-declaration",
            b'\xef\xbb\xbf<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
            reason="svg",
        ),
        Case(
            "html-named-png", b"<!DOCTYPE html>\n<html><body>Not found</body></html>", reason="html"
        ),
        Case("zero-width-png", crafted_png(0, 5, bit_depth=8, color_type=2, rows=b""), "corrupt"),
        Case("png-bomb", png_bomb(), reason="too_many_pixels"),
        Case("jpeg-bomb", jpeg_bomb(), reason="too_many_pixels"),
        Case("over-byte-cap", png + bytes(MAX_SOURCE_BYTES + 1 - len(png)), reason="too_large"),
        Case("psd", b"8BPS\x00\x01" + bytes(64), reason="unsupported_format"),
        Case("pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + bytes(64), reason="unsupported_format"),
        Case("ico", encode(photo((16, 16)), "ICO"), reason="unsupported_format"),
    ]


def good_cases() -> list[Case]:
    return [
        Case("rgb-jpeg", encode(photo((64, 48)), "JPEG"), None, "jpeg", (64, 48), "same", (64, 48)),
        Case("rgb-png", encode(photo((64, 48)), "PNG"), None, "png", (64, 48), "same", (64, 48)),
        Case("rgba-png", encode(photo((40, 40), "RGBA"), "PNG"), None, "png", (40, 40), "same"),
        Case(
            "one-pixel", encode(Image.new("RGB", (1, 1), "red"), "PNG"), None, "png", (1, 1), "same"
        ),
        Case(
            "cmyk-jpeg",
            encode(photo((64, 48), "CMYK"), "JPEG"),
            None,
            "jpeg",
            (64, 48),
            "jpeg",
            (64, 48),
        ),
        Case("png16-grey", png16_grey(), None, "png", (8, 4), "png", (8, 4)),
        Case("png16-rgb", png16_rgb(), None, "png", (8, 4), "png", (8, 4)),
        Case("exif-rotated-jpeg", rotated_jpeg(), None, "jpeg", (48, 64), "jpeg", (48, 64)),
        Case("palette-gif-transparent", transparent_gif(), None, "gif", (20, 10), "png", (20, 10)),
        Case("animated-gif", animated_gif(), None, "gif", (30, 20), "png", (30, 20)),
        Case(
            "strip-10000x100",
            encode(photo((10000, 100)), "PNG"),
            None,
            "png",
            (10000, 100),
            "png",
            (2048, 20),
        ),
        Case("big-jpeg", encode(photo((3000, 2000)), "JPEG"), None, "jpeg", (3000, 2000), "jpeg"),
        Case("greyscale-png", encode(photo((32, 32), "L"), "PNG"), None, "png", (32, 32), "png"),
        Case("palette-png", encode(photo((32, 32), "P"), "PNG"), None, "png", (32, 32), "png"),
        Case("bmp", encode(photo((32, 24)), "BMP"), None, "bmp", (32, 24), "png", (32, 24)),
        Case("tiff", encode(photo((32, 24)), "TIFF"), None, "tiff", (32, 24), "png", (32, 24)),
        Case("webp", encode(photo((32, 24)), "WEBP"), None, "webp", (32, 24), "jpeg", (32, 24)),
        Case("webp-alpha", encode(photo((32, 24), "RGBA"), "WEBP"), None, "webp", (32, 24), "png"),
        Case("heic", encode(photo((32, 24)), "HEIF"), None, "heic", (32, 24), "jpeg", (32, 24)),
        Case("avif", encode(photo((32, 24)), "AVIF"), None, "avif", (32, 24), "jpeg", (32, 24)),
    ]


def all_cases() -> list[Case]:
    return bad_cases() + good_cases()
