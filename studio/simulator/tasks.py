"""The simulator's records: tasks (state machine from the clock), billing, idempotency, files.

Imports the stdlib and its siblings only; no I/O but the optional `persist` snapshot.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.simulator import persist
from studio.simulator.contract import PRICE_CENTS
from studio.simulator.faults import Faults

# Uploaded files expire one hour after upload (contract: "Task states").
FILE_TTL_S = 3600.0


@dataclass(frozen=True, slots=True)
class LatencyProfile:
    """Seconds each model spends `pending`, then `processing` (max is slower than pro)."""

    pro_pending_s: float
    pro_processing_s: float
    max_pending_s: float
    max_processing_s: float

    def phases(self, model: str) -> tuple[float, float]:
        if model == "flux-kontext-max":
            return self.max_pending_s, self.max_processing_s
        return self.pro_pending_s, self.pro_processing_s


LATENCY = {
    # Tests: pro completes in ~0.45 s, max in ~0.75 s.
    "fast": LatencyProfile(0.15, 0.3, 0.25, 0.5),
    # The offline studio demo: long enough to watch the states go by.
    "demo": LatencyProfile(1.0, 4.0, 1.5, 8.0),
    # Tests that only need tasks to finish: a third of "fast", max still twice as slow as pro.
    "quick": LatencyProfile(0.05, 0.1, 0.1, 0.2),
}


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the simulator received it; `at` is `time.monotonic()`."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any | None
    at: float


@dataclass(slots=True)
class SimTask:
    """One task. Its status is derived from `created_at` and its phases, so nothing runs in the
    background and a task keeps moving while nobody asks about it."""

    task_id: str
    model: str
    body: dict[str, Any]
    created_at: float
    pending_s: float
    processing_s: float
    source_bytes: bytes | None = field(default=None, repr=False)
    # Rendered on the first read of the result and kept (rendering is deterministic, never saved).
    result_bytes: bytes | None = field(default=None, repr=False)
    # `time.monotonic()` when an answer first said the task ended (benchmarks read it).
    end_answered_at: float | None = None
    # With `SimState.render_ahead`, the render started at creation (an asyncio future).
    rendering: Any = field(default=None, repr=False)
    fail_message: str | None = None
    idempotency_key: str | None = None
    fingerprint: str = ""
    settled: bool = False
    refunded_wall: float | None = None
    created_wall: float = field(default_factory=time.time)
    # Result URLs handed out so far: each read of a completed task gives a fresh one.
    urls_issued: int = 0

    @property
    def status(self) -> str:
        return self.status_at(time.monotonic())

    def status_at(self, now: float) -> str:
        if now < self.created_at + self.pending_s:
            return "pending"
        if now < self.created_at + self.pending_s + self.processing_s:
            return "processing"
        return "failed" if self.fail_message else "completed"

    @property
    def started_at(self) -> float | None:
        started = self.created_at + self.pending_s
        return started if time.monotonic() >= started else None

    @property
    def finished_at(self) -> float | None:
        finished = self.created_at + self.pending_s + self.processing_s
        return finished if time.monotonic() >= finished else None

    @property
    def price_cents(self) -> int:
        return PRICE_CENTS[self.model]

    @property
    def output_format(self) -> str:
        return str(self.body.get("output_format") or "jpeg")


@dataclass(frozen=True, slots=True)
class SimFile:
    """An uploaded image, served at `/files/{file_id}` until `expires_wall` (epoch seconds)."""

    file_id: str
    file_name: str
    mime_type: str
    data: bytes = field(repr=False)
    created_wall: float
    expires_wall: float


class IdempotencyConflictError(Exception):
    """The Idempotency-Key was used before with another body (answered 409)."""


class InsufficientCreditsError(Exception):
    """The balance does not cover the task's price (answered 402)."""


