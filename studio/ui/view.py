"""The page as plain values: `render_page(PageData) -> PageUpdate`, pure and typed.

No Gradio and no I/O here: the handlers turn a `PageUpdate` into component updates, and the
bridge has already read everything (the session, what runs, the files to show). Tested without a
browser in `tests/unit/test_view.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from studio.history import Session, Step, StepState, StepUpdate
from studio.params import SAFETY_MAX_EDIT, SAFETY_MAX_GENERATE, nearest_aspect_ratio
from studio.ui import present

EMPTY_STATUS = (
    "Upload, paste or link an image, pick an example, or type an instruction to generate one."
)


@dataclass(frozen=True, slots=True)
class PageData:
    """Everything one render of the page needs, read by the bridge in one crossing.

    `images` and `thumbs` map an image's sha256 to a file Gradio may serve; `damaged` is the
    sentence saying why the asked-for session could not be read (the rest of the page works).
    """

    session: Session | None
    summaries: Sequence[present.Listed]
    running: dict[str, StepUpdate]
    images: dict[str, str]
    thumbs: dict[str, str]
    balance_cents: int | None = None
    damaged: str | None = None
    version: str | None = None


@dataclass(frozen=True, slots=True)
class Choices:
    """A dropdown's choices (label, value) and its value."""

    choices: list[tuple[str, str]]
    value: str | None


@dataclass(frozen=True, slots=True)
class Tiles:
    """The two tiles shown for a step that has no image yet (running) or never will (failed)."""

    running: str
    failed: str

    @classmethod
    def from_assets(cls, assets: Path) -> Tiles:
        return cls(str(assets / "step-running.png"), str(assets / "step-failed.png"))


@dataclass(frozen=True, slots=True)
class PageUpdate:
    """What every view output of the page shows. `session_id` None leaves the browser's own.

    `tab_step` is the step this tab shows: the parent of its next edit, whatever another tab,
    the CLI or an agent does meanwhile. `version` is the session's version it shows.
    """

    session_id: str | None
    tab_step: str | None
    version: str | None
    sessions: Choices
    cost: str
    source: str | None
    result: str | None
    slider: tuple[str, str] | None
    status: str
    download: str | None
    retry_visible: bool
    aspect_choices: list[tuple[str, str]]
    history: list[tuple[str, str]]
    branches: list[tuple[str, str]]
    can_undo: bool
    can_redo: bool
    running: bool
    cancel_visible: bool
    pair_a: Choices
    pair_b: Choices = field(default_factory=lambda: Choices([], None))
    # The tab's step in `history` (highlighted), failed attempts off its line (tucked away),
    # what a download of the shown image is called, and the safety slider's top for the next step.
    history_selected: int | None = None
    failed: list[tuple[str, str]] = field(default_factory=list)
    download_name: str | None = None
    safety_max: int = SAFETY_MAX_GENERATE
    session_name: str | None = None


@dataclass(frozen=True, slots=True)
class Strips:
    """The history seen from the tab's step, as the page lays it out.

    `line` runs from the origin to the tab's step (at `current_index`) and on along the redo
    line ahead of it, so an undone step is one Redo away, not "another branch". `branches` are
    the ends of the other lines (a failed attempt is not an end: its line ends before it), and
    `failed` the failed attempts off the line, kept out of the way.
    """

    line: tuple[Step, ...]
    current_index: int
    branches: tuple[Step, ...]
    failed: tuple[Step, ...]


def strips(session: Session) -> Strips:
    """`session` (seen from its current step) laid out as the history strip's rows."""
    path = session.path()
    ahead = tuple(session.steps[i] for i in reversed(session.redo_stack))
    line = (*path, *ahead)
    on_line = {s.step_id for s in line}
    kept = [s for s in session.steps.values() if s.state is not StepState.FAILED]
    parents = {s.parent_id for s in kept}
    branches = tuple(s for s in kept if s.step_id not in parents and s.step_id not in on_line)
    failed = tuple(
        s
        for s in session.steps.values()
        if s.state is StepState.FAILED and s.step_id not in on_line
    )
    return Strips(line, len(path) - 1, branches, failed)


def step_numbers(session: Session) -> dict[str, int]:
    """Each step's number: its place in the order the steps were made (the origin is 0), so
    no two steps share one, whatever branch they are on."""
    return {step_id: n for n, step_id in enumerate(session.steps)}


