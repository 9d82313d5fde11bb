"""Words on screen: stored text (instructions, names, errors) always shows as text."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

import pytest
from markdown_it import MarkdownIt

from studio.history import ImageRef, Session, SessionSummary, new_id
from studio.params import EditParams
from studio.ui import present
from tests.support.sessions import with_step

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
# CommonMark with raw HTML on, as gr.Markdown renders it.
MARKDOWN = MarkdownIt("commonmark", {"html": True})
ATTACKS = [
    '<a href="http://127.0.0.2:9/x">claim your prize</a>',
    '<img src="http://127.0.0.2:9/pixel.png" onerror="alert(1)">',
    "[click](http://127.0.0.2:9/x) ![pixel](http://127.0.0.2:9/p.png)",
    "<http://127.0.0.2:9/auto> and <script>alert(1)</script>",
    "**bold** _it_ `code` # heading\n\n    indented code\n- list",
    "&lt;b&gt; is &amp; stays literal; a \\* backslash",
    "[ref]: http://127.0.0.2:9/ref\n\n[ref]",
]


def _visible_text(rendered: str) -> str:
    """What a reader sees: tags dropped, character references decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", rendered)).strip()


@pytest.mark.parametrize("attack", ATTACKS)
def test_as_text_renders_as_exactly_the_characters_it_was_given(attack):
    rendered = MARKDOWN.render(present.as_text(attack))
    tags = re.findall(r"<\s*(\w+)", rendered)
    assert tags == ["p"]  # one paragraph, no link, image, code, heading, list or script
    assert _visible_text(rendered) == " ".join(attack.split())


@pytest.mark.parametrize("attack", ATTACKS)
def test_as_text_is_inert_as_html_too(attack):
    """Toasts render HTML: the same escaping leaves no tag there either."""
    escaped = present.as_text(attack)
    assert "<" not in escaped
    assert html.unescape(escaped) == " ".join(attack.split())


def test_bare_web_addresses_are_broken_up_so_no_markdown_links_them():
    text = present.as_text("see https://127.0.0.2:9/x, WWW.example.test and a@b.test")
    assert "://" not in text
    assert "www." not in text.lower()
    assert "@" not in text
    assert html.unescape(text) == "see https://127.0.0.2:9/x, WWW.example.test and a@b.test"


def test_a_plain_sentence_is_unchanged():
    sentence = "The edit failed on RunAPI: Content moderated (code 3), try again!"
    assert present.as_text(sentence) == sentence


def _failed_session(error: str, prompt: str = "make it blue") -> Session:
    origin = ImageRef(sha256="a" * 64, format="png", width=64, height=64)
    session = Session.start(new_id(), "s", origin, T0)
    session = session.add_step(new_id(), EditParams(prompt=prompt), T0)
    return with_step(session, session.current.fail(error, T0, cost_cents=0))


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_failed_steps_reason_shows_as_text_in_the_status_and_the_comparison(attack):
    step = _failed_session(attack).current
    for line in (present.step_status(step), present.compare_text(step, None)):
        rendered = MARKDOWN.render(line)
        assert not re.search(r"<\s*(a|img|script|code|h\d|li)\b", rendered), rendered
        assert " ".join(attack.split()) in _visible_text(rendered)


def test_a_refusal_and_an_imported_name_show_as_text():
    attack = ATTACKS[0]
    for line in (present.warning(attack), present.imported(attack)):
        rendered = MARKDOWN.render(line)
        assert "<a" not in rendered
        assert attack in _visible_text(rendered)


def test_our_own_markdown_still_renders():
    origin = ImageRef(sha256="a" * 64, format="png", width=64, height=64)
    session = Session.start(new_id(), "s", origin, T0)
    assert "<strong>" in MARKDOWN.render(present.cost_line(session))
    assert present.balance_line(1234) == "· balance $12.34"
    assert present.balance_line(None) == ""


def test_a_damaged_session_is_labelled_in_the_list():
    summary = SessionSummary(
        session_id="s1",
        name="Trip",
        created_at=T0,
        updated_at=T0,
        step_count=1,
        made_count=1,
        pending_count=0,
        cost_cents=0,
        cover_sha256=None,
        damaged=True,
    )
    ((label, value),) = present.session_choices([summary])
    assert "damaged" in label
    assert "Trip" in label
    assert value == "s1"


def test_a_step_picker_label_starts_with_the_number_and_the_instruction():
    image = ImageRef(sha256="a" * 64, format="png", width=10, height=10)
    session = Session.start(new_id(), "s", image, T0)
    session = session.add_step(new_id(), EditParams(prompt="make it  black and white"), T0)
    origin, edit = session.origin, session.current
    assert present.step_choice(origin, 0) == ("Original", origin.step_id)
    assert present.step_choice(edit, 3) == ("3 · make it black and white · pro", edit.step_id)


