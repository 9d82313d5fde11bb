"""Fetching an image by URL: the simulator's own `/files/` and `/results/` directly, others over
HTTP with a short timeout and a size cap. Imports httpx, Pillow (through `render`) and siblings.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import httpx

from studio.simulator.render import is_image

# The upload cap (the issue: 413 above 20 MB); sources are held to the same limit.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
# Seconds; a real service gives up on a slow link quickly too.
FETCH_TIMEOUT_S = 5.0
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")

# Reads one of the simulator's own paths without HTTP: bytes, or None for a 404.
OwnReader = Callable[[str], Awaitable[bytes | None]]


class FetchError(Exception):
    """The image could not be had; `str()` says why in the words a task's `error` uses."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def is_own_url(url: str, server: tuple[str, int] | None) -> bool:
    """Whether `url` points at this simulator (same port on a loopback or the bound host)."""
    if server is None:
        return False
    parts = urlsplit(url)
    host, port = server
    return parts.hostname in (*LOOPBACK_NAMES, host) and parts.port == port


async def fetch_image(
    url: str, *, server: tuple[str, int] | None, read_own: OwnReader, check_image: bool = True
) -> bytes:
    """The image at `url`, at most `MAX_IMAGE_BYTES`, checked to be an image if `check_image`.

    Raises:
        FetchError: unreachable, not found, too large or not an image.
    """
    if is_own_url(url, server):
        data = await read_own(urlsplit(url).path)
        if data is None:
            raise FetchError(f"Could not fetch the image at {url}: HTTP 404 (expired or unknown).")
    else:
        data = await _download(url)
    if len(data) > MAX_IMAGE_BYTES:
        raise FetchError("The image is larger than 20 MB.", too_large=True)
    if check_image and is_image(data) is None:
        raise FetchError(f"The file at {url} is not a supported image (PNG, JPEG, WebP or GIF).")
    return data


async def _download(url: str) -> bytes:
    timeout = httpx.Timeout(FETCH_TIMEOUT_S)
    try:
        async with (
            httpx.AsyncClient(timeout=timeout, follow_redirects=True) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise FetchError(
                    f"Could not fetch the image at {url}: HTTP {response.status_code}."
                )
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_IMAGE_BYTES:
                    raise FetchError("The image is larger than 20 MB.", too_large=True)
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise FetchError(f"Could not fetch the image at {url}: {type(exc).__name__}.") from exc
