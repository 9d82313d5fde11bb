"""The studio's deliberate endpoints for scripts and agents: stable `api_name`s, documented args.

Each is a public Gradio endpoint on hidden components, so `gradio_client` and the MCP server list
it; the page's own events stay undocumented plumbing. The docstrings become the MCP tool
descriptions (each argument's description is its one line under `Args:`), so they are written
for an agent reading them.

What an agent gets back is the result image (MCP image content) and one JSON text: the step
summary of `studio.summary`, whose `image_url` is the studio's own address for the image. Images
come in as text that we check ourselves (Gradio's file inputs refuse loopback and local paths):
an http(s) URL, a data: URI, or, when the studio is not hosted, a local path or file:// URL. An
image the studio made, passed back in any of these forms, continues its own session from the
step that made it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import gradio as gr

from studio.config import Settings
from studio.history import HistoryError, ImageRef, Step, StepState
from studio.params import (
    ASPECT_RATIOS,
    MATCH_SOURCE,
    MODELS,
    EditParams,
    ParamsError,
    RegionRequest,
    parse_box,
    parse_params,
)
from studio.summary import step_summary
from studio.ui.bridge import USER_ERRORS, Bridge, Visitor
from studio.ui.files import write_export
from studio.ui.guard import IMAGE_ROUTE, image_sha
from studio.ui.visitor import Refusal, visitor_from

# Edits hold their slot for the whole task; the global cap is launch(max_threads=...).
_EDITS: dict[str, Any] = {"concurrency_limit": None, "concurrency_id": "api-edit"}
# The phases of a running step, in order, for progress notifications ("step 3 of 6").
PHASES = ("queued", "uploading", "submitted", "pending", "processing", "downloading")
# Seconds between two looks at a running step's phase (the page refreshes at the same pace).
PROGRESS_EVERY_S = 0.5
# Where Gradio serves files from; a URL of this studio carries the file's path after it.
FILE_ROUTE = "/gradio_api/file="
# Session names are shown in the page's list; a long instruction is cut to this.
NAME_CHARS = 80
DEFAULT_LIST_LIMIT = 20

REFUSE_LOCAL = (
    "This studio is hosted, so it cannot read local files; pass the image as an http(s) URL "
    "or a data: URI."
)
REFUSE_FORM = "The image must be an http(s) URL, a data: URI or an absolute file path."


@dataclass(frozen=True, slots=True)
class Place:
    """Where an edit goes: a session, and the step it starts from (None: the current one)."""

    session_id: str
    parent_step_id: str | None = None


def register(bridge: Bridge, exports: Path, settings: Settings) -> None:
    """Add the public endpoints to the Blocks being built.

    Each names its caller from the request (`ui.visitor.visitor_from`): on a hosted studio, an
    API or MCP caller sends its RunAPI key in an X-RunAPI-Key header and touches only the
    sessions it made with that key.
    """
    _mcp_returns_each_output()
    hosted = settings.hosted

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

    async def place(image: str, session_id: str, instruction: str, caller: Visitor) -> Place:
        """Check the image and the session first, then start or continue a session."""
        image, session_id = (image or "").strip(), (session_id or "").strip()
        data, link = await read_image(image, caller) if image else (None, None)
        name = instruction.strip()[:NAME_CHARS] or "From the API"
        where = bridge.place_edit(data, caller, link=link, session_id=session_id or None, name=name)
        return Place(*await run(where))

    async def read_image(image: str, caller: Visitor) -> tuple[bytes | None, str | None]:
        """The bytes of `image`, or the http(s) link the engine is to fetch it from."""
        scheme = urlsplit(image).scheme.lower()
        if image.startswith("data:"):
            return _data_uri(image), None
        if scheme in ("http", "https"):
            if (stored := await own_image(image, caller)) is not None:
                return stored, None
            return None, image
        if len(scheme) > 1 and scheme != "file":  # "c:" is a Windows drive, not a scheme
            raise gr.Error(REFUSE_FORM, print_exception=False)
        if hosted:
            raise gr.Error(REFUSE_LOCAL, print_exception=False)
        path = url2pathname(unquote(urlsplit(image).path)) if scheme == "file" else image
        return await asyncio.to_thread(_read_file, path, settings.max_upload_bytes), None

    async def own_image(url: str, caller: Visitor) -> bytes | None:
        """A stored image named by one of this studio's own URLs (its image address, or a
        Gradio file URL of a stored file), read without a download."""
        path = unquote(urlsplit(url).path)
        _, _, name = path.rpartition(IMAGE_ROUTE)
        if name and (sha := image_sha(name)) is not None:
            stored = await bridge.owned_image_path(sha, caller)
            return None if stored is None else await asyncio.to_thread(stored.read_bytes)
        _, _, tail = path.partition(FILE_ROUTE)
        if not tail:
            return None
        return await bridge.stored_image(Path(tail), caller)

    async def follow(step: Step, caller: Visitor, progress: gr.Progress) -> Step:
        """Report each new phase of a running step (pushed by the engine); its final record."""
        waiter = asyncio.ensure_future(final(step, caller))
        shown: str | None = None
        async for running in bridge.watch(step.session_id, caller):
            update = running.get(step.step_id)
            if update is None or waiter.done():
                break
            if update.phase in PHASES and update.phase != shown:
                shown = update.phase
                progress((PHASES.index(shown) + 1, len(PHASES)), desc=shown)
        return await waiter

    async def final(step: Step, caller: Visitor) -> Step:
        try:
            result: Step = await bridge.wait(step.step_id)
            return result
        except HistoryError:  # it ended before we asked: the history has its record
            session = await run(bridge.load_session(step.session_id, caller))
            return session.steps[step.step_id]

    async def region_of(mask: str, box: str, caller: Visitor) -> RegionRequest | None:
        """A mask (an image in any form `image` takes) or a box ("x,y,w,h"), checked for form
        here and against the source by the engine, before anything is paid."""
        mask, box = (mask or "").strip(), (box or "").strip()
        if mask and box:
            raise gr.Error("Give a mask or a box, not both.", print_exception=False)
        try:
            if box:
                return RegionRequest(box=parse_box(box))
        except ParamsError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        if not mask:
            return None
        data, link = await read_image(mask, caller)
        if data is None and link is not None:
            data = await run(bridge.read_link(link))
        return RegionRequest(mask=data)

    def address(image: ImageRef | None, request: gr.Request | None) -> str | None:
        # The studio's own address for an image: no path of the server in it, and served
        # only to this caller (ui.guard), who sends the same X-RunAPI-Key (or cookie) for it.
        if image is None:
            return None
        root = settings.root_path.rstrip("/")
        return f"{_origin(request)}{root}{IMAGE_ROUTE}{image.sha256}.{image.format}"

    def summary(step: Step, request: gr.Request | None) -> dict[str, Any]:
        return step_summary(
            step,
            image_url=address(step.result, request),
            raw_image_url=address(step.raw_result, request),
        )

    def image_of(step: Step) -> str | None:
        return bridge.image_path(step)

    async def edit_image(
        image: str,
        instruction: str,
        model: str,
        aspect_ratio: str,
        session_id: str,
        mask: str,
        box: str,
        keep_rest: bool,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio's documented form
    ) -> tuple[str | None, str]:
        """Edit an image with FLUX.1 Kontext through RunAPI, or generate one when no image is given.

        The result is kept in the user's Kontext Studio as a new step they can open, branch and export in the browser. To chain edits, pass the returned image_url back as image (it continues from that step), or call continue_session with the session_id.

        Args:
            image: The image to edit: an http(s) URL, a data: URI, a local absolute path or file:// URL (when the studio is not hosted), or an image_url this studio returned; empty to generate.
            instruction: What to change and what to keep, in plain English, e.g. 'Change the sign to read "BAKERY", keep everything else'.
            model: "pro" (5 cents an image) or "max" (10 cents, more faithful on hard edits).
            aspect_ratio: "match" keeps the source's shape (1:1 when generating), or one of 21:9, 16:9, 4:3, 1:1, 3:4, 9:16.
            session_id: Continue this session from its current step instead of giving an image; empty for a new session.
            mask: Optional: change only where this image (in any form image takes; scaled to the source) is white or opaque, keep the rest exactly, at the source's full size; empty for none.
            box: Optional: change only inside this box, "x,y,w,h" in the source's pixels, and keep the rest exactly; empty for none.
            keep_rest: Keep every pixel the edit did not change, at the source's full size (with no mask or box, the studio finds what changed).

        Returns:
            The result image and a JSON step summary: session_id, step_id, state, model, aspect_ratio, prompt, task_id, seconds, cost_cents, error, image_url, region ("mask", "box", "auto" or null) and raw_image_url (the model's own output when the result is kept to a region).
        """
        params = _params(instruction, model, aspect_ratio, keep_rest)
        caller = who(request)
        region = await region_of(mask, box, caller)
        where = await place(image, session_id, instruction, caller)
        step = await run(
            bridge.submit_edit(
                where.session_id,
                params,
                caller,
                parent_step_id=where.parent_step_id,
                region=region,
            )
        )
        step = await follow(step, caller, progress)
        if step.state is not StepState.COMPLETED:
            raise gr.Error(_failed(step), print_exception=False)
        return image_of(step), _json(summary(step, request))

    async def continue_session(
        session_id: str,
        instruction: str,
        model: str,
        aspect_ratio: str,
        mask: str,
        box: str,
        keep_rest: bool,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio's documented form
    ) -> tuple[str | None, str]:
        """Apply one more edit to a Kontext Studio session, starting from its current step.

        Args:
            session_id: The session to continue (from edit_image, list_sessions or show_session).
            instruction: What to change next and what to keep, in plain English.
            model: "pro" (5 cents an image) or "max" (10 cents, more faithful on hard edits).
            aspect_ratio: "match" keeps the current image's shape, or one of 21:9, 16:9, 4:3, 1:1, 3:4, 9:16.
            mask: Optional: change only where this image (in any form edit_image takes; scaled to the current image) is white or opaque, keep the rest exactly; empty for none.
            box: Optional: change only inside this box, "x,y,w,h" in the current image's pixels, and keep the rest exactly; empty for none.
            keep_rest: Keep every pixel the edit did not change, at the image's full size (with no mask or box, the studio finds what changed).

        Returns:
            The result image and a JSON step summary: session_id, step_id, state, model, aspect_ratio, prompt, task_id, seconds, cost_cents, error, image_url, region and raw_image_url.
        """
        if not (session_id or "").strip():
            raise gr.Error("Give the session_id of the session to continue.")
        return await edit_image(
            "",
            instruction,
            model,
            aspect_ratio,
            session_id,
            mask,
            box,
            keep_rest,
            request,
            progress,
        )

    async def compare_models(
        image: str,
        instruction: str,
        aspect_ratio: str,
        session_id: str,
        mask: str,
        box: str,
        keep_rest: bool,
        request: gr.Request,
    ) -> tuple[str | None, str | None, str]:
        """Run one instruction on FLUX.1 Kontext pro and max at once, to compare them (15 cents in all).

        Both results are kept as sibling steps; neither becomes current until keep_result is called with the chosen step_id.

        Args:
            image: The image to edit, in any form edit_image takes; empty with session_id to start from that session's current step.
            instruction: What to change and what to keep, in plain English.
            aspect_ratio: "match" keeps the source's shape, or one of 21:9, 16:9, 4:3, 1:1, 3:4, 9:16.
            session_id: Compare from this session's current step instead of giving an image; empty for a new session.
            mask: Optional: both change only where this image (in any form image takes) is white or opaque, and keep the rest exactly; empty for none.
            box: Optional: both change only inside this box, "x,y,w,h" in the source's pixels; empty for none.
            keep_rest: Keep every pixel the edits did not change, at the source's full size.

        Returns:
            The pro image, the max image, and JSON with the step summary of each under "pro" and "max".
        """
        params = _params(instruction, "pro", aspect_ratio, keep_rest)
        caller = who(request)
        region = await region_of(mask, box, caller)
        where = await place(image, session_id, instruction, caller)
        pair = await run(
            bridge.compare(
                where.session_id,
                params,
                caller,
                parent_step_id=where.parent_step_id,
                region=region,
            )
        )
        pro, max_ = await asyncio.gather(*(final(s, caller) for s in pair))
        both = {"pro": summary(pro, request), "max": summary(max_, request)}
        return image_of(pro), image_of(max_), _json(both)

    async def keep_result(session_id: str, step_id: str, request: gr.Request) -> str:
        """Make a compared result the current step of its session, so the next edit continues from it.

        Args:
            session_id: The session of the comparison.
            step_id: The step_id of the result to keep (from compare_models).

        Returns:
            The kept step's JSON step summary.
        """
        session = await run(bridge.keep(session_id, step_id, who(request)))
        return _json(summary(session.current, request))

    async def export_session(session_id: str, request: gr.Request) -> str:
        """Export a Kontext Studio session as a ZIP file: every image and a readable session.json.

        Args:
            session_id: The session to export.

        Returns:
            The ZIP file.
        """
        _, data = await run(bridge.export_session(session_id, who(request)))
        name = f"session-{session_id[:8]}"
        return str(await asyncio.to_thread(write_export, exports, name, data))

    async def list_sessions(limit: int, request: gr.Request) -> str:
        """List the sessions in the user's Kontext Studio, most recently changed first (read-only).

        Args:
            limit: How many sessions to list at most (default 20).

        Returns:
            JSON with "sessions": each with session_id, name, created_at, updated_at, step_count and cost_cents.
        """
        summaries = await run(bridge.list_sessions(who(request)))
        count = max(1, int(limit or DEFAULT_LIST_LIMIT))
        sessions = [
            {
                "session_id": s.session_id,
                "name": s.name,
                "created_at": s.created_at.isoformat(),
                "updated_at": s.updated_at.isoformat(),
                "step_count": s.step_count,
                "cost_cents": s.cost_cents,
            }
            for s in summaries[:count]
        ]
        return _json({"sessions": sessions})

    async def show_session(session_id: str, request: gr.Request) -> str:
        """Show one Kontext Studio session: every step, its tree and the current step (read-only).

        Args:
            session_id: The session to show (from list_sessions or edit_image).

        Returns:
            JSON with session_id, name, current_step_id, cost_cents and "steps": each a step summary with parent_id, kind and current.
        """
        session = await run(bridge.load_session((session_id or "").strip(), who(request)))
        steps = [
            {
                **summary(step, request),
                "parent_id": step.parent_id,
                "kind": step.kind,
                "current": step.step_id == session.current_step_id,
            }
            for step in session.steps.values()
        ]
        return _json(
            {
                "session_id": session.session_id,
                "name": session.name,
                "created_at": session.created_at.isoformat(),
                "current_step_id": session.current_step_id,
                "cost_cents": session.total_cost_cents,
                "steps": steps,
            }
        )

    # Hidden components; one set per endpoint, so each tool's schema says exactly which of its
    # arguments are required (an input without a value is required) and what the defaults are.
    with gr.Column(visible=False):
        trigger = gr.Button()
        result = gr.Image(type="filepath", format="png", label="result")
        max_result = gr.Image(type="filepath", format="png", label="max result")
        step_json = gr.Textbox(label="summary")
        trigger.click(
            edit_image,
            [
                _image_in(),
                _text("instruction"),
                _model(),
                _ratio(),
                _text("session_id", ""),
                *_region_in(),
            ],
            [result, step_json],
            api_name="edit_image",
            **_EDITS,
        )
        trigger.click(
            continue_session,
            [_text("session_id"), _text("instruction"), _model(), _ratio(), *_region_in()],
            [result, step_json],
            api_name="continue_session",
            **_EDITS,
        )
        trigger.click(
            compare_models,
            [
                _image_in(),
                _text("instruction"),
                _ratio(),
                _text("session_id", ""),
                *_region_in(),
            ],
            [result, max_result, step_json],
            api_name="compare_models",
            **_EDITS,
        )
        trigger.click(
            keep_result,
            [_text("session_id"), _text("step_id")],
            [step_json],
            api_name="keep_result",
            concurrency_limit=None,
        )
        trigger.click(
            export_session,
            [_text("session_id")],
            [gr.File(label="export")],
            api_name="export_session",
            concurrency_limit=4,
        )
        trigger.click(
            list_sessions,
            [gr.Number(DEFAULT_LIST_LIMIT, precision=0, minimum=1, label="limit")],
            [step_json],
            api_name="list_sessions",
            concurrency_limit=None,
        )
        trigger.click(
            show_session,
            [_text("session_id")],
            [step_json],
            api_name="show_session",
            concurrency_limit=None,
        )


def _mcp_returns_each_output() -> None:
    """Make Gradio's MCP server hand over each output of a tool called without a progress token.

    Gradio 6.31 wraps such a call's outputs in one more list, so an MCP client gets the Python
    repr of them all as one text instead of image content and our JSON. Its progress path reads
    them right, from the job's final update; this does the same, without notifications.
    """
    from gradio.mcp import GradioMCPServer

    async def without_progress(_server: object, job: Any) -> list[Any]:
        async for update in job:
            if update.type == "output" and update.final:
                if not update.success:
                    raise RuntimeError(update.outputs.get("error") or "The tool failed.")
                return list(update.outputs["data"])
        raise RuntimeError(str(job.exception() or "The tool ended without a result."))

    GradioMCPServer._execute_tool_without_progress = without_progress  # type: ignore[method-assign,assignment]


def _text(label: str, value: str | None = None) -> gr.Textbox:
    return gr.Textbox(value, label=label)


def _image_in() -> gr.Textbox:
    return gr.Textbox("", label="image")


def _region_in() -> tuple[gr.Textbox, gr.Textbox, gr.Checkbox]:
    """The optional mask, box and keep_rest of an edit (defaults: none, none, off)."""
    return _text("mask", ""), _text("box", ""), gr.Checkbox(False, label="keep_rest")


def _model() -> gr.Radio:
    return gr.Radio(list(MODELS), value="pro", label="model")


def _ratio() -> gr.Dropdown:
    return gr.Dropdown([MATCH_SOURCE, *ASPECT_RATIOS], value=MATCH_SOURCE, label="aspect_ratio")


def _params(instruction: str, model: str, aspect_ratio: str, keep_rest: bool = False) -> EditParams:
    """The edit asked for, checked before anything is stored (nothing changes when refused)."""
    try:
        return parse_params(
            instruction, model=model, aspect_ratio=aspect_ratio, keep_rest=bool(keep_rest)
        )
    except USER_ERRORS as exc:
        raise gr.Error(str(exc), print_exception=False) from None


def _failed(step: Step) -> str:
    reason = (step.error or "no reason given").rstrip(".")
    return (
        f"The edit failed: {reason} (step {step.step_id} in session {step.session_id}); "
        "change the instruction and try again."
    )


def _data_uri(uri: str) -> bytes:
    header, comma, payload = uri.partition(",")
    if not comma or not header.endswith(";base64"):
        message = "The data: URI must be base64-encoded, as in data:image/png;base64,iVBOR..."
        raise gr.Error(message, print_exception=False)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise gr.Error("The data: URI is not valid base64.", print_exception=False) from None


def _read_file(name: str, max_bytes: int) -> bytes:
    """A local file's bytes, or one sentence saying why not. Blocking: run it in a thread."""
    path = Path(name).expanduser()
    if not path.is_absolute():
        raise gr.Error(REFUSE_FORM, print_exception=False)
    try:
        if path.is_dir():
            raise gr.Error(f"{path} is a folder, not an image file.", print_exception=False)
        if path.stat().st_size > max_bytes:
            raise gr.Error(
                f"The file {path} is larger than {max_bytes // 2**20} MB.", print_exception=False
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise gr.Error(f"The file {path} does not exist.", print_exception=False) from None
    except OSError as error:
        message = f"The file {path} cannot be read ({error.strerror})."
        raise gr.Error(message, print_exception=False) from None


def _origin(request: gr.Request | None) -> str:
    """The address the caller reached the studio at (its public one behind a proxy)."""
    headers = {k.lower(): v for k, v in dict(request.headers).items()} if request else {}
    host = headers.get("x-forwarded-host", headers.get("host", "127.0.0.1")).split(",")[0]
    scheme = headers.get("x-forwarded-proto", "http").split(",")[0]
    return f"{scheme.strip()}://{host.strip()}"


def _json(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False)


__all__ = ["register"]
