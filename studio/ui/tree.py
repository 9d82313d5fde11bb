"""The history as a tree, in HTML: pure, escaped, and bounded in size.

The path from the original to the tab's step runs top to bottom (then the redo line ahead of
it, marked ↷), numbered by depth without gaps (0 is the original). Where the path forks, the
other branches hang under the step they fork from, labelled by depth and a letter ("2b"), with
how many steps they hold; failed attempts are folded into a count there. A session of
thousands of steps draws a window of the path around the tab's step, with counts for the rest.

Every clickable element says what it does (`data-act`: go, cancel) and on which step
(`data-step`); the page turns a click into one event (`layout._CLICKS_JS`). Everything a user
or the service wrote is escaped: `gr.HTML` does not sanitise.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from html import escape
from typing import TypeVar
from urllib.parse import quote

from studio.history import Session, Step, StepState, StepUpdate
from studio.params import format_cents
from studio.ui import present

# How much of the path is drawn around the tab's step, and how many branches per fork.
BEFORE = 30
AHEAD = 10
FORKS_SHOWN = 3
# The other ends shown of a branch that forks again further on (its newest is the branch's own).
ENDS_SHOWN = 3
# Beyond those shown, how many more branches (or ends) are listed under "+N more" (a long
# history's fork of hundreds of branches is not drawn whole, nor its thumbnails looked for).
FORKS_LISTED = 20
# The session list shows the newest this many (and the open one); the rest are one click away.
SESSIONS_SHOWN = 50
_Covered = TypeVar("_Covered", bound=present.Covered)
FAILED_SHOWN = 5


# What stands for a step's picture while it has none, on a tile and on a branch's small one.
_WORDS = {StepState.QUEUED: "queued", StepState.RUNNING: "running", StepState.FAILED: "✗"}
_MARKS = {StepState.QUEUED: "…", StepState.RUNNING: "◷", StepState.FAILED: "✗"}


def file_url(path: str) -> str:
    """Where Gradio serves a file it may serve (a stored image or thumbnail), from the page."""
    return "gradio_api/file=" + quote(path)


@dataclass(frozen=True, slots=True)
class Line:
    """The path of the tree as drawn: `steps` (origin first, then the redo line ahead), the
    tab's step at `current`."""

    steps: tuple[Step, ...]
    current: int


def line_of(session: Session) -> Line:
    path = session.path()
    ahead = tuple(session.steps[i] for i in reversed(session.redo_stack))
    return Line((*path, *ahead), len(path) - 1)


def history_html(
    session: Session,
    thumbs: Mapping[str, str],
    *,
    done: int = 0,
    refused: int = 0,
    masks: Mapping[str, str] | None = None,
    url: Callable[[str], str] = file_url,
    withdrawn: tuple[str, str, str] | None = None,
    left_open: frozenset[str] = frozenset(),
    started: frozenset[str] = frozenset(),
) -> str:
    """`session` (seen from the tab's step) as the history tree. The tab's step carries the
    region it was edited in (`data-region-*`), which the page outlines on the canvas; `masks`
    maps a region mask's sha256 to its file. `done` and `refused` are
    the last Enter of the tab the server took and refused (the page's own "queued" tiles);
    `withdrawn`, a queued step this tab's undo (or ✕) took back, its instruction and when it
    was queued, which the page puts back into the box (once: the step's id says which; in the
    order they were queued, among those it put back). A queued step carries its ✕
    unless it is `left_open` (it cannot be cancelled: the ✕ only answered so). A queued step
    in `started` (the runner has taken it: its source uploads, its task is being created) is
    drawn as running, without a ✕: its tile said "queued" and offered ✕ while the status line
    said "◷ Uploading the source…", and the ✕ answered that it had started."""
    drawn = _drawn(session)
    line, children = drawn.line, drawn.children
    # Named as the step pickers name them (only a branch's other ends need it: it walks the
    # whole session).
    names = functools.cache(lambda: step_names(session))
    items: list[str] = []
    for depth, queued_step, queued_others in drawn.nodes:
        step = _as_shown(queued_step, started)
        others = [_as_shown(other, started) for other in queued_others]
        items.append(
            _node(
                step,
                depth,
                thumbs,
                url,
                current=depth == line.current,
                ahead=depth > line.current,
                branches=[c for c in others if c.state is not StepState.FAILED],
                failed=[c for c in others if c.state is StepState.FAILED],
                children=children,
                region=_region_marks(step, masks or {}, url) if depth == line.current else "",
                letter=_path_letter(step, children),
                cancellable=step.step_id not in left_open,
                names=names,
            )
        )
        if depth == 0 and drawn.first > 1:  # the steps between the origin and the window
            items.append(_gap(drawn.first - 1, line.steps[drawn.first - 1]))
    if drawn.last < len(line.steps) - 1:  # the steps ahead of the window
        items.append(_gap(len(line.steps) - 1 - drawn.last, line.steps[-1]))
    return (
        f'{_TREE} aria-label="History" data-session="{_a(session.session_id)}" '
        f'data-contents="{contents_mark(session)}" '
        f'{_marks(done, refused, withdrawn)}><ol class="path">{"".join(items)}</ol></nav>'
    )


