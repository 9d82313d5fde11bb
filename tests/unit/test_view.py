"""The page as plain values: what `render_page` shows for a session, without a browser."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from studio.history import ImageRef, Session, StepUpdate
from studio.params import EditParams
from studio.ui.tree import step_names
from studio.ui.view import PageData, Tiles, render_page
from tests.support.sessions import with_step
from tests.support.tree import read_tree

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
PHOTO = ImageRef(sha256="a" * 64, format="jpeg", width=1200, height=900)
TILES = Tiles(running="running.png", failed="failed.png")


def image(n: int) -> ImageRef:
    return ImageRef(sha256=f"{n:064x}", format="png", width=800, height=1200)


def start(origin: ImageRef | None = PHOTO) -> Session:
    return Session.start("s1", "Holiday", origin, T0, origin_step_id="origin")


def edit(session: Session, step_id: str, prompt: str, *, model: str = "pro") -> Session:
    session = session.add_step(step_id, EditParams(prompt=prompt, model=model), T0)  # type: ignore[arg-type]
    step = session.current.start(f"task-{step_id}", T0 + timedelta(seconds=1))
    n = len(session.steps)
    return with_step(session, step.complete(image(n), T0 + timedelta(seconds=7), cost_cents=5))


def data(session: Session | None, **kw) -> PageData:
    refs = [s.result for s in session.steps.values() if s.result] if session else []
    return PageData(
        session=session,
        summaries=kw.pop("summaries", []),
        running=kw.pop("running", {}),
        images={r.sha256: f"/img/{r.sha256[-2:]}.{r.format}" for r in refs},
        thumbs={
            **{r.sha256: f"/thumb/{r.sha256[-2:]}.jpg" for r in refs},
            **kw.pop("thumbs", {}),
        },
        **kw,
    )


def test_with_no_session_the_page_invites_an_image_or_an_instruction():
    page = render_page(data(None), TILES)
    assert page.session_id is None
    assert "Upload, paste or link an image" in page.status
    assert (page.result, page.before, page.download) == (None, None, None)
    assert read_tree(page.history).line == []
    assert not page.can_undo
    assert not page.running


def test_a_session_that_cannot_be_read_is_named_damaged_and_the_rest_still_renders():
    page = render_page(data(None, damaged="The session is damaged."), TILES)
    assert page.status == "⚠ The session is damaged."
    assert read_tree(page.history).line == []


def test_a_chain_shows_the_latest_result_on_the_canvas_with_its_source_behind_it():
    session = edit(edit(start(), "a", "make it blue"), "b", "add snow")
    page = render_page(data(session), TILES)
    assert page.session_id == "s1"
    assert page.result == page.download == "/img/03.png"
    assert page.before == "/img/02.png"  # held, the canvas shows the step's source
    tree = read_tree(page.history)
    assert tree.line == [
        "Step 0: Original",
        "Step 1: make it blue (pro · 6.0 s · $0.05)",
        "Step 2: add snow (pro · 6.0 s · $0.05)",
    ]
    assert tree.current == 2
    assert page.status == "✓ Done in 6.0 s · pro · $0.05"
    assert page.cost == "Session cost **$0.10**"
    assert page.can_undo
    assert not page.can_redo
    assert not page.running
    # The result is portrait (800x1200, 2:3): "match source" names the ratio it would send,
    # RunAPI's nearest (it has no 2:3).
    assert page.aspect_choices[0] == ("Match source (≈ 3:4)", "match")


def test_the_origin_alone_shows_on_the_canvas_with_nothing_behind_it():
    page = render_page(data(start()), TILES)
    assert page.result == "/img/aa.jpeg"
    assert page.before is None
    assert not page.retry_visible
    assert page.status == "Ready: type an instruction and press Enter."
    assert page.aspect_choices[0] == ("Match source (4:3)", "match")


def test_a_failed_current_step_offers_retry_and_keeps_showing_the_last_image():
    session = edit(start(), "a", "make it blue").add_step("b", EditParams(prompt="x"), T0)
    session = with_step(session, session.current.fail("Content moderated", T0, cost_cents=0))
    page = render_page(data(session), TILES)
    assert page.retry_visible
    assert page.status == "✗ Failed: Content moderated"
    assert page.result == "/img/02.png"
    assert read_tree(page.history).line[-1] == "Step 2: x (pro · failed)"


def test_a_running_step_shows_its_phase_and_the_queued_one_after_it_can_be_cancelled():
    session = edit(start(), "a", "make it blue").add_step("b", EditParams(prompt="snow"), T0)
    session = session.add_step("c", EditParams(prompt="night"), T0)
    update = StepUpdate(session.steps["b"], "uploading", 3.04)
    page = render_page(data(session, running={"b": update}), TILES, tab_step="b")
    assert page.status == "◷ Uploading the source… 3.0 s"
    assert page.running
    tree = read_tree(page.history)
    # Its record says queued until RunAPI gives it a task; started, it reads running, and its
    # ✕ (which answered that it had started) is gone. The one after it waits: ✕.
    assert tree.line[-2:] == ["Step 2: snow (pro · running)", "Step 3: night (pro · queued)"]
    assert tree.cancels == ["c"]
    # Launched, not yet uploading (an Enter's reply drawn before the runner began: a loaded
    # machine), it is running already: it can no longer be cancelled, and nothing in the
    # store changes to draw it again until its upload is done.
    assert not session.steps["b"].is_waiting
    assert session.steps["c"].is_waiting
    taken = {"b": StepUpdate(session.steps["b"], "queued", 0.1)}
    taken["c"] = StepUpdate(session.steps["c"], "queued", 0.1)
    tree = read_tree(render_page(data(session, running=taken), TILES).history)
    assert tree.line[-2:] == ["Step 2: snow (pro · running)", "Step 3: night (pro · queued)"]
    assert tree.cancels == ["c"]  # (it waits for the one before it)


def test_other_branches_hang_where_they_fork_and_the_path_is_numbered_without_gaps():
    session = edit(edit(start(), "a", "make it blue"), "b", "add snow")
    session = edit(session.make_current("a"), "c", "add rain", model="max")
    tree = read_tree(render_page(data(session), TILES).history)
    assert tree.line[-1] == "Step 2b: add rain (max · 6.0 s · $0.05)"  # its letter at the fork
    assert tree.branches == ["2a add snow pro · 1 step"]
    # Named in full, as the path's tiles are (UX audit 11: its caption was all it said).
    assert tree.branch_labels == ["Branch 2a: add snow (pro · 1 step)"]
    assert tree.current == 2  # the tab's step is the highlighted one
    # A branch keeps its letter when the tab moves: the order the fork's steps were made in
    # (named by their place among the others, "2b" became another step after a move: UX
    # audit 2).
    tree = read_tree(render_page(data(session.make_current("b")), TILES).history)
    assert tree.line[-1].startswith("Step 2a: add snow")
    assert tree.branches == ["2b add rain max · 1 step"]


def test_keeping_the_second_of_three_results_leaves_no_gap_in_the_letters():
    """The kept one took "1b" unseen, and the others read "1a" and "1c" with no "1b" anywhere
    (UX audit 4): the path's step where it forks shows its letter too, as the pickers do."""
    session = start()
    for step_id, prompt in (("a", "snow 1"), ("b", "snow 2"), ("c", "snow 3")):
        session = edit(session.make_current("origin"), step_id, prompt)
    kept = session.make_current("b")
    page = render_page(data(kept), TILES)
    tree = read_tree(page.history)
    assert tree.line == ["Step 0: Original", "Step 1b: snow 2 (pro · 6.0 s · $0.05)"]
    assert tree.branches == ["1a snow 1 pro · 1 step", "1c snow 3 pro · 1 step"]
    assert "1b · snow 2 · pro" in [label for label, _ in page.pair_a.choices]
    # A failed attempt beside a step is no fork: the step keeps its plain number.
    alone = edit(edit(start(), "a", "make it blue"), "b", "add snow")
    alone = alone.make_current("a").add_step("f", EditParams(prompt="x"), T0)
    alone = with_step(alone, alone.current.fail("Content moderated", T0, cost_cents=0))
    line = read_tree(render_page(data(alone.make_current("b")), TILES).history).line
    assert line[-1].startswith("Step 2: add snow")