def test_a_step_that_waits_says_why():
    """After a restart, a step waiting for its visitor's key said only "Running…"."""
    from dataclasses import replace

    from studio.engine import WAITS_FOR_EARLIER

    origin = ImageRef(sha256="a" * 64, format="png", width=64, height=64)
    session = Session.start(new_id(), "s", origin, T0)
    queued = session.add_step(new_id(), EditParams(prompt="snow"), T0).current
    assert present.step_status(queued) == "◷ Queued…"
    waiting = present.step_status(replace(queued, error=WAITS_FOR_EARLIER))
    assert waiting == f"◷ {WAITS_FOR_EARLIER}"


def test_a_step_the_runner_has_taken_says_it_is_starting_as_its_tile_says_running():
    """Launched and not waiting for the step before it, it is drawn as running in the tree;
    the status line beside it said "◷ Queued… 0.0 s"."""
    from studio.history import StepUpdate

    origin = ImageRef(sha256="a" * 64, format="png", width=64, height=64)
    session = Session.start(new_id(), "s", origin, T0)
    taken = session.add_step(new_id(), EditParams(prompt="snow"), T0).current
    assert not taken.is_waiting
    update = StepUpdate(taken, "queued", 0.2)
    assert present.step_status(taken, update) == "◷ Starting… 0.2 s"
    from studio.ui.tree import started_steps

    assert started_steps({taken.step_id: update}) == {taken.step_id}


def test_a_step_queued_behind_another_says_what_that_one_is_doing():
    """Through a RunAPI outage the tab's step, typed ahead, said "◷ Queued… 42.8 s" while the
    step it waited for was told RunAPI was not answering: the README's sentence never showed
    (UX audit 5)."""
    from studio.history import StepUpdate
    from studio.runner import NOT_ANSWERING

    origin = ImageRef(sha256="a" * 64, format="png", width=64, height=64)
    session = Session.start(new_id(), "s", origin, T0)
    session = session.add_step(new_id(), EditParams(prompt="one"), T0)
    first = session.current
    session = session.add_step(new_id(), EditParams(prompt="two"), T0)
    second = session.current
    third = session.add_step(new_id(), EditParams(prompt="three"), T0).current
    sent = StepUpdate(first, "submitted", 42.8, NOT_ANSWERING)
    waits = [StepUpdate(s, "queued", 40.0) for s in (second, third)]
    running = {u.step.step_id: u for u in (sent, *waits)}
    said = present.step_status(third, waits[1], running=running)
    assert said == f"◷ Queued behind the edit before it: Sent to RunAPI… 42.8 s · {NOT_ANSWERING}"
    # With nothing under way before it (or not told what runs), it is only queued.
    assert present.step_status(third, waits[1]) == "◷ Queued… 40.0 s"
    del running[first.step_id]
    assert present.step_status(third, waits[1], running=running) == "◷ Queued… 40.0 s"


def test_a_hosted_visitor_on_the_server_s_key_is_told_of_a_daily_share_not_a_bill():
    """It said "Using the server's RunAPI key: every edit is billed to it" (jargon, and it
    sounds as if the visitor pays), and named no budget until one refused them (UX audit 5)."""
    said = present.banner(simulator=False, server_key=True, user_key=False, hosted=True)
    assert "share of its RunAPI budget for each visitor a day" in said
    assert "billed" not in said
    own = present.banner(simulator=False, server_key=True, user_key=False)
    assert own == "Using the server's RunAPI key: every edit is billed to it."
    assert present.share_line((15, 20)) == "· today's share: $0.15 of $0.20 left"
    assert present.share_line(None) == ""


def test_match_source_names_runapi_s_ratio_and_says_when_it_is_only_the_nearest():
    from studio.ui.present import match_ratio

    assert match_ratio(1200, 900) == "4:3"
    assert match_ratio(1920, 1080) == "16:9"
    assert match_ratio(451, 300) == "≈ 4:3"  # a 3:2 photo: RunAPI has no 3:2
    assert match_ratio(1000, 1010) == "1:1"


def test_the_simulators_banner_says_its_costs_are_prices_never_charged():
    """It said "simple, free image changes" while the header counted each edit at RunAPI's
    price ("Session cost $0.85"): the two read as a contradiction (UX audit 5)."""
    said = present.banner(simulator=True, server_key=False, user_key=False)
    assert "never charged" in said
    assert "RunAPI's prices" in said
    assert "free" not in said