def contents_mark(session: Session) -> str:
    """A short mark of what an export of `session` holds (its name, its steps and their
    states): the page puts a *Download export* away once the tree it shows has another."""
    parts = [session.name, *sorted(f"{i}:{s.state}" for i, s in session.steps.items())]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def started_steps(running: Mapping[str, StepUpdate]) -> frozenset[str]:
    """The steps of `running` (`Engine.running`) the runner has taken whose record still says
    queued (their source uploads, or their task is being created, or they are about to be):
    drawn as running (`history_html`). Only a step that waits for the one before it may still
    be cancelled. Taken from the moment it is launched, not once its upload starts: an
    Enter's reply drawn before the runner began the upload (a loaded machine) showed the tile
    queued with a ✕ beside "Uploading the source…" until the upload was done, as nothing in
    the store changed to draw it again."""
    return frozenset(step_id for step_id, update in running.items() if update.is_taken)


def _as_shown(step: Step, started: frozenset[str]) -> Step:
    """`step`, running once the runner has started it (its record says queued until RunAPI
    has given its task an id)."""
    if step.state is StepState.QUEUED and step.step_id in started:
        return replace(step, state=StepState.RUNNING)
    return step


# How the history's tree opens (`history_html`, `empty_html`, `drawn_before_load`).
_TREE = '<nav class="tree"'


def drawn_before_load(history: str) -> str:
    """A history tree (`history_html`, `empty_html`) marked as drawn before the page's load
    event (`ui.predraw`): its clicks wait for that (`layout._CLICKS_JS`), and the load event's
    own tree, unmarked, replaces it (so the page script sees it drawn)."""
    return history.replace(_TREE, f"{_TREE} data-predrawn", 1)


def empty_html(done: int = 0, refused: int = 0) -> str:
    """The tree of a page with no session yet."""
    return (
        f'{_TREE} aria-label="History" {_marks(done, refused)}>'
        '<p class="hint">Your steps appear here, as a tree.</p><ol class="path"></ol></nav>'
    )


def _region_marks(step: Step, masks: Mapping[str, str], url: Callable[[str], str]) -> str:
    """The region a step was edited in, as attributes the page script draws from."""
    region = step.region
    if region is None:
        return ""
    marks = f' data-region="{_a(region.kind)}"'
    if region.box is not None:
        marks += f' data-region-box="{",".join(str(int(v)) for v in region.box)}"'
    if region.drawn_on is not None:
        marks += f' data-region-on="{int(region.drawn_on[0])},{int(region.drawn_on[1])}"'
    if region.mask_sha256 is not None and (path := masks.get(region.mask_sha256)):
        marks += f' data-region-mask="{_a(url(path))}"'
    return marks


