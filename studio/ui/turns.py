"""A visitor's turns at the studio's heavier reads: a page drawn, a session shown through the
API or MCP. A draw of a long session takes a tenth of a second of CPU or more, so one visitor's
reads in flight share the CPU with everyone else's rather than take it: `AT_ONCE` at a time,
and `PER_S` a second on average after a burst of `BURST` (a read past that waits, holding its
place: the visitor's others wait behind it, nobody else's). A tab draws at most one page a
second while an edit runs; typing ahead or two tabs reloading fit in the burst.

Review 5 F7: one cookie keeping 16 draws of a 1,000-step session in flight made others' page
loads take 1.5-1.9 s (0.05 s alone); two at a time back to back still took both cores; then one
API key's 16 `show_session` calls did the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref

AT_ONCE = 2
PER_S = 4.0
BURST = 12.0


class Turns:
    """One visitor's turns (an async context manager: one turn each time it is entered)."""

    def __init__(self) -> None:
        self._places = asyncio.Semaphore(AT_ONCE)
        self._tokens = BURST
        self._at = time.monotonic()

    async def __aenter__(self) -> None:
        await self._places.acquire()
        try:
            now = time.monotonic()
            self._tokens = min(BURST, self._tokens + (now - self._at) * PER_S)
            self._at = now
            self._tokens -= 1
            if self._tokens < 0:
                await asyncio.sleep(-self._tokens / PER_S)
        except BaseException:
            self._places.release()
            raise

    async def __aexit__(self, *_: object) -> None:
        self._places.release()


# Each named visitor's turns, while they have a read under way or waiting.
_TURNS: weakref.WeakValueDictionary[str, Turns] = weakref.WeakValueDictionary()


def turn_of(owner: str | None) -> contextlib.AbstractAsyncContextManager[object]:
    """A turn of `owner`'s (the studio's own user, unnamed, is not counted)."""
    if owner is None:
        return contextlib.nullcontext()
    turns = _TURNS.get(owner)
    if turns is None:
        turns = _TURNS[owner] = Turns()
    return turns


__all__ = ["AT_ONCE", "BURST", "PER_S", "Turns", "turn_of"]
