"""The sign-in page's door (`--auth`): each browser (on a hosted studio, the visitor its signed
token names), else each network address, gets `FAILURES_PER_MINUTE` sign-ins a minute and
`FAILURES_PER_HOUR` an hour, then one sentence until they have passed. Gradio's own `/login`
has no limit, and a password tried at hundreds a second does not stay secret for long. Each
attempt counts when it arrives, so guesses sent at once are counted as they come, not when
their answers return; one that signs in is given back.

Counted per browser first, so that another's wrong guesses never refuse a visitor's right
password: through a share link's tunnel (or a proxy the studio is not told of) every visitor
comes from one address, and a count per address would let anyone lock everyone out. A guesser
gains little by fresh browsers: all the browsers of one network address share a ceiling of
`ADDRESS_FAILURES_PER_MINUTE` and `ADDRESS_FAILURES_PER_HOUR` where addresses are told apart
(not through a share link's tunnel); a review found each token's own hour renewing, so that
an address's guesses grew with the tokens it had gathered (800 a minute from 80 tokens). A
browser's first `OWN_TRIES` sign-ins, within the hour after it first came (`newcomer_in`), are
outside that ceiling, so a neighbour's guesses never refuse the first tries of someone new who
knows the password; tokens gathered over hours, or before a restart, bring no tries of their
own. A request without a token is counted
against its address."""

from __future__ import annotations

from collections import OrderedDict

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from studio.ui.guard import refuse, route_path
from studio.ui.visitor import (
    IdentityRate,
    client_address,
    forwarded_for,
    newcomer_in,
    remember,
    visitor_in,
)

FAILURES_PER_MINUTE = 10
FAILURES_PER_HOUR = 30
# ... and for all the browsers of one network address together.
ADDRESS_FAILURES_PER_MINUTE = 30
ADDRESS_FAILURES_PER_HOUR = 100
TOO_MANY_SIGN_INS = "Too many wrong sign-ins from this browser; wait a while and try again."
# A request without the studio's cookie (none could be given: the address's new visitors of the
# hour are used up) is counted with every other such request from its address.
TOO_MANY_FROM_ADDRESS = (
    "Too many wrong sign-ins from this network address (this browser has no visitor cookie yet,"
    " so it is counted with every other one there); wait a while and try again."
)
# A browser's first sign-ins, which its address's ceiling never refuses (nor counts); the
# browsers remembered for that, at most.
OWN_TRIES = 3
TRIES_KEPT = 100_000
TOO_MANY_HERE = "Too many wrong sign-ins from this network address; wait a while and try again."
_LOGIN = compile_path("/login")[0]
_LOGIN_SLASH = compile_path("/login/")[0]


class SignInThrottle:
    """Counts sign-ins per browser (or per client address) as they arrive (one that succeeds
    is given back); past a limit, refuses before Gradio checks the password (so a right guess
    then says nothing either). Goes after `VisitorMiddleware`, where there is one."""

    def __init__(self, app: ASGIApp, *, proxy_hops: int = 0, per_address: bool = True) -> None:
        self.app = app
        self.proxy_hops = proxy_hops
        self.per_address = per_address
        self.minute = IdentityRate(FAILURES_PER_MINUTE, window_s=60.0)
        self.hour = IdentityRate(FAILURES_PER_HOUR)
        self.address_minute = IdentityRate(ADDRESS_FAILURES_PER_MINUTE, window_s=60.0)
        self.address_hour = IdentityRate(ADDRESS_FAILURES_PER_HOUR)
        # Sign-ins each browser has tried (its first `OWN_TRIES` are outside its address's
        # ceiling), the most recent last.
        self.tried: OrderedDict[str, int] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope) if scope["type"] == "http" else ""
        if scope.get("method") != "POST" or not (_LOGIN.match(path) or _LOGIN_SLASH.match(path)):
            await self.app(scope, receive, send)
            return
        who = visitor_in(scope)
        peer = scope.get("client")
        seen = client_address(
            peer[0] if peer else None,
            forwarded_for(scope.get("headers", [])),
            proxy_hops=self.proxy_hops,
        )
        address = f"address:{seen}"
        if who is not None and who.owner is not None:
            key, refusal = who.owner, TOO_MANY_SIGN_INS
        else:
            key, refusal = address, TOO_MANY_FROM_ADDRESS
        # (Where every browser comes from one address, a ceiling for it would let anyone lock
        # everyone out; a request without a token is counted against its address already.) A
        # browser's first `OWN_TRIES` are its own, outside that ceiling: a neighbour's guesses
        # filling it never refuse the first tries of someone who knows the password (review
        # round 7, retest N1: a right password refused for an hour behind one NAT).
        here = address if self.per_address and key != address else None
        if here is not None and newcomer_in(scope) and self.tried.get(key, 0) < OWN_TRIES:
            # (Only a newcomer's, counted within the hour: tokens gathered over hours, or
            # before a restart, bring none; retest of round 7, NEW-1.)
            here = None
        if key != address:
            remember(self.tried, key, self.tried.get(key, 0) + 1, TRIES_KEPT)
        if here is not None and (
            not self.address_hour.has_room(here) or not self.address_minute.allow(here)
        ):
            await refuse(send, 429, TOO_MANY_HERE)
            return
        if not self.hour.has_room(key) or not self.minute.allow(key):
            if here is not None:
                self.address_minute.give_back(here)
            await refuse(send, 429, refusal)
            return
        self.hour.allow(key)
        if here is not None:
            self.address_hour.allow(here)

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                self.tried.pop(key, None)
                self.minute.give_back(key)
                self.hour.give_back(key)
                if here is not None:
                    self.address_minute.give_back(here)
                    self.address_hour.give_back(here)
            await send(message)

        await self.app(scope, receive, counted)


__all__ = [
    "ADDRESS_FAILURES_PER_HOUR",
    "ADDRESS_FAILURES_PER_MINUTE",
    "FAILURES_PER_HOUR",
    "FAILURES_PER_MINUTE",
    "OWN_TRIES",
    "TOO_MANY_FROM_ADDRESS",
    "TOO_MANY_HERE",
    "TOO_MANY_SIGN_INS",
    "SignInThrottle",
]
