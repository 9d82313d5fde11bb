"""What a visitor of a hosted studio may spend and run: budgets, a rate and a concurrency cap.

Plain bookkeeping with the clock passed in; imports nothing of ours. The engine asks `admit`
before it stores a step (so a refused edit leaves nothing behind), and `release` when the step's
run ends. A budget counts an edit at its price when it is made; `refund` gives it back for one
cancelled before it was sent, or failed before the service had a task for it. `FairPlaces`
shares a few places (decodes) between visitors by how much each has used lately.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from studio.params import PRICE_CENTS

# Defaults of issue "Share a hosted demo safely": two edits at once, ten a minute, per visitor.
DEFAULT_MAX_RUNNING = 2
DEFAULT_PER_MINUTE = 10
# What one visitor's originals may hold on the server's disk in all: a few dozen photos.
DEFAULT_UPLOAD_BYTES = 200 * 1024 * 1024
# What a visitor's sessions take of their share besides image bytes: a row's overhead in the
# database (a step's row and indexes take about 1 KB before its text), plus the bytes of its text,
# so thousands of imported steps or empty sessions are not free (`taken_bytes`).
SESSION_BYTES = 4 * 1024
STEP_BYTES = 2 * 1024
RATE_WINDOW_S = 60.0
# Pixels of large images (8 megapixels or more to decode) one visitor may have decoded in a
# minute: five 80-megapixel PNGs, or a dozen 30-megapixel ones (a JPEG decodes at an eighth of
# each side, so camera photos hardly count). Counted as they arrive, refused or not, so nobody
# keeps the large-decode lane to themselves by sending images that fail after their decode.
DEFAULT_DECODE_PIXELS_PER_MINUTE = 400_000_000
# Visitors' budgets one network address may spend of the server's key, unless the host says.
VISITORS_PER_ADDRESS = 3


def taken_bytes(image_bytes: int, sessions: int, steps: int, text_bytes: int) -> int:
    """What a visitor's sessions take of their share of the disk: their images' bytes, each
    session's and step's overhead, and the bytes of their text."""
    return image_bytes + sessions * SESSION_BYTES + steps * STEP_BYTES + text_bytes


# Visitors whose use `used_lately` remembers before it forgets those idle for a minute.
USE_TRACKED = 10_000


def used_lately(table: dict[str, deque[tuple[float, int]]], owner: str, n: int) -> int:
    """What `owner` used in the last minute by `table` (when, how much), before these `n`
    (counted now): `FairPlaces` gives the next place to whom used the least. Owners idle for a
    minute are forgotten once the table holds `USE_TRACKED`."""
    now = time.monotonic()
    recent = table.setdefault(owner, deque())
    while recent and now - recent[0][0] >= 60.0:
        recent.popleft()
    used = sum(amount for _, amount in recent)
    recent.append((now, n))
    if len(table) > USE_TRACKED:
        for idle in [o for o, r in table.items() if not r or now - r[-1][0] >= 60.0]:
            del table[idle]
    return used


def used_with(table: dict[str, deque[tuple[float, int]]], owner: str, n: int) -> int:
    """`used_lately`, these `n` included: a request's place among `FairPlaces` waiters, so a
    small one goes ahead of larger ones from owners as new as its own (review 53 F1)."""
    return used_lately(table, owner, n) + n


class FairPlaces:
    """At most `capacity` holders at once; a place that comes free goes to the waiter whose
    visitor has used the least lately (`used`, as they asked), then to the one waiting longest:
    a visitor who has had many turns waits behind one who has had few, however many requests
    the first keeps sending. Used on one event loop."""

    def __init__(self, capacity: int) -> None:
        self._free = capacity
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @contextlib.asynccontextmanager
    async def place(self, used: int = 0) -> AsyncIterator[None]:
        if self._free > 0 and not self._waiting:
            self._free -= 1
        else:
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (used, next(self._arrivals), turn))
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():
                    self._give_back()  # the place came just as the waiter gave up
                raise
        try:
            yield
        finally:
            self._give_back()

    def _give_back(self) -> None:
        while self._waiting:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1


# Sessions a hosted visitor may keep: each page render lists them all, and a visitor making
# thousands of tiny ones made every render of theirs (and everyone else's, meanwhile) slow.
DEFAULT_VISITOR_SESSIONS = 500


class LimitError(ValueError):
    """An edit a hosted studio will not run for this visitor now; `str()` is one sentence."""


class OwnKeyNeeded(LimitError):
    """An edit on the server's key, on a hosted studio that gives it to no visitor (no budget of
    the day is set): the visitor's own key is needed. (The page says it in its own words.)"""


