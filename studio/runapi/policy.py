"""Pure retry and poll policies for the RunAPI client: no I/O, no clock, no randomness of their own.

Imports httpx (for its exception types) and the stdlib only; tested with tables.
"""

from __future__ import annotations

import email.utils
import math
import statistics
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import httpx

# Backoff: the official SDK uses a 0.5 s base and a 5 s cap; we allow a longer cap because we
# also retry creates and network errors, where a short outage is the usual cause.
RETRY_BASE_S = 0.5
RETRY_CAP_S = 8.0
# Each delay is shortened by up to this fraction at random, so clients that failed together
# do not come back together (anthropic uses the same 25%).
RETRY_JITTER = 0.25
# A Retry-After beyond this is clamped: past two minutes a person is waiting, and the
# client's total retry budget will usually give up first and report the wait instead.
RETRY_AFTER_CAP_S = 120.0
# The statuses the contract marks as retryable ("Errors" table).
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header, or None when absent or unreadable.

    Accepts delta-seconds (`"3"`, `"1.5"`) or an HTTP-date (RFC 9110, parsed with
    `email.utils`); a date in the past gives 0. Negative or non-finite numbers and garbage give
    None, so the caller falls back to its own backoff. Values are clamped to
    `RETRY_AFTER_CAP_S`.

    Args:
        value: The raw header value.
        now: The current time for HTTP-dates (default: `datetime.now(UTC)`).
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000" means UTC in RFC 5322 dates
            when = when.replace(tzinfo=UTC)
        seconds = max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, RETRY_AFTER_CAP_S)


def retry_delay(
    attempt: int,
    *,
    retry_after_s: float | None = None,
    jitter: float = 0.0,
    base_s: float = RETRY_BASE_S,
    cap_s: float = RETRY_CAP_S,
) -> float:
    """Seconds to sleep before retry number `attempt` (1 = the first retry).

    If the service said how long to wait (`Retry-After`), that wins unchanged. Otherwise:
    `min(cap_s, base_s * 2 ** (attempt - 1)) * (1 - RETRY_JITTER * jitter)`, so with the
    defaults 0.5, 1, 2, 4, 8, 8 ... seconds, each shortened by up to 25%.

    Args:
        attempt: Which retry this is, from 1.
        retry_after_s: The parsed `Retry-After`, if any.
        jitter: A number in [0, 1), normally `random.random()`.
        base_s: The first delay.
        cap_s: The longest delay.
    """
    if retry_after_s is not None:
        return retry_after_s
    backoff = min(cap_s, base_s * 2.0 ** max(0, attempt - 1))
    return backoff * (1.0 - RETRY_JITTER * min(max(jitter, 0.0), 1.0))


def should_retry(
    *, repeatable: bool, status: int | None = None, error: BaseException | None = None
) -> bool:
    """Whether a failed attempt may be sent again.

    - 429 always: the service refused before doing anything.
    - 500, 502, 503, 504: only if `repeatable`.
    - `httpx.ConnectError` and `httpx.ConnectTimeout` always: nothing reached the service.
    - Other transport errors (read, write, protocol, timeouts): only if `repeatable`, because
      the service may have acted before the answer was lost.
    - Anything else: never.

    Args:
        repeatable: The request may be sent twice without harm: a read, a create under an
            `Idempotency-Key` (the service replays the first task), or an upload (a duplicate
            file is orphaned and expires in an hour at no cost).
        status: The HTTP status of the answer, if there was one.
        error: The exception raised instead of an answer, if any.
    """
    if status is not None:
        return status == 429 or (repeatable and status in RETRYABLE_STATUSES)
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout):
        return True
    return repeatable and isinstance(error, httpx.TransportError)


# The prior: what a client reads on before it knows a model's durations. The official SDK's
# `run()` reads every 2 s, so a prior on the same 2 s grid is never later than it for any duration,
# at no more reads; anything sparser (the old prior read pro first at 4.5 s, max at 9 s) makes a new
# user's first edits the slowest of all. Reality: pro usually finishes in ~5-10 s, max in ~10-20 s;
# past this window a task is unusual, and delays grow so that a stuck one is not hammered.
PRIOR_STEP_S = 2.0
PRIOR_WINDOW_S = 30.0
# After the window, delays grow by this factor up to the cap.
POLL_GROWTH = 1.5
POLL_CAP_S = 5.0


