"""Keys pasted in a tab, held in the studio's memory over a reload of that tab.

A key pasted without *Remember it in this browser* was gone when the tab reloaded, without a
word until the next Enter was refused. The studio now holds it in memory (never on its disk,
never in a log) under a random token; the tab keeps only the token, in its own session storage
(which a reload keeps and closing the tab drops; no other tab or site reads it), and sends it
with the page's load, which puts the key back in the tab's box. A token is good only for the
visitor it was given to, for `KEPT_S`, and the studio holds `PER_VISITOR` of them for a visitor
and `MOST` in all (the oldest go first): a stolen token pays nothing, and no one can fill the
studio's memory. A restart forgets them all (the visitor pastes the key again).

Pure: no Gradio, no engine.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from studio.config import Secret

# How long a pasted key is held for its tab after it was last pasted or put back (a tab left
# open overnight pastes it again).
KEPT_S = 12 * 3600
# Tokens held for one visitor (each tab with a pasted key has one), and in all.
PER_VISITOR = 8
MOST = 10_000
# The longest token taken from a page (ours are 32 characters).
TOKEN_CHARS = 64


@dataclass(frozen=True, slots=True)
class _Held:
    owner: str
    key: Secret
    until: float


class TabKeys:
    """Pasted keys under tokens, each good only for its visitor (`owner`; "" for the studio's
    own user when it is not hosted) and for `kept_s` after it was last given out."""

    def __init__(
        self,
        *,
        kept_s: float = KEPT_S,
        per_visitor: int = PER_VISITOR,
        most: int = MOST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kept_s = kept_s
        self.per_visitor = per_visitor
        self.most = most
        self.clock = clock
        self._held: OrderedDict[str, _Held] = OrderedDict()  # oldest first
        # The token of each (visitor, key) held: the same key pasted again keeps its token.
        self._tokens: dict[tuple[str, str], str] = {}

    def __len__(self) -> int:
        return len(self._held)

    def keep(self, owner: str, key: Secret) -> str:
        """Hold `key` for `owner`'s tab: the token the tab keeps (the same one again for the
        same key, its time renewed)."""
        self._expire()
        ident = (owner, _digest(key))
        token = self._tokens.get(ident)
        if token is None or token not in self._held:
            token = secrets.token_urlsafe(24)
            self._tokens[ident] = token
        self._held[token] = _Held(owner, key, self.clock() + self.kept_s)
        self._held.move_to_end(token)
        self._bound(owner)
        return token

    def take(self, owner: str, token: object) -> Secret | None:
        """The key `token` holds for `owner`; None for any other visitor, an expired or unknown
        token, or anything that is not one."""
        if not isinstance(token, str) or not token or len(token) > TOKEN_CHARS:
            return None
        self._expire()
        held = self._held.get(token)
        if held is None or not secrets.compare_digest(held.owner, owner):
            return None
        return held.key

    def forget(self, owner: str, token: object) -> None:
        """Let go of `owner`'s key under `token` (the box emptied, or another key pasted)."""
        if isinstance(token, str) and self.take(owner, token) is not None:
            self._drop(token)

    def _drop(self, token: str) -> None:
        held = self._held.pop(token)
        self._tokens.pop((held.owner, _digest(held.key)), None)

    def _expire(self) -> None:
        # (Each token renewed goes last, with the latest time: the first to expire are first.)
        now = self.clock()
        while self._held and next(iter(self._held.values())).until <= now:
            self._drop(next(iter(self._held)))

    def _bound(self, owner: str) -> None:
        mine = [t for t, held in self._held.items() if held.owner == owner]
        for token in mine[: max(0, len(mine) - self.per_visitor)]:
            self._drop(token)
        while len(self._held) > self.most:
            self._drop(next(iter(self._held)))


def _digest(key: Secret) -> str:
    return hashlib.sha256(key.reveal().encode()).hexdigest()