def render_page(data: PageData, tiles: Tiles, tab_step: str | None = None) -> PageUpdate:
    """The whole page for `data.session` seen from `tab_step` (default: the session's current
    step, as for a fresh page), or the empty page."""
    choices = present.session_choices(data.summaries)
    session = data.session
    if session is None:
        status = f"⚠ {data.damaged}" if data.damaged else EMPTY_STATUS
        return PageUpdate(
            session_id=None,
            tab_step=None,
            version=None,
            sessions=Choices(choices, None),
            cost=present.cost_line(None, data.balance_cents),
            source=None,
            result=None,
            slider=None,
            status=status,
            download=None,
            retry_visible=False,
            aspect_choices=present.aspect_choices(None),
            history=[],
            branches=[],
            can_undo=False,
            can_redo=False,
            running=False,
            cancel_visible=False,
            pair_a=Choices([], None),
            pair_b=Choices([], None),
        )
    if tab_step is not None and tab_step in session.steps:
        session = session.make_current(tab_step)
    current = session.current
    shown = shown_step(session)
    image = _image(data, shown)
    parent_image = None
    if shown.parent_id is not None:
        parent_image = _image(data, session.steps[shown.parent_id])
    match_ratio = None
    if shown.result is not None:
        match_ratio = nearest_aspect_ratio(shown.result.width, shown.result.height)
    numbers = step_numbers(session)
    finished = [s for s in session.steps.values() if s.result is not None]
    pair_choices = [present.step_choice(s, numbers[s.step_id]) for s in finished]
    pair_ids = {s.step_id for s in finished}
    left = shown.parent_id if parent_image else shown.step_id
    rows = strips(session)
    retries = _failed_attempts(session)

    def tiles_of(steps: Sequence[Step], ahead_from: int | None = None) -> list[tuple[str, str]]:
        return [
            (
                _tile(data, tiles, s),
                present.caption(
                    s,
                    numbers[s.step_id],
                    failed_before=retries.get(s.step_id, 0),
                    ahead=ahead_from is not None and i > ahead_from,
                ),
            )
            for i, s in enumerate(steps)
        ]

    return PageUpdate(
        session_id=session.session_id,
        tab_step=current.step_id,
        version=data.version,
        sessions=Choices(choices, session.session_id),
        cost=present.cost_line(session, data.balance_cents),
        source=image,
        # While the tab's step runs, the result area says so; its source stays in view.
        result=tiles.running if not current.is_finished else _result(shown, image),
        slider=(parent_image, image) if parent_image and image else None,
        status=present.step_status(current, data.running.get(current.step_id)),
        download=image,
        retry_visible=current.state is StepState.FAILED,
        aspect_choices=present.aspect_choices(match_ratio),
        history=tiles_of(rows.line, rows.current_index),
        history_selected=rows.current_index,
        branches=tiles_of(rows.branches),
        failed=tiles_of(rows.failed),
        can_undo=session.can_undo,
        can_redo=session.can_redo,
        running=any(not s.is_finished for s in session.steps.values()),
        # Only a step still waiting for the one before it can be cancelled (nothing was sent).
        cancel_visible=current.is_waiting,
        # A value that is not among the choices (nothing finished yet) would make Gradio warn.
        pair_a=Choices(pair_choices, left if left in pair_ids else None),
        pair_b=Choices(pair_choices, shown.step_id if shown.step_id in pair_ids else None),
        download_name=(
            present.download_name(session.name, numbers[shown.step_id], shown.result.format)
            if shown.result is not None
            else None
        ),
        safety_max=SAFETY_MAX_EDIT if session.next_is_edit else SAFETY_MAX_GENERATE,
        session_name=session.name,
    )


def shown_step(session: Session) -> Step:
    """The step whose image fills the page: the current one, or its nearest ancestor with one."""
    for step in reversed(session.path()):
        if step.result is not None:
            return step
    return session.current


def _failed_attempts(session: Session) -> dict[str, int]:
    """For each retry, how many failed attempts came before it (the retries of retries too)."""
    counts: dict[str, int] = {}
    for step in session.steps.values():
        count, earlier = 0, step.retry_of
        while earlier is not None and earlier in session.steps:
            count += 1
            earlier = session.steps[earlier].retry_of
        if count:
            counts[step.step_id] = count
    return counts


def _result(shown: Step, image: str | None) -> str | None:
    return image if shown.kind != "origin" else None


def _image(data: PageData, step: Step) -> str | None:
    return None if step.result is None else data.images.get(step.result.sha256)


def _tile(data: PageData, tiles: Tiles, step: Step) -> str:
    if step.result is None:
        return tiles.failed if step.state is StepState.FAILED else tiles.running
    return data.thumbs.get(step.result.sha256, tiles.running)
