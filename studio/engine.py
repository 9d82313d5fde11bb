"""The use cases: start a session, edit, retry, compare, navigate, resume: where an edit runs.

Imports everything below it (params, history, images, links, store, runapi); only ui and cli import
it. Every edit is written ahead: the step is stored as queued before the create call (its id is the
RunAPI `Idempotency-Key`), the task id is stored the moment the create returns, and the result is
downloaded and stored the moment the task completes. So a step interrupted at any point can be
resumed by asking again, and the service answers with the original task instead of charging twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from studio.bundle import BundleError, chain_params, read_bundle, write_bundle
from studio.config import Secret, Settings
from studio.history import (
    UNFINISHED_STATES,
    HistoryError,
    ImageRef,
    Session,
    Step,
    StepSource,
    StepState,
    new_id,
)
from studio.images import (
    ImageError,
    SourceImage,
    check_result,
    make_thumbnail,
    open_source,
    prepare_upload,
)
from studio.links import fetch_link, is_public_link
from studio.params import (
    DEFAULT_GENERATE_RATIO,
    MODEL_IDS,
    PRICE_CENTS,
    EditParams,
    Model,
    ParamsError,
    nearest_aspect_ratio,
)
from studio.runapi import (
    RunAPIClient,
    RunAPIError,
    Task,
    TaskRequest,
    TaskTimeoutError,
    UploadedFile,
    poll_delays,
)
from studio.store import SessionSummary, Store, StoreError

log = logging.getLogger(__name__)

Phase = Literal[
    "queued",
    "uploading",
    "submitted",
    "pending",
    "processing",
    "downloading",
    "completed",
    "failed",
]
# An uploaded source expires an hour after upload (contract: "Uploading a local image"); reuse it
# only while at least this much of that hour is left, so a slow queue never outlives the URL.
UPLOAD_REUSE_MARGIN = timedelta(minutes=10)
# Results are about 1 MP; 50 MB is far above any real PNG of that size and still bounds memory.
MAX_RESULT_BYTES = 50 * 1024 * 1024
# The sentence shown for a failure we did not foresee; its details go to the log only.
UNEXPECTED_FAILURE = "The edit failed for a reason the studio did not expect; it has been logged."
# Errors whose `str()` is one sentence fit for a user; the UI and CLI show these and only these.
USER_ERRORS: tuple[type[Exception], ...] = (
    ImageError,
    ParamsError,
    HistoryError,
    BundleError,
    StoreError,
    RunAPIError,
)
THUMBNAIL_SIDE = 256
PNG_SIGNATURE = b"\x89PNG"


@dataclass(frozen=True, slots=True)
class StepUpdate:
    """Where one running step is: its latest record, the phase and seconds since it was queued."""

    step: Step
    phase: Phase
    elapsed_s: float

    @property
    def is_final(self) -> bool:
        return self.phase in ("completed", "failed")


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Engine:
    """Runs edits against RunAPI and keeps every step in the store.

    Edits run as tasks owned by the engine, not by the caller: a browser tab that closes or a
    caller that stops waiting does not stop an edit that is being paid for.
    """

    def __init__(
        self,
        store: Store,
        client: RunAPIClient,
        *,
        allow_private_links: bool = True,
        task_deadline_s: float = 900.0,
        now: Callable[[], datetime] = _utc_now,
        client_for_key: Callable[[str], RunAPIClient] | None = None,
    ) -> None:
        self.store = store
        self._client = client
        self._client_for_key = client_for_key
        self._clients: dict[str, RunAPIClient] = {}
        self._allow_private_links = allow_private_links
        self._deadline_s = task_deadline_s
        self._now = now
        self._session_locks: dict[str, asyncio.Lock] = {}
        self._uploads: dict[str, UploadedFile] = {}
        self._running: dict[str, asyncio.Task[Step]] = {}
        self._progress: dict[str, StepUpdate] = {}
        self._changed: dict[str, asyncio.Event] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Engine:
        """Open the store under `settings.home` and a client for the configured service."""
        if settings.api_key is None:
            raise ValueError("the engine needs a RunAPI key (or the simulator's)")
        store = Store.open(settings.home)

        def client_for(key: str, base_url: str = settings.base_url) -> RunAPIClient:
            return RunAPIClient(
                api_key=key,
                base_url=base_url,
                timeout_s=settings.request_timeout_s,
                connect_timeout_s=settings.connect_timeout_s,
                poll_schedule=lambda model: poll_delays(model, scale=settings.poll_scale),
            )

        server_url = settings.simulator_url or settings.base_url
        return cls(
            store,
            client_for(settings.api_key.reveal(), server_url),
            allow_private_links=not settings.hosted,
            task_deadline_s=settings.task_deadline_s,
            client_for_key=client_for,
        )

    async def aclose(self) -> None:
        """Stop waiting on running edits (they resume at the next start) and close everything."""
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)
        for client in (self._client, *self._clients.values()):
            await client.aclose()
        await asyncio.to_thread(self.store.close)

    # -- intake ---------------------------------------------------------------------------------

    async def read_image(self, data: bytes) -> SourceImage:
        """Check uploaded or pasted bytes; raises `ImageError` with one plain sentence."""
        return await asyncio.to_thread(open_source, data)

    async def read_link(self, url: str) -> SourceImage:
        """Fetch and check a user's link; raises `ImageError` (`LinkError`) with one sentence."""
        return await fetch_link(url, allow_private=self._allow_private_links)

    # -- sessions -------------------------------------------------------------------------------

    async def start_session(
        self,
        source: SourceImage | None,
        *,
        name: str | None = None,
        owner: str | None = None,
        link_url: str | None = None,
    ) -> Session:
        """Store `source` (or nothing, to generate) as the origin of a new session."""
        now = self._now()
        origin = None
        if source is not None:
            origin = await self._put_image(source.data, source.format, source.width, source.height)
        step_source = StepSource(kind="link", link_url=link_url) if link_url else None
        session = Session.start(
            new_id(),
            name or f"Session {now:%Y-%m-%d %H:%M}",
            origin,
            now,
            source=step_source,
            owner=owner,
        )
        await asyncio.to_thread(self.store.create_session, session)
        return session

    async def load_session(self, session_id: str) -> Session:
        return await asyncio.to_thread(self.store.load_session, session_id)

    async def list_sessions(self, owner: str | None = None) -> list[SessionSummary]:
        return await asyncio.to_thread(self.store.list_sessions, owner)

    async def navigate(self, session_id: str, move: Callable[[Session], Session]) -> Session:
        """Apply one pure move (undo, redo, make current, rename...) and store the result."""
        async with self._lock(session_id):
            session = await self.load_session(session_id)
            moved = move(session)
            if moved.name != session.name:
                await asyncio.to_thread(self.store.rename_session, session_id, moved.name)
            if moved.steps.keys() != session.steps.keys():
                gone = session.steps.keys() - moved.steps.keys()
                await asyncio.to_thread(self.store.delete_steps, moved, gone)
            await asyncio.to_thread(self.store.set_current, moved)
            return moved

    # -- edits ----------------------------------------------------------------------------------

    async def submit_edit(
        self,
        session_id: str,
        params: EditParams,
        *,
        parent_step_id: str | None = None,
        api_key: Secret | None = None,
    ) -> Step:
        """Queue an edit after the current step (or after `parent_step_id`) and start it.

        Returns the queued step at once; follow it with `watch` or `wait`. Raises `ParamsError`
        or `HistoryError` (with one plain sentence) when the edit cannot start.
        """
        async with self._lock(session_id):
            session = await self.load_session(session_id)
            if parent_step_id is not None:
                session = session.make_current(parent_step_id)
            parent = session.current
            editing = parent.result is not None or parent.state is StepState.FAILED
            params = params.validated(editing=editing)
            session = session.add_step(new_id(), params, self._now())
            step = session.current
            await asyncio.to_thread(self.store.save_step, step)
            await asyncio.to_thread(self.store.set_current, session)
        self._launch(step, api_key)
        return step

    async def retry(self, session_id: str, step_id: str, *, api_key: Secret | None = None) -> Step:
        """Run a failed step again as a new sibling step; the failed one stays as it was."""
        async with self._lock(session_id):
            session = await self.load_session(session_id)
            session = session.retry(step_id, new_id(), self._now())
            step = session.current
            await asyncio.to_thread(self.store.save_step, step)
            await asyncio.to_thread(self.store.set_current, session)
        self._launch(step, api_key)
        return step

    async def edit(self, session_id: str, params: EditParams, **kwargs: object) -> Step:
        """Submit an edit and wait for its final step (completed or failed)."""
        step = await self.submit_edit(session_id, params, **kwargs)  # type: ignore[arg-type]
        return await self.wait(step.step_id)

    async def compare(
        self,
        session_id: str,
        params: EditParams,
        *,
        parent_step_id: str | None = None,
        api_key: Secret | None = None,
    ) -> tuple[Step, Step]:
        """Queue the same edit on pro and on max, side by side from the same parent.

        Both start at once, so the pair takes about as long as the slower model. Neither becomes
        current: the caller keeps one with `keep`, and the other stays as a sibling branch.
        """
        async with self._lock(session_id):
            session = await self.load_session(session_id)
            parent_id = parent_step_id or session.current_step_id
            steps = []
            for model in ("pro", "max"):
                moved = session.make_current(parent_id)
                editing = moved.current.result is not None
                model_params = replace(params, model=model).validated(editing=editing)
                session = moved.add_step(new_id(), model_params, self._now())
                steps.append(session.current)
                await asyncio.to_thread(self.store.save_step, session.current)
            # Back at the parent, with nothing to redo: neither result is current until kept.
            session = replace(session, current_step_id=parent_id, redo_stack=())
            await asyncio.to_thread(self.store.set_current, session)
        for step in steps:
            self._launch(step, api_key)
        return steps[0], steps[1]

    async def keep(self, session_id: str, step_id: str) -> Session:
        """Make a compared result current, so the chain goes on from it."""
        return await self.navigate(session_id, lambda s: s.make_current(step_id))

    async def wait(self, step_id: str) -> Step:
        """The final record of a step started by this engine (or already finished in the store)."""
        async for update in self.watch(step_id):
            if update.is_final:
                return update.step
        raise HistoryError(f"Step {step_id} is not running in this studio.")

    async def watch(self, step_id: str) -> AsyncIterator[StepUpdate]:
        """Each new update of a running step, ending with the final one."""
        event = self._changed.setdefault(step_id, asyncio.Event())
        seen: StepUpdate | None = None
        while True:
            update = self._progress.get(step_id)
            if update is not None and update is not seen:
                seen = update
                yield update
                if update.is_final:
                    return
            if step_id not in self._running and (update is None or update.is_final):
                return
            event.clear()
            await event.wait()

    def progress(self, step_id: str) -> StepUpdate | None:
        """The latest update of a step this engine is running or ran, without waiting."""
        return self._progress.get(step_id)

    def is_running(self, step_id: str) -> bool:
        return step_id in self._running

    async def resume_unfinished(self) -> list[Step]:
        """Pick up every queued or running step left by an earlier run (a crash or a restart).

        A step with a task id is polled by that id; one without is created again under its own
        idempotency key, so the service answers with the task it may already have started.
        """
        steps = await asyncio.to_thread(self.store.unfinished_steps)
        for step in steps:
            if step.step_id not in self._running:
                log.info("Resuming step %s (task %s)", step.step_id, step.task_id)
                self._launch(step, None)
        return steps

    # -- portable sessions ----------------------------------------------------------------------

    async def export_session(self, session_id: str, *, branch_step_id: str | None = None) -> bytes:
        """A ZIP of the session (or of the path to `branch_step_id`): images and session.json."""
        session = await self.load_session(session_id)
        step_ids = None
        if branch_step_id is not None:
            session = session.make_current(branch_step_id)
            step_ids = [s.step_id for s in session.path()]
        return await asyncio.to_thread(
            write_bundle, session, self.store.read_image, step_ids=step_ids
        )

    async def import_session(self, data: bytes, *, owner: str | None = None) -> Session:
        """Store an exported ZIP as a new session; its images come back byte for byte."""
        bundle = await asyncio.to_thread(read_bundle, data, now=self._now(), owner=owner)
        for image in bundle.images.values():
            await asyncio.to_thread(check_result, image.data)
            ref = image.ref
            await self._put_image(image.data, ref.format, ref.width, ref.height)
        await asyncio.to_thread(self.store.create_session, bundle.session)
        return bundle.session

    async def replay(
        self,
        data: bytes,
        source: SourceImage | None,
        *,
        owner: str | None = None,
        api_key: Secret | None = None,
        on_step: Callable[[Step], None] | None = None,
    ) -> Session:
        """Apply the instructions of an exported chain, in order, to a new source image.

        Stops at the first step that fails; that step stays in the new session's history.
        """
        bundle = await asyncio.to_thread(read_bundle, data, now=self._now())
        chain = chain_params(bundle)
        if not chain:
            raise BundleError("The export has no instructions to replay.")
        session = await self.start_session(
            source, name=f"Replay of {bundle.session.name}"[:200], owner=owner
        )
        for params in chain:
            step = await self.edit(session.session_id, params, api_key=api_key)
            if on_step is not None:
                on_step(step)
            if step.state is not StepState.COMPLETED:
                break
        return await self.load_session(session.session_id)

    def thumbnail(self, sha256: str) -> Path:
        """A small copy of a stored image for history strips, made once. Blocking: use a thread."""
        folder = self.store.home / "thumbs"
        for suffix in (".jpg", ".png"):
            if (path := folder / f"{sha256}{suffix}").exists():
                return path
        thumb = make_thumbnail(self.store.read_image(sha256), max_side=THUMBNAIL_SIDE)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{sha256}{'.png' if thumb.startswith(PNG_SIGNATURE) else '.jpg'}"
        tmp = path.with_name(f".{path.name}.{new_id()}.tmp")
        tmp.write_bytes(thumb)
        tmp.replace(path)
        return path

    async def balance_cents(self, api_key: Secret | None = None) -> int | None:
        balance = await self._client_for(api_key).get_balance()
        return balance.balance_cents

    # -- the run of one step -------------------------------------------------------------------

    def _launch(self, step: Step, api_key: Secret | None) -> None:
        client = self._client_for(api_key)
        task = asyncio.create_task(self._run(step, client), name=f"step-{step.step_id}")
        self._running[step.step_id] = task
        self._report(step, "queued" if step.task_id is None else "submitted")

        def _done(_: asyncio.Task[Step]) -> None:
            self._running.pop(step.step_id, None)
            self._signal(step.step_id)

        task.add_done_callback(_done)

    async def _run(self, step: Step, client: RunAPIClient) -> Step:
        try:
            if step.task_id is None:
                step = await self._submit(step, client)
            task = await client.wait_for_task(
                step.task_id or "",
                model=MODEL_IDS[_model(step)],
                on_status=lambda t, _elapsed: self._report(step, _phase_of(t)),
                deadline_s=self._deadline_s,
            )
            self._report(step, "downloading")
            return await self._finish(step, task, client)
        except asyncio.CancelledError:
            raise  # shutting down: the step stays unfinished in the store and resumes next start
        except TaskTimeoutError as exc:
            # The task may still finish and be charged: leave the step running so the next
            # start polls it again, and tell the watcher.
            self._report(step, "failed", error=str(exc))
            return step
        except (RunAPIError, ImageError, HistoryError) as exc:
            return await self._fail(step, str(exc))
        except Exception:
            log.exception("Step %s failed unexpectedly", step.step_id)
            return await self._fail(step, UNEXPECTED_FAILURE)

    async def _submit(self, step: Step, client: RunAPIClient) -> Step:
        params = step.params
        assert params is not None, "only edit and generate steps are submitted"
        source_url, aspect_ratio = None, params.aspect_ratio
        if step.source.kind != "none":
            source_url, step, natural_ratio = await self._source_url(step, client)
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
        step = step.start(task.task_id, self._now())
        await asyncio.to_thread(self.store.save_step, step)  # write-ahead, before any wait
        self._report(step, "submitted")
        return step

    async def _source_url(self, step: Step, client: RunAPIClient) -> tuple[str, Step, str]:
        """The URL RunAPI fetches the source from, the step (with its upload recorded) and the
        supported ratio nearest to the source's own."""
        source = step.source
        sha = source.image_sha256
        if sha is None:
            raise HistoryError("This step's source image is missing from the history.")
        data = await asyncio.to_thread(self.store.read_image, sha)
        image = await asyncio.to_thread(open_source, data)
        ratio = nearest_aspect_ratio(image.width, image.height)
        if source.kind == "link" and source.link_url and is_public_link(source.link_url):
            return source.link_url, step, ratio
        now = self._now()
        expires = source.uploaded_expires_at
        if source.uploaded_url and expires and expires > now:
            # A resumed step re-sends the very same body, so its idempotent create replays.
            return source.uploaded_url, step, ratio
        cached = self._uploads.get(sha)
        if cached is None or cached.expires_at - now < UPLOAD_REUSE_MARGIN:
            self._report(step, "uploading")
            prepared = await asyncio.to_thread(prepare_upload, image)
            cached = await client.upload_image(prepared.data, file_name=prepared.file_name)
            self._uploads[sha] = cached
        step = step.with_upload(cached.url, cached.expires_at)
        await asyncio.to_thread(self.store.save_step, step)
        return cached.url, step, ratio

    async def _finish(self, step: Step, task: Task, client: RunAPIClient) -> Step:
        if not task.image_urls:
            return await self._fail(step, "RunAPI reported the edit complete but sent no image.")
        data = await client.download_result(task.image_urls[0], max_bytes=MAX_RESULT_BYTES)
        result = await asyncio.to_thread(check_result, data)
        ref = await self._put_image(result.data, result.format, result.width, result.height)
        cost = PRICE_CENTS[_model(step)]
        if task.billing is not None and task.billing.charged_cents is not None:
            cost = task.billing.charged_cents
        step = step.complete(ref, self._now(), cost_cents=cost)
        await asyncio.to_thread(self.store.save_step, step)
        self._report(step, "completed")
        return step

    async def _fail(self, step: Step, message: str) -> Step:
        failed = step.fail(message, self._now(), cost_cents=0)
        await asyncio.to_thread(self.store.save_step, failed)
        self._report(failed, "failed")
        return failed

    # -- plumbing -------------------------------------------------------------------------------

    def _report(self, step: Step, phase: Phase, *, error: str | None = None) -> None:
        if error is not None:
            step = replace(step, error=error)
        elapsed = (self._now() - step.created_at).total_seconds()
        if step.elapsed_s is not None and phase in ("completed", "failed"):
            elapsed = step.elapsed_s
        self._progress[step.step_id] = StepUpdate(step=step, phase=phase, elapsed_s=elapsed)
        self._signal(step.step_id)

    def _signal(self, step_id: str) -> None:
        event = self._changed.get(step_id)
        if event is not None:
            event.set()

    async def _put_image(self, data: bytes, image_format: str, width: int, height: int) -> ImageRef:
        return await asyncio.to_thread(
            self.store.put_image, data, format=image_format, width=width, height=height
        )

    def _lock(self, session_id: str) -> asyncio.Lock:
        return self._session_locks.setdefault(session_id, asyncio.Lock())

    def _client_for(self, api_key: Secret | None) -> RunAPIClient:
        """The server's client, or one per visitor key (kept only in memory, never stored)."""
        if api_key is None:
            return self._client
        digest = hashlib.sha256(api_key.reveal().encode()).hexdigest()
        if self._client_for_key is None:
            raise HistoryError("This studio does not take visitors' own keys.")
        if digest not in self._clients:
            self._clients[digest] = self._client_for_key(api_key.reveal())
        return self._clients[digest]


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


__all__ = [
    "UNFINISHED_STATES",
    "USER_ERRORS",
    "Engine",
    "ImageError",
    "RunAPIError",
    "StepUpdate",
    "StoreError",
]
