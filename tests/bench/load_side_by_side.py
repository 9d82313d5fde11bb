"""Benchmark (prints numbers, asserts nothing): bursts of edits through `/edit_image`, taking
turns between studios run from different checkouts, and a bare Gradio endpoint, on one simulator.

    .venv/bin/python tests/bench/load_side_by_side.py --tree before=/path/to/old/checkout \\
        --tree after=. [--edits 100] [--rounds 3] [--bare]

Each `--tree LABEL=PATH` is a studio process whose `studio` package comes from PATH (put first on
PYTHONPATH; PATH may list more folders, `:`-separated). The studios start once, learn from 4 edits,
then each round sends `--edits` at once to each in turn through the bench's light raw-HTTP client
(its own process), so the machine's load falls on all alike. `--bare` adds the load row's bare
Gradio endpoint (`studio.bench.load.BARE_EDIT`). Per burst: failures, overhead over the task
(median, p95), the studio's CPU per edit (and the simulator's and the client's, each in its own
process, with the simulator's requests per edit by kind) and, when py-spy is installed, the studio's
CPU split by thread (`engine`: the engine's loop; `Thread-1 (run)`: Gradio's server loop;
`asyncio_N`: the worker threads of `asyncio.to_thread`). `--profile DIR` also samples each studio
with py-spy during its bursts (`DIR/LABEL-N.txt`, collapsed stacks, only samples holding the GIL,
`--nonblocking`: a blocking sampler stops the studio's 100+ threads at every sample) and prints the
functions most often on the stack.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from studio.bench.load import BareEndpoint
from studio.bench.parties import Party, cpu_seconds, run_client
from studio.bench.rig import StudioProcess, photo, summary

WARMUP = 4
PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


def threads(pid: int) -> dict[str, tuple[str, float]]:
    """CPU seconds of each thread of `pid`, by its id, with Python's name for it if py-spy can
    tell (Python 3.11 does not name its threads for the system)."""
    names: dict[str, str] = {}
    if Path(PY_SPY).exists():
        dump = subprocess.run(
            [PY_SPY, "dump", "--pid", str(pid)], capture_output=True, text=True, check=False
        ).stdout
        names = dict(re.findall(r'Thread (\d+) \(\w+\): "([^"]*)"', dump))
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        found[task.name] = (names.get(task.name, "?"), seconds)
    return found


def top_functions(stacks: Path, count: int = 12) -> list[tuple[str, float]]:
    """The functions most often on the sampled stacks (inclusive share of the samples)."""
    seen: dict[str, int] = {}
    total = 0
    for line in stacks.read_text().splitlines():
        frames, _, samples = line.rpartition(" ")
        if not samples.isdigit():
            continue
        total += int(samples)
        for frame in set(frames.split(";")):
            name = re.sub(r":\d+\)$", ")", frame)
            seen[name] = seen.get(name, 0) + int(samples)
    ranked = sorted(seen.items(), key=lambda kv: -kv[1])
    return [(name, round(100 * n / total, 1)) for name, n in ranked[:count]] if total else []


def children_cpu_seconds() -> float:
    """User plus system CPU seconds of this process's children that have ended."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def burst(
    label: str,
    party: Any,
    source: Path,
    edits: int,
    task_s: float,
    sim: Party,
    profile: Path | None = None,
) -> dict[str, Any]:
    spy = None
    if profile is not None and Path(PY_SPY).exists():
        profile.mkdir(parents=True, exist_ok=True)
        out = profile / f"{label.replace(' ', '-')}-{len(list(profile.glob(label + '-*')))}.txt"
        spy = subprocess.Popen(
            [
                PY_SPY,
                "record",
                "--pid",
                str(party.pid),
                "--format",
                "raw",
                "--gil",
                "--nonblocking",
                "--rate",
                "400",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    before, asked = threads(party.pid), json.loads(sim.ask())
    sim_cpu, cpu, client_cpu = cpu_seconds(sim.pid), cpu_seconds(party.pid), children_cpu_seconds()
    results = run_client(party.url, edits, source)
    cpu = cpu_seconds(party.pid) - cpu
    client_cpu = children_cpu_seconds() - client_cpu
    sim_cpu = cpu_seconds(sim.pid) - sim_cpu
    asked = {k: v - asked[k] for k, v in json.loads(sim.ask()).items() if v - asked[k]}
    if spy is not None:
        spy.send_signal(2)
        spy.wait(timeout=60)
        for name, share in top_functions(out):
            print(f"  {share:5.1f}%  {name}", flush=True)
    per_thread: dict[str, float] = {}
    for tid, (name, seconds) in threads(party.pid).items():
        kind = name.rstrip("0123456789_") or name
        per_thread[kind] = per_thread.get(kind, 0.0) + seconds - before.get(tid, (name, 0.0))[1]
    overhead = summary([end - task_s for end, outcome in results if outcome == "ok"])
    return {
        "studio": label,
        "failed": sum(outcome != "ok" for _, outcome in results),
        "overhead_median_s": round(overhead["median"], 2),
        "overhead_p95_s": round(overhead["p95"], 2),
        "cpu_ms_per_edit": round(1000 * cpu / edits, 1),
        "threads_ms_per_edit": {
            k: round(1000 * v / edits, 1)
            for k, v in sorted(per_thread.items(), key=lambda kv: -kv[1])
            if v > 0.0005 * edits
        },
        # The other parties' CPU, so that a reader sees the studio is not charged for it, and
        # what the studio asked of the simulator, per edit.
        "sim_cpu_ms_per_edit": round(1000 * sim_cpu / edits, 1),
        "client_cpu_ms_per_edit": round(1000 * client_cpu / edits, 1),
        "sim_requests_per_edit": {k: round(v / edits, 2) for k, v in asked.items()},
        "load_average": round(os.getloadavg()[0], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", required=True, metavar="LABEL=PATH")
    parser.add_argument("--edits", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--task", type=float, default=3.0, help="each task's seconds")
    parser.add_argument("--bare", action="store_true", help="also a bare Gradio endpoint")
    parser.add_argument("--profile", type=Path, help="sample each studio with py-spy into DIR")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kontext-side-") as tmp:
        source = Path(tmp) / "source.png"
        source.write_bytes(photo(640, 480))
        sim = Party("sim", str(args.task))
        base_url = sim.start()
        parties: dict[str, Any] = {}
        try:
            for spec in args.tree:
                label, path = spec.split("=", 1)
                env = {"RUNAPI_API_KEY": "sk-bench", "RUNAPI_BASE_URL": base_url}
                studio = StudioProcess(Path(tmp) / label, env={**env, "PYTHONPATH": path})
                # -P: the folder this runs from is not put first on the path, so each studio's
                # code is PATH's (run from a checkout, every studio would be that checkout).
                print(f"{label}: up in {studio.start(python_args=['-P']):.1f} s", flush=True)
                parties[label] = studio
                for _ in range(WARMUP):
                    run_client(studio.url, 1, source)
            if args.bare:
                parties["bare Gradio"] = BareEndpoint(Path(tmp) / "bare", args.task)
                parties["bare Gradio"].start()
            for _ in range(args.rounds):
                for label, party in parties.items():
                    print(
                        json.dumps(
                            burst(label, party, source, args.edits, args.task, sim, args.profile)
                        ),
                        flush=True,
                    )
        finally:
            for party in parties.values():
                party.stop()
            sim.stop()


if __name__ == "__main__":
    main()
