"""Reconciliation: the escrow on chain, its events in the log, and the log's anchors, compared.

:func:`reconcile` compares three views, checks who wrote the reserved records, and reports
every difference:

1. **events** — every log the vault emitted up to the indexer's cursor block against the
   live ``escrow_event`` records of the log: an event on chain with no record is *missing*,
   a record with no event on chain is *extra*, a record whose name or arguments differ from
   the chain's is *altered*;
2. **books** — the indexed events replayed (:class:`~chainaudit.risk.ledger.Ledger`) against
   the contract's state read at that same block: deal count, each milestone's status,
   funded amount and payee, each deal's ``dealAccounting``, every account's withdrawable
   credit, and per token the vault's ``balanceOf`` against both what the events say it
   received minus paid out, and what the contract itself owes (escrowed funds plus credits).
   Tokens sent to the vault outside the contract's functions show up here;
3. **provenance** — every record of a reserved kind (``decision``, ``escrow_event``,
   ``admin``) or id namespace whose stamped submitter was not entitled to write it
   (:mod:`chainaudit.core.provenance`) is an ``unentitled_record``: a forged record that reached
   the log behind the service's back. The event replay above never reads such records;
4. **anchors** — leaves waiting for an anchor longer than the batch interval, and (with the
   ``AuditAnchor`` address) every checkpoint on chain that the log no longer reproduces
   (:func:`~chainaudit.service.anchoring.audit_against_chain`);
5. **gate decisions** (issue 13) — every money movement on chain (``MilestoneFunded``,
   ``ReceivableFinanced``, ``MilestoneReleased``) against the risk gate's decision records: a
   movement with no ``allow`` or ``review`` decision, written by the risk service, for the
   same action, deal, milestone and amount (each decision matching one movement) is
   *ungated*.

All chain reads are made at the indexer's cursor block, so a vault that is busy while
reconciling is not a difference. The report is appended to the log as a ``decision`` record
(``payload.type == "reconciliation"``) unless ``append=False``; ``chainaudit reconcile``
exits 1 when it lists any difference.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from web3 import Web3

from chainaudit.chain.chain import Chain
from chainaudit.chain.escrow import DecodedEvent, EscrowClient
from chainaudit.core import provenance
from chainaudit.core.canonical import canonicalize
from chainaudit.core.errors import ChainUnavailableError, EscrowError
from chainaudit.core.provenance import document_entitled
from chainaudit.core.records import prepare
from chainaudit.log.actions import now_rfc3339
from chainaudit.log.store import Log
from chainaudit.risk.decisions import new_record_id
from chainaudit.risk.ledger import IndexedEvent, Ledger, indexed_events
from chainaudit.service.anchoring import AnchorBook, audit_against_chain
from chainaudit.service.indexer import Indexer

__all__ = ["Difference", "ReconcileReport", "reconcile"]

RECONCILE_ACTOR: Final = "chainaudit:reconcile"
MAX_RECORDED_DIFFERENCES: Final = 100
LOG_CHUNK_BLOCKS: Final = 10_000


@dataclass(frozen=True, slots=True)
class Difference:
    """One difference between two views.

    ``kind`` is one of ``missing_event``, ``extra_event``, ``altered_event``,
    ``unreadable_event``, ``indexer``, ``books``, ``deal``, ``milestone``, ``accounting``,
    ``credit``, ``balance``, ``unentitled_record``, ``unanchored``, ``anchor_history``,
    ``ungated_movement``; ``chain`` and ``log`` hold the two figures when there are two
    (amounts as decimal strings).
    """

    kind: str
    subject: str
    detail: str
    chain: str | None = None
    log: str | None = None


@dataclass
class ReconcileReport:
    """The result of :func:`reconcile`: clean when ``differences`` is empty."""

    chain_id: int
    contract: str
    block_number: int
    tree_size: int
    anchored_size: int
    differences: list[Difference] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    record_id: str | None = None

    @property
    def clean(self) -> bool:
        return not self.differences

    def to_json(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "chain_id": self.chain_id,
            "contract": self.contract,
            "block_number": self.block_number,
            "tree_size": self.tree_size,
            "anchored_size": self.anchored_size,
            "checked": dict(self.checked),
            "differences": [asdict(d) for d in self.differences],
            "record_id": self.record_id,
        }


def reconcile(
    log: Log,
    client: EscrowClient,
    *,
    start_block: int = 0,
    anchor_contract: str | None = None,
    max_unanchored_seconds: float = 60.0,
    now_ms: int | None = None,
    append: bool = True,
    actor: str = RECONCILE_ACTOR,
    gate_decisions: bool = True,
) -> ReconcileReport:
    """Compare the vault of ``client``, its indexed events in ``log`` and the log's anchors.

    ``start_block`` is the first block the escrow indexer scans (the vault's deployment
    block); ``anchor_contract`` the ``AuditAnchor`` to audit the log against (skipped when
    ``None``); ``max_unanchored_seconds`` the batch interval after which waiting leaves are a
    difference. ``gate_decisions=False`` skips matching the money movements with the risk
    gate's decisions (for a vault run without the gate). Raises
    :class:`~chainaudit.core.errors.ChainUnavailableError` when the endpoint is down (nothing is
    appended then).
    """
    chain = client.chain
    log.refresh()
    chain_id = client.chain_id
    block, cursor_note = _cursor_block(log, client, start_block)
    report = ReconcileReport(
        chain_id=chain_id,
        contract=client.address,
        block_number=block,
        tree_size=log.size,
        anchored_size=0,
    )
    if cursor_note:
        report.differences.append(Difference("indexer", "escrow indexer", cursor_note))

    events, unreadable = indexed_events(log, chain_id=chain_id, contract=client.address)
    for record_id, reason in unreadable:
        report.differences.append(Difference("unreadable_event", f"record {record_id}", reason))
    _compare_events(report, client, events, start_block, block)
    ledger = Ledger.replay(e for e in events if e.block_number <= block)
    for problem in ledger.problems:
        report.differences.append(Difference("books", "event replay", problem))
    _compare_books(report, client, ledger, block)
    _check_provenance(report, log)
    if gate_decisions:
        _match_gate_decisions(report, log, [e for e in events if e.block_number <= block])
    _check_anchors(report, log, chain, anchor_contract, max_unanchored_seconds, now_ms)
    if append:
        report.record_id = _append_report(log, report, actor)
    return report


# -- gate decisions (issue 13) -----------------------------------------------------------------

MONEY_EVENTS: Final[Mapping[str, tuple[str, str]]] = {
    "MilestoneFunded": ("fund", "amount"),
    "ReceivableFinanced": ("finance", "advance"),
    "MilestoneReleased": ("release", "amount"),
}
"""Each event that moves money, the risk gate's action for it and its amount argument."""

