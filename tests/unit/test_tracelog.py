"""The bound on repeated tracebacks (`studio.ui.tracelog`), on a fake clock."""

from __future__ import annotations

import io
import json
import logging
import re
import struct
import traceback
import warnings

import pytest
from PIL import Image

from studio.images import peek
from studio.ui.tracelog import (
    FULL_PER_HOUR,
    FULL_PER_WINDOW,
    LINE_CHARS,
    RECORD_CHARS,
    WINDOW_S,
    RepeatLimit,
    TracebackNet,
    bounded,
    kind_of,
)

KIND = ("TypeError", "gradio_client/utils.py:1409")
OTHER = ("ValueError", "gradio/routes.py:1641")


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def _raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:
        return caught


def test_the_first_of_a_kind_are_printed_and_the_rest_counted_until_the_minute_is_over():
    limit = RepeatLimit()
    verdicts = [limit.admit(KIND, 1000.0 + n * 0.01) for n in range(1234 + FULL_PER_WINDOW)]
    assert verdicts == [True] * FULL_PER_WINDOW + [False] * 1234
    assert limit.due(1000.0 + WINDOW_S - 1) == []  # the minute is not over
    assert limit.due(1000.0 + WINDOW_S) == [
        "... 1,234 more like this in the last minute: TypeError at gradio_client/utils.py:1409"
    ]
    assert limit.due(1000.0 + 2 * WINDOW_S) == []  # said once
    # A new minute prints the first few in full again.
    assert limit.admit(KIND, 1000.0 + 2 * WINDOW_S) is True


def test_each_kind_has_its_own_count():
    limit = RepeatLimit(full=1)
    assert [limit.admit(KIND, 0.0), limit.admit(OTHER, 0.0)] == [True, True]
    assert [limit.admit(KIND, 1.0), limit.admit(KIND, 2.0), limit.admit(OTHER, 3.0)] == [
        False,
        False,
        False,
    ]
    assert sorted(limit.due(WINDOW_S + 3)) == [
        "... 1 more like this in the last minute: ValueError at gradio/routes.py:1641",
        "... 2 more like this in the last minute: TypeError at gradio_client/utils.py:1409",
    ]


def test_a_kind_that_comes_back_after_its_minute_says_its_count_first():
    limit = RepeatLimit(full=1)
    limit.admit(KIND, 0.0)
    limit.admit(KIND, 1.0)
    assert limit.admit(KIND, WINDOW_S + 5) is True  # a new window
    assert limit.due(WINDOW_S + 5) == [
        "... 1 more like this in the last minute: TypeError at gradio_client/utils.py:1409"
    ]


def test_a_minute_with_nothing_held_says_nothing():
    limit = RepeatLimit()
    assert limit.admit(KIND, 0.0)
    assert limit.due(WINDOW_S) == []
    assert limit.tallies == {}  # and is forgotten


def test_kinds_past_the_bound_share_one_count():
    limit = RepeatLimit(full=1, kinds=2)
    assert limit.admit(("A", "a.py:1"), 0.0)
    assert limit.admit(("B", "b.py:1"), 0.0)
    assert limit.admit(("C", "c.py:1"), 0.0)  # the first of the shared count
    assert not limit.admit(("D", "d.py:1"), 0.0)
    assert len(limit.tallies) == 3
    assert limit.flush() == [
        "... 1 more like this in the last minute: other exceptions at many places"
    ]


def test_a_kind_is_the_exception_type_and_the_line_that_raised_it():
    def fail() -> None:
        raise KeyError("x")

    try:
        fail()
    except KeyError as error:
        name, where = kind_of(error)
    line = fail.__code__.co_firstlineno + 1
    assert (name, where) == ("KeyError", f"unit/test_tracelog.py:{line}")
    assert kind_of(_raised(json.JSONDecodeError("x", "", 0)))[0] == "json.decoder.JSONDecodeError"


@pytest.fixture
def net():
    clock = FakeClock()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("gradio")
    logger.addHandler(handler)
    original = traceback.print_exc
    net = TracebackNet(stream, clock=clock)
    net.install()
    assert traceback.print_exc is not original
    try:
        yield net, stream, clock
    finally:
        net.close()
        logger.removeHandler(handler)
    assert traceback.print_exc is original  # put back
    assert handler.filters == []


