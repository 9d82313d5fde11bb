"""Portable sessions: a ZIP with every image and a readable `session.json`, and back again.

Imports params, history, images (its size cap) and the stdlib (no store, no network): the
engine reads and writes the store around these pure conversions. No API key, upload URL or local
path ever goes into an export. PNG images carry the instruction and model as text chunks, added and
removed as bytes, so the pixels are never re-encoded and an import gives back the exported bytes.

An import is untrusted input, whoever made it: every entry's size is capped before and while it
is read, every field is checked as a new edit would be, and a step that was queued or running when
it was exported arrives failed, without its task id: nothing of it is resumed, created or polled.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import struct
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import IO, Any, TypeGuard

from studio.history import (
    MAX_NAME_CHARS,
    REGION_KINDS,
    UNFINISHED_STATES,
    ImageRef,
    Session,
    Step,
    StepRegion,
    StepSource,
    StepState,
    new_id,
)
from studio.images import MAX_SOURCE_BYTES
from studio.params import (
    ASPECT_RATIOS,
    MODELS,
    OUTPUT_FORMATS,
    EditParams,
    ParamsError,
    file_words,
)

FORMAT_NAME = "kontext-studio-session"
FORMAT_VERSION = 1
# The one import cap (the CLI and the page import it from here): a ZIP larger than this is refused
# before it is opened. A long chain of 1 MP PNGs is about 2 MB a step.
MAX_BUNDLE_BYTES = 500 * 1024 * 1024
# What one import may hold: no more than edits could have made. 1000 steps is $50 of pro edits,
# far past a day's work; each step's text is capped as a new edit's is (params.MAX_PROMPT_CHARS),
# and all of it together at what 1000 edits of a long paragraph (1000 characters) make. Loading
# a session costs in proportion to its text, and every page of it loads it (issue 21: 4999
# steps of 4000 characters cost 23.5 MiB a load).
MAX_STEPS = 1000
MAX_TEXT_CHARS = 1_000_000
# Uncompressed caps, checked against each entry's header before it is read and again while it is
# read (a header can lie). session.json: 1000 steps with that much text fit in 8 MiB.
MAX_DOCUMENT_BYTES = 8 * 1024 * 1024
MAX_IMAGE_BYTES = MAX_SOURCE_BYTES
MAX_ENTRIES = MAX_STEPS + 16
# The bytes its central directory may take: an export's entry there is about 120 bytes (46, and
# its name). `zipfile` makes an object of each entry it lists, in Python, before anything can
# count them: a 48 MB directory of a million empty entries took 5.3 s and 459 MB a try (review 45
# F1); so its size is read from its end record first.
MAX_DIRECTORY_BYTES = MAX_ENTRIES * 512
# The error a step gets when it was queued or running at export time: it never runs again.
UNFINISHED_WHEN_EXPORTED = "unfinished when exported"
# Sanity bounds for imported values. List prices are 5 and 10 cents, so no real step costs $10.
MAX_STEP_COST_CENTS = 1000
MAX_ERROR_CHARS = 2000
MAX_LINK_CHARS = 4096
MAX_IMAGE_SIDE = 100_000
MAX_ELAPSED_S = 7 * 86400.0
# FLUX.1 Kontext came out in 2025: no step of a real export is older than this.
EARLIEST_TIME = datetime(2024, 1, 1, tzinfo=UTC)
# Clocks differ; a step from a day in the future is not.
CLOCK_SLACK = timedelta(days=1)
_READ_CHUNK = 1024 * 1024
_TASK_ID = re.compile(r"[A-Za-z0-9._:-]{1,200}")
_IMAGE_FORMAT = re.compile(r"[a-z0-9]{1,10}")
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
_NOT_AN_EXPORT = "This file is not a Kontext Studio session export (a ZIP)."
_DAMAGED = "The session export is damaged and cannot be read."
_TOO_MANY_ENTRIES = "The export has more files in it than any session could."


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
    """The ZIP of `session`, or of only `step_ids` (a branch: ancestors are always included),
    in memory (`stream_bundle` writes it to a file)."""
    buffer = io.BytesIO()
    stream_bundle(buffer, session, read_image, step_ids=step_ids)
    return buffer.getvalue()


def stream_bundle(
    out: IO[bytes],
    session: Session,
    read_image: Callable[[str], bytes],
    *,
    step_ids: Iterable[str] | None = None,
) -> None:
    """Write the ZIP of `session` (or of only `step_ids`) into the binary file `out`, one image
    in memory at a time, so an export costs its largest image, not the whole session.

    Unfinished steps are left out: they have no image yet, and nothing can hang off them.
    """
    wanted = set(step_ids) if step_ids is not None else set(session.steps)
    keep: list[Step] = []
    for step in session.steps.values():
        if step.step_id in wanted and step.is_finished and _ancestors_kept(session, step, wanted):
            keep.append(step)
    names: dict[str, str] = {}
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        entries = []

        def add(ref: ImageRef, step: Step, index: int, tag: str = "") -> str:
            name = names.get(ref.sha256)
            if name is None:
                name = f"images/{index:03d}-{_slug(step)}{tag}.{_suffix(ref.format)}"
                names[ref.sha256] = name
                data = read_image(ref.sha256)
                if ref.format == "png" and not tag:
                    data = _with_png_text(data, _png_text(step))
                archive.writestr(name, data)
            return name

        for index, step in enumerate(keep):
            entry = _step_json(step)
            if step.result is not None:
                entry["image"] = add(step.result, step, index)
            if step.raw_result is not None:
                entry["raw_image"] = add(step.raw_result, step, index, "-raw")
            region = step.region
            if region is not None and region.mask_sha256 is not None:
                data = read_image(region.mask_sha256)
                width, height = struct.unpack(">II", data[16:24])  # the PNG's IHDR
                mask = ImageRef(sha256=region.mask_sha256, format="png", width=width, height=height)
                entry["region"]["mask"] = add(mask, step, index, "-mask")
                entry["region"]["mask_image"] = _ref_json(mask)
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


def read_bundle(
    data: bytes, *, now: datetime, owner: str | None = None, room: int | None = None
) -> Bundle:
    """Read an export into a new session (new ids, so a ZIP can be imported twice). `room`: the
    bytes the importing visitor may still keep; an export that would unpack to more (its
    document aside) is refused before anything is inflated.

    Raises:
        BundleError: the file is not an export, is too large, or has a value a new edit could
            not have; nothing is returned in part.
    """
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"The file is larger than {MAX_BUNDLE_BYTES // 2**20} MB.")
    if _directory_bytes(data) > MAX_DIRECTORY_BYTES:
        raise BundleError(_TOO_MANY_ENTRIES)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise BundleError(_NOT_AN_EXPORT) from exc
    try:
        with archive:
            reader = _Reader(archive, room)
            document = json.loads(reader.read("session.json", MAX_DOCUMENT_BYTES, "session.json"))
            return _session_from(_document(document), reader, now=now, owner=owner)
    except BundleError:
        raise
    except json.JSONDecodeError as exc:
        raise BundleError(_NOT_AN_EXPORT) from exc
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as exc:
        raise BundleError(_DAMAGED) from exc
    except (NotImplementedError, RuntimeError, UnicodeDecodeError, RecursionError) as exc:
        # Unsupported compression, encrypted entries, text that is not UTF-8, absurd nesting.
        raise BundleError(_DAMAGED) from exc


def _directory_bytes(data: bytes) -> int:
    """The largest size the ZIP `data`'s central directory may be read at by `zipfile`, which
    takes an end record in the last 22 bytes, else the last one in the file's last 64 KB (each
    with a ZIP64 end record just before it, whose size wins): both are read here, as the bytes
    of one can hold the other's signature (review 46 F1); 0 when there is none."""
    sizes = [0]
    for at in (len(data) - 22, data.rfind(b"PK\x05\x06", max(0, len(data) - 22 - (1 << 16)))):
        if at < 0 or at + 22 > len(data) or not data.startswith(b"PK\x05\x06", at):
            continue
        sizes.append(int.from_bytes(data[at + 12 : at + 16], "little"))
        record = at - 20 - 56  # (the ZIP64 locator, 20 bytes, and before it the record, 56)
        zip64 = record >= 0 and data.startswith(b"PK\x06\x07", at - 20)
        if zip64 and data.startswith(b"PK\x06\x06", record):
            sizes.append(int.from_bytes(data[record + 40 : record + 48], "little"))
    return max(sizes)


