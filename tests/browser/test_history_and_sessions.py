"""The history strip (whole captions, the tab's step highlighted, failed attempts out of the
way, the redo line), sessions (names, rename, delete), and the smaller points of the page."""

from __future__ import annotations

import json
import re
import zipfile

import pytest
from playwright.sync_api import expect

from studio.simulator.tasks import LatencyProfile
from studio.ui.layout import TICK_IDLE_S
from tests.browser.conftest import LOADED
from tests.browser.test_studio_flow import (
    DONE,
    _current,
    _edit,
    _listed,
    _only_session,
    _session_name,
    _start_from_example,
    _thumbs,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
LONG = "Make the sky stormy and dark, keep the cat, the whiskers and the light on its face"


def test_the_tree_shows_whole_captions_highlights_the_tab_step_and_keeps_the_redo_line(page):
    _start_from_example(page)
    _edit(page, LONG)
    _edit(page, "add snow")
    thumbs = _thumbs(page)
    expect(thumbs.nth(2)).to_have_attribute("aria-current", "step")
    # The whole instruction is there: in the tile's label, and as the tile's tooltip.
    expect(thumbs.nth(1)).to_have_attribute("title", LONG)
    expect(thumbs.nth(1)).to_have_attribute("aria-label", re.compile(re.escape(LONG)))

    page.locator("#undo").click()
    expect(page.locator("#status")).to_contain_text(DONE)
    expect(thumbs.nth(1)).to_have_attribute("aria-current", "step")
    # The undone step is the redo line, not "another branch".
    expect(thumbs).to_have_count(3)
    expect(page.locator("#history li.ahead")).to_contain_text("add snow")
    expect(_thumbs(page, "#branches")).to_have_count(0)

    # An edit from here branches: the undone step hangs where it forks, named "2a" (the first
    # step made there; the one on the path is the second, "2b").
    _edit(page, "make it night")
    expect(thumbs.nth(2)).to_have_attribute("aria-current", "step")
    expect(_thumbs(page, "#branches")).to_contain_text("2a add snow")
    expect(thumbs.nth(2)).to_contain_text("2b make it night")


def test_a_failed_attempt_is_folded_into_a_count_and_one_click_shows_why(page, sim):
    _start_from_example(page)
    sim.faults.fail_tasks(message="Content moderated: the request was flagged", times=1)
    box = page.locator("#prompt textarea")
    box.fill("make it black and white")
    box.press("Enter")
    expect(page.locator("#status")).to_contain_text("Content moderated", timeout=30_000)
    page.locator("#retry").click()
    expect(page.locator("#status")).to_contain_text(DONE, timeout=30_000)
    expect(_thumbs(page, "#branches")).to_have_count(0)  # no red tile among the branches
    folded = page.locator("#history details.failed")
    expect(folded).to_contain_text("1 failed attempt")
    # One click away, with its reason.
    folded.get_by_text("1 failed attempt").click()
    folded.locator("button.branch").first.click()
    expect(page.locator("#status")).to_contain_text("Content moderated")


def test_sessions_are_named_after_their_file_and_can_be_renamed_and_deleted(page, studio, tmp_path):
    from tests.support.engines import make_image

    _start_from_example(page)
    photo = tmp_path / "Beach day.jpg"
    photo.write_bytes(make_image(300, 200, fmt="JPEG"))
    page.locator("#new-session").click()
    # The empty page is there (a reply still on its way would otherwise land over the upload's).
    expect(page.locator("#status")).to_contain_text("type an instruction to generate one")
    page.locator("#source input[type=file]").set_input_files(str(photo))
    sessions = _session_name(page)
    expect(sessions).to_have_text("Beach day.jpg")

    page.get_by_role("button", name="Rename or delete this session").click()
    name = page.locator("#session-name input")
    expect(name).to_have_value("Beach day.jpg")
    name.fill("Holiday, day one")
    page.locator("#rename").click()
    expect(sessions).to_have_text("Holiday, day one")

    page.locator("#delete").click()
    confirm = page.locator("#delete-text")  # inside the confirmation (a group)
    expect(confirm).to_contain_text("Delete “Holiday, day one” with its 0 steps")
    page.locator("#delete-no").click()
    expect(confirm).to_be_hidden()
    assert len(studio.run(studio.engine.list_sessions())) == 2  # nothing without a yes

    page.locator("#delete").click()
    page.locator("#delete-yes").click()
    expect(page.locator("#status")).to_contain_text("Deleted “Holiday, day one”")
    expect(sessions).to_have_text("Chelsea example")
    # The sentence stays: the next tick used to draw the page again over it.
    page.wait_for_timeout(2_000 * TICK_IDLE_S + 500)
    expect(page.locator("#status")).to_contain_text("Deleted “Holiday, day one”")
    assert [s.name for s in studio.run(studio.engine.list_sessions())] == ["Chelsea example"]


def test_an_upload_over_the_limit_gets_one_sentence_and_changes_nothing(page, studio, tmp_path):
    _start_from_example(page)
    page.locator("#new-session").click()
    big = tmp_path / "huge.png"
    with big.open("wb") as file:  # 51 MB, mostly a hole: cheap to make
        file.write(b"\x89PNG\r\n\x1a\n")
        file.truncate(51 * 1024 * 1024)
    page.locator("#source input[type=file]").set_input_files(str(big))
    expect(page.locator("#status")).to_contain_text("The file is 51 MB, over the 50 MB limit")
    expect(page.locator("#status")).not_to_contain_text("Done")
    expect(page.locator("[data-testid=toast-body]")).to_have_count(0)
    expect(page.locator("#source")).not_to_contain_text("Error")
    assert len(studio.run(studio.engine.list_sessions())) == 1


def test_new_then_enter_generates_a_new_image_and_leaves_no_empty_session(page, studio, sim):
    _start_from_example(page)
    page.get_by_role("button", name="Advanced").click()
    slider = page.locator("#safety input[type=range]")
    expect(slider).to_have_attribute("max", "2")  # the next step edits
    edited = _only_session(studio)
    page.locator("#new-session").click()
    expect(page.locator("#status")).to_contain_text("type an instruction to generate one")
    expect(slider).to_have_attribute("max", "6")  # the next step generates
    assert len(studio.run(studio.engine.list_sessions())) == 1  # nothing stored for "New"
    _edit(page, "a red bicycle against a white wall")
    (task,) = sim.tasks.values()
    assert task.source_bytes is None  # generated, not an edit of the hidden step
    assert len(studio.run(studio.engine.load_session(edited.session_id)).steps) == 1
    names = {s.name for s in studio.run(studio.engine.list_sessions())}
    assert names == {"Chelsea example", "a red bicycle against a white wall"}
    # Its toggle says the panel is open, folds it at once, and opens it again from the keyboard.
    advanced = page.get_by_role("button", name="Advanced")
    expect(advanced).to_have_attribute("aria-expanded", "true")
    advanced.click()
    expect(advanced).to_have_attribute("aria-expanded", "false")
    expect(slider).to_be_hidden()
    advanced.focus()
    page.keyboard.press("Enter")
    expect(advanced).to_have_attribute("aria-expanded", "true")
    expect(slider).to_be_visible()


def test_a_download_is_named_after_the_session_and_step(page):
    _start_from_example(page)
    page.locator("#keep-rest input").check()
    _edit(page, "make it black and white")
    with page.expect_download() as download:
        page.locator("#download").click()
    assert download.value.suggested_filename == "chelsea-example-step-1.png"
    # The model's own output too (it came as "10189c4b…a49a1f.png": UX audit 5).
    with page.expect_download() as raw:
        page.locator("#raw").click()
    assert raw.value.suggested_filename == "chelsea-example-step-1-model-output.png"
    # Named in another script, it keeps its letters (it downloaded as "kontext-step-1.png":
    # UX audit 11).
    page.locator("#manage-fold button").first.click()
    page.locator("#session-name textarea, #session-name input").first.fill("قهوة 咖啡")
    page.locator("#rename").click()
    expect(page.locator("#sessions summary")).to_contain_text("قهوة 咖啡", timeout=15_000)
    with page.expect_download() as renamed:
        page.locator("#download").click()
    assert renamed.value.suggested_filename == "قهوة-咖啡-step-1.png"
    # So does its export, saved at once and by *Download export* (both were "session.zip").
    with page.expect_download() as exported:
        page.locator("#export").click()
    assert exported.value.suggested_filename == "قهوة-咖啡.zip"
    with page.expect_download() as again:
        page.locator("#export-file a").click()
    assert again.value.suggested_filename == "قهوة-咖啡.zip"


PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


def test_on_a_phone_the_page_reads_top_to_bottom(browser, studio):
    from tests.browser.conftest import open_page

    with open_page(browser, studio.url, **PHONE) as phone:
        _start_from_example(phone)
        phone.evaluate("window.scrollTo(0, 0)")
        phone.reload()
        expect(phone.locator("#status")).not_to_be_empty(timeout=30_000)
        expect(phone.locator("#history img").first).to_be_visible()
        # Nothing scrolled on load: the title, banner and source are where the page starts.
        assert phone.evaluate("window.scrollY") == 0
        title = phone.locator("#title h2")
        box = title.bounding_box()
        line = phone.evaluate(
            "e => parseFloat(getComputedStyle(e).lineHeight)", title.element_handle()
        )
        assert box is not None
        assert box["height"] < 1.5 * line, "the title wraps"
        assert box["x"] + box["width"] <= 390
        # + New, the only way to another photo with a session open, is a finger's size (it
        # was 45 x 27 px: UX audit 5).
        new = phone.locator("#new-session").bounding_box()
        assert new is not None
        assert new["height"] >= 36
        assert new["width"] >= 56

        # The options row wraps within the screen: every control whole, none cut at its edge.
        for control in phone.locator("#options .opts > *").all():
            edge = control.bounding_box()
            assert edge is not None
            assert edge["x"] >= 0
            assert edge["x"] + edge["width"] <= 390

        # After Enter, the canvas (the status under it says a run is under way) stays in view.
        box_ = phone.locator("#prompt textarea")
        box_.fill("make it black and white")
        box_.press("Enter")
        expect(phone.locator("#result")).to_be_in_viewport()
        expect(phone.locator("#status")).to_contain_text("◷")
        expect(phone.locator("#status")).to_contain_text(DONE, timeout=30_000)

        # The history is a film strip of tiles a finger can hit.
        assert _thumbs(phone).first.bounding_box()["width"] >= 140  # type: ignore[index]


def test_the_session_list_shows_each_session_s_picture_steps_and_day(page, studio, sim):
    _start_from_example(page, 1)
    _edit(page, "make it black and white")
    _start_from_example(page, 0)
    rows = _listed(page)
    expect(rows).to_have_count(2)
    chelsea = rows.filter(has_text="Chelsea example")
    # With the hour, in the browser's own time (all "today", they were told apart by nothing:
    # UX audit 2).
    today = r" · today \d{1,2}:\d\d\b"
    expect(chelsea.locator(".meta")).to_have_text(re.compile("^1 step" + today))
    expect(rows.filter(has_text="Astronaut example").locator(".meta")).to_have_text(
        re.compile("^no edits yet" + today)
    )
    cover = chelsea.locator("img.cover")
    expect(cover).to_be_visible()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=cover.element_handle()
    )
    # One click opens it, at its step, and folds the list.
    chelsea.click()
    expect(_session_name(page)).to_have_text("Chelsea example")
    expect(page.locator("#history li.current")).to_contain_text("make it black and white")
    expect(page.locator("#sessions ul.list")).to_be_hidden()
    # Open while an edit lands (its step count changes), the list stays open (it snapped shut
    # under the pointer: UX audit 2).
    sim.latency = LatencyProfile(2.0, 3.0, 2.0, 3.0)  # (the list is opened while it runs)
    box = page.locator("#prompt textarea")
    box.fill("add snow")
    box.press("Enter")
    expect(page.locator("#status")).to_contain_text("◷", timeout=10_000)
    _listed(page)
    expect(page.locator("#status")).to_contain_text(DONE, timeout=30_000)
    page.wait_for_timeout(1000)  # (a redraw of the list may follow the page's)
    expect(page.locator("#sessions ul.list")).to_be_visible()
    page.locator("#history").click(position={"x": 5, "y": 5})  # a click elsewhere folds it
    expect(page.locator("#sessions ul.list")).to_be_hidden()
    # "+ New" leaves nothing behind until it gets an image or an instruction.
    page.locator("#new-session").click()
    expect(_session_name(page)).to_have_text("New session")
    expect(_listed(page)).to_have_count(2)
    assert len(studio.run(studio.engine.list_sessions())) == 2


