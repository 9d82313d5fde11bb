"""A hosted studio inside another site's frame, as huggingface.co frames a Space: a page on
127.0.0.1:A shows the studio from localhost:B (another site to the browser), and the visitor
keeps their session across events and a reload. Loopback only."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import running_studio
from tests.browser.test_studio_flow import _listed, _thumbs
from tests.support.engines import make_image

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def _site(page: Callable[[str], str]) -> Iterator[str]:
    """A site of its own on 127.0.0.1 answering every GET with `page(path)`; its address."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page(self.path).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def framing_site() -> Iterator[tuple[str, list[str]]]:
    """A site of its own whose page frames the URLs it is given (any other path is a page of
    its own)."""
    frames: list[str] = []

    def page(path: str) -> str:
        shown = "".join(f'<iframe src="{f}" width="1300" height="950"></iframe>' for f in frames)
        return shown if path == "/" else "<p>another site</p>"

    with _site(page) as site:
        yield site, frames


def _framed_studio(sim, home, site):  # type: ignore[no-untyped-def]
    """A hosted studio that `site` may frame."""
    return running_studio(sim, home, hosted=True, visitor_budget_cents=100, frame_ancestors=(site,))


def _open(browser, site):  # type: ignore[no-untyped-def]
    """A new browser (its own cookies) on the framing site's page."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(site)
    return context, page


def test_a_framed_studio_keeps_its_visitor_across_events_and_a_reload(
    browser, sim, clean_env, framing_site
):
    site, frames = framing_site
    with _framed_studio(sim, clean_env, site) as studio:
        # The same studio, under a name the browser counts as another site than the page's.
        frames.append(studio.url.replace("127.0.0.1", "localhost"))
        context, page = _open(browser, site)
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


# What another site's page framed beside the studio could do with the visitor's cookie (it is
# sent: the same frame partition, `SameSite=None`), if the studio believed it: ask for their
# sessions through the public API, as a plain `fetch` with credentials.
_READ_THEIR_SESSIONS = """async (studio) => {
  const asked = await fetch(studio + 'gradio_api/call/list_sessions', {
    method: 'POST', credentials: 'include', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({data: [5]}),
  });
  const {event_id} = await asked.json();
  const answer = await fetch(studio + 'gradio_api/call/list_sessions/' + event_id,
                             {credentials: 'include'});
  return await answer.text();
}"""


def test_another_sites_page_in_the_same_frame_partition_reads_nothing_of_the_visitors(
    browser, sim, clean_env, framing_site
):
    site, frames = framing_site
    with _framed_studio(sim, clean_env, site) as studio:
        # The studio and another site's page, each under a name of its own, framed by one site
        # (as every Space is framed by huggingface.co).
        port = site.rsplit(":", 1)[1]
        shown = studio.url.replace("127.0.0.1", "studio.localhost")
        frames.extend([shown, f"http://other.localhost:{port}/page"])
        context, page = _open(browser, site)
        frame = page.frame_locator("iframe").first
        expect(frame.locator("#status")).not_to_be_empty(timeout=30_000)
        frame.locator("#examples button[data-act=example]").nth(1).click()
        expect(frame.locator("#status")).to_contain_text("Ready", timeout=15_000)
        (summary,) = studio.run(studio.engine.list_sessions())
        other = next(f for f in page.frames if f.url.startswith("http://other.localhost"))
        answer = other.evaluate(_READ_THEIR_SESSIONS, shown)
        assert summary.session_id not in answer
        assert "another site" in answer
        # The visitor's own page goes on as theirs.
        frame.locator("#prompt textarea").fill("make it black and white")
        frame.locator("#prompt textarea").press("Enter")
        expect(frame.locator("#status")).to_contain_text("✓ Done", timeout=30_000)
        assert len(studio.run(studio.engine.list_sessions())) == 1
        context.close()


# Another site's page posting a form of 16 small files to the studio's upload route as soon as
# it opens (a top-level navigation: the visitor's cookie goes with it).
_POSTING_PAGE = """<!doctype html><form id="f" method="POST" enctype="multipart/form-data"
action="{studio}gradio_api/upload"><input type="file" name="files" id="i" multiple></form>
<script>
const files = new DataTransfer();
for (let n = 0; n < 16; n++) files.items.add(new File([new Uint8Array(1000).fill(n)], n + '.png'));
document.getElementById('i').files = files.files;
document.getElementById('f').submit();
</script>"""


@pytest.fixture
def posting_site() -> Iterator[tuple[str, list[str]]]:
    """A site of its own whose page posts the form above to the studio it is given."""
    studio: list[str] = []
    with _site(lambda _path: _POSTING_PAGE.replace("{studio}", studio[0])) as site:
        yield site + "/", studio


def test_another_sites_form_posted_to_the_studio_is_nobodys(browser, sim, clean_env, posting_site):
    """A visitor who opens another site's page, which posts a form of files to the studio (a
    navigation, so their cookie goes with it), has nothing stored or kept in their name: their
    own upload afterwards starts their session as ever (before, the form's 16 files filled the
    uploads a visitor may have waiting, and theirs was refused for a quarter of an hour)."""
    site, studio_url = posting_site
    with running_studio(sim, clean_env, hosted=True, visitor_budget_cents=100) as studio:
        shown = studio.url.replace("127.0.0.1", "localhost")  # another site than the form's
        studio_url.append(shown)
        context = browser.new_context()
        page = context.new_page()
        page.goto(shown)
        expect(page.locator("#status")).not_to_be_empty(timeout=30_000)
        with page.expect_response(lambda r: r.url.endswith("/gradio_api/upload")) as posted:
            page.goto(site)
        assert posted.value.status == 403  # names nobody: nothing kept
        page.goto(shown)
        expect(page.locator("#status")).not_to_be_empty(timeout=30_000)
        page.locator("#source input[type=file]").set_input_files(
            {"name": "mine.png", "mimeType": "image/png", "buffer": make_image(120, 90)}
        )
        expect(_thumbs(page)).to_have_count(1, timeout=20_000)
        expect(page.locator("#status")).to_contain_text("Ready")
        expect(_listed(page)).to_have_count(1)
        context.close()
