"""What Gradio keeps of each tab on the server: no deep links, and a bounded record per tab.

- Deep links. Gradio 6 answers `GET /gradio_api/deep_link?session_hash=…` by writing everything
  the tab's events sent (a pasted RunAPI key among it) to `<upload folder>/deep_links/<id>/
  state.json`, a file nothing removes; `?deep_link=<id>` on the page (or on `/config`) then puts
  that snapshot into whoever opens the link. The studio makes no deep links (it has no
  `DeepLinkButton`; the page only passes a `deep_link` it finds in its own address on to
  `/config`), so `TabStates` answers the route with 404, drops `deep_link` from every query
  (the page loads as it would without it), and the file routes never serve the `deep_links`
  folder (a studio of an older version, or another Gradio app, may have left files there).
- Tab records. Gradio keeps a record (`SessionState`) for every session hash it hears of, the
  values of every event's inputs inside it (only for deep links), until 10,000 newer ones push
  it out. `ui.lean.LeanSessionState` keeps no values; `TabRecords` keeps a record only for a
  request that names somebody when the studio is hosted (one that names nobody creates nothing
  anyway: its handlers refuse), at most `TABS_PER_VISITOR` per visitor (their least recently
  used goes first) and `TABS_KEPT` in all (once full, the visitor holding the most gives one up).
- Upload progress. Gradio keeps, for every `upload_id` anyone asks `/gradio_api/upload_progress`
  about, an event that nothing removes (and, for every upload sent with an id, a record that only
  a reader of its progress removes): anyone could grow the studio's memory for good, a request at
  a time. `UploadProgress` forgets an id nobody uploads under once its wait ends, takes no id
  longer than a page makes, and keeps `UPLOADS_FOLLOWED` records at most (the oldest go first).

Imports gradio; `install()` once, before the app is made (`create_app`).
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import itertools
import os
import weakref
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import gradio.route_utils
import gradio.routes
import gradio.state_holder
from gradio.utils import get_upload_folder
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from studio.ui.guard import file_target, refuse, route_path
from studio.ui.lean import LeanSessionState
from studio.ui.visitor import visitor_in

# Tab records kept for one visitor (each page load is a tab; each API call without a session
# of its own is one too), and in all. A record is a few kilobytes (README, Numbers).
TABS_PER_VISITOR = 32
TABS_KEPT = 4_000
# Tabs whose record went that are remembered as such (their hashes alone), to tell a tab that
# comes back after its record went (`was_forgotten`).
FORGOTTEN_KEPT = 100_000
NO_DEEP_LINKS = "This studio makes no deep links."
_DEEP_LINK_ROUTE = compile_path("/gradio_api/deep_link")[0]
_DEEP_LINK_QUERY = "deep_link"
# Where a hosted studio's door leaves who a request names, for the queue, which runs the event
# later and elsewhere (`_restore_session_state` reads it from the request the event kept).
_ASKER = "kontext_tab_asker"
_NOBODY = ""
# Who the request being handled names: a visitor's owner, `_NOBODY`, or None (not hosted, or
# not known: Gradio's own behaviour).
_ASKING: contextvars.ContextVar[str | None] = contextvars.ContextVar("tab_asker", default=None)
# ... and the network address it comes from (None: not known).
_ASKER_AT = "kontext_tab_asker_at"
_ASKING_AT: contextvars.ContextVar[str | None] = contextvars.ContextVar("tab_at", default=None)
# Of the tabs of the address holding the most, so many of the least recently used are looked at
# for one of the visitor holding the most there.
LOOKED_AT = 64

# Uploads whose progress is kept at once (a page follows each of its uploads for seconds), and
# the longest id taken (the page's are about a dozen characters).
UPLOADS_FOLLOWED = 1_000
UPLOAD_ID_CHARS = 64

_GradioStateHolder = gradio.state_holder.StateHolder
_GradioUploadProgress = gradio.route_utils.FileUploadProgress
_gradio_restore_session_state = gradio.route_utils.restore_session_state


class TabStates:
    """ASGI middleware: no deep links; on a hosted studio, who each request names, for
    `TabRecords`. Goes after `VisitorMiddleware` (which names the visitor)."""

    def __init__(self, app: ASGIApp, *, hosted: bool) -> None:
        self.app = app
        self.hosted = hosted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if _DEEP_LINK_ROUTE.match(path) is not None:
            await refuse(send, 404, NO_DEEP_LINKS)
            return
        target = file_target(path)
        if target is not None and await asyncio.to_thread(_in_deep_links, target):
            await refuse(send, 404, "Not found.")
            return
        scope = _without_deep_link(scope)
        if not self.hosted:
            await self.app(scope, receive, send)
            return
        who = visitor_in(scope)
        asker = who.owner if who is not None and who.owner is not None else _NOBODY
        at = who.address if who is not None else None
        scope.setdefault("state", {})[_ASKER] = asker
        scope["state"][_ASKER_AT] = at
        token, token_at = _ASKING.set(asker), _ASKING_AT.set(at)
        try:
            await self.app(scope, receive, send)
        finally:
            _ASKING.reset(token)
            _ASKING_AT.reset(token_at)


class TabRecords(_GradioStateHolder):
    """Gradio's `StateHolder`, bounded: no record for a request that names nobody, at most
    `TABS_PER_VISITOR` for each visitor and `TABS_KEPT` in all (least recently used first, of
    the visitor holding the most)."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.capacity = TABS_KEPT
        self.owners: dict[str, str] = {}
        self.per_owner: Counter[str] = Counter()
        # Where each tab's visitor was when it was made, and the tabs of each address.
        self.at: dict[str, str] = {}
        self.per_address: Counter[str] = Counter()
        # Tabs whose record went, and those of them that came back since (a fresh record, its
        # states as a new page's: a pasted key, the step shown, all gone).
        self.forgotten: OrderedDict[str, None] = OrderedDict()
        self.revived: set[str] = set()
        _HOLDERS.add(self)

    def set_blocks(self, blocks: Any) -> None:
        super().set_blocks(blocks)
        self.capacity = min(TABS_KEPT, blocks.state_session_capacity)

    def __getitem__(self, session_id: str) -> Any:
        asker = _ASKING.get()
        if asker == _NOBODY:
            # Made for this one call and dropped with it: nobody comes back for it.
            return LeanSessionState(self.blocks)
        with self.lock:
            state = self.session_data.get(session_id)
            owner = self.owners.get(session_id)
            if state is not None and None not in (asker, owner) and owner != asker:
                # Another visitor's tab (the door, which refuses that, may have forgotten
                # whose it was): its states (a pasted key, the step shown) are not the
                # asker's; they get a record made for this one call, as nobody does.
                return LeanSessionState(self.blocks)
            if state is None:
                state = self.session_data[session_id] = LeanSessionState(self.blocks)
                if self.forgotten.pop(session_id, 0) is None:
                    self.revived.add(session_id)
                if asker is not None:
                    self.owners[session_id] = asker
                    self.per_owner[asker] += 1
                if (at := _ASKING_AT.get()) is not None:
                    self.at[session_id] = at
                    self.per_address[at] += 1
            self.time_last_used[session_id] = datetime.datetime.now()
        self.update(session_id)
        return state

    def update(self, session_id: str) -> None:
        with self.lock:
            if session_id in self.session_data:
                self.session_data.move_to_end(session_id)
            owner = self.owners.get(session_id)
            if owner is not None and self.per_owner[owner] > TABS_PER_VISITOR:
                # Their own least recently used tab goes, not another visitor's.
                oldest = next(k for k in self.session_data if self.owners.get(k) == owner)
                self._forget(oldest)
            while len(self.session_data) > self.capacity:
                self._forget(self._evictable())

    def _evictable(self) -> str:
        """The tab to forget when all are full: of the network address holding the most, the
        least recently used of its visitor holding the most (so that many fresh visitors, even
        with one tab each, push out one another's, never the one tab of a visitor elsewhere
        whose pasted key and step it holds: review 17 F2); where no address holds more than
        one, the least recently used of the visitor holding the most, else the oldest."""
        if self.per_address:
            crowded, held = self.per_address.most_common(1)[0]
            if held > 1:
                theirs = (k for k in self.session_data if self.at.get(k) == crowded)
                looked_at = list(itertools.islice(theirs, LOOKED_AT))
                # (`max` keeps the first of equals: the least recently used.)
                return max(looked_at, key=lambda k: self.per_owner[self.owners.get(k, "")])
        if self.per_owner:
            heaviest, held = self.per_owner.most_common(1)[0]
            if held > 1:
                return next(k for k in self.session_data if self.owners.get(k) == heaviest)
        return next(iter(self.session_data))

    def _forget(self, session_id: str) -> None:
        if self.session_data.pop(session_id, None) is not None:
            self.forgotten[session_id] = None
            while len(self.forgotten) > FORGOTTEN_KEPT:
                self.revived.discard(self.forgotten.popitem(last=False)[0])
            while len(self.revived) > FORGOTTEN_KEPT:
                self.revived.pop()
        self.time_last_used.pop(session_id, None)
        owner = self.owners.pop(session_id, None)
        if owner is not None:
            self.per_owner[owner] -= 1
            if self.per_owner[owner] <= 0:
                del self.per_owner[owner]
        at = self.at.pop(session_id, None)
        if at is not None:
            self.per_address[at] -= 1
            if self.per_address[at] <= 0:
                del self.per_address[at]


