"""`Simulator` (uvicorn in a background thread, for tests and the studio) and `serve` (for the CLI).

Imports uvicorn and its siblings only.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Literal

import uvicorn

from studio.simulator.faults import Faults
from studio.simulator.gateway import DroppedConnectionError
from studio.simulator.routes import create_app
from studio.simulator.tasks import LATENCY, LatencyProfile, RecordedRequest, SimState, SimTask

Latency = Literal["fast", "demo", "quick"] | LatencyProfile
# Seconds to wait for the server to answer after start, and for open connections on stop.
START_TIMEOUT_S = 10.0
STOP_GRACE_S = 2


class _HideDroppedConnections(logging.Filter):
    """A dropped connection is a fault we injected on purpose, not an error worth a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedConnectionError))


logging.getLogger("uvicorn.error").addFilter(_HideDroppedConnections())


class Simulator:
    """A stand-in RunAPI on loopback: `start()` it, point a client at `base_url`, `stop()` it."""

    def __init__(
        self,
        *,
        api_key: str,
        latency: Latency = "fast",
        balance_cents: int = 100_000,
        state_dir: Path | None = None,
    ) -> None:
        profile = LATENCY[latency] if isinstance(latency, str) else latency
        self.state = SimState(
            api_key=api_key, latency=profile, balance_cents=balance_cents, state_dir=state_dir
        )
        self.base_url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        # uvicorn closes the socket on shutdown; this reference only keeps it for `stop()`.
        self._socket: socket.socket | None = None

    @property
    def api_key(self) -> str:
        return self.state.api_key

    def accept_key(self, key: str) -> None:
        """Accept `key` as well, as another RunAPI account's (one balance for all, here)."""
        with self.state.lock:
            self.state.other_keys.add(key)

    @property
    def faults(self) -> Faults:
        return self.state.faults

    @property
    def requests(self) -> list[RecordedRequest]:
        with self.state.lock:
            return list(self.state.requests)

    @property
    def creates_by_key(self) -> dict[str, int]:
        """Create requests received per Idempotency-Key, replays included."""
        with self.state.lock:
            return dict(self.state.creates_by_key)

    def tasks_by_key(self) -> dict[str, int]:
        """Tasks created per Idempotency-Key (a replay creates none): above 1 is a double charge."""
        return dict(self.state.tasks_by_key())

    @property
    def tasks(self) -> dict[str, SimTask]:
        self.state.settle()
        with self.state.lock:
            return dict(self.state.tasks)

    @property
    def balance_cents(self) -> int:
        self.state.settle()
        with self.state.lock:
            return self.state.balance_cents

    @balance_cents.setter
    def balance_cents(self, value: int) -> None:
        self.state.settle()
        with self.state.lock:
            self.state.balance_cents = value

    @property
    def latency(self) -> LatencyProfile:
        """The profile new tasks follow; tests may swap it (`reset()` restores the original)."""
        return self.state.latency

    @latency.setter
    def latency(self, value: Latency) -> None:
        self.state.latency = LATENCY[value] if isinstance(value, str) else value

    @property
    def render_ahead(self) -> bool:
        """Render each result while its task runs (as the real service has it ready at the
        end), rather than on its first download; off by default, benchmarks turn it on."""
        return self.state.render_ahead

    @render_ahead.setter
    def render_ahead(self, value: bool) -> None:
        self.state.render_ahead = value

    @property
    def result_pixels(self) -> int:
        """About how many pixels each result has: one megapixel, as Flux; fewer saves CPU."""
        return self.state.result_pixels

    @result_pixels.setter
    def result_pixels(self, value: int) -> None:
        self.state.result_pixels = value

    @property
    def file_ttl_s(self) -> float:
        """Seconds an upload lives (one hour, as the contract says); tests may shorten it."""
        return self.state.file_ttl_s

    @file_ttl_s.setter
    def file_ttl_s(self, value: float) -> None:
        self.state.file_ttl_s = value

    def reset(self) -> None:
        """Clear faults, recorded requests, tasks and files; restore the starting balance."""
        self.state.reset()

    def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve in a background thread; returns once the server accepts connections.

        Args:
            host: The address to bind; loopback unless you mean to share it.
            port: The port; 0 picks a free one. `base_url` says which.
        """
        if self._thread is not None:
            raise RuntimeError("the simulator is already running")
        self._socket = sock = _bind(host, port)
        self.base_url = f"http://{f'[{host}]' if ':' in host else host}:{sock.getsockname()[1]}"
        self._server = _server(self.state, host, sock.getsockname()[1])
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name="runapi-simulator",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the simulator did not start on {self.base_url}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Shut down and join the thread; the port is free afterwards."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(START_TIMEOUT_S + STOP_GRACE_S)
        if self._socket is not None:
            self._socket.close()
        self._server, self._thread, self._socket = None, None, None


def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    api_key: str,
    latency: Latency = "demo",
    state_dir: Path | None = None,
) -> None:
    """Run the simulator in the foreground until Ctrl+C, then return. Prints nothing.

    Args:
        host: The address to bind; loopback unless you mean to share it.
        port: The port to listen on.
        api_key: The key clients must send.
        latency: "demo" (seconds, to watch), "fast" (tests) or a `LatencyProfile`.
        state_dir: Where tasks, files and the balance persist across restarts; None keeps them
            in memory.
    """
    profile = LATENCY[latency] if isinstance(latency, str) else latency
    state = SimState(api_key=api_key, latency=profile, balance_cents=100_000, state_dir=state_dir)
    # uvicorn shuts down cleanly on Ctrl+C, then raises the signal again; stop here instead.
    with contextlib.suppress(KeyboardInterrupt):
        _server(state, host, port).run()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # As uvicorn does: a restarted simulator can take its old port while TIME_WAITs linger.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _server(state: SimState, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(state),
        host=host,
        port=port,
        log_level="warning",
        # Leave the process's logging alone: the simulator runs inside tests and the studio.
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=STOP_GRACE_S,
    )
    return uvicorn.Server(config)
