"""Compression: Gradio's own files compressed once and kept; nothing compressed per request.

Gradio compresses every response for a path ending `.js`, `.css`, `.json`, `.svg`, `.txt` and
the like as it sends it (brotli, or gzip at level 9), on its event loop: 6-10 ms of CPU for the
page's 135 kB script, 0.24 s for its 4.6 MB Plotly script, 2-3 s for a visitor's own 48 MB text
file fetched back, whoever asks and however often (reviews 23 and 25: a few addresses asking
in a loop took the page of everyone else past 2 s). Here the studio compresses instead: the
files Gradio ships (`/assets/`, `/static/`, whose names never change while it runs) and the
theme's CSS, once per encoding, kept in memory; everything else is sent as it is
(`install` turns Gradio's compression off).
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import posixpath
import re
import secrets
from collections.abc import Callable
from typing import Any

import brotli
import gradio.routes
from starlette.datastructures import Headers, MutableHeaders, QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from studio.ui.guard import route_path
from studio.ui.visitor import public_origin

log = logging.getLogger(__name__)

# The API's description (`_described`), kept as Gradio answered it, compressed or not.
_DESCRIPTION = re.compile(r"/gradio_api/info/?")
# The address the description names while kept (Gradio makes its own once, from the request
# that first asks, and keeps it: a stranger's Host or X-Gradio-Server on the first request after
# a start named their host in every visitor's "Use via API" snippets, where a caller would send
# their key: reviews 38 F3, 39 F1). Gradio's is made before the studio listens, naming this
# address (`_describe_now`); each answer names the asker's own address in its place.
KEPT_HOST = "kontext-studio.invalid"
KEPT_ORIGIN = f"http://{KEPT_HOST}"
# For how many askers' addresses the description is kept compressed (an honest studio is
# reached at one or two); any other is sent uncompressed.
DESCRIBED_ORIGINS = 4
_PLAIN = "identity"
# The files Gradio ships, of the kinds it compresses; and the theme's CSS.
_SHIPPED = re.compile(
    r"/(?:assets|static)/(?:[\w.-]+/)*[\w.-]+\.(?:js|css|json|svg|html|txt|md|xml|csv|tsv)"
    r"|(?:/gradio_api)?/theme\.css"
)
# What is kept: files up to `LARGEST_BYTES` (Gradio's largest, Plotly's script, is 4.6 MB),
# `KEPT_BYTES` of them in all (all 877 of Gradio's files: 20 MB, 11 MB compressed both ways).
LARGEST_BYTES = 8 * 2**20
KEPT_BYTES = 32 * 2**20
# How each encoding compresses, once for each file (brotli at 11 took 7 s for Plotly's
# script, at 9 0.3 s; both release the GIL).
_COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "br": lambda data: brotli.compress(data, quality=9),
    "gzip": lambda data: gzip.compress(data, 9, mtime=0),
}

Kept = tuple[list[tuple[bytes, bytes]], bytes, str | None]


def install() -> None:
    """Gradio compresses nothing itself from now on (its apps are made at `launch`)."""
    gradio.routes.BrotliMiddleware = _Uncompressed  # type: ignore[assignment,attr-defined]


class _Uncompressed:
    """In place of Gradio's `BrotliMiddleware`: the response as it is."""

    def __init__(self, app: ASGIApp, **_: object) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class CompressedAssets:
    """Gradio's own files compressed from memory, once compressed; and a request for several
    ranges of a file answered whole (each part was another pass over the file)."""

    def __init__(self, app: ASGIApp, *, describe: bool = True, proxy_hops: int = 0) -> None:
        self.app = app
        # Whether the API's description is kept too (not behind a sign-in: Gradio checks the
        # sign-in on each request for it, and what is kept would be sent without that check).
        self.describe = describe
        # Whether an asker's address is the one its proxy's forwarded headers name.
        self.behind_proxy = proxy_hops > 0
        # (path, encoding) -> (the response's headers, its compressed body, its ETag).
        self.kept: dict[tuple[str, str], Kept] = {}
        self.kept_bytes = 0
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        # (path, encoding, the asker's address) -> the description naming it, compressed.
        self.told: dict[tuple[str, str, str], Kept] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" and "app" in scope:
            await _describe_now(self.app, scope["app"])  # (at start-up, before it listens)
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if "," in headers.get("range", ""):  # (a server may answer a Range whole: RFC 9110)
            scope = _without(scope, b"range")
            headers = Headers(scope=scope)
        path = route_path(scope)
        accepted = headers.get("accept-encoding", "")
        encoding = next((e for e in _COMPRESS if e in accepted), None)
        described = _described(scope, path)
        if described is not None:
            origin = public_origin(dict(headers.items()), behind_proxy=self.behind_proxy)
            if not self.describe or scope.get("method") != "GET" or "range" in headers:
                await self._named(scope, receive, send, origin)
                return
            # (Asked of Gradio, the first time, as the key says: no page, nothing else.)
            everything = described.endswith("?all")
            scope = {**scope, "query_string": b"all_endpoints=True" if everything else b""}
            await self._describe(scope, receive, send, (described, encoding or _PLAIN), origin)
            return
        if (
            encoding is None
            or scope.get("method") != "GET"
            or not _SHIPPED.fullmatch(path)
            or posixpath.normpath(path) != path  # (one file, one key: review 26 F2)
            or "range" in headers
        ):
            await self.app(scope, receive, send)
            return
        kept = await self._kept(scope, receive, send, (path, encoding))
        if kept is not None:
            await _send_kept(kept, headers, send)

    async def _describe(
        self, scope: Scope, receive: Receive, send: Send, key: tuple[str, str], origin: str
    ) -> None:
        """The API's description as kept (`key`), naming the asker's `origin` as the studio's."""
        plain = await self._kept(scope, receive, send, (key[0], _PLAIN))
        if plain is None:
            return  # (answered as Gradio answered it)
        if KEPT_ORIGIN.encode() not in plain[1] or origin == KEPT_ORIGIN:
            kept = plain if key[1] == _PLAIN else await self._kept(scope, receive, send, key)
            if kept is not None:
                await _send_kept(kept, Headers(scope=scope), send)
            return
        told_key = (*key, origin)
        told = self.told.get(told_key)
        if told is None:
            body = plain[1].replace(KEPT_ORIGIN.encode(), origin.encode())
            encoding = key[1] if len(self.told) < DESCRIBED_ORIGINS * len(_COMPRESS) else _PLAIN
            if encoding != _PLAIN:
                body = await asyncio.to_thread(_COMPRESS[encoding], body)
            headers = MutableHeaders(raw=[(k, v) for k, v in plain[0] if k != b"etag"])
            if encoding != _PLAIN:
                headers["content-encoding"] = encoding
            headers["content-length"] = str(len(body))
            told = (headers.raw, body, None)
            if encoding != _PLAIN:
                self.told[told_key] = told
        await _send_kept(told, Headers(scope=scope), send)

    async def _named(self, scope: Scope, receive: Receive, send: Send, origin: str) -> None:
        """The API's description as Gradio answers it (after its own sign-in check), naming
        the asker's `origin` as the studio's; not kept."""
        messages: list[Message] = []

        async def collect(message: Message) -> None:
            messages.append(message)

        await self.app(_without(scope, b"accept-encoding", b"range"), receive, collect)
        chunks = [m.get("body", b"") for m in messages[1:] if m["type"] == "http.response.body"]
        if not messages or messages[0].get("status") != 200:
            for message in messages:
                await send(message)
            return
        body = b"".join(chunks).replace(KEPT_ORIGIN.encode(), origin.encode())
        headers = MutableHeaders(raw=[(k, v) for k, v in messages[0].get("headers", [])])
        headers["content-length"] = str(len(body))
        await send({**messages[0], "headers": headers.raw})
        await send({"type": "http.response.body", "body": body})

    async def _kept(
        self, scope: Scope, receive: Receive, send: Send, key: tuple[str, str]
    ) -> Kept | None:
        """The file at `key` (its path and the encoding), compressed once; None if it could not
        be kept (then sent on as Gradio answered it)."""
        kept = self.kept.get(key)
        if kept is not None:
            return kept
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # the first asks; those at the same time wait for its answer
            kept = self.kept.get(key)
            if kept is None:
                kept = await self._compress(scope, receive, send, key)
        self._locks.pop(key, None)
        return kept

    async def _compress(
        self, scope: Scope, receive: Receive, send: Send, key: tuple[str, str]
    ) -> Kept | None:
        """Ask Gradio for the whole file and keep it compressed; None if it was not a whole
        200 that fits (then sent on as Gradio answered it)."""
        messages: list[Message] = []

        async def collect(message: Message) -> None:
            messages.append(message)

        plain = _without(scope, b"accept-encoding", b"if-none-match", b"range")
        await self.app(plain, receive, collect)
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
        plain_body = b"".join(chunks)
        body = (
            plain_body
            if key[1] == _PLAIN
            else await asyncio.to_thread(_COMPRESS[key[1]], plain_body)
        )
        headers = MutableHeaders(raw=list(start.get("headers", [])))
        if key[1] != _PLAIN:
            headers["content-encoding"] = key[1]
        headers["content-length"] = str(len(body))
        headers.add_vary_header("Accept-Encoding")
        kept = (headers.raw, body, headers.get("etag"))
        self.kept[key] = kept
        self.kept_bytes += len(body)
        return kept


