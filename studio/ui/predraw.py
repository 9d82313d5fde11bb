"""A returning visitor's page drawn in its first answer, not after its load event.

A page of the studio is Gradio's page: its first answer carries the config of every component,
and the page asks for the tab's session (its load event, `Handlers.on_load`) only once every
component has mounted. The canvas, the history and the header then appear 0.1-0.3 s after
the rest, a round trip and a redraw later (README, Numbers: page). Here the page's own answer
carries them already: while Gradio's page route (`GET /`) answers, the load event's handler
runs for the request's visitor as a tab with nothing in its storage would send it (the
visitor's newest session, at its current step), and what it draws is put into the config the
route copies, under `CONFIG_KEY`.

It is only a proposal to the page: `assets/predraw.js`, in the page's head, runs before
Gradio mounts and puts it into the components only when the tab will show that very session
and step (a reload of a tab on another session, or on another step, or a browser whose last
session was another, mounts the page as before). The load event runs as ever and stays the
authority: it sets the tab's states, the key, the balance and anything that changed.

Who may see what is the load handler's own check (`visitor.guarded`): a request that names no
visitor draws nothing. A page drawn so is its requester's alone: marked `private, no-store`,
varying with the cookie.

Imports gradio and starlette.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable, ItemsView, Iterable
from typing import Any

import gradio as gr
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from studio.ui.guard import kept_for

log = logging.getLogger(__name__)

# Where the config sent with a page carries its drawn components: {"session", "step", "props":
# {component id: props}} (read by assets/predraw.js).
CONFIG_KEY = "kontext_predrawn"

Draw = Callable[[Request], Awaitable[dict[str, Any] | None]]

_DRAWN: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "kontext_predrawn", default=None
)


class PageConfig(dict[str, Any]):
    """`Blocks.config`, which Gradio's page route copies for each page (`get_page_config`, by
    `items()`): with the drawn page under `CONFIG_KEY` while a page request is answered. Every
    other reader (`/config`, the API's clients) sees the config as built."""

    def items(self) -> ItemsView[str, Any]:  # type: ignore[override]
        drawn = _DRAWN.get()
        if drawn is None:
            return super().items()
        return {**self, CONFIG_KEY: drawn}.items()


# The attribute of a Blocks holding how its pages are drawn (on the Blocks itself: the drawing
# holds the Blocks, and a table keyed by it would keep every app a test process made).
_DRAW_ATTR = "_kontext_draw"


def prepare(demo: gr.Blocks, draw: Draw) -> None:
    """`draw` is how `demo`'s pages are drawn, once it is launched (`install`)."""
    setattr(demo, _DRAW_ATTR, draw)


def install(demo: gr.Blocks) -> None:
    """Draw each page request of `demo` (launched) with its prepared `draw`'s answer for the
    request's visitor (nothing, if none was prepared)."""
    draw: Draw | None = getattr(demo, _DRAW_ATTR, None)
    if draw is None:
        return
    demo.config = PageConfig(demo.config)  # type: ignore[assignment]
    for route in demo.server_app.router.routes:
        if getattr(route, "path", None) == "/" and "GET" in (getattr(route, "methods", ()) or ()):
            route.app = _drawing(route.app, draw)  # type: ignore[attr-defined]


def _drawing(inner: ASGIApp, draw: Draw) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        drawn = None
        if scope["type"] == "http" and scope.get("method") == "GET":
            try:
                drawn = await draw(Request(scope))
            except Exception:  # the page is drawn by its load event, as before
                log.exception("the page was sent without its session drawn")
        token = _DRAWN.set(drawn)
        try:
            # (Gradio's route is a plain function: it runs in a worker thread, which gets a
            # copy of this context.)
            await inner(scope, receive, send if drawn is None else _kept_private(send))
        finally:
            _DRAWN.reset(token)

    return app


def _kept_private(send: Send) -> Send:
    """`send`, with a page that shows someone's session never kept by a cache on the way."""
    return kept_for(send, b"private, no-store", b"Cookie")


def drawn_props(outputs: Iterable[Any], data: Iterable[Any], drawable: set[int]) -> dict[str, Any]:
    """The props each `drawable` output gets from its postprocessed `data` (a component update
    gives its props, anything else is the value): {component id: props}. A `gr.HTML` block's
    own props (`props`) are those the update changes, to be merged into the block's."""
    props: dict[str, Any] = {}
    for block, value in zip(outputs, data, strict=True):
        if block._id not in drawable:
            continue
        if isinstance(value, dict) and value.get("__type__") == "update":
            given = {k: _own(v) if k == "props" else v for k, v in value.items()}
            given.pop("__type__")
        else:
            given = {"value": value}
        if given:
            props[str(block._id)] = given
    return props


def _own(props: Any) -> Any:
    """A `gr.HTML` block's own props, as an update gives them (merged into the block's by the
    page: assets/predraw.js)."""
    if isinstance(props, dict):
        return {k: v for k, v in props.items() if k != "__type__"}
    return props
