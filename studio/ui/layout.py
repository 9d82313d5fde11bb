"""The studio's components, built in `_render_*` functions and returned as one `Components` value.

An editor, not a form (shared/UI.md): one large canvas showing the tab's step, the instruction
bar directly under it (always on screen), the history beside it as a tree, sessions in the
header; everything else (a link, examples, comparing two steps, advanced settings, tips, the
key) is folded away under the bar.

Only layout: no event is registered here (that is `events.wire`).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from studio.params import MAX_PROMPT_CHARS, SAFETY_MAX_GENERATE
from studio.ui import present, prose, tree
from studio.ui.tabs import takes_large

# Seconds between a tab's looks for news of its session: while something runs (so the elapsed
# time ticks), and while nothing does (a new step made elsewhere shows within this).
TICK_RUNNING_S = 1.0
TICK_IDLE_S = 2.0
# A fixed key, so the visitor's session survives reloads and restarts (gradio-notes §2).
BROWSER_STORAGE_KEY = "kontext-studio-session"
# Where a visitor's own key is kept when they ask the studio to remember it: their browser's
# local storage, never the server's disk.
KEY_STORAGE_KEY = "kontext-studio-visitor-key"
# Where a tab keeps the token of the key pasted in it (its session storage: `ui.tabkeys`).
KEY_TOKEN_STORAGE_KEY = "kontext-studio-key-token"
# Where a tab keeps, over a reload, the session and the step it showed (assets/studio.js).
SHOWN_STORAGE_KEY = "kontext-studio-shown"
# The session a tab opened (its session storage) and the one the browser opened last (local
# storage), in plain words: the page's head reads them before Gradio (assets/predraw.js).
TAB_OPEN_STORAGE_KEY = "kontext-studio-tab-open"
OPEN_STORAGE_KEY = "kontext-studio-open"
# A tab's own copy of the BrowserState's session (assets/storage.js).
TAB_SESSION_STORAGE_KEY = "kontext-studio-tab-session"
# What was typed and not sent, per session, and the options last used (assets/studio.js).
DRAFT_STORAGE_KEY = "kontext-studio-draft"
DRAFTS_STORAGE_KEY = "kontext-studio-drafts"
OPTIONS_STORAGE_KEY = "kontext-studio-options"
# Every key the studio keeps in a browser's storage. The page scripts spell them out (they run
# before any config): tests/unit/test_page_storage.py holds them to these.
STORAGE_KEYS = (
    BROWSER_STORAGE_KEY,
    KEY_STORAGE_KEY,
    KEY_TOKEN_STORAGE_KEY,
    SHOWN_STORAGE_KEY,
    TAB_OPEN_STORAGE_KEY,
    OPEN_STORAGE_KEY,
    TAB_SESSION_STORAGE_KEY,
    DRAFT_STORAGE_KEY,
    DRAFTS_STORAGE_KEY,
    OPTIONS_STORAGE_KEY,
)
# The canvas takes what the header, the instruction bar, its options and the toggles under it
# (Compare two steps, Advanced, …) leave of the window.
CANVAS_HEIGHT = "calc(100vh - 370px)"
# "Compare two steps" in the canvas's place: at most the canvas's height at 1440x900 (530 px)
# less its two step pickers and its note.
SLIDER_MAX_HEIGHT = 342
# How many results one instruction may ask for at once (candidates).
MAX_CANDIDATES = 4

# Clicks inside the history tree and the candidates: each clickable element carries what it
# does (`data-act`) and on which step (`data-step`); the page sends both with one event.
_CLICKS_JS = """
element.addEventListener('click', (event) => {
  const target = event.target.closest('[data-act]');
  if (!target || !element.contains(target)) return;
  event.preventDefault();
  trigger('click', {act: target.dataset.act, step: target.dataset.step || ''});
});
watch('value', () => window.kontextStudio?.redrawPending?.());
"""

# The header: a click on a session in its list opens it (one event, which also takes + New)
# and folds the list; a click elsewhere folds it too. The banner, the cost and the balance are
# the server's props, painted into their places (again after each redraw of the list, which
# would otherwise empty them): the template never changes with them, so a new balance never
# redraws (and folds) an open list.
_HEADER_JS = """
element.addEventListener('click', (event) => {
  const target = event.target.closest('[data-act]');
  if (!target || !element.contains(target)) return;
  event.preventDefault();
  target.closest('details')?.removeAttribute('open');
  trigger('click', {act: target.dataset.act, step: target.dataset.step || ''});
});
document.addEventListener('click', (event) => {
  if (element.contains(event.target)) return;
  element.querySelector('details[open]')?.removeAttribute('open');
});
// The prop names are never quoted alone in this script: Gradio takes any quoted name in it for
// an event of the block's, and an update of one prop would send the others as that event's repr.
const slots = 'banner cost balance'.split(' ');
const paint = () => {
  for (const name of slots) {
    const slot = element.querySelector('#' + name);
    if (slot && slot.innerHTML !== (props[name] || '')) slot.innerHTML = props[name] || '';
  }
};
// The list stays open across a redraw (an edit that lands changes its step count): it
// snapped shut under the pointer (UX audit 2).
let listOpen = false;
element.addEventListener('toggle', (event) => {
  if (event.target.matches?.('#sessions details')) listOpen = event.target.open;
}, true);
const reopen = () => {
  const list = element.querySelector('#sessions details');
  if (list && listOpen && !list.open) list.open = true;
};
// Each session's last change in the visitor's own time, with the hour for the last two days:
// "today 14:02", "yesterday 09:15", "2 Dec" (the server knows no visitor's zone).
const localize = () => {
  const now = new Date();
  const day = (d) => new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
  for (const time of element.querySelectorAll('#sessions time[datetime]')) {
    const at = new Date(time.dateTime);
    if (Number.isNaN(at.getTime())) continue;
    const days = Math.round((day(now) - day(at)) / 86400000);
    const clock = at.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'});
    const year = at.getFullYear() === now.getFullYear() ? {} : {year: 'numeric'};
    const text = days === 0 ? 'today ' + clock : days === 1 ? 'yesterday ' + clock
      : at.toLocaleDateString([], {day: 'numeric', month: 'short', ...year});
    if (time.textContent !== text) time.textContent = text;
    time.title = at.toLocaleString();
  }
};
paint();
localize();
watch(['value', ...slots], () => { paint(); reopen(); localize(); });
"""
# The header's fixed parts; `${value}` is the session list (`tree.sessions_html`), and the
# three prose slots are filled by `_HEADER_JS` (their HTML is `prose.to_html`: escaped).
HEADER_TEMPLATE = (
    '<div class="head">'
    '<div id="title"><h2>Kontext Studio</h2></div>'
    '<div id="sessions">${value}</div>'
    '<button type="button" id="new-session" data-act="new" class="opt-button">+ New</button>'
    f'<div id="banner" class="{prose.PROSE}"></div>'
    f'<div id="cost" class="{prose.PROSE}"></div>'
    f'<div id="balance" class="{prose.PROSE}"></div>'
    "</div>"
)

# What Export and "Rename or delete" say while there is no session to act on (a new one, until
# it gets an image or an instruction): they were offered, and answered with a refusal.
NO_SESSION_YET = "Nothing here yet: open an image or send an instruction first"
# Undo, redo and export over the history; a click sends only its verb (`data-act`).
HISTORY_TOOLS_TEMPLATE = (
    '<div class="history-buttons">'
    '<button type="button" id="undo" data-act="undo" class="opt-button" aria-label="Undo"'
    ' title="Undo (Ctrl+Z)" ${can_undo ? "" : "disabled"}>↶</button>'
    '<button type="button" id="redo" data-act="redo" class="opt-button" aria-label="Redo"'
    ' title="Redo (Ctrl+Shift+Z)" ${can_redo ? "" : "disabled"}>↷</button>'
    '<button type="button" id="export" data-act="export" class="opt-button"'
    f" title=\"${{can_export ? 'Save this session as a ZIP' : '{NO_SESSION_YET}'}}\""
    ' ${can_export ? "" : "disabled"}>Export</button>'
    "</div>"
)
# "Rename or delete" (its toggle under the history) can be used when Export can: disabled with
# Export's reason otherwise, and its panel folded (it offered to rename a session not yet made).
# (No prop's name is quoted alone here: see `_HEADER_JS`.)
_HISTORY_TOOLS_JS = """
element.addEventListener('click', (event) => {
  const target = event.target.closest('button[data-act]');
  if (!target || target.disabled || !element.contains(target)) return;
  event.preventDefault();
  trigger('click', {act: target.dataset.act});
});
const manage = () => {
  const exporter = element.querySelector('#export');
  const toggle = document.querySelector('#manage-fold button[data-fold]');
  if (!exporter || !toggle) return;
  toggle.disabled = exporter.disabled;
  toggle.title = exporter.disabled ? exporter.title : '';
  const panel = document.getElementById(toggle.dataset.fold);
  if (exporter.disabled && panel && !panel.classList.contains('folded')) {
    panel.classList.add('folded');
    toggle.setAttribute('aria-expanded', 'false');
  }
};
requestAnimationFrame(manage);
watch('can_undo can_redo can_export'.split(' '), () => requestAnimationFrame(manage));
"""

TOOLS_HTML = (
    '<div class="tools" role="toolbar" aria-label="A region for the next edit">'
    '<button type="button" data-tool="brush" aria-pressed="false" '
    'title="Paint where the next edit may change">✎ Brush</button>'
    '<button type="button" data-tool="box" aria-pressed="false" '
    'title="Drag a box where the next edit may change">▭ Box</button>'
    '<button type="button" data-tool="eraser" aria-pressed="false" '
    'title="Rub out part of the region">⌫ Eraser</button>'
    '<button type="button" data-tool="clear" aria-label="No region" title="No region">✕</button>'
    "</div>"
    # On a phone the history (and its undo and redo) is below the fold: these two, shown there
    # only, press its buttons (studio.js), and look unusable when those are (studio.css).
    '<div class="tools phone-history" role="toolbar" aria-label="History">'
    '<button type="button" data-proxy="undo" aria-label="Undo" title="Undo">↶</button>'
    '<button type="button" data-proxy="redo" aria-label="Redo" title="Redo">↷</button>'
    "</div>"
)


def _thumbnail(example: Path) -> Path:
    """An example's small thumbnail (`assets/thumbs/`), or the example itself without one."""
    small = example.parent / "thumbs" / f"{example.stem}.webp"
    return small if small.exists() else example


