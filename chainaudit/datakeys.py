"""Encryption at rest: one data key per record, kept apart from the data, wrapped by a master key.

A record of a kind whose data policy says ``"encrypt": true`` (:mod:`chainaudit.datapolicy`)
is stored in its bundle (:mod:`chainaudit.bundles`) as a *sealed body*::

    MAGIC (5 bytes) || nonce (12 bytes) || AES-256-GCM(data key, nonce, body, aad) || tag

with a fresh random 256-bit data key per record and associated data binding the record id
and leaf index (:func:`associated_data`), so a sealed body moved to another leaf or id does
not open. Canonical JSON never starts with the byte ``0x00``, so :data:`MAGIC` tells a sealed
body from a plain one. The canonical bytes hashed into the tree are the plain ones:
encryption is a storage matter only.

The data keys live in their own SQLite file, ``keys.sqlite`` beside ``log.sqlite`` (table
``data_keys``: leaf index, record id, master key id, wrapped key), each wrapped with AES key
wrap (RFC 3394) under the master key (setting ``master_key`` or ``master_key_file``; never
stored beside the data, never logged). Destroying a record's row (:meth:`Keyring.destroy`,
with ``secure_delete`` on and the WAL truncated) makes its sealed body, in the log and in every
backup of the log, undecryptable: crypto-shredding. :meth:`Keyring.rotate` rewraps every data
key under a new master key in one transaction. ``docs/privacy.md`` says where keys live, how
they are backed up and how long an erased key can still exist.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from chainaudit.errors import ChainauditError, ConfigError

__all__ = [
    "KEYS_DB",
    "MAGIC",
    "AtRest",
    "Keyring",
    "KeyringError",
    "associated_data",
    "is_sealed",
    "master_key_id",
    "parse_master_key",
]

KEYS_DB: Final = "keys.sqlite"
"""The data-key file, in the data directory beside ``log.sqlite``."""
MAGIC: Final = b"\x00cae1"
"""The first bytes of a sealed body (canonical JSON never starts with ``0x00``)."""
NONCE_SIZE: Final = 12
KEY_SIZE: Final = 32

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS data_keys (
    idx INTEGER PRIMARY KEY,
    record_id TEXT NOT NULL,
    master_id TEXT NOT NULL,
    wrapped BLOB NOT NULL
);
"""


class KeyringError(ChainauditError):
    """A data key cannot be used: wrong or missing master key, or a damaged key row."""


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


@dataclass(frozen=True, slots=True)
class AtRest:
    """How a log encrypts at rest: the master key, and the kinds whose bodies are sealed.

    ``kinds`` may be empty: the master key then only opens bodies sealed earlier.
    """

    master: bytes
    kinds: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if len(self.master) != KEY_SIZE:
            raise ConfigError("the master key must be 32 bytes")

    def __repr__(self) -> str:  # never print the key
        return f"AtRest(master=<{master_key_id(self.master)}>, kinds={sorted(self.kinds)})"


