"""A session's tree of steps: the chain, branches, current step, undo/redo and step states.

Plain immutable values; imports only `studio.params` and the stdlib. No I/O and no clock.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal, get_args
from urllib.parse import unquote

from studio.params import EditParams, split_url

StepKind = Literal["origin", "edit", "generate"]
# Where a running step is, finer than its state: what the page and the CLI say while it runs.
Phase = Literal[
    "queued",
    "uploading",
    "submitted",
    "pending",
    "processing",
    "downloading",
    "completed",
    "failed",
]
# The phases that end a step, and those of a step still running, in the order it passes them.
FINAL_PHASES: tuple[Phase, ...] = ("completed", "failed")
RUNNING_PHASES: tuple[Phase, ...] = tuple(p for p in get_args(Phase) if p not in FINAL_PHASES)
SourceKind = Literal["upload", "link", "step", "none"]
# Whose RunAPI key pays for a step: the server's ("host") or the visitor's own ("visitor").
Payer = Literal["host", "visitor"]
# How a step's region was given: a mask, a box, or found by the studio ("Keep the rest").
RegionKind = Literal["mask", "box", "auto"]
REGION_KINDS: tuple[RegionKind, ...] = ("mask", "box", "auto")
# Names are shown in lists and file names of exports; this only stops pasted novels.
MAX_NAME_CHARS = 200
# The name of a session started with no name; its first instruction names it. Earlier studios
# named such sessions by the minute they were made ("Session 2026-11-30 23:40").
UNTITLED = "Untitled session"
_MINUTE_NAME = re.compile(r"Session \d{4}-\d\d-\d\d \d\d:\d\d")
# How much of other text (an instruction, a link, a file name) a session the studio names is
# named after: what the page's session list shows whole.
MADE_NAME_CHARS = 60


class HistoryError(ValueError):
    """An operation the tree does not allow (undo at the root, deleting a running step...).

    `str()` is one plain sentence.
    """


class StepState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


UNFINISHED_STATES = frozenset({StepState.QUEUED, StepState.RUNNING})


def new_id() -> str:
    """A fresh step or session id (a uuid4 string); also the step's RunAPI idempotency key."""
    return str(uuid.uuid4())


@dataclass(frozen=True, kw_only=True, slots=True)
class ImageRef:
    """A stored image, named by the SHA-256 of its bytes."""

    sha256: str
    format: str
    width: int
    height: int


@dataclass(frozen=True, kw_only=True, slots=True)
class StepSource:
    """Where a step's input image came from; `uploaded_url` is RunAPI's copy, valid until expiry."""

    kind: SourceKind
    image_sha256: str | None = None
    link_url: str | None = None
    uploaded_url: str | None = None
    uploaded_expires_at: datetime | None = None


NO_SOURCE = StepSource(kind="none")


