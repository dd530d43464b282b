"""The risk issue's "done when": one deal walked through a rule firing, a hold, a two-person
approval and a release; then every decision is replayed (all match) and the books reconcile
with no difference — on a real Anvil, a real log and the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chainaudit.app.deploy import deploy_contracts
from chainaudit.chain.escrow import MilestoneStatus
from chainaudit.cli import main
from chainaudit.core.errors import EscrowError, RiskHoldError
from chainaudit.log.store import Log
from chainaudit.risk import GuardedEscrow, Outcome, RiskGate, transition_alert
from chainaudit.service.anchoring import Anchorer, AnchorPolicy
from chainaudit.service.reconcile import reconcile
from tests.deals import deal_entries
from tests.escrow_world import AMOUNT, World
from tests.officers import issue, requested, run_as
from tests.risk.conftest import indexer, milestones, to_accepted

RULES = f"""
version = "walkthrough-1"
owner = "risk-office@example.com"

[[rules]]
id = "structuring"
type = "round_amount"
severity = "medium"                  # review: sent, and an alert is raised
unit = "{AMOUNT}"
actions = ["fund"]

[[rules]]
id = "large-release"
type = "amount_above"
severity = "high"                    # hold: not sent; the milestone is held on chain
threshold = "{AMOUNT - 1}"
actions = ["release"]
owner = "treasury@example.com"
"""


def test_rule_firing_hold_two_person_approval_release_replay_reconcile(
    world: World,
    data_dir: Path,
    log: Log,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = world.client
    cli = ["--data-dir", str(data_dir)]

    # The rule file is loaded and announced in the log.
    (data_dir / "rules.toml").write_text(RULES)
    assert main([*cli, "risk", "rules"]) == 0
    gate = RiskGate.from_file(log, data_dir / "rules.toml", contract=client.address)
    assert not gate.announcement.changed  # the command announced this version already
    guarded = GuardedEscrow(client, gate, compliance=world.officer)

    # A deal whose releases above half its amount need 2 approvals from distinct approvers.
    approvers = [world.approver1, world.approver2, world.approver3]
    params = world.params(
        approvers=[a.address for a in approvers],
        approvals_required=2,
        approval_threshold=AMOUNT // 2,
    )
    created = guarded.create_deal(world.buyer, params, milestones(world, "walk"))
    assert created.outcome is Outcome.ALLOW
    deal_id = created.deal_id

    # 1. A rule fires: a round amount is funded. Review: sent, and an alert is raised.
    funded = guarded.fund(world.buyer, deal_id, 0, AMOUNT, requested_by="key:buyer")
    assert funded.outcome is Outcome.REVIEW and funded.decision.evaluation.fired_ids == (
        "structuring",
    )
    structuring_alert = str(funded.decision.alert_id)
    transition_alert(log, gate.book, structuring_alert, "acknowledged", by="cli:analyst")
    analyst, treasurer = issue(data_dir), issue(data_dir)  # two officers clear an alert
    clear = ("risk", "resolve", structuring_alert, "--cleared", "--note", "a fixed-price PO")
    capsys.readouterr()
    assert run_as(monkeypatch, analyst, data_dir, *clear) == 0
    approval = requested(capsys.readouterr().out)
    assert run_as(monkeypatch, treasurer, data_dir, "approvals", "approve", approval) == 0
    to_accepted(world, deal_id)

    # 2. A hold: the release is above the treasury's threshold. Nothing is sent and the
    #    milestone is put on compliance hold on chain, its reason the decision's leaf hash.
    with pytest.raises(RiskHoldError) as held:
        guarded.release(world.stranger, deal_id, 0)
    hold_alert = str(held.value.alert_id)
    milestone = client.deal(deal_id).milestones[0]
    assert milestone.status is MilestoneStatus.ACCEPTED
    assert milestone.hold is not None and milestone.hold.active
    assert milestone.hold.reason_hash == log.entry(held.value.decision_id).leaf_hash

    # The treasury reviews: acknowledges, clears the alert, and lifts the hold with the
    # resolution record's leaf hash as the reason.
    assert main([*cli, "risk", "ack", hold_alert, "--note", "checking the contract"]) == 0
    capsys.readouterr()
    clear = ("risk", "resolve", hold_alert, "--cleared", "--note", "signed PO")
    assert run_as(monkeypatch, treasurer, data_dir, *clear) == 0
    approval = requested(capsys.readouterr().out)
    assert run_as(monkeypatch, treasurer, data_dir, "approvals", "approve", approval) == 2
    assert run_as(monkeypatch, analyst, data_dir, "approvals", "approve", approval) == 0
    log.refresh()
    resolution = gate.book.alert(hold_alert).records[-1]
    guarded.lift_hold(
        deal_id,
        0,
        reason_hash=log.entry(resolution).leaf_hash,
        by="cli:treasury",
        alert_id=hold_alert,
    )
    assert client.deal(deal_id).milestones[0].hold is None

    # 3. A two-person approval: one approver asks (the maker), two others approve.
    with pytest.raises(EscrowError, match="ApprovalsMissing"):
        client.release(world.stranger, deal_id, 0)
    guarded.request_release(world.approver1, deal_id, 0)
    with pytest.raises(EscrowError, match="InitiatorCannotApprove"):
        guarded.approve_release(world.approver1, deal_id, 0)  # the maker is not a checker
    guarded.approve_release(world.approver2, deal_id, 0)
    with pytest.raises(EscrowError, match="ApprovalsMissing"):
        client.release(world.stranger, deal_id, 0)  # one approval is not enough
    guarded.approve_release(world.approver3, deal_id, 0)

    # 4. The release: the same rule fires, but a person cleared this very action.
    released = guarded.release(world.stranger, deal_id, 0, requested_by="cli:treasury")
    assert released.outcome is Outcome.ALLOW
    assert released.decision.evaluation.cleared_by == (hold_alert,)
    assert released.event("MilestoneReleased").args["payee"] == world.supplier.address
    assert client.credit_of(world.supplier.address, world.token) == AMOUNT

    # The deal's timeline holds its decisions, alerts, hold, executions and chain events.
    indexer(log, world).tick()
    timeline = [json.loads(e.body or b"{}")["payload"] for e in deal_entries(log, str(deal_id))]
    types = {p.get("type") for p in timeline}
    assert {"risk_decision", "alert", "hold", "risk_execution", "event"} <= types
    events = [p["event"] for p in timeline if p.get("type") == "event"]
    for name in (
        "ComplianceHoldPlaced",
        "ComplianceHoldLifted",
        "ReleaseRequested",
        "ReleaseApproved",
        "MilestoneReleased",
    ):
        assert name in events

    # Every decision replays to the same outcome.
    decisions = [
        e.record_id
        for e in log.scan(kind="decision", limit=10_000)
        if e.body and json.loads(e.body)["payload"]["type"] == "risk_decision"
    ]
    assert len(decisions) == 4  # create, fund, held release, cleared release
    capsys.readouterr()
    for record_id in decisions:
        assert main([*cli, "risk", "replay", record_id]) == 0, capsys.readouterr().out

    # The books reconcile: chain state and balance, indexed events, anchored checkpoints.
    anchor = deploy_contracts(world.chain, world.admin)["AuditAnchor"].address
    anchorer = Anchorer(log, world.chain, world.admin, anchor, policy=AnchorPolicy(finality=1))
    anchorer.anchor_now(timeout=60)
    anchorer.close()
    indexer(log, world).tick()
    report = reconcile(log, client, anchor_contract=anchor, max_unanchored_seconds=3600)
    assert report.clean, report.differences
    assert report.checked["deals"] >= 1 and report.checked["chain_events"] > 15
    gate.close()
