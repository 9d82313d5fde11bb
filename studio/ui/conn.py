"""A hosted studio's first door, below HTTP: connections.

Uvicorn (as Gradio runs it) closes an idle connection only after a response (its keep-alive);
a connection that never sends a request, or whose headers never end, stays open for good, and
each holds a file descriptor: one address holding a few thousand of them left the studio
unable to accept anyone ("Too many open files"). Here:

- a connection must send a whole request's headers within `HEADERS_S` of opening, or of
  starting its next request's headers; else it is closed;
- one network address holds at most `CONNECTIONS_PER_ADDRESS` connections at once (a browser
  keeps six to a host; a house or an office behind one address, a few dozen tabs); a
  connection past that is closed at once. An address is keyed as every other rule per address
  keys it (`ui.visitor.normal_address`): an IPv6 client by its /48, the most one site gets
  (each of its addresses counted apart, one /64 held 2,000 connections under a cap of 256:
  review 8 F3), an IPv4-mapped IPv6 address as its IPv4. Not where every
  visitor comes through one proxy (a share link's tunnel, `PROXY_HOPS`): there the peer is the
  proxy, which bounds its clients.

Rules are per running app (`guard_connections`); an app without them is served as by stock
uvicorn. The protocol is uvicorn's own (`AutoHTTPProtocol`), with these two checks added.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import uvicorn.config
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from studio.ui.visitor import normal_address

# Seconds a connection may take to send a request's headers.
HEADERS_S = 10.0
# Connections one network address may hold at once.
CONNECTIONS_PER_ADDRESS = 256
_STATE = "kontext_connections"


@dataclass
class ConnectionRules:
    """What `GuardedHTTPProtocol` enforces for one running app."""

    per_address: bool
    # The open connections of each network address, keyed by `normal_address` (each taken out
    # as it closes; and pruned of closed ones as they are counted, for one whose protocol
    # changed on the way).
    open: dict[str, set[asyncio.BaseTransport]] = field(default_factory=dict)
    # How many addresses may be tracked before those with no connection left are looked for.
    prune_at: int = 1024

    def admit(self, address: str | None, transport: asyncio.BaseTransport) -> bool:
        """Whether a connection from peer `address` may stay open (it is counted if so)."""
        if not self.per_address or address is None:
            return True
        address = normal_address(address)
        held = {t for t in self.open.get(address, ()) if not t.is_closing()}
        if len(held) >= CONNECTIONS_PER_ADDRESS:
            self.open[address] = held
            return False
        held.add(transport)
        self.open[address] = held
        if len(self.open) > self.prune_at:  # addresses whose connections all closed go
            for other in [a for a, ts in self.open.items() if all(t.is_closing() for t in ts)]:
                del self.open[other]
            self.prune_at = max(1024, 2 * len(self.open))
        return True

    def closed(self, address: str | None, transport: asyncio.BaseTransport) -> None:
        """A connection `admit` counted (from peer `address`) has closed."""
        if not self.per_address or address is None:
            return
        address = normal_address(address)
        held = self.open.get(address)
        if held is not None:
            held.discard(transport)
            if not held:
                del self.open[address]


class GuardedHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """Uvicorn's HTTP protocol, with a deadline for each request's headers and a bound on an
    address's connections (`ConnectionRules`, when the app has them)."""

    _headers_due: asyncio.TimerHandle | None = None
    _rules: ConnectionRules | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        app_state = getattr(getattr(self.config, "app", None), "state", None)
        rules = getattr(app_state, _STATE, None)
        if not isinstance(rules, ConnectionRules):
            return
        self._rules = rules
        address = self.client[0] if self.client else None
        if not rules.admit(address, transport):
            transport.close()
            return
        self._expect_headers()

    def data_received(self, data: bytes) -> None:
        before = self.cycle
        super().data_received(data)
        if self._rules is None:
            return
        if self.cycle is not before and self._headers_due is not None:
            self._headers_due.cancel()  # a request's headers came whole
            self._headers_due = None
        if self._between_requests() and self._headers_due is None:
            self._expect_headers()  # part of the next request's headers

    def connection_lost(self, exc: Exception | None) -> None:
        if self._headers_due is not None:
            self._headers_due.cancel()
            self._headers_due = None
        if self._rules is not None:
            self._rules.closed(self.client[0] if self.client else None, self.transport)
        super().connection_lost(exc)

    def _between_requests(self) -> bool:
        return self.cycle is None or bool(self.cycle.response_complete)

    def _expect_headers(self) -> None:
        self._headers_due = self.loop.call_later(HEADERS_S, self._no_headers, self.cycle)

    def _no_headers(self, cycle_then: object) -> None:
        self._headers_due = None
        waiting = self.cycle is cycle_then and self._between_requests()
        if waiting and not self.transport.is_closing():
            self.transport.close()


def install() -> None:
    """Serve every app uvicorn runs from now on with `GuardedHTTPProtocol` (idempotent); it
    changes nothing for an app without `ConnectionRules`."""
    uvicorn.config.HTTP_PROTOCOLS["auto"] = f"{__name__}:GuardedHTTPProtocol"


def guard_connections(app: Any, *, per_address: bool) -> None:
    """Give the running `app` (Gradio's server app) its `ConnectionRules`."""
    setattr(app.state, _STATE, ConnectionRules(per_address=per_address))


__all__ = [
    "CONNECTIONS_PER_ADDRESS",
    "HEADERS_S",
    "ConnectionRules",
    "GuardedHTTPProtocol",
    "guard_connections",
    "install",
]
