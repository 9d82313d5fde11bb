"""Every event of the studio, registered in one `wire`. Handlers parse, call the engine, present.

What a handler shows is always read back from the store (`_view`), so a reload, a second tab
and a restarted server all show the same truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from studio.config import Secret
from studio.engine import USER_ERRORS, StepUpdate, StoreError
from studio.history import UNFINISHED_STATES, Session, Step, StepState
from studio.params import EditParams, is_model, nearest_aspect_ratio
from studio.ui import present
from studio.ui.bridge import EngineLoop
from studio.ui.layout import Components

log = logging.getLogger(__name__)

# Seconds between status refreshes while an edit runs (a dict read; no request to RunAPI).
STATUS_REFRESH_S = 0.3


@dataclass(frozen=True, slots=True)
class Context:
    loop: EngineLoop
    assets: Path
    examples: list[Path]
    exports: Path
    simulator: bool
    server_key: bool


class Refusal(Exception):
    """Input the page itself refuses; `str()` is one sentence for the user."""


_REFUSED: tuple[type[Exception], ...] = (*USER_ERRORS, Refusal)


def wire(c: Components, ctx: Context, demo: gr.Blocks) -> None:
    """Register every event of the page."""
    view_outputs = _view_outputs(c)
    engine = ctx.loop.engine
    call = ctx.loop.call

    async def view(
        session_id: str | None,
        update: StepUpdate | None = None,
        *,
        balance_cents: int | None = None,
    ) -> dict[Any, Any]:
        session = None
        if session_id:
            try:
                session = await call(engine.load_session(session_id))
            except StoreError:
                session = None
        summaries = await call(engine.list_sessions())
        return await asyncio.to_thread(
            _render_view, c, ctx, session, summaries, update, balance_cents
        )

    async def refused(session_id: str | None, exc: BaseException) -> dict[Any, Any]:
        """The page as it was, with the reason in a toast and in the status line."""
        sentence = present.error_sentence(exc)
        gr.Warning(sentence)
        return {**(await view(session_id)), c.status: f"⚠ {sentence}"}

    def guarded(handler: Callable[..., Awaitable[dict[Any, Any]]]) -> Callable[..., Any]:
        @functools.wraps(handler)
        async def run(session_id: str | None, *args: Any) -> dict[Any, Any]:
            try:
                return await handler(session_id, *args)
            except _REFUSED as exc:
                return await refused(session_id, exc)

        return run

    def guarded_stream(
        handler: Callable[..., AsyncIterator[dict[Any, Any]]],
    ) -> Callable[..., Any]:
        @functools.wraps(handler)
        async def run(session_id: str | None, *args: Any) -> AsyncIterator[dict[Any, Any]]:
            try:
                async for page in handler(session_id, *args):
                    yield page
            except _REFUSED as exc:
                yield await refused(session_id, exc)

        return run

    @guarded
    async def on_load(session_id: str | None) -> dict[Any, Any]:
        if not session_id:
            summaries = await call(engine.list_sessions())
            session_id = summaries[0].session_id if summaries else None
        return await view_with_balance(session_id, None)

    async def view_with_balance(session_id: str | None, tab_key: str | None) -> dict[Any, Any]:
        """The page, with the account balance when edits go to the real service."""
        key = _secret(tab_key)
        cents = None
        if key is not None or not ctx.simulator:
            # A nicety: if it fails, the edits' own errors say what is wrong with the service.
            with contextlib.suppress(*USER_ERRORS):
                cents = await call(engine.balance_cents(key))
        return await view(session_id, balance_cents=cents)

    async def start_from_bytes(data: bytes, name: str | None) -> dict[Any, Any]:
        image = await call(engine.read_image(data))
        session = await call(engine.start_session(image, name=name))
        return await view(session.session_id)

    @guarded
    async def on_source(_session_id: str | None, path: str | None) -> dict[Any, Any]:
        if not path:
            return {c.status: gr.skip()}
        data = await asyncio.to_thread(Path(path).read_bytes)
        return await start_from_bytes(data, None)

    @guarded
    async def on_example(_session_id: str | None, evt: gr.SelectData) -> dict[Any, Any]:
        example = ctx.examples[int(evt.index)]
        data = await asyncio.to_thread(example.read_bytes)
        return await start_from_bytes(data, f"{example.stem.capitalize()} example")

    @guarded
    async def on_link(_session_id: str | None, url: str) -> dict[Any, Any]:
        url = (url or "").strip()
        if not url:
            raise Refusal("Paste a link to an image first.")
        image = await call(engine.read_link(url))
        session = await call(engine.start_session(image, link_url=url))
        return await view(session.session_id)

    @guarded
    async def on_new_session(_session_id: str | None) -> dict[Any, Any]:
        session = await call(engine.start_session(None))
        return await view(session.session_id)

    @guarded
    async def on_pick_session(_session_id: str | None, picked: str | None) -> dict[Any, Any]:
        return await view(picked) if picked else {c.status: gr.skip()}

    async def follow(
        session_id: str, step: Step, tab_key: str | None
    ) -> AsyncIterator[dict[Any, Any]]:
        """Yield the page while `step` runs, then once more when it ends."""
        yield await view(session_id)
        while True:
            update = engine.progress(step.step_id)
            if update is None or update.is_final or not engine.is_running(step.step_id):
                break
            yield {c.status: present.step_status(update.step, update)}
            await asyncio.sleep(STATUS_REFRESH_S)
        yield await view_with_balance(session_id, tab_key)

    async def session_or_new(session_id: str | None) -> str:
        """The visitor's session, or a new one without an image (the edit then generates)."""
        if session_id:
            return session_id
        return str((await call(engine.start_session(None))).session_id)

    @guarded_stream
    async def on_edit(
        session_id: str | None,
        prompt: str,
        model: str,
        aspect: str,
        output_format: str,
        translation: bool,
        expansion: bool,
        safety: float,
        tab_key: str | None,
    ) -> AsyncIterator[dict[Any, Any]]:
        params = _edit_params(prompt, model, aspect, output_format, translation, expansion, safety)
        session_id = await session_or_new(session_id)
        step = await call(engine.submit_edit(session_id, params, api_key=_secret(tab_key)))
        first = True
        async for page in follow(session_id, step, tab_key):
            # Clear the instruction once it is on its way, ready for the next one.
            yield {**page, c.prompt: ""} if first else page
            first = False

    @guarded_stream
    async def on_retry(
        session_id: str | None, tab_key: str | None
    ) -> AsyncIterator[dict[Any, Any]]:
        if not session_id:
            return
        session = await call(engine.load_session(session_id))
        step = await call(
            engine.retry(session_id, session.current_step_id, api_key=_secret(tab_key))
        )
        async for page in follow(session_id, step, tab_key):
            yield page

    @guarded_stream
    async def on_compare(
        session_id: str | None,
        prompt: str,
        aspect: str,
        output_format: str,
        translation: bool,
        expansion: bool,
        safety: float,
        tab_key: str | None,
    ) -> AsyncIterator[dict[Any, Any]]:
        params = _edit_params(prompt, "pro", aspect, output_format, translation, expansion, safety)
        session_id = await session_or_new(session_id)
        pair = await call(engine.compare(session_id, params, api_key=_secret(tab_key)))
        ids = (pair[0].step_id, pair[1].step_id)
        yield {
            **(await view(session_id)),
            c.compare_pair: ids,
            c.compare_panel: gr.Group(visible=True),
            c.compare_pro: None,
            c.compare_max: None,
            c.compare_slider: None,
            c.keep_pro: gr.Button(interactive=False),
            c.keep_max: gr.Button(interactive=False),
            c.prompt: "",
        }
        while any(engine.is_running(i) for i in ids):
            texts = [present.compare_text(s, engine.progress(s.step_id)) for s in pair]
            yield {c.compare_pro_text: texts[0], c.compare_max_text: texts[1]}
            await asyncio.sleep(STATUS_REFRESH_S)
        yield {**(await view(session_id)), **(await compare_view(session_id, ids))}

    async def compare_view(session_id: str, ids: tuple[str, str]) -> dict[Any, Any]:
        session = await call(engine.load_session(session_id))
        pro, max_ = (session.steps[i] for i in ids)
        pro_image, max_image = _image_path(engine, pro), _image_path(engine, max_)
        both = (pro_image, max_image) if pro_image and max_image else None
        return {
            c.compare_pair: ids,
            c.compare_panel: gr.Group(visible=True),
            c.compare_pro: pro_image,
            c.compare_max: max_image,
            c.compare_pro_text: present.compare_text(pro, None),
            c.compare_max_text: present.compare_text(max_, None),
            c.compare_slider: both,
            c.keep_pro: gr.Button(interactive=pro_image is not None),
            c.keep_max: gr.Button(interactive=max_image is not None),
        }

    async def keep(session_id: str | None, pair: Any, side: int) -> dict[Any, Any]:
        if not session_id or not isinstance(pair, list | tuple) or len(pair) != 2:
            raise Refusal("There is no comparison to keep a result from; run Compare first.")
        await call(engine.keep(session_id, str(pair[side])))
        return {
            **(await view(session_id)),
            c.compare_pair: None,
            c.compare_panel: gr.Group(visible=False),
        }

    @guarded
    async def on_keep_pro(session_id: str | None, pair: Any) -> dict[Any, Any]:
        return await keep(session_id, pair, 0)

    @guarded
    async def on_keep_max(session_id: str | None, pair: Any) -> dict[Any, Any]:
        return await keep(session_id, pair, 1)

    @guarded
    async def on_pair(
        session_id: str | None, left: str | None, right: str | None
    ) -> dict[Any, Any]:
        if not session_id or not left or not right:
            return {c.slider: gr.skip()}
        session = await call(engine.load_session(session_id))
        if left not in session.steps or right not in session.steps:
            return {c.slider: gr.skip()}
        a, b = _image_path(engine, session.steps[left]), _image_path(engine, session.steps[right])
        return {c.slider: (a, b) if a and b else None}

    @guarded
    async def on_export(session_id: str | None) -> dict[Any, Any]:
        if not session_id:
            raise Refusal("There is no session to export yet.")
        data = await call(engine.export_session(session_id))
        session = await call(engine.load_session(session_id))
        path = await asyncio.to_thread(_write_export, ctx.exports, session.name, data)
        return {
            c.export_file: gr.DownloadButton(value=str(path), visible=True),
            c.status: f"Exported {len(session.steps)} steps: use *Download export* to save it.",
        }

    @guarded
    async def on_import(_session_id: str | None, path: str | None) -> dict[Any, Any]:
        if not path:
            return {c.status: gr.skip()}
        data = await asyncio.to_thread(Path(path).read_bytes)
        session = await call(engine.import_session(data))
        return {**(await view(session.session_id)), c.status: f"Imported “{session.name}”."}

    async def move_to(session_id: str, target: str) -> dict[Any, Any]:
        await call(engine.navigate(session_id, lambda s: s.make_current(target)))
        return await view(session_id)

    @guarded
    async def on_history_select(session_id: str | None, evt: gr.SelectData) -> dict[Any, Any]:
        if not session_id:
            return {c.status: gr.skip()}
        path = (await call(engine.load_session(session_id))).path()
        index = int(evt.index)
        if not 0 <= index < len(path):
            return await view(session_id)
        return await move_to(session_id, path[index].step_id)

    @guarded
    async def on_branch_select(session_id: str | None, evt: gr.SelectData) -> dict[Any, Any]:
        if not session_id:
            return {c.status: gr.skip()}
        tips = (await call(engine.load_session(session_id))).branches
        index = int(evt.index)
        if not 0 <= index < len(tips):
            return await view(session_id)
        return await move_to(session_id, tips[index].step_id)

    @guarded
    async def on_undo(session_id: str | None) -> dict[Any, Any]:
        if session_id:
            await call(engine.navigate(session_id, lambda s: s.undo()))
        return await view(session_id)

    @guarded
    async def on_redo(session_id: str | None) -> dict[Any, Any]:
        if session_id:
            await call(engine.navigate(session_id, lambda s: s.redo()))
        return await view(session_id)

    @guarded
    async def on_tick(session_id: str | None) -> dict[Any, Any]:
        return await view(session_id)

    def on_key(key: str | None) -> tuple[str | None, str]:
        key = (key or "").strip() or None
        text = present.banner(
            simulator=ctx.simulator, server_key=ctx.server_key, user_key=key is not None
        )
        return key, text

    internal: dict[str, Any] = {"api_visibility": "undocumented"}
    # Navigation and page refreshes are quick store reads: let many run at once.
    quick: dict[str, Any] = {"concurrency_limit": None, "concurrency_id": "quick", **internal}
    intake: dict[str, Any] = {"concurrency_limit": 8, "concurrency_id": "intake", **internal}
    # An edit holds its slot while it runs (seconds to minutes): no per-listener cap; the global
    # cap is `launch(max_threads=...)`.
    edits: dict[str, Any] = {"concurrency_limit": None, "concurrency_id": "edit", **internal}
    b = c.browser
    demo.load(on_load, [b], view_outputs, **quick)
    c.source.upload(on_source, [b, c.source], view_outputs, **intake)
    c.examples.select(on_example, [b], view_outputs, **intake)
    gr.on([c.load_link.click, c.link.submit], on_link, [b, c.link], view_outputs, **intake)
    c.new_session.click(on_new_session, [b], view_outputs, **quick)
    c.sessions.input(on_pick_session, [b, c.sessions], view_outputs, **quick)
    edit_inputs = [b, c.prompt, c.model, c.aspect, c.output_format, c.translation]
    edit_inputs += [c.expansion, c.safety, c.tab_key]
    gr.on([c.run.click, c.prompt.submit], on_edit, edit_inputs, view_outputs, **edits)
    c.retry.click(on_retry, [b, c.tab_key], view_outputs, **edits)
    c.history.select(on_history_select, [b], view_outputs, **quick)
    c.branches.select(on_branch_select, [b], view_outputs, **quick)
    c.undo.click(on_undo, [b], view_outputs, **quick)
    c.redo.click(on_redo, [b], view_outputs, **quick)
    c.timer.tick(on_tick, [b], view_outputs, **quick)
    c.user_key.change(on_key, [c.user_key], [c.tab_key, c.banner], **quick)
    compare_outputs = [*view_outputs, c.compare_pair, c.compare_panel, c.compare_pro]
    compare_outputs += [c.compare_max, c.compare_pro_text, c.compare_max_text]
    compare_outputs += [c.compare_slider, c.keep_pro, c.keep_max]
    compare_inputs = [b, c.prompt, c.aspect, c.output_format, c.translation, c.expansion]
    compare_inputs += [c.safety, c.tab_key]
    c.compare.click(on_compare, compare_inputs, compare_outputs, **edits)
    c.keep_pro.click(on_keep_pro, [b, c.compare_pair], compare_outputs, **quick)
    c.keep_max.click(on_keep_max, [b, c.compare_pair], compare_outputs, **quick)
    gr.on([c.pair_a.input, c.pair_b.input], on_pair, [b, c.pair_a, c.pair_b], [c.slider], **quick)
    c.export.click(on_export, [b], [*view_outputs, c.export_file], **quick)
    c.import_file.upload(on_import, [b, c.import_file], view_outputs, **intake)