def _marks(done: int, refused: int, withdrawn: tuple[str, str, str] | None = None) -> str:
    marks = f'data-done="{int(done)}" data-refused="{int(refused)}"'
    if withdrawn is not None:
        step_id, text, queued_at = withdrawn
        marks += (
            f' data-withdrawn="{_a(step_id)}" data-withdrawn-text="{_a(text)}"'
            f' data-withdrawn-at="{_a(queued_at)}"'
        )
    return marks


def _gap(count: int, target: Step) -> str:
    return (
        f'<li class="gap"><button class="more" data-act="go" data-step="{_a(target.step_id)}">'
        f"… {count} more step{'s' if count != 1 else ''}</button></li>"
    )


def _node(
    step: Step,
    depth: int,
    thumbs: Mapping[str, str],
    url: Callable[[str], str],
    *,
    current: bool,
    ahead: bool,
    branches: list[Step],
    failed: list[Step],
    children: Mapping[str, list[Step]],
    region: str = "",
    letter: str = "",
    names: Callable[[], Mapping[str, str]],
    cancellable: bool = True,
) -> str:
    classes = ["node", _state_class(step)]
    if current:
        classes.append("current")
    if ahead:
        classes.append("ahead")
    label = f"{depth}{letter}"
    parts = [f'<li class="{" ".join(classes)}" data-path="{depth}"{region}>']
    parts.append(_tile(step, label, thumbs, url, current=current, ahead=ahead))
    if (
        cancellable
        and step.state is StepState.QUEUED
        and not step.task_id
        and step.kind != "origin"
    ):
        text = _a(_prompt(step))
        parts.append(
            f'<button class="x" data-act="cancel" data-step="{_a(step.step_id)}" '
            f'aria-label="Cancel the queued edit: {text}" '
            'title="Cancel this queued edit">✕</button>'
        )
    if branches:
        parts.append('<div class="forks"><span class="fork-mark" aria-hidden="true">↳</span>')
        # A branch's letter is its place among the step's children, in the order they were
        # made (the path's own among them), so it keeps its name when the tab moves (given by
        # place among the others, "2b" became "2c" after a move: UX audit 2).
        place = {c.step_id: k for k, c in enumerate(_made(step.step_id, children))}
        chips = [
            _branch_chips(b, place[b.step_id], depth, thumbs, url, children, names)
            for b in _listed(branches)
        ]
        parts.extend(_folded(chips, len(branches), FORKS_SHOWN, "more"))
        parts.append("</div>")
    if failed:
        parts.append(
            f'<details class="failed"><summary>⚠ {len(failed)} failed '
            f"attempt{'s' if len(failed) != 1 else ''}</summary>"
        )
        for attempt in failed[:FAILED_SHOWN]:
            label = f"Failed: {_prompt(attempt)}" + (f" ({attempt.error})" if attempt.error else "")
            parts.append(
                f'<button class="branch failed" data-act="go" data-step="{_a(attempt.step_id)}" '
                f'title="{_a(attempt.error or "")}" aria-label="{_a(label)}">'
                f'<span class="cap">✗ {escape(_short(_prompt(attempt)))}</span></button>'
            )
        parts.append("</details>")
    parts.append("</li>")
    return "".join(parts)


