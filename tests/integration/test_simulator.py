"""The RunAPI simulator over real HTTP on loopback, driven with plain httpx."""

from __future__ import annotations

import base64
import io
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from PIL import Image

from studio.simulator import Simulator

TASKS = "/api/v1/flux_kontext/text_to_image"
RATIOS = {"21:9": 21 / 9, "16:9": 16 / 9, "4:3": 4 / 3, "1:1": 1.0, "3:4": 3 / 4, "9:16": 9 / 16}


def _png(width: int = 64, height: int = 48, colour: str = "teal") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


def _photo(fmt: str = "PNG", size: tuple[int, int] = (640, 480)) -> bytes:
    """A busy picture (gradients and noise), so that edits visibly differ."""
    bands = (
        Image.linear_gradient("L").resize(size),
        Image.radial_gradient("L").resize(size),
        Image.effect_noise(size, 60),
    )
    out = io.BytesIO()
    Image.merge("RGB", bands).save(out, format=fmt)
    return out.getvalue()


@pytest.fixture
def client(sim) -> Iterator[httpx.Client]:
    # Most tests only need tasks to finish; the few about timing set "fast" themselves.
    sim.latency = "quick"
    headers = {"Authorization": f"Bearer {sim.api_key}"}
    with httpx.Client(base_url=sim.base_url, headers=headers, timeout=10.0) as http:
        yield http


@pytest.fixture(scope="module")
def other_host() -> Iterator[Simulator]:
    """A second simulator on another port: a 'foreign' host whose files are fetched over HTTP."""
    other = Simulator(api_key="sk-other")
    other.start()
    yield other
    other.stop()


