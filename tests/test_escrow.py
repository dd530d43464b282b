"""The escrow client against a real Anvil: whole deal life cycles, financing, disputes, time
outs, maker-checker approvals, compliance holds, the proof gate on a real anchored log, EIP-712
attestations, and custom errors decoded at estimation and at receipt.

The vault is deployed once per module; every test runs inside an ``evm_snapshot`` that is
reverted afterwards, so tests see the same fresh vault and can travel in time freely.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from chainaudit.app.deploy import deploy_contracts
from chainaudit.chain.escrow import (
    ErrorDecoder,
    MilestoneStatus,
    Party,
    attestation_digest,
    domain_separator,
)
from chainaudit.chain.escrow_deploy import escrow_artifacts
from chainaudit.core.errors import ChainError, EscrowError
from chainaudit.core.records import prepare
from chainaudit.core.signing import sign_record
from chainaudit.log.store import Log
from chainaudit.service.anchoring import Anchorer, AnchorPolicy
from tests.escrow_world import (
    AMOUNT,
    DAY,
    EIP170_LIMIT,
    TIMEOUT,
    WINDOW,
    World,
    escrow_code_size,
    h,
    make_world,
    now,
    rpc,
    travel,
)

BOL = h("bill of lading 42")
REPORT = h("inspection report 42")


def to_shipped(w: World, deal_id: int, milestone: int = 0) -> None:
    w.client.fund(w.buyer, deal_id, milestone, AMOUNT)
    w.client.mark_shipped(w.supplier, deal_id, milestone, BOL)


def to_inspected(w: World, deal_id: int, milestone: int = 0) -> None:
    to_shipped(w, deal_id, milestone)
    w.client.attest(w.inspector1, deal_id, milestone, REPORT)
    w.client.attest(w.inspector2, deal_id, milestone, REPORT)


def to_accepted(w: World, deal_id: int, milestone: int = 0) -> None:
    to_inspected(w, deal_id, milestone)
    w.client.accept(w.buyer, deal_id, milestone)


def refused(name: str) -> pytest.RaisesExc[EscrowError]:
    return pytest.raises(EscrowError, match=rf"^(\w+: )?{name}\(")


# -- deployment and EIP-712 -------------------------------------------------------------------


def test_escrow_fits_the_eip170_code_size_limit() -> None:
    """Mainnet and Anvil refuse to deploy contracts over 24,576 bytes (EIP-170)."""
    assert escrow_code_size() <= EIP170_LIMIT, (
        f"SupplyChainEscrow is {escrow_code_size()} bytes deployed; EIP-170 allows {EIP170_LIMIT}"
    )


def test_deploy_escrow_allow_lists_the_token_and_grants_roles(world: World) -> None:
    client = world.client
    assert client.is_token_allowed(world.token)
    for role in (
        "TOKEN_MANAGER_ROLE",
        "PAUSER_ROLE",
        "COMPLIANCE_ROLE",
        "REGISTRAR_ROLE",
        "DEFAULT_ADMIN_ROLE",
    ):
        assert client.has_role(role, world.admin.address), role
    assert client.is_arbiter_accredited(world.arbiter.address)
    assert not client.is_arbiter_accredited(world.stranger.address)
    assert client.has_role("COMPLIANCE_ROLE", world.officer.address)
    assert not client.has_role("PAUSER_ROLE", world.officer.address)
    assert client.inspector_id(world.inspector1.address) == 1
    assert client.token_balance(world.token, world.buyer.address) == 1_000_000 * 10**6


def test_domain_separator_and_digest_match_the_contract(world: World) -> None:
    client = world.client
    assert domain_separator(client.chain_id, client.address) == client.onchain_domain_separator()
    signed = client.sign_attestation(world.inspector1, 7, 1, REPORT, deadline=10**10, nonce=5)
    digest = attestation_digest(
        client.chain_id,
        client.address,
        inspector=world.inspector1.address,
        deal_id=7,
        milestone=1,
        report_hash=REPORT,
        nonce=5,
        deadline=10**10,
    )
    assert Account._recover_hash(digest, signature=signed.signature) == world.inspector1.address


# -- the whole life cycle ---------------------------------------------------------------------


def test_full_lifecycle_with_direct_and_relayed_attestations(world: World) -> None:
    client, buyer, supplier = world.client, world.buyer, world.supplier
    params = world.params()
    milestones = world.milestones(2)
    created = client.create_deal(buyer, params, milestones)
    deal_id = created.deal_id
    assert deal_id == client.deal_count() == 1
    assert [e.name for e in created.events] == [
        "DealCreated",
        "MilestoneCreated",
        "MilestoneCreated",
    ]
    assert created.gas_used > 21_000 and created.block_number > 0
    assert created.event("DealCreated").args["buyer"] == buyer.address

    fresh = client.deal(deal_id)
    assert (fresh.buyer, fresh.supplier, fresh.arbiter) == (
        buyer.address,
        supplier.address,
        world.arbiter.address,
    )
    assert fresh.financier is None and fresh.token == world.token
    assert fresh.inspectors == tuple(params.inspectors)
    assert (fresh.inspector_threshold, fresh.inspection_window, fresh.dispute_timeout) == (
        2,
        WINDOW,
        TIMEOUT,
    )
    assert (fresh.default_payee_bps, fresh.long_stop) == (5_000, params.long_stop)
    assert (fresh.approvals_required, fresh.approval_threshold, fresh.approvers) == (0, 0, ())
    for ms, spec in zip(fresh.milestones, milestones, strict=True):
        assert ms.status is MilestoneStatus.OPEN
        assert (ms.amount, ms.due_date, ms.document_hash) == (
            spec.amount,
            spec.due_date,
            spec.document_hash,
        )
        assert (ms.funded, ms.released, ms.refunded, ms.held) == (0, 0, 0, 0)
        assert ms.payee == supplier.address and not ms.financed
        assert ms.hold is ms.dispute is ms.approval is ms.offer is None

    half = AMOUNT // 2
    funded = client.fund(buyer, deal_id, 0, half)
    assert funded.event("MilestoneFunded").args["fundedTotal"] == half
    assert client.deal(deal_id).milestones[0].status is MilestoneStatus.OPEN
    client.fund(buyer, deal_id, 0, AMOUNT - half)
    client.fund(buyer, deal_id, 1, AMOUNT)
    state = client.deal(deal_id)
    assert [m.status for m in state.milestones] == [MilestoneStatus.FUNDED] * 2
    assert (state.funded, state.held) == (2 * AMOUNT, 2 * AMOUNT)
    with refused("SupplyChainEscrowInvalidStatus") as info:
        client.fund(buyer, deal_id, 0, 1)
    assert info.value.arguments["status"] is MilestoneStatus.FUNDED

    shipped = client.mark_shipped(supplier, deal_id, 0, BOL)
    assert shipped.event("MilestoneShipped").args["documentHash"] == BOL

    direct = client.attest(world.inspector1, deal_id, 0, REPORT)
    assert [e.name for e in direct.events] == ["InspectionAttested"]
    signed = client.sign_attestation(
        world.inspector2, deal_id, 0, REPORT, deadline=now(world.w3) + 3600
    )
    relayed = client.relay_attestation(world.relayer, signed)
    assert [e.name for e in relayed.events] == ["InspectionAttested", "MilestoneInspected"]
    assert relayed.event("InspectionAttested").args["inspector"] == world.inspector2.address
    inspected = client.deal(deal_id).milestones[0]
    assert inspected.status is MilestoneStatus.INSPECTED and inspected.attestations == 2
    assert inspected.window_ends_at == inspected.stage_at + WINDOW
    assert not inspected.deemed_accepted
    assert client.has_attested(deal_id, 0, world.inspector2.address)
    assert client.is_nonce_used(world.inspector2.address, signed.nonce)

    client.accept(buyer, deal_id, 0)
    released = client.release(world.stranger, deal_id, 0)  # anyone may release
    assert released.event("MilestoneReleased").args["payee"] == supplier.address
    assert client.credit_of(supplier.address, world.token) == AMOUNT

    before = client.token_balance(world.token, supplier.address)
    withdrawn = client.withdraw(supplier, world.token)
    assert [e.name for e in withdrawn.events] == ["Withdrawn", "Transfer"]
    assert client.token_balance(world.token, supplier.address) == before + AMOUNT
    assert client.credit_of(supplier.address, world.token) == 0
    with refused("SupplyChainEscrowNothingToWithdraw"):
        client.withdraw(supplier, world.token)

    final = client.deal(deal_id)
    first, second = final.milestones
    assert first.status is MilestoneStatus.RELEASED
    assert (first.funded, first.released, first.refunded, first.held) == (AMOUNT, AMOUNT, 0, 0)
    assert first.shipping_document == BOL and first.window_ends_at is None
    assert second.status is MilestoneStatus.FUNDED and second.held == AMOUNT
    assert (final.funded, final.released, final.refunded, final.held) == (
        2 * AMOUNT,
        AMOUNT,
        0,
        AMOUNT,
    )
    assert client.accounting(deal_id).released == AMOUNT


def test_refusals_carry_the_decoded_custom_error(world: World) -> None:
    client = world.client
    deal_id = client.create_deal(world.buyer, world.params(), world.milestones(1)).deal_id
    with refused("SupplyChainEscrowUnauthorized") as info:
        client.fund(world.stranger, deal_id, 0, AMOUNT)
    error = info.value
    assert error.arguments == {
        "dealId": deal_id,
        "account": world.stranger.address,
        "expected": Party.BUYER,
    }
    selector = Web3.keccak(text="SupplyChainEscrowUnauthorized(uint256,address,uint8)")[:4]
    assert error.tx_hash is None and error.data[:4] == selector
    assert isinstance(error, ChainError)
    with refused("SupplyChainEscrowUnknownDeal") as unknown:
        client.deal(999)
    assert unknown.value.arguments == {"dealId": 999}
    with refused("AccessControlUnauthorizedAccount") as role:
        client.pause(world.stranger)
    assert role.value.arguments["account"] == world.stranger.address
    assert role.value.arguments["neededRole"] == client.role("PAUSER_ROLE")


def test_revert_at_receipt_is_decoded_from_the_mined_transaction(world: World) -> None:
    """Two attestations by the same inspector both pass estimation while neither is mined;
    the second reverts on chain, and its error is recovered from the receipt's trace."""
    client = world.client
    deal_id = client.create_deal(world.buyer, world.params(), world.milestones(1)).deal_id
    to_shipped(world, deal_id)
    signed = client.sign_attestation(
        world.inspector1, deal_id, 0, REPORT, deadline=now(world.w3) + 3600
    )
    rpc(world.w3, "evm_setAutomine", False)
    try:
        first = client.submit(
            world.inspector1, client.contract.functions.attestInspection(deal_id, 0, REPORT)
        )
        second = client.submit(
            world.relayer,
            client.contract.functions.attestInspectionBySig(
                deal_id,
                0,
                signed.inspector,
                REPORT,
                signed.nonce,
                signed.deadline,
                signed.signature,
            ),
        )
        rpc(world.w3, "evm_mine")
    finally:
        rpc(world.w3, "evm_setAutomine", True)
    assert client.result(first.tx_hash).event("InspectionAttested")
    with refused(r"mined: SupplyChainEscrowAlreadyAttested") as info:
        client.result(second.tx_hash)
    assert info.value.tx_hash == "0x" + second.tx_hash.hex()
    assert info.value.arguments["inspector"] == world.inspector1.address


