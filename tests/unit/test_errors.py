"""The error tree: one status mapping, every error body shape, plain sentences, no key anywhere."""

from __future__ import annotations

import httpx
import pytest

from studio.runapi.errors import (
    AuthenticationError,
    ConflictError,
    ImageRejectedError,
    InsufficientCreditsError,
    InvalidRequestError,
    NetworkError,
    NotFoundError,
    RateLimitedError,
    RunAPIError,
    ServiceUnavailableError,
    TaskFailedError,
    TaskTimeoutError,
    UnexpectedResponseError,
    error_class_for_status,
    error_from_response,
    parse_error_body,
    redact,
)

KEY = "sk-live-SECRET-0123456789abcdef"
_REQUEST = httpx.Request("GET", "https://runapi.ai/api/v1/flux_kontext/text_to_image/t-1")


def _response(status: int, body: str = "", **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, text=body, request=_REQUEST)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        pytest.param(400, InvalidRequestError, id="400"),
        pytest.param(401, AuthenticationError, id="401"),
        pytest.param(402, InsufficientCreditsError, id="402"),
        pytest.param(403, RunAPIError, id="403-unmapped"),
        pytest.param(404, NotFoundError, id="404"),
        pytest.param(409, ConflictError, id="409"),
        pytest.param(413, ImageRejectedError, id="413"),
        pytest.param(415, ImageRejectedError, id="415"),
        pytest.param(422, InvalidRequestError, id="422"),
        pytest.param(429, RateLimitedError, id="429"),
        pytest.param(500, ServiceUnavailableError, id="500"),
        pytest.param(502, ServiceUnavailableError, id="502"),
        pytest.param(503, ServiceUnavailableError, id="503"),
        pytest.param(504, ServiceUnavailableError, id="504"),
        pytest.param(599, ServiceUnavailableError, id="599"),
    ],
)
def test_error_class_for_status(status, cls):
    assert error_class_for_status(status) is cls
    error = error_from_response(_response(status, '{"error": "nope"}'))
    assert type(error) is cls
    assert error.status == status


def test_image_rejected_is_an_invalid_request():
    assert issubclass(ImageRejectedError, InvalidRequestError)


def test_error_from_response_keeps_ids_and_the_service_message():
    error = error_from_response(
        _response(404, '{"error": "Task not found"}', **{"x-request-id": "req-9"}), task_id="t-1"
    )
    assert (error.request_id, error.task_id, error.detail) == ("req-9", "t-1", "Task not found")
    assert error.body == {"error": "Task not found"}


def test_error_from_response_takes_the_task_id_from_the_header_when_not_given():
    error = error_from_response(_response(409, "{}", **{"x-runapi-task-id": "t-7"}))
    assert error.task_id == "t-7"


def test_validation_errors_carry_field_messages_into_the_sentence():
    body = '{"error": "Validation failed", "errors": {"prompt": ["is required"]}}'
    error = error_from_response(_response(422, body))
    assert isinstance(error, InvalidRequestError)
    assert error.field_errors == {"prompt": ["is required"]}
    assert str(error) == "The request is invalid: prompt is required."


