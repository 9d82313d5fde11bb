"""A visitor's turns at the heavier reads: two at a time, and a few a second after a burst."""

from __future__ import annotations

import asyncio
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


def test_many_addresses_share_the_studios_events_and_a_quiet_one_never_waits():
    """Eighteen addresses each sending a page's tick 8 times a second, and 72 at 1.9 a second
    (each within its own pace), made other visitors' pages and calls take seconds (reviews 30
    F1, 31 F1): past what the studio takes in all, addresses share it equally; one that sends
    less than its share does not wait."""
    from studio.ui.turns import (
        ADDRESS_EVENTS_BURST,
        ADDRESS_EVENTS_PER_S,
        EVENTS_IN_ALL_PER_S,
        EventRate,
    )

    def drain(rate: EventRate, address: str, events: int) -> float | None:
        wait = None
        for n in range(events):  # fresh visitors: only the address counts
            wait = rate.wait_for(f"{address}-{n}", address)
        return wait

    alone = EventRate()
    wait = drain(alone, "198.51.100.1", int(ADDRESS_EVENTS_BURST) + 1)
    assert wait is not None
    assert wait == pytest.approx(1 / ADDRESS_EVENTS_PER_S, rel=0.2)
    crowd = EventRate()
    many = int(EVENTS_IN_ALL_PER_S)  # a share of one event a second each
    for n in range(many):  # all of them sending
        drain(crowd, f"10.0.{n}.1", 1)
    for n in range(many):  # then past their (shared, smaller) burst
        drain(crowd, f"10.0.{n}.1", 10)
    wait = crowd.wait_for("one-more", "10.0.0.1")
    share = EVENTS_IN_ALL_PER_S / many
    assert wait is not None
    assert wait >= 3 / share * 0.8
    assert drain(crowd, "203.0.113.9", 3) == 0.0  # a page's load, from a quiet address
