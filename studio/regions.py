"""Keeping the rest: the step's image is its source outside a region, the model's output inside.

Pure functions on numpy arrays (OpenCV does the numeric work; Pillow, through `studio.images`,
only reads and writes files). The model answers at about one megapixel, a little zoomed and
shifted against its input, with its colours moved; so before blending, its output is

1. registered to the source: an affine map (scale and shift, and whatever rotation or shear
   OpenCV's ECC finds), estimated on a small copy, outside the region, starting from where the
   output would sit if the service only fitted the source to the output's ratio;
2. colour-matched: one monotone look-up table per channel, learned outside the region;
3. blended over the source at the source's own size, with a feather of at most `FEATHER_PX`
   that lies inside the region, so every pixel outside it is the source's, bit for bit.

With no region, `find_changes` finds the one the edit changed (after 1 and 2), cleaned up with
morphology. Memory: the source, the result and one mask at full size (uint8), plus the warped
output and the feather's distances over the region's bounding box only; the registration works
on about a megapixel whatever the source's size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from studio.images import (
    HEAVY_PIXELS,
    ImageError,
    colour_profile,
    decode_full,
    decode_grey_and_alpha,
    describe,
    encode_image,
    give_back_memory,
    to_profile,
)
from studio.params import RegionError

# OpenCV's stubs type every array loosely; these name what each holds (uint8 images and masks,
# float64 matrices).
U8 = npt.NDArray[Any]
F64 = npt.NDArray[Any]
Box = tuple[int, int, int, int]

# The feather, in the source's pixels: the blend goes from source to output across this band,
# all of it inside the region.
FEATHER_PX = 16
# A drawn mask is scaled to its image: one larger than a 24-megapixel photo is never needed.
MAX_MASK_PIXELS = 25_000_000
# Registration and change-finding work on a copy of about this many pixels (the model's own
# output is about one megapixel, so nothing finer is there to align to).
WORK_PIXELS = 1_000_000
ECC_PIXELS = 360_000
# How different (0-255, after alignment, colour matching and a light blur) a pixel must be to
# count as changed, and the smallest change kept (a share of the image).
CHANGE_LEVEL = 28
MIN_CHANGE_SHARE = 0.0005
# Holes inside a change smaller than this share of the image are part of it.
HOLE_SHARE = 0.02
# Rows blended at a time at full size (bounds the int32 temporaries).
BAND_ROWS = 512


@dataclass(frozen=True, slots=True)
class Blend:
    """The step's image (the source's size and channels), and the region it was kept to there
    (uint8, 255 where the output may show; for an "auto" region, the one found)."""

    image: U8
    region: U8


# -- masks and boxes ------------------------------------------------------------------------------


def read_mask(data: bytes) -> U8:
    """A drawn mask as uint8 0/255 at its own size: white, or opaque where it has transparency,
    is where the edit may change the image.

    Raises:
        RegionError: the bytes are not an image, or nothing is marked.
    """
    try:
        size = describe(data)  # the header alone: a mask too large is refused undecoded
        if size.width * size.height > MAX_MASK_PIXELS:
            raise RegionError(
                f"The mask has over {MAX_MASK_PIXELS // 1_000_000} megapixels; draw it at the "
                "image's size or smaller (it is scaled to the image)."
            )
        grey, alpha = decode_grey_and_alpha(data)
    except ImageError as exc:
        raise RegionError(f"The mask is not an image the studio can read: {exc}") from None
    values = np.asarray(alpha if alpha is not None else grey, dtype=np.uint8)
    mask = np.where(values >= 128, np.uint8(255), np.uint8(0)).astype(np.uint8)
    if values.size >= HEAVY_PIXELS:
        del grey, alpha, values
        give_back_memory()  # the large copies made on the way
    if not mask.any():
        raise RegionError(
            "The mask is empty: paint white (or opaque) where the edit may change the image."
        )
    return mask


def mask_png(mask: U8) -> bytes:
    """A 0/255 mask as a small greyscale PNG (what the store keeps)."""
    return encode_image(Image.fromarray(mask), "png", compress_level=9)


def fit_mask(mask: U8, width: int, height: int) -> U8:
    """A mask drawn at another size, scaled to `width` x `height` (0/255)."""
    if mask.shape[:2] == (height, width):
        return mask
    shrinking = mask.shape[0] * mask.shape[1] > width * height
    scaled = cv2.resize(
        mask, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    )
    out: U8 = np.where(scaled >= 128, np.uint8(255), np.uint8(0)).astype(np.uint8)
    if not out.any():  # a mask of a few dots, shrunk away: keep where it was densest
        out[np.unravel_index(int(np.argmax(scaled)), scaled.shape)] = 255
    return out


def fit_box(box: Box, width: int, height: int, *, drawn_on: tuple[int, int] | None = None) -> Box:
    """`box` (x, y, w, h) in the pixels of an image `drawn_on` (default: this one) as a box
    inside this `width` x `height` image, clipped to it.

    Raises:
        RegionError: the box lies outside the image.
    """
    x, y, w, h = box
    if drawn_on is not None and drawn_on != (width, height):
        sx, sy = width / drawn_on[0], height / drawn_on[1]
        x, y = math.floor(x * sx), math.floor(y * sy)
        w, h = max(1, math.ceil(box[2] * sx)), max(1, math.ceil(box[3] * sy))
    left, top = max(0, x), max(0, y)
    right, bottom = min(width, x + w), min(height, y + h)
    if w <= 0 or h <= 0 or right <= left or bottom <= top:
        raise RegionError(
            f"The box {box[0]},{box[1]},{box[2]},{box[3]} lies outside the image, which is "
            f"{width} x {height} pixels; give x,y,w,h inside it."
        )
    return (left, top, right - left, bottom - top)


def box_mask(box: Box, width: int, height: int) -> U8:
    x, y, w, h = box
    mask = np.zeros((height, width), np.uint8)
    mask[y : y + h, x : x + w] = 255
    return mask


# -- registration and colour ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Alignment:
    """Where the output sits on the source: `matrix` maps the work copy's pixels (the source
    scaled by `scale`) to the output's; `lut` matches the output's colours to the source's."""

    matrix: F64
    scale: float
    lut: U8

    def full_matrix(self, x0: int = 0, y0: int = 0) -> F64:
        """The map from the source's own pixels (offset by x0, y0) to the output's."""
        s = self.scale
        to_work = np.array([[s, 0.0, s * x0], [0.0, s, s * y0], [0.0, 0.0, 1.0]])
        out: F64 = (np.vstack([self.matrix, [0.0, 0.0, 1.0]]) @ to_work)[:2]
        return out


