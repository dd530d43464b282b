// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title ISupplyChainEscrow
/// @notice Types, events and errors of chainaudit's supply-chain-finance escrow vault: one contract
/// holding many deals, each paying a supplier milestone by milestone from funds escrowed by a buyer.
/// @dev Every event carries the deal id as its first indexed topic, so an indexer can rebuild a
/// deal's whole history with one log filter. Events are emitted right after the state change
/// they describe.
interface ISupplyChainEscrow {
    // ------------------------------------------------------------------------------------------
    // Types
    // ------------------------------------------------------------------------------------------

    /// @notice The life cycle of a milestone. `Released`, `Settled` and `Refunded` are final: no
    /// function moves a milestone out of them.
    enum MilestoneStatus {
        None, // the milestone does not exist
        Open, // created, funded in part or not at all
        Funded, // the full amount is escrowed
        Shipped, // the supplier declared shipment with a document hash
        Inspected, // k inspectors attested; the inspection window runs
        Accepted, // the buyer accepted (deemed acceptance is checked at release)
        Disputed, // a dispute or an escalation: frozen until the arbiter rules or it times out
        Released, // final: funds credited to the payee
        Settled, // final: dispute split credited to the payee and the buyer
        Refunded // final: funds credited back to the buyer after the long-stop date
    }

    /// @notice The party a function expected its caller to be (argument of
    /// {SupplyChainEscrowUnauthorized}).
    enum Party {
        Buyer,
        Supplier,
        Arbiter,
        Inspector,
        Approver,
        Financier,
        BuyerOrSupplier,
        BuyerOrApprover,
        Payee, // the milestone's payee: the financier once financed, else the supplier
        BuyerOrPayee
    }

    /// @notice What a buyer submits to open a deal (the buyer is the caller).
    /// @param supplier Receives the milestone payments unless a milestone is financed.
    /// @param arbiter Settles disputes and escalations as a basis-point split; accredited by the
    /// registrar.
    /// @param financier Optional: when non-zero, the only financier that may take over a claim.
    /// @param token An allow-listed ERC-20 token without transfer fees or rebasing.
    /// @param inspectors 1 to 6 distinct inspectors registered by the registrar.
    /// @param inspectorThreshold k: the number of inspector attestations that complete inspection.
    /// @param inspectionWindow Seconds after inspection during which the buyer may dispute; after
    /// it the milestone is deemed accepted.
    /// @param disputeTimeout Seconds after which anyone may apply the default dispute outcome.
    /// @param defaultPayeeBps Payee share (basis points) of the default dispute outcome.
    /// @param longStop Timestamp after which the buyer may reclaim the funds of milestones neither
    /// accepted nor financed (each milestone's long stop is pushed back by its hold time, and
    /// never falls inside its inspection window); accepted or financed milestones then go to
    /// their payee or to the arbiter. Every due date plus the inspection window must fit before
    /// it.
    /// @param approvalThreshold Releases of milestones above this amount need approvals.
    /// @param approvalsRequired k approvals from distinct approvers (0 = no maker-checker).
    /// @param approvers Up to 16 distinct approvers, none of them the buyer, the supplier or the
    /// financier.
    /// @param policy The EscrowGate compliance policy of the deal (0: none; issue 13). Under a
    /// policy, funding, financing and releasing a milestone above the policy's threshold need a
    /// clearance from the vault's gate.
    struct DealParams {
        address supplier;
        address arbiter;
        address financier;
        address token;
        address[] inspectors;
        uint8 inspectorThreshold;
        uint32 inspectionWindow;
        uint32 disputeTimeout;
        uint16 defaultPayeeBps;
        uint40 longStop;
        uint96 approvalThreshold;
        uint8 approvalsRequired;
        address[] approvers;
        uint16 policy;
    }

