"""A hosted studio's files, asked for by every spelling of every file route Gradio has: a visitor's
stored image, its thumbnail and a cached copy reach that visitor only. Raw HTTP on loopback
(http.client sends a path exactly as written; httpx would tidy it first)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import io
import json
import os
import re
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pytest
from gradio_client import Client

from studio.config import Secret
from studio.ui.guard import (
    FILE_ROUTES,
    IMAGE_ROUTE,
    TOO_MANY_UPLOADS,
    UPLOADS_WAITING_PER_VISITOR,
)
from tests.browser.conftest import running_studio
from tests.support.engines import make_image

pytestmark = pytest.mark.slow


@pytest.fixture
def hosted(sim, clean_env):
    with running_studio(
        sim, clean_env, hosted=True, visitor_budget_cents=100, visitor_keys=True
    ) as s:
        yield s


def _get(url: str, path: str, *, method: str = "GET", headers: dict[str, str] | None = None):
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _spellings(path: str) -> list[str]:
    """Every way of naming `path` (absolute) on Gradio's file routes."""
    inner = path.lstrip("/")
    head, _, tail = path.rpartition("/")
    return [
        f"/gradio_api/file={path}",
        f"/gradio_api/file={path}/",
        f"/gradio_api/file={path}%0A",
        f"/gradio_api/file={quote(path, safe='')}",
        f"/gradio_api/file={head}/./{tail}",
        f"/gradio_api/file={head}/x/../{tail}",
        f"/gradio_api/file=/{path}",
        f"/gradio_api/file={path.replace('/', '//')}",
        f"/gradio_api/file/{path}",
        f"/gradio_api/file/{path}/",
        f"/gradio_api/file/{inner}",
        f"/gradio_api/file/{quote(path, safe='')}",
        f"/gradio_api/file%3D{quote(path)}",
        f"/gradio_api/file=/..{path}",
    ]


# Gradio's other routes with a path in the URL: its own bundled assets (each from one folder
# of the gradio package), and the proxy to apps loaded with gr.load (none here; it refuses any
# other host).
NOT_FILES = {"/svelte/{}", "/static/{}", "/assets/{}", "/gradio_api/proxy={}"}


def test_gradios_file_routes_are_exactly_the_ones_the_guard_knows(hosted):
    def shape(route: str) -> str:
        return re.sub(r"\{[^}:]+:path\}", "{}", route)

    routes = list(hosted.demo.app.routes)
    for route in list(routes):
        routes += getattr(getattr(route, "original_router", None), "routes", [])
    by_path = {shape(r.path) for r in routes if ":path}" in getattr(r, "path", "")}
    assert by_path - NOT_FILES == {shape(route) for route in FILE_ROUTES}


def test_a_visitors_image_thumbnail_and_cached_copy_reach_no_one_else(hosted, sim, tmp_path):
    owner = {"X-RunAPI-Key": sim.api_key}
    client = Client(hosted.url, verbose=False, headers=owner)
    uri = "data:image/png;base64," + base64.b64encode(make_image(64, 48)).decode()
    _, text = client.predict(uri, "make it blue", "pro", "match", "", api_name="/edit_image")
    client.close()
    made = json.loads(text)
    session = hosted.run(hosted.engine.load_session(made["session_id"]))
    ref = session.current.result
    stored = hosted.engine.image_path(ref)
    (thumb,) = hosted.run(hosted.engine.thumbnails([ref])).values()
    cached = Path(os.environ["GRADIO_TEMP_DIR"]) / ("c" * 64) / stored.name
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(stored.read_bytes())

    # A stranger with a cookie of its own.
    stranger = httpx.Client(base_url=hosted.url)
    stranger.get("/")
    cookie = "; ".join(f"{k}={v}" for k, v in stranger.cookies.items())
    assert cookie
    for path in (stored, thumb, cached):
        # The owner is served (so each spelling below names a file Gradio would serve), for
        # their own browser only: no shared cache in front may keep it for the next asker...
        served = httpx.get(f"{hosted.url}gradio_api/file={path}", headers=owner)
        assert served.status_code == 200
        assert served.headers["cache-control"].startswith("private")
        assert "Cookie" in served.headers["vary"]
        for spelling in _spellings(str(path)):
            for method in ("GET", "HEAD"):
                status, _ = _get(hosted.url, spelling, method=method, headers={"Cookie": cookie})
                assert status != 200, f"{method} {spelling}"
                status, _ = _get(hosted.url, spelling, method=method)
                assert status != 200, f"{method} {spelling} with no cookie"
    # Anything else of the data directory is never served, to anyone.
    db = hosted.settings.home / "studio.db"
    for spelling in _spellings(str(db))[:3]:
        assert _get(hosted.url, spelling, headers=owner)[0] != 200
    # And a stranger cannot tell a stored image, or the data directory, from a file that is not
    # there: both answered alike (a stored image was 404, one not there Gradio's 403: review
    # 37 F1).
    absent = stored.with_name("0" * 64 + stored.suffix)
    elsewhere = hosted.settings.home.parent / "not-the-home" / "studio.db"
    # Nor any other file of the host's from one that is not there (Gradio's "not allowed" for
    # the first, review 38 F4).
    here = Path(__file__)
    for there, not_there in (
        (stored, absent),
        (db, elsewhere),
        (here, here.with_name("no-such-file.py")),
    ):
        assert _get(hosted.url, f"/gradio_api/file={there}") == _get(
            hosted.url, f"/gradio_api/file={not_there}"
        )