def work_scale(source_shape: tuple[int, ...], pixels: int = WORK_PIXELS) -> float:
    height, width = source_shape[:2]
    return min(1.0, math.sqrt(pixels / (width * height)))


def shrink(image: U8, scale: float) -> U8:
    if scale >= 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    out: U8 = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return out


def fitted_matrix(work_size: tuple[int, int], output_size: tuple[int, int]) -> F64:
    """Where the output would sit if the service fitted the source to the output's ratio
    (cropping the middle) and scaled it: the map from work pixels to output pixels."""
    ww, wh = work_size
    ow, oh = output_size
    crop_w = min(ww, wh * ow / oh)
    crop_h = crop_w * oh / ow
    k = ow / crop_w
    ox, oy = (ww - crop_w) / 2, (wh - crop_h) / 2
    # Pixel centres: x_out + 0.5 = k * (x_work + 0.5 - ox)
    return np.array([[k, 0.0, k * (0.5 - ox) - 0.5], [0.0, k, k * (0.5 - oy) - 0.5]])


def register(work: U8, output: U8, keep: U8 | None) -> F64:
    """The affine map from `work` (the source, small) to `output`, estimated where `keep`
    (uint8, work size) is set: ORB features matched and fitted by RANSAC (scale, rotation and
    shift; robust to the edited parts), then refined to a fraction of a pixel by OpenCV's ECC
    on the pixels that agree. Where too few features match (a flat picture), ECC alone from
    `fitted_matrix`; failing both, `fitted_matrix`."""
    height, width = work.shape[:2]
    initial = fitted_matrix((width, height), (output.shape[1], output.shape[0]))
    start = _features(work, output, keep)
    if start is None or not _plausible(start, initial, (width, height)):
        start = initial
    refined = _ecc(work, output, keep, start)
    if refined is not None and _plausible(refined, initial, (width, height)):
        return refined
    return start


