"""GuardedEscrow on a real Anvil and a real log: allow sends, review sends and alerts, hold
sends nothing and puts the milestone on compliance hold; history figures come from the
indexed events and from actions the indexer has not reached yet; every decision replays."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest

from chainaudit.chain.escrow import DealParams, MilestoneParams, MilestoneStatus
from chainaudit.core.errors import EscrowError, RiskError, RiskHoldError
from chainaudit.log.store import Log
from chainaudit.risk import GuardedEscrow, Outcome, RiskBook, replay_decision
from tests.deals import deal_entries
from tests.escrow_world import AMOUNT, DAY, World, h, now, travel
from tests.risk.conftest import gate, indexer, milestones, to_accepted
from tests.tamper import replace_in_body


def payload(log: Log, record_id: str) -> dict[str, Any]:
    body = log.entry(record_id).body
    assert body is not None
    return dict(json.loads(body)["payload"])


def decisions(log: Log) -> list[str]:
    return [
        e.record_id
        for e in log.scan(kind="decision", limit=10_000)
        if e.body and json.loads(e.body)["payload"]["type"] == "risk_decision"
    ]


def test_allow_sends_and_links_decision_and_execution_to_the_deal(world: World, log: Log) -> None:
    guarded = GuardedEscrow(
        world.client,
        gate(
            log,
            world,
            {
                "id": "huge",
                "type": "amount_above",
                "severity": "high",
                "threshold": str(10 * AMOUNT),
            },
        ),
    )
    created = guarded.create_deal(
        world.buyer, world.params(), milestones(world, "allow", 2), requested_by="cli:test"
    )
    assert created.outcome is Outcome.ALLOW and created.decision.alert_id is None
    deal_id = created.tx.deal_id
    decision = payload(log, created.decision.record_id)
    assert decision["type"] == "risk_decision" and decision["outcome"] == "allow"
    assert decision["deal_id"] is None  # the deal did not exist when it was decided
    assert decision["inputs"]["amount"] == str(2 * AMOUNT)
    assert decision["rule_set_hash"] == guarded.gate.rule_set.hash
    assert decision["requested_by"] == "cli:test" and decision["fired"] == []
    execution = payload(log, created.execution_id)
    assert execution["tx_hash"] == created.tx.tx_hash and execution["deal_id"] == str(deal_id)

    funded = guarded.fund(world.buyer, deal_id, 0, AMOUNT)
    assert funded.outcome is Outcome.ALLOW
    linked = [e.record_id for e in deal_entries(log, str(deal_id))]
    assert created.execution_id in linked and funded.decision.record_id in linked
    assert world.client.deal(deal_id).milestones[0].status is MilestoneStatus.FUNDED


def test_review_sends_and_raises_an_alert(world: World, log: Log) -> None:
    guarded = GuardedEscrow(
        world.client,
        gate(
            log,
            world,
            {
                "id": "structuring",
                "type": "round_amount",
                "severity": "medium",
                "unit": str(AMOUNT),
                "owner": "aml@example.com",
            },
        ),
    )
    deal_id = guarded.create_deal(world.buyer, world.params(), milestones(world, "rv")).tx.deal_id
    funded = guarded.fund(world.buyer, deal_id, 0, AMOUNT)
    assert funded.outcome is Outcome.REVIEW and funded.tx.event("MilestoneFunded")
    book = guarded.gate.book
    alert = book.alert(str(funded.decision.alert_id))
    assert (alert.status, alert.severity, alert.owner, alert.action) == (
        "open",
        "medium",
        "aml@example.com",
        "fund",
    )
    assert alert.deal_id == str(deal_id) and alert.rules == ("structuring",)
    assert alert.decision_id == funded.decision.record_id
    assert payload(log, alert.records[0])["transition"] == "opened"


def test_hold_sends_nothing_and_holds_the_milestone_on_chain(world: World, log: Log) -> None:
    guarded = GuardedEscrow(
        world.client,
        gate(
            log,
            world,
            {
                "id": "big-release",
                "type": "amount_above",
                "severity": "high",
                "threshold": str(AMOUNT - 1),
                "actions": ["release"],
            },
        ),
        compliance=world.officer,
        hold_seconds=2 * DAY,
    )
    deal_id = guarded.create_deal(world.buyer, world.params(), milestones(world, "hd")).tx.deal_id
    guarded.fund(world.buyer, deal_id, 0, AMOUNT)
    to_accepted(world, deal_id)
    with pytest.raises(RiskHoldError) as held:
        guarded.release(world.stranger, deal_id, 0)
    error = held.value
    assert error.fired == ("big-release",) and error.alert_id and error.hold_tx
    milestone = world.client.deal(deal_id).milestones[0]
    assert milestone.status is MilestoneStatus.ACCEPTED  # not released
    decision_leaf = log.entry(error.decision_id).leaf_hash
    assert milestone.hold is not None and milestone.hold.active
    assert milestone.hold.reason_hash == decision_leaf  # the hold points at the evidence
    placed = [
        e
        for e in deal_entries(log, str(deal_id))
        if e.body and json.loads(e.body)["payload"].get("type") == "hold"
    ]
    assert len(placed) == 1
    record = json.loads(placed[0].body or b"")["payload"]
    assert record["transition"] == "placed" and record["decision_id"] == error.decision_id
    assert (
        record["reason_hash"] == "0x" + decision_leaf.hex() and record["tx_hash"] == error.hold_tx
    )
    # the hold is real: even a direct release is refused by the contract
    with pytest.raises(EscrowError, match="SupplyChainEscrowOnHold"):
        world.client.release(world.stranger, deal_id, 0)

    renewed = guarded.renew_hold(deal_id, 0, reason_hash=h("escalated"), by="officer", duration=DAY)
    assert renewed.until == world.client.deal(deal_id).milestones[0].hold.until  # type: ignore[union-attr]
    lifted = guarded.lift_hold(deal_id, 0, reason_hash=h("cleared"), by="officer", note="ok")
    assert world.client.deal(deal_id).milestones[0].hold is None
    transitions = [payload(log, r.record_id)["transition"] for r in (renewed, lifted)]
    assert transitions == ["renewed", "lifted"]


def test_hold_without_a_compliance_account_refuses_without_an_onchain_hold(
    world: World, log: Log
) -> None:
    guarded = GuardedEscrow(
        world.client,
        gate(
            log,
            world,
            {
                "id": "sanctions",
                "type": "blocklist",
                "severity": "critical",
                "addresses": [world.supplier.address],
            },
        ),
    )
    before = world.client.deal_count()
    with pytest.raises(RiskHoldError) as held:
        guarded.create_deal(world.buyer, world.params(), milestones(world, "bl"))
    assert held.value.hold_tx is None and world.client.deal_count() == before
    figures = payload(log, held.value.decision_id)["fired"][0]["figures"]
    assert figures["matches"] == [{"role": "supplier", "address": world.supplier.address}]
    with pytest.raises(RiskError, match="no compliance account"):
        guarded.place_hold(1, 0, reason_hash=h("x"), by="someone")


def test_document_reuse_is_caught_before_and_after_indexing(world: World, log: Log) -> None:
    guarded = GuardedEscrow(
        world.client,
        gate(log, world, {"id": "reused", "type": "document_reuse", "severity": "critical"}),
    )
    same = milestones(world, "twice")
    first = guarded.create_deal(world.buyer, world.params(), same)
    assert first.outcome is Outcome.ALLOW
    # not indexed yet: the execution record of the first deal names the document
    with pytest.raises(RiskHoldError) as pending:
        guarded.create_deal(world.buyer, world.params(), same)
    uses = payload(log, pending.value.decision_id)["fired"][0]["figures"]["documents"][0]
    assert uses["used_in"] == [
        {"deal_id": str(first.tx.deal_id), "milestone": None, "event": "executed:create"}
    ]
    indexer(log, world).tick()
    with pytest.raises(RiskHoldError) as indexed:
        guarded.create_deal(world.buyer, world.params(), same)
    uses = payload(log, indexed.value.decision_id)["fired"][0]["figures"]["documents"][0]
    assert uses["used_in"] == [
        {"deal_id": str(first.tx.deal_id), "milestone": 0, "event": "MilestoneCreated"}
    ]
    assert guarded.create_deal(world.buyer, world.params(), milestones(world, "new")).tx


def test_velocity_counts_indexed_and_pending_actions_once(world: World, log: Log) -> None:
    guarded = GuardedEscrow(
        world.client,
        gate(
            log,
            world,
            {
                "id": "busy",
                "type": "velocity",
                "severity": "medium",
                "window_seconds": DAY,
                "max_count": 3,
            },
        ),
    )
    deal_id = guarded.create_deal(world.buyer, world.params(), milestones(world, "v", 2)).tx.deal_id
    guarded.fund(world.buyer, deal_id, 0, AMOUNT // 2)
    indexer(log, world).tick()  # the create and the first funding are indexed now
    third = guarded.fund(world.buyer, deal_id, 0, AMOUNT // 2)  # pending: not indexed
    assert third.outcome is Outcome.ALLOW
    assert third.decision.inputs["history"]["velocity"][str(DAY)] == {
        "count": 2,
        "total": str(2 * AMOUNT + AMOUNT // 2),
    }
    fourth = guarded.fund(world.buyer, deal_id, 1, AMOUNT)
    assert fourth.outcome is Outcome.REVIEW
    assert fourth.decision.evaluation.fired[0].figures["count"] == 4


def test_every_decision_replays_and_a_tampered_one_does_not(world: World, log: Log) -> None:
    guarded = GuardedEscrow(
        world.client,
        gate(
            log,
            world,
            {"id": "round", "type": "round_amount", "severity": "medium", "unit": str(AMOUNT)},
            {
                "id": "huge",
                "type": "amount_above",
                "severity": "high",
                "threshold": str(5 * AMOUNT),
            },
        ),
    )
    deal_id = guarded.create_deal(world.buyer, world.params(), milestones(world, "rp")).tx.deal_id
    guarded.fund(world.buyer, deal_id, 0, AMOUNT)
    book = RiskBook(log.path)
    ids = decisions(log)
    assert len(ids) == 2
    for record_id in ids:
        report = replay_decision(log, book, record_id)
        assert report.matches, report.problems
    target = ids[1]
    assert payload(log, target)["outcome"] == "review"

    db = sqlite3.connect(log.path)
    with db:
        replace_in_body(db, target, '"outcome":"review"', '"outcome":"allow"')
    report = replay_decision(log, book, target)
    assert not report.matches
    assert any("outcome" in p for p in report.problems)
    assert any("leaf" in p for p in report.problems)
    book.close()
    db.close()


def test_reclaim_after_long_stop_is_evaluated_with_the_refundable_amount(
    world: World, log: Log
) -> None:
    guarded = GuardedEscrow(world.client, gate(log, world))
    params = world.params(long_stop=now(world.w3) + 40 * DAY)
    deal_id = guarded.create_deal(world.buyer, params, milestones(world, "ls", 1)).tx.deal_id
    guarded.fund(world.buyer, deal_id, 0, AMOUNT)
    travel(world.w3, 41 * DAY)
    refunded = guarded.reclaim_after_long_stop(world.buyer, deal_id)
    assert refunded.decision.inputs["amount"] == str(AMOUNT)
    assert refunded.tx.event("MilestoneRefunded")


def test_deal_terms_round_trip_through_the_abi(world: World) -> None:
    params = world.params(approvers=[world.stranger.address], approval_threshold=5)
    planned = milestones(world, "abi")
    data = world.client.contract.encode_abi(
        "createDeal", [params.as_abi(), [m.as_abi() for m in planned]]
    )
    _, args = world.client.contract.decode_function_input(data)
    assert DealParams.from_abi(args["params"]).as_abi() == params.as_abi()
    assert [MilestoneParams.from_abi(m) for m in args["milestones"]] == list(planned)
