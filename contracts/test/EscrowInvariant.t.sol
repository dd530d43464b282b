// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {EscrowFixture} from "./escrow/EscrowFixture.sol";
import {EscrowHandler} from "./escrow/EscrowHandler.sol";
import {EscrowGate} from "../EscrowGate.sol";
import {ISupplyChainEscrow as I} from "../interfaces/ISupplyChainEscrow.sol";

/// @notice Invariants of the vault under random interleavings of every role's actions.
contract EscrowInvariantTest is EscrowFixture {
    EscrowHandler internal handler;
    address internal pauser = address(0x9A);

    function setUp() public override {
        super.setUp();
        handler = new EscrowHandler(
            escrow, usdc, [buyer, supplier, arbiter, financier, officer, pauser], [inspector1, inspector2, inspector3]
        );
        bytes32 pauserRole = escrow.PAUSER_ROLE();
        vm.prank(admin);
        escrow.grantRole(pauserRole, pauser);
        // the compliance gate (issue 13): policy deals need clearances above 500,000 units
        uint256 signerKey = 0x5151;
        EscrowGate gate = new EscrowGate(admin, 1 days, vm.addr(signerKey));
        bytes32 complianceRole = gate.COMPLIANCE_ROLE();
        vm.startPrank(admin);
        gate.createPolicy(handler.POLICY(), 500_000e6);
        gate.grantRole(complianceRole, officer);
        escrow.setEscrowGate(gate);
        vm.stopPrank();
        handler.setGate(gate, signerKey);
        usdc.mint(buyer, 1_000_000_000e6);
        usdc.mint(financier, 1_000_000_000e6);
        vm.label(address(handler), "EscrowHandler");
    }

    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    /// @dev Read by forge: only the handler is fuzzed.
    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// @dev Read by forge: only the handler's actions (not its getters) are called.
    function targetSelectors() public view returns (FuzzSelector[] memory targets) {
        bytes4[] memory selectors = new bytes4[](21);
        selectors[0] = EscrowHandler.createDeal.selector;
        selectors[1] = EscrowHandler.fund.selector;
        selectors[2] = EscrowHandler.ship.selector;
        selectors[3] = EscrowHandler.attest.selector;
        selectors[4] = EscrowHandler.accept.selector;
        selectors[5] = EscrowHandler.release.selector;
        selectors[6] = EscrowHandler.openDispute.selector;
        selectors[7] = EscrowHandler.resolveDispute.selector;
        selectors[8] = EscrowHandler.applyTimeout.selector;
        selectors[9] = EscrowHandler.reclaim.selector;
        selectors[10] = EscrowHandler.finance.selector;
        selectors[11] = EscrowHandler.hold.selector;
        selectors[12] = EscrowHandler.advance.selector;
        selectors[13] = EscrowHandler.togglePause.selector;
        selectors[14] = EscrowHandler.withdraw.selector;
        selectors[15] = EscrowHandler.warp.selector;
        selectors[16] = EscrowHandler.advance.selector; // twice: weight the happy path
        selectors[17] = EscrowHandler.settleAfterLongStop.selector;
        selectors[18] = EscrowHandler.approvals.selector;
        selectors[19] = EscrowHandler.escalate.selector;
        selectors[20] = EscrowHandler.freeze.selector;
        targets = new FuzzSelector[](1);
        targets[0] = FuzzSelector({addr: address(handler), selectors: selectors});
    }

    function _heldAndCredits() internal view returns (uint256 held, uint256 credits) {
        uint256 deals = handler.dealCount();
        for (uint256 i; i < deals; ++i) {
            (,,, uint256 h) = escrow.dealAccounting(handler.dealIds(i));
            held += h;
        }
        uint256 holders = handler.creditHolderCount();
        for (uint256 i; i < holders; ++i) {
            credits += escrow.creditOf(handler.creditHolders(i), address(usdc));
        }
    }

    /// The vault holds exactly the unreleased deal funds plus the unwithdrawn credits.
    function invariant_vaultBalanceMatchesBooks() public view {
        (uint256 held, uint256 credits) = _heldAndCredits();
        assertEq(usdc.balanceOf(address(escrow)), held + credits, "vault balance == held + credits");
        assertEq(
            usdc.balanceOf(address(escrow)),
            handler.ghostDeposited() - handler.ghostWithdrawn(),
            "vault balance == deposits - withdrawals"
        );
    }

    /// Per deal: funded == released + refunded + held, and funded matches what the buyer paid.
    function invariant_dealAccounting() public view {
        uint256 deals = handler.dealCount();
        for (uint256 i; i < deals; ++i) {
            uint256 id = handler.dealIds(i);
            (uint256 funded, uint256 released, uint256 refunded, uint256 held) = escrow.dealAccounting(id);
            assertEq(funded, released + refunded + held, "funded == released + refunded + held");
            assertEq(funded, handler.ghostFunded(id), "funded == buyer payments");
        }
    }

    /// No milestone ever leaves a final state (checked after every action by the handler,
    /// re-checked here).
    function invariant_finalStatesAreFinal() public view {
        uint256 deals = handler.dealCount();
        for (uint256 i; i < deals; ++i) {
            uint256 id = handler.dealIds(i);
            uint256 n = escrow.getDeal(id).milestoneCount;
            for (uint256 m; m < n; ++m) {
                I.MilestoneStatus seen = handler.finalStatus(id, m);
                if (seen != I.MilestoneStatus.None) {
                    assertEq(uint256(escrow.getMilestone(id, m).status), uint256(seen), "final state left");
                }
            }
        }
    }

    /// An accepted (or deemed accepted) or financed milestone is never refunded to the buyer:
    /// only a ruling (or the default of a dispute or escalation) can give the buyer a share.
    function invariant_acceptedOrFinancedNeverRefunded() public view {
        uint256 deals = handler.dealCount();
        for (uint256 i; i < deals; ++i) {
            uint256 id = handler.dealIds(i);
            uint256 n = escrow.getDeal(id).milestoneCount;
            for (uint256 m; m < n; ++m) {
                if (handler.acceptedOrFinanced(id, m)) {
                    assertTrue(escrow.getMilestone(id, m).status != I.MilestoneStatus.Refunded, "refunded");
                }
            }
        }
    }

    /// No milestone's total hold time exceeds the cap, and its long stop moved by exactly it.
    function invariant_holdTimeWithinCap() public view {
        (uint256 cap,,) = escrow.holdCap();
        uint256 deals = handler.dealCount();
        for (uint256 i; i < deals; ++i) {
            uint256 id = handler.dealIds(i);
            I.DealView memory d = escrow.getDeal(id);
            for (uint256 m; m < d.milestoneCount; ++m) {
                (uint256 held, uint256 longStop) = escrow.holdTime(id, m);
                assertTrue(held <= cap, "hold time over the cap");
                assertEq(longStop, uint256(d.longStop) + held, "long stop moved by the hold time");
            }
        }
    }

    /// No invoice commitment is financed twice, and each financed one names the milestone
    /// that declared it, now paid to a financier.
    function invariant_noInvoiceFinancedTwice() public view {
        uint256 count = handler.financedCommitmentCount();
        for (uint256 i; i < count; ++i) {
            bytes32 commitment = handler.financedCommitments(i);
            assertEq(handler.financings(commitment), 1, "financed twice");
            assertTrue(escrow.isInvoiceFinanced(commitment), "registry");
            (bool found, uint256 id, uint256 m) = escrow.invoiceMilestone(commitment);
            assertTrue(found, "declared");
            assertEq(escrow.getMilestone(id, m).payee, financier, "paid to the financier");
        }
    }

    function test_handlerSanity() public {
        handler.createDeal(1, 5, 0);
        handler.fund(0, 0);
        handler.ship(0);
        handler.attest(0, 0);
        handler.accept(0);
        handler.release(0, false);
        assertEq(handler.successes("release"), 1, "released");
        handler.warp(9 days);
        handler.warp(9 days);
        handler.warp(9 days);
        handler.reclaim(0);
        assertEq(handler.successes("reclaim"), 1, "reclaimed");
    }

    /// The gate's actions reach their targets: a policy deal funded and released with
    /// clearances, a freeze that stops a withdrawal until it is lifted.
    function test_handlerSanity_gate() public {
        handler.createDeal(0, 5, 0x42); // one milestone, 1-of-3 inspectors, under the policy
        (, uint256 policy) = escrow.escrowGate(1);
        assertEq(policy, handler.POLICY(), "policy deal");
        uint256 seed = 1 << 8; // deal index 0, milestone 0, a clearance each time
        for (uint256 i; i < 4; ++i) handler.advance(seed); // fund, ship, attest, accept
        handler.advance(seed); // release
        assertEq(handler.successes("release"), 1, "released");
        assertEq(uint256(escrow.getMilestone(1, 0).status), uint256(I.MilestoneStatus.Released), "paid");
        handler.freeze(0, 1 days, false); // the supplier
        assertEq(handler.successes("freeze"), 1, "frozen");
        uint256 credit = escrow.creditOf(supplier, address(usdc));
        handler.withdraw(1); // creditHolders[1] is the supplier: refused while frozen
        assertEq(escrow.creditOf(supplier, address(usdc)), credit, "still credited");
        handler.freeze(0, 0, true);
        handler.withdraw(1);
        assertEq(escrow.creditOf(supplier, address(usdc)), 0, "withdrawn");
    }

    /// The new actions reach their targets: a maker-checker deal escalated by the payee and
    /// settled by default, and a deemed-accepted milestone paid at its long stop.
    function test_handlerSanity_escalationAndLongStop() public {
        handler.createDeal(1, 5, 0x81); // two milestones, 1 inspector, approvals required
        handler.advance(0); // fund m0
        handler.advance(0); // ship
        handler.advance(0); // attest (threshold 1)
        handler.advance(0); // accept
        handler.escalate(0); // warps past the approval deadline
        assertEq(handler.successes("escalate"), 1, "escalated");
        handler.applyTimeout(0);
        assertEq(handler.successes("timeout"), 1, "default applied");
        assertEq(escrow.creditOf(supplier, address(usdc)), escrow.getMilestone(1, 0).amount, "payee paid");
        handler.createDeal(0, 7, 0);
        uint256 seed = 1; // deal index 1, milestone 0
        handler.advance(seed);
        handler.advance(seed);
        handler.advance(seed); // inspected, never accepted
        handler.settleAfterLongStop(seed); // warps past the long stop
        assertEq(handler.successes("settle"), 1, "settled");
        assertEq(uint256(escrow.getMilestone(2, 0).status), uint256(I.MilestoneStatus.Released), "paid, not refunded");
    }
}
