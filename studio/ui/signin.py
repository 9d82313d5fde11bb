"""The sign-in page's door (`--auth`): each browser (on a hosted studio, the visitor its signed
token names), else each network address, gets `FAILURES_PER_MINUTE` sign-ins a minute and
`FAILURES_PER_HOUR` an hour, then one sentence until they have passed. Gradio's own `/login`
has no limit, and a password tried at hundreds a second does not stay secret for long. Each
attempt counts when it arrives, so guesses sent at once are counted as they come, not when
their answers return; one that signs in is given back.

Counted per browser first, so that another's wrong guesses never refuse a visitor's right
password: through a share link's tunnel (or a proxy the studio is not told of) every visitor
comes from one address, and a count per address would let anyone lock everyone out. A guesser
gains little by fresh browsers: an address becomes at most so many new visitors an hour
(`ui.visitor`), each with its own hour's guesses; a request without a token is counted against
its address."""

from __future__ import annotations

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from studio.ui.guard import refuse, route_path
from studio.ui.visitor import IdentityRate, client_address, forwarded_for, visitor_in

FAILURES_PER_MINUTE = 10
FAILURES_PER_HOUR = 30
TOO_MANY_SIGN_INS = "Too many wrong sign-ins from this browser; wait a while and try again."
# A request without the studio's cookie (none could be given: the address's new visitors of the
# hour are used up) is counted with every other such request from its address.
TOO_MANY_FROM_ADDRESS = (
    "Too many wrong sign-ins from this network address (this browser has no visitor cookie yet,"
    " so it is counted with every other one there); wait a while and try again."
)
_LOGIN = compile_path("/login")[0]
_LOGIN_SLASH = compile_path("/login/")[0]


class SignInThrottle:
    """Counts sign-ins per browser (or per client address) as they arrive (one that succeeds
    is given back); past a limit, refuses before Gradio checks the password (so a right guess
    then says nothing either). Goes after `VisitorMiddleware`, where there is one."""

    def __init__(self, app: ASGIApp, *, proxy_hops: int = 0) -> None:
        self.app = app
        self.proxy_hops = proxy_hops
        self.minute = IdentityRate(FAILURES_PER_MINUTE, window_s=60.0)
        self.hour = IdentityRate(FAILURES_PER_HOUR)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope) if scope["type"] == "http" else ""
        if scope.get("method") != "POST" or not (_LOGIN.match(path) or _LOGIN_SLASH.match(path)):
            await self.app(scope, receive, send)
            return
        who = visitor_in(scope)
        if who is not None and who.owner is not None:
            key, refusal = who.owner, TOO_MANY_SIGN_INS
        else:
            peer = scope.get("client")
            address = client_address(
                peer[0] if peer else None,
                forwarded_for(scope.get("headers", [])),
                proxy_hops=self.proxy_hops,
            )
            key, refusal = f"address:{address}", TOO_MANY_FROM_ADDRESS
        if not self.hour.has_room(key) or not self.minute.allow(key):
            await refuse(send, 429, refusal)
            return
        self.hour.allow(key)

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                self.minute.give_back(key)
                self.hour.give_back(key)
            await send(message)

        await self.app(scope, receive, counted)


__all__ = [
    "FAILURES_PER_HOUR",
    "FAILURES_PER_MINUTE",
    "TOO_MANY_FROM_ADDRESS",
    "TOO_MANY_SIGN_INS",
    "SignInThrottle",
]
