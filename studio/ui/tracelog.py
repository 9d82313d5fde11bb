"""The studio server's log, bounded: a few full tracebacks (and log records) a minute of each
kind, the rest counted and said in one line.

Gradio prints a traceback for many a request it cannot handle (`traceback.print_exc()` in its
queue and routes), and uvicorn logs one for every exception that reaches it. Each is a few
kilobytes; one client sending such requests in a loop grew a hosted studio's log by half a
megabyte a second (review 8 F2). The door refuses the requests known to do it (`ui.tabs`,
`ui.guard`, `ui.tabstate`); this is the net for whatever else does. A kind is an exception's
type and the line that raised it: its first `FULL_PER_WINDOW` in a minute are printed in full
(a host needs to see real errors), the rest counted, and said in one line when the minute is
over ("... 1,234 more like this in the last minute"). A kind that keeps coming has each next
window twice as long, up to an hour, and all kinds together print `FULL_PER_HOUR` in full an
hour at most: a client sending a few failing requests of six kinds a minute, within every
kind's minute, grew the log by 36 MB a day (review 40 F2). A record without an exception is of
a kind of its own: its level, its logger and the line that logged it. Warnings are records too
(Pillow's, about a visitor's file, are not shown).

Installed by `ui.serve.serve_studio` in the studio's server process only, and not with
`--verbose`, which prints every traceback in full. Imports only the standard library.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath
from typing import TextIO

# Full tracebacks of one kind printed in a window; the rest are counted.
FULL_PER_WINDOW = 3
WINDOW_S = 60.0
# The longest window of a kind that keeps coming (each twice the one before while it does).
LONGEST_WINDOW_S = 3600.0
# Full tracebacks of all kinds together in an hour (the rest counted under their kinds).
FULL_PER_HOUR = 60
HOUR_S = 3600.0
# Kinds counted apart at once; past this, new kinds share one count (the limiter's own memory
# stays bounded, whatever a client manages to make the server raise).
KINDS_KEPT = 1000
# What one printed traceback or record may take: each line at most `LINE_CHARS`, the whole at
# most `RECORD_CHARS` (its head and its end, where the error is said). Gradio puts every value
# an event sent into some errors' messages: three 60 MB ones a minute grew the log by 180 MB a
# minute (review 17 F3).
LINE_CHARS = 2_000
RECORD_CHARS = 32_000
# How often the counts of finished windows are written (so a line may come this much late).
SUMMARY_EVERY_S = 10.0
# The loggers whose handlers the net filters: uvicorn's (its own handlers, which print full
# tracebacks whatever the studio's settings), Gradio's and the root's (where Gradio's and
# every other library's records end up).
LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "gradio")

# An exception's type, and where it was raised ("gradio_client/utils.py:1409").
Kind = tuple[str, str]
_OTHER: Kind = ("other exceptions", "many places")


def kind_of(error: BaseException) -> Kind:
    """`error`'s kind: its type, and the file (its last two parts) and line that raised it."""
    where = "?"
    tb = error.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        where = _where(code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    cls = type(error)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"
    return name, where


def kind_of_record(record: logging.LogRecord) -> Kind:
    """A record's kind when it carries no exception: its level and logger, and the line that
    logged it, whatever its message says (the MCP library logs a message made with the request's
    own values in it, review 19 F4)."""
    return f"{record.levelname} of {record.name}", _where(record.pathname, record.lineno)


def _where(filename: str, line: int) -> str:
    """A place in the code, short: "gradio_client/utils.py:1409"."""
    return f"{'/'.join(PurePath(filename).parts[-2:])}:{line}"


def bounded(text: str, *, line_chars: int = LINE_CHARS, record_chars: int = RECORD_CHARS) -> str:
    """`text` with each line cut at `line_chars` and the whole at `record_chars` (its head and
    its end kept), saying how much was left out."""
    if len(text) <= line_chars and "\n" not in text:
        return text
    lines = []
    for line in text.split("\n"):
        if len(line) > line_chars:
            line = f"{line[:line_chars]}... ({len(line) - line_chars:,} more characters)"
        lines.append(line)
    text = "\n".join(lines)
    if len(text) > record_chars:
        head, end = text[: record_chars * 3 // 4], text[-record_chars // 4 :]
        left_out = len(text) - len(head) - len(end)
        text = f"{head}\n... ({left_out:,} characters left out)\n{end}"
    return text


@dataclass
class _Tally:
    since_s: float
    span_s: float
    shown: int = 0
    held: int = 0


class RepeatLimit:
    """How many tracebacks of each kind to print: pure, the clock passed in.

    A kind's window starts at its first traceback and lasts `window_s`; within it, the first
    `full` are printed and the rest held (counted). Once it is over, the count is said in one
    line (`due`), and the kind's next traceback starts a new window: twice as long if some were
    held in this one (up to `longest_s`), else `window_s` again. Of all kinds together, at most
    `per_hour` are printed in an hour.
    """

    def __init__(
        self,
        *,
        full: int = FULL_PER_WINDOW,
        window_s: float = WINDOW_S,
        kinds: int = KINDS_KEPT,
        longest_s: float = LONGEST_WINDOW_S,
        per_hour: int = FULL_PER_HOUR,
    ) -> None:
        self.full = full
        self.window_s = window_s
        self.kinds = kinds
        self.longest_s = longest_s
        self.per_hour = per_hour
        self.tallies: dict[Kind, _Tally] = {}
        # The next window of each kind that kept coming (at most `kinds` of them).
        self.spans: dict[Kind, float] = {}
        # The hour under way, for all kinds (`per_hour`): when it began, and printed in it.
        self.hour_since_s: float | None = None
        self.hour_shown = 0
        self.said: list[str] = []  # lines of windows over, not yet taken by `due`

    def admit(self, kind: Kind, now_s: float) -> bool:
        """Whether to print this traceback of `kind` in full (else it is counted)."""
        tally = self.tallies.get(kind)
        if tally is not None and now_s - tally.since_s >= tally.span_s:
            self._end(kind, tally)
            tally = None
        if tally is None:
            if len(self.tallies) >= self.kinds and kind != _OTHER:
                return self.admit(_OTHER, now_s)
            span = self.spans.get(kind, self.window_s)
            tally = self.tallies[kind] = _Tally(since_s=now_s, span_s=span)
        if self.hour_since_s is None or now_s - self.hour_since_s >= HOUR_S:
            self.hour_since_s, self.hour_shown = now_s, 0
        if tally.shown < self.full and self.hour_shown < self.per_hour:
            tally.shown += 1
            self.hour_shown += 1
            return True
        tally.held += 1
        return False

    def due(self, now_s: float) -> list[str]:
        """The lines of every window over by `now_s` (each said once)."""
        for kind, tally in list(self.tallies.items()):
            if now_s - tally.since_s >= tally.span_s:
                self._end(kind, tally)
        said, self.said = self.said, []
        return said

    def flush(self) -> list[str]:
        """The lines of every window, over or not (when the server stops)."""
        for kind, tally in list(self.tallies.items()):
            self._end(kind, tally)
        said, self.said = self.said, []
        return said

    def _end(self, kind: Kind, tally: _Tally) -> None:
        del self.tallies[kind]
        self.spans.pop(kind, None)
        if tally.held:
            name, where = kind
            minutes = round(tally.span_s / 60)
            span = "minute" if minutes <= 1 else f"{minutes} minutes"
            self.said.append(
                f"... {tally.held:,} more like this in the last {span}: {name} at {where}"
            )
            if len(self.spans) < self.kinds:
                self.spans[kind] = min(tally.span_s * 2, self.longest_s)


class _RepeatFilter(logging.Filter):
    """Lets a record through only if the net admits its kind (its exception's, else its own:
    uvicorn logs one warning line for every malformed request, with no exception, and one client
    sending them in a loop grew the log by 100 KB a second, review 19 F1); a record that goes
    through several handlers is judged once."""

    def __init__(self, admit: Callable[[Kind], bool]) -> None:
        super().__init__()
        self.admit = admit

    def filter(self, record: logging.LogRecord) -> bool:
        verdict = record.__dict__.get("_studio_admitted")
        if verdict is None:
            error = record.exc_info[1] if record.exc_info else None
            verdict = self.admit(kind_of_record(record) if error is None else kind_of(error))
            record._studio_admitted = verdict
            if verdict:
                _bound_record(record)
        return bool(verdict)


def _bound_record(record: logging.LogRecord) -> None:
    """`record`'s message and traceback, bounded (`bounded`), made once for every handler."""
    with contextlib.suppress(Exception):  # (a message that cannot be made is the handler's)
        message = record.getMessage()
        if len(message) > LINE_CHARS or "\n" in message:
            record.msg, record.args = bounded(message), None
    if record.exc_info and not record.exc_text:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_text = bounded(text)


class TracebackNet:
    """The bound, installed in this process: on `traceback.print_exc` and on the handlers of
    `LOGGERS`; the held counts written to `stream` every `SUMMARY_EVERY_S`, and at `close`."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        limit: RepeatLimit | None = None,
        clock: Callable[[], float] = time.monotonic,
        prefix: str = "kontext-studio: ",
    ) -> None:
        self.stream = stream
        self.limit = limit or RepeatLimit()
        self.clock = clock
        self.prefix = prefix
        self.lock = threading.Lock()
        self.filter = _RepeatFilter(self.admit)
        self.filtered: list[logging.Handler] = []
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        self.print_exc: Callable[..., None] | None = None
        self.quiet: tuple[object, ...] | None = None

    def admit(self, kind: Kind) -> bool:
        """Whether to print a traceback or record of `kind` in full; the lines of windows over
        are written first."""
        with self.lock:
            verdict = self.limit.admit(kind, self.clock())
            said = self.limit.due(self.clock()) if self.limit.said else []
        self._write(said)
        return verdict

    def install(self) -> None:
        """Bound `traceback.print_exc` and the handlers of `LOGGERS` (those there now: call it
        once the server has configured its logging); start writing the counts."""
        if self.print_exc is not None:
            return
        self.print_exc = original = traceback.print_exc

        def print_exc(
            limit: int | None = None, file: TextIO | None = None, chain: bool = True
        ) -> None:
            error = sys.exc_info()[1]
            if error is None:
                original(limit=limit, file=file, chain=chain)
            elif self.admit(kind_of(error)):
                text = "".join(traceback.format_exception(error, limit=limit, chain=chain))
                stream = sys.stderr if file is None else file
                stream.write(bounded(text.rstrip("\n")) + "\n")

        # Gradio calls `traceback.print_exc()` itself, through the module (queueing, routes,
        # route_utils, utils): no logger or setting of its own reaches those, so the module's
        # function is replaced, in the server process only, for as long as the net is up.
        traceback.print_exc = print_exc  # type: ignore[assignment]  # (the stream, typed narrower)
        # Warnings become records of the log, and so bounded: Python prints each new text of a
        # warning once, to stderr, outside every bound. Pillow's are about a visitor's file and
        # carry its own numbers ("tag 282 had too many entries: N"), each a new text (and kept
        # by Python for good): one client varying them grew the log by 190 KB a minute
        # (review 44 F2); nothing in them is for a host, so they are not shown at all.
        warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
        self.quiet = warnings.filters[0]
        logging.captureWarnings(True)
        for name in LOGGERS:
            for handler in logging.getLogger(name).handlers:
                if handler not in self.filtered:
                    handler.addFilter(self.filter)
                    self.filtered.append(handler)
        self.thread = threading.Thread(target=self._summarise, name="traceback-net", daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Put everything back, and write what is still held."""
        if self.print_exc is None:
            return
        traceback.print_exc = self.print_exc
        self.print_exc = None
        logging.captureWarnings(False)
        filters: list[object] = warnings.filters  # type: ignore[assignment]  # (a list)
        with contextlib.suppress(ValueError):
            filters.remove(self.quiet)
        for handler in self.filtered:
            handler.removeFilter(self.filter)
        self.filtered.clear()
        self.stopped.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        with self.lock:
            said = self.limit.flush()
        self._write(said)

    def _summarise(self) -> None:
        while not self.stopped.wait(SUMMARY_EVERY_S):
            with self.lock:
                said = self.limit.due(self.clock())
            self._write(said)

    def _write(self, lines: list[str]) -> None:
        if not lines:
            return
        stream = self.stream or sys.stderr
        stream.write("".join(f"{self.prefix}{line}\n" for line in lines))
        stream.flush()


__all__ = [
    "FULL_PER_HOUR",
    "FULL_PER_WINDOW",
    "KINDS_KEPT",
    "LINE_CHARS",
    "LOGGERS",
    "LONGEST_WINDOW_S",
    "RECORD_CHARS",
    "SUMMARY_EVERY_S",
    "WINDOW_S",
    "Kind",
    "RepeatLimit",
    "TracebackNet",
    "bounded",
    "kind_of",
    "kind_of_record",
]
