"""Issue 13 on a real Anvil: the vault's EscrowGate enforces the risk gate. A deal under the
compliance policy cannot be funded or released by a direct call without a clearance; through
GuardedEscrow the same action is evaluated, cleared (bound to its decision record's leaf hash)
and succeeds; a held action gets no clearance; a partner's own transaction carries the
clearance it was granted, once."""

from __future__ import annotations

import json
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from chainaudit.app.settings import load_settings
from chainaudit.chain.escrow import MilestoneStatus
from chainaudit.chain.escrow_deploy import GATE_POLICY_ID, deploy_gate
from chainaudit.chain.toolchain import compile_contracts
from chainaudit.core import provenance
from chainaudit.core.errors import ConfigError, EscrowError, RiskHoldError
from chainaudit.log.store import Log
from chainaudit.risk import ClearanceSigner, GuardedEscrow, RiskGate
from chainaudit.risk.clearance import ACTIONS, clearance_digest
from chainaudit.risk.freeze import frozen_until
from chainaudit.service.reconcile import reconcile
from tests.escrow_world import AMOUNT, DAY, World, h, now, rpc
from tests.risk.conftest import gate, indexer, milestones, to_accepted


def _clearance_records(log: Log) -> list[dict[str, Any]]:
    found = []
    for entry in log.scan(kind="decision", limit=10_000):
        if entry.body and entry.record_id.startswith("risk:clearance:"):
            found.append(json.loads(entry.body))
    return found


def _gated(world: World) -> tuple[str, LocalAccount]:
    """Give the world's vault a gate (policy 1: every amount above 0 needs a clearance)."""
    signer: LocalAccount = Account.create()
    rpc(world.w3, "anvil_setBalance", signer.address, hex(10**20))
    deployed = deploy_gate(
        world.chain,
        world.admin,
        world.client.address,
        signer.address,
        compliance_officers=[world.officer.address],
    )
    return deployed.address, signer


def _guarded(world: World, risk: RiskGate, signer: LocalAccount) -> GuardedEscrow:
    clearances = ClearanceSigner(signer, vault=world.client.address, chain_id=world.client.chain_id)
    return GuardedEscrow(world.client, risk, compliance=world.officer, clearances=clearances)


def _allow_all(log: Log, world: World) -> RiskGate:
    return gate(
        log,
        world,
        {"id": "huge", "type": "amount_above", "severity": "high", "threshold": str(100 * AMOUNT)},
    )


def test_the_python_digest_is_the_gates(world: World) -> None:
    gate_address, _ = _gated(world)
    contract = world.chain.contract(gate_address, compile_contracts()["EscrowGate"].abi)
    leaf = bytes(range(32))
    args = (7, 1, ACTIONS["release"], 123, leaf, 1_900_000_000, 42)
    expected = bytes(contract.functions.clearanceDigest(world.client.address, *args).call())
    assert expected == clearance_digest(
        chain_id=world.client.chain_id,
        vault=world.client.address,
        deal_id=7,
        milestone=1,
        action=ACTIONS["release"],
        amount=123,
        decision_leaf=leaf,
        deadline=1_900_000_000,
        nonce=42,
    )
    assert world.client.escrow_gate() == (gate_address, 0)


