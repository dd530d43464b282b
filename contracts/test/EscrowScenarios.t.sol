// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {EscrowFixture} from "./escrow/EscrowFixture.sol";
import {ScaledBalanceToken, SharesRebaseToken} from "./escrow/MaliciousTokens.sol";
import {ISupplyChainEscrow as I} from "../interfaces/ISupplyChainEscrow.sol";
import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";

/// @notice The scenarios of issue 13 ("escrow rules that hold for every party"): each one
/// reproduced the loss on the former vault; each now ends with the rightful party paid or the
/// attack refused with a custom error.
contract EscrowScenariosTest is EscrowFixture {
    uint256 internal constant LONG_STOP = START + 180 days;

    /// @dev One milestone of AMOUNT declaring INVOICE_HASH, 2-of-3 inspectors.
    function _oneMilestone(I.DealParams memory p) internal returns (uint256) {
        I.MilestoneParams[] memory ms = _milestones(1, AMOUNT);
        ms[0].invoiceHash = INVOICE_HASH;
        return _create(p, ms);
    }

    function _finance(uint256 id, uint256 m, uint96 advance, bytes32 invoice) internal {
        vm.prank(supplier);
        escrow.offerFinancing(id, m, financier, advance, invoice, uint40(_now() + 1 days));
        vm.prank(financier);
        escrow.acceptFinancing(id, m, advance, invoice);
    }

    function _oneApprover(I.DealParams memory p, address approver, uint8 required)
        internal
        pure
        returns (I.DealParams memory)
    {
        p.approvers = new address[](1);
        p.approvers[0] = approver;
        p.approvalThreshold = 1;
        p.approvalsRequired = required;
        return p;
    }

    // ------------------------------------------------------------------ 1. financier's advance

    function test_scenario1_buyerCannotApproveItsOwnDeal() public {
        I.MilestoneParams[] memory ms = _milestones(1, AMOUNT);
        address[3] memory parties = [buyer, supplier, financier];
        for (uint256 i; i < 3; ++i) {
            I.DealParams memory p = _oneApprover(_params(3, 2), parties[i], 1);
            p.financier = financier;
            vm.prank(buyer);
            vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowDuplicateParty.selector, parties[i]));
            escrow.createDeal(p, ms);
        }
    }

    /// The approver never approves, the long stop passes: the financed, accepted milestone goes
    /// to the arbiter, whose silence pays the financier in full; the buyer reclaims nothing.
    function test_scenario1_financierPaidWhenApprovalNeverComes() public {
        uint256 id = _oneMilestone(_oneApprover(_params(3, 2), approver1, 1));
        _toShipped(id, 0);
        _finance(id, 0, 900e6, INVOICE_HASH);
        _attest(id, 0, inspector1);
        _attest(id, 0, inspector2);
        vm.prank(buyer);
        escrow.acceptMilestone(id, 0);
        vm.prank(buyer);
        escrow.requestRelease(id, 0);
        vm.warp(LONG_STOP + 1);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowApprovalsMissing.selector, id, 0, 0, 1));
        escrow.release(id, 0);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowNothingToReclaim.selector, id));
        escrow.reclaimAfterLongStop(id);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.MilestoneEscalated(id, 0, stranger, 10_000);
        vm.prank(stranger);
        escrow.settleAfterLongStop(id, 0);
        _assertStatus(id, 0, I.MilestoneStatus.Disputed);
        vm.warp(_now() + TIMEOUT + 1);
        escrow.applyDisputeTimeout(id, 0);
        assertEq(escrow.creditOf(financier, address(usdc)), AMOUNT, "financier paid in full");
        assertEq(escrow.creditOf(buyer, address(usdc)), 0, "nothing back to the buyer");
    }

    // ------------------------------------------------------------------ 2. N-of-N deadlock

    /// An approver made the request of a 3-of-3 release, so only two can approve: the buyer
    /// withdraws the request and makes it again, and all three approve.
    function test_scenario2_requestWithdrawnAndRemade() public {
        uint256 id = _oneMilestone(_withApprovals(_params(3, 2), 1, 3));
        _toAccepted(id, 0);
        vm.prank(approver1);
        escrow.requestRelease(id, 0);
        vm.prank(approver2);
        escrow.approveRelease(id, 0);
        vm.prank(approver3);
        escrow.approveRelease(id, 0);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowApprovalsMissing.selector, id, 0, 2, 3));
        escrow.release(id, 0);
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(I.SupplyChainEscrowUnauthorized.selector, id, stranger, I.Party.BuyerOrApprover)
        );
        escrow.withdrawReleaseRequest(id, 0);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.ReleaseRequestWithdrawn(id, 0, buyer);
        vm.prank(buyer);
        escrow.withdrawReleaseRequest(id, 0);
        (address initiator, uint256 approvals) = escrow.getReleaseApproval(id, 0);
        assertEq(initiator, address(0), "withdrawn");
        assertEq(approvals, 0, "approvals dropped");
        vm.prank(buyer);
        escrow.requestRelease(id, 0);
        vm.prank(approver1);
        escrow.approveRelease(id, 0);
        vm.prank(approver2);
        escrow.approveRelease(id, 0);
        vm.prank(approver3);
        escrow.approveRelease(id, 0);
        escrow.release(id, 0);
        assertEq(escrow.creditOf(supplier, address(usdc)), AMOUNT, "supplier paid");
    }

    /// One approver of a 3-of-3 release never approves: after the approval deadline the payee
    /// escalates to the arbiter, whose silence pays the payee.
    function test_scenario2_payeeEscalatesAfterApprovalDeadline() public {
        uint256 id = _oneMilestone(_withApprovals(_params(3, 2), 1, 3));
        _toAccepted(id, 0);
        uint256 deadline = _now() + WINDOW + TIMEOUT;
        vm.prank(buyer);
        escrow.requestRelease(id, 0);
        vm.prank(approver1);
        escrow.approveRelease(id, 0);
        vm.prank(approver2);
        escrow.approveRelease(id, 0);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowUnauthorized.selector, id, buyer, I.Party.Payee));
        escrow.escalateRelease(id, 0);
        vm.prank(supplier);
        vm.expectRevert(
            abi.encodeWithSelector(I.SupplyChainEscrowApprovalDeadlinePending.selector, id, 0, deadline)
        );
        escrow.escalateRelease(id, 0);
        vm.warp(deadline + 1);
        vm.prank(supplier);
        escrow.escalateRelease(id, 0);
        (bool escalated, uint256 defaultBps) = escrow.escalation(id, 0);
        assertTrue(escalated, "escalated");
        assertEq(defaultBps, 10_000, "default favours the payee");
        vm.warp(_now() + TIMEOUT + 1);
        escrow.applyDisputeTimeout(id, 0);
        assertEq(escrow.creditOf(supplier, address(usdc)), AMOUNT, "supplier paid");
    }

    function test_scenario2_escalationNeedsMissingApprovals() public {
        uint256 id = _standardDeal();
        _toAccepted(id, 0);
        vm.warp(_now() + WINDOW + TIMEOUT + 1);
        vm.prank(supplier);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowNothingToEscalate.selector, id, 0));
        escrow.escalateRelease(id, 0);
    }

    /// The arbiter of an escalation may still rule either way.
    function test_scenario2_arbiterRulesAnEscalation() public {
        uint256 id = _oneMilestone(_withApprovals(_params(3, 2), 1, 3));
        _toAccepted(id, 0);
        vm.warp(_now() + WINDOW + TIMEOUT + 1);
        vm.prank(supplier);
        escrow.escalateRelease(id, 0);
        vm.prank(arbiter);
        escrow.resolveDispute(id, 0, 2_500, keccak256("ruling"));
        assertEq(escrow.creditOf(supplier, address(usdc)), AMOUNT / 4, "payee share");
        assertEq(escrow.creditOf(buyer, address(usdc)), AMOUNT - AMOUNT / 4, "buyer share");
    }

    // ------------------------------------------------------------------ 3. holds

    /// A hold placed an hour before the long stop on an accepted, financed milestone: the
    /// long stop moves with it, the buyer reclaims nothing, and the financier is paid once the
    /// hold ends.
    function test_scenario3_lateHoldPaysFinancierAfterwards() public {
        uint256 id = _oneMilestone(_params(3, 2));
        _toShipped(id, 0);
        _finance(id, 0, 900e6, INVOICE_HASH);
        _attest(id, 0, inspector1);
        _attest(id, 0, inspector2);
        vm.prank(buyer);
        escrow.acceptMilestone(id, 0);
        vm.warp(LONG_STOP - 1 hours);
        vm.prank(officer);
        escrow.placeHold(id, 0, REASON_HASH, 30 days);
        vm.warp(LONG_STOP + 1);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowNothingToReclaim.selector, id));
        escrow.reclaimAfterLongStop(id);
        vm.expectRevert(
            abi.encodeWithSelector(I.SupplyChainEscrowLongStopNotReached.selector, id, LONG_STOP + 30 days)
        );
        escrow.settleAfterLongStop(id, 0);
        vm.warp(LONG_STOP - 1 hours + 30 days + 1);
        escrow.release(id, 0);
        assertEq(escrow.creditOf(financier, address(usdc)), AMOUNT, "financier paid");
        assertEq(escrow.creditOf(buyer, address(usdc)), 0, "no refund");
    }

    /// Renewing without limit is refused once the milestone's total hold time would exceed the
    /// cap; the payee is then paid.
    function test_scenario3_holdRenewalsAreCapped() public {
        uint256 id = _oneMilestone(_params(3, 2));
        _toAccepted(id, 0);
        vm.prank(officer);
        escrow.placeHold(id, 0, REASON_HASH, 30 days);
        for (uint256 i; i < 2; ++i) {
            vm.warp(_now() + 29 days);
            vm.prank(officer);
            escrow.renewHold(id, 0, REASON_HASH, 30 days);
        }
        (uint256 held,) = escrow.holdTime(id, 0);
        assertEq(held, 88 days, "29 + 29 + 30 days");
        vm.warp(_now() + 29 days);
        vm.prank(officer);
        vm.expectRevert(
            abi.encodeWithSelector(I.SupplyChainEscrowHoldCapExceeded.selector, id, 0, 117 days, 90 days)
        );
        escrow.renewHold(id, 0, REASON_HASH, 30 days);
        vm.prank(officer);
        escrow.renewHold(id, 0, REASON_HASH, 3 days); // up to the cap
        vm.warp(_now() + 3 days + 1);
        vm.prank(officer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowHoldCapExceeded.selector, id, 0, 90 days + 1, 90 days));
        escrow.placeHold(id, 0, REASON_HASH, 1);
        escrow.release(id, 0);
        assertEq(escrow.creditOf(supplier, address(usdc)), AMOUNT, "supplier paid");
    }

    /// Lifting a hold early gives back its unexpired rest.
    function test_scenario3_liftGivesBackTheRest() public {
        uint256 id = _oneMilestone(_params(3, 2));
        vm.prank(officer);
        escrow.placeHold(id, 0, REASON_HASH, 30 days);
        vm.warp(_now() + 10 days);
        vm.prank(officer);
        escrow.liftHold(id, 0, REASON_HASH);
        (uint256 held, uint256 longStop) = escrow.holdTime(id, 0);
        assertEq(held, 10 days, "held");
        assertEq(longStop, LONG_STOP + 10 days, "long stop");
    }

    function test_scenario3_holdCapRaisedOnlyByAdminWithDelay() public {
        bytes32 adminRole = escrow.DEFAULT_ADMIN_ROLE();
        vm.prank(officer);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, officer, adminRole)
        );
        escrow.setHoldCap(180 days);
        vm.startPrank(admin);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidHoldCap.selector, 366 days));
        escrow.setHoldCap(366 days);
        vm.expectEmit(false, false, false, true, address(escrow));
        emit I.HoldCapChangeScheduled(180 days, _now() + 7 days);
        escrow.setHoldCap(180 days);
        vm.stopPrank();
        (uint256 cap, uint256 pending, uint256 at) = escrow.holdCap();
        assertEq(cap, 90 days, "unchanged until the delay passes");
        assertEq(pending, 180 days, "pending");
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowHoldCapChangeNotReady.selector, at));
        escrow.applyHoldCap();
        vm.warp(at);
        escrow.applyHoldCap();
        (cap,,) = escrow.holdCap();
        assertEq(cap, 180 days, "raised");
        vm.prank(admin);
        escrow.setHoldCap(60 days); // lowering applies at once
        (cap,,) = escrow.holdCap();
        assertEq(cap, 60 days, "lowered");
    }

    // ------------------------------------------------------------------ 4. invoice squatting

    /// An outsider's sham deal declaring the victim's published invoice hash does not touch the
    /// victim's registry entry (the commitment binds supplier and buyer); the victim's real
    /// deal is financed; a hash no deal declared cannot be financed.
    function test_scenario4_invoiceSquattingImpossible() public {
        address accomplice = address(0xACC);
        I.DealParams memory sham = _params(1, 1);
        sham.supplier = accomplice;
        I.MilestoneParams[] memory ms = _milestones(1, 1);
        ms[0].invoiceHash = INVOICE_HASH;
        vm.prank(stranger);
        uint256 shamId = escrow.createDeal(sham, ms);
        // the accomplice cannot finance anything its deal did not declare
        vm.prank(accomplice);
        vm.expectRevert(
            abi.encodeWithSelector(I.SupplyChainEscrowInvoiceNotDeclared.selector, shamId, 0, INVOICE_HASH_2)
        );
        escrow.offerFinancing(shamId, 0, financier, 1, INVOICE_HASH_2, uint40(_now() + 1 days));
        // the victim's deal declares and finances its invoice as usual
        uint256 id = _standardDeal();
        _toShipped(id, 0);
        _finance(id, 0, 950e6, INVOICE_HASH);
        assertEq(escrow.getMilestone(id, 0).payee, financier, "victim financed");
        (bool found, uint256 dealId, uint256 m) =
            escrow.invoiceMilestone(escrow.invoiceCommitment(supplier, buyer, INVOICE_HASH));
        assertTrue(found && dealId == id && m == 0, "registry names the victim's milestone");
    }

    function test_scenario4_sameInvoiceTwiceInOneDealRefused() public {
        I.MilestoneParams[] memory ms = _milestones(2, AMOUNT);
        ms[0].invoiceHash = INVOICE_HASH;
        ms[1].invoiceHash = INVOICE_HASH;
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvoiceAlreadyDeclared.selector, INVOICE_HASH));
        escrow.createDeal(_params(1, 1), ms);
    }

    function test_scenario4_undeclaredMilestoneCannotBeFinanced() public {
        uint256 id = _plainDeal();
        vm.prank(supplier);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvoiceNotDeclared.selector, id, 0, INVOICE_HASH));
        escrow.offerFinancing(id, 0, financier, 1, INVOICE_HASH, uint40(_now() + 1 days));
    }

    // ------------------------------------------------------------------ 5. registry

    function test_scenario5_registryIsTheRegistrars() public {
        bytes32 role = escrow.REGISTRAR_ROLE();
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, role));
        escrow.registerInspector(stranger);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, role));
        escrow.setArbiterAccredited(stranger, true);
        I.DealParams memory p = _params(1, 1);
        p.arbiter = stranger;
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowArbiterNotAccredited.selector, stranger));
        escrow.createDeal(p, _milestones(1, AMOUNT));
        vm.expectEmit(true, true, false, true, address(escrow));
        emit I.ArbiterAccreditationUpdated(stranger, true, admin);
        vm.prank(admin);
        escrow.setArbiterAccredited(stranger, true);
        assertTrue(escrow.isArbiterAccredited(stranger), "accredited");
        vm.prank(buyer);
        escrow.createDeal(p, _milestones(1, AMOUNT));
        vm.prank(admin);
        escrow.setArbiterAccredited(stranger, false);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowArbiterNotAccredited.selector, stranger));
        escrow.createDeal(p, _milestones(1, AMOUNT));
    }

    /// The registrar withdraws an inspector's accreditation: new deals cannot name it, an
    /// existing deal keeps it; registering it again reinstates it under the same id.
    function test_scenario5_registrarRevokesAnInspector() public {
        uint256 id = _standardDeal();
        bytes32 role = escrow.REGISTRAR_ROLE();
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, role));
        escrow.revokeInspector(inspector1);
        vm.expectEmit(true, true, false, true, address(escrow));
        emit I.InspectorRevoked(inspector1, admin);
        vm.prank(admin);
        escrow.revokeInspector(inspector1);
        assertTrue(!escrow.isInspectorAccredited(inspector1), "revoked");
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInspectorNotRegistered.selector, inspector1));
        escrow.revokeInspector(inspector1);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInspectorNotRegistered.selector, inspector1));
        escrow.createDeal(_params(1, 1), _milestones(1, AMOUNT));
        _toInspected(id, 0); // inspector1 still attests on the existing deal
        vm.prank(admin);
        assertEq(escrow.registerInspector(inspector1), 1, "same id");
        assertTrue(escrow.isInspectorAccredited(inspector1), "reinstated");
        vm.prank(buyer);
        escrow.createDeal(_params(1, 1), _milestones(1, AMOUNT));
    }

    // ------------------------------------------------------------------ 6. late inspection

    function test_scenario6_termsKeepTheWindowBeforeTheLongStop() public {
        I.MilestoneParams[] memory ms = _milestones(1, AMOUNT);
        ms[0].dueDate = uint40(LONG_STOP - WINDOW + 1);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidDueDate.selector, 0, LONG_STOP - WINDOW + 1));
        escrow.createDeal(_params(1, 1), ms);
    }

    /// Inspected a day before the long stop: the buyer cannot reclaim it; it is released once
    /// the whole window has run.
    function test_scenario6_lateInspectionIsPaidAfterItsWindow() public {
        uint256 id = _oneMilestone(_params(3, 2));
        _toShipped(id, 0);
        vm.warp(LONG_STOP - 1 days);
        _attest(id, 0, inspector1);
        _attest(id, 0, inspector2);
        vm.warp(LONG_STOP + 1);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowNothingToReclaim.selector, id));
        escrow.reclaimAfterLongStop(id);
        uint256 windowEnd = LONG_STOP - 1 days + WINDOW;
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowLongStopNotReached.selector, id, windowEnd));
        escrow.settleAfterLongStop(id, 0);
        vm.warp(windowEnd + 1);
        escrow.settleAfterLongStop(id, 0);
        assertEq(escrow.creditOf(supplier, address(usdc)), AMOUNT, "supplier paid");
    }

    /// ... and the buyer keeps its whole window to dispute it, past the long stop.
    function test_scenario6_lateInspectionCanStillBeDisputed() public {
        uint256 id = _oneMilestone(_params(3, 2));
        _toShipped(id, 0);
        vm.warp(LONG_STOP - 1 days);
        _attest(id, 0, inspector1);
        _attest(id, 0, inspector2);
        vm.warp(LONG_STOP + 3 days);
        vm.prank(buyer);
        escrow.openDispute(id, 0, REASON_HASH);
        _assertStatus(id, 0, I.MilestoneStatus.Disputed);
    }

    // ------------------------------------------------------------------ 7. dispute after sale

    function test_scenario7_supplierCannotDisputeAfterSellingTheClaim() public {
        I.DealParams memory p = _params(3, 2);
        p.defaultPayeeBps = 0;
        uint256 id = _oneMilestone(p);
        _toShipped(id, 0);
        _finance(id, 0, 900e6, INVOICE_HASH);
        vm.prank(supplier);
        vm.expectRevert(
            abi.encodeWithSelector(I.SupplyChainEscrowUnauthorized.selector, id, supplier, I.Party.BuyerOrPayee)
        );
        escrow.openDispute(id, 0, REASON_HASH);
        // the right moved to the financier
        vm.prank(financier);
        escrow.openDispute(id, 0, REASON_HASH);
        (address openedBy,,) = escrow.getDispute(id, 0);
        assertEq(openedBy, financier, "financier disputes");
    }

    // ------------------------------------------------------------------ 8. rebasing tokens

    /// A share-based token can shrink the vault's balance after a deposit (negative rebase):
    /// allow-listing refuses tokens declaring a rebasing share interface.
    function test_scenario8_rebasingTokensRefusedAtAllowListing() public {
        SharesRebaseToken shares = new SharesRebaseToken();
        ScaledBalanceToken scaled = new ScaledBalanceToken();
        vm.startPrank(admin);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowRebasingToken.selector, address(shares)));
        escrow.setTokenAllowed(address(shares), true);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowRebasingToken.selector, address(scaled)));
        escrow.setTokenAllowed(address(scaled), true);
        // delisting never probes (a listed token that starts rebasing can always be removed)
        escrow.setTokenAllowed(address(shares), false);
        vm.stopPrank();
        assertTrue(!escrow.isTokenAllowed(address(shares)), "refused");
        // what the refusal prevents: the vault's balance shrinks under its books
        shares.mint(address(escrow), AMOUNT);
        shares.rebase(90);
        assertEq(shares.balanceOf(address(escrow)), AMOUNT * 90 / 100, "balance shrank without a transfer");
    }
}