def chain_params(bundle: Bundle) -> list[EditParams]:
    """The instructions from the origin to the exported current step, in order (for replay)."""
    return [params for params, _region, _mask in chain_steps(bundle)]


def chain_steps(bundle: Bundle) -> list[tuple[EditParams, StepRegion | None, bytes | None]]:
    """Each instruction from the origin to the exported current step, in order, with the
    region it was kept to and, for a drawn mask, the mask's bytes (for replay)."""
    chain = []
    for step in bundle.session.path():
        if step.params is None or step.kind == "origin":
            continue
        region, mask = step.region, None
        if region is not None and region.kind == "mask" and region.mask_sha256 is not None:
            image = bundle.images.get(region.mask_sha256)
            mask = image.data if image is not None else None
        chain.append((step.params, region, mask))
    return chain


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


class _Reader:
    """Reads ZIP entries with their uncompressed size capped: by the header, then while reading."""

    def __init__(self, archive: zipfile.ZipFile, room: int | None = None) -> None:
        infos = archive.infolist()
        if len(infos) > MAX_ENTRIES:
            raise BundleError(_TOO_MANY_ENTRIES)
        names = [info.filename for info in infos]
        if len(set(names)) != len(names):
            raise BundleError(_DAMAGED)
        unpacked = sum(info.file_size for info in infos)
        if unpacked > MAX_BUNDLE_BYTES:
            raise BundleError(
                f"The export would unpack to more than {MAX_BUNDLE_BYTES // 2**20} MB; "
                "it is not a session the studio made."
            )
        # What may be inflated in all (the header may lie: counted again while reading).
        self._limit = MAX_BUNDLE_BYTES
        if room is not None:
            self._limit = min(MAX_BUNDLE_BYTES, max(room, 0) + MAX_DOCUMENT_BYTES)
            if unpacked > self._limit:
                raise BundleError(
                    f"The export unpacks to {unpacked / 2**20:.0f} MB; your images on this "
                    f"studio may take only {max(room, 0) / 2**20:.0f} MB more."
                )
        self._archive = archive
        self._infos = {info.filename: info for info in infos}
        self._read_total = 0

    def read(self, name: str, cap: int, what: str) -> bytes:
        info = self._infos.get(name)
        if info is None:
            if name == "session.json":
                raise BundleError(_NOT_AN_EXPORT)
            raise BundleError(f"The export names an image ({_short(name)}) it does not contain.")
        too_large = BundleError(f"The export's {what} is larger than {cap // 2**20} MB unpacked.")
        if info.file_size > cap:
            raise too_large  # refused before a byte is inflated
        out = bytearray()
        with self._archive.open(info) as entry:
            while chunk := entry.read(_READ_CHUNK):
                out += chunk
                self._read_total += len(chunk)
                if len(out) > cap:
                    raise too_large  # the header lied
                if self._read_total > self._limit:
                    raise BundleError(_DAMAGED)
        return bytes(out)


