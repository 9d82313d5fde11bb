"""The page's key box: a visitor's own RunAPI key, pasted, checked at once, used for their tab's
edits, and kept in their browser if they ask.

A key is never written to the server's disk and never reaches a log or another page: it travels
with each edit of the tab that holds it (`Handlers.who_with`), is held in memory over a reload
of that tab under a token the tab keeps (`ui.tabkeys`), and is checked here with one balance
call, a few a minute per visitor (the engine counts them).
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from studio.config import Secret
from studio.ui import present, prose
from studio.ui.bridge import (
    USER_ERRORS,
    AuthenticationError,
    Bridge,
    Engine,
    LimitError,
    RunAPIError,
)
from studio.ui.handlers import Update, error_sentence
from studio.ui.layout import Components
from studio.ui.tabkeys import TabKeys
from studio.ui.visitor import REFUSED, Refusal, current, guarded

NOT_ASKED = (
    "⚠ The key could not be checked now (RunAPI did not answer); edits in this tab will use it "
    "and say so if it is refused."
)


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """What RunAPI said of a pasted key: `accepted` None when it could not be asked; `note` is
    the sentence to show."""

    accepted: bool | None
    note: str


class KeyHandlers:
    """The events of the key box (registered by `events.wire`)."""

    def __init__(
        self,
        c: Components,
        bridge: Bridge,
        *,
        simulator: bool,
        server_key: bool,
        hosted: bool,
        tab_keys: TabKeys,
    ) -> None:
        self.c = c
        self.bridge = bridge
        self.simulator = simulator
        self.server_key = server_key
        self.hosted = hosted
        self.tab_keys = tab_keys

    def unnamed(self, refusal: Refusal) -> Update:
        return {self.c.key_note: f"⚠ {refusal}"}

    async def refused(self, _args: tuple[object, ...], exc: Exception) -> Update:
        return {self.c.key_note: f"⚠ {error_sentence(exc)}"}

    @guarded
    async def on_key(
        self, key: str | None, remember: bool = False, token: str | None = None
    ) -> Update:
        """A pasted key is checked at once (a balance call) and said so in one sentence. An
        accepted key is used for this tab (and kept in this browser if asked); a refused one
        is kept too, so edits are refused rather than quietly run elsewhere. Either is held in
        memory over a reload of the tab, under the token the tab keeps (`ui.tabkeys`)."""
        key = (key or "").strip() or None
        c = self.c
        owner = current().owner or ""
        if key is None:
            self.tab_keys.forget(owner, token)
            return {
                c.tab_key: None,
                c.key_store: None,
                c.header: self._banner(None, has_key=False),
                c.key_note: "",
                c.key_token: "",
            }
        check = await self._check(key)
        kept = self.tab_keys.keep(owner, Secret(key))
        if token != kept:  # (another key was pasted over it)
            self.tab_keys.forget(owner, token)
        return {
            c.tab_key: key,
            c.key_store: key if remember and check.accepted else None,
            c.header: self._banner(check.accepted, remembered=bool(remember and check.accepted)),
            c.key_note: check.note,
            c.key_token: kept,
        }

    @guarded
    async def on_remember(self, key: str | None, remember: bool) -> Update:
        """Keep the key in this browser's storage, or forget it there."""
        key = (key or "").strip() or None
        c = self.c
        if key is None or not remember:
            return {c.key_store: None, c.key_note: gr.skip(), c.header: gr.skip()}
        check = await self._check(key)
        return {
            c.key_store: key if check.accepted else None,
            c.key_note: check.note,
            c.header: self._banner(check.accepted, remembered=check.accepted is True),
        }

    async def _check(self, key: str) -> KeyCheck:
        """Ask RunAPI about a pasted key (a balance call), counted per visitor (a few a
        minute); one sentence whatever the answer."""
        try:
            await self.bridge.call(Engine.check_key, Secret(key), visitor=current())
        except AuthenticationError as exc:  # RunAPI refused it
            return KeyCheck(False, f"⚠ {exc}")
        except RunAPIError:  # RunAPI did not answer
            return KeyCheck(None, NOT_ASKED)
        except USER_ERRORS as exc:  # too many checks, or a studio that takes no visitors' keys
            return KeyCheck(None if isinstance(exc, LimitError) else False, f"⚠ {exc}")
        except REFUSED as exc:  # a request that names nobody
            return KeyCheck(None, f"⚠ {exc}")
        # (Not its balance here: said once, it went stale beside the header's, which follows
        # the edits: audit 13.)
        return KeyCheck(
            True,
            "✓ RunAPI accepted your key. Edits in this tab use it; its balance is shown at "
            "the top of the page.",
        )

    def _banner(
        self, accepted: bool | None, *, has_key: bool = True, remembered: bool = False
    ) -> gr.HTML:
        """The header's banner: which service the edits go to, and whose key pays."""
        text = present.banner(
            simulator=self.simulator,
            server_key=self.server_key,
            user_key=has_key,
            key_refused=has_key and accepted is False,
            remembered=remembered,
            hosted=self.hosted,
        )
        return gr.HTML(banner=prose.to_html(text))
