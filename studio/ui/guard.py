"""The studio's file guard: every file only for its owner, and the studio's image address.

An ASGI middleware in front of Gradio, behind `ui.visitor.VisitorMiddleware` (which names every
browser on a hosted studio). It guards every route of Gradio that serves a file (`FILE_ROUTES`).
It decides on the path Gradio itself will open: the route is matched with Starlette's own path
compiler (so a trailing newline, a doubled slash or a percent-encoded character means to the
guard exactly what it means to Gradio), and the target is made absolute and resolved (`..`, a
trailing slash, symbolic links) as Gradio's `file_fetch` does, before anything is decided. Then:

- a file whose name carries a content hash (a stored image, its thumbnail, a cached copy of
  either: `<sha256>.<ext>`) is served only to a visitor who owns a session holding that image;
- anything else inside the data directory is never served through Gradio;
- an upload is served only to the visitor who uploaded it; an export is a capability link (its
  folder is named by 128 random bits, and it goes after 15 minutes): whoever holds the link;
- a remote URL is never fetched for anyone.

On a hosted studio an upload (`POST /gradio_api/upload`) is kept only for a visitor the studio
knows (a cookie it issued, or an X-RunAPI-Key); its bytes count against that visitor's share of
the disk (with the images their sessions hold) until a handler has read it into the store and
removed it; one nobody used is removed after `UPLOAD_TTL_S`. Its body must keep coming, as
every other body must (`ui.tabs`): at `UPLOAD_BYTES_PER_S` on average after `UPLOAD_GRACE_S`,
and whole within `upload_read_s` of the largest file the studio takes; else it is cut, its
connection closed, and its reservation given back.

It also serves the studio's own image address, `IMAGE_ROUTE<sha256>.<ext>`: what the API and
MCP hand their callers as `image_url` and as the image itself (gradio_client asks for it through
the file route, `/gradio_api/file=<address>`: the same image). It names no path of the server,
and it is served only to
the visitor who owns the image (the same check as above: their cookie, or the X-RunAPI-Key they
called with); on a studio that is not hosted, to its one local user. Knowing a session id, a step
id, an image hash or a file URL is never enough.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from gradio.utils import get_upload_folder
from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from studio.params import split_url
from studio.ui.bridge import Bridge, Engine
from studio.ui.files import export_title, exported, in_exports
from studio.ui.visitor import REFUSED, Refusal, visitor_from

# Every route of Gradio 6 that opens a file by a path taken from the URL (gradio/routes.py:
# `file` and its older alias `file_deprecated`; both end in `route_utils.file_fetch`).
# `tests/browser/test_file_guard.py` fails if Gradio adds another.
FILE_ROUTES = ("/gradio_api/file={target:path}", "/gradio_api/file/{target:path}")
_FILE_ROUTES = tuple(compile_path(route)[0] for route in FILE_ROUTES)
# The studio's own address for a stored image (API and MCP `image_url`).
IMAGE_ROUTE = "/studio/image/"
_IMAGE_ADDRESS = compile_path(IMAGE_ROUTE + "{name}")[0]
# The studio's own address for an export (the API's and MCP's `export_session`): its folder's
# name (128 random bits) and the file's; no path of the server.
EXPORT_ROUTE = "/studio/export/"
_EXPORT_ADDRESS = compile_path(EXPORT_ROUTE + "{folder}/{name}")[0]
_UPLOAD_ROUTE = compile_path("/gradio_api/upload")[0]
# Gradio's routes a hosted studio has no use for, answered 404: screen recordings (each runs
# ffmpeg on whatever video it is sent, unbounded, for anyone), the run history (kept on the
# Hugging Face Hub) and its page, the reload stream of a studio run in development (held open
# by anyone, each woken every 50 ms), profiling, streamed inputs and outputs (the page streams
# nothing), custom components (it has none) and the queue's length and pace (neither the page
# nor gradio_client asks: it told anyone how busy the studio was, review 52 F2).
_UNUSED_ROUTES = tuple(
    compile_path(route)[0]
    for route in (
        "/gradio_api/process_recording",
        "/gradio_api/process_recording/",
        "/gradio_api/run-history/{rest:path}",
        "/gradio_api/runs",
        "/gradio_api/runs/",
        "/gradio_api/dev/{rest:path}",
        "/gradio_api/profiling/{rest:path}",
        "/gradio_api/stream/{rest:path}",
        "/gradio_api/custom_component/{rest:path}",
        "/gradio_api/queue/status",
    )
)
# Seconds an upload waits for the handler that reads it into the store (it runs at once).
UPLOAD_TTL_S = 15 * 60
# Seconds after which a spool file nobody writes to is an abandoned upload's (Gradio keeps the
# file of an upload whose client went away, or that the guard cut short, for good): it is
# removed, and until then its bytes count against its visitor's share and their address's.
SPOOL_IDLE_S = 60.0
NO_VISITOR_UPLOAD = (
    "This studio keeps an upload only for a visitor it knows: open the studio's page first "
    "(it sets a cookie), or send your X-RunAPI-Key."
)
NO_LENGTH = "This studio takes an upload only with its length (a Content-Length header)."
# An upload's body must keep coming: after its first `UPLOAD_GRACE_S`, at `UPLOAD_BYTES_PER_S`
# on average over the time the studio waits for it (the pace of every other body, `ui.tabs`),
# and be whole within `upload_read_s`.
# 100 KB/s is 0.8 Mbit/s: a phone sends faster on 3G (1 to 5 Mbit/s up) and far faster on 4G;
# the largest file the studio takes (50 MB) needs 8.6 minutes at that pace, inside the
# `UPLOAD_MOST_S` that bounds any upload. One sent a byte every 2 s under a declared megabyte
# held its connection, and that megabyte of its visitor's and address's share, for good
# (review 8 F4).
UPLOAD_GRACE_S = 4.0
UPLOAD_BYTES_PER_S = 100 * 1024
UPLOAD_MOST_S = 10 * 60.0
TOO_SLOW_UPLOAD = "The upload came in too slowly and was stopped; try again on a faster connection."
# Uploads one visitor (and all visitors from one network address) may have waiting for their
# handler or on their way at once: the page hands each to its handler at once. (A cookie piling
# up thousands of tiny ones slowed every request, each upload looking at every waiting one.)
UPLOADS_WAITING_PER_VISITOR = 16
UPLOADS_WAITING_PER_ADDRESS = 48
TOO_MANY_UPLOADS = (
    "You have many uploads waiting to be read into the studio; wait a moment, or reload the "
    "page, and try again."
)
# Seconds between two looks for uploads no handler took in time (each looks at every one);
# while any wait, one is made at least every `STALE_SWEEP_S` whether anyone uploads or not (an
# upload nobody used stayed until the next upload, review 19 F5).
STALE_LOOK_S = 5.0
STALE_SWEEP_S = 60.0
_HASH_NAME = re.compile(r"(?P<sha>[0-9a-f]{64})\.(?P<ext>[a-z0-9]{1,10})")
# ... and a visitor's own thumbnail of one (`store.thumbnail_tag`): `<sha256>.<tag>.<ext>`.
_FILE_NAME = re.compile(r"(?P<sha>[0-9a-f]{64})(?:\.[0-9a-f]{16})?\.(?P<ext>[a-z0-9]{1,10})")
_NOT_FOUND = b"Not found."


class VisitorGuard:
    """Files only for their owner; the studio's image address.

    `hosted` False: one local user, who may read every file Gradio would serve; only the image
    address is answered here.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        bridge: Bridge,
        hosted: bool = True,
        share_bytes: int | None = None,
        file_bytes: int | None = None,
    ) -> None:
        self.app = app
        self.bridge = bridge
        self.hosted = hosted
        # What each visitor may keep on disk, uploads waiting included (None: no cap).
        self.share_bytes = share_bytes
        # The largest file Gradio takes in an upload (its `max_file_size`; None: no cap).
        self.file_bytes = file_bytes
        # Uploads waiting for their handler: path -> (owner, bytes, when).
        self.book = bridge.uploads
        self.uploads = bridge.uploads.waiting
        # Uploads on their way (reserved as each starts), and uploads abandoned on the way whose
        # spool files may still be on disk until `SPOOL_IDLE_S` has passed:
        # (owner, network address, bytes, until: monotonic seconds or None while on its way).
        self.in_flight: list[tuple[str, str | None, int, float | None]] = []
        self.swept = 0.0  # when spool files were last looked at (`_sweep_spool`)
        self.looked = 0.0  # when waiting uploads were last looked at (`_forget_stale_uploads`)
        self.sweeper: asyncio.Future[None] | None = None  # while uploads wait (`_keep_looking`)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if (image := _IMAGE_ADDRESS.match(path)) is not None:
            await self._serve_image(scope, receive, send, image["name"])
            return
        if (export := _EXPORT_ADDRESS.match(path)) is not None:
            await _serve_export(scope, receive, send, export["folder"], export["name"])
            return
        target = file_target(path)
        if target is not None and (name := address_name(target)) is not None:
            # The image address an API answer gave, asked for through the file route (as
            # gradio_client fetches every file): the same image, for its owner. Nothing is
            # fetched from the address's host.
            await self._serve_image(scope, receive, send, name)
            return
        if target is not None and (parts := export_parts(target)) is not None:
            # An export's address, asked for the same way: the same export.
            await _serve_export(scope, receive, send, *parts)
            return
        if not self.hosted:
            await self.app(scope, receive, send)
            return
        if any(route.match(path) is not None for route in _UNUSED_ROUTES):
            await _not_found(send)
            return
        if _UPLOAD_ROUTE.match(path) is not None and scope.get("method") == "POST":
            await self._upload(scope, receive, send)
            return
        if target is not None:
            if not await self._may_read(Request(scope), target):
                await _not_found(send)
                return
            # Served to this asker alone: no shared cache (a CDN, a caching proxy) may keep it
            # for the next one asking for the same address.
            await self.app(scope, receive, _private(_not_forbidden(send)))
            return
        await self.app(scope, receive, send)

    async def _may_read(self, request: Request, target: str) -> bool:
        if _is_remote(target):
            return False  # the file route never fetches a remote URL on a hosted studio
        try:
            opened = await asyncio.to_thread(_as_opened, target, self.bridge.private_folders())
        except ValueError:
            # A name no file can have (a NUL in it: "embedded null byte"): answered as missing,
            # as Gradio's route would only answer it with a traceback in the log (review 8 F2).
            return False
        if opened is None:
            # Nothing there: answered as the guard answers a file it keeps from the asker (404),
            # not by Gradio ("not allowed", 403), which told anyone whether a given image was
            # stored, or where the data directory is (review 37 F1); after the same question
            # to the store as for a stored image (the answer came 0.45 ms sooner for a path
            # of no stored image: review 54 F2).
            sha = image_sha(target.rstrip("/").rpartition("/")[2])
            if sha is not None:
                with contextlib.suppress(Refusal):
                    who = visitor_from(request, hosted=True)
                    await self.bridge.call(Engine.owns_image, sha, visitor=who)
            return False
        paths, inside_store = opened
        if any(p.name.startswith(".") for p in paths):
            # No file the studio serves is hidden: the exports folder's lock (`.live`) was
            # served to anyone who had the folder's name (review 17 L2).
            return False
        if any(in_exports(p) for p in paths):
            # An export has its own address (`EXPORT_ROUTE`); the file route named the server's
            # temporary directory in its link (review 57 L2).
            return False
        if any(p.parent == _upload_root() for p in paths):
            # Gradio's own spool files (a multipart body being parsed) lie directly in its
            # upload folder; an upload it keeps is in a folder of its own.
            return False
        hashes = {sha for p in paths if (sha := image_sha(p.name)) is not None}
        if inside_store and not hashes:
            return False  # the database, the secret, anything of the store's but its images
        uploaders = {self.uploads[p][0] for p in paths if p in self.uploads}
        if not hashes and not uploaders:
            # An upload nobody waits for any more (one from before a restart, whose record
            # went with it: served to anyone who had its path, review 12 F3), or another
            # program's file in Gradio's shared upload folder: nobody's to read here.
            # Else the page's assets.
            return not any(p.is_relative_to(_upload_root()) for p in paths)
        try:
            who = visitor_from(request, hosted=True)
        except Refusal:
            return False
        if uploaders and uploaders != {who.owner}:
            return False
        for sha in hashes:
            if not await self.bridge.call(Engine.owns_image, sha, visitor=who):
                return False
        return True

    async def _upload(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Gradio's upload, for a visitor the studio knows and within their share of the disk."""
        self._forget_stale_uploads()
        if self.sweeper is None or self.sweeper.done():
            self.sweeper = asyncio.ensure_future(self._keep_looking())
        try:
            who = visitor_from(Request(scope), hosted=True)
        except Refusal:
            await refuse(send, 403, NO_VISITOR_UPLOAD)
            return
        room = None
        owner, address = who.owner, who.address
        if owner is not None and self._too_many_waiting(owner, address):
            await refuse(send, 429, TOO_MANY_UPLOADS)
            return
        reservation: tuple[str, str | None, int, float | None] | None = None
        if self.share_bytes is not None and owner is not None:
            held = await self.bridge.call(Engine.held_bytes, visitor=who)
            # Uploads waiting for their handler, and those still on their way (reserved when
            # they start, so uploads sent at once cannot all fit the same room).
            waiting = self._pending(lambda o, _: o == owner)
            room = self.share_bytes - held - waiting
            declared = Request(scope).headers.get("content-length", "")
            if not declared.isdigit():
                # Counted while streaming, a body past the room would leave Gradio's spool file
                # of it behind: its length is asked for first (browsers and clients send it).
                await refuse(send, 411, NO_LENGTH)
                return
            reserved = int(declared)
            if room <= 0 or reserved > room:
                await refuse(send, 413, _no_room(held + waiting, self.share_bytes))
                return
            # Reserved at once (no await in between): the next upload's room leaves it out.
            reservation = (owner, address, reserved, None)
            self.in_flight.append(reservation)
        completed = False
        pace = _Pace(upload_read_s(self.file_bytes))
        try:
            if reservation is not None:
                # What everyone from the address keeps, their uploads waiting or on their way
                # included (whichever identity sent them), and the disk's floor, where the
                # store keeps images and where Gradio writes uploads.
                pending = self._pending(lambda o, a: o == owner or (a is not None and a == address))
                try:
                    await self.bridge.call(
                        Engine.require_room, pending, visitor=who, also_at=_upload_root()
                    )
                except REFUSED as exc:
                    await refuse(send, 413, str(exc))
                    completed = True  # nothing was read
                    return
            completed = await self._forward_upload(scope, receive, send, room, owner, address, pace)
        finally:
            if reservation is not None:
                self.in_flight.remove(reservation)
                if not completed:
                    # Gradio leaves the spool file of an upload cut short: the bytes that came
                    # (what that file can hold, not the length declared) stay counted until
                    # the file is gone.
                    owner_, address_, size, _ = reservation
                    until = time.monotonic() + SPOOL_IDLE_S
                    kept = min(size, pace.received)
                    self.in_flight.append((owner_, address_, kept, until))
            if not completed:
                with contextlib.suppress(RuntimeError):
                    loop = asyncio.get_running_loop()
                    loop.call_later(SPOOL_IDLE_S + 1, self._sweep_spool)

    def _too_many_waiting(self, owner: str, address: str | None) -> bool:
        """Whether `owner` (or everyone from `address`) has as many uploads waiting for their
        handler or on their way as they may."""
        mine = here = 0
        for o, a in [(o, a) for o, _, _, a in self.uploads.values()] + [
            (o, a) for o, a, _, until in self.in_flight if until is None
        ]:
            mine += o == owner
            here += address is not None and a == address
        return mine >= UPLOADS_WAITING_PER_VISITOR or here >= UPLOADS_WAITING_PER_ADDRESS

    def _pending(self, counts: Callable[[str | None, str | None], bool]) -> int:
        """Bytes of uploads waiting for their handler, on their way, or abandoned on the way
        and maybe still on disk, of the owners and addresses `counts` takes."""
        self._forget_abandoned()
        waiting = sum(n for o, n, _, a in self.uploads.values() if counts(o, a))
        return waiting + sum(n for o, a, n, _ in self.in_flight if counts(o, a))

    def _forget_abandoned(self) -> None:
        """Forget the reservations of uploads abandoned on their way once their spool files can
        no longer be on disk (`SPOOL_IDLE_S`)."""
        now = time.monotonic()
        self.in_flight[:] = [r for r in self.in_flight if r[3] is None or r[3] > now]

    def _sweep_spool(self, *, unless_recent: bool = False) -> None:
        """Remove spool files nobody has written to for `SPOOL_IDLE_S`: abandoned uploads'
        (`unless_recent`: not if the last look was under a tenth of that ago)."""
        now = time.time()
        if unless_recent and now - self.swept < SPOOL_IDLE_S / 10:
            return
        self.swept = now
        cutoff = now - SPOOL_IDLE_S
        with contextlib.suppress(OSError):
            for entry in _upload_root().iterdir():
                with contextlib.suppress(OSError):
                    if entry.is_file() and entry.stat().st_mtime < cutoff:
                        entry.unlink()

    async def _forward_upload(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        room: int | None,
        owner: str | None,
        address: str | None,
        pace: _Pace,
    ) -> bool:
        """Gradio's upload, counted and paced (`pace`); whether Gradio answered it (else its
        spool file may be left behind)."""
        status = 0
        body = bytearray()

        async def counted() -> Message:
            message = await pace.next(receive)  # (`_TooSlow`: Gradio sees the upload end)
            if room is not None and pace.received > room:
                # More than the visitor has room for: Gradio sees the upload end there.
                raise _OverShare
            return message

        async def kept(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and status == 200:
                body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    # Noted before the answer goes out: a studio killed just after it left
                    # an upload nobody had noted, kept for good.
                    self._remember_uploads(bytes(body), owner, address)
            await send(message)

        try:
            await self.app(scope, counted, kept)
        except _OverShare:
            if status == 0:
                await refuse(send, 413, "The upload does not fit in your share of the disk.")
            return False
        except _TooSlow:
            if status == 0:
                # Closed after this answer: the rest of the body is not waited for.
                await refuse(send, 408, TOO_SLOW_UPLOAD, close=True)
            return False
        return status != 0

    def _remember_uploads(self, body: bytes, owner: str | None, address: str | None) -> None:
        try:
            paths = json.loads(body)
        except ValueError:
            return
        now = time.monotonic()
        for name in paths if isinstance(paths, list) else ():
            if isinstance(name, str):
                path = Path(os.path.abspath(name))
                with contextlib.suppress(OSError):
                    self.book.add(path, (owner, path.stat().st_size, now, address))

    async def _keep_looking(self) -> None:
        """Look for uploads nobody took in time every `STALE_SWEEP_S` while any wait or are on
        their way."""
        await asyncio.sleep(STALE_SWEEP_S)
        while True:
            self._forget_stale_uploads()
            self._forget_abandoned()
            if not self.uploads and not self.in_flight:
                return
            await asyncio.sleep(STALE_SWEEP_S)

    def _forget_stale_uploads(self) -> None:
        """Remove uploads no handler took within `UPLOAD_TTL_S`; forget those already gone
        (at most every `STALE_LOOK_S`); remove abandoned uploads' spool files."""
        self._sweep_spool(unless_recent=True)
        now = time.monotonic()
        if now - self.looked < STALE_LOOK_S:
            return
        self.looked = now
        cutoff = now - UPLOAD_TTL_S
        for path, (_, _, when, _) in list(self.uploads.items()):
            if when < cutoff or not path.exists():
                with contextlib.suppress(OSError):
                    path.unlink()
                    path.parent.rmdir()
                self.book.forget(str(path))

    async def _serve_image(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        """The studio's image address: the stored file, for its owner only."""
        named = _HASH_NAME.fullmatch(name)
        if named is None or scope.get("method") not in ("GET", "HEAD"):
            await _not_found(send)
            return
        try:
            who = visitor_from(Request(scope), hosted=self.hosted)
        except Refusal:
            await _not_found(send)
            return
        path = await self.bridge.call(Engine.owned_image_path, named["sha"], visitor=who)
        if path is None or path.suffix != f".{named['ext']}":
            await _not_found(send)
            return
        # (Marked for the asker's own browser, varying with what names them: the same address
        # answers its owner 200 and anyone else 404.)
        await FileResponse(path)(scope, receive, _private(send))


async def _serve_export(scope: Scope, receive: Receive, send: Send, folder: str, name: str) -> None:
    """The studio's export address: a capability link, as an export's file route always was
    (its folder is named by 128 random bits, and it goes after 15 minutes): whoever holds it."""
    if scope.get("method") not in ("GET", "HEAD"):
        await _not_found(send)
        return
    path = await asyncio.to_thread(exported, folder, name)
    if path is None:
        await _not_found(send)
        return
    response = FileResponse(
        path,
        filename=export_title(path) or name,
        media_type="application/zip",
        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
    )
    await response(scope, receive, send)


def export_parts(url: str) -> tuple[str, str] | None:
    """The folder and file names of an export address (`EXPORT_ROUTE`, under any root path and
    host) in a URL, else None."""
    tail = _after_route(url, EXPORT_ROUTE)
    folder, slash, name = (tail or "").partition("/")
    return (folder, name) if slash and "/" not in name else None


def address_name(url: str) -> str | None:
    """`<sha256>.<ext>` of an image address (`IMAGE_ROUTE`, under any root path and host) in a
    URL, else None."""
    tail = _after_route(url, IMAGE_ROUTE)
    named = _HASH_NAME.fullmatch(tail) if tail is not None else None
    return None if named is None else named.group(0)


def _after_route(url: str, route: str) -> str | None:
    """What follows the last `route` in the path of a URL with no query or fragment (an
    address the studio makes has neither), else None."""
    if not _is_remote(url):
        return None
    parts = split_url(url.strip())
    if parts.query or parts.fragment:
        return None
    at = parts.path.rfind(route)
    return parts.path[at + len(route) :] if at >= 0 else None


def image_sha(name: str) -> str | None:
    """The image a file name `<sha256>.<ext>` names (stored images and all their copies; a
    visitor's thumbnail, `<sha256>.<tag>.<ext>`)."""
    named = _FILE_NAME.fullmatch(name)
    return None if named is None else named["sha"]


def file_target(route_path: str) -> str | None:
    """The path or URL a Gradio file route would open for this request path (None: no file
    route), matched exactly as Starlette matches Gradio's routes."""
    for route in _FILE_ROUTES:
        if (match := route.match(route_path)) is not None:
            return str(match["target"])
    return None


def route_path(scope: Scope) -> str:
    """The path Starlette routes on: the request's, less the root path it is mounted under."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root) and path != root and path[len(root)] == "/":
        return path[len(root) :]
    return path


def _is_remote(target: str) -> bool:
    # Gradio treats "http://" and "https://" (any case) as a URL to fetch (client_utils).
    return target.strip().lower().startswith(("http:", "https:", "//"))


def _private(send: Send) -> Send:
    """`send`, with an answer marked for the asker's own browser only (`Cache-Control:
    private`, varying with what names the asker)."""
    return kept_for(send, b"private, max-age=3600", b"Cookie, X-RunAPI-Key")


def kept_for(send: Send, cache_control: bytes, vary: bytes) -> Send:
    """`send`, with its answer's `Cache-Control` and `Vary` replaced by these."""

    async def marked(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [
                (k, v)
                for k, v in message.get("headers", [])
                if k.lower() not in (b"cache-control", b"vary")
            ]
            headers += [(b"cache-control", cache_control), (b"vary", vary)]
            message = {**message, "headers": headers}
        await send(message)

    return marked


def _upload_root() -> Path:
    """Gradio's upload folder (GRADIO_TEMP_DIR, else the temporary directory's `gradio`)."""
    return Path(get_upload_folder()).resolve()


def _as_opened(target: str, private: list[Path]) -> tuple[tuple[Path, ...], bool] | None:
    """The file Gradio would open for `target` (the absolute path it checks, and the file that
    really is, symbolic links followed), and whether it lies in one of the `private` folders;
    None when there is no such file; ValueError for a name no file can have (a NUL in it).
    Blocking: call it in a thread."""
    absolute = Path(os.path.abspath(target))  # what gradio.utils.abspath does
    try:
        real = absolute.resolve(strict=True)
        folders = [folder.resolve() for folder in private]
    except (OSError, RuntimeError):
        return None
    paths = (absolute, real)
    return paths, any(p.is_relative_to(f) for p in paths for f in folders)


class _OverShare(Exception):
    """An upload's body went past what the visitor has room for."""


class _TooSlow(Exception):
    """An upload's body fell behind its pace, or was not whole by its deadline."""


class _Pace:
    """An upload's body as it comes, kept to its pace: after `UPLOAD_GRACE_S`, the bytes so far
    at `UPLOAD_BYTES_PER_S` over the time the studio has waited for them (its own work between
    two reads, Gradio writing what came to disk on a thread that may be busy, is not the
    client's), and the whole body within `read_s` of its start."""

    def __init__(self, read_s: float) -> None:
        self.received = 0
        self.waited_s = 0.0
        self.last = asyncio.get_running_loop().time() + read_s
        self.whole = False

    async def next(self, receive: Receive) -> Message:
        """The body's next message (`_TooSlow` once it falls behind or runs out of time)."""
        if self.whole:  # the body is in: what comes now is the client going away
            return await receive()
        loop = asyncio.get_running_loop()
        began = loop.time()
        allowed_s = max(UPLOAD_GRACE_S, self.received / UPLOAD_BYTES_PER_S) - self.waited_s
        try:
            async with asyncio.timeout_at(min(began + allowed_s, self.last)):
                message = await receive()
        except TimeoutError:
            raise _TooSlow from None
        finally:
            self.waited_s += loop.time() - began
        self.received += len(message.get("body", b""))
        self.whole = message["type"] != "http.request" or not message.get("more_body", False)
        return message


def upload_read_s(file_bytes: int | None) -> float:
    """Seconds an upload's body may take in all: what the largest file the studio takes
    (`file_bytes`) needs at `UPLOAD_BYTES_PER_S` after its grace, a quarter more for the form
    around it, at most `UPLOAD_MOST_S` (also for a studio with no cap on files)."""
    if file_bytes is None:
        return UPLOAD_MOST_S
    return min(UPLOAD_MOST_S, UPLOAD_GRACE_S + 1.25 * file_bytes / UPLOAD_BYTES_PER_S)


def _no_room(used: int, share: int) -> str:
    return (
        f"Your sessions on this studio already take {used / 2**20:.0f} MB of the "
        f"{share / 2**20:.0f} MB each visitor may keep; this upload does not fit."
    )


async def refuse(send: Send, status: int, sentence: str, *, close: bool = False) -> None:
    """Answer `sentence` as plain text (`close`: and close the connection after it, whatever
    of the request's body has not come yet)."""
    body = sentence.encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _not_forbidden(send: Send) -> Send:
    """`send`, with Gradio's "not allowed" (403, a file outside what it serves) answered as a
    file that is not there (404): a stranger could map the host's files by which was which
    (review 38 F4)."""
    refused = False

    async def answered(message: Message) -> None:
        nonlocal refused
        if message["type"] == "http.response.start" and message.get("status") == 403:
            refused = True
            await _not_found(send)
        elif not refused:
            await send(message)

    return answered


async def _not_found(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(_NOT_FOUND)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _NOT_FOUND})
