"""Who is asking, settled once per request at the door (after Starlette's authentication
middleware): the browser's signed visitor token, an API or MCP caller's key header, the
client's address. The result is a `studio.visitor.Visitor`, which the handlers and the public
endpoints pass whole through the bridge into the engine; nothing here decides what a visitor
may do.

- `VisitorMiddleware` (hosted studios) names the visitor of every HTTP request and keeps it in
  the request's state, where `visitor_from` finds it; a browser without a valid token gets a
  new one, signed with the studio's secret (HMAC-SHA256), in its response. The request that
  lacked one names nobody: it may read the page, but creates nothing and spends nothing.
- The token travels in a cookie that also works inside another site's frame (a Space is framed
  by huggingface.co): `SameSite=None; Secure; Partitioned` wherever the browser counts the page
  as secure (HTTPS, or a loopback address), a plain `SameSite=Lax` one on bare HTTP elsewhere.
  Such a cookie also goes with requests another site's page makes (in the same frame
  partition, or anywhere, where the cookie is a plain one): a request a browser says it made
  for another site's page (`from_another_site`) names nobody, whatever cookie it carries, and
  so does one carrying two different tokens of the studio's.
- `guarded` wraps every page handler and public endpoint: the visitor is settled before it runs
  (`current()`), and a refusal gets the one answer of its kind (the page as it was, with the
  reason; an API error of one sentence).
"""

from __future__ import annotations

import base64
import contextvars
import functools
import hashlib
import hmac
import inspect
import ipaddress
import re
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

import gradio as gr
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from studio.config import Secret, is_loopback_host
from studio.params import split_url
from studio.ui.bridge import USER_ERRORS
from studio.visitor import LOCAL, Visitor, owner_of

# The cookie that tells a hosted studio's visitors apart, and the header an API or MCP caller
# sends its own RunAPI key in (it also names the caller).
VISITOR_COOKIE = "kontext_visitor"
# Its name over HTTPS: a `__Host-` cookie is only ever set by this host itself (Secure, Path=/,
# no Domain), so a page on a sibling host under a shared parent domain (another Space on
# hf.space, another share link on gradio.live) cannot put a token of its choosing on a visitor.
SECURE_VISITOR_COOKIE = "__Host-" + VISITOR_COOKIE
KEY_HEADER = "x-runapi-key"
# The header the door writes the client's address into, signed (`_stamp`), for requests Gradio
# makes to itself on a client's behalf.
ADDRESS_STAMP = "x-kontext-studio-address"
# The headers a proxy adds to say where a request came from and where it was sent.
_FORWARDED = (
    b"forwarded",
    b"x-forwarded-for",
    b"x-forwarded-host",
    b"x-forwarded-port",
    b"x-forwarded-prefix",
    b"x-forwarded-proto",
)
# What a host in a Host or X-Forwarded-Host header may be: a name or an address and a port.
_HOST = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
# The address Gradio takes as the studio's own when a request carries it (never from a client).
_GRADIO_SERVER = b"x-gradio-server"
# A year: the token only names the owner of this browser's sessions.
COOKIE_MAX_AGE_S = 365 * 24 * 3600
# Who the event being handled is for: set once per event from its request, in `guarded`.
_WHO: contextvars.ContextVar[Visitor | Refusal] = contextvars.ContextVar("who", default=LOCAL)
# Which tab (Gradio's session hash) sent the event being handled; None for a direct call.
_TAB: contextvars.ContextVar[str | None] = contextvars.ContextVar("tab", default=None)

F = TypeVar("F", bound=Callable[..., Any])
K = TypeVar("K")
V = TypeVar("V")


class Refusal(Exception):
    """Input the page itself refuses; `str()` is one sentence for the user."""


REFUSED: tuple[type[Exception], ...] = (*USER_ERRORS, Refusal)
NO_COOKIE = (
    "This studio keeps each visitor's sessions apart with a cookie; allow cookies for this "
    "site and reload the page (API and MCP callers send an X-RunAPI-Key header)."
)


