"""Export, for the page and the API alike: the session's ZIP written by the engine (bounded, one
image in memory at a time) straight into a fresh folder of the exports folder (`ui.files`)."""

from __future__ import annotations

import asyncio
import html
from pathlib import Path

from studio.ui.bridge import Bridge, Engine, Visitor
from studio.ui.files import export_title, export_written, new_export
from studio.ui.guard import EXPORT_ROUTE
from studio.ui.visitor import Refusal

EXPORTS_FULL = (
    "The studio is holding as many exports as it can just now (for other visitors, or for "
    "those of your network address); try again in a few minutes."
)


async def export_file(
    bridge: Bridge, folder: Path, session_id: str, name: str, who: Visitor
) -> Path:
    """The ZIP of `who`'s session `session_id`, written to a new export named after `name`
    under `folder`. Raises `Refusal` when the exports folder is full of other
    visitors' young exports, and what `Engine.export_to` raises (nothing is left behind)."""
    shares = await bridge.call(Engine.export_shares, visitor=who)
    target = await asyncio.to_thread(
        new_export,
        folder,
        name,
        owner=who.owner,
        address=who.address,
        shares=shares,
        session=session_id,
    )
    if target is None:
        raise Refusal(EXPORTS_FULL)
    try:
        await bridge.call(Engine.export_to, session_id, target, visitor=who)
    except BaseException:
        await asyncio.to_thread(export_written, target, kept=False)
        raise
    await asyncio.to_thread(export_written, target, kept=True, shares=shares)
    return target


def export_address(root_path: str, path: Path) -> str:
    """The export at `path` at the studio's own address (`ui.guard.EXPORT_ROUTE`, under the
    studio's root path): a link for whoever holds it, naming no path of the server."""
    return f"{root_path.rstrip('/')}{EXPORT_ROUTE}{path.parent.name}/{path.name}"


def export_link(root_path: str, path: Path, session_id: str, contents: str) -> str:
    """The page's *Download export*: a link to the export at `path` (`export_address`) of
    session `session_id` as it was (`contents`: `tree.contents_mark`). The page shows it only
    while the tab shows that session with those contents."""
    address = html.escape(export_address(root_path, path))
    saved = html.escape(export_title(path) or path.name)
    return (
        f'<a href="{address}" download="{saved}" '
        f'data-session="{html.escape(session_id)}" data-contents="{html.escape(contents)}">'
        "Download export</a>"
    )
