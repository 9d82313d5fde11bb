"""The page's handlers, as methods of one class: parse the input, make one bridge call, render.

Each public method is registered by `events.wire` (after Gradio's `ChatInterface`, whose
`_setup_events` registers `_submit_fn` and friends). A handler never sees the store or the
engine: it asks the `Bridge`, renders with the pure `view`, and turns the `PageUpdate` into
component updates here. What it shows is always read back from the store, so a reload, a second
tab and a restarted server all show the same truth.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import functools
import itertools
import logging
import re
import shutil
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.blocks import Block
from PIL import Image, ImageOps

from studio.config import Secret
from studio.history import HistoryError, Session, Step, StepState, StepUpdate
from studio.params import EditParams, RegionRequest, parse_box, parse_params, safety_max
from studio.ui import layout, present, prose, tree, view
from studio.ui.bridge import MAX_BUNDLE_BYTES, Bridge, Engine, OwnKeyNeeded, Tick, Visitor
from studio.ui.export import export_file, export_link
from studio.ui.files import discard_upload, fitted_name, keep_fitted
from studio.ui.layout import Components
from studio.ui.tabkeys import TabKeys
from studio.ui.tabstate import was_forgotten
from studio.ui.turns import aside, turn_of
from studio.ui.visitor import REFUSED, Refusal, current, current_tab, guarded

log = logging.getLogger(__name__)

# What a handler answers: a new value or an update for each component it changes.
Update = dict[Block, object]


_ABSENT = object()


def _withdrawn(step: Step) -> tuple[str, str, str]:
    """A queued step taken back (its ✕, or an undo), as the page puts its words back in the
    box: its id, its instruction and when it was queued (`tree.history_html`)."""
    prompt = step.params.prompt if step.params is not None else ""
    return step.step_id, prompt, step.created_at.isoformat()


def changed_from_config(block: Block, update: object) -> object:
    """`update` (a component's new props) less what the page already has from its config, or
    `gr.skip()` when nothing is left: for the load event, whose page is the config as built.

    Gradio's page applies each prop of each output apart, and a `visible` one (even unchanged)
    walks its whole tree of components again. A returning visitor's load sent six hidden
    components' `visible=False` and the canvas's `visible=True` again; without them, and with
    the load's progress on one output (`events.wire`), the page makes about 30 % fewer
    JavaScript calls a load (README, Numbers: page). Values that are not component updates
    (text, states) are sent as they are."""
    if not isinstance(update, Block):
        return update
    props = getattr(block, "props", None)
    changed = {
        name: value
        for name, value in update.constructor_args.items()
        if value
        != (
            props[name]
            if isinstance(props, dict) and name in props
            else getattr(block, name, _ABSENT)
        )
    }
    return type(update)(**changed) if changed else gr.skip()


def error_sentence(exc: BaseException) -> str:
    """One sentence for a known error; unknown errors are logged and get a generic sentence."""
    if isinstance(exc, REFUSED):
        return str(exc)
    log.error("Unexpected error in the studio: %r", exc, exc_info=exc)
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
    # The studio's root path behind a proxy (`Settings.root_path`), for the page's own links.
    root_path: str = ""
    # Whether turns are kept for each network address too (`Settings.addresses_apart`).
    addresses_apart: bool = True
    # Keys pasted in tabs, held over a reload of the tab (`ui.tabkeys`).
    tab_keys: TabKeys = field(default_factory=TabKeys)


KEEP_FIRST = (
    "Keep one of the results first: the next instruction edits the one you keep (or click a "
    "step in the history to edit that one instead)."
)
# The status line while a tab's results wait for one to be kept (`_awaits_keep`).
KEEP_TO_GO_ON = (
    "Keep one of the results to go on from it (or click a step in the history to edit that "
    "one instead)."
)
TAB_FORGOTTEN = (
    "This tab was open so long that the studio let go of what it held for it (a RunAPI key "
    "pasted here among it); reload the page to go on."
)
# A ✕ the page drew a moment before its step went (`_cancel`).
GONE_BEFORE_CANCEL = (
    "That queued edit was no longer there to cancel: it had been cancelled or taken back a "
    "moment before."
)
# Seconds a sentence a tab was just told (an edit cancelled or taken back) stays in its
# status line before the timer's running time replaces it: it showed for half a second
# (audit 16). News (a step done) replaces it at once.
SAID_S = 3.0
# How many tabs' typing-ahead records are kept (the oldest go first).
MAX_TABS = 4096
# How many steps of a tab's chain of Enters are remembered (a page is a few replies behind at most).
CHAIN_KEPT = 32
# Seconds an Enter waits for the ones typed before it to be taken.
TURN_WAIT_S = 10.0


class _Tab:
    """What the server knows of one tab's typing: the last Enter it took (`done`) and refused
    (`refused`), and the chain its Enters made since it last moved (the step the first started
    from, then each step made), so that an instruction typed ahead follows the one before it
    even when the page has not yet heard back about that one."""

    def __init__(self) -> None:
        self.done = 0
        self.refused = 0
        # The step the chain started from, then the steps its edits made, in order.
        self.chain: list[str | None] = []
        self.notice: str | None = None
        # The session the last render sent to this tab shows (once one was sent: `known`). A
        # tick about another was sent before the page heard of that render (+ New, another
        # session picked, this one deleted), and would pull the page back.
        self.showing: str | None = None
        self.known = False
        # The session list shows all of the visitor's sessions, not only the newest (asked for).
        self.every_session = False
        # "Compare two steps" was opened in this tab: its two dropdowns (every finished step of
        # the session, a long list for a long history) go with each render from then on only.
        self.pair_open = False
        # Results this tab asked for at once and has not kept one of yet: the step they were
        # made from, and their ids (`Handlers._require_kept`).
        self.unkept: tuple[str | None, tuple[str, ...]] | None = None
        # Those results are on show under the canvas (until one is kept or the tab moves), and
        # the last ones folded away: a tick sent before the fold still names them.
        self.results_shown: tuple[str, ...] = ()
        self.results_folded: tuple[str, ...] = ()
        # The steps this tab undid, nearest first: its redo line (`Session.seen_from`), whatever
        # another tab made after its step since (that one is a branch, and a notice; another
        # tab's step came back on this one's redo: UX audit 4).
        self.ahead: list[str] = []
        # When this tab was last told something the timer's running time must not replace at
        # once (`said`, `SAID_S`).
        self._said_at = -SAID_S
        self._turns = asyncio.Condition()

    def said(self) -> None:
        """The tab was just told something to read (an edit cancelled or taken back)."""
        self._said_at = time.monotonic()

    @property
    def telling(self) -> bool:
        """Whether what the tab was last told is still to be left in its status line."""
        return time.monotonic() - self._said_at < SAID_S

    @property
    def last(self) -> str | None:
        return self.chain[-1] if len(self.chain) > 1 else None

    def parent_for(self, tab_step: str | None) -> str | None:
        """The step the next edit goes after: the last edit of this tab when the page sent a
        step of its chain (the replies to the Enters before had not all arrived: the page
        still showed where the chain started, or one of its steps), else the tab's step."""
        if self.last is not None and tab_step in self.chain:
            return self.last
        return tab_step

    def chained(self, tab_step: str | None, step_id: str) -> None:
        """An edit sent from `tab_step` made `step_id` (after `parent_for(tab_step)`)."""
        if self.last is None or tab_step not in self.chain:
            self.chain = [tab_step]
        self.chain.append(step_id)
        self.ahead = []
        del self.chain[:-CHAIN_KEPT]

    def moved_from(self, session_id: str) -> bool:
        """Whether this tab was last sent a render of another session than `session_id`."""
        return self.known and self.showing != session_id

    def cancelled(self, step_id: str) -> None:
        """A queued step was cancelled: the ones after it run from the step before it."""
        if step_id in self.chain[1:]:
            self.chain.remove(step_id)

    def moved(self) -> None:
        """The tab moved (a click, undo, a kept candidate): its next edit starts there."""
        self.chain = []
        self.unkept = None
        self.ahead = []

    def undid(self, left: str | None) -> None:
        """The tab went back from `left` (its step until then) to the step before it."""
        ahead = self.ahead
        self.moved()
        self.ahead = [left, *ahead][:CHAIN_KEPT] if left else []

    def went_to(self, session: Session) -> None:
        """The tab moved to `session`'s current step, as it saw the session: its redo line is
        what lies ahead of it there."""
        self.moved()
        self.ahead = list(reversed(session.redo_stack))[:CHAIN_KEPT]

    @contextlib.asynccontextmanager
    async def turn(self, seq: int) -> AsyncIterator[None]:
        """Take Enter number `seq` after those before it (0: no number, no wait)."""
        async with self._turns:
            if seq:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._turns.wait_for(lambda: self.done >= seq - 1), TURN_WAIT_S
                    )
        try:
            yield
        finally:
            async with self._turns:
                self._turns.notify_all()


