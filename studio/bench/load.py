"""Load: many edits at once through the running studio (`gradio_client`), and idle pages.

The studio runs as its own process (`kontext-studio`, pointed at this process's simulator), so
its memory is its own. Imports `gradio_client` and, for idle pages, Playwright (lazily).
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.bench.poll import profile
from studio.bench.rig import StudioProcess, memory_kb, photo, summary
from studio.simulator import Simulator

CHROMIUM = "/usr/bin/chromium"
# Seconds an idle page is left alone before its memory is read (its load event has run).
IDLE_SETTLE_S = 3.0
PAGE_TIMEOUT_MS = 30_000


def studio_env(sim: Simulator) -> dict[str, str]:
    return {"RUNAPI_API_KEY": sim.api_key, "RUNAPI_BASE_URL": sim.base_url}


def run_load(
    sim: Simulator,
    *,
    edits: int,
    pages: int,
    task_s: float,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """`edits` edits submitted at once through `/edit_image`, after a few to learn from."""
    from gradio_client import Client

    sim.latency = profile(task_s, task_s)
    with tempfile.TemporaryDirectory(prefix="kontext-bench-") as tmp:
        source = Path(tmp) / "source.png"
        source.write_bytes(photo(640, 480))
        studio = StudioProcess(Path(tmp) / "home", env=studio_env(sim))
        start_s = studio.start()
        try:
            client = Client(
                studio.url, verbose=False, max_workers=edits, download_files=str(Path(tmp) / "dl")
            )
            say(f"  load: studio up in {start_s:.1f} s; 4 edits to learn from")
            for n in range(4):
                client.predict(
                    str(source),
                    f"warm {n}",
                    "pro",
                    "match",
                    "",
                    api_name="/edit_image",
                )
            idle = idle_pages(studio, pages, say) if pages else {"pages": 0}
            say(f"  load: {edits} edits at once")
            rss_before = memory_kb(studio.pid)
            done: dict[int, float] = {}
            failed: list[str] = []
            lock = threading.Lock()
            started = time.monotonic()
            jobs = []
            for n in range(edits):
                job = client.submit(
                    str(source),
                    f"load {n}",
                    "pro",
                    "match",
                    "",
                    api_name="/edit_image",
                )

                def finished(future: Any, n: int = n) -> None:
                    with lock:
                        done[n] = time.monotonic()
                        if future.exception() is not None:
                            failed.append(str(future.exception()))

                job.add_done_callback(finished)
                jobs.append(job)
            for job in jobs:
                job.exception(timeout=600)
            while len(done) < edits:  # callbacks run just after the result is set
                time.sleep(0.01)
            overheads = [done[n] - started - task_s for n in range(edits)]
            peak_kb = memory_kb(studio.pid, "VmHWM")
            client.close()
        finally:
            studio.stop()
    return {
        "edits": edits,
        "task_s": task_s,
        "failed": len(failed),
        "errors": sorted(set(failed))[:5],
        "overhead_s": summary(overheads),
        "rss_before_mb": rss_before / 1024,
        "peak_rss_mb": peak_kb / 1024,
        "idle": idle,
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
