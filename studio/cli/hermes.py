"""`kontext-studio hermes install | uninstall`: the studio as Hermes Agent's image backend.

Writes the plugin (`hermes_plugin.py` as `__init__.py`, its manifest, and `studio.json` naming
this installation's `kontext-studio` and data folder) into `$HERMES_HOME/plugins/kontext/`, and
enables it in Hermes' `config.yaml`, keeping everything else there (the file is rewritten only
when something changes). Both commands can be run again and leave the same result. Imports
`config` and its siblings, and PyYAML (Hermes' format).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from studio import __version__
from studio.cli.errors import EXIT_OK, CommandError
from studio.config import Settings

PLUGIN = "kontext"
PROVIDER_KEY = "image_gen"
MANIFEST = f"""\
name: {PLUGIN}
version: {__version__}
description: "FLUX.1 Kontext through RunAPI, via Kontext Studio: every image lands in its history."
author: Kontext Studio
kind: backend
"""


def hermes_home(given: Path | None, environ: Mapping[str, str]) -> Path:
    """`--hermes-home`, else `HERMES_HOME`, else `~/.hermes` (as Hermes itself decides)."""
    if given is not None:
        return given.expanduser()
    if value := environ.get("HERMES_HOME", "").strip():
        return Path(value).expanduser()
    return Path.home() / ".hermes"


def studio_command() -> list[str]:
    """How Hermes runs this installation: its `kontext-studio` script, else this Python."""
    script = Path(sys.executable).with_name("kontext-studio")
    if script.is_file():
        return [str(script.absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "studio.cli"]


def run_hermes(args: argparse.Namespace) -> int:
    """`kontext-studio hermes ACTION`: say what was done, one line each."""
    home = hermes_home(args.hermes_home, os.environ)
    if args.action == "install":
        studio_home = Settings.from_env(home=args.home).home.expanduser().absolute()
        lines = install(home, studio_command(), studio_home)
    else:
        lines = uninstall(home)
    sys.stdout.writelines(f"{line}\n" for line in lines)
    return EXIT_OK


def install(home: Path, command: list[str], studio_home: Path) -> list[str]:
    """Write the plugin and enable it; returns what to tell the user."""
    folder = home / "plugins" / PLUGIN
    source = Path(__file__).with_name("hermes_plugin.py").read_text(encoding="utf-8")
    settings = {"command": command, "home": str(studio_home)}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / "plugin.yaml", MANIFEST)
        _write(folder / "__init__.py", source)
        _write(folder / "studio.json", json.dumps(settings, indent=2) + "\n")
    except OSError as error:
        message = f"The plugin could not be written to {folder} ({error.strerror})."
        raise CommandError(message) from None
    config = _read_config(home)
    before = copy.deepcopy(config)
    plugins = _section(config, "plugins")
    enabled = plugins.get("enabled")
    enabled = list(enabled) if isinstance(enabled, list) else []
    if PLUGIN not in enabled:
        enabled.append(PLUGIN)
    plugins["enabled"] = enabled
    if isinstance(plugins.get("disabled"), list) and PLUGIN in plugins["disabled"]:
        plugins["disabled"] = [name for name in plugins["disabled"] if name != PLUGIN]
    image_gen = _section(config, PROVIDER_KEY)
    provider = image_gen.get("provider")
    if not provider:
        image_gen["provider"] = provider = PLUGIN
    if config != before:
        _write_config(home, config)
    lines = [
        f"Installed the Kontext image backend in {folder}.",
        f"Every image Hermes makes with it lands in the studio's history at {studio_home}.",
    ]
    if provider != PLUGIN:
        lines.append(
            f"Hermes' image backend is {provider!r}; to use Kontext, set image_gen.provider to "
            f"{PLUGIN!r} in {home / 'config.yaml'}."
        )
    return lines


def uninstall(home: Path) -> list[str]:
    """Remove the plugin and what `install` added to the config; returns what to tell the user."""
    folder = home / "plugins" / PLUGIN
    try:
        shutil.rmtree(folder)
        removed = True
    except FileNotFoundError:
        removed = False
    except OSError as error:
        message = f"The plugin in {folder} could not be removed ({error.strerror})."
        raise CommandError(message) from None
    if (home / "config.yaml").exists():
        config = _read_config(home)
        before = copy.deepcopy(config)
        plugins = config.get("plugins")
        if isinstance(plugins, dict) and isinstance(plugins.get("enabled"), list):
            plugins["enabled"] = [name for name in plugins["enabled"] if name != PLUGIN]
        image_gen = config.get(PROVIDER_KEY)
        if isinstance(image_gen, dict) and image_gen.get("provider") == PLUGIN:
            del image_gen["provider"]
            if not image_gen:
                del config[PROVIDER_KEY]
        if config != before:
            _write_config(home, config)
    if removed:
        return [f"Removed the Kontext image backend from {folder}."]
    return [f"The Kontext image backend was not installed in {home}."]


def _read_config(home: Path) -> dict[str, Any]:
    path = home / "config.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise CommandError(f"{path} cannot be read ({error.strerror}).") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError:
        raise CommandError(f"{path} is not valid YAML; fix it and run this again.") from None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise CommandError(f"{path} does not hold a YAML mapping; fix it and run this again.")
    return config


def _section(config: dict[str, Any], name: str) -> dict[str, Any]:
    section = config.get(name)
    if not isinstance(section, dict):
        section = config[name] = {}
    return section


def _write_config(home: Path, config: dict[str, Any]) -> None:
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, default_flow_style=False)
    path = home / "config.yaml"
    try:
        home.mkdir(parents=True, exist_ok=True)
        _write(path, text)
    except OSError as error:
        raise CommandError(f"{path} could not be written ({error.strerror}).") from None


def _write(path: Path, text: str) -> None:
    """Write `text` to a temporary name, then rename it into place (no half-written file)."""
    temp = path.with_name(f".{path.name}.part")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)
