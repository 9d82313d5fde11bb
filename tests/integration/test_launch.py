"""Starting the studio for others: a share link offline, logins, a proxy path, hosted mode on by
itself for a non-loopback host and on a Space, and the headers on every response.

Every connection stays on loopback: the studio may bind 0.0.0.0, but the tests connect through
127.0.0.1, and the share request goes to a "proxy" on 127.0.0.1 that records it and hangs up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from studio.cli.launch import HOSTED_NOTICE
from studio.config import Secret, Settings
from studio.links import HOSTED_LINK_FAILURE, LinkError

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "pw-canary-51d0a"
# Seconds; hang guards, never performance assertions.
START_TIMEOUT_S = 60
FRAME_POLICY = "frame-ancestors 'self' https://huggingface.co"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _RefusingProxy:
    """A TCP listener on loopback that records each request line it gets, then hangs up."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(5)
                with contextlib.suppress(OSError):
                    self.lines.append(connection.recv(4096).split(b"\r\n")[0].decode())

    def close(self) -> None:
        self._socket.close()


@pytest.fixture
def proxy() -> Iterator[_RefusingProxy]:
    running = _RefusingProxy()
    yield running
    running.close()


def _offline_env(tmp_path: Path, proxy: _RefusingProxy) -> dict[str, str]:
    """No internet, as here: all outside traffic goes to the refusing proxy on loopback."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return {
        **env,
        "HOME": str(tmp_path),
        "HF_HOME": str(tmp_path / "hf"),  # no tunnel client downloaded here
        "HTTPS_PROXY": proxy.url,
        "HTTP_PROXY": proxy.url,
        "ALL_PROXY": proxy.url,
        "NO_PROXY": "127.0.0.1,localhost",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "KONTEXT_STUDIO_SIM_LATENCY": "fast",
    }


class _Process:
    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.out: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.out.append(line.rstrip("\n"))

    def wait_for_line(self, start: str) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            found = [line for line in self.out if line.startswith(start)]
            if found:
                return found[0]
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"no line starting {start!r}; stdout {self.out}, stderr {self.err}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        assert self.proc.stderr is not None
        self.err = self.proc.stderr.read()

    err = ""


def _assert_security_headers(response: httpx.Response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == FRAME_POLICY
    assert "x-frame-options" not in response.headers  # DENY would break the Space's iframe


def test_share_offline_says_so_in_one_line_and_serves_locally_behind_a_login(tmp_path, proxy):
    port = _free_port()
    args = [sys.executable, "-m", "studio.cli", "--share", "--port", str(port), "-v"]
    args += ["--home", str(tmp_path / "home"), "--auth", f"alice:{PASSWORD}"]
    studio = _Process(args, _offline_env(tmp_path, proxy), tmp_path)
    try:
        studio.wait_for_line("No share link")
        local = f"http://127.0.0.1:{port}"
        with httpx.Client(trust_env=False, timeout=10) as http:
            page = http.get(f"{local}/")
            assert page.status_code == 200  # the sign-in page
            _assert_security_headers(page)
            assert http.get(f"{local}/config").status_code == 401
            wrong = http.post(f"{local}/login", data={"username": "alice", "password": "nope"})
            assert wrong.status_code == 400
            right = http.post(f"{local}/login", data={"username": "alice", "password": PASSWORD})
            assert right.status_code == 200
            _assert_security_headers(right)
            assert http.get(f"{local}/config").status_code == 200  # with the login's cookie
    finally:
        studio.stop()
    shares = [line for line in studio.out if "share" in line.lower()]
    assert shares == [
        "No share link: Gradio's share server could not be reached (no internet?); "
        f"serving locally at http://127.0.0.1:{port}/ only."
    ]
    everything = "\n".join(studio.out) + studio.err
    assert "frpc" not in everything
    assert "Missing file" not in everything
    assert PASSWORD not in everything
    assert HOSTED_NOTICE in studio.err  # --share turned hosted mode on
    # The one attempt went to the (loopback) proxy: Gradio's tunnel request, nothing else.
    assert proxy.lines
    assert all(line.startswith("CONNECT api.gradio.app:443") for line in proxy.lines)


def test_a_host_that_is_not_loopback_turns_hosted_mode_on(sim, clean_env):
    from studio.ui.serve import start_studio

    port = _free_port()
    settings = Settings.from_env({}, host="0.0.0.0", port=port, home=clean_env, root_path="/s/")
    assert settings.hosted
    settings = replace(
        settings, api_key=Secret(sim.api_key), simulator_url=sim.base_url, poll_scale=0.05
    )
    demo, bridge, _ = start_studio(settings)  # binds every interface
    try:
        local = f"http://127.0.0.1:{port}"
        with httpx.Client(trust_env=False, timeout=10) as http:
            page = http.get(f"{local}/")
            assert page.status_code == 200
            _assert_security_headers(page)
            _assert_security_headers(http.get(f"{local}/gradio_api/info"))
            # Gradio's CORS middleware answers a preflight itself, outside the studio's own
            # (review 22 F3: without the headers).
            asking = {"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}
            _assert_security_headers(http.options(f"{local}/gradio_api/info", headers=asking))
            assert http.get(f"{local}/config").json()["root"].endswith("/s")
        # Hosted mode is on in the engine: a private link is refused, with the one sentence.
        with pytest.raises(LinkError) as refused:
            bridge.run(bridge.engine.read_link(f"{local}/"), timeout_s=30)
        assert str(refused.value) == HOSTED_LINK_FAILURE
    finally:
        demo.close()
        bridge.close()


def test_the_space_entry_point_serves_in_hosted_mode_on_every_interface(tmp_path, proxy):
    port = _free_port()
    env = {**_offline_env(tmp_path, proxy), "SPACE_ID": "someone/kontext-studio"}
    env["KONTEXT_STUDIO_HOME"] = str(tmp_path / "home")
    studio = _Process([sys.executable, "app.py", "--port", str(port)], env, ROOT)
    try:
        studio.wait_for_line("Kontext Studio is running at")
        with httpx.Client(trust_env=False, timeout=10) as http:
            _assert_security_headers(http.get(f"http://127.0.0.1:{port}/"))
    finally:
        studio.stop()
    assert HOSTED_NOTICE in studio.err
    listening = [line for line in studio.out if line.startswith("Kontext Studio is running")]
    assert listening == [f"Kontext Studio is running at http://localhost:{port}/"]  # 0.0.0.0
    assert proxy.lines == []


def test_a_share_server_that_never_answers_costs_a_bounded_wait(monkeypatch):
    """Behind a firewall that drops packets, Gradio's own attempt blocks for 30 s or more."""
    from types import SimpleNamespace

    from studio.ui.serve import open_share_link

    held: list[socket.socket] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def hold() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(listener.accept()[0])  # accepted, never answered

    threading.Thread(target=hold, daemon=True).start()
    black_hole = f"http://127.0.0.1:{listener.getsockname()[1]}"
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, black_hole)
    monkeypatch.setenv("NO_PROXY", "")
    demo = SimpleNamespace(  # what open_share_link reads of a launched gradio.Blocks
        server_name="127.0.0.1",
        server_port=_free_port(),
        share_token="t",
        share_server_address=None,
        share_server_tls_certificate=None,
        share_server_protocol="https",
    )
    try:
        assert open_share_link(demo, wait_s=1.0) is None
        assert held  # the attempt was made, and is left to time out in its daemon thread
        assert not hasattr(demo, "share_url")
    finally:
        listener.close()
        for connection in held:
            connection.close()
