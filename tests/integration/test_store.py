"""The store on real SQLite files and image files in tmp_path: round trips, restarts, damage,
migrations, and several threads and processes writing at once."""

from __future__ import annotations

import dataclasses
import hashlib
import multiprocessing
import os
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from studio.history import ImageRef, Session, StepState, new_id
from studio.params import EditParams
from studio.store import DB_NAME, KEPT_DURATIONS, MIGRATIONS, Store, StoreError
from tests.support.sessions import with_step

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
PHOTO_BYTES = b"\x89PNG pretend photo bytes"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path / "home")
    yield store
    store.close()


def start(store: Store, session_id: str = "s1", *, owner: str | None = None) -> Session:
    photo = store.put_image(PHOTO_BYTES, format="png", width=640, height=480)
    session = Session.start(
        session_id, "Trip", photo, T0, origin_step_id=f"{session_id}-origin", owner=owner
    )
    store.create_session(session)
    return session


def run_edit(
    store: Store, session: Session, prompt: str, *, fail: bool = False, step_id: str | None = None
) -> Session:
    """One edit as the engine runs it: stored queued, then each state saved as it happens."""
    now = datetime.now(UTC)
    session = session.add_step(step_id or new_id(), EditParams(prompt=prompt), now)
    step = session.current
    store.save_step(step)
    step = step.start(f"task-{step.step_id}", now)
    store.save_step(step)
    if fail:
        step = step.fail("The service refused the prompt.", now, cost_cents=0)
    else:
        ref = store.put_image(prompt.encode(), format="png", width=1024, height=768)
        step = step.complete(ref, now + timedelta(seconds=7), cost_cents=5)
    store.save_step(step)
    session = with_step(session, step)
    store.set_current(session)
    return session


def branching_session(store: Store) -> Session:
    session = run_edit(store, start(store, owner="visitor-1"), "warmer", step_id="a")
    session = run_edit(store, session, "add a boat", step_id="b")
    session = session.make_current("a")
    store.set_current(session)
    session = run_edit(store, session, "add a dog", step_id="c", fail=True)
    session = session.retry("c", "c2", T0)
    store.save_step(session.current)
    store.set_current(session)
    return session


def test_a_session_with_branches_round_trips(store):
    session = branching_session(store)
    assert store.load_session("s1") == session
    assert [s.step_id for s in session.children("a")] == ["b", "c", "c2"]
    assert store.load_session("s1").steps["c2"].retry_of == "c"


def test_a_restart_finds_everything_where_the_user_left_it(tmp_path, store):
    session = branching_session(store)
    session = session.make_current("b").undo()
    store.set_current(session)
    store.close()
    reopened = Store.open(tmp_path / "home")
    try:
        loaded = reopened.load_session("s1")
        assert loaded == session
        assert (loaded.current_step_id, loaded.redo_stack) == ("a", ("b",))
        boat = loaded.steps["b"].result
        assert boat is not None
        assert reopened.read_image(boat.sha256) == b"add a boat"
        assert [s.step_id for s in reopened.unfinished_steps()] == ["c2"]
    finally:
        reopened.close()


def test_two_store_instances_see_each_others_writes(tmp_path, store):
    other = Store.open(tmp_path / "home")
    try:
        session = run_edit(other, start(other), "warmer")
        assert store.load_session("s1") == session
    finally:
        other.close()


def test_step_states_are_saved_as_they_advance(store):
    session = start(store).add_step("a", EditParams(prompt="blue", model="max"), T0)
    queued = session.current
    store.save_step(queued)
    assert store.load_session("s1").steps["a"] == queued
    running = queued.with_upload("https://files.example/a.png", T0 + timedelta(hours=1))
    running = running.start("task-1", T0 + timedelta(seconds=1))
    store.save_step(running)
    assert store.load_session("s1").steps["a"] == running
    assert [s.step_id for s in store.unfinished_steps()] == ["a"]
    done = running.complete(
        ImageRef(sha256="e" * 64, format="png", width=8, height=8), T0, cost_cents=10
    )
    store.save_step(done)
    store.save_step(done)  # saving the same finished step again is harmless
    assert store.load_session("s1").steps["a"] == done
    assert store.unfinished_steps() == []


def test_a_finished_step_is_never_rewritten(store):
    session = run_edit(store, start(store), "warmer", step_id="a")
    late_failure = dataclasses.replace(session.steps["a"], state=StepState.FAILED, error="late")
    with pytest.raises(StoreError, match="finished and cannot be changed"):
        store.save_step(late_failure)
    assert store.load_session("s1").steps["a"].state is StepState.COMPLETED


