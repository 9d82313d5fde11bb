"""Faults a test can inject into the simulator: counted, thread-safe, consumed by matching requests.

Imports the stdlib only; `routes` asks it what to do with each API request.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Literal

Route = Literal["create", "get", "files", "balance", "any"]
ROUTES: tuple[Route, ...] = ("create", "get", "files", "balance", "any")
# What `chaos` may do to an API request, a created task, or a result download.
Chaos = Literal["429", "5xx", "drop", "slow", "failed", "expired"]
API_CHAOS: tuple[Chaos, ...] = ("429", "5xx", "drop", "slow")
DOWNLOAD_CHAOS: tuple[Chaos, ...] = ("expired", "slow")
CHAOS_FAIL_MESSAGE = "Simulated failure: the task failed on the service."


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error answered instead of processing the request (a 429 or a 5xx)."""

    status: int
    retry_after: str | None = None


class Faults:
    """Counters for each kind of fault. Each `times=N` fault hits the next N matching requests.

    Set from the test thread, consumed on the server thread, hence the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Clear every fault."""
        with self._lock:
            self._errors: list[ErrorReply] = []
            self._drops: dict[Route, int] = {}
            self._slow: dict[Route, list[float]] = {}
            self._fail_messages: list[str] = []
            self.results_expired = False
            self.first_result_urls_expire = False
            self.results_damaged = False
            self.sources_unreachable = False
            self._chaos_rate = 0.0
            self._rng = random.Random()
            self.chaos_slow_s = 0.0
            self.injected: Counter[str] = Counter()

    def rate_limit(self, times: int = 1, retry_after: str | float = "1") -> None:
        """The next `times` API requests answer 429 with `Retry-After` (seconds or HTTP date)."""
        with self._lock:
            self._errors.extend([ErrorReply(429, str(retry_after))] * times)

    def server_error(self, status: int = 503, times: int = 2) -> None:
        """The next `times` API requests answer `status` (a 5xx) without being processed."""
        if not 500 <= status <= 599:
            raise ValueError("server_error takes a 5xx status")
        with self._lock:
            self._errors.extend([ErrorReply(status)] * times)

    def drop_connection(self, times: int = 1, route: Route = "create") -> None:
        """The next `times` requests to `route` are processed, then their connection drops."""
        if route not in ROUTES:
            raise ValueError(f"route must be one of {', '.join(ROUTES)}")
        with self._lock:
            self._drops[route] = self._drops.get(route, 0) + times

    def slow(self, seconds: float = 0.5, times: int = 1, route: Route = "any") -> None:
        """Delay the next `times` API answers (to `route`, or any) by `seconds` (after
        processing, before answering)."""
        if route not in ROUTES:
            raise ValueError(f"route must be one of {', '.join(ROUTES)}")
        with self._lock:
            self._slow.setdefault(route, []).extend([seconds] * times)

    def fail_tasks(self, message: str = "Content moderated", times: int = 1) -> None:
        """The next `times` created tasks end `failed` with `message` (and are refunded)."""
        with self._lock:
            self._fail_messages.extend([message] * times)

    def expire_results(self) -> None:
        """Result image URLs answer 404 from now on."""
        with self._lock:
            self.results_expired = True

    def expire_first_result_urls(self) -> None:
        """From now on the first result URL handed out for each task answers 404 (it expired
        before it was fetched, as BFL's do after ten minutes); reading the task again hands
        out a fresh URL that works."""
        with self._lock:
            self.first_result_urls_expire = True

    def damage_results(self) -> None:
        """Result images come with their bytes damaged from now on (whole length, bad CRCs)."""
        with self._lock:
            self.results_damaged = True

    def unreachable_sources(self) -> None:
        """Every `source_image_url` fails to fetch from now on, so new edit tasks fail."""
        with self._lock:
            self.sources_unreachable = True

    def chaos(self, rate: float, *, seed: int | None = None, slow_s: float = 1.0) -> None:
        """From now on fault a share `rate` of everything at random, until `reset()`.

        Each API request draws once: with probability `rate` it is answered 429 (`Retry-After:
        1`), answered 503, processed and then dropped, or answered `slow_s` late, in equal
        shares. Each created task fails (and is refunded) with probability `rate / 4`; each
        result download answers 404 (an expired URL) or `slow_s` late with probability `rate`.
        `injected` counts what was done. `seed` makes the draws repeatable.
        """
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        with self._lock:
            self._chaos_rate = rate
            self._rng = random.Random(seed)
            self.chaos_slow_s = slow_s

    # The server's side: each call consumes at most one fault.

    def take_chaos(self, kinds: tuple[Chaos, ...], *, rate_share: float = 1.0) -> Chaos | None:
        """One random draw under `chaos`: a fault of `kinds`, or None (always None without it)."""
        with self._lock:
            if self._chaos_rate <= 0 or self._rng.random() >= self._chaos_rate * rate_share:
                return None
            kind = self._rng.choice(kinds)
            self.injected[kind] += 1
            return kind

    def take_error(self) -> ErrorReply | None:
        with self._lock:
            return self._errors.pop(0) if self._errors else None

    def take_slow_s(self, route: Route | None = None) -> float:
        with self._lock:
            for key in (route, "any"):
                if key is not None and self._slow.get(key):
                    return self._slow[key].pop(0)
            return 0.0

    def take_drop(self, route: Route | None) -> bool:
        with self._lock:
            for key in (route, "any"):
                if key is not None and self._drops.get(key, 0) > 0:
                    self._drops[key] -= 1
                    return True
            return False

    def take_fail_message(self) -> str | None:
        with self._lock:
            if self._fail_messages:
                return self._fail_messages.pop(0)
        if self.take_chaos(("failed",), rate_share=0.25) is not None:
            return CHAOS_FAIL_MESSAGE
        return None
