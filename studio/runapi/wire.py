"""What RunAPI's answers mean: the create body, both task answer shapes, uploads, balances, images.

Imports httpx and the stdlib only (and this package's `errors`); nothing else of ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

import httpx

from .errors import InvalidRequestError, UnexpectedResponseError, message_of

TaskStatus = Literal["pending", "processing", "completed", "failed"]
TASK_STATUSES: tuple[str, ...] = get_args(TaskStatus)
# Contract "Create body". Repeated from `studio.params` on purpose: this package imports nothing
# of ours, so it can be lifted out whole.
MODELS = ("flux-kontext-pro", "flux-kontext-max")
ASPECT_RATIOS = ("21:9", "16:9", "4:3", "1:1", "3:4", "9:16")
OUTPUT_FORMATS = ("png", "jpeg")
SAFETY_MAX_EDIT = 2
SAFETY_MAX_GENERATE = 6
# Contract "Headers": Idempotency-Key is up to 512 characters.
MAX_IDEMPOTENCY_KEY_CHARS = 512
# Contract "Uploading": uploaded files expire one hour after upload.
UPLOAD_LIFETIME = timedelta(hours=1)


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskRequest:
    """One create call, in the contract's own field names; None fields are not sent."""

    model: str
    prompt: str
    source_image_url: str | None = None
    aspect_ratio: str | None = None
    output_format: str | None = None
    enable_translation: bool | None = None
    enable_prompt_expansion: bool | None = None
    safety_tolerance: int | None = None
    callback_url: str | None = None

    @property
    def is_edit(self) -> bool:
        return self.source_image_url is not None

    def validate(self) -> None:
        """Check every field as the service would.

        Raises:
            InvalidRequestError: naming every bad field in `field_errors`.
        """
        errors: dict[str, list[str]] = {}
        if self.model not in MODELS:
            errors["model"] = [f"must be one of {', '.join(MODELS)}"]
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            errors["prompt"] = ["must not be blank"]
        if self.aspect_ratio is not None and self.aspect_ratio not in ASPECT_RATIOS:
            errors["aspect_ratio"] = [f"must be one of {', '.join(ASPECT_RATIOS)}"]
        if self.output_format is not None and self.output_format not in OUTPUT_FORMATS:
            errors["output_format"] = ["must be png or jpeg"]
        for name in ("enable_translation", "enable_prompt_expansion"):
            if getattr(self, name) not in (None, True, False):
                errors[name] = ["must be true or false"]
        top = SAFETY_MAX_EDIT if self.is_edit else SAFETY_MAX_GENERATE
        tolerance = self.safety_tolerance
        if tolerance is not None and (
            isinstance(tolerance, bool)
            or not isinstance(tolerance, int)
            or not 0 <= tolerance <= top
        ):
            mode = "editing" if self.is_edit else "generating"
            errors["safety_tolerance"] = [f"must be a whole number from 0 to {top} when {mode}"]
        for name in ("source_image_url", "callback_url"):
            value = getattr(self, name)
            if value is not None and not _is_http_url(value):
                errors[name] = ["must be an http or https URL"]
        if errors:
            raise InvalidRequestError(field_errors=errors)

    def to_json(self) -> dict[str, Any]:
        """The create body, validated, with None fields dropped and the prompt stripped."""
        self.validate()
        body = {f.name: getattr(self, f.name) for f in fields(self)}
        body["prompt"] = self.prompt.strip()
        return {name: value for name, value in body.items() if value is not None}


