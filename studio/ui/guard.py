"""The hosted studio's file guard: stored images and their copies only for their owner.

An ASGI middleware in front of Gradio, behind `ui.visitor.VisitorMiddleware` (which names every
browser). It guards Gradio's file routes: a stored image, a thumbnail or a cached copy of
either (all named by the image's SHA-256) is served only to a visitor who owns a session that
holds it, and the route never fetches a remote URL for anyone. Knowing a session id, a step
id, an image hash or a file URL is never enough.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request

from studio.ui.bridge import Bridge
from studio.ui.visitor import Refusal, visitor_from

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_FILE_ROUTE = re.compile(r"/(?:gradio_api/)?file=(?P<target>.+)$")
_IMAGE_NAME = re.compile(r"(?:^|/)(?P<sha>[0-9a-f]{64})\.[a-z0-9]{1,10}$")


class VisitorGuard:
    """Stored images and their copies only for their owner."""

    def __init__(self, app: ASGIApp, *, bridge: Bridge) -> None:
        self.app = app
        self.bridge = bridge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if (match := _FILE_ROUTE.search(scope.get("path", ""))) is not None and not (
            await self._may_read(request, unquote(match["target"]))
        ):
            await _forbidden(send)
            return
        await self.app(scope, receive, send)

    async def _may_read(self, request: Request, target: str) -> bool:
        if target.lower().startswith(("http:", "https:", "//")):
            return False  # the file route never fetches a remote URL on a hosted studio
        image = _IMAGE_NAME.search(target)
        if image is None:
            return True  # the page's own assets, uploads and exports under unguessable names
        try:
            who = visitor_from(request, hosted=True)
        except Refusal:
            return False
        return await self.bridge.owns_image(image["sha"], who)


async def _forbidden(send: Send) -> None:
    body = b"Not found."
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"10")],
        }
    )
    await send({"type": "http.response.body", "body": body})
