"""The simulator's HTTP routes, an independent reading of shared/runapi-contract.md.

Imports starlette and its siblings only; nothing else of ours (it shares no code with `runapi/`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from studio.simulator.contract import PRICE_CENTS, fingerprint, validate_create
from studio.simulator.faults import DOWNLOAD_CHAOS
from studio.simulator.fetch import MAX_IMAGE_BYTES, FetchError, fetch_image
from studio.simulator.gateway import Gateway, error_body
from studio.simulator.render import is_image, render_result
from studio.simulator.tasks import (
    IdempotencyConflictError,
    InsufficientCreditsError,
    SimState,
    SimTask,
)

# Contract: "Idempotency-Key (optional, up to 512 chars)".
MAX_IDEMPOTENCY_KEY_CHARS = 512
TASK_PATH = "/api/v1/flux_kontext/text_to_image"


def create_app(state: SimState) -> Starlette:
    """The simulator as a Starlette app over `state` (what `Simulator` serves under uvicorn)."""
    api = _Api(state)
    routes = [
        Route(TASK_PATH, api.create, methods=["POST"]),
        Route(TASK_PATH + "/{task_id}", api.read, methods=["GET"]),
        Route("/v1/text_to_image", api.create_marketing, methods=["POST"]),
        Route("/api/v1/files", api.upload, methods=["POST"]),
        Route("/api/v1/me/balance", api.balance, methods=["GET"]),
        Route("/api/v1/price_schedules", api.price_schedules, methods=["GET"]),
        Route("/files/{file_id}", api.file_content, methods=["GET"]),
        Route("/results/{name}", api.result_image, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(Gateway, state=state)],
        exception_handlers={HTTPException: _http_error},
    )


async def _http_error(_request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return JSONResponse(error_body("not_found" if status == 404 else "http", str(exc)), status)


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def _json_object(request: Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _invalid(errors: dict[str, list[str]]) -> JSONResponse:
    return JSONResponse({"error": "Validation failed", "errors": errors}, 422)


def _not_json() -> JSONResponse:
    return JSONResponse(error_body("bad_request", "The body must be a JSON object."), 400)


class _Api:
    def __init__(self, state: SimState) -> None:
        self.state = state

    async def create(self, request: Request) -> Response:
        return await self._create(request, marketing=False)

    async def create_marketing(self, request: Request) -> Response:
        # The marketing page's shape: `image_url` in, `task_id` out (contract: "Two documents").
        return await self._create(request, marketing=True)

    async def _create(self, request: Request, *, marketing: bool) -> Response:
        sent = await _json_object(request)
        if sent is None:
            return _not_json()
        body = dict(sent)
        if marketing and "image_url" in body:
            body.setdefault("source_image_url", body.pop("image_url"))
        errors = validate_create(body)
        key = (request.headers.get("idempotency-key") or "").strip() or None
        if key is not None and len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
            errors["idempotency_key"] = ["is too long (maximum is 512 characters)"]
        if errors:
            return _invalid(errors)
        print_ = fingerprint(request.url.path, sent)
        self.state.count_create(key)
        try:
            earlier = self.state.find_replay(key, print_)
            if earlier is not None:
                return await self._task_answer(request, earlier, marketing=marketing, replayed=True)
            # Off the event loop: with a state_dir, billing and creating write to disk.
            await run_in_threadpool(self.state.check_credit, body["model"])
            source, fail_message = None, None
            if url := body.get("source_image_url"):
                try:
                    source = await self._fetch(request, url)
                except FetchError as exc:
                    fail_message = str(exc)
            task, replayed = await run_in_threadpool(
                self.state.create_task,
                body,
                key=key,
                print_=print_,
                source_bytes=source,
                fail_message=fail_message,
            )
        except IdempotencyConflictError:
            message = "This Idempotency-Key was already used with a different request."
            return JSONResponse(error_body("idempotency_conflict", message), 409)
        except InsufficientCreditsError:
            message = f"Insufficient credits: this image costs {PRICE_CENTS[body['model']]} cents."
            return JSONResponse(error_body("insufficient_credits", message), 402)
        if self.state.render_ahead and not replayed and not task.fail_message:
            # As the real service does: the image is ready when the task completes.
            task.rendering = asyncio.ensure_future(self._render(task))
        return await self._task_answer(request, task, marketing=marketing, replayed=replayed)

    async def read(self, request: Request) -> Response:
        task = self.state.tasks.get(request.path_params["task_id"])
        if task is None:
            return JSONResponse(error_body("not_found", "Task not found."), 404)
        return await self._task_answer(request, task, marketing=False, replayed=False)

    async def _task_answer(
        self, request: Request, task: SimTask, *, marketing: bool, replayed: bool
    ) -> JSONResponse:
        await run_in_threadpool(self.state.settle)
        now = time.monotonic()
        status = task.status_at(now)
        if status in ("completed", "failed") and task.end_answered_at is None:
            task.end_answered_at = now  # when a client could first learn it ended
        price = task.price_cents
        answer: dict[str, Any] = {
            "task_id" if marketing else "id": task.task_id,
            "status": status,
            "model": task.model,
            "created_at": _iso(task.created_wall),
        }
        if status == "completed":
            # Every read hands out a fresh URL (a real one is signed and expires).
            task.urls_issued += 1
            url = f"{_base(request)}/results/{task.task_id}.{task.output_format}"
            url += f"?n={task.urls_issued}"
            answer["images"] = [{"url": url, "origin_url": url}]
        if status == "failed":
            answer["error"] = task.fail_message
        answer["billing"] = {
            "reservation": {"amount_cents": price},
            "settlement": (
                {"charged_amount_cents": price, "amount_micro_cents": price * 1_000_000}
                if status == "completed"
                else None
            ),
            "refund": (
                {"refunded_at": _iso(task.refunded_wall or time.time()), "amount_cents": price}
                if status == "failed"
                else None
            ),
        }
        if replayed:
            answer["task_replayed"] = True
        return JSONResponse(answer, headers={"X-RunAPI-Task-Id": task.task_id})

    async def upload(self, request: Request) -> Response:
        body = await _json_object(request)
        if body is None:
            return _not_json()
        source = body.get("source")
        if isinstance(source, str):  # tolerated: the SDK's bare-string form
            is_url = source.startswith(("http://", "https://"))
            source = (
                {"type": "url", "url": source} if is_url else {"type": "base64", "data": source}
            )
        if not isinstance(source, dict):
            return _invalid({"source": ["is required"]})
        if source.get("type") == "base64" and isinstance(source.get("data"), str):
            data_text = source["data"].partition("base64,")[2] or source["data"]
            try:
                data = await run_in_threadpool(base64.b64decode, data_text, validate=True)
            except (binascii.Error, ValueError):
                return _invalid({"source": ["data is not valid base64"]})
        elif source.get("type") == "url" and isinstance(source.get("url"), str):
            try:
                data = await self._fetch(request, source["url"], check_image=False)
            except FetchError as exc:
                if exc.too_large:
                    return _too_large()
                return _invalid({"source": [f"could not be fetched: {exc}"]})
        else:
            return _invalid({"source": ["must be {type: base64, data} or {type: url, url}"]})
        if len(data) > MAX_IMAGE_BYTES:
            return _too_large()
        mime_type = is_image(data)
        if mime_type is None:
            message = "The file is not a supported image (PNG, JPEG, WebP or GIF)."
            return JSONResponse(error_body("unsupported_media_type", message), 415)
        extension = mime_type.rsplit("/", 1)[1]
        given = body.get("file_name")
        name = PurePosixPath(given).name[:200] if isinstance(given, str) else ""
        upload = await run_in_threadpool(
            self.state.add_file, name or f"upload.{extension}", mime_type, data
        )
        return JSONResponse(
            {
                "file_name": upload.file_name,
                "url": f"{_base(request)}/files/{upload.file_id}",
                "size_bytes": len(data),
                "mime_type": mime_type,
                "created_at": _iso(upload.created_wall),
                "expires_at": _iso(upload.expires_wall),
            }
        )

    async def balance(self, _request: Request) -> Response:
        await run_in_threadpool(self.state.settle)
        with self.state.lock:
            balance, spent = self.state.balance_cents, self.state.spent_cents
        # The official SDK's AccountBalanceResponse requires all five fields.
        return JSONResponse(
            {
                "balance_cents": balance,
                "paid_balance_cents": balance,
                "bonus_balance_cents": 0,
                "spent_cents_today": spent,
                "spent_cents_total": spent,
            }
        )

    async def price_schedules(self, request: Request) -> Response:
        query = request.query_params
        schedules = [
            {
                "service": "flux_kontext",
                "action": "text_to_image",
                "model": model,
                "pricing_status": "active",
                "catalog_status": "active",
                "currency": "usd",
                "billing_unit": "image",
                "billing_strategy": "per_unit",
                "unit_price_cents": cents,
            }
            for model, cents in PRICE_CENTS.items()
        ]
        wanted = [s for s in schedules if all(query.get(k, s[k]) == s[k] for k in s if k in query)]
        return JSONResponse({"as_of": _iso(time.time()), "price_schedules": wanted})

    async def file_content(self, request: Request) -> Response:
        upload = self.state.live_file(request.path_params["file_id"])
        if upload is None:
            return JSONResponse(error_body("not_found", "File not found or expired."), 404)
        return Response(upload.data, media_type=upload.mime_type)

    async def result_image(self, request: Request) -> Response:
        chaos = self.state.faults.take_chaos(DOWNLOAD_CHAOS)
        if chaos == "slow":
            await asyncio.sleep(self.state.faults.chaos_slow_s)
        expired = chaos == "expired" or (
            self.state.faults.first_result_urls_expire and request.query_params.get("n") == "1"
        )
        data = None if expired else await self._result_bytes(request.path_params["name"])
        if data is None:
            return JSONResponse(error_body("not_found", "Result not found or expired."), 404)
        if self.state.faults.results_damaged:
            middle = len(data) // 2
            data = (
                data[:middle]
                + bytes(b ^ 0xFF for b in data[middle : middle + 64])
                + data[middle + 64 :]
            )
        extension = request.path_params["name"].rpartition(".")[2]
        return Response(data, media_type=f"image/{extension}")

    async def _result_bytes(self, name: str) -> bytes | None:
        """The rendered result for `<task_id>.<format>`, rendered once on first read."""
        task_id, _, extension = name.rpartition(".")
        task = self.state.tasks.get(task_id)
        if self.state.faults.results_expired or task is None or task.status != "completed":
            return None
        if extension != task.output_format:
            return None
        if task.result_bytes is None:
            task.result_bytes = await (task.rendering or self._render(task))
        return task.result_bytes

    async def _render(self, task: SimTask) -> bytes:
        return await run_in_threadpool(
            render_result,
            source=task.source_bytes,
            prompt=str(task.body["prompt"]),
            aspect_ratio=str(task.body.get("aspect_ratio") or "16:9"),
            output_format=task.output_format,
            model=task.model,
            pixels=self.state.result_pixels,
        )

    async def _fetch(self, request: Request, url: str, *, check_image: bool = True) -> bytes:
        if self.state.faults.sources_unreachable:
            raise FetchError(f"Could not fetch the image at {url}: connection refused.")
        server = request.scope.get("server")

        async def read_own(path: str) -> bytes | None:
            kind, _, name = path.lstrip("/").partition("/")
            if kind == "files":
                upload = self.state.live_file(name)
                return None if upload is None else upload.data
            return await self._result_bytes(name) if kind == "results" else None

        return await fetch_image(url, server=server, read_own=read_own, check_image=check_image)


def _too_large() -> JSONResponse:
    return JSONResponse(error_body("file_too_large", "The file is larger than 20 MB."), 413)