def _branch_chips(
    branch: Step,
    n: int,
    depth: int,
    thumbs: Mapping[str, str],
    url: Callable[[str], str],
    children: Mapping[str, list[Step]],
    names: Callable[[], Mapping[str, str]],
) -> str:
    """The chip of a branch forking after `depth`, the `n`th child made there (from 0: its
    letter), going to its newest end, and one chip for each of its other ends when it forks
    again further on (only the newest showed; the rest took a click into the branch first:
    UX audit 1), named as the step pickers name that step ("4a", "5 (3b)": it read "3a.2",
    which named no step: audit 17)."""
    tip, other_ends = _branch_ends(branch, children)
    size = _size(branch, children)
    name = f"{depth + 1}{fork_letter(n)}"
    ends = " → " + _prompt(tip) if tip is not branch else ""
    # It shows the step it names, with the rest of the branch ahead (↷ Redo walks to its end:
    # it went to the end, a step it did not name: UX audit 3).
    # Named in full as the tiles are ("Branch 4a: …"): its short caption was all a screen
    # reader had (UX audit 11).
    steps = f"{size} step{'s' if size != 1 else ''}"
    label = f"Branch {name}: {_prompt(branch)}{ends} ({_model(branch)}{steps})"
    chip = (
        f'<button class="branch" data-act="branch" data-step="{_a(branch.step_id)}" '
        f'title="{_a(_prompt(branch) + ends)}" aria-label="{_a(label)}">'
        f"{_thumb(branch, thumbs, url, small=True)}"
        f'<span class="num">{escape(name)}</span> '
        f'<span class="cap">{escape(_short(_prompt(branch)))}</span>'
        f' <span class="meta">{escape(_model(branch))}{steps}</span></button>'
    )
    named = names() if other_ends else {}
    others = [
        f'<button class="branch end" data-act="go" data-step="{_a(end.step_id)}" '
        f'title="{_a(_prompt(branch) + " → " + _prompt(end))}" '
        f'aria-label="{_a(f"Step {named[end.step_id]}, on branch {name}: {_prompt(end)}")}">'
        f"{_thumb(end, thumbs, url, small=True)}"
        f'<span class="num">{escape(named[end.step_id])}</span> '
        f'<span class="cap">→ {escape(_short(_prompt(end)))}</span></button>'
        for end in other_ends
    ]
    return chip + "".join(_folded(others, len(others), ENDS_SHOWN, "more ends"))


def _listed(steps: list[Step]) -> list[Step]:
    """Of a fork's branches (or a branch's other ends), those drawn: the first `FORKS_SHOWN`
    and at most `FORKS_LISTED` more, folded (`_folded`)."""
    return steps[: FORKS_SHOWN + FORKS_LISTED]


def _branch_ends(branch: Step, children: Mapping[str, list[Step]]) -> tuple[Step, list[Step]]:
    """The newest end of the branch starting at `branch` (where its chip's Redo leads), and
    its other ends that are drawn (`_listed`), newest first."""
    tip = _tip_of(branch, children)
    return tip, _listed([e for e in _ends(branch, children) if e is not tip])


def branch_end(session: Session, step_id: str) -> str:
    """The newest end of the branch starting at `step_id` (where its chip's Redo leads)."""
    return _tip_of(session.steps[step_id], _children(session)).step_id


def _made(parent_id: str, children: Mapping[str, list[Step]]) -> list[Step]:
    """The steps made at `parent_id`, in the order they were made (failed attempts apart)."""
    return [c for c in children.get(parent_id, []) if c.state is not StepState.FAILED]


def _path_letter(step: Step, children: Mapping[str, list[Step]]) -> str:
    """The letter of a step of the path where the path forks ("2b", beside its branches "2a"
    and "2c"), as the step pickers name it; none elsewhere. (Without it, keeping the second
    of three results left branches "2a" and "2c", a gap with no reason: UX audit 4.)"""
    if step.parent_id is None or step.state is StepState.FAILED:
        return ""
    made = _made(step.parent_id, children)
    if len(made) < 2:
        return ""
    return fork_letter([c.step_id for c in made].index(step.step_id))


def step_numbers(session: Session) -> dict[str, int]:
    """Each step's number as the tree shows it: its depth (the original is 0)."""
    depth: dict[str, int] = {}
    for step_id, step in session.steps.items():  # parents come before their children
        depth[step_id] = 0 if step.parent_id is None else depth.get(step.parent_id, 0) + 1
    return depth


