"""An API started with ``database_url`` keeps its API keys, record index, risk tables and data
keys in that PostgreSQL database, beside the log (none of them in ``log.sqlite``, no
``keys.sqlite``), and finds them again after a restart."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
from pathlib import Path

import httpx
import pytest

from chainaudit.api.server import ServerThread
from chainaudit.chain.devnet import Devnet, free_port
from chainaudit.log import database
from tests.api.conftest import issue_keys, make_settings

# Once, not once per engine (tests/api/conftest.py): about PostgreSQL itself: it names database_url.
pytestmark = pytest.mark.one_engine("about PostgreSQL itself: it names database_url")

MOVED = {
    "api_keys",
    "record_index",
    "record_index_cursor",
    "record_parties",
    "risk_sync",
    "risk_rule_sets",
    "risk_alerts",
    "risk_executions",
    "key_runs",
    "data_keys",
}
"""The tables of the stores that follow the log's database."""


def _count(url: str, sql: str) -> int:
    db = database.connect(url)
    try:
        return int(db.execute(sql).fetchone()[0])
    finally:
        db.close()


def test_an_api_on_postgresql_keeps_keys_index_and_risk_tables_there(
    tmp_path: Path, anvil: Devnet, database_url: str
) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"kinds": {"transaction": {"encrypt": True}}}))
    settings = make_settings(
        tmp_path,
        anvil,
        database_url=database_url,
        data_policy_file=policy,
        master_key=base64.b64encode(os.urandom(32)).decode(),
    )
    tokens, _, _ = issue_keys(settings, anvil)
    records = [
        {
            "id": f"tx-{i}",
            "kind": "transaction" if i % 2 else "document",
            "timestamp": "2026-11-21T09:30:00Z",
            "actor": "supplier:acme",
            "payload": {"amount": i},
        }
        for i in range(6)
    ]
    headers = {"Authorization": f"Bearer {tokens['operator']}"}
    with (
        ServerThread(settings, free_port()) as server,
        httpx.Client(base_url=server.url, headers=headers, timeout=30) as client,
    ):
        sent = client.post("/v1/records/batch", json={"records": records})
        assert sent.status_code == 201, sent.text
        listed = client.get("/v1/records", params={"kind": "transaction"})
        assert listed.status_code == 200, listed.text
        assert [r["record_id"] for r in listed.json()["items"]] == ["tx-1", "tx-3", "tx-5"]
        assert client.get("/v1/alerts").status_code == 200
    db = database.connect(database_url)
    try:
        assert set(db.tables("")) >= MOVED
    finally:
        db.close()
    assert _count(database_url, "SELECT count(*) FROM api_keys") == len(tokens)
    indexed = _count(database_url, "SELECT count(*) FROM record_index")
    assert indexed >= len(records)  # and the API's own records (the read audit's)
    assert _count(database_url, "SELECT count(*) FROM record_index WHERE kind = 'document'") == 3
    assert _count(database_url, "SELECT count(*) FROM key_runs") == 1  # one run: one bundle
    file = sqlite3.connect(settings.data_dir / "log.sqlite")
    in_file = {name for (name,) in file.execute("SELECT name FROM sqlite_master")}
    file.close()
    assert not in_file & MOVED
    assert not (settings.data_dir / "keys.sqlite").exists()

    # A restart: the same tokens work, the index is where it was (nothing rebuilt), the
    # sealed records open with the keys kept in PostgreSQL.
    with (
        ServerThread(settings, free_port()) as server,
        httpx.Client(base_url=server.url, headers=headers, timeout=30) as client,
    ):
        assert _count(database_url, "SELECT next_index FROM record_index_cursor") >= indexed
        found = client.get("/v1/records/tx-3")
        assert found.status_code == 200, found.text
        assert found.json()["record"]["payload"] == {"amount": 3}
