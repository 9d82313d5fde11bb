"""The studio's components, built in `_render_*` functions and returned as one `Components` value.

Only layout: no event is registered here (that is `events.wire`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from studio.params import SAFETY_MAX_GENERATE
from studio.ui import present

# Seconds between a tab's looks for news of its session: while something runs (so the elapsed
# time ticks), and while nothing does (a new step made elsewhere shows within this).
TICK_RUNNING_S = 1.0
TICK_IDLE_S = 2.0
# A fixed key, so the visitor's session survives reloads and restarts (gradio-notes §2).
BROWSER_STORAGE_KEY = "kontext-studio-session"
# Where a visitor's own key is kept when they ask the studio to remember it: their browser's
# local storage, never the server's disk.
KEY_STORAGE_KEY = "kontext-studio-visitor-key"


def _unopened_path(payload: Any) -> str | None:
    return None if payload is None else str(payload.path)


def hand_over_unopened(image: gr.Image) -> gr.Image:
    """Make `image` pass uploads to its handler as the file's path, unopened.

    Gradio's own preprocessing decodes the file with Pillow and fails with a generic error on
    anything odd; our intake (`studio.images`) checks it instead and says what is wrong in one
    sentence. (Set on the instance: a `gr.Image` subclass makes Gradio write a .pyi file beside
    our module.)
    """
    image.preprocess = _unopened_path  # type: ignore[method-assign]
    return image


@dataclass(frozen=True, slots=True)
class Components:
    banner: gr.Markdown
    cost: gr.Markdown
    sessions: gr.Dropdown
    new_session: gr.Button
    source: gr.Image
    link: gr.Textbox
    load_link: gr.Button
    examples: gr.Gallery
    result: gr.Image
    slider: gr.ImageSlider
    status: gr.Markdown
    download: gr.DownloadButton
    retry: gr.Button
    prompt: gr.Textbox
    run: gr.Button
    model: gr.Radio
    aspect: gr.Dropdown
    output_format: gr.Radio
    translation: gr.Checkbox
    expansion: gr.Checkbox
    safety: gr.Slider
    user_key: gr.Textbox
    history: gr.Gallery
    branches: gr.Gallery
    failed: gr.Gallery
    failed_box: gr.Accordion
    undo: gr.Button
    redo: gr.Button
    export: gr.Button
    export_file: gr.DownloadButton
    import_file: gr.UploadButton
    compare: gr.Button
    compare_panel: gr.Group
    compare_pro: gr.Image
    compare_max: gr.Image
    compare_pro_text: gr.Markdown
    compare_max_text: gr.Markdown
    compare_slider: gr.ImageSlider
    keep_pro: gr.Button
    keep_max: gr.Button
    pair_a: gr.Dropdown
    pair_b: gr.Dropdown
    timer: gr.Timer
    tab_step: gr.State
    version: gr.State
    cancel: gr.Button
    browser: gr.BrowserState
    tab_key: gr.State
    compare_pair: gr.State
    remember_key: gr.Checkbox
    key_note: gr.Markdown
    key_store: gr.BrowserState
    manage: gr.Accordion
    session_name: gr.Textbox
    rename: gr.Button
    delete: gr.Button
    delete_confirm: gr.Group
    delete_text: gr.Markdown
    delete_yes: gr.Button
    delete_no: gr.Button


def render(*, examples: list[Path], browser_secret: str, banner: str) -> Components:
    """Lay out the whole page inside the current `gr.Blocks` context."""
    header = _render_header(banner)
    source = _render_source(examples)
    instruction = _render_instruction()
    compare = _render_compare()
    history = _render_history()
    return Components(
        **header,
        **source,
        **instruction,
        **compare,
        **history,
        # Every open tab looks for news of its session (other tabs, the CLI, agents) and ticks
        # the elapsed time of what runs: a cheap version check when nothing changed.
        timer=gr.Timer(TICK_IDLE_S, active=True),
        # The step this tab shows (the parent of its next edit), and the version it shows.
        tab_step=gr.State(None),
        version=gr.State(None),
        compare_pair=gr.State(None),
        browser=gr.BrowserState(None, storage_key=BROWSER_STORAGE_KEY, secret=browser_secret),
        tab_key=gr.State(None),
        # Only when the visitor ticks "remember": in their browser's storage, never on disk here.
        key_store=gr.BrowserState(None, storage_key=KEY_STORAGE_KEY, secret=browser_secret),
    )


def _render_header(banner: str) -> dict[str, Any]:
    with gr.Row(equal_height=True):
        gr.Markdown("## Kontext Studio", elem_id="title")
        sessions = gr.Dropdown(
            label="Session",
            choices=[],
            value=None,
            elem_id="sessions",
            scale=3,
            allow_custom_value=False,
        )
        new_session = gr.Button("New session", elem_id="new-session", scale=1, size="sm")
        cost = gr.Markdown(present.cost_line(None), elem_id="cost")
    return {
        "banner": gr.Markdown(banner, elem_id="banner"),
        "sessions": sessions,
        "new_session": new_session,
        "cost": cost,
    }


def _render_source(examples: list[Path]) -> dict[str, Any]:
    with gr.Row():
        with gr.Column(scale=1):
            source = hand_over_unopened(
                gr.Image(
                    label="Source: upload, paste or take a photo (the current step shows here)",
                    type="filepath",
                    image_mode=None,  # keep the file as uploaded: alpha and all (gradio-notes §2)
                    sources=["upload", "clipboard", "webcam"],
                    elem_id="source",
                    height=420,
                )
            )
            with gr.Row(equal_height=True):
                link = gr.Textbox(
                    label="Or a link to an image", placeholder="https://…", elem_id="link", scale=4
                )
                load_link = gr.Button("Load", elem_id="load-link", scale=1)
            example_gallery = gr.Gallery(
                value=[(str(p), p.stem) for p in examples],
                label="Examples (click one to start from it)",
                columns=len(examples) or 1,
                height=110,
                allow_preview=False,
                elem_id="examples",
                interactive=False,
            )
        with gr.Column(scale=1, elem_id="result-column"):
            result_parts = _render_result_column()
    return {
        "source": source,
        "link": link,
        "load_link": load_link,
        "examples": example_gallery,
        **result_parts,
    }


def _render_result_column() -> dict[str, Any]:
    with gr.Tabs():
        with gr.Tab("Result", id="result-tab"):
            result = gr.Image(
                label="Result",
                type="filepath",
                interactive=False,
                elem_id="result",
                height=420,
                format="png",
            )
        with gr.Tab("Before / after", id="slider-tab"):
            slider = gr.ImageSlider(
                label="Before / after",
                type="filepath",
                format="png",
                elem_id="slider",
                max_height=420,
            )
            with gr.Row():
                pair_a = gr.Dropdown(label="Left", choices=[], elem_id="pair-a", scale=1)
                pair_b = gr.Dropdown(label="Right", choices=[], elem_id="pair-b", scale=1)
    status = gr.Markdown("", elem_id="status")
    with gr.Row():
        download = gr.DownloadButton("Download", elem_id="download", visible=False, size="sm")
        retry = gr.Button("Retry", elem_id="retry", visible=False, size="sm", variant="secondary")
        cancel = gr.Button(
            "Cancel queued edit", elem_id="cancel", visible=False, size="sm", variant="secondary"
        )
    return {
        "pair_a": pair_a,
        "pair_b": pair_b,
        "result": result,
        "slider": slider,
        "status": status,
        "download": download,
        "retry": retry,
        "cancel": cancel,
    }


def _render_instruction() -> dict[str, Any]:
    with gr.Row(equal_height=True):
        prompt = gr.Textbox(
            label="Instruction",
            placeholder='Change the shop sign to read "BAKERY", keep everything else',
            lines=1,
            max_lines=4,
            elem_id="prompt",
            scale=6,
            # Not `autofocus`: it scrolls a phone's page past the source on load; studio.js
            # focuses the box without scrolling, on wide screens only.
        )
        run = gr.Button("Edit ⏎", variant="primary", elem_id="run", scale=1)
        compare = gr.Button("Compare pro / max", elem_id="compare", scale=1)
    with gr.Row():
        model = gr.Radio(
            present.model_choices(), value="pro", label="Model", elem_id="model", scale=2
        )
        aspect = gr.Dropdown(
            present.aspect_choices(None),
            value="match",
            label="Aspect ratio",
            elem_id="aspect",
            scale=2,
        )
    with gr.Accordion("Advanced", open=False, elem_id="advanced"), gr.Row():
        output_format = gr.Radio(
            [("PNG (lossless, best for chains)", "png"), ("JPEG", "jpeg")],
            value="png",
            label="Output format",
            elem_id="output-format",
        )
        translation = gr.Checkbox(
            True, label="Translate non-English instructions", elem_id="translation"
        )
        expansion = gr.Checkbox(
            False, label="Let the service expand the instruction", elem_id="expansion"
        )
        safety = gr.Slider(
            0,
            SAFETY_MAX_GENERATE,
            value=2,
            step=1,
            elem_id="safety",
            label="Safety tolerance (0 strict; up to 2 when editing, 6 when generating)",
        )
    with gr.Accordion("Tips", open=False, elem_id="tips"):
        gr.Markdown(present.TIPS)
    with gr.Accordion("RunAPI key", open=False, elem_id="key-box"):
        user_key = gr.Textbox(
            label="Your RunAPI key (checked when pasted; used for this tab only)",
            type="password",
            elem_id="user-key",
        )
        remember_key = gr.Checkbox(
            False,
            label="Remember it in this browser (kept in this browser only, never on the server)",
            elem_id="remember-key",
        )
        key_note = gr.Markdown("", elem_id="key-note")
    return {
        "compare": compare,
        "prompt": prompt,
        "run": run,
        "model": model,
        "aspect": aspect,
        "output_format": output_format,
        "translation": translation,
        "expansion": expansion,
        "safety": safety,
        "user_key": user_key,
        "remember_key": remember_key,
        "key_note": key_note,
    }


def _render_compare() -> dict[str, Any]:
    with gr.Group(visible=False, elem_id="compare-panel") as panel:
        gr.Markdown("### Pro and max, side by side: keep the better one", elem_id="compare-title")
        with gr.Row():
            pro, pro_text, keep_pro = _render_compare_side("pro")
            max_, max_text, keep_max = _render_compare_side("max")
        slider = gr.ImageSlider(
            label="pro | max",
            type="filepath",
            format="png",
            elem_id="compare-slider",
            max_height=420,
        )
    return {
        "compare_panel": panel,
        "compare_pro": pro,
        "compare_max": max_,
        "compare_pro_text": pro_text,
        "compare_max_text": max_text,
        "compare_slider": slider,
        "keep_pro": keep_pro,
        "keep_max": keep_max,
    }


def _render_compare_side(model: str) -> tuple[gr.Image, gr.Markdown, gr.Button]:
    with gr.Column():
        image = gr.Image(
            label=model,
            type="filepath",
            interactive=False,
            format="png",
            elem_id=f"compare-{model}",
            height=320,
        )
        text = gr.Markdown("", elem_id=f"compare-{model}-text")
        keep = gr.Button(f"Keep {model}", elem_id=f"keep-{model}", variant="primary")
    return image, text, keep


def _render_history() -> dict[str, Any]:
    with gr.Row(equal_height=True):
        gr.Markdown("### History: click a step to continue from it", elem_id="history-title")
        undo = gr.Button("↶ Undo", elem_id="undo", size="sm", interactive=False)
        redo = gr.Button("↷ Redo", elem_id="redo", size="sm", interactive=False)
        export = gr.Button("Export ZIP", elem_id="export", size="sm")
        export_file = gr.DownloadButton(
            "Download export", elem_id="export-file", visible=False, size="sm"
        )
        import_file = gr.UploadButton(
            "Import ZIP", file_types=[".zip"], elem_id="import", size="sm"
        )
    history = _step_strip("Current path (↷ marks what Redo brings back)", "history")
    branches = _step_strip("Other branches (click to switch)", "branches", visible=False)
    with gr.Accordion(
        "Failed attempts", open=False, visible=False, elem_id="failed-box"
    ) as failed_box:
        failed = _step_strip("Failed attempts (click one to see why, or to retry it)", "failed")
    with gr.Accordion("Rename or delete this session", open=False, elem_id="manage") as manage:
        with gr.Row(equal_height=True):
            session_name = gr.Textbox(
                label="Session name", elem_id="session-name", scale=4, max_lines=1
            )
            rename = gr.Button("Rename", elem_id="rename", scale=1)
        delete = gr.Button("Delete this session…", elem_id="delete", variant="stop", size="sm")
        with gr.Group(visible=False, elem_id="delete-confirm") as delete_confirm:
            delete_text = gr.Markdown("", elem_id="delete-text")
            with gr.Row():
                delete_yes = gr.Button("Yes, delete it", elem_id="delete-yes", variant="stop")
                delete_no = gr.Button("No, keep it", elem_id="delete-no")
    return {
        "history": history,
        "branches": branches,
        "failed": failed,
        "failed_box": failed_box,
        "manage": manage,
        "session_name": session_name,
        "rename": rename,
        "delete": delete,
        "delete_confirm": delete_confirm,
        "delete_text": delete_text,
        "delete_yes": delete_yes,
        "delete_no": delete_no,
        "undo": undo,
        "redo": redo,
        "export": export,
        "export_file": export_file,
        "import_file": import_file,
    }


__all__ = ["Components", "render"]


def _step_strip(label: str, elem_id: str, *, visible: bool = True) -> gr.Gallery:
    """A strip of step thumbnails: clicking one makes that step current. It grows with its
    steps (no box to scroll inside); captions wrap (assets/studio.css)."""
    return gr.Gallery(
        label=label,
        columns=8,
        height="auto",
        allow_preview=False,
        elem_id=elem_id,
        elem_classes=["step-strip"],
        object_fit="contain",
        interactive=False,
        buttons=[],
        fit_columns=False,
        visible=visible,
    )
