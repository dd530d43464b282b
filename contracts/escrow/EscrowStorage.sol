// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";

import {IEscrowGate} from "../interfaces/IEscrowGate.sol";
import {ISupplyChainEscrow} from "../interfaces/ISupplyChainEscrow.sol";

/// @title EscrowStorage
/// @notice The state, constants and shared rules of the escrow vault. Two contracts inherit
/// it: {SupplyChainEscrow} (the vault: deals, funding, inspection, release, disputes,
/// financing acceptance, withdrawals, views) and {SupplyChainEscrowControls} (registries,
/// holds, release approvals, long-stop settlement, allow-list, pausing), which the vault
/// reaches by `delegatecall` so that both run on the vault's storage.
/// @dev Neither inheriting contract may declare a state variable of its own: the storage
/// layout is exactly the one declared here (immutables live in code and are not shared).
abstract contract EscrowStorage is
    ISupplyChainEscrow,
    AccessControlDefaultAdminRules,
    ReentrancyGuardTransient,
    EIP712
{
    /// @notice Role allowed to add and remove tokens from the allow-list.
    bytes32 public constant TOKEN_MANAGER_ROLE = keccak256("TOKEN_MANAGER_ROLE");
    /// @notice Role allowed to pause and unpause new business.
    bytes32 public constant PAUSER_ROLE = keccak256("PAUSER_ROLE");
    /// @notice Role allowed to place, renew and lift compliance holds.
    bytes32 public constant COMPLIANCE_ROLE = keccak256("COMPLIANCE_ROLE");
    /// @notice Role allowed to register inspectors and accredit arbiters.
    bytes32 public constant REGISTRAR_ROLE = keccak256("REGISTRAR_ROLE");

    /// @notice Maximum number of milestones per deal.
    uint256 public constant MAX_MILESTONES = 16;
    /// @notice Maximum number of inspectors per deal (their registry ids are packed in the deal).
    uint256 public constant MAX_INSPECTORS = 6;
    /// @notice Maximum number of release approvers per deal.
    uint256 public constant MAX_APPROVERS = 16;
    /// @notice Maximum length of one compliance hold (it can be renewed up to the hold cap).
    uint256 public constant MAX_HOLD_DURATION = 30 days;
    /// @notice Initial cap on the total time a milestone can be held.
    uint32 public constant DEFAULT_HOLD_CAP = 90 days;
    /// @notice Delay between the admin scheduling a higher hold cap and the cap applying.
    uint256 public constant HOLD_CAP_DELAY = 7 days;
    /// @notice Maximum inspection window and dispute timeout (and hold cap).
    uint256 public constant MAX_PERIOD = 365 days;
    /// @notice 100% in basis points.
    uint256 public constant BPS = 10_000;

    uint8 internal constant _FLAG_PROOF_REQUIRED = 1;
    uint8 internal constant _FLAG_PROOF_VERIFIED = 2;

    /// @dev Three slots. The token is stored as its allow-list id.
    struct Deal {
        // slot 0
        address buyer;
        uint16 tokenId;
        uint8 milestoneCount;
        uint8 inspectorCount;
        uint8 inspectorThreshold;
        uint8 approvalsRequired;
        uint16 defaultPayeeBps;
        uint32 inspectionWindow;
        // slot 1
        address supplier;
        uint40 longStop;
        uint32 disputeTimeout;
        uint16 policy; // EscrowGate compliance policy (0: none; issue 13)
        // slot 2
        address arbiter;
        uint96 inspectorIds; // registry id of inspector i in bits [16 i, 16 i + 16)
    }

    /// @dev Written only for deals naming a financier or requiring release approvals.
    struct Controls {
        address financier;
        uint96 approvalThreshold;
    }

    /// @dev One slot read and written by every new deal.
    struct Config {
        uint64 nextDealId;
        uint16 tokenCount;
        uint16 inspectorCount;
        bool paused;
        uint32 holdCap; // total hold seconds allowed per milestone
    }

    /// @dev A scheduled rise of the hold cap.
    struct HoldCapChange {
        uint32 cap;
        uint40 effectiveAt;
    }

    /// @dev One slot, written at creation.
    struct Milestone {
        uint96 amount;
        uint96 funded;
        uint40 dueDate;
        MilestoneStatus status;
        uint8 flags;
        uint8 attestations;
    }

    /// @dev One slot, written lazily (shipment, attestation, financing, holds).
    struct MilestoneState {
        address payee; // zero: the supplier
        uint40 stageAt;
        uint40 holdUntil;
        uint16 attested; // bitmap of inspector indexes
    }

    /// @dev `defaultBps` is the payee share applied if the arbiter has not ruled within the
    /// dispute timeout; `escalated` marks a milestone sent to the arbiter without a dispute
    /// (stuck approvals, long stop of an accepted or financed milestone).
    struct Dispute {
        address openedBy;
        uint40 openedAt;
        uint16 payeeBps;
        uint16 defaultBps;
        bool escalated;
    }

    struct ReleaseApproval {
        address initiator;
        uint16 approvedBitmap;
        uint8 approvals;
    }

    struct FinancingOffer {
        address financier;
        uint96 advance;
        uint40 expiresAt;
        bytes32 invoiceHash;
    }

    /// @dev One slot, read once per inspector when a deal names it.
    struct InspectorEntry {
        uint16 id;
        bool revoked; // new deals may not name it; existing deals keep it
    }

    struct TokenInfo {
        uint16 id;
        bool allowed;
    }

    // The state is shared by the two halves of the vault: a variable written by one half and
    // read by the other looks uninitialized to slither, which analyses each contract alone
    // (and it does not see the inline-assembly SSTOREs of {SupplyChainEscrow-_storeDeal} and
    // {SupplyChainEscrow-_createMilestones} as initializations). Every variable here is
    // written by one of {SupplyChainEscrow} and {SupplyChainEscrowControls}.
    // slither-disable-start uninitialized-state
    Config internal _config;
    HoldCapChange internal _pendingHoldCap;

    mapping(uint256 dealId => Deal) internal _deals;
    mapping(uint256 dealId => Milestone[MAX_MILESTONES]) internal _milestones;
    mapping(uint256 dealId => MilestoneState[MAX_MILESTONES]) internal _states;
    /// @dev Total seconds each milestone has been (or is scheduled to be) on hold; 8 per slot.
    mapping(uint256 dealId => uint32[MAX_MILESTONES]) internal _heldTotal;
    mapping(uint256 dealId => bytes32[MAX_MILESTONES]) internal _shippingDocs;
    mapping(uint256 dealId => bytes32[MAX_MILESTONES]) internal _proofLeaves;
    /// @dev Who must have signed each proof-gated record (issue 13).
    mapping(uint256 dealId => address[MAX_MILESTONES]) internal _proofSigners;
    mapping(uint256 dealId => bytes32[MAX_MILESTONES]) internal _holdReasons;
    mapping(uint256 dealId => Dispute[MAX_MILESTONES]) internal _disputes;
    mapping(uint256 dealId => ReleaseApproval[MAX_MILESTONES]) internal _approvals;
    mapping(uint256 dealId => FinancingOffer[MAX_MILESTONES]) internal _offers;
    mapping(uint256 dealId => Controls) internal _controls;
    /// @dev Approver index + 1 (0: not an approver).
    mapping(uint256 dealId => mapping(address account => uint256)) internal _approverIndex;
    mapping(address inspector => InspectorEntry) internal _inspectors;
    mapping(uint16 id => address) internal _inspectorById;
    mapping(address arbiter => bool) internal _accreditedArbiters;
    mapping(address account => mapping(address token => uint256)) internal _credits;
    /// @dev Invoice commitment => (dealId << 8 | milestone + 1) of the milestone declaring it.
    mapping(bytes32 commitment => uint256) internal _invoiceMilestone;
    mapping(bytes32 commitment => bool) internal _financedInvoices;
    mapping(address inspector => mapping(uint256 nonce => bool)) internal _usedNonces;
    mapping(address token => TokenInfo) internal _tokenInfo;
    mapping(uint16 tokenId => address) internal _tokens;
    /// @dev The compliance gate (clearances, freezes; issue 13); zero until
    /// {SupplyChainEscrowControls-setEscrowGate}, then fixed. Not a constant or an immutable:
    /// the admin sets it once after deployment (slither sees no write from the vault's half).
    // slither-disable-next-line constable-states
    IEscrowGate internal _gate;
    // slither-disable-end uninitialized-state

    constructor(address initialAdmin, uint48 adminTransferDelay)
        AccessControlDefaultAdminRules(adminTransferDelay, initialAdmin)
        EIP712("SupplyChainEscrow", "1")
    {}

    // ==========================================================================================
    // Shared rules
    // ==========================================================================================

    function _load(uint256 dealId, uint256 milestone) internal view returns (Deal storage deal, Milestone storage ms) {
        deal = _deals[dealId];
        if (deal.buyer == address(0)) revert SupplyChainEscrowUnknownDeal(dealId);
        if (milestone >= deal.milestoneCount) revert SupplyChainEscrowUnknownMilestone(dealId, milestone);
        ms = _milestones[dealId][milestone];
    }

    function _requireStatus(uint256 dealId, uint256 milestone, MilestoneStatus actual, MilestoneStatus expected)
        internal
        pure
    {
        if (actual != expected) revert SupplyChainEscrowInvalidStatus(dealId, milestone, actual);
    }

    function _requireProof(uint256 dealId, uint256 milestone, uint8 flags) internal pure {
        if (flags & (_FLAG_PROOF_REQUIRED | _FLAG_PROOF_VERIFIED) == _FLAG_PROOF_REQUIRED) {
            revert SupplyChainEscrowProofRequired(dealId, milestone);
        }
    }

    /// @dev Returns true when the milestone is only deemed accepted (window passed).
    function _requireAccepted(
        Deal storage deal,
        uint256 dealId,
        uint256 milestone,
        Milestone memory m,
        uint40 inspectedAt
    ) internal view returns (bool deemed) {
        if (m.status == MilestoneStatus.Accepted) return false;
        if (m.status != MilestoneStatus.Inspected) revert SupplyChainEscrowInvalidStatus(dealId, milestone, m.status);
        uint256 windowEnd = uint256(inspectedAt) + deal.inspectionWindow;
        // slither-disable-next-line timestamp
        if (block.timestamp <= windowEnd) revert SupplyChainEscrowWindowOpen(dealId, milestone, windowEnd);
        _requireProof(dealId, milestone, m.flags);
        return true;
    }

    function _requireFinanceable(uint256 dealId, uint256 milestone, MilestoneStatus status) internal view {
        if (_isFinal(status) || status == MilestoneStatus.Disputed) {
            revert SupplyChainEscrowInvalidStatus(dealId, milestone, status);
        }
        MilestoneState memory st = _states[dealId][milestone];
        if (st.payee != address(0)) revert SupplyChainEscrowAlreadyFinanced(dealId, milestone, st.payee);
        // slither-disable-next-line timestamp
        if (st.holdUntil > block.timestamp) revert SupplyChainEscrowOnHold(dealId, milestone, st.holdUntil);
    }

    function _isFinal(MilestoneStatus status) internal pure returns (bool) {
        return status >= MilestoneStatus.Released;
    }

    function _requireNotPaused() internal view {
        if (_config.paused) revert SupplyChainEscrowPaused();
    }

    function _needsApproval(Deal storage deal, uint256 dealId, uint256 amount) internal view returns (bool) {
        return deal.approvalsRequired != 0 && amount > _controls[dealId].approvalThreshold;
    }

    /// @dev Whether the milestone's approvals (when its amount needs them) are missing.
    function _approvalsMissing(Deal storage deal, uint256 dealId, uint256 milestone, uint256 amount)
        internal
        view
        returns (bool)
    {
        return _needsApproval(deal, dealId, amount) && _approvals[dealId][milestone].approvals < deal.approvalsRequired;
    }

    /// @dev Whether the milestone is accepted, or deemed accepted: inspected, its inspection
    /// window over, and its record proven when it has a proof gate.
    function _isAccepted(Deal storage deal, Milestone memory m, uint40 inspectedAt) internal view returns (bool) {
        if (m.status == MilestoneStatus.Accepted) return true;
        // slither-disable-next-line timestamp
        return m.status == MilestoneStatus.Inspected && block.timestamp > uint256(inspectedAt) + deal.inspectionWindow
            && m.flags & (_FLAG_PROOF_REQUIRED | _FLAG_PROOF_VERIFIED) != _FLAG_PROOF_REQUIRED;
    }

    /// @dev The deal's long stop pushed back by the milestone's total hold time.
    function _longStopOf(Deal storage deal, uint256 dealId, uint256 milestone) internal view returns (uint256) {
        return uint256(deal.longStop) + _heldTotal[dealId][milestone];
    }

    /// @dev The payee: the financier once financed, else the supplier.
    function _payeeOf(Deal storage deal, address statePayee) internal view returns (address) {
        return statePayee == address(0) ? deal.supplier : statePayee;
    }

    /// @dev The registry key of an invoice: bound to the deal's supplier and buyer, so that no
    /// outsider can declare (squat) another pair's invoice.
    function _invoiceCommitment(address supplier, address buyer, bytes32 invoiceHash) internal pure returns (bytes32) {
        return keccak256(abi.encode(supplier, buyer, invoiceHash));
    }

    /// @dev The registry value of the milestone declaring an invoice (never zero).
    function _invoiceSlotOf(uint256 dealId, uint256 milestone) internal pure returns (uint256) {
        return dealId << 8 | (milestone + 1);
    }

    /// @dev Checks that `invoiceHash` is the invoice declared for the milestone at creation and
    /// returns its commitment.
    function _requireDeclaredInvoice(Deal storage deal, uint256 dealId, uint256 milestone, bytes32 invoiceHash)
        internal
        view
        returns (bytes32 commitment)
    {
        commitment = _invoiceCommitment(deal.supplier, deal.buyer, invoiceHash);
        if (invoiceHash == bytes32(0) || _invoiceMilestone[commitment] != _invoiceSlotOf(dealId, milestone)) {
            revert SupplyChainEscrowInvoiceNotDeclared(dealId, milestone, invoiceHash);
        }
    }

    /// @dev Closes a milestone by crediting its whole escrowed amount to its payee.
    function _releaseTo(Deal storage deal, Milestone storage ms, uint256 dealId, uint256 milestone, address payee, uint256 funded)
        internal
    {
        ms.status = MilestoneStatus.Released;
        _credits[payee][_tokens[deal.tokenId]] += funded;
        emit MilestoneReleased(dealId, milestone, payee, msg.sender, funded);
    }

    /// @dev Sends a milestone to the arbiter without a dispute; `defaultBps` applies if the
    /// arbiter does not rule within the deal's dispute timeout.
    function _escalate(Milestone storage ms, uint256 dealId, uint256 milestone, uint16 defaultBps) internal {
        ms.status = MilestoneStatus.Disputed;
        _disputes[dealId][milestone] = Dispute({
            openedBy: msg.sender,
            openedAt: uint40(block.timestamp),
            payeeBps: 0,
            defaultBps: defaultBps,
            escalated: true
        });
        delete _approvals[dealId][milestone];
        emit MilestoneEscalated(dealId, milestone, msg.sender, defaultBps);
    }
}
