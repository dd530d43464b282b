"""Deals over HTTP on a real Anvil: creation, every party acting in its role (signed with the
devnet keys the development service holds), refusals, holds, and the audited timeline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from web3 import Web3

from chainaudit.api.server import ServerThread
from chainaudit.app.deploy import DEVNET_PARTIES, deploy_contracts
from chainaudit.app.settings import Settings
from chainaudit.chain.chain import Chain, sign_call
from chainaudit.chain.devnet import Devnet, derive_accounts, free_port
from chainaudit.chain.escrow import EscrowClient
from chainaudit.chain.escrow_deploy import mint
from tests.api.conftest import key_store
from tests.escrow_world import now, snapshot, travel

DAY = 86400
AMOUNT = 12_345_670_000  # 12,345.67 mUSDC: neither large nor round, so no risk rule fires


@dataclass
class DealsApi:
    url: str
    addresses: dict[str, str]
    tokens: dict[str, str]
    devnet: Devnet
    escrow: str

    def client(self, who: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": self.tokens[who]}, timeout=60)


@pytest.fixture
def deals_api(tmp_path: Path, anvil: Devnet) -> Iterator[DealsApi]:
    with open_deals_api(tmp_path, anvil) as api:
        yield api


@contextmanager
def open_deals_api(tmp_path: Path, anvil: Devnet, *, gate: bool = False) -> Iterator[DealsApi]:
    """A development API server over a fresh vault (with its EscrowGate, signed for by the
    devnet's account 0 as the development service does, when ``gate``)."""
    devnet = anvil
    accounts = derive_accounts(devnet.settings.mnemonic, 10)
    operator = Account.from_key(accounts[0].private_key)
    chain = Chain(devnet.rpc_url)
    officer = accounts[DEVNET_PARTIES["compliance"]].address
    deployed = deploy_contracts(
        chain,
        operator,
        directory=tmp_path / "deployments",
        escrow=True,
        compliance_officers=(officer,),
        arbiters=(accounts[DEVNET_PARTIES["arbiter"]].address,),
        clearance_signer=operator.address if gate else None,
    )
    client = EscrowClient(chain, deployed["SupplyChainEscrow"].address)
    inspector = Account.from_key(accounts[DEVNET_PARTIES["inspector"]].private_key)
    if client.inspector_id(inspector.address) == 0:
        client.register_inspector(operator, inspector.address)
    addresses = {name: accounts[i].address for name, i in DEVNET_PARTIES.items()}
    mint(chain, operator, deployed["MockStablecoin"].address, addresses["buyer"], 10 * AMOUNT)
    settings = Settings(
        data_dir=tmp_path / "data",
        rpc_url=devnet.rpc_url,
        deployments_dir=tmp_path / "deployments",
        max_batch_seconds=3600,
        max_batch_records=1_000_000,
        rate_limit_per_second=1000,
        rate_limit_burst=1000,
    )
    settings.data_dir.mkdir(parents=True)
    store = key_store(settings)
    tokens = {
        name: store.create("partner", name=name, address=addresses[name])[1]
        for name in (
            "buyer",
            "supplier",
            "financier",
            "inspector",
            "arbiter",
            "approver1",
            "approver2",
            "auditor",
        )
    }
    tokens["stranger"] = tokens.pop("auditor")
    tokens["auditor"] = store.create("auditor", name="auditor")[1]
    # the operator is a compliance officer: its key is bound to its own COMPLIANCE_ROLE account
    tokens["operator"] = store.create("operator", name="operator", address=officer)[1]
    store.close()
    with ServerThread(settings, free_port()) as server:
        yield DealsApi(server.url, addresses, tokens, devnet, client.address)


def _h(text: str) -> str:
    return Web3.to_hex(Web3.keccak(text=text))


def _create(
    api: DealsApi, *, invoices: dict[int, str] | None = None, **extra: Any
) -> dict[str, Any]:
    """Open a two-milestone deal as the buyer; ``invoices`` declares an invoice hash per
    milestone (a milestone can be financed only against the invoice declared at creation)."""
    start = now(Web3(Web3.HTTPProvider(api.devnet.rpc_url)))
    a = api.addresses
    body = {
        "supplier": a["supplier"],
        "arbiter": a["arbiter"],
        "inspectors": [a["inspector"]],
        "inspector_threshold": 1,
        "inspection_window": 7 * DAY,
        "dispute_timeout": 14 * DAY,
        "default_payee_bps": 5000,
        "long_stop": start + 200 * DAY,
        "milestones": [
            {"amount": AMOUNT, "due_date": start + 30 * DAY, "document_hash": _h("PO-1/1")},
            {"amount": AMOUNT, "due_date": start + 60 * DAY, "document_hash": _h("PO-1/2")},
        ],
        **extra,
    }
    for milestone, invoice in (invoices or {}).items():
        body["milestones"][milestone]["invoice_hash"] = invoice  # type: ignore[index]
    with api.client("buyer") as buyer:
        response = buyer.post("/v1/deals", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _act(api: DealsApi, who: str, deal: int, m: int, action: str, **body: Any) -> httpx.Response:
    with api.client(who) as client:
        return client.post(f"/v1/deals/{deal}/milestones/{m}/{action}", json=body or None)


def test_a_deal_through_the_api(deals_api: DealsApi) -> None:
    api = deals_api
    created = _create(api)
    deal_id = created["deal"]["deal_id"]
    assert created["events"][0] == "DealCreated" and created["tx_hash"].startswith("0x")

    with api.client("supplier") as supplier, api.client("stranger") as stranger:
        got = supplier.get(f"/v1/deals/{deal_id}")
        assert got.status_code == 200, got.text
        assert got.json()["buyer"] == api.addresses["buyer"]
        assert stranger.get(f"/v1/deals/{deal_id}").status_code == 404  # not a party
        assert [d["deal_id"] for d in stranger.get("/v1/deals").json()] == []
    with api.client("auditor") as auditor:
        assert deal_id in [d["deal_id"] for d in auditor.get("/v1/deals").json()]

    funded = _act(api, "buyer", deal_id, 0, "fund")
    assert funded.status_code == 200, funded.text
    assert funded.json()["deal"]["milestones"][0]["status"] == "funded"
    # a party acting outside its role, and an operator, are refused before anything is sent
    assert _act(api, "supplier", deal_id, 1, "fund").status_code == 403
    with api.client("operator") as operator:
        assert operator.post(f"/v1/deals/{deal_id}/milestones/1/fund").status_code == 403
    refused = _act(api, "buyer", deal_id, 1, "accept")  # milestone 1 is not even funded
    assert refused.status_code == 409
    assert refused.json()["error"].startswith("SupplyChainEscrow")

    assert _act(api, "supplier", deal_id, 0, "ship", document_hash=_h("BL-77")).status_code == 200
    assert _act(api, "inspector", deal_id, 0, "attest", document_hash=_h("cert")).status_code == 200
    assert _act(api, "buyer", deal_id, 0, "accept").status_code == 200
    released = _act(api, "supplier", deal_id, 0, "release")
    assert released.status_code == 200, released.text
    assert released.json()["deal"]["milestones"][0]["status"] == "released"

    # a compliance hold on milestone 1 blocks its release until lifted
    assert _act(api, "buyer", deal_id, 1, "fund").status_code == 200
    with api.client("operator") as operator:
        held = operator.post(
            f"/v1/deals/{deal_id}/milestones/1/hold/place",
            json={"reason_hash": _h("sanctions screening"), "duration": 3 * DAY},
        )
        assert held.status_code == 200, held.text
        assert held.json()["deal"]["milestones"][1]["hold"]["active"] is True

    with api.client("supplier") as supplier:
        token = created["deal"]["token"]
        withdrawn = supplier.post("/v1/withdrawals", json={"token": token})
        assert withdrawn.status_code == 200 and "Withdrawn" in withdrawn.json()["events"]

    # the timeline: indexed on-chain events and the API's own action records, in log order
    with api.client("auditor") as auditor:
        deadline = time.monotonic() + 30
        while True:
            entries = auditor.get(f"/v1/deals/{deal_id}/trace").json()["entries"]
            events = [e["event"] for e in entries if e["kind"] == "escrow_event"]
            if "ComplianceHoldPlaced" in events or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert {
            "DealCreated",
            "MilestoneFunded",
            "MilestoneShipped",
            "MilestoneReleased",
            "ComplianceHoldPlaced",
        } <= set(events)
        actions = [e["event"] for e in entries if e["kind"] == "transaction"]
        assert actions[:2] == ["deal.create", "deal.fund"] and "hold.place" in actions
        assert [e["leaf_index"] for e in entries] == sorted(e["leaf_index"] for e in entries)
        assert {e["proof_status"] for e in entries} == {"pending"}
        with api.client("operator") as operator:
            assert operator.post("/v1/anchors").status_code == 202
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            statuses = {
                e["proof_status"]
                for e in auditor.get(f"/v1/deals/{deal_id}/trace").json()["entries"]
            }
            if statuses == {"anchored"}:
                break
            time.sleep(0.3)
        assert statuses == {"anchored"}


def test_relayed_transactions_must_be_the_partners_own(deals_api: DealsApi) -> None:
    api = deals_api
    created = _create(api)
    deal_id = created["deal"]["deal_id"]
    chain = Chain(api.devnet.rpc_url)
    accounts = derive_accounts(api.devnet.settings.mnemonic, 10)
    buyer = Account.from_key(accounts[DEVNET_PARTIES["buyer"]].private_key)
    stranger = Account.from_key(accounts[DEVNET_PARTIES["auditor"]].private_key)
    client = EscrowClient(chain, api.escrow)
    client.approve_token(buyer, created["deal"]["token"])
    call = client.contract.functions.fund(deal_id, 0, AMOUNT)
    own = sign_call(chain, buyer, call)
    forged = stranger.sign_transaction(  # the buyer's call, signed by someone else
        call.build_transaction(
            {
                "from": stranger.address,
                "nonce": 0,
                "gas": 300_000,
                "chainId": 31337,
                "maxFeePerGas": 10**10,
                "maxPriorityFeePerGas": 10**9,
            }
        )
    )
    with api.client("buyer") as buyer_api:
        wrong = buyer_api.post(
            "/v1/transactions", json={"raw_transaction": "0x" + bytes(forged.raw_transaction).hex()}
        )
        assert wrong.status_code == 403 and "signed by" in wrong.json()["detail"]
        garbage = buyer_api.post("/v1/transactions", json={"raw_transaction": "0x02c0ffee"})
        assert garbage.status_code == 422
        relayed = buyer_api.post("/v1/transactions", json={"raw_transaction": "0x" + own.raw.hex()})
        assert relayed.status_code == 200, relayed.text
        assert "MilestoneFunded" in relayed.json()["events"]
        assert "risk" not in relayed.json()  # relayed as it is: the chain checks clearances


def test_a_payment_the_rules_hold_is_not_sent(deals_api: DealsApi) -> None:
    api = deals_api
    big = 300_000 * 10**6  # above the example rule set's 250,000 mUSDC "large-payment" rule
    start = now(Web3(Web3.HTTPProvider(api.devnet.rpc_url)))
    a = api.addresses
    body = {
        "supplier": a["supplier"],
        "arbiter": a["arbiter"],
        "inspectors": [a["inspector"]],
        "inspector_threshold": 1,
        "inspection_window": 7 * DAY,
        "dispute_timeout": 14 * DAY,
        "default_payee_bps": 5000,
        "long_stop": start + 200 * DAY,
        "milestones": [{"amount": big, "due_date": start + 30 * DAY, "document_hash": _h("PO-9")}],
    }
    with api.client("buyer") as buyer:
        held = buyer.post("/v1/deals", json=body)
    assert held.status_code == 409, held.text
    problem = held.json()
    assert problem["type"].endswith("/risk-hold") and "large-payment" in problem["fired"]
    with api.client("auditor") as auditor:
        assert [
            d for d in auditor.get("/v1/deals").json() if d["milestones"][0]["amount"] == big
        ] == []
        decision = auditor.get(f"/v1/records/{problem['decision_id']}").json()
        assert decision["kind"] == "decision"
        assert decision["record"]["payload"]["outcome"] == "hold"
        alerts = auditor.get("/v1/alerts").json()
        assert problem["alert_id"] in str(alerts)


def test_the_financier_disputes_and_anyone_settles_after_the_long_stop(
    deals_api: DealsApi,
) -> None:
    """Issue 13 through the API: once a claim is financed the right to dispute is the
    financier's, not the supplier's; after the long stop a party settles a milestone (a funded
    one neither accepted nor financed goes back to the buyer)."""
    api = deals_api
    a = api.addresses
    created = _create(api, invoices={1: _h("INV-F")})
    deal_id, token = created["deal"]["deal_id"], created["deal"]["token"]
    assert _act(api, "buyer", deal_id, 0, "fund").status_code == 200
    assert _act(api, "buyer", deal_id, 1, "fund").status_code == 200
    accounts = derive_accounts(api.devnet.settings.mnemonic, 10)
    advance = AMOUNT * 95 // 100
    mint(Chain(api.devnet.rpc_url), Account.from_key(accounts[0].private_key), token,
         a["financier"], advance)  # fmt: skip
    offer = {
        "financier": a["financier"],
        "advance": advance,
        "invoice_hash": _h("INV-F"),
        "expires_at": now(Web3(Web3.HTTPProvider(api.devnet.rpc_url))) + DAY,
    }
    assert _act(api, "supplier", deal_id, 1, "offer-financing", **offer).status_code == 200
    financed = _act(
        api, "financier", deal_id, 1, "accept-financing", advance=advance, invoice_hash=_h("INV-F")
    )
    assert financed.status_code == 200, financed.text

    reason = {"reason_hash": _h("goods not as ordered")}
    refused = _act(api, "supplier", deal_id, 1, "dispute", **reason)
    assert refused.status_code in (403, 409, 422), refused.text  # it sold the claim
    assert refused.headers["content-type"].startswith("application/problem+json")
    disputed = _act(api, "financier", deal_id, 1, "dispute", **reason)
    assert disputed.status_code == 200, disputed.text
    assert "DisputeOpened" in disputed.json()["events"]

    early = _act(api, "buyer", deal_id, 0, "settle")
    assert early.status_code != 200 and early.status_code < 500, early.text  # not yet
    w3 = Web3(Web3.HTTPProvider(api.devnet.rpc_url))
    with snapshot(w3):  # the chain's clock goes back afterwards, for the tests that follow
        travel(w3, 201 * DAY)
        settled = _act(api, "supplier", deal_id, 0, "settle")
        assert settled.status_code == 200, settled.text
        assert "MilestoneRefunded" in settled.json()["events"]
        assert settled.json()["deal"]["milestones"][0]["status"] == "refunded"
