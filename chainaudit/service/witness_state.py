"""The durable state of a witness: per log origin, the latest checkpoint it cosigned.

``c2sp.org/tlog-witness`` requires the witness to persist the new checkpoint before it
answers, and to check the old size and persist the new checkpoint atomically (else two
concurrent requests can roll the recorded size back). :meth:`WitnessState.compare_and_swap`
does both in one SQLite ``BEGIN IMMEDIATE`` transaction: it replaces the record only if it is
still the one the request was checked against. The file uses WAL with ``synchronous=FULL``,
so a committed record survives a crash or power loss.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from chainaudit.core.errors import WitnessError

__all__ = ["Recorded", "WitnessState"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS latest (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL CHECK (size >= 0),
    root BLOB NOT NULL CHECK (length(root) = 32),
    checkpoint TEXT NOT NULL,
    updated INTEGER NOT NULL
) STRICT
"""


@dataclass(frozen=True)
class Recorded:
    """The latest cosigned checkpoint of one origin: size, root and the signed note."""

    size: int
    root: bytes
    checkpoint: str


class WitnessState:
    """The witness's state file (SQLite). Safe to share between threads and processes:
    every call opens its own connection."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            with self._connect() as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise WitnessError(f"cannot open the witness state {self.path}: {exc}") from exc

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=FULL")
            yield db
        finally:
            db.close()

    def get(self, origin: str) -> Recorded | None:
        """The latest checkpoint cosigned for ``origin``, None if never."""
        with self._connect() as db:
            row = db.execute(
                "SELECT size, root, checkpoint FROM latest WHERE origin = ?", (origin,)
            ).fetchone()
        return None if row is None else Recorded(int(row[0]), bytes(row[1]), str(row[2]))

    def origins(self) -> dict[str, Recorded]:
        """Every origin's latest cosigned checkpoint."""
        with self._connect() as db:
            rows = db.execute("SELECT origin, size, root, checkpoint FROM latest").fetchall()
        return {str(r[0]): Recorded(int(r[1]), bytes(r[2]), str(r[3])) for r in rows}

    def compare_and_swap(self, origin: str, expected: Recorded | None, new: Recorded) -> bool:
        """Record ``new`` for ``origin`` if its record is still ``expected`` (None: no record
        yet), durably, before returning True; False (nothing written) if it changed since."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT size, root FROM latest WHERE origin = ?", (origin,)
                ).fetchone()
                current = None if row is None else (int(row[0]), bytes(row[1]))
                wanted = None if expected is None else (expected.size, expected.root)
                if current != wanted:
                    db.execute("ROLLBACK")
                    return False
                db.execute(
                    "INSERT INTO latest (origin, size, root, checkpoint, updated) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE SET "
                    "size = excluded.size, root = excluded.root, "
                    "checkpoint = excluded.checkpoint, updated = excluded.updated",
                    (origin, new.size, new.root, new.checkpoint, int(time.time())),
                )
                db.execute("COMMIT")
                return True
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
