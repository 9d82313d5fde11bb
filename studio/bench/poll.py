"""Time to result, detection delay and status reads: the engine beside the official SDK's `run()`.

Both run against the same in-process simulator, told fixed task durations, one edit at a time,
alternating. Imports the engine, the simulator and (lazily) the official SDK.
"""

from __future__ import annotations

import asyncio
import base64
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from studio.bench.rig import photo, summary
from studio.config import Secret, Settings
from studio.engine import Engine
from studio.history import StepState
from studio.params import MODEL_IDS, EditParams, Model
from studio.simulator import LatencyProfile, Simulator

# The official SDK's run() reads every 2 s (runapi-flux-kontext 0.3.0, PollingOptions).
SDK_INTERVAL_S = 2.0
SDK_MISSING = (
    "The official SDK is not installed; install it with "
    "`pip install runapi-flux-kontext` (or `pip install -e '.[test]'`)."
)
SOURCE = photo(640, 480)
# Fraction of a task spent pending (the rest processing), as the simulator's demo profile does.
PENDING_SHARE = 0.2


@dataclass(frozen=True, slots=True)
class Sample:
    """One edit: seconds from the call to the image in hand, how late the finish was seen, reads."""

    client: str
    model: str
    task_s: float
    wall_s: float
    delay_s: float
    reads: int

    @property
    def ratio(self) -> float:
        return self.wall_s / self.task_s


def profile(pro_s: float, max_s: float) -> LatencyProfile:
    """Fixed task durations per model."""
    return LatencyProfile(
        PENDING_SHARE * pro_s,
        (1 - PENDING_SHARE) * pro_s,
        PENDING_SHARE * max_s,
        (1 - PENDING_SHARE) * max_s,
    )


def observe(sim: Simulator, client: str, task_id: str, wall_s: float) -> Sample:
    """The task's duration, its reads and when an answer first said it was done (simulator)."""
    task = sim.tasks[task_id]
    finished = task.created_at + task.pending_s + task.processing_s
    reads = [r for r in sim.requests if r.method == "GET" and r.path.endswith(f"/{task_id}")]
    return Sample(
        client=client,
        model=task.model.removeprefix("flux-kontext-"),
        task_s=task.pending_s + task.processing_s,
        wall_s=wall_s,
        delay_s=(task.end_answered_at or finished) - finished,
        reads=len(reads),
    )


class EngineSide:
    """A fresh engine (its own data directory, so it learns from nothing) on the simulator."""

    def __init__(self, sim: Simulator, home: Path, scale: float) -> None:
        settings = Settings(
            api_key=Secret(sim.api_key), base_url=sim.base_url, home=home, poll_scale=scale
        )
        self.sim = sim
        self.engine = Engine.from_settings(settings)
        self.session_id = ""
        self.origin_id = ""

    async def open(self) -> None:
        source = await self.engine.read_image(SOURCE)
        session = await self.engine.start_session(source, name="bench")
        self.session_id, self.origin_id = session.session_id, session.current_step_id

    async def edit(self, model: Model) -> Sample:
        started = time.monotonic()
        step = await self.engine.submit_edit(
            self.session_id,
            EditParams(prompt="make it night", model=model),
            parent_step_id=self.origin_id,
        )
        final = await self.engine.wait(step.step_id)
        wall_s = time.monotonic() - started
        if final.state is not StepState.COMPLETED or final.task_id is None:
            raise RuntimeError(f"a bench edit failed: {final.error}")
        return observe(self.sim, "studio", final.task_id, wall_s)

    async def compare(self) -> float:
        """Seconds until both results of a pro/max compare are stored."""
        started = time.monotonic()
        pro, max_ = await self.engine.compare(
            self.session_id, EditParams(prompt="make it night"), parent_step_id=self.origin_id
        )
        await asyncio.gather(self.engine.wait(pro.step_id), self.engine.wait(max_.step_id))
        return time.monotonic() - started

    async def aclose(self) -> None:
        await self.engine.aclose()


class SdkSide:
    """The official SDK: one upload (reused, as the engine reuses its own), then `run()` and a
    download per edit. Its 2 s interval is scaled with the tasks, so the comparison is fair."""

    def __init__(self, sim: Simulator, scale: float) -> None:
        try:
            from runapi.flux_kontext import FluxKontextClient
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise RuntimeError(SDK_MISSING) from exc
        self.sim = sim
        self.scale = scale
        self.sdk = FluxKontextClient(api_key=sim.api_key, base_url=sim.base_url)
        upload = self.sdk.files.create(
            source=base64.b64encode(SOURCE).decode(), file_name="bench.png"
        )
        self.source_url = upload.url

    def edit(self, model: Model) -> Sample:
        from runapi.core.options import PollingOptions
        from runapi.core.polling import poll_until_complete

        started = time.monotonic()
        params: dict[str, Any] = {
            "model": MODEL_IDS[model],
            "prompt": "make it night",
            "source_image_url": self.source_url,
            "aspect_ratio": "4:3",
            "output_format": "png",
        }
        resource = self.sdk.text_to_image
        if self.scale == 1.0:
            result = resource.run(**params)
        else:  # run() is create + poll_until_complete with the default options; scale those
            task = resource.create(**params)
            options = PollingOptions(poll_interval=SDK_INTERVAL_S * self.scale)  # type: ignore[arg-type]
            result = poll_until_complete(lambda: resource.get(task.id), options)
        httpx.get(result.images[0].url, timeout=30).raise_for_status()
        return observe(self.sim, "SDK", result.id, time.monotonic() - started)

    def close(self) -> None:
        self.sdk._http.close()


