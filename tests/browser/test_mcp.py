"""The studio as an MCP server, through the `mcp` package's own client: each tool as an agent
calls it, with what comes back (image content and one JSON text) and what is refused."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import zipfile
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image

from studio.links import HOSTED_LINK_FAILURE
from studio.provenance import TRAINED_ALGORITHMIC_MEDIA
from tests.browser.conftest import running_studio
from tests.support.engines import make_image

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TOOLS = {
    "edit_image",
    "continue_session",
    "compare_models",
    "keep_result",
    "export_session",
    "list_sessions",
    "show_session",
}
SUMMARY_KEYS = {
    "session_id",
    "step_id",
    "state",
    "model",
    "aspect_ratio",
    "prompt",
    "task_id",
    "seconds",
    "cost_cents",
    "error",
    "image_url",
    "region",
    "raw_image_url",
}


@pytest.fixture
def mcp_studio(sim, clean_env):
    with running_studio(sim, clean_env, mcp=True) as running:
        yield running


@contextlib.asynccontextmanager
async def connect(
    studio, key: str | None = None, *, source: str | None = None, host: str | None = None
) -> AsyncIterator[object]:
    """An MCP client session; `key` goes in the X-RunAPI-Key header, as hosted studios ask;
    `source` is the loopback address it calls from (default: the system's choice); `host`, a
    Host header of the caller's own making."""
    import httpx
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    headers = {"X-RunAPI-Key": key} if key else {}
    if host is not None:
        headers["Host"] = host
    timeout = httpx.Timeout(60, read=300)
    async with (
        httpx.AsyncClient(
            headers=headers,
            timeout=timeout,
            transport=httpx.AsyncHTTPTransport(local_address=source) if source else None,
        ) as http,
        streamable_http_client(studio.url + "gradio_api/mcp/", http_client=http) as (r, w, _),
        ClientSession(r, w) as session,
    ):
        await session.initialize()
        yield session


def summary_of(result) -> dict:
    """The one JSON text of a tool result (the other texts are Gradio's own "Image URL" lines)."""
    (document,) = [c.text for c in result.content if c.type == "text" and c.text.startswith("{")]
    return json.loads(document)


def images_of(result) -> list[bytes]:
    return [base64.b64decode(c.data) for c in result.content if c.type == "image"]


def sessions(studio) -> list:
    return studio.run(studio.engine.list_sessions())


async def test_the_tools_have_complete_descriptions_and_standard_schemas(mcp_studio):
    async with connect(mcp_studio) as mcp:
        tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
    assert set(tools) == TOOLS
    edit = tools["edit_image"]
    assert "FLUX.1 Kontext" in edit.description
    assert "upload_file_to_gradio" not in edit.description
    assert ",," not in edit.description
    props = edit.inputSchema["properties"]
    assert edit.inputSchema["required"] == ["instruction"]  # no image: it generates
    assert props["model"]["enum"] == ["pro", "max"]
    assert "9:16" in props["aspect_ratio"]["enum"]
    assert props["image"] == {"type": "string", "description": props["image"]["description"]}
    # Whole sentences, not the first line of a wrapped docstring entry.
    assert props["image"]["description"].endswith("empty to generate.")
    assert props["aspect_ratio"]["description"].endswith("9:16.")
    for name in ("continue_session", "keep_result", "export_session", "show_session"):
        assert "session_id" in tools[name].inputSchema["required"], name
    for tool in tools.values():
        for prop in tool.inputSchema["properties"].values():
            assert "format" not in prop
            assert prop["description"].endswith((".", ")")), (tool.name, prop)


async def test_edit_image_without_an_image_generates_into_a_new_session(mcp_studio, sim):
    async with connect(mcp_studio) as mcp:
        result = await mcp.call_tool("edit_image", {"instruction": "a red bicycle"})
    assert not result.isError
    summary = summary_of(result)
    assert set(summary) == SUMMARY_KEYS
    assert (summary["state"], summary["model"], summary["aspect_ratio"]) == (
        "completed",
        "pro",
        "1:1",
    )
    assert summary["cost_cents"] == 5
    task = sim.tasks[summary["task_id"]]
    assert task.body["prompt"] == "a red bicycle"
    assert task.source_bytes is None
    (image,) = images_of(result)  # the image itself, as MCP image content
    assert Image.open(io.BytesIO(image)).size == Image.open(io.BytesIO(task.result_bytes)).size
    assert [s.session_id for s in sessions(mcp_studio)] == [summary["session_id"]]


async def test_a_local_path_is_edited_and_its_image_url_continues_the_same_session(
    mcp_studio, sim, tmp_path
):
    photo = tmp_path / "photo.png"
    photo.write_bytes(make_image(400, 300))
    progress: list[str | None] = []

    async def on_progress(_done, _total, message):
        progress.append(message)

    async with connect(mcp_studio) as mcp:
        first = await mcp.call_tool(
            "edit_image",
            {"image": str(photo), "instruction": "make it night"},
            progress_callback=on_progress,
        )
        night = summary_of(first)
        # The studio's own address for the result: opened by the caller, and passed back.
        second = await mcp.call_tool(
            "edit_image", {"image": night["image_url"], "instruction": "add snow"}
        )
        snow = summary_of(second)
        shown = summary_of(await mcp.call_tool("show_session", {"session_id": night["session_id"]}))
        listed = summary_of(await mcp.call_tool("list_sessions", {}))
    assert not first.isError
    assert not second.isError
    assert night["aspect_ratio"] == "4:3"
    assert sim.tasks[night["task_id"]].source_bytes == photo.read_bytes()
    # While it ran, the client heard which phase it was in ("Progress queued: Step 1 of 6").
    assert any(m and m.startswith("Progress ") and m.endswith(" of 6") for m in progress)
    assert snow["session_id"] == night["session_id"]
    # The next edit started from that result: the stored image, the model's own pixels (with
    # the XMP that says who made it).
    chain = mcp_studio.run(mcp_studio.engine.load_session(night["session_id"]))
    night_bytes = mcp_studio.image_bytes(chain.steps[night["step_id"]].result)
    assert sim.tasks[snow["task_id"]].source_bytes == night_bytes
    # What the agent got is that stored file, byte for byte: the XMP that says it was made by a
    # model (and which) is in it, and no text of the answer names a folder of the server.
    assert images_of(first) == [night_bytes]
    assert TRAINED_ALGORITHMIC_MEDIA.encode() in images_of(first)[0]
    texts = [c.text for c in first.content if c.type == "text"]
    assert f"Image URL: {night['image_url']}" in texts
    assert not any(str(mcp_studio.settings.home) in t or "/tmp/" in t for t in texts)
    steps = {s["step_id"]: s for s in shown["steps"]}
    assert steps[snow["step_id"]]["parent_id"] == night["step_id"]
    assert steps[snow["step_id"]]["current"] is True
    assert shown["current_step_id"] == snow["step_id"]
    assert [s["session_id"] for s in listed["sessions"]] == [night["session_id"]]
    assert listed["sessions"][0]["step_count"] == 2


async def test_continue_compare_keep_and_export_by_session_id(mcp_studio, sim, tmp_path):
    image = "data:image/png;base64," + base64.b64encode(make_image()).decode()
    async with connect(mcp_studio) as mcp:
        first = summary_of(
            await mcp.call_tool("edit_image", {"image": image, "instruction": "blue"})
        )
        sid = first["session_id"]
        nxt = await mcp.call_tool("continue_session", {"session_id": sid, "instruction": "snow"})
        compared = await mcp.call_tool("compare_models", {"session_id": sid, "instruction": "fox"})
        both = summary_of(compared)
        kept = summary_of(
            await mcp.call_tool(
                "keep_result", {"session_id": sid, "step_id": both["max"]["step_id"]}
            )
        )
        exported = await mcp.call_tool("export_session", {"session_id": sid})
    assert summary_of(nxt)["session_id"] == sid
    assert len(images_of(compared)) == 2
    assert (both["pro"]["model"], both["max"]["model"]) == ("pro", "max")
    assert kept["step_id"] == both["max"]["step_id"]
    link = exported.content[0].text
    assert link.endswith(f"/session-{sid[:8]}.zip")
    assert "/studio/export/" in link
    assert "/tmp/" not in link  # no path of the server
    async with httpx.AsyncClient() as http:
        fetched = (await http.get(link)).content
    with zipfile.ZipFile(io.BytesIO(fetched)) as archive:
        assert "session.json" in archive.namelist()
    session = mcp_studio.run(mcp_studio.engine.load_session(sid))
    assert session.current_step_id == both["max"]["step_id"]


@pytest.mark.parametrize(
    ("arguments", "sentence"),
    [
        pytest.param(
            {"image": "photo.png", "instruction": "x"}, "absolute file path", id="relative-path"
        ),
        pytest.param(
            {"image": "/nowhere/photo.png", "instruction": "x"}, "does not exist", id="missing"
        ),
        pytest.param(
            {"image": "ftp://example.com/a.png", "instruction": "x"}, "http(s) URL", id="scheme"
        ),
        pytest.param(
            {"image": "data:image/png;base64,%%%", "instruction": "x"}, "base64", id="bad-data"
        ),
        pytest.param({"instruction": "  "}, "instruction is empty", id="no-instruction"),
        pytest.param({"instruction": "x", "model": "ultra"}, "is not one of", id="model"),
        pytest.param(
            {"instruction": "x", "session_id": "nope"}, "no such session", id="unknown-session"
        ),
    ],
)
async def test_bad_input_is_refused_in_one_sentence_and_nothing_is_stored(
    mcp_studio, sim, arguments, sentence
):
    async with connect(mcp_studio) as mcp:
        result = await mcp.call_tool("edit_image", arguments)
    assert result.isError
    (text,) = [c.text for c in result.content]
    assert sentence in text
    assert text.count(". ") == 0
    assert "Traceback" not in text
    assert sessions(mcp_studio) == []
    assert sim.tasks == {}


async def test_a_file_that_is_not_an_image_is_refused(mcp_studio, sim, tmp_path):
    page = tmp_path / "photo.png"
    page.write_text("<!doctype html><html></html>")
    async with connect(mcp_studio) as mcp:
        result = await mcp.call_tool("edit_image", {"image": str(page), "instruction": "x"})
    assert result.isError
    assert "web page" in result.content[0].text
    assert sessions(mcp_studio) == []


async def test_a_hosted_studio_refuses_local_files_and_keeps_callers_apart(
    sim, clean_env, tmp_path
):
    photo = tmp_path / "photo.png"
    photo.write_bytes(make_image())
    image = "data:image/png;base64," + base64.b64encode(make_image()).decode()
    with running_studio(sim, clean_env, mcp=True, hosted=True, visitor_keys=True) as hosted:
        async with connect(hosted, key=sim.api_key) as mcp:  # caller A, with its own key
            for local in (str(photo), photo.as_uri()):
                result = await mcp.call_tool("edit_image", {"image": local, "instruction": "x"})
                assert result.isError
                assert "cannot read local files" in result.content[0].text
            assert sessions(hosted) == []
            made = summary_of(
                await mcp.call_tool("edit_image", {"image": image, "instruction": "x"})
            )
        sim.accept_key("sk-caller-b-0123456789")  # another RunAPI account
        async with connect(hosted, key="sk-caller-b-0123456789") as other:
            listed = summary_of(await other.call_tool("list_sessions", {}))
            # B passes A's result back: B cannot continue A's session with it.
            result = await other.call_tool(
                "edit_image", {"image": made["image_url"], "instruction": "y"}
            )
        assert {s.session_id for s in sessions(hosted)} == {made["session_id"]}
    assert listed == {"sessions": []}
    assert result.isError
    # Fetched as any link would be, and refused with hosted mode's one sentence for a link.
    assert result.content[0].text == HOSTED_LINK_FAILURE


async def test_a_host_header_of_the_callers_making_never_names_another_callers_image(
    sim, clean_env
):
    """An image answer's address is built from the Host the caller reached: a Host carrying a
    path and a query once made it name another visitor's stored image, which the MCP answer
    then sent whole (review 11 F1)."""
    import hashlib

    image = "data:image/png;base64," + base64.b64encode(make_image()).decode()
    with running_studio(sim, clean_env, mcp=True, hosted=True, visitor_keys=True) as hosted:
        async with connect(hosted, key=sim.api_key) as mcp:  # caller A
            made = summary_of(
                await mcp.call_tool("edit_image", {"image": image, "instruction": "x"})
            )
        theirs = urlsplit(made["image_url"]).path.rsplit("/", 1)[1]
        sim.accept_key("sk-caller-b-0123456789")
        port = urlsplit(hosted.url).port
        crafted = f"127.0.0.1:{port}/studio/image/{theirs}?"
        async with connect(hosted, key="sk-caller-b-0123456789", host=crafted) as other:
            result = await other.call_tool("edit_image", {"image": image, "instruction": "y"})
    assert not result.isError
    mine = summary_of(result)
    assert theirs not in json.dumps(mine)
    assert all(theirs not in c.text for c in result.content if c.type == "text")
    (sent,) = images_of(result)
    assert hashlib.sha256(sent).hexdigest() != theirs.split(".")[0]
    assert (
        hashlib.sha256(sent).hexdigest()
        == urlsplit(mine["image_url"]).path.rsplit("/", 1)[1].split(".")[0]
    )


async def test_a_hosted_mcp_caller_can_send_a_photo_of_a_few_megabytes(sim, clean_env):
    """A photo over the door's 1 MB "large body" mark, sent as a data: URI: the tool call's
    body and the queue request Gradio's MCP server makes for it with the same body are one
    caller's, one after the other (review 8 F5: refused with Gradio's internal 429 text)."""
    from tests.support.engines import make_photo

    data = make_photo(1100, 825)
    assert 1_000_000 < len(data) < 2_500_000
    image = "data:image/png;base64," + base64.b64encode(data).decode()
    with running_studio(sim, clean_env, mcp=True, hosted=True, visitor_keys=True) as hosted:
        async with connect(hosted, key=sim.api_key) as mcp:
            result = await mcp.call_tool("edit_image", {"image": image, "instruction": "x"})
    assert not result.isError, result.content[0].text
    summary = summary_of(result)
    assert summary["state"] == "completed"
    assert sim.tasks[summary["task_id"]].source_bytes == data


async def test_hosted_mcp_callers_sending_photos_at_once_all_get_their_results(sim, clean_env):
    """Three callers from three addresses each send a photo of a few megabytes at the same
    moment: each gets its result (review 9 F1: the first call's body held one of the three
    places of large bodies until its tool ended, so the queue request Gradio's MCP server made
    for it waited past its client's 5 s and paid edits were answered "timed out"). And an MCP
    body larger than the MCP layer takes is refused before it is read."""
    import httpx

    from studio.ui.tabs import MCP_BODY_BYTES, TOO_LARGE
    from tests.support.engines import make_photo

    data = make_photo(1100, 825)
    image = "data:image/png;base64," + base64.b64encode(data).decode()
    keys = [f"sk-caller-{n}-0123456789" for n in range(3)]
    for key in keys:
        sim.accept_key(key)

    async def call(key: str, source: str) -> object:
        async with connect(hosted, key=key, source=source) as mcp:
            return await mcp.call_tool("edit_image", {"image": image, "instruction": "x"})

    with running_studio(sim, clean_env, mcp=True, hosted=True, visitor_keys=True) as hosted:
        results = await asyncio.gather(
            *(call(key, f"127.0.0.{20 + n}") for n, key in enumerate(keys))
        )
        too_big = b"x" * (MCP_BODY_BYTES + 1)
        async with httpx.AsyncClient(timeout=30) as http:
            answer = await http.post(
                hosted.url + "gradio_api/mcp/", content=too_big, headers={"X-RunAPI-Key": keys[0]}
            )
    for result in results:
        assert not result.isError, result.content[0].text
        assert summary_of(result)["state"] == "completed"
    assert (answer.status_code, TOO_LARGE in answer.text) == (413, True)


async def test_keep_the_rest_over_mcp_answers_the_photo_at_its_size_and_the_raw_output(
    mcp_studio, sim
):
    from tests.support.engines import make_photo

    image = "data:image/png;base64," + base64.b64encode(make_photo(800, 600)).decode()
    async with connect(mcp_studio) as mcp:
        result = await mcp.call_tool(
            "edit_image", {"image": image, "instruction": "add a hat", "keep_rest": True}
        )
    assert not result.isError
    summary = summary_of(result)
    assert (summary["region"], summary["state"]) == ("auto", "completed")
    assert summary["raw_image_url"] != summary["image_url"]
    (shown,) = images_of(result)
    assert Image.open(io.BytesIO(shown)).size == (800, 600)


async def test_a_result_too_large_for_mcp_comes_as_a_marked_preview_with_the_whole_images_address(
    mcp_studio, sim, tmp_path
):
    """A keep-the-rest result at a large photo's size is more than an agent's image content
    takes: a JPEG preview comes instead, still saying it was made by AI, with the address of
    the whole image (which serves it byte for byte); with and without progress alike."""
    import httpx

    from studio.ui.mcp_answers import MCP_IMAGE_BYTES, PREVIEW_SIDE
    from tests.support.engines import make_photo

    photo = tmp_path / "big.png"
    photo.write_bytes(make_photo(2400, 1800))
    assert photo.stat().st_size > MCP_IMAGE_BYTES

    async def on_progress(_done, _total, _message):
        pass

    async with connect(mcp_studio) as mcp:
        quiet = await mcp.call_tool(
            "edit_image", {"image": str(photo), "instruction": "add a hat", "keep_rest": True}
        )
        followed = await mcp.call_tool(
            "edit_image",
            {"image": str(photo), "instruction": "add a hat", "keep_rest": True},
            progress_callback=on_progress,
        )
    for result in (quiet, followed):
        assert not result.isError
        summary = summary_of(result)
        (preview,) = images_of(result)
        assert [c.mimeType for c in result.content if c.type == "image"] == ["image/jpeg"]
        shown = Image.open(io.BytesIO(preview))
        assert (shown.format, max(shown.size)) == ("JPEG", PREVIEW_SIDE)
        assert shown.size == (PREVIEW_SIDE, PREVIEW_SIDE * 3 // 4)
        assert TRAINED_ALGORITHMIC_MEDIA.encode() in preview
        (line,) = [c.text for c in result.content if c.type == "text" and "preview" in c.text]
        assert "2400x1800" in line
        assert line.endswith(summary["image_url"])
        step = mcp_studio.run(mcp_studio.engine.load_session(summary["session_id"])).current
        whole = mcp_studio.image_bytes(step.result)
        assert len(whole) > MCP_IMAGE_BYTES
        async with httpx.AsyncClient(timeout=30) as http:
            assert (await http.get(summary["image_url"])).content == whole


async def test_hosted_mcp_callers_without_a_key_are_nobody_not_one_shared_visitor(sim, clean_env):
    # Gradio's MCP server runs every tool through one client of its own, which keeps whatever
    # cookie it is given: callers without a key must not become that one visitor.
    image = "data:image/png;base64," + base64.b64encode(make_image()).decode()
    with running_studio(sim, clean_env, mcp=True, hosted=True, visitor_budget_cents=100) as hosted:
        async with connect(hosted) as x:
            result = await x.call_tool("edit_image", {"image": image, "instruction": "x"})
            assert result.isError
            assert "X-RunAPI-Key" in result.content[0].text
        async with connect(hosted) as y:
            listed = await y.call_tool("list_sessions", {})
        assert sessions(hosted) == []
    assert listed.isError
    assert len(sim.tasks) == 0  # nothing paid on the server's key


async def test_mcp_callers_count_at_their_own_address_not_at_the_studios(sim, clean_env):
    # Gradio's MCP server runs each tool through a loopback client of its own: its callers'
    # new keys must count at the caller's address, not use up the studio's own address.
    from gradio_client import Client

    settings = {
        "mcp": True,
        "hosted": True,
        "visitor_budget_cents": 100,
        "identities_per_hour": 2,
        "visitor_keys": True,
    }
    with running_studio(sim, clean_env, **settings) as hosted:
        answers = []
        for n in range(3):
            sim.accept_key(f"sk-account-{n}")  # three RunAPI accounts
            async with connect(hosted, f"sk-account-{n}", source="127.0.0.5") as caller:
                answers.append(await caller.call_tool("list_sessions", {}))
        assert [a.isError for a in answers] == [False, False, True]  # 127.0.0.5 had its two
        assert "Too many new visitors" in answers[2].content[0].text
        # A new caller from another address is not refused for what 127.0.0.5 did.
        sim.accept_key("sk-account-x")
        fresh = Client(hosted.url, verbose=False, headers={"X-RunAPI-Key": "sk-account-x"})
        assert json.loads(fresh.predict(5, api_name="/list_sessions"))["sessions"] == []
        fresh.close()


def test_one_callers_mcp_calls_under_way_are_bounded_and_others_go_on(sim, clean_env):
    """Gradio's MCP server runs every caller's tools through one client of its own: one caller
    holding dozens of calls made every other caller wait seconds a call. A caller may have
    `MCP_CALLS_PER_VISITOR` under way, an address `MCP_CALLS_PER_ADDRESS`; one more is refused
    at once with a sentence, and another caller is not."""
    import httpx

    from studio.ui.tabs import MCP_CALLS_PER_ADDRESS, MCP_CALLS_PER_VISITOR
    from tests.browser.test_hosted_door import _bodies_on_their_way

    hello = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-03-26",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"},
        },
    }
    accept = {"Accept": "application/json, text/event-stream"}

    def initialize(key: str, source: str = "127.0.0.1") -> httpx.Response:
        transport = httpx.HTTPTransport(local_address=source)
        with httpx.Client(transport=transport, timeout=30) as client:
            headers = {**accept, "X-RunAPI-Key": key}
            return client.post(hosted.url + "gradio_api/mcp/", json=hello, headers=headers)

    settings = {"mcp": True, "hosted": True, "visitor_keys": True}
    with running_studio(sim, clean_env, **settings) as hosted:
        for key in ("sk-account-a", "sk-account-b", "sk-account-c"):
            sim.accept_key(key)
        assert initialize("sk-account-a").status_code == 200
        a = {**accept, "X-RunAPI-Key": "sk-account-a"}
        with _bodies_on_their_way(hosted.url, "/gradio_api/mcp/", a, MCP_CALLS_PER_VISITOR):
            refused = initialize("sk-account-a")
            assert refused.status_code == 429
            assert "several MCP calls under way" in refused.text
            assert initialize("sk-account-b").status_code == 200  # another caller goes on
            b = {**accept, "X-RunAPI-Key": "sk-account-b"}
            more = MCP_CALLS_PER_ADDRESS - MCP_CALLS_PER_VISITOR
            with _bodies_on_their_way(hosted.url, "/gradio_api/mcp/", b, more):
                crowded = initialize("sk-account-c")
                assert crowded.status_code == 429
                assert "Others from your network address" in crowded.text
                assert initialize("sk-account-c", source="127.0.0.9").status_code == 200
        assert initialize("sk-account-a").status_code == 200  # once those are gone
        # Requests with no key are counted together for each address, not for all: one
        # address holding four refused every keyless caller everywhere (review 24 F1).
        with _bodies_on_their_way(hosted.url, "/gradio_api/mcp/", accept, MCP_CALLS_PER_VISITOR):
            assert initialize("").status_code == 429
            assert initialize("", source="127.0.0.9").status_code == 200


