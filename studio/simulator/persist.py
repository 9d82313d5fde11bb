"""The simulator's optional disk state: a JSON document and content-addressed blobs, atomically.

Imports the stdlib only; `tasks` decides what goes in the document.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

STATE_FILE = "simulator.json"
BLOB_DIR = "blobs"


def blob_name(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save(state_dir: Path, doc: dict[str, Any], blobs: list[bytes]) -> None:
    """Write the blobs not yet on disk, then the document, each to a temporary name and renamed."""
    blob_dir = state_dir / BLOB_DIR
    blob_dir.mkdir(parents=True, exist_ok=True)
    for data in blobs:
        path = blob_dir / blob_name(data)
        if not path.exists():
            _write_atomic(path, data)
    _write_atomic(state_dir / STATE_FILE, json.dumps(doc, indent=1).encode())


def load(state_dir: Path) -> dict[str, Any] | None:
    """The saved document, or None when nothing was saved yet."""
    try:
        doc: dict[str, Any] = json.loads((state_dir / STATE_FILE).read_bytes())
    except FileNotFoundError:
        return None
    return doc


def read_blob(state_dir: Path, name: str) -> bytes:
    return (state_dir / BLOB_DIR / name).read_bytes()


def _write_atomic(path: Path, data: bytes) -> None:
    # A crash mid-write leaves the old file whole: write beside it, flush, then rename over it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
