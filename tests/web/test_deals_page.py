"""The deals view in Chromium against a real service with a real deal: the deal list with its
state in token units, and the deal's audited timeline with each entry's proof status."""

from __future__ import annotations

from playwright.sync_api import Browser, expect

from tests.api.test_deals_api import DealsApi, _act, _create, deals_api  # noqa: F401 - fixture


def test_deal_list_and_timeline(browser: Browser, deals_api: DealsApi) -> None:  # noqa: F811
    api = deals_api
    deal_id = _create(api)["deal"]["deal_id"]
    assert _act(api, "buyer", deal_id, 0, "fund").status_code == 200
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=api.url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto("/")
        page.fill("#api-key", api.tokens["auditor"])
        page.click("#sign-in")
        expect(page.locator("#session-role")).to_have_text("auditor")
        page.goto("/#deals")
        row = page.locator("#deals-table tbody tr").first
        expect(row).to_contain_text(str(deal_id))
        expect(row).to_contain_text("1: funded · 2: open")
        expect(row).to_contain_text("12,345.67")  # minor units shown as mUSDC
        page.fill("#trace-id", str(deal_id))
        page.locator("#trace-form button").click()
        trace = page.locator("#trace")
        expect(trace).to_be_visible()
        expect(trace.locator(".timeline-title").first).to_contain_text("Deal opened")
        expect(trace).to_contain_text("Funded · milestone 1")
        expect(trace).to_contain_text("12,345.67")
        expect(trace).to_contain_text("pending")  # nothing is anchored yet
    finally:
        context.close()
    assert errors == []