class Keyring:
    """The data keys of one data directory (``keys.sqlite``), used with one master key.

    One object serves one thread at a time (like :class:`chainaudit.store.Log`, which owns
    one). Every write is its own durable transaction (``synchronous=FULL``) with
    ``secure_delete`` on, so a destroyed or rewrapped key leaves no copy in freed pages.
    """

    def __init__(self, path: Path | str, master: bytes) -> None:
        self.path = Path(path)
        self._master = master
        self._master_id = master_key_id(master)
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, timeout=30.0, check_same_thread=False
            )
            self._db.executescript(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA secure_delete=ON;"
            )
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise KeyringError(f"cannot open the data keys at {self.path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    @property
    def master_id(self) -> str:
        """The id of the master key this keyring wraps with (:func:`master_key_id`)."""
        return self._master_id

    def seal(self, items: Sequence[tuple[int, str, bytes]]) -> list[bytes]:
        """Seal each ``(leaf index, record id, canonical body)`` under a new data key.

        The wrapped keys are committed (one transaction, replacing any row left at those
        indexes by an append that rolled back) before the sealed bodies are returned, so a
        log that commits a sealed body always has its key. Raises :class:`KeyringError` if
        the keys cannot be stored.
        """
        rows: list[tuple[int, str, str, bytes]] = []
        sealed: list[bytes] = []
        step = KEY_SIZE + NONCE_SIZE
        randomness = os.urandom(step * len(items))  # one system call for the whole batch
        master, master_id = self._master, self._master_id
        for at, (index, record_id, body) in enumerate(items):
            key = randomness[at * step : at * step + KEY_SIZE]
            nonce = randomness[at * step + KEY_SIZE : (at + 1) * step]
            aad = f"chainaudit-record-v1\x00{index}\x00{record_id}".encode()
            sealed.append(MAGIC + nonce + AESGCM(key).encrypt(nonce, body, aad))
            rows.append((index, record_id, master_id, aes_key_wrap(master, key)))
        try:
            with self._transaction():
                self._db.executemany("INSERT OR REPLACE INTO data_keys VALUES (?, ?, ?, ?)", rows)
        except sqlite3.Error as exc:
            raise KeyringError(f"cannot store data keys in {self.path}: {exc}") from exc
        return sealed

    def open(self, leaf_index: int, record_id: str, sealed: bytes) -> bytes | None:
        """The canonical body of a sealed record, or ``None`` when its data key is gone
        (erased: the content is unrecoverable).

        Raises:
            KeyringError: the key was wrapped by another master key, or the key or body is
                damaged (they do not open each other).
        """
        row = self._db.execute(
            "SELECT record_id, master_id, wrapped FROM data_keys WHERE idx = ?", (leaf_index,)
        ).fetchone()
        if row is None or row[0] != record_id:
            return None
        if row[1] != self._master_id:
            raise KeyringError(
                f"the data key of leaf {leaf_index} is wrapped by master key {row[1]}, but the "
                f"configured master key is {self._master_id}: configure the key it was "
                "wrapped with, or finish a rotation (`chainaudit master-key rotate`)"
            )
        try:
            key = aes_key_unwrap(self._master, bytes(row[2]))
            nonce = sealed[len(MAGIC) : len(MAGIC) + NONCE_SIZE]
            body = sealed[len(MAGIC) + NONCE_SIZE :]
            return AESGCM(key).decrypt(nonce, body, associated_data(record_id, leaf_index))
        except (InvalidUnwrap, InvalidTag, ValueError) as exc:
            raise KeyringError(
                f"the sealed body of leaf {leaf_index} does not open with its data key "
                "(a damaged key or body)"
            ) from exc

    def has_key(self, leaf_index: int) -> bool:
        """Whether a data key for ``leaf_index`` exists."""
        query = "SELECT 1 FROM data_keys WHERE idx = ?"
        return self._db.execute(query, (leaf_index,)).fetchone() is not None

    def destroy(self, indexes: Iterable[int]) -> int:
        """Delete the data keys of ``indexes`` for good; returns how many existed.

        With ``secure_delete`` the freed bytes are zeroed, and the WAL is checkpointed and
        truncated afterwards, so no copy of a destroyed key is left in ``keys.sqlite`` or
        its WAL (copies in *backups* of the key file are :mod:`docs/privacy.md`'s matter).
        """
        wanted = sorted(set(indexes))
        if not wanted:
            return 0
        try:
            with self._transaction():
                cursor = self._db.executemany(
                    "DELETE FROM data_keys WHERE idx = ?", [(i,) for i in wanted]
                )
                count = cursor.rowcount
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            raise KeyringError(f"cannot destroy data keys in {self.path}: {exc}") from exc
        return int(count)

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
            with self._transaction():
                rows = self._db.execute("SELECT idx, master_id, wrapped FROM data_keys").fetchall()
                updates: list[tuple[str, bytes, int]] = []
                for index, master_id, wrapped in rows:
                    if master_id == new_id:
                        continue
                    if master_id != self._master_id:
                        raise KeyringError(
                            f"the data key of leaf {index} is wrapped by master key {master_id}, "
                            f"neither the current ({self._master_id}) nor the new one ({new_id})"
                        )
                    try:
                        key = aes_key_unwrap(self._master, bytes(wrapped))
                    except InvalidUnwrap as exc:
                        raise KeyringError(f"the data key of leaf {index} is damaged") from exc
                    updates.append((new_id, aes_key_wrap(new_master, key), index))
                self._db.executemany(
                    "UPDATE data_keys SET master_id = ?, wrapped = ? WHERE idx = ?", updates
                )
                rewrapped = len(updates)
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            raise KeyringError(f"cannot rewrap the data keys in {self.path}: {exc}") from exc
        self._master, self._master_id = new_master, new_id
        return rewrapped

    def count(self) -> int:
        """How many data keys exist."""
        return int(self._db.execute("SELECT count(*) FROM data_keys").fetchone()[0])

    def _transaction(self) -> _Tx:
        return _Tx(self._db)


class _Tx:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


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
