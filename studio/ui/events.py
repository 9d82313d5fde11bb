"""Every event of the page, registered in one `wire`: which component triggers which handler, with
which inputs, outputs and concurrency. The handlers themselves live in `handlers.py`.

Every listener is a public endpoint: the page's own are marked undocumented, and what they may do
is decided behind the bridge, never by what the page sends.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from studio.ui.handlers import Handlers
from studio.ui.layout import Components

_INTERNAL: dict[str, Any] = {"api_visibility": "undocumented"}
# Navigation and page refreshes are quick store reads: let many run at once.
_QUICK: dict[str, Any] = {"concurrency_limit": None, "concurrency_id": "quick", **_INTERNAL}
_INTAKE: dict[str, Any] = {"concurrency_limit": 8, "concurrency_id": "intake", **_INTERNAL}
# An edit holds its slot while it runs (seconds to minutes): no per-listener cap; the global cap
# is `launch(max_threads=...)`.
_EDITS: dict[str, Any] = {"concurrency_limit": None, "concurrency_id": "edit", **_INTERNAL}


def wire(c: Components, h: Handlers, demo: gr.Blocks) -> None:
    """Register every event of the page."""
    b = c.browser
    page = h.view_outputs
    demo.load(h.on_load, [b], page, **_QUICK)
    c.source.upload(h.on_source, [b, c.source], page, **_INTAKE)
    c.examples.select(h.on_example, [b], page, **_INTAKE)
    gr.on([c.load_link.click, c.link.submit], h.on_link, [b, c.link], page, **_INTAKE)
    c.new_session.click(h.on_new_session, [b], page, **_QUICK)
    c.sessions.input(h.on_pick_session, [b, c.sessions], page, **_QUICK)

    form = [c.aspect, c.output_format, c.translation, c.expansion, c.safety, c.tab_key]
    edit_inputs = [b, c.prompt, c.model, *form]
    gr.on([c.run.click, c.prompt.submit], h.on_edit, edit_inputs, page, **_EDITS)
    c.retry.click(h.on_retry, [b, c.tab_key], page, **_EDITS)
    c.compare.click(h.on_compare, [b, c.prompt, *form], h.compare_outputs, **_EDITS)
    c.keep_pro.click(h.on_keep_pro, [b, c.compare_pair], h.compare_outputs, **_QUICK)
    c.keep_max.click(h.on_keep_max, [b, c.compare_pair], h.compare_outputs, **_QUICK)

    c.history.select(h.on_history_select, [b], page, **_QUICK)
    c.branches.select(h.on_branch_select, [b], page, **_QUICK)
    c.undo.click(h.on_undo, [b], page, **_QUICK)
    c.redo.click(h.on_redo, [b], page, **_QUICK)
    c.timer.tick(h.on_tick, [b], page, **_QUICK)
    pair = [b, c.pair_a, c.pair_b]
    gr.on([c.pair_a.input, c.pair_b.input], h.on_pair, pair, [c.slider], **_QUICK)

    c.user_key.change(h.on_key, [c.user_key], [c.tab_key, c.banner], **_QUICK)
    c.export.click(h.on_export, [b], [*page, c.export_file], **_QUICK)
    c.import_file.upload(h.on_import, [b, c.import_file], page, **_INTAKE)