class UploadProgress(_GradioUploadProgress):
    """Gradio's record of uploads' progress, bounded (see the module's notes)."""

    def track(self, upload_id: str) -> None:
        if len(upload_id) > UPLOAD_ID_CHARS:
            return  # followed by nobody: its chunks are not counted either
        super().track(upload_id)
        while len(self._statuses) > UPLOADS_FOLLOWED:
            self.stop_tracking(next(iter(self._statuses)))

    async def is_tracked(self, upload_id: str) -> bool:
        if len(upload_id) > UPLOAD_ID_CHARS:
            raise TimeoutError  # answered as an id never uploaded under: 404
        try:
            return await super().is_tracked(upload_id)
        finally:
            if upload_id not in self._statuses:
                self._signals.pop(upload_id, None)

    def append(self, upload_id: str, filename: str, message_bytes: bytes) -> None:
        if len(upload_id) <= UPLOAD_ID_CHARS:
            super().append(upload_id, filename, message_bytes)

    def set_done(self, upload_id: str) -> None:
        if len(upload_id) <= UPLOAD_ID_CHARS:
            super().set_done(upload_id)

    def stop_tracking(self, upload_id: str) -> None:
        super().stop_tracking(upload_id)
        self._signals.pop(upload_id, None)


_HOLDERS: weakref.WeakSet[TabRecords] = weakref.WeakSet()


