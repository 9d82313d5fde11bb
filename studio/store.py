"""The data directory: sessions and steps in SQLite (WAL, ordered migrations) and images stored by
SHA-256, written atomically. Imports `studio.params`, `studio.history`, sqlite3 and the stdlib only.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import itertools
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from studio.history import (
    REGION_KINDS,
    ImageRef,
    Session,
    SessionSummary,
    Step,
    StepRegion,
    StepSource,
    StepState,
)
from studio.images import make_thumbnail
from studio.params import MODELS, OUTPUT_FORMATS, EditParams

log = logging.getLogger(__name__)

DB_NAME = "studio.db"
IMAGES_DIR = "images"
THUMBS_DIR = "thumbs"
THUMBNAIL_SIDE = 256
# Thumbnails made in one call at most: a page of a session of a thousand new imported steps
# must not make a thousand on one request; the rest are made as the page asks again.
THUMBNAILS_PER_CALL = 48


def _take_spend(
    db: sqlite3.Connection, step_ids: Collection[str]
) -> list[tuple[date, str, str | None, int]]:
    """Delete these steps' rows of the days' spending; what each had been counted: (day, owner,
    address, cents)."""
    ids = list(step_ids)
    marks = ",".join("?" * len(ids))
    rows = db.execute(
        f"SELECT day, owner, address, cents FROM spend WHERE step_id IN ({marks})", ids
    ).fetchall()
    db.execute(f"DELETE FROM spend WHERE step_id IN ({marks})", ids)
    return [(date.fromisoformat(r["day"]), r["owner"], r["address"], r["cents"]) for r in rows]


def thumbnail_tag(owner: str | None) -> str:
    """What a named owner's thumbnails carry in their names (`<sha256>.<tag>.<ext>`): each
    visitor's are their own, so one visitor's page never finds ready a thumbnail another
    visitor's made (it answered faster, and told that someone had that exact photo here:
    review 53 F2). The studio's own user's have none."""
    if owner is None:
        return ""
    return "." + hashlib.sha256(owner.encode("utf-8", "surrogatepass")).hexdigest()[:16]


_PNG_SIGNATURE = b"\x89PNG"
# Seconds a writer waits for another process's lock. Writes take milliseconds; this only has to
# outlast a burst of tabs and a CLI run writing at once.
BUSY_TIMEOUT_S = 10.0
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FORMAT = re.compile(r"[a-z0-9]{1,10}")
# Sessions kept decoded, each with the version it was read at: every open tab, every tick and
# every call loads its session again, and a session of a thousand steps costs megabytes and tens
# of milliseconds to decode. Tabs of the same session share one copy, read once per change.
SESSION_CACHE = 8
# Image file sizes remembered (`Store.image_bytes`): a hosted visitor's share is summed on every
# upload, and a size never changes for a content-addressed name.
SIZES_KEPT = 100_000
# What decoding a hand-edited row can raise; each becomes the one "damaged" sentence.
_DECODE_ERRORS = (TypeError, ValueError, KeyError, AttributeError, RecursionError)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class DaySpend:
    """One day's spending of the server's key for visitors (`Store.spend_on`)."""

    by_owner: dict[str, int] = field(default_factory=dict)
    by_address: dict[str, int] = field(default_factory=dict)
    total: int = 0


@dataclass(frozen=True, slots=True)
class Holding:
    """What one owner's sessions hold (`Store.holding`): their images, once each, and their
    rows and the bytes of their text."""

    images: list[ImageRef]
    sessions: int
    steps: int
    text_bytes: int


class StoreError(Exception):
    """The data directory cannot be used as asked; `str()` is one plain sentence.

    `path` names the file concerned, when there is one.
    """

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class NoSuchSession(StoreError):
    """The session is not in the store (it was deleted, or never was)."""

    def __init__(self) -> None:
        super().__init__("There is no such session.")


# Ordered, named and never edited once released: a schema change is a new entry at the end.
# The columns of a step that name an image (by sha256): result, source, raw output, mask.
_IMAGE_COLUMNS = ("result_sha256", "source_sha256", "raw_sha256", "mask_sha256")
# Shas asked about in one query (SQLite's bound parameters).
_SHAS_PER_QUERY = 500


def _create_sessions_and_steps(db: sqlite3.Connection) -> None:
    # The two tables refer to each other, so those references are checked at commit.
    db.execute(
        """CREATE TABLE sessions (
            session_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            owner TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            current_step_id TEXT NOT NULL
                REFERENCES steps (step_id) DEFERRABLE INITIALLY DEFERRED,
            redo_json TEXT NOT NULL DEFAULT '[]'
        )"""
    )
    db.execute(
        """CREATE TABLE steps (
            step_id TEXT PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
            parent_id TEXT REFERENCES steps (step_id) DEFERRABLE INITIALLY DEFERRED,
            kind TEXT NOT NULL CHECK (kind IN ('origin', 'edit', 'generate')),
            params_json TEXT,
            source_kind TEXT NOT NULL CHECK (source_kind IN ('upload', 'link', 'step', 'none')),
            source_sha256 TEXT,
            link_url TEXT,
            uploaded_url TEXT,
            uploaded_expires_at TEXT,
            state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'completed', 'failed')),
            task_id TEXT,
            result_sha256 TEXT,
            result_format TEXT,
            result_width INTEGER,
            result_height INTEGER,
            created_at TEXT NOT NULL,
            submitted_at TEXT,
            completed_at TEXT,
            elapsed_s REAL,
            cost_cents INTEGER,
            error TEXT,
            retry_of TEXT
        )"""
    )


def _index_lookups(db: sqlite3.Connection) -> None:
    db.execute("CREATE INDEX steps_by_session ON steps (session_id)")
    db.execute("CREATE INDEX steps_by_parent ON steps (parent_id)")
    db.execute(
        "CREATE INDEX steps_unfinished ON steps (state) WHERE state IN ('queued', 'running')"
    )
    db.execute("CREATE INDEX sessions_by_owner ON sessions (owner, updated_at)")


def _add_regions(db: sqlite3.Connection) -> None:
    # A step kept to a region: how the region was given (kind, box, the size it was drawn on),
    # its mask image, and the model's own output beside the blended result.
    for column in (
        "region_json TEXT",
        "mask_sha256 TEXT",
        "raw_sha256 TEXT",
        "raw_format TEXT",
        "raw_width INTEGER",
        "raw_height INTEGER",
    ):
        db.execute(f"ALTER TABLE steps ADD COLUMN {column}")


def _poll_durations(db: sqlite3.Connection) -> None:
    # What the poll schedule learned: seconds from a create's answer to the read that saw the task
    # finished, per model. A step's own elapsed time also holds the upload and the download, so
    # it would teach a schedule to read late; this is the number the schedule itself measured.
    db.execute(
        """CREATE TABLE poll_durations (
            n INTEGER PRIMARY KEY,
            model TEXT NOT NULL,
            seconds REAL NOT NULL CHECK (seconds > 0)
        )"""
    )
    db.execute("CREATE INDEX poll_durations_by_model ON poll_durations (model, n)")


def _record_payers_and_spend(db: sqlite3.Connection) -> None:
    # Whose key pays for each step; and what the server's key was spent on for hosted visitors,
    # by day, so that a restart forgets none of the day's budgets.
    db.execute("ALTER TABLE steps ADD COLUMN payer TEXT CHECK (payer IN ('host', 'visitor'))")
    db.execute(
        """CREATE TABLE spend (
            step_id TEXT PRIMARY KEY,
            day TEXT NOT NULL,
            owner TEXT NOT NULL,
            address TEXT,
            cents INTEGER NOT NULL
        )"""
    )
    db.execute("CREATE INDEX spend_by_day ON spend (day)")


def _index_images(db: sqlite3.Connection) -> None:
    # Which steps refer to an image, looked up by its sha256: a deleted session's images are
    # checked one by one (`Store.collect_images`), not against every step of every visitor.
    for column in _IMAGE_COLUMNS:
        db.execute(f"CREATE INDEX steps_by_{column} ON steps ({column}) WHERE {column} IS NOT NULL")


def _record_payer_keys(db: sqlite3.Connection) -> None:
    # Which visitor's key pays for a step (a keyed digest): a step waiting at a restart runs
    # again on that key only (review 21 F2: it ran on whichever key its browser pasted next).
    db.execute("ALTER TABLE steps ADD COLUMN payer_key TEXT")


def _record_addresses(db: sqlite3.Connection) -> None:
    # Who asked for room to store something from each network address: an address's share of
    # the disk counts them all; and when each address became a new visitor. A restart forgot
    # both (review 23 F2: fresh identities from one address stored its whole share again after
    # each, and became twenty new visitors more within the hour).
    db.execute(
        """CREATE TABLE address_owners (
            address TEXT NOT NULL,
            owner TEXT NOT NULL,
            PRIMARY KEY (address, owner)
        ) WITHOUT ROWID"""
    )
    db.execute("CREATE TABLE new_visitors (address TEXT NOT NULL, at REAL NOT NULL)")
    db.execute("CREATE INDEX new_visitors_by_time ON new_visitors (at)")


def _poll_brackets(db: sqlite3.Connection) -> None:
    # The read before the one that saw a task finished (which saw it unfinished): with it a
    # finish is known to lie between two reads, and the schedule halves that bracket.
    db.execute("ALTER TABLE poll_durations ADD COLUMN after_s REAL NOT NULL DEFAULT 0")


def _pending_choices(db: sqlite3.Connection) -> None:
    # Results asked for side by side (pro vs max, or several runs of one instruction) that wait
    # for one to be kept: the step they were made from (none: a new picture) and theirs. Kept in
    # memory, a restart forgot it: the page showed the results as branches, with no Keep.
    db.execute(
        """CREATE TABLE pending_choices (
            session_id TEXT PRIMARY KEY REFERENCES sessions (session_id) ON DELETE CASCADE,
            from_step_id TEXT,
            step_ids_json TEXT NOT NULL
        )"""
    )


def _choice_ids(stored: str) -> tuple[str, ...]:
    """The results of a pending choice as `Store.note_choice` wrote them (none if unreadable)."""
    ids = json.loads(stored)
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return ()
    return tuple(ids)


MIGRATIONS: tuple[tuple[str, Callable[[sqlite3.Connection], None]], ...] = (
    ("001_create_sessions_and_steps", _create_sessions_and_steps),
    ("002_index_lookups", _index_lookups),
    ("003_regions", _add_regions),
    ("004_poll_durations", _poll_durations),
    ("004_payers_and_spend", _record_payers_and_spend),
    ("005_index_images", _index_images),
    ("006_payer_keys", _record_payer_keys),
    ("007_addresses", _record_addresses),
    ("008_poll_brackets", _poll_brackets),
    ("009_pending_choices", _pending_choices),
)
# Poll durations kept per model; the schedule looks at fewer (`policy.LEARN_WINDOW`).
KEPT_DURATIONS = 32


class Store:
    """The studio's data directory. Sync and thread-safe; async code calls it via a thread.

    Each thread gets its own SQLite connection; every write is one `BEGIN IMMEDIATE` transaction,
    so several processes (browser sessions, the CLI) can share the directory.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self.db_path = home / DB_NAME
        self.images_dir = home / IMAGES_DIR
        self.thumbs_dir = home / THUMBS_DIR
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        # session id -> (version, session), most recently used last (`load_session`).
        self._sessions: collections.OrderedDict[str, tuple[str, Session]] = (
            collections.OrderedDict()
        )
        self._loading: dict[str, threading.Lock] = {}
        # Bytes of stored image files by sha256, as `image_bytes` read them (oldest first).
        self._sizes: collections.OrderedDict[str, int] = collections.OrderedDict()

    @classmethod
    def open(
        cls,
        home: Path,
        *,
        migrations: tuple[tuple[str, Callable[[sqlite3.Connection], None]], ...] = MIGRATIONS,
    ) -> Store:
        """Open (creating if needed) the data directory at `home` and bring its schema up to date.

        Raises:
            StoreError: the database is damaged or from a newer studio. The file is left as it is.
        """
        store = cls(home)
        try:
            try:
                store.images_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreError(
                    f"The data directory {home} cannot be used ({error.strerror}).", path=home
                ) from error
            with store._guard():
                db = store._db()
                # Read-only checks first, so a damaged file is never written to.
                problems = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
                if problems != ["ok"]:
                    raise sqlite3.DatabaseError("; ".join(problems[:3]))
                if db.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
                    raise StoreError(f"{store.db_path} cannot use WAL mode.", path=store.db_path)
                with store._write() as db:
                    _migrate(db, migrations, store.db_path)
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Close every connection this store opened; later calls raise `StoreError`."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for db in connections:
            db.close()

    # Images

    def put_image(self, data: bytes, *, format: str, width: int, height: int) -> ImageRef:
        """Store image bytes under their SHA-256 (idempotent) and return a reference to them.

        The file is written to a temporary name, fsync'd, then renamed into place, so a reader
        never sees half an image.
        """
        if not _FORMAT.fullmatch(format):
            raise ValueError(f"unexpected image format {format!r}")
        sha256 = hashlib.sha256(data).hexdigest()
        final = self.images_dir / sha256[:2] / f"{sha256}.{format}"
        ref = ImageRef(sha256=sha256, format=format, width=width, height=height)
        # Already there (the usual case in a chain); a damaged copy is replaced below. Touched,
        # so a clean-up running meanwhile sees it as new and leaves it (`collect_images`).
        with contextlib.suppress(FileNotFoundError):
            if hashlib.sha256(final.read_bytes()).hexdigest() == sha256:
                os.utime(final)
                return ref
        # A leading dot keeps half-written files out of `image_path`'s glob.
        temp = final.with_name(f".{sha256}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            with temp.open("wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, final)
            _fsync_dir(final.parent)
        except OSError as error:
            raise StoreError(
                f"The image could not be saved in {self.images_dir} ({error.strerror}).",
                path=final,
            ) from error
        finally:
            temp.unlink(missing_ok=True)
        return ref

    def path_of(self, ref: ImageRef) -> Path:
        """Where image `ref` lives, built from its name and format (no disk access)."""
        if not _SHA256.fullmatch(ref.sha256) or not _FORMAT.fullmatch(ref.format):
            raise StoreError(f"{ref.sha256!r} is not an image id.")
        return self.images_dir / ref.sha256[:2] / f"{ref.sha256}.{ref.format}"

    def image_path(self, sha256: str) -> Path:
        """The file holding image `sha256`. Raises `StoreError` if there is none."""
        if not _SHA256.fullmatch(sha256):
            raise StoreError(f"{sha256!r} is not an image id.")
        for path in (self.images_dir / sha256[:2]).glob(f"{sha256}.*"):
            return path
        raise StoreError(f"The image {sha256} is missing from {self.images_dir}.")

    def read_image(self, sha256: str) -> bytes:
        return self.image_path(sha256).read_bytes()

    def has_image(self, sha256: str) -> bool:
        try:
            self.image_path(sha256)
        except StoreError:
            return False
        return True

    def discard_image(self, sha256: str) -> None:
        """Remove image `sha256` if no step refers to it (undoing a half-done import)."""
        with self._write() as db:
            # The write lock is held while the file goes, so no step can start using it meanwhile.
            used = db.execute(
                "SELECT 1 FROM steps WHERE result_sha256 = ?1 OR source_sha256 = ?1"
                " OR raw_sha256 = ?1 OR mask_sha256 = ?1 LIMIT 1",
                (sha256,),
            ).fetchone()
            if used is None:
                with contextlib.suppress(StoreError, FileNotFoundError):
                    self.image_path(sha256).unlink()

    # Thumbnails: small copies for history strips, made once, removed with their image

    def existing_thumbnails(
        self, refs: Collection[ImageRef], owner: str | None = None
    ) -> tuple[dict[str, Path], list[str]]:
        """The thumbnail of each image that has one (`owner`'s own: `make_thumbnail`), by
        sha256; and the images without one."""
        found: dict[str, Path] = {}
        missing: dict[str, None] = {}
        tag = thumbnail_tag(owner)
        for ref in refs:
            if ref.sha256 in found or not _SHA256.fullmatch(ref.sha256):
                continue
            for suffix in (".jpg", ".png"):
                if (path := self.thumbs_dir / f"{ref.sha256}{tag}{suffix}").exists():
                    found[ref.sha256] = path
                    break
            else:
                missing[ref.sha256] = None
        return found, list(missing)

    def make_thumbnail(
        self,
        sha256: str,
        maker: Callable[[bytes, int], bytes] | None = None,
        owner: str | None = None,
    ) -> Path:
        """Make the thumbnail of a stored image with `maker(data, max_side)` (a full decode:
        `StoreError` or `OSError` when it cannot be read); a named `owner`'s is theirs alone
        (`thumbnail_tag`)."""
        data = self.read_image(sha256)
        if maker is None:
            thumb = make_thumbnail(data, max_side=THUMBNAIL_SIDE)
        else:
            thumb = maker(data, THUMBNAIL_SIDE)
        self.thumbs_dir.mkdir(parents=True, exist_ok=True)
        suffix = ".png" if thumb.startswith(_PNG_SIGNATURE) else ".jpg"
        path = self.thumbs_dir / f"{sha256}{thumbnail_tag(owner)}{suffix}"
        temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            temp.write_bytes(thumb)
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)
        return path

    # Sessions and steps

    def create_session(self, session: Session) -> None:
        """Insert a new session with its steps (usually just the origin)."""
        with self._write() as db:
            db.execute(
                "INSERT INTO sessions (session_id, name, owner, created_at, updated_at,"
                " current_step_id, redo_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    session.session_id,
                    session.name,
                    session.owner,
                    _time(session.created_at),
                    _time(_now()),
                    session.current_step_id,
                    json.dumps(session.redo_stack),
                ),
            )
            for step in session.steps.values():
                _insert_step(db, step)

    def save_step(self, step: Step, *, poll_seen: tuple[float, float] | None = None) -> None:
        """Insert a new step, or record how an unfinished one advanced.

        `poll_seen`, with a completed step: seconds from its create's answer to the read that
        saw the task finished, and to the read before it (which saw it unfinished; 0: none),
        kept (in the same transaction) for `recent_samples`.

        Raises:
            StoreError: the step is already finished here with other values (never rewritten).
        """
        with self._write() as db:
            _save_step(db, step, poll_seen)

    def add_steps(self, steps: Sequence[Step], session: Session, name: str | None = None) -> None:
        """Insert new queued steps, then name `session` `name` (if given) and record its current
        step and redo stack (`set_current`), in one transaction: all of it is stored, or none
        (a new edit's steps were three transactions, and could be left without the rest)."""
        with self._write() as db:
            for step in steps:
                _save_step(db, step, None)
            if name is not None:
                _rename(db, session.session_id, name)
            self._write_current(db, session)

    def set_current(self, session: Session) -> None:
        """Record `session`'s current step and redo stack, so a reload lands in the same place."""
        with self._write() as db:
            self._write_current(db, session)

    def note_choice(
        self, session_id: str, from_step_id: str | None, step_ids: Sequence[str] | None
    ) -> None:
        """Results of `session_id` made side by side from `from_step_id` (None: from
        nothing) wait for one to be kept; `step_ids` None: no longer."""
        with self._write() as db:
            if step_ids is None:
                db.execute("DELETE FROM pending_choices WHERE session_id = ?", (session_id,))
                return
            db.execute(
                "INSERT OR REPLACE INTO pending_choices VALUES (?, ?, ?)",
                (session_id, from_step_id, json.dumps(list(step_ids))),
            )

    def answer_choice(self, session_id: str, step_id: str) -> None:
        """`step_id` was kept: the choice of `session_id` waiting, if it is one of its
        results, is answered."""
        with self._write() as db:
            row = db.execute(
                "SELECT step_ids_json FROM pending_choices WHERE session_id = ?", (session_id,)
            ).fetchone()
            if row is not None and step_id in _choice_ids(row[0]):
                db.execute("DELETE FROM pending_choices WHERE session_id = ?", (session_id,))

    def pending_choice(self, session_id: str) -> tuple[str | None, tuple[str, ...]] | None:
        """The results of `session_id` waiting for one to be kept (`note_choice`): the step
        they were made from and theirs; None if none wait."""
        with self._read() as db:
            row = db.execute(
                "SELECT from_step_id, step_ids_json FROM pending_choices WHERE session_id = ?",
                (session_id,),
            ).fetchone()
        ids = _choice_ids(row[1]) if row is not None else ()
        return (row[0], ids) if ids else None

    def rename_session(self, session_id: str, name: str) -> None:
        with self._write() as db:
            _rename(db, session_id, name)

    def delete_steps(self, session: Session, step_ids: Collection[str]) -> None:
        """Delete `step_ids` (from `Session.subtree`) and record `session`'s new current step.

        Raises:
            StoreError: one of them is unfinished, or another tab added a step under them.
        """
        marks = ", ".join("?" * len(step_ids))
        with self._write() as db:
            unfinished = db.execute(
                f"SELECT COUNT(*) FROM steps WHERE step_id IN ({marks})"
                " AND state IN ('queued', 'running')",
                (*step_ids,),
            ).fetchone()[0]
            if unfinished:
                raise StoreError("That branch has an edit still running; wait for it to finish.")
            db.execute(
                f"DELETE FROM steps WHERE session_id = ? AND step_id IN ({marks})",
                (session.session_id, *step_ids),
            )
            self._write_current(db, session)

    def cancel_steps(
        self, session: Session, step_ids: Collection[str], moved: Collection[Step] = ()
    ) -> list[tuple[date, str, str | None, int]]:
        """Delete queued steps that were never sent (`Session.cancel`), and what they were to
        cost the server's key (returned: day, owner, address, cents); record the new parent of
        the steps `moved` after them, and `session`'s current step. Raises `StoreError` if one
        of them was sent meanwhile."""
        marks = ", ".join("?" * len(step_ids))
        with self._write() as db:
            started = db.execute(
                f"SELECT COUNT(*) FROM steps WHERE step_id IN ({marks})"
                " AND (state != 'queued' OR task_id IS NOT NULL)",
                (*step_ids,),
            ).fetchone()[0]
            if started:
                raise StoreError("That edit has already started; it can no longer be cancelled.")
            for step in moved:
                db.execute(
                    "UPDATE steps SET parent_id = ? WHERE step_id = ? AND session_id = ?"
                    " AND state = 'queued'",
                    (step.parent_id, step.step_id, session.session_id),
                )
            db.execute(
                f"DELETE FROM steps WHERE session_id = ? AND step_id IN ({marks})",
                (session.session_id, *step_ids),
            )
            unspent = _take_spend(db, step_ids)
            self._write_current(db, session)
            _touch(db, session.session_id)
        return unspent

    def holding(self, owner: str) -> Holding:
        """What `owner`'s sessions hold, in one pass over their steps: every image (originals,
        imports, results and masks, a mask's size unrecorded) once each, how many sessions and
        steps, and the bytes of their text (names, parameters, errors, links, regions). What
        counts against a hosted visitor's share of the disk."""
        with self._read() as db:
            rows = db.execute(
                """WITH mine AS MATERIALIZED (
                    SELECT t.result_sha256 AS r, t.result_format AS rf, t.result_width AS rw,
                        t.result_height AS rh, t.raw_sha256 AS w, t.raw_format AS wf,
                        t.raw_width AS ww, t.raw_height AS wh, t.mask_sha256 AS m,
                        LENGTH(CAST(COALESCE(t.params_json, '') AS BLOB))
                        + LENGTH(CAST(COALESCE(t.error, '') AS BLOB))
                        + LENGTH(CAST(COALESCE(t.link_url, '') AS BLOB))
                        + LENGTH(CAST(COALESCE(t.region_json, '') AS BLOB)) AS text
                    FROM steps t JOIN sessions s ON s.session_id = t.session_id
                    WHERE s.owner = ?1)
                SELECT NULL, (SELECT COUNT(*) FROM sessions WHERE owner = ?1), COUNT(*),
                    TOTAL(text) + (SELECT TOTAL(LENGTH(CAST(name AS BLOB))) FROM sessions
                        WHERE owner = ?1)
                FROM mine
                UNION SELECT r, rf, rw, rh FROM mine WHERE r IS NOT NULL
                UNION SELECT w, wf, ww, wh FROM mine WHERE w IS NOT NULL
                UNION SELECT m, 'png', 0, 0 FROM mine WHERE m IS NOT NULL""",
                (owner,),
            ).fetchall()
        images, sessions, steps, text = [], 0, 0, 0
        for row in rows:
            if row[0] is None:
                sessions, steps, text = row[1], row[2], int(row[3])
            else:
                images.append(ImageRef(sha256=row[0], format=row[1], width=row[2], height=row[3]))
        return Holding(images=images, sessions=sessions, steps=steps, text_bytes=text)

    def image_bytes(self, refs: Collection[ImageRef]) -> int:
        """The bytes of stored images `refs` on disk (a missing one counts nothing). A file's
        size is read once: its name is its content."""
        total = 0
        for ref in refs:
            size = self._sizes.get(ref.sha256)
            if size is None:
                try:
                    size = self.path_of(ref).stat().st_size
                except FileNotFoundError:
                    continue
                with self._lock:
                    self._sizes[ref.sha256] = size
                    while len(self._sizes) > SIZES_KEPT:
                        self._sizes.popitem(last=False)
            total += size
        return total

    def image_pixels(self, sha256s: Collection[str]) -> dict[str, int]:
        """The pixels of each of these stored images that is a step's result (an origin's
        image is its result), by sha256; the rest are left out."""
        wanted = list(dict.fromkeys(sha256s))
        found: dict[str, int] = {}
        with self._read() as db:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"""SELECT result_sha256, MAX(result_width * result_height) FROM steps
                    WHERE result_sha256 IN ({marks}) GROUP BY result_sha256""",
                    chunk,
                ).fetchall()
                for sha256, pixels in rows:
                    if isinstance(pixels, int) and pixels > 0:
                        found[sha256] = pixels
        return found

    def owner_holds_image(self, owner: str, sha256: str) -> bool:
        """Whether a session of `owner` holds image `sha256` as a source or a result."""
        with self._read() as db:
            row = db.execute(
                """SELECT 1 FROM steps t JOIN sessions s ON s.session_id = t.session_id
                WHERE s.owner = ?1 AND (t.result_sha256 = ?2 OR t.source_sha256 = ?2
                    OR t.raw_sha256 = ?2 OR t.mask_sha256 = ?2)
                LIMIT 1""",
                (owner, sha256),
            ).fetchone()
        return row is not None

    def delete_session(self, session_id: str) -> None:
        """Delete a session and all its steps (its images go at the next `collect_images`).

        Raises:
            StoreError: there is no such session, or one of its steps is unfinished.
        """
        with self._write() as db:
            unfinished = db.execute(
                "SELECT COUNT(*) FROM steps"
                " WHERE session_id = ? AND state IN ('queued', 'running')",
                (session_id,),
            ).fetchone()[0]
            if unfinished:
                raise StoreError(
                    "This session has an edit still running; delete it once it has finished."
                )
            db.execute("DELETE FROM steps WHERE session_id = ?", (session_id,))
            deleted = db.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))
            if deleted.rowcount == 0:
                raise NoSuchSession()

    def referenced_images(self, session_id: str | None = None) -> set[str]:
        """The sha256 of every image a step refers to (of session `session_id`, if given): its
        result, source, raw output or mask."""
        where = "session_id = ?1 AND" if session_id is not None else "?1 IS NULL AND"
        with self._read() as db:
            rows = db.execute(
                " UNION ".join(
                    f"SELECT {column} FROM steps WHERE {where} {column} IS NOT NULL"
                    for column in _IMAGE_COLUMNS
                ),
                (session_id,),
            ).fetchall()
        return {row[0] for row in rows}

    def still_referenced(self, shas: Collection[str]) -> set[str]:
        """Those of `shas` some step still refers to (each looked up by index, the first step
        found enough: an image a thousand steps share costs what one does)."""
        found: set[str] = set()
        wanted = sorted(set(shas))
        exists = " OR ".join(
            f"EXISTS (SELECT 1 FROM steps WHERE {column} = wanted.sha)" for column in _IMAGE_COLUMNS
        )
        with self._read() as db:
            for start in range(0, len(wanted), _SHAS_PER_QUERY):
                chunk = wanted[start : start + _SHAS_PER_QUERY]
                values = ", ".join(["(?)"] * len(chunk))
                query = (
                    f"WITH wanted(sha) AS (VALUES {values}) SELECT sha FROM wanted WHERE {exists}"
                )
                found.update(row[0] for row in db.execute(query, chunk))
        return found

    def unreferenced_bytes(self, shas: Collection[str]) -> int:
        """The bytes on disk of those of `shas` no step refers to (images and their
        thumbnails)."""
        keep = self.still_referenced(shas)
        total = 0
        for sha in shas:
            if sha in keep or not _SHA256.fullmatch(sha):
                continue
            for path in (
                *self.images_dir.glob(f"{sha[:2]}/{sha}.*"),
                *self.thumbs_dir.glob(f"{sha}.*"),
            ):
                with contextlib.suppress(FileNotFoundError):
                    total += path.stat().st_size
        return total

    def collect_images(
        self, *, older_than_s: float, among: Collection[str] | None = None
    ) -> list[str]:
        """Remove the image files no step refers to (of those in `among`, if given: a deleted
        session's, without looking at every file); the sha256 of each one removed.

        A file written or stored again within `older_than_s` seconds is left alone: an edit or
        an import (here or in another process) stores its image a moment before the step that
        refers to it.
        """
        keep = self.referenced_images() if among is None else self.still_referenced(among)
        cutoff = time.time() - older_than_s
        removed = []
        images: Iterable[Path]
        thumbs: Iterable[Path]
        if among is None:
            images = self.images_dir.glob("??/*.*")
            thumbs = self.thumbs_dir.glob("*.*")
        else:
            wanted = [sha for sha in among if _SHA256.fullmatch(sha) and sha not in keep]
            images = itertools.chain.from_iterable(
                self.images_dir.glob(f"{sha[:2]}/{sha}.*") for sha in wanted
            )
            thumbs = itertools.chain.from_iterable(
                self.thumbs_dir.glob(f"{sha}.*") for sha in wanted
            )
        for path in images:
            sha256 = path.name.split(".", 1)[0]
            if path.name.startswith(".") or not _SHA256.fullmatch(sha256) or sha256 in keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed.append(sha256)
        # A thumbnail goes with its image (or when it has none any more).
        for thumb in thumbs:
            sha256 = thumb.name.split(".", 1)[0]
            if thumb.name.startswith(".") or sha256 in keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                if sha256 in removed or thumb.stat().st_mtime < cutoff:
                    thumb.unlink()
        return removed

    def session_version(self, session_id: str) -> str | None:
        """Changes whenever a step of the session is added, advances or goes (None: no session).

        Cheap enough for every open tab to ask every second or two.
        """
        with self._read() as db:
            row = db.execute(
                "SELECT updated_at FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def tab_version(self, session_id: str, owner: str | None = None) -> str | None:
        """What a tab shows, as one value (None: no session): the session's version
        (`session_version`) and a mark that changes whenever one of `owner`'s sessions (every
        session if None) is made or goes (how many, and when the newest was made). One read,
        cheap enough for every open tab to ask every second or two."""
        with self._read() as db:
            row = db.execute(
                """SELECT s.updated_at, mark.made, mark.newest FROM sessions s,
                    (SELECT COUNT(*) AS made, MAX(created_at) AS newest FROM sessions
                        WHERE ?2 IS NULL OR owner = ?2) AS mark
                WHERE s.session_id = ?1""",
                (session_id, owner),
            ).fetchone()
        return None if row is None else f"{row[0]}~{row[1]}.{row[2] or ''}"

    def load_session(self, session_id: str) -> Session:
        """The session with all its steps, current step and redo stack, as last saved.

        Decoded once per version of the session (`SESSION_CACHE`): many tabs or calls loading
        one session at once wait for a single read (`Session` values are never changed in
        place, so they share it).
        """
        version = self.session_version(session_id)
        if version is None:
            raise NoSuchSession()
        if (session := self._cached(session_id, version)) is not None:
            return session
        with self._lock:
            loading = self._loading.setdefault(session_id, threading.Lock())
        with loading:
            version = self.session_version(session_id)
            if version is not None and (session := self._cached(session_id, version)) is not None:
                return session
            version, session = self._read_session(session_id)
            with self._lock:
                self._sessions[session_id] = (version, session)
                self._sessions.move_to_end(session_id)
                while len(self._sessions) > SESSION_CACHE:
                    self._sessions.popitem(last=False)
                self._loading.pop(session_id, None)
            return session

    def _cached(self, session_id: str, version: str) -> Session | None:
        with self._lock:
            cached = self._sessions.get(session_id)
            if cached is None or cached[0] != version:
                return None
            self._sessions.move_to_end(session_id)
            return cached[1]

    def _read_session(self, session_id: str) -> tuple[str, Session]:
        """The session and its version, read in one transaction (so they agree)."""
        with self._read() as db:
            row = db.execute("SELECT * FROM sessions WHERE session_id = ?", (session_id,))
            session = row.fetchone()
            if session is None:
                raise NoSuchSession()
            rows = db.execute(
                "SELECT * FROM steps WHERE session_id = ? ORDER BY created_at, rowid", (session_id,)
            ).fetchall()
        return str(session["updated_at"]), self._decode_session(session_id, session, rows)

    def _decode_session(
        self, session_id: str, session: sqlite3.Row, rows: list[sqlite3.Row]
    ) -> Session:
        try:
            steps = {row["step_id"]: _decode_step(row) for row in rows}
            current = session["current_step_id"]
            redo = json.loads(session["redo_json"])
            if not isinstance(redo, list) or current not in steps:
                raise ValueError("the current step or the redo stack is not readable")
            return Session(
                session_id=session_id,
                name=_text(session["name"]),
                created_at=_parse_time(session["created_at"]),
                steps=steps,
                current_step_id=current,
                redo_stack=_valid_redo(steps, current, redo),
                owner=session["owner"],
            )
        except _DECODE_ERRORS as error:
            raise _damaged(session_id, self.db_path, error) from error

    def count_sessions(self, owner: str) -> int:
        """How many sessions `owner` keeps."""
        with self._read() as db:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM sessions WHERE owner = ?", (owner,)
            ).fetchone()
        return int(count)

    def list_sessions(self, owner: str | None = None) -> list[SessionSummary]:
        """Summaries, most recently changed first: only `owner`'s, or every session if None."""
        with self._read() as db:
            rows = db.execute(
                """SELECT s.session_id, s.name, s.created_at, s.updated_at,
                    (SELECT COUNT(*) FROM steps t
                        WHERE t.session_id = s.session_id AND t.kind != 'origin') AS step_count,
                    (SELECT COUNT(*) FROM steps t
                        WHERE t.session_id = s.session_id AND t.kind != 'origin'
                            AND t.state = 'completed') AS made_count,
                    (SELECT COUNT(*) FROM steps t
                        WHERE t.session_id = s.session_id AND t.kind != 'origin'
                            AND t.state IN ('queued', 'running')) AS pending_count,
                    (SELECT COALESCE(SUM(t.cost_cents), 0) FROM steps t
                        WHERE t.session_id = s.session_id
                            AND typeof(t.cost_cents) = 'integer') AS cost_cents,
                    EXISTS (SELECT 1 FROM steps t WHERE t.session_id = s.session_id AND (
                        typeof(t.cost_cents) NOT IN ('integer', 'null')
                        OR typeof(t.elapsed_s) NOT IN ('real', 'integer', 'null')
                        OR typeof(t.result_width) NOT IN ('integer', 'null')
                        OR typeof(t.result_height) NOT IN ('integer', 'null')
                        OR typeof(t.created_at) != 'text'
                        OR t.state NOT IN ('queued', 'running', 'completed', 'failed')
                    )) AS damaged,
                    COALESCE(
                        (SELECT result_sha256 FROM steps WHERE step_id = s.current_step_id),
                        (SELECT t.result_sha256 FROM steps t WHERE t.session_id = s.session_id
                            AND t.result_sha256 IS NOT NULL ORDER BY t.rowid DESC LIMIT 1)
                    ) AS cover_sha256
                FROM sessions s WHERE ?1 IS NULL OR s.owner = ?1
                ORDER BY s.updated_at DESC, s.rowid DESC""",
                (owner,),
            ).fetchall()
        return [_summary(row) for row in rows]

    def find_result_step(self, sha256: str, owner: str | None = None) -> Step | None:
        """The newest edit or generation whose result is image `sha256`: in `owner`'s sessions,
        or in any session if None."""
        with self._read() as db:
            row = db.execute(
                """SELECT t.* FROM steps t JOIN sessions s ON s.session_id = t.session_id
                WHERE t.result_sha256 = ?1 AND t.kind != 'origin' AND (?2 IS NULL OR s.owner = ?2)
                ORDER BY t.completed_at DESC, t.rowid DESC LIMIT 1""",
                (sha256, owner),
            ).fetchone()
        if row is None:
            return None
        try:
            return _decode_step(row)
        except _DECODE_ERRORS as error:
            raise _damaged(str(row["session_id"]), self.db_path, error) from error

    def unfinished_steps(self) -> list[Step]:
        """Steps queued or running, oldest first: what a restart must resume."""
        with self._read() as db:
            sql = "SELECT * FROM steps WHERE state IN ('queued', 'running')"
            rows = db.execute(f"{sql} ORDER BY created_at, rowid").fetchall()
        steps = []
        for row in rows:
            try:
                steps.append(_decode_step(row))
            except _DECODE_ERRORS:
                # One damaged row must not stop the studio from starting; it is never resumed.
                log.warning("Step %s is damaged in %s; it is not resumed", row[0], self.db_path)
        return steps

    def recent_durations(self, per_model: int = 8) -> dict[str, list[float]]:
        """Seconds from a create's answer to the read that saw the task finished, for the latest
        tasks of each model (`pro`, `max`), oldest first, at most `per_model` each: what the
        poll schedule learned, in this process or any other that shares the directory."""
        return {
            model: [seconds for seconds, _ in samples]
            for model, samples in self.recent_samples(per_model).items()
        }

    def recent_samples(self, per_model: int = 8) -> dict[str, list[tuple[float, float]]]:
        """`recent_durations`, each with the read before it (which saw the task unfinished; 0:
        none, or not recorded)."""
        with self._read() as db:
            rows = db.execute(
                """SELECT model, seconds, after_s FROM (
                    SELECT model, seconds, after_s, n,
                        ROW_NUMBER() OVER (PARTITION BY model ORDER BY n DESC) AS k
                    FROM poll_durations
                ) WHERE k <= ? ORDER BY n""",
                (per_model,),
            ).fetchall()
        samples: dict[str, list[tuple[float, float]]] = {}
        for row in rows:
            samples.setdefault(row["model"], []).append((row["seconds"], row["after_s"]))
        return samples

    # Spending of the server's key for hosted visitors

    def record_spend(
        self, day: date, owner: str, address: str | None, cents_by_step: dict[str, int]
    ) -> None:
        """Count what these steps may cost the server's key on `day` (once per step)."""
        with self._write() as db:
            db.executemany(
                "INSERT OR IGNORE INTO spend VALUES (?, ?, ?, ?, ?)",
                [(i, day.isoformat(), owner, address, c) for i, c in cents_by_step.items()],
            )

    def unspend(self, step_ids: Collection[str]) -> list[tuple[date, str, str | None, int]]:
        """Take these steps off the days' spending (they cost nothing after all); what each
        had been counted: (day, owner, address, cents)."""
        if not step_ids:
            return []
        with self._write() as db:
            return _take_spend(db, step_ids)

    def spend_on(self, day: date) -> DaySpend:
        """What the server's key was spent on for visitors on `day`: by owner, by address, all."""
        with self._read() as db:
            rows = db.execute(
                "SELECT owner, address, cents FROM spend WHERE day = ?", (day.isoformat(),)
            ).fetchall()
        spend = DaySpend()
        for row in rows:
            cents = int(row["cents"])
            spend.by_owner[row["owner"]] = spend.by_owner.get(row["owner"], 0) + cents
            if row["address"] is not None:
                address = row["address"]
                spend.by_address[address] = spend.by_address.get(address, 0) + cents
            spend.total += cents
        return spend

    # Who stored from each network address (an address's share of the disk)

    def owners_at(self, address: str) -> list[str]:
        """The visitors who asked for room from `address` (`note_owner_at`), still kept."""
        with self._read() as db:
            rows = db.execute("SELECT owner FROM address_owners WHERE address = ?", (address,))
            return [row[0] for row in rows.fetchall()]

    def note_owner_at(self, address: str, owner: str) -> None:
        """Remember that `owner` asked for room from `address`."""
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO address_owners VALUES (?, ?)", (address, owner))

    def forget_owners_at(self, address: str, owners: Collection[str]) -> None:
        """Forget these owners of `address` (they keep nothing)."""
        with self._write() as db:
            db.executemany(
                "DELETE FROM address_owners WHERE address = ? AND owner = ?",
                [(address, owner) for owner in owners],
            )

    def forget_owners_without_sessions(self) -> int:
        """Forget every owner of an address who keeps no session; how many were forgotten."""
        with self._write() as db:
            return db.execute(
                """DELETE FROM address_owners
                    WHERE owner NOT IN (SELECT owner FROM sessions WHERE owner IS NOT NULL)"""
            ).rowcount

    def note_new_visitor(self, address: str, at: float, *, kept_s: float) -> None:
        """Count a new visitor of `address` at `at` (seconds since the epoch), forgetting those
        counted more than `kept_s` before it."""
        with self._write() as db:
            db.execute("DELETE FROM new_visitors WHERE at < ?", (at - kept_s,))
            db.execute("INSERT INTO new_visitors VALUES (?, ?)", (address, at))

    def new_visitors_since(self, since: float) -> dict[str, list[float]]:
        """When each address became a new visitor since `since` (seconds since the epoch)."""
        with self._read() as db:
            rows = db.execute(
                "SELECT address, at FROM new_visitors WHERE at >= ? ORDER BY at", (since,)
            ).fetchall()
        times: dict[str, list[float]] = {}
        for row in rows:
            times.setdefault(row[0], []).append(float(row[1]))
        return times

    def owners_of(self, session_ids: Collection[str]) -> dict[str, str | None]:
        """The owner of each of these sessions (None: the studio's own user)."""
        with self._read() as db:
            return {
                row[0]: row[1]
                for each in set(session_ids)
                for row in db.execute(
                    "SELECT session_id, owner FROM sessions WHERE session_id = ?", (each,)
                )
            }

    # Secrets

    def secret(self, name: str) -> bytes:
        """A random secret kept in the data directory (`<name>.key`, readable by its owner
        only), made the first time it is asked for; every process sharing the directory reads
        the same one."""
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,40}", name):
            raise ValueError(f"unexpected secret name {name!r}")
        path = self.home / f"{name}.key"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        except OSError as error:
            raise StoreError(f"{path} cannot be written ({error.strerror}).", path=path) from error
        else:
            temp = path.with_name(f".{name}.{os.getpid()}.tmp")
            try:
                with os.fdopen(fd, "wb"):
                    pass  # claims the name; the value is renamed over it, whole
                temp.write_bytes(os.urandom(32).hex().encode())
                temp.chmod(0o600)
                os.replace(temp, path)
            finally:
                temp.unlink(missing_ok=True)
        for _ in range(50):  # another process may be between claiming the name and writing it
            if len(value := path.read_bytes().strip()) >= 32:
                return value
            time.sleep(0.02)
        raise StoreError(f"{path} holds no usable secret; remove it to make a new one.", path=path)

    # Connections and transactions

    def _write_current(self, db: sqlite3.Connection, session: Session) -> None:
        cursor = db.execute(
            "UPDATE sessions SET current_step_id = ?, redo_json = ?, updated_at = ?"
            " WHERE session_id = ?"
            " AND EXISTS (SELECT 1 FROM steps WHERE step_id = ? AND session_id = ?)",
            (
                session.current_step_id,
                json.dumps(session.redo_stack),
                _time(_now()),
                session.session_id,
                session.current_step_id,
                session.session_id,
            ),
        )
        if cursor.rowcount == 0:
            raise StoreError("There is no such session or step.")

    def _db(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError("The store is closed.")
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            with self._lock:
                # Autocommit mode: transactions are ours, explicit and short.
                db = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
                self._connections.append(db)
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            db.execute("PRAGMA foreign_keys = ON")
            # In WAL mode, NORMAL syncs at checkpoints instead of at every commit: a crash of the
            # studio loses nothing, a power cut at most the last commits (never the file). Those
            # are safe to lose: a step whose task id was lost is created again under the same
            # Idempotency-Key and the service replays it. FULL made every edit's ~7 commits wait
            # for the disk one at a time, which under 100 edits at once was most of the wait.
            db.execute("PRAGMA synchronous = NORMAL")
            self._local.db = db
        return db

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn SQLite's errors into `StoreError` sentences that name the file."""
        try:
            yield
        except sqlite3.IntegrityError as error:
            raise StoreError(
                f"The change conflicts with the saved history ({error}); reload and try again.",
                path=self.db_path,
            ) from error
        except sqlite3.OperationalError as error:
            raise StoreError(
                f"The history database {self.db_path} could not be used ({error}).",
                path=self.db_path,
            ) from error
        except sqlite3.DatabaseError as error:
            raise StoreError(
                f"The history database {self.db_path} is damaged ({error}). It was left as it is;"
                " move it aside to start afresh, or restore it from a backup.",
                path=self.db_path,
            ) from error

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so two writers queue on busy_timeout instead
        # of one failing midway with "database is locked".
        with self._guard(), self._transaction("BEGIN IMMEDIATE") as db:
            yield db

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        # One transaction, so the session row and its steps come from the same snapshot.
        with self._guard(), self._transaction("BEGIN") as db:
            yield db

    @contextlib.contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute(begin)
        try:
            yield db
            db.execute("COMMIT")
        finally:
            # Also after a failed COMMIT, which leaves the transaction open.
            if db.in_transaction:
                db.execute("ROLLBACK")


def _save_step(db: sqlite3.Connection, step: Step, poll_seen: tuple[float, float] | None) -> None:
    """`Store.save_step` within a transaction."""
    if _insert_step(db, step) == 0:
        row = db.execute("SELECT * FROM steps WHERE step_id = ?", (step.step_id,))
        if _decode_step(row.fetchone()) != step:
            raise StoreError(f"Step {step.step_id} is finished and cannot be changed.")
    _touch(db, step.session_id)
    if poll_seen is not None and poll_seen[0] > 0 and step.params is not None:
        _add_duration(db, step.params.model, *poll_seen)


def _rename(db: sqlite3.Connection, session_id: str, name: str) -> None:
    """`Store.rename_session` within a transaction."""
    sql = "UPDATE sessions SET name = ? WHERE session_id = ?"
    if db.execute(sql, (name, session_id)).rowcount == 0:
        raise NoSuchSession()
    _touch(db, session_id)


def _add_duration(db: sqlite3.Connection, model: str, seconds: float, after: float) -> None:
    after = after if 0 <= after < seconds else 0.0
    db.execute(
        "INSERT INTO poll_durations (model, seconds, after_s) VALUES (?, ?, ?)",
        (model, seconds, after),
    )
    db.execute(
        "DELETE FROM poll_durations WHERE model = ? AND n < (SELECT MIN(n) FROM"
        " (SELECT n FROM poll_durations WHERE model = ? ORDER BY n DESC LIMIT ?))",
        (model, model, KEPT_DURATIONS),
    )


def _migrate(
    db: sqlite3.Connection,
    migrations: tuple[tuple[str, Callable[[sqlite3.Connection], None]], ...],
    path: Path,
) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    applied = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    if unknown := applied - {name for name, _ in migrations}:
        raise StoreError(
            f"{path} was written by a newer Kontext Studio (it has {', '.join(sorted(unknown))});"
            " upgrade to open it.",
            path=path,
        )
    for name, migration in migrations:
        if name not in applied:
            migration(db)
            db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, _time(_now())))


