"""Minimum necessary at the door (issue 18): a kind whose data policy declares its payload
fields refuses records carrying others — over HTTP (422 naming each field) and in
``chainaudit ingest`` (exit 2 naming the line, nothing appended); other kinds are unchanged."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from chainaudit.api.server import ServerThread
from chainaudit.chain.devnet import Devnet, free_port
from chainaudit.log.store import DB_NAME, Log
from tests.api.conftest import Api, issue_keys, make_settings
from tests.cli.test_cli_edges import NO_DATA_ENV, assert_one_line, chainaudit

POLICY = {"kinds": {"document": {"allowed": ["title", "sha256"]}}}


@pytest.fixture
def closed(tmp_path: Path, anvil: Devnet) -> Iterator[Api]:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    settings = make_settings(tmp_path, anvil, data_policy_file=policy)
    tokens, partner, other = issue_keys(settings, anvil)
    with ServerThread(settings, free_port(), run_anchorer=False) as server:
        yield Api(server.url, settings, tokens, partner, other)


def _record(i: int, kind: str, payload: dict[str, object], actor: str) -> dict[str, object]:
    return {
        "id": f"doc-{i}",
        "kind": kind,
        "timestamp": "2026-11-21T09:30:00Z",
        "actor": actor,
        "payload": payload,
    }


def test_undeclared_fields_are_refused_naming_them(closed: Api) -> None:
    api = closed
    me = api.partner_address
    with api.client("partner") as partner:
        ok = partner.post("/v1/records", json=_record(1, "document", {"title": "BL"}, me))
        assert ok.status_code == 201, ok.text
        # a kind the policy does not close keeps accepting any field
        other = _record(2, "transaction", {"anything": 1, "at all": 2}, me)
        assert partner.post("/v1/records", json=other).status_code == 201
        batch = partner.post(
            "/v1/records/batch",
            json={
                "records": [
                    _record(3, "document", {"title": "ok"}, me),
                    _record(4, "document", {"title": "x", "phone": "1", "a/b": 2}, me),
                ]
            },
        )
        assert batch.status_code == 422, batch.text
        problem = batch.json()
        assert problem["type"].endswith("/undeclared-fields")
        assert problem["detail"].startswith("records[1]: payload field(s) a/b, phone are not ")
        assert "allows only sha256, title" in problem["detail"]
        assert [e["pointer"] for e in problem["errors"]] == [
            "/records/1/payload/a~1b",
            "/records/1/payload/phone",
        ]
        # all or nothing: the good record of the refused batch was not appended
        assert partner.get("/v1/records/doc-3").status_code == 404


# Once: the CLI's ingest into a fresh data directory's SQLite file (asserts none is created).
@pytest.mark.one_engine("the CLI's ingest, no API: asserts no log.sqlite is created")
def test_ingest_refuses_a_line_with_undeclared_fields_before_appending(tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    lines = [
        _record(1, "document", {"title": "a"}, "inspector:sgs"),
        _record(2, "transaction", {"free": "form"}, "buyer:acme"),
        _record(3, "document", {"title": "b", "email": "x@example.invalid"}, "inspector:sgs"),
    ]
    source = tmp_path / "records.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    data = tmp_path / "data"
    env = {**NO_DATA_ENV, "CHAINAUDIT_DATA_DIR": str(data)}
    refused = subprocess.run(
        chainaudit("ingest", str(source)),
        env={**env, "CHAINAUDIT_DATA_POLICY_FILE": str(policy)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    line = assert_one_line(refused)
    assert line.startswith("chainaudit: line 3: payload field(s) email are not declared for ")
    assert not (data / DB_NAME).exists()  # nothing appended, no log created
    # without the policy the same file is ingested whole
    taken = subprocess.run(
        chainaudit("ingest", "--quiet", str(source)),
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert taken.returncode == 0, taken.stderr
    with Log.open(data) as log:
        assert log.size == 3
