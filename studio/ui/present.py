"""Words on screen: pure functions from engine values to short sentences. No Gradio here.

What a user or the service wrote (instructions, names, error messages) goes into the page's
Markdown and toasts only through `as_text`, so it always shows as the characters it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from studio.history import Session, Step, StepState, StepUpdate
from studio.params import (
    ASPECT_RATIOS,
    MATCH_SOURCE,
    PRICE_CENTS,
    file_words,
    format_cents,
    nearest_aspect_ratio,
)

GENERIC_ERROR = "Something went wrong in the studio; it has been logged. Please try again."

TIPS = """**How Kontext likes instructions**
- Say what to change *and* what to keep: "Make the sky stormy, keep the boat unchanged."
- Put text to be written in quotes: `Change the shop sign to read "BAKERY"`.
- Name the subject instead of "it" or "them": "the black cat on the left".
- One change per step works best; chain steps for more.
- Press **Enter** to run."""

# What can make Markdown or HTML out of text: tags and entities (`& < >`), links and images
# (`[ ]`), emphasis and code, and escapes. Each becomes a numeric character reference, which
# Markdown shows as the character itself (CommonMark: references are literal text), as HTML does.
# Ordinary punctuation (`. : ( ) ! #`) is left alone, so plain sentences are unchanged.
_MARKUP_CHARACTERS = frozenset("&<>[]\\`*_~@")


def as_text(text: str) -> str:
    """`text` (from a user, an import or the service) made safe to place in Markdown or HTML.

    Whitespace runs become one space, so no line can start a heading, list or code block, and
    bare web addresses (`https://…`, `www.…`), which GitHub-flavoured Markdown links by itself,
    are broken up the same way.
    """
    text = "".join(
        f"&#{ord(char)};" if char in _MARKUP_CHARACTERS else char for char in " ".join(text.split())
    )
    text = text.replace("://", "&#58;//")
    pieces, start, lower = [], 0, text.lower()
    while (found := lower.find("www.", start)) != -1:
        pieces += [text[start : found + 3], "&#46;"]
        start = found + 4
    return "".join([*pieces, text[start:]])


class Listed(Protocol):
    """A session as the list shows it (the engine's summaries fit)."""

    @property
    def session_id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def damaged(self) -> bool: ...

    @property
    def created_at(self) -> Any: ...  # a datetime: only compared, so no import here


class Covered(Listed, Protocol):
    """A session as the list shows it with its picture: steps, last change, cover image."""

    @property
    def made_count(self) -> int: ...

    @property
    def pending_count(self) -> int: ...

    @property
    def updated_at(self) -> Any: ...  # a datetime

    @property
    def cover_sha256(self) -> str | None: ...


_PHASE_WORDS = {
    "queued": "Queued",
    "uploading": "Uploading the source",
    "submitted": "Sent to RunAPI",
    "pending": "Waiting in RunAPI's queue",
    "processing": "Processing",
    "downloading": "Saving the result",
    "completed": "Done",
    "failed": "Failed",
}


# An edit refused on a hosted studio whose visitors edit with their own keys only.
OWN_KEY_NEEDED = (
    "This hosted studio edits with your own RunAPI key: paste it under RunAPI key, below the "
    "instruction bar (it is used for this tab only), then send the instruction again."
)


def banner(
    *,
    simulator: bool,
    server_key: bool,
    user_key: bool,
    key_refused: bool = False,
    remembered: bool = False,
    hosted: bool = False,
) -> str:
    """Which service the edits go to (and whose key pays), said plainly; on a hosted studio,
    that a visitor's sessions are theirs alone."""
    said = _banner(simulator, server_key, user_key, key_refused, remembered, hosted)
    return f"{said} Only this browser sees your sessions." if hosted else said


def _banner(
    simulator: bool,
    server_key: bool,
    user_key: bool,
    key_refused: bool,
    remembered: bool,
    hosted: bool,
) -> str:
    if user_key and key_refused:
        return (
            "**RunAPI refused the key you pasted.** Edits in this tab wait until you correct "
            "it under *RunAPI key*, or clear it."
        )
    if user_key and remembered:
        return (
            "Using **your own RunAPI key**, remembered in this browser (never stored on the "
            "server). Clear it under *RunAPI key* to forget it."
        )
    if user_key:
        return (
            "Using **your own RunAPI key** for this tab (a reload of the tab keeps it; it is "
            "never written to disk)."
        )
    if simulator:
        # (Not "free" alone: beside it the header counts each edit at RunAPI's price, and the
        # two read as a contradiction: UX audit 5. A visitor of a hosted one cannot start it.)
        start = "" if hosted else " or start with `RUNAPI_API_KEY`"
        return (
            "**Simulator, not Flux:** simple image changes at RunAPI's prices, never charged. "
            f"For Flux, paste a RunAPI key under *RunAPI key*{start}."
        )
    if server_key and hosted:
        # (It said the server's key was "billed" for every edit: jargon to a visitor, and no
        # word of a budget until one refused them: UX audit 5.)
        return (
            "**Edits here are on this studio**, within a share of its RunAPI budget for each "
            "visitor a day. For more, paste your own RunAPI key under *RunAPI key*."
        )
    if server_key:
        return "Using the server's RunAPI key: every edit is billed to it."
    if hosted:  # (the server's key, if any, is not for visitors: no budget of the day is set)
        return "**Edits here use your own RunAPI key:** paste it under *RunAPI key* to start."
    return "No RunAPI key: paste yours under *RunAPI key* to edit."


def model_choices() -> list[tuple[str, str]]:
    return [(f"{m} · {format_cents(PRICE_CENTS[m])}", m) for m in ("pro", "max")]


def match_ratio(width: int, height: int) -> str:
    """The ratio *Match source* sends for a picture of `width` x `height`: RunAPI's nearest,
    marked "≈" when the picture's own differs from it by more than 2 % (a 3:2 photo goes as
    4:3; "Match source (4:3)" read as a wrong guess of its shape)."""
    ratio = nearest_aspect_ratio(width, height)
    across, down = (int(n) for n in ratio.split(":"))
    exact = abs(width / height - across / down) <= 0.02 * across / down
    return ratio if exact else f"≈ {ratio}"


def aspect_choices(match_ratio: str | None) -> list[tuple[str, str]]:
    label = f"Match source ({match_ratio})" if match_ratio else "Match source"
    return [(label, MATCH_SOURCE), *[(r, r) for r in ASPECT_RATIOS]]


def caption(step: Step, number: int, *, failed_before: int = 0, ahead: bool = False) -> str:
    """A history thumbnail's caption: number (unique: the order steps were made in), model,
    seconds, cents, the failed attempts before it, whether it lies ahead (Redo), instruction."""
    if step.kind == "origin":
        return "Original" if step.result else "Start (generate)"
    assert step.params is not None
    parts = [f"#{number}", step.params.model]
    if step.state is StepState.COMPLETED:
        if step.elapsed_s is not None:
            parts.append(f"{step.elapsed_s:.1f} s")
        if step.cost_cents is not None:
            parts.append(format_cents(step.cost_cents))
    elif step.state is StepState.FAILED:
        parts.append("failed")
    else:
        parts.append(str(step.state))
    if failed_before:
        parts.append(f"after {failed_before} failed attempt{'s' if failed_before > 1 else ''}")
    if ahead:
        parts.append("↷ Redo")
    return " · ".join(parts) + f" — {' '.join(step.params.prompt.split())}"


def step_status(
    step: Step,
    update: StepUpdate | None = None,
    *,
    waiting: tuple[int, int] = (0, 0),
    running: Mapping[str, StepUpdate] | None = None,
) -> str:
    """The status line under the result for the current step; `waiting` counts the edits not
    yet finished that build on it (typed ahead, or its candidates): how many run and how many
    wait their turn, said after a finished step's line. `running`: what runs now, by step;
    a step queued behind another says what that one is doing (it said "◷ Queued… 42.8 s"
    through a RunAPI outage, where the step it waited for said RunAPI was not answering:
    UX audit 5)."""
    ahead = _ahead(update, running or {}) if update is not None else None
    if ahead is not None:
        return f"◷ Queued behind the edit before it: {_running(ahead)[2:]}"
    line = _step_line(step, update)
    under_way, queued = waiting
    if (under_way or queued) and step.is_finished and (update is None or update.is_final):
        words = [f"{under_way} running"] if under_way else []
        words += [f"{queued} more queued"] if queued else []
        line += " · " + ", ".join(words)
    return line


def _ahead(update: StepUpdate, running: Mapping[str, StepUpdate]) -> StepUpdate | None:
    """For a step still queued, the step up its branch it waits for that is under way (the
    nearest one not queued itself); None otherwise."""
    if update.phase != "queued":
        return None
    seen: set[str] = set()
    parent = update.step.parent_id
    while parent is not None and parent in running and parent not in seen:
        seen.add(parent)
        before = running[parent]
        if before.is_final:
            return None
        if before.phase != "queued":
            return before
        parent = before.step.parent_id
    return None


def _running(update: StepUpdate) -> str:
    """A running step's phase, its seconds so far, and what holds it up, if anything:
    "◷ Sent to RunAPI… 12.0 s · RunAPI is not answering…"."""
    note = f" · {update.note}" if update.note else ""
    # (Taken by the runner, its tile says running: `tree.started_steps`. This line said
    # "Queued… 0.0 s" beside it.)
    words = (
        "Starting" if update.phase == "queued" and update.is_taken else _PHASE_WORDS[update.phase]
    )
    return f"◷ {words}… {update.elapsed_s:.1f} s{note}"


def _step_line(step: Step, update: StepUpdate | None) -> str:
    if update is not None and not update.is_final:
        return _running(update)
    match step.state:
        case StepState.COMPLETED if step.kind == "origin":
            return (
                "Ready: type an instruction and press Enter."
                if step.result
                else ("No source image: the instruction will generate one.")
            )
        case StepState.COMPLETED:
            assert step.params is not None
            seconds = f" in {step.elapsed_s:.1f} s" if step.elapsed_s is not None else ""
            cost = format_cents(step.cost_cents or 0)
            return f"✓ Done{seconds} · {step.params.model} · {cost}"
        case StepState.FAILED:
            return (
                f"✗ Failed: {as_text(step.error) if step.error else 'the service gave no reason.'}"
            )
        case _ if step.error:  # (why it waits: for its visitor's key after a restart, ...)
            return f"◷ {as_text(step.error)}"
        case _:
            return f"◷ {str(step.state).capitalize()}…"


def compare_text(step: Step, update: StepUpdate | None) -> str:
    """One side of a compare: its state while running, then time and cost, or the reason."""
    assert step.params is not None
    name = f"**{step.params.model}**"
    if update is not None and not update.is_final:
        return f"{name} {_running(update)}"
    if step.state is StepState.COMPLETED:
        seconds = f"{step.elapsed_s:.1f} s" if step.elapsed_s is not None else "done"
        return f"{name} ✓ {seconds} to result · {format_cents(step.cost_cents or 0)}"
    if step.state is StepState.FAILED:
        reason = as_text(step.error) if step.error else "the service gave no reason."
        return f"{name} ✗ Failed: {reason}"
    return f"{name} ◷ {str(step.state).capitalize()}…"


def candidate_text(step: Step, update: StepUpdate | None) -> str:
    """One candidate, in plain text: its state while running, then time and cost, or why not."""
    assert step.params is not None
    name = step.params.model
    if update is not None and not update.is_final:
        return f"{name} {_running(update)}"
    if step.state is StepState.COMPLETED:
        seconds = f"{step.elapsed_s:.1f} s" if step.elapsed_s is not None else "done"
        return f"{name} ✓ {seconds} · {format_cents(step.cost_cents or 0)}"
    if step.state is StepState.FAILED:
        return f"{name} ✗ {step.error or 'the service gave no reason.'}"
    return f"{name} ◷ {step.state!s}…"


def step_choice(step: Step, number: int | str) -> tuple[str, str]:
    """A step as a dropdown choice, and its id: its number and instruction first (what tells
    steps apart, even where a phone cuts the label short), then its model."""
    if step.kind == "origin" or step.params is None:
        return caption(step, 0), step.step_id  # ("Original": the origin has no number)
    return f"{number} · {_short(step.params.prompt)} · {step.params.model}", step.step_id


def session_choices(summaries: Iterable[Listed]) -> list[tuple[str, str]]:
    """The session list's (label, id) pairs, in the given order. Sessions sharing a name are
    told apart by a number in the order they were made: "Cat", "Cat (2)"."""
    summaries = list(summaries)
    by_name: dict[str, list[Listed]] = {}
    for summary in sorted(summaries, key=lambda s: s.created_at):
        by_name.setdefault(summary.name, []).append(summary)
    labels = {}
    for name, same in by_name.items():
        for n, summary in enumerate(same, 1):
            labels[summary.session_id] = name if n == 1 else f"{name} ({n})"
    return [_session_label(s, labels[s.session_id]) for s in summaries]


def when(moment: Any, now: Any) -> str:
    """A session's last change, briefly: "today", "yesterday", "2 Dec", "2 Dec 2025" (both
    datetimes, in the same zone)."""
    days = (now.date() - moment.date()).days
    if days == 0:
        return "today"
    if days == 1:
        return "yesterday"
    if moment.year == now.year:
        return f"{moment.day} {moment:%b}"
    return f"{moment.day} {moment:%b %Y}"


def steps_count(count: int) -> str:
    return f"{count} step{'' if count == 1 else 's'}"


def made_count(made: int, pending: int = 0) -> str:
    """What a session has made, and apart what is still to come (edits running or queued):
    "1 step · 3 to come" (its list said "4 steps" with one done and three queued: UX audit 4)."""
    parts = [steps_count(made)] if made else []
    parts += [f"{pending} to come"] if pending else []
    # (A session holding only its picture said "0 steps", which read as empty: UX audit 3.)
    return " · ".join(parts) or "no edits yet"


def name_slug(session_name: str) -> str:
    """A session's name as a file's (`params.file_words`), at most 60 characters."""
    return file_words(session_name, 60)


def export_name(session_name: str) -> str:
    """What a session's export is saved as: its name (`name_slug`), else "session"."""
    return f"{name_slug(session_name) or 'session'}.zip"


def download_name(
    session_name: str, number: int, image_format: str, *, own_output: bool = False
) -> str:
    """What a downloaded image is called: the session's name and the step's number (and, for
    the model's own output of a step kept to a region, that it is)."""
    slug = name_slug(session_name).lower() or "kontext"
    step = "original" if number == 0 else f"step-{number}"
    if own_output:
        step += "-model-output"
    suffix = "jpg" if image_format == "jpeg" else image_format
    return f"{slug}-{step}.{suffix}"


def _session_label(summary: Listed, name: str) -> tuple[str, str]:
    if summary.damaged:
        return f"⚠ {name} (damaged: cannot be opened)", summary.session_id
    return name, summary.session_id


def warning(sentence: str) -> str:
    """The status line for a refused action; the sentence may quote the user or the service."""
    return f"⚠ {as_text(sentence)}"


# The controls the engine's sentences name in Markdown's emphasis, for API and MCP callers.
_MARKED = ("*RunAPI key*",)


def on_page(sentence: str) -> str:
    """An engine's sentence as the page says it: the controls it names unmarked (escaped for
    the page, their marks showed as asterisks around "RunAPI key": UX audit 5)."""
    for marked in _MARKED:
        sentence = sentence.replace(marked, marked.strip("*"))
    return sentence


def imported(name: str) -> str:
    return f"Imported “{as_text(name)}”."


def renamed(name: str) -> str:
    return f"Renamed the session “{as_text(name)}”."


def deleted(name: str) -> str:
    return f"Deleted “{as_text(name)}” and the images only it used."


def delete_question(name: str, edits: int) -> str:
    """Asked before a session is deleted; its name is shown as text, never as markup."""
    return (
        f"Delete “{as_text(name)}” with its {edits} step{'' if edits == 1 else 's'} and their "
        "images? This cannot be undone; export it first to keep a copy."
    )


def cost_line(session: Session | None) -> str:
    total = format_cents(session.total_cost_cents) if session else format_cents(0)
    return f"Session cost **{total}**"


def balance_line(balance_cents: int | None) -> str:
    """The balance beside the session's cost; nothing when it is not shown or not known."""
    return "" if balance_cents is None else f"· balance {format_cents(balance_cents)}"


def share_line(share: tuple[int, int] | None) -> str:
    """For a hosted visitor on the server's key, beside the session's cost: what is left of
    their share of the day (`Engine.share_left`); nothing for anyone else."""
    if share is None:
        return ""
    left, whole = share
    return f"· today's share: {format_cents(left)} of {format_cents(whole)} left"


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
