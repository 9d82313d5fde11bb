"""An upload's body kept to its pace (`ui.guard`): the rule alone, fed by a real asyncio
receive; the studio over loopback is in tests/browser/test_file_guard.py."""

from __future__ import annotations

import asyncio

import pytest

from studio.ui import guard


@pytest.mark.parametrize(
    ("file_bytes", "read_s"),
    [
        pytest.param(50 * 2**20, 600.0, id="the-studios-50-mb-capped-at-ten-minutes"),
        pytest.param(10 * 2**20, 4.0 + 1.25 * 10 * 2**20 / (100 * 1024), id="10-mb"),
        pytest.param(None, 600.0, id="no-cap-on-files"),
    ],
)
def test_an_upload_may_take_what_the_largest_file_needs_at_the_pace_and_ten_minutes_at_most(
    file_bytes, read_s
):
    assert guard.upload_read_s(file_bytes) == pytest.approx(read_s)
    # The largest file the studio takes, sent at the pace, arrives within it.
    if file_bytes is not None and file_bytes <= 50 * 2**20:
        assert guard.UPLOAD_GRACE_S + file_bytes / guard.UPLOAD_BYTES_PER_S < read_s


def _receive_of(chunks: list[bytes], then_stall: bool):
    """A receive that hands `chunks` as soon as it is asked (as uvicorn's does for what it has
    buffered, after a turn of the loop), then stalls for good (or ends the body)."""

    async def receive():
        await asyncio.sleep(0)
        if chunks:
            body = chunks.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(chunks) or then_stall}
        if then_stall:
            await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    return receive


def test_a_body_that_stops_coming_is_cut(monkeypatch):
    monkeypatch.setattr(guard, "UPLOAD_GRACE_S", 0.05)

    async def read() -> int:
        pace = guard._Pace(60.0)
        receive = _receive_of([b"x" * 10], then_stall=True)
        await pace.next(receive)
        with pytest.raises(guard._TooSlow):
            await pace.next(receive)
        return pace.received

    assert asyncio.run(read()) == 10


def test_the_studios_own_pauses_between_reads_are_not_the_clients(monkeypatch):
    """Gradio writes what came on a thread of the pool everyone shares: while that thread is
    busy the body waits in the server's buffer, and the client is not behind for it."""
    monkeypatch.setattr(guard, "UPLOAD_GRACE_S", 0.05)
    monkeypatch.setattr(guard, "UPLOAD_BYTES_PER_S", 1000)

    async def read() -> bool:
        pace = guard._Pace(60.0)
        receive = _receive_of([b"x" * 10] * 3, then_stall=False)
        while not pace.whole:
            await pace.next(receive)
            await asyncio.sleep(0.2)  # the studio busy between two reads
        return pace.whole

    assert asyncio.run(read())


def test_a_body_is_cut_at_its_deadline_whatever_its_pace(monkeypatch):
    monkeypatch.setattr(guard, "UPLOAD_GRACE_S", 60.0)

    async def read() -> None:
        pace = guard._Pace(0.05)
        await pace.next(_receive_of([b"x"], then_stall=True))
        with pytest.raises(guard._TooSlow):
            await pace.next(_receive_of([], then_stall=True))

    asyncio.run(read())
