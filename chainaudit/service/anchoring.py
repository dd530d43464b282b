"""The anchoring service: puts the log's checkpoints on chain, durably and exactly once.

Each anchor is a row of the ``anchors`` table, beside the log's tables (its SQLite file or
its PostgreSQL schema), and moves through

    pending ──► submitted ──► confirmed ──► final
       ▲            │  ▲           │
       └────────────┘  └───────────┘   (reverted, dropped or reorganised away)

* **pending**: a checkpoint ``(tree_size, root)`` of the log was chosen, because
  ``max_batch_records`` leaves were waiting or the oldest waiting leaf was older than
  ``max_batch_seconds`` (or :meth:`Anchorer.request` asked for it).
* **submitted**: the ``anchor`` transaction, carrying the RFC 9162 consistency proof from the
  checkpoint the contract holds now, was signed and *recorded before it was sent*; a restart
  re-broadcasts the same signed bytes, so an anchor is never lost nor sent twice.
* **confirmed**: its receipt is on the canonical chain under ``confirmations`` blocks.
* **final**: under ``finality`` blocks, the block hash re-checked.

A reorganisation that drops the transaction, or a revert, sends the anchor back to
*submitted* or *pending*; it is then re-broadcast or re-proved from the chain's new state.
The chain is the source of truth for what is anchored: before proving, the service reads the
contract's latest checkpoint and checks that the log still reproduces it. Chain outages never
raise out of :meth:`Anchorer.tick`; they are recorded and retried with backoff, while the log
keeps accepting records.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract

from chainaudit.chain.anchor_abi import AUDIT_ANCHOR_ABI
from chainaudit.chain.chain import Chain, SignedTx, broadcast, sign_call
from chainaudit.core import note
from chainaudit.core.errors import (
    ChainError,
    ChainUnavailableError,
    NotFoundError,
    NotLeaderError,
    StoreError,
)
from chainaudit.log import database
from chainaudit.log.checkpointing import Cosign, sign_at
from chainaudit.log.store import AuditFinding, Log
from chainaudit.service.leader import Fence, pause_point

__all__ = [
    "ANCHORED",
    "CONFIRMED",
    "FINAL",
    "PENDING",
    "SUBMITTED",
    "AnchorBook",
    "AnchorPolicy",
    "AnchorRecord",
    "Anchorer",
    "audit_against_chain",
]

logger = logging.getLogger(__name__)

PENDING: Final = "pending"
SUBMITTED: Final = "submitted"
CONFIRMED: Final = "confirmed"
FINAL: Final = "final"
SUPERSEDED: Final = "superseded"
ACTIVE: Final = (PENDING, SUBMITTED, CONFIRMED)
ANCHORED: Final = (CONFIRMED, FINAL)
_LOCK: Final = "anchors"
"""The :meth:`~chainaudit.log.database.Database.write_as` lock of the anchor writers."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS anchors (
    id INTEGER PRIMARY KEY,
    tree_size INTEGER NOT NULL,
    root BLOB NOT NULL,
    status TEXT NOT NULL,
    chain_id INTEGER NOT NULL,
    contract TEXT NOT NULL,
    seq INTEGER,
    prev_size INTEGER,
    tx_hash BLOB,
    raw_tx BLOB,
    nonce INTEGER,
    block_number INTEGER,
    block_hash BLOB,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS anchors_by_status ON anchors (status, tree_size);
