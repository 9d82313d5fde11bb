"""The engine alone in a child process, driven line by line: the fault drill's small target.

Reads `edit N MODEL` lines on stdin; prints `done N completed|failed` as each edit ends. At
start it resumes what an earlier, killed child left unfinished, as the studio does.
Run: python -m studio.bench.engine_child HOME BASE_URL API_KEY POLL_SCALE
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from studio.bench.rig import photo
from studio.config import Secret, Settings
from studio.engine import Engine
from studio.params import EditParams

PROMPT = "drill edit {n}"


async def main(home: str, base_url: str, api_key: str, poll_scale: str) -> None:
    settings = Settings(
        api_key=Secret(api_key),
        base_url=base_url,
        home=Path(home),
        poll_scale=float(poll_scale),
    )
    engine = Engine.from_settings(settings)
    await engine.resume_unfinished()
    source = await engine.read_image(photo(320, 240))
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()
    running: set[asyncio.Task[None]] = set()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, "")

    async def edit(n: str, model: str) -> None:
        prompt = "after the drill" if n == "after" else PROMPT.format(n=n)
        try:
            session = await engine.start_session(source, name="drill")
            step = await engine.submit_edit(
                session.session_id,
                EditParams(prompt=prompt, model="max" if model == "max" else "pro"),
            )
            state = (await engine.wait(step.step_id)).state.value
        except Exception as exc:  # reported to the caller as an error, like the studio does
            state = f"error {type(exc).__name__}"
        print(f"done {n} {state}", flush=True)

    loop.run_in_executor(None, read_stdin)
    print("ready", flush=True)
    while line := await lines.get():
        command, n, model = ([*line.split(), "", "", ""])[:3]
        if command == "edit":
            task = asyncio.create_task(edit(n, model))
            running.add(task)
            task.add_done_callback(running.discard)
    await asyncio.gather(*running)
    await engine.aclose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
