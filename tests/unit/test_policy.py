"""Tables for the pure retry and poll policies in studio/runapi/policy.py."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from studio.runapi.policy import (
    POLL_CAP_S,
    RETRY_AFTER_CAP_S,
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


@pytest.mark.parametrize(
    ("model", "expected_reads_s"),
    [
        pytest.param(
            "flux-kontext-pro",
            [4.5, 5.75, 7.0, 8.25, 9.5, 10.75, 12.0, 13.875, 16.6875, 20.90625, 25.90625],
            id="pro",
        ),
        pytest.param(
            "flux-kontext-max",
            [9.0, 10.5, 12.0, 13.5, 15.0, 16.5, 18.0, 19.5, 21.0, 22.5, 24.0, 26.25, 29.625],
            id="max",
        ),
        pytest.param(
            "flux-kontext-unknown",
            [9.0, 10.5, 12.0, 13.5, 15.0, 16.5, 18.0, 19.5, 21.0, 22.5, 24.0, 26.25, 29.625],
            id="unknown-model-gets-the-slow-profile",
        ),
    ],
)
def test_poll_delays_read_inside_the_model_window(model, expected_reads_s):
    reads = list(itertools.accumulate(_first(model, len(expected_reads_s))))
    assert reads == pytest.approx(expected_reads_s)


@pytest.mark.parametrize("model", ["flux-kontext-pro", "flux-kontext-max"])
def test_poll_delays_grow_to_the_cap_and_stay_there(model):
    tail = _first(model, 40)[-10:]
    assert tail == [POLL_CAP_S] * 10


def _sdk_reads(finish_s: float) -> tuple[int, float]:
    """The official SDK's run(): a read at once, then one every 2 s."""
    seen_at = next(t for t in itertools.count(0.0, 2.0) if t >= finish_s)
    return int(seen_at / 2) + 1, seen_at - finish_s


@pytest.mark.parametrize(
    ("model", "finish_s", "reads", "late_s"),
    [
        pytest.param("flux-kontext-pro", 5.0, 3, 0.75, id="pro-5s"),
        pytest.param("flux-kontext-pro", 7.5, 5, 0.75, id="pro-7.5s"),
        pytest.param("flux-kontext-pro", 10.0, 7, 0.75, id="pro-10s"),
        pytest.param("flux-kontext-max", 10.0, 3, 0.5, id="max-10s"),
        pytest.param("flux-kontext-max", 15.0, 6, 0.0, id="max-15s"),
        pytest.param("flux-kontext-max", 20.0, 10, 1.0, id="max-20s"),
    ],
)
def test_poll_delays_notice_a_finish_sooner_than_the_official_sdk(model, finish_s, reads, late_s):
    times = [0.0, *itertools.accumulate(_first(model, 30))]  # the client also reads at once
    seen_at = next(t for t in times if t >= finish_s)
    assert (times.index(seen_at) + 1, seen_at - finish_s) == (reads, pytest.approx(late_s))
    sdk_reads, sdk_late_s = _sdk_reads(finish_s)
    assert reads <= sdk_reads + 1
    assert late_s <= max(sdk_late_s, 1.25)


def test_poll_delays_scale_multiplies_every_delay():
    assert _first("flux-kontext-pro", 12, scale=0.01) == pytest.approx(
        [d * 0.01 for d in _first("flux-kontext-pro", 12)]
    )
