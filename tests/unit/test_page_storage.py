"""The page's storage script names the studio's BrowserState by the key layout gives it."""

from __future__ import annotations

import re
from pathlib import Path

from studio.ui import layout
from studio.ui.app import assets_dir, page_head
from studio.ui.layout import BROWSER_STORAGE_KEY, STORAGE_KEYS


def test_the_tab_s_own_session_copy_names_the_browser_state_s_key():
    # (assets/storage.js spells the key out: it runs before Gradio, and before any config.)
    head = page_head()
    assert head is not None
    assert f'const SHARED = "{BROWSER_STORAGE_KEY}";' in head


def test_the_page_scripts_keep_nothing_in_the_browser_under_a_key_layout_does_not_name():
    """A key spelt one way in one script and another way in the next loses what it keeps
    (a tab's draft, the step it showed) without a word. Each page script names only keys
    `layout.STORAGE_KEYS` declares, and every key declared is used."""
    named = re.compile(r"""["'`](kontext-studio-[a-z-]+)["'`]""")
    in_scripts = {
        key for script in assets_dir().glob("*.js") for key in named.findall(script.read_text())
    }
    assert in_scripts, "no storage key found in the page scripts"
    assert in_scripts <= set(STORAGE_KEYS), in_scripts - set(STORAGE_KEYS)
    # The rest are used by the server's own code (a BrowserState's key, a script it writes
    # into the page), by their constant's name: beyond its declaration and `STORAGE_KEYS`.
    server = "".join(f.read_text() for f in Path(layout.__file__).parent.glob("*.py"))
    for key in set(STORAGE_KEYS) - in_scripts:
        (constant,) = (n for n, v in vars(layout).items() if v == key and n.endswith("_KEY"))
        assert len(re.findall(rf"\b{constant}\b", server)) > 2, (key, constant)
