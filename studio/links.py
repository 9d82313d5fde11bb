"""Fetching a pasted image link: timeouts, a streamed byte cap, checked redirects, address guard.

Imports httpx, `studio.images` and the standard library only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import socket
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import httpx

from studio.images import MAX_SOURCE_BYTES, ImageError, SourceImage, open_source

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# RFC 6052 NAT64 prefix: 64:ff9b::7f00:1 reaches 127.0.0.1 through a NAT64 gateway.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Never public, whatever the running Python's own table says (Python's `is_global` before
# 3.11.10 and 3.12.4 took 192.0.0.0/24, with Oracle Cloud's old metadata address 192.0.0.192,
# and the documentation range 3fff::/20 for public: review 22 F2): IANA's special-purpose
# blocks that are not globally reachable, and the cloud's addresses for its own services.
_NOT_PUBLIC = tuple(
    ipaddress.ip_network(block)
    for block in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "168.63.129.16/32",  # Azure's host services (WireServer)
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/127",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "3fff::/20",
        "5f00::/16",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
# Servers may not compress: the byte cap then counts what we hold, with no zip bomb to expand.
_HEADERS = {"Accept": "image/*", "Accept-Encoding": "identity", "User-Agent": "kontext-studio"}
_LINK_WORDS = {
    "html": "The page at that link is HTML, not an image.",
    "svg": "The link points to an SVG drawing; export it as PNG or JPEG first.",
    "not_an_image": "The file at that link is not an image the studio can read.",
}


# In hosted mode every failure to reach an image gets this one sentence: no status code, no
# "could not be reached" or "timed out", so the page cannot be used to map the host's network.
HOSTED_LINK_FAILURE = (
    "The studio could not fetch an image from that link (a shared studio fetches only public "
    "web addresses); download the image and upload it instead."
)
# The reasons that say something about the address rather than about the image at it.
_NETWORK_REASONS = frozenset(
    {
        "private_address",
        "unresolvable",
        "unreachable",
        "timeout",
        "http_status",
        "too_many_redirects",
        "network",
    }
)


class LinkError(ImageError):
    """A link that could not be fetched as an image; `str()` is one sentence for the user.

    Reasons, besides those of `ImageError`: bad_url, private_address, unresolvable, unreachable,
    timeout, http_status, too_many_redirects, network.
    """


def is_public_address(address: IPAddress) -> bool:
    """True for a globally routable unicast address; private, loopback, link-local, CGNAT,
    multicast, reserved and cloud metadata addresses (169.254.169.254, fd00:ec2::254) are not.
    IPv4 addresses embedded in IPv6 (mapped, 6to4, NAT64) are judged as the IPv4 they reach."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(address.packed[-4:])
        if embedded is not None:
            return is_public_address(embedded)
        if address.is_site_local:
            return False
    if any(address in block for block in _NOT_PUBLIC if block.version == address.version):
        return False
    return address.is_global and not (address.is_multicast or address.is_reserved)


