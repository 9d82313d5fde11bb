"""A hosted studio's log stays bounded whatever one client sends (review 8 F2).

The studio runs as its own process (`kontext-studio --hosted`, on the built-in simulator, on
loopback), its stderr written to a file as a host would keep it. Requests Gradio cannot handle
are refused at the door without a traceback; a flood of requests that still reach Gradio's own
`traceback.print_exc` prints a few in full and counts the rest.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from studio.ui.tabs import NO_SUCH_EVENT, NO_SUCH_EVENT_KIND, TOO_FEW_ARGUMENTS, V2_ARGUMENTS
from studio.ui.tracelog import FULL_PER_WINDOW

pytestmark = pytest.mark.slow

# Seconds; hang guards, never performance assertions.
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20
TRACEBACK = "Traceback (most recent call last)"
FLOOD = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class HostedStudio:
    url: str
    log: Path
    proc: subprocess.Popen[str]
    cookie: dict[str, str]

    def log_text(self, start: int = 0) -> str:
        return self.log.read_bytes()[start:].decode("utf-8", "replace")

    def log_size(self) -> int:
        return self.log.stat().st_size

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostedStudio]:
    folder = tmp_path_factory.mktemp("log-bound")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNAPI_", "KONTEXT_STUDIO_"))}
    env |= {
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "KONTEXT_STUDIO_SIM_LATENCY": "fast",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    log = folder / "stderr.log"
    args = [sys.executable, "-m", "studio.cli", "--hosted", "--mcp", "--port", str(port)]
    args += ["--home", str(folder / "home")]
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            args, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=folder
        )
    url = f"http://127.0.0.1:{port}"
    running = HostedStudio(url=url, log=log, proc=proc, cookie={})
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        line = ""
        while time.monotonic() < deadline and not line.startswith("Kontext Studio is running"):
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                pytest.fail(f"the studio did not start: {running.log_text()}")
        token = httpx.get(url + "/", timeout=30).cookies.get("kontext_visitor")
        assert token
        running.cookie = {"Cookie": f"kontext_visitor={token}"}
        yield running
    finally:
        running.stop()


def _calls(studio: HostedStudio) -> dict[str, Callable[[httpx.Client], httpx.Response]]:
    """The requests the review found each logging a traceback, by what they are."""
    cookie = studio.cookie
    return {
        "a v1 body on the v2 route": lambda http: http.post(
            "/gradio_api/call/v2/show_session", json={"data": ["x"]}, headers=cookie
        ),
        "a NUL in a file route": lambda http: http.get("/gradio_api/file=%00"),
        "a NUL in the older file route": lambda http: http.get("/gradio_api/file/%00"),
        "a NUL after a dot-dot": lambda http: http.get("/gradio_api/file=%2e%2e/%00"),
        "the answers of an unknown event": lambda http: http.get(
            "/gradio_api/call/show_session/0123456789abcdef"
        ),
        "... by any name": lambda http: http.get("/gradio_api/call/no_such_name/0123456789"),
        "... on the v2 route": lambda http: http.get("/gradio_api/call/v2/anything/0123456789"),
        "the stream of an empty tab": lambda http: http.get("/gradio_api/queue/data?session_hash="),
        "an event of an unknown number": lambda http: http.post(
            "/gradio_api/queue/join",
            json={"data": [], "fn_index": 99999, "session_hash": "tab0123456"},
            headers=cookie,
        ),
        "... given as text": lambda http: http.post(
            "/gradio_api/queue/join",
            json={"data": [], "fn_index": "99999", "session_hash": "tab0123456"},
            headers=cookie,
        ),
        # Gradio's error quotes every value sent: 60 MB ones grew the log 180 MB a minute.
        "an API call sending fewer values than it takes": lambda http: http.post(
            "/gradio_api/call/edit_image", json={"data": ["A" * 1_000_000]}, headers=cookie
        ),
        "... on the route that runs at once": lambda http: http.post(
            "/gradio_api/run/edit_image", json={"data": ["A" * 1_000_000]}, headers=cookie
        ),
        "a page event sending fewer values than it takes": lambda http: http.post(
            "/gradio_api/queue/join",
            json={"data": [], "fn_index": _takes_some(http), "session_hash": "tab0123456"},
            headers=cookie,
        ),
    }


def _takes_some(http: httpx.Client) -> int:
    """The number of a page event that takes at least one value."""
    config = http.get("/config").json()
    return next(d["id"] for d in config["dependencies"] if d.get("inputs"))


REFUSED_AS = {
    "a v1 body on the v2 route": (422, V2_ARGUMENTS.format(names="session_id")),
    "a NUL in a file route": (404, ""),
    "a NUL in the older file route": (404, ""),
    "a NUL after a dot-dot": (404, ""),
    "the answers of an unknown event": (404, NO_SUCH_EVENT),
    "... by any name": (404, NO_SUCH_EVENT),
    "... on the v2 route": (404, NO_SUCH_EVENT),
    "the stream of an empty tab": (400, "in a form this studio does not use"),
    "an event of an unknown number": (422, NO_SUCH_EVENT_KIND),
    "... given as text": (422, NO_SUCH_EVENT_KIND),
    "an API call sending fewer values than it takes": (422, TOO_FEW_ARGUMENTS.format(wanted=8)),
    "... on the route that runs at once": (422, TOO_FEW_ARGUMENTS.format(wanted=8)),
    "a page event sending fewer values than it takes": (422, "sends fewer values than"),
}


@pytest.mark.parametrize("kind", list(REFUSED_AS))
def test_a_request_gradio_cannot_handle_is_refused_without_a_traceback(studio, kind):
    status, sentence = REFUSED_AS[kind]
    start = studio.log_size()
    with httpx.Client(base_url=studio.url, timeout=30) as http:
        for _ in range(5):
            answer = _calls(studio)[kind](http)
            assert answer.status_code == status, answer.text
            assert sentence in answer.text
            assert TRACEBACK not in answer.text
    assert studio.log_text(start) == ""


def test_a_real_callers_answers_are_still_read_on_either_route(studio):
    with httpx.Client(base_url=studio.url, timeout=30, headers=studio.cookie) as http:
        called = http.post("/gradio_api/call/list_sessions", json={"data": [5]})
        answer = http.get(f"/gradio_api/call/list_sessions/{called.json()['event_id']}")
        assert answer.status_code == 200
        assert answer.text.startswith("event: complete")
        called = http.post("/gradio_api/call/v2/list_sessions", json={"limit": 5})
        assert called.status_code == 200, called.text
        answer = http.get(f"/gradio_api/call/v2/list_sessions/{called.json()['event_id']}")
        assert answer.text.startswith("event: complete")


def _send_raw(url: str, request: bytes) -> None:
    """One connection that sends `request` as it is and reads the answer's head (or until the
    server closes it)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        read = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in read and (chunk := conn.recv(65536)):
                read += chunk


