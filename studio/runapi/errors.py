"""The RunAPI error tree, the one status -> class mapping, and reading error answers.

    RunAPIError                      status, request_id, task_id, body (redacted)
    ├── InvalidRequestError          400, 422 (field_errors)
    │   └── ImageRejectedError       413, 415: the upload is too large or not an image
    ├── AuthenticationError          401
    ├── InsufficientCreditsError     402
    ├── NotFoundError                404: unknown task, or an expired file or result
    ├── ConflictError                409: Idempotency-Key reused with another body
    ├── RateLimitedError             429 (retry_after_s)
    ├── ServiceUnavailableError      5xx
    ├── TaskFailedError              the task ended `failed` (task_id, message)
    ├── TaskTimeoutError             the task did not finish in time (task_id, waited_s)
    ├── NetworkError                 no answer: connect, read or protocol errors, timeouts
    └── UnexpectedResponseError      an answer we cannot use: unknown status, bad JSON, not an image

`str(error)` is one plain sentence that is safe to show a user; details live in attributes.
Also reads error answers in every shape (`error_from_response`). Imports httpx and the stdlib only.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from .policy import parse_retry_after

# Kept error bodies are cut here: enough to debug, too little to carry a whole HTML page around.
MAX_KEPT_BODY_CHARS = 2000
REDACTED = "**********"


class RunAPIError(Exception):
    """Base of every error the client raises.

    Attributes:
        status: The HTTP status, or None when there was no answer.
        request_id: The service's `x-request-id`, for support.
        task_id: The task concerned, when known.
        body: The parsed error body with secrets redacted, or None.
        detail: The service's own message (redacted), or None.
    """

    sentence = "RunAPI answered with an error; try again, and report it if it keeps happening."

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        request_id: str | None = None,
        task_id: str | None = None,
        body: Any = None,
        detail: str | None = None,
    ) -> None:
        self.status = status
        self.request_id = request_id
        self.task_id = task_id
        self.body = body
        self.detail = detail
        super().__init__(message or self.sentence)

    def __repr__(self) -> str:
        parts = [f"{name}={value!r}" for name, value in self._repr_fields() if value is not None]
        return f"{type(self).__name__}({', '.join(parts)})"

    def _repr_fields(self) -> list[tuple[str, object]]:
        return [("status", self.status), ("request_id", self.request_id), ("task_id", self.task_id)]


class InvalidRequestError(RunAPIError):
    """The request was refused as invalid (400, 422, or our own check before sending).

    Attributes:
        field_errors: Each field's messages, e.g. `{"prompt": ["is required"]}`; may be empty.
    """

    sentence = "RunAPI refused the request as invalid; check the settings and try again."

    def __init__(
        self,
        message: str | None = None,
        *,
        field_errors: dict[str, list[str]] | None = None,
        **kwargs: Any,
    ) -> None:
        self.field_errors = dict(field_errors or {})
        if message is None and self.field_errors:
            problems = "; ".join(
                f"{field} {text}" for field, texts in self.field_errors.items() for text in texts
            )
            message = f"The request is invalid: {problems}."
        super().__init__(message, **kwargs)


class ImageRejectedError(InvalidRequestError):
    """RunAPI refused an uploaded image: too large (413) or not a supported type (415)."""

    sentence = "RunAPI refused the image: it is too large or not a supported type."


class AuthenticationError(RunAPIError):
    sentence = "RunAPI did not accept the API key; check RUNAPI_API_KEY."


class InsufficientCreditsError(RunAPIError):
    sentence = "The RunAPI account has too few credits for this; top it up and try again."


class NotFoundError(RunAPIError):
    sentence = "RunAPI could not find that task or file; it may have expired."


class ConflictError(RunAPIError):
    sentence = "RunAPI already has a different request under this idempotency key."


class RateLimitedError(RunAPIError):
    """Too many requests (429).

    Attributes:
        retry_after_s: Seconds the service asked us to wait, when it said.
    """

    sentence = "RunAPI is busy with too many requests; wait a moment and try again."

    def __init__(
        self, message: str | None = None, *, retry_after_s: float | None = None, **kwargs: Any
    ) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message, **kwargs)

    def _repr_fields(self) -> list[tuple[str, object]]:
        return [*super()._repr_fields(), ("retry_after_s", self.retry_after_s)]


class ServiceUnavailableError(RunAPIError):
    sentence = "RunAPI is unavailable right now; try again in a minute."


class TaskFailedError(RunAPIError):
    """The task ended `failed`; `message` is the service's reason (redacted)."""

    def __init__(self, task_id: str, message: str | None = None, **kwargs: Any) -> None:
        self.message = message
        reason = (message or "").strip().rstrip(".")
        sentence = (
            f"The edit failed on RunAPI: {reason}." if reason else "The edit failed on RunAPI."
        )
        super().__init__(sentence, task_id=task_id, detail=message, **kwargs)