@dataclass(frozen=True, kw_only=True, slots=True)
class StepRegion:
    """Where a step may change its source; everything else is kept from the source.

    `box` is (x, y, w, h) in the pixels of the image it was drawn on, `mask_sha256` a stored
    greyscale PNG (white: may change) at the size it was given, and `drawn_on` that image's
    (width, height), so a replay on another image scales either. An "auto" region has no box; its
    mask is the one the studio found, stored once the step completes.
    """

    kind: RegionKind
    box: tuple[int, int, int, int] | None = None
    mask_sha256: str | None = None
    drawn_on: tuple[int, int] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Step:
    """Our durable record of one edit. Never rewritten: only its state advances, into a new value.

    The states advance queued -> running -> completed | failed (queued -> failed too, when the
    service refuses the create). The origin step is born completed.
    """

    step_id: str
    session_id: str
    parent_id: str | None
    kind: StepKind
    params: EditParams | None
    source: StepSource
    state: StepState
    created_at: datetime
    task_id: str | None = None
    result: ImageRef | None = None
    submitted_at: datetime | None = None
    completed_at: datetime | None = None
    # Seconds from submission (or creation, if never submitted) to the end.
    elapsed_s: float | None = None
    # None until the service reports a charge; a failed task is refunded, so usually 0.
    cost_cents: int | None = None
    error: str | None = None
    retry_of: str | None = None
    # Set when the step is made, never changed; None for steps from before it was recorded.
    payer: Payer | None = None
    # Which visitor's key pays (a keyed digest, never the key), for a step the visitor pays:
    # after a restart it runs again on that key only (None: from before it was recorded).
    payer_key: str | None = None
    # The region the edit was kept to (None: the model's output is the step's image), and the
    # model's own output when the step's image is a blend of it over the source.
    region: StepRegion | None = None
    raw_result: ImageRef | None = None

    @property
    def is_finished(self) -> bool:
        return self.state not in UNFINISHED_STATES

    def start(self, task_id: str, now: datetime) -> Step:
        """queued -> running, recording RunAPI's task id the moment the create returns."""
        self._require({StepState.QUEUED}, "start")
        return replace(self, state=StepState.RUNNING, task_id=task_id, submitted_at=_utc(now))

    def complete(
        self,
        result: ImageRef,
        now: datetime,
        *,
        cost_cents: int | None = None,
        raw_result: ImageRef | None = None,
        found_mask_sha256: str | None = None,
    ) -> Step:
        """running -> completed, with the stored result image and the billed cost.

        A step with a region passes the model's own output as `raw_result` (`result` is then the
        blend), and an "auto" region the mask the studio found.
        """
        self._require({StepState.RUNNING}, "complete")
        now = _utc(now)
        region = self.region
        if region is not None and region.kind == "auto" and found_mask_sha256 is not None:
            region = replace(region, mask_sha256=found_mask_sha256)
        return replace(
            self,
            state=StepState.COMPLETED,
            result=result,
            raw_result=raw_result,
            region=region,
            completed_at=now,
            elapsed_s=self._elapsed_s(now),
            cost_cents=cost_cents,
        )

    def fail(self, error: str, now: datetime, *, cost_cents: int | None = None) -> Step:
        """queued or running -> failed, with the service's message."""
        self._require(UNFINISHED_STATES, "fail")
        now = _utc(now)
        return replace(
            self,
            state=StepState.FAILED,
            error=error,
            completed_at=now,
            elapsed_s=self._elapsed_s(now),
            cost_cents=cost_cents,
        )

    def with_upload(self, uploaded_url: str, expires_at: datetime) -> Step:
        """Record RunAPI's copy of the source (uploads expire, so a resume may upload again)."""
        self._require(UNFINISHED_STATES, "record an upload for")
        source = replace(
            self.source, uploaded_url=uploaded_url, uploaded_expires_at=_utc(expires_at)
        )
        return replace(self, source=source)

    @property
    def is_waiting(self) -> bool:
        """Queued behind its parent: it runs on the parent's image once that exists."""
        return (
            self.state is StepState.QUEUED
            and self.source.kind == "step"
            and self.source.image_sha256 is None
        )

    def with_source_image(self, sha256: str) -> Step:
        """A waiting step, now that its parent's image exists: it can run."""
        if not self.is_waiting:
            raise HistoryError(f"Step {self.step_id} is not waiting for an image.")
        return replace(self, source=replace(self.source, image_sha256=sha256))

    def reparent(self, parent_id: str) -> Step:
        """A waiting step, moved after `parent_id` (the step before it was cancelled): it
        waits for that step's image instead."""
        if not self.is_waiting:
            raise HistoryError(f"Step {self.step_id} is not waiting for an image.")
        return replace(self, parent_id=parent_id)

    def _require(self, states: set[StepState] | frozenset[StepState], verb: str) -> None:
        if self.state not in states:
            raise HistoryError(f"Cannot {verb} step {self.step_id}: it is {self.state}.")

    def _elapsed_s(self, now: datetime) -> float:
        return (now - (self.submitted_at or self.created_at)).total_seconds()