def rows(samples: list[Sample], label: str) -> list[dict[str, Any]]:
    """One summary row per client."""
    out = []
    for client in ("studio", "SDK"):
        mine = [s for s in samples if s.client == client]
        if not mine:
            continue
        out.append(
            {
                "task": label,
                "client": client,
                "n": len(mine),
                "result_over_task": summary([s.ratio for s in mine]),
                "overhead_s": summary([s.wall_s - s.task_s for s in mine]),
                "delay_s": summary([s.delay_s for s in mine]),
                "reads": summary([float(s.reads) for s in mine]),
            }
        )
    return out


# Task durations of the poll rows (seconds, before --scale): the 2, 4, 7 and 15 s.
POLL_TASKS_S = (2.0, 4.0, 7.0, 15.0)
POLL_CASES: tuple[tuple[Model, float], ...] = tuple(
    (model, seconds) for model in ("pro", "max") for seconds in POLL_TASKS_S
)
# Edits of a model before its schedule leaves the prior (`policy.LEARN_MIN_SAMPLES`).
FIRST_EDITS = 3


async def run_poll(
    sim: Simulator,
    *,
    scale: float,
    rounds: int,
    warmup: int,
    say: Callable[[str], None],
    cases: Sequence[tuple[Model, float]] = POLL_CASES,
) -> dict[str, Any]:
    """Side by side with the SDK, from a fresh data directory for each model and duration: the
    first three edits (the prior), then `rounds` more (learned); then pro turning 2x slower.
    `warmup` edits, if any, run before the learned rounds and are not counted."""
    sdk = SdkSide(sim, scale)
    results: list[dict[str, Any]] = []
    samples: list[Sample] = []
    shift: list[Sample] = []
    try:
        with tempfile.TemporaryDirectory(prefix="kontext-bench-") as tmp:
            for model, seconds in cases:
                label = f"{model} {seconds:g} s"
                task_s = seconds * scale
                sim.latency = profile(task_s, task_s)
                side = EngineSide(sim, Path(tmp) / label.replace(" ", "-"), scale)
                await side.open()
                say(f"  {label}: {FIRST_EDITS} first edits, then {rounds} rounds")
                first = await _alternate(side, sdk, model, FIRST_EDITS)
                for _ in range(warmup):
                    await side.edit(model)
                learned = await _alternate(side, sdk, model, rounds)
                if (model, seconds) == ("pro", 4.0):
                    say(f"  {label}: every task turns twice as slow, {rounds + 3} rounds")
                    sim.latency = profile(2 * task_s, 2 * task_s)
                    shift += await _alternate(side, sdk, model, rounds + 3, sdk_first=False)
                await side.aclose()
                samples += first + learned
                results += rows(first, f"{label}, first {FIRST_EDITS}")
                results += rows(learned, f"{label}, then")
    finally:
        sdk.close()
    return {
        "rows": results,
        "shift": rows(shift, "pro 4 s -> 8 s"),
        "shift_sequence": [asdict(s) for s in shift if s.client == "studio"],
        "samples": [asdict(s) for s in samples],
    }


async def _alternate(
    side: EngineSide, sdk: SdkSide, model: Model, rounds: int, *, sdk_first: bool | None = None
) -> list[Sample]:
    """`rounds` edits by each, in turn; who goes first alternates unless `sdk_first` is set."""
    out: list[Sample] = []
    for n in range(rounds):
        if sdk_first if sdk_first is not None else n % 2 == 1:
            out.append(await asyncio.to_thread(sdk.edit, model))
            out.append(await side.edit(model))
        else:
            out.append(await side.edit(model))
            out.append(await asyncio.to_thread(sdk.edit, model))
    return out


async def run_compare(
    sim: Simulator, *, scale: float, rounds: int, warmup: int, say: Callable[[str], None]
) -> dict[str, Any]:
    """Pro and max side by side from one step, over max alone: the pair should cost ~1.1x."""
    pro_s, max_s = 3.0 * scale, 10.0 * scale
    sim.latency = profile(pro_s, max_s)
    with tempfile.TemporaryDirectory(prefix="kontext-bench-") as tmp:
        side = EngineSide(sim, Path(tmp), scale)
        await side.open()
        say(f"  compare: {warmup} warm-up pairs, then {rounds} rounds")
        for _ in range(warmup):
            await side.compare()
        pairs, alone = [], []
        for _ in range(rounds):
            pairs.append(await side.compare())
            alone.append((await side.edit("max")).wall_s)
        await side.aclose()
    return {
        "pro_task_s": pro_s,
        "max_task_s": max_s,
        "pair_s": summary(pairs),
        "max_alone_s": summary(alone),
        "ratio": statistics.median(pairs) / statistics.median(alone),
        "pair_over_max_task": statistics.median(pairs) / max_s,
    }