"""

_COLUMNS = (
    "id, tree_size, root, status, chain_id, contract, seq, prev_size, tx_hash, nonce, "
    "block_number, block_hash, attempts, last_error, created_ms, updated_ms"
)


@dataclass(frozen=True, slots=True)
class AnchorPolicy:
    """When to anchor and how long to wait. ``finality >= confirmations >= 1``."""

    max_batch_records: int = 10_000
    max_batch_seconds: float = 60.0
    confirmations: int = 1
    finality: int = 12
    retry_initial: float = 0.5
    retry_max: float = 30.0
    poll_interval: float = 0.5


@dataclass(frozen=True, slots=True)
class AnchorRecord:
    """One anchor as recorded by the service."""

    id: int
    tree_size: int
    root: bytes
    status: str
    chain_id: int
    contract: str
    seq: int | None
    prev_size: int | None
    tx_hash: bytes | None
    nonce: int | None
    block_number: int | None
    block_hash: bytes | None
    attempts: int
    last_error: str | None
    created_ms: int
    updated_ms: int

    def checkpoint_note(self, log: Log) -> str | None:
        """The signed checkpoint note of this anchor's tree size (the log's
        ``signed_checkpoints`` row of that size), or ``None`` if none was signed."""
        return log.signed_checkpoint(self.tree_size)

    def public(self) -> dict[str, Any]:
        """The anchor as JSON-friendly data (hashes in 0x-hex)."""
        return {
            "id": self.id,
            "tree_size": self.tree_size,
            "root": _hex(self.root),
            "status": self.status,
            "chain_id": self.chain_id,
            "contract": self.contract,
            "checkpoint_seq": self.seq,
            "tx_hash": _hex(self.tx_hash),
            "block_number": self.block_number,
            "block_hash": _hex(self.block_hash),
            "attempts": self.attempts,
            "last_error": self.last_error,
        }


def _hex(value: bytes | None) -> str | None:
    return None if value is None else "0x" + value.hex()


class AnchorBook:
    """Read and write access to the ``anchors`` table beside ``log``'s tables: in the log's
    SQLite file, or in its PostgreSQL database (schema) when the log is there
    (``log.database_url``), so that every node sharing that database sees the same anchors.

    Every write is one transaction serialised with the other anchor writers
    (:meth:`~chainaudit.log.database.Database.write_as` ``"anchors"``). With a :attr:`fence`
    (the anchoring service of an elected leader, :mod:`chainaudit.service.leader`), every write
    first checks in that same transaction that the fence's term is still current, and raises
    :class:`~chainaudit.core.errors.NotLeaderError` (nothing written) if not.

    Raises :class:`~chainaudit.core.errors.StoreError` when the database cannot be opened or the
    table not created.
    """

    def __init__(self, log: Log, *, fence: Fence | None = None) -> None:
        self._log = log
        self.fence = fence
        where = "the PostgreSQL database" if log.database_url else str(log.path)
        try:
            self._db = database.connect(log.database_url or log.path)
        except database.DatabaseError as exc:
            raise StoreError(f"cannot open the anchor table in {where}: {exc}") from exc
        try:
            if self._db.engine == "sqlite":
                self._db.executescript(_SCHEMA)
            elif not self._db.has_table("anchors"):
                with self._db.write_as(_LOCK):  # several processes may open at once
                    self._db.executescript(database.adapt_schema(_SCHEMA, self._db.engine))
        except database.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"cannot open the anchor table in {where}: {exc}") from exc

    @property
    def engine(self) -> database.Engine:
        """Where the table is: ``sqlite`` or ``postgresql``."""
        return self._db.engine

    def close(self) -> None:
        self._db.close()

    def _rows(self, where: str, params: tuple[Any, ...] = ()) -> list[AnchorRecord]:
        sql = f"SELECT {_COLUMNS} FROM anchors {where}"  # noqa: S608 - fixed column list
        return [AnchorRecord(*row) for row in self._db.execute(sql, params)]

    def all(self) -> list[AnchorRecord]:
        return self._rows("ORDER BY id")

    def get(self, anchor_id: int) -> AnchorRecord:
        rows = self._rows("WHERE id = ?", (anchor_id,))
        if not rows:
            raise NotFoundError(f"no anchor {anchor_id}")
        return rows[0]

    def active(self) -> AnchorRecord | None:
        rows = self._rows("WHERE status IN (?, ?, ?) ORDER BY id DESC LIMIT 1", ACTIVE)
        return rows[0] if rows else None

    def with_status(self, status: str) -> list[AnchorRecord]:
        return self._rows("WHERE status = ? ORDER BY id", (status,))

    def latest_anchored(self) -> AnchorRecord | None:
        rows = self._rows(
            "WHERE status IN (?, ?) ORDER BY tree_size DESC, id DESC LIMIT 1", ANCHORED
        )
        return rows[0] if rows else None

    def covering(self, leaf_index: int) -> AnchorRecord | None:
        """The newest anchored checkpoint that contains leaf ``leaf_index``, preferring final."""
        for statuses in ((FINAL,), ANCHORED):
            marks = ", ".join("?" for _ in statuses)
            rows = self._rows(
                f"WHERE status IN ({marks}) AND tree_size > ? "
                "ORDER BY tree_size DESC, id DESC LIMIT 1",
                (*statuses, leaf_index),
            )
            if rows:
                return rows[0]
        return None

    def create(self, tree_size: int, root: bytes, chain_id: int, contract: str) -> AnchorRecord:
        """Record a new pending anchor; its id is one past the largest (the table's ids are
        explicit on both engines, so a table copied by ``migrate`` goes on from its last)."""
        now = _now_ms()
        with self._write() as db:
            next_id = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM anchors").fetchone()
            anchor_id = int(next_id[0])
            db.execute(
                "INSERT INTO anchors (id, tree_size, root, status, chain_id, contract, "
                "created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (anchor_id, tree_size, root, PENDING, chain_id, contract, now, now),
            )
        return self.get(anchor_id)

    def update(self, anchor_id: int, **fields: Any) -> AnchorRecord:
        fields["updated_ms"] = _now_ms()
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._write() as db:
            db.execute(
                f"UPDATE anchors SET {assignments} WHERE id = ?",  # noqa: S608 - names are ours
                (*fields.values(), anchor_id),
            )
        return self.get(anchor_id)

    def check_fence(self) -> None:
        """Raise :class:`NotLeaderError` when this book has a fence whose term has ended."""
        if self.fence is not None:
            with self.fence.transaction(self._db, _LOCK):
                pass

    @contextmanager
    def _write(self) -> Iterator[database.Database]:
        """The connection for one write transaction (``write_as("anchors")``), which checks
        the fence first when there is one (:meth:`chainaudit.service.leader.Fence.transaction`)."""
        if self.fence is None:
            with self._db.write_as(_LOCK) as db:
                yield db
            return
        with self.fence.transaction(self._db, _LOCK) as db:
            yield db

    def raw_tx(self, anchor_id: int) -> bytes | None:
        row = self._db.execute("SELECT raw_tx FROM anchors WHERE id = ?", (anchor_id,)).fetchone()
        return None if row is None else row[0]

    def oldest_unanchored_ms(self, anchored_size: int) -> int | None:
        """When the oldest leaf past ``anchored_size`` was committed (from the log's own
        checkpoints), or ``None`` when nothing is waiting."""
        return self._log.oldest_commit_ms_after(anchored_size)


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class OnChainCheckpoint:
    seq: int
    tree_size: int
    root: bytes
    block_number: int


class Anchorer:
    """Drives anchors of ``log`` to finality on the ``AuditAnchor`` at ``contract_address``.

    Call :meth:`tick` repeatedly (or :meth:`run` in a thread); each call advances every open
    anchor by at most one step and returns the anchor it worked on last. ``clock`` returns
    seconds and is injectable for tests.
    """

    def __init__(
        self,
        log: Log,
        chain: Chain,
        account: LocalAccount,
        contract_address: str,
        *,
        policy: AnchorPolicy | None = None,
        clock: Callable[[], float] = time.time,
        signer: note.Signer | None = None,
        cosign: Cosign | None = None,
        fence: Fence | None = None,
    ) -> None:
        self.log = log
        self.cosign = cosign
        """The cosigning step run on each new anchor's note (witnesses), if any."""
        self.signer = signer
        """The log's checkpoint key: each new anchor's size gets its signed checkpoint note
        (:func:`chainaudit.log.checkpointing.sign_at`), stored under that size."""
        self.chain = chain
        self.account = account
        self.policy = policy or AnchorPolicy()
        self.clock = clock
        self.contract_address = Web3.to_checksum_address(contract_address)
        self.book = AnchorBook(log, fence=fence)
        """The anchors; with a fence, every write checks the leader's term first."""
        self._contract: Contract = chain.contract(self.contract_address, AUDIT_ANCHOR_ABI)
        self._chain_id: int | None = None
        self._requested = False
        self.last_error: str | None = None

    # -- public -----------------------------------------------------------------------------

    def request(self) -> None:
        """Anchor the current log at the next :meth:`tick`, whatever the batch policy says."""
        self._requested = True

    def tick(self) -> AnchorRecord | None:
        """Make one step of progress; never raises for a chain outage (see :attr:`last_error`).

        Raises :class:`StoreError` if the log no longer reproduces a checkpoint the chain holds
        (history was rewritten): that is an integrity alarm, not something to retry.
        """
        try:
            result = self._step()
        except ChainUnavailableError as exc:
            self.last_error = str(exc)
            logger.warning("anchoring: chain unavailable: %s", exc)
            return self.book.active()
        self.last_error = None
        return result

    def anchor_now(
        self, *, timeout: float = 120.0, until: tuple[str, ...] = ANCHORED
    ) -> AnchorRecord:
        """Anchor the log's current size and wait until the anchor reaches one of ``until``.

        Raises :class:`ChainError` on timeout (the anchor stays recorded and will complete).
        """
        self.log.refresh()
        target = self.log.size
        if target == 0:
            raise NotFoundError("the log is empty: nothing to anchor")
        self.request()
        deadline = time.monotonic() + timeout
        delay = self.policy.retry_initial
        while True:
            self.tick()
            done = self.book.latest_anchored()
            if done is not None and done.tree_size >= target and done.status in until:
                return done
            if time.monotonic() > deadline:
                active = self.book.active()  # a refused transaction is noted on its anchor
                reason = self.last_error or (active.last_error if active else None)
                raise ChainError(
                    f"anchoring did not finish within {timeout}s"
                    + (f": {reason}" if reason else "")
                )
            if self.last_error:
                time.sleep(delay)
                delay = min(delay * 2, self.policy.retry_max)
            else:
                time.sleep(0.02)

    def run(self, stop: threading.Event) -> None:
        """Tick until ``stop`` is set, backing off exponentially while the chain is down;
        returns at once when the leader's term ended (:class:`NotLeaderError`)."""
        delay = self.policy.retry_initial
        while not stop.is_set():
            try:
                self.tick()
            except NotLeaderError as exc:
                logger.warning("anchoring: stopped: %s", exc)
                return
            except Exception:  # the service must outlive any single failure; it is logged
                logger.exception("anchoring: unexpected failure")
                self.last_error = "unexpected failure (see the service log)"
            if self.last_error:
                stop.wait(delay)
                delay = min(delay * 2, self.policy.retry_max)
            else:
                delay = self.policy.retry_initial
                stop.wait(self.policy.poll_interval)

    def close(self) -> None:
        self.book.close()

    # -- state machine ----------------------------------------------------------------------

    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = self.chain.chain_id()
        return self._chain_id

    def _step(self) -> AnchorRecord | None:
        """Advance every open anchor by one step; start a new one when the batch is due.

        Confirmed anchors are re-checked against reorganisations until final, submitted ones
        are followed in nonce order, and the newest pending one is proved and submitted (an
        older pending anchor is superseded by it: the newer checkpoint covers its leaves).
        """
        touched: AnchorRecord | None = None
        for anchor in self.book.with_status(CONFIRMED):
            touched = self._follow_confirmed(anchor)
        for anchor in self.book.with_status(SUBMITTED):
            touched = self._follow_submitted(anchor)
        pending = self.book.with_status(PENDING)
        for stale in pending[:-1]:
            self.book.update(stale.id, status=SUPERSEDED, last_error="covered by a later anchor")
        if pending and not self.book.with_status(SUBMITTED):
            return self._submit(pending[-1])
        if not pending and not self.book.with_status(SUBMITTED):
            return self._maybe_start() or touched
        return touched

    def _maybe_start(self) -> AnchorRecord | None:
        self.log.refresh()
        size = self.log.size
        done = self.book.latest_anchored()
        anchored = done.tree_size if done is not None else 0
        waiting = size - anchored
        if waiting <= 0:
            self._requested = False
            return None
        oldest = self.book.oldest_unanchored_ms(anchored)
        age = self.clock() - (oldest / 1000 if oldest is not None else self.clock())
        due = (
            self._requested
            or waiting >= self.policy.max_batch_records
            or age >= self.policy.max_batch_seconds
        )
        if not due:
            return None
        self._requested = False
        if self.signer is not None:  # the anchor's note: signed_checkpoints[tree_size]
            sign_at(self.log, self.signer, size, cosign=self.cosign)
        record = self.book.create(
            size, self.log.root_at(size), self.chain_id(), self.contract_address
        )
        logger.info("anchoring: checkpoint %d %s is pending", size, record.root.hex())
        return record

    def _latest_on_chain(self) -> OnChainCheckpoint | None:
        count = self.chain.run(
            "checkpointCount", lambda: int(self._contract.functions.checkpointCount().call())
        )
        if count == 0:
            return None
        seq, size, root, block, _ = self.chain.run(
            "latestCheckpoint", lambda: self._contract.functions.latestCheckpoint().call()
        )
        return OnChainCheckpoint(int(seq), int(size), bytes(root), int(block))

    def _submit(self, anchor: AnchorRecord) -> AnchorRecord:
        latest = self._latest_on_chain()
        if latest is not None:
            if latest.tree_size >= anchor.tree_size:
                return self._adopt_or_supersede(anchor, latest)
            if self.log.root_at(latest.tree_size) != latest.root:
                raise StoreError(
                    f"the log does not reproduce the anchored checkpoint {latest.seq} (size "
                    f"{latest.tree_size}, root {latest.root.hex()}): its history was rewritten"
                )
        previous = latest.tree_size if latest is not None else 0
        proof = self.log.consistency_proof(previous, anchor.tree_size) if previous else []
        call = self._contract.functions.anchor(anchor.tree_size, anchor.root, proof)
        try:
            signed = sign_call(self.chain, self.account, call)
        except ChainUnavailableError:
            raise
        except ChainError as exc:
            return self.book.update(anchor.id, attempts=anchor.attempts + 1, last_error=str(exc))
        record = self.book.update(
            anchor.id,
            status=SUBMITTED,
            prev_size=previous,
            tx_hash=signed.tx_hash,
            raw_tx=signed.raw,
            nonce=signed.nonce,
            block_number=None,
            block_hash=None,
            attempts=anchor.attempts + 1,
            last_error=None,
        )
        logger.info("anchoring: submitted %s for size %d", signed.tx_hash.hex(), anchor.tree_size)
        pause_point("anchor-recorded")  # test-only: the transaction is journaled, not sent
        broadcast(self.chain, signed)
        pause_point("anchor-broadcast")  # test-only: sent, its receipt not yet followed
        return record

    def _adopt_or_supersede(self, anchor: AnchorRecord, latest: OnChainCheckpoint) -> AnchorRecord:
        """The chain already holds a checkpoint at or past ours: adopt it if it is ours."""
        if latest.tree_size == anchor.tree_size and latest.root == anchor.root:
            tx_hash = self._find_anchor_tx(latest.seq) or anchor.tx_hash
            block_hash = self.chain.block_hash(latest.block_number)
            return self.book.update(
                anchor.id,
                status=SUBMITTED,
                seq=latest.seq,
                tx_hash=tx_hash,
                block_number=latest.block_number,
                block_hash=block_hash,
            )
        return self.book.update(
            anchor.id,
            status=SUPERSEDED,
            last_error=f"the chain already holds size {latest.tree_size} (seq {latest.seq})",
        )

    def _find_anchor_tx(self, seq: int) -> bytes | None:
        event = self._contract.events.CheckpointAnchored()
        topic = "0x" + seq.to_bytes(32, "big").hex()
        logs = self.chain.run(
            "eth_getLogs",
            lambda: self.chain.w3.eth.get_logs(
                {
                    "address": self.contract_address,
                    "fromBlock": 0,
                    "toBlock": "latest",
                    "topics": [event.topic, topic],
                }
            ),
        )
        return bytes(logs[-1]["transactionHash"]) if logs else None

    def _follow_submitted(self, anchor: AnchorRecord) -> AnchorRecord:
        assert anchor.tx_hash is not None
        receipt = self.chain.receipt(anchor.tx_hash)
        if receipt is None:
            latest = self._latest_on_chain()
            if latest is not None and latest.tree_size >= anchor.tree_size:
                return self._adopt_or_supersede(anchor, latest)
            return self._rebroadcast_or_repend(anchor)
        if receipt["status"] != 1:
            logger.warning("anchoring: %s reverted; re-proving", anchor.tx_hash.hex())
            return self.book.update(
                anchor.id, status=PENDING, last_error="anchor transaction reverted"
            )
        seq = self._seq_from_receipt(receipt)
        block_number = int(receipt["blockNumber"])
        depth = self.chain.block_number() - block_number + 1
        status = CONFIRMED if depth >= self.policy.confirmations else SUBMITTED
        return self.book.update(
            anchor.id,
            status=status,
            seq=seq,
            block_number=block_number,
            block_hash=bytes(receipt["blockHash"]),
            last_error=None,
        )

    def _rebroadcast_or_repend(self, anchor: AnchorRecord) -> AnchorRecord:
        """The transaction is not mined: send the recorded bytes again, or start over if its
        nonce was consumed by something else."""
        raw = self.book.raw_tx(anchor.id)
        mined_nonce = self.chain.run(
            "eth_getTransactionCount",
            lambda: int(self.chain.w3.eth.get_transaction_count(self.account.address, "latest")),
        )
        if raw is None or anchor.nonce is None or mined_nonce > anchor.nonce:
            return self.book.update(
                anchor.id, status=PENDING, last_error="anchor transaction was dropped"
            )
        self.book.check_fence()  # only the current leader sends (the same bytes) again
        try:
            broadcast(self.chain, SignedTx(anchor.tx_hash or b"", raw, anchor.nonce))
        except ChainUnavailableError:
            raise
        except ChainError as exc:
            return self.book.update(anchor.id, status=PENDING, last_error=str(exc))
        return self.book.update(anchor.id, block_number=None, block_hash=None)

    def _seq_from_receipt(self, receipt: Any) -> int | None:
        event = self._contract.events.CheckpointAnchored()
        for entry in receipt["logs"]:
            if HexBytes(entry["topics"][0]) == HexBytes(event.topic) and (
                Web3.to_checksum_address(entry["address"]) == self.contract_address
            ):
                return int.from_bytes(bytes(entry["topics"][1]), "big")
        return None

    def _follow_confirmed(self, anchor: AnchorRecord) -> AnchorRecord:
        assert anchor.block_number is not None and anchor.tx_hash is not None
        canonical = self.chain.block_hash(anchor.block_number)
        receipt = self.chain.receipt(anchor.tx_hash)
        if (
            canonical != anchor.block_hash
            or receipt is None
            or bytes(receipt["blockHash"]) != anchor.block_hash
        ):
            logger.warning(
                "anchoring: block %d of anchor %d was reorganised away",
                anchor.block_number,
                anchor.id,
            )
            return self.book.update(
                anchor.id,
                status=SUBMITTED,
                block_number=None,
                block_hash=None,
                last_error="reorganised out of the canonical chain",
            )
        depth = self.chain.block_number() - anchor.block_number + 1
        if depth >= self.policy.finality:
            return self.book.update(anchor.id, status=FINAL)
        return anchor


