"""The one step summary that the CLI's --json, the API and MCP all answer with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from studio.history import ImageRef, Session, SessionSummary
from studio.params import EditParams
from studio.summary import SUMMARY_KEYS, listed_session, step_summary

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
PHOTO = ImageRef(sha256="a" * 64, format="jpeg", width=1200, height=900)
RESULT = ImageRef(sha256="b" * 64, format="png", width=1184, height=880)


def session(origin: ImageRef | None = PHOTO, **params: object) -> Session:
    started = Session.start("s1", "Holiday", origin, T0, origin_step_id="origin")
    return started.add_step("e1", EditParams(prompt="make it night", **params), T0)  # type: ignore[arg-type]


def test_a_completed_edit_names_its_ids_cost_seconds_and_the_ratio_it_matched():
    queued = session(model="max").current
    step = queued.start("task-1", T0 + timedelta(seconds=1))
    step = step.complete(RESULT, T0 + timedelta(seconds=8.456), cost_cents=10)
    summary = step_summary(step, image_url="http://127.0.0.1:7860/x.png")
    assert list(summary) == list(SUMMARY_KEYS)
    assert summary == {
        "session_id": "s1",
        "step_id": "e1",
        "state": "completed",
        "model": "max",
        "aspect_ratio": "4:3",  # "match the source", read from the result's own shape
        "prompt": "make it night",
        "task_id": "task-1",
        "seconds": 7.46,
        "cost_cents": 10,
        "error": None,
        "image_url": "http://127.0.0.1:7860/x.png",
        "region": None,  # the model's output is the step's image
        "raw_image_url": None,
    }


def test_a_step_kept_to_a_region_names_it_and_offers_the_models_own_output():
    started = Session.start("s1", "Holiday", PHOTO, T0, origin_step_id="origin")
    params = EditParams(prompt="add a hat", keep_rest=True)
    queued = started.add_step("e1", params, T0).current
    raw = ImageRef(sha256="c" * 64, format="png", width=1184, height=880)
    full = ImageRef(sha256="d" * 64, format="png", width=1200, height=900)
    step = queued.start("task-1", T0).complete(
        full, T0 + timedelta(seconds=3), cost_cents=5, raw_result=raw, found_mask_sha256="e" * 64
    )
    summary = step_summary(step, image_url="/full.png", raw_image_url="/raw.png")
    assert (summary["region"], summary["image_url"], summary["raw_image_url"]) == (
        "auto",
        "/full.png",
        "/raw.png",
    )
    assert step.region is not None
    assert step.region.mask_sha256 == "e" * 64  # the region found, kept with the step


@pytest.mark.parametrize(
    ("origin", "ratio", "expected"),
    [
        pytest.param(PHOTO, None, "match", id="edit-matching-its-source"),
        pytest.param(PHOTO, "9:16", "9:16", id="edit-with-a-ratio"),
        pytest.param(None, None, "1:1", id="generation-default"),
    ],
)
def test_an_unfinished_step_says_the_ratio_it_asked_for(origin, ratio, expected):
    step = session(origin, aspect_ratio=ratio).current
    summary = step_summary(step)
    assert (summary["state"], summary["aspect_ratio"]) == ("queued", expected)
    assert summary["cost_cents"] is None  # not charged yet
    assert summary["seconds"] is None


def test_a_failed_step_carries_its_error_and_no_image():
    step = session().current.fail("Content policy", T0 + timedelta(seconds=2), cost_cents=0)
    summary = step_summary(step)
    assert (summary["state"], summary["error"], summary["cost_cents"]) == (
        "failed",
        "Content policy",
        0,
    )
    assert summary["image_url"] is None


def test_the_origin_step_has_no_model_or_prompt():
    summary = step_summary(session().origin)
    assert (summary["model"], summary["prompt"], summary["aspect_ratio"]) == (None, None, "4:3")


def test_a_listed_session_says_when_it_is_damaged():
    listed = SessionSummary(
        session_id="s1",
        name="Holiday",
        created_at=T0,
        updated_at=T0,
        step_count=2,
        made_count=2,
        pending_count=0,
        cost_cents=15,
        cover_sha256=None,
        damaged=True,
    )
    assert listed_session(listed) == {
        "session_id": "s1",
        "name": "Holiday",
        "created_at": T0.isoformat(),
        "updated_at": T0.isoformat(),
        "step_count": 2,
        "cost_cents": 15,
        "damaged": True,
    }