# -- financing --------------------------------------------------------------------------------


def test_financing_moves_the_claim_and_refuses_double_financing(world: World) -> None:
    client, supplier, financier = world.client, world.supplier, world.financier
    invoice, advance = h("invoice 42"), AMOUNT * 97 // 100
    first, second = world.milestones(2)
    planned = [
        dataclasses.replace(first, invoice_hash=invoice),
        dataclasses.replace(second, invoice_hash=h("invoice 44")),
    ]
    created = client.create_deal(world.buyer, world.params(), planned)
    deal_id = created.deal_id
    assert [e.args["invoiceHash"] for e in created.named("InvoiceDeclared")] == [
        invoice,
        h("invoice 44"),
    ]
    with refused("SupplyChainEscrowInvoiceAlreadyDeclared"):
        client.create_deal(
            world.buyer, world.params(), [dataclasses.replace(first, invoice_hash=invoice)]
        )
    client.fund(world.buyer, deal_id, 0, AMOUNT)
    expires = now(world.w3) + DAY
    client.offer_financing(
        supplier,
        deal_id,
        0,
        financier=financier.address,
        advance=advance,
        invoice_hash=invoice,
        expires_at=expires,
    )
    offer = client.deal(deal_id).milestones[0].offer
    assert offer is not None
    assert (offer.financier, offer.advance, offer.invoice_hash, offer.expires_at) == (
        financier.address,
        advance,
        invoice,
        expires,
    )
    with refused("SupplyChainEscrowFinancingTermsMismatch"):
        client.accept_financing(financier, deal_id, 0, advance=advance - 1, invoice_hash=invoice)
    financed = client.accept_financing(financier, deal_id, 0, advance=advance, invoice_hash=invoice)
    assert financed.event("ReceivableFinanced").args["advance"] == advance
    assert client.is_invoice_financed(invoice, supplier=supplier.address, buyer=world.buyer.address)
    state = client.deal(deal_id).milestones[0]
    assert state.payee == financier.address and state.financed and state.offer is None
    assert client.credit_of(supplier.address, world.token) == advance

    with refused("SupplyChainEscrowInvoiceNotDeclared") as elsewhere:
        client.offer_financing(
            supplier,
            deal_id,
            1,
            financier=financier.address,
            advance=advance,
            invoice_hash=invoice,
            expires_at=expires,
        )
    assert elsewhere.value.arguments == {"dealId": deal_id, "milestone": 1, "invoiceHash": invoice}
    with refused("SupplyChainEscrowInvoiceAlreadyFinanced") as double:
        client.offer_financing(
            supplier,
            deal_id,
            0,
            financier=financier.address,
            advance=advance,
            invoice_hash=invoice,
            expires_at=expires,
        )
    assert double.value.arguments == {"invoiceHash": invoice}

    client.offer_financing(
        supplier,
        deal_id,
        1,
        financier=financier.address,
        advance=advance,
        invoice_hash=h("invoice 44"),
        expires_at=expires,
    )
    cancelled = client.cancel_financing_offer(supplier, deal_id, 1)
    assert cancelled.event("FinancingOfferCancelled")
    assert client.deal(deal_id).milestones[1].offer is None

    client.mark_shipped(supplier, deal_id, 0, BOL)
    client.attest(world.inspector1, deal_id, 0, REPORT)
    client.attest(world.inspector3, deal_id, 0, REPORT)
    client.accept(world.buyer, deal_id, 0)
    paid = client.release(world.buyer, deal_id, 0)
    assert paid.event("MilestoneReleased").args["payee"] == financier.address
    assert client.credit_of(financier.address, world.token) == AMOUNT


