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
