"""Runs the engine on its own event loop thread, so edits outlive the page that started them.

Gradio runs async handlers on its server loop and cancels them when a tab closes; the engine's
edits must go on regardless, and must resume at start-up before any page is open.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from studio.engine import Engine

T = TypeVar("T")


class EngineLoop:
    """An engine living on a private loop in a daemon thread; `call` awaits its coroutines."""

    def __init__(self, make_engine: Callable[[], Engine]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="engine", daemon=True)
        self._thread.start()
        self.engine = make_engine()

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` on the engine's loop from any other loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """Run `coro` on the engine's loop from a plain thread and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def close(self) -> None:
        """Stop waiting on edits (they resume at the next start) and stop the loop."""
        self.run(self.engine.aclose(), timeout_s=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