_STEP_COLUMNS = (
    "step_id, session_id, parent_id, kind, params_json, source_kind, source_sha256, link_url,"
    " uploaded_url, uploaded_expires_at, state, task_id, result_sha256, result_format,"
    " result_width, result_height, created_at, submitted_at, completed_at, elapsed_s,"
    " cost_cents, error, retry_of, region_json, mask_sha256, raw_sha256, raw_format, raw_width,"
    " raw_height, payer, payer_key"
)
# What may change as a step advances; the rest is fixed at creation. Finished steps stay put.
_STEP_UPDATE = """ON CONFLICT (step_id) DO UPDATE SET
    uploaded_url = excluded.uploaded_url, uploaded_expires_at = excluded.uploaded_expires_at,
    state = excluded.state, task_id = excluded.task_id, result_sha256 = excluded.result_sha256,
    result_format = excluded.result_format, result_width = excluded.result_width,
    result_height = excluded.result_height, submitted_at = excluded.submitted_at,
    completed_at = excluded.completed_at, elapsed_s = excluded.elapsed_s,
    cost_cents = excluded.cost_cents, error = excluded.error,
    mask_sha256 = excluded.mask_sha256, raw_sha256 = excluded.raw_sha256,
    raw_format = excluded.raw_format, raw_width = excluded.raw_width,
    raw_height = excluded.raw_height
WHERE steps.state IN ('queued', 'running')"""