class Handlers:
    """Every event of the page. The first two arguments of most are the browser's session id and
    the step this tab shows (its `tab_step`): every edit, compare and retry starts from that step,
    never from whatever another tab, the CLI or an agent made current meanwhile."""

    def __init__(self, c: Components, bridge: Bridge, ctx: PageContext) -> None:
        self.c = c
        self.bridge = bridge
        self.ctx = ctx
        self.tiles = view.Tiles.from_assets(ctx.assets)
        self._tabs: OrderedDict[str, _Tab] = OrderedDict()

    def _tab(self) -> _Tab:
        """The record of the tab whose event is being handled (a fresh one for a direct call)."""
        key = current_tab()
        if key is None:
            return _Tab()
        tab = self._tabs.get(key)
        if tab is None:
            tab = self._tabs[key] = _Tab()
            while len(self._tabs) > MAX_TABS:
                self._tabs.popitem(last=False)
        else:
            self._tabs.move_to_end(key)
        return tab

    # -- rendering ------------------------------------------------------------------------------

    @property
    def view_outputs(self) -> list[Block]:
        c = self.c
        return [
            # The tab's states first: Gradio sets them the moment the reply is made, before it
            # lets anything else run (a thread for each other component). After those, a second
            # Enter's reply could be made and set first: the tab stayed on the first edit (CI).
            # (What the page itself holds, as `version`, lands in the order replies reach it.)
            c.tab_step,
            c.picks,
            c.version,
            c.pair_a,
            c.pair_b,
            c.browser,
            c.header,
            c.source,
            c.empty,
            c.result,
            c.before,
            c.hold,
            c.tools,
            c.raw,
            c.status,
            c.download,
            c.retry,
            c.options,
            c.history,
            c.notice,
            c.history_tools,
            c.timer,
            c.safety,
            c.candidates,
        ]

    async def page(
        self,
        session_id: str | None,
        tab_step: str | None = None,
        *,
        tab_key: str | None = None,
        tick: bool = False,
        model: str | None = None,
        sessions_open: bool = False,
        withdrawn: tuple[str, str, str] | None = None,
    ) -> Update:
        """The page for `session_id` seen from `tab_step`, read back from the store (for a
        `tick`: news of the session the page named, which does not move the tab;
        `sessions_open`: with the session list unfolded; `withdrawn`: a queued step this tab's
        undo took back, whose instruction the page puts back into the box)."""
        tab = self._tab()
        every = tab.every_session
        address = self.who.address if self.ctx.addresses_apart else None
        async with turn_of(self.who.owner, address) as turn:  # (`ui.turns`)
            data = await self.bridge.page(
                session_id,
                self.who_with(tab_key),
                every_session=every,
                tab_step=tab_step,
                ahead=tab.ahead,
                thumbnails=False,
            )
            if data.wanted:
                # Made (a fresh import's: seconds of decoding on their own thread) outside the
                # studio's draws, so nobody else's page waits for them (review 18 F1).
                async with aside(turn):
                    made = await self.bridge.call(
                        Engine.thumbnails, list(data.wanted), visitor=self.who
                    )
                thumbs = {sha: str(path) for sha, path in made.items()}
                data = dataclasses.replace(data, thumbs=thumbs, wanted=())
            page = view.render_page(
                data,
                self.tiles,
                tab_step,
                done=tab.done,
                refused=tab.refused,
                every_session=every,
                sessions_open=sessions_open,
                withdrawn=withdrawn,
                ahead=tab.ahead,
            )
        if not tick:
            tab.showing, tab.known = page.session_id, True
        download = page.download
        # A hosted studio serves a stored image only to its owner, recognising it by its hash
        # name (ui.guard): there a download keeps that name.
        if download is not None and page.download_name is not None and not self.ctx.hosted:
            folder = self.ctx.exports / "downloads"
            download = await asyncio.to_thread(
                _named_download, folder, Path(download), page.download_name
            )
            if page.raw is not None and page.raw_name is not None:
                # (It downloaded as its hash, "10189c4b…a49a1f.png": UX audit 5.)
                raw = await asyncio.to_thread(
                    _named_download, folder, Path(page.raw), page.raw_name
                )
                page = dataclasses.replace(page, raw=raw)
        update = self.updates(page, download, model)
        if tab.results_shown and tab.unkept is None and not tick:
            # One was kept, or the tab moved: the results fold (they stay in the tree as
            # branches), and the ticks stop drawing them. (They stayed, with their Keep
            # buttons, under a tab that had moved on: UX audit 3.)
            tab.results_folded, tab.results_shown = tab.results_shown, ()
            update.update({self.c.picks: None, self.c.candidates: gr.HTML("", visible=False)})
        if _awaits_keep(tab, page.tab_step, data.session):
            # (It said "Ready: type an instruction", which is refused until one is kept: UX
            # audit 3.)
            update[self.c.status] = KEEP_TO_GO_ON
        return update

    @property
    def who(self) -> Visitor:
        """The visitor of the event being handled (settled by `guarded`)."""
        return current()

    def who_with(self, tab_key: str | None) -> Visitor:
        """The visitor, with the key pasted in their tab (if any) for their edits."""
        return self.who.with_key(_secret((tab_key or "").strip()))

    def payer(self, tab_key: str | None) -> Visitor:
        """`who_with`, for an edit: refused for a tab whose record the studio let go of (its
        pasted key, if any, went with it, and its edits would otherwise go on, silently, on
        the server's key)."""
        if was_forgotten(current_tab()):
            raise Refusal(TAB_FORGOTTEN)
        return self.who_with(tab_key)

    @property
    def hosted(self) -> bool:
        return self.ctx.hosted

    def unnamed(self, refusal: Refusal) -> Update:
        """A request that names no visitor: nothing changes, and the page says why."""
        gr.Warning(str(refusal))
        return {self.c.status: f"⚠ {refusal}"}

    def updates(
        self, page: view.PageUpdate, download: str | None = None, model: str | None = None
    ) -> Update:
        """A `PageUpdate` as Gradio component updates; `download` is the shown image under
        the name a download gets (default: as stored); `model` the one the next edit takes.
        The instruction box is never among them: only the page itself empties it, at the moment
        of Enter (assets/studio.js)."""
        c = self.c
        tick = layout.TICK_RUNNING_S if page.running else layout.TICK_IDLE_S
        download = download or page.download
        has_image = page.result is not None
        self._tab().notice = page.notice_step
        options: dict[str, Any] = {"match": page.aspect_choices[0][0]}
        if model:
            options["model"] = f"{model}|{page.tab_step}"
        pair: Update = {}
        if self._tab().pair_open:
            pair = {
                c.pair_a: gr.Dropdown(choices=page.pair_a.choices, value=page.pair_a.value),
                c.pair_b: gr.Dropdown(choices=page.pair_b.choices, value=page.pair_b.value),
            }
        return pair | {
            c.browser: page.session_id or (None if page.forget else gr.skip()),
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
            # The header: the session list, and the session's cost.
            c.header: gr.HTML(value=page.sessions_html, cost=prose.to_html(page.cost)),
            c.source: None,
            c.empty: gr.Column(visible=not has_image),
            c.result: gr.Image(value=page.result, visible=has_image),
            c.before: gr.Image(value=page.before, visible=page.before is not None),
            c.hold: gr.Button(visible=page.before is not None),
            c.tools: gr.HTML(visible=has_image),
            c.raw: gr.DownloadButton(value=page.raw, visible=page.raw is not None),
            c.status: page.status,
            c.download: gr.DownloadButton(value=download, visible=download is not None),
            c.retry: gr.Button(visible=page.retry_visible),
            # The ratio's "Match source" label (the options row is plain controls: the page
            # script puts it in), and the model a kept candidate used, for the next edit.
            c.options: gr.HTML(**options),
            c.history: page.history,
            c.notice: gr.Button(value=page.notice or "", visible=page.notice is not None),
            c.history_tools: gr.HTML(
                can_undo=page.can_undo,
                can_redo=page.can_redo,
                can_export=page.session_id is not None,
            ),
            c.timer: gr.Timer(value=tick, active=True),
            # The safety slider's top follows the tab's step: 2 when the next step edits, 6
            # when it generates (its value is brought within it when Advanced opens).
            c.safety: gr.Slider(maximum=page.safety_max),
        }

    async def refused(self, args: tuple[object, ...], exc: BaseException) -> Update:
        """The page as it was (most handlers take the session and the tab's step first), with
        the reason in a toast and in the status line; what was typed stays in the box."""
        session_id, tab_step = (_text(a) for a in (*args, None, None)[:2])
        # (The engine's sentence also tells API and MCP callers which header takes a key.)
        sentence = (
            present.OWN_KEY_NEEDED
            if isinstance(exc, OwnKeyNeeded)
            else present.on_page(error_sentence(exc))
        )
        gr.Warning(present.as_text(sentence))  # toasts render HTML; a refusal may quote input
        return {**(await self.page(session_id, tab_step)), self.c.status: present.warning(sentence)}

    # -- starting points ------------------------------------------------------------------------

    @guarded
    async def on_load(
        self,
        session_id: str | None,
        stored_key: str | None = None,
        key_token: str | None = None,
        shown: str | None = None,
    ) -> Update:
        """The page at load: the browser's session (else the newest), and the key this browser
        was asked to remember, or else the key pasted in this tab before a reload (held under
        `key_token`: `ui.tabkeys`), put back in its box (whose change checks it: `on_key`). The
        balance is asked of RunAPI once the page is drawn (`on_balance`), never before.

        A reloaded tab comes back on the step it showed (`shown`: "session|step", kept by the
        page), not on the session's newest: reloaded while another tab's edit ran, it came back
        on that edit, and its next instruction edited that picture (audit 15)."""
        if not session_id:
            summaries = await self.bridge.call(Engine.list_sessions, visitor=self.who)
            readable = [s for s in summaries if not s.damaged]
            session_id = readable[0].session_id if readable else None
        was_on, _, step = (shown if isinstance(shown, str) else "").partition("|")
        tab_step = step if session_id and was_on == session_id and step else None
        update = {
            block: changed_from_config(block, value)
            for block, value in (await self.page(session_id, tab_step)).items()
        }
        update.update(await self._pending_choice(session_id, update.get(self.c.tab_step)))
        update[self.c.balance_due] = "load"
        # What the page's first draw leaves out shows now, in what holds it (`layout.fold`):
        # its code loads once the page can be used.
        for part in self.c.held_back:
            update.setdefault(part, gr.update(visible=True))
        key = stored_key.strip() if isinstance(stored_key, str) else ""
        if key:
            update[self.c.remember_key] = gr.update(value=True, visible=True)
            update[self.c.user_key] = gr.update(value=key, visible=True)
        elif (held := self.ctx.tab_keys.take(self.who.owner or "", key_token)) is not None:
            update[self.c.user_key] = gr.update(value=held.reveal(), visible=True)
        return update

    @guarded
    async def on_source(self, _session_id: str | None, _tab: str | None, upload: object) -> Update:
        """A new session from an upload, a paste or a photo. Registered with `preprocess=False`:
        our intake reads the file, so anything odd gets one sentence, not Gradio's "Error"."""
        path = upload.get("path") if isinstance(upload, dict) else upload
        if not isinstance(path, str) or not path:
            return {self.c.status: gr.skip()}
        name = upload.get("orig_name") if isinstance(upload, dict) else None
        self._require_own_upload(path)
        try:
            try:
                data = await asyncio.to_thread(Path(path).read_bytes)
            except OSError:  # the same file sent twice at once: the first upload took it
                raise Refusal(UPLOAD_GONE) from None
            session = await self.bridge.call(
                Engine.start_session_from_bytes, data, name=_upload_name(name), visitor=self.who
            )
        finally:  # the store keeps the one copy (or nothing, if refused)
            await self._discard_upload(path)
        return await self.page(session.session_id)

    def _require_own_upload(self, path: str) -> None:
        """On a hosted studio, the file an upload event names must be an upload of this
        visitor's that no handler has taken yet: a path is no secret, and Gradio lets an event
        name any file it serves (another visitor's upload, a stored image, an export)."""
        if self.ctx.hosted and not self.bridge.uploads.holds(path, self.who.owner):
            raise Refusal(UPLOAD_GONE)

    async def _discard_upload(self, path: str) -> None:
        self.bridge.uploads.forget(path)
        await asyncio.to_thread(discard_upload, Path(path), _upload_folder())

    @guarded
    async def on_example(
        self, _session_id: str | None, _tab: str | None, evt: gr.EventData
    ) -> Update:
        clicked = getattr(evt, "_data", None) or {}
        index = str(clicked.get("step", "")) if isinstance(clicked, dict) else ""
        if not index.isdigit() or int(index) >= len(self.ctx.examples):
            return {self.c.status: gr.skip()}
        example = self.ctx.examples[int(index)]
        data = await asyncio.to_thread(example.read_bytes)
        name = f"{example.stem.capitalize()} example"
        session = await self.bridge.call(
            Engine.start_session_from_bytes, data, name=name, visitor=self.who
        )
        return await self.page(session.session_id)

    @guarded
    async def on_link(self, _session_id: str | None, _tab: str | None, url: str | None) -> Update:
        url = (url or "").strip()
        if not url:
            raise Refusal("Paste a link to an image first.")
        session = await self.bridge.call(Engine.start_session_from_link, url, visitor=self.who)
        return await self.page(session.session_id)

    async def _new_session(self) -> Update:
        """An empty page: an upload, a link, an example or an instruction starts the session
        (so a new session that never got an image leaves nothing behind)."""
        self._tab().moved()
        return {**(await self.page(None)), self.c.browser: None, self.c.tab_step: None}

    @guarded
    async def on_header_click(
        self, session_id: str | None, tab_step: str | None, evt: gr.EventData
    ) -> Update:
        """A click in the header: + New (`act` "new"), a session picked in the list (`act`
        "open"; what the page sends is only its id: checked behind the bridge), or the list's
        older sessions asked for (`act` "every": the list, unfolded, with all of them)."""
        clicked = getattr(evt, "_data", None) or {}
        act = str(clicked.get("act", "")) if isinstance(clicked, dict) else ""
        if act == "new":
            return await self._new_session()
        if act == "every":
            self._tab().every_session = True
            return await self.page(session_id, tab_step, sessions_open=True)
        picked = str(clicked.get("step", "")) if isinstance(clicked, dict) else ""
        if not picked or act != "open":
            return {self.c.status: gr.skip()}
        self._tab().moved()
        return await self.page(picked)

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
        ticket: str | None = None,
        keep_rest: bool = False,
        count: str | None = None,
        region: str | None = None,
    ) -> Update:
        """Queue the instruction after the step this tab shows; while that step still runs,
        the new one waits for its image (typing ahead). Returns at once: the tab's timer shows
        the progress, so switching sessions meanwhile never pulls the page back.

        `ticket` numbers the tab's Enters (the page script sets it): instructions typed ahead
        are taken in that order, each after the one before, even when the reply to the one
        before has not reached the page yet. With `count` above 1, that many candidates.
        `region` is what the page drew on the canvas for this edit (a mask or a box); with
        `keep_rest`, everything outside it (or outside what the edit changed) is kept exactly.
        """
        tab = self._tab()
        seq = _ticket(ticket)
        async with tab.turn(seq):
            try:
                params = _form_params(
                    prompt, model, aspect, output_format, translation, expansion, safety, keep_rest
                )
                drawn = _region(region)
                parent = tab.parent_for(tab_step)
                if not session_id:
                    # A new session (none open, or the open one deleted elsewhere): the edit
                    # generates there. The tab's step of the deleted one was sent as the parent:
                    # "There is no step … in this session", an empty session left behind for
                    # each Enter (UX audit 12).
                    parent = None
                async with self._session_for_edit(session_id) as session_id:
                    await self._require_kept(tab, session_id, parent)
                    many = _count(count)
                    if many > 1:
                        steps = await self.bridge.call(
                            Engine.candidates,
                            session_id,
                            params,
                            count=many,
                            parent_step_id=parent,
                            region=drawn,
                            visitor=self.payer(tab_key),
                        )
                        tab.moved()
                        tab.unkept = (parent, tuple(s.step_id for s in steps))
                        await self._choice_pending(session_id, tab.unkept)
                        return await self._with_candidates(session_id, parent, steps)
                    step = await self.bridge.call(
                        Engine.submit_edit,
                        session_id,
                        params,
                        parent_step_id=parent,
                        region=drawn,
                        visitor=self.payer(tab_key),
                    )
            except REFUSED:
                tab.refused = max(tab.refused, seq)
                raise
            finally:
                tab.done = max(tab.done, seq)
            tab.chained(tab_step, step.step_id)
            # Drawn before the next Enter is taken: a reply drawn after the next one's (its
            # store read waiting behind that edit's writes) would move the tab back a step.
            return await self.page(session_id, step.step_id)

    @guarded
    async def on_retry(
        self, session_id: str | None, tab_step: str | None, tab_key: str | None
    ) -> Update:
        """Try the tab's step again (failed or not): a new sibling with the same instruction."""
        if not session_id or not tab_step:
            raise Refusal("There is no step to try again here.")
        step = await self.bridge.call(
            Engine.retry, session_id, tab_step, visitor=self.payer(tab_key)
        )
        self._tab().moved()
        return await self.page(session_id, step.step_id)

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
        keep_rest: bool = False,
        region: str | None = None,
    ) -> Update:
        """Queue the instruction on pro and max from the step this tab shows, in the region
        drawn on the canvas (if any); the tab's timer shows each side the moment it is ready."""
        params = _form_params(
            prompt, "pro", aspect, output_format, translation, expansion, safety, keep_rest
        )
        drawn = _region(region)
        if not session_id:  # (a new session: the tab's step, if any, is of another)
            tab_step = None
        async with self._session_for_edit(session_id) as session_id:
            steps = await self.bridge.call(
                Engine.candidates,
                session_id,
                params,
                models=("pro", "max"),
                parent_step_id=tab_step,
                region=drawn,
                visitor=self.payer(tab_key),
            )
        tab = self._tab()
        tab.moved()
        tab.unkept = (tab_step, tuple(s.step_id for s in steps))
        await self._choice_pending(session_id, tab.unkept)
        return await self._with_candidates(session_id, tab_step, steps)

    async def _choice_pending(
        self, session_id: str, unkept: tuple[str | None, tuple[str, ...]] | None
    ) -> None:
        """Results of `session_id` wait for one to be kept (None: no longer). A tab closed or
        reloaded meanwhile came back with no side by side and no Keep buttons, and nothing said
        a choice was pending (UX audit 5): a page loaded on that step shows them again
        (`_pending_choice`), after a restart too (the store keeps it)."""
        from_step, ids = unkept if unkept is not None else (None, None)
        await self.bridge.call(Engine.note_choice, session_id, from_step, ids, visitor=self.who)

    async def _pending_choice(self, session_id: str | None, tab_step: object) -> Update:
        """For a page just loaded on the step results were made from while none is kept yet
        (and one may still be: not all failed, none edited on since): those results side by
        side with their Keep buttons, as the tab that asked for them showed them, and the
        status saying a choice waits."""
        if not session_id:
            return {}
        try:
            pending = await self.bridge.call(Engine.pending_choice, session_id, visitor=self.who)
        except REFUSED:  # (gone, or not this visitor's: the page says so already)
            return {}
        if pending is None or pending[0] != tab_step:
            return {}
        session = await self.bridge.call(Engine.load_session, session_id, visitor=self.who)
        results = [session.steps[i] for i in pending[1] if i in session.steps]
        if (
            len(results) < 2
            or all(step.state is StepState.FAILED for step in results)
            or any(session.children(step.step_id) for step in results)
        ):
            await self._choice_pending(session_id, None)
            return {}
        tab = self._tab()
        tab.unkept, tab.results_shown = pending, pending[1]
        running = await self.bridge.tick(session_id, None, self.who)
        return {
            **(await self._candidates_panel(session_id, pending[1], running.running)),
            self.c.status: KEEP_TO_GO_ON,
        }

    async def _require_kept(self, tab: _Tab, session_id: str, parent: str | None) -> None:
        """Refuse an instruction sent from the step this tab's results were made from while
        none of them is kept: it would run from that step again, beside them, as many times as
        the results asked for (UX audit 2: an instruction typed ahead of three results ran three
        more times on the original). Results that all failed leave nothing to keep."""
        if tab.unkept is None or tab.unkept[0] != parent:
            return
        session = await self.bridge.call(Engine.load_session, session_id, visitor=self.who)
        results = [session.steps[i] for i in tab.unkept[1] if i in session.steps]
        if any(step.state is not StepState.FAILED for step in results):
            raise Refusal(KEEP_FIRST)
        tab.unkept = None
        await self._choice_pending(session_id, None)

    async def _with_candidates(
        self, session_id: str, tab_step: str | None, steps: list[Step]
    ) -> Update:
        ids = tuple(s.step_id for s in steps)
        self._tab().results_shown = ids
        return {
            **(await self.page(session_id, tab_step)),
            **(await self._candidates_panel(session_id, ids, {})),
            self.c.status: f"◷ {len(ids)} results on their way: keep the one you like.",
        }

    async def _candidates_panel(
        self, session_id: str, ids: tuple[str, ...], running: dict[str, StepUpdate]
    ) -> Update:
        session = await self.bridge.call(Engine.load_session, session_id, visitor=self.who)
        if not ids or not all(i in session.steps for i in ids):
            return {self.c.picks: None, self.c.candidates: gr.HTML(visible=False)}
        steps = [session.steps[i] for i in ids]
        images = {s.step_id: p for s in steps if (p := self.bridge.image_path(s))}
        texts = {s.step_id: present.candidate_text(s, running.get(s.step_id)) for s in steps}
        return {
            self.c.picks: list(ids),
            self.c.candidates: gr.HTML(tree.candidates_html(steps, images, texts), visible=True),
        }

    async def _keep(self, session_id: str | None, step_id: str) -> Update:
        if not session_id or not step_id:
            raise Refusal("There is no result to keep here; ask for several results first.")
        session = await self.bridge.call(Engine.keep, session_id, step_id, visitor=self.who)
        kept = session.current.params
        self._tab().moved()  # (the choice it answers, `Engine.keep` clears)
        # The next edit goes on with the model that was kept; the results fold.
        update = {
            **(
                await self.page(
                    session_id, session.current_step_id, model=kept.model if kept else None
                )
            ),
            self.c.picks: None,
            self.c.candidates: gr.HTML("", visible=False),
        }
        if kept is not None:  # (said: it may change what the next edit costs)
            update[self.c.status] = f"{update[self.c.status]} · Kept: next edits use {kept.model}."
        return update

    # -- history --------------------------------------------------------------------------------

    @guarded
    async def on_history_click(
        self, session_id: str | None, tab_step: str | None, evt: gr.EventData
    ) -> Update:
        """A click in the tree or on a candidate: show a step, cancel a queued one, or keep a
        candidate. What the page sends is only a step id and a verb: both are checked here and
        behind the bridge."""
        data = getattr(evt, "_data", None) or {}
        act, step_id = str(data.get("act", "")), str(data.get("step", ""))
        if not session_id or not step_id:
            return {self.c.status: gr.skip()}
        if act == "keep":
            return await self._keep(session_id, step_id)
        if act == "branch":  # a branch's chip: its first step, the rest ahead of it
            session = await self.bridge.call(Engine.load_session, session_id, visitor=self.who)
            if step_id in session.steps:
                end = tree.branch_end(session, step_id)
                session = await self.bridge.call(
                    Engine.show_branch, session_id, step_id, end, visitor=self.who
                )
                self._tab().moved()
                return await self.page(session_id, session.current_step_id)
        if act == "cancel":
            return await self._cancel(session_id, step_id, tab_step)
        # Up the tab's path (←, or a click on a step before) is undone, down its redo line
        # (→) redone, as the tab sees them: ← then Ctrl+Z forgot the branch ahead, and redo
        # stopped short of it (UX audit 11).
        tab = self._tab()
        session = await self.bridge.call(
            Engine.go, session_id, step_id, tab_step, via=list(tab.ahead), visitor=self.who
        )
        tab.went_to(session)
        return await self.page(session_id, session.current_step_id)

    async def _cancel(self, session_id: str, step_id: str, tab_step: str | None) -> Update:
        """A queued edit's ✕: it goes, the ones after it run from the step before it, and its
        instruction goes back into the box (as an undo's does): nothing typed is lost."""
        session = await self.bridge.call(Engine.load_session, session_id, visitor=self.who)
        step = session.steps.get(step_id)
        # A ✕ the page drew a moment before the step went (cancelled, or taken back, in this
        # tab or another) or started (the edit before it finished) is answered in the status
        # line under the tree drawn again, with no toast over it: it named the step's id ("There
        # is no step 6ab318a3-… in this session"), and said that it had started in a toast as
        # well (audit 16).
        try:
            if step is None:
                raise HistoryError(GONE_BEFORE_CANCEL)
            cancelled = await self.bridge.call(Engine.cancel, session_id, step_id, visitor=self.who)
        except HistoryError as exc:
            # (Held as a cancel's word is: the running edit's time replaced it within half a
            # second, and on a phone, whose ✕ was in a chip that went, nothing else said it:
            # audit 17.)
            self._tab().said()
            update = await self.page(session_id, tab_step)
            update[self.c.status] = present.warning(str(exc))
            return update
        self._tab().cancelled(step_id)
        self._tab().said()
        shown = tab_step if tab_step in cancelled.steps else cancelled.current_step_id
        update = await self.page(session_id, shown, withdrawn=_withdrawn(step))
        update[self.c.status] = (
            "Cancelled the queued edit (nothing was paid); its instruction is back in the box, "
            "and the ones after it run from the step before it."
        )
        return update

    @guarded
    async def on_notice(self, session_id: str | None, tab_step: str | None) -> Update:
        """Show the newest step made elsewhere (the notice's one click)."""
        target = self._tab().notice
        if not session_id or not target:
            return await self.page(session_id, tab_step)
        session = await self.bridge.call(Engine.keep, session_id, target, visitor=self.who)
        self._tab().moved()
        return await self.page(session_id, session.current_step_id)

    @guarded
    async def on_history_tool(
        self, session_id: str | None, tab_step: str | None, evt: gr.EventData
    ) -> Update:
        """A button over the history: undo, redo or export (what the page sends is only the
        verb; what it may do is decided behind the bridge)."""
        clicked = getattr(evt, "_data", None) or {}
        act = str(clicked.get("act", "")) if isinstance(clicked, dict) else ""
        if act in ("undo", "redo"):
            if not session_id:
                return await self.page(None)
            started = False
            if act == "undo" and tab_step:
                taken_back, started = await self._withdraw(session_id, tab_step)
                if taken_back is not None:
                    return taken_back
            tab = self._tab()
            if act == "undo":
                session = await self.bridge.call(
                    Engine.undo, session_id, tab_step, visitor=self.who
                )
                tab.undid(tab_step)
            else:
                session = await self.bridge.call(
                    Engine.redo, session_id, tab_step, via=list(tab.ahead), visitor=self.who
                )
                tab.went_to(session)
            update = await self.page(session_id, session.current_step_id)
            left = session.steps.get(tab_step or "")
            if act == "undo" and left is not None and (started or left.state is StepState.RUNNING):
                # (It was sent: it runs to its end, is paid, and lands in the history.)
                update[self.c.status] = (
                    f"{update[self.c.status]} · The edit undone had started at RunAPI: it "
                    "runs to its end and lands in the history."
                )
            return update
        if act == "export":
            return await self._export(session_id)
        return {self.c.status: gr.skip()}

    async def _withdraw(self, session_id: str, tab_step: str) -> tuple[Update | None, bool]:
        """Undo on the last edit typed ahead, while it has not started, takes it back (none of
        it was paid): it goes as its ✕ would, the tab shows the step before it, and its
        instruction goes back into the box (nothing typed is lost). No update when the tab's
        step is not such an edit (one with edits queued after it is only moved back from, as
        walking back with ← to it and pressing Ctrl+Z means), with whether it has started
        (its upload or its create is under way: it runs to its end)."""
        session = await self.bridge.call(Engine.load_session, session_id, visitor=self.who)
        step = session.steps.get(tab_step)
        if (
            step is None
            or step.state is not StepState.QUEUED
            or step.task_id
            or step.parent_id is None
            or step.params is None
            or session.children(tab_step)
        ):
            return None, False
        try:
            cancelled = await self.bridge.call(
                Engine.cancel, session_id, tab_step, visitor=self.who
            )
        except HistoryError:  # it started meanwhile (or may not be cancelled): a plain undo
            return None, True
        self._tab().cancelled(tab_step)
        self._tab().said()
        shown = step.parent_id if step.parent_id in cancelled.steps else None
        update = await self.page(
            session_id,
            shown or cancelled.current_step_id,
            withdrawn=_withdrawn(step),
        )
        update[self.c.status] = (
            "↶ Took back the queued edit before it started (nothing was paid); its instruction "
            "is back in the box."
        )
        return update, False

    async def _news(
        self, session_id: str | None, tab_step: str | None, version: str | None, tab_key: str | None
    ) -> Tick | None:
        """What is new in the session this tab shows, or None: the page shows no session, or
        not the one its browser storage names (its states arrive one by one, and this tick fell
        between a render's: drawing that session would pull the page back to it), or the tab
        moved to another meanwhile."""
        # A render shows a version seen from a step; one from another step (an older tick that
        # crossed an edit in flight) is stale and is drawn again.
        # (A state never set holds no text: read it as no version.)
        seen, _, seen_from = (version if isinstance(version, str) else "").partition("|")
        if not session_id or not seen.startswith(f"{session_id}@"):
            return None
        if self._tab().moved_from(session_id):
            return None
        fresh = seen_from == (tab_step or "")
        # With the tab's key: an edit that waits for it (after a restart) goes on.
        return await self.bridge.tick(session_id, seen if fresh else None, self.who_with(tab_key))

    @guarded
    async def on_beat(
        self,
        session_id: str | None,
        tab_step: str | None,
        version: str | None,
        pair: object,
        tab_key: str | None = None,
    ) -> Update:
        """The timer: every second or two, a cheap look for news. Only the elapsed time of what
        runs is answered here; news that redraws the page (a new or finished step, from this
        tab or anywhere; candidates on show that run) sets `news`, whose change draws it
        (`on_tick`). Gradio builds anew each output an answer leaves alone (a component each):
        with the page's 27 outputs, a tick that changed nothing took 12.1 ms of the studio's
        CPU; with these two, 7.5 ms (README, Numbers)."""
        try:
            tick = await self._news(session_id, tab_step, version, tab_key)
        except REFUSED:
            return {self.c.news: next(_BEATS)}  # (`on_tick` says why)
        if tick is None:
            return {self.c.status: gr.skip()}
        ids = _picks(pair)
        if tick.changed or any(i in tick.running for i in ids):
            return {self.c.news: next(_BEATS)}
        if (line := self._running_line(tab_step, tick)) is not None:
            return {self.c.status: line}
        return {self.c.status: gr.skip()}

    def _running_line(self, tab_step: str | None, tick: Tick) -> str | None:
        """The status line of the tab's step while it runs (its elapsed time ticks), unless the
        tab was just told something to read (`_Tab.telling`); None otherwise."""
        running = tick.running.get(tab_step or "")
        if running is None or self._tab().telling:
            return None
        return present.step_status(running.step, running, running=tick.running)

    @guarded
    async def on_tick(
        self,
        session_id: str | None,
        tab_step: str | None,
        version: str | None,
        pair: object,
        tab_key: str | None = None,
    ) -> Update:
        """News of the session (`on_beat`): a new or finished step (from this tab or anywhere)
        re-renders the page without moving what the tab shows; otherwise only the elapsed time
        of what runs ticks; with nothing new, nothing is sent."""
        if (
            not session_id
            or (tick := await self._news(session_id, tab_step, version, tab_key)) is None
        ):
            return {self.c.status: gr.skip()}
        ids = _picks(pair)
        if tick.changed:
            update = await self.page(session_id, tab_step, tab_key=tab_key, tick=True)
            if self._tab().moved_from(session_id):  # meanwhile
                return {self.c.status: gr.skip()}
            # Something was added or finished: the balance may have moved too (`on_balance`).
            update[self.c.balance_due] = tick.version
            if tab_step is not None:
                # Never move the tab: this tick may have crossed an edit that moved it on.
                del update[self.c.tab_step]
            if self._tab().telling:
                # (The cancel itself is news: its word went within 0.7 s: audit 17.)
                del update[self.c.status]
            if ids and ids != self._tab().results_folded:
                update.update(await self._candidates_panel(session_id, ids, tick.running))
            return update
        update = {}
        if (line := self._running_line(tab_step, tick)) is not None:
            update[self.c.status] = line
        if ids and ids != self._tab().results_folded and any(i in tick.running for i in ids):
            update.update(await self._candidates_panel(session_id, ids, tick.running))
        return update or {self.c.status: gr.skip()}

    @guarded
    async def on_balance(self, _session_id: str | None, tab_key: str | None) -> Update:
        """The balance of the key that pays for this tab's edits, beside the session's cost:
        asked of RunAPI after the page is drawn, so a slow or failing answer never holds the
        page up. Nothing shows when it is not shown (a hosted visitor without a key of their
        own, the simulator) or RunAPI does not answer (the edits' own errors say why)."""
        who = self.who_with(tab_key)
        try:
            cents = await self.bridge.balance(who)
        except REFUSED:
            cents = None
        line = present.balance_line(cents)
        if cents is None and self.ctx.hosted:  # a visitor on the server's key: their share left
            with contextlib.suppress(*REFUSED):
                line = present.share_line(await self.bridge.call(Engine.share_left, visitor=who))
        return {self.c.header: gr.HTML(balance=prose.to_html(line))}

    @guarded
    async def on_pair(
        self, session_id: str | None, _tab: str | None, left: str | None, right: str | None
    ) -> Update:
        """The two steps picked for the slider, fitted to one frame; it says when their shapes
        differ."""
        return await self._pair(session_id, left, right)

    async def _pair(self, session_id: str | None, left: str | None, right: str | None) -> Update:
        skip: Update = {self.c.slider: gr.skip(), self.c.pair_note: gr.skip()}
        if not session_id:  # (no session: no pair kept on show)
            return {self.c.slider: gr.ImageSlider(value=None, visible=False), self.c.pair_note: ""}
        if not left or not right:  # (a picker between two values as the page updates it)
            return skip
        try:
            session = await self.bridge.call(Engine.load_session, session_id, visitor=self.who)
        except REFUSED:
            return skip  # its outputs are the slider's two: the page's refusal would not fit
        if left not in session.steps or right not in session.steps:
            return skip
        a = self.bridge.image_path(session.steps[left])
        b = self.bridge.image_path(session.steps[right])
        if not a or not b:
            return {self.c.slider: gr.ImageSlider(value=None, visible=False), self.c.pair_note: ""}
        pairs, owner = self.ctx.exports / "pairs", self.who.owner
        fit = functools.partial(_fit_to, pairs, Path(a), Path(b), owner)
        pixels = sum(
            (s.result.width * s.result.height) if s.result else 0
            for s in (session.steps[left], session.steps[right])
        )
        b, note = await self.bridge.call(Engine.image_work, fit, pixels=pixels, visitor=self.who)
        return {self.c.slider: gr.ImageSlider(value=(a, b), visible=True), self.c.pair_note: note}

    async def _open_pair(
        self, session_id: str | None, tab_step: str | None, left: str | None, right: str | None
    ) -> Update:
        """ "Compare two steps" opens: its dropdowns list the session's finished steps (renders
        leave them out until then), keeping a pick made earlier in this tab that still holds,
        and the slider shows the pair."""
        self._tab().pair_open = True
        if not session_id:
            return await self._pair(session_id, left, right)
        try:
            session = await self.bridge.call(Engine.load_session, session_id, visitor=self.who)
        except REFUSED:
            return await self._pair(None, left, right)
        a, b = view.pair(session.seen_from(tab_step))
        ids = {value for _label, value in a.choices}
        left = left if left in ids else a.value
        right = right if right in ids else b.value
        return {
            self.c.pair_a: gr.Dropdown(choices=a.choices, value=left, visible=True),
            self.c.pair_b: gr.Dropdown(choices=b.choices, value=right, visible=True),
        } | await self._pair(session_id, left, right)

    @guarded
    async def on_fold(
        self,
        session_id: str | None,
        tab_step: str | None,
        left: str | None,
        right: str | None,
        safety: float | None,
        evt: gr.EventData,
    ) -> Update:
        """A folded panel opened (`layout.fold`; the page sends only its name): it shows,
        filled in for the tab's step (the slider's pair, the safety slider's top, the
        session's name)."""
        clicked = getattr(evt, "_data", None) or {}
        name = str(clicked.get("act", "")) if isinstance(clicked, dict) else ""
        panel = self.c.folds.get(name)
        if panel is None:
            return {self.c.delete_confirm: gr.skip()}  # no panel of that name: nothing changes
        # What it holds shows with it (`layout.fold`); what is filled in below says so too.
        update: Update = {panel: gr.Column(visible=True)}
        update |= {part: gr.update(visible=True) for part in self.c.fold_parts.get(name, ())}
        # Each reads the session, and "Compare two steps" lists every finished step of it
        # twice (a 1,000-step session: 0.1 s of CPU and a 129 KB answer): in the visitor's
        # and the address's turns, as a page drawn (review 10 F2: eight cookies opening it
        # again and again made another visitor's page 1.3 s slower).
        address = self.who.address if self.ctx.addresses_apart else None
        async with turn_of(self.who.owner, address):  # (`ui.turns`)
            if name == "steps-box":
                update |= await self._open_pair(session_id, tab_step, left, right)
            elif name == "advanced":
                update |= await self._safety(session_id, tab_step, safety)
            elif name == "manage":
                filled = isinstance(clicked, dict) and clicked.get("filled") is True
                update |= await self._manage(session_id, filled=filled)
        return update

    async def _safety(
        self, session_id: str | None, tab_step: str | None, safety: float | None
    ) -> Update:
        """The safety slider's top follows what the tab's next step is: 2 for an edit, 6 for
        a generation (`Session.next_is_edit`), with the value brought within it."""
        top = safety_max(editing=False)
        if session_id and tab_step:
            with contextlib.suppress(*REFUSED):
                session = await self.bridge.call(Engine.load_session, session_id, visitor=self.who)
                top = safety_max(editing=session.seen_from(tab_step).next_is_edit)
        value = min(int(safety if safety is not None else 2), top)
        return {self.c.safety: gr.Slider(maximum=top, value=value, visible=True)}

    # -- managing sessions ----------------------------------------------------------------------

    async def _manage(self, session_id: str | None, *, filled: bool) -> Update:
        """Opening "Rename or delete" fills in the session's name, ready to edit; unless the
        page did (`filled`: a panel shown before, filled from the session list as it opened),
        where the name sent now would replace what was typed since."""
        hidden = gr.Group(visible=False)
        if filled:
            return {self.c.session_name: gr.skip(), self.c.delete_confirm: hidden}
        name = ""
        if session_id:
            with contextlib.suppress(*REFUSED):
                session = await self.bridge.call(Engine.load_session, session_id, visitor=self.who)
                name = session.name
        return {
            self.c.session_name: gr.Textbox(value=name, visible=True),
            self.c.delete_confirm: hidden,
        }

    @guarded
    async def on_rename(
        self, session_id: str | None, tab_step: str | None, name: str | None
    ) -> Update:
        if not session_id:
            raise Refusal("There is no session to rename yet.")
        session = await self.bridge.call(
            Engine.rename_session, session_id, name or "", visitor=self.who
        )
        return {
            **(await self.page(session_id, tab_step)),
            self.c.session_name: session.name,
            self.c.status: present.renamed(session.name),
        }

    @guarded
    async def on_delete_ask(self, session_id: str | None, _tab: str | None) -> Update:
        """Deleting asks first, saying what goes."""
        try:
            if not session_id:
                raise Refusal("There is no session to delete.")
            session = await self.bridge.call(Engine.load_session, session_id, visitor=self.who)
        except REFUSED as exc:
            sentence = error_sentence(exc)
            gr.Warning(sentence)
            return {self.c.status: f"⚠ {sentence}", self.c.delete_confirm: gr.skip()}
        edits = len(session.steps) - 1
        text = present.delete_question(await self._listed_as(session_id, session.name), edits)
        return {
            self.c.delete_text: text,
            self.c.delete_confirm: gr.Group(visible=True),
            self.c.status: gr.skip(),
        }

    @guarded
    async def on_delete_no(self) -> Update:
        return {self.c.delete_confirm: gr.Group(visible=False)}

    @guarded
    async def on_delete(self, session_id: str | None, _tab: str | None) -> Update:
        """Delete the session (once confirmed), and show the most recent other one."""
        if not session_id:
            raise Refusal("There is no session to delete.")
        listed = await self._listed_as(session_id, "")
        gone = await self.bridge.call(Engine.delete_session, session_id, visitor=self.who)
        summaries = await self.bridge.call(Engine.list_sessions, visitor=self.who)
        next_id = summaries[0].session_id if summaries else None
        return {
            **(await self.page(next_id)),
            # (The tab shows the next session's step: left on the deleted one's, the next tick
            # drew the page again over the sentence below.)
            self.c.browser: next_id,
            self.c.delete_confirm: gr.Group(visible=False),
            self.c.manage: gr.Column(visible=False),
            self.c.status: present.deleted(listed or gone.name),
        }

    async def _listed_as(self, session_id: str, name: str) -> str:
        """A session's name as the session list shows it ("Rocket example (2)" beside another
        "Rocket example"): deleting the second said "Deleted 'Rocket example'" while that one
        was still listed (UX audit 12)."""
        summaries = await self.bridge.call(Engine.list_sessions, visitor=self.who)
        return {i: label for label, i in present.session_choices(summaries)}.get(session_id, name)

    # -- export and import ----------------------------------------------------------------------

    async def _export(self, session_id: str | None) -> Update:
        if not session_id:
            raise Refusal("There is no session to export yet.")
        session = await self.bridge.call(Engine.load_session, session_id, visitor=self.who)
        path = await export_file(self.bridge, self.ctx.exports, session_id, session.name, self.who)
        edits = sum(step.kind != "origin" for step in session.steps.values())
        return {
            self.c.export_file: gr.HTML(
                export_link(self.ctx.root_path, path, session_id, tree.contents_mark(session)),
                visible=True,
            ),
            # Counted as the session list counts them: the original is not a step.
            self.c.status: (
                f"Exported the original and {edits} step{'s' if edits != 1 else ''} as a "
                "ZIP: your browser saves it (*Download export* saves it again)."
            ),
        }

    @guarded
    async def on_import(
        self, _session_id: str | None, _tab: str | None, path: str | None
    ) -> Update:
        if not path:
            return {self.c.status: gr.skip()}
        self._require_own_upload(path)
        try:
            try:
                if (await asyncio.to_thread(Path(path).stat)).st_size > MAX_BUNDLE_BYTES:
                    raise Refusal(f"The file is larger than {MAX_BUNDLE_BYTES // 2**20} MB.")
                data = await asyncio.to_thread(Path(path).read_bytes)
            except OSError:  # the same file sent twice at once: the first import took it
                raise Refusal(UPLOAD_GONE) from None
            session = await self.bridge.call(Engine.import_session, data, visitor=self.who)
        finally:  # imported into the store, or refused: either way the upload has done its work
            await self._discard_upload(path)
        return {
            **(await self.page(session.session_id)),
            self.c.status: present.imported(session.name),
        }

    # -- plumbing -------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _session_for_edit(self, session_id: str | None) -> AsyncIterator[str]:
        """The tab's session, or a new one without an image (the edit then generates there),
        deleted again if the edit in it is refused: it holds nothing, and one was left in the
        list at each refused Enter."""
        if session_id:
            yield session_id
            return
        made = await self.bridge.call(Engine.start_session_from_bytes, None, visitor=self.who)
        try:
            yield made.session_id
        except REFUSED:
            with contextlib.suppress(*REFUSED):
                await self.bridge.call(Engine.delete_session, made.session_id, visitor=self.who)
            raise


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _form_params(
    prompt: str | None,
    model: str,
    aspect: str,
    output_format: str,
    translation: bool,
    expansion: bool,
    safety: float,
    keep_rest: bool = False,
) -> EditParams:
    return parse_params(
        prompt,
        model=model,
        aspect_ratio=aspect,
        output_format=output_format,
        enable_translation=translation,
        enable_prompt_expansion=expansion,
        safety_tolerance=safety,
        keep_rest=bool(keep_rest),
    )


