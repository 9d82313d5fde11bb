"""One edit per new process: `kontext-studio edit` beside a script on the official SDK.

What a script or an agent pays per call (the Hermes plugin runs the CLI once per image): each
side starts Python, uploads a one-megapixel source, waits for the task and writes the result
to a file. The studio's runs share one data directory that starts empty, so the first edits
run on the prior and the later ones on what the earlier processes stored. Imports the stdlib
and the simulator's type only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.bench.poll import SDK_MISSING, profile
from studio.bench.rig import photo, summary, user_environ
from studio.simulator import Simulator

# About one megapixel, as the CLI target asks.
SOURCE_SIZE = (1152, 864)
_SDK_SCRIPT = r"""
import base64, sys, httpx
from runapi.flux_kontext import FluxKontextClient
base_url, key, model, source, out = sys.argv[1:6]
sdk = FluxKontextClient(api_key=key, base_url=base_url)
data = open(source, "rb").read()
url = sdk.files.create(source=base64.b64encode(data).decode(), file_name="in.png").url
result = sdk.text_to_image.run(
    model=model, prompt="make it night", source_image_url=url, aspect_ratio="4:3",
    output_format="png",
)
open(out, "wb").write(httpx.get(result.images[0].url, timeout=60).content)
"""


def run_processes(
    sim: Simulator, *, task_s: float, runs: int, model: str, say: Callable[[str], None]
) -> dict[str, Any]:
    """`runs` edits by each side as new processes, in turn; walls, and the CLI's own overhead
    (its wall beyond the step's elapsed time, which the step records from queued to stored)."""
    try:
        import runapi.flux_kontext  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(SDK_MISSING) from exc
    sim.latency = profile(task_s, task_s)
    studio_walls, sdk_walls, overheads = [], [], []
    with tempfile.TemporaryDirectory(prefix="kontext-bench-") as tmp:
        folder = Path(tmp)
        source = folder / "source.png"
        source.write_bytes(photo(*SOURCE_SIZE))
        env = {
            **user_environ(),
            "KONTEXT_STUDIO_HOME": str(folder / "home"),
            "RUNAPI_API_KEY": sim.api_key,
            "RUNAPI_BASE_URL": sim.base_url,
            "GRADIO_ANALYTICS_ENABLED": "False",
        }
        say(f"  processes: {runs} CLI edits and {runs} SDK scripts, {task_s:g} s tasks")
        for n in range(runs):
            cli = [sys.executable, "-m", "studio.cli", "edit", str(source), "make it night"]
            cli += ["--model", model, "-o", str(folder / f"cli-{n}.png"), "--json", "-q"]
            wall, out = _timed(cli, env)
            studio_walls.append(wall)
            overheads.append(wall - float(json.loads(out)["seconds"]))
            sdk = [sys.executable, "-c", _SDK_SCRIPT, sim.base_url, sim.api_key]
            sdk += [f"flux-kontext-{model}", str(source), str(folder / f"sdk-{n}.png")]
            sdk_walls.append(_timed(sdk, env)[0])
    return {
        "model": model,
        "task_s": task_s,
        "source": list(SOURCE_SIZE),
        "studio_wall_s": studio_walls,
        "sdk_wall_s": sdk_walls,
        "ratio": [a / b for a, b in zip(studio_walls, sdk_walls, strict=True)],
        "cli_overhead_s": summary(overheads),
        "cli_overheads_s": overheads,
    }


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"a bench process failed: {done.stderr.strip()[-300:]}")
    return wall, done.stdout