def test_a_branch_that_forks_again_shows_each_of_its_ends_one_click_away():
    """Only the newest end of a branch showed; another end inside it took a click into the
    branch first, and nothing said it was there (UX audit 1)."""
    import re

    session = edit(edit(start(), "a", "make it blue"), "b", "add snow")
    session = edit(edit(session.make_current("a"), "x", "add fog"), "y", "add sun")
    session = edit(session.make_current("x"), "z", "add moon").make_current("b")
    html = render_page(data(session), TILES).history
    tree = read_tree(html)
    assert tree.line[-1].startswith("Step 2a: add snow")
    (chip, other) = tree.branches
    assert chip == "2b add fog pro · 3 steps"  # (the second step made after step 1)
    # The chip shows the step it names (it went to the branch's end: UX audit 3), whose
    # newest end its Redo leads to; the other end's chip goes to that end.
    from studio.ui.tree import branch_end, drawn_steps

    newest = branch_end(session, "x")
    (elsewhere,) = {"y", "z"} - {newest}
    prompts = {"y": "add sun", "z": "add moon"}
    # Named as the step pickers name it: "2b.2" named no step (audit 17).
    name = {"y": "3a", "z": "3b"}[elsewhere]
    assert other == f"{name} → {prompts[elsewhere]}"
    assert step_names(session)[elsewhere] == name
    newest_prompt = prompts[newest]
    assert tree.branch_labels == [
        f"Branch 2b: add fog → {newest_prompt} (pro · 3 steps)",
        f"Step {name}, on branch 2b: {prompts[elsewhere]}",
    ]
    assert re.findall(r'data-act="branch" data-step="([^"]+)"', html) == ["x"]
    ends = re.findall(r'<button class="branch end" data-act="go" data-step="([^"]+)"', html)
    assert ends == [elsewhere]
    # The pictures of both are looked for (the other end's chip had an empty thumbnail: UX
    # audit 2).
    assert {"x", elsewhere} <= {s.step_id for s in drawn_steps(session)}


