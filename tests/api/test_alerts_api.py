"""Alerts and statements over HTTP, against a real server, a real log and a real Anvil:
who may read and act, the alert life cycle with its records, and a party's statement."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from chainaudit.api.server import ServerThread
from chainaudit.chain.devnet import Devnet, free_port
from chainaudit.risk import ActionRequest, Outcome, RiskGate, parse_rule_set
from chainaudit.service.indexer import Indexer
from tests.api.conftest import Api, issue_keys, key_store, make_settings, open_log
from tests.escrow_world import AMOUNT, World, make_world, snapshot

BUYER = "0x1111111111111111111111111111111111111111"
RULES = {
    "version": "api-test",
    "owner": "risk@example.com",
    "rules": [
        {"id": "big", "type": "amount_above", "severity": "high", "threshold": "1000000"},
        {"id": "round", "type": "round_amount", "severity": "medium", "unit": "1000"},
    ],
}


def request(amount: int, deal_id: int = 9) -> ActionRequest:
    return ActionRequest(
        action="fund",
        deal_id=deal_id,
        milestone=0,
        amount=amount,
        token="0x4444444444444444444444444444444444444444",
        party=BUYER,
        actor=BUYER,
        parties={"buyer": BUYER, "supplier": None, "financier": None},
    )


def test_alerts_are_read_by_auditors_and_handled_by_operators(api: Api) -> None:
    with open_log(api.settings) as log:
        gate = RiskGate(log, parse_rule_set(RULES))
        review = gate.check(request(5_000), at=1_800_000_000)  # round: review
        hold = gate.check(request(2_000_001, deal_id=10), at=1_800_000_000)  # big: hold
        gate.close()
    assert (review.outcome, hold.outcome) == (Outcome.REVIEW, Outcome.HOLD)
    review_id, hold_id = str(review.alert_id), str(hold.alert_id)

    with api.client("auditor") as auditor:
        listed = auditor.get("/v1/alerts").json()["items"]
        assert {a["alert_id"] for a in listed} == {review_id, hold_id}
        by_deal = auditor.get("/v1/alerts", params={"deal_id": "10"}).json()["items"]
        assert [a["alert_id"] for a in by_deal] == [hold_id]
        one = auditor.get(f"/v1/alerts/{hold_id}").json()
        assert (one["outcome"], one["severity"], one["rules"], one["status"]) == (
            "hold",
            "high",
            ["big"],
            "open",
        )
        assert one["decision_id"] == hold.record_id
        refused = auditor.post(f"/v1/alerts/{hold_id}/acknowledge", json={})
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("application/problem+json")
    with api.client("partner") as partner:
        assert partner.get("/v1/alerts").status_code == 403
    with api.client("regulator") as regulator:
        assert regulator.get(f"/v1/alerts/{review_id}").status_code == 200
        assert regulator.get("/v1/alerts/AL-0000000000000000").status_code == 404
        assert regulator.get("/v1/alerts/not-an-alert").status_code == 422

    with api.client("operator") as operator:
        acked = operator.post(f"/v1/alerts/{hold_id}/acknowledge", json={"note": "on it"})
        assert acked.status_code == 200, acked.text
        assert acked.json()["alert"]["status"] == "acknowledged"
        record = operator.get(f"/v1/records/{acked.json()['record_id']}").json()
        assert record["kind"] == "decision" and record["actor"].startswith("key:")
        assert record["record"]["payload"]["transition"] == "acknowledged"
        again = operator.post(f"/v1/alerts/{hold_id}/acknowledge")
        assert again.status_code == 409 and again.json()["type"].endswith("/alert-transition")
        assert operator.post(f"/v1/alerts/{hold_id}/resolve", json={}).status_code == 422
        bogus = {"resolution": "maybe"}
        assert operator.post(f"/v1/alerts/{hold_id}/resolve", json=bogus).status_code == 422
    with api.client("admin") as admin:
        resolved = admin.post(
            f"/v1/alerts/{hold_id}/resolve", json={"resolution": "confirmed", "note": "fraud"}
        )
        assert resolved.status_code == 200, resolved.text
        alert = resolved.json()["alert"]
        assert (alert["status"], alert["resolution"], alert["note"]) == (
            "resolved",
            "confirmed",
            "fraud",
        )
        assert len(alert["records"]) == 3
        asked = admin.post(f"/v1/alerts/{review_id}/resolve", json={"resolution": "cleared"})
        assert asked.status_code == 202, asked.text  # clearing needs a second officer
        approval = asked.json()["approval_id"]
    with api.client("operator") as operator:
        cleared = operator.post(f"/v1/approvals/{approval}/approve")
        assert cleared.status_code == 200, cleared.text
        assert operator.get(f"/v1/alerts/{review_id}").json()["status"] == "resolved"
    with api.client("admin") as admin:
        assert (
            admin.post(f"/v1/alerts/{review_id}/acknowledge").status_code == 409
        )  # resolved alerts stay resolved
        open_now = admin.get("/v1/alerts", params={"status": "open"}).json()["items"]
        assert open_now == []


@pytest.fixture
def statement_api(tmp_path: Path, anvil: Devnet) -> Iterator[tuple[Api, World]]:
    devnet = anvil
    world = make_world(devnet)
    with snapshot(world.w3):
        settings = make_settings(tmp_path, devnet)
        tokens, partner, other = issue_keys(settings, devnet)
        store = key_store(settings)
        tokens["buyer"] = store.create("partner", name="buyer", address=world.buyer.address)[1]
        store.close()
        with ServerThread(settings, free_port()) as server:
            yield Api(server.url, settings, tokens, partner, other), world


def test_statements_by_address_with_partner_isolation(
    statement_api: tuple[Api, World],
) -> None:
    api, world = statement_api
    client = world.client
    params = world.params()
    deal_id = client.create_deal(world.buyer, params, world.milestones(1)).deal_id
    client.fund(world.buyer, deal_id, 0, AMOUNT)
    with open_log(api.settings) as log:
        Indexer(log, world.chain, client.address).tick()
    buyer = world.buyer.address
    with api.client("buyer") as partner:
        got = partner.get(f"/v1/statements/{buyer.lower()}")
        assert got.status_code == 200, got.text
        document = got.json()
        assert document["party"] == buyer
        assert [
            (line["kind"], line["amount"], line["proof_status"]) for line in document["lines"]
        ] == [("funding", str(AMOUNT), "pending")]
        assert document["totals"][world.token]["paid_in"] == str(AMOUNT)
        as_csv = partner.get(f"/v1/statements/{buyer}", params={"format": "csv"})
        assert as_csv.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(as_csv.text)))
        assert rows[0][0] == "timestamp" and rows[1][1] == "funding"
        other = partner.get(f"/v1/statements/{world.supplier.address}")
        assert other.status_code == 403
    with api.client("auditor") as auditor:
        assert auditor.get(f"/v1/statements/{world.supplier.address}").json()["lines"] == []
        assert auditor.get("/v1/statements/0x123").status_code == 422
