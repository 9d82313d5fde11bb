"""One damaged session never breaks the list: real SQLite files, corrupted by SQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from studio.history import new_id
from studio.params import EditParams
from studio.store import DB_NAME, Store, StoreError
from tests.integration.test_store import run_edit, start

DAMAGED = (
    "This session is damaged in the history database and cannot be opened; "
    "the other sessions are not affected."
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path / "home")
    yield store
    store.close()


def _corrupt(store: Store, sql: str, *params: object) -> None:
    """Change the file behind the store's back, as another program (or a hand) would."""
    with sqlite3.connect(store.db_path) as db:
        db.execute(sql, params)


def _two_sessions(store: Store) -> tuple[str, str]:
    good = run_edit(store, start(store, "good"), "warmer")
    bad = run_edit(store, start(store, "bad"), "colder")
    return good.session_id, bad.session_id


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param("UPDATE steps SET cost_cents = 'abc' WHERE session_id = ?", id="cost-text"),
        pytest.param("UPDATE steps SET elapsed_s = 'slow' WHERE session_id = ?", id="elapsed"),
        pytest.param("UPDATE steps SET result_width = 'wide' WHERE session_id = ?", id="width"),
        pytest.param("UPDATE sessions SET created_at = 'soon' WHERE session_id = ?", id="date"),
        pytest.param("UPDATE sessions SET name = X'00FF' WHERE session_id = ?", id="name-blob"),
    ],
)
def test_a_damaged_session_is_listed_as_damaged_and_the_rest_works(store, sql):
    good, bad = _two_sessions(store)
    _corrupt(store, sql, bad)

    listed = {s.session_id: s for s in store.list_sessions()}
    assert set(listed) == {good, bad}
    assert listed[bad].damaged
    assert not listed[good].damaged
    assert listed[good].cost_cents == 5
    assert isinstance(listed[bad].cost_cents, int)
    with pytest.raises(StoreError) as refused:
        store.load_session(bad)
    assert str(refused.value) == DAMAGED
    assert store.load_session(good).session_id == good


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param("UPDATE steps SET params_json = '{not json' WHERE session_id = ?", id="json"),
        pytest.param(
            """UPDATE steps SET params_json = '{"prompt": 5, "model": "pro"}'
            WHERE session_id = ? AND kind = 'edit'""",
            id="prompt-number",
        ),
        pytest.param(
            """UPDATE steps SET params_json = '{"prompt": "x", "model": "ultra"}'
            WHERE session_id = ? AND kind = 'edit'""",
            id="model",
        ),
        pytest.param("UPDATE sessions SET redo_json = '{' WHERE session_id = ?", id="redo"),
        pytest.param("UPDATE steps SET created_at = 'soon' WHERE session_id = ?", id="step-date"),
        pytest.param("UPDATE steps SET state = 'paused' WHERE session_id = ?", id="state"),
    ],
)
def test_opening_a_damaged_session_is_one_sentence(store, sql):
    good, bad = _two_sessions(store)
    with sqlite3.connect(store.db_path) as db:
        db.execute("PRAGMA ignore_check_constraints = ON")  # as a careless editor might
        db.execute(sql, (bad,))
    with pytest.raises(StoreError) as refused:
        store.load_session(bad)
    assert str(refused.value) == DAMAGED
    assert {s.session_id for s in store.list_sessions()} == {good, bad}
    assert store.load_session(good).session_id == good


def test_a_damaged_unfinished_step_is_not_resumed_and_does_not_stop_the_others(store):
    sessions = [start(store, name) for name in ("one", "two")]
    queued = []
    for session in sessions:
        session = session.add_step(new_id(), EditParams(prompt="later"), session.created_at)
        store.save_step(session.current)
        queued.append(session.current.step_id)
    _corrupt(store, "UPDATE steps SET cost_cents = 'x' WHERE step_id = ?", queued[0])
    assert [s.step_id for s in store.unfinished_steps()] == [queued[1]]


def test_the_file_itself_is_left_as_it_is(store):
    _, bad = _two_sessions(store)
    _corrupt(store, "UPDATE steps SET cost_cents = 'abc' WHERE session_id = ?", bad)
    before = (store.home / DB_NAME).read_bytes()
    store.list_sessions()
    with pytest.raises(StoreError):
        store.load_session(bad)
    assert (store.home / DB_NAME).read_bytes() == before
