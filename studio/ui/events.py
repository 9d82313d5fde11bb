"""Every event of the page, registered in one `wire`: which component triggers which handler, with
which inputs, outputs and concurrency. The handlers themselves live in `handlers.py`.

Every listener is a public endpoint: the page's own are marked undocumented, and what they may do
is decided behind the bridge, never by what the page sends. Most take the browser's session id
and the step the tab shows (`tab_step`) first.
"""

from __future__ import annotations

import json
from typing import Any

import gradio as gr
from gradio.block_function import BlockFunction

from studio.ui.handlers import Handlers
from studio.ui.key import KeyHandlers
from studio.ui.layout import KEY_TOKEN_STORAGE_KEY, SHOWN_STORAGE_KEY, Components

_INTERNAL: dict[str, Any] = {"api_visibility": "undocumented"}
# Navigation, ticks and submitting an edit are quick store reads and writes (an edit runs in the
# engine, not in the event): let many run at once.
_QUICK: dict[str, Any] = {"concurrency_limit": None, "concurrency_id": "quick", **_INTERNAL}
# The engine bounds what reading images costs (a few per visitor and per address, decodes in
# fair lanes), so Gradio's own bound on these events is only a backstop: a pile of slow reads
# from a few addresses must not fill it for everyone.
_INTAKE: dict[str, Any] = {"concurrency_limit": 64, "concurrency_id": "intake", **_INTERNAL}


# Enter (or Edit): the page itself takes the instruction at the key or the click, empties the
# box and shows a "queued" tile at once, and numbers the Enter (assets/studio.js); this page
# function then puts exactly the text taken into the edit's arguments (the box and Edit are
# plain controls in the options block, `layout.bar_html`, and the instruction goes in a hidden
# input), with the options row's values (model, ratio, Keep the rest, results) as they were at
# that moment, and the region drawn on the canvas (then cleared). The reply never writes into
# the box. `at` names where each goes.
def _page_fills(function: str, at: dict[str, int]) -> str:
    """A page function that hands the event's arguments and `at` to `kontextStudio.<function>`."""
    return (
        f"(...args) => window.kontextStudio?.{function} ? "
        f"window.kontextStudio.{function}(args, {json.dumps(at)}) : args"
    )


# Clicks and ticks change only what they show: no dimming, no spinner over the page. Their
# (hidden) progress goes to the status line alone (`show_progress_on`, in `wire`): Gradio's
# page sends each status of an event (pending, complete) to every output it names, and again
# to every output any earlier event named, so that the load (25 outputs), and each tick after
# an edit or a click, updated every output of the page two or three times over.
_QUIET: dict[str, Any] = {"show_progress": "hidden", **_QUICK}


# The token of a key pasted in this tab (`ui.tabkeys`), kept in the tab's session storage (a
# reload keeps it, closing the tab drops it) and sent with the page's load, in `key_token`.
_TOKEN_KEPT = f"""(token) => {{
  try {{
    if (token) sessionStorage.setItem({json.dumps(KEY_TOKEN_STORAGE_KEY)}, token);
    else sessionStorage.removeItem({json.dumps(KEY_TOKEN_STORAGE_KEY)});
  }} catch (error) {{}}
}}"""
_TOKEN_SENT = f"""(...args) => {{
  try {{
    args[2] = sessionStorage.getItem({json.dumps(KEY_TOKEN_STORAGE_KEY)}) || "";
    args[3] = sessionStorage.getItem({json.dumps(SHOWN_STORAGE_KEY)}) || "";
  }} catch (error) {{}}
  return args;
}}"""


