"""Fetching links from real servers on loopback, and the address guard of hosted mode.

Two servers run the same routes: one on 127.0.0.1 (private, as it really is) and one on 127.0.0.2,
which the hosted-mode tests call public through `is_allowed_address`.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import httpx
import pytest

from studio.config import Secret
from studio.images import ImageError
from studio.limits import LimitError, Limits, LimitSettings
from studio.links import (
    HOSTED_LINK_FAILURE,
    LinkError,
    fetch_link,
    is_public_address,
    is_public_link,
)
from studio.params import EditParams
from studio.runapi import AuthenticationError
from studio.visitor import Visitor
from tests.support import corpus
from tests.support.engines import make_engine

PNG = corpus.encode(corpus.photo((48, 32)), "PNG")
JPEG = corpus.encode(corpus.photo((48, 32)), "JPEG")
CAP_BYTES = 64 * 1024
PUBLIC_HOST = "127.0.0.2"


def _is_public_in_tests(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address == ipaddress.IPv4Address(PUBLIC_HOST)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def do_GET(self):
        self.server.hosts.append(self.headers["Host"])
        path, _, query = self.path.partition("?")
        route = getattr(
            self, "route_" + path.strip("/").split("/")[0].replace("-", "_").replace(".", "_"), None
        )
        if route is None:
            self.send_error(404)
            return
        route(path, parse_qs(query))

    def reply(self, body: bytes, content_type: str = "image/png", length: int | None = None):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def route_image_png(self, path, query):
        self.reply(PNG)

    def route_mislabelled(self, path, query):
        self.reply(JPEG, content_type="text/plain")

    def route_html_as_png(self, path, query):
        self.reply(b"<!DOCTYPE html><html><body>Sign in</body></html>")

    def route_redirect(self, path, query):
        self.send_response(302)
        self.send_header("Location", query["to"][0])
        self.send_header("Content-Length", "0")
        self.end_headers()

    def route_loop(self, path, query):
        hop = int(path.rsplit("/", 1)[-1]) if path.count("/") > 1 else 0
        self.send_response(307)
        self.send_header("Location", f"/loop/{hop + 1}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def route_stall(self, path, query):
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        self.wfile.flush()
        time.sleep(2)

    def route_drip(self, path, query):
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        for byte in PNG[:40]:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(0.05)

    def route_big_declared(self, path, query):
        self.reply(PNG, length=CAP_BYTES + 1)

    def route_big_undeclared(self, path, query):
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()  # HTTP/1.0 without a length: the body runs until the server closes
        self.wfile.write(PNG)
        for _ in range(2 * CAP_BYTES // 4096):
            self.wfile.write(bytes(4096))

    def route_lying_length(self, path, query):
        self.reply(PNG + bytes(2 * CAP_BYTES), length=100)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hosts: list[str]

    def handle_error(self, request, client_address):
        pass  # a client that hung up on a slow route is the point of that test


@dataclass
class Servers:
    private: _Server
    public: _Server | None
    threads: list[threading.Thread] = field(default_factory=list)

    def url(self, path: str, *, public: bool = False) -> str:
        server = self.public if public else self.private
        if server is None:
            pytest.skip(f"{PUBLIC_HOST} cannot be bound on this machine")
        return f"http://{PUBLIC_HOST if public else '127.0.0.1'}:{server.server_port}{path}"


def _serve(host: str) -> _Server:
    server = _Server((host, 0), _Handler)
    server.hosts = []
    return server


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    private = _serve("127.0.0.1")
    try:
        public: _Server | None = _serve(PUBLIC_HOST)
    except OSError:
        public = None  # not every OS routes all of 127.0.0.0/8 to loopback
    running = Servers(private, public)
    for server in filter(None, (private, public)):
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        running.threads.append(thread)
    yield running
    for server in filter(None, (private, public)):
        server.shutdown()
        server.server_close()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "size"),
    [
        pytest.param("/image.png", (48, 32), id="image"),
        pytest.param("/mislabelled", (48, 32), id="content-type-ignored"),
        pytest.param("/redirect?to=/image.png", (48, 32), id="relative-redirect"),
    ],
)
async def test_fetch_returns_the_image_when_the_link_serves_one(servers, path, size):
    source = await fetch_link(servers.url(path), allow_private=True)
    assert (source.width, source.height) == size


@pytest.mark.anyio
async def test_fetch_follows_an_absolute_redirect_to_another_server(servers):
    target = servers.url("/image.png")
    source = await fetch_link(servers.url(f"/redirect?to={target}"), allow_private=True)
    assert source.data == PNG


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "options", "reason", "message"),
    [
        pytest.param(
            "/loop", {"max_redirects": 3}, "too_many_redirects", "more than 3 times", id="loop"
        ),
        pytest.param(
            "/stall", {"read_timeout_s": 0.3}, "timeout", "within 0.3 seconds", id="stall"
        ),
        pytest.param(
            "/drip", {"total_timeout_s": 0.5}, "timeout", "more than 0.5 seconds", id="drip"
        ),
        pytest.param("/big-declared", {}, "too_large", "64 KB", id="content-length-over-cap"),
        pytest.param("/big-undeclared", {}, "too_large", "64 KB", id="streamed-over-cap"),
        pytest.param("/lying-length", {}, "truncated", "cut off", id="lying-content-length"),
        pytest.param("/html-as-png", {}, "html", "is HTML, not an image", id="html-served-as-png"),
        pytest.param("/missing", {}, "http_status", "404 Not Found", id="not-found"),
        pytest.param("/redirect?to=file:///etc/passwd", {}, "bad_url", "http://", id="to-file"),
    ],
)
async def test_fetch_refuses_plainly_when_the_link_misbehaves(
    servers, path, options, reason, message
):
    started = time.monotonic()
    with pytest.raises(LinkError, match=message) as caught:
        await fetch_link(servers.url(path), allow_private=True, max_bytes=CAP_BYTES, **options)
    assert caught.value.reason == reason
    assert isinstance(caught.value, ImageError)
    assert time.monotonic() - started < 5  # a hang guard, not a performance assertion


@pytest.mark.anyio
@pytest.mark.parametrize(
    "url",
    [
        pytest.param("ftp://example.com/a.png", id="ftp"),
        pytest.param("not a link", id="words"),
        pytest.param("http:///a.png", id="no-host"),
    ],
)
async def test_fetch_refuses_when_the_link_is_not_a_web_address(url):
    with pytest.raises(LinkError) as caught:
        await fetch_link(url, allow_private=True)
    assert caught.value.reason == "bad_url"


@pytest.mark.anyio
async def test_fetch_refuses_when_nothing_listens_at_the_link():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(LinkError) as caught:
        await fetch_link(f"http://127.0.0.1:{port}/a.png", allow_private=True)
    assert caught.value.reason == "unreachable"


@pytest.mark.anyio
async def test_fetch_uses_the_given_client_and_leaves_it_open(servers):
    async with httpx.AsyncClient() as client:
        await fetch_link(servers.url("/image.png"), allow_private=True, http_client=client)
        assert not client.is_closed


# Hosted mode: the address guard.


@pytest.mark.anyio
@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/image.png", id="direct"),
        pytest.param("/redirect?to=/image.png", id="redirect-on-the-same-host"),
    ],
)
async def test_hosted_mode_refuses_loopback_which_local_mode_fetches(servers, path):
    url = servers.url(path)
    assert (await fetch_link(url, allow_private=True)).data == PNG
    with pytest.raises(LinkError) as caught:
        await fetch_link(url, allow_private=False)
    assert caught.value.reason == "private_address"
    assert str(caught.value) == HOSTED_LINK_FAILURE
    # Outside hosted mode the same refusal says why.
    with pytest.raises(LinkError, match="private network address"):
        await fetch_link(url, allow_private=False, generic_errors=False)


@pytest.mark.anyio
async def test_hosted_mode_refuses_a_name_that_resolves_to_loopback(servers):
    port = servers.private.server_port
    with pytest.raises(LinkError) as caught:
        await fetch_link(f"http://localhost:{port}/image.png", allow_private=False)
    assert caught.value.reason == "private_address"


@pytest.mark.anyio
async def test_hosted_mode_fetches_from_an_allowed_address(servers):
    source = await fetch_link(
        servers.url("/image.png", public=True),
        allow_private=False,
        is_allowed_address=_is_public_in_tests,
    )
    assert source.data == PNG


@pytest.mark.anyio
@pytest.mark.parametrize(
    "host", [pytest.param("127.0.0.1", id="ip"), pytest.param("localhost", id="name")]
)
async def test_hosted_mode_refuses_a_redirect_from_an_allowed_host_to_loopback(servers, host):
    private_port = servers.private.server_port
    inside = f"http://{host}:{private_port}/image.png"
    before = len(servers.private.hosts)
    with pytest.raises(LinkError) as caught:
        await fetch_link(
            servers.url(f"/redirect?to={inside}", public=True),
            allow_private=False,
            is_allowed_address=_is_public_in_tests,
        )
    assert caught.value.reason == "private_address"
    assert len(servers.private.hosts) == before  # the private server was never asked


@pytest.mark.anyio
async def test_hosted_mode_connects_to_the_checked_address_and_keeps_the_host_name(servers):
    port = servers.private.server_port
    first = socket.getaddrinfo("localhost", port, type=socket.SOCK_STREAM)[0][4][0]
    if first != "127.0.0.1":
        pytest.skip("localhost resolves to another loopback address first here")
    await fetch_link(
        f"http://localhost:{port}/image.png",
        allow_private=False,
        is_allowed_address=lambda address: address.is_loopback,
    )
    assert servers.private.hosts[-1] == f"localhost:{port}"


# Hosted mode: a failed link says nothing about the address, so the page is not a scanner.


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind((PUBLIC_HOST, 0))
        return int(probe.getsockname()[1])


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("where", "options", "reason", "detail"),
    [
        pytest.param("/missing", {}, "http_status", "404", id="404"),
        pytest.param("/loop", {"max_redirects": 2}, "too_many_redirects", "redirected", id="loop"),
        pytest.param("/stall", {"read_timeout_s": 0.3}, "timeout", "within", id="stall"),
        pytest.param("closed", {}, "unreachable", "could not be reached", id="nothing-listens"),
        pytest.param("private", {}, "private_address", "private network", id="private"),
    ],
)
async def test_hosted_mode_gives_every_failed_link_the_same_sentence(
    servers, where, options, reason, detail
):
    public = servers.url("/image.png", public=True)  # skips where 127.0.0.2 is not loopback
    url = {
        "closed": f"http://{PUBLIC_HOST}:{_closed_port()}/a.png",
        "private": servers.url("/image.png"),
    }.get(where) or public.replace("/image.png", where)
    hosted = {"allow_private": False, "is_allowed_address": _is_public_in_tests, **options}
    with pytest.raises(LinkError) as caught:
        await fetch_link(url, **hosted)
    assert caught.value.reason == reason  # kept for the log, never shown
    assert str(caught.value) == HOSTED_LINK_FAILURE
    assert detail not in str(caught.value)
    local = {"allow_private": True, **options}
    if where != "private":  # local mode says what happened
        with pytest.raises(LinkError, match=detail):
            await fetch_link(url, **local)


@pytest.mark.anyio
async def test_hosted_mode_still_says_what_is_wrong_with_an_image_it_fetched(servers):
    with pytest.raises(LinkError, match="is HTML, not an image") as caught:
        await fetch_link(
            servers.url("/html-as-png", public=True),
            allow_private=False,
            is_allowed_address=_is_public_in_tests,
        )
    assert caught.value.reason == "html"


# The address rules themselves.


@pytest.mark.parametrize(
    ("address", "public"),
    [
        pytest.param("10.1.2.3", False, id="10/8"),
        pytest.param("172.16.0.1", False, id="172.16/12-start"),
        pytest.param("172.31.255.255", False, id="172.16/12-end"),
        pytest.param("172.32.0.1", True, id="just-outside-172.16/12"),
        pytest.param("192.168.1.1", False, id="192.168/16"),
        pytest.param("127.0.0.1", False, id="127/8"),
        pytest.param("127.255.0.9", False, id="127/8-far"),
        pytest.param("169.254.169.254", False, id="metadata-v4"),
        pytest.param("100.64.0.1", False, id="100.64/10-cgnat"),
        pytest.param("0.0.0.0", False, id="0.0.0.0"),
        pytest.param("224.0.0.251", False, id="multicast-v4"),
        pytest.param("240.0.0.1", False, id="reserved-v4"),
        pytest.param("255.255.255.255", False, id="broadcast"),
        pytest.param("8.8.8.8", True, id="public-v4"),
        pytest.param("::1", False, id="::1"),
        pytest.param("::", False, id="unspecified-v6"),
        pytest.param("fc00::1", False, id="fc00::/7"),
        pytest.param("fd00:ec2::254", False, id="metadata-v6"),
        pytest.param("fe80::1", False, id="fe80::/10"),
        pytest.param("fec0::1", False, id="site-local"),
        pytest.param("ff02::1", False, id="multicast-v6"),
        pytest.param("::ffff:127.0.0.1", False, id="mapped-loopback"),
        pytest.param("::ffff:8.8.8.8", True, id="mapped-public"),
        pytest.param("2002:7f00:1::", False, id="6to4-of-loopback"),
        pytest.param("64:ff9b::a9fe:a9fe", False, id="nat64-of-metadata"),
        pytest.param("64:ff9b::808:808", True, id="nat64-of-public"),
        pytest.param("2606:4700:4700::1111", True, id="public-v6"),
        # Python's own table before 3.11.10 took these for public (review 22 F2).
        pytest.param("192.0.0.192", False, id="oracle-cloud-metadata"),
        pytest.param("192.0.0.9", False, id="192.0.0.0/24"),
        pytest.param("3fff::1", False, id="documentation-3fff::/20"),
        pytest.param("168.63.129.16", False, id="azure-wireserver"),
        pytest.param("2001:db8::1", False, id="documentation-v6"),
    ],
)
def test_address_classification(address, public):
    assert is_public_address(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(
    ("url", "public"),
    [
        pytest.param("https://example.com/cat.png", True, id="https-name"),
        pytest.param("http://8.8.8.8/cat.png", True, id="public-ip"),
        pytest.param("http://127.0.0.1:7860/cat.png", False, id="loopback-ip"),
        pytest.param("http://[::1]/cat.png", False, id="loopback-v6"),
        pytest.param("http://2130706433/cat.png", False, id="loopback-as-integer"),
        pytest.param("http://0x7f.1/cat.png", False, id="loopback-as-hex"),
        pytest.param("http://169.254.169.254/latest/meta-data", False, id="metadata"),
        pytest.param("http://localhost:8000/cat.png", False, id="localhost"),
        pytest.param("http://printer.local/scan.jpg", False, id="mdns"),
        pytest.param("https://user:secret@example.com/cat.png", False, id="credentials"),
        pytest.param("ftp://example.com/cat.png", False, id="ftp"),
        pytest.param("data:image/png;base64,AAAA", False, id="data-uri"),
        pytest.param("example.com/cat.png", False, id="no-scheme"),
        pytest.param("", False, id="empty"),
    ],
)
def test_is_public_link(url, public):
    assert is_public_link(url) is public


@pytest.mark.anyio
async def test_a_mask_link_is_read_as_its_caller_and_never_fetched_for_an_edit_refused(
    servers, sim, clean_env
):
    """An API or MCP caller's mask given as a link is read within that caller's caps: past
    their budget (or with a key RunAPI refuses) it is never fetched, let alone decoded."""
    caps = Limits(LimitSettings(visitor_budget_cents=5))
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=caps)
    a, refused = Visitor("browser:a"), Visitor("key:x", Secret("sk-made-up"))
    try:
        assert await engine.read_mask_link(servers.url("/image.png"), visitor=a) == PNG
        session = await engine.start_session(await engine.read_image(PNG, visitor=a), visitor=a)
        await engine.edit(session.session_id, EditParams(prompt="blue"), visitor=a)  # all 5¢
        before = len(servers.private.hosts)
        with pytest.raises(LimitError, match="today's share"):
            await engine.read_mask_link(servers.url("/image.png"), visitor=a)
        with pytest.raises(AuthenticationError):
            await engine.read_mask_link(servers.url("/image.png"), visitor=refused)
        assert len(servers.private.hosts) == before  # never asked
    finally:
        await engine.aclose()
