"""The studio on the simulator, driven in Debian's headless Chromium."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from studio.config import Secret, Settings
from studio.engine import Engine
from studio.history import ImageRef
from studio.ui.bridge import Bridge

CHROMIUM = Path("/usr/bin/chromium")
# Set to a folder to keep screenshots of the main states (the README's come from such a run).
SCREENSHOTS = os.environ.get("STUDIO_SCREENSHOTS")
# The history as the page's load event drew it: the first render from the store has arrived (a
# page's first answer may have drawn it before, marked: studio/ui/predraw.py).
LOADED = "#history nav.tree:not([data-predrawn])"
# Chromium's own background connections are refused on this closed network (env notes).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Studio:
    url: str
    bridge: Bridge
    settings: Settings
    demo: Any = None

    @property
    def engine(self) -> Engine:
        return self.bridge.engine

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.bridge.run(coro, timeout_s=30)

    def image_bytes(self, ref: ImageRef) -> bytes:
        return self.run(self.engine.image_bytes(ref))


# Module scope: Playwright's sync API runs its own event loop in this thread while it is open,
# which would break any async test that runs after it.
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("CI needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)")
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import expect, sync_playwright

    # Two cores shared with other work: give the page time before calling something absent.
    expect.set_options(timeout=15_000)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextlib.contextmanager
def running_studio(  # type: ignore[no-untyped-def]
    sim,
    home: Path,
    *,
    mcp: bool = False,
    as_service: bool = False,
    visitor_keys: bool = False,
    **overrides,
) -> Iterator[Studio]:
    """The studio on a free port, on the test simulator, polling at the fast simulator's pace.

    `as_service` configures the simulator as the real service would be (a server key and a
    base URL), so the page behaves as it does for a user with a key. `visitor_keys` sends a
    visitor's own key to the simulator too (instead of runapi.ai, which is out of reach here).
    """
    from studio.ui.serve import start_studio

    settings = Settings(
        api_key=Secret(sim.api_key),
        base_url=sim.base_url if as_service or visitor_keys else "https://runapi.ai",
        simulator_url=None if as_service else sim.base_url,
        home=home,
        port=_free_port(),
        poll_scale=0.05,
        **overrides,
    )
    demo, bridge, url = start_studio(settings, mcp=mcp)
    try:
        yield Studio(url=url, bridge=bridge, settings=settings, demo=demo)
    finally:
        demo.close()
        bridge.close()


@pytest.fixture
def studio(sim, clean_env) -> Iterator[Studio]:
    with running_studio(sim, clean_env) as running:
        yield running


@contextlib.contextmanager
def open_page(browser, url: str, **context: Any) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """A page on the studio in its own browser context (its own storage: another visitor, or
    another tab), once the first render from the store has arrived; it must stay on loopback."""
    from playwright.sync_api import expect

    context.setdefault("viewport", {"width": 1400, "height": 1000})
    browser_context = browser.new_context(**context)
    page = browser_context.new_page()
    outside: list[str] = []
    page.on(
        "request",
        lambda r: (
            None
            if r.url.startswith(("http://127.0.0.1", "data:", "blob:"))
            else outside.append(r.url)
        ),
    )
    page.goto(url)
    expect(page.locator("#run")).to_be_visible(timeout=30_000)
    # The first render from the store has arrived (before it, a click could be overwritten).
    expect(page.locator(LOADED)).to_be_attached(timeout=30_000)
    yield page
    browser_context.close()
    assert outside == [], f"the page reached outside loopback: {outside[:3]}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Each phase's report kept on the test, for the `page` fixture's account of a failure."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


# What the page showed when a test failed: a failure seen once in a CI run could not be
# reproduced from Playwright's message alone (the third of three instructions typed ahead never
# became the tab's step, and nothing said whether the page had sent it).
_PAGE_STATE = """() => ({
  status: document.querySelector('#status')?.innerText || null,
  box: document.querySelector('#prompt textarea')?.value ?? null,
  tiles: [...document.querySelectorAll('#history .tile')].map(
    (t) => t.getAttribute('aria-label') || t.textContent.trim()),
  toasts: [...document.querySelectorAll('[data-testid="toast-body"]')].map((t) => t.innerText),
  pending: window.kontextStudio ? [...window.kontextStudio.pending.values()] : null,
  taken: window.kontextStudio ? window.kontextStudio.taken.map((e) => e.text) : null,
})"""


def _tell_failure(page: Any, studio: Studio, console: list[str]) -> None:
    """Print what the page and the store held (pytest shows it under the failure)."""
    try:
        print("page:", page.evaluate(_PAGE_STATE))
    except Exception as error:  # the page may be gone with the failure
        print("page: not readable:", error)
    print("console, last lines:", *console[-25:], sep="\n  ")
    try:
        for summary in studio.run(studio.engine.list_sessions()):
            session = studio.run(studio.engine.load_session(summary.session_id))
            steps = [
                (s.params.prompt if s.params else s.kind, s.state.value)
                for s in session.steps.values()
            ]
            print("store:", summary.name, steps)
    except Exception as error:
        print("store: not readable:", error)


@pytest.fixture
def page(request, browser, studio):  # type: ignore[no-untyped-def]
    with open_page(browser, studio.url) as page:
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"[:300]))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"[:300]))
        yield page
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            _tell_failure(page, studio, console)


def shoot(page, name: str, *, full_page: bool = True) -> None:  # type: ignore[no-untyped-def]
    """Keep a screenshot of a main state, when STUDIO_SCREENSHOTS names a folder."""
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=full_page)


# Every toast's text as it was first drawn, kept in the page (`window.__toasts`): a toast the
# status line in view already says is closed at once (assets/studio.js), but what it showed
# is still checked.
RECORD_TOASTS = """() => {
  window.__toasts = [];
  new MutationObserver(() => {
    for (const toast of document.querySelectorAll('[data-testid="toast-body"]')) {
      const text = toast.textContent || '';
      if (!window.__toasts.includes(text)) window.__toasts.push(text);
    }
  }).observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


def toast_saying(page: Any, words: str) -> str:
    """The text of the first toast the page drew with `words` in it (after `RECORD_TOASTS`)."""
    found = page.wait_for_function(
        "(words) => window.__toasts.find((text) => text.includes(words)) || false",
        arg=words,
        timeout=20_000,
    )
    return str(found.json_value())
