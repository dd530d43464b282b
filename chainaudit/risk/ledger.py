"""The escrow's books as the log knows them: indexed ``escrow_event`` records replayed into
per-deal, per-milestone amounts, per-account credits and every movement of money.

:func:`indexed_events` reads the live events of the log (an event retracted after a
reorganisation is left out); :meth:`Ledger.replay` applies them in chain order. The risk
history (:mod:`chainaudit.risk.history`), reconciliation (:mod:`chainaudit.service.reconcile`) and
per-party statements (:mod:`chainaudit.service.statements`) all read the same ledger, so they agree
with each other by construction.

Event arguments are as the indexer stores them: integers of at most 53 bits as JSON numbers,
wider ones (``uint256``) as decimal strings, bytes as 0x-hex, addresses checksummed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from chainaudit.chain.escrow import MilestoneStatus
from chainaudit.core.provenance import document_entitled
from chainaudit.log.store import Entry, Log

__all__ = [
    "ActionEvent",
    "DealBook",
    "DocumentUse",
    "EventCache",
    "IndexedEvent",
    "Ledger",
    "MilestoneBook",
    "Movement",
    "indexed_events",
]

EVENT_KIND: Final = "escrow_event"
FINAL: Final = frozenset(
    {MilestoneStatus.RELEASED, MilestoneStatus.SETTLED, MilestoneStatus.REFUNDED}
)
_STATUS_OF: Final = {
    "MilestoneShipped": MilestoneStatus.SHIPPED,
    "MilestoneInspected": MilestoneStatus.INSPECTED,
    "MilestoneAccepted": MilestoneStatus.ACCEPTED,
    "DisputeOpened": MilestoneStatus.DISPUTED,
    "MilestoneEscalated": MilestoneStatus.DISPUTED,
}


@dataclass(frozen=True, slots=True)
class IndexedEvent:
    """One live escrow event record of the log."""

    record_id: str
    leaf_index: int
    name: str
    deal_id: int | None
    args: Mapping[str, Any]
    chain_id: int
    contract: str
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    timestamp: int
    """The block's time, Unix seconds."""
    tx_from: str | None

    @property
    def key(self) -> tuple[str, int, str]:
        """``(tx hash, log index, block hash)``, lowercase: the event's identity on chain."""
        return (self.tx_hash.lower(), self.log_index, self.block_hash.lower())


def indexed_events(
    log: Log, *, chain_id: int | None = None, contract: str | None = None, page: int = 5_000
) -> tuple[list[IndexedEvent], list[tuple[str, str]]]:
    """The live escrow events of ``log`` in chain order (block, log index), and the
    ``(record id, reason)`` of every ``escrow_event`` record that could not be read.

    Only records the indexer wrote count (their stamped ``submitter`` is entitled to the
    ``escrow_event`` kind, :func:`chainaudit.core.provenance.document_entitled`): an event or a
    retraction that reached the log any other way is ignored (``chainaudit reconcile``
    reports it). Retracted events (a retraction record names them) are left out, and so are
    events of another chain or vault when ``chain_id`` / ``contract`` are given. Erased records are
    skipped silently (their content is gone by design).
    """
    cache = EventCache(chain_id=chain_id, contract=contract, page=page)
    return cache.update(log), list(cache.unreadable)


