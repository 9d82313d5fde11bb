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
    "store": {"params", "history", "images"},
    "limits": {"params"},  # (DESIGN: the prices, for what a refusal says fits)
    "lookout": {"images", "params"},
    "regions": {"images", "params"},
    "visitor": {"config"},
    "provenance": set(),
    "runner": {
        "config",
        "params",
        "history",
        "images",
        "links",
        "store",
        "runapi",
        "regions",
        "provenance",
        "limits",  # the blends' fair turns (DESIGN: the runner may import what the engine may)
    },
    "bundle": {"params", "history", "store", "images"},
    "summary": {"params", "history"},
    "engine": {"*"},
    "ui": {"engine", "params", "history", "config", "summary", "visitor"},
    "cli": {"*"},
    "bench": {"*"},
    "simulator": set(),
}
# Gradio may be imported by ui/ alone; the bench drives the running studio as a client does.
GRADIO_OWNERS = {"ui"}
GRADIO_CLIENT_OWNERS = {"ui", "bench"}


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
        if parts[0] == "gradio":
            assert owner in GRADIO_OWNERS, f"{path.name} imports gradio"
        if parts[0] == "gradio_client":
            assert owner in GRADIO_CLIENT_OWNERS, f"{path.name} imports gradio_client"


def _attributes(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}


UI_AND_CLI = [p for p in SOURCES if _owner(p) in ("ui", "cli")]


@pytest.mark.parametrize("path", UI_AND_CLI, ids=lambda p: str(p.relative_to(STUDIO)))
def test_ui_and_cli_never_reach_through_the_engine_to_its_store(path):
    reached = _attributes(path) & {"store", "_store", "_runner", "_clients"}
    assert not reached, f"{path.name} reaches into the engine: .{sorted(reached)[0]}"


@pytest.mark.parametrize(
    "path",
    [p for p in UI_AND_CLI if _owner(p) == "ui" and p.name != "bridge.py"],
    ids=lambda p: str(p.relative_to(STUDIO)),
)
def test_the_page_reaches_the_engine_only_through_the_bridge(path):
    imported = {n for n in _imports(path) if n.startswith("studio.engine")}
    assert not imported, f"{path.name} imports the engine; go through ui.bridge"
    assert "engine" not in _attributes(path), f"{path.name} uses .engine; call the bridge"


@pytest.mark.parametrize("name", ["present.py", "view.py"])
def test_words_and_the_view_are_pure(name):
    path = STUDIO / "ui" / name
    ours = {n.split(".")[1] for n in _imports(path) if n.startswith("studio.") and "." in n}
    assert ours <= {"history", "params", "ui"}, f"{name} imports {sorted(ours)}"
    runtime = {n for n in _imports(path) if not n.startswith(("studio", "__future__"))}
    # (datetime for its types: the view is handed the time, it never reads the clock.)
    assert runtime <= {"collections.abc", "dataclasses", "datetime", "pathlib", "typing"}, runtime


# The classes whose public methods Gradio registers as listeners (each a public endpoint).
LISTENERS = {"handlers.py": "Handlers", "key.py": "KeyHandlers", "api.py": "Endpoints"}


@pytest.mark.parametrize(("name", "cls"), LISTENERS.items())
def test_every_listener_names_its_visitor_through_the_one_guarded_path(name, cls):
    tree = ast.parse((STUDIO / "ui" / name).read_text(encoding="utf-8"))
    (found,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls]
    listeners = [
        n
        for n in found.body
        if isinstance(n, ast.AsyncFunctionDef)
        and not n.name.startswith("_")
        and (n.name.startswith("on_") or cls == "Endpoints")
        and n.name != "refused"
    ]
    assert listeners
    unguarded = [
        n.name
        for n in listeners
        if not any(isinstance(d, ast.Name) and d.id == "guarded" for d in n.decorator_list)
    ]
    assert not unguarded, f"{cls} listeners not @guarded: {unguarded}"


# A function longer than this does more than one thing: split it where its parts are named.
MAX_FUNCTION_LINES = 120


def test_no_function_in_the_studio_is_longer_than_the_limit():
    long = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(STUDIO)}:{node.lineno} {node.name} ({lines})")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