# A thumbnail larger than this is linked by Gradio's file route rather than written into the page.
INLINE_THUMB_BYTES = 16 * 1024


def _thumbnail_url(path: str) -> str:
    """An example's thumbnail written into the page as a data: URI (a few KB each: no request,
    and no folder of the server named in the page), or Gradio's file route for a large one."""
    file = Path(path)
    if file.suffix == ".webp" and file.stat().st_size <= INLINE_THUMB_BYTES:
        return "data:image/webp;base64," + base64.b64encode(file.read_bytes()).decode()
    return tree.file_url(path)


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
    header: gr.HTML
    source: gr.Image
    empty: gr.Column
    link: gr.Textbox
    load_link: gr.Button
    examples: gr.HTML
    result: gr.Image
    before: gr.Image
    hold: gr.Button
    tools: gr.HTML
    region: gr.Textbox
    raw: gr.DownloadButton
    slider: gr.ImageSlider
    pair_note: gr.HTML
    fold_bar: gr.HTML
    status: gr.HTML
    notice: gr.Button
    download: gr.DownloadButton
    retry: gr.Button
    prompt: gr.Textbox
    ticket: gr.Textbox
    model: gr.Radio
    aspect: gr.Dropdown
    keep_rest: gr.Checkbox
    count: gr.Dropdown
    options: gr.HTML
    candidates: gr.HTML
    output_format: gr.Radio
    translation: gr.Checkbox
    expansion: gr.Checkbox
    safety: gr.Slider
    user_key: gr.Textbox
    history: gr.HTML
    history_tools: gr.HTML
    export_file: gr.HTML
    import_file: gr.UploadButton
    pair_a: gr.Dropdown
    pair_b: gr.Dropdown
    timer: gr.Timer
    tab_step: gr.State
    version: gr.Textbox
    browser: gr.BrowserState
    tab_key: gr.State
    picks: gr.State
    balance_due: gr.State
    news: gr.State
    remember_key: gr.Checkbox
    key_note: gr.HTML
    key_store: gr.BrowserState
    key_token: gr.Textbox
    shown: gr.Textbox
    manage: gr.Column
    manage_bar: gr.HTML
    session_name: gr.Textbox
    rename: gr.Button
    delete: gr.Button
    delete_confirm: gr.Group
    delete_text: gr.HTML
    delete_yes: gr.Button
    delete_no: gr.Button
    # The rarely used panels, by name, each shown when its toggle opens it (`fold`).
    folds: dict[str, gr.Column] = field(default_factory=dict)
    # What each panel holds, hidden in the page's first draw (`fold`), by the panel's name.
    fold_parts: dict[str, tuple[gr.components.Component, ...]] = field(default_factory=dict)

    @property
    def folded(self) -> tuple[gr.components.Component, ...]:
        """Every panel's parts (`fold_parts`), in one."""
        return tuple(part for held in self.fold_parts.values() for part in held)

    @property
    def held_back(self) -> tuple[gr.components.Component, ...]:
        """What the page's first draw leaves out (`fold`): shown by its load event, in what
        holds it (a folded panel, the upload view), once the page can be used."""
        return (*self.folded, self.link, self.load_link)