def _features(work: U8, output: U8, keep: U8 | None) -> F64 | None:
    orb = cv2.ORB.create(nfeatures=3000)
    mask = None if keep is None else _solid(keep)
    kp_a, des_a = orb.detectAndCompute(cv2.cvtColor(work[..., :3], cv2.COLOR_RGB2GRAY), mask)
    kp_b, des_b = orb.detectAndCompute(cv2.cvtColor(output[..., :3], cv2.COLOR_RGB2GRAY), None)
    if des_a is None or des_b is None or len(kp_a) < 10 or len(kp_b) < 10:
        return None
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(des_a, des_b, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]
    if len(good) < 12:
        return None
    cv2.setRNGSeed(0)  # RANSAC draws at random: the same inputs give the same step image
    a: U8 = np.array([kp_a[m.queryIdx].pt for m in good], np.float32)
    b: U8 = np.array([kp_b[m.trainIdx].pt for m in good], np.float32)
    found, inliers = cv2.estimateAffinePartial2D(
        a, b, method=cv2.RANSAC, ransacReprojThreshold=2.0, maxIters=4000, confidence=0.999
    )
    if found is None or inliers is None or int(inliers.sum()) < 10:
        return None
    out: F64 = found.astype(np.float64)
    return out


def _ecc(work: U8, output: U8, keep: U8 | None, start: F64) -> F64 | None:
    """OpenCV's ECC (affine) from `start`, on greyscale copies of about `ECC_PIXELS`, counting
    only the source's pixels that are kept and already agree with the output (the edit's own
    change would pull it away). ECC's mask lies on its input image, so the output is its
    template and the map found is inverted."""
    height, width = work.shape[:2]
    f = min(1.0, math.sqrt(ECC_PIXELS / (width * height)))
    g = min(1.0, math.sqrt(ECC_PIXELS / (output.shape[0] * output.shape[1])))
    source = _grey(shrink(work, f))
    template = _grey(shrink(output, g))
    small = start.copy()  # in the small copies: x_small_out = g * A(x_small_work / f)
    small[:, :2] *= g / f
    small[:, 2] *= g
    size = (source.shape[1], source.shape[0])
    seen = cv2.warpAffine(template, small, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    # Agreement up to a brightness offset, judged after a blur.
    gap = cv2.GaussianBlur(seen, (0, 0), 2.0) - cv2.GaussianBlur(source, (0, 0), 2.0)
    gap -= float(np.median(gap))
    mask: U8 = np.where(np.abs(gap) < 24, np.uint8(255), np.uint8(0)).astype(np.uint8)
    mask = cv2.bitwise_and(mask, coverage((template.shape[1], template.shape[0]), small, size))
    if keep is not None:
        mask = cv2.bitwise_and(mask, _solid(shrink(keep, f)))
    if int(np.count_nonzero(mask)) < mask.size * 0.05:
        return None
    warp: U8 = cv2.invertAffineTransform(small).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-5)
    try:
        _, warp = cv2.findTransformECC(template, source, warp, cv2.MOTION_AFFINE, criteria, mask, 3)
    except cv2.error:
        return None
    found: F64 = cv2.invertAffineTransform(warp).astype(np.float64)
    found[:, :2] *= f / g
    found[:, 2] /= g
    return found


def _plausible(found: F64, initial: F64, size: tuple[int, int]) -> bool:
    """A small correction of the fitted map (a few per cent of zoom and of shift)."""
    corners = np.array([[0, 0, 1], [size[0], 0, 1], [0, size[1], 1], [size[0], size[1], 1]], float)
    moved = np.abs(corners @ found.T - corners @ initial.T).max()
    out_side = max(np.abs(corners @ initial.T).max(), 1.0)
    return bool(np.isfinite(found).all() and moved <= 0.1 * out_side)


def _grey(image: U8) -> U8:
    grey = cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    out: U8 = grey.astype(np.float32)
    return out


