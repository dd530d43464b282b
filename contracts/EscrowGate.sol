// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

import {IEscrowGate} from "./interfaces/IEscrowGate.sol";

/// @title EscrowGate
/// @notice The risk gate the chain enforces (issue 13). Deals a vault opens under a compliance
/// policy move money (`fund`, `acceptFinancing`, `release`) above the policy's threshold only
/// with a *clearance*: an EIP-712 message, signed by the gate's clearance signer after the
/// service decided `allow`, binding the chain id, the vault, the deal, the milestone, the action,
/// the amount, the decision record's leaf hash, a deadline and a nonce. A partner's directly
/// signed transaction and the service's own are checked identically. The compliance role can
/// also freeze an account for a bounded, renewable period: the vault then refuses new deals
/// naming it, funding or financing by it, releases to it and withdrawals by it.
///
/// @dev Design choices:
/// - One gate serves any number of vaults: the EIP-712 domain's `verifyingContract` is the
///   calling vault (`msg.sender` of {checkAction}) and nonces are kept per vault, so a contract
///   other than the vault the signer meant can neither use nor spend a clearance.
/// - Nonces are a bitmap (256 per storage word): the signer issues them in sequence, so a
///   steady-state clearance spends a nonce in an already written word.
/// - Policies are immutable once created: the terms of an open deal never change under it.
/// - The gate never holds or moves funds, and nothing it does blocks a refund, a dispute, a
///   ruling or the withdrawal of an unfrozen account: a lost clearance signer cannot trap funds
///   (every state keeps an exit), and the admin can rotate the signer.
/// - Freezes are bounded ({MAX_FREEZE}) and renewable; they expire without anyone acting.
contract EscrowGate is IEscrowGate, AccessControlDefaultAdminRules {
    /// @notice Role allowed to freeze and unfreeze accounts.
    bytes32 public constant COMPLIANCE_ROLE = keccak256("COMPLIANCE_ROLE");

    /// @notice EIP-712 type of a clearance.
    bytes32 public constant CLEARANCE_TYPEHASH = keccak256(
        "Clearance(uint256 dealId,uint256 milestone,uint8 action,uint256 amount,bytes32 decisionLeaf,uint64 deadline,uint256 nonce)"
    );

    /// @notice EIP-712 domain name of clearances.
    string public constant DOMAIN_NAME = "chainaudit EscrowGate";
    /// @notice EIP-712 domain version of clearances.
    string public constant DOMAIN_VERSION = "1";

    /// @notice Longest single freeze (renewable).
    uint256 public constant MAX_FREEZE = 30 days;

    bytes32 private constant _DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant _NAME_HASH = keccak256(bytes(DOMAIN_NAME));
    bytes32 private constant _VERSION_HASH = keccak256(bytes(DOMAIN_VERSION));

    address private _signer;
    /// @dev Threshold + 1 (0: no such policy).
    mapping(uint256 policyId => uint256) private _policies;
    mapping(address vault => mapping(uint256 word => uint256 bits)) private _nonceBitmaps;
    mapping(address account => uint256 until) private _frozenUntil;

    /// @param initialAdmin Holder of `DEFAULT_ADMIN_ROLE` (policies, signer rotation, roles).
    /// @param adminTransferDelay Delay of a default-admin transfer (AccessControlDefaultAdminRules).
    /// @param signer The first clearance signer (non-zero).
    constructor(address initialAdmin, uint48 adminTransferDelay, address signer)
        AccessControlDefaultAdminRules(adminTransferDelay, initialAdmin)
    {
        if (signer == address(0)) revert EscrowGateZeroValue();
        _signer = signer;
        emit ClearanceSignerChanged(address(0), signer, initialAdmin);
    }

    // ==========================================================================================
    // Checks called by vaults
    // ==========================================================================================

    /// @inheritdoc IEscrowGate
    /// @dev Emits {ClearanceConsumed} when a clearance is spent.
    function checkAction(
        uint256 policyId,
        uint256 dealId,
        uint256 milestone,
        Action action,
        uint256 basis,
        uint256 amount,
        address payer,
        address payee,
        bytes calldata clearance
    ) external {
        if (action != Action.Release) _requireNotFrozen(payer); // anyone may call a release
        _requireNotFrozen(payee);
        if (policyId == 0) return;
        uint256 thresholdPlusOne = _policies[policyId];
        if (thresholdPlusOne == 0) revert EscrowGateUnknownPolicy(policyId);
        if (action > Action.Release || basis < thresholdPlusOne) return; // no money moved, or basis <= threshold
        if (clearance.length == 0) revert EscrowGateClearanceRequired(dealId, milestone, action, amount);
        if (clearance.length < 192) revert EscrowGateMalformedClearance();
        (bytes32 decisionLeaf, uint64 deadline, uint256 nonce, bytes memory signature) =
            abi.decode(clearance, (bytes32, uint64, uint256, bytes));
        if (decisionLeaf == bytes32(0)) revert EscrowGateDecisionMissing(dealId, milestone, action);
        // slither-disable-next-line timestamp
        if (block.timestamp > deadline) revert EscrowGateClearanceExpired(deadline);
        address vault = msg.sender;
        uint256 bit = 1 << (nonce & 0xff);
        uint256 bits = _nonceBitmaps[vault][nonce >> 8];
        if (bits & bit != 0) revert EscrowGateNonceUsed(vault, nonce);
        bytes32 digest = _digest(vault, dealId, milestone, action, amount, decisionLeaf, deadline, nonce);
        // The third value (the malformed part of a bad signature) is not needed: `err` says it.
        // slither-disable-next-line unused-return
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signature);
        if (err != ECDSA.RecoverError.NoError || recovered != _signer) revert EscrowGateInvalidClearance(recovered);
        _nonceBitmaps[vault][nonce >> 8] = bits | bit;
        emit ClearanceConsumed(vault, dealId, milestone, action, amount, decisionLeaf, nonce);
    }

    // ==========================================================================================
    // Administration
    // ==========================================================================================

    /// @notice Creates policy `policyId`: milestones above `threshold` need clearances.
    /// @dev Requirements: caller has `DEFAULT_ADMIN_ROLE`; `policyId` non-zero, fits the vault's
    /// 16-bit policy field and is unused. Emits {PolicyCreated}.
    function createPolicy(uint16 policyId, uint96 threshold) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (policyId == 0) revert EscrowGateZeroValue();
        if (_policies[policyId] != 0) revert EscrowGatePolicyExists(policyId);
        _policies[policyId] = uint256(threshold) + 1;
        emit PolicyCreated(policyId, threshold, msg.sender);
    }

    /// @notice Replaces the clearance signer (rotation, or recovery of a lost key); clearances
    /// signed by the previous signer stop working.
    /// @dev Requirements: caller has `DEFAULT_ADMIN_ROLE`; `newSigner` non-zero.
    /// Emits {ClearanceSignerChanged}.
    function setClearanceSigner(address newSigner) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (newSigner == address(0)) revert EscrowGateZeroValue();
        address previous = _signer;
        _signer = newSigner;
        emit ClearanceSignerChanged(previous, newSigner, msg.sender);
    }

    /// @notice Cancels an unused nonce of `vault`, voiding a clearance issued with it.
    /// @dev Requirements: caller is the clearance signer; the nonce is unused.
    /// Emits {ClearanceNonceInvalidated}.
    function invalidateNonce(address vault, uint256 nonce) external {
        if (msg.sender != _signer) revert EscrowGateNotSigner(msg.sender);
        uint256 bit = 1 << (nonce & 0xff);
        uint256 bits = _nonceBitmaps[vault][nonce >> 8];
        if (bits & bit != 0) revert EscrowGateNonceUsed(vault, nonce);
        _nonceBitmaps[vault][nonce >> 8] = bits | bit;
        emit ClearanceNonceInvalidated(vault, nonce);
    }

    /// @notice Freezes `account` (or renews its freeze) for `duration` seconds from now: vaults
    /// refuse new deals naming it, funding and financing by it, releases to it and withdrawals
    /// by it. Refunds to others, disputes and rulings are never blocked.
    /// @dev Requirements: caller has `COMPLIANCE_ROLE`; `account` and `reasonHash` (the decision
    /// record) non-zero; 0 < duration <= {MAX_FREEZE}. Emits {AccountFrozen}.
    function freeze(address account, uint256 duration, bytes32 reasonHash) external onlyRole(COMPLIANCE_ROLE) {
        if (account == address(0) || reasonHash == bytes32(0)) revert EscrowGateZeroValue();
        if (duration == 0 || duration > MAX_FREEZE) revert EscrowGateInvalidFreezeDuration(duration);
        uint256 until = block.timestamp + duration;
        _frozenUntil[account] = until;
        emit AccountFrozen(account, until, reasonHash, msg.sender);
    }

    /// @notice Lifts `account`'s active freeze.
    /// @dev Requirements: caller has `COMPLIANCE_ROLE`; `account` frozen; `reasonHash` non-zero.
    /// Emits {AccountUnfrozen}.
    function unfreeze(address account, bytes32 reasonHash) external onlyRole(COMPLIANCE_ROLE) {
        if (reasonHash == bytes32(0)) revert EscrowGateZeroValue();
        // slither-disable-next-line timestamp
        if (_frozenUntil[account] <= block.timestamp) revert EscrowGateNotFrozen(account);
        delete _frozenUntil[account];
        emit AccountUnfrozen(account, reasonHash, msg.sender);
    }

    // ==========================================================================================
    // Views
    // ==========================================================================================

    /// @inheritdoc IEscrowGate
    function policy(uint256 policyId) external view returns (bool exists, uint256 threshold) {
        uint256 stored = _policies[policyId];
        return stored == 0 ? (false, 0) : (true, stored - 1);
    }

    /// @inheritdoc IEscrowGate
    function clearanceSigner() external view returns (address) {
        return _signer;
    }

    /// @inheritdoc IEscrowGate
    function frozenUntil(address account) external view returns (uint256) {
        return _frozenUntil[account];
    }

    /// @inheritdoc IEscrowGate
    function isNonceUsed(address vault, uint256 nonce) external view returns (bool) {
        return _nonceBitmaps[vault][nonce >> 8] & (1 << (nonce & 0xff)) != 0;
    }

    /// @inheritdoc IEscrowGate
    function domainSeparator(address vault) public view returns (bytes32) {
        return keccak256(abi.encode(_DOMAIN_TYPEHASH, _NAME_HASH, _VERSION_HASH, block.chainid, vault));
    }

    /// @inheritdoc IEscrowGate
    function clearanceDigest(
        address vault,
        uint256 dealId,
        uint256 milestone,
        Action action,
        uint256 amount,
        bytes32 decisionLeaf,
        uint64 deadline,
        uint256 nonce
    ) external view returns (bytes32) {
        return _digest(vault, dealId, milestone, action, amount, decisionLeaf, deadline, nonce);
    }

    // ==========================================================================================
    // Internal helpers
    // ==========================================================================================

    function _digest(
        address vault,
        uint256 dealId,
        uint256 milestone,
        Action action,
        uint256 amount,
        bytes32 decisionLeaf,
        uint64 deadline,
        uint256 nonce
    ) private view returns (bytes32) {
        bytes32 structHash = keccak256(
            abi.encode(CLEARANCE_TYPEHASH, dealId, milestone, uint8(action), amount, decisionLeaf, deadline, nonce)
        );
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator(vault), structHash));
    }

    function _requireNotFrozen(address account) private view {
        if (account == address(0)) return;
        uint256 until = _frozenUntil[account];
        // slither-disable-next-line timestamp
        if (until > block.timestamp) revert EscrowGateAccountFrozen(account, until);
    }
}