def _document(document: Any) -> dict[str, Any]:
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise BundleError("This ZIP is not a Kontext Studio session export.")
    version = document.get("version")
    if not _is_int(version) or version < 1:
        raise BundleError(_DAMAGED)
    if version > FORMAT_VERSION:
        raise BundleError("The export was written by a newer Kontext Studio; upgrade to import it.")
    entries = document.get("steps")
    if not isinstance(entries, list) or not entries or len(entries) > MAX_STEPS:
        raise BundleError(f"The export lists no steps, or more than {MAX_STEPS}.")
    if not all(isinstance(entry, dict) for entry in entries):
        raise BundleError(_DAMAGED)
    return document


def _session_from(
    document: dict[str, Any], reader: _Reader, *, now: datetime, owner: str | None
) -> Bundle:
    entries: list[dict[str, Any]] = document["steps"]
    old_ids = [_uuid(entry.get("step_id"), "a step id") for entry in entries]
    if len(set(old_ids)) != len(old_ids):
        raise BundleError("The export lists the same step twice.")
    parents = {
        old: None if e.get("parent_id") is None else _uuid(e["parent_id"], "a parent step id")
        for old, e in zip(old_ids, entries, strict=True)
    }
    root = _check_tree(parents)
    session_id = new_id()
    ids = {old: new_id() for old in old_ids}
    by_old = dict(zip(old_ids, entries, strict=True))
    images: dict[str, BundleImage] = {}
    read: dict[str, ImageRef] = {}
    steps: dict[str, Step] = {}
    text_chars = 0
    # Parents before children, so each step can be checked against its parent's image and state.
    for number, old in enumerate(_tree_order(parents, root), start=1):
        entry = by_old[old]
        parent = steps[ids[p]] if (p := parents[old]) is not None else None

        def image(name: Any, meta: Any, number: int = number) -> ImageRef | None:
            if name is None:
                return None
            if not isinstance(name, str):
                raise _invalid(number, "its image is not named by a file name")
            if name not in read:
                raw = strip_png_text(reader.read(name, MAX_IMAGE_BYTES, "image " + _short(name)))
                read[name] = _image_ref(meta, raw, number)
                images[read[name].sha256] = BundleImage(data=raw, ref=read[name])
            return read[name]

        result = image(entry.get("image"), entry.get("result"))
        raw_result = image(entry.get("raw_image"), entry.get("raw_result"))
        region = _region(entry.get("region"), number, image)
        step = _step(entry, number, ids[old], session_id, parent, result, now=now)
        if (raw_result is not None or region is not None) and step.kind != "edit":
            raise _invalid(number, "only an edit can be kept to a region")
        if raw_result is not None and step.state is not StepState.COMPLETED:
            raise _invalid(number, "it has the model's own output but did not complete")
        step = replace(step, region=region, raw_result=raw_result)
        text_chars += _text_chars(step)
        if text_chars > MAX_TEXT_CHARS:
            raise BundleError(
                f"The export's instructions hold more than {MAX_TEXT_CHARS:,} characters in all;"
                " a session imports with at most that much text."
            )
        steps[step.step_id] = step
    ordered = {ids[old]: steps[ids[old]] for old in old_ids}  # the export's own order
    current = document.get("current_step_id")
    if current is None:
        current_id = ids[root]
    elif isinstance(current, str) and current in ids:
        current_id = ids[current]
    else:
        raise BundleError("The export's current step is not one of its steps.")
    session = Session(
        session_id=session_id,
        name=_name(document.get("name")),
        created_at=now,
        steps=ordered,
        current_step_id=current_id,
        owner=owner,
    )
    return Bundle(session=session, images=images)


