"""Kontext Studio as an image backend of Hermes Agent: FLUX.1 Kontext through RunAPI.

`kontext-studio hermes install` copies this file to `$HERMES_HOME/plugins/kontext/__init__.py`,
beside `studio.json` (which `kontext-studio` to run, and the studio's data folder). It runs inside
Hermes' own Python, so it imports nothing of the studio: each call runs `kontext-studio ... --json`
and reads its answer, and the edit lands in the studio's history like any other. An output passed
back as `image_url` is recognised by the studio and continues its session from that step.

Standard library only, plus Hermes' own `agent` and `hermes_cli` modules (imported lazily, so the
studio's tests can load this file without Hermes).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

try:
    from agent.image_gen_provider import ImageGenProvider
except ImportError:  # outside Hermes: the studio's own tests of the helpers below
    ImageGenProvider = object

NAME = "kontext"
# Hermes' three aspect-ratio names, as Kontext's ratios.
HERMES_RATIOS = {"landscape": "16:9", "square": "1:1", "portrait": "9:16"}
KONTEXT_RATIOS = ("21:9", "16:9", "4:3", "1:1", "3:4", "9:16")
MODELS = {"pro": "pro", "max": "max", "flux-kontext-pro": "pro", "flux-kontext-max": "max"}
DEFAULT_MODEL = "pro"
# Hermes' schema default; when editing it most likely means "not chosen", so the photo keeps
# its own shape instead of being reshaped to 16:9.
HERMES_DEFAULT_RATIO = "landscape"
# Seconds: the studio waits up to 900 s for a task, plus time to upload and save.
TIMEOUT_S = 960
SIMULATOR_NOTE = (
    "Made by Kontext Studio's built-in simulator, not by Flux: no RUNAPI_API_KEY is set. "
    "Set it (for example in ~/.hermes/.env) for real FLUX.1 Kontext images."
)


def kontext_ratio(aspect_ratio: str | None, *, editing: bool) -> str:
    """Hermes' ratio name (or a Kontext ratio) as `kontext-studio --aspect` takes it."""
    value = (aspect_ratio or "").strip().lower()
    if value in KONTEXT_RATIOS:
        return value
    if editing and value in ("", HERMES_DEFAULT_RATIO):
        return "match"
    return HERMES_RATIOS.get(value, "match" if editing else HERMES_RATIOS[HERMES_DEFAULT_RATIO])


def kontext_model(*candidates: object) -> str:
    """The first of `candidates` that names a Kontext model (pro or max), else pro."""
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.strip().lower() in MODELS:
            return MODELS[candidate.strip().lower()]
    return DEFAULT_MODEL


def source_argument(image_url: str) -> tuple[str, bytes | None]:
    """SOURCE for `kontext-studio edit`, and the bytes to send on stdin when it is `-`."""
    value = image_url.strip()
    if value.startswith("data:"):
        header, _, payload = value.partition(",")
        if not header.endswith(";base64"):
            raise ValueError("The image_url data: URI must be base64-encoded.")
        try:
            return "-", base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("The image_url data: URI is not valid base64.") from None
    if value.lower().startswith("file://"):
        return url2pathname(unquote(urlsplit(value).path)), None
    if value.lower().startswith(("http://", "https://")):
        return value, None
    return str(Path(value).expanduser()), None


def studio_command(
    settings: dict[str, Any],
    prompt: str,
    *,
    model: str,
    ratio: str,
    source: str | None,
    output: Path,
) -> list[str]:
    """The `kontext-studio` command line for one call (options first, then `--` and text)."""
    command = [*settings["command"], "--home", settings["home"]]
    options = ["--json", "-q", "--model", model, "--aspect", ratio, "-o", str(output)]
    if source is None:
        return [*command, "generate", *options, "--", prompt]
    return [*command, "edit", *options, "--", source, prompt]


def runapi_environment(environ: dict[str, str], config: dict[str, Any]) -> dict[str, str]:
    """The environment for `kontext-studio`: the user's RunAPI key and base URL.

    `RUNAPI_API_KEY` (Hermes loads `~/.hermes/.env`), else the key of a chat provider in Hermes'
    config that points at runapi.ai (the `custom:runapi` setup RunAPI's guide describes). The key
    goes to the child's environment only, never to its command line.
    """
    env = dict(environ)
    if env.get("RUNAPI_API_KEY", "").strip():
        return env
    providers = config.get("providers") if isinstance(config, dict) else None
    for entry in (providers or {}).values() if isinstance(providers, dict) else ():
        if not isinstance(entry, dict):
            continue
        base_url = str(entry.get("base_url") or "")
        host = urlsplit(base_url).hostname or ""
        if host != "runapi.ai" and not host.endswith(".runapi.ai"):
            continue
        key_env = str(entry.get("key_env") or "").strip()
        key = (environ.get(key_env, "") if key_env else "") or str(entry.get("api_key") or "")
        if key.strip():
            env["RUNAPI_API_KEY"] = key.strip()
            env.setdefault("RUNAPI_BASE_URL", base_url)
            break
    return env


def _settings() -> dict[str, Any]:
    settings: dict[str, Any] = json.loads(
        Path(__file__).with_name("studio.json").read_text(encoding="utf-8")
    )
    return settings