def test_a_direct_call_is_refused_and_the_guarded_action_is_cleared(world: World, log: Log) -> None:
    _, signer = _gated(world)
    guarded = _guarded(world, _allow_all(log, world), signer)
    created = guarded.create_deal(
        world.buyer, world.params(policy=GATE_POLICY_ID), milestones(world, "clr", 1)
    )
    deal_id = created.tx.deal_id
    assert world.client.escrow_gate(deal_id)[1] == GATE_POLICY_ID

    # the partner's own call, without a clearance, is refused by the chain
    with pytest.raises(EscrowError, match="EscrowGateClearanceRequired") as refused:
        world.client.fund(world.buyer, deal_id, 0, AMOUNT)
    assert refused.value.arguments["dealId"] == deal_id
    # through the gate: evaluated, cleared, sent
    funded = guarded.fund(world.buyer, deal_id, 0, AMOUNT)
    assert world.client.deal(deal_id).milestones[0].status is MilestoneStatus.FUNDED

    to_accepted(world, deal_id)
    with pytest.raises(EscrowError, match="EscrowGateClearanceRequired"):
        world.client.release(world.stranger, deal_id, 0)
    released = guarded.release(world.stranger, deal_id, 0)
    assert world.client.deal(deal_id).milestones[0].status is MilestoneStatus.RELEASED

    # each clearance is recorded by the risk service and bound to its decision's leaf
    records = _clearance_records(log)
    assert [r["payload"]["action"] for r in records] == ["fund", "release"]
    for record, result in zip(records, (funded, released), strict=True):
        payload = record["payload"]
        assert record["submitter"] == provenance.RISK
        assert payload["decision_id"] == result.decision.record_id
        assert payload["decision_leaf"] == "0x" + result.decision.leaf_hash.hex()
        assert payload["nonce"] == str(result.decision.leaf_index)
        assert payload["deal_id"] == str(deal_id) and payload["amount"] == str(AMOUNT)


def test_a_held_action_gets_no_clearance(world: World, log: Log) -> None:
    _, signer = _gated(world)
    risk = gate(
        log,
        world,
        {
            "id": "big-release",
            "type": "amount_above",
            "severity": "high",
            "threshold": str(AMOUNT - 1),
            "actions": ["release"],
        },
    )
    guarded = _guarded(world, risk, signer)
    deal_id = guarded.create_deal(
        world.buyer, world.params(policy=GATE_POLICY_ID), milestones(world, "held", 1)
    ).tx.deal_id
    guarded.fund(world.buyer, deal_id, 0, AMOUNT)
    to_accepted(world, deal_id)
    before = len(_clearance_records(log))
    with pytest.raises(RiskHoldError):
        guarded.release(world.stranger, deal_id, 0)
    with pytest.raises(RiskHoldError):
        guarded.clearance_for(world.supplier.address, deal_id, 0, "release")
    assert len(_clearance_records(log)) == before  # no clearance was issued
    assert world.client.deal(deal_id).milestones[0].status is MilestoneStatus.ACCEPTED


def test_a_partners_own_transaction_carries_its_clearance_once(world: World, log: Log) -> None:
    _, signer = _gated(world)
    guarded = _guarded(world, _allow_all(log, world), signer)
    deal_id = guarded.create_deal(
        world.buyer, world.params(policy=GATE_POLICY_ID), milestones(world, "own", 2)
    ).tx.deal_id
    grant = guarded.clearance_for(world.buyer.address, deal_id, 0, "fund", amount=AMOUNT)
    assert grant.record_id is not None and grant.clearance.signer == signer.address
    # the buyer signs its own transaction, the clearance appended to the call data
    world.client.fund(world.buyer, deal_id, 0, AMOUNT, clearance=grant.clearance.encoded)
    assert world.client.deal(deal_id).milestones[0].status is MilestoneStatus.FUNDED
    # a clearance is good once, and for exactly what it names
    with pytest.raises(EscrowError, match="EscrowGateNonceUsed"):
        world.client.fund(world.buyer, deal_id, 1, AMOUNT, clearance=grant.clearance.encoded)
    other = guarded.clearance_for(world.buyer.address, deal_id, 1, "fund", amount=AMOUNT)
    with pytest.raises(EscrowError, match="EscrowGateInvalidClearance"):
        world.client.fund(world.buyer, deal_id, 1, AMOUNT - 1, clearance=other.clearance.encoded)
    world.client.fund(world.buyer, deal_id, 1, AMOUNT, clearance=other.clearance.encoded)
    assert world.client.deal(deal_id).milestones[1].status is MilestoneStatus.FUNDED


