"""The load row's other parties, each in its own process: the simulator, and a light client.

`python -m studio.bench.parties sim TASK_S` serves the simulator (fixed task durations, results
rendered ahead) and prints its base URL; `python -m studio.bench.parties client URL N SOURCE`
sends N edits at once to a running studio's `/edit_image` over raw HTTP (Gradio's two-call
API: a POST that queues, then a stream of events) and prints one JSON line of seconds at which
each ended, with its outcome. Neither shares a process (or a GIL) with the studio measured, so
what the studio's process spends is its own. Imports httpx, the simulator and the stdlib.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import httpx

from studio.bench.rig import user_environ

# Seconds a client waits for one edit's events before it counts the edit as failed.
EDIT_TIMEOUT_S = 900.0


def unique_renders() -> None:
    """Make the simulator draw each distinct picture once: a PNG result is drawn for the first
    task with its source, ratio and model, and later ones get a copy made unique by a text chunk
    naming their prompt (distinct bytes, as real results are, for almost no CPU). Drawing a
    megapixel took the stand-in about 0.1 s of CPU a task, which under 100 edits at once was
    the floor of the whole run and hid the studio's own time."""
    from studio.simulator import render, routes

    draw = render.render_result
    drawn: dict[tuple[Any, ...], bytes] = {}

    def cached(**kwargs: Any) -> bytes:
        if kwargs.get("output_format") != "png":
            return draw(**kwargs)
        source = kwargs.get("source")
        key = (
            hashlib.sha256(source).digest() if source else None,
            *(kwargs.get(k) for k in ("aspect_ratio", "model", "pixels")),
        )
        if key not in drawn:
            drawn[key] = draw(**{**kwargs, "prompt": "load"})
        png = drawn[key]
        text = b"Comment\x00" + str(kwargs.get("prompt", "")).encode("latin-1", "replace")
        chunk = len(text).to_bytes(4, "big") + b"tEXt" + text
        chunk += zlib.crc32(b"tEXt" + text).to_bytes(4, "big")
        at = 8 + 25  # after the signature and IHDR
        return png[:at] + chunk + png[at:]

    setattr(routes, "render_result", cached)  # noqa: B010 - the name routes.py calls


def serve_simulator(task_s: float) -> None:
    """Serve the simulator with every task taking `task_s` seconds, until stdin closes."""
    from studio.bench.poll import profile
    from studio.simulator import Simulator

    unique_renders()

    sim = Simulator(api_key="sk-bench", latency=profile(task_s, task_s), balance_cents=10**9)
    sim.render_ahead = True  # results are ready when tasks complete, as on the real service
    sim.start()
    print(sim.base_url, flush=True)
    try:
        # Each line the parent sends asks for the requests received so far, by kind (one JSON
        # line back); the parent closes our stdin (or dies) to stop us.
        for _ in sys.stdin:
            print(json.dumps(request_counts(sim.requests)), flush=True)
    finally:
        sim.stop()


def request_counts(requests: list[Any]) -> dict[str, int]:
    """The simulator's requests by kind: creates, reads, uploads, result downloads, other."""
    counts = dict.fromkeys(("create", "read", "upload", "result", "other"), 0)
    for request in requests:
        path = request.path
        if path.startswith("/api/v1/flux_kontext/"):
            kind = "create" if request.method == "POST" else "read"
        elif path.startswith("/api/v1/files"):
            kind = "upload"
        elif path.startswith("/results/"):
            kind = "result"
        else:
            kind = "other"
        counts[kind] += 1
    return counts


async def _inputs(http: httpx.AsyncClient, url: str) -> list[Any]:
    """`/edit_image`'s inputs after image and instruction: pro, the source's ratio, and each
    further one (session, region...) left at its empty value, read from the app's API info."""
    info = (await http.get(f"{url}gradio_api/info")).json()
    params = info["named_endpoints"]["/edit_image"]["parameters"]
    rest = [False if p.get("python_type", {}).get("type") == "bool" else "" for p in params[4:]]
    return ["pro", "match", *rest]


async def _one(
    http: httpx.AsyncClient, url: str, source: str, inputs: list[Any], n: int, t0: float
) -> list[Any]:
    """One edit through `/edit_image`: [seconds from t0 to its end, "ok" or the error]."""
    call = f"{url}gradio_api/call/edit_image"
    try:
        answer = await http.post(call, json={"data": [source, f"load {n}", *inputs]})
        answer.raise_for_status()
        event_id = answer.json()["event_id"]
        outcome = "no end event"
        async with http.stream("GET", f"{call}/{event_id}") as events:
            event = ""
            async for line in events.aiter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    outcome = "ok" if event == "complete" else line[5:].strip()[:200]
                    break
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        outcome = f"{type(exc).__name__}: {exc}"[:200]
    return [time.monotonic() - t0, outcome]


async def send_edits(url: str, count: int, source: str) -> list[list[Any]]:
    """`count` edits at once; each one's [end in seconds from the start, outcome]."""
    # A new connection for every request: a kept-alive one the server is closing just then
    # fails the request ("disconnected without sending a response"), which is the client's doing.
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    timeout = httpx.Timeout(EDIT_TIMEOUT_S, connect=60.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as http:
        inputs = await _inputs(http, url)
        t0 = time.monotonic()
        edits = (_one(http, url, source, inputs, n, t0) for n in range(count))
        return list(await asyncio.gather(*edits))


class Party:
    """One of these as a child process; `start()` returns its first line of output."""

    def __init__(self, *args: str) -> None:
        self._args = args
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> str:
        env = {**user_environ(), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "studio.bench.parties", *self._args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line:
            self.stop()
            raise RuntimeError(f"the bench's {self._args[0]} process did not start")
        return line

    def ask(self, line: str = "") -> str:
        """Send `line` to the party and return its one line of answer."""
        assert self.process is not None, "not started"
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def run_client(url: str, count: int, source: Path) -> list[list[Any]]:
    """Run the light client in its own process and return its results."""
    process = subprocess.run(
        [sys.executable, "-m", "studio.bench.parties", "client", url, str(count), str(source)],
        env=user_environ(),
        capture_output=True,
        text=True,
        check=False,
        timeout=EDIT_TIMEOUT_S + 60,
    )
    if process.returncode != 0:
        raise RuntimeError(f"the bench's client failed: {process.stderr.strip()[-300:]}")
    return list(json.loads(process.stdout.strip().splitlines()[-1]))


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds a process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str]) -> int:
    match argv:
        case ["sim", task_s]:
            serve_simulator(float(task_s))
        case ["client", url, count, source]:
            results = asyncio.run(send_edits(url, int(count), source))
            print(json.dumps(results), flush=True)
        case _:
            sys.stderr.write(__doc__ or "")
            return 2
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench-party"
    raise SystemExit(main(sys.argv[1:]))