_Movement = tuple[str, str, str, str]  # action, deal id, milestone, amount (decimal strings)


def _allowed_decisions(log: Log, page: int = 2_000) -> Counter[_Movement]:
    """The money movements the risk gate allowed (or sent for review), from decision records
    the risk service is entitled to have written."""
    allowed: Counter[_Movement] = Counter()
    start, size = 0, log.size
    while start < size:
        batch = log.scan(start=start, limit=page, kind="decision")
        for entry in batch:
            if entry.body is None or not entry.record_id.startswith("risk:decision:"):
                continue
            try:
                document = json.loads(entry.body)
            except ValueError:
                continue  # an altered record: `chainaudit audit` reports it
            payload = document.get("payload")
            if not isinstance(payload, Mapping) or not document_entitled(document):
                continue
            action = payload.get("action")
            inputs = payload.get("inputs")
            if (
                payload.get("type") != "risk_decision"
                or payload.get("outcome") not in ("allow", "review")
                or action not in ("fund", "finance", "release")
                or not isinstance(inputs, Mapping)
            ):
                continue
            allowed[
                (
                    str(action),
                    str(payload.get("deal_id")),
                    str(payload.get("milestone")),
                    str(inputs.get("amount")),
                )
            ] += 1
        if len(batch) < page:
            break
        start = batch[-1].index + 1
    return allowed


def _match_gate_decisions(report: ReconcileReport, log: Log, events: list[IndexedEvent]) -> None:
    allowed = _allowed_decisions(log)
    movements = 0
    for event in events:
        spec = MONEY_EVENTS.get(event.name)
        if spec is None:
            continue
        movements += 1
        action, field_name = spec
        amount = str(event.args.get(field_name))
        milestone = str(event.args.get("milestone"))
        key = (action, str(event.deal_id), milestone, amount)
        if allowed[key] > 0:
            allowed[key] -= 1
            continue
        report.differences.append(
            Difference(
                "ungated_movement",
                f"deal {event.deal_id} milestone {milestone}",
                f"{event.name} in tx {event.tx_hash} moved {amount} with no {action} decision "
                "of the risk gate",
                chain=amount,
            )
        )
    report.checked["money_movements"] = movements


