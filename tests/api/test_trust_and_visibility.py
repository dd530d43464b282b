"""Issue 12 against a real server, a real log file and a real Anvil: records forged straight
into the database (as an attacker with database access would: the API refuses them) are
ignored by every reader and reported by reconcile; and one visibility rule decides what a
partner's key sees in records, lists, proofs, bundles, statements, alerts and the trace."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from eth_account import Account
from web3 import Web3

from chainaudit.chain.chain import Chain
from chainaudit.chain.devnet import derive_accounts
from chainaudit.chain.escrow import EscrowClient
from chainaudit.chain.escrow_deploy import mint
from chainaudit.core.records import prepare
from chainaudit.service.indexer import event_record_id
from chainaudit.service.reconcile import reconcile
from tests.api.conftest import open_log
from tests.api.test_deals_api import (
    AMOUNT,
    DealsApi,
    _act,
    _create,
    _h,
    deals_api,  # noqa: F401 (the fixture, used by name)
)
from tests.escrow_world import now

T = TypeVar("T")


@pytest.fixture
def api(request: pytest.FixtureRequest) -> DealsApi:
    """The deals server of ``tests/api/test_deals_api.py`` (real Anvil, log file, uvicorn)."""
    found: DealsApi = request.getfixturevalue("deals_api")
    return found


DAY = 86400
BIG = 300_000 * 10**6  # above the example rules' 250,000 mUSDC "large-payment": held


def key_id(api: DealsApi, who: str) -> str:
    """The key id of a token ``ca_<id>_<secret>``."""
    return api.tokens[who].split("_")[1]


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def trace(api: DealsApi, who: str, deal_id: int) -> httpx.Response:
    with api.client(who) as client:
        return client.get(f"/v1/deals/{deal_id}/trace")


def indexed(api: DealsApi, deal_id: int, event: str, milestone: int | None = None) -> str:
    """Wait until the indexer wrote ``event`` of the deal; return its record id."""

    def probe() -> str | None:
        for e in trace(api, "auditor", deal_id).json()["entries"]:
            args = e["payload"].get("args", {})
            if (
                e["kind"] == "escrow_event"
                and e["event"] == event
                and (milestone is None or str(args.get("milestone")) == str(milestone))
            ):
                return str(e["record_id"])
        return None

    return wait_for(probe, f"{event} of deal {deal_id}")


def forge(data_dir: Path, *documents: tuple[dict[str, Any], str | None]) -> list[str]:
    """Append records straight to the log file, bypassing the API (no submitter, or a forged
    one); return their ids."""
    with open_log(data_dir) as log:
        records = [prepare(doc, submitter=submitter) for doc, submitter in documents]
        log.append(records)
    return [r.record_id for r in records]


def event_doc(
    api: DealsApi, record_id: str, event: str, deal_id: int, args: dict[str, Any], n: int
) -> dict[str, Any]:
    return {
        "id": record_id,
        "kind": "escrow_event",
        "timestamp": "2026-11-21T09:30:00Z",
        "actor": "chainaudit:indexer",
        "payload": {
            "type": "event",
            "chain_id": 31337,
            "contract": api.escrow,
            "block_number": 1,
            "block_hash": "0x" + f"{n:02x}" * 32,
            "tx_hash": "0x" + f"{n + 1:02x}" * 32,
            "tx_from": api.addresses["buyer"],
            "log_index": n,
            "event": event,
            "deal_id": str(deal_id),
            "args": {"dealId": str(deal_id), **args},
        },
    }


def unentitled(api: DealsApi, data_dir: Path) -> set[str]:
    """The records reconcile reports as written by someone not entitled to them."""
    with open_log(data_dir) as log:
        report = reconcile(log, EscrowClient(Chain(api.devnet.rpc_url), api.escrow), append=False)
    return {
        d.subject.removeprefix("record ")
        for d in report.differences
        if d.kind == "unentitled_record"
    }


def big_deal(api: DealsApi) -> dict[str, Any]:
    start = now(Web3(Web3.HTTPProvider(api.devnet.rpc_url)))
    a = api.addresses
    return {
        "supplier": a["supplier"],
        "arbiter": a["arbiter"],
        "inspectors": [a["inspector"]],
        "inspector_threshold": 1,
        "inspection_window": 7 * DAY,
        "dispute_timeout": 14 * DAY,
        "default_payee_bps": 5000,
        "long_stop": start + 200 * DAY,
        "milestones": [{"amount": BIG, "due_date": start + 30 * DAY, "document_hash": _h("PO-B")}],
    }


# -- readers trust only entitled writers ----------------------------------------------------------


def test_a_forged_clearance_leaves_the_alert_open_and_the_action_held(
    api: DealsApi, tmp_path: Path
) -> None:
    body = big_deal(api)
    with api.client("buyer") as buyer:
        held = buyer.post("/v1/deals", json=body)
    assert held.status_code == 409, held.text
    alert_id = held.json()["alert_id"]
    clearance = {
        "type": "alert",
        "alert_id": alert_id,
        "transition": "resolved",
        "status": "resolved",
        "resolution": "cleared",
        "by": "key:compliance-officer",
    }

    def doc(record_id: str) -> dict[str, Any]:
        return {
            "id": record_id,
            "kind": "decision",
            "timestamp": "2026-11-21T09:30:00Z",
            "actor": "key:compliance-officer",
            "payload": clearance,
        }

    with api.client("buyer") as buyer:  # the API refuses it from the partner itself
        refused = buyer.post("/v1/records", json={**doc("clear-0"), "actor": buyer_address(api)})
        assert refused.status_code == 403
    forged = forge(
        tmp_path / "data",
        (doc(f"risk:alert:{alert_id}:resolved:1"), None),
        (doc(f"clear-{alert_id}"), f"key:{key_id(api, 'buyer')}"),
        (doc(f"risk:alert:{alert_id}:resolved:2"), "service:api"),  # a service, not the risk one
    )

    with api.client("buyer") as buyer:
        again = buyer.post("/v1/deals", json=body)
    assert again.status_code == 409, again.text  # the same request: still held
    assert "large-payment" in again.json()["fired"]
    with api.client("auditor") as auditor:
        alert = auditor.get(f"/v1/alerts/{alert_id}").json()
        assert (alert["status"], alert["resolved_by"], alert["resolution"]) == ("open", None, None)
        assert alert["records"] == [f"risk:alert:{alert_id}:opened"]
        decision = auditor.get(f"/v1/records/{again.json()['decision_id']}").json()
        assert decision["record"]["payload"]["cleared_by"] == []
    assert set(forged) <= unentitled(api, tmp_path / "data")


def buyer_address(api: DealsApi) -> str:
    return api.addresses["buyer"]


def test_forged_escrow_events_change_no_statement_hold_rule_input_or_trace(
    api: DealsApi, tmp_path: Path
) -> None:
    a = api.addresses  # the "stranger" key's address is the devnet's "auditor" account
    created = _create(api)
    deal_id = created["deal"]["deal_id"]
    token = created["deal"]["token"]
    assert _act(api, "buyer", deal_id, 0, "fund").status_code == 200
    assert _act(api, "supplier", deal_id, 0, "ship", document_hash=_h("BL-1")).status_code == 200
    assert _act(api, "inspector", deal_id, 0, "attest", document_hash=_h("C")).status_code == 200
    assert _act(api, "buyer", deal_id, 0, "accept").status_code == 200
    funded = indexed(api, deal_id, "MilestoneFunded", 0)
    indexed(api, deal_id, "MilestoneAccepted", 0)

    def statements() -> dict[str, Any]:
        with api.client("auditor") as auditor:
            out = {}
            for who in ("buyer", "supplier"):
                got = auditor.get(f"/v1/statements/{a[who]}").json()
                out[who] = (got["lines"], got["totals"])
            return out

    before = statements()
    trace_before = [e["record_id"] for e in trace(api, "auditor", deal_id).json()["entries"]]
    fake = 999
    victim_po = _h("PO-1/1").lower()
    attacker = f"key:{key_id(api, 'stranger')}"  # a partner with no role in the deal
    forged = forge(
        tmp_path / "data",
        (
            event_doc(
                api,
                event_record_id(31337, "0x" + "a1" * 32, 0, "0x" + "b1" * 32),
                "DealCreated",
                fake,
                {
                    "buyer": a["auditor"],
                    "supplier": a["supplier"],
                    "token": token,
                    "arbiter": a["arbiter"],
                    "inspectors": [a["inspector"]],
                    "inspectorThreshold": 1,
                },
                1,
            ),
            None,
        ),
        (
            event_doc(
                api,
                "escrow-forged-2",
                "MilestoneCreated",
                fake,
                {"milestone": 0, "amount": str(10**12), "dueDate": 1, "documentHash": victim_po},
                2,
            ),
            attacker,
        ),
        (
            event_doc(
                api,
                "escrow-forged-3",
                "MilestoneReleased",
                fake,
                {
                    "milestone": 0,
                    "payee": a["supplier"],
                    "actor": a["auditor"],
                    "amount": str(10**12),
                },
                3,
            ),
            attacker,
        ),
        (
            {
                "id": "escrow-forged-4",
                "kind": "escrow_event",
                "timestamp": "2026-11-21T09:30:00Z",
                "actor": "chainaudit:indexer",
                "payload": {
                    "type": "retraction",
                    "retracts": funded,
                    "reason": "reorg",
                    "chain_id": 31337,
                    "contract": api.escrow,
                    "deal_id": str(deal_id),
                },
            },
            attacker,
        ),
    )

    assert statements() == before  # no fake credit, no lost funding
    entries = trace(api, "auditor", deal_id).json()["entries"]
    assert [e["record_id"] for e in entries] == trace_before
    with api.client("auditor") as auditor:
        for record_id in forged:  # still in the log, for auditors to see
            assert auditor.get(f"/v1/records/{record_id}").status_code == 200

    # the genuine release is not held for a "reused" purchase order
    released = _act(api, "supplier", deal_id, 0, "release")
    assert released.status_code == 200, released.text
    risk = released.json()["risk"]
    assert risk["outcome"] == "allow"
    with api.client("auditor") as auditor:
        decision = auditor.get(f"/v1/records/{risk['decision_id']}").json()["record"]["payload"]
    assert decision["inputs"]["history"]["document_uses"] == {}
    assert set(forged) <= unentitled(api, tmp_path / "data")


# -- one visibility rule ---------------------------------------------------------------------------


def test_visibility_is_one_rule_for_every_read(api: DealsApi, tmp_path: Path) -> None:
    a = api.addresses
    created = _create(api, invoices={1: _h("INV-1")})
    deal_id = created["deal"]["deal_id"]
    token = created["deal"]["token"]
    note_id = f"note-{deal_id}"
    with api.client("buyer") as buyer:
        posted = buyer.post(
            "/v1/records",
            json={
                "id": note_id,
                "kind": "document",
                "timestamp": "2026-11-21T09:30:00Z",
                "actor": a["buyer"],
                "payload": {"deal_id": str(deal_id), "walk_away_price": "11000000000"},
            },
        )
        assert posted.status_code == 201, posted.text
    assert _act(api, "buyer", deal_id, 0, "fund").status_code == 200
    assert _act(api, "buyer", deal_id, 1, "fund").status_code == 200
    created_record = indexed(api, deal_id, "DealCreated")
    funded_0 = indexed(api, deal_id, "MilestoneFunded", 0)
    indexed(api, deal_id, "MilestoneFunded", 1)  # the indexer has caught up: lists hold still

    # a party that must not see the buyer's note: records, list, proof, bundle, trace
    with api.client("supplier") as supplier:
        assert supplier.get(f"/v1/records/{note_id}").status_code == 404
        assert supplier.get(f"/v1/records/{note_id}/proof").status_code == 404  # fast lane too
        assert supplier.get(f"/v1/records/{note_id}/bundle").status_code == 404
        listed = supplier.get("/v1/records", params={"kind": "document"}).json()["items"]
        assert note_id not in {r["record_id"] for r in listed}
        everything = supplier.get("/v1/records", params={"limit": 1000}).json()["items"]
        assert note_id not in {r["record_id"] for r in everything}
        assert created_record in {r["record_id"] for r in everything}  # as GET shows it
        paged: list[str] = []
        cursor: int | None = 0
        while cursor is not None:
            got = supplier.get("/v1/records", params={"limit": 2, "cursor": cursor}).json()
            assert len(got["items"]) <= 2
            paged += [r["record_id"] for r in got["items"]]
            cursor = got["next_cursor"]
        assert paged == [r["record_id"] for r in everything]
        assert supplier.get(f"/v1/statements/{a['buyer']}").status_code == 403
        assert supplier.get("/v1/alerts").status_code == 403
        # what concerns it: the deal's events, and their proofs
        assert supplier.get(f"/v1/records/{created_record}").status_code == 200
        assert supplier.get(f"/v1/records/{created_record}/proof").status_code == 200
    seen = {e["record_id"] for e in trace(api, "supplier", deal_id).json()["entries"]}
    assert note_id not in seen and created_record in seen
    with api.client("buyer") as buyer:
        assert buyer.get(f"/v1/records/{note_id}").status_code == 200
    assert note_id in {e["record_id"] for e in trace(api, "buyer", deal_id).json()["entries"]}
    assert note_id in {e["record_id"] for e in trace(api, "auditor", deal_id).json()["entries"]}

    # a financier merely offered milestone 1's claim sees nothing of the deal
    accounts = derive_accounts(api.devnet.settings.mnemonic, 10)
    operator = Account.from_key(accounts[0].private_key)
    advance = AMOUNT * 95 // 100
    mint(Chain(api.devnet.rpc_url), operator, token, a["financier"], advance)
    start = now(Web3(Web3.HTTPProvider(api.devnet.rpc_url)))
    offer = {
        "financier": a["financier"],
        "advance": advance,
        "invoice_hash": _h("INV-1"),
        "expires_at": start + DAY,
    }
    assert _act(api, "supplier", deal_id, 1, "offer-financing", **offer).status_code == 200
    offered = indexed(api, deal_id, "FinancingOffered", 1)
    with api.client("financier") as financier:
        assert financier.get(f"/v1/deals/{deal_id}").status_code == 404
        assert deal_id not in [d["deal_id"] for d in financier.get("/v1/deals").json()]
        assert financier.get(f"/v1/deals/{deal_id}/trace").status_code == 404
        for record_id in (created_record, funded_0, offered, note_id):
            assert financier.get(f"/v1/records/{record_id}").status_code == 404
            assert financier.get(f"/v1/records/{record_id}/proof").status_code == 404
        assert financier.get("/v1/records", params={"limit": 1000}).json()["items"] == []

    # after accepting, it sees what concerns it: the deal-wide records and milestone 1's
    accepted = _act(
        api, "financier", deal_id, 1, "accept-financing", advance=advance, invoice_hash=_h("INV-1")
    )
    assert accepted.status_code == 200, accepted.text
    finance_decision = accepted.json()["risk"]["decision_id"]
    financed = indexed(api, deal_id, "ReceivableFinanced", 1)
    with api.client("financier") as financier:
        assert financier.get(f"/v1/deals/{deal_id}").status_code == 200
        for record_id in (created_record, financed):
            assert financier.get(f"/v1/records/{record_id}").status_code == 200
        for record_id in (funded_0, note_id):  # milestone 0's funding, the buyer's note
            assert financier.get(f"/v1/records/{record_id}").status_code == 404
    seen = {e["record_id"] for e in trace(api, "financier", deal_id).json()["entries"]}
    assert {created_record, financed, finance_decision} <= seen
    assert not {funded_0, note_id} & seen

    # a decision shown to a partner is redacted to what concerns it
    with api.client("auditor") as auditor:
        whole = auditor.get(f"/v1/records/{finance_decision}").json()
    assert whole["redacted"] is False
    history = whole["record"]["payload"]["inputs"]["history"]
    assert history["exposure"]["financier"] == a["financier"]
    assert set(history["party_records"]) == {a[w].lower() for w in ("buyer", "supplier")} | {
        a["financier"].lower()
    }
    with api.client("buyer") as buyer:
        shown = buyer.get(f"/v1/records/{finance_decision}").json()
        in_trace = next(
            e
            for e in buyer.get(f"/v1/deals/{deal_id}/trace").json()["entries"]
            if e["record_id"] == finance_decision
        )
    assert shown["redacted"] is True and in_trace["redacted"] is True
    for payload in (shown["record"]["payload"], in_trace["payload"]):
        mine = payload["inputs"]["history"]
        assert "exposure" not in mine  # the financier's exposure is not the buyer's business
        assert set(mine.get("party_records", {})) <= {a["buyer"].lower()}
        assert "document_uses" not in mine and "clearances" not in mine
        assert all(set(f) <= {"rule", "severity"} for f in payload.get("fired", []))
    with api.client("financier") as financier:
        own = financier.get(f"/v1/records/{finance_decision}").json()["record"]["payload"]
    assert own["inputs"]["history"]["exposure"]["financier"] == a["financier"]  # its own
    assert set(own["inputs"]["history"]["party_records"]) == {a["financier"].lower()}

    # bundles: a redacted record is bundled without its content
    with api.client("operator") as op:
        assert op.post("/v1/anchors").status_code == 202

    def anchored() -> dict[str, Any] | None:
        with api.client("buyer") as buyer:
            got = buyer.get(f"/v1/records/{finance_decision}/bundle")
        return got.json() if got.status_code == 200 else None

    bundle = wait_for(anchored, "the anchor")
    assert "record" not in bundle or bundle["record"] is None
    with api.client("supplier") as supplier:
        assert supplier.get(f"/v1/records/{note_id}/bundle").status_code == 404
        assert supplier.get(f"/v1/records/{created_record}/bundle").status_code == 200
