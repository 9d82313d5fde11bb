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
- all addresses together hold at most `ConnectionRules.most` connections, well below the
  process's limit of open files (raised to its hard limit at start: `open_files_room`), so the
  store, SQLite and RunAPI always have file descriptors left (four addresses of 256 half-open
  connections each used up a limit of 1,024: paid results could not be saved, and the accept
  loop spun on two cores, review 20 F1). At that total a new connection takes the place of the
  oldest connection still waiting for a request's headers, else of the oldest one idle between
  requests or holding a tab's heartbeat (a browser opens a kept-alive connection closed under
  it again, and a page its heartbeat); a connection with another request or stream under way is
  never closed for another, and with none to close the new one is (closing one of the address
  holding the most let an attacker spread thin over many addresses make a visitor's browser the
  most crowded: review 21 F3; heartbeats held by the thousand took every place: review 22 F1).

Rules are per running app (`guard_connections`); an app without them is served as by stock
uvicorn. The protocol is uvicorn's own (`AutoHTTPProtocol`), with these two checks added.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import uvicorn.config
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from studio.ui.visitor import normal_address

# Seconds a connection may take to send a request's headers.
HEADERS_S = 10.0
# Connections one network address may hold at once.
CONNECTIONS_PER_ADDRESS = 256
# File descriptors kept for everything but connections: at least this many, and half the
# limit (the store's files, SQLite, RunAPI's connections, uploads being written, and the
# connections accepted in a burst and not yet closed: with a quarter kept, a flood at the total
# still found the limit now and then).
FILES_KEPT = 256
_STATE = "kontext_connections"
# Gradio's heartbeat of a tab: an endless stream, which the page opens again when it closes.
_HEARTBEAT = "/gradio_api/heartbeat/"


