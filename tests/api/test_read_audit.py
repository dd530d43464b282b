"""Read-audit over HTTP against a real server and a real log: reads of records, proofs,
bundles, statements and listings by auditors, regulators and admins become ``read:`` records
(who, what, when), written in batches; partners' reads do not."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chainaudit.api.server import ServerThread
from chainaudit.chain.devnet import Devnet, free_port
from chainaudit.core import provenance
from tests.api.conftest import Api, issue_keys, make_settings, open_log


@pytest.fixture
def audited(tmp_path: Path, anvil: Devnet) -> Iterator[Api]:
    settings = make_settings(tmp_path, anvil, read_audit_batch=4, read_audit_seconds=0.5)
    tokens, partner, other = issue_keys(settings, anvil)
    with ServerThread(settings, free_port(), run_anchorer=False) as server:
        yield Api(server.url, settings, tokens, partner, other)


def _reads(api: Api) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every ``read:`` record's document and each read it lists."""
    found = []
    with open_log(api.settings) as log:
        for entry in log.scan(kind="admin", limit=10_000):
            if entry.record_id.startswith("read:") and entry.body is not None:
                document = json.loads(entry.body)
                found.extend((document, read) for read in document["payload"]["reads"])
    return found


def _wait_for(api: Api, count: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    deadline = time.monotonic() + 10
    while True:
        reads = _reads(api)
        if len(reads) >= count or time.monotonic() > deadline:
            return reads
        time.sleep(0.1)


def test_reads_by_auditors_regulators_and_admins_are_logged_in_batches(audited: Api) -> None:
    api = audited
    record = {"id": "inv-1", "kind": "document", "timestamp": "2026-01-01T00:00:00Z"}
    with api.client("partner") as partner:
        posted = partner.post(
            "/v1/records", json={**record, "actor": api.partner_address, "payload": {}}
        )
        assert posted.status_code == 201, posted.text
        assert partner.get("/v1/records/inv-1").status_code == 200
        assert partner.get("/v1/records/inv-1/proof").status_code == 200
        assert partner.get(f"/v1/statements/{api.partner_address}").status_code == 200
    before = time.time()
    with api.client("auditor") as auditor:
        assert auditor.get("/v1/records/inv-1").status_code == 200
        assert auditor.get("/v1/records/inv-1/proof").status_code == 200  # the fast lane
        assert auditor.get("/v1/records/inv-1/proof", params={"tree_size": 1}).status_code == 200
        assert (
            auditor.get(
                f"/v1/statements/{api.partner_address}", params={"format": "csv"}
            ).status_code
            == 200
        )
    # four reads fill a batch: written without waiting for the timer
    reads = _wait_for(api, 4)
    assert len(reads) == 4 and len({doc["id"] for doc, _ in reads}) == 1
    auditor_key = f"key:{api.tokens['auditor'].split('_')[1]}"
    assert [(r["key"], r["role"], r["what"], r["target"]) for _, r in reads] == [
        (auditor_key, "auditor", "record", "inv-1"),
        (auditor_key, "auditor", "proof", "inv-1"),
        (auditor_key, "auditor", "proof", "inv-1"),
        (auditor_key, "auditor", "statement", api.partner_address),
    ]
    assert reads[3][1]["detail"] == {"format": "csv"}
    for _, read in reads:  # when: RFC 3339, during the requests
        stamp = time.mktime(time.strptime(read["at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        assert before - 1 <= stamp <= time.time() + 1
    document = reads[0][0]
    assert document["submitter"] == provenance.API and provenance.document_entitled(document)
    assert document["payload"]["count"] == 4

    with api.client("regulator") as regulator:  # one read: written by the timer
        assert regulator.get("/v1/records", params={"kind": "document"}).status_code == 200
    with api.client("admin") as admin:
        assert admin.get("/v1/records/inv-1").status_code == 200
    reads = _wait_for(api, 6)
    assert [(r["role"], r["what"]) for _, r in reads[4:]] == [
        ("regulator", "records"),
        ("admin", "record"),
    ]
    assert reads[4][1]["target"] == "kind=document cursor=0" and reads[4][1]["detail"] == {
        "count": 1
    }
    # partners' and operators' reads were never logged
    with api.client("operator") as operator:
        assert operator.get("/v1/records/inv-1").status_code == 200
    time.sleep(1.2)
    assert {r["role"] for _, r in _reads(api)} == {"auditor", "regulator", "admin"}
