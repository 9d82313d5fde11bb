"""Benchmark (prints numbers, asserts nothing): what open, idle pages cost a hosted studio.

    .venv/bin/python tests/bench/idle_pages.py [--pages 10] [--seconds 30] [--studio BIN ...]

Each page's timer ticks every 2 s while nothing runs, for as long as the page is open. (With
`--pages 0`: what a studio nobody visits costs.) For each
`--studio` (a `kontext-studio` executable, this checkout's by default; give two, e.g. another
worktree's, to compare side by side), this starts the simulator and a hosted studio on loopback,
opens `--pages` pages in headless Chromium (each its own visitor), waits until they are drawn,
and reads the studio process's CPU time over `--seconds` while they sit idle. The runs take
turns, twice each, so that a busy machine weighs on both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.async_api import async_playwright

TICK_S = 2.0
KEY = "sk-bench-0000"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _up(url: str, proc: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            if proc.returncode is not None:
                raise SystemExit(f"{url} exited ({proc.returncode})")
            try:
                if (await client.get(url)).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"{url} never answered")


async def one_run(studio: str, pages: int, seconds: float, home: Path) -> float:
    """The studio's CPU seconds over `seconds` with `pages` idle pages open."""
    sim_port, port = _port(), _port()
    quiet = {"stdout": asyncio.subprocess.DEVNULL, "stderr": asyncio.subprocess.DEVNULL}
    sim = await asyncio.create_subprocess_exec(
        studio, "simulate", "--port", str(sim_port), "--api-key", KEY, "--latency", "fast", **quiet
    )
    env = {
        **os.environ,
        "KONTEXT_STUDIO_HOSTED": "1",
        "RUNAPI_API_KEY": KEY,
        "RUNAPI_BASE_URL": f"http://127.0.0.1:{sim_port}",
        "KONTEXT_STUDIO_VISITOR_BUDGET_CENTS": "30",
        "KONTEXT_STUDIO_TOTAL_BUDGET_CENTS": "100",
        "KONTEXT_STUDIO_IDENTITIES_PER_HOUR": "500",
    }
    app = await asyncio.create_subprocess_exec(
        studio, "--home", str(home), "--port", str(port), env=env, **quiet
    )
    try:
        await _up(f"http://127.0.0.1:{port}/config", app)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path="/usr/bin/chromium")
            try:
                for _ in range(pages):
                    page = await (await browser.new_context()).new_page()
                    await page.goto(f"http://127.0.0.1:{port}/")
                    await page.locator("textarea").first.wait_for()
                await asyncio.sleep(3 * TICK_S)  # every page drawn, its load's events done
                before = _cpu_s(app.pid)
                await asyncio.sleep(seconds)
                used = _cpu_s(app.pid) - before
            finally:
                await browser.close()
    finally:
        for proc in (app, sim):
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)
    return used


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--studio", action="append", help="a kontext-studio executable")
    args = parser.parse_args()
    studios = args.studio or [str(Path(sys.executable).with_name("kontext-studio"))]
    runs: dict[str, list[float]] = {s: [] for s in studios}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for i, studio in enumerate(studios):
                home = Path(tmp) / f"home-{i}-{round_}"
                runs[studio].append(await one_run(studio, args.pages, args.seconds, home))
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    print(f"{stamp}, load average {load:.1f}: {args.pages} idle pages, {args.seconds:.0f} s")
    for studio, used in runs.items():
        core = [100 * u / args.seconds for u in used]
        each = ", ".join(f"{c:.2f}" for c in core)
        line = f"  {studio}: {statistics.median(core):.2f} % of a core (runs: {each})"
        if args.pages:
            ms = [1000 * u / (args.pages * args.seconds / TICK_S) for u in used]
            each = ", ".join(f"{m:.1f}" for m in ms)
            line += f"; {statistics.median(ms):.1f} ms of CPU a tick (runs: {each})"
        print(line)


if __name__ == "__main__":
    asyncio.run(main())
