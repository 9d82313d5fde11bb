"""What a hosted studio keeps of a tab (studio/ui/tabstate.py, studio/ui/lean.py): no deep link
writes a tab's values to disk or hands them to another visitor, and the records Gradio keeps
for tabs are bounded and hold none of the values events sent. Raw HTTP on loopback, as a
client of Gradio's queue would speak it."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio.utils import get_upload_folder

from studio.ui.handlers import TAB_FORGOTTEN
from studio.ui.tabstate import TABS_PER_VISITOR
from tests.browser.conftest import Studio, running_studio

pytestmark = pytest.mark.slow
KEY = "sk-visitor-pasted-0001"


@pytest.fixture(scope="module")
def hosted(_simulator_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    home = tmp_path_factory.mktemp("home")
    with running_studio(_simulator_server, home, hosted=True) as studio:
        yield studio


class _Tab:
    """One browser tab's worth of Gradio queue calls: a visitor (a cookie, or none) and a hash."""

    def __init__(self, url: str, *, cookie: bool = True) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        self.hash = secrets.token_hex(6)
        if cookie:
            token = self.http.get("/").cookies["kontext_visitor"]
            self.http.cookies.clear()
            self.http.headers["cookie"] = f"kontext_visitor={token}"
        config = self.http.get("/config").json()
        self.fns = {d.get("api_name"): d["id"] for d in config["dependencies"]}

    def run(self, api_name: str, data: list[Any], *, fresh: bool = False, event: Any = None) -> str:
        """Send one event and read its answers to the end, as the page does: what it answered.
        `event`: what the page's click sends with it (`gr.EventData`)."""
        tab = secrets.token_hex(6) if fresh else self.hash
        body = {"data": data, "fn_index": self.fns[api_name], "session_hash": tab}
        if event is not None:
            body["event_data"] = event
        assert self.http.post("/gradio_api/queue/join", json=body).status_code == 200
        params = {"session_hash": tab}
        answered = ""
        with self.http.stream("GET", "/gradio_api/queue/data", params=params) as answers:
            for line in answers.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message["msg"] == "process_completed":
                    answered = json.dumps(message, ensure_ascii=False)
                if message["msg"] == "close_stream":
                    break
        return answered


def _deep_links() -> Path:
    return Path(get_upload_folder()) / "deep_links"


def _records(studio: Studio) -> dict[str, Any]:
    return dict(studio.demo.server_app.state_holder.session_data)


def test_a_tabs_pasted_key_never_reaches_disk_or_another_visitor(hosted):
    alice = _Tab(hosted.url)
    alice.run("on_key", [KEY, False, ""])
    before = set(_deep_links().rglob("*")) if _deep_links().exists() else set()
    answer = alice.http.get("/gradio_api/deep_link", params={"session_hash": alice.hash})
    assert answer.status_code == 404
    after = set(_deep_links().rglob("*")) if _deep_links().exists() else set()
    assert after == before  # nothing written
    # A snapshot another Gradio app (or an older studio) left there reaches nobody.
    left = _deep_links() / "AbCdEfGhIjK"
    left.mkdir(parents=True, exist_ok=True)
    (left / "state.json").write_text(json.dumps([{"id": 1, "props": {"value": KEY}}]))
    bob = _Tab(hosted.url)
    for path in (f"/gradio_api/file={left / 'state.json'}", f"/gradio_api/file/{left}/state.json"):
        assert bob.http.get(path).status_code == 404
    for path in ("/", "/config"):
        page = bob.http.get(path, params={"deep_link": "AbCdEfGhIjK"})
        assert page.status_code == 200
        assert KEY not in page.text
        assert "deep_link_state" not in page.text or '"deep_link_state":"none"' in page.text


def test_tab_records_are_kept_only_for_visitors_bounded_and_without_sent_values(hosted):
    text = "https://example.invalid/" + "x" * 60_000
    nobody = _Tab(hosted.url, cookie=False)
    before = set(_records(hosted))
    for _ in range(5):
        nobody.run("on_link", [None, None, text], fresh=True)
    assert set(_records(hosted)) == before  # a request that names nobody keeps nothing
    visitor = _Tab(hosted.url)
    for _ in range(TABS_PER_VISITOR + 8):
        visitor.run("on_link", [None, None, text], fresh=True)
    records = _records(hosted)
    theirs = set(records) - before
    assert 0 < len(theirs) <= TABS_PER_VISITOR  # their oldest tabs went, nobody else's
    assert before <= set(records)
    for record in records.values():
        assert not any(text in str(config) for config in record.components)
        assert not any(text in str(value) for value in record.state_data.values())