def _raw_answer(url: str, endpoint: str, data: list[object], headers: dict[str, str]) -> str:
    """An endpoint's whole answer as a REST caller reads it (Gradio's two-step /call route)."""
    posted = httpx.post(
        f"{url}gradio_api/call/{endpoint}", json={"data": data}, headers=headers, timeout=30
    )
    event_id = posted.json()["event_id"]
    answer = httpx.get(f"{url}gradio_api/call/{endpoint}/{event_id}", headers=headers, timeout=60)
    assert "event: complete" in answer.text, answer.text
    return answer.text


def test_a_callers_forwarded_host_is_believed_only_behind_a_proxy_the_host_named(
    hosted, sim, clean_env
):
    """An image address is where the caller reached the studio. A caller's own
    X-Forwarded-Host named any host there (an agent fetching it with its key would send the
    key to that host: review 10 F5); behind a proxy the host named, the proxy's is believed."""
    forged = {"X-RunAPI-Key": sim.api_key, "X-Forwarded-Host": "elsewhere.invalid"}
    forged["X-Forwarded-Proto"] = "https"
    uri = "data:image/png;base64," + base64.b64encode(make_image(64, 48)).decode()
    edit = [uri, "make it blue", "pro", "match", "", "", "", False]
    answer = _raw_answer(hosted.url, "edit_image", edit, forged)
    assert "elsewhere.invalid" not in answer
    assert f"{hosted.url.rstrip('/')}{IMAGE_ROUTE}" in answer
    proxy = {"visitor_keys": True, "proxy_hops": 1}
    with running_studio(sim, clean_env / "proxied", hosted=True, **proxy) as proxied:
        via = {**forged, "X-Forwarded-For": "203.0.113.9"}  # (a name, never connected to)
        answer = _raw_answer(proxied.url, "edit_image", edit, via)
        assert f"https://elsewhere.invalid{IMAGE_ROUTE}" in answer


def test_a_clients_forwarded_host_never_reaches_the_apis_description(hosted):
    """With no proxy the host named, the first request's X-Forwarded-Host named the studio in
    the API's description Gradio keeps: every visitor's "Use via API" then pointed at the
    client's host (review 38 F3)."""
    info = f"{hosted.url}gradio_api/info"
    forged = {"X-Forwarded-Host": "elsewhere.invalid", "X-Forwarded-Proto": "https"}
    forged["Forwarded"] = "host=elsewhere.invalid;proto=https"
    for asked in ("", "?all_endpoints=true"):
        assert "elsewhere.invalid" not in httpx.get(f"{info}{asked}", headers=forged).text
        assert "elsewhere.invalid" not in httpx.get(f"{info}{asked}").text
    assert urlsplit(hosted.url).netloc in httpx.get(info).text  # (the snippets name the studio)


def _snippet_hosts(client: httpx.Client, url: str, headers: dict[str, str]) -> set[str]:
    """The hosts the API description's Python snippets name (`Client("...")`), whatever the
    encoding the answer came in."""
    answer = client.get(url, headers=headers)
    assert answer.status_code == 200
    return set(re.findall(r'Client\("([^"]+)"\)', json.dumps(answer.json()).replace("\\", "")))


@pytest.mark.parametrize("auth", [False, True], ids=["open", "signed-in"])
def test_the_first_askers_host_never_reaches_anyone_elses_api_description(sim, clean_env, auth):
    """Gradio makes the API's description once, from the first request that asks, and names in
    its snippets the host that request gave (its Host, or X-Gradio-Server, behind any proxy):
    a stranger asking first after a start pointed every visitor's "Use via API" at their host,
    where a caller adds their key (review 39 F1). Each answer names its own asker's host."""
    with running_studio(
        sim, clean_env, hosted=True, auth=(("alice", Secret("s3cret")),) if auth else ()
    ) as s:
        base = s.url.rstrip("/")
        honest = urlsplit(s.url).netloc
        with httpx.Client() as visitor:
            visitor.get(s.url)  # (the visitor's token)
            if auth:
                right = {"username": "alice", "password": "s3cret"}
                assert visitor.post(f"{base}/login", data=right).status_code == 200
            # (Each route that makes Gradio's description, asked first with a stranger's host.)
            forged = {"Host": "elsewhere.invalid", "X-Gradio-Server": "https://elsewhere.invalid"}
            for path in ("/gradio_api/openapi.json", "/gradio_api/info", "/gradio_api/info?page=x"):
                visitor.get(f"{base}{path}", headers=forged)
            visitor.post(f"{base}/gradio_api/call/v2/list_sessions", json={}, headers=forged)
            for encoding in ("br", "gzip", "identity"):
                for path in ("/gradio_api/info", "/gradio_api/info?page="):
                    asked = {"Accept-Encoding": encoding}
                    named = _snippet_hosts(visitor, f"{base}{path}", asked)
                    assert named == {f"http://{honest}"}
                    other = {**asked, "Host": "other.example:99"}
                    named = _snippet_hosts(visitor, f"{base}{path}", other)
                    assert named == {"http://other.example:99"}
            assert "elsewhere" not in visitor.get(f"{base}/gradio_api/openapi.json").text


