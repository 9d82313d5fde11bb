"""What Gradio's MCP server hands an agent for a tool's answer: each output, and a result image
as the studio stored it.

The one place the studio reaches into Gradio's private parts (`gradio.mcp.GradioMCPServer`),
installed by `install` (idempotent: Gradio's own methods are kept on the class). Gradio 6.31:

- wraps the outputs of a call made without a progress token in one more list, so a client got
  the Python repr of them all as one text (`_execute_tool_without_progress`);
- decodes each image answer from its path and encodes it again with Pillow, on the event loop
  (`postprocess_output_data`): the XMP that marks a result as made by AI (and by which model:
  `studio.provenance`) was dropped, a JPEG re-compressed, the "Image URL" line named the file's
  path, and one answer of a 48-megapixel keep-the-rest result held the loop for 25 to 45 s
  (review 8 F1), with 58 MB of base64 in it;
- makes each tool's description (its docstring parsed) and JSON schema afresh for every
  `tools/list`, which anyone may send at a network address's request pace: 3.7 ms of CPU each
  (a page's own route paced at 4 a second, `/gradio_api/mcp/schema`, makes the same), and 40
  addresses sending it held another visitor's page at 1.2-1.5 s median (review 33 F1). They
  are made once per tool here (`get_fn_description`, `get_input_schema`): the tools never
  change while the studio runs. Nor does MCP's own version, which its server otherwise reads
  from the package's metadata (a file parsed) for every request (`create_mcp_server`);
- answers a browser's GET of any path ending as its server's with a page that puts the path,
  percent-decoded, into a script (`json.dumps` leaves `</script>` as it is): a link to a
  studio ran any script on its origin (review 34 F3). The path is percent-encoded again here.

Here an answer at the studio's own address (`api._addressed_image`) is read off the event loop
once the tool has finished: the stored bytes as they are when they fit an agent's image content
(`MCP_IMAGE_BYTES`, below the 5 MB many clients take), else a JPEG preview at most
`PREVIEW_SIDE` pixels on its long side, made one at a time, carrying the same XMP. The text
beside it gives the address of the whole image. Every other answer goes as Gradio sends it.
tests/browser/test_mcp.py fails without each part.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import importlib.metadata
import io
import mimetypes
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

# Stored bytes larger than this go as a preview (base64 makes 4.7 MB of 3.5 MB: under the 5 MB
# an image may take in many agents' requests).
MCP_IMAGE_BYTES = 3_500_000
PREVIEW_SIDE = 2048
PREVIEW_QUALITY = 90
# A preview decodes the whole result (a 48-megapixel PNG: about 150 MB and a second of CPU):
# one at a time in the process.
_PREVIEWS = threading.Semaphore(1)
# Set on the Blocks by `api.register`: the stored file an image address names, or None.
STORED_FILE_ATTR = "kontext_stored_file"
_KEY = "kontext_mcp_content"
# Said when the answer of a tool's run never came (its stream from the queue broke): an edit may
# have run and been paid for, and a caller told only that it failed would pay for it again
# (review 21 saw one such answer once).
NO_RESULT = (
    "The tool's answer did not come through; if it was an edit, it may have run: call "
    "list_sessions (or show_session) to see it before asking for it again."
)


def install() -> None:
    """Patch Gradio's MCP server as the module docstring says (idempotent)."""
    from gradio.mcp import GradioMCPServer

    own = GradioMCPServer.__dict__.get("_kontext_gradio_own")
    if own is None:
        own = {
            "with_progress": GradioMCPServer._execute_tool_with_progress,
            "postprocess": GradioMCPServer.postprocess_output_data,
            "description": GradioMCPServer.get_fn_description,
            "schema": GradioMCPServer.get_input_schema,
            "create": GradioMCPServer.create_mcp_server,
            "landing": GradioMCPServer._landing_page_html,
        }
        GradioMCPServer._kontext_gradio_own = own  # type: ignore[attr-defined]

    async def without_progress(server: Any, job: Any) -> list[Any]:
        async for update in job:
            if update.type == "output" and update.final:
                if not update.success:
                    raise RuntimeError(update.outputs.get("error") or "The tool failed.")
                return await _read_images(server, list(update.outputs["data"]))
        raise RuntimeError(str(job.exception() or NO_RESULT))

    async def with_progress(server: Any, job: Any, progress_token: Any) -> list[Any]:
        data = await own["with_progress"](server, job, progress_token)
        return await _read_images(server, list(data))

    def postprocess(server: Any, data: Any, root_url: str) -> list[Any]:
        from mcp import types

        content: list[Any] = []
        for output in data:
            if not (isinstance(output, dict) and _KEY in output):
                content.extend(own["postprocess"](server, [output], root_url))
                continue
            encoded, kind, text = output[_KEY]
            content.append(types.ImageContent(type="image", data=encoded, mimeType=kind))
            content.append(types.TextContent(type="text", text=text))
        return content

    def description(server: Any, block_fn: Any, tool_name: str) -> Any:
        return _once(server, ("description", tool_name), own["description"], block_fn, tool_name)

    def schema(server: Any, tool_name: str, parameters: dict[str, str] | None = None) -> Any:
        key = ("schema", tool_name, tuple(sorted((parameters or {}).items())))
        return _once(server, key, own["schema"], tool_name, parameters)

    def create(server: Any) -> Any:
        made = own["create"](server)
        if not getattr(made, "version", None):
            made.version = importlib.metadata.version("mcp")
        return made

    def landing(server_url: str) -> str:
        return str(own["landing"](urllib.parse.quote(server_url, safe=":/%")))

    GradioMCPServer._landing_page_html = staticmethod(landing)  # type: ignore[method-assign]
    GradioMCPServer.create_mcp_server = create  # type: ignore[method-assign,assignment]
    GradioMCPServer.get_fn_description = description  # type: ignore[method-assign,assignment]
    GradioMCPServer.get_input_schema = schema  # type: ignore[method-assign,assignment]
    GradioMCPServer._execute_tool_without_progress = without_progress  # type: ignore[method-assign,assignment]
    GradioMCPServer._execute_tool_with_progress = with_progress  # type: ignore[method-assign,assignment]
    GradioMCPServer.postprocess_output_data = postprocess  # type: ignore[method-assign,assignment]