def _insert_step(db: sqlite3.Connection, step: Step) -> int:
    """Insert or advance `step`; returns 0 when it was already finished (and left alone)."""
    source, result = step.source, step.result
    params = None if step.params is None else json.dumps(dataclasses.asdict(step.params))
    image: tuple[object, ...] = (None, None, None, None)
    if result is not None:
        image = (result.sha256, result.format, result.width, result.height)
    raw: tuple[object, ...] = (None, None, None, None)
    if step.raw_result is not None:
        ref = step.raw_result
        raw = (ref.sha256, ref.format, ref.width, ref.height)
    region = step.region
    values = (
        *(step.step_id, step.session_id, step.parent_id, step.kind, params),
        *(source.kind, source.image_sha256, source.link_url, source.uploaded_url),
        _time(source.uploaded_expires_at),
        *(step.state.value, step.task_id),
        *image,
        *(_time(step.created_at), _time(step.submitted_at), _time(step.completed_at)),
        *(step.elapsed_s, step.cost_cents, step.error, step.retry_of),
        _region_json(region),
        region.mask_sha256 if region is not None else None,
        *raw,
        step.payer,
        step.payer_key,
    )
    marks = ", ".join("?" * len(values))
    sql = f"INSERT INTO steps ({_STEP_COLUMNS}) VALUES ({marks}) {_STEP_UPDATE}"
    return db.execute(sql, values).rowcount