# The rarely used panels: each one's name (its contents' `elem_id`) and its toggle's label.
FOLDS = {
    "steps-box": "Compare two steps",
    "advanced": "Advanced",
    "tips": "Tips",
    "key-box": "RunAPI key",
}
MANAGE_FOLD = {"manage": "Rename or delete this session"}


class _Forget:
    """A `gr.State`'s value needs nothing done when its tab ends. Gradio writes the callback into
    the page's config as text: its own default's repr is a memory address of the server."""

    def __call__(self, _value: Any) -> None:
        return None

    def __repr__(self) -> str:
        return "forget"


_FORGET = _Forget()


def _state() -> gr.State:
    """A tab's state, empty at first."""
    return gr.State(None, delete_callback=_FORGET)


def fold(name: str) -> gr.Column:
    """A rarely used panel's contents, hidden until its toggle opens it.

    Gradio loads the code of every component under a closed accordion with the page and builds
    each one, and an accordion is itself a block the page mounts; a hidden column costs the page
    nothing (README Numbers, page). What it holds is hidden too (`visible=False`, listed in
    `Components.fold_parts`) and shown by the page's load event, once the page can be used
    (and as the panel opens): Gradio loads the module of every component that is itself
    visible, under a hidden column or not, and the page's first draw waited for those of the
    dropdowns, radios and checkboxes no one had opened. The toggles are plain
    buttons in one `gr.HTML` (`folds_html`): opening one asks the server to show the column and
    fill it (`Handlers.on_fold`); folding it is the page's own (assets/studio.js).
    """
    return gr.Column(visible=False, elem_id=name, elem_classes=["fold-panel"])