# A drawn mask arrives as a PNG data URL; larger than this it is refused.
MAX_REGION_CHARS = 24 * 2**20
_PNG_DATA = "data:image/png;base64,"
# What `on_beat` sets `news` to: a new value each time, so that each is a change.
_BEATS = itertools.count(1)


def _region(text: object) -> RegionRequest | None:
    """The region the page drew for an edit: a mask (a PNG data URL) or a box ("box:x,y,w,h",
    in the source's pixels); nothing when none was drawn."""
    if not isinstance(text, str) or not text.strip():
        return None
    text = text.strip()
    if text.startswith("box:"):
        return RegionRequest(box=parse_box(text[4:]))
    if text.startswith(_PNG_DATA) and len(text) <= MAX_REGION_CHARS:
        try:
            return RegionRequest(mask=base64.b64decode(text[len(_PNG_DATA) :], validate=True))
        except binascii.Error:
            pass
    raise Refusal("The region drawn on the image could not be read; draw it again.")


def _ticket(ticket: object) -> int:
    """Which Enter of its tab an edit is (the page script numbers them); 0 when not known."""
    try:
        value = int(str(ticket or "0").strip())
    except ValueError:
        return 0
    return value if 0 < value < 2**31 else 0


def _count(count: object) -> int:
    """How many results the instruction asks for (1 to `layout.MAX_CANDIDATES`)."""
    try:
        value = int(str(count or "1"))
    except ValueError:
        raise Refusal("Ask for 1 to 4 results.") from None
    if not 1 <= value <= layout.MAX_CANDIDATES:
        raise Refusal(f"Ask for 1 to {layout.MAX_CANDIDATES} results.")
    return value


