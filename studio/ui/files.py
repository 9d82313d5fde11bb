"""The page's own files outside the store: exports waiting to be downloaded, and uploads.

Exports are written into per-export folders named by 128 random bits (a link to one is a
capability: whoever holds it may download it, as with a share link), and are removed after
`EXPORT_TTL_S`, or once a visitor has more than `EXPORTS_PER_VISITOR` waiting (their oldest),
or all visitors from one network address more than `EXPORTS_PER_ADDRESS`.
At most `EXPORTS_KEPT` wait in all: past that, a new export takes the place of its own
visitor's oldest, else of another visitor's older than `EXPORT_KEPT_S`, else of the oldest
of the address holding the most (at least two more than the asker's), else it is refused with
one sentence (one visitor's clicks never push out the young export of someone holding as few).
Each running studio holds a lock on its own exports folder; a folder whose lock nobody holds
(a studio that stopped or was killed) is removed when the next studio starts.
An upload is Gradio's file until a handler has read it into the store; then it is removed
(`discard_upload`), so an image is kept once, in the store. Each upload gets a folder of its own
(`install`): Gradio names the folder by the hash of the bytes, so two visitors sending the same
photo under the same name shared one file (one answer could fail, one visitor's upload took the
other's place, and storing one removed the other's).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio
import gradio.blocks
import gradio.route_utils
import gradio.routes
import gradio_client.utils

from studio.ui import present

if TYPE_CHECKING:
    from studio.history import Session

# Seconds an export waits to be downloaded; a click on Export writes it again.
EXPORT_TTL_S = 15 * 60
# Exports kept at most at once, all visitors together (each up to bundle.MAX_BUNDLE_BYTES).
EXPORTS_KEPT = 32
# Seconds another visitor's export is kept at least, however many wait: time to fetch the link
# the page or the API gave them (review round 3 F7: five free cookies pushed out another
# visitor's export link within seconds).
EXPORT_KEPT_S = 5 * 60
# An export being written, or written less than this ago (its answer on its way, its download
# about to start), never makes room for another: ten visitors of one address exporting at once
# had the ninth remove the first while it was still being written (its answer failed).
EXPORT_YOUNG_S = 60.0
# Exports one hosted visitor may have waiting at once (the studio's own user: up to the total).
EXPORTS_PER_VISITOR = 4
# ... and all visitors from one network address together: fresh identities from one address
# cannot hold every place (a new export from an address past that takes its oldest place).
EXPORTS_PER_ADDRESS = 8
# The exports folders of every studio on this machine, in the temporary directory (which Gradio
# may serve: gradio-notes §5), and the lock that says a studio still uses one.
_EXPORTS_PREFIX = "kontext-studio-exports-"
_LIVE = ".live"
# The lock of this process's exports folders, held open while it runs.
_held: list[int] = []
# The folders of the exports this process is writing now (`new_export` to `export_written`).
_writing: set[Path] = set()
# What `new_export` noted of each export it made (by its folder): its visitor's tag, its
# address's and its session's.
_names: dict[str, tuple[str, str, str]] = {}
# The sessions deleted lately (their tags, as `_names` holds them): an export of one that was
# being written goes once written (`discard_session_files`).
_deleted: dict[str, None] = {}
DELETED_KEPT = 1000
# The fitted copies made (`fitted_name`), by file name: whose (`_tag`), and the images (their
# sha256) they were made of, so that they go with their session (`discard_session_files`).
_fitted: dict[str, tuple[str, frozenset[str]]] = {}
# What each export (its folder) is saved as (`new_export`).
_titles: dict[str, str] = {}
# This process's exports folders (`make_exports_folder`): where `exported` looks.
_made: list[Path] = []
# An export's folder and file as `new_export` names them: two tags, the session's 8 characters
# and 128 random bits; the name made a slug.
_EXPORT_FOLDER = re.compile(r"[A-Za-z0-9_-]{32}")
_EXPORT_FILE = re.compile(r"[A-Za-z0-9-]{1,60}\.zip")
# The key of `_tag`: a running studio's own (its exports folders are its own too).
_TAG_KEY = secrets.token_bytes(32)
# Where the non-hosted page keeps its named download links, and where the compare slider's
# fitted copies wait (`keep_fitted`): not exports, so neither counts among their places.
_KEEP = {"downloads", "pairs"}
# Fitted copies kept at most, each at most `EXPORT_TTL_S`: `FITTED_PER_VISITOR` of a visitor's
# (their oldest go first), `FITTED_KEPT` in all (the oldest of whoever holds the most go first:
# one visitor's many never push out another's few).
FITTED_KEPT = 64
FITTED_PER_VISITOR = 16
FITTED_NOTED = 4 * FITTED_KEPT


def make_exports_folder(parent: Path | None = None) -> Path:
    """A fresh exports folder for this studio, locked for as long as the process runs, after
    removing the folders of studios that no longer run (whose lock nobody holds)."""
    parent = Path(tempfile.gettempdir()) if parent is None else parent
    for stale in parent.glob(_EXPORTS_PREFIX + "*"):
        _remove_if_unused(stale)
    folder = Path(tempfile.mkdtemp(prefix=_EXPORTS_PREFIX, dir=parent))
    fd = os.open(folder / _LIVE, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _held.append(fd)
    _made.append(folder.resolve())  # (compared with resolved paths: `in_exports`)
    return folder


def exported(folder: str, name: str) -> Path | None:
    """The written export `folder/name` (as `new_export` named it) in one of this process's
    exports folders, else None (a name it never makes, one being written, one gone). Blocking."""
    if _EXPORT_FOLDER.fullmatch(folder) is None or _EXPORT_FILE.fullmatch(name) is None:
        return None
    for made in _made:
        target = made / folder / name
        if target.parent not in _writing and target.is_file() and not target.is_symlink():
            return target
    return None


def export_title(path: Path) -> str | None:
    """What the export at `path` (as `exported` found it) is saved as, if this process made it."""
    return _titles.get(str(path.parent))


def in_exports(path: Path) -> bool:
    """Whether `path` (resolved) is an export's, in one of this process's exports folders (not
    a fitted copy or a named download, which are kept there too: `_KEEP`)."""
    return any(
        path.is_relative_to(made) and not any(path.is_relative_to(made / k) for k in _KEEP)
        for made in _made
    )


def served_in_place(folder: Path) -> list[Path]:
    """What Gradio may serve of the exports folder `folder`, where it is: the fitted copies and
    the named downloads (`_KEEP`), never an export (served at `ui.guard.EXPORT_ROUTE`)."""
    return [folder / kept for kept in sorted(_KEEP)]


def _remove_if_unused(folder: Path) -> None:
    try:
        fd = os.open(folder / _LIVE, os.O_RDWR)
    except FileNotFoundError:
        # No lock: made before locks were (or half made): gone once it is a day old.
        with contextlib.suppress(OSError):
            if time.time() - folder.stat().st_mtime > 24 * 3600:
                shutil.rmtree(folder, ignore_errors=True)
        return
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # a running studio's
    finally:
        os.close(fd)  # (closing gives the lock back at once)
    shutil.rmtree(folder, ignore_errors=True)


def new_export(
    folder: Path,
    name: str,
    *,
    owner: str | None = None,
    address: str | None = None,
    shares: tuple[int, int] | None = None,
    session: str | None = None,
) -> Path | None:
    """Where `owner`'s new export (asked from `address`; of `session`, which, once written,
    replaces their earlier ones of it: `export_written`) is written: a file in a fresh,
    unguessable folder under `folder`, made after clearing room for it (`prune_exports`); None
    when there is none (every export waiting is another visitor's, younger than
    `EXPORT_KEPT_S`; or their address's young ones hold its share of bytes: `shares`, the
    visitor's and the address's). Blocking: call it in a thread."""
    prune_exports(folder, owner=owner, address=address, room=1)
    waiting = _exports(folder)
    here = _tag(address)
    ours = [e for _, e in waiting if _named(e)[1] == here] if address is not None else []
    if (
        len(waiting) >= EXPORTS_KEPT
        or len(ours) >= EXPORTS_PER_ADDRESS
        or (shares is not None and _bytes(ours) >= shares[1])
    ):
        return None
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[:60] or "session"
    # Whose it is, from where and of which session (to the same visitor's later exports of it)
    # is kept here, not in its name: the name is a link anyone may be handed, and tags in it
    # told two links of one visitor, one network or one session apart from others' (review 41
    # F3). 192 random bits.
    token = secrets.token_urlsafe(24)
    of = _tag(f"session:{session}") if session is not None else secrets.token_hex(4)
    target = folder / token / f"{slug}.zip"
    target.parent.mkdir(parents=True)
    _names[str(target.parent)] = (_tag(owner), _tag(address), of)
    # What it is saved as: its address keeps ASCII letters only, the saved file the session's
    # name in any script ("session.zip" for a session named in Arabic: audit 12).
    _titles[str(target.parent)] = present.export_name(name)
    _writing.add(target.parent)
    return target


def export_written(target: Path, *, kept: bool, shares: tuple[int, int] | None = None) -> None:
    """The export at `target` is written (`kept`: its young time starts now; its visitor's and
    address's older ones past their `shares` of bytes go) or was not (removed). Blocking."""
    _writing.discard(target.parent)
    if kept and _named(target.parent)[2] in _deleted:
        kept = False  # (its session was deleted while it was written)
    if kept:
        with contextlib.suppress(OSError):
            os.utime(target.parent)
        _replace_earlier(target.parent)
        if shares is not None:
            _prune_bytes(target.parent.parent, target.parent, shares)
    else:
        discard_export(target)


def _replace_earlier(new: Path) -> None:
    """Remove its visitor's earlier exports of the session `new` is an export of: each click on
    Export wrote one more whole copy (review 26 F1: five clicks each from two cookies kept 4.3
    times what their sessions held). Blocking."""
    owner_tag, _, session = _named(new)
    for _, entry in _exports(new.parent):
        tag, _, of = _named(entry)
        if tag == owner_tag and of == session and entry != new and entry not in _writing:
            shutil.rmtree(entry, ignore_errors=True)


def _prune_bytes(folder: Path, new: Path, shares: tuple[int, int]) -> None:
    """Remove the oldest exports of `new`'s visitor while theirs take more bytes than their
    share, then of their address while its take more than its share; never `new`,
    one being written, or (another visitor's) one younger than `EXPORT_YOUNG_S`: a visitor's
    exports count against their share of the disk, as all they make does (review 26 F1: five
    clicks each from two cookies kept 4.3 times what their sessions held). Blocking."""
    now = time.time()
    owner_tag, address_tag, _ = _named(new)
    # (mtime, its name's parts, its bytes, the export), the oldest first; sizes read once
    waiting = [(t, _named(e), _bytes([e]), e) for t, e in sorted(_exports(folder)) if e != new]
    new_bytes = _bytes([new])
    for part, tag, share in ((0, owner_tag, shares[0]), (1, address_tag, shares[1])):
        theirs = [w for w in waiting if w[1][part] == tag]
        held = new_bytes + sum(size for _, _, size, _ in theirs)
        for each in theirs:
            mtime, named, size, entry = each
            if held <= share:
                break
            young = mtime > now - EXPORT_YOUNG_S and named[0] != owner_tag
            if entry in _writing or young:
                continue
            held -= size
            shutil.rmtree(entry, ignore_errors=True)
            waiting.remove(each)


def _bytes(exports: list[Path]) -> int:
    """The bytes of these exports (their folders' files)."""
    total = 0
    for entry in exports:
        with contextlib.suppress(OSError):
            total += sum(f.stat().st_size for f in entry.iterdir() if f.is_file())
    return total


def discard_export(target: Path) -> None:
    """Remove an export (its folder) that was not written after all. Blocking."""
    shutil.rmtree(target.parent, ignore_errors=True)


def prune_exports(
    folder: Path,
    *,
    now: float | None = None,
    owner: str | None = None,
    address: str | None = None,
    room: int = 0,
) -> int:
    """Remove exports older than `EXPORT_TTL_S`; `owner`'s oldest past `EXPORTS_PER_VISITOR`
    and `address`'s past `EXPORTS_PER_ADDRESS` (less `room`, for new ones of theirs); and while
    more than `EXPORTS_KEPT` (less `room`) wait, `owner`'s own oldest first, then other
    visitors' oldest that are older than `EXPORT_KEPT_S`, then those of the address holding the
    most (`_from_the_heaviest`). How many went. Blocking: call it in a thread."""
    now = time.time() if now is None else now
    mine, here = _tag(owner), _tag(address)
    expired: list[tuple[float, Path]] = []
    waiting: list[tuple[float, Path]] = []
    for mtime, entry in sorted(_exports(folder)):  # the oldest first
        (expired if mtime < now - EXPORT_TTL_S else waiting).append((mtime, entry))
    own = [entry for _, entry in waiting if _named(entry)[0] == mine]
    gone = own[: max(0, len(own) - (EXPORTS_PER_VISITOR - room))] if owner is not None else []
    gone = [entry for entry in gone if entry not in _writing]
    if address is not None:
        ours = [entry for _, entry in waiting if _named(entry)[1] == here and entry not in gone]
        past = ours[: max(0, len(ours) - (EXPORTS_PER_ADDRESS - room))]
        young = {e for mtime, e in waiting if e in _writing or mtime > now - EXPORT_YOUNG_S}
        gone += [entry for entry in past if entry not in young]
    over = len(waiting) - len(gone) - (EXPORTS_KEPT - room)
    if over > 0:
        old_others = [
            entry
            for mtime, entry in waiting
            if _named(entry)[0] != mine and mtime < now - EXPORT_KEPT_S
        ]
        gone += [entry for entry in own + old_others if entry not in gone][:over]
        over = len(waiting) - len(gone) - (EXPORTS_KEPT - room)
    if over > 0 and address is not None:
        gone += _from_the_heaviest(
            [entry for _, entry in waiting if entry not in gone], _tag(address), over
        )
    gone += [entry for _, entry in expired]
    for entry in gone:
        shutil.rmtree(entry, ignore_errors=True)
    return len(gone)


def _from_the_heaviest(waiting: list[Path], here: str, over: int) -> list[Path]:
    """Up to `over` of `waiting` (the oldest first) to make room for a new export from address
    tag `here`, each the oldest of the address holding the most places while that holds at
    least two more than `here` would: a few addresses' fresh identities keeping every place
    lose places to everyone else; a visitor holding as few as the asker keeps theirs."""
    held: dict[str, list[Path]] = {}
    for entry in waiting:
        held.setdefault(_named(entry)[1], []).append(entry)
    gone: list[Path] = []
    for _ in range(over):
        heaviest = max(held, key=lambda tag: len(held[tag]), default=None)
        if heaviest is None or len(held[heaviest]) < len(held.get(here, [])) + 2:
            break
        gone.append(held[heaviest].pop(0))
    return gone


def _named(entry: Path) -> tuple[str, str, str]:
    """What `new_export` noted of an export (its folder): its visitor's tag, its address's tag
    and its session's; empty for a folder it did not make."""
    return _names.get(str(entry), ("", "", ""))


def _exports(folder: Path) -> list[tuple[float, Path]]:
    """The exports waiting in `folder` (their folders), each with when it was written; what was
    noted of those gone is forgotten."""
    found = []
    for entry in folder.iterdir() if folder.is_dir() else ():
        with contextlib.suppress(OSError):
            if entry.is_dir() and entry.name not in _KEEP:
                found.append((entry.stat().st_mtime, entry))
    here = {str(entry) for _, entry in found}
    for gone in [n for n in _names if n not in here and os.path.dirname(n) == str(folder)]:
        _names.pop(gone, None)
        _titles.pop(gone, None)
    return found


def _tag(owner: str | None) -> str:
    """Which visitor's (or address's) an export folder is, without saying who: a short MAC of
    it under a key of this process (the folders go with it), so that a link handed on names
    no one: a plain hash of an address is found by trying them all."""
    return hmac.new(_TAG_KEY, (owner or "").encode(), hashlib.sha256).hexdigest()[:8]


class UploadBook:
    """Uploads Gradio kept, waiting for the handler of the event that sends them, and whose each
    is: `ui.guard.VisitorGuard` writes it as each upload is answered; a hosted page's handlers
    read a path the page sends only when the book says it is that visitor's own upload (a path
    is no secret: another visitor's upload, a stored image or an export are all files Gradio
    would let an event name).

    With a `journal` (a folder in the studio's home), each waiting upload is also noted there,
    one small file each, until a handler takes it or it goes: uploads waiting when the studio
    was killed were otherwise left in Gradio's upload folder for good, counted in nobody's share
    (review 15, L1). The next start removes them (`clear_left_behind`)."""

    def __init__(self, journal: Path | None = None) -> None:
        # path -> (owner, bytes, when: monotonic seconds, the network address it came from)
        self.waiting: dict[Path, tuple[str | None, int, float, str | None]] = {}
        self.journal = journal

    def holds(self, name: str, owner: str | None) -> bool:
        """Whether `name` is an upload `owner` made that no handler has taken yet."""
        entry = self.waiting.get(Path(os.path.abspath(name)))
        return entry is not None and entry[0] == owner

    def add(self, path: Path, entry: tuple[str | None, int, float, str | None]) -> None:
        """Note `path` as waiting for its handler (and in the journal)."""
        self.waiting[path] = entry
        if self.journal is not None:
            with contextlib.suppress(OSError):
                self.journal.mkdir(parents=True, exist_ok=True)
                _note_of(self.journal, path).write_text(str(path), encoding="utf-8")

    def forget(self, name: str) -> None:
        """A handler took the upload `name` (or it went)."""
        path = Path(os.path.abspath(name))
        self.waiting.pop(path, None)
        if self.journal is not None:
            with contextlib.suppress(OSError):
                _note_of(self.journal, path).unlink(missing_ok=True)

    def clear_left_behind(self, upload_root: Path) -> int:
        """Remove the uploads an earlier run of the studio noted as waiting and never saw
        taken (it was killed), and their notes; how many files went. Only files inside
        `upload_root` are touched. Call at start, before any upload is taken."""
        if self.journal is None or not self.journal.is_dir():
            return 0
        root = upload_root.resolve()
        removed = 0
        for note in self.journal.iterdir():
            with contextlib.suppress(OSError, ValueError):
                left = Path(note.read_text(encoding="utf-8"))
                if left.is_absolute() and left.resolve().is_relative_to(root) and left.is_file():
                    left.unlink()
                    removed += 1
                    with contextlib.suppress(OSError):
                        left.parent.rmdir()  # its own folder (`UploadApart`), if now empty
            with contextlib.suppress(OSError):
                note.unlink()
        return removed


def _note_of(journal: Path, path: Path) -> Path:
    """The journal's note of the waiting upload `path`."""
    return journal / hashlib.sha256(str(path).encode()).hexdigest()[:32]


def fitted_name(left: str, right: str, width: int, height: int, owner: str | None = None) -> str:
    """The file name of `right`'s image fitted into `left`'s frame (the compare slider's copy),
    for `owner`: which visitor's it is (`_tag`), and a keyed MAC of the two images and the
    frame, so that a copy is made once for the same pair, and its address is known only to whom
    the studio showed it (as with an export's link; made of the images' hashes it could be named
    by anyone who knew them)."""
    made_of = f"{left}|{right}|{width}x{height}".encode()
    name = f"{_tag(owner)}-{hmac.new(_TAG_KEY, made_of, hashlib.sha256).hexdigest()[:32]}.png"
    # (The oldest noted are long gone: `FITTED_KEPT`.)
    _note(_fitted, name, (_tag(owner), frozenset((left, right))), FITTED_NOTED)
    return name


def _note(notes: dict[str, Any], key: str, value: Any, kept: int) -> None:
    """`notes[key] = value` as the newest, keeping the newest `kept`."""
    notes.pop(key, None)
    notes[key] = value
    while len(notes) > kept:
        del notes[next(iter(notes))]


def keep_fitted(folder: Path, owner: str | None = None, *, now: float | None = None) -> None:
    """Make room in `folder` for one more fitted copy of `owner`'s: those older than
    `EXPORT_TTL_S` go, then `owner`'s oldest past `FITTED_PER_VISITOR`, then, while all
    together hold `FITTED_KEPT`, the oldest of whoever holds the most (a review found one
    visitor's copies could push out another's). Blocking: call it in a thread."""
    now = time.time() if now is None else now
    by_whom: dict[str, list[tuple[float, Path]]] = {}
    for entry in folder.iterdir() if folder.is_dir() else ():
        with contextlib.suppress(OSError):
            if (mtime := entry.stat().st_mtime) < now - EXPORT_TTL_S:
                entry.unlink(missing_ok=True)
            else:
                by_whom.setdefault(entry.name.split("-", 1)[0], []).append((mtime, entry))
    for held in by_whom.values():
        held.sort()
    mine = by_whom.setdefault(_tag(owner), [])
    while len(mine) >= FITTED_PER_VISITOR:
        mine.pop(0)[1].unlink(missing_ok=True)
    while sum(map(len, by_whom.values())) >= FITTED_KEPT:
        most = max(by_whom.values(), key=lambda held: (len(held), -held[0][0] if held else 0))
        most.pop(0)[1].unlink(missing_ok=True)


_GradioUploadFile = gradio.route_utils.GradioUploadFile


class UploadApart(_GradioUploadFile):
    """Gradio's upload file, whose hash (the name of the folder Gradio keeps it in) is salted
    with 128 random bits as well as Gradio's own seed: a folder of its own for each upload."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sha.update(secrets.token_bytes(16))


def install() -> None:
    """Give every upload made from now on a folder of its own (idempotent). Gradio's multipart
    parser and upload route read this module global at every upload. And never let Gradio
    download a file an event names by URL (`_no_downloads`)."""
    if gradio.route_utils.GradioUploadFile is _GradioUploadFile:
        gradio.route_utils.GradioUploadFile = UploadApart  # type: ignore[misc]
    # (The upload route reads the name from `route_utils`; the older one from `routes`.)
    if gradio.route_utils.GradioMultiPartParser is _GradioMultiPartParser:
        gradio.route_utils.GradioMultiPartParser = FewFilesParser  # type: ignore[misc]
    if getattr(gradio.routes, "GradioMultiPartParser", None) is _GradioMultiPartParser:
        gradio.routes.GradioMultiPartParser = FewFilesParser  # type: ignore[attr-defined]
    _no_downloads()


# Files one upload request may carry. Gradio's upload route takes 1,000, and the guard's cap on
# a visitor's waiting uploads (16) was checked once per request: one request left 999 waiting
# (review 8 F8). The page sends one file a request; gradio_client one a request too.
FILES_PER_UPLOAD = 16
_GradioMultiPartParser = gradio.route_utils.GradioMultiPartParser


class FewFilesParser(_GradioMultiPartParser):
    """Gradio's multipart parser, taking at most `FILES_PER_UPLOAD` files a request (more: its
    own 400, "Too many files. Maximum number of files is 16.", before the next file is kept)."""

    def __init__(self, *args: Any, max_files: float = 1000, **kwargs: Any) -> None:
        super().__init__(*args, max_files=min(max_files, FILES_PER_UPLOAD), **kwargs)


NOT_FETCHED = "This studio does not fetch files named by a URL; upload the file instead."


def _no_downloads() -> None:
    """Gradio downloads a file an event's input names by URL into its cache, whole into memory,
    with no bound on its size or time, before any handler runs (review 8 F7). The door refuses
    such events (`ui.tabs`); this is the backstop where Gradio would fetch: a URL is refused in
    one sentence, a local path goes on as before. Nothing of the studio's needs the fetch (its
    link intake is `studio.links`, with its own rules). Idempotent."""
    block = gradio.blocks.Block
    if getattr(block, "_kontext_no_downloads", False):
        return
    moves, async_moves = (
        block.move_resource_to_block_cache,
        block.async_move_resource_to_block_cache,
    )

    def move(self: Any, url_or_file_path: str | Path | None) -> str | None:
        if gradio_client.utils.is_http_url_like(url_or_file_path):
            raise gradio.Error(NOT_FETCHED, print_exception=False)
        return moves(self, url_or_file_path)

    async def async_move(self: Any, url_or_file_path: str | Path | None) -> str | None:
        if gradio_client.utils.is_http_url_like(url_or_file_path):
            raise gradio.Error(NOT_FETCHED, print_exception=False)
        return await async_moves(self, url_or_file_path)

    block.move_resource_to_block_cache = move  # type: ignore[method-assign]
    block.async_move_resource_to_block_cache = async_move  # type: ignore[method-assign]
    block._kontext_no_downloads = True  # type: ignore[attr-defined]


def discard_session_files(
    folder: Path, session: Session, images: frozenset[str], still_held: Callable[[str], bool]
) -> None:
    """A session was deleted (`Engine.when_deleted`): its exports in `folder` go, and so do its
    owner's fitted copies of its `images` they no longer hold in another session
    (`still_held`). An export of it still being written goes once written. Before, both were
    served to whoever had the link until their 15 minutes were up, after the session and its
    images were gone (review 55 F1). Blocking: call it in a thread."""
    of = _tag(f"session:{session.session_id}")
    _note(_deleted, of, None, DELETED_KEPT)
    for _, entry in _exports(folder):
        if _named(entry)[2] == of and entry not in _writing:
            shutil.rmtree(entry, ignore_errors=True)
    owner, pairs = _tag(session.owner), folder / "pairs"
    kept: dict[str, bool] = {}
    for name, (whose, made_of) in list(_fitted.items()):
        if whose != owner or not made_of & images:
            continue
        if not any(kept.setdefault(sha, still_held(sha)) for sha in made_of & images):
            (pairs / name).unlink(missing_ok=True)
            _fitted.pop(name, None)


def discard_upload(path: Path, upload_folder: Path) -> None:
    """Remove an upload Gradio kept (and its folder, once empty) after the store has it; any
    other file is left alone. Blocking: call it in a thread."""
    try:
        resolved = path.resolve()
        if not resolved.is_relative_to(upload_folder.resolve()) or not resolved.is_file():
            return
        resolved.unlink()
        with contextlib.suppress(OSError):
            resolved.parent.rmdir()  # only when empty
    except OSError:
        return


__all__ = [
    "EXPORTS_KEPT",
    "EXPORTS_PER_ADDRESS",
    "EXPORTS_PER_VISITOR",
    "EXPORT_KEPT_S",
    "EXPORT_TTL_S",
    "UploadApart",
    "UploadBook",
    "discard_export",
    "discard_session_files",
    "discard_upload",
    "export_written",
    "exported",
    "fitted_name",
    "in_exports",
    "install",
    "keep_fitted",
    "make_exports_folder",
    "new_export",
    "prune_exports",
    "served_in_place",
]
