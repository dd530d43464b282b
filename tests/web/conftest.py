"""The web page's fixtures: a real API server over a real log anchored on the session's Anvil,
a real proof bundle built from it, and Debian's Chromium driven by Playwright.

Nothing is installed here: Chromium comes from the ``chromium`` apt package and Playwright from
the dev dependencies (never ``playwright install``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, sync_playwright

from chainaudit.api.server import ServerThread
from chainaudit.app.deploy import deploy_contracts
from chainaudit.app.settings import Settings
from chainaudit.chain.chain import Chain
from chainaudit.chain.devnet import Devnet, free_port
from chainaudit.log.store import DB_NAME, Log
from chainaudit.service.anchoring import AnchorBook
from chainaudit.service.bundling import build_bundle
from chainaudit.service.keys import KeyStore

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
SCREENSHOTS_ENV = "CHAINAUDIT_SCREENSHOTS"
"""When set, browser tests save the page states they reach as PNGs in this directory
(``scripts/screenshots.py`` sets it to ``docs/screenshots``)."""

ROLES = ("admin", "operator", "auditor", "regulator")
BUNDLE_RECORD = "inv-2026-0007"
LATER_RECORD = "bol-2026-0002"


def sample_records(actor_of_invoices: str) -> list[dict[str, Any]]:
    """A small supply-chain history: purchase orders, invoices, an inspection, a match report."""
    records: list[dict[str, Any]] = []
    for n in range(1, 6):
        records.append(
            {
                "id": f"po-2026-{n:04d}",
                "kind": "transaction",
                "timestamp": f"2026-11-0{n}T09:30:00Z",
                "actor": "buyer:acme-retail",
                "payload": {"type": "purchase_order", "amount": 125_000 * n, "currency": "USD"},
            }
        )
    for n in range(5, 10):
        records.append(
            {
                "id": f"inv-2026-{n:04d}",
                "kind": "transaction",
                "timestamp": f"2026-11-1{n}T14:05:00Z",
                "actor": actor_of_invoices,
                "payload": {"type": "invoice", "po": f"po-2026-{n - 4:04d}", "amount": 99_000 + n},
            }
        )
    records.append(
        {
            "id": "insp-2026-0001",
            "kind": "document",
            "timestamp": "2026-11-20T08:00:00Z",
            "actor": "inspector:sgs",
            "payload": {
                "type": "inspection",
                "result": "passed",
                "lot": "L-7781",
                "note": "Ünïcode ✓",
            },
        }
    )
    records.append(
        {
            "id": "match-2026-0001",
            "kind": "document",  # decisions are the service's own (reserved) kind
            "timestamp": "2026-11-20T08:30:00Z",
            "actor": "erp:matching",
            "payload": {"rule": "invoice-matches-po", "outcome": "approve", "score": 12},
        }
    )
    return records


def later_records() -> list[dict[str, Any]]:
    """Bills of lading appended after the first anchor."""
    return [
        {
            "id": f"bol-2026-{n:04d}",
            "kind": "document",
            "timestamp": f"2026-11-21T0{n}:00:00Z",
            "actor": "logistics:maersk",
            "payload": {"type": "bill_of_lading", "container": f"MSKU{7_000_000 + n}"},
        }
        for n in range(1, 4)
    ]


@dataclass
class Site:
    """A served chainaudit with an anchored log and a bundle of one of its records."""

    url: str
    rpc_url: str
    chain_id: int
    contract: str
    settings: Settings
    tokens: dict[str, str]
    partner_address: str
    bundle: dict[str, Any]
    """The bundle of :data:`BUNDLE_RECORD` at the newest anchored checkpoint."""
    consistency_bundle: dict[str, Any]
    """The bundle of :data:`LATER_RECORD` with a consistency proof from the first checkpoint."""
    record_ids: list[str]

    def client(self, role: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def _wait_for_anchor(client: httpx.Client, size: int, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        latest = client.get("/v1/checkpoints/latest").json()
        anchor = latest["latest_anchor"]
        if anchor is not None and anchor["tree_size"] >= size:
            return dict(anchor)
        if time.monotonic() > deadline:
            raise AssertionError(f"no anchor of size {size} within {timeout}s: {latest}")
        time.sleep(0.1)


@pytest.fixture(scope="package")
def site(anvil: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    account = Account.from_key(anvil.accounts[0].private_key)
    contract = deploy_contracts(Chain(anvil.rpc_url), account)["AuditAnchor"].address
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("web") / "data",
        rpc_url=anvil.rpc_url,
        anchor_contract=contract,
        anchorer_key=anvil.accounts[0].private_key,
        max_batch_seconds=3600,
        max_batch_records=1_000_000,
    )
    settings.data_dir.mkdir(parents=True)
    store = KeyStore(settings.data_dir / DB_NAME, database_url=settings.log_database_url)
    tokens = {role: store.create(role, name=f"{role} (tests)")[1] for role in ROLES}
    partner = anvil.accounts[3].address
    tokens["partner"] = store.create("partner", name="Globex supplier", address=partner)[1]
    store.close()
    records = sample_records(partner)
    later = later_records()
    with ServerThread(settings, free_port()) as server:
        site = Site(
            url=server.url,
            rpc_url=anvil.rpc_url,
            chain_id=anvil.chain_id,
            contract=contract,
            settings=settings,
            tokens=tokens,
            partner_address=partner,
            bundle={},
            consistency_bundle={},
            record_ids=[r["id"] for r in records + later],
        )
        sizes = []
        with site.client("operator") as operator:
            for batch in (records, later):  # two anchors: the second extends the first
                appended = operator.post("/v1/records/batch", json={"records": batch})
                assert appended.status_code == 201, appended.text
                requested = operator.post("/v1/anchors")
                assert requested.status_code == 202, requested.text
                sizes.append(_wait_for_anchor(operator, requested.json()["tree_size"])["tree_size"])
        with Log.open(settings.data_dir, database_url=settings.log_database_url) as log:
            book = AnchorBook(log)
            site.bundle = build_bundle(log, book, BUNDLE_RECORD)
            site.consistency_bundle = build_bundle(log, book, LATER_RECORD, since_size=sizes[0])
            book.close()
        yield site


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's package with `apt-get install chromium`"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, site: Site) -> Iterator[Page]:
    """A fresh browser context (empty session storage) at 1280 px; fails the test on any
    uncaught script error or console error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=site.url)
    context.set_default_timeout(15_000)
    opened = context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # Chromium logs every non-2xx answer ("Failed to load resource"): a bad key's 401 and
        # an unreachable chain are expected in some tests and asserted on the page instead.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(message.text)

    def on_error(error: Error) -> None:
        problems.append(str(error))

    opened.on("console", on_console)
    opened.on("pageerror", on_error)
    yield opened
    context.close()
    assert problems == [], problems


def screenshot(page: Page, name: str) -> None:
    """Save the page as ``<name>.png`` when screenshots are asked for."""
    folder = os.environ.get(SCREENSHOTS_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)
