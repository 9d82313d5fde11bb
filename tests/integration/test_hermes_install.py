"""`kontext-studio hermes install | uninstall` on a Hermes folder: the plugin, the config, twice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# Seconds; a hang guard for one command, never a performance assertion.
COMMAND_TIMEOUT_S = 60
USER_CONFIG = """\
# my Hermes settings
model:
  provider: custom:runapi
  default: gpt-5
plugins:
  enabled: [disk-cleanup]
toolsets: [hermes-cli]
"""


def hermes(*args: str, home: Path, studio: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "studio.cli", "--home", str(studio), "hermes", *args,
         "--hermes-home", str(home)],
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False,
    )  # fmt: skip


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = tmp_path / ".hermes"
    folder.mkdir()
    (folder / "config.yaml").write_text(USER_CONFIG)
    return folder


def test_install_writes_the_plugin_and_enables_it_keeping_the_rest(home, tmp_path):
    done = hermes("install", home=home, studio=tmp_path / "studio")
    assert done.returncode == 0, done.stderr
    assert "Installed the Kontext image backend" in done.stdout
    plugin = home / "plugins" / "kontext"
    manifest = yaml.safe_load((plugin / "plugin.yaml").read_text())
    assert (manifest["name"], manifest["kind"]) == ("kontext", "backend")
    assert "def register(ctx" in (plugin / "__init__.py").read_text()
    settings = json.loads((plugin / "studio.json").read_text())
    assert settings["home"] == str((tmp_path / "studio").absolute())
    assert Path(settings["command"][0]).is_absolute()
    config = yaml.safe_load((home / "config.yaml").read_text())
    assert config["plugins"]["enabled"] == ["disk-cleanup", "kontext"]
    assert config["image_gen"] == {"provider": "kontext"}
    assert config["model"] == {"provider": "custom:runapi", "default": "gpt-5"}
    assert config["toolsets"] == ["hermes-cli"]


def test_install_twice_gives_the_same_result_and_uninstall_undoes_it(home, tmp_path):
    studio = tmp_path / "studio"
    hermes("install", home=home, studio=studio)
    once = (home / "config.yaml").read_text()
    assert hermes("install", home=home, studio=studio).returncode == 0
    assert (home / "config.yaml").read_text() == once
    done = hermes("uninstall", home=home, studio=studio)
    assert done.returncode == 0, done.stderr
    assert not (home / "plugins" / "kontext").exists()
    assert yaml.safe_load((home / "config.yaml").read_text()) == yaml.safe_load(USER_CONFIG)
    again = hermes("uninstall", home=home, studio=studio)
    assert again.returncode == 0
    assert "was not installed" in again.stdout


def test_another_image_backend_is_kept_and_the_user_is_told(home, tmp_path):
    (home / "config.yaml").write_text("image_gen:\n  provider: fal\n  model: fal-ai/flux-2-pro\n")
    done = hermes("install", home=home, studio=tmp_path / "studio")
    assert done.returncode == 0, done.stderr
    assert "image_gen.provider" in done.stdout
    config = yaml.safe_load((home / "config.yaml").read_text())
    assert config["image_gen"]["provider"] == "fal"
    hermes("uninstall", home=home, studio=tmp_path / "studio")
    config = yaml.safe_load((home / "config.yaml").read_text())
    assert config["image_gen"] == {"provider": "fal", "model": "fal-ai/flux-2-pro"}


def test_a_config_that_is_not_a_mapping_is_refused_in_one_sentence(home, tmp_path):
    (home / "config.yaml").write_text("- just\n- a list\n")
    done = hermes("install", home=home, studio=tmp_path / "studio")
    assert done.returncode == 2
    assert done.stderr.strip().endswith("does not hold a YAML mapping; fix it and run this again.")
    assert (home / "config.yaml").read_text() == "- just\n- a list\n"


def test_an_unchanged_config_is_not_rewritten(tmp_path):
    home = tmp_path / ".hermes"
    home.mkdir()
    text = "# comments stay\nplugins:\n  enabled: [kontext]  # on\nimage_gen: {provider: kontext}\n"
    (home / "config.yaml").write_text(text)
    assert hermes("install", home=home, studio=tmp_path / "studio").returncode == 0
    assert (home / "config.yaml").read_text() == text
