"""Whose key pays: the server's (named, with its balance), or a visitor's own pasted key, which
is checked at once, named when refused, and kept in their browser only if they ask."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import open_page, running_studio
from tests.browser.test_studio_flow import (
    DONE,
    _current,
    _edit,
    _only_session,
    _start_from_example,
    _thumbs,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def studio(sim, clean_env):  # replaces the simulator-mode studio for this module
    with running_studio(sim, clean_env, as_service=True) as running:
        yield running


def test_a_server_key_is_named_in_the_banner_and_the_balance_follows_the_edits(page, sim):
    expect(page.locator("#banner")).to_contain_text("server's RunAPI key")
    expect(page.locator("#banner")).not_to_contain_text("Simulator")
    start = sim.balance_cents
    expect(page.locator("#balance")).to_contain_text(f"balance ${start / 100:.2f}")
    _start_from_example(page)
    _edit(page, "make it black and white")
    expect(page.locator("#balance")).to_contain_text(f"balance ${(start - 5) / 100:.2f}")
    assert sim.api_key not in page.content()


def test_the_page_fills_without_waiting_for_a_slow_balance_which_fills_in_when_it_comes(page, sim):
    _start_from_example(page)
    _edit(page, "make it black and white")
    balance = page.locator("#balance")
    shown = f"balance ${sim.balance_cents / 100:.2f}"
    expect(balance).to_contain_text(shown)
    sim.faults.slow(seconds=6.0, times=1)  # RunAPI takes six seconds to say the balance
    page.reload()
    # The canvas and the history show the session while the balance is still on its way.
    expect(page.locator("#result img")).to_be_visible()
    expect(_current(page)).to_have_attribute("aria-label", re.compile("^Step 1: make it black"))
    expect(_thumbs(page)).to_have_count(2)
    assert "balance" not in balance.inner_text()
    expect(page.locator("#status")).to_contain_text(DONE)
    expect(balance).to_contain_text(shown, timeout=30_000)
    # A balance RunAPI fails to give: the page is whole, with no balance and no error.
    sim.faults.server_error(503, times=20)
    page.reload()
    expect(_current(page)).to_have_attribute("aria-label", re.compile("^Step 1: make it black"))
    expect(page.locator("#result img")).to_be_visible()
    expect(page.locator("#status")).to_contain_text(DONE)
    expect(page.locator("[data-testid=toast-body]")).to_have_count(0)
    assert "balance" not in balance.inner_text()


def _paste_key(tab, key: str) -> None:  # type: ignore[no-untyped-def]
    box = tab.locator("#user-key input")
    if not box.is_visible():
        tab.get_by_role("button", name="RunAPI key").click()
    # The panel's parts are built when it first opens: a person sees it whole before pasting
    # (pasted within the same frame, the note's answer could land before the note was built).
    expect(tab.locator("#key-note")).to_be_attached()
    expect(box).to_be_editable()
    box.fill(key)


def test_a_pasted_wrong_key_is_named_at_once_and_nothing_runs_with_it(browser, sim, clean_env):
    with (
        running_studio(sim, clean_env, visitor_keys=True) as studio,
        open_page(browser, studio.url) as tab,
    ):
        expect(tab.locator("#banner")).to_contain_text("Simulator")
        _start_from_example(tab)
        _paste_key(tab, "sk-a-visitors-own-wrong-key")
        # Checked when pasted (a balance call), and said in terms of the key they pasted.
        note = tab.locator("#key-note")
        expect(note).to_contain_text("RunAPI did not accept the key you pasted")
        expect(note).not_to_contain_text("RUNAPI_API_KEY")
        expect(tab.locator("#banner")).to_contain_text("RunAPI refused the key you pasted")

        box = tab.locator("#prompt textarea")
        box.fill("make it blue")
        box.press("Enter")
        # Refused in one sentence: the instruction stays in the box, no step is left behind,
        # nothing was created on the service, and the simulator was not used in its place.
        expect(tab.locator("#status")).to_contain_text("the key you pasted")
        expect(box).to_have_value("make it blue")
        assert len(_only_session(studio).steps) == 1
        assert not [r for r in sim.requests if r.method == "POST"]
        assert "sk-a-visitors-own-wrong-key" not in tab.locator("#status").inner_text()


def test_an_accepted_key_can_be_remembered_in_this_browser_and_is_named_after_a_reload(
    browser, sim, clean_env
):
    with (
        running_studio(sim, clean_env, visitor_keys=True) as studio,
        open_page(browser, studio.url) as tab,
    ):
        _start_from_example(tab)
        tab.get_by_role("button", name="RunAPI key").click()
        tab.locator("#remember-key input").check()
        _paste_key(tab, sim.api_key)  # a key the simulator accepts, pasted by a visitor
        expect(tab.locator("#key-note")).to_contain_text("RunAPI accepted your key")
        expect(tab.locator("#banner")).to_contain_text("remembered in this browser")

        tab.reload()
        expect(tab.locator("#status")).not_to_be_empty(timeout=30_000)
        # The banner says which key is used; edits go on with it (not the simulator's own).
        expect(tab.locator("#banner")).to_contain_text("your own RunAPI key")
        expect(tab.locator("#banner")).to_contain_text("remembered in this browser")
        before = len(sim.requests)
        _edit(tab, "make it blue")
        expect(tab.locator("#status")).to_contain_text(DONE)
        assert any(r.method == "POST" for r in sim.requests[before:])
        # Nothing of the key was written under the studio's home.
        for path in clean_env.rglob("*"):
            if path.is_file() and path.suffix not in (".png", ".jpg", ".jpeg"):
                assert sim.api_key.encode() not in path.read_bytes(), path

        # Unticked: forgotten in this browser.
        tab.get_by_role("button", name="RunAPI key").click()
        tab.locator("#remember-key input").uncheck()
        tab.reload()
        expect(tab.locator("#status")).not_to_be_empty(timeout=30_000)
        expect(tab.locator("#banner")).to_contain_text("Simulator")


def test_a_key_pasted_without_remember_is_kept_over_a_reload_of_the_tab_only(
    browser, sim, clean_env
):
    """A key pasted without "Remember" was gone after a reload, without a word until the next
    Enter was refused (audit 11). The tab keeps a token for it (in its session storage, never
    the key); a new tab of the same browser does not get it."""
    with (
        running_studio(sim, clean_env, visitor_keys=True) as studio,
        open_page(browser, studio.url) as tab,
    ):
        _start_from_example(tab)
        _paste_key(tab, sim.api_key)
        expect(tab.locator("#key-note")).to_contain_text("RunAPI accepted your key")
        expect(tab.locator("#banner")).to_contain_text("your own RunAPI key")
        stored = tab.evaluate("() => JSON.stringify({...sessionStorage, ...localStorage})")
        assert sim.api_key not in stored

        tab.reload()
        expect(tab.locator("#status")).not_to_be_empty(timeout=30_000)
        expect(tab.locator("#banner")).to_contain_text("your own RunAPI key", timeout=20_000)
        expect(tab.locator("#banner")).not_to_contain_text("remembered in this browser")
        before = len(sim.requests)
        _edit(tab, "make it blue")
        expect(tab.locator("#status")).to_contain_text(DONE)
        assert any(
            r.method == "POST" and sim.api_key in r.headers.get("authorization", "")
            for r in sim.requests[before:]
        )
        other = tab.context.new_page()  # another tab: its own, without the key
        try:
            other.goto(studio.url)
            expect(other.locator("#status")).not_to_be_empty(timeout=30_000)
            other.wait_for_timeout(1_000)
            expect(other.locator("#banner")).to_contain_text("Simulator")
        finally:
            other.close()
        # Emptied: forgotten, and a reload does not bring it back.
        _paste_key(tab, "")
        expect(tab.locator("#banner")).to_contain_text("Simulator")
        tab.reload()
        expect(tab.locator("#status")).not_to_be_empty(timeout=30_000)
        tab.wait_for_timeout(1_000)
        expect(tab.locator("#banner")).to_contain_text("Simulator")
        for path in clean_env.rglob("*"):
            if path.is_file() and path.suffix not in (".png", ".jpg", ".jpeg"):
                assert sim.api_key.encode() not in path.read_bytes(), path