def step_names(session: Session, numbers: dict[str, int] | None = None) -> dict[str, str]:
    """Each step's name in the step pickers: its number, and where it forks, its letter among
    the steps made there, as the tree names a branch ("2a"); the pickers named two steps "2 ·
    add snow" where the tree showed "2" and "2a" (UX audit 3)."""
    numbers = numbers if numbers is not None else step_numbers(session)
    made: dict[str, list[str]] = {}
    for step in session.steps.values():
        if step.parent_id is not None and step.state is not StepState.FAILED:
            made.setdefault(step.parent_id, []).append(step.step_id)
    names = {step_id: str(number) for step_id, number in numbers.items()}
    lettered: set[str] = set()
    for siblings in made.values():
        if len(siblings) > 1:
            for place, step_id in enumerate(siblings):
                names[step_id] = f"{numbers[step_id]}{fork_letter(place)}"
                lettered.add(step_id)
    # Two steps of one depth on two branches (past where they fork) read alike, "4" and "4":
    # each says the branch it is on, "4 (3b)" (audit 13).
    alike: dict[str, int] = {}
    for name in names.values():
        alike[name] = alike.get(name, 0) + 1
    for step_id, name in list(names.items()):
        if alike[name] > 1 and step_id not in lettered:
            fork = _fork_above(session, step_id, lettered)
            if fork is not None:
                names[step_id] = f"{name} ({names[fork]})"
    return names


def _fork_above(session: Session, step_id: str, lettered: set[str]) -> str | None:
    """The nearest step above `step_id` that is one of several made on one step."""
    parent = session.steps[step_id].parent_id
    while parent is not None and parent not in lettered:
        parent = session.steps[parent].parent_id
    return parent


def fork_letter(place: int) -> str:
    """The letter of the `place`th step made at a fork (from 0), which names it ("2a")."""
    return chr(ord("a") + place) if place < 26 else "+"


def _folded(chips: list[str], total: int, shown: int, more: str) -> list[str]:
    """The first `shown` of `chips` (`_listed` of `total`), then the rest folded under
    "+N more": each still one click away once unfolded (a count alone left paid results with
    no way to them from the history: UX audit 2)."""
    if total <= shown:
        return chips
    return [
        *chips[:shown],
        f'<details class="more-forks"><summary>+{total - shown} {more}</summary>',
        *chips[shown:],
        "</details>",
    ]


def _tile(
    step: Step,
    label: str,
    thumbs: Mapping[str, str],
    url: Callable[[str], str],
    *,
    current: bool,
    ahead: bool,
) -> str:
    caption = "Original" if step.kind == "origin" else _prompt(step)
    if step.kind == "origin" and step.result is None:
        caption = "Start (generate)"
    meta = _meta(step)
    aria = f"Step {label}: {caption}" + (f" ({meta})" if meta else "")
    attrs = f'data-act="go" data-step="{_a(step.step_id)}" aria-label="{_a(aria)}"'
    if step.params is not None:  # (a tab's first view goes on with it: assets/studio.js)
        attrs += f' data-model="{_a(step.params.model)}"'
    # One stop of Tab for the whole history, its current tile (↑ and ↓ go among the others:
    # assets/studio.js): the current step of a ten-step session was 24 presses of Tab away.
    attrs += ' aria-current="step"' if current else ' tabindex="-1"'
    return (
        f'<button class="tile" {attrs} title="{_a(caption)}">'
        f"{_thumb(step, thumbs, url)}"
        f'<span class="text"><span class="head"><span class="num">{escape(label)}</span>'
        f"{' <span class=redo>↷</span>' if ahead else ''} "
        f'<span class="cap">{escape(_lines(step) or caption)}</span></span>'
        f'<span class="meta">{escape(meta)}</span></span></button>'
    )