def _view_outputs(c: Components) -> list[Any]:
    return [
        c.pair_a,
        c.pair_b,
        c.browser,
        c.sessions,
        c.cost,
        c.source,
        c.result,
        c.slider,
        c.status,
        c.download,
        c.retry,
        c.aspect,
        c.history,
        c.branches,
        c.undo,
        c.redo,
        c.timer,
        c.prompt,
    ]


def _render_view(
    c: Components,
    ctx: Context,
    session: Session | None,
    summaries: list[Any],
    update: StepUpdate | None,
    balance_cents: int | None = None,
) -> dict[Any, Any]:
    """The whole page for `session` (runs in a thread: it may make thumbnails)."""
    engine = ctx.loop.engine
    choices = [(s.name, s.session_id) for s in summaries]
    if session is None:
        return {
            c.pair_a: gr.Dropdown(choices=[], value=None),
            c.pair_b: gr.Dropdown(choices=[], value=None),
            c.sessions: gr.Dropdown(choices=choices, value=None),
            c.cost: present.cost_line(None, balance_cents),
            c.source: None,
            c.result: None,
            c.slider: None,
            c.status: "Upload, paste or link an image, pick an example, or type an instruction "
            "to generate one.",
            c.download: gr.DownloadButton(visible=False),
            c.retry: gr.Button(visible=False),
            c.aspect: gr.Dropdown(choices=present.aspect_choices(None)),
            c.history: [],
            c.branches: gr.Gallery(value=[], visible=False),
            c.undo: gr.Button(interactive=False),
            c.redo: gr.Button(interactive=False),
            c.timer: gr.Timer(active=False),
            c.browser: gr.skip(),
            c.prompt: gr.skip(),
        }
    current = session.current
    path = session.path()
    shown = _shown_step(session)
    image = _image_path(engine, shown)
    parent_image = None
    if shown.parent_id is not None:
        parent_image = _image_path(engine, session.steps[shown.parent_id])
    progress = update or engine.progress(current.step_id)
    running = any(s.state in UNFINISHED_STATES for s in session.steps.values())
    history = [(_thumb(ctx, s), present.caption(s, i)) for i, s in enumerate(path)]
    branches = [(_thumb(ctx, s), present.caption(s, _depth(session, s))) for s in session.branches]
    match_ratio = None
    if shown.result is not None:
        match_ratio = nearest_aspect_ratio(shown.result.width, shown.result.height)
    finished = [s for s in session.steps.values() if s.result is not None]
    pair_choices = [present.step_choice(s, _depth(session, s)) for s in finished]
    left = shown.parent_id if parent_image else shown.step_id
    return {
        c.pair_a: gr.Dropdown(choices=pair_choices, value=left),
        c.pair_b: gr.Dropdown(choices=pair_choices, value=shown.step_id),
        c.browser: session.session_id,
        c.sessions: gr.Dropdown(choices=choices, value=session.session_id),
        c.cost: present.cost_line(session, balance_cents),
        c.source: image,
        c.result: image if shown.kind != "origin" else None,
        c.slider: (parent_image, image) if parent_image and image else None,
        c.status: present.step_status(
            current,
            progress if current.step_id == (progress.step.step_id if progress else None) else None,
        ),
        c.download: gr.DownloadButton(value=image, visible=image is not None),
        c.retry: gr.Button(visible=current.state is StepState.FAILED),
        c.aspect: gr.Dropdown(choices=present.aspect_choices(match_ratio)),
        c.history: history,
        c.branches: gr.Gallery(value=branches, visible=bool(branches)),
        c.undo: gr.Button(interactive=session.can_undo),
        c.redo: gr.Button(interactive=session.can_redo),
        c.timer: gr.Timer(active=running),
        c.prompt: gr.skip(),
    }