def warp_to(output: U8, matrix: F64, size: tuple[int, int], *, cubic: bool = False) -> U8:
    """The output resampled onto a frame of `size` (width, height) whose pixels `matrix` maps
    into the output's; outside the output, its edge is repeated (see `coverage`)."""
    flags = (cv2.INTER_CUBIC if cubic else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
    out: U8 = cv2.warpAffine(output, matrix, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    return out


def coverage(output_size: tuple[int, int], matrix: F64, size: tuple[int, int]) -> U8:
    """255 where a pixel of a frame of `size` falls inside the output (one pixel in from its
    edge), else 0."""
    ow, oh = output_size
    inside = np.zeros((oh, ow), np.uint8)
    inside[1 : oh - 1, 1 : ow - 1] = 255
    flags = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    out: U8 = cv2.warpAffine(inside, matrix, size, flags=flags, borderValue=0)
    return out


def colour_lut(aligned: U8, work: U8, where: U8) -> U8:
    """One look-up table per channel taking the output's colours to the source's, learned where
    `where` is set: a quadratic fit, refitted without the pixels it fits worst (what the edit
    changed), so a cast of gain, offset and a little gamma comes off."""
    lut = np.tile(np.arange(256, dtype=np.uint8)[:, None], (1, 3))
    chosen = np.flatnonzero(where > 0)
    if chosen.size < 1000:
        return lut
    step = max(1, chosen.size // 60_000)
    chosen = chosen[::step]
    levels = np.arange(256, dtype=np.float64)
    for c in range(3):
        x = aligned[..., c].reshape(-1)[chosen].astype(np.float64)
        y = work[..., c].reshape(-1)[chosen].astype(np.float64)
        # Start from "no cast but an offset", which the edited pixels cannot pull far.
        residual = np.abs(y - x - float(np.median(y - x)))
        use = residual <= max(6.0, 2.5 * float(np.median(residual)))
        for _ in range(4):
            if int(use.sum()) < 100 or np.ptp(x[use]) < 8:
                break
            coefficients = np.polyfit(x[use], y[use], 2)
            residual = np.abs(np.polyval(coefficients, x) - y)
            use = residual <= max(3.0, 2.5 * float(np.median(residual[use])))
        else:
            curve = np.maximum.accumulate(np.polyval(coefficients, levels))
            lut[:, c] = np.clip(np.rint(curve), 0, 255).astype(np.uint8)
    return lut


def apply_lut(image: U8, lut: U8) -> U8:
    out: U8 = cv2.LUT(np.ascontiguousarray(image[..., :3]), lut.reshape(1, 256, 3))
    return out


def align(source: U8, output: U8, keep_full: U8 | None = None) -> tuple[Alignment, U8, U8, U8]:
    """Register `output` to `source` and learn its colours where `keep_full` is set (the
    source's size; None: everywhere). Returns the alignment, the work copy of the source, the
    output aligned and colour-matched onto it, and where the output covers the work copy."""
    scale = work_scale(source.shape)
    work = shrink(np.ascontiguousarray(source[..., :3]), scale)
    keep = None if keep_full is None else shrink(keep_full, scale)
    matrix = register(work, output, keep)
    size = (work.shape[1], work.shape[0])
    aligned = warp_to(output[..., :3], matrix, size)
    covered = coverage((output.shape[1], output.shape[0]), matrix, size)
    where = covered if keep is None else cv2.bitwise_and(covered, _solid(keep))
    lut = colour_lut(aligned, work, cv2.erode(where, np.ones((5, 5), np.uint8)))
    return Alignment(matrix, scale, lut), work, apply_lut(aligned, lut), covered


def _solid(mask: U8) -> U8:
    out: U8 = np.where(mask >= 255, np.uint8(255), np.uint8(0)).astype(np.uint8)
    return out


# -- what changed ---------------------------------------------------------------------------------


def find_changes(work: U8, matched: U8, covered: U8) -> U8:
    """Where the aligned, colour-matched output differs from the source (both work size):
    255 there, cleaned up (specks opened away, holes closed, small islands dropped, a margin
    added)."""
    a = cv2.GaussianBlur(work[..., :3], (0, 0), 1.0)
    b = cv2.GaussianBlur(matched, (0, 0), 1.0)
    # How far each lies outside the other's range over its 5 x 5 neighbourhood: a pixel or so
    # of misalignment on a sharp edge stays inside it, a real change does not.
    box = np.ones((5, 5), np.uint8)
    a_out = cv2.max(cv2.subtract(a, cv2.dilate(b, box)), cv2.subtract(cv2.erode(b, box), a))
    b_out = cv2.max(cv2.subtract(b, cv2.dilate(a, box)), cv2.subtract(cv2.erode(a, box), b))
    diff = cv2.min(a_out, b_out).max(axis=2)
    changed: U8 = np.where(diff > CHANGE_LEVEL, np.uint8(255), np.uint8(0)).astype(np.uint8)
    changed = cv2.bitwise_and(changed, cv2.erode(covered, np.ones((5, 5), np.uint8)))
    side = max(3, round(math.sqrt(work.shape[0] * work.shape[1]) / 300)) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    changed = cv2.morphologyEx(changed, cv2.MORPH_OPEN, kernel)
    changed = cv2.morphologyEx(changed, cv2.MORPH_CLOSE, kernel, iterations=3)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(changed, connectivity=8)
    smallest = MIN_CHANGE_SHARE * changed.size
    keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= smallest]
    out: U8 = np.where(np.isin(labels, keep), np.uint8(255), np.uint8(0)).astype(np.uint8)
    out = _fill_holes(out, HOLE_SHARE * out.size)
    out = cv2.dilate(out, kernel, iterations=2)
    return out


def _fill_holes(mask: U8, largest: float) -> U8:
    """`mask` with its enclosed holes smaller than `largest` pixels filled: an edit that
    changes an object changes the whole of it, even where a part came out close to before."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        cv2.bitwise_not(mask), connectivity=4
    )
    height, width = mask.shape
    holes = [
        i
        for i in range(1, count)
        if stats[i, cv2.CC_STAT_AREA] < largest
        and stats[i, cv2.CC_STAT_LEFT] > 0
        and stats[i, cv2.CC_STAT_TOP] > 0
        and stats[i, cv2.CC_STAT_LEFT] + stats[i, cv2.CC_STAT_WIDTH] < width
        and stats[i, cv2.CC_STAT_TOP] + stats[i, cv2.CC_STAT_HEIGHT] < height
    ]
    if holes:
        mask = cv2.bitwise_or(mask, np.where(np.isin(labels, holes), 255, 0).astype(np.uint8))
    return mask


# -- the blend ------------------------------------------------------------------------------------


def keep_the_rest(
    source: U8,
    output: U8,
    region: U8 | None,
    *,
    feather: int = FEATHER_PX,
) -> Blend:
    """The step's image: `source` (H x W x 3 or 4, uint8) everywhere outside `region` (H x W,
    0/255; None: the region the edit changed, found here), the registered, colour-matched
    `output` inside it, blended across a feather of at most `feather` pixels inside the region.
    An alpha channel is the source's. Pixels the output does not cover stay the source's."""
    height, width = source.shape[:2]
    keep_full = None if region is None else cv2.bitwise_not(region)
    alignment, work, matched, covered = align(source, output, keep_full)
    if region is None:
        found = find_changes(work, matched, covered)
        # Register again without the change, for a cleaner fit and colours.
        keep_full = cv2.bitwise_not(_upscale_mask(found, width, height))
        alignment, work, matched, covered = align(source, output, keep_full)
        found = find_changes(work, matched, covered)
        region = _upscale_mask(found, width, height)
    return Blend(_blend(source, output, region, alignment, feather), region)


def _upscale_mask(mask: U8, width: int, height: int) -> U8:
    return fit_mask(mask, width, height) if mask.any() else np.zeros((height, width), np.uint8)


def _blend(source: U8, output: U8, region: U8, alignment: Alignment, feather: int) -> U8:
    result = source.copy()
    points = cv2.findNonZero(region)
    if points is None:
        return result
    x0, y0, bw, bh = cv2.boundingRect(points)
    height, width = region.shape
    x1, y1 = min(width, x0 + bw + 1), min(height, y0 + bh + 1)
    x0, y0 = max(0, x0 - 1), max(0, y0 - 1)
    size = (x1 - x0, y1 - y0)
    matrix = alignment.full_matrix(x0, y0)
    inside = cv2.bitwise_and(
        region[y0:y1, x0:x1], coverage((output.shape[1], output.shape[0]), matrix, size)
    )
    # Distance to the nearest kept pixel: 0 on the region's edge, so the feather lies inside.
    distance = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
    del inside
    ramp = max(1, feather)
    # (Clipped before it is scaled: with no kept pixel in the frame, every distance is the
    # largest float, and scaling it overflowed.)
    weight = (np.minimum(distance, ramp) * (255.0 / ramp)).astype(np.uint8)
    del distance
    warped = apply_lut(warp_to(output[..., :3], matrix, size, cubic=True), alignment.lut)
    for top in range(0, size[1], BAND_ROWS):
        rows = slice(top, min(size[1], top + BAND_ROWS))
        target = result[y0 + rows.start : y0 + rows.stop, x0:x1, :3]
        base = target.astype(np.int32)
        change = warped[rows].astype(np.int32) - base
        w = weight[rows][..., None].astype(np.int32)
        target[...] = (base + np.floor_divide(change * w + 127, 255)).astype(np.uint8)
    return result


# -- files in, file out (what the runner calls, in a worker thread) -------------------------------


@dataclass(frozen=True, slots=True)
class BlendedImage:
    """A blended step image, encoded, and for an "auto" region the mask found (a PNG)."""

    data: bytes
    format: str
    width: int
    height: int
    found_mask: bytes | None


def check_region(
    source_size: tuple[int, int],
    *,
    box: Box | None = None,
    drawn_on: tuple[int, int] | None = None,
    mask: bytes | None = None,
) -> None:
    """Raise `RegionError` (one sentence) if the region cannot be used on this source."""
    if box is not None:
        fit_box(box, *source_size, drawn_on=drawn_on)
    if mask is not None:
        read_mask(mask)


def blend_files(
    source: bytes,
    output: bytes,
    *,
    image_format: str,
    box: Box | None = None,
    drawn_on: tuple[int, int] | None = None,
    mask: bytes | None = None,
    compress_level: int = 3,
) -> BlendedImage:
    """`keep_the_rest` from and to encoded images: the source as the studio decodes it (upright,
    8-bit RGB or RGBA), the output, and a box or mask (neither: found). PNG keeps the source's
    pixels bit for bit outside the region; JPEG (asked for by the step) re-encodes them.

    Raises:
        RegionError: the box or mask does not fit this source.
        ImageError: an image does not decode.
    """
    # The result is the source's pixels outside the region, so it carries the source's colour
    # profile: without it a Display P3 photo's kept pixels showed as sRGB, their colours
    # shifted (audit 15). An output in another declared profile is converted into the source's
    # first; one that declares none is taken to be in the space of what was sent, the source's.
    profile = colour_profile(source)
    theirs = colour_profile(output)
    with decode_full(source) as opened:
        pixels = np.asarray(opened)
    width, height = pixels.shape[1], pixels.shape[0]
    with decode_full(output) as opened:
        rgb = opened.convert("RGB")
        if theirs is not None and theirs != profile:
            rgb = to_profile(rgb, theirs, profile)
        drawn = np.asarray(rgb)
        del rgb
    region = None
    if box is not None:
        region = box_mask(fit_box(box, width, height, drawn_on=drawn_on), width, height)
    elif mask is not None:
        region = fit_mask(read_mask(mask), width, height)
    blend = keep_the_rest(pixels, drawn, region)
    del pixels, drawn
    mode = "RGBA" if blend.image.shape[2] == 4 else "RGB"
    fmt = "png" if mode == "RGBA" else image_format
    data = encode_image(
        Image.fromarray(blend.image), fmt, compress_level=compress_level, icc=profile
    )
    found = mask_png(blend.region) if box is None and mask is None else None
    return BlendedImage(data, fmt, width, height, found)
