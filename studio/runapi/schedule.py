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
        self,
        history: Mapping[str, Iterable[float | tuple[float, float]]] | None = None,
        *,
        scale: float = 1.0,
    ) -> None:
        self._scale = scale
        self._lock = threading.Lock()
        self._samples: dict[str, deque[tuple[float, float]]] = {}
        for model, samples in (history or {}).items():
            for sample in samples:
                seconds, after = sample if isinstance(sample, tuple) else (sample, 0.0)
                self.observe(model, seconds, after=after)

    def __call__(self, model: str) -> Iterator[float]:
        samples = self.samples(model)
        return policy.learned_poll_delays(
            model,
            [seconds for seconds, _ in samples],
            after_s=[after for _, after in samples],
            scale=self._scale,
        )

    def observe(self, model: str, seconds: float, *, after: float = 0.0) -> None:
        """Record that a task of `model` was seen finished `seconds` after its create answered,
        by a read after one sent at `after` that saw it unfinished (0: none)."""
        with self._lock:
            log = self._samples.setdefault(model, deque(maxlen=policy.LEARN_WINDOW))
            log.append((float(seconds), float(after)))

    def durations(self, model: str) -> list[float]:
        """The recent durations of `model`, oldest first."""
        return [seconds for seconds, _ in self.samples(model)]

    def samples(self, model: str) -> list[tuple[float, float]]:
        """The recent durations of `model` with their lower bounds, oldest first."""
        with self._lock:
            return list(self._samples.get(model, ()))

    def __repr__(self) -> str:
        with self._lock:
            counts = {model: len(log) for model, log in self._samples.items()}
        return f"LearnedSchedule({counts})"
