"""/docs and /redoc come from the package, offline, under a CSP (issue 14): real Chromium
loads them, every request stays on the API's origin, and the policy blocks nothing they need
(the page fixture fails the test on any console error, CSP violations included)."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Page, Request

from tests.web.conftest import Site


def _origins(page: Page) -> list[str]:
    seen: list[str] = []

    def on_request(request: Request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in ("http", "https"):  # not ReDoc's blob: worker
            seen.append(f"{parts.scheme}://{parts.netloc}")

    page.on("request", on_request)
    return seen


def test_swagger_ui_renders_from_this_origin_only(page: Page, site: Site) -> None:
    origins = _origins(page)
    answer = page.goto("/docs")
    assert answer is not None and answer.status == 200
    csp = answer.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self' 'sha256-" in csp
    page.locator(".opblock-summary-path", has_text="/v1/records/batch").first.wait_for()
    assert set(origins) == {site.url}, origins


def test_redoc_renders_from_this_origin_only(page: Page, site: Site) -> None:
    origins = _origins(page)
    answer = page.goto("/redoc")
    assert answer is not None and answer.status == 200
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    page.get_by_text("/v1/records/batch").first.wait_for(state="attached")
    assert set(origins) == {site.url}, origins


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_pages_name_no_other_host(site: Site, path: str) -> None:
    with httpx.Client(base_url=site.url) as http:
        html = http.get(path).text
        assert "http://" not in html and "https://" not in html, html
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
            served = http.get(f"/docs/assets/{asset}")
            assert served.status_code == 200 and len(served.content) > 100_000
        refused = http.get("/docs/assets/..%2F__init__.py")
        assert refused.status_code == 404
        assert refused.headers["content-type"] == "application/problem+json"