    /// @notice One milestone of a new deal.
    /// @param amount Token amount to escrow and pay (non-zero).
    /// @param dueDate Expected delivery timestamp (in the future, not after the long-stop date).
    /// @param documentHash Hash of the purchase order or contract clause (non-zero).
    /// @param proofLeaf When non-zero, the RFC 9162 leaf hash of a record that must be proven
    /// included in an anchored checkpoint before the milestone can be accepted.
    /// @param invoiceHash When non-zero, the invoice this milestone pays, declared by the buyer
    /// at creation: the only invoice its claim can be financed under. Registered as the
    /// commitment `keccak256(abi.encode(supplier, buyer, invoiceHash))`, which no other deal
    /// may declare again.
    /// @param proofSigner Who must have signed the proof leaf's record (for example an
    /// inspector; issue 13): required with a proof leaf, so that the anchorer's key alone cannot
    /// pass the gate.
    struct MilestoneParams {
        uint96 amount;
        uint40 dueDate;
        bytes32 documentHash;
        bytes32 proofLeaf;
        bytes32 invoiceHash;
        address proofSigner;
    }

    /// @notice A deal as returned by {getDeal}.
    struct DealView {
        address[] inspectors;
        address buyer;
        address supplier;
        address arbiter;
        address financier;
        address token;
        uint8 milestoneCount;
        uint8 inspectorCount;
        uint8 inspectorThreshold;
        uint8 approvalsRequired;
        uint16 defaultPayeeBps;
        uint32 inspectionWindow;
        uint32 disputeTimeout;
        uint40 longStop;
        uint96 approvalThreshold;
    }

    /// @notice A milestone as returned by {getMilestone}.
    /// @param payee The account paid on release: the financier once financed, else the supplier.
    /// @param stageAt Time of shipment (Shipped) or of completed inspection (Inspected, Accepted).
    /// @param holdUntil End of the compliance hold (0 or past = no hold).
    struct MilestoneView {
        MilestoneStatus status;
        uint96 amount;
        uint96 funded;
        uint40 dueDate;
        uint8 attestations;
        bool proofRequired;
        bool proofVerified;
        address payee;
        uint40 stageAt;
        uint40 holdUntil;
        bytes32 shippingDocument;
        bytes32 proofLeaf;
    }

    // ------------------------------------------------------------------------------------------
    // Events
    // ------------------------------------------------------------------------------------------

    /// @notice A deal was opened by `buyer`.
    event DealCreated(
        uint256 indexed dealId,
        address indexed buyer,
        address indexed supplier,
        address token,
        address arbiter,
        address[] inspectors,
        uint256 inspectorThreshold
    );

    /// @notice A deal named a financier or a maker-checker approval policy.
    event DealControlsSet(
        uint256 indexed dealId,
        address indexed financier,
        uint256 approvalThreshold,
        uint256 approvalsRequired,
        address[] approvers
    );

    /// @notice A milestone was added to a deal at creation.
    event MilestoneCreated(
        uint256 indexed dealId, uint256 indexed milestone, uint256 amount, uint256 dueDate, bytes32 documentHash
    );

    /// @notice A milestone can be accepted only once `leafHash` is proven included in an
    /// anchored checkpoint, with `signer`'s record signature of it (issue 13).
    event ProofGateSet(uint256 indexed dealId, uint256 indexed milestone, bytes32 leafHash, address signer);

    /// @notice `inspector` registered (or was reinstated) with registry id `id`.
    event InspectorRegistered(address indexed inspector, uint256 id);

    /// @notice The registrar withdrew `inspector`'s accreditation: new deals may not name it.
    event InspectorRevoked(address indexed inspector, address indexed registrar);

    /// @notice A milestone's claim can be financed only under `invoiceHash`, registered as the
    /// commitment `commitment` (supplier, buyer and invoice hash).
    event InvoiceDeclared(
        uint256 indexed dealId, uint256 indexed milestone, bytes32 invoiceHash, bytes32 indexed commitment
    );