class TaskTimeoutError(RunAPIError):
    """The task was not finished within the deadline; it may still finish later."""

    def __init__(self, task_id: str, waited_s: float, **kwargs: Any) -> None:
        self.waited_s = waited_s
        sentence = (
            f"RunAPI had not finished after {waited_s:.0f} seconds; "
            "the task may still finish, so check again later."
        )
        super().__init__(sentence, task_id=task_id, **kwargs)

    def _repr_fields(self) -> list[tuple[str, object]]:
        return [*super()._repr_fields(), ("waited_s", round(self.waited_s, 3))]


class NetworkError(RunAPIError):
    sentence = "Could not reach RunAPI; check the network connection and try again."


class UnexpectedResponseError(RunAPIError):
    sentence = "RunAPI sent an answer the studio does not understand; try again later."


def error_class_for_status(status: int) -> type[RunAPIError]:
    """The error class for an HTTP error status: the one place statuses map to classes."""
    if status in (400, 422):
        return InvalidRequestError
    if status in (413, 415):
        return ImageRejectedError
    if status >= 500:
        return ServiceUnavailableError
    return _BY_STATUS.get(status, RunAPIError)


_BY_STATUS: dict[int, type[RunAPIError]] = {
    401: AuthenticationError,
    402: InsufficientCreditsError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitedError,
}


@dataclass(frozen=True, kw_only=True, slots=True)
class ErrorBody:
    """An error answer read tolerantly: JSON in the contract's three shapes, HTML, or text."""

    message: str | None = None
    code: str | None = None
    field_errors: dict[str, list[str]] = field(default_factory=dict)
    parsed: Any = None


_HTML = re.compile(r"<!doctype html|<html", re.IGNORECASE)
_HTML_TITLE = re.compile(r"<(title|h1)[^>]*>(.*?)</\1>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")


def parse_error_body(text: str) -> ErrorBody:
    """Read an error body: `{"error": "..."}`, `{"error": {"code", "message"}}`,
    `{"error": ..., "errors": {field: [messages]}}`, an HTML page from a proxy, or plain text."""
    text = text.strip()
    if not text:
        return ErrorBody()
    if _HTML.search(text[:1000]):
        match = _HTML_TITLE.search(text)
        title = _short(html.unescape(_TAG.sub("", match.group(2)))) if match else None
        return ErrorBody(message=title, parsed={"html_title": title})
    try:
        data = json.loads(text)
    except ValueError:
        return ErrorBody(message=_short(text.splitlines()[0]), parsed=_short(text))
    if not isinstance(data, dict):
        return ErrorBody(parsed=data)
    error = data.get("error")
    code = error.get("code") if isinstance(error, Mapping) else data.get("code")
    message = message_of(error) or message_of(data.get("message") or data.get("detail"))
    return ErrorBody(
        message=message,
        code=str(code) if isinstance(code, str | int) else None,
        field_errors=_field_errors(data.get("errors")),
        parsed=data,
    )


def error_from_response(
    response: httpx.Response, *, secrets: Iterable[str] = (), task_id: str | None = None
) -> RunAPIError:
    """The typed error for an error answer, with every secret redacted from what it keeps.

    Args:
        response: An answer with a 4xx or 5xx status, already read.
        secrets: Strings that must not survive into the error (the API key).
        task_id: The task concerned, if the caller knows it.
    """
    status = response.status_code
    body = parse_error_body(redact(response.text, secrets))
    kept = body.parsed
    if isinstance(kept, str | dict) and len(str(kept)) > MAX_KEPT_BODY_CHARS:
        kept = str(kept)[:MAX_KEPT_BODY_CHARS]
    common: dict[str, Any] = {
        "status": status,
        "request_id": response.headers.get("x-request-id"),
        "task_id": task_id or response.headers.get("x-runapi-task-id"),
        "body": kept,
        "detail": body.message,
    }
    cls = error_class_for_status(status)
    if issubclass(cls, InvalidRequestError):
        message = None
        if not body.field_errors and body.message:
            message = f"RunAPI refused the request: {body.message.rstrip('.')}."
        return cls(message, field_errors=body.field_errors, **common)
    if cls is RateLimitedError:
        retry_after_s = parse_retry_after(response.headers.get("retry-after"))
        return RateLimitedError(retry_after_s=retry_after_s, **common)
    if cls is RunAPIError:
        message = f"RunAPI answered with status {status}; try again, and report it if it persists."
        return RunAPIError(message, **common)
    return cls(**common)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every non-empty secret replaced by asterisks."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def _field_errors(value: object) -> dict[str, list[str]]:
    if isinstance(value, Mapping):
        result: dict[str, list[str]] = {}
        for name, messages in value.items():
            texts = messages if isinstance(messages, list) else [messages]
            result[str(name)] = [_short(str(text)) for text in texts]
        return result
    if isinstance(value, list) and value:
        return {"request": [_short(str(text)) for text in value]}
    return {}


def message_of(value: object) -> str | None:
    """A short one-line message from a string or a `{"message": ...}` object, else None."""
    if isinstance(value, Mapping):
        value = value.get("message")
    return _short(value) if isinstance(value, str) and value.strip() else None


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