def test_a_long_session_list_shows_the_newest_fifty_and_the_rest_one_click_away(page, studio):
    for n in range(55):  # made one after the other: "Kept 54" is the newest
        studio.run(studio.engine.start_session(None, name=f"Kept {n}"))
    page.reload()
    expect(_session_name(page)).to_have_text("Kept 54", timeout=20_000)
    rows = _listed(page)
    expect(rows).to_have_count(50)
    expect(rows.filter(has=page.locator(".name", has_text=re.compile("^Kept 0$")))).to_have_count(0)
    more = page.locator("#sessions button.more")
    expect(more).to_have_text("Show all 55 sessions (5 older)")
    more.click()
    # The list stays unfolded, now with every session; the oldest opens with one click.
    expect(rows).to_have_count(55)
    expect(page.locator("#sessions ul.list")).to_be_visible()
    rows.filter(has=page.locator(".name", has_text=re.compile("^Kept 0$"))).click()
    expect(_session_name(page)).to_have_text("Kept 0")
    # Opened, it is in the list (marked) however old it is.
    expect(_listed(page).filter(has_text="Kept 0")).to_have_attribute("aria-current", "true")


def test_the_session_list_opened_on_an_empty_page_is_drawn_over_the_upload_box(page, studio):
    """The upload box's label was drawn over the list's first session (UX audit 2)."""
    page.set_viewport_size({"width": 1440, "height": 900})
    _start_from_example(page)
    page.locator("#new-session").click()
    expect(_session_name(page)).to_have_text("New session")
    first = _listed(page).first
    expect(first).to_be_visible()
    box = first.bounding_box()
    assert box is not None
    # (Every element hit-testable, so the one drawn on top answers: the label lets the
    # pointer through, and was drawn over the list all the same.)
    page.add_style_tag(content="* { pointer-events: auto !important; }")
    for x, y in ((box["x"] + 60, box["y"] + box["height"] - 4), (box["x"] + 8, box["y"] + 4)):
        drawn = page.evaluate(
            "([x, y]) => Boolean(document.elementFromPoint(x, y)?.closest('#sessions'))", [x, y]
        )
        assert drawn, f"something else is drawn over the session list at {x},{y}"


