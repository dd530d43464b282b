// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {TestBase} from "../Vm.sol";
import {EscrowVm} from "./EscrowVm.sol";
import {MockStablecoin} from "../../MockStablecoin.sol";
import {SupplyChainEscrow} from "../../SupplyChainEscrow.sol";
import {EscrowGate} from "../../EscrowGate.sol";
import {IEscrowGate as G} from "../../interfaces/IEscrowGate.sol";
import {ISupplyChainEscrow as I} from "../../interfaces/ISupplyChainEscrow.sol";

/// @notice Invariant-test handler playing every role of the escrow: buyer, supplier,
/// inspectors, arbiter, financier, compliance officer, pauser and bystanders. Every action
/// picks its deal and milestone from the fuzzer's inputs and swallows expected reverts, so
/// that the fuzzer explores all interleavings.
contract EscrowHandler is TestBase {
    EscrowVm internal constant evm = EscrowVm(address(uint160(uint256(keccak256("hevm cheat code")))));

    SupplyChainEscrow public immutable escrow;
    MockStablecoin public immutable token;
    address public immutable buyer;
    address public immutable supplier;
    address public immutable arbiter;
    address public immutable financier;
    address public immutable officer;
    address public immutable pauser;
    address[3] internal _inspectors;

    uint256[] public dealIds;
    address[] public creditHolders;
    mapping(address => bool) internal _isHolder;

    /// @dev Statuses seen final, to check that they never change again.
    mapping(uint256 => mapping(uint256 => I.MilestoneStatus)) public finalStatus;
    uint256 public ghostDeposited; // funding + advances
    uint256 public ghostWithdrawn;
    mapping(uint256 => uint256) public ghostFunded;
    /// @dev Successful actions by kind, to check that the fuzzer reaches every stage.
    mapping(bytes32 => uint256) public successes;
    /// @dev Milestones seen accepted (or deemed accepted) or financed: never refunded after.
    mapping(uint256 => mapping(uint256 => bool)) public acceptedOrFinanced;
    /// @dev Successful financings per invoice commitment.
    mapping(bytes32 => uint256) public financings;
    bytes32[] public financedCommitments;
    /// @dev Release approvers of the deals created with a maker-checker policy.
    address public constant APPROVER_A = address(0xA11);
    address public constant APPROVER_B = address(0xA12);
    /// @dev The vault's compliance gate (issue 13), once {setGate} ran: policy deals move money
    /// above the policy's threshold only with a clearance signed with `_signerKey`.
    EscrowGate public gate;
    uint16 public constant POLICY = 1;
    uint256 internal _signerKey;
    uint256 internal _nextNonce;

    constructor(
        SupplyChainEscrow escrow_,
        MockStablecoin token_,
        address[6] memory parties, // buyer, supplier, arbiter, financier, officer, pauser
        address[3] memory inspectors
    ) {
        escrow = escrow_;
        token = token_;
        buyer = parties[0];
        supplier = parties[1];
        arbiter = parties[2];
        financier = parties[3];
        officer = parties[4];
        pauser = parties[5];
        _inspectors = inspectors;
        _track(buyer);
        _track(supplier);
        _track(financier);
    }

    /// @dev The current block time, through the cheatcode: see {EscrowFixture-_now}.
    function _now() internal view returns (uint256) {
        return evm.getBlockTimestamp();
    }

    /// @dev Called once by the test after it set `gate_` on the vault.
    function setGate(EscrowGate gate_, uint256 signerKey) external {
        gate = gate_;
        _signerKey = signerKey;
    }

    /// @dev Sends `call` to the vault as `from`, with a clearance of the gate's signer appended
    /// when the deal is under a policy (except one time in eight, when the gate refuses it).
    function _cleared(address from, bytes memory call, uint256 id, uint256 m, G.Action action, uint256 amount, uint256 seed)
        internal
        returns (bool ok)
    {
        bytes memory clearance;
        (, uint256 policy) = escrow.escrowGate(id);
        if (policy != 0 && seed % 8 != 0) {
            uint256 nonce = _nextNonce++;
            uint64 deadline = uint64(_now() + 1 hours);
            bytes32 leaf = keccak256(abi.encode("decision", nonce));
            bytes32 digest = gate.clearanceDigest(address(escrow), id, m, action, amount, leaf, deadline, nonce);
            (uint8 v, bytes32 r, bytes32 sig) = vm.sign(_signerKey, digest);
            clearance = abi.encode(leaf, deadline, nonce, abi.encodePacked(r, sig, v));
        }
        vm.prank(from);
        // slither-disable-next-line low-level-calls
        (ok,) = address(escrow).call(abi.encodePacked(call, clearance));
        if (ok && clearance.length != 0) successes["cleared"]++;
    }

    function _fundCleared(uint256 id, uint256 m, uint256 amount, uint256 seed) internal returns (bool) {
        return _cleared(buyer, abi.encodeCall(escrow.fund, (id, m, amount)), id, m, G.Action.Fund, amount, seed);
    }

    function _releaseCleared(uint256 id, uint256 m, uint256 seed) internal returns (bool) {
        uint256 funded = escrow.getMilestone(id, m).funded;
        return _cleared(address(this), abi.encodeCall(escrow.release, (id, m)), id, m, G.Action.Release, funded, seed);
    }

    function _track(address account) internal {
        if (!_isHolder[account]) {
            _isHolder[account] = true;
            creditHolders.push(account);
        }
    }

    /// @dev The invoice declared for milestone `m` of deal `id` (deal ids start at 1 and every
    /// deal of the vault is created by this handler).
    function _invoiceOf(uint256 id, uint256 m) internal pure returns (bytes32) {
        return keccak256(abi.encode("invoice", id, m));
    }

    function dealCount() external view returns (uint256) {
        return dealIds.length;
    }

    function creditHolderCount() external view returns (uint256) {
        return creditHolders.length;
    }

    function _pick(uint256 seed) internal view returns (uint256 id, uint256 m, bool ok) {
        if (dealIds.length == 0) return (0, 0, false);
        id = dealIds[seed % dealIds.length];
        m = (seed >> 128) % escrow.getDeal(id).milestoneCount;
        ok = true;
    }

    /// @dev The first milestone in `status` scanning all deals from a seed-chosen start, so that
    /// the fuzzer keeps advancing milestones; falls back to a random one.
    function _pickIn(uint256 seed, I.MilestoneStatus status) internal view returns (uint256 id, uint256 m, bool ok) {
        uint256 deals = dealIds.length;
        if (deals == 0) return (0, 0, false);
        for (uint256 k; k < deals; ++k) {
            uint256 candidate = dealIds[(seed + k) % deals];
            uint256 n = escrow.getDeal(candidate).milestoneCount;
            for (uint256 j; j < n; ++j) {
                uint256 mm = ((seed >> 128) + j) % n;
                if (escrow.getMilestone(candidate, mm).status == status) return (candidate, mm, true);
            }
        }
        return _pick(seed);
    }

    /// @dev Records which milestones of deal `id` are (deemed) accepted or financed; called
    /// before and after every action that can close a milestone.
    function _mark(uint256 id) internal {
        I.DealView memory d = escrow.getDeal(id);
        for (uint256 m; m < d.milestoneCount; ++m) {
            I.MilestoneView memory v = escrow.getMilestone(id, m);
            bool deemed = v.status == I.MilestoneStatus.Inspected && _now() > v.stageAt + d.inspectionWindow;
            if (v.status == I.MilestoneStatus.Accepted || deemed || v.payee != d.supplier) {
                acceptedOrFinanced[id][m] = true;
            }
        }
    }

    function _afterAction(uint256 id) internal {
        _mark(id);
        uint256 n = escrow.getDeal(id).milestoneCount;
        for (uint256 m; m < n; ++m) {
            I.MilestoneStatus s = escrow.getMilestone(id, m).status;
            I.MilestoneStatus seen = finalStatus[id][m];
            if (seen != I.MilestoneStatus.None) {
                assertEq(uint256(s), uint256(seen), "left a final state");
            } else if (s >= I.MilestoneStatus.Released) {
                finalStatus[id][m] = s;
            }
        }
    }

    // ------------------------------------------------------------------ actions

    function createDeal(uint8 milestones, uint96 amountSeed, uint8 threshold) external {
        _createDeal(milestones, amountSeed, threshold);
    }

    function _createDeal(uint8 milestones, uint96 amountSeed, uint8 threshold) internal {
        if (dealIds.length >= 8) return;
        uint256 n = 1 + milestones % 3;
        I.DealParams memory p;
        p.supplier = supplier;
        p.arbiter = arbiter;
        p.token = address(token);
        p.inspectors = new address[](3);
        for (uint256 i; i < 3; ++i) p.inspectors[i] = _inspectors[i];
        p.inspectorThreshold = 1 + threshold % 3;
        p.inspectionWindow = 3 days;
        p.disputeTimeout = 5 days;
        p.defaultPayeeBps = uint16(amountSeed % 10_001);
        p.longStop = uint40(_now() + 20 days);
        if (address(gate) != address(0) && threshold & 0x40 != 0) p.policy = POLICY;
        if (threshold & 0x80 != 0) {
            // maker-checker: releases above 1 unit need both approvers
            p.approvers = new address[](2);
            p.approvers[0] = APPROVER_A;
            p.approvers[1] = APPROVER_B;
            p.approvalThreshold = 1;
            p.approvalsRequired = 2;
        }
        I.MilestoneParams[] memory ms = new I.MilestoneParams[](n);
        for (uint256 i; i < n; ++i) {
            ms[i].amount = uint96(1 + (uint256(keccak256(abi.encode(amountSeed, i))) % 1_000_000e6));
            ms[i].dueDate = uint40(_now() + 1 days + i);
            ms[i].documentHash = keccak256(abi.encode("po", dealIds.length, i));
            ms[i].invoiceHash = _invoiceOf(dealIds.length + 1, i);
        }
        vm.prank(buyer);
        try escrow.createDeal(p, ms) returns (uint256 id) {
            dealIds.push(id);
        } catch {}
    }

    function fund(uint256 seed, uint96 amountSeed) external {
        (uint256 id, uint256 m, bool ok) = _pickIn(seed, I.MilestoneStatus.Open);
        if (!ok) return;
        I.MilestoneView memory v = escrow.getMilestone(id, m);
        if (v.amount == v.funded) return;
        // half of the time fund the rest at once
        uint256 amount = amountSeed % 2 == 0 ? v.amount - v.funded : 1 + amountSeed % (v.amount - v.funded);
        if (_fundCleared(id, m, amount, amountSeed)) {
            ghostDeposited += amount;
            ghostFunded[id] += amount;
        }
        _afterAction(id);
    }

    function ship(uint256 seed) external {
        (uint256 id, uint256 m, bool ok) = _pickIn(seed, I.MilestoneStatus.Funded);
        if (!ok) return;
        vm.prank(supplier);
        try escrow.markShipped(id, m, keccak256("bol")) {} catch {}
        _afterAction(id);
    }

    function attest(uint256 seed, uint8 who) external {
        (uint256 id, uint256 m, bool ok) = _pickIn(seed, I.MilestoneStatus.Shipped);
        if (!ok) return;
        address inspector = _inspectors[who % 3];
        for (uint256 k; k < 3 && escrow.hasAttested(id, m, inspector); ++k) inspector = _inspectors[(who + k + 1) % 3];
        vm.prank(inspector);
        try escrow.attestInspection(id, m, keccak256("report")) {} catch {}
        _afterAction(id);
    }

    function accept(uint256 seed) external {
        (uint256 id, uint256 m, bool ok) = _pickIn(seed, I.MilestoneStatus.Inspected);
        if (!ok) return;
        vm.prank(buyer);
        try escrow.acceptMilestone(id, m) {} catch {}
        _afterAction(id);
    }

    function release(uint256 seed, bool deemed) external {
        (uint256 id, uint256 m, bool ok) =
            _pickIn(seed, deemed ? I.MilestoneStatus.Inspected : I.MilestoneStatus.Accepted);
        if (!ok) return;
        if (deemed && seed % 2 == 0) vm.warp(_now() + 3 days + 1);
        if (_releaseCleared(id, m, seed >> 8)) successes["release"]++;
        _afterAction(id);
    }

    function openDispute(uint256 seed, bool bySupplier) external {
        (uint256 id, uint256 m, bool ok) = _pickIn(seed, I.MilestoneStatus.Shipped);
        if (!ok) return;
        vm.prank(bySupplier ? supplier : buyer);
        try escrow.openDispute(id, m, keccak256("reason")) {} catch {}
        _afterAction(id);
    }

    function resolveDispute(uint256 seed, uint16 bps) external {
        (uint256 id, uint256 m, bool ok) = _pickIn(seed, I.MilestoneStatus.Disputed);
        if (!ok) return;
        vm.prank(arbiter);
        try escrow.resolveDispute(id, m, uint16(bps % 10_001), keccak256("ruling")) {
            successes["ruling"]++;
        } catch {}
        _afterAction(id);
    }

    function applyTimeout(uint256 seed) external {
        (uint256 id, uint256 m, bool ok) = _pickIn(seed, I.MilestoneStatus.Disputed);
        if (!ok) return;
        if (seed % 2 == 0) vm.warp(_now() + 5 days + 1);
        try escrow.applyDisputeTimeout(id, m) {
            successes["timeout"]++;
        } catch {}
        _afterAction(id);
    }

    function reclaim(uint256 seed) external {
        (uint256 id,, bool ok) = _pick(seed);
        if (!ok) return;
        uint256 longStop = escrow.getDeal(id).longStop;
        if (_now() <= longStop && seed % 2 == 0) vm.warp(longStop + 1);
        _mark(id);
        vm.prank(buyer);
        try escrow.reclaimAfterLongStop(id) {
            successes["reclaim"]++;
        } catch {}
        _afterAction(id);
    }

    function finance(uint256 seed, uint96 advanceSeed) external {
        (uint256 id, uint256 m, bool ok) = _pick(seed);
        if (!ok) return;
        uint96 advance = uint96(1 + advanceSeed % escrow.getMilestone(id, m).amount);
        // a declared invoice of another milestone half of the time: always refused
        bytes32 invoice = _invoiceOf(id, advanceSeed % 2 == 0 ? m : m + 1);
        vm.prank(supplier);
        try escrow.offerFinancing(id, m, financier, advance, invoice, uint40(_now() + 1 days)) {
            bytes memory call = abi.encodeCall(escrow.acceptFinancing, (id, m, advance, invoice));
            if (_cleared(financier, call, id, m, G.Action.Finance, advance, seed >> 8)) {
                ghostDeposited += advance;
                successes["finance"]++;
                bytes32 commitment = escrow.invoiceCommitment(supplier, buyer, invoice);
                if (financings[commitment]++ == 0) financedCommitments.push(commitment);
            }
        } catch {}
        _afterAction(id);
    }

    function hold(uint256 seed, uint32 duration, uint8 action) external {
        (uint256 id, uint256 m, bool ok) = _pick(seed);
        if (!ok) return;
        vm.startPrank(officer);
        if (action % 3 == 0) {
            try escrow.placeHold(id, m, keccak256("kyc"), 1 + duration % 30 days) {} catch {}
        } else if (action % 3 == 1) {
            try escrow.renewHold(id, m, keccak256("kyc"), 1 + duration % 30 days) {} catch {}
        } else {
            try escrow.liftHold(id, m, keccak256("cleared")) {} catch {}
        }
        vm.stopPrank();
        _afterAction(id);
    }

    /// @dev Moves a random milestone one step along the happy path, so that deep states are
    /// reached within the fuzzer's depth.
    function advance(uint256 seed) external {
        (uint256 id, uint256 m, bool ok) = _pick(seed);
        if (!ok) return;
        I.MilestoneView memory v = escrow.getMilestone(id, m);
        if (v.status == I.MilestoneStatus.Open) {
            if (_fundCleared(id, m, v.amount - v.funded, seed >> 8)) {
                ghostDeposited += v.amount - v.funded;
                ghostFunded[id] += v.amount - v.funded;
            }
        } else if (v.status == I.MilestoneStatus.Funded) {
            vm.prank(supplier);
            try escrow.markShipped(id, m, keccak256("bol")) {} catch {}
        } else if (v.status == I.MilestoneStatus.Shipped) {
            for (uint256 k; k < 3; ++k) {
                address inspector = _inspectors[k];
                if (escrow.hasAttested(id, m, inspector)) continue;
                vm.prank(inspector);
                try escrow.attestInspection(id, m, keccak256("report")) {} catch {}
                break;
            }
        } else if (v.status == I.MilestoneStatus.Inspected) {
            vm.prank(buyer);
            try escrow.acceptMilestone(id, m) {} catch {}
        } else if (v.status == I.MilestoneStatus.Accepted) {
            if (_releaseCleared(id, m, seed >> 8)) successes["release"]++;
        }
        _afterAction(id);
    }

    /// @dev Anyone closes a milestone after its own long stop (often warping there first).
    function settleAfterLongStop(uint256 seed) external {
        (uint256 id, uint256 m, bool ok) = _pick(seed);
        if (!ok) return;
        (, uint256 longStop) = escrow.holdTime(id, m);
        if (_now() <= longStop && (seed >> 64) % 2 == 0) vm.warp(longStop + 3 days + 1);
        _mark(id);
        try escrow.settleAfterLongStop(id, m) {
            successes["settle"]++;
        } catch {}
        _afterAction(id);
    }

    /// @dev The maker-checker steps: request (buyer), approve (an approver), withdraw (buyer).
    function approvals(uint256 seed, uint8 action) external {
        (uint256 id, uint256 m, bool ok) = _pick(seed);
        if (!ok) return;
        if (action % 4 == 0) {
            vm.prank(buyer);
            try escrow.requestRelease(id, m) {} catch {}
        } else if (action % 4 == 1) {
            vm.prank(APPROVER_A);
            try escrow.approveRelease(id, m) {} catch {}
        } else if (action % 4 == 2) {
            vm.prank(APPROVER_B);
            try escrow.approveRelease(id, m) {} catch {}
        } else {
            vm.prank(buyer);
            try escrow.withdrawReleaseRequest(id, m) {} catch {}
        }
        _afterAction(id);
    }

    /// @dev The payee escalates a release stuck on approvals (often after the deadline).
    function escalate(uint256 seed) external {
        (uint256 id, uint256 m, bool ok) = _pickIn(seed, I.MilestoneStatus.Accepted);
        if (!ok) return;
        if (seed % 2 == 0) vm.warp(_now() + 8 days + 1);
        address payee = escrow.getMilestone(id, m).payee;
        vm.prank(payee);
        try escrow.escalateRelease(id, m) {
            successes["escalate"]++;
        } catch {}
        _afterAction(id);
    }

    function financedCommitmentCount() external view returns (uint256) {
        return financedCommitments.length;
    }

    function togglePause(uint8 seed) external {
        vm.startPrank(pauser);
        if (escrow.paused()) escrow.unpause();
        else if (seed % 4 == 0) escrow.pause();
        vm.stopPrank();
    }

    function withdraw(uint8 who) external {
        address account = creditHolders[who % creditHolders.length];
        uint256 credit = escrow.creditOf(account, address(token));
        if (credit == 0) return;
        vm.prank(account);
        try escrow.withdraw(address(token)) {
            ghostWithdrawn += credit;
        } catch {} // a frozen account waits for its freeze to end
    }

    /// @dev The gate's compliance officer freezes (or renews the freeze of) a party for up to
    /// 30 days, or lifts it: refunds, disputes and rulings must still go through.
    function freeze(uint8 who, uint32 duration, bool lift) external {
        if (address(gate) == address(0)) return;
        address account = who % 3 == 0 ? supplier : who % 3 == 1 ? financier : buyer;
        vm.startPrank(officer);
        if (lift) {
            try gate.unfreeze(account, keccak256("cleared")) {} catch {}
        } else {
            try gate.freeze(account, 1 + duration % 30 days, keccak256("sanctions screening")) {
                successes["freeze"]++;
            } catch {}
        }
        vm.stopPrank();
    }

    function warp(uint32 seconds_) external {
        vm.warp(_now() + seconds_ % 10 days);
    }
}