def test_once_all_tab_records_are_taken_a_visitors_one_tab_keeps_its_pasted_key(hosted):
    # Many fresh visitors opening tabs push out one another's tabs, not the one tab in which
    # someone pasted their key (it would have gone quietly, and their next edit been paid on
    # the server's key).
    holder = hosted.demo.server_app.state_holder
    capacity, holder.capacity = holder.capacity, len(_records(hosted)) + 24
    try:
        alice = _Tab(hosted.url)
        alice.run("on_key", [KEY, False, ""])
        crowd = [_Tab(hosted.url) for _ in range(3)]
        for _ in range(12):
            for tab in crowd:
                tab.run("on_link", [None, None, "https://example.invalid/a.png"], fresh=True)
        records = _records(hosted)
        assert len(records) <= holder.capacity
        assert alice.hash in records
        assert KEY in str(records[alice.hash].state_data)
    finally:
        holder.capacity = capacity


def test_asking_after_uploads_that_never_came_keeps_nothing(hosted):
    # Anyone could ask for the progress of an upload id nobody used (no cookie needed): Gradio
    # kept a record of each for good, and memory grew a request at a time until the studio
    # was killed. Each is answered "not found", and nothing of it stays.
    import gradio.routes

    progress = gradio.routes.file_upload_statuses
    before = (len(progress._signals), len(progress._statuses))
    ids = [secrets.token_hex(6) for _ in range(20)] + ["x" * 20_000 + str(n) for n in range(20)]

    async def ask_all() -> list[int]:
        async with httpx.AsyncClient(base_url=hosted.url, timeout=30) as http:
            answers = await asyncio.gather(
                *(http.get("/gradio_api/upload_progress", params={"upload_id": i}) for i in ids)
            )
        return [a.status_code for a in answers]

    assert set(asyncio.run(ask_all())) == {404}
    assert (len(progress._signals), len(progress._statuses)) == before
    # An upload sent under a long id is still taken (its progress is just not followed).
    visitor = _Tab(hosted.url)
    answer = visitor.http.post(
        "/gradio_api/upload",
        params={"upload_id": "y" * 20_000},
        files={"files": ("a.png", b"\x89PNG\r\n\x1a\n" + bytes(64), "image/png")},
    )
    assert answer.status_code == 200
    assert (len(progress._signals), len(progress._statuses)) == before


def test_a_tab_whose_record_went_spends_nothing_until_reloaded(hosted, sim):
    # A visitor pasted their key in one tab, then opened more tabs than the studio keeps for
    # them: that tab's record (its key among it) went. Its next edit would have run on the
    # server's key, while the page still said the visitor's own was used: it is refused, saying
    # to reload, and nothing is sent to RunAPI.
    alice = _Tab(hosted.url)
    alice.run("on_key", [sim.api_key, False, ""])
    for _ in range(TABS_PER_VISITOR + 1):
        alice.run("on_load", [None, None, "", ""], fresh=True)
    assert alice.hash not in _records(hosted)
    before = len(sim.tasks)
    edit = [None, None, "make it red", "pro", "match", "png", False, False, 2, None, "0"]
    answer = alice.run("on_edit", [*edit, False, None, ""])
    assert TAB_FORGOTTEN in answer
    assert len(sim.tasks) == before
    # A reloaded page (a new tab) edits as before.
    fresh = _Tab(hosted.url)
    fresh.http.headers["cookie"] = alice.http.headers["cookie"]
    assert TAB_FORGOTTEN not in fresh.run("on_edit", [*edit, False, None, ""])


def test_a_click_naming_no_panel_changes_nothing_and_is_no_error(hosted):
    # The page sends the name of the panel opened; a name the studio does not know (sent by
    # anyone) was an error with no sentence, and a traceback in the log each time.
    tab = _Tab(hosted.url)
    answer = json.loads(tab.run("on_fold", [None, None, None, None, 2], event={"act": "nope"}))
    assert answer["success"] is True
    opened = json.loads(tab.run("on_fold", [None, None, None, None, 2], event={"act": "advanced"}))
    assert opened["success"] is True