def test_a_branch_s_chip_shows_the_step_it_names_with_the_rest_of_the_branch_ahead(page):
    """The chip "2a add snow · 2 steps" went to the branch's end, a step it did not name (UX
    audit 3); it shows "add snow", and Redo walks on to the end."""
    _start_from_example(page)
    _edit(page, "make it black and white")
    _edit(page, "add snow")
    _edit(page, "add a moon")
    _thumbs(page).nth(1).click()
    expect(_current(page)).to_have_attribute("aria-label", re.compile("^Step 1: make it black"))
    _edit(page, "make it night")
    chip = page.locator("#history button.branch", has_text="add snow")
    expect(chip).to_contain_text("2a add snow")
    expect(chip).to_contain_text("2 steps")
    chip.click()
    expect(_current(page)).to_have_attribute("aria-label", re.compile("^Step 2a: add snow"))
    expect(page.locator("#history li.ahead")).to_contain_text("add a moon")
    page.locator("#canvas").first.click()  # the focus leaves the instruction box
    page.keyboard.press("Control+Shift+z")
    expect(_current(page)).to_have_attribute("aria-label", re.compile("^Step 3: add a moon"))
    # The path the tab left hangs where it forks, named as before.
    expect(page.locator("#history button.branch", has_text="make it night")).to_contain_text(
        "2b make it night"
    )


