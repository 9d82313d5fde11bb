"""The run of one step, and who is watching: part of the engine, used by `engine` alone.

`StepRunner.launch` starts a stored, queued (or resumed) step as an asyncio task owned by the
runner: it uploads the source if needed, creates the task under the step's idempotency key, records
the task id, waits, downloads and stores the result. Each change of phase is published to whoever
watches the step's session; a step's in-memory state lives only while it runs (the store holds
the rest). Clients for visitors' own keys live in a `ClientPool` that closes idle ones.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from studio.config import Secret
from studio.history import HistoryError, ImageRef, Phase, Step, StepState, StepUpdate
from studio.images import (
    ImageError,
    ResultImage,
    SourceImage,
    UploadImage,
    check_result,
    describe,
    prepare_upload,
)
from studio.limits import FairPlaces, used_with
from studio.links import is_public_link
from studio.params import (
    DEFAULT_GENERATE_RATIO,
    MODEL_IDS,
    PRICE_CENTS,
    Model,
    RegionError,
    nearest_aspect_ratio,
)
from studio.provenance import C2paSigner, mark, xmp_packet
from studio.runapi import (
    MAX_RESULT_BYTES,
    AuthenticationError,
    InvalidRequestError,
    LearnedSchedule,
    NetworkError,
    NotFoundError,
    RateLimitedError,
    RunAPIClient,
    RunAPIError,
    ServiceUnavailableError,
    Task,
    TaskFailedError,
    TaskRequest,
    TaskTimeoutError,
    UnexpectedResponseError,
    UploadedFile,
)
from studio.store import Store, StoreError

if TYPE_CHECKING:
    from studio.regions import BlendedImage  # OpenCV: imported when a region is first used

log = logging.getLogger(__name__)
T = TypeVar("T")

# An uploaded source expires an hour after upload (contract: "Uploading a local image"); reuse it
# only while at least this much of that hour is left, so a slow queue never outlives the URL.
UPLOAD_REUSE_MARGIN = timedelta(minutes=10)
# The sentence shown for a failure we did not foresee; its details go to the log only.
UNEXPECTED_FAILURE = "The edit failed for a reason the studio did not expect; it has been logged."
# Seconds between looks at a parent step run by another process, for a step queued after it.
PARENT_POLL_S = 1.0
# A visitor's client (and its connection pool) is closed after this many idle seconds.
CLIENT_IDLE_S = 600.0
# Seconds between attempts to fetch a completed task's image, each after reading the task again
# for a fresh URL (result URLs expire: BFL's after ten minutes); the last repeats until the
# task's deadline, after which the step stays "completed, fetching" for the next start.
RESULT_RETRY_S = (0.2, 1.0, 3.0, 10.0, 30.0)
FETCHING = (
    "RunAPI finished this edit, but its image could not be fetched yet; the studio keeps "
    "asking RunAPI for a fresh link."
)
# Said meanwhile when the image came but the server could not save it (its disk full, its files
# all open): tried again as an image that did not come is (`RESULT_RETRY_S`), never failed (a
# review's flood of connections used up the studio's file descriptors, and paid results were
# failed with cost 0, review 20 F1).
STORING = (
    "RunAPI finished this edit and the studio has its image, but could not save it yet; it "
    "keeps trying."
)
# Seconds between the runner's own attempts when RunAPI is busy, unavailable or unreachable
# after the client's retries: once a create may have reached RunAPI, or a task exists, giving
# up would leave a task that can finish (and be charged) with no step to hold its image.
# The last repeats until the task's deadline; then the step stays open for the next start,
# whose create replays under the same idempotency key.
TRANSIENT_RETRY_S = (1.0, 5.0, 15.0, 30.0)
TRANSIENT = (RateLimitedError, ServiceUnavailableError, NetworkError)
UNANSWERED = (
    "RunAPI did not answer for {waited}; this edit stays open and is asked for again (under "
    "the same request, so never paid twice) every minute while the studio runs, and when it "
    "next starts."
)
# Said beside a running step's phase while RunAPI does not answer (`StepRunner._persist`).
NOT_ANSWERING = "RunAPI is not answering; the studio keeps trying"
# Said when a step left open is asked to be cancelled (`StepRunner.cancel`).
LEFT_OPEN_NOT_CANCELLED = (
    "RunAPI may already have this edit (it was sent before RunAPI stopped answering), so it "
    "can no longer be cancelled; the studio keeps asking for it."
)
# Seconds before a step left open is run again (`StepRunner._again_later`; at most the deadline).
LEFT_OPEN_AGAIN_S = 60.0
RESULT_GONE = (
    "RunAPI finished this edit, but no longer has it, so its image could not be fetched; "
    "ask RunAPI's support about task {task_id}."
)
# Blends (keeping the rest at the source's full size) computed at once, all visitors together,
# on the runner's own thread: one takes a core and a few hundred megabytes (+340 MB at 24
# megapixels), so a second at once would only split the 2 cores and add its memory. They wait
# their turn, holding only their encoded model output meanwhile, and never on the loop's own
# threads, where the store's reads for every page wait (review round 3 F8: six blends at once
# held all six of them, and another visitor's page for 12 s). The next turn goes to the
# session owner who had the fewest pixels blended in the last minute (the waiter's own counted),
# so one visitor's pile never puts another's first blend back more than one blend (review 5 F8:
# 17.8 s behind one address's four 24-megapixel blends, 2.9 s alone), and a small blend goes
# ahead of large ones from owners as new as its own.
BLENDS_AT_ONCE = 1
# A blend's source whose size the store does not know counts as this many pixels for its turn.
UNKNOWN_BLEND_PIXELS = 8_000_000
# Sources converted for upload at once (a 24-megapixel photo: about half a second each).
UPLOADS_AT_ONCE = 2
# Said when RunAPI refuses a key a visitor pasted (they set no variable: not RUNAPI_API_KEY).
PASTED_KEY_REFUSED = (
    "RunAPI did not accept the key you pasted; check it in your RunAPI account, "
    "or clear it to go on without it."
)
# A key RunAPI refused is said to be refused without asking again for this long (a caller
# sending made-up keys makes one balance call each, not one a request).
REFUSED_KEY_MEMORY_S = 600.0
REFUSED_KEYS_KEPT = 10_000


class ClientPool:
    """The server's client, and one client per visitor key, kept in memory only, never stored.

    A visitor's client is closed once no step uses it and it has been idle for `idle_s`; the
    next edit with that key opens a new one.
    """

    def __init__(
        self,
        server: RunAPIClient,
        make_client: Callable[[str], RunAPIClient] | None,
        *,
        idle_s: float = CLIENT_IDLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server = server
        self._make = make_client
        self._idle_s = idle_s
        self._clock = clock
        # digest of the key -> (client, steps using it, when it was last released)
        self._visitors: dict[str, tuple[RunAPIClient, int, float]] = {}
        # Digests of visitors' keys RunAPI has accepted (a balance call) while their client lives.
        self._accepted: set[str] = set()
        # Digests of keys RunAPI refused, and when (the oldest first; `REFUSED_KEY_MEMORY_S`).
        self._refused: collections.OrderedDict[str, float] = collections.OrderedDict()

    async def check(self, api_key: Secret) -> int | None:
        """Ask RunAPI for the balance with a visitor's key: the balance in cents (None if its
        shape is unknown). Raises `AuthenticationError` naming the pasted key if it is refused;
        other errors (the service is unreachable...) as they come."""
        client, digest = self._entry(api_key)
        try:
            balance = await client.get_balance()
        except AuthenticationError as exc:
            self._accepted.discard(digest)
            self._refused.pop(digest, None)
            self._refused[digest] = self._clock()
            while len(self._refused) > REFUSED_KEYS_KEPT:
                self._refused.popitem(last=False)
            held, users, _ = self._visitors.get(digest, (None, 1, 0.0))
            if held is not None and users == 0:  # nothing uses a refused key: let it go now
                del self._visitors[digest]
                await held.aclose()
            raise AuthenticationError(PASTED_KEY_REFUSED, status=exc.status) from None
        self._accepted.add(digest)
        self._refused.pop(digest, None)
        return balance.balance_cents

    def is_accepted(self, api_key: Secret) -> bool:
        """Whether RunAPI has accepted `api_key` while its client lives (no call made)."""
        return _payer_of(api_key) in self._accepted

    def known_verdict(self, api_key: Secret) -> bool | None:
        """What RunAPI last said of `api_key`, without asking: True (accepted, while its
        client lives), False (refused in the last `REFUSED_KEY_MEMORY_S`), None (not known)."""
        digest = _payer_of(api_key)
        if digest in self._accepted:
            return True
        refused = self._refused.get(digest)
        if refused is not None and self._clock() - refused < REFUSED_KEY_MEMORY_S:
            return False
        return None

    async def require_accepted(self, api_key: Secret | None) -> None:
        """Before a step is stored for a visitor's key: check it once, so a refused key leaves
        no failed step behind. A key that cannot be checked now (no answer) is let through:
        the step's own run then says what is wrong."""
        if api_key is None:
            return
        known = self.known_verdict(api_key)  # (a refused key makes no client)
        if known is False:
            raise AuthenticationError(PASTED_KEY_REFUSED, status=401)
        if known:
            return
        try:
            await self.check(api_key)
        except AuthenticationError:
            raise
        except RunAPIError:
            return

    def get(self, api_key: Secret | None) -> RunAPIClient:
        """The client for `api_key` (the server's for None), for a short call such as a balance."""
        if api_key is None:
            return self.server
        client, _ = self._entry(api_key)
        return client

    @contextlib.asynccontextmanager
    async def using(self, api_key: Secret | None) -> AsyncIterator[RunAPIClient]:
        """The client for `api_key`, held open until the block ends (a whole step's run)."""
        if api_key is None:
            yield self.server
            return
        client, digest = self._entry(api_key)
        held, users, _ = self._visitors[digest]
        self._visitors[digest] = (held, users + 1, self._clock())
        try:
            yield client
        finally:
            held, users, _ = self._visitors[digest]
            self._visitors[digest] = (held, users - 1, self._clock())
        await self.close_idle()

    async def close_idle(self) -> None:
        now = self._clock()
        idle = [
            digest
            for digest, (_, users, since) in self._visitors.items()
            if users == 0 and now - since >= self._idle_s
        ]
        for digest in idle:
            client, _, _ = self._visitors.pop(digest)
            self._accepted.discard(digest)
            await client.aclose()

    @property
    def visitor_clients(self) -> int:
        return len(self._visitors)

    async def aclose(self) -> None:
        clients = [self.server, *(client for client, _, _ in self._visitors.values())]
        self._visitors.clear()
        for client in clients:
            await client.aclose()

    def _entry(self, api_key: Secret) -> tuple[RunAPIClient, str]:
        if self._make is None:
            raise HistoryError("This studio does not take visitors' own keys.")
        digest = _payer_of(api_key)
        if digest not in self._visitors:
            self._visitors[digest] = (self._make(api_key.reveal()), 0, self._clock())
        return self._visitors[digest][0], digest


