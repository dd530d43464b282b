"""The persistent, append-only record log: SQLite in WAL mode, or PostgreSQL.

Three tables hold the log. ``bundles`` keeps the records, 128 consecutive leaves to a
compressed row (:mod:`chainaudit.log.bundles`); ``record_ids`` maps each record id to its leaf
index (the idempotency check and lookups by id); ``tiles`` keeps the hash of every *perfect,
aligned* subtree of the RFC 9162 tree — leaves at level 0 and every complete pair above
them — packed 256 leaves to a row (:mod:`chainaudit.core.tiles`). Any inclusion or consistency
proof, and the root at any past size, is then a fold of at most ``2 log2 n`` stored hashes
(:func:`chainaudit.core.merkle.perfect_blocks`), read in one query of a few rows. Appending keeps
the right border of the tree (the "frontier", one hash per set bit of the size) in memory, so
appends read only the tiles and the bundle on the right edge; a restart reloads the frontier
in ``O(log n)`` reads, never the tree.

Appends are group-committed: one transaction per batch, ``synchronous=FULL``, so a batch that
:meth:`Log.append` has returned from survives a crash of the process or the machine, and a
batch that fails leaves nothing behind. Every commit also records a checkpoint (size, root)
that :meth:`Log.audit` checks history against.

The tables live in one database behind :mod:`chainaudit.log.database`: an SQLite file (the
embedded default, ``<data dir>/log.sqlite``) or a PostgreSQL database (``database_url``),
with the same semantics. On PostgreSQL every append takes the database's writer lock
(:meth:`chainaudit.log.database.Database.write`), so appends from many processes and nodes are
sequenced into one tree, each extending the size the previous commit left.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, NamedTuple

from chainaudit.core import merkle, provenance, tiles, tlogtiles
from chainaudit.core.errors import (
    ConfigError,
    ConflictError,
    InputError,
    NotFoundError,
    RecordError,
    StoreError,
    VerificationError,
)
from chainaudit.core.records import KINDS, PreparedRecord, parse_timestamp, same_content
from chainaudit.log import bundles, database, datakeys, native

__all__ = [
    "DB_NAME",
    "ERASURE_PREFIX",
    "IN_POSTGRESQL",
    "AppendResult",
    "AuditFinding",
    "AuditReport",
    "Entry",
    "Log",
    "Transaction",
]

DB_NAME: Final = "log.sqlite"
IN_POSTGRESQL: Final = "log.in-postgresql"
"""A file beside ``log.sqlite`` saying the log's tables are in PostgreSQL: opening the data
directory as an SQLite log is then refused (it would start a second, empty log)."""
_MARK_TEXT: Final = (
    "The log of this data directory is kept in PostgreSQL (CHAINAUDIT_DATABASE_URL);\n"
    "log.sqlite here holds the other stores' state only.\n"
)
SCHEMA_VERSION: Final = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS record_ids (
    record_id TEXT PRIMARY KEY,
    idx INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bundles (
    id INTEGER PRIMARY KEY,
    records BLOB NOT NULL
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
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS signed_checkpoints (size INTEGER PRIMARY KEY, note TEXT NOT NULL);
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
    """One of ``altered``, ``reordered``, ``deleted``, ``inserted``, ``tree``, ``history``,
    ``index`` (the record id index), ``erased``, ``unentitled``, ``unstamped``, ``signature``
    (see :meth:`Log.audit`); ``risk`` from
    :func:`chainaudit.risk.book.audit_tables`, ``escrow`` from
    :func:`chainaudit.service.indexer.audit_index` and ``record-index`` from
    :func:`chainaudit.log.record_index.audit_record_index`."""
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
    """An append-only RFC 9162 log of records in one SQLite file or PostgreSQL database.

    Open it with :meth:`open` (a data directory) or the constructor (a file path); use it as a
    context manager or call :meth:`close`. One object serves one thread at a time; several
    processes may share the database (the engine serialises writers and each append re-reads
    the size it extends).

    ``database_url`` (``postgresql://...``) keeps the log's tables in that database instead of
    the SQLite file ``path``; ``path`` still names the data directory's ``log.sqlite``
    (created empty if missing, with its ``log.in-postgresql`` marker beside it). The API
    keys, the record index, the risk tables, the anchors, the escrow indexer's tables, the
    leader lease and, unless ``at_rest.keys_file`` names a file, the data keys follow the log
    into its database (:mod:`chainaudit.service.keys`, :mod:`chainaudit.log.derived`,
    :mod:`chainaudit.service.anchoring`, :mod:`chainaudit.service.indexer`,
    :mod:`chainaudit.service.leader`,
    :mod:`chainaudit.log.datakeys`).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        kinds: frozenset[str] = KINDS,
        at_rest: datakeys.AtRest | None = None,
        database_url: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.database_url = database_url
        self.kinds = kinds | KINDS
        self.at_rest = at_rest
        """The master key and the kinds sealed at rest (:mod:`chainaudit.log.datakeys`); ``None``:
        nothing is sealed, and reading a sealed body raises :class:`StoreError`."""
        self._keyring: datakeys.Keyring | None = None
        self._staged: list[datakeys.KeyRun] = []
        """The key runs of the sealed bodies of the open write transaction, stored in
        ``keys.sqlite`` (one durable transaction) just before the log's commit."""
        where = "the PostgreSQL log" if database_url else f"the log at {self.path}"
        mark = self.path.with_name(IN_POSTGRESQL)
        if database_url:
            try:  # the other stores' file: created (empty) so that their readers find it
                self.path.touch(exist_ok=True)
                if not mark.exists():
                    mark.write_text(_MARK_TEXT)
            except OSError as exc:
                raise StoreError(f"cannot create {self.path}: {exc}") from exc
        elif mark.exists():
            raise ConfigError(
                f"the log of {self.path.parent} is kept in PostgreSQL ({IN_POSTGRESQL} says "
                "so): set CHAINAUDIT_DATABASE_URL to its database"
            )
        try:
            self._db = database.connect(
                database_url or self.path,
                pragmas="PRAGMA cache_size=-262144; PRAGMA temp_store=MEMORY;",
            )
        except database.DatabaseError as exc:
            raise StoreError(f"cannot open {where}: {exc}") from exc
        self._sql = _Queries(self._db)
        self._size = -1
        self._frontier: list[bytes] = []
        try:
            self._create_schema()
            if self._db.engine == "sqlite" and self._has_table("tree"):
                self._upgrade_from_node_rows()
            if self._db.engine == "sqlite" and self._has_table("records"):
                self._upgrade_to_bundles()
            self._sync()
        except database.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"cannot open {where}: {exc}") from exc
        except BaseException:
            self._db.close()
            raise

    def _create_schema(self) -> None:
        """Create the tables if missing (on PostgreSQL under the writer lock: several
        processes may open a new log at once)."""
        db = self._db
        init = "INSERT INTO meta VALUES ('schema', ?), ('tree_size', 0) ON CONFLICT DO NOTHING"
        if db.engine == "sqlite":
            db.executescript(_SCHEMA)
            db.execute(init, (SCHEMA_VERSION,))
            return
        if db.has_table("meta"):
            return
        with db.write():
            db.executescript(database.adapt_schema(_SCHEMA, db.engine))
            db.execute(init, (SCHEMA_VERSION,))

    @property
    def engine(self) -> database.Engine:
        """Where the log's tables are: ``sqlite`` or ``postgresql``."""
        return self._db.engine

    def _has_table(self, name: str) -> bool:
        return self._db.has_table(name)

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
                batch._write_tiles(batch._grow(b"".join(leaves)))
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
                db.execute("UPDATE meta SET value = 2 WHERE key = 'schema'")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _upgrade_to_bundles(self) -> None:
        """Upgrade a schema-2 log, which kept one ``records`` row per record, to bundles.

        One transaction (nothing changes if it fails) moves every record, unchanged, into
        :mod:`chainaudit.log.bundles` rows and its id into ``record_ids``; a damaged log is moved
        as it is, for :meth:`audit` to report.
        """
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if self._has_table("records"):  # not upgraded meanwhile by another process
                rows = db.execute(
                    "SELECT idx, record_id, kind, actor, ts, body FROM records ORDER BY idx"
                )
                bundle: list[bundles.Stored] = []
                for idx, record_id, kind, actor, ts, body in rows:
                    stored = bundles.Stored(
                        record_id, kind, actor, ts, idx, None if body is None else _as_bytes(body)
                    )
                    if bundle and bundles.key(bundle[0].leaf_index) != bundles.key(idx):
                        self._put_bundle(bundle)
                        bundle = []
                    bundle.append(stored)
                if bundle:
                    self._put_bundle(bundle)
                db.execute("INSERT INTO record_ids SELECT record_id, idx FROM records")
                db.execute("DROP TABLE records")
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _put_bundle(self, records: Sequence[bundles.Stored]) -> None:
        blob = bundles.encode_at(records)
        key = bundles.key(records[0].leaf_index)
        self._db.execute(_PUT_BUNDLE, (key, blob))

    @classmethod
    def open(
        cls,
        data_dir: Path | str,
        *,
        kinds: frozenset[str] = KINDS,
        at_rest: datakeys.AtRest | None = None,
        database_url: str | None = None,
    ) -> Log:
        """Open (creating if needed) the log in ``data_dir``, or in the PostgreSQL database
        ``database_url`` when given (``data_dir`` then holds the rest of the state)."""
        directory = Path(data_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the data directory {directory}: {exc}") from exc
        return cls(directory / DB_NAME, kinds=kinds, at_rest=at_rest, database_url=database_url)

    @staticmethod
    def exists(data_dir: Path | str, *, database_url: str | None = None) -> bool:
        """Whether a log has been started in ``data_dir`` (its ``log.sqlite``), or in the
        PostgreSQL database ``database_url`` when given. Raises :class:`StoreError` when that
        database cannot be reached."""
        if database_url is None:
            return (Path(data_dir) / DB_NAME).is_file()
        try:
            db = database.connect(database_url)
        except database.DatabaseError as exc:
            raise StoreError(f"cannot reach the log's database: {exc}") from exc
        try:
            return db.has_table("meta")
        finally:
            db.close()

    def close(self) -> None:
        self._db.close()
        if self._keyring is not None:
            self._keyring.close()
            self._keyring = None

    # -- encryption at rest ------------------------------------------------------------------

    def keyring(self) -> datakeys.Keyring:
        """The data keys beside this log (``keys.sqlite``), opened on first use.

        Raises :class:`StoreError` when no master key is configured.
        """
        if self.at_rest is None:
            raise StoreError(
                "records here are encrypted at rest, but no master key is configured: set "
                "CHAINAUDIT_MASTER_KEY or CHAINAUDIT_MASTER_KEY_FILE (docs/privacy.md)"
            )
        if self._keyring is None:
            self._keyring = datakeys.Keyring(
                self._keys_path(), self.at_rest.master, database_url=self._keys_url()
            )
        return self._keyring

    def _keys_path(self) -> Path:
        """The keyring's file: the configured one, else ``keys.sqlite`` beside the log."""
        if self.at_rest is not None and self.at_rest.keys_file is not None:
            return self.at_rest.keys_file
        return self.path.with_name(datakeys.KEYS_DB)

    def _keys_url(self) -> str | None:
        """The keyring's PostgreSQL database: the log's when it has one and no keys file is
        configured; else ``None`` (the keyring's file, :meth:`_keys_path`)."""
        if self.at_rest is not None and self.at_rest.keys_file is not None:
            return None
        return self.database_url

    def _keys_exist(self) -> bool:
        """Whether a keyring was ever started here (its file, or its tables)."""
        if self._keyring is not None:
            return True
        if self._keys_url() is not None:
            return self._db.has_table("key_runs")
        return self._keys_path().exists()

    def _seals(self, records: Sequence[PreparedRecord]) -> bool:
        """Whether any of ``records`` is of a kind sealed at rest."""
        sealed = self.at_rest.kinds if self.at_rest is not None else frozenset()
        return bool(sealed) and any(r[1] in sealed for r in records)

    def _sealed(self, first: int, records: Sequence[PreparedRecord]) -> list[PreparedRecord]:
        """``records``, the leaves from ``first`` on, with the bodies of the kinds sealed at
        rest replaced by their sealed form (:func:`datakeys.seal_items`); their keys are
        staged (:meth:`_stage_keys`)."""
        assert self.at_rest is not None
        kinds = self.at_rest.kinds
        chosen = [i for i, r in enumerate(records) if r[1] in kinds]
        sealed, runs = datakeys.seal_items(
            self.at_rest.master, [(first + i, records[i][0], records[i][5]) for i in chosen]
        )
        self._stage_keys(runs)
        out = list(records)
        for i, body in zip(chosen, sealed, strict=True):
            out[i] = out[i]._replace(body=body)
        return out

    def _sealed_batch(self, first: int, batch: native.Batch) -> native.Batch:
        """``batch``, the leaves from ``first`` on, with the bodies of the kinds sealed at rest
        replaced by their sealed form (:func:`datakeys.seal_batch`; the bundles a parsing
        process packed are dropped); their keys are staged (:meth:`_stage_keys`)."""
        assert self.at_rest is not None
        try:
            sealed = datakeys.seal_batch(batch, first, self.at_rest)
        except datakeys.KeyringError as exc:
            raise StoreError(str(exc)) from exc
        if sealed is None:
            return batch
        self._stage_keys(sealed.keys)
        return sealed

    def _stage_keys(self, runs: Iterable[datakeys.KeyRun]) -> None:
        """Keep ``runs`` to be stored just before the open write transaction commits (its
        sealed bodies are never committed without their keys)."""
        self._staged.extend(runs)

    def _store_staged(self) -> None:
        """Store the staged key runs durably in ``keys.sqlite`` (:meth:`datakeys.Keyring.store`);
        raises :class:`StoreError` if they cannot be (the caller then rolls back)."""
        if not self._staged:
            return
        try:
            self.keyring().store(self._staged)
        except datakeys.KeyringError as exc:
            raise StoreError(str(exc)) from exc
        self._staged = []

    def _reveal(self, record: bundles.Stored) -> bundles.Stored:
        """``record`` with a sealed body opened (``None`` when its data key is gone)."""
        body = record.body
        if body is None or body[:1] != b"\x00" or not datakeys.is_sealed(body):
            return record
        try:
            plain = self.keyring().open(record.leaf_index, record.record_id, body)
        except datakeys.MasterKeyMismatchError as exc:  # configuration, not damage
            raise ConfigError(str(exc)) from exc
        except datakeys.KeyringError as exc:
            raise StoreError(str(exc)) from exc
        return record._replace(body=plain)

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

    def erase(self, leaf_index: int, record_id: str, erasure: PreparedRecord) -> AppendResult:
        """Remove the body of the record at ``leaf_index`` for good and append ``erasure``
        (the record that says so, :mod:`chainaudit.service.erasure`), in one durable transaction.

        Preconditions: the record at ``leaf_index`` has id ``record_id`` and still has its
        body (checked; the caller makes ``erasure`` name both). The record's bundle row is
        rewritten without the body, with ``secure_delete`` on (the freed bytes are zeroed);
        after the commit the WAL is checkpointed and truncated, so no copy of the body is left
        in the database file or its WAL (on PostgreSQL no live row holds the body once the
        row is rewritten; :meth:`vacuum` rewrites the table without the dead one), and the
        record's data key, if it was sealed at rest, is destroyed
        (:meth:`datakeys.Keyring.destroy`). The leaf hash stays in the tree: every proof and
        checkpoint stays valid.

        Raises:
            NotFoundError: no record ``record_id`` at ``leaf_index``.
            ConflictError: the record's body is already gone, or ``erasure`` conflicts with
                a stored record.
            StoreError: the store cannot be written (nothing is changed then).
        """
        db = self._db
        if db.engine == "sqlite":
            db.execute("PRAGMA secure_delete=ON")
        try:
            with self.transaction() as batch:
                key = bundles.key(leaf_index)
                stored = self._bundles([key]).get(key, [])
                target = [r for r in stored if r.leaf_index == leaf_index]
                if not target or target[0].record_id != record_id:
                    raise NotFoundError(f"no record {record_id!r} at leaf index {leaf_index}")
                if target[0].body is None:
                    raise ConflictError(f"the content of record {record_id!r} is already erased")
                sealed = datakeys.is_sealed(target[0].body)
                if sealed and self.at_rest is None:
                    self.keyring()  # raises: the key cannot be destroyed without the master key
                self._put_bundle(
                    [r._replace(body=None) if r.leaf_index == leaf_index else r for r in stored]
                )
                result = batch.append([erasure])
                if result.appended != 1:
                    raise ConflictError(f"the erasure record {erasure.record_id} exists already")
            self.checkpoint_wal()
        finally:
            if db.engine == "sqlite":
                db.execute("PRAGMA secure_delete=OFF")
        if sealed or self.at_rest is not None:
            self.destroy_keys([leaf_index])
        return result

    def destroy_keys(self, indexes: Sequence[int]) -> int:
        """Destroy the data keys of the records at ``indexes`` if any exist (their bodies
        must be erased already); returns how many existed. A no-op without a keys file."""
        if not self._keys_exist():
            return 0
        try:
            return self.keyring().destroy(indexes)
        except datakeys.KeyringError as exc:
            raise StoreError(str(exc)) from exc

    def checkpoint_wal(self) -> bool:
        """Copy the WAL into the database file and truncate it (``wal_checkpoint(TRUNCATE)``);
        returns False when a reader kept it from completing (run it again later). True on
        PostgreSQL, whose WAL the server recycles."""
        if self._db.engine != "sqlite":
            return True
        busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return not busy

    def checkpoint_keys_wal(self) -> bool:
        """Truncate the keys file's WAL (as :meth:`checkpoint_wal`); True when there is no
        keys file or the truncation completed."""
        path = self._keys_path()
        if not self._keys_exist():
            return True
        if self.at_rest is None and self._keys_url() is not None:
            try:  # no master key here: the tables can still be vacuumed
                return datakeys.vacuum_keys(self._db)
            except database.DatabaseError as exc:
                raise StoreError(f"cannot vacuum the data keys: {exc}") from exc
        if self.at_rest is None:  # no master key here: the file can still be checkpointed
            try:
                with contextlib.closing(sqlite3.connect(path)) as db:
                    busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            except sqlite3.Error as exc:
                raise StoreError(f"cannot checkpoint {path}: {exc}") from exc
            return not busy
        try:
            return self.keyring().checkpoint_wal()
        except datakeys.KeyringError as exc:
            raise StoreError(str(exc)) from exc

    def vacuum(self) -> None:
        """Rebuild the database file (``VACUUM``), then truncate the WAL: no freed page of
        the old file survives. Takes an exclusive lock for as long as it runs. On PostgreSQL
        the record bundles' table is rewritten (``VACUUM FULL bundles``): the dead row
        versions an erasure left behind are gone from its files."""
        try:
            self._db.execute("VACUUM" if self._db.engine == "sqlite" else "VACUUM FULL bundles")
        except database.DatabaseError as exc:
            raise StoreError(f"cannot vacuum the log: {exc}") from exc
        self.checkpoint_wal()

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Hold one write transaction open across several :meth:`Transaction.append` calls.

        Everything appended inside the ``with`` block is committed at its end, durably and as
        one unit, with one checkpoint; an exception rolls all of it back and leaves the log as
        it was. Used to ingest a large file atomically while it is still being parsed.
        """
        db = self._db
        try:
            db.begin_write()
        except database.DatabaseError as exc:
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
            self._store_staged()
            db.commit()
        except BaseException:
            self._staged = []
            db.rollback()
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
        stored = {
            record_id: (entry.index, entry.body)
            for record_id, entry in self._entries_by_id([r.record_id for r in records]).items()
        }
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
                self._sql.tiles_in, (self._db.list_param(sorted(set(keys))),)
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

    def _bundles(self, keys: Iterable[int]) -> dict[int, list[bundles.Stored]]:
        """The decoded bundles among ``keys`` that the store has; raises :class:`StoreError`
        for one it cannot decode."""
        return {
            key: self._decode_bundle(key, blob) for key, blob in self._bundle_blobs(keys).items()
        }

    def _bundle_blobs(self, keys: Iterable[int]) -> dict[int, object]:
        """The stored rows of the bundles among ``keys``."""
        wanted = sorted(set(keys))
        argument: object
        if len(wanted) == 1:
            query, argument = "SELECT id, records FROM bundles WHERE id = ?", wanted[0]
        else:
            query, argument = self._sql.bundles_in, self._db.list_param(wanted)
        return dict(self._db.execute(query, (argument,)).fetchall())

    def _decode_bundle(self, key: int, blob: object) -> list[bundles.Stored]:
        try:
            return bundles.decode(_as_bytes(blob))
        except bundles.BundleError as exc:
            raise StoreError(f"record bundle {key} is damaged: {exc}") from exc

    def _entries_at(self, indexes: Sequence[int]) -> list[Entry]:
        """The stored records at leaf ``indexes`` with their leaf hashes, in the order given;
        indexes the store has no record (or no leaf) for are left out (only a damaged store
        lacks them, and :meth:`audit` names them)."""
        wanted = set(indexes)
        stored: dict[int, bundles.Stored] = {}
        if len(wanted) <= FEW:  # read only up to each record (the common single lookup)
            blobs = self._bundle_blobs(bundles.key(i) for i in wanted)
            for index in wanted:
                key = bundles.key(index)
                if key in blobs and (found := self._find(key, blobs[key], index)) is not None:
                    stored[index] = self._reveal(found)
        else:
            for bundle in self._bundles(bundles.key(i) for i in wanted).values():
                stored.update(
                    (r.leaf_index, self._reveal(r)) for r in bundle if r.leaf_index in wanted
                )
        return self._with_leaves([stored[i] for i in indexes if i in stored])

    def _find(self, key: int, blob: object, index: int) -> bundles.Stored | None:
        try:
            return bundles.find(_as_bytes(blob), index)
        except bundles.BundleError as exc:
            raise StoreError(f"record bundle {key} is damaged: {exc}") from exc

    def _with_leaves(self, records: Sequence[bundles.Stored]) -> list[Entry]:
        leaves = self._stored_nodes([(0, r.leaf_index) for r in records])
        return [
            Entry(r.leaf_index, r.record_id, r.kind, r.actor, r.timestamp_ms, r.body, leaf)
            for r, leaf in zip(records, leaves, strict=True)
            if leaf is not None
        ]

    def _entries_by_id(self, record_ids: Sequence[str]) -> dict[str, Entry]:
        """The stored records among ``record_ids``, by id. An id holding a NUL names no record
        (no valid id holds one) and is not looked up: PostgreSQL's text refuses NUL."""
        record_ids = [i for i in record_ids if "\x00" not in i]
        if not record_ids:
            return {}
        indexes = [
            idx
            for (idx,) in self._db.execute(self._sql.indexes_of, (self._db.list_param(record_ids),))
        ]
        wanted = set(record_ids)
        return {e.record_id: e for e in self._entries_at(indexes) if e.record_id in wanted}

    def entry(self, record_id: str) -> Entry:
        """Return the stored record with ``record_id``; :class:`NotFoundError` if absent."""
        found = self._entries_by_id([record_id]).get(record_id)
        if found is None:
            raise NotFoundError(f"no record with id {record_id!r}")
        return found

    def entry_at(self, leaf_index: int) -> Entry:
        """Return the stored record at ``leaf_index``; :class:`NotFoundError` if absent."""
        entries = self._entries_at([leaf_index])
        if not entries:
            raise NotFoundError(f"no record at leaf index {leaf_index}")
        return entries[0]

    def count_ids(self, prefix: str) -> int:
        """How many records have an id starting with ``prefix`` (non-empty; a range scan of
        the id index)."""
        if not prefix:
            raise ValueError("count_ids needs a non-empty prefix")
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        row = self._db.execute(
            "SELECT COUNT(*) FROM record_ids WHERE record_id >= ? AND record_id < ?",
            (prefix, upper),
        ).fetchone()
        return int(row[0])

    def ids_with_prefix(self, prefix: str) -> list[tuple[str, int]]:
        """``(record id, leaf index)`` of every record whose id starts with ``prefix``
        (non-empty), in leaf order (a range scan of the id index)."""
        if not prefix:
            raise ValueError("ids_with_prefix needs a non-empty prefix")
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        rows = self._db.execute(
            "SELECT record_id, idx FROM record_ids WHERE record_id >= ? AND record_id < ? "
            "AND idx < ? ORDER BY idx",
            (prefix, upper, self._size),
        )
        return [(str(record_id), int(idx)) for record_id, idx in rows]

    def signature(self, record_id: str) -> tuple[str, str] | None:
        """The verified ``(signer, signature)`` stored with a record, if it was signed."""
        row = self._db.execute(
            "SELECT signer, signature FROM record_signatures WHERE record_id = ?", (record_id,)
        ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def _stored_from(self, start: int) -> Iterator[bundles.Stored]:
        """Every stored record from leaf ``start`` on, in leaf order, bundle by bundle."""
        key, batch = bundles.key(max(start, 0)), 1
        while True:
            rows = self._db.execute(
                "SELECT id, records FROM bundles WHERE id >= ? ORDER BY id LIMIT ?", (key, batch)
            ).fetchall()
            batch = min(2 * batch, 64)  # a page of a list needs a bundle or two; a scan, many
            if not rows:
                return
            for row_key, blob in rows:
                for record in self._decode_bundle(row_key, blob):
                    if record.leaf_index >= start:
                        yield self._reveal(record)
            key = rows[-1][0] + 1

    def stored_headers(self) -> Iterator[tuple[int, str, str, int, bool]]:
        """``(leaf index, record id, kind, timestamp_ms, has content)`` of every stored
        record, in leaf order, from the bundle headers alone (no body is opened or
        decrypted: what retention scans)."""
        key = 0
        while True:
            rows = self._db.execute(
                "SELECT id, records FROM bundles WHERE id >= ? ORDER BY id LIMIT 64", (key,)
            ).fetchall()
            if not rows:
                return
            for row_key, blob in rows:
                for r in self._decode_bundle(row_key, blob):
                    yield r.leaf_index, r.record_id, r.kind, r.timestamp_ms, r.body is not None
            key = rows[-1][0] + 1

    def records_from(self, start: int = 0) -> Iterator[bundles.Stored]:
        """Every stored record from leaf ``start`` on, in leaf order, without its leaf hash
        (what derived indexes following the log read, e.g.
        :class:`chainaudit.log.record_index.RecordIndex`)."""
        return self._stored_from(start)

    def entries_at(self, indexes: Sequence[int]) -> list[Entry]:
        """The records at leaf ``indexes`` with their leaf hashes, in the order given (a
        derived index's matches); indexes with no stored record are left out."""
        return self._entries_at(indexes)

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
        matches: list[bundles.Stored] = []
        for record in self._stored_from(start):
            if len(matches) >= limit:
                break
            if (
                (kind is None or record.kind == kind)
                and (actor is None or record.actor == actor)
                and (since_ms is None or record.timestamp_ms >= since_ms)
                and (until_ms is None or record.timestamp_ms < until_ms)
            ):
                matches.append(record)
        return self._with_leaves(matches)

    def entries(self, start: int = 0) -> Iterator[Entry]:
        """Every record from leaf ``start`` on, in log order, with its leaf hash."""
        batch: list[bundles.Stored] = []
        for record in self._stored_from(start):
            batch.append(record)
            if len(batch) == 4096:
                yield from self._with_leaves(batch)
                batch = []
        yield from self._with_leaves(batch)

    def oldest_commit_ms_after(self, size: int) -> int | None:
        """When the oldest leaf past ``size`` was committed (milliseconds since the epoch,
        from the recorded checkpoints), or ``None`` when the log is no larger (what an
        anchoring schedule waits on; reads the log's own table on either engine)."""
        row = self._db.execute(
            "SELECT MIN(created_ms) FROM checkpoints WHERE size > ?", (size,)
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def checkpoints(self) -> list[tuple[int, bytes]]:
        """Return every locally recorded checkpoint ``(size, root)``, oldest first."""
        return list(self._db.execute("SELECT size, root FROM checkpoints ORDER BY size"))

    # -- signed checkpoints (c2sp.org/tlog-checkpoint notes) ---------------------------------

    def put_signed_checkpoint(self, size: int, note: str) -> None:
        """Store the signed checkpoint note of tree size ``size``, replacing an earlier one of
        that size unless the earlier one is longer: the same checkpoint is only ever replaced
        by itself with as many or more cosignature lines (c2sp.org/tlog-cosignature), so a
        signer that raced a cosigning step cannot put the plain note back over the cosigned.

        ``note`` is the whole signed note text (:meth:`chainaudit.core.note.Note.encode`); it is
        stored as given: :mod:`chainaudit.log.checkpointing` signs and checks it.

        Raises:
            StoreError: the database refuses the write.
        """
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise StoreError(f"a signed checkpoint's size must be a whole number, not {size!r}")
        try:
            self._db.execute(
                "INSERT INTO signed_checkpoints (size, note) VALUES (?, ?) "
                "ON CONFLICT (size) DO UPDATE SET note = excluded.note "
                "WHERE length(excluded.note) >= length(signed_checkpoints.note)",
                (size, note),
            )
        except database.DatabaseError as exc:
            raise StoreError(f"cannot store the signed checkpoint of size {size}: {exc}") from exc

    def signed_checkpoint(self, size: int | None = None) -> str | None:
        """The signed checkpoint note of tree size ``size`` (``None``: the largest size
        signed), or ``None`` when there is none."""
        if size is None:
            row = self._db.execute(
                "SELECT note FROM signed_checkpoints ORDER BY size DESC LIMIT 1"
            ).fetchone()
        else:
            row = self._db.execute(
                "SELECT note FROM signed_checkpoints WHERE size = ?", (size,)
            ).fetchone()
        return None if row is None else str(row[0])

    def signed_sizes(self, above: int, below: int) -> list[int]:
        """The tree sizes ``above < size < below`` that have a signed checkpoint, smallest
        first (:meth:`put_signed_checkpoint`)."""
        rows = self._db.execute(
            "SELECT size FROM signed_checkpoints WHERE size > ? AND size < ? ORDER BY size",
            (above, below),
        ).fetchall()
        return [int(row[0]) for row in rows]

    def erased_since(self, first: int) -> list[int]:
        """The leaf indexes whose content was erased by an erasure record (id
        ``erasure:<leaf index>``, :mod:`chainaudit.service.erasure`) at index ``first`` or later,
        smallest first: one range read of the record ids, no record is opened."""
        rows = self._db.execute(
            "SELECT record_id FROM record_ids WHERE record_id > ? AND record_id < ? AND idx >= ?",
            (ERASURE_PREFIX, ERASURE_PREFIX[:-1] + chr(ord(ERASURE_PREFIX[-1]) + 1), first),
        ).fetchall()
        leaves = {
            int(suffix)
            for (record_id,) in rows
            if (suffix := str(record_id)[len(ERASURE_PREFIX) :]).isdigit()
        }
        return sorted(leaves)

    # -- the C2SP tlog-tiles read path -------------------------------------------------------

    def hash_tile(self, level: int, index: int, width: int = tlogtiles.TILE_WIDTH) -> bytes:
        """The C2SP ``tlog-tiles`` hash tile ``tile/<level>/<index>[.p/<width>]``: the hashes
        of the tree nodes at height ``8 * level`` numbered ``256 * index .. + width``, back to
        back, read from the stored tiles (no hashing: stored group ``level`` has exactly those
        nodes as its base, :mod:`chainaudit.core.tiles`).

        The spec's availability rule, against this object's size: a tile of ``width`` exists
        once the tree has ``256 * index + width`` nodes at that height, so a partial tile stays
        available after its full tile is (the spec lets a log serve it or not; serving it lets
        a client that verified an older checkpoint finish), and a full tile only once complete.

        Raises:
            NotFoundError: the tile is not within the current tree (``width`` 1-256).
            StoreError: the store lacks hashes it should hold (a damaged store).
        """
        self._check_tile(level, index, width)
        key = (level << tiles.GROUP_SHIFT) | index
        row = self._read_tiles([key]).get(key)
        hashes = tiles.level_nodes(row[0], row[1], 0)[:width] if row else []
        if len(hashes) != width:
            raise StoreError(f"tile {level}/{index} is missing from the store")
        return b"".join(hashes)

    def entry_bundle(
        self,
        index: int,
        width: int = tlogtiles.TILE_WIDTH,
        *,
        withhold: frozenset[str] = frozenset(),
    ) -> bytes:
        """The C2SP ``tlog-tiles`` entry bundle ``tile/entries/<index>[.p/<width>]``: the leaf
        data (RFC 8785 canonical, salted records) of entries ``256 * index .. + width``, each
        a big-endian ``uint16`` length and its bytes (:func:`tlogtiles.encode_entries`).
        Each entry hashes (``SHA-256(0x00 || data)``) to the same position of level-0 tile
        ``index``. Availability as in :meth:`hash_tile`. A bundle holding a record of a kind
        in ``withhold`` (the data policy's private kinds: personal fields or encrypted at
        rest, :meth:`chainaudit.core.datapolicy.DataPolicy.private_kinds`) is not published.

        Raises:
            NotFoundError: the bundle is not within the current tree, one of its records was
                erased (its leaf data is gone; the leaf hash stays in ``tile/0/...``), one is
                of a withheld kind, or one is too long for the bundle's ``uint16`` length (a
                record may be 65,536 bytes, :data:`chainaudit.core.records.MAX_RECORD_BYTES`; such
                a bundle is withheld like the others, its leaf hash still published).
            StoreError: a record is missing from the store.
        """
        self._check_tile(0, index, width)
        first = index * tlogtiles.TILE_WIDTH
        wanted = range(first, first + width)
        keys = range(bundles.key(first), bundles.key(first + width - 1) + 1)
        found = {
            record.leaf_index: record
            for bundle in self._bundles(keys).values()
            for record in bundle
            if record.leaf_index in wanted
        }
        entries: list[bytes] = []
        for leaf in wanted:
            record = found.get(leaf)
            if record is None:
                raise StoreError(f"the record at leaf {leaf} is missing from the store")
            if record.kind in withhold:
                raise NotFoundError(
                    f"entry bundle {index} is not published: the record at leaf {leaf} is of "
                    f"kind {record.kind!r}, which the data policy keeps private (its leaf hash "
                    "stays in the level-0 tile)"
                )
            record = self._reveal(record)
            if record.body is None:
                raise NotFoundError(
                    f"entry bundle {index} is not published: the record at leaf {leaf} was "
                    "erased (its leaf hash stays in the level-0 tile)"
                )
            if len(record.body) > tlogtiles.MAX_ENTRY_BYTES:
                raise NotFoundError(
                    f"entry bundle {index} is not published: the record at leaf {leaf} is "
                    f"{len(record.body)} bytes, more than an entry's uint16 length holds "
                    "(its leaf hash stays in the level-0 tile)"
                )
            entries.append(record.body)
        try:
            return tlogtiles.encode_entries(entries)
        except InputError as exc:
            raise StoreError(f"entry bundle {index}: {exc}") from exc

    def _check_tile(self, level: int, index: int, width: int) -> None:
        if not (0 <= level <= tlogtiles.MAX_LEVEL and index >= 0):
            raise NotFoundError(f"no tile {level}/{index}")
        if not 1 <= width <= tlogtiles.TILE_WIDTH:
            raise NotFoundError(f"no tile of width {width}")
        nodes = self._size >> (tlogtiles.TILE_HEIGHT * level)
        if index * tlogtiles.TILE_WIDTH + width > nodes:
            what = "full" if width == tlogtiles.TILE_WIDTH else f"partial (width {width})"
            raise NotFoundError(
                f"the {what} tile {index} of level {level} is not in the tree of size "
                f"{self._size} ({nodes} nodes at that level)"
            )

    # -- audit -------------------------------------------------------------------------------

    def audit(
        self, *, chain_id: int | None = None, jobs: int = 1, chunk_leaves: int | None = None
    ) -> AuditReport:
        """Re-derive every leaf from its stored record, every stored node from the leaves, and
        every derived index row from the records.

        Reports each record whose bytes no longer hash to the leaf the tree committed
        (``altered``), that sits at another index than the one committed (``reordered``), that
        is missing (``deleted``) or that the tree never committed (``inserted``); each stored
        node that does not match its children (``tree``); each recorded checkpoint whose
        root the stored tree no longer reproduces (``history``); each record id that the
        id index does not map to its record (``index``).

        Then what the records say: a record whose content is gone with no erasure record
        (:mod:`chainaudit.service.erasure`, written by the privacy service) naming its id, leaf
        index and committed leaf hash, or an erasure record whose record still has its content
        (``erased``; an erased record's stored id, kind, actor and time can no longer be
        checked); a record of a reserved kind or id
        (:mod:`chainaudit.core.provenance`) whose stamped submitter may not write it
        (``unentitled``; also one with no submitter appended after the log's first stamped
        record), or with no submitter at all before that (``unstamped``: written before
        submitters were stamped, nothing shows the service wrote it, readers ignore it);
        each stored signature that is not the stored signer's EIP-712
        signature of that record's committed leaf, or whose record the log lacks
        (``signature``). Signatures are checked for ``chain_id`` when given, else for the
        chain ids the log was anchored on; a log never anchored names no chain, so its
        signatures are then reported as not checkable.

        Reads the store in ``O(n)`` time in one read transaction (one snapshot), so appends
        made meanwhile by other connections are not seen half-written; writes nothing.

        ``jobs`` > 1 splits the heavy part (decoding each bundle, re-hashing each record into
        its leaf, re-deriving the nodes of the tiles) over aligned ranges of
        ``chunk_leaves`` leaves (a power of two, at least 256; by default about four ranges
        per job), checked by ``jobs`` worker processes each with its own read connection.
        The audit is bounded at the tree size read first: the workers read only the complete
        ranges below it (on PostgreSQL in the very snapshot of this connection, exported to
        them; on SQLite in their own, which holds the same rows below that size unless a
        record is erased meanwhile), this process the last range and whatever lies beyond.
        The findings are the same, in the same order, whatever ``jobs`` is.
        Raises :class:`ValueError` for ``jobs`` < 1 or a bad ``chunk_leaves``.
        """
        if jobs < 1:
            raise ValueError(f"jobs must be at least 1, not {jobs}")
        if chunk_leaves is not None and (
            chunk_leaves < tiles.WIDTH or chunk_leaves & (chunk_leaves - 1)
        ):
            raise ValueError(f"chunk_leaves must be a power of two >= {tiles.WIDTH}")
        with self._db.read():
            return self._audit(chain_id, jobs, chunk_leaves)

    def _audit(self, chain_id: int | None, jobs: int, chunk_leaves: int | None) -> AuditReport:
        self._sync()
        size = self._size
        report = AuditReport(tree_size=size, records_checked=0, nodes_checked=0, root=b"")
        findings = report.findings
        bits = _chunk_bits(size, jobs, chunk_leaves)
        last = max(size - 1, 0) >> bits
        parts = self._audit_parts(size, bits, last, jobs)
        mismatched: dict[int, tuple[str, bytes]] = {}  # index -> (record id, computed leaf)
        tree_leaves: dict[int, bytes] = {}
        content = _ContentAudit(findings)
        tally = _IdTally()
        tree_findings: list[AuditFinding] = []
        for part in parts:
            _merge_part(part, report, content, tally)
            mismatched.update(part.mismatched)
            tree_leaves.update(part.tree_leaves)
            tree_findings.extend(part.tree_findings)
            report.nodes_checked += part.nodes_checked
        self._audit_orphan_ids(tally, findings)
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
        content.resolve_erasures(self._committed_leaf)
        findings.extend(tree_findings)
        report.nodes_checked += self._audit_tree_top(size, bits, findings)
        report.root = self._audit_root(size)
        self._audit_history(report.root, size, findings)
        self._audit_signatures(chain_id, findings)
        findings.sort(key=lambda f: (f.index if f.index is not None else -1, f.problem))
        return report

    def _audit_parts(self, size: int, bits: int, last: int, jobs: int) -> list[_AuditPart]:
        """Audit the ranges ``0 .. last`` of ``1 << bits`` leaves (see :meth:`audit`): the
        ones below ``last`` in a pool of ``jobs`` processes when there are several, the last
        here; return their parts in range order."""
        if jobs == 1 or last == 0:
            return [self._audit_part(size, bits, chunk, chunk == last) for chunk in range(last + 1)]
        import multiprocessing  # noqa: PLC0415 - only a parallel audit needs it
        from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

        where = _AuditSource(
            str(self.path), self.database_url, self.at_rest, self.kinds, self._export_snapshot()
        )
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        with ProcessPoolExecutor(max_workers=min(jobs, last), mp_context=context) as pool:
            futures = [
                pool.submit(_audit_part_in_worker, where, size, bits, chunk)
                for chunk in range(last)
            ]
            tail = self._audit_part(size, bits, last, True)
            return [future.result() for future in futures] + [tail]

    def _export_snapshot(self) -> str | None:
        """On PostgreSQL, the id of this read transaction's snapshot, for the workers of a
        parallel audit to read in (``None`` on SQLite, which cannot share one)."""
        if self._db.engine != "postgresql":
            return None
        (snapshot,) = self._db.execute("SELECT pg_export_snapshot()").fetchone()
        return str(snapshot)

    @classmethod
    def _audit_reader(cls, where: _AuditSource) -> Log:
        """A read-only view of the log ``where`` names for a worker of a parallel audit: its
        own connection, no schema created or upgraded (the auditing process opened it)."""
        log = cls.__new__(cls)
        log.path = Path(where.path)
        log.database_url = where.database_url
        log.kinds = where.kinds
        log.at_rest = where.at_rest
        log._keyring = None
        log._staged = []
        try:
            log._db = database.connect(
                where.database_url or log.path, pragmas="PRAGMA cache_size=-262144;"
            )
        except database.DatabaseError as exc:
            raise StoreError(f"cannot open the log to audit it: {exc}") from exc
        log._sql = _Queries(log._db)
        log._size = -1
        log._frontier = []
        return log

    def _audit_part(self, size: int, bits: int, chunk: int, last: bool) -> _AuditPart:
        """Audit the records of bundles in leaf range ``chunk`` of ``1 << bits`` leaves (the
        first also takes any bundle below, the ``last`` any above) against the tree of
        ``size`` leaves, and the tree's nodes of levels ``1 .. bits`` over that range."""
        part = _AuditPart()
        findings = part.findings
        start = chunk << bits
        stop = size if last else min((chunk + 1) << bits, size)
        first_key = start >> bundles.HEIGHT if chunk else -_NO_BOUND
        end_key = _NO_BOUND if last else ((chunk + 1) << bits) >> bundles.HEIGHT
        expected = start
        committed = self._level(0, size, start=start, stop=stop)
        committed_next = start  # the index of the leaf ``committed`` yields next
        content = _ContentAudit(findings, deferred=part.unstamped)
        for idx, record_id, body in self._audit_records(
            findings, content, part.tally, first_key, end_key
        ):
            part.records_checked += 1
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
                    part.mismatched[idx] = (record_id, computed)
                    part.tree_leaves[idx] = tree_leaf
        for missing in range(expected, stop):
            findings.append(AuditFinding("deleted", missing, None, "record missing from the store"))
        part.content = content
        part.nodes_checked = self._audit_subtree(size, bits, chunk, part.tree_findings)
        return part

    def _committed_leaf(self, leaf_index: int) -> bytes | None:
        """The stored leaf hash at ``leaf_index``, or ``None`` when the store lacks it."""
        if not 0 <= leaf_index < self._size:
            return None
        return self._stored_nodes([(0, leaf_index)])[0]

    def _audit_records(
        self,
        findings: list[AuditFinding],
        content: _ContentAudit,
        tally: _IdTally,
        first_key: int,
        end_key: int,
    ) -> Iterator[tuple[int, str, bytes | None]]:
        """Yield ``(index, record id, body)`` of every record stored in the bundles
        ``first_key`` up to ``end_key``, by index; report unreadable bundles, records stored
        in the wrong bundle or twice, and records the id index does not map to; check each
        record's content with ``content``; count what :meth:`_audit_orphan_ids` needs in
        ``tally``."""
        rows = self._db.stream(
            "SELECT id, records FROM bundles WHERE id >= ? AND id < ? ORDER BY id",
            (first_key, end_key),
        )
        for key, blob in rows:
            try:
                records = sorted(self._decode_bundle(key, blob), key=lambda r: r.leaf_index)
            except StoreError as exc:
                findings.append(AuditFinding("altered", None, None, str(exc)))
                tally.unreadable.add(key)
                continue
            index_rows = dict(
                self._db.execute(
                    self._sql.ids_in, (self._db.list_param([r.record_id for r in records]),)
                ).fetchall()
            )
            seen: set[int] = set()
            for record in records:
                idx, record_id = record.leaf_index, record.record_id
                if bundles.key(idx) != key or idx in seen:
                    where = "a second time" if idx in seen else f"in bundle {key}"
                    findings.append(
                        AuditFinding("inserted", idx, record_id, f"record for leaf {idx} {where}")
                    )
                    continue
                seen.add(idx)
                try:
                    opened = self._reveal(record)
                except StoreError as exc:  # a sealed body altered, moved, or its key lost
                    findings.append(
                        AuditFinding("altered", idx, record_id, f"sealed body does not open: {exc}")
                    )
                    tally.reported.add(record_id)
                    opened = record._replace(body=None)
                content.check(opened)
                if index_rows.get(record_id) == idx:
                    tally.indexed += 1
                else:
                    findings.append(_index_finding(record_id, idx, index_rows.get(record_id)))
                    tally.reported.add(record_id)
                yield idx, record_id, opened.body

    def _audit_orphan_ids(self, tally: _IdTally, findings: list[AuditFinding]) -> None:
        """Report the id index rows that lead to no stored record (a damaged store only),
        given what :meth:`_audit_records` counted over the whole log."""
        (rows,) = self._db.execute("SELECT count(*) FROM record_ids").fetchone()
        if rows == tally.indexed:
            return
        rows_by_id = self._db.execute("SELECT record_id, idx FROM record_ids")
        while rows := rows_by_id.fetchmany(4096):
            chunk = {rid: idx for rid, idx in rows if bundles.key(idx) not in tally.unreadable}
            found = self._entries_by_id(list(chunk))
            for record_id, idx in chunk.items():
                if record_id not in found and record_id not in tally.reported:
                    findings.append(_index_finding(record_id, None, idx))

    def _audit_signatures(self, chain_id: int | None, findings: list[AuditFinding]) -> None:
        """Check every stored signature against its record's committed leaf and its stored
        signer (see :meth:`audit`)."""
        rows = self._db.execute(
            "SELECT record_id, signer, signature FROM record_signatures ORDER BY record_id"
        ).fetchall()
        if not rows:
            return
        from chainaudit.core.signing import recover_record_signer  # noqa: PLC0415 - imports web3

        chains = [chain_id] if chain_id is not None else self._anchored_chain_ids()
        try:
            entries = self._entries_by_id([str(row[0]) for row in rows])
        except StoreError:  # a damaged bundle, reported already: its records count as absent
            entries = {}
        for record_id, signer, signature in rows:
            entry = entries.get(str(record_id))
            if entry is None:
                findings.append(
                    AuditFinding(
                        "signature",
                        None,
                        str(record_id),
                        f"a signature by {signer} is stored for a record the log does not hold",
                    )
                )
                continue
            if not chains:
                findings.append(
                    AuditFinding(
                        "signature",
                        entry.index,
                        entry.record_id,
                        f"stored as signed by {signer}, but no chain id is known to check it "
                        "with (the log was never anchored): audit with --chain",
                    )
                )
                continue
            recovered: list[str] = []
            for chain in chains:
                try:
                    recovered.append(
                        recover_record_signer(chain, entry.record_id, entry.leaf_hash, signature)
                    )
                except VerificationError:
                    recovered.append("")
            if str(signer).lower() in (r.lower() for r in recovered):
                continue
            made_by = ", ".join(
                f"{r or 'nobody (malformed)'} on chain {c}"
                for c, r in zip(chains, recovered, strict=True)
            )
            findings.append(
                AuditFinding(
                    "signature",
                    entry.index,
                    entry.record_id,
                    f"stored as signed by {signer}, but the stored signature of this record's "
                    f"committed leaf was made by {made_by}",
                )
            )

    def _anchored_chain_ids(self) -> list[int]:
        """The chain ids of the log's anchors (none before it is first anchored), from the
        anchor book beside the log's tables (:class:`chainaudit.service.anchoring.AnchorBook`: the
        log's SQLite file or its PostgreSQL schema)."""
        if not self._has_table("anchors"):
            return []
        query = "SELECT DISTINCT chain_id FROM anchors ORDER BY 1"
        return [int(cid) for (cid,) in self._db.execute(query)]

    def _audit_subtree(self, size: int, bits: int, chunk: int, findings: list[AuditFinding]) -> int:
        """Recompute the stored nodes of levels ``1 .. bits`` over leaf range ``chunk`` of
        ``1 << bits`` leaves, level by level; return the count checked."""
        checked = 0
        for level in range(bits):
            width = size >> level
            first = (chunk << (bits - level)) // 2  # the first parent in the range
            end = min(((chunk + 1) << (bits - level)) // 2, width // 2)
            if first >= end:
                break
            checked += self._check_parents(level, width, first, end, findings)
        return checked

    def _audit_tree_top(self, size: int, bits: int, findings: list[AuditFinding]) -> int:
        """Recompute the stored nodes above level ``bits``, level by level; return the count
        checked."""
        checked = 0
        level = bits
        width = size >> bits
        while width > 1:
            checked += self._check_parents(level, width, 0, width // 2, findings)
            width //= 2
            level += 1
        return checked

    def _check_parents(
        self, level: int, width: int, first: int, end: int, findings: list[AuditFinding]
    ) -> int:
        """Compare the stored nodes ``first .. end`` of level ``level + 1`` with the hash of
        their stored children (``width`` nodes at ``level``); return how many."""
        below = self._level(level, width, start=2 * first, stop=2 * end)
        stored = self._level(level + 1, width // 2, start=first, stop=end)
        span = 1 << (level + 1)
        for index in range(first, end):
            left, right = next(below), next(below)
            parent = next(stored)
            if parent != merkle.hash_children(left, right):
                findings.append(
                    AuditFinding(
                        "tree",
                        index * span,
                        None,
                        f"node ({level + 1}, {index}) over leaves [{index * span}, "
                        f"{(index + 1) * span}) does not match its children",
                    )
                )
        return end - first

    def _audit_root(self, size: int) -> bytes:
        """The root folded from the stored nodes of the tree of ``size`` leaves (an absent
        node counts as empty, so that the root cannot match)."""
        levels = [level for level in range(size.bit_length()) if (size >> level) & 1]
        border = self._stored_nodes([(level, (size >> level) - 1) for level in levels])
        nodes = [node or b"" for node in border]
        return merkle.fold_blocks(nodes[::-1]) if nodes else merkle.EMPTY_ROOT

    def _level(
        self, level: int, count: int, *, start: int = 0, stop: int | None = None
    ) -> Iterator[bytes]:
        """Yield the stored nodes of ``level`` from index ``start`` on, in order, then ``b""``
        for ever: in place of each of the first ``count`` the store lacks, and after them.
        Reads only the tiles up to node ``stop`` (default ``count``)."""
        group, k = divmod(level, tiles.HEIGHT)
        per_tile = tiles.WIDTH >> k
        base = group << tiles.GROUP_SHIFT
        first_tile = start // per_tile
        position = first_tile * per_tile
        limit = min(count, count if stop is None else stop)
        rows = self._db.stream(
            "SELECT id, width, hashes FROM tiles WHERE id >= ? AND id < ? ORDER BY id",
            (base + first_tile, base + max(first_tile, -(-limit // per_tile))),
        )
        with contextlib.closing(rows):
            for key, width, blob in rows:
                first = (key - base) * per_tile
                if first >= count:
                    break
                while position < first:  # a missing tile
                    if position >= start:
                        yield b""
                    position += 1
                nodes = tiles.level_nodes(width, _as_bytes(blob), k)[: count - position]
                yield from nodes[max(start - position, 0) :]
                position += len(nodes)
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


class _ContentAudit:
    """What :meth:`Log.audit` checks in each stored record's content, fed the records in
    leaf order (:meth:`check`)."""

    def __init__(
        self, findings: list[AuditFinding], *, deferred: list[_Unstamped] | None = None
    ) -> None:
        self.findings = findings
        self.deferred = deferred
        """When given, where each finding on a record with no submitter is noted (its
        place in ``findings``): one range of a parallel audit cannot know whether an
        earlier range holds the log's first stamped record (:func:`_merge_part`)."""
        self.erased: set[int] = set()
        """The leaf indexes of records whose content is gone."""
        self.first_stamped: int | None = None
        """The leaf index of the first record carrying a submitter."""
        self.missing: dict[int, str] = {}
        """Leaf index -> record id of every record whose content is gone."""
        self.erasures: dict[int, tuple[int, str, str]] = {}
        """Erased leaf index -> (erasure record's leaf, erased record id, leaf hash hex), from
        every entitled erasure record (:mod:`chainaudit.service.erasure`)."""

    def _note_erasure(self, idx: int, document: Mapping[str, Any]) -> None:
        """Remember what an entitled erasure record says it erased."""
        payload = document.get("payload")
        if (
            document.get("kind") == "admin"
            and str(document.get("id", "")).startswith(ERASURE_PREFIX)
            and provenance.document_entitled(document)
            and isinstance(payload, dict)
            and payload.get("type") == "erasure"
            and type(payload.get("leaf_index")) is int
        ):
            self.erasures[payload["leaf_index"]] = (
                idx,
                str(payload.get("record_id")),
                str(payload.get("leaf_hash")),
            )

    def resolve_erasures(self, leaf_of: Callable[[int], bytes | None]) -> None:
        """Report each record whose content is gone with no erasure record naming its id,
        leaf index and leaf hash (``leaf_of`` gives the committed leaf), and each erasure
        record whose record still has its content (both ``erased``)."""
        for idx, record_id in sorted(self.missing.items()):
            erasure = self.erasures.get(idx)
            leaf = leaf_of(idx)
            if (
                erasure is not None
                and erasure[1] == record_id
                and leaf is not None
                and erasure[2] == "0x" + leaf.hex()
                and erasure[0] > idx
            ):
                continue
            self.findings.append(
                AuditFinding(
                    "erased",
                    idx,
                    record_id,
                    "the record's content is gone and no erasure record covers it (an erasure "
                    "record naming its id, leaf index and leaf hash, written by the privacy "
                    "service); the id, kind, actor and time stored with it can no longer be "
                    "checked",
                )
            )
        for idx, (at, record_id, _) in sorted(self.erasures.items()):
            if idx not in self.missing:
                self.findings.append(
                    AuditFinding(
                        "erased",
                        idx,
                        record_id,
                        f"the erasure record at leaf {at} says this record was erased, but its "
                        "content is still stored (or no such record is stored)",
                    )
                )

    def check(self, record: bundles.Stored) -> None:
        """Check one stored record: its content is there (``erased``), agrees with the id,
        kind, actor and time stored beside it (``altered``), and was submitted by someone
        entitled to write it (``unentitled``, ``unstamped``)."""
        idx, record_id = record.leaf_index, record.record_id
        if record.body is None:
            self.erased.add(idx)
            self.missing[idx] = record_id
            return
        try:
            document = json.loads(record.body)
        except ValueError:
            document = None
        if not isinstance(document, dict) or _summary_of(document) != record[:4]:
            self.findings.append(
                AuditFinding(
                    "altered",
                    idx,
                    record_id,
                    "the id, kind, actor or time stored with the record disagree with its content",
                )
            )
            if not isinstance(document, dict):
                return
        self._check_submitter(idx, record_id, document)
        if record_id.startswith(ERASURE_PREFIX):
            self._note_erasure(idx, document)

    def _check_submitter(self, idx: int, record_id: str, document: dict[str, Any]) -> None:
        submitter = document.get("submitter")
        if submitter is not None and self.first_stamped is None:
            self.first_stamped = idx
        if provenance.document_entitled(document):
            return
        what = _reserved_what(document)
        if submitter is not None:
            problem = "unentitled"
            detail = f"submitted by {submitter!r}, which may not write {what}"
            self.findings.append(
                AuditFinding(problem, idx, record_id, detail + "; readers ignore it")
            )
            return
        if self.deferred is not None:
            self.deferred.append(
                _Unstamped(len(self.findings), idx, record_id, what, self.first_stamped)
            )
        self.findings.append(_unstamped_finding(idx, record_id, what, self.first_stamped))


def _unstamped_finding(
    idx: int, record_id: str, what: str, first_stamped: int | None
) -> AuditFinding:
    """The finding on a record with no submitter that only the service may write:
    ``unstamped`` when no record before it (``first_stamped`` is ``None``) carries a
    submitter, else ``unentitled``."""
    if first_stamped is None:
        problem = "unstamped"
        detail = (
            f"no submitter, though only the service writes {what}: the record predates "
            "submitter stamping (no earlier record of this log carries one), so nothing "
            "shows the service wrote it"
        )
    else:
        problem = "unentitled"
        detail = (
            f"no submitter, though only the service writes {what}, and it was appended "
            f"after leaf {first_stamped} was stamped"
        )
    return AuditFinding(problem, idx, record_id, detail + "; readers ignore it")


class _Unstamped(NamedTuple):
    """A finding on a record with no submitter, to settle once the ranges before it are
    known (see :class:`_ContentAudit`)."""

    at: int
    """Its place in its range's findings."""
    leaf: int
    record_id: str
    what: str
    first_stamped: int | None
    """The first stamped record of its range before it, if any."""


@dataclass(slots=True)
class _IdTally:
    """What :meth:`Log._audit_orphan_ids` needs from the scan of the records."""

    indexed: int = 0
    """Records the id index maps to their leaf."""
    reported: set[str] = field(default_factory=set)
    """Ids of records already reported (the index or the sealed body)."""
    unreadable: set[int] = field(default_factory=set)
    """Keys of the bundles that could not be decoded."""


@dataclass(slots=True)
class _AuditPart:
    """What the audit of one leaf range (:meth:`Log._audit_part`) found, to merge in range
    order (:func:`_merge_part`)."""

    findings: list[AuditFinding] = field(default_factory=list)
    unstamped: list[_Unstamped] = field(default_factory=list)
    records_checked: int = 0
    tally: _IdTally = field(default_factory=_IdTally)
    mismatched: dict[int, tuple[str, bytes]] = field(default_factory=dict)
    """Leaf index -> (record id, computed leaf) of each record not hashing to its leaf."""
    tree_leaves: dict[int, bytes] = field(default_factory=dict)
    """Leaf index -> committed leaf of the same records."""
    content: _ContentAudit | None = None
    tree_findings: list[AuditFinding] = field(default_factory=list)
    nodes_checked: int = 0


class _AuditSource(NamedTuple):
    """Where a worker of a parallel audit reads the log (see :meth:`Log._audit_reader`)."""

    path: str
    database_url: str | None
    at_rest: datakeys.AtRest | None
    kinds: frozenset[str]
    snapshot: str | None
    """PostgreSQL: the auditing transaction's exported snapshot."""


_NO_BOUND: Final = 1 << 62
"""Beyond every bundle key."""
_SNAPSHOT_ID: Final = re.compile(r"[0-9A-Fa-f-]{1,64}")
_CHUNKS_PER_JOB: Final = 8
_MIN_CHUNK_BITS: Final = 12


def _chunk_bits(size: int, jobs: int, chunk_leaves: int | None) -> int:
    """log2 of the leaves per range of an audit (:meth:`Log.audit`): ``chunk_leaves`` when
    given; one range for one job; else about :data:`_CHUNKS_PER_JOB` ranges per job."""
    if chunk_leaves is not None:
        return chunk_leaves.bit_length() - 1
    if jobs == 1:
        return max(_MIN_CHUNK_BITS, (size - 1).bit_length())
    target = -(-size // (_CHUNKS_PER_JOB * jobs))
    return max(_MIN_CHUNK_BITS, (target - 1).bit_length())


def _merge_part(
    part: _AuditPart, report: AuditReport, content: _ContentAudit, tally: _IdTally
) -> None:
    """Add one range's findings and counts to the whole audit's, ranges in leaf order,
    settling its findings on records with no submitter by the ranges before it."""
    first = content.first_stamped
    for noted in part.unstamped:
        stamped = first if first is not None else noted.first_stamped
        part.findings[noted.at] = _unstamped_finding(
            noted.leaf, noted.record_id, noted.what, stamped
        )
    report.findings.extend(part.findings)
    report.records_checked += part.records_checked
    found = part.content
    if found is not None:
        content.erased |= found.erased
        content.missing.update(found.missing)
        content.erasures.update(found.erasures)
        if content.first_stamped is None:
            content.first_stamped = found.first_stamped
    tally.indexed += part.tally.indexed
    tally.reported |= part.tally.reported
    tally.unreadable |= part.tally.unreadable


def _audit_part_in_worker(where: _AuditSource, size: int, bits: int, chunk: int) -> _AuditPart:
    """One range of a parallel audit, in a worker process (see :meth:`Log.audit`): read in
    ``where.snapshot`` when given (PostgreSQL), else in a snapshot of its own."""
    log = Log._audit_reader(where)
    try:
        log._db.begin_read()
        if where.snapshot is not None:
            if not _SNAPSHOT_ID.fullmatch(where.snapshot):
                raise StoreError(f"not a snapshot id: {where.snapshot!r}")
            log._db.execute(f"SET TRANSACTION SNAPSHOT '{where.snapshot}'")
        return log._audit_part(size, bits, chunk, False)
    finally:
        log._db.rollback()
        log.close()


def _reserved_what(document: Mapping[str, Any]) -> str:
    """Which reservation a record breaks: its kind's, else its id's namespace's."""
    kind, record_id = str(document.get("kind", "")), str(document.get("id", ""))
    allowed = provenance.RESERVED_KINDS.get(kind)
    if allowed is not None and document.get("submitter") not in allowed:
        return f"the reserved kind {kind!r}"
    return f"ids in the reserved namespace {provenance.reserved_prefix(record_id)!r}"


def _summary_of(document: Mapping[str, Any]) -> tuple[str, str, str, int] | None:
    """``(id, kind, actor, timestamp_ms)`` as a parsed record states them, or ``None`` if it
    lacks one (what the store keeps beside each body)."""
    try:
        return (
            document["id"],
            document["kind"],
            document["actor"],
            parse_timestamp(document["timestamp"]),
        )
    except (KeyError, TypeError, RecordError):
        return None


def _index_finding(record_id: str, index: int | None, indexed: int | None) -> AuditFinding:
    """An ``index`` finding: ``record_id`` is stored at ``index`` but indexed at ``indexed``."""
    stored = "not stored" if index is None else f"stored at leaf {index}"
    mapped = "not indexed" if indexed is None else f"indexed at leaf {indexed}"
    return AuditFinding("index", index, record_id, f"record {stored} but {mapped}")


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
        self._edge: dict[int, list[bytearray]] = {}
        """The tiles this transaction writes to, by key: each a list of levels."""
        self._open: dict[int, tuple[int, list[native.BundleParts]]] = {}
        """The partial record bundles this transaction wrote, by key: (records, plain form)."""

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
        fresh: Sequence[PreparedRecord] = records
        positions: Sequence[int] = range(len(records))
        duplicates = 0
        if records and not self._index_all_new(
            json.dumps([r.record_id for r in records]), len(records)
        ):
            fresh, positions, duplicates = self._log._split_new(records)
            self._index(fresh)
        stored = self._log._sealed(first, fresh) if self._log._seals(fresh) else fresh
        self._write_bundles(
            first, len(fresh), lambda at, a, b: native.bundle_parts(at, list(stored[a:b]), FIELDS)
        )
        self._write_tiles(self._grow(b"".join([r[6] for r in fresh])))
        if signatures:
            db.executemany(
                "INSERT INTO record_signatures VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
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

    def append_batch(self, batch: native.Batch) -> AppendResult:
        """:meth:`append` for a chunk prepared as columns (the bulk ingest's fast lane): a
        batch of new records is written without an object per record; one that re-submits
        an id takes :meth:`append` instead, with the same results."""
        first = self.size
        ids_json = batch.ids_json.decode("ascii")  # text: SQLite reads a BLOB as JSONB
        if not self._index_all_new(ids_json, batch.size):
            return self.append(batch.plain().records())
        if batch.plain_meta and batch.first == first and self._log.at_rest is not None:
            self._log._stage_keys(batch.keys)  # sealed by the parsing process for these leaves
        else:
            batch = batch.plain()
            if self._seals_batch(batch):
                batch = self._log._sealed_batch(first, batch)
        packed = batch.packed if batch.first == first else ()
        head = -first % bundles.WIDTH if packed else batch.size
        tail = head + len(packed) * bundles.WIDTH
        self._write_bundles(
            first, head, lambda at, a, b: native.batch_bundle_parts(at, batch, a, b)
        )
        self._log._db.executemany(
            _PUT_BUNDLE, [(bundles.key(first + head) + i, blob) for i, blob in enumerate(packed)]
        )
        self._write_bundles(
            first + tail,
            batch.size - tail,
            lambda at, a, b: native.batch_bundle_parts(at, batch, tail + a, tail + b),
        )
        self._write_tiles(self._grow(batch.leaves))
        return AppendResult(
            appended=batch.size,
            duplicates=0,
            first_index=first,
            tree_size=self.size,
            root=self.root(),
            indexes=tuple(range(first, self.size)),
        )

    def append_erased(
        self,
        record_id: str,
        kind: str,
        actor: str,
        timestamp_ms: int,
        leaf_hash: bytes,
        *,
        signature: tuple[str, str] | None = None,
    ) -> int:
        """Append one leaf whose record's content is already erased: its stored id, kind,
        actor and time, no body, and ``leaf_hash`` as given (it cannot be recomputed: the
        body is gone), with the record's stored ``(signer, signature)`` if it had one (as
        :meth:`append` stores it). What :mod:`chainaudit.service.export` needs to rebuild a log
        holding erased records leaf for leaf; the erasure record that names this leaf is
        appended later, as an ordinary record, from the same export. Returns the new leaf's
        index.

        Preconditions (checked): ``leaf_hash`` is 32 bytes and ``record_id`` is not in the
        log. Nothing else is: the caller vouches for the leaf hash (the import checks the
        resulting root against its source, and ``chainaudit restore`` against the chain).

        Raises:
            InputError: ``leaf_hash`` is not 32 bytes.
            ConflictError: ``record_id`` is in the log already (nothing of this call is
                written).
        """
        if len(leaf_hash) != merkle.HASH_SIZE:
            raise InputError(f"a leaf hash is {merkle.HASH_SIZE} bytes, not {len(leaf_hash)}")
        first = self.size
        if not self._index_all_new(json.dumps([record_id]), 1):
            raise ConflictError(f"record id {record_id!r} is already in the log")
        erased = bundles.Stored(record_id, kind, actor, timestamp_ms, first, None)
        self._write_bundles(first, 1, lambda at, a, b: bundles.parts_at([erased]))
        self._write_tiles(self._grow(leaf_hash))
        if signature is not None:
            self._log._db.execute(
                "INSERT INTO record_signatures VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (record_id, *signature),
            )
        return first

    def _seals_batch(self, batch: native.Batch) -> bool:
        """Whether ``batch`` may hold a record of a kind sealed at rest (a byte search of its
        canonical bodies: a payload quoting the kind only sends it down the careful path)."""
        at_rest = self._log.at_rest
        if at_rest is None or not at_rest.kinds:
            return False
        bodies = batch.bodies
        return any(b'"kind":' + json.dumps(k).encode() in bodies for k in at_rest.kinds)

    def _index_all_new(self, ids_json: str, count: int) -> bool:
        """Map the ``count`` ids in ``ids_json`` (a JSON array), the next leaves, to their
        indexes on the assumption that none is in the log or twice in the array (the bulk
        case); return whether it held (if not, nothing is written)."""
        db = self._log._db
        if db.engine == "postgresql":  # one round trip: no savepoint, no aborted statement
            inserted, mine = db.execute(
                self._log._sql.insert_new_ids, (self.size, ids_json, count)
            ).fetchone()
            if inserted == count:
                return True
            if mine:  # take back exactly the rows this statement added
                db.execute("DELETE FROM record_ids WHERE record_id = ANY(?)", (mine,))
            return False
        db.execute("SAVEPOINT all_new")
        try:
            db.execute(self._log._sql.insert_ids, (self.size, ids_json))
        except database.IntegrityError:  # an id already in the log, or twice in the batch
            db.execute("ROLLBACK TO all_new")
            return False
        finally:
            db.execute("RELEASE all_new")
        return True

    def _index(self, records: Sequence[PreparedRecord]) -> None:
        """Map the ids of ``records``, the next leaves, to their indexes."""
        self._log._db.execute(
            self._log._sql.insert_ids, (self.size, json.dumps([r[0] for r in records]))
        )

    def _write_bundles(
        self, first: int, count: int, parts: Callable[[int, int, int], native.BundleParts]
    ) -> None:
        """Store ``count`` new records, the leaves from ``first`` on, in their bundles, and
        forget the complete bundles (they never change again). ``parts(leaf, a, b)`` gives
        the plain form of new records ``a .. b - 1`` as the leaves from ``leaf`` on."""
        rows: list[tuple[int, bytes]] = []
        done = 0
        while done < count:
            key, position = divmod(first + done, bundles.WIDTH)
            take = min(count - done, bundles.WIDTH - position)
            held = self._open.pop(key, None)
            if held is None:
                held = (position, [self._stored_parts(key)] if position else [])
            held[1].append(parts(first + done, done, done + take))
            rows.append((key, bundles.assemble(held[1])))
            if position + take < bundles.WIDTH:
                items = b",".join(run[0] for run in held[1] if run[0])
                self._open[key] = (position + take, [(items, b"".join(r[1] for r in held[1]))])
            done += take
        self._log._db.executemany(_PUT_BUNDLE, rows)

    def _stored_parts(self, key: int) -> native.BundleParts:
        """The plain form of stored bundle ``key``, its records kept exactly as stored (in a
        damaged store too: :meth:`Log.audit` reports what is wrong, appends go on)."""
        return bundles.parts_at(self._log._bundles([key]).get(key, []))

    def _tile(self, key: int) -> list[bytearray]:
        """The levels of tile ``key`` as this transaction has them (read once from the store),
        each its hashes back to back."""
        levels = self._edge.get(key)
        if levels is None:
            row = self._log._read_tiles([key]).get(key)
            stored = tiles.decode(*row) if row else [b""] * tiles.HEIGHT
            levels = self._edge[key] = [bytearray(level) for level in stored]
        return levels

    def _grow(self, leaves: bytes) -> set[int]:
        """Extend the tree by ``leaves`` (leaf hashes back to back): every new perfect subtree
        into the tiles, level by level (the interior hashes of a level in one native call),
        then the frontier and the size. Returns the keys of the tiles that changed."""
        size = merkle.HASH_SIZE
        old, new = self.size, self.size + len(leaves) // size
        touched: set[int] = set()
        if not leaves:
            return touched
        # The frontier holds one root per set bit of the size, largest first.
        old_roots = dict(zip(_set_bits(old)[::-1], self.frontier, strict=True))
        roots: list[bytes] = []
        level, nodes = 0, leaves  # the new nodes of ``level``, from index old >> level
        while True:
            first = old >> level
            self._place(level, first, nodes, touched)
            if new >> level & 1:
                last = (new >> level) - 1 - first
                roots.append(
                    nodes[last * size : (last + 1) * size] if last >= 0 else old_roots[level]
                )
            if new >> (level + 1) == old >> (level + 1):  # nothing new above this level
                roots.extend(old_roots[above] for above in _set_bits(new) if above > level)
                break
            row = old_roots[level] + nodes if first & 1 else nodes
            nodes = native.hash_pairs(row[: len(row) // (2 * size) * 2 * size])
            level += 1
        self.size, self.frontier = new, roots[::-1]
        return touched

    def _place(self, level: int, first: int, nodes: bytes, touched: set[int]) -> None:
        """Append ``nodes`` (hashes back to back), the nodes of ``level`` from index ``first``
        on, to their tiles."""
        size = merkle.HASH_SIZE
        group, k = divmod(level, tiles.HEIGHT)
        per_tile = tiles.WIDTH >> k
        count, done = len(nodes) // size, 0
        while done < count:
            tile, position = divmod(first + done, per_tile)
            take = min(count - done, per_tile - position)
            key = (group << tiles.GROUP_SHIFT) | tile
            row = self._tile(key)[k]
            if len(row) != position * size:
                raise StoreError(
                    f"tile {key} holds {len(row) // size} nodes at level {level}, "
                    f"expected {position}"
                )
            row += nodes[done * size : (done + take) * size]
            touched.add(key)
            done += take

    def _write_tiles(self, keys: set[int]) -> None:
        """Store the tiles ``keys``; forget the complete ones (they never change again)."""
        rows = [(key, *tiles.encode(self._edge[key])) for key in sorted(keys)]
        self._log._db.executemany(_PUT_TILE, rows)
        for key, width, _ in rows:
            if width == tiles.WIDTH:
                del self._edge[key]


FEW: Final = 4
ERASURE_PREFIX: Final = "erasure:"
"""The id prefix of erasure records (:mod:`chainaudit.service.erasure`)."""
"""Up to this many records are read from their bundles one by one (:func:`bundles.find`)."""
FIELDS: Final = bundles.FIELDS
_PUT_BUNDLE: Final = (
    "INSERT INTO bundles VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET records = excluded.records"
)
_PUT_TILE: Final = (
    "INSERT INTO tiles VALUES (?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET width = excluded.width, hashes = excluded.hashes"
)


class _Queries:
    """The log's statements that differ between the engines (a list parameter, JSON)."""

    def __init__(self, db: database.Database) -> None:
        # Constant text only (S608): in_list names a column of ours.
        ids, record_ids = db.in_list("id"), db.in_list("record_id")
        self.tiles_in = "SELECT id, width, hashes FROM tiles WHERE " + ids  # noqa: S608
        self.bundles_in = "SELECT id, records FROM bundles WHERE " + ids  # noqa: S608
        self.indexes_of = "SELECT idx FROM record_ids WHERE " + record_ids  # noqa: S608
        self.ids_in = "SELECT record_id, idx FROM record_ids WHERE " + record_ids  # noqa: S608
        self.insert_ids = (
            "INSERT INTO record_ids SELECT value, ? + key FROM json_each(?)"
            if db.engine == "sqlite"
            else "INSERT INTO record_ids SELECT value, ?::bigint + ordinality - 1 "
            "FROM jsonb_array_elements_text(?::jsonb) WITH ORDINALITY"
        )
        """Map the ids of a JSON array (text) to consecutive leaf indexes from the first
        parameter on."""
        self.insert_new_ids = (
            "WITH added AS (INSERT INTO record_ids "
            "SELECT value, ?::bigint + ordinality - 1 "
            "FROM jsonb_array_elements_text(?::jsonb) WITH ORDINALITY "
            "ON CONFLICT DO NOTHING RETURNING record_id) "
            "SELECT count(*), CASE WHEN count(*) < ? THEN array_agg(record_id) END FROM added"
        )
        """PostgreSQL: :attr:`insert_ids` skipping ids already indexed (or twice in the
        array); gives how many were added and, when not all were, which."""


def _set_bits(value: int) -> list[int]:
    """The positions of the bits set in ``value``, lowest first."""
    return [bit for bit in range(value.bit_length()) if value >> bit & 1]