TWO_TOKENS = (
    "This browser sent two different studio cookies for this site (another site may have put "
    "one there); clear this site's cookies and reload the page."
)
FROM_ELSEWHERE = (
    "This request came from a page of another site; the studio answers its visitors only on "
    "its own page."
)
KEY_REFUSED = (
    "RunAPI did not accept the key sent in the X-RunAPI-Key header; check it in your RunAPI "
    "account."
)
TOO_MANY_NEW = (
    "Too many new visitors came from your network address in the last hour; try again later, "
    "or use the browser you used before."
)
# Where the middleware leaves what it found, in the request's state (`request.state`).
_STATE_VISITOR = "kontext_visitor"
_STATE_REFUSAL = "kontext_refusal"
_STATE_FORWARDED = "kontext_forwarded"
_STATE_ADDRESS = "kontext_address"
_STATE_NEWCOMER = "kontext_newcomer"
# How long after its token was first counted a browser is a newcomer (`newcomer_in`).
NEWCOMER_S = 3600.0
# A token is "v1.<id>.<mac>": a random id and its HMAC-SHA256 under the studio's secret; once
# it has been counted among its address's new visitors, "v1c.<id>.<mac>" with a MAC of its own.
_TOKEN_VERSION = "v1"
_COUNTED_VERSION = "v1c"
# What an id the studio made looks like (`new_token`: no ":", so no other MAC the studio makes,
# "counted:<id>" or "address:<text>", passes for a token's).
_TOKEN_ID = re.compile(r"[A-Za-z0-9_~-]+")
_ID_BYTES = 24
# New visitors one network address may become in an hour (a browser keeps its token; only a
# client that throws its cookies away needs more).
DEFAULT_IDENTITIES_PER_HOUR = 20
# Tokens remembered as counted (`VisitorMiddleware._admit_token`); one forgotten counts again.
COUNTED_TOKENS_KEPT = 100_000
IDENTITY_WINDOW_S = 3600.0
# Addresses remembered for that count at most (the oldest is forgotten first).
MAX_TRACKED_ADDRESSES = 10_000


def new_token(secret: bytes) -> str:
    """A fresh visitor token signed with `secret`; its id says when it was issued (signed with
    it: `issued_at`)."""
    token_id = f"{secrets.token_urlsafe(_ID_BYTES)}~{int(time.time()):x}"
    return f"{_TOKEN_VERSION}.{token_id}.{_mac(secret, token_id)}"


def issued_at(ident: str) -> int | None:
    """When the token of id `ident` was issued (Unix seconds); None for one that does not say."""
    _, sep, when = ident.rpartition("~")
    try:
        return int(when, 16) if sep and when else None
    except ValueError:
        return None


def token_id(token: str, secret: bytes) -> str | None:
    """The id inside a token this studio signed with `secret`; None for anything else (a
    forged, altered or foreign token, or an old unsigned one)."""
    signed = _signed(token, secret)
    return None if signed is None else signed[0]


def counted_token(ident: str, secret: bytes) -> str:
    """The token of id `ident` marked as counted among its address's new visitors: the same
    visitor, never counted again (`VisitorMiddleware._admit_token`), across restarts too."""
    return f"{_COUNTED_VERSION}.{ident}.{_mac(secret, 'counted:' + ident)}"


def _signed(token: str, secret: bytes) -> tuple[str, bool] | None:
    """A token's id and whether it is marked counted, if this studio signed it."""
    version, _, rest = token.partition(".")
    ident, _, mac = rest.partition(".")
    if len(ident) < 32 or not mac or not _TOKEN_ID.fullmatch(ident):
        return None
    if version == _TOKEN_VERSION:
        expected, counted = _mac(secret, ident), False
    elif version == _COUNTED_VERSION:
        expected, counted = _mac(secret, "counted:" + ident), True
    else:
        return None
    return (ident, counted) if hmac.compare_digest(mac, expected) else None