def test_a_step_for_an_unknown_session_is_refused(store):
    orphan = start(store).add_step("a", EditParams(prompt="x"), T0).current
    with pytest.raises(StoreError, match="conflicts"):
        store.save_step(dataclasses.replace(orphan, session_id="nope"))


def test_new_steps_their_name_and_the_current_step_are_stored_together(store):
    session = start(store).add_step("a", EditParams(prompt="warmer"), T0)
    store.add_steps([session.current], session, "Warmer")
    stored = store.load_session("s1")
    assert (stored.name, stored.current_step_id, stored.steps["a"].state) == (
        "Warmer",
        "a",
        StepState.QUEUED,
    )
    # A current step that cannot be recorded: nothing of it is stored, the steps neither.
    more = stored.add_step("b", EditParams(prompt="cooler"), T0)
    with pytest.raises(StoreError, match="no such session or step"):
        store.add_steps([more.current], dataclasses.replace(more, current_step_id="ghost"), "X")
    stored = store.load_session("s1")
    assert ("b" in stored.steps, stored.name, stored.current_step_id) == (False, "Warmer", "a")


def _without(session, doomed):
    """`session` with the steps `doomed` gone (as a cancel leaves it)."""
    steps = {i: s for i, s in session.steps.items() if i not in doomed}
    redo = tuple(i for i in session.redo_stack if i not in doomed)
    return dataclasses.replace(session, steps=steps, redo_stack=redo)


def test_delete_steps_removes_a_branch_and_moves_current(store):
    session = branching_session(store).make_current("b")
    store.set_current(session)
    doomed = session.subtree("b")
    session = _without(session.make_current("a"), doomed)
    store.delete_steps(session, doomed)
    loaded = store.load_session("s1")
    assert loaded == session
    assert "b" not in loaded.steps
    assert loaded.current_step_id == "a"


def test_delete_steps_is_refused_when_another_process_added_a_child(tmp_path, store):
    session = run_edit(store, start(store), "warmer", step_id="a")
    other = Store.open(tmp_path / "home")
    try:
        run_edit(other, other.load_session("s1"), "cooler", step_id="late-child")
    finally:
        other.close()
    stale = session.make_current("s1-origin")
    with pytest.raises(StoreError, match="conflicts"):
        store.delete_steps(_without(stale, ("a",)), ("a",))
    assert set(store.load_session("s1").steps) == {"s1-origin", "a", "late-child"}


def test_delete_steps_is_refused_for_an_unfinished_step(store):
    session = start(store).add_step("a", EditParams(prompt="x"), T0)
    store.save_step(session.current)
    with pytest.raises(StoreError, match="still running"):
        store.delete_steps(session.make_current("s1-origin"), ("a",))


def test_a_missing_session_or_step_is_a_store_error(store):
    with pytest.raises(StoreError, match="no such session"):
        store.load_session("nope")
    with pytest.raises(StoreError, match="no such session"):
        store.rename_session("nope", "x")
    session = start(store)
    with pytest.raises(StoreError, match="no such session or step"):
        store.set_current(dataclasses.replace(session, current_step_id="ghost"))


def test_a_redo_stack_that_no_longer_chains_is_trimmed_on_load(tmp_path, store):
    session = run_edit(store, run_edit(store, start(store), "a", step_id="a"), "b", step_id="b")
    store.set_current(session.undo().undo())
    with sqlite3.connect(tmp_path / "home" / DB_NAME) as db:
        db.execute("""UPDATE sessions SET redo_json = '["b", "ghost", "a"]'""")
    db.close()
    assert store.load_session("s1").redo_stack == ("a",)


def test_list_sessions_summarises_and_filters_by_owner(store):
    branching_session(store)
    run_edit(store, start(store, "s2", owner="visitor-2"), "bluer")
    start(store, "s3")
    store.rename_session("s3", "Untouched")
    assert [s.session_id for s in store.list_sessions()] == ["s3", "s2", "s1"]
    (mine,) = store.list_sessions(owner="visitor-1")
    session = store.load_session("s1")
    assert (mine.session_id, mine.name, mine.step_count, mine.cost_cents) == ("s1", "Trip", 4, 10)
    # Of those, two are made (a failed attempt is not) and one, the retry, is still to come.
    assert (mine.made_count, mine.pending_count) == (2, 1)
    # The current step (a retry) has no image yet, so the cover is the newest image.
    assert mine.cover_sha256 == session.steps["b"].result.sha256
    assert mine.created_at == T0
    assert mine.updated_at > T0
    (untouched,) = [s for s in store.list_sessions() if s.session_id == "s3"]
    assert (untouched.name, untouched.step_count, untouched.cover_sha256) == (
        "Untouched",
        0,
        hashlib.sha256(PHOTO_BYTES).hexdigest(),
    )


