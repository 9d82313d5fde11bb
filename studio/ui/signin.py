"""The sign-in page's door (`--auth`): a network address gets `FAILURES_PER_MINUTE` sign-ins a
minute, then one sentence until the minute has passed. Gradio's own `/login` has no limit, and a
password tried at hundreds a second does not stay secret for long. Each attempt counts when it
arrives, so guesses sent at once are counted as they come, not when their answers return; one
that signs in is given back."""

from __future__ import annotations

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from studio.ui.guard import refuse, route_path
from studio.ui.visitor import IdentityRate, client_address, forwarded_for

FAILURES_PER_MINUTE = 10
TOO_MANY_SIGN_INS = (
    "Too many wrong sign-ins from your network address; wait a minute and try again."
)
_LOGIN = compile_path("/login")[0]
_LOGIN_SLASH = compile_path("/login/")[0]


class SignInThrottle:
    """Counts sign-ins per client address as they arrive (one that succeeds is given back);
    past the limit, refuses before Gradio checks the password (so a right guess then says
    nothing either)."""

    def __init__(self, app: ASGIApp, *, proxy_hops: int = 0) -> None:
        self.app = app
        self.proxy_hops = proxy_hops
        self.failures = IdentityRate(FAILURES_PER_MINUTE, window_s=60.0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope) if scope["type"] == "http" else ""
        if scope.get("method") != "POST" or not (_LOGIN.match(path) or _LOGIN_SLASH.match(path)):
            await self.app(scope, receive, send)
            return
        peer = scope.get("client")
        address = client_address(
            peer[0] if peer else None,
            forwarded_for(scope.get("headers", [])),
            proxy_hops=self.proxy_hops,
        )
        if not self.failures.allow(address):
            await refuse(send, 429, TOO_MANY_SIGN_INS)
            return

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                self.failures.give_back(address)
            await send(message)

        await self.app(scope, receive, counted)


__all__ = ["FAILURES_PER_MINUTE", "TOO_MANY_SIGN_INS", "SignInThrottle"]
