"""The web page (``/`` and ``/web/*``), its public configuration (``/v1/config``) and the
signed-in key's own description (``/v1/me``).

The page is three static files shipped in the package (``chainaudit/web/``), no build step.
It verifies proof bundles in the browser: it recomputes the leaf and the root with Web Crypto
and reads the anchor from the chain endpoint named by ``/v1/config`` (or one the user types),
so its verdict never rests on this server's word.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Final
from urllib.parse import urlsplit

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, Field

from chainaudit import __version__
from chainaudit.api.auth import Principal, ServicesDep
from chainaudit.api.problems import Problem
from chainaudit.api.services import Services
from chainaudit.core.errors import ChainauditError

__all__ = ["publishable_rpc_url", "router"]

router = APIRouter(tags=["web"])

STATIC: Final = {
    "index.html": "text/html; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
}
"""The only files served from ``chainaudit/web/`` (an allow-list: no path is ever joined)."""

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    # the verifier calls a chain endpoint the user may choose, so any http(s) origin
    "connect-src 'self' http: https:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _asset(name: str) -> bytes:
    return resources.files("chainaudit").joinpath("web", name).read_bytes()


def _static(name: str) -> Response:
    return Response(_asset(name), media_type=STATIC[name], headers=_HEADERS)


@router.get("/", include_in_schema=False)
async def index() -> Response:
    """The web page."""
    return _static("index.html")


@router.get("/web/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    """The page's stylesheet and script."""
    if name not in STATIC:
        raise Problem(404, "not-found", f"no file {name!r}")
    return _static(name)


class ConfigOut(BaseModel):
    chain_id: int | None = Field(description="null while the chain endpoint does not answer")
    rpc_url: str | None = Field(
        description="the chain endpoint for browsers (JSON-RPC over HTTP): the "
        "`public_rpc_url` setting, else `rpc_url` when it carries no credential; else null"
    )
    anchor_contract: str | None = Field(description="the AuditAnchor address, EIP-55")
    version: str


_KEY_LIKE: Final = re.compile(r"[A-Za-z0-9_-]{16,}")
"""A path segment long and random enough to be an API key (``/v3/<key>``, ``/<token>``)."""


def publishable_rpc_url(public_rpc_url: str | None, rpc_url: str) -> str | None:
    """The chain endpoint ``/v1/config`` may show anyone: ``public_rpc_url`` when set (the
    operator said it is public), else ``rpc_url`` unless it may carry a credential — user
    info, a query string or fragment, or a key-like path segment — in which case ``None``."""
    if public_rpc_url:
        return public_rpc_url
    try:
        parts = urlsplit(rpc_url)
    except ValueError:
        return None
    if parts.username or parts.password or "@" in parts.netloc:
        return None
    if parts.query or parts.fragment:
        return None
    if any(_KEY_LIKE.fullmatch(segment) for segment in parts.path.split("/")):
        return None
    return rpc_url


def _anchor_contract(svc: Services) -> str | None:
    try:
        return svc.anchor_contract()
    except ChainauditError:
        return None


def _config(svc: Services) -> ConfigOut:
    try:
        chain_id: int | None = svc.chain_id()
    except ChainauditError:
        chain_id = None
    return ConfigOut(
        chain_id=chain_id,
        rpc_url=publishable_rpc_url(svc.settings.public_rpc_url, svc.settings.rpc_url),
        anchor_contract=_anchor_contract(svc),
        version=__version__,
    )


@router.get("/v1/config", response_model=ConfigOut)
async def config(svc: ServicesDep) -> ConfigOut:
    """Public: the chain id, the chain endpoint for browsers (never one carrying a
    credential) and the AuditAnchor address."""
    return await run_in_threadpool(_config, svc)


class MeOut(BaseModel):
    key_id: str
    name: str
    role: str
    address: str | None


@router.get("/v1/me", response_model=MeOut)
async def me(key: Principal) -> MeOut:
    """The calling key: its id, name, role and (for partners) its address."""
    return MeOut(key_id=key.key_id, name=key.name, role=key.role, address=key.address)
