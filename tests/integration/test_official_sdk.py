"""The official Python SDK (`runapi-flux-kontext` 0.3.0, PyPI) against the simulator.

Evidence that the simulator speaks the protocol the real service's own client expects.
The SDK's `run()` polls every 2 s, so each `run()` here takes about two seconds.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image
from runapi.flux_kontext import (
    AuthenticationError,
    FluxKontextClient,
    InsufficientCreditsError,
    NotFoundError,
    TaskFailedError,
    ValidationError,
)


@pytest.fixture
def sdk(sim) -> Iterator[FluxKontextClient]:
    # max_retries=0: the SDK's own GET retries would hide which answer the simulator gave.
    client = FluxKontextClient(api_key=sim.api_key, base_url=sim.base_url, max_retries=0)
    yield client
    client._http.close()


def test_sdk_creates_and_reads_a_task(sim, sdk):
    task = sdk.text_to_image.create(
        model="flux-kontext-pro", prompt="a lighthouse", aspect_ratio=""
    )
    assert task.status == "pending"
    assert task.response_headers["x-runapi-task-id"] == task.id
    again = sdk.text_to_image.get(task.id)
    assert again.id == task.id
    assert again.status in ("pending", "processing", "completed")
    # The SDK drops blank fields before sending (contract: "Create body").
    assert sim.requests[0].json == {"model": "flux-kontext-pro", "prompt": "a lighthouse"}


def test_sdk_run_waits_for_an_edit_to_complete(sim, sdk):
    out = io.BytesIO()
    Image.radial_gradient("L").convert("RGB").save(out, format="PNG")
    source = out.getvalue()
    upload = sdk.files.create(source=base64.b64encode(source).decode(), file_name="in.png")
    assert upload.mime_type == "image/png"
    result = sdk.text_to_image.run(
        model="flux-kontext-max",
        prompt="make it black and white",
        source_image_url=upload.url,
        aspect_ratio="1:1",
        output_format="png",
    )
    assert result.status == "completed"
    assert sim.tasks[result.id].source_bytes == source
    with Image.open(io.BytesIO(httpx.get(result.images[0].url).content)) as image:
        assert (image.format, image.width) == ("PNG", image.height)


def test_sdk_run_raises_task_failed_when_the_task_fails(sim, sdk):
    sim.faults.fail_tasks(message="Content moderated")
    with pytest.raises(TaskFailedError, match="Content moderated"):
        sdk.text_to_image.run(model="flux-kontext-pro", prompt="a lighthouse")


def test_sdk_reads_balance_and_prices(sim, sdk):
    assert sdk.account.balance().balance_cents == sim.balance_cents
    schedules = sdk.pricing.list_schedules(
        service="flux_kontext", action="text_to_image", model="flux-kontext-pro"
    )
    assert [s.unit_price_cents for s in schedules.price_schedules] == [5]


@pytest.mark.parametrize(
    ("balance_cents", "call", "error"),
    [
        pytest.param(
            None,
            lambda sim, sdk: FluxKontextClient(
                api_key="sk-wrong", base_url=sim.base_url
            ).account.balance(),
            AuthenticationError,
            id="401",
        ),
        pytest.param(
            None,
            lambda sim, sdk: sdk.text_to_image.create(model="flux-kontext-pro", prompt=" "),
            ValidationError,
            id="422",
        ),
        pytest.param(
            None,
            lambda sim, sdk: sdk.text_to_image.get("00000000-0000-4000-8000-000000000000"),
            NotFoundError,
            id="404",
        ),
        pytest.param(
            0,
            lambda sim, sdk: sdk.text_to_image.create(model="flux-kontext-pro", prompt="a fox"),
            InsufficientCreditsError,
            id="402",
        ),
    ],
)
def test_sdk_maps_simulator_errors_to_its_own_classes(sim, sdk, balance_cents, call, error):
    if balance_cents is not None:
        sim.balance_cents = balance_cents
    with pytest.raises(error):
        call(sim, sdk)


@pytest.mark.slow
def test_the_simulate_command_answers_the_official_sdk(tmp_path):
    import os
    import subprocess
    import sys

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "studio.cli",
            "simulate",
            "--port",
            "0",
            "--latency",
            "fast",
            "--api-key",
            "sk-cli-sim",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "KONTEXT_STUDIO_HOME": str(tmp_path)},
    )
    try:
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        client = FluxKontextClient(api_key="sk-cli-sim", base_url=base_url)
        try:
            done = client.text_to_image.run(
                model="flux-kontext-pro", prompt="a lighthouse at dusk", aspect_ratio="16:9"
            )
            assert done.status == "completed"
            image = Image.open(io.BytesIO(httpx.get(done.images[0].url).content))
            assert abs(image.width / image.height - 16 / 9) < 0.03
        finally:
            client._http.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