@dataclass(frozen=True, kw_only=True, slots=True)
class LimitSettings:
    """Caps for visitors of a hosted studio; a budget of None means the server's key is never
    spent for visitors (each must bring their own)."""

    visitor_budget_cents: int | None = None
    total_budget_cents: int | None = None
    max_running: int = DEFAULT_MAX_RUNNING
    per_minute: int = DEFAULT_PER_MINUTE
    upload_bytes: int = DEFAULT_UPLOAD_BYTES
    # What all visitors from one network address may spend of the server's key (None: three
    # visitors' budgets, when visitors have one): fresh tokens do not buy fresh budgets.
    address_budget_cents: int | None = None
    # What all visitors from one network address may keep on disk (None: three visitors'
    # shares): fresh tokens do not buy fresh shares.
    address_upload_bytes: int | None = None
    # Free disk below which nothing new from visitors is stored (None: 2 GiB, or a tenth of the
    # disk when that is less): what RunAPI already charged for can always be written.
    disk_floor_bytes: int | None = None
    # Pixels of large images one visitor may have decoded in a minute (and one import may hold).
    decode_pixels_per_minute: int = DEFAULT_DECODE_PIXELS_PER_MINUTE
    # Sessions one visitor may keep (every page they open lists them all).
    visitor_sessions: int = DEFAULT_VISITOR_SESSIONS
    # The studio runs on its built-in simulator: the server's side costs nothing, so visitors
    # edit there without a budget (a visitor's own key still goes to RunAPI itself).
    simulated: bool = False

    @property
    def address_share_bytes(self) -> int:
        if self.address_upload_bytes is not None:
            return self.address_upload_bytes
        return VISITORS_PER_ADDRESS * self.upload_bytes

    @property
    def address_cap_cents(self) -> int | None:
        if self.address_budget_cents is not None:
            return self.address_budget_cents
        if self.visitor_budget_cents is None:
            return None
        return VISITORS_PER_ADDRESS * self.visitor_budget_cents

    @property
    def server_key_for_visitors(self) -> bool:
        budgets = (self.visitor_budget_cents, self.total_budget_cents)
        return self.simulated or any(b is not None for b in budgets)


# A day's spending of the server's key as kept on disk: by visitor, by address, and in all.
DaySpend = tuple[dict[str, int], dict[str, int], int]