# -- disputes, deemed acceptance, long stop ---------------------------------------------------


def test_dispute_settled_by_the_arbiter_and_by_timeout(world: World) -> None:
    client, buyer = world.client, world.buyer
    deal_id = client.create_deal(buyer, world.params(), world.milestones(2)).deal_id
    to_shipped(world, deal_id, 0)
    client.fund(buyer, deal_id, 1, AMOUNT)
    client.open_dispute(buyer, deal_id, 0, h("goods damaged"))
    disputed = client.deal(deal_id).milestones[0]
    assert disputed.status is MilestoneStatus.DISPUTED and disputed.dispute is not None
    assert disputed.dispute.opened_by == buyer.address
    assert disputed.dispute.timeout_at == disputed.dispute.opened_at + TIMEOUT
    with refused("SupplyChainEscrowUnauthorized") as info:
        client.resolve_dispute(buyer, deal_id, 0, 10_000, h("ruling"))
    assert info.value.arguments["expected"] is Party.ARBITER

    ruling = client.resolve_dispute(world.arbiter, deal_id, 0, 7_000, h("ruling 1"))
    args = ruling.event("DisputeSettled").args
    assert (args["payeeAmount"], args["buyerAmount"], args["byDefault"]) == (
        AMOUNT * 7 // 10,
        AMOUNT * 3 // 10,
        False,
    )
    settled = client.deal(deal_id).milestones[0]
    assert settled.status is MilestoneStatus.SETTLED
    assert (settled.released, settled.refunded, settled.held) == (
        AMOUNT * 7 // 10,
        AMOUNT * 3 // 10,
        0,
    )
    assert client.credit_of(world.supplier.address, world.token) == AMOUNT * 7 // 10
    assert client.credit_of(buyer.address, world.token) == AMOUNT * 3 // 10

    client.open_dispute(world.supplier, deal_id, 1, h("buyer refuses delivery"))
    with refused("SupplyChainEscrowDisputeTimeoutPending"):
        client.apply_dispute_timeout(world.stranger, deal_id, 1)
    travel(world.w3, TIMEOUT + 1)
    by_default = client.apply_dispute_timeout(world.stranger, deal_id, 1)
    assert by_default.event("DisputeSettled").args["byDefault"] is True
    deal = client.deal(deal_id)
    assert deal.milestones[1].released == AMOUNT // 2 == deal.milestones[1].refunded
    assert (deal.released, deal.refunded, deal.held) == (
        AMOUNT * 7 // 10 + AMOUNT // 2,
        AMOUNT * 3 // 10 + AMOUNT // 2,
        0,
    )


