"""Work per request is bounded and off the event loop (issue 14): record lists read the
record index, never the whole log; a partner's deal list reads only its own deals from the
chain; a per-key work budget refuses over-expensive requests with 429."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from web3 import Web3

from chainaudit.api.budget import DEAL_READ, WorkBudget
from chainaudit.api.server import ServerThread
from chainaudit.api.services import Services
from chainaudit.app.deploy import DEVNET_PARTIES, deploy_contracts
from chainaudit.app.settings import Settings
from chainaudit.chain.chain import Chain
from chainaudit.chain.devnet import Devnet, derive_accounts, free_port
from chainaudit.chain.escrow import DealParams, EscrowClient, MilestoneParams
from chainaudit.core import provenance
from chainaudit.core.records import parse_timestamp, prepare
from chainaudit.log.store import Log
from tests.api.conftest import issue_keys, key_store, make_settings, open_log
from tests.escrow_world import now, rpc

NOISE = 50_000
"""Records of other parties in the log before the partner's own."""
DAY = 86_400


@dataclass
class Served:
    url: str
    tokens: dict[str, str]
    partner: str
    services: Services

    def client(self, role: str) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def key_id(self, role: str) -> str:
        return self.tokens[role].split("_")[1]


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory, anvil: Devnet) -> Iterator[Served]:
    """A server over a log of 50,000 records of other parties, then three of the partner's
    and one decision at the very end."""
    tmp = tmp_path_factory.mktemp("bounded")
    settings = make_settings(tmp, anvil, rate_limit_per_second=1000, rate_limit_burst=1000)
    tokens, partner, _ = issue_keys(settings, anvil)
    with open_log(settings) as log:
        noise = [
            prepare(
                {
                    "id": f"noise-{i}",
                    "kind": "transaction",
                    "timestamp": f"2026-11-{1 + i % 28:02d}T09:30:00Z",
                    "actor": f"supplier:{i % 7}",
                    "payload": {"amount": i},
                },
                salt="0" * 32,
                submitter=provenance.local_submitter("loader"),
            )
            for i in range(NOISE)
        ]
        log.append(noise)
        own = [
            prepare(
                {
                    "id": f"own-{i}",
                    "kind": "document",
                    "timestamp": "2026-12-01T09:30:00Z",
                    "actor": partner,
                    "payload": {"n": i},
                },
                submitter=provenance.local_submitter("loader"),
            )
            for i in range(3)
        ]
        log.append(own)
    with ServerThread(settings, free_port()) as server:
        yield Served(server.url, tokens, partner, server.app.state.services)


def test_a_partners_list_examines_only_the_records_it_might_see(big_log: Served) -> None:
    """Before the record index, the partner's first page examined 20,000 records, found
    nothing and pointed at leaf 20,000 (three pages to reach its own records)."""
    served = big_log
    spent = served.services.budget.spent(served.key_id("partner"))
    with served.client("partner") as partner:
        began = time.monotonic()
        page = partner.get("/v1/records", params={"limit": 10})
        took = time.monotonic() - began
        assert page.status_code == 200, page.text
        body = page.json()
        assert [r["record_id"] for r in body["items"]] == ["own-0", "own-1", "own-2"]
        assert body["next_cursor"] is None
        # only its three records were examined, not the 50,000 before them
        assert served.services.budget.spent(served.key_id("partner")) - spent == 3
        assert took < 2.0, f"one page took {took:.2f} s"
        # an empty page (a kind it has none of) examines nothing at all
        empty = partner.get("/v1/records", params={"kind": "transaction"}).json()
        assert empty == {"items": [], "next_cursor": None}
        assert served.services.budget.spent(served.key_id("partner")) - spent == 3


