"""Load: many edits at once through the running studio, and idle pages.

Three processes besides the bench: the studio (`kontext-studio`), the simulator, and a light
client that sends every edit at once over raw HTTP (`parties`); so the studio's CPU is its own,
and neither the stand-in nor the client competes for its interpreter. Imports Playwright lazily
(idle pages).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from studio.bench.coldstart import BareGradio
from studio.bench.parties import Party, cpu_seconds, run_client
from studio.bench.rig import StudioProcess, memory_kb, photo, summary

CHROMIUM = "/usr/bin/chromium"
# Seconds an idle page is left alone before its memory is read (its load event has run).
IDLE_SETTLE_S = 3.0
PAGE_TIMEOUT_MS = 30_000
# Edits, one at a time, the studio learns its poll schedule from before the load.
LOAD_WARMUP = 4
BENCH_KEY = "sk-bench"


# Gradio's own floor beside the studio: an `/edit_image` with the studio's eight inputs and two
# outputs that waits the task's time and answers a PNG path and a JSON text, served as the
# studio serves (no concurrency limit, the same thread cap), so the same client measures what
# Gradio alone costs an edit.
BARE_EDIT = r"""
import asyncio, sys
from pathlib import Path
import gradio as gr
port, task_s, result = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
async def edit_image(image, instruction, model, ratio, session_id, mask, box, keep_rest):
    await asyncio.sleep(task_s)
    return result, '{"state": "completed"}'
with gr.Blocks(analytics_enabled=False) as demo:
    inputs = [gr.Textbox(visible=False) for _ in range(7)] + [gr.Checkbox(visible=False)]
    outputs = [gr.Image(type="filepath", visible=False), gr.Textbox(visible=False)]
    gr.Button(visible=False).click(
        edit_image, inputs, outputs, api_name="edit_image", concurrency_limit=None
    )
demo.launch(
    server_name="127.0.0.1", server_port=port, quiet=True, max_threads=100,
    allowed_paths=[str(Path(result).parent)],
)
"""


class BareEndpoint(BareGradio):
    """`BARE_EDIT` as a child process: what Gradio alone spends on an edit through the API."""

    def __init__(self, home: Path, task_s: float) -> None:
        super().__init__(home)
        self._task_s = task_s

    def start(self, *, python_args: Sequence[str] = ()) -> float:
        self.home.mkdir(parents=True, exist_ok=True)
        result = self.home / "result.png"
        result.write_bytes(photo(1024, 1024))
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    *python_args,
                    "-c",
                    BARE_EDIT,
                    str(self.port),
                    str(self._task_s),
                    str(result),
                ],
                env=self._env,
                stdout=log,
                stderr=log,
            )
        self.wait_until_answers(started)
        return time.monotonic() - started


def run_load(
    *,
    sizes: Sequence[int],
    pages: int,
    task_s: float,
    say: Callable[[str], None],
    warmup: int = LOAD_WARMUP,
) -> dict[str, Any]:
    """For each of `sizes`, that many edits sent at once through `/edit_image`, after `warmup`
    one at a time to learn from; then idle pages. One studio, one simulator for the whole row."""
    with tempfile.TemporaryDirectory(prefix="kontext-bench-") as tmp:
        source = Path(tmp) / "source.png"
        source.write_bytes(photo(640, 480))
        sim = Party("sim", str(task_s))
        base_url = sim.start()
        studio = StudioProcess(
            Path(tmp) / "home", env={"RUNAPI_API_KEY": BENCH_KEY, "RUNAPI_BASE_URL": base_url}
        )
        try:
            start_s = studio.start()
            say(f"  load: studio up in {start_s:.1f} s; {warmup} edits to learn from")
            for _ in range(warmup):
                run_client(studio.url, 1, source)
            bare = BareEndpoint(Path(tmp) / "bare", task_s)
            bare.start()
            rows, bare_rows = [], []
            try:
                for edits in sizes:
                    say(f"  load: {edits} edits at once, then as many to a bare Gradio endpoint")
                    rows.append(_burst(studio, sim, source, edits, task_s))
                    bare_rows.append(_burst(bare, sim, source, edits, task_s))
            finally:
                bare.stop()
            idle = idle_pages(studio, pages, say) if pages else {"pages": 0}
        finally:
            studio.stop()
            sim.stop()
    return {
        "task_s": task_s,
        "start_s": start_s,
        "rows": rows,
        "bare_rows": bare_rows,
        "idle": idle,
    }


def _burst(
    studio: StudioProcess, sim: Party, source: Path, edits: int, task_s: float
) -> dict[str, Any]:
    rss_before = memory_kb(studio.pid)
    studio_cpu, sim_cpu = cpu_seconds(studio.pid), cpu_seconds(sim.pid)
    client_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    results = run_client(studio.url, edits, source)
    wall_s = time.monotonic() - started
    client_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    studio_cpu = cpu_seconds(studio.pid) - studio_cpu
    cpus = os.cpu_count() or 1
    failed = [outcome for _, outcome in results if outcome != "ok"]
    per_edit_s = studio_cpu / edits
    return {
        "edits": edits,
        "failed": len(failed),
        "errors": sorted(set(failed))[:5],
        "overhead_s": summary([end - task_s for end, outcome in results if outcome == "ok"]),
        "wall_s": wall_s,
        "studio_cpu_per_edit_s": per_edit_s,
        # The studio's own work alone, spread over every core, leaves no shorter wait than this.
        "studio_floor_s": per_edit_s * edits / cpus,
        "simulator_cpu_per_edit_s": (cpu_seconds(sim.pid) - sim_cpu) / edits,
        "client_cpu_per_edit_s": (
            client_after.ru_utime
            + client_after.ru_stime
            - client_before.ru_utime
            - client_before.ru_stime
        )
        / edits,
        "rss_before_mb": rss_before / 1024,
        "peak_rss_mb": memory_kb(studio.pid, "VmHWM") / 1024,
        "load_average": os.getloadavg()[0],
    }


def idle_pages(studio: StudioProcess, pages: int, say: Callable[[str], None]) -> dict[str, Any]:
    """Open `pages` real pages in headless Chromium, let them idle, and read the studio's memory.

    Each page loads the app, runs its load event and keeps Gradio's heartbeat open, as a
    visitor's idle tab does. Needs Playwright (the test extra) and Chromium.
    """
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"pages": 0, "skipped": "Playwright is not installed (pip install -e '.[test]')"}
    if not Path(CHROMIUM).exists():
        return {"pages": 0, "skipped": f"no Chromium at {CHROMIUM}"}
    say(f"  load: {pages} idle pages in Chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            context = browser.new_context()
            warm = context.new_page()  # the first page pays for caches every page shares
            warm.goto(studio.url)
            warm.wait_for_selector("textarea", state="attached", timeout=PAGE_TIMEOUT_MS)
            time.sleep(IDLE_SETTLE_S)
            before = memory_kb(studio.pid)
            opened = 0
            for _ in range(pages):
                page = context.new_page()
                try:
                    page.goto(studio.url)
                    page.wait_for_selector("textarea", state="attached", timeout=PAGE_TIMEOUT_MS)
                except PlaywrightError:
                    break  # a machine too busy to open more: report those that did open
                opened += 1
            time.sleep(IDLE_SETTLE_S)
            after = memory_kb(studio.pid)
        finally:
            browser.close()
    return {
        "pages": opened,
        "rss_before_mb": before / 1024,
        "rss_after_mb": after / 1024,
        "per_page_kb": (after - before) / max(1, opened),
    }