def _mac(secret: bytes, ident: str) -> str:
    digest = hmac.new(secret, f"visitor:{ident}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def cookie_values(header: str, name: str = VISITOR_COOKIE) -> list[str]:
    """Every value of cookie `name` in a Cookie header, in the order the browser sent them
    (a browser may send two of the same name: another path, a partitioned and a plain one)."""
    values = []
    for part in header.split(";"):
        key, eq, value = part.strip().partition("=")
        if eq and key == name:
            values.append(value.strip().strip('"'))
    return values


def valid_token_ids(header: str, secret: bytes, name: str = VISITOR_COOKIE) -> list[str]:
    """The ids of the distinct tokens this studio signed among the Cookie header's `name`
    cookies, in the order sent (what else comes along under that name is ignored)."""
    return list(valid_tokens(header, secret, name))


def valid_tokens(header: str, secret: bytes, name: str = VISITOR_COOKIE) -> dict[str, bool]:
    """`valid_token_ids`, each with whether a token of that id came marked as counted."""
    found: dict[str, bool] = {}
    for value in cookie_values(header, name):
        if (signed := _signed(value, secret)) is not None:
            ident, counted = signed
            found[ident] = found.get(ident, False) or counted
    return found


def valid_token_id(header: str, secret: bytes, name: str = VISITOR_COOKIE) -> str | None:
    """The id of the one token this studio signed among the Cookie header's `name` cookies.
    None for none, and for two different ones: a browser keeps one cookie of that name for
    this studio, so a second was put there by another site under the same domain (a sibling
    host can set a cookie for its parent domain, or for a longer path), which would have the
    visitor work in a session of the other site's choosing (and show it what they make)."""
    ids = valid_token_ids(header, secret, name)
    return ids[0] if len(ids) == 1 else None


def client_address(
    peer: str | None, forwarded_for: str | None, *, proxy_hops: int = 0
) -> str | None:
    """The client's address: the peer's, or behind `proxy_hops` trusted proxies (a Space has
    one), the address the nearest of them saw, counted from the right of X-Forwarded-For (what
    a client writes there itself sits to the left, and is ignored)."""
    if proxy_hops > 0 and forwarded_for:
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        if len(hops) >= proxy_hops:
            return normal_address(hops[-proxy_hops])
    return normal_address(peer) if peer else None


def forwarded_for(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Every X-Forwarded-For header of a request as one list, in order (a proxy may add a line
    of its own rather than extend the client's; the nearest proxy's entries come last)."""
    lines = [v.decode("latin-1") for k, v in headers if k.lower() == b"x-forwarded-for"]
    return ", ".join(lines) or None


# Address stamps are signed with a key of this process alone (never the visitor tokens'
# secret) and hold for `STAMP_S` after they are made: one that reached anyone (a proxy on
# loopback passes a client's headers on) stops being believed within a minute, and at the
# next start (review 30 F3, hardening). Gradio's own call follows its stamp at once.
_STAMP_KEY = secrets.token_bytes(32)
STAMP_S = 60.0


def _stamp(address: str | None, *, now: float | None = None) -> str:
    text = f"{address or ''}|{int(time.time() if now is None else now)}"
    return f"{text}|{_mac(_STAMP_KEY, 'address:' + text)}"


def _stamped(value: str, *, now: float | None = None) -> str | None:
    """The address a stamp this process made lately carries (None: no stamp, a forged one, or
    one older than `STAMP_S`)."""
    text, _, mac = value.rpartition("|")
    address, _, made = text.rpartition("|")
    if not address or not hmac.compare_digest(mac, _mac(_STAMP_KEY, "address:" + text)):
        return None
    age = (time.time() if now is None else now) - int(made)
    return address if -STAMP_S <= age <= STAMP_S else None


# The block of IPv6 addresses counted as one network address: a /48, the most one site is
# given (RIPE-690 advises a /48 or a /56 for every customer, many ISPs and tunnel brokers give
# a /48 for free, and Let's Encrypt counts new accounts per /48 for the same reason). By /64,
# one holder of a /48 was 65,536 addresses, each with fresh caps (review 11 F2).
IPV6_BLOCK = 48
# What every address that does not read as one counts as (one key for them all).
UNREADABLE = "unreadable"
_PORT = re.compile(r":[0-9]{1,5}")


def normal_address(text: str) -> str:
    """An address as one spelling, so that one client is one key: an IPv6 client by its
    `IPV6_BLOCK`, an IPv4-mapped IPv6 address as its IPv4, an address with a port (as some
    proxies write it: `1.2.3.4:5678`, `[2001:db8::1]:443`) without it, and anything that is
    not an address as `UNREADABLE` (each spelling its own key made every connection through
    such a proxy a new address). Every rule per network address keys by it, connections
    included (`ui.conn`)."""
    address = _address_in(text.strip())
    if address is None:
        return UNREADABLE
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/{IPV6_BLOCK}", strict=False))
    return str(address)


def _address_in(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address `text` spells, with or without a port (None: none)."""
    if text.startswith("["):  # [v6] or [v6]:port
        inner, closed, port = text[1:].partition("]")
        if not closed or (port and not _PORT.fullmatch(port)):
            return None
        text = inner
    elif text.count(":") == 1:  # v4:port
        text, _, port = text.partition(":")
        if not _PORT.fullmatch(":" + port):
            return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def cookie_attributes(*, https: bool, host: str) -> str:
    """How the token's cookie is set. Wherever the browser counts the page as secure (HTTPS,
    or a loopback address) it is `SameSite=None; Secure; Partitioned`, so it is kept and sent
    inside another site's frame (as huggingface.co frames a Space) in a jar of that site's own;
    on bare HTTP elsewhere a browser refuses `Secure`, and it is a plain `SameSite=Lax` one."""
    if https or is_loopback_host(host):
        return "HttpOnly; Secure; SameSite=None; Partitioned"
    return "HttpOnly; SameSite=Lax"


class IdentityRate:
    """How many new visitors each network address became within the last hour (or, with
    `window_s`, how many times anything was counted for it within that many seconds)."""

    def __init__(
        self,
        per_hour: int = DEFAULT_IDENTITIES_PER_HOUR,
        *,
        clock: Callable[[], float] = time.monotonic,
        window_s: float = IDENTITY_WINDOW_S,
        counted: Mapping[str, Sequence[float]] | None = None,
        on_count: Callable[[str], None] | None = None,
    ) -> None:
        """`counted`: how many seconds ago each address was counted before (a restart's
        store); `on_count` is told of each address counted from now on."""
        self.per_hour = per_hour
        self.window_s = window_s
        self._clock = clock
        self._on_count = on_count
        self._issued: OrderedDict[str, deque[float]] = OrderedDict()
        now = clock()
        for address, ages in (counted or {}).items():
            times = sorted(now - age for age in ages if 0 <= age < window_s)
            if times:
                self._issued[address] = deque(times)
        while len(self._issued) > MAX_TRACKED_ADDRESSES:
            self._issued.popitem(last=False)

    def has_room(self, address: str | None) -> bool:
        """Whether `address` may become one more new visitor now (nothing counted)."""
        times = self._issued.get(address or "?", deque())
        now = self._clock()
        return sum(1 for t in times if now - t < self.window_s) < self.per_hour

    def give_back(self, address: str | None) -> None:
        """Uncount the newest one counted for `address`."""
        times = self._issued.get(address or "?")
        if times:
            times.pop()

    def allow(self, address: str | None) -> bool:
        """Count one new visitor for `address`, or say no (and count nothing)."""
        key = address or "?"
        now = self._clock()
        times = self._issued.pop(key, deque())
        while times and now - times[0] >= self.window_s:
            times.popleft()
        allowed = len(times) < self.per_hour
        if allowed:
            times.append(now)
            if self._on_count is not None:
                self._on_count(key)
        if times:
            self._issued[key] = times
        while len(self._issued) > MAX_TRACKED_ADDRESSES:
            self._issued.popitem(last=False)
        return allowed


class KeyRate:
    """An API or MCP caller is named by its key: each key an address has not used before
    counts as a new visitor of that address (`IdentityRate`), so keys buy no fresh share of the
    disk or the budgets beyond it. (Only keys RunAPI accepted are counted, where the door can
    ask: `DoorSettings.check_key`.)"""

    def __init__(self, rate: IdentityRate) -> None:
        self._rate = rate
        self._known: OrderedDict[tuple[str, str], None] = OrderedDict()

    def allow(self, key: str, address: str | None) -> bool:
        digest = hashlib.sha256(key.encode()).hexdigest()
        seen = (digest, address or "?")
        if seen in self._known:
            self._known.move_to_end(seen)
            return True
        if not self._rate.allow(address):
            return False
        remember(self._known, seen, None, MAX_TRACKED_ADDRESSES)
        return True


def remember(table: OrderedDict[K, V], key: K, value: V, kept: int) -> None:
    """Remember `key` (with `value`) in `table`, the newest last, forgetting the oldest past
    `kept`."""
    table.pop(key, None)
    table[key] = value
    while len(table) > kept:
        table.popitem(last=False)


def from_another_site(headers: Mapping[str, str], method: str = "GET") -> bool:
    """Whether a browser sent this request for a page of another site, or of another origin of
    this one (a fetch it made, or a form it posted: anything but opening the studio). A
    browser's cookie goes with such a request too: inside a frame, every site framed by the
    same top-level site shares the partitioned cookie (every Space on huggingface.co), Gradio
    allows any origin to read its answers with credentials, and another site's form posted to
    the studio (a navigation, with `method` POST) carries the cookie as well: it filled a
    visitor's uploads. Browsers say where a request comes from in `Sec-Fetch-Site`; for one
    that does not, an `Origin` other than the host asked says it."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        opening = headers.get("sec-fetch-mode") == "navigate" and method in ("GET", "HEAD")
        return site.lower() in ("cross-site", "same-site") and not opening
    origin = headers.get("origin")
    if not origin:
        return False
    host = (headers.get("host") or "").lower()
    return origin == "null" or split_url(origin).netloc.lower() != host


def _is_page_load(request: Request) -> bool:
    """Whether `request` asks for the studio's page (what a browser opens first)."""
    if request.method not in ("GET", "HEAD"):
        return False
    path = request.url.path
    root = (request.scope.get("root_path") or "").rstrip("/")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path in ("", "/")


class _Asking(Protocol):
    """What naming a visitor reads of a request (Gradio's and Starlette's both have it)."""

    @property
    def headers(self) -> Mapping[str, str]: ...


def visitor_from(request: _Asking | None, *, hosted: bool) -> Visitor:
    """Who sent this request. On a studio that is not hosted, the one local user (with the key
    it sends, if any); on a hosted one, whoever `VisitorMiddleware` named for this request.
    Raises `Refusal` for a hosted request that names nobody."""
    if not hosted:
        headers: Mapping[str, str] = request.headers if request is not None else {}
        key = (headers.get(KEY_HEADER) or "").strip()
        return Visitor(None, Secret(key) if key else None)
    state = _state(request)
    named = state.get(_STATE_VISITOR)
    if isinstance(named, Visitor):
        return named
    refusal = state.get(_STATE_REFUSAL)
    raise Refusal(refusal if isinstance(refusal, str) else NO_COOKIE)


def visitor_in(scope: Scope) -> Visitor | None:
    """Who `VisitorMiddleware` named for this request, read from its scope (None: nobody)."""
    named = scope.get("state", {}).get(_STATE_VISITOR)
    return named if isinstance(named, Visitor) else None


def newcomer_in(scope: Scope) -> bool:
    """Whether the browser of this request first came to this studio, as counted by its door,
    within the last `NEWCOMER_S` since the studio started (`ui.signin` gives such a browser
    its first sign-in tries of its own)."""
    return scope.get("state", {}).get(_STATE_NEWCOMER) is True


def address_in(scope: Scope) -> str | None:
    """The network address `VisitorMiddleware` took this request to come from, named or not."""
    address = scope.get("state", {}).get(_STATE_ADDRESS)
    return address if isinstance(address, str) and address else None


def public_origin(headers: Mapping[str, str], *, behind_proxy: bool) -> str:
    """The address a request reached the studio at, "scheme://host[:port]", from its headers
    (names lower case): its public one behind a proxy the host named (`PROXY_HOPS`), whose
    forwarded headers say it; else the Host header alone. Only ever put in the answer to that
    request: a caller's own X-Forwarded-Host once named any host in their answers' image
    addresses, where an agent told to fetch one would send its key (and a Host of
    "studio/studio/image/<another visitor's image>.png?" made the address name that image:
    review 11 F1), hence a host is a name or an address and a port, nothing else."""
    host = headers.get("host", "127.0.0.1")
    scheme = "http"
    if behind_proxy:
        host = headers.get("x-forwarded-host", host)
        scheme = headers.get("x-forwarded-proto", scheme)
    host, scheme = host.split(",")[0].strip(), scheme.split(",")[0].strip().lower()
    if not _HOST.fullmatch(host):
        host = "localhost"
    return f"{scheme if scheme in ('http', 'https') else 'http'}://{host}"


def forwarded_in(scope: Scope) -> bool:
    """Whether this request is one the studio made to itself for a client (Gradio's MCP server
    calling a tool): it carries the address stamp the door wrote, which no client can forge."""
    return scope.get("state", {}).get(_STATE_FORWARDED) is True


def _state(request: object) -> Mapping[str, object]:
    """The request's state as the middleware left it (empty for anything else)."""
    state = getattr(request, "state", None) if request is not None else None
    values = getattr(state, "_state", None)
    return values if isinstance(values, Mapping) else {}


def current() -> Visitor:
    """The visitor of the event being handled (inside a `guarded` handler). Raises `Refusal`
    when the request named nobody: a handler that never asks creates and spends nothing."""
    who = _WHO.get()
    if isinstance(who, Refusal):
        raise who
    return who


def current_tab() -> str | None:
    """The tab (Gradio's session hash) of the event being handled, if known: the page keeps
    what it knows of one tab's typing under it (`handlers._Tab`)."""
    return _TAB.get()


class Door(Protocol):
    """What `guarded` needs of the object whose handlers it wraps."""

    @property
    def hosted(self) -> bool: ...

    def unnamed(self, refusal: Refusal) -> object:
        """The answer to a request that names no visitor (nothing changes)."""

    async def refused(self, args: tuple[object, ...], exc: Exception) -> object:
        """The answer to refused input, given the handler's arguments (nothing changes)."""


def guarded(handler: F) -> F:
    """The one way into a handler or endpoint: who is asking is settled once, from the request,
    before it runs (`current()` reads it; a request that names nobody is refused the moment the
    handler asks), and refused input gets the object's one answer (`Door`), never a traceback.

    Gradio passes the request to the parameter typed `gr.Request`: a handler that declares none
    gets one added to its signature (and does not see it); one that declares it gets it too.
    """
    signature = inspect.signature(handler, eval_str=True)
    declared = any(_is_request(p.annotation) for p in signature.parameters.values())

    @functools.wraps(handler)
    async def run(self: Door, *args: object) -> object:
        # Gradio passes the request positionally; a direct call (a test) may leave it out.
        request = next((a for a in args if isinstance(a, gr.Request)), None)
        own = args if declared or request is None else tuple(a for a in args if a is not request)
        try:
            who: Visitor | Refusal = visitor_from(request, hosted=self.hosted)
        except Refusal as exc:
            who = exc
        token = _WHO.set(who)
        tab = _TAB.set(getattr(request, "session_hash", None) or None)
        try:
            return await handler(self, *own)
        except REFUSED as exc:
            if isinstance(who, Refusal):
                return self.unnamed(who)
            return await self.refused(own, exc)
        finally:
            _TAB.reset(tab)
            _WHO.reset(token)

    del run.__wrapped__  # Gradio reads our own signature, resolved in the handler's module
    annotations = inspect.get_annotations(handler, eval_str=True)
    if not declared:
        request = inspect.Parameter(
            "request",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=None,
            annotation=gr.Request | None,
        )
        signature = signature.replace(parameters=[*signature.parameters.values(), request])
        annotations["request"] = gr.Request | None
    run.__signature__ = signature  # type: ignore[attr-defined]
    run.__annotations__ = annotations
    run.__guarded__ = True  # type: ignore[attr-defined]
    return cast(F, run)


def is_guarded(handler: object) -> bool:
    """Whether `handler` goes through `guarded` (a test checks every public one does)."""
    return getattr(handler, "__guarded__", False) is True


def _is_request(annotation: object) -> bool:
    return annotation is gr.Request or annotation == gr.Request | None


@dataclass(frozen=True, slots=True)
class DoorSettings:
    """What the middleware needs: the signing secret, how many proxies stand in front of the
    studio (X-Forwarded-For), whether it is served over HTTPS by them, new visitors an address
    may become in an hour."""

    secret: bytes
    proxy_hops: int = 0
    https: bool = False
    identities_per_hour: int = DEFAULT_IDENTITIES_PER_HOUR
    # Asks RunAPI whether a caller's key (and from which address) is accepted: True, False, or
    # None when it cannot be asked; raises a user error (`USER_ERRORS`) to refuse the request.
    check_key: Callable[[str, str | None], Awaitable[bool | None]] | None = None
    # How many seconds ago each address became each of its new visitors within the hour, as the
    # store kept them (so a restart forgets none); and where each new one is kept.
    new_visitors: Mapping[str, Sequence[float]] = field(default_factory=dict)
    note_new_visitor: Callable[[str], None] | None = None


def _with_cookie(send: Send, cookie: bytes) -> Send:
    """`send`, setting `cookie` on the response."""

    async def send_with_cookie(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie)]
        await send(message)

    return send_with_cookie


class VisitorMiddleware:
    """A hosted studio's door: names the visitor of every HTTP request (an API or MCP caller by
    its key header, a browser by its signed token) in the request's state, and gives a browser
    without a valid token a new one, at most `identities_per_hour` per network address."""

    def __init__(self, app: ASGIApp, *, door: DoorSettings) -> None:
        self.app = app
        self.door = door
        self.rate = IdentityRate(
            door.identities_per_hour, counted=door.new_visitors, on_count=door.note_new_visitor
        )
        self.keys = KeyRate(self.rate)
        # Tokens counted by this door (whose browser may not yet hold them marked), with when
        # (`_admit_token`), the most recent last.
        self.counted: OrderedDict[str, tuple[float, str | None]] = OrderedDict()

    def _admit_token(self, ident: str, marked: bool, address: str | None) -> bool:
        """Whether a browser's token may name its visitor. A token counts among its address's
        new visitors the first time it comes back, not when it is issued: a client fetching
        the page and throwing the cookie away uses none up (twenty such fetches an hour from
        one address, a share link's tunnel, closed the studio to every newcomer). Once counted,
        the browser is given it marked so (`counted_token`), and a marked token is never
        counted again: the mark, not the door's memory, says so, so a restart neither counts
        a browser twice nor lets tokens fetched before it in unseen (a review minted 60 before
        a restart and all 60 named visitors after it)."""
        if marked or issued_at(ident) is None or ident in self.counted:
            return True
        if not self.rate.allow(address):
            return False
        remember(self.counted, ident, (time.monotonic(), address), COUNTED_TOKENS_KEPT)
        return True

    def _newcomer(self, ident: str, address: str | None) -> bool:
        """Whether `ident` was counted by this door within the last `NEWCOMER_S`, as a new
        visitor of `address` (tokens gathered elsewhere bring no newcomer's tries here)."""
        counted = self.counted.get(ident)
        if counted is None:
            return False
        when, where = counted
        return where == address and time.monotonic() - when < NEWCOMER_S

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        door = self.door
        peer = request.client.host if request.client is not None else None
        # Only the studio itself (a loopback peer) passes a stamp on; from anyone else it is
        # ignored (and written over).
        stamped = (
            _stamped(request.headers.get(ADDRESS_STAMP, ""))
            if peer is not None and is_loopback_host(peer)
            else None
        )
        address = stamped or client_address(
            peer, forwarded_for(scope.get("headers", [])), proxy_hops=door.proxy_hops
        )
        # Gradio's MCP server runs each tool through a loopback client of its own, with the
        # MCP request's headers: the stamp carries the caller's address to that second request
        # (signed, so that no client can write one).
        # And with no proxy the host named, a client's own forwarded headers go: Gradio took
        # its X-Forwarded-Host for the studio's address in the API's description, which it
        # keeps from the first request (review 38 F3: every visitor's "Use via API" then named
        # the client's host, where a caller would send their key).
        # Nor does Gradio's X-Gradio-Server pass, ever (it is the address Gradio's own page
        # server names when it renders a page, which this studio does not use: a client's own
        # named any host in that description too, behind a proxy as well: review 39 F1).
        dropped = {
            ADDRESS_STAMP.encode(),
            _GRADIO_SERVER,
            *(_FORWARDED if door.proxy_hops == 0 else ()),
        }
        scope["headers"] = [
            *((k, v) for k, v in scope.get("headers", []) if k.lower() not in dropped),
            (ADDRESS_STAMP.encode(), _stamp(address).encode()),
        ]
        request = Request(scope)
        state = scope.setdefault("state", {})
        state[_STATE_ADDRESS] = address
        if stamped is not None:
            state[_STATE_FORWARDED] = True
        key = (request.headers.get(KEY_HEADER) or "").strip()
        cookies = request.headers.get("cookie", "")
        https = self._https(request)
        # Over HTTPS only the `__Host-` cookie names a browser: a plain one may have been put
        # there by a sibling host (no token is carried over from one to the other, for the
        # same reason).
        named = SECURE_VISITOR_COOKIE if https else VISITOR_COOKIE
        tokens = valid_tokens(cookies, door.secret, named)
        ident = next(iter(tokens)) if len(tokens) == 1 else None
        # (Another site's page fetching the studio's page is no visitor opening it either: it
        # is handed no token, and uses up none of the address's new visitors.)
        cross = from_another_site(request.headers, request.method)
        if tokens and not key and cross:
            # Another site's page asking with the visitor's cookie: it names nobody (it may
            # read nothing of theirs, nor act for them).
            state[_STATE_REFUSAL] = FROM_ELSEWHERE
            await self.app(scope, receive, send)
            return
        if len(tokens) > 1 and not key:
            # Neither is believed, and no third is handed out (the other site's would stay).
            state[_STATE_REFUSAL] = TWO_TOKENS
            await self.app(scope, receive, send)
            return
        if key:  # an API or MCP caller: the key names it (it may keep no cookie between calls)
            refusal = await self._refuse_key(key, address)
            if refusal is not None:
                state[_STATE_REFUSAL] = refusal
            elif not self.keys.allow(key, address):
                state[_STATE_REFUSAL] = TOO_MANY_NEW
            else:
                state[_STATE_VISITOR] = Visitor(owner_of("key", key), Secret(key), address)
        elif ident is not None:
            if self._admit_token(ident, tokens[ident], address):
                state[_STATE_VISITOR] = Visitor(owner_of("browser", ident), None, address)
                state[_STATE_NEWCOMER] = self._newcomer(ident, address)
                if not tokens[ident]:  # counted now: the browser keeps it marked so
                    mark = self._cookie(request, counted_token(ident, door.secret))
                    await self.app(scope, receive, _with_cookie(send, mark))
                    return
            else:
                state[_STATE_REFUSAL] = TOO_MANY_NEW
        if ident is None and not key and not self.rate.has_room(address):
            state[_STATE_REFUSAL] = TOO_MANY_NEW  # said instead of "allow cookies"
        if ident is not None or key or not _is_page_load(request) or cross:
            # Only the page itself makes a new visitor: any other request without a token (an
            # API probe, a client's /config, Gradio's own MCP client) names nobody, so no token
            # is handed to a client that would share it (Gradio's MCP server calls every tool
            # through one client, which keeps the cookies it is given), and probes use up no
            # address's new visitors.
            await self.app(scope, receive, send)
            return
        if not self.rate.has_room(address):  # (counted when the token comes back)
            state[_STATE_REFUSAL] = TOO_MANY_NEW
            await self.app(scope, receive, send)
            return
        cookie = self._cookie(request, new_token(door.secret))
        await self.app(scope, receive, _with_cookie(send, cookie))

    async def _refuse_key(self, key: str, address: str | None) -> str | None:
        """Why a caller's key names nobody (None: it may name its caller). A key RunAPI refuses
        names nobody, and so uses up none of its address's new visitors: where every caller
        comes from one address (a share link's tunnel), twenty made-up keys closed the studio
        to every new caller for an hour."""
        if self.door.check_key is None:
            return None
        try:
            accepted = await self.door.check_key(key, address)
        except USER_ERRORS as exc:
            return str(exc)
        return KEY_REFUSED if accepted is False else None

    def _https(self, request: Request) -> bool:
        """Whether the browser sees this studio over HTTPS (itself, or its proxy's)."""
        https = self.door.https or request.url.scheme == "https"
        if self.door.proxy_hops > 0:
            https = https or request.headers.get("x-forwarded-proto", "").lower() == "https"
        return https

    def _cookie(self, request: Request, token: str) -> bytes:
        https = self._https(request)
        attributes = cookie_attributes(https=https, host=request.url.hostname or "")
        if https:  # `__Host-`: Secure, no Domain, and the whole host's path
            name, root = SECURE_VISITOR_COOKIE, "/"
        else:
            name, root = VISITOR_COOKIE, request.scope.get("root_path", "") or "/"
        value = f"{name}={token}; Path={root}; Max-Age={COOKIE_MAX_AGE_S}; {attributes}"
        return value.encode()


__all__ = [
    "KEY_HEADER",
    "REFUSED",
    "SECURE_VISITOR_COOKIE",
    "VISITOR_COOKIE",
    "Door",
    "DoorSettings",
    "IdentityRate",
    "Refusal",
    "VisitorMiddleware",
    "address_in",
    "client_address",
    "cookie_attributes",
    "cookie_values",
    "current",
    "current_tab",
    "forwarded_for",
    "forwarded_in",
    "from_another_site",
    "guarded",
    "is_guarded",
    "new_token",
    "newcomer_in",
    "normal_address",
    "remember",
    "token_id",
    "visitor_from",
    "visitor_in",
]
