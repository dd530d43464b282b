"""Proof bundles and verification over HTTP, against a real anchor on Anvil."""

from __future__ import annotations

import time
from typing import Any

import jsonschema
from eth_account import Account

from chainaudit.app.deploy import deploy_contracts
from chainaudit.chain.chain import Chain
from chainaudit.chain.devnet import Devnet
from chainaudit.core.bundle import schema
from chainaudit.core.records import prepare
from chainaudit.log.store import Log
from chainaudit.service.anchoring import AnchorBook, Anchorer, AnchorPolicy
from chainaudit.service.bundling import build_bundle
from chainaudit.verify.verifier import verify_bundle
from tests.api.conftest import Api


def _append_and_anchor(api: Api) -> None:
    with api.client("operator") as client:
        records = [
            {
                "id": f"b-{i}",
                "kind": "document",
                "timestamp": "2026-11-21T09:30:00Z",
                "actor": "inspector:sgs",
                "payload": {"lot": i, "result": "passed"},
            }
            for i in range(6)
        ]
        assert client.post("/v1/records/batch", json={"records": records}).status_code == 201
        pending = client.get("/v1/records/b-2/bundle")
        assert pending.status_code == 409 and pending.headers["retry-after"]
        assert pending.json()["type"].endswith("/proof-pending")
        assert client.post("/v1/anchors").status_code == 202
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            latest = client.get("/v1/checkpoints/latest").json()["latest_anchor"]
            if latest and latest["status"] in ("confirmed", "final"):
                return
            time.sleep(0.2)
        raise AssertionError("the anchor did not confirm")


def test_bundle_fetch_and_verify(api: Api) -> None:
    _append_and_anchor(api)
    with api.client("auditor") as auditor:
        bundle: dict[str, Any] = auditor.get("/v1/records/b-2/bundle").json()
        jsonschema.validate(bundle, schema())
        assert bundle["record"]["payload"] == {"lot": 2, "result": "passed"}
        verdict = auditor.post("/v1/verify", json=bundle).json()
        assert verdict["valid"] and verdict["chain_checked"], verdict
        assert {c["name"] for c in verdict["checks"]} >= {
            "record",
            "inclusion",
            "checkpoint",
            "block",
        }

        private = auditor.get("/v1/records/b-2/bundle", params={"include_record": "false"}).json()
        assert "record" not in private
        assert auditor.post("/v1/verify", json=private).json()["valid"]

        tampered = {
            **bundle,
            "record": {**bundle["record"], "payload": {"lot": 2, "result": "failed"}},
        }
        bad = auditor.post("/v1/verify", json=tampered).json()
        assert not bad["valid"] and bad["failed"] == ["record"]

        malformed = auditor.post("/v1/verify", json={"version": 1})
        assert malformed.status_code == 422 and malformed.json()["type"].endswith("/invalid-bundle")
        assert (
            auditor.get("/v1/schemas/proof-bundle-v1").json()["$schema"].endswith("2020-12/schema")
        )
    with api.client("other_partner") as stranger:
        assert stranger.get("/v1/records/b-2/bundle").status_code == 404


def test_verify_pins_the_services_own_contract_and_chain(api: Api, anvil: Devnet) -> None:
    """A bundle anchored in an AuditAnchor an attacker deployed on the same chain is internally
    flawless, and its contract holds its checkpoint: only the pin refuses it."""
    _append_and_anchor(api)
    chain = Chain(anvil.rpc_url)
    attacker = Account.from_key(anvil.accounts[5].private_key)
    theirs = deploy_contracts(chain, attacker)["AuditAnchor"].address
    forged_dir = api.settings.data_dir.parent / "forged"
    with Log.open(forged_dir) as log:
        log.append(
            [
                prepare(
                    {
                        "id": f"b-{i}",
                        "kind": "document",
                        "timestamp": "2026-11-21T09:30:00Z",
                        "actor": "inspector:sgs",
                        "payload": {"lot": i, "result": "passed, trust me"},
                    }
                )
                for i in range(6)
            ]
        )
        anchorer = Anchorer(log, chain, attacker, theirs, policy=AnchorPolicy(finality=10_000))
        anchorer.anchor_now(timeout=60)
        anchorer.close()
        book = AnchorBook(log)
        forged = build_bundle(log, book, "b-2")
        book.close()
    assert verify_bundle(forged, chain=chain).valid  # unpinned, it would pass
    with api.client("auditor") as auditor:
        verdict = auditor.post("/v1/verify", json=forged).json()
        assert verdict["valid"] is False and verdict["failed"] == ["contract"], verdict
        contract = next(c for c in verdict["checks"] if c["name"] == "contract")
        assert f"you expect {api.settings.anchor_contract}" in contract["detail"]
        genuine = auditor.get("/v1/records/b-2/bundle").json()
        ok = auditor.post("/v1/verify", json=genuine).json()
        assert ok["valid"] and ok["warnings"] == [], ok
        claimed = {**genuine, "anchor": {**genuine["anchor"], "status": "final"}}
        depth = chain.block_number() - genuine["anchor"]["block_number"] + 1
        assert depth < api.settings.finality  # a few blocks: the attacker's deployment
        refused = auditor.post("/v1/verify", json=claimed).json()
        assert refused["failed"] == ["block"], refused
        assert "the bundle says the anchor is final" in refused["checks"][5]["detail"]