    /// @notice The registrar accredited `arbiter` for new deals, or withdrew its accreditation.
    event ArbiterAccreditationUpdated(address indexed arbiter, bool accredited, address indexed registrar);

    /// @notice The admin scheduled a rise of the total-hold cap, effective at `effectiveAt`.
    event HoldCapChangeScheduled(uint256 cap, uint256 effectiveAt);

    /// @notice The total-hold cap per milestone changed to `cap` seconds.
    event HoldCapChanged(uint256 cap);

    /// @notice New business was paused by `account`.
    event Paused(address indexed account);

    /// @notice New business was resumed by `account`.
    event Unpaused(address indexed account);

    /// @notice The buyer escrowed `amount` for a milestone; `fundedTotal` is the new total.
    event MilestoneFunded(
        uint256 indexed dealId, uint256 indexed milestone, address indexed buyer, uint256 amount, uint256 fundedTotal
    );

    /// @notice The supplier declared shipment with a bill of lading / delivery note hash.
    event MilestoneShipped(
        uint256 indexed dealId, uint256 indexed milestone, address indexed supplier, bytes32 documentHash
    );

    /// @notice An inspector attested a milestone (directly or through a relayed signature).
    event InspectionAttested(
        uint256 indexed dealId,
        uint256 indexed milestone,
        address indexed inspector,
        bytes32 reportHash,
        uint256 attestations
    );

    /// @notice The k-th attestation completed inspection; the inspection window starts.
    event MilestoneInspected(uint256 indexed dealId, uint256 indexed milestone, uint256 windowEndsAt);

    /// @notice A record leaf was proven included in an anchored checkpoint.
    event RecordProven(
        uint256 indexed dealId,
        uint256 indexed milestone,
        address indexed prover,
        bytes32 leafHash,
        uint256 checkpointSeq,
        uint256 leafIndex
    );

    /// @notice The milestone was accepted by the buyer, or deemed accepted (`deemed`) at release
    /// because its inspection window passed without a dispute.
    event MilestoneAccepted(uint256 indexed dealId, uint256 indexed milestone, address indexed actor, bool deemed);

    /// @notice A maker asked for the release of a milestone above the approval threshold.
    event ReleaseRequested(uint256 indexed dealId, uint256 indexed milestone, address indexed initiator);

    /// @notice A checker approved the release of a milestone.
    event ReleaseApproved(
        uint256 indexed dealId, uint256 indexed milestone, address indexed approver, uint256 approvals
    );

    /// @notice A release request was withdrawn (its approvals dropped) by `actor`.
    event ReleaseRequestWithdrawn(uint256 indexed dealId, uint256 indexed milestone, address indexed actor);

    /// @notice The milestone went to the arbiter: its payee escalated a release stuck on
    /// approvals, or the long stop passed while the milestone was accepted or financed but not
    /// releasable. If the arbiter does not rule within the dispute timeout, `defaultPayeeBps`
    /// applies.
    event MilestoneEscalated(
        uint256 indexed dealId, uint256 indexed milestone, address indexed actor, uint256 defaultPayeeBps
    );

    /// @notice The milestone's funds were credited to `payee`.
    event MilestoneReleased(
        uint256 indexed dealId, uint256 indexed milestone, address indexed payee, address actor, uint256 amount
    );

    /// @notice A party opened a dispute on a milestone.
    event DisputeOpened(uint256 indexed dealId, uint256 indexed milestone, address indexed opener, bytes32 reasonHash);

    /// @notice A dispute was settled: by the arbiter, or by anyone applying the deal's default
    /// outcome after the timeout (`byDefault`).
    event DisputeSettled(
        uint256 indexed dealId,
        uint256 indexed milestone,
        address indexed actor,
        uint256 payeeBps,
        uint256 payeeAmount,
        uint256 buyerAmount,
        bool byDefault,
        bytes32 rulingHash
    );

    /// @notice After the long-stop date the buyer reclaimed a milestone's escrowed funds.
    event MilestoneRefunded(uint256 indexed dealId, uint256 indexed milestone, address indexed buyer, uint256 amount);