def _text_chars(step: Step) -> int:
    """The text a step holds (instruction, error, link), as stored and loaded with it."""
    prompt = step.params.prompt if step.params is not None else ""
    return len(prompt) + len(step.error or "") + len(step.source.link_url or "")


def _check_tree(parents: dict[str, str | None]) -> str:
    """The one root, once every step is known to hang, through its parents, from it."""
    roots = [step for step, parent in parents.items() if parent is None]
    if len(roots) != 1 or any(p is not None and p not in parents for p in parents.values()):
        raise BundleError("The export's steps do not form one tree.")
    if len(_tree_order(parents, roots[0])) != len(parents):
        raise BundleError("The export's steps do not form one tree.")  # a cycle off the root
    return roots[0]


def _tree_order(parents: dict[str, str | None], root: str) -> list[str]:
    children: dict[str, list[str]] = {}
    for step, parent in parents.items():
        if parent is not None:
            children.setdefault(parent, []).append(step)
    order = [root]
    for step in order:  # grows while it is walked: breadth first
        order.extend(children.get(step, ()))
    return order


def _step(
    entry: dict[str, Any],
    number: int,
    step_id: str,
    session_id: str,
    parent: Step | None,
    result: ImageRef | None,
    *,
    now: datetime,
) -> Step:
    kind = entry.get("kind")
    state_value = entry.get("state")
    if state_value not in {s.value for s in StepState}:
        raise _invalid(number, "its state is not one the studio knows")
    state = StepState(state_value)
    if parent is None:
        if kind != "origin" or state is not StepState.COMPLETED:
            raise BundleError("The export's steps do not start from one original.")
        if entry.get("params") is not None or entry.get("task_id") is not None:
            raise _invalid(number, "the original has the settings of an edit")
        params = None
        source = _origin_source(entry.get("source"), result, number)
    else:
        if kind not in ("edit", "generate") or parent.state is not StepState.COMPLETED:
            raise _invalid(number, "it does not follow a finished step")
        if (kind == "edit") != (parent.result is not None):
            raise _invalid(number, "it is an edit without a source image, or the other way round")
        params = _params(entry.get("params"), editing=kind == "edit", number=number)
        sha = parent.result.sha256 if parent.result else None
        source = StepSource(kind="step" if sha else "none", image_sha256=sha)
    if parent is not None and (result is not None) != (state is StepState.COMPLETED):
        raise _invalid(number, "its image does not match its state")
    created_at = _time(entry.get("created_at"), number, now=now)
    if created_at is None:
        raise _invalid(number, "it has no creation time")
    task_id = _optional(entry.get("task_id"), number, "task id", _is_task_id)
    cost = _optional(entry.get("cost_cents"), number, "cost", _is_cost)
    elapsed = _optional(entry.get("elapsed_s"), number, "time", _is_elapsed)
    error = _optional(entry.get("error"), number, "error text", _is_error)
    submitted_at = _time(entry.get("submitted_at"), number, now=now)
    completed_at = _time(entry.get("completed_at"), number, now=now)
    if state in UNFINISHED_STATES:
        # Never resumed and never polled: an export is no proof that a task is ours to follow.
        state, task_id, error = StepState.FAILED, None, UNFINISHED_WHEN_EXPORTED
        cost, elapsed, submitted_at, completed_at = 0, None, None, None
    return Step(
        step_id=step_id,
        session_id=session_id,
        parent_id=parent.step_id if parent is not None else None,
        kind=kind,
        params=params,
        source=source,
        state=state,
        created_at=created_at,
        task_id=task_id,
        result=result,
        submitted_at=submitted_at,
        completed_at=completed_at,
        elapsed_s=float(elapsed) if elapsed is not None else None,
        cost_cents=cost,
        error=error,
    )


