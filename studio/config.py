"""`Settings` (frozen) and `Secret`, read once from flags and the environment by `cli`.

Imports nothing of ours. Every other module takes these values as arguments.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_BASE_URL = "https://runapi.ai"
APP_NAME = "kontext-studio"


class Secret:
    """A string that never shows itself in `str`, `repr`, f-strings or tracebacks (Starlette's)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The real value, for the one place that must send it (the HTTP header)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("a Secret is not pickled")


def _default_home() -> Path:
    from platformdirs import user_data_path

    return user_data_path(APP_NAME, appauthor=False)


def _flag(value: str | None) -> bool | None:
    if value is None or value.strip() == "":
        return None
    return value.strip().lower() in {"1", "true", "yes", "on"}


# Whole-number settings read from the environment as they are.
_INT_VARIABLES = {
    "visitor_budget_cents": "KONTEXT_STUDIO_VISITOR_BUDGET_CENTS",
    "total_budget_cents": "KONTEXT_STUDIO_TOTAL_BUDGET_CENTS",
    "visitor_max_running": "KONTEXT_STUDIO_VISITOR_MAX_RUNNING",
    "visitor_edits_per_minute": "KONTEXT_STUDIO_VISITOR_EDITS_PER_MINUTE",
    "visitor_upload_bytes": "KONTEXT_STUDIO_VISITOR_UPLOAD_BYTES",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """Everything configurable. Precedence: argument > environment > default."""

    api_key: Secret | None = field(default=None, repr=False)
    base_url: str = DEFAULT_BASE_URL
    home: Path = field(default_factory=_default_home)
    # Hosted mode: the studio is shared with others; links may not reach private addresses,
    # visitors bring their own key, and each sees only their own sessions.
    hosted: bool = False
    host: str = "127.0.0.1"
    port: int = 7860
    # Seconds. The overall wait for one task; the official SDK's run() waits 900 s.
    task_deadline_s: float = 900.0
    request_timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    # Multiplies the poll schedule (studio/runapi/policy.py); below 1 only for a fast simulator,
    # as the test suite runs one.
    poll_scale: float = 1.0
    # Intake caps (bytes and pixels); see studio/images.py for why these numbers.
    max_upload_bytes: int = 50 * 1024 * 1024
    # Set when the studio runs on its own simulator (no key configured): the server's edits go
    # there, while a visitor's own key still goes to `base_url`.
    simulator_url: str | None = None
    # Hosted mode only: what the server's key may spend for visitors a day (None: never; each
    # visitor brings a key), per visitor and for all together, and each visitor's caps.
    visitor_budget_cents: int | None = None
    total_budget_cents: int | None = None
    visitor_max_running: int = 2
    visitor_edits_per_minute: int = 10
    visitor_upload_bytes: int = 200 * 1024 * 1024
    # How fast the built-in simulator finishes tasks: "demo", "fast" or "quick" (checked by cli).
    sim_latency: str = "demo"

    @property
    def simulator(self) -> bool:
        return self.simulator_url is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from `environ` (default `os.environ`); non-None `overrides` win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if key := env.get("RUNAPI_API_KEY", "").strip():
            values["api_key"] = Secret(key)
        if base := env.get("RUNAPI_BASE_URL", "").strip():
            values["base_url"] = base
        if home := env.get("KONTEXT_STUDIO_HOME", "").strip():
            values["home"] = Path(home).expanduser()
        if (hosted := _flag(env.get("KONTEXT_STUDIO_HOSTED"))) is not None:
            values["hosted"] = hosted
        if deadline := env.get("KONTEXT_STUDIO_TASK_DEADLINE_S", "").strip():
            values["task_deadline_s"] = float(deadline)
        for name, variable in _INT_VARIABLES.items():
            if text := env.get(variable, "").strip():
                values[name] = int(text)
        if latency := env.get("KONTEXT_STUDIO_SIM_LATENCY", "").strip().lower():
            values["sim_latency"] = latency
        if scale := env.get("KONTEXT_STUDIO_POLL_SCALE", "").strip():
            values["poll_scale"] = float(scale)
        known = {f.name for f in fields(cls)}
        for name, value in overrides.items():
            if name not in known:
                raise TypeError(f"unknown setting {name!r}")
            if value is not None:
                values[name] = (
                    Secret(value) if name == "api_key" and isinstance(value, str) else value
                )
        return cls(**values)