def text_bytes(session: Session) -> int:
    """The bytes of `session`'s text as its rows hold it (`Store.holding` counts these):
    its name and each step's parameters, error, link and region."""
    total = len(session.name.encode())
    for step in session.steps.values():
        params = None if step.params is None else json.dumps(dataclasses.asdict(step.params))
        texts = (params, step.error, step.source.link_url, _region_json(step.region))
        total += sum(len(text.encode()) for text in texts if text)
    return total


def _region_json(region: StepRegion | None) -> str | None:
    if region is None:
        return None
    return json.dumps({"kind": region.kind, "box": region.box, "drawn_on": region.drawn_on})


def _region_from(text: object, mask_sha256: object) -> StepRegion | None:
    if text is None:
        return None
    values = json.loads(_text(text))
    box, drawn_on = values.get("box"), values.get("drawn_on")
    return StepRegion(
        kind=_choice(values.get("kind"), REGION_KINDS),
        box=None if box is None else _whole_tuple(box, 4),
        mask_sha256=_optional_text(mask_sha256),
        drawn_on=None if drawn_on is None else _whole_tuple(drawn_on, 2),
    )


def _whole_tuple(value: object, length: int) -> Any:
    if not isinstance(value, list) or len(value) != length:
        raise TypeError("expected a list of whole numbers")
    return tuple(_whole(item) for item in value)


