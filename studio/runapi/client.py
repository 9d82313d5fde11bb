"""`RunAPIClient`: async calls to RunAPI on one shared httpx client, with retries and polling.

Imports httpx and the stdlib only (and this package); nothing else of ours.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import inspect
import itertools
import logging
import random
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpcore
import httpx

from . import policy, tls
from .errors import (
    AuthenticationError,
    InvalidRequestError,
    NetworkError,
    RunAPIError,
    TaskFailedError,
    TaskTimeoutError,
    UnexpectedResponseError,
    error_from_response,
    redact,
)
from .wire import (
    MAX_IDEMPOTENCY_KEY_CHARS,
    Balance,
    Task,
    TaskRequest,
    UploadedFile,
    image_mime_type,
)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://runapi.ai"
# Contract "A base URL ending in /v1 must work too": chat users have https://runapi.ai/v1.
_BASE_SUFFIXES = ("/api/v1", "/v1")
_TASKS_PATH = "/api/v1/flux_kontext/text_to_image"
# JSON answers are small; anything bigger than this is not RunAPI talking.
MAX_ANSWER_BYTES = 2_000_000
# Flux outputs are about one megapixel: a few MB at most as PNG.
MAX_RESULT_BYTES = 50_000_000
# The official SDK's run() waits 900 s for a task.
DEFAULT_DEADLINE_S = 900.0
# Every running edit polls on this client. httpcore's pool looks at each connection it holds
# twice for every request (for an idle one a select(), anyio's getpeername() and a count of all
# the others), and at each of them again for every request queued in it: its cost grows with the
# square of the pool. With 100 kept alive it was the studio's largest cost under 100 edits at
# once (py-spy; the README's Numbers). So the client spreads its requests over small pools, each
# request to the next pool with a connection free (`RunAPIClient._pool`), and the requests beyond
# all pools' connections wait outside them (`_Pool.slots`), where waiting costs nothing: 32
# connections in all. Pools of 2 cost 0.7 ms of CPU a task read and 2.4 ms a 1.3 MB result
# against 0.9 ms and 3.0 ms with pools of 8, 100 requests at once on loopback.
HTTP_POOLS = 16
HTTP_LIMITS = httpx.Limits(max_connections=2, max_keepalive_connections=2)
# httpcore reads an answer 64 KB at a time, while asyncio's socket transport hands over up to
# 256 KB at once: each larger piece was cut (and what was left copied) into four reads, each
# through a dozen layers of async generators and cancel scopes. A 1.3 MB result came in about
# 40 reads; in pieces as large as the transport's, about 6, for 0.6 ms less CPU (100 downloads
# at once on loopback). Only the size of a read changes (for every httpx client here).
READ_BYTES = 256 * 1024
httpcore.AsyncHTTP11Connection.READ_NUM_BYTES = max(
    httpcore.AsyncHTTP11Connection.READ_NUM_BYTES, READ_BYTES
)

PollSchedule = Callable[[str], Iterable[float]]
StatusCallback = Callable[[Task, float, float], Awaitable[None] | None]


@functools.cache
def _user_agent() -> str:
    """The installed package's version (the engine passes its own, which costs nothing; reading
    the installation's metadata took 10 to 15 ms of a CLI edit's start)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"kontext-studio/{version('kontext-studio')}"
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "kontext-studio/0"


