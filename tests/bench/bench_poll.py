"""Benchmark: our poll schedule against the official SDK's fixed 2 s, side by side.

Run: python -m tests.bench.bench_poll [--tasks N] [--scale S]

Tasks on the simulator finish at times spread evenly over each model's usual window (pro 5-10 s,
max 10-20 s: the assumption written in studio/runapi/policy.py). Time runs `S` times faster than
reality (default 0.1) for both schedules alike, so the comparison is fair and the run is short;
numbers are printed back in real seconds. Both schedules run in the same process, interleaved,
against the same simulator: ratios between them are what to read, not absolute values.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time

from studio.runapi import RunAPIClient, TaskRequest
from studio.runapi.policy import poll_delays
from studio.simulator import LatencyProfile, Simulator

WINDOWS_S = {"flux-kontext-pro": (5.0, 10.0), "flux-kontext-max": (10.0, 20.0)}
SDK_INTERVAL_S = 2.0  # runapi-flux-kontext's run(): one read every 2 s


async def measure(sim: Simulator, schedule, model: str, finish_s: float, scale: float):
    """Reads and lateness (real seconds) for one task finishing `finish_s` after creation."""
    sim.latency = LatencyProfile(
        0.2 * finish_s * scale,
        0.8 * finish_s * scale,
        0.2 * finish_s * scale,
        0.8 * finish_s * scale,
    )
    async with RunAPIClient(
        api_key=sim.api_key, base_url=sim.base_url, poll_schedule=schedule
    ) as client:
        task = await client.create_task(TaskRequest(model=model, prompt="bench"))
        before = len(sim.requests)
        await client.wait_for_task(task.task_id, model=model, deadline_s=60)
        noticed = time.monotonic()
    reads = sum(1 for r in sim.requests[before:] if r.method == "GET" and task.task_id in r.path)
    finished = sim.tasks[task.task_id].finished_at
    return reads, (noticed - finished) / scale


async def main(tasks: int, scale: float) -> None:
    sim = Simulator(api_key="sk-bench", latency="fast", balance_cents=10**9)
    sim.start()
    ours = lambda model: poll_delays(model, scale=scale)  # noqa: E731
    sdk = lambda model: itertools.repeat(SDK_INTERVAL_S * scale)  # noqa: E731
    print(f"{tasks} tasks per model and schedule, time x{scale}; real seconds below")
    print(f"{'model':18} {'schedule':9} {'reads/task':>10} {'late mean s':>12} {'late p90 s':>11}")
    try:
        for model, (low, high) in WINDOWS_S.items():
            finishes = [low + (high - low) * (i + 0.5) / tasks for i in range(tasks)]
            results = {"ours": [], "sdk": []}
            for finish in finishes:  # interleaved, so load noise hits both alike
                for name, schedule in (("ours", ours), ("sdk", sdk)):
                    results[name].append(await measure(sim, schedule, model, finish, scale))
            summary = {}
            for name, rows in results.items():
                reads = statistics.mean(r for r, _ in rows)
                lates = sorted(late for _, late in rows)
                p90 = lates[int(0.9 * (len(lates) - 1))]
                summary[name] = (reads, statistics.mean(lates))
                print(
                    f"{model:18} {name:9} {reads:10.1f} {statistics.mean(lates):12.2f} {p90:11.2f}"
                )
            (r_ours, l_ours), (r_sdk, l_sdk) = summary["ours"], summary["sdk"]
            print(f"{model:18} {'ratio':9} {r_ours / r_sdk:10.2f} {l_ours / l_sdk:12.2f}")
    finally:
        sim.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--scale", type=float, default=0.1)
    args = parser.parse_args()
    asyncio.run(main(args.tasks, args.scale))
