"""The HTTP API: ``create_app(settings)`` builds the FastAPI application.

Versioned under ``/v1``, OpenAPI at ``/docs`` (``/openapi.json``), every error an RFC 9457
problem. The anchoring service runs as a background thread started and stopped with the
app's lifespan.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chainaudit import __version__
from chainaudit.api import problems
from chainaudit.api.auth import RateLimiter
from chainaudit.api.fastlane import ProofFastLane
from chainaudit.api.routes import (
    alerts,
    approvals,
    bundles,
    checkpoint,
    deals,
    docs,
    erasure,
    health,
    keys,
    proofs,
    records,
    statements,
    tiles,
    web,
)
from chainaudit.api.services import Services
from chainaudit.app.metrics import ApiMetrics, mark_process_dead
from chainaudit.app.settings import Settings
from chainaudit.core import jsonlimits
from chainaudit.core.errors import DuplicateKeyError, InputError, JsonNestingError, JsonSyntaxError
from chainaudit.core.jsonlimits import MAX_JSON_DEPTH, restore_recursion_limit

__all__ = ["create_app"]


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, whether or not they declare a
    Content-Length (chunked bodies are counted as they arrive)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.limit or declared < 0:
                    await self._refuse(scope, receive, send)
                    return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problems.problem_response(
            413,
            "payload-too-large",
            f"request bodies are limited to {self.limit} bytes",
            instance=scope["path"],
        )
        await response(scope, receive, send)


class JsonBody:
    """Check every request body before FastAPI (or any other JSON parser) sees it.

    A non-empty body must be declared JSON (``Content-Type: application/json`` or
    ``application/<something>+json``, UTF-8): anything else is refused with 415. It must then
    nest at most ``limit`` levels (checked before any parser runs: FastAPI parses a JSON body
    before it resolves the route's dependencies, authentication included, so without this an
    unauthenticated, deeply nested body reached ``json.loads``), be valid JSON and name no
    member of an object twice; each is refused with 422 saying where
    (:func:`chainaudit.core.jsonlimits.loads`: the byte offset of a syntax error, the JSON pointer
    of a duplicate key). The body is read here (:class:`BodyLimit`, outside, has already
    capped its size), parsed in a worker thread when large, then replayed to the app.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_JSON_DEPTH) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        refusal = await self._check(scope, body) if body else None
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        replayed: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
        await self.app(scope, _replay(replayed, receive), send)

    async def _check(self, scope: Scope, body: bytes) -> JSONResponse | None:
        instance: str = scope["path"]
        declared = _content_type(scope)
        if not _is_json(declared):
            got = f"got {declared!r}" if declared else "none was given"
            message = f"send the body as JSON with `Content-Type: application/json` (UTF-8); {got}"
            return problems.problem_response(
                415,
                "unsupported-media-type",
                message,
                instance=instance,
                errors=[{"in": "header", "pointer": "/content-type", "message": message}],
            )
        try:
            if len(body) > 65_536:
                await run_in_threadpool(jsonlimits.loads, body, limit=self.limit, source="the body")
            else:
                jsonlimits.loads(body, limit=self.limit, source="the body")
        except JsonNestingError as exc:
            return _body_problem("nesting-too-deep", exc, instance, "")
        except JsonSyntaxError as exc:
            return _body_problem(
                "invalid-json",
                exc,
                instance,
                "",
                offset=exc.offset,
                line=exc.line,
                column=exc.column,
            )
        except DuplicateKeyError as exc:
            return _body_problem("duplicate-key", exc, instance, exc.pointer)
        except InputError as exc:
            return _body_problem("invalid-json", exc, instance, "")
        return None


def _body_problem(
    slug: str, exc: Exception, instance: str, pointer: str, **where: int
) -> JSONResponse:
    message = str(exc)
    return problems.problem_response(
        422,
        slug,
        message,
        instance=instance,
        errors=[{"in": "body", "pointer": pointer, "message": message, **where}],
    )


def _content_type(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return str(value.decode("latin-1").strip())
    return ""


def _is_json(content_type: str) -> bool:
    """Whether ``content_type`` declares UTF-8 JSON (``application/json``, ``…+json``)."""
    media, _, parameters = content_type.partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        return False
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            return False
    return True


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that returns ``messages`` first, then defers to ``receive``."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


_CONVERTOR: Final = re.compile(r"\{(\w+):\w+\}")
"""A path parameter's convertor, left out of the route label (``{record_id:path}`` is
``{record_id}`` in the metrics)."""


class Observe:
    """Count requests and their latency by route (a pure ASGI middleware: no extra task or
    thread per request)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = _CONVERTOR.sub(r"{\1}", getattr(scope.get("route"), "path", "unmatched"))
            self.metrics.observe(scope["method"], route, status, time.perf_counter() - started)


class _TooLarge(Exception):  # noqa: N818 - internal control flow
    pass


def create_app(settings: Settings, *, run_anchorer: bool = True) -> FastAPI:
    """Build the API for ``settings``; services start with the app's lifespan."""
    restore_recursion_limit()
    services = Services(settings, run_anchorer=run_anchorer)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services.start()
        try:
            yield
        finally:
            services.stop()
            mark_process_dead()  # a worker of `serve --workers N` leaves the shared metrics

    app = FastAPI(
        title="chainaudit",
        version=__version__,
        description="Provable audit trails and escrowed payments for supply-chain finance.",
        lifespan=lifespan,
        docs_url=None,  # served offline with a CSP by routes/docs.py
        redoc_url=None,
        responses={
            "default": {
                "description": "An RFC 9457 problem",
                "content": {problems.PROBLEM_JSON: {"schema": problems.problem_schema()}},
            }
        },
    )
    app.state.services = services
    app.state.limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
    problems.install(app)

    for router in (
        proofs.router,  # before records: /v1/records/{id:path}/proof wins over /{id:path}
        erasure.router,  # likewise: /v1/records/{id:path}/erasure
        bundles.router,
        records.router,
        deals.router,
        alerts.router,
        approvals.router,
        statements.router,
        keys.router,
        health.router,
        tiles.router,
        checkpoint.router,
        web.router,
        docs.router,
    ):
        app.include_router(router)
    app.add_middleware(JsonBody, limit=MAX_JSON_DEPTH)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(ProofFastLane, services=services, limiter=app.state.limiter)
    app.add_middleware(tiles.TileFastLane, services=services)
    app.add_middleware(Observe, metrics=services.metrics)
    return app