def test_deemed_acceptance_after_the_inspection_window(world: World) -> None:
    client = world.client
    deal_id = client.create_deal(world.buyer, world.params(), world.milestones(1)).deal_id
    to_inspected(world, deal_id)
    with refused("SupplyChainEscrowWindowOpen"):
        client.release(world.stranger, deal_id, 0)
    assert not client.deal(deal_id).milestones[0].deemed_accepted
    travel(world.w3, WINDOW + 1)
    assert client.deal(deal_id).milestones[0].deemed_accepted
    with refused("SupplyChainEscrowWindowClosed"):
        client.open_dispute(world.buyer, deal_id, 0, h("too late"))
    released = client.release(world.stranger, deal_id, 0)
    accepted = released.event("MilestoneAccepted").args
    assert accepted["deemed"] is True and accepted["actor"] == world.stranger.address
    assert client.deal(deal_id).milestones[0].status is MilestoneStatus.RELEASED


def test_long_stop_refunds_the_buyer(world: World) -> None:
    client, buyer = world.client, world.buyer
    params = world.params(long_stop=now(world.w3) + 90 * DAY)
    deal_id = client.create_deal(buyer, params, world.milestones(2)).deal_id
    client.fund(buyer, deal_id, 0, AMOUNT)
    client.fund(buyer, deal_id, 1, AMOUNT // 4)  # partly funded
    with refused("SupplyChainEscrowLongStopNotReached"):
        client.reclaim_after_long_stop(buyer, deal_id)
    travel(world.w3, 90 * DAY + 1)
    with refused("SupplyChainEscrowLongStopPassed"):
        client.fund(buyer, deal_id, 1, 1)
    with refused("SupplyChainEscrowUnauthorized"):
        client.reclaim_after_long_stop(world.supplier, deal_id)
    before = client.token_balance(world.token, buyer.address)
    reclaimed = client.reclaim_after_long_stop(buyer, deal_id)
    assert [e.args["amount"] for e in reclaimed.named("MilestoneRefunded")] == [
        AMOUNT,
        AMOUNT // 4,
    ]
    deal = client.deal(deal_id)
    assert [m.status for m in deal.milestones] == [MilestoneStatus.REFUNDED] * 2
    assert (deal.refunded, deal.held) == (AMOUNT + AMOUNT // 4, 0)
    client.withdraw(buyer, world.token)
    assert client.token_balance(world.token, buyer.address) == before + AMOUNT + AMOUNT // 4


# -- maker-checker and compliance holds -------------------------------------------------------


def test_maker_checker_release_needs_k_approvals(world: World) -> None:
    client = world.client
    approvers = [world.approver1, world.approver2, world.approver3]
    params = world.params(
        approvers=[a.address for a in approvers],
        approvals_required=2,
        approval_threshold=AMOUNT // 2,
    )
    created = client.create_deal(world.buyer, params, world.milestones(1))
    deal_id = created.deal_id
    controls = created.event("DealControlsSet").args
    assert controls["approvers"] == [a.address for a in approvers]
    deal = client.deal(deal_id)
    assert deal.approvers == tuple(a.address for a in approvers)
    assert (deal.approvals_required, deal.approval_threshold) == (2, AMOUNT // 2)
    assert client.is_approver(deal_id, world.approver2.address)

    to_accepted(world, deal_id)
    with refused("SupplyChainEscrowApprovalsMissing") as missing:
        client.release(world.buyer, deal_id, 0)
    assert missing.value.arguments == {
        "dealId": deal_id,
        "milestone": 0,
        "approvals": 0,
        "required": 2,
    }
    with refused("SupplyChainEscrowReleaseNotRequested"):
        client.approve_release(world.approver2, deal_id, 0)
    client.request_release(world.approver1, deal_id, 0)
    with refused("SupplyChainEscrowInitiatorCannotApprove"):
        client.approve_release(world.approver1, deal_id, 0)
    with refused("SupplyChainEscrowUnauthorized") as not_approver:
        client.approve_release(world.buyer, deal_id, 0)
    assert not_approver.value.arguments["expected"] is Party.APPROVER
    client.approve_release(world.approver2, deal_id, 0)
    with refused("SupplyChainEscrowAlreadyApproved"):
        client.approve_release(world.approver2, deal_id, 0)
    approval = client.deal(deal_id).milestones[0].approval
    assert approval is not None
    assert (approval.initiator, approval.approvals) == (world.approver1.address, 1)
    with refused("SupplyChainEscrowApprovalsMissing"):
        client.release(world.buyer, deal_id, 0)
    client.approve_release(world.approver3, deal_id, 0)
    assert client.release(world.buyer, deal_id, 0).event("MilestoneReleased")


def test_accepted_money_reaches_its_payee_when_approvals_never_come(world: World) -> None:
    """Issue 13 through the client: the buyer cannot approve its own deal; a stuck request is
    withdrawn; the payee escalates after the approval deadline and the arbiter's silence pays
    it; at the long stop an accepted milestone is paid, never refunded."""
    client = world.client
    with refused("SupplyChainEscrowDuplicateParty"):
        client.create_deal(
            world.buyer,
            world.params(approvers=[world.buyer.address], approvals_required=1),
            world.milestones(1),
        )
    params = world.params(
        approvers=[world.approver1.address, world.approver2.address],
        approvals_required=2,
        approval_threshold=1,
    )
    deal_id = client.create_deal(world.buyer, params, world.milestones(2)).deal_id
    to_accepted(world, deal_id, 0)
    client.request_release(world.approver1, deal_id, 0)
    withdrawn = client.withdraw_release_request(world.buyer, deal_id, 0)
    assert withdrawn.event("ReleaseRequestWithdrawn").args["actor"] == world.buyer.address
    assert client.deal(deal_id).milestones[0].approval is None
    with refused("SupplyChainEscrowApprovalDeadlinePending"):
        client.escalate_release(world.supplier, deal_id, 0)
    travel(world.w3, WINDOW + TIMEOUT + 1)
    escalated = client.escalate_release(world.supplier, deal_id, 0)
    assert escalated.event("MilestoneEscalated").args["defaultPayeeBps"] == 10_000
    assert client.deal(deal_id).milestones[0].status is MilestoneStatus.DISPUTED
    travel(world.w3, TIMEOUT + 1)
    client.apply_dispute_timeout(world.stranger, deal_id, 0)
    assert client.credit_of(world.supplier.address, world.token) == AMOUNT

    # milestone 1: accepted, never approved, a hold on it; the long stop pays the payee
    to_accepted(world, deal_id, 1)
    client.place_hold(world.officer, deal_id, 1, h("kyc"), 10 * DAY)
    held, long_stop = client.hold_time(deal_id, 1)
    assert (held, long_stop) == (10 * DAY, params.long_stop + 10 * DAY)
    assert client.hold_cap() == (90 * DAY, 0, 0)
    travel(world.w3, long_stop - now(world.w3) + 1)
    with refused("SupplyChainEscrowNothingToReclaim"):
        client.reclaim_after_long_stop(world.buyer, deal_id)
    settled = client.settle_after_long_stop(world.stranger, deal_id, 1)
    assert settled.event("MilestoneEscalated")  # approvals missing: the arbiter decides
    travel(world.w3, TIMEOUT + 1)
    client.apply_dispute_timeout(world.stranger, deal_id, 1)
    assert client.credit_of(world.supplier.address, world.token) == 2 * AMOUNT
    assert client.credit_of(world.buyer.address, world.token) == 0


def test_compliance_hold_blocks_release_until_lifted(world: World) -> None:
    client, officer = world.client, world.officer
    deal_id = client.create_deal(world.buyer, world.params(), world.milestones(1)).deal_id
    to_accepted(world, deal_id)
    with refused("AccessControlUnauthorizedAccount"):
        client.place_hold(world.stranger, deal_id, 0, h("sanctions screening"), DAY)
    placed = client.place_hold(officer, deal_id, 0, h("sanctions screening"), DAY)
    until = placed.event("ComplianceHoldPlaced").args["until"]
    hold = client.deal(deal_id).milestones[0].hold
    assert hold is not None and hold.active
    assert (hold.until, hold.reason_hash) == (until, h("sanctions screening"))
    with refused("SupplyChainEscrowOnHold") as info:
        client.release(world.buyer, deal_id, 0)
    assert info.value.arguments["until"] == until
    renewed = client.renew_hold(officer, deal_id, 0, h("escalated"), 2 * DAY)
    assert renewed.event("ComplianceHoldRenewed").args["until"] > until
    travel(world.w3, DAY + 1)
    with refused("SupplyChainEscrowOnHold"):  # the renewal outlasts the first day
        client.release(world.buyer, deal_id, 0)
    client.lift_hold(officer, deal_id, 0, h("cleared"))
    assert client.deal(deal_id).milestones[0].hold is None
    assert client.release(world.buyer, deal_id, 0).event("MilestoneReleased")


# -- signatures -------------------------------------------------------------------------------


def test_replayed_expired_forged_and_cancelled_signatures_are_refused(world: World) -> None:
    client = world.client
    deal_id = client.create_deal(world.buyer, world.params(), world.milestones(1)).deal_id
    to_shipped(world, deal_id)
    deadline = now(world.w3) + 3600

    expired = client.sign_attestation(
        world.inspector1, deal_id, 0, REPORT, deadline=now(world.w3) - 1
    )
    with refused("SupplyChainEscrowSignatureExpired") as info:
        client.relay_attestation(world.relayer, expired)
    assert info.value.arguments == {"deadline": expired.deadline}

    forged = client.sign_attestation(world.stranger, deal_id, 0, REPORT, deadline=deadline)
    forged = dataclasses.replace(forged, inspector=world.inspector1.address)
    with refused("SupplyChainEscrowInvalidSignature"):
        client.relay_attestation(world.relayer, forged)

    signed = client.sign_attestation(world.inspector1, deal_id, 0, REPORT, deadline=deadline)
    client.relay_attestation(world.relayer, signed)
    with refused("SupplyChainEscrowNonceUsed") as replay:
        client.relay_attestation(world.stranger, signed)
    assert replay.value.arguments == {
        "inspector": world.inspector1.address,
        "nonce": signed.nonce,
    }

    cancelled = client.sign_attestation(world.inspector2, deal_id, 0, REPORT, deadline=deadline)
    client.invalidate_attestation_nonce(world.inspector2, cancelled.nonce)
    with refused("SupplyChainEscrowNonceUsed"):
        client.relay_attestation(world.relayer, cancelled)
    assert client.deal(deal_id).milestones[0].attestations == 1


# -- administration ---------------------------------------------------------------------------


def test_pause_stops_new_business_but_not_withdrawals(world: World) -> None:
    client, admin = world.client, world.admin
    deal_id = client.create_deal(world.buyer, world.params(), world.milestones(2)).deal_id
    to_accepted(world, deal_id)
    client.release(world.buyer, deal_id, 0)
    assert client.pause(admin).event("Paused")
    assert client.paused()
    with refused("SupplyChainEscrowPaused"):
        client.create_deal(world.buyer, world.params(), world.milestones(1))
    with refused("SupplyChainEscrowPaused"):
        client.fund(world.buyer, deal_id, 1, AMOUNT)
    assert client.withdraw(world.supplier, world.token).event("Withdrawn")
    client.unpause(admin)
    client.set_token_allowed(admin, world.token, False)
    with refused("SupplyChainEscrowTokenNotAllowed"):
        client.create_deal(world.buyer, world.params(), world.milestones(1))
    client.fund(world.buyer, deal_id, 1, AMOUNT)  # existing deals keep their token


def test_error_decoder_knows_every_interface_error() -> None:
    interface = escrow_artifacts()["SupplyChainEscrow"].abi
    names = {e["name"] for e in interface if e["type"] == "error"}
    decoder = ErrorDecoder(interface)
    assert names <= set(decoder.names())
    assert decoder.decode(b"") == ("Reverted", {})
    assert decoder.decode(bytes.fromhex("deadbeef"))[0] == "0xdeadbeef"


# -- the proof gate on a real anchored log ----------------------------------------------------


def test_proof_gate_needs_a_real_inclusion_proof(world: World, tmp_path: Path) -> None:
    """A milestone gated on an inspection certificate of the audit log: acceptance waits for
    a proof that the certificate is in a checkpoint anchored on the real AuditAnchor, signed
    by the inspector the milestone names (the anchorer's key alone cannot pass the gate)."""
    deployer: LocalAccount = Account.create()
    rpc(world.w3, "anvil_setBalance", deployer.address, hex(10**21))
    anchor = deploy_contracts(world.chain, deployer)["AuditAnchor"].address
    gated_world = make_world(world.devnet, anchor=anchor)
    client = gated_world.client
    certificate = prepare(
        {
            "id": "cert-42",
            "kind": "document",
            "timestamp": "2026-11-21T09:30:00Z",
            "actor": "inspector:sgs",
            "payload": {"certificate": "inspection 42", "result": "pass"},
        }
    )
    others = [
        prepare(
            {
                "id": f"tx-{i}",
                "kind": "transaction",
                "timestamp": "2026-11-21T09:30:00Z",
                "actor": "buyer:acme",
                "payload": {"n": i},
            }
        )
        for i in range(6)
    ]
    with Log.open(tmp_path / "data") as log:
        log.append([*others[:3], certificate, *others[3:]])
        leaf_index = log.entry("cert-42").index
        anchorer = Anchorer(log, world.chain, deployer, anchor, policy=AnchorPolicy(finality=2))
        anchored = anchorer.anchor_now(timeout=30)
        anchorer.close()
        assert anchored.seq is not None and anchored.tree_size == 7
        proof = log.inclusion_proof(leaf_index, anchored.tree_size)

    inspector = gated_world.inspector1
    gated = gated_world.milestones(
        1, proof_leaf=certificate.leaf_hash, proof_signer=inspector.address
    )
    created = client.create_deal(gated_world.buyer, gated_world.params(), gated)
    deal_id = created.deal_id
    gate_set = created.event("ProofGateSet").args
    assert (gate_set["leafHash"], gate_set["signer"]) == (certificate.leaf_hash, inspector.address)
    to_inspected(gated_world, deal_id)
    with refused("SupplyChainEscrowProofRequired"):
        client.accept(gated_world.buyer, deal_id, 0)
    chain_id = client.chain_id
    signed = bytes.fromhex(sign_record(inspector, chain_id, "cert-42", certificate.leaf_hash)[2:])
    with refused("SupplyChainEscrowProofRejected"):
        client.prove_record(
            gated_world.relayer,
            deal_id,
            0,
            anchored.seq,
            leaf_index + 1,
            proof,
            record_id="cert-42",
            signature=signed,
        )
    # the anchorer's (deployer's) own signature of the anchored certificate does not do
    forged = bytes.fromhex(sign_record(deployer, chain_id, "cert-42", certificate.leaf_hash)[2:])
    with refused("SupplyChainEscrowInvalidSignature"):
        client.prove_record(
            gated_world.relayer,
            deal_id,
            0,
            anchored.seq,
            leaf_index,
            proof,
            record_id="cert-42",
            signature=forged,
        )
    proven = client.prove_record(
        gated_world.relayer,
        deal_id,
        0,
        anchored.seq,
        leaf_index,
        proof,
        record_id="cert-42",
        signature=signed,
    )
    args = proven.event("RecordProven").args
    assert (args["leafHash"], args["leafIndex"]) == (certificate.leaf_hash, leaf_index)
    milestone = client.deal(deal_id).milestones[0]
    assert milestone.proof_required and milestone.proof_verified
    assert milestone.proof_leaf == certificate.leaf_hash
    client.accept(gated_world.buyer, deal_id, 0)
    assert client.release(gated_world.buyer, deal_id, 0).event("MilestoneReleased")
