"""Stored text shows as text, and one damaged session never breaks the page, in the browser.

The planted links and images point at 127.0.0.2, a loopback address standing in for a remote
host: the page fixture fails the test if the browser requests anything outside 127.0.0.1.
"""

from __future__ import annotations

import sqlite3

import pytest
from playwright.sync_api import expect

from studio.history import new_id
from studio.params import EditParams
from studio.store import DB_NAME
from tests.browser.conftest import RECORD_TOASTS, toast_saying
from tests.browser.test_studio_flow import _listed, _open_session, _session_name
from tests.support.engines import make_image
from tests.support.zips import rewrite_export

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LINK = '<a href="http://127.0.0.2:9/prize">claim your prize</a>'
PIXEL = '<img src="http://127.0.0.2:9/pixel.png">'
MARKDOWN_IMAGE = "![x](http://127.0.0.2:9/md.png) or http://127.0.0.2:9/bare"
PLANTED = "a[href*='127.0.0.2'], img[src*='127.0.0.2']"
LOOPBACK = ("http://127.0.0.1", "data:", "blob:")


def _export_with_one_edit(studio) -> bytes:  # type: ignore[no-untyped-def]
    image = studio.run(studio.engine.read_image(make_image()))
    session = studio.run(studio.engine.start_session(image, name="source"))
    studio.run(studio.engine.edit(session.session_id, EditParams(prompt="make it blue")))
    return studio.run(studio.engine.export_session(session.session_id))


@pytest.fixture
def open_page(browser, studio):  # type: ignore[no-untyped-def]
    """Opens the studio in a fresh browser context, once the test has prepared the store."""
    contexts = []
    outside: list[str] = []

    def open_():  # type: ignore[no-untyped-def]
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        contexts.append(context)
        page = context.new_page()
        page.on(
            "request",
            lambda r: None if r.url.startswith(LOOPBACK) else outside.append(r.url),
        )
        page.goto(studio.url)
        expect(page.locator("#run")).to_be_visible(timeout=20_000)
        expect(page.locator("#status")).not_to_be_empty(timeout=20_000)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert outside == [], f"the page reached outside 127.0.0.1: {outside[:3]}"


def _import(page, tmp_path, data: bytes) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / f"import-{new_id()[:8]}.zip"
    path.write_bytes(data)
    with page.expect_file_chooser() as chooser:
        page.locator("#import").click()
    chooser.value.set_files(str(path))


def test_html_in_an_imported_session_shows_as_literal_text(open_page, studio, tmp_path):
    error = f"{LINK} {PIXEL} {MARKDOWN_IMAGE}"

    def plant(document):
        edit = document["steps"][1]
        failed = {
            **edit,
            "step_id": new_id(),
            "state": "failed",
            "image": None,
            "result": None,
            "cost_cents": 0,
            "error": error,
            "params": {**edit["params"], "prompt": f"{PIXEL} make it red"},
        }
        document["steps"].append(failed)
        document["current_step_id"] = failed["step_id"]
        document["name"] = f"{LINK} trip"

    data = rewrite_export(_export_with_one_edit(studio), plant)
    page = open_page()
    _import(page, tmp_path, data)

    # The imported session opens under its name, as typed (the status says so only briefly).
    expect(_session_name(page)).to_have_text(f"{LINK} trip (imported)", timeout=20_000)
    # The failed step is current: its reason is the status, every character as it was.
    page.reload()
    status = page.locator("#status")
    expect(status).to_contain_text(f"Failed: {error}", timeout=20_000)
    expect(page.locator("#retry")).to_be_visible()
    expect(page.locator("#status a, #status img")).to_have_count(0)
    expect(page.locator(PLANTED)).to_have_count(0)


def test_a_refusal_that_quotes_the_zip_shows_it_as_text(open_page, studio, tmp_path):
    def name_a_missing_image(document):
        document["steps"][1]["image"] = PIXEL

    data = rewrite_export(_export_with_one_edit(studio), name_a_missing_image)
    page = open_page()
    page.evaluate(RECORD_TOASTS)
    _import(page, tmp_path, data)
    status = page.locator("#status")
    expect(status).to_contain_text("does not contain", timeout=20_000)
    expect(status).to_contain_text(PIXEL)  # quoted, not drawn
    assert PIXEL in toast_saying(page, "does not contain")  # (the same, in a toast)
    expect(page.locator(PLANTED)).to_have_count(0)


def test_a_damaged_session_is_listed_and_the_page_works_for_everyone(open_page, studio):
    readable = _export_with_one_edit(studio)
    named = rewrite_export(readable, lambda document: document.update(name="Good trip"))
    good = studio.run(studio.engine.import_session(named))
    bad = studio.run(studio.engine.import_session(readable))  # the newest: a fresh page's pick
    with sqlite3.connect(studio.settings.home / DB_NAME) as db:
        db.execute("UPDATE steps SET cost_cents = 'abc' WHERE session_id = ?", (bad.session_id,))

    page = open_page()
    status = page.locator("#status")
    expect(status).to_contain_text("Done", timeout=20_000)  # a readable session opened
    expect(page.get_by_text("Error", exact=True)).to_have_count(0)
    expect(page.locator("#cost")).to_contain_text("$0.05")
    damaged = _listed(page).filter(has_text="damaged: cannot be opened")
    expect(damaged).to_have_count(1)
    damaged.click()
    expect(status).to_contain_text("This session is damaged", timeout=20_000)
    # The rest still works: back to the readable session.
    _open_session(page, good.name)
    expect(status).to_contain_text("Done", timeout=20_000)
    expect(page.locator("#cost")).to_contain_text("$0.05")
