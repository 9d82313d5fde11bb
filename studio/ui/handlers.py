"""The page's handlers, as methods of one class: parse the input, make one bridge call, render.

Each public method is registered by `events.wire` (after Gradio's `ChatInterface`, whose
`_setup_events` registers `_submit_fn` and friends). A handler never sees the store or the
engine: it asks the `Bridge`, renders with the pure `view`, and turns the `PageUpdate` into
component updates here. What it shows is always read back from the store, so a reload, a second
tab and a restarted server all show the same truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from studio.config import Secret
from studio.history import Session, Step, StepUpdate
from studio.params import (
    SAFETY_MAX_EDIT,
    SAFETY_MAX_GENERATE,
    EditParams,
    format_cents,
    parse_params,
)
from studio.ui import layout, present, view
from studio.ui.bridge import MAX_BUNDLE_BYTES, Bridge, Visitor
from studio.ui.files import discard_upload, write_export
from studio.ui.layout import Components
from studio.ui.visitor import REFUSED, Refusal, current, guarded, visitor_from

log = logging.getLogger(__name__)

Update = dict[Any, Any]


def error_sentence(exc: BaseException) -> str:
    """One sentence for a known error; unknown errors are logged and get a generic sentence."""
    if isinstance(exc, REFUSED):
        return str(exc)
    log.error("Unexpected error in the studio", exc_info=exc)
    return present.GENERIC_ERROR


@dataclass(frozen=True, slots=True)
class PageContext:
    """What the handlers know of the studio besides the engine: assets, examples, mode."""

    assets: Path
    examples: list[Path]
    exports: Path
    simulator: bool
    server_key: bool
    hosted: bool = False


class Handlers:
    """Every event of the page. The first two arguments of most are the browser's session id and
    the step this tab shows (its `tab_step`): every edit, compare and retry starts from that step,
    never from whatever another tab, the CLI or an agent made current meanwhile."""

    def __init__(self, c: Components, bridge: Bridge, ctx: PageContext) -> None:
        self.c = c
        self.bridge = bridge
        self.ctx = ctx
        self.tiles = view.Tiles.from_assets(ctx.assets)

    # -- rendering ------------------------------------------------------------------------------

    @property
    def view_outputs(self) -> list[Any]:
        c = self.c
        return [
            c.pair_a,
            c.pair_b,
            c.browser,
            c.tab_step,
            c.version,
            c.sessions,
            c.cost,
            c.source,
            c.result,
            c.slider,
            c.status,
            c.download,
            c.retry,
            c.cancel,
            c.aspect,
            c.history,
            c.branches,
            c.failed,
            c.failed_box,
            c.undo,
            c.redo,
            c.timer,
            c.prompt,
        ]

    @property
    def compare_outputs(self) -> list[Any]:
        c = self.c
        return [
            *self.view_outputs,
            c.compare_pair,
            c.compare_panel,
            c.compare_pro,
            c.compare_max,
            c.compare_pro_text,
            c.compare_max_text,
            c.compare_slider,
            c.keep_pro,
            c.keep_max,
            c.model,
        ]

    async def page(
        self,
        session_id: str | None,
        tab_step: str | None = None,
        *,
        tab_key: str | None = None,
        balance: bool = False,
    ) -> Update:
        """The page for `session_id` seen from `tab_step`, read back from the store."""
        who = self.who_with(tab_key)
        with_balance = balance and (who.api_key is not None or not self.ctx.simulator)
        data = await self.bridge.page(session_id, who, with_balance=with_balance)
        page = view.render_page(data, self.tiles, tab_step)
        download = page.download
        # A hosted studio serves a stored image only to its owner, recognising it by its hash
        # name (ui.guard): there a download keeps that name.
        if download is not None and page.download_name is not None and not self.ctx.hosted:
            folder = self.ctx.exports / "downloads"
            download = await asyncio.to_thread(
                _named_download, folder, Path(download), page.download_name
            )
        return self.updates(page, download)

    @property
    def who(self) -> Visitor:
        """The visitor of the event being handled (settled by `guarded`)."""
        return current()

    def who_with(self, tab_key: str | None) -> Visitor:
        """The visitor, with the key pasted in their tab (if any) for their edits."""
        return self.who.with_key(_secret((tab_key or "").strip()))

    @property
    def hosted(self) -> bool:
        return self.ctx.hosted

    def unnamed(self, refusal: Refusal) -> Update:
        """A request that names no visitor: nothing changes, and the page says why."""
        gr.Warning(str(refusal))
        return {self.c.status: f"⚠ {refusal}"}

    def updates(self, page: view.PageUpdate, download: str | None = None) -> Update:
        """A `PageUpdate` as Gradio component updates; `download` is the shown image under
        the name a download gets (default: as stored)."""
        c = self.c
        tick = layout.TICK_RUNNING_S if page.running else layout.TICK_IDLE_S
        download = download or page.download
        failed = len(page.failed)
        return {
            c.pair_a: gr.Dropdown(choices=page.pair_a.choices, value=page.pair_a.value),
            c.pair_b: gr.Dropdown(choices=page.pair_b.choices, value=page.pair_b.value),
            c.browser: page.session_id if page.session_id else gr.skip(),
            c.tab_step: page.tab_step,
            # What this render shows: the session's version, seen from which step. It goes with
            # the browser's session: a page that leaves that session (a damaged one was picked)
            # leaves its version too, or the next tick would see a change and put the old
            # session back over the sentence saying why.
            c.version: (
                (f"{page.version}|{page.tab_step}" if page.version else None)
                if page.session_id
                else gr.skip()
            ),
            c.sessions: gr.Dropdown(choices=page.sessions.choices, value=page.sessions.value),
            c.cost: page.cost,
            c.source: page.source,
            c.result: page.result,
            c.slider: page.slider,
            c.status: page.status,
            c.download: gr.DownloadButton(value=download, visible=download is not None),
            c.retry: gr.Button(visible=page.retry_visible),
            c.cancel: gr.Button(visible=page.cancel_visible),
            c.aspect: gr.Dropdown(choices=page.aspect_choices),
            # The tab's step is highlighted; setting it does not fire `select` (checked in 6.31).
            c.history: gr.Gallery(value=page.history, selected_index=page.history_selected),
            c.branches: gr.Gallery(value=page.branches, visible=bool(page.branches)),
            c.failed: gr.Gallery(value=page.failed),
            c.failed_box: gr.Accordion(
                label=f"Failed attempts ({failed}): kept out of the way", visible=failed > 0
            ),
            c.undo: gr.Button(interactive=page.can_undo),
            c.redo: gr.Button(interactive=page.can_redo),
            c.timer: gr.Timer(value=tick, active=True),
            c.prompt: gr.skip(),
        }

    async def refused(
        self, session_id: str | None, tab_step: str | None, exc: BaseException
    ) -> Update:
        """The page as it was, with the reason in a toast and in the status line; what was
        typed stays in the box."""
        sentence = error_sentence(exc)
        gr.Warning(present.as_text(sentence))  # toasts render HTML; a refusal may quote input
        return {**(await self.page(session_id, tab_step)), self.c.status: present.warning(sentence)}

    # -- starting points ------------------------------------------------------------------------

    @guarded
    async def on_load(self, session_id: str | None) -> Update:
        if not session_id:
            summaries = await self.bridge.list_sessions(self.who)
            readable = [s for s in summaries if not s.damaged]
            session_id = readable[0].session_id if readable else None
        return await self.page(session_id, balance=True)

    @guarded
    async def on_source(self, _session_id: str | None, _tab: str | None, upload: Any) -> Update:
        """A new session from an upload, a paste or a photo. Registered with `preprocess=False`:
        our intake reads the file, so anything odd gets one sentence, not Gradio's "Error"."""
        path = upload.get("path") if isinstance(upload, dict) else upload
        if not path:
            return {self.c.status: gr.skip()}
        name = upload.get("orig_name") if isinstance(upload, dict) else None
        try:
            data = await asyncio.to_thread(Path(path).read_bytes)
            session = await self.bridge.start_session(data, self.who, name=_upload_name(name))
        finally:  # the store keeps the one copy (or nothing, if refused)
            await asyncio.to_thread(discard_upload, Path(path), _upload_folder())
        return await self.page(session.session_id)

    @guarded
    async def on_clear_source(self, _session_id: str | None, _tab: str | None) -> Update:
        """The source was removed with ✕: the page starts afresh (the next instruction
        generates an image, in a new session), instead of editing the step it no longer shows."""
        return {**(await self.page(None)), self.c.browser: None, self.c.tab_step: None}

    @guarded
    async def on_example(
        self, _session_id: str | None, _tab: str | None, evt: gr.SelectData
    ) -> Update:
        example = self.ctx.examples[int(evt.index)]
        data = await asyncio.to_thread(example.read_bytes)
        session = await self.bridge.start_session(
            data, self.who, name=f"{example.stem.capitalize()} example"
        )
        return await self.page(session.session_id)

    @guarded
    async def on_link(self, _session_id: str | None, _tab: str | None, url: str | None) -> Update:
        url = (url or "").strip()
        if not url:
            raise Refusal("Paste a link to an image first.")
        session = await self.bridge.start_session_from_link(url, self.who)
        return await self.page(session.session_id)

    @guarded
    async def on_new_session(self, _session_id: str | None, _tab: str | None) -> Update:
        session = await self.bridge.start_session(None, self.who)
        return await self.page(session.session_id)

    @guarded
    async def on_pick_session(
        self, _session_id: str | None, _tab: str | None, picked: str | None
    ) -> Update:
        return await self.page(picked) if picked else {self.c.status: gr.skip()}

    # -- edits ----------------------------------------------------------------------------------

    @guarded
    async def on_edit(
        self,
        session_id: str | None,
        tab_step: str | None,
        prompt: str | None,
        model: str,
        aspect: str,
        output_format: str,
        translation: bool,
        expansion: bool,
        safety: float,
        tab_key: str | None,
    ) -> Update:
        """Queue the instruction after the step this tab shows; while that step still runs,
        the new one waits for its image (typing ahead). Returns at once: the tab's timer shows
        the progress, so switching sessions meanwhile never pulls the page back."""
        params = _form_params(prompt, model, aspect, output_format, translation, expansion, safety)
        session_id = await self._session_or_new(session_id)
        step = await self.bridge.submit_edit(
            session_id, params, self.who_with(tab_key), parent_step_id=tab_step
        )
        # Clear the instruction once it is on its way, ready for the next one.
        return {**(await self.page(session_id, step.step_id)), self.c.prompt: ""}

    @guarded
    async def on_retry(
        self, session_id: str | None, tab_step: str | None, tab_key: str | None
    ) -> Update:
        if not session_id or not tab_step:
            raise Refusal("There is no failed step to retry here.")
        step = await self.bridge.retry(session_id, tab_step, self.who_with(tab_key))
        return await self.page(session_id, step.step_id)

    @guarded
    async def on_cancel(self, session_id: str | None, tab_step: str | None) -> Update:
        if not session_id or not tab_step:
            raise Refusal("There is no queued edit to cancel here.")
        session = await self.bridge.cancel(session_id, tab_step, self.who)
        return await self.page(session_id, session.current_step_id)

    @guarded
    async def on_compare(
        self,
        session_id: str | None,
        tab_step: str | None,
        prompt: str | None,
        aspect: str,
        output_format: str,
        translation: bool,
        expansion: bool,
        safety: float,
        tab_key: str | None,
    ) -> Update:
        """Queue the instruction on pro and max from the step this tab shows; the tab's timer
        shows each side the moment it is ready."""
        params = _form_params(prompt, "pro", aspect, output_format, translation, expansion, safety)
        session_id = await self._session_or_new(session_id)
        pro, max_ = await self.bridge.compare(
            session_id, params, self.who_with(tab_key), parent_step_id=tab_step
        )
        ids = (pro.step_id, max_.step_id)
        page = await self.page(session_id, tab_step)
        return {
            **page,
            **(await self._compare_panel(session_id, ids, {})),
            self.c.prompt: "",
            self.c.status: "⏳ Comparing pro and max…",
        }

    async def _compare_panel(
        self, session_id: str, ids: tuple[str, str], running: dict[str, StepUpdate]
    ) -> Update:
        session = await self.bridge.load_session(session_id, self.who)
        if not all(i in session.steps for i in ids):
            return {self.c.compare_pair: None, self.c.compare_panel: gr.Group(visible=False)}
        pro, max_ = (session.steps[i] for i in ids)
        pro_image, max_image = self.bridge.image_path(pro), self.bridge.image_path(max_)
        c = self.c
        return {
            c.compare_pair: ids,
            c.compare_panel: gr.Group(visible=True),
            c.compare_pro: pro_image,
            c.compare_max: max_image,
            c.compare_pro_text: present.compare_text(pro, running.get(pro.step_id)),
            c.compare_max_text: present.compare_text(max_, running.get(max_.step_id)),
            c.compare_slider: (pro_image, max_image) if pro_image and max_image else None,
            c.keep_pro: gr.Button(interactive=pro_image is not None),
            c.keep_max: gr.Button(interactive=max_image is not None),
        }

    @guarded
    async def on_keep_pro(self, session_id: str | None, _tab: str | None, pair: Any) -> Update:
        return await self._keep(session_id, pair, 0)

    @guarded
    async def on_keep_max(self, session_id: str | None, _tab: str | None, pair: Any) -> Update:
        return await self._keep(session_id, pair, 1)

    async def _keep(self, session_id: str | None, pair: Any, side: int) -> Update:
        if not session_id or not isinstance(pair, list | tuple) or len(pair) != 2:
            raise Refusal("There is no comparison to keep a result from; run Compare first.")
        session = await self.bridge.keep(session_id, str(pair[side]), self.who)
        kept = session.current.params
        return {
            **(await self.page(session_id, session.current_step_id)),
            self.c.compare_pair: None,
            self.c.compare_panel: gr.Group(visible=False),
            # The next edit goes on with the model that was kept.
            self.c.model: kept.model if kept else gr.skip(),
        }

    # -- history --------------------------------------------------------------------------------

    @guarded
    async def on_history_select(
        self, session_id: str | None, tab_step: str | None, evt: gr.SelectData
    ) -> Update:
        return await self._select(session_id, tab_step, "line", int(evt.index))

    @guarded
    async def on_branch_select(
        self, session_id: str | None, tab_step: str | None, evt: gr.SelectData
    ) -> Update:
        return await self._select(session_id, tab_step, "branches", int(evt.index))

    @guarded
    async def on_failed_select(
        self, session_id: str | None, tab_step: str | None, evt: gr.SelectData
    ) -> Update:
        return await self._select(session_id, tab_step, "failed", int(evt.index))

    async def _select(
        self, session_id: str | None, tab_step: str | None, strip: str, index: int
    ) -> Update:
        """A click on a tile of one of the strips (as the tab sees the session)."""
        if not session_id:
            return {self.c.status: gr.skip()}
        session = await self.bridge.load_session(session_id, self.who)
        steps = getattr(view.strips(_seen_from(session, tab_step)), strip)
        return await self._move_to(session_id, tab_step, steps, index)

    async def _move_to(
        self, session_id: str, tab_step: str | None, steps: tuple[Step, ...], index: int
    ) -> Update:
        if not 0 <= index < len(steps):
            return await self.page(session_id, tab_step)
        session = await self.bridge.make_current(session_id, steps[index].step_id, self.who)
        return await self.page(session_id, session.current_step_id)

    @guarded
    async def on_undo(self, session_id: str | None, tab_step: str | None) -> Update:
        if not session_id:
            return await self.page(None)
        session = await self.bridge.undo(session_id, tab_step, self.who)
        return await self.page(session_id, session.current_step_id)

    @guarded
    async def on_redo(self, session_id: str | None, tab_step: str | None) -> Update:
        if not session_id:
            return await self.page(None)
        session = await self.bridge.redo(session_id, tab_step, self.who)
        return await self.page(session_id, session.current_step_id)

    @guarded
    async def on_tick(
        self,
        session_id: str | None,
        tab_step: str | None,
        version: str | None,
        pair: Any,
        tab_key: str | None = None,
    ) -> Update:
        """News of the session, at most every second or two: a new or finished step (from this
        tab or anywhere) re-renders the page without moving what the tab shows; otherwise only
        the elapsed time of what runs ticks; with nothing new, nothing is sent."""
        # A render shows a version seen from a step; one from another step (an older tick that
        # crossed an edit in flight) is stale and is drawn again.
        # (A state never set holds no text: read it as no version.)
        seen, _, seen_from = (version if isinstance(version, str) else "").partition("|")
        if not session_id or not seen.startswith(f"{session_id}@"):
            # The page shows no session, or not the one its browser storage names: its states
            # arrive one by one, and this tick fell between a render's (storage still on the
            # session shown before). Drawing that session would pull the page back to it.
            return {self.c.status: gr.skip()}
        fresh = seen_from == (tab_step or "")
        tick = await self.bridge.tick(session_id, seen if fresh else None, self.who)
        ids = tuple(pair) if isinstance(pair, list | tuple) and len(pair) == 2 else None
        if session_id and tick.changed:
            # Something was added or finished: the balance may have moved too.
            update = await self.page(session_id, tab_step, tab_key=tab_key, balance=True)
            if tab_step is not None:
                # Never move the tab: this tick may have crossed an edit that moved it on.
                del update[self.c.tab_step]
            if ids is not None:
                update.update(await self._compare_panel(session_id, ids, tick.running))
            return update
        update = {}
        if tab_step in tick.running:
            running = tick.running[tab_step]
            update[self.c.status] = present.step_status(running.step, running)
        if ids is not None and any(i in tick.running for i in ids):
            pro, max_ = (tick.running.get(i) for i in ids)
            if pro is not None:
                update[self.c.compare_pro_text] = present.compare_text(pro.step, pro)
            if max_ is not None:
                update[self.c.compare_max_text] = present.compare_text(max_.step, max_)
        return update or {self.c.status: gr.skip()}

    @guarded
    async def on_pair(
        self, session_id: str | None, _tab: str | None, left: str | None, right: str | None
    ) -> Update:
        if not session_id or not left or not right:
            return {self.c.slider: gr.skip()}
        session = await self.bridge.load_session(session_id, self.who)
        if left not in session.steps or right not in session.steps:
            return {self.c.slider: gr.skip()}
        a = self.bridge.image_path(session.steps[left])
        b = self.bridge.image_path(session.steps[right])
        return {self.c.slider: (a, b) if a and b else None}

    async def on_tab_step(
        self,
        session_id: str | None,
        tab_step: str | None,
        safety: float | None,
        request: gr.Request | None = None,
    ) -> Any:
        """The safety slider's top follows what the tab's next step is: 2 for an edit, 6 for
        a generation (`Session.next_is_edit`), with the value brought within it."""
        top = SAFETY_MAX_GENERATE
        if session_id and tab_step:
            with contextlib.suppress(*REFUSED):
                who = visitor_from(request, hosted=self.ctx.hosted)
                session = _seen_from(await self.bridge.load_session(session_id, who), tab_step)
                top = SAFETY_MAX_EDIT if session.next_is_edit else SAFETY_MAX_GENERATE
        value = min(int(safety if safety is not None else 2), top)
        return gr.Slider(maximum=top, value=value)

    # -- managing sessions ----------------------------------------------------------------------

    async def on_manage_open(
        self, session_id: str | None, _tab: str | None, request: gr.Request | None = None
    ) -> Update:
        """Opening "Rename or delete" fills in the session's name, ready to edit."""
        name = ""
        if session_id:
            with contextlib.suppress(*REFUSED):
                who = visitor_from(request, hosted=self.ctx.hosted)
                name = (await self.bridge.load_session(session_id, who)).name
        return {self.c.session_name: name, self.c.delete_confirm: gr.Group(visible=False)}

    @guarded
    async def on_rename(
        self, session_id: str | None, tab_step: str | None, name: str | None
    ) -> Update:
        if not session_id:
            raise Refusal("There is no session to rename yet.")
        session = await self.bridge.rename_session(session_id, name or "", self.who)
        return {
            **(await self.page(session_id, tab_step)),
            self.c.session_name: session.name,
            self.c.status: present.renamed(session.name),
        }

    async def on_delete_ask(
        self, session_id: str | None, _tab: str | None, request: gr.Request | None = None
    ) -> Update:
        """Deleting asks first, saying what goes."""
        try:
            if not session_id:
                raise Refusal("There is no session to delete.")
            who = visitor_from(request, hosted=self.ctx.hosted)
            session = await self.bridge.load_session(session_id, who)
        except REFUSED as exc:
            sentence = error_sentence(exc)
            gr.Warning(sentence)
            return {self.c.status: f"⚠ {sentence}", self.c.delete_confirm: gr.skip()}
        edits = len(session.steps) - 1
        text = present.delete_question(session.name, edits)
        return {
            self.c.delete_text: text,
            self.c.delete_confirm: gr.Group(visible=True),
            self.c.status: gr.skip(),
        }

    async def on_delete_no(self) -> Any:
        return gr.Group(visible=False)

    @guarded
    async def on_delete(self, session_id: str | None, _tab: str | None) -> Update:
        """Delete the session (once confirmed), and show the most recent other one."""
        if not session_id:
            raise Refusal("There is no session to delete.")
        gone = await self.bridge.delete_session(session_id, self.who)
        summaries = await self.bridge.list_sessions(self.who)
        next_id = summaries[0].session_id if summaries else None
        return {
            **(await self.page(next_id)),
            self.c.browser: next_id,
            self.c.tab_step: gr.skip() if next_id else None,
            self.c.delete_confirm: gr.Group(visible=False),
            self.c.manage: gr.Accordion(open=False),
            self.c.status: present.deleted(gone.name),
        }

    # -- export and import ----------------------------------------------------------------------

    @guarded
    async def on_export(self, session_id: str | None, _tab: str | None) -> Update:
        if not session_id:
            raise Refusal("There is no session to export yet.")
        session, data = await self.bridge.export_session(session_id, self.who)
        path = await asyncio.to_thread(write_export, self.ctx.exports, session.name, data)
        return {
            self.c.export_file: gr.DownloadButton(value=str(path), visible=True),
            self.c.status: (
                f"Exported {len(session.steps)} steps: use *Download export* to save it."
            ),
        }

    @guarded
    async def on_import(
        self, _session_id: str | None, _tab: str | None, path: str | None
    ) -> Update:
        if not path:
            return {self.c.status: gr.skip()}
        try:
            if (await asyncio.to_thread(Path(path).stat)).st_size > MAX_BUNDLE_BYTES:
                raise Refusal(f"The file is larger than {MAX_BUNDLE_BYTES // 2**20} MB.")
            data = await asyncio.to_thread(Path(path).read_bytes)
            session = await self.bridge.import_session(data, self.who)
        finally:  # imported into the store, or refused: either way the upload has done its work
            await asyncio.to_thread(discard_upload, Path(path), _upload_folder())
        return {
            **(await self.page(session.session_id)),
            self.c.status: present.imported(session.name),
        }

    # -- the key --------------------------------------------------------------------------------

    async def on_key(
        self, key: str | None, remember: bool = False, request: gr.Request | None = None
    ) -> Update:
        """A pasted key is checked at once (a balance call) and said so in one sentence. An
        accepted key is used for this tab (and kept in this browser if asked); a refused one
        is kept too, so edits are refused rather than quietly run elsewhere."""
        key = (key or "").strip() or None
        c = self.c
        if key is None:
            return {
                c.tab_key: None,
                c.key_store: None,
                c.banner: self._banner(None, has_key=False),
                c.key_note: "",
            }
        note, accepted = await self._check_key(key, request)
        return {
            c.tab_key: key,
            c.key_store: key if remember and accepted else None,
            c.banner: self._banner(accepted, remembered=bool(remember and accepted)),
            c.key_note: note,
        }

    async def on_remember(
        self, key: str | None, remember: bool, request: gr.Request | None = None
    ) -> Update:
        """Keep the key in this browser's storage, or forget it there."""
        key = (key or "").strip() or None
        c = self.c
        if key is None or not remember:
            return {c.key_store: None, c.key_note: gr.skip(), c.banner: gr.skip()}
        note, accepted = await self._check_key(key, request)
        return {
            c.key_store: key if accepted else None,
            c.key_note: note,
            c.banner: self._banner(accepted, remembered=accepted is True),
        }

    async def on_load_key(self, stored: str | None, request: gr.Request | None = None) -> Update:
        """A key this browser was asked to remember: used again, checked again, and named."""
        c = self.c
        key = stored.strip() if isinstance(stored, str) and stored.strip() else None
        if key is None:
            return {c.user_key: gr.skip(), c.tab_key: gr.skip(), c.remember_key: gr.skip()}
        note, accepted = await self._check_key(key, request)
        return {
            c.user_key: key,
            c.tab_key: key,
            c.remember_key: True,
            c.banner: self._banner(accepted, remembered=True),
            c.key_note: note,
        }

    async def _check_key(self, key: str, request: gr.Request | None) -> tuple[str, bool | None]:
        """One sentence about a pasted key, and whether RunAPI took it (None: not known).
        Checks are counted per visitor (a few a minute)."""
        try:
            who = visitor_from(request, hosted=self.ctx.hosted)
        except Refusal as exc:
            return f"⚠ {exc}", None
        check = await self.bridge.check_key(Secret(key), who)
        if check.accepted is False or (check.accepted is None and check.refusal):
            return f"⚠ {check.refusal}", check.accepted
        if check.accepted is None:
            return (
                "⚠ The key could not be checked now (RunAPI did not answer); edits in this "
                "tab will use it and say so if it is refused.",
                None,
            )
        money = (
            ""
            if check.balance_cents is None
            else (f" The account has {format_cents(check.balance_cents)}.")
        )
        return f"✓ RunAPI accepted your key.{money} Edits in this tab use it.", True

    def _banner(
        self, accepted: bool | None, *, has_key: bool = True, remembered: bool = False
    ) -> str:
        return present.banner(
            simulator=self.ctx.simulator,
            server_key=self.ctx.server_key,
            user_key=has_key,
            key_refused=has_key and accepted is False,
            remembered=remembered,
        )

    # -- plumbing -------------------------------------------------------------------------------

    async def _session_or_new(self, session_id: str | None) -> str:
        """The visitor's session, or a new one without an image (the edit then generates)."""
        if session_id:
            return session_id
        return (await self.bridge.start_session(None, self.who)).session_id


