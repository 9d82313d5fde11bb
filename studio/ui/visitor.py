"""Who is asking, settled once per request at the door (after Starlette's authentication
middleware): the browser's visitor cookie, an API or MCP caller's key header, the client's
address. The result is a `studio.visitor.Visitor`, which the handlers and the public endpoints
pass whole through the bridge into the engine; nothing here decides what a visitor may do.

- `VisitorMiddleware` gives every browser of a hosted studio its token (a cookie), before Gradio
  sees the request, so that even its first request is a named visitor's.
- `visitor_from(request)` names the visitor of one request (Gradio's or Starlette's).
- `guarded` wraps a page handler: the visitor is settled before it runs (`current()`), and a
  refusal leaves the page as it was, with the reason.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import secrets
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Protocol, TypeVar, cast

import gradio as gr
from starlette.requests import Request

from studio.config import Secret
from studio.ui.bridge import USER_ERRORS
from studio.visitor import LOCAL, Visitor, owner_of

# The cookie that tells a hosted studio's visitors apart, and the header an API or MCP caller
# sends its own RunAPI key in (it also names the caller).
VISITOR_COOKIE = "kontext_visitor"
KEY_HEADER = "x-runapi-key"
# A year: the token only names the owner of this browser's sessions.
COOKIE_MAX_AGE_S = 365 * 24 * 3600
# Who the event being handled is for: set once per event from its request, in `guarded`.
_WHO: contextvars.ContextVar[Visitor] = contextvars.ContextVar("who", default=LOCAL)
# Which tab (Gradio's session hash) sent the event being handled; None for a direct call.
_TAB: contextvars.ContextVar[str | None] = contextvars.ContextVar("tab", default=None)

F = TypeVar("F", bound=Callable[..., Any])
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Refusal(Exception):
    """Input the page itself refuses; `str()` is one sentence for the user."""


REFUSED: tuple[type[Exception], ...] = (*USER_ERRORS, Refusal)
NO_COOKIE = (
    "This studio keeps each visitor's sessions apart with a cookie; allow cookies for this "
    "site and reload the page (API and MCP callers send an X-RunAPI-Key header)."
)


class _Client(Protocol):
    @property
    def host(self) -> str: ...


class _Asking(Protocol):
    """What naming a visitor reads of a request (Gradio's and Starlette's both have it)."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def cookies(self) -> Mapping[str, str]: ...


def visitor_from(request: _Asking | None, *, hosted: bool) -> Visitor:
    """Who sent this request. On a studio that is not hosted, the one local user; on a hosted
    one, an API or MCP caller is named by the key it sends (X-RunAPI-Key), a browser by its
    cookie. Raises `Refusal` for a hosted request that names nobody."""
    headers: Mapping[str, str] = request.headers if request is not None else {}
    key = (headers.get(KEY_HEADER) or "").strip() or None
    if not hosted:
        return Visitor(None, Secret(key) if key else None)
    address = _address(request)
    if key:  # an API or MCP caller: the key names it (it may keep no cookie between calls)
        return Visitor(owner_of("key", key), Secret(key), address)
    token = (request.cookies.get(VISITOR_COOKIE) if request is not None else None) or ""
    if len(token) >= 32:
        return Visitor(owner_of("browser", token), None, address)
    raise Refusal(NO_COOKIE)


def current() -> Visitor:
    """The visitor of the event being handled (inside a `guarded` handler)."""
    return _WHO.get()


def current_tab() -> str | None:
    """The tab (Gradio's session hash) of the event being handled, if known: the page keeps
    what it knows of one tab's typing under it (`handlers._Tab`)."""
    return _TAB.get()


class Door(Protocol):
    """What `guarded` needs of the object whose handlers it wraps."""

    @property
    def hosted(self) -> bool: ...

    def unnamed(self, refusal: Refusal) -> Any:
        """The answer to a request that names no visitor (nothing changes)."""

    async def refused(self, session_id: str | None, tab_step: str | None, exc: Exception) -> Any:
        """The answer to refused input: the page as it was, and the reason."""


def guarded(handler: F) -> F:
    """Who is asking is settled once, from the request, before the handler runs; refused input
    leaves the page as it was, with the reason in a toast and the status.

    Gradio passes the request to the parameter typed `gr.Request`, which the wrapper adds to the
    handler's own signature; the handler reads the visitor with `current()`.
    """

    @functools.wraps(handler)
    async def run(self: Door, session_id: str | None, *args: Any) -> Any:
        # Gradio adds the request last; a direct call (a test) may leave it out.
        request = args[-1] if args and isinstance(args[-1], gr.Request) else None
        args_ = args[:-1] if request is not None else args
        tab_step = args_[0] if args_ and isinstance(args_[0], str) else None
        try:
            token = _WHO.set(visitor_from(request, hosted=self.hosted))
        except Refusal as exc:
            return self.unnamed(exc)
        tab = _TAB.set(getattr(request, "session_hash", None) or None)
        try:
            return await handler(self, session_id, *args_)
        except REFUSED as exc:
            return await self.refused(session_id, tab_step, exc)
        finally:
            _TAB.reset(tab)
            _WHO.reset(token)

    # Annotations resolved in the handler's own module: Gradio reads them in this one's.
    signature = inspect.signature(handler, eval_str=True)
    request = inspect.Parameter(
        "request",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=None,
        annotation=gr.Request | None,
    )
    del run.__wrapped__  # Gradio reads our own signature
    run.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), request]
    )
    annotations = inspect.get_annotations(handler, eval_str=True)
    run.__annotations__ = {**annotations, "request": gr.Request | None}
    return cast(F, run)


class VisitorMiddleware:
    """A hosted studio's door: every browser gets a random token in an HttpOnly cookie (the
    owner of the sessions that browser makes), set on the very request that lacked one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if len(request.cookies.get(VISITOR_COOKIE, "")) >= 32:
            await self.app(scope, receive, send)
            return
        new_token = secrets.token_urlsafe(32)
        # This very request already counts as the new visitor's.
        cookie = f"{VISITOR_COOKIE}={new_token}"
        headers = [(k, v) for k, v in scope["headers"] if k != b"cookie"]
        headers.append((b"cookie", cookie.encode()))
        scope = {**scope, "headers": headers}

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                root = scope.get("root_path", "") or "/"
                value = (
                    f"{VISITOR_COOKIE}={new_token}; Path={root}; Max-Age={COOKIE_MAX_AGE_S}; "
                    "HttpOnly; SameSite=Lax"
                )
                message["headers"] = [*message.get("headers", []), (b"set-cookie", value.encode())]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _address(request: _Asking | None) -> str | None:
    """The client's address as the server saw it (None when not known)."""
    client: _Client | None = getattr(request, "client", None) if request is not None else None
    host = getattr(client, "host", None) if client is not None else None
    return host if isinstance(host, str) and host else None


__all__ = [
    "KEY_HEADER",
    "REFUSED",
    "VISITOR_COOKIE",
    "Door",
    "Refusal",
    "VisitorMiddleware",
    "current",
    "current_tab",
    "guarded",
    "visitor_from",
]