def test_gradios_print_exc_is_bounded_while_the_net_is_up(net):
    up, stream, clock = net

    def print_one() -> None:
        try:
            raise TypeError("Parameter `data` is not a valid key-word argument.")
        except TypeError:
            traceback.print_exc(file=stream)

    for _ in range(50):
        print_one()
    assert stream.getvalue().count("Traceback (most recent call last)") == FULL_PER_WINDOW
    assert stream.getvalue().count("TypeError: Parameter `data`") == FULL_PER_WINDOW
    clock.now_s += WINDOW_S
    print_one()  # a new minute: the count of the last one is said, and this one printed
    assert stream.getvalue().count("Traceback (most recent call last)") == FULL_PER_WINDOW + 1
    assert "kontext-studio: ... 47 more like this in the last minute: TypeError at " in (
        stream.getvalue()
    )
    up.close()
    for _ in range(5):
        print_one()  # put back: every one printed
    assert stream.getvalue().count("Traceback (most recent call last)") == FULL_PER_WINDOW + 6


def test_log_records_are_bounded_by_kind_with_an_exception_or_without(net):
    """uvicorn logs one warning line, without an exception, for every malformed request: one
    client sending them in a loop grew the log by 100 KB a second (review 19 F1)."""
    up, stream, _ = net
    logger = logging.getLogger("gradio.queueing")
    for n in range(20):
        try:
            raise RuntimeError("Caught handled exception, but response already started.")
        except RuntimeError:
            logger.error("Exception in ASGI application %d", n, exc_info=True)
        logger.warning("Invalid HTTP request received: %d", n)
        logger.warning(f"Failed to validate request: {n} validation errors")
    logger.warning("Unsupported upgrade request.")  # another kind: printed
    text = stream.getvalue()
    assert text.count("Exception in ASGI application") == FULL_PER_WINDOW
    assert text.count("RuntimeError: Caught handled") == FULL_PER_WINDOW
    assert text.count("Invalid HTTP request received") == FULL_PER_WINDOW
    assert text.count("Failed to validate request") == FULL_PER_WINDOW  # whatever it says
    assert "Unsupported upgrade request." in text
    up.close()
    counted = re.findall(
        r"^kontext-studio: \.\.\. 17 more like this in the last minute: "
        r"WARNING of gradio\.queueing at unit/test_tracelog\.py:\d+$",
        stream.getvalue(),
        re.MULTILINE,
    )
    assert len(counted) == 2


def test_held_counts_are_written_when_the_net_closes(net):
    up, stream, _ = net
    for _ in range(FULL_PER_WINDOW + 7):
        up.admit(kind_of(_raised(ValueError("embedded null byte"))))
    up.close()
    assert (
        stream.getvalue()
        .splitlines()[-1]
        .startswith("kontext-studio: ... 7 more like this in the last minute: ValueError at ")
    )


def test_a_traceback_quoting_a_huge_value_is_printed_in_a_bounded_size(net):
    """Gradio puts every value an event sent into some errors: three 60 MB values a minute grew
    the log by 180 MB a minute (review 17 F3). Each printed one is now at most a few dozen KB,
    and still says what went wrong."""
    _, stream, _ = net
    huge = "A" * 5_000_000
    for _ in range(FULL_PER_WINDOW):
        try:
            raise ValueError(f"An event handler didn't receive enough input values.\n    [{huge}]")
        except ValueError:
            traceback.print_exc(file=stream)
        try:
            raise ValueError(f"Received inputs: [{huge}]")
        except ValueError:
            logging.getLogger("gradio.queueing").exception("Error while running %s", huge)
    text = stream.getvalue()
    assert len(text) < 2 * FULL_PER_WINDOW * (RECORD_CHARS + LINE_CHARS)
    assert text.count("ValueError: An event handler didn't receive") == FULL_PER_WINDOW
    assert text.count("Traceback (most recent call last)") == 2 * FULL_PER_WINDOW
    assert "more characters)" in text


def test_a_short_text_is_left_as_it_is_and_a_long_one_says_what_was_left_out():
    assert bounded("KeyError: 'x'") == "KeyError: 'x'"
    text = "\n".join(f"  File line {n}" for n in range(5_000))
    cut = bounded(text, record_chars=1_000)
    assert cut.startswith("  File line 0\n")
    assert cut.endswith("  File line 4999")
    assert "characters left out" in cut
    assert len(cut) < 1_100


def test_an_error_the_studio_did_not_expect_reaches_the_log_without_verbose(capsys):
    """The sentence of an unexpected failure says "it has been logged": it was not, unless the
    studio ran with -v (review 20 F2). Its line is logged; its traceback only with -v; the
    studio's own debug and info records stay out."""
    from studio.cli import _configure_logging

    try:
        _configure_logging(verbose=False)
        runner = logging.getLogger("studio.runner")
        try:
            raise KeyError("the cause")
        except KeyError as error:
            runner.exception("Step %s failed unexpectedly: %r", "s1", error)
        runner.info("Step %s: its image did not come", "s2")
        logged = capsys.readouterr().err
    finally:
        logging.basicConfig(force=True, handlers=[logging.NullHandler()])
        logging.getLogger("studio").setLevel(logging.NOTSET)
        logging.getLogger("studio.config").setLevel(logging.NOTSET)
    assert "Step s1 failed unexpectedly: KeyError('the cause')" in logged
    assert "Traceback" not in logged
    assert "s2" not in logged


