"""A hosted studio's caps on each visitor: edits at once, edits a minute, and the day's budgets."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from studio.limits import FairPlaces, LimitError, Limits, LimitSettings


def limits(**kw) -> tuple[Limits, list[float], list[date]]:
    now, today = [0.0], [date(2026, 11, 30)]
    return Limits(LimitSettings(**kw), clock=lambda: now[0], today=lambda: today[0]), now, today


def test_a_visitor_runs_at_most_two_edits_at_once_and_others_are_not_held_back():
    caps, _, _ = limits(visitor_budget_cents=1000)
    caps.admit("a", ["1", "2"], 10, server_key=True)  # a compare: two at once
    with pytest.raises(LimitError, match="at most 2 at once") as refused:
        caps.admit("a", ["3"], 5, server_key=True)
    assert str(refused.value).startswith("You already have 2 edits running;")
    caps.admit("b", ["4"], 5, server_key=True)
    caps.release("1")
    caps.admit("a", ["3"], 5, server_key=True)


def test_instructions_typed_ahead_take_one_place_as_they_run_one_at_a_time():
    """Each instruction typed after the one before, while it runs, waits for it: a chain runs
    one step at a time. A hosted studio counted every one as running and refused the third
    typed ahead, and its text ran into the next one typed in the box (UX audit 5)."""
    caps, _, _ = limits(visitor_budget_cents=1000)
    caps.admit("a", ["1"], 5, server_key=True, after="origin")
    for n in range(2, 6):  # typed ahead, each after the one before
        caps.admit("a", [str(n)], 5, server_key=True, after=str(n - 1))
    assert caps.places("a") == 1
    caps.admit("a", ["x"], 5, server_key=True, after="origin")  # a second chain
    assert caps.places("a") == 2
    with pytest.raises(LimitError, match="You already have 2 edit"):
        caps.admit("a", ["y"], 5, server_key=True, after="origin")  # a third one: refused
    caps.release("1")  # the first ended: the one after it runs in its place
    assert caps.places("a") == 2
    # The one after a cancelled step now waits for the step before it.
    caps.release("3")
    assert caps.places("a") == 3
    caps.follow("4", "2")
    assert caps.places("a") == 2
    # Results of one instruction after a step in flight run side by side once it has ended.
    with pytest.raises(LimitError):
        caps.admit("a", ["p", "q"], 10, server_key=True, after="5")


def test_a_chain_tried_again_takes_one_place_and_rides_one_still_running():
    """*Try again* on the second of a queue whose first failed runs both again, the second
    after the first: one place, as when they were typed; none when it follows a step still
    running. Three steps side by side would need three."""
    caps, _, _ = limits(visitor_budget_cents=1000)
    caps.admit("a", ["x"], 5, server_key=True, after="origin")  # something else runs
    caps.admit("a", ["r1", "r2", "r3"], 15, server_key=True, after="origin", chain=True)
    assert caps.places("a") == 2
    caps.release("r1")
    assert caps.places("a") == 2  # r2 runs now, r3 waits for it
    caps.release("r2")
    caps.release("r3")
    caps.admit("a", ["y1", "y2"], 10, server_key=True, after="x", chain=True)  # rides x
    assert caps.places("a") == 1
    with pytest.raises(LimitError, match="ask for 2 results or fewer"):
        caps.admit("a", ["z1", "z2", "z3"], 15, server_key=True, after="origin")


def test_a_visitor_is_told_what_is_left_of_their_share_by_the_tightest_budget():
    caps, _, today = limits(visitor_budget_cents=20, address_budget_cents=30)
    assert caps.share_left("a", "1.2.3.4") == (20, 20)
    caps.admit("a", ["1"], 5, server_key=True, address="1.2.3.4")
    assert caps.share_left("a", "1.2.3.4") == (15, 20)
    caps.admit("b", ["2"], 20, server_key=True, address="1.2.3.4")  # same address
    assert caps.share_left("a", "1.2.3.4") == (5, 20)  # the address's budget is the tighter
    assert caps.share_left("c") == (20, 20)
    today[0] = date(2026, 12, 1)  # a new day, a new share
    assert caps.share_left("a", "1.2.3.4") == (20, 20)
    own_keys, _, _ = limits()
    assert own_keys.share_left("a") is None  # visitors bring their own keys
    none_left, _, _ = limits(visitor_budget_cents=0)  # (a studio that lends nothing today)
    assert none_left.share_left("a") == (0, 0)
    total, _, _ = limits(total_budget_cents=50)
    assert total.share_left("a") == (50, 50)


def test_more_results_at_once_than_a_visitor_may_run_says_so_not_to_wait():
    """Four results asked for, where two run at most, with nothing running: the sentence says
    to ask for fewer, not to wait for one of "0 edit(s) running" (review 54 F4)."""
    caps, _, _ = limits(visitor_budget_cents=1000)
    with pytest.raises(LimitError) as refused:
        caps.admit("a", ["1", "2", "3", "4"], 20, server_key=True)
    assert str(refused.value) == (
        "This studio runs at most 2 edits at once for each visitor; ask for 2 results or fewer."
    )
    caps.admit("a", ["1", "2"], 10, server_key=True)  # nothing was counted


def test_a_visitor_makes_at_most_ten_edits_a_minute():
    caps, now, _ = limits(per_minute=10, max_running=100)
    for n in range(10):
        caps.admit("a", [str(n)], 5, server_key=False)
    with pytest.raises(LimitError, match="at most 10 edits a minute"):
        caps.admit("a", ["x"], 5, server_key=False)
    now[0] += 60
    caps.admit("a", ["x"], 5, server_key=False)


def test_without_a_budget_a_visitor_must_bring_a_key():
    caps, _, _ = limits()
    with pytest.raises(LimitError, match="needs your own RunAPI key"):
        caps.admit("a", ["1"], 5, server_key=True)
    caps.admit("a", ["2"], 5, server_key=False)  # their own key: fine


def test_the_visitor_budget_counts_what_was_created_and_a_refusal_counts_nothing():
    caps, _, today = limits(visitor_budget_cents=15, max_running=100)
    caps.admit("a", ["1"], 10, server_key=True)
    with pytest.raises(LimitError, match=r"more than is left today .* \(\$0.05 of your share\)"):
        caps.admit("a", ["2"], 10, server_key=True)
    assert caps.spent_cents("a") == 10
    caps.admit("a", ["3"], 5, server_key=True)
    caps.admit("b", ["4"], 10, server_key=True)  # another visitor has their own share
    today[0] = date(2026, 12, 1)
    assert caps.spent_cents("a") == 0


def test_a_request_dearer_than_what_is_left_is_told_what_is_left_and_that_a_cheaper_fits():
    """A compare (15c) with 10c of a visitor's 30c left was told the share was used up and
    sent to paste a key, though a pro edit still fitted (review 55 F2)."""
    caps, _, _ = limits(visitor_budget_cents=30, total_budget_cents=42, max_running=100)
    caps.admit("a", ["1"], 20, server_key=True)
    with pytest.raises(LimitError) as refused:
        caps.admit("a", ["2", "3"], 15, server_key=True)
    said = str(refused.value)
    assert "This costs $0.15, more than is left today" in said
    assert "($0.10 of your share)" in said
    assert "pro rather than max" in said
    caps.admit("a", ["4"], 5, server_key=True)  # it does
    caps.admit("b", ["5"], 10, server_key=True)  # 7c left of the total
    with pytest.raises(LimitError, match="more than is left today") as refused:
        caps.admit("c", ["6"], 10, server_key=True)
    # What is left of the total others share is not told to the cent (review 56 F5).
    assert "0.07" not in str(refused.value)
    caps.admit("c", ["7"], 5, server_key=True)
    # Less than the cheapest edit left: used up, as before.
    with pytest.raises(LimitError, match="budget for today is used up"):
        caps.admit("d", ["8"], 5, server_key=True)


def test_the_total_budget_is_shared_by_all_visitors():
    caps, _, _ = limits(total_budget_cents=20, max_running=100)
    caps.admit("a", ["1"], 10, server_key=True)
    caps.admit("b", ["2"], 10, server_key=True)
    with pytest.raises(LimitError, match="budget for today is used up"):
        caps.admit("c", ["3"], 5, server_key=True)


def test_a_visitors_originals_may_hold_only_their_share_of_the_disk():
    caps, _, _ = limits(upload_bytes=10 * 2**20)
    caps.admit_upload(6 * 2**20, 4 * 2**20)
    with pytest.raises(LimitError, match="take 6 MB of the 10 MB"):
        caps.admit_upload(6 * 2**20, 5 * 2**20)


def test_a_free_place_goes_to_the_visitor_who_has_had_the_fewest_turns():
    """Decode places: a visitor who has decoded much lately waits behind one who has not, even
    when they asked first; among equals, the first to ask goes first; a waiter who gives up
    takes no place with them."""

    async def scenario() -> list[str]:
        places = FairPlaces(1)
        order: list[str] = []
        holding = asyncio.Event()
        release = asyncio.Event()

        async def take(name: str, used: int, hold: asyncio.Event | None = None) -> None:
            async with places.place(used):
                order.append(name)
                if hold is not None:
                    holding.set()
                    await hold.wait()

        first = asyncio.create_task(take("first", 0, release))
        await holding.wait()
        busy = asyncio.create_task(take("busy", 900))
        gone = asyncio.create_task(take("gone", 0))
        fresh = asyncio.create_task(take("fresh", 0))
        also_fresh = asyncio.create_task(take("also fresh", 0))
        await asyncio.sleep(0)
        gone.cancel()
        release.set()
        await asyncio.gather(first, busy, fresh, also_fresh)
        async with places.place(0):  # and the place is free again
            order.append("after")
        return order

    assert asyncio.run(scenario()) == ["first", "fresh", "also fresh", "busy", "after"]


def test_an_edit_is_written_in_the_ledger_under_the_day_it_was_counted_in():
    """The engine counted an edit in day D, then asked for today to write it in the ledger: at
    midnight that was D+1, where the day's count in memory never had it (one edit past a
    budget until a restart: review 18 F3). `admit` says the day it counted in."""
    caps, _, _ = limits(visitor_budget_cents=30)
    days = iter([date(2026, 11, 30)] + [date(2026, 12, 1)] * 10)
    caps._today = lambda: next(days)  # (midnight comes just after the first look)
    counted = caps.admit("a", ["1"], 5, server_key=True)
    assert counted == date(2026, 11, 30)
    assert caps.today == date(2026, 12, 1)  # where the ledger row went, and D+1 never had it
