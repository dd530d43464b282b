"""Masking by role (issue 18) over HTTP, on a real server, a real SQLite log and Anvil.

A data policy marks fields personal: the contact and IBAN of ``transaction`` records, and —
to exercise the statement's embedded bundles, whose records are the indexer's escrow events
— the ``block_hash`` of ``escrow_event`` records. An auditor or regulator key without the
personal-data permission must never receive one of those values through any endpoint: the
raw bytes of every response are searched. Every GET route of the OpenAPI document is either
fetched here or listed as carrying no record content, so a new route cannot slip past.
Two admins grant the permission; the key then reads the values (each read logged as such),
and one admin withdraws it again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chainaudit.chain.devnet import Devnet
from chainaudit.log.store import DB_NAME
from chainaudit.service.keys import KeyStore
from tests.api.conftest import database_url_for, open_log
from tests.api.test_deals_api import DealsApi, _act, _create, open_deals_api

SECRET_NAME = "Grete Q. Zwanziger-Olschewski"
SECRET_EMAIL = "grete.zwanziger@example.invalid"
SECRET_IBAN = "DE44500105175407324931"
POLICY = {
    "kinds": {
        "transaction": {
            "personal": ["/contact/name", "/contact/email", "/iban"],
            "allowed": ["deal_id", "po_number", "amount", "contact", "iban"],
        },
        "escrow_event": {"personal": ["/block_hash"]},
    }
}

NO_RECORD_CONTENT = {
    "/": "the page's HTML",
    "/web/{name}": "the page's static files",
    "/docs": "OpenAPI viewer",
    "/redoc": "OpenAPI viewer",
    "/docs/assets/{name}": "the viewers' static files",
    "/healthz": "liveness",
    "/readyz": "readiness",
    "/metrics": "request counters",
    "/v1/config": "chain endpoint and contracts",
    "/v1/me": "the key's own description",
    "/v1/keys": "key descriptions (admin only)",
    "/v1/checkpoints/latest": "size and root",
    "/checkpoint": "the signed checkpoint: origin, size, root, signatures",
    "/v1/consistency": "hashes",
    "/v1/anchors": "anchor transactions",
    "/v1/schemas/proof-bundle-v1": "the bundle's JSON Schema",
}
"""GET routes that return no record or payload (fetched anyway below where they answer)."""


@pytest.fixture
def masked_api(
    tmp_path: Path, anvil: Devnet, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[DealsApi, Path]]:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    monkeypatch.setenv("CHAINAUDIT_DATA_POLICY_FILE", str(policy))
    monkeypatch.setenv("CHAINAUDIT_READ_AUDIT_SECONDS", "0.3")
    # entry bundles on: even then, no bundle holding a private kind's record is served
    monkeypatch.setenv("CHAINAUDIT_TILES_ENTRIES", "true")
    with open_deals_api(tmp_path, anvil) as api:
        data = tmp_path / "data"
        store = KeyStore(data / DB_NAME, database_url=database_url_for(data))
        for role, name in (
            ("regulator", "regulator"),
            ("auditor", "trusted auditor"),
            ("admin", "admin1"),
            ("admin", "admin2"),
        ):
            api.tokens[name] = store.create(role, name=name)[1]
        store.close()
        yield api, tmp_path / "data"


def _key_id(token: str) -> str:
    return token.split("_")[1]


def _wait(check: Any, what: str, seconds: float = 45) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def _reads(data_dir: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    with open_log(data_dir) as log:
        for entry in log.scan(kind="admin", limit=100_000):
            if entry.record_id.startswith("read:") and entry.body is not None:
                found.extend(json.loads(entry.body)["payload"]["reads"])
    return found


def _everything(client: httpx.Client, deal_id: int, buyer: str, openapi: dict[str, Any]) -> dict:
    """Every response a reader gets about the deal and the personal record, by request."""
    got: dict[str, httpx.Response] = {}

    def get(path: str, **params: Any) -> httpx.Response:
        response = client.get(path, params=params or None)
        got[f"GET {path} {params or ''}"] = response
        return response

    record = "po-77"
    get(f"/v1/records/{record}")
    get("/v1/records")
    get("/v1/records", kind="transaction")
    get("/v1/records", kind="escrow_event")
    get(f"/v1/records/{record}/proof")  # the fast lane
    get(
        f"/v1/records/{record}/proof",
        tree_size=client.get("/v1/checkpoints/latest").json()["tree_size"],
    )
    bundle = get(f"/v1/records/{record}/bundle")
    get(f"/v1/records/{record}/bundle", include_record="true", since_size=1)
    verdict = client.post("/v1/verify", json=bundle.json())
    got["POST /v1/verify"] = verdict
    get(f"/v1/deals/{deal_id}/trace")
    get(f"/v1/deals/{deal_id}")
    get(f"/v1/deals/{deal_id}/parties")
    get("/v1/deals")
    get(f"/v1/statements/{buyer}", bundles="true")
    get(f"/v1/statements/{buyer}", format="csv")
    get("/v1/alerts")
    get("/v1/approvals")
    size = client.get("/v1/checkpoints/latest").json()["tree_size"]
    width = f"{size:03d}" if size == 256 else f"000.p/{size % 256}"
    entries = get(f"/tile/entries/{width}")  # anonymous, outside the API's visibility rules
    assert entries.status_code == 404 and "keeps private" in entries.text, entries.text
    assert get(f"/tile/0/{width}").status_code == 200  # the leaf hashes stay public
    for path in NO_RECORD_CONTENT:
        if "{" not in path:
            get(path)
    # every GET route of the API is fetched above or carries no record content
    fetched = {key.split()[1] for key in got}
    templated = {
        "/v1/records/{record_id}": f"/v1/records/{record}",
        "/v1/records/{record_id}/proof": f"/v1/records/{record}/proof",
        "/v1/records/{record_id}/bundle": f"/v1/records/{record}/bundle",
        "/v1/deals/{deal_id}/trace": f"/v1/deals/{deal_id}/trace",
        "/v1/deals/{deal_id}": f"/v1/deals/{deal_id}",
        "/v1/statements/{address}": f"/v1/statements/{buyer}",
        "/v1/alerts/{alert_id}": None,  # an alert carries its ids and outcome, no payload
        "/v1/alerts/{alert_id}/replay": None,  # the rules re-run on the deal's figures
        "/v1/deals/{deal_id}/parties": f"/v1/deals/{deal_id}/parties",
        "/v1/approvals/{approval_id}": None,  # a request's parameters, no record
        "/tile/{path}": f"/tile/entries/{width}",
    }
    for path, item in openapi["paths"].items():
        if "get" not in item or path in NO_RECORD_CONTENT:
            continue
        assert path in templated or path in fetched, f"GET {path} is not checked for masking"
        if templated.get(path) is not None:
            assert templated[path] in fetched
    return got


def _secrets_in(got: dict[str, httpx.Response], secrets: list[str]) -> list[str]:
    return [
        f"{request}: {secret}"
        for request, response in got.items()
        for secret in secrets
        if secret.encode() in response.content
    ]


def test_personal_fields_are_masked_for_auditors_and_regulators_without_the_permission(
    masked_api: tuple[DealsApi, Path],
) -> None:
    api, data_dir = masked_api
    buyer = api.addresses["buyer"]
    deal_id = _create(api)["deal"]["deal_id"]
    assert _act(api, "buyer", deal_id, 0, "fund").status_code == 200
    payload = {
        "deal_id": deal_id,
        "po_number": "PO-77",
        "amount": 5,
        "contact": {"name": SECRET_NAME, "email": SECRET_EMAIL},
        "iban": SECRET_IBAN,
    }
    record = {"id": "po-77", "kind": "transaction", "timestamp": "2026-11-21T09:30:00Z"}
    with api.client("buyer") as partner:
        # minimum necessary: an undeclared field is refused, naming it
        refused = partner.post(
            "/v1/records",
            json={**record, "actor": buyer, "payload": {**payload, "birthday": "1970-01-01"}},
        )
        assert refused.status_code == 422, refused.text
        problem = refused.json()
        assert problem["type"].endswith("/undeclared-fields")
        assert "birthday" in problem["detail"] and "'transaction'" in problem["detail"]
        assert problem["errors"][0]["pointer"] == "/payload/birthday"
        posted = partner.post("/v1/records", json={**record, "actor": buyer, "payload": payload})
        assert posted.status_code == 201, posted.text
        own = partner.get("/v1/records/po-77").json()  # a partner reads its own record whole
        assert own["record"]["payload"]["iban"] == SECRET_IBAN and own["masked"] is False
        salt = own["record"]["salt"]  # with it and the leaf hash, guesses could be confirmed

    with api.client("auditor") as auditor:
        funded = _wait(
            lambda: [
                e
                for e in auditor.get(f"/v1/deals/{deal_id}/trace").json()["entries"]
                if e["event"] == "MilestoneFunded"
            ],
            "the indexer to record the funding",
        )
    with api.client("operator") as operator:
        assert operator.post("/v1/anchors").status_code == 202
    with api.client("admin1") as admin:
        # what the escrow_event secret is: read with an unmasked (officer) key
        event = admin.get(f"/v1/records/{funded[0]['record_id']}").json()
        block_hash = event["record"]["payload"]["block_hash"]
        _wait(
            lambda: admin.get("/v1/records/po-77/bundle").status_code == 200,
            "the record to be anchored",
        )
    secrets = [SECRET_NAME, SECRET_EMAIL, SECRET_IBAN, block_hash, salt]
    with api.client("auditor") as probe:
        openapi = probe.get("/openapi.json").json()

    for who in ("auditor", "regulator"):
        with api.client(who) as reader:
            got = _everything(reader, deal_id, buyer, openapi)
        assert _secrets_in(got, secrets) == []
        shown = got["GET /v1/records/po-77 "].json()
        assert shown["masked"] is True
        assert shown["record"]["payload"]["contact"] == {
            "name": "[personal]",
            "email": "[personal]",
        }
        assert shown["record"]["payload"]["po_number"] == "PO-77"  # not personal: shown
        bundle = got["GET /v1/records/po-77/bundle "].json()
        assert "record" not in bundle and bundle["withheld"].startswith("personal data")
        verdict = got["POST /v1/verify"].json()
        assert verdict["valid"] is True, verdict
        record_check = next(c for c in verdict["checks"] if c["name"] == "record")
        assert "record withheld" in record_check["detail"]
        lines = got["GET /v1/statements/" + buyer + " {'bundles': 'true'}"].json()["lines"]
        assert lines and all("record" not in line["bundle"] for line in lines if "bundle" in line)
        assert any("withheld" in line.get("bundle", {}) for line in lines)
        trace = got[f"GET /v1/deals/{deal_id}/trace "].json()["entries"]
        assert any(e["record_id"] == "po-77" and e["masked"] for e in trace)

    # the permission: requested by one admin, approved by a second, then unmasked
    trusted_id = _key_id(api.tokens["trusted auditor"])
    with api.client("admin1") as admin1, api.client("admin2") as admin2:
        assert (
            admin1.post(f"/v1/keys/{_key_id(api.tokens['admin2'])}/personal-data").status_code
            == 409
        )
        requested = admin1.post(f"/v1/keys/{trusted_id}/personal-data")
        assert requested.status_code == 202, requested.text
        approval = requested.json()["approval_id"]
        assert requested.json()["action"] == "keys.grant-personal-data"
        assert admin1.post(f"/v1/approvals/{approval}/approve").status_code == 403  # same officer
        with api.client("trusted auditor") as trusted:
            still = trusted.get("/v1/records/po-77").json()
            assert still["masked"] is True  # nothing changes before the second admin
        approved = admin2.post(f"/v1/approvals/{approval}/approve")
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "executed"
        listed = {k["key_id"]: k for k in admin1.get("/v1/keys").json()}
        assert listed[trusted_id]["personal_data"] is True

    with api.client("trusted auditor") as trusted:
        got = _everything(trusted, deal_id, buyer, openapi)
    assert not got["GET /v1/records/po-77 "].json()["masked"]
    assert SECRET_IBAN.encode() in got["GET /v1/records/po-77 "].content
    assert SECRET_EMAIL.encode() in got["GET /v1/records/po-77/bundle "].content
    assert "withheld" not in got["GET /v1/records/po-77/bundle "].json()
    assert (
        block_hash.encode() in got["GET /v1/statements/" + buyer + " {'bundles': 'true'}"].content
    )

    # each unmasked read is logged as one, naming the key
    def unmasked() -> set[str]:
        return {
            r["what"]
            for r in _reads(data_dir)
            if r["key"] == f"key:{trusted_id}" and r.get("personal_data") is True
        }

    kinds = {"record", "proof", "bundle", "trace", "statement", "records"}
    _wait(lambda: kinds <= unmasked(), "the unmasked reads to be logged")
    masked_reads = [r for r in _reads(data_dir) if r["role"] == "regulator"]
    assert masked_reads and not any("personal_data" in r for r in masked_reads)

    # one admin withdraws the permission: masked again at once
    with api.client("admin1") as admin1:
        withdrawn = admin1.delete(f"/v1/keys/{trusted_id}/personal-data")
        assert withdrawn.status_code == 200 and withdrawn.json()["personal_data"] is False
    with api.client("trusted auditor") as trusted:
        again = trusted.get("/v1/records/po-77")
        assert again.json()["masked"] is True and SECRET_IBAN.encode() not in again.content
