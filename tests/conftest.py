"""Shared fixtures: a clean environment per test, and the RunAPI simulator on loopback.

Gradio reads GRADIO_TEMP_DIR and analytics settings at import time, so they are set here, before any
test module can import gradio.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_GRADIO_TMP = tempfile.mkdtemp(prefix="kontext-gradio-")
os.environ["GRADIO_TEMP_DIR"] = _GRADIO_TMP
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"

pytest_plugins = ["tests.support.fixtures"]

# Variables our code or Gradio reads; each test starts without them.
_OWNED_PREFIXES = ("RUNAPI_", "KONTEXT_STUDIO_")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Clear our variables and point the data directory at this test's own folder."""
    for name in list(os.environ):
        if name.startswith(_OWNED_PREFIXES):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("KONTEXT_STUDIO_HOME", str(home))
    return home


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