async def _send_kept(kept: Kept, headers: Headers, send: Send) -> None:
    """A kept response; 304 to a request naming its ETag."""
    raw_headers, body, etag = kept
    if etag is not None and headers.get("if-none-match") == etag:
        unchanged = [(k, v) for k, v in raw_headers if k in (b"etag", b"vary")]
        await send({"type": "http.response.start", "status": 304, "headers": unchanged})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


async def _describe_now(inner: ASGIApp, app: Any) -> None:
    """Have Gradio (`app`, through the middleware `inner`) make its API description now, as if
    asked at `KEPT_ORIGIN` (it keeps the first it makes, naming the address that first request
    gave), past its sign-in check, if any, with a token of its own that lives as long as this
    request; at start-up, before the studio listens."""
    token = secrets.token_urlsafe(32)
    tokens = getattr(app, "tokens", None)
    if isinstance(tokens, dict):
        tokens[token] = "kontext-studio"
    cookie = f"access-token-{getattr(app, 'cookie_id', '')}={token}"
    messages: list[Message] = []

    async def nothing() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def collect(message: Message) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/gradio_api/info",
        "raw_path": b"/gradio_api/info",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", KEPT_HOST.encode()), (b"cookie", cookie.encode())],
        "client": ("127.0.0.1", 0),
        "server": (KEPT_HOST, 80),
        "app": app,
        "state": {},
    }
    try:
        await inner(scope, nothing, collect)
    except Exception:  # (a start-up that fails here would not stop: uvicorn goes on without)
        log.exception("Gradio's API description could not be made at start")
    finally:
        if isinstance(tokens, dict):
            tokens.pop(token, None)
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    if not messages or messages[0].get("status") != 200 or KEPT_ORIGIN.encode() not in body:
        log.error("Gradio's API description was not made at start: it names its first asker's host")


def _described(scope: Scope, path: str) -> str | None:
    """The key of the API's description this request asks for (`/gradio_api/info`, of the
    named endpoints or of all), else None. Gradio makes each once and keeps it, but turned it
    into JSON for every request: 43 ms for all the endpoints, which 48 addresses asking four
    times a second made every other visitor's page wait 2.8 s for (review 37 F2). A page's
    own description (`?page=`, which Gradio makes afresh for each request, and for a page it
    does not have answers with all of it: review 38 F2) is the studio's one page's: the same."""
    if _DESCRIPTION.fullmatch(path) is None:
        return None
    query = QueryParams(scope.get("query_string", b"").decode("latin-1"))
    # (Any value but an empty one asks for all: Gradio reads the parameter as it comes.)
    return "/gradio_api/info?all" if query.get("all_endpoints", False) else "/gradio_api/info"


def _without(scope: Scope, *names: bytes) -> Scope:
    """`scope` without the request headers `names` (lower case)."""
    return {**scope, "headers": [(k, v) for k, v in scope["headers"] if k.lower() not in names]}
