"""Encryption at rest: one data key per record, kept apart from the data, wrapped by a master key.

A record of a kind whose data policy says ``"encrypt": true`` (:mod:`chainaudit.core.datapolicy`)
is stored in its bundle (:mod:`chainaudit.log.bundles`) as a *sealed body*::

    MAGIC (5 bytes) || nonce (12 bytes) || AES-256-GCM(data key, nonce, body, aad) || tag

with a fresh random 256-bit data key and a random nonce per record, and associated data
binding the record id and leaf index (:func:`associated_data`), so a sealed body moved to
another leaf or id does not open. Canonical JSON never starts with the byte ``0x00``, so
:data:`MAGIC` tells a sealed body from a plain one. The canonical bytes hashed into the tree
are the plain ones: encryption is a storage matter only.

The data keys live in tables of their own: in their own SQLite file (``keys.sqlite``
beside ``log.sqlite``, or the setting ``keys_file``), or, for a log kept in PostgreSQL
(``database_url``) with no ``keys_file`` set, in tables of the log's database beside the log's
(every store through :mod:`chainaudit.log.database`; production still requires ``keys_file``
outside the data, so that no backup of the data holds a key). They are stored a *run* at a time
(table ``key_runs``, :class:`KeyRun`): the keys of the sealed records of one append within one
record bundle (at most :data:`RUN_WIDTH` consecutive leaves), one 32-byte slot per leaf (all
zero: no key), encrypted together with AES-256-GCM under the master key (setting ``master_key``
or ``master_key_file``; never stored beside the data, never logged) with a random nonce and
associated data binding the run's first leaf, length and master key id
(:func:`run_associated_data`). The keys are still independent random keys, one per record:
destroying one (:meth:`Keyring.destroy`) re-encrypts its run without it, under a fresh nonce
(SQLite: with ``secure_delete`` on and the WAL truncated; PostgreSQL: the old row version
removed by ``VACUUM``, see :class:`Keyring` for what that does not erase), so its sealed body,
in the log and in every backup of the log, cannot be decrypted any more (crypto-shredding)
while the other records of the run stay readable. :meth:`Keyring.rotate` re-encrypts every run
under a new master key in one transaction. Sealing is pure (:func:`seal_items`,
:func:`seal_batch`), so the bulk ingest's parsing process seals beside the writer; the writer
only stores the runs (:meth:`Keyring.store`) before the log's commit.

Rows of the first format (table ``data_keys``: one AES-key-wrapped key per leaf) are still
opened, destroyed and rotated. ``docs/privacy.md`` says where keys live, how they are backed up
and how long an erased key can still exist.
"""

from __future__ import annotations

import array
import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from chainaudit.core.errors import ChainauditError, ConfigError
from chainaudit.log import bundles, database, native

try:
    from chainaudit import _seal
except ImportError:  # built without OpenSSL headers: seal with `cryptography`
    _seal = None  # type: ignore[assignment]

__all__ = [
    "KEYS_DB",
    "MAGIC",
    "RUN_WIDTH",
    "AtRest",
    "KeyRun",
    "Keyring",
    "KeyringError",
    "associated_data",
    "drop_packed",
    "is_sealed",
    "master_key_id",
    "parse_master_key",
    "run_associated_data",
    "seal_batch",
    "seal_items",
    "vacuum_keys",
]

