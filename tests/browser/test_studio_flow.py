"""A user's main flow in the browser: chain, branch, reload, failure and retry, bad upload."""

from __future__ import annotations

import itertools
import re

import pytest
from playwright.sync_api import expect

from studio.history import StepState
from tests.browser.conftest import shoot
from tests.support.sent import assert_sent_as_kept

pytestmark = [pytest.mark.browser, pytest.mark.slow]
DONE = re.compile(r"Done in")


def _thumbs(page, where: str = "#history"):  # type: ignore[no-untyped-def]
    """The tiles of the history's path (or the examples, or the branches where they fork)."""
    if where == "#examples":
        return page.locator("#examples button[data-act=example]")
    if where == "#branches":
        return page.locator("#history button.branch:not(.failed)")
    return page.locator(f"{where} button.tile")


def _session_name(page):  # type: ignore[no-untyped-def]
    """The name of the session the tab shows, as the session list says it."""
    return page.locator("#sessions summary .name")


def _listed(page):  # type: ignore[no-untyped-def]
    """The sessions of the list, unfolded."""
    if not page.locator("#sessions details[open]").count():
        page.locator("#sessions summary").click()
    return page.locator("#sessions button.session")


def _open_session(page, name: str) -> None:  # type: ignore[no-untyped-def]
    exact = re.compile(f"^{re.escape(name)}$")
    _listed(page).filter(has=page.locator(".name", has_text=exact)).click()


def _current(page):  # type: ignore[no-untyped-def]
    """The tile of the step the tab shows."""
    return page.locator('#history button.tile[aria-current="step"]')


EXAMPLES = ["Astronaut example", "Chelsea example", "Coffee example", "Rocket example"]


def _start_from_example(page, index: int = 1) -> None:  # type: ignore[no-untyped-def]
    if not page.locator("#examples").is_visible():  # a session is open: "+ New" first
        page.locator("#new-session").click()
    _thumbs(page, "#examples").nth(index).click()
    # The new session is the one shown (not merely a page that looked the same before).
    expect(_session_name(page)).to_have_text(EXAMPLES[index], timeout=20_000)
    expect(_thumbs(page)).to_have_count(1, timeout=15_000)
    expect(page.locator("#status")).to_contain_text("Ready", timeout=15_000)
    expect(page.locator("#result img")).to_be_visible()


def _edit(page, prompt: str) -> None:  # type: ignore[no-untyped-def]
    box = page.locator("#prompt textarea")
    box.fill(prompt)
    box.press("Enter")
    expect(box).to_have_value("", timeout=15_000)  # emptied by the page at once
    # The tab shows the new step, done (its tile carries its time and cost).
    done = re.compile(rf": {re.escape(prompt)} \(.*\$")
    expect(_current(page)).to_have_attribute("aria-label", done, timeout=30_000)
    expect(page.locator("#status")).to_contain_text(DONE, timeout=30_000)


def _only_session(studio):  # type: ignore[no-untyped-def]
    (summary,) = studio.run(studio.engine.list_sessions())
    return studio.run(studio.engine.load_session(summary.session_id))


def test_three_chained_edits_each_start_from_the_previous_result(page, studio, sim):
    _start_from_example(page)
    for n, prompt in enumerate(["make it black and white", "add snow", "make it night"], 1):
        _edit(page, prompt)
        expect(_thumbs(page)).to_have_count(n + 1)
    path = _only_session(studio).path()
    assert [s.params.prompt for s in path[1:]] == [
        "make it black and white",
        "add snow",
        "make it night",
    ]
    # The simulator received, as each step's source, exactly the previous step's image (the
    # photo itself without its metadata).
    for previous, step in itertools.pairwise(path):
        received = sim.tasks[step.task_id].source_bytes
        kept = studio.image_bytes(previous.result)
        assert_sent_as_kept(received, kept, original=previous.params is None)
    # The page shows the latest result, and the cost of the three pro edits.
    expect(page.locator("#result img")).to_have_count(1)
    expect(page.locator("#cost")).to_contain_text("$0.15")


