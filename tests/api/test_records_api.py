"""Records, proofs and checkpoints over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account

from chainaudit.api.server import ServerThread
from chainaudit.chain.devnet import Devnet, free_port
from chainaudit.core import merkle
from chainaudit.core.records import prepare
from chainaudit.core.signing import sign_record
from tests.api.conftest import Api, issue_keys, make_settings

PROBLEM = "application/problem+json"


def record(i: int, **change: Any) -> dict[str, Any]:
    return {
        "id": f"api-{i}",
        "kind": "transaction",
        "timestamp": "2026-11-21T09:30:00Z",
        "actor": "buyer:acme",
        "payload": {"amount": i * 100, "currency": "USD"},
        **change,
    }


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["type"].endswith("/" + slug) and body["status"] == status
    assert body["title"] and body["detail"]
    assert body["instance"] == response.request.url.path
    return body


def test_append_read_prove_and_list(api: Api) -> None:
    with api.client("operator") as client:
        one = client.post("/v1/records", json=record(0))
        assert one.status_code == 201, one.text
        assert one.json()["results"] == [
            {"record_id": "api-0", "leaf_index": 0, "duplicate": False}
        ]
        batch = client.post("/v1/records/batch", json={"records": [record(i) for i in range(1, 6)]})
        assert batch.status_code == 201 and batch.json()["appended"] == 5
        # the action record naming the key follows each write: 0, action, 1..5, action
        assert [r["leaf_index"] for r in batch.json()["results"]] == [2, 3, 4, 5, 6]

        got = client.get("/v1/records/api-3").json()
        assert got["record"]["payload"] == {"amount": 300, "currency": "USD"}
        leaf = merkle.hash_leaf(
            json.dumps(got["record"], separators=(",", ":"), sort_keys=True).encode()
        )
        assert "0x" + leaf.hex() == got["leaf_hash"]  # 0x-hex everywhere (issue 14)

        proof = client.get("/v1/records/api-3/proof").json()
        merkle.verify_inclusion(
            _bytes(proof["leaf_hash"]),
            proof["leaf_index"],
            proof["tree_size"],
            [_bytes(h) for h in proof["inclusion_proof"]],
            _bytes(proof["checkpoint"]["root"]),
        )
        assert proof["checkpoint"]["tree_size"] == proof["tree_size"]
        latest = client.get("/v1/checkpoints/latest").json()
        assert latest["tree_size"] == 8 and latest["root"] == proof["checkpoint"]["root"]
        consistency = client.get("/v1/consistency", params={"from_size": 3}).json()
        merkle.verify_consistency(
            3,
            8,
            [_bytes(h) for h in consistency["proof"]],
            _bytes(consistency["from_root"]),
            _bytes(consistency["to_root"]),
        )

        page = client.get("/v1/records", params={"kind": "transaction", "limit": 4}).json()
        assert [r["record_id"] for r in page["items"]] == ["api-0", "api-1", "api-2", "api-3"]
        rest = client.get(
            "/v1/records", params={"kind": "transaction", "cursor": page["next_cursor"]}
        )
        assert [r["record_id"] for r in rest.json()["items"]] == ["api-4", "api-5"]
        admin = client.get("/v1/records", params={"kind": "admin"}).json()["items"]
        assert [r["record"]["payload"]["action"] for r in admin] == ["records.append"] * 2


def test_idempotent_retries_and_conflicts(api: Api) -> None:
    with api.client("operator") as client:
        batch = {"records": [record(i) for i in range(3)]}
        assert client.post("/v1/records/batch", json=batch).json()["appended"] == 3
        size = client.get("/v1/checkpoints/latest").json()["tree_size"]
        retry = client.post("/v1/records/batch", json=batch).json()
        assert (retry["appended"], retry["duplicates"]) == (0, 3)
        # a pure retry adds nothing, not even an action record
        assert client.get("/v1/checkpoints/latest").json()["tree_size"] == size
        changed = client.post(
            "/v1/records/batch", json={"records": [record(9), record(1, actor="x")]}
        )
        assert_problem(changed, 409, "conflict")
        assert client.get("/v1/records/api-9").status_code == 404  # all or nothing


def test_bad_input_gets_problems_not_5xx(api: Api) -> None:
    with api.client("operator") as client:
        body = assert_problem(
            client.post("/v1/records", json=record(1, payload={"a": 1.5})), 422, "invalid-record"
        )
        assert "floating-point" in body["detail"]
        body = assert_problem(
            client.post("/v1/records", json={**record(1), "extra": 1}), 422, "validation"
        )
        assert {"in": "body", "pointer": "/extra"}.items() <= body["errors"][0].items()
        assert_problem(
            client.post(
                "/v1/records", content=b"{not json", headers={"content-type": "application/json"}
            ),
            422,
            "invalid-json",
        )
        assert_problem(client.post("/v1/records/batch", json={"records": []}), 422, "validation")
        assert_problem(client.get("/v1/records/nope"), 404, "not-found")
        assert_problem(client.get("/v1/nowhere"), 404, "not-found")
        assert_problem(client.get("/v1/consistency", params={"from_size": 99}), 404, "not-found")
        huge = b'{"records": [' + b" " * (api.settings.max_body_bytes + 10) + b"]}"
        assert_problem(
            client.post(
                "/v1/records/batch", content=huge, headers={"content-type": "application/json"}
            ),
            413,
            "payload-too-large",
        )


def test_authentication_and_roles(api: Api) -> None:
    with api.client(None) as anonymous:
        response = anonymous.get("/v1/records")
        assert_problem(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"] == "Bearer"
        bad = anonymous.get("/v1/records", headers={"Authorization": "Bearer ca_000000000000_nope"})
        assert_problem(bad, 401, "unauthenticated")
    with api.client("auditor") as auditor:
        assert_problem(auditor.post("/v1/records", json=record(1)), 403, "forbidden")


def test_rate_limit_per_key(tmp_path: Path, anvil: Devnet) -> None:
    settings = make_settings(tmp_path, anvil, rate_limit_per_second=0.5, rate_limit_burst=5)
    tokens, _, _ = issue_keys(settings, anvil)
    with ServerThread(settings, free_port(), run_anchorer=False) as server:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": tokens["auditor"]}) as auditor:
            seen = [auditor.get("/v1/checkpoints/latest").status_code for _ in range(7)]
            assert seen[:5] == [200] * 5 and seen[5:] == [429, 429]
            limited = auditor.get("/v1/checkpoints/latest")
            assert_problem(limited, 429, "rate-limited")
            assert int(limited.headers["retry-after"]) >= 1
        with httpx.Client(base_url=server.url, headers={"X-API-Key": tokens["operator"]}) as other:
            assert other.get("/v1/checkpoints/latest").status_code == 200  # buckets are per key


def test_partner_sees_and_writes_only_its_own_records(api: Api) -> None:
    with api.client("operator") as operator:
        operator.post("/v1/records", json=record(1))
    with api.client("partner") as partner:
        own = record(2, actor=api.partner_address)
        assert partner.post("/v1/records", json=own).status_code == 201
        assert_problem(partner.post("/v1/records", json=record(3)), 403, "forbidden")
        assert partner.get("/v1/records/api-2").status_code == 200
        assert_problem(partner.get("/v1/records/api-1"), 404, "not-found")
        listed = partner.get("/v1/records").json()["items"]
        assert [r["record_id"] for r in listed] == ["api-2"]
    with api.client("other_partner") as other:
        assert_problem(other.get("/v1/records/api-2"), 404, "not-found")


def test_signed_records_store_the_signer_and_refuse_forgeries(api: Api, anvil: Devnet) -> None:
    signer = Account.from_key(anvil.accounts[5].private_key)
    doc = record(7, salt="ab" * 16)
    # The server stamps the submitter (the key's id) inside the hashed bytes, so a client
    # signing its own record hashes it with that field.
    key_id = api.tokens["operator"].split("_")[1]
    leaf = prepare(doc, submitter=f"key:{key_id}").leaf_hash
    assert leaf != prepare(doc).leaf_hash
    good = sign_record(signer, anvil.chain_id, doc["id"], leaf)
    other_chain = sign_record(signer, anvil.chain_id + 1, doc["id"], leaf)
    with api.client("operator") as client:
        forged = client.post(
            "/v1/records", json={**doc, "signature": other_chain, "signer": signer.address}
        )
        assert_problem(forged, 422, "invalid-signature")
        tampered = {**doc, "payload": {"amount": 1}, "signature": good, "signer": signer.address}
        assert_problem(client.post("/v1/records", json=tampered), 422, "invalid-signature")
        unsalted = {k: v for k, v in doc.items() if k != "salt"}
        assert_problem(
            client.post("/v1/records", json={**unsalted, "signature": good}), 422, "invalid-record"
        )
        ok = client.post("/v1/records", json={**doc, "signature": good, "signer": signer.address})
        assert ok.status_code == 201, ok.text
        assert client.get("/v1/records/api-7").json()["signer"] == signer.address


def test_health_ready_metrics_and_openapi(api: Api) -> None:
    with api.client("auditor") as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json()["status"] == "ready"
        metrics = client.get("/metrics").text
        assert (
            "chainaudit_log_size 0" in metrics and 'chainaudit_anchors{status="final"} 0' in metrics
        )
        assert "chainaudit_anchor_lag_seconds" in metrics
        schema = client.get("/openapi.json").json()
        assert "/v1/records/batch" in schema["paths"]
        assert client.get("/docs").status_code == 200


def test_proof_fast_lane_answers_like_the_regular_route(api: Api) -> None:
    with api.client("operator") as operator:
        operator.post("/v1/records/batch", json={"records": [record(i) for i in range(9)]})
    with api.client("auditor") as auditor:
        fast = auditor.get("/v1/records/api-4/proof")  # no query: served by the fast lane
        size = fast.json()["tree_size"]
        regular = auditor.get("/v1/records/api-4/proof", params={"tree_size": size})  # FastAPI
        assert fast.status_code == regular.status_code == 200
        assert fast.json() == regular.json()
        assert_problem(auditor.get("/v1/records/absent/proof"), 404, "not-found")
        metrics = auditor.get("/metrics").text
        assert 'route="/v1/records/{record_id}/proof",status="200"} 2' in metrics
    with api.client(None) as anonymous:
        assert_problem(anonymous.get("/v1/records/api-4/proof"), 401, "unauthenticated")
    with api.client("other_partner") as stranger:
        assert_problem(stranger.get("/v1/records/api-4/proof"), 404, "not-found")


def _bytes(value: str) -> bytes:
    """A hash from the API's JSON: ``0x`` and 64 hex digits, nothing else (issue 14)."""
    assert value.startswith("0x") and len(value) == 66, value
    return bytes.fromhex(value[2:])


def test_an_id_with_a_nul_names_no_record_on_either_engine(api: Api) -> None:
    """No valid id holds a NUL, so a path with one is a 404, never a 500 (PostgreSQL's text
    refuses NUL: the store must not ask it)."""
    with api.client("operator") as client:
        assert client.post("/v1/records", json=record(1)).status_code == 201
        for path in (
            "/v1/records/a%00b",
            "/v1/records/a%00b/proof",
            "/v1/records/a%00b/bundle",
            "/v1/records/%00/proof?tree_size=1",
        ):
            assert_problem(client.get(httpx.URL(api.url + path)), 404, "not-found")
