"""Keys pasted in a tab, held in memory under a token, over a reload of the tab."""

from __future__ import annotations

from studio.config import Secret
from studio.ui.tabkeys import TOKEN_CHARS, TabKeys


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_gives_the_key_back_only_to_the_visitor_it_was_given_to():
    keys = TabKeys()
    token = keys.keep("alice", Secret("sk-alice"))
    assert "sk-alice" not in token
    held = keys.take("alice", token)
    assert held is not None
    assert held.reveal() == "sk-alice"
    assert keys.take("bob", token) is None  # a token seen by another visitor pays nothing
    assert keys.take("alice", "x" * (TOKEN_CHARS + 1)) is None
    assert keys.take("alice", None) is None
    keys.forget("bob", token)  # (not Bob's to forget)
    assert keys.take("alice", token) is not None


def test_the_same_key_pasted_again_keeps_its_token_and_another_key_gets_another():
    keys = TabKeys()
    first = keys.keep("alice", Secret("sk-one"))
    assert keys.keep("alice", Secret("sk-one")) == first
    assert keys.keep("alice", Secret("sk-two")) != first
    assert keys.keep("bob", Secret("sk-one")) != first
    assert len(keys) == 3


def test_a_key_is_held_for_its_time_from_when_it_was_last_pasted():
    clock = Clock()
    keys = TabKeys(kept_s=100, clock=clock)
    token = keys.keep("alice", Secret("sk-one"))
    clock.now += 90
    assert keys.keep("alice", Secret("sk-one")) == token  # pasted again (a reload): renewed
    clock.now += 90
    assert keys.take("alice", token) is not None
    clock.now += 11
    assert keys.take("alice", token) is None
    assert len(keys) == 0


def test_a_visitor_holds_a_few_keys_and_the_studio_a_bounded_number():
    keys = TabKeys(per_visitor=2, most=3)
    a1 = keys.keep("alice", Secret("sk-1"))
    a2 = keys.keep("alice", Secret("sk-2"))
    a3 = keys.keep("alice", Secret("sk-3"))
    assert keys.take("alice", a1) is None  # her oldest went first
    assert keys.take("alice", a2) is not None
    assert keys.take("alice", a3) is not None
    b1 = keys.keep("bob", Secret("sk-b1"))
    keys.keep("carol", Secret("sk-c1"))
    assert len(keys) == 3  # the oldest of all went
    assert keys.take("alice", a2) is None
    assert keys.take("bob", b1) is not None