def _hermes_config() -> dict[str, Any]:
    try:
        from hermes_cli.config import load_config

        config = load_config()
    except Exception:  # a broken config must not break image generation; defaults apply
        return {}
    return config if isinstance(config, dict) else {}


class KontextProvider(ImageGenProvider):  # type: ignore[misc]
    """Hermes' `image_generate` through Kontext Studio: edits when given `image_url`."""

    @property
    def name(self) -> str:
        return NAME

    @property
    def display_name(self) -> str:
        return "Kontext Studio (FLUX.1 Kontext)"

    def is_available(self) -> bool:
        try:
            return Path(_settings()["command"][0]).exists()
        except (OSError, ValueError, KeyError, IndexError):
            return False

    def list_models(self) -> list[dict[str, Any]]:
        return [
            {
                "id": "pro",
                "display": "FLUX.1 Kontext [pro]",
                "speed": "~5-10s",
                "strengths": "Fast, faithful edits",
                "price": "$0.05/image",
            },
            {
                "id": "max",
                "display": "FLUX.1 Kontext [max]",
                "speed": "~10-20s",
                "strengths": "Hard edits, typography",
                "price": "$0.10/image",
            },
        ]

    def default_model(self) -> str:
        return DEFAULT_MODEL

    def get_setup_schema(self) -> dict[str, Any]:
        return {
            "name": self.display_name,
            "badge": "paid",
            "tag": "FLUX.1 Kontext through RunAPI; every image lands in your Kontext Studio",
            "env_vars": [
                {"key": "RUNAPI_API_KEY", "prompt": "RunAPI API key", "url": "https://runapi.ai"}
            ],
        }

    def capabilities(self) -> dict[str, Any]:
        return {"modalities": ["text", "image"], "max_reference_images": 0}

    def generate(
        self,
        prompt: str,
        aspect_ratio: str = HERMES_DEFAULT_RATIO,
        *,
        image_url: str | None = None,
        reference_image_urls: list[str] | None = None,  # noqa: ARG002 - Kontext takes one image
        **kwargs: Any,
    ) -> dict[str, Any]:
        from agent.image_gen_provider import error_response, success_response
        from hermes_constants import get_hermes_home

        config = _hermes_config()
        section = config.get("image_gen")
        own = section.get(NAME) if isinstance(section, dict) else None
        # image_gen.kontext.model, else image_gen.model (Hermes passes it as `model`), else pro.
        model = kontext_model(
            own.get("model") if isinstance(own, dict) else None, kwargs.get("model")
        )
        editing = bool(image_url and image_url.strip())
        ratio = kontext_ratio(aspect_ratio, editing=editing)
        failure: dict[str, Any] = {
            "provider": NAME,
            "model": f"flux-kontext-{model}",
            "prompt": prompt,
            "aspect_ratio": aspect_ratio,
        }
        try:
            source, stdin = source_argument(image_url) if image_url and editing else (None, None)
            output = get_hermes_home() / "cache" / "images"
            output.mkdir(parents=True, exist_ok=True)
            command = studio_command(
                _settings(), prompt, model=model, ratio=ratio, source=source, output=output
            )
            done = subprocess.run(
                command,
                input=stdin,
                env=runapi_environment(dict(os.environ), config),
                capture_output=True,
                timeout=TIMEOUT_S,
                check=False,
            )
        except ValueError as exc:
            return _answer(error_response(error=str(exc), error_type="invalid_argument", **failure))
        except subprocess.TimeoutExpired:
            message = (
                f"Kontext Studio did not answer within {TIMEOUT_S // 60} minutes; the edit "
                "stays in its history and completes there."
            )
            return _answer(error_response(error=message, error_type="timeout", **failure))
        except OSError as exc:
            message = f"Kontext Studio could not be started ({exc.strerror}); reinstall the plugin."
            failed = error_response(error=message, error_type="provider_unavailable", **failure)
            return _answer(failed)
        try:
            answer = json.loads(done.stdout.decode("utf-8") or "{}")
        except ValueError:
            answer = {}
        steps = answer.get("steps") or []
        last = steps[-1] if steps else {}
        if done.returncode != 0 or answer.get("state") != "completed" or not last.get("path"):
            message = answer.get("error") or f"kontext-studio failed (exit {done.returncode})."
            return _answer(error_response(error=message, error_type="kontext_failed", **failure))
        extra: dict[str, Any] = {"studio": last, "simulator": bool(answer.get("simulator"))}
        if extra["simulator"]:
            extra["note"] = SIMULATOR_NOTE
        result = success_response(
            image=last["path"],
            model=f"flux-kontext-{model}",
            prompt=prompt,
            aspect_ratio=aspect_ratio,
            provider=NAME,
            modality="image" if editing else "text",
            extra=extra,
        )
        return _answer(result)


def _answer(response: Any) -> dict[str, Any]:
    """Hermes' response helpers are untyped; what they build is a plain dict."""
    return dict(response)


def register(ctx: Any) -> None:
    """Hermes' plugin entry point."""
    ctx.register_image_gen_provider(KontextProvider())
