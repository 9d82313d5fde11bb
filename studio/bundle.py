"""Portable sessions: a ZIP with every image and a readable `session.json`, and back again.

Imports params, history and the stdlib (no store, no network): the engine reads and writes the
store around these pure conversions. No API key, upload URL or local path ever goes into an export.
PNG images carry the instruction and model as text chunks, added and removed as bytes, so the
pixels are never re-encoded and an import gives back the very bytes that were exported.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from studio.history import ImageRef, Session, Step, StepSource, StepState, new_id
from studio.params import EditParams

FORMAT_NAME = "kontext-studio-session"
FORMAT_VERSION = 1
# A ZIP larger than this is refused before it is read (a long chain of 1 MP PNGs is ~2 MB a step).
MAX_BUNDLE_BYTES = 500 * 1024 * 1024
MAX_STEPS = 5000
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEXT_PREFIX = b"kontext-studio:"
_PARAM_FIELDS = (
    "prompt",
    "model",
    "aspect_ratio",
    "output_format",
    "enable_translation",
    "enable_prompt_expansion",
    "safety_tolerance",
)


class BundleError(ValueError):
    """A ZIP that is not a Kontext Studio export, or a damaged one; `str()` is one sentence."""


@dataclass(frozen=True, slots=True)
class BundleImage:
    data: bytes
    ref: ImageRef


@dataclass(frozen=True, slots=True)
class Bundle:
    """An export read back: a session with fresh ids and the images its steps name."""

    session: Session
    images: dict[str, BundleImage]


def write_bundle(
    session: Session, read_image: Callable[[str], bytes], *, step_ids: Iterable[str] | None = None
) -> bytes:
    """The ZIP of `session`, or of only `step_ids` (a branch: ancestors are always included).

    Unfinished steps are left out: they have no image yet, and nothing can hang off them.
    """
    wanted = set(step_ids) if step_ids is not None else set(session.steps)
    keep: list[Step] = []
    for step in session.steps.values():
        if step.step_id in wanted and step.is_finished and _ancestors_kept(session, step, wanted):
            keep.append(step)
    names: dict[str, str] = {}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        entries = []
        for index, step in enumerate(keep):
            entry = _step_json(step)
            if step.result is not None:
                name = names.get(step.result.sha256)
                if name is None:
                    name = f"images/{index:03d}-{_slug(step)}.{_suffix(step.result.format)}"
                    names[step.result.sha256] = name
                    data = read_image(step.result.sha256)
                    if step.result.format == "png":
                        data = _with_png_text(data, _png_text(step))
                    archive.writestr(name, data)
                entry["image"] = name
            entries.append(entry)
        current = session.current_step_id if session.current_step_id in wanted else None
        document = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "name": session.name,
            "created_at": session.created_at.isoformat(),
            "current_step_id": current,
            "total_cost_cents": sum(s.cost_cents or 0 for s in keep),
            "steps": entries,
        }
        archive.writestr("session.json", json.dumps(document, indent=2, ensure_ascii=False))
    return buffer.getvalue()


def read_bundle(data: bytes, *, now: datetime, owner: str | None = None) -> Bundle:
    """Read an export into a new session (new ids, so a ZIP can be imported twice)."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"The file is larger than {MAX_BUNDLE_BYTES // 2**20} MB.")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            document = json.loads(archive.read("session.json"))
            if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
                raise BundleError("This ZIP is not a Kontext Studio session export.")
            entries = document.get("steps")
            if not isinstance(entries, list) or not entries or len(entries) > MAX_STEPS:
                raise BundleError("The export lists no steps, or too many.")
            return _session_from(document, entries, archive, now=now, owner=owner)
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError("This file is not a Kontext Studio session export (a ZIP).") from exc
    except (TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError("The session export is damaged and cannot be read.") from exc


def chain_params(bundle: Bundle) -> list[EditParams]:
    """The instructions from the origin to the exported current step, in order (for replay)."""
    session = bundle.session
    return [s.params for s in session.path() if s.params is not None and s.kind != "origin"]


def strip_png_text(data: bytes) -> bytes:
    """The PNG without the text chunks an export added (other chunks untouched)."""
    if not data.startswith(_PNG_SIGNATURE):
        return data
    out = [_PNG_SIGNATURE]
    for kind, body, raw in _png_chunks(data):
        if kind == b"tEXt" and body.startswith(_TEXT_PREFIX):
            continue
        out.append(raw)
    return b"".join(out)


def _session_from(
    document: dict[str, Any],
    entries: list[Any],
    archive: zipfile.ZipFile,
    *,
    now: datetime,
    owner: str | None,
) -> Bundle:
    session_id = new_id()
    ids = {str(e["step_id"]): new_id() for e in entries}
    images: dict[str, BundleImage] = {}
    steps: dict[str, Step] = {}
    for entry in entries:
        result = None
        if entry.get("image"):
            raw = strip_png_text(archive.read(str(entry["image"])))
            ref = _image_ref(entry["result"], raw)
            images[ref.sha256] = BundleImage(data=raw, ref=ref)
            result = ref
        parent = entry.get("parent_id")
        if parent is not None and str(parent) not in ids:
            raise BundleError("The export's steps do not form one tree.")
        step = Step(
            step_id=ids[str(entry["step_id"])],
            session_id=session_id,
            parent_id=ids[str(parent)] if parent is not None else None,
            kind=entry["kind"],
            params=_params(entry.get("params")),
            source=StepSource(
                kind=entry.get("source", {}).get("kind", "none"),
                image_sha256=None,
                link_url=entry.get("source", {}).get("link_url"),
            ),
            state=StepState(entry["state"]),
            created_at=datetime.fromisoformat(entry["created_at"]),
            task_id=entry.get("task_id"),
            result=result,
            submitted_at=_time(entry.get("submitted_at")),
            completed_at=_time(entry.get("completed_at")),
            elapsed_s=entry.get("elapsed_s"),
            cost_cents=entry.get("cost_cents"),
            error=entry.get("error"),
        )
        steps[step.step_id] = step
    roots = [s for s in steps.values() if s.parent_id is None]
    if len(roots) != 1 or roots[0].kind != "origin":
        raise BundleError("The export's steps do not start from one original.")
    steps = {i: _with_source_image(s, steps) for i, s in steps.items()}
    current = ids.get(str(document.get("current_step_id")), roots[0].step_id)
    name = str(document.get("name") or "Imported session")[:200] or "Imported session"
    session = Session(
        session_id=session_id,
        name=name,
        created_at=now,
        steps=steps,
        current_step_id=current,
        owner=owner,
    )
    return Bundle(session=session, images=images)


def _with_source_image(step: Step, steps: dict[str, Step]) -> Step:
    if step.parent_id is None:
        source = StepSource(
            kind=step.source.kind,
            link_url=step.source.link_url,
            image_sha256=step.result.sha256 if step.result else None,
        )
    else:
        parent = steps[step.parent_id]
        sha = parent.result.sha256 if parent.result else None
        source = StepSource(kind="step" if sha else "none", image_sha256=sha)
    return Step(**{**_fields(step), "source": source})


def _fields(step: Step) -> dict[str, Any]:
    return {name: getattr(step, name) for name in Step.__dataclass_fields__}


def _step_json(step: Step) -> dict[str, Any]:
    params = None
    if step.params is not None:
        params = {name: getattr(step.params, name) for name in _PARAM_FIELDS}
    entry: dict[str, Any] = {
        "step_id": step.step_id,
        "parent_id": step.parent_id,
        "kind": step.kind,
        "state": str(step.state),
        "params": params,
        "source": {"kind": step.source.kind, "link_url": step.source.link_url},
        "task_id": step.task_id,
        "created_at": step.created_at.isoformat(),
        "submitted_at": step.submitted_at.isoformat() if step.submitted_at else None,
        "completed_at": step.completed_at.isoformat() if step.completed_at else None,
        "elapsed_s": step.elapsed_s,
        "cost_cents": step.cost_cents,
        "error": step.error,
    }
    if step.result is not None:
        entry["result"] = {
            "sha256": step.result.sha256,
            "format": step.result.format,
            "width": step.result.width,
            "height": step.result.height,
        }
    return entry


def _params(value: Any) -> EditParams | None:
    if value is None:
        return None
    known = {k: value[k] for k in _PARAM_FIELDS if k in value}
    return EditParams(**known)


def _image_ref(meta: Any, data: bytes) -> ImageRef:
    return ImageRef(
        sha256=hashlib.sha256(data).hexdigest(),
        format=str(meta["format"]),
        width=int(meta["width"]),
        height=int(meta["height"]),
    )


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _ancestors_kept(session: Session, step: Step, wanted: set[str]) -> bool:
    parent_id = step.parent_id
    while parent_id is not None:
        if parent_id not in wanted or not session.steps[parent_id].is_finished:
            return False
        parent_id = session.steps[parent_id].parent_id
    return True


def _slug(step: Step) -> str:
    text = step.params.prompt if step.params else "original"
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "step"


def _suffix(image_format: str) -> str:
    return {"jpeg": "jpg"}.get(image_format, image_format)


def _png_text(step: Step) -> list[tuple[str, str]]:
    if step.params is None:
        return [("kind", "original")]
    return [("prompt", step.params.prompt), ("model", step.params.model)]


def _with_png_text(data: bytes, items: list[tuple[str, str]]) -> bytes:
    """Insert tEXt chunks before IEND; the image data chunks are copied as they are."""
    if not data.startswith(_PNG_SIGNATURE):
        return data
    extra = b""
    for key, value in items:
        # tEXt is Latin-1; anything else is escaped rather than dropped.
        body = _TEXT_PREFIX + key.encode() + b"\x00" + value.encode("latin-1", "backslashreplace")
        extra += _chunk(b"tEXt", body)
    out = [_PNG_SIGNATURE]
    for kind, _body, raw in _png_chunks(data):
        if kind == b"IEND":
            out.append(extra)
        out.append(raw)
    return b"".join(out)


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _png_chunks(data: bytes) -> Iterable[tuple[bytes, bytes, bytes]]:
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise BundleError("A PNG in the export is truncated.")
        yield kind, data[pos + 8 : pos + 8 + length], data[pos:end]
        pos = end
