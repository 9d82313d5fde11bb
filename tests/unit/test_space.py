"""The repository deploys as a Hugging Face Space as it is: front matter, app file, requirements."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _front_matter() -> tuple[dict[str, object], str]:
    found = re.match(r"---\n(.*?)\n---\n", README, re.DOTALL)
    assert found, "README.md must open with the Space's YAML front matter"
    return yaml.safe_load(found.group(1)), README[found.end() :]


def _dependencies() -> dict[str, Requirement]:
    requirements = [Requirement(line) for line in PYPROJECT["project"]["dependencies"]]
    return {r.name.lower(): r for r in requirements}


def test_the_front_matter_is_a_gradio_space_on_the_gradio_the_studio_needs():
    config, _ = _front_matter()
    assert config["sdk"] == "gradio"
    gradio = _dependencies()["gradio"]
    assert Version(str(config["sdk_version"])) in gradio.specifier
    assert (ROOT / str(config["app_file"])).is_file()
    python = Version(str(config["python_version"]))
    assert python in Requirement(f"python{PYPROJECT['project']['requires-python']}").specifier
    assert len(str(config["short_description"])) <= 60  # the Hub's limit
    assert str(config["license"]) == PYPROJECT["project"]["license"].lower()


def test_after_the_front_matter_come_the_title_and_the_two_commands():
    _, body = _front_matter()
    lines = [line for line in body.splitlines() if line.strip()]
    assert lines[0] == "# Kontext Studio"
    commands = [line for line in lines[:6] if line.startswith("    python3 -m venv")]
    assert len(commands) == 2
    assert "kontext-studio" in commands[0]
    assert "pip install -e '.[test]'" in commands[1]


def test_requirements_are_the_packages_dependencies_but_gradio():
    wanted = {name: str(r) for name, r in _dependencies().items() if name != "gradio"}
    lines = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    listed = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    # The Space's sdk_version installs Gradio; pinning it again would fight that choice.
    assert {r.name.lower(): str(r) for r in listed} == wanted
