"""Benchmark (prints numbers, asserts nothing): one visitor's small edit while many visitors'
large sources are being converted for upload.

    PYTHONPATH=<tree> .venv/bin/python tests/bench/conversion_turns.py BASE_URL KEY [--large 40]

An engine of the tree on `PYTHONPATH`, with a hosted studio's limits (so its image work runs in
child processes), against a simulator already running at `BASE_URL` with `KEY` (`kontext-studio
simulate --latency fast`). Each of `--large` visitors starts a session from an 8-megapixel JPEG
of its own; then one visitor's 64 x 64 edit runs alone, and again half a second after all the
large edits were sent together. Run it with two trees side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from studio.limits import Limits, LimitSettings
from studio.params import EditParams
from studio.visitor import Visitor
from tests.support.engines import make_engine, make_image


async def _main(base_url: str, key: str, large: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="conversion-turns-"))
    caps = Limits(LimitSettings(visitor_budget_cents=1000, total_budget_cents=100_000))
    engine = make_engine(home, base_url, key, limits=caps)
    pixels = np.random.default_rng(5).integers(0, 256, (2448, 3264, 3), dtype=np.uint8)
    sessions = []
    for n in range(large):
        buffer = io.BytesIO()
        pixels[0, 0, 0] = n  # a photo of its own: no upload is shared
        Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
        who = Visitor(f"browser:large-{n}")
        session = await engine.start_session_from_bytes(buffer.getvalue(), visitor=who)
        sessions.append((session.session_id, who))
    small = Visitor("browser:small")

    async def run(session_id: str, prompt: str, who: Visitor) -> tuple[str, float]:
        started = time.monotonic()
        step = await engine.submit_edit(session_id, EditParams(prompt=prompt), visitor=who)
        step = await engine.wait(step.step_id)
        return str(step.state), time.monotonic() - started

    try:
        alone = await engine.start_session_from_bytes(make_image(64, 64), visitor=small)
        _, alone_s = await run(alone.session_id, "alone", small)
        started = time.monotonic()
        runs = [
            asyncio.create_task(run(sid, f"large {n}", who))
            for n, (sid, who) in enumerate(sessions)
        ]
        await asyncio.sleep(0.5)
        mine = await engine.start_session_from_bytes(make_image(64, 63), visitor=small)
        state, under_s = await run(mine.session_id, "small", small)
        done = await asyncio.gather(*runs)
        all_s = time.monotonic() - started
        completed = sum(s == "completed" for s, _ in done)
        print(
            f"64 x 64 edit alone {alone_s:.2f} s; beside {large} visitors' 8-megapixel edits "
            f"{under_s:.2f} s ({state}); the {large} took {all_s:.1f} s, {completed} completed"
        )
    finally:
        await engine.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url")
    parser.add_argument("key")
    parser.add_argument("--large", type=int, default=40)
    args = parser.parse_args()
    asyncio.run(_main(args.base_url, args.key, args.large))


if __name__ == "__main__":
    main()
