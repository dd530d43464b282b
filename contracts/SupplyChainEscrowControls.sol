// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {EscrowStorage} from "./escrow/EscrowStorage.sol";
import {IEscrowGate} from "./interfaces/IEscrowGate.sol";

/// @title SupplyChainEscrowControls
/// @notice The controls half of the {SupplyChainEscrow} vault: the inspector and arbiter
/// registry, compliance holds and their cap, maker-checker release approvals and their
/// escalation, the long-stop settlement, financing offers, the token allow-list and pausing.
/// @dev Deployed by the vault's constructor and reached only through the vault, which
/// forwards each of these functions by `delegatecall`: the code runs on the vault's storage
/// (the layout of {EscrowStorage}), with the vault's `msg.sender`. Called directly, it only
/// touches its own empty storage. Split out to keep the vault within EIP-170.
contract SupplyChainEscrowControls is EscrowStorage {
    constructor() EscrowStorage(msg.sender, 0) {}

    // ==========================================================================================
    // Registry
    // ==========================================================================================

    /// @notice Registers `inspector`, giving it a registry id; deals name only registered
    /// inspectors. Registering again returns the same id (and reinstates a revoked inspector).
    /// @dev Requirements: caller has `REGISTRAR_ROLE`; `inspector` non-zero; fewer than 65,535
    /// inspectors registered. Emits {InspectorRegistered} on first registration and on
    /// reinstatement.
    /// @return id The inspector's id (ids start at 1).
    function registerInspector(address inspector) external onlyRole(REGISTRAR_ROLE) returns (uint16 id) {
        if (inspector == address(0)) revert SupplyChainEscrowZeroAddress();
        InspectorEntry memory entry = _inspectors[inspector];
        id = entry.id;
        if (id != 0) {
            if (entry.revoked) {
                _inspectors[inspector].revoked = false;
                emit InspectorRegistered(inspector, id);
            }
            return id;
        }
        uint16 count = _config.inspectorCount;
        if (count == type(uint16).max) revert SupplyChainEscrowRegistryFull();
        id = count + 1;
        _config.inspectorCount = id;
        _inspectors[inspector] = InspectorEntry({id: id, revoked: false});
        _inspectorById[id] = inspector;
        emit InspectorRegistered(inspector, id);
    }

    /// @notice Withdraws an inspector's accreditation: new deals may no longer name it;
    /// existing deals keep it (their parties chose it), as they keep their arbiter.
    /// @dev Requirements: caller has `REGISTRAR_ROLE`; `inspector` registered and not revoked.
    /// Emits {InspectorRevoked}.
    function revokeInspector(address inspector) external onlyRole(REGISTRAR_ROLE) {
        InspectorEntry memory entry = _inspectors[inspector];
        if (entry.id == 0 || entry.revoked) revert SupplyChainEscrowInspectorNotRegistered(inspector);
        _inspectors[inspector].revoked = true;
        emit InspectorRevoked(inspector, msg.sender);
    }

    /// @notice Accredits `arbiter` for new deals, or withdraws its accreditation (existing deals
    /// keep their arbiter).
    /// @dev Requirements: caller has `REGISTRAR_ROLE`; `arbiter` non-zero.
    /// Emits {ArbiterAccreditationUpdated}.
    function setArbiterAccredited(address arbiter, bool accredited) external onlyRole(REGISTRAR_ROLE) {
        if (arbiter == address(0)) revert SupplyChainEscrowZeroAddress();
        _accreditedArbiters[arbiter] = accredited;
        emit ArbiterAccreditationUpdated(arbiter, accredited, msg.sender);
    }

    // ==========================================================================================
    // Release approvals
    // ==========================================================================================

    /// @notice Starts the maker-checker approval of a release above the deal's approval
    /// threshold; the caller (maker) cannot approve it.
    /// @dev Requirements: the deal requires approvals and the milestone amount exceeds the
    /// threshold; caller is the buyer or an approver; the milestone is accepted or deemed
    /// accepted; no release request yet. Emits {ReleaseRequested}.
    function requestRelease(uint256 dealId, uint256 milestone) external {
        (Deal storage deal, Milestone storage ms) = _load(dealId, milestone);
        Milestone memory m = ms;
        if (!_needsApproval(deal, dealId, m.amount)) revert SupplyChainEscrowApprovalNotRequired(dealId, milestone);
        if (msg.sender != deal.buyer && _approverIndex[dealId][msg.sender] == 0) {
            revert SupplyChainEscrowUnauthorized(dealId, msg.sender, Party.BuyerOrApprover);
        }
        _requireAccepted(deal, dealId, milestone, m, _states[dealId][milestone].stageAt);
        ReleaseApproval storage approval = _approvals[dealId][milestone];
        address initiator = approval.initiator;
        if (initiator != address(0)) revert SupplyChainEscrowReleaseAlreadyRequested(dealId, milestone, initiator);
        approval.initiator = msg.sender;
        emit ReleaseRequested(dealId, milestone, msg.sender);
    }

    /// @notice Approves a requested release (checker).
    /// @dev Requirements: caller is an approver of the deal, not the initiator, and has not
    /// approved this request yet; a release was requested. Emits {ReleaseApproved}.
    function approveRelease(uint256 dealId, uint256 milestone) external {
        _load(dealId, milestone);
        uint256 index = _approverIndex[dealId][msg.sender];
        if (index == 0) revert SupplyChainEscrowUnauthorized(dealId, msg.sender, Party.Approver);
        ReleaseApproval memory a = _approvals[dealId][milestone];
        if (a.initiator == address(0)) revert SupplyChainEscrowReleaseNotRequested(dealId, milestone);
        if (a.initiator == msg.sender) revert SupplyChainEscrowInitiatorCannotApprove(dealId, milestone, msg.sender);
        uint16 bit = uint16(1 << (index - 1));
        if (a.approvedBitmap & bit != 0) revert SupplyChainEscrowAlreadyApproved(dealId, milestone, msg.sender);
        uint8 approvals = a.approvals + 1;
        _approvals[dealId][milestone] =
            ReleaseApproval({initiator: a.initiator, approvedBitmap: a.approvedBitmap | bit, approvals: approvals});
        emit ReleaseApproved(dealId, milestone, msg.sender, approvals);
    }

    /// @notice Withdraws a pending release request and its approvals, so that another maker
    /// (for example the buyer, when an approver's own request leaves too few checkers) can make
    /// it again.
    /// @dev Requirements: a release was requested; caller is its initiator or the buyer.
    /// Emits {ReleaseRequestWithdrawn}.
    function withdrawReleaseRequest(uint256 dealId, uint256 milestone) external {
        (Deal storage deal,) = _load(dealId, milestone);
        address initiator = _approvals[dealId][milestone].initiator;
        if (initiator == address(0)) revert SupplyChainEscrowReleaseNotRequested(dealId, milestone);
        if (msg.sender != initiator && msg.sender != deal.buyer) {
            revert SupplyChainEscrowUnauthorized(dealId, msg.sender, Party.BuyerOrApprover);
        }
        delete _approvals[dealId][milestone];
        emit ReleaseRequestWithdrawn(dealId, milestone, msg.sender);
    }

    /// @notice Sends an accepted milestone whose release still lacks approvals to the arbiter,
    /// once the approval deadline (end of the inspection window plus the dispute timeout) has
    /// passed. If the arbiter does not rule within the dispute timeout, the payee is paid in
    /// full ({applyDisputeTimeout}).
    /// @dev Requirements: caller is the milestone's payee; milestone accepted or deemed
    /// accepted; its release needs approvals that are missing; the approval deadline passed.
    /// Emits {MilestoneEscalated}.
    function escalateRelease(uint256 dealId, uint256 milestone) external {
        (Deal storage deal, Milestone storage ms) = _load(dealId, milestone);
        Milestone memory m = ms;
        MilestoneState memory st = _states[dealId][milestone];
        if (msg.sender != _payeeOf(deal, st.payee)) revert SupplyChainEscrowUnauthorized(dealId, msg.sender, Party.Payee);
        _requireAccepted(deal, dealId, milestone, m, st.stageAt);
        if (!_approvalsMissing(deal, dealId, milestone, m.amount)) {
            revert SupplyChainEscrowNothingToEscalate(dealId, milestone);
        }
        uint256 deadline = uint256(st.stageAt) + deal.inspectionWindow + deal.disputeTimeout;
        // slither-disable-next-line timestamp
        if (block.timestamp <= deadline) revert SupplyChainEscrowApprovalDeadlinePending(dealId, milestone, deadline);
        _escalate(ms, dealId, milestone, uint16(BPS));
    }

    // ==========================================================================================
    // Long stop
    // ==========================================================================================

    /// @notice After the long-stop date, returns the escrowed funds of every milestone that is
    /// neither accepted (nor deemed accepted) nor financed, and whose own long stop (the deal's
    /// pushed back by its hold time, and never before its inspection window ends) has passed,
    /// to the buyer (credited for withdrawal), closing those milestones. Accepted or financed
    /// milestones are left to {settleAfterLongStop}: they are never refunded by default.
    /// @dev Requirements: caller is the buyer; `block.timestamp > longStop`; at least one
    /// milestone can be refunded. Pausing does not block it.
    /// Emits one {MilestoneRefunded} per closed milestone.
    /// @return refunded The total amount credited to the buyer.
    function reclaimAfterLongStop(uint256 dealId) external returns (uint256 refunded) {
        Deal storage deal = _deals[dealId];
        address buyer = deal.buyer;
        if (buyer == address(0)) revert SupplyChainEscrowUnknownDeal(dealId);
        if (msg.sender != buyer) revert SupplyChainEscrowUnauthorized(dealId, msg.sender, Party.Buyer);
        uint256 longStop = deal.longStop;
        // slither-disable-next-line timestamp
        if (block.timestamp <= longStop) revert SupplyChainEscrowLongStopNotReached(dealId, longStop);

        uint256 count = deal.milestoneCount;
        bool closedAny = false;
        for (uint256 i; i < count; ++i) {
            Milestone storage ms = _milestones[dealId][i];
            Milestone memory m = ms;
            MilestoneState memory st = _states[dealId][i];
            if (!_refundable(deal, dealId, i, m, st)) continue;
            ms.status = MilestoneStatus.Refunded;
            refunded += m.funded;
            closedAny = true;
            emit MilestoneRefunded(dealId, i, buyer, m.funded);
        }
        if (!closedAny) revert SupplyChainEscrowNothingToReclaim(dealId);
        if (refunded != 0) _credits[buyer][_tokens[deal.tokenId]] += refunded;
    }

    /// @notice Closes one milestone after its own long stop; anyone may call. A milestone
    /// neither accepted nor financed is refunded to the buyer; an accepted one is released to
    /// its payee, or, when a hold, missing approvals or the compliance gate (issue 13: a
    /// clearance the release would need, or a frozen payee) stand in the way, sent to the
    /// arbiter with a default that pays the payee in full; a financed one not accepted is sent
    /// to the arbiter with the deal's default split.
    /// @dev Never needs a clearance, so that a lost clearance signer cannot trap funds: a policy
    /// deal's milestone that {SupplyChainEscrow-release} could only pay with a clearance goes to
    /// the arbiter instead (whose ruling, or the default after the dispute timeout, needs
    /// none). The gate is only read (its policy threshold and the payee's freeze).
    /// Requirements: milestone neither final nor disputed; past its long stop (the deal's,
    /// pushed back by the milestone's total hold time, and never before the end of its
    /// inspection window). Emits {MilestoneRefunded}, {MilestoneReleased} (after
    /// {MilestoneAccepted} when only deemed accepted) or {MilestoneEscalated}.
    function settleAfterLongStop(uint256 dealId, uint256 milestone) external {
        (Deal storage deal, Milestone storage ms) = _load(dealId, milestone);
        Milestone memory m = ms;
        MilestoneState memory st = _states[dealId][milestone];
        if (_isFinal(m.status) || m.status == MilestoneStatus.Disputed) {
            revert SupplyChainEscrowInvalidStatus(dealId, milestone, m.status);
        }
        uint256 longStop = _milestoneLongStop(deal, dealId, milestone, m.status, st.stageAt);
        // slither-disable-next-line timestamp
        if (block.timestamp <= longStop) revert SupplyChainEscrowLongStopNotReached(dealId, longStop);
        if (_isAccepted(deal, m, st.stageAt)) {
            address payee = _payeeOf(deal, st.payee);
            // slither-disable-next-line timestamp
            if (st.holdUntil > block.timestamp || _approvalsMissing(deal, dealId, milestone, m.amount)
                || _gateStandsInWay(deal.policy, m.amount, payee)) {
                _escalate(ms, dealId, milestone, uint16(BPS));
            } else {
                if (m.status == MilestoneStatus.Inspected) emit MilestoneAccepted(dealId, milestone, msg.sender, true);
                _releaseTo(deal, ms, dealId, milestone, payee, m.funded);
            }
        } else if (st.payee != address(0)) {
            _escalate(ms, dealId, milestone, deal.defaultPayeeBps);
        } else {
            ms.status = MilestoneStatus.Refunded;
            address buyer = deal.buyer;
            if (m.funded != 0) _credits[buyer][_tokens[deal.tokenId]] += m.funded;
            emit MilestoneRefunded(dealId, milestone, buyer, m.funded);
        }
    }

    /// @dev Whether the vault's gate would stop a release of `amount` to `payee` (issue 13): the
    /// payee is frozen, or the deal's `policy` needs a clearance above its threshold.
    function _gateStandsInWay(uint256 policy, uint256 amount, address payee) private view returns (bool) {
        IEscrowGate gate = _gate;
        if (address(gate) == address(0)) return false;
        // slither-disable-next-line timestamp
        if (gate.frozenUntil(payee) > block.timestamp) return true;
        if (policy == 0) return false;
        (bool exists, uint256 threshold) = gate.policy(policy);
        return !exists || amount > threshold;
    }

    /// @dev Whether the long-stop refund may close the milestone: not final, not disputed, past
    /// its own long stop, neither accepted (nor deemed accepted) nor financed.
    function _refundable(Deal storage deal, uint256 dealId, uint256 milestone, Milestone memory m, MilestoneState memory st)
        private
        view
        returns (bool)
    {
        if (_isFinal(m.status) || m.status == MilestoneStatus.Disputed || st.payee != address(0)) return false;
        // slither-disable-next-line timestamp
        if (block.timestamp <= _milestoneLongStop(deal, dealId, milestone, m.status, st.stageAt)) return false;
        return !_isAccepted(deal, m, st.stageAt);
    }

    /// @dev The milestone's long stop: the deal's plus its total hold time, and for an inspected
    /// milestone never before its inspection window ends.
    function _milestoneLongStop(Deal storage deal, uint256 dealId, uint256 milestone, MilestoneStatus status, uint40 stageAt)
        private
        view
        returns (uint256 longStop)
    {
        longStop = _longStopOf(deal, dealId, milestone);
        if (status == MilestoneStatus.Inspected) {
            uint256 windowEnd = uint256(stageAt) + deal.inspectionWindow;
            if (windowEnd > longStop) longStop = windowEnd;
        }
    }

    // ==========================================================================================
    // Financing offers
    // ==========================================================================================

    /// @notice Offers the milestone's claim to `financier` for an `advance` paid to the
    /// supplier; replaces any earlier offer for the milestone.
    /// @dev Requirements: not paused; caller is the milestone's payee (the supplier: a financed
    /// milestone cannot be financed again); milestone not final, not disputed, not on hold;
    /// `financier` non-zero, not the buyer, supplier or arbiter, and the deal's designated
    /// financier when there is one; 0 < advance <= milestone amount; `invoiceHash` is the
    /// invoice the buyer declared for this milestone at creation ({InvoiceDeclared}) and was
    /// never financed; `expiresAt` in the future. Emits {FinancingOffered}.
    function offerFinancing(
        uint256 dealId,
        uint256 milestone,
        address financier,
        uint96 advance,
        bytes32 invoiceHash,
        uint40 expiresAt
    ) external {
        _requireNotPaused();
        (Deal storage deal, Milestone storage ms) = _load(dealId, milestone);
        address supplier = deal.supplier;
        if (msg.sender != supplier) revert SupplyChainEscrowUnauthorized(dealId, msg.sender, Party.Payee);
        if (financier == address(0)) revert SupplyChainEscrowZeroAddress();
        if (financier == deal.buyer || financier == supplier || financier == deal.arbiter) {
            revert SupplyChainEscrowDuplicateParty(financier);
        }
        address designated = _controls[dealId].financier;
        if (designated != address(0) && financier != designated) {
            revert SupplyChainEscrowUnauthorized(dealId, financier, Party.Financier);
        }
        uint256 amount = ms.amount;
        if (advance == 0 || advance > amount) revert SupplyChainEscrowInvalidAdvance(advance, amount);
        bytes32 commitment = _requireDeclaredInvoice(deal, dealId, milestone, invoiceHash);
        if (_financedInvoices[commitment]) revert SupplyChainEscrowInvoiceAlreadyFinanced(invoiceHash);
        // slither-disable-next-line timestamp
        if (expiresAt <= block.timestamp) revert SupplyChainEscrowInvalidDuration(expiresAt);
        _requireFinanceable(dealId, milestone, ms.status);

        _offers[dealId][milestone] =
            FinancingOffer({financier: financier, advance: advance, expiresAt: expiresAt, invoiceHash: invoiceHash});
        emit FinancingOffered(dealId, milestone, financier, advance, invoiceHash, expiresAt);
    }

    /// @notice Withdraws the supplier's financing offer. Emits {FinancingOfferCancelled}.
    /// @dev Requirements: caller is the supplier; an offer exists. Works while paused.
    function cancelFinancingOffer(uint256 dealId, uint256 milestone) external {
        (Deal storage deal,) = _load(dealId, milestone);
        if (msg.sender != deal.supplier) revert SupplyChainEscrowUnauthorized(dealId, msg.sender, Party.Supplier);
        if (_offers[dealId][milestone].financier == address(0)) {
            revert SupplyChainEscrowNoFinancingOffer(dealId, milestone);
        }
        delete _offers[dealId][milestone];
        emit FinancingOfferCancelled(dealId, milestone, msg.sender);
    }

    // ==========================================================================================
    // Compliance holds
    // ==========================================================================================

    /// @notice Places a compliance hold on a milestone: it blocks release and financing (never
    /// disputes or rulings) until lifted or expired, and pushes the milestone's long stop back
    /// by its length. A milestone's total hold time never exceeds the vault's hold cap.
    /// @dev Requirements: caller has `COMPLIANCE_ROLE`; milestone not final; its long stop not
    /// passed; no active hold; 0 < duration <= {MAX_HOLD_DURATION}; total hold time within the
    /// cap; `reasonHash` non-zero. Emits {ComplianceHoldPlaced}.
    function placeHold(uint256 dealId, uint256 milestone, bytes32 reasonHash, uint256 duration)
        external
        onlyRole(COMPLIANCE_ROLE)
    {
        (Deal storage deal, Milestone storage ms) = _load(dealId, milestone);
        MilestoneStatus status = ms.status;
        if (_isFinal(status)) revert SupplyChainEscrowInvalidStatus(dealId, milestone, status);
        uint256 longStop = _longStopOf(deal, dealId, milestone);
        // slither-disable-next-line timestamp
        if (block.timestamp > longStop) revert SupplyChainEscrowLongStopPassed(dealId, longStop);
        MilestoneState storage st = _states[dealId][milestone];
        uint256 current = st.holdUntil;
        // slither-disable-next-line timestamp
        if (current > block.timestamp) revert SupplyChainEscrowOnHold(dealId, milestone, current);
        uint40 until = _holdEnd(reasonHash, duration);
        _setHeldTotal(dealId, milestone, uint256(_heldTotal[dealId][milestone]) + duration);
        st.holdUntil = until;
        _holdReasons[dealId][milestone] = reasonHash;
        emit ComplianceHoldPlaced(dealId, milestone, msg.sender, reasonHash, until);
    }

    /// @notice Sets an active hold to end `duration` seconds from now (the milestone's long
    /// stop moves by the same amount).
    /// @dev Requirements: caller has `COMPLIANCE_ROLE`; an active hold; milestone not final;
    /// 0 < duration <= {MAX_HOLD_DURATION}; total hold time within the cap; `reasonHash`
    /// non-zero. Emits {ComplianceHoldRenewed}.
    function renewHold(uint256 dealId, uint256 milestone, bytes32 reasonHash, uint256 duration)
        external
        onlyRole(COMPLIANCE_ROLE)
    {
        (, Milestone storage ms) = _load(dealId, milestone);
        MilestoneStatus status = ms.status;
        if (_isFinal(status)) revert SupplyChainEscrowInvalidStatus(dealId, milestone, status);
        MilestoneState storage st = _states[dealId][milestone];
        uint256 current = st.holdUntil;
        // slither-disable-next-line timestamp
        if (current <= block.timestamp) revert SupplyChainEscrowNoActiveHold(dealId, milestone);
        uint40 until = _holdEnd(reasonHash, duration);
        // the unexpired rest of the current hold is replaced by the new one
        _setHeldTotal(dealId, milestone, uint256(_heldTotal[dealId][milestone]) - (current - block.timestamp) + duration);
        st.holdUntil = until;
        _holdReasons[dealId][milestone] = reasonHash;
        emit ComplianceHoldRenewed(dealId, milestone, msg.sender, reasonHash, until);
    }

    /// @notice Lifts an active hold; its unexpired rest no longer counts as hold time.
    /// @dev Requirements: caller has `COMPLIANCE_ROLE`; an active hold; `reasonHash` (the
    /// decision record) non-zero. Emits {ComplianceHoldLifted}.
    function liftHold(uint256 dealId, uint256 milestone, bytes32 reasonHash) external onlyRole(COMPLIANCE_ROLE) {
        _load(dealId, milestone);
        if (reasonHash == bytes32(0)) revert SupplyChainEscrowZeroHash();
        MilestoneState storage st = _states[dealId][milestone];
        uint256 current = st.holdUntil;
        // slither-disable-next-line timestamp
        if (current <= block.timestamp) revert SupplyChainEscrowNoActiveHold(dealId, milestone);
        _heldTotal[dealId][milestone] -= uint32(current - block.timestamp);
        st.holdUntil = 0;
        delete _holdReasons[dealId][milestone];
        emit ComplianceHoldLifted(dealId, milestone, msg.sender, reasonHash);
    }

    /// @notice Changes the cap on a milestone's total hold time. A lower cap applies at once; a
    /// higher one is scheduled and applies {HOLD_CAP_DELAY} later ({applyHoldCap}), so that
    /// parties see it coming. A lower cap never shortens holds already placed.
    /// @dev Requirements: caller has `DEFAULT_ADMIN_ROLE`; {MAX_HOLD_DURATION} <= cap <=
    /// {MAX_PERIOD}. Emits {HoldCapChanged} or {HoldCapChangeScheduled}.
    function setHoldCap(uint32 cap) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (cap < MAX_HOLD_DURATION || cap > MAX_PERIOD) revert SupplyChainEscrowInvalidHoldCap(cap);
        if (cap <= _config.holdCap) {
            _config.holdCap = cap;
            delete _pendingHoldCap;
            emit HoldCapChanged(cap);
        } else {
            uint40 effectiveAt = uint40(block.timestamp + HOLD_CAP_DELAY);
            _pendingHoldCap = HoldCapChange({cap: cap, effectiveAt: effectiveAt});
            emit HoldCapChangeScheduled(cap, effectiveAt);
        }
    }

    /// @notice Applies a scheduled rise of the hold cap once its delay has passed; anyone may
    /// call. @dev Requirements: a scheduled change whose time has come. Emits {HoldCapChanged}.
    function applyHoldCap() external {
        HoldCapChange memory change = _pendingHoldCap;
        // slither-disable-next-line timestamp
        if (change.effectiveAt == 0 || block.timestamp < change.effectiveAt) {
            revert SupplyChainEscrowHoldCapChangeNotReady(change.effectiveAt);
        }
        _config.holdCap = change.cap;
        delete _pendingHoldCap;
        emit HoldCapChanged(change.cap);
    }

    function _setHeldTotal(uint256 dealId, uint256 milestone, uint256 total) private {
        uint256 cap = _config.holdCap;
        if (total > cap) revert SupplyChainEscrowHoldCapExceeded(dealId, milestone, total, cap);
        _heldTotal[dealId][milestone] = uint32(total); // total <= cap < 2**32
    }

    function _holdEnd(bytes32 reasonHash, uint256 duration) private view returns (uint40) {
        if (reasonHash == bytes32(0)) revert SupplyChainEscrowZeroHash();
        if (duration == 0 || duration > MAX_HOLD_DURATION) revert SupplyChainEscrowInvalidDuration(duration);
        return uint40(block.timestamp + duration);
    }

    // ==========================================================================================
    // Administration
    // ==========================================================================================

    /// @notice Adds `token` to, or removes it from, the allow-list of new deals. Removing a
    /// token never affects existing deals.
    /// @dev Allow-listing refuses tokens that declare a rebasing share interface
    /// (`sharesOf(address)`, as stETH-like tokens, or `scaledBalanceOf(address)`, as
    /// Aave-like and Ampleforth-like tokens): a negative rebase after a deposit would leave the
    /// vault unable to pay its last claimant. Every deposit also checks that the vault received
    /// exactly the amount sent (fee-on-transfer tokens). The rest of the allow-list procedure
    /// (docs/escrow.md) is a review by the token manager.
    /// Requirements: caller has `TOKEN_MANAGER_ROLE`; `token` is a contract; when allowing, it
    /// answers neither probe. Emits {TokenAllowListUpdated}.
    function setTokenAllowed(address token, bool allowed) external onlyRole(TOKEN_MANAGER_ROLE) {
        if (token.code.length == 0) revert SupplyChainEscrowZeroAddress();
        if (allowed && (_answers(token, 0xf5eb42dc) || _answers(token, 0x1da24f3e))) {
            revert SupplyChainEscrowRebasingToken(token); // sharesOf(address), scaledBalanceOf(address)
        }
        TokenInfo memory info = _tokenInfo[token];
        if (info.id == 0) {
            info.id = ++_config.tokenCount;
            _tokens[info.id] = token;
        }
        info.allowed = allowed;
        _tokenInfo[token] = info;
        emit TokenAllowListUpdated(token, allowed, msg.sender);
    }

    /// @dev Whether `token` answers the one-address view `selector` with at least a word.
    function _answers(address token, bytes4 selector) private view returns (bool) {
        // slither-disable-next-line low-level-calls
        (bool ok, bytes memory data) = token.staticcall(abi.encodeWithSelector(selector, address(this)));
        return ok && data.length >= 32;
    }

    /// @notice Sets the vault's compliance gate (issue 13), once: it then checks the clearances
    /// of policy deals and the freezes of parties, and can never be replaced or removed.
    /// @dev Requirements: caller has `DEFAULT_ADMIN_ROLE`; no gate yet; `gate` is a contract.
    /// Emits {EscrowGateSet}.
    function setEscrowGate(IEscrowGate gate) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (address(_gate) != address(0)) revert SupplyChainEscrowGateAlreadySet(address(_gate));
        if (address(gate).code.length == 0) revert SupplyChainEscrowZeroAddress();
        _gate = gate;
        emit EscrowGateSet(address(gate), msg.sender);
    }

    /// @notice Stops new deals, funding and financing (never withdrawals, releases, refunds,
    /// disputes or rulings).
    /// @dev Requirements: caller has `PAUSER_ROLE`; not paused. Emits {Paused}.
    function pause() external onlyRole(PAUSER_ROLE) {
        _requireNotPaused();
        _config.paused = true;
        emit Paused(msg.sender);
    }

    /// @notice Resumes new business.
    /// @dev Requirements: caller has `PAUSER_ROLE`; paused. Emits {Unpaused}.
    function unpause() external onlyRole(PAUSER_ROLE) {
        if (!_config.paused) revert SupplyChainEscrowNotPaused();
        _config.paused = false;
        emit Unpaused(msg.sender);
    }
}
