"""A small fault drill in CI (`kontext-studio bench --drill` runs the full one, 500 edits).

The engine runs in a child process against the simulator while a quarter of every call fails
(429 with Retry-After, 503, dropped connections, slow answers, failed tasks, expired result
URLs); once as it is, once killed with SIGKILL halfway and started again. Counts only, no times.
"""

from __future__ import annotations

import pytest

from studio.bench.drill import run_drill

pytestmark = pytest.mark.slow
EDITS = 24


@pytest.mark.parametrize("kill", [False, True], ids=["faults", "faults-and-sigkill"])
def test_no_edit_vanishes_and_none_is_created_twice_when_a_quarter_of_calls_fail(sim, kill):
    counts = run_drill(sim, edits=EDITS, rate=0.25, kill=kill, engine_only=True)

    assert sum(counts.faults.values()) >= EDITS  # the service misbehaved all along
    # Every edit ended stored with its image, or failed with a reason, or its caller was told.
    assert counts.vanished == 0
    assert counts.completed + counts.failed_with_reason + counts.refused == EDITS
    assert all(reason for reason in counts.reasons)
    # Retried creates replayed the first task: one task per edit, none without its step.
    assert counts.created_twice == 0
    assert counts.stored_twice == 0
    assert counts.orphan_tasks == 0
    # Every task's first result link had expired: fetched again, never failed once charged.
    assert counts.charged_without_image == 0
    assert counts.create_requests >= counts.tasks
    assert counts.answered_after
    if not kill:
        # The engine took every edit (every call to it was sent before any kill could lose one).
        assert counts.refused == 0
