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

import asyncio
import contextlib
import datetime
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import Any

import gradio.blocks
import gradio.components
import gradio.mcp
import gradio.queueing
import gradio.route_utils
import gradio.state_holder
import gradio.utils
from gradio.server_messages import EstimationMessage

from studio.ui.tabs import tab_busy

_GradioSessionState = gradio.state_holder.SessionState
# Every module of Gradio that makes a session, by the name it knows the class under.
_MAKERS = (gradio.state_holder, gradio.route_utils, gradio.blocks, gradio.mcp)


class _WithoutBlocks:
    """What `SessionState.__init__` reads of the app, minus the blocks whose configs it builds."""

    def __init__(self, blocks: Any) -> None:
        self.default_config = blocks.default_config
        self.blocks: dict[int, Any] = {}


# The ids of a page's blocks, made once for all its tabs (each tab's own copy was half its record).
_PAGE_IDS: weakref.WeakKeyDictionary[Any, tuple[list[int], frozenset[int]]] = (
    weakref.WeakKeyDictionary()
)


class LeanSessionState(_GradioSessionState):
    """Gradio's `SessionState` that keeps no copy of the values events send and return."""

    def __init__(self, blocks: Any) -> None:
        super().__init__(_WithoutBlocks(blocks))  # type: ignore[arg-type]
        ids = _PAGE_IDS.get(blocks)
        if ids is None or len(ids[1]) != len(self.blocks_config.blocks):
            ids = _PAGE_IDS[blocks] = (
                [k for k in self.blocks_config.blocks if k in blocks.blocks],
                frozenset(self.blocks_config.blocks),
            )
        self._block_ids, self._page_ids = ids

    def __setitem__(self, key: int, value: Any) -> None:
        # Gradio's, less the block's config built afresh for deep links; and only for the
        # page's own blocks. An event whose inputs include a block an earlier event replaced
        # (a dropdown given new choices) put that copy in under its own new id as well, so
        # each such event kept one more, for as long as the tab: a tab opening "Compare two
        # steps" on a 1,000-step session again and again grew by 0.3 MB an event (review 10
        # F3). Such a copy is only ever read back by that id, to see whether it is there.
        if key not in self._page_ids:
            return
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


class _AnswersByTab(gradio.utils.LRUCache):  # type: ignore[type-arg]
    """Gradio's unread answers by tab (`Queue.pending_messages_per_session`): at most
    `max_size` tabs for everyone, as Gradio's own, but the tab that makes room is the oldest
    with no event waiting or running and no answer unread; else, of those with answers unread,
    the one whose visitor holds the most tabs (`weight`, which the door gives); never the oldest
    of all. Gradio's dropped a tab whose event was still running: its caller's answer was lost
    (the paid edit's call cut), and Gradio's progress updater, raising on the missing tab,
    stopped for every visitor until a restart (review round 7, F4: fresh tabs from one address,
    or an agent polling during its edit). And one whose event was done, before its caller read
    the answer: other visitors' calls, each a fresh tab read at once, pushed a paid edit's
    answer out in 85 s (review 40 F3). A tab that goes takes its empty record of events
    (`pending_event_ids_session`) with it: Gradio left one behind for every tab whose stream
    ended, for good (F6)."""

    def __init__(self, events: dict[str, set[str]], live: dict[str, Any], max_size: int) -> None:
        super().__init__(max_size)
        self._events = events
        self._live = live  # the events waiting or running, by id (`Queue.event_ids_to_events`)
        # How many tabs the visitor of a tab holds (0 for a tab nobody holds).
        self.weight: Callable[[str], int] = lambda _tab: 0

    def _busy(self, tab: str) -> bool:
        return tab_busy(self._events, self._live, tab)

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self and len(self) >= self.max_size:
            self._make_room()
        if key in self:
            self.move_to_end(key)
        OrderedDict.__setitem__(self, key, value)

    def _make_room(self) -> None:
        """Drop the oldest tab with nothing waiting, running or unread, looking at
        `ROOM_LOOKED_AT` at most (one looked at that has something goes to the back); none among
        them, the one with answers unread whose visitor holds the most tabs; none of those
        either, and the table holds one more than `max_size` (it then holds `max_size` tabs and
        those with events waiting or running, which the door bounds). Looking at every tab for
        an idle one, and dropping a busy one when none was, made every estimate Gradio sends to
        a waiting event whose tab was dropped put it back: after a flood of API calls (each its
        own tab) faster than they ran, the studio spent minutes at 100% of a core looking
        (2026-12-05)."""
        unread: list[str] = []
        for _ in range(min(len(self), ROOM_LOOKED_AT)):
            if len(self) < self.max_size:
                return
            tab = next(iter(self))
            if self._busy(tab):
                self.move_to_end(tab)
            elif _waiting(OrderedDict.__getitem__(self, tab)):
                unread.append(tab)
                self.move_to_end(tab)
            else:
                self._drop(tab)
        if len(self) >= self.max_size and unread:
            # (`max` keeps the first of equals: the oldest.)
            self._drop(max(unread, key=self.weight))

    def _drop(self, tab: str) -> None:
        OrderedDict.__delitem__(self, tab)
        self._events.pop(tab, None)


def _waiting(messages: Any) -> bool:
    """Whether a tab's table of answers holds one nobody has read."""
    return isinstance(messages, asyncio.Queue) and not messages.empty()


# How many tabs `_AnswersByTab` looks at, at most, to make room for one.
ROOM_LOOKED_AT = 64


# How far back among a tab's unread answers an earlier estimate of the same event is looked for.
ESTIMATES_LOOKED_AT = 256