def test_images_are_content_addressed_and_byte_identical(tmp_path, store):
    data = bytes(range(256)) * 1000
    ref = store.put_image(data, format="png", width=10, height=20)
    sha = hashlib.sha256(data).hexdigest()
    assert ref == ImageRef(sha256=sha, format="png", width=10, height=20)
    path = store.image_path(sha)
    assert path == tmp_path / "home" / "images" / sha[:2] / f"{sha}.png"
    assert path.read_bytes() == data
    assert store.read_image(sha) == data
    assert store.put_image(data, format="png", width=10, height=20) == ref


def test_image_writes_leave_no_temporary_files(tmp_path, store):
    for n in range(20):
        store.put_image(f"image {n}".encode(), format="jpeg", width=1, height=1)
    store.put_image(b"image 0", format="jpeg", width=1, height=1)
    files = [p for p in (tmp_path / "home" / "images").rglob("*") if p.is_file()]
    assert len(files) == 20
    assert all(p.name == f"{p.stem}.jpeg" and len(p.stem) == 64 for p in files)


def test_a_damaged_image_file_is_written_again(store):
    ref = store.put_image(b"whole image", format="png", width=1, height=1)
    store.image_path(ref.sha256).write_bytes(b"whole")
    store.put_image(b"whole image", format="png", width=1, height=1)
    assert store.read_image(ref.sha256) == b"whole image"


@pytest.mark.parametrize(
    "sha256",
    [
        pytest.param("0" * 64, id="missing"),
        pytest.param("../" * 10, id="not-an-id"),
        pytest.param("A" * 64, id="upper-case"),
    ],
)
def test_image_path_refuses_what_is_not_stored(store, sha256):
    with pytest.raises(StoreError):
        store.image_path(sha256)


def _garbage(data: bytes) -> bytes:
    return b"this is not a database " * 200


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _zeroed_header(data: bytes) -> bytes:
    return bytes(100) + data[100:]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(_garbage, id="garbage-bytes"),
        pytest.param(_truncated, id="truncated"),
        pytest.param(_zeroed_header, id="zeroed-header"),
    ],
)
def test_a_damaged_database_is_reported_and_left_untouched(tmp_path, damage):
    home = tmp_path / "home"
    store = Store.open(home)
    for n in range(40):  # enough rows for several pages, so a truncation cuts into them
        run_edit(store, start(store, f"session-{n}"), f"edit {n} " + "x" * 200)
    store.close()
    db_path = home / DB_NAME
    damaged = damage(db_path.read_bytes())
    db_path.write_bytes(damaged)

    with pytest.raises(StoreError) as caught:
        Store.open(home)

    assert str(db_path) in str(caught.value)
    assert caught.value.path == db_path
    assert db_path.read_bytes() == damaged


def test_a_database_from_a_newer_studio_is_refused(tmp_path):
    home = tmp_path / "home"
    Store.open(home).close()
    with sqlite3.connect(home / DB_NAME) as db:
        db.execute("INSERT INTO _migrations VALUES ('999_from_the_future', '2030-01-01')")
    db.close()
    with pytest.raises(StoreError, match="newer Kontext Studio"):
        Store.open(home)


def _schema(db_path: Path) -> dict[str, list[str]]:
    with sqlite3.connect(db_path) as db:
        names = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        tables = {n: [c[1] for c in db.execute(f"PRAGMA table_info({n})")] for (n,) in names}
        indexes = db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
    db.close()
    return {**tables, "indexes": sorted(n for (n,) in indexes)}