class RunAPIClient:
    """RunAPI's Flux Kontext calls. Use as `async with RunAPIClient(api_key=...) as client:`.

    Every call retries within `max_attempts` and `max_retry_s` (see `policy.should_retry`);
    creates are retried under one `Idempotency-Key`, so a retry never starts a second task.

    Args:
        api_key: The RunAPI key; sent only in the Authorization header to `base_url`.
        base_url: The service root; a trailing `/v1` (chat clients' base URL) is removed.
        timeout_s: Read, write and pool timeout for one request.
        connect_timeout_s: Connect timeout for one request.
        max_attempts: Attempts per call, the first included.
        max_retry_s: Total seconds one call may spend, waits included, before giving up.
        poll_schedule: `model -> sleeps between reads` for `wait_for_task`
            (default: `policy.poll_delays`).
        http_client: A client to share; it is not closed by this one.
        retry_base_s: The first backoff delay (tests shorten it).
        user_agent: The User-Agent header (default: `kontext-studio/` and the installed version).
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        max_attempts: int = 5,
        max_retry_s: float = 60.0,
        poll_schedule: PollSchedule | None = None,
        http_client: httpx.AsyncClient | None = None,
        retry_base_s: float = policy.RETRY_BASE_S,
        user_agent: str | None = None,
    ) -> None:
        if not api_key or not api_key.strip():
            raise ValueError("api_key is empty")
        self._api_key = api_key.strip()
        self.base_url = _normalise_base_url(base_url)
        self._max_attempts = max(1, max_attempts)
        self._max_retry_s = max_retry_s
        self._retry_base_s = retry_base_s
        self._poll_schedule: PollSchedule = poll_schedule or policy.poll_delays
        self._timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self._owns_http = http_client is None
        clients = (
            [http_client]
            if http_client is not None
            else [
                _HTTPClient(timeout=self._timeout, limits=HTTP_LIMITS, verify=_tls())
                for _ in range(HTTP_POOLS)
            ]
        )
        self._turn = itertools.count()
        self._user_agent = user_agent or _user_agent()
        # What every request carries (the key only to RunAPI's own address); a pool of ours
        # merges them with its defaults once, where httpx's `build_request` did for every call.
        self._key_sendable = self._api_key.isascii() and self._api_key.isprintable()
        self._plain = {"User-Agent": self._user_agent}
        self._auth = {
            "Authorization": f"Bearer {self._api_key}" if self._key_sendable else "",
            "Accept": "application/json",
        }
        self._signed = {**self._plain, **self._auth}
        self._pools = [
            _Pool(client, ours=self._owns_http, plain=self._plain, signed=self._signed)
            for client in clients
        ]
        self._extensions = {"timeout": self._timeout.as_dict()}

    def __repr__(self) -> str:
        return f"RunAPIClient(base_url={self.base_url!r})"

    async def __aenter__(self) -> RunAPIClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            for pool in self._pools:
                await pool.http.aclose()

    async def create_task(
        self, request: TaskRequest, *, idempotency_key: str | None = None
    ) -> Task:
        """Start one task. Retried safely: every attempt carries the same `Idempotency-Key`.

        Args:
            request: The task; validated before anything is sent.
            idempotency_key: Makes repeats of this logical create return the first task
                (the engine passes the step id); a uuid4 is minted when None.

        Raises:
            InvalidRequestError: a bad field (before sending) or the service refused it.
            RunAPIError: any other failure, typed (see `errors`).
        """
        body = request.to_json()
        key = idempotency_key or str(uuid.uuid4())
        if len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
            raise InvalidRequestError(field_errors={"idempotency_key": ["is over 512 characters"]})
        response = await self._call(
            "POST", _TASKS_PATH, json=body, headers={"Idempotency-Key": key}
        )
        return Task.from_json(
            _json(response), default_task_id=response.headers.get("x-runapi-task-id")
        )

    async def get_task(self, task_id: str) -> Task:
        """Read a task's current state.

        Raises:
            NotFoundError: RunAPI does not know the task.
            RunAPIError: any other failure, typed.
        """
        if not task_id or not task_id.strip():
            raise InvalidRequestError(field_errors={"task_id": ["must not be blank"]})
        path = f"{_TASKS_PATH}/{quote(task_id.strip(), safe='')}"
        response = await self._call("GET", path, task_id=task_id)
        return Task.from_json(_json(response), default_task_id=task_id)

    async def wait_for_task(
        self,
        task_id: str,
        *,
        model: str,
        on_status: StatusCallback | None = None,
        deadline_s: float = DEFAULT_DEADLINE_S,
        created_at: float | None = None,
    ) -> Task:
        """Read the task on the model's poll schedule until it ends.

        The schedule's sleeps add up to the times of the reads, counted from the start of the
        wait: the time one read takes comes off the sleep before the next. A task this client
        has just created (`created_at` given) is first read after the schedule's first sleep,
        counted from the create's answer: that answer already said the task was not done. Any
        other (a resumed task may be done already) is read at once.

        Args:
            task_id: The task to wait for.
            model: Its wire model name; chooses the poll schedule.
            on_status: `cb(task, elapsed_s, missed_s)`, sync or async, called after the first
                read and whenever the status changes; `elapsed_s` is when the read that saw it
                was sent and `missed_s` when the read before it was (0: none), in seconds from
                the start of the wait: the bracket a learned schedule needs.
            deadline_s: Overall seconds to wait, reads included.
            created_at: `time.monotonic()` when the create that made this task answered.

        Returns:
            The completed task.

        Raises:
            TaskFailedError: the task ended `failed`; carries the service's message.
            TaskTimeoutError: not finished within `deadline_s`; the task may still finish.
        """
        started = time.monotonic() if created_at is None else created_at
        try:
            async with asyncio.timeout(deadline_s) as deadline:
                return await self._poll(task_id, model, on_status, started, created_at is None)
        except TimeoutError:
            if not deadline.expired():
                raise
            raise TaskTimeoutError(task_id, time.monotonic() - started) from None

    async def _poll(
        self,
        task_id: str,
        model: str,
        on_status: StatusCallback | None,
        started: float,
        read_at_once: bool,
    ) -> Task:
        delays = iter(self._poll_schedule(model))
        last_status: str | None = None
        delay = 1.0
        # Reads land at the schedule's times from the start (a slow read shortens the next
        # sleep), so the times a learned schedule is taught are on its own clock.
        read_at = started
        missed = 0.0  # when the last read that saw the task unfinished was sent
        if not read_at_once:
            delay = next(delays, delay)
            read_at = started + delay
            await asyncio.sleep(read_at - time.monotonic())
        while True:
            sent = time.monotonic()
            task = await self.get_task(task_id)
            if task.status != last_status:
                last_status = task.status
                if on_status is not None:
                    result = on_status(task, sent - started, missed)
                    if inspect.isawaitable(result):
                        await result
            if task.status == "completed":
                return task
            if task.status == "failed":
                message = redact(task.error, [self._api_key]) if task.error else None
                raise TaskFailedError(task.task_id, message)
            missed = sent - started
            delay = next(delays, delay)
            read_at = max(read_at + delay, time.monotonic())
            await asyncio.sleep(read_at - time.monotonic())

    async def upload_image(self, data: bytes, *, file_name: str = "in.png") -> UploadedFile:
        """Upload a local image as base64; use the answer's `url` as `source_image_url`.

        Raises:
            InvalidRequestError: empty data.
            ImageRejectedError: the service found it too large (413) or not an image (415).
        """
        if not data:
            raise InvalidRequestError(field_errors={"image": ["is empty"]})
        body = {
            "source": {"type": "base64", "data": base64.b64encode(data).decode("ascii")},
            "file_name": file_name,
        }
        response = await self._call("POST", "/api/v1/files", json=body)
        uploaded = UploadedFile.from_json(_json(response), now=datetime.now(UTC))
        return replace(  # what the answer leaves out, we know ourselves
            uploaded,
            size_bytes=uploaded.size_bytes or len(data),
            mime_type=uploaded.mime_type or image_mime_type(data),
            file_name=uploaded.file_name or file_name,
        )

    async def get_balance(self) -> Balance:
        """The account balance; `balance_cents` is None if the answer's shape is unknown."""
        return Balance.from_json(_json(await self._call("GET", "/api/v1/me/balance")))

    async def download_result(self, url: str, *, max_bytes: int = MAX_RESULT_BYTES) -> bytes:
        """Fetch a result image. The API key is not sent: result URLs are public CDN links.

        Raises:
            NotFoundError: the URL has expired.
            UnexpectedResponseError: larger than `max_bytes`, or not a PNG, JPEG, WebP or GIF.
        """
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError):
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            raise InvalidRequestError(field_errors={"url": ["must be an http or https URL"]})
        response = await self._send("GET", parsed, authorised=False, max_bytes=max_bytes)
        if image_mime_type(response.content) is None:
            raise UnexpectedResponseError("RunAPI's result is not a PNG, JPEG, WebP or GIF image.")
        return response.content

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        task_id: str | None = None,
    ) -> httpx.Response:
        url = httpx.URL(self.base_url + path)
        return await self._send(method, url, json=json, headers=headers, task_id=task_id)

    async def _send(
        self,
        method: str,
        url: httpx.URL,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        task_id: str | None = None,
        authorised: bool = True,
        max_bytes: int = MAX_ANSWER_BYTES,
    ) -> httpx.Response:
        """One call with retries; returns a successful, fully read answer or raises."""
        if authorised and not self._key_sendable:
            # No RunAPI key has such characters, and a header cannot carry them (httpx would
            # raise an encoding error whose message gives the key's shape away): refused unsent.
            raise AuthenticationError(task_id=task_id)
        started = time.monotonic()
        for attempt in range(1, self._max_attempts + 1):
            status: int | None = None
            retry_after_s: float | None = None
            cause: httpx.TransportError | None = None
            try:
                response = await self._attempt(
                    method, url, json, headers, max_bytes, authorised=authorised
                )
            except httpx.TransportError as exc:
                error: RunAPIError = NetworkError(task_id=task_id)
                cause, reason = exc, type(exc).__name__
            else:
                if response.is_success:
                    return response
                status = response.status_code
                error = error_from_response(response, secrets=[self._api_key], task_id=task_id)
                reason = f"status {status}"
                retry_after_s = policy.parse_retry_after(response.headers.get("retry-after"))
            # Every call we make is repeatable: reads, creates under an Idempotency-Key, uploads.
            retry = policy.should_retry(repeatable=True, status=status, error=cause)
            delay = policy.retry_delay(
                attempt,
                retry_after_s=retry_after_s,
                jitter=random.random(),
                base_s=self._retry_base_s,
            )
            out_of_time = time.monotonic() - started + delay > self._max_retry_s
            if not retry or attempt == self._max_attempts or out_of_time:
                raise error from cause
            log.debug(
                "Retrying %s %s after %s (attempt %d of %d) in %.2f s",
                method,
                url.path,
                reason,
                attempt,
                self._max_attempts,
                delay,
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    def _pool(self) -> _Pool:
        """The next pool in turn that has a connection free; the next in turn if none has."""
        turn = next(self._turn)
        for n in range(len(self._pools)):
            pool = self._pools[(turn + n) % len(self._pools)]
            if pool.has_room:
                return pool
        return self._pools[turn % len(self._pools)]

    async def _attempt(
        self,
        method: str,
        url: httpx.URL,
        json: Any,
        headers: dict[str, str] | None,
        max_bytes: int,
        *,
        authorised: bool,
    ) -> httpx.Response:
        """Send once and read the answer, refusing bodies over `max_bytes` as they stream in."""
        pool = self._pool()
        if pool.merged is None:  # a client we were given merges its own defaults, as it is now
            ours = {**self._plain, **(headers or {})}
            if authorised:
                ours |= self._auth
            request = pool.http.build_request(
                method, url, json=json, headers=ours, timeout=self._timeout
            )
        else:
            # What `AsyncClient.stream` built for every call, from the headers merged once: a
            # pool of ours has no base URL, query parameters or cookies to add.
            merged = pool.merged[authorised]
            if headers:
                merged = merged.copy()
                merged.update(headers)
                if authorised:  # (ours last, as before: a caller's header never replaces them)
                    merged.update(self._auth)
            request = httpx.Request(
                method, url, json=json, headers=merged, extensions=dict(self._extensions)
            )
        async with pool.slots:
            response = await pool.http.send(
                request,
                stream=True,
                # Only result downloads follow redirects (CDNs use them); API calls never do,
                # so the key is never offered to another host.
                follow_redirects=not authorised,
            )
            try:
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise _too_large(max_bytes)
                chunks: list[bytes] = []
                size_bytes = 0
                async for chunk in response.aiter_bytes():
                    size_bytes += len(chunk)
                    if size_bytes > max_bytes:
                        raise _too_large(max_bytes)
                    chunks.append(chunk)
            finally:
                await response.aclose()
        # A fresh, fully read Response; the body is already decoded, so drop the encoding.
        kept = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(
            response.status_code, headers=kept, content=b"".join(chunks), request=response.request
        )


@functools.cache
def _tls() -> ssl.SSLContext:
    """The certificates every pool trusts, loaded once (`tls.context`): tens of milliseconds of
    CPU for each client that makes its own (a third of a CLI edit's CPU with four pools, py-spy)."""
    return tls.context()


class _Pool:
    """One of the client's connection pools, and the turns to use it: one per connection of a
    pool of ours; a client we were given is used as its owner made it. A pool of ours keeps the
    headers of a request through it merged with its defaults (`merged[authorised]`)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        ours: bool,
        plain: dict[str, str],
        signed: dict[str, str],
    ) -> None:
        self.http = http
        self.merged: dict[bool, httpx.Headers] | None = (
            {False: _merged(http.headers, plain), True: _merged(http.headers, signed)}
            if ours
            else None
        )
        self._slots = asyncio.Semaphore(HTTP_LIMITS.max_connections or 1) if ours else None
        self.slots: contextlib.AbstractAsyncContextManager[Any] = (
            self._slots or contextlib.nullcontext()
        )

    @property
    def has_room(self) -> bool:
        """Whether a request sent now would find a connection of this pool free (a client we
        were given: always, as far as we know)."""
        return self._slots is None or not self._slots.locked()


class _Cookies(httpx.Cookies):
    """httpx's cookie store, which looks at an answer only when it sets a cookie: httpx wraps
    every answer and its request for the standard library's cookie jar (a URL parse and two
    objects), which then finds nothing to keep, as RunAPI's answers set no cookie."""

    def extract_cookies(self, response: httpx.Response) -> None:
        if any(k.lower() in _SETS_COOKIE for k, _ in response.headers.raw):
            super().extract_cookies(response)