KEYS_DB: Final = "keys.sqlite"
"""The data-key file, in the data directory beside ``log.sqlite``."""
MAGIC: Final = b"\x00cae1"
"""The first bytes of a sealed body (canonical JSON never starts with ``0x00``)."""
NONCE_SIZE: Final = 12
KEY_SIZE: Final = 32
TAG_SIZE: Final = 16
RUN_WIDTH: Final = bundles.WIDTH
"""A key run never crosses a multiple of this: one run per record bundle and append."""
_NO_KEY: Final = bytes(KEY_SIZE)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS data_keys (
    idx INTEGER PRIMARY KEY,
    record_id TEXT NOT NULL,
    master_id TEXT NOT NULL,
    wrapped BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS key_runs (
    first INTEGER PRIMARY KEY,
    length INTEGER NOT NULL,
    master_id TEXT NOT NULL,
    ids TEXT NOT NULL,
    wrapped BLOB NOT NULL
);
"""


class KeyringError(ChainauditError):
    """A data key cannot be used: wrong or missing master key, or a damaged key row."""


class MasterKeyMismatchError(KeyringError):
    """The keys are wrapped by another master key than the one configured (a configuration
    matter, not damage: configure that key, or finish a rotation)."""


class KeyRun(NamedTuple):
    """The data keys of leaves ``first .. first + length - 1``, as stored in ``key_runs``.

    ``ids`` is a JSON array of the record id of each slot (``null``: no key, for a record not
    sealed or whose key was destroyed); ``wrapped`` is ``nonce || AES-256-GCM(master key,
    nonce, the 32-byte slots back to back, run_associated_data(first, length, master_id))``.
    """

    first: int
    length: int
    master_id: str
    ids: str
    wrapped: bytes


def parse_master_key(text: str, *, source: str = "master key") -> bytes:
    """The 32 bytes of a master key given as base64 (standard or URL-safe, padding optional).

    Raises:
        ConfigError: ``text`` is not base64 of exactly 32 bytes (the key is never echoed).
    """
    cleaned = "".join(text.split())
    try:
        raw = base64.b64decode(
            cleaned.replace("-", "+").replace("_", "/") + "=" * (-len(cleaned) % 4),
            validate=True,
        )
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"{source}: not base64 (expected 32 random bytes, base64)") from exc
    if len(raw) != KEY_SIZE:
        raise ConfigError(f"{source}: {len(raw)} bytes after base64 decoding; expected 32")
    return raw


def master_key_id(master: bytes) -> str:
    """A short public name of a master key (16 hex digits of a domain-separated SHA-256),
    stored with each wrapped data key so that a wrong master key is named, not guessed."""
    return hashlib.sha256(b"chainaudit master key id\x00" + master).hexdigest()[:16]


def associated_data(record_id: str, leaf_index: int) -> bytes:
    """The AES-GCM associated data of a record's sealed body: its id and leaf index."""
    return f"chainaudit-record-v1\x00{leaf_index}\x00{record_id}".encode()


def is_sealed(body: bytes | None) -> bool:
    """Whether a stored body is sealed (encrypted at rest) rather than canonical JSON."""
    return body is not None and body[:5] == MAGIC


def run_associated_data(first: int, count: int, master_id: str) -> bytes:
    """The AES-GCM associated data of a key run: its first leaf, length and master key id
    (a run moved to other leaves, or relabelled with another master key, does not open)."""
    return f"chainaudit-key-run-v1\x00{first}\x00{count}\x00{master_id}".encode()


def _wrap_run(
    master: bytes, master_id: str, first: int, count: int, ids: list[str | None], keys: bytes
) -> KeyRun:
    """A :class:`KeyRun` of ``keys`` (``count`` slots) under ``master``, with a fresh nonce."""
    nonce = os.urandom(NONCE_SIZE)
    aad = run_associated_data(first, count, master_id)
    wrapped = nonce + AESGCM(master).encrypt(nonce, keys, aad)
    return KeyRun(first, count, master_id, json.dumps(ids, separators=(",", ":")), wrapped)


def _unwrap_run(master: bytes, first: int, count: int, master_id: str, wrapped: bytes) -> bytes:
    """The slots of a key run (``count * 32`` bytes); raises :class:`KeyringError` if the run
    does not open under ``master`` (a damaged or moved run)."""
    try:
        keys = AESGCM(master).decrypt(
            wrapped[:NONCE_SIZE], wrapped[NONCE_SIZE:], run_associated_data(first, count, master_id)
        )
    except (InvalidTag, ValueError) as exc:
        raise KeyringError(
            f"the data keys of leaves {first}..{first + count - 1} do not open with the "
            "master key (a damaged key row)"
        ) from exc
    if len(keys) != count * KEY_SIZE:
        raise KeyringError(f"the data keys of leaves {first}..{first + count - 1} are damaged")
    return keys


def seal_items(
    master: bytes, items: Sequence[tuple[int, str, bytes]]
) -> tuple[list[bytes], list[KeyRun]]:
    """Seal each ``(leaf index, record id, canonical body)`` under a new random data key.

    Pure (no I/O but the system's randomness): returns the sealed bodies, in order, and the
    key runs that hold their keys (one per record bundle touched, :data:`RUN_WIDTH`), which
    must be stored (:meth:`Keyring.store`) before any sealed body is committed. Leaf indexes
    must be distinct. The optional extension :mod:`chainaudit._seal` (OpenSSL) encrypts when
    it is built, else ``cryptography``: the same bytes either way.
    """
    count = len(items)
    keys = os.urandom(KEY_SIZE * count)  # one system call each for the whole batch
    nonces = os.urandom(NONCE_SIZE * count)
    bodies = [item[2] for item in items]
    aads = [f"chainaudit-record-v1\x00{index}\x00{rid}".encode() for index, rid, _ in items]
    if _seal is not None:
        sealed = _seal.seal_many(keys, nonces, bodies, aads, MAGIC)
    else:
        sealed = []
        for at, (body, aad) in enumerate(zip(bodies, aads, strict=True)):
            nonce = nonces[at * NONCE_SIZE : (at + 1) * NONCE_SIZE]
            cipher = AESGCM(keys[at * KEY_SIZE : (at + 1) * KEY_SIZE])
            sealed.append(MAGIC + nonce + cipher.encrypt(nonce, body, aad))
    members = [(index, rid, at) for at, (index, rid, _) in enumerate(items)]
    return sealed, _runs(master, members, keys)


def _runs(master: bytes, members: Sequence[tuple[int, str, int]], keys: bytes) -> list[KeyRun]:
    """The key runs of ``members``, ``(leaf index, record id, position of its key in
    keys)`` with distinct leaves: one per record bundle touched."""
    groups: dict[int, list[tuple[int, str, int]]] = {}
    for member in members:
        groups.setdefault(member[0] // RUN_WIDTH, []).append(member)
    master_id = master_key_id(master)
    runs: list[KeyRun] = []
    for group in groups.values():
        (lo, _, k_lo), (hi, _, k_hi) = group[0], group[-1]
        if hi - lo == len(group) - 1 and k_hi - k_lo == hi - lo:  # consecutive, in order
            ids: list[str | None] = [m[1] for m in group]
            slots = keys[k_lo * KEY_SIZE : (k_hi + 1) * KEY_SIZE]
            runs.append(_wrap_run(master, master_id, lo, len(group), ids, slots))
            continue
        first = min(m[0] for m in group)
        length = max(m[0] for m in group) - first + 1
        ids = [None] * length
        buffer = bytearray(length * KEY_SIZE)
        for index, record_id, at in group:
            slot = index - first
            ids[slot] = record_id
            buffer[slot * KEY_SIZE : (slot + 1) * KEY_SIZE] = keys[
                at * KEY_SIZE : (at + 1) * KEY_SIZE
            ]
        runs.append(_wrap_run(master, master_id, first, length, ids, bytes(buffer)))
    return runs


def seal_batch(batch: native.Batch, first: int, at_rest: AtRest) -> native.Batch | None:
    """``batch``, the leaves from ``first`` on, with the bodies of the kinds ``at_rest`` seals
    replaced by their sealed form (as :func:`seal_items` seals) and the key runs to store in
    :attr:`native.Batch.keys`; ``None`` when it holds no such record.

    The sealed bodies go after the batch's text and their :data:`native.BATCH_META` offsets
    point there; ids, kinds, actors and the plain bodies stay where they are, and the plain
    offsets are kept in :attr:`native.Batch.plain_meta` (so a writer that finds the batch at
    another leaf unseals it for nothing). Any bundles packed earlier are dropped. With the
    extension :mod:`chainaudit._seal` the whole batch is sealed in one call.

    Raises:
        KeyringError: the sealed batch would pass 4 GiB (ingest smaller chunks).
    """
    kinds = tuple(kind.encode("ascii", "replace") for kind in sorted(at_rest.kinds))
    text = batch.bodies
    if _seal is not None:
        keys = os.urandom(KEY_SIZE * batch.size)
        nonces = os.urandom(NONCE_SIZE * batch.size)
        try:
            tail, meta, picked = _seal.seal_columns(
                text, batch.meta, kinds, first, keys, nonces, MAGIC
            )
        except ValueError as exc:
            raise KeyringError(str(exc)) from exc
        chosen = array.array("I", picked)
        if not chosen:
            return None
        ids = json.loads(batch.ids_json)
        runs = _runs(at_rest.master, [(first + i, ids[i], i) for i in chosen], keys)
    else:
        metas = list(native.BATCH_META.iter_unpack(batch.meta))
        positions = [i for i, m in enumerate(metas) if text[m[4] : m[4] + m[5]] in kinds]
        if not positions:
            return None
        overhead = len(MAGIC) + NONCE_SIZE + TAG_SIZE
        if len(text) + sum(metas[i][1] + overhead for i in positions) >= 1 << 32:
            raise KeyringError("a bulk batch over 4 GiB cannot be sealed: ingest smaller chunks")
        sealed, runs = seal_items(
            at_rest.master,
            [
                (
                    first + i,
                    text[metas[i][2] : metas[i][2] + metas[i][3]].decode("ascii"),
                    text[metas[i][0] : metas[i][0] + metas[i][1]],
                )
                for i in positions
            ],
        )
        writable = bytearray(batch.meta)
        at = len(text)
        for i, body in zip(positions, sealed, strict=True):
            native.BATCH_META.pack_into(
                writable, i * native.BATCH_META.size, at, len(body), *metas[i][2:]
            )
            at += len(body)
        tail, meta = b"".join(sealed), bytes(writable)
    return batch._replace(
        bodies=text + tail,
        meta=meta,
        first=first,
        packed=(),
        plain_meta=batch.meta,
        keys=tuple(runs),
    )


def drop_packed(batch: native.Batch) -> native.Batch:
    """``batch``, sealed by :func:`seal_batch` and then packed (``bundles.pack``), without
    the sealed bodies its packed bundles already hold: their entries in :attr:`meta
    <native.Batch.meta>` become empty bodies (the writer uses the packed bundles for those
    records, and :meth:`native.Batch.plain` still gives every plain body). So a batch
    crosses from the parsing process to the writer with each sealed body once. Unchanged
    without the extension :mod:`chainaudit._seal`, or when nothing is sealed or packed.

    Raises:
        KeyringError: the batch is not laid out as :func:`seal_batch` leaves it.
    """
    if _seal is None or not batch.plain_meta or not batch.packed:
        return batch
    head = -batch.first % bundles.WIDTH
    stop = head + len(batch.packed) * bundles.WIDTH
    try:
        text, meta = _seal.drop_sealed(batch.bodies, batch.meta, head, stop)
    except ValueError as exc:
        raise KeyringError(f"cannot trim a sealed batch: {exc}") from exc
    return batch._replace(bodies=text, meta=meta)


@dataclass(frozen=True, slots=True)
class AtRest:
    """How a log encrypts at rest: the master key, and the kinds whose bodies are sealed.

    ``kinds`` may be empty: the master key then only opens bodies sealed earlier.
    """

    master: bytes
    kinds: frozenset[str] = frozenset()
    keys_file: Path | None = None
    """Where the keyring lives; ``None``: ``keys.sqlite`` beside the log."""

    def __post_init__(self) -> None:
        if len(self.master) != KEY_SIZE:
            raise ConfigError("the master key must be 32 bytes")

    def __repr__(self) -> str:  # never print the key
        return (
            f"AtRest(master=<{master_key_id(self.master)}>, kinds={sorted(self.kinds)}, "
            f"keys_file={self.keys_file})"
        )


class Keyring:
    """The data keys of one data directory, used with one master key: in the SQLite file
    ``path`` (``keys.sqlite``, or the configured ``keys_file``), or, when ``database_url`` is
    given, in the tables ``key_runs`` and ``data_keys`` of that PostgreSQL database (the
    log's, beside its tables).

    One object serves one thread at a time (like :class:`chainaudit.log.store.Log`, which owns
    one). Every write is its own durable transaction, serialised with the other keyrings of
    the same database but not with the log's writer (a log append stores its keys while it
    holds that lock). On SQLite (``synchronous=FULL``) ``secure_delete`` is on, so a
    destroyed or rewrapped key leaves no copy in freed pages, and the WAL is truncated after.
    On PostgreSQL a destroyed key leaves no live row, and ``VACUUM`` (run after each destroy
    and rotation, :func:`vacuum_keys`) removes the dead row versions that no open snapshot
    still sees and makes their space reusable; it does not overwrite their bytes, which may
    stay in free page space, in the server's WAL (until it is recycled) and in WAL archives
    and replicas, always encrypted under the master key (see ``docs/privacy.md``: rotating
    the master key and destroying the old one makes every such copy unreadable).
    Raises :class:`KeyringError` when the keys cannot be opened.
    """

    def __init__(self, path: Path | str, master: bytes, *, database_url: str | None = None) -> None:
        self.path = Path(path)
        self.database_url = database_url
        self._where = "the log's PostgreSQL database" if database_url else str(self.path)
        self._master = master
        self._master_id = master_key_id(master)
        self._cached: tuple[int, bytes, bytes] | None = None
        """The last run opened: its first leaf, its stored ``wrapped`` and its slots."""
        try:
            self._db = database.connect(
                database_url or self.path, pragmas="PRAGMA secure_delete=ON;"
            )
        except database.DatabaseError as exc:
            raise KeyringError(f"cannot open the data keys in {self._where}: {exc}") from exc
        try:
            if self._db.engine == "sqlite":
                self._db.executescript(_SCHEMA)
            elif not self._db.has_table("key_runs"):
                with self._db.write_as(_LOCK):  # several processes may open at once
                    self._db.executescript(database.adapt_schema(_SCHEMA, self._db.engine))
        except database.DatabaseError as exc:
            self._db.close()
            raise KeyringError(f"cannot open the data keys in {self._where}: {exc}") from exc

    @property
    def engine(self) -> database.Engine:
        """Where the keys are: ``sqlite`` or ``postgresql``."""
        return self._db.engine

    def close(self) -> None:
        self._cached = None
        self._db.close()

    def checkpoint_wal(self) -> bool:
        """Leave no copy of a destroyed key in the store's own files (:func:`vacuum_keys`):
        on SQLite copy the keys file's WAL into it and truncate it, False when a reader kept
        it from completing (a destroyed key may then linger in the WAL until the next one);
        on PostgreSQL ``VACUUM`` the key tables (True).

        Raises:
            KeyringError: the database refuses it.
        """
        try:
            return vacuum_keys(self._db)
        except database.DatabaseError as exc:
            raise KeyringError(f"cannot checkpoint the data keys in {self._where}: {exc}") from exc

    @property
    def master_id(self) -> str:
        """The id of the master key this keyring wraps with (:func:`master_key_id`)."""
        return self._master_id

    def seal(self, items: Sequence[tuple[int, str, bytes]]) -> list[bytes]:
        """Seal each ``(leaf index, record id, canonical body)`` under a new data key
        (:func:`seal_items`) and store the keys (:meth:`store`) before returning the sealed
        bodies, so a log that commits a sealed body always has its key. Raises
        :class:`KeyringError` if the keys cannot be stored.
        """
        sealed, runs = seal_items(self._master, items)
        self.store(runs)
        return sealed

    def store(self, runs: Sequence[KeyRun]) -> None:
        """Commit ``runs`` (:func:`seal_items`) durably, in one transaction.

        Precondition: the runs' leaves are the log's next ones, at or past every committed
        record. Any key row at or past the first of them was left by an append that rolled
        back, and is deleted (so a stale row never shadows a stored one).

        Raises:
            KeyringError: the keys cannot be stored (nothing is changed then).
        """
        if not runs:
            return
        start = min(run.first for run in runs)
        try:
            with self._db.write_as(_LOCK):
                self._db.execute("DELETE FROM key_runs WHERE first >= ?", (start,))
                self._db.execute("DELETE FROM data_keys WHERE idx >= ?", (start,))
                self._db.executemany(_PUT_RUN, runs)
        except database.DatabaseError as exc:
            raise KeyringError(f"cannot store data keys in {self._where}: {exc}") from exc

    def _run_at(self, leaf_index: int) -> tuple[int, int, str, list[str | None], bytes] | None:
        """The stored run holding a slot for ``leaf_index``: first leaf, count, master id, ids
        and ``wrapped``; ``None`` if there is none."""
        row = self._db.execute(
            "SELECT first, length, master_id, ids, wrapped FROM key_runs WHERE first <= ? "
            "ORDER BY first DESC LIMIT 1",
            (leaf_index,),
        ).fetchone()
        if row is None or leaf_index >= row[0] + row[1]:
            return None
        try:
            ids = json.loads(row[3])
        except ValueError as exc:
            raise KeyringError(f"the key row of leaf {leaf_index} is damaged") from exc
        return int(row[0]), int(row[1]), str(row[2]), ids, bytes(row[4])

    def _slots(self, first: int, count: int, master_id: str, wrapped: bytes) -> bytes:
        """The decrypted slots of a run (the last one opened is kept, keyed by its stored
        bytes, so a run rewritten by another process is never served stale)."""
        cached = self._cached
        if cached is not None and cached[0] == first and cached[1] == wrapped:
            return cached[2]
        if master_id != self._master_id:
            raise MasterKeyMismatchError(
                f"the data keys of leaves {first}..{first + count - 1} are wrapped by master "
                f"key {master_id}, but the configured master key is {self._master_id}: "
                "configure the key they were wrapped with, or finish a rotation "
                "(`chainaudit master-key rotate`)"
            )
        keys = _unwrap_run(self._master, first, count, master_id, wrapped)
        self._cached = (first, wrapped, keys)
        return keys

    def open(self, leaf_index: int, record_id: str, sealed: bytes) -> bytes | None:
        """The canonical body of a sealed record, or ``None`` when its data key is gone
        (erased: the content is unrecoverable) or the key stored for its leaf belongs to
        another record id.

        Raises:
            KeyringError: the key was wrapped by another master key, or the key or body is
                damaged (they do not open each other).
        """
        run = self._run_at(leaf_index)
        if run is None:
            key = self._legacy_key(leaf_index, record_id)
        else:
            first, count, master_id, ids, wrapped = run
            if ids[leaf_index - first] != record_id:
                return None
            slot = (leaf_index - first) * KEY_SIZE
            key = self._slots(first, count, master_id, wrapped)[slot : slot + KEY_SIZE]
            if key == _NO_KEY:
                return None
        if key is None:
            return None
        try:
            nonce = sealed[len(MAGIC) : len(MAGIC) + NONCE_SIZE]
            body = sealed[len(MAGIC) + NONCE_SIZE :]
            return AESGCM(key).decrypt(nonce, body, associated_data(record_id, leaf_index))
        except (InvalidTag, ValueError) as exc:
            raise KeyringError(
                f"the sealed body of leaf {leaf_index} does not open with its data key "
                "(a damaged key or body)"
            ) from exc

    def _legacy_key(self, leaf_index: int, record_id: str) -> bytes | None:
        """The data key of ``leaf_index`` from a row of the first format (``data_keys``), or
        ``None``; raises :class:`KeyringError` as :meth:`open` does."""
        row = self._db.execute(
            "SELECT record_id, master_id, wrapped FROM data_keys WHERE idx = ?", (leaf_index,)
        ).fetchone()
        if row is None or row[0] != record_id:
            return None
        if row[1] != self._master_id:
            raise MasterKeyMismatchError(
                f"the data key of leaf {leaf_index} is wrapped by master key {row[1]}, but the "
                f"configured master key is {self._master_id}: configure the key it was "
                "wrapped with, or finish a rotation (`chainaudit master-key rotate`)"
            )
        try:
            return aes_key_unwrap(self._master, bytes(row[2]))
        except (InvalidUnwrap, ValueError) as exc:
            raise KeyringError(f"the data key of leaf {leaf_index} is damaged") from exc

    def has_key(self, leaf_index: int) -> bool:
        """Whether a data key for ``leaf_index`` exists."""
        run = self._run_at(leaf_index)
        if run is not None:
            return run[3][leaf_index - run[0]] is not None
        query = "SELECT 1 FROM data_keys WHERE idx = ?"
        return self._db.execute(query, (leaf_index,)).fetchone() is not None

    def destroy(self, indexes: Iterable[int]) -> int:
        """Destroy the data keys of ``indexes`` for good; returns how many existed.

        Each run holding one is decrypted, its slot zeroed and its id cleared, and the run
        re-encrypted under a fresh nonce (or deleted when no key is left in it); with
        ``secure_delete`` the freed bytes of the old row are zeroed, and the WAL is
        checkpointed and truncated afterwards, so no copy of a destroyed key — not even
        encrypted under the master key — is left in ``keys.sqlite`` or its WAL (copies in
        *backups* of the key file are :mod:`docs/privacy.md`'s matter).

        Raises:
            KeyringError: a run holding one of the keys is under another master key or
                damaged, or the file cannot be written (nothing is changed then).
        """
        wanted = sorted(set(indexes))
        if not wanted:
            return 0
        count = 0
        try:
            with self._db.write_as(_LOCK):
                runs: dict[int, tuple[int, int, str, list[str | None], bytes]] = {}
                for index in wanted:
                    run = self._run_at(index)
                    if run is not None:
                        runs.setdefault(run[0], run)
                for first, run_count, master_id, ids, wrapped in runs.values():
                    keys = bytearray(self._slots(first, run_count, master_id, wrapped))
                    for index in wanted:
                        slot = index - first
                        if 0 <= slot < run_count and ids[slot] is not None:
                            ids[slot] = None
                            keys[slot * KEY_SIZE : (slot + 1) * KEY_SIZE] = _NO_KEY
                            count += 1
                    if all(i is None for i in ids):
                        self._db.execute("DELETE FROM key_runs WHERE first = ?", (first,))
                    else:
                        run_now = _wrap_run(
                            self._master, self._master_id, first, run_count, ids, bytes(keys)
                        )
                        self._db.execute(
                            "UPDATE key_runs SET ids = ?, wrapped = ? WHERE first = ?",
                            (run_now.ids, run_now.wrapped, first),
                        )
                cursor: Any = self._db.execute(
                    f"DELETE FROM data_keys WHERE {self._db.in_list('idx')}",  # noqa: S608
                    (self._db.list_param(wanted),),
                )
                count += max(int(cursor.rowcount), 0)
            self._cached = None
            vacuum_keys(self._db)
        except database.DatabaseError as exc:
            raise KeyringError(f"cannot destroy data keys in {self._where}: {exc}") from exc
        return count

    def rotate(self, new_master: bytes) -> int:
        """Rewrap every data key under ``new_master`` in one transaction; returns how many.

        Keys already under ``new_master`` are left as they are, so an interrupted rotation
        is finished by running it again. Afterwards this keyring uses ``new_master``.

        Raises:
            KeyringError: a key is wrapped by neither this keyring's master key nor the new
                one, or does not unwrap (nothing is changed then).
        """
        if len(new_master) != KEY_SIZE:
            raise ConfigError("the new master key must be 32 bytes")
        new_id = master_key_id(new_master)
        rewrapped = 0
        try:
            with self._db.write_as(_LOCK):
                rewrapped += self._rotate_runs(new_master, new_id)
                rows = self._db.execute("SELECT idx, master_id, wrapped FROM data_keys").fetchall()
                updates: list[tuple[str, bytes, int]] = []
                for index, master_id, wrapped in rows:
                    if master_id == new_id:
                        continue
                    self._refuse_third(master_id, new_id, f"the data key of leaf {index}")
                    try:
                        key = aes_key_unwrap(self._master, bytes(wrapped))
                    except InvalidUnwrap as exc:
                        raise KeyringError(f"the data key of leaf {index} is damaged") from exc
                    updates.append((new_id, aes_key_wrap(new_master, key), index))
                self._db.executemany(
                    "UPDATE data_keys SET master_id = ?, wrapped = ? WHERE idx = ?", updates
                )
                rewrapped += len(updates)
            self._cached = None
            vacuum_keys(self._db)
        except database.DatabaseError as exc:
            raise KeyringError(f"cannot rewrap the data keys in {self._where}: {exc}") from exc
        self._master, self._master_id = new_master, new_id
        return rewrapped

    def _rotate_runs(self, new_master: bytes, new_id: str) -> int:
        """Re-encrypt every key run not yet under ``new_master`` (inside :meth:`rotate`'s
        transaction); returns how many keys they hold."""
        rows = self._db.execute("SELECT first, length, master_id, ids, wrapped FROM key_runs")
        updates: list[tuple[str, bytes, int]] = []
        keys_moved = 0
        for first, count, master_id, ids_text, wrapped in rows.fetchall():
            if master_id == new_id:
                continue
            self._refuse_third(master_id, new_id, f"the data keys of leaves from {first}")
            keys = _unwrap_run(self._master, first, count, master_id, bytes(wrapped))
            ids = json.loads(ids_text)
            run = _wrap_run(new_master, new_id, first, count, ids, keys)
            updates.append((new_id, run.wrapped, first))
            keys_moved += sum(i is not None for i in ids)
        self._db.executemany(
            "UPDATE key_runs SET master_id = ?, wrapped = ? WHERE first = ?", updates
        )
        return keys_moved

    def _refuse_third(self, master_id: str, new_id: str, what: str) -> None:
        """Raise :class:`KeyringError` unless ``master_id`` is this keyring's master key."""
        if master_id != self._master_id:
            raise KeyringError(
                f"{what} is wrapped by master key {master_id}, "
                f"neither the current ({self._master_id}) nor the new one ({new_id})"
            )

    def count(self) -> int:
        """How many data keys exist."""
        with self._db.read():
            in_runs = self._db.execute(_COUNT_IN_RUNS[self._db.engine]).fetchone()[0]
            legacy = self._db.execute("SELECT count(*) FROM data_keys").fetchone()[0]
        return int(in_runs) + int(legacy)


_LOCK: Final = "data_keys"
"""The name of the keyrings' write lock (:meth:`database.Database.write_as`)."""
_PUT_RUN: Final = (
    "INSERT INTO key_runs VALUES (?, ?, ?, ?, ?) ON CONFLICT (first) DO UPDATE SET "
    "length = excluded.length, master_id = excluded.master_id, ids = excluded.ids, "
    "wrapped = excluded.wrapped"
)
_COUNT_IN_RUNS: Final = {
    "sqlite": (
        "SELECT count(*) FROM key_runs, json_each(key_runs.ids) WHERE json_each.type != 'null'"
    ),
    "postgresql": (
        "SELECT count(*) FROM key_runs, jsonb_array_elements(key_runs.ids::jsonb) AS slot "
        "WHERE jsonb_typeof(slot) != 'null'"
    ),
}


def vacuum_keys(db: database.Database) -> bool:
    """Leave no copy of a destroyed or rewrapped key in the store's files, as far as the
    engine can: on SQLite (``secure_delete`` zeroed the freed bytes) checkpoint the WAL into
    the file and truncate it, returning False when a reader kept that from completing; on
    PostgreSQL ``VACUUM`` the key tables (True): the dead row versions no open snapshot still
    sees are removed and their space made reusable, but their bytes are not overwritten (see
    :class:`Keyring`). Precondition: no transaction is open on ``db``; raises
    :class:`database.DatabaseError` when the engine refuses.
    """
    if db.engine == "sqlite":
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return not busy
    if db.has_table("key_runs"):
        db.execute("VACUUM key_runs, data_keys")
    return True


def master_key_from(value: str | None, file: Path | None) -> bytes | None:
    """The master key from a setting's value or a key file (not both), or ``None``.

    Raises:
        ConfigError: both are given, the file cannot be read, or the key is malformed.
    """
    if value is not None and file is not None:
        raise ConfigError("set master_key or master_key_file, not both")
    if file is not None:
        try:
            text = file.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"master key file {file}: cannot read: {exc}") from exc
        return parse_master_key(text, source=f"master key file {file}")
    if value is not None:
        return parse_master_key(value, source="CHAINAUDIT_MASTER_KEY")
    return None
