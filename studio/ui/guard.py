"""The studio's file guard: every file only for its owner, and the studio's image address.

An ASGI middleware in front of Gradio, behind `ui.visitor.VisitorMiddleware` (which names every
browser on a hosted studio). It guards every route of Gradio that serves a file (`FILE_ROUTES`).
It decides on the path Gradio itself will open: the route is matched with Starlette's own path
compiler (so a trailing newline, a doubled slash or a percent-encoded character means to the
guard exactly what it means to Gradio), and the target is made absolute and resolved (`..`, a
trailing slash, symbolic links) as Gradio's `file_fetch` does, before anything is decided. Then:

- a file whose name carries a content hash (a stored image, its thumbnail, a cached copy of
  either: `<sha256>.<ext>`) is served only to a visitor who owns a session holding that image;
- anything else inside the data directory is never served through Gradio;
- an upload is served only to the visitor who uploaded it, an export only to the one who made it;
- a remote URL is never fetched for anyone.

It also serves the studio's own image address, `IMAGE_ROUTE<sha256>.<ext>`: what the API and
MCP hand their callers as `image_url`. It names no path of the server, and it is served only to
the visitor who owns the image (the same check as above: their cookie, or the X-RunAPI-Key they
called with); on a studio that is not hosted, to its one local user. Knowing a session id, a step
id, an image hash or a file URL is never enough.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import compile_path

from studio.ui.bridge import Bridge
from studio.ui.visitor import Refusal, visitor_from

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Every route of Gradio 6 that opens a file by a path taken from the URL (gradio/routes.py:
# `file` and its older alias `file_deprecated`; both end in `route_utils.file_fetch`).
# `tests/browser/test_file_guard.py` fails if Gradio adds another.
FILE_ROUTES = ("/gradio_api/file={target:path}", "/gradio_api/file/{target:path}")
_FILE_ROUTES = tuple(compile_path(route)[0] for route in FILE_ROUTES)
# The studio's own address for a stored image (API and MCP `image_url`).
IMAGE_ROUTE = "/studio/image/"
_IMAGE_ADDRESS = compile_path(IMAGE_ROUTE + "{name}")[0]
_HASH_NAME = re.compile(r"(?P<sha>[0-9a-f]{64})\.(?P<ext>[a-z0-9]{1,10})")
_NOT_FOUND = b"Not found."


class VisitorGuard:
    """Files only for their owner; the studio's image address.

    `hosted` False: one local user, who may read every file Gradio would serve; only the image
    address is answered here.
    """

    def __init__(self, app: ASGIApp, *, bridge: Bridge, hosted: bool = True) -> None:
        self.app = app
        self.bridge = bridge
        self.hosted = hosted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route_path = _route_path(scope)
        if (image := _IMAGE_ADDRESS.match(route_path)) is not None:
            await self._serve_image(scope, receive, send, image["name"])
            return
        if not self.hosted:
            await self.app(scope, receive, send)
            return
        target = file_target(route_path)
        if target is not None and not await self._may_read(Request(scope), target):
            await _not_found(send)
            return
        await self.app(scope, receive, send)

    async def _may_read(self, request: Request, target: str) -> bool:
        if _is_remote(target):
            return False  # the file route never fetches a remote URL on a hosted studio
        opened = await asyncio.to_thread(_as_opened, target, self.bridge.private_folders())
        if opened is None:
            return True  # nothing there: Gradio answers "not allowed" itself
        paths, inside_store = opened
        hashes = {sha for p in paths if (sha := image_sha(p.name)) is not None}
        if inside_store and not hashes:
            return False  # the database, the secret, anything of the store's but its images
        if not hashes:
            return True  # the page's own assets; uploads and exports come in later commits
        try:
            who = visitor_from(request, hosted=True)
        except Refusal:
            return False
        for sha in hashes:
            if not await self.bridge.owns_image(sha, who):
                return False
        return True

    async def _serve_image(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        """The studio's image address: the stored file, for its owner only."""
        named = _HASH_NAME.fullmatch(name)
        if named is None or scope.get("method") not in ("GET", "HEAD"):
            await _not_found(send)
            return
        try:
            who = visitor_from(Request(scope), hosted=self.hosted)
        except Refusal:
            await _not_found(send)
            return
        path = await self.bridge.owned_image_path(named["sha"], who)
        if path is None or path.suffix != f".{named['ext']}":
            await _not_found(send)
            return
        response = FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})
        await response(scope, receive, send)


def image_sha(name: str) -> str | None:
    """The image a file name `<sha256>.<ext>` names (stored images and all their copies)."""
    named = _HASH_NAME.fullmatch(name)
    return None if named is None else named["sha"]


def file_target(route_path: str) -> str | None:
    """The path or URL a Gradio file route would open for this request path (None: no file
    route), matched exactly as Starlette matches Gradio's routes."""
    for route in _FILE_ROUTES:
        if (match := route.match(route_path)) is not None:
            return str(match["target"])
    return None


def _route_path(scope: Scope) -> str:
    """The path Starlette routes on: the request's, less the root path it is mounted under."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root) and path != root and path[len(root)] == "/":
        return path[len(root) :]
    return path


def _is_remote(target: str) -> bool:
    # Gradio treats "http://" and "https://" (any case) as a URL to fetch (client_utils).
    return target.strip().lower().startswith(("http:", "https:", "//"))


def _as_opened(target: str, private: list[Path]) -> tuple[tuple[Path, ...], bool] | None:
    """The file Gradio would open for `target` (the absolute path it checks, and the file that
    really is, symbolic links followed), and whether it lies in one of the `private` folders;
    None when there is no such file. Blocking: call it in a thread."""
    absolute = Path(os.path.abspath(target))  # what gradio.utils.abspath does
    try:
        real = absolute.resolve(strict=True)
        folders = [folder.resolve() for folder in private]
    except (OSError, RuntimeError):
        return None
    paths = (absolute, real)
    return paths, any(p.is_relative_to(f) for p in paths for f in folders)


async def _not_found(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(_NOT_FOUND)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _NOT_FOUND})
