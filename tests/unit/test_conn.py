"""A hosted studio's connections per network address, checked by classifying peer addresses
(`ConnectionRules.admit`); nothing connects from the addresses named here."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from studio.ui.conn import CONNECTIONS_PER_ADDRESS, ConnectionRules


class Protocol:
    """A connection's protocol as the rules ask it: idle between requests, or not."""

    def __init__(self) -> None:
        self.between_requests = False

    def idle(self) -> bool:
        return self.between_requests


class Transport(asyncio.BaseTransport):
    """A connection's transport as the rules see it: open until closed."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False
        self.protocol = Protocol()

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_protocol(self) -> Protocol:  # type: ignore[override]
        return self.protocol


def _admitted(rules: ConnectionRules, addresses: list[str]) -> list[Transport]:
    kept = []
    for address in addresses:
        transport = Transport()
        if rules.admit(address, transport):
            kept.append(transport)
    return kept


def _addresses_of_one_48(count: int, network: str = "2001:db8:1::/48") -> list[str]:
    """`count` addresses spread over the /64s of one /48."""
    block = ipaddress.ip_network(network)
    return [str(block[(n * 7919 + 1) % 65536 << 64 | n + 1]) for n in range(count)]


def test_an_ipv6_clients_addresses_of_one_48_share_its_connections():
    """A site gets a whole /48 and may connect from any address of any /64 in it: 2,000
    connections from 2,000 of them were all kept, under a cap of 256 per address."""
    rules = ConnectionRules(per_address=True)
    kept = _admitted(rules, _addresses_of_one_48(2000))
    assert len(kept) == CONNECTIONS_PER_ADDRESS
    # The neighbouring /48 is another client, with a cap of its own.
    neighbour = _admitted(rules, _addresses_of_one_48(300, "2001:db8:2::/48"))
    assert len(neighbour) == CONNECTIONS_PER_ADDRESS
    # A connection that closes gives its place back, whichever address of the /48 it had.
    kept[0].close()
    rules.closed(_addresses_of_one_48(1)[0], kept[0])
    assert rules.admit("2001:db8:1:ffff:ffff:ffff:ffff:ffff", Transport())
    assert not rules.admit("2001:db8:1:2::abcd", Transport())


@pytest.mark.parametrize(
    ("spellings", "one_client"),
    [
        pytest.param(["198.51.100.7"], True, id="ipv4"),
        pytest.param(["198.51.100.7", "::ffff:198.51.100.7"], True, id="ipv4-and-mapped"),
        pytest.param(["2001:db8::1", "[2001:db8::2]", "2001:DB8::3"], True, id="ipv6-spellings"),
        pytest.param(["198.51.100.7", "198.51.100.8"], False, id="two-ipv4s"),
        pytest.param(["2001:db8:0:1::1", "2001:db8:0:2::1"], True, id="two-64s-of-one-48"),
        pytest.param(["2001:db8:1::1", "2001:db8:2::1"], False, id="two-48s"),
        pytest.param(["198.51.100.7:40000", "198.51.100.7:40001"], True, id="ipv4-with-ports"),
    ],
)
def test_an_address_is_one_client_however_it_is_spelled(spellings, one_client):
    rules = ConnectionRules(per_address=True)
    cycle = [spellings[n % len(spellings)] for n in range(2 * CONNECTIONS_PER_ADDRESS)]
    kept = _admitted(rules, cycle)
    expected = CONNECTIONS_PER_ADDRESS if one_client else 2 * CONNECTIONS_PER_ADDRESS
    assert len(kept) == expected


def test_without_the_rule_per_address_every_connection_is_kept():
    """Where every visitor comes through one proxy, the proxy's address is not bounded."""
    rules = ConnectionRules(per_address=False)
    assert len(_admitted(rules, ["198.51.100.7"] * 300)) == 300
    assert rules.open == {}


def test_at_the_total_a_new_connection_takes_the_place_of_one_waiting_for_headers_or_idle():
    """Four addresses of 256 half-open connections each used up a limit of 1,024 open files
    (review 20 F1): all addresses together hold at most `most`. Past it, a connection still
    waiting for a request's headers gives its place up, the oldest first, else one idle
    between requests; one with a request under way never does, whoever holds the most (closing
    the most crowded address's let 130 addresses of 4 make a browser's six the ones closed:
    review 21 F3)."""
    rules = ConnectionRules(per_address=True, most=10)
    browser = _admitted(rules, ["10.0.0.1"] * 6)  # a browser's six, each with a request on
    browser[0].protocol.between_requests = True  # one of them idle, kept alive
    spread = _admitted(rules, [f"10.1.0.{n}" for n in range(4)])  # half-open, one an address
    for transport in spread:
        rules.waiting(transport, True)
    assert rules.total == 10
    newcomers = []
    for n in range(8):  # each takes the place of the one waiting longest
        newcomer = Transport()
        assert rules.admit(f"10.2.0.{n}", newcomer)
        rules.waiting(newcomer, True)
        newcomers.append(newcomer)
    assert all(t.closing for t in spread)
    assert [t.closing for t in newcomers] == [True] * 4 + [False] * 4
    assert not any(t.closing for t in browser)
    for newcomer in newcomers[4:]:  # their headers came: a request under way each
        rules.waiting(newcomer, False)
    assert rules.admit("10.3.0.1", Transport())  # for the browser's idle one
    assert [t.closing for t in browser] == [True] + [False] * 5
    assert not rules.admit("10.3.0.2", Transport())  # nothing to close: the new one is
    assert not any(t.closing for t in browser[1:])
    assert rules.total == 10
    # A connection that closes by itself gives its place back.
    browser[1].close()
    rules.closed("10.0.0.1", browser[1])
    assert rules.admit("10.3.0.2", Transport())
    assert rules.total == 10


def test_the_studio_raises_its_open_files_limit_and_keeps_some_for_its_own_files():
    """A service's soft limit is often 1,024; the studio raises it to the hard limit, and
    connections get what is left once its own files have theirs."""
    import subprocess
    import sys

    script = (
        "import resource\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "from studio.ui.conn import open_files_room\n"
        "room = open_files_room()\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard, room)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))\n"
        "print(open_files_room())\n"
    )
    raised, low = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    soft, hard, room = (int(n) for n in raised.split())
    assert soft == min(hard, 1_048_576)
    assert 0 < room <= soft - 256
    assert int(low) == 64  # a hard limit of 256: a quarter for connections
