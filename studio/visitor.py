"""Who is asking: a `Visitor`, made at the edge (the page, the API, the CLI) and passed whole
into the engine, which decides there, once, what they may touch and whose key pays.

Plain data; imports nothing of ours but `config` (for `Secret`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

from studio.config import Secret


@dataclass(frozen=True, slots=True)
class Visitor:
    """Who asks, and whose key pays.

    `owner` None is the studio's own user (the CLI, a studio that is not hosted), who may touch
    every session; a hosted studio names every visitor (`owner_of`), and the engine lets each
    touch only their own sessions. `api_key` is the visitor's own key (None: the server's, which
    a hosted studio spends for visitors only within its budget). `address` is the client's
    network address as the edge saw it (None when not known), for limits per address.
    """

    owner: str | None = None
    api_key: Secret | None = field(default=None, repr=False)
    address: str | None = None

    @property
    def is_local(self) -> bool:
        """The studio's own user, who may touch everything."""
        return self.owner is None

    def with_key(self, api_key: Secret | None) -> Visitor:
        """The same visitor paying with `api_key` (unchanged for None)."""
        return self if api_key is None else replace(self, api_key=api_key)


LOCAL = Visitor()


def owner_of(kind: str, token: str) -> str:
    """The owner recorded for a browser's token or an API caller's key: a hash, so that the
    database holds nothing a visitor could be impersonated with."""
    return f"{kind}:{hashlib.sha256(token.encode()).hexdigest()[:32]}"


__all__ = ["LOCAL", "Visitor", "owner_of"]