def _png_uri() -> str:
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "teal").save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _call(tab: _Tab, name: str, data: list[Any]) -> str:
    """A public API call by name, its answer read to the end."""
    queued = tab.http.post(f"/gradio_api/call/{name}", json={"data": data})
    assert queued.status_code == 200, queued.text
    event = queued.json()["event_id"]
    return tab.http.get(f"/gradio_api/call/{name}/{event}", timeout=60).text


@pytest.fixture
def budgeted(sim: Any, clean_env: Path) -> Iterator[Studio]:
    with running_studio(sim, clean_env, hosted=True, visitor_budget_cents=100) as studio:
        yield studio


def test_opening_compare_again_and_again_keeps_one_copy_of_its_lists(budgeted):
    # Each time "Compare two steps" opened, Gradio kept one more copy of its two dropdowns
    # (every finished step of the session as a choice) in the tab's record: a tab doing it
    # again and again grew the studio's memory without end (review 10 F3).
    hosted = budgeted
    tab = _Tab(hosted.url)
    answer = _call(
        tab, "edit_image", [_png_uri(), "make it red", "pro", "match", "", "", "", False]
    )
    assert "event: complete" in answer
    (session_id,) = set(re.findall(r'session_id\\*": \\*"([0-9a-f-]{36})', answer))
    fold = {"act": "steps-box"}

    def record_size() -> int:
        return len(_records(hosted)[tab.hash].blocks_config.blocks)

    opened = tab.run("on_fold", [session_id, None, None, None, 1.0], event=fold)
    assert "make it red" in opened  # the dropdowns list the step
    size = record_size()
    for _ in range(12):
        assert "make it red" in tab.run("on_fold", [session_id, None, None, None, 1.0], event=fold)
    assert record_size() == size


def test_a_page_that_drew_an_older_reply_last_is_drawn_again_at_its_next_beat(studio):
    # Gradio sends each reply once it has made it, so two replies of one tab (a click, then
    # another at once; an Enter typed ahead; a tick) can reach the page in the other order: it
    # showed the first's step while the tab was on the second, until something else changed in
    # the session (CI, test_editor). The page's beat now says which render it drew last (its
    # version is the page's, not the server's record of the tab): one drawn from another step
    # than the tab's is drawn again.
    tab = _Tab(studio.url, cookie=False)
    edit = [None, None, "a red bicycle", "pro", "match", "png", False, False, 2, None, "0"]
    tab.run("on_edit", [*edit, False, None, ""])
    [listed] = studio.run(studio.engine.list_sessions())
    session_id = listed.session_id
    edit[:3] = [session_id, None, "add snow"]
    tab.run("on_edit", [*edit, False, None, ""])
    deadline = time.monotonic() + 30
    while not (session := studio.run(studio.engine.load_session(session_id))).current.is_finished:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    first, second = (step.step_id for step in session.path()[1:])
    go = [session_id, None]
    older = json.loads(tab.run("on_history_click", go, event={"act": "go", "step": first}))
    newer = json.loads(tab.run("on_history_click", go, event={"act": "go", "step": second}))
    # The page drew the reply to the first click last: the version it shows is that one's.
    drawn = [v for v in older["output"]["data"] if isinstance(v, str) and v.endswith(first)]
    assert drawn, "the page is not told which render it shows"
    [latest] = [v for v in newer["output"]["data"] if isinstance(v, str) and v.endswith(second)]
    config = tab.http.get("/config").json()
    beat_fn = next(d for d in config["dependencies"] if d["id"] == tab.fns["on_beat"])
    news = beat_fn["outputs"][1]
    answer = json.loads(tab.run("on_beat", [session_id, None, drawn[0], None, None]))
    assert news in answer["output"].get("changed_state_ids", [])  # (its change draws the page)
    # Drawn from the tab's step, the page is up to date: the next beat has no news.
    quiet = json.loads(tab.run("on_beat", [session_id, None, latest, None, None]))
    assert news not in quiet["output"].get("changed_state_ids", [])
