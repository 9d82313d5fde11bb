"""The one crossing from Gradio into the engine: an engine on its own loop, and one typed `call`.

Gradio runs async handlers on its server loop and cancels them when a tab closes; the engine's
edits must go on regardless, and must resume at start-up before any page is open. So the engine
lives on a private loop in a daemon thread, and every use case crosses to it through `call`:

    session = await bridge.call(Engine.load_session, session_id, visitor=who)

`call` runs the engine's coroutine on the engine's loop (`run_coroutine_threadsafe`) and awaits
it from the caller's; its arguments are checked against the use case's own signature (mypy, by
`ParamSpec`). What differs is written out: watching a session's running steps (`watch`, progress
pushed back through a queue on the caller's loop, never polled) and the page's two reads (`page`,
`tick`), each made in one go on the engine's loop. No rule lives here: who may touch what, and
whose key pays, are the engine's to decide for the `Visitor` it is given.

Handlers and the public API reach the engine only here. The store is never seen from `ui/`:
images come back as paths, sessions as `history` values.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from studio.config import Secret, Settings
from studio.engine import (
    MAX_BUNDLE_BYTES,
    USER_ERRORS,
    AuthenticationError,
    DeletedListener,
    Engine,
    LimitError,
    NoSuchSession,
    OwnKeyNeeded,
    RunAPIError,
    SessionSummary,
    StoreError,
    server_key_for_visitors,
)
from studio.history import ImageRef, Session, Step, StepUpdate
from studio.ui import tree
from studio.ui.files import UploadBook
from studio.ui.view import PageData
from studio.visitor import LOCAL, Visitor

P = ParamSpec("P")
T = TypeVar("T")
# A use case: an engine method (`Engine.load_session`), called with the engine first.
UseCase = Callable[Concatenate[Engine, P], Coroutine[Any, Any, T]]

__all__ = [
    "LOCAL",
    "MAX_BUNDLE_BYTES",
    "USER_ERRORS",
    "AuthenticationError",
    "Bridge",
    "Engine",
    "LimitError",
    "OwnKeyNeeded",
    "RunAPIError",
    "SessionSummary",
    "Tick",
    "Visitor",
    "server_key_for_visitors",
]


@dataclass(frozen=True, slots=True)
class Tick:
    """A session's version (it changes with every step added, advanced or removed; it starts
    with the session's id), what runs in it now, and whether it moved on from the version of
    this session the tab last saw."""

    version: str | None
    running: dict[str, StepUpdate]
    changed: bool


# The folder of the studio's home where uploads waiting for their handler are noted.
UPLOADS_JOURNAL = "uploads-waiting"


class Bridge:
    """An engine living on a private loop in a daemon thread, and the typed calls into it."""

    def __init__(self, make_engine: Callable[[], Engine]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="engine", daemon=True)
        self._thread.start()
        self._engine = make_engine()
        # Uploads waiting for their handler, and whose: the guard's and the page's (`UploadBook`).
        self.uploads = UploadBook()

    @classmethod
    def from_settings(cls, settings: Settings) -> Bridge:
        """The engine the settings describe, on its own loop; uploads waiting for their handler
        noted in the studio's home (`UploadBook`)."""
        bridge = cls(lambda: Engine.from_settings(settings))
        bridge.uploads = UploadBook(journal=settings.home / UPLOADS_JOURNAL)
        return bridge

    def resume_unfinished(self, timeout_s: float = 60) -> int:
        """Pick up the edits an earlier run left unfinished; how many there were. And, in a
        while, remove the images it left that no session refers to."""
        self._loop.call_soon_threadsafe(self._engine.collect_after_start)
        return len(self.run(self._engine.resume_unfinished(), timeout_s))

    def when_deleted(self, listener: DeletedListener) -> None:
        """`Engine.when_deleted`: `listener` is told of each session deleted (on a thread)."""
        self._engine.when_deleted(listener)

    @property
    def engine(self) -> Engine:
        """The engine itself, for the composition root and tests; `ui/` uses the methods."""
        return self._engine

    # -- crossing -------------------------------------------------------------------------------

    async def call(self, use_case: UseCase[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `use_case(engine, *args, **kwargs)` on the engine's loop and await its result
        from the caller's. Every use case names its `Visitor` (`visitor=`): the engine lets
        them touch only their own sessions, and decides whose key pays."""
        coro = use_case(self._engine, *args, **kwargs)
        return await asyncio.wrap_future(self._submit(coro))

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """Run `coro` on the engine's loop from a plain thread and wait for its result."""
        return self._submit(coro).result(timeout_s)

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """`coro` as a task of the engine's loop, in a context of its own.

        `run_coroutine_threadsafe` gives the task a copy of the caller's context, and on Gradio's
        loop that holds the request, body and all; the task's own tasks inherit it. A step's
        15-minute deadline timer, which asyncio keeps (context included) until its time even
        once cancelled, held each API caller's request for 15 minutes after the edit: 0.4 GB
        after a minute of 11 MB data URLs."""
        return contextvars.Context().run(asyncio.run_coroutine_threadsafe, coro, self._loop)

    def close(self) -> None:
        """Stop waiting on edits (they resume at the next start) and stop the loop."""
        self.run(self._engine.aclose(), timeout_s=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            # Its selector and wake-up sockets go with it: a process that made and closed one
            # studio after another (the test suite) held three more descriptors for each, and
            # past 1,024 `select()` refused them.
            self._loop.close()

    # -- what differs: the page's reads and watching ----------------------------------------------

    async def page(
        self,
        session_id: str | None,
        who: Visitor,
        *,
        every_session: bool = False,
        tab_step: str | None = None,
        ahead: Sequence[str] = (),
        thumbnails: bool = True,
    ) -> PageData:
        """The session (or none), the visitor's sessions, what runs, and the files to show,
        read in one go on the engine's loop: from the store alone, never waiting on RunAPI.
        Thumbnails are looked for only for the steps the tree draws seen from `tab_step`
        (`tree.drawn_steps`), covers for the sessions the list draws (`tree.listed_sessions`);
        not made here without `thumbnails` (the page's `wanted`: `Engine.thumbnails` makes them
        apart, while the draw waits outside the studio's draws)."""
        return await self.call(_page, session_id, who, every_session, tab_step, ahead, thumbnails)

    async def balance(self, who: Visitor) -> int | None:
        """The balance of the key that pays for `who`'s edits (a RunAPI call; None when it is
        not shown). Asked apart from the page, so a slow or failing answer never holds it up."""
        return await self.call(Engine.balance_cents, visitor=who)

    async def tick(self, session_id: str | None, seen_version: str | None, who: Visitor) -> Tick:
        """What changed in a session since `seen_version`, and what runs in it now: cheap, so
        every open tab can ask every second or two."""
        if not session_id:
            return Tick(None, {}, changed=False)
        return await self.call(_tick, session_id, seen_version, who)

    async def watch(
        self, session_id: str, who: Visitor, *, tick_s: float = 0.5
    ) -> AsyncIterator[dict[str, StepUpdate]]:
        """The running steps of a session, pushed from the engine's loop at every change (and
        every `tick_s`, so elapsed times tick), ending once nothing runs."""
        caller = asyncio.get_running_loop()
        # Each snapshot, an error, then None for the end.
        queue: asyncio.Queue[dict[str, StepUpdate] | Exception | None] = asyncio.Queue()

        def put(item: dict[str, StepUpdate] | Exception | None) -> None:
            with contextlib.suppress(RuntimeError):  # the caller's loop is gone: nobody listens
                caller.call_soon_threadsafe(queue.put_nowait, item)

        async def pump() -> None:
            try:
                async for snapshot in self._engine.watch_session(session_id, tick_s=tick_s):
                    put(snapshot)
            except Exception as exc:
                put(exc)
            finally:
                put(None)

        await self.call(Engine.load_session, session_id, visitor=who)  # theirs, or "no such"
        future = self._submit(pump())
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            future.cancel()

    # -- files ----------------------------------------------------------------------------------

    def image_path(self, step: Step) -> str | None:
        """The stored image of `step`, as a path Gradio may serve (None while it has none)."""
        return None if step.result is None else str(self._engine.image_path(step.result))

    def stored_file(self, sha256: str, image_format: str) -> Path | None:
        """The stored file of image `sha256` in `image_format`, if there is one (no owner check:
        for an answer the studio has just made for its caller)."""
        ref = ImageRef(sha256=sha256, format=image_format, width=0, height=0)
        with contextlib.suppress(ValueError, StoreError):
            path = self._engine.image_path(ref)
            if path.is_file():
                return path
        return None

    async def key_accepted(self, key: str, address: str | None) -> bool | None:
        """Whether RunAPI accepts an API or MCP caller's key (`Engine.key_accepted`)."""
        return await self.call(Engine.key_accepted, Secret(key), address=address)

    def visitor_secret(self, settings: Settings) -> bytes:
        """What visitor tokens are signed with: the host's (`KONTEXT_STUDIO_SECRET`), else one
        kept in the data directory."""
        if settings.visitor_secret:
            return settings.visitor_secret.reveal().encode()
        return self.run(self._engine.secret("visitor-tokens"), timeout_s=30)

    def new_visitors_within(self, seconds: float) -> dict[str, list[float]]:
        """How long ago each network address became each of its new visitors, within
        `seconds` (as counted by `note_new_visitor`, before a restart too)."""
        return self.run(self._engine.new_visitors_within(seconds), timeout_s=30)

    def note_new_visitor(self, address: str, kept_s: float) -> None:
        """Count a new visitor of `address` in the store, for `kept_s`; not waited for."""
        self._submit(self._engine.note_new_visitor(address, kept_s=kept_s))

    def served_folders(self) -> list[Path]:
        """Folders of the store whose files the page shows."""
        return self._engine.served_folders()

    def private_folders(self) -> list[Path]:
        """The data directory: of it, only a visitor's own images are ever served."""
        return self._engine.private_folders()


async def _page(
    engine: Engine,
    session_id: str | None,
    who: Visitor,
    every_session: bool = False,
    tab_step: str | None = None,
    ahead: Sequence[str] = (),
    thumbnails: bool = True,
) -> PageData:
    """The page's snapshot, on the engine's loop (`Bridge.page`)."""
    session, damaged, version, gone = None, None, None, False
    if session_id:
        try:
            # Read before the session: a change in between shows at the next tick.
            version = await _version(engine, session_id, who)
            session = await engine.load_session(session_id, visitor=who)
        except NoSuchSession:
            gone = True
        except StoreError as exc:
            damaged = str(exc)
    summaries = await engine.list_sessions(visitor=who)
    # The session list shows each session's cover image.
    covers = [
        ImageRef(sha256=s.cover_sha256, format="png", width=1, height=1)
        for s in tree.listed_sessions(summaries, session_id, every=every_session)
        if s.cover_sha256
    ]
    if session is None:
        if not thumbnails:
            return PageData(None, summaries, {}, {}, {}, damaged, wanted=tuple(covers), gone=gone)
        made = await engine.thumbnails(covers, visitor=who)
        listed = {sha: str(path) for sha, path in made.items()}
        return PageData(None, summaries, {}, {}, listed, damaged, gone=gone)
    shown: list[ImageRef] = [s.result for s in session.steps.values() if s.result]
    drawn = [s.result for s in tree.drawn_steps(session.seen_from(tab_step, ahead)) if s.result]
    wanted = [*drawn, *covers]
    thumbs = await engine.thumbnails(wanted, visitor=who) if thumbnails else {}
    return PageData(
        session=session,
        summaries=summaries,
        running=engine.running(session.session_id),
        images={ref.sha256: str(engine.image_path(ref)) for ref in [*shown, *_extras(session)]},
        thumbs={sha: str(path) for sha, path in thumbs.items()},
        damaged=damaged,
        version=version,
        wanted=() if thumbnails else tuple(wanted),
        left_open=engine.left_open(session),
    )


async def _tick(engine: Engine, session_id: str, seen_version: str | None, who: Visitor) -> Tick:
    """The tick's snapshot, on the engine's loop (`Bridge.tick`)."""
    version = await _version(engine, session_id, who)
    return Tick(version, engine.running(session_id), changed=version != seen_version)


async def _version(engine: Engine, session_id: str, who: Visitor) -> str | None:
    """What a tab's render shows, as one value: the session's version and the mark of the
    visitor's sessions (one made by the CLI or an agent, or deleted elsewhere, redraws the
    list), tagged with the session's id, so a tab can tell whose version it holds (`on_tick`)."""
    return _tagged(session_id, await engine.tab_version(session_id, visitor=who))


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