def open_files_room() -> int:
    """Raise this process's limit of open files to its hard limit (a service's soft limit is
    often 1,024), and say how many connections may be open at once, all addresses together."""
    soft = 1024
    with contextlib.suppress(ImportError, OSError, ValueError):
        import resource  # (POSIX only)

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = 1_048_576 if hard == resource.RLIM_INFINITY else min(hard, 1_048_576)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted if soft == resource.RLIM_INFINITY else max(soft, wanted)
    return max(soft // 4, soft - max(FILES_KEPT, soft // 2))


@dataclass
class ConnectionRules:
    """What `GuardedHTTPProtocol` enforces for one running app."""

    per_address: bool
    # Connections all addresses together may hold (`open_files_room`).
    most: int = 1_000_000
    # The open connections of each network address, keyed by `normal_address` (each taken out
    # as it closes; and pruned of closed ones as they are counted, for one whose protocol
    # changed on the way).
    open: dict[str, set[asyncio.BaseTransport]] = field(default_factory=dict)
    # Every counted connection, the oldest first, with its address; and those waiting for a
    # request's headers, the longest waiting first (`waiting`).
    order: OrderedDict[asyncio.BaseTransport, str] = field(default_factory=OrderedDict)
    waiting_now: OrderedDict[asyncio.BaseTransport, None] = field(default_factory=OrderedDict)
    # How many addresses may be tracked before those with no connection left are looked for.
    prune_at: int = 1024

    @property
    def total(self) -> int:
        return len(self.order)

    def admit(self, address: str | None, transport: asyncio.BaseTransport) -> bool:
        """Whether a connection from peer `address` may stay open (it is counted if so); at
        the total, another connection waiting for headers or idle is closed for it."""
        if not self.per_address or address is None:
            return True
        address = normal_address(address)
        held = self._held(address)
        if len(held) >= CONNECTIONS_PER_ADDRESS:
            return False
        if self.total >= self.most and not self._make_room():
            return False
        held.add(transport)
        self.open[address] = held
        self.order[transport] = address
        if len(self.open) > self.prune_at:  # addresses whose connections all closed go
            for other in list(self.open):
                self._held(other)
            self.prune_at = max(1024, 2 * len(self.open))
        return True

    def waiting(self, transport: asyncio.BaseTransport, waits: bool) -> None:
        """A counted connection starts (`waits`) or stops waiting for a request's headers."""
        if not waits:
            self.waiting_now.pop(transport, None)
        elif transport in self.order:
            self.waiting_now[transport] = None
            self.waiting_now.move_to_end(transport)

    def closed(self, address: str | None, transport: asyncio.BaseTransport) -> None:
        """A connection `admit` counted (from peer `address`) has closed."""
        if not self.per_address or address is None:
            return
        self._forget(transport)

    def _held(self, address: str) -> set[asyncio.BaseTransport]:
        """`address`'s connections still open (those closed on the way forgotten, and an
        address holding none)."""
        for gone in [t for t in self.open.get(address, ()) if t.is_closing()]:
            self._forget(gone)
        return self.open.get(address, set())

    def _forget(self, transport: asyncio.BaseTransport) -> None:
        address = self.order.pop(transport, None)
        self.waiting_now.pop(transport, None)
        held = self.open.get(address or "")
        if held is not None:
            held.discard(transport)
            if not held:
                del self.open[address or ""]

    def _make_room(self) -> bool:
        """Close the oldest connection waiting for a request's headers, else the oldest idle
        (`GuardedHTTPProtocol.idle`: between requests, or holding a heartbeat); whether there
        was one."""
        victim = next(iter(self.waiting_now), None)
        if victim is None:
            victim = next((t for t in self.order if _idle(t)), None)
        if victim is None:
            return False
        self._forget(victim)
        victim.close()
        return True


def _idle(transport: asyncio.BaseTransport) -> bool:
    """Whether a connection may give its place up for another (its protocol says:
    `GuardedHTTPProtocol.idle`)."""
    idle = getattr(transport.get_protocol(), "idle", None)
    return not transport.is_closing() and callable(idle) and bool(idle())


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
            self._rules.waiting(self.transport, False)
        if self._between_requests() and self._headers_due is None:
            self._expect_headers()  # part of the next request's headers

    def connection_lost(self, exc: Exception | None) -> None:
        if self._headers_due is not None:
            self._headers_due.cancel()
            self._headers_due = None
        if self._rules is not None:
            self._rules.closed(self.client[0] if self.client else None, self.transport)
        super().connection_lost(exc)

    def idle(self) -> bool:
        """Between requests with nothing under way, or holding a tab's heartbeat (a page opens
        it again): `ConnectionRules` may close it for another."""
        if self._headers_due is not None:
            return False
        if self._between_requests():
            return True
        scope = getattr(self.cycle, "scope", None) or {}
        return _HEARTBEAT in str(scope.get("path", ""))

    def _between_requests(self) -> bool:
        return self.cycle is None or bool(self.cycle.response_complete)

    def _expect_headers(self) -> None:
        self._headers_due = self.loop.call_later(HEADERS_S, self._no_headers, self.cycle)
        if self._rules is not None:
            self._rules.waiting(self.transport, True)

    def _no_headers(self, cycle_then: object) -> None:
        self._headers_due = None
        if self._rules is not None:
            self._rules.waiting(self.transport, False)
        waiting = self.cycle is cycle_then and self._between_requests()
        if waiting and not self.transport.is_closing():
            self.transport.close()


def install() -> None:
    """Serve every app uvicorn runs from now on with `GuardedHTTPProtocol` (idempotent); it
    changes nothing for an app without `ConnectionRules`."""
    uvicorn.config.HTTP_PROTOCOLS["auto"] = f"{__name__}:GuardedHTTPProtocol"


def guard_connections(app: Any, *, per_address: bool) -> None:
    """Give the running `app` (Gradio's server app) its `ConnectionRules`."""
    setattr(app.state, _STATE, ConnectionRules(per_address=per_address, most=open_files_room()))


__all__ = [
    "CONNECTIONS_PER_ADDRESS",
    "FILES_KEPT",
    "HEADERS_S",
    "ConnectionRules",
    "GuardedHTTPProtocol",
    "guard_connections",
    "install",
    "open_files_room",
]