def test_filters_read_the_index(big_log: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before the record index, each filtered page decoded every record bundle of the log
    up to its matches (all 391 here)."""
    served = big_log
    spent = served.services.budget.spent(served.key_id("auditor"))
    decoded: list[int] = []
    decode = Log._decode_bundle

    def counted(self: Log, key: int, blob: object) -> Any:
        decoded.append(key)
        return decode(self, key, blob)

    monkeypatch.setattr(Log, "_decode_bundle", counted)
    with served.client("auditor") as auditor:
        found = auditor.get(
            "/v1/records",
            params={"kind": "document", "since": "2026-11-30T00:00:00Z", "limit": 2},
        ).json()
        assert [r["record_id"] for r in found["items"]] == ["own-0", "own-1"]
        rest = auditor.get(
            "/v1/records",
            params={"kind": "document", "cursor": found["next_cursor"], "limit": 2},
        ).json()
        assert [r["record_id"] for r in rest["items"]] == ["own-2"]
        assert rest["next_cursor"] is None
        by_actor = auditor.get(
            "/v1/records", params={"actor": "supplier:3", "until": "2026-11-05T00:00:00Z"}
        ).json()
        assert {r["actor"] for r in by_actor["items"]} == {"supplier:3"}
        until = parse_timestamp("2026-11-05T00:00:00Z")
        assert all(r["timestamp_ms"] < until for r in by_actor["items"])
    # 3 + 1 + at most 101: the matching rows only, never a scan of the 50,000
    assert served.services.budget.spent(served.key_id("auditor")) - spent <= 105
    # the bundles holding the 105 matches (about 22), not all 391 of the log
    assert len(decoded) <= 40, f"{len(decoded)} record bundles decoded"
    with served.client("auditor") as auditor:
        metrics = auditor.get("/metrics").text
    lag = next(line for line in metrics.splitlines() if line.startswith("chainaudit_record_index"))
    assert float(lag.split()[1]) < 100  # the whole log is indexed (read-audit records aside)


def test_healthz_stays_responsive_while_clients_list_records(big_log: Served) -> None:
    served = big_log
    stop = threading.Event()
    failures: list[str] = []

    def loop(role: str, params: dict[str, Any]) -> None:
        with served.client(role) as client:
            while not stop.is_set():
                response = client.get("/v1/records", params=params)
                if response.status_code != 200:
                    failures.append(response.text)
                    return

    looping = [
        threading.Thread(target=loop, args=("partner", {"limit": 1000})),
        threading.Thread(target=loop, args=("other_partner", {"limit": 1000})),
    ]
    for thread in looping:
        thread.start()
    latencies: list[float] = []
    try:
        with httpx.Client(base_url=served.url, timeout=30) as client:
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                began = time.monotonic()
                assert client.get("/healthz").status_code == 200
                latencies.append(time.monotonic() - began)
                time.sleep(0.05)
    finally:
        stop.set()
        for thread in looping:
            thread.join(timeout=30)
    assert not failures, failures[0]
    assert statistics.median(latencies) < 0.25, latencies
    assert max(latencies) < 2.0, latencies


def test_healthz_answers_while_the_thread_pool_is_full(big_log: Served) -> None:
    """Every worker thread of the pool (40) waits in a record list; ``/healthz`` needs none."""
    served = big_log
    lock = served.services.record_index._lock
    statuses: list[int] = []

    def wait_in_a_list() -> None:
        with served.client("operator") as operator:
            statuses.append(operator.get("/v1/records", params={"kind": "document"}).status_code)

    waiting = [threading.Thread(target=wait_in_a_list) for _ in range(48)]
    lock.acquire()
    try:
        for thread in waiting:
            thread.start()
        time.sleep(1.0)  # every list is in the pool, waiting for the index
        with httpx.Client(base_url=served.url, timeout=10) as client:
            began = time.monotonic()
            assert client.get("/healthz").status_code == 200
            took = time.monotonic() - began
    finally:
        lock.release()
        for thread in waiting:
            thread.join(timeout=60)
    assert took < 1.0, f"/healthz took {took:.2f} s"
    assert statuses == [200] * len(waiting)


def test_the_work_budget_refuses_with_429(big_log: Served) -> None:
    served = big_log
    budget = served.services.budget
    served.services.budget = WorkBudget(60)  # a unit a second
    try:
        with served.client("operator") as operator:
            first = operator.get("/v1/records", params={"limit": 100})
            assert first.status_code == 200, first.text  # may overspend once: charged after
            refused = operator.get("/v1/records", params={"limit": 1})
            assert refused.status_code == 429, refused.text
            assert refused.headers["content-type"].startswith("application/problem+json")
            problem = refused.json()
            assert problem["type"].endswith("/work-budget") and problem["status"] == 429
            assert "narrow" in problem["detail"]
            assert 30 <= int(refused.headers["Retry-After"]) <= 60
        with served.client("auditor") as auditor:  # another key's budget is its own
            assert auditor.get("/v1/records", params={"limit": 1}).status_code == 200
        served.services.budget = WorkBudget(1_200)  # 20 units a second
        with served.client("regulator") as regulator:
            assert regulator.get("/v1/records", params={"limit": 500}).status_code == 200
            # a page the rest cannot pay for is refused before it runs; a cheaper one is not
            expensive = regulator.get("/v1/records", params={"limit": 1000})
            assert expensive.status_code == 429, expensive.status_code
            assert "about 1001 units" in expensive.json()["detail"]
            assert regulator.get("/v1/records", params={"limit": 10}).status_code == 200
    finally:
        served.services.budget = budget


# -- deals --------------------------------------------------------------------------------------


@dataclass
class Vault:
    url: str
    tokens: dict[str, str]
    services: Services
    client: EscrowClient
    token: str
    inspector: str
    partner: str
    arbiter: str
    """An arbiter the vault's registrar accredited (deals may name only accredited ones)."""

    def api(self, role: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": self.tokens[role]}, timeout=60)


@pytest.fixture
def vault(tmp_path: Path, anvil: Devnet) -> Iterator[Vault]:
    accounts = derive_accounts(anvil.settings.mnemonic, 10)
    operator = Account.from_key(accounts[0].private_key)
    chain = Chain(anvil.rpc_url)
    deployed = deploy_contracts(chain, operator, directory=tmp_path / "deployments", escrow=True)
    client = EscrowClient(chain, deployed["SupplyChainEscrow"].address)
    inspector = Account.from_key(accounts[DEVNET_PARTIES["inspector"]].private_key)
    if client.inspector_id(inspector.address) == 0:
        client.register_inspector(operator, inspector.address)
    arbiter = Account.create().address
    client.set_arbiter_accredited(operator, arbiter)
    settings = Settings(
        data_dir=tmp_path / "data",
        rpc_url=anvil.rpc_url,
        deployments_dir=tmp_path / "deployments",
        max_batch_seconds=3600,
        max_batch_records=1_000_000,
        rate_limit_per_second=1000,
        rate_limit_burst=1000,
    )
    settings.data_dir.mkdir(parents=True)
    store = key_store(settings)
    partner = Account.create().address
    tokens = {
        "partner": store.create("partner", name="supplier", address=partner)[1],
        "auditor": store.create("auditor", name="auditor")[1],
    }
    store.close()
    with ServerThread(settings, free_port()) as server:
        yield Vault(
            server.url,
            tokens,
            server.app.state.services,
            client,
            deployed["MockStablecoin"].address,
            inspector.address,
            partner,
            arbiter,
        )


def _open(vault: Vault, supplier: str, milestones: int) -> int:
    """A deal opened straight on chain by a fresh buyer (no funds needed)."""
    w3 = vault.client.chain.w3
    buyer = Account.create()
    rpc(w3, "anvil_setBalance", buyer.address, hex(10**20))
    start = now(w3)
    params = DealParams(
        supplier=supplier,
        arbiter=vault.arbiter,
        token=vault.token,
        inspectors=[vault.inspector],
        inspector_threshold=1,
        inspection_window=7 * DAY,
        dispute_timeout=14 * DAY,
        default_payee_bps=5000,
        long_stop=start + 400 * DAY,
    )
    terms = [
        MilestoneParams(
            amount=1 + i,
            due_date=start + (i + 1) * 10 * DAY,
            document_hash=Web3.keccak(text=f"empty {i}"),
        )
        for i in range(milestones)
    ]
    deal_id = vault.client.create_deal(buyer, params, terms).deal_id
    assert deal_id is not None
    return int(deal_id)


def test_outsiders_deals_neither_appear_in_nor_slow_a_partners_deal_list(vault: Vault) -> None:
    """Before the party index, a partner's list read every deal on chain (100 outsiders'
    16-milestone deals: ~50 s a request)."""
    mine = _open(vault, vault.partner, 2)
    outsiders = [_open(vault, Account.create().address, 16) for _ in range(100)]
    svc = vault.services
    escrow = svc.escrow
    assert escrow is not None
    read: list[int] = []
    deal = escrow.deal

    def counted(deal_id: int, **kwargs: Any) -> Any:
        read.append(deal_id)
        return deal(deal_id, **kwargs)

    escrow.deal = counted  # type: ignore[method-assign]
    with vault.api("partner") as partner:
        deadline = time.monotonic() + 60
        while True:  # the deal is listed once the indexer recorded its DealCreated event
            listed = partner.get("/v1/deals")
            assert listed.status_code == 200, listed.text
            if listed.json() or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert [d["deal_id"] for d in listed.json()] == [mine]
        read.clear()
        began = time.monotonic()
        again = partner.get("/v1/deals")
        took = time.monotonic() - began
    assert [d["deal_id"] for d in again.json()] == [mine]
    assert read == [mine], "the partner's list read deals it is no party of"
    assert took < 5.0, f"the partner's list took {took:.1f} s"
    with vault.api("auditor") as auditor:  # an officer's list pages, reading one page only
        read.clear()
        page = auditor.get("/v1/deals", params={"limit": 5})
        assert [d["deal_id"] for d in page.json()] == outsiders[-1:-6:-1]
        assert read == outsiders[-1:-6:-1]
        assert f"before={outsiders[-5]}" in page.headers["Link"]
        older = auditor.get("/v1/deals", params={"limit": 5, "before": outsiders[-5]})
        assert [d["deal_id"] for d in older.json()] == outsiders[-6:-11:-1]
        # a trace costs its deal read and one unit per record of the deal
        key_id = vault.tokens["auditor"].split("_")[1]
        spent = svc.budget.spent(key_id)
        timeline = auditor.get(f"/v1/deals/{mine}/trace")
        assert timeline.status_code == 200, timeline.text
        entries = timeline.json()["entries"]
        assert entries and svc.budget.spent(key_id) - spent == DEAL_READ + len(entries)