class SessionSignals:
    """Wakes whoever watches a session when any of its steps changes. Lives on the engine loop."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}

    def notify(self, session_id: str) -> None:
        for event in self._waiters.get(session_id, ()):
            event.set()

    @contextlib.contextmanager
    def subscribe(self, session_id: str) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._waiters.setdefault(session_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(session_id, set())
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(session_id, None)

    @property
    def watched_sessions(self) -> int:
        return len(self._waiters)


@dataclass(slots=True)
class _Run:
    """A step this runner is running: its task, its latest update, and whether it has not
    started yet (it still waits for its parent's image), so that it may be cancelled."""

    task: asyncio.Task[Step]
    update: StepUpdate
    waiting: bool = False
    # When it began its own work (it left the queue behind its parent; a resumed one, when it
    # was sent): its phases count their seconds from then (None: still waiting).
    started_at: datetime | None = None
    # Seconds from its create's answer to the read that saw its task finished (a fresh task),
    # and to the read before it, which saw it unfinished (0: none).
    seen_s: float | None = None
    missed_s: float = 0.0


def _ended_as(task: asyncio.Task[Step]) -> Step | None:
    """The step a finished run ended with; None if it was cancelled or broke."""
    if task.cancelled() or task.exception() is not None:
        return None
    return task.result()


@dataclass(frozen=True, slots=True)
class RunEnd:
    """How a step's run ended, for whoever launched it: the step as it ended (None if the run
    was cancelled or broke), and whether RunAPI can have charged for it."""

    step: Step | None
    charged: bool


class StepRunner:
    """Launches, waits for, reports and watches steps; the store is written at every change."""

    def __init__(
        self,
        store: Store,
        clients: ClientPool,
        *,
        deadline_s: float,
        now: Callable[[], datetime],
        schedule: LearnedSchedule | None = None,
        simulated: bool = False,
        signer: C2paSigner | None = None,
        prepare: Callable[[SourceImage], UploadImage] = prepare_upload,
    ) -> None:
        self._store = store
        # Converts a stored source for upload (a hosted studio's in a child process:
        # `Lookout.prepare_upload`), on threads of its own, never the ones store reads use.
        self._prepare = prepare
        self._preparer = ThreadPoolExecutor(UPLOADS_AT_ONCE, thread_name_prefix="kontext-upload")
        self._upload_turns = FairPlaces(UPLOADS_AT_ONCE)
        # The pixels each session owner had converted in the last minute (`limits.used_lately`).
        self._converted: dict[str, collections.deque[tuple[float, int]]] = {}
        # Signs a C2PA manifest into each result when the host gave a certificate.
        self._signer = signer
        self._schedule = schedule
        # Results are marked as the simulator's, not a model's (`provenance`).
        self._simulated = simulated
        self._clients = clients
        self._deadline_s = deadline_s
        self._now = now
        self._runs: dict[str, _Run] = {}
        # Runs that left their step open, waiting to run it again (`_again_later`), and how long.
        self._waiting_again: set[asyncio.Future[None]] = set()
        # Steps left open, from the end of their run to the next: never cancelled meanwhile.
        self._open_ids: set[str] = set()
        self._again_s = min(LEFT_OPEN_AGAIN_S, deadline_s)
        self._closed = False
        # Steps whose task RunAPI failed (so refunded), until their run's end is told.
        self._refunded: set[str] = set()
        # Sources uploaded lately, by who paid (`_payer_of`), whose session it was for and the
        # image's sha256: RunAPI fetches a file from the account that uploaded it, and one
        # another visitor's key uploaded is no business of this one (review 21 F1); nor is one
        # made for another visitor on the server's key (its edit started sooner: anyone could
        # tell that someone had edited that exact photo lately).
        self._uploads: dict[tuple[str, str, str], UploadedFile] = {}
        self.signals = SessionSignals()
        self._blender = ThreadPoolExecutor(BLENDS_AT_ONCE, thread_name_prefix="kontext-blend")
        self._blend_turns = FairPlaces(BLENDS_AT_ONCE)
        # The pixels each session owner had blended in the last minute (`limits.used_lately`).
        self._blended: dict[str, collections.deque[tuple[float, int]]] = {}

    # -- what callers see -----------------------------------------------------------------------

    def launch(
        self,
        step: Step,
        api_key: Secret | None,
        *,
        on_done: Callable[[str, RunEnd], None] | None = None,
    ) -> None:
        """Start running a stored step; returns at once. `on_done(step_id, end)` runs when it
        ends (`RunEnd`)."""
        phase: Phase = "queued" if step.task_id is None else "submitted"
        task = asyncio.create_task(self._run(step, api_key), name=f"step-{step.step_id}")
        started = None if step.is_waiting else (step.submitted_at or self._now())
        since = started or step.created_at
        update = StepUpdate(step, phase, (self._now() - since).total_seconds())
        self._runs[step.step_id] = _Run(task, update, step.is_waiting, started)
        task.add_done_callback(lambda _: self._forget(step))
        if on_done is not None:
            task.add_done_callback(lambda done: on_done(step.step_id, self._end_of(step, done)))
        task.add_done_callback(lambda done: self._again_later(step, api_key, on_done, done))
        self.signals.notify(step.session_id)

    def _again_later(
        self,
        step: Step,
        api_key: Secret | None,
        on_done: Callable[[str, RunEnd], None] | None,
        done: asyncio.Task[Step],
    ) -> None:
        """A run that left its step open (RunAPI did not answer, its task did not end, or its
        image did not come, within the deadline) is run again `_again_s` later, from the step
        as stored, for as long as the studio runs (and at its next start). Before, it waited
        for a restart, days on a hosted studio, with a paid image at RunAPI (review 55 F4)."""
        final = _ended_as(done)
        if final is None or final.is_finished or self._closed:
            self._open_ids.discard(step.step_id)
            return

        async def again() -> None:
            try:
                await asyncio.sleep(self._again_s)
                stored = await asyncio.to_thread(self._still_open, step)
                if self._closed or step.step_id in self._runs:
                    return
                if stored is not None:
                    log.info("Step %s: asking RunAPI again", step.step_id)
                    self.launch(stored, api_key, on_done=on_done)
                elif on_done is not None:  # (it ended elsewhere: its place goes)
                    on_done(step.step_id, RunEnd(None, charged=True))
            finally:
                self._open_ids.discard(step.step_id)  # (running again: not cancelled either)

        waiting = asyncio.ensure_future(again())
        self._waiting_again.add(waiting)
        waiting.add_done_callback(self._waiting_again.discard)

    def _still_open(self, step: Step) -> Step | None:
        """`step` as stored, if it is still unfinished (one session read, cached: not a scan of
        every unfinished step). Blocking."""
        try:
            stored = self._store.load_session(step.session_id).steps.get(step.step_id)
        except StoreError:
            return None
        return stored if stored is not None and not stored.is_finished else None

    def _end_of(self, step: Step, done: asyncio.Task[Step]) -> RunEnd:
        """How `step`'s run `done` ended. Nothing can have been charged for a step that failed
        before RunAPI had a task for it, nor for one whose task RunAPI failed (it refunds a failed
        task); anything else may have been (a result that could not be read, say)."""
        refunded = step.step_id in self._refunded
        self._refunded.discard(step.step_id)
        final = _ended_as(done)
        if final is None or final.state is not StepState.FAILED:
            return RunEnd(final, charged=True)
        return RunEnd(final, charged=final.task_id is not None and not refunded)

    def is_running(self, step_id: str) -> bool:
        return step_id in self._runs

    async def cancel(self, step_id: str) -> None:
        """Stop a step that still waits for its parent (nothing was sent, nothing is paid).

        Raises `HistoryError` if it has started, or was left open to be asked for again (its
        create may have reached RunAPI: review 56 F1). A step not running here otherwise is
        left to the caller.
        """
        if step_id in self._open_ids:
            raise HistoryError(LEFT_OPEN_NOT_CANCELLED)
        run = self._runs.get(step_id)
        if run is None:
            return
        if not run.waiting:
            raise HistoryError("That edit has already started; it can no longer be cancelled.")
        run.task.cancel()
        await asyncio.gather(run.task, return_exceptions=True)

    def running(self, session_id: str) -> dict[str, StepUpdate]:
        """The steps of `session_id` running now, each with its phase and its elapsed time."""
        return {
            step_id: replace(run.update, elapsed_s=self._elapsed(run.update.step))
            for step_id, run in self._runs.items()
            if run.update.step.session_id == session_id
        }

    async def wait(self, step_id: str) -> Step | None:
        """The final record of a running step, or None if it is not running here."""
        run = self._runs.get(step_id)
        if run is None:
            return None
        return await asyncio.shield(run.task)

    async def watch(self, step_id: str) -> AsyncIterator[StepUpdate]:
        """Each new phase of a running step, ending with its final update."""
        run = self._runs.get(step_id)
        if run is None:
            return
        seen: Phase | None = None
        with self.signals.subscribe(run.update.step.session_id) as changed:
            while True:
                changed.clear()
                if run.task.done():  # its done-callback notifies, so this wakes at the end
                    break
                if run.update.phase != seen:
                    seen = run.update.phase
                    yield replace(run.update, elapsed_s=self._elapsed(run.update.step))
                await changed.wait()
        yield _final(run.task.result(), self._now())

    async def watch_session(
        self, session_id: str, *, tick_s: float = 0.5
    ) -> AsyncIterator[dict[str, StepUpdate]]:
        """The running steps of `session_id`, at once, then at every change and every `tick_s`
        (so elapsed times tick), ending with an empty snapshot when nothing runs."""
        with self.signals.subscribe(session_id) as changed:
            while True:
                changed.clear()
                snapshot = self.running(session_id)
                yield snapshot
                if not snapshot:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), tick_s)

    async def aclose(self) -> None:
        """Stop waiting on running steps (they stay unfinished in the store and resume later)."""
        self._closed = True
        tasks = [run.task for run in self._runs.values()] + list(self._waiting_again)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._blender.shutdown(wait=False, cancel_futures=True)
        self._preparer.shutdown(wait=False, cancel_futures=True)
        await self._clients.aclose()

    @property
    def in_memory(self) -> dict[str, int]:
        """How many entries each in-memory table holds (they must shrink back to nothing)."""
        return {
            "runs": len(self._runs),
            "uploads": len(self._uploads),
            "watched_sessions": self.signals.watched_sessions,
            "visitor_clients": self._clients.visitor_clients,
        }

    # -- the run of one step ---------------------------------------------------------------------

    async def _run(self, step: Step, api_key: Secret | None) -> Step:
        payer = _payer_of(api_key)
        async with self._clients.using(api_key) as client:
            try:
                if step.is_waiting:
                    step = await self._await_parent(step)
                created_at = None  # when a create made here answered: the wait counts from it
                if step.task_id is None:
                    await self._check_region(step)
                    sending = [step]  # with its upload recorded, once made: a retry sends the same
                    step, created_at = await self._persist(
                        step, lambda: self._submit(sending, client, payer)
                    )
                task = await self._wait(step, client, created_at)
                self._report(step, "downloading")
                return await self._finish(step, task, client)
            except asyncio.CancelledError:
                raise  # shutting down: the step stays unfinished in the store, resumed next start
            except TaskTimeoutError as exc:
                # The task may still finish and be charged: leave the step running in the store,
                # saying so, to be read again (`_again_later`, and at the next start).
                return await self._left_open(replace(step, error=str(exc)))
            except _StillFetching as fetching:
                # Completed and charged: the step stays "completed, fetching" in the store.
                return fetching.step
            except _Unanswered as unanswered:
                # RunAPI may have the task: the step stays open in the store, saying so, to be
                # asked for again (`_again_later`, and at the next start).
                message = UNANSWERED.format(waited=_duration(self._deadline_s))
                return await self._left_open(replace(unanswered.step, error=message))
            except _ResultGone:
                message = RESULT_GONE.format(task_id=step.task_id)
                return await self._fail(step, message, cost_cents=PRICE_CENTS[_model(step)])
            except AuthenticationError as exc:
                # A visitor's pasted key was refused (revoked since it was checked, say).
                return await self._fail(step, PASTED_KEY_REFUSED if api_key else str(exc))
            except (RunAPIError, ImageError, HistoryError, RegionError) as exc:
                if isinstance(exc, TaskFailedError):
                    self._refunded.add(step.step_id)
                if step.source.image_sha256 is not None:
                    # (RunAPI may have lost the file: the next edit of it uploads it again,
                    # rather than failing the same way for the rest of its hour.)
                    sha = step.source.image_sha256
                    for lost in [k for k in self._uploads if k[0] == payer and k[2] == sha]:
                        del self._uploads[lost]
                return await self._fail(step, str(exc))
            except Exception as exc:
                log.exception("Step %s failed unexpectedly: %r", step.step_id, exc)
                return await self._fail(step, UNEXPECTED_FAILURE)

    async def _wait(self, step: Step, client: RunAPIClient, created_at: float | None) -> Task:
        """The step's task once it has ended, read on the learned schedule; reads RunAPI does
        not answer are tried again (`_persist`) within the deadline."""
        fresh = created_at is not None
        started = time.monotonic()

        async def wait() -> Task:
            nonlocal created_at
            since = created_at
            created_at = None  # a read after a failed one is sent at once
            return await client.wait_for_task(
                step.task_id or "",
                model=MODEL_IDS[_model(step)],
                on_status=lambda t, elapsed_s, missed_s: self._on_status(
                    step, t, elapsed_s, missed_s, fresh
                ),
                deadline_s=max(1.0, self._deadline_s - (time.monotonic() - started)),
                created_at=since,
            )

        return await self._persist(step, wait)

    async def _persist(self, step: Step, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()`, again after a pause while RunAPI is busy, unavailable or unreachable
        (the client has already retried within its own limits), until the task's deadline;
        then `_Unanswered`. Anything else is raised at once."""
        delays = iter(TRANSIENT_RETRY_S)
        started = time.monotonic()
        while True:
            try:
                return await attempt()
            except TRANSIENT as exc:
                delay = next(delays, TRANSIENT_RETRY_S[-1])
                if time.monotonic() - started + delay > self._deadline_s:
                    raise _Unanswered(step) from exc
                log.info(
                    "Step %s: RunAPI did not answer (%r); again in %.0f s", step.step_id, exc, delay
                )
                # Said while it lasts (the next answer's phase replaces it): the elapsed time
                # alone only counted up (UX audit 1).
                if (run := self._runs.get(step.step_id)) is not None:
                    self._report(step, run.update.phase, NOT_ANSWERING)
                await asyncio.sleep(delay)

    async def _await_parent(self, step: Step) -> Step:
        """Wait for the step before a typed-ahead one; its image becomes this step's source.
        The step before it may change meanwhile (it was cancelled: `reparent`), so the step's
        own record is read again each time."""
        with self.signals.subscribe(step.session_id) as changed:
            while True:
                changed.clear()
                session = await asyncio.to_thread(self._store.load_session, step.session_id)
                step = session.steps.get(step.step_id, step)
                assert step.parent_id is not None
                parent = session.steps.get(step.parent_id)
                if parent is not None and parent.state is StepState.COMPLETED and parent.result:
                    break
                if parent is not None and parent.is_finished:
                    raise HistoryError(
                        "The step before this one failed, so this one did not run. Try again runs "
                        "the one before again, then this one."
                    )
                running = self._runs.get(step.parent_id)
                if running is not None and not running.task.done():
                    woken = asyncio.ensure_future(changed.wait())
                    try:
                        await asyncio.wait(
                            [running.task, woken], return_when=asyncio.FIRST_COMPLETED
                        )
                    finally:
                        woken.cancel()
                else:  # run by another process (the CLI, a second studio): look again shortly
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), PARENT_POLL_S)
        step = step.with_source_image(parent.result.sha256)
        await asyncio.to_thread(self._store.save_step, step)
        run = self._runs.get(step.step_id)
        if run is not None:
            run.waiting, run.started_at = False, self._now()
            run.update = replace(run.update, step=step, elapsed_s=0.0)
        return step

    def reparent(self, steps: list[Step]) -> None:
        """Waiting steps now follow another step (the one before them was cancelled)."""
        for step in steps:
            run = self._runs.get(step.step_id)
            if run is not None:
                run.update = replace(run.update, step=step)

    async def _submit(
        self, sending: list[Step], client: RunAPIClient, payer: str
    ) -> tuple[Step, float | None]:
        """Create the step (`sending[0]`) 's task and record its id; the step, and when the
        create answered (None when the answer says the task has ended: a replayed create, read
        at once). The step with its upload recorded is left in `sending` before the create is
        sent: tried again, the create carries the very same body, so that RunAPI replays the
        task it may have made rather than refusing another body under the same key (the edit
        would fail while its first task was charged)."""
        step = sending[0]
        params = step.params
        assert params is not None, "only edit and generate steps are submitted"
        source_url, aspect_ratio = None, params.aspect_ratio
        if step.source.kind != "none":
            source_url, step, natural_ratio = await self._source_url(step, client, payer)
            sending[0] = step
            aspect_ratio = aspect_ratio or natural_ratio
        request = TaskRequest(
            model=MODEL_IDS[params.model],
            prompt=params.prompt,
            source_image_url=source_url,
            aspect_ratio=aspect_ratio or DEFAULT_GENERATE_RATIO,
            output_format=params.output_format,
            enable_translation=params.enable_translation,
            enable_prompt_expansion=params.enable_prompt_expansion,
            safety_tolerance=params.safety_tolerance,
        )
        task = await client.create_task(request, idempotency_key=step.step_id)
        created_at = time.monotonic() if task.status in ("pending", "processing") else None
        step = step.start(task.task_id, self._now())
        await asyncio.to_thread(self._store.save_step, step)  # write-ahead, before any wait
        self._report(step, "submitted")
        return step, created_at

    async def _source_url(
        self, step: Step, client: RunAPIClient, payer: str
    ) -> tuple[str, Step, str]:
        """The URL RunAPI fetches the source from (uploaded with `payer`'s key), the step (with
        its upload recorded) and the supported ratio nearest to the source's own."""
        source = step.source
        sha = source.image_sha256
        if sha is None:
            raise HistoryError("This step's source image is missing from the history.")
        store, session_id = self._store, step.session_id

        def look() -> tuple[SourceImage, str]:  # (one hop to a thread: two reads)
            # Stored bytes were checked when they came in: their header says enough (no decode).
            image = describe(store.read_image(sha))
            return image, store.owners_of([session_id]).get(session_id) or ""

        image, owner = await asyncio.to_thread(look)
        ratio = nearest_aspect_ratio(image.width, image.height)
        if source.kind == "link" and source.link_url and is_public_link(source.link_url):
            return source.link_url, step, ratio
        now = self._now()
        if source.uploaded_url:
            # A create may have gone with this body (a retried or resumed step): the very same
            # body again, so that its idempotent create replays, even once the upload expired
            # (RunAPI has its task; were there none, the new one fails without a charge).
            return source.uploaded_url, step, ratio
        self._uploads = {k: u for k, u in self._uploads.items() if u.expires_at > now}
        cached = self._uploads.get((payer, owner, sha))
        if cached is None or cached.expires_at - now < UPLOAD_REUSE_MARGIN:
            self._report(step, "uploading")
            # A place that comes free goes to the conversion whose owner's sessions had the
            # fewest pixels converted in the last minute, this one's included: 40 callers'
            # 8-megapixel sources, first come first served, held another visitor's 64 x 64
            # edit for 58 s (review 52 F1). Counting this one's own pixels puts a small image
            # ahead of large ones from owners as new as its own.
            pixels = image.width * image.height
            used = used_with(self._converted, owner, pixels)
            async with self._upload_turns.place(used):
                prepared = await asyncio.get_running_loop().run_in_executor(
                    self._preparer, self._prepare, image
                )
            cached = await client.upload_image(prepared.data, file_name=prepared.file_name)
            self._uploads[(payer, owner, sha)] = cached
        step = step.with_upload(cached.url, cached.expires_at)
        await asyncio.to_thread(self._store.save_step, step)
        return cached.url, step, ratio

    async def _finish(self, step: Step, task: Task, client: RunAPIClient) -> Step:
        # A completed task is charged: a step that ends without its image says what it cost.
        cost = _charged(step, task)
        if not task.image_urls:
            message = "RunAPI reported the edit complete but sent no image."
            return await self._fail(step, message, cost_cents=cost)
        data, task = await self._fetch_result(step, task, client)
        cost = _charged(step, task)
        step = replace(step, error=None)
        as_is = step.region is None and self._signer is None
        result = None
        delays = iter(RESULT_RETRY_S)
        started = time.monotonic()
        while True:
            try:
                if as_is:  # (checked in the same hop as it is stored)
                    return await self._keep_as_is(step, data, cost)
                if result is None:
                    result = await asyncio.to_thread(check_result, data)
                return await self._keep(step, result, cost)
            except ImageError as exc:  # (the check's alone: it is not an image, or not whole)
                return await self._fail(step, str(exc), cost_cents=cost)
            except (OSError, StoreError) as exc:
                log.warning("Step %s: its image could not be saved (%r)", step.step_id, exc)
            step = await self._pause_paid(step, STORING, delays, started)

    async def _keep(self, step: Step, result: ResultImage, cost: int) -> Step:
        """Store a completed step's checked `result` (marked, and blended into its source when
        kept to a region), and the step."""
        ref = await self._put(
            await self._marked(result.data, result.format, step),
            result.format,
            result.width,
            result.height,
        )
        raw, found = None, None
        if step.region is not None:
            blended = await self._blend(step, result.data)
            if blended is not None:
                raw, (ref, found) = ref, blended
        step = replace(step, error=None).complete(
            ref, self._now(), cost_cents=cost, raw_result=raw, found_mask_sha256=found
        )
        run = self._runs.get(step.step_id)
        seen = (run.seen_s, run.missed_s) if run is not None and run.seen_s else None
        await asyncio.to_thread(self._store.save_step, step, poll_seen=seen)
        return step

    async def _keep_as_is(self, step: Step, data: bytes, cost: int) -> Step:
        """`_keep` for the usual result (no region, no C2PA signature): checked (`check_result`:
        raises `ImageError`), marked, stored and the step recorded, in one hop to a thread (four
        before, and the mark on the loop)."""
        packet = xmp_packet(self._system(step), simulated=self._simulated)
        run = self._runs.get(step.step_id)
        seen = (run.seen_s, run.missed_s) if run is not None and run.seen_s else None
        store = self._store

        def keep() -> Step:
            result = check_result(data)
            marked = mark(result.data, result.format, packet)
            ref = store.put_image(
                marked, format=result.format, width=result.width, height=result.height
            )
            kept = replace(step, error=None).complete(ref, self._now(), cost_cents=cost)
            store.save_step(kept, poll_seen=seen)
            return kept

        return await asyncio.to_thread(keep)

    async def _fetch_result(
        self, step: Step, task: Task, client: RunAPIClient
    ) -> tuple[bytes, Task]:
        """The image of a completed (so charged) task. A result URL that does not answer (it
        expired, the CDN is down) is not a failed edit: the task is read again for a fresh URL,
        backing off, until the image comes or the deadline passes (`_StillFetching`: the step
        stays unfinished, and the next start fetches it). Only a task RunAPI no longer has
        ends the step (`_ResultGone`)."""
        delays = iter(RESULT_RETRY_S)
        started = time.monotonic()
        while True:
            if task.image_urls:
                try:
                    url = task.image_urls[0]
                    return await client.download_result(url, max_bytes=MAX_RESULT_BYTES), task
                except (InvalidRequestError, UnexpectedResponseError):
                    raise  # not an image, or too large: no fresh link changes that
                except RunAPIError as exc:
                    log.info("Step %s: its image did not come (%r)", step.step_id, exc)
            step = await self._pause_paid(step, FETCHING, delays, started)
            try:
                task = await client.get_task(step.task_id or "")
            except NotFoundError:
                raise _ResultGone from None
            except RunAPIError as exc:  # read again after the next pause
                log.info("Step %s: its task could not be read (%r)", step.step_id, exc)

    async def _pause_paid(
        self, step: Step, saying: str, delays: Iterator[float], started: float
    ) -> Step:
        """A completed (so charged) step whose image is not kept yet, `saying` why: said once
        (in the store, when it can be written, and to its watchers), then the next pause of
        `delays`; past the task's deadline, counted from `started`, `_StillFetching` (the step
        stays unfinished, and the next start fetches its image)."""
        if step.error != saying:
            step = replace(step, error=saying)
            with contextlib.suppress(OSError, StoreError):  # (the store may be what fails)
                await asyncio.to_thread(self._store.save_step, step)
            self._report(step, "downloading")
        delay = next(delays, RESULT_RETRY_S[-1])
        if time.monotonic() - started + delay > self._deadline_s:
            raise _StillFetching(step)
        await asyncio.sleep(delay)
        return step

    async def _marked(self, data: bytes, image_format: str, step: Step) -> bytes:
        """`data` saying inside the file that AI made it, and which model (XMP; and a signed
        C2PA manifest when the host gave a certificate). A signing failure keeps the XMP: what
        was paid for is never lost."""
        system = self._system(step)
        marked = mark(data, image_format, xmp_packet(system, simulated=self._simulated))
        if self._signer is None or image_format not in ("png", "jpeg"):
            return marked
        try:
            return await asyncio.to_thread(self._signer.sign, marked, image_format, system)
        except Exception as exc:  # c2pa-python's own errors; the image is kept unsigned
            log.warning("Step %s: the C2PA manifest could not be signed (%r)", step.step_id, exc)
            return marked

    def _system(self, step: Step) -> str:
        """What made `step`'s image, as its XMP says (`provenance.xmp_packet`)."""
        if self._simulated:
            return "Kontext Studio simulator (not FLUX.1 Kontext)"
        return f"FLUX.1 Kontext [{_model(step)}]"

    async def _check_region(self, step: Step) -> None:
        """Before anything is paid: the step's box or mask must fit its source (a step typed
        ahead learns its source only now). Raises `RegionError` with one sentence."""
        region = step.region
        if region is None or region.kind == "auto" or step.source.image_sha256 is None:
            return
        data = await asyncio.to_thread(self._store.read_image, step.source.image_sha256)
        source = await asyncio.to_thread(describe, data)  # stored: checked when it came in
        mask = None
        if region.mask_sha256 is not None:
            mask = await asyncio.to_thread(self._store.read_image, region.mask_sha256)
        from studio.regions import check_region  # OpenCV: loaded when a region is first used

        await asyncio.to_thread(
            check_region,
            (source.width, source.height),
            box=region.box,
            drawn_on=region.drawn_on,
            mask=mask,
        )

    async def _blend(self, step: Step, output: bytes) -> tuple[ImageRef, str | None] | None:
        """The step's image kept to its region at the source's size (on the blend thread, in
        turn: `BLENDS_AT_ONCE`), and the mask found for an "auto" region; None if it cannot be
        made (the model's output is then the step's image: what was paid for is never lost)."""
        region, sha = step.region, step.source.image_sha256
        assert region is not None
        assert step.params is not None
        if sha is None:
            return None
        from studio.regions import blend_files  # OpenCV: loaded when a region is first used

        params, store = step.params, self._store

        def blend() -> BlendedImage:  # its images are read only when its turn comes
            mask = None
            if region.kind == "mask" and region.mask_sha256 is not None:
                mask = store.read_image(region.mask_sha256)
            return blend_files(
                store.read_image(sha),
                output,
                image_format=params.output_format,
                box=region.box,
                drawn_on=region.drawn_on,
                mask=mask,
            )

        try:
            owners = await asyncio.to_thread(store.owners_of, [step.session_id])
            owner = owners.get(step.session_id) or ""
            # Turns by the pixels each owner had blended lately, this one's counted: a small
            # blend goes ahead of large ones from owners as new as its own (as conversions do).
            known = await asyncio.to_thread(store.image_pixels, [sha])
            used = used_with(self._blended, owner, known.get(sha, UNKNOWN_BLEND_PIXELS))
            async with self._blend_turns.place(used):
                blended = await asyncio.get_running_loop().run_in_executor(self._blender, blend)
            size = (blended.width, blended.height)
            marked = await self._marked(blended.data, blended.format, step)
            ref = await self._put(marked, blended.format, *size)
            found = None
            if blended.found_mask is not None:
                found = (await self._put(blended.found_mask, "png", *size)).sha256
            return ref, found
        except (RegionError, ImageError, StoreError, MemoryError) as exc:
            log.warning("Step %s kept the model's output: the blend failed (%s)", step.step_id, exc)
            return None

    async def _put(self, data: bytes, image_format: str, width: int, height: int) -> ImageRef:
        return await asyncio.to_thread(
            self._store.put_image, data, format=image_format, width=width, height=height
        )

    async def _left_open(self, step: Step) -> Step:
        """`step`, open, saying why in the store (when it can be written: the store may be what
        failed) and to its watchers; it cannot be cancelled until it is run again."""
        self._open_ids.add(step.step_id)
        with contextlib.suppress(OSError, StoreError):
            await asyncio.to_thread(self._store.save_step, step)
        self._report(step, "queued" if step.task_id is None else "submitted")
        return step

    async def _fail(self, step: Step, message: str, *, cost_cents: int = 0) -> Step:
        failed = step.fail(message, self._now(), cost_cents=cost_cents)
        await asyncio.to_thread(self._store.save_step, failed)
        return failed

    # -- plumbing -------------------------------------------------------------------------------

    def _on_status(
        self, step: Step, task: Task, elapsed_s: float, missed_s: float, learn: bool
    ) -> None:
        # A resumed step's wait began after the restart, so only fresh ones teach the schedule.
        if learn and task.status == "completed":
            if self._schedule is not None:
                self._schedule.observe(MODEL_IDS[_model(step)], elapsed_s, after=missed_s)
            if (run := self._runs.get(step.step_id)) is not None:
                # Stored with the result, for the next process to learn.
                run.seen_s, run.missed_s = elapsed_s, missed_s
        self._report(step, _phase_of(task))

    def _report(self, step: Step, phase: Phase, note: str = "") -> None:
        run = self._runs.get(step.step_id)
        if run is None:
            return
        run.update = StepUpdate(step, phase, self._elapsed(step), note)
        self.signals.notify(step.session_id)

    def _forget(self, step: Step) -> None:
        """A step's in-memory state goes once it ends; its watchers read the end in the store."""
        self._runs.pop(step.step_id, None)
        self.signals.notify(step.session_id)

    def _elapsed(self, step: Step) -> float:
        """Seconds since `step` began its own work; while it waits for its parent, since it
        was made. (An edit typed ahead said "Sent to RunAPI… 73.6 s" four seconds after it
        was sent, counting the wait behind the one before it: UX audit 10.)"""
        run = self._runs.get(step.step_id)
        since = (run.started_at if run is not None else None) or step.created_at
        return (self._now() - since).total_seconds()


def _duration(seconds: float) -> str:
    """`seconds` in words: "15 minutes", "30 seconds"."""
    if seconds >= 90:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds:.0f} second{'' if round(seconds) == 1 else 's'}"


def _charged(step: Step, task: Task) -> int:
    """What RunAPI charged for `step`'s completed `task`: its billing's, else the list price."""
    if task.billing is not None and task.billing.charged_cents is not None:
        return task.billing.charged_cents
    return PRICE_CENTS[_model(step)]


def _payer_of(api_key: Secret | None) -> str:
    """Who pays, as the runner's memory keys it: "" for the server's key, else a digest of the
    visitor's (never the key)."""
    return "" if api_key is None else hashlib.sha256(api_key.reveal().encode()).hexdigest()


class _StillFetching(Exception):
    """A completed task's image did not come before the deadline; `step` says so."""

    def __init__(self, step: Step) -> None:
        super().__init__(step.step_id)
        self.step = step


class _Unanswered(Exception):
    """RunAPI did not answer within the task's deadline; `step` is as far as it got."""

    def __init__(self, step: Step) -> None:
        super().__init__(step.step_id)
        self.step = step


class _ResultGone(Exception):
    """RunAPI no longer has a completed task, so its image cannot be fetched."""


def _final(step: Step, now: datetime) -> StepUpdate:
    """The last update of a step whose run ended: completed, failed, or given up on for now."""
    phase: Phase = "completed" if step.state is StepState.COMPLETED else "failed"
    elapsed = step.elapsed_s
    if elapsed is None:
        elapsed = (now - step.created_at).total_seconds()
    return StepUpdate(step, phase, elapsed)


def _model(step: Step) -> Model:
    assert step.params is not None
    return step.params.model


def _phase_of(task: Task) -> Phase:
    """The phase a task status means while we still wait; only the engine's own record of the
    step says `completed` or `failed`, once the image or the error is stored."""
    match task.status:
        case "pending":
            return "pending"
        case "completed":
            return "downloading"
        case _:
            return "processing"
