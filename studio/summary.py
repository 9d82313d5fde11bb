"""Steps and sessions as scripts and agents see them: the same keys from the CLI's `--json`,
the API and MCP.

Pure; imports `history` and `params` only. The caller supplies `image_url`, because only it knows
where the image can be opened: a file it wrote, or the studio's own address.
"""

from __future__ import annotations

from typing import Any

from studio.history import Session, SessionSummary, Step, StepState
from studio.params import DEFAULT_GENERATE_RATIO, nearest_aspect_ratio

# The keys of a step summary, in the order they are written (README: "Scripts and agents").
SUMMARY_KEYS = (
    "session_id",
    "step_id",
    "state",
    "model",
    "aspect_ratio",
    "prompt",
    "task_id",
    "seconds",
    "cost_cents",
    "error",
    "image_url",
    "region",
    "raw_image_url",
)


def step_summary(
    step: Step, *, image_url: str | None = None, raw_image_url: str | None = None
) -> dict[str, Any]:
    """The step's summary: ids, state, model, ratio, prompt, seconds, cost, error and image URL.

    `region` is how the edit was kept to a region ("mask", "box", "auto" for Keep the rest with
    none drawn, else None); `raw_image_url` is where the model's own output can be opened when
    the step's image is the blend of it over the source (else None).

    `aspect_ratio` is the shape of the result when there is one (so "match the source" reads as
    the ratio it matched), else the ratio asked for: "match" for an edit, 1:1 for a generation.
    `cost_cents` is None until the service has charged; a failed step costs 0.
    """
    params = step.params
    return {
        "session_id": step.session_id,
        "step_id": step.step_id,
        "state": step.state.value,
        "model": params.model if params else None,
        "aspect_ratio": _aspect_ratio(step),
        "prompt": params.prompt if params else None,
        "task_id": step.task_id,
        "seconds": None if step.elapsed_s is None else round(step.elapsed_s, 2),
        "cost_cents": step.cost_cents,
        "error": step.error if step.state is StepState.FAILED else None,
        "image_url": image_url,
        "region": step.region.kind if step.region is not None else None,
        "raw_image_url": raw_image_url if step.raw_result is not None else None,
    }


def _aspect_ratio(step: Step) -> str | None:
    if step.result is not None:
        return nearest_aspect_ratio(step.result.width, step.result.height)
    if step.params is None:
        return None
    if step.params.aspect_ratio:
        return step.params.aspect_ratio
    return "match" if step.kind == "edit" else DEFAULT_GENERATE_RATIO


def tree_step_summary(
    step: Step,
    session: Session,
    *,
    image_url: str | None = None,
    raw_image_url: str | None = None,
) -> dict[str, Any]:
    """A step's summary with its place in the session's tree: `parent_id`, `kind`, `current`."""
    return {
        **step_summary(step, image_url=image_url, raw_image_url=raw_image_url),
        "parent_id": step.parent_id,
        "kind": step.kind,
        "current": step.step_id == session.current_step_id,
    }


def session_summary(session: Session, steps: list[dict[str, Any]]) -> dict[str, Any]:
    """One session shown whole: ids, name, cost, and `steps` (each a `tree_step_summary`)."""
    return {
        "session_id": session.session_id,
        "name": session.name,
        "created_at": session.created_at.isoformat(),
        "current_step_id": session.current_step_id,
        "cost_cents": session.total_cost_cents,
        "steps": steps,
    }


def listed_session(listed: SessionSummary) -> dict[str, Any]:
    """One session of a list: `damaged` when its rows cannot be read back (opening it says so)."""
    return {
        "session_id": listed.session_id,
        "name": listed.name,
        "created_at": listed.created_at.isoformat(),
        "updated_at": listed.updated_at.isoformat(),
        "step_count": listed.step_count,
        "cost_cents": listed.cost_cents,
        "damaged": listed.damaged,
    }
