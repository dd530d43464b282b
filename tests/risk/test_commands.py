"""The risk commands, run through ``chainaudit.cli.main`` against a real log (and a real
Anvil for pause, unpause and holds): rule announcements, replay exit codes, the alert life
cycle, clearances, incidents with pauses, and holds whose reason is a decision record."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from chainaudit.cli import main
from chainaudit.core.records import prepare
from chainaudit.log.store import Log
from chainaudit.risk import ActionRequest, Outcome, RiskGate, parse_rule_set
from tests.deals import deal_entries
from tests.escrow_world import AMOUNT, World
from tests.officers import issue, requested, run_as
from tests.risk.conftest import milestones, rules
from tests.tamper import replace_in_body

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rules.toml"
BUYER = "0x1111111111111111111111111111111111111111"
SUPPLIER = "0x2222222222222222222222222222222222222222"


def run(data_dir: Path, *argv: str) -> int:
    return main(["--data-dir", str(data_dir), *argv])


def payloads(log: Log, kind: str = "decision") -> list[dict[str, Any]]:
    log.refresh()
    return [json.loads(e.body)["payload"] for e in log.scan(kind=kind, limit=10_000) if e.body]


def request(amount: int = 300_000 * 10**6) -> ActionRequest:
    return ActionRequest(
        action="fund",
        deal_id=9,
        milestone=0,
        amount=amount,
        token="0x4444444444444444444444444444444444444444",
        party=BUYER,
        actor=BUYER,
        parties={"buyer": BUYER, "supplier": SUPPLIER, "financier": None},
        documents=["0x" + "ab" * 32],
    )


def _two_officers(
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *argv: str,
    approve: tuple[str, ...] = (),
    maker: str | None = None,
    checker: str | None = None,
) -> None:
    """Run a controlled command as one officer and approve it as another."""
    maker = maker or issue(data_dir)
    checker = checker or issue(data_dir)
    capsys.readouterr()
    assert run_as(monkeypatch, maker, data_dir, *argv) == 0
    approval = requested(capsys.readouterr().out)
    assert run_as(monkeypatch, checker, data_dir, "approvals", "approve", approval, *approve) == 0


def test_rules_are_announced_only_when_their_hash_changes(
    data_dir: Path, log: Log, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    target = data_dir / "rules.toml"
    target.write_text(EXAMPLE.read_text())
    assert run(data_dir, "risk", "rules") == 0
    assert "announced as" in capsys.readouterr().out
    assert run(data_dir, "risk", "rules") == 0
    assert "unchanged since" in capsys.readouterr().out
    target.write_text(EXAMPLE.read_text().replace("max_count = 10", "max_count = 12"))
    assert run(data_dir, "risk", "rules") == 2  # a new rule set needs two officers
    assert "needs two officers" in capsys.readouterr().err
    _two_officers(data_dir, monkeypatch, capsys, "risk", "rules")
    target.write_text(EXAMPLE.read_text())  # back to the first version: announced again
    _two_officers(data_dir, monkeypatch, capsys, "risk", "rules")
    announced = [p for p in payloads(log) if p["type"] == "rule_set"]
    assert len(announced) == 3
    assert announced[0]["rule_set_hash"] == announced[2]["rule_set_hash"]
    assert announced[1]["previous_hash"] == announced[0]["rule_set_hash"]
    assert announced[0]["rules"]["version"] == "2026-05-example"

    target.write_text(EXAMPLE.read_text().replace('severity = "high"', 'severity = "dire"', 1))
    assert run(data_dir, "risk", "rules") == 2
    assert "severity" in capsys.readouterr().err


def test_replay_exits_0_on_a_match_1_on_a_tampered_record_2_on_a_wrong_id(
    data_dir: Path, log: Log, capsys: pytest.CaptureFixture[str]
) -> None:
    gate = RiskGate(
        log,
        parse_rule_set(
            rules(
                {"id": "big", "type": "amount_above", "severity": "high", "threshold": "1000"},
            )
        ),
    )
    held = gate.check(request(), at=1_800_000_000)
    allowed = gate.check(request(amount=5), at=1_800_000_000)
    assert (held.outcome, allowed.outcome) == (Outcome.HOLD, Outcome.ALLOW)
    for decision in (held, allowed):
        assert run(data_dir, "risk", "replay", decision.record_id) == 0
    assert "matches" in capsys.readouterr().out

    db = sqlite3.connect(log.path)
    with db:
        replace_in_body(db, allowed.record_id, '"amount":"5"', '"amount":"7"')
    db.close()
    assert run(data_dir, "risk", "replay", allowed.record_id, "--json") == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["matches"]
    assert any("inputs_sha256" in p for p in report["problems"])

    assert run(data_dir, "risk", "replay", "no-such-record") == 2
    log.append(
        [
            prepare(
                {
                    "id": "doc-1",
                    "kind": "document",
                    "timestamp": "2026-01-01T00:00:00Z",
                    "actor": "a",
                    "payload": {},
                }
            )
        ]
    )
    assert run(data_dir, "risk", "replay", "doc-1") == 2
    assert "not a decision" in capsys.readouterr().err


def test_alert_life_cycle_and_clearance(
    data_dir: Path, log: Log, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = RiskGate(
        log,
        parse_rule_set(
            rules(
                {
                    "id": "big",
                    "type": "amount_above",
                    "severity": "high",
                    "threshold": "1000",
                    "owner": "treasury@example.com",
                },
            )
        ),
    )
    held = gate.check(request(), at=1_800_000_000)
    alert_id = str(held.alert_id)
    capsys.readouterr()
    assert run(data_dir, "risk", "alerts", "--status", "open", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [a["alert_id"] for a in listed] == [alert_id]
    assert listed[0]["owner"] == "treasury@example.com" and listed[0]["severity"] == "high"
    assert listed[0]["decision_id"] == held.record_id and listed[0]["deal_id"] == "9"

    with pytest.raises(SystemExit):  # resolving needs --cleared or --confirmed
        run(data_dir, "risk", "resolve", alert_id)
    assert run(data_dir, "risk", "ack", alert_id, "--note", "looking") == 0
    assert run(data_dir, "risk", "ack", alert_id) == 2  # already acknowledged
    assert "cannot be acknowledged" in capsys.readouterr().err
    _two_officers(
        data_dir,
        monkeypatch,
        capsys,
        "risk",
        "resolve",
        alert_id,
        "--cleared",
        "--note",
        "PO checked",
    )
    assert run(data_dir, "risk", "alerts", "--status", "open", "--json") == 0
    capsys.readouterr()
    assert run(data_dir, "risk", "alerts", "--json") == 0
    alert = json.loads(capsys.readouterr().out)[0]
    assert (alert["status"], alert["resolution"], alert["note"]) == (
        "resolved",
        "cleared",
        "PO checked",
    )
    assert len(alert["records"]) == 3  # opened, acknowledged, resolved: each a record
    transitions = [p["transition"] for p in payloads(log) if p["type"] == "alert"]
    assert transitions == ["opened", "acknowledged", "resolved"]
    assert run(data_dir, "risk", "ack", "AL-unknown") == 2

    again = gate.check(request(), at=1_800_000_001)  # the same subject, cleared by a person
    assert again.outcome is Outcome.ALLOW and again.evaluation.cleared_by == (alert_id,)
    assert run(data_dir, "risk", "replay", again.record_id) == 0
    other = gate.check(request(amount=400_000 * 10**6), at=1_800_000_002)  # another subject
    assert other.outcome is Outcome.HOLD


def test_incident_with_pause_and_unpause(
    world: World,
    data_dir: Path,
    log: Log,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHAINAUDIT_RPC_URL", world.devnet.rpc_url)
    monkeypatch.setenv("CHAINAUDIT_PAUSER_KEY", world.admin.key.hex())
    escrow = ["--escrow", world.client.address]
    assert run(data_dir, "incident", "open", "--title", "stolen supplier key") == 0
    incident = capsys.readouterr().out.split()[1]
    assert incident.startswith("INC-")
    assert run(data_dir, "incident", "step", incident, "assessed", "--note", "2 deals") == 0
    assert run(data_dir, "incident", "step", incident, "decided", "--note", "pause") == 0
    one, two = issue(data_dir), issue(data_dir)
    pair = {"maker": one, "checker": two}
    _two_officers(
        data_dir,
        monkeypatch,
        capsys,
        "pause",
        "--incident",
        incident,
        approve=tuple(escrow),
        **pair,
    )
    assert world.client.paused()
    with pytest.raises(Exception, match="SupplyChainEscrowPaused"):
        world.client.create_deal(world.buyer, world.params(), milestones(world, "paused"))
    _two_officers(
        data_dir,
        monkeypatch,
        capsys,
        "unpause",
        "--incident",
        incident,
        "--note",
        "rotated",
        approve=tuple(escrow),
        **pair,
    )
    assert not world.client.paused()
    assert run(data_dir, "incident", "close", incident, "--note", "post-mortem done") == 0
    assert run(data_dir, "incident", "step", incident, "handled") == 2  # closed
    assert run_as(monkeypatch, one, data_dir, "pause", "--incident", incident) == 2  # closed
    assert not world.client.paused()
    capsys.readouterr()
    assert run(data_dir, "incident", "show", incident, "--json") == 0
    steps = json.loads(capsys.readouterr().out)
    assert [s["step"] for s in steps] == [
        "detected",
        "assessed",
        "decided",
        "handled",
        "handled",
        "reviewed",
    ]
    assert [s["details"].get("action") for s in steps[3:5]] == ["pause", "unpause"]
    assert all(s["details"]["tx_hash"].startswith("0x") for s in steps[3:5])
    assert run(data_dir, "incident", "show", "INC-nope") == 2

    _two_officers(data_dir, monkeypatch, capsys, "pause", approve=tuple(escrow), **pair)
    assert next(p for p in payloads(log) if p["type"] == "emergency")["action"] == "pause"
    monkeypatch.setenv("CHAINAUDIT_PAUSER_KEY", world.stranger.key.hex())
    assert run_as(monkeypatch, one, data_dir, "unpause") == 0
    approval = requested(capsys.readouterr().out)
    assert run_as(monkeypatch, two, data_dir, "approvals", "approve", approval, *escrow) == 2
    assert "Unauthorized" in capsys.readouterr().err and world.client.paused()  # no PAUSER_ROLE


def test_hold_commands_use_a_recorded_reason(
    world: World,
    data_dir: Path,
    log: Log,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CHAINAUDIT_RPC_URL", world.devnet.rpc_url)
    monkeypatch.setenv("CHAINAUDIT_COMPLIANCE_KEY", world.officer.key.hex())
    client = world.client
    deal_id = client.create_deal(world.buyer, world.params(), milestones(world, "h")).deal_id
    client.fund(world.buyer, deal_id, 0, AMOUNT)
    escrow = ["--escrow", client.address]
    assert (
        run(
            data_dir,
            "risk",
            "hold",
            "place",
            str(deal_id),
            "0",
            "--reason",
            "sanctions screening hit on the supplier",
            "--duration",
            "3600",
            *escrow,
        )
        == 0
    )
    hold = client.deal(deal_id).milestones[0].hold
    assert hold is not None and hold.active
    reasons = [p for p in payloads(log) if p["type"] == "hold_reason"]
    reason_id = next(
        e.record_id
        for e in log.scan(kind="decision", limit=100)
        if e.body and b"hold_reason" in e.body
    )
    assert hold.reason_hash == log.entry(reason_id).leaf_hash
    assert reasons[0]["reason"].startswith("sanctions")
    lift = ("risk", "hold", "lift", str(deal_id), "0", "--reason", "false positive", *escrow)
    checker = issue(data_dir, address=world.officer.address)  # signs with its own account
    _two_officers(data_dir, monkeypatch, capsys, *lift, approve=tuple(escrow), checker=checker)
    assert client.deal(deal_id).milestones[0].hold is None
    holds = [p for p in payloads(log) if p["type"] == "hold"]
    assert [p["transition"] for p in holds] == ["placed", "lifted"]
    assert all(p["deal_id"] == str(deal_id) for p in holds)
    linked = {e.record_id for e in deal_entries(log, str(deal_id))}
    assert reason_id in linked
    monkeypatch.setenv("CHAINAUDIT_COMPLIANCE_KEY", world.stranger.key.hex())
    assert run(data_dir, "risk", "hold", "place", str(deal_id), "0", "--reason", "x", *escrow) == 2
