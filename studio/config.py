"""`Settings` (frozen) and `Secret`, read once from flags and the environment by `cli`.

Imports nothing of ours. Every other module takes these values as arguments.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://runapi.ai"
APP_NAME = "kontext-studio"
# Where a Space's app must listen: every interface, on the port the Space routes to (7860).
SPACE_HOST = "0.0.0.0"
DEFAULT_HOST = "127.0.0.1"


class SettingsError(ValueError):
    """A flag or variable that cannot be used; `str()` is one sentence (never a password)."""


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
    "address_budget_cents": "KONTEXT_STUDIO_ADDRESS_BUDGET_CENTS",
    "address_upload_bytes": "KONTEXT_STUDIO_ADDRESS_UPLOAD_BYTES",
    "identities_per_hour": "KONTEXT_STUDIO_IDENTITIES_PER_HOUR",
    "proxy_hops": "KONTEXT_STUDIO_PROXY_HOPS",
    "events_per_s": "KONTEXT_STUDIO_EVENTS_PER_S",
}


Login = tuple[str, Secret]


def parse_logins(pairs: Iterable[str], *, source: str) -> tuple[Login, ...]:
    """`USER:PASSWORD` items as (user, password) pairs; the password is held as a `Secret`.

    Raises:
        SettingsError: an item without a user or a password (`source` names where it came from).
    """
    logins = []
    for pair in pairs:
        user, colon, password = pair.partition(":")
        if not colon or not user.strip() or not password:
            raise SettingsError(f"{source} takes USER:PASSWORD, with neither part empty.")
        logins.append((user.strip(), Secret(password)))
    return tuple(logins)


def is_loopback_host(host: str) -> bool:
    """Whether an address to listen on is reachable from this machine only."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a name for another interface, or 0.0.0.0 / :: (every interface)