def test_an_end_deep_in_a_branch_is_named_by_its_step_and_the_fork_it_is_past():
    """A branch's other end at a depth the path also has reads "4 (3a)", as in the step
    pickers, not a number of the branch's own ("2b.2")."""
    session = edit(edit(start(), "a", "make it blue"), "b", "add snow")
    session = edit(edit(session, "c", "add a moon"), "d", "add stars")
    session = edit(edit(session.make_current("a"), "x", "add fog"), "y", "add sun")
    session = edit(session, "w", "add birds")
    session = edit(session.make_current("x"), "z", "add rain")
    session = edit(session, "v", "add a boat").make_current("d")
    tree = read_tree(render_page(data(session), TILES).history)
    names = step_names(session)
    assert (names["w"], names["v"], names["d"]) == ("4 (3a)", "4 (3b)", "4 (2a)")
    from studio.ui.tree import branch_end

    (elsewhere,) = {"w", "v"} - {branch_end(session, "x")}
    prompt = {"w": "add birds", "v": "add a boat"}[elsewhere]
    (chip, other) = tree.branches
    assert chip.startswith("2b add fog")
    assert other == f"{names[elsewhere]} → {prompt}"
    assert tree.branch_labels[1] == f"Step {names[elsewhere]}, on branch 2b: {prompt}"


def test_every_branch_at_a_fork_is_one_click_away_past_the_first_three_too():
    """Past three branches at a fork, "+2 more" was a count with no way to them: paid results
    the history could not open (UX audit 2). They are listed, folded under it."""
    import re

    session = edit(start(), "a", "make it blue")
    for n in range(5):
        session = edit(session.make_current("origin"), f"r{n}", f"try {n}")
    html = render_page(data(session.make_current("a")), TILES).history
    ends = re.findall(r'<button class="branch" data-act="branch" data-step="([^"]+)"', html)
    assert sorted(ends) == [f"r{n}" for n in range(5)]
    assert "<summary>+2 more</summary>" in html
    from studio.ui.tree import drawn_steps

    assert {f"r{n}" for n in range(5)} <= {s.step_id for s in drawn_steps(session)}


def test_after_undo_the_step_ahead_is_on_the_redo_line_not_another_branch():
    session = edit(edit(start(), "a", "make it blue"), "b", "add snow").undo()
    page = render_page(data(session), TILES)
    tree = read_tree(page.history)
    assert tree.line[-1] == "Step 2: add snow (pro · 6.0 s · $0.05)"
    assert (tree.current, tree.ahead, tree.branches) == (1, [2], [])
    assert page.can_redo


