"""The XMP mark of a PNG: the same bytes as the chunk-by-chunk copy it replaced, for PNGs with
and without XMP, with chunks before and after IHDR, and for bytes that are not whole PNGs."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image, PngImagePlugin

from studio.provenance import PNG_XMP_KEY, mark, xmp_packet

SIGNATURE = b"\x89PNG\r\n\x1a\n"
PACKET = xmp_packet("FLUX.1 Kontext [pro]")


def reference_png_with_xmp(data: bytes, packet: bytes) -> bytes:
    """The mark as it was written before (each kept chunk copied into a growing buffer)."""
    body = PNG_XMP_KEY.encode() + b"\x00\x00\x00\x00\x00" + packet
    chunk = struct.pack(">I", len(body)) + b"iTXt" + body
    chunk += struct.pack(">I", zlib.crc32(b"iTXt" + body) & 0xFFFFFFFF)
    out = bytearray(SIGNATURE)
    offset = len(SIGNATURE)
    while offset + 8 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        end = offset + 12 + length
        if end > len(data):
            return data
        whole = data[offset:end]
        is_xmp = kind == b"iTXt" and data.startswith(PNG_XMP_KEY.encode() + b"\x00", offset + 8)
        if not is_xmp:
            out += whole
        if kind == b"IHDR":
            out += chunk
        offset = end
        if kind == b"IEND":
            break
    return bytes(out)


def png(*, text: dict[str, str] | None = None, xmp: str | None = None, size: int = 64) -> bytes:
    image = Image.effect_noise((size, size), 40).convert("RGB")
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    if xmp is not None:
        info.add_itxt(PNG_XMP_KEY, xmp)
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def with_chunk_after_ihdr(data: bytes, extra: bytes) -> bytes:
    return data[:33] + extra + data[33:]


XMP_CHUNK = chunk(b"iTXt", PNG_XMP_KEY.encode() + b"\x00\x00\x00\x00\x00<old packet/>")

CASES = [
    pytest.param(png(), id="no-xmp"),
    pytest.param(png(size=700), id="many-idat-chunks"),
    pytest.param(png(text={"Comment": "load 7"}), id="a-text-chunk"),
    pytest.param(png(xmp="<x:xmpmeta>earlier</x:xmpmeta>"), id="an-earlier-xmp"),
    pytest.param(with_chunk_after_ihdr(png(), XMP_CHUNK), id="xmp-right-after-ihdr"),
    pytest.param(
        with_chunk_after_ihdr(png(), XMP_CHUNK + chunk(b"iTXt", b"Other\x00\x00\x00\x00\x00hi")),
        id="xmp-and-another-itxt",
    ),
    pytest.param(with_chunk_after_ihdr(png(), XMP_CHUNK + XMP_CHUNK), id="two-xmp-chunks-in-a-row"),
    pytest.param(png() + b"trailing bytes after IEND", id="bytes-after-iend"),
    pytest.param(png()[:-12] + b"\x00\x00", id="no-iend-and-a-short-tail"),
    pytest.param(png()[:-12], id="no-iend"),
    pytest.param(png()[:-20], id="truncated"),
    pytest.param(SIGNATURE, id="signature-only"),
    pytest.param(SIGNATURE + chunk(b"IEND", b""), id="no-ihdr"),
]


@pytest.mark.parametrize("data", CASES)
def test_the_png_mark_is_byte_identical_to_the_chunk_by_chunk_copy_when_given(data):
    assert mark(data, "png", PACKET) == reference_png_with_xmp(data, PACKET)


def test_a_marked_png_carries_the_packet_once_and_its_pixels_unchanged():
    data = png(xmp="<x:xmpmeta>earlier</x:xmpmeta>", size=300)
    marked = mark(data, "png", PACKET)
    with Image.open(io.BytesIO(marked)) as after, Image.open(io.BytesIO(data)) as before:
        assert after.info[PNG_XMP_KEY] == PACKET.decode()
        assert after.tobytes() == before.tobytes()
    assert marked.count(PNG_XMP_KEY.encode()) == 1
