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
    """A photo-like test image: soft gradients, a few dozen coloured shapes with hard edges and
    a little sensor noise; the same bytes for the same arguments."""
    import numpy as np
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            90 + 80 * x / width,
            70 + 100 * y / height,
            160 - 60 * (x + y) / (width + height),
        ],
        axis=2,
    )
    im = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(40):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = (
            int(rng.integers(width // 30, width // 8)),
            int(rng.integers(height // 30, height // 8)),
        )
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.integers(0, 2):
            draw.ellipse((x0, y0, x0 + w, y0 + h), fill=colour)
        else:
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=colour)
    pixels = np.asarray(im).astype(np.int16) + rng.normal(0, 4, (height, width, 3)).astype(np.int16)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, fmt)
    return buffer.getvalue()
