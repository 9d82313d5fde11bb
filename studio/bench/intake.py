"""Intake: the time and peak memory to accept a 24-megapixel JPEG and prepare it for upload.

Measured in a child process, so the peak (VmHWM) belongs to this work alone: the child imports
what it needs, reads the file, resets its peak, then runs what the engine runs on an upload.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from studio.bench.rig import PEAK_PRELUDE, median_child, photo

# 6000 x 4000: a 24-megapixel camera's photo.
SIZE = (6000, 4000)
_CHILD = (
    PEAK_PRELUDE
    + r"""
import json, sys, time
from studio.images import open_source, prepare_upload

data = Path(sys.argv[1]).read_bytes()
reset_peak()
base = kb("VmRSS")
started = time.perf_counter()
image = open_source(data)  # the engine's read_image: checks, orientation, mode
opened = time.perf_counter()
prepared = prepare_upload(image)  # downscaled to 2048 px on the long side, encoded
done = time.perf_counter()
print(json.dumps({
    "accept_s": opened - started, "prepare_s": done - opened, "total_s": done - started,
    "base_mb": base / 1024, "peak_mb": kb("VmHWM") / 1024,
    "upload_bytes": len(prepared.data), "upload_size": [prepared.width, prepared.height],
}))
"""
)


def run_intake(rounds: int = 3) -> dict[str, Any]:
    """The median of `rounds` child runs (the file is made once, a photo-like JPEG)."""
    with tempfile.TemporaryDirectory(prefix="kontext-bench-") as tmp:
        path = Path(tmp) / "24mp.jpg"
        path.write_bytes(photo(*SIZE, fmt="JPEG", quality=90))
        median = median_child(_CHILD, str(path), rounds=rounds, key="total_s")
        size_mb = path.stat().st_size / 1e6
    return {"megapixels": SIZE[0] * SIZE[1] / 1e6, "file_mb": size_mb, **median}
