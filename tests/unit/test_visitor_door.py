"""Who is asking: signed visitor tokens, two cookies of one name, the client's address, the
cookie's attributes and new visitors per address. Pure rules, checked by classifying."""

from __future__ import annotations

import pytest

from studio.limits import LimitError, Limits, LimitSettings
from studio.ui.visitor import (
    STAMP_S,
    IdentityRate,
    KeyRate,
    _mac,
    _stamp,
    _stamped,
    client_address,
    cookie_attributes,
    counted_token,
    forwarded_for,
    from_another_site,
    new_token,
    token_id,
    valid_token_id,
)

SECRET = b"0123456789abcdef0123456789abcdef"


def test_a_token_the_studio_signed_names_its_visitor_and_a_forged_one_names_nobody():
    token = new_token(SECRET)
    ident = token_id(token, SECRET)
    assert ident is not None
    assert ident in token
    version, ident_part, mac = token.split(".")
    forged = [
        "A" * 32,  # the old unsigned kind, accepted by any studio before
        "A" * 64,
        f"{version}.{'A' * 32}.{mac}",  # another id under a stolen signature
        f"{version}.{ident_part}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}",
        f"v2.{ident_part}.{mac}",
        f"{version}.{ident_part}.",
        "",
    ]
    assert [token_id(f, SECRET) for f in forged] == [None] * len(forged)
    assert token_id(token, b"another studio's secret, 32 bytes") is None


def test_no_other_signature_the_studio_makes_passes_for_a_new_visitors_token():
    """A counted token's MAC is the MAC of "counted:<id>": relabelled "v1.counted:<id>.<mac>"
    it was a valid token of a new visitor, minted from the old one (review 19, noted); an
    address stamp's ("address:<text>") the same."""
    ident = token_id(new_token(SECRET), SECRET)
    counted = counted_token(ident, SECRET)
    assert token_id(counted, SECRET) == ident
    _, _, mac = counted.split(".")
    assert token_id(f"v1.counted:{ident}.{mac}", SECRET) is None
    text = "2001:db8:1234::/48-and-long-enough-to-be-an-id"
    stamp_text, _, stamp_mac = _stamp(text).rpartition("|")
    assert token_id(f"v1.address:{stamp_text}.{stamp_mac}", SECRET) is None


def test_an_address_stamp_is_believed_for_a_minute_and_only_as_this_process_signed_it():
    """The stamp the door hands Gradio's own MCP client was good for ever, under the tokens'
    secret: one that reached anyone would have passed the door's checks (review 30 F3)."""
    stamp = _stamp("203.0.113.7", now=1_000_000)
    assert _stamped(stamp, now=1_000_030) == "203.0.113.7"
    assert _stamped(stamp, now=1_000_000 + STAMP_S + 1) is None
    assert _stamped(stamp.replace("203.0.113.7", "198.51.100.1"), now=1_000_000) is None
    made = "203.0.113.7|1000000"
    assert _stamped(f"{made}|{_mac(SECRET, 'address:' + made)}", now=1_000_000) is None


def test_two_cookies_of_that_name_name_the_visitor_of_the_one_valid_token_and_two_name_nobody():
    token = new_token(SECRET)
    ident = token_id(token, SECRET)
    forged = "v1." + "B" * 32 + ".xyz"
    assert valid_token_id(f"kontext_visitor={forged}; kontext_visitor={token}", SECRET) == ident
    assert valid_token_id(f"kontext_visitor={token}; kontext_visitor={forged}", SECRET) == ident
    assert valid_token_id(f"other=1; kontext_visitor={token}; x=2", SECRET) == ident
    assert valid_token_id(f"kontext_visitorx={token}", SECRET) is None
    assert valid_token_id(f"kontext_visitor={forged}", SECRET) is None
    assert valid_token_id(f"kontext_visitor={token}; kontext_visitor={token}", SECRET) == ident
    # Two different valid ones (one put there by another site under the same domain): neither.
    other = new_token(SECRET)
    assert valid_token_id(f"kontext_visitor={other}; kontext_visitor={token}", SECRET) is None
    assert valid_token_id(f"kontext_visitor={token}; kontext_visitor={other}", SECRET) is None


@pytest.mark.parametrize(
    ("peer", "forwarded", "hops", "expected"),
    [
        ("203.0.113.7", None, 0, "203.0.113.7"),
        ("203.0.113.7", "198.51.100.1", 0, "203.0.113.7"),  # no proxy trusted: header ignored
        ("10.0.0.2", "198.51.100.1", 1, "198.51.100.1"),
        ("10.0.0.2", "1.2.3.4, 198.51.100.1", 1, "198.51.100.1"),  # what the client wrote: left
        ("10.0.0.2", "198.51.100.1, 10.0.0.9", 2, "198.51.100.1"),
        ("10.0.0.2", None, 1, "10.0.0.2"),
        ("2001:db8:1:2:3:4:5:6", None, 0, "2001:db8:1::/48"),
        ("2001:db8:1:ffff::1", None, 0, "2001:db8:1::/48"),  # one site's /48, any /64 of it
        ("2001:db8:2::1", None, 0, "2001:db8:2::/48"),  # the next /48: another site
        # A proxy that writes the port: the address without it, not a new address each time.
        ("10.0.0.2", "198.51.100.8:40001", 1, "198.51.100.8"),
        ("10.0.0.2", "[2001:db8:1:2::5]:443", 1, "2001:db8:1::/48"),
        ("10.0.0.2", "garbage", 1, "unreadable"),  # one key for whatever is no address
        ("10.0.0.2", "198.51.100.8:http", 1, "unreadable"),
        ("::ffff:198.51.100.1", None, 0, "198.51.100.1"),
        (None, None, 0, None),
    ],
)
def test_the_clients_address_trusts_only_the_configured_proxies(peer, forwarded, hops, expected):
    assert client_address(peer, forwarded, proxy_hops=hops) == expected


