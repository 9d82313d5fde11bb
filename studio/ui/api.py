"""The studio's deliberate endpoints for scripts and agents: stable `api_name`s, documented args.

Each is a public Gradio endpoint (so `gradio_client` and the MCP server list it) on hidden
components; the page's own events stay undocumented plumbing. Docstrings become the MCP tool
descriptions, so they are written for an agent reading them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import gradio as gr

from studio.history import Step, StepState
from studio.params import ASPECT_RATIOS, MATCH_SOURCE, MODELS, EditParams, parse_params
from studio.ui.bridge import USER_ERRORS, Bridge, Visitor
from studio.ui.handlers import Refusal, visitor_from
from studio.ui.layout import hand_over_unopened

# Edits hold their slot for the whole task; the global cap is launch(max_threads=...).
_EDITS: dict[str, Any] = {"concurrency_limit": None, "concurrency_id": "api-edit"}


def register(bridge: Bridge, exports: Path, *, hosted: bool = False) -> None:
    """Add the public endpoints to the Blocks being built.

    Each names its caller from the request (`handlers.visitor_from`): on a hosted studio, an
    API or MCP caller sends its RunAPI key in an X-RunAPI-Key header and touches only the
    sessions it made with that key.
    """

    def who(request: gr.Request | None) -> Visitor:
        try:
            return visitor_from(request, hosted=hosted)
        except Refusal as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    async def run(coro: Any) -> Any:
        try:
            return await coro
        except USER_ERRORS as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    async def session_for(image: str | None, session_id: str, caller: Visitor) -> str:
        session_id = (session_id or "").strip()
        if session_id:
            return str((await run(bridge.load_session(session_id, caller))).session_id)
        data = await asyncio.to_thread(Path(image).read_bytes) if image else None
        session = await run(bridge.start_session(data, caller, name="From the API"))
        return str(session.session_id)

    async def edit_image(
        image: str | None,
        instruction: str,
        model: str = "pro",
        aspect_ratio: str = MATCH_SOURCE,
        session_id: str = "",
        request: gr.Request | None = None,
    ) -> tuple[str | None, dict[str, Any]]:
        """Edit an image with FLUX.1 Kontext, or generate one when no image is given.

        Describe the change and what to keep, e.g. 'Change the shop sign to read "BAKERY",
        keep everything else'. The result is kept in the studio's history as a new step; pass
        the returned session_id to continue_session to chain further edits on it.

        Args:
            image: The source image (a file, an http(s) URL or a data: URI). Leave empty to
                generate from the instruction alone, or when session_id is given.
            instruction: What to change, in plain English.
            model: "pro" (5 cents) or "max" (10 cents, more faithful on hard edits).
            aspect_ratio: "match" (nearest to the source) or one of 21:9, 16:9, 4:3, 1:1,
                3:4, 9:16.
            session_id: Continue this studio session from its current step instead of
                starting a new one.

        Returns:
            The result image, and a summary with session_id, step_id, task_id, model,
            seconds, cost_cents, state and error.
        """
        params = _params(instruction, model, aspect_ratio)
        caller = who(request)
        sid = await session_for(image, session_id, caller)
        step = await run(bridge.edit(sid, params, caller))
        if step.state is not StepState.COMPLETED:
            raise gr.Error(f"The edit failed: {step.error}", print_exception=False)
        return bridge.image_path(step), _summary(step)

    async def continue_session(
        session_id: str,
        instruction: str,
        model: str = "pro",
        aspect_ratio: str = MATCH_SOURCE,
        request: gr.Request | None = None,
    ) -> tuple[str | None, dict[str, Any]]:
        """Apply one more edit to a studio session, starting from its current step.

        Args:
            session_id: The session returned by edit_image or compare_models.
            instruction: What to change next, in plain English.
            model: "pro" (5 cents) or "max" (10 cents).
            aspect_ratio: "match" (keep the current shape) or one of 21:9, 16:9, 4:3, 1:1,
                3:4, 9:16.

        Returns:
            The result image and a summary (session_id, step_id, task_id, seconds,
            cost_cents, state, error).
        """
        if not (session_id or "").strip():
            raise gr.Error("Give the session_id of the session to continue.")
        return await edit_image(None, instruction, model, aspect_ratio, session_id, request)

    async def compare_models(
        image: str | None,
        instruction: str,
        aspect_ratio: str = MATCH_SOURCE,
        session_id: str = "",
        request: gr.Request | None = None,
    ) -> tuple[str | None, str | None, dict[str, Any]]:
        """Run one instruction on flux-kontext-pro and flux-kontext-max at once, to compare.

        Both results are kept as sibling steps; neither becomes current until keep_result is
        called with the chosen step_id. Costs 15 cents in all.

        Args:
            image: The source image (a file, an http(s) URL or a data: URI); empty with
                session_id to start from that session's current step.
            instruction: What to change, in plain English.
            aspect_ratio: "match" or one of 21:9, 16:9, 4:3, 1:1, 3:4, 9:16.
            session_id: Compare from this session's current step instead of a new session.

        Returns:
            The pro image, the max image, and a summary with both steps' ids, times, costs
            and errors.
        """
        params = _params(instruction, "pro", aspect_ratio)
        caller = who(request)
        sid = await session_for(image, session_id, caller)
        pair = await run(bridge.compare(sid, params, caller))
        pro, max_ = await asyncio.gather(*(run(bridge.wait(s.step_id)) for s in pair))
        return (
            bridge.image_path(pro),
            bridge.image_path(max_),
            {"pro": _summary(pro), "max": _summary(max_)},
        )

    async def keep_result(
        session_id: str, step_id: str, request: gr.Request | None = None
    ) -> dict[str, Any]:
        """Make a compared result the current step, so the next edit continues from it.

        Args:
            session_id: The session of the comparison.
            step_id: The step_id of the result to keep (from compare_models' summary).

        Returns:
            The kept step's summary.
        """
        session = await run(bridge.keep(session_id, step_id, who(request)))
        return _summary(session.current)

    async def export_session(session_id: str, request: gr.Request | None = None) -> str:
        """Export a studio session as a ZIP: every image and a readable session.json.

        Args:
            session_id: The session to export.

        Returns:
            The ZIP file.
        """
        _, data = await run(bridge.export_session(session_id, who(request)))
        target = exports / f"session-{session_id[:8]}.zip"
        await asyncio.to_thread(target.write_bytes, data)
        return str(target)

    with gr.Column(visible=False):
        image_in = hand_over_unopened(gr.Image(type="filepath", image_mode=None, label="image"))
        text: dict[str, Any] = {
            "instruction": gr.Textbox(label="instruction"),
            "model": gr.Radio(list(MODELS), value="pro", label="model"),
            "aspect_ratio": gr.Dropdown(
                [MATCH_SOURCE, *ASPECT_RATIOS], value=MATCH_SOURCE, label="aspect_ratio"
            ),
            "session_id": gr.Textbox("", label="session_id"),
            "step_id": gr.Textbox(label="step_id"),
        }
        image_out = gr.Image(type="filepath", format="png", label="result")
        second_out = gr.Image(type="filepath", format="png", label="max result")
        summary = gr.JSON(label="summary")
        zip_out = gr.File(label="export")
        trigger = gr.Button()
    t = text
    trigger.click(
        edit_image,
        [image_in, t["instruction"], t["model"], t["aspect_ratio"], t["session_id"]],
        [image_out, summary],
        api_name="edit_image",
        **_EDITS,
    )
    trigger.click(
        continue_session,
        [t["session_id"], t["instruction"], t["model"], t["aspect_ratio"]],
        [image_out, summary],
        api_name="continue_session",
        **_EDITS,
    )
    trigger.click(
        compare_models,
        [image_in, t["instruction"], t["aspect_ratio"], t["session_id"]],
        [image_out, second_out, summary],
        api_name="compare_models",
        **_EDITS,
    )
    trigger.click(
        keep_result,
        [t["session_id"], t["step_id"]],
        [summary],
        api_name="keep_result",
        concurrency_limit=None,
    )
    trigger.click(
        export_session, [t["session_id"]], [zip_out], api_name="export_session", concurrency_limit=4
    )


def _params(instruction: str, model: str, aspect_ratio: str) -> EditParams:
    try:
        return parse_params(instruction, model=model, aspect_ratio=aspect_ratio)
    except USER_ERRORS as exc:
        raise gr.Error(str(exc), print_exception=False) from None


def _summary(step: Step) -> dict[str, Any]:
    return {
        "session_id": step.session_id,
        "step_id": step.step_id,
        "task_id": step.task_id,
        "model": step.params.model if step.params else None,
        "instruction": step.params.prompt if step.params else None,
        "state": str(step.state),
        "seconds": step.elapsed_s,
        "cost_cents": step.cost_cents,
        "error": step.error if step.state is StepState.FAILED else None,
    }