def _full_in_a_day(limit: RepeatLimit, kinds: int, per_minute: int) -> int:
    """How many tracebacks `limit` prints in full in a day of `kinds` kinds coming
    `per_minute` times a minute each (windows said as the net says them)."""
    printed = 0
    for minute in range(24 * 60):
        for n in range(per_minute):
            now = minute * 60.0 + n * 60.0 / per_minute
            for k in range(kinds):
                printed += limit.admit((f"Error{k}", f"x.py:{k}"), now)
        limit.due(minute * 60.0 + 59.9)
    return printed


def test_a_kind_that_keeps_coming_is_printed_in_full_a_few_times_an_hour_not_a_minute():
    """A client sending four failing requests a minute of each of six kinds, within every
    kind's three a minute, had 72 tracebacks a minute printed for as long as it went on: the
    log grew by 36 MB a day (review 40 F2). A kind that keeps coming waits twice as long each
    time, up to an hour."""
    printed = _full_in_a_day(RepeatLimit(per_hour=10**9), kinds=6, per_minute=4)
    assert printed <= 6 * FULL_PER_WINDOW * (24 + 7)  # (an hour's window, after 1+2+...+32 min)
    assert printed >= 6 * FULL_PER_WINDOW * 24  # (and each kind still shown every hour)


def test_all_kinds_together_print_a_bounded_number_in_full_an_hour():
    limit = RepeatLimit()
    assert _full_in_a_day(limit, kinds=200, per_minute=1) <= 24 * FULL_PER_HOUR
    held = [line for line in limit.flush() if "more like this" in line]
    assert held  # (the rest counted, and said)


def test_a_kind_that_stops_coming_starts_again_from_a_minute():
    limit = RepeatLimit(full=1)
    for n in range(4):  # windows of 1, 2, 4 and 8 minutes, each with one held
        start = sum(2**k for k in range(n)) * WINDOW_S
        assert limit.admit(KIND, start)
        assert not limit.admit(KIND, start + 1)
    spans = ["minute", "2 minutes", "4 minutes", "8 minutes"]
    assert limit.due(15 * WINDOW_S) == [
        f"... 1 more like this in the last {span}: TypeError at gradio_client/utils.py:1409"
        for span in spans
    ]
    assert limit.admit(KIND, 100 * WINDOW_S)  # (a window of 16 minutes, nothing held in it)
    assert limit.due(116 * WINDOW_S) == []
    assert limit.admit(KIND, 120 * WINDOW_S)  # so the next is a minute again
    assert not limit.admit(KIND, 120 * WINDOW_S + 1)
    assert limit.due(121 * WINDOW_S) == [
        "... 1 more like this in the last minute: TypeError at gradio_client/utils.py:1409"
    ]


def _tiff_of_two_resolutions() -> bytes:
    """An 8 x 8 TIFF whose horizontal resolution has two values: Pillow warns as it opens it
    ("Metadata Warning, tag 282 had too many entries: 2, expected 1")."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, "TIFF", dpi=(300, 300))
    data = bytearray(buffer.getvalue())
    at = struct.unpack("<I", data[4:8])[0]
    for n in range(struct.unpack("<H", data[at : at + 2])[0]):
        entry = at + 2 + 12 * n
        if struct.unpack("<H", data[entry : entry + 2])[0] == 282:
            data[entry + 4 : entry + 8] = struct.pack("<I", 2)
    return bytes(data)


def test_warnings_go_through_the_bound_and_pillows_about_a_file_not_at_all(capfd):
    """Python printed each new text of a warning to stderr, outside every bound: Pillow's carry
    the file's own numbers, and one client varying them grew the log by 190 KB a minute
    (review 44 F2)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger().addHandler(handler)
    net = TracebackNet(stream, clock=FakeClock())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # (Python's own; the tests make warnings errors)
            net.install()
            for n in range(20):
                warnings.warn(f"A library's warning, number {n}", UserWarning, stacklevel=1)
                assert peek(_tiff_of_two_resolutions()).width == 8
            net.close()
    finally:
        net.close()
        logging.getLogger().removeHandler(handler)
    assert stream.getvalue().count("UserWarning: A library's warning, number") == FULL_PER_WINDOW
    assert "17 more like this in the last minute: WARNING of py.warnings" in stream.getvalue()
    assert "Metadata Warning" not in stream.getvalue()
    assert "Warning" not in capfd.readouterr().err