def test_a_hosted_studio_serves_mcp_over_streamable_http_only(sim, clean_env):
    # The SSE transport answers a call at once and runs it after: its calls could not be
    # counted while they run, so a hosted studio does not serve it, and says where to go.
    import httpx

    with running_studio(sim, clean_env, mcp=True, hosted=True) as hosted:
        for path in ("gradio_api/mcp/sse", "gradio_api/mcp/messages/?session_id=x"):
            answer = httpx.get(hosted.url + path, timeout=10)
            assert answer.status_code == 404
            assert "streamable HTTP only, at /gradio_api/mcp/" in answer.text


def test_calls_naming_nobody_beside_a_callers_own_leave_its_answer_alone(sim, clean_env):
    """Gradio's MCP server runs every caller's tools through one client of its own, one tab for
    all: a refusal of a call that named nobody, answered on that tab, took the tab's stream from
    everyone's answers, so a caller's own call beside it failed with an empty error."""
    import threading

    import httpx

    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "list_sessions", "arguments": {"limit": 1}},
    }
    accept = {"Accept": "application/json, text/event-stream"}
    settings = {"mcp": True, "hosted": True, "visitor_keys": True}
    with running_studio(sim, clean_env, **settings) as hosted:
        sim.accept_key("sk-account-a")
        url = hosted.url + "gradio_api/mcp/"

        def post(key: str | None, source: str, answers: list[str]) -> None:
            transport = httpx.HTTPTransport(local_address=source)
            headers = {**accept, **({"X-RunAPI-Key": key} if key else {})}
            with httpx.Client(transport=transport, timeout=60) as client:
                answers.append(client.post(url, json=call, headers=headers).text)

        for _ in range(8):
            nobody: list[str] = []
            mine: list[str] = []
            threads = [
                *(
                    threading.Thread(target=post, args=(None, "127.0.0.94", nobody))
                    for _ in range(3)
                ),
                threading.Thread(target=post, args=("sk-account-a", "127.0.0.99", mine)),
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert "sessions" in mine[0]  # the caller's own answer, every time
            assert all("X-RunAPI-Key" in answer for answer in nobody), nobody  # each told why
