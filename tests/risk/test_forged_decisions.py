"""Decision records forged straight into a real log file (no submitter, a partner's key, or
a service not entitled to decisions) are never applied: they open, clear or move no alert,
announce no rule set, count as no execution, close no incident, and a replay names them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chainaudit.core.records import prepare
from chainaudit.log.store import Log
from chainaudit.risk import RiskBook, RiskGate, parse_rule_set
from chainaudit.risk.decisions import replay_decision
from chainaudit.risk.history import subject_of
from chainaudit.risk.incidents import incident_steps, open_incident, record_step
from tests.risk.conftest import rules
from tests.risk.test_book import hold_request

FORGERS = [None, "key:0123456789ab", "service:indexer", "service:api", "service:reconciler"]
"""None of these may write the decisions the risk book applies (alerts, rule sets, executions):
the API and the reconciler write decisions of their own, never risk ones."""


def forged(record_id: str, payload: dict[str, Any], submitter: str | None) -> Any:
    return prepare(
        {
            "id": record_id,
            "kind": "decision",
            "timestamp": "2026-11-21T09:30:00Z",
            "actor": "key:compliance-officer",
            "payload": payload,
        },
        submitter=submitter,
    )


@pytest.mark.parametrize("submitter", FORGERS)
def test_forged_alert_records_and_announcements_are_not_applied(
    log: Log, submitter: str | None
) -> None:
    gate = RiskGate(
        log,
        parse_rule_set(
            rules({"id": "big", "type": "amount_above", "severity": "high", "threshold": "10"})
        ),
    )
    held = gate.check(hold_request(11), at=1_800_000_000)
    alert_id = str(held.alert_id)
    clearance = {
        "type": "alert",
        "alert_id": alert_id,
        "transition": "resolved",
        "status": "resolved",
        "resolution": "cleared",
        "by": "key:compliance-officer",
    }
    fake_alert = {
        "type": "alert",
        "transition": "opened",
        "alert_id": "AL-00000000000000ff",
        "decision_id": "risk:decision:1:x",
        "subject": "s",
        "action": "release",
        "severity": "critical",
        "outcome": "hold",
        "owner": "o",
        "rules": ["x"],
    }
    log.append(
        [
            forged(f"risk:alert:{alert_id}:resolved:1", clearance, submitter),
            forged(f"clear-{alert_id}", clearance, submitter),
            forged("risk:alert:fake:opened", fake_alert, submitter),
            forged(
                "risk:rules:fake",
                {"type": "rule_set", "rule_set_hash": "ab" * 32, "version": "evil"},
                submitter,
            ),
            forged(
                "risk:execution:fake",
                {
                    "type": "risk_execution",
                    "decision_id": "risk:decision:2:y",
                    "action": "release",
                    "party": "0x1111111111111111111111111111111111111111",
                    "amount": "999",
                    "at": 1_800_000_000,
                    "tx_hash": "0x" + "cd" * 32,
                },
                submitter,
            ),
        ]
    )
    with RiskBook(log.path, database_url=log.database_url) as book:
        book.rebuild(log)
        assert [(a.alert_id, a.status) for a in book.alerts()] == [(alert_id, "open")]
        assert book.clearances(subject_of(hold_request(11))) == []
        assert [r.version for r in book.rule_sets()] == ["test"]
        assert book.executions() == []
    again = gate.check(hold_request(11), at=1_800_000_001)
    assert str(again.outcome) == str(held.outcome) == "hold"  # the same request: still held
    gate.close()


@pytest.mark.parametrize("submitter", FORGERS)
def test_a_forged_review_does_not_close_an_incident(log: Log, submitter: str | None) -> None:
    incident = open_incident(log, title="vault drained?", actor="key:officer")
    log.append(
        [
            forged(
                f"incident:{incident}:reviewed:1",
                {"type": "incident", "incident_id": incident, "step": "reviewed"},
                submitter,
            )
        ]
    )
    assert [s.step for s in incident_steps(log, incident)] == ["detected"]
    record_step(log, incident, "handled", actor="key:officer")  # still open
    assert [s.step for s in incident_steps(log, incident)] == ["detected", "handled"]


def test_a_replayed_forged_decision_names_its_writer(log: Log) -> None:
    gate = RiskGate(
        log,
        parse_rule_set(
            rules({"id": "big", "type": "amount_above", "severity": "high", "threshold": "10"})
        ),
    )
    real = gate.check(hold_request(11), at=1_800_000_000)
    body = log.entry(real.record_id).body
    assert body is not None
    document = json.loads(body)
    copy = forged("risk:decision:copy", document["payload"], "key:0123456789ab")
    log.append([copy])
    assert replay_decision(log, gate.book, real.record_id).matches
    report = replay_decision(log, gate.book, "risk:decision:copy")
    assert any("not written by the risk service" in p for p in report.problems)
    gate.close()
