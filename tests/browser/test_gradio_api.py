"""The studio's named endpoints through gradio_client, as a script would call them."""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.support.engines import make_image

pytestmark = pytest.mark.slow
ENDPOINTS = [
    "/compare_models",
    "/continue_session",
    "/edit_image",
    "/export_session",
    "/keep_result",
    "/list_sessions",
    "/show_session",
]


@pytest.fixture
def client(studio):
    client = Client(studio.url, verbose=False)
    yield client
    client.close()


def test_the_public_api_is_exactly_the_documented_endpoints(client):
    named = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert sorted(named) == ENDPOINTS


def test_edit_continue_compare_keep_and_export_from_a_script(client, studio, sim, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(make_image(400, 300))
    image, text = client.predict(
        str(photo), "make it blue", "max", "match", "", api_name="/edit_image"
    )
    first = json.loads(text)
    assert first["state"] == "completed"
    assert first["model"] == "max"
    assert first["cost_cents"] == 10
    assert first["aspect_ratio"] == "4:3"
    assert sim.tasks[first["task_id"]].body["aspect_ratio"] == "4:3"
    assert open(image, "rb").read() == studio.image_bytes(  # noqa: SIM115
        studio.run(studio.engine.load_session(first["session_id"])).current.result
    )

    _, text = client.predict(first["session_id"], "add snow", api_name="/continue_session")
    second = json.loads(text)
    assert sim.tasks[second["task_id"]].source_bytes == open(image, "rb").read()  # noqa: SIM115

    pro_image, max_image, text = client.predict(
        "", "make it night", "match", first["session_id"], api_name="/compare_models"
    )
    both = json.loads(text)
    assert both["pro"]["state"] == both["max"]["state"] == "completed"
    assert pro_image != max_image
    kept = json.loads(
        client.predict(first["session_id"], both["pro"]["step_id"], api_name="/keep_result")
    )
    assert kept["step_id"] == both["pro"]["step_id"]

    exported = client.predict(first["session_id"], api_name="/export_session")
    with zipfile.ZipFile(exported) as archive:
        assert "session.json" in archive.namelist()
    assert sim.api_key.encode() not in open(exported, "rb").read()  # noqa: SIM115


def test_a_file_that_is_not_an_image_is_refused_in_one_sentence(client, tmp_path):
    from gradio_client.exceptions import AppError

    page = tmp_path / "photo.png"
    page.write_text("<!doctype html><html></html>")
    with pytest.raises(AppError, match="web page"):
        client.predict(str(page), "x", api_name="/edit_image")


def test_a_box_edit_from_a_script_keeps_the_rest_and_a_bad_box_is_refused_unpaid(
    client, studio, sim, tmp_path
):
    import numpy as np
    from gradio_client.exceptions import AppError
    from PIL import Image

    from tests.support.engines import make_photo

    photo = tmp_path / "photo.png"
    photo.write_bytes(make_photo(800, 600))
    image, text = client.predict(
        image=str(photo), instruction="add a hat", box="100,50,300,200", api_name="/edit_image"
    )
    step = json.loads(text)
    assert (step["state"], step["region"]) == ("completed", "box")
    assert step["raw_image_url"]  # the model's own output, at the studio's own address
    source = np.asarray(Image.open(photo).convert("RGB"))
    result = np.asarray(Image.open(image).convert("RGB"))
    assert result.shape == source.shape  # the photo's own size, not the model's
    outside = np.ones(source.shape[:2], bool)
    outside[50:250, 100:400] = False
    assert (result[outside] == source[outside]).all()
    raw = client.predict(step["session_id"], api_name="/show_session")
    assert json.loads(raw)["steps"][1]["raw_image_url"] == step["raw_image_url"]
    creates = len(sim.tasks)
    with pytest.raises(AppError, match="outside the image"):
        client.predict(
            session_id=step["session_id"],
            instruction="add a scarf",
            box="900,700,10,10",
            api_name="/continue_session",
        )
    assert len(sim.tasks) == creates  # refused before anything was created


def test_the_studio_keeps_no_copy_of_a_callers_image_once_it_has_answered(studio, sim):
    """A script sends its image in the request (a data URL); once the edit is answered, the
    studio holds on to none of it. Python's URL parser kept the last 128 strings it split, and
    each edit's tasks kept the request they were asked in (its context, held for 15 minutes by a
    cancelled deadline timer): a minute of 11 MB images left a hosted studio at 2 GB."""
    import base64
    import gc
    import io
    import tracemalloc

    import httpx
    import numpy as np
    from PIL import Image

    def noise_uri(seed: int) -> str:
        pixels = np.random.default_rng(seed).integers(0, 256, (500, 600, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG", compress_level=0)
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()

    api = studio.url.rstrip("/") + "/gradio_api"
    uris = [noise_uri(seed) for seed in range(6)]
    with httpx.Client(timeout=60) as http:
        tracemalloc.start(40)
        try:
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            for uri in uris:
                edit = {"data": [uri, "make it red", "pro", "match", "", "", "", False]}
                event = http.post(f"{api}/call/edit_image", json=edit).json()["event_id"]
                assert "event: complete" in http.get(f"{api}/call/edit_image/{event}").text
            sim.reset()  # the simulator's own records of them (it runs in this process)
            gc.collect()
            kept = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    # Gradio's queue keeps its last event until the next one: one image's worth, not six.
    print(f"kept {kept / 1e6:.1f} MB of {len(uris)} images of {len(uris[0]) / 1e6:.1f} MB")
    assert kept < 3 * len(uris[0])


def test_the_page_is_sent_only_its_own_parts_and_scripts_still_see_every_endpoint(client, studio):
    """The page built and walked a node for every component and event of the config, the API's
    35 hidden inputs and 7 endpoints too, which it never shows or fires (75 ms of the renderer's
    CPU a load, README Numbers). The page is sent its own; `/config`, which gradio_client and
    the API page read, keeps every endpoint."""
    import re

    import httpx

    html = httpx.get(studio.url).text
    found = re.search(r"window.gradio_config = (.*?);</script>", html, re.S)
    assert found is not None
    sent = json.loads(found.group(1))
    whole = httpx.get(studio.url.rstrip("/") + "/config").json()
    sent_names = {d["api_name"] for d in sent["dependencies"]}
    whole_names = {d["api_name"] for d in whole["dependencies"]}
    endpoints = {name.lstrip("/") for name in ENDPOINTS}
    assert endpoints <= whole_names
    assert not endpoints & sent_names
    assert "on_load" in sent_names
    assert len(sent["components"]) < len(whole["components"]) - 30
    # Every component an event of the page's names is sent with it.
    sent_ids = {c["id"] for c in sent["components"]}
    for dependency in sent["dependencies"]:
        for component in [*dependency["inputs"], *dependency["outputs"]]:
            assert component in sent_ids, (dependency["api_name"], component)
    assert client.predict(api_name="/list_sessions")


def test_the_pages_files_come_compressed_once_and_whole(studio):
    """The page's scripts and styles come compressed, as Gradio compressed them for each request
    (6-10 ms of CPU for the page's script, 0.24 s for Plotly's; a loop asking for them had the
    studio compress them again and again), now compressed once and kept: whole, the same ETag
    and type, brotli for a browser and gzip for a client that takes only gzip; a browser's
    check that its copy is current is answered from what is kept (asking it with a made-up
    ETag skipped the kept copies: review 25 F1)."""
    import re

    import httpx

    base = studio.url.rstrip("/")
    files = re.findall(r"\./(assets/[\w.-]+\.(?:js|css))", httpx.get(studio.url).text)
    assert files
    plotly = next(p for p in _gradio_files("assets") if "Plotly" in p)  # (4.6 MB)
    bokeh = _gradio_files("static/bokeh")[0]
    for path in [*files[:3], "theme.css", plotly, bokeh]:
        plain = httpx.get(f"{base}/{path}", headers={"Accept-Encoding": "identity"})
        assert plain.status_code == 200
        assert "content-encoding" not in plain.headers
        etag = plain.headers.get("etag")
        for accepted, encoding in [("gzip, deflate, br, zstd", "br"), ("gzip", "gzip")] * 2:
            asked = {"Accept-Encoding": accepted, "If-None-Match": '"made-up"'}
            packed = httpx.get(f"{base}/{path}", headers=asked, timeout=30)
            assert packed.headers["content-encoding"] == encoding
            assert packed.content == plain.content  # (httpx unpacks it)
            assert int(packed.headers["content-length"]) < len(plain.content)
            assert packed.headers.get("etag") == etag
            assert packed.headers["content-type"] == plain.headers["content-type"]
            if etag is not None:
                current = httpx.get(
                    f"{base}/{path}", headers={"Accept-Encoding": accepted, "If-None-Match": etag}
                )
                assert current.status_code == 304
    missing = httpx.get(f"{base}/assets/no-such-file.js", headers={"Accept-Encoding": "br"})
    assert missing.status_code == 404
    # One file is kept once: a path spelled another way is sent as it is, not kept again (one
    # client filled what is kept with copies of one file under "./" spellings: review 26 F2).
    import http.client  # (httpx would tidy the path)

    folder, name = files[0].split("/")
    connection = http.client.HTTPConnection(*httpx.URL(base).netloc.decode().split(":"))
    connection.request("GET", f"/{folder}/./{name}", headers={"Accept-Encoding": "br"})
    spelled = connection.getresponse()
    assert spelled.status == 200
    assert spelled.getheader("content-encoding") is None
    connection.close()


def test_the_apis_description_is_made_once_and_kept_for_each_way_of_asking(studio):
    """The API's description (what gradio_client reads first) was turned into JSON afresh for
    every request: 43 ms for all the endpoints, and 48 addresses asking four times a second
    held every other page at 2.8 s (review 37 F2). Now kept, compressed or not, as Gradio
    answers each way of asking."""
    import httpx

    base = studio.url.rstrip("/") + "/gradio_api/info"
    plain = {"Accept-Encoding": "identity"}
    named = httpx.get(base, headers=plain)
    everything = httpx.get(f"{base}?all_endpoints=true", headers=plain)
    assert named.status_code == everything.status_code == 200
    assert "content-encoding" not in named.headers
    assert len(everything.content) > 2 * len(named.content)  # (every page event's too)
    assert sorted(named.json()["named_endpoints"]) == ENDPOINTS
    # Gradio reads any value but an empty one as "all".
    for asked, same_as in [
        ("?all_endpoints=True", everything),
        ("?all_endpoints=false", everything),
        ("?all_endpoints=", named),
        ("?other=1", named),
        # A page's own (the studio has one), or one it does not have (then Gradio answered
        # with all of it, made afresh each time: review 38 F2).
        ("?page=", named),
        ("?page=x", named),
        ("?all_endpoints=1&page=x", everything),
        ("/", named),
        ("", named),
    ]:
        for accepted in ("identity", "br", "gzip"):
            answer = httpx.get(f"{base}{asked}", headers={"Accept-Encoding": accepted})
            assert answer.status_code == 200
            assert answer.json() == same_as.json(), (asked, accepted)
            assert answer.headers.get("content-encoding", "identity") == accepted
    # What gradio_client reads first, and its description of the API, as before.
    client = Client(studio.url, verbose=False)
    assert sorted(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == (
        ENDPOINTS
    )
    client.close()


def _gradio_files(folder: str) -> list[str]:
    """The scripts and styles Gradio ships under `folder` of its built frontend, as paths of
    the studio's ("assets/index-....js")."""
    import gradio

    root = Path(gradio.__file__).parent / "templates" / "frontend"
    found = (p for p in (root / folder).rglob("*") if p.suffix in (".js", ".css"))
    return sorted(p.relative_to(root).as_posix() for p in found)


def test_a_file_is_sent_as_it_is_and_a_range_of_many_parts_whole(studio):
    """Gradio compressed any file whose name ends .txt, .json, .csv... for each request: a
    visitor's own 48 MB text file, fetched back again and again, cost 2-3 s of CPU each time
    (review 25 F2). Only Gradio's own files are compressed now. And a request for a hundred
    ranges of a file cost thirty times a plain one (review 25 F3): it is answered whole."""
    import httpx

    base = studio.url.rstrip("/")
    text = b"a line of a visitor's own text file\n" * 20_000
    uploaded = httpx.post(
        f"{base}/gradio_api/upload", files={"files": ("notes.txt", text, "text/plain")}
    )
    assert uploaded.status_code == 200
    (path,) = uploaded.json()
    fetched = httpx.get(f"{base}/gradio_api/file={path}", headers={"Accept-Encoding": "gzip, br"})
    assert fetched.status_code == 200
    assert "content-encoding" not in fetched.headers
    assert fetched.content == text
    script = _gradio_files("assets")[0]
    many = ",".join(f"{n * 10}-{n * 10 + 1}" for n in range(20))
    whole = httpx.get(f"{base}/{script}", headers={"Range": f"bytes={many}"})
    assert whole.status_code == 200
    one = httpx.get(f"{base}/{script}", headers={"Range": "bytes=0-9"})
    assert one.status_code == 206
    assert len(one.content) == 10


def test_an_edit_runapi_left_unanswered_is_not_called_failed(sim, clean_env, tmp_path):
    """RunAPI silent past the task's deadline: the edit is open, not failed, and asked for again
    (its create replays, never paid twice). The caller was told "The edit failed … try again",
    and one that did paid a second time (review 56 F2); the wait said "0 minutes"."""
    from tests.browser.conftest import running_studio

    with running_studio(sim, clean_env, task_deadline_s=2.0) as studio:
        client = Client(studio.url, verbose=False)
        photo = tmp_path / "photo.png"
        photo.write_bytes(make_image(64, 48))
        sim.faults.server_error(503, times=10_000)  # RunAPI answers nothing but 503 for now
        with pytest.raises(AppError, match="not finished yet") as told:
            client.predict(str(photo), "make it blue", "pro", "match", "", api_name="/edit_image")
        said = str(told.value)
        assert "The edit is not finished yet: RunAPI did not answer for 2 seconds" in said
        assert "Do not send it again" in said
        assert "failed" not in said
        assert "try again" not in said
        sim.faults.reset()
        session_id = said.rsplit("(session ", 1)[1][:36]
        for _ in range(100):  # asked for again while the studio runs: it lands
            shown = json.loads(client.predict(session_id, api_name="/show_session"))
            if shown["steps"][-1]["state"] == "completed":
                break
            time.sleep(0.1)
        assert shown["steps"][-1]["state"] == "completed"
        assert len(sim.tasks) == 1
        client.close()