def folds_html(folds: dict[str, str]) -> str:
    """The toggles of `folds` (name: label) as buttons that say whether their panel is open."""
    return (
        '<div class="fold-bar">'
        + "".join(
            f'<button type="button" class="fold-toggle" data-fold="{name}" aria-expanded="false"'
            f' aria-controls="{name}">{html.escape(label)}</button>'
            for name, label in folds.items()
        )
        + "</div>"
    )


# A toggle opens its panel (one event: the server shows and fills it) or folds it (the page).
# A panel shown before is filled by the page as it opens where it can (the session's name:
# `filled`), and the server leaves that alone: its fill, landing after what was typed at once,
# replaced it.
_FOLDS_JS = """
element.addEventListener('click', (event) => {
  const toggle = event.target.closest('button[data-fold]');
  if (!toggle || !element.contains(toggle)) return;
  event.preventDefault();
  const studio = window.kontextStudio;
  if (!studio?.toggleFold?.(toggle)) return;
  const filled = Boolean(studio.fillName?.(toggle.dataset.fold));
  trigger('click', {act: toggle.dataset.fold, filled});
});
"""


def _fold_bar(folds: dict[str, str], elem_id: str) -> gr.HTML:
    return gr.HTML(folds_html(folds), elem_id=elem_id, js_on_load=_FOLDS_JS, padding=False)


def render(*, examples: list[Path], browser_secret: str, banner: str) -> Components:
    """Lay out the whole page inside the current `gr.Blocks` context."""
    header = _render_header(banner)
    with gr.Row(elem_id="main", equal_height=False):
        with gr.Column(scale=3, min_width=320, elem_id="stage"):
            canvas = _render_canvas(examples)
            instruction = _render_instruction()
        with gr.Column(scale=1, min_width=260, elem_id="side"):
            history = _render_history()
    folds = {**canvas.pop("folds"), **instruction.pop("folds"), **history.pop("folds")}
    parts = {**canvas.pop("fold_parts"), **instruction.pop("fold_parts")}
    parts |= history.pop("fold_parts")
    return Components(
        folds=folds,
        fold_parts=parts,
        **header,
        **canvas,
        **instruction,
        **history,
        # Every open tab looks for news of its session (other tabs, the CLI, agents) and ticks
        # the elapsed time of what runs: a cheap version check when nothing changed.
        timer=gr.Timer(TICK_IDLE_S, active=True),
        # The step this tab shows (the parent of its next edit), and the version its page shows:
        # held by the page, as it is the last render the page drew (replies of one tab can
        # reach it in another order than they were made: a render from another step than the
        # tab's is drawn again, `Handlers._news`).
        tab_step=_state(),
        version=gr.Textbox("", visible=False),
        # The candidates on show (step ids), while some are.
        picks=_state(),
        # Set when the balance may have moved (a load, a change in the session): its change
        # asks RunAPI, apart from the page (`Handlers.on_balance`).
        balance_due=_state(),
        # Set by the timer's tick when there is news that redraws the page: its change draws it
        # (`Handlers.on_beat`, `Handlers.on_tick`).
        news=_state(),
        browser=gr.BrowserState(None, storage_key=BROWSER_STORAGE_KEY, secret=browser_secret),
        tab_key=_state(),
        # Only when the visitor ticks "remember": in their browser's storage, never on disk here.
        key_store=gr.BrowserState(None, storage_key=KEY_STORAGE_KEY, secret=browser_secret),
        # The token under which the studio holds a key pasted in this tab (`ui.tabkeys`): kept
        # in the tab's session storage by the page, sent with its load (`events.wire`).
        key_token=gr.Textbox("", visible=False),
        # The session and step this tab showed before it was reloaded ("session|step"), from
        # its session storage, sent with the load: the tab comes back where it was.
        shown=gr.Textbox("", visible=False),
    )


