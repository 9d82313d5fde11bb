"""RunAPIClient against the simulator on loopback: every status, retries, polling, files."""

from __future__ import annotations

import io
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from PIL import Image

from studio.runapi import (
    AuthenticationError,
    ConflictError,
    ImageRejectedError,
    InsufficientCreditsError,
    InvalidRequestError,
    NetworkError,
    NotFoundError,
    RateLimitedError,
    RunAPIClient,
    ServiceUnavailableError,
    Task,
    TaskFailedError,
    TaskRequest,
    TaskTimeoutError,
    UnexpectedResponseError,
    poll_delays,
)
from studio.simulator import RecordedRequest, Simulator

pytestmark = pytest.mark.anyio

CREATE_PATH = "/api/v1/flux_kontext/text_to_image"
PRO = "flux-kontext-pro"
MAX = "flux-kontext-max"


def fast_poll(model: str) -> Iterator[float]:
    """The real schedule, 50x faster: pro reads at 0, 90 ms, then every 25 ms."""
    return poll_delays(model, scale=0.02)


def _client(sim: Simulator, **overrides: Any) -> RunAPIClient:
    options: dict[str, Any] = {
        "api_key": sim.api_key,
        "base_url": sim.base_url,
        "retry_base_s": 0.01,
        "max_retry_s": 10.0,
        "poll_schedule": fast_poll,
    }
    return RunAPIClient(**(options | overrides))


def _generate(prompt: str = "a red fox at dawn", model: str = PRO, **fields: Any) -> TaskRequest:
    return TaskRequest(model=model, prompt=prompt, **fields)


def _png(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def _requests_to(sim: Simulator, method: str, path: str) -> list[RecordedRequest]:
    return [r for r in sim.requests if r.method == method and r.path == path]


async def test_a_generated_task_completes_and_its_image_downloads(sim):
    async with _client(sim) as client:
        created = await client.create_task(_generate(output_format="png"), idempotency_key="s-1")
        done = await client.wait_for_task(created.task_id, model=PRO)
        data = await client.download_result(done.image_urls[0])
    assert created.status in ("pending", "processing")
    assert created.task_id in sim.tasks
    assert done.status == "completed"
    assert done.billing is not None
    assert (done.billing.reserved_cents, done.billing.charged_cents) == (5, 5)
    assert Image.open(io.BytesIO(data)).format == "PNG"


async def test_create_sends_the_headers_and_drops_none_fields(sim):
    async with _client(sim) as client:
        await client.create_task(_generate(aspect_ratio="1:1"), idempotency_key="step-42")
    (sent,) = _requests_to(sim, "POST", CREATE_PATH)
    assert sent.json == {"model": PRO, "prompt": "a red fox at dawn", "aspect_ratio": "1:1"}
    assert sent.headers["idempotency-key"] == "step-42"
    assert sent.headers["authorization"] == f"Bearer {sim.api_key}"
    assert sent.headers["user-agent"].startswith("kontext-studio/")
    assert sent.headers["content-type"] == "application/json"


async def test_an_invalid_request_is_refused_before_sending(sim):
    async with _client(sim) as client:
        with pytest.raises(InvalidRequestError) as caught:
            await client.create_task(_generate(prompt="   "))
    assert caught.value.field_errors == {"prompt": ["must not be blank"]}
    assert sim.requests == []


@pytest.mark.parametrize("callback_kind", ["sync", "async"])
async def test_on_status_reports_each_status_once_with_elapsed_time(sim, callback_kind):
    seen: list[tuple[str, float]] = []
    missed: list[float] = []

    def record(task: Task, elapsed_s: float, missed_s: float) -> None:
        seen.append((task.status, elapsed_s))
        missed.append(missed_s)

    async def record_async(task: Task, elapsed_s: float, missed_s: float) -> None:
        record(task, elapsed_s, missed_s)

    async with _client(sim) as client:
        created = await client.create_task(_generate())
        await client.wait_for_task(
            created.task_id,
            model=PRO,
            on_status=record if callback_kind == "sync" else record_async,
        )
    assert [status for status, _ in seen] == ["pending", "processing", "completed"]
    elapsed = [elapsed_s for _, elapsed_s in seen]
    assert elapsed == sorted(elapsed)
    assert elapsed[-1] > 0.2  # the task's own time, measured from its creation
    # With each, the read before it (none before the first): the finish lies between the two.
    assert missed[0] == 0.0
    assert 0 < missed[-1] < elapsed[-1]
    assert missed[-1] >= elapsed[-2]


async def test_wait_raises_task_failed_with_the_service_message_when_the_task_fails(sim):
    sim.faults.fail_tasks(message="Content moderated", times=1)
    async with _client(sim) as client:
        created = await client.create_task(_generate())
        with pytest.raises(TaskFailedError) as caught:
            await client.wait_for_task(created.task_id, model=PRO)
    assert caught.value.task_id == created.task_id
    assert caught.value.message == "Content moderated"
    assert str(caught.value) == "The edit failed on RunAPI: Content moderated."


async def test_wait_raises_task_failed_when_the_source_cannot_be_fetched(sim):
    sim.faults.unreachable_sources()
    async with _client(sim) as client:
        created = await client.create_task(
            _generate(source_image_url=f"{sim.base_url}/files/missing")
        )
        with pytest.raises(TaskFailedError) as caught:
            await client.wait_for_task(created.task_id, model=PRO)
    assert caught.value.message


async def test_wait_raises_task_timeout_at_its_deadline(sim):
    async with _client(sim) as client:
        created = await client.create_task(_generate(model=MAX))
        with pytest.raises(TaskTimeoutError) as caught:
            await client.wait_for_task(created.task_id, model=MAX, deadline_s=0.2)
        # The task goes on; asking again later finds it done.
        done = await client.wait_for_task(created.task_id, model=MAX)
    assert caught.value.task_id == created.task_id
    assert 0.15 < caught.value.waited_s < 1.0
    assert done.status == "completed"


async def test_a_wrong_key_is_an_authentication_error_and_is_not_retried(sim):
    async with _client(sim, api_key="sk-wrong") as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.get_balance()
    assert caught.value.status == 401
    assert caught.value.request_id
    assert len(sim.requests) == 1


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("sk-SECRETKEY-999 \u0436", id="cyrillic"),
        pytest.param("sk-\xe9t\xe9-SECRET42", id="latin-1-header"),
        pytest.param("sk-SECRET\n42", id="line-break"),
    ],
)
async def test_a_key_no_header_can_carry_is_refused_unsent_and_never_logged(sim, key, caplog):
    caplog.set_level(logging.DEBUG)
    async with _client(sim, api_key=key) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.get_balance()
    assert str(caught.value) == AuthenticationError.sentence
    assert caught.value.status is None
    assert sim.requests == []
    assert "SECRET" not in caplog.text