# -- the indexer's position ---------------------------------------------------------------------


def _cursor_block(log: Log, client: EscrowClient, start_block: int) -> tuple[int, str | None]:
    indexer = Indexer(log, client.chain, client.address, start_block=start_block, abi=client.abi)
    try:
        cursor = indexer.cursor()
    finally:
        indexer.close()
    head = client.chain.block_number()
    if cursor.hash is None:
        return head, (
            f"the escrow indexer has not indexed this vault from block {start_block}; "
            f"comparing against the head (block {head})"
        )
    if client.chain.block_hash(cursor.number) != cursor.hash:
        return cursor.number, (
            f"the indexer's cursor block {cursor.number} was reorganised away; run the "
            "indexer, then reconcile again"
        )
    return cursor.number, None


# -- events ---------------------------------------------------------------------------------------


def _chain_logs(client: EscrowClient, start: int, end: int) -> list[Any]:
    found: list[Any] = []
    address = Web3.to_checksum_address(client.address)
    for low in range(start, end + 1, LOG_CHUNK_BLOCKS):
        high = min(end, low + LOG_CHUNK_BLOCKS - 1)
        found.extend(_get_logs(client.chain, address, low, high))
    return [entry for entry in found if not entry.get("removed")]


def _get_logs(chain: Chain, address: str, low: int, high: int) -> list[Any]:
    query: Any = {"address": address, "fromBlock": low, "toBlock": high}
    return list(chain.run("eth_getLogs", lambda: chain.w3.eth.get_logs(query)))


def _compare_events(
    report: ReconcileReport,
    client: EscrowClient,
    events: list[IndexedEvent],
    start_block: int,
    block: int,
) -> None:
    on_chain: dict[tuple[str, int, str], tuple[str, Mapping[str, Any] | None]] = {}
    for entry in _chain_logs(client, start_block, block):
        key = (
            Web3.to_hex(entry["transactionHash"]).lower(),
            int(entry["logIndex"]),
            Web3.to_hex(entry["blockHash"]).lower(),
        )
        decoded: DecodedEvent | None = client.decode_log(entry)
        on_chain[key] = (decoded.name, decoded.args) if decoded is not None else ("unknown", None)
    in_log: dict[tuple[str, int, str], IndexedEvent] = {}
    for event in events:
        if event.key in in_log:
            report.differences.append(
                Difference(
                    "extra_event",
                    f"record {event.record_id}",
                    f"a second live record of the event in {event.tx_hash} log "
                    f"{event.log_index} (first: {in_log[event.key].record_id})",
                )
            )
            continue
        in_log[event.key] = event
    report.checked["chain_events"] = len(on_chain)
    report.checked["indexed_events"] = len(in_log)
    for key, (name, _) in on_chain.items():
        if key not in in_log:
            report.differences.append(
                Difference(
                    "missing_event",
                    f"{name} in tx {key[0]} log {key[1]}",
                    f"the chain emitted {name} (block hash {key[2]}) but the log has no record "
                    "of it",
                )
            )
    for key, event in in_log.items():
        if key not in on_chain:
            where = "after the indexer's cursor" if event.block_number > block else "on chain"
            report.differences.append(
                Difference(
                    "extra_event",
                    f"record {event.record_id}",
                    f"the log records {event.name} in tx {event.tx_hash} log {event.log_index} "
                    f"(block {event.block_number}), which is not {where}",
                )
            )
            continue
        name, args = on_chain[key]
        if event.name != name or (args is not None and _norm(dict(args)) != _norm(event.args)):
            report.differences.append(
                Difference(
                    "altered_event",
                    f"record {event.record_id}",
                    f"the record says {event.name} {json.dumps(event.args, sort_keys=True)}, "
                    f"the chain says {name} "
                    f"{json.dumps(_norm(dict(args or {})), sort_keys=True)}",
                )
            )