# What `_once` keeps for one MCP server, at most (its tools' descriptions and schemas).
ONCE_KEPT = 512


def _once(server: Any, key: tuple[Any, ...], make: Callable[..., Any], *args: Any) -> Any:
    """What `make(server, *args)` answers, made once for `server` and `key` (a copy each time:
    Gradio's callers are free to change what they are given). What raises is not kept."""
    kept: dict[tuple[Any, ...], Any] = server.__dict__.setdefault("_kontext_once", {})
    if key not in kept:
        made = make(server, *args)
        if len(kept) >= ONCE_KEPT:
            return made
        kept[key] = made
    return copy.deepcopy(kept[key])


async def _read_images(server: Any, data: list[Any]) -> list[Any]:
    """`data` with each answer at the studio's own address read into what MCP sends (on a
    worker thread: never on the event loop)."""
    stored_file = getattr(server.blocks, STORED_FILE_ATTR, None)
    if stored_file is None:
        return data
    return await asyncio.to_thread(_read_all, stored_file, data)


def _read_all(stored_file: Callable[[str], Path | None], data: list[Any]) -> list[Any]:
    read: list[Any] = []
    for output in data:
        url = output.get("url") if isinstance(output, dict) else None
        path = stored_file(url) if isinstance(url, str) else None
        read.append(output if path is None else {_KEY: mcp_image(path, url or "")})
    return read


def mcp_image(path: Path, url: str) -> tuple[str, str, str]:
    """The stored image at `path` as MCP image content (base64, its MIME type) and the line
    beside it: the bytes as stored when they fit `MCP_IMAGE_BYTES`, else a JPEG preview."""
    data = path.read_bytes()
    if len(data) <= MCP_IMAGE_BYTES:
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return base64.b64encode(data).decode("ascii"), kind, f"Image URL: {url}"
    with _PREVIEWS, Image.open(io.BytesIO(data)) as image:
        size = image.size
        xmp = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
        image.draft("RGB", (PREVIEW_SIDE, PREVIEW_SIDE))  # a JPEG decodes at a fraction
        preview = image.convert("RGB")
        preview.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        extra = {"xmp": xmp.encode() if isinstance(xmp, str) else xmp} if xmp else {}
        preview.save(out, "JPEG", quality=PREVIEW_QUALITY, **extra)
    text = (
        f"A preview ({preview.width}x{preview.height}) of the {size[0]}x{size[1]} image, which "
        f"is too large to send here ({len(data) / 2**20:.1f} MB). The whole image: {url}"
    )
    return base64.b64encode(out.getvalue()).decode("ascii"), "image/jpeg", text
