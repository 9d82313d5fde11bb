"""A visitor's turns at the studio's heavier reads: a page drawn, a session shown through the
API or MCP. A draw of a long session takes a tenth of a second of CPU or more, so one visitor's
reads in flight share the CPU with everyone else's rather than take it: `AT_ONCE` at a time,
and `PER_S` a second on average after a burst of `BURST` (a read past that waits, holding its
place: the visitor's others wait behind it, nobody else's). A tab draws at most one page a
second while an edit runs; typing ahead or two tabs reloading fit in the burst. Everyone from
one network address shares turns of its own as well (`ADDRESS_AT_ONCE`, `ADDRESS_PER_S`,
`ADDRESS_BURST`), since an address may become a few new visitors an hour.

Review 5 F7: one cookie keeping 16 draws of a 1,000-step session in flight made others' page
loads take 1.5-1.9 s (0.05 s alone); two at a time back to back still took both cores; then one
API key's 16 `show_session` calls did the same. Review 6 F3: each visitor's turns were
forgotten whenever none of their reads was under way, so a client leaving the smallest gap
between its reads got a fresh burst each time (12 draws a second, not 4): a visitor's turns are
now kept until they have rested (nothing under way, the burst whole again).

Every address's turns fell to enough addresses: three, each drawing its own 1,000-step session
at its full pace, made another visitor's edit 3.5 s (0.8 s alone) and their page 0.9 s (0.14 s)
(review 15 F1). So the studio draws `DRAWS_AT_ONCE` at a time for everyone together, the next
place going to the address (or visitor) that drew least lately, and after a long draw it rests
as long again before the next: draws take at most half of the studio's time, whoever asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable

AT_ONCE = 2
PER_S = 4.0
BURST = 12.0
ADDRESS_AT_ONCE = 3
ADDRESS_PER_S = 8.0
ADDRESS_BURST = 24.0
# Draws at once for everyone together; a draw longer than `DRAW_REST_AFTER_S` is followed by a
# rest as long as it took before the next (a short one by none); draws counted over
# `DRAWS_USED_S` to give the next place to whom drew least.
DRAWS_AT_ONCE = 1
DRAW_REST_AFTER_S = 0.02
DRAWS_USED_S = 10.0
# Visitors' and addresses' turns kept (those that have rested are forgotten first: forgetting
# them changes nothing).
TURNS_KEPT = 10_000


class Turns:
    """One visitor's (or address's) turns: an async context manager, one turn each time it is
    entered."""

    def __init__(self, at_once: int = AT_ONCE, per_s: float = PER_S, burst: float = BURST):
        self._places = asyncio.Semaphore(at_once)
        self._per_s = per_s
        self._burst = burst
        self._tokens = burst
        self._at = time.monotonic()
        self._inside = 0

    async def __aenter__(self) -> None:
        self._inside += 1
        try:
            await self._places.acquire()
        except BaseException:
            self._inside -= 1
            raise
        try:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._per_s)
            self._at = now
            self._tokens -= 1
            if self._tokens < 0:
                await asyncio.sleep(-self._tokens / self._per_s)
        except BaseException:
            self._places.release()
            self._inside -= 1
            raise

    async def __aexit__(self, *_: object) -> None:
        self._places.release()
        self._inside -= 1

    def rested(self) -> bool:
        """Nothing under way or waiting, and the burst whole again: as good as new."""
        refilled = self._tokens + (time.monotonic() - self._at) * self._per_s
        return self._inside == 0 and refilled >= self._burst


class DrawGate:
    """The studio's draws, everyone's together: `DRAWS_AT_ONCE` at a time, the next place to
    whoever drew least in the last `DRAWS_USED_S` (then the longest waiting), and a rest after a
    long draw. Used on one event loop."""

    def __init__(self) -> None:
        self._free = DRAWS_AT_ONCE
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()
        self._drawn: OrderedDict[str, deque[float]] = OrderedDict()

    def _drawn_lately(self, who: str) -> int:
        now = time.monotonic()
        drawn = self._drawn.pop(who, None) or deque()
        while drawn and now - drawn[0] > DRAWS_USED_S:
            drawn.popleft()
        used = len(drawn)
        drawn.append(now)
        self._drawn[who] = drawn  # (the most recent last)
        while len(self._drawn) > TURNS_KEPT:
            self._drawn.popitem(last=False)
        return used

    @contextlib.asynccontextmanager
    async def place(self, who: str) -> AsyncIterator[DrawPlace]:
        used = self._drawn_lately(who)
        await self._take(used)
        held = DrawPlace(self, used)  # (held from now: the wait for it is no draw)
        try:
            yield held
        finally:
            held.end()

    async def _take(self, used: int) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (used, next(self._arrivals), turn))
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._give_back()  # the place came just as the waiter gave up
            raise

    def _give_back(self) -> None:
        while self._waiting:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1


class DrawPlace:
    """A place among the studio's draws, held by one draw. `aside()` gives it up for a wait in
    the draw that is not drawing (thumbnails made on their own thread: a fresh import's page
    held the place for 6 s, then rested as long, and every other visitor's page waited up to
    21 s: review 18 F1), and takes it again, in its turn, after; the rest after a long draw is
    as long as the place was held."""

    def __init__(self, gate: DrawGate, used: int) -> None:
        self.gate = gate
        self.used = used
        self.held_s = 0.0
        self.since = time.monotonic()
        self.holding = True

    @contextlib.asynccontextmanager
    async def aside(self) -> AsyncIterator[None]:
        self._let_go()
        self.gate._give_back()
        try:
            yield
        finally:
            await self.gate._take(self.used)
            self.since, self.holding = time.monotonic(), True

    def _let_go(self) -> None:
        self.held_s += time.monotonic() - self.since
        self.holding = False

    def end(self) -> None:
        if not self.holding:
            return  # (given up, and not taken again: cancelled while waiting for it)
        self._let_go()
        if self.held_s > DRAW_REST_AFTER_S:
            asyncio.get_running_loop().call_later(self.held_s, self.gate._give_back)
        else:
            self.gate._give_back()


def aside(turn: DrawPlace | None) -> contextlib.AbstractAsyncContextManager[None]:
    """`turn`'s place among the studio's draws given up for a wait (`DrawPlace.aside`); for
    the studio's own user (no turn), nothing."""
    return turn.aside() if turn is not None else contextlib.nullcontext()