def test_clicking_an_earlier_step_branches_and_a_reload_restores_everything(page, studio):
    _start_from_example(page, 2)
    _edit(page, "make it black and white")
    _edit(page, "add snow")
    # Go back to step one: the next edit branches from it ("add snow" is one Redo away).
    _thumbs(page).nth(1).click()
    expect(_current(page)).to_have_attribute("aria-label", re.compile("^Step 1: make it black"))
    expect(page.locator("#history li.ahead")).to_contain_text("add snow")  # one Redo away
    expect(page.locator("#redo button, button#redo")).to_be_enabled()
    _edit(page, "make it a watercolour")
    expect(_thumbs(page)).to_have_count(3)
    expect(_thumbs(page, "#branches")).to_have_count(1)  # "add snow" is the other branch
    shoot(page, "3-branch")
    session = _only_session(studio)
    step_one = session.path()[1]
    assert session.current.params.prompt == "make it a watercolour"
    assert session.current.parent_id == step_one.step_id
    assert [b.params.prompt for b in session.branches] == ["add snow"]

    page.reload()
    expect(page.locator("#run")).to_be_visible(timeout=20_000)
    expect(page.locator("#status")).not_to_be_empty(timeout=20_000)
    expect(_thumbs(page)).to_have_count(3, timeout=15_000)
    expect(_thumbs(page, "#branches")).to_have_count(1)
    expect(page.locator("#history")).to_contain_text("watercolour")
    expect(page.locator("#status")).to_contain_text(DONE)

    # The other branch is one click away and becomes the current path.
    _thumbs(page, "#branches").first.click()
    expect(page.locator("#history")).to_contain_text("add snow", timeout=15_000)
    expect(_thumbs(page)).to_have_count(3)


def test_a_failed_edit_shows_the_reason_and_retry_completes_it(page, studio, sim):
    _start_from_example(page)
    sim.faults.fail_tasks(message="Content moderated: the request was flagged", times=1)
    box = page.locator("#prompt textarea")
    box.fill("make it black and white")
    box.press("Enter")
    expect(page.locator("#status")).to_contain_text(
        "Content moderated: the request was flagged", timeout=30_000
    )
    retry = page.locator("#retry")
    expect(retry).to_be_visible()
    shoot(page, "4-failed")
    retry.click()
    expect(page.locator("#status")).to_contain_text(DONE, timeout=30_000)
    session = _only_session(studio)
    states = sorted(str(s.state) for s in session.steps.values() if s.kind == "edit")
    assert states == ["completed", "failed"]  # the failed step is kept, the retry is a sibling
    assert session.current.state is StepState.COMPLETED


def test_an_upload_that_is_not_an_image_says_so_and_changes_nothing(page, studio, tmp_path):
    _start_from_example(page)
    before = _only_session(studio)
    page.locator("#new-session").click()  # an empty page: nothing is stored for it
    fake = tmp_path / "holiday.png"
    fake.write_text("<html><body>not a photo</body></html>")
    page.locator("#source input[type=file]").set_input_files(str(fake))
    expect(page.locator("#status")).to_contain_text("web page (HTML)")
    # (Said by the status line in view, and not again by a toast over the history.)
    expect(page.locator("[data-testid=toast-body]")).to_have_count(0, timeout=3_000)
    assert studio.run(studio.engine.list_sessions())[0].session_id == before.session_id
    assert len(studio.run(studio.engine.list_sessions())) == 1


def test_an_upload_starts_a_session_from_the_file(page, studio, tmp_path):
    from tests.support.engines import make_image

    photo = tmp_path / "portrait.jpg"
    photo.write_bytes(make_image(300, 400, fmt="JPEG"))
    page.locator("#source input[type=file]").set_input_files(str(photo))
    expect(_thumbs(page)).to_have_count(1, timeout=15_000)
    expect(page.locator('#aspect option[value="match"]')).to_have_text("Match source (3:4)")
    origin = _only_session(studio).origin
    assert studio.image_bytes(origin.result) == photo.read_bytes()


def _paste_image(page, data: bytes, name: str = "pasted.png", mime: str = "image/png") -> None:  # type: ignore[no-untyped-def]
    """A paste (Ctrl+V) of a file (a PNG) into what has the focus, as the browser sends it."""
    import base64

    page.evaluate(
        """([b64, name, mime]) => {
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          const files = new DataTransfer();
          files.items.add(new File([bytes], name, { type: mime }));
          document.activeElement.dispatchEvent(
            new ClipboardEvent("paste", { clipboardData: files, bubbles: true, cancelable: true })
          );
        }""",
        [base64.b64encode(data).decode(), name, mime],
    )


def test_an_image_pasted_with_ctrl_v_starts_a_session_from_it(page, studio):
    """The empty session invites a paste (Ctrl+V) of an image; it did nothing (UX audit 1)."""
    from tests.support.engines import make_image

    data = make_image(320, 240)
    page.locator("#prompt textarea").focus()  # where the focus is when the page opens
    _paste_image(page, data)
    expect(_thumbs(page)).to_have_count(1, timeout=15_000)
    assert studio.image_bytes(_only_session(studio).origin.result) == data
    expect(page.locator("#prompt textarea")).to_have_value("")  # no text pasted


