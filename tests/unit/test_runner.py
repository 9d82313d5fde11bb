"""The step runner's pool of clients: a visitor's key gets its own client, closed once idle."""

from __future__ import annotations

import pytest

from studio.config import Secret
from studio.history import HistoryError
from studio.runapi import RunAPIClient
from studio.runner import ClientPool

pytestmark = pytest.mark.anyio


class RecordingClient(RunAPIClient):
    """A real client (never used for a request here) that remembers being closed."""

    closed = False

    async def aclose(self) -> None:
        self.closed = True
        await super().aclose()


def _client(key: str) -> RecordingClient:
    return RecordingClient(api_key=key, base_url="http://127.0.0.1:9")


async def test_a_visitor_client_is_kept_while_used_and_closed_once_idle():
    now = [0.0]
    made: list[RecordingClient] = []

    def make(key: str) -> RunAPIClient:
        made.append(_client(key))
        return made[-1]

    pool = ClientPool(_client("server"), make, idle_s=600, clock=lambda: now[0])
    async with pool.using(Secret("sk-visitor")) as client:
        now[0] = 10_000.0  # a long edit: in use, so never closed under it
        await pool.close_idle()
        assert pool.visitor_clients == 1
        assert client is made[0]
    assert not made[0].closed  # just released: idle, but not for long yet
    assert pool.get(Secret("sk-visitor")) is made[0]  # the same key reuses it
    now[0] += 601
    await pool.close_idle()
    assert made[0].closed
    assert pool.visitor_clients == 0
    await pool.aclose()


async def test_the_server_key_never_makes_a_visitor_client():
    server = _client("server")
    pool = ClientPool(server, _client)
    async with pool.using(None) as client:
        assert client is server
    assert pool.visitor_clients == 0
    await pool.aclose()
    assert server.closed


def test_a_studio_without_visitor_keys_says_so():
    pool = ClientPool(_client("server"), None)
    with pytest.raises(HistoryError, match="does not take visitors' own keys"):
        pool.get(Secret("sk-visitor"))