def poll_delays(model: str, *, scale: float = 1.0) -> Iterator[float]:
    """The sleeps between task reads for `model` before anything is known of it, forever.

    Every `PRIOR_STEP_S` (2 s, the official SDK's interval) until `PRIOR_WINDOW_S` (30 s), then
    `min(5, 2 * 1.5 ** k)` for k = 1, 2, ...; every value multiplied by `scale`. The reads land
    at 2, 4, ... 30, 33, 37.5, 42.5, 47.5 s after the create's answer, for every model: no later
    and no more often than the SDK's until 30 s.

    Args:
        model: The wire model name, e.g. `flux-kontext-pro` (every model has the same prior).
        scale: Multiplies every delay; tests use a small one against the fast simulator.
    """
    del model  # one prior for all: the SDK's grid is the bar, whatever the model
    elapsed = 0.0
    while elapsed < PRIOR_WINDOW_S - 1e-9:
        yield PRIOR_STEP_S * scale
        elapsed += PRIOR_STEP_S
    delay = PRIOR_STEP_S
    while True:
        delay = min(POLL_CAP_S, delay * POLL_GROWTH)
        yield delay * scale


# The learned schedule (`learned_poll_delays`). Its numbers were tuned on a model of the client
# (a read takes a few ms; finishes fixed, shifted 2x, or spread like the prior's windows) and are
# checked end to end by `kontext-studio bench`.
#
# Fewer samples than this and the prior above is used: one or two finishes say little.
LEARN_MIN_SAMPLES = 3
# Only the latest finishes count, so a change in the service shows within a few tasks.
LEARN_WINDOW = 8
# A sample further than this factor from the window's median is an outlier (a task resumed
# after a restart, or one that was already finished when its create was replayed).
LEARN_OUTLIER_FACTOR = 4.0
# A jump: this many latest samples all above the earlier ones by this factor start a new regime,
# and the earlier ones are dropped (every task suddenly twice as slow, say).
LEARN_JUMP_RUN = 3
LEARN_JUMP_FACTOR = 1.25
# The probe before the fastest finish: at most this fraction earlier, at least the floor.
LEARN_PROBE_DEPTH = 0.25
LEARN_PROBE_FLOOR = 0.002
# After a probe finds the task done (the service may have sped up), the next goes this many
# times as deep as that finish was below the one before; each finish at or after `lo` since
# halves the depth again: a search for the true time that costs one read a task.
LEARN_PROBE_GROWTH = 4
LEARN_SAME_FRACTION = 0.01
# Between the fastest and the slowest recent finish, reads are this fraction of the slowest apart
# at least, and there are at most this many of them.
LEARN_STEP_FRACTION = 0.04
LEARN_SPAN_READS = 6
# After the slowest recent finish: each delay 1.5x the one before, at most a fifth of the time
# waited so far and at most POLL_CAP_S.
LEARN_TAIL_FRACTION = 0.2