def wire(c: Components, h: Handlers, k: KeyHandlers, demo: gr.Blocks) -> BlockFunction:
    """Register every event of the page; the load event's function."""
    tab = [c.browser, c.tab_step]
    quiet = {**_QUIET, "show_progress_on": [c.status]}  # (see `_QUIET`)
    page = h.view_outputs
    # One load event: the page, and a key this browser was asked to remember (put back in its
    # box, whose change checks it). The balance comes after, apart: RunAPI's answer never holds
    # the page up (a load or a change in the session sets `balance_due`).
    keys = [c.remember_key, c.user_key]
    held = [part for part in c.held_back if all(part is not out for out in [*page, *keys])]
    load_outputs = [*page, *held, *keys, c.balance_due]
    load = demo.load(
        h.on_load,
        [c.browser, c.key_store, c.key_token, c.shown],
        load_outputs,
        js=_TOKEN_SENT,
        **quiet,
    )
    c.balance_due.change(
        h.on_balance, [c.browser, c.tab_key], [c.header], trigger_mode="always_last", **quiet
    )
    # A folded panel opens (`layout.fold`): shown, and filled in for the tab's step.
    fold_outputs = [*c.folds.values(), *c.folded, c.slider, c.pair_note, c.safety]
    gr.on(
        [c.fold_bar.click, c.manage_bar.click],
        h.on_fold,
        [*tab, c.pair_a, c.pair_b, c.safety],
        [*fold_outputs, c.delete_confirm],
        **_QUICK,
    )
    # Gradio's own decoding of the upload is skipped: our intake checks it (gradio-notes).
    c.source.upload(h.on_source, [*tab, c.source], page, preprocess=False, **_INTAKE)
    c.examples.click(h.on_example, tab, page, **_INTAKE)
    gr.on([c.load_link.click, c.link.submit], h.on_link, [*tab, c.link], page, **_INTAKE)
    c.header.click(h.on_header_click, tab, page, **quiet)

    form = [c.aspect, c.output_format, c.translation, c.expansion, c.safety, c.tab_key]
    edit_inputs = [*tab, c.prompt, c.model, *form, c.ticket, c.keep_rest, c.count, c.region]
    # Every Enter counts, even while the one before is still on its way ("multiple").
    sent = {"prompt": c.prompt, "ticket": c.ticket, "region": c.region, "model": c.model}
    sent |= {"aspect": c.aspect, "keep": c.keep_rest, "count": c.count}
    c.options.submit(
        h.on_edit,
        edit_inputs,
        page,
        js=_page_fills("send", {k: edit_inputs.index(x) for k, x in sent.items()}),
        trigger_mode="multiple",
        **quiet,
    )
    c.retry.click(h.on_retry, [*tab, c.tab_key], page, **quiet)
    # pro vs max (in the options row) takes the instruction from the box and the region drawn
    # on the canvas with it, as Enter does, and the ratio and Keep the rest as they are; a
    # refused one's text goes back into the box (`kontextStudio.afterCompare`).
    compare_inputs = [*tab, c.prompt, *form, c.keep_rest, c.region]
    taken = {"prompt": c.prompt, "region": c.region, "aspect": c.aspect, "keep": c.keep_rest}
    c.options.click(
        h.on_compare,
        compare_inputs,
        page,
        js=_page_fills("withOptions", {k: compare_inputs.index(x) for k, x in taken.items()}),
        **quiet,
    ).then(None, [c.status], None, js="(s) => window.kontextStudio?.afterCompare?.(s)", **quiet)
    gr.on(
        [c.history.click, c.candidates.click],
        h.on_history_click,
        tab,
        page,
        trigger_mode="multiple",
        **quiet,
    )
    c.notice.click(h.on_notice, tab, page, **quiet)
    # Export is one click: once the ZIP is made the page saves it (`kontextStudio.saveExport`).
    # Undo pressed again while the last is on its way counts too: the page sends it once the
    # last move is drawn ("multiple": Gradio would drop it while the chain runs).
    c.history_tools.click(
        h.on_history_tool, tab, [*page, c.export_file], trigger_mode="multiple", **quiet
    ).then(None, [c.export_file], None, js="(f) => window.kontextStudio?.saveExport?.(f)", **quiet)
    tick_inputs = [*tab, c.version, c.picks, c.tab_key]
    # The timer's tick answers two outputs (Gradio builds anew each output an answer leaves
    # alone); news that redraws the page comes as a change of `news`.
    c.timer.tick(h.on_beat, tick_inputs, [c.status, c.news], **quiet)
    c.news.change(
        h.on_tick,
        tick_inputs,
        [*page, c.balance_due],
        trigger_mode="always_last",
        **quiet,
    )
    pair = [*tab, c.pair_a, c.pair_b]
    # Any change of a picker, the page's too (the slider kept the pictures before: audit 12).
    pickers, shown = [c.pair_a.change, c.pair_b.change], [c.slider, c.pair_note]
    gr.on(pickers, h.on_pair, pair, shown, trigger_mode="always_last", **_QUICK)

    _wire_key(c, k)

    gr.on(
        [c.rename.click, c.session_name.submit],
        h.on_rename,
        [*tab, c.session_name],
        [*page, c.session_name],
        **_QUICK,
    )
    c.delete.click(h.on_delete_ask, tab, [c.delete_text, c.delete_confirm, c.status], **_QUICK)
    c.delete_no.click(h.on_delete_no, None, [c.delete_confirm], **_QUICK)
    c.delete_yes.click(h.on_delete, tab, [*page, c.delete_confirm, c.manage], **_QUICK)
    c.import_file.upload(h.on_import, [*tab, c.import_file], page, **_INTAKE)
    fn: BlockFunction = demo.fns[load["id"]]
    return fn


def _wire_key(c: Components, k: KeyHandlers) -> None:
    """The key box's events."""
    # A pasted key is checked at once; typing is coalesced (only the last value is checked).
    # `change`, not `input`: Gradio 6's password box sends `input` on key presses only, so a
    # paste would go unnoticed.
    key_outputs = [c.tab_key, c.key_store, c.header, c.key_note, c.key_token]
    c.user_key.change(
        k.on_key,
        [c.user_key, c.remember_key, c.key_token],
        key_outputs,
        trigger_mode="always_last",
        **_QUICK,
    ).then(None, [c.key_token], None, js=_TOKEN_KEPT, **_QUICK)
    c.remember_key.input(
        k.on_remember, [c.user_key, c.remember_key], [c.key_store, c.key_note, c.header], **_QUICK
    )
