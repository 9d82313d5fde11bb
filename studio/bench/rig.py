"""What every benchmark needs: a source image, the studio as a child process, memory, summaries.

Imports the stdlib, httpx and Pillow only.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

# Seconds to wait for a studio child to answer its first page.
STUDIO_START_TIMEOUT_S = 180.0


# The start of a child process that measures its own peak memory: `kb("VmHWM")` after
# `reset_peak()` is the peak since the reset (Linux's /proc).
PEAK_PRELUDE = r"""
from pathlib import Path

def kb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0

def reset_peak():
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
"""


def median_child(script: str, argument: str, *, rounds: int, key: str) -> dict[str, Any]:
    """Run `script` (which prints one JSON object) `rounds` times in fresh processes; the run
    whose `key` is the median, with every run's `key` under `<key>_all` and its peak memory
    over the base as `peak_over_base_mb`."""
    runs = []
    for _ in range(rounds):
        out = subprocess.run(
            [sys.executable, "-c", script, argument], capture_output=True, text=True, check=True
        )
        runs.append(json.loads(out.stdout))
    runs.sort(key=lambda run: run[key])
    median: dict[str, Any] = runs[len(runs) // 2]
    return {
        **median,
        "peak_over_base_mb": median["peak_mb"] - median["base_mb"],
        f"{key}_all": [run[key] for run in runs],
    }


def photo(width: int = 640, height: int = 480, fmt: str = "PNG", **options: Any) -> bytes:
    """A photo-like image (gradients and noise): it compresses like a photo, not a flat fill."""
    size = (width, height)
    bands = (
        Image.linear_gradient("L").resize(size),
        Image.radial_gradient("L").resize(size),
        Image.effect_noise(size, 40),
    )
    out = io.BytesIO()
    Image.merge("RGB", bands).save(out, format=fmt, **options)
    return out.getvalue()


def scene(width: int = 800, height: int = 600, *, seed: int = 7, fmt: str = "PNG") -> bytes:
    """A photo-like scene with things in it: soft gradients, a few dozen coloured shapes with
    hard edges and a little sensor noise (what registration and "what changed" work on); the
    same bytes for the same arguments."""
    import numpy as np
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [90 + 80 * x / width, 70 + 100 * y / height, 160 - 60 * (x + y) / (width + height)],
        axis=2,
    )
    del x, y
    im = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    del base
    draw = ImageDraw.Draw(im)
    for _ in range(40):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        w = int(rng.integers(width // 30, width // 8))
        h = int(rng.integers(height // 30, height // 8))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.integers(0, 2):
            draw.ellipse((x0, y0, x0 + w, y0 + h), fill=colour)
        else:
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=colour)
    pixels = np.asarray(im).astype(np.int16)
    pixels += rng.normal(0, 4, pixels.shape).astype(np.int16)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, format=fmt)
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, 95th percentile and range of `values` (empty: all NaN)."""
    if not values:
        return {
            "median": float("nan"),
            "p95": float("nan"),
            "min": float("nan"),
            "max": float("nan"),
        }
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "median": statistics.median(ordered),
        "p95": p95,
        "min": ordered[0],
        "max": ordered[-1],
    }


def user_environ() -> dict[str, str]:
    """This environment as a user's shell has it: Python caches compiled modules. (A machine
    that sets PYTHONDONTWRITEBYTECODE makes every start compile our modules again, which no
    installed studio does: pip compiles them, and Python keeps what it compiles.)"""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def machine() -> dict[str, Any]:
    """What the numbers ran on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }


def memory_kb(pid: int, field: str = "VmRSS") -> int:
    """A field of /proc/PID/status in kB (VmRSS now, VmHWM the peak); 0 where unreadable."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return 0


class StudioProcess:
    """`kontext-studio` (the browser studio) as a child process on a free loopback port.

    Args:
        home: Its data directory.
        env: Extra environment (for example RUNAPI_BASE_URL and RUNAPI_API_KEY of a simulator).
        args: Extra command-line arguments, before none (the studio is the default command).
    """

    def __init__(
        self, home: Path, env: Mapping[str, str] | None = None, args: Sequence[str] = ()
    ) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self._env = {
            **user_environ(),
            "KONTEXT_STUDIO_HOME": str(home),
            "GRADIO_ANALYTICS_ENABLED": "False",
            "GRADIO_TEMP_DIR": str(home / "gradio-tmp"),
            **(env or {}),
        }
        self._args = [*args]
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = home / "studio.log"

    def start(self, *, python_args: Sequence[str] = ()) -> float:
        """Start the studio and wait until its page answers; the seconds that took."""
        self.home.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, *python_args, "-m", "studio.cli", "--port", str(self.port)]
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*command, *self._args], env=self._env, stdout=log, stderr=log
            )
        self.wait_until_answers(started)
        return time.monotonic() - started

    def wait_until_answers(self, started: float) -> None:
        deadline = started + STUDIO_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the studio exited early; see {self.log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url, timeout=2.0).status_code == 200:
                    return
            time.sleep(0.02)
        raise RuntimeError(f"the studio did not answer within {STUDIO_START_TIMEOUT_S:g} s")

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as in a crash or an OOM kill."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        """Ctrl+C, then SIGKILL if it does not stop within 20 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()
