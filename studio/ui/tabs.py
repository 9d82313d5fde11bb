"""A hosted studio's second door, after `ui.visitor.VisitorMiddleware` has named the visitor:
how much a request may carry, and whose tab it speaks for.

- Bodies. A request that names nobody may carry at most `UNNAMED_BODY_BYTES` (a sign-in form,
  an API probe): it creates nothing anyway, and the studio does not read megabytes to find that
  out. A visitor's request carries at most `body_bytes` (two images as data: URIs and their
  instruction). Uploads have their own door (`ui.guard.VisitorGuard`). Refused by the declared
  length before a byte is read, else while the body streams in. A body over a megabyte (or of
  no declared length) is read one at a time for each visitor and two at once in all.
- Tabs. Gradio keys a tab's server-side state (a pasted RunAPI key among it) and the stream of
  its answers by a session hash that the page makes up. It is no secret: it is in every URL the
  tab calls. So the first visitor seen with a hash owns it, and every later request naming that
  hash (joining an event, reading the answers, the heartbeat, a cancel) is refused to anyone
  else: nobody reads another visitor's answers or runs an event with another tab's key. The
  requests Gradio's MCP server makes to itself are not bound (it calls every tool through one
  loopback client, one hash for all its callers; such a hash never leaves the server); they
  carry the door's signed address stamp, which no client can write.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import OrderedDict
from urllib.parse import parse_qs

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from studio.ui.guard import refuse, route_path
from studio.ui.visitor import forwarded_in, visitor_in

# What a request that names nobody may carry.
UNNAMED_BODY_BYTES = 64 * 1024
# Tabs remembered at once (the oldest forgotten first; a forgotten hash is bound again to the
# next browser that uses it, which can only be its own tab in practice).
TABS_KEPT = 100_000
# Bodies larger than this are parsed on a worker thread (Gradio's loop keeps serving others).
_PARSE_ON_THREAD_BYTES = 1024 * 1024
TOO_LARGE = "This request is larger than this studio takes."
ONE_LARGE_AT_A_TIME = "You already have a large request on its way; wait for it to finish."
# Bodies above this (images as data: URIs) are read one at a time per visitor, this many in all.
BIG_BODY_BYTES = 1024 * 1024
BIG_BODIES_AT_ONCE = 2
# Seconds a large body may take to arrive (50 MB at about 2 MB/s).
BIG_BODY_READ_S = 30.0
TOO_SLOW = "This request took too long to arrive; try again."
# Routes that name a queued event (its answers, its streamed inputs), and how its id is kept.
_BY_EVENT = tuple(
    compile_path(route)[0]
    for route in (
        "/gradio_api/call/{api}/{event_id}",
        "/gradio_api/call/v2/{api}/{event_id}",
        "/gradio_api/stream/{event_id}",
        "/gradio_api/stream/{event_id}/close",
    )
)
_EVENT = "event:"
# Routes that answer as soon as the event is queued (the page's events, gradio_client's calls).
_ANSWER_WHEN_QUEUED = tuple(
    compile_path(route)[0] for route in ("/gradio_api/queue/join", "/gradio_api/call/{api:path}")
)
NOT_YOUR_TAB = "This tab belongs to another visitor; reload the page."
_UPLOAD = compile_path("/gradio_api/upload")[0]
_HEARTBEAT = compile_path("/gradio_api/heartbeat/{session_hash}")[0]
# Routes that name a tab in their query: its answers, and a snapshot of its state.
_BY_QUERY = tuple(
    compile_path(route)[0] for route in ("/gradio_api/queue/data", "/gradio_api/deep_link")
)


class _TooLarge(Exception):
    pass


class TabDoor:
    """Bodies within their caps, and each tab's session hash for its own browser only."""

    def __init__(self, app: ASGIApp, *, body_bytes: int) -> None:
        self.app = app
        self.body_bytes = body_bytes
        self.tabs: OrderedDict[str, str] = OrderedDict()
        # Large bodies being read or parsed: whose, and a bound on them all.
        self.big_in_flight: set[str] = set()
        self.big_bodies = asyncio.Semaphore(BIG_BODIES_AT_ONCE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        who = visitor_in(scope)
        owner = who.owner if who is not None else None
        binds = owner if not forwarded_in(scope) else None
        for hash_ in _hashes_in_url(scope, path):
            if not forwarded_in(scope) and not self._may_use(hash_, owner, binds):
                await refuse(send, 403, NOT_YOUR_TAB)
                return
        event = _event_in_url(path)
        theirs = event is not None and not self._may_use(_EVENT + event, owner, None)
        if theirs and not forwarded_in(scope):
            await refuse(send, 403, NOT_YOUR_TAB)
            return
        if scope.get("method") not in ("POST", "PUT", "PATCH") or _UPLOAD.match(path):
            await self.app(scope, receive, send)
            return
        cap = self.body_bytes if owner is not None else UNNAMED_BODY_BYTES
        declared = _content_length(scope)
        if declared is not None and declared > cap:
            await refuse(send, 413, TOO_LARGE)
            return
        # (A request that names nobody carries 64 KB at most: never a large body.)
        big = owner is not None and (declared is None or declared > BIG_BODY_BYTES)
        key = owner or "?"
        if big and key in self.big_in_flight:
            await refuse(send, 429, ONE_LARGE_AT_A_TIME)
            return
        # A large body (or one of no declared length) takes memory while it is read and again
        # while Gradio parses it: one at a time for each visitor, two at once in all. Joining
        # an event answers once it is parsed, so the bound holds until then; a route that
        # answers only when its work is done (MCP, run) holds it while the body is read.
        quick = any(route.match(path) for route in _ANSWER_WHEN_QUEUED)
        async with contextlib.AsyncExitStack() as held:
            if big:
                self.big_in_flight.add(key)
                held.callback(self.big_in_flight.discard, key)
                await held.enter_async_context(self.big_bodies)
            try:
                async with asyncio.timeout(BIG_BODY_READ_S if big else None):
                    body = await _read_body(receive, cap)
            except _TooLarge:
                await refuse(send, 413, TOO_LARGE)
                return
            except TimeoutError:  # a body trickling in holds no place for long
                await refuse(send, 408, TOO_SLOW)
                return
            named = await _hash_in_body(body)
            theirs = named is not None and not self._may_use(named, owner, binds)
            if theirs and not forwarded_in(scope):
                await refuse(send, 403, NOT_YOUR_TAB)
                return
            if quick:
                await self.app(scope, _replay(body, receive), self._binding_events(send, binds))
                return
        await self.app(scope, _replay(body, receive), send)

    def _binding_events(self, send: Send, binds: str | None) -> Send:
        """`send`, noting the event id a queued event is answered with as `binds`'s: its answers
        (`GET /gradio_api/call/…/<event id>`) and its stream are then for nobody else."""
        if binds is None:
            return send
        answer = bytearray()

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.body" and len(answer) < 4096:
                answer.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    with contextlib.suppress(ValueError):
                        event = json.loads(answer).get("event_id")
                        if isinstance(event, str):
                            self._may_use(_EVENT + event, binds, binds)
            await send(message)

        return noting

    def _may_use(self, hash_: str, owner: str | None, binds: str | None) -> bool:
        """Whether the asker may speak for the tab `hash_`; its first named visitor takes it."""
        bound = self.tabs.get(hash_)
        if bound is not None:
            self.tabs.move_to_end(hash_)
            return bound == owner
        if binds is not None:
            self.tabs[hash_] = binds
            if len(self.tabs) > TABS_KEPT:
                self.tabs.popitem(last=False)
        return True


def _event_in_url(route_path: str) -> str | None:
    for route in _BY_EVENT:
        if (match := route.match(route_path)) is not None:
            return str(match["event_id"])
    return None


def _hashes_in_url(scope: Scope, route_path: str) -> list[str]:
    if (match := _HEARTBEAT.match(route_path)) is not None:
        return [match["session_hash"]]
    if any(route.match(route_path) is not None for route in _BY_QUERY):
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        return query.get("session_hash", [])
    return []


async def _hash_in_body(body: bytes) -> str | None:
    """The top-level `session_hash` of a body, read as Gradio will read it: any body that parses
    as JSON, whatever its declared type (FastAPI compares media types without regard to case,
    a key may be spelled with escapes, the text may be UTF-16 or start with a byte order mark),
    parsed by the same `json.loads` as Starlette's `Request.json`."""
    if not body:
        return None

    def parse() -> object:
        try:
            return json.loads(body)
        except ValueError:
            return None  # Gradio cannot read it either, and answers so itself

    document = await asyncio.to_thread(parse) if len(body) > _PARSE_ON_THREAD_BYTES else parse()
    if isinstance(document, dict):
        value = document.get("session_hash")
        return value if isinstance(value, str) else None if value is None else str(value)
    return None


async def _read_body(receive: Receive, cap: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # a disconnect, when it comes

    return replay


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


__all__ = ["NOT_YOUR_TAB", "TABS_KEPT", "TOO_LARGE", "UNNAMED_BODY_BYTES", "TabDoor"]
