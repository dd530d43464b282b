// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {GateFixture} from "./escrow/GateFixture.sol";
import {EscrowGate} from "../EscrowGate.sol";
import {IEscrowGate as G} from "../interfaces/IEscrowGate.sol";
import {ISupplyChainEscrow as I} from "../interfaces/ISupplyChainEscrow.sol";
import {SupplyChainEscrow} from "../SupplyChainEscrow.sol";
import {IAuditAnchor} from "../interfaces/IAuditAnchor.sol";
import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";

/// @notice Issue 13: the risk gate the chain enforces (clearances), and freezes of parties.
contract EscrowGateTest is GateFixture {
    // ------------------------------------------------------------------ clearances: fund

    function test_fund_policyDealWithoutClearance_reverts() public {
        uint256 id = _policyDeal();
        vm.expectRevert(abi.encodeWithSelector(G.EscrowGateClearanceRequired.selector, id, 0, G.Action.Fund, AMOUNT));
        _fund(id, 0, AMOUNT); // the plain ABI call
        // partial funding is judged on the milestone amount: splitting does not dodge the gate
        vm.expectRevert(abi.encodeWithSelector(G.EscrowGateClearanceRequired.selector, id, 0, G.Action.Fund, 1e6));
        _fund(id, 0, 1e6);
    }

    function test_fund_withClearance_spendsItsNonce() public {
        uint256 id = _policyDeal();
        bytes memory c = _cleared(id, 0, G.Action.Fund, AMOUNT);
        vm.expectEmit(true, true, true, true, address(gate));
        emit G.ClearanceConsumed(address(escrow), id, 0, G.Action.Fund, AMOUNT, DECISION_LEAF, 0);
        _fundWith(id, 0, AMOUNT, c);
        _assertStatus(id, 0, I.MilestoneStatus.Funded);
        assertTrue(gate.isNonceUsed(address(escrow), 0), "nonce spent");
        // the same clearance cannot be replayed (on the other milestone it is also mis-bound)
        vm.expectRevert(abi.encodeWithSelector(G.EscrowGateNonceUsed.selector, address(escrow), 0));
        _fundWith(id, 1, AMOUNT, c);
    }

    function test_fund_belowThresholdOrWithoutPolicy_needsNoClearance() public {
        I.DealParams memory p = _params(3, 2);
        p.policy = POLICY;
        uint256 small = _create(p, _milestones(1, THRESHOLD)); // at the threshold: not above it
        _fund(small, 0, THRESHOLD);
        uint256 plain = _standardDeal(); // no policy
        _fund(plain, 0, AMOUNT);
        _assertStatus(small, 0, I.MilestoneStatus.Funded);
        _assertStatus(plain, 0, I.MilestoneStatus.Funded);
        // a clearance appended where none is needed is ignored, its nonce not spent
        bytes memory c = _cleared(plain, 1, G.Action.Fund, AMOUNT);
        _fundWith(plain, 1, AMOUNT, c);
        assertTrue(!gate.isNonceUsed(address(escrow), 0), "nonce untouched");
    }

    function test_clearance_bindsEveryField() public {
        uint256 id = _policyDeal();
        uint64 deadline = uint64(_now() + 1 hours);
        address signer = clearanceSigner;
        // wrong amount, milestone, action, deal: the recovered address is not the signer
        bytes[4] memory wrong = [
            _clearance(SIGNER_KEY, address(escrow), id, 0, G.Action.Fund, AMOUNT - 1, deadline, 7),
            _clearance(SIGNER_KEY, address(escrow), id, 1, G.Action.Fund, AMOUNT, deadline, 7),
            _clearance(SIGNER_KEY, address(escrow), id, 0, G.Action.Release, AMOUNT, deadline, 7),
            _clearance(SIGNER_KEY, address(escrow), id + 1, 0, G.Action.Fund, AMOUNT, deadline, 7)
        ];
        for (uint256 i; i < wrong.length; ++i) {
            vm.expectRevert(); // EscrowGateInvalidClearance(<some other address>)
            _fundWith(id, 0, AMOUNT, wrong[i]);
        }
        // another vault (the domain's verifyingContract)
        SupplyChainEscrow twin = new SupplyChainEscrow(admin, 1 days, IAuditAnchor(address(anchorMock)));
        bytes memory forTwin = _clearance(SIGNER_KEY, address(twin), id, 0, G.Action.Fund, AMOUNT, deadline, 7);
        vm.expectRevert();
        _fundWith(id, 0, AMOUNT, forTwin);
        // signed by someone else: the error names who signed
        bytes memory byOther = _clearance(OTHER_KEY, address(escrow), id, 0, G.Action.Fund, AMOUNT, deadline, 7);
        vm.expectRevert(abi.encodeWithSelector(G.EscrowGateInvalidClearance.selector, vm.addr(OTHER_KEY)));
        _fundWith(id, 0, AMOUNT, byOther);
        // another chain
        bytes memory good = _clearance(SIGNER_KEY, address(escrow), id, 0, G.Action.Fund, AMOUNT, deadline, 7);
        uint256 chainId = _chainId();
        vm.chainId(chainId + 1);
        vm.expectRevert();
        _fundWith(id, 0, AMOUNT, good);
        vm.chainId(chainId);
        // and the right one passes
        _fundWith(id, 0, AMOUNT, good);
        assertTrue(gate.isNonceUsed(address(escrow), 7), "nonce 7 spent");
        assertEq(gate.clearanceSigner(), signer, "signer");
    }

    function testFuzz_clearance_clearsOnlyItsOwnAmountAndNonce(uint96 other, uint256 nonce) public {
        other = uint96(_bound(other, 1, AMOUNT - 1));
        uint256 id = _policyDeal();
        bytes memory c = _clearance(
            SIGNER_KEY, address(escrow), id, 0, G.Action.Fund, AMOUNT, uint64(_now() + 1 hours), nonce
        );
        vm.expectRevert(); // EscrowGateInvalidClearance(<not the signer>)
        _fundWith(id, 0, other, c);
        assertTrue(!gate.isNonceUsed(address(escrow), nonce), "a refused clearance spends nothing");
        _fundWith(id, 0, AMOUNT, c);
        assertTrue(gate.isNonceUsed(address(escrow), nonce), "spent");
    }

    function test_clearance_expiredMalformedOrWithoutDecision_reverts() public {
        uint256 id = _policyDeal();
        uint64 deadline = uint64(_now() + 1 hours);
        bytes memory c = _clearance(SIGNER_KEY, address(escrow), id, 0, G.Action.Fund, AMOUNT, deadline, 3);
        vm.warp(deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(G.EscrowGateClearanceExpired.selector, deadline));
        _fundWith(id, 0, AMOUNT, c);
        vm.expectRevert(abi.encodeWithSelector(G.EscrowGateMalformedClearance.selector));
        _fundWith(id, 0, AMOUNT, hex"deadbeef");
        bytes memory noLeaf = abi.encode(bytes32(0), uint64(_now() + 1), uint256(4), new bytes(65));
        vm.expectRevert(abi.encodeWithSelector(G.EscrowGateDecisionMissing.selector, id, 0, G.Action.Fund));
        _fundWith(id, 0, AMOUNT, noLeaf);
    }

    function test_invalidateNonce_voidsAnIssuedClearance() public {
        uint256 id = _policyDeal();
        bytes memory c = _cleared(id, 0, G.Action.Fund, AMOUNT); // nonce 0
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(G.EscrowGateNotSigner.selector, stranger));
        gate.invalidateNonce(address(escrow), 0);
        vm.prank(clearanceSigner);
        gate.invalidateNonce(address(escrow), 0);
        vm.expectRevert(abi.encodeWithSelector(G.EscrowGateNonceUsed.selector, address(escrow), 0));
        _fundWith(id, 0, AMOUNT, c);
    }

    // ------------------------------------------------------------------ clearances: release, financing

    function test_release_policyDeal_needsAReleaseClearance() public {
        uint256 id = _policyDeal();
        _toAcceptedCleared(id, 0);
        vm.expectRevert(
            abi.encodeWithSelector(G.EscrowGateClearanceRequired.selector, id, 0, G.Action.Release, AMOUNT)
        );
        escrow.release(id, 0); // anyone's plain call
        // a fund clearance for the same amount does not clear a release
        bytes memory wrongAction = _cleared(id, 0, G.Action.Fund, AMOUNT);
        vm.expectRevert();
        _releaseWith(id, 0, wrongAction);
        bytes memory c = _cleared(id, 0, G.Action.Release, AMOUNT);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.MilestoneReleased(id, 0, supplier, stranger, AMOUNT);
        _releaseWith(id, 0, c);
        _assertStatus(id, 0, I.MilestoneStatus.Released);
        assertEq(escrow.creditOf(supplier, address(usdc)), AMOUNT, "supplier credited");
    }

    function test_acceptFinancing_policyDeal_needsAFinanceClearance() public {
        uint256 id = _policyDealWithInvoice();
        _fundWith(id, 0, AMOUNT, _cleared(id, 0, G.Action.Fund, AMOUNT));
        vm.prank(supplier);
        escrow.offerFinancing(id, 0, financier, 900e6, INVOICE_HASH, uint40(_now() + 1 days));
        vm.expectRevert(
            abi.encodeWithSelector(G.EscrowGateClearanceRequired.selector, id, 0, G.Action.Finance, 900e6)
        );
        vm.prank(financier);
        escrow.acceptFinancing(id, 0, 900e6, INVOICE_HASH);
        _financeWith(id, 0, 900e6, _cleared(id, 0, G.Action.Finance, 900e6));
        assertEq(escrow.getMilestone(id, 0).payee, financier, "financier is the payee");
        assertEq(escrow.creditOf(supplier, address(usdc)), 900e6, "advance credited");
    }

    // ------------------------------------------------------------------ exits never need one

    /// @dev The clearance signer's key is lost (nobody signs any more): every state still has
    /// its exit: disputes, rulings, the default outcome, the long-stop settlement (an accepted
    /// milestone the gate would stop goes to the arbiter, whose default pays the payee) and
    /// withdrawals.
    function test_lostSigner_cannotTrapFunds() public {
        I.DealParams memory p = _params(3, 2);
        p.policy = POLICY;
        uint256 id = _create(p, _milestones(3, AMOUNT));
        for (uint256 m; m < 3; ++m) {
            _fundWith(id, m, AMOUNT, _cleared(id, m, G.Action.Fund, AMOUNT));
        }
        // from here on, no clearance can be made
        _ship(id, 0);
        _ship(id, 1);
        _attest(id, 1, inspector1);
        _attest(id, 1, inspector2);
        vm.prank(buyer);
        escrow.acceptMilestone(id, 1);
        vm.expectRevert(
            abi.encodeWithSelector(G.EscrowGateClearanceRequired.selector, id, 1, G.Action.Release, AMOUNT)
        );
        escrow.release(id, 1);
        // milestone 0: the supplier disputes, the arbiter rules
        vm.prank(supplier);
        escrow.openDispute(id, 0, REASON_HASH);
        vm.prank(arbiter);
        escrow.resolveDispute(id, 0, 6_000, keccak256("ruling"));
        // milestone 2 (funded): the buyer disputes, nobody rules, the default outcome applies
        vm.prank(buyer);
        escrow.openDispute(id, 2, REASON_HASH);
        vm.warp(_now() + TIMEOUT + 1);
        escrow.applyDisputeTimeout(id, 2);
        // milestone 1 (accepted, unreleasable without a clearance): the long-stop settlement
        // needs none; it sends the milestone to the arbiter (default: the payee in full) ...
        vm.warp(START + 180 days + 1);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.MilestoneEscalated(id, 1, stranger, 10_000);
        vm.prank(stranger);
        escrow.settleAfterLongStop(id, 1);
        // ... and, the arbiter silent, the default outcome pays the supplier without a clearance
        vm.warp(_now() + TIMEOUT + 1);
        escrow.applyDisputeTimeout(id, 1);
        _assertStatus(id, 1, I.MilestoneStatus.Settled);
        (uint256 funded, uint256 released, uint256 refunded, uint256 held) = escrow.dealAccounting(id);
        assertEq(funded, 3 * AMOUNT, "funded");
        assertEq(released + refunded, funded, "all paid out");
        assertEq(held, 0, "nothing held");
        uint256 supplierCredit = escrow.creditOf(supplier, address(usdc));
        uint256 buyerCredit = escrow.creditOf(buyer, address(usdc));
        vm.prank(supplier);
        escrow.withdraw(address(usdc));
        vm.prank(buyer);
        escrow.withdraw(address(usdc));
        assertEq(supplierCredit + buyerCredit, 3 * AMOUNT, "everything withdrawn");
        assertEq(supplierCredit, AMOUNT + 6 * AMOUNT / 10 + AMOUNT * DEFAULT_BPS / 10_000, "accepted one paid");
        assertEq(usdc.balanceOf(address(escrow)), 0, "vault empty");
    }

    /// @dev The long-stop settlement reads the gate but never needs a clearance: a milestone the
    /// gate would let `release` pay without one is paid; one it would stop (above the policy's
    /// threshold, or a frozen payee) goes to the arbiter, default the payee in full.
    function test_settleAfterLongStop_neverNeedsAClearance() public {
        I.DealParams memory p = _params(3, 2);
        p.policy = POLICY;
        I.MilestoneParams[] memory ms = _milestones(2, AMOUNT);
        ms[1].amount = THRESHOLD; // at the threshold: release needs no clearance
        uint256 id = _create(p, ms);
        _toAcceptedCleared(id, 0);
        _toAccepted(id, 1); // funding THRESHOLD needs no clearance either
        uint256 plain = _plainDeal(); // no policy
        _toAccepted(plain, 0);
        _toAccepted(plain, 1);
        vm.warp(START + 180 days + 1);
        // above the threshold: to the arbiter
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.MilestoneEscalated(id, 0, stranger, 10_000);
        vm.prank(stranger);
        escrow.settleAfterLongStop(id, 0);
        // at the threshold: paid at once
        vm.prank(stranger);
        escrow.settleAfterLongStop(id, 1);
        _assertStatus(id, 1, I.MilestoneStatus.Released);
        // no policy: paid; but a frozen payee's milestone goes to the arbiter
        escrow.settleAfterLongStop(plain, 0);
        _assertStatus(plain, 0, I.MilestoneStatus.Released);
        _freeze(supplier, 1 days);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit I.MilestoneEscalated(plain, 1, stranger, 10_000);
        vm.prank(stranger);
        escrow.settleAfterLongStop(plain, 1);
        // the arbiter rules without any clearance
        vm.prank(arbiter);
        escrow.resolveDispute(id, 0, 10_000, keccak256("ruling"));
        _assertStatus(id, 0, I.MilestoneStatus.Settled);
        assertEq(escrow.creditOf(supplier, address(usdc)), AMOUNT + THRESHOLD + AMOUNT, "supplier credited");
    }

    function test_signerRotation_oldClearancesStopWorking() public {
        uint256 id = _policyDeal();
        bytes memory old = _cleared(id, 0, G.Action.Fund, AMOUNT);
        address newSigner = vm.addr(OTHER_KEY);
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, bytes32(0))
        );
        gate.setClearanceSigner(newSigner);
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(G.EscrowGateZeroValue.selector));
        gate.setClearanceSigner(address(0));
        vm.expectEmit(true, true, true, true, address(gate));
        emit G.ClearanceSignerChanged(clearanceSigner, newSigner, admin);
        vm.prank(admin);
        gate.setClearanceSigner(newSigner);
        vm.expectRevert(abi.encodeWithSelector(G.EscrowGateInvalidClearance.selector, clearanceSigner));
        _fundWith(id, 0, AMOUNT, old);
        _fundWith(
            id, 0, AMOUNT, _clearance(OTHER_KEY, address(escrow), id, 0, G.Action.Fund, AMOUNT, uint64(_now() + 1), 9)
        );
        _assertStatus(id, 0, I.MilestoneStatus.Funded);
    }

    // ------------------------------------------------------------------ policies and the vault's gate

    function test_createDeal_policyChecks() public {
        I.DealParams memory p = _params(3, 2);
        p.policy = 7;
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(G.EscrowGateUnknownPolicy.selector, 7));
        escrow.createDeal(p, _milestones(1, AMOUNT));
        // a vault without a gate refuses policy deals
        SupplyChainEscrow bare = new SupplyChainEscrow(admin, 1 days, IAuditAnchor(address(anchorMock)));
        bytes32 tokenManager = bare.TOKEN_MANAGER_ROLE();
        vm.prank(admin);
        bare.grantRole(tokenManager, admin);
        vm.prank(admin);
        bare.setTokenAllowed(address(usdc), true);
        p.policy = POLICY;
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowNoGate.selector));
        bare.createDeal(p, _milestones(1, AMOUNT));
        (G g, uint256 policy) = escrow.escrowGate(_policyDeal());
        assertEq(address(g), address(gate), "gate");
        assertEq(policy, POLICY, "policy stored");
    }

    function test_policies_areImmutable() public {
        (bool exists, uint256 threshold) = gate.policy(POLICY);
        assertTrue(exists, "exists");
        assertEq(threshold, THRESHOLD, "threshold");
        vm.startPrank(admin);
        vm.expectRevert(abi.encodeWithSelector(G.EscrowGatePolicyExists.selector, POLICY));
        gate.createPolicy(POLICY, 0);
        vm.expectRevert(abi.encodeWithSelector(G.EscrowGateZeroValue.selector));
        gate.createPolicy(0, 0);
        vm.stopPrank();
        (exists,) = gate.policy(2);
        assertTrue(!exists, "unknown");
    }

    function test_setEscrowGate_onceByTheAdmin() public {
        EscrowGate other = new EscrowGate(admin, 1 days, clearanceSigner);
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowGateAlreadySet.selector, address(gate)));
        escrow.setEscrowGate(other);
        SupplyChainEscrow bare = new SupplyChainEscrow(admin, 1 days, IAuditAnchor(address(anchorMock)));
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, bytes32(0))
        );
        bare.setEscrowGate(other);
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowZeroAddress.selector));
        bare.setEscrowGate(G(address(0xdead)));
        vm.expectEmit(true, true, true, true, address(bare));
        emit I.EscrowGateSet(address(other), admin);
        vm.prank(admin);
        bare.setEscrowGate(other);
    }

    // ------------------------------------------------------------------ freezes

    function _freeze(address account, uint256 duration) internal {
        vm.prank(officer);
        gate.freeze(account, duration, REASON_HASH);
    }

    function test_freeze_blocksNewDealsFundingFinancingReleasesAndWithdrawals() public {
        uint256 id = _standardDeal(); // no policy: freezes apply to every deal of a gated vault
        uint256 other = _plainDeal();
        _toAccepted(id, 0);
        _fund(id, 1, AMOUNT);
        vm.prank(supplier);
        escrow.offerFinancing(id, 1, financier, 900e6, INVOICE_HASH_2, uint40(_now() + 10 days));
        uint256 until = _now() + 7 days;
        vm.expectEmit(true, true, true, true, address(gate));
        emit G.AccountFrozen(supplier, until, REASON_HASH, officer);
        _freeze(supplier, 7 days);
        bytes memory frozen = abi.encodeWithSelector(G.EscrowGateAccountFrozen.selector, supplier, until);
        // no new deal naming it
        vm.prank(buyer);
        vm.expectRevert(frozen);
        escrow.createDeal(_params(3, 2), _milestones(1, AMOUNT));
        // no release to it, no financing paying it
        vm.expectRevert(frozen);
        escrow.release(id, 0);
        vm.prank(financier);
        vm.expectRevert(frozen);
        escrow.acceptFinancing(id, 1, 900e6, INVOICE_HASH_2);
        // the buyer is not frozen: it still funds, and opens deals with others
        _fund(other, 1, 1e6);
        I.DealParams memory p = _params(3, 2);
        p.supplier = address(0x51);
        _create(p, _milestones(1, AMOUNT));
        // a frozen buyer neither funds nor opens deals
        _freeze(buyer, 1 days);
        bytes memory buyerFrozen = abi.encodeWithSelector(G.EscrowGateAccountFrozen.selector, buyer, _now() + 1 days);
        vm.expectRevert(buyerFrozen);
        _fund(other, 0, AMOUNT);
        vm.prank(buyer);
        vm.expectRevert(buyerFrozen);
        escrow.createDeal(p, _milestones(1, AMOUNT));
        // the freeze ends by itself; then the release and the withdrawal go through
        vm.warp(until + 1);
        escrow.release(id, 0);
        vm.prank(supplier);
        escrow.withdraw(address(usdc));
        assertEq(usdc.balanceOf(supplier), AMOUNT, "paid after the freeze");
    }

    function test_freeze_neverBlocksDisputesRulingsOrRefundsToOthers() public {
        uint256 id = _standardDeal();
        _toShipped(id, 0);
        _fund(id, 1, AMOUNT);
        _freeze(supplier, 30 days);
        // the frozen supplier can still dispute; the arbiter rules
        vm.prank(supplier);
        escrow.openDispute(id, 0, REASON_HASH);
        vm.prank(arbiter);
        escrow.resolveDispute(id, 0, 2_500, keccak256("ruling"));
        // the long-stop refund to the (unfrozen) buyer, and its withdrawal
        vm.warp(START + 180 days + 1);
        _freeze(supplier, 30 days); // renewed
        vm.prank(buyer);
        escrow.reclaimAfterLongStop(id);
        vm.prank(buyer);
        escrow.withdraw(address(usdc));
        assertEq(escrow.creditOf(buyer, address(usdc)), 0, "buyer paid");
        // but the frozen supplier cannot withdraw its share of the ruling
        vm.prank(supplier);
        vm.expectRevert(
            abi.encodeWithSelector(G.EscrowGateAccountFrozen.selector, supplier, _now() + 30 days)
        );
        escrow.withdraw(address(usdc));
    }

    function test_freeze_boundsRolesAndUnfreeze() public {
        vm.startPrank(officer);
        vm.expectRevert(abi.encodeWithSelector(G.EscrowGateInvalidFreezeDuration.selector, 0));
        gate.freeze(supplier, 0, REASON_HASH);
        vm.expectRevert(abi.encodeWithSelector(G.EscrowGateInvalidFreezeDuration.selector, 30 days + 1));
        gate.freeze(supplier, 30 days + 1, REASON_HASH);
        vm.expectRevert(abi.encodeWithSelector(G.EscrowGateZeroValue.selector));
        gate.freeze(supplier, 1 days, bytes32(0));
        vm.expectRevert(abi.encodeWithSelector(G.EscrowGateNotFrozen.selector, supplier));
        gate.unfreeze(supplier, REASON_HASH);
        gate.freeze(supplier, 1 days, REASON_HASH);
        vm.expectEmit(true, true, true, true, address(gate));
        emit G.AccountUnfrozen(supplier, REASON_HASH, officer);
        gate.unfreeze(supplier, REASON_HASH);
        vm.stopPrank();
        assertEq(gate.frozenUntil(supplier), 0, "unfrozen");
        bytes32 role = gate.COMPLIANCE_ROLE();
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, role));
        gate.freeze(supplier, 1 days, REASON_HASH);
    }
}