def test_a_new_session_offers_no_export_rename_or_delete_until_it_has_something(page):
    """On a new session with nothing in it yet, Export and "Rename or delete" were offered and
    each answered with a refusal (UX audit 4): they are disabled, saying why, the panel open
    for the session before folds, and nothing under the pointer moves (nor does the header:
    "New session" had no picture's place, and was 5 px shorter)."""
    page.set_viewport_size({"width": 1440, "height": 900})
    _start_from_example(page)
    exporter, importer = page.locator("#export"), page.locator("#import")
    toggle = page.locator("#manage-fold button[data-fold=manage]")
    expect(exporter).to_be_enabled()
    expect(toggle).to_be_enabled()
    toggle.click()
    expect(page.locator("#session-name")).to_be_visible()
    before = [exporter.bounding_box(), importer.bounding_box()]
    page.locator("#new-session").click()
    expect(page.locator("#examples")).to_be_visible()
    for control in (exporter, toggle):
        expect(control).to_be_disabled()
        expect(control).to_have_attribute("title", re.compile("open an image or send an"))
    expect(page.locator("#manage")).to_be_hidden()
    expect(importer).to_be_enabled()  # (an import starts a session)
    assert [exporter.bounding_box(), importer.bounding_box()] == before
    _start_from_example(page, 2)
    expect(exporter).to_be_enabled()
    expect(exporter).to_have_attribute("title", "Save this session as a ZIP")
    expect(toggle).to_be_enabled()