def _create(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    body = {"model": "flux-kontext-pro", "prompt": "add a red hat", **fields}
    response = client.post(TASKS, json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _wait(client: httpx.Client, task_id: str, timeout_s: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        task = dict(client.get(f"{TASKS}/{task_id}").json())
        if task["status"] in ("completed", "failed"):
            return task
        time.sleep(0.03)
    raise AssertionError(f"task {task_id} did not finish in {timeout_s} s")


def _upload(client: httpx.Client, data: bytes, name: str = "in.png") -> dict[str, Any]:
    source = {"type": "base64", "data": base64.b64encode(data).decode()}
    response = client.post("/api/v1/files", json={"source": source, "file_name": name})
    assert response.status_code == 200, response.text
    return dict(response.json())


# Tasks: states, answers, billing


def test_task_moves_pending_processing_completed_when_polled(sim, client):
    sim.latency = "fast"
    created = _create(client)
    assert created["status"] == "pending"
    assert str(uuid.UUID(created["id"])) == created["id"]
    seen = [created["status"]]
    task = created
    while task["status"] not in ("completed", "failed"):
        time.sleep(0.02)
        task = client.get(f"{TASKS}/{created['id']}").json()
        if task["status"] != seen[-1]:
            seen.append(task["status"])
    assert seen == ["pending", "processing", "completed"]
    assert task["images"][0]["url"].startswith(sim.base_url + "/results/")
    assert task["billing"]["settlement"] == {
        "charged_amount_cents": 5,
        "amount_micro_cents": 5_000_000,
    }
    record = sim.tasks[created["id"]]
    assert record.created_at < record.started_at < record.finished_at


def test_max_is_slower_than_pro_when_created_together(sim, client):
    sim.latency = "fast"
    pro = _create(client, model="flux-kontext-pro")
    max_ = _create(client, model="flux-kontext-max")
    assert _wait(client, pro["id"])["status"] == "completed"
    assert client.get(f"{TASKS}/{max_['id']}").json()["status"] != "completed"
    assert sim.tasks[max_["id"]].finished_at is None


def test_tasks_overlap_when_created_back_to_back(sim, client):
    first, second = _create(client), _create(client, prompt="make it blue")
    _wait(client, first["id"]), _wait(client, second["id"])
    a, b = sim.tasks[first["id"]], sim.tasks[second["id"]]
    assert a.created_at < b.created_at < a.finished_at < b.finished_at


def test_responses_carry_request_and_task_ids_when_a_task_is_created(client):
    response = client.post(
        TASKS,
        json={"model": "flux-kontext-pro", "prompt": "a fox"},
        headers={"X-Client-Request-Id": "client-123"},
    )
    assert response.headers["x-runapi-task-id"] == response.json()["id"]
    assert response.headers["x-request-id"].startswith("req_")
    assert response.headers["x-client-request-id"] == "client-123"


def test_read_answers_404_when_the_task_is_unknown(client):
    response = client.get(f"{TASKS}/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Task not found."


def test_balance_goes_down_by_the_price_and_is_refunded_when_a_task_fails(sim, client):
    start = client.get("/api/v1/me/balance").json()["balance_cents"]
    _create(client)
    max_task = _create(client, model="flux-kontext-max")
    assert client.get("/api/v1/me/balance").json()["balance_cents"] == start - 15
    sim.faults.fail_tasks(message="Content moderated", times=1)
    failed = _wait(client, _create(client)["id"])
    assert failed["status"] == "failed"
    assert failed["error"] == "Content moderated"
    assert failed["billing"]["refund"]["amount_cents"] == 5
    assert failed["billing"]["settlement"] is None
    _wait(client, max_task["id"])
    balance = client.get("/api/v1/me/balance").json()
    assert balance["balance_cents"] == start - 15
    assert balance["spent_cents_total"] == 15
    assert sim.balance_cents == start - 15


def test_create_answers_402_when_the_balance_runs_out(sim, client):
    sim.balance_cents = 7
    _create(client)
    for model in ("flux-kontext-pro", "flux-kontext-max"):
        response = client.post(TASKS, json={"model": model, "prompt": "a fox"})
        assert response.status_code == 402
        assert "Insufficient credits" in response.json()["error"]["message"]
    assert sim.balance_cents == 2
    assert len(sim.tasks) == 1


# Validation


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        pytest.param({"prompt": None}, "prompt", "is required", id="missing-prompt"),
        pytest.param({"prompt": "   "}, "prompt", "can't be blank", id="blank-prompt"),
        pytest.param({"model": "flux-dev"}, "model", "must be one of", id="bad-model"),
        pytest.param({"model": None}, "model", "is required", id="missing-model"),
        pytest.param({"aspect_ratio": "2:1"}, "aspect_ratio", "must be one of", id="bad-ratio"),
        pytest.param({"output_format": "webp"}, "output_format", "jpeg, png", id="bad-format"),
        pytest.param(
            {"safety_tolerance": 7}, "safety_tolerance", "0 to 6 when generating", id="safety-7-gen"
        ),
        pytest.param(
            {"safety_tolerance": 3, "source_image_url": "http://127.0.0.1:9/a.png"},
            "safety_tolerance",
            "0 to 2 when editing",
            id="safety-3-edit",
        ),
        pytest.param(
            {"safety_tolerance": True}, "safety_tolerance", "integer", id="safety-boolean"
        ),
        pytest.param(
            {"source_image_url": "data:image/png;base64,AAAA"},
            "source_image_url",
            "http(s) URL",
            id="data-uri-source",
        ),
        pytest.param(
            {"enable_translation": "yes"}, "enable_translation", "true or false", id="bad-flag"
        ),
    ],
)
def test_create_answers_422_naming_the_field_when_it_is_invalid(sim, client, body, field, message):
    sent = {
        k: v
        for k, v in {"model": "flux-kontext-pro", "prompt": "a", **body}.items()
        if v is not None
    }
    response = client.post(TASKS, json=sent)
    assert response.status_code == 422
    answer = response.json()
    assert answer["error"] == "Validation failed"
    assert list(answer["errors"]) == [field]
    assert message in answer["errors"][field][0]
    assert sim.tasks == {}


def test_safety_tolerance_6_is_accepted_when_generating(client):
    assert _create(client, safety_tolerance=6)["status"] == "pending"


def test_create_answers_400_when_the_body_is_not_a_json_object(client):
    response = client.post(TASKS, content=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert response.status_code == 400


# Auth


@pytest.mark.parametrize(
    "header",
    [pytest.param("authorization", id="bearer"), pytest.param("x-api-key", id="x-api-key")],
)
def test_key_is_accepted_when_sent_either_way(sim, header):
    value = f"Bearer {sim.api_key}" if header == "authorization" else sim.api_key
    response = httpx.get(f"{sim.base_url}/api/v1/me/balance", headers={header: value})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-key"),
        pytest.param({"Authorization": "Bearer sk-wrong"}, id="wrong-bearer"),
        pytest.param({"X-API-Key": "sk-wrong"}, id="wrong-x-api-key"),
        pytest.param({"Authorization": "Basic c2s6c2s="}, id="basic-scheme"),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("POST", TASKS, id="create"),
        pytest.param("GET", f"{TASKS}/{uuid.uuid4()}", id="get"),
        pytest.param("POST", "/api/v1/files", id="files"),
        pytest.param("GET", "/api/v1/me/balance", id="balance"),
        pytest.param("POST", "/v1/text_to_image", id="marketing"),
    ],
)
def test_requests_answer_401_when_the_key_is_missing_or_wrong(sim, headers, method, path):
    response = httpx.request(method, sim.base_url + path, headers=headers, json={})
    assert response.status_code == 401
    assert sim.api_key not in response.text
    assert sim.tasks == {}


def test_price_schedules_are_public_and_filtered_by_model(sim):
    response = httpx.get(
        f"{sim.base_url}/api/v1/price_schedules", params={"model": "flux-kontext-max"}
    )
    schedules = response.json()["price_schedules"]
    assert [(s["model"], s["unit_price_cents"]) for s in schedules] == [("flux-kontext-max", 10)]
    everything = httpx.get(f"{sim.base_url}/api/v1/price_schedules").json()["price_schedules"]
    assert {s["model"]: s["unit_price_cents"] for s in everything} == {
        "flux-kontext-pro": 5,
        "flux-kontext-max": 10,
    }


# Idempotency


def test_same_key_and_body_replay_the_task_without_charging_again(sim, client):
    body = {"model": "flux-kontext-pro", "prompt": "a fox"}
    headers = {"Idempotency-Key": "step-1"}
    first = client.post(TASKS, json=body, headers=headers).json()
    again = client.post(TASKS, json=dict(reversed(body.items())), headers=headers)
    assert again.status_code == 200
    assert again.json()["id"] == first["id"]
    assert again.json()["task_replayed"] is True
    assert "task_replayed" not in first
    assert len(sim.tasks) == 1
    assert sim.balance_cents == 100_000 - 5


def test_same_key_with_another_body_answers_409(sim, client):
    headers = {"Idempotency-Key": "step-2"}
    client.post(TASKS, json={"model": "flux-kontext-pro", "prompt": "a fox"}, headers=headers)
    response = client.post(
        TASKS, json={"model": "flux-kontext-pro", "prompt": "a cat"}, headers=headers
    )
    assert response.status_code == 409
    assert len(sim.tasks) == 1


# Results


def test_results_match_the_requested_ratio_and_format_at_about_one_megapixel(sim, client):
    source = _upload(client, _photo())["url"]
    cases = [
        {"aspect_ratio": ratio, "output_format": fmt, **extra}
        for ratio in RATIOS
        for fmt, extra in (("png", {}), ("jpeg", {"source_image_url": source}))
    ]
    created = [(_create(client, **case)["id"], case) for case in cases]
    for task_id, case in created:
        ratio, fmt = case["aspect_ratio"], case["output_format"]
        task = _wait(client, task_id)
        assert task["status"] == "completed", task
        response = httpx.get(task["images"][0]["url"])
        assert response.headers["content-type"] == f"image/{fmt}"
        image = Image.open(io.BytesIO(response.content))
        assert image.format == fmt.upper()
        assert image.width / image.height == pytest.approx(RATIOS[ratio], rel=0.02), ratio
        assert 0.9e6 <= image.width * image.height <= 1.1e6


def test_result_bytes_repeat_when_the_inputs_repeat(client):
    source = _upload(client, _photo())["url"]
    edits = [
        _create(client, source_image_url=source, prompt=p, output_format="png")
        for p in ("make it night", "make it night", "black and white")
    ]
    images = [httpx.get(_wait(client, t["id"])["images"][0]["url"]).content for t in edits]
    assert images[0] == images[1]
    assert images[0] != images[2]


def test_edit_uses_the_source_image_when_one_is_given(sim, client):
    data = _photo("JPEG")
    edit = _create(client, source_image_url=_upload(client, data, "rocket.jpg")["url"])
    generated = _create(client)
    assert sim.tasks[edit["id"]].source_bytes == data
    assert sim.tasks[generated["id"]].source_bytes is None
    edited = httpx.get(_wait(client, edit["id"])["images"][0]["url"]).content
    drawn = httpx.get(_wait(client, generated["id"])["images"][0]["url"]).content
    assert edited != drawn


def test_source_is_fetched_over_http_when_it_lives_on_another_host(sim, client, other_host):
    data = _png(colour="orange")
    with httpx.Client(headers={"X-API-Key": other_host.api_key}) as other:
        response = other.post(
            f"{other_host.base_url}/api/v1/files",
            json={"source": {"type": "base64", "data": base64.b64encode(data).decode()}},
        )
    task = _create(client, source_image_url=response.json()["url"])
    assert sim.tasks[task["id"]].source_bytes == data
    assert _wait(client, task["id"])["status"] == "completed"


def test_task_fails_and_is_refunded_when_the_source_cannot_be_fetched(sim, client):
    url = f"http://127.0.0.1:{_free_port()}/a.png"  # nothing listens there
    task = _wait(client, _create(client, source_image_url=url)["id"])
    assert task["status"] == "failed"
    assert "Could not fetch the image" in task["error"]
    assert sim.balance_cents == 100_000


def test_marketing_alias_answers_task_id_when_posted_with_image_url(sim, client):
    source = _upload(client, _png())["url"]
    response = client.post(
        "/v1/text_to_image",
        json={"model": "flux-kontext-pro", "prompt": "a hat", "image_url": source},
    )
    assert response.status_code == 200
    answer = response.json()
    assert set(answer) >= {"task_id", "status", "model"}
    assert "id" not in answer
    assert sim.tasks[answer["task_id"]].source_bytes == _png()
    assert _wait(client, answer["task_id"])["status"] == "completed"


# Uploads


def test_upload_by_url_stores_the_image_when_the_link_works(client, other_host):
    data = _png(colour="purple")
    with httpx.Client(headers={"X-API-Key": other_host.api_key}) as other:
        link = other.post(
            f"{other_host.base_url}/api/v1/files",
            json={"source": {"type": "base64", "data": base64.b64encode(data).decode()}},
        ).json()["url"]
    answer = client.post("/api/v1/files", json={"source": {"type": "url", "url": link}}).json()
    assert answer["size_bytes"] == len(data)
    assert answer["mime_type"] == "image/png"
    assert httpx.get(answer["url"]).content == data


def test_upload_answers_the_file_facts_when_sent_base64(client):
    data = _photo("JPEG")
    answer = _upload(client, data, "../../rocket.jpg")
    assert answer["file_name"] == "rocket.jpg"
    assert answer["mime_type"] == "image/jpeg"
    assert answer["size_bytes"] == len(data)
    created = datetime.fromisoformat(answer["created_at"])
    assert datetime.fromisoformat(answer["expires_at"]) - created == timedelta(hours=1)
    fetched = httpx.get(answer["url"])
    assert fetched.content == data
    assert fetched.headers["content-type"] == "image/jpeg"


def test_upload_answers_413_when_the_file_is_over_20_mb(client):
    data = _png() + bytes(20 * 1024 * 1024)
    source = {"type": "base64", "data": base64.b64encode(data).decode()}
    assert client.post("/api/v1/files", json={"source": source}).status_code == 413


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"hello, not an image", id="text"),
        pytest.param(b"%PDF-1.4\n" + bytes(100), id="pdf"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + bytes(10), id="broken-png"),
    ],
)
def test_upload_answers_415_when_the_bytes_are_not_an_image(client, data):
    source = {"type": "base64", "data": base64.b64encode(data).decode()}
    assert client.post("/api/v1/files", json={"source": source}).status_code == 415


