// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {TestBase} from "../Vm.sol";
import {EscrowVm} from "./EscrowVm.sol";
import {MockAuditAnchor} from "./MockAuditAnchor.sol";
import {MockStablecoin} from "../../MockStablecoin.sol";
import {SupplyChainEscrow} from "../../SupplyChainEscrow.sol";
import {ISupplyChainEscrow} from "../../interfaces/ISupplyChainEscrow.sol";
import {IAuditAnchor} from "../../interfaces/IAuditAnchor.sol";

/// @notice Shared deployment and deal helpers of the escrow tests.
abstract contract EscrowFixture is TestBase {
    EscrowVm internal constant evm = EscrowVm(address(uint160(uint256(keccak256("hevm cheat code")))));

    uint256 internal constant START = 1_700_000_000;
    uint32 internal constant WINDOW = 7 days;
    uint32 internal constant TIMEOUT = 14 days;
    uint16 internal constant DEFAULT_BPS = 5_000;
    uint96 internal constant AMOUNT = 1_000e6;

    SupplyChainEscrow internal escrow;
    MockStablecoin internal usdc;
    MockAuditAnchor internal anchorMock;

    address internal admin = address(0xAD);
    address internal buyer = address(0xB0);
    address internal supplier = address(0x50);
    address internal arbiter = address(0xA7);
    address internal financier = address(0xF1);
    address internal officer = address(0xC0);
    address internal approver1 = address(0xA1);
    address internal approver2 = address(0xA2);
    address internal approver3 = address(0xA3);
    address internal stranger = address(0xBAD);

    uint256 internal constant INSPECTOR1_KEY = 0x1111;
    uint256 internal constant INSPECTOR2_KEY = 0x2222;
    uint256 internal constant INSPECTOR3_KEY = 0x3333;
    address internal inspector1;
    address internal inspector2;
    address internal inspector3;

    bytes32 internal constant PO_HASH = keccak256("purchase order 42");
    bytes32 internal constant BOL_HASH = keccak256("bill of lading 42");
    bytes32 internal constant REPORT_HASH = keccak256("inspection report");
    bytes32 internal constant REASON_HASH = keccak256("reason");
    bytes32 internal constant INVOICE_HASH = keccak256("invoice 42");
    bytes32 internal constant INVOICE_HASH_2 = keccak256("invoice 43");

    function setUp() public virtual {
        vm.warp(START);
        inspector1 = vm.addr(INSPECTOR1_KEY);
        inspector2 = vm.addr(INSPECTOR2_KEY);
        inspector3 = vm.addr(INSPECTOR3_KEY);
        anchorMock = new MockAuditAnchor();
        escrow = new SupplyChainEscrow(admin, 1 days, IAuditAnchor(address(anchorMock)));
        usdc = new MockStablecoin("Mock USD", "mUSD", address(this));
        vm.startPrank(admin);
        escrow.grantRole(escrow.TOKEN_MANAGER_ROLE(), admin);
        escrow.grantRole(escrow.PAUSER_ROLE(), admin);
        escrow.grantRole(escrow.COMPLIANCE_ROLE(), officer);
        escrow.grantRole(escrow.REGISTRAR_ROLE(), admin);
        escrow.setTokenAllowed(address(usdc), true);
        escrow.registerInspector(inspector1);
        escrow.registerInspector(inspector2);
        escrow.registerInspector(inspector3);
        escrow.setArbiterAccredited(arbiter, true);
        vm.stopPrank();
        usdc.mint(buyer, 1_000_000e6);
        usdc.mint(financier, 1_000_000e6);
        vm.prank(buyer);
        usdc.approve(address(escrow), type(uint256).max);
        vm.prank(financier);
        usdc.approve(address(escrow), type(uint256).max);
    }

    // ---------------------------------------------------------------- deal parameters

    function _inspectors(uint256 n) internal view returns (address[] memory list) {
        list = new address[](n);
        address[3] memory all = [inspector1, inspector2, inspector3];
        for (uint256 i; i < n; ++i) list[i] = all[i];
    }

    function _params(uint256 inspectorCount, uint8 threshold)
        internal
        view
        returns (ISupplyChainEscrow.DealParams memory p)
    {
        p.supplier = supplier;
        p.arbiter = arbiter;
        p.token = address(usdc);
        p.inspectors = _inspectors(inspectorCount);
        p.inspectorThreshold = threshold;
        p.inspectionWindow = WINDOW;
        p.disputeTimeout = TIMEOUT;
        p.defaultPayeeBps = DEFAULT_BPS;
        p.longStop = uint40(START + 180 days);
    }

    function _milestones(uint256 n, uint96 amount) internal pure returns (ISupplyChainEscrow.MilestoneParams[] memory ms) {
        ms = new ISupplyChainEscrow.MilestoneParams[](n);
        for (uint256 i; i < n; ++i) {
            ms[i] = ISupplyChainEscrow.MilestoneParams({
                amount: amount,
                dueDate: uint40(START + 30 days * (i + 1)),
                documentHash: keccak256(abi.encode("PO", i)),
                proofLeaf: bytes32(0),
                invoiceHash: bytes32(0),
                proofSigner: address(0)
            });
        }
    }

    function _withApprovals(ISupplyChainEscrow.DealParams memory p, uint96 threshold, uint8 required)
        internal
        view
        returns (ISupplyChainEscrow.DealParams memory)
    {
        address[] memory approvers = new address[](3);
        approvers[0] = approver1;
        approvers[1] = approver2;
        approvers[2] = approver3;
        p.approvers = approvers;
        p.approvalThreshold = threshold;
        p.approvalsRequired = required;
        return p;
    }

    // ---------------------------------------------------------------- life-cycle helpers

    function _create(ISupplyChainEscrow.DealParams memory p, ISupplyChainEscrow.MilestoneParams[] memory ms)
        internal
        returns (uint256 dealId)
    {
        vm.prank(buyer);
        dealId = escrow.createDeal(p, ms);
    }

    /// @dev A deal with 2 milestones of AMOUNT, 3 inspectors, threshold 2, declaring the
    /// invoices INVOICE_HASH (milestone 0) and INVOICE_HASH_2 (milestone 1). The same buyer and
    /// supplier cannot declare them again: a second deal uses {_plainDeal}.
    function _standardDeal() internal returns (uint256) {
        ISupplyChainEscrow.MilestoneParams[] memory ms = _milestones(2, AMOUNT);
        ms[0].invoiceHash = INVOICE_HASH;
        ms[1].invoiceHash = INVOICE_HASH_2;
        return _create(_params(3, 2), ms);
    }

    /// @dev {_standardDeal} without invoices.
    function _plainDeal() internal returns (uint256) {
        return _create(_params(3, 2), _milestones(2, AMOUNT));
    }

    function _fund(uint256 dealId, uint256 m, uint256 amount) internal {
        vm.prank(buyer);
        escrow.fund(dealId, m, amount);
    }

    function _ship(uint256 dealId, uint256 m) internal {
        vm.prank(supplier);
        escrow.markShipped(dealId, m, BOL_HASH);
    }

    function _attest(uint256 dealId, uint256 m, address inspector) internal {
        vm.prank(inspector);
        escrow.attestInspection(dealId, m, REPORT_HASH);
    }

    function _toShipped(uint256 dealId, uint256 m) internal {
        _fund(dealId, m, escrow.getMilestone(dealId, m).amount);
        _ship(dealId, m);
    }

    function _toInspected(uint256 dealId, uint256 m) internal {
        _toShipped(dealId, m);
        _attest(dealId, m, inspector1);
        _attest(dealId, m, inspector2);
    }

    function _toAccepted(uint256 dealId, uint256 m) internal {
        _toInspected(dealId, m);
        vm.prank(buyer);
        escrow.acceptMilestone(dealId, m);
    }

    function _status(uint256 dealId, uint256 m) internal view returns (ISupplyChainEscrow.MilestoneStatus) {
        return escrow.getMilestone(dealId, m).status;
    }

    function _assertStatus(uint256 dealId, uint256 m, ISupplyChainEscrow.MilestoneStatus expected) internal view {
        assertEq(uint256(_status(dealId, m)), uint256(expected), "milestone status");
    }

    function _signAttestation(
        uint256 key,
        uint256 dealId,
        uint256 m,
        bytes32 reportHash,
        uint256 nonce,
        uint256 deadline
    ) internal view returns (bytes memory) {
        bytes32 structHash = keccak256(
            abi.encode(escrow.ATTESTATION_TYPEHASH(), vm.addr(key), dealId, m, reportHash, nonce, deadline)
        );
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", escrow.DOMAIN_SEPARATOR(), structHash));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return abi.encodePacked(r, s, v);
    }

    /// @dev The current block time. Tests read the clock here, never through `block.timestamp`:
    /// the IR pipeline (via_ir) treats block values as constant for the whole transaction, so it
    /// may reuse an earlier read or re-read at the point of use, and a `block.timestamp` next to
    /// a `vm.warp` can give the time from the other side of the warp. A cheatcode call is
    /// always evaluated where it is written.
    function _now() internal view returns (uint256) {
        return evm.getBlockTimestamp();
    }

    /// @dev The current chain id, read like {_now} and for the same reason (`vm.chainId`).
    function _chainId() internal view returns (uint256) {
        return evm.getChainId();
    }

    function _bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        if (hi <= lo) return lo;
        return lo + (x % (hi - lo + 1));
    }
}