def test_download_export_is_offered_only_on_the_session_it_was_made_of(page):
    """After Export on one session, *Download export* stayed on the page when another was
    opened (or + New pressed), and downloaded the first one's ZIP (UX audit 9)."""
    from tests.browser.test_studio_flow import EXAMPLES, _open_session

    _start_from_example(page, 1)
    _start_from_example(page, 2)
    link = page.locator("#export-file a")
    with page.expect_download() as saved:
        page.locator("#export").click()
    assert saved.value.suggested_filename.startswith("Coffee")
    expect(link).to_be_visible(timeout=15_000)
    _open_session(page, EXAMPLES[1])
    expect(_session_name(page)).to_have_text(EXAMPLES[1], timeout=15_000)
    expect(link).to_be_hidden()
    _open_session(page, EXAMPLES[2])  # its own session again: it may be saved again
    expect(_session_name(page)).to_have_text(EXAMPLES[2], timeout=15_000)
    expect(link).to_be_visible()
    page.locator("#new-session").click()
    expect(page.locator("#examples")).to_be_visible(timeout=15_000)
    expect(link).to_be_hidden()


def test_download_export_goes_once_the_session_has_changed_since(page):
    """Exported at two steps, *Download export* stayed beside a tree of four and saved the
    ZIP of two (UX audit 11): once a step is made (or the session renamed) it is put away,
    and Export makes the session as it is now."""
    _start_from_example(page, 1)
    _edit(page, "make it black and white")
    link = page.locator("#export-file a")
    tiles = page.locator("#history button.tile")
    before = [tiles.nth(n).bounding_box() for n in range(2)]
    with page.expect_download():
        page.locator("#export").click()
    expect(link).to_be_visible(timeout=15_000)
    # The link comes under the tree: over it, it pushed the tree 53 px down under the pointer.
    assert [tiles.nth(n).bounding_box() for n in range(2)] == before
    page.locator("#canvas").first.click()  # moving along the path changes nothing exported
    page.keyboard.press("ArrowLeft")
    expect(page.locator('#history button.tile[aria-current="step"]')).to_have_attribute(
        "aria-label", re.compile("^Step 0")
    )
    expect(link).to_be_visible()
    page.keyboard.press("ArrowRight")
    _edit(page, "add snow")
    expect(link).to_be_hidden()
    with page.expect_download() as saved:
        page.locator("#export").click()
    expect(link).to_be_visible(timeout=15_000)
    with zipfile.ZipFile(saved.value.path()) as bundle:
        record = json.loads(bundle.read("session.json"))
    prompts = [(s.get("params") or {}).get("prompt") for s in record["steps"]]
    assert "add snow" in prompts, prompts