def test_upload_answers_422_when_the_source_is_missing_or_not_base64(client):
    missing = client.post("/api/v1/files", json={"file_name": "a.png"})
    assert missing.json()["errors"] == {"source": ["is required"]}
    garbage = client.post("/api/v1/files", json={"source": {"type": "base64", "data": "*!*"}})
    assert garbage.status_code == 422


def test_uploaded_file_answers_404_and_fails_edits_when_it_has_expired(sim, client):
    sim.file_ttl_s = 1.0  # (long enough for the first read on a busy machine)
    url = _upload(client, _png())["url"]
    assert httpx.get(url).status_code == 200
    time.sleep(1.05)
    assert httpx.get(url).status_code == 404
    task = _wait(client, _create(client, source_image_url=url)["id"])
    assert task["status"] == "failed"
    assert "HTTP 404" in task["error"]


# Faults


@pytest.mark.parametrize(
    "retry_after",
    [
        pytest.param("2", id="seconds"),
        pytest.param(
            format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True), id="http-date"
        ),
    ],
)
def test_rate_limit_answers_429_with_retry_after_then_recovers(sim, client, retry_after):
    sim.faults.rate_limit(times=2, retry_after=retry_after)
    for _ in range(2):
        response = client.get("/api/v1/me/balance")
        assert response.status_code == 429
        assert response.headers["retry-after"] == retry_after
        assert response.headers["x-request-id"].startswith("req_")
    assert client.get("/api/v1/me/balance").status_code == 200


