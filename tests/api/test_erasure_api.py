"""Erasure over HTTP against a real server, a real log sealed at rest and a real Anvil: an officer
requests it, a second officer's approval performs it; the new bundle verifies as erased and an
old one fails its record check at ``POST /v1/verify``; bad requests get problem+json."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chainaudit.api.server import ServerThread
from chainaudit.chain.devnet import Devnet, free_port
from tests.api.conftest import Api, issue_keys, make_settings, stored_bodies

SECRET = "Wang Fang, +86 139 0000 0000"


@pytest.fixture
def sealed_api(tmp_path: Path, anvil: Devnet) -> Iterator[Api]:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"kinds": {"transaction": {"encrypt": True}}}))
    settings = make_settings(
        tmp_path,
        anvil,
        data_policy_file=policy,
        master_key=base64.b64encode(os.urandom(32)).decode(),
    )
    tokens, partner, other = issue_keys(settings, anvil)
    with ServerThread(settings, free_port()) as server:
        yield Api(server.url, settings, tokens, partner, other)


def anchor(client: httpx.Client, size: int) -> None:
    assert client.post("/v1/anchors").status_code == 202
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        latest = client.get("/v1/checkpoints/latest").json()["latest_anchor"]
        if latest and latest["status"] in ("confirmed", "final") and latest["tree_size"] >= size:
            return
        time.sleep(0.2)
    raise AssertionError("the anchor did not confirm")


def test_two_officers_erase_a_sealed_record_and_its_bundles_say_so(sealed_api: Api) -> None:
    records = [
        {
            "id": f"tx-{i}",
            "kind": "transaction",
            "timestamp": "2026-11-21T09:30:00Z",
            "actor": "supplier:acme",
            "payload": {"contact": f"{SECRET} #{i}", "amount": i},
        }
        for i in range(4)
    ]
    with (
        sealed_api.client("operator") as operator,
        sealed_api.client("admin") as admin,
        sealed_api.client("auditor") as auditor,
    ):
        assert operator.post("/v1/records/batch", json={"records": records}).status_code == 201
        # sealed at rest, on either engine: the stored bodies (the rows are compressed: decoded,
        # not grepped from the file) hold no secret
        stored = stored_bodies(sealed_api.settings)
        assert all(SECRET.encode() not in stored[f"tx-{i}"] for i in range(4))
        anchor(operator, 4)
        old = auditor.get("/v1/records/tx-1/bundle").json()
        assert SECRET in old["record"]["payload"]["contact"]

        body = {"reason": "the data subject asked", "basis": "PIPL Art. 47"}
        requested = operator.post("/v1/records/tx-1/erasure", json=body)
        assert requested.status_code == 202, requested.text
        approval_id = requested.json()["approval_id"]
        assert auditor.get("/v1/records/tx-1").json()["record"] is not None  # nothing yet
        own = operator.post(f"/v1/approvals/{approval_id}/approve")
        assert own.status_code == 403
        assert own.headers["content-type"].startswith("application/problem+json")
        done = admin.post(f"/v1/approvals/{approval_id}/approve")
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "executed"
        assert done.json()["result"]["erasure_record_id"] == "erasure:1"
        assert auditor.get("/v1/records/tx-1").json()["record"] is None
        assert auditor.get("/v1/records/tx-2").json()["record"]["payload"]["amount"] == 2

        again = operator.post("/v1/records/tx-1/erasure", json=body)
        assert again.status_code == 409 and again.json()["type"].endswith("/already-erased")

        stale = auditor.post("/v1/verify", json=old).json()
        assert not stale["valid"]
        failed = [c for c in stale["checks"] if c["status"] == "fail"]
        assert [c["name"] for c in failed] == ["record"] and "erased" in failed[0]["detail"]

        anchor(operator, sealed_api_size(auditor))
        new = auditor.get("/v1/records/tx-1/bundle").json()
        assert "record" not in new and new["erasure"]["record"]["id"] == "erasure:1"
        verdict = auditor.post("/v1/verify", json=new).json()
        assert verdict["valid"], verdict
        checks = {c["name"]: c for c in verdict["checks"]}
        assert checks["erasure"]["status"] == "pass" and "erased" in checks["record"]["detail"]


def sealed_api_size(client: httpx.Client) -> int:
    return int(client.get("/v1/checkpoints/latest").json()["tree_size"])


@pytest.mark.parametrize(
    ("role", "record_id", "body", "status", "slug"),
    [
        ("operator", "no-such", {"reason": "r", "basis": "b"}, 404, "not-found"),
        ("operator", "tx-0", {"reason": "r"}, 422, "validation"),
        ("operator", "tx-0", {"reason": "", "basis": "b"}, 422, "validation"),
        ("operator", "tx-0", {"reason": "r", "basis": "b", "x": 1}, 422, "validation"),
        ("partner", "tx-0", {"reason": "r", "basis": "b"}, 403, "forbidden"),
        ("auditor", "tx-0", {"reason": "r", "basis": "b"}, 403, "forbidden"),
    ],
)
def test_bad_erasure_requests_get_problem_json(
    api: Api, role: str, record_id: str, body: dict[str, object], status: int, slug: str
) -> None:
    record = {
        "id": "tx-0",
        "kind": "transaction",
        "timestamp": "2026-11-21T09:30:00Z",
        "actor": "a",
        "payload": {},
    }
    with api.client("operator") as operator:
        assert operator.post("/v1/records", json=record).status_code == 201
    with api.client(role) as client:
        answer = client.post(f"/v1/records/{record_id}/erasure", json=body)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["type"].endswith(f"/{slug}")