class SimState:
    """Everything the simulator knows. The server thread writes, the test thread reads: one lock."""

    def __init__(
        self,
        *,
        api_key: str,
        latency: LatencyProfile,
        balance_cents: int,
        state_dir: Path | None = None,
    ) -> None:
        self.api_key = api_key
        # Other accounts' keys it accepts (`Simulator.accept_key`).
        self.other_keys: set[str] = set()
        self.latency = latency
        self.starting_latency = latency
        self.starting_balance_cents = balance_cents
        self.state_dir = state_dir
        self.faults = Faults()
        self.lock = threading.RLock()
        self.file_ttl_s = FILE_TTL_S
        # Render each result while its task runs instead of on its first download, so a
        # download costs what it costs on the real service (benchmarks turn this on).
        self.render_ahead = False
        # About how many pixels a result has (Flux's one megapixel; a drill may ask for fewer).
        self.result_pixels = 1_000_000
        self.requests: list[RecordedRequest] = []
        # Valid create requests per Idempotency-Key, replays included ("" for none).
        self.creates_by_key: Counter[str] = Counter()
        self._clear()
        if state_dir is not None:
            self._load(state_dir)

    def _clear(self) -> None:
        self.balance_cents = self.starting_balance_cents
        self.spent_cents = 0
        self.tasks: dict[str, SimTask] = {}
        self.files: dict[str, SimFile] = {}

    def reset(self) -> None:
        """Forget faults, requests, tasks and files; restore the starting balance and settings."""
        self.faults.reset()
        with self.lock:
            self.requests.clear()
            self.creates_by_key.clear()
            self.file_ttl_s = FILE_TTL_S
            self.latency = self.starting_latency
            self.render_ahead = False
            self.result_pixels = 1_000_000
            self.other_keys.clear()
            self._clear()
            self._save()

    def record(self, request: RecordedRequest) -> None:
        with self.lock:
            self.requests.append(request)

    def count_create(self, key: str | None) -> None:
        with self.lock:
            self.creates_by_key[key or ""] += 1

    def tasks_by_key(self) -> Counter[str]:
        """Tasks created (not replayed) per Idempotency-Key: above 1 means a double charge."""
        with self.lock:
            return Counter(task.idempotency_key or "" for task in self.tasks.values())

    def settle(self) -> None:
        """Bill every task that has finished since the last call: charge it, or refund a failure."""
        now = time.monotonic()
        with self.lock:
            changed = False
            for task in self.tasks.values():
                if task.settled or task.status_at(now) not in ("completed", "failed"):
                    continue
                task.settled = changed = True
                if task.fail_message:
                    self.balance_cents += task.price_cents
                    task.refunded_wall = time.time()
                else:
                    self.spent_cents += task.price_cents
            if changed:
                self._save()

    def find_replay(self, key: str | None, print_: str) -> SimTask | None:
        """The task created earlier under `key`, or None; raises if `key` came with another body."""
        if key is None:
            return None
        with self.lock:
            for task in self.tasks.values():
                if task.idempotency_key == key:
                    if task.fingerprint != print_:
                        raise IdempotencyConflictError
                    return task
        return None

    def check_credit(self, model: str) -> None:
        self.settle()
        with self.lock:
            if self.balance_cents < PRICE_CENTS[model]:
                raise InsufficientCreditsError

    def create_task(
        self,
        body: dict[str, Any],
        *,
        key: str | None,
        print_: str,
        source_bytes: bytes | None,
        fail_message: str | None,
    ) -> tuple[SimTask, bool]:
        """Create a task and reserve its price, or find the replay. Returns (task, replayed)."""
        with self.lock:
            # A concurrent create under the same key may have won while the source was fetched.
            if (earlier := self.find_replay(key, print_)) is not None:
                return earlier, True
            self.check_credit(body["model"])
            pending_s, processing_s = self.latency.phases(body["model"])
            task = SimTask(
                task_id=str(uuid.uuid4()),
                model=body["model"],
                body=body,
                created_at=time.monotonic(),
                pending_s=pending_s,
                processing_s=processing_s,
                source_bytes=source_bytes,
                fail_message=fail_message or self.faults.take_fail_message(),
                idempotency_key=key,
                fingerprint=print_,
            )
            self.balance_cents -= task.price_cents
            self.tasks[task.task_id] = task
            self._save()
            return task, False

    def add_file(self, file_name: str, mime_type: str, data: bytes) -> SimFile:
        extension = mime_type.rsplit("/", 1)[-1].replace("jpeg", "jpg")
        now = time.time()
        upload = SimFile(
            file_id=f"{uuid.uuid4().hex}.{extension}",
            file_name=file_name,
            mime_type=mime_type,
            data=data,
            created_wall=now,
            expires_wall=now + self.file_ttl_s,
        )
        with self.lock:
            self.files[upload.file_id] = upload
            self._save()
        return upload

    def live_file(self, file_id: str) -> SimFile | None:
        """The uploaded file, or None if unknown or expired."""
        with self.lock:
            upload = self.files.get(file_id)
        return upload if upload is not None and time.time() < upload.expires_wall else None

    def _save(self) -> None:
        if self.state_dir is None:
            return
        tasks = [_task_doc(task) for task in self.tasks.values()]
        files = [_file_doc(upload) for upload in self.files.values()]
        blobs = [t.source_bytes for t in self.tasks.values() if t.source_bytes is not None]
        blobs += [upload.data for upload in self.files.values()]
        doc = {"balance_cents": self.balance_cents, "spent_cents": self.spent_cents}
        persist.save(self.state_dir, {**doc, "tasks": tasks, "files": files}, blobs)

    def _load(self, state_dir: Path) -> None:
        doc = persist.load(state_dir)
        if doc is None:
            return
        self.balance_cents = doc["balance_cents"]
        self.spent_cents = doc["spent_cents"]
        # Monotonic clocks restart with the process: rebase each task on the wall clock.
        offset = time.monotonic() - time.time()
        for item in doc["tasks"]:
            source = item.pop("source_blob")
            task = SimTask(**item, created_at=item["created_wall"] + offset)
            task.source_bytes = None if source is None else persist.read_blob(state_dir, source)
            self.tasks[task.task_id] = task
        for item in doc["files"]:
            data = persist.read_blob(state_dir, item.pop("blob"))
            self.files[item["file_id"]] = SimFile(**item, data=data)


def _task_doc(task: SimTask) -> dict[str, Any]:
    source = None if task.source_bytes is None else persist.blob_name(task.source_bytes)
    return {
        "task_id": task.task_id,
        "model": task.model,
        "body": task.body,
        "created_wall": task.created_wall,
        "pending_s": task.pending_s,
        "processing_s": task.processing_s,
        "source_blob": source,
        "fail_message": task.fail_message,
        "idempotency_key": task.idempotency_key,
        "fingerprint": task.fingerprint,
        "settled": task.settled,
        "refunded_wall": task.refunded_wall,
    }


def _file_doc(upload: SimFile) -> dict[str, Any]:
    return {
        "file_id": upload.file_id,
        "file_name": upload.file_name,
        "mime_type": upload.mime_type,
        "blob": persist.blob_name(upload.data),
        "created_wall": upload.created_wall,
        "expires_wall": upload.expires_wall,
    }