def test_server_error_burst_answers_5xx_without_creating_then_recovers(sim, client):
    sim.faults.server_error(status=503, times=2)
    body = {"model": "flux-kontext-pro", "prompt": "a fox"}
    assert [client.post(TASKS, json=body).status_code for _ in range(3)] == [503, 503, 200]
    assert len(sim.tasks) == 1


def test_dropped_create_still_creates_the_task_when_the_connection_drops(sim, client):
    sim.faults.drop_connection(times=1, route="create")
    headers = {"Idempotency-Key": "step-drop"}
    body = {"model": "flux-kontext-pro", "prompt": "a fox"}
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(TASKS, json=body, headers=headers)
    assert len(sim.tasks) == 1
    retry = client.post(TASKS, json=body, headers=headers)
    assert retry.json()["task_replayed"] is True
    assert list(sim.tasks) == [retry.json()["id"]]


def test_drop_connection_hits_only_its_route_when_one_is_named(sim, client):
    task = _create(client)
    sim.faults.drop_connection(times=1, route="get")
    assert client.get("/api/v1/me/balance").status_code == 200
    _create(client)
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(f"{TASKS}/{task['id']}")
    assert client.get(f"{TASKS}/{task['id']}").status_code == 200


def test_slow_delays_the_answer_when_set(sim, client):
    sim.faults.slow(seconds=0.3, times=1)
    started = time.monotonic()
    assert client.get("/api/v1/me/balance").status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    client.get("/api/v1/me/balance")
    assert time.monotonic() - started < 0.3


