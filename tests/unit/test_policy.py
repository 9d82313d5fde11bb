"""Tables for the pure retry and poll policies in studio/runapi/policy.py."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from studio.runapi import LearnedSchedule
from studio.runapi.policy import (
    POLL_CAP_S,
    RETRY_AFTER_CAP_S,
    learned_poll_delays,
    parse_retry_after,
    poll_delays,
    retry_delay,
    should_retry,
)

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


def _http_date(delta_s: float) -> str:
    return format_datetime(NOW + timedelta(seconds=delta_s), usegmt=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("3", 3.0, id="seconds"),
        pytest.param(" 1.5 ", 1.5, id="fractional-seconds-with-spaces"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param(_http_date(30), 30.0, id="http-date-in-the-future"),
        pytest.param(_http_date(-30), 0.0, id="http-date-in-the-past"),
        pytest.param("-5", None, id="negative"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("nan", None, id="not-a-number"),
        pytest.param("inf", None, id="infinite"),
        pytest.param("86400", RETRY_AFTER_CAP_S, id="huge-seconds-capped"),
        pytest.param(_http_date(86400), RETRY_AFTER_CAP_S, id="huge-http-date-capped"),
        pytest.param("2025-06-01T12:00:30Z", None, id="iso-8601-is-not-an-http-date"),
    ],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_reads_a_date_without_a_zone_as_utc():
    assert parse_retry_after("Sun, 01 Jun 2025 12:00:10 -0000", now=NOW) == 10.0


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [
        pytest.param(1, 0.5, id="first-retry"),
        pytest.param(2, 1.0, id="second"),
        pytest.param(3, 2.0, id="third"),
        pytest.param(5, 8.0, id="reaches-the-cap"),
        pytest.param(12, 8.0, id="stays-at-the-cap"),
    ],
)
def test_retry_delay_doubles_up_to_the_cap_when_there_is_no_jitter(attempt, expected):
    assert retry_delay(attempt, jitter=0.0) == expected


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("jitter", [0.0, 0.3, 0.999, 1.0])
def test_retry_delay_jitter_shortens_by_at_most_a_quarter(attempt, jitter):
    full = retry_delay(attempt, jitter=0.0)
    assert 0.75 * full <= retry_delay(attempt, jitter=jitter) <= full


@pytest.mark.parametrize(
    ("retry_after_s", "expected"),
    [
        pytest.param(0.0, 0.0, id="zero-means-now"),
        pytest.param(2.5, 2.5, id="server-wins-over-backoff"),
        pytest.param(30.0, 30.0, id="longer-than-the-backoff-cap"),
    ],
)
def test_retry_delay_follows_retry_after_when_the_service_gives_one(retry_after_s, expected):
    assert retry_delay(4, retry_after_s=retry_after_s, jitter=0.9) == expected


def test_retry_delay_takes_its_base_and_cap_from_arguments():
    assert [retry_delay(n, base_s=0.01, cap_s=0.03) for n in (1, 2, 3)] == [0.01, 0.02, 0.03]


_REQUEST = httpx.Request("POST", "https://runapi.ai/api/v1/flux_kontext/text_to_image")


@pytest.mark.parametrize(
    ("repeatable", "status", "error", "expected"),
    [
        pytest.param(True, 429, None, True, id="429-read"),
        pytest.param(False, 429, None, True, id="429-unrepeatable-was-not-processed"),
        pytest.param(True, 500, None, True, id="500-repeatable"),
        pytest.param(True, 502, None, True, id="502-repeatable"),
        pytest.param(True, 503, None, True, id="503-repeatable"),
        pytest.param(True, 504, None, True, id="504-repeatable"),
        pytest.param(False, 503, None, False, id="503-unrepeatable"),
        pytest.param(True, 501, None, False, id="501-not-implemented"),
        pytest.param(True, 400, None, False, id="400"),
        pytest.param(True, 401, None, False, id="401"),
        pytest.param(True, 402, None, False, id="402"),
        pytest.param(True, 404, None, False, id="404"),
        pytest.param(True, 409, None, False, id="409"),
        pytest.param(True, 413, None, False, id="413"),
        pytest.param(True, 422, None, False, id="422"),
        pytest.param(False, None, httpx.ConnectError("refused"), True, id="connect-error-always"),
        pytest.param(False, None, httpx.ConnectTimeout("slow"), True, id="connect-timeout-always"),
        pytest.param(True, None, httpx.ReadError("reset"), True, id="read-error-repeatable"),
        pytest.param(False, None, httpx.ReadError("reset"), False, id="read-error-unrepeatable"),
        pytest.param(True, None, httpx.ReadTimeout("slow"), True, id="read-timeout-repeatable"),
        pytest.param(
            True, None, httpx.RemoteProtocolError("cut"), True, id="protocol-error-repeatable"
        ),
        pytest.param(
            False, None, httpx.RemoteProtocolError("cut"), False, id="protocol-error-unrepeatable"
        ),
        pytest.param(True, None, httpx.WriteError("pipe"), True, id="write-error-repeatable"),
        pytest.param(True, None, ValueError("ours"), False, id="not-a-transport-error"),
        pytest.param(True, None, None, False, id="nothing-went-wrong"),
    ],
)
def test_should_retry(repeatable, status, error, expected):
    assert should_retry(repeatable=repeatable, status=status, error=error) is expected


def _first(model: str, n: int, scale: float = 1.0) -> list[float]:
    return list(itertools.islice(poll_delays(model, scale=scale), n))


@pytest.mark.parametrize("model", ["flux-kontext-pro", "flux-kontext-max", "flux-kontext-next"])
def test_poll_delays_read_on_the_sdks_grid_then_grow(model):
    reads = list(itertools.accumulate(_first(model, 19)))
    assert reads == pytest.approx([*range(2, 32, 2), 33.0, 37.5, 42.5, 47.5])


@pytest.mark.parametrize("model", ["flux-kontext-pro", "flux-kontext-max"])
def test_poll_delays_grow_to_the_cap_and_stay_there(model):
    tail = _first(model, 40)[-10:]
    assert tail == [POLL_CAP_S] * 10


def test_poll_delays_scale_multiplies_every_delay():
    assert _first("flux-kontext-pro", 12, scale=0.01) == pytest.approx(
        [d * 0.01 for d in _first("flux-kontext-pro", 12)]
    )


PRO, MAX = "flux-kontext-pro", "flux-kontext-max"


def _learned_reads(durations, n, model=PRO, scale=1.0):
    """The first `n` read times (seconds after the client's own first read)."""
    delays = itertools.islice(learned_poll_delays(model, durations, scale=scale), n)
    return list(itertools.accumulate(delays))


@pytest.mark.parametrize(
    "durations",
    [
        pytest.param([], id="no-history"),
        pytest.param([3.0, 3.0], id="two-samples"),
        pytest.param([3.0, 0.0, -1.0, float("nan"), float("inf")], id="one-usable-sample"),
    ],
)
def test_learned_poll_delays_follow_the_prior_until_a_few_tasks_are_known(durations):
    assert _learned_reads(durations, 12, scale=0.5) == pytest.approx(
        list(itertools.accumulate(_first(PRO, 12, scale=0.5)))
    )


@pytest.mark.parametrize(
    ("durations", "expected_reads_s"),
    [
        # The fastest came first and two finishes since were slower: the probe is 25% / 4
        # before it; then six steps up to the slowest; then the tail.
        pytest.param(
            [4.0, 5.0, 6.0],
            [3.75, 4.0, 4 + 1 / 3, 4 + 2 / 3, 5.0, 5 + 1 / 3, 5 + 2 / 3, 6.0, 6.5],
            id="spread-4-to-6",
        ),
        pytest.param([3.0, 3.0, 3.0], [2.8125, 3.0, 3.18], id="three-finishes-at-3s"),
        pytest.param([3.0] * 8, [2.994, 3.0, 3.18], id="eight-finishes-probe-at-the-floor"),
        pytest.param([10.0, 10.05, 10.08], [9.375, 10.0, 10.08], id="close-finishes-near-10s"),
        # The latest finish was the fastest, 3.4% below the one before: probe 4 x 3.4% deeper.
        pytest.param([3.0, 3.0, 3.0, 2.9], [2.5, 2.9, 3.0], id="a-new-fastest-probes-deeper"),
        # Two finishes since the fastest: that depth halved twice.
        pytest.param([3.0, 2.9, 3.0, 3.0], [2.8, 2.9, 3.0], id="misses-since-halve-the-depth"),
    ],
)
def test_learned_poll_delays_read_just_before_and_at_the_known_finishes(
    durations, expected_reads_s
):
    reads = _learned_reads(durations, len(expected_reads_s))
    assert reads == pytest.approx(expected_reads_s, abs=1e-3)


def test_learned_poll_delays_probe_depth_halves_with_each_later_finish_down_to_the_floor():
    firsts = [_learned_reads([2.0, *[2.01] * k], 1)[0] for k in range(2, 8)]
    depths = [round(1 - first / 2.0, 4) for first in firsts]
    assert depths == [0.0625, 0.0312, 0.0156, 0.0078, 0.0039, 0.002]


@pytest.mark.parametrize(
    ("durations", "same_as"),
    [
        pytest.param([3.0, 3.0, 3.0, 30.0], [3.0, 3.0, 3.0], id="a-resumed-task-far-slower"),
        pytest.param([3.0, 3.0, 0.1, 3.0], [3.0, 3.0, 3.0], id="a-replayed-task-already-done"),
        pytest.param([1.0] * 5 + [3.0, 3.0, 3.0, 3.0], [3.0] * 4, id="only-the-last-eight-count"),
        pytest.param([3.0] * 5 + [6.2, 6.0, 6.1], [6.2, 6.0, 6.1], id="a-jump-drops-the-old"),
    ],
)
def test_learned_poll_delays_ignore_outliers_and_old_regimes(durations, same_as):
    assert _learned_reads(durations, 15) == pytest.approx(_learned_reads(same_as, 15))


def test_learned_poll_delays_keep_a_jump_of_two_as_a_spread_not_a_regime():
    # Two slow finishes may be chance: the 3 s finishes still count (reads start near 3 s).
    assert _learned_reads([3.0] * 6 + [6.0, 6.0], 1)[0] < 3.0


@pytest.mark.parametrize("known_s", [0.5, 3.0, 10.0, 60.0])
def test_learned_poll_delays_tail_grows_but_never_past_a_fifth_of_the_wait_or_the_cap(known_s):
    times = [0.0, *_learned_reads([known_s] * 4, 60)]
    tail = [b - a for a, b in itertools.pairwise(times)][2:]
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(tail))
    assert all(
        d <= max(0.04 * known_s, 0.2 * t) + 1e-9 for d, t in zip(tail, times[2:], strict=False)
    )
    assert max(tail) == pytest.approx(POLL_CAP_S)