def test_a_draft_stays_with_its_session_when_another_is_opened_from_the_list(page, sim):
    """A half-typed instruction followed the user into another session: one Enter would have
    edited the wrong picture (UX audit 5). Each session keeps its own draft, through + New too:
    the new session's box was the old one's, and one Enter there made a paid picture from it
    (UX audit 7)."""
    from tests.browser.test_studio_flow import EXAMPLES, _open_session

    _start_from_example(page, 1)
    _start_from_example(page, 2)
    box = page.locator("#prompt textarea")
    box.fill("for the coffee only")
    _open_session(page, EXAMPLES[1])
    expect(_session_name(page)).to_have_text(EXAMPLES[1], timeout=15_000)
    expect(box).to_have_value("")
    box.fill("for the cat")
    _open_session(page, EXAMPLES[2])
    expect(_session_name(page)).to_have_text(EXAMPLES[2], timeout=15_000)
    expect(box).to_have_value("for the coffee only")
    _open_session(page, EXAMPLES[1])
    expect(_session_name(page)).to_have_text(EXAMPLES[1], timeout=15_000)
    expect(box).to_have_value("for the cat")
    # Sent here, it is this session's edit; nothing was sent anywhere before.
    assert sim.tasks == {}
    page.locator("#new-session").click()
    expect(page.locator("#examples")).to_be_visible(timeout=15_000)
    expect(box).to_have_value("")
    # Words typed for a new picture stay with the new one: they went over the session opened
    # next, and replaced its draft (UX audit 8).
    box.fill("a red bicycle on a beach")
    _open_session(page, EXAMPLES[1])
    expect(_session_name(page)).to_have_text(EXAMPLES[1], timeout=15_000)
    expect(box).to_have_value("for the cat")
    page.locator("#new-session").click()
    expect(page.locator("#examples")).to_be_visible(timeout=15_000)
    expect(box).to_have_value("a red bicycle on a beach")
    _open_session(page, EXAMPLES[1])
    expect(_session_name(page)).to_have_text(EXAMPLES[1], timeout=15_000)
    expect(box).to_have_value("for the cat")


def test_drafts_of_a_session_and_of_a_new_one_both_survive_a_reload(page):
    """A draft for the bicycle, + New, words for a new picture, a reload: the page opened the
    bicycle with the new picture's words in its box, and the bicycle's draft, kept aside, was
    lost when the tab moved on (UX audit 9). Each comes back in its own box."""
    from tests.browser.test_studio_flow import EXAMPLES

    _start_from_example(page, 1)
    box = page.locator("#prompt textarea")
    box.fill("bike draft")
    page.locator("#new-session").click()
    expect(page.locator("#examples")).to_be_visible(timeout=15_000)
    expect(box).to_have_value("")
    box.fill("generate a lighthouse")
    page.reload()
    expect(_session_name(page)).to_have_text(EXAMPLES[1], timeout=20_000)
    expect(box).to_have_value("bike draft", timeout=15_000)
    page.locator("#new-session").click()
    expect(page.locator("#examples")).to_be_visible(timeout=15_000)
    expect(box).to_have_value("generate a lighthouse")