def test_a_400_without_fields_shows_the_service_message():
    error = error_from_response(_response(400, '{"error": {"message": "Bad image URL."}}'))
    assert str(error) == "RunAPI refused the request: Bad image URL."


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        pytest.param("2", 2.0, id="seconds"),
        pytest.param("later", None, id="garbage"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_rate_limited_error_carries_retry_after(retry_after, expected):
    headers = {"retry-after": retry_after} if retry_after else {}
    error = error_from_response(_response(429, "", **headers))
    assert isinstance(error, RateLimitedError)
    assert error.retry_after_s == expected


def test_an_html_proxy_page_becomes_a_service_error_with_its_title():
    page = "<html><head><title>503 Service Temporarily Unavailable</title></head></html>"
    error = error_from_response(_response(503, page))
    assert isinstance(error, ServiceUnavailableError)
    assert error.detail == "503 Service Temporarily Unavailable"
    assert "<" not in str(error)


def _every_error() -> list[RunAPIError]:
    """One of each kind, built from answers that (wrongly) echo the key in every shape."""
    echoes = [
        f'{{"error": "bad key {KEY}"}}',
        f'{{"error": {{"code": "auth", "message": "Bearer {KEY}"}}}}',
        f'{{"error": "Validation failed", "errors": {{"api_key": ["{KEY} is wrong"]}}}}',
        f"<html><title>Denied {KEY}</title><body>Authorization: Bearer {KEY}</body></html>",
        f"plain {KEY}",
    ]
    statuses = [400, 401, 402, 403, 404, 409, 413, 415, 422, 429, 500, 503]
    errors = [
        error_from_response(_response(status, echo, **{"retry-after": "1"}), secrets=[KEY])
        for status in statuses
        for echo in echoes
    ]
    return [
        *errors,
        TaskFailedError("t-1", "Content moderated"),
        TaskFailedError("t-1", None),
        TaskTimeoutError("t-1", 900.4),
        NetworkError(),
        UnexpectedResponseError(),
        InvalidRequestError(field_errors={"prompt": ["must not be blank"]}),
    ]


@pytest.mark.parametrize("error", _every_error(), ids=lambda e: type(e).__name__)
def test_every_error_reads_as_one_plain_sentence(error):
    text = str(error)
    assert text[0].isupper()
    assert text.endswith(".")
    assert "{" not in text
    assert "<" not in text
    assert "Traceback" not in text


@pytest.mark.parametrize("error", _every_error(), ids=lambda e: type(e).__name__)
def test_the_key_appears_in_no_str_repr_body_or_detail_of_any_error(error):
    for text in (str(error), repr(error), str(error.body), str(error.detail), str(error.args)):
        assert KEY not in text


def test_repr_names_the_class_and_ids_only():
    error = RateLimitedError(status=429, request_id="r-1", retry_after_s=2.0)
    assert repr(error) == "RateLimitedError(status=429, request_id='r-1', retry_after_s=2.0)"


@pytest.mark.parametrize(
    ("error", "sentence"),
    [
        pytest.param(
            TaskFailedError("t-1", "Content moderated"),
            "The edit failed on RunAPI: Content moderated.",
            id="failed-with-message",
        ),
        pytest.param(TaskFailedError("t-1"), "The edit failed on RunAPI.", id="failed-bare"),
        pytest.param(
            TaskTimeoutError("t-1", 12.4),
            "RunAPI had not finished after 12 seconds; the task may still finish, "
            "so check again later.",
            id="timeout",
        ),
        pytest.param(
            AuthenticationError(),
            "RunAPI did not accept the API key; check RUNAPI_API_KEY.",
            id="auth",
        ),
    ],
)
def test_sentences(error, sentence):
    assert str(error) == sentence


def test_task_errors_keep_their_task_id_and_numbers():
    failed = TaskFailedError("t-1", "Content moderated")
    timed_out = TaskTimeoutError("t-2", 3.5)
    assert (failed.task_id, failed.message) == ("t-1", "Content moderated")
    assert (timed_out.task_id, timed_out.waited_s) == ("t-2", 3.5)


@pytest.mark.parametrize(
    ("text", "message", "code", "field_errors"),
    [
        pytest.param('{"error": "Task not found"}', "Task not found", None, {}, id="error-string"),
        pytest.param(
            '{"error": {"code": "insufficient_credits", "message": "Top up"}}',
            "Top up",
            "insufficient_credits",
            {},
            id="error-object",
        ),
        pytest.param(
            '{"error": "Validation failed", "errors": {"prompt": ["is required"], "model": "bad"}}',
            "Validation failed",
            None,
            {"prompt": ["is required"], "model": ["bad"]},
            id="validation",
        ),
        pytest.param(
            '{"errors": ["prompt is required"]}',
            None,
            None,
            {"request": ["prompt is required"]},
            id="validation-list",
        ),
        pytest.param('{"detail": "Not allowed"}', "Not allowed", None, {}, id="detail"),
        pytest.param(
            "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
            "<body><h1>Bad Gateway</h1></body></html>",
            "502 Bad Gateway",
            None,
            {},
            id="html-title",
        ),
        pytest.param(
            "<html><body><h1>Service &amp; <b>unavailable</b></h1></body></html>",
            "Service & unavailable",
            None,
            {},
            id="html-h1-with-entities-and-tags",
        ),
        pytest.param("<html><body>oops</body></html>", None, None, {}, id="html-without-title"),
        pytest.param("upstream timed out\nmore", "upstream timed out", None, {}, id="plain-text"),
        pytest.param("", None, None, {}, id="empty"),
        pytest.param("[1, 2]", None, None, {}, id="json-list"),
    ],
)
def test_parse_error_body(text, message, code, field_errors):
    body = parse_error_body(text)
    assert (body.message, body.code, body.field_errors) == (message, code, field_errors)


def test_parse_error_body_shortens_a_very_long_message():
    assert len(parse_error_body("x" * 10_000).message or "") <= 300


def test_redact_replaces_every_secret_and_ignores_empty_ones():
    assert redact("key sk-1 and sk-1 again", ["", "sk-1"]) == "key ********** and ********** again"