def test_api_image_addresses_name_no_server_path_and_serve_only_their_caller(hosted, sim):
    owner = {"X-RunAPI-Key": sim.api_key}
    client = Client(hosted.url, verbose=False, headers=owner)
    uri = "data:image/png;base64," + base64.b64encode(make_image(64, 48)).decode()
    image, text = client.predict(uri, "make it blue", "pro", "match", "", api_name="/edit_image")
    made = json.loads(text)
    url = made["image_url"]
    assert urlsplit(url).path.startswith(IMAGE_ROUTE)
    assert str(hosted.settings.home) not in url
    assert "/tmp" not in url
    session = hosted.run(hosted.engine.load_session(made["session_id"]))
    stored = hosted.image_bytes(session.current.result)
    assert Path(image).read_bytes() == stored  # gradio_client fetched it, through that address
    served = httpx.get(url, headers=owner)
    assert served.content == stored
    # For the caller's own browser only: a shared cache keeps it for no next asker.
    assert served.headers["cache-control"].startswith("private")
    assert {"Cookie", "X-RunAPI-Key"} <= set(served.headers["vary"].replace(" ", "").split(","))
    assert httpx.get(url).status_code == 404
    stranger = httpx.Client()
    stranger.get(hosted.url)
    assert stranger.get(url).status_code == 404
    # The whole answer, image included, names no folder of the server; the image it gives is
    # that address, which Gradio's file route answers (for gradio_client) to its owner alone.
    continued = [made["session_id"], "add rain", "pro", "match", "", "", False]
    answer = _raw_answer(hosted.url, "continue_session", continued, owner)
    for folder in (hosted.settings.home, os.environ["GRADIO_TEMP_DIR"], "/tmp/", "/home/"):
        assert str(folder) not in answer
    image_data, summary = json.loads(answer.split("data: ", 1)[1].split("\n", 1)[0])
    assert image_data["path"] == image_data["url"] == json.loads(summary)["image_url"]
    via_file_route = f"{hosted.url}gradio_api/file={image_data['url']}"
    assert httpx.get(via_file_route, headers=owner).status_code == 200
    assert httpx.get(via_file_route).status_code == 404
    assert stranger.get(via_file_route).status_code == 404
    # Passed back, the address continues the session from that step.
    _, text = client.predict(url, "add snow", "pro", "match", "", api_name="/edit_image")
    assert json.loads(text)["session_id"] == made["session_id"]
    client.close()


def test_an_api_export_is_at_an_address_that_names_no_server_path(hosted, sim, tmp_path):
    owner = {"X-RunAPI-Key": sim.api_key}
    client = Client(hosted.url, verbose=False, headers=owner, download_files=str(tmp_path))
    uri = "data:image/png;base64," + base64.b64encode(make_image(64, 48)).decode()
    _, text = client.predict(uri, "make it blue", "pro", "match", "", api_name="/edit_image")
    sid = json.loads(text)["session_id"]
    answer = _raw_answer(hosted.url, "export_session", [sid], owner)
    for folder in (hosted.settings.home, os.environ["GRADIO_TEMP_DIR"], "/tmp/", "/home/"):
        assert str(folder) not in answer  # (it named the temporary directory's: review 30 F2)
    (data,) = json.loads(answer.split("data: ", 1)[1].split("\n", 1)[0])
    url = data["url"]
    assert data["path"] == url
    assert urlsplit(url).path.startswith("/studio/export/")
    assert url.endswith(f"/session-{sid[:8]}.zip")
    fetched = httpx.get(url)  # a link for whoever holds it, as the page's export link is
    assert fetched.status_code == 200
    assert fetched.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(fetched.content)) as archive:
        assert "session.json" in archive.namelist()
    assert sim.api_key.encode() not in fetched.content
    # gradio_client fetches it through the file route, as it fetches every file.
    saved = client.predict(sid, api_name="/export_session")
    assert Path(saved).name == f"session-{sid[:8]}.zip"
    assert zipfile.is_zipfile(saved)
    folder, name = urlsplit(url).path.split("/")[-2:]
    guessed = folder[:-4] + ("AAAA" if folder[-4:] != "AAAA" else "BBBB")
    for wrong in (
        url.replace(folder, guessed),
        url.replace(name, "session.json"),
        url.replace(f"{folder}/", f"{folder}/../"),
        url.replace(f"{folder}/", ".live/"),
    ):
        assert httpx.get(wrong).status_code == 404
    assert httpx.post(url).status_code == 404
    # Its file is not served by Gradio's file route, whose address named the server's temporary
    # directory (review 57 L2), not even to its owner.
    import tempfile

    # (The export gradio_client asked for replaced the first.)
    (on_disk,) = Path(tempfile.gettempdir()).glob(f"kontext-studio-exports-*/*/{name}")
    assert httpx.get(url.replace(folder, on_disk.parent.name)).status_code == 200
    for route in ("gradio_api/file=", "gradio_api/file/"):
        assert httpx.get(f"{hosted.url}{route}{on_disk}", headers=owner).status_code == 404
    client.close()


