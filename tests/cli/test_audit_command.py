"""``chainaudit audit`` names every edit of the database made behind the system's back: of a
record, of a signature, of the deal index, of the risk tables, and records written by someone
not entitled to them. A real log file, the real command, one edit per test."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from chainaudit.core import provenance
from chainaudit.core.records import PreparedRecord, prepare
from chainaudit.core.signing import sign_record
from chainaudit.log.record_index import RecordIndex
from chainaudit.log.store import Log
from chainaudit.risk.book import RiskBook
from chainaudit.service.anchoring import AnchorBook
from tests.cli.test_log_commands import run
from tests.tamper import stored_records, write_records

CHAIN_ID = 31337
ALICE = Account.from_key("0x" + "a1" * 32)
MALLORY = Account.from_key("0x" + "3a" * 32)
ALERT = "AL-1"


def record(i: int, **change: Any) -> dict[str, Any]:
    return {
        "id": f"rec-{i}",
        "kind": "transaction",
        "timestamp": "2026-11-21T09:30:00Z",
        "actor": "buyer:acme",
        "payload": {"amount": i * 100, "currency": "USD", "deal_id": "7"},
        **change,
    }


def alert_record(i: int, transition: str, **payload: Any) -> PreparedRecord:
    """A decision record of alert ``ALERT`` as the risk service writes it (stamped)."""
    return prepare(
        record(
            i,
            id=f"risk:alert:{i}",
            kind="decision",
            actor="risk-engine",
            payload={"type": "alert", "alert_id": ALERT, "transition": transition, **payload},
        ),
        submitter=provenance.RISK,
    )


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A log as current code writes it: partner records naming deal 7 (rec-5 signed by
    Alice), an alert opened and acknowledged by the risk service and the risk tables synced,
    all anchored on chain 31337. Audits clean."""
    directory = tmp_path / "data"
    with Log.open(directory) as log:
        partner = [
            prepare(record(i), submitter=provenance.key_submitter("buyer")) for i in range(8)
        ]
        signature = sign_record(ALICE, CHAIN_ID, "rec-5", partner[5].leaf_hash)
        log.append(partner, {"rec-5": (ALICE.address, signature)})
        opened = {
            "decision_id": "risk:decision:1",
            "subject": "release:7:1",
            "action": "release",
            "deal_id": "7",
            "milestone": 1,
            "severity": "high",
            "outcome": "hold",
            "owner": "risk@example.com",
            "rules": ["big"],
            "summary": "amount above 10",
        }
        log.append([alert_record(8, "opened", **opened)])
        log.append([alert_record(9, "acknowledged", by="key:officer-1")])
        with RiskBook(log.path) as book:
            book.sync(log)
            assert book.alert(ALERT).status == "acknowledged"
        with RecordIndex(log.path) as index:  # the deals' timelines, as the API keeps them
            index.sync(log)
        anchors = AnchorBook(log)
        anchors.create(log.size, log.root(), CHAIN_ID, "0x" + "cc" * 20)
        anchors.close()
    return directory


def edit(data: Path, change: Callable[[sqlite3.Connection], None]) -> None:
    db = sqlite3.connect(data / "log.sqlite")
    with db:
        change(db)
    db.close()


def test_a_log_written_by_current_code_audits_clean(data: Path) -> None:
    result = run(data, "audit")
    assert "audit: clean; 10 records" in result.stdout


def erase_and_relabel(db: sqlite3.Connection) -> None:
    records = stored_records(db)
    records[3] = records[3]._replace(
        record_id="note-3", kind="document", actor="nobody", timestamp_ms=0, body=None
    )
    write_records(db, records.values())
    db.execute("UPDATE record_ids SET record_id = 'note-3' WHERE idx = 3")


def rewrite_signatures(db: sqlite3.Connection) -> None:
    (alices,) = db.execute("SELECT signature FROM record_signatures").fetchone()
    db.execute("UPDATE record_signatures SET signer = ?", (MALLORY.address,))
    db.execute("INSERT INTO record_signatures VALUES ('rec-6', ?, ?)", (ALICE.address, alices))


def relink_deals(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM record_deals WHERE idx = 2")
    db.execute("INSERT INTO record_deals VALUES ('8', 4)")


def clear_alert(db: sqlite3.Connection) -> None:
    db.execute(
        "UPDATE risk_alerts SET status = 'resolved', resolution = 'cleared', "
        "resolved_by = 'key:compliance-officer' WHERE alert_id = ?",
        (ALERT,),
    )


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            erase_and_relabel,
            [
                "ERASED     index 3 record 'note-3': the record's content is gone",
                # the record index still holds what the relabelled row said before
                "RECORD-INDEX index 3 record 'note-3': record index: indexed as kind/actor/time "
                "('transaction', 'buyer:acme', 1795253400000), the record says ('document', "
                "'nobody', 0)",
            ],
        ),
        (
            rewrite_signatures,
            [
                f"SIGNATURE  index 5 record 'rec-5': stored as signed by {MALLORY.address}, "
                f"but the stored signature of this record's committed leaf was made by "
                f"{ALICE.address} on chain {CHAIN_ID}",
                f"SIGNATURE  index 6 record 'rec-6': stored as signed by {ALICE.address}",
            ],
        ),
        (
            relink_deals,
            [
                "RECORD-INDEX index 2 record 'rec-2': record index: names deal 7, missing from "
                "the deal's timeline",
                "RECORD-INDEX index 4 record 'rec-4': record index: deal 8 not named by the record",
            ],
        ),
        (
            clear_alert,
            [
                "RISK       index 9: risk_alerts row 'AL-1' differs from what its decision "
                "records imply: status is 'resolved', the records say 'acknowledged'",
            ],
        ),
    ],
    ids=["erased-and-relabelled", "signatures", "deal-index", "risk-alert"],
)
def test_each_database_edit_makes_audit_exit_1_and_name_it(
    data: Path, change: Callable[[sqlite3.Connection], None], named: list[str]
) -> None:
    edit(data, change)
    result = run(data, "audit", check_rc=1)
    lines = result.stdout.splitlines()
    for expected in named:
        assert any(line.startswith(expected) for line in lines), result.stdout
    assert lines[-1].startswith(f"audit: {len(named)} problem(s)"), result.stdout


def test_a_forged_clearance_in_the_log_is_named_unentitled(data: Path) -> None:
    """A partner's "clearance" that reached the log by direct access: hashed and committed
    like any record, but its stamped submitter may not write decisions."""
    with Log.open(data) as log:
        forged = prepare(
            record(
                10,
                id="clearance-1",
                kind="decision",
                payload={
                    "type": "alert",
                    "alert_id": ALERT,
                    "transition": "resolved",
                    "resolution": "cleared",
                    "by": "key:compliance-officer",
                },
            ),
            submitter=provenance.key_submitter("buyer"),
        )
        log.append([forged])
    report = json.loads(run(data, "audit", "--json", check_rc=1).stdout)
    problems = [(f["problem"], f["index"], f["record_id"]) for f in report["findings"]]
    assert ("unentitled", 10, "clearance-1") in problems
