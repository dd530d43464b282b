"""The persistent, append-only record log: SQLite in WAL mode.

Two tables hold the log. ``records`` keeps each record's canonical bytes by leaf index;
``tiles`` keeps the hash of every *perfect, aligned* subtree of the RFC 9162 tree — leaves at
level 0 and every complete pair above them — packed 256 leaves to a row
(:mod:`chainaudit.tiles`). Any inclusion or consistency proof, and the root at any past size,
is then a fold of at most ``2 log2 n`` stored hashes (:func:`chainaudit.merkle.perfect_blocks`),
read in one query of a few rows. Appending keeps the right border of the tree (the "frontier",
one hash per set bit of the size) in memory, so appends read only the tiles on the right edge;
a restart reloads the frontier in ``O(log n)`` reads, never the tree.

Appends are group-committed: one transaction per batch, ``synchronous=FULL``, so a batch that
:meth:`Log.append` has returned from survives a crash of the process or the machine, and a
batch that fails leaves nothing behind. Every commit also records a checkpoint (size, root)
that :meth:`Log.audit` checks history against.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final

from chainaudit import merkle, native, tiles
from chainaudit.errors import ConflictError, NotFoundError, StoreError
from chainaudit.records import KINDS, PreparedRecord, same_content

DB_NAME: Final = "log.sqlite"
SCHEMA_VERSION: Final = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    idx INTEGER PRIMARY KEY,
    record_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    ts INTEGER NOT NULL,
    body BLOB
);
CREATE TABLE IF NOT EXISTS tiles (
    id INTEGER PRIMARY KEY,
    width INTEGER NOT NULL,
    hashes BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS record_signatures (
    record_id TEXT PRIMARY KEY,
    signer TEXT NOT NULL,
    signature TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deal_records (
    deal_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (deal_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    created_ms INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Entry:
    """A record as stored: its position, its metadata and its canonical bytes.

    ``body`` is ``None`` once the record's content has been erased; ``leaf_hash`` stays.
    """

    index: int
    record_id: str
    kind: str
    actor: str
    timestamp_ms: int
    body: bytes | None
    leaf_hash: bytes


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What one :meth:`Log.append` did: new leaves and records already present."""

    appended: int
    duplicates: int
    first_index: int
    """The index of the first new leaf (equals ``tree_size - appended``)."""
    tree_size: int
    root: bytes
    indexes: tuple[int, ...]
    """The leaf index of every submitted record, in submission order."""


@dataclass(slots=True)
class AuditFinding:
    """One difference between the stored records and the tree they were committed to."""

    problem: str
    """One of ``altered``, ``reordered``, ``deleted``, ``inserted``, ``tree``, ``history``."""
    index: int | None
    record_id: str | None
    detail: str


@dataclass(slots=True)
class AuditReport:
    """The outcome of :meth:`Log.audit`: clean when ``findings`` is empty."""

    tree_size: int
    records_checked: int
    nodes_checked: int
    root: bytes
    findings: list[AuditFinding] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.findings


