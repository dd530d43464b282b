"""Per-party statements: every movement of a party's money, each with its record and proof.

A statement lists, in chain order, every escrow event that moved money of ``party``
(:class:`~chainaudit.risk.ledger.Movement`): fundings it paid into escrow, releases, dispute
settlements and long-stop refunds credited to it, financing advances it paid or received,
and its withdrawals. Each line names the ``escrow_event`` record that proves it, its leaf
index and its **proof status**: ``pending`` (not anchored yet), ``anchored`` (in a confirmed
anchored checkpoint) or ``final`` (the anchor is final), with the anchor's checkpoint and
transaction. ``to_json(bundles=True)`` embeds each anchored line's proof bundle, verifiable
with ``chainaudit verify`` and a chain endpoint alone.

Totals per token: ``paid_in`` (funding and advances that left the party's wallet into the
vault), ``credited`` (releases, settlements, refunds and advances credited to it in the
vault), ``withdrawn`` and ``credit`` (credited minus withdrawn: what it can still withdraw).
Amounts are decimal strings of the token's minor units.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from web3 import Web3

from chainaudit.core.errors import InputError
from chainaudit.log.actions import now_rfc3339
from chainaudit.log.store import Log
from chainaudit.risk.ledger import EventCache, Ledger, Movement, indexed_events
from chainaudit.service.anchoring import FINAL, AnchorBook
from chainaudit.service.bundling import build_bundle

__all__ = ["CSV_COLUMNS", "Statement", "StatementLine", "build_statement", "csv_cell"]

CSV_COLUMNS: Final = (
    "timestamp",
    "kind",
    "direction",
    "amount",
    "token",
    "deal_id",
    "milestone",
    "counterparty",
    "record_id",
    "leaf_index",
    "tx_hash",
    "block_number",
    "proof_status",
    "checkpoint_seq",
    "anchor_tree_size",
    "anchor_tx_hash",
)


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One movement of the party's money and the proof of its record."""

    timestamp: str
    kind: str
    direction: str
    amount: int
    token: str
    deal_id: int | None
    milestone: int | None
    counterparty: str | None
    record_id: str
    leaf_index: int
    tx_hash: str
    block_number: int
    proof_status: str
    checkpoint_seq: int | None
    anchor_tree_size: int | None
    anchor_tx_hash: str | None

    def to_json(self) -> dict[str, Any]:
        row = {name: getattr(self, name) for name in CSV_COLUMNS}
        row["amount"] = str(self.amount)
        row["deal_id"] = None if self.deal_id is None else str(self.deal_id)
        return row


@dataclass
class Statement:
    """A party's statement (see the module)."""

    party: str
    generated_at: str
    tree_size: int
    lines: list[StatementLine] = field(default_factory=list)
    totals: dict[str, dict[str, int]] = field(default_factory=dict)
    bundles: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The statement as JSON: amounts as decimal strings; anchored lines carry their
        ``bundle`` when bundles were built."""
        lines = []
        for line in self.lines:
            row = line.to_json()
            if line.record_id in self.bundles:
                row["bundle"] = self.bundles[line.record_id]
            lines.append(row)
        return {
            "statement": 1,
            "party": self.party,
            "generated_at": self.generated_at,
            "tree_size": self.tree_size,
            "lines": lines,
            "totals": {
                token: {name: str(value) for name, value in figures.items()}
                for token, figures in sorted(self.totals.items())
            },
        }

    def to_csv(self) -> str:
        """The lines as CSV (RFC 4180, a header row, ``\\r\\n`` line ends), every cell
        neutralised against spreadsheet formulas (:func:`csv_cell`)."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for line in self.lines:
            row = line.to_json()
            writer.writerow([csv_cell(row[c]) for c in CSV_COLUMNS])
        return out.getvalue()


FORMULA_PREFIXES: Final = ("=", "+", "-", "@", "\t", "\r")
"""Cells starting with one of these are read as formulas by spreadsheet programs."""