def test_learned_poll_delays_ignore_scale_once_learned():
    assert _learned_reads([3.0] * 4, 10, scale=0.01) == _learned_reads([3.0] * 4, 10)


def _run_tasks(model, finishes_s, read_cost_s=0.005, schedule=None, bounds=True):
    """Drive a LearnedSchedule as the client and the engine do, against tasks finishing at
    `finishes_s` after the create's answer: returns (reads, seen late by) per task. A task just
    created is not read at once (the create's answer said it was pending). With `bounds`, each
    finish is taught with the read before it (as the runner does); without, the top alone."""
    schedule = schedule or LearnedSchedule()
    results = []
    for finish in finishes_s:
        delays, t, missed, reads = iter(schedule(model)), 0.0, 0.0, 0
        while t < finish:
            missed = t
            t += next(delays) + read_cost_s
            reads += 1
        schedule.observe(model, t, after=missed if bounds else 0.0)
        results.append((reads, t - finish))
    return results


def test_the_read_before_a_finish_halves_the_prior_s_bracket_with_each_task():
    """The prior reads every 2 s, so its first three finishes of a 3.02 s task say only "by
    4 s". Probing down from the tops alone, the fifth to eighth tasks were seen 0.25-0.73 s
    late (a load burst of them after four warm-ups, all 0.73 s late: README, Numbers); with
    the read before each finish (when it was still running), each probe halves the bracket."""
    fixed = [3.02] * 10
    tops = [late for _, late in _run_tasks(PRO, fixed, bounds=False)]
    both = [late for _, late in _run_tasks(PRO, fixed)]
    assert tops[4] > 0.7  # what a burst after four warm-ups met
    assert both[4] < 0.55
    assert sum(both[4:]) < 0.6 * sum(tops[4:])
    assert max(both[6:]) < 0.15
    # No more reads than before, and none more than the SDK's.
    assert all(r <= _sdk(3.02)[0] for r, _ in _run_tasks(PRO, fixed)[3:])


