"""`create_app(bridge, settings)`: the studio's Blocks, laid out by `layout`, wired by `events` to
the `handlers`, which reach the engine through the `bridge` alone."""

from __future__ import annotations

import copy
import functools
import secrets
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.block_function import BlockFunction
from starlette.requests import Request

from studio.config import Settings
from studio.ui import api, files, layout, lean, predraw, present, tabstate, tree
from studio.ui.bridge import Bridge, server_key_for_visitors
from studio.ui.events import wire
from studio.ui.files import make_exports_folder
from studio.ui.handlers import Handlers, PageContext
from studio.ui.key import KeyHandlers
from studio.ui.visitor import visitor_in

EXAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
# (how often, how old) in seconds: check hourly, remove cached files older than a day.
CACHE_PRUNE_S = (3600, 86400)


def assets_dir() -> Path:
    """`assets/` beside the package in a checkout, or inside it when installed as a wheel."""
    for candidate in (Path(__file__).parents[2] / "assets", Path(__file__).parents[1] / "_assets"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the studio's assets folder is missing from this installation")


def example_images(assets: Path) -> list[Path]:
    return sorted(
        p
        for p in assets.iterdir()
        if p.suffix.lower() in EXAMPLE_SUFFIXES and not p.name.startswith("step-")
    )


def browser_secret(home: Path) -> str:
    """A per-installation secret for `gr.BrowserState`, kept so reloads survive restarts.

    Gradio sends it to every browser, so it only obfuscates; the state holds nothing but a
    session id (gradio-notes §2).
    """
    path = home / "browser-secret"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    home.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(24)
    path.write_text(value, encoding="utf-8")
    return value


def create_app(bridge: Bridge, settings: Settings) -> gr.Blocks:
    """Build the studio page on an engine reached through `bridge`."""
    assets = assets_dir()
    examples = example_images(assets)
    ctx = PageContext(
        assets=assets,
        examples=examples,
        # Exports are served at the studio's own address (`ui.guard.EXPORT_ROUTE`), never by
        # Gradio's file route (review 57 L2: that named the server's temporary directory).
        exports=make_exports_folder(),
        simulator=settings.simulator,
        # (A hosted studio gives its key to visitors only within a budget of the day; without
        # one, each visitor brings theirs.)
        server_key=settings.api_key is not None
        and not settings.simulator
        and server_key_for_visitors(settings),
        hosted=settings.hosted,
        addresses_apart=settings.addresses_apart,
        root_path=settings.root_path or "",
    )
    # A deleted session's exports and fitted copies go with it, not 15 minutes later.
    bridge.when_deleted(functools.partial(files.discard_session_files, ctx.exports))
    banner = present.banner(
        simulator=ctx.simulator, server_key=ctx.server_key, user_key=False, hosted=ctx.hosted
    )
    lean.install()  # a session's page config is built when read, not for every API call
    tabstate.install()  # a tab's record only for a visitor, and a bounded number of them
    files.install()  # each upload in a folder of its own
    # Served where they are, never copied into Gradio's cache: the store's images and thumbnails,
    # the examples, the compare slider's fitted copies and named downloads (each kept once;
    # gradio-notes §5). Not the exports themselves: they have the studio's own address.
    gr.set_static_paths([*bridge.served_folders(), assets, *files.served_in_place(ctx.exports)])
    # Gradio's cache (uploads, served copies) grows forever unless pruned (gradio-notes §5);
    # everything a user made lives in the store, so a day-old copy there can go.
    demo = gr.Blocks(title="Kontext Studio", analytics_enabled=False, delete_cache=CACHE_PRUNE_S)
    with demo:
        components = layout.render(
            examples=examples, browser_secret=browser_secret(settings.home), banner=banner
        )
        keys = KeyHandlers(
            components,
            bridge,
            simulator=ctx.simulator,
            server_key=ctx.server_key,
            hosted=ctx.hosted,
            tab_keys=ctx.tab_keys,
        )
        handlers = Handlers(components, bridge, ctx)
        load = wire(components, handlers, keys, demo)
        api.register(bridge, ctx.exports, settings, demo)
    predraw.prepare(demo, _page_drawer(demo, handlers, load, hosted=ctx.hosted))
    return demo


def _page_drawer(
    demo: gr.Blocks, handlers: Handlers, load: BlockFunction, *, hosted: bool
) -> predraw.Draw:
    """What a page request carries drawn (`ui.predraw`): the load event's answer for the
    request's visitor as a tab with nothing in its storage sends it, less the tab's states,
    the key's parts and the balance (those come with the load event itself); less the options
    row (its props are applied by its own script as they change); and less the canvas's
    Gradio buttons and its *before* picture, which the load event shows a moment later: drawn
    at once, their modules were loaded before the page script ran, and the instruction bar was
    enabled 0.1-0.2 s later than before (one run: 0.94 s against 0.79 s)."""
    c = handlers.c
    shown = (c.header, c.source, c.empty, c.result, c.tools, c.status)
    more = (c.history, c.notice, c.history_tools, c.candidates)
    drawable = {block._id for block in (*shown, *more)}
    # The load event with only those outputs: Gradio builds a component anew for each output
    # it postprocesses, even one left as it is, and the page's first answer waited for the
    # load's forty (about 10 ms of the 30 its drawing took).
    drawn = copy.copy(load)
    drawn.outputs = [block for block in load.outputs if block._id in drawable]

    async def draw(request: Request) -> dict[str, Any] | None:
        if hosted and visitor_in(request.scope) is None:
            return None  # (the load handler's answer would be a refusal)
        asking = gr.Request(request=request)
        update = await handlers.on_load(None, None, None, None, asking)  # type: ignore[call-arg]
        if c.history not in update:
            return None
        shown_now = {block: value for block, value in update.items() if block._id in drawable}
        data = await demo.postprocess_data(drawn, shown_now, lean.LeanSessionState(demo))
        props = predraw.drawn_props(drawn.outputs, data, drawable)
        history = props.get(str(c.history._id), {})
        if isinstance(history.get("value"), str):
            history["value"] = tree.drawn_before_load(history["value"])
        session, step = update.get(c.browser), update.get(c.tab_step)
        return {
            "session": session if isinstance(session, str) else "",
            "step": step if isinstance(step, str) else "",
            "props": props,
        }

    return draw


def allowed_paths(bridge: Bridge) -> list[str]:
    """What Gradio may serve from outside its cache: the store's images and thumbnails, assets."""
    return [*(str(p) for p in bridge.served_folders()), str(assets_dir())]


def css_path() -> Path:
    return assets_dir() / "studio.css"


def page_head() -> str | None:
    """What runs before Gradio mounts the page: a stand-in for storage the browser denies a
    framed page (`assets/storage.js`); and the few style rules for what lies outside the app's
    own part of the page (`assets/outside.css`: Gradio scopes every rule of `css` inside a
    media query under `.contain`, so a phone rule for the page's own padding never applied)."""
    parts = []
    for name in ("storage.js", "predraw.js"):
        if (script := assets_dir() / name).exists():
            parts.append(f"<script>{script.read_text(encoding='utf-8')}</script>")
    if (style := assets_dir() / "outside.css").exists():
        parts.append(f"<style>{style.read_text(encoding='utf-8')}</style>")
    return "".join(parts) or None


def page_script() -> str | None:
    """The page's script (`assets/studio.js`, a function Gradio runs once the page is ready)."""
    path = assets_dir() / "studio.js"
    return path.read_text(encoding="utf-8") if path.exists() else None