def test_a_reload_keeps_the_tab_on_its_own_session_with_its_draft(page):
    """A reload opened the session this browser had opened last, perhaps in another tab: the
    words typed for the coffee came back in the box over the cat, one Enter from editing it
    (UX audit 8), and the tab had moved to another photo. A tab keeps its session over a
    reload, and its draft with it; a new tab opens the session the browser opened last."""
    from tests.browser.test_studio_flow import EXAMPLES, _open_session

    _start_from_example(page, 1)
    _start_from_example(page, 2)
    box = page.locator("#prompt textarea")
    box.fill("a draft for the coffee")
    page.reload()  # the same session: the words are back
    expect(_session_name(page)).to_have_text(EXAMPLES[2], timeout=20_000)
    expect(box).to_have_value("a draft for the coffee", timeout=15_000)
    other = page.context.new_page()  # another tab of the same browser
    other.goto(page.url)
    expect(other.locator(LOADED)).to_be_attached(timeout=30_000)
    expect(_session_name(other)).to_have_text(EXAMPLES[2], timeout=15_000)
    expect(other.locator("#prompt textarea")).to_have_value("")  # the draft is the tab's
    _open_session(other, EXAMPLES[1])
    expect(_session_name(other)).to_have_text(EXAMPLES[1], timeout=15_000)
    expect(_session_name(page)).to_have_text(EXAMPLES[2])
    box.fill("make the coffee foam a heart")
    page.reload()
    expect(_session_name(page)).to_have_text(EXAMPLES[2], timeout=20_000)
    expect(box).to_have_value("make the coffee foam a heart", timeout=15_000)
    other.reload()
    expect(_session_name(other)).to_have_text(EXAMPLES[1], timeout=20_000)
    expect(other.locator("#prompt textarea")).to_have_value("")
    third = page.context.new_page()  # a new tab: the session the browser opened last
    third.goto(page.url)
    expect(_session_name(third)).to_have_text(EXAMPLES[1], timeout=30_000)
    expect(third.locator("#prompt textarea")).to_have_value("")


def test_importing_a_file_that_is_not_an_export_says_so_in_the_page_s_own_words(page, tmp_path):
    """A photo picked for Import gave Gradio's raw "Error — Invalid file type: exif6.jpg. Only
    .zip allowed." while the status line went on saying what it said before (UX audit 5)."""
    from tests.support.engines import make_image

    _start_from_example(page)
    photo = tmp_path / "holiday.jpg"
    photo.write_bytes(make_image(64, 48, fmt="JPEG"))
    picker = page.locator("#history-tools input[type=file]")
    expect(picker).to_have_attribute("accept", re.compile(r"\.zip"))
    with page.expect_file_chooser() as chooser:
        page.locator("#import").click()
    chooser.value.set_files(str(photo))
    status = page.locator("#status")
    expect(status).to_contain_text("not a Kontext Studio session export", timeout=15_000)
    expect(page.locator("[data-testid=toast-body]", has_text="Invalid file type")).to_have_count(0)
    expect(_session_name(page)).to_have_text("Chelsea example")


