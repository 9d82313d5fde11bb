"""What may be asked of Flux Kontext: models, ratios, formats, prices and `EditParams`; and
`split_url`, for the links and data URLs it is asked with.

Plain data and pure functions; imports nothing of ours but the standard library.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, TypeGuard, get_args
from urllib.parse import SplitResult, urlsplit

Model = Literal["pro", "max"]
OutputFormat = Literal["png", "jpeg"]

MODELS: tuple[Model, ...] = get_args(Model)
# The wire names of the two models (contract: "Create body").
MODEL_IDS: dict[Model, str] = {"pro": "flux-kontext-pro", "max": "flux-kontext-max"}
# List prices in cents per image (contract: "Task states").
PRICE_CENTS: dict[Model, int] = {"pro": 5, "max": 10}
# The six supported ratios, widest first (contract: "Create body").
ASPECT_RATIOS: tuple[str, ...] = ("21:9", "16:9", "4:3", "1:1", "3:4", "9:16")
OUTPUT_FORMATS: tuple[OutputFormat, ...] = get_args(OutputFormat)
# What the studio sends when generating on "match source" (there is no source to match). The
# service's own default is 16:9; an edit always sends the ratio nearest to its source.
DEFAULT_GENERATE_RATIO = "1:1"
# Safety tolerance ranges (contract: "documented 0-6 when generating, 0-2 when editing").
SAFETY_MAX_EDIT = 2
SAFETY_MAX_GENERATE = 6
# The aspect-ratio choice that means "the supported ratio nearest to the source's own", spelled
# the same on the page, in the API and on the command line.
MATCH_SOURCE = "match"
# Long prompts are accepted by the service; this cap only stops pasted novels.
MAX_PROMPT_CHARS = 4000


class ParamsError(ValueError):
    """Parameters a user chose that the service would refuse; `str()` is one plain sentence.

    `field_errors` maps each field to its messages, like the service's 422 body.
    """

    def __init__(self, field_errors: dict[str, list[str]]) -> None:
        self.field_errors = field_errors
        first_field, messages = next(iter(field_errors.items()))
        super().__init__(f"{_FIELD_WORDS.get(first_field, first_field)} {messages[0]}.")


_FIELD_WORDS = {
    "prompt": "The instruction",
    "model": "The model",
    "aspect_ratio": "The aspect ratio",
    "output_format": "The output format",
    "safety_tolerance": "The safety tolerance",
    "box": "The box",
    "mask": "The mask",
    "keep_rest": "Keep the rest",
}


def is_model(value: object) -> TypeGuard[Model]:
    return value in MODELS


@dataclass(frozen=True, kw_only=True, slots=True)
class EditParams:
    """Everything sent with one edit, in our words. `aspect_ratio=None` means "match the source"."""

    prompt: str
    model: Model = "pro"
    aspect_ratio: str | None = None
    # PNG by default: results feed the next step, and a lossless chain does not drift.
    output_format: OutputFormat = "png"
    enable_translation: bool = True
    enable_prompt_expansion: bool = False
    safety_tolerance: int = 2
    # "Keep the rest": the step keeps the source outside the region the edit changed (its
    # region, or, with none, the one the studio finds); never sent to the service.
    keep_rest: bool = False

    def validated(self, *, editing: bool) -> EditParams:
        """Return a copy with the prompt stripped, or raise `ParamsError` naming every bad field."""
        errors: dict[str, list[str]] = {}
        prompt = self.prompt.strip() if isinstance(self.prompt, str) else ""
        if not prompt:
            errors["prompt"] = ["is empty; describe the change you want"]
        elif len(prompt) > MAX_PROMPT_CHARS:
            # (How much to cut: it said only "longer than 4000 characters": audit 15.)
            over = len(prompt) - MAX_PROMPT_CHARS
            errors["prompt"] = [
                f"is {len(prompt):,} characters, longer than the {MAX_PROMPT_CHARS:,} allowed: "
                f"cut {over:,} {'character' if over == 1 else 'characters'}"
            ]
        if not is_model(self.model):
            errors["model"] = [f"must be pro or max, not {self.model!r}"]
        if self.aspect_ratio is not None and self.aspect_ratio not in ASPECT_RATIOS:
            errors["aspect_ratio"] = [f"must be one of {', '.join(ASPECT_RATIOS)}"]
        if self.output_format not in OUTPUT_FORMATS:
            errors["output_format"] = ["must be png or jpeg"]
        top = safety_max(editing=editing)
        tolerance = self.safety_tolerance
        whole = isinstance(tolerance, int) and not isinstance(tolerance, bool)
        if not whole or not 0 <= tolerance <= top:
            mode = "editing" if editing else "generating"
            errors["safety_tolerance"] = [f"must be a whole number from 0 to {top} when {mode}"]
        if not isinstance(self.keep_rest, bool):
            errors["keep_rest"] = ["must be true or false"]
        if errors:
            raise ParamsError(errors)
        return replace(self, prompt=prompt)

    @property
    def price_cents(self) -> int:
        return PRICE_CENTS[self.model]


def parse_params(
    prompt: object,
    *,
    model: object = "pro",
    aspect_ratio: object = MATCH_SOURCE,
    output_format: object = "png",
    enable_translation: object = True,
    enable_prompt_expansion: object = False,
    safety_tolerance: object = 2,
    keep_rest: object = False,
) -> EditParams:
    """Loose input (a form, an API call, command-line flags) as `EditParams`, checked.

    The one parser for every door: `MATCH_SOURCE`, "" and None mean "match the source"; "jpg"
    means JPEG; a whole float safety tolerance (a slider's 2.0) is taken as a whole number.
    Raises `ParamsError` naming every bad field. The tighter limits of an edit (safety 0-2)
    are applied when the step is added, where the history knows whether it edits.
    """
    ratio = None if aspect_ratio in (None, "", MATCH_SOURCE) else aspect_ratio
    fmt = "jpeg" if output_format == "jpg" else output_format
    safety = safety_tolerance
    if isinstance(safety, float) and safety.is_integer():
        safety = int(safety)
    params = EditParams(
        prompt=prompt if isinstance(prompt, str) else "",
        model=model,  # type: ignore[arg-type]  # checked by validated()
        aspect_ratio=ratio,  # type: ignore[arg-type]
        output_format=fmt,  # type: ignore[arg-type]
        enable_translation=bool(enable_translation),
        enable_prompt_expansion=bool(enable_prompt_expansion),
        safety_tolerance=safety,  # type: ignore[arg-type]
        keep_rest=bool(keep_rest),
    )
    return params.validated(editing=False)


class RegionError(ValueError):
    """A mask or box that cannot be used for its source (`studio.regions` checks them there);
    `str()` is one sentence."""


@dataclass(frozen=True, slots=True)
class RegionRequest:
    """A region asked for with one edit: a mask (image bytes in any format intake reads;
    white/opaque = may change) or a box (x, y, w, h in the source's pixels).

    Checked against the source (`studio.regions`) before anything is stored or paid.
    """

    mask: bytes | None = None
    box: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        if self.mask is not None and self.box is not None:
            raise ParamsError({"box": ["cannot be given with a mask; draw one or the other"]})


def parse_box(text: str) -> tuple[int, int, int, int]:
    """`"x,y,w,h"` (pixels of the source; spaces allowed) as a tuple, or `ParamsError`."""
    parts = [part.strip() for part in str(text).split(",")]
    try:
        x, y, w, h = (int(part) for part in parts)
    except ValueError:
        raise ParamsError(
            {"box": [f"must be four whole numbers x,y,w,h in pixels, not {str(text)[:40]!r}"]}
        ) from None
    if w <= 0 or h <= 0:
        raise ParamsError({"box": ["must have a width and a height above zero"]})
    if x < 0 or y < 0:
        raise ParamsError({"box": ["must start inside the image (x and y from 0)"]})
    return (x, y, w, h)


def nearest_aspect_ratio(width: int, height: int) -> str:
    """The supported ratio closest to `width:height`, compared on a log scale.

    A log scale makes 2:1 and 1:2 equally far from 1:1, so portrait photos never land on a
    landscape ratio. Ties go to the earlier (wider) ratio in `ASPECT_RATIOS`.
    """
    if width <= 0 or height <= 0:
        raise ValueError("width and height must be positive")
    target = math.log(width / height)
    return min(ASPECT_RATIOS, key=lambda r: abs(math.log(ratio_value(r)) - target))


def ratio_value(ratio: str) -> float:
    """`"16:9"` -> 1.777..."""
    w, h = ratio.split(":")
    return int(w) / int(h)


def format_cents(cents: int) -> str:
    """`5` -> `"$0.05"`."""
    return f"${cents / 100:.2f}"


def file_words(text: str, limit: int) -> str:
    """`text` as part of a file's name: its letters and digits of any script, with their
    marks, joined by hyphens, at most `limit` characters; "" when it has none. (A session
    named in Arabic or Chinese downloaded as "kontext-…": UX audit 11.)"""
    words = "".join(ch if f"a{ch}".isidentifier() and ch != "_" else " " for ch in text)
    return "-".join(words.split())[:limit].strip("-")


def safety_max(*, editing: bool) -> int:
    """The highest safety tolerance the service takes: lower when editing than when generating."""
    return SAFETY_MAX_EDIT if editing else SAFETY_MAX_GENERATE


# `urllib.parse.urlsplit` keeps the last 128 distinct strings it split, with their parts, for the
# life of the process: each 11 MB data URL an API caller sent stayed in memory after its answer
# (64 of them, 0.7 GB, after a minute of edits). What a caller sends is split by the uncached
# function underneath.
split_url: Callable[[str], SplitResult] = getattr(urlsplit, "__wrapped__", urlsplit)
