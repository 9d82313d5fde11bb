"""Start the studio: engine on its own loop, resume unfinished edits, launch Gradio."""

from __future__ import annotations

import logging
import sys
from typing import Any

from starlette.middleware import Middleware

from studio.config import Settings
from studio.ui.app import allowed_paths, create_app, css_path, page_script
from studio.ui.bridge import Bridge
from studio.ui.guard import VisitorGuard

log = logging.getLogger(__name__)
# Every long-polling edit holds one of Gradio's worker slots (gradio-notes §3).
MAX_THREADS = 100


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
        "mcp_server": mcp,
        "show_error": False,
        "quiet": True,
        # The studio keeps its own history; Gradio's run history would record inputs.
        "run_history": False,
        # Hosted: a cookie names each browser; stored images go only to their owner.
        "app_kwargs": (
            {"middleware": [Middleware(VisitorGuard, bridge=bridge)]} if settings.hosted else {}
        ),
    }


def start_studio(settings: Settings, *, mcp: bool = False) -> tuple[Any, Bridge, str]:
    """Launch without blocking; returns the Blocks, the bridge to the engine and the local URL."""
    bridge = Bridge.from_settings(settings)
    if resumed := bridge.resume_unfinished():
        log.info("Resuming %d unfinished edit(s)", resumed)
    demo = create_app(bridge, settings)
    _, url, _ = demo.launch(prevent_thread_lock=True, **launch_kwargs(settings, bridge, mcp=mcp))
    return demo, bridge, url


def serve_studio(settings: Settings, *, mcp: bool = False) -> None:
    """Run the studio until Ctrl+C."""
    demo, bridge, url = start_studio(settings, mcp=mcp)
    print(f"Kontext Studio is running at {url}", flush=True)  # noqa: T201 - the one line users need
    if mcp:
        print(f"MCP server: {url.rstrip('/')}/gradio_api/mcp/", flush=True)  # noqa: T201
    try:
        demo.block_thread()
    finally:
        demo.close()
        bridge.close()
        sys.stdout.flush()