def is_public_link(url: str) -> bool:
    """Whether RunAPI could fetch `url` itself: http(s), a host name or a public IP literal.

    Syntactic only (no DNS): names are judged later, by whoever resolves them. Links with
    credentials in them are not public, so the key-like part is never handed on.
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return False
    host = parsed.host.rstrip(".")
    if parsed.scheme not in ("http", "https") or not host or parsed.userinfo:
        return False
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return False
    literal = _ip_literal(host)
    return literal is None or is_public_address(literal)


async def fetch_link(
    url: str,
    *,
    allow_private: bool,
    max_bytes: int = MAX_SOURCE_BYTES,
    connect_timeout_s: float = 5.0,
    read_timeout_s: float = 10.0,
    total_timeout_s: float = 30.0,
    max_redirects: int = 5,
    http_client: httpx.AsyncClient | None = None,
    is_allowed_address: Callable[[IPAddress], bool] | None = None,
    generic_errors: bool | None = None,
    check: Callable[[bytes], Awaitable[SourceImage]] | None = None,
) -> SourceImage:
    """Download the image at `url` and check it as `open_source` does.

    Redirects are followed here, one hop at a time, each checked like the first. In hosted mode
    (`allow_private=False`) every host must resolve only to public addresses, and the connection
    is pinned to the address that was checked, so a second DNS answer cannot point elsewhere.

    Args:
        url: the link the user gave.
        allow_private: True in local mode, where a user may fetch from their own network.
        max_bytes: the byte cap, enforced while streaming.
        connect_timeout_s: seconds to wait for a connection.
        read_timeout_s: seconds to wait for each piece of the answer.
        total_timeout_s: seconds for the whole download, redirects included.
        max_redirects: redirects followed before giving up.
        http_client: a client to use (its redirect setting is ignored); one is made if None.
        is_allowed_address: replaces the address rule; tests use it to call one loopback
            address public. None means `is_public_address`, or anything when `allow_private`.
        generic_errors: say only `HOSTED_LINK_FAILURE` when the address fails (no status, no
            reachability); None means so in hosted mode (`allow_private=False`).
        check: how the downloaded bytes are checked (the engine bounds how many decode at
            once); None means `open_source` on a worker thread.

    Returns:
        The checked image, with the downloaded bytes as its data.

    Raises:
        LinkError: for every failure, with a reason and a plain sentence.
    """
    try:
        return await _fetch(
            url,
            allow_private=allow_private,
            max_bytes=max_bytes,
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            total_timeout_s=total_timeout_s,
            max_redirects=max_redirects,
            http_client=http_client,
            is_allowed_address=is_allowed_address,
            check=check,
        )
    except LinkError as exc:
        generic = not allow_private if generic_errors is None else generic_errors
        if generic and exc.reason in _NETWORK_REASONS:
            log.debug("link refused (%s); the visitor is told only that it failed", exc.reason)
            raise LinkError(exc.reason, HOSTED_LINK_FAILURE) from None
        raise


async def _fetch(
    url: str,
    *,
    allow_private: bool,
    max_bytes: int,
    connect_timeout_s: float,
    read_timeout_s: float,
    total_timeout_s: float,
    max_redirects: int,
    http_client: httpx.AsyncClient | None,
    is_allowed_address: Callable[[IPAddress], bool] | None,
    check: Callable[[bytes], Awaitable[SourceImage]] | None,
) -> SourceImage:
    allowed = is_allowed_address or (None if allow_private else is_public_address)
    timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
    try:
        async with asyncio.timeout(total_timeout_s), AsyncExitStack() as stack:
            client = http_client
            if client is None:
                # trust_env=False: the server's .netrc logins and proxies are not for users' links.
                client = await stack.enter_async_context(httpx.AsyncClient(trust_env=False))
            data = await _download(client, url, allowed, timeout, max_bytes, max_redirects)
    except TimeoutError:
        raise LinkError(
            "timeout", f"The image at that link took more than {total_timeout_s:g} seconds."
        ) from None
    except httpx.ConnectTimeout:
        raise LinkError(
            "timeout", f"The link's server did not answer within {connect_timeout_s:g} seconds."
        ) from None
    except httpx.TimeoutException:
        raise LinkError(
            "timeout", f"The link did not answer within {read_timeout_s:g} seconds."
        ) from None
    except httpx.ConnectError:
        raise LinkError("unreachable", "The link's server could not be reached.") from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol):
        raise _bad_url() from None
    except httpx.HTTPError as exc:
        log.debug("link download failed: %r", exc)
        raise LinkError("network", "The download from that link broke off; try again.") from None
    try:
        if check is not None:
            return await check(data)
        return await asyncio.to_thread(open_source, data, max_bytes=max_bytes)
    except ImageError as exc:
        raise LinkError(exc.reason, _LINK_WORDS.get(exc.reason, str(exc))) from None


async def _download(
    client: httpx.AsyncClient,
    url: str,
    allowed: Callable[[IPAddress], bool] | None,
    timeouts: httpx.Timeout,
    max_bytes: int,
    max_redirects: int,
) -> bytes:
    for _hop in range(max_redirects + 1):
        target = _checked_url(url)
        request = await _build_request(client, target, allowed, timeouts)
        response = await client.send(request, stream=True, follow_redirects=False)
        try:
            if response.is_redirect:
                url = str(target.join(response.headers["Location"]))
                continue
            if response.status_code != 200:
                raise LinkError(
                    "http_status",
                    f"The link answered {response.status_code} {response.reason_phrase} "
                    "instead of an image.",
                )
            return await _read_capped(response, max_bytes)
        finally:
            await response.aclose()
    raise LinkError("too_many_redirects", f"The link redirected more than {max_redirects} times.")


def _checked_url(url: str) -> httpx.URL:
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise _bad_url() from None
    if target.scheme not in ("http", "https") or not target.host:
        raise _bad_url()
    return target


async def _build_request(
    client: httpx.AsyncClient,
    target: httpx.URL,
    allowed: Callable[[IPAddress], bool] | None,
    timeouts: httpx.Timeout,
) -> httpx.Request:
    if allowed is None:
        return client.build_request("GET", target, headers=_HEADERS, timeout=timeouts)
    address = await _resolve_allowed(target, allowed)
    # Pin: connect to the address just checked, while Host and TLS (SNI, certificate) still
    # name the host, as safehttpx does; a rebinding DNS answer never gets a second look.
    return client.build_request(
        "GET",
        target.copy_with(host=str(address)),
        headers={**_HEADERS, "Host": target.netloc.decode("ascii")},
        extensions={"sni_hostname": target.host, "timeout": timeouts.as_dict()},
    )


async def _resolve_allowed(target: httpx.URL, allowed: Callable[[IPAddress], bool]) -> IPAddress:
    """Every address the host resolves to must be allowed; the first one is used."""
    addresses: list[IPAddress] = []
    if (literal := _ip_literal(target.host)) is not None:
        addresses = [literal]
    else:
        port = target.port or (443 if target.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                target.host, port, type=socket.SOCK_STREAM
            )
        except (socket.gaierror, UnicodeError):
            raise LinkError(
                "unresolvable", f"The host name {target.host} could not be found."
            ) from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses or not all(allowed(address) for address in addresses):
        raise LinkError(
            "private_address",
            "The link points to a private network address, which a shared studio may not fetch.",
        )
    return addresses[0]


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    too_large = LinkError(
        "too_large",
        f"The image at that link is over the {_size_words(max_bytes)} limit.",
    )
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large  # refused before reading a byte
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise too_large  # a missing or lying length is caught while streaming
    return bytes(body)


def _ip_literal(host: str) -> IPAddress | None:
    """`host` as an address if it is one, including the legacy forms `inet_aton` takes
    ("2130706433", "0x7f.1"), which resolvers would turn into 127.0.0.1."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def _size_words(size_bytes: int) -> str:
    if size_bytes >= 1024 * 1024:
        return f"{math.ceil(size_bytes / (1024 * 1024))} MB"
    return f"{math.ceil(size_bytes / 1024)} KB"


def _bad_url() -> LinkError:
    return LinkError("bad_url", "The link must be a web address starting with http:// or https://.")
