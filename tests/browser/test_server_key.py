"""With a server key the page says whose key pays, and shows the account's balance."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import running_studio
from tests.browser.test_studio_flow import _edit, _start_from_example

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def studio(sim, clean_env):  # replaces the simulator-mode studio for this module
    with running_studio(sim, clean_env, as_service=True) as running:
        yield running


def test_a_server_key_is_named_in_the_banner_and_the_balance_follows_the_edits(page, sim):
    expect(page.locator("#banner")).to_contain_text("server's RunAPI key")
    expect(page.locator("#banner")).not_to_contain_text("Simulator")
    start = sim.balance_cents
    expect(page.locator("#cost")).to_contain_text(f"balance ${start / 100:.2f}")
    _start_from_example(page)
    _edit(page, "make it black and white")
    expect(page.locator("#cost")).to_contain_text(f"balance ${(start - 5) / 100:.2f}")
    assert sim.api_key not in page.content()


def test_a_visitors_own_key_is_used_for_their_tab_only(browser, sim, clean_env):
    with running_studio(sim, clean_env, visitor_keys=True) as studio:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        tab = context.new_page()
        tab.goto(studio.url)
        expect(tab.locator("#status")).not_to_be_empty(timeout=20_000)
        expect(tab.locator("#banner")).to_contain_text("Simulator")
        _start_from_example(tab)
        tab.get_by_role("button", name="RunAPI key").click()
        tab.locator("#user-key input").fill("sk-a-visitors-own-wrong-key")
        tab.locator("#user-key input").press("Tab")
        expect(tab.locator("#banner")).to_contain_text("your own RunAPI key")
        tab.locator("#prompt textarea").fill("make it blue")
        tab.locator("#prompt textarea").press("Enter")
        # The simulator refused the visitor's key: the server's key was not used in its place.
        expect(tab.locator("#status")).to_contain_text("did not accept the API key", timeout=30_000)
        assert "sk-a-visitors-own-wrong-key" not in tab.locator("#status").inner_text()
        creates = [r for r in sim.requests if r.method == "POST"]
        assert creates
        assert all(r.headers.get("authorization") != f"Bearer {sim.api_key}" for r in creates)
        context.close()
