"""Page load of studios from several checkouts beside a bare Gradio page, in one run.

    .venv/bin/python tests/bench/page_side_by_side.py --tree before=/path/to/old/checkout \\
        --tree after=. [--rounds 8]

Each `--tree LABEL=PATH` is a studio process whose `studio` package comes from PATH (first on
PYTHONPATH, and the current folder not on the path), with a session in it (one Enter first),
as `kontext-studio bench --only page` runs it: headless Chromium, a new browser context per
load, "usable" the instruction box enabled and the canvas showing the session
(`studio.bench.page.CANVAS_READY`). Each round loads every
studio, in rotating order, then the bare Gradio page. Besides the wall times it reports, per
load, the CPU the page's renderer process used (Chromium's `ProcessTime`) and the CPU the
server used (from /proc): on a shared machine they vary less than the wall times do.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

from studio.bench.coldstart import BareGradio
from studio.bench.load import CHROMIUM
from studio.bench.page import BARE_READY, STUDIO_READY, _enter, timed_load
from studio.bench.rig import StudioProcess


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load(browser: Any, url: str, studio: bool, pid: int) -> tuple[float, float, float, float]:
    """Seconds to the bar and to usable; renderer and server CPU seconds of the load."""
    context = browser.new_context()
    try:
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        server = _cpu_s(pid)
        bar, usable = timed_load(page, url, STUDIO_READY if studio else BARE_READY, studio)
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        return bar, usable, float(metrics["ProcessTime"]), _cpu_s(pid) - server
    finally:
        context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", action="append", required=True, metavar="LABEL=PATH")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="kontext-page-") as tmp:
        studios = {}
        for spec in args.tree:
            label, _, path = spec.partition("=")
            # PYTHONSAFEPATH: `python -m` would put the current folder first, before PYTHONPATH.
            env = {
                "PYTHONPATH": os.pathsep.join(str(Path(p).resolve()) for p in path.split(":")),
                "PYTHONSAFEPATH": "1",
            }
            studios[label] = StudioProcess(Path(tmp) / label, env=env)
        bare = BareGradio(Path(tmp) / "bare")
        try:
            for studio in studios.values():
                studio.start()
            bare.start()
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM)
                try:
                    for studio in studios.values():
                        _load(browser, studio.url, False, studio.pid)  # warm
                        _enter(browser, studio.url, -1)  # a session to show
                    _load(browser, bare.url, False, bare.pid)
                    order = list(studios.items())
                    for n in range(args.rounds):
                        turn = order[n % len(order) :] + order[: n % len(order)]
                        for label, studio in turn:
                            rows.setdefault(label, []).append(
                                _load(browser, studio.url, True, studio.pid)
                            )
                        rows.setdefault("bare Gradio", []).append(
                            _load(browser, bare.url, False, bare.pid)
                        )
                finally:
                    browser.close()
        finally:
            for studio in studios.values():
                studio.stop()
            bare.stop()
    median = statistics.median
    bare_rows = rows["bare Gradio"]
    print(f"{args.rounds} rounds, load average {os.getloadavg()[0]:.1f} at the end")
    print(
        "| page | usable s | bar s | usable / bare | bar / bare | renderer CPU ms | server CPU ms |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, runs in rows.items():
        bar, usable, renderer, server = zip(*runs, strict=True)
        ratio = median(r[1] / b[1] for r, b in zip(runs, bare_rows, strict=True))
        bar_ratio = median(r[0] / b[1] for r, b in zip(runs, bare_rows, strict=True))
        print(
            f"| {label} | {median(usable):.2f} | {median(bar):.2f} | {ratio:.2f} | "
            f"{bar_ratio:.2f} | {median(renderer) * 1000:.0f} | {median(server) * 1000:.0f} |"
        )


if __name__ == "__main__":
    main()
