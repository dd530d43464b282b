"""The role matrix (each role x each operation: allowed or 403) and the API with the chain
down: reads and appends keep working, chain-bound writes answer 503 with Retry-After."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from chainaudit.api.server import ServerThread
from chainaudit.app.settings import Settings
from chainaudit.chain.devnet import Devnet, free_port
from tests.api.conftest import Api, issue_keys

ROLES = ("admin", "operator", "partner", "auditor", "regulator")
EVERYONE = set(ROLES)
WRITERS = {"admin", "operator", "partner"}


def _record(api: Api, role: str, n: int) -> dict[str, Any]:
    actor = api.partner_address if role == "partner" else "buyer:acme"
    return {
        "id": f"m-{role}-{n}",
        "kind": "transaction",
        "timestamp": "2026-11-21T09:30:00Z",
        "actor": actor,
        "payload": {"n": n},
    }


OPERATIONS: list[tuple[str, str, str, set[str]]] = [
    ("append", "POST", "/v1/records", WRITERS),
    ("append batch", "POST", "/v1/records/batch", WRITERS),
    ("list records", "GET", "/v1/records", EVERYONE),
    ("read record", "GET", "/v1/records/seed", EVERYONE - {"partner"}),
    ("inclusion proof", "GET", "/v1/records/seed/proof", EVERYONE - {"partner"}),
    ("latest checkpoint", "GET", "/v1/checkpoints/latest", EVERYONE),
    ("consistency", "GET", "/v1/consistency?from_size=1", EVERYONE),
    ("anchors", "GET", "/v1/anchors", EVERYONE),
    ("anchor now", "POST", "/v1/anchors", {"admin", "operator"}),
    ("list keys", "GET", "/v1/keys", {"admin"}),
    ("create key", "POST", "/v1/keys", {"admin"}),
    ("revoke key", "DELETE", "/v1/keys/000000000000", {"admin"}),
    ("grant personal data", "POST", "/v1/keys/000000000000/personal-data", {"admin"}),
    ("withdraw personal data", "DELETE", "/v1/keys/000000000000/personal-data", {"admin"}),
    ("list deals", "GET", "/v1/deals", EVERYONE),
    ("create deal", "POST", "/v1/deals", {"partner"}),  # as its buyer: the contract decides
    ("alerts", "GET", "/v1/alerts", EVERYONE - {"partner"}),
    ("statement", "GET", "/v1/statements/PARTNER", EVERYONE),
    ("who am I", "GET", "/v1/me", EVERYONE),
]

DEAL = {
    "supplier": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "arbiter": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    "inspectors": ["0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc"],
    "inspector_threshold": 1,
    "inspection_window": 86400,
    "dispute_timeout": 86400,
    "default_payee_bps": 5000,
    "long_stop": 4_000_000_000,
    "milestones": [
        {"amount": 1_234_567, "due_date": 3_900_000_000, "document_hash": "0x" + "ab" * 32}
    ],
}


def test_role_matrix(api_with_escrow: Api) -> None:
    api = api_with_escrow
    with api.client("operator") as operator:
        seed = {
            "id": "seed",
            "kind": "transaction",
            "timestamp": "2026-11-21T09:30:00Z",
            "actor": "buyer:acme",
            "payload": {},
        }
        assert operator.post("/v1/records", json=seed).status_code == 201
    outcomes: dict[tuple[str, str], int] = {}
    for role in ROLES:
        with api.client(role) as client:
            for n, (name, method, path, allowed) in enumerate(OPERATIONS):
                body: Any = None
                if path == "/v1/records":
                    body = _record(api, role, n) if method == "POST" else None
                elif path == "/v1/records/batch":
                    body = {"records": [_record(api, role, n)]}
                elif path == "/v1/keys" and method == "POST":
                    body = {"name": "made in test", "role": "auditor"}
                elif path == "/v1/deals" and method == "POST":
                    body = DEAL
                response = client.request(
                    method, path.replace("PARTNER", api.partner_address), json=body
                )
                outcomes[(role, name)] = response.status_code
                if role in allowed:
                    # allowed: past authorisation (a refusal by the contract or a missing
                    # resource is the operation's own answer, not a permission error)
                    assert response.status_code not in (401, 403), (role, name, response.text)
                    assert response.status_code < 500, (role, name, response.text)
                elif name in ("read record", "inclusion proof"):
                    assert response.status_code == 404, (role, name)  # no existence leak
                else:
                    assert response.status_code == 403, (role, name, response.text)
                    assert response.json()["type"].endswith("/forbidden")
    assert len(outcomes) == len(ROLES) * len(OPERATIONS)


def test_revoked_key_is_refused(api: Api) -> None:
    with api.client("admin") as admin:
        created = admin.post("/v1/keys", json={"name": "temp", "role": "auditor"}).json()
        with httpx.Client(base_url=api.url, headers={"X-API-Key": created["token"]}) as temp:
            assert temp.get("/v1/anchors").status_code == 200
            assert admin.delete(f"/v1/keys/{created['key_id']}").json()["revoked_ms"]
            assert temp.get("/v1/anchors").status_code == 401
        actions = admin.get("/v1/records", params={"kind": "admin"}).json()["items"]
        assert [a["record"]["payload"]["action"] for a in actions][-2:] == [
            "keys.create",
            "keys.revoke",
        ]


@pytest.fixture
def chain_down(tmp_path: Path, anvil: Devnet) -> Any:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = Settings(
        data_dir=tmp_path / "data",
        rpc_url=dead,
        rpc_timeout=1.0,
        anchor_contract="0x5FbDB2315678afecb367f032d93F642f64180aa3",
        anchorer_key=anvil.accounts[0].private_key,
    )
    tokens, _, _ = issue_keys(settings, anvil)
    with ServerThread(settings, free_port()) as server:
        yield server.url, tokens


def test_chain_down_reads_and_appends_work_chain_writes_503(chain_down: Any) -> None:
    url, tokens = chain_down
    with httpx.Client(base_url=url, headers={"X-API-Key": tokens["operator"]}, timeout=30) as c:
        record = {
            "id": "while-down",
            "kind": "transaction",
            "timestamp": "2026-11-21T09:30:00Z",
            "actor": "buyer:acme",
            "payload": {"amount": 1},
        }
        assert c.post("/v1/records", json=record).status_code == 201
        assert c.get("/v1/records/while-down").status_code == 200
        assert c.get("/v1/records/while-down/proof").status_code == 200
        anchor = c.post("/v1/anchors")
        assert anchor.status_code == 503 and anchor.headers["retry-after"]
        assert anchor.json()["type"].endswith("/chain-unavailable")
        signed = {**record, "id": "signed", "salt": "ab" * 16, "signature": "0x" + "11" * 65}
        response = c.post("/v1/records", json=signed)
        assert response.status_code == 503 and response.headers["retry-after"]
        ready = c.get("/readyz")
        assert ready.status_code == 503 and "chain: failed" in ready.json()["detail"]


def test_an_expired_key_gets_401_naming_when_and_a_rotated_key_works(api: Api) -> None:
    with api.client("admin") as admin:
        expires = int(time.time() * 1000) + 1_500
        created = admin.post(
            "/v1/keys", json={"name": "short-lived", "role": "auditor", "expires_ms": expires}
        ).json()
        assert created["expires_ms"] == expires
        with httpx.Client(base_url=api.url, headers={"X-API-Key": created["token"]}) as temp:
            assert temp.get("/v1/anchors").status_code == 200
            time.sleep(max(0.0, expires / 1000 - time.time()) + 0.2)
            refused = temp.get("/v1/anchors")
            assert refused.status_code == 401
            assert refused.headers["content-type"].startswith("application/problem+json")
            problem = refused.json()
            assert problem["type"].endswith("/key-expired")
            stamp = datetime.fromtimestamp(expires / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            assert problem["detail"] == (
                f"API key {created['key_id']} expired at {stamp}; ask an admin to rotate it"
            )
            proof = temp.get("/v1/records/nothing/proof")  # the fast lane refuses it too
            assert proof.status_code == 401 and proof.json()["type"].endswith("/key-expired")
        rotated = admin.post(f"/v1/keys/{created['key_id']}/rotate", json={})
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["key_id"] == created["key_id"] and rotated.json()["rotated_ms"]
        assert rotated.json()["expires_ms"] is None
        with httpx.Client(base_url=api.url, headers={"X-API-Key": created["token"]}) as old:
            assert old.get("/v1/anchors").json()["detail"] == "the API key is unknown or revoked"
        with httpx.Client(base_url=api.url, headers={"X-API-Key": rotated.json()["token"]}) as new:
            assert new.get("/v1/anchors").status_code == 200
        assert admin.post("/v1/keys/000000000000/rotate").status_code == 404
        actions = admin.get("/v1/records", params={"kind": "admin"}).json()["items"]
        assert [a["record"]["payload"]["action"] for a in actions][-2:] == [
            "keys.create",
            "keys.rotate",
        ]