def _render_header(banner: str) -> dict[str, Any]:
    """The title, the session list, + New, the banner, the session's cost and the balance: one
    `gr.HTML` (README Numbers, page); the handlers set its value (the list) and its props."""
    header = gr.HTML(
        "",
        elem_id="header",
        html_template=HEADER_TEMPLATE,
        js_on_load=_HEADER_JS,
        padding=False,
        banner=prose.to_html(banner),
        cost=prose.to_html(present.cost_line(None)),
        # Filled in once RunAPI answers, after the page is drawn (`Handlers.on_balance`).
        balance="",
    )
    return {"header": header}


def _render_empty(examples: list[Path]) -> dict[str, Any]:
    """What a session with no picture shows in the canvas's place: the upload box, a link, the
    examples."""
    with gr.Column(elem_id="empty", visible=False) as empty:
        source = hand_over_unopened(
            gr.Image(
                label="Drop, paste or click to upload an image (or type an instruction)",
                type="filepath",
                image_mode=None,  # keep the file as uploaded: alpha and all (gradio-notes §2)
                sources=["upload", "clipboard", "webcam"],
                elem_id="source",
                height=300,
            )
        )
        with gr.Row(equal_height=True):
            # (Shown by the page's load event, under the column: visible in the first draw,
            # their modules held it up. `Components.held_back`)
            link = gr.Textbox(
                label="Or a link to an image",
                placeholder="https://…",
                elem_id="link",
                scale=4,
                max_lines=1,
                visible=False,
            )
            load_link = gr.Button("Load", elem_id="load-link", scale=1, min_width=60, visible=False)
        # Small thumbnails in plain HTML: a Gallery would cost the page fifteen requests.
        example_gallery = gr.HTML(
            tree.examples_html(
                [(str(_thumbnail(p)), p.stem) for p in examples], url=_thumbnail_url
            ),
            elem_id="examples",
            js_on_load=_CLICKS_JS,
        )
    return {
        "empty": empty,
        "source": source,
        "link": link,
        "load_link": load_link,
        "examples": example_gallery,
    }