@dataclass(frozen=True, slots=True)
class StepUpdate:
    """Where one running step is: its latest record, the phase and seconds since it was queued."""

    step: Step
    phase: Phase
    elapsed_s: float
    # What holds it up, when something does ("RunAPI is not answering…"); "" otherwise.
    note: str = ""

    @property
    def is_final(self) -> bool:
        return self.phase in FINAL_PHASES

    @property
    def is_taken(self) -> bool:
        """The runner has it while its record still says queued (its source uploads, or its
        task is being created, or it is about to be): under way, no longer cancellable. A step
        waiting for the one before it is not."""
        return (
            self.step.state is StepState.QUEUED and not self.step.is_waiting and not self.is_final
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Session:
    """A tree of steps under one origin step, with a current step and a redo stack.

    Every session has exactly one root, the origin step (kind "origin", completed, no params).
    It holds the source image, or no image (`result=None`, source kind "none") for a session that
    starts by generating. Methods return new sessions and never change this one.
    `redo_stack[-1]` is the child that `redo()` moves to; it survives reloads through the store.
    """

    session_id: str
    name: str
    created_at: datetime
    steps: dict[str, Step]
    current_step_id: str
    redo_stack: tuple[str, ...] = ()
    owner: str | None = field(default=None, repr=False)

    @classmethod
    def start(
        cls,
        session_id: str,
        name: str,
        origin: ImageRef | None,
        now: datetime,
        *,
        origin_step_id: str | None = None,
        source: StepSource | None = None,
        owner: str | None = None,
    ) -> Session:
        """A new session whose origin step holds `origin` (or nothing, to generate from scratch).

        `source` says where the origin came from (default: an upload of `origin`).
        """
        now = _utc(now)
        if source is None:
            source = NO_SOURCE if origin is None else StepSource(kind="upload")
        if origin is not None:
            source = replace(source, image_sha256=origin.sha256)
        root = Step(
            step_id=origin_step_id or new_id(),
            session_id=session_id,
            parent_id=None,
            kind="origin",
            params=None,
            source=source,
            state=StepState.COMPLETED,
            created_at=now,
            completed_at=now,
            result=origin,
        )
        return cls(
            session_id=session_id,
            name=_clean_name(name),
            created_at=now,
            steps={root.step_id: root},
            current_step_id=root.step_id,
            owner=owner,
        )

    @property
    def current(self) -> Step:
        return self.steps[self.current_step_id]

    @property
    def origin(self) -> Step:
        return self.path()[0]

    @property
    def can_undo(self) -> bool:
        return self.current.parent_id is not None

    @property
    def can_redo(self) -> bool:
        return bool(self.redo_stack)

    @property
    def total_cost_cents(self) -> int:
        return sum(step.cost_cents or 0 for step in self.steps.values())

    @property
    def branches(self) -> tuple[Step, ...]:
        """Tips (steps without children) that are not on the current path, oldest first."""
        parents = {step.parent_id for step in self.steps.values()}
        on_path = {step.step_id for step in self.path()}
        return tuple(
            step
            for step in self.steps.values()
            if step.step_id not in parents and step.step_id not in on_path
        )

    def path(self) -> tuple[Step, ...]:
        """The steps from the origin down to the current step."""
        return self._ancestry(self.current_step_id)

    def children(self, step_id: str) -> tuple[Step, ...]:
        """The steps made from `step_id`, oldest first."""
        self._get(step_id)
        return tuple(step for step in self.steps.values() if step.parent_id == step_id)

    def subtree(self, step_id: str) -> tuple[str, ...]:
        """The ids of `step_id` and all its descendants."""
        found = [self._get(step_id).step_id]
        for parent_id in found:  # grows while it is walked: a breadth-first search
            found.extend(s.step_id for s in self.steps.values() if s.parent_id == parent_id)
        return tuple(found)

    @property
    def next_parent(self) -> Step:
        """The step the next edit builds on: the current one, or, when the current step failed
        (it has no image), its nearest ancestor that did not fail (instructions typed ahead
        fail together: the first, then each one after it)."""
        return self._not_failed(self.current)

    def _tried_since(self, failed: Step) -> Step | None:
        """The newest later try of `failed` that did not fail (done or on its way), following
        tries of tries; None when there is none."""
        tries = sorted(
            (s for s in self.steps.values() if s.retry_of == failed.step_id),
            key=lambda s: s.created_at,
            reverse=True,
        )
        for step in tries:
            if step.state is not StepState.FAILED:
                return step
            if (later := self._tried_since(step)) is not None:
                return later
        return None

    def _not_failed(self, step: Step) -> Step:
        """`step`, or when it failed, its nearest ancestor that did not (the origin at worst)."""
        while step.state is StepState.FAILED and step.parent_id is not None:
            step = self.steps[step.parent_id]
        return step

    @property
    def next_is_edit(self) -> bool:
        """Whether the next step edits an image (else it generates one from the prompt alone).

        The one place that decides it: the page's limits, the engine's validation and the
        step's kind all follow from here.
        """
        return self._output_of(self.next_parent).kind != "none"

    def add_step(
        self,
        step_id: str,
        params: EditParams,
        now: datetime,
        *,
        source: StepSource | None = None,
        region: StepRegion | None = None,
    ) -> Session:
        """Queue a new step after the current one and make it current (this clears redo).

        The source defaults to the current step's image, or to nothing (a generation) when the
        current step is an origin without one; while the current step still runs, the new step
        waits for its image (typing ahead). A failed step has no image, so a step added while
        a failed step is current hangs off the failed step's parent instead. `params` are
        validated for what the step is (an edit or a generation): raises `ParamsError`.
        A `region` needs an image to edit; `params.keep_rest` finds one when editing (a
        generation has nothing to keep, so it is ignored there).
        """
        parent = self.next_parent
        if source is None:
            source = self._output_of(parent)
        editing = source.kind != "none"
        if region is None and params.keep_rest and editing:
            region = StepRegion(kind="auto")
        if region is not None and not editing:
            raise HistoryError("A mask or a box needs an image to edit; there is none here.")
        step = Step(
            step_id=step_id,
            session_id=self.session_id,
            parent_id=parent.step_id,
            kind="edit" if editing else "generate",
            params=params.validated(editing=editing),
            source=source,
            state=StepState.QUEUED,
            created_at=_utc(now),
            region=region,
        )
        return self._with_new_step(step)

    def to_try_again(self, step_id: str) -> tuple[Step, ...]:
        """What *Try again* on `step_id` runs again, oldest first: the step, after each failed
        step it was typed ahead of and so never ran (RunAPI failed the first of a queue, and
        the rest failed with it). Each instruction runs again, in order: tried again alone, the
        second ran on the image before the first, and the first was dropped without a word
        (UX audit 5). A failed step already tried again with success is not run again: the
        steps after it run on that try (`retry`)."""
        step = self._get(step_id)
        chain = [step]
        while step.state is StepState.FAILED and step.task_id is None and step.parent_id:
            parent = self.steps[step.parent_id]
            if (
                parent.kind == "origin"
                or parent.state is not StepState.FAILED
                or self._tried_since(parent) is not None
            ):
                break
            chain.insert(0, parent)
            step = parent
        return tuple(chain)

    def retry(
        self, step_id: str, new_step_id: str, now: datetime, *, after: str | None = None
    ) -> Session:
        """Queue a copy of finished step `step_id` as its sibling and make it current: a retry
        of a failed step, or another try of a finished one ("try again"). `after`: run it
        after that step instead (a try of the failed step it was typed ahead of,
        `to_try_again`)."""
        failed = self._get(step_id)
        if failed.kind == "origin" or not failed.is_finished:
            raise HistoryError("Only a finished edit can be tried again.")
        parent_id, kind, params = failed.parent_id, failed.kind, failed.params
        # Not RunAPI's copy the try before was sent with: a new try is a new request, and that
        # copy may be what failed it (RunAPI had lost the file: "HTTP 404"; UX audit 1).
        source = replace(failed.source, uploaded_url=None, uploaded_expires_at=None)
        region = failed.region
        parent = None
        if after is not None:
            parent = self._get(after)
        elif parent_id is not None and self.steps[parent_id].state is StepState.FAILED:
            # Typed ahead of a step that failed, it never ran: tried again, it runs on that
            # step's own later try if one did not fail, else on the nearest image up its
            # branch, as an instruction sent now would.
            before = self.steps[parent_id]
            parent = self._tried_since(before) or self._not_failed(before)
        if parent is not None:
            parent_id, source = parent.step_id, self._output_of(parent)
            editing = source.kind != "none"
            kind = "edit" if editing else "generate"
            region = region if editing else None
            if params is not None:
                params = params.validated(editing=editing)
        step = Step(
            step_id=new_step_id,
            session_id=self.session_id,
            parent_id=parent_id,
            kind=kind,
            params=params,
            source=source,
            state=StepState.QUEUED,
            created_at=_utc(now),
            retry_of=failed.step_id if failed.state is StepState.FAILED else None,
            region=region,
        )
        return self._with_new_step(step)

    def seen_from(self, step_id: str | None, via: Sequence[str] = ()) -> Session:
        """The session as a tab showing `step_id` sees it (its path runs to that step); as
        stored when no step is named or that step is gone. `via`: the steps ahead of it that
        this tab undid, nearest first: its redo line runs through them, as far as each is the
        child of the one before (not through steps another tab made there since)."""
        if step_id is None or step_id not in self.steps:
            return self
        line: list[str] = []
        for ahead in via:
            step = self.steps.get(ahead)
            if step is None or step.parent_id != (line[-1] if line else step_id):
                break
            line.append(ahead)
        if not line:
            return self.make_current(step_id)
        session = replace(self, current_step_id=line[-1], redo_stack=())
        for _ in line:
            session = session.undo()
        return session

    def make_current(self, step_id: str) -> Session:
        """Make any step current; the next edit branches from it.

        Moving up the current path is a series of undos (redo can come back down), moving down the
        redo stack is a series of redos, and anywhere else starts afresh with an empty redo stack.
        """
        self._get(step_id)
        session = self
        if any(step.step_id == step_id for step in self.path()):
            while session.current_step_id != step_id:
                session = session.undo()
            return session
        if step_id in self.redo_stack:
            while session.current_step_id != step_id:
                session = session.redo()
            return session
        return replace(self, current_step_id=step_id, redo_stack=())

    def undo(self) -> Session:
        """Move to the current step's parent; `redo()` comes back to this step."""
        parent_id = self.current.parent_id
        if parent_id is None:
            raise HistoryError("There is nothing to undo: this is the original.")
        return replace(
            self,
            current_step_id=parent_id,
            redo_stack=(*self.redo_stack, self.current_step_id),
        )

    def redo(self) -> Session:
        """Move back down to the child that the last undo left."""
        if not self.redo_stack:
            raise HistoryError("There is nothing to redo.")
        *rest, child_id = self.redo_stack
        return replace(self, current_step_id=child_id, redo_stack=tuple(rest))

    def cancel(self, step_id: str) -> Session:
        """Remove one step that has not started (queued, never sent). The steps queued after
        it stay, now after the step before it (they run on its image); if the cancelled step
        was current, its parent becomes current."""
        step = self._get(step_id)
        if step.state is not StepState.QUEUED or step.task_id or step.parent_id is None:
            raise HistoryError("That edit has already started; it can no longer be cancelled.")
        parent = self.steps[step.parent_id]
        children = self.children(step_id)
        if children and self._output_of(parent).kind == "none":
            raise HistoryError(
                "The instructions queued after this one need its image; cancel them first."
            )
        steps = {
            i: (s.reparent(parent.step_id) if s.parent_id == step_id else s)
            for i, s in self.steps.items()
            if i != step_id
        }
        current = parent.step_id if self.current_step_id == step_id else self.current_step_id
        redo = tuple(i for i in self.redo_stack if i != step_id)
        return replace(self, steps=steps, current_step_id=current, redo_stack=redo)

    def rename(self, name: str) -> Session:
        return replace(self, name=_clean_name(name))

    def _get(self, step_id: str) -> Step:
        try:
            return self.steps[step_id]
        except KeyError:
            raise HistoryError(f"There is no step {step_id} in this session.") from None

    def _ancestry(self, step_id: str) -> tuple[Step, ...]:
        chain = [self._get(step_id)]
        while (parent_id := chain[-1].parent_id) is not None:
            chain.append(self.steps[parent_id])
        return tuple(reversed(chain))

    def _output_of(self, parent: Step) -> StepSource:
        if parent.result is not None:
            return StepSource(kind="step", image_sha256=parent.result.sha256)
        if parent.kind == "origin":
            return NO_SOURCE
        if not parent.is_finished:
            # Typed ahead: it waits for the parent's image (`Step.is_waiting`).
            return StepSource(kind="step")
        raise HistoryError("That step has no image to edit; pick another step.")

    def _with_new_step(self, step: Step) -> Session:
        if step.step_id in self.steps:
            raise HistoryError(f"Step {step.step_id} already exists.")
        steps = {**self.steps, step.step_id: step}
        return replace(self, steps=steps, current_step_id=step.step_id, redo_stack=())


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionSummary:
    """One line of the session list. `step_count` leaves out the origin; of those steps,
    `made_count` are done and `pending_count` queued or running (the page's list counts what
    is made: it said "4 steps" with one done and three queued, UX audit 4)."""

    session_id: str
    name: str
    created_at: datetime
    updated_at: datetime
    step_count: int
    made_count: int
    pending_count: int
    cost_cents: int
    # The current step's image, else the newest image in the session; None if there is none.
    cover_sha256: str | None
    # Its rows cannot be read back (edited by hand, or written by something else): it is listed,
    # so the rest of the list works, but opening it says it is damaged.
    damaged: bool = False


def is_untitled(name: str) -> bool:
    """Whether a session's name is the placeholder a session gets when started without one."""
    return name == UNTITLED or _MINUTE_NAME.fullmatch(name) is not None


def made_name(text: str) -> str | None:
    """A session name made from other text (an instruction, a link's or a file's name): the
    start of it, on one line, at most `MADE_NAME_CHARS` long; None when it has no words."""
    text = " ".join(text.split())
    if len(text) > MADE_NAME_CHARS:
        text = text[: MADE_NAME_CHARS - 1].rstrip() + "…"
    return text or None


def name_from_prompt(prompt: str) -> str:
    """A session name from its first instruction: the start of it, on one line."""
    return made_name(prompt) or UNTITLED


def link_name(url: str) -> str | None:
    """A session name from a link: its file name ("cat.jpg"), else its host; None if neither."""
    try:
        parts = split_url(url)
    except ValueError:
        return None
    if not parts.hostname:
        return None
    name = unquote(parts.path.rstrip("/").rsplit("/", 1)[-1]).strip()
    return made_name(name or parts.hostname or "")


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware (UTC)")
    return moment.astimezone(UTC)


def _clean_name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise HistoryError("A session name cannot be empty.")
    if len(name) > MAX_NAME_CHARS:
        raise HistoryError(f"A session name can have at most {MAX_NAME_CHARS} characters.")
    return name
