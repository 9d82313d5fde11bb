"""The page's short texts (status line, banner, cost, notes, tips) as HTML from a small, escaped
subset of Markdown, so the page needs no Markdown component at all.

Gradio's Markdown costs a page seven more requests and its parser at load (the README's
Numbers); the few texts the studio shows use only `**strong**`, `*emphasis*`, `` `code` ``,
`## heading` and `- list` lines. A `gr.HTML` marked with `PROSE` turns any string it is given
into exactly that: every `<`, `>`, `"` and bare `&` is escaped first, so nothing in the text can
become markup; character references (`&#42;`, which `present.as_text` makes of user text) stay
references. The marking is a CSS class, so it survives Gradio's copies of a component (a prop
update rebuilds it from its constructor arguments).

Imports gradio; `install` once, before the page is built.
"""

from __future__ import annotations

import re
from typing import Any

import gradio as gr

# The class that marks a `gr.HTML` whose value is prose (see `component`).
PROSE = "studio-prose"

_BARE_AMPERSAND = re.compile(r"&(?!#\d{1,7};|#x[0-9a-fA-F]{1,6};|[a-zA-Z][a-zA-Z0-9]{1,31};)")
_STRONG = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_EMPHASIS = re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])")
_CODE = re.compile(r"`([^`]+)`")


def to_html(text: str | None) -> str:
    """`text` (the Markdown subset above) as HTML; nothing in it can become other markup."""
    if not text:
        return ""
    blocks: list[str] = []
    items: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("- "):
            items.append(f"<li>{_inline(line[2:])}</li>")
            continue
        if items:
            blocks.append(f"<ul>{''.join(items)}</ul>")
            items = []
        if line.startswith("## "):
            blocks.append(f"<h2>{_inline(line[3:])}</h2>")
        elif line:
            blocks.append(f"<p>{_inline(line)}</p>")
    if items:
        blocks.append(f"<ul>{''.join(items)}</ul>")
    return "".join(blocks)


def _inline(text: str) -> str:
    text = _BARE_AMPERSAND.sub("&amp;", text)
    text = text.replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    text = _CODE.sub(r"<code>\1</code>", text)
    text = _STRONG.sub(r"<strong>\1</strong>", text)
    return _EMPHASIS.sub(r"<em>\1</em>", text)


def component(value: str = "", **kwargs: Any) -> gr.HTML:
    """A `gr.HTML` that shows `value`, and every string it is later given, as prose."""
    install()
    classes = kwargs.pop("elem_classes", None) or []
    classes = [classes] if isinstance(classes, str) else list(classes)
    return gr.HTML(value, elem_classes=[*classes, PROSE], js_on_load=None, padding=False, **kwargs)


_gradio_postprocess = gr.HTML.postprocess


def _postprocess(self: gr.HTML, value: str | None) -> str | None:
    classes = self.elem_classes or []
    if PROSE in ([classes] if isinstance(classes, str) else classes):
        return to_html(None if value is None else str(value))
    return _gradio_postprocess(self, value)


def install() -> None:
    """Make every `gr.HTML` marked `PROSE` render its strings with `to_html` (idempotent)."""
    gr.HTML.postprocess = _postprocess  # type: ignore[method-assign]


__all__ = ["PROSE", "component", "install", "to_html"]