def test_slow_on_a_route_delays_only_that_route_s_next_answer(sim, client):
    sim.faults.slow(seconds=0.3, times=1, route="create")
    started = time.monotonic()
    client.get("/api/v1/me/balance")
    assert time.monotonic() - started < 0.3  # another route: not held
    started = time.monotonic()
    _create(client)
    assert time.monotonic() - started >= 0.3


def test_result_urls_answer_404_when_results_have_expired(sim, client):
    task = _wait(client, _create(client)["id"])
    url = task["images"][0]["url"]
    assert httpx.get(url).status_code == 200
    sim.faults.expire_results()
    assert httpx.get(url).status_code == 404


def test_edits_fail_and_are_refunded_when_sources_are_unreachable(sim, client):
    source = _upload(client, _png())["url"]
    sim.faults.unreachable_sources()
    task = _wait(client, _create(client, source_image_url=source)["id"])
    assert task["status"] == "failed"
    assert "connection refused" in task["error"]
    assert sim.balance_cents == 100_000


def test_faults_spare_result_images_when_set_for_api_routes(sim, client):
    task = _wait(client, _create(client)["id"])
    sim.faults.rate_limit(times=1)
    assert httpx.get(task["images"][0]["url"]).status_code == 200
    assert client.get("/api/v1/me/balance").status_code == 429