def hosted_reasons(*, share: bool, host: str, space: bool) -> tuple[str, ...]:
    """What makes the studio reachable by others, each of which turns hosted mode on."""
    reasons = []
    if share:
        reasons.append("--share")
    if not is_loopback_host(host):
        reasons.append(f"--host {host}")
    if space:
        reasons.append("a Hugging Face Space (SPACE_ID)")
    return tuple(reasons)


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """Everything configurable. Precedence: argument > environment > default."""

    api_key: Secret | None = field(default=None, repr=False)
    base_url: str = DEFAULT_BASE_URL
    home: Path = field(default_factory=_default_home)
    # Hosted mode: the studio is shared with others; links may not reach private addresses,
    # visitors bring their own key, and each sees only their own sessions. `from_env` turns it on
    # for a share link, a non-loopback host and a Space (`hosted_reasons`).
    hosted: bool = False
    host: str = DEFAULT_HOST
    port: int = 7860
    # Ask Gradio for a public share link (and keep serving locally if none can be made).
    share: bool = False
    # Logins for Gradio's own sign-in page: (user, password); empty means no sign-in.
    auth: tuple[Login, ...] = field(default=(), repr=False)
    # The path prefix a reverse proxy serves the studio under ("" for none); Gradio's root_path.
    root_path: str = ""
    # Running on a Hugging Face Space (SPACE_ID is set).
    space: bool = False
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
    # What the server's key may spend a day for all visitors from one network address (None:
    # three visitors' budgets), and how many new visitors one address may become in an hour:
    # so that fresh tokens do not buy fresh budgets.
    address_budget_cents: int | None = None
    # What all visitors from one network address may keep on disk together (None: three
    # visitors' shares).
    address_upload_bytes: int | None = None
    identities_per_hour: int = 20
    # Page events and API calls all visitors together send a second, shared equally among the
    # network addresses sending them when more than a few do (`ui.turns.EventRate`).
    events_per_s: int = 48
    # The secret visitor tokens are signed with (None: one kept in the data directory).
    visitor_secret: Secret | None = field(default=None, repr=False)
    # Trusted proxies in front of the studio, whose X-Forwarded-For and X-Forwarded-Proto are
    # believed (a Space has one); 0 for none.
    proxy_hops: int = 0
    # Origins besides the studio itself (and Hugging Face) that may show it in a frame.
    frame_ancestors: tuple[str, ...] = ()
    # How fast the built-in simulator finishes tasks: "demo", "fast" or "quick" (checked by cli).
    sim_latency: str = "demo"
    # Gradio's traffic monitoring (`/monitoring`, `/monitoring/summary`: every visitor's request
    # counts), off unless the host asks for it (KONTEXT_STUDIO_MONITORING=1).
    monitoring: bool = False
    # A C2PA certificate chain and private key (PEM, ES256) to sign every result with
    # (KONTEXT_STUDIO_C2PA_CERT, KONTEXT_STUDIO_C2PA_KEY; needs the `c2pa` extra). None: XMP only.
    c2pa_cert: Path | None = None
    c2pa_key: Path | None = None

    @property
    def simulator(self) -> bool:
        return self.simulator_url is not None

    @property
    def addresses_apart(self) -> bool:
        """Whether clients' network addresses tell them apart: not through a share link's
        tunnel, where every visitor is one address (and a turn or a cap for that address
        would be everyone's, for anyone to use up)."""
        return not self.share

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from `environ` (default `os.environ`); non-None `overrides` win.

        `auth` may be given as `USER:PASSWORD` strings. Hosted mode is on when asked for
        (`hosted=True`, `KONTEXT_STUDIO_HOSTED=1`) and whenever others can reach the studio (a
        share link, a non-loopback host, a Space), unless `KONTEXT_STUDIO_HOSTED=0` turns it off,
        which is logged as a warning.

        Raises:
            SettingsError: a value that cannot be used, in one sentence.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if env.get("SPACE_ID", "").strip():
            values["space"] = True
            values["host"] = SPACE_HOST
            values["proxy_hops"] = 1  # the Space's own proxy, which serves it over HTTPS
        if logins := env.get("KONTEXT_STUDIO_AUTH", "").strip():
            pairs = [pair for pair in logins.split(",") if pair.strip()]
            values["auth"] = parse_logins(pairs, source="KONTEXT_STUDIO_AUTH")
        if key := env.get("RUNAPI_API_KEY", "").strip():
            values["api_key"] = Secret(key)
        if secret := env.get("KONTEXT_STUDIO_SECRET", "").strip():
            values["visitor_secret"] = Secret(secret)
        if ancestors := env.get("KONTEXT_STUDIO_FRAME_ANCESTORS", "").split():
            values["frame_ancestors"] = tuple(ancestors)
        if base := env.get("RUNAPI_BASE_URL", "").strip():
            values["base_url"] = base
        if home := env.get("KONTEXT_STUDIO_HOME", "").strip():
            values["home"] = Path(home).expanduser()
        hosted_env = _flag(env.get("KONTEXT_STUDIO_HOSTED"))
        if deadline := env.get("KONTEXT_STUDIO_TASK_DEADLINE_S", "").strip():
            values["task_deadline_s"] = _number(deadline, "KONTEXT_STUDIO_TASK_DEADLINE_S")
        for name, variable in _INT_VARIABLES.items():
            if text := env.get(variable, "").strip():
                values[name] = _whole(text, variable)
        if latency := env.get("KONTEXT_STUDIO_SIM_LATENCY", "").strip().lower():
            values["sim_latency"] = latency
        for name in ("c2pa_cert", "c2pa_key"):
            if path := env.get(f"KONTEXT_STUDIO_{name.upper()}", "").strip():
                values[name] = Path(path).expanduser()
        if (monitoring := _flag(env.get("KONTEXT_STUDIO_MONITORING"))) is not None:
            values["monitoring"] = monitoring
        if scale := env.get("KONTEXT_STUDIO_POLL_SCALE", "").strip():
            values["poll_scale"] = _number(scale, "KONTEXT_STUDIO_POLL_SCALE")
        known = {f.name for f in fields(cls)}
        for name, value in overrides.items():
            if name not in known:
                raise TypeError(f"unknown setting {name!r}")
            if value is None:
                continue
            if name in ("api_key", "visitor_secret") and isinstance(value, str):
                value = Secret(value)
            elif name == "auth" and not all(isinstance(v, tuple) for v in value):
                value = parse_logins(value, source="--auth")
            values[name] = value
        values["root_path"] = _root_path(values.get("root_path", ""))
        if "home" in values:
            # Absolute from here on: files are linked into other folders (Download's named
            # copies), where a relative path pointed nowhere and the download failed without
            # a word (`--home data/a`: UX audit 10).
            values["home"] = Path(values["home"]).expanduser().absolute()
        if values.get("events_per_s", 1) < 1:
            raise SettingsError("KONTEXT_STUDIO_EVENTS_PER_S must be 1 or more.")
        reasons = hosted_reasons(
            share=values.get("share", False),
            host=values.get("host", DEFAULT_HOST),
            space=values.get("space", False),
        )
        if overrides.get("hosted") is None:
            values["hosted"] = bool(reasons) if hosted_env is None else hosted_env
            if hosted_env is False and reasons:
                log.warning(
                    "Hosted mode is off (KONTEXT_STUDIO_HOSTED=0) although others can reach "
                    "this studio (%s): links may reach private addresses and say why they fail.",
                    ", ".join(reasons),
                )
        return cls(**values)


def _whole(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number.") from None


def _number(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds or a factor.") from None


def _root_path(path: str) -> str:
    """Empty, a "/prefix" without a trailing slash, or a full http(s) URL (Gradio takes both)."""
    path = path.strip().rstrip("/")
    if path and not path.startswith(("/", "http://", "https://")):
        raise SettingsError("--root-path must start with / (or be a full http(s) address).")
    return path
