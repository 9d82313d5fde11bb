"""The simulator fixture: one server per test session on a free loopback port, reset per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

SIM_API_KEY = "sk-sim-test-0123456789"


@pytest.fixture(scope="session")
def _simulator_server() -> Iterator[object]:
    from studio.simulator import Simulator

    sim = Simulator(api_key=SIM_API_KEY, latency="fast")
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def sim(_simulator_server):  # type: ignore[no-untyped-def]
    """The running simulator, with faults, records, tasks and balance reset for this test."""
    _simulator_server.reset()
    yield _simulator_server
    _simulator_server.reset()
