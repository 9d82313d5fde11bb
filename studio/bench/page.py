"""The page in a real browser: load to a usable page beside a bare Gradio Blocks page, and Enter
to the first visible sign that the edit started.

Both apps run as their own processes; headless Chromium (Playwright) opens each in turn, in a
new browser context every time (no cache shared), as a returning visitor would find the studio:
with a session in it (made by an Enter before the first round). "Usable" on the studio is the
instruction box visible and enabled and the canvas showing the session (its image loaded, or the
upload box when it has none), drawn by the page's first answer (`ui.predraw`) or by its load
event; the instruction bar alone
(`bar_s`) is reported too. On the bare page it is its text box visible and enabled. "Feedback"
is the first change of the page outside the instruction box after Enter, seen by a
MutationObserver installed before the key is pressed. Imports Playwright lazily.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.bench.coldstart import BareGradio
from studio.bench.load import CHROMIUM, PAGE_TIMEOUT_MS
from studio.bench.rig import StudioProcess, summary

STUDIO_READY = "#prompt textarea:not([disabled])"
BARE_READY = "textarea:not([disabled])"
# The canvas shows the tab's session: the history is drawn (by the page's first answer,
# `ui.predraw`, or by its load event) and the step's image is loaded, or the upload box shows
# when there is none.
CANVAS_READY = """
() => {
  if (!document.querySelector('#history nav.tree')) return false;
  const img = document.querySelector('#result img');
  if (img && img.offsetParent) return img.complete && img.naturalWidth > 0;
  const source = document.querySelector('#source');
  return Boolean(source && source.offsetParent);
}
"""
# Records, on the page, when Enter went down (on the window, before any listener of the page's
# own) and when anything visible outside a textarea changed next (Gradio's status trackers
# change as an event is sent, hidden: not feedback).
_WATCH = """
() => {
  window.__benchKey = null; window.__benchChange = null;
  window.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && window.__benchKey === null) window.__benchKey = performance.now();
  }, true);
  const seen = (el) => el.isConnected && el.checkVisibility({checkOpacity: true,
                                                            checkVisibilityCSS: true});
  new MutationObserver((records) => {
    if (window.__benchKey === null || window.__benchChange !== null) return;
    for (const r of records) {
      const el = r.target.nodeType === 1 ? r.target : r.target.parentElement;
      if (el && !el.closest('textarea') && seen(el)) {
        window.__benchChange = performance.now();
        return;
      }
    }
  }).observe(document.body, {subtree: true, childList: true, attributes: true,
                             characterData: true});
}
"""


def run_page(rounds: int, say: Callable[[str], None]) -> dict[str, Any]:
    """Page load to usable (studio and bare Gradio, in turn) and Enter to feedback (studio)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"skipped": "Playwright is not installed (pip install -e '.[test]')"}
    if not Path(CHROMIUM).exists():
        return {"skipped": f"no Chromium at {CHROMIUM}"}
    with tempfile.TemporaryDirectory(prefix="kontext-bench-") as tmp:
        studio, bare = StudioProcess(Path(tmp) / "studio"), BareGradio(Path(tmp) / "bare")
        try:
            studio.start()
            bare.start()
            say(f"  page: {rounds} loads of each, {rounds} Enters")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM)
                try:
                    _load(browser, studio.url, STUDIO_READY)  # warm: both servers' first page
                    _load(browser, bare.url, BARE_READY)
                    _enter(browser, studio.url, -1)  # a returning visitor: a session to show
                    loads, bars, bare_loads, feedback = [], [], [], []
                    for n in range(rounds):
                        bar, usable = _load(browser, studio.url, STUDIO_READY)
                        bars.append(bar)
                        loads.append(usable)
                        bare_loads.append(_load(browser, bare.url, BARE_READY)[1])
                        feedback.append(_enter(browser, studio.url, n))
                finally:
                    browser.close()
        finally:
            studio.stop()
            bare.stop()
    return {
        "load_s": summary(loads),
        "bar_s": summary(bars),
        "bare_load_s": summary(bare_loads),
        "load_ratio": statistics.median(a / b for a, b in zip(loads, bare_loads, strict=True)),
        "bar_ratio": statistics.median(a / b for a, b in zip(bars, bare_loads, strict=True)),
        "enter_to_feedback_s": summary([f for f in feedback if f is not None]),
        "no_feedback": sum(f is None for f in feedback),
    }


# When `selector` first matches an element on show, and when the canvas is ready: checked by
# the page at every animation frame, in its own clock (seconds from the navigation's start).
# Playwright's `wait_for_selector` looks again at growing intervals, up to 500 ms apart: a bare
# page on show at 370-570 ms was timed at about 0.45 s or about 1.0 s, at random, and the ratio
# with it (0.90x to 2.26x in one afternoon).
_SHOWN = """
(selector) => {
  const el = document.querySelector(selector);
  const shown = el && el.getClientRects().length > 0
    && el.checkVisibility({visibilityProperty: true});
  return shown ? performance.now() : false;
}
"""
_CANVAS_AT = f"() => ({CANVAS_READY.strip()})() ? performance.now() : false"


def timed_load(page: Any, url: str, ready: str, canvas: bool) -> tuple[float, float]:
    """Open `url` in `page`: seconds from the navigation's start to `ready` on show, and to a
    usable page (with `canvas`, the studio's canvas showing the session; else the same)."""
    page.goto(url, wait_until="commit")
    wait = {"timeout": PAGE_TIMEOUT_MS, "polling": "raf"}
    bar = float(page.wait_for_function(_SHOWN, arg=ready, **wait).json_value()) / 1000
    if not canvas:
        return bar, bar
    return bar, float(page.wait_for_function(_CANVAS_AT, **wait).json_value()) / 1000


def _load(browser: Any, url: str, ready: str) -> tuple[float, float]:
    """Seconds to the text box visible, and to a usable page (the canvas ready, on the studio)."""
    context = browser.new_context()
    try:
        return timed_load(context.new_page(), url, ready, ready == STUDIO_READY)
    finally:
        context.close()


def _enter(browser: Any, url: str, n: int) -> float | None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(url, wait_until="commit")
        box = page.wait_for_selector(STUDIO_READY, state="visible", timeout=PAGE_TIMEOUT_MS)
        page.wait_for_timeout(1000)  # the page's load event and first tick have settled
        box.fill(f"a red square on white, number {n}")
        page.evaluate(_WATCH)
        box.press("Enter")
        page.wait_for_function(
            "() => window.__benchChange !== null", timeout=PAGE_TIMEOUT_MS, polling="raf"
        )
        key, change = page.evaluate("() => [window.__benchKey, window.__benchChange]")
        return (float(change) - float(key)) / 1000
    except Exception:  # a page too slow to answer: counted as no feedback
        return None
    finally:
        context.close()
