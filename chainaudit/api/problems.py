"""RFC 9457 problem details: every error the API returns is ``application/problem+json``.

Each problem has a stable ``type`` URI (``https://chainaudit.dev/problems/<slug>``), a short
``title`` and a human ``detail``; validation problems add ``errors``, one entry per offending
field. Handlers here map chainaudit's exceptions and FastAPI's own errors to problems, and a
last-resort handler turns anything unexpected into a 500 without leaking internals.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from chainaudit.api.validation import explain
from chainaudit.core.errors import (
    ChainError,
    ChainUnavailableError,
    ConfigError,
    ConflictError,
    InputError,
    NotFoundError,
    RecordError,
    VerificationError,
)

__all__ = ["PROBLEM_JSON", "Problem", "install", "problem_response", "problem_schema"]

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://chainaudit.dev/problems/"

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many requests",
    500: "Internal error",
    502: "Chain error",
    503: "Service unavailable",
}


class Problem(Exception):  # noqa: N818 - named after the RFC 9457 object it renders
    """Raise to answer with a problem document."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.title = title or _TITLES.get(status, "Error")
        self.headers = headers or {}
        self.extra = extra


def problem_response(
    status: int,
    slug: str,
    detail: str,
    *,
    instance: str,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem document answering the request for ``instance`` (its path)."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + slug,
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def problem_schema() -> dict[str, Any]:
    """The OpenAPI schema of a problem document (referenced by every error response)."""
    return {
        "type": "object",
        "required": ["type", "title", "status", "detail", "instance"],
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "errors": {
                "type": "array",
                "description": "for a request that does not fit: each offending part, "
                "`in` (body, query, path or header), `pointer` (RFC 6901, into that part) "
                "and `message` (what to send instead)",
                "items": {
                    "type": "object",
                    "required": ["pointer", "message"],
                    "properties": {
                        "in": {"type": "string"},
                        "pointer": {"type": "string"},
                        "message": {"type": "string"},
                    },
                },
            },
        },
    }


def install(app: FastAPI) -> None:
    """Register the problem handlers on ``app``."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.slug,
            exc.detail,
            title=exc.title,
            instance=request.url.path,
            headers=exc.headers,
            **exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = explain(exc.errors(), _body_model(request))
        summary = "; ".join(
            f"{e['in']} {e['pointer'] or '(whole)'}: {e['message']}" for e in errors[:3]
        )
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        return problem_response(
            422,
            "validation",
            f"the request does not fit this endpoint: {summary}{more}",
            instance=request.url.path,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http")
        return problem_response(
            exc.status_code,
            slug,
            str(exc.detail),
            instance=request.url.path,
            headers=dict(exc.headers or {}),
        )

    simple: list[tuple[type[Exception], int, str]] = [
        (RecordError, 422, "invalid-record"),
        (InputError, 422, "invalid-input"),
        (VerificationError, 422, "verification"),
        (ConflictError, 409, "conflict"),
        (NotFoundError, 404, "not-found"),
        (ConfigError, 503, "not-configured"),
    ]
    for exc_type, status, slug in simple:
        app.add_exception_handler(exc_type, _simple_handler(status, slug))

    @app.exception_handler(ChainUnavailableError)
    async def _chain_down(request: Request, exc: ChainUnavailableError) -> JSONResponse:
        return problem_response(
            503,
            "chain-unavailable",
            str(exc),
            instance=request.url.path,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(ChainError)
    async def _chain(request: Request, exc: ChainError) -> JSONResponse:
        return problem_response(502, "chain", str(exc), instance=request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(
            500,
            "internal",
            "an unexpected error occurred; it has been logged",
            instance=request.url.path,
        )


def _body_model(request: Request) -> type[BaseModel] | None:
    """The pydantic model of the body the matched route takes, if any."""
    field = getattr(request.scope.get("route"), "body_field", None)
    model = getattr(getattr(field, "field_info", None), "annotation", None)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return model
    return None


def _simple_handler(status: int, slug: str) -> Any:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(status, slug, str(exc), instance=request.url.path)

    return handler