def _render_canvas(examples: list[Path]) -> dict[str, Any]:
    with gr.Column(elem_id="canvas"):
        result = gr.Image(
            label="The step this tab shows",
            show_label=False,
            type="filepath",
            interactive=False,
            elem_id="result",
            height=CANVAS_HEIGHT,
            format="png",
            buttons=["fullscreen"],
            # The canvas is what a returning visitor finds: it shows at once (empty until the
            # page's load event fills it), and the upload box only when there is no session.
            visible=True,
        )
        # The step's source, laid over the canvas while "before" is held (assets/studio.css).
        before = gr.Image(
            label="Its source",
            show_label=False,
            type="filepath",
            interactive=False,
            elem_id="before",
            height=CANVAS_HEIGHT,
            format="png",
            buttons=[],
            visible=False,
        )
        empty = _render_empty(examples)
        # "Compare two steps" opens in the canvas's place, which it takes while it is open (it
        # opened under the page's fold, and the page scrolled 778 px to it: UX audit 2).
        with fold("steps-box") as steps_box:
            with gr.Row():
                pair_a = gr.Dropdown(
                    label="Left", choices=[], elem_id="pair-a", scale=1, visible=False
                )
                pair_b = gr.Dropdown(
                    label="Right", choices=[], elem_id="pair-b", scale=1, visible=False
                )
            pair_note = prose.component("", elem_id="pair-note")
            # Shown once it has a pair (its module is not loaded with the page until then).
            slider = gr.ImageSlider(
                label="Before / after",
                # (Its label lay over the top of both pictures: UX audit 4. The step pickers
                # above it say which is which.)
                show_label=False,
                type="filepath",
                format="png",
                elem_id="slider",
                # (Pixels: its own `height` in CSS units cropped both pictures, and shifted one
                # against the other: UX audit 3.)
                max_height=SLIDER_MAX_HEIGHT,
                buttons=["fullscreen"],  # (its own Download saved a hash-named copy: audit 10)
                interactive=False,
                visible=False,
            )
    with gr.Row(equal_height=True, elem_id="canvas-bar"):
        status = prose.component("", elem_id="status")
        # A region for the next edit, drawn on the canvas (assets/studio.js draws and sends it).
        tools = gr.HTML(TOOLS_HTML, elem_id="tools", js_on_load=None, visible=False)
        hold = gr.Button(
            "◐ Before", elem_id="hold", size="sm", scale=0, min_width=90, visible=False
        )
        retry = gr.Button(
            "↻ Try again", elem_id="retry", visible=False, size="sm", scale=0, min_width=100
        )
        raw = gr.DownloadButton(
            "Model's own output",
            elem_id="raw",
            visible=False,
            size="sm",
            scale=0,
            min_width=120,
        )
        # Last on the bar (it moved as the others came and went: UX audit 5), and for Tab.
        download = gr.DownloadButton(
            "Download", elem_id="download", visible=False, size="sm", scale=0, min_width=100
        )
    return {
        "result": result,
        "before": before,
        **empty,
        "status": status,
        "hold": hold,
        "tools": tools,
        "raw": raw,
        "download": download,
        "retry": retry,
        "pair_a": pair_a,
        "pair_b": pair_b,
        "pair_note": pair_note,
        "slider": slider,
        "folds": {"steps-box": steps_box},
        "fold_parts": {"steps-box": (pair_a, pair_b)},
    }


def _render_instruction() -> dict[str, Any]:
    # The instruction bar is plain HTML at the head of the options block (`bar_html`), whose
    # Edit is that block's `submit`; what Enter took goes to the server in these hidden inputs,
    # put there by the page script (`studio.send`), as the options' values are (README Numbers,
    # page: the page loads no Textbox or Button module for it).
    prompt = gr.Textbox("", visible=False)
    # Which Enter of this tab an edit is (set by the page script as it sends), so that
    # instructions typed ahead chain in the order they were typed.
    ticket = gr.Textbox("", visible=False, elem_id="ticket")
    # The region drawn for this edit (a mask as a PNG data URL, or "box:x,y,w,h").
    # (`ui.tabs` takes a large body for an event with it.)
    region = takes_large(gr.Textbox("", visible=False, elem_id="region"))
    # Candidates land here, side by side, between the canvas (which makes room for them) and the
    # bar, which stays where it is (under the bar, they pushed it 240 px up: UX audit 1).
    candidates = gr.HTML("", elem_id="candidates", js_on_load=_CLICKS_JS, visible=False)
    options = _render_options()
    fold_bar = _fold_bar(FOLDS, "folds")
    folds = {}
    with fold("advanced") as shown, gr.Row():
        output_format = gr.Radio(
            [("PNG (lossless, best for chains)", "png"), ("JPEG", "jpeg")],
            value="png",
            label="Output format",
            elem_id="output-format",
            visible=False,
        )
        translation = gr.Checkbox(
            True, label="Translate non-English instructions", elem_id="translation", visible=False
        )
        expansion = gr.Checkbox(
            False,
            label="Let the service expand the instruction",
            elem_id="expansion",
            visible=False,
        )
        # Shown when Advanced opens (its module is not loaded with the page until then).
        safety = gr.Slider(
            0,
            SAFETY_MAX_GENERATE,
            value=2,
            step=1,
            elem_id="safety",
            label="Safety tolerance (0 strict; up to 2 when editing, 6 when generating)",
            visible=False,
        )
    folds["advanced"] = shown
    with fold("tips") as shown:
        prose.component(present.TIPS)
    folds["tips"] = shown
    with fold("key-box") as shown:
        user_key = gr.Textbox(
            label="Your RunAPI key (checked when pasted; used for this tab only)",
            type="password",
            elem_id="user-key",
            visible=False,
        )
        remember_key = gr.Checkbox(
            False,
            label="Remember it in this browser (kept in this browser only, never on the server)",
            elem_id="remember-key",
            visible=False,
        )
        key_note = prose.component("", elem_id="key-note")
    folds["key-box"] = shown
    return {
        "prompt": prompt,
        "ticket": ticket,
        "candidates": candidates,
        "region": region,
        **options,
        "fold_bar": fold_bar,
        "output_format": output_format,
        "translation": translation,
        "expansion": expansion,
        "safety": safety,
        "user_key": user_key,
        "remember_key": remember_key,
        "key_note": key_note,
        "folds": folds,
        "fold_parts": {
            "advanced": (output_format, translation, expansion),
            "key-box": (user_key, remember_key),
        },
    }


