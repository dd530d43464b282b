"""Issue 12's doors over real HTTP: no key, admin and operator included, writes a record kind
or id namespace reserved for the service; the server stamps who submitted every record; and a
deal action whose id was taken is recorded under a derived id with an integrity alarm instead
of failing after its transaction was sent."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account

from chainaudit.app.deploy import DEVNET_PARTIES
from chainaudit.chain.chain import Chain, sign_call
from chainaudit.chain.devnet import derive_accounts
from chainaudit.chain.escrow import EscrowClient
from chainaudit.core import merkle, provenance
from chainaudit.core.records import prepare
from chainaudit.service import integrity
from tests.api import test_deals_api
from tests.api.conftest import Api, open_log
from tests.api.test_deals_api import AMOUNT, DealsApi, _create

ROLES = ("partner", "admin", "operator")

relay_api = test_deals_api.deals_api
"""The deals server of ``tests/api/test_deals_api.py`` (escrow, devnet keys), as a fixture."""


def key_id(api: Api, role: str) -> str:
    """The key id of a token ``ca_<key id>_<secret>``."""
    return api.tokens[role].split("_")[1]


def record(api: Api, role: str, i: int, **change: Any) -> dict[str, Any]:
    """A record the key of ``role`` may write but for ``change`` (a partner's actor must be
    its own address, or it is refused for that before the reserved check is reached)."""
    actor = api.partner_address if role == "partner" else "buyer:acme"
    return {
        "id": f"door-{role}-{i}",
        "kind": "transaction",
        "timestamp": "2026-11-21T09:30:00Z",
        "actor": actor,
        "payload": {"amount": i * 100, "currency": "USD"},
        **change,
    }


FORGED_CLEARANCE = {
    "kind": "decision",
    "payload": {
        "type": "alert",
        "alert_id": "AL-0001",
        "transition": "resolved",
        "resolution": "cleared",
        "by": "key:compliance-officer",
    },
}
FORGED_EVENT = {
    "kind": "escrow_event",
    "payload": {
        "type": "event",
        "event": "MilestoneReleased",
        "deal_id": "1",
        "args": {"dealId": "1", "milestone": "0", "amount": "1000000000000"},
    },
}
ATTACKS: list[tuple[str, dict[str, Any], str]] = [
    ("forged alert clearance", FORGED_CLEARANCE, "kind 'decision' is reserved"),
    ("forged escrow event", FORGED_EVENT, "kind 'escrow_event' is reserved"),
    ("forged admin action", {"kind": "admin"}, "kind 'admin' is reserved"),
    (
        "squatted escrow event id",
        {"id": "escrow:31337:" + "ab" * 32 + ":0:" + "cd" * 6},
        "reserved namespace 'escrow:'",
    ),
    (
        "squatted deal action id",
        {"id": "action-relay-" + "ef" * 12},
        "reserved namespace 'action-'",
    ),
    ("forged risk record id", {"id": "risk:alert:AL-0001"}, "reserved namespace 'risk:'"),
    ("forged reconcile report id", {"id": "reconcile:1"}, "reserved namespace 'reconcile:'"),
    ("forged integrity alarm id", {"id": "integrity:x"}, "reserved namespace 'integrity:'"),
]


def tree_size(client: httpx.Client) -> int:
    latest = client.get("/v1/checkpoints/latest")
    return int(latest.json()["tree_size"]) if latest.status_code == 200 else 0


def refused(response: httpx.Response, named: str) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"].endswith("/reserved") and named in body["detail"], body


@pytest.mark.parametrize("role", ROLES)
def test_every_key_is_refused_reserved_kinds_and_ids_single_and_batch(api: Api, role: str) -> None:
    with api.client(role) as client, api.client("auditor") as auditor:
        before = tree_size(auditor)
        for i, (attack, change, named) in enumerate(ATTACKS):
            forged = record(api, role, 100 + i, **change)
            refused(client.post("/v1/records", json=forged), named)
            # in a batch behind a valid record: all or nothing, so nothing at all is written
            valid = record(api, role, 200 + i)
            refused(client.post("/v1/records/batch", json={"records": [valid, forged]}), named)
            for written in (forged, valid):
                missing = auditor.get(f"/v1/records/{written['id']}")
                assert missing.status_code == 404, (attack, missing.text)
        assert tree_size(auditor) == before  # not a leaf, not even an action record
        # the same key still writes what it may
        assert client.post("/v1/records", json=record(api, role, 1)).status_code == 201


@pytest.mark.parametrize("role", ROLES)
def test_a_client_cannot_set_the_submitter(api: Api, role: str) -> None:
    with api.client(role) as client:
        for claimed in ("service:risk", "service:indexer", f"key:{key_id(api, 'admin')}"):
            forged = record(api, role, 7, submitter=claimed)
            sent = client.post("/v1/records", json=forged)
            assert sent.status_code == 422, sent.text
            batch = client.post("/v1/records/batch", json={"records": [forged]})
            assert batch.status_code == 422, batch.text
        assert client.get(f"/v1/records/door-{role}-7").status_code == 404


@pytest.mark.parametrize("role", ROLES)
def test_the_stored_record_names_its_key_inside_the_hashed_bytes(api: Api, role: str) -> None:
    doc = record(api, role, 3, salt="ab" * 16)
    with api.client(role) as client:
        assert client.post("/v1/records", json=doc).status_code == 201
        got = client.get(f"/v1/records/{doc['id']}").json()
    stamped = got["record"]
    assert stamped["submitter"] == f"key:{key_id(api, role)}"
    assert provenance.document_entitled(stamped)
    expected = prepare(doc, submitter=f"key:{key_id(api, role)}")
    assert got["leaf_hash"] == "0x" + expected.leaf_hash.hex()
    body = json.dumps(stamped, separators=(",", ":"), sort_keys=True).encode()
    assert "0x" + merkle.hash_leaf(body).hex() == got["leaf_hash"]


def test_a_squatted_deal_action_id_raises_an_alarm_and_the_request_succeeds(
    relay_api: DealsApi, tmp_path: Path
) -> None:
    """A relayed transaction's hash is known before it is sent, so its action id
    (``action-relay-<hash>``) can be taken first (here by writing to the database directly,
    since the API refuses the namespace). The request still succeeds after the transaction is
    mined; the action is recorded under a derived id beside an integrity alarm."""
    api = relay_api
    created = _create(api)
    deal_id = created["deal"]["deal_id"]
    chain = Chain(api.devnet.rpc_url)
    accounts = derive_accounts(api.devnet.settings.mnemonic, 10)
    buyer = Account.from_key(accounts[DEVNET_PARTIES["buyer"]].private_key)
    client = EscrowClient(chain, api.escrow)
    client.approve_token(buyer, created["deal"]["token"])
    signed = sign_call(chain, buyer, client.contract.functions.fund(deal_id, 0, AMOUNT))
    tx_hash = signed.tx_hash.hex().removeprefix("0x")
    action_id = f"action-relay-{tx_hash[:24]}"
    squatter = prepare(
        {
            "id": action_id,
            "kind": "transaction",
            "timestamp": "2026-11-21T09:30:00Z",
            "actor": "mallory",
            "payload": {"action": "relay", "note": "taken first"},
        },
        submitter="key:mallory",
    )
    data_dir = tmp_path / "data"
    with open_log(data_dir) as log:
        log.append([squatter])

    with api.client("buyer") as buyer_api:
        relayed = buyer_api.post(
            "/v1/transactions", json={"raw_transaction": "0x" + signed.raw.hex()}
        )
        assert relayed.status_code == 200, relayed.text
        assert "MilestoneFunded" in relayed.json()["events"]
    assert client.deal(deal_id).milestones[0].funded == AMOUNT  # the money moved

    with open_log(data_dir) as log:
        assert log.entry(action_id).leaf_hash == squatter.leaf_hash  # left as found
        diverted = json.loads(log.entry(f"{action_id}:conflict:1").body or b"")
        assert diverted["submitter"] == "service:api"
        assert diverted["payload"]["action"] == "relay"
        assert diverted["payload"]["tx_hash"].removeprefix(
            "0x"
        ) == signed.tx_hash.hex().removeprefix("0x")
        assert integrity.count_alarms(log) == 1
        [alarm] = [
            e
            for e in log.scan(kind="admin", limit=10_000)
            if e.record_id.startswith(integrity.ALARM_PREFIX)
        ]
        payload = json.loads(alarm.body or b"")["payload"]
        assert payload["source"] == "api.deal-action" and payload["squatted_id"] == action_id
        assert payload["squatted_leaf_hash"] == squatter.leaf_hash.hex()
        assert payload["squatted_submitter"] == "key:mallory"
        assert payload["written_as"] == f"{action_id}:conflict:1"

    with api.client("auditor") as auditor:
        deadline = time.monotonic() + 10
        while True:
            metrics = auditor.get("/metrics").text
            if 'chainaudit_integrity_alarms_total{alarm="id-conflict"} 1' in metrics:
                break
            assert time.monotonic() < deadline, metrics
            time.sleep(0.2)