def test_reset_clears_faults_tasks_and_balance(sim, client):
    _create(client)
    sim.faults.server_error(times=5)
    sim.reset()
    assert sim.tasks == {}
    assert sim.requests == []
    assert sim.balance_cents == 100_000
    assert client.get("/api/v1/me/balance").status_code == 200


# Records, persistence, start and stop


def test_requests_are_recorded_with_lower_case_headers_and_parsed_json(sim, client):
    started = time.monotonic()
    client.post(
        TASKS,
        json={"model": "flux-kontext-pro", "prompt": "a fox"},
        headers={"Idempotency-Key": "k1"},
    )
    client.get("/api/v1/me/balance")
    create, balance = sim.requests
    assert (create.method, create.path) == ("POST", TASKS)
    assert create.headers["idempotency-key"] == "k1"
    assert create.headers["authorization"] == f"Bearer {sim.api_key}"
    assert create.json == {"model": "flux-kontext-pro", "prompt": "a fox"}
    assert (balance.method, balance.path, balance.json) == ("GET", "/api/v1/me/balance", None)
    assert started <= create.at <= balance.at


def test_tasks_files_and_balance_survive_a_restart_when_state_dir_is_set(tmp_path):
    first = Simulator(api_key="sk-a", state_dir=tmp_path)
    first.start()
    headers = {"X-API-Key": "sk-a"}
    with httpx.Client(base_url=first.base_url, headers=headers) as http:
        url = _upload(http, _png(colour="navy"))["url"]
        task_id = _create(http, source_image_url=url, output_format="png")["id"]
    first.stop()
    second = Simulator(api_key="sk-a", state_dir=tmp_path)
    second.start()
    try:
        with httpx.Client(base_url=second.base_url, headers=headers) as http:
            task = _wait(http, task_id)
            assert task["status"] == "completed"
            assert second.tasks[task_id].source_bytes == _png(colour="navy")
            assert http.get(task["images"][0]["url"]).headers["content-type"] == "image/png"
            assert http.get("/api/v1/me/balance").json()["balance_cents"] == 100_000 - 5
            assert len(second.state.files) == 1
    finally:
        second.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_fixed_port_is_served_and_freed_when_stopped():
    port = _free_port()
    for _ in range(2):
        sim = Simulator(api_key="sk-port")
        sim.start(port=port)
        assert sim.base_url == f"http://127.0.0.1:{port}"
        response = httpx.get(f"{sim.base_url}/api/v1/me/balance", headers={"X-API-Key": "sk-port"})
        assert response.status_code == 200
        sim.stop()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{sim.base_url}/api/v1/me/balance")


def test_serve_answers_until_interrupted_then_exits_cleanly():
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api/v1/me/balance"
    code = f"from studio.simulator import serve; serve('127.0.0.1', {port}, api_key='sk-cli')"
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(url, headers={"X-API-Key": "sk-cli"})
                break
            except httpx.ConnectError:
                assert process.poll() is None
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert response.status_code == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)


def test_chaos_faults_a_share_of_calls_at_random_and_counts_creates_per_key(sim, client):
    sim.faults.chaos(0.5, seed=7, slow_s=0.05)
    body = {"model": "flux-kontext-pro", "prompt": "a lighthouse"}
    statuses = []
    for n in range(40):
        try:
            response = client.post(TASKS, json=body, headers={"Idempotency-Key": f"k{n % 4}"})
            statuses.append(response.status_code)
        except httpx.RemoteProtocolError:
            statuses.append("dropped")
    injected = sim.faults.injected
    assert {"429", "5xx", "drop", "slow"} <= set(injected)
    assert statuses.count(429) == injected["429"]
    assert statuses.count(503) == injected["5xx"]
    assert statuses.count("dropped") == injected["drop"]
    # Four keys, forty requests: replays create nothing, so one task per key.
    assert sim.tasks_by_key() == {f"k{n}": 1 for n in range(4)}
    assert sum(sim.creates_by_key.values()) == 40 - injected["429"] - injected["5xx"]
    sim.reset()
    assert sim.faults.take_chaos(("429",)) is None
