"""The one door from Gradio into the engine: a typed facade over an engine on its own loop.

Gradio runs async handlers on its server loop and cancels them when a tab closes; the engine's
edits must go on regardless, and must resume at start-up before any page is open. So the engine
lives on a private loop in a daemon thread, and every method here crosses to it. Progress crosses
back as an async iterator (`watch`): pushed by the engine, never polled by the page.

Handlers and the public API call these methods and nothing else of the engine. The store is
never seen from `ui/`: images come back as paths, sessions as `history` values.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from studio.config import Secret, Settings
from studio.engine import (
    MAX_BUNDLE_BYTES,
    USER_ERRORS,
    AuthenticationError,
    Engine,
    LimitError,
    RunAPIError,
    SessionSummary,
    StoreError,
)
from studio.history import ImageRef, Session, Step, StepUpdate
from studio.params import EditParams, Model, RegionRequest
from studio.ui.view import PageData
from studio.visitor import LOCAL, Visitor

T = TypeVar("T")
_END = object()

__all__ = [
    "LOCAL",
    "MAX_BUNDLE_BYTES",
    "USER_ERRORS",
    "Bridge",
    "KeyCheck",
    "SessionSummary",
    "Tick",
    "Visitor",
]


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """What RunAPI said of a visitor's pasted key: `accepted` None when it could not be asked
    (no answer); `refusal` is the sentence to show when it refused it."""

    accepted: bool | None
    balance_cents: int | None
    refusal: str | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    """A session's version (it changes with every step added, advanced or removed; it starts
    with the session's id), what runs in it now, and whether it moved on from the version of
    this session the tab last saw."""

    version: str | None
    running: dict[str, StepUpdate]
    changed: bool


class Bridge:
    """An engine living on a private loop in a daemon thread, and the typed calls into it."""

    def __init__(self, make_engine: Callable[[], Engine]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="engine", daemon=True)
        self._thread.start()
        self._engine = make_engine()

    @classmethod
    def from_settings(cls, settings: Settings) -> Bridge:
        """The engine the settings describe, on its own loop."""
        return cls(lambda: Engine.from_settings(settings))

    def resume_unfinished(self, timeout_s: float = 60) -> int:
        """Pick up the edits an earlier run left unfinished; how many there were."""
        return len(self.run(self._engine.resume_unfinished(), timeout_s))

    @property
    def engine(self) -> Engine:
        """The engine itself, for the composition root and tests; `ui/` uses the methods."""
        return self._engine

    # -- crossing -------------------------------------------------------------------------------

    async def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` on the engine's loop from any other loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """Run `coro` on the engine's loop from a plain thread and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def close(self) -> None:
        """Stop waiting on edits (they resume at the next start) and stop the loop."""
        self.run(self._engine.aclose(), timeout_s=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    # -- sessions -------------------------------------------------------------------------------
    # Every call names its `Visitor`: the engine lets them touch only their own sessions.

    async def page(
        self, session_id: str | None, who: Visitor, *, with_balance: bool = False
    ) -> PageData:
        """The session (or none), the visitor's sessions, what runs, and the files to show.

        The balance is the visitor's own key's, or the server's on a studio that is not hosted;
        a hosted studio never shows a visitor the host's balance.
        """
        return await self._call(self._page(session_id, who, with_balance))

    async def list_sessions(self, who: Visitor) -> list[SessionSummary]:
        return await self._call(self._engine.list_sessions(visitor=who))

    async def load_session(self, session_id: str, who: Visitor) -> Session:
        return await self._call(self._engine.load_session(session_id, visitor=who))

    async def start_session(
        self, data: bytes | None, who: Visitor, *, name: str | None = None
    ) -> Session:
        """A new session from uploaded bytes (checked first), or with no image for None."""
        return await self._call(self._engine.start_session_from_bytes(data, name=name, visitor=who))

    async def start_session_from_link(self, url: str, who: Visitor) -> Session:
        return await self._call(self._engine.start_session_from_link(url, visitor=who))

    async def make_current(self, session_id: str, step_id: str, who: Visitor) -> Session:
        return await self._call(
            self._engine.navigate(session_id, lambda s: s.make_current(step_id), visitor=who)
        )

    async def undo(self, session_id: str, from_step_id: str | None, who: Visitor) -> Session:
        """Move to the parent of `from_step_id` (the step a tab shows; default the current)."""
        return await self._call(
            self._engine.navigate(session_id, lambda s: _at(s, from_step_id).undo(), visitor=who)
        )

    async def redo(self, session_id: str, from_step_id: str | None, who: Visitor) -> Session:
        return await self._call(
            self._engine.navigate(session_id, lambda s: _at(s, from_step_id).redo(), visitor=who)
        )

    async def cancel(self, session_id: str, step_id: str, who: Visitor) -> Session:
        """Remove a queued step that has not started, and what was queued after it."""
        return await self._call(self._engine.cancel(session_id, step_id, visitor=who))

    async def tick(self, session_id: str | None, seen_version: str | None, who: Visitor) -> Tick:
        """What changed in a session since `seen_version`, and what runs in it now: cheap, so
        every open tab can ask every second or two."""
        if not session_id:
            return Tick(None, {}, changed=False)

        async def look() -> Tick:
            # Tagged with the session's id: a tab can tell whose version it holds (`on_tick`).
            version = _tagged(
                session_id, await self._engine.session_version(session_id, visitor=who)
            )
            running = self._engine.running(session_id)
            return Tick(version, running, changed=version != seen_version)

        return await self._call(look())

    async def keep(self, session_id: str, step_id: str, who: Visitor) -> Session:
        return await self._call(self._engine.keep(session_id, step_id, visitor=who))

    async def rename_session(self, session_id: str, name: str, who: Visitor) -> Session:
        return await self._call(self._engine.rename_session(session_id, name, visitor=who))

    async def delete_session(self, session_id: str, who: Visitor) -> Session:
        """Delete a session (refused while an edit in it runs) and the images nobody else
        refers to; the session as it was."""
        return await self._call(self._engine.delete_session(session_id, visitor=who))

    async def check_key(self, api_key: Secret, who: Visitor = LOCAL) -> KeyCheck:
        """Check a visitor's pasted key with RunAPI (a balance call); a few a minute each."""
        try:
            balance = await self._call(self._engine.check_key(api_key, visitor=who))
        except AuthenticationError as exc:
            return KeyCheck(accepted=False, balance_cents=None, refusal=str(exc))
        except RunAPIError:
            return KeyCheck(accepted=None, balance_cents=None)
        except LimitError as exc:  # too many checks: not known, and not asked
            return KeyCheck(accepted=None, balance_cents=None, refusal=str(exc))
        except USER_ERRORS as exc:  # this studio takes no visitors' keys
            return KeyCheck(accepted=False, balance_cents=None, refusal=str(exc))
        return KeyCheck(accepted=True, balance_cents=balance)

    async def export_session(self, session_id: str, who: Visitor) -> tuple[Session, bytes]:
        """The session and its export ZIP."""
        session = await self.load_session(session_id, who)
        data = await self._call(self._engine.export_session(session_id, visitor=who))
        return session, data

    async def import_session(self, data: bytes, who: Visitor) -> Session:
        return await self._call(self._engine.import_session(data, visitor=who))

    # -- edits ----------------------------------------------------------------------------------

    async def submit_edit(
        self,
        session_id: str,
        params: EditParams,
        who: Visitor,
        *,
        parent_step_id: str | None = None,
        region: RegionRequest | None = None,
    ) -> Step:
        """Queue an edit of `parent_step_id` (the step the tab shows; default the current)."""
        return await self._call(
            self._engine.submit_edit(
                session_id,
                params,
                parent_step_id=parent_step_id,
                visitor=who,
                region=region,
            )
        )

    async def edit(
        self,
        session_id: str,
        params: EditParams,
        who: Visitor,
        *,
        region: RegionRequest | None = None,
    ) -> Step:
        """Submit an edit and wait for its final step."""
        return await self._call(self._engine.edit(session_id, params, visitor=who, region=region))

    async def retry(self, session_id: str, step_id: str, who: Visitor) -> Step:
        """Run a failed step again as a new sibling."""
        return await self._call(self._engine.retry(session_id, step_id, visitor=who))

    async def compare(
        self,
        session_id: str,
        params: EditParams,
        who: Visitor,
        *,
        parent_step_id: str | None = None,
        region: RegionRequest | None = None,
    ) -> tuple[Step, Step]:
        return await self._call(
            self._engine.compare(
                session_id,
                params,
                parent_step_id=parent_step_id,
                visitor=who,
                region=region,
            )
        )

    async def candidates(
        self,
        session_id: str,
        params: EditParams,
        who: Visitor,
        *,
        count: int = 2,
        models: tuple[Model, ...] | None = None,
        parent_step_id: str | None = None,
        region: RegionRequest | None = None,
    ) -> list[Step]:
        """Several results of one instruction side by side (`Engine.candidates`)."""
        return await self._call(
            self._engine.candidates(
                session_id,
                params,
                count=count,
                models=models,
                parent_step_id=parent_step_id,
                visitor=who,
                region=region,
            )
        )

    async def place_edit(
        self,
        data: bytes | None,
        who: Visitor,
        *,
        link: str | None,
        session_id: str | None,
        name: str,
    ) -> tuple[str, str | None]:
        """The session an edit of this image goes to, and the step it starts from (None: the
        current one); an image the studio made continues its own session (`Engine.place_edit`)."""
        session, parent_step_id = await self._call(
            self._engine.place_edit(data, link=link, session_id=session_id, name=name, visitor=who)
        )
        return session.session_id, parent_step_id

    async def stored_image(self, path: Path, who: Visitor) -> bytes | None:
        """The bytes of `path` when it is a stored image of the visitor's (a studio URL names
        it)."""
        return await self._call(self._engine.stored_image(path, visitor=who))

    async def wait(self, step_id: str) -> Step:
        """The final record of a step this caller just started (its id came from that call)."""
        return await self._call(self._engine.wait(step_id))

    async def watch(self, session_id: str, who: Visitor) -> AsyncIterator[dict[str, StepUpdate]]:
        """The running steps of a session, pushed from the engine's loop at every change (and
        every half second, so elapsed times tick), ending once nothing runs."""
        caller = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def put(item: object) -> None:
            with contextlib.suppress(RuntimeError):  # the caller's loop is gone: nobody listens
                caller.call_soon_threadsafe(queue.put_nowait, item)

        async def pump() -> None:
            try:
                async for snapshot in self._engine.watch_session(session_id):
                    put(snapshot)
            except Exception as exc:
                put(exc)
            finally:
                put(_END)

        await self.load_session(session_id, who)  # theirs, or "no such session"
        future = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            future.cancel()

    async def owns_image(self, sha256: str, who: Visitor) -> bool:
        """Whether `who` may see the stored image `sha256` (a session of theirs holds it)."""
        return await self._call(self._engine.owns_image(sha256, visitor=who))

    async def held_bytes(self, who: Visitor) -> int:
        """Bytes of the images the visitor's sessions hold (their share of the disk in use)."""
        return await self._call(self._engine.held_bytes(visitor=who))

    async def read_link(self, url: str) -> bytes:
        """The bytes of the image at a user's link (a mask, say), fetched and checked under
        the same address rules as a source."""
        image = await self._call(self._engine.read_link(url))
        return image.data

    async def owned_image_path(self, sha256: str, who: Visitor) -> Path | None:
        """The stored file of image `sha256` when `who` may see it, else None."""
        return await self._call(self._engine.owned_image_path(sha256, visitor=who))

    async def balance_cents(self, who: Visitor) -> int | None:
        """The balance of the visitor's own key, or the server's (never a hosted visitor's)."""
        return await self._call(self._engine.balance_cents(visitor=who))

    # -- files ----------------------------------------------------------------------------------

    def image_path(self, step: Step) -> str | None:
        """The stored image of `step`, as a path Gradio may serve (None while it has none)."""
        return None if step.result is None else str(self._engine.image_path(step.result))

    def visitor_secret(self, settings: Settings) -> bytes:
        """What visitor tokens are signed with: the host's (`KONTEXT_STUDIO_SECRET`), else one
        kept in the data directory."""
        if settings.visitor_secret:
            return settings.visitor_secret.reveal().encode()
        return self.run(self._engine.secret("visitor-tokens"), timeout_s=30)

    def served_folders(self) -> list[Path]:
        """Folders of the store whose files the page shows."""
        return self._engine.served_folders()

    def private_folders(self) -> list[Path]:
        """The data directory: of it, only a visitor's own images are ever served."""
        return self._engine.private_folders()

    # -- on the engine's loop -------------------------------------------------------------------

    async def _page(self, session_id: str | None, who: Visitor, with_balance: bool) -> PageData:
        engine = self._engine
        session, damaged, version = None, None, None
        if session_id:
            try:
                # Read before the session: a change in between shows at the next tick.
                version = _tagged(session_id, await engine.session_version(session_id, visitor=who))
                session = await engine.load_session(session_id, visitor=who)
            except StoreError as exc:
                damaged = str(exc)
        summaries = await engine.list_sessions(visitor=who)
        balance = None
        if with_balance:
            # A nicety: if it fails, the edits' own errors say what is wrong with the service.
            with contextlib.suppress(*USER_ERRORS):
                balance = await engine.balance_cents(visitor=who)
        # The session list shows each session's cover image.
        covers = [
            ImageRef(sha256=s.cover_sha256, format="png", width=1, height=1)
            for s in summaries
            if s.cover_sha256
        ]
        if session is None:
            listed = {sha: str(path) for sha, path in (await engine.thumbnails(covers)).items()}
            return PageData(None, summaries, {}, {}, listed, balance, damaged)
        shown: list[ImageRef] = [s.result for s in session.steps.values() if s.result]
        thumbs = await engine.thumbnails([*shown, *covers])
        return PageData(
            session=session,
            summaries=summaries,
            running=engine.running(session.session_id),
            images={ref.sha256: str(engine.image_path(ref)) for ref in [*shown, *_extras(session)]},
            thumbs={sha: str(path) for sha, path in thumbs.items()},
            balance_cents=balance,
            damaged=damaged,
            version=version,
        )


def _extras(session: Session) -> list[ImageRef]:
    """The other images a step may show: the model's own output (before the blend that kept the
    rest) and the mask of the region it was edited in."""
    found: list[ImageRef] = []
    for step in session.steps.values():
        if step.raw_result is not None:
            found.append(step.raw_result)
        if step.region is not None and step.region.mask_sha256 is not None:
            found.append(ImageRef(sha256=step.region.mask_sha256, format="png", width=1, height=1))
    return found


def _tagged(session_id: str, version: str | None) -> str | None:
    """A session's version with its id in front, so a tab can tell whose version it holds."""
    return None if version is None else f"{session_id}@{version}"


def _at(session: Session, step_id: str | None) -> Session:
    """`session` seen from `step_id` (a tab's step), or as stored when that step is gone."""
    if step_id is None or step_id not in session.steps:
        return session
    return session.make_current(step_id)
