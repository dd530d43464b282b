// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {EscrowFixture} from "./escrow/EscrowFixture.sol";
import {ISupplyChainEscrow as I} from "../interfaces/ISupplyChainEscrow.sol";
import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {SupplyChainEscrow} from "../SupplyChainEscrow.sol";
import {IAuditAnchor} from "../interfaces/IAuditAnchor.sol";

/// @notice Disputes, financing, maker-checker approvals, compliance holds, the proof gate,
/// relayed attestations and administration.
contract EscrowControlsTest is EscrowFixture {
    // ------------------------------------------------------------------ disputes

    function test_dispute_arbiterSplits() public {
        uint256 id = _standardDeal();
        _toShipped(id, 0);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.DisputeOpened(id, 0, buyer, REASON_HASH);
        vm.prank(buyer);
        escrow.openDispute(id, 0, REASON_HASH);
        _assertStatus(id, 0, I.MilestoneStatus.Disputed);
        // the dispute freezes only its milestone
        _toAccepted(id, 1);
        escrow.release(id, 1);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.DisputeSettled(id, 0, arbiter, 7_000, 700e6, 300e6, false, keccak256("ruling"));
        vm.prank(arbiter);
        escrow.resolveDispute(id, 0, 7_000, keccak256("ruling"));
        _assertStatus(id, 0, I.MilestoneStatus.Settled);
        assertEq(escrow.creditOf(supplier, address(usdc)), AMOUNT + 700e6, "supplier credit");
        assertEq(escrow.creditOf(buyer, address(usdc)), 300e6, "buyer credit");
        (address openedBy,, uint256 bps) = escrow.getDispute(id, 0);
        assertEq(openedBy, buyer, "opener");
        assertEq(bps, 7_000, "bps");
    }

    function test_dispute_reverts() public {
        uint256 id = _standardDeal();
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidStatus.selector, id, 0, I.MilestoneStatus.Open));
        escrow.openDispute(id, 0, REASON_HASH);
        _toInspected(id, 0);
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(I.SupplyChainEscrowUnauthorized.selector, id, stranger, I.Party.BuyerOrPayee)
        );
        escrow.openDispute(id, 0, REASON_HASH);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowZeroHash.selector));
        escrow.openDispute(id, 0, bytes32(0));
        uint256 windowEnd = _now() + WINDOW;
        vm.warp(windowEnd + 1);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowWindowClosed.selector, id, 0, windowEnd));
        escrow.openDispute(id, 0, REASON_HASH);
        // ruling needs a dispute, the arbiter, and a valid split
        vm.prank(arbiter);
        vm.expectRevert(
            abi.encodeWithSelector(I.SupplyChainEscrowInvalidStatus.selector, id, 0, I.MilestoneStatus.Inspected)
        );
        escrow.resolveDispute(id, 0, 1, bytes32(0));
        _toShipped(id, 1);
        vm.prank(supplier);
        escrow.openDispute(id, 1, REASON_HASH);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowUnauthorized.selector, id, buyer, I.Party.Arbiter));
        escrow.resolveDispute(id, 1, 1, bytes32(0));
        vm.prank(arbiter);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidBps.selector, 10_001));
        escrow.resolveDispute(id, 1, 10_001, bytes32(0));
        vm.prank(buyer);
        vm.expectRevert(
            abi.encodeWithSelector(I.SupplyChainEscrowInvalidStatus.selector, id, 1, I.MilestoneStatus.Disputed)
        );
        escrow.openDispute(id, 1, REASON_HASH);
    }

    function test_dispute_revertsAfterLongStop() public {
        uint256 id = _standardDeal();
        _toShipped(id, 0);
        vm.warp(START + 180 days + 1);
        vm.prank(supplier);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowLongStopPassed.selector, id, START + 180 days));
        escrow.openDispute(id, 0, REASON_HASH);
    }

    function test_dispute_timeoutAppliesDefault() public {
        uint256 id = _standardDeal();
        _toShipped(id, 0);
        vm.prank(supplier);
        escrow.openDispute(id, 0, REASON_HASH);
        uint256 endsAt = _now() + TIMEOUT;
        vm.warp(endsAt);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowDisputeTimeoutPending.selector, id, 0, endsAt));
        escrow.applyDisputeTimeout(id, 0);
        vm.warp(endsAt + 1);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.DisputeSettled(id, 0, stranger, DEFAULT_BPS, 500e6, 500e6, true, bytes32(0));
        vm.prank(stranger);
        escrow.applyDisputeTimeout(id, 0);
        _assertStatus(id, 0, I.MilestoneStatus.Settled);
        vm.expectRevert(
            abi.encodeWithSelector(I.SupplyChainEscrowInvalidStatus.selector, id, 0, I.MilestoneStatus.Settled)
        );
        escrow.applyDisputeTimeout(id, 0);
    }

    function test_dispute_worksWhilePausedAndHeld() public {
        uint256 id = _standardDeal();
        _toShipped(id, 0);
        vm.prank(officer);
        escrow.placeHold(id, 0, REASON_HASH, 10 days);
        vm.prank(admin);
        escrow.pause();
        vm.prank(buyer);
        escrow.openDispute(id, 0, REASON_HASH);
        vm.prank(arbiter);
        escrow.resolveDispute(id, 0, 0, bytes32(0));
        assertEq(escrow.creditOf(buyer, address(usdc)), AMOUNT, "full refund");
    }

    // ------------------------------------------------------------------ financing

    function _offer(uint256 id, uint256 m, uint96 advance, bytes32 invoice) internal {
        vm.prank(supplier);
        escrow.offerFinancing(id, m, financier, advance, invoice, uint40(_now() + 1 days));
    }

    function test_financing_assignsClaimAtomically() public {
        uint256 id = _standardDeal();
        _toShipped(id, 0);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.FinancingOffered(id, 0, financier, 950e6, INVOICE_HASH, _now() + 1 days);
        _offer(id, 0, 950e6, INVOICE_HASH);
        uint256 financierBefore = usdc.balanceOf(financier);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.ReceivableFinanced(id, 0, financier, supplier, 950e6, INVOICE_HASH);
        vm.prank(financier);
        escrow.acceptFinancing(id, 0, 950e6, INVOICE_HASH);
        assertEq(usdc.balanceOf(financier), financierBefore - 950e6, "advance paid");
        assertEq(escrow.creditOf(supplier, address(usdc)), 950e6, "supplier credited");
        assertEq(escrow.getMilestone(id, 0).payee, financier, "payee");
        assertTrue(escrow.isInvoiceFinanced(escrow.invoiceCommitment(supplier, buyer, INVOICE_HASH)), "registry");
        (address offered,,,) = escrow.getFinancingOffer(id, 0);
        assertEq(offered, address(0), "offer consumed");
        _attest(id, 0, inspector1);
        _attest(id, 0, inspector2);
        vm.prank(buyer);
        escrow.acceptMilestone(id, 0);
        escrow.release(id, 0);
        assertEq(escrow.creditOf(financier, address(usdc)), AMOUNT, "financier paid on release");
    }

    function test_financing_refusesDoubleFinancing() public {
        uint256 id = _standardDeal();
        _toShipped(id, 0);
        _toShipped(id, 1);
        _offer(id, 0, 900e6, INVOICE_HASH);
        vm.prank(financier);
        escrow.acceptFinancing(id, 0, 900e6, INVOICE_HASH);
        bytes32 commitment = escrow.invoiceCommitment(supplier, buyer, INVOICE_HASH);
        assertTrue(escrow.isInvoiceFinanced(commitment), "registry");
        // the invoice is milestone 0's: another milestone cannot be financed under it
        vm.prank(supplier);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvoiceNotDeclared.selector, id, 1, INVOICE_HASH));
        escrow.offerFinancing(id, 1, financier, 900e6, INVOICE_HASH, uint40(_now() + 1));
        // nor can another deal between the same parties declare it again
        I.MilestoneParams[] memory ms = _milestones(1, AMOUNT);
        ms[0].invoiceHash = INVOICE_HASH;
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvoiceAlreadyDeclared.selector, INVOICE_HASH));
        escrow.createDeal(_params(1, 1), ms);
        // the same milestone cannot be financed twice
        vm.prank(supplier);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvoiceAlreadyFinanced.selector, INVOICE_HASH));
        escrow.offerFinancing(id, 0, financier, 900e6, INVOICE_HASH, uint40(_now() + 1));
        // (nor can its payee, now the financier, offer it)
        vm.prank(financier);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowUnauthorized.selector, id, financier, I.Party.Payee));
        escrow.offerFinancing(id, 0, address(0xF2), 900e6, INVOICE_HASH, uint40(_now() + 1));
    }

    function test_financing_reverts() public {
        uint256 id = _standardDeal();
        vm.prank(financier);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowNoFinancingOffer.selector, id, 0));
        escrow.acceptFinancing(id, 0, 1, INVOICE_HASH);
        vm.startPrank(supplier);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidAdvance.selector, 0, AMOUNT));
        escrow.offerFinancing(id, 0, financier, 0, INVOICE_HASH, uint40(_now() + 1));
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidAdvance.selector, AMOUNT + 1, AMOUNT));
        escrow.offerFinancing(id, 0, financier, AMOUNT + 1, INVOICE_HASH, uint40(_now() + 1));
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvoiceNotDeclared.selector, id, 0, bytes32(0)));
        escrow.offerFinancing(id, 0, financier, 1, bytes32(0), uint40(_now() + 1));
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowDuplicateParty.selector, buyer));
        escrow.offerFinancing(id, 0, buyer, 1, INVOICE_HASH, uint40(_now() + 1));
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowZeroAddress.selector));
        escrow.offerFinancing(id, 0, address(0), 1, INVOICE_HASH, uint40(_now() + 1));
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidDuration.selector, _now()));
        escrow.offerFinancing(id, 0, financier, 1, INVOICE_HASH, uint40(_now()));
        vm.stopPrank();
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowUnauthorized.selector, id, stranger, I.Party.Payee));
        escrow.offerFinancing(id, 0, financier, 1, INVOICE_HASH, uint40(_now() + 1));

        _offer(id, 0, 900e6, INVOICE_HASH);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowUnauthorized.selector, id, stranger, I.Party.Financier));
        escrow.acceptFinancing(id, 0, 900e6, INVOICE_HASH);
        vm.prank(financier);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowFinancingTermsMismatch.selector, id, 0));
        escrow.acceptFinancing(id, 0, 800e6, INVOICE_HASH);
        uint256 expiresAt = _now() + 1 days;
        vm.warp(expiresAt + 1);
        vm.prank(financier);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowFinancingOfferExpired.selector, id, 0, expiresAt));
        escrow.acceptFinancing(id, 0, 900e6, INVOICE_HASH);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.FinancingOfferCancelled(id, 0, supplier);
        vm.prank(supplier);
        escrow.cancelFinancingOffer(id, 0);
        vm.prank(supplier);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowNoFinancingOffer.selector, id, 0));
        escrow.cancelFinancingOffer(id, 0);
    }

    function test_financing_refusedWhenDisputedPausedOrHeld() public {
        uint256 id = _standardDeal();
        _toShipped(id, 0);
        _offer(id, 0, 900e6, INVOICE_HASH);
        vm.prank(admin);
        escrow.pause();
        vm.prank(financier);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowPaused.selector));
        escrow.acceptFinancing(id, 0, 900e6, INVOICE_HASH);
        vm.prank(admin);
        escrow.unpause();
        vm.prank(officer);
        escrow.placeHold(id, 0, REASON_HASH, 1 days);
        vm.prank(financier);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowOnHold.selector, id, 0, _now() + 1 days));
        escrow.acceptFinancing(id, 0, 900e6, INVOICE_HASH);
        vm.prank(officer);
        escrow.liftHold(id, 0, REASON_HASH);
        vm.prank(buyer);
        escrow.openDispute(id, 0, REASON_HASH);
        vm.prank(financier);
        vm.expectRevert(
            abi.encodeWithSelector(I.SupplyChainEscrowInvalidStatus.selector, id, 0, I.MilestoneStatus.Disputed)
        );
        escrow.acceptFinancing(id, 0, 900e6, INVOICE_HASH);
    }

    function test_financing_designatedFinancierOnly() public {
        I.DealParams memory p = _params(1, 1);
        p.financier = financier;
        uint256 id = _create(p, _milestones(1, AMOUNT));
        vm.prank(supplier);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowUnauthorized.selector, id, stranger, I.Party.Financier));
        escrow.offerFinancing(id, 0, stranger, 1, INVOICE_HASH, uint40(_now() + 1));
    }

    // ------------------------------------------------------------------ maker-checker

    function _approvalDeal() internal returns (uint256 id) {
        I.MilestoneParams[] memory ms = _milestones(2, AMOUNT);
        ms[1].amount = 100e6; // below the threshold
        ms[0].invoiceHash = INVOICE_HASH;
        id = _create(_withApprovals(_params(3, 2), 500e6, 2), ms);
    }

    function test_approvals_requiredAboveThreshold() public {
        uint256 id = _approvalDeal();
        _toAccepted(id, 0);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowApprovalsMissing.selector, id, 0, 0, 2));
        escrow.release(id, 0);
        vm.prank(approver1);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowReleaseNotRequested.selector, id, 0));
        escrow.approveRelease(id, 0);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.ReleaseRequested(id, 0, approver1);
        vm.prank(approver1);
        escrow.requestRelease(id, 0);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowReleaseAlreadyRequested.selector, id, 0, approver1));
        escrow.requestRelease(id, 0);
        vm.prank(approver1);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInitiatorCannotApprove.selector, id, 0, approver1));
        escrow.approveRelease(id, 0);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowUnauthorized.selector, id, buyer, I.Party.Approver));
        escrow.approveRelease(id, 0);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.ReleaseApproved(id, 0, approver2, 1);
        vm.prank(approver2);
        escrow.approveRelease(id, 0);
        vm.prank(approver2);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowAlreadyApproved.selector, id, 0, approver2));
        escrow.approveRelease(id, 0);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowApprovalsMissing.selector, id, 0, 1, 2));
        escrow.release(id, 0);
        vm.prank(approver3);
        escrow.approveRelease(id, 0);
        escrow.release(id, 0);
        _assertStatus(id, 0, I.MilestoneStatus.Released);
        (address initiator, uint256 approvals) = escrow.getReleaseApproval(id, 0);
        assertEq(initiator, approver1, "initiator");
        assertEq(approvals, 2, "approvals");
    }

    function test_approvals_notNeededBelowThreshold() public {
        uint256 id = _approvalDeal();
        _toAccepted(id, 1);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowApprovalNotRequired.selector, id, 1));
        escrow.requestRelease(id, 1);
        escrow.release(id, 1);
        _assertStatus(id, 1, I.MilestoneStatus.Released);
    }

    function test_approvals_requestNeedsAcceptanceAndRole() public {
        uint256 id = _approvalDeal();
        _toShipped(id, 0);
        vm.prank(buyer);
        vm.expectRevert(
            abi.encodeWithSelector(I.SupplyChainEscrowInvalidStatus.selector, id, 0, I.MilestoneStatus.Shipped)
        );
        escrow.requestRelease(id, 0);
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(I.SupplyChainEscrowUnauthorized.selector, id, stranger, I.Party.BuyerOrApprover)
        );
        escrow.requestRelease(id, 0);
    }

    function test_approvals_resetWhenFinanced() public {
        uint256 id = _approvalDeal();
        _toAccepted(id, 0);
        vm.prank(buyer);
        escrow.requestRelease(id, 0);
        vm.prank(approver1);
        escrow.approveRelease(id, 0);
        _offer(id, 0, 900e6, INVOICE_HASH);
        vm.prank(financier);
        escrow.acceptFinancing(id, 0, 900e6, INVOICE_HASH);
        (address initiator, uint256 approvals) = escrow.getReleaseApproval(id, 0);
        assertEq(initiator, address(0), "reset initiator");
        assertEq(approvals, 0, "reset approvals");
    }

    // ------------------------------------------------------------------ compliance holds

    function test_hold_blocksReleaseUntilLiftedOrExpired() public {
        uint256 id = _standardDeal();
        _toAccepted(id, 0);
        _toAccepted(id, 1);
        uint256 until = _now() + 3 days;
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.ComplianceHoldPlaced(id, 0, officer, REASON_HASH, until);
        vm.prank(officer);
        escrow.placeHold(id, 0, REASON_HASH, 3 days);
        assertEq(escrow.holdReason(id, 0), REASON_HASH, "reason");
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowOnHold.selector, id, 0, until));
        escrow.release(id, 0);
        // renew: extends from now
        vm.warp(_now() + 1 days);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.ComplianceHoldRenewed(id, 0, officer, keccak256("more"), _now() + 5 days);
        vm.prank(officer);
        escrow.renewHold(id, 0, keccak256("more"), 5 days);
        vm.prank(officer);
        vm.expectRevert(
            abi.encodeWithSelector(I.SupplyChainEscrowOnHold.selector, id, 0, _now() + 5 days)
        );
        escrow.placeHold(id, 0, REASON_HASH, 1 days);
        // lift
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.ComplianceHoldLifted(id, 0, officer, keccak256("cleared"));
        vm.prank(officer);
        escrow.liftHold(id, 0, keccak256("cleared"));
        escrow.release(id, 0);
        // expiry on the other milestone
        vm.prank(officer);
        escrow.placeHold(id, 1, REASON_HASH, 2 days);
        vm.warp(_now() + 2 days + 1);
        vm.prank(officer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowNoActiveHold.selector, id, 1));
        escrow.liftHold(id, 1, REASON_HASH);
        escrow.release(id, 1);
    }

    function test_hold_reverts() public {
        uint256 id = _standardDeal();
        bytes32 role = escrow.COMPLIANCE_ROLE();
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, role
            )
        );
        escrow.placeHold(id, 0, REASON_HASH, 1 days);
        vm.startPrank(officer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidDuration.selector, 31 days));
        escrow.placeHold(id, 0, REASON_HASH, 31 days);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidDuration.selector, 0));
        escrow.placeHold(id, 0, REASON_HASH, 0);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowZeroHash.selector));
        escrow.placeHold(id, 0, bytes32(0), 1 days);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowNoActiveHold.selector, id, 0));
        escrow.renewHold(id, 0, REASON_HASH, 1 days);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowNoActiveHold.selector, id, 0));
        escrow.liftHold(id, 0, REASON_HASH);
        vm.stopPrank();
    }

    /// A hold pushes the milestone's long stop back by its length; it never turns the refund
    /// of a milestone that was not accepted into anything else, only delays it.
    function test_hold_delaysLongStopRefundByItsLength() public {
        uint256 id = _standardDeal();
        _toShipped(id, 0);
        vm.warp(START + 180 days - 1 days);
        vm.prank(officer);
        escrow.placeHold(id, 0, REASON_HASH, 30 days);
        (uint256 held, uint256 longStop) = escrow.holdTime(id, 0);
        assertEq(held, 30 days, "held");
        assertEq(longStop, START + 210 days, "long stop pushed back");
        vm.warp(START + 180 days + 1);
        vm.prank(buyer);
        escrow.reclaimAfterLongStop(id); // milestone 1 (never funded) closes
        _assertStatus(id, 0, I.MilestoneStatus.Shipped);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowLongStopNotReached.selector, id, START + 210 days));
        escrow.settleAfterLongStop(id, 0);
        vm.warp(START + 210 days + 1);
        escrow.settleAfterLongStop(id, 0);
        _assertStatus(id, 0, I.MilestoneStatus.Refunded);
        assertEq(escrow.creditOf(buyer, address(usdc)), AMOUNT, "refund");
    }

    // ------------------------------------------------------------------ proof gate

    string internal constant CERT_ID = "inspection-certificate-42";

    function _gatedDeal(bytes32 leaf) internal returns (uint256) {
        I.MilestoneParams[] memory ms = _milestones(1, AMOUNT);
        ms[0].proofLeaf = leaf;
        ms[0].proofSigner = inspector1;
        return _create(_params(3, 2), ms);
    }

    /// @dev chainaudit's EIP-712 record signature (chainaudit/signing.py) by `key`.
    function _signRecord(uint256 key, string memory recordId, bytes32 leaf) internal view returns (bytes memory) {
        bytes32 domain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId)"),
                keccak256("chainaudit"),
                keccak256("1"),
                _chainId()
            )
        );
        bytes32 structHash =
            keccak256(abi.encode(keccak256("AuditRecord(string id,bytes32 leafHash)"), keccak256(bytes(recordId)), leaf));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, keccak256(abi.encodePacked("\x19\x01", domain, structHash)));
        return abi.encodePacked(r, s, v);
    }

    function test_proofGate_blocksAcceptanceUntilProven() public {
        bytes32 leaf = sha256("inspection certificate");
        uint256 id = _gatedDeal(leaf);
        assertTrue(escrow.getMilestone(id, 0).proofRequired, "gated");
        _toInspected(id, 0);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowProofRequired.selector, id, 0));
        escrow.acceptMilestone(id, 0);
        // deemed acceptance is gated too
        vm.warp(_now() + WINDOW + 1);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowProofRequired.selector, id, 0));
        escrow.release(id, 0);
        bytes32[] memory proof = new bytes32[](2);
        proof[0] = keccak256("sibling 0");
        proof[1] = keccak256("sibling 1");
        anchorMock.setInclusion(3, 17, leaf, proof);
        bytes memory signature = _signRecord(INSPECTOR1_KEY, CERT_ID, leaf);
        // wrong index: rejected
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowProofRejected.selector, id, 0, 3, 18));
        escrow.proveRecord(id, 0, 3, 18, proof, CERT_ID, signature);
        // unknown checkpoint: the anchor's own error bubbles up
        vm.expectRevert(abi.encodeWithSelector(IAuditAnchor.AuditAnchorUnknownCheckpoint.selector, 9, 4));
        escrow.proveRecord(id, 0, 9, 17, proof, CERT_ID, signature);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.RecordProven(id, 0, stranger, leaf, 3, 17);
        vm.prank(stranger);
        escrow.proveRecord(id, 0, 3, 17, proof, CERT_ID, signature);
        assertTrue(escrow.getMilestone(id, 0).proofVerified, "verified");
        escrow.release(id, 0);
        _assertStatus(id, 0, I.MilestoneStatus.Released);
    }

    function test_proofGate_reverts() public {
        uint256 id = _standardDeal();
        bytes32[] memory proof = new bytes32[](0);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowProofNotRequired.selector, id, 0));
        escrow.proveRecord(id, 0, 0, 0, proof, CERT_ID, "");
        SupplyChainEscrow noAnchor = new SupplyChainEscrow(admin, 1 days, IAuditAnchor(address(0)));
        bytes32 tokenRole = noAnchor.TOKEN_MANAGER_ROLE();
        vm.prank(admin);
        noAnchor.grantRole(tokenRole, admin);
        bytes32 registrarRole = noAnchor.REGISTRAR_ROLE();
        vm.startPrank(admin);
        noAnchor.grantRole(registrarRole, admin);
        noAnchor.setTokenAllowed(address(usdc), true);
        noAnchor.registerInspector(inspector1);
        noAnchor.setArbiterAccredited(arbiter, true);
        vm.stopPrank();
        I.MilestoneParams[] memory ms = _milestones(1, AMOUNT);
        ms[0].proofLeaf = keccak256("leaf");
        ms[0].proofSigner = inspector1;
        I.DealParams memory p = _params(1, 1);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowNoAnchor.selector));
        noAnchor.createDeal(p, ms);
        // a proof gate names its signer (issue 13)
        ms[0].proofSigner = address(0);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowZeroAddress.selector));
        escrow.createDeal(p, ms);
    }

    /// @dev Issue 13: whoever holds the anchorer key can append and anchor any record, so
    /// inclusion alone no longer passes a proof gate: the named signer must have signed it.
    function test_proofGate_anchorerKeyAloneCannotPassIt() public {
        bytes32 leaf = sha256("inspection certificate");
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.ProofGateSet(escrow.dealCount() + 1, 0, leaf, inspector1);
        uint256 id = _gatedDeal(leaf);
        _toInspected(id, 0);
        bytes32[] memory proof = new bytes32[](1);
        proof[0] = keccak256("sibling");
        anchorMock.setInclusion(5, 40, leaf, proof); // the anchorer appended and anchored it
        uint256 anchorerKey = 0xA11CE;
        bytes[3] memory forged = [
            bytes(""), // no signature
            _signRecord(anchorerKey, CERT_ID, leaf), // the anchorer's own
            _signRecord(INSPECTOR2_KEY, CERT_ID, leaf) // another inspector of the deal
        ];
        for (uint256 i; i < forged.length; ++i) {
            vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidSignature.selector, inspector1));
            escrow.proveRecord(id, 0, 5, 40, proof, CERT_ID, forged[i]);
        }
        // the named inspector's signature, but of another record id or leaf
        bytes memory otherId = _signRecord(INSPECTOR1_KEY, "another-record", leaf);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidSignature.selector, inspector1));
        escrow.proveRecord(id, 0, 5, 40, proof, CERT_ID, otherId);
        escrow.proveRecord(id, 0, 5, 40, proof, CERT_ID, _signRecord(INSPECTOR1_KEY, CERT_ID, leaf));
        assertTrue(escrow.getMilestone(id, 0).proofVerified, "verified");
    }

    // ------------------------------------------------------------------ relayed attestations

    function test_attestBySig_relayedByAnyone() public {
        uint256 id = _standardDeal();
        _toShipped(id, 0);
        uint256 deadline = _now() + 1 hours;
        bytes memory sig = _signAttestation(INSPECTOR1_KEY, id, 0, REPORT_HASH, 7, deadline);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.InspectionAttested(id, 0, inspector1, REPORT_HASH, 1);
        vm.prank(stranger);
        escrow.attestInspectionBySig(id, 0, inspector1, REPORT_HASH, 7, deadline, sig);
        assertTrue(escrow.isNonceUsed(inspector1, 7), "nonce used");
        // replay refused
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowNonceUsed.selector, inspector1, 7));
        escrow.attestInspectionBySig(id, 0, inspector1, REPORT_HASH, 7, deadline, sig);
        // a fresh signature of an inspector who already attested counts once
        bytes memory sig2 = _signAttestation(INSPECTOR1_KEY, id, 0, REPORT_HASH, 8, deadline);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowAlreadyAttested.selector, id, 0, inspector1));
        escrow.attestInspectionBySig(id, 0, inspector1, REPORT_HASH, 8, deadline, sig2);
    }

    function test_attestBySig_rejectsExpiredForgedAndCancelled() public {
        uint256 id = _standardDeal();
        _toShipped(id, 0);
        uint256 deadline = _now() + 1 hours;
        bytes memory sig = _signAttestation(INSPECTOR2_KEY, id, 0, REPORT_HASH, 1, deadline);
        // signed by inspector2, claimed for inspector1
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidSignature.selector, inspector1));
        escrow.attestInspectionBySig(id, 0, inspector1, REPORT_HASH, 1, deadline, sig);
        // bound to the milestone and the report
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidSignature.selector, inspector2));
        escrow.attestInspectionBySig(id, 1, inspector2, REPORT_HASH, 1, deadline, sig);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidSignature.selector, inspector2));
        escrow.attestInspectionBySig(id, 0, inspector2, keccak256("other report"), 1, deadline, sig);
        // expired
        vm.warp(deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowSignatureExpired.selector, deadline));
        escrow.attestInspectionBySig(id, 0, inspector2, REPORT_HASH, 1, deadline, sig);
        // cancelled nonce
        uint256 deadline2 = _now() + 1 hours;
        bytes memory sig3 = _signAttestation(INSPECTOR2_KEY, id, 0, REPORT_HASH, 2, deadline2);
        vm.expectEmit(true, false, false, true, address(escrow));
        emit I.AttestationNonceInvalidated(inspector2, 2);
        vm.prank(inspector2);
        escrow.invalidateAttestationNonce(2);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowNonceUsed.selector, inspector2, 2));
        escrow.attestInspectionBySig(id, 0, inspector2, REPORT_HASH, 2, deadline2, sig3);
    }

    function test_attestBySig_rejectsWrongChainAndContract() public {
        uint256 id = _standardDeal();
        _toShipped(id, 0);
        uint256 deadline = _now() + 1 hours;
        bytes memory sig = _signAttestation(INSPECTOR1_KEY, id, 0, REPORT_HASH, 1, deadline);
        uint256 originalChain = _chainId();
        vm.chainId(originalChain + 1);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidSignature.selector, inspector1));
        escrow.attestInspectionBySig(id, 0, inspector1, REPORT_HASH, 1, deadline, sig);
        vm.chainId(originalChain);
        // another escrow deployment (same chain) refuses it too
        SupplyChainEscrow twin = new SupplyChainEscrow(admin, 1 days, IAuditAnchor(address(anchorMock)));
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidSignature.selector, inspector1));
        twin.attestInspectionBySig(id, 0, inspector1, REPORT_HASH, 1, deadline, sig);
        // still valid on the right chain and contract
        escrow.attestInspectionBySig(id, 0, inspector1, REPORT_HASH, 1, deadline, sig);
    }

    // ------------------------------------------------------------------ administration

    function test_admin_rolesAndAllowList() public {
        assertEq(escrow.defaultAdmin(), admin, "admin");
        bytes32 tokenRole = escrow.TOKEN_MANAGER_ROLE();
        bytes32 pauserRole = escrow.PAUSER_ROLE();
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, tokenRole
            )
        );
        escrow.setTokenAllowed(address(usdc), false);
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, pauserRole
            )
        );
        escrow.pause();
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowZeroAddress.selector));
        escrow.setTokenAllowed(address(0x1234), true);
        vm.expectEmit(true, true, false, true, address(escrow));
        emit I.TokenAllowListUpdated(address(usdc), false, admin);
        vm.prank(admin);
        escrow.setTokenAllowed(address(usdc), false);
        assertTrue(!escrow.isTokenAllowed(address(usdc)), "delisted");
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowNotPaused.selector));
        escrow.unpause();
        vm.prank(admin);
        escrow.pause();
        assertTrue(escrow.paused(), "paused");
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowPaused.selector));
        escrow.pause();
    }

    function test_delistingKeepsExistingDealsWorking() public {
        uint256 id = _standardDeal();
        vm.prank(admin);
        escrow.setTokenAllowed(address(usdc), false);
        _toAccepted(id, 0);
        escrow.release(id, 0);
        vm.prank(supplier);
        escrow.withdraw(address(usdc));
        assertEq(usdc.balanceOf(supplier), AMOUNT, "paid");
    }
}