def _upload(url: str, data: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    files = {"files": ("photo.png", data, "image/png")}
    return httpx.post(f"{url}gradio_api/upload", files=files, headers=headers or {}, timeout=30)


def _gradio_files_since(start: float) -> list[Path]:
    folder = Path(os.environ["GRADIO_TEMP_DIR"])
    return [p for p in folder.rglob("*") if p.is_file() and p.stat().st_mtime >= start]


def test_uploads_are_kept_only_for_a_known_visitor_and_served_only_to_them(hosted, sim):
    start = time.time() - 1
    data = make_image(80, 60)
    bare = _upload(hosted.url, data)
    assert bare.status_code == 403
    assert "open the studio's page" in bare.text
    assert _gradio_files_since(start) == []  # nothing kept
    stranger = httpx.Client(base_url=hosted.url)
    stranger.get("/")
    cookie = {"Cookie": "; ".join(f"{k}={v}" for k, v in stranger.cookies.items())}
    kept = _upload(hosted.url, data, cookie)
    assert kept.status_code == 200
    (path,) = kept.json()
    assert _get(hosted.url, f"/gradio_api/file={path}", headers=cookie)[0] == 200
    owner = {"X-RunAPI-Key": sim.api_key}
    assert _get(hosted.url, f"/gradio_api/file={path}", headers=owner)[0] == 404


def test_an_upload_past_the_visitors_share_is_refused_and_not_kept(sim, clean_env):
    data = make_image(200, 150, fmt="BMP")
    with running_studio(sim, clean_env, hosted=True, visitor_upload_bytes=len(data) + 1000) as s:
        visitor = httpx.Client(base_url=s.url)
        visitor.get("/")
        cookie = {"Cookie": "; ".join(f"{k}={v}" for k, v in visitor.cookies.items())}
        assert _upload(s.url, data, cookie).status_code == 200
        time.sleep(0.5)  # the first upload's file is in place (Gradio moves it after answering)
        start = time.time()
        # The first is still waiting for its handler: it counts, so a second does not fit.
        again = _upload(s.url, data, cookie)
        assert again.status_code == 413
        assert "does not fit" in again.text
        assert _gradio_files_since(start) == []


def test_images_the_page_and_the_api_show_are_not_copied_into_gradios_cache(hosted, sim):
    start = time.time() - 1
    # The client's own downloads would land in the same folder (GRADIO_TEMP_DIR): none here.
    client = Client(
        hosted.url, verbose=False, headers={"X-RunAPI-Key": sim.api_key}, download_files=False
    )
    uri = "data:image/png;base64," + base64.b64encode(make_image(64, 40)).decode()
    _, text = client.predict(uri, "make it red", "pro", "match", "", api_name="/edit_image")
    client.close()
    session = hosted.run(hosted.engine.load_session(json.loads(text)["session_id"]))
    name = hosted.engine.image_path(session.current.result).name
    assert [p for p in _gradio_files_since(start) if p.name == name] == []


def test_gradios_monitoring_is_off_unless_asked_for(hosted):
    visitor = httpx.Client(base_url=hosted.url)
    visitor.get("/")
    assert visitor.get("/monitoring/summary").status_code == 403
    assert visitor.get("/monitoring").status_code == 403


def test_gradio_summarises_its_events_only_for_a_monitoring_page(sim, clean_env):
    """Gradio made a pandas summary of its last 10,000 events after every event, read only by
    its monitoring page: a flood of cheap events made every other visitor's page twenty times
    slower. Without monitoring it is never made; with it, the page still shows the counts."""
    for monitoring in (True, False):
        with running_studio(sim, clean_env / str(monitoring), monitoring=monitoring) as s:
            client = Client(s.url, verbose=False, download_files=False)
            for _ in range(3):
                client.predict(api_name="/list_sessions")
            client.close()
            queue = s.demo._queue
            assert queue.events_recorded >= 3
            summary = httpx.get(s.url.rstrip("/") + "/monitoring/summary")
            if monitoring:
                assert "list_sessions" in summary.json()["functions"]
            else:
                assert summary.status_code != 200
                assert queue.cached_event_analytics_summary == {"functions": {}}


def _visitor(url: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60)
    client.get("/")  # the page sets the visitor's signed cookie
    client.headers.update(_cookie(client))  # sent as the browser sends it
    return client


def _run_event(
    client: httpx.Client, api_name: str, data: list[object], event: object = None
) -> dict[str, object]:
    """Run one of the page's events as the page does (join the queue, read its answers);
    `event`: what the page's click sends with it (`gr.EventData`)."""
    config = client.get("/config").json()
    (dep,) = [d for d in config["dependencies"] if d.get("api_name") == api_name]
    session_hash = os.urandom(6).hex()
    joined = client.post(
        "/gradio_api/queue/join",
        json={
            "data": data,
            "fn_index": dep["id"],
            "trigger_id": dep["targets"][0][0],
            "session_hash": session_hash,
            "event_data": event,
        },
    )
    assert joined.status_code == 200, joined.text
    with client.stream(
        "GET", "/gradio_api/queue/data", params={"session_hash": session_hash}
    ) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:") and "process_completed" in line:
                return json.loads(line[5:])
    raise AssertionError("the event never completed")


def _sessions(client: httpx.Client) -> dict[str, list[object]]:
    """The visitor's sessions, as the API lists them to the same visitor."""
    api = Client(str(client.base_url), headers=_cookie(client), verbose=False)
    try:
        return json.loads(api.predict(api_name="/list_sessions"))
    finally:
        api.close()


def _cookie(client: httpx.Client) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in client.cookies.items())}


