// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {EscrowFixture} from "./escrow/EscrowFixture.sol";
import {ISupplyChainEscrow as I} from "../interfaces/ISupplyChainEscrow.sol";

/// @notice Property tests over amounts, splits and times.
contract EscrowFuzzTest is EscrowFixture {
    function _dealOf(uint96 amount) internal returns (uint256 id) {
        usdc.mint(buyer, amount);
        I.MilestoneParams[] memory ms = _milestones(1, amount);
        ms[0].invoiceHash = INVOICE_HASH;
        id = _create(_params(1, 1), ms);
    }

    /// Partial fundings in any split reach exactly the amount and never beyond.
    function testFuzz_partialFunding(uint96 amount, uint96 first) public {
        amount = uint96(_bound(amount, 2, type(uint96).max / 4));
        first = uint96(_bound(first, 1, amount - 1));
        uint256 id = _dealOf(amount);
        _fund(id, 0, first);
        _assertStatus(id, 0, I.MilestoneStatus.Open);
        uint256 rest = amount - first;
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowExceedsAmount.selector, id, 0, rest, rest + 1));
        escrow.fund(id, 0, rest + 1);
        _fund(id, 0, rest);
        _assertStatus(id, 0, I.MilestoneStatus.Funded);
        assertEq(usdc.balanceOf(address(escrow)), amount, "vault");
    }

    /// An arbiter's split credits exactly the escrowed amount, rounding in the buyer's favour.
    function testFuzz_disputeSplit(uint96 amount, uint16 bps) public {
        amount = uint96(_bound(amount, 1, type(uint96).max / 4));
        bps = uint16(_bound(bps, 0, 10_000));
        uint256 id = _dealOf(amount);
        _toShipped(id, 0);
        vm.prank(supplier);
        escrow.openDispute(id, 0, REASON_HASH);
        vm.prank(arbiter);
        escrow.resolveDispute(id, 0, bps, bytes32(0));
        uint256 toSupplier = escrow.creditOf(supplier, address(usdc));
        uint256 toBuyer = escrow.creditOf(buyer, address(usdc));
        assertEq(toSupplier + toBuyer, amount, "conservation");
        assertEq(toSupplier, uint256(amount) * bps / 10_000, "payee share");
        (uint256 funded, uint256 released, uint256 refunded, uint256 held) = escrow.dealAccounting(id);
        assertEq(funded, released + refunded + held, "accounting");
        assertEq(released, toSupplier, "released");
        assertEq(held, 0, "nothing held");
    }

    /// Deemed acceptance happens exactly after the window; disputes exactly until its end.
    function testFuzz_inspectionWindowBoundary(uint32 elapsed) public {
        uint256 id = _dealOf(AMOUNT);
        _toShipped(id, 0);
        _attest(id, 0, inspector1);
        uint256 windowEnd = _now() + WINDOW;
        elapsed = uint32(_bound(elapsed, 0, 2 * WINDOW));
        vm.warp(_now() + elapsed);
        if (_now() <= windowEnd) {
            vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowWindowOpen.selector, id, 0, windowEnd));
            escrow.release(id, 0);
            vm.prank(buyer);
            escrow.openDispute(id, 0, REASON_HASH);
            _assertStatus(id, 0, I.MilestoneStatus.Disputed);
        } else {
            vm.prank(buyer);
            vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowWindowClosed.selector, id, 0, windowEnd));
            escrow.openDispute(id, 0, REASON_HASH);
            escrow.release(id, 0);
            _assertStatus(id, 0, I.MilestoneStatus.Released);
        }
    }

    /// The default outcome applies exactly after the timeout, with the deal's split.
    function testFuzz_disputeTimeout(uint32 elapsed, uint16 defaultBps) public {
        defaultBps = uint16(_bound(defaultBps, 0, 10_000));
        I.DealParams memory p = _params(1, 1);
        p.defaultPayeeBps = defaultBps;
        uint256 id = _create(p, _milestones(1, AMOUNT));
        _toShipped(id, 0);
        vm.prank(buyer);
        escrow.openDispute(id, 0, REASON_HASH);
        uint256 endsAt = _now() + TIMEOUT;
        elapsed = uint32(_bound(elapsed, 0, 2 * TIMEOUT));
        vm.warp(_now() + elapsed);
        if (_now() <= endsAt) {
            vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowDisputeTimeoutPending.selector, id, 0, endsAt));
            escrow.applyDisputeTimeout(id, 0);
        } else {
            escrow.applyDisputeTimeout(id, 0);
            assertEq(escrow.creditOf(supplier, address(usdc)), uint256(AMOUNT) * defaultBps / 10_000, "default split");
        }
    }

    /// The long-stop refund is available exactly after the long-stop date, whatever the stage.
    function testFuzz_longStop(uint40 elapsed, uint8 stage) public {
        uint256 id = _dealOf(AMOUNT);
        stage = uint8(_bound(stage, 0, 3));
        if (stage >= 1) _fund(id, 0, AMOUNT);
        if (stage >= 2) _ship(id, 0);
        if (stage >= 3) _attest(id, 0, inspector1);
        uint256 longStop = START + 180 days;
        elapsed = uint40(_bound(elapsed, 0, 400 days));
        vm.warp(START + elapsed);
        vm.prank(buyer);
        if (_now() <= longStop) {
            vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowLongStopNotReached.selector, id, longStop));
            escrow.reclaimAfterLongStop(id);
        } else if (stage < 3) {
            uint256 refunded = escrow.reclaimAfterLongStop(id);
            assertEq(refunded, stage >= 1 ? AMOUNT : 0, "refund");
            _assertStatus(id, 0, I.MilestoneStatus.Refunded);
        } else {
            // inspected long ago: deemed accepted, never refunded by default, paid to the payee
            vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowNothingToReclaim.selector, id));
            escrow.reclaimAfterLongStop(id);
            escrow.settleAfterLongStop(id, 0);
            _assertStatus(id, 0, I.MilestoneStatus.Released);
            assertEq(escrow.creditOf(supplier, address(usdc)), AMOUNT, "paid");
        }
    }

    /// Financing credits the advance to the supplier and the full amount to the financier.
    function testFuzz_financing(uint96 amount, uint96 advance) public {
        amount = uint96(_bound(amount, 1, 1_000_000e6));
        advance = uint96(_bound(advance, 1, amount));
        uint256 id = _dealOf(amount);
        _toShipped(id, 0);
        vm.prank(supplier);
        escrow.offerFinancing(id, 0, financier, advance, INVOICE_HASH, uint40(_now() + 1));
        vm.prank(financier);
        escrow.acceptFinancing(id, 0, advance, INVOICE_HASH);
        _attest(id, 0, inspector1);
        vm.prank(buyer);
        escrow.acceptMilestone(id, 0);
        escrow.release(id, 0);
        assertEq(escrow.creditOf(supplier, address(usdc)), advance, "advance");
        assertEq(escrow.creditOf(financier, address(usdc)), amount, "claim");
        assertEq(usdc.balanceOf(address(escrow)), uint256(amount) + advance, "vault");
    }
}