def test_a_frozen_payee_is_not_paid_until_unfrozen_and_both_are_recorded(
    world: World, log: Log
) -> None:
    _, signer = _gated(world)
    guarded = _guarded(world, _allow_all(log, world), signer)
    deal_id = world.client.create_deal(
        world.buyer, world.params(), milestones(world, "frz", 1)
    ).deal_id
    world.client.fund(world.buyer, deal_id, 0, AMOUNT)  # no policy: no clearance needed
    to_accepted(world, deal_id)
    frozen = guarded.freeze_account(
        world.supplier.address, duration=DAY, reason_hash=h("sanctions hit"), by="officer:a+b"
    )
    assert frozen.until == now(world.w3) + DAY and frozen_until(
        world.client, world.supplier.address
    )
    with pytest.raises(EscrowError, match="EscrowGateAccountFrozen"):
        world.client.release(world.stranger, deal_id, 0)
    # the buyer is not frozen: it still opens deals with others
    world.client.create_deal(
        world.buyer, world.params(supplier=world.financier.address), milestones(world, "frz2", 1)
    )
    unfrozen = guarded.unfreeze_account(
        world.supplier.address, reason_hash=h("false positive"), by="officer:a+b"
    )
    world.client.release(world.stranger, deal_id, 0)
    world.client.withdraw(world.supplier, world.token)
    for result, transition in ((frozen, "frozen"), (unfrozen, "unfrozen")):
        document = json.loads(log.entry(result.record_id).body or b"")
        assert document["submitter"] == provenance.RISK
        payload = document["payload"]
        assert payload["type"] == "freeze" and payload["transition"] == transition
        assert payload["account"] == world.supplier.address
        assert payload["tx_hash"] == result.tx.tx_hash


def test_reconcile_reports_money_moved_without_a_gate_decision(world: World, log: Log) -> None:
    _, signer = _gated(world)
    guarded = _guarded(world, _allow_all(log, world), signer)
    gated = guarded.create_deal(
        world.buyer, world.params(policy=GATE_POLICY_ID), milestones(world, "rg", 1)
    ).tx.deal_id
    guarded.fund(world.buyer, gated, 0, AMOUNT)  # decided, cleared, sent
    plain = world.client.create_deal(world.buyer, world.params(), milestones(world, "rp", 1))
    direct = world.client.fund(world.buyer, plain.deal_id, 0, AMOUNT)  # no policy, no decision
    indexer(log, world).tick()
    report = reconcile(log, world.client, append=False)
    ungated = [d for d in report.differences if d.kind == "ungated_movement"]
    assert [d.subject for d in ungated] == [f"deal {plain.deal_id} milestone 0"]
    assert direct.tx_hash in ungated[0].detail and ungated[0].chain == str(AMOUNT)
    assert report.checked["money_movements"] == 2
    skipped = reconcile(log, world.client, append=False, gate_decisions=False)
    assert not [d for d in skipped.differences if d.kind == "ungated_movement"]


def test_clearances_are_signed_for_money_movements_only() -> None:
    signer: LocalAccount = Account.create()
    clearances = ClearanceSigner(signer, vault="0x" + "11" * 20, chain_id=31337, ttl_seconds=60)
    issued = clearances.issue(
        deal_id=3,
        milestone=1,
        action="finance",
        amount=5,
        decision_leaf=b"\x07" * 32,
        nonce=9,
        now=100,
    )
    assert issued.deadline == 160 and issued.signer == signer.address
    digest = clearance_digest(
        chain_id=31337,
        vault="0x" + "11" * 20,
        deal_id=3,
        milestone=1,
        action=ACTIONS["finance"],
        amount=5,
        decision_leaf=b"\x07" * 32,
        deadline=160,
        nonce=9,
    )
    assert Account._recover_hash(digest, signature=issued.signature) == signer.address
    for action in ("create", "refund"):
        with pytest.raises(ValueError, match="needs no clearance"):
            clearances.issue(
                deal_id=3,
                milestone=1,
                action=action,
                amount=5,
                decision_leaf=b"\x07" * 32,
                nonce=9,
                now=100,
            )


def test_production_refuses_a_devnet_clearance_key() -> None:
    devnet_key = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
    with pytest.raises(ConfigError, match="clearance key must not be a public devnet key"):
        load_settings(
            environment="production", clearance_key=devnet_key, rpc_url="https://rpc.invalid"
        )
