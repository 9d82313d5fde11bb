"""Build a real engine (real store, real client) pointed at a running simulator."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from studio.engine import Engine
from studio.runapi import RunAPIClient
from studio.runapi.policy import poll_delays
from studio.store import Store

# The fast simulator finishes pro in ~0.45 s; polling at 5% of the real schedule keeps tests quick.
TEST_POLL_SCALE = 0.05


def make_client(base_url: str, api_key: str) -> RunAPIClient:
    return RunAPIClient(
        api_key=api_key,
        base_url=base_url,
        poll_schedule=lambda model: poll_delays(model, scale=TEST_POLL_SCALE),
        retry_base_s=0.05,
    )


def make_engine(home: Path, base_url: str, api_key: str, **kwargs: object) -> Engine:
    return Engine(
        Store.open(home),
        make_client(base_url, api_key),
        client_for_key=lambda key: make_client(base_url, key),
        **kwargs,  # type: ignore[arg-type]
    )


def make_image(
    width: int = 320,
    height: int = 240,
    colour: tuple[int, int, int] = (200, 60, 40),
    fmt: str = "PNG",
) -> bytes:
    """A small real image with some structure (a bar), encoded as `fmt`."""
    im = Image.new("RGB", (width, height), colour)
    im.paste((20, 120, 220), (0, 0, width // 3, height))
    buffer = io.BytesIO()
    im.save(buffer, fmt)
    return buffer.getvalue()


def make_photo(width: int = 800, height: int = 600, *, seed: int = 7, fmt: str = "PNG") -> bytes:
    """A photo-like test image (the bench's `scene`): soft gradients, a few dozen coloured
    shapes with hard edges and a little sensor noise; the same bytes for the same arguments."""
    from studio.bench.rig import scene

    return scene(width, height, seed=seed, fmt=fmt)
