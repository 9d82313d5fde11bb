"""The RunAPI client's cookie store: it skips answers that set no cookie, and keeps the rest."""

from __future__ import annotations

import httpx

from studio.runapi.client import _Cookies, _HTTPClient

URL = "https://runapi.ai/api/v1/flux_kontext/text_to_image/t1"


def _answer(headers: dict[str, str]) -> httpx.Response:
    return httpx.Response(200, headers=headers, request=httpx.Request("GET", URL))


def test_a_cookie_is_kept_when_the_answer_sets_one() -> None:
    cookies = _Cookies()
    cookies.extract_cookies(_answer({"Set-Cookie": "route=a1; Path=/"}))
    assert cookies.get("route") == "a1"


def test_nothing_is_kept_when_the_answer_sets_no_cookie() -> None:
    cookies = _Cookies()
    cookies.extract_cookies(_answer({"Content-Type": "application/json"}))
    assert list(cookies.jar) == []


def test_the_pools_client_uses_the_store_also_when_given_cookies() -> None:
    client = _HTTPClient(cookies={"a": "1"})
    assert isinstance(client.cookies, _Cookies)
    assert client.cookies.get("a") == "1"
    client.cookies = {"b": "2"}
    assert isinstance(client.cookies, _Cookies)
    assert client.cookies.get("b") == "2"