# What the instruction box shows while empty.
PLACEHOLDER = 'Change the shop sign to read "BAKERY", keep everything else'
# The instruction bar: the box and Edit, plain controls (`bar_html`). Both are enabled by the
# page script as it starts (assets/studio.js): it takes Enter and the click, so an instruction
# is never sent before it can be (`#prompt textarea:not([disabled])` is the bar ready).
BAR_HTML = (
    '<div id="bar" class="bar">'
    '<div id="prompt" class="prompt">'
    '<label for="prompt-box" class="sr-only">Instruction</label>'
    f'<textarea id="prompt-box" rows="1" placeholder="{html.escape(PLACEHOLDER)}"'
    f' autocomplete="off" data-max="{MAX_PROMPT_CHARS}" disabled></textarea>'
    "</div>"
    '<button type="button" id="run" class="run" title="Edit (Enter)" disabled>Edit ⏎</button>'
    "</div>"
)


def bar_html() -> str:
    """The instruction bar and the row under it, as plain controls in one `gr.HTML` (README
    Numbers, page): the box and Edit (`BAR_HTML`), then the model, the ratio, Keep the rest, how
    many results, pro vs max. The page script takes the box's text at Enter and carries it and
    the options' values into the edit's hidden inputs (`studio.send`); the server checks them
    as before."""
    models = "".join(
        f'<label><input type="radio" name="kontext-model" value="{value}"'
        f"{' checked' if value == 'pro' else ''}> {html.escape(label)}</label>"
        for label, value in present.model_choices()
    )
    ratios = "".join(
        f'<option value="{value}">{html.escape(label)}</option>'
        for label, value in present.aspect_choices(None)
    )
    counts = "".join(f'<option value="{value}">{label}</option>' for label, value in COUNTS)
    return (
        BAR_HTML + '<div class="opts">'
        f'<div id="model" role="radiogroup" aria-label="Model">{models}</div>'
        f'<select id="aspect" aria-label="Ratio" title="Ratio">{ratios}</select>'
        '<label id="keep-rest" title="Change only what the instruction asks; keep the rest'
        ' of the image exactly"><input type="checkbox"> Keep the rest</label>'
        f'<select id="count" aria-label="Results" title="How many results">{counts}</select>'
        '<button type="button" id="compare" class="opt-button">pro vs max</button>'
        "</div>"
    )


# The bar and its options: Edit is the block's `submit` (the page script takes the text first,
# in the capture phase), pro vs max its `click` (the other controls are read by the page script
# as an edit goes); the server's word on the ratio's "Match source" label (`match`) and on the
# model a kept candidate used (`model`) is put into the controls. Neither prop is in the
# template, so the block is never drawn again: what is typed in the box stays.
# The bar takes typing from the moment it is drawn (focused on wide screens, as the page script
# would): the page script (assets/studio.js) starts tens of milliseconds later, once Gradio says
# the page is ready. An Enter or Edit before then is held, on the box (`data-held`: how long the
# box's text was at each), and the page script sends the words before each as it starts, leaving
# what was typed after the last: nothing is sent that it did not take.
_OPTIONS_JS = """
const box = element.querySelector('#prompt-box');
const early = () => !window.kontextStudio?.started;
const hold = () => {
  let at = [];
  try { at = JSON.parse(box.dataset.held || '[]'); } catch { at = []; }
  box.dataset.held = JSON.stringify([...at, box.value.length]);
};
for (const control of [box, element.querySelector('#run')]) if (control) control.disabled = false;
if (box && window.matchMedia('(min-width: 700px) and (min-height: 501px)').matches
    && (!document.activeElement || document.activeElement === document.body)) {
  box.focus({preventScroll: true});
}
element.addEventListener('keydown', (event) => {
  if (event.key !== 'Enter' || event.shiftKey || event.isComposing || event.target !== box) return;
  if (!early()) return;
  event.preventDefault();
  hold();
});
element.addEventListener('click', (event) => {
  const button = event.target.closest('#run, #compare');
  if (!button || button.disabled || !element.contains(button)) return;
  event.preventDefault();
  if (early()) {
    if (button.id === 'run' && box) hold();
    return;
  }
  trigger(button.id === 'run' ? 'submit' : 'click');
});
watch('match model'.split(' '), () => window.kontextStudio?.setOptions?.(props.match, props.model));
"""