def test_an_image_pasted_with_a_session_open_starts_another_session_from_it(page, studio):
    """With a session open, a paste of an image did nothing and said nothing (UX audit 2)."""
    from tests.support.engines import make_image

    _start_from_example(page)
    first = _only_session(studio)
    data = make_image(320, 240)
    page.locator("#canvas").first.click()  # the focus on the picture, not in a text box
    _paste_image(page, data)
    expect(_session_name(page)).not_to_have_text(first.name, timeout=15_000)
    expect(_thumbs(page)).to_have_count(1, timeout=15_000)
    sessions = studio.run(studio.engine.list_sessions())
    assert len(sessions) == 2
    pasted = next(s for s in sessions if s.session_id != first.session_id)
    session = studio.run(studio.engine.load_session(pasted.session_id))
    assert studio.image_bytes(session.origin.result) == data
    expect(_listed(page)).to_have_count(2)


def test_a_pasted_file_that_is_no_picture_is_named_and_changes_nothing(page, studio):
    """A PDF pasted said nothing at all, where one dropped is named (audit 15)."""
    _start_from_example(page)
    first = _only_session(studio)
    page.locator("#canvas").first.click()
    _paste_image(page, b"%PDF-1.4\n%fake\n", "doc.pdf", "application/pdf")
    expect(page.locator("#status")).to_contain_text("doc.pdf is not an image")
    expect(_session_name(page)).to_have_text(first.name)
    assert len(studio.run(studio.engine.list_sessions())) == 1


@pytest.fixture
def image_server(tmp_path):
    """A plain HTTP server on loopback serving a photo and a web page."""
    import functools
    import http.server
    import threading

    from tests.support.engines import make_image

    (tmp_path / "photo.jpg").write_bytes(make_image(640, 360, fmt="JPEG"))
    (tmp_path / "page.jpg").write_text("<!doctype html><html><body>hello</body></html>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()
    server.server_close()


def test_a_pasted_link_starts_a_session_and_a_page_link_is_refused(page, studio, image_server):
    base, folder = image_server
    page.locator("#link textarea, #link input").first.fill(f"{base}/page.jpg")
    page.locator("#load-link").click()
    expect(page.locator("#status")).to_contain_text("is HTML, not an image", timeout=15_000)
    assert studio.run(studio.engine.list_sessions()) == []

    page.locator("#link textarea, #link input").first.fill(f"{base}/photo.jpg")
    page.locator("#load-link").click()
    expect(_thumbs(page)).to_have_count(1, timeout=15_000)
    expect(page.locator('#aspect option[value="match"]')).to_have_text("Match source (16:9)")
    origin = _only_session(studio).origin
    assert studio.image_bytes(origin.result) == (folder / "photo.jpg").read_bytes()


def _two_steps_compared(page):  # type: ignore[no-untyped-def]
    """Two edits made, "Compare two steps" open: the slider's two pictures."""
    _start_from_example(page)
    _edit(page, "make it black and white")
    _edit(page, "add snow")
    page.get_by_text("Compare two steps").click()
    slider = page.locator("#slider [data-testid=imageslider-image]")
    expect(slider).to_have_count(2)
    return slider


def test_any_two_steps_can_be_put_in_the_slider(page, studio):
    slider = _two_steps_compared(page)
    before = slider.nth(0).get_attribute("src")
    # Compare the original (left) with the latest (right) instead of the last step's parent.
    page.locator("#pair-a input").click()
    page.get_by_role("option", name="Original").click()
    expect(slider.nth(0)).not_to_have_attribute("src", before or "", timeout=10_000)
    session = _only_session(studio)
    original = studio.engine.image_path(session.origin.result)
    assert original.name.split(".")[0] in (slider.nth(0).get_attribute("src") or "")


def test_the_slider_follows_its_pickers_when_the_page_moves_them(page, studio):
    """With Compare two steps open, a click on another step moved the pickers to it and its
    parent, and the slider went on showing the two pictures before, another session's too
    once another was opened (UX audit 12, 3 of 3)."""
    slider = _two_steps_compared(page)
    session = _only_session(studio)
    first, second = [s for s in session.path()[1:]]
    path = studio.engine.image_path

    def stem(step):  # type: ignore[no-untyped-def]
        assert step.result is not None
        return re.compile(re.escape(path(step.result).name.split(".")[0]))

    # (The right one is a copy fitted into the left one's frame when their shapes differ.)
    expect(slider.nth(0)).to_have_attribute("src", stem(first))
    right = slider.nth(1).get_attribute("src") or ""
    page.locator("#history button.tile").nth(1).click()  # step 1: the original and step 1
    expect(_current(page)).to_have_attribute("aria-label", re.compile("^Step 1"))
    expect(slider.nth(0)).to_have_attribute("src", stem(session.origin), timeout=10_000)
    expect(slider.nth(1)).not_to_have_attribute("src", right)
    assert second.result is not None
    assert path(second.result).name.split(".")[0] not in (slider.nth(1).get_attribute("src") or "")