def _thumb(
    step: Step, thumbs: Mapping[str, str], url: Callable[[str], str], *, small: bool = False
) -> str:
    path = thumbs.get(step.result.sha256) if step.result is not None else None
    size = "mini" if small else "thumb"
    if path is None:
        # (A branch's small picture is too narrow for a word: "running" showed as "runnin".)
        word = _WORDS.get(step.state, "")
        if small:
            mark = escape(_MARKS.get(step.state, ""))
            named = f'title="{_a(word)}" aria-label="{_a(word)}"'
            return f'<span class="{size} placeholder" {named}>{mark}</span>'
        return f'<span class="{size} placeholder">{escape(word)}</span>'
    return (
        f'<img class="{size}" src="{_a(url(path))}" alt="{_a(_prompt(step) or "Original")}" '
        'loading="lazy">'
    )


def _meta(step: Step) -> str:
    if step.kind == "origin" or step.params is None:
        return ""
    parts: list[str] = [step.params.model]
    if step.region is not None:
        parts.append("in a region" if step.region.kind != "auto" else "kept the rest")
    if step.state is StepState.COMPLETED:
        if step.elapsed_s is not None:
            parts.append(f"{step.elapsed_s:.1f} s")
        if step.cost_cents is not None:
            parts.append(format_cents(step.cost_cents))
    elif step.state is StepState.QUEUED:
        parts.append("queued")
    elif step.state is StepState.RUNNING:
        parts.append("running")
    else:
        parts.append("failed")
    return " · ".join(parts)


def _state_class(step: Step) -> str:
    return str(step.state)


def drawn_steps(session: Session) -> list[Step]:
    """The steps whose pictures `history_html` draws for `session` (seen from the tab's step):
    the origin, the path's window around the tab's step, and each branch drawn where it forks
    with its other ends (`_branch_ends`). However long the session, a few dozen as a rule
    (bounded by `FORKS_LISTED`): only their thumbnails are looked for (a page of a 1,000-step
    session looked for 1,000, a tenth of a second)."""
    tree = _drawn(session)
    drawn: list[Step] = []
    for _, step, others in tree.nodes:
        drawn.append(step)
        for branch in _listed([c for c in others if c.state is not StepState.FAILED]):
            _, other_ends = _branch_ends(branch, tree.children)
            drawn += [branch, *other_ends]
    return drawn


@dataclass(frozen=True, slots=True)
class _Drawn:
    """The tree as drawn: the path, each step's children, the window of the path drawn around
    the tab's step (depths `first` to `last`, the origin always), and each drawn depth with its
    step and the steps forking off it there (branches and failed attempts)."""

    line: Line
    children: dict[str, list[Step]]
    first: int
    last: int
    nodes: list[tuple[int, Step, list[Step]]]


def _drawn(session: Session) -> _Drawn:
    line = line_of(session)
    on_line = {s.step_id for s in line.steps}
    children = _children(session)
    first, last = _window(line)
    nodes = [
        (depth, step, [c for c in children.get(step.step_id, []) if c.step_id not in on_line])
        for depth, step in enumerate(line.steps)
        if depth == 0 or first <= depth <= last
    ]
    return _Drawn(line, children, first, last, nodes)


def _children(session: Session) -> dict[str, list[Step]]:
    children: dict[str, list[Step]] = {}
    for step in session.steps.values():
        if step.parent_id is not None:
            children.setdefault(step.parent_id, []).append(step)
    return children


def _window(line: Line) -> tuple[int, int]:
    """The depths of the path drawn around the tab's step (the origin is always drawn)."""
    return max(1, line.current - BEFORE), min(len(line.steps) - 1, line.current + AHEAD)


def _tip_of(step: Step, children: Mapping[str, list[Step]]) -> Step:
    """The newest end of the branch starting at `step` (where one would go on from)."""
    while True:
        kept = [c for c in children.get(step.step_id, []) if c.state is not StepState.FAILED]
        if not kept:
            return step
        step = max(kept, key=lambda s: s.created_at)