def _seen_from(session: Session, tab_step: str | None) -> Session:
    """The session as the tab sees it: its path runs to the tab's step."""
    if tab_step is None or tab_step not in session.steps:
        return session
    return session.make_current(tab_step)


def _form_params(
    prompt: str | None,
    model: str,
    aspect: str,
    output_format: str,
    translation: bool,
    expansion: bool,
    safety: float,
) -> EditParams:
    return parse_params(
        prompt,
        model=model,
        aspect_ratio=aspect,
        output_format=output_format,
        enable_translation=translation,
        enable_prompt_expansion=expansion,
        safety_tolerance=safety,
    )


def _upload_folder() -> Path:
    """Where Gradio keeps uploads (GRADIO_TEMP_DIR, else the temp dir's `gradio`)."""
    return Path(gr.utils.get_upload_folder())


def _secret(key: str | None) -> Secret | None:
    return Secret(key) if key else None


# What browsers and phones call a file with no name of its own (a paste, a photo): no name.
_GENERIC_UPLOAD_NAMES = re.compile(r"(image|blob|webcam|clipboard|screenshot|photo)(\.\w+)?", re.I)


def _upload_name(orig_name: object) -> str | None:
    """A session name from an upload's file name, or None for a paste or photo with none."""
    if not isinstance(orig_name, str):
        return None
    name = " ".join(Path(orig_name).name.split())[:60]
    if not name or _GENERIC_UPLOAD_NAMES.fullmatch(name):
        return None
    return name


def _named_download(folder: Path, stored: Path, name: str) -> str:
    """The stored image under a name a person recognises ("holiday-step-3.png"), for the
    Download button: Gradio serves a file by its own name, and stored files are named by
    their SHA-256. A link in a temporary folder (a copy where links are not possible), made
    once per image and name; the stored file stays the one true copy."""
    target = folder / stored.stem[:16] / name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            target.symlink_to(stored)
        except FileExistsError:
            pass
        except OSError:
            shutil.copyfile(stored, target)
    return str(target)


__all__ = ["Handlers", "PageContext", "Refusal", "error_sentence"]
