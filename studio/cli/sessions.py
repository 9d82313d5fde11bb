"""`kontext-studio sessions list | show | export | import`: the history, without the service.

Imports `engine`, `history`, `params`, `store`, `summary` and its siblings.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from studio.bundle import MAX_BUNDLE_BYTES
from studio.cli.commands import Job, Run, read_file
from studio.cli.errors import EXIT_OK, CommandError
from studio.cli.output import short_id, slug
from studio.config import Settings
from studio.engine import StoreError
from studio.history import Session, Step
from studio.params import format_cents
from studio.summary import listed_session, session_summary, tree_step_summary


def plan_sessions(args: argparse.Namespace, _settings: Settings) -> Job:
    match args.action:
        case "list":
            return Job(_list, needs_service=False)
        case "show":
            return Job(lambda run: _show(run, args.session_id), needs_service=False)
        case "export":
            output = args.output.expanduser() if args.output else None
            if output is not None and not output.parent.is_dir():
                raise CommandError(f"The folder {output.parent} does not exist.")
            return Job(lambda run: _export(run, args.session_id, output), needs_service=False)
        case _:
            data = read_file(args.bundle, MAX_BUNDLE_BYTES, what="export")
            return Job(lambda run: _import(run, data), needs_service=False)


async def resolve(run: Run, session_id: str) -> Session:
    """The session with this id, or with the one id that starts with it (as `git` allows)."""
    try:
        return await run.engine.load_session(session_id)
    except StoreError:
        pass
    matches = [s for s in await run.engine.list_sessions() if s.session_id.startswith(session_id)]
    if not session_id.strip() or not matches:
        raise CommandError(f"There is no session {session_id!r}; 'sessions list' shows them all.")
    if len(matches) > 1:
        raise CommandError(f"{session_id!r} starts {len(matches)} session ids; give more of it.")
    return await run.engine.load_session(matches[0].session_id)


async def _list(run: Run) -> int:
    summaries = await run.engine.list_sessions()
    lines = [
        f"{s.session_id}  {s.updated_at:%Y-%m-%d %H:%M}  {_steps(s.step_count)}  "
        f"{format_cents(s.cost_cents):>7}  {s.name}{'  (damaged)' if s.damaged else ''}"
        for s in summaries
    ]
    document = {"sessions": [listed_session(s) for s in summaries]}
    run.out.result(lines or ["No sessions yet."], document)
    return EXIT_OK


async def _show(run: Run, session_id: str) -> int:
    session = await resolve(run, session_id)
    on_path = {s.step_id for s in session.path()}
    steps = [_step_json(run, s, session) for s in session.steps.values()]
    lines = [f"{session.name}  ({session.session_id}, {format_cents(session.total_cost_cents)})"]
    for step, entry in zip(session.steps.values(), steps, strict=True):
        mark = ">" if entry["current"] else ("*" if step.step_id in on_path else " ")
        seconds = f"{step.elapsed_s:.1f} s" if step.elapsed_s is not None else "-"
        what = entry["prompt"] or ("source image" if step.result else "no source")
        detail = entry["image"] or entry["error"] or ""
        lines.append(
            f"{mark} {step.step_id[:8]}  {step.kind:<8} {step.state.value:<9} "
            f"{entry['model'] or '-':<4} {seconds:>7}  {what}  {detail}".rstrip()
        )
    document = session_summary(session, steps)
    run.out.result(lines, document)
    return EXIT_OK


async def _export(run: Run, session_id: str, output: Path | None) -> int:
    session = await resolve(run, session_id)
    data = await run.engine.export_session(session.session_id)
    path = (
        output
        or Path.cwd()
        / f"{slug(session.name, fallback='session')}-{short_id(session.session_id)}.zip"
    )
    await asyncio.to_thread(path.write_bytes, data)
    document = {"session_id": session.session_id, "path": str(path.resolve()), "bytes": len(data)}
    run.out.result([str(path.resolve())], document)
    return EXIT_OK


async def _import(run: Run, data: bytes) -> int:
    session = await run.engine.import_session(data)
    document = {
        "session_id": session.session_id,
        "name": session.name,
        "step_count": len(session.steps) - 1,  # as `sessions list` counts: not the origin
    }
    run.out.result([session.session_id], document)
    return EXIT_OK


def _step_json(run: Run, step: Step, session: Session) -> dict[str, Any]:
    image = None
    if step.result is not None:
        path = run.engine.image_path(step.result)
        # Listed, but its file may be gone; `show` still shows the step.
        image = str(path) if path.exists() else None
    return {
        **tree_step_summary(step, session, image_url=Path(image).as_uri() if image else None),
        "image": image,
    }


def _steps(count: int) -> str:
    return f"{count:>3} step" + ("" if count == 1 else "s")