def _sdk(finish_s, read_cost_s=0.005):
    """The official SDK's run(): a read at once, then one every 2 s."""
    t, reads = 0.0, 1
    while t < finish_s:
        t, reads = t + 2.0 + read_cost_s, reads + 1
    return reads, t - finish_s


@pytest.mark.parametrize("model", [PRO, MAX])
@pytest.mark.parametrize("finish_s", [2.0, 4.0, 7.0, 15.0, 0.8, 3.3, 7.3, 10.0, 19.9])
def test_a_new_user_waits_no_longer_than_with_the_sdk_and_soon_less(model, finish_s):
    # The bar, as the schedule sees it (the client's own latency aside): the first
    # three tasks of a model at most 1.1x the SDK's time to seeing the finish, and from the
    # fourth on at most 1.05x with no more reads than the SDK.
    results = _run_tasks(model, [finish_s] * 12)
    sdk_reads, sdk_late = _sdk(finish_s)
    for n, (reads, late) in enumerate(results):
        assert finish_s + late <= (1.1 if n < 3 else 1.05) * (finish_s + sdk_late), n
        if n >= 3:
            assert reads <= sdk_reads, n


@pytest.mark.parametrize("model", [PRO, MAX])
def test_what_one_process_learned_teaches_the_next(model):
    # A CLI run (a new process) starts from the durations the store kept: it reads as the
    # long-running schedule it continues would have.
    first = LearnedSchedule()
    _run_tasks(model, [4.0] * 3, schedule=first)
    second = LearnedSchedule({model: first.durations(model)})
    assert _run_tasks(model, [4.0], schedule=second) == _run_tasks(model, [4.0], schedule=first)


