"""The layer in front of the simulator's routes: recording, faults, auth and the common headers.

Pure ASGI (it must be able to drop a connection mid-answer). Imports starlette and siblings only.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from studio.simulator.faults import API_CHAOS, Route
from studio.simulator.tasks import RecordedRequest, SimState

CREATE_PATHS = ("/api/v1/flux_kontext/text_to_image", "/v1/text_to_image")
# Public: the official SDK's PricingClient sends a key only if it has one.
PUBLIC_PATHS = ("/api/v1/price_schedules",)
# An upload of 20 MB is ~27 MB as base64 in JSON; anything far beyond is refused unread.
MAX_BODY_BYTES = 30 * 1024 * 1024


class DroppedConnectionError(Exception):
    """Raised after the headers went out, so the server closes the connection mid-answer."""


def is_api(path: str) -> bool:
    """API routes get faults, auth and request ids; `/files/` and `/results/` images do not."""
    return path.startswith(("/api/", "/v1/"))


def route_of(method: str, path: str) -> Route | None:
    if method == "POST" and path in CREATE_PATHS:
        return "create"
    if method == "GET" and path.startswith(CREATE_PATHS[0] + "/"):
        return "get"
    if method == "POST" and path == "/api/v1/files":
        return "files"
    if method == "GET" and path == "/api/v1/me/balance":
        return "balance"
    return None


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class Gateway:
    """Wraps the routes: records every request, then for API routes applies faults and auth."""

    def __init__(self, app: ASGIApp, state: SimState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body, complete = await _read_body(receive)
        self.state.record(
            RecordedRequest(method, path, headers, _json_or_none(body), time.monotonic())
        )
        if not is_api(path):
            await self.app(scope, _replay(body, receive), send)
            return
        extra = [(b"x-request-id", f"req_{uuid.uuid4().hex}".encode())]
        if client_id := headers.get("x-client-request-id"):
            extra.append((b"x-client-request-id", client_id.encode("latin-1")))
        faults = self.state.faults
        chaos = faults.take_chaos(API_CHAOS)
        refusal = self._refusal(path, headers, complete) or _chaos_refusal(chaos)
        if refusal is not None:
            await refusal(scope, receive, _with_headers(send, extra))
            return
        route = route_of(method, path)
        slow_s = faults.chaos_slow_s if chaos == "slow" else faults.take_slow_s(route)
        drop = chaos == "drop" or faults.take_drop(route)

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                if slow_s > 0:
                    await asyncio.sleep(slow_s)
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            elif drop:
                # The headers (with Content-Length) went out; no body follows and uvicorn closes
                # the connection, so the client sees a protocol error after the work was done.
                raise DroppedConnectionError
            await send(message)

        await self.app(scope, _replay(body, receive), answer)

    def _refusal(self, path: str, headers: dict[str, str], complete: bool) -> JSONResponse | None:
        """The answer given instead of running the route, or None to run it."""
        if not complete:
            return JSONResponse(error_body("too_large", "The request body is too large."), 413)
        if (error := self.state.faults.take_error()) is not None:
            if error.status == 429:
                return JSONResponse(
                    error_body("rate_limited", "Too many requests; slow down."),
                    429,
                    headers={"Retry-After": error.retry_after or "1"},
                )
            return JSONResponse(
                error_body("server_error", "The service is unavailable."), error.status
            )
        if path not in PUBLIC_PATHS and not self._authorized(headers):
            return JSONResponse(error_body("unauthorized", "Invalid or missing API key."), 401)
        return None

    def _authorized(self, headers: dict[str, str]) -> bool:
        keys = {self.state.api_key, *self.state.other_keys}
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip() in keys:
            return True
        return headers.get("x-api-key", "").strip() in keys


def _chaos_refusal(chaos: str | None) -> JSONResponse | None:
    if chaos == "429":
        return JSONResponse(
            error_body("rate_limited", "Too many requests; slow down."),
            429,
            headers={"Retry-After": "1"},
        )
    if chaos == "5xx":
        return JSONResponse(error_body("server_error", "The service is unavailable."), 503)
    return None


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The whole body, and False if it passed `MAX_BODY_BYTES` (then it is cut short)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), True
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return b"", False
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped


def _json_or_none(body: bytes) -> Any | None:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None