def learned_poll_delays(
    model: str,
    durations_s: Sequence[float],
    *,
    scale: float = 1.0,
    after_s: Sequence[float] = (),
) -> Iterator[float]:
    """The sleeps between task reads for `model`, placed by the finishes seen before; forever.

    `durations_s` are recent tasks of this model, oldest first: seconds from the create's answer
    until a read saw the task finished. Each is an upper bound (the finish happened at or before
    that read), so the schedule keeps probing just below the fastest one. `after_s`, where
    known, are the matching lower bounds: when the read before that one was sent (0: none, or
    the create's answer). With `floor` the highest of them below `lo`, the probe goes no later
    than halfway from `floor` to `lo`: a wide bracket is halved by each probe (the prior's
    2 s grid leaves finishes known only to 2 s, and probing down from their tops alone took a
    dozen tasks to find a 3 s task; README, Numbers), while a narrow one leaves the probe
    where it was (it also finds a service turned faster, below any old floor).

    With fewer than `LEARN_MIN_SAMPLES` usable samples this is `poll_delays(model, scale=scale)`.
    Otherwise it uses the last `LEARN_WINDOW` samples, without those beyond 4x from their median
    and without everything before a jump (three latest samples all 1.25x above every earlier
    one). With `lo` the fastest, `hi` the slowest, `m` the number of samples after the fastest
    and `g` how far the fastest is below the fastest before it (`min(before) / lo - 1`, counting
    only those more than 1% above), reads land at:

    - `lo * (1 - d)`, a probe, with `d = max(0.002, min(0.25, 4 * g) / 2 ** m)` (`g` taken as
      infinite with nothing before): a probe that finds the task done makes the next one
      deeper (the service may be getting faster); each later finish halves it (a bisection);
    - `lo`, then every `step = max(0.04 * hi, (hi - lo) / 6)` up to `hi`, and `hi`;
    - then delays growing 1.5x from `step`, at most a fifth of the time waited and `POLL_CAP_S`.

    A fixed duration is found within a dozen tasks or so, and from then on costs two reads after
    the client's first, seen within about 1% of the duration. A service that turns twice as
    slow is followed by the tail (at most a fifth late) and learned again within the window.
    `scale` applies to the prior only: learned times are the service's own.

    Args:
        model: The wire model name, e.g. `flux-kontext-pro`.
        durations_s: Seconds per finished task, oldest first.
        scale: Multiplies the prior's delays (tests use a small one against a fast simulator).
    """
    samples = _usable(durations_s, after_s)
    if len(samples) < LEARN_MIN_SAMPLES:
        yield from poll_delays(model, scale=scale)
        return
    recent = [upper for upper, _ in samples]
    lo, hi = min(recent), max(recent)
    floor = max((lower for _, lower in samples if lower < lo), default=0.0)
    fastest = recent.index(lo)
    misses = len(recent) - 1 - fastest
    # Earlier finishes within 1% of the fastest tell nothing about how deep to look.
    earlier = [d for d in recent[:fastest] if d > lo * (1 + LEARN_SAME_FRACTION)]
    gap = LEARN_PROBE_GROWTH * (min(earlier) / lo - 1) if earlier else LEARN_PROBE_DEPTH
    depth = max(LEARN_PROBE_FLOOR, min(LEARN_PROBE_DEPTH, gap) / 2**misses)
    step = max(LEARN_STEP_FRACTION * hi, (hi - lo) / LEARN_SPAN_READS)
    probe = lo * (1 - depth)
    if floor > 0:
        halfway = (floor + lo) / 2
        probe = halfway if probe <= floor else min(probe, halfway)
    reads = [probe, *(lo + step * n for n in range(max(1, math.ceil((hi - lo) / step))))]
    if hi > lo:
        reads.append(hi)
    waited = 0.0
    for at in reads:
        yield at - waited
        waited = at
    delay = step
    while True:
        delay = min(POLL_CAP_S, delay * POLL_GROWTH, max(step, LEARN_TAIL_FRACTION * waited))
        waited += delay
        yield delay


def _usable(
    durations_s: Sequence[float], after_s: Sequence[float] = ()
) -> list[tuple[float, float]]:
    """The last window of finite, positive samples without outliers or a regime left behind,
    each with its lower bound (0 where unknown or not below it)."""
    lowers = [*after_s[: len(durations_s)], *[0.0] * (len(durations_s) - len(after_s))]
    pairs = [
        (d, a if math.isfinite(a) and 0 < a < d else 0.0)
        for d, a in zip(durations_s[-LEARN_WINDOW:], lowers[-LEARN_WINDOW:], strict=True)
        if math.isfinite(d) and d > 0
    ]
    if not pairs:
        return []
    median = statistics.median(d for d, _ in pairs)
    pairs = [
        p for p in pairs if median / LEARN_OUTLIER_FACTOR <= p[0] <= median * LEARN_OUTLIER_FACTOR
    ]
    recent = [d for d, _ in pairs]
    for start in range(len(recent) - LEARN_JUMP_RUN, 0, -1):
        if min(recent[start : start + LEARN_JUMP_RUN]) > LEARN_JUMP_FACTOR * max(recent[:start]):
            return pairs[start:]
    return pairs