async def test_an_empty_balance_is_insufficient_credits(sim):
    sim.balance_cents = 0
    async with _client(sim) as client:
        with pytest.raises(InsufficientCreditsError) as caught:
            await client.create_task(_generate())
    assert caught.value.status == 402
    assert len(sim.requests) == 1


async def test_an_unknown_task_is_not_found(sim):
    task_id = "00000000-0000-4000-8000-000000000000"
    async with _client(sim) as client:
        with pytest.raises(NotFoundError) as caught:
            await client.get_task(task_id)
    assert (caught.value.status, caught.value.task_id) == (404, task_id)


async def test_reusing_an_idempotency_key_with_another_body_is_a_conflict(sim):
    async with _client(sim) as client:
        await client.create_task(_generate("one"), idempotency_key="step-1")
        with pytest.raises(ConflictError) as caught:
            await client.create_task(_generate("two"), idempotency_key="step-1")
    assert caught.value.status == 409
    assert len(sim.tasks) == 1


async def test_repeating_a_create_under_its_key_replays_the_first_task(sim):
    async with _client(sim) as client:
        first = await client.create_task(_generate(), idempotency_key="step-1")
        again = await client.create_task(_generate(), idempotency_key="step-1")
    assert again.task_id == first.task_id
    assert (first.replayed, again.replayed) == (False, True)
    assert len(sim.tasks) == 1


@dataclass(frozen=True, kw_only=True, slots=True)
class _UncheckedRequest(TaskRequest):
    """A request that skips our own checks, to see what the service says about it."""

    def validate(self) -> None:
        return None