MALFORMED = {
    "Invalid HTTP request received.": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 4,
    "Unsupported upgrade request.": (
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    ),
}


@pytest.mark.parametrize("warning", list(MALFORMED))
def test_uvicorns_warning_for_each_malformed_request_is_printed_a_few_times(studio, warning):
    """uvicorn logs a line for every malformed request, with no exception: one client sending
    them in a loop grew the log by 100 KB a second (review 19 F1)."""
    start = studio.log_size()
    for _ in range(FLOOD):
        _send_raw(studio.url, MALFORMED[warning])
    flood = studio.log_text(start)
    assert 1 <= flood.count(warning) <= FULL_PER_WINDOW
    assert len(flood.encode()) < 20 * FULL_PER_WINDOW * 200  # not one or two a request (10 KB)


MCP_BODIES = (
    {"jsonrpc": "2.0", "id": 1, "method": "nope"},  # a method the MCP server does not have
    {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"x": 1}},  # wrong params
)


def test_the_mcp_librarys_warning_for_each_malformed_request_is_printed_a_few_times(studio):
    """The MCP library logs a 5.8 KB warning, with the request's own values in it, for every
    request it cannot validate: 1.3 MB a second from one address naming nobody (review 19 F4)."""
    start = studio.log_size()
    headers = {"Accept": "application/json, text/event-stream"}
    with httpx.Client(base_url=studio.url, timeout=30, headers=headers) as http:
        for n in range(FLOOD):
            http.post("/gradio_api/mcp/", json=MCP_BODIES[n % len(MCP_BODIES)])
    flood = studio.log_text(start)
    assert 1 <= flood.count("Failed to validate request") <= FULL_PER_WINDOW
    assert len(flood.encode()) < FULL_PER_WINDOW * 8_000  # not 5.8 KB a request (350 KB)


def test_a_flood_that_reaches_gradios_print_exc_prints_a_few_and_counts_the_rest(studio):
    """Mistyped arguments to the public API pass the door (they are the handler's to check)
    and fail in Gradio's preprocessing, which prints a traceback for each."""
    start = studio.log_size()
    with httpx.Client(base_url=studio.url, timeout=30, headers=studio.cookie) as http:
        for _ in range(FLOOD):
            called = http.post("/gradio_api/call/list_sessions", json={"data": ["abc"]})
            answer = http.get(f"/gradio_api/call/list_sessions/{called.json()['event_id']}")
            assert answer.text.startswith("event: error")
    flood = studio.log_text(start)
    failure = "ComponentProcessingError: Could not preprocess input component"
    printed = flood.count(failure)
    # The first one in full (a host sees the real error), the rest counted.
    assert 1 <= printed <= FULL_PER_WINDOW
    assert TRACEBACK in flood.split(failure)[0]
    assert "TypeError: '<' not supported between instances of 'str' and 'int'" in flood
    assert len(flood.encode()) < FULL_PER_WINDOW * 4096  # not one per request (150 KB)
    # Once stopped, the studio says how many it held (each minute's count, in one line).
    studio.stop()
    counted = re.findall(
        r"^kontext-studio: \.\.\. ([\d,]+) more like this in the last minute: "
        r"gradio\.exceptions\.ComponentProcessingError at ",
        studio.log_text(start),
        re.MULTILINE,
    )
    assert counted
    assert printed + sum(int(n.replace(",", "")) for n in counted) == FLOOD
