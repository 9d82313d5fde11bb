"""What the command says: progress on stderr, results on stdout (lines or one JSON object).

Imports `history`, `params` and `summary`; writes through `sys.stdout` and `sys.stderr` only,
so nothing else in the package prints.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from studio.cli.parser import PROG
from studio.history import Step, StepState, StepUpdate
from studio.params import format_cents
from studio.summary import step_summary

# File names carry the start of the instruction; long enough to recognise, short enough to list.
SLUG_CHARS = 40
# The short session id in file names: 8 hex digits of a uuid4, as `git` shortens hashes.
SHORT_ID_CHARS = 8


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """One finished (or given up) step as the command reports it, with the file it wrote."""

    step: Step
    state: str  # the step's state, or "failed" when the wait gave up while the task runs on
    path: Path | None = None
    # The model's own output, written beside `path` when the step was kept to a region.
    raw_path: Path | None = None

    @property
    def error(self) -> str | None:
        return self.step.error if self.state != StepState.COMPLETED else None

    def to_json(self) -> dict[str, Any]:
        """The step summary every interface shares, with the written file as its image."""
        image_url = self.path.as_uri() if self.path else None
        raw_url = self.raw_path.as_uri() if self.raw_path else None
        summary = step_summary(self.step, image_url=image_url, raw_image_url=raw_url)
        return {
            **summary,
            "state": self.state,
            "error": self.error,
            "path": str(self.path) if self.path else None,
            "raw_path": str(self.raw_path) if self.raw_path else None,
        }


class Output:
    """Progress lines on stderr (rewritten in place on a terminal), results on stdout."""

    def __init__(
        self,
        *,
        json_mode: bool = False,
        quiet: bool = False,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self._out = stdout or sys.stdout
        self._err = stderr or sys.stderr
        self._tty = self._err.isatty()
        self._phases: dict[str, str] = {}
        self._line_open = False

    def progress(self, label: str, update: StepUpdate) -> None:
        """One line per change of phase; on a terminal, the elapsed time ticks in place."""
        if self.quiet:
            return
        step_id = update.step.step_id
        shown = f"{update.phase} ({update.note})" if update.note else update.phase
        changed = self._phases.get(step_id) != shown
        self._phases[step_id] = shown
        line = f"{label}: {shown} {update.elapsed_s:.1f} s"
        if update.phase == "completed" and update.step.cost_cents is not None:
            line += f", {format_cents(update.step.cost_cents)}"
        if self._tty:
            if changed and self._line_open:
                self._err.write("\n")
            self._err.write(f"\r\x1b[K{line}")
            self._line_open = not update.is_final
            if update.is_final:
                self._err.write("\n")
        elif changed:
            self._err.write(f"{line}\n")
        self._err.flush()

    def note(self, message: str) -> None:
        """One line on stderr (not a result), such as the simulator notice."""
        self._end_line()
        self._err.write(f"{message}\n")
        self._err.flush()

    def error(self, message: str) -> None:
        self.note(f"{PROG}: error: {message}")

    def result(self, lines: list[str], document: dict[str, Any]) -> None:
        """The command's answer: `lines` for people, or `document` as JSON for scripts."""
        self._end_line()
        if self.json_mode:
            self._out.write(json.dumps(document, ensure_ascii=False) + "\n")
        else:
            self._out.writelines(f"{line}\n" for line in lines)
        self._out.flush()

    def _end_line(self) -> None:
        if self._line_open:
            self._err.write("\n")
            self._line_open = False


def edits_document(
    session_id: str | None,
    outcomes: list[StepOutcome],
    *,
    error: str | None = None,
    simulator: bool = False,
) -> dict[str, Any]:
    """The JSON answer of edit, chain, compare, generate and replay (one shape for all five).

    `simulator` says the images came from the built-in simulator (no key was set), not Flux.
    """
    models = {o.step.params.model for o in outcomes if o.step.params}
    failed = [o for o in outcomes if o.state != StepState.COMPLETED]
    error = error or next((o.error for o in failed if o.error), None)
    state = "failed" if failed or error else "completed"
    return {
        "state": state,
        "session_id": session_id,
        "paths": [str(o.path) for o in outcomes if o.path],
        "step_ids": [o.step.step_id for o in outcomes],
        "task_ids": [o.step.task_id for o in outcomes],
        "model": models.pop() if len(models) == 1 else None,
        "seconds": _seconds(sum(o.step.elapsed_s or 0.0 for o in outcomes)),
        "cost_cents": sum(o.step.cost_cents or 0 for o in outcomes),
        "error": error,
        "simulator": simulator,
        "steps": [o.to_json() for o in outcomes],
    }


def slug(text: str, *, fallback: str = "edit") -> str:
    """`"Make it NIGHT, please!"` -> `"make-it-night-please"` (ASCII, for file names)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return words[:SLUG_CHARS].rstrip("-") or fallback


def short_id(session_id: str) -> str:
    return session_id[:SHORT_ID_CHARS]


def result_name(session_id: str, number: int, prompt: str, image_format: str, tag: str = "") -> str:
    """`<session-short>-<n>-<slug>[-tag].png`, the default name of a written result."""
    suffix = ".jpg" if image_format == "jpeg" else f".{image_format}"
    return f"{short_id(session_id)}-{number}-{slug(prompt)}{f'-{tag}' if tag else ''}{suffix}"


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