def _ends(step: Step, children: Mapping[str, list[Step]]) -> list[Step]:
    """Every end of the branch starting at `step` (a step nothing kept goes on from), newest
    first."""
    found, todo = [], [step]
    while todo:
        each = todo.pop()
        kept = [c for c in children.get(each.step_id, []) if c.state is not StepState.FAILED]
        if kept:
            todo.extend(kept)
        else:
            found.append(each)
    return sorted(found, key=lambda s: s.created_at, reverse=True)


def _size(step: Step, children: Mapping[str, list[Step]]) -> int:
    count, todo = 0, [step]
    while todo:
        each = todo.pop()
        count += 1
        todo.extend(children.get(each.step_id, []))
    return count


def _model(step: Step) -> str:
    return f"{step.params.model} · " if step.params is not None else ""


def _prompt(step: Step) -> str:
    return " ".join(step.params.prompt.split()) if step.params is not None else ""


def _lines(step: Step) -> str:
    """The instruction as its lines (Shift+Enter), each on one line: a tile shows them so."""
    if step.params is None:
        return ""
    return "\n".join(
        " ".join(line.split()) for line in step.params.prompt.splitlines() if line.strip()
    )


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _a(text: str) -> str:
    return escape(text, quote=True)


__all__ = [
    "Line",
    "candidates_html",
    "empty_html",
    "examples_html",
    "file_url",
    "history_html",
    "line_of",
    "sessions_html",
]


def candidates_html(
    steps: list[Step],
    images: Mapping[str, str],
    texts: Mapping[str, str],
    *,
    url: Callable[[str], str] = file_url,
) -> str:
    """Several results of one instruction side by side, each as it lands, with its time and
    cost (`texts`, plain text) and a Keep button once it has an image."""
    cards = []
    models = [step.params.model if step.params is not None else "" for step in steps]
    # Runs of one model are told apart by their number (three "Keep pro" said nothing: UX
    # audit 2); pro and max by their model.
    numbered = len(set(models)) < len(models)
    for n, step in enumerate(steps, 1):
        path = images.get(step.step_id)
        model = models[n - 1]
        mark = "✗" if step.state is StepState.FAILED else "◷"
        picture = (
            f'<img src="{_a(url(path))}" alt="{_a(model + " result: " + _prompt(step))}">'
            if path
            else f'<span class="placeholder">{mark}</span>'
        )
        keep = (
            f'<button class="keep" data-act="keep" data-step="{_a(step.step_id)}" '
            f'title="{_a(f"Keep result {n} ({model})" if numbered else f"Keep {model}")}">'
            f"Keep {n if numbered else escape(model)}</button>"
            if path
            else ""
        )
        cards.append(
            f'<figure class="card">{picture}<figcaption>'
            f'<span class="cand-text">{escape(texts.get(step.step_id, ""))}</span>{keep}'
            "</figcaption></figure>"
        )
    return (
        '<section class="cands" aria-label="Candidates: keep one, the others stay as branches">'
        f'<p class="hint">Keep one; the others stay in the history as branches.</p>'
        f'<div class="row">{"".join(cards)}</div></section>'
    )


def examples_html(examples: list[tuple[str, str]], *, url: Callable[[str], str] = file_url) -> str:
    """The example images as buttons (`data-act="example"`, `data-step` their index): each a
    small thumbnail (`examples` pairs a thumbnail's file with the example's name)."""
    buttons = "".join(
        f'<button type="button" class="example" data-act="example" data-step="{n}" '
        f'aria-label="Start from the {_a(name)} example" title="{_a(name)}">'
        f'<img src="{_a(url(path))}" alt="{_a(name)}"></button>'
        for n, (path, name) in enumerate(examples)
    )
    return (
        '<section class="examples" aria-label="Examples">'
        '<p class="hint">Or start from an example:</p>'
        f'<div class="row">{buttons}</div></section>'
    )


