"""What the simulator accepts: models and prices, ratios, formats, create-body rules, idempotency.

Its own reading of shared/runapi-contract.md; imports the stdlib only.
"""

from __future__ import annotations

import json
from typing import Any

# List prices in cents per image (contract: "Task states").
PRICE_CENTS = {"flux-kontext-pro": 5, "flux-kontext-max": 10}
ASPECT_RATIOS = ("21:9", "16:9", "4:3", "1:1", "3:4", "9:16")
OUTPUT_FORMATS = ("jpeg", "png")
# Contract: "documented 0-6 when generating, 0-2 when editing".
SAFETY_MAX = {"edit": 2, "generate": 6}


def validate_create(body: dict[str, Any]) -> dict[str, list[str]]:
    """Field errors for a create body, shaped like the contract's 422 `errors` object."""
    errors: dict[str, list[str]] = {}
    model = body.get("model")
    if model is None:
        errors["model"] = ["is required"]
    elif model not in PRICE_CENTS:
        errors["model"] = [f"must be one of {', '.join(PRICE_CENTS)}"]
    prompt = body.get("prompt")
    if prompt is None:
        errors["prompt"] = ["is required"]
    elif not isinstance(prompt, str):
        errors["prompt"] = ["must be a string"]
    elif not prompt.strip():
        errors["prompt"] = ["can't be blank"]
    for name in ("source_image_url", "callback_url"):
        url = body.get(name)
        if url is not None and not (
            isinstance(url, str) and url.startswith(("http://", "https://"))
        ):
            errors[name] = ["must be an http(s) URL"]
    if body.get("aspect_ratio") is not None and body["aspect_ratio"] not in ASPECT_RATIOS:
        errors["aspect_ratio"] = [f"must be one of {', '.join(ASPECT_RATIOS)}"]
    if body.get("output_format") is not None and body["output_format"] not in OUTPUT_FORMATS:
        errors["output_format"] = ["must be one of jpeg, png"]
    for name in ("enable_translation", "enable_prompt_expansion"):
        if body.get(name) is not None and not isinstance(body[name], bool):
            errors[name] = ["must be true or false"]
    mode = "edit" if body.get("source_image_url") is not None else "generate"
    tolerance = body.get("safety_tolerance")
    top = SAFETY_MAX[mode]
    if tolerance is not None and (
        isinstance(tolerance, bool) or not isinstance(tolerance, int) or not 0 <= tolerance <= top
    ):
        verb = "editing" if mode == "edit" else "generating"
        errors["safety_tolerance"] = [f"must be an integer from 0 to {top} when {verb}"]
    return errors


def fingerprint(path: str, body: dict[str, Any]) -> str:
    """What must match for an idempotent replay: the route and the body, key order ignored."""
    return path + " " + json.dumps(body, sort_keys=True, separators=(",", ":"))
