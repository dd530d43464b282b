"""The escrow indexer: every ``SupplyChainEscrow`` event becomes a record of the audit log,
exactly once, and a block that a reorganisation drops is retracted in the log, never kept.

So the on-chain history of every deal is audited like any other record: it is in the same
Merkle log, under the same anchored checkpoints.

**Records.** Each event is a record of kind ``escrow_event`` with the id

    escrow:<chain id>:<tx hash>:<log index>:<first 12 hex digits of the block hash>

(hashes without ``0x``), which is deterministic: re-indexing the same block yields the same id.
The block hash is part of the id because a reorganisation may re-include the same transaction
at the same log index in another block, which is another event. The payload holds the chain
id, contract, block number and hash, transaction hash and sender, log index, event name, the
deal id (when the event has one) and the decoded arguments. No floats: integers whose ABI
type has at most 53 bits stay JSON numbers, wider ones (``uint256``) become decimal strings,
bytes become 0x-hex and addresses checksummed strings. The record's timestamp is the block's.

**Exactly once, across restarts.** The indexer keeps, beside the log's tables (its SQLite
file or its PostgreSQL schema), a cursor (the last processed block and its hash), the hash
of every block it recorded events from, the events it recorded, and an *outbox* of prepared
records. One tick works in three steps:

1. scan the next confirmed blocks and, in **one database transaction**, write the new records to
   the outbox together with the new cursor and block hashes;
2. append the outbox to the log (:meth:`~chainaudit.log.store.Log.append`);
3. delete the appended rows from the outbox.

A crash after step 1 leaves the records in the outbox, and the next tick appends them; a crash
after step 2 appends them again, which the log treats as duplicates (same id, same stored
bytes, salt included). Either way every event is in the log exactly once, and the cursor never
runs ahead of what will be appended.

**Reorganisations.** Only blocks at depth ``>= confirmations`` are scanned (the head has depth
1). Each tick first re-reads the canonical hash of the stored blocks, newest first, until one
still matches: that block and everything before it are unchanged (a block hash commits to its
ancestors). Every event recorded from a block above it whose hash changed gets a retraction
record (kind ``escrow_event``, id ``<event id>:retracted``, payload ``retracts`` = the event
id, ``reason`` = ``"reorg"``), and the cursor moves back so the new canonical blocks are
indexed. Should a dropped block come back unchanged later, its events are recorded again with
a generation suffix (``<event id>:1``), since the retraction of the first record stands.

**Squatted ids never stop it.** Should the log already hold one of these ids with other
content (someone wrote there by direct database access, or an older version let a client do
it), the record is written under a fresh derived id ``<id>:conflict:<n>`` beside an integrity
alarm record naming both (:mod:`chainaudit.service.integrity`), the outbox and the event table are
rewritten to match in one transaction, a warning is logged, :attr:`Indexer.alarms` counts it,
and indexing goes on.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from hexbytes import HexBytes
from web3 import Web3

from chainaudit.chain.chain import Chain
from chainaudit.chain.escrow import DecodedEvent, EscrowClient
from chainaudit.core import provenance
from chainaudit.core.errors import (
    ChainUnavailableError,
    ConflictError,
    NotFoundError,
    NotLeaderError,
    StoreError,
)
from chainaudit.core.records import PreparedRecord, prepare
from chainaudit.log import database
from chainaudit.log.store import AuditFinding, Entry, Log
from chainaudit.service import integrity
from chainaudit.service.leader import Fence, pause_point

__all__ = [
    "KIND",
    "Cursor",
    "Indexer",
    "audit_index",
    "deals_of",
    "event_record_id",
    "events_for_deal",
]

logger = logging.getLogger(__name__)

KIND: Final = "escrow_event"
INDEXER_ACTOR: Final = "chainaudit:indexer"
LIVE: Final = "live"
RETRACTED: Final = "retracted"
MAX_SAFE_INTEGER: Final = 2**53 - 1
KEEP_EMPTY_BLOCKS: Final = 128
"""How many event-less cursor blocks to remember for finding a fork point quickly."""
_LOCK: Final = "escrow_index"
"""The :meth:`~chainaudit.log.database.Database.write_as` lock of the indexer's writes."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS escrow_index_cursor (
    chain_id INTEGER NOT NULL,
    contract TEXT NOT NULL,
    block_number INTEGER NOT NULL,
    block_hash BLOB NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (chain_id, contract)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS escrow_index_blocks (
    chain_id INTEGER NOT NULL,
    contract TEXT NOT NULL,
    number INTEGER NOT NULL,
    hash BLOB NOT NULL,
    events INTEGER NOT NULL,
    PRIMARY KEY (chain_id, contract, number)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS escrow_index_events (
    record_id TEXT PRIMARY KEY,
    base_id TEXT NOT NULL,
    generation INTEGER NOT NULL,
    chain_id INTEGER NOT NULL,
    contract TEXT NOT NULL,
    block_number INTEGER NOT NULL,
    block_hash BLOB NOT NULL,
    tx_hash TEXT NOT NULL,
    log_index INTEGER NOT NULL,
    event TEXT NOT NULL,
    deal_id TEXT,
    status TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS escrow_index_events_by_block
    ON escrow_index_events (chain_id, contract, block_number);
CREATE INDEX IF NOT EXISTS escrow_index_events_by_base ON escrow_index_events (base_id);
CREATE TABLE IF NOT EXISTS escrow_deal_parties (
    party TEXT NOT NULL,
    chain_id INTEGER NOT NULL,
    contract TEXT NOT NULL,
    deal_id INTEGER NOT NULL,
    role TEXT NOT NULL,
    record_id TEXT NOT NULL,
    PRIMARY KEY (party, chain_id, contract, deal_id, role, record_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS escrow_deal_parties_by_record ON escrow_deal_parties (record_id);
CREATE TABLE IF NOT EXISTS escrow_index_outbox (
    seq INTEGER PRIMARY KEY,
    record_id TEXT NOT NULL UNIQUE,
    body BLOB NOT NULL
);
"""

_TABLES: Final = frozenset(
    {
        "escrow_index_cursor",
        "escrow_index_blocks",
        "escrow_index_events",
        "escrow_deal_parties",
        "escrow_index_outbox",
    }
)
"""The tables of :data:`_SCHEMA` (created when one is missing: an upgrade in place)."""
_INSERT_PARTY: Final = (
    "INSERT INTO escrow_deal_parties VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)


PARTY_ROLES: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "DealCreated": (
        ("buyer", "buyer"),
        ("supplier", "supplier"),
        ("arbiter", "arbiter"),
        ("inspectors", "inspector"),
    ),
    "DealControlsSet": (("financier", "financier"), ("approvers", "approver")),
    "ReceivableFinanced": (("financier", "financier"),),
}
"""The events that make an address a party of a deal, and the role each argument gives (a
financing *offer* makes no party: :func:`chainaudit.api.visibility.read_scope`)."""


def deal_parties(event: str, args: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(address in lower case, role)`` of every party event ``event`` with decoded JSON
    ``args`` names (see :data:`PARTY_ROLES`); the zero address names no one."""
    found: list[tuple[str, str]] = []
    for name, role in PARTY_ROLES.get(event, ()):
        value = args.get(name)
        for address in value if isinstance(value, list) else [value]:
            if isinstance(address, str) and address.startswith("0x"):
                try:
                    named = int(address, 16)
                except ValueError:
                    continue
                if named:
                    found.append((address.lower(), role))
    return found


@dataclass(frozen=True, slots=True)
class Cursor:
    """The last block the indexer processed (``number = start_block - 1`` before any)."""

    number: int
    hash: bytes | None


def event_record_id(chain_id: int, tx_hash: str, log_index: int, block_hash: str) -> str:
    """The deterministic record id of one escrow event (generation 0)."""
    return f"escrow:{chain_id}:{_bare(tx_hash)}:{log_index}:{_bare(block_hash)[:12]}"


class Indexer:
    """Indexes the events of the ``SupplyChainEscrow`` at ``escrow_address`` into ``log``.

    ``confirmations`` (>= 1) is the depth a block must reach before it is indexed;
    ``start_block`` the first block to scan (the vault's deployment block);
    ``batch_blocks`` the most blocks one tick scans. ``abi`` defaults to the compiled
    contract. The indexer's tables live beside ``log``'s (its SQLite file or PostgreSQL
    schema); several indexers (other chains or vaults) may share one log.

    Call :meth:`tick` repeatedly, or :meth:`run` in a thread. ``log`` must not be used by
    another thread while a tick runs (a :class:`~chainaudit.log.store.Log` serves one thread).

    With a ``fence`` (an elected leader's, :mod:`chainaudit.service.leader`), every write to the
    indexer's tables checks in its transaction that the term is still current, and the
    outbox is appended to the log only after that check; a deposed indexer raises
    :class:`~chainaudit.core.errors.NotLeaderError` and :meth:`run` returns.
    """

    def __init__(
        self,
        log: Log,
        chain: Chain,
        escrow_address: str,
        *,
        confirmations: int = 1,
        start_block: int = 0,
        batch_blocks: int = 2_000,
        poll_interval: float = 1.0,
        retry_max: float = 30.0,
        abi: list[dict[str, Any]] | None = None,
        fence: Fence | None = None,
    ) -> None:
        if confirmations < 1:
            raise ValueError("confirmations must be at least 1 (the head has depth 1)")
        if start_block < 0 or batch_blocks < 1:
            raise ValueError("start_block must be >= 0 and batch_blocks >= 1")
        self.log = log
        self.chain = chain
        self.client = EscrowClient(chain, escrow_address, abi=abi)
        self.contract = self.client.address
        self.confirmations = confirmations
        self.start_block = start_block
        self.batch_blocks = batch_blocks
        self.poll_interval = poll_interval
        self.retry_max = retry_max
        self.last_error: str | None = None
        self.alarms = 0
        self.fence = fence
        """Integrity alarms (squatted ids) this indexer raised since it started."""
        self._chain_id: int | None = None
        self._input_types = _input_types(self.client.abi)
        where = "the PostgreSQL database" if log.database_url else str(log.path)
        try:
            self._db = database.connect(log.database_url or log.path)
        except database.DatabaseError as exc:
            raise StoreError(f"cannot open the indexer tables in {where}: {exc}") from exc
        try:
            if self._db.engine == "sqlite":
                self._db.executescript(_SCHEMA)
            elif set(self._db.tables("escrow_")) < _TABLES:
                with self._db.write_as(_LOCK):  # several processes may open at once
                    self._db.executescript(database.adapt_schema(_SCHEMA, self._db.engine))
        except database.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"cannot open the indexer tables in {where}: {exc}") from exc
        self._backfill_parties()

    def _backfill_parties(self) -> None:
        """Derive the party rows of the party events recorded before the party index
        existed (an upgrade in place), from their records in the log or the outbox."""
        query = (
            "SELECT e.record_id, e.chain_id, e.contract, e.deal_id, e.event "  # noqa: S608
            f"FROM escrow_index_events e WHERE {self._db.in_list('e.event')} "
            "AND NOT EXISTS (SELECT 1 FROM escrow_deal_parties p WHERE p.record_id = e.record_id)"
        )
        missing = self._db.execute(
            query,
            (self._db.list_param(list(PARTY_ROLES)),),
        ).fetchall()
        if not missing:
            return
        outbox = {
            str(record_id): _payload_of(body)
            for record_id, body in self._db.execute(
                "SELECT record_id, body FROM escrow_index_outbox"
            )
        }
        rows: list[tuple[str, int, str, int, str, str]] = []
        for record_id, chain_id, contract, deal_id, event in missing:
            payload = outbox.get(record_id)
            if payload is None:
                try:
                    payload = _payload_of(self.log.entry(record_id).body)
                except (NotFoundError, StoreError):
                    payload = None  # not appended yet, or a damaged log `audit` reports
            args = payload.get("args") if payload is not None else None
            if deal_id is None or not isinstance(args, Mapping):
                continue
            rows.extend(
                (party, chain_id, contract, int(deal_id), role, record_id)
                for party, role in deal_parties(event, args)
            )
        with self._transaction() as db:
            db.executemany(_INSERT_PARTY, rows)

    # -- public -----------------------------------------------------------------------------

    @property
    def chain_id(self) -> int:
        """The chain id of the endpoint (read once)."""
        if self._chain_id is None:
            self._chain_id = self.chain.chain_id()
        return self._chain_id

    def cursor(self) -> Cursor:
        """The last processed block, as stored."""
        row = self._db.execute(
            "SELECT block_number, block_hash FROM escrow_index_cursor "
            "WHERE chain_id = ? AND contract = ?",
            (self.chain_id, self.contract),
        ).fetchone()
        return Cursor(self.start_block - 1, None) if row is None else Cursor(int(row[0]), row[1])

    def tick(self) -> int:
        """Append the records of newly confirmed events and retract reorganised ones.

        Returns how many records this call appended to the log (events and retractions).
        Raises :class:`~chainaudit.core.errors.ChainError` (``ChainUnavailableError`` when the
        endpoint is down) and :class:`~chainaudit.core.errors.StoreError`; nothing is lost either
        way, the next tick resumes. A record id the log already holds with other content is
        no error: the record is diverted to a derived id and an integrity alarm is raised
        (see the module).
        """
        appended = self._flush()
        self._retract_reorganised()
        appended += self._flush()
        self._scan_next()
        return appended + self._flush()

    def run(self, stop: threading.Event) -> None:
        """Tick until ``stop`` is set, backing off exponentially while ticks fail."""
        delay = self.poll_interval
        while not stop.is_set():
            try:
                self.tick()
            except NotLeaderError as exc:
                logger.warning("indexer: stopped: %s", exc)
                return
            except ChainUnavailableError as exc:
                self.last_error = str(exc)
                logger.warning("indexer: chain unavailable: %s", exc)
            except Exception as exc:  # the service must outlive any single failure
                self.last_error = str(exc)
                logger.exception("indexer: tick failed")
            else:
                self.last_error = None
            if self.last_error:
                stop.wait(delay)
                delay = min(max(delay, 0.1) * 2, self.retry_max)
            else:
                delay = self.poll_interval
                stop.wait(self.poll_interval)

    def close(self) -> None:
        """Close the indexer's own database connection (not the log)."""
        self._db.close()

    def pending(self) -> int:
        """Records written to the outbox but not yet appended to the log."""
        return int(self._db.execute("SELECT COUNT(*) FROM escrow_index_outbox").fetchone()[0])

    # -- the outbox ---------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[database.Database]:
        """One write transaction on the indexer's tables (``write_as("escrow_index")``),
        which checks the fence first when there is one."""
        with self._db.write_as(_LOCK) as db:
            if self.fence is not None:
                self.fence.check(db)
            yield db

    def _flush(self) -> int:
        """Append every outbox record to the log, then forget them; returns the new ones."""
        rows = self._db.execute("SELECT seq, body FROM escrow_index_outbox ORDER BY seq").fetchall()
        if not rows:
            return 0
        records = [prepare(json.loads(body)) for _, body in rows]
        pause_point("index-outbox")  # test-only: the events are in the outbox, not the log
        if self.fence is not None:  # a deposed indexer appends nothing (idempotent anyway)
            with self._transaction():
                pass
        try:
            result = self.log.append(records)
        except ConflictError:
            self._divert([seq for seq, _ in rows], records)
            return self._flush()
        pause_point("index-appended")  # test-only: in the log, still in the outbox
        with self._transaction() as db:
            db.execute("DELETE FROM escrow_index_outbox WHERE seq <= ?", (rows[-1][0],))
        return result.appended

    def _divert(self, seqs: Sequence[int], records: Sequence[PreparedRecord]) -> None:
        """Rewrite the outbox so that each of ``records`` (outbox rows ``seqs``) whose id the
        log holds with other content goes under a derived id, followed by its integrity
        alarm, in one transaction (:func:`chainaudit.service.integrity.divert_conflicts`). Raises
        :class:`ConflictError` again if there was nothing to divert (the log changed)."""
        diverted = integrity.divert_conflicts(
            self.log,
            records,
            submitter=provenance.INDEXER,
            actor=INDEXER_ACTOR,
            source="indexer",
        )
        if not diverted:
            raise ConflictError("the indexer's records conflict, but no conflicting id is found")
        with self._transaction() as db:
            for position, diversion in diverted.items():
                new = diversion.relabelled
                db.execute(
                    "UPDATE escrow_index_outbox SET record_id = ?, body = ? WHERE seq = ?",
                    (new.record_id, new.body, seqs[position]),
                )
                db.execute(
                    "UPDATE escrow_index_events SET record_id = ? WHERE record_id = ?",
                    (new.record_id, diversion.squatted_id),
                )
                self._queue(db, diversion.alarm)
        for diversion in diverted.values():
            self.alarms += 1
            logger.warning(
                "indexer: integrity alarm: record id %s is taken by other content; "
                "the event is recorded as %s, alarm %s",
                diversion.squatted_id,
                diversion.relabelled.record_id,
                diversion.alarm.record_id,
            )

    @staticmethod
    def _queue(db: database.Database, record: PreparedRecord) -> None:
        """Add ``record`` to the outbox (in ``db``'s open transaction) unless its id is there;
        its ``seq`` is one past the largest (explicit on both engines)."""
        db.execute(
            "INSERT INTO escrow_index_outbox (seq, record_id, body) "
            "SELECT COALESCE(MAX(seq), 0) + 1, ?, ? FROM escrow_index_outbox WHERE true "
            "ON CONFLICT DO NOTHING",
            (record.record_id, record.body),
        )

    # -- reorganisations ----------------------------------------------------------------------

    def _retract_reorganised(self) -> None:
        """Find the newest stored block still canonical; retract the events of every stored
        block above it and move the cursor back to it."""
        stored = self._db.execute(
            "SELECT number, hash FROM escrow_index_blocks WHERE chain_id = ? AND contract = ? "
            "ORDER BY number DESC",
            (self.chain_id, self.contract),
        )
        dropped: list[tuple[int, bytes]] = []
        fork: tuple[int, bytes] | None = None
        for number, block_hash in stored.fetchall():
            if self.chain.block_hash(number) == block_hash:
                fork = (int(number), bytes(block_hash))
                break
            dropped.append((int(number), bytes(block_hash)))
        if not dropped:
            return
        fork_number = fork[0] if fork is not None else self.start_block - 1
        logger.warning(
            "indexer: %d recorded block(s) above %d were reorganised away",
            len(dropped),
            fork_number,
        )
        victims = self._db.execute(
            "SELECT record_id, block_number, block_hash, tx_hash, log_index, event, deal_id "
            "FROM escrow_index_events WHERE chain_id = ? AND contract = ? AND block_number > ? "
            "AND status = ? ORDER BY block_number, log_index",
            (self.chain_id, self.contract, fork_number, LIVE),
        ).fetchall()
        canonical = {number: self.chain.block_hash(number) for number, _ in dropped}
        detected = _rfc3339(int(time.time()))
        with self._transaction() as db:
            for record_id, number, block_hash, tx_hash, log_index, event, deal_id in victims:
                replacement = canonical.get(number)
                payload: dict[str, Any] = {
                    "type": "retraction",
                    "retracts": record_id,
                    "reason": "reorg",
                    "chain_id": self.chain_id,
                    "contract": self.contract,
                    "block_number": number,
                    "block_hash": "0x" + bytes(block_hash).hex(),
                    "canonical_block_hash": None if replacement is None else _hex(replacement),
                    "tx_hash": tx_hash,
                    "log_index": log_index,
                    "event": event,
                    "deal_id": deal_id,
                }
                self._queue(
                    db,
                    prepare(
                        {
                            "id": f"{record_id}:retracted",
                            "kind": KIND,
                            "timestamp": detected,
                            "actor": INDEXER_ACTOR,
                            "payload": payload,
                        },
                        submitter=provenance.INDEXER,
                    ),
                )
                db.execute(
                    "UPDATE escrow_index_events SET status = ? WHERE record_id = ?",
                    (RETRACTED, record_id),
                )
            db.execute(
                "DELETE FROM escrow_index_blocks "
                "WHERE chain_id = ? AND contract = ? AND number > ?",
                (self.chain_id, self.contract, fork_number),
            )
            if fork is None:
                db.execute(
                    "DELETE FROM escrow_index_cursor WHERE chain_id = ? AND contract = ?",
                    (self.chain_id, self.contract),
                )
            else:
                self._set_cursor(db, *fork)

    # -- scanning -----------------------------------------------------------------------------

    def _scan_next(self) -> None:
        """Scan the next batch of confirmed blocks and queue their records with the cursor."""
        cursor = self.cursor()
        target = self.chain.block_number() - self.confirmations + 1
        start = cursor.number + 1
        if target < start:
            return
        end = min(target, cursor.number + self.batch_blocks)
        end_hash = self.chain.block_hash(end)
        logs = self.chain.run(
            "eth_getLogs",
            lambda: self.chain.w3.eth.get_logs(
                {
                    "address": Web3.to_checksum_address(self.contract),
                    "fromBlock": start,
                    "toBlock": end,
                }
            ),
        )
        by_block: dict[int, list[Any]] = {}
        for entry in logs:
            if entry.get("removed"):
                continue
            by_block.setdefault(int(entry["blockNumber"]), []).append(entry)
        blocks = {number: self._block(number) for number in sorted(by_block)}
        for number, entries in by_block.items():
            block_hash = blocks[number]["hash"]
            if any(bytes(HexBytes(e["blockHash"])) != block_hash for e in entries):
                logger.info("indexer: block %d changed while scanning; retrying", number)
                return
        still = self.chain.block_hash(end)
        anchor_ok = cursor.hash is None or self.chain.block_hash(cursor.number) == cursor.hash
        if end_hash is None or still != end_hash or not anchor_ok:
            logger.info("indexer: the chain moved while scanning %d-%d; retrying", start, end)
            return

        with self._transaction() as db:
            for number, entries in sorted(by_block.items()):
                block = blocks[number]
                for entry in sorted(entries, key=lambda e: int(e["logIndex"])):
                    self._record_event(db, entry, block)
                db.execute(
                    "INSERT INTO escrow_index_blocks VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (chain_id, contract, number) DO UPDATE "
                    "SET hash = excluded.hash, events = excluded.events",
                    (self.chain_id, self.contract, number, block["hash"], len(entries)),
                )
            db.execute(
                "INSERT INTO escrow_index_blocks VALUES (?, ?, ?, ?, 0) ON CONFLICT DO NOTHING",
                (self.chain_id, self.contract, end, end_hash),
            )
            db.execute(
                "DELETE FROM escrow_index_blocks WHERE chain_id = ? AND contract = ? "
                "AND events = 0 AND number < (SELECT MIN(number) FROM (SELECT number FROM "
                "escrow_index_blocks WHERE chain_id = ? AND contract = ? AND events = 0 "
                "ORDER BY number DESC LIMIT ?) AS kept)",
                (self.chain_id, self.contract, self.chain_id, self.contract, KEEP_EMPTY_BLOCKS),
            )
            self._set_cursor(db, end, end_hash)

    def _block(self, number: int) -> dict[str, Any]:
        """A block's hash, timestamp and transaction senders."""
        block = self.chain.run(
            "eth_getBlockByNumber",
            lambda: self.chain.w3.eth.get_block(number, full_transactions=True),
        )
        senders = {
            bytes(HexBytes(tx["hash"])): str(tx["from"])
            for tx in block["transactions"]
            if isinstance(tx, Mapping)
        }
        return {
            "hash": bytes(block["hash"]),
            "timestamp": int(block["timestamp"]),
            "senders": senders,
        }

    def _record_event(self, db: database.Database, entry: Any, block: Mapping[str, Any]) -> None:
        tx_hash = _hex(bytes(HexBytes(entry["transactionHash"])))
        block_hash = _hex(block["hash"])
        log_index = int(entry["logIndex"])
        base = event_record_id(self.chain_id, tx_hash, log_index, block_hash)
        known = db.execute(
            "SELECT status, generation FROM escrow_index_events WHERE base_id = ? "
            "ORDER BY generation DESC LIMIT 1",
            (base,),
        ).fetchone()
        if known is not None and known[0] == LIVE:
            return  # recorded already (the block was scanned before and never dropped)
        generation = 0 if known is None else int(known[1]) + 1
        record_id = base if generation == 0 else f"{base}:{generation}"
        decoded = self.client.decode_log(entry)
        sender = block["senders"].get(bytes(HexBytes(entry["transactionHash"])))
        payload = self._payload(entry, decoded, block_hash, tx_hash, sender)
        self._queue(
            db,
            prepare(
                {
                    "id": record_id,
                    "kind": KIND,
                    "timestamp": _rfc3339(int(block["timestamp"])),
                    "actor": f"eth:{sender}" if sender else INDEXER_ACTOR,
                    "payload": payload,
                },
                submitter=provenance.INDEXER,
            ),
        )
        db.execute(
            "INSERT INTO escrow_index_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record_id,
                base,
                generation,
                self.chain_id,
                self.contract,
                int(entry["blockNumber"]),
                block["hash"],
                tx_hash,
                log_index,
                payload["event"],
                payload["deal_id"],
                LIVE,
            ),
        )
        if payload["deal_id"] is not None:
            db.executemany(
                _INSERT_PARTY,
                [
                    (party, self.chain_id, self.contract, int(payload["deal_id"]), role, record_id)
                    for party, role in deal_parties(payload["event"], payload["args"])
                ],
            )

    def _payload(
        self,
        entry: Any,
        decoded: DecodedEvent | None,
        block_hash: str,
        tx_hash: str,
        sender: str | None,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "type": "event",
            "chain_id": self.chain_id,
            "contract": self.contract,
            "block_number": int(entry["blockNumber"]),
            "block_hash": block_hash,
            "tx_hash": tx_hash,
            "tx_from": sender,
            "log_index": int(entry["logIndex"]),
        }
        if decoded is None:
            payload["event"] = "unknown"
            payload["deal_id"] = None
            payload["args"] = {
                "topics": [_hex(bytes(HexBytes(t))) for t in entry["topics"]],
                "data": _hex(bytes(HexBytes(entry["data"]))),
            }
            return payload
        types = self._input_types.get(decoded.name, {})
        args = {
            name: _json_value(types.get(name, ""), value) for name, value in decoded.args.items()
        }
        payload["event"] = decoded.name
        payload["deal_id"] = str(decoded.args["dealId"]) if "dealId" in decoded.args else None
        payload["args"] = args
        return payload

    def _set_cursor(self, db: database.Database, number: int, block_hash: bytes) -> None:
        db.execute(
            "INSERT INTO escrow_index_cursor VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (chain_id, contract) DO UPDATE SET block_number = excluded.block_number, "
            "block_hash = excluded.block_hash, updated_ms = excluded.updated_ms",
            (self.chain_id, self.contract, number, block_hash, int(time.time() * 1000)),
        )


# -- queries ----------------------------------------------------------------------------------


def deals_of(
    path: Path,
    chain_id: int,
    contract: str,
    party: str,
    *,
    before: int | None = None,
    limit: int | None = None,
    database_url: str | None = None,
) -> list[int]:
    """The ids of the deals of vault ``contract`` on ``chain_id`` that ``party`` is a party
    of (buyer, supplier, arbiter, inspector, financier or approver) according to the events
    indexed into the log at ``path`` that no reorganisation retracted, newest first: below
    ``before`` when given, at most ``limit``. Reads only the party index (no chain call);
    an empty list when the database has no party index yet. The index is in the PostgreSQL
    database ``database_url`` when given (the log's), else in the SQLite file ``path``
    (opened read-only). Raises :class:`~chainaudit.core.errors.StoreError` if it cannot be
    read."""
    where = "the PostgreSQL database" if database_url else str(path)
    try:
        db = database.connect_reader(database_url or path)
    except database.DatabaseError as exc:
        raise StoreError(f"cannot read the party index in {where}: {exc}") from exc
    try:
        if not db.has_table("escrow_deal_parties"):
            return []
        rows = db.execute(
            "SELECT DISTINCT p.deal_id FROM escrow_deal_parties p "
            "JOIN escrow_index_events e ON e.record_id = p.record_id "
            "WHERE p.party = ? AND p.chain_id = ? AND p.contract = ? AND e.status = ? "
            "AND p.deal_id < ? ORDER BY p.deal_id DESC LIMIT ?",
            (
                party.lower(),
                chain_id,
                Web3.to_checksum_address(contract),
                LIVE,
                2**63 - 1 if before is None else before,
                2**62 if limit is None else limit,
            ),
        ).fetchall()
    except database.DatabaseError as exc:
        raise StoreError(f"cannot read the party index in {where}: {exc}") from exc
    finally:
        db.close()
    return [int(deal_id) for (deal_id,) in rows]


def events_for_deal(
    log: Log,
    deal_id: int,
    *,
    chain_id: int | None = None,
    contract: str | None = None,
    page: int = 1_000,
) -> list[Entry]:
    """Every ``escrow_event`` record of deal ``deal_id``, in log order: events and the
    retractions of reorganised ones (payload ``type`` ``"event"`` or ``"retraction"``).

    ``chain_id`` and ``contract`` narrow the search when one log indexes several vaults.
    Scans every ``escrow_event`` record with :meth:`Log.scan` (``O(escrow events)``);
    records whose content was erased are skipped, and so are records the indexer did not
    write (a stamped submitter not entitled to the kind, :mod:`chainaudit.core.provenance`).
    """
    wanted = str(deal_id)
    vault = Web3.to_checksum_address(contract) if contract else None
    found: list[Entry] = []
    start = 0
    while True:
        batch = log.scan(start=start, limit=page, kind=KIND)
        for entry in batch:
            if entry.body is None:
                continue
            document = json.loads(entry.body)
            if not provenance.document_entitled(document):
                continue  # not written by the indexer: `chainaudit reconcile` reports it
            payload = document.get("payload", {})
            if payload.get("deal_id") != wanted:
                continue
            if chain_id is not None and payload.get("chain_id") != chain_id:
                continue
            if vault is not None and payload.get("contract") != vault:
                continue
            found.append(entry)
        if len(batch) < page:
            return found
        start = batch[-1].index + 1


# -- audit ------------------------------------------------------------------------------------

_INDEX_COLUMNS: Final = (
    "record_id, base_id, generation, chain_id, contract, block_number, block_hash, tx_hash, "
    "log_index, event, deal_id, status"
)


def audit_index(log: Log, *, page: int = 2_000) -> list[AuditFinding]:
    """Check the escrow index (``escrow_index_events``) of ``log``'s file against the
    ``escrow_event`` records of the log.

    Every row must name a record (in the log, or still in the outbox) that is the event the
    row describes: its id made of the row's base id and generation, and chain, vault, block,
    transaction, log index, event name and deal as the record's payload states them; a row is
    ``retracted`` exactly when the record ``<id>:retracted`` exists. Every event record and
    retraction of a vault the index follows must have its row. Records appended after the
    index was read are left for the next audit. Returns one ``escrow`` finding per
    difference; an empty list when the file has no escrow index (none is created). Writes
    nothing; raises :class:`~chainaudit.core.errors.StoreError` if the file cannot be read.
    """
    size = log.refresh()  # every record below this was flushed before the snapshot below
    where = "the PostgreSQL database" if log.database_url else str(log.path)
    try:
        db = database.connect_reader(log.database_url or log.path)
    except database.DatabaseError as exc:
        raise StoreError(f"cannot read the escrow index in {where}: {exc}") from exc
    try:
        # one snapshot of the rows, the outbox and the vaults followed
        with db.read():
            if not db.has_table("escrow_index_events"):
                return []
            rows = db.execute(f"SELECT {_INDEX_COLUMNS} FROM escrow_index_events").fetchall()  # noqa: S608
            has_parties = db.has_table("escrow_deal_parties")
            party_rows = (
                [tuple(r) for r in db.execute("SELECT * FROM escrow_deal_parties")]
                if has_parties
                else []
            )
            pending = {
                str(record_id): _payload_of(body)
                for record_id, body in db.execute("SELECT record_id, body FROM escrow_index_outbox")
            }
            vaults = {
                (int(chain), str(contract))
                for chain, contract in db.execute(
                    "SELECT chain_id, contract FROM escrow_index_cursor"
                )
            }
    except database.DatabaseError as exc:
        raise StoreError(f"cannot read the escrow index in {where}: {exc}") from exc
    finally:
        db.close()
    records: dict[str, tuple[int, dict[str, Any] | None]] = {}
    start = 0
    while True:
        batch = log.scan(start=start, limit=page, kind=KIND)
        for entry in batch:
            records[entry.record_id] = (entry.index, _payload_of(entry.body))
        if len(batch) < page:
            break
        start = batch[-1].index + 1
    payloads = {rid: payload for rid, (_, payload) in records.items()}
    payloads.update((rid, p) for rid, p in pending.items() if rid not in payloads)
    findings: list[AuditFinding] = []
    listed: set[str] = set()
    for row in rows:
        record_id = str(row[0])
        listed.add(record_id)
        problem = _row_problem(row, payloads, f"{record_id}:retracted" in payloads)
        if problem is not None:
            at = records.get(record_id, (None, None))[0]
            findings.append(AuditFinding("escrow", at, record_id, f"escrow index row: {problem}"))
    for record_id, (index, payload) in sorted(records.items(), key=lambda r: r[1][0]):
        if index >= size or payload is None:
            continue
        vault = (payload.get("chain_id"), payload.get("contract"))
        if vault not in vaults:
            continue
        if payload.get("type") == "event" and record_id not in listed:
            detail = "an event record of a vault the escrow index follows, missing from the index"
        elif payload.get("type") == "retraction" and str(payload.get("retracts")) not in listed:
            detail = f"retracts {payload.get('retracts')!r}, which the escrow index does not list"
        else:
            continue
        findings.append(AuditFinding("escrow", index, record_id, detail))
    if has_parties:
        findings.extend(_audit_parties(rows, party_rows, payloads, records))
    return findings


def _audit_parties(
    rows: Sequence[Sequence[Any]],
    party_rows: Sequence[Sequence[Any]],
    payloads: Mapping[str, dict[str, Any] | None],
    records: Mapping[str, tuple[int, dict[str, Any] | None]],
) -> list[AuditFinding]:
    """Compare the party index with the parties the indexed party events name (an event
    whose record's content is unknown, e.g. erased, is left alone)."""
    implied: set[tuple[Any, ...]] = set()
    unknown: set[str] = set()
    for row in rows:
        record_id, chain_id, contract, event, deal_id = (
            str(row[0]),
            row[3],
            row[4],
            str(row[9]),
            row[10],
        )
        if event not in PARTY_ROLES or deal_id is None:
            continue
        payload = payloads.get(record_id)
        args = payload.get("args") if payload is not None else None
        if not isinstance(args, Mapping):
            unknown.add(record_id)
            continue
        implied.update(
            (party, chain_id, contract, int(deal_id), role, record_id)
            for party, role in deal_parties(event, args)
        )
    stored = {tuple(row) for row in party_rows}
    findings: list[AuditFinding] = []
    for party, _, _, deal_id, role, record_id in sorted(stored - implied, key=str):
        if record_id in unknown:
            continue
        findings.append(
            AuditFinding(
                "escrow",
                records.get(record_id, (None, None))[0],
                record_id,
                f"party index: makes {party} the {role} of deal {deal_id}, which the event "
                "does not",
            )
        )
    for party, _, _, deal_id, role, record_id in sorted(implied - stored, key=str):
        findings.append(
            AuditFinding(
                "escrow",
                records.get(record_id, (None, None))[0],
                record_id,
                f"party index: the event makes {party} the {role} of deal {deal_id}, missing "
                "from the party index",
            )
        )
    return findings


def _payload_of(body: object) -> dict[str, Any] | None:
    """The payload of a stored record body, if it has one."""
    try:
        document = json.loads(body) if isinstance(body, bytes | str) else None
    except ValueError:
        return None
    payload = document.get("payload") if isinstance(document, dict) else None
    return payload if isinstance(payload, dict) else None


def _row_problem(
    row: Sequence[Any], payloads: Mapping[str, dict[str, Any] | None], retracted: bool
) -> str | None:
    """What is wrong with one ``escrow_index_events`` row, or ``None``."""
    record_id, base, generation = str(row[0]), str(row[1]), row[2]
    if record_id not in payloads:
        return "it lists an event record the log does not hold"
    payload = payloads[record_id]
    if payload is None or payload.get("type") != "event":
        return "the log's record under its id is not an escrow event"
    block_hash = row[6]
    stated = {
        "chain_id": row[3],
        "contract": row[4],
        "block_number": row[5],
        "block_hash": _hex(bytes(block_hash)) if isinstance(block_hash, bytes) else block_hash,
        "tx_hash": row[7],
        "log_index": row[8],
        "event": row[9],
        "deal_id": row[10],
    }
    differ = [
        f"{name} is {value!r}, the record says {payload.get(name)!r}"
        for name, value in stated.items()
        if payload.get(name) != value
    ]
    try:
        derived = event_record_id(
            int(payload["chain_id"]),
            str(payload["tx_hash"]),
            int(payload["log_index"]),
            str(payload["block_hash"]),
        )
    except (KeyError, TypeError, ValueError):
        derived = None
    if base != derived:
        differ.append(f"base_id is {base!r}, the record's event gives {derived!r}")
    if record_id != (base if generation == 0 else f"{base}:{generation}"):
        differ.append(f"generation {generation!r} of base {base!r} does not give its id")
    status = RETRACTED if retracted else LIVE
    if row[11] != status:
        differ.append(f"status is {row[11]!r}, the records say {status!r}")
    return "; ".join(differ) or None


# -- helpers ----------------------------------------------------------------------------------


def _input_types(abi: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    return {
        str(entry["name"]): {str(p["name"]): str(p["type"]) for p in entry.get("inputs", [])}
        for entry in abi
        if entry.get("type") == "event"
    }


def _json_value(abi_type: str, value: Any) -> Any:
    """An event argument as JSON without floats or integers beyond 2^53 - 1."""
    if abi_type.endswith("]") and isinstance(value, list | tuple):
        inner = abi_type[: abi_type.rindex("[")]
        return [_json_value(inner, v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        bits = abi_type.removeprefix("u").removeprefix("int")
        narrow = bits.isdigit() and int(bits) <= 53
        return value if narrow and abs(value) <= MAX_SAFE_INTEGER else str(value)
    if isinstance(value, bytes | bytearray):
        return _hex(bytes(value))
    if isinstance(value, list | tuple):
        return [_json_value("", v) for v in value]
    return value if isinstance(value, str) else str(value)


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def _bare(value: str) -> str:
    return value[2:].lower() if value.startswith(("0x", "0X")) else value.lower()


def _rfc3339(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