# The studio's gate for draws (`turn_of`), one for each event loop that draws (a process that
# runs a studio after another, as the tests do, starts afresh).
_GATES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, DrawGate] = weakref.WeakKeyDictionary()


def _gate() -> DrawGate:
    loop = asyncio.get_running_loop()
    gate = _GATES.get(loop)
    if gate is None:
        gate = _GATES[loop] = DrawGate()
    return gate


# Each named visitor's turns, and each address's ("address:..."), the most recently used last.
_TURNS: OrderedDict[str, Turns] = OrderedDict()


def _turns(name: str, *, address: bool) -> Turns:
    turns = _TURNS.pop(name, None)
    if turns is None:
        turns = Turns(ADDRESS_AT_ONCE, ADDRESS_PER_S, ADDRESS_BURST) if address else Turns()
    _TURNS[name] = turns
    if len(_TURNS) > TURNS_KEPT:
        for old in [n for n, t in _TURNS.items() if t.rested()]:
            del _TURNS[old]
    return turns


@contextlib.asynccontextmanager
async def _paced(mine: Turns, theirs: Turns | None, who: str) -> AsyncIterator[DrawPlace]:
    """A turn of a visitor's, of their address's, then a place among the studio's draws."""
    async with mine, theirs or contextlib.nullcontext(), _gate().place(who) as place:
        yield place


def turn_of(
    owner: str | None, address: str | None = None
) -> contextlib.AbstractAsyncContextManager[DrawPlace | None]:
    """A turn of `owner`'s, and of their network `address`'s (the studio's own user, unnamed,
    is not counted): the place it holds among the studio's draws (None: the studio's user)."""
    if owner is None:
        return contextlib.nullcontext()
    mine = _turns(owner, address=False)
    if address is None:
        return _paced(mine, None, owner)
    theirs = f"address:{address}"
    return _paced(mine, _turns(theirs, address=True), theirs)


# The requests for which Gradio builds the page or its description for each request (the page
# itself is 200 kB, 25 ms of CPU; its config 17 ms): what everyone from one network address
# may ask for, `PAGES_PER_S` a second after a burst of `PAGES_BURST`; a request that would
# wait more than `PAGE_WAIT_S` for its turn is refused (review 6 F4: sixteen connections with
# no cookie fetching the page in a loop made everyone else's page take 2 s).
PAGES_PER_S = 4.0
PAGES_BURST = 40.0
PAGE_WAIT_S = 10.0
PAGES_HERE = (
    "Too many pages were asked for from your network address just now; try again in a moment."
)
# And while all addresses together ask for more than this a second (about half a core), each
# at most its fair share of it (as events'): 48 addresses, each asking for the API's
# description four times a second, held every other visitor's page at 2.8 s (review 37 F2).
PAGES_IN_ALL_PER_S = 24.0
PAGES_CROWDED = "This studio is busy with many visitors just now; try again in a moment."


