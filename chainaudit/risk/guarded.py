"""``GuardedEscrow``: the escrow's money-moving actions, each evaluated by the risk gate first.

Usage (the deals API does this for every create, fund, finance, release and refund; for a
transaction a partner signs itself, :meth:`GuardedEscrow.clearance_for` evaluates the action
and issues the EscrowGate clearance the transaction must carry, which the chain checks)::

    from chainaudit.risk import GuardedEscrow, RiskGate

    from chainaudit.app.context import rules_path
    from chainaudit.core.errors import EscrowError, RiskHoldError

    gate = RiskGate.from_file(services.reader, rules_path(settings),
                              contract=client.address, chain_id=client.chain_id)
    guarded = GuardedEscrow(client, gate, compliance=officer_account)
    try:
        done = guarded.release(caller, deal_id, milestone, requested_by="key:ab12")
    except RiskHoldError as exc:      # outcome "hold": nothing was sent
        ...  # 409: exc.decision_id, exc.alert_id, exc.hold_tx
    except EscrowError as exc:        # the contract refused (the decision is still recorded)
        ...
    done.tx            # the chainaudit.chain.escrow.TxResult, as EscrowClient would return it
    done.decision      # GateDecision: record_id, outcome, alert_id (for "review"), ...

**Constructor.** ``GuardedEscrow(client, gate, *, compliance=None, hold_seconds=7 days,
clearances=None)``:

* ``client``: an :class:`~chainaudit.chain.escrow.EscrowClient` of the vault;
* ``gate``: a :class:`~chainaudit.risk.gate.RiskGate` (the rule set, the log, the alerts);
* ``compliance``: the ``LocalAccount`` holding ``COMPLIANCE_ROLE`` on the vault, or ``None``.
  With it, a ``hold`` outcome on the release of a funded milestone also places an on-chain
  compliance hold on that milestone, and :meth:`GuardedEscrow.place_hold`,
  :meth:`~GuardedEscrow.renew_hold` and :meth:`~GuardedEscrow.lift_hold` work;
* ``hold_seconds``: how long such a hold lasts (at most 30 days, the contract's maximum);
* ``clearances``: the :class:`~chainaudit.risk.clearance.ClearanceSigner` of the vault's
  ``EscrowGate`` (issue 13), or ``None``. With it, every ``fund``, ``accept_financing`` and
  ``release`` the gate lets through carries a clearance bound to its decision record (recorded
  as ``risk:clearance:...``), which deals under the gate's compliance policy need on chain;
  :meth:`GuardedEscrow.clearance_for` issues one for a transaction the partner signs itself,
  and :meth:`~GuardedEscrow.freeze_account` / :meth:`~GuardedEscrow.unfreeze_account` freeze
  parties in the gate.

**Each guarded action** (:meth:`~GuardedEscrow.create_deal`, :meth:`~GuardedEscrow.fund`,
:meth:`~GuardedEscrow.accept_financing`, :meth:`~GuardedEscrow.release`,
:meth:`~GuardedEscrow.reclaim_after_long_stop`) takes the same arguments as the
``EscrowClient`` method plus an optional ``requested_by`` (who asked: ``key:<id>``,
``cli:<user>``; stored in the decision record), and:

1. reads the deal's state on chain and builds the :class:`~chainaudit.risk.history.
   ActionRequest`;
2. :meth:`RiskGate.check` evaluates it and appends the decision record (and, for ``review``
   and ``hold``, the alert) to the log, durably, before anything is sent;
3. ``allow`` and ``review``: sends the transaction, appends a ``risk_execution`` record with
   its hash (or the error) and returns a :class:`GuardedResult`; ``hold``: sends nothing,
   places the compliance hold described above (reason hash = the decision record's leaf
   hash, so the hold points at the evidence) and raises
   :class:`~chainaudit.core.errors.RiskHoldError`.

**Exceptions.** :class:`~chainaudit.core.errors.RiskHoldError` (outcome ``hold``; carries
``decision_id``, ``alert_id``, ``hold_tx``, ``fired``); :class:`~chainaudit.core.errors.EscrowError`
when the contract refuses (the decision and the failed execution are recorded), including
``SupplyChainEscrowUnknownDeal`` before any evaluation for an unknown deal;
:class:`~chainaudit.core.errors.ChainUnavailableError` / :class:`~chainaudit.core.errors.ChainError`
for the endpoint; :class:`~chainaudit.core.errors.RiskError` for a hold method called without a
compliance account; :class:`~chainaudit.core.errors.StoreError` when the log cannot be written (then
nothing is sent).

``request_release`` and ``approve_release`` (maker-checker) move no money: they pass through
to the client unchanged (the indexer records their events).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

from eth_account.signers.local import LocalAccount

from chainaudit.chain.escrow import (
    Deal,
    DealParams,
    DecodedEvent,
    EscrowClient,
    Milestone,
    MilestoneParams,
    MilestoneStatus,
    TxResult,
)
from chainaudit.core import provenance
from chainaudit.core.errors import (
    ChainauditError,
    ChainError,
    EscrowError,
    RiskError,
    RiskHoldError,
)
from chainaudit.core.records import prepare
from chainaudit.log.actions import now_rfc3339
from chainaudit.risk import freeze, holds
from chainaudit.risk.clearance import ACTIONS, Clearance, ClearanceSigner
from chainaudit.risk.decisions import DECISION_KIND
from chainaudit.risk.freeze import FreezeResult
from chainaudit.risk.gate import GateDecision, RiskGate
from chainaudit.risk.history import ActionRequest
from chainaudit.risk.holds import HoldResult
from chainaudit.risk.rules import Outcome

__all__ = ["MAX_HOLD_SECONDS", "ClearanceGrant", "GuardedEscrow", "GuardedResult", "HoldResult"]

logger = logging.getLogger(__name__)

MAX_HOLD_SECONDS: Final = 30 * 24 * 3600
"""``SupplyChainEscrow.MAX_HOLD_DURATION``."""
DEFAULT_HOLD_SECONDS: Final = 7 * 24 * 3600


class _Plan(NamedTuple):
    """What a guarded action asks the gate, and how a ``hold`` outcome is enforced."""

    request: ActionRequest
    at: int
    """The time the rules evaluate at (the deal's chain time)."""
    hold: tuple[int, int] | None = None
    """The (deal, milestone) to put on compliance hold on a ``hold`` outcome, if any."""
    created: bool = False
    """Whether the action creates the deal (its execution record then names the new id)."""


@dataclass(frozen=True, slots=True)
class GuardedResult:
    """A guarded action that was sent: its transaction and the decision that let it through.

    It also offers the :class:`~chainaudit.chain.escrow.TxResult` interface (``tx_hash``,
    ``block_number``, ``events``, ``event()``, ``deal_id`` ...), delegated to :attr:`tx`.
    """

    tx: TxResult
    decision: GateDecision
    execution_id: str | None
    """The ``risk_execution`` record linking the decision to the transaction (``None`` in the
    rare case the log refused it after the transaction was mined: the action happened, and
    the escrow indexer records its events)."""

    @property
    def outcome(self) -> Outcome:
        return self.decision.outcome

    # The TxResult interface, so that a GuardedResult can stand in for one.

    @property
    def tx_hash(self) -> str:
        return self.tx.tx_hash

    @property
    def block_number(self) -> int:
        return self.tx.block_number

    @property
    def block_hash(self) -> str:
        return self.tx.block_hash

    @property
    def gas_used(self) -> int:
        return self.tx.gas_used

    @property
    def events(self) -> tuple[DecodedEvent, ...]:
        return self.tx.events

    @property
    def deal_id(self) -> int:
        return self.tx.deal_id

    def named(self, name: str) -> list[DecodedEvent]:
        return self.tx.named(name)

    def event(self, name: str) -> DecodedEvent:
        return self.tx.event(name)


@dataclass(frozen=True, slots=True)
class ClearanceGrant:
    """A clearance issued for a transaction the partner signs itself, and its decision."""

    clearance: Clearance
    decision: GateDecision
    record_id: str | None
    """The ``risk:clearance:`` record of the issuance (``None`` if the log refused it)."""


class GuardedEscrow:
    """The escrow actions that move or commit money, gated by ``gate`` (see the module).

    ``clearances`` (issue 13): the signer of the vault gate's clearances. With it, every
    ``fund``, ``accept_financing`` and ``release`` that the gate lets through is sent with a
    clearance bound to its decision record's leaf hash, which a deal under the gate's
    compliance policy needs on chain; :meth:`clearance_for` issues one for a transaction the
    partner signs itself. A ``hold`` gets no clearance.
    """

    def __init__(
        self,
        client: EscrowClient,
        gate: RiskGate,
        *,
        compliance: LocalAccount | None = None,
        hold_seconds: int = DEFAULT_HOLD_SECONDS,
        clearances: ClearanceSigner | None = None,
    ) -> None:
        if not 0 < hold_seconds <= MAX_HOLD_SECONDS:
            raise ValueError(f"hold_seconds must be in (0, {MAX_HOLD_SECONDS}]")
        self.client = client
        self.gate = gate
        self.compliance = compliance
        self.hold_seconds = hold_seconds
        self.clearances = clearances

    # -- guarded actions ---------------------------------------------------------------------

    def create_deal(
        self,
        buyer: LocalAccount,
        params: DealParams,
        milestones: Sequence[MilestoneParams],
        *,
        requested_by: str | None = None,
    ) -> GuardedResult:
        """Evaluate, then :meth:`EscrowClient.create_deal`. The decision has no deal id (the
        deal does not exist yet); its execution record names the new deal."""
        plan = self._plan_create(buyer.address, params, milestones)
        return self._run(
            plan, lambda _c: self.client.create_deal(buyer, params, milestones), requested_by
        )

    def fund(
        self,
        buyer: LocalAccount,
        deal_id: int,
        milestone: int,
        amount: int,
        *,
        requested_by: str | None = None,
    ) -> GuardedResult:
        """Evaluate, then :meth:`EscrowClient.fund`."""
        plan = self._plan_fund(buyer.address, deal_id, milestone, amount)
        return self._run(
            plan,
            lambda c: self.client.fund(buyer, deal_id, milestone, amount, clearance=c),
            requested_by,
        )

    def accept_financing(
        self,
        financier: LocalAccount,
        deal_id: int,
        milestone: int,
        *,
        advance: int,
        invoice_hash: bytes,
        requested_by: str | None = None,
    ) -> GuardedResult:
        """Evaluate, then :meth:`EscrowClient.accept_financing` (the advance leaves the
        financier; the invoice hash is checked against every other deal)."""
        plan = self._plan_finance(financier.address, deal_id, milestone, advance, invoice_hash)
        return self._run(
            plan,
            lambda c: self.client.accept_financing(
                financier,
                deal_id,
                milestone,
                advance=advance,
                invoice_hash=invoice_hash,
                clearance=c,
            ),
            requested_by,
        )

    def release(
        self,
        caller: LocalAccount,
        deal_id: int,
        milestone: int,
        *,
        requested_by: str | None = None,
    ) -> GuardedResult:
        """Evaluate, then :meth:`EscrowClient.release`. On ``hold``, a funded milestone is
        also put on compliance hold on chain when a compliance account is configured."""
        plan = self._plan_release(caller.address, deal_id, milestone)
        return self._run(
            plan,
            lambda c: self.client.release(caller, deal_id, milestone, clearance=c),
            requested_by,
        )

    def reclaim_after_long_stop(
        self, buyer: LocalAccount, deal_id: int, *, requested_by: str | None = None
    ) -> GuardedResult:
        """Evaluate, then :meth:`EscrowClient.reclaim_after_long_stop` (the amount is every
        milestone's funds that the reclaim would return)."""
        plan = self._plan_refund(buyer.address, deal_id)
        return self._run(
            plan, lambda _c: self.client.reclaim_after_long_stop(buyer, deal_id), requested_by
        )

    def clearance_for(
        self,
        party: str,
        deal_id: int,
        milestone: int,
        action: str,
        *,
        amount: int | None = None,
        invoice_hash: bytes | None = None,
        requested_by: str | None = None,
    ) -> ClearanceGrant:
        """Evaluate ``action`` (``fund``, ``finance`` or ``release``) of ``party`` exactly as
        the method of the same action would, and on ``allow`` or ``review`` issue the
        clearance the partner appends to the transaction it signs itself.

        ``amount``: the funding amount (``fund``) or the advance (``finance``, with
        ``invoice_hash``); a release clears the escrowed amount. Raises
        :class:`~chainaudit.core.errors.RiskHoldError` on ``hold`` (no clearance),
        :class:`~chainaudit.core.errors.RiskError` when no clearance signer is configured and
        :class:`ValueError` for an action that needs no clearance or a missing argument.
        """
        if self.clearances is None:
            raise RiskError("no clearance signer is configured: clearances cannot be issued")
        if action == "fund" and amount is not None:
            plan = self._plan_fund(party, deal_id, milestone, amount)
        elif action == "finance" and amount is not None and invoice_hash is not None:
            plan = self._plan_finance(party, deal_id, milestone, amount, invoice_hash)
        elif action == "release":
            plan = self._plan_release(party, deal_id, milestone)
        else:
            raise ValueError(f"cannot clear {action!r} with these arguments")
        decision = self.gate.check(plan.request, at=plan.at, requested_by=requested_by)
        if decision.outcome is Outcome.HOLD:
            self._refuse(decision, plan.hold)
        clearance = self._issue(plan, decision)
        assert clearance is not None  # a money action and a signer: always issued
        return ClearanceGrant(clearance, decision, self._record_clearance(decision, clearance))

    # -- what each action asks the gate ------------------------------------------------------

    def _plan_create(
        self, buyer: str, params: DealParams, milestones: Sequence[MilestoneParams]
    ) -> _Plan:
        request = ActionRequest(
            action="create",
            deal_id=None,
            milestone=None,
            amount=sum(m.amount for m in milestones),
            token=params.token,
            party=buyer,
            actor=buyer,
            parties={
                "buyer": buyer,
                "supplier": params.supplier,
                "financier": params.financier,
                "arbiter": params.arbiter,
            },
            documents=["0x" + bytes(m.document_hash).hex() for m in milestones],
        )
        return _Plan(request, self._chain_time(), created=True)

    def _plan_fund(self, buyer: str, deal_id: int, milestone: int, amount: int) -> _Plan:
        deal = self.client.deal(deal_id)
        ms = _milestone(deal, milestone)
        request = ActionRequest(
            action="fund",
            deal_id=deal_id,
            milestone=milestone,
            amount=amount,
            token=deal.token,
            party=buyer,
            actor=buyer,
            parties=_parties(deal, ms),
            documents=_documents(ms),
        )
        return _Plan(request, deal.timestamp)

    def _plan_finance(
        self, financier: str, deal_id: int, milestone: int, advance: int, invoice_hash: bytes
    ) -> _Plan:
        deal = self.client.deal(deal_id)
        ms = _milestone(deal, milestone)
        request = ActionRequest(
            action="finance",
            deal_id=deal_id,
            milestone=milestone,
            amount=advance,
            token=deal.token,
            party=financier,
            actor=financier,
            parties={**_parties(deal, ms), "financier": financier},
            documents=["0x" + bytes(invoice_hash).hex(), *_documents(ms)],
        )
        return _Plan(request, deal.timestamp)

    def _plan_release(self, caller: str, deal_id: int, milestone: int) -> _Plan:
        deal = self.client.deal(deal_id)
        ms = _milestone(deal, milestone)
        request = ActionRequest(
            action="release",
            deal_id=deal_id,
            milestone=milestone,
            amount=ms.funded if ms is not None else 0,
            token=deal.token,
            party=ms.payee if ms is not None else deal.supplier,
            actor=caller,
            parties=_parties(deal, ms),
            documents=_documents(ms),
        )
        holdable = ms is not None and ms.funded > 0 and not ms.status.final
        return _Plan(request, deal.timestamp, hold=(deal_id, milestone) if holdable else None)

    def _plan_refund(self, buyer: str, deal_id: int) -> _Plan:
        deal = self.client.deal(deal_id)
        open_ms = [
            m
            for m in deal.milestones
            if not m.status.final
            and m.status not in (MilestoneStatus.DISPUTED, MilestoneStatus.ACCEPTED)
            # accepted or financed money is never refunded by default
            and not m.deemed_accepted
            and not m.financed
        ]
        request = ActionRequest(
            action="refund",
            deal_id=deal_id,
            milestone=None,
            amount=sum(m.funded for m in open_ms),
            token=deal.token,
            party=deal.buyer,
            actor=buyer,
            parties=_parties(deal, None),
            documents=[],
        )
        return _Plan(request, deal.timestamp)

    # -- maker-checker (no money moves) --------------------------------------------------------

    def request_release(self, maker: LocalAccount, deal_id: int, milestone: int) -> TxResult:
        """:meth:`EscrowClient.request_release`, unchanged."""
        return self.client.request_release(maker, deal_id, milestone)

    def approve_release(self, checker: LocalAccount, deal_id: int, milestone: int) -> TxResult:
        """:meth:`EscrowClient.approve_release`, unchanged."""
        return self.client.approve_release(checker, deal_id, milestone)

    # -- compliance holds ----------------------------------------------------------------------

    def place_hold(
        self,
        deal_id: int,
        milestone: int,
        *,
        reason_hash: bytes,
        by: str,
        duration: int | None = None,
        note: str | None = None,
        decision_id: str | None = None,
        alert_id: str | None = None,
    ) -> HoldResult:
        """Place a compliance hold (``duration`` seconds, default :attr:`hold_seconds`) and
        append its ``hold`` decision record. ``by`` names the person or service responsible."""
        return holds.place_hold(
            self.gate.log,
            self.client,
            self._officer(),
            deal_id,
            milestone,
            reason_hash=reason_hash,
            duration=duration or self.hold_seconds,
            by=by,
            note=note,
            decision_id=decision_id,
            alert_id=alert_id,
        )

    def renew_hold(
        self,
        deal_id: int,
        milestone: int,
        *,
        reason_hash: bytes,
        by: str,
        duration: int | None = None,
        note: str | None = None,
    ) -> HoldResult:
        """Extend an active hold to ``duration`` seconds from now; append its record."""
        return holds.renew_hold(
            self.gate.log,
            self.client,
            self._officer(),
            deal_id,
            milestone,
            reason_hash=reason_hash,
            duration=duration or self.hold_seconds,
            by=by,
            note=note,
        )

    def lift_hold(
        self,
        deal_id: int,
        milestone: int,
        *,
        reason_hash: bytes,
        by: str,
        note: str | None = None,
        alert_id: str | None = None,
    ) -> HoldResult:
        """Lift an active hold (``reason_hash``: the hash of the decision to lift it, for
        example the leaf hash of the alert's resolution record); append its record."""
        return holds.lift_hold(
            self.gate.log,
            self.client,
            self._officer(),
            deal_id,
            milestone,
            reason_hash=reason_hash,
            by=by,
            note=note,
            alert_id=alert_id,
        )

    # -- freezes (issue 13) --------------------------------------------------------------------

    def freeze_account(
        self,
        account: str,
        *,
        duration: int,
        reason_hash: bytes,
        by: str,
        note: str | None = None,
    ) -> FreezeResult:
        """Freeze ``account`` in the vault's gate for ``duration`` seconds (renewable) and
        append its ``freeze`` record; the compliance account signs."""
        return freeze.freeze_account(
            self.gate.log,
            self.client,
            self._officer(),
            account,
            duration=duration,
            reason_hash=reason_hash,
            by=by,
            note=note,
        )

    def unfreeze_account(
        self, account: str, *, reason_hash: bytes, by: str, note: str | None = None
    ) -> FreezeResult:
        """Lift ``account``'s freeze and append its ``freeze`` record."""
        return freeze.unfreeze_account(
            self.gate.log,
            self.client,
            self._officer(),
            account,
            reason_hash=reason_hash,
            by=by,
            note=note,
        )

    # -- internals -----------------------------------------------------------------------------

    def _officer(self) -> LocalAccount:
        if self.compliance is None:
            raise RiskError("no compliance account is configured: holds cannot be placed")
        return self.compliance

    def _chain_time(self) -> int:
        chain = self.client.chain
        block = chain.run("eth_getBlockByNumber", lambda: chain.w3.eth.get_block("latest"))
        return int(block["timestamp"])

    def _run(
        self,
        plan: _Plan,
        send: Callable[[bytes], TxResult],
        requested_by: str | None,
    ) -> GuardedResult:
        decision = self.gate.check(plan.request, at=plan.at, requested_by=requested_by)
        if decision.outcome is Outcome.HOLD:
            self._refuse(decision, plan.hold)  # raises: a hold gets no clearance
        clearance = self._issue(plan, decision)
        if clearance is not None:
            self._record_clearance(decision, clearance)
        try:
            tx = send(clearance.encoded if clearance is not None else b"")
        except EscrowError as exc:
            self.gate.record_execution(decision, tx_hash=exc.tx_hash, error=exc.name)
            raise
        except ChainError as exc:
            self.gate.record_execution(decision, tx_hash=None, error=str(exc)[:500])
            raise
        try:
            execution: str | None = self.gate.record_execution(
                decision, tx_hash=tx.tx_hash, deal_id=tx.deal_id if plan.created else None
            )
        except ChainauditError:  # sent and mined: report success; the indexer records it
            logger.exception("risk: the execution of %s was not recorded", decision.record_id)
            execution = None
        return GuardedResult(tx, decision, execution)

    def _issue(self, plan: _Plan, decision: GateDecision) -> Clearance | None:
        """The clearance of an allowed money movement (``None``: no signer, or no money)."""
        request = plan.request
        if (
            self.clearances is None
            or request.action not in ACTIONS
            or request.deal_id is None
            or request.milestone is None
        ):
            return None
        return self.clearances.issue(
            deal_id=int(request.deal_id),
            milestone=int(request.milestone),
            action=request.action,
            amount=int(request.amount),
            decision_leaf=decision.leaf_hash,
            nonce=decision.leaf_index,
            now=self._chain_time(),
        )

    def _record_clearance(self, decision: GateDecision, clearance: Clearance) -> str | None:
        """Append the ``risk:clearance:`` record of an issued clearance (stamped by the risk
        service); a failure is logged, not raised: the decision record is the evidence."""
        record_id = decision.record_id.replace("risk:decision:", "risk:clearance:", 1)
        payload = {"type": "risk_clearance", "decision_id": decision.record_id}
        payload.update({k: v for k, v in clearance.as_json().items() if k != "encoded"})
        payload["deal_id"] = str(clearance.deal_id)
        try:
            record = prepare(
                {
                    "id": record_id,
                    "kind": DECISION_KIND,
                    "timestamp": now_rfc3339(),
                    "actor": self.gate.actor,
                    "payload": payload,
                },
                submitter=provenance.RISK,
            )
            log = self.gate.log
            log.append([record])
            self.gate.book.sync(log)
        except ChainauditError:
            logger.exception("risk: the clearance of %s was not recorded", decision.record_id)
            return None
        return record_id

    def _refuse(self, decision: GateDecision, hold: tuple[int, int] | None) -> None:
        hold_tx: str | None = None
        problem = ""
        if hold is not None and self.compliance is not None:
            try:
                placed = self.place_hold(
                    *hold,
                    reason_hash=decision.leaf_hash,
                    by=self.gate.actor,
                    note=f"risk decision {decision.record_id}",
                    decision_id=decision.record_id,
                    alert_id=decision.alert_id,
                )
                hold_tx = placed.tx.tx_hash
            except EscrowError as exc:  # already on hold, or final meanwhile: still refused
                logger.warning("risk: no compliance hold placed: %s", exc)
                problem = f"; no on-chain hold placed ({exc.name})"
        fired = decision.evaluation.fired_ids
        raise RiskHoldError(
            f"risk decision {decision.record_id}: hold ({', '.join(fired)}); alert "
            f"{decision.alert_id}; nothing was sent"
            + (f"; milestone put on compliance hold (tx {hold_tx})" if hold_tx else problem),
            decision_id=decision.record_id,
            alert_id=decision.alert_id,
            hold_tx=hold_tx,
            fired=fired,
        )


def _milestone(deal: Deal, index: int) -> Milestone | None:
    return deal.milestones[index] if 0 <= index < len(deal.milestones) else None


def _parties(deal: Deal, ms: Milestone | None) -> Mapping[str, str | None]:
    financier = deal.financier
    if ms is not None and ms.financed:
        financier = ms.payee
    return {
        "buyer": deal.buyer,
        "supplier": deal.supplier,
        "financier": financier,
        "arbiter": deal.arbiter,
    }


def _documents(ms: Milestone | None) -> list[str]:
    if ms is None:
        return []
    found = []
    if ms.document_hash:
        found.append("0x" + bytes(ms.document_hash).hex())
    if any(ms.shipping_document):
        found.append("0x" + bytes(ms.shipping_document).hex())
    return found
