"""An edit paid for before a crash still arrives: kill the engine's process mid-edit, restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from studio.history import StepState
from studio.simulator import LatencyProfile, Simulator
from tests.support.engines import make_engine

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def slow_sim():
    # Long enough that the kill lands while the task is still processing.
    sim = Simulator(api_key="sk-crash-test", latency=LatencyProfile(0.3, 2.0, 0.3, 2.0))
    sim.start()
    yield sim
    sim.stop()


def _run_until_ready(home: Path, sim: Simulator, state: str) -> tuple[str, str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.engine_proc",
            str(home),
            sim.base_url,
            sim.api_key,
            state,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY"), f"engine process said {line!r}"
        _, session_id, step_id = line.split()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    return session_id, step_id


@pytest.mark.parametrize("killed_when", ["running", "queued"])
async def test_an_edit_interrupted_by_sigkill_completes_after_restart(
    slow_sim, clean_env, killed_when
):
    if killed_when == "queued":
        # The create is in flight (held by the simulator) when the process dies.
        slow_sim.faults.slow(seconds=1.0, times=1)
    session_id, step_id = _run_until_ready(clean_env, slow_sim, killed_when)

    engine = make_engine(clean_env, slow_sim.base_url, slow_sim.api_key)
    try:
        resumed = await engine.resume_unfinished()
        assert [s.step_id for s in resumed] == [step_id]
        step = await engine.wait(step_id)
        assert step.state is StepState.COMPLETED, step.error
        session = await engine.load_session(session_id)
        assert session.path()[-1].step_id == step_id
        assert await engine.image_bytes(step.result)
    finally:
        await engine.aclose()
    # However the crash fell, the service created (and charged) exactly one task.
    assert len(slow_sim.tasks) == 1
    assert slow_sim.tasks[step.task_id].status == "completed"