def was_forgotten(session_hash: str | None) -> bool:
    """Whether the record of tab `session_hash` went (its visitor opened many other tabs, or
    the studio held all it may) and the tab came back since: what its states held, a pasted
    RunAPI key among them, is gone, so the page it shows no longer says what the studio knows."""
    return session_hash is not None and any(session_hash in h.revived for h in list(_HOLDERS))


def _restore_session_state(app: Any, body: Any) -> Any:
    """Gradio's, for a queued event: the record is looked up as the event's request named."""
    scope = getattr(getattr(body, "request", None), "scope", None)
    state = scope.get("state") if isinstance(scope, dict) else None
    asker = state.get(_ASKER) if isinstance(state, dict) else None
    at = state.get(_ASKER_AT) if isinstance(state, dict) else None
    token = _ASKING.set(asker if isinstance(asker, str) else None)
    token_at = _ASKING_AT.set(at if isinstance(at, str) else None)
    try:
        return _gradio_restore_session_state(app, body)
    finally:
        _ASKING.reset(token)
        _ASKING_AT.reset(token_at)


def install() -> None:
    """Make every Gradio app made from now on keep its tabs in `TabRecords` (idempotent)."""
    if getattr(gradio.routes, "StateHolder", None) is _GradioStateHolder:
        gradio.routes.StateHolder = TabRecords  # type: ignore[attr-defined]
    if gradio.route_utils.restore_session_state is _gradio_restore_session_state:
        gradio.route_utils.restore_session_state = _restore_session_state
    # The upload routes read this module global at every request.
    if not isinstance(gradio.routes.file_upload_statuses, UploadProgress):
        gradio.routes.file_upload_statuses = UploadProgress()


def _without_deep_link(scope: Scope) -> Scope:
    query = scope.get("query_string", b"")
    if _DEEP_LINK_QUERY.encode() not in query.lower() and b"%" not in query:
        return scope
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if k != _DEEP_LINK_QUERY]
    if len(kept) == len(pairs):
        return scope
    return {**scope, "query_string": urlencode(kept).encode("latin-1")}


def _in_deep_links(target: str) -> bool:
    """Whether the file a file route opens for `target` lies in Gradio's deep-link folder (as
    given, or with symbolic links followed); True too for a name no file can have (a NUL in
    it), which Gradio's route would answer with a traceback in the log each time (review 8
    F2): it is answered as missing here. Blocking."""
    folder = Path(get_upload_folder()).resolve() / "deep_links"
    absolute = Path(os.path.abspath(target))
    try:
        real = absolute.resolve()
    except ValueError:  # "embedded null byte"
        return True
    except (OSError, RuntimeError):
        real = absolute
    return any(p.is_relative_to(folder) for p in (absolute, real))


__all__ = [
    "NO_DEEP_LINKS",
    "TABS_KEPT",
    "TABS_PER_VISITOR",
    "UPLOADS_FOLLOWED",
    "UPLOAD_ID_CHARS",
    "TabRecords",
    "TabStates",
    "UploadProgress",
    "install",
    "was_forgotten",
]
