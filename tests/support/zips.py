"""ZIP files built by hand, for import attacks: rewritten exports, bombs and lying headers."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

_CHUNK = b" " * (1 << 20)


def rewrite_export(data: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    """The export `data` with its session.json changed in place by `change`; images kept."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    document = json.loads(files["session.json"])
    change(document)
    files["session.json"] = json.dumps(document).encode()
    return build_zip(files)


def build_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, body in files.items():
            archive.writestr(name, body)
    return buffer.getvalue()


def bomb(name: str, size_mib: int, *, declared_size: int | None = None) -> bytes:
    """A ZIP whose one entry inflates to `size_mib` MiB of spaces from about 1 KB per MiB.

    `declared_size` makes the headers lie about the inflated size (default: the truth).
    """
    # A full flush resets the compressor, so every 1 MiB block after it compresses to the same
    # bytes: one block, repeated, is a valid deflate stream of any length (fast to build).
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(_CHUNK) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(_CHUNK) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert again == block
    deflated = block * size_mib + compressor.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(size_mib):
        crc = zlib.crc32(_CHUNK, crc)
    size = size_mib << 20 if declared_size is None else declared_size
    return _one_entry_zip(name.encode(), deflated, crc, size)


def _one_entry_zip(name: bytes, deflated: bytes, crc: int, size: int) -> bytes:
    # APPNOTE 4.3.7 (local header), 4.3.12 (central directory), 4.3.16 (end record); method 8.
    common = struct.pack("<HHHHHIII", 20, 0, 8, 0, 0x21, crc, len(deflated), size)
    local = b"PK\x03\x04" + common + struct.pack("<HH", len(name), 0) + name
    central = (
        b"PK\x01\x02"
        + struct.pack("<H", 20)
        + common
        + struct.pack("<HHHHHII", len(name), 0, 0, 0, 0, 0, 0)
        + name
    )
    offset = len(local) + len(deflated)
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 1, 1, len(central), offset, 0)
    return local + deflated + central + end