def test_an_upload_event_takes_only_the_visitors_own_upload(hosted, sim):
    """A path is no secret (a stored image's is in the API's raw answers): another visitor
    naming someone's waiting upload, or a stored image, in the page's upload event gets one
    sentence and nothing else; the owner's upload is still there for them."""
    alice, bob = _visitor(hosted.url), _visitor(hosted.url)
    kept = _upload(hosted.url, make_image(90, 70), _cookie(alice))
    (path,) = kept.json()
    upload = {"path": path, "orig_name": "photo.png", "meta": {"_type": "gradio.FileData"}}
    taken = _run_event(bob, "on_source", [None, None, upload])
    assert "no longer here" in json.dumps(taken)
    assert Path(path).is_file()  # not taken from Alice, nor deleted
    mine = _run_event(alice, "on_source", [None, None, upload])
    assert mine["success"] is True
    (stored,) = [p for p in Path(os.environ["KONTEXT_STUDIO_HOME"]).rglob("images/*/*.png")]
    stolen = {"path": str(stored), "orig_name": "x.png", "meta": {"_type": "gradio.FileData"}}
    refused = _run_event(bob, "on_source", [None, None, stolen])
    assert "no longer here" in json.dumps(refused)
    assert stored.is_file()
    assert _sessions(bob) == {"sessions": []}
    assert len(_sessions(alice)["sessions"]) == 1


def test_two_visitors_uploading_the_same_photo_at_once_each_keep_their_own(hosted, sim):
    """The same bytes under the same name (a photo two people both have), sent at once: each
    visitor's upload is their own file, so neither answer fails, neither takes the other's
    place, and storing one removes only that one."""
    alice, bob = _visitor(hosted.url), _visitor(hosted.url)
    photo = make_image(90, 70)
    with ThreadPoolExecutor(4) as pool:
        sent = list(pool.map(lambda c: _upload(hosted.url, photo, _cookie(c)), [alice, bob] * 2))
    assert [r.status_code for r in sent] == [200] * 4
    paths = [r.json()[0] for r in sent]
    assert len(set(paths)) == 4
    for client, path in zip([alice, bob], paths[:2], strict=True):
        upload = {"path": path, "orig_name": "photo.png", "meta": {"_type": "gradio.FileData"}}
        assert _run_event(client, "on_source", [None, None, upload])["success"] is True
        assert not Path(path).exists()  # stored, so removed ...
    assert Path(paths[2]).is_file()  # ... and only that one
    assert Path(paths[3]).is_file()
    assert len(_sessions(alice)["sessions"]) == 1
    assert len(_sessions(bob)["sessions"]) == 1


def _abandon_upload(url: str, cookie: dict[str, str], declared: int, sent: int) -> None:
    """An upload whose client goes away after `sent` of the `declared` bytes."""
    import socket

    parts = urlsplit(url)
    boundary = "----abandoned"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
        'filename="big.png"\r\nContent-Type: image/png\r\n\r\n'
    ).encode()
    with socket.create_connection((parts.hostname, parts.port)) as connection:
        connection.sendall(
            (
                f"POST /gradio_api/upload HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                f"Cookie: {cookie['Cookie']}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {declared}\r\n\r\n"
            ).encode()
            + head
            + b"\0" * (sent - len(head))
        )
        time.sleep(0.5)  # the server has spooled what came; then the client is gone


def _spool_files() -> set[Path]:
    return {p for p in Path(os.environ["GRADIO_TEMP_DIR"]).iterdir() if p.is_file()}


def test_an_upload_abandoned_on_its_way_leaves_nothing_on_disk(hosted, monkeypatch):
    """Gradio keeps the file of an upload whose client went away; the studio removes it once
    nobody writes to it, and counts it against the visitor until then."""
    from studio.ui import guard

    monkeypatch.setattr(guard, "SPOOL_IDLE_S", 1.0, raising=False)
    visitor = _visitor(hosted.url)
    before = _spool_files()
    _abandon_upload(hosted.url, _cookie(visitor), 3 << 20, 1 << 20)
    deadline = time.monotonic() + 30
    while _spool_files() - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _spool_files() - before == set()
    # And the visitor uploads again as before.
    assert _upload(hosted.url, make_image(90, 70), _cookie(visitor)).status_code == 200


def _trickle_upload(url: str, cookie: dict[str, str], declared: int, every_s: float) -> str:
    """An upload declaring `declared` bytes whose client then sends one byte every `every_s`
    seconds until the studio answers; the answer, read until the studio closes the connection
    (a hang guard of 30 s, not a measure: a studio that never cuts it fails here)."""
    import select
    import socket

    parts = urlsplit(url)
    boundary = "----trickle"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
        'filename="slow.png"\r\nContent-Type: image/png\r\n\r\n'
    ).encode()
    with socket.create_connection((parts.hostname, parts.port)) as connection:
        connection.sendall(
            (
                f"POST /gradio_api/upload HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                f"Cookie: {cookie['Cookie']}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {declared}\r\n\r\n"
            ).encode()
            + head
        )
        deadline = time.monotonic() + 30
        while not select.select([connection], [], [], every_s)[0]:
            if time.monotonic() > deadline:
                return ""  # still open, still waiting for the rest
            connection.sendall(b"\0")
        connection.settimeout(30)
        answer = b""
        with contextlib.suppress(TimeoutError):
            while chunk := connection.recv(65536):
                answer += chunk
            return answer.decode(errors="replace") + "\n[closed]"
        return answer.decode(errors="replace")