class Log:
    """An append-only RFC 9162 log of records in one SQLite file.

    Open it with :meth:`open` (a data directory) or the constructor (a file path); use it as a
    context manager or call :meth:`close`. One object serves one thread at a time; several
    processes may share the file (SQLite serialises writers and each append re-reads the size
    it extends).
    """

    def __init__(self, path: Path | str, *, kinds: frozenset[str] = KINDS) -> None:
        self.path = Path(path)
        self.kinds = kinds | KINDS
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, timeout=30.0, check_same_thread=False
            )
            self._db.executescript(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
                "PRAGMA cache_size=-262144; PRAGMA temp_store=MEMORY;"
            )
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema', ?), ('tree_size', 0)",
                (SCHEMA_VERSION,),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the log at {self.path}: {exc}") from exc
        self._size = -1
        self._frontier: list[bytes] = []
        try:
            if self._has_table("tree"):
                self._upgrade_from_node_rows()
            self._sync()
        except BaseException:
            self._db.close()
            raise

    def _has_table(self, name: str) -> bool:
        query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return self._db.execute(query, (name,)).fetchone() is not None

    def _upgrade_from_node_rows(self) -> None:
        """Upgrade a schema-1 log, which kept one ``tree`` row per node, to tiles.

        The tiles are rebuilt from the stored leaves in one transaction (nothing changes if it
        fails) and must reproduce the last recorded checkpoint; raises :class:`StoreError`
        if leaves are missing or they do not.
        """
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if self._has_table("tree"):  # not upgraded meanwhile by another process
                size = self._stored_size()
                leaves = [
                    _as_bytes(node)
                    for (node,) in db.execute(
                        "SELECT hash FROM tree WHERE id >= 0 AND id < ? ORDER BY id", (size,)
                    )
                ]
                if len(leaves) != size:
                    raise StoreError(
                        f"cannot upgrade the log at {self.path}: {size - len(leaves)} of its "
                        f"{size} leaves are missing"
                    )
                batch = Transaction(self, 0, [])
                batch._write_tiles(batch._grow(leaves))
                last = db.execute(
                    "SELECT size, root FROM checkpoints ORDER BY size DESC LIMIT 1"
                ).fetchone()
                if last is not None and (last[0] != size or last[1] != batch.root()):
                    raise StoreError(
                        f"cannot upgrade the log at {self.path}: its leaves do not reproduce "
                        f"the checkpoint at size {last[0]} (run `chainaudit audit` with the "
                        "version that wrote it)"
                    )
                db.execute("DROP TABLE tree")
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @classmethod
    def open(cls, data_dir: Path | str, *, kinds: frozenset[str] = KINDS) -> Log:
        """Open (creating if needed) the log in ``data_dir``."""
        directory = Path(data_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the data directory {directory}: {exc}") from exc
        return cls(directory / DB_NAME, kinds=kinds)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Log:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- size, root and the frontier --------------------------------------------------------

    @property
    def size(self) -> int:
        """The number of leaves, as of this object's last read or write."""
        return self._size

    def refresh(self) -> int:
        """Re-read the size written by other connections; return it."""
        self._sync()
        return self._size

    def root(self) -> bytes:
        """Return the current root (RFC 9162 §2.1.1); SHA-256 of "" for the empty log."""
        return self._fold_frontier(self._frontier)

    def _stored_size(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'tree_size'").fetchone()
        return int(row[0])

    def _sync(self) -> None:
        size = self._stored_size()
        if size != self._size:
            self._frontier = self._read_blocks(merkle.perfect_blocks(0, size))
            self._size = size

    @staticmethod
    def _fold_frontier(frontier: Sequence[bytes]) -> bytes:
        return merkle.fold_blocks(frontier) if frontier else merkle.EMPTY_ROOT

    # -- appending ---------------------------------------------------------------------------

    def append(
        self,
        records: Sequence[PreparedRecord],
        signatures: Mapping[str, tuple[str, str]] | None = None,
    ) -> AppendResult:
        """Append a batch of records in one durable transaction.

        A record whose id is already in the log (or earlier in the batch) with the same content
        is not appended again; its existing index is reported. The whole batch is refused with
        :class:`ConflictError`, and nothing is written, if any id was used before with different
        content. On return the batch is committed and survives a crash.
        """
        with self.transaction() as batch:
            return batch.append(records, signatures)

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Hold one write transaction open across several :meth:`Transaction.append` calls.

        Everything appended inside the ``with`` block is committed at its end, durably and as
        one unit, with one checkpoint; an exception rolls all of it back and leaves the log as
        it was. Used to ingest a large file atomically while it is still being parsed.
        """
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot start a write transaction: {exc}") from exc
        try:
            self._sync()
            batch = Transaction(self, self._size, list(self._frontier))
            yield batch
            if batch.size != self._size:
                db.execute("UPDATE meta SET value = ? WHERE key = 'tree_size'", (batch.size,))
                db.execute(
                    "INSERT INTO checkpoints VALUES (?, ?, ?)",
                    (batch.size, batch.root(), int(time.time() * 1000)),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._size, self._frontier = batch.size, batch.frontier

    def _split_new(
        self, records: Sequence[PreparedRecord]
    ) -> tuple[list[PreparedRecord], list[int], int]:
        """Separate new records from re-submissions.

        Returns the new records, one position per submitted record (``i >= 0``: the i-th new
        record; ``-index - 1``: already stored at ``index``), and the duplicate count. Raises
        :class:`ConflictError` listing every id re-used with different content.
        """
        ids = [r.record_id for r in records]
        stored: dict[str, tuple[int, bytes | None]] = {}
        if ids:
            for idx, record_id, body in self._db.execute(
                "SELECT idx, record_id, body FROM records "
                "WHERE record_id IN (SELECT value FROM json_each(?))",
                (json.dumps(ids),),
            ):
                stored[record_id] = (idx, body)
        fresh: list[PreparedRecord] = []
        batch: dict[str, PreparedRecord] = {}
        positions: list[int] = []
        conflicts: list[str] = []
        duplicates = 0
        for record in records:
            rid = record.record_id
            if rid in stored:
                idx, body = stored[rid]
                if body is not None and not same_content(body, record):
                    conflicts.append(rid)
                duplicates += 1
                positions.append(-idx - 1)
            elif rid in batch:
                if not same_content(batch[rid].body, record):
                    conflicts.append(rid)
                duplicates += 1
                positions.append(next(i for i, r in enumerate(fresh) if r.record_id == rid))
            else:
                batch[rid] = record
                positions.append(len(fresh))
                fresh.append(record)
        if conflicts:
            shown = ", ".join(conflicts[:5]) + (" ..." if len(conflicts) > 5 else "")
            raise ConflictError(
                f"{len(conflicts)} record id(s) already used with different content: {shown}"
            )
        return fresh, positions, duplicates

    # -- reading -----------------------------------------------------------------------------

    def _read_tiles(self, keys: Iterable[int]) -> dict[int, tuple[int, bytes]]:
        """Return ``{key: (width, blob)}`` of the stored tiles among ``keys``."""
        return {
            key: (width, _as_bytes(blob))
            for key, width, blob in self._db.execute(
                "SELECT id, width, hashes FROM tiles WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(sorted(set(keys))),),
            )
        }

    def _stored_nodes(self, blocks: Sequence[tuple[int, int]]) -> list[bytes | None]:
        """The stored hash of each perfect subtree ``(level, index)``, ``None`` where the store
        has none; one query for all of them."""
        addresses = [
            tiles.address(level, index) if index >= 0 else (-1, 0, 0) for level, index in blocks
        ]
        found = self._read_tiles(key for key, _, _ in addresses)
        nodes: list[bytes | None] = []
        for key, k, position in addresses:
            row = found.get(key)
            nodes.append(tiles.node(row[0], row[1], k, position) if row else None)
        return nodes

    def _read_blocks(self, blocks: Sequence[tuple[int, int]]) -> list[bytes]:
        """Return the stored hashes of perfect subtrees ``(level, index)``, in order.

        Raises :class:`StoreError` naming the first node the store lacks.
        """
        hashes: list[bytes] = []
        for (level, index), node in zip(blocks, self._stored_nodes(blocks), strict=True):
            if node is None:
                raise StoreError(f"tree node ({level}, {index}) is missing from the store")
            hashes.append(node)
        return hashes

    def _range_hashes(self, ranges: Sequence[merkle.Range]) -> list[bytes]:
        """Return MTH of each leaf range, reading all needed nodes in one query."""
        plans = [merkle.perfect_blocks(start, end) for start, end in ranges]
        hashes = iter(self._read_blocks([block for plan in plans for block in plan]))
        return [merkle.fold_blocks([next(hashes) for _ in plan]) for plan in plans]

    def _check_size(self, tree_size: int | None) -> int:
        if tree_size is None:
            return self._size
        if not 0 <= tree_size <= self._size:
            raise NotFoundError(f"tree size {tree_size} is outside the log (size {self._size})")
        return tree_size

    def root_at(self, tree_size: int) -> bytes:
        """Return the root of the log when it had ``tree_size`` leaves."""
        size = self._check_size(tree_size)
        return self._range_hashes([(0, size)])[0] if size else merkle.EMPTY_ROOT

    def inclusion_proof(self, leaf_index: int, tree_size: int | None = None) -> list[bytes]:
        """Return PATH(leaf_index, D[tree_size]) (RFC 9162 §2.1.3.1) from stored subtrees.

        ``tree_size`` defaults to the current size. Raises :class:`NotFoundError` if the leaf
        is not in a tree of that size.
        """
        size = self._check_size(tree_size)
        if not 0 <= leaf_index < size:
            raise NotFoundError(f"leaf {leaf_index} is not in a tree of size {size}")
        return self._range_hashes(merkle.inclusion_ranges(leaf_index, size))

    def inclusion_proof_with_root(
        self, leaf_index: int, tree_size: int | None = None
    ) -> tuple[bytes, list[bytes]]:
        """The root at ``tree_size`` and the inclusion proof of ``leaf_index``, in one read."""
        size = self._check_size(tree_size)
        if not 0 <= leaf_index < size:
            raise NotFoundError(f"leaf {leaf_index} is not in a tree of size {size}")
        hashes = self._range_hashes([(0, size), *merkle.inclusion_ranges(leaf_index, size)])
        return hashes[0], hashes[1:]

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """Return PROOF(size1, D[size2]) (RFC 9162 §2.1.4.1) from stored subtrees."""
        new = self._check_size(size2)
        if not 0 <= size1 <= new:
            raise NotFoundError(f"no consistency proof from size {size1} to size {new}")
        return self._range_hashes(merkle.consistency_ranges(size1, new))

    def leaf_hash(self, leaf_index: int) -> bytes:
        """Return the stored leaf hash at ``leaf_index``."""
        if not 0 <= leaf_index < self._size:
            raise NotFoundError(f"leaf {leaf_index} is not in the log")
        return self._read_blocks([(0, leaf_index)])[0]

    _ENTRY_SQL = "SELECT r.idx, r.record_id, r.kind, r.actor, r.ts, r.body FROM records r "

    def _entries(self, rows: Sequence[tuple[int, str, str, str, int, bytes | None]]) -> list[Entry]:
        """Join record rows with their leaf hashes; rows the tree does not hold are left out
        (only a damaged store has them, and :meth:`audit` names them)."""
        leaves = self._stored_nodes([(0, row[0]) for row in rows])
        return [
            Entry(*row, leaf) for row, leaf in zip(rows, leaves, strict=True) if leaf is not None
        ]

    def entry(self, record_id: str) -> Entry:
        """Return the stored record with ``record_id``; :class:`NotFoundError` if absent."""
        row = self._db.execute(self._ENTRY_SQL + "WHERE r.record_id = ?", (record_id,)).fetchone()
        entries = self._entries([row]) if row is not None else []
        if not entries:
            raise NotFoundError(f"no record with id {record_id!r}")
        return entries[0]

    def entry_at(self, leaf_index: int) -> Entry:
        """Return the stored record at ``leaf_index``; :class:`NotFoundError` if absent."""
        row = self._db.execute(self._ENTRY_SQL + "WHERE r.idx = ?", (leaf_index,)).fetchone()
        entries = self._entries([row]) if row is not None else []
        if not entries:
            raise NotFoundError(f"no record at leaf index {leaf_index}")
        return entries[0]

    def signature(self, record_id: str) -> tuple[str, str] | None:
        """The verified ``(signer, signature)`` stored with a record, if it was signed."""
        row = self._db.execute(
            "SELECT signer, signature FROM record_signatures WHERE record_id = ?", (record_id,)
        ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def scan(
        self,
        *,
        start: int = 0,
        limit: int = 100,
        kind: str | None = None,
        actor: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> list[Entry]:
        """Records from leaf ``start`` on, in log order, matching every given filter."""
        clauses: list[str] = ["r.idx >= ?"]
        params: list[object] = [start]
        for column, value, operator in (
            ("r.kind", kind, "="),
            ("r.actor", actor, "="),
            ("r.ts", since_ms, ">="),
            ("r.ts", until_ms, "<"),
        ):
            if value is not None:
                clauses.append(f"{column} {operator} ?")
                params.append(value)
        sql = self._ENTRY_SQL + f"WHERE {' AND '.join(clauses)} ORDER BY r.idx LIMIT ?"
        return self._entries(self._db.execute(sql, (*params, limit)).fetchall())

    def deal_entries(self, deal_id: str) -> list[Entry]:
        """Every record whose payload names ``deal_id`` (as ``payload.deal_id``), in log order."""
        return self._entries(
            self._db.execute(
                self._ENTRY_SQL + "JOIN deal_records d ON d.idx = r.idx WHERE d.deal_id = ? "
                "ORDER BY r.idx",
                (deal_id,),
            ).fetchall()
        )

    def checkpoints(self) -> list[tuple[int, bytes]]:
        """Return every locally recorded checkpoint ``(size, root)``, oldest first."""
        return list(self._db.execute("SELECT size, root FROM checkpoints ORDER BY size"))

    # -- audit -------------------------------------------------------------------------------

    def audit(self) -> AuditReport:
        """Re-derive every leaf from its stored record and every stored node from the leaves.

        Reports each record whose bytes no longer hash to the leaf the tree committed
        (``altered``), that sits at another index than the one committed (``reordered``), that
        is missing (``deleted``) or that the tree never committed (``inserted``); each stored
        node that does not match its children (``tree``); and each recorded checkpoint whose
        root the stored tree no longer reproduces (``history``). Reads the store sequentially
        in ``O(n)`` time and ``O(log n)`` memory, plus the mismatching leaves.
        """
        self._sync()
        size = self._size
        report = AuditReport(tree_size=size, records_checked=0, nodes_checked=0, root=b"")
        findings = report.findings
        mismatched: dict[int, tuple[str, bytes]] = {}  # index -> (record id, computed leaf)
        tree_leaves: dict[int, bytes] = {}
        expected = 0
        committed = self._level(0, size)
        committed_next = 0  # the index of the leaf ``committed`` yields next
        for idx, record_id, body in self._db.execute(
            "SELECT idx, record_id, body FROM records ORDER BY idx"
        ):
            report.records_checked += 1
            if idx >= size:
                findings.append(
                    AuditFinding("inserted", idx, record_id, "not committed to the tree")
                )
                continue
            while expected < idx:
                findings.append(
                    AuditFinding("deleted", expected, None, "record missing from the store")
                )
                expected += 1
            expected = idx + 1
            tree_leaf = b""
            while committed_next <= idx:
                tree_leaf = next(committed)
                committed_next += 1
            if not tree_leaf:
                findings.append(AuditFinding("tree", idx, record_id, "tree leaf missing"))
                continue
            if body is not None:
                computed = merkle.hash_leaf(_as_bytes(body))
                if computed != tree_leaf:
                    mismatched[idx] = (record_id, computed)
                    tree_leaves[idx] = tree_leaf
        for missing in range(expected, size):
            findings.append(AuditFinding("deleted", missing, None, "record missing from the store"))
        committed_at = {leaf: idx for idx, leaf in tree_leaves.items()}
        for idx, (record_id, computed) in sorted(mismatched.items()):
            if computed in committed_at:
                findings.append(
                    AuditFinding(
                        "reordered",
                        idx,
                        record_id,
                        f"committed at index {committed_at[computed]}, found at index {idx}",
                    )
                )
            else:
                findings.append(
                    AuditFinding(
                        "altered", idx, record_id, "content does not hash to the committed leaf"
                    )
                )
        report.nodes_checked, report.root = self._audit_tree(size, findings)
        self._audit_history(report.root, size, findings)
        findings.sort(key=lambda f: (f.index if f.index is not None else -1, f.problem))
        return report

    def _audit_tree(self, size: int, findings: list[AuditFinding]) -> tuple[int, bytes]:
        """Recompute every stored node above the leaves, level by level; return the count
        checked and the root recomputed from the stored leaves."""
        checked = 0
        width = size
        level = 0
        border: list[bytes] = []  # the unpaired last node of each level, for the root
        while width > 1:
            below = self._level(level, width)
            stored = self._level(level + 1, width // 2)
            for index in range(width // 2):
                left, right = next(below), next(below)
                parent = next(stored)
                checked += 1
                computed = merkle.hash_children(left, right)
                if parent != computed:
                    span = 1 << (level + 1)
                    findings.append(
                        AuditFinding(
                            "tree",
                            index * span,
                            None,
                            f"node ({level + 1}, {index}) over leaves [{index * span}, "
                            f"{(index + 1) * span}) does not match its children",
                        )
                    )
            if width & 1:
                border.append(next(below))
            width //= 2
            level += 1
        if width == 1:
            border.append(next(self._level(level, 1)))
        root = merkle.fold_blocks(border[::-1]) if border else merkle.EMPTY_ROOT
        return checked, root

    def _level(self, level: int, count: int) -> Iterator[bytes]:
        """Yield the stored nodes of ``level`` from index 0 on, in order, then ``b""`` for
        ever: in place of each of the first ``count`` the store lacks, and after them."""
        group, k = divmod(level, tiles.HEIGHT)
        per_tile = tiles.WIDTH >> k
        position = 0
        for key, width, blob in self._db.execute(
            "SELECT id, width, hashes FROM tiles WHERE id >= ? AND id < ? ORDER BY id",
            (group << tiles.GROUP_SHIFT, (group + 1) << tiles.GROUP_SHIFT),
        ):
            first = (key - (group << tiles.GROUP_SHIFT)) * per_tile
            if first >= count:
                break
            while position < first:  # a missing tile
                yield b""
                position += 1
            for node in tiles.level_nodes(width, _as_bytes(blob), k)[: count - position]:
                yield node
                position += 1
        while True:  # a missing node: yield a value that cannot match
            yield b""

    def _audit_history(self, root: bytes, size: int, findings: list[AuditFinding]) -> None:
        previous = 0
        for checkpoint_size, checkpoint_root in self.checkpoints():
            if checkpoint_size > size:
                findings.append(
                    AuditFinding(
                        "history",
                        None,
                        None,
                        f"checkpoint at size {checkpoint_size} is beyond the log's size {size}",
                    )
                )
                continue
            try:
                recomputed = self.root_at(checkpoint_size)
            except StoreError:
                recomputed = b""
            if recomputed != checkpoint_root:
                findings.append(
                    AuditFinding(
                        "history",
                        previous,
                        None,
                        f"leaves [{previous}, {checkpoint_size}) were rewritten: the root at size "
                        f"{checkpoint_size} is {recomputed.hex() or 'unavailable'}, "
                        f"checkpoint says {checkpoint_root.hex()}",
                    )
                )
            previous = checkpoint_size
        stored_root = self.root()
        if size and stored_root != root:
            findings.append(
                AuditFinding(
                    "tree",
                    None,
                    None,
                    f"root from the leaves {root.hex()} differs from the stored frontier's "
                    f"{stored_root.hex()}",
                )
            )


def _as_bytes(value: object) -> bytes:
    """Return a stored body as bytes whatever type a manual edit left in the column."""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogatepass")


class Transaction:
    """Appends inside one open write transaction of a :class:`Log` (see
    :meth:`Log.transaction`). Nothing is visible to other connections until it commits."""

    def __init__(self, log: Log, size: int, frontier: list[bytes]) -> None:
        self._log = log
        self.size = size
        self.frontier = frontier
        self._edge: dict[int, list[list[bytes]]] = {}
        """The tiles this transaction writes to, by key: each a list of levels."""

    def root(self) -> bytes:
        """The root the log will have when this transaction commits."""
        return merkle.fold_blocks(self.frontier) if self.frontier else merkle.EMPTY_ROOT

    def append(
        self,
        records: Sequence[PreparedRecord],
        signatures: Mapping[str, tuple[str, str]] | None = None,
    ) -> AppendResult:
        """Write ``records`` (deduplicated as :meth:`Log.append` describes) into the
        transaction; raises :class:`ConflictError` before writing anything of this call.

        ``signatures`` maps a record id to ``(signer address, signature)`` for records whose
        EIP-712 signature the caller verified; they are stored with the new records.
        """
        db = self._log._db
        first = self.size
        fresh = self._insert_all_new(records)
        positions: Sequence[int]
        if fresh:
            positions, duplicates = range(len(fresh)), 0
        else:
            fresh, positions, duplicates = self._log._split_new(records)
            db.executemany(_INSERT_RECORD, _record_rows(first, fresh))
        self._write_tiles(self._grow([r[6] for r in fresh]))
        bodies = [r[5] for r in fresh]
        if b'"deal_id":' in b"".join(bodies):
            links = [
                (deal, first + i)
                for i, body in enumerate(bodies)
                if b'"deal_id":' in body and (deal := _deal_of(body)) is not None
            ]
            db.executemany("INSERT OR IGNORE INTO deal_records VALUES (?, ?)", links)
        if signatures:
            db.executemany(
                "INSERT OR IGNORE INTO record_signatures VALUES (?, ?, ?)",
                [(r[0], *signatures[r[0]]) for r in fresh if r[0] in signatures],
            )
        return AppendResult(
            appended=len(fresh),
            duplicates=duplicates,
            first_index=first,
            tree_size=self.size,
            root=self.root(),
            indexes=tuple(first + i if i >= 0 else -i - 1 for i in positions),
        )

    def _insert_all_new(self, records: Sequence[PreparedRecord]) -> Sequence[PreparedRecord]:
        """Insert ``records`` on the assumption that none is in the log yet (the bulk case);
        return them, or nothing, with nothing written, if the assumption fails."""
        ids = {r[0] for r in records}
        if not records or len(ids) != len(records):
            return ()
        db = self._log._db
        db.execute("SAVEPOINT all_new")
        try:
            db.executemany(_INSERT_RECORD, _record_rows(self.size, records))
        except sqlite3.IntegrityError:  # an id already in the log
            db.execute("ROLLBACK TO all_new")
            return ()
        finally:
            db.execute("RELEASE all_new")
        return records

    def _tile(self, key: int) -> list[list[bytes]]:
        """The levels of tile ``key`` as this transaction has them (read once from the store)."""
        levels = self._edge.get(key)
        if levels is None:
            row = self._log._read_tiles([key]).get(key)
            levels = tiles.decode(*row) if row else [[] for _ in range(tiles.HEIGHT)]
            self._edge[key] = levels
        return levels

    def _grow(self, leaves: Sequence[bytes]) -> set[int]:
        """Extend the tree by ``leaves``: every new perfect subtree into the tiles, level by
        level (the interior hashes of a level in one native call), then the frontier and the
        size. Returns the keys of the tiles that changed."""
        old, new = self.size, self.size + len(leaves)
        touched: set[int] = set()
        if not leaves:
            return touched
        # The frontier holds one root per set bit of the size, largest first.
        old_roots = dict(zip(_set_bits(old)[::-1], self.frontier, strict=True))
        roots: list[bytes] = []
        level, nodes = 0, list(leaves)  # the new nodes of ``level``, from index old >> level
        while True:
            first = old >> level
            self._place(level, first, nodes, touched)
            if new >> level & 1:
                last = (new >> level) - 1
                roots.append(nodes[last - first] if last >= first else old_roots[level])
            if new >> (level + 1) == old >> (level + 1):  # nothing new above this level
                roots.extend(old_roots[above] for above in _set_bits(new) if above > level)
                break
            row = [old_roots[level], *nodes] if first & 1 else nodes
            hashes = native.hash_pairs(b"".join(row[: len(row) & ~1]))
            size = merkle.HASH_SIZE
            nodes = [hashes[i : i + size] for i in range(0, len(hashes), size)]
            level += 1
        self.size, self.frontier = new, roots[::-1]
        return touched

    def _place(self, level: int, first: int, nodes: Sequence[bytes], touched: set[int]) -> None:
        """Append ``nodes``, the nodes of ``level`` from index ``first`` on, to their tiles."""
        group, k = divmod(level, tiles.HEIGHT)
        per_tile = tiles.WIDTH >> k
        done = 0
        while done < len(nodes):
            tile, position = divmod(first + done, per_tile)
            take = min(len(nodes) - done, per_tile - position)
            key = (group << tiles.GROUP_SHIFT) | tile
            row = self._tile(key)[k]
            if len(row) != position:
                raise StoreError(
                    f"tile {key} holds {len(row)} nodes at level {level}, expected {position}"
                )
            row.extend(nodes[done : done + take])
            touched.add(key)
            done += take

    def _write_tiles(self, keys: set[int]) -> None:
        """Store the tiles ``keys``; forget the complete ones (they never change again)."""
        rows = [(key, *tiles.encode(self._edge[key])) for key in sorted(keys)]
        self._log._db.executemany("INSERT OR REPLACE INTO tiles VALUES (?, ?, ?)", rows)
        for key, width, _ in rows:
            if width == tiles.WIDTH:
                del self._edge[key]


_INSERT_RECORD: Final = "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)"


def _set_bits(value: int) -> list[int]:
    """The positions of the bits set in ``value``, lowest first."""
    return [bit for bit in range(value.bit_length()) if value >> bit & 1]


def _record_rows(
    first: int, records: Sequence[PreparedRecord]
) -> Iterator[tuple[int, str, str, str, int, bytes]]:
    """The ``records`` rows of new records from leaf index ``first`` on."""
    # PreparedRecord fields: record_id, kind, actor, timestamp_ms, salted, body, leaf_hash
    return ((first + i, r[0], r[1], r[2], r[3], r[5]) for i, r in enumerate(records))


def _deal_of(body: bytes) -> str | None:
    """The ``payload.deal_id`` of a record's canonical bytes, as a string, if it has one."""
    try:
        payload = json.loads(body).get("payload", {})
    except ValueError:
        return None
    deal = payload.get("deal_id") if isinstance(payload, dict) else None
    if isinstance(deal, bool) or not isinstance(deal, str | int):
        return None
    return str(deal)