class EventCache:
    """The live escrow events of a log, read incrementally: :meth:`update` parses only the
    records appended since its last call (the log is append-only). Thread-safe.

    Records whose stamped submitter is not entitled to write escrow events are skipped (their
    ids collect in :attr:`unentitled`), so a forged event or retraction changes no book."""

    def __init__(
        self, *, chain_id: int | None = None, contract: str | None = None, page: int = 5_000
    ) -> None:
        self.chain_id = chain_id
        self.contract = contract.lower() if contract else None
        self.page = page
        self.unreadable: list[tuple[str, str]] = []
        self.unentitled: list[str] = []
        """Ids of ``escrow_event`` records whose submitter is not the indexer (ignored)."""
        self._events: dict[str, IndexedEvent] = {}
        self._retracted: set[str] = set()
        self._next = 0
        self._lock = threading.Lock()

    def update(self, log: Log) -> list[IndexedEvent]:
        """Read the new records of ``log``; return every live event in chain order."""
        with self._lock:
            size = log.refresh()  # every leaf below this size is committed
            while self._next < size:
                batch = log.scan(start=self._next, limit=self.page, kind=EVENT_KIND)
                for entry in batch:
                    self._read(entry)
                if batch:
                    self._next = batch[-1].index + 1
                if len(batch) < self.page:
                    self._next = max(self._next, size)
                    break
            live = [e for rid, e in self._events.items() if rid not in self._retracted]
        live.sort(key=lambda e: (e.block_number, e.log_index, e.leaf_index))
        return live

    def _read(self, entry: Entry) -> None:
        if entry.body is None:
            return
        try:
            document = json.loads(entry.body)
            if not document_entitled(document):
                self.unentitled.append(entry.record_id)
                return  # not written by the indexer: neither an event nor a retraction
            payload = document["payload"]
            if payload.get("type") == "retraction":
                self._retracted.add(str(payload["retracts"]))
                return
            if self.chain_id is not None and payload.get("chain_id") != self.chain_id:
                return
            if self.contract is not None and str(payload.get("contract", "")).lower() != (
                self.contract
            ):
                return
            deal = payload.get("deal_id")
            self._events[entry.record_id] = IndexedEvent(
                record_id=entry.record_id,
                leaf_index=entry.index,
                name=str(payload["event"]),
                deal_id=None if deal is None else int(deal),
                args=dict(payload.get("args") or {}),
                chain_id=int(payload["chain_id"]),
                contract=str(payload["contract"]),
                block_number=int(payload["block_number"]),
                block_hash=str(payload["block_hash"]),
                tx_hash=str(payload["tx_hash"]),
                log_index=int(payload["log_index"]),
                timestamp=entry.timestamp_ms // 1000,
                tx_from=payload.get("tx_from"),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self.unreadable.append((entry.record_id, f"not a readable escrow event: {exc!r}"))


# -- the books --------------------------------------------------------------------------------


@dataclass(slots=True)
class MilestoneBook:
    """A milestone as the events tell it."""

    index: int
    amount: int
    due_date: int
    document_hash: str
    status: MilestoneStatus = MilestoneStatus.OPEN
    funded: int = 0
    released: int = 0
    refunded: int = 0
    financier: str | None = None
    advance: int = 0
    invoice_hash: str | None = None
    shipping_document: str | None = None
    hold_until: int = 0

    @property
    def held(self) -> int:
        """Still escrowed: funded and neither released nor refunded."""
        return self.funded - self.released - self.refunded

    @property
    def final(self) -> bool:
        return self.status in FINAL


@dataclass(slots=True)
class DealBook:
    """A deal as the events tell it."""

    deal_id: int
    buyer: str
    supplier: str
    arbiter: str
    token: str
    created_at: int
    record_id: str
    tx_hash: str
    financier: str | None = None
    milestones: dict[int, MilestoneBook] = field(default_factory=dict)

    def payee(self, milestone: int) -> str:
        """Who a release pays: the financier once the claim was financed, else the supplier."""
        book = self.milestones.get(milestone)
        return book.financier if book is not None and book.financier else self.supplier

    def accounting(self) -> tuple[int, int, int, int]:
        """``(funded, released, refunded, held)`` over the milestones (``dealAccounting``)."""
        books = self.milestones.values()
        return (
            sum(m.funded for m in books),
            sum(m.released for m in books),
            sum(m.refunded for m in books),
            sum(m.held for m in books),
        )


@dataclass(frozen=True, slots=True)
class Movement:
    """One movement of a party's money, from the event that recorded it.

    ``direction`` is seen from the party: ``out`` left its wallet (funding, an advance paid)
    or its credit (a withdrawal pays the credit out to the wallet: ``withdrawal``), ``in``
    was credited to it in the vault (release, settlement share, refund, advance received).
    """

    party: str
    kind: str
    direction: str
    amount: int
    token: str
    deal_id: int | None
    milestone: int | None
    counterparty: str | None
    event: IndexedEvent


@dataclass(frozen=True, slots=True)
class ActionEvent:
    """A gated action (create, fund, finance, release, refund) as it happened on chain."""

    action: str
    party: str
    amount: int
    timestamp: int
    tx_hash: str
    deal_id: int


@dataclass(frozen=True, slots=True)
class DocumentUse:
    """A document or invoice hash named by a deal's event."""

    document: str
    deal_id: int
    milestone: int | None
    event: str


@dataclass
class Ledger:
    """The escrow's books replayed from its events (see :meth:`replay`).

    ``credits`` maps ``(lowercase account, lowercase token)`` to the withdrawable amount;
    ``vault_in``/``vault_out`` the tokens the vault received (funding, advances) and paid out
    (withdrawals) per lowercase token. ``problems`` lists events that do not fit the books
    (for example a milestone event of a deal with no ``DealCreated``).
    """

    deals: dict[int, DealBook] = field(default_factory=dict)
    credits: dict[tuple[str, str], int] = field(default_factory=dict)
    accounts: dict[str, str] = field(default_factory=dict)
    """Lowercase -> checksummed, for every account that appeared."""
    vault_in: dict[str, int] = field(default_factory=dict)
    vault_out: dict[str, int] = field(default_factory=dict)
    movements: list[Movement] = field(default_factory=list)
    actions: list[ActionEvent] = field(default_factory=list)
    documents: list[DocumentUse] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tx_hashes: set[str] = field(default_factory=set)
    """Every transaction (lowercase hash) that emitted one of the replayed events."""
    paused: bool = False

    @classmethod
    def replay(cls, events: Iterable[IndexedEvent]) -> Ledger:
        """Apply ``events`` (in chain order) to empty books."""
        ledger = cls()
        refund_txs: dict[tuple[str, int], int] = {}
        for event in events:
            ledger.tx_hashes.add(event.tx_hash.lower())
            try:
                ledger._apply(event, refund_txs)
            except (KeyError, ValueError, TypeError) as exc:
                ledger.problems.append(
                    f"event {event.record_id} ({event.name}) does not fit the books: {exc!r}"
                )
        for deal in ledger.deals.values():
            total = sum(m.amount for m in deal.milestones.values())
            ledger.actions.append(
                ActionEvent(
                    "create", deal.buyer, total, deal.created_at, deal.tx_hash, deal.deal_id
                )
            )
        ledger.actions.sort(key=lambda a: a.timestamp)
        return ledger

    # -- queries -----------------------------------------------------------------------------

    def credit(self, account: str, token: str) -> int:
        return self.credits.get((account.lower(), token.lower()), 0)

    def movements_of(self, party: str) -> list[Movement]:
        """Every movement of ``party``'s money, in chain order."""
        wanted = party.lower()
        return [m for m in self.movements if m.party.lower() == wanted]

    def tokens(self) -> set[str]:
        """Every token (lowercase) a deal uses."""
        return {d.token.lower() for d in self.deals.values()}

    # -- replay ------------------------------------------------------------------------------

    def _account(self, address: str) -> str:
        self.accounts.setdefault(address.lower(), address)
        return address

    def _credit(self, account: str, token: str, amount: int) -> None:
        key = (self._account(account).lower(), token.lower())
        self.credits[key] = self.credits.get(key, 0) + amount

    def _move(
        self,
        event: IndexedEvent,
        party: str,
        kind: str,
        direction: str,
        amount: int,
        token: str,
        milestone: int | None,
        counterparty: str | None,
    ) -> None:
        self.movements.append(
            Movement(
                party=self._account(party),
                kind=kind,
                direction=direction,
                amount=amount,
                token=token,
                deal_id=event.deal_id,
                milestone=milestone,
                counterparty=counterparty,
                event=event,
            )
        )

    def _apply(self, event: IndexedEvent, refund_txs: dict[tuple[str, int], int]) -> None:
        a = event.args
        name = event.name
        if name == "Withdrawn":
            account, token, amount = str(a["account"]), str(a["token"]), _n(a["amount"])
            self._credit(account, token, -amount)
            self.vault_out[token.lower()] = self.vault_out.get(token.lower(), 0) + amount
            self._move(event, account, "withdrawal", "out", amount, token, None, None)
            return
        if name in ("Paused", "Unpaused"):
            self.paused = name == "Paused"
            return
        if event.deal_id is None:
            return  # registry and administration events carry no money
        deal_id = event.deal_id
        if name == "DealCreated":
            self.deals[deal_id] = DealBook(
                deal_id=deal_id,
                buyer=self._account(str(a["buyer"])),
                supplier=self._account(str(a["supplier"])),
                arbiter=str(a["arbiter"]),
                token=str(a["token"]),
                created_at=event.timestamp,
                record_id=event.record_id,
                tx_hash=event.tx_hash,
            )
            return
        deal = self.deals[deal_id]
        if name == "DealControlsSet":
            financier = str(a["financier"])
            deal.financier = None if int(financier, 16) == 0 else financier
            return
        milestone = int(a["milestone"]) if "milestone" in a else None
        if name == "MilestoneCreated":
            assert milestone is not None
            document = str(a["documentHash"]).lower()
            deal.milestones[milestone] = MilestoneBook(
                index=milestone,
                amount=_n(a["amount"]),
                due_date=_n(a["dueDate"]),
                document_hash=document,
            )
            self.documents.append(DocumentUse(document, deal_id, milestone, name))
            return
        if milestone is None:
            return
        ms = deal.milestones[milestone]
        token = deal.token
        if name == "MilestoneFunded":
            amount = _n(a["amount"])
            ms.funded += amount
            if ms.funded >= ms.amount:
                ms.status = MilestoneStatus.FUNDED
            self.vault_in[token.lower()] = self.vault_in.get(token.lower(), 0) + amount
            self._move(event, deal.buyer, "funding", "out", amount, token, milestone, None)
            self.actions.append(
                ActionEvent("fund", deal.buyer, amount, event.timestamp, event.tx_hash, deal_id)
            )
        elif name in _STATUS_OF:
            ms.status = _STATUS_OF[name]
            if name == "MilestoneShipped":
                ms.shipping_document = str(a["documentHash"]).lower()
                self.documents.append(DocumentUse(ms.shipping_document, deal_id, milestone, name))
        elif name == "MilestoneReleased":
            amount, payee = _n(a["amount"]), str(a["payee"])
            ms.status = MilestoneStatus.RELEASED
            ms.released = amount
            self._credit(payee, token, amount)
            self._move(event, payee, "release", "in", amount, token, milestone, deal.buyer)
            self.actions.append(
                ActionEvent("release", payee, amount, event.timestamp, event.tx_hash, deal_id)
            )
        elif name == "DisputeSettled":
            payee_amount, buyer_amount = _n(a["payeeAmount"]), _n(a["buyerAmount"])
            payee = deal.payee(milestone)
            ms.status = MilestoneStatus.SETTLED
            ms.released, ms.refunded = payee_amount, buyer_amount
            if payee_amount:
                self._credit(payee, token, payee_amount)
                self._move(
                    event, payee, "settlement", "in", payee_amount, token, milestone, deal.buyer
                )
            if buyer_amount:
                self._credit(deal.buyer, token, buyer_amount)
                self._move(
                    event, deal.buyer, "settlement", "in", buyer_amount, token, milestone, payee
                )
        elif name == "MilestoneRefunded":
            amount = _n(a["amount"])
            ms.status = MilestoneStatus.REFUNDED
            ms.refunded = amount
            self._credit(deal.buyer, token, amount)
            self._move(event, deal.buyer, "refund", "in", amount, token, milestone, None)
            key = (event.tx_hash.lower(), deal_id)
            if key in refund_txs:
                old = self.actions[refund_txs[key]]
                self.actions[refund_txs[key]] = ActionEvent(
                    "refund", old.party, old.amount + amount, old.timestamp, old.tx_hash, deal_id
                )
            else:
                refund_txs[key] = len(self.actions)
                self.actions.append(
                    ActionEvent(
                        "refund", deal.buyer, amount, event.timestamp, event.tx_hash, deal_id
                    )
                )
        elif name in ("FinancingOffered", "ReceivableFinanced"):
            invoice = str(a["invoiceHash"]).lower()
            self.documents.append(DocumentUse(invoice, deal_id, milestone, name))
            if name == "ReceivableFinanced":
                financier, advance = str(a["financier"]), _n(a["advance"])
                supplier = str(a["supplier"])
                ms.financier, ms.advance, ms.invoice_hash = (
                    self._account(financier),
                    advance,
                    invoice,
                )
                self._credit(supplier, token, advance)
                self.vault_in[token.lower()] = self.vault_in.get(token.lower(), 0) + advance
                self._move(
                    event, financier, "advance_paid", "out", advance, token, milestone, supplier
                )
                self._move(
                    event, supplier, "advance_received", "in", advance, token, milestone, financier
                )
                self.actions.append(
                    ActionEvent(
                        "finance", financier, advance, event.timestamp, event.tx_hash, deal_id
                    )
                )
        elif name in ("ComplianceHoldPlaced", "ComplianceHoldRenewed"):
            ms.hold_until = _n(a["until"])
        elif name == "ComplianceHoldLifted":
            ms.hold_until = 0


def _n(value: Any) -> int:
    """An integer argument stored as a JSON number or a decimal string."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not an amount")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise ValueError(f"{value!r} is not an integer")