def test_a_name_typed_as_rename_or_delete_opens_again_is_kept(page):
    """Opened before, "Rename or delete" opened again on another session showed the old name,
    and the server's fill of the new one, landing after what was typed at once, replaced it
    (UX audit 5). The page fills it as it opens; what is typed then stays, and is the name."""
    from tests.browser.test_studio_flow import EXAMPLES, _open_session

    toggle = page.locator("#manage-fold button[data-fold=manage]")
    box = page.locator("#session-name input")
    _start_from_example(page, 1)
    toggle.click()
    expect(box).to_have_value(EXAMPLES[1])
    toggle.click()  # folded again
    expect(toggle).to_have_attribute("aria-expanded", "false")
    _start_from_example(page, 2)
    expect(toggle).to_have_attribute("aria-expanded", "false")
    # Opened, and the name typed in the same moment (a reply takes longer than that on any
    # studio but a local one: typed in the page's own task, it is always before it).
    page.evaluate(
        """() => {
        document.querySelector('#manage-fold button[data-fold=manage]').click();
        const box = document.querySelector('#session-name input');
        box.focus();
        box.value = 'Typed at once';
        box.dispatchEvent(new InputEvent('input', {bubbles: true, inputType: 'insertText'}));
      }"""
    )
    expect(toggle).to_have_attribute("aria-expanded", "true")
    page.wait_for_timeout(1_500)  # the server's answer to the opening has come
    expect(box).to_have_value("Typed at once")
    page.locator("#rename").click()
    expect(_session_name(page)).to_have_text("Typed at once")
    expect(box).to_have_value("Typed at once")
    # Another session opened from the list: the open panel names that one (Rename renamed the
    # tab's session with the name of the one before).
    _open_session(page, EXAMPLES[1])
    expect(box).to_have_value(EXAMPLES[1])


def test_opening_rename_or_delete_keeps_the_tab_s_step_in_the_history_s_view(page):
    """The panel takes room from the history, which scrolls inside its own box: opening it
    hid the tab's step below that box (UX audit 5)."""
    page.set_viewport_size({"width": 1440, "height": 900})
    _start_from_example(page)
    for n in range(8):
        _edit(page, f"step {n}")
    history, current = page.locator("#history"), _current(page)
    page.locator("#manage-fold button[data-fold=manage]").click()
    expect(page.locator("#session-name")).to_be_visible()
    page.locator("#delete").click()  # (the confirmation takes more room still)
    expect(page.locator("#delete-yes")).to_be_visible()
    page.wait_for_function(
        """() => {
          const box = document.querySelector('#history').getBoundingClientRect();
          const tile = document.querySelector('#history button.tile[aria-current="step"]')
            .getBoundingClientRect();
          return tile.top >= box.top - 1 && tile.bottom <= box.bottom + 1;
        }""",
        timeout=5_000,
    )
    expect(current).to_be_visible()
    assert history.bounding_box() is not None


def test_long_session_names_are_read_whole_in_the_list_on_a_phone(browser, studio):
    """Two sessions read "Harbour poster v…" in the list on a phone: what told them apart, the
    end of their names, was cut off (UX audit 5). In the unfolded list a name wraps."""
    from tests.browser.conftest import open_page
    from tests.browser.test_editor import PHONE
    from tests.browser.test_studio_flow import EXAMPLES

    names = ["Harbour poster v2 final for the shop window", "Harbour poster v2 final (imported)"]
    with open_page(browser, studio.url, **PHONE) as page:
        for n, name in enumerate(names):
            _start_from_example(page, n + 1)
            page.get_by_role("button", name="Rename or delete this session").click()
            box = page.locator("#session-name input")
            # (The panel is filled in by the server: typed before that, the name was replaced.)
            expect(box).to_have_value(EXAMPLES[n + 1], timeout=15_000)
            box.fill(name)
            page.locator("#rename").click()
            expect(_session_name(page)).to_have_text(name, timeout=15_000)
        rows = _listed(page)
        for name in names:
            shown = rows.locator(".name", has_text=name)
            expect(shown).to_be_visible()
            cut = shown.evaluate("(el) => el.scrollWidth > el.clientWidth + 1")
            assert not cut, name