class Limits:
    """Per-visitor bookkeeping. The day's spending of the server's key is read from `ledger`
    (the store) at the first use of each day, so a restart forgets none of it; what runs now
    and the edits of the last minute are kept in memory."""

    def __init__(
        self,
        settings: LimitSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
        ledger: Callable[[date], DaySpend] | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._today = today
        self.ledger = ledger
        self._day: date | None = None
        self._spent: dict[str, int] = {}
        self._spent_by_address: dict[str, int] = {}
        self._spent_total = 0
        self._recent: dict[str, deque[float]] = {}
        self._running: dict[str, set[str]] = {}
        self._owners: dict[str, str] = {}
        # A step typed ahead, admitted while the step it follows was still in flight: it runs
        # only once that one has ended, in its place (`places`).
        self._after: dict[str, str] = {}
        self._decoded: dict[str, deque[tuple[float, int]]] = {}

    def admit(
        self,
        owner: str,
        step_ids: list[str],
        cost_cents: int,
        *,
        server_key: bool,
        address: str | None = None,
        after: str | None = None,
        chain: bool = False,
    ) -> date:
        """Count these steps for `owner` (asking from `address`; made after step `after`; with
        `chain`, each after the one before it), or raise `LimitError` and count nothing; the
        day (UTC) they were counted in, for the ledger (read apart, at midnight it could be the
        next day's: review 18 F3)."""
        self.check(
            owner,
            len(step_ids),
            cost_cents,
            server_key=server_key,
            address=address,
            after=after,
            chain=chain,
        )
        assert self._day is not None  # (set by `check`)
        if self._rides(owner, 1 if chain else len(step_ids), after):
            assert after is not None
            self._after[step_ids[0]] = after
        if chain:
            self._after.update(zip(step_ids[1:], step_ids, strict=False))
        if server_key:
            self._spent[owner] = self._spent.get(owner, 0) + cost_cents
            if address is not None:
                self._spent_by_address[address] = (
                    self._spent_by_address.get(address, 0) + cost_cents
                )
            self._spent_total += cost_cents
        self._recent[owner].extend([self._clock()] * len(step_ids))
        self._running.setdefault(owner, set()).update(step_ids)
        self._owners.update(dict.fromkeys(step_ids, owner))
        return self._day

    def check(
        self,
        owner: str,
        steps: int,
        cost_cents: int,
        *,
        server_key: bool,
        address: str | None = None,
        after: str | None = None,
        chain: bool = False,
    ) -> None:
        """Raise `LimitError` when `steps` more for `owner` (asking from `address`, costing
        `cost_cents` of the server's key when `server_key`, made after step `after`; with
        `chain`, each after the one before, so they take one place) would pass a cap; counts
        nothing."""
        s = self.settings
        self._new_day_if_needed()
        places = self.places(owner)
        needed = 1 if chain else steps
        if needed > s.max_running:
            # (Three or four results at once, where two run at most: nothing is running to wait
            # for, review 54 F4.)
            raise LimitError(
                f"This studio runs at most {s.max_running} edits at once for each visitor; "
                f"ask for {s.max_running} results or fewer."
            )
        if not self._rides(owner, needed, after) and places + needed > s.max_running:
            raise LimitError(
                f"You already have {places} edit{'' if places == 1 else 's'} running; this "
                f"studio runs at most {s.max_running} at once for each visitor. Wait for one "
                "to finish."
            )
        recent = self._recent.setdefault(owner, deque())
        now = self._clock()
        while recent and now - recent[0] >= RATE_WINDOW_S:
            recent.popleft()
        if len(recent) + steps > s.per_minute:
            raise LimitError(
                f"This studio takes at most {s.per_minute} edits a minute from each visitor; "
                "wait a moment and try again."
            )
        if not server_key:
            return
        if not s.server_key_for_visitors:
            raise OwnKeyNeeded(
                "This hosted studio needs your own RunAPI key: paste it under *RunAPI key* "
                "(API and MCP callers send it in an X-RunAPI-Key header)."
            )
        for cap, spent, whose, used_up in self._budgets(owner, address):
            if cap is not None and spent + cost_cents > cap:
                left = cap - spent
                if left < min(PRICE_CENTS.values()):
                    raise LimitError(used_up)
                raise LimitError(_too_dear(cost_cents, left, whose))

    def _budgets(
        self, owner: str, address: str | None
    ) -> tuple[tuple[int | None, int, str, str], ...]:
        """Each budget of the day: its cap, what it spent, whose it is, the sentence when it
        is used up."""
        s = self.settings
        address_cap = s.address_cap_cents if address is not None else None
        return (
            (s.visitor_budget_cents, self._spent.get(owner, 0), "own", _VISITOR_SPENT),
            (address_cap, self._spent_by_address.get(address or "", 0), "address", _ADDRESS_SPENT),
            (s.total_budget_cents, self._spent_total, "total", _TOTAL_SPENT),
        )

    def share_left(self, owner: str, address: str | None = None) -> tuple[int, int] | None:
        """What `owner` (asking from `address`) may still spend of the server's key today, the
        least any of the day's budgets leaves, and the most it could be (their own share, or
        the least cap); None when visitors do not edit on the server's key. Said on the page
        before anything is refused: a visitor first heard of a budget when it refused them
        (UX audit 5)."""
        if not self.settings.server_key_for_visitors:
            return None
        self._new_day_if_needed()
        budgets = [
            (cap, spent) for cap, spent, _, _ in self._budgets(owner, address) if cap is not None
        ]
        left = min(max(0, cap - spent) for cap, spent in budgets)
        own = self.settings.visitor_budget_cents
        return left, own if own is not None else min(cap for cap, _ in budgets)

    def admit_decode(self, owner: str, pixels: int) -> None:
        """Count `pixels` of large-image decoding for `owner`, or raise `LimitError` when they
        would take the last minute's past `LimitSettings.decode_pixels_per_minute` (and count
        nothing)."""
        recent = self._recent_decodes(owner)
        if sum(p for _, p in recent) + pixels > self.settings.decode_pixels_per_minute:
            if not recent:
                del self._decoded[owner]
            raise self._decoded_enough()
        recent.append((self._clock(), pixels))

    def note_decoded(self, owner: str, pixels: int) -> None:
        """Count `pixels` decoded for `owner` that were not admitted first (an import's small
        images: their count is known only once they are decoded, and may pass the cap)."""
        if pixels > 0:
            self._recent_decodes(owner).append((self._clock(), pixels))

    def admit_decoding(self, owner: str) -> None:
        """Raise `LimitError` when `owner` already decoded the last minute's
        `LimitSettings.decode_pixels_per_minute` (an import, whatever its images' size, waits)."""
        recent = self._recent_decodes(owner)
        if sum(p for _, p in recent) >= self.settings.decode_pixels_per_minute:
            raise self._decoded_enough()

    def _recent_decodes(self, owner: str) -> deque[tuple[float, int]]:
        recent = self._decoded.setdefault(owner, deque())
        now = self._clock()
        while recent and now - recent[0][0] >= RATE_WINDOW_S:
            recent.popleft()
        return recent

    def _decoded_enough(self) -> LimitError:
        cap = self.settings.decode_pixels_per_minute
        return LimitError(
            "You have sent more large images in the last minute than this studio decodes "
            f"for one visitor ({cap // 1_000_000} megapixels); wait a minute and try again."
        )

    def admit_session(self, sessions: int) -> None:
        """Refuse one more session to a visitor who keeps `sessions` already, at the cap."""
        cap = self.settings.visitor_sessions
        if sessions >= cap:
            raise LimitError(
                f"You have {sessions} sessions on this studio, as many as it keeps for one "
                "visitor; delete some to start another."
            )

    def admit_address_upload(self, held_bytes: int, new_bytes: int, what: str = "this one") -> None:
        """Refuse bytes that would take what all visitors from one address keep past their
        share together (`what`: the thing refused, as the sentence names it)."""
        cap = self.settings.address_share_bytes
        if held_bytes + new_bytes > cap:
            raise LimitError(
                f"Visitors from your network address keep {held_bytes / 2**20:.0f} MB on this "
                f"studio, and {new_bytes / 2**20:.0f} MB more are on their way ({what} "
                f"included): past the {cap / 2**20:.0f} MB they may keep together, so {what} "
                "does not fit."
            )

    def admit_disk(self, free_bytes: int, total_bytes: int, new_bytes: int) -> None:
        """Refuse bytes that would leave the studio's disk below its floor."""
        floor = self.settings.disk_floor_bytes
        if floor is None:
            floor = min(2 * 2**30, total_bytes // 10)
        if free_bytes - new_bytes < floor:
            raise LimitError(
                "This studio's disk is nearly full, so it takes no new images for now; "
                "try again later."
            )

    def admit_upload(
        self, held_bytes: int, new_bytes: int, what: str = "this one", leaving_bytes: int = 0
    ) -> None:
        """Refuse bytes (an upload, or an edit's result: `what`) that would take a visitor's
        sessions past their share of disk; `leaving_bytes` (of `held_bytes`) are those of
        sessions they deleted, still on disk for a moment."""
        cap = self.settings.upload_bytes
        if held_bytes + new_bytes > cap:
            leaving = (
                f" ({leaving_bytes / 2**20:.0f} MB of them of sessions you deleted in the last "
                "minute, which go within a minute)"
                if leaving_bytes >= 2**20
                else ""
            )
            raise LimitError(
                f"Your sessions on this studio already take {held_bytes / 2**20:.0f} MB of the "
                f"{cap / 2**20:.0f} MB each visitor may keep{leaving}; {what} does not fit."
            )

    def places(self, owner: str) -> int:
        """How many of `owner`'s running places are taken: a step in flight takes one, except
        one typed ahead after another still in flight (a chain runs one step at a time, so
        three instructions typed one after another take one place, not three: a hosted
        studio refused the third, UX audit 5)."""
        running = self._running.get(owner, set())
        return sum(1 for step_id in running if self._after.get(step_id) not in running)

    def _rides(self, owner: str, steps: int, after: str | None) -> bool:
        """Whether one new step after `after` waits for it, and so takes no place of its own."""
        return steps == 1 and after is not None and after in self._running.get(owner, set())

    def follow(self, step_id: str, after: str) -> None:
        """A step typed ahead now follows `after` (the one it followed was cancelled)."""
        if step_id in self._owners:
            self._after[step_id] = after

    def hold(self, owner: str, step_id: str) -> None:
        """A step that runs again after a restart: it takes one of its visitor's places (its
        spending was counted when it was made), whatever the caps say now."""
        self._running.setdefault(owner, set()).add(step_id)
        self._owners[step_id] = owner

    @property
    def today(self) -> date:
        self._new_day_if_needed()
        assert self._day is not None
        return self._day

    def release(self, step_id: str) -> None:
        """The step's run ended (or was cancelled)."""
        owner = self._owners.pop(step_id, None)
        self._after.pop(step_id, None)
        if owner is None:
            return
        running = self._running.get(owner, set())
        running.discard(step_id)
        if not running:
            self._running.pop(owner, None)

    def refund(self, day: date, owner: str, address: str | None, cost_cents: int) -> None:
        """What a step cancelled before it was sent was counted to cost the server's key, no
        longer counted (if it was counted today)."""
        self._new_day_if_needed()
        if day != self._day or cost_cents <= 0:
            return
        self._spent[owner] = max(0, self._spent.get(owner, 0) - cost_cents)
        if address is not None and address in self._spent_by_address:
            self._spent_by_address[address] = max(0, self._spent_by_address[address] - cost_cents)
        self._spent_total = max(0, self._spent_total - cost_cents)

    def spent_cents(self, owner: str) -> int:
        self._new_day_if_needed()
        return self._spent.get(owner, 0)

    def _new_day_if_needed(self) -> None:
        today = self._today()
        if today != self._day:
            self._day, self._spent, self._spent_total = today, {}, 0
            self._spent_by_address = {}
            if self.ledger is not None:
                by_owner, by_address, total = self.ledger(today)
                self._spent, self._spent_by_address = dict(by_owner), dict(by_address)
                self._spent_total = total
        self._recent = {k: v for k, v in self._recent.items() if v}
        self._decoded = {k: v for k, v in self._decoded.items() if v}


# What a visitor is told when a budget of the day has nothing left (`Limits.admit`).
_VISITOR_SPENT = (
    "You have used today's share of this studio's RunAPI budget; paste your own RunAPI key "
    "under *RunAPI key* to go on."
)
_ADDRESS_SPENT = (
    "Visitors from your network address have used today's share of this studio's RunAPI "
    "budget; paste your own RunAPI key under *RunAPI key* to go on."
)
_TOTAL_SPENT = (
    "This studio's RunAPI budget for today is used up; paste your own RunAPI key under "
    "*RunAPI key* to go on."
)


def _too_dear(cost_cents: int, left_cents: int, whose: str) -> str:
    """What a request costing more than is left of a budget (`whose`: "own", "address" or
    "total") is told: that a cheaper one fits, and which budget; how much is left only of the
    visitor's own share (review 55 F2: it was told the budget was used up, and sent to paste a
    key, with enough left for a pro edit; review 56 F5: told to the cent, the total's remainder
    showed anyone the other visitors' spending)."""
    which = {
        "own": f" (${left_cents / 100:.2f} of your share)",
        "address": " (the share of visitors from your network address)",
    }.get(whose, "")
    return (
        f"This costs ${cost_cents / 100:.2f}, more than is left today of this studio's RunAPI "
        f"budget{which}: a cheaper edit fits (pro rather than max, one model rather than a "
        "comparison), or paste your own RunAPI key under *RunAPI key*."
    )