# How many results one instruction may ask for (label, value).
COUNTS = [(f"{n} result{'s' if n > 1 else ''}", str(n)) for n in range(1, MAX_CANDIDATES + 1)]


def _render_options() -> dict[str, Any]:
    """The instruction bar and the row under it (`bar_html`), and the hidden inputs its values
    go in."""
    options = gr.HTML(
        bar_html(),
        elem_id="options",
        js_on_load=_OPTIONS_JS,
        match=present.aspect_choices(None)[0][0],
        model="",
    )
    # Hidden: neither loaded nor mounted by the page; Gradio checks what the page puts in them
    # against their choices, and the handlers check it again (`_form_params`).
    return {
        "options": options,
        "model": gr.Radio(present.model_choices(), value="pro", visible=False),
        "aspect": gr.Dropdown(present.aspect_choices(None), value="match", visible=False),
        "keep_rest": gr.Checkbox(False, visible=False),
        "count": gr.Dropdown(COUNTS, value="1", visible=False),
    }


def _render_history() -> dict[str, Any]:
    notice = gr.Button("", elem_id="notice", visible=False, size="sm", variant="primary")
    with gr.Row(equal_height=True, elem_id="history-tools"):
        # Undo, redo and export: plain buttons in one `gr.HTML` (README Numbers, page), whose
        # `can_undo` and `can_redo` props say whether each can be used now.
        history_tools = gr.HTML(
            "",
            elem_id="history-buttons",
            html_template=HISTORY_TOOLS_TEMPLATE,
            js_on_load=_HISTORY_TOOLS_JS,
            padding=False,
            scale=3,
            can_undo=False,
            can_redo=False,
            # Whether there is a session to export (and to rename or delete).
            can_export=False,
        )
        # Gradio's own upload button: its file is checked by Gradio as an upload of this page.
        # (No `file_types`: Gradio's page refused another file with its own raw "Invalid file
        # type" error; the import says in its words what the file is not, UX audit 5. The
        # picker still offers ZIPs first: assets/studio.js sets its `accept`.)
        import_file = gr.UploadButton("Import", elem_id="import", size="sm", min_width=60)
    history = gr.HTML("", elem_id="history", js_on_load=_CLICKS_JS)
    # A link to the export at the studio's own address (`ui.guard.EXPORT_ROUTE`), which the page
    # follows once (`kontextStudio.saveExport`); never a path on the server (review 57 L2).
    # Under the tree: over it, it pushed the tree 53 px down under the pointer (UX audit 11).
    export_file = gr.HTML("", elem_id="export-file", visible=False)
    manage_bar = _fold_bar(MANAGE_FOLD, "manage-fold")
    with fold("manage") as manage:
        with gr.Row(equal_height=True):
            session_name = gr.Textbox(
                label="Session name", elem_id="session-name", scale=4, max_lines=1, visible=False
            )
            rename = gr.Button("Rename", elem_id="rename", scale=1, visible=False)
        delete = gr.Button(
            "Delete this session…", elem_id="delete", variant="stop", size="sm", visible=False
        )
        with gr.Group(visible=False, elem_id="delete-confirm") as delete_confirm:
            delete_text = prose.component("", elem_id="delete-text")
            with gr.Row():
                delete_yes = gr.Button(
                    "Yes, delete it", elem_id="delete-yes", variant="stop", visible=False
                )
                delete_no = gr.Button("No, keep it", elem_id="delete-no", visible=False)
    return {
        "notice": notice,
        "history": history,
        "manage": manage,
        "manage_bar": manage_bar,
        "session_name": session_name,
        "rename": rename,
        "delete": delete,
        "delete_confirm": delete_confirm,
        "delete_text": delete_text,
        "delete_yes": delete_yes,
        "delete_no": delete_no,
        "folds": {"manage": manage},
        "fold_parts": {"manage": (session_name, rename, delete, delete_yes, delete_no)},
        "history_tools": history_tools,
        "export_file": export_file,
        "import_file": import_file,
    }


__all__ = ["Components", "render"]