def test_a_tab_on_an_earlier_step_sees_newer_steps_ahead_without_moving_and_a_notice():
    # Another tab made "b" current; this tab still shows "a".
    session = edit(edit(start(), "a", "make it blue"), "b", "add snow")
    session = with_step(session, replace(session.steps["b"], created_at=T0 + timedelta(seconds=9)))
    page = render_page(data(session), TILES, tab_step="a")
    assert page.tab_step == "a"
    tree = read_tree(page.history)
    assert (tree.current, tree.ahead) == (1, [2])
    assert page.notice == "✦ 1 new step from elsewhere: show"
    assert page.notice_step == "b"
    # Seen from the newest step itself, there is nothing new.
    assert render_page(data(session), TILES, tab_step="b").notice is None


def test_tab_stops_once_in_the_history_at_the_tab_s_step_wherever_it_is():
    """Every tile was a stop of Tab: a ten-step session's current step was 24 presses away."""
    session = edit(edit(edit(start(), "a", "make it blue"), "b", "add snow"), "c", "add a hat")
    for tab_step, at in (("c", 3), ("a", 1), ("origin", 0)):
        tree = read_tree(render_page(data(session), TILES, tab_step=tab_step).history)
        assert (tree.current, tree.tab_stops) == (at, [at])


def test_the_notice_counts_only_the_steps_made_on_the_way_to_the_newest():
    """A step this tab made and undid is not news from elsewhere (UX audit 4: "2 new steps"
    for the one another tab added); steps made elsewhere in a row are counted."""
    later = lambda session, step, s: with_step(  # noqa: E731
        session, replace(session.steps[step], created_at=T0 + timedelta(seconds=s))
    )
    undone = later(edit(edit(start(), "a", "make it blue"), "c", "add snow"), "c", 5).undo()
    elsewhere = later(edit(undone, "d", "add a hat"), "d", 9)
    assert render_page(data(elsewhere), TILES, tab_step="a").notice == (
        "✦ 1 new step from elsewhere: show"
    )
    two = later(edit(elsewhere, "e", "make it night"), "e", 11)
    assert render_page(data(two), TILES, tab_step="a").notice == (
        "✦ 2 new steps from elsewhere: show"
    )
    # Another tab went on from the step this one undid: that step is this tab's own, on its
    # redo line, and not news (it said "2 new steps" for one: UX audit 5).
    on_it = later(edit(undone.make_current("c"), "f", "add a scarf"), "f", 13)
    page = render_page(data(on_it), TILES, tab_step="a", ahead=["c"])
    assert page.notice == "✦ 1 new step from elsewhere: show"


def test_failed_attempts_are_folded_into_a_count_where_they_were_made():
    session = edit(start(), "a", "make it blue").add_step("b", EditParams(prompt="snow"), T0)
    session = with_step(session, session.current.fail("Content moderated", T0, cost_cents=0))
    session = session.retry("b", "c", T0)
    step = session.current.start("task-c", T0)
    session = with_step(session, step.complete(image(9), T0 + timedelta(seconds=5), cost_cents=5))
    tree = read_tree(render_page(data(session), TILES).history)
    assert tree.branches == []
    assert tree.failed == ["⚠ 1 failed attempt"]
    assert tree.line[-1] == "Step 2: snow (pro · 5.0 s · $0.05)"


def test_a_long_session_draws_a_bounded_window_around_the_tab_s_step():
    session = start()
    for n in range(300):
        session = edit(session, f"s{n}", f"step {n}")
    tree = read_tree(render_page(data(session), TILES, tab_step="s150").history)
    assert len(tree.line) <= 1 + 30 + 1 + 10
    assert tree.line[0] == "Step 0: Original"
    assert tree.line[tree.current or 0].startswith("Step 151: step 150")


def test_user_text_in_the_tree_is_escaped():
    page = render_page(data(edit(start(), "a", '<img src=x onerror="alert(1)">')), TILES)
    assert "<img src=x" not in page.history
    assert read_tree(page.history).line[-1].startswith('Step 1: <img src=x onerror="alert(1)">')


def test_a_generation_offers_the_generation_safety_limit_and_no_stray_slider_choice():
    page = render_page(data(start(origin=None)), TILES)
    assert page.safety_max == 6
    assert page.pair_a.value is None  # nothing finished to compare yet
    edited = render_page(data(edit(start(), "a", "make it blue")), TILES)
    assert edited.safety_max == 2


def test_a_download_is_named_after_the_session_and_the_step():
    page = render_page(data(edit(start(), "a", "make it blue")), TILES)
    assert page.download_name == "holiday-step-1.png"
    assert render_page(data(start()), TILES).download_name == "holiday-original.jpg"


