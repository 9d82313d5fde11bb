"""Gradio's frontend files compressed once, not for every request.

Gradio compresses each response for a `.js`, `.css`, `.json` or `.svg` path as it sends it
(brotli, or gzip at level 9): 6-10 ms of CPU for the page's 135 kB script, against 2 ms to send
it as it is. A page load asks for about 70 such files, and a client asking for them in a loop
with `Accept-Encoding: gzip` made the studio compress the same bytes hundreds of times a
second. The files under `/assets/` never change while the studio runs (their names carry
their content's hash), so each is compressed once (brotli, or gzip for a client that takes
only gzip) and kept; Gradio's own compression passes a response that already says its
encoding.
"""

from __future__ import annotations

import asyncio
import gzip
import re
from collections.abc import Callable

import brotli
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from studio.ui.guard import route_path

# Gradio's built frontend (`/assets/<name>`), of the kinds it compresses; and the theme's CSS.
_ASSET = re.compile(r"/assets/[\w.-]+\.(?:js|css|json|svg)|(?:/gradio_api)?/theme\.css")
# What is kept: files up to `LARGEST_BYTES`, `KEPT_BYTES` of them in all (the page's own are
# about 0.6 MB compressed; all 900 of Gradio's, 5.2 MB with gzip).
LARGEST_BYTES = 4 * 2**20
KEPT_BYTES = 24 * 2**20
# How each encoding compresses, at its best but slowest: each file is compressed once.
_COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "br": lambda data: brotli.compress(data, quality=11),
    "gzip": lambda data: gzip.compress(data, 9, mtime=0),
}


class CompressedAssets:
    """Serve Gradio's frontend files compressed from memory, once compressed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # (path, encoding) -> (the response's headers, its compressed body).
        self.kept: dict[tuple[str, str], tuple[list[tuple[bytes, bytes]], bytes]] = {}
        self.kept_bytes = 0
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope) if scope["type"] == "http" else ""
        headers = Headers(scope=scope) if path else None
        accepted = headers.get("accept-encoding", "") if headers is not None else ""
        encoding = next((e for e in _COMPRESS if e in accepted), None)
        if (
            headers is None
            or encoding is None  # (nor does Gradio compress it)
            or scope.get("method") != "GET"
            or not _ASSET.fullmatch(path)
            or "if-none-match" in headers  # (Gradio's 304s are cheap)
            or "range" in headers
        ):
            await self.app(scope, receive, send)
            return
        key = (path, encoding)
        kept = self.kept.get(key)
        if kept is None:
            lock = self._locks.setdefault(key, asyncio.Lock())
            async with lock:  # the first asks; those at the same time wait for its answer
                kept = self.kept.get(key)
                if kept is None:
                    kept = await self._compress(scope, receive, send, key)
            self._locks.pop(key, None)
            if kept is None:
                return  # (answered as Gradio answered it)
        raw_headers, body = kept
        await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})

    async def _compress(
        self, scope: Scope, receive: Receive, send: Send, key: tuple[str, str]
    ) -> tuple[list[tuple[bytes, bytes]], bytes] | None:
        """Ask Gradio for the file uncompressed and keep it compressed (`key`: its path and
        the encoding); None if it was not a whole 200 that fits (then sent on as Gradio
        answered it)."""
        messages: list[Message] = []

        async def collect(message: Message) -> None:
            messages.append(message)

        await self.app(_uncompressed(scope), receive, collect)
        start = messages[0] if messages else None
        chunks = [m.get("body", b"") for m in messages[1:] if m["type"] == "http.response.body"]
        size = sum(len(chunk) for chunk in chunks)
        whole = bool(messages) and not messages[-1].get("more_body", False)
        if (
            start is None
            or start.get("status") != 200
            or not whole
            or size > LARGEST_BYTES
            or self.kept_bytes + size > KEPT_BYTES
        ):
            for message in messages:
                await send(message)
            return None
        body = await asyncio.to_thread(_COMPRESS[key[1]], b"".join(chunks))
        headers = MutableHeaders(raw=list(start.get("headers", [])))
        headers["content-encoding"] = key[1]
        headers["content-length"] = str(len(body))
        headers.add_vary_header("Accept-Encoding")
        kept = (headers.raw, body)
        self.kept[key] = kept
        self.kept_bytes += len(body)
        return kept


def _uncompressed(scope: Scope) -> Scope:
    """`scope` asking for no compression (no `Accept-Encoding`)."""
    plain = dict(scope)
    plain["headers"] = [(k, v) for k, v in scope["headers"] if k.lower() != b"accept-encoding"]
    return plain