    /// @notice The supplier offered a milestone's claim to `financier` for `advance`.
    event FinancingOffered(
        uint256 indexed dealId,
        uint256 indexed milestone,
        address indexed financier,
        uint256 advance,
        bytes32 invoiceHash,
        uint256 expiresAt
    );

    /// @notice The supplier withdrew its financing offer.
    event FinancingOfferCancelled(uint256 indexed dealId, uint256 indexed milestone, address indexed supplier);

    /// @notice `financier` paid `advance` to the supplier and became the milestone's payee.
    event ReceivableFinanced(
        uint256 indexed dealId,
        uint256 indexed milestone,
        address indexed financier,
        address supplier,
        uint256 advance,
        bytes32 invoiceHash
    );

    /// @notice A compliance officer placed a hold on a milestone until `until`.
    event ComplianceHoldPlaced(
        uint256 indexed dealId, uint256 indexed milestone, address indexed officer, bytes32 reasonHash, uint256 until
    );

    /// @notice A compliance officer extended a hold to `until`.
    event ComplianceHoldRenewed(
        uint256 indexed dealId, uint256 indexed milestone, address indexed officer, bytes32 reasonHash, uint256 until
    );

    /// @notice A compliance officer lifted a hold.
    event ComplianceHoldLifted(
        uint256 indexed dealId, uint256 indexed milestone, address indexed officer, bytes32 reasonHash
    );

    /// @notice `account` withdrew its credited `amount` of `token`.
    event Withdrawn(address indexed account, address indexed token, uint256 amount);

    /// @notice A token was added to or removed from the allow-list.
    event TokenAllowListUpdated(address indexed token, bool allowed, address indexed actor);

    /// @notice An inspector cancelled an unused attestation nonce.
    event AttestationNonceInvalidated(address indexed inspector, uint256 nonce);

    /// @notice The vault's compliance gate was set (once; issue 13).
    event EscrowGateSet(address indexed gate, address indexed admin);

    // ------------------------------------------------------------------------------------------
    // Errors
    // ------------------------------------------------------------------------------------------