class Summary:
    damaged = False
    step_count = made_count = 2
    pending_count = 0
    cover_sha256 = None

    def __init__(self, session_id: str, name: str, minute: int = 0) -> None:
        self.session_id, self.name = session_id, name
        self.created_at = self.updated_at = T0 + timedelta(minutes=minute)


def test_the_session_list_marks_the_open_session():
    summaries = [Summary("s2", "Newer"), Summary("s1", "Holiday")]
    page = render_page(data(start(), summaries=summaries), TILES)
    assert page.sessions.choices == [("Newer", "s2"), ("Holiday", "s1")]
    assert page.sessions.value == "s1"


def test_sessions_sharing_a_name_are_numbered_in_the_order_they_were_made():
    summaries = [Summary("s3", "Cat", 3), Summary("s1", "Cat", 1), Summary("s2", "Dog", 2)]
    page = render_page(data(start(), summaries=summaries), TILES)
    assert page.sessions.choices == [("Cat (2)", "s3"), ("Cat", "s1"), ("Dog", "s2")]


def test_the_session_list_shows_a_thumbnail_the_steps_and_the_day_of_each_session():
    holiday, cat = Summary("s1", "Holiday <b>"), Summary("s2", "Cat")
    cat.cover_sha256, cat.step_count, cat.made_count = "c" * 64, 1, 1
    now = T0 + timedelta(days=1, hours=1)
    page = render_page(
        data(start(), summaries=[cat, holiday], thumbs={"c" * 64: "/thumbs/c.jpg"}),
        TILES,
        now=now,
    )
    listed = page.sessions_html
    assert 'data-act="open" data-step="s2"' in listed
    assert '<img class="cover" src="gradio_api/file=/thumbs/c.jpg"' in listed
    # (The day in UTC, with the moment for the page to write in the visitor's time.)
    assert '1 step · <time datetime="2025-01-02T03:04:05+00:00">yesterday</time>' in listed
    assert "2 steps · <time" in listed
    fresh = Summary("s3", "Fresh")
    fresh.step_count = fresh.made_count = 0
    only = render_page(data(start(), summaries=[fresh]), TILES, now=now).sessions_html
    assert "no edits yet · <time" in only  # ("0 steps" read as an empty session)
    # What is made is counted, and what is to come apart ("4 steps" with one done: UX audit 4).
    busy = Summary("s4", "Busy")
    busy.step_count, busy.made_count, busy.pending_count = 4, 1, 3
    waiting = Summary("s5", "Waiting")
    waiting.step_count, waiting.made_count, waiting.pending_count = 1, 0, 1
    both = render_page(data(start(), summaries=[busy, waiting]), TILES, now=now).sessions_html
    assert "1 step · 3 to come · <time" in both
    assert "1 to come · <time" in both
    assert "4 steps" not in both
    assert "Holiday &lt;b&gt;" in listed  # a name is text, never markup
    assert "<b>" not in listed
    # The open session heads the list, and is marked in it.
    summary = listed[listed.index("<summary") : listed.index("</summary>")]
    assert "Holiday &lt;b&gt;" in summary
    # The open session's own name, for "Rename or delete" to show as it opens.
    assert 'data-session="s1" data-name="Holiday &lt;b&gt;"' in listed
    assert 'data-step="s1" aria-current="true"' in listed


def test_a_long_session_list_draws_the_newest_fifty_and_the_open_one_then_all_when_asked():
    # 120 sessions, newest first; the open one ("s1", the oldest) is far down the list.
    summaries = [Summary(f"s{n}", f"Session {n}", n) for n in range(120, 0, -1)]
    page = render_page(data(start(), summaries=summaries), TILES)
    listed = page.sessions_html
    assert listed.count('data-act="open"') == 51
    assert 'data-step="s120"' in listed
    assert 'data-step="s71"' in listed
    assert 'data-step="s70"' not in listed
    assert 'data-step="s1" aria-current="true"' in listed  # the open one, though old
    assert 'data-act="every">Show all 120 sessions (69 older)</button>' in listed
    assert listed.startswith('<details class="sessions" data-session="s1" data-name=')  # folded

    every = render_page(
        data(start(), summaries=summaries), TILES, every_session=True, sessions_open=True
    ).sessions_html
    assert every.count('data-act="open"') == 120
    assert 'data-act="every"' not in every
    assert every.startswith('<details class="sessions" open data-session="s1"')


