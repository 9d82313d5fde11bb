"""A visitor's turns at the heavier reads: two at a time, and a few a second after a burst."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from studio.ui.turns import AT_ONCE, BURST, PER_S, Turns

pytestmark = pytest.mark.anyio


async def test_past_a_burst_draws_wait_their_pace_and_two_run_at_once_at_most():
    turns = Turns()
    drawing, most = 0, 0

    async def draw() -> None:
        nonlocal drawing, most
        async with turns:
            drawing += 1
            most = max(most, drawing)
            await asyncio.sleep(0)
            drawing -= 1

    extra = 4
    start = time.monotonic()
    await asyncio.gather(*(draw() for _ in range(int(BURST) + extra)))
    # The burst goes at once; the four past it wait a quarter of a second each (at least).
    assert time.monotonic() - start >= (extra - 0.5) / PER_S
    assert most == AT_ONCE


async def test_a_visitor_leaving_gaps_between_reads_keeps_the_pace_too():
    # Review 6 F3: the turns were forgotten whenever none of the visitor's reads was under way,
    # so reads with a gap between them got a fresh burst each time (50 in 5 s, not 12 + 4/s).
    from studio.ui.turns import turn_of

    reads = 0
    start = time.monotonic()
    while reads < int(BURST) + 4:
        async with turn_of("gaps"):
            reads += 1
        await asyncio.sleep(0.005)
    assert time.monotonic() - start >= 3.5 / PER_S


async def test_visitors_from_one_address_share_its_turns_and_another_address_does_not_wait():
    from studio.ui.turns import ADDRESS_BURST, ADDRESS_PER_S, turn_of

    async def read(owner: str, address: str) -> None:
        async with turn_of(owner, address):
            await asyncio.sleep(0)

    # Fresh visitors of one address, each within their own burst, past the address's burst.
    extra = 4
    start = time.monotonic()
    owners = [f"fresh-{n}" for n in range(int(ADDRESS_BURST) + extra)]
    crowd = [asyncio.ensure_future(read(o, "198.51.100.7")) for o in owners]
    await asyncio.sleep(0)
    # Someone from another address is served meanwhile, not after the crowd.
    await read("elsewhere", "203.0.113.9")
    assert not all(task.done() for task in crowd)
    await asyncio.gather(*crowd)
    assert time.monotonic() - start >= (extra - 0.5) / ADDRESS_PER_S


def test_pages_built_for_one_address_come_at_a_pace_and_a_long_wait_is_refused():
    from studio.ui.turns import PAGE_WAIT_S, PAGES_BURST, PAGES_PER_S, PageRate

    pages = PageRate()
    waits = [pages.wait_for("198.51.100.7") for _ in range(int(PAGES_BURST))]
    assert waits == [0.0] * int(PAGES_BURST)  # a burst: several tabs, a few reloads
    waits = [pages.wait_for("198.51.100.7") for _ in range(int(PAGE_WAIT_S * PAGES_PER_S) + 3)]
    assert waits[0] is not None
    assert waits[0] > 0  # then each waits its turn...
    assert waits[-1] is None  # ...and one that would wait too long is refused
    assert pages.wait_for("203.0.113.9") == 0.0  # another address does not wait


class _Clock:
    """A monotonic clock the test moves by hand (`EventRate(clock=...)`)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _send(rate, clock: _Clock, every: dict[str, float], seconds: float) -> dict[str, list]:
    """Each address in `every` sends an event every so many seconds (the addresses out of step
    with each other) for `seconds`: the wait each event got, by address (None: refused)."""
    events = sorted(
        (k * gap + (i % 97) / 97 * gap, address)
        for i, (address, gap) in enumerate(every.items())
        for k in range(int(seconds / gap))
    )
    waits: dict[str, list] = {address: [] for address in every}
    start = clock.now
    for at, address in events:
        clock.now = start + at
        waits[address].append(rate.wait_for(address, address))
    clock.now = start + seconds
    return waits


def test_one_address_past_its_burst_waits_its_pace():
    from studio.ui.turns import ADDRESS_EVENTS_BURST, ADDRESS_EVENTS_PER_S, EventRate

    clock = _Clock()
    alone = EventRate(clock=clock)
    waits = [alone.wait_for(f"visitor-{n}", "198.51.100.1") for n in range(81)]
    assert waits[: int(ADDRESS_EVENTS_BURST)] == [0.0] * int(ADDRESS_EVENTS_BURST)
    assert waits[-1] == pytest.approx(1 / ADDRESS_EVENTS_PER_S)


def test_many_quiet_addresses_hold_up_nobody_while_all_together_send_less_than_the_pace():
    """An equal share for every address that sent anything in the last 5 s let 72 addresses
    sending one event every 4.5 s (16 a second in all) hold every other visitor's call 2.3 s,
    and 300 of them refuse most (review 32 F1)."""
    from studio.ui.turns import EventRate

    clock = _Clock()
    rate = EventRate(48, clock=clock)
    crowd = {f"10.0.{n // 250}.{n % 250}": 4.5 for n in range(200)}  # 44 a second in all
    waits = _send(rate, clock, {**crowd, "203.0.113.9": 0.5}, 60)
    assert set(waits["203.0.113.9"]) == {0.0}  # a page's tick and a call: never held up
    assert {w for address in crowd for w in waits[address]} == {0.0}
    assert not rate.crowded