def test_migrations_build_the_final_schema_in_order(tmp_path):
    home = tmp_path / "home"
    Store.open(home, migrations=MIGRATIONS[:1]).close()
    assert _schema(home / DB_NAME)["indexes"] == []
    Store.open(home).close()
    Store.open(home).close()  # reopening applies nothing twice

    assert _schema(home / DB_NAME) == {
        "_migrations": ["name", "applied_at"],
        "sessions": [
            "session_id",
            "name",
            "owner",
            "created_at",
            "updated_at",
            "current_step_id",
            "redo_json",
        ],
        "steps": [
            "step_id",
            "session_id",
            "parent_id",
            "kind",
            "params_json",
            "source_kind",
            "source_sha256",
            "link_url",
            "uploaded_url",
            "uploaded_expires_at",
            "state",
            "task_id",
            "result_sha256",
            "result_format",
            "result_width",
            "result_height",
            "created_at",
            "submitted_at",
            "completed_at",
            "elapsed_s",
            "cost_cents",
            "error",
            "retry_of",
            "region_json",
            "mask_sha256",
            "raw_sha256",
            "raw_format",
            "raw_width",
            "raw_height",
            "payer",
            "payer_key",
        ],
        "spend": ["step_id", "day", "owner", "address", "cents"],
        "poll_durations": ["n", "model", "seconds", "after_s"],
        "address_owners": ["address", "owner"],
        "new_visitors": ["address", "at"],
        "pending_choices": ["session_id", "from_step_id", "step_ids_json"],
        "indexes": [
            "new_visitors_by_time",
            "poll_durations_by_model",
            "sessions_by_owner",
            "spend_by_day",
            "steps_by_mask_sha256",
            "steps_by_parent",
            "steps_by_raw_sha256",
            "steps_by_result_sha256",
            "steps_by_session",
            "steps_by_source_sha256",
            "steps_unfinished",
        ],
    }
    with sqlite3.connect(home / DB_NAME) as db:
        applied = [n for (n,) in db.execute("SELECT name FROM _migrations ORDER BY rowid")]
        journal_mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    db.close()
    assert applied == [name for name, _ in MIGRATIONS]
    assert journal_mode == "wal"


def test_params_are_stored_as_json_and_read_back(tmp_path, store):
    params = EditParams(
        prompt="Make it night", model="max", aspect_ratio="9:16", output_format="jpeg"
    )
    session = start(store).add_step("a", params, T0)
    store.save_step(session.current)
    with sqlite3.connect(tmp_path / "home" / DB_NAME) as db:
        (text,) = db.execute("SELECT params_json FROM steps WHERE step_id = 'a'").fetchone()
    db.close()
    assert '"model": "max"' in text
    assert store.load_session("s1").steps["a"].params == params


def test_a_closed_store_refuses_work(store):
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.list_sessions()


# Concurrency: the workers run in threads of this process and in spawned processes, so they live
# at module level where a spawned child can import them.

WORKERS = 4
# Enough edits that the workers overlap for a while, few enough to stay fast.
EDITS_EACH = 10


def _edit_in_turn(home: str, session_ids: list[str], worker: str) -> None:
    store = Store.open(Path(home))
    try:
        for n in range(EDITS_EACH):
            store.put_image(b"the same bytes from everyone", format="png", width=1, height=1)
            for session_id in session_ids:
                run_edit(store, store.load_session(session_id), f"{worker} {session_id} {n}")
    finally:
        store.close()


def _check_no_step_lost_or_mixed_up(store: Store, expected: dict[str, set[str]]) -> None:
    for session_id, prompts in expected.items():
        session = store.load_session(session_id)
        edits = [s for s in session.steps.values() if s.kind != "origin"]
        assert sorted(s.params.prompt for s in edits if s.params) == sorted(prompts)
        for step in edits:
            assert step.session_id == session_id
            assert step.state is StepState.COMPLETED
            assert step.parent_id in session.steps
            assert step.result is not None
            assert step.params is not None
            assert store.read_image(step.result.sha256) == step.params.prompt.encode()
        assert session.current.state is StepState.COMPLETED


def _expected(workers: list[str]) -> dict[str, set[str]]:
    shared = {f"{w} shared {n}" for w in workers for n in range(EDITS_EACH)}
    own = {w: {f"{w} {w} {n}" for n in range(EDITS_EACH)} for w in workers}
    return {"shared": shared, **own}