def test_the_thumbnails_looked_for_are_those_of_the_steps_the_tree_draws():
    import re

    from studio.ui.tree import drawn_steps, history_html

    session = start()
    for n in range(300):
        session = edit(session, f"s{n}", f"step {n}")
    session = edit(session.make_current("s100"), "fork", "another way")  # a branch at 101
    seen = session.seen_from("s120")
    drawn = {s.step_id for s in drawn_steps(seen)}
    assert len(drawn) < 50  # of 302
    html = history_html(seen, {s.result.sha256: f"/t/{s.step_id}" for s in seen.steps.values()})
    pictured = set(re.findall(r'src="gradio_api/file=/t/([^"]+)"', html))
    assert pictured == drawn
    assert "fork" in drawn  # the branch's picture where it forks


def test_a_finished_step_says_how_many_instructions_typed_after_it_still_wait():
    # Typed ahead: two instructions queued after "make it blue"; the tab shows it done.
    done = edit(start(), "a", "make it blue")
    session = done.add_step("b", EditParams(prompt="add snow"), T0)
    session = session.add_step("c", EditParams(prompt="add a kite"), T0)
    page = render_page(data(session), TILES, tab_step="a")
    assert page.status == "✓ Done in 6.0 s · pro · $0.05 · 2 more queued"
    # The first of them sent: it runs, the other waits (candidates all run at once: "2 running").
    running = with_step(session, session.steps["b"].start("task-b", T0))
    page = render_page(data(running), TILES, tab_step="a")
    assert page.status == "✓ Done in 6.0 s · pro · $0.05 · 1 running, 1 more queued"
    # Once they have finished, the line is the step's own again.
    finished = edit(edit(done, "b", "add snow"), "c", "add a kite")
    page = render_page(data(finished), TILES, tab_step="a")
    assert page.status == "✓ Done in 6.0 s · pro · $0.05"


def test_a_branch_still_running_says_so_in_a_mark_that_fits_its_small_picture():
    from studio.ui.tree import history_html

    session = edit(start(), "a", "make it blue")
    session = session.make_current("origin").add_step("b", EditParams(prompt="add snow"), T0)
    session = with_step(session, session.steps["b"].start("task-b", T0))
    html = history_html(session.seen_from("a"), {})
    assert 'class="mini placeholder" title="running" aria-label="running">◷</span>' in html
    assert ">running</span>" not in html  # the word cut to "runnin" in 28 pixels


def test_an_instruction_taken_back_rides_on_the_tree_as_text_once_asked():
    from html.parser import HTMLParser

    session = edit(start(), "e1", "add snow")
    typed = 'make it "night" & <b>dark</b>'
    marks: dict[str, str | None] = {}

    class Nav(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "nav":
                marks.update(attrs)

    at = "2026-12-07T03:00:00+00:00"
    Nav().feed(render_page(data(session), TILES, withdrawn=("q1", typed, at)).history)
    assert (marks["data-withdrawn"], marks["data-withdrawn-text"]) == ("q1", typed)
    assert marks["data-withdrawn-at"] == at  # (the page puts several back in this order)
    marks.clear()
    Nav().feed(render_page(data(session), TILES).history)
    assert "data-withdrawn" not in marks


def test_steps_of_one_depth_on_two_branches_say_which_branch_in_the_pickers():
    """Past a fork, the steps of the two branches at one depth read alike: two "4 · …" and two
    "6 · …" (audit 13). Each says the branch it is on."""
    session = edit(edit(start(), "a", "make it blue"), "b", "add snow")
    session = edit(session, "c", "add a moon")
    session = edit(session.make_current("a"), "d", "add rain")
    session = edit(session, "e", "add a cat")
    names = step_names(session)
    assert [names[s] for s in ("a", "b", "c", "d", "e")] == ["1", "2a", "3 (2a)", "2b", "3 (2b)"]
    assert len(set(names.values())) == len(names)


def test_the_step_pickers_name_steps_as_the_tree_does_so_no_two_read_alike():
    """They named two steps "2 · add snow · pro" where the tree showed "2" and "2a", and a step
    tried again twice showed as two identical entries (UX audit 3)."""
    session = edit(edit(start(), "a", "make it blue"), "b", "add snow")
    session = edit(session.make_current("a"), "c", "add snow")
    page = render_page(data(session), TILES)
    labels = [label for label, _ in page.pair_a.choices]
    assert labels == [
        "Original",
        "1 · make it blue · pro",
        "2a · add snow · pro",
        "2b · add snow · pro",
    ]
