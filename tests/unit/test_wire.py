"""Request bodies, both answer shapes, billing, uploads, balances and image signatures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from studio.runapi.errors import InvalidRequestError, UnexpectedResponseError
from studio.runapi.wire import (
    Balance,
    Billing,
    Task,
    TaskRequest,
    UploadedFile,
    image_mime_type,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SOURCE = "https://runapi.ai/files/abc.png"


def _request(**changes: Any) -> TaskRequest:
    fields = {"model": "flux-kontext-pro", "prompt": "make it night"} | changes
    return TaskRequest(**fields)


def test_to_json_drops_none_fields_and_strips_the_prompt():
    assert _request(prompt="  make it night \n").to_json() == {
        "model": "flux-kontext-pro",
        "prompt": "make it night",
    }


def test_to_json_sends_every_contract_field_when_set():
    request = _request(
        source_image_url=SOURCE,
        aspect_ratio="3:4",
        output_format="png",
        enable_translation=False,
        enable_prompt_expansion=True,
        safety_tolerance=2,
        callback_url="https://example.com/hook",
    )
    assert request.to_json() == {
        "model": "flux-kontext-pro",
        "prompt": "make it night",
        "source_image_url": SOURCE,
        "aspect_ratio": "3:4",
        "output_format": "png",
        "enable_translation": False,
        "enable_prompt_expansion": True,
        "safety_tolerance": 2,
        "callback_url": "https://example.com/hook",
    }


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        pytest.param({"model": "flux-dev"}, "model", "must be one of", id="unknown-model"),
        pytest.param({"model": "pro"}, "model", "must be one of", id="short-model-name"),
        pytest.param({"prompt": ""}, "prompt", "must not be blank", id="empty-prompt"),
        pytest.param({"prompt": " \t\n"}, "prompt", "must not be blank", id="blank-prompt"),
        pytest.param({"aspect_ratio": "2:1"}, "aspect_ratio", "21:9, 16:9", id="bad-ratio"),
        pytest.param({"output_format": "webp"}, "output_format", "png or jpeg", id="webp"),
        pytest.param({"enable_translation": "yes"}, "enable_translation", "true", id="not-bool"),
        pytest.param({"safety_tolerance": 7}, "safety_tolerance", "0 to 6", id="generate-7"),
        pytest.param({"safety_tolerance": -1}, "safety_tolerance", "0 to 6", id="negative"),
        pytest.param({"safety_tolerance": True}, "safety_tolerance", "0 to 6", id="bool-safety"),
        pytest.param({"safety_tolerance": 1.5}, "safety_tolerance", "0 to 6", id="fractional"),
        pytest.param(
            {"safety_tolerance": 3, "source_image_url": SOURCE},
            "safety_tolerance",
            "0 to 2 when editing",
            id="edit-3",
        ),
        pytest.param(
            {"source_image_url": "data:image/png;base64,AAAA"},
            "source_image_url",
            "http or https",
            id="data-uri-source",
        ),
        pytest.param({"callback_url": "ftp://x/y"}, "callback_url", "http", id="ftp-callback"),
    ],
)
def test_validate_names_the_bad_field_when_a_field_is_invalid(changes, field, words):
    with pytest.raises(InvalidRequestError) as caught:
        _request(**changes).to_json()
    assert list(caught.value.field_errors) == [field]
    assert words in caught.value.field_errors[field][0]
    assert str(caught.value).startswith("The request is invalid: ")


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"safety_tolerance": 6}, id="generate-6"),
        pytest.param({"safety_tolerance": 0}, id="zero"),
        pytest.param({"safety_tolerance": 2, "source_image_url": SOURCE}, id="edit-2"),
        pytest.param({"model": "flux-kontext-max", "aspect_ratio": "21:9"}, id="max-wide"),
    ],
)
def test_validate_accepts_the_edges_of_each_range(changes):
    _request(**changes).validate()


def test_validate_reports_every_bad_field_at_once():
    with pytest.raises(InvalidRequestError) as caught:
        _request(model="x", prompt="", aspect_ratio="5:4").validate()
    assert set(caught.value.field_errors) == {"model", "prompt", "aspect_ratio"}


@pytest.mark.parametrize(
    ("data", "task_id", "status"),
    [
        pytest.param({"id": "t-1", "status": "pending"}, "t-1", "pending", id="sdk-shape-id"),
        pytest.param(
            {"task_id": "t-2", "status": "processing", "model": "flux-kontext-pro"},
            "t-2",
            "processing",
            id="marketing-shape-task_id",
        ),
        pytest.param({"status": "pending"}, "from-header", "pending", id="id-from-header"),
    ],
)
def test_task_from_json_reads_both_answer_shapes(data, task_id, status):
    task = Task.from_json(data, default_task_id="from-header")
    assert (task.task_id, task.status, task.replayed, task.billing) == (
        task_id,
        status,
        False,
        None,
    )


def test_task_from_json_reads_a_completed_task_with_images_and_billing():
    task = Task.from_json(
        {
            "id": "t-3",
            "status": "completed",
            "images": [{"url": "https://cdn/a.png", "origin_url": "x"}, {"url": "https://cdn/b"}],
            "billing": {
                "reservation": {"amount_cents": 5},
                "settlement": {"charged_amount_cents": 5, "amount_micro_cents": 5_000_000},
                "refund": None,
            },
            "task_replayed": True,
        }
    )
    assert task.image_urls == ("https://cdn/a.png", "https://cdn/b")
    assert task.billing == Billing(reserved_cents=5, charged_cents=5, refunded=False)
    assert task.replayed is True
    assert task.raw["id"] == "t-3"


def test_task_from_json_reads_a_failed_task_error_in_either_shape():
    plain = Task.from_json({"id": "t", "status": "failed", "error": "Content moderated"})
    nested = Task.from_json({"id": "t", "status": "failed", "error": {"message": "Bad source"}})
    assert (plain.error, nested.error) == ("Content moderated", "Bad source")


@pytest.mark.parametrize(
    ("billing", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("free", None, id="not-an-object"),
        pytest.param({}, Billing(refunded=False), id="empty"),
        pytest.param(
            {"reservation": {"amount_cents": 10}, "settlement": None, "refund": None},
            Billing(reserved_cents=10, refunded=False),
            id="reserved-only",
        ),
        pytest.param(
            {"settlement": {"amount_micro_cents": 10_000_000}},
            Billing(charged_cents=10, refunded=False),
            id="micro-cents-only",
        ),
        pytest.param(
            {"reservation": {"amount_cents": 5}, "refund": {"refunded_at": "2025-06-01T12:00Z"}},
            Billing(reserved_cents=5, refunded=True),
            id="refunded",
        ),
    ],
)
def test_billing_from_json(billing, expected):
    assert Billing.from_json(billing) == expected


@pytest.mark.parametrize(
    ("data", "words"),
    [
        pytest.param({"id": "t", "status": "succeeded"}, "unknown task status", id="unknown"),
        pytest.param({"id": "t", "status": None}, "unknown task status", id="missing-status"),
        pytest.param({"status": "pending"}, "without a task id", id="no-id"),
        pytest.param({"id": "t", "status": "completed", "images": []}, "no image", id="no-images"),
        pytest.param(["not", "an", "object"], "without a task", id="a-list"),
    ],
)
def test_task_from_json_raises_a_clear_error_when_the_answer_is_unusable(data, words):
    with pytest.raises(UnexpectedResponseError, match=words):
        Task.from_json(data)


def test_uploaded_file_reads_the_contract_answer():
    uploaded = UploadedFile.from_json(
        {
            "file_name": "in.png",
            "url": "https://runapi.ai/files/in.png",
            "size_bytes": 1234,
            "mime_type": "image/png",
            "created_at": "2025-06-01T12:00:00Z",
            "expires_at": "2025-06-01T13:00:00Z",
        },
        now=NOW,
    )
    assert uploaded == UploadedFile(
        url="https://runapi.ai/files/in.png",
        expires_at=datetime(2025, 6, 1, 13, tzinfo=UTC),
        size_bytes=1234,
        mime_type="image/png",
        file_name="in.png",
    )


@pytest.mark.parametrize(
    "expires_at",
    [
        pytest.param(None, id="absent"),
        pytest.param("next tuesday", id="garbage"),
        pytest.param(10**20, id="huge-epoch"),
    ],
)
def test_uploaded_file_expires_in_an_hour_when_the_answer_does_not_say(expires_at):
    uploaded = UploadedFile.from_json({"url": "https://f/x", "expires_at": expires_at}, now=NOW)
    assert uploaded.expires_at == NOW + timedelta(hours=1)


def test_uploaded_file_reads_a_naive_time_as_utc():
    uploaded = UploadedFile.from_json({"url": "u", "expires_at": "2025-06-01T13:00:00"}, now=NOW)
    assert uploaded.expires_at == datetime(2025, 6, 1, 13, tzinfo=UTC)


def test_uploaded_file_without_a_url_is_unusable():
    with pytest.raises(UnexpectedResponseError):
        UploadedFile.from_json({"file_name": "x"}, now=NOW)


@pytest.mark.parametrize(
    ("data", "cents"),
    [
        pytest.param({"balance_cents": 1234, "paid_balance_cents": 1000}, 1234, id="sdk-shape"),
        pytest.param({"balance": 12.34}, 1234, id="dollars"),
        pytest.param({"balance": "7.5"}, 750, id="dollars-as-text"),
        pytest.param({"data": {"amount_cents": 99}}, 99, id="wrapped-cents"),
        pytest.param({"balance": {"credits": 2}}, 200, id="nested-balance-object"),
        pytest.param({"currency": "usd"}, None, id="unknown-shape"),
        pytest.param([1, 2], None, id="not-an-object"),
        pytest.param({"balance_cents": True}, None, id="bool-is-not-a-number"),
    ],
)
def test_balance_from_json_is_tolerant(data, cents):
    assert Balance.from_json(data).balance_cents == cents


@pytest.mark.parametrize(
    ("data", "mime_type"),
    [
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\0" * 8, "image/png", id="png"),
        pytest.param(b"\xff\xd8\xff\xe0" + b"\0" * 8, "image/jpeg", id="jpeg"),
        pytest.param(b"RIFF\x10\0\0\0WEBPVP8 ", "image/webp", id="webp"),
        pytest.param(b"GIF89a" + b"\0" * 8, "image/gif", id="gif89"),
        pytest.param(b"GIF87a" + b"\0" * 8, "image/gif", id="gif87"),
        pytest.param(b"RIFF\x10\0\0\0WAVEfmt ", None, id="riff-but-wav"),
        pytest.param(b"<html>", None, id="html"),
        pytest.param(b"", None, id="empty"),
        pytest.param(b"\x89PN", None, id="truncated-png"),
    ],
)
def test_image_mime_type(data, mime_type):
    assert image_mime_type(data) == mime_type
