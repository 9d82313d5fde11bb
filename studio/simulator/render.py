"""The simulator's stand-in for Flux: cheap, deterministic Pillow pictures, plainly marked as fake.

Imports Pillow and the stdlib only. Same inputs give the same bytes (for one Pillow version).
"""

from __future__ import annotations

import hashlib
import io
import math
import textwrap
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

MARK = "SIMULATOR - not Flux"
# Flux Kontext outputs about one megapixel (contract: "Upstream"); sides are multiples of 16.
TARGET_PIXELS = 1_000_000
SIDE_MULTIPLE = 16
# What the simulator takes as a source or upload: the formats Flux and every browser read.
MIME_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}

Effect = Callable[[Image.Image], Image.Image]


def output_size(aspect_ratio: str, pixels: int = TARGET_PIXELS) -> tuple[int, int]:
    """Width and height near `pixels` (one megapixel) for a ratio such as `"16:9"`."""
    w, h = (int(part) for part in aspect_ratio.split(":"))
    width = math.sqrt(pixels * w / h)
    height = width * h / w
    return (
        max(SIDE_MULTIPLE, round(width / SIDE_MULTIPLE) * SIDE_MULTIPLE),
        max(SIDE_MULTIPLE, round(height / SIDE_MULTIPLE) * SIDE_MULTIPLE),
    )


def is_image(data: bytes) -> str | None:
    """The MIME type of a PNG, JPEG, WebP or GIF, read from its signature; else None."""
    try:
        with Image.open(io.BytesIO(data), formats=list(MIME_TYPES)) as image:
            return MIME_TYPES.get(image.format or "")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def render_result(
    *,
    source: bytes | None,
    prompt: str,
    aspect_ratio: str,
    output_format: str,
    model: str,
    pixels: int = TARGET_PIXELS,
) -> bytes:
    """Draw the simulated result: the source edited (or a generated picture), captioned and marked.

    Args:
        source: The source image's bytes for an edit, or None to generate.
        prompt: The prompt; its words pick the edit and it is drawn as a caption.
        aspect_ratio: One of the contract's ratios, such as `"16:9"`.
        output_format: `"png"` or `"jpeg"`.
        model: The wire model name, shown beside the mark.
        pixels: About how many pixels (one megapixel, as Flux; drills ask for fewer).

    Returns:
        The encoded image.
    """
    size = output_size(aspect_ratio, pixels)
    digest = hashlib.sha256(prompt.encode()).digest()
    image = _edit(source, prompt, digest, size) if source is not None else _generate(digest, size)
    _draw_labels(image, prompt, model)
    if source is not None:
        # Drawn before the drift, so the labels move with the picture, as a real edit's
        # additions would: every part of an edit's output sits where the drift puts it.
        image = _drifted(image, digest)
    out = io.BytesIO()
    if output_format == "png":
        # Level 1: a few tens of ms for one megapixel; size does not matter here.
        image.save(out, format="PNG", compress_level=1)
    else:
        image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def _edit(source: bytes, prompt: str, digest: bytes, size: tuple[int, int]) -> Image.Image:
    """The source fitted to the output's ratio and size, edited inside one patch (as a real edit
    changes one thing); `render_result` then drifts it as the real model drifts: a little zoomed
    and shifted, and with a colour cast over the whole picture (`drift`, `cast`)."""
    with Image.open(io.BytesIO(source)) as opened:
        opened.draft("RGB", size)  # JPEG only: decode at a reduced scale, much faster
        image = ImageOps.exif_transpose(opened).convert("RGB")
    image = ImageOps.fit(image, size, method=Image.Resampling.BILINEAR)
    words = prompt.lower()
    matched = [effect for keys, effect in _EFFECTS if any(key in words for key in keys)]
    edited = image
    for effect in matched:
        edited = effect(edited)
    # A tint from the prompt's hash, so every different prompt gives a visibly different image.
    tint = Image.new("RGB", size, _colour(digest, 0))
    edited = Image.blend(edited, tint, 0.12 if matched else 0.3)
    patch = Image.new("L", size, 0)
    ImageDraw.Draw(patch).ellipse(patch_box(digest, size), fill=255)
    return Image.composite(edited, image, patch)