def csv_cell(value: object) -> str:
    """``value`` as a CSV cell that no spreadsheet program runs as a formula: ``None`` is
    empty; text that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is
    prefixed with ``'`` (OWASP's CSV-injection advice), everything else is ``str(value)``."""
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def build_statement(
    log: Log,
    book: AnchorBook,
    party: str,
    *,
    chain_id: int | None = None,
    contract: str | None = None,
    bundles: bool = False,
    shown: Callable[[str], bool] | None = None,
    events: EventCache | None = None,
    withheld: Callable[[str], str | None] | None = None,
) -> Statement:
    """The statement of ``party`` from the log's indexed escrow events.

    Only events the indexer wrote count (:func:`~chainaudit.risk.ledger.indexed_events`): a
    forged event or retraction neither adds nor removes a line. ``chain_id`` / ``contract``
    restrict it to one vault. ``shown`` (a record id → whether the reader may see it) drops
    the lines, and their amounts from the totals, of records the reader may not see. With
    ``bundles``, the proof bundle of every anchored line is built too; ``withheld`` (a record
    id → the reason its record is left out of its bundle, or ``None``) withholds the records
    a reader may not see whole (:mod:`chainaudit.service.masking`). ``events`` (a
    long-lived :class:`~chainaudit.risk.ledger.EventCache` of all vaults, the API's) reads
    only the records appended since its last use instead of every escrow event. Raises
    :class:`~chainaudit.core.errors.InputError` for a malformed address.
    """
    try:
        address = Web3.to_checksum_address(party)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{party!r} is not an Ethereum address") from exc
    log.refresh()
    if events is not None and chain_id is None and contract is None:
        found = events.update(log)
    else:
        found, _ = indexed_events(log, chain_id=chain_id, contract=contract)
    ledger = Ledger.replay(found)
    statement = Statement(party=address, generated_at=now_rfc3339(), tree_size=log.size)
    for movement in ledger.movements_of(address):
        if shown is not None and not shown(movement.event.record_id):
            continue
        statement.lines.append(_line(book, movement))
        _add(statement.totals, movement)
    if bundles:
        for line in statement.lines:
            if line.proof_status != "pending" and line.record_id not in statement.bundles:
                reason = withheld(line.record_id) if withheld is not None else None
                statement.bundles[line.record_id] = build_bundle(
                    log, book, line.record_id, withheld=reason
                )
    return statement


def _line(book: AnchorBook, movement: Movement) -> StatementLine:
    event = movement.event
    anchor = book.covering(event.leaf_index)
    if anchor is None:
        status, seq, size, anchor_tx = "pending", None, None, None
    else:
        status = "final" if anchor.status == FINAL else "anchored"
        seq, size = anchor.seq, anchor.tree_size
        anchor_tx = None if anchor.tx_hash is None else "0x" + anchor.tx_hash.hex()
    return StatementLine(
        timestamp=datetime.fromtimestamp(event.timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        kind=movement.kind,
        direction=movement.direction,
        amount=movement.amount,
        token=movement.token,
        deal_id=movement.deal_id,
        milestone=movement.milestone,
        counterparty=movement.counterparty,
        record_id=event.record_id,
        leaf_index=event.leaf_index,
        tx_hash=event.tx_hash,
        block_number=event.block_number,
        proof_status=status,
        checkpoint_seq=seq,
        anchor_tree_size=size,
        anchor_tx_hash=anchor_tx,
    )


def _add(totals: dict[str, dict[str, int]], movement: Movement) -> None:
    figures = totals.setdefault(
        movement.token, {"paid_in": 0, "credited": 0, "withdrawn": 0, "credit": 0}
    )
    if movement.kind == "withdrawal":
        figures["withdrawn"] += movement.amount
        figures["credit"] -= movement.amount
    elif movement.direction == "out":
        figures["paid_in"] += movement.amount
    else:
        figures["credited"] += movement.amount
        figures["credit"] += movement.amount
