"""Materialising an action's evaluation inputs from the log (the I/O half of the gate).

:func:`gather_inputs` turns an :class:`ActionRequest` into the JSON object that
:func:`chainaudit.risk.engine.evaluate` reads, with every history figure the rule set needs:

* **velocity**: per window the rule set uses, how many gated actions (create, fund, finance,
  release, refund) moved the party's money in ``(at - window, at]`` and their total. Read from
  the indexed escrow events, plus the actions the gate let through whose transaction the
  indexer has not reached yet (execution records);
* **document uses**: every other deal whose events (``MilestoneCreated``,
  ``MilestoneShipped``, ``FinancingOffered``, ``ReceivableFinanced``) or executed actions
  named one of the action's document or invoice hashes;
* **exposure** (finance only): the advances the financier has outstanding on milestones that
  are not final, in total and on the deal's buyer;
* **party records**: for the deal's buyer, supplier and financier, across every deal they are
  in: *matured* milestones (due date passed, or final), *overdue* ones (due date passed, not
  final) and *defaulted* ones (refunded after the long stop, or settled by a dispute);
* **clearances**: alerts on the same subject that a person resolved as ``cleared``.

The figures are as of the log: run the escrow indexer (``chainaudit serve`` does) so that
it is current.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chainaudit.chain.escrow import MilestoneStatus
from chainaudit.core.canonical import canonicalize
from chainaudit.log.store import Log
from chainaudit.risk.book import RiskBook
from chainaudit.risk.engine import INPUTS_SCHEMA
from chainaudit.risk.ledger import Ledger, indexed_events
from chainaudit.risk.rules import ACTIONS, RuleSet

__all__ = ["ActionRequest", "gather_inputs", "party_record", "subject_of"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionRequest:
    """A money-moving deal action about to be sent.

    ``amount`` is in the token's minor units: the deal total for ``create``, the amount for
    ``fund``, the advance for ``finance``, the milestone's funded amount for ``release`` and
    the refundable total for ``refund``. ``party`` is whose money moves (the buyer, the
    financier, or the payee of a release); ``actor`` sends the transaction. ``documents`` are
    0x-hex 32-byte hashes (purchase orders, shipping documents, invoices).
    """

    action: str
    deal_id: int | None
    milestone: int | None
    amount: int
    token: str
    party: str
    actor: str
    parties: Mapping[str, str | None] = field(default_factory=dict)
    documents: Sequence[str] = ()

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}")
        if self.amount < 0:
            raise ValueError("amount must not be negative")


def subject_of(request: ActionRequest) -> str:
    """The SHA-256 (hex) identifying what an action does, whatever the history around it:
    the same action on the same deal, milestone, party, amount, token and documents has the
    same subject. Alerts are cleared per subject."""
    value = {
        "action": request.action,
        "deal_id": None if request.deal_id is None else str(request.deal_id),
        "milestone": request.milestone,
        "party": request.party.lower(),
        "amount": str(request.amount),
        "token": request.token.lower(),
        "documents": sorted(d.lower() for d in request.documents),
    }
    return hashlib.sha256(canonicalize(value)).hexdigest()


def gather_inputs(
    log: Log,
    book: RiskBook,
    rule_set: RuleSet,
    request: ActionRequest,
    *,
    at: int,
    contract: str | None = None,
    chain_id: int | None = None,
    ledger: Ledger | None = None,
) -> dict[str, Any]:
    """The evaluation inputs of ``request`` at chain time ``at`` (Unix seconds).

    ``contract`` / ``chain_id`` restrict the history to one vault when the log indexes
    several. ``ledger`` may be passed when the caller replayed the events already. The
    result is JSON-able, holds no floats and large amounts as decimal strings.
    """
    book.sync(log)
    if ledger is None:
        events, _ = indexed_events(log, chain_id=chain_id, contract=contract)
        ledger = Ledger.replay(events)
    pending = [e for e in book.executions() if e.tx_hash.lower() not in ledger.tx_hashes]
    party = request.party.lower()

    velocity: dict[str, dict[str, Any]] = {}
    for window in rule_set.velocity_windows():
        count = total = 0
        for action in ledger.actions:
            if action.party.lower() == party and at - window < action.timestamp <= at:
                count, total = count + 1, total + action.amount
        for execution in pending:
            if execution.party.lower() == party and at - window < execution.at <= at:
                count, total = count + 1, total + execution.amount
        velocity[str(window)] = {"count": count, "total": str(total)}

    documents = [d.lower() for d in request.documents]
    uses: dict[str, list[dict[str, Any]]] = {}
    wanted = set(documents)
    for use in ledger.documents:
        if use.document in wanted and use.deal_id != request.deal_id:
            entry = {"deal_id": str(use.deal_id), "milestone": use.milestone, "event": use.event}
            if entry not in uses.setdefault(use.document, []):
                uses[use.document].append(entry)
    for execution in pending:
        if execution.deal_id is None or execution.deal_id == request.deal_id:
            continue
        for document in execution.documents:
            if document.lower() in wanted:
                entry = {
                    "deal_id": str(execution.deal_id),
                    "milestone": None,
                    "event": f"executed:{execution.action}",
                }
                if entry not in uses.setdefault(document.lower(), []):
                    uses[document.lower()].append(entry)

    exposure: dict[str, Any] | None = None
    if request.action == "finance":
        buyer = (request.parties.get("buyer") or "").lower()
        total = on_buyer = 0
        for deal in ledger.deals.values():
            for ms in deal.milestones.values():
                if ms.financier and ms.financier.lower() == party and not ms.final:
                    total += ms.advance
                    if deal.buyer.lower() == buyer:
                        on_buyer += ms.advance
        exposure = {
            "financier": request.party,
            "buyer": request.parties.get("buyer"),
            "buyer_total": str(on_buyer),
            "total": str(total),
        }

    records: dict[str, dict[str, int]] = {}
    for role in ("buyer", "supplier", "financier"):
        address = request.parties.get(role)
        if address:
            records[address.lower()] = party_record(ledger, address, at)

    inputs: dict[str, Any] = {
        "schema": INPUTS_SCHEMA,
        "action": request.action,
        "deal_id": None if request.deal_id is None else str(request.deal_id),
        "milestone": request.milestone,
        "at": at,
        "amount": str(request.amount),
        "token": request.token,
        "party": request.party,
        "actor": request.actor,
        "parties": dict(request.parties),
        "documents": documents,
        "history": {
            "velocity": velocity,
            "document_uses": uses,
            "exposure": exposure,
            "party_records": records,
            "clearances": book.clearances(subject_of(request)),
        },
    }
    return inputs


def party_record(ledger: Ledger, address: str, at: int) -> dict[str, int]:
    """``{"matured", "overdue", "defaulted"}`` milestone counts of ``address`` at ``at``,
    over every deal where it is the buyer or the supplier or financed the milestone."""
    wanted = address.lower()
    matured = overdue = defaulted = 0
    for deal in ledger.deals.values():
        in_deal = wanted in (deal.buyer.lower(), deal.supplier.lower())
        for ms in deal.milestones.values():
            if not in_deal and not (ms.financier and ms.financier.lower() == wanted):
                continue
            due = ms.due_date <= at
            if due or ms.final:
                matured += 1
            if due and not ms.final:
                overdue += 1
            if ms.status in (MilestoneStatus.REFUNDED, MilestoneStatus.SETTLED):
                defaulted += 1
    return {"matured": matured, "overdue": overdue, "defaulted": defaulted}
