"""Building histories for tests: a step replaced by a later record of itself."""

from __future__ import annotations

from dataclasses import replace

from studio.history import Session, Step


def with_step(session: Session, step: Step) -> Session:
    """`session` holding `step` in place of the record of the same id (as the store reads it
    back after the step advanced)."""
    assert step.step_id in session.steps
    return replace(session, steps={**session.steps, step.step_id: step})
