// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IEscrowGate
/// @notice The compliance gate of chainaudit's escrow vault (issue 13): clearances for the money
/// movements of deals created under a compliance policy, and freezes of parties.
/// @dev A vault calls {checkAction} from `createDeal`, `fund`, `acceptFinancing`, `release` and
/// `withdraw`. A clearance is an EIP-712 message signed by
/// the gate's clearance signer; its domain is `EIP712Domain(string name,string version,uint256
/// chainId,address verifyingContract)` with name {DOMAIN_NAME}, version {DOMAIN_VERSION} and the
/// *vault* as `verifyingContract` (the vault whose funds the clearance moves; the gate verifies on
/// its behalf), so a clearance for one vault or chain is void on any other. Refunds, disputes,
/// rulings and (unfrozen) withdrawals never consult the gate for a clearance.
interface IEscrowGate {
    /// @notice What a vault asks the gate about. `Fund`, `Finance` and `Release` are the money
    /// movements a clearance can authorize (`uint8` in the EIP-712 type); `Create` and
    /// `Withdraw` only check the policy and freezes, and never take a clearance.
    enum Action {
        Fund, // the buyer escrows `amount` for a milestone
        Finance, // a financier pays `amount` (the advance) to take over a milestone's claim
        Release, // `amount` (the escrowed funds) is credited to the milestone's payee
        Create, // a new deal: `policyId` must exist; payer = buyer, payee = supplier
        Withdraw // payer = the withdrawing account
    }

    /// @notice A compliance policy: moves of a milestone whose amount exceeds `threshold` need a
    /// clearance.
    event PolicyCreated(uint256 indexed policyId, uint256 threshold, address indexed admin);
    /// @notice The clearance signer changed (rotation by the admin).
    event ClearanceSignerChanged(address indexed previousSigner, address indexed newSigner, address indexed admin);
    /// @notice A clearance was used (its nonce is spent) by `vault` for a money movement.
    event ClearanceConsumed(
        address indexed vault,
        uint256 indexed dealId,
        uint256 milestone,
        Action action,
        uint256 amount,
        bytes32 indexed decisionLeaf,
        uint256 nonce
    );
    /// @notice `account` was frozen (or its freeze renewed) until `until`.
    event AccountFrozen(address indexed account, uint256 until, bytes32 reasonHash, address indexed officer);
    /// @notice `account`'s freeze was lifted before it expired.
    event AccountUnfrozen(address indexed account, bytes32 reasonHash, address indexed officer);
    /// @notice The clearance signer cancelled an unused nonce of `vault`.
    event ClearanceNonceInvalidated(address indexed vault, uint256 nonce);

    /// @notice The call needs a clearance and none was given (`amount` is what it would move).
    error EscrowGateClearanceRequired(uint256 dealId, uint256 milestone, Action action, uint256 amount);
    /// @notice The clearance's deadline has passed.
    error EscrowGateClearanceExpired(uint256 deadline);
    /// @notice The clearance names no decision record (zero leaf hash).
    error EscrowGateDecisionMissing(uint256 dealId, uint256 milestone, Action action);
    /// @notice The clearance's nonce was already used or cancelled for this vault.
    error EscrowGateNonceUsed(address vault, uint256 nonce);
    /// @notice The clearance was not signed by the clearance signer for exactly this vault, chain,
    /// deal, milestone, action and amount (`recovered`: who did sign it, zero if unreadable).
    error EscrowGateInvalidClearance(address recovered);
    /// @notice The clearance bytes do not decode.
    error EscrowGateMalformedClearance();
    /// @notice No policy has this id.
    error EscrowGateUnknownPolicy(uint256 policyId);
    /// @notice A policy with this id exists already (policies never change under open deals).
    error EscrowGatePolicyExists(uint256 policyId);
    /// @notice `account` is frozen until `until`.
    error EscrowGateAccountFrozen(address account, uint256 until);
    /// @notice `account` is not frozen.
    error EscrowGateNotFrozen(address account);
    /// @notice A freeze must last 1 second to {MAX_FREEZE}.
    error EscrowGateInvalidFreezeDuration(uint256 duration);
    /// @notice A zero address or hash where one is required.
    error EscrowGateZeroValue();
    /// @notice The caller is not the clearance signer.
    error EscrowGateNotSigner(address caller);

    /// @notice Checks an action of a vault: neither `payer` (the vault's caller; not checked
    /// for `Release`, which anyone may call) nor `payee` is frozen; for `Create`,
    /// a non-zero `policyId` exists; for a money movement of a deal under `policyId` whose `basis`
    /// (the milestone amount) exceeds the policy's threshold, `clearance` is a valid, unexpired, unused clearance for (`msg.sender`, chain,
    /// `dealId`, `milestone`, `action`, `amount`), which is then spent.
    /// @param policyId The deal's policy (0: none).
    /// @param payer The account paying (zero: none checked).
    /// @param payee The account credited (zero: none checked).
    /// @param clearance `abi.encode(bytes32 decisionLeaf, uint64 deadline, uint256 nonce, bytes
    /// signature)`, or empty. The vault forwards whatever call data its caller appended after the
    /// ABI-encoded arguments of `fund`, `release` or `acceptFinancing` (as ERC-2771 appends a
    /// sender), so the vault's ABI is unchanged and a partner's own transaction carries the
    /// clearance exactly as the service's does.
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
    ) external;

    /// @notice The threshold of `policyId`, and whether it exists.
    function policy(uint256 policyId) external view returns (bool exists, uint256 threshold);

    /// @notice The current clearance signer.
    function clearanceSigner() external view returns (address);

    /// @notice When `account`'s freeze ends (0 or past: not frozen).
    function frozenUntil(address account) external view returns (uint256);

    /// @notice Whether `nonce` was used or cancelled for `vault`.
    function isNonceUsed(address vault, uint256 nonce) external view returns (bool);

    /// @notice The EIP-712 domain separator of clearances for `vault` on this chain.
    function domainSeparator(address vault) external view returns (bytes32);

    /// @notice The EIP-712 digest the clearance signer signs.
    function clearanceDigest(
        address vault,
        uint256 dealId,
        uint256 milestone,
        Action action,
        uint256 amount,
        bytes32 decisionLeaf,
        uint64 deadline,
        uint256 nonce
    ) external view returns (bytes32);
}
