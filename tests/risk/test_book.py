"""The risk tables are an index of the log: rebuilt from it they come out the same, applying a
record twice changes nothing, and a transition racing another is ignored, not applied twice;
on SQLite (the log's file) and on PostgreSQL (the log's database)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chainaudit.core.records import prepare
from chainaudit.log import database
from chainaudit.log.store import Log
from chainaudit.risk import ActionRequest, RiskBook, RiskGate, parse_rule_set, transition_alert
from chainaudit.risk.book import audit_tables
from chainaudit.risk.decisions import alert_transition_record
from tests.risk.conftest import rules

BUYER = "0x1111111111111111111111111111111111111111"


@pytest.fixture
def log(data_dir: Path, log_at: Callable[..., Log]) -> Iterator[Log]:
    with log_at(data_dir) as opened:
        yield opened


def execute(log: Log, sql: str, *params: object) -> list[tuple[object, ...]]:
    """Run ``sql`` straight on ``log``'s database (behind the risk tables' back)."""
    db = database.connect(log.database_url or log.path)
    try:
        cursor = db.execute(sql, params)
        return [tuple(row) for row in cursor.fetchall()] if sql.startswith("SELECT") else []
    finally:
        db.close()


def hold_request(amount: int) -> ActionRequest:
    return ActionRequest(
        action="release",
        deal_id=3,
        milestone=1,
        amount=amount,
        token="0x4444444444444444444444444444444444444444",
        party=BUYER,
        actor=BUYER,
        parties={"buyer": BUYER},
    )


def test_tables_rebuild_from_the_log_and_apply_idempotently(log: Log) -> None:
    gate = RiskGate(
        log,
        parse_rule_set(
            rules({"id": "big", "type": "amount_above", "severity": "high", "threshold": "10"})
        ),
    )
    first = gate.check(hold_request(11), at=1_800_000_000)
    second = gate.check(hold_request(12), at=1_800_000_000)
    book = gate.book
    transition_alert(log, book, str(first.alert_id), "acknowledged", by="a")
    transition_alert(log, book, str(first.alert_id), "resolved", by="a", resolution="confirmed")
    # a second acknowledgement prepared before the first was applied: recorded, but ignored
    stale = alert_transition_record(book, str(second.alert_id), "acknowledged", by="b")
    transition_alert(log, book, str(second.alert_id), "acknowledged", by="a")
    log.append([stale])
    log.append(
        [
            prepare(
                {
                    "id": f"doc-{i}",
                    "kind": "document",
                    "timestamp": "2026-01-01T00:00:00Z",
                    "actor": "x",
                    "payload": {},
                }
            )
            for i in range(20)
        ]
    )
    book.sync(log)
    before = {a.alert_id: a for a in book.alerts()}
    assert before[str(second.alert_id)].acknowledged_by == "a"
    assert len(before[str(second.alert_id)].records) == 2  # the stale one is not applied
    ((cursor,),) = execute(log, "SELECT next_index FROM risk_sync")
    assert cursor == log.size  # past the trailing documents: no rescans

    execute(log, "UPDATE risk_sync SET next_index = 0")
    book.sync(log)  # everything applied a second time
    assert {a.alert_id: a for a in book.alerts()} == before
    with RiskBook(log.path, database_url=log.database_url) as other:
        other.rebuild(log)
        assert {a.alert_id: a for a in other.alerts()} == before
        assert [e.hash for e in other.rule_sets()] == [gate.rule_set.hash]
    gate.close()


def test_audit_tables_rebuilds_what_the_records_imply_and_names_edited_rows(log: Log) -> None:
    assert audit_tables(log) == []  # a log without risk tables: nothing checked, none created
    db = database.connect(log.database_url or log.path)
    assert not db.has_table("risk_alerts")
    db.close()
    gate = RiskGate(
        log,
        parse_rule_set(
            rules({"id": "big", "type": "amount_above", "severity": "high", "threshold": "10"})
        ),
    )
    held = str(gate.check(hold_request(11), at=1_800_000_000).alert_id)
    other = str(gate.check(hold_request(12), at=1_800_000_000).alert_id)
    acknowledged, _ = transition_alert(log, gate.book, held, "acknowledged", by="officer-1")
    gate.book.sync(log)
    assert audit_tables(log) == []
    # a decision appended but not synced yet: the tables are behind, not wrong
    log.append([alert_transition_record(gate.book, other, "acknowledged", by="officer-2")])
    assert audit_tables(log) == []

    def edit(sql: str, *params: object) -> None:
        execute(log, sql, *params)

    # the partner's forged clearance, written straight into the alerts table
    edit(
        "UPDATE risk_alerts SET status = 'resolved', resolution = 'cleared', "
        "resolved_by = 'key:compliance-officer' WHERE alert_id = ?",
        held,
    )
    (finding,) = audit_tables(log)
    assert (finding.problem, finding.index) == ("risk", log.entry(acknowledged).index)
    assert f"risk_alerts row {held!r} differs from what its decision records imply" in (
        finding.detail
    )
    assert "status is 'resolved', the records say 'acknowledged'" in finding.detail
    assert "resolution is 'cleared', the records say None" in finding.detail

    (announcement,) = gate.book.rule_sets()
    edit("DELETE FROM risk_rule_sets")
    edit(
        "INSERT INTO risk_executions VALUES ('dec-x', 'rec-x', 'release', ?, '5', '[]', '3', "
        "'0xab', 0, 1)",
        BUYER,
    )
    findings = audit_tables(log)
    assert {f.problem for f in findings} == {"risk"} and len(findings) == 3
    details = {f.record_id: f.detail for f in findings}
    assert details[None].startswith(f"risk_alerts row {held!r} differs")
    rule_set = announcement.record_id
    assert details[rule_set] == (
        f"risk_rule_sets row {rule_set!r} is missing: the log's decision records imply it"
    )
    assert details["rec-x"] == (
        "risk_executions row 'dec-x' is implied by no decision record of the log"
    )
    gate.close()
