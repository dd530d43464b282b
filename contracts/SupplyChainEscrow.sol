// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";

import {IAuditAnchor} from "./interfaces/IAuditAnchor.sol";
import {IEscrowGate} from "./interfaces/IEscrowGate.sol";
import {EscrowStorage} from "./escrow/EscrowStorage.sol";
import {SupplyChainEscrowControls} from "./SupplyChainEscrowControls.sol";

/// @title SupplyChainEscrow
/// @notice One vault holding many supply-chain-finance deals. A buyer escrows an allow-listed
/// ERC-20 token milestone by milestone; the supplier ships; k-of-n accredited inspectors
/// attest; the buyer accepts (or the milestone is deemed accepted when its inspection window
/// passes without a dispute); the funds are then credited to the payee: the supplier, or the
/// financier that bought the claim. Every milestone has an exit: disputes settled by an
/// accredited arbiter in basis points, a default outcome after the dispute timeout, and the
/// long stop: a milestone neither accepted nor financed is refunded to the buyer; an accepted
/// one is paid to its payee, or goes to the arbiter (default: the payee) when a hold or missing
/// approvals stand in the way; a financed one not accepted goes to the arbiter.
///
/// @dev Design choices:
/// - Pull payments: releases, settlements, refunds and financing advances credit a balance per
///   (account, token); {withdraw} pays it out. A payee that cannot receive tokens only blocks
///   its own withdrawal.
/// - Only the buyer funds a deal, so a refund always goes back to whoever paid.
/// - Financing: an invoice is declared per milestone at creation and registered under a
///   commitment to (supplier, buyer, invoice hash), unique across deals; only the milestone's
///   payee offers its claim ({offerFinancing}) under that invoice; the financier takes it with
///   {acceptFinancing}, paying the advance (credited to the supplier) in the same transaction,
///   and takes over the payee's right to dispute.
/// - No party approves its own deal; a stuck release request can be withdrawn and re-made,
///   and after the approval deadline the payee can escalate it to the arbiter.
/// - Holds are bounded: a milestone's total hold time is capped (a vault setting the admin can
///   raise only with a delay) and pushes the milestone's long stop back by as much.
/// - No role can move deal funds: there is no sweep, no upgrade and no admin transfer path.
///   Pausing stops new deals, funding and financing only; withdrawals, releases, refunds,
///   disputes and rulings keep working.
/// - Fee-on-transfer tokens are refused at every deposit (the vault's balance must rise by
///   exactly the amount sent); tokens declaring a rebasing share interface are refused at
///   allow-listing.
/// - Split for EIP-170: the registries, holds, approvals, long-stop settlement, financing
///   offers and administration live in {SupplyChainEscrowControls}, deployed by the
///   constructor and reached by `delegatecall` from thin forwarders here, on this contract's
///   storage ({EscrowStorage}). `fund`, `acceptFinancing` and `release` stay here.
/// - Storage is packed for gas: a deal takes three slots (its inspectors are ids of the
///   inspector registry, packed in the deal), a milestone one slot at creation (a second is
///   written lazily from shipment on). The pause flag shares a slot with the deal counter, so
///   opening a deal reads and writes that slot once.
contract SupplyChainEscrow is EscrowStorage {
    using SafeERC20 for IERC20;

    /// @notice EIP-712 type of a relayed inspector attestation.
    bytes32 public constant ATTESTATION_TYPEHASH = keccak256(
        "InspectionAttestation(address inspector,uint256 dealId,uint256 milestone,bytes32 reportHash,uint256 nonce,uint256 deadline)"
    );

    /// @dev chainaudit's record signature (chainaudit/signing.py), checked by {proveRecord}.
    bytes32 private constant _RECORD_DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId)");
    bytes32 private constant _RECORD_NAME_HASH = keccak256("chainaudit");
    bytes32 private constant _RECORD_VERSION_HASH = keccak256("1");
    bytes32 private constant _RECORD_TYPEHASH = keccak256("AuditRecord(string id,bytes32 leafHash)");

    IAuditAnchor private immutable _anchor;
    /// @dev The controls half of the vault, deployed by the constructor and reached by
    /// `delegatecall` (it runs on this contract's storage).
    address private immutable _controlsModule;

    /// @param initialAdmin Holder of `DEFAULT_ADMIN_ROLE` (grants the other roles).
    /// @param adminTransferDelay Delay of a default-admin transfer (AccessControlDefaultAdminRules).
    /// @param anchor The AuditAnchor used by proof-gated milestones (zero: no proof gates).
    constructor(address initialAdmin, uint48 adminTransferDelay, IAuditAnchor anchor)
        EscrowStorage(initialAdmin, adminTransferDelay)
    {
        _anchor = anchor;
        _controlsModule = address(new SupplyChainEscrowControls());
        // Start at 1 so that id 0 never names a deal, and so that the first deal pays for a
        // non-zero to non-zero counter update like every other.
        _config.nextDealId = 1;
        _config.holdCap = DEFAULT_HOLD_CAP;
    }

    // ==========================================================================================
    // Deals
    // ==========================================================================================

    /// @notice Opens a deal; the caller is the buyer.
    /// @dev Requirements:
    /// - not paused; `params.token` allow-listed;
    /// - 1 to {MAX_MILESTONES} milestones, each with a non-zero amount and document hash and a
    ///   due date in the future such that `dueDate + inspectionWindow <= params.longStop` (an
    ///   inspection on time has its whole window before the long stop);
    /// - supplier, arbiter (and financier when set) non-zero and distinct from the buyer and
    ///   from each other; the arbiter accredited by the registrar ({setArbiterAccredited});
    /// - 1 to {MAX_INSPECTORS} distinct registered inspectors ({registerInspector}), none of
    ///   them a named party, and 1 <= threshold <= inspectors;
    /// - approvers: none with `approvalsRequired == 0`, else 1 <= approvalsRequired <= approvers
    ///   <= {MAX_APPROVERS}, distinct, none the buyer, the supplier or the financier (no party
    ///   approves its own deal);
    /// - 0 < inspectionWindow, disputeTimeout <= {MAX_PERIOD}; defaultPayeeBps <= {BPS};
    /// - a milestone with a proof leaf needs an anchor;
    /// - a declared invoice hash not yet declared by any deal between the same supplier and
    ///   buyer (nor twice in this one).
    /// Emits {DealCreated}, {DealControlsSet} when a financier or approvers are named, one
    /// {MilestoneCreated} per milestone, one {ProofGateSet} per proof-gated milestone and one
    /// {InvoiceDeclared} per declared invoice.
    /// @return dealId The new deal's id (ids start at 1).
    function createDeal(DealParams calldata params, MilestoneParams[] calldata milestones)
        external
        returns (uint256 dealId)
    {
        Config memory config = _config;
        if (config.paused) revert SupplyChainEscrowPaused();
        uint256 count = milestones.length;
        if (count == 0 || count > MAX_MILESTONES) revert SupplyChainEscrowInvalidMilestoneCount(count);
        TokenInfo memory info = _tokenInfo[params.token];
        if (!info.allowed) revert SupplyChainEscrowTokenNotAllowed(params.token);
        _checkTerms(params);
        address buyer = msg.sender;
        _checkNamedParties(buyer, params.supplier, params.arbiter, params.financier);
        // EscrowGate hook (issue 13): a known policy, neither the buyer nor the supplier frozen.
        _requireClearance(IEscrowGate.Action.Create, params.policy, 0, 0, params.supplier);
        if (!_accreditedArbiters[params.arbiter]) revert SupplyChainEscrowArbiterNotAccredited(params.arbiter);
        uint96 inspectorIds = _inspectorIdsOf(buyer, params);

        dealId = config.nextDealId;
        config.nextDealId = uint64(dealId + 1);
        _config = config;
        _storeDeal(dealId, buyer, info.id, inspectorIds, uint8(count), params);
        if (params.financier != address(0) || params.approvalsRequired != 0) {
            _registerControls(dealId, buyer, params);
        }
        _createMilestones(dealId, buyer, params, milestones);
    }

    function _storeDeal(
        uint256 dealId,
        address buyer,
        uint16 tokenId,
        uint96 inspectorIds,
        uint8 count,
        DealParams calldata params
    ) private {
        // One SSTORE per slot (the struct literal would read-modify-write each field); the
        // layout is the declaration order of {Deal}.
        uint256 word0 = uint256(uint160(buyer)) | uint256(tokenId) << 160 | uint256(count) << 176
            | uint256(params.inspectors.length) << 184 | uint256(params.inspectorThreshold) << 192
            | uint256(params.approvalsRequired) << 200 | uint256(params.defaultPayeeBps) << 208
            | uint256(params.inspectionWindow) << 224;
        uint256 word1 = uint256(uint160(params.supplier)) | uint256(params.longStop) << 160
            | uint256(params.disputeTimeout) << 200 | uint256(params.policy) << 232;
        uint256 word2 = uint256(uint160(params.arbiter)) | uint256(inspectorIds) << 160;
        Deal storage deal = _deals[dealId];
        // slither-disable-next-line assembly
        assembly ("memory-safe") {
            let slot := deal.slot
            sstore(slot, word0)
            sstore(add(slot, 1), word1)
            sstore(add(slot, 2), word2)
        }
        emit DealCreated(
            dealId, buyer, params.supplier, params.token, params.arbiter, params.inspectors, params.inspectorThreshold
        );
    }

    function _checkTerms(DealParams calldata params) private view {
        uint256 inspectors = params.inspectors.length;
        if (inspectors == 0 || inspectors > MAX_INSPECTORS || params.inspectorThreshold == 0
            || params.inspectorThreshold > inspectors) {
            revert SupplyChainEscrowInvalidInspectorSet(inspectors, params.inspectorThreshold);
        }
        uint256 approvers = params.approvers.length;
        if (approvers > MAX_APPROVERS || params.approvalsRequired > approvers
            || (params.approvalsRequired == 0) != (approvers == 0)) {
            revert SupplyChainEscrowInvalidApprovalPolicy(approvers, params.approvalsRequired);
        }
        if (params.inspectionWindow == 0 || params.inspectionWindow > MAX_PERIOD) {
            revert SupplyChainEscrowInvalidDuration(params.inspectionWindow);
        }
        if (params.disputeTimeout == 0 || params.disputeTimeout > MAX_PERIOD) {
            revert SupplyChainEscrowInvalidDuration(params.disputeTimeout);
        }
        if (params.defaultPayeeBps > BPS) revert SupplyChainEscrowInvalidBps(params.defaultPayeeBps);
        // slither-disable-next-line timestamp
        if (params.longStop <= block.timestamp) revert SupplyChainEscrowInvalidLongStop(params.longStop);
    }

    function _checkNamedParties(address buyer, address supplier, address arbiter, address financier) private pure {
        if (supplier == address(0) || arbiter == address(0)) revert SupplyChainEscrowZeroAddress();
        if (supplier == buyer) revert SupplyChainEscrowDuplicateParty(supplier);
        if (arbiter == buyer || arbiter == supplier) revert SupplyChainEscrowDuplicateParty(arbiter);
        if (financier != address(0) && (financier == buyer || financier == supplier || financier == arbiter)) {
            revert SupplyChainEscrowDuplicateParty(financier);
        }
    }

    /// @dev Packs the registry ids of the deal's inspectors, checking that each is registered,
    /// distinct, and none of the named parties.
    function _inspectorIdsOf(address buyer, DealParams calldata params) private view returns (uint96 packed) {
        uint256 n = params.inspectors.length;
        for (uint256 i; i < n; ++i) {
            address inspector = params.inspectors[i];
            if (inspector == address(0)) revert SupplyChainEscrowZeroAddress();
            if (inspector == buyer || inspector == params.supplier || inspector == params.arbiter
                || inspector == params.financier) revert SupplyChainEscrowDuplicateParty(inspector);
            InspectorEntry memory entry = _inspectors[inspector];
            if (entry.id == 0 || entry.revoked) revert SupplyChainEscrowInspectorNotRegistered(inspector);
            uint96 id = entry.id;
            for (uint256 j; j < i; ++j) {
                if (uint16(packed >> (16 * j)) == id) revert SupplyChainEscrowDuplicateParty(inspector);
            }
            packed |= uint96(uint256(id) << (16 * i)); // i < 6: fits in 96 bits
        }
    }

    function _registerControls(uint256 dealId, address buyer, DealParams calldata params) private {
        _controls[dealId] = Controls({financier: params.financier, approvalThreshold: params.approvalThreshold});
        uint256 n = params.approvers.length;
        for (uint256 i; i < n; ++i) {
            address approver = params.approvers[i];
            if (approver == address(0)) revert SupplyChainEscrowZeroAddress();
            if (approver == buyer || approver == params.supplier || approver == params.financier
                || _approverIndex[dealId][approver] != 0) {
                revert SupplyChainEscrowDuplicateParty(approver);
            }
            _approverIndex[dealId][approver] = i + 1;
        }
        emit DealControlsSet(
            dealId, params.financier, params.approvalThreshold, params.approvalsRequired, params.approvers
        );
    }

    function _createMilestones(
        uint256 dealId,
        address buyer,
        DealParams calldata params,
        MilestoneParams[] calldata milestones
    ) private {
        Milestone[MAX_MILESTONES] storage slots = _milestones[dealId];
        // the long stop is a future timestamp, far above any window (<= 365 days)
        uint256 lastDue = uint256(params.longStop) - params.inspectionWindow;
        uint256 count = milestones.length;
        for (uint256 i; i < count; ++i) {
            MilestoneParams calldata p = milestones[i];
            if (p.amount == 0) revert SupplyChainEscrowZeroAmount();
            if (p.documentHash == bytes32(0)) revert SupplyChainEscrowZeroHash();
            // slither-disable-next-line timestamp
            if (p.dueDate <= block.timestamp || p.dueDate > lastDue) {
                revert SupplyChainEscrowInvalidDueDate(i, p.dueDate);
            }
            uint8 flags;
            if (p.proofLeaf != bytes32(0)) {
                if (address(_anchor) == address(0)) revert SupplyChainEscrowNoAnchor();
                if (p.proofSigner == address(0)) revert SupplyChainEscrowZeroAddress();
                _proofLeaves[dealId][i] = p.proofLeaf;
                _proofSigners[dealId][i] = p.proofSigner;
                flags = _FLAG_PROOF_REQUIRED;
            }
            // One SSTORE (layout: declaration order of {Milestone}; funded = attestations = 0).
            uint256 word = uint256(p.amount) | uint256(p.dueDate) << 192
                | uint256(uint8(MilestoneStatus.Open)) << 232 | uint256(flags) << 240;
            Milestone storage slot = slots[i];
            // slither-disable-next-line assembly
            assembly ("memory-safe") {
                sstore(slot.slot, word)
            }
            emit MilestoneCreated(dealId, i, p.amount, p.dueDate, p.documentHash);
            // after MilestoneCreated, so that a reader replaying events knows the milestone
            if (flags != 0) emit ProofGateSet(dealId, i, p.proofLeaf, p.proofSigner);
            if (p.invoiceHash != bytes32(0)) _declareInvoice(dealId, i, buyer, params.supplier, p.invoiceHash);
        }
    }

    function _declareInvoice(uint256 dealId, uint256 milestone, address buyer, address supplier, bytes32 invoiceHash)
        private
    {
        bytes32 commitment = _invoiceCommitment(supplier, buyer, invoiceHash);
        if (_invoiceMilestone[commitment] != 0) revert SupplyChainEscrowInvoiceAlreadyDeclared(invoiceHash);
        _invoiceMilestone[commitment] = _invoiceSlotOf(dealId, milestone);
        emit InvoiceDeclared(dealId, milestone, invoiceHash, commitment);
    }

    // ==========================================================================================
    // Funding, shipment, inspection, acceptance
    // ==========================================================================================

    /// @notice Escrows `amount` of the deal's token for a milestone; partial funding is allowed
    /// until the milestone is fully funded.
    /// @dev Requirements: not paused; caller is the buyer; milestone `Open`; long-stop date not
    /// passed; 0 < amount <= unfunded remainder; the vault's balance rises by exactly `amount`
    /// (fee-on-transfer tokens are refused); the caller approved the vault.
    /// Issue 13, when the vault has a gate: the buyer is not frozen and, for a deal under a
    /// compliance policy whose milestone amount exceeds the policy's threshold, the call data
    /// carries a clearance after the arguments (see {IEscrowGate-checkAction}).
    /// Emits {MilestoneFunded}.
    function fund(uint256 dealId, uint256 milestone, uint256 amount) external nonReentrant {
        _requireNotPaused();
        (Deal storage deal, Milestone storage ms) = _load(dealId, milestone);
        if (msg.sender != deal.buyer) revert SupplyChainEscrowUnauthorized(dealId, msg.sender, Party.Buyer);
        Milestone memory m = ms;
        if (m.status != MilestoneStatus.Open) revert SupplyChainEscrowInvalidStatus(dealId, milestone, m.status);
        if (amount == 0) revert SupplyChainEscrowZeroAmount();
        uint256 remaining = m.amount - m.funded;
        if (amount > remaining) revert SupplyChainEscrowExceedsAmount(dealId, milestone, remaining, amount);
        uint256 longStop = deal.longStop;
        // slither-disable-next-line timestamp
        if (block.timestamp > longStop) revert SupplyChainEscrowLongStopPassed(dealId, longStop);
        _requireClearance(IEscrowGate.Action.Fund, deal.policy, m.amount, amount, address(0));

        uint96 fundedTotal = m.funded + uint96(amount); // amount <= remaining < 2**96
        ms.funded = fundedTotal;
        if (fundedTotal == m.amount) ms.status = MilestoneStatus.Funded;
        emit MilestoneFunded(dealId, milestone, msg.sender, amount, fundedTotal);

        _pullExact(_tokens[deal.tokenId], amount);
    }

    /// @notice Declares the shipment of a fully funded milestone.
    /// @dev Requirements: caller is the supplier; milestone `Funded`; `documentHash` (bill of
    /// lading, delivery note) non-zero. Emits {MilestoneShipped}.
    function markShipped(uint256 dealId, uint256 milestone, bytes32 documentHash) external {
        (Deal storage deal, Milestone storage ms) = _load(dealId, milestone);
        if (msg.sender != deal.supplier) revert SupplyChainEscrowUnauthorized(dealId, msg.sender, Party.Supplier);
        _requireStatus(dealId, milestone, ms.status, MilestoneStatus.Funded);
        if (documentHash == bytes32(0)) revert SupplyChainEscrowZeroHash();

        ms.status = MilestoneStatus.Shipped;
        _states[dealId][milestone].stageAt = uint40(block.timestamp);
        _shippingDocs[dealId][milestone] = documentHash;
        emit MilestoneShipped(dealId, milestone, msg.sender, documentHash);
    }

    /// @notice Records the caller's inspection attestation for a shipped milestone.
    /// @dev Requirements: caller is an inspector of the deal; milestone `Shipped`; the caller
    /// has not attested it yet; `reportHash` non-zero. Emits {InspectionAttested}, and
    /// {MilestoneInspected} when the threshold is reached.
    function attestInspection(uint256 dealId, uint256 milestone, bytes32 reportHash) external {
        _attest(dealId, milestone, msg.sender, reportHash);
    }

    /// @notice Records an inspector's attestation signed off-chain (EIP-712) and relayed by
    /// anyone.
    /// @dev The signature binds the chain id and this contract (domain separator), the deal, the
    /// milestone, the report hash, a nonce and a deadline. ERC-1271 inspectors are supported.
    /// Requirements: `block.timestamp <= deadline`; `nonce` unused for `inspector`; valid
    /// signature by `inspector`; then as {attestInspection}.
    /// Emits {InspectionAttested}, and {MilestoneInspected} when the threshold is reached.
    function attestInspectionBySig(
        uint256 dealId,
        uint256 milestone,
        address inspector,
        bytes32 reportHash,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external {
        // slither-disable-next-line timestamp
        if (block.timestamp > deadline) revert SupplyChainEscrowSignatureExpired(deadline);
        if (_usedNonces[inspector][nonce]) revert SupplyChainEscrowNonceUsed(inspector, nonce);
        bytes32 digest = _hashTypedDataV4(
            keccak256(abi.encode(ATTESTATION_TYPEHASH, inspector, dealId, milestone, reportHash, nonce, deadline))
        );
        if (!SignatureChecker.isValidSignatureNow(inspector, digest, signature)) {
            revert SupplyChainEscrowInvalidSignature(inspector);
        }
        _usedNonces[inspector][nonce] = true;
        _attest(dealId, milestone, inspector, reportHash);
    }

    /// @notice Cancels one of the caller's unused attestation nonces, voiding any signature
    /// made with it. Emits {AttestationNonceInvalidated}.
    function invalidateAttestationNonce(uint256 nonce) external {
        if (_usedNonces[msg.sender][nonce]) revert SupplyChainEscrowNonceUsed(msg.sender, nonce);
        _usedNonces[msg.sender][nonce] = true;
        emit AttestationNonceInvalidated(msg.sender, nonce);
    }

    function _attest(uint256 dealId, uint256 milestone, address inspector, bytes32 reportHash) private {
        (Deal storage deal, Milestone storage ms) = _load(dealId, milestone);
        uint256 index = _inspectorIndex(deal, inspector);
        if (index == 0) revert SupplyChainEscrowUnauthorized(dealId, inspector, Party.Inspector);
        _requireStatus(dealId, milestone, ms.status, MilestoneStatus.Shipped);
        if (reportHash == bytes32(0)) revert SupplyChainEscrowZeroHash();
        MilestoneState storage st = _states[dealId][milestone];
        uint16 bit = uint16(1 << (index - 1));
        if (st.attested & bit != 0) revert SupplyChainEscrowAlreadyAttested(dealId, milestone, inspector);

        st.attested |= bit;
        uint8 attestations = ms.attestations + 1;
        ms.attestations = attestations;
        emit InspectionAttested(dealId, milestone, inspector, reportHash, attestations);
        if (attestations == deal.inspectorThreshold) {
            ms.status = MilestoneStatus.Inspected;
            st.stageAt = uint40(block.timestamp);
            emit MilestoneInspected(dealId, milestone, block.timestamp + deal.inspectionWindow);
        }
    }

    /// @notice Proves that the milestone's required record leaf is included in an anchored
    /// checkpoint of the AuditAnchor and was signed by the milestone's proof signer; anyone may
    /// submit the proof.
    /// @dev Requirements: the milestone requires a proof and is not final; the anchor's
    /// `verifyInclusion(checkpointSeq, leafIndex, leaf, proof)` returns true; `signature` is the
    /// proof signer's EIP-712 signature of the record (`AuditRecord(string id,bytes32
    /// leafHash)` with `recordId` and the leaf, domain `{name: "chainaudit", version: "1",
    /// chainId}`: chainaudit's record signature), ERC-1271 signers included (issue 13: the
    /// anchorer's key alone cannot pass a proof gate). Emits {RecordProven}.
    function proveRecord(
        uint256 dealId,
        uint256 milestone,
        uint256 checkpointSeq,
        uint256 leafIndex,
        bytes32[] calldata proof,
        string calldata recordId,
        bytes calldata signature
    ) external {
        (, Milestone storage ms) = _load(dealId, milestone);
        Milestone memory m = ms;
        if (m.flags & _FLAG_PROOF_REQUIRED == 0) revert SupplyChainEscrowProofNotRequired(dealId, milestone);
        if (_isFinal(m.status)) revert SupplyChainEscrowInvalidStatus(dealId, milestone, m.status);
        bytes32 leaf = _proofLeaves[dealId][milestone];
        if (!_anchor.verifyInclusion(checkpointSeq, leafIndex, leaf, proof)) {
            revert SupplyChainEscrowProofRejected(dealId, milestone, checkpointSeq, leafIndex);
        }
        address signer = _proofSigners[dealId][milestone];
        bytes32 digest = MessageHashUtils.toTypedDataHash(
            keccak256(abi.encode(_RECORD_DOMAIN_TYPEHASH, _RECORD_NAME_HASH, _RECORD_VERSION_HASH, block.chainid)),
            keccak256(abi.encode(_RECORD_TYPEHASH, keccak256(bytes(recordId)), leaf))
        );
        if (!SignatureChecker.isValidSignatureNow(signer, digest, signature)) {
            revert SupplyChainEscrowInvalidSignature(signer);
        }
        ms.flags = m.flags | _FLAG_PROOF_VERIFIED;
        emit RecordProven(dealId, milestone, msg.sender, leaf, checkpointSeq, leafIndex);
    }

    /// @notice Accepts an inspected milestone.
    /// @dev Requirements: caller is the buyer; milestone `Inspected`; its record proven when the
    /// milestone has a proof gate. Emits {MilestoneAccepted}.
    function acceptMilestone(uint256 dealId, uint256 milestone) external {
        (Deal storage deal, Milestone storage ms) = _load(dealId, milestone);
        if (msg.sender != deal.buyer) revert SupplyChainEscrowUnauthorized(dealId, msg.sender, Party.Buyer);
        Milestone memory m = ms;
        _requireStatus(dealId, milestone, m.status, MilestoneStatus.Inspected);
        _requireProof(dealId, milestone, m.flags);
        ms.status = MilestoneStatus.Accepted;
        emit MilestoneAccepted(dealId, milestone, msg.sender, false);
    }

    // ==========================================================================================
    // Release (with maker-checker approvals)
    // ==========================================================================================

    /// @notice Credits an accepted (or deemed accepted) milestone to its payee; anyone may call.
    /// @dev Requirements: milestone `Accepted`, or `Inspected` with its inspection window
    /// passed and its record proven when gated; no active compliance hold; enough approvals
    /// when the amount exceeds the deal's approval threshold. Works while paused.
    /// Issue 13, when the vault has a gate: the payee is not frozen and, for a deal under a
    /// compliance policy whose milestone amount exceeds the policy's threshold, the call data
    /// carries a clearance after the arguments (see {IEscrowGate-checkAction}). Without one, the
    /// milestone still has its exit: {settleAfterLongStop} sends it to the arbiter.
    /// Emits {MilestoneAccepted} (deemed) when applicable, then {MilestoneReleased}.
    function release(uint256 dealId, uint256 milestone) external {
        (Deal storage deal, Milestone storage ms) = _load(dealId, milestone);
        Milestone memory m = ms;
        MilestoneState memory st = _states[dealId][milestone];
        bool deemed = _requireAccepted(deal, dealId, milestone, m, st.stageAt);
        // slither-disable-next-line timestamp
        if (st.holdUntil > block.timestamp) revert SupplyChainEscrowOnHold(dealId, milestone, st.holdUntil);
        if (_needsApproval(deal, dealId, m.amount)) {
            uint256 approvals = _approvals[dealId][milestone].approvals;
            if (approvals < deal.approvalsRequired) {
                revert SupplyChainEscrowApprovalsMissing(dealId, milestone, approvals, deal.approvalsRequired);
            }
        }
        address payee = _payeeOf(deal, st.payee);
        _requireClearance(IEscrowGate.Action.Release, deal.policy, m.amount, m.funded, payee);
        if (deemed) emit MilestoneAccepted(dealId, milestone, msg.sender, true);
        _releaseTo(deal, ms, dealId, milestone, payee, m.funded);
    }

    // ==========================================================================================
    // Disputes and long-stop refunds
    // ==========================================================================================

    /// @notice Opens a dispute on a milestone, freezing it (and only it).
    /// @dev The right to dispute belongs to the buyer and to the payee: the supplier, or, once
    /// the claim is financed, the financier (the supplier sold it). Requirements: caller is the
    /// buyer or the payee; milestone `Funded` or `Shipped` before its long stop (the deal's,
    /// pushed back by the milestone's hold time), or `Inspected` within its inspection window
    /// (even past the long stop: the window always runs in full); `reasonHash` non-zero.
    /// Compliance holds and pausing do not block disputes. Emits {DisputeOpened}.
    function openDispute(uint256 dealId, uint256 milestone, bytes32 reasonHash) external {
        (Deal storage deal, Milestone storage ms) = _load(dealId, milestone);
        MilestoneState memory st = _states[dealId][milestone];
        if (msg.sender != deal.buyer && msg.sender != _payeeOf(deal, st.payee)) {
            revert SupplyChainEscrowUnauthorized(dealId, msg.sender, Party.BuyerOrPayee);
        }
        if (reasonHash == bytes32(0)) revert SupplyChainEscrowZeroHash();
        MilestoneStatus status = ms.status;
        if (status == MilestoneStatus.Inspected) {
            uint256 windowEnd = uint256(st.stageAt) + deal.inspectionWindow;
            // slither-disable-next-line timestamp
            if (block.timestamp > windowEnd) revert SupplyChainEscrowWindowClosed(dealId, milestone, windowEnd);
        } else if (status == MilestoneStatus.Funded || status == MilestoneStatus.Shipped) {
            uint256 longStop = _longStopOf(deal, dealId, milestone);
            // slither-disable-next-line timestamp
            if (block.timestamp > longStop) revert SupplyChainEscrowLongStopPassed(dealId, longStop);
        } else {
            revert SupplyChainEscrowInvalidStatus(dealId, milestone, status);
        }

        ms.status = MilestoneStatus.Disputed;
        _disputes[dealId][milestone] = Dispute({
            openedBy: msg.sender,
            openedAt: uint40(block.timestamp),
            payeeBps: 0,
            defaultBps: deal.defaultPayeeBps,
            escalated: false
        });
        emit DisputeOpened(dealId, milestone, msg.sender, reasonHash);
    }

    /// @notice Settles a dispute: `payeeBps` of the escrowed funds go to the payee, the rest
    /// back to the buyer.
    /// @dev Requirements: caller is the deal's arbiter; milestone `Disputed`;
    /// `payeeBps <= 10000`. Works while paused and under a compliance hold.
    /// Emits {DisputeSettled}.
    function resolveDispute(uint256 dealId, uint256 milestone, uint16 payeeBps, bytes32 rulingHash) external {
        (Deal storage deal, Milestone storage ms) = _load(dealId, milestone);
        if (msg.sender != deal.arbiter) revert SupplyChainEscrowUnauthorized(dealId, msg.sender, Party.Arbiter);
        if (payeeBps > BPS) revert SupplyChainEscrowInvalidBps(payeeBps);
        _requireStatus(dealId, milestone, ms.status, MilestoneStatus.Disputed);
        _settle(deal, ms, dealId, milestone, payeeBps, false, rulingHash);
    }

    /// @notice Applies the default outcome to a dispute or escalation that outlived the deal's
    /// dispute timeout; anyone may call. The default is the deal's `defaultPayeeBps` for a
    /// dispute, and the one fixed at escalation ({MilestoneEscalated}: the whole amount to the
    /// payee of an accepted milestone) for an escalation.
    /// @dev Requirements: milestone `Disputed` for longer than the deal's dispute timeout.
    /// Emits {DisputeSettled} with `byDefault` set.
    function applyDisputeTimeout(uint256 dealId, uint256 milestone) external {
        (Deal storage deal, Milestone storage ms) = _load(dealId, milestone);
        _requireStatus(dealId, milestone, ms.status, MilestoneStatus.Disputed);
        Dispute memory d = _disputes[dealId][milestone];
        uint256 endsAt = uint256(d.openedAt) + deal.disputeTimeout;
        // slither-disable-next-line timestamp
        if (block.timestamp <= endsAt) revert SupplyChainEscrowDisputeTimeoutPending(dealId, milestone, endsAt);
        _settle(deal, ms, dealId, milestone, d.defaultBps, true, bytes32(0));
    }

    function _settle(
        Deal storage deal,
        Milestone storage ms,
        uint256 dealId,
        uint256 milestone,
        uint16 payeeBps,
        bool byDefault,
        bytes32 rulingHash
    ) private {
        uint256 funded = ms.funded;
        uint256 payeeAmount = funded * payeeBps / BPS;
        uint256 buyerAmount = funded - payeeAmount;
        address payee = _states[dealId][milestone].payee;
        if (payee == address(0)) payee = deal.supplier;
        address token = _tokens[deal.tokenId];

        ms.status = MilestoneStatus.Settled;
        _disputes[dealId][milestone].payeeBps = payeeBps;
        if (payeeAmount != 0) _credits[payee][token] += payeeAmount;
        if (buyerAmount != 0) _credits[deal.buyer][token] += buyerAmount;
        emit DisputeSettled(dealId, milestone, msg.sender, payeeBps, payeeAmount, buyerAmount, byDefault, rulingHash);
    }

    // ==========================================================================================
    // Receivables financing
    // ==========================================================================================

    /// @notice Takes the supplier's financing offer: the caller pays `advance` (credited to the
    /// supplier) and becomes the milestone's payee, atomically.
    /// @dev `advance` and `invoiceHash` repeat the offer's terms so that a replaced offer cannot
    /// surprise the financier. Pending release approvals are reset (the payee changed).
    /// Requirements: not paused; an unexpired offer to the caller with these terms; milestone
    /// not final, not disputed, not financed, not on hold; the invoice (declared for this
    /// milestone at creation, checked when offered) never financed; the vault
    /// receives exactly `advance` from the caller (allowance needed).
    /// Issue 13, when the vault has a gate: neither the financier nor the supplier is frozen
    /// and, for a deal under a compliance policy whose milestone amount exceeds the policy's
    /// threshold, the call data carries a clearance after the arguments (the amount cleared is
    /// `advance`; see {IEscrowGate-checkAction}).
    /// Emits {ReceivableFinanced}.
    function acceptFinancing(uint256 dealId, uint256 milestone, uint96 advance, bytes32 invoiceHash)
        external
        nonReentrant
    {
        _requireNotPaused();
        (Deal storage deal, Milestone storage ms) = _load(dealId, milestone);
        FinancingOffer memory offer = _offers[dealId][milestone];
        if (offer.financier == address(0)) revert SupplyChainEscrowNoFinancingOffer(dealId, milestone);
        if (offer.financier != msg.sender) revert SupplyChainEscrowUnauthorized(dealId, msg.sender, Party.Financier);
        if (offer.advance != advance || offer.invoiceHash != invoiceHash) {
            revert SupplyChainEscrowFinancingTermsMismatch(dealId, milestone);
        }
        // slither-disable-next-line timestamp
        if (block.timestamp > offer.expiresAt) {
            revert SupplyChainEscrowFinancingOfferExpired(dealId, milestone, offer.expiresAt);
        }
        address supplier = deal.supplier;
        bytes32 commitment = _invoiceCommitment(supplier, deal.buyer, invoiceHash);
        if (_financedInvoices[commitment]) revert SupplyChainEscrowInvoiceAlreadyFinanced(invoiceHash);
        _requireFinanceable(dealId, milestone, ms.status);
        _requireClearance(IEscrowGate.Action.Finance, deal.policy, ms.amount, advance, supplier);

        address token = _tokens[deal.tokenId];
        _states[dealId][milestone].payee = msg.sender;
        _financedInvoices[commitment] = true;
        delete _offers[dealId][milestone];
        delete _approvals[dealId][milestone];
        _credits[supplier][token] += advance;
        emit ReceivableFinanced(dealId, milestone, msg.sender, supplier, advance, invoiceHash);

        _pullExact(token, advance);
    }

    // ==========================================================================================
    // Withdrawals and administration
    // ==========================================================================================

    /// @notice Pays out the caller's whole credited balance of `token`.
    /// @dev Requirements: a non-zero credit; the caller not frozen by the vault's gate (issue
    /// 13). Works while paused. Emits {Withdrawn}.
    function withdraw(address token) external nonReentrant {
        uint256 amount = _credits[msg.sender][token];
        if (amount == 0) revert SupplyChainEscrowNothingToWithdraw(msg.sender, token);
        // EscrowGate hook (issue 13): a frozen account cannot withdraw.
        _requireClearance(IEscrowGate.Action.Withdraw, 0, 0, 0, address(0));
        _credits[msg.sender][token] = 0;
        emit Withdrawn(msg.sender, token, amount);
        IERC20(token).safeTransfer(msg.sender, amount);
    }

    /// @notice Whether new business is paused.
    function paused() external view returns (bool) {
        return _config.paused;
    }

    // ==========================================================================================
    // Controls (forwarded to SupplyChainEscrowControls; documented there)
    // ==========================================================================================

    /// @notice See {SupplyChainEscrowControls-registerInspector}.
    function registerInspector(address) external returns (uint16) {
        _forward();
    }

    /// @notice See {SupplyChainEscrowControls-revokeInspector}.
    function revokeInspector(address) external {
        _forward();
    }

    /// @notice See {SupplyChainEscrowControls-setArbiterAccredited}.
    function setArbiterAccredited(address, bool) external {
        _forward();
    }

    /// @notice See {SupplyChainEscrowControls-requestRelease}.
    function requestRelease(uint256, uint256) external {
        _forward();
    }

    /// @notice See {SupplyChainEscrowControls-approveRelease}.
    function approveRelease(uint256, uint256) external {
        _forward();
    }

    /// @notice See {SupplyChainEscrowControls-withdrawReleaseRequest}.
    function withdrawReleaseRequest(uint256, uint256) external {
        _forward();
    }

    /// @notice See {SupplyChainEscrowControls-escalateRelease}.
    function escalateRelease(uint256, uint256) external {
        _forward();
    }

    /// @notice See {SupplyChainEscrowControls-reclaimAfterLongStop}.
    function reclaimAfterLongStop(uint256) external returns (uint256) {
        _forward();
    }

    /// @notice See {SupplyChainEscrowControls-settleAfterLongStop}.
    function settleAfterLongStop(uint256, uint256) external {
        _forward();
    }

    /// @notice See {SupplyChainEscrowControls-offerFinancing}.
    function offerFinancing(uint256, uint256, address, uint96, bytes32, uint40) external {
        _forward();
    }

    /// @notice See {SupplyChainEscrowControls-cancelFinancingOffer}.
    function cancelFinancingOffer(uint256, uint256) external {
        _forward();
    }

    /// @notice See {SupplyChainEscrowControls-placeHold}.
    function placeHold(uint256, uint256, bytes32, uint256) external {
        _forward();
    }

    /// @notice See {SupplyChainEscrowControls-renewHold}.
    function renewHold(uint256, uint256, bytes32, uint256) external {
        _forward();
    }

    /// @notice See {SupplyChainEscrowControls-liftHold}.
    function liftHold(uint256, uint256, bytes32) external {
        _forward();
    }

    /// @notice See {SupplyChainEscrowControls-setHoldCap}.
    function setHoldCap(uint32) external {
        _forward();
    }

    /// @notice See {SupplyChainEscrowControls-applyHoldCap}.
    function applyHoldCap() external {
        _forward();
    }

    /// @notice See {SupplyChainEscrowControls-setTokenAllowed}.
    function setTokenAllowed(address, bool) external {
        _forward();
    }

    /// @notice See {SupplyChainEscrowControls-setEscrowGate}.
    function setEscrowGate(IEscrowGate) external {
        _forward();
    }

    /// @notice See {SupplyChainEscrowControls-pause}.
    function pause() external {
        _forward();
    }

    /// @notice See {SupplyChainEscrowControls-unpause}.
    function unpause() external {
        _forward();
    }

    /// @dev Runs the current call's function of the controls module on this contract's storage
    /// and returns (or reverts) with its result; never returns to the caller.
    function _forward() private {
        address module = _controlsModule;
        // slither-disable-next-line assembly
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            calldatacopy(ptr, 0, calldatasize())
            let ok := delegatecall(gas(), module, ptr, calldatasize(), 0, 0)
            returndatacopy(ptr, 0, returndatasize())
            if iszero(ok) { revert(ptr, returndatasize()) }
            return(ptr, returndatasize())
        }
    }

    // ==========================================================================================
    // Views
    // ==========================================================================================

    /// @notice The deal `dealId` (reverts for an unknown id).
    function getDeal(uint256 dealId) external view returns (DealView memory v) {
        Deal storage deal = _deals[dealId];
        if (deal.buyer == address(0)) revert SupplyChainEscrowUnknownDeal(dealId);
        v.buyer = deal.buyer;
        v.supplier = deal.supplier;
        v.arbiter = deal.arbiter;
        Controls memory controls = _controls[dealId];
        v.financier = controls.financier;
        v.token = _tokens[deal.tokenId];
        v.milestoneCount = deal.milestoneCount;
        v.inspectorCount = deal.inspectorCount;
        v.inspectorThreshold = deal.inspectorThreshold;
        v.approvalsRequired = deal.approvalsRequired;
        v.defaultPayeeBps = deal.defaultPayeeBps;
        v.inspectionWindow = deal.inspectionWindow;
        v.disputeTimeout = deal.disputeTimeout;
        v.longStop = deal.longStop;
        v.approvalThreshold = controls.approvalThreshold;
        v.inspectors = new address[](deal.inspectorCount);
        for (uint256 i; i < deal.inspectorCount; ++i) {
            v.inspectors[i] = _inspectorById[uint16(deal.inspectorIds >> (16 * i))];
        }
    }

    /// @notice A milestone of deal `dealId` (reverts for an unknown deal or milestone).
    function getMilestone(uint256 dealId, uint256 milestone) external view returns (MilestoneView memory v) {
        (Deal storage deal, Milestone storage ms) = _load(dealId, milestone);
        Milestone memory m = ms;
        MilestoneState memory st = _states[dealId][milestone];
        v.status = m.status;
        v.amount = m.amount;
        v.funded = m.funded;
        v.dueDate = m.dueDate;
        v.attestations = m.attestations;
        v.proofRequired = m.flags & _FLAG_PROOF_REQUIRED != 0;
        v.proofVerified = m.flags & _FLAG_PROOF_VERIFIED != 0;
        v.payee = st.payee == address(0) ? deal.supplier : st.payee;
        v.stageAt = st.stageAt;
        v.holdUntil = st.holdUntil;
        v.shippingDocument = _shippingDocs[dealId][milestone];
        v.proofLeaf = _proofLeaves[dealId][milestone];
    }

    /// @notice The dispute of a milestone: opener, opening time and (once settled) payee share.
    function getDispute(uint256 dealId, uint256 milestone)
        external
        view
        returns (address openedBy, uint256 openedAt, uint256 payeeBps)
    {
        _load(dealId, milestone);
        Dispute memory d = _disputes[dealId][milestone];
        return (d.openedBy, d.openedAt, d.payeeBps);
    }

    /// @notice The release request of a milestone: its initiator and approvals so far.
    function getReleaseApproval(uint256 dealId, uint256 milestone)
        external
        view
        returns (address initiator, uint256 approvals)
    {
        _load(dealId, milestone);
        ReleaseApproval memory a = _approvals[dealId][milestone];
        return (a.initiator, a.approvals);
    }

    /// @notice The supplier's open financing offer for a milestone (zero financier: none).
    function getFinancingOffer(uint256 dealId, uint256 milestone)
        external
        view
        returns (address financier, uint256 advance, bytes32 invoiceHash, uint256 expiresAt)
    {
        _load(dealId, milestone);
        FinancingOffer memory o = _offers[dealId][milestone];
        return (o.financier, o.advance, o.invoiceHash, o.expiresAt);
    }

    /// @notice The reason hash of a milestone's last placed or renewed hold (zero once lifted).
    function holdReason(uint256 dealId, uint256 milestone) external view returns (bytes32) {
        _load(dealId, milestone);
        return _holdReasons[dealId][milestone];
    }

    /// @notice Whether `account` is an inspector of deal `dealId`.
    function isInspector(uint256 dealId, address account) external view returns (bool) {
        return _inspectorIndex(_deals[dealId], account) != 0;
    }

    /// @notice The registry id of `inspector` (0: not registered).
    function inspectorId(address inspector) external view returns (uint256) {
        return _inspectors[inspector].id;
    }

    /// @notice Whether `account` is a release approver of deal `dealId`.
    function isApprover(uint256 dealId, address account) external view returns (bool) {
        return _approverIndex[dealId][account] != 0;
    }

    /// @notice Whether `inspector` has attested the milestone.
    function hasAttested(uint256 dealId, uint256 milestone, address inspector) external view returns (bool) {
        uint256 index = _inspectorIndex(_deals[dealId], inspector);
        return index != 0 && _states[dealId][milestone].attested & (1 << (index - 1)) != 0;
    }

    /// @notice The amount of `token` that `account` can withdraw.
    function creditOf(address account, address token) external view returns (uint256) {
        return _credits[account][token];
    }

    /// @notice Whether the invoice `commitment` ({invoiceCommitment}) was financed.
    function isInvoiceFinanced(bytes32 commitment) external view returns (bool) {
        return _financedInvoices[commitment];
    }

    /// @notice The registry key of an invoice declared in a deal between `supplier` and `buyer`.
    function invoiceCommitment(address supplier, address buyer, bytes32 invoiceHash) external pure returns (bytes32) {
        return _invoiceCommitment(supplier, buyer, invoiceHash);
    }

    /// @notice The deal and milestone that declared the invoice `commitment` (found false: none).
    function invoiceMilestone(bytes32 commitment) external view returns (bool found, uint256 dealId, uint256 milestone) {
        uint256 slot = _invoiceMilestone[commitment];
        if (slot == 0) return (false, 0, 0);
        return (true, slot >> 8, (slot & 0xff) - 1);
    }

    /// @notice Whether `inspector` may be named by new deals (registered and not revoked).
    function isInspectorAccredited(address inspector) external view returns (bool) {
        InspectorEntry memory entry = _inspectors[inspector];
        return entry.id != 0 && !entry.revoked;
    }

    /// @notice Whether `arbiter` may be named by new deals.
    function isArbiterAccredited(address arbiter) external view returns (bool) {
        return _accreditedArbiters[arbiter];
    }

    /// @notice A milestone's total hold time (past and scheduled, in seconds) and its own
    /// long stop: the deal's pushed back by that time.
    function holdTime(uint256 dealId, uint256 milestone) external view returns (uint256 heldSeconds, uint256 longStop) {
        (Deal storage deal,) = _load(dealId, milestone);
        return (_heldTotal[dealId][milestone], _longStopOf(deal, dealId, milestone));
    }

    /// @notice The cap on a milestone's total hold time, and a scheduled rise (zero: none).
    function holdCap() external view returns (uint256 cap, uint256 pendingCap, uint256 pendingAt) {
        HoldCapChange memory change = _pendingHoldCap;
        return (_config.holdCap, change.cap, change.effectiveAt);
    }

    /// @notice Whether the milestone is with the arbiter by escalation rather than a dispute,
    /// and the payee share applied if the arbiter does not rule in time.
    function escalation(uint256 dealId, uint256 milestone) external view returns (bool escalated, uint256 defaultBps) {
        _load(dealId, milestone);
        Dispute memory d = _disputes[dealId][milestone];
        return (d.escalated, d.defaultBps);
    }

    /// @notice Whether `nonce` of `inspector` was used or cancelled.
    function isNonceUsed(address inspector, uint256 nonce) external view returns (bool) {
        return _usedNonces[inspector][nonce];
    }

    /// @notice Whether new deals may use `token`.
    function isTokenAllowed(address token) external view returns (bool) {
        return _tokenInfo[token].allowed;
    }

    /// @notice The number of deals created (ids run from 1 to this number).
    function dealCount() external view returns (uint256) {
        return _config.nextDealId - 1;
    }

    /// @notice The vault's compliance gate (zero: none) and the policy of deal `dealId`.
    function escrowGate(uint256 dealId) external view returns (IEscrowGate gate, uint256 policy) {
        return (_gate, _deals[dealId].policy);
    }

    /// @notice The AuditAnchor of proof-gated milestones (zero when none).
    function auditAnchor() external view returns (IAuditAnchor) {
        return _anchor;
    }

    /// @notice The EIP-712 domain separator of relayed attestations (bound to the chain id).
    // solhint-disable-next-line func-name-mixedcase
    // slither-disable-next-line naming-convention
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @notice A deal's accounting: `funded == released + refunded + held` always holds, where
    /// `released` went to payees, `refunded` back to the buyer and `held` is still escrowed.
    function dealAccounting(uint256 dealId)
        external
        view
        returns (uint256 funded, uint256 released, uint256 refunded, uint256 held)
    {
        Deal storage deal = _deals[dealId];
        if (deal.buyer == address(0)) revert SupplyChainEscrowUnknownDeal(dealId);
        uint256 count = deal.milestoneCount;
        for (uint256 i; i < count; ++i) {
            Milestone memory m = _milestones[dealId][i];
            funded += m.funded;
            if (m.status == MilestoneStatus.Released) {
                released += m.funded;
            } else if (m.status == MilestoneStatus.Refunded) {
                refunded += m.funded;
            } else if (m.status == MilestoneStatus.Settled) {
                uint256 payeeAmount = uint256(m.funded) * _disputes[dealId][i].payeeBps / BPS;
                released += payeeAmount;
                refunded += m.funded - payeeAmount;
            } else {
                held += m.funded;
            }
        }
    }

    // ==========================================================================================
    // Internal helpers
    // ==========================================================================================

    /// @dev The 1-based position of `account` among the deal's inspectors (0: not one).
    function _inspectorIndex(Deal storage deal, address account) private view returns (uint256) {
        uint256 id = _inspectors[account].id;
        if (id == 0) return 0;
        uint256 ids = deal.inspectorIds;
        uint256 n = deal.inspectorCount;
        for (uint256 i; i < n; ++i) {
            if ((ids >> (16 * i)) & 0xffff == id) return i + 1;
        }
        return 0;
    }

    /// @dev Issue 13, the EscrowGate hook: asks the vault's gate to check `action` (see
    /// {IEscrowGate-checkAction}): the caller (the payer of `Fund` and `Finance`, the buyer of
    /// `Create`, the account of `Withdraw`; ignored for `Release`, which anyone may call) and
    /// `payee` must not be frozen; a deal under a compliance `policy` moving money above its
    /// threshold needs a valid clearance, spent by the gate. For `Fund`, `Release` and `Finance`,
    /// the deal and milestone are the caller's first two arguments and the clearance is the call
    /// data after its fixed-size arguments (byte 100, 68, 132 on). The call is hand-encoded to
    /// keep the five hooks small; a gate revert (an error naming what is missing) bubbles up
    /// unchanged. The gate is fixed and trusted and never calls back. Only these five paths
    /// consult the gate: refunds, disputes, rulings, escalations and the long-stop settlement
    /// never do ({SupplyChainEscrowControls-settleAfterLongStop} reads the gate's policy and
    /// freezes to send a milestone the gate would stop to the arbiter), so a lost clearance
    /// signer cannot trap funds.
    function _requireClearance(
        IEscrowGate.Action action,
        uint256 policy,
        uint256 basis,
        uint256 amount,
        address payee
    ) private {
        address gate = address(_gate);
        if (gate == address(0)) {
            if (policy != 0) revert SupplyChainEscrowNoGate();
            return;
        }
        // Never taken (policies are 16-bit): a self-call keeps the optimizer from inlining this
        // function into each of its five callers.
        if (policy > type(uint16).max) return _requireClearance(action, 0, basis, amount, payee);
        bytes4 selector = IEscrowGate.checkAction.selector;
        // slither-disable-next-line assembly
        assembly ("memory-safe") {
            let p := mload(0x40)
            let len := 0
            if lt(action, 3) {
                // Fund: 4 + 3 words; Finance: 4 + 4 words; Release: 4 + 2 words (a byte table).
                // slither-disable-next-line too-many-digits
                let at := byte(action, 0x6484440000000000000000000000000000000000000000000000000000000000)
                if lt(at, calldatasize()) { len := sub(calldatasize(), at) }
                calldatacopy(add(p, 0x144), at, len)
                mstore(add(p, 0x24), calldataload(0x04)) // dealId
                mstore(add(p, 0x44), calldataload(0x24)) // milestone
            }
            if iszero(lt(action, 3)) {
                mstore(add(p, 0x24), 0)
                mstore(add(p, 0x44), 0)
            }
            mstore(p, selector)
            mstore(add(p, 0x04), policy)
            mstore(add(p, 0x64), action)
            mstore(add(p, 0x84), basis)
            mstore(add(p, 0xa4), amount)
            mstore(add(p, 0xc4), caller())
            mstore(add(p, 0xe4), payee)
            mstore(add(p, 0x104), 0x120) // offset of the bytes argument
            mstore(add(p, 0x124), len)
            mstore(add(add(p, 0x144), len), 0) // zero padding
            if iszero(call(gas(), gate, 0, p, add(0x144, and(add(len, 31), not(31))), 0, 0)) {
                returndatacopy(p, 0, returndatasize())
                revert(p, returndatasize())
            }
        }
    }

    /// @dev Pulls `amount` of `token` from the caller (only ever `msg.sender`, so nobody can
    /// spend another account's allowance) and checks that the vault received exactly that
    /// much, which refuses fee-on-transfer tokens (and rebases at transfer; tokens declaring a
    /// rebasing share interface are refused at allow-listing). Callers are `nonReentrant` and
    /// have already written their effects.
    function _pullExact(address token, uint256 amount) private {
        IERC20 erc20 = IERC20(token);
        uint256 balanceBefore = erc20.balanceOf(address(this));
        erc20.safeTransferFrom(msg.sender, address(this), amount);
        uint256 balanceAfter = erc20.balanceOf(address(this));
        if (balanceAfter != balanceBefore + amount) {
            uint256 received = balanceAfter > balanceBefore ? balanceAfter - balanceBefore : 0;
            revert SupplyChainEscrowTransferMismatch(token, amount, received);
        }
    }
}
