"""A studio engine in its own process, for the crash test: start an edit, say so, then hang.

Usage: python -m tests.support.engine_proc HOME BASE_URL API_KEY {queued|running}
Prints `READY <session_id> <step_id>` once the step is stored in the given state.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from studio.history import StepState
from studio.params import EditParams
from tests.support.engines import make_engine, make_image


async def main(home: str, base_url: str, api_key: str, wait_for: str) -> None:
    engine = make_engine(Path(home), base_url, api_key)
    source = await engine.read_image(make_image())
    session = await engine.start_session(source, name="crash test")
    step = await engine.submit_edit(session.session_id, EditParams(prompt="make it blue"))
    target = StepState(wait_for)
    while True:
        stored = (await engine.load_session(session.session_id)).steps[step.step_id]
        if stored.state is target:
            print(f"READY {session.session_id} {step.step_id}", flush=True)
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(3600)  # the test kills us here, mid-edit


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
