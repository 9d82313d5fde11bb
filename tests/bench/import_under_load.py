"""Benchmark (prints numbers, asserts nothing): another visitor's page while one visitor imports
and reloads a maximal session (issue 21, bounded work).

    .venv/bin/python tests/bench/import_under_load.py [--reloads 10] [--no-cache]

A hosted studio on the simulator, in this process. Visitor H imports a ZIP holding as much as an
import may (`bundle.MAX_STEPS` steps, `bundle.MAX_TEXT_CHARS` of instructions), then loads its
page `--reloads` times at once, as that many tabs would. Meanwhile visitor B loads the studio's
page (`/`, `/config`) and its own session's page data, over and over; B's times are printed
beside B's times with nothing else running. `--no-cache` turns the store's session cache off,
as it was before this change, for a run side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from studio import store as store_module
from studio.bundle import MAX_STEPS, MAX_TEXT_CHARS
from studio.config import Secret, Settings
from studio.params import EditParams
from studio.simulator import Simulator
from studio.visitor import Visitor
from tests.support.engines import make_engine, make_image
from tests.support.zips import rewrite_export

H, B = Visitor("browser:heavy"), Visitor("browser:b")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def maximal_zip(home: Path, sim: Simulator) -> bytes:
    engine = make_engine(home, sim.base_url, sim.api_key)
    try:
        session = await engine.start_session(await engine.read_image(make_image()), name="max")
        await engine.edit(session.session_id, EditParams(prompt="make it blue"))
        data = await engine.export_session(session.session_id)
    finally:
        await engine.aclose()
    chars = MAX_TEXT_CHARS // MAX_STEPS - 20

    def grow(document: dict) -> None:  # type: ignore[type-arg]
        steps = document["steps"]
        last = steps[-1]
        for n in range(MAX_STEPS - len(steps)):
            step = {**last, "step_id": f"00000000-0000-4000-8000-{n:012d}"}
            step.update(parent_id=last["step_id"], state="failed", error="refused")
            step.update(image=None, result=None, task_id=None)
            step["params"] = {**last["params"], "prompt": f"{n} " + "x" * chars}
            steps.append(step)

    return rewrite_export(data, grow)


def b_page_load(url: str, bridge, session_id: str) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    with httpx.Client(base_url=url, timeout=120) as client:
        client.get("/").raise_for_status()
        client.get("/config").raise_for_status()
    bridge.run(bridge.page(session_id, B), timeout_s=120)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reloads", type=int, default=10)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args()
    if args.no_cache:
        store_module.SESSION_CACHE = 0
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from studio.ui.serve import start_studio

    sim = Simulator(api_key="sk-bench", latency="fast")
    sim.start()
    root = Path(tempfile.mkdtemp(prefix="kontext-bench-import-"))
    data = asyncio.run(maximal_zip(root / "maker", sim))
    settings = Settings(
        api_key=Secret(sim.api_key),
        simulator_url=sim.base_url,
        home=root / "home",
        port=free_port(),
        hosted=True,
        poll_scale=0.05,
    )
    demo, bridge, url = start_studio(settings)
    try:
        b_session = bridge.run(
            bridge.engine.start_session_from_bytes(make_image(), name="b", visitor=B), 60
        ).session_id
        for _ in range(2):
            b_page_load(url, bridge, b_session)
        idle = [b_page_load(url, bridge, b_session) for _ in range(args.samples)]
        rss_before = rss_mb()

        heavy: dict[str, float] = {}

        def heavy_visitor() -> None:
            start = time.perf_counter()
            session = bridge.run(bridge.import_session(data, H), 600)
            heavy["import_s"] = time.perf_counter() - start
            times: list[float] = []

            def reload() -> None:
                t = time.perf_counter()
                bridge.run(bridge.page(session.session_id, H), 600)
                times.append(time.perf_counter() - t)

            threads = [threading.Thread(target=reload) for _ in range(args.reloads)]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            heavy["reloads_s"] = time.perf_counter() - start
            heavy["slowest_reload_s"] = max(times)

        worker = threading.Thread(target=heavy_visitor)
        worker.start()
        busy: list[float] = []
        while worker.is_alive() or not busy:
            busy.append(b_page_load(url, bridge, b_session))
        worker.join()
        rss_after = rss_mb()
    finally:
        demo.close()
        bridge.close()
        sim.stop()
    result = {
        "cache": not args.no_cache,
        "zip_kb": round(len(data) / 1024),
        "steps": MAX_STEPS,
        "import_s": round(heavy["import_s"], 2),
        "reloads": args.reloads,
        "reloads_s": round(heavy["reloads_s"], 2),
        "slowest_reload_s": round(heavy["slowest_reload_s"], 2),
        "b_idle_median_s": round(statistics.median(idle), 3),
        "b_busy_median_s": round(statistics.median(busy), 3),
        "b_busy_max_s": round(max(busy), 3),
        "b_busy_samples": len(busy),
        "rss_before_mb": round(rss_before),
        "rss_after_mb": round(rss_after),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
