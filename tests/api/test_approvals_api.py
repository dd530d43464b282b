"""Maker-checker over HTTP, against a real server, a real log and a real Anvil: clearing an
alert, lifting and shortening a compliance hold, and creating admin, operator and partner keys
each need two distinct officers — the requester alone cannot complete them, cannot approve its
own request (nor can another key of the same on-chain account), and a second officer can; each
step is a record, and holds are signed with the acting officer's own on-chain account."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from web3 import Web3

from chainaudit.api.server import ServerThread
from chainaudit.app.settings import Settings
from chainaudit.chain.devnet import Devnet, free_port
from chainaudit.chain.escrow_deploy import deploy_gate
from chainaudit.core import provenance
from chainaudit.risk import ActionRequest, Outcome, RiskGate, parse_rule_set
from chainaudit.risk.freeze import frozen_until
from tests.api.conftest import key_store, make_settings, open_log
from tests.escrow_world import AMOUNT, World, make_world, snapshot

RULES = {
    "version": "approvals-test",
    "owner": "risk@example.com",
    "rules": [{"id": "big", "type": "amount_above", "severity": "high", "threshold": "1000000"}],
}
DAY = 86_400


@dataclass
class Officers:
    url: str
    settings: Settings
    world: World
    tokens: dict[str, str]

    def client(self, who: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": self.tokens[who]}, timeout=60)


@pytest.fixture
def officers(tmp_path: Path, anvil: Devnet) -> Iterator[Officers]:
    world = make_world(anvil)
    with snapshot(world.w3):
        second = world.approver3  # a second compliance officer, with its own role member
        world.client.grant_role(world.admin, "COMPLIANCE_ROLE", second.address)
        settings = make_settings(
            tmp_path,
            anvil,
            escrow_contract=world.client.address,
            officer_keys=[world.officer.key.hex(), second.key.hex()],
            pauser_key=world.admin.key.hex(),  # holds PAUSER_ROLE on this world's vault
        )
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = key_store(settings)
        tokens = {
            "admin1": store.create("admin", name="admin one")[1],
            "admin2": store.create("admin", name="admin two")[1],
            "officer1": store.create("operator", name="officer one", address=world.officer.address)[
                1
            ],
            "officer2": store.create("operator", name="officer two", address=second.address)[1],
            # a second key of officer one (same on-chain account): the same person
            "officer1b": store.create(
                "operator", name="officer one, laptop", address=world.officer.address
            )[1],
            "unbound": store.create("operator", name="desk")[1],
            "auditor": store.create("auditor", name="auditor")[1],
            "buyer": store.create("partner", name="buyer", address=world.buyer.address)[1],
        }
        store.close()
        with ServerThread(settings, free_port(), run_anchorer=False) as server:
            yield Officers(server.url, settings, world, tokens)


def _held_alert(settings: Settings) -> str:
    with open_log(settings) as log:
        gate = RiskGate(log, parse_rule_set(RULES))
        decision = gate.check(
            ActionRequest(
                action="fund",
                deal_id=9,
                milestone=0,
                amount=2_000_000,
                token="0x4444444444444444444444444444444444444444",
                party="0x1111111111111111111111111111111111111111",
                actor="0x1111111111111111111111111111111111111111",
                parties={"buyer": "0x1111111111111111111111111111111111111111"},
            ),
            at=1_800_000_000,
        )
        gate.close()
    assert decision.outcome is Outcome.HOLD
    return str(decision.alert_id)


def _record(client: httpx.Client, record_id: str) -> dict[str, Any]:
    got = client.get(f"/v1/records/{record_id}")
    assert got.status_code == 200, got.text
    record: dict[str, Any] = got.json()["record"]
    return record


def _refused(response: httpx.Response, status: int, text: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert text in response.json()["detail"]


def test_clearing_an_alert_needs_a_second_officer(officers: Officers) -> None:
    alert_id = _held_alert(officers.settings)
    with officers.client("officer1") as one:
        asked = one.post(
            f"/v1/alerts/{alert_id}/resolve", json={"resolution": "cleared", "note": "PO ok"}
        )
        assert asked.status_code == 202, asked.text
        approval = asked.json()
        assert (approval["action"], approval["status"]) == ("alert.clear", "pending")
        assert approval["params"] == {"alert_id": alert_id, "note": "PO ok"}
        assert one.get(f"/v1/alerts/{alert_id}").json()["status"] == "open"  # not cleared
        url = f"/v1/approvals/{approval['approval_id']}"
        _refused(one.post(f"{url}/approve"), 403, "the requester cannot approve")
        requested = _record(one, approval["records"][0])
        assert requested["submitter"] == provenance.RISK and requested["kind"] == "admin"
        assert requested["payload"]["requested_by"] == requested["actor"]
    with officers.client("officer1b") as same_person:
        _refused(same_person.post(f"{url}/approve"), 403, "the requester cannot approve")
    with officers.client("auditor") as auditor:
        _refused(auditor.post(f"{url}/approve"), 403, "not an officer")
        assert auditor.get(url).json()["status"] == "pending"
        assert [a["approval_id"] for a in auditor.get("/v1/approvals").json()["items"]] == [
            approval["approval_id"]
        ]
    with officers.client("buyer") as partner:
        assert partner.get(url).status_code == 403
        _refused(partner.post(f"{url}/approve"), 403, "not an officer")
    with officers.client("officer2") as two:
        done = two.post(f"{url}/approve", json={"note": "checked the PO"})
        assert done.status_code == 200, done.text
        body = done.json()
        assert body["status"] == "executed" and len(body["records"]) == 3
        assert (
            body["decided_by"].startswith("key:") and body["decided_by"] != approval["requested_by"]
        )
        alert = two.get(f"/v1/alerts/{alert_id}").json()
        assert (alert["status"], alert["resolution"]) == ("resolved", "cleared")
        clearance = _record(two, body["result"]["record_id"])
        assert clearance["payload"]["approval_id"] == approval["approval_id"]
        assert clearance["payload"]["by"] == body["decided_by"]
        assert clearance["submitter"] == provenance.RISK
        _refused(two.post(f"{url}/approve"), 409, "already executed")
        assert two.get("/v1/approvals").json()["items"] == []


def _deal_on_hold(officers: Officers) -> int:
    world = officers.world
    client = world.client
    deal_id = client.create_deal(world.buyer, world.params(), world.milestones(1)).deal_id
    client.fund(world.buyer, deal_id, 0, AMOUNT)
    with officers.client("officer1") as one:
        placed = one.post(
            f"/v1/deals/{deal_id}/milestones/0/hold/place",
            json={"reason_hash": "0x" + "ab" * 32, "duration": 10 * DAY},
        )
        assert placed.status_code == 200, placed.text  # restrictive: one officer acts alone
        assert placed.json()["deal"]["milestones"][0]["hold"]["active"] is True
    return deal_id


def _hold_signer(officers: Officers, tx_hash: str) -> str:
    return str(officers.world.w3.eth.get_transaction(tx_hash)["from"])


def test_lifting_or_shortening_a_hold_needs_a_second_officer_who_signs_with_its_own_account(
    officers: Officers,
) -> None:
    world = officers.world
    deal_id = _deal_on_hold(officers)
    hold_url = f"/v1/deals/{deal_id}/milestones/0/hold"
    with officers.client("unbound") as desk:
        _refused(
            desk.post(f"{hold_url}/place", json={"reason_hash": "0x" + "cd" * 32}),
            409,
            "bound to no on-chain account",
        )
    with officers.client("officer1") as one:
        longer = one.post(
            f"{hold_url}/renew", json={"reason_hash": "0x" + "ab" * 32, "duration": 20 * DAY}
        )
        assert longer.status_code == 200, longer.text  # extending acts at once
        shorter = one.post(
            f"{hold_url}/renew", json={"reason_hash": "0x" + "ab" * 32, "duration": DAY}
        )
        assert shorter.status_code == 202, shorter.text
        assert shorter.json()["action"] == "hold.shorten"
        lift = one.post(f"{hold_url}/lift", json={"reason_hash": "0x" + "ef" * 32})
        assert lift.status_code == 202, lift.text
        lift_id = lift.json()["approval_id"]
        hold = world.client.deal(deal_id).milestones[0].hold
        assert (
            hold is not None
            and hold.active
            and hold.until > world.w3.eth.get_block("latest")["timestamp"] + 19 * DAY
        )
        _refused(one.post(f"/v1/approvals/{lift_id}/approve"), 403, "the requester cannot approve")
        assert world.client.deal(deal_id).milestones[0].hold.active  # type: ignore[union-attr]
    with officers.client("officer2") as two:
        shortened = two.post(f"/v1/approvals/{shorter.json()['approval_id']}/approve")
        assert shortened.status_code == 200, shortened.text
        result = shortened.json()["result"]
        assert result["officer"] == world.approver3.address
        assert _hold_signer(officers, result["tx_hash"]) == world.approver3.address
        lifted = two.post(f"/v1/approvals/{lift_id}/approve")
        assert lifted.status_code == 200, lifted.text
        result = lifted.json()["result"]
        assert _hold_signer(officers, result["tx_hash"]) == world.approver3.address
        hold_record = _record(two, result["record_id"])
        assert hold_record["payload"]["transition"] == "lifted"
        assert hold_record["payload"]["approval_id"] == lift_id
        assert hold_record["payload"]["officer"] == world.approver3.address
    after = world.client.deal(deal_id).milestones[0].hold
    assert after is None or not after.active


def test_admin_operator_and_partner_keys_need_two_admins(officers: Officers) -> None:
    with officers.client("admin1") as one:
        before = {k["key_id"] for k in one.get("/v1/keys").json()}
        asked = one.post(
            "/v1/keys",
            json={
                "name": "officer three",
                "role": "operator",
                "address": officers.world.stranger.address,
            },
        )
        assert asked.status_code == 202, asked.text
        approval_id = asked.json()["approval_id"]
        assert {k["key_id"] for k in one.get("/v1/keys").json()} == before  # nothing yet
        _refused(
            one.post(f"/v1/approvals/{approval_id}/approve"), 403, "the requester cannot approve"
        )
        auditor = one.post("/v1/keys", json={"name": "second auditor", "role": "auditor"})
        assert auditor.status_code == 201 and auditor.json()["token"]  # read-only: one admin
    with officers.client("officer2") as operator:
        _refused(operator.post(f"/v1/approvals/{approval_id}/approve"), 403, "needs admin")
    with officers.client("admin2") as two:
        done = two.post(f"/v1/approvals/{approval_id}/approve")
        assert done.status_code == 200, done.text
        token = done.json()["token"]
        key_id = done.json()["result"]["key_id"]
        assert token.startswith(f"ca_{key_id}_")
        created = next(k for k in two.get("/v1/keys").json() if k["key_id"] == key_id)
        assert (created["role"], created["address"]) == (
            "operator",
            officers.world.stranger.address,
        )
        for record_id in done.json()["records"]:
            record = _record(two, record_id)
            assert record["submitter"] == provenance.KEYS
            assert token.split("_", 2)[2] not in json.dumps(record)  # the secret is never logged
        # a rejected request cannot be approved afterwards
        partner = two.post(
            "/v1/keys",
            json={
                "name": "p",
                "role": "partner",
                "address": Web3.to_checksum_address("0x" + "12" * 20),
            },
        ).json()
    with officers.client("admin1") as one:
        rejected = one.post(
            f"/v1/approvals/{partner['approval_id']}/reject", json={"note": "unknown firm"}
        )
        assert rejected.json()["status"] == "rejected"
    with officers.client("admin2") as two:
        _refused(
            two.post(f"/v1/approvals/{partner['approval_id']}/approve"), 409, "already rejected"
        )
    with httpx.Client(base_url=officers.url, headers={"X-API-Key": token}) as new_key:
        assert new_key.get("/v1/alerts").status_code == 200


def test_requests_are_checked_before_they_are_recorded(officers: Officers) -> None:
    with officers.client("officer1") as one:
        _refused(one.post("/v1/approvals", json={"action": "launch.rocket"}), 422, "unknown action")
        _refused(
            one.post("/v1/approvals", json={"action": "keys.create", "params": {"role": "admin"}}),
            403,
            "may not request keys.create",
        )
        _refused(
            one.post("/v1/approvals", json={"action": "alert.clear", "params": {"alert_id": "x"}}),
            422,
            "alert_id",
        )
        assert one.get("/v1/approvals/APR-0000000000000000").status_code == 404


def test_pausing_and_activating_rules_over_http_need_a_second_officer(officers: Officers) -> None:
    world = officers.world
    with officers.client("officer1") as one:
        pause = one.post("/v1/approvals", json={"action": "escrow.pause", "note": "stolen key"})
        assert pause.status_code == 201, pause.text
        pause_id = pause.json()["approval_id"]
        _refused(one.post(f"/v1/approvals/{pause_id}/approve"), 403, "cannot approve")
        assert not world.client.paused()
        new_rules = {**RULES, "version": "approvals-test-2"}
        activate = one.post(
            "/v1/approvals", json={"action": "rules.activate", "params": {"rules": new_rules}}
        )
        assert activate.status_code == 201, activate.text
        assert activate.json()["params"]["version"] == "approvals-test-2"
        _refused(
            one.post(f"/v1/approvals/{activate.json()['approval_id']}/approve"),
            403,
            "cannot approve",
        )
    with officers.client("officer2") as two:
        paused = two.post(f"/v1/approvals/{pause_id}/approve")
        assert paused.status_code == 200, paused.text
        assert world.client.paused()
        assert paused.json()["result"]["tx_hash"].startswith("0x")
        activated = two.post(f"/v1/approvals/{activate.json()['approval_id']}/approve")
        assert activated.status_code == 200, activated.text
        announcement = _record(two, activated.json()["result"]["record_id"])
        assert announcement["payload"]["rules"]["version"] == "approvals-test-2"
        assert announcement["actor"] == activated.json()["decided_by"]
    with officers.client("officer1") as one:
        unpause = one.post("/v1/approvals", json={"action": "escrow.unpause"}).json()
    with officers.client("officer2") as two:
        assert two.post(f"/v1/approvals/{unpause['approval_id']}/approve").status_code == 200
    assert not world.client.paused()


def test_an_approved_action_that_cannot_run_is_recorded_as_failed(officers: Officers) -> None:
    alert_id = _held_alert(officers.settings)
    with officers.client("officer1") as one:
        asked = one.post(f"/v1/alerts/{alert_id}/resolve", json={"resolution": "cleared"})
        approval_id = asked.json()["approval_id"]
        confirmed = one.post(f"/v1/alerts/{alert_id}/resolve", json={"resolution": "confirmed"})
        assert confirmed.status_code == 200  # confirming keeps money blocked: one officer
    with officers.client("officer2") as two:
        _refused(two.post(f"/v1/approvals/{approval_id}/approve"), 409, "cannot be resolved")
        failed = two.get(f"/v1/approvals/{approval_id}").json()
        assert failed["status"] == "failed" and "cannot be resolved" in failed["error"]
        assert len(failed["records"]) == 3
        assert two.get(f"/v1/alerts/{alert_id}").json()["resolution"] == "confirmed"


def test_a_holder_rotates_its_own_key_alone_another_officers_key_takes_two_admins(
    officers: Officers,
) -> None:
    officer_id = officers.tokens["officer1"].split("_")[1]
    with officers.client("officer1") as own:
        mine = own.post(f"/v1/keys/{officer_id}/rotate", json={})
        assert mine.status_code == 200, mine.text  # no one else ever saw this token
        assert own.get("/v1/approvals").status_code == 401  # the old token is refused at once
    officers.tokens["officer1"] = mine.json()["token"]
    with officers.client("officer1") as own:
        assert own.get("/v1/approvals").status_code == 200
        _refused(
            own.post(f"/v1/keys/{officers.tokens['officer2'].split('_')[1]}/rotate"),
            403,
            "only admins rotate another holder's key",
        )
    with officers.client("admin1") as one:
        asked = one.post(f"/v1/keys/{officer_id}/rotate", json={})
        assert asked.status_code == 202, asked.text
        assert asked.json()["action"] == "keys.rotate"
        _refused(one.post(f"/v1/approvals/{asked.json()['approval_id']}/approve"), 403, "cannot")
    with officers.client("officer1") as own:
        assert own.get("/v1/approvals").status_code == 200  # still its own token
    with officers.client("admin2") as two:
        done = two.post(f"/v1/approvals/{asked.json()['approval_id']}/approve")
        assert done.status_code == 200, done.text
        assert done.json()["token"].startswith(f"ca_{officer_id}_")
    with officers.client("officer1") as own:
        assert own.get("/v1/approvals").status_code == 401


def test_freezing_a_party_needs_a_second_officer_who_signs_with_its_own_account(
    officers: Officers,
) -> None:
    """Issue 13's freeze goes through the same maker-checker: the requester alone (or another
    key of its account) freezes no one; the second officer's own account, a member of the
    gate's compliance role, sends it and the record names the approval; lifting it takes two
    as well. (What a freeze blocks on chain is tested in contracts/test/EscrowGate.t.sol.)"""
    world = officers.world
    deploy_gate(
        world.chain,
        world.admin,
        world.client.address,
        world.stranger.address,  # the clearance signer: not used by freezes
        compliance_officers=[world.officer.address, world.approver3.address],
    )
    party = world.supplier.address
    reason = "0x" + "ab" * 32
    with officers.client("officer1") as one:
        asked = one.post(
            "/v1/approvals",
            json={
                "action": "party.freeze",
                "params": {"account": party, "duration": 3 * DAY, "reason_hash": reason},
            },
        )
        assert asked.status_code == 201, asked.text
        freeze_id = asked.json()["approval_id"]
        _refused(one.post(f"/v1/approvals/{freeze_id}/approve"), 403, "cannot approve")
        bad = one.post(
            "/v1/approvals",
            json={"action": "party.freeze", "params": {"account": party, "duration": 90 * DAY}},
        )
        assert bad.status_code == 422, bad.text  # beyond the gate's bound, and no reason
    with officers.client("officer1b") as same_person:
        _refused(same_person.post(f"/v1/approvals/{freeze_id}/approve"), 403, "cannot approve")
    assert frozen_until(world.client, party) == 0  # one officer alone froze no one
    with officers.client("officer2") as two:
        done = two.post(f"/v1/approvals/{freeze_id}/approve")
        assert done.status_code == 200, done.text
        result = done.json()["result"]
        assert result["officer"] == world.approver3.address  # the checker's own account
        assert result["until"] == frozen_until(world.client, party) > 0
        record = _record(two, result["record_id"])
        assert record["submitter"] == provenance.RISK
        assert record["payload"]["approval_id"] == freeze_id
    with officers.client("officer2") as two:
        lift = two.post(
            "/v1/approvals",
            json={"action": "party.unfreeze", "params": {"account": party, "reason_hash": reason}},
        ).json()
    with officers.client("officer1") as one:
        lifted = one.post(f"/v1/approvals/{lift['approval_id']}/approve")
        assert lifted.status_code == 200, lifted.text
        assert lifted.json()["result"]["officer"] == world.officer.address
    assert frozen_until(world.client, party) == 0
