"""Start the studio: engine on its own loop, resume unfinished edits, launch Gradio, share it."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import hmac
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse, urlunparse

import gradio.routes
from gradio import route_utils
from gradio.utils import get_upload_folder
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from studio.config import Settings
from studio.ui import assets, conn, lean, predraw
from studio.ui.app import allowed_paths, create_app, css_path, page_head, page_script
from studio.ui.assets import CompressedAssets
from studio.ui.bridge import Bridge
from studio.ui.guard import VisitorGuard
from studio.ui.signin import SignInThrottle
from studio.ui.tabs import EVENTS_AT_ONCE, TabDoor
from studio.ui.tabstate import TabStates
from studio.ui.tracelog import TracebackNet
from studio.ui.visitor import IDENTITY_WINDOW_S, DoorSettings, VisitorMiddleware

if TYPE_CHECKING:
    import gradio as gr

log = logging.getLogger(__name__)
# Every long-polling edit holds one of Gradio's worker slots (gradio-notes §3).
MAX_THREADS = 100
# Seconds to wait for a share link. Gradio allows 30 s for the tunnel request and 30 s more for
# its tunnel client, the first time after a download of that client; the studio already serves
# locally while it waits, so this only bounds how long the terminal stays silent.
SHARE_WAIT_S = 40.0
# How often the C allocator is asked to give its free memory back (`give_memory_back`).
GIVE_BACK_S = 60.0
# On every response. nosniff: a file is only ever what its Content-Type says. frame-ancestors: the
# page may be framed by itself and by Hugging Face, whose Space pages embed the app in an iframe
# from huggingface.co (the app itself is served from *.hf.space); nowhere else (no clickjacking).
# Not by *.hf.space: every Space is served there, so any Space could frame the studio under a
# page of its own.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (
        b"content-security-policy",
        b"frame-ancestors 'self' https://huggingface.co",
    ),
)


class SecurityHeaders:
    """ASGI middleware adding `SECURITY_HEADERS` to every HTTP response (unless already set)."""

    def __init__(self, app: ASGIApp, *, frame_ancestors: tuple[str, ...] = ()) -> None:
        self.app = app
        self.headers = _with_ancestors(SECURITY_HEADERS, frame_ancestors)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(n, v) for n, v in self.headers if n not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def headers_outermost(frame_ancestors: tuple[str, ...] = ()) -> None:
    """`SecurityHeaders` around Gradio's CORS middleware too: Gradio adds it at launch outside
    every middleware of ours, and it answers preflight requests (`OPTIONS`) itself, which
    came without them (review 22 F3)."""
    cors = route_utils.CustomCORSMiddleware

    def with_headers(app: ASGIApp, **kwargs: Any) -> ASGIApp:
        return SecurityHeaders(cors(app, **kwargs), frame_ancestors=frame_ancestors)

    gradio.routes.CustomCORSMiddleware = with_headers  # type: ignore[assignment,attr-defined]


def _with_ancestors(
    headers: tuple[tuple[bytes, bytes], ...], ancestors: tuple[str, ...]
) -> tuple[tuple[bytes, bytes], ...]:
    """The headers, with the host's own origins added to those that may frame the studio."""
    extra = " ".join(a for a in ancestors if a and not any(c in a for c in ";,\r\n"))
    if not extra:
        return headers
    return tuple(
        (n, v + b" " + extra.encode() if n == b"content-security-policy" else v) for n, v in headers
    )


def login_check(settings: Settings) -> Callable[[str, str], bool] | None:
    """Gradio's `auth` as a function, so the passwords stay `Secret`s and compare in constant
    time; None when no login is configured."""
    if not settings.auth:
        return None
    logins = settings.auth

    def check(user: str, password: str) -> bool:
        ok = False
        for name, secret in logins:
            # Every entry is compared, so the time taken does not say which user exists.
            same_user = hmac.compare_digest(name.encode(), user.encode())
            same_password = hmac.compare_digest(secret.reveal().encode(), password.encode())
            ok |= same_user and same_password
        return ok

    return check


def door_settings(settings: Settings, bridge: Bridge) -> DoorSettings:
    """How the hosted studio's door names visitors (`ui.visitor`)."""
    return DoorSettings(
        secret=bridge.visitor_secret(settings),
        proxy_hops=settings.proxy_hops,
        https=settings.space,
        identities_per_hour=settings.identities_per_hour,
        check_key=bridge.key_accepted,
        new_visitors=bridge.new_visitors_within(IDENTITY_WINDOW_S),
        note_new_visitor=lambda address: bridge.note_new_visitor(address, IDENTITY_WINDOW_S),
    )