async def test_a_422_carries_the_service_field_messages(sim):
    async with _client(sim) as client:
        with pytest.raises(InvalidRequestError) as caught:
            await client.create_task(_UncheckedRequest(model=PRO, prompt="x", aspect_ratio="2:1"))
    assert caught.value.status == 422
    assert list(caught.value.field_errors) == ["aspect_ratio"]
    assert str(caught.value).startswith("The request is invalid: aspect_ratio must be one of")
    assert len(sim.requests) == 1


async def test_a_429_is_retried_after_the_retry_after_wait(sim):
    sim.faults.rate_limit(times=1, retry_after="1")
    async with _client(sim) as client:
        created = await client.create_task(_generate(), idempotency_key="step-1")
    first, second = _requests_to(sim, "POST", CREATE_PATH)
    assert 0.9 <= second.at - first.at < 3.0
    assert list(sim.tasks) == [created.task_id]


async def test_a_429_beyond_the_retry_budget_is_reported_with_its_wait(sim):
    sim.faults.rate_limit(times=1, retry_after="30")
    async with _client(sim, max_retry_s=5.0) as client:
        with pytest.raises(RateLimitedError) as caught:
            await client.get_balance()
    assert caught.value.retry_after_s == 30.0
    assert len(sim.requests) == 1


async def test_server_errors_are_retried_until_success(sim):
    sim.faults.server_error(status=503, times=2)
    async with _client(sim) as client:
        balance = await client.get_balance()
    assert balance.balance_cents == sim.balance_cents
    assert len(sim.requests) == 3


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_become_service_unavailable_when_attempts_run_out(sim, status):
    sim.faults.server_error(status=status, times=10)
    async with _client(sim, max_attempts=3) as client:
        with pytest.raises(ServiceUnavailableError) as caught:
            await client.get_task("00000000-0000-4000-8000-000000000000")
    assert caught.value.status == status
    assert len(sim.requests) == 3


async def test_a_create_retried_after_a_dropped_connection_makes_one_task(sim):
    sim.faults.drop_connection(times=2, route="create")
    async with _client(sim) as client:
        created = await client.create_task(_generate())  # no key given: one is minted
    attempts = _requests_to(sim, "POST", CREATE_PATH)
    keys = {r.headers["idempotency-key"] for r in attempts}
    assert len(attempts) == 3
    assert len(keys) == 1
    assert list(sim.tasks) == [created.task_id]
    assert created.replayed is True


async def test_a_create_retried_after_a_read_timeout_makes_one_task(sim):
    sim.faults.slow(seconds=1.0, times=1)
    async with _client(sim, timeout_s=0.3) as client:
        created = await client.create_task(_generate(), idempotency_key="step-slow")
    assert len(_requests_to(sim, "POST", CREATE_PATH)) == 2
    assert list(sim.tasks) == [created.task_id]


async def test_a_read_is_retried_after_a_dropped_connection(sim):
    sim.faults.drop_connection(times=1, route="get")
    async with _client(sim) as client:
        created = await client.create_task(_generate())
        task = await client.get_task(created.task_id)
    assert task.task_id == created.task_id


async def test_nothing_listening_is_a_network_error_after_bounded_retries(sim, caplog):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    caplog.set_level(logging.DEBUG, logger="studio.runapi")
    async with _client(sim, base_url=f"http://127.0.0.1:{port}", max_attempts=3) as client:
        with pytest.raises(NetworkError) as caught:
            await client.get_balance()
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    retries = [r for r in caplog.records if r.name == "studio.runapi.client"]
    assert len(retries) == 2
    assert "attempt 1 of 3" in retries[0].getMessage()


@pytest.mark.parametrize("suffix", ["/v1", "/v1/", "/", ""])
async def test_a_base_url_ending_in_v1_works(sim, suffix):
    async with _client(sim, base_url=sim.base_url + suffix) as client:
        balance = await client.get_balance()
    assert balance.balance_cents == 100_000
    assert sim.requests[0].path == "/api/v1/me/balance"