def _region(value: Any, number: int, image: Callable[[Any, Any], ImageRef | None]) -> Any:
    """A step's region as exported, checked; its mask (an image in the ZIP) is read too."""
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("kind") not in REGION_KINDS:
        raise _invalid(number, "its region is not one the studio draws")
    box, drawn_on = value.get("box"), value.get("drawn_on")
    if box is not None and not (
        isinstance(box, list)
        and len(box) == 4
        and all(_is_int(v) and 0 <= v <= MAX_IMAGE_SIDE for v in box)
        and box[2] > 0
        and box[3] > 0
    ):
        raise _invalid(number, "its box is not four whole numbers x, y, width and height")
    if drawn_on is not None and not (
        isinstance(drawn_on, list) and len(drawn_on) == 2 and all(_is_side(v) for v in drawn_on)
    ):
        raise _invalid(number, "its region was drawn on an image of no real size")
    kind = value["kind"]
    if (kind == "box") != (box is not None):
        raise _invalid(number, "its region is a box without one, or the other way round")
    mask = None
    if value.get("mask") is not None:
        ref = image(value["mask"], value.get("mask_image"))
        mask = ref.sha256 if ref is not None else None
    if kind == "mask" and mask is None:
        raise _invalid(number, "its mask is missing")
    return StepRegion(
        kind=kind,
        box=None if box is None else tuple(box),
        mask_sha256=mask,
        drawn_on=None if drawn_on is None else tuple(drawn_on),
    )


def _origin_source(value: Any, result: ImageRef | None, number: int) -> StepSource:
    value = value if isinstance(value, dict) else {}
    kind = value.get("kind", "upload" if result is not None else "none")
    link = value.get("link_url")
    if kind not in (("upload", "link") if result is not None else ("none",)):
        raise _invalid(number, "the original's source does not match its image")
    if link is not None and (kind != "link" or not _is_link(link)):
        raise _invalid(number, "the original's link is not a web address")
    return StepSource(
        kind=kind, image_sha256=result.sha256 if result is not None else None, link_url=link
    )


def _params(value: Any, *, editing: bool, number: int) -> EditParams:
    if not isinstance(value, dict) or any(name not in value for name in _PARAM_FIELDS):
        raise _invalid(number, "its settings are missing")
    v = {name: value[name] for name in _PARAM_FIELDS}
    # Exports from before Keep the rest have no keep_rest: off.
    v["keep_rest"] = value.get("keep_rest", False)
    checks = (
        isinstance(v["keep_rest"], bool),
        isinstance(v["prompt"], str),
        v["model"] in MODELS,
        v["aspect_ratio"] is None or v["aspect_ratio"] in ASPECT_RATIOS,
        v["output_format"] in OUTPUT_FORMATS,
        isinstance(v["enable_translation"], bool),
        isinstance(v["enable_prompt_expansion"], bool),
        _is_int(v["safety_tolerance"]),
    )
    if not all(checks):
        raise _invalid(number, "its settings are not ones the studio offers")
    try:
        return EditParams(**v).validated(editing=editing)
    except ParamsError as exc:
        raise _invalid(number, _lower_first(str(exc).rstrip("."))) from None