class _AddressRate:
    """How soon each network address's next request of a kind may be answered (`_limits`:
    a second on average, the burst, the longest wait; read at each request)."""

    def __init__(self) -> None:
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _limits(self) -> tuple[float, float, float]:
        raise NotImplementedError

    def wait_for(self, address: str | None, cost: float = 1.0) -> float | None:
        """Seconds the next one from `address` (taking `cost`) waits (counted now), or None:
        refused."""
        return _take(self._buckets, address or "?", *self._limits(), cost=cost)


class PageRate:
    """How soon each network address may have its next page built (`PAGES_PER_S`, cut to its
    fair share of `PAGES_IN_ALL_PER_S` while all together ask for more)."""

    def __init__(
        self,
        in_all_per_s: float = PAGES_IN_ALL_PER_S,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._shares = _Shares(in_all_per_s, ACTIVE_S)
        self._clock = clock

    def wait_for(self, address: str | None) -> float | None:
        """Seconds the next page for `address` waits (counted now), or None: refused."""
        now = self._clock()
        key = address or "?"
        pace = min(PAGES_PER_S, self._shares.level(key, 1.0, now))
        burst = max(SHARED_BURST, PAGES_BURST * pace / PAGES_PER_S)
        return _take(self._buckets, key, pace, burst, PAGE_WAIT_S, now=now)

    @property
    def crowded(self) -> bool:
        """Whether all addresses together ask for more pages than the studio builds, lately."""
        return self._shares.latest < PAGES_PER_S


# MCP requests from one network address (a tool's call, the list of tools: Gradio's MCP server
# spends 3.3 ms of CPU on a list even with each tool's description made once), `MCP_PER_S` a
# second after a burst of `MCP_BURST` (an agent starting says hello, lists the tools and calls
# one); one that would wait more than `PAGE_WAIT_S` is refused. Paced as pages (after 40), 40
# addresses asking for the list again and again held another visitor's first page load at
# 2.8 s (review 33 F1, retested).
MCP_PER_S = 4.0
MCP_BURST = 12.0


class McpRate(_AddressRate):
    """How soon each network address's next MCP request may be answered (`MCP_PER_S`)."""

    def _limits(self) -> tuple[float, float, float]:
        return MCP_PER_S, MCP_BURST, PAGE_WAIT_S


# Every request of one network address, whatever it asks for: `REQUESTS_PER_S` a second after a
# burst of `REQUESTS_BURST` (a page load is about 75 requests, its ticks a few a second). One
# past the pace waits its turn, holding its connection (which sends no more meanwhile: HTTP/1.1
# answers one request at a time), so a flood costs no CPU while it waits; one that would wait
# more than `REQUEST_WAIT_S` is refused. Four addresses pipelining `/robots.txt` or the page's
# script on 600 connections had the studio answer 1,400 a second, and another visitor's page
# took 1.5-3.2 s (review 23 F1).
REQUESTS_PER_S = 30.0
REQUESTS_BURST = 150.0
REQUEST_WAIT_S = 10.0
REQUESTS_HERE = "Too many requests came from your network address just now; try again in a moment."


class RequestRate(_AddressRate):
    """How soon each network address's next request may be answered (`REQUESTS_PER_S`)."""

    def _limits(self) -> tuple[float, float, float]:
        return REQUESTS_PER_S, REQUESTS_BURST, REQUEST_WAIT_S


# The bytes one network address is sent a second, after a burst: a visitor's own files fetched
# again and again take the studio's CPU as much as anything it computes (three visitors
# fetching their 48 MB text files had it send 390 MB a second: review 25 F2). A page load is
# about 0.6 MB, an image a few. Never refused: a response past the pace is sent more slowly.
SENT_BYTES_PER_S = 32.0 * 2**20
SENT_BYTES_BURST = 96.0 * 2**20


class SentRate(_AddressRate):
    """How soon the next bytes may be sent to each network address (`SENT_BYTES_PER_S`)."""

    def _limits(self) -> tuple[float, float, float]:
        return SENT_BYTES_PER_S, SENT_BYTES_BURST, math.inf


# The bytes of large bodies (an image sent inside a request, as a data: URI) one network
# address may send a second, after a burst of two of the largest the studio takes; and, while
# all addresses together send more than `BIG_BYTES_IN_ALL_PER_S`, each address at most its
# fair share of that (the max-min fair level, as events': an address sending less than the
# level never waits for those sending more). Each is parsed whole, holding Python's lock for
# as long (0.2-0.4 s for the largest, twice: the door's and Gradio's): one visitor sending the
# largest bodies in a loop held others' page loads at 1.6-2.3 s and the studio at 1.7 GB
# (review 35 F1). Counted once a body is whole, by the bytes that came: counted by the length
# declared, a few addresses sending headers alone used everyone's pace up (review 36 F1). One
# that would wait more than `BIG_WAIT_S` for its turn is refused.
BIG_BYTES_PER_S = 8.0 * 2**20
BIG_BYTES_IN_ALL_PER_S = 24.0 * 2**20
BIG_ACTIVE_S = 10.0
BIG_WAIT_S = 8.0
BIG_HERE = (
    "Large requests (images sent inside them) came from your network address faster than this "
    "studio takes them; wait a few seconds and send it again, or upload the image instead."
)
BIG_CROWDED = (
    "This studio is receiving many large requests just now; wait a few seconds and send it again."
)


class BigBodyRate:
    """How soon a large body, once whole, may be parsed, for each network address
    (`BIG_BYTES_PER_S`, cut to its fair share of `BIG_BYTES_IN_ALL_PER_S` while everyone
    together sends more), for a studio whose largest body is `largest` bytes."""

    def __init__(self, largest: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.largest = largest
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._shares = _Shares(BIG_BYTES_IN_ALL_PER_S, BIG_ACTIVE_S)

    def wait_for(self, address: str | None, size: int) -> tuple[float, str | None]:
        """Seconds a body of `size` bytes from `address` waits (counted now), and no sentence;
        or the sentence it is refused with (then not counted against its turns)."""
        now = self._clock()
        key = address or "?"
        level = self._shares.level(key, size, now)
        pace = min(BIG_BYTES_PER_S, level)
        burst = 2.0 * self.largest
        tokens, at = self._buckets.pop(key, (burst, now))
        tokens = min(burst, tokens + (now - at) * pace) - size
        wait = max(0.0, -tokens / pace)
        refused = wait > BIG_WAIT_S
        self._buckets[key] = (tokens + (size if refused else 0), now)
        while len(self._buckets) > TURNS_KEPT:
            self._buckets.popitem(last=False)
        if refused:
            return 0.0, BIG_CROWDED if level < BIG_BYTES_PER_S else BIG_HERE
        return wait, None


def _take(
    buckets: OrderedDict[str, tuple[float, float]],
    key: str,
    per_s: float,
    burst: float,
    most_s: float,
    *,
    cost: float = 1.0,
    now: float | None = None,
) -> float | None:
    """`cost` from `key`'s bucket in `buckets` (`per_s` a second, at most `burst` kept): the
    seconds to wait for it, or None (and nothing taken) if that would be more than `most_s`."""
    now = time.monotonic() if now is None else now
    tokens, at = buckets.pop(key, (burst, now))
    tokens = min(burst, tokens + (now - at) * per_s) - cost
    wait = max(0.0, -tokens / per_s)
    if wait > most_s:
        tokens += cost  # (not counted)
    buckets[key] = (tokens, now)
    if len(buckets) > TURNS_KEPT:
        buckets.popitem(last=False)
    return wait if wait <= most_s else None


# Events (page events, API calls) one visitor, and everyone from one network address, may send
# a second on average after a burst, and the longest one waits for its turn before it is
# refused. A page sends a few a second at most (clicks, Enter, each tab's ticks); six cookies
# of one address sending a do-nothing click 50 times a second made another visitor's API call
# 1.1-1.4 s slower (review 12 F4).
EVENTS_PER_S = 8.0
EVENTS_BURST = 40.0
ADDRESS_EVENTS_PER_S = 16.0
ADDRESS_EVENTS_BURST = 80.0
EVENT_WAIT_S = 5.0
EVENTS_HERE = "You are sending events faster than this studio takes them; wait a moment."
# The same when many addresses together send more than the studio takes (`EventRate.crowded`).
EVENTS_CROWDED = "This studio is busy with many visitors just now; wait a moment and try again."
# What all addresses together may send a second. While they send less, no address waits for
# others; past it, each address may send as much as the others leave it, the level at which
# the addresses' rates, each cut to it, add up to the pace (max-min fairness: an address sending
# less than the level never waits for those sending more), with a burst as much smaller but
# never less than `SHARED_BURST` (a page's load sends a few events at once). What an address
# sent is its events a second, an average over the last `ACTIVE_S` or so; the level is worked
# out again every `LEVEL_EVERY_S`. Paced address by address only, 18 addresses each resending a
# page's tick 8 times a second made other visitors' pages 1.94 s median (0.63 s alone: review 30
# F1); an equal share for each address that sent anything lately let 72 addresses sending one
# event every 4.5 s (16 a second in all, under the pace) hold every other visitor's call 2.3 s
# (review 32 F1). An idle page ticks every 2 s: 48 a second is about 96 open pages.
EVENTS_IN_ALL_PER_S = 48.0
SHARED_BURST = 8.0
ACTIVE_S = 5.0
LEVEL_EVERY_S = 0.25


class EventRate:
    """How soon each visitor's (and each network address's) next event may go in."""

    def __init__(
        self,
        in_all_per_s: float = EVENTS_IN_ALL_PER_S,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        # (All addresses together may send `in_all_per_s`: the host's `events_per_s`.)
        self._shares = _Shares(in_all_per_s, ACTIVE_S)
        self._clock = clock

    def wait_for(self, owner: str, address: str | None) -> float | None:
        """Seconds the next event of `owner` from `address` waits (counted now), or None:
        refused (then not counted)."""
        now = self._clock()
        kinds = [(f"visitor:{owner}", EVENTS_PER_S, EVENTS_BURST)]
        if address is not None:
            pace = min(ADDRESS_EVENTS_PER_S, self._shares.level(address, 1.0, now))
            burst = max(SHARED_BURST, ADDRESS_EVENTS_BURST * pace / ADDRESS_EVENTS_PER_S)
            kinds.append((f"address:{address}", pace, burst))
        taken: list[tuple[str, float]] = []
        wait = 0.0
        for key, per_s, burst in kinds:
            tokens, at = self._buckets.pop(key, (burst, now))
            tokens = min(burst, tokens + (now - at) * per_s) - 1
            taken.append((key, tokens))
            wait = max(wait, -tokens / per_s)
        for key, tokens in taken:
            self._buckets[key] = (tokens + (1 if wait > EVENT_WAIT_S else 0), now)
        while len(self._buckets) > TURNS_KEPT:
            self._buckets.popitem(last=False)
        return wait if wait <= EVENT_WAIT_S else None

    @property
    def crowded(self) -> bool:
        """Whether all addresses together send more than the studio takes, lately."""
        return self._shares.latest < ADDRESS_EVENTS_PER_S


class _Shares:
    """Each network address's rate lately (an average over about `active_s`: events, or
    bytes) and the level past which one waits: the max-min fair share of `in_all_per_s`
    (infinite while all together send less), worked out every `LEVEL_EVERY_S`."""

    def __init__(self, in_all_per_s: float, active_s: float) -> None:
        self.in_all_per_s = in_all_per_s
        self.active_s = active_s
        # Each address's rate, and when it was worked out (the longest ago first).
        self._sent: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.latest = math.inf
        self._level_at = -math.inf

    def level(self, address: str, cost: float, now: float) -> float:
        """The level now, counting `cost` more of `address`'s."""
        span = self.active_s
        rate, at = self._sent.pop(address, (0.0, now))
        self._sent[address] = (rate * math.exp((at - now) / span) + cost / span, now)
        while now - next(iter(self._sent.values()))[1] > 8 * span:  # (e^-8 of what it was)
            self._sent.popitem(last=False)
        while len(self._sent) > TURNS_KEPT:
            self._sent.popitem(last=False)
        if now - self._level_at >= LEVEL_EVERY_S:
            rates = [r * math.exp((t - now) / span) for r, t in self._sent.values()]
            self.latest, self._level_at = fair_level(rates, self.in_all_per_s), now
        return self.latest


def fair_level(rates: list[float], total: float) -> float:
    """The most each of `rates` may be so that, each cut to it, they add up to `total`
    (infinite if they add up to less as they are)."""
    left = total
    ordered = sorted(rates)
    for i, rate in enumerate(ordered):
        if rate * (len(ordered) - i) > left:
            return left / (len(ordered) - i)
        left -= rate
    return math.inf


__all__ = [
    "ADDRESS_AT_ONCE",
    "ADDRESS_BURST",
    "ADDRESS_PER_S",
    "AT_ONCE",
    "BIG_CROWDED",
    "BIG_HERE",
    "BURST",
    "EVENTS_CROWDED",
    "EVENTS_HERE",
    "EVENTS_IN_ALL_PER_S",
    "PAGES_CROWDED",
    "PAGES_HERE",
    "PAGES_IN_ALL_PER_S",
    "PER_S",
    "BigBodyRate",
    "DrawGate",
    "DrawPlace",
    "EventRate",
    "McpRate",
    "PageRate",
    "Turns",
    "aside",
    "fair_level",
    "turn_of",
]
