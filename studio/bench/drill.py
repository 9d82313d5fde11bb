"""The fault drill: many edits through the running studio while a share of every call to the
service fails, once as it is and once with the studio killed (SIGKILL) halfway and restarted.

Afterwards every edit must be stored (completed with its image, or failed with a reason) or
have been refused to its caller; none may vanish; the simulator must have created no edit twice;
and the studio must still answer. The counts come from the store on disk and the simulator.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from studio.bench.engine_child import PROMPT
from studio.bench.poll import profile
from studio.bench.rig import StudioProcess, photo
from studio.history import StepState
from studio.simulator import Simulator
from studio.store import Store, StoreError

# Seconds the restarted studio gets to finish what the killed one left.
RECOVERY_TIMEOUT_S = 180.0
# Seconds for every edit's caller to hear back, after the last was sent.
ANSWER_TIMEOUT_S = 600.0


@dataclass
class DrillCounts:
    """What became of each edit, and what the simulator saw."""

    edits: int
    killed: bool
    completed: int = 0  # stored with its image
    failed_with_reason: int = 0  # stored as failed, with the reason shown
    refused: int = 0  # never stored, and the caller was told (an error)
    vanished: int = 0  # anything else: lost, stuck unfinished, or failed without a reason
    stored_twice: int = 0  # two steps for one edit
    created_twice: int = 0  # idempotency keys with more than one task on the simulator
    orphan_tasks: int = 0  # tasks whose key is no stored step
    charged_without_image: int = 0  # completed (charged) on the simulator, failed in the store
    create_requests: int = 0
    tasks: int = 0
    answered_after: bool = False
    seconds: float = 0.0
    faults: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    charged_reasons: dict[str, int] = field(default_factory=dict)  # why those charged steps failed

    @property
    def ok(self) -> bool:
        """Nothing vanished, nothing created twice, nothing charged lost, and the studio answers."""
        accounted = self.completed + self.failed_with_reason + self.refused
        return (
            accounted == self.edits
            and self.vanished == self.stored_twice == self.created_twice == self.orphan_tasks == 0
            and self.charged_without_image == 0
            and self.answered_after
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


class StudioTarget:
    """The browser studio (`kontext-studio`), called through its `/edit_image` endpoint."""

    def __init__(self, home: Path, env: dict[str, str], source: Path, concurrency: int) -> None:
        self.studio = StudioProcess(home, env=env)
        self.source = source
        self.concurrency = concurrency
        self.client: Any = None

    def start(self) -> None:
        from gradio_client import Client

        self.studio.start()
        if self.client is None:
            self.client = Client(self.studio.url, verbose=False, max_workers=self.concurrency)

    def submit(self, n: int, model: str) -> Future[Any]:
        # An absolute path: the studio reads it (a hosted one would take a URL or data: URI).
        return self.client.submit(  # type: ignore[no-any-return]
            str(self.source),
            PROMPT.format(n=n),
            model,
            "match",
            "",
            api_name="/edit_image",
        )

    def kill(self, pending: list[Future[Any]]) -> None:
        self.studio.kill()
        for job in pending:
            Future.cancel(job)  # not yet sent: the caller gives up on those (locally)

    def answers_after(self) -> bool:
        from gradio_client import Client

        client = Client(self.studio.url, verbose=False)
        try:
            _, info = client.predict(
                str(self.source),
                "after the drill",
                "pro",
                "match",
                "",
                api_name="/edit_image",
            )
            summary = json.loads(info) if isinstance(info, str) else info
            return bool(summary.get("state") == "completed")
        except Exception:
            return False
        finally:
            client.close()

    def close(self) -> None:
        self.studio.stop()
        if self.client is not None:
            self.client.close()


class EngineTarget:
    """The engine alone in a child process (`engine_child`): the same edits, store and service,
    without the web server, so a small drill fits in a test."""

    def __init__(self, home: Path, sim: Simulator, poll_scale: float) -> None:
        self.home = home
        self.args = [home, sim.base_url, sim.api_key, str(poll_scale)]
        self.process: subprocess.Popen[str] | None = None
        self.waiting: dict[str, Future[Any]] = {}
        self.lock = threading.Lock()

    def start(self) -> None:
        command = [sys.executable, "-m", "studio.bench.engine_child", *map(str, self.args)]
        self.home.mkdir(parents=True, exist_ok=True)
        log = (self.home / "engine.log").open("ab")
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True
        )
        self.process = process
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the engine child did not start; see {self.home / 'engine.log'}")
        threading.Thread(target=self._read, args=(process,), daemon=True).start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            _, n, state = ([*line.split(maxsplit=2), "", "", ""])[:3]
            with self.lock:
                future = self.waiting.pop(n, None)
            if future is not None:
                if state.strip() in ("completed",):
                    future.set_result(state.strip())
                else:
                    future.set_exception(RuntimeError(state.strip()))
        with self.lock:  # the process is gone: its callers hear so
            gone, self.waiting = self.waiting, {}
        for future in gone.values():
            future.set_exception(RuntimeError("the studio stopped"))

    def submit(self, n: int | str, model: str) -> Future[Any]:
        future: Future[Any] = Future()
        with self.lock:
            self.waiting[str(n)] = future
        assert self.process is not None
        assert self.process.stdin is not None
        self.process.stdin.write(f"edit {n} {model}\n")
        self.process.stdin.flush()
        return future

    def kill(self, pending: list[Future[Any]]) -> None:
        del pending  # everything was sent at once; the child's death answers its callers
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def answers_after(self) -> bool:
        try:
            return bool(self.submit("after", "pro").result(timeout=120) == "completed")
        except Exception:
            return False

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def run_drill(
    sim: Simulator,
    *,
    edits: int,
    rate: float = 0.25,
    kill: bool = False,
    concurrency: int = 32,
    seed: int = 14,
    engine_only: bool = False,
    say: Callable[[str], None] = lambda _: None,
) -> DrillCounts:
    """One drill on a fresh data directory; `kill` SIGKILLs the studio once half are answered.

    Args:
        sim: The simulator to fault (it is reset first).
        edits: How many edits, alternately on pro and max.
        rate: The share of calls to fault (see `Faults.chaos`).
        kill: SIGKILL the studio once half the edits are answered, then start it again.
        concurrency: Edits in flight at once (the studio target's client threads).
        seed: For the faults' draws.
        engine_only: Drive the engine in a child process instead of the browser studio.
    """
    sim.reset()
    sim.render_ahead = True
    sim.result_pixels = 256 * 256  # the drill is about what happens to edits, not pixels
    sim.latency = profile(0.3, 0.6)
    counts = DrillCounts(edits=edits, killed=kill)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kontext-drill-") as tmp:
        source = Path(tmp) / "source.png"
        source.write_bytes(photo(320, 240))
        home = Path(tmp) / "home"
        # The prior schedule reads first at 4.5 s; these tasks take under a second.
        target: StudioTarget | EngineTarget
        if engine_only:
            target = EngineTarget(home, sim, poll_scale=0.1)
        else:
            env = {
                "RUNAPI_API_KEY": sim.api_key,
                "RUNAPI_BASE_URL": sim.base_url,
                "KONTEXT_STUDIO_POLL_SCALE": "0.1",
            }
            target = StudioTarget(home, env, source, concurrency)
        target.start()
        sim.faults.chaos(rate, seed=seed, slow_s=0.5)
        # Every task's first result link has expired by the time it is fetched.
        sim.faults.expire_first_result_urls()
        answers: dict[int, str] = {}
        lock = threading.Lock()
        half = threading.Event()
        jobs: list[Future[Any]] = []
        for n in range(edits):
            job = target.submit(n, "pro" if n % 2 == 0 else "max")

            def answered(future: Future[Any], n: int = n) -> None:
                with lock:
                    error = None if future.cancelled() else future.exception()
                    answers[n] = "cancelled" if future.cancelled() else "error" if error else "ok"
                    if len(answers) >= edits // 2:
                        half.set()

            job.add_done_callback(answered)
            jobs.append(job)
        say(f"  drill: {edits} edits sent{', killing the studio halfway' if kill else ''}")
        if kill:
            half.wait(ANSWER_TIMEOUT_S)
            target.kill(jobs)
            say("  drill: killed; starting it again")
            target.start()
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        for job in jobs:
            with contextlib.suppress(CancelledError, TimeoutError):
                job.exception(timeout=max(1.0, deadline - time.monotonic()))
        wait_until_settled(home)
        faults = dict(sim.faults.injected)
        sim.faults.reset()
        counts.answered_after = target.answers_after()
        target.close()
        count(counts, home, sim, answers)
    counts.faults = faults
    counts.seconds = time.monotonic() - started
    return counts


def wait_until_settled(home: Path, timeout_s: float = RECOVERY_TIMEOUT_S) -> None:
    """Until the store holds no queued or running step (or the time is up)."""
    store = Store.open(home)
    try:
        deadline = time.monotonic() + timeout_s
        while store.unfinished_steps() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        store.close()


def count(counts: DrillCounts, home: Path, sim: Simulator, answers: dict[int, str]) -> None:
    """Fill `counts` from the store on disk, the simulator's records and the callers' answers."""
    store = Store.open(home)
    try:
        steps = {}
        per_prompt: Counter[str] = Counter()
        for summary in store.list_sessions():
            for step in store.load_session(summary.session_id).steps.values():
                if step.params is not None and step.params.prompt.startswith("drill edit "):
                    per_prompt[step.params.prompt] += 1
                    steps[step.params.prompt] = step
        reasons: Counter[str] = Counter()
        for n in range(counts.edits):
            found = steps.get(PROMPT.format(n=n))
            if found is None:
                told = answers.get(n) in ("error", "cancelled")
                counts.refused += told
                counts.vanished += not told
            elif found.state is StepState.COMPLETED and found.result is not None:
                has_image = _has_image(store, found.result.sha256)
                counts.completed += has_image
                counts.vanished += not has_image
            elif found.state is StepState.FAILED and found.error:
                counts.failed_with_reason += 1
                reasons[found.error] += 1
            else:
                counts.vanished += 1
        counts.stored_twice = sum(1 for k in per_prompt.values() if k > 1)
        by_key = sim.tasks_by_key()
        step_ids = {step.step_id: step for step in steps.values()}
        counts.created_twice = sum(1 for k in by_key.values() if k > 1)
        counts.tasks = sum(by_key.values())
        counts.create_requests = sum(sim.creates_by_key.values())
        tasks = sim.tasks
        after = {
            t.idempotency_key for t in tasks.values() if t.body.get("prompt") == "after the drill"
        }
        counts.orphan_tasks = sum(1 for key in by_key if key not in step_ids and key not in after)
        charged: Counter[str] = Counter()
        for task in tasks.values():
            mine = step_ids.get(task.idempotency_key or "")
            if mine is not None and task.status == "completed" and mine.state is StepState.FAILED:
                counts.charged_without_image += 1
                charged[mine.error or "(no reason)"] += 1
        counts.reasons = dict(reasons.most_common(6))
        counts.charged_reasons = dict(charged.most_common(6))
    finally:
        store.close()


def _has_image(store: Store, sha256: str) -> bool:
    try:
        return store.image_path(sha256).is_file()
    except StoreError:
        return False