def sessions_html(
    summaries: Sequence[present.Covered],
    labels: Mapping[str, str],
    current: str | None,
    thumbs: Mapping[str, str],
    now: datetime | None = None,
    *,
    url: Callable[[str], str] = file_url,
    every: bool = False,
    opened: bool = False,
) -> str:
    """The session list: the open session (a thumbnail, its name, steps and last change) and,
    unfolded, the newest `SESSIONS_SHOWN` sessions (`every`: all of them) the same way, each one
    click away (`data-act="open"`), then a button showing the rest (`data-act="every"`).
    `labels` are the names as listed (sessions sharing a name are numbered); `opened` draws
    the list unfolded."""
    now = now or datetime.now(UTC)
    rows = []
    # (With the place of a session's picture: without it, + New made the header 5 px shorter
    # and moved the history's buttons under the pointer.)
    shown = (
        '<span class="cover placeholder" aria-hidden="true"></span>'
        '<span class="name">New session</span>'
    )
    # The open session's own name (the list's may be numbered), which "Rename or delete" shows
    # ready to edit as it opens (assets/studio.js `fillName`).
    named = ""
    for summary in listed_sessions(summaries, current, every=every):
        row = _session_row(summary, labels, thumbs, now, url)
        attrs = f'class="session" data-act="open" data-step="{_a(summary.session_id)}"'
        if summary.session_id == current:
            shown = row
            named = f' data-session="{_a(summary.session_id)}" data-name="{_a(summary.name)}"'
            attrs = attrs.replace('"session"', '"session current"') + ' aria-current="true"'
        rows.append(f'<li><button type="button" {attrs}>{row}</button></li>')
    count = f"{len(summaries)} session{'s' if len(summaries) != 1 else ''}"
    if len(rows) < len(summaries):
        rows.append(
            '<li><button type="button" class="more" data-act="every">'
            f"Show all {count} ({len(summaries) - len(rows)} older)</button></li>"
        )
    return (
        f'<details class="sessions"{" open" if opened else ""}{named}>'
        f'<summary title="Sessions ({count}): open another">{shown}'
        '<span class="fold" aria-hidden="true">▾</span></summary>'
        f'<ul class="list" aria-label="Sessions">{"".join(rows)}</ul></details>'
    )


def listed_sessions(
    summaries: Sequence[_Covered], current: str | None, *, every: bool = False
) -> list[_Covered]:
    """The sessions the list draws, newest first: the newest `SESSIONS_SHOWN` and the open one
    (or, `every`, all of them). A render stays small however many sessions a visitor keeps."""
    if every:
        return list(summaries)
    shown = list(summaries[:SESSIONS_SHOWN])
    shown += [s for s in summaries[SESSIONS_SHOWN:] if s.session_id == current]
    return shown


def _session_row(
    summary: present.Covered,
    labels: Mapping[str, str],
    thumbs: Mapping[str, str],
    now: datetime,
    url: Callable[[str], str],
) -> str:
    name = labels.get(summary.session_id, summary.name)
    cover = thumbs.get(summary.cover_sha256) if summary.cover_sha256 else None
    picture = (
        f'<img class="cover" src="{_a(url(cover))}" alt="" loading="lazy">'
        if cover
        else '<span class="cover placeholder" aria-hidden="true"></span>'
    )
    if summary.damaged:
        meta = "damaged: cannot be opened"
    else:
        # The day in UTC; the page writes it in the visitor's own time, with the hour
        # (`_HEADER_JS`: a list of sessions all "today" told them apart by nothing).
        moment = summary.updated_at
        when = escape(present.when(moment, now))
        stamp = moment.isoformat() if moment.tzinfo is not None else ""
        count = present.made_count(summary.made_count, summary.pending_count)
        meta = f"{count} · " + (f'<time datetime="{_a(stamp)}">{when}</time>' if stamp else when)
    return f'{picture}<span class="name">{escape(name)}</span><span class="meta">{meta}</span>'
