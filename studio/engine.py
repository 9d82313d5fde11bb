"""The use cases: start a session, edit, retry, compare, navigate, resume, export: the engine.

Imports everything below it (params, history, images, links, store, runapi, runner); only ui and
cli import it, and they never see the store: they ask the engine for paths, thumbnails and
sessions. Every edit is written ahead: the step is stored as queued before the create call (its
id is the RunAPI `Idempotency-Key`), the task id is stored the moment the create returns, and the
result is downloaded and stored the moment the task completes (`runner.StepRunner`). So a step
interrupted at any point can be resumed by asking again, and the service answers with the
original task instead of charging twice.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import contextvars
import functools
import hashlib
import hmac
import itertools
import logging
import shutil
import time
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

from studio import __version__
from studio.bundle import (
    MAX_BUNDLE_BYTES,
    BundleError,
    chain_steps,
    read_bundle,
    stream_bundle,
    write_bundle,
)
from studio.config import Secret, Settings, SettingsError
from studio.history import (
    MAX_NAME_CHARS,
    UNFINISHED_STATES,
    UNTITLED,
    HistoryError,
    ImageRef,
    Phase,
    Session,
    SessionSummary,
    Step,
    StepRegion,
    StepSource,
    StepState,
    StepUpdate,
    is_untitled,
    link_name,
    name_from_prompt,
    new_id,
)
from studio.images import (
    HEAVY_PIXELS,
    Header,
    ImageError,
    SourceImage,
    describe,
    open_source,
    peek,
    prepare_upload,
)
from studio.limits import (
    SESSION_BYTES,
    STEP_BYTES,
    FairPlaces,
    LimitError,
    Limits,
    LimitSettings,
    OwnKeyNeeded,
    taken_bytes,
    used_lately,
    used_with,
)
from studio.links import fetch_link
from studio.lookout import Lookout
from studio.lookout import shared as shared_lookout
from studio.params import (
    MODEL_IDS,
    PRICE_CENTS,
    EditParams,
    Model,
    ParamsError,
    RegionError,
    RegionRequest,
)
from studio.provenance import C2paSigner
from studio.runapi import AuthenticationError, LearnedSchedule, RunAPIClient, RunAPIError
from studio.runner import LEFT_OPEN_NOT_CANCELLED, ClientPool, RunEnd, StepRunner
from studio.store import (
    THUMBNAILS_PER_CALL,
    Holding,
    NoSuchSession,
    Store,
    StoreError,
    text_bytes,
)
from studio.visitor import LOCAL, Visitor

log = logging.getLogger(__name__)
T = TypeVar("T")
# Told of a session deleted: the session, its images, and whether its owner still holds one.
DeletedListener = Callable[[Session, frozenset[str], Callable[[str], bool]], None]

# Errors whose `str()` is one sentence fit for a user; the UI and CLI show these and only these.
USER_ERRORS: tuple[type[Exception], ...] = (
    ImageError,
    ParamsError,
    HistoryError,
    BundleError,
    StoreError,
    RunAPIError,
    LimitError,
    RegionError,
)
# Image files no step refers to are removed once they are this old (seconds): an edit stores
# its image a moment before the step that refers to it, possibly in another process.
UNREFERENCED_GRACE_S = 600.0
# Seconds between two passes over every stored file for images nobody refers to (a deleted
# session's own images go at once; a pass finds those left by a crash or still new then).
FULL_COLLECT_EVERY_S = 600.0
# A deleted session's images no other session refers to go at once, but those stored within
# this many seconds (the same bytes may be on their way into another step, here or in another
# process) go this long later; meanwhile they count against the deleting visitor's share of
# the disk, so deleting is no way past it (review 19: upload-and-delete cycles stored five
# times the share, and edits refused for the share left their source behind, 30 MB a second).
LEAVING_GRACE_S = 60.0
# Deletes whose images wait to go, kept at once; past this a delete's images go at once.
LEAVING_KEPT = 10_000
# Said of a step paid with a visitor's own key when the studio restarted under it.
WAITS_FOR_KEY = (
    "The studio restarted while this edit ran on your own RunAPI key, which it does not keep; "
    "it goes on as soon as you come back with that key."
)
# Said of a step the server's key pays for, queued behind one that waits for its visitor's key.
WAITS_FOR_EARLIER = (
    "The studio restarted while the edit before this one ran on your own RunAPI key, which it "
    "does not keep; this one goes on once that one has."
)
# At most this many results of one instruction at once (`Engine.candidates`).
MAX_CANDIDATES = 4
# Keys one visitor may have checked with RunAPI in a minute (a pasted key is checked once; a
# few typos are fine, trying keys in bulk is not).
KEY_CHECKS_PER_MINUTE = 5
# Keys RunAPI is asked about at once for API and MCP callers, all together, before any of them
# names a caller (`key_accepted`): a made-up key names nobody, so it uses up none of its
# address's new visitors (where all share one address, a share link's tunnel, twenty made-up
# keys closed the studio to every new caller for an hour). The next place goes to the address
# that asked least lately; an ask that waits `KEY_ASK_WAIT_S` for one is refused. (Thirty
# asks a minute for each address let anyone's made-up keys keep every new caller out where
# all share an address: review 6 F7.) A refused key is answered from memory.
KEY_ASKS_AT_ONCE = 4
KEY_ASK_WAIT_S = 20.0
KEYS_BUSY = "The studio is checking many RunAPI keys with RunAPI right now; try again in a moment."
# Keys RunAPI refused that one network address may have had checked in `KEYS_REFUSED_WINDOW_S`,
# by the page's key box and the API's key header together (a key accepted gives its place
# back): past them, a key new to the studio from that address is refused without asking RunAPI.
# Four at a time for all callers let one address try about a hundred keys a second through the
# studio, from the studio's own address (review 14 F1). Not counted through a share link's
# tunnel, where every caller is one address (review 6 F7: there anyone's made-up keys would keep
# every new caller out); a key accepted in the last `KEY_ACCEPTED_MEMORY_S` is not asked again,
# so callers already known go on whatever their neighbours try.
KEYS_REFUSED_PER_ADDRESS = 10
KEYS_REFUSED_WINDOW_S = 600.0
KEY_ACCEPTED_MEMORY_S = 86_400.0
KEYS_TRIED_HERE = (
    "Too many RunAPI keys that RunAPI did not accept were tried from your network address "
    "lately; wait a few minutes before trying another."
)
# A key RunAPI could not be asked about (no answer) names its caller for this long before
# RunAPI is asked again.
UNANSWERED_KEY_MEMORY_S = 60.0
# Images from outside decoded at once, all visitors together (`Engine._decoding`): as many as
# this machine class has cores, of which one at most for a large image (`HEAVY_PIXELS` or more
# to decode: about a second and hundreds of megabytes each), so large images wait for each
# other and never for the small ones, nor the small ones for them.
DECODES_AT_ONCE = 2
HEAVY_DECODES_AT_ONCE = 1
# Images, links and imports one hosted visitor may have read at once (`Engine._intake`): a third
# is refused at once, so a pile of one visitor's requests never holds the slots all visitors share.
INTAKES_AT_ONCE = 2
# Looks at images from outside taken at once, all visitors together (`Engine._look`).
LOOK_PLACES = 2
# What a thumbnail to make of an image no step names the size of counts, in pixels, when the
# maker's turns are shared (`thumbnails`): a large photo's.
UNKNOWN_THUMBNAIL_PIXELS = 8_000_000
BUSY_READING = (
    "You already have two images or imports being read; wait for them to finish and try again."
)
# ... and all visitors from one network address together (fresh identities buy no more).
INTAKES_PER_ADDRESS = 4
BUSY_READING_HERE = (
    "Visitors from your network address already have four images or imports being read; wait "
    "for one to finish and try again."
)
# The hosted visitor whose image, link or import this task is reading (`Engine._intake`).
_INTAKE_OWNER: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "intake_owner", default=None
)
# Exports written at once, all visitors together (`Engine._export_turn`; each holds one image in
# memory at a time), and one at a time for each hosted visitor, whose second is refused at once
# (review round 3 F13: twenty parallel Export clicks of one cookie each built its whole ZIP in
# memory, 386 MB -> 1.1 GB).
EXPORTS_AT_ONCE = 2
# (Exports one visitor is counted for in a minute, past which their own count no longer
# orders them behind their address's.)
EXPORTS_TRACKED = 10_000
BUSY_EXPORTING = "Your last export is still being written; wait for it to finish and try again."
# Network addresses whose visitors the engine keeps track of (their share of the disk together).
MAX_TRACKED_ADDRESSES = 10_000
# What an export may take beyond the images it holds: its session.json and the ZIP's own.
EXPORT_SLACK_BYTES = 4 * 2**20
# Seconds after which a visitor of an address who keeps nothing is no longer counted there.
OWNER_QUIET_S = 3600.0
# Said after an imported session's name, so it is told apart from the one it was exported from.
IMPORTED_MARK = " (imported)"
# What an edit's result may take, counted against a hosted visitor's share before it runs
# (`_result_bytes`): FLUX.1 Kontext answers about a megapixel (1.5 at 21:9), a PNG of at most
# about 4.5 MB; a step kept to a region also stores the blend at its source's size.
MODEL_RESULT_BYTES = 5 * 2**20
BLEND_BYTES_PER_PIXEL = 3


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Engine:
    """Runs edits against RunAPI and keeps every step in the store.

    Edits run as tasks owned by the engine, not by the caller: a browser tab that closes or a
    caller that stops waiting does not stop an edit that is being paid for.
    """

    def __init__(
        self,
        store: Store,
        client: RunAPIClient,
        *,
        allow_private_links: bool = True,
        task_deadline_s: float = 900.0,
        now: Callable[[], datetime] = _utc_now,
        client_for_key: Callable[[str], RunAPIClient] | None = None,
        limits: Limits | None = None,
        schedule: LearnedSchedule | None = None,
        simulated: bool = False,
        signer: C2paSigner | None = None,
        addresses_apart: bool = True,
        lookout: Lookout | None = None,
    ) -> None:
        self._store = store
        # Hosted, the first look at an image from outside is taken in a child process with a
        # CPU and memory limit (`studio.lookout`), all of the process's looks together.
        self._lookout = lookout if lookout is not None or limits is None else shared_lookout()
        self._looks = FairPlaces(LOOK_PLACES)
        self._looked: dict[str, collections.deque[tuple[float, int]]] = {}
        # (Threads of their own, which wait on the children: never the ones store reads use.)
        self._lookers = concurrent.futures.ThreadPoolExecutor(
            LOOK_PLACES + DECODES_AT_ONCE + HEAVY_DECODES_AT_ONCE, "looks"
        )
        # Whether reads are also counted per network address (`_intake`): not through a share
        # link's tunnel, where every visitor is one address and one client would use up the
        # address's reads for everyone (review 6 F8).
        self._addresses_apart = addresses_apart
        # Learns each model's durations; the clients poll on it (see `from_settings`).
        self.schedule = schedule or LearnedSchedule()
        # Hosted: every visitor is counted and capped (`limits`); None on a studio of one's own.
        self._limits = limits
        self._clients = ClientPool(client, client_for_key)
        self._runner = StepRunner(
            store,
            self._clients,
            deadline_s=task_deadline_s,
            now=now,
            schedule=self.schedule,
            simulated=simulated,
            signer=signer,
            prepare=prepare_upload if self._lookout is None else self._lookout.prepare_upload,
        )
        self._allow_private_links = allow_private_links
        # On the simulator, the server's key holds play money: its balance is never shown.
        self._simulated = simulated
        self._now = now
        # Steps paid with a visitor's own key, found unfinished at start-up: by owner ("" for
        # the studio's own user), they wait for that visitor's key (`resume_unfinished`).
        self._awaiting_key: dict[str, dict[str, Step]] = {}
        self._print_secret: bytes | None = None  # (`_key_print`)
        if limits is not None and limits.ledger is None:
            limits.ledger = self._ledger
        # When each named visitor last had a key checked (`check_key`), the last minute's.
        self._key_checks: dict[str, collections.deque[float]] = {}
        # Keys being asked about for a caller (`key_accepted`), by digest: one call each.
        self._key_asks: dict[str, asyncio.Future[bool | None]] = {}
        # Places to ask RunAPI about a caller's key, and what each address asked for lately.
        self._key_places = FairPlaces(KEY_ASKS_AT_ONCE)
        self._keys_asked: dict[str, collections.deque[tuple[float, int]]] = {}
        # Keys RunAPI could not be asked about lately, by digest, and when (the oldest first).
        self._key_unanswered: collections.OrderedDict[str, float] = collections.OrderedDict()
        # Keys RunAPI accepted lately, by digest, and when (the oldest first); and, by network
        # address, when each key it had checked and RunAPI refused (or is being asked) was.
        self._key_accepted: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._key_tries: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )
        # One lock per session while someone holds it; gone when nobody does.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # Images from outside decoded at once (`_decoding`): small and large ones each in their
        # own lane, all visitors together, and one visitor's (a lock each while they have one
        # waiting).
        self._decodes = FairPlaces(DECODES_AT_ONCE)
        self._heavy_decodes = FairPlaces(HEAVY_DECODES_AT_ONCE)
        # The pixels each named visitor had decoded in the last minute (`_decoding`'s turns).
        self._decoded: dict[str, collections.deque[tuple[float, int]]] = {}
        # Each network address's visitors who may keep bytes, with when each last asked for room,
        # the newest address last (the store keeps who they are: `Store.owners_at`).
        self._address_owners: collections.OrderedDict[str, dict[str, float]] = (
            collections.OrderedDict()
        )
        self._decoders: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        # Images, links and imports being read now, by hosted visitor and by "address:<it>"
        # (`_intake`).
        self._intakes: dict[str, int] = {}
        # Exports being written (`_export_turn`): all together, fairly, and the visitors who
        # have one; what each network address (and visitor) exported lately.
        self._exports = FairPlaces(EXPORTS_AT_ONCE)
        self._exporting: set[str] = set()
        self._exported_lately: dict[str, collections.deque[tuple[float, int]]] = {}
        # Thumbnails being made (`thumbnails`): on a thread of their own, one at a time, each
        # image once however many ask; and the thumbnails each named visitor asked for lately.
        self._thumb_maker = concurrent.futures.ThreadPoolExecutor(1, "thumbnails")
        self._thumbnail_maker = None if self._lookout is None else self._lookout.make_thumbnail
        self._thumb_places = FairPlaces(1)
        # Failed steps' prices being taken off the day's budgets (`_run_ended`).
        self._settling: set[asyncio.Future[None]] = set()
        self._thumbs_making: dict[tuple[str, str | None], asyncio.Future[Path | None]] = {}
        self._thumbed: dict[str, collections.deque[tuple[float, int]]] = {}
        # The pass over every stored file for unreferenced images (`delete_session`): when the
        # next may start, and the one running.
        self._next_full_collect = 0.0
        self._full_collect: asyncio.Future[None] | None = None
        # The pass a start schedules over what an earlier run left (`collect_after_start`),
        # while it waits.
        self._start_collect: asyncio.Future[None] | None = None
        # The images of sessions deleted within `LEAVING_GRACE_S`, by owner: their bytes on
        # disk, and the task that removes them.
        self._leaving: dict[str, dict[asyncio.Future[None], int]] = {}
        # Told of each session deleted (`when_deleted`).
        self._on_deleted: list[DeletedListener] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> Engine:
        """Open the store under `settings.home` and a client for the configured service."""
        if settings.api_key is None:
            raise ValueError("the engine needs a RunAPI key (or the simulator's)")
        store = Store.open(settings.home)
        known = store.recent_samples()
        schedule = LearnedSchedule(
            {MODEL_IDS[m]: known.get(m, []) for m in MODEL_IDS}, scale=settings.poll_scale
        )

        def client_for(key: str, base_url: str = settings.base_url) -> RunAPIClient:
            return RunAPIClient(
                api_key=key,
                base_url=base_url,
                timeout_s=settings.request_timeout_s,
                connect_timeout_s=settings.connect_timeout_s,
                poll_schedule=schedule,
                user_agent=f"kontext-studio/{__version__}",
            )

        server_url = settings.simulator_url or settings.base_url
        if settings.hosted:
            try:
                shared_lookout().ready()  # (every image would be refused otherwise)
            except RuntimeError as exc:
                raise SettingsError(str(exc)) from None
        return cls(
            store,
            client_for(settings.api_key.reveal(), server_url),
            allow_private_links=not settings.hosted,
            task_deadline_s=settings.task_deadline_s,
            client_for_key=client_for,
            limits=Limits(_limit_settings(settings)) if settings.hosted else None,
            schedule=schedule,
            simulated=settings.simulator,
            signer=_c2pa_signer(settings),
            addresses_apart=settings.addresses_apart,
        )

    async def aclose(self) -> None:
        """Stop waiting on running edits (they resume at the next start) and close everything."""
        await self._runner.aclose()
        if self._start_collect is not None:
            self._start_collect.cancel()
        for leaving in self._leaving.values():  # (the next start's pass removes them)
            for task in leaving:
                task.cancel()
        if self._full_collect is not None:
            await asyncio.wait([self._full_collect])
        if self._settling:  # (prices being given back: written before the store closes)
            await asyncio.wait(list(self._settling))
        await asyncio.to_thread(self._thumb_maker.shutdown, cancel_futures=True)
        await asyncio.to_thread(self._lookers.shutdown, cancel_futures=True)
        await asyncio.to_thread(self._store.close)

    # -- intake ---------------------------------------------------------------------------------

    async def read_image(self, data: bytes, *, visitor: Visitor = LOCAL) -> SourceImage:
        """Check uploaded or pasted bytes; raises `ImageError` with one plain sentence (or
        `LimitError` when a hosted visitor has no room left for them).

        Bytes the store already holds for this visitor (a result passed back, the same photo
        again) were checked when they came in, so only their header is read: no decode. Anything
        else is refused past the visitor's share of the disk before a pixel is decoded, and then
        decoded as `_decoding` allows. A hosted visitor reads at most `INTAKES_AT_ONCE` at a
        time."""
        source, _ = await self._take_image(data, visitor, find_made=False)
        return source

    async def _take_image(
        self, data: bytes, visitor: Visitor, *, find_made: bool
    ) -> tuple[SourceImage, Step | None]:
        """`read_image`, and with `find_made` the step that made these bytes (`result_step`;
        else None): for bytes the store holds, both in one hop to a thread, from one digest."""
        async with self._intake(visitor):
            held = await asyncio.to_thread(self._held_source, visitor, data, find_made)
            if held is not None:
                return held
            await self._require_room(visitor, len(data))
            source = await self._decode(data, visitor)
        made = await self.result_step(source.data, visitor=visitor) if find_made else None
        return source, made

    def _held_source(
        self, visitor: Visitor, data: bytes, find_made: bool
    ) -> tuple[SourceImage, Step | None] | None:
        """`data` described from its header when the store holds it for `visitor` (`_holds`),
        with the step that made it when `find_made`; else None. One hop to a thread where there
        were three (its digest, the question, the header), and two more for the step. Blocking."""
        sha256 = hashlib.sha256(data).hexdigest()
        if not self._holds(visitor, sha256):
            return None
        made = self._store.find_result_step(sha256, visitor.owner) if find_made else None
        return describe(data), made

    def _holds(self, visitor: Visitor, sha256: str) -> bool:
        """Whether image `sha256` is stored and in `visitor`'s sessions (any session, for the
        studio's own user). Another visitor's copy does not count: skipping the decode for it
        answered seven times faster, so anyone could tell that someone had this exact photo
        here (review 53 F2)."""
        if visitor.owner is None:
            return self._store.has_image(sha256)
        return self._store.owner_holds_image(visitor.owner, sha256) and self._store.has_image(
            sha256
        )

    async def read_link(self, url: str, *, visitor: Visitor = LOCAL) -> SourceImage:
        """Fetch and check a user's link; raises `ImageError` (`LinkError`) with one sentence.
        The download is capped as an upload is; its decode waits as `_decoding` says. A hosted
        visitor reads at most `INTAKES_AT_ONCE` images, links and imports at a time."""
        async with self._intake(visitor):
            await self._require_room(visitor, 0)
            return await fetch_link(
                url,
                allow_private=self._allow_private_links,
                check=lambda data: self._decode(data, visitor),
            )

    async def read_mask_link(self, url: str, *, visitor: Visitor = LOCAL) -> bytes:
        """The bytes of a mask given as a link (an API or MCP caller's region), read as
        `read_link` reads an image, by `visitor`, once their key and caps say an edit may go:
        an edit that would be refused fetches and decodes nothing."""
        await self.may_edit(visitor)
        return (await self.read_link(url, visitor=visitor)).data

    async def may_edit(self, visitor: Visitor = LOCAL) -> None:
        """Raise when an edit by `visitor` would be refused now (their key, their caps, the
        budgets), counting nothing: a caller asks before reading an image it was sent, so a
        refused edit costs no read or decode (review 27 F2)."""
        await self._require_key(visitor)
        self._may_edit(visitor)

    async def _decode(
        self, data: bytes, visitor: Visitor, *, header: Header | None = None
    ) -> SourceImage:
        """`open_source` for bytes from outside: their header first (refused undecoded when it
        says no), then the full decode as `_decoding` allows; hosted, both in a child process
        (`studio.lookout`), so neither's memory or CPU is the studio's. A `header` given was
        read and counted already (an import's)."""
        counted = header is not None
        if header is None:
            header = await self._look(data, visitor)
        async with self._decoding(visitor, header.decode_pixels, counted=counted):
            return await self._check(data, header)

    async def _check(self, data: bytes, header: Header) -> SourceImage:
        """`open_source` for bytes from outside whose `header` was read; hosted, in a child
        process, refused when it costs more than `header` says (`Lookout.check`)."""
        if self._lookout is None:
            return await asyncio.to_thread(open_source, data)
        return await asyncio.get_running_loop().run_in_executor(
            self._lookers, self._lookout.check, data, header.decode_pixels
        )

    async def _look(self, data: bytes, visitor: Visitor) -> Header:
        """`peek` at bytes from outside; hosted, in a child process (`studio.lookout`), at most
        `LOOK_PLACES` at once: a place that comes free goes to the visitor who had the fewest
        bytes looked at in the last minute, these counted (a hosted visitor has at most
        `INTAKES_AT_ONCE` reads under way; a file refused as costly holds a place for up to two
        seconds; a small file goes ahead of larger ones from visitors as new: review 53 F1)."""
        if self._lookout is None:
            return await asyncio.to_thread(peek, data)
        owner = visitor.owner
        size = len(data)
        used = 0 if owner is None else used_with(self._looked, owner, size)
        async with self._looks.place(used):
            return await asyncio.get_running_loop().run_in_executor(
                self._lookers, self._lookout.look, data
            )

    @contextlib.asynccontextmanager
    async def _decoding(
        self, visitor: Visitor, pixels: int, *, counted: bool = False
    ) -> AsyncIterator[None]:
        """A full decode of an image from outside takes memory and CPU in proportion to its
        `pixels` (an 80-megapixel PNG of a few hundred kilobytes: about 300 MB and a second).
        A named visitor's decodes run one at a time. Small images are decoded at most
        `DECODES_AT_ONCE` at once, large ones (`HEAVY_PIXELS` or more) `HEAVY_DECODES_AT_ONCE`
        in a lane of their own; in each, a place that comes free goes to the decode whose
        visitor had the fewest pixels decoded lately, its own counted (`_decoded_lately`): a
        visitor waits for at most one decode of each visitor ahead of them, never for a large
        image when theirs is small, and a small one goes ahead of larger ones from visitors as
        new as its own. A hosted visitor's large decodes are counted against their minute's
        (`Limits.admit_decode`) as they arrive, before they wait, unless already `counted`."""
        owner = visitor.owner
        heavy = pixels >= HEAVY_PIXELS
        if heavy and owner is not None and self._limits is not None and not counted:
            self._limits.admit_decode(owner, pixels)
        lock = contextlib.nullcontext() if owner is None else _held_lock(self._decoders, owner)
        async with lock:
            lane = self._heavy_decodes if heavy else self._decodes
            async with lane.place(self._decoded_lately(owner, pixels)):
                yield

    def _decoded_lately(self, owner: str | None, pixels: int) -> int:
        """The pixels `owner` had decoded in the last minute with these `pixels` (counted now):
        the fewest goes first when a decode place comes free. (Without its own, forty fresh
        visitors' 7.8-megapixel images, all at 0, went first come first served, and another
        visitor's 64 x 64 upload waited 2.5 s behind them: review 53 F1.)"""
        return 0 if owner is None else used_with(self._decoded, owner, pixels)

    @contextlib.asynccontextmanager
    async def _intake(self, visitor: Visitor) -> AsyncIterator[None]:
        """One image, link or import being read for `visitor`: a hosted visitor has at most
        `INTAKES_AT_ONCE` at a time (and all visitors from one address `INTAKES_PER_ADDRESS`),
        and another is refused at once (`LimitError`), so a pile of one visitor's requests
        runs as quick refusals and never holds the slots all visitors share. The studio's own
        user is never refused. A read inside another (a session started from an upload) counts
        once."""
        owner = visitor.owner
        if owner is None or _INTAKE_OWNER.get() == owner:
            yield
            return
        if self._intakes.get(owner, 0) >= INTAKES_AT_ONCE:
            raise LimitError(BUSY_READING)
        apart = visitor.address is not None and self._addresses_apart
        here = f"address:{visitor.address}" if apart else None
        if here is not None and self._intakes.get(here, 0) >= INTAKES_PER_ADDRESS:
            raise LimitError(BUSY_READING_HERE)
        counted = [owner, *([here] if here is not None else [])]
        for key in counted:
            self._intakes[key] = self._intakes.get(key, 0) + 1
        token = _INTAKE_OWNER.set(owner)
        try:
            yield
        finally:
            _INTAKE_OWNER.reset(token)
            for key in counted:
                left = self._intakes[key] - 1
                if left:
                    self._intakes[key] = left
                else:
                    del self._intakes[key]

    async def _require_room(self, visitor: Visitor, new_bytes: int, what: str = "this one") -> None:
        """Refuse (`LimitError`) bytes that would take a hosted visitor past their share of the
        disk: checked before they are decoded, and again when they are stored."""
        if self._limits is not None and visitor.owner is not None:
            leaving = self._leaving_bytes(visitor.owner)
            held = await asyncio.to_thread(self._held_bytes, visitor.owner) + leaving
            self._limits.admit_upload(held, new_bytes, what, leaving)
            await self._require_shared_room(visitor, new_bytes, what=what)

    async def _require_result_room(
        self, visitor: Visitor, session: Session, steps: list[Step]
    ) -> None:
        """Refuse (`LimitError`) new edits whose results would take a hosted visitor (or their
        address) past their share of the disk, or the disk below its floor: checked when the
        edit is made, before anything is paid. What a result may take is counted ahead
        (`_result_bytes`); a result already paid for is always stored."""
        if self._limits is None or visitor.owner is None:
            return
        expected = sum(_result_bytes(step, session) for step in steps)
        cap = self._limits.settings.upload_bytes
        if expected > cap:
            # (Whatever the visitor keeps: the sentence about what they keep blamed them for a
            # source too large to keep the rest of at its size, review 56 F4.)
            size = f"{expected / 2**20:.0f} MB, more than the {cap / 2**20:.0f} MB each visitor"
            if any(_keeps_rest(step) for step in steps):
                raise LimitError(
                    f"Keeping the rest of this image at its full size may take up to {size} "
                    "may keep: edit it without *Keep the rest* or a region, or a smaller copy "
                    "of it."
                )
            raise LimitError(
                f"These results may take up to {size} may keep: ask for fewer at once."
            )
        what = "another edit's result" if len(steps) == 1 else "these edits' results"
        await self._require_room(visitor, expected, what)

    async def _require_shared_room(
        self, visitor: Visitor, new_bytes: int, also_at: Path | None = None, what: str = "this one"
    ) -> None:
        """Refuse (`LimitError`) a hosted visitor's bytes that would take what everyone from
        their network address keeps past its share, or the disk below its floor (the store's
        disk, and the one `also_at` is on: where the bytes are written first)."""
        limits, owner = self._limits, visitor.owner
        if limits is None or owner is None:
            return
        for place in (self._store.home, *([also_at] if also_at is not None else [])):
            usage = await asyncio.to_thread(shutil.disk_usage, place)
            limits.admit_disk(usage.free, usage.total, new_bytes)
        address = visitor.address
        if address is None:
            return
        now = time.monotonic()
        if address not in self._address_owners:  # as the store knows them (since a restart)
            known = await asyncio.to_thread(self._store.owners_at, address)
            self._address_owners.setdefault(address, dict.fromkeys(known, now))
        owners = self._address_owners.pop(address, {})
        new_here = owner not in owners
        owners[owner] = now
        self._address_owners[address] = owners  # the newest address last
        while len(self._address_owners) > MAX_TRACKED_ADDRESSES:
            self._address_owners.popitem(last=False)
        if new_here:
            await asyncio.to_thread(self._store.note_owner_at, address, owner)
        each = await asyncio.to_thread(lambda: {o: self._held_bytes(o) for o in list(owners)})
        each = {o: held + self._leaving_bytes(o) for o, held in each.items()}
        # Those who have kept nothing since long after they last asked for room are no longer
        # looked at (through a share link's tunnel every visitor ever seen was one query more
        # for each upload); one who asked lately may be storing what they asked for.
        quiet = [
            o for o, held in each.items() if held == 0 and now - owners.get(o, now) > OWNER_QUIET_S
        ]
        for gone in quiet:
            owners.pop(gone, None)
        if quiet:
            await asyncio.to_thread(self._store.forget_owners_at, address, quiet)
        limits.admit_address_upload(sum(each.values()), new_bytes, what)

    async def _require_session_room(self, visitor: Visitor) -> None:
        """Refuse (`LimitError`) a hosted visitor one more session past their cap."""
        if self._limits is not None and visitor.owner is not None:
            count = await asyncio.to_thread(self._store.count_sessions, visitor.owner)
            self._limits.admit_session(count)

    @staticmethod
    def _new_session_bytes(source: SourceImage | None, name: str | None) -> int:
        """What a new session takes of its visitor's share: its row, its first step's, its
        name and its image."""
        image = 0 if source is None else len(source.data)
        return SESSION_BYTES + STEP_BYTES + len((name or UNTITLED).encode()) + image

    # -- sessions -------------------------------------------------------------------------------

    async def start_session(
        self,
        source: SourceImage | None,
        *,
        name: str | None = None,
        visitor: Visitor = LOCAL,
        link_url: str | None = None,
        then_bytes: int = 0,
    ) -> Session:
        """Store `source` (or nothing, to generate) as the origin of a new session; with room
        for `then_bytes` more (an edit's result to come), or none of it."""
        now = self._now()
        # Even a session with no image counts (its rows), so one visitor cannot make millions.
        await self._require_session_room(visitor)
        await self._require_room(visitor, self._new_session_bytes(source, name) + then_bytes)
        step_source = StepSource(kind="link", link_url=link_url) if link_url else None
        # Untitled until its first instruction names it (`_add_steps`).
        title = name or (link_name(link_url) if link_url else None) or UNTITLED
        session_id = new_id()

        def store() -> Session:  # (the image, then the session: one hop to a thread)
            origin = None
            if source is not None:
                origin = self._store.put_image(
                    source.data, format=source.format, width=source.width, height=source.height
                )
            session = Session.start(
                session_id, title, origin, now, source=step_source, owner=visitor.owner
            )
            self._store.create_session(session)
            return session

        return await asyncio.to_thread(store)

    async def start_session_from_bytes(
        self, data: bytes | None, *, name: str | None = None, visitor: Visitor = LOCAL
    ) -> Session:
        """A new session from uploaded bytes (checked first), or with no image for None."""
        if data is None:
            return await self.start_session(None, name=name, visitor=visitor)
        async with self._intake(visitor):
            source = await self.read_image(data, visitor=visitor)
            return await self.start_session(source, name=name, visitor=visitor)

    async def start_session_from_link(
        self, url: str, *, name: str | None = None, visitor: Visitor = LOCAL
    ) -> Session:
        """A new session from a user's link, fetched and checked first."""
        async with self._intake(visitor):
            source = await self.read_link(url, visitor=visitor)
            return await self.start_session(source, name=name, visitor=visitor, link_url=url)

    async def load_session(self, session_id: str, *, visitor: Visitor = LOCAL) -> Session:
        """The session, if `visitor` may touch it: the one check of who may touch a session.

        The studio's own user (`LOCAL`: the CLI, a studio that is not hosted) may touch every
        session. Anyone else sees only sessions they made; another's session is "no such
        session", exactly as one that does not exist.
        """
        session = await asyncio.to_thread(self._store.load_session, session_id)
        if not visitor.is_local and session.owner != visitor.owner:
            # Told as for a session that does not exist: knowing an id reveals nothing.
            raise NoSuchSession()
        await self._resume_with_key(visitor)
        return session

    async def owns_image(self, sha256: str, *, visitor: Visitor = LOCAL) -> bool:
        """Whether `visitor` may see stored image `sha256`: a session of theirs holds it (the
        same rule as `load_session`, for the files the page shows)."""
        if visitor.owner is None:
            return True
        return await asyncio.to_thread(self._store.owner_holds_image, visitor.owner, sha256)

    async def owned_image_path(self, sha256: str, *, visitor: Visitor = LOCAL) -> Path | None:
        """The stored file of image `sha256` when `visitor` may see it (`owns_image`), else
        None."""
        if not await self.owns_image(sha256, visitor=visitor):
            return None
        try:
            return await asyncio.to_thread(self._store.image_path, sha256)
        except StoreError:
            return None

    async def require_room(
        self, new_bytes: int, *, visitor: Visitor = LOCAL, also_at: Path | None = None
    ) -> None:
        """Raise `LimitError` when `new_bytes` more from `visitor` would take what everyone
        from their network address keeps past its share, or the disk below its floor (the
        upload door asks before an upload is read, for the disk `also_at` is on too)."""
        await self._require_shared_room(visitor, new_bytes, also_at)

    async def held_bytes(self, *, visitor: Visitor = LOCAL) -> int:
        """What `visitor`'s sessions take of their share of the disk (`limits.taken_bytes`)."""
        if visitor.owner is None:
            return 0
        return await asyncio.to_thread(self._held_bytes, visitor.owner)

    async def list_sessions(self, *, visitor: Visitor = LOCAL) -> list[SessionSummary]:
        """The visitor's sessions, newest first (a visitor back with their own key: their steps
        that waited for it go on, as when they open a session)."""
        await self._resume_with_key(visitor)
        return await asyncio.to_thread(self._store.list_sessions, visitor.owner)

    async def rename_session(
        self, session_id: str, name: str, *, visitor: Visitor = LOCAL
    ) -> Session:
        """Give a session a new name; raises `HistoryError` for an empty or overlong one."""
        return await self.navigate(session_id, lambda s: s.rename(name), visitor=visitor)

    async def delete_session(self, session_id: str, *, visitor: Visitor = LOCAL) -> Session:
        """Delete a session with its steps, then its images no other session refers to (and
        now and then, in the background, every image nobody refers to: `FULL_COLLECT_EVERY_S`).

        Raises `StoreError` (one sentence) while one of its edits is still queued or running.
        Returns the session as it was.
        """
        async with self._lock(session_id):
            session = await self.load_session(session_id, visitor=visitor)
            waiting = self._awaiting_key.get(session.owner or "", {})
            if any(not s.is_finished and s.step_id not in waiting for s in session.steps.values()):
                raise HistoryError(
                    "This session has an edit still running; delete it once it has finished."
                )
            held = await asyncio.to_thread(self._store.referenced_images, session_id)
            await asyncio.to_thread(self._store.delete_session, session_id)
            for step_id in session.steps:
                waiting.pop(step_id, None)
        self._runner.signals.notify(session_id)
        await self._tell_deleted(session, held)
        await self._collect_deleted(held, session.owner)
        if time.monotonic() >= self._next_full_collect and self._full_collect is None:
            # Every file looked at (a second per 40,000 images): not on a visitor's delete, and
            # one at a time (review 5 F6: each delete looked at every file of the store).
            self._next_full_collect = time.monotonic() + FULL_COLLECT_EVERY_S
            self._full_collect = asyncio.ensure_future(self._collect_all())
        return session

    def when_deleted(self, listener: DeletedListener) -> None:
        """Have `listener(session, images, still_held)` called (blocking, on a thread) after
        each session is deleted: `images` the session's, `still_held(sha)` whether its owner
        holds that image in another session. Whoever keeps copies of a session's files (its
        exports, the page's fitted copies) removes them there."""
        self._on_deleted.append(listener)

    async def _tell_deleted(self, session: Session, images: set[str]) -> None:
        owner, store = session.owner, self._store

        def still_held(sha256: str) -> bool:
            if owner is None:
                return bool(store.still_referenced([sha256]))
            return store.owner_holds_image(owner, sha256)

        for listener in self._on_deleted:
            try:
                await asyncio.to_thread(listener, session, frozenset(images), still_held)
            except (OSError, StoreError) as exc:
                log.warning("Clean-up after a deleted session failed: %s", exc)

    async def _collect_deleted(self, images: set[str], owner: str | None) -> None:
        """Remove a deleted session's `images` that no other session refers to: at once those
        stored more than `LEAVING_GRACE_S` ago, the rest that long later, counted against
        `owner`'s share of the disk until then."""
        owner = owner or ""  # (nobody's share: the studio's own sessions)
        if sum(map(len, self._leaving.values())) >= LEAVING_KEPT:
            await self.collect_garbage(among=images, older_than_s=0)
            return
        await self.collect_garbage(among=images, older_than_s=LEAVING_GRACE_S)
        left = await asyncio.to_thread(self._store.unreferenced_bytes, images)
        if not left:
            return

        async def later() -> None:
            try:
                await asyncio.sleep(LEAVING_GRACE_S + 1)  # (past the files' own grace)
                await self.collect_garbage(among=images, older_than_s=LEAVING_GRACE_S)
            except (OSError, StoreError) as exc:
                log.warning("Clean-up of a deleted session's images failed: %s", exc)
            finally:
                leaving = self._leaving.get(owner, {})
                leaving.pop(task, None)
                if not leaving:
                    self._leaving.pop(owner, None)

        task = asyncio.ensure_future(later())
        self._leaving.setdefault(owner, {})[task] = left

    def _leaving_bytes(self, owner: str) -> int:
        """The bytes of `owner`'s deleted sessions still on disk (`_collect_deleted`)."""
        return sum(self._leaving.get(owner, {}).values())

    def collect_after_start(self, delay_s: float = UNREFERENCED_GRACE_S) -> None:
        """Look at every stored image once, `delay_s` from now, in the background: a run killed
        mid-import (or mid-edit) left images no session refers to, which otherwise waited for a
        visitor's delete to start a pass (review 17 L1). The wait is the grace every new image
        has (one the killed run stored moments before is that young)."""

        async def later() -> None:
            await asyncio.sleep(delay_s)
            self._start_collect = None
            if self._full_collect is None:
                self._next_full_collect = time.monotonic() + FULL_COLLECT_EVERY_S
                self._full_collect = asyncio.ensure_future(self._collect_all())
                await asyncio.wait([self._full_collect])

        if self._start_collect is None:
            self._start_collect = asyncio.ensure_future(later())

    async def _collect_all(self) -> None:
        try:
            await self.collect_garbage()
        except (OSError, StoreError) as exc:
            log.warning("Clean-up of unreferenced images failed: %s", exc)
        finally:
            self._full_collect = None

    async def collect_garbage(
        self, *, older_than_s: float = UNREFERENCED_GRACE_S, among: set[str] | None = None
    ) -> int:
        """Remove stored images and thumbnails no session refers to (of `among`, if given),
        older than `older_than_s` seconds; how many images went. Files a session refers to are
        never touched."""
        removed = await asyncio.to_thread(
            self._store.collect_images, older_than_s=older_than_s, among=among
        )
        if removed:
            log.info("Removed %d image(s) no session refers to", len(removed))
        return len(removed)

    async def navigate(
        self, session_id: str, move: Callable[[Session], Session], *, visitor: Visitor = LOCAL
    ) -> Session:
        """Apply one pure move (undo, redo, make current, rename...) and store the result."""
        async with self._lock(session_id):
            session = await self.load_session(session_id, visitor=visitor)
            moved = move(session)
            if moved.name != session.name:
                await asyncio.to_thread(self._store.rename_session, session_id, moved.name)
            if moved.steps.keys() != session.steps.keys():
                gone = session.steps.keys() - moved.steps.keys()
                await asyncio.to_thread(self._store.delete_steps, moved, gone)
            await asyncio.to_thread(self._store.set_current, moved)
        self._runner.signals.notify(session_id)
        return moved

    # -- edits ----------------------------------------------------------------------------------

    async def submit_edit(
        self,
        session_id: str,
        params: EditParams,
        *,
        parent_step_id: str | None = None,
        visitor: Visitor = LOCAL,
        region: RegionRequest | StepRegion | None = None,
    ) -> Step:
        """Queue an edit after the current step (or after `parent_step_id`) and start it.

        Returns the queued step at once; follow it with `watch` or `wait`. Raises `ParamsError`,
        `HistoryError`, `RegionError` or `LimitError` (one plain sentence) when the edit cannot
        start; then nothing is stored. With a `region` (or `params.keep_rest`), the step's
        image is the source outside the region and the model's output inside it.
        """
        await self._require_key(visitor)
        (step,) = await self._add_steps(
            session_id,
            [params],
            parent_step_id,
            keep_current=False,
            visitor=visitor,
            region=region,
        )
        self._launch(step, visitor)
        return step

    async def retry(
        self,
        session_id: str,
        step_id: str,
        *,
        visitor: Visitor = LOCAL,
    ) -> Step:
        """Run a finished step again as a new sibling step (the step stays as it was); the
        step that runs it, the last of them when it was typed ahead of failed steps that run
        again first, in order (`Session.to_try_again`)."""
        await self._require_key(visitor)
        async with self._lock(session_id):
            session = await self.load_session(session_id, visitor=visitor)
            steps: list[Step] = []
            for old in session.to_try_again(step_id):
                after = steps[-1].step_id if steps else None
                session = session.retry(old.step_id, new_id(), self._now(), after=after)
                steps.append(await self._paid_by(session.current, visitor))
            await self._require_result_room(visitor, session, steps)
            await self._admit(session, steps, visitor, chain=True)
            for step in steps:
                await asyncio.to_thread(self._store.save_step, step)
            await asyncio.to_thread(self._store.set_current, session)
        for step in steps:
            self._launch(step, visitor)
        return steps[-1]

    async def edit(
        self,
        session_id: str,
        params: EditParams,
        *,
        parent_step_id: str | None = None,
        visitor: Visitor = LOCAL,
        region: RegionRequest | StepRegion | None = None,
    ) -> Step:
        """Submit an edit and wait for its final step (completed or failed)."""
        step = await self.submit_edit(
            session_id, params, parent_step_id=parent_step_id, visitor=visitor, region=region
        )
        return await self.wait(step.step_id)

    async def compare(
        self,
        session_id: str,
        params: EditParams,
        *,
        parent_step_id: str | None = None,
        visitor: Visitor = LOCAL,
        region: RegionRequest | StepRegion | None = None,
    ) -> tuple[Step, Step]:
        """Queue the same edit on pro and on max, side by side from the same parent.

        Both start at once, so the pair takes about as long as the slower model. Neither becomes
        current: the caller keeps one with `keep`, and the other stays as a sibling branch.
        """
        pro, max_ = await self.candidates(
            session_id,
            params,
            models=("pro", "max"),
            parent_step_id=parent_step_id,
            visitor=visitor,
            region=region,
        )
        return pro, max_

    async def candidates(
        self,
        session_id: str,
        params: EditParams,
        *,
        count: int = 2,
        models: Sequence[Model] | None = None,
        parent_step_id: str | None = None,
        visitor: Visitor = LOCAL,
        region: RegionRequest | StepRegion | None = None,
    ) -> list[Step]:
        """Several results of one instruction from the same parent, all started at once: one
        per model in `models` (pro vs max), or `count` runs on `params.model`.

        None becomes current: keep one with `keep`; the others stay as sibling branches.
        Raises `HistoryError` for fewer than 2 or more than `MAX_CANDIDATES`.
        """
        variants = [replace(params, model=m) for m in models] if models else [params] * count
        if not 2 <= len(variants) <= MAX_CANDIDATES:
            raise HistoryError(f"Ask for 2 to {MAX_CANDIDATES} results at once.")
        await self._require_key(visitor)
        steps = await self._add_steps(
            session_id, variants, parent_step_id, keep_current=True, visitor=visitor, region=region
        )
        for step in steps:
            self._launch(step, visitor)
        return steps

    async def cancel(self, session_id: str, step_id: str, *, visitor: Visitor = LOCAL) -> Session:
        """Remove one queued step that has not started; the steps queued after it then run
        from the step before it.

        Raises `HistoryError` (one sentence) if it has started: it then runs to the end.
        """
        async with self._lock(session_id):
            session = await self.load_session(session_id, visitor=visitor)
            if step_id in self.left_open(session):
                raise HistoryError(LEFT_OPEN_NOT_CANCELLED)
            cancelled = session.cancel(step_id)
            moved = [cancelled.steps[s.step_id] for s in session.children(step_id)]
            await self._runner.cancel(step_id)  # if it started, nothing goes
            unspent = await asyncio.to_thread(self._store.cancel_steps, cancelled, [step_id], moved)
            self._runner.reparent(moved)
            self._unawait(session.owner, step_id, moved)
            if self._limits is not None:
                for step in moved:  # (each now waits for the step before the cancelled one)
                    if step.parent_id is not None:
                        self._limits.follow(step.step_id, step.parent_id)
                for day, owner, address, cents in unspent:  # (sent nothing: nobody's budget)
                    self._limits.refund(day, owner, address, cents)
        self._runner.signals.notify(session_id)
        return cancelled

    async def session_version(self, session_id: str, *, visitor: Visitor = LOCAL) -> str | None:
        """A value that changes whenever a step of the session is added, advances or goes."""
        if not visitor.is_local:
            await self.load_session(session_id, visitor=visitor)
        await self._resume_with_key(visitor)
        return await asyncio.to_thread(self._store.session_version, session_id)

    async def tab_version(self, session_id: str, *, visitor: Visitor = LOCAL) -> str | None:
        """`session_version`, and a mark that changes whenever one of the visitor's sessions is
        made or goes (the CLI's or an agent's new session shows in an open tab's list)."""
        if not visitor.is_local:
            await self.load_session(session_id, visitor=visitor)
        await self._resume_with_key(visitor)
        return await asyncio.to_thread(self._store.tab_version, session_id, visitor.owner)

    async def show_branch(
        self, session_id: str, step_id: str, end_id: str, *, visitor: Visitor = LOCAL
    ) -> Session:
        """Make `step_id` current with the rest of its branch, to `end_id`, ahead of it: Redo
        walks on to that end (a branch's chip in the history)."""
        return await self.navigate(
            session_id, lambda s: s.make_current(end_id).make_current(step_id), visitor=visitor
        )

    async def note_choice(
        self,
        session_id: str,
        from_step_id: str | None,
        step_ids: Sequence[str] | None,
        *,
        visitor: Visitor = LOCAL,
    ) -> None:
        """Results of `session_id` made side by side from `from_step_id` wait for one to be
        kept, as the studio's page shows them (`step_ids` None: no longer). Kept in the store:
        a restart forgets no pending choice."""
        await self.load_session(session_id, visitor=visitor)
        await asyncio.to_thread(self._store.note_choice, session_id, from_step_id, step_ids)

    async def pending_choice(
        self, session_id: str, *, visitor: Visitor = LOCAL
    ) -> tuple[str | None, tuple[str, ...]] | None:
        """The results of `session_id` waiting for one to be kept (`note_choice`), and the
        step they were made from; None if none wait."""
        await self.load_session(session_id, visitor=visitor)
        return await asyncio.to_thread(self._store.pending_choice, session_id)

    async def keep(self, session_id: str, step_id: str, *, visitor: Visitor = LOCAL) -> Session:
        """Make a step current (a compared result kept, a step clicked), so the chain goes on
        from it. A pending choice it is one of (`note_choice`) is answered: from the page, the
        API or an agent alike."""
        session = await self.navigate(
            session_id, lambda s: s.make_current(step_id), visitor=visitor
        )
        await asyncio.to_thread(self._store.answer_choice, session_id, step_id)
        return session

    async def undo(
        self, session_id: str, from_step_id: str | None = None, *, visitor: Visitor = LOCAL
    ) -> Session:
        """Move to the parent of `from_step_id` (the step a tab shows; default the current)."""
        return await self.navigate(
            session_id, lambda s: s.seen_from(from_step_id).undo(), visitor=visitor
        )

    async def redo(
        self,
        session_id: str,
        from_step_id: str | None = None,
        *,
        via: Sequence[str] = (),
        visitor: Visitor = LOCAL,
    ) -> Session:
        """Move back down to the step undone last from `from_step_id` (default the current);
        `via`: the steps ahead of it that the tab undid, nearest first (`Session.seen_from`)."""
        return await self.navigate(
            session_id, lambda s: s.seen_from(from_step_id, via).redo(), visitor=visitor
        )

    async def go(
        self,
        session_id: str,
        to: str,
        from_step_id: str | None = None,
        *,
        via: Sequence[str] = (),
        visitor: Visitor = LOCAL,
    ) -> Session:
        """Make `to` current as a tab showing `from_step_id` sees the session (`via`: the
        steps ahead of it that the tab undid, nearest first): up its path is a series of
        undos, which redo comes back down; down the steps ahead, redos; anywhere else, a new
        start (`Session.make_current`)."""
        return await self.navigate(
            session_id, lambda s: s.seen_from(from_step_id, via).make_current(to), visitor=visitor
        )

    async def wait(self, step_id: str) -> Step:
        """The final record of a step started by this engine (or already finished in the store)."""
        step = await self._runner.wait(step_id)
        if step is None:
            raise HistoryError(f"Step {step_id} is not running in this studio.")
        return step

    def watch(self, step_id: str) -> AsyncIterator[StepUpdate]:
        """Each new phase of a running step, ending with the final one (nothing if not running)."""
        return self._runner.watch(step_id)

    def watch_session(
        self, session_id: str, *, tick_s: float = 0.5
    ) -> AsyncIterator[dict[str, StepUpdate]]:
        """The running steps of a session, at once, at every change and every `tick_s`, ending
        with an empty snapshot once nothing runs."""
        return self._runner.watch_session(session_id, tick_s=tick_s)

    def running(self, session_id: str) -> dict[str, StepUpdate]:
        """The steps of a session running in this engine now, with phase and elapsed time."""
        return self._runner.running(session_id)

    def left_open(self, session: Session) -> frozenset[str]:
        """The queued steps of `session` that were left open to be asked for again (a run
        that ended when RunAPI stopped answering, here or in another process such as a CLI
        run: their create may have reached RunAPI): none can be cancelled (`cancel`). A step
        that waits for its visitor's key is queued with a reason too, but can be."""
        waiting = self._awaiting_key.get(session.owner or "", {})
        return frozenset(
            step.step_id
            for step in session.steps.values()
            if step.state is StepState.QUEUED
            and step.error is not None
            and step.step_id not in waiting
        )

    async def resume_unfinished(self) -> list[Step]:
        """Pick up every queued or running step left by an earlier run (a crash or a restart).

        A step with a task id is polled by that id; one without is created again under its own
        idempotency key, so the service answers with the task it may already have started.
        Only steps the server's key pays for run at once (each takes its visitor's place in a
        hosted studio; its spending was counted when it was made). A step paid with a
        visitor's own key never runs on the server's: the studio keeps no visitor's key, so it
        waits, saying so, for its visitor to come back with their key (`load_session`); its
        session can still be deleted meanwhile.

        Network addresses' visitors who keep no session are forgotten (`Store.owners_at`): what
        they were storing when the earlier run ended is gone with it.
        """
        await asyncio.to_thread(self._store.forget_owners_without_sessions)
        steps = await asyncio.to_thread(self._store.unfinished_steps)
        owners = await asyncio.to_thread(self._store.owners_of, [s.session_id for s in steps])
        for step in steps:  # (oldest first: a step before the steps queued behind it)
            if self._runner.is_running(step.step_id):
                continue
            owner = owners.get(step.session_id)
            # From before payers were recorded: a hosted visitor's may have been their key's.
            payer = step.payer or ("host" if owner is None else "visitor")
            if payer == "visitor":
                await self._await_key(replace(step, payer=payer), owner, WAITS_FOR_KEY)
            elif step.parent_id in self._awaiting_key.get(owner or "", {}):
                # Queued behind one that waits: it would hold a running place, waiting for it
                # without a word, for as long as that one waits (review 36 F3).
                await self._await_key(replace(step, payer=payer), owner, WAITS_FOR_EARLIER)
            else:
                self._resume_on_server_key(step, owner)
        return steps

    def _resume_on_server_key(self, step: Step, owner: str | None) -> None:
        """Run a step the server's key pays for, found unfinished at start-up (it holds its
        visitor's running place; its spending was counted when it was made)."""
        log.info("Resuming step %s (task %s)", step.step_id, step.task_id)
        limits = self._limits
        if limits is not None and owner is not None:
            limits.hold(owner, step.step_id)
        self._runner.launch(step, None, on_done=self._run_ended if limits else None)

    async def _await_key(self, step: Step, owner: str | None, why: str) -> None:
        """A step found unfinished at start-up that waits for its visitor's key: paid with it
        (it never runs on the server's), or queued behind one that is (`why` says which)."""
        log.info("Step %s waits for its visitor's own key", step.step_id)
        waiting = replace(step, error=why)
        await asyncio.to_thread(self._store.save_step, waiting)
        self._awaiting_key.setdefault(owner or "", {})[step.step_id] = waiting

    def _resume_behind(self, owner: str | None) -> None:
        """Run `owner`'s steps the server's key pays for that waited behind a step waiting for
        their key, once the step before each no longer waits (it ran, or was cancelled)."""
        waiting = self._awaiting_key.get(owner or "", {})
        while free := [
            s for s in waiting.values() if s.payer == "host" and s.parent_id not in waiting
        ]:
            for step in free:
                del waiting[step.step_id]
                self._resume_on_server_key(replace(step, error=None), owner)
        if not waiting:
            self._awaiting_key.pop(owner or "", None)

    def _unawait(self, owner: str | None, step_id: str, moved: list[Step]) -> None:
        """A step cancelled (`step_id`) no longer waits for its visitor's key, and the steps
        moved to its parent wait as they are now: it was run, and paid, when the key came back,
        and those after it ran from it (review 36 F2)."""
        waiting = self._awaiting_key.get(owner or "")
        if not waiting:
            return
        waiting.pop(step_id, None)
        for step in moved:
            if step.step_id in waiting:
                waiting[step.step_id] = replace(step, error=waiting[step.step_id].error)
        self._resume_behind(owner)

    async def _resume_with_key(self, visitor: Visitor) -> None:
        """The visitor is back with their own key: their steps that waited for that key (the
        one that paid for them) run on it; those of another key of theirs wait on."""
        if visitor.api_key is None or not self._awaiting_key:
            return
        waiting = self._awaiting_key.get(visitor.owner or "", {})
        if not waiting:
            return
        paid_by = await self._key_print(visitor.api_key)
        for step in [s for s in waiting.values() if s.payer != "host"]:
            if step.payer_key in (None, paid_by):
                del waiting[step.step_id]
                log.info("Resuming step %s on its visitor's key", step.step_id)
                self._launch(replace(step, error=None), visitor)
        self._resume_behind(visitor.owner)

    # -- portable sessions ----------------------------------------------------------------------

    async def export_session(
        self, session_id: str, *, branch_step_id: str | None = None, visitor: Visitor = LOCAL
    ) -> bytes:
        """A ZIP of the session (or of the path to `branch_step_id`): images and session.json,
        in memory (`export_to` writes one to a file). Bounded as `export_to` is."""
        async with self._export_turn(visitor):
            session, step_ids = await self._exported(session_id, branch_step_id, visitor)
            return await asyncio.to_thread(
                write_bundle, session, self._store.read_image, step_ids=step_ids
            )

    async def export_to(
        self,
        session_id: str,
        target: Path,
        *,
        branch_step_id: str | None = None,
        visitor: Visitor = LOCAL,
    ) -> int:
        """Write the ZIP of the session (or of the path to `branch_step_id`) to `target`, a new
        file, one image in memory at a time; its size in bytes. At most `EXPORTS_AT_ONCE` are
        written at once (the others wait their turn), and a hosted visitor's second while their
        first is written is refused (`LimitError`, one sentence). Nothing is left at `target`
        when it fails. A hosted visitor's export is refused when it would take the disk it is
        written to below the floor (`Limits.admit_disk`), as an upload is."""
        async with self._export_turn(visitor):
            session, step_ids = await self._exported(session_id, branch_step_id, visitor)
            if self._limits is not None and visitor.owner is not None:
                refs = {s.result for s in session.steps.values() if s.result is not None}
                size = await asyncio.to_thread(_stored_size, self._store, refs)
                usage = await asyncio.to_thread(shutil.disk_usage, target.parent)
                self._limits.admit_disk(usage.free, usage.total, size)
            return await asyncio.to_thread(
                _write_file, target, session, self._store.read_image, step_ids
            )

    async def _exported(
        self, session_id: str, branch_step_id: str | None, visitor: Visitor
    ) -> tuple[Session, list[str] | None]:
        """The session to export, if `visitor` may, and the steps of the branch asked for."""
        session = await self.load_session(session_id, visitor=visitor)
        if branch_step_id is None:
            return session, None
        session = session.make_current(branch_step_id)
        return session, [s.step_id for s in session.path()]

    @contextlib.asynccontextmanager
    async def _export_turn(self, visitor: Visitor) -> AsyncIterator[None]:
        """One export being written: `EXPORTS_AT_ONCE` in all, one for each hosted visitor
        (another is refused at once: `BUSY_EXPORTING`), and a place that comes free goes to
        the export whose network address (then visitor) exported least in the last minute:
        ten cookies of one address exporting large sessions in turn held another visitor's
        one-step export 9.4 s, first come first served (review 17, F1)."""
        owner = visitor.owner
        if owner is not None:
            if owner in self._exporting:
                raise LimitError(BUSY_EXPORTING)
            self._exporting.add(owner)
        try:
            async with self._exports.place(self._exports_lately(visitor)):
                yield
        finally:
            if owner is not None:
                self._exporting.discard(owner)

    def _exports_lately(self, visitor: Visitor) -> int:
        """How far back `visitor`'s export waits (counted now): the exports of their network
        address in the last minute first (fresh cookies are cheap), then their own."""
        if visitor.owner is None:
            return 0
        mine = used_lately(self._exported_lately, visitor.owner, 1)
        if visitor.address is None or not self._addresses_apart:
            return mine
        here = used_lately(self._exported_lately, f"address:{visitor.address}", 1)
        return here * EXPORTS_TRACKED + min(mine, EXPORTS_TRACKED - 1)

    async def import_session(self, data: bytes, *, visitor: Visitor = LOCAL) -> Session:
        """Store an exported ZIP as a new session; its images come back byte for byte.

        Everything is checked before anything is written, and a refused import leaves nothing
        behind. Steps that were unfinished at export arrive failed and are never resumed.

        Raises:
            BundleError: the ZIP is not an export, or a value in it is not one a new edit could
                have; ImageError: an image in it does not decode as described.
        """
        async with self._intake(visitor):
            return await self._import(data, visitor)

    async def _import(self, data: bytes, visitor: Visitor) -> Session:
        await self._require_session_room(visitor)
        room = None
        if self._limits is not None and visitor.owner is not None:
            # Inflated only within what the visitor may still keep: a small ZIP of zeros must
            # not unpack to hundreds of megabytes before the share refuses it.
            held = await asyncio.to_thread(self._held_bytes, visitor.owner)
            room = self._limits.settings.upload_bytes - held
        bundle = await asyncio.to_thread(
            read_bundle, data, now=self._now(), owner=visitor.owner, room=room
        )
        session = bundle.session
        if not session.name.endswith(IMPORTED_MARK):
            name = f"{session.name[: MAX_NAME_CHARS - len(IMPORTED_MARK)]}{IMPORTED_MARK}"
            session = session.rename(name)
        if self._limits is not None and visitor.owner is not None:
            # An import is counted against the visitor's share like an upload: every image it
            # brings that they do not hold yet, and its rows and text.
            owner = visitor.owner
            held, holding = await asyncio.to_thread(self._held, owner)
            have = {ref.sha256 for ref in holding.images}
            new = sum(len(i.data) for sha, i in bundle.images.items() if sha not in have)
            rows = taken_bytes(0, 1, len(session.steps), text_bytes(session))
            self._limits.admit_upload(held, new + rows)
            await self._require_shared_room(visitor, new + rows)
        # An import is anyone's file: each image is decoded in full (a result's CRC check is
        # not enough), but only once every header matches its step's description and what
        # they cost to decode is counted, so a refused import costs its headers alone.
        headers = [await self._look(i.data, visitor) for i in bundle.images.values()]
        for image, header in zip(bundle.images.values(), headers, strict=True):
            _check_described(header.format, header.width, header.height, image.ref)
        await self._admit_decodes(visitor, [h.decode_pixels for h in headers])
        small = 0
        try:
            for image, header in zip(bundle.images.values(), headers, strict=True):
                # (The decode reads the same header: only a damaged image can fail it now.)
                if header.decode_pixels < HEAVY_PIXELS:
                    small += header.decode_pixels
                await self._decode(image.data, visitor, header=header)
        finally:
            # Its small images count too once decoded (refused or not): an import failing at
            # its last image is no free way to make the studio decode a hundred others.
            if self._limits is not None and visitor.owner is not None:
                self._limits.note_decoded(visitor.owner, small)
        added: list[str] = []
        try:
            for image in bundle.images.values():
                ref = image.ref
                if not await asyncio.to_thread(self._store.has_image, ref.sha256):
                    added.append(ref.sha256)
                await self._put_image(image.data, ref.format, ref.width, ref.height)
            await asyncio.to_thread(self._store.create_session, session)
        except BaseException:
            for sha256 in added:
                await asyncio.to_thread(self._store.discard_image, sha256)
            raise
        return session

    async def _admit_decodes(self, visitor: Visitor, pixels: list[int]) -> None:
        """Count the large images of one import for a hosted visitor, all at once, or refuse
        the import (`LimitError`) before any is decoded: when they decoded a minute's worth
        already (small images of imports included), or the import's large ones would pass it.
        One import holds at most what a visitor may decode in a minute."""
        if visitor.owner is None or self._limits is None:
            return
        self._limits.admit_decoding(visitor.owner)
        heavy = sum(p for p in pixels if p >= HEAVY_PIXELS)
        if not heavy:
            return
        cap = self._limits.settings.decode_pixels_per_minute
        if heavy > cap:
            raise LimitError(
                f"The export holds {heavy // 1_000_000} megapixels of large images; this studio "
                f"checks at most {cap // 1_000_000} in one import. Export "
                "fewer steps (a branch) and import them in turn."
            )
        self._limits.admit_decode(visitor.owner, heavy)

    async def replay(
        self,
        data: bytes,
        source: SourceImage | None,
        *,
        visitor: Visitor = LOCAL,
        on_step: Callable[[Step], None] | None = None,
        region: RegionRequest | None = None,
        keep_rest: bool = False,
    ) -> Session:
        """Apply the instructions of an exported chain, in order, to a new source image.

        Each step is kept to the region it was kept to (a box scaled to the new image, a mask
        scaled to it, or found again), unless `region` or `keep_rest` is given for every step.
        Stops at the first step that fails; that step stays in the new session's history.
        """
        bundle = await asyncio.to_thread(read_bundle, data, now=self._now())
        chain = chain_steps(bundle)
        if not chain:
            raise BundleError("The export has no instructions to replay.")
        session = await self.start_session(
            source, name=f"Replay of {bundle.session.name}"[:MAX_NAME_CHARS], visitor=visitor
        )
        for params, recorded, mask in chain:
            again: RegionRequest | StepRegion | None = region
            if region is None and recorded is not None and recorded.kind != "auto":
                again = RegionRequest(mask=mask) if recorded.kind == "mask" else recorded
            if keep_rest:
                params = replace(params, keep_rest=True)
            step = await self.edit(session.session_id, params, visitor=visitor, region=again)
            if on_step is not None:
                on_step(step)
            if step.state is not StepState.COMPLETED:
                break
        return await self.load_session(session.session_id, visitor=visitor)

    # -- images ---------------------------------------------------------------------------------

    def image_path(self, ref: ImageRef) -> Path:
        """Where the stored image `ref` lives (built from its name and format: no disk access)."""
        return self._store.path_of(ref)

    async def image_bytes(self, ref: ImageRef) -> bytes:
        """The stored bytes of image `ref`, exactly as received."""
        return await asyncio.to_thread(self._store.read_image, ref.sha256)

    async def thumbnails(
        self, refs: list[ImageRef], *, visitor: Visitor = LOCAL
    ) -> dict[str, Path]:
        """A small copy of each stored image for history strips (made once), by sha256; at
        most `THUMBNAILS_PER_CALL` missing ones are made in one call (the rest as the page asks
        again). A thumbnail is a full decode of its image (an 8-megapixel HEIC: half a second):
        they are made on a thread of their own, never on the one every store read shares; one
        at a time; each image once, however many pages ask for it at once; and the maker, when
        it comes free, goes to the visitor who had the fewest pixels made lately, this
        thumbnail's own counted (review 5 F3: six renders of a fresh import, each decoding the
        same 48 images on the shared threads, stalled every other visitor's page for up to
        39 s; review 53 F1: forty fresh visitors' 7.8-megapixel thumbnails, first come first
        served, held another's 64 x 64 one for seconds)."""
        owner = visitor.owner
        found, missing = await asyncio.to_thread(self._store.existing_thumbnails, refs, owner)
        missing = missing[:THUMBNAILS_PER_CALL]
        if missing:
            known = await asyncio.to_thread(self._store.image_pixels, missing)
            pixels = [known.get(sha, UNKNOWN_THUMBNAIL_PIXELS) for sha in missing]
            used = self._thumbnails_lately(owner, sum(pixels))
            # Each counts the ones asked before it and its own: one large ask waits its turn.
            ahead = itertools.accumulate(pixels)
            asks = (
                self._thumbnail(sha, owner, used + n) for n, sha in zip(ahead, missing, strict=True)
            )
            made = await asyncio.gather(*asks)
            found.update({sha: path for sha, path in zip(missing, made, strict=True) if path})
        return found

    def _thumbnail(self, sha256: str, owner: str | None, used: int) -> asyncio.Future[Path | None]:
        """`owner`'s thumbnail of `sha256` being made (one making for all their pages that
        ask), for one asker (who may give up without stopping it for the others). Each
        visitor's thumbnails are their own (`store.thumbnail_tag`)."""
        key = (sha256, owner)
        making = self._thumbs_making.get(key)
        if making is None:
            making = asyncio.ensure_future(self._make_thumbnail(sha256, owner, used))
            self._thumbs_making[key] = making
            making.add_done_callback(lambda _: self._thumbs_making.pop(key, None))
        return asyncio.shield(making)

    async def _make_thumbnail(self, sha256: str, owner: str | None, used: int) -> Path | None:
        async with self._thumb_places.place(used):
            loop = asyncio.get_running_loop()
            make = functools.partial(
                self._store.make_thumbnail, sha256, self._thumbnail_maker, owner
            )
            try:
                return await loop.run_in_executor(self._thumb_maker, make)
            except (StoreError, OSError, RuntimeError, ImageError):  # (or the studio closing)
                return None

    async def image_work(
        self, work: Callable[[], T], *, pixels: int, visitor: Visitor = LOCAL
    ) -> T:
        """Run `work`, a blocking computation on stored images of `pixels` in all, for a page
        (the compare slider's fitted copy), where thumbnails are made: on their thread, one at
        a time, and counted as thumbnails are. (Review 6 F1: twelve fits at once of one
        visitor's imported 8-megapixel steps, on the threads that serve every visitor's
        pictures, held those for 20 s and grew the studio by 700 MB.)"""
        used = self._thumbnails_lately(visitor.owner, pixels) + pixels
        async with self._thumb_places.place(used):
            return await asyncio.get_running_loop().run_in_executor(self._thumb_maker, work)

    def _thumbnails_lately(self, owner: str | None, pixels: int) -> int:
        """The pixels of the thumbnails (and page work) `owner` asked for in the last minute,
        before these `pixels` (counted now): who asked for the fewest goes first when the maker
        comes free."""
        return 0 if owner is None else used_lately(self._thumbed, owner, pixels)

    def served_folders(self) -> list[Path]:
        """The folders whose files the page shows: stored images and thumbnails."""
        return [self._store.images_dir, self._store.thumbs_dir]

    def private_folders(self) -> list[Path]:
        """The data directory: nothing in it but a visitor's own images is ever served."""
        return [self._store.home]

    async def balance_cents(self, *, visitor: Visitor = LOCAL) -> int | None:
        """The balance of the key that pays for `visitor`'s edits; None for a hosted visitor
        without a key of their own, who is never shown the host's balance, and for the
        simulator's key (play money), and for a visitor's key RunAPI has not accepted through
        `check_key` (counted there): asking for a balance is never a way to try keys."""
        if visitor.api_key is None and (not visitor.is_local or self._simulated):
            return None
        key = self._payer(visitor)
        if key is not None and not self._clients.is_accepted(key):
            return None
        balance = await self._clients.get(key).get_balance()
        return balance.balance_cents

    async def share_left(self, *, visitor: Visitor = LOCAL) -> tuple[int, int] | None:
        """For a hosted visitor editing on the server's key: what they may still spend of it
        today, and their day's share, in cents (`Limits.share_left`); None for anyone else
        (a visitor with a key of their own pays for their own edits)."""
        if self._limits is None or visitor.owner is None or self._payer(visitor) is not None:
            return None
        return self._limits.share_left(visitor.owner, visitor.address)

    async def check_key(self, api_key: Secret, *, visitor: Visitor = LOCAL) -> int | None:
        """Check a visitor's key with RunAPI (a balance call): the balance in cents, or None
        if its shape is unknown. Raises `AuthenticationError` whose sentence names the pasted
        key when RunAPI refuses it, or another `RunAPIError` when it cannot be asked; a named
        visitor checks at most `KEY_CHECKS_PER_MINUTE` keys a minute (`LimitError` past it), so
        the studio cannot be used to try keys against RunAPI."""
        if visitor.owner is not None:
            self._count_key_check(visitor.owner)
        digest = hashlib.sha256(api_key.reveal().encode()).hexdigest()
        tried = None if self._accepted_lately(digest) else self._try_key_from(visitor.address)
        refused = False
        try:
            balance = await self._clients.check(api_key)
        except AuthenticationError:
            refused = True
            raise
        finally:
            self._settle_key_try(visitor.address, tried, refused=refused)
        self._note_accepted(digest)
        return balance

    async def note_new_visitor(self, address: str, *, kept_s: float) -> None:
        """Keep, for `kept_s`, that `address` became a new visitor now (the door's count of new
        visitors an hour, which a restart would otherwise start again from none)."""
        try:
            await asyncio.to_thread(
                self._store.note_new_visitor, address, time.time(), kept_s=kept_s
            )
        except StoreError as exc:  # counted in memory all the same
            log.warning("A new visitor could not be counted in the store: %s", exc)

    async def new_visitors_within(self, seconds: float) -> dict[str, list[float]]:
        """How many seconds ago each address became each of its new visitors, within `seconds`."""
        now = time.time()
        since = await asyncio.to_thread(self._store.new_visitors_since, now - seconds)
        return {address: [now - at for at in times] for address, times in since.items()}

    async def export_shares(self, *, visitor: Visitor) -> tuple[int, int] | None:
        """The bytes of exports `visitor`, and everyone from their network address, may have
        waiting: what their sessions hold (each image once), within their shares of the disk,
        and a little more for the ZIP's own (None: not counted, the studio's own user). Against
        their shares alone, exports of four sessions of one 17 MB image from two cookies kept
        six times what the store held (review 27 F1)."""
        owner = visitor.owner
        if self._limits is None or owner is None:
            return None
        caps = self._limits.settings
        here = set(self._address_owners.get(visitor.address or "", {})) | {owner}
        held = await asyncio.to_thread(lambda: {o: self._held_bytes(o) for o in here})
        mine = min(caps.upload_bytes, held[owner])
        ours = min(caps.address_share_bytes, sum(held.values()))
        return mine + EXPORT_SLACK_BYTES, ours + EXPORT_SLACK_BYTES

    async def secret(self, name: str) -> bytes:
        """A random secret kept in the data directory (made once), e.g. to sign visitor tokens."""
        return await asyncio.to_thread(self._store.secret, name)

    async def _require_key(self, visitor: Visitor) -> None:
        """Before anything is stored for a visitor paying with their own key: RunAPI accepts
        it (checked once). A hosted caller's key RunAPI has not yet accepted counts as a key
        check of that caller (as a pasted one does of its browser); an API caller's key names a
        new visitor, so trying keys through the API is bounded by the new visitors a network
        address may become (`ui.visitor`). (Counted per address, anyone's five made-up keys a
        minute locked out every new API caller where all share one address: a share link's
        tunnel, a proxy the studio is not told of.)"""
        key = self._payer(visitor)
        if key is None:
            return
        if visitor.owner is not None and not self._clients.is_accepted(key):
            self._count_key_check(visitor.owner)
        await self._clients.require_accepted(key)

    async def key_accepted(self, api_key: Secret, *, address: str | None = None) -> bool | None:
        """Whether RunAPI accepts an API or MCP caller's key, before it names anyone: True,
        False, or None when RunAPI could not be asked (the key then names its caller, and the
        step's run says what is wrong). Answered from memory where it can be (a key accepted
        while its client lives, one refused lately); otherwise asked once however many of the
        caller's requests wait on it, `KEY_ASKS_AT_ONCE` keys at a time for all callers, fair
        by network address (`LimitError` after `KEY_ASK_WAIT_S` waiting for a place)."""
        known = self._clients.known_verdict(api_key)
        if known is not None:
            return known
        digest = hashlib.sha256(api_key.reveal().encode()).hexdigest()
        if self._accepted_lately(digest):
            return True
        unanswered = self._key_unanswered.get(digest)
        if unanswered is not None and time.monotonic() - unanswered < UNANSWERED_KEY_MEMORY_S:
            return None  # (not asked again at every request while RunAPI is out of reach)
        asking = self._key_asks.get(digest)
        if asking is None:
            tried = self._try_key_from(address)
            used = used_lately(self._keys_asked, address or "?", 1)
            asking = asyncio.ensure_future(self._ask_about_key(api_key, digest, used))
            asking.add_done_callback(
                lambda done: self._settle_key_try(
                    address,
                    tried,
                    refused=not done.cancelled()
                    and done.exception() is None
                    and done.result() is False,
                )
            )
            self._key_asks[digest] = asking
            asking.add_done_callback(lambda _: self._key_asks.pop(digest, None))
        return await asyncio.shield(asking)

    async def _ask_about_key(self, api_key: Secret, digest: str, used: int) -> bool | None:
        try:
            async with contextlib.AsyncExitStack() as place:
                try:
                    async with asyncio.timeout(KEY_ASK_WAIT_S):
                        await place.enter_async_context(self._key_places.place(used))
                except TimeoutError:
                    raise LimitError(KEYS_BUSY) from None
                await self._clients.check(api_key)
        except AuthenticationError:
            return False
        except RunAPIError:
            self._key_unanswered.pop(digest, None)
            self._key_unanswered[digest] = time.monotonic()
            while len(self._key_unanswered) > 10_000:
                self._key_unanswered.popitem(last=False)
            return None
        self._key_unanswered.pop(digest, None)
        self._note_accepted(digest)
        return True

    def _note_accepted(self, digest: str) -> None:
        self._key_accepted.pop(digest, None)
        self._key_accepted[digest] = time.monotonic()
        while len(self._key_accepted) > 10_000:
            self._key_accepted.popitem(last=False)

    def _accepted_lately(self, digest: str) -> bool:
        """Whether RunAPI accepted the key of `digest` in the last `KEY_ACCEPTED_MEMORY_S`."""
        accepted = self._key_accepted.get(digest)
        return accepted is not None and time.monotonic() - accepted < KEY_ACCEPTED_MEMORY_S

    def _try_key_from(self, address: str | None) -> float | None:
        """Before RunAPI is asked about a key new to the studio from `address`: one of the
        address's places for refused keys (`KEYS_REFUSED_PER_ADDRESS`), taken now (`LimitError`
        when none is left). Given back (`_settle_key_try`) unless RunAPI refused the key."""
        if address is None or not self._addresses_apart:
            return None
        now = time.monotonic()
        tries = self._key_tries.pop(address, None) or collections.deque()
        self._key_tries[address] = tries  # the address asking most lately last
        while tries and now - tries[0] > KEYS_REFUSED_WINDOW_S:
            tries.popleft()
        while len(self._key_tries) > MAX_TRACKED_ADDRESSES:
            self._key_tries.popitem(last=False)
        if len(tries) >= KEYS_REFUSED_PER_ADDRESS:
            raise LimitError(KEYS_TRIED_HERE)
        tries.append(now)
        return now

    def _settle_key_try(self, address: str | None, tried: float | None, *, refused: bool) -> None:
        """The key asked about at `tried` from `address` was refused (its place stays taken for
        the window) or not (given back)."""
        if address is None or tried is None or refused:
            return
        tries = self._key_tries.get(address)
        if tries is not None:
            with contextlib.suppress(ValueError):
                tries.remove(tried)

    def _count_key_check(self, owner: str) -> None:
        now = time.monotonic()
        if len(self._key_checks) > 10_000:  # forget visitors idle for a minute
            for name, times in list(self._key_checks.items()):
                if not times or now - times[-1] > 60:
                    del self._key_checks[name]
        times = self._key_checks.setdefault(owner, collections.deque())
        while times and now - times[0] > 60:
            times.popleft()
        if len(times) >= KEY_CHECKS_PER_MINUTE:
            raise LimitError(
                f"You have checked {len(times)} keys in the last minute; wait a minute before "
                "checking another."
            )
        times.append(now)

    @property
    def in_memory(self) -> dict[str, int]:
        """Sizes of the in-memory tables (runs, uploads, watchers, visitor clients, locks)."""
        return {**self._runner.in_memory, "session_locks": len(self._locks)}

    # -- recognising the studio's own results (scripts and agents pass them back) ---------------

    async def place_edit(
        self,
        data: bytes | None = None,
        *,
        link: str | None = None,
        session_id: str | None = None,
        name: str | None = None,
        visitor: Visitor = LOCAL,
    ) -> tuple[Session, str | None]:
        """Where an edit of this image goes: the session, and the step it starts from (None for
        the session's current step).

        No image: session `session_id`, else a new session without one (the edit generates). An
        image the studio made (its bytes or a link to them, any copy) continues its own session
        from the step that made it (only the visitor's own, on a hosted studio). Any other image
        starts a new session. Raises `ImageError`, `StoreError` or `HistoryError` with one
        sentence, and then stores nothing.
        """
        await self._require_key(visitor)  # a refused key leaves nothing behind, not even this
        # An edit that would be refused stores nothing, decodes nothing, reads no session.
        self._may_edit(visitor)
        session = await self.load_session(session_id, visitor=visitor) if session_id else None
        if data is None and link is None:
            return session or await self.start_session(None, name=name, visitor=visitor), None
        if link:
            source = await self.read_link(link, visitor=visitor)
            made = await self.result_step(source.data, visitor=visitor)
        else:
            source, made = await self._take_image(data or b"", visitor, find_made=True)
        if made is not None:
            if session is not None and session.session_id != made.session_id:
                raise HistoryError(
                    f"That image was made in session {made.session_id}, not in "
                    f"{session.session_id}; leave session_id empty to continue from it."
                )
            return await self.load_session(made.session_id, visitor=visitor), made.step_id
        if session is not None:
            raise HistoryError(
                "Give either an image (to start a new session) or a session_id (to continue "
                "one), not both."
            )
        # With room for the edit's result as well: an edit refused for the share once its
        # session was made left its source behind (review 19 F3).
        then = MODEL_RESULT_BYTES + STEP_BYTES
        started = await self.start_session(
            source, name=name, link_url=link, visitor=visitor, then_bytes=then
        )
        return started, None

    async def result_step(self, data: bytes, *, visitor: Visitor = LOCAL) -> Step | None:
        """The newest edit or generation whose result is exactly these bytes (in the
        visitor's sessions; in any, for `LOCAL`).

        An image the studio made, passed back by a script or an agent (a copy of the file, a
        data: URI, a download), is recognised by its content and continues from its step.
        """
        store, owner = self._store, visitor.owner
        return await asyncio.to_thread(
            lambda: store.find_result_step(hashlib.sha256(data).hexdigest(), owner)
        )

    async def stored_image(self, path: Path, *, visitor: Visitor = LOCAL) -> bytes | None:
        """The bytes of `path` when it is a stored image that `visitor` may see, else None."""
        folder = self._store.images_dir.resolve()
        try:
            resolved = await asyncio.to_thread(path.resolve)
            if not resolved.is_relative_to(folder) or not resolved.is_file():
                return None
            if not await self.owns_image(resolved.stem, visitor=visitor):
                return None
            return await asyncio.to_thread(resolved.read_bytes)
        except OSError:
            return None

    # -- plumbing -------------------------------------------------------------------------------

    async def _add_steps(
        self,
        session_id: str,
        params: list[EditParams],
        parent_step_id: str | None,
        *,
        keep_current: bool,
        visitor: Visitor,
        region: RegionRequest | StepRegion | None = None,
    ) -> list[Step]:
        """Store one new queued step per `params`, all from the same parent (the current step,
        or `parent_step_id`). The history decides whether each edits or generates and checks
        the params for that. With `keep_current`, the parent stays current (a compare). A
        region is checked against the parent's image (when it has one yet) first."""
        mask = None
        if isinstance(region, RegionRequest) and region.mask is not None:
            from studio.regions import read_mask  # OpenCV: loaded when a region is first used

            # Refused before anything, and read as any image from outside: past the caps first
            # (decoding a mask costs what decoding an image does), then within `_decoding`.
            self._may_edit(visitor)
            unreadable = "The mask is not an image the studio can read: {}"  # (as `read_mask`)
            try:
                header = await self._look(region.mask, visitor)
            except ImageError as exc:
                raise RegionError(unreadable.format(exc)) from None
            async with self._decoding(visitor, header.width * header.height):
                if self._lookout is not None:
                    # (Decoded in a child first: one costing more than its header says is
                    # refused before this process decodes it: review 50 F5.)
                    try:
                        await self._check(region.mask, header)
                    except ImageError as exc:
                        raise RegionError(unreadable.format(exc)) from None
                mask = await asyncio.to_thread(read_mask, region.mask)
        async with self._lock(session_id):
            session = await self.load_session(session_id, visitor=visitor)
            if parent_step_id is not None:
                session = session.make_current(parent_step_id)
            step_region, mask_data = await self._step_region(session.next_parent, region, mask)
            at_parent, steps = session, []
            for each in params:
                session = at_parent.add_step(new_id(), each, self._now(), region=step_region)
                at_parent = replace(at_parent, steps=session.steps)
                steps.append(await self._paid_by(session.current, visitor))
            await self._require_result_room(visitor, session, steps)
            await self._admit(session, steps, visitor)
            if mask_data is not None and mask is not None:  # stored once the edit is admitted
                height, width = mask.shape[:2]
                await self._put_image(mask_data, "png", width, height)
            name = None
            if is_untitled(session.name):
                # A session started without a name is called after its first instruction.
                name = name_from_prompt(steps[0].params.prompt if steps[0].params else "")
            if keep_current:
                # Back at the parent, with nothing to redo: none is current until kept.
                session = replace(at_parent, redo_stack=())
            await asyncio.to_thread(self._store.add_steps, steps, session, name)
        self._runner.signals.notify(session_id)
        return steps

    async def _step_region(
        self, parent: Step, region: RegionRequest | StepRegion | None, mask: Any
    ) -> tuple[StepRegion | None, bytes | None]:
        """The region to record with a new step after `parent`: a box checked against (and
        clipped to) the parent's image, or a mask as a greyscale PNG (its bytes too, stored by
        the caller once the edit is admitted). Raises `RegionError` with one sentence. A step
        typed ahead is checked when it starts."""
        if region is None or isinstance(region, StepRegion):
            return region, None
        from studio.regions import fit_box, mask_png

        size = None if parent.result is None else (parent.result.width, parent.result.height)
        if region.box is not None:
            box = region.box if size is None else fit_box(region.box, *size)
            return StepRegion(kind="box", box=box, drawn_on=size), None
        if mask is None:
            return None, None
        data = await asyncio.to_thread(mask_png, mask)
        sha256 = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        return StepRegion(kind="mask", mask_sha256=sha256, drawn_on=size), data

    def _may_edit(self, visitor: Visitor) -> None:
        """Raise `LimitError` when an edit by `visitor` would be refused now (its caps, at the
        cheapest model's price), counting nothing; `_admit` counts it when it is made."""
        limits, owner = self._limits, visitor.owner
        if limits is not None and owner is not None:
            cents = min(PRICE_CENTS.values())
            limits.check(
                owner, 1, cents, server_key=self._payer(visitor) is None, address=visitor.address
            )

    async def _admit(
        self, session: Session, steps: list[Step], visitor: Visitor, *, chain: bool = False
    ) -> None:
        """In a hosted studio, count these steps (with `chain`, each after the one before)
        against the visitor's caps (or refuse them); what they may cost the server's key is
        written down at once (`Store.record_spend`)."""
        limits, owner = self._limits, session.owner
        if limits is None or owner is None:
            return
        cents = {s.step_id: PRICE_CENTS[s.params.model] for s in steps if s.params is not None}
        ids = [s.step_id for s in steps]
        server_key = self._payer(visitor) is None
        day = limits.admit(
            owner,
            ids,
            sum(cents.values()),
            server_key=server_key,
            address=visitor.address,
            after=steps[0].parent_id,
            chain=chain,
        )
        if server_key:
            await asyncio.to_thread(self._store.record_spend, day, owner, visitor.address, cents)

    def _launch(self, step: Step, visitor: Visitor) -> None:
        on_done = self._run_ended if self._limits else None
        self._runner.launch(step, self._payer(visitor), on_done=on_done)

    def _run_ended(self, step_id: str, end: RunEnd) -> None:
        """A hosted step's run ended: it no longer runs for its visitor, and one that failed
        with nothing charged for it (before RunAPI had a task for it, or RunAPI failed the task
        and so refunded it) no longer counts against the day's budgets (review 54 F5: a refused
        key or a RunAPI outage kept every attempt's price, and the studio stayed "used up" for
        the day once RunAPI was back). A failed step RunAPI may have charged keeps its price (a
        result that could not be read, say): the budgets protect the host."""
        if self._limits is None:
            return
        if end.step is not None and not end.step.is_finished:
            return  # left open, to be asked for again: it keeps its place (review 56 F3)
        self._limits.release(step_id)
        if end.charged:
            return
        settling = asyncio.ensure_future(self._unspend(step_id))
        self._settling.add(settling)
        settling.add_done_callback(self._settling.discard)

    async def _unspend(self, step_id: str) -> None:
        with contextlib.suppress(StoreError, OSError):
            unspent = await asyncio.to_thread(self._store.unspend, [step_id])
            if self._limits is not None:
                for day, owner, address, cents in unspent:
                    self._limits.refund(day, owner, address, cents)

    @staticmethod
    def _payer(visitor: Visitor) -> Secret | None:
        """The key that pays for `visitor`'s edits: their own, else the server's (None)."""
        return visitor.api_key

    async def _paid_by(self, step: Step, visitor: Visitor) -> Step:
        """`step` saying whose key pays for it: the server's, or which of the visitor's."""
        key = self._payer(visitor)
        if key is None:
            return replace(step, payer="host")
        return replace(step, payer="visitor", payer_key=await self._key_print(key))

    async def _key_print(self, key: Secret) -> str:
        """A digest of a visitor's key under a secret of the data directory: which key paid,
        told apart without keeping any."""
        if self._print_secret is None:
            self._print_secret = await asyncio.to_thread(self._store.secret, "payer-keys")
        return hmac.new(self._print_secret, key.reveal().encode(), hashlib.sha256).hexdigest()[:32]

    def _ledger(self, day: date) -> tuple[dict[str, int], dict[str, int], int]:
        """The day's spending of the server's key for visitors, as the store keeps it."""
        spend = self._store.spend_on(day)
        return spend.by_owner, spend.by_address, spend.total

    def _held_bytes(self, owner: str) -> int:
        """What `owner`'s sessions take of their share of the disk. Blocking: call it in a
        thread."""
        return self._held(owner)[0]

    def _held(self, owner: str) -> tuple[int, Holding]:
        """What `owner`'s sessions take of their share of the disk: the bytes of every image
        they hold (uploads, imports, results and masks), and their rows and text
        (`limits.taken_bytes`); and what they hold. One query. Blocking: call it in a thread."""
        holding = self._store.holding(owner)
        images = self._store.image_bytes(holding.images)
        return taken_bytes(images, holding.sessions, holding.steps, holding.text_bytes), holding

    async def _put_image(self, data: bytes, image_format: str, width: int, height: int) -> ImageRef:
        return await asyncio.to_thread(
            self._store.put_image, data, format=image_format, width=width, height=height
        )

    def _lock(self, session_id: str) -> asyncio.Lock:
        return _held_lock(self._locks, session_id)


def _c2pa_signer(settings: Settings) -> C2paSigner | None:
    """The host's C2PA signer, when it gave a certificate and key (`Settings.c2pa_cert`)."""
    if settings.c2pa_cert is None or settings.c2pa_key is None:
        return None
    try:
        return C2paSigner.from_files(settings.c2pa_cert, settings.c2pa_key)
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc


def server_key_for_visitors(settings: Settings) -> bool:
    """Whether the server's key (if any) pays for a visitor's edits: always on a studio of
    one's own; on a hosted one only within a budget of the day (`LimitSettings`)."""
    return not settings.hosted or _limit_settings(settings).server_key_for_visitors


def _limit_settings(settings: Settings) -> LimitSettings:
    return LimitSettings(
        visitor_budget_cents=settings.visitor_budget_cents,
        total_budget_cents=settings.total_budget_cents,
        max_running=settings.visitor_max_running,
        per_minute=settings.visitor_edits_per_minute,
        upload_bytes=settings.visitor_upload_bytes,
        address_budget_cents=settings.address_budget_cents,
        address_upload_bytes=settings.address_upload_bytes,
        simulated=settings.simulator,
    )


def _stored_size(store: Store, refs: set[ImageRef]) -> int:
    """The bytes the store holds for `refs` (what an export of them writes, about)."""
    total = 0
    for ref in refs:
        with contextlib.suppress(OSError):
            total += store.path_of(ref).stat().st_size
    return total


def _check_described(image_format: str, width: int, height: int, ref: ImageRef) -> None:
    if (image_format, width, height) != (ref.format, ref.width, ref.height):
        raise BundleError("An image in the export is not the image its step describes.")


def _write_file(
    target: Path,
    session: Session,
    read_image: Callable[[str], bytes],
    step_ids: list[str] | None,
) -> int:
    """`stream_bundle` into the new file `target` (removed again if it fails); its size."""
    try:
        with target.open("xb") as out:
            stream_bundle(out, session, read_image, step_ids=step_ids)
            return out.tell()
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _keeps_rest(step: Step) -> bool:
    """Whether `step` is kept to a region (drawn, or found: *Keep the rest*)."""
    return step.region is not None or (step.params is not None and step.params.keep_rest)


def _result_bytes(step: Step, session: Session) -> int:
    """What `step`'s results may take on disk, counted before it runs: the model's image (about
    a megapixel: a PNG of at most `MODEL_RESULT_BYTES`), and for a step kept to a region the
    blend at its source's full size as well (`BLEND_BYTES_PER_PIXEL`: a PNG of a noisy photo
    takes about that). The source is the nearest image up the step's branch (a step typed
    ahead has none yet: its parent's will be the same size, as a blend keeps the size)."""
    expected = MODEL_RESULT_BYTES + STEP_BYTES
    if not _keeps_rest(step):
        return expected
    at: Step | None = step
    while at is not None and at.result is None:
        at = session.steps.get(at.parent_id) if at.parent_id else None
    if at is not None and at.result is not None:
        expected += at.result.width * at.result.height * BLEND_BYTES_PER_PIXEL
    return expected


def _held_lock(locks: weakref.WeakValueDictionary[str, asyncio.Lock], key: str) -> asyncio.Lock:
    """The lock for `key` while someone holds it (a fresh one when nobody does)."""
    lock = locks.get(key)
    if lock is None:
        lock = asyncio.Lock()
        locks[key] = lock
    return lock


__all__ = [
    "MAX_BUNDLE_BYTES",
    "UNFINISHED_STATES",
    "USER_ERRORS",
    "AuthenticationError",
    "Engine",
    "ImageError",
    "LimitError",
    "NoSuchSession",
    "OwnKeyNeeded",
    "Phase",
    "RunAPIError",
    "SessionSummary",
    "StepUpdate",
    "StoreError",
    "server_key_for_visitors",
]