@dataclass(frozen=True, kw_only=True, slots=True)
class Billing:
    """What a task cost, as far as the answer says; each part may be missing."""

    reserved_cents: int | None = None
    charged_cents: int | None = None
    refunded: bool | None = None

    @classmethod
    def from_json(cls, data: object) -> Billing | None:
        """`{reservation: {amount_cents}, settlement: {...}, refund: {refunded_at}}`, or None."""
        if not isinstance(data, Mapping):
            return None
        reservation = _mapping(data.get("reservation"))
        settlement = _mapping(data.get("settlement"))
        refund = _mapping(data.get("refund"))
        charged = _int(settlement.get("charged_amount_cents"))
        micro = _number(settlement.get("amount_micro_cents"))
        if charged is None and micro is not None:
            charged = round(micro / 1_000_000)
        return cls(
            reserved_cents=_int(reservation.get("amount_cents")),
            charged_cents=charged,
            refunded=bool(refund.get("refunded_at")),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Task:
    """RunAPI's view of one task, from either answer shape (`id` or `task_id`)."""

    task_id: str
    status: TaskStatus
    image_urls: tuple[str, ...] = ()
    error: str | None = None
    billing: Billing | None = None
    replayed: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: object, *, default_task_id: str | None = None) -> Task:
        """Parse a create or read answer.

        Args:
            data: The decoded JSON answer.
            default_task_id: Used when the body names no id (e.g. from `X-RunAPI-Task-Id`).

        Raises:
            UnexpectedResponseError: no id, an unknown status, or a completed task without images.
        """
        if not isinstance(data, dict):
            raise UnexpectedResponseError("RunAPI answered without a task; try again later.")
        task_id = data.get("id") or data.get("task_id") or default_task_id
        if not isinstance(task_id, str) or not task_id:
            raise UnexpectedResponseError("RunAPI answered without a task id; try again later.")
        status = data.get("status")
        if status not in TASK_STATUSES:
            raise UnexpectedResponseError(
                f"RunAPI reported an unknown task status {str(status)[:40]!r}; "
                "the studio may need an update.",
                task_id=task_id,
            )
        images = data.get("images")
        urls = tuple(
            image["url"]
            for image in (images if isinstance(images, list) else [])
            if isinstance(image, Mapping) and isinstance(image.get("url"), str)
        )
        if status == "completed" and not urls:
            raise UnexpectedResponseError(
                "RunAPI reported the task completed but sent no image; try again.", task_id=task_id
            )
        return cls(
            task_id=task_id,
            status=status,
            image_urls=urls,
            error=message_of(data.get("error")),
            billing=Billing.from_json(data.get("billing")),
            replayed=data.get("task_replayed") is True,
            raw=data,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class UploadedFile:
    """A source image stored by RunAPI; put `url` in `source_image_url` before `expires_at`."""

    url: str
    expires_at: datetime
    size_bytes: int | None = None
    mime_type: str | None = None
    file_name: str | None = None

    @classmethod
    def from_json(cls, data: object, *, now: datetime) -> UploadedFile:
        """Parse the upload answer; a missing or unreadable `expires_at` means `now` + 1 hour."""
        if not isinstance(data, Mapping) or not isinstance(data.get("url"), str):
            raise UnexpectedResponseError("RunAPI accepted the upload but sent no file URL.")
        file_name = data.get("file_name")
        mime_type = data.get("mime_type")
        return cls(
            url=data["url"],
            expires_at=_datetime(data.get("expires_at")) or now + UPLOAD_LIFETIME,
            size_bytes=_int(data.get("size_bytes")),
            mime_type=mime_type if isinstance(mime_type, str) else None,
            file_name=file_name if isinstance(file_name, str) else None,
        )


# The balance answer's shape is *unknown* (contract). The official SDK reads `balance_cents`;
# we also accept a few likely alternatives: keys ending in `_cents` are cents, bare
# `balance`/`amount`/`credits` numbers are taken as dollars, and `data`/`account` wrappers are
# looked into.
_CENTS_KEYS = ("balance_cents", "available_cents", "amount_cents", "credits_cents")
_DOLLAR_KEYS = ("balance", "amount", "credits", "available_balance")
_WRAPPER_KEYS = ("data", "account", "balance", "wallet")


@dataclass(frozen=True, kw_only=True, slots=True)
class Balance:
    """The account balance; `balance_cents` is None when the answer's shape is not recognised."""

    balance_cents: int | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: object) -> Balance:
        return cls(
            balance_cents=_find_cents(data, depth=0),
            raw=data if isinstance(data, dict) else {"value": data},
        )


def _find_cents(data: object, *, depth: int) -> int | None:
    if not isinstance(data, Mapping) or depth > 2:
        return None
    for key in _CENTS_KEYS:
        if (cents := _number(data.get(key))) is not None:
            return round(cents)
    for key in _DOLLAR_KEYS:
        if (dollars := _number(data.get(key))) is not None:
            return round(dollars * 100)
    for key in _WRAPPER_KEYS:
        if (found := _find_cents(data.get(key), depth=depth + 1)) is not None:
            return found
    return None


# Magic numbers of the formats a result may come in (PNG and JPEG from the contract; WebP and
# GIF in case a CDN converts).
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def image_mime_type(data: bytes) -> str | None:
    """The MIME type from the first bytes (PNG, JPEG, WebP, GIF), or None for anything else."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for signature, mime_type in _SIGNATURES:
        if data.startswith(signature):
            return mime_type
    return None


def _is_http_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError):
        return False
    return url.scheme in ("http", "https") and bool(url.host)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _int(value: object) -> int | None:
    number = _number(value)
    return round(number) if number is not None else None


def _datetime(value: object) -> datetime | None:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            parsed = datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    else:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
