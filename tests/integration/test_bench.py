"""`kontext-studio bench` runs: each section once, tiny. Numbers are printed, never asserted."""

from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image

from studio.bench import format_report
from studio.bench.load import run_load
from studio.bench.parties import Party
from studio.bench.poll import run_poll
from studio.bench.rig import machine
from studio.runapi import RunAPIClient, TaskRequest
from studio.simulator import LatencyProfile


def test_the_poll_rows_run_from_a_fresh_directory_beside_the_sdk(sim):
    sim.latency = LatencyProfile(0.01, 0.01, 0.01, 0.01)
    poll = asyncio.run(
        run_poll(sim, scale=0.01, rounds=1, warmup=0, say=lambda _: None, cases=[("max", 2.0)])
    )
    labels = {(row["task"], row["client"]) for row in poll["rows"]}
    assert labels == {
        (f"max 2 s, {part}", client) for part in ("first 3", "then") for client in ("studio", "SDK")
    }
    text = format_report({"machine": machine(), "scale": 0.01, "seconds": 1.0, "poll": poll})
    assert "| max 2 s, first 3 | studio |" in text


@pytest.mark.slow
@pytest.mark.timeout(300)  # a studio process starts (Gradio's import), slow on a busy machine
def test_the_load_row_runs_the_studio_the_simulator_and_the_client_apart():
    load = run_load(sizes=(2,), pages=0, task_s=0.2, say=lambda _: None, warmup=0)
    [row] = load["rows"]
    assert (row["edits"], row["failed"]) == (2, 0)
    assert row["studio_cpu_per_edit_s"] > 0
    [bare] = load["bare_rows"]  # Gradio's own floor, measured by the same client beside it
    assert (bare["edits"], bare["failed"]) == (2, 0)
    text = format_report({"machine": machine(), "scale": 1, "seconds": 1.0, "load": load})
    assert "| 2 | 0 |" in text
    assert "| 2 (bare Gradio) | 0 |" in text


def test_the_bench_simulator_draws_once_and_still_answers_distinct_images():
    sim = Party("sim", "0.05")
    base_url = sim.start()

    async def two_edits() -> list[bytes]:
        async with RunAPIClient(api_key="sk-bench", base_url=base_url) as client:
            out = []
            for n in range(2):
                request = TaskRequest(model="flux-kontext-pro", prompt=f"p{n}", aspect_ratio="1:1")
                task = await client.create_task(request)
                done = await client.wait_for_task(task.task_id, model=request.model)
                out.append(await client.download_result(done.image_urls[0]))
            return out

    try:
        images = asyncio.run(two_edits())
    finally:
        sim.stop()
    assert images[0] != images[1]
    for data in images:
        Image.open(io.BytesIO(data)).load()  # each a whole, valid PNG