def test_a_client_cannot_choose_its_address_with_a_header_line_of_its_own():
    """A proxy that adds its own X-Forwarded-For line (rather than extend the client's) is
    read as one that extends it: the client's line is to the left, whatever it says."""
    headers = [
        (b"host", b"studio.example"),
        (b"x-forwarded-for", b"1.2.3.4"),  # written by the client
        (b"X-Forwarded-For", b"198.51.100.1"),  # added by the proxy
    ]
    assert forwarded_for(headers) == "1.2.3.4, 198.51.100.1"
    assert client_address("10.0.0.2", forwarded_for(headers), proxy_hops=1) == "198.51.100.1"
    assert forwarded_for([(b"host", b"studio.example")]) is None


def test_the_cookie_is_secure_and_works_in_a_frame_wherever_the_browser_allows_it():
    assert "Secure" in cookie_attributes(https=True, host="studio.example.org")
    assert "SameSite=None" in cookie_attributes(https=True, host="studio.example.org")
    assert "Partitioned" in cookie_attributes(https=True, host="studio.example.org")
    for loopback in ("localhost", "127.0.0.1", "::1"):
        assert "Partitioned" in cookie_attributes(https=False, host=loopback)
    plain = cookie_attributes(https=False, host="192.168.1.20")  # bare HTTP on a LAN
    assert "Secure" not in plain
    assert "SameSite=Lax" in plain
    assert all("HttpOnly" in cookie_attributes(https=h, host="x.org") for h in (True, False))


def test_one_address_becomes_a_bounded_number_of_new_visitors_an_hour():
    now = [0.0]
    rate = IdentityRate(3, clock=lambda: now[0])
    assert [rate.allow("198.51.100.1") for _ in range(4)] == [True, True, True, False]
    assert rate.allow("198.51.100.2")  # another address has its own count
    now[0] += 3600
    assert rate.allow("198.51.100.1")


def test_each_key_new_to_an_address_counts_as_a_new_visitor_of_it_once():
    rate = IdentityRate(2)
    keys = KeyRate(rate)
    here = "198.51.100.1"
    assert keys.allow("sk-one", here)
    assert all(keys.allow("sk-one", here) for _ in range(5))  # a known key: no new visitor
    assert keys.allow("sk-two", here)
    assert not keys.allow("sk-three", here)  # made-up keys buy no fresh visitors
    assert not rate.has_room(here)
    assert keys.allow("sk-three", "203.0.113.7")


def test_fresh_visitors_from_one_address_share_that_addresss_budget():
    caps = Limits(LimitSettings(visitor_budget_cents=10, max_running=100, per_minute=100))
    here, there = "198.51.100.1", "203.0.113.7"
    for n in range(3):  # three visitors' budgets per address by default
        caps.admit(f"fresh-{n}", [f"s{n}"], 10, server_key=True, address=here)
    with pytest.raises(LimitError, match="network address"):
        caps.admit("fresh-3", ["s3"], 5, server_key=True, address=here)
    caps.admit("fresh-3", ["s4"], 5, server_key=False, address=here)  # their own key: fine
    caps.admit("fresh-4", ["s5"], 10, server_key=True, address=there)
    host_set = Limits(LimitSettings(visitor_budget_cents=10, address_budget_cents=15))
    host_set.admit("a", ["1"], 10, server_key=True, address=here)
    with pytest.raises(LimitError, match="network address"):
        host_set.admit("b", ["2"], 10, server_key=True, address=here)


_POSTED = "POST"


@pytest.mark.parametrize(
    ("headers", "elsewhere"),
    [
        ({"sec-fetch-site": "same-origin", "sec-fetch-mode": "cors"}, False),  # its own page
        ({"sec-fetch-site": "none", "sec-fetch-mode": "navigate"}, False),  # typed in
        ({"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"}, False),  # framed
        ({"sec-fetch-site": "cross-site", "sec-fetch-mode": "cors"}, True),
        ({"sec-fetch-site": "same-site", "sec-fetch-mode": "no-cors"}, True),  # a sibling host
        ({}, False),  # a client of its own (gradio_client, MCP, curl)
        ({"host": "studio.example", "origin": "https://studio.example"}, False),
        ({"host": "studio.example", "origin": "https://other.example"}, True),
        ({"host": "studio.example", "origin": "null"}, True),  # a sandboxed frame
        # Another site's form, posted to the studio: a navigation, but no opening of it.
        ({"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate", "m": _POSTED}, True),
        ({"sec-fetch-site": "same-site", "sec-fetch-mode": "navigate", "m": _POSTED}, True),
        ({"sec-fetch-site": "same-origin", "sec-fetch-mode": "navigate", "m": _POSTED}, False),
        ({"host": "studio.example", "origin": "https://other.example", "m": _POSTED}, True),
    ],
)
def test_a_request_made_for_another_sites_page_is_told_apart(headers, elsewhere):
    sent = dict(headers)
    method = sent.pop("m", "GET")
    assert from_another_site(sent, method) is elsewhere
