"""A hosted studio's second door, after `ui.visitor.VisitorMiddleware` has named the visitor:
how much a request may carry, and whose tab it speaks for.

- Bodies. A request that names nobody may carry at most `UNNAMED_BODY_BYTES` (a sign-in form,
  an API probe): it creates nothing anyway, and the studio does not read megabytes to find that
  out. A visitor's request carries at most `body_bytes` (two images as data: URIs and their
  instruction). Uploads have their own door (`ui.guard.VisitorGuard`). Refused by the declared
  length before a byte is read, else while the body streams in. A body over a megabyte (or of
  no declared length) is read one at a time for each visitor and each network address; what
  all such bodies being read hold is bounded by the bytes they sent (three whole bodies'
  worth), so one trickling in holds what it sent and no place; three are parsed at once. Where
  one finds no room, the largest still arriving that declared more gives way to it (cut, told
  the studio is busy): bodies as large as the studio takes, held open, refuse no smaller one.
  Every body must keep coming (`BIG_BODY_BYTES_PER_S` on average after `BIG_BODY_GRACE_S`) and
  arrive within `BIG_BODY_READ_S`; the smaller bodies being read hold at most
  `READING_PER_VISITOR` bytes for a visitor and `READING_PER_ADDRESS` for a network address
  (counted as they arrive): hundreds of bodies held open just short of their end hold a few
  megabytes, not hundreds.
- Tabs. Gradio keys a tab's server-side state (a pasted RunAPI key among it) and the stream of
  its answers by a session hash that the page makes up. It is no secret: it is in every URL the
  tab calls. So the first visitor seen with a hash owns it, and every later request naming that
  hash (joining an event, reading the answers, the heartbeat, a cancel) is refused to anyone
  else: nobody reads another visitor's answers or runs an event with another tab's key. The
  requests Gradio's MCP server makes to itself are not bound (it calls every tool through one
  loopback client, one hash for all its callers; such a hash never leaves the server); they
  carry the door's signed address stamp, which no client can write.
- Events. A visitor may have at most `events_at_once` events waiting or running in Gradio's
  queue (the page's, their API and MCP calls together); one more is refused at once with a
  sentence, so a pile of one visitor's events never delays everyone else's. They are counted
  from Gradio's own queue (each queued event keeps the request that made it, which names its
  visitor), so a place comes back however the event ends: done, failed, cancelled, or its
  client gone.
- Nobody. A request that names nobody (no valid token, no key) creates nothing: an event it
  sends is answered at the door with the sentence that says why (Gradio's own form of an
  error: the page shows it, a client raises it), and never reaches Gradio's queue, which would
  keep messages (and a record) for a made-up tab and give the event a place among everyone's.
  Except the calls Gradio's MCP server makes to itself for a caller who names nobody: its one
  client's tab carries every caller's answers, so they go on to the handler, which refuses
  them in the answer (the MCP requests themselves are bounded per address at the door).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote

from gradio.data_classes import PredictBody
from starlette.requests import Request
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from studio.ui.guard import refuse, route_path
from studio.ui.turns import (
    EVENTS_CROWDED,
    EVENTS_HERE,
    EVENTS_IN_ALL_PER_S,
    PAGES_CROWDED,
    PAGES_HERE,
    REQUESTS_HERE,
    BigBodyRate,
    EventRate,
    McpRate,
    PageRate,
    RequestRate,
    SentRate,
)
from studio.ui.visitor import (
    NO_COOKIE,
    Refusal,
    address_in,
    forwarded_in,
    visitor_from,
    visitor_in,
)

# The events that may wait in Gradio's queue for their start, for everyone together; one more is
# refused with a sentence (the studio is busy). Each time an event starts, Gradio sends every
# waiting event a new estimate of its place: 400 addresses each sending a real call a second,
# each address within its own burst, had thousands waiting, and the studio spent minutes at
# 100% of a core on estimates after the flood ended (2026-12-05). A page's events start at once.
WAITING_MOST = 256
# Said to an MCP request past its network address's pace (`_route_refused`).
MCP_HERE = "Too many MCP requests came from your network address just now; try again in a moment."
# What a request that names nobody may carry.
UNNAMED_BODY_BYTES = 64 * 1024
# Tabs remembered at once (past them, one of the visitor holding the most goes; a forgotten hash
# is bound again to the next visitor who names it).
TABS_KEPT = 20_000
# ... of which so many of the oldest are looked at for one with nothing waiting or running.
IDLE_LOOKED_AT = 64
# ... and for one visitor (their oldest forgotten first): a client makes up hashes at will.
TABS_PER_VISITOR = 256
# What a tab's hash (and an event's id) may look like: the page's are a dozen letters and
# digits, a client's a UUID. Anything else is refused before it is kept anywhere (a hash of
# 60,000 characters was kept, by the door, Gradio's queue and the handlers, for good).
_HASH = re.compile(r"[A-Za-z0-9_-]{1,64}")
BAD_TAB = "This request names a tab in a form this studio does not use; reload the page."
NO_FETCHING = (
    "This studio does not fetch files named by a URL inside a request: upload the file, or give "
    "the link as text where a link is asked for."
)
_URL_SCHEMES = ("http:", "https:", "//")
TOO_DEEP = "This request nests its data deeper than this studio reads."
# The most separators and containers (`,` `[` `{`, in strings or not) a body may hold: far
# more than any event or call carries (an instruction of 4,000 commas; images are strings),
# and read in milliseconds. A 20 MB body of `[],` held the GIL for seconds in each of the
# three parses it got (ours, Starlette's, pydantic's): every page stalled 3-11 s, and the
# studio took 2.3 GB (review 28 F1).
MAX_JSON_PARTS = 10_000
TOO_MANY_PARTS = "This request holds more separate values than this studio reads."
# The largest MCP request the MCP layer takes (mcp.server.transport_security): one larger was
# read whole first, up to the studio's body cap (134 MB: review 9 F4).
MCP_BODY_BYTES = 4 * 1024 * 1024
# Bodies larger than this are parsed on a worker thread (Gradio's loop keeps serving others).
_PARSE_ON_THREAD_BYTES = 1024 * 1024
TOO_LARGE = "This request is larger than this studio takes."
ONE_LARGE_AT_A_TIME = "You already have a large request on its way; wait for it to finish."
ONE_LARGE_HERE = (
    "Someone from your network address already has a large request on its way; wait for it to "
    "finish."
)
# Bodies above this (images as data: URIs) are read one at a time per visitor and per network
# address (fresh identities from one address hold no more places), this many in all.
BIG_BODY_BYTES = 1024 * 1024
BIG_BODIES_AT_ONCE = 3
# Seconds a large body may take to arrive (50 MB at about 2 MB/s); and it must keep coming: after
# its first few seconds, at `BIG_BODY_BYTES_PER_S` on average (a slow mobile upload is faster),
# so a body trickling in holds its place for seconds, not the whole deadline.
BIG_BODY_READ_S = 30.0
BIG_BODY_GRACE_S = 4.0
BIG_BODY_BYTES_PER_S = 100 * 1024
TOO_SLOW = "This request took too long to arrive; try again."
# Marks an input that may carry an image inside a request (a data: URI: the API's image and
# mask, the page's drawn region): only an event of a function with one may send a body larger
# than `BIG_BODY_BYTES` (`takes_large`). A call to list sessions sent as the largest body the
# studio takes was read and parsed whole, twice (review 35 F1).
LARGE_INPUT = "kontext_large_input"
_C = TypeVar("_C")
# Seconds a large body waits for one of the places before it is refused (not queued without end).
BIG_BODY_WAIT_S = 8.0
BUSY = "This studio is receiving other large requests right now; try again in a moment."
# Bytes of bodies up to `BIG_BODY_BYTES` being read at once for one visitor, and for everyone
# from one network address (a request naming nobody counts for its address only). A page's
# events are a few kilobytes and read in a moment; an API call with a small image as data is
# a megabyte at most.
READING_PER_VISITOR = 4 * BIG_BODY_BYTES
READING_PER_ADDRESS = 16 * BIG_BODY_BYTES
TOO_MUCH_ON_ITS_WAY = (
    "You have many requests on their way to this studio at once; wait for them to arrive."
)
TOO_MUCH_HERE = (
    "Others from your network address have many requests on their way to this studio; try again "
    "in a moment."
)
# Events one visitor may have waiting or running in Gradio's queue at once, beside one for each
# edit they may have running (an API or MCP edit's event lasts as long as the edit;
# `serve.events_at_once`). A tab queues at most four events of its own at a time (the tick,
# the balance, the key check, a click: each "once" or "always last"), and each Enter typed
# ahead is an event that lasts the few hundredths of a second it takes to store the step;
# typing ahead in two tabs on a loaded machine stays well under 16. A pile of refused events
# is what delays everyone else (measured: another visitor's example click, 0.14 s alone, took
# 3.5 s behind 24 of one visitor's events and 7.6 s behind 48).
EVENTS_AT_ONCE = 16
TOO_MANY_EVENTS = (
    "You already have many requests waiting on this studio; wait for them to finish and try again."
)
# MCP requests (a tool call lasts as long as its tool) one visitor may have under way at once,
# and everyone from one network address (a request naming nobody counts for its address
# only). Gradio's MCP server runs every caller's tools through one client of its own, with a
# few dozen threads: one caller holding 80 calls made every other MCP caller wait 2 to 5 s a
# call (review 6 F5).
MCP_CALLS_PER_VISITOR = 4
MCP_CALLS_PER_ADDRESS = 8
MCP_REFUSAL_PAUSE_S = 1.0
TOO_MANY_MCP_CALLS = (
    "You already have several MCP calls under way on this studio; wait for one to finish."
)
TOO_MANY_MCP_CALLS_HERE = (
    "Others from your network address have several MCP calls under way on this studio; try "
    "again in a moment."
)
# Answers Gradio keeps for a visitor's tabs that no one has read yet (a page reads its own as
# they come; a client that never reads them would have them kept for good): past this, their
# next event is refused.
UNREAD_PER_VISITOR = 200
# How long answers no one reads are kept once a visitor has that many: those of their tabs
# unused that long go (a client killed before reading, or that lost its events' ids, was
# refused every event for good: an API or MCP caller, named by their key, until a restart;
# "reload the page" did not help either: review 40 F1).
UNREAD_KEPT_S = 60.0
UNREAD = (
    "Your tabs have many answers from this studio they have not read: read the answers of the "
    "events you sent, or try again in a minute (answers left unread that long are let go)."
)
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
# Whom the MCP requests that name nobody are counted as, all those of one network address
# together (`_mcp_caller`).
_NOBODY = "nobody:"
# Routes that answer as soon as the event is queued (the page's events, gradio_client's calls).
_ANSWER_WHEN_QUEUED = tuple(
    compile_path(route)[0] for route in ("/gradio_api/queue/join", "/gradio_api/call/{api:path}")
)
# Routes that run an event at once, outside Gradio's queue, and answer when it is done.
_RUN_AT_ONCE = tuple(
    compile_path(route)[0] for route in ("/gradio_api/run/{api:path}", "/gradio_api/api/{api:path}")
)
NOT_YOUR_TAB = "This tab belongs to another visitor; reload the page."
# An event called by its name: only the public API's are (the page's own events are run by
# the page, by their number; called by name, each answer failed to serialise and logged a
# traceback of 6.6 KB: review 6 F9).
_BY_NAME = re.compile(r"/gradio_api/(?:call/v2|call|run|api)/([^/]+)/?")
NO_SUCH_ENDPOINT = "This studio has no API endpoint of that name (see its API page)."
# What Gradio cannot handle, and answers with a traceback in the studio's log for each request
# (review 8 F2: a client sending them in a loop grew the log by half a megabyte a second):
# refused at the door with a sentence instead. A `/call/v2/<name>` body is its endpoint's
# arguments by name (`client_utils.construct_args` raises on any other key, or a missing one);
# a page's event names a function Gradio has; the answers of an event Gradio holds.
_CALL_V2 = tuple(
    compile_path(route)[0]
    for route in ("/gradio_api/call/v2/{api_name}", "/gradio_api/call/v2/{api_name}/")
)
V2_ARGUMENTS = (
    "This API route takes a JSON object of the endpoint's arguments by name ({names}); see the "
    "studio's API page."
)
NO_SUCH_EVENT_KIND = "This studio has no event of that number; reload the page."
TOO_FEW_ARGUMENTS = (
    "This call sends fewer values than the endpoint takes ({wanted}); see the studio's API page."
)
_CALL_ANSWERS = tuple(
    compile_path(route)[0]
    for route in ("/gradio_api/call/{api}/{event_id}", "/gradio_api/call/v2/{api}/{event_id}")
)
NO_SUCH_EVENT = "This studio has no answers for that event id (already read, or never sent)."
_UPLOAD = compile_path("/gradio_api/upload")[0]
# What Gradio builds for each request: the page, its config, the API's description, the MCP
# tools' schema (`turns.PageRate`).
_BUILT = tuple(
    compile_path(route)[0]
    for route in (
        "/",
        "/config",
        "/config/",
        "/gradio_api/info",
        "/gradio_api/info/",
        "/gradio_api/openapi.json",
        # Every tool's description and JSON schema, built afresh on the event loop for each
        # request: 32 connections asking again and again made another visitor's API call
        # 1.8 s slower (review 10 F1).
        "/gradio_api/mcp/schema",
        "/gradio_api/mcp/schema/",
    )
)
# Gradio's MCP server: a streamable HTTP request answers when its work is done (its SSE
# transport, which answers a call at once and runs it after, is not served to a hosted
# studio's visitors: its calls could not be counted while they run).
_MCP = compile_path("/gradio_api/mcp{rest:path}")[0]
# The ends of the paths Gradio's MCP server takes requests at (`handle_streamable_http`).
_MCP_STREAM_ENDS = (
    "/gradio_api/mcp",
    "/gradio_api/mcp/",
    "/gradio_api/mcp/http",
    "/gradio_api/mcp/http/",
)
_MCP_SSE = tuple(
    compile_path(route)[0]
    for route in ("/gradio_api/mcp/sse", "/gradio_api/mcp/messages{rest:path}")
)
NO_MCP_SSE = (
    "This hosted studio serves MCP over streamable HTTP only, at /gradio_api/mcp/ (not SSE)."
)
# Endless streams for whom they serve nothing: MCP's stream of the server's own messages (its
# server is stateless: a client never asks for it), and a tab's heartbeat for a request that
# names nobody (it has no tab). Held open by the thousand from a few dozen addresses, they filled
# the studio's connections, and every page was refused (review 22 F1).
NO_MCP_STREAM = "This studio's MCP server sends no stream of its own; POST requests to it."
NO_SUCH_MCP_ROUTE = (
    "This studio's MCP server is at /gradio_api/mcp/ (and its tools' schema at /schema)."
)
NO_HEARTBEAT = (
    "This studio keeps a tab alive only for a visitor it knows: open the studio's page, or "
    "reload it."
)
_JOIN = compile_path("/gradio_api/queue/join")[0]
_CANCEL = compile_path("/gradio_api/cancel")[0]
NOT_YOUR_EVENT = "That event belongs to another tab; nothing was cancelled."
_COMPONENT_SERVER = compile_path("/gradio_api/component_server{slash:path}")[0]
# Events refused to nobody, kept until their answer is read (the oldest forgotten first).
REFUSALS_KEPT = 1000
_TAB = "tab:"
_QUEUE_DATA = compile_path("/gradio_api/queue/data")[0]
# What Gradio streams for a session it has no messages for (`routes.queue_data_helper`).
_STREAM = b"text/event-stream; charset=utf-8"
_NO_SUCH_STREAM = (
    b'data: {"msg": "unexpected_error", "event_id": null, "message": "404: Not Found", '
    b'"success": false, "session_not_found": true}\n\n'
)
_HEARTBEAT = compile_path("/gradio_api/heartbeat/{session_hash}")[0]
# Routes that name a tab in their query: its answers.
_BY_QUERY = tuple(compile_path(route)[0] for route in ("/gradio_api/queue/data",))


class _TooLarge(Exception):
    pass


class TabDoor:
    """Bodies within their caps, and each tab's session hash for its own browser only."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        body_bytes: int,
        events_at_once: int = EVENTS_AT_ONCE,
        per_address: bool = True,
        events_per_s: float = EVENTS_IN_ALL_PER_S,
    ) -> None:
        self.app = app
        # Whether pages, MCP requests and bodies on their way are counted per network address:
        # not where every visitor is one address (a share link's tunnel), where one client
        # would use them up for everyone (review 6 F8: pages paced per address there had
        # everyone's refused).
        self.per_address = per_address
        self.body_bytes = body_bytes
        self.events_at_once = events_at_once
        # Events past the door and not in Gradio's queue, by visitor: those on their way into it
        # (until it answers that they are in: a burst sent at once is counted before any of it
        # is queued), and those run outside it (until they are done).
        self.outside: dict[str, int] = {}
        self.tabs: OrderedDict[str, str] = OrderedDict()
        # The tabs bound to each visitor, oldest first; and to each network address (where the
        # visitor was when they bound it), and where each such tab was bound.
        self.owned: dict[str, OrderedDict[str, None]] = {}
        self.at_address: dict[str, OrderedDict[str, None]] = {}
        self.tab_at: dict[str, str] = {}
        # When each tab was last used (`_may_use`).
        self.used_at: dict[str, float] = {}
        # Events refused to nobody, by their tab (`_TAB`) or their event id (`_EVENT`): each
        # event's id and the sentence its answer says.
        self.refusals: OrderedDict[str, list[tuple[str, str]]] = OrderedDict()
        # Large bodies being read or parsed: whose, and a bound on them all.
        self.big_in_flight: set[str] = set()
        self.big_bodies = asyncio.Semaphore(BIG_BODIES_AT_ONCE)
        # Bytes of large bodies being read (or read and not yet done with), and their bound.
        self.big_bytes = 0
        self.big_bytes_cap = BIG_BODIES_AT_ONCE * body_bytes
        # Those large bodies still arriving (`_Budget.take`: the largest gives way).
        self.big_arriving: set[_Budget] = set()
        # How soon each address's next large body may be read (`turns.BigBodyRate`).
        self.big_rate = BigBodyRate(body_bytes)
        # Bytes of the smaller bodies being read, by visitor and by address (`_Budget`).
        self.reading: dict[str, int] = {}
        # Gradio's unread answers by tab (`Queue.pending_messages_per_session`), once seen, and
        # its events waiting or running by tab (`Queue.pending_event_ids_session`).
        self.pending: dict[str, Any] | None = None
        self.events: dict[str, Any] = {}
        self.live: dict[str, Any] = {}
        # MCP requests under way, by visitor and by "address:..." (`MCP_CALLS_PER_VISITOR`).
        self.mcp_calls: dict[str, int] = {}
        # For each network address: pages built lately, requests answered, bytes sent.
        self.pages = PageRate()
        self.mcp_requests = McpRate()
        self.requests = RequestRate()
        self.sent = SentRate()
        # Events each visitor and each address sent lately (`turns.EventRate`).
        self.event_rate = EventRate(events_per_s)
        # The public API's endpoint names (`_public_names`), once read; and each one's argument
        # names, all and required (`_arguments`).
        self.public: frozenset[str] | None = None
        self.arguments: dict[str, tuple[tuple[str, ...], frozenset[str]]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if (paced := await self._paced(scope, send)) is None:
            return
        send = paced
        path = route_path(scope)
        self._see_queue(scope)
        who = visitor_in(scope)
        owner = who.owner if who is not None else None
        binds = owner if not forwarded_in(scope) else None
        # Where a tab bound now is counted (not where every visitor is one address).
        at = (who.address or address_in(scope)) if who is not None and self.per_address else None
        if await self._tab_refused(scope, send, path, owner, binds, at):
            return
        if await self._route_refused(scope, send, path):
            return
        if scope.get("method") not in ("POST", "PUT", "PATCH") or _UPLOAD.match(path):
            await self.app(scope, receive, send)
            return
        quick = any(route.match(path) for route in _ANSWER_WHEN_QUEUED)
        at_once = any(route.match(path) for route in _RUN_AT_ONCE)
        counted = owner if quick or at_once else None  # whose event this is
        if counted is not None and self._events_of(scope, counted) >= self.events_at_once:
            await refuse_event(send, 429, TOO_MANY_EVENTS)
            return
        if counted is not None and self._unread_past(scope, counted):
            await refuse_event(send, 429, UNREAD)
            return
        cap = self._body_cap(scope, owner, path)
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
        address = who.address if who is not None else address_in(scope)
        # (Not where every visitor is one address: `per_address`.)
        here = f"address:{address}" if address and self.per_address else None
        mcp = _MCP.match(path) is not None and not forwarded_in(scope)
        if mcp and (too_many := self._mcp_refusal(owner, here)):
            # Said after a pause: a client asking again at once (16,000 refusals in 35 s from
            # one address) takes the CPU everyone's calls need.
            await asyncio.sleep(MCP_REFUSAL_PAUSE_S)
            await refuse(send, 429, too_many)
            return
        size = cap if declared is None else declared
        if big and here is not None and here in self.big_in_flight:
            await refuse(send, 429, ONE_LARGE_HERE)
            return
        # A large body (or one of no declared length) takes memory while it is read and again
        # while Gradio parses it: one at a time for each visitor and address; the bytes of all
        # those being read at most `BIG_BODIES_AT_ONCE` bodies' worth (counted as they arrive,
        # so a body trickling in holds what it sent, not a place); and, once whole, three
        # parsed at once. Joining an event answers once it is parsed, so that bound holds until
        # then; a route that answers only when its work is done (MCP, run) holds it while the
        # body is read.
        async with contextlib.AsyncExitStack() as held:
            if counted is not None:
                self.outside[counted] = self.outside.get(counted, 0) + 1
                held.callback(_count_down, self.outside, counted)
            if mcp:  # counted until it is answered
                send = self._mcp_counted(held, send, (_mcp_caller(owner, here), here or "?"))
            places = self._large_places(held, [key, *([here] if here else [])] if big else [])
            budget = (
                _Budget(self, big=True, declared=size)
                if big
                else _Budget(self, visitor=owner, address=here)
            )
            places.callback(budget.give_back)
            body = await _read_or_refuse(receive, send, cap, budget)
            if body is None:
                return
            # (By the bytes that came. MCP's own call of a tool carries its caller's body.)
            if big and not forwarded_in(scope) and await self._big_refused(send, here, len(body)):
                return
            if big and not await self._parse_place(places, send):
                return
            document, unread = await _parsed(body)
            if unread is not None:
                await refuse(send, 400, unread)
                return
            named = _hash_in(document)
            if named is not None and not _HASH.fullmatch(named):
                await refuse(send, 400, BAD_TAB)
                return
            theirs = named is not None and not self._may_use(named, owner, binds, at)
            if theirs and not forwarded_in(scope):
                await refuse(send, 403, NOT_YOUR_TAB)
                return
            # (Gradio's MCP server calls every caller's tools through one client, one tab for
            # all: a refusal parked under that tab took its stream from everyone's answers
            # (review 6 F6). Its requests that name nobody go on to the handler, which refuses
            # them in its answer on that stream; the MCP request itself was counted per
            # address at the door.)
            nobody = owner is None and not forwarded_in(scope)
            if nobody and (quick or at_once or _COMPONENT_SERVER.match(path)):
                await self._refuse_nobody(scope, send, quick, named if _JOIN.match(path) else None)
                return
            if (wrong := self._body_refusal(scope, path, document, len(body))) is not None:
                await refuse_event(send, *wrong)
                return
            replay = _replay(body, receive)  # (the door's parse of it goes now)
            del body, document
            if quick:
                await self.app(scope, replay, self._binding_events(send, binds, at))
                return
            if at_once or mcp:  # counted until it is done
                places.close()
                await self.app(scope, replay, send)
                return
        await self.app(scope, replay, send)

    async def _big_refused(self, send: Send, here: str | None, size: int) -> bool:
        """Refuse a large body of `size` bytes (whole) from the address `here` past its pace or
        its fair share of everyone's (`turns.BigBodyRate`), saying which; else wait for its
        turn."""
        wait, refusal = self.big_rate.wait_for(here, size)
        if refusal is not None:
            await refuse(send, 429, refusal)
            return True
        if wait > 0:
            await asyncio.sleep(wait)
        return False

    async def _parse_place(self, places: contextlib.ExitStack, send: Send) -> bool:
        """One of the places of large bodies parsed at once, held with `places` (else refused,
        saying the studio is busy, after `BIG_BODY_WAIT_S`)."""
        try:
            async with asyncio.timeout(BIG_BODY_WAIT_S):
                await self.big_bodies.acquire()
        except TimeoutError:
            await refuse(send, 503, BUSY)
            return False
        places.callback(self.big_bodies.release)
        return True

    def _body_cap(self, scope: Scope, owner: str | None, path: str) -> int:
        """The most a body may carry: less for a request that names nobody; for MCP what the
        MCP layer takes (it refuses more only once it has read it all); and for an endpoint
        called by name that takes no image inside a request, no large body."""
        cap = self.body_bytes if owner is not None else UNNAMED_BODY_BYTES
        if _MCP.match(path) is not None:
            return min(cap, MCP_BODY_BYTES)
        by_name = _BY_NAME.fullmatch(path)
        if by_name is not None and not any(
            _large_taking(fn) for fn in _named_fns(scope, by_name.group(1))
        ):
            return min(cap, BIG_BODY_BYTES)
        return cap

    def _takes_large(self, scope: Scope, path: str, document: object) -> bool:
        """Whether the event this parsed body asks for may carry a large body: a join naming a
        function with an input that takes an image inside a request (`LARGE_INPUT`). (Called
        by name, the cap said so before the body was read; MCP's own requests are its.)"""
        if not _JOIN.match(path) or not isinstance(document, dict):
            return True
        try:  # read by Gradio's own model, as its route will (a "3" is 3)
            index = PredictBody.model_validate(document).fn_index
        except ValueError:  # (pydantic's ValidationError)
            return True  # Gradio answers 422 itself
        fns = getattr(_gradio_blocks(scope), "fns", None)
        if not isinstance(fns, dict) or index not in fns:
            return True  # (`_event_refusal` says so)
        return _large_taking(fns[index])

    def _large_places(
        self, held: contextlib.AsyncExitStack, keys: list[str]
    ) -> contextlib.ExitStack:
        """Take a large body's place for each of `keys` (its visitor, its address) until `held`
        closes, or until the stack returned is closed (with what else was taken to read the
        body: its bytes, a place among the large bodies parsed at once): once the body is read,
        on a route that answers only when its work is done. MCP forwards that body to Gradio's
        queue as its caller: holding the visitor's place until the tool ended refused that
        (review 8 F5), holding one of the three places of all made it wait past its client's
        5 s, so paid edits were answered "timed out" (review 9 F1)."""
        places = contextlib.ExitStack()
        held.callback(places.close)
        for taken in keys:
            self.big_in_flight.add(taken)
            places.callback(self.big_in_flight.discard, taken)
        return places

    def _see_queue(self, scope: Scope) -> None:
        """Find Gradio's tables of unread answers and of events by tab (on each request: the
        studio puts its own table of answers in place of Gradio's after Gradio's first request
        to itself; seen once, tabs let go took their unread answers out of Gradio's first,
        which nothing used, and Gradio kept them: review 40 F1)."""
        queue = _gradio_queue(scope)
        pending = getattr(queue, "pending_messages_per_session", None)
        self.pending = pending if isinstance(pending, dict) else None
        if getattr(pending, "weight", self._held_with) != self._held_with:
            setattr(pending, "weight", self._held_with)  # noqa: B010 (`ui.lean`: who makes room)
        events = getattr(queue, "pending_event_ids_session", None)
        self.events = events if isinstance(events, dict) else {}
        live = getattr(queue, "event_ids_to_events", None)
        self.live = live if isinstance(live, dict) else {}

    def _held_with(self, hash_: str) -> int:
        """How many tabs the visitor of the tab `hash_` holds (0: nobody holds it)."""
        owner = self.tabs.get(hash_)
        return len(self.owned.get(owner, ())) if owner is not None else 0

    def _unread_of(self, scope: Scope, owner: str) -> int:
        """Messages Gradio keeps for `owner`'s tabs that no stream has taken yet."""
        pending = getattr(_gradio_queue(scope), "pending_messages_per_session", None)
        if not isinstance(pending, dict):
            return 0
        unread = 0
        for hash_ in self.owned.get(owner, ()):
            messages = dict.get(pending, hash_)  # (not as a use: its order is Gradio's to keep)
            unread += messages.qsize() if isinstance(messages, asyncio.Queue) else 0
        return unread

    def _unread_past(self, scope: Scope, owner: str) -> bool:
        """Whether `owner` has `UNREAD_PER_VISITOR` unread answers, once those of their idle
        tabs unused for `UNREAD_KEPT_S` have gone (least recently used first)."""
        unread = self._unread_of(scope, owner)
        if unread < UNREAD_PER_VISITOR or self.pending is None:
            return unread >= UNREAD_PER_VISITOR
        now = time.monotonic()
        for hash_ in list(self.owned.get(owner, ())):  # (least recently used first)
            if unread < UNREAD_PER_VISITOR or now - self.used_at.get(hash_, now) < UNREAD_KEPT_S:
                break
            messages = dict.get(self.pending, hash_)
            waiting = messages.qsize() if isinstance(messages, asyncio.Queue) else 0
            if waiting and not tab_busy(self.events, self.live, hash_):
                self._let_go(hash_)
                unread -= waiting
        return unread >= UNREAD_PER_VISITOR

    def _events_of(self, scope: Scope, owner: str) -> int:
        """`owner`'s events waiting or running in Gradio's queue, and those outside it."""
        queued = 0
        for event in list(_gradio_events(scope)):
            request = getattr(event, "request", None)
            who = visitor_in(request.scope) if request is not None else None
            queued += who is not None and who.owner == owner
        return queued + self.outside.get(owner, 0)

    async def _tab_refused(
        self,
        scope: Scope,
        send: Send,
        path: str,
        owner: str | None,
        binds: str | None,
        at: str | None,
    ) -> bool:
        """Refuse (and say so) a request naming a tab or an event in a form the studio does not
        use, or another visitor's; or answer one refused before, or a stream never opened."""
        hashes = _hashes_in_url(scope, path)
        event = _event_in_url(path)
        if not all(_HASH.fullmatch(h) for h in (*hashes, *([event] if event else []))):
            await refuse(send, 400, BAD_TAB)
            return True
        if await self._answer_refused(scope, send, path, hashes):
            return True
        if _QUEUE_DATA.match(path) and not _hashes_known(scope, hashes):
            # A stream no event was ever queued for (a tab opens its stream only after its
            # first event is queued): Gradio's own answer, without the traceback it logs for
            # it, and the made-up hash is bound to nobody.
            await _answer(send, 200, _STREAM, _NO_SUCH_STREAM)
            return True
        answers = scope.get("method") == "GET" and any(r.match(path) for r in _CALL_ANSWERS)
        if answers and event is not None and not _event_known(scope, event):
            # Gradio would open a stream and fail inside it (its 404 raised after the answer
            # began: a 6 KB traceback logged each time).
            await refuse(send, 404, NO_SUCH_EVENT)
            return True
        if owner is None and _HEARTBEAT.match(path) and not forwarded_in(scope):
            await refuse(send, 403, NO_HEARTBEAT)
            return True
        for hash_ in hashes:
            if not forwarded_in(scope) and not self._may_use(hash_, owner, binds, at):
                await refuse(send, 403, NOT_YOUR_TAB)
                return True
        theirs = event is not None and not self._may_use(_EVENT + event, owner, None)
        if theirs and not forwarded_in(scope):
            await refuse(send, 403, NOT_YOUR_TAB)
            return True
        return False

    async def _paced(self, scope: Scope, send: Send) -> Send | None:
        """Every request of a network address at a pace (`turns.RequestRate`): one past it
        waits its turn, and one that would wait too long is refused with a sentence (None);
        and `send`, pacing the bytes of the answer's body (`turns.SentRate`). Not where every
        visitor is one address, nor Gradio's MCP server's calls to itself."""
        if not self.per_address or forwarded_in(scope):
            return send
        address = address_in(scope)
        if await _waited_or_refused(send, self.requests.wait_for(address), REQUESTS_HERE):
            return None

        async def paced(message: Message) -> None:
            body = message.get("body") if message["type"] == "http.response.body" else None
            if body and (wait := self.sent.wait_for(address, len(body))):
                await asyncio.sleep(wait)
            await send(message)

        return paced

    async def _route_refused(self, scope: Scope, send: Send, path: str) -> bool:
        """Refuse MCP's SSE transport, and an event called by a name the public API does not
        have; pace what Gradio builds for each request (the page, its config, the API's
        description) for the request's network address, refusing a page that would wait too
        long."""
        if any(route.match(path) for route in _MCP_SSE):
            await refuse(send, 404, NO_MCP_SSE)
            return True
        # Gradio's MCP server answers any path under it that ends as one of these (not its
        # schema, nor SSE's routes): `/gradio_api/mcp/http` was one, unpaced (review 34 F1).
        under_mcp = _MCP.match(path) is not None
        stream = under_mcp and path.endswith(_MCP_STREAM_ENDS)
        # Any other path under it Gradio answers with its own 404, which quotes the path (a
        # page built from the path, under a name ending as a stream's: review 34 F3).
        if under_mcp and not stream and path.rstrip("/") != "/gradio_api/mcp/schema":
            await refuse(send, 404, NO_SUCH_MCP_ROUTE)
            return True
        if scope.get("method") == "GET" and stream and not forwarded_in(scope):
            await refuse(send, 405, NO_MCP_STREAM)
            return True
        # (An endpoint the API does not have is refused before it counts as an event.)
        by_name = _BY_NAME.fullmatch(path) if scope.get("method") == "POST" else None
        if by_name is not None and by_name.group(1) not in self._public_names(scope):
            await refuse(send, 404, NO_SUCH_ENDPOINT)
            return True
        if await self._events_paced(scope, send, path):
            return True
        built = any(r.match(path) for r in _BUILT) and self.per_address
        if scope.get("method") in ("GET", "HEAD") and built:
            sentence = PAGES_CROWDED if self.pages.crowded else PAGES_HERE
            return await _waited_or_refused(send, self.pages.wait_for(address_in(scope)), sentence)
        # An MCP request (a tool's call; the list of tools) is paced for its address
        # (`turns.McpRate`): 40 addresses asking for the list again and again, anonymous, held
        # another visitor's page at 1.2-1.5 s median, 0.45-0.52 s alone (review 33 F1).
        mcp = scope.get("method") == "POST" and stream and self.per_address
        if mcp and not forwarded_in(scope):
            wait = self.mcp_requests.wait_for(address_in(scope))
            return await _waited_or_refused(send, wait, MCP_HERE)
        return False

    async def _events_paced(self, scope: Scope, send: Send, path: str) -> bool:
        """Pace a visitor's events (and their address's): one past the pace waits its turn, and
        one that would wait too long is refused with a sentence (True). Not the calls
        Gradio's MCP server makes to itself (MCP requests are counted at the door)."""
        if scope.get("method") != "POST" or forwarded_in(scope):
            return False
        if not any(r.match(path) for r in (*_ANSWER_WHEN_QUEUED, *_RUN_AT_ONCE)):
            return False
        who = visitor_in(scope)
        if who is None or who.owner is None:
            return False  # (nobody's events are answered at the door)
        queued = any(r.match(path) for r in _ANSWER_WHEN_QUEUED)
        if queued and _gradio_waiting(scope) >= WAITING_MOST:
            await refuse_event(send, 429, EVENTS_CROWDED)
            return True
        address = (who.address or address_in(scope)) if self.per_address else None
        wait = self.event_rate.wait_for(who.owner, address)
        sentence = EVENTS_CROWDED if self.event_rate.crowded else EVENTS_HERE
        return await _waited_or_refused(send, wait, sentence, refusing=refuse_event)

    def _public_names(self, scope: Scope) -> frozenset[str]:
        """The names of the public API's endpoints (read from the app once)."""
        if self.public is None:
            blocks = _gradio_blocks(scope)
            fns = getattr(blocks, "fns", {})
            self.public = frozenset(
                fn.api_name
                for fn in fns.values()
                if fn.api_visibility == "public" and isinstance(fn.api_name, str)
            )
        return self.public

    def _arguments(self, scope: Scope) -> dict[str, tuple[tuple[str, ...], frozenset[str]]]:
        """Each public endpoint's argument names, and those it requires (read from Gradio's
        description of its API once: what `/call/v2` matches a body against)."""
        if self.arguments is None:
            blocks = _gradio_blocks(scope)
            info = blocks.get_api_info() if blocks is not None else {}
            arguments = {}
            for route, endpoint in info.get("named_endpoints", {}).items():
                parameters = endpoint.get("parameters", [])
                names = tuple(p["parameter_name"] for p in parameters if "parameter_name" in p)
                required = frozenset(
                    p["parameter_name"]
                    for p in parameters
                    if "parameter_name" in p and not p.get("parameter_has_default", False)
                )
                arguments[route.lstrip("/")] = (names, required)
            self.arguments = arguments
        return self.arguments

    def _body_refusal(
        self, scope: Scope, path: str, document: object, size: int
    ) -> tuple[int, str] | None:
        """The status and sentence this event's parsed body (of `size` bytes) is refused with,
        if it is: a large body for an event that takes no image inside it (`_takes_large`).
        Else `_event_refusal`'s, answered 422."""
        if size > BIG_BODY_BYTES and not self._takes_large(scope, path, document):
            return 413, TOO_LARGE
        wrong = self._event_refusal(scope, path, document)
        return None if wrong is None else (422, wrong)

    def _event_refusal(self, scope: Scope, path: str, document: object) -> str | None:
        """Why Gradio could not handle this event's parsed body without a traceback, if so: a
        `/call/v2/<name>` body that is not that endpoint's arguments by name, or a join naming a
        function Gradio does not have. (A body Gradio cannot read at all, it refuses itself.)
        And a cancel naming an event of another tab than its own: Gradio drops the event named
        by its id alone, whoever's it is (the tab was checked, not the event)."""
        v2 = next((m for route in _CALL_V2 if (m := route.match(path)) is not None), None)
        if v2 is not None and isinstance(document, dict):
            names, required = self._arguments(scope).get(v2["api_name"], ((), frozenset()))
            given = set(document) - {"oauth_token"}  # (Gradio takes it apart, or drops it)
            if not given <= set(names) or not required <= given:
                return V2_ARGUMENTS.format(names=", ".join(names) or "none")
        if _JOIN.match(path) and isinstance(document, dict):
            try:  # read by Gradio's own model, as its route will (a "3" is 3)
                index = PredictBody.model_validate(document).fn_index
            except ValueError:  # (pydantic's ValidationError)
                return None  # Gradio answers 422 itself
            blocks = _gradio_blocks(scope)
            fns = getattr(blocks, "fns", None)
            if index is not None and isinstance(fns, dict) and index not in fns:
                return NO_SUCH_EVENT_KIND
            if index is not None and isinstance(fns, dict):
                return _too_few(fns[index], document)
        by_name = _BY_NAME.fullmatch(path)
        if by_name is not None and v2 is None and isinstance(document, dict):
            named = _named_fns(scope, by_name[1])
            if len(named) == 1:
                return _too_few(named[0], document)
        if _CANCEL.match(path) and isinstance(document, dict):
            queue = _gradio_queue(scope)
            events = getattr(queue, "event_ids_to_events", {})
            event = events.get(str(document.get("event_id")))
            if event is not None and event.session_hash != document.get("session_hash"):
                return NOT_YOUR_EVENT
        return None

    def _mcp_counted(
        self, held: contextlib.AsyncExitStack, send: Send, callers: tuple[str, str]
    ) -> Send:
        """Count an MCP request for each of `callers` until its answer's last byte goes out (or
        it ends unanswered, with `held`): a client's next call, sent as soon as it has read the
        answer, could find its last one still counted, and be refused."""
        for taken in callers:
            self.mcp_calls[taken] = self.mcp_calls.get(taken, 0) + 1
        counted = [True]

        def count_down() -> None:
            if counted:  # once
                counted.clear()
                for taken in callers:
                    _count_down(self.mcp_calls, taken)

        held.callback(count_down)

        async def answering(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                count_down()
            await send(message)

        return answering

    def _mcp_refusal(self, owner: str | None, here: str | None) -> str | None:
        """Why one more MCP request of `owner`'s (from `here`) is refused now, if it is."""
        if self.mcp_calls.get(_mcp_caller(owner, here), 0) >= MCP_CALLS_PER_VISITOR:
            return TOO_MANY_MCP_CALLS
        if self.per_address and self.mcp_calls.get(here or "?", 0) >= MCP_CALLS_PER_ADDRESS:
            return TOO_MANY_MCP_CALLS_HERE
        return None

    async def _refuse_nobody(self, scope: Scope, send: Send, queued: bool, tab: str | None) -> None:
        """Refuse an event of a request that names nobody, saying why, without Gradio. An
        event joined to a tab, or called by name, is answered as queued; its answer (read from
        the tab's stream, or by its id) is the refusal, as Gradio words an error."""
        try:
            visitor_from(Request(scope), hosted=True)
            sentence = NO_COOKIE
        except Refusal as exc:
            sentence = str(exc)
        if not queued or (tab is None and _JOIN.match(route_path(scope))):
            await refuse_event(send, 403, sentence)
            return
        event = uuid.uuid4().hex
        key = _TAB + tab if tab is not None else _EVENT + event
        self.refusals[key] = [*self.refusals.pop(key, [])[-15:], (event, sentence)]
        while len(self.refusals) > REFUSALS_KEPT:
            self.refusals.popitem(last=False)
        body = json.dumps({"event_id": event}).encode()
        await _answer(send, 200, b"application/json", body)

    async def _answer_refused(self, scope: Scope, send: Send, path: str, hashes: list[str]) -> bool:
        """Answer the stream of a tab (or a called event) refused to nobody, if this asks for
        one: the refusals, then the end of the stream. False: it asks for no such thing."""
        event = _event_in_url(path)
        if event is not None and scope.get("method") == "GET":
            refused = self.refusals.pop(_EVENT + event, None)
            if refused is not None:
                data = json.dumps(_error(refused[0][1])).encode()
                await _answer(send, 200, _STREAM, b"event: error\ndata: " + data + b"\n\n")
                return True
        if _QUEUE_DATA.match(path) and len(hashes) == 1:
            refused = self.refusals.pop(_TAB + hashes[0], None)
            if refused is not None:
                messages: list[dict[str, object]] = [
                    {
                        "msg": "process_completed",
                        "event_id": event_id,
                        "output": _error(sentence),
                        "success": False,
                    }
                    for event_id, sentence in refused
                ]
                messages.append({"msg": "close_stream", "event_id": None})
                body = b"".join(b"data: " + json.dumps(m).encode() + b"\n\n" for m in messages)
                # (Marked with the sentence, so the page can say it and put back what was typed
                # before it reads the stream: assets/studio.js.)
                said = quote(refused[-1][1]).encode()
                await _answer(send, 200, _STREAM, body, ((b"x-kontext-refused", said),))
                return True
        return False

    def _binding_events(self, send: Send, binds: str | None, at: str | None) -> Send:
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
                            self._may_use(_EVENT + event, binds, binds, at)
                            # A REST call's event streams under its own id as its tab's
                            # hash (Gradio's default): that stream is the caller's too.
                            self._may_use(event, binds, binds, at)
            await send(message)

        return noting

    def _may_use(
        self, hash_: str, owner: str | None, binds: str | None, at: str | None = None
    ) -> bool:
        """Whether the asker may speak for the tab `hash_`; its first named visitor takes it
        (counted at their network address `at`, when known). A visitor's tabs are kept most
        recently used last; past `TABS_PER_VISITOR`, the least recently used goes, and with it
        the answers Gradio keeps for it that no one read (so fresh hashes cannot push unread
        answers out of the count while Gradio keeps them)."""
        bound = self.tabs.get(hash_)
        if bound is not None:
            self.tabs.move_to_end(hash_)
            self.used_at[hash_] = time.monotonic()
            if (theirs := self.owned.get(bound)) is not None and hash_ in theirs:
                theirs.move_to_end(hash_)
            if (where := self.tab_at.get(hash_)) is not None:
                self.at_address[where].move_to_end(hash_)
            return bound == owner
        if binds is not None:
            self.tabs[hash_] = binds
            self.used_at[hash_] = time.monotonic()
            theirs = self.owned.setdefault(binds, OrderedDict())
            theirs[hash_] = None
            if at is not None:
                self.tab_at[hash_] = at
                self.at_address.setdefault(at, OrderedDict())[hash_] = None
            if len(theirs) > TABS_PER_VISITOR:
                # Their oldest tab with no event waiting or running (one dropped while its
                # event ran lost that answer, and stopped Gradio's progress updates: review
                # round 7, F4); its empty record of events goes too (F6).
                gone = next((t for t in theirs if not tab_busy(self.events, self.live, t)), None)
                if gone is not None:
                    self._let_go(gone)
            if len(self.tabs) > TABS_KEPT:
                self._forget_one()
        return True

    def _forget_one(self) -> None:
        """Past `TABS_KEPT`: a tab of the network address holding the most (so that visitors
        opening many tabs, or crowds of fresh visitors with one each, push out one another's,
        never the one tab of a visitor elsewhere, which anyone naming its hash could then take:
        review 14 F2, review 17 F2), of its visitor holding the most; where no address holds
        more than one, of the visitor holding the most, else of all. The least recently used
        of the first `IDLE_LOOKED_AT` with no event waiting or running (all busy: the oldest)."""
        crowded = max(self.at_address.values(), key=len, default=None)
        heaviest = max(self.owned.values(), key=len, default=None)
        held: Iterable[str] = self.tabs
        if crowded is not None and len(crowded) > 1:
            held = crowded
        elif heaviest is not None and len(heaviest) > 1:
            held = heaviest
        looked_at = list(itertools.islice(held, IDLE_LOOKED_AT))
        idle = [t for t in looked_at if not tab_busy(self.events, self.live, t)]
        if not idle:
            owner = self.tabs.pop(looked_at[0])
            self._forget(looked_at[0], owner)
            return
        # (`max` keeps the first of equals: the least recently used of whoever holds most.)
        self._let_go(max(idle, key=lambda t: len(self.owned.get(self.tabs[t], ()))))

    def _let_go(self, hash_: str) -> None:
        """Forget the idle tab `hash_`, and with it its record of events and unread answers."""
        if self.pending is not None:
            self.pending.pop(hash_, None)
        self.events.pop(hash_, None)
        self._forget(hash_, self.tabs.pop(hash_))

    def _forget(self, hash_: str, owner: str) -> None:
        self.used_at.pop(hash_, None)
        theirs = self.owned.get(owner)
        if theirs is not None:
            theirs.pop(hash_, None)
            if not theirs:
                del self.owned[owner]
        where = self.tab_at.pop(hash_, None)
        if where is not None and (here := self.at_address.get(where)) is not None:
            here.pop(hash_, None)
            if not here:
                del self.at_address[where]


def takes_large(component: _C) -> _C:
    """`component`, marked as an input that may carry an image inside a request (`LARGE_INPUT`)."""
    setattr(component, LARGE_INPUT, True)
    return component


def _large_taking(fn: Any) -> bool:
    return any(getattr(block, LARGE_INPUT, False) for block in getattr(fn, "inputs", ()))


def _named_fns(scope: Scope, api_name: str) -> list[Any]:
    """The functions of the Gradio app serving `scope` called `api_name`."""
    fns = getattr(_gradio_blocks(scope), "fns", None)
    return [fn for fn in fns.values() if fn.api_name == api_name] if isinstance(fns, dict) else []


def _too_few(fn: Any, document: dict[str, Any]) -> str | None:
    """Why Gradio would fail this event of `fn` with a traceback quoting every value sent,
    if it would: fewer values than `fn` takes (a 60 MB one printed whole, three times a
    minute, grew the log by 180 MB a minute: review 17 F3)."""
    data, wanted = document.get("data"), len(getattr(fn, "inputs", ()))
    if isinstance(data, list) and len(data) < wanted:
        return TOO_FEW_ARGUMENTS.format(wanted=wanted)
    return None


def tab_busy(events: dict[str, Any], live: dict[str, Any], tab: str) -> bool:
    """Whether an event of `tab` waits or runs in Gradio's queue: one of its events by tab
    (`Queue.pending_event_ids_session`) is still among those waiting or running
    (`Queue.event_ids_to_events`). One done whose answer nobody read does not count, or a client
    could keep its tabs for good."""
    return any(event in live for event in events.get(tab, ()))


def _count_down(table: dict[str, int], key: str) -> None:
    """One fewer of `key` in `table` (gone at none)."""
    left = table.get(key, 0) - 1
    if left > 0:
        table[key] = left
    else:
        table.pop(key, None)


def _gradio_blocks(scope: Scope) -> Any:
    """The Gradio app (`gradio.Blocks`) serving `scope` (None: none)."""
    return getattr(scope.get("app"), "get_blocks", lambda: None)()


def _gradio_queue(scope: Scope) -> Any:
    """The queue (`gradio.queueing.Queue`) of the Gradio app serving `scope` (None: none)."""
    blocks = _gradio_blocks(scope)
    return getattr(blocks, "_queue", None)


def _gradio_waiting(scope: Scope) -> int:
    """How many events wait in Gradio's queue for their start (0 when there is no queue)."""
    queue = _gradio_queue(scope)
    return len(queue) if queue is not None else 0


def _gradio_events(scope: Scope) -> Iterable[Any]:
    """Every event waiting or running in Gradio's queue (it keeps each by its id until it
    ends, however it ends)."""
    events = getattr(_gradio_queue(scope), "event_ids_to_events", None)
    return events.values() if isinstance(events, dict) else ()


def _event_known(scope: Scope, event: str) -> bool:
    """Whether Gradio's `/call/…/<event id>` route has a stream to read for `event`: it reads the
    answers of the event's tab (its own id for a caller who sent no tab), found as that route
    finds it, among the event's waiting or running, then among those whose last answer is not
    read yet. (A finished event's answers stay until read, so a caller asking just after its
    event finished still finds them.) True when there is no queue to ask."""
    queue = _gradio_queue(scope)
    if queue is None:
        return True
    held = queue.event_ids_to_events.get(event)
    if held is not None:
        tab = held.session_hash
    else:
        tabs = queue.pending_event_ids_session.items()
        tab = next((t for t, ids in list(tabs) if event in ids), event)
    return tab in queue.pending_messages_per_session


def _hashes_known(scope: Scope, hashes: list[str]) -> bool:
    """Whether Gradio's queue holds messages for every tab in `hashes` (one it has never
    queued an event for has none); True when there is no queue to ask."""
    queue = _gradio_queue(scope)
    if queue is None:
        return True
    return all(h in queue.pending_messages_per_session for h in hashes)


def _error(sentence: str) -> dict[str, object]:
    """An event's answer when it failed, as Gradio words an error (`utils.error_payload`)."""
    return {"error": sentence, "duration": None, "visible": True, "title": "Error"}


async def _answer(
    send: Send,
    status: int,
    kind: bytes,
    body: bytes,
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def refuse_event(send: Send, status: int, sentence: str) -> None:
    """`refuse` for a route that queues an event: the sentence as Gradio words its own
    refusals there (`{"detail": ...}`), which is what its page and its clients show."""
    await _answer(send, status, b"application/json", json.dumps({"detail": sentence}).encode())


def _event_in_url(route_path: str) -> str | None:
    for route in _BY_EVENT:
        if (match := route.match(route_path)) is not None:
            return str(match["event_id"])
    return None


def _hashes_in_url(scope: Scope, route_path: str) -> list[str]:
    if (match := _HEARTBEAT.match(route_path)) is not None:
        return [match["session_hash"]]
    if any(route.match(route_path) is not None for route in _BY_QUERY):
        # (An empty one too: Gradio has no stream for it, and would log a traceback.)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        return query.get("session_hash", [])
    return []


async def _parsed(body: bytes) -> tuple[object, str | None]:
    """A body read as Gradio will read it: any body that parses as JSON, whatever its declared
    type (FastAPI compares media types without regard to case, a key may be spelled with
    escapes, the text may be UTF-16 or start with a byte order mark), parsed by the same
    `json.loads` as Starlette's `Request.json` (None when it does not parse); and why it is
    refused unread, if it is: it holds more values than any request of the page or the API
    does (`MAX_JSON_PARTS`), it nests deeper than `json.loads` reads (Gradio would answer with
    a traceback in the log), or it names a file by URL (`_names_a_url`)."""
    if not body:
        return None, None

    def parse() -> tuple[object, str | None]:
        if _parts(body) > MAX_JSON_PARTS:
            return None, TOO_MANY_PARTS
        try:
            document = json.loads(body)
        except ValueError:
            return None, None  # Gradio cannot read it either, and answers so itself
        except RecursionError:
            return None, TOO_DEEP
        return document, NO_FETCHING if _names_a_url(document) else None

    return await asyncio.to_thread(parse) if len(body) > _PARSE_ON_THREAD_BYTES else parse()


def _parts(body: bytes) -> int:
    """How many separators and containers `body` holds, at most (commas and brackets inside
    strings count too): a bound on the values it parses into, counted without parsing (a UTF-16
    or UTF-32 body has the same bytes for them, among zeros)."""
    parts = 0
    for mark in (b",", b"[", b"{"):
        parts += body.count(mark)
        if parts > MAX_JSON_PARTS:
            break
    return parts


def _hash_in(document: object) -> str | None:
    """The top-level `session_hash` of a parsed body."""
    if isinstance(document, dict):
        value = document.get("session_hash")
        return value if isinstance(value, str) else None if value is None else str(value)
    return None


def _names_a_url(document: object) -> bool:
    """Whether `document` holds a file object (Gradio's FileData: a `path` and `meta._type`
    "gradio.FileData") whose path is a URL. Gradio downloads such a file into its cache while it
    prepares any event's inputs, before a handler runs, whole into memory and without a bound on
    its size or time (gradio.processing_utils.move_files_to_cache; review 8 F7). The page only
    sends files it uploaded, by path; the API takes images and links as text. (A loop, not
    recursion: the body may nest as deep as `json.loads` allows.)"""
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            meta, path = item.get("meta"), item.get("path")
            a_file = isinstance(meta, dict) and meta.get("_type") == "gradio.FileData"
            if a_file and isinstance(path, str) and path.strip().lower().startswith(_URL_SCHEMES):
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class _Busy(Exception):
    """The bodies being read hold all the bytes they may: of all large ones, or of one
    visitor's or one address's smaller ones."""

    def __init__(self, status: int, sentence: str) -> None:
        super().__init__(sentence)
        self.status, self.sentence = status, sentence


class _Budget:
    """One body's bytes, counted as they arrive: a large body's against the door's
    `big_bytes_cap`, a smaller one's against its visitor's and its address's share of
    `TabDoor.reading`. Where a large body finds no room, the largest of those still arriving
    that declared more than it gives way (cut, and told the studio is busy): three addresses
    each sending a body of the studio's whole cap (134 MB) but its last byte, again and again,
    had every other caller's image refused (review 15 F2). Bodies as large as the
    one waiting, or smaller, keep their bytes."""

    def __init__(
        self,
        door: TabDoor,
        *,
        big: bool = False,
        declared: int = 0,
        visitor: str | None = None,
        address: str | None = None,
    ) -> None:
        self.door = door
        self.big = big
        self.declared = declared
        # While it arrives: the deadline of its next chunk (moved to now to cut it), and
        # whether it was cut.
        self.deadline: asyncio.Timeout | None = None
        self.cut = False
        if big:
            door.big_arriving.add(self)
        self.shares = [
            (key, cap, sentence)
            for key, cap, sentence in (
                (visitor, READING_PER_VISITOR, TOO_MUCH_ON_ITS_WAY),
                (address, READING_PER_ADDRESS, TOO_MUCH_HERE),
            )
            if key is not None
        ]
        self.taken = 0

    def take(self, size: int) -> None:
        door = self.door
        if self.cut:
            raise _Busy(503, BUSY)
        while self.big and door.big_bytes + size > door.big_bytes_cap:
            larger = [b for b in door.big_arriving if b.declared > self.declared]
            if not larger:
                raise _Busy(503, BUSY)
            max(larger, key=lambda b: (b.declared, b.taken)).give_way()
        for key, cap, sentence in self.shares:
            if door.reading.get(key, 0) + size > cap:
                raise _Busy(429, sentence)
        if self.big:
            door.big_bytes += size
        for key, _, _ in self.shares:
            door.reading[key] = door.reading.get(key, 0) + size
        self.taken += size

    def give_way(self) -> None:
        """Cut this body while it arrives: its bytes go back now, and its reader is woken."""
        self.cut = True
        self.give_back()
        if self.deadline is not None:
            self.deadline.reschedule(asyncio.get_running_loop().time())

    def give_back(self) -> None:
        door = self.door
        door.big_arriving.discard(self)
        if self.big:
            door.big_bytes -= self.taken
        for key, _, _ in self.shares:
            left = door.reading.get(key, 0) - self.taken
            if left > 0:
                door.reading[key] = left
            else:
                door.reading.pop(key, None)
        self.taken = 0


async def _read_or_refuse(receive: Receive, send: Send, cap: int, budget: _Budget) -> bytes | None:
    """The body (`_read_body`), or None once it is refused, the connection closed after the
    answer, whatever is still to come."""
    try:
        async with asyncio.timeout(BIG_BODY_READ_S):
            return await _read_body(receive, cap, budget=budget)
    except _TooLarge:
        await refuse(send, 413, TOO_LARGE, close=True)
    except _Busy as busy:
        await refuse(send, busy.status, busy.sentence, close=True)
    except TimeoutError:  # a body trickling in holds what it sent, and not for long
        if budget.cut:  # (a smaller one took its bytes: `_Budget.take`)
            await refuse(send, 503, BUSY, close=True)
        else:
            await refuse(send, 408, TOO_SLOW, close=True)
    return None


async def _read_body(receive: Receive, cap: int, *, budget: _Budget) -> bytes:
    """The body, up to `cap` bytes (`_TooLarge` past it). After its first `BIG_BODY_GRACE_S` it
    must have come at `BIG_BODY_BYTES_PER_S` on average (`TimeoutError` when it falls behind).
    Each chunk is counted in `budget` as it comes (`_Busy` past it)."""
    chunks: list[bytes] = []
    size = 0
    start = asyncio.get_running_loop().time()
    while True:
        due = start + max(BIG_BODY_GRACE_S, size / BIG_BODY_BYTES_PER_S)
        async with asyncio.timeout_at(due) as budget.deadline:
            message = await receive()
        budget.deadline = None
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            raise _TooLarge
        budget.take(len(chunk))
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    budget.door.big_arriving.discard(budget)  # (read whole: it keeps its bytes until parsed)
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive`, after `body` whole: held by the replay alone until Gradio has read it, not
    after (a large one was kept, with Gradio's copies and the door's parse, while its event
    ran)."""
    held = [body]

    async def replay() -> Message:
        if held:
            return {"type": "http.request", "body": held.pop(), "more_body": False}
        return await receive()  # a disconnect, when it comes

    return replay


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


__all__ = [
    "BAD_TAB",
    "EVENTS_AT_ONCE",
    "NOT_YOUR_TAB",
    "NO_SUCH_EVENT",
    "NO_SUCH_EVENT_KIND",
    "READING_PER_ADDRESS",
    "READING_PER_VISITOR",
    "TABS_KEPT",
    "TABS_PER_VISITOR",
    "TOO_LARGE",
    "TOO_MANY_EVENTS",
    "TOO_MUCH_HERE",
    "TOO_MUCH_ON_ITS_WAY",
    "UNNAMED_BODY_BYTES",
    "UNREAD",
    "UNREAD_PER_VISITOR",
    "V2_ARGUMENTS",
    "TabDoor",
    "tab_busy",
]


def _mcp_caller(owner: str | None, here: str | None) -> str:
    """Whom an MCP request is counted as: its visitor; or, naming nobody, everyone of its
    network address who names nobody (one address holding four keyless requests refused every
    keyless caller everywhere: review 24 F1), all of them where every visitor is one address."""
    return owner if owner is not None else _NOBODY + (here or "")


async def _waited_or_refused(
    send: Send,
    wait: float | None,
    sentence: str,
    *,
    refusing: Callable[[Send, int, str], Awaitable[None]] = refuse,
) -> bool:
    """Wait its turn (`wait` seconds) and go on (False), or, with no turn to wait for (None),
    refuse with `sentence` (True), as `refusing` words it."""
    if wait is None:
        await refusing(send, 429, sentence)
        return True
    if wait > 0:
        await asyncio.sleep(wait)
    return False
