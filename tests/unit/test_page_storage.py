"""The page's storage script names the studio's BrowserState by the key layout gives it."""

from __future__ import annotations

from studio.ui.app import page_head
from studio.ui.layout import BROWSER_STORAGE_KEY


def test_the_tab_s_own_session_copy_names_the_browser_state_s_key():
    # (assets/storage.js spells the key out: it runs before Gradio, and before any config.)
    head = page_head()
    assert head is not None
    assert f'const SHARED = "{BROWSER_STORAGE_KEY}";' in head