async def test_an_uploaded_image_is_edited(sim):
    data = _png()
    async with _client(sim) as client:
        uploaded = await client.upload_image(data, file_name="in.png")
        created = await client.create_task(
            _generate("make it night", source_image_url=uploaded.url, aspect_ratio="4:3")
        )
        done = await client.wait_for_task(created.task_id, model=PRO)
        result = await client.download_result(done.image_urls[0])
    assert (uploaded.size_bytes, uploaded.mime_type) == (len(data), "image/png")
    in_an_hour = datetime.now(UTC) + timedelta(hours=1)
    assert abs((uploaded.expires_at - in_an_hour).total_seconds()) < 60
    assert sim.tasks[created.task_id].source_bytes == data
    assert Image.open(io.BytesIO(result)).size[0] > 0


async def test_uploading_bytes_that_are_not_an_image_is_rejected(sim):
    async with _client(sim) as client:
        with pytest.raises(ImageRejectedError) as caught:
            await client.upload_image(b"%PDF-1.7 not an image", file_name="in.pdf")
    assert caught.value.status == 415


async def _completed_result_url(client: RunAPIClient) -> str:
    created = await client.create_task(_generate())
    done = await client.wait_for_task(created.task_id, model=PRO)
    return done.image_urls[0]


async def test_a_download_over_the_size_cap_is_refused(sim):
    async with _client(sim) as client:
        url = await _completed_result_url(client)
        with pytest.raises(UnexpectedResponseError, match="larger than"):
            await client.download_result(url, max_bytes=1000)


async def test_a_download_that_is_not_an_image_is_refused(sim):
    async with _client(sim) as client:
        with pytest.raises(UnexpectedResponseError, match="not a PNG, JPEG, WebP or GIF"):
            await client.download_result(f"{sim.base_url}/api/v1/price_schedules")


async def test_an_expired_result_is_not_found(sim):
    async with _client(sim) as client:
        url = await _completed_result_url(client)
        sim.faults.expire_results()
        with pytest.raises(NotFoundError):
            await client.download_result(url)


async def test_downloads_never_carry_the_key(sim):
    async with _client(sim) as client:
        url = await _completed_result_url(client)
        await client.download_result(url)
    (download,) = [r for r in sim.requests if r.path.startswith("/results/")]
    assert "authorization" not in download.headers


async def test_a_shared_http_client_stays_open(sim):
    async with httpx.AsyncClient() as shared:
        async with _client(sim, http_client=shared) as client:
            await client.get_balance()
        assert not shared.is_closed


async def test_the_key_is_never_logged_shown_or_repeated_in_a_full_run(sim, caplog):
    """A run with every kind of trouble: no log record, repr or error may contain the key."""
    caplog.set_level(logging.DEBUG)
    key = sim.api_key
    seen: list[str] = []
    sim.faults.rate_limit(times=1, retry_after="0")
    sim.faults.server_error(status=503, times=1)
    sim.faults.drop_connection(times=1, route="create")
    async with _client(sim) as client:
        seen.append(repr(client))
        uploaded = await client.upload_image(_png())
        task = await client.create_task(_generate(source_image_url=uploaded.url))
        done = await client.wait_for_task(task.task_id, model=PRO)
        await client.download_result(done.image_urls[0])
        seen += [repr(uploaded), repr(task), repr(done), repr(await client.get_balance())]
        sim.faults.server_error(status=503, times=15)  # three calls, five attempts each
        for call in (
            client.get_balance,
            lambda: client.get_task("nope"),
            lambda: client.create_task(_generate(), idempotency_key="k"),
        ):
            with pytest.raises(ServiceUnavailableError) as caught:
                await call()
            seen += [str(caught.value), repr(caught.value), str(caught.value.body)]
        sim.faults.reset()
        sim.faults.fail_tasks(message=f"moderated for {key}")  # a service that echoes the key
        failing = await client.create_task(_generate("fail"))
        with pytest.raises(TaskFailedError) as failed:
            await client.wait_for_task(failing.task_id, model=PRO)
        seen += [str(failed.value), repr(failed.value), str(failed.value.message)]
    async with _client(sim, api_key=key + "-wrong") as wrong:
        with pytest.raises(AuthenticationError) as refused:
            await wrong.get_balance()
        seen += [str(refused.value), repr(refused.value), str(refused.value.body), repr(wrong)]
    retries = [r for r in caplog.records if r.name == "studio.runapi.client"]
    assert len(retries) >= 5
    for record in caplog.records:
        seen += [record.getMessage(), repr(record.args)]
    assert all(key not in text for text in seen)
