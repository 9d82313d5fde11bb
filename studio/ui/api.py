"""The studio's deliberate endpoints for scripts and agents: stable `api_name`s, documented args.

Each is a public Gradio endpoint on hidden components, so `gradio_client` and the MCP server list
it; the page's own events stay undocumented plumbing. The docstrings become the MCP tool
descriptions (each argument's description is its one line under `Args:`), so they are written
for an agent reading them.

What an agent gets back is the result image (MCP image content) and one JSON text: the step
summary of `studio.summary`, whose `image_url` is the studio's own address for the image. Images
come in as text that we check ourselves (Gradio's file inputs refuse loopback and local paths):
an http(s) URL, a data: URI, or, when the studio is not hosted, a local path or file:// URL. An
image the studio made, passed back in any of these forms, continues its own session from the
step that made it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import json
import mimetypes
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import unquote
from urllib.request import url2pathname

import gradio as gr
from gradio.data_classes import ImageData

from studio.config import Settings
from studio.history import RUNNING_PHASES, HistoryError, ImageRef, Step, StepState, made_name
from studio.params import (
    ASPECT_RATIOS,
    MATCH_SOURCE,
    MODELS,
    EditParams,
    RegionRequest,
    parse_box,
    parse_params,
    split_url,
)
from studio.summary import listed_session, session_summary, step_summary, tree_step_summary
from studio.ui import mcp_answers
from studio.ui.bridge import Bridge, Engine, Visitor
from studio.ui.export import export_address, export_file
from studio.ui.guard import IMAGE_ROUTE, image_sha
from studio.ui.tabs import takes_large
from studio.ui.turns import turn_of
from studio.ui.visitor import REFUSED, Refusal, current, guarded, public_origin

# Edits hold their slot for the whole task (in a queue of their own, "api-edit", without a
# limit); the global cap is launch(max_threads=...).
EDITS_QUEUE = "api-edit"
# Where Gradio serves files from; a URL of this studio carries the file's path after it.
FILE_ROUTE = "/gradio_api/file="
DEFAULT_LIST_LIMIT = 20
# An API edit reports phases, not elapsed time: its watch wakes at each change (and this rarely).
QUIET_TICK_S = 60.0

REFUSE_LOCAL = (
    "This studio is hosted, so it cannot read local files; pass the image as an http(s) URL "
    "or a data: URI."
)
REFUSE_FORM = "The image must be an http(s) URL, a data: URI or an absolute file path."


@dataclass(frozen=True, slots=True)
class Place:
    """Where an edit goes: a session, and the step it starts from (None: the current one)."""

    session_id: str
    parent_step_id: str | None = None


class Endpoints:
    """The public endpoints: each public coroutine method is one, under its own name.

    Each runs through `ui.visitor.guarded`, which names its caller from the request: on a hosted
    studio, an API or MCP caller sends its RunAPI key in an X-RunAPI-Key header and touches only
    the sessions it made with that key. Refused input of any kind (ours, the engine's) becomes
    one `gr.Error` sentence (`refused`); nothing else changes.
    """

    def __init__(self, bridge: Bridge, exports: Path, settings: Settings) -> None:
        self.bridge = bridge
        self.exports = exports
        self.settings = settings

    @property
    def hosted(self) -> bool:
        return self.settings.hosted

    @property
    def who(self) -> Visitor:
        """The caller of the endpoint being run (settled by `guarded`)."""
        return current()

    @property
    def _address_for_turns(self) -> str | None:
        """The caller's network address, where it tells callers apart (`ui.turns`)."""
        return self.who.address if self.settings.addresses_apart else None

    def unnamed(self, refusal: Refusal) -> NoReturn:
        raise gr.Error(str(refusal), print_exception=False)

    async def refused(self, _args: tuple[object, ...], exc: Exception) -> NoReturn:
        raise gr.Error(str(exc), print_exception=False) from None

    # -- the endpoints ---------------------------------------------------------------------------

    @guarded
    async def edit_image(
        self,
        image: str,
        instruction: str,
        model: str,
        aspect_ratio: str,
        session_id: str,
        mask: str,
        box: str,
        keep_rest: bool,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio's documented form
    ) -> tuple[str | None, str]:
        """Edit an image with FLUX.1 Kontext through RunAPI, or generate one when no image is given.

        The result is kept in the user's Kontext Studio as a new step they can open, branch and export in the browser. To chain edits, pass the returned image_url back as image (it continues from that step), or call continue_session with the session_id.

        Args:
            image: The image to edit: an http(s) URL, a data: URI, a local absolute path or file:// URL (when the studio is not hosted), or an image_url this studio returned; empty to generate.
            instruction: What to change and what to keep, in plain English, e.g. 'Change the sign to read "BAKERY", keep everything else'.
            model: "pro" (5 cents an image) or "max" (10 cents, more faithful on hard edits).
            aspect_ratio: "match" keeps the source's shape (1:1 when generating), or one of 21:9, 16:9, 4:3, 1:1, 3:4, 9:16.
            session_id: Continue this session from its current step instead of giving an image; empty for a new session.
            mask: Optional: change only where this image (in any form image takes; scaled to the source) is white or opaque, keep the rest exactly, at the source's full size; empty for none.
            box: Optional: change only inside this box, "x,y,w,h" in the source's pixels, and keep the rest exactly; empty for none.
            keep_rest: Keep every pixel the edit did not change, at the source's full size (with no mask or box, the studio finds what changed).

        Returns:
            The result image and a JSON step summary: session_id, step_id, state, model, aspect_ratio, prompt, task_id, seconds, cost_cents, error, image_url, region ("mask", "box", "auto" or null) and raw_image_url (the model's own output when the result is kept to a region).
        """
        return await self._edit(
            image,
            instruction,
            model,
            aspect_ratio,
            session_id,
            (mask, box, keep_rest),
            request,
            progress,
        )

    @guarded
    async def continue_session(
        self,
        session_id: str,
        instruction: str,
        model: str,
        aspect_ratio: str,
        mask: str,
        box: str,
        keep_rest: bool,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio's documented form
    ) -> tuple[str | None, str]:
        """Apply one more edit to a Kontext Studio session, starting from its current step.

        Args:
            session_id: The session to continue (from edit_image, list_sessions or show_session).
            instruction: What to change next and what to keep, in plain English.
            model: "pro" (5 cents an image) or "max" (10 cents, more faithful on hard edits).
            aspect_ratio: "match" keeps the current image's shape, or one of 21:9, 16:9, 4:3, 1:1, 3:4, 9:16.
            mask: Optional: change only where this image (in any form edit_image takes; scaled to the current image) is white or opaque, keep the rest exactly; empty for none.
            box: Optional: change only inside this box, "x,y,w,h" in the current image's pixels, and keep the rest exactly; empty for none.
            keep_rest: Keep every pixel the edit did not change, at the image's full size (with no mask or box, the studio finds what changed).

        Returns:
            The result image and a JSON step summary: session_id, step_id, state, model, aspect_ratio, prompt, task_id, seconds, cost_cents, error, image_url, region and raw_image_url.
        """
        if not (session_id or "").strip():
            raise Refusal("Give the session_id of the session to continue.")
        return await self._edit(
            "",
            instruction,
            model,
            aspect_ratio,
            session_id,
            (mask, box, keep_rest),
            request,
            progress,
        )

    @guarded
    async def compare_models(
        self,
        image: str,
        instruction: str,
        aspect_ratio: str,
        session_id: str,
        mask: str,
        box: str,
        keep_rest: bool,
        request: gr.Request,
    ) -> tuple[str | None, str | None, str]:
        """Run one instruction on FLUX.1 Kontext pro and max at once, to compare them (15 cents in all).

        Both results are kept as sibling steps; neither becomes current until keep_result is called with the chosen step_id.

        Args:
            image: The image to edit, in any form edit_image takes; empty with session_id to start from that session's current step.
            instruction: What to change and what to keep, in plain English.
            aspect_ratio: "match" keeps the source's shape, or one of 21:9, 16:9, 4:3, 1:1, 3:4, 9:16.
            session_id: Compare from this session's current step instead of giving an image; empty for a new session.
            mask: Optional: both change only where this image (in any form image takes) is white or opaque, and keep the rest exactly; empty for none.
            box: Optional: both change only inside this box, "x,y,w,h" in the source's pixels; empty for none.
            keep_rest: Keep every pixel the edits did not change, at the source's full size.

        Returns:
            The pro image, the max image, and JSON with the step summary of each under "pro" and "max".
        """
        params = _params(instruction, "pro", aspect_ratio, keep_rest)
        region = await self._region(mask, box)
        where = await self._place(image, session_id, instruction)
        async with self._made_for(where, session_id):
            pair = await self.bridge.call(
                Engine.compare,
                where.session_id,
                params,
                parent_step_id=where.parent_step_id,
                region=region,
                visitor=self.who,
            )
        pro, max_ = await asyncio.gather(*(self._final(s) for s in pair))
        both = {"pro": self._summary(pro, request), "max": self._summary(max_, request)}
        pro_at, max_at = self._address(pro.result, request), self._address(max_.result, request)
        return pro_at, max_at, _json(both)

    @guarded
    async def keep_result(self, session_id: str, step_id: str, request: gr.Request) -> str:
        """Make a compared result the current step of its session, so the next edit continues from it.

        Args:
            session_id: The session of the comparison.
            step_id: The step_id of the result to keep (from compare_models).

        Returns:
            The kept step's JSON step summary.
        """
        # A turn as every read of a whole session takes: a few cookies keeping a step of a
        # 1,000-step session again and again made others' pages 1.2-2.5 s (review 29 F1).
        async with turn_of(self.who.owner, self._address_for_turns):  # (`ui.turns`)
            session = await self.bridge.call(Engine.keep, session_id, step_id, visitor=self.who)
        return _json(self._summary(session.current, request))

    @guarded
    async def export_session(self, session_id: str, request: gr.Request) -> str:
        """Export a Kontext Studio session as a ZIP file: every image and a readable session.json.

        Args:
            session_id: The session to export.

        Returns:
            The ZIP file's address (a link for whoever holds it, for 15 minutes).
        """
        name = f"session-{session_id[:8]}"
        path = await export_file(self.bridge, self.exports, session_id, name, self.who)
        # At the studio's own address (`ui.guard.EXPORT_ROUTE`): no path of the server in the
        # answer (review 30 F2: it named the temporary directory's).
        origin = _origin(request, behind_proxy=self.settings.proxy_hops > 0)
        return origin + export_address(self.settings.root_path, path)

    @guarded
    async def list_sessions(self, limit: int) -> str:
        """List the sessions in the user's Kontext Studio, most recently changed first (read-only).

        Args:
            limit: How many sessions to list at most (default 20).

        Returns:
            JSON with "sessions": each with session_id, name, created_at, updated_at, step_count and cost_cents.
        """
        async with turn_of(self.who.owner, self._address_for_turns):  # (`ui.turns`)
            summaries = await self.bridge.call(Engine.list_sessions, visitor=self.who)
        count = max(1, int(limit or DEFAULT_LIST_LIMIT))
        return _json({"sessions": [listed_session(s) for s in summaries[:count]]})

    @guarded
    async def show_session(self, session_id: str, request: gr.Request) -> str:
        """Show one Kontext Studio session: every step, its tree and the current step (read-only).

        Args:
            session_id: The session to show (from list_sessions or edit_image).

        Returns:
            JSON with session_id, name, current_step_id, cost_cents and "steps": each a step summary with parent_id, kind and current.
        """
        session_id = (session_id or "").strip()
        async with turn_of(self.who.owner, self._address_for_turns):  # (`ui.turns`)
            session = await self.bridge.call(Engine.load_session, session_id, visitor=self.who)
            steps = [
                tree_step_summary(
                    step,
                    session,
                    image_url=self._address(step.result, request),
                    raw_image_url=self._address(step.raw_result, request),
                )
                for step in session.steps.values()
            ]
            return _json(session_summary(session, steps))

    # -- registering -----------------------------------------------------------------------------

    def register(self) -> gr.Column:
        """Add the endpoints to the Blocks being built, on hidden components: one set per
        endpoint, so each tool's schema says exactly which of its arguments are required (an
        input without a value is required) and what the defaults are. Returns the hidden column
        that holds them."""
        mcp_answers.install()
        with gr.Column(visible=False) as hidden:
            trigger = gr.Button()
            result = _addressed_image("result")
            max_result = _addressed_image("max result")
            step_json = gr.Textbox(label="summary")
            trigger.click(
                self.edit_image,
                [
                    _image_in(),
                    _text("instruction"),
                    _model(),
                    _ratio(),
                    _text("session_id", ""),
                    *_region_in(),
                ],
                [result, step_json],
                api_name="edit_image",
                concurrency_limit=None,
                concurrency_id=EDITS_QUEUE,
            )
            trigger.click(
                self.continue_session,
                [_text("session_id"), _text("instruction"), _model(), _ratio(), *_region_in()],
                [result, step_json],
                api_name="continue_session",
                concurrency_limit=None,
                concurrency_id=EDITS_QUEUE,
            )
            trigger.click(
                self.compare_models,
                [
                    _image_in(),
                    _text("instruction"),
                    _ratio(),
                    _text("session_id", ""),
                    *_region_in(),
                ],
                [result, max_result, step_json],
                api_name="compare_models",
                concurrency_limit=None,
                concurrency_id=EDITS_QUEUE,
            )
            trigger.click(
                self.keep_result,
                [_text("session_id"), _text("step_id")],
                [step_json],
                api_name="keep_result",
                concurrency_limit=None,
            )
            trigger.click(
                self.export_session,
                [_text("session_id")],
                [_addressed_file("export")],
                api_name="export_session",
                # The engine bounds the exports written at once and gives each place fairly
                # (`Engine._export_turn`); a FIFO of Gradio's before it made a visitor wait
                # behind every other's (review 17, F1).
                concurrency_limit=None,
            )
            limit = gr.Number(DEFAULT_LIST_LIMIT, precision=0, minimum=1, label="limit")
            trigger.click(
                self.list_sessions,
                [limit],
                [step_json],
                api_name="list_sessions",
                concurrency_limit=None,
            )
            trigger.click(
                self.show_session,
                [_text("session_id")],
                [step_json],
                api_name="show_session",
                concurrency_limit=None,
            )
        # Each one hidden too: the page loads and mounts the children of a hidden column, but
        # never a hidden component (page load, README Numbers).
        column: gr.Column = hidden
        blocks = list(hidden.children)
        while blocks:
            block = blocks.pop()
            block.visible = False
            blocks.extend(getattr(block, "children", []))
        return column

    # -- what the endpoints share ----------------------------------------------------------------

    async def _edit(
        self,
        image: str,
        instruction: str,
        model: str,
        aspect_ratio: str,
        session_id: str,
        region_in: tuple[str, str, bool],
        request: gr.Request,
        progress: gr.Progress,
    ) -> tuple[str | None, str]:
        """One edit (or generation), followed to its end: the image and its JSON summary."""
        mask, box, keep_rest = region_in
        params = _params(instruction, model, aspect_ratio, keep_rest)
        region = await self._region(mask, box)
        where = await self._place(image, session_id, instruction)
        async with self._made_for(where, session_id):
            step = await self.bridge.call(
                Engine.submit_edit,
                where.session_id,
                params,
                parent_step_id=where.parent_step_id,
                region=region,
                visitor=self.who,
            )
        step = await self._follow(step, progress)
        if not step.is_finished:
            raise Refusal(_still_open(step))
        if step.state is not StepState.COMPLETED:
            raise Refusal(_failed(step))
        return self._address(step.result, request), _json(self._summary(step, request))

    @contextlib.asynccontextmanager
    async def _made_for(self, where: Place, session_id: str) -> AsyncIterator[None]:
        """An edit's start: when it is refused (running cap, budget, disk) and the session was
        made for it (no `session_id` given), the session goes too: a refusal creates nothing
        (six edits sent at once left four empty sessions: review 12 F1)."""
        try:
            yield
        except REFUSED:
            if not (session_id or "").strip():
                with contextlib.suppress(*REFUSED):
                    await self.bridge.call(
                        Engine.delete_session, where.session_id, visitor=self.who
                    )
            raise

    async def _place(self, image: str, session_id: str, instruction: str) -> Place:
        """Check the image and the session first, then start or continue a session."""
        image, session_id = (image or "").strip(), (session_id or "").strip()
        data, link = await self._read_image(image) if image else (None, None)
        name = made_name(instruction) or "From the API"
        session, parent_step_id = await self.bridge.call(
            Engine.place_edit,
            data,
            link=link,
            session_id=session_id or None,
            name=name,
            visitor=self.who,
        )
        return Place(session.session_id, parent_step_id)

    async def _read_image(self, image: str) -> tuple[bytes | None, str | None]:
        """The bytes of `image`, or the http(s) link the engine is to fetch it from; nothing
        is read when the edit would be refused (a budget used up, a cap reached)."""
        await self.bridge.call(Engine.may_edit, visitor=self.who)
        if image.startswith("data:"):
            return _data_uri(image), None
        scheme = split_url(image).scheme.lower()
        if scheme in ("http", "https"):
            if (stored := await self._own_image(image)) is not None:
                return stored, None
            return None, image
        if len(scheme) > 1 and scheme != "file":  # "c:" is a Windows drive, not a scheme
            raise Refusal(REFUSE_FORM)
        if self.hosted:
            raise Refusal(REFUSE_LOCAL)
        path = url2pathname(unquote(split_url(image).path)) if scheme == "file" else image
        return await asyncio.to_thread(_read_file, path, self.settings.max_upload_bytes), None

    async def _own_image(self, url: str) -> bytes | None:
        """A stored image named by one of this studio's own URLs (its image address, or a
        Gradio file URL of a stored file), read without a download."""
        path = unquote(split_url(url).path)
        _, _, name = path.rpartition(IMAGE_ROUTE)
        if name and (sha := image_sha(name)) is not None:
            stored = await self.bridge.call(Engine.owned_image_path, sha, visitor=self.who)
            return None if stored is None else await asyncio.to_thread(stored.read_bytes)
        _, _, tail = path.partition(FILE_ROUTE)
        if not tail:
            return None
        return await self.bridge.call(Engine.stored_image, Path(tail), visitor=self.who)

    async def _follow(self, step: Step, progress: gr.Progress) -> Step:
        """Report each new phase of a running step (pushed by the engine); its final record."""
        waiter = asyncio.ensure_future(self._final(step))
        shown: str | None = None
        # Phases only: no half-second ticks (under 100 edits at once, a thousand wake-ups of
        # both loops for nothing).
        async for running in self.bridge.watch(step.session_id, self.who, tick_s=QUIET_TICK_S):
            update = running.get(step.step_id)
            if update is None or waiter.done():
                break
            if update.phase in RUNNING_PHASES and update.phase != shown:
                shown = update.phase
                done = RUNNING_PHASES.index(update.phase) + 1
                progress((done, len(RUNNING_PHASES)), desc=shown)
        return await waiter

    async def _final(self, step: Step) -> Step:
        try:
            return await self.bridge.call(Engine.wait, step.step_id)
        except HistoryError:  # it ended before we asked: the history has its record
            session = await self.bridge.call(Engine.load_session, step.session_id, visitor=self.who)
            return session.steps[step.step_id]

    async def _region(self, mask: str, box: str) -> RegionRequest | None:
        """A mask (an image in any form `image` takes) or a box ("x,y,w,h"), checked for form
        here and against the source by the engine, before anything is paid."""
        mask, box = (mask or "").strip(), (box or "").strip()
        if mask and box:
            raise Refusal("Give a mask or a box, not both.")
        if box:
            return RegionRequest(box=parse_box(box))
        if not mask:
            return None
        data, link = await self._read_image(mask)
        if data is None and link is not None:
            data = await self.bridge.call(Engine.read_mask_link, link, visitor=self.who)
        return RegionRequest(mask=data)

    def _address(self, image: ImageRef | None, request: gr.Request | None) -> str | None:
        """The studio's own address for an image: no path of the server in it, and served only
        to this caller (ui.guard), who sends the same X-RunAPI-Key (or cookie) for it."""
        if image is None:
            return None
        root = self.settings.root_path.rstrip("/")
        origin = _origin(request, behind_proxy=self.settings.proxy_hops > 0)
        address = f"{origin}{root}{IMAGE_ROUTE}{image.sha256}.{image.format}"
        _ISSUED[address] = (image.sha256, image.format)
        _ISSUED.move_to_end(address)
        while len(_ISSUED) > ISSUED_KEPT:
            _ISSUED.popitem(last=False)
        return address

    def _summary(self, step: Step, request: gr.Request | None) -> dict[str, object]:
        return step_summary(
            step,
            image_url=self._address(step.result, request),
            raw_image_url=self._address(step.raw_result, request),
        )


def _addressed_image(label: str) -> gr.Image:
    """An image answer at the studio's own address (`Endpoints._address`), so no answer names
    a path of the server (Gradio's own answers give the stored file's path, and its URL holds it
    too). gradio_client fetches it through Gradio's file route (`/gradio_api/file=<address>`),
    which the guard answers from the store, for the image's owner only (`guard.address_name`);
    MCP sends the stored bytes (`mcp_answers`). (Set on the instance: a `gr.Image`
    subclass makes Gradio write a .pyi file beside our module.)"""
    image = gr.Image(type="filepath", format="png", label=label)
    image.postprocess = _at_address  # type: ignore[method-assign,assignment]
    return image


def _addressed_file(label: str) -> gr.File:
    """A file answer at the studio's own address, as `_addressed_image`'s."""
    file = gr.File(label=label)
    file.postprocess = _at_address  # type: ignore[method-assign,assignment]
    return file


def _at_address(value: str | None) -> ImageData | None:
    if value is None:
        return None
    name = value.rsplit("/", 1)[-1]
    # A URL in `url` is taken as it is (gradio.processing_utils.move_files_to_cache): nothing
    # is fetched, copied or looked up on disk.
    return ImageData(path=value, url=value, orig_name=name, mime_type=mimetypes.guess_type(name)[0])


def register(bridge: Bridge, exports: Path, settings: Settings, demo: gr.Blocks) -> Endpoints:
    """Add the public endpoints to `demo`, the Blocks being built."""
    endpoints = Endpoints(bridge, exports, settings)
    setattr(demo, mcp_answers.STORED_FILE_ATTR, functools.partial(_stored_answer, bridge))
    _off_the_page(demo, endpoints.register())
    return endpoints


def _off_the_page(demo: gr.Blocks, hidden: gr.Column) -> None:
    """Leave the endpoints' hidden column, its components and its events out of the page.

    The page builds a node for every block of the layout, twice, and for every component and
    event its config lists (README Numbers, page), and never shows or fires these. They stay in
    the whole config, with their endpoints: the API's clients (`/config`, `/gradio_api/info`,
    gradio_client, MCP) read that; the page is sent its own part (`config["page"]`, which
    Gradio's page route copies). Each is marked hidden (the forms Gradio adds around them at
    launch too), as the page waits for every component not hidden to appear.
    """
    made = demo.get_config_file

    def without_hidden() -> Any:
        config: dict[str, Any] = dict(made())
        left_out: set[int] = set()
        for layout in [config["layout"], *(p["layout"] for p in config.get("page", {}).values())]:
            kept: list[dict[str, Any]] = []
            for child in layout.get("children", []):
                if child["id"] == hidden._id:
                    left_out.update(_ids(child))
                else:
                    kept.append(child)
            layout["children"] = kept
        for component in config["components"]:
            if component["id"] in left_out:
                component["props"]["visible"] = False
        fired_off_page = {
            d["id"] for d in config["dependencies"] if any(t[0] in left_out for t in d["targets"])
        }
        for page in config.get("page", {}).values():
            page["components"] = [c for c in page["components"] if c not in left_out]
            page["dependencies"] = [d for d in page["dependencies"] if d not in fired_off_page]
        return config

    demo.get_config_file = without_hidden  # type: ignore[method-assign]


def _ids(layout: dict[str, Any]) -> set[int]:
    """The ids of a layout node and all its descendants."""
    found = {int(layout["id"])}
    for child in layout.get("children", []):
        found |= _ids(child)
    return found


# The image addresses answers were given lately, each with the image it was made for: what an
# MCP answer sends is the image the address was made for, never one re-read from the address's
# text (a crafted Host once made it name another visitor's image: review 11 F1).
ISSUED_KEPT = 4096
_ISSUED: OrderedDict[str, tuple[str, str]] = OrderedDict()


def _stored_answer(bridge: Bridge, url: str) -> Path | None:
    """The stored file of the image an answer's address was made for (for MCP:
    `mcp_answers`); None for an address the studio did not make lately."""
    issued = _ISSUED.get(url)
    return None if issued is None else bridge.stored_file(*issued)


def _text(label: str, value: str | None = None) -> gr.Textbox:
    return gr.Textbox(value, label=label)


def _image_in() -> gr.Textbox:
    # (A data: URI may be sent in it: `ui.tabs` takes a large body for it.)
    return takes_large(gr.Textbox("", label="image"))


def _region_in() -> tuple[gr.Textbox, gr.Textbox, gr.Checkbox]:
    """The optional mask (a data: URI may be sent in it), box and keep_rest of an edit
    (defaults: none, none, off)."""
    mask = takes_large(_text("mask", ""))
    return mask, _text("box", ""), gr.Checkbox(False, label="keep_rest")


def _model() -> gr.Radio:
    return gr.Radio(list(MODELS), value="pro", label="model")


def _ratio() -> gr.Dropdown:
    return gr.Dropdown([MATCH_SOURCE, *ASPECT_RATIOS], value=MATCH_SOURCE, label="aspect_ratio")


def _params(instruction: str, model: str, aspect_ratio: str, keep_rest: bool = False) -> EditParams:
    """The edit asked for, checked before anything is stored (nothing changes when refused)."""
    return parse_params(
        instruction, model=model, aspect_ratio=aspect_ratio, keep_rest=bool(keep_rest)
    )


def _failed(step: Step) -> str:
    reason = (step.error or "no reason given").rstrip(".")
    return (
        f"The edit failed: {reason} (step {step.step_id} in session {step.session_id}); "
        "change the instruction and try again."
    )


def _still_open(step: Step) -> str:
    """What an edit not finished when its wait ended says: it is not failed, and sending it
    again would be a second, paid edit (review 56 F2: "failed … try again")."""
    reason = (step.error or "RunAPI has not finished it yet").rstrip(".")
    return (
        f"The edit is not finished yet: {reason}. Do not send it again (that would be a second, "
        f"paid edit): look at step {step.step_id} later with show_session "
        f"(session {step.session_id})."
    )


def _data_uri(uri: str) -> bytes:
    header, comma, payload = uri.partition(",")
    if not comma or not header.endswith(";base64"):
        message = "The data: URI must be base64-encoded, as in data:image/png;base64,iVBOR..."
        raise Refusal(message)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise Refusal("The data: URI is not valid base64.") from None


def _read_file(name: str, max_bytes: int) -> bytes:
    """A local file's bytes, or one sentence saying why not. Blocking: run it in a thread."""
    path = Path(name).expanduser()
    if not path.is_absolute():
        raise Refusal(REFUSE_FORM)
    try:
        if path.is_dir():
            raise Refusal(f"{path} is a folder, not an image file.")
        if path.stat().st_size > max_bytes:
            raise Refusal(f"The file {path} is larger than {max_bytes // 2**20} MB.")
        return path.read_bytes()
    except FileNotFoundError:
        raise Refusal(f"The file {path} does not exist.") from None
    except OSError as error:
        message = f"The file {path} cannot be read ({error.strerror})."
        raise Refusal(message) from None


def _origin(request: gr.Request | None, *, behind_proxy: bool) -> str:
    """The address the caller reached the studio at (`ui.visitor.public_origin`)."""
    headers = {k.lower(): v for k, v in dict(request.headers).items()} if request else {}
    return public_origin(headers, behind_proxy=behind_proxy)


def _json(document: Mapping[str, object]) -> str:
    return json.dumps(document, ensure_ascii=False)


__all__ = ["Endpoints", "register"]
