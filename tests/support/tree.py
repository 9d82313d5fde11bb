"""Reading the history tree's HTML (`studio.ui.tree`) as a person reads the page."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Tree:
    line: list[str] = field(default_factory=list)  # each path tile's label, top to bottom
    current: int | None = None  # the tab's step among them
    ahead: list[int] = field(default_factory=list)  # the redo line
    branches: list[str] = field(default_factory=list)  # "2b add snow · 1 step"
    # What a screen reader names each branch's chip: "Branch 2b: add snow (pro · 1 step)"
    branch_labels: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "⚠ 1 failed attempt"
    cancels: list[str] = field(default_factory=list)  # step ids with a ✕
    steps: list[str] = field(default_factory=list)  # the step id of each path tile
    images: list[str] = field(default_factory=list)  # img src in the tree
    tab_stops: list[int] = field(default_factory=list)  # path tiles Tab stops at
    done: int = 0


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tree = Tree()
        self._text: list[str] | None = None
        self._into: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "nav":
            self.tree.done = int(a.get("data-done", "0"))
        if tag == "li" and "node" in classes:
            if "current" in classes:
                self.tree.current = len(self.tree.line)
            if "ahead" in classes:
                self.tree.ahead.append(len(self.tree.line))
        if tag == "button" and "tile" in classes:
            if a.get("tabindex") != "-1":
                self.tree.tab_stops.append(len(self.tree.line))
            self.tree.line.append(a.get("aria-label", ""))
            self.tree.steps.append(a.get("data-step", ""))
        if tag == "button" and "branch" in classes and "failed" not in classes:
            self._text, self._into = [], self.tree.branches
            self.tree.branch_labels.append(a.get("aria-label", ""))
        if tag == "summary":
            self._text, self._into = [], self.tree.failed
        if tag == "button" and a.get("data-act") == "cancel":
            self.tree.cancels.append(a.get("data-step", ""))
        if tag == "img":
            self.tree.images.append(a.get("src", ""))

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("button", "summary") and self._text is not None and self._into is not None:
            self._into.append("".join(self._text).strip())
            self._text = self._into = None


def read_tree(html: str) -> Tree:
    reader = _Reader()
    reader.feed(html)
    return reader.tree