def _picks(picks: object) -> tuple[str, ...]:
    """The candidates on show, as the tab's state holds them."""
    if not isinstance(picks, list | tuple) or not 2 <= len(picks) <= layout.MAX_CANDIDATES:
        return ()
    return tuple(str(p) for p in picks)


# The longer side of the slider's fitted copy (its frame: the left step's shape).
FIT_MAX_SIDE = 2048


def _fit_to(folder: Path, left: Path, right: Path, owner: str | None) -> tuple[str, str]:
    """`right` fitted into `left`'s frame when their shapes differ (a copy, letterboxed, at
    most `FIT_MAX_SIDE` on its longer side: the slider shows both at the page's size, and a
    JPEG is decoded at that size, not its own), and the sentence saying so; else `right` as it
    is and no sentence. Blocking: `Engine.image_work` runs it."""
    with Image.open(left) as a, Image.open(right) as b:
        (wa, ha), (wb, hb) = a.size, b.size
        if abs(wa / ha - wb / hb) < 0.01:
            return str(right), ""
        scale = min(1.0, FIT_MAX_SIDE / max(wa, ha))
        frame = (max(1, round(wa * scale)), max(1, round(ha * scale)))
        target = folder / fitted_name(left.stem, right.stem, *frame, owner)
        if not target.exists():
            folder.mkdir(parents=True, exist_ok=True)
            keep_fitted(folder, owner)
            # A JPEG decodes at 1/2, 1/4 or 1/8 of its size, as near the size it is shown at.
            fit = min(frame[0] / wb, frame[1] / hb)
            b.draft("RGB", (max(1, round(wb * fit)), max(1, round(hb * fit))))
            fitted = ImageOps.pad(b.convert("RGBA"), frame, color=(0, 0, 0, 0))
            fitted.save(target, format="PNG")
    note = (
        f"The two steps differ in shape ({wa} x {ha} and {wb} x {hb}): the right one is fitted "
        "into the left one's frame."
    )
    return str(target), note


def _upload_folder() -> Path:
    """Where Gradio keeps uploads (GRADIO_TEMP_DIR, else the temp dir's `gradio`)."""
    return Path(gr.utils.get_upload_folder())


def _secret(key: str | None) -> Secret | None:
    return Secret(key) if key else None


# An upload whose file is gone before its handler read it.
UPLOAD_GONE = "That upload is no longer here (it was sent twice at once); upload the file again."

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
            target.symlink_to(stored.absolute())  # (a relative one points from `folder`)
        except FileExistsError:
            pass
        except OSError:
            shutil.copyfile(stored, target)
    return str(target)


__all__ = ["Handlers", "PageContext", "Refusal", "error_sentence"]


def _awaits_keep(tab: _Tab, tab_step: str | None, session: Session | None) -> bool:
    """Whether the page shows the step this tab's results were made from while none of them is
    kept, and one of them may still be (not all failed): an instruction is refused there
    (`Handlers._require_kept`)."""
    if tab.unkept is None or session is None or tab.unkept[0] != tab_step:
        return False
    steps = [session.steps[i] for i in tab.unkept[1] if i in session.steps]
    return any(step.state is not StepState.FAILED for step in steps)