def _shown_step(session: Session) -> Step:
    """The step whose image fills the page: the current one, or its nearest ancestor with one."""
    for step in reversed(session.path()):
        if step.result is not None:
            return step
    return session.current


def _depth(session: Session, step: Step) -> int:
    """How many edits lie between the origin and `step` (its number in captions)."""
    depth = 0
    while step.parent_id is not None:
        step = session.steps[step.parent_id]
        depth += 1
    return depth


def _edit_params(
    prompt: str | None,
    model: str,
    aspect: str,
    output_format: str,
    translation: bool,
    expansion: bool,
    safety: float,
) -> EditParams:
    if not is_model(model):
        raise Refusal("Pick pro or max.")
    return EditParams(
        prompt=prompt or "",
        model=model,
        aspect_ratio=None if aspect == "match" else aspect,
        output_format="jpeg" if output_format == "jpeg" else "png",
        enable_translation=bool(translation),
        enable_prompt_expansion=bool(expansion),
        safety_tolerance=int(safety),
    )


def _write_export(folder: Path, name: str, data: bytes) -> Path:
    """The ZIP under a per-export folder in the temp dir, which Gradio may serve."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[:60] or "session"
    target = Path(tempfile.mkdtemp(dir=folder)) / f"{slug}.zip"
    target.write_bytes(data)
    return target


def _image_path(engine: Any, step: Step) -> str | None:
    if step.result is None:
        return None
    return str(engine.store.image_path(step.result.sha256))


def _thumb(ctx: Context, step: Step) -> str:
    if step.result is None:
        name = "step-failed.png" if step.state is StepState.FAILED else "step-running.png"
        return str(ctx.assets / name)
    return str(ctx.loop.engine.thumbnail(step.result.sha256))


def _secret(key: str | None) -> Secret | None:
    return Secret(key) if key else None