def test_past_the_pace_a_busy_address_waits_and_a_quiet_one_does_not():
    """Eighteen addresses each resending a page's tick 8 times a second made other visitors'
    pages 1.94 s median (review 30 F1): past what the studio takes in all, each address gets
    as much as the others leave it; one sending less than that never waits."""
    from studio.ui.turns import EventRate

    clock = _Clock()
    rate = EventRate(48, clock=clock)
    busy = {f"10.1.0.{n}": 0.5 for n in range(100)}  # 200 a second in all, the pace 48
    waits = _send(rate, clock, {**busy, "203.0.113.9": 4.0}, 60)
    assert set(waits["203.0.113.9"]) == {0.0}
    late = [w for address in busy for w in waits[address][60:]]  # the last 30 s
    refused = sum(w is None for w in late)
    taken = len(late) - refused
    assert taken / 30 == pytest.approx(48, rel=0.25)  # what all took a second, about the pace
    assert refused > len(late) / 2
    assert rate.crowded  # (a refusal then says the studio is busy, not that they send too fast)


def test_a_host_sets_the_pace_for_all_addresses_together():
    from studio.ui.turns import EventRate

    every = {f"10.2.0.{n}": 1.0 for n in range(100)}  # 100 a second in all
    for pace, refused in ((48, True), (200, False)):
        clock = _Clock()
        waits = _send(EventRate(pace, clock=clock), clock, every, 30)
        assert any(w is None for ws in waits.values() for w in ws) is refused


def test_the_fair_level_cuts_the_largest_rates_first():
    from studio.ui.turns import fair_level

    assert fair_level([1.0, 1.0, 10.0], 5.0) == 3.0
    assert fair_level([4.0, 4.0, 4.0], 6.0) == 2.0
    assert fair_level([1.0, 2.0], 5.0) == math.inf
    assert fair_level([], 5.0) == math.inf


def test_large_bodies_come_at_a_pace_and_a_quiet_address_never_waits_for_a_busy_crowd():
    from studio.ui.turns import BIG_BYTES_IN_ALL_PER_S, BIG_BYTES_PER_S, BIG_HERE, BigBodyRate

    clock = _Clock()
    largest = 64 * 2**20
    rate = BigBodyRate(largest, clock=clock)
    # Two of the largest at once from one address (an edit and its retry) ...
    assert rate.wait_for("198.51.100.1", largest) == (0.0, None)
    assert rate.wait_for("198.51.100.1", largest) == (0.0, None)
    # ... then a small one waits its turn, and the largest, which would wait too long, is
    # refused (not counted against its turns: the small one after it waits no longer).
    small = 4 * 2**20
    wait, refusal = rate.wait_for("198.51.100.1", small)
    assert refusal is None
    assert wait == pytest.approx(small / BIG_BYTES_PER_S, rel=0.05)
    assert rate.wait_for("198.51.100.1", largest) == (0.0, BIG_HERE)
    assert rate.wait_for("198.51.100.1", small)[0] == pytest.approx(2 * small / BIG_BYTES_PER_S)
    assert rate.wait_for("203.0.113.9", largest) == (0.0, None)  # another address's own

    # Four addresses sending 8 MB a second each (more than the studio takes from everyone) and
    # a quiet one sending 2 MB every 6.5 s, for two minutes.
    crowd = BigBodyRate(16 * 2**20, clock=clock)
    taken = {f"192.0.2.{n}": 0 for n in range(4)}
    quiet = set()
    start = clock.now
    for tick in range(1200):
        clock.now = start + tick / 10
        if tick % 10 == 0:
            for address in taken:
                _, refusal = crowd.wait_for(address, 8 * 2**20)
                taken[address] += 8 * 2**20 if refusal is None and tick >= 600 else 0
        if tick % 65 == 3:
            quiet.add(crowd.wait_for("198.51.100.50", 2 * 2**20))
    assert quiet == {(0.0, None)}  # never waits for the crowd
    # Past their bursts, the crowd was cut to about what the studio takes from everyone
    # (each address alone would have had all of its 8 MB a second: 32 MB in all).
    assert sum(taken.values()) / 60 == pytest.approx(BIG_BYTES_IN_ALL_PER_S, rel=0.1)


def test_pages_for_a_crowd_of_addresses_are_cut_to_the_pace_and_a_visitor_loads_at_once():
    from studio.ui.turns import PAGES_IN_ALL_PER_S, PageRate

    clock = _Clock()
    pages = PageRate(clock=clock)
    answered = 0
    first_loads = []
    start = clock.now
    # 48 addresses each asking for a built answer four times a second (within each one's own
    # pace), for two minutes; another visitor loads the page (the page and its config) every 10 s.
    for tick in range(1200):
        clock.now = start + tick / 10
        if tick % 10 == 0:
            for n in range(48):
                for _ in range(4):
                    wait = pages.wait_for(f"192.0.2.{n}")
                    answered += wait is not None and wait < 1 and tick >= 600
        if tick % 100 == 55:
            first_loads.append([pages.wait_for(f"198.51.100.{tick}") for _ in range(2)])
    assert first_loads == [[0.0, 0.0]] * len(first_loads)
    assert pages.crowded
    # Past their bursts, the crowd had about what the studio builds in all, not 192 a second.
    assert answered / 60 < 1.5 * PAGES_IN_ALL_PER_S