def _image_ref(row: sqlite3.Row, prefix: str) -> ImageRef | None:
    if row[f"{prefix}_sha256"] is None:
        return None
    return ImageRef(
        sha256=_text(row[f"{prefix}_sha256"]),
        format=_text(row[f"{prefix}_format"]),
        width=_whole(row[f"{prefix}_width"]),
        height=_whole(row[f"{prefix}_height"]),
    )


def _decode_step(row: sqlite3.Row) -> Step:
    """A step row as a `Step`, every value checked for its type (a row may have been edited)."""
    result = _image_ref(row, "result")
    elapsed = row["elapsed_s"]
    if elapsed is not None and (isinstance(elapsed, bool) or not isinstance(elapsed, int | float)):
        raise TypeError("elapsed_s is not a number")
    return Step(
        step_id=_text(row["step_id"]),
        session_id=_text(row["session_id"]),
        parent_id=_optional_text(row["parent_id"]),
        kind=_choice(row["kind"], ("origin", "edit", "generate")),
        params=_params_from_json(row["params_json"]),
        source=StepSource(
            kind=_choice(row["source_kind"], ("upload", "link", "step", "none")),
            image_sha256=_optional_text(row["source_sha256"]),
            link_url=_optional_text(row["link_url"]),
            uploaded_url=_optional_text(row["uploaded_url"]),
            uploaded_expires_at=_parse_optional_time(row["uploaded_expires_at"]),
        ),
        state=StepState(row["state"]),
        task_id=_optional_text(row["task_id"]),
        result=result,
        created_at=_parse_time(row["created_at"]),
        submitted_at=_parse_optional_time(row["submitted_at"]),
        completed_at=_parse_optional_time(row["completed_at"]),
        elapsed_s=None if elapsed is None else float(elapsed),
        cost_cents=None if row["cost_cents"] is None else _whole(row["cost_cents"]),
        error=_optional_text(row["error"]),
        retry_of=_optional_text(row["retry_of"]),
        region=_region_from(row["region_json"], row["mask_sha256"]),
        raw_result=_image_ref(row, "raw"),
        payer=None if row["payer"] is None else _choice(row["payer"], ("host", "visitor")),
        payer_key=_optional_text(row["payer_key"]),
    )