# The headers the standard library's cookie jar reads cookies from (`CookieJar.make_cookies`).
_SETS_COOKIE = (b"set-cookie", b"set-cookie2")


class _HTTPClient(httpx.AsyncClient):
    """An `httpx.AsyncClient` whose cookie store is `_Cookies`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._jar = _Cookies(kwargs.get("cookies"))

    @property
    def cookies(self) -> httpx.Cookies:
        return self._jar

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        self._jar = _Cookies(cookies)


def _merged(defaults: httpx.Headers, ours: dict[str, str]) -> httpx.Headers:
    """A client's default headers with `ours` set over them, as httpx merges them."""
    merged = defaults.copy()
    merged.update(ours)
    return merged


def _normalise_base_url(base_url: str) -> str:
    url = base_url.strip().rstrip("/")
    for suffix in _BASE_SUFFIXES:
        if url.endswith(suffix):
            url = url[: -len(suffix)]
            break
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("base_url must be an http or https URL")
    return url


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise UnexpectedResponseError(
            "RunAPI sent an answer that is not JSON; try again later.",
            status=response.status_code,
            request_id=response.headers.get("x-request-id"),
        ) from None


def _too_large(max_bytes: int) -> UnexpectedResponseError:
    return UnexpectedResponseError(
        f"RunAPI's answer is larger than the {max_bytes / 1e6:g} MB limit; it was not downloaded."
    )
