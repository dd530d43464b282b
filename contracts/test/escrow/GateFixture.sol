// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {EscrowFixture} from "./EscrowFixture.sol";
import {EscrowGate} from "../../EscrowGate.sol";
import {IEscrowGate} from "../../interfaces/IEscrowGate.sol";
import {ISupplyChainEscrow} from "../../interfaces/ISupplyChainEscrow.sol";

/// @notice The escrow fixture with an EscrowGate set on the vault (issue 13): policy 1 needs
/// clearances above THRESHOLD, `officer` holds the gate's compliance role, and helpers sign
/// clearances and send calls with a clearance appended to their call data.
abstract contract GateFixture is EscrowFixture {
    uint256 internal constant SIGNER_KEY = 0x5151;
    uint256 internal constant OTHER_KEY = 0x6262;
    uint16 internal constant POLICY = 1;
    uint96 internal constant THRESHOLD = 500e6;
    bytes32 internal constant DECISION_LEAF = keccak256("decision record leaf");

    EscrowGate internal gate;
    address internal clearanceSigner;
    uint256 internal nextNonce;

    function setUp() public virtual override {
        super.setUp();
        clearanceSigner = vm.addr(SIGNER_KEY);
        gate = new EscrowGate(admin, 1 days, clearanceSigner);
        vm.startPrank(admin);
        gate.createPolicy(POLICY, THRESHOLD);
        gate.grantRole(gate.COMPLIANCE_ROLE(), officer);
        escrow.setEscrowGate(gate);
        vm.stopPrank();
    }

    /// @dev A deal under POLICY: 2 milestones of AMOUNT (above the threshold), 3 inspectors,
    /// no invoices (so that it can be opened any number of times).
    function _policyDeal() internal returns (uint256) {
        ISupplyChainEscrow.DealParams memory p = _params(3, 2);
        p.policy = POLICY;
        return _create(p, _milestones(2, AMOUNT));
    }

    /// @dev {_policyDeal} declaring INVOICE_HASH for milestone 0 (once per buyer and supplier).
    function _policyDealWithInvoice() internal returns (uint256) {
        ISupplyChainEscrow.DealParams memory p = _params(3, 2);
        p.policy = POLICY;
        ISupplyChainEscrow.MilestoneParams[] memory ms = _milestones(2, AMOUNT);
        ms[0].invoiceHash = INVOICE_HASH;
        return _create(p, ms);
    }

    function _clearance(
        uint256 key,
        address vault,
        uint256 dealId,
        uint256 m,
        IEscrowGate.Action action,
        uint256 amount,
        uint64 deadline,
        uint256 nonce
    ) internal view returns (bytes memory) {
        bytes32 digest = gate.clearanceDigest(vault, dealId, m, action, amount, DECISION_LEAF, deadline, nonce);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return abi.encode(DECISION_LEAF, deadline, nonce, abi.encodePacked(r, s, v));
    }

    /// @dev A fresh clearance of the signer for this vault, valid for an hour.
    function _cleared(uint256 dealId, uint256 m, IEscrowGate.Action action, uint256 amount)
        internal
        returns (bytes memory)
    {
        return _clearance(SIGNER_KEY, address(escrow), dealId, m, action, amount, uint64(_now() + 1 hours), nextNonce++);
    }

    /// @dev Sends `call ++ clearance` to the vault as `from`, bubbling up a revert (so that
    /// `vm.expectRevert` sees the vault's or the gate's error).
    function _send(address from, bytes memory call, bytes memory clearance) internal {
        vm.prank(from);
        (bool ok, bytes memory ret) = address(escrow).call(abi.encodePacked(call, clearance));
        if (!ok) {
            // slither-disable-next-line assembly
            assembly ("memory-safe") {
                revert(add(ret, 32), mload(ret))
            }
        }
    }

    function _fundWith(uint256 dealId, uint256 m, uint256 amount, bytes memory clearance) internal {
        _send(buyer, abi.encodeWithSignature("fund(uint256,uint256,uint256)", dealId, m, amount), clearance);
    }

    function _releaseWith(uint256 dealId, uint256 m, bytes memory clearance) internal {
        _send(stranger, abi.encodeWithSignature("release(uint256,uint256)", dealId, m), clearance);
    }

    function _financeWith(uint256 dealId, uint256 m, uint96 advance, bytes memory clearance) internal {
        _send(
            financier,
            abi.encodeWithSignature("acceptFinancing(uint256,uint256,uint96,bytes32)", dealId, m, advance, INVOICE_HASH),
            clearance
        );
    }

    /// @dev Funds (cleared), ships and has two inspectors attest milestone `m`; the buyer accepts.
    function _toAcceptedCleared(uint256 dealId, uint256 m) internal {
        _fundWith(dealId, m, AMOUNT, _cleared(dealId, m, IEscrowGate.Action.Fund, AMOUNT));
        _ship(dealId, m);
        _attest(dealId, m, inspector1);
        _attest(dealId, m, inspector2);
        vm.prank(buyer);
        escrow.acceptMilestone(dealId, m);
    }
}