def test_an_upload_that_trickles_in_is_cut_and_gives_its_room_back(sim, clean_env, monkeypatch):
    """An upload declaring most of the visitor's share, then sending a byte at a time, held its
    connection and that share for good (review 8 F4). It must keep the pace of every other
    body after its first seconds (here one second, for the test): it is cut with a sentence,
    its connection closed, and an honest upload of the same size then fits."""
    from studio.ui import guard

    monkeypatch.setattr(guard, "UPLOAD_GRACE_S", 1.0)
    noise = os.urandom(1_500_000)  # kept as it is: a file of 1.5 MB
    with running_studio(sim, clean_env, hosted=True, visitor_upload_bytes=2 << 20) as studio:
        visitor = _visitor(studio.url)
        answer = _trickle_upload(studio.url, _cookie(visitor), 1_600_000, 0.2)
        assert answer.startswith("HTTP/1.1 408"), answer[:200]
        assert guard.TOO_SLOW_UPLOAD in answer
        # Closed by the studio (not left open for the rest of the body).
        assert "connection: close" in answer.lower()
        assert answer.endswith("[closed]")
        # Its reservation is given back: 1.5 MB more fits the 2 MB share.
        honest = _upload(studio.url, noise, _cookie(visitor))
        assert honest.status_code == 200, honest.text
        assert Path(honest.json()[0]).stat().st_size == len(noise)


def test_visitors_from_one_address_share_its_room_for_uploads_waiting(sim, clean_env):
    """Fresh identities buy no fresh disk: uploads waiting for their handler count toward
    their address's share whichever identity sent them."""
    noise = os.urandom(1_500_000)  # kept as it is: a file of 1.5 MB
    with running_studio(
        sim,
        clean_env,
        hosted=True,
        visitor_upload_bytes=2 << 20,
        address_upload_bytes=(5 << 20) // 2,  # room for one such upload from the address
    ) as studio:
        first, second = _visitor(studio.url), _visitor(studio.url)
        assert _upload(studio.url, noise, _cookie(first)).status_code == 200
        refused = _upload(studio.url, noise, _cookie(second))
        assert refused.status_code == 413
        assert "network address" in refused.text
        # What the first sent is said (it waits for its handler: nothing is stored yet).
        assert re.search(
            r"keep 0 MB on this studio, and \d+ MB more are on their way", refused.text
        )


def test_gradios_routes_a_hosted_studio_does_not_use_answer_nothing(hosted):
    """Gradio's screen-recording route runs ffmpeg on any video it is sent, for anyone; the
    run history talks to the Hugging Face Hub; the reload stream of a studio in development is
    held open by anyone; the queue's status tells anyone how busy the studio is. A hosted studio
    answers none of them."""
    visitor = _visitor(hosted.url)
    video = {"video": ("clip.mp4", b"\0" * 1024, "video/mp4")}
    for client in (visitor, httpx.Client(base_url=hosted.url)):
        refused = client.post(
            "/gradio_api/process_recording",
            files=video,
            data={"remove_segment_start": "0", "remove_segment_end": "1"},
        )
        assert refused.status_code == 404
        for route in (
            "/gradio_api/run-history/records",
            "/gradio_api/runs",
            "/gradio_api/dev/reload",  # an endless stream, held by anyone
            "/gradio_api/profiling/traces",
            "/gradio_api/queue/status",  # how busy the studio is
        ):
            assert client.get(route).status_code == 404
    # The routes the page uses still answer.
    assert visitor.get("/config").status_code == 200


def test_a_visitor_has_a_bounded_number_of_uploads_waiting(hosted):
    """Uploads no handler has taken yet wait up to 15 minutes: one cookie piled up thousands of
    tiny ones, and every request slowed (each upload looked at every waiting one)."""
    visitor = _visitor(hosted.url)
    answers = [
        _upload(hosted.url, make_image(8 + n, 8), _cookie(visitor)).status_code
        for n in range(UPLOADS_WAITING_PER_VISITOR + 2)
    ]
    assert answers[:UPLOADS_WAITING_PER_VISITOR] == [200] * UPLOADS_WAITING_PER_VISITOR
    refused = _upload(hosted.url, make_image(5, 5), _cookie(visitor))
    assert refused.status_code == 429
    assert TOO_MANY_UPLOADS in refused.text
    # Another visitor uploads as before.
    assert _upload(hosted.url, make_image(6, 6), _cookie(_visitor(hosted.url))).status_code == 200


def test_an_upload_nobody_used_goes_though_nobody_uploads_again(hosted, monkeypatch):
    """Uploads no handler took were looked for only at the next upload: one nobody used stayed
    25 minutes and more on a quiet studio (review 19 F5)."""
    from studio.ui import guard

    monkeypatch.setattr(guard, "UPLOAD_TTL_S", 1.0)
    monkeypatch.setattr(guard, "STALE_LOOK_S", 0.1)
    monkeypatch.setattr(guard, "STALE_SWEEP_S", 0.5)
    answer = _upload(hosted.url, make_image(33, 22), _cookie(_visitor(hosted.url)))
    assert answer.status_code == 200
    waiting = Path(answer.json()[0])
    assert waiting.is_file()
    deadline = time.monotonic() + 30  # a hang guard, not a measure
    while waiting.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not waiting.exists()


