"""Intake: the time and peak memory to accept a 24-megapixel JPEG and prepare it for upload.

Measured in a child process, so the peak (VmHWM) belongs to this work alone: the child imports
what it needs, reads the file, resets its peak, then runs what the engine runs on an upload.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from studio.bench.rig import photo

# 6000 x 4000: a 24-megapixel camera's photo.
SIZE = (6000, 4000)
_CHILD = r"""
import json, sys, time
from pathlib import Path
from studio.images import open_source, prepare_upload

def kb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0

data = Path(sys.argv[1]).read_bytes()
Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
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


def run_intake(rounds: int = 3) -> dict[str, Any]:
    """The median of `rounds` child runs (the file is made once, a photo-like JPEG)."""
    with tempfile.TemporaryDirectory(prefix="kontext-bench-") as tmp:
        path = Path(tmp) / "24mp.jpg"
        path.write_bytes(photo(*SIZE, fmt="JPEG", quality=90))
        runs = []
        for _ in range(rounds):
            out = subprocess.run(
                [sys.executable, "-c", _CHILD, str(path)],
                capture_output=True,
                text=True,
                check=True,
            )
            runs.append(json.loads(out.stdout))
        size_mb = path.stat().st_size / 1e6
    runs.sort(key=lambda run: run["total_s"])
    median = runs[len(runs) // 2]
    return {
        "megapixels": SIZE[0] * SIZE[1] / 1e6,
        "file_mb": size_mb,
        **median,
        "peak_over_base_mb": median["peak_mb"] - median["base_mb"],
        "total_s_all": [run["total_s"] for run in runs],
    }