class _Unread(asyncio.Queue):  # type: ignore[type-arg]
    """A tab's unread answers, in which a new estimate of an event's place in the queue takes the
    place of that event's estimate still unread. Gradio sends every waiting event a new estimate
    each time any event starts, so a tab that never reads its answers (a made-up tab, or a page
    that went away) kept one for every event that started while its own waited: hundreds a tab
    (about 65 KB) under a flood of events, for as long as the studio kept the tab (review 16,
    M1). A reader only ever needs the newest; an event's estimates all come before its start."""

    def _put(self, item: Any) -> None:
        unread: deque[Any] = self._queue  # type: ignore[attr-defined]
        if isinstance(item, EstimationMessage):
            for at in range(len(unread) - 1, max(-1, len(unread) - 1 - ESTIMATES_LOOKED_AT), -1):
                earlier = unread[at]
                if isinstance(earlier, EstimationMessage) and earlier.event_id == item.event_id:
                    unread[at] = item
                    return
        unread.append(item)


def hold_answers(queue: Any) -> None:
    """Keep a tab's answers while its events wait or run (`_AnswersByTab`), an event's newest
    estimate only (`_Unread`), and let an answer for a tab Gradio no longer holds start the
    tab's record again instead of raising (in Gradio's progress updater, one such error ended
    progress for everyone)."""
    gradio.queueing.AsyncQueue = _Unread  # type: ignore[attr-defined]
    old = queue.pending_messages_per_session
    answers = _AnswersByTab(
        queue.pending_event_ids_session, queue.event_ids_to_events, old.max_size
    )
    for tab, messages in old.items():
        OrderedDict.__setitem__(answers, tab, messages)
    queue.pending_messages_per_session = answers
    send = queue.send_message

    def send_message(event: Any, message: Any) -> None:
        if event.alive and event.session_hash not in answers:
            answers[event.session_hash] = _Unread()
        send(event, message)

    queue.send_message = send_message


# The longest a free queue sleeps when nothing wakes it: a bound on any way work could arrive that
# `wake_on_work` does not hear of (none is known), at five wake-ups a second.
FREE_NAP_S = 0.2


class _Nap(float):
    """A sleep length that Gradio's queue loops pass to `asyncio.sleep`; `_AsyncioWithNaps`
    sees it and waits for `wait()` instead of sleeping the length."""

    wait: Callable[[], Any]

    def __new__(cls, seconds: float, wait: Callable[[], Any]) -> _Nap:
        nap = super().__new__(cls, seconds)
        nap.wait = wait
        return nap


class _AsyncioWithNaps:
    """`gradio.queueing`'s `asyncio`: the module itself, but a `_Nap` waits for its wake-up."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    async def sleep(self, delay: float, result: Any = None) -> Any:
        if isinstance(delay, _Nap):
            await delay.wait()
            return result
        return await self._module.sleep(delay, result)


def wake_on_work(queue: Any) -> None:
    """Let Gradio's queue sleep while it has nothing to do, and wake when it has.

    Its loop that starts events sleeps 1 ms whenever nothing can start (no event, or every slot
    or concurrency limit taken), and its progress loop 10 ms; on an idle studio that was about
    1,100 wake-ups a second and 4-5 % of a core (review round 57, L1; py-spy), and under load
    the same spinning took the GIL from the edits. Now the first loop waits until an event is
    pushed or one ends (whichever can let another start), and the progress loop, with no event
    running, until one starts; each wait is at most `FREE_NAP_S`. Gradio's loops are unchanged:
    only what their free sleep does.
    """
    work = asyncio.Event()
    started = asyncio.Event()

    async def until_work() -> None:
        work.clear()
        # (Cleared before the loop looks again: whatever happens after this look sets it.)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(work.wait(), FREE_NAP_S)

    progress_every = float(queue.progress_update_sleep_when_free)

    async def until_running() -> None:
        if any(job is not None for job in queue.active_jobs):
            await asyncio.sleep(progress_every)
            return
        started.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(started.wait(), FREE_NAP_S)

    push = queue.push
    process_events = queue.process_events

    async def push_and_wake(*args: Any, **kwargs: Any) -> Any:
        try:
            return await push(*args, **kwargs)
        finally:
            work.set()

    async def process_and_wake(*args: Any, **kwargs: Any) -> Any:
        started.set()
        try:
            return await process_events(*args, **kwargs)
        finally:
            work.set()

    queue.push = push_and_wake
    queue.process_events = process_and_wake
    if not isinstance(getattr(gradio.queueing, "asyncio"), _AsyncioWithNaps):  # noqa: B009
        gradio.queueing.asyncio = _AsyncioWithNaps(asyncio)  # type: ignore[assignment,attr-defined]
    queue.sleep_when_free = _Nap(queue.sleep_when_free, until_work)
    queue.progress_update_sleep_when_free = _Nap(progress_every, until_running)


# Optional modules Gradio imports around every event (`utils.MatplotlibBackendMananger` in
# `route_utils.call_process_api`, twice an event), for components the studio does not have.
OPTIONAL_IMPORTS = ("matplotlib",)


def skip_missing_imports() -> None:
    """Remember that an optional module Gradio imports on every event is not installed: each
    such import searched the whole path again and failed (38 us, twice an event; py-spy). A
    module that is installed is left alone (imported once, as before)."""
    import importlib.util
    import sys

    for name in OPTIONAL_IMPORTS:
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            sys.modules[name] = None  # type: ignore[assignment]  # (Python's "not there" mark)
