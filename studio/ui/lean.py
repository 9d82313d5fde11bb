"""Gradio's per-session record, made when needed instead of in full for every caller.

Gradio 6 makes a `SessionState` for every new session: each page load, and each API call that
comes without a session of its own (every raw HTTP call, every MCP tool call). Its constructor
builds the config of every block on the page (`config_for_block`, with `get_config` and its
API-info schemas), kept only to rebuild the page for a deep link. On the studio's page that was
about a quarter of the studio's CPU for an edit through `/edit_image` under load (py-spy, 100
edits at once; see the README's Numbers). Then, for every event, it builds the config of each of
the event's inputs and outputs again just to set their value in it (an eighth of the server
loop's CPU for an API edit, cProfile on its thread). `LeanSessionState` is the same record whose
configs are made, and given the values last set, the first time something reads them, in the
same order; nothing else changes.

Imports gradio; installed once by `create_app`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio.blocks
import gradio.mcp
import gradio.route_utils
import gradio.state_holder

_GradioSessionState = gradio.state_holder.SessionState
# Every module of Gradio that makes a session, by the name it knows the class under.
_MAKERS = (gradio.state_holder, gradio.route_utils, gradio.blocks, gradio.mcp)


class _WithoutBlocks:
    """What `SessionState.__init__` reads of the app, minus the blocks whose configs it builds."""

    def __init__(self, blocks: Any) -> None:
        self.default_config = blocks.default_config
        self.blocks: dict[int, Any] = {}


class LeanSessionState(_GradioSessionState):
    """Gradio's `SessionState` whose `config_values` fill in when `components` is read."""

    def __init__(self, blocks: Any) -> None:
        super().__init__(_WithoutBlocks(blocks))  # type: ignore[arg-type]
        self._block_ids = [k for k in self.blocks_config.blocks if k in blocks.blocks]
        # The value last set for each block whose config is not made yet.
        self._values: dict[int, Any] = {}

    def __setitem__(self, key: int, value: Any) -> None:
        self._values.pop(key, None)  # Gradio makes this block's config afresh
        super().__setitem__(key, value)

    def _update_value_in_config(self, key: int, value: Any) -> None:
        if key in self.config_values:
            super()._update_value_in_config(key, value)
        else:
            self._values[key] = value

    @property
    def components(self) -> Iterator[dict[str, Any]]:
        made: dict[int, Any] = self.config_values
        blocks = self.blocks_config.blocks
        ordered = {
            k: made[k] if k in made else self.blocks_config.config_for_block(k, [], blocks[k])
            for k in self._block_ids
            if k in made or k in blocks
        }
        self.config_values = {**ordered, **made}
        for key, value in self._values.items():
            super()._update_value_in_config(key, value)
        self._values.clear()
        return super().components


def install() -> None:
    """Make every new Gradio session a `LeanSessionState` (idempotent)."""
    for module in _MAKERS:
        if getattr(module, "SessionState", None) is _GradioSessionState:
            module.SessionState = LeanSessionState  # type: ignore[attr-defined]