def _image_ref(meta: Any, data: bytes, number: int) -> ImageRef:
    """The declared format and size; the engine checks them against the decoded image."""
    if not isinstance(meta, dict):
        raise _invalid(number, "its image has no description")
    image_format, width, height = meta.get("format"), meta.get("width"), meta.get("height")
    if not isinstance(image_format, str) or not _IMAGE_FORMAT.fullmatch(image_format):
        raise _invalid(number, "its image format is not one the studio knows")
    if not (_is_side(width) and _is_side(height)):
        raise _invalid(number, "its image size is not a real size")
    return ImageRef(
        sha256=hashlib.sha256(data).hexdigest(), format=image_format, width=width, height=height
    )


def _uuid(value: Any, what: str) -> str:
    try:
        if isinstance(value, str) and str(uuid.UUID(value)) == value:
            return value
    except ValueError:
        pass
    raise BundleError(f"The export has {what} that is not a step id.")


def _name(value: Any) -> str:
    if value is None:
        return "Imported session"
    if not isinstance(value, str):
        raise BundleError("The export's session name is not text.")
    name = " ".join(value.split())
    if len(name) > MAX_NAME_CHARS:
        raise BundleError(f"The export's session name is longer than {MAX_NAME_CHARS} characters.")
    return name or "Imported session"


def _time(value: Any, number: int, *, now: datetime) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise _invalid(number, "one of its times is not a date and time with a time zone")
    moment = moment.astimezone(UTC)
    if not EARLIEST_TIME <= moment <= now + CLOCK_SLACK:
        raise _invalid(number, "one of its times is before 2024 or in the future")
    return moment


def _optional(value: Any, number: int, what: str, valid: Callable[[Any], bool]) -> Any:
    if value is not None and not valid(value):
        raise _invalid(number, f"its {what} is not a possible value")
    return value


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_side(value: object) -> TypeGuard[int]:
    return _is_int(value) and 1 <= value <= MAX_IMAGE_SIDE


def _is_cost(value: Any) -> bool:
    return _is_int(value) and 0 <= value <= MAX_STEP_COST_CENTS


def _is_elapsed(value: Any) -> bool:
    number = _is_int(value) or isinstance(value, float)
    return number and math.isfinite(value) and 0 <= value <= MAX_ELAPSED_S


def _is_error(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= MAX_ERROR_CHARS


def _is_task_id(value: Any) -> bool:
    return isinstance(value, str) and _TASK_ID.fullmatch(value) is not None


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, str)
        and len(value) <= MAX_LINK_CHARS
        and value.lower().startswith(("http://", "https://"))
    )


def _invalid(number: int, problem: str) -> BundleError:
    return BundleError(f"Step {number} of the export cannot be imported: {problem}.")


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _step_json(step: Step) -> dict[str, Any]:
    params = None
    if step.params is not None:
        params = {name: getattr(step.params, name) for name in (*_PARAM_FIELDS, "keep_rest")}
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
        entry["result"] = _ref_json(step.result)
    if step.raw_result is not None:
        entry["raw_result"] = _ref_json(step.raw_result)
    region = step.region
    if region is not None:
        entry["region"] = {
            "kind": region.kind,
            "box": list(region.box) if region.box is not None else None,
            "drawn_on": list(region.drawn_on) if region.drawn_on is not None else None,
        }
    return entry


def _ref_json(ref: ImageRef) -> dict[str, Any]:
    return {"sha256": ref.sha256, "format": ref.format, "width": ref.width, "height": ref.height}


def _ancestors_kept(session: Session, step: Step, wanted: set[str]) -> bool:
    parent_id = step.parent_id
    while parent_id is not None:
        if parent_id not in wanted or not session.steps[parent_id].is_finished:
            return False
        parent_id = session.steps[parent_id].parent_id
    return True


def _slug(step: Step) -> str:
    """A step's instruction as part of its image's name in the ZIP: its letters and digits of
    any script, with their marks, joined by hyphens (an instruction in Japanese or Arabic
    named every image of its steps "step")."""
    text = step.params.prompt if step.params else "original"
    return file_words(text.lower(), 40) or "step"


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
