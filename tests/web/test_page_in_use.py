"""The page as auditors, partners and compliance officers use it, on the demo's own data.

One ``make demo`` (``scripts/demo.py`` in a directory of its own: its Anvil, its contracts, its
API server) serves the whole module, with the held payment its last step leaves open for the
compliance officer to work in the page (found through the API). Debian's Chromium drives the
page at 1280 and 390 px: no view is wider than the window, axe-core finds no serious or
critical violation, the buyer sees its purchase order and its money, an old record is found by
id and verified in the browser, the demo deal's timeline shows one entry per business action
with amounts and party names, and the held payment is cleared and released from hold with the
two officers the API requires.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from chainaudit.app.deploy import DEVNET_PARTIES
from chainaudit.chain.chain import Chain
from chainaudit.chain.devnet import derive_accounts
from chainaudit.chain.devnet import load_settings as devnet_settings
from chainaudit.chain.escrow import EscrowClient
from chainaudit.log.actions import cli_actor
from chainaudit.log.store import Log
from chainaudit.risk.incidents import open_incident, record_step
from chainaudit.service.reconcile import reconcile
from tests.demo_lock import demo_running
from tests.web.conftest import screenshot
from tests.web.test_page import wait_for_verdict

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = (1280, 390)
ERRORS: dict[int, list[str]] = {}
"""The uncaught script errors of each open page (a test fails on any)."""


@dataclass
class Demo:
    """The demo left running, with its keys, its parties' addresses and the held deal."""

    url: str
    keys: dict[str, str]
    addresses: dict[str, str]
    held_deal: int
    alert_id: str
    incident_id: str = ""
    reconcile_record: str = ""

    def client(self, who: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": self.keys[who]}, timeout=120)


def _run_demo(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), *args],
        env={**os.environ, "CHAINAUDIT_DEMO_DIR": str(work)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _the_demos_held_payment(demo: Demo) -> tuple[int, str]:
    """The payment ``make demo`` leaves held (its last step): the one open alert, and the
    deal and milestone of its hold, found through the API as the page finds them."""
    with demo.client("compliance") as officer:
        alerts = officer.get("/v1/alerts", params={"status": "open"})
    assert alerts.status_code == 200, alerts.text
    open_alerts = alerts.json()["items"]
    assert len(open_alerts) == 1, open_alerts
    alert = open_alerts[0]
    assert alert["rules"] == ["large-release"] and alert["outcome"] == "hold", alert
    return int(alert["deal_id"]), str(alert["alert_id"])


def _incident_and_reconciliation(work: Path, url: str) -> tuple[str, str]:
    """What the CLI's ``incident open``/``step`` and ``reconcile`` record, appended by the same
    functions (in this process: a CLI start costs seconds on a busy machine)."""
    deployed = json.loads(next((work / "deployments").glob("*.json")).read_text())["contracts"]
    rpc = httpx.get(f"{url}/v1/config", timeout=30).json()["rpc_url"]
    client = EscrowClient(Chain(rpc), deployed["SupplyChainEscrow"]["address"])
    with Log.open(work / "data") as log:
        actor = cli_actor()
        incident = open_incident(
            log, title="Escrow indexer lagged", actor=actor, note="40 blocks behind"
        )
        record_step(log, incident, "assessed", actor=actor, note="no payment affected")
        report = reconcile(log, client, anchor_contract=deployed["AuditAnchor"]["address"])
    assert report.record_id is not None
    return incident, report.record_id


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    work = tmp_path_factory.mktemp("page-demo") / "demo"
    with demo_running():  # the demo's fixed ports: one demo at a time across the workers
        yield from _demo_left_running(work)


def _demo_left_running(work: Path) -> Iterator[Demo]:
    try:
        ran = _run_demo(work)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        api = next(line.split()[-1] for line in ran.stdout.splitlines() if "API:" in line)
        accounts = derive_accounts(devnet_settings().mnemonic, 10)
        addresses = {name: accounts[i].address for name, i in DEVNET_PARTIES.items()}
        keys = json.loads((work / "keys.json").read_text())
        found = Demo(api.removesuffix("/docs"), keys, addresses, 0, "")
        found.held_deal, found.alert_id = _the_demos_held_payment(found)
        found.incident_id, found.reconcile_record = _incident_and_reconciliation(work, found.url)
        yield found
    finally:
        _run_demo(work, "--stop")


def _open(browser: Browser, demo: Demo, width: int) -> Page:
    context = browser.new_context(viewport={"width": width, "height": 900}, base_url=demo.url)
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors = ERRORS.setdefault(id(page), [])
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    return page


def _sign_in(page: Page, demo: Demo, who: str) -> None:
    if page.locator("#session").is_visible():
        page.click("#sign-out")
    page.goto("/#overview")
    page.fill("#api-key", demo.keys[who])
    page.click("#sign-in")
    expect(page.locator("#session")).to_be_visible()


def _close(page: Page) -> None:
    errors = ERRORS.pop(id(page), [])
    page.context.close()
    assert errors == [], errors


def _axe_violations(page: Page) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations of the page as it is now (axe is evaluated
    through the DevTools protocol: the page's own CSP stays as it is)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    result = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))"
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]


# Who looks, at which view, what it shows once loaded (the check waits for it before
# measuring), and the name of its picture in docs/screenshots (scripts/screenshots.py).
VIEWS: list[tuple[str, str, str, str | None]] = [
    ("auditor", "#overview", "#records-table tbody tr", None),
    ("auditor", "#records", "#list-table tbody tr", "records"),
    ("auditor", "#records/PO-1001", "#record-detail:not([hidden]) .status", "record"),
    # the demo's longest ids: an escrow event's (escrow:31337:<64 hex>:…), filled in below
    ("auditor", "#records/{escrow_event}", "#record-detail:not([hidden]) .status", None),
    ("auditor", "#deals/1", "#timeline .timeline-entry", "deal-story"),
    ("compliance", "#compliance", "#alerts .card", "compliance"),
    ("auditor", "#verify", "#view-verify .legend", None),
    ("buyer", "#overview", "#my-deals-table tbody tr", "buyer-overview"),
    ("buyer", "#deals/1", "#timeline .timeline-entry", None),
    ("supplier", "#records", "#list-table tbody tr", None),
]


@pytest.mark.parametrize("width", WIDTHS)
def test_every_view_fits_the_window_and_passes_axe(
    browser: Browser, demo: Demo, width: int
) -> None:
    with demo.client("auditor") as auditor:
        first_event = auditor.get("/v1/records", params={"kind": "escrow_event", "limit": 1})
    escrow_event = first_event.json()["items"][0]["record_id"]
    page = _open(browser, demo, width)
    measured: dict[str, int] = {}
    problems: dict[str, list[dict[str, Any]]] = {}
    tables: dict[str, list[int]] = {}  # the table wraps scrolling sideways, by their excess

    def measure(name: str) -> None:
        measured[name] = page.evaluate("document.documentElement.scrollWidth")
        problems[name] = _axe_violations(page)
        tables[name] = page.eval_on_selector_all(
            ".table-wrap",
            "wraps => wraps.map(w => w.scrollWidth - w.clientWidth).filter(d => d > 0)",
        )

    try:
        expect(page.locator("#view-signin")).to_be_visible()
        measured["signin"] = page.evaluate("document.documentElement.scrollWidth")
        problems["signin"] = _axe_violations(page)
        who_now = None
        for who, pattern, ready, shot in VIEWS:
            if who != who_now:
                _sign_in(page, demo, who)
                who_now = who
            view = pattern.format(escrow_event=escrow_event)
            page.goto(f"/{view}")
            expect(
                page.locator(f'#view-{view[1:].split("/")[0]}[data-loaded="true"]')
            ).to_be_visible()
            expect(page.locator(ready).first).to_be_visible()
            measure(f"{who} {view}")
            if shot:
                screenshot(page, f"{shot}-{width}")
        _sign_in(page, demo, "auditor")
        page.goto(f"/#records/{escrow_event}")  # a verdict shown for the longest id
        expect(page.locator("#record-detail:not([hidden]) .status").first).to_be_visible()
        page.click("#record-verify")
        wait_for_verdict(page)
        measure("auditor #verify with a verdict")
        page.goto("/#deals/1")  # the timeline with every entry's raw records shown
        expect(page.locator('#view-deals[data-loaded="true"]')).to_be_visible()
        expect(page.locator("#timeline > .timeline-entry").first).to_be_visible()
        page.eval_on_selector_all("#timeline details.raw", "all => all.forEach(d => d.open = true)")
        expect(page.locator("#timeline .raw-entry").first).to_be_visible()
        expect(page.locator("#timeline .raw-entry").last).to_be_visible()
        measure("auditor #deals/1 with its raw records")
    finally:
        _close(page)
    too_wide = {name: w for name, w in measured.items() if w > width}
    assert too_wide == {}, f"wider than {width} px: {too_wide}"
    if width == 1280:  # no table needs a sideways scroll on a desktop
        scrolled = {name: d for name, d in tables.items() if d}
        assert scrolled == {}, f"tables scrolling sideways: {scrolled}"
    found = {name: v for name, v in problems.items() if v}
    assert found == {}, json.dumps(found, indent=1)


def test_the_buyers_overview_shows_its_purchase_order_and_its_money(
    browser: Browser, demo: Demo
) -> None:
    page = _open(browser, demo, 1280)
    try:
        _sign_in(page, demo, "buyer")
        expect(page.locator('#records-table tr[data-record-id="PO-1001"]')).to_have_count(1)
        expect(page.locator("#records-title")).to_have_text("Your records")
        second = page.locator('#my-deals-table tr[data-deal-id="2"]')
        expect(second).to_contain_text("buyer")
        expect(second.locator('td[data-label="To fund"]')).to_have_text("9,876.54")
        first = page.locator('#my-deals-table tr[data-deal-id="1"]')
        expect(first).to_contain_text("1: released · 2: released")
        expect(first.locator('td[data-label="Released"]')).to_have_text("99,749.75")
        held = page.locator(f'#my-deals-table tr[data-deal-id="{demo.held_deal}"]')
        expect(held.locator('td[data-label="In escrow"]')).to_have_text("75,000.00")
        expect(held.locator('td[data-label="On hold"]')).to_have_text("75,000.00")
        # the supplier of the held deal sees the money owed to it, on hold
        _sign_in(page, demo, "supplier")
        held = page.locator(f'#my-deals-table tr[data-deal-id="{demo.held_deal}"]')
        expect(held.locator('td[data-label="In escrow"]')).to_have_text("75,000.00")
        expect(held.locator('td[data-label="On hold"]')).to_have_text("75,000.00")
        paid = page.locator('#my-deals-table tr[data-deal-id="1"] td[data-label="Released"]')
        expect(paid).to_have_text("38,412.50")  # milestone 2 was paid to the financier
    finally:
        _close(page)


def test_search_finds_an_old_record_and_the_browser_verifies_it(
    browser: Browser, demo: Demo
) -> None:
    with demo.client("auditor") as auditor:
        first_event = auditor.get("/v1/records", params={"kind": "escrow_event", "limit": 1})
    event_id = first_event.json()["items"][0]["record_id"]
    page = _open(browser, demo, 390)
    try:
        _sign_in(page, demo, "auditor")
        page.goto("/#records")
        page.fill("#search-id", event_id)  # the demo's longest ids, exactly
        page.click("#search-button")
        detail = page.locator("#record-detail")
        expect(detail).to_be_visible()
        shown = detail.locator(f'[data-full="{event_id}"]').first
        expect(shown).to_have_attribute("title", event_id)  # the full id on hover
        expect(shown.locator('[aria-hidden="true"]')).to_contain_text("…")  # cut in the middle
        assert len(shown.locator('[aria-hidden="true"]').inner_text()) < len(event_id) / 2
        page.fill("#search-id", "PO-1001")  # the purchase order, long before the anchor
        page.click("#search-button")
        expect(page.locator("#record-json")).to_contain_text('"po": "PO-1001"')
        expect(detail.locator(".status").first).to_have_text("final")
        with page.expect_download() as download:
            page.click("#record-download")
        saved = download.value
        assert saved.suggested_filename == "PO-1001.bundle.json"
        bundle = json.loads(Path(saved.path()).read_text())
        assert (bundle["version"], bundle["record"]["id"]) == (1, "PO-1001")
        page.click("#record-verify")
        expect(page.locator("#view-verify")).to_be_visible()
        assert set(wait_for_verdict(page).values()) == {"pass"}
        assert json.loads(page.locator("#bundle-input").input_value())["record"]["id"] == "PO-1001"

        page.goto("/#records")  # the list: filtered by kind, paged with the API's cursor
        page.select_option("#filter-kind", "document")
        page.click("#filter-form button[type=submit]")
        expect(page.locator('#list-table tr[data-record-id="CERT-SGS-4411"]')).to_have_count(1)
        expect(page.locator("#list-table tbody tr .kind").first).to_have_text("document")
        page.select_option("#filter-kind", "")
        page.click("#filter-form button[type=submit]")
        expect(page.locator("#list-table tbody tr")).to_have_count(50)
        last = page.locator("#list-table tbody tr").last.get_attribute("data-record-id")
        page.click("#page-next")
        expect(page.locator(f'#list-table tr[data-record-id="{last}"]')).to_have_count(0)
        expect(page.locator("#page-note")).to_contain_text("leaves 50")

        page.fill("#search-id", "1")  # no such record: the deal of that id
        page.click("#search-button")
        expect(page.locator("#view-deals")).to_be_visible()
        expect(page.locator("#trace-title")).to_have_text("Deal 1")
    finally:
        _close(page)


def test_the_demo_deal_tells_one_entry_per_action_with_amounts_and_names(
    browser: Browser, demo: Demo
) -> None:
    with demo.client("auditor") as auditor:
        raw = auditor.get("/v1/deals/1/trace").json()["entries"]
    page = _open(browser, demo, 390)
    try:
        _sign_in(page, demo, "auditor")
        page.goto("/#deals/1")
        entries = page.locator("#timeline > .timeline-entry")
        expect(entries.first).to_be_visible()
        count = entries.count()
        assert count < len(raw) / 2, (count, len(raw))  # one entry per action, not per record
        grouped = sum(int(e.get_attribute("data-records") or 0) for e in entries.all())
        assert grouped == len(raw)  # every raw record is inside one entry
        titles = [t.strip() for t in entries.locator(".timeline-title strong").all_inner_texts()]
        assert titles.count("Funded · milestone 1") == 1, titles
        assert not any(n in t for t in titles for n in ("deal.", "DealCreated", "create"))
        funded = entries.filter(has_text="Funded · milestone 1")
        expect(funded.locator(".amount")).to_have_text("38,412.50")
        expect(funded).to_contain_text("Megacorp (buyer)")
        paid = entries.filter(has_text="Released · milestone 2").last
        expect(paid.locator(".amount")).to_have_text("61,337.25")
        expect(paid).to_contain_text("to First Factor Bank (financier)")
        expect(page.locator("#deal-summary")).to_contain_text("Milestone 2: released")
        expect(page.locator("#deal-summary")).to_contain_text(
            "financed by First Factor Bank (financier)"
        )
        # expandable to the raw records; one column on a phone
        funded.locator("summary").click()
        expect(funded.locator(".raw-entry")).to_have_count(
            int(funded.get_attribute("data-records") or 0)
        )
        expect(funded.locator(".raw-entry").filter(has_text="MilestoneFunded")).to_have_count(1)
        columns = funded.evaluate("e => getComputedStyle(e).gridTemplateColumns")
        assert len(columns.split()) == 1, columns
    finally:
        _close(page)


def test_compliance_officers_work_the_held_payment_with_maker_checker(
    browser: Browser, demo: Demo
) -> None:
    alert = f'#alerts [data-alert-id="{demo.alert_id}"]'
    hold = f'#holds [data-hold="{demo.held_deal}:0"]'
    page = _open(browser, demo, 1280)
    try:
        _sign_in(page, demo, "compliance")
        page.goto("/#compliance")
        expect(page.locator(alert)).to_contain_text("large-release")
        expect(page.locator(alert)).to_contain_text("amount 75,000.00 is above the threshold")
        expect(page.locator(hold)).to_contain_text("75,000.00 on hold")
        expect(page.locator(hold)).to_contain_text("Expires")
        page.locator(alert).get_by_role("button", name="Replay the decision").click()
        expect(page.locator(f'{alert} [data-replay="{demo.alert_id}"]')).to_contain_text(
            "Replay matches: recorded hold, replayed hold"
        )
        page.locator(alert).get_by_role("button", name="Acknowledge").click()
        expect(page.locator(alert)).to_contain_text("acknowledged")

        _sign_in(page, demo, "operator")  # the maker asks to clear the alert
        page.goto("/#compliance")
        page.locator(alert).get_by_role("button", name="Clear (second officer approves)").click()
        expect(page.locator("#compliance-message")).to_contain_text("a second officer")
        asked = page.locator("#approvals [data-approval-id]")
        expect(asked).to_have_count(1)
        expect(asked).to_contain_text("alert.clear")
        # the officer who asked may not decide it: neither button is offered to it
        expect(asked).to_contain_text("you asked: a different officer must approve")
        expect(asked.get_by_role("button", name="Approve")).to_have_count(0)
        expect(asked.get_by_role("button", name="Reject")).to_have_count(0)

        _sign_in(page, demo, "compliance")  # the checker approves
        page.goto("/#compliance")
        expect(page.locator("#approvals [data-approval-id]")).not_to_contain_text("you asked")
        page.locator("#approvals [data-approval-id]").get_by_role("button", name="Approve").click()
        expect(page.locator("#compliance-message")).to_contain_text("executed")
        expect(page.locator(alert)).to_have_count(0)  # resolved

        _sign_in(page, demo, "operator")  # lifting the hold frees money: maker ...
        page.goto("/#compliance")
        page.locator(hold).get_by_role("button", name="Ask to lift the hold").click()
        expect(page.locator("#approvals [data-approval-id]")).to_contain_text("hold.lift")
        _sign_in(page, demo, "compliance")  # ... and checker, with its own on-chain account
        page.goto("/#compliance")
        page.locator("#approvals [data-approval-id]").get_by_role("button", name="Approve").click()
        expect(page.locator("#compliance-message")).to_contain_text("executed")
        expect(page.locator(hold)).to_have_count(0)
        expect(page.locator("#holds-empty")).to_be_visible()

        _sign_in(page, demo, "supplier")  # the money owed to it, no longer on hold ...
        row = page.locator(f'#my-deals-table tr[data-deal-id="{demo.held_deal}"]')
        expect(row.locator('td[data-label="On hold"]')).to_have_text("0.00")
        expect(row.locator('td[data-label="In escrow"]')).to_have_text("75,000.00")
        with demo.client("supplier") as supplier:
            released = supplier.post(f"/v1/deals/{demo.held_deal}/milestones/0/release")
        assert released.status_code == 200, released.text  # the payment goes through now
        page.click("#refresh")  # ... and, once released, Refresh shows the money moved
        expect(row.locator('td[data-label="In escrow"]')).to_have_text("0.00")
        expect(row.locator('td[data-label="Released"]')).to_have_text("75,000.00")
    finally:
        _close(page)


@pytest.mark.parametrize("reader", ["auditor", "regulator"])
def test_incidents_and_the_latest_reconciliation_are_shown(
    browser: Browser, demo: Demo, reader: str
) -> None:
    page = _open(browser, demo, 390)
    try:
        _sign_in(page, demo, reader)
        page.goto("/#compliance")
        incident = page.locator(f'#incidents [data-incident="{demo.incident_id}"]')
        expect(incident).to_contain_text("Escrow indexer lagged")
        expect(incident.locator(".steps li")).to_have_count(2)
        expect(incident.locator(".steps li").nth(1)).to_contain_text("assessed")
        expect(incident).to_contain_text("open")
        report = page.locator(f'#reconcile [data-reconcile="{demo.reconcile_record}"]')
        expect(report).to_contain_text("At block")
        expect(report).to_contain_text("deals")  # what was checked, with its counts
        # auditors and regulators read; only officers act
        expect(page.locator("#view-compliance button:not(#compliance-refresh)")).to_have_count(
            page.locator("#view-compliance button", has_text="Replay the decision").count()
        )
    finally:
        _close(page)


def test_the_legend_explains_the_badges_and_pinning_is_remembered(
    browser: Browser, demo: Demo
) -> None:
    page = _open(browser, demo, 1280)
    try:
        page.goto("/#verify")
        legend = page.locator("#view-verify .legend")
        for badge in ("pending", "anchored", "confirmed", "final"):
            expect(legend.locator(f".status-{badge}")).to_have_text(badge)
        warning = page.locator("#view-verify .trust [data-pin-warning]")
        expect(warning).to_be_visible()
        expect(legend).to_contain_text("chain 31337")
        page.click("#pin-trust")
        expect(warning).to_be_hidden()
        expect(page.locator("#pin-ok")).to_contain_text("Pinned in this browser: chain 31337")
        page.reload()
        expect(page.locator("#view-verify .trust [data-pin-warning]")).to_be_hidden()
        page.click("#unpin-trust")
        expect(page.locator("#view-verify .trust [data-pin-warning]")).to_be_visible()
    finally:
        _close(page)