def patch_box(digest: bytes, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The ellipse (left, top, right, bottom, in the output's pixels before drift) an edit
    changes: somewhere in the middle of the picture, a fifth to a third of its short side."""
    width, height = size
    short = min(width, height)
    rx = short * (10 + digest[3] % 7) // 60
    ry = short * (10 + digest[4] % 7) // 60
    cx = width // 4 + digest[5] * (width // 2) // 255
    cy = height // 4 + digest[6] * (height // 2) // 255
    return (cx - rx, cy - ry, cx + rx, cy + ry)


def drift(digest: bytes, size: tuple[int, int]) -> tuple[float, float, float]:
    """How far the output drifts: a zoom of 2 to 4 per cent about its centre and a shift (dx,
    dy, in output pixels) small enough that the zoomed picture still fills the frame."""
    zoom = 1.02 + digest[7] % 21 / 1000
    width, height = size
    room = (zoom - 1) * 0.4
    dx = (digest[8] / 255 - 0.5) * 2 * room * width
    dy = (digest[9] / 255 - 0.5) * 2 * room * height
    return zoom, dx, dy


def cast(digest: bytes) -> tuple[tuple[float, float], ...]:
    """A colour cast: per channel a gain of 0.94 to 1.06 and an offset of -6 to +6."""
    return tuple(
        (0.94 + digest[10 + c] % 13 / 100, float(digest[13 + c] % 13 - 6)) for c in range(3)
    )


def _drifted(image: Image.Image, digest: bytes) -> Image.Image:
    width, height = image.size
    zoom, dx, dy = drift(digest, image.size)
    cx, cy = width / 2, height / 2
    # Output pixel (x, y) shows the picture at ((x - cx - dx) / zoom + cx, ...).
    data = (1 / zoom, 0.0, cx - (cx + dx) / zoom, 0.0, 1 / zoom, cy - (cy + dy) / zoom)
    moved = image.transform(image.size, Image.Transform.AFFINE, data, Image.Resampling.BICUBIC)
    bands = [
        band.point(lambda v, g=gain, o=offset: min(255, max(0, round(v * g + o))))
        for band, (gain, offset) in zip(moved.split(), cast(digest), strict=True)
    ]
    return Image.merge("RGB", bands)


def changed_boxes(
    source_size: tuple[int, int], prompt: str, aspect_ratio: str, pixels: int = TARGET_PIXELS
) -> list[tuple[int, int, int, int]]:
    """What an edit of a `source_size` image changes, as boxes (x, y, w, h) in the source's
    pixels: the edited patch and the two labels (the mark and the caption). For measuring what
    a studio kept; the rest of the output is the source, drifted."""
    size = output_size(aspect_ratio, pixels)
    digest = hashlib.sha256(prompt.encode()).digest()
    width, height = size
    sw, sh = source_size
    crop_w = min(sw, sh * width / height)
    crop_h = crop_w * height / width
    k = width / crop_w
    ox, oy = (sw - crop_w) / 2, (sh - crop_h) / 2

    def to_source(x: float, y: float) -> tuple[float, float]:
        return ox + x / k, oy + y / k

    # Resampling spreads an edge over about two output pixels.
    margin = math.ceil(2 / k) + 1
    boxes = []
    for left, top, right, bottom in [patch_box(digest, size), *_label_boxes(size, prompt)]:
        x0, y0 = to_source(left, top)
        x1, y1 = to_source(right, bottom)
        x0, y0 = max(0, math.floor(x0) - margin), max(0, math.floor(y0) - margin)
        x1, y1 = min(sw, math.ceil(x1) + margin), min(sh, math.ceil(y1) + margin)
        boxes.append((x0, y0, x1 - x0, y1 - y0))
    return boxes


def _night(image: Image.Image) -> Image.Image:
    dark = image.point(lambda v: v * 45 // 100)
    return Image.blend(dark, Image.new("RGB", image.size, (10, 20, 90)), 0.3)


def _sepia(image: Image.Image) -> Image.Image:
    return ImageOps.colorize(ImageOps.grayscale(image), (40, 26, 13), (255, 240, 192))


_EFFECTS: tuple[tuple[tuple[str, ...], Effect], ...] = (
    (
        ("black and white", "grayscale", "greyscale", "monochrome"),
        lambda im: ImageOps.grayscale(im).convert("RGB"),
    ),
    (("sepia", "vintage", "old photo"), _sepia),
    (("mirror", "flip"), ImageOps.mirror),
    (("upside down",), ImageOps.flip),
    (("blur", "soft focus", "dreamy"), lambda im: im.filter(ImageFilter.BoxBlur(6))),
    (("night", "dark"), _night),
    (("invert", "negative"), lambda im: ImageOps.invert(im)),
    (("bright", "sunny", "daylight"), lambda im: im.point(lambda v: min(255, v * 13 // 10 + 20))),
    (("sketch", "outline", "drawing"), lambda im: im.filter(ImageFilter.CONTOUR)),
)


def _generate(digest: bytes, size: tuple[int, int]) -> Image.Image:
    width, height = size
    top, bottom = _colour(digest, 0), _colour(digest, 3)
    # A vertical gradient: a 1-pixel-wide strip stretched, far cheaper than drawing each row.
    strip = Image.new("RGB", (1, 256))
    strip.putdata(
        [
            tuple(t + (b - t) * y // 255 for t, b in zip(top, bottom, strict=True))
            for y in range(256)
        ]
    )
    image = strip.resize(size, Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    for i in range(5):
        b = digest[6 + i * 5 : 11 + i * 5]
        x, y = b[0] * width // 255, b[1] * height // 255
        r = (b[2] % 20 + 6) * min(width, height) // 100
        box = (x - r, y - r, x + r, y + r)
        fill = _colour(digest, 20 + i)
        if b[3] % 2:
            draw.ellipse(box, fill=fill, outline=(255, 255, 255), width=4)
        else:
            draw.rectangle(box, fill=fill, outline=(0, 0, 0), width=4)
    return image


def _draw_labels(image: Image.Image, prompt: str, model: str) -> None:
    width, height = image.size
    unit = max(12, min(width, height) // 40)
    draw = ImageDraw.Draw(image)
    mark_font = ImageFont.load_default(size=unit * 2)
    text_font = ImageFont.load_default(size=unit)
    # The mark: large, top-left, yellow on red, so nobody mistakes this for a real result.
    label = f"{MARK} ({model})"
    left, top, right, bottom = draw.textbbox((unit, unit), label, font=mark_font)
    draw.rectangle(
        (left - unit // 2, top - unit // 2, right + unit // 2, bottom + unit // 2), "red"
    )
    draw.text((unit, unit), label, fill="yellow", font=mark_font)
    # The caption: the prompt, at most two lines, on a dark band at the bottom.
    lines = _caption_lines(width, unit, prompt)
    band = unit * (len(lines) * 3 // 2 + 1)
    draw.rectangle((0, height - band, width, height), fill=(0, 0, 0))
    for i, line in enumerate(lines):
        draw.text((unit, height - band + unit // 2 + i * unit * 3 // 2), line, "white", text_font)


def _caption_lines(width: int, unit: int, prompt: str) -> list[str]:
    chars = max(10, int(width / (unit * 0.5)))
    return textwrap.wrap(" ".join(prompt.split()), chars, max_lines=2, placeholder=" ...")


def _label_boxes(size: tuple[int, int], prompt: str) -> list[tuple[int, int, int, int]]:
    """Where `_draw_labels` draws (left, top, right, bottom): the mark at most as wide as the
    picture, and the caption band."""
    width, height = size
    unit = max(12, min(width, height) // 40)
    mark_font = ImageFont.load_default(size=unit * 2)
    label = f"{MARK} (flux-kontext-max)"
    left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox(
        (unit, unit), label, font=mark_font
    )
    band = unit * (len(_caption_lines(width, unit, prompt)) * 3 // 2 + 1)
    mark = (
        round(left) - unit // 2,
        round(top) - unit // 2,
        round(right) + unit // 2 + 1,
        round(bottom) + unit // 2 + 1,
    )
    return [mark, (0, height - band, width, height)]


def _colour(digest: bytes, offset: int) -> tuple[int, int, int]:
    r, g, b = (digest[(offset + i) % len(digest)] for i in range(3))
    return (r, g, b)