def _norm(value: Any) -> Any:
    """Event arguments as comparable JSON: integers as decimal strings, bytes as lowercase
    0x-hex, addresses and other strings lowercased."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, Mapping):
        return {str(k): _norm(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_norm(v) for v in value]
    return str(value)


# -- books ----------------------------------------------------------------------------------------


def _call(client: EscrowClient, name: str, *args: Any, block: int) -> Any:
    fn = client.contract.functions[name](*args)
    return client.chain.run(name, lambda: fn.call(block_identifier=block))


def _call_token(client: EscrowClient, token: str, block: int) -> Any:
    fn = client.token(token).functions.balanceOf(client.address)
    return client.chain.run("balanceOf", lambda: fn.call(block_identifier=block))


def _compare_books(
    report: ReconcileReport, client: EscrowClient, ledger: Ledger, block: int
) -> None:
    differences = report.differences
    count = int(_call(client, "dealCount", block=block))
    report.checked["deals"] = count
    if count != len(ledger.deals):
        differences.append(
            Difference(
                "deal",
                "deal count",
                f"the contract has {count} deals, the events create {len(ledger.deals)}",
                chain=str(count),
                log=str(len(ledger.deals)),
            )
        )
    tokens: set[str] = set(ledger.tokens())
    accounts: dict[str, str] = dict(ledger.accounts)
    held: dict[str, int] = {}
    milestones = 0
    for deal_id in range(1, count + 1):
        try:
            deal = client.deal(deal_id, block=block)
        except EscrowError as exc:
            differences.append(Difference("deal", f"deal {deal_id}", f"cannot read it: {exc}"))
            continue
        token = deal.token.lower()
        tokens.add(token)
        held[token] = held.get(token, 0) + deal.held
        for party in (deal.buyer, deal.supplier, *(m.payee for m in deal.milestones)):
            accounts.setdefault(party.lower(), party)
        book = ledger.deals.get(deal_id)
        if book is None:
            differences.append(
                Difference("deal", f"deal {deal_id}", "on chain, but no DealCreated in the log")
            )
            continue
        if book.token.lower() != token:
            differences.append(
                Difference("deal", f"deal {deal_id}", "token differs", deal.token, book.token)
            )
        for ms in deal.milestones:
            milestones += 1
            subject = f"deal {deal_id} milestone {ms.index}"
            mine = book.milestones.get(ms.index)
            if mine is None:
                differences.append(
                    Difference("milestone", subject, "on chain, but not created in the log")
                )
                continue
            for name, theirs, ours in (
                ("status", ms.status.name.lower(), mine.status.name.lower()),
                ("funded", str(ms.funded), str(mine.funded)),
                ("released", str(ms.released), str(mine.released)),
                ("refunded", str(ms.refunded), str(mine.refunded)),
                ("payee", ms.payee.lower(), book.payee(ms.index).lower()),
            ):
                if theirs != ours:
                    differences.append(
                        Difference("milestone", subject, f"{name} differs", theirs, ours)
                    )
        chain_accounting = (deal.funded, deal.released, deal.refunded, deal.held)
        if chain_accounting != book.accounting():
            differences.append(
                Difference(
                    "accounting",
                    f"deal {deal_id}",
                    "dealAccounting (funded, released, refunded, held) differs from the events",
                    ", ".join(map(str, chain_accounting)),
                    ", ".join(map(str, book.accounting())),
                )
            )
    for extra in sorted(set(ledger.deals) - set(range(1, count + 1))):
        differences.append(
            Difference("deal", f"deal {extra}", "created in the log, but not on chain")
        )
    report.checked["milestones"] = milestones

    credits_on_chain: dict[str, int] = {}
    checked_credits = 0
    for token in sorted(tokens):
        for lower, account in sorted(accounts.items()):
            if int(lower, 16) == 0:  # the zero address never holds a credit
                continue
            credit = int(
                _call(client, "creditOf", account, Web3.to_checksum_address(token), block=block)
            )
            expected_credit = ledger.credit(account, token)
            checked_credits += 1
            credits_on_chain[token] = credits_on_chain.get(token, 0) + credit
            if credit != expected_credit:
                differences.append(
                    Difference(
                        "credit",
                        f"{account} in token {Web3.to_checksum_address(token)}",
                        "withdrawable credit differs",
                        str(credit),
                        str(expected_credit),
                    )
                )
    report.checked["credits"] = checked_credits
    for token in sorted(tokens):
        balance = int(_call_token(client, token, block))
        owed = held.get(token, 0) + credits_on_chain.get(token, 0)
        expected = ledger.vault_in.get(token, 0) - ledger.vault_out.get(token, 0)
        subject = f"vault balance of token {Web3.to_checksum_address(token)}"
        if balance != owed:
            differences.append(
                Difference(
                    "balance",
                    subject,
                    f"the vault holds {balance} but owes {owed} (escrowed "
                    f"{held.get(token, 0)} + credits {credits_on_chain.get(token, 0)}): "
                    f"{'a surplus' if balance > owed else 'a shortfall'} of {abs(balance - owed)}",
                    str(balance),
                    str(owed),
                )
            )
        if balance != expected:
            differences.append(
                Difference(
                    "balance",
                    subject,
                    f"the vault holds {balance}; the indexed events say {expected} "
                    f"(received {ledger.vault_in.get(token, 0)}, paid out "
                    f"{ledger.vault_out.get(token, 0)})",
                    str(balance),
                    str(expected),
                )
            )
    report.checked["tokens"] = len(tokens)


# -- provenance -----------------------------------------------------------------------------------


def _check_provenance(report: ReconcileReport, log: Log) -> None:
    """Report every record of a reserved kind or id namespace whose stamped submitter was not
    entitled to write it (:func:`chainaudit.core.provenance.entitled`): a forged decision or escrow
    event that reached the log without going through the service. Readers ignore such
    records; this names each one. Erased bodies are skipped (their content is gone)."""
    checked = 0
    for entry in log.entries():
        if entry.kind not in provenance.RESERVED_KINDS and (
            provenance.reserved_prefix(entry.record_id) is None
        ):
            continue
        checked += 1
        if entry.body is None:
            continue
        try:
            document = json.loads(entry.body)
        except ValueError:
            document = None
        if isinstance(document, Mapping) and provenance.document_entitled(document):
            continue
        stamped = document.get("submitter") if isinstance(document, Mapping) else None
        report.differences.append(
            Difference(
                "unentitled_record",
                f"record {entry.record_id}",
                f"a {entry.kind!r} record at leaf {entry.index} stamped by "
                f"{stamped if isinstance(stamped, str) else 'no submitter'}, which may not "
                "write it: only the service writes this kind or id; every reader ignores it",
            )
        )
    report.checked["reserved_records"] = checked


# -- anchors --------------------------------------------------------------------------------------


def _check_anchors(
    report: ReconcileReport,
    log: Log,
    chain: Chain,
    anchor_contract: str | None,
    max_unanchored_seconds: float,
    now_ms: int | None,
) -> None:
    book = AnchorBook(log)
    try:
        latest = book.latest_anchored()
        anchored = latest.tree_size if latest is not None else 0
        report.anchored_size = anchored
        oldest = book.oldest_unanchored_ms(anchored)
    finally:
        book.close()
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if log.size > anchored and oldest is not None:
        age_ms = now - oldest
        if age_ms > max_unanchored_seconds * 1000:
            report.differences.append(
                Difference(
                    "unanchored",
                    f"leaves [{anchored}, {log.size})",
                    f"{log.size - anchored} record(s) have waited {age_ms / 1000:.1f} s for an "
                    f"anchor, longer than the batch interval of {max_unanchored_seconds:g} s",
                )
            )
    if anchor_contract is not None:
        try:
            findings = audit_against_chain(log, chain, anchor_contract)
        except ChainUnavailableError:
            raise
        for finding in findings:
            report.differences.append(
                Difference("anchor_history", "anchored checkpoints", finding.detail)
            )


# -- the record -----------------------------------------------------------------------------------


def _append_report(log: Log, report: ReconcileReport, actor: str) -> str:
    differences = [asdict(d) for d in report.differences]
    digest = hashlib.sha256(canonicalize(differences)).hexdigest()
    record = prepare(
        {
            "id": new_record_id("reconcile"),
            "kind": "decision",
            "timestamp": now_rfc3339(),
            "actor": actor,
            "payload": {
                "type": "reconciliation",
                "clean": report.clean,
                "chain_id": report.chain_id,
                "contract": report.contract,
                "block_number": report.block_number,
                "tree_size": report.tree_size,
                "anchored_size": report.anchored_size,
                "checked": dict(report.checked),
                "difference_count": len(differences),
                "differences": differences[:MAX_RECORDED_DIFFERENCES],
                "differences_sha256": digest,
            },
        },
        submitter=provenance.RECONCILER,
    )
    log.append([record])
    return record.record_id
