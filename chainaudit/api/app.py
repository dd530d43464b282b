"""The HTTP API: ``create_app(settings)`` builds the FastAPI application.

Versioned under ``/v1``, OpenAPI at ``/docs`` (``/openapi.json``), every error an RFC 9457
problem. The anchoring service runs as a background thread started and stopped with the
app's lifespan.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chainaudit import __version__
from chainaudit.api import problems
from chainaudit.api.auth import RateLimiter
from chainaudit.api.fastlane import ProofFastLane
from chainaudit.api.routes import (
    alerts,
    approvals,
    bundles,
    deals,
    docs,
    health,
    keys,
    proofs,
    records,
    statements,
    web,
)
from chainaudit.api.services import Metrics, Services
from chainaudit.errors import JsonNestingError
from chainaudit.jsonlimits import MAX_JSON_DEPTH, check_nesting, restore_recursion_limit
from chainaudit.settings import Settings


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
            413, "payload-too-large", f"request bodies are limited to {self.limit} bytes"
        )
        await response(scope, receive, send)


class NestingLimit:
    """Refuse request bodies nested deeper than ``limit`` (422, before any JSON parser runs).

    FastAPI parses a JSON body before it resolves the route's dependencies, authentication
    included, so without this an unauthenticated, deeply nested body reached ``json.loads``.
    The body is read here (:class:`BodyLimit`, outside, has already capped its size), checked
    with :func:`chainaudit.jsonlimits.check_nesting` (in a worker thread when large, to keep
    the event loop free), then replayed to the app.
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
        try:
            if len(body) > 65_536:
                await run_in_threadpool(check_nesting, body, limit=self.limit, source="the body")
            else:
                check_nesting(body, limit=self.limit, source="the body")
        except JsonNestingError as exc:
            response = problems.problem_response(
                422,
                "nesting-too-deep",
                str(exc),
                instance=scope.get("path"),
                errors=[{"pointer": "", "message": str(exc)}],
            )
            await response(scope, receive, send)
            return
        replayed: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
        await self.app(scope, _replay(replayed, receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that returns ``messages`` first, then defers to ``receive``."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


class Observe:
    """Count requests and their latency by route (a pure ASGI middleware: no extra task or
    thread per request)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
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
            route = getattr(scope.get("route"), "path", "unmatched")
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
        records.router,
        proofs.router,
        bundles.router,
        deals.router,
        alerts.router,
        approvals.router,
        statements.router,
        keys.router,
        health.router,
        web.router,
        docs.router,
    ):
        app.include_router(router)
    app.add_middleware(NestingLimit, limit=MAX_JSON_DEPTH)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(ProofFastLane, services=services, limiter=app.state.limiter)
    app.add_middleware(Observe, metrics=services.metrics)
    return app
