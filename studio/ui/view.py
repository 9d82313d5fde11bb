"""The page as plain values: `render_page(PageData) -> PageUpdate`, pure and typed.

No Gradio and no I/O here: the handlers turn a `PageUpdate` into component updates, and the
bridge has already read everything (the session, what runs, the files to show). Tested without a
browser in `tests/unit/test_view.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from studio.history import ImageRef, Session, Step, StepState, StepUpdate
from studio.params import SAFETY_MAX_GENERATE, safety_max
from studio.ui import present, tree

if TYPE_CHECKING:
    from datetime import datetime

EMPTY_STATUS = (
    "Upload, paste or link an image, pick an example, or type an instruction to generate one."
)
# The tab's session is no longer in the store (UX audit 5: another tab deleted it, and this one
# said only "There is no such session.", and refused each instruction typed there the same way).
GONE_STATUS = (
    "⚠ This session is no longer here: it was deleted, perhaps in another tab. Upload, paste or "
    "link an image, or type an instruction, to start a new one."
)


@dataclass(frozen=True, slots=True)
class PageData:
    """Everything one render of the page needs, read by the bridge in one crossing.

    `images` and `thumbs` map an image's sha256 to a file Gradio may serve; `damaged` is the
    sentence saying why the asked-for session could not be read (the rest of the page works);
    `left_open`, the queued steps that cannot be cancelled (`Engine.left_open`); `gone`, that
    the asked-for session is not there (deleted, perhaps in another tab).
    """

    session: Session | None
    summaries: Sequence[present.Covered]
    running: dict[str, StepUpdate]
    images: dict[str, str]
    thumbs: dict[str, str]
    damaged: str | None = None
    version: str | None = None
    # The images whose thumbnails `thumbs` is still to hold (made apart: `Bridge.page`).
    wanted: tuple[ImageRef, ...] = ()
    left_open: frozenset[str] = frozenset()
    gone: bool = False


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
    """What every view output of the page shows. `session_id` None leaves the browser's own,
    unless `forget`: the browser's session is gone, and the next edit starts a new one.

    `tab_step` is the step this tab shows: the parent of its next edit, whatever another tab,
    the CLI or an agent does meanwhile. `version` is the session's version it shows. `result`
    is the canvas (the tab's step, or its nearest ancestor with an image while it runs) and
    `before` that image's source; `history` is the tree (`tree.history_html`); `notice` names
    steps made elsewhere after the one shown (the tab never moves by itself).
    """

    session_id: str | None
    tab_step: str | None
    version: str | None
    sessions: Choices
    cost: str
    result: str | None
    before: str | None
    status: str
    download: str | None
    retry_visible: bool
    aspect_choices: list[tuple[str, str]]
    history: str
    can_undo: bool
    can_redo: bool
    running: bool
    pair_a: Choices
    pair_b: Choices = field(default_factory=lambda: Choices([], None))
    download_name: str | None = None
    # What the model's own output downloads as (`raw`).
    raw_name: str | None = None
    safety_max: int = SAFETY_MAX_GENERATE
    session_name: str | None = None
    notice: str | None = None
    notice_step: str | None = None
    # The model's own output of the shown step, when the rest was kept by a blend.
    raw: str | None = None
    # The session list (`tree.sessions_html`): thumbnails, names, steps, last change.
    sessions_html: str = ""
    forget: bool = False


def pair(session: Session, numbers: dict[str, int] | None = None) -> tuple[Choices, Choices]:
    """The two dropdowns of "Compare two steps" for the step `session` is seen from: every
    finished step to pick from, the step's parent on the left (itself when the parent has no
    image) and the step on the right."""
    shown = shown_step(session)
    numbers = numbers if numbers is not None else tree.step_numbers(session)
    finished = [s for s in session.steps.values() if s.result is not None]
    names = tree.step_names(session, numbers)
    choices = [present.step_choice(s, names[s.step_id]) for s in finished]
    ids = {s.step_id for s in finished}
    left = shown.parent_id if shown.parent_id in ids else shown.step_id
    # A value that is not among the choices (nothing finished yet) would make Gradio warn.
    return (
        Choices(choices, left if left in ids else None),
        Choices(choices, shown.step_id if shown.step_id in ids else None),
    )


def render_page(
    data: PageData,
    tiles: Tiles,
    tab_step: str | None = None,
    *,
    done: int = 0,
    refused: int = 0,
    now: datetime | None = None,
    every_session: bool = False,
    sessions_open: bool = False,
    withdrawn: tuple[str, str, str] | None = None,
    ahead: Sequence[str] = (),
) -> PageUpdate:
    """The whole page for `data.session` seen from `tab_step` (default: the session's current
    step, as for a fresh page), or the empty page. `done` is the last Enter of this tab that
    the server has taken (the page drops its own "queued" tiles up to it). `now` dates the
    session list ("today", "2 Dec"); `every_session` lists all of them, not only the newest
    (`sessions_open`: unfolded). `withdrawn`: a queued step this tab's undo (or ✕) took
    back, its instruction and when it was queued (`tree.history_html`). `ahead`: the steps
    after `tab_step` this tab undid, nearest first: its redo line (`Session.seen_from`)."""
    del tiles  # the tree draws its own placeholders
    choices = present.session_choices(data.summaries)
    session = data.session
    listed = tree.sessions_html(
        data.summaries,
        dict((value, label) for label, value in choices),
        session.session_id if session is not None else None,
        data.thumbs,
        now,
        every=every_session,
        opened=sessions_open,
    )
    if session is None:
        status = f"⚠ {data.damaged}" if data.damaged else GONE_STATUS if data.gone else EMPTY_STATUS
        return PageUpdate(
            session_id=None,
            tab_step=None,
            version=None,
            sessions=Choices(choices, None),
            cost=present.cost_line(None),
            result=None,
            before=None,
            status=status,
            download=None,
            retry_visible=False,
            aspect_choices=present.aspect_choices(None),
            history=tree.empty_html(done, refused),
            can_undo=False,
            can_redo=False,
            running=False,
            pair_a=Choices([], None),
            pair_b=Choices([], None),
            sessions_html=listed,
            forget=data.gone,
        )
    stored = session.current
    session = session.seen_from(tab_step, ahead)
    current = session.current
    shown = shown_step(session)
    image = _image(data, shown)
    parent_image = None
    if shown.parent_id is not None:
        parent_image = _image(data, session.steps[shown.parent_id])
    match_ratio = None
    if shown.result is not None:
        match_ratio = present.match_ratio(shown.result.width, shown.result.height)
    numbers = tree.step_numbers(session)
    pair_a, pair_b = pair(session, numbers)
    notice, notice_step = _news(session, stored, current, ahead)
    names = _download_names(session, shown, numbers[shown.step_id])
    return PageUpdate(
        session_id=session.session_id,
        tab_step=current.step_id,
        version=data.version,
        sessions=Choices(choices, session.session_id),
        cost=present.cost_line(session),
        # While the tab's step runs, the canvas keeps the image it builds on; the status line
        # under it says a run is under way.
        result=image,
        before=parent_image if image else None,
        status=present.step_status(
            current,
            data.running.get(current.step_id),
            waiting=_waiting_after(session, current),
            running=data.running,
        ),
        download=image,
        retry_visible=current.kind != "origin" and current.is_finished,
        aspect_choices=present.aspect_choices(match_ratio),
        history=tree.history_html(
            session,
            data.thumbs,
            done=done,
            refused=refused,
            masks=data.images,
            withdrawn=withdrawn,
            left_open=data.left_open,
            started=tree.started_steps(data.running),
        ),
        can_undo=session.can_undo,
        can_redo=session.can_redo,
        running=any(not s.is_finished for s in session.steps.values()),
        pair_a=pair_a,
        pair_b=pair_b,
        download_name=names[0],
        safety_max=safety_max(editing=session.next_is_edit),
        session_name=session.name,
        notice=notice,
        notice_step=notice_step,
        raw=_image_of(data, shown.raw_result) if shown.step_id == current.step_id else None,
        raw_name=names[1],
        sessions_html=listed,
    )


def _download_names(session: Session, shown: Step, number: int) -> tuple[str | None, str | None]:
    """What the shown step's image, and the model's own output of it, download as."""
    image, raw = shown.result, shown.raw_result
    return (
        present.download_name(session.name, number, image.format) if image else None,
        present.download_name(session.name, number, raw.format, own_output=True) if raw else None,
    )


def _waiting_after(session: Session, step: Step) -> tuple[int, int]:
    """The edits not yet finished that build on `step` (typed ahead after it, or its
    candidates): how many run, and how many wait their turn."""
    if not step.is_finished:
        return 0, 0
    running = queued = 0
    for other in session.steps.values():
        if other.is_finished:
            continue
        parent = other.parent_id
        while parent is not None and parent != step.step_id:
            parent = session.steps[parent].parent_id
        if parent == step.step_id:
            if other.state is StepState.RUNNING:
                running += 1
            else:
                queued += 1
    return running, queued


def _news(
    session: Session, stored: Step, current: Step, undone: Sequence[str] = ()
) -> tuple[str | None, str | None]:
    """A notice when the session's own current step (moved by another tab, the CLI or an
    agent) is newer than the step this tab shows: how many steps were made since on the way
    to it, and the newest, one click away. The tab never moves by itself. (Every step made
    since was counted: a step this tab had made and undone made one new step "2 new steps":
    UX audit 4.)"""
    if stored.step_id == current.step_id or stored.created_at <= current.created_at:
        return None, None
    # (`session` is seen from `current`.) What this tab undid (`undone`) is its own too:
    # another tab going on from there counted it as a new step as well (UX audit 5).
    shown = {s.step_id for s in session.path()} | set(undone)
    count = sum(
        1
        for s in session.make_current(stored.step_id).path()
        if s.step_id not in shown and s.created_at > current.created_at
    )
    plural = "s" if count != 1 else ""
    return f"✦ {count} new step{plural} from elsewhere: show", stored.step_id


def shown_step(session: Session) -> Step:
    """The step whose image fills the page: the current one, or its nearest ancestor with one."""
    for step in reversed(session.path()):
        if step.result is not None:
            return step
    return session.current


def _image_of(data: PageData, ref: ImageRef | None) -> str | None:
    return None if ref is None else data.images.get(ref.sha256)


def _image(data: PageData, step: Step) -> str | None:
    return None if step.result is None else data.images.get(step.result.sha256)
