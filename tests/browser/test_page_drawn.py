"""A returning visitor's page drawn in its first answer (studio/ui/predraw.py, assets/predraw.js):
the session is on screen before the page's load event answers, and never another session or
step than the one the tab will show."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import LOADED
from tests.browser.test_studio_flow import (
    EXAMPLES,
    _current,
    _edit,
    _session_name,
    _start_from_example,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

JOIN = "**/gradio_api/queue/join**"


def _unanswered(page: Any) -> None:
    """From now on the page's events (its load event first) are held on their way, never
    answered (refused, Gradio would take the studio for gone and reload the page)."""
    page.route(JOIN, lambda route: None)


def _loaded(page: Any) -> None:
    """The page's events go through again, and it is reloaded: the load event draws it."""
    page.unroute(JOIN)
    page.reload()
    expect(page.locator(LOADED)).to_be_attached(timeout=30_000)


def test_a_returning_visitor_sees_the_session_before_the_page_s_load_event_answers(
    browser, studio, page
):
    """The canvas, the history and the session list came 0.1-0.3 s after the rest of the
    page, with the answer to its load event (README, Numbers: page)."""
    _start_from_example(page)
    _edit(page, "make it black and white")
    expect(_current(page)).to_have_attribute("aria-label", re.compile(r"^Step 1: .*\$"))
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        fresh = context.new_page()  # a new browser: nothing in its storage
        _unanswered(fresh)
        fresh.goto(studio.url)
        expect(fresh.locator("#result img")).to_be_visible(timeout=30_000)
        expect(fresh.locator("#history button.tile")).to_have_count(2)
        expect(_current(fresh)).to_have_attribute(
            "aria-label", re.compile("^Step 1: make it black and white")
        )
        expect(_session_name(fresh)).to_have_text(EXAMPLES[1])
        expect(fresh.locator("#prompt textarea")).to_be_enabled()
        # Until the load event answers it takes clicks only in the instruction bar; one that
        # never answers (the studio out of reach) leaves it inert for a few seconds only.
        takes_clicks = "() => getComputedStyle(document.querySelector('#history')).pointerEvents"
        assert fresh.evaluate(takes_clicks) == "none"
        fresh.wait_for_function(f"() => ({takes_clicks})() !== 'none'", timeout=10_000)
        # It takes clicks once the load event has drawn it (a click's answer could come
        # before the load's, and be undone by it): Step 0 is then opened as ever.
        _loaded(fresh)
        fresh.locator("#history button.tile").first.click()
        expect(_current(fresh)).to_have_attribute("aria-label", re.compile("^Step 0: Original"))
    finally:
        context.close()


def _reloaded_unanswered(page: Any) -> int:
    """Reloaded with its load event never answered: how many history tiles it then shows."""
    _unanswered(page)
    page.reload()
    expect(page.locator("#prompt textarea")).to_be_enabled(timeout=30_000)
    page.wait_for_timeout(1_000)
    return int(page.locator("#history button.tile").count())


def test_a_tab_on_another_step_or_session_is_never_first_drawn_another(page):
    """The first answer draws the newest session at its current step, which is what the load
    event opens for a tab with nothing in its storage; a tab reloaded on another step (another
    tab moved on since), or on an older session, mounts as before and is drawn by its load
    event alone: never first on what it did not show."""
    _start_from_example(page)
    _edit(page, "make it black and white")
    page.locator("#history button.tile").first.click()  # this tab: back on the original
    expect(_current(page)).to_have_attribute("aria-label", re.compile("^Step 0: Original"))
    other = page.context.new_page()  # another tab of the browser moves the session on
    other.goto(page.url)
    expect(other.locator(LOADED)).to_be_attached(timeout=30_000)
    other.locator("#history button.tile").nth(1).click()
    expect(_current(other)).to_have_attribute("aria-label", re.compile("^Step 1: make it"))
    other.close()
    assert _reloaded_unanswered(page) == 0
    _loaded(page)
    expect(_current(page)).to_have_attribute("aria-label", re.compile("^Step 0: Original"))
    # Back where the session is: the first answer draws it (what the load event draws too).
    page.locator("#history button.tile").nth(1).click()
    expect(_current(page)).to_have_attribute("aria-label", re.compile("^Step 1: make it"))
    assert _reloaded_unanswered(page) == 2
    _loaded(page)
    # An older session opened in this tab: the newest is not drawn in its place first.
    _start_from_example(page, 2)
    page.locator("#sessions summary").click()
    page.locator("#sessions button[data-act=open]").filter(has_text=EXAMPLES[1]).click()
    expect(_session_name(page)).to_have_text(EXAMPLES[1], timeout=15_000)
    assert _reloaded_unanswered(page) == 0
    _loaded(page)
    expect(_session_name(page)).to_have_text(EXAMPLES[1])


# The page script (`launch(js=...)`, assets/studio.js) held for a moment as the page reads
# Gradio's config: as a slow or busy machine runs it, after the page has mounted.
_SCRIPT_LATE = """
(() => {
  let held;
  Object.defineProperty(window, 'gradio_config', {
    configurable: true,
    get() { return held; },
    set(config) {
      if (config && typeof config.js === 'string') {
        config.js = `async () => { await new Promise((r) => setTimeout(r, 2500));
                                   return (${config.js})(); }`;
      }
      held = config;
    },
  });
})();
"""
_SCRIPT_RAN = "() => Boolean(window.kontextStudio?.started)"


def test_the_bar_takes_words_and_enter_before_the_page_script_runs(page):
    """The instruction bar is usable as soon as it is drawn (it waited for the page script,
    which Gradio runs once the whole page is ready: README, Numbers: page). Enters pressed
    before the page script runs are held, never new lines, and sent by it as it starts: each
    instruction verbatim, in the order typed, chained; what was typed after the last stays."""
    _start_from_example(page)
    page.add_init_script(_SCRIPT_LATE)
    page.reload()
    box = page.locator("#prompt textarea")
    expect(box).to_be_enabled(timeout=30_000)
    box.fill("make it black and white")
    box.press("Enter")
    box.press_sequentially("add a red hat")
    box.press("Enter")
    box.press_sequentially("and more")
    assert not page.evaluate(_SCRIPT_RAN)  # (what follows is what the bar did by itself)
    # Held: no new line, nothing lost.
    expect(box).to_have_value("make it black and whiteadd a red hatand more")
    page.wait_for_function(_SCRIPT_RAN, timeout=30_000)
    expect(box).to_have_value("and more", timeout=15_000)  # the rest sent by the page script
    first = re.compile(r"^Step 1: make it black and white \(.*\$")
    second = re.compile(r"^Step 2: add a red hat \(.*\$")
    expect(page.locator("#history button.tile").nth(1)).to_have_attribute(
        "aria-label", first, timeout=30_000
    )
    expect(_current(page)).to_have_attribute("aria-label", second, timeout=30_000)
    expect(page.locator("#history button.tile")).to_have_count(3)
