"""Gradio's per-session record, without the copy of every value the tab's events sent.

Gradio 6 makes a `SessionState` for every new session: each page load, and each API call that
comes without a session of its own (every raw HTTP call, every MCP tool call). Its constructor
builds the config of every block on the page (`config_for_block`, with `get_config` and its
API-info schemas), and every event builds the config of each of its inputs and outputs again and
puts the value sent or returned into it, kept for as long as the session: a 20 MB text in the
link box was 20 MB more held by the server for each event (review round 3, F2). Those configs
serve one purpose, Gradio's deep links, which the studio refuses (`ui.tabstate`). They also were
about a quarter of the studio's CPU for an edit through `/edit_image` under load (py-spy, 100
edits at once; README, Numbers). `LeanSessionState` is the same record that keeps what the page
needs (the `gr.State` values, the components an event's `gr.update` replaced) and no values:
its `components` are the page's blocks as configured, made when read.

Imports gradio; installed once by `create_app`.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from typing import Any

import gradio.blocks
import gradio.components
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
    """Gradio's `SessionState` that keeps no copy of the values events send and return."""

    def __init__(self, blocks: Any) -> None:
        super().__init__(_WithoutBlocks(blocks))  # type: ignore[arg-type]
        self._block_ids = [k for k in self.blocks_config.blocks if k in blocks.blocks]

    def __setitem__(self, key: int, value: Any) -> None:
        # Gradio's, less the block's config built afresh for deep links.
        block = self.blocks_config.blocks.get(key)
        if isinstance(block, gradio.components.State):
            self._state_ttl[key] = (block.time_to_live, datetime.datetime.now())
            self.state_data[key] = value
        else:
            self.blocks_config.blocks[key] = value

    def _update_config(self, key: int) -> None:
        pass  # the config is made when read

    def _update_value_in_config(self, key: int, value: Any) -> None:
        pass  # values are not kept (only deep links read them)

    @property
    def components(self) -> Iterator[dict[str, Any]]:
        blocks = self.blocks_config.blocks
        for key in self._block_ids:
            if key in blocks and (
                config := self.blocks_config.config_for_block(key, [], blocks[key])
            ):
                yield config


def install() -> None:
    """Make every new Gradio session a `LeanSessionState` (idempotent)."""
    for module in _MAKERS:
        if getattr(module, "SessionState", None) is _GradioSessionState:
            module.SessionState = LeanSessionState  # type: ignore[attr-defined]


# With the studio's monitoring on, Gradio's summary of its recent events is made again at most
# this often (its `/monitoring` page then lags by as much), not after each event.
SUMMARY_EVERY_S = 5.0


def quiet_summary(queue: Any, *, monitoring: bool) -> None:
    """Gradio's queue makes a summary of its last 10,000 events (a pandas table of them, grouped
    by function, with percentiles) after every event, on a worker thread with the GIL held,
    whether anything reads it or not: only its `/monitoring` page does. A busy studio spent most
    of its CPU there, and a flood of cheap events from one client made everyone's page twenty
    times slower (review round 7). Not made unless the studio's monitoring is on; then made at
    most every `SUMMARY_EVERY_S` seconds."""
    if not monitoring:
        queue.compute_analytics_summary = lambda _records: queue.cached_event_analytics_summary
        # Nor does anything read the records the summary is made from.
        queue.ANALYTICS_MAX_EVENTS = 1
        return
    make = queue.compute_analytics_summary
    made_at = [-SUMMARY_EVERY_S]

    def now_and_then(records: list[Any]) -> Any:
        now = time.monotonic()
        if now - made_at[0] < SUMMARY_EVERY_S:
            return queue.cached_event_analytics_summary
        made_at[0] = now
        return make(records)

    queue.compute_analytics_summary = now_and_then
