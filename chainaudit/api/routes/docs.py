"""The API's documentation pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), served
offline from the package, under a Content Security Policy.

FastAPI's own pages load their JavaScript and CSS from a public CDN, with no Subresource
Integrity, on the origin where the web page keeps the API key: whoever serves those files
could read it. Here the assets come from the ``fastapi-offline`` package (Swagger UI and ReDoc
builds, pinned by the package version) and are served from this origin; the one inline script
Swagger UI needs is allowed by its SHA-256 hash, and nothing else may run or connect off the
origin.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib import resources
from typing import Final

from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from chainaudit.api.problems import Problem

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

ASSETS_PREFIX: Final = "/docs/assets/"
ASSETS: Final = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
"""The only files served from ``fastapi_offline/static`` (an allow-list: no path is joined)."""

_INLINE_SCRIPT: Final = re.compile(r"<script>(.*?)</script>", re.S)
_ASSET_HEADERS: Final = {"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=3600"}


def content_security_policy(html: str) -> str:
    """The policy for a documentation page: scripts from this origin plus the page's own
    inline scripts (by hash); styles inline (ReDoc injects its own), no other origin."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'none'; script-src 'self' {hashes}".rstrip()
        + "; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
        "connect-src 'self'; worker-src 'self' blob:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


def _page(html: str) -> HTMLResponse:
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": content_security_policy(html),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


@cache
def _swagger_html() -> str:
    page = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="chainaudit API",
        swagger_js_url=ASSETS_PREFIX + "swagger-ui-bundle.js",
        swagger_css_url=ASSETS_PREFIX + "swagger-ui.css",
        swagger_favicon_url=ASSETS_PREFIX + "favicon.png",
    )
    return bytes(page.body).decode("utf-8")


@cache
def _redoc_html() -> str:
    page = get_redoc_html(
        openapi_url="/openapi.json",
        title="chainaudit API",
        redoc_js_url=ASSETS_PREFIX + "redoc.standalone.js",
        redoc_favicon_url=ASSETS_PREFIX + "favicon.png",
        with_google_fonts=False,
    )
    return bytes(page.body).decode("utf-8")


_OFF_ORIGIN: Final = {
    # ReDoc's sidebar shows Redocly's logo from their CDN; an empty data: URL fails to load
    # quietly (ReDoc then hides the image), so the page makes no request off this origin.
    "redoc.standalone.js": [(b"https://cdn.redoc.ly/redoc/logo-mini.svg", b"data:,")],
}


@cache
def _asset(name: str) -> bytes:
    data = resources.files("fastapi_offline").joinpath("static", name).read_bytes()
    for old, new in _OFF_ORIGIN.get(name, []):
        data = data.replace(old, new)
    return data


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    """Swagger UI over ``/openapi.json``, from this origin only."""
    return _page(_swagger_html())


@router.get("/redoc")
async def redoc() -> HTMLResponse:
    """ReDoc over ``/openapi.json``, from this origin only."""
    return _page(_redoc_html())


@router.get(ASSETS_PREFIX + "{name}")
async def asset(name: str) -> Response:
    """Swagger UI's and ReDoc's script, stylesheet and icon, shipped in the package."""
    if name not in ASSETS:
        raise Problem(404, "not-found", f"no file {name!r}")
    return Response(_asset(name), media_type=ASSETS[name], headers=_ASSET_HEADERS)