@pytest.mark.parametrize("model", [PRO, MAX])
@pytest.mark.parametrize("finish_s", [3.0, 7.3, 10.0])
def test_learned_schedule_finds_a_fixed_duration_within_a_few_tasks(model, finish_s):
    results = _run_tasks(model, [finish_s] * 24)
    # Within a dozen tasks a few percent late; within twenty, 1%; two reads after the first.
    assert max(late for _, late in results[12:]) <= 0.04 * finish_s
    assert max(late for _, late in results[20:]) <= 0.01 * finish_s
    assert max(reads for reads, _ in results[10:]) <= min(3, _sdk(finish_s)[0])


@pytest.mark.parametrize("model", [PRO, MAX])
@pytest.mark.parametrize("finish_s", [3.0, 10.0])
def test_learned_schedule_degrades_gracefully_when_every_task_turns_twice_as_slow(model, finish_s):
    results = _run_tasks(model, [finish_s] * 16 + [2 * finish_s] * 16)
    shifted = results[16:]
    # Never later than a fifth of the new duration, never more reads than the prior's worst...
    assert max(late for _, late in shifted) <= 0.2 * 2 * finish_s
    assert max(reads for reads, _ in shifted) <= 10
    # ...and learned again within the window.
    assert max(late for _, late in shifted[8:]) <= 0.02 * 2 * finish_s


@pytest.mark.parametrize("model", [PRO, MAX])
def test_learned_schedule_follows_a_service_that_turns_twice_as_fast(model):
    results = _run_tasks(model, [10.0] * 16 + [5.0] * 16)
    # Each probe that finds the task done goes deeper: within a dozen tasks, 3% late at most.
    assert max(late for _, late in results[16 + 12 :]) <= 0.03 * 5.0


@pytest.mark.parametrize(("model", "low_s"), [(PRO, 5.0), (MAX, 10.0)])
def test_learned_schedule_reads_a_wide_spread_about_as_often_as_the_sdk(model, low_s):
    # Finishes spread evenly from low_s to twice that, shuffled: the prior's windows.
    finishes = [low_s * (1 + ((i * 7) % 16 + 0.5) / 16) for i in range(48)]
    ours = _run_tasks(model, finishes)[8:]
    sdk = [_sdk(f) for f in finishes[8:]]
    assert sum(r for r, _ in ours) <= 1.15 * sum(r for r, _ in sdk)
    assert sum(late for _, late in ours) <= 0.9 * sum(late for _, late in sdk)


def test_learned_schedule_starts_from_the_history_it_is_given():
    schedule = LearnedSchedule({PRO: [3.0, 3.0, 3.0]})
    assert list(itertools.islice(schedule(PRO), 2)) == pytest.approx([2.8125, 0.1875])
    assert list(itertools.islice(schedule(MAX), 1)) == [2.0]  # nothing known: the prior
    schedule.observe(MAX, 12.0)
    assert schedule.durations(MAX) == [12.0]