    error SupplyChainEscrowUnknownDeal(uint256 dealId);
    error SupplyChainEscrowUnknownMilestone(uint256 dealId, uint256 milestone);
    error SupplyChainEscrowUnauthorized(uint256 dealId, address account, Party expected);
    error SupplyChainEscrowInvalidStatus(uint256 dealId, uint256 milestone, MilestoneStatus status);
    error SupplyChainEscrowZeroAmount();
    error SupplyChainEscrowZeroAddress();
    error SupplyChainEscrowZeroHash();
    error SupplyChainEscrowDuplicateParty(address party);
    error SupplyChainEscrowTokenNotAllowed(address token);
    error SupplyChainEscrowInvalidMilestoneCount(uint256 count);
    error SupplyChainEscrowInvalidInspectorSet(uint256 inspectors, uint256 threshold);
    error SupplyChainEscrowInvalidApprovalPolicy(uint256 approvers, uint256 required);
    error SupplyChainEscrowInvalidBps(uint256 bps);
    error SupplyChainEscrowInvalidDuration(uint256 duration);
    error SupplyChainEscrowInvalidDueDate(uint256 milestone, uint256 dueDate);
    error SupplyChainEscrowInvalidLongStop(uint256 longStop);
    error SupplyChainEscrowExceedsAmount(uint256 dealId, uint256 milestone, uint256 remaining, uint256 amount);
    error SupplyChainEscrowTransferMismatch(address token, uint256 expected, uint256 received);
    error SupplyChainEscrowAlreadyAttested(uint256 dealId, uint256 milestone, address inspector);
    error SupplyChainEscrowSignatureExpired(uint256 deadline);
    error SupplyChainEscrowInvalidSignature(address inspector);
    error SupplyChainEscrowNonceUsed(address inspector, uint256 nonce);
    error SupplyChainEscrowWindowOpen(uint256 dealId, uint256 milestone, uint256 endsAt);
    error SupplyChainEscrowWindowClosed(uint256 dealId, uint256 milestone, uint256 endedAt);
    error SupplyChainEscrowProofRequired(uint256 dealId, uint256 milestone);
    error SupplyChainEscrowProofNotRequired(uint256 dealId, uint256 milestone);
    error SupplyChainEscrowProofRejected(uint256 dealId, uint256 milestone, uint256 checkpointSeq, uint256 leafIndex);
    error SupplyChainEscrowNoAnchor();
    error SupplyChainEscrowOnHold(uint256 dealId, uint256 milestone, uint256 until);
    error SupplyChainEscrowNoActiveHold(uint256 dealId, uint256 milestone);
    error SupplyChainEscrowApprovalsMissing(uint256 dealId, uint256 milestone, uint256 approvals, uint256 required);
    error SupplyChainEscrowApprovalNotRequired(uint256 dealId, uint256 milestone);
    error SupplyChainEscrowReleaseNotRequested(uint256 dealId, uint256 milestone);
    error SupplyChainEscrowReleaseAlreadyRequested(uint256 dealId, uint256 milestone, address initiator);
    error SupplyChainEscrowInitiatorCannotApprove(uint256 dealId, uint256 milestone, address account);
    error SupplyChainEscrowAlreadyApproved(uint256 dealId, uint256 milestone, address approver);
    error SupplyChainEscrowDisputeTimeoutPending(uint256 dealId, uint256 milestone, uint256 endsAt);
    error SupplyChainEscrowLongStopNotReached(uint256 dealId, uint256 longStop);
    error SupplyChainEscrowLongStopPassed(uint256 dealId, uint256 longStop);
    error SupplyChainEscrowNothingToReclaim(uint256 dealId);
    error SupplyChainEscrowAlreadyFinanced(uint256 dealId, uint256 milestone, address payee);
    error SupplyChainEscrowInvoiceAlreadyFinanced(bytes32 invoiceHash);
    error SupplyChainEscrowInvalidAdvance(uint256 advance, uint256 maximum);
    error SupplyChainEscrowNoFinancingOffer(uint256 dealId, uint256 milestone);
    error SupplyChainEscrowFinancingOfferExpired(uint256 dealId, uint256 milestone, uint256 expiresAt);
    error SupplyChainEscrowFinancingTermsMismatch(uint256 dealId, uint256 milestone);
    error SupplyChainEscrowNothingToWithdraw(address account, address token);
    error SupplyChainEscrowPaused();
    error SupplyChainEscrowNotPaused();
    error SupplyChainEscrowInspectorNotRegistered(address inspector);
    error SupplyChainEscrowRegistryFull();
    /// @notice The vault's gate is already set (it never changes).
    error SupplyChainEscrowGateAlreadySet(address gate);
    /// @notice A deal names a compliance policy but the vault has no gate.
    error SupplyChainEscrowNoGate();
    error SupplyChainEscrowArbiterNotAccredited(address arbiter);
    error SupplyChainEscrowInvoiceAlreadyDeclared(bytes32 invoiceHash);
    error SupplyChainEscrowInvoiceNotDeclared(uint256 dealId, uint256 milestone, bytes32 invoiceHash);
    error SupplyChainEscrowHoldCapExceeded(uint256 dealId, uint256 milestone, uint256 total, uint256 cap);
    error SupplyChainEscrowInvalidHoldCap(uint256 cap);
    error SupplyChainEscrowHoldCapChangeNotReady(uint256 effectiveAt);
    error SupplyChainEscrowApprovalDeadlinePending(uint256 dealId, uint256 milestone, uint256 deadline);
    error SupplyChainEscrowNothingToEscalate(uint256 dealId, uint256 milestone);
    error SupplyChainEscrowRebasingToken(address token);
}
