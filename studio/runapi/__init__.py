"""The RunAPI client for Flux Kontext: `client`, `errors`, `policy` (pure), `wire` (bodies).

Imports httpx and the standard library only, nothing else of ours, so it can be lifted out whole.
"""

from .client import DEFAULT_BASE_URL, MAX_RESULT_BYTES, RunAPIClient
from .errors import (
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
)
from .policy import learned_poll_delays, poll_delays
from .schedule import LearnedSchedule
from .wire import Balance, Billing, Task, TaskRequest, TaskStatus, UploadedFile

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_RESULT_BYTES",
    "AuthenticationError",
    "Balance",
    "Billing",
    "ConflictError",
    "ImageRejectedError",
    "InsufficientCreditsError",
    "InvalidRequestError",
    "LearnedSchedule",
    "NetworkError",
    "NotFoundError",
    "RateLimitedError",
    "RunAPIClient",
    "RunAPIError",
    "ServiceUnavailableError",
    "Task",
    "TaskFailedError",
    "TaskRequest",
    "TaskStatus",
    "TaskTimeoutError",
    "UnexpectedResponseError",
    "UploadedFile",
    "learned_poll_delays",
    "poll_delays",
]