def _params_from_json(text: str | None) -> EditParams | None:
    if text is None:
        return None
    # Keys a newer studio added are dropped rather than refused: old rows must always load.
    known = {f.name for f in dataclasses.fields(EditParams)}
    values: dict[str, Any] = {k: v for k, v in json.loads(_text(text)).items() if k in known}
    params = EditParams(**values)
    if not (
        isinstance(params.prompt, str)
        and params.model in MODELS
        and (params.aspect_ratio is None or isinstance(params.aspect_ratio, str))
        and params.output_format in OUTPUT_FORMATS
        and isinstance(params.enable_translation, bool)
        and isinstance(params.enable_prompt_expansion, bool)
        and isinstance(params.keep_rest, bool)
    ):
        raise TypeError("the settings of a step are not readable")
    _whole(params.safety_tolerance)
    return params


def _summary(row: sqlite3.Row) -> SessionSummary:
    """A line of the session list; a row that cannot be read is listed as damaged, not dropped."""
    values = dict(row)
    damaged = bool(values.pop("damaged"))
    try:
        return SessionSummary(
            **{
                **values,
                "name": _text(values["name"]),
                "created_at": _parse_time(values["created_at"]),
                "updated_at": _parse_time(values["updated_at"]),
                "cost_cents": _whole(values["cost_cents"]),
            },
            damaged=damaged,
        )
    except _DECODE_ERRORS:
        return SessionSummary(
            session_id=str(values["session_id"]),
            name=values["name"] if isinstance(values["name"], str) else "Damaged session",
            created_at=_EPOCH,
            updated_at=_EPOCH,
            step_count=int(values["step_count"]),
            made_count=int(values["made_count"]),
            pending_count=int(values["pending_count"]),
            cost_cents=0,
            cover_sha256=None,
            damaged=True,
        )


