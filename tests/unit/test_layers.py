"""The import rules of DESIGN.md, checked mechanically on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

STUDIO = Path(__file__).resolve().parents[2] / "studio"

# module -> what of ours it may import ("*" = anything). Packages are named by their folder.
ALLOWED: dict[str, set[str]] = {
    "config": set(),
    "params": set(),
    "history": {"params"},
    "runapi": set(),
    "images": {"params"},
    "links": {"images", "params"},
    "store": {"params", "history"},
    "runner": {"config", "params", "history", "images", "links", "store", "runapi"},
    "bundle": {"params", "history", "store", "images"},
    "engine": {"*"},
    "ui": {"engine", "params", "history", "config"},
    "cli": {"*"},
    "bench": {"*"},
    "simulator": set(),
}
# Gradio may be imported by ui/ alone.
GRADIO_OWNERS = {"ui"}


def _owner(path: Path) -> str:
    rel = path.relative_to(STUDIO)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import inside a package stays inside it
                continue
            found.add(node.module or "")
    return found


SOURCES = sorted(p for p in STUDIO.rglob("*.py") if p.name != "__init__.py" or p.parent != STUDIO)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(STUDIO)))
def test_module_imports_only_what_the_design_allows(path):
    owner = _owner(path)
    allowed = ALLOWED.get(owner)
    assert allowed is not None, f"{owner} is not in DESIGN.md's module map; add it there and here"
    for name in _imports(path):
        parts = name.split(".")
        if parts[0] == "studio" and len(parts) > 1:
            target = parts[1]
            if target != owner and "*" not in allowed:
                assert target in allowed, f"{path.name} imports studio.{target}"
        if parts[0] == "gradio" or parts[0] == "gradio_client":
            assert owner in GRADIO_OWNERS, f"{path.name} imports gradio"