def audit_against_chain(log: Log, chain: Chain, contract_address: str) -> list[AuditFinding]:
    """Compare every checkpoint the contract holds with the root the log gives at that size.

    Catches a history rewritten consistently in the database (records, tree and local
    checkpoints alike), which the local audit alone cannot: the chain keeps the old roots.
    Returns one ``history`` finding per checkpoint the log no longer reproduces.
    """
    contract = chain.contract(contract_address, AUDIT_ANCHOR_ABI)
    count = chain.run("checkpointCount", lambda: int(contract.functions.checkpointCount().call()))
    findings: list[AuditFinding] = []
    previous = 0
    for seq in range(count):
        call = contract.functions.checkpoint(seq).call
        size, root, block, _ = chain.run("checkpoint", call)
        size, root = int(size), bytes(root)
        if size > log.size:
            detail = f"anchored checkpoint {seq} has size {size}, beyond the log's {log.size}"
            findings.append(AuditFinding("history", None, None, detail))
        elif log.root_at(size) != root:
            findings.append(
                AuditFinding(
                    "history",
                    previous,
                    None,
                    f"leaves [{previous}, {size}) differ from anchored checkpoint {seq} "
                    f"(block {block}): the chain holds root {root.hex()}, the log gives "
                    f"{log.root_at(size).hex()}",
                )
            )
        previous = size
    return findings
