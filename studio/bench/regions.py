"""Keep the rest: what five chained edits leave of the original, and a 24 MP masked blend.

The chain runs through a real engine (real store, real client) against the simulator, whose
edits drift as the model does (zoomed, shifted, colour-cast, changed in one patch). "Outside the
changed objects" is the original minus what the simulator says each edit changed
(`changed_boxes`: the patch and its labels). The same five edits without Keep the rest come back
at about one megapixel; they are scaled back to the original's size to be compared.

The blend row runs in a child process, so its peak memory (VmHWM) belongs to the blend alone:
a 24-megapixel JPEG source, a full-size mask (a PNG of 6000 x 4000), the model's one-megapixel
output, to the PNG step image.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
import time
from pathlib import Path
from typing import Any

from studio.bench.rig import PEAK_PRELUDE, median_child

PROMPTS = ("add a red hat", "make the car blue", "add a dog", "remove the lamp", "add snow")
CHAIN_SIZE = (1600, 1200)
BLEND_SIZE = (6000, 4000)
_CHILD = (
    PEAK_PRELUDE
    + r"""
import json, sys, time
from studio.regions import blend_files

folder = Path(sys.argv[1])
source, output, mask = (folder / n for n in ("source.jpg", "output.png", "mask.png"))
source, output, mask = source.read_bytes(), output.read_bytes(), mask.read_bytes()
blend_files(source[:0] or output, output, image_format="png")  # warm up: imports, OpenCV
reset_peak()
base = kb("VmRSS")
started = time.perf_counter()
blended = blend_files(source, output, image_format="png", mask=mask)
done = time.perf_counter()
print(json.dumps({
    "seconds": done - started, "base_mb": base / 1024, "peak_mb": kb("VmHWM") / 1024,
    "size": [blended.width, blended.height], "png_mb": len(blended.data) / 1e6,
}))
"""
)


def run_regions(sim: Any, *, say: Any) -> dict[str, Any]:
    """Both rows: the chain with and without Keep the rest, and the 24 MP masked blend."""
    say("Keep the rest: five chained edits, with and without")
    chain = asyncio.run(_chains(sim))
    say("Keep the rest: a masked edit of a 24-megapixel photo")
    return {"chain": chain, "blend": _blend(sim)}


async def _chains(sim: Any) -> dict[str, Any]:
    import numpy as np
    from PIL import Image

    from studio.bench.rig import scene
    from studio.engine import Engine
    from studio.params import EditParams, nearest_aspect_ratio
    from studio.runapi import RunAPIClient
    from studio.simulator.render import changed_boxes
    from studio.store import Store

    width, height = CHAIN_SIZE
    original_bytes = scene(width, height)
    original = np.asarray(Image.open(io.BytesIO(original_bytes)).convert("RGB"))
    touched = np.zeros((height, width), bool)
    for prompt in PROMPTS:
        for x, y, w, h in changed_boxes((width, height), prompt, nearest_aspect_ratio(*CHAIN_SIZE)):
            touched[y : y + h, x : x + w] = True
    rows = {}
    with tempfile.TemporaryDirectory(prefix="kontext-bench-") as home:
        client = RunAPIClient(api_key=sim.api_key, base_url=sim.base_url, retry_base_s=0.05)
        engine = Engine(Store.open(Path(home)), client)
        try:
            for keep in (True, False):
                session = await engine.start_session(await engine.read_image(original_bytes))
                started, result = time.perf_counter(), None
                for prompt in PROMPTS:
                    params = EditParams(prompt=prompt, keep_rest=keep)
                    step = await engine.edit(session.session_id, params)
                    if (result := step.result) is None:
                        raise RuntimeError(f"a chained edit failed: {step.error}")
                assert result is not None
                data = await engine.image_bytes(result)
                final = Image.open(io.BytesIO(data)).convert("RGB")
                size = final.size
                if final.size != (width, height):  # the model's own size: scaled back to compare
                    final = final.resize((width, height), Image.Resampling.BICUBIC)
                pixels = np.asarray(final)
                same = (pixels == original).all(axis=2)[~touched]
                gap = np.abs(pixels.astype(np.int16) - original.astype(np.int16)).max(axis=2)
                rows["keep_rest" if keep else "plain"] = {
                    "identical_share": float(same.mean()),
                    "mean_abs_diff": float(gap[~touched].mean()),
                    "size": list(size),
                    "seconds": time.perf_counter() - started,
                }
        finally:
            await engine.aclose()
    return {
        "size": list(CHAIN_SIZE),
        "untouched_share": float((~touched).mean()),
        **rows,
    }


def _blend(sim: Any) -> dict[str, Any]:
    from PIL import Image, ImageDraw

    from studio.bench.rig import photo
    from studio.params import nearest_aspect_ratio
    from studio.simulator.render import render_result

    width, height = BLEND_SIZE
    with tempfile.TemporaryDirectory(prefix="kontext-bench-") as tmp:
        folder = Path(tmp)
        source = photo(width, height, fmt="JPEG", quality=90)
        (folder / "source.jpg").write_bytes(source)
        ratio = nearest_aspect_ratio(width, height)
        output = render_result(
            source=source,
            prompt="add a red hat",
            aspect_ratio=ratio,
            output_format="png",
            model="flux-kontext-pro",
            pixels=sim.result_pixels,
        )
        (folder / "output.png").write_bytes(output)
        mask = Image.new("L", BLEND_SIZE, 0)
        ImageDraw.Draw(mask).ellipse((1500, 800, 4200, 3000), fill=255)
        mask.save(folder / "mask.png")
        median = median_child(_CHILD, str(folder), rounds=3, key="seconds")
    return {"megapixels": width * height / 1e6, **median}


def format_regions(regions: dict[str, Any]) -> list[str]:
    chain, blend = regions["chain"], regions["blend"]
    keep, plain = chain["keep_rest"], chain["plain"]
    w, h = chain["size"]
    return [
        f"Keep the rest: five chained edits of a {w}x{h} photo; pixels outside the changed "
        f"objects ({chain['untouched_share']:.0%} of the photo) identical to the original: "
        f"{keep['identical_share']:.2%} with Keep the rest ({keep['size'][0]}x{keep['size'][1]}, "
        f"mean difference {keep['mean_abs_diff']:.2f}/255), {plain['identical_share']:.2%} "
        f"without ({plain['size'][0]}x{plain['size'][1]} scaled back, mean difference "
        f"{plain['mean_abs_diff']:.1f}/255).",
        "",
        f"Masked edit of a {blend['megapixels']:g} MP photo (full-size mask): blend "
        f"{blend['seconds']:.2f} s (decode, register, colour-match, feather, PNG), peak memory "
        f"+{blend['peak_over_base_mb']:.0f} MB ({blend['peak_mb']:.0f} MB in all); the step's "
        f"PNG is {blend['png_mb']:.0f} MB.",
        "",
    ]
