"""`LearnedSchedule`: the poll schedule a client follows, learned from the tasks seen finish.

Holds the recent durations per model and hands `policy.learned_poll_delays` a copy for each wait.
Imports the stdlib and this package only.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator, Mapping

from . import policy


class LearnedSchedule:
    """A `poll_schedule` for `RunAPIClient` that learns: `schedule(model)` gives the sleeps for
    one wait, `observe(model, seconds)` adds a finished task. Thread-safe.

    Args:
        history: Durations already known per wire model name, oldest first (from the store).
        scale: Multiplies the prior schedule, used until a model has a few durations.
    """

    def __init__(
        self, history: Mapping[str, Iterable[float]] | None = None, *, scale: float = 1.0
    ) -> None:
        self._scale = scale
        self._lock = threading.Lock()
        self._durations: dict[str, deque[float]] = {}
        for model, durations in (history or {}).items():
            for seconds in durations:
                self.observe(model, seconds)

    def __call__(self, model: str) -> Iterator[float]:
        return policy.learned_poll_delays(model, self.durations(model), scale=self._scale)

    def observe(self, model: str, seconds: float) -> None:
        """Record that a task of `model` was seen finished `seconds` after its create answered."""
        with self._lock:
            log = self._durations.setdefault(model, deque(maxlen=policy.LEARN_WINDOW))
            log.append(float(seconds))

    def durations(self, model: str) -> list[float]:
        """The recent durations of `model`, oldest first."""
        with self._lock:
            return list(self._durations.get(model, ()))

    def __repr__(self) -> str:
        with self._lock:
            counts = {model: len(log) for model, log in self._durations.items()}
        return f"LearnedSchedule({counts})"