def _damaged(session_id: str, path: Path, error: Exception) -> StoreError:
    log.warning("Session %s is damaged in %s: %s", session_id, path, error)
    return StoreError(
        "This session is damaged in the history database and cannot be opened; "
        "the other sessions are not affected.",
        path=path,
    )


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected text")
    return value


def _optional_text(value: object) -> str | None:
    return None if value is None else _text(value)


def _whole(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("expected a whole number")
    return value


def _choice(value: object, choices: tuple[str, ...]) -> Any:
    if value not in choices:
        raise ValueError(f"expected one of {choices}")
    return value


def _valid_redo(steps: dict[str, Step], current: str, redo: list[str]) -> tuple[str, ...]:
    """The longest part of the saved redo stack that still chains down from `current`.

    Another process may have deleted or moved things since it was saved.
    """
    kept: list[str] = []
    for step_id in reversed(redo):
        step = steps.get(step_id)
        if step is None or step.parent_id != (kept[-1] if kept else current):
            break
        kept.append(step_id)
    return tuple(reversed(kept))


def _touch(db: sqlite3.Connection, session_id: str) -> None:
    db.execute(
        "UPDATE sessions SET updated_at = ? WHERE session_id = ?", (_time(_now()), session_id)
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _time(moment: datetime | None) -> str | None:
    # Fixed width, so that text order is time order in SQL.
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="microseconds")


def _parse_time(text: object) -> datetime:
    moment = datetime.fromisoformat(_text(text))
    if moment.tzinfo is None:
        raise ValueError("a time without a time zone")
    return moment


def _parse_optional_time(text: object) -> datetime | None:
    return None if text is None else _parse_time(text)


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; directories cannot be opened this way on Windows.
    if hasattr(os, "O_DIRECTORY"):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
