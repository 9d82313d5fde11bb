"""A scripted OpenAI-compatible chat model on loopback, to drive a real Hermes Agent in tests.

No LLM is reachable here, so the model's turns come from a script: a function that sees each
chat request (the tools offered, the messages so far) and answers with tool calls or a final
text. Hermes always streams, so answers go out as SSE chunks, tool calls as streamed deltas
(shared/hermes-notes.md). Every request is recorded, so a test can assert on what Hermes sent
the model: the tool results, exactly as the model would read them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "fake-model"
# Hermes refuses models under 64k context (agent/model_metadata.py, MINIMUM_CONTEXT_LENGTH).
CONTEXT_LENGTH = 131072


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    """The model's turn: tool calls to make, or (with none) a final text."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()


Script = Callable[["ChatRequest"], Reply]


@dataclass(frozen=True)
class ChatRequest:
    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.body.get("tools") or []]

    @property
    def tool_results(self) -> list[str]:
        """The text of each tool message so far, oldest first."""
        return [_text(m.get("content")) for m in self.messages if m.get("role") == "tool"]

    def tool(self, suffix: str) -> str:
        """The offered tool whose name ends with `suffix` (MCP tools carry a server prefix)."""
        (name,) = [n for n in self.tool_names if n == suffix or n.endswith(f"_{suffix}")]
        return name


@dataclass
class ScriptedModel:
    script: Script
    requests: list[ChatRequest] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)
    base_url: str = ""
    _server: ThreadingHTTPServer | None = None

    def start(self) -> ScriptedModel:
        model = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    entry = {
                        "id": MODEL,
                        "object": "model",
                        "owned_by": "tests",
                        "context_length": CONTEXT_LENGTH,
                    }
                    self._json({"object": "list", "data": [entry]})
                else:
                    self._json({"error": {"message": "not found"}}, status=404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._json({"error": {"message": "not found"}}, status=404)
                    return
                request = ChatRequest(body)
                model.requests.append(request)
                try:
                    # Requests without tools are Hermes' own side calls (titles, summaries).
                    reply = model.script(request) if body.get("tools") else Reply(text="ok")
                except Exception as exc:  # the test reads it from `errors`, Hermes sees a 400
                    model.errors.append(exc)
                    self._json({"error": {"message": f"script failed: {exc!r}"}}, status=400)
                    return
                turn = len(model.requests)  # tool call ids must differ from turn to turn
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for chunk in _chunks(reply, turn):
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                else:
                    self._json(_completion(reply, turn))

            def _json(self, document: dict[str, Any], status: int = 200) -> None:
                data = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def hermes_config(self) -> dict[str, Any]:
        """The `model` and `providers` sections that point Hermes at this model."""
        return {
            "model": {
                "provider": "custom:fake",
                "default": MODEL,
                "context_length": CONTEXT_LENGTH,
            },
            "providers": {
                "fake": {
                    "base_url": self.base_url,
                    "api_key": "sk-fake",
                    "default_model": MODEL,
                    "transport": "chat_completions",
                }
            },
        }


def _chunks(reply: Reply, turn: int) -> Iterator[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {
            "id": "chatcmpl-scripted",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": MODEL,
            "choices": [choice],
        }

    yield chunk({"role": "assistant", "content": ""})
    if reply.tool_calls:
        for index, call in enumerate(reply.tool_calls):
            start = {
                "index": index,
                "id": f"call_{turn}_{index}",
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            yield chunk({"tool_calls": [start]})
            arguments = json.dumps(call.arguments)
            half = len(arguments) // 2  # in two deltas, as real models stream them
            for part in (arguments[:half], arguments[half:]):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
        yield chunk({}, "tool_calls")
    else:
        yield chunk({"content": reply.text})
        yield chunk({}, "stop")
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    yield {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": MODEL,
        "choices": [],
        "usage": usage,
    }


def _completion(reply: Reply, turn: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": f"call_{turn}_{i}",
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
            }
            for i, c in enumerate(reply.tool_calls)
        ]
    finish = "tool_calls" if reply.tool_calls else "stop"
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""
