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
