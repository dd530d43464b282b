// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {EscrowFixture} from "./escrow/EscrowFixture.sol";
import {ISupplyChainEscrow as I} from "../interfaces/ISupplyChainEscrow.sol";

/// @notice Deal creation and the happy-path transitions, each with its reverts.
contract EscrowLifecycleTest is EscrowFixture {
    // ------------------------------------------------------------------ creation

    function test_createDeal_storesTermsAndEmits() public {
        I.DealParams memory p = _params(3, 2);
        I.MilestoneParams[] memory ms = _milestones(2, AMOUNT);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.DealCreated(1, buyer, supplier, address(usdc), arbiter, p.inspectors, 2);
        vm.expectEmit(true, true, false, true, address(escrow));
        emit I.MilestoneCreated(1, 0, AMOUNT, ms[0].dueDate, ms[0].documentHash);
        uint256 id = _create(p, ms);
        assertEq(id, 1, "first id");
        assertEq(escrow.dealCount(), 1, "count");
        I.DealView memory d = escrow.getDeal(id);
        assertEq(d.buyer, buyer, "buyer");
        assertEq(d.supplier, supplier, "supplier");
        assertEq(d.arbiter, arbiter, "arbiter");
        assertEq(d.token, address(usdc), "token");
        assertEq(d.financier, address(0), "financier");
        assertEq(d.milestoneCount, 2, "milestones");
        assertEq(d.inspectorCount, 3, "inspectors");
        assertEq(d.inspectorThreshold, 2, "threshold");
        assertEq(d.defaultPayeeBps, DEFAULT_BPS, "bps");
        assertEq(d.inspectionWindow, WINDOW, "window");
        assertEq(d.disputeTimeout, TIMEOUT, "timeout");
        assertEq(d.longStop, p.longStop, "long stop");
        assertEq(d.inspectors[0], inspector1, "inspector 1");
        assertEq(d.inspectors[2], inspector3, "inspector 3");
        assertTrue(escrow.isInspector(id, inspector2), "is inspector");
        assertTrue(!escrow.isInspector(id, stranger), "stranger not inspector");
        I.MilestoneView memory m = escrow.getMilestone(id, 1);
        assertEq(uint256(m.status), uint256(I.MilestoneStatus.Open), "open");
        assertEq(m.amount, AMOUNT, "amount");
        assertEq(m.funded, 0, "funded");
        assertEq(m.dueDate, ms[1].dueDate, "due");
        assertEq(m.payee, supplier, "payee");
        assertTrue(!m.proofRequired, "no gate");
    }

    function test_createDeal_withControls() public {
        I.DealParams memory p = _withApprovals(_params(1, 1), 500e6, 2);
        p.financier = financier;
        vm.expectEmit(true, true, false, true, address(escrow));
        emit I.DealControlsSet(1, financier, 500e6, 2, p.approvers);
        uint256 id = _create(p, _milestones(1, AMOUNT));
        I.DealView memory d = escrow.getDeal(id);
        assertEq(d.financier, financier, "financier");
        assertEq(d.approvalThreshold, 500e6, "threshold");
        assertEq(d.approvalsRequired, 2, "required");
        assertTrue(escrow.isApprover(id, approver3), "approver");
    }

    function test_createDeal_revertsWhenPaused() public {
        vm.prank(admin);
        escrow.pause();
        I.DealParams memory p = _params(1, 1);
        I.MilestoneParams[] memory ms = _milestones(1, AMOUNT);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowPaused.selector));
        _create(p, ms);
    }

    function test_createDeal_revertsOnBadMilestoneCount() public {
        I.DealParams memory p = _params(1, 1);
        I.MilestoneParams[] memory none = _milestones(0, AMOUNT);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidMilestoneCount.selector, 0));
        _create(p, none);
        I.MilestoneParams[] memory many = _milestones(17, AMOUNT);
        for (uint256 i; i < 17; ++i) many[i].dueDate = uint40(START + 1 days);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidMilestoneCount.selector, 17));
        _create(p, many);
    }

    function test_createDeal_revertsOnTokenNotAllowed() public {
        I.DealParams memory p = _params(1, 1);
        p.token = address(0x1234);
        I.MilestoneParams[] memory ms = _milestones(1, AMOUNT);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowTokenNotAllowed.selector, address(0x1234)));
        _create(p, ms);
    }

    function test_createDeal_revertsOnDelistedToken() public {
        vm.prank(admin);
        escrow.setTokenAllowed(address(usdc), false);
        I.DealParams memory p = _params(1, 1);
        I.MilestoneParams[] memory ms = _milestones(1, AMOUNT);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowTokenNotAllowed.selector, address(usdc)));
        _create(p, ms);
    }

    function test_createDeal_revertsOnZeroParties() public {
        I.MilestoneParams[] memory ms = _milestones(1, AMOUNT);
        I.DealParams memory p = _params(1, 1);
        p.supplier = address(0);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowZeroAddress.selector));
        _create(p, ms);
        p = _params(1, 1);
        p.arbiter = address(0);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowZeroAddress.selector));
        _create(p, ms);
        p = _params(1, 1);
        p.inspectors[0] = address(0);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowZeroAddress.selector));
        _create(p, ms);
    }

    function test_createDeal_revertsOnDuplicateParties() public {
        I.MilestoneParams[] memory ms = _milestones(1, AMOUNT);
        I.DealParams memory p = _params(1, 1);
        p.supplier = buyer;
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowDuplicateParty.selector, buyer));
        _create(p, ms);
        p = _params(1, 1);
        p.arbiter = supplier;
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowDuplicateParty.selector, supplier));
        _create(p, ms);
        p = _params(1, 1);
        p.financier = arbiter;
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowDuplicateParty.selector, arbiter));
        _create(p, ms);
        p = _params(2, 1);
        p.inspectors[1] = inspector1;
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowDuplicateParty.selector, inspector1));
        _create(p, ms);
        p = _params(1, 1);
        p.inspectors[0] = supplier;
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowDuplicateParty.selector, supplier));
        _create(p, ms);
        p = _withApprovals(_params(1, 1), 1, 1);
        p.approvers[2] = approver1;
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowDuplicateParty.selector, approver1));
        _create(p, ms);
        p = _withApprovals(_params(1, 1), 1, 1);
        p.approvers[0] = supplier;
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowDuplicateParty.selector, supplier));
        _create(p, ms);
    }

    function test_createDeal_revertsOnUnregisteredInspector() public {
        I.DealParams memory p = _params(1, 1);
        p.inspectors[0] = stranger;
        I.MilestoneParams[] memory ms = _milestones(1, AMOUNT);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInspectorNotRegistered.selector, stranger));
        _create(p, ms);
    }

    function test_createDeal_revertsOnBadThresholds() public {
        I.MilestoneParams[] memory ms = _milestones(1, AMOUNT);
        I.DealParams memory p = _params(2, 3);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidInspectorSet.selector, 2, 3));
        _create(p, ms);
        p = _params(2, 0);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidInspectorSet.selector, 2, 0));
        _create(p, ms);
        p = _params(0, 0);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidInspectorSet.selector, 0, 0));
        _create(p, ms);
        p = _withApprovals(_params(1, 1), 1, 4);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidApprovalPolicy.selector, 3, 4));
        _create(p, ms);
        p = _withApprovals(_params(1, 1), 1, 0);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidApprovalPolicy.selector, 3, 0));
        _create(p, ms);
    }

    function test_createDeal_revertsOnBadTerms() public {
        I.MilestoneParams[] memory ms = _milestones(1, AMOUNT);
        I.DealParams memory p = _params(1, 1);
        p.inspectionWindow = 0;
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidDuration.selector, 0));
        _create(p, ms);
        p = _params(1, 1);
        p.disputeTimeout = uint32(366 days);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidDuration.selector, 366 days));
        _create(p, ms);
        p = _params(1, 1);
        p.defaultPayeeBps = 10_001;
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidBps.selector, 10_001));
        _create(p, ms);
        p = _params(1, 1);
        p.longStop = uint40(START);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidLongStop.selector, START));
        _create(p, ms);
    }

    function test_createDeal_revertsOnBadMilestones() public {
        I.DealParams memory p = _params(1, 1);
        I.MilestoneParams[] memory ms = _milestones(2, AMOUNT);
        ms[1].amount = 0;
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowZeroAmount.selector));
        _create(p, ms);
        ms = _milestones(2, AMOUNT);
        ms[0].documentHash = bytes32(0);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowZeroHash.selector));
        _create(p, ms);
        ms = _milestones(2, AMOUNT);
        ms[1].dueDate = uint40(START);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidDueDate.selector, 1, START));
        _create(p, ms);
        ms = _milestones(2, AMOUNT);
        ms[0].dueDate = p.longStop + 1;
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidDueDate.selector, 0, p.longStop + 1));
        _create(p, ms);
    }

    // ------------------------------------------------------------------ funding

    function test_fund_partialThenFull() public {
        uint256 id = _standardDeal();
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.MilestoneFunded(id, 0, buyer, 400e6, 400e6);
        _fund(id, 0, 400e6);
        _assertStatus(id, 0, I.MilestoneStatus.Open);
        _fund(id, 0, 600e6);
        _assertStatus(id, 0, I.MilestoneStatus.Funded);
        assertEq(usdc.balanceOf(address(escrow)), AMOUNT, "vault balance");
        assertEq(escrow.getMilestone(id, 0).funded, AMOUNT, "funded");
    }

    function test_fund_reverts() public {
        uint256 id = _standardDeal();
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowUnauthorized.selector, id, stranger, I.Party.Buyer));
        escrow.fund(id, 0, 1);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowZeroAmount.selector));
        escrow.fund(id, 0, 0);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowExceedsAmount.selector, id, 0, AMOUNT, AMOUNT + 1));
        escrow.fund(id, 0, AMOUNT + 1);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowUnknownDeal.selector, 99));
        escrow.fund(99, 0, 1);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowUnknownMilestone.selector, id, 2));
        escrow.fund(id, 2, 1);
        _fund(id, 0, AMOUNT);
        vm.prank(buyer);
        vm.expectRevert(
            abi.encodeWithSelector(I.SupplyChainEscrowInvalidStatus.selector, id, 0, I.MilestoneStatus.Funded)
        );
        escrow.fund(id, 0, 1);
        vm.prank(admin);
        escrow.pause();
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowPaused.selector));
        escrow.fund(id, 1, 1);
        vm.prank(admin);
        escrow.unpause();
        vm.warp(START + 180 days + 1);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowLongStopPassed.selector, id, START + 180 days));
        escrow.fund(id, 1, 1);
    }

    // ------------------------------------------------------------------ shipment

    function test_markShipped() public {
        uint256 id = _standardDeal();
        _fund(id, 0, AMOUNT);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.MilestoneShipped(id, 0, supplier, BOL_HASH);
        _ship(id, 0);
        I.MilestoneView memory m = escrow.getMilestone(id, 0);
        assertEq(uint256(m.status), uint256(I.MilestoneStatus.Shipped), "shipped");
        assertEq(m.shippingDocument, BOL_HASH, "bill of lading");
        assertEq(m.stageAt, _now(), "shipped at");
    }

    function test_markShipped_reverts() public {
        uint256 id = _standardDeal();
        vm.prank(supplier);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidStatus.selector, id, 0, I.MilestoneStatus.Open));
        escrow.markShipped(id, 0, BOL_HASH);
        _fund(id, 0, AMOUNT);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowUnauthorized.selector, id, buyer, I.Party.Supplier));
        escrow.markShipped(id, 0, BOL_HASH);
        vm.prank(supplier);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowZeroHash.selector));
        escrow.markShipped(id, 0, bytes32(0));
    }

    // ------------------------------------------------------------------ inspection

    function test_attest_thresholdCompletesInspection() public {
        uint256 id = _standardDeal();
        _toShipped(id, 0);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.InspectionAttested(id, 0, inspector3, REPORT_HASH, 1);
        _attest(id, 0, inspector3);
        _assertStatus(id, 0, I.MilestoneStatus.Shipped);
        assertTrue(escrow.hasAttested(id, 0, inspector3), "attested");
        vm.expectEmit(true, true, false, true, address(escrow));
        emit I.MilestoneInspected(id, 0, _now() + WINDOW);
        _attest(id, 0, inspector1);
        _assertStatus(id, 0, I.MilestoneStatus.Inspected);
        assertEq(escrow.getMilestone(id, 0).attestations, 2, "attestations");
    }

    function test_attest_reverts() public {
        uint256 id = _standardDeal();
        vm.prank(inspector1);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowInvalidStatus.selector, id, 0, I.MilestoneStatus.Open));
        escrow.attestInspection(id, 0, REPORT_HASH);
        _toShipped(id, 0);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowUnauthorized.selector, id, stranger, I.Party.Inspector));
        escrow.attestInspection(id, 0, REPORT_HASH);
        vm.prank(inspector1);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowZeroHash.selector));
        escrow.attestInspection(id, 0, bytes32(0));
        _attest(id, 0, inspector1);
        vm.prank(inspector1);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowAlreadyAttested.selector, id, 0, inspector1));
        escrow.attestInspection(id, 0, REPORT_HASH);
        _attest(id, 0, inspector2);
        // a third attestation after the threshold is refused
        vm.prank(inspector3);
        vm.expectRevert(
            abi.encodeWithSelector(I.SupplyChainEscrowInvalidStatus.selector, id, 0, I.MilestoneStatus.Inspected)
        );
        escrow.attestInspection(id, 0, REPORT_HASH);
    }

    function test_registerInspector_isIdempotent() public {
        vm.prank(admin);
        uint16 again = escrow.registerInspector(inspector1);
        assertEq(again, 1, "same id");
        assertEq(escrow.inspectorId(inspector2), 2, "id 2");
        vm.expectEmit(true, false, false, true, address(escrow));
        emit I.InspectorRegistered(stranger, 4);
        vm.prank(admin);
        escrow.registerInspector(stranger);
    }

    // ------------------------------------------------------------------ acceptance and release

    function test_accept_thenRelease_creditsSupplier() public {
        uint256 id = _standardDeal();
        _toInspected(id, 0);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.MilestoneAccepted(id, 0, buyer, false);
        vm.prank(buyer);
        escrow.acceptMilestone(id, 0);
        _assertStatus(id, 0, I.MilestoneStatus.Accepted);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.MilestoneReleased(id, 0, supplier, stranger, AMOUNT);
        vm.prank(stranger);
        escrow.release(id, 0);
        _assertStatus(id, 0, I.MilestoneStatus.Released);
        assertEq(escrow.creditOf(supplier, address(usdc)), AMOUNT, "credit");
        vm.expectEmit(true, true, false, true, address(escrow));
        emit I.Withdrawn(supplier, address(usdc), AMOUNT);
        vm.prank(supplier);
        escrow.withdraw(address(usdc));
        assertEq(usdc.balanceOf(supplier), AMOUNT, "paid");
        assertEq(escrow.creditOf(supplier, address(usdc)), 0, "credit cleared");
    }

    function test_accept_reverts() public {
        uint256 id = _standardDeal();
        _toShipped(id, 0);
        vm.prank(buyer);
        vm.expectRevert(
            abi.encodeWithSelector(I.SupplyChainEscrowInvalidStatus.selector, id, 0, I.MilestoneStatus.Shipped)
        );
        escrow.acceptMilestone(id, 0);
        _attest(id, 0, inspector1);
        _attest(id, 0, inspector2);
        vm.prank(supplier);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowUnauthorized.selector, id, supplier, I.Party.Buyer));
        escrow.acceptMilestone(id, 0);
    }

    function test_release_deemedAfterWindow() public {
        uint256 id = _standardDeal();
        _toInspected(id, 0);
        uint256 windowEnd = _now() + WINDOW;
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowWindowOpen.selector, id, 0, windowEnd));
        escrow.release(id, 0);
        vm.warp(windowEnd);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowWindowOpen.selector, id, 0, windowEnd));
        escrow.release(id, 0);
        vm.warp(windowEnd + 1);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.MilestoneAccepted(id, 0, stranger, true);
        vm.prank(stranger);
        escrow.release(id, 0);
        _assertStatus(id, 0, I.MilestoneStatus.Released);
        assertEq(escrow.creditOf(supplier, address(usdc)), AMOUNT, "credit");
    }

    function test_release_revertsBeforeInspection() public {
        uint256 id = _standardDeal();
        _toShipped(id, 0);
        vm.expectRevert(
            abi.encodeWithSelector(I.SupplyChainEscrowInvalidStatus.selector, id, 0, I.MilestoneStatus.Shipped)
        );
        escrow.release(id, 0);
    }

    function test_finalStatesHaveNoExit() public {
        uint256 id = _standardDeal();
        _toAccepted(id, 0);
        escrow.release(id, 0);
        bytes memory err =
            abi.encodeWithSelector(I.SupplyChainEscrowInvalidStatus.selector, id, 0, I.MilestoneStatus.Released);
        vm.expectRevert(err);
        escrow.release(id, 0);
        vm.prank(buyer);
        vm.expectRevert(err);
        escrow.fund(id, 0, 1);
        vm.prank(buyer);
        vm.expectRevert(err);
        escrow.openDispute(id, 0, REASON_HASH);
        vm.prank(officer);
        vm.expectRevert(err);
        escrow.placeHold(id, 0, REASON_HASH, 1 days);
        vm.warp(START + 181 days);
        // the long-stop refund skips the released milestone and closes the other one
        vm.prank(buyer);
        escrow.reclaimAfterLongStop(id);
        _assertStatus(id, 0, I.MilestoneStatus.Released);
        _assertStatus(id, 1, I.MilestoneStatus.Refunded);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowNothingToReclaim.selector, id));
        escrow.reclaimAfterLongStop(id);
    }

    function test_withdraw_revertsWithoutCredit() public {
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(I.SupplyChainEscrowNothingToWithdraw.selector, stranger, address(usdc))
        );
        escrow.withdraw(address(usdc));
    }

    function test_withdraw_worksWhilePaused() public {
        uint256 id = _standardDeal();
        _toAccepted(id, 0);
        vm.prank(admin);
        escrow.pause();
        escrow.release(id, 0);
        vm.prank(supplier);
        escrow.withdraw(address(usdc));
        assertEq(usdc.balanceOf(supplier), AMOUNT, "paid while paused");
    }

    // ------------------------------------------------------------------ long stop

    function test_reclaimAfterLongStop_refundsUnreleasedUndisputed() public {
        uint256 id = _create(_params(3, 2), _milestones(3, AMOUNT));
        _fund(id, 0, 300e6); // partially funded
        _toShipped(id, 1);
        _toShipped(id, 2);
        vm.prank(supplier);
        escrow.openDispute(id, 2, REASON_HASH); // disputed: excluded
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowLongStopNotReached.selector, id, START + 180 days));
        escrow.reclaimAfterLongStop(id);
        vm.warp(START + 180 days + 1);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowUnauthorized.selector, id, stranger, I.Party.Buyer));
        escrow.reclaimAfterLongStop(id);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.MilestoneRefunded(id, 0, buyer, 300e6);
        vm.prank(buyer);
        uint256 refunded = escrow.reclaimAfterLongStop(id);
        assertEq(refunded, 300e6 + AMOUNT, "refunded");
        assertEq(escrow.creditOf(buyer, address(usdc)), refunded, "credit");
        _assertStatus(id, 0, I.MilestoneStatus.Refunded);
        _assertStatus(id, 1, I.MilestoneStatus.Refunded);
        _assertStatus(id, 2, I.MilestoneStatus.Disputed);
        (uint256 funded, uint256 released, uint256 refundedTotal, uint256 held) = escrow.dealAccounting(id);
        assertEq(funded, 300e6 + 2 * AMOUNT, "funded");
        assertEq(released, 0, "released");
        assertEq(refundedTotal, refunded, "refunded total");
        assertEq(held, AMOUNT, "held by the dispute");
    }
}