def _roomy_draws(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Room for many draws at once in all (a fresh gate): a visitor's own turns are what is
    looked at."""
    import weakref

    from studio.ui import turns

    monkeypatch.setattr(turns, "DRAWS_AT_ONCE", 16)
    monkeypatch.setattr(turns, "_GATES", weakref.WeakKeyDictionary())


def _visitor_from(url: str, source: str) -> httpx.Client:
    """A visitor (its own cookie) whose requests come from loopback address `source`."""
    transport = httpx.HTTPTransport(local_address=source)
    client = httpx.Client(base_url=url, timeout=60, transport=transport)
    client.get("/")
    client.headers.update(_cookie(client))
    return client


def test_everyones_draws_take_turns_and_whoever_drew_least_goes_next(hosted, monkeypatch):
    """Each visitor's and address's turns fell to enough addresses: three drawing their own
    long sessions at their full pace made another visitor's edit 3.5 s (0.8 s alone) and their
    page 0.9 s (review 15 F1). The studio draws one at a time for everyone, the next place to
    the address that drew least lately, resting after a long draw."""
    import weakref

    from studio.ui import turns

    monkeypatch.setattr(turns, "_GATES", weakref.WeakKeyDictionary())
    drawing, most = [0], [0]
    real = hosted.bridge.page

    async def counted(session_id, who, **kw):  # type: ignore[no-untyped-def]
        drawing[0] += 1
        most[0] = max(most[0], drawing[0])
        try:
            await asyncio.sleep(0.3)  # a long session's draw
            return await real(session_id, who, **kw)
        finally:
            drawing[0] -= 1

    monkeypatch.setattr(hosted.bridge, "page", counted)
    heavy = [_visitor_from(hosted.url, f"127.0.0.{51 + n}") for n in range(3)]
    light = _visitor_from(hosted.url, "127.0.0.60")
    with ThreadPoolExecutor(10) as pool:
        loads = [
            pool.submit(_run_event, v, "on_load", [None, None, "", ""])
            for v in heavy
            for _ in "abc"
        ]
        time.sleep(1.0)
        lights = pool.submit(_run_event, light, "on_load", [None, None, "", ""])
        assert lights.result(timeout=60)["success"] is True
        assert sum(load.done() for load in loads) <= 4  # it went ahead of those waiting
        assert all(load.result(timeout=60)["success"] for load in loads)
    assert most[0] == turns.DRAWS_AT_ONCE == 1


def test_one_visitors_pages_are_drawn_a_few_at_a_time_and_others_go_meanwhile(hosted, monkeypatch):
    """A visitor's events in flight (here ten page loads at once) are drawn at most two at a
    time; the others wait their turn, and another visitor's page is drawn meanwhile (one cookie
    keeping 16 draws of a long session in flight took the CPU from everyone)."""
    from studio.ui import turns

    _roomy_draws(monkeypatch)
    drawing: dict[str | None, int] = {}
    most: dict[str | None, int] = {}
    real = hosted.bridge.page

    async def counted(session_id, who, **kw):  # type: ignore[no-untyped-def]
        drawing[who.owner] = drawing.get(who.owner, 0) + 1
        most[who.owner] = max(most.get(who.owner, 0), drawing[who.owner])
        try:
            await asyncio.sleep(1.0)  # a long session's draw
            return await real(session_id, who, **kw)
        finally:
            drawing[who.owner] -= 1

    monkeypatch.setattr(hosted.bridge, "page", counted)
    alice, bob = _visitor(hosted.url), _visitor(hosted.url)
    with ThreadPoolExecutor(11) as pool:
        loads = [pool.submit(_run_event, alice, "on_load", [None, None, "", ""]) for _ in range(10)]
        time.sleep(0.5)
        bobs = pool.submit(_run_event, bob, "on_load", [None, None, "", ""])
        assert bobs.result(timeout=60)["success"] is True
        assert not all(load.done() for load in loads)  # Bob did not wait for all of Alice's
        assert all(load.result(timeout=60)["success"] for load in loads)
    assert sorted(most.values()) == [1, turns.AT_ONCE]  # Bob's one; Alice's two


def _session_reads_counted(hosted, monkeypatch) -> dict[str | None, int]:  # type: ignore[no-untyped-def]
    """Make each session read of the studio take a second (a long session's), and count the
    most read at once for each visitor: the dict returned fills in as they run."""
    _roomy_draws(monkeypatch)
    reading: dict[str | None, int] = {}
    most: dict[str | None, int] = {}
    real = hosted.bridge.call

    async def counted(fn, *args, **kw):  # type: ignore[no-untyped-def]
        if fn is not hosted.engine.__class__.load_session:
            return await real(fn, *args, **kw)
        owner = kw["visitor"].owner
        reading[owner] = reading.get(owner, 0) + 1
        most[owner] = max(most.get(owner, 0), reading[owner])
        try:
            await asyncio.sleep(1.0)  # a long session's read
            return await real(fn, *args, **kw)
        finally:
            reading[owner] -= 1

    monkeypatch.setattr(hosted.bridge, "call", counted)
    return most


def test_one_visitors_folded_panels_opened_at_once_take_turns_too(hosted, monkeypatch):
    """Opening "Compare two steps" lists every finished step of the session: ten opened at
    once are read two at a time, and another visitor's page is drawn meanwhile."""
    from studio.ui import turns

    most = _session_reads_counted(hosted, monkeypatch)
    alice, bob = _visitor(hosted.url), _visitor(hosted.url)
    fold = {"act": "steps-box"}
    data = ["no-such-session", None, None, None, 2]
    with ThreadPoolExecutor(11) as pool:
        opened = [pool.submit(_run_event, alice, "on_fold", data, fold) for _ in range(10)]
        time.sleep(0.5)
        bobs = pool.submit(_run_event, bob, "on_load", [None, None, "", ""])
        assert bobs.result(timeout=60)["success"] is True
        assert not all(event.done() for event in opened)  # Bob did not wait for all of Alice's
        assert all(event.result(timeout=60)["success"] for event in opened)
    assert max(most.values()) == turns.AT_ONCE


def test_one_api_callers_session_reads_take_turns_too(hosted, sim, monkeypatch):
    """The same turns for an API or MCP caller's reads: ten `show_session` calls at once are
    answered two at a time, and another caller's list meanwhile."""
    from studio.ui import turns

    most = _session_reads_counted(hosted, monkeypatch)
    for account in ("sk-alice-account", "sk-bob-account"):  # two RunAPI accounts
        sim.accept_key(account)
    alice = Client(hosted.url, verbose=False, headers={"X-RunAPI-Key": "sk-alice-account"})
    bob = Client(hosted.url, verbose=False, headers={"X-RunAPI-Key": "sk-bob-account"})
    shows = [alice.submit("no-such-session", api_name="/show_session") for _ in range(10)]
    time.sleep(0.5)
    assert json.loads(bob.predict(5, api_name="/list_sessions"))["sessions"] == []
    assert not all(job.done() for job in shows)  # Bob did not wait for all of Alice's
    for job in shows:
        with contextlib.suppress(Exception):  # ("There is no such session": read, in turn)
            job.result(timeout=60)
    assert max(most.values()) == turns.AT_ONCE
    alice.close()
    bob.close()


def test_one_upload_request_carries_at_most_a_few_files(hosted):
    """The cap on a visitor's waiting uploads holds per file, not per request: one request of
    17 files is refused whole (review 8 F8: one request left 999 uploads waiting), and the
    visitor's next upload of one file is kept as usual."""
    from studio.ui.files import FILES_PER_UPLOAD

    visitor = httpx.Client(base_url=hosted.url)
    visitor.get("/")
    cookie = {"Cookie": "; ".join(f"{k}={v}" for k, v in visitor.cookies.items())}
    data = make_image(8, 8)
    many = [("files", (f"p{n}.png", data, "image/png")) for n in range(FILES_PER_UPLOAD + 1)]
    answer = httpx.post(f"{hosted.url}gradio_api/upload", files=many, headers=cookie, timeout=30)
    assert answer.status_code == 400
    assert f"Maximum number of files is {FILES_PER_UPLOAD}" in answer.text
    few = many[:FILES_PER_UPLOAD]
    answer = httpx.post(f"{hosted.url}gradio_api/upload", files=few, headers=cookie, timeout=30)
    assert answer.status_code == 200
    assert len(answer.json()) == FILES_PER_UPLOAD


def test_the_page_names_no_folder_of_the_server(hosted):
    """The page and its config (what every visitor's browser gets) carry no path of the
    installation or of the data directory: the examples' thumbnails are written into it."""
    install = str(Path(__file__).resolve().parents[2])
    folders = [install, str(hosted.settings.home), str(Path(hosted.settings.home).resolve())]
    cookie = {"Cookie": f"kontext_visitor={httpx.get(hosted.url).cookies['kontext_visitor']}"}
    base = hosted.url.rstrip("/")
    for route in ("/", "/config"):
        text = httpx.get(base + route, headers=cookie, timeout=20).text
        for folder in folders:
            assert folder not in text, (route, folder)
            assert quote(folder) not in text, (route, folder)
    examples = json.loads(httpx.get(base + "/config", headers=cookie, timeout=20).text)
    shown = [c for c in examples["components"] if c.get("props", {}).get("elem_id") == "examples"]
    assert shown
    assert shown[0]["props"]["value"].count("data:image/webp;base64,") == 4


def test_a_file_left_in_gradios_upload_folder_is_served_to_nobody(hosted):
    """An upload from before a restart (its record went with the process), or another
    program's file in Gradio's shared upload folder, was served to anyone who had its path
    (review 12 F3): nobody's to read through a hosted studio."""
    from gradio.utils import get_upload_folder

    left = Path(get_upload_folder()) / os.urandom(16).hex() / "private-photo.png"
    left.parent.mkdir(parents=True)
    left.write_bytes(make_image(32, 32))
    try:
        stranger = _visitor(hosted.url)
        for spelling in _spellings(str(left))[:2]:
            assert _get(hosted.url, spelling)[0] != 200, spelling
            cookie = {"Cookie": stranger.headers["cookie"]}
            assert _get(hosted.url, spelling, headers=cookie)[0] != 200, spelling
    finally:
        left.unlink()
        left.parent.rmdir()


def test_the_exports_folders_own_files_are_served_to_nobody(hosted):
    """The exports folder is served for the exports in it; its lock file (`.live`), named by
    the folder every export answer shows, was served to anyone (review 17 L2)."""
    import tempfile

    locks = list(Path(tempfile.gettempdir()).glob("kontext-studio-exports-*/.live"))
    assert locks  # (this studio's among them)
    for lock in locks:
        assert _get(hosted.url, f"/gradio_api/file={lock}")[0] != 200, lock
