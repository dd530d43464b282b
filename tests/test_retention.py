"""Retention (:func:`chainaudit.service.erasure.run_retention`): exactly the expired records of the
kinds the policy declares are erased, in bounded batches, idempotently across restarts."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from chainaudit.core.datapolicy import DataPolicy
from chainaudit.core.records import PreparedRecord, prepare
from chainaudit.log import datakeys
from chainaudit.log.store import Log
from chainaudit.service import erasure
from tests.tamper import set_body

DAY_MS = 86_400_000
NOW_MS = 1_800_000_000_000  # 2027-01-15
POLICY = DataPolicy.parse(
    json.dumps({"kinds": {"transaction": {"retention_days": 30}, "document": {"personal": []}}})
)


def record(i: int, kind: str, age_days: float) -> PreparedRecord:
    from datetime import UTC, datetime  # noqa: PLC0415

    when = datetime.fromtimestamp((NOW_MS - age_days * DAY_MS) / 1000, UTC)
    return prepare(
        {
            "id": f"{kind}-{i}",
            "kind": kind,
            "timestamp": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "actor": "supplier:acme",
            "payload": {"contact": f"person {i}"},
        },
        submitter="service:risk" if kind == "decision" else None,
    )


def fill(log: Log) -> None:
    log.append(
        [
            record(0, "transaction", 31),  # expired
            record(1, "transaction", 29),  # kept: 1 day left
            record(2, "document", 400),  # kept: no retention for documents
            record(3, "transaction", 30.0001),  # expired just now
            record(4, "decision", 900),  # kept: a kind the policy does not name
            record(5, "transaction", 365),  # expired
        ]
    )


def run(log: Log, **options: object) -> dict[str, object]:
    return erasure.run_retention(log, POLICY, "ab" * 32, now_ms=NOW_MS, **options)  # type: ignore[arg-type]


def test_retention_erases_exactly_the_expired_records_of_the_declared_kinds(
    tmp_path: Path,
) -> None:
    with Log.open(tmp_path) as log:
        fill(log)
        dry = run(log, dry_run=True)
        assert (dry["would_erase"], dry["erased"]) == (3, 0) and log.size == 6
        summary = run(log)
        assert summary["erased"] == 3 and summary["remaining"] == 0
        assert summary["by_kind"] == {"transaction": 3}
        erased = {e.record_id for e in log.entries() if e.body is None}
        assert erased == {"transaction-0", "transaction-3", "transaction-5"}
        assert log.audit().clean
        payload = json.loads(log.entry("erasure:0").body or b"")["payload"]
        assert payload["policy_sha256"] == "ab" * 32 and payload["retention_days"] == 30
        assert "approved_by" not in payload


def test_retention_runs_in_bounded_batches_and_is_idempotent_across_restarts(
    tmp_path: Path,
) -> None:
    with Log.open(tmp_path) as log:
        fill(log)
        first = run(log, batch=2)
        assert (first["erased"], first["remaining"]) == (2, 1)
    with Log.open(tmp_path) as log:  # a restart
        second = run(log, batch=2)
        assert (second["erased"], second["remaining"]) == (1, 0)
        size = log.size
    with Log.open(tmp_path) as log:
        again = run(log)
        assert (again["erased"], again["remaining"]) == (0, 0) and log.size == size
        assert log.count_ids("erasure:") == 3
        assert log.audit().clean


def test_a_retention_run_destroys_the_key_an_interrupted_erasure_left(tmp_path: Path) -> None:
    at_rest = datakeys.AtRest(os.urandom(32), frozenset({"transaction"}))
    with Log.open(tmp_path, at_rest=at_rest) as log:
        fill(log)
        assert log.keyring().has_key(1)
    with sqlite3.connect(tmp_path / "log.sqlite") as db:  # the body gone, the key not yet
        set_body(db, "transaction-1", None)
    with Log.open(tmp_path, at_rest=at_rest) as log:
        assert run(log, dry_run=True)["orphan_keys_destroyed"] == 0
        assert run(log)["orphan_keys_destroyed"] == 1
        assert not log.keyring().has_key(1) and log.keyring().has_key(0) is False
        assert log.keyring().has_key(3) is False and log.keyring().count() == 0