def body_bytes(settings: Settings) -> int:
    """The largest request a hosted studio's visitor may send outside an upload: two images as
    data: URIs (a source and its mask; base64 takes 4 bytes for 3) and a megabyte for the rest."""
    return 2 * (settings.max_upload_bytes * 4 // 3 + 4) + 2**20


def events_at_once(settings: Settings) -> int:
    """The events a hosted studio's visitor may have waiting or running in Gradio's queue:
    their tabs' (`tabs.EVENTS_AT_ONCE`), and one for each edit they may have running (an API or
    MCP edit's event lasts as long as the edit)."""
    return EVENTS_AT_ONCE + settings.visitor_max_running


def launch_kwargs(settings: Settings, bridge: Bridge, *, mcp: bool = False) -> dict[str, Any]:
    css = css_path()
    return {
        "server_name": settings.host,
        "server_port": settings.port,
        "allowed_paths": allowed_paths(bridge),
        "max_threads": MAX_THREADS,
        "max_file_size": settings.max_upload_bytes,
        "css_paths": [css] if css.exists() else None,
        "js": page_script(),
        "head": page_head(),
        "mcp_server": mcp,
        "show_error": False,
        "quiet": True,
        # The studio keeps its own history; Gradio's run history would record inputs.
        "run_history": False,
        # Gradio's /monitoring pages show every visitor's request counts: only when asked for.
        "enable_monitoring": settings.monitoring,
        "auth": login_check(settings),
        # None lets GRADIO_ROOT_PATH apply, as Gradio documents.
        "root_path": settings.root_path or None,
        # The studio asks for a share link itself (`open_share_link`), bounded and quiet.
        "share": False,
        # Server-side rendering puts a Node proxy in front of Python (and needs Node 24+); the
        # studio gains nothing from it, and its headers come from the Python app.
        "ssr_mode": False,
        # The security headers go outside all of these, around Gradio's own CORS middleware
        # (`headers_outermost`), so even the guard's refusals carry them. Hosted, the door
        # names each request's visitor first (a request without a valid token names nobody, so
        # a cookie-less upload is refused); the guard serves the studio's image address, and
        # every file only to its owner.
        "app_kwargs": {
            "middleware": [
                *(
                    [
                        Middleware(VisitorMiddleware, door=door_settings(settings, bridge)),
                        Middleware(
                            TabDoor,
                            body_bytes=body_bytes(settings),
                            events_at_once=events_at_once(settings),
                            per_address=settings.addresses_apart,
                            events_per_s=settings.events_per_s,
                        ),
                    ]
                    if settings.hosted
                    else []
                ),
                # (Inside the door: a request for a file waits its turn there first.)
                Middleware(
                    CompressedAssets, describe=not settings.auth, proxy_hops=settings.proxy_hops
                ),
                # Sign-ins counted per browser (named by the door, when hosted), else address.
                *(
                    [
                        Middleware(
                            SignInThrottle,
                            proxy_hops=settings.proxy_hops,
                            per_address=settings.addresses_apart,
                        )
                    ]
                    if settings.auth
                    else []
                ),
                # No deep links (Gradio's snapshot of a tab's values, on disk); who each request
                # names, so that only a visitor's tab gets a record.
                Middleware(TabStates, hosted=settings.hosted),
                Middleware(
                    VisitorGuard,
                    bridge=bridge,
                    hosted=settings.hosted,
                    share_bytes=settings.visitor_upload_bytes,
                    file_bytes=settings.max_upload_bytes,
                ),
            ]
        },
    }


def start_studio(settings: Settings, *, mcp: bool = False) -> tuple[gr.Blocks, Bridge, str]:
    """Launch without blocking; returns the Blocks, the bridge to the engine and the local URL."""
    bridge = Bridge.from_settings(settings)
    if resumed := bridge.resume_unfinished():
        log.info("Resuming %d unfinished edit(s)", resumed)
    if left := bridge.uploads.clear_left_behind(Path(get_upload_folder())):
        log.info("Removed %d upload(s) an earlier run left waiting", left)
    if settings.hosted:
        # uvicorn believes `X-Forwarded-For` and `-Proto` from a loopback peer unless told
        # otherwise, and rewrites the client's address before the door sees it: a client
        # behind a forwarder that passes its headers on (`ssh -R`, socat) chose its own network
        # address, and every per-address limit with it (review 39 F2). The door reads those
        # headers itself, behind the proxies the host named (`PROXY_HOPS`).
        os.environ["FORWARDED_ALLOW_IPS"] = ""
    demo = create_app(bridge, settings)
    conn.install()  # (it changes nothing until an app is given its rules, below)
    assets.install()  # (Gradio compresses nothing; `CompressedAssets`, below, compresses)
    headers_outermost(settings.frame_ancestors)
    _, url, _ = demo.launch(prevent_thread_lock=True, **launch_kwargs(settings, bridge, mcp=mcp))
    predraw.install(demo)
    lean.quiet_summary(demo._queue, monitoring=settings.monitoring)
    lean.hold_answers(demo._queue)
    lean.wake_on_work(demo._queue)
    lean.skip_missing_imports()
    if settings.hosted:
        # Each connection must send its headers in time; one address holds so many, unless
        # every visitor comes through one proxy (a share link's tunnel, a Space's proxy).
        per_address = settings.proxy_hops == 0 and not settings.share
        conn.guard_connections(demo.server_app, per_address=per_address)
    # Everything made so far (Gradio, the app, their modules: a million objects) lives as long as
    # the process: out of the collector's sight, so its full passes look at what edits make.
    # Under 100 edits at once they were a large share of the studio's CPU (each pass a few
    # tenths of a second over every object, with the GIL held); README Numbers. No collection
    # before it: one found about 200 unreachable objects here and cost a tenth of a second of
    # every start (cold start, README Numbers).
    gc.freeze()
    return demo, bridge, url


def open_share_link(demo: gr.Blocks, *, wait_s: float = SHARE_WAIT_S) -> str | None:
    """Ask Gradio's share server for a public link to the running `demo`; None if none came.

    What `launch(share=True)` does, without its multi-line advice about a missing file (printed
    when the real cause is no internet) and with a bounded wait: the attempt runs in a daemon
    thread, and a tunnel that comes up after `wait_s` is closed again, so no link exists that
    was not announced.
    """
    from gradio import networking, tunneling

    found: list[str] = []
    gave_up = threading.Event()

    def attempt() -> None:
        try:
            url = networking.setup_tunnel(
                local_host=demo.server_name,
                local_port=demo.server_port,
                share_token=demo.share_token,
                share_server_address=demo.share_server_address,
                share_server_tls_certificate=demo.share_server_tls_certificate,
            )
        except Exception as exc:  # no internet, a firewall, the share server down
            log.debug("No share link: %r", exc)
            return
        if gave_up.is_set():
            for tunnel in list(tunneling.CURRENT_TUNNELS):
                if tunnel.url == url and tunnel.proc is not None:
                    tunnel.proc.terminate()
            return
        found.append(urlunparse((demo.share_server_protocol, *urlparse(url)[1:])))

    thread = threading.Thread(target=attempt, name="share-link", daemon=True)
    thread.start()
    thread.join(wait_s)
    gave_up.set()
    if not found:
        return None
    demo.share = True
    demo.share_url = found[0]  # type: ignore[assignment]  # Gradio declares it by its None
    return found[0]


def give_memory_back(every_s: float = GIVE_BACK_S) -> threading.Thread | None:
    """Every `every_s`, ask the C allocator to return the free memory it keeps to the system.

    glibc keeps what a burst took, in each worker thread's arena: after a minute of 11 MB
    uploads the studio stayed at 420 MB, of which `malloc_trim` gave 180 MB back (README
    Numbers). A call takes milliseconds, without the GIL. None where the C library has no
    `malloc_trim` (musl, macOS), which return memory themselves."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int

    def keep_giving() -> None:
        while True:
            time.sleep(every_s)
            trim(0)

    thread = threading.Thread(target=keep_giving, name="give-memory-back", daemon=True)
    thread.start()
    return thread


def serve_studio(settings: Settings, *, mcp: bool = False, verbose: bool = False) -> None:
    """Run the studio until Ctrl+C. Unless `verbose`, the log holds a few full tracebacks a
    minute of each kind, and counts the rest (`ui.tracelog`)."""
    demo, bridge, url = start_studio(settings, mcp=mcp)
    net = TracebackNet()
    give_memory_back()
    if not verbose:
        net.install()  # (after the launch, which configured uvicorn's log handlers)
    _say(f"Kontext Studio is running at {url}")
    if settings.share:
        if settings.space:
            _say("On a Space, the Space's own address is the link to share.")
        elif link := open_share_link(demo):
            _say(f"Share link (public, for up to a week): {link}")
        else:
            _say(
                "No share link: Gradio's share server could not be reached (no internet?); "
                f"serving locally at {url} only."
            )
    if mcp:
        _say(f"MCP server: {url.rstrip('/')}/gradio_api/mcp/")
    try:
        demo.block_thread()
    finally:
        demo.close()
        bridge.close()
        net.close()
        sys.stdout.flush()


def _say(line: str) -> None:
    print(line, flush=True)  # noqa: T201 - the few lines an operator needs
