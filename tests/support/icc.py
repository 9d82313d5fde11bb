"""A Display P3 colour profile, as phones write into their photos (Pillow builds only sRGB)."""

from __future__ import annotations

import io
import struct

from PIL import ImageCms


def _s15(x: float) -> bytes:
    return struct.pack(">i", round(x * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + bytes(4) + _s15(x) + _s15(y) + _s15(z)


def _curve(gamma: float) -> bytes:
    return b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)


def _desc(text: str) -> bytes:
    ascii_ = text.encode() + b"\0"
    return b"desc" + bytes(4) + struct.pack(">I", len(ascii_)) + ascii_ + bytes(8 + 3 + 67)


def display_p3() -> bytes:
    """A v2 matrix/TRC RGB profile with Display P3's primaries (D50-adapted), gamma 2.2."""
    tags = [
        (b"desc", _desc("Display P3 (test)")),
        (b"cprt", b"text" + bytes(4) + b"none\0"),
        (b"wtpt", _xyz(0.964203, 1.0, 0.824905)),
        (b"rXYZ", _xyz(0.515121, 0.241196, -0.001053)),
        (b"gXYZ", _xyz(0.291977, 0.692245, 0.041885)),
        (b"bXYZ", _xyz(0.157104, 0.066574, 0.784073)),
        (b"rTRC", _curve(2.2)),
        (b"gTRC", _curve(2.2)),
        (b"bTRC", _curve(2.2)),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data = struct.pack(">I", len(tags)), b""
    for signature, body in tags:
        body += bytes(-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    header = struct.pack(">I", 128 + len(table) + len(data)) + b"none" + bytes([2, 0x10, 0, 0])
    header += b"mntrRGB XYZ " + struct.pack(">6H", 2024, 1, 1, 0, 0, 0) + b"acspAPPL"
    header += bytes(4 + 4 + 4 + 8 + 4) + _s15(0.9642) + _s15(1.0) + _s15(0.8249)
    profile = header + bytes(128 - len(header)) + table + data
    ImageCms.ImageCmsProfile(io.BytesIO(profile))  # (LittleCMS takes it)
    return profile


def srgb() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
