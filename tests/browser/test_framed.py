"""A hosted studio inside another site's frame, as huggingface.co frames a Space: a page on
127.0.0.1:A shows the studio from localhost:B (another site to the browser), and the visitor
keeps their session across events and a reload. Loopback only."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import running_studio
from tests.browser.test_studio_flow import _listed

pytestmark = pytest.mark.slow


@pytest.fixture
def framing_site() -> Iterator[tuple[str, list[str]]]:
    """A site of its own on 127.0.0.1 whose page frames the URL it is given."""
    frames: list[str] = []

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f'<iframe src="{frames[0]}" width="1300" height="950"></iframe>'.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", frames
    server.shutdown()
    server.server_close()


def test_a_framed_studio_keeps_its_visitor_across_events_and_a_reload(
    browser, sim, clean_env, framing_site
):
    site, frames = framing_site
    with running_studio(
        sim, clean_env, hosted=True, visitor_budget_cents=100, frame_ancestors=(site,)
    ) as studio:
        # The same studio, under a name the browser counts as another site than the page's.
        frames.append(studio.url.replace("127.0.0.1", "localhost"))
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.goto(site)
        frame = page.frame_locator("iframe")
        expect(frame.locator("#status")).not_to_be_empty(timeout=30_000)
        frame.locator("#examples button[data-act=example]").nth(1).click()
        expect(frame.locator("#status")).to_contain_text("Ready", timeout=15_000)
        box = frame.locator("#prompt textarea")
        box.fill("make it black and white")
        box.press("Enter")
        expect(frame.locator("#status")).to_contain_text("✓ Done", timeout=30_000)
        # Every event was the same visitor's: one session, with its edit, and its image shown.
        (summary,) = studio.run(studio.engine.list_sessions())
        assert summary.step_count == 1
        _shows_its_image(frame)
        page.reload()
        expect(frame.locator("#status")).to_contain_text("✓ Done", timeout=30_000)
        _shows_its_image(frame)
        expect(_listed(frame)).to_have_count(1)
        context.close()


def _shows_its_image(frame) -> None:  # type: ignore[no-untyped-def]
    """The result image arrived: the guarded file route served it to this visitor."""
    image = frame.locator("#result img")
    expect(image).to_be_visible()
    for _ in range(60):
        if image.evaluate("img => img.complete && img.naturalWidth > 0"):
            return
        frame.owner.page.wait_for_timeout(250)
    raise AssertionError("the framed page's result image never loaded")