def test_threads_adding_steps_at_once_lose_nothing(tmp_path, store):
    workers = [f"thread{n}" for n in range(WORKERS)]
    for session_id in ["shared", *workers]:
        start(store, session_id)
    home = str(tmp_path / "home")
    threads = [
        threading.Thread(target=_edit_in_turn, args=(home, ["shared", w], w)) for w in workers
    ]
    # One more thread shares this test's Store instance rather than opening its own.
    threads.append(threading.Thread(target=_share_one_store, args=(store,)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    _check_no_step_lost_or_mixed_up(store, _expected(workers))
    assert len(store.load_session("solo").steps) == 1 + EDITS_EACH


def _share_one_store(store: Store) -> None:
    session = start(store, "solo")
    for n in range(EDITS_EACH):
        session = run_edit(store, session, f"solo {n}")


def test_processes_adding_steps_at_once_lose_nothing(tmp_path, store):
    workers = [f"process{n}" for n in range(WORKERS)]
    for session_id in ["shared", *workers]:
        start(store, session_id)
    home = str(tmp_path / "home")
    with multiprocessing.get_context("spawn").Pool(WORKERS) as pool:
        pool.starmap(_edit_in_turn, [(home, ["shared", w], w) for w in workers], chunksize=1)
    _check_no_step_lost_or_mixed_up(store, _expected(workers))


def _write_then_die(home: str) -> None:
    store = Store.open(Path(home))
    session = run_edit(store, start(store, "crash"), "before the crash", step_id="a")
    store.save_step(session.add_step("b", EditParams(prompt="in flight"), T0).current)
    os._exit(0)  # no close, no checkpoint: as if the process were killed


def test_a_process_that_dies_without_closing_loses_nothing(tmp_path):
    process = multiprocessing.get_context("spawn").Process(
        target=_write_then_die, args=(str(tmp_path / "home"),)
    )
    process.start()
    process.join(timeout=60)
    assert process.exitcode == 0
    store = Store.open(tmp_path / "home")
    try:
        session = store.load_session("crash")
        assert session.steps["a"].state is StepState.COMPLETED
        assert [s.step_id for s in store.unfinished_steps()] == ["b"]
    finally:
        store.close()


def test_recent_durations_are_what_the_schedule_saw_latest_per_model_oldest_first(store):
    session = start(store)
    now = datetime.now(UTC)
    finished = [("pro", 3.0), ("max", 9.0), ("pro", 4.0), ("pro", None), ("max", 8.0)]
    finished += [("pro", 5.0)]
    for n, (model, seen_s) in enumerate(finished):
        session = session.add_step(new_id(), EditParams(prompt="p", model=model), now)
        step = session.current.start(f"task-{n}", now + timedelta(seconds=n))
        if seen_s is None:  # a failed task says nothing about how long a finish takes
            step = step.fail("refused", now + timedelta(seconds=n + 1), cost_cents=0)
        else:  # the step's own elapsed time (upload, download) is not what is learned
            ref = store.put_image(f"{n}".encode(), format="png", width=8, height=8)
            step = step.complete(ref, now + timedelta(seconds=n + seen_s + 1.5))
        store.save_step(step, poll_seen=None if seen_s is None else (seen_s, seen_s - 2))
        session = with_step(session, step)
    assert store.recent_durations(per_model=2) == {"pro": [4.0, 5.0], "max": [9.0, 8.0]}
    assert store.recent_durations()["pro"] == [3.0, 4.0, 5.0]
    # Each with the read before it, which saw the task unfinished: the bracket it lies in.
    assert store.recent_samples()["pro"] == [(3.0, 1.0), (4.0, 2.0), (5.0, 3.0)]
    # Only the latest are kept, per model, however busy the other model is.
    for n in range(KEPT_DURATIONS + 5):
        session = session.add_step(new_id(), EditParams(prompt="p"), now)
        step = session.current.start(f"more-{n}", now)
        ref = store.put_image(f"more {n}".encode(), format="png", width=8, height=8)
        store.save_step(step.complete(ref, now), poll_seen=(1.0 + n, 0.0))
    kept = store.recent_durations(per_model=100)
    assert kept["max"] == [9.0, 8.0]
    assert kept["pro"] == [1.0 + n for n in range(5, KEPT_DURATIONS + 5)]


def test_a_secret_is_made_once_kept_private_and_read_by_every_later_opening(tmp_path):
    first = Store.open(tmp_path)
    secret = first.secret("visitor-tokens")
    first.close()
    again = Store.open(tmp_path)
    assert again.secret("visitor-tokens") == secret
    assert len(secret) >= 32
    assert again.secret("other") != secret
    again.close()
    assert (tmp_path / "visitor-tokens.key").stat().st_mode & 0o077 == 0


def test_a_pending_choice_is_kept_across_a_reopen_and_goes_with_its_session(tmp_path):
    """Results waiting for one to be kept: written, read after the store is opened again,
    cleared, and gone with their session."""
    home = tmp_path / "home"
    store = Store.open(home)
    session = start(store)
    a = run_edit(store, session, "night").current_step_id
    b = run_edit(store, session, "night").current_step_id
    store.note_choice("s1", session.current_step_id, [a, b])
    store.close()
    store = Store.open(home)
    try:
        assert store.pending_choice("s1") == (session.current_step_id, (a, b))
        store.note_choice("s1", None, [b, a])  # (a new picture: made from nothing)
        assert store.pending_choice("s1") == (None, (b, a))
        store.note_choice("s1", None, None)
        assert store.pending_choice("s1") is None
        store.note_choice("s1", session.current_step_id, [a, b])
        store.delete_session("s1")
        assert store.pending_choice("s1") is None
    finally:
        store.close()
