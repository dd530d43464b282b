"""The durable state of a witness: per log origin, the latest checkpoint it cosigned.

``c2sp.org/tlog-witness`` requires the witness to persist the new checkpoint before it
answers, and to check the old size and persist the new checkpoint atomically (else two
concurrent requests can roll the recorded size back). :meth:`WitnessState.compare_and_swap`
does both in one serialised write transaction (:mod:`chainaudit.log.database`: SQLite's ``BEGIN
IMMEDIATE``, or a PostgreSQL advisory lock): it replaces the record only if it is still the one
the request was checked against. An SQLite file uses WAL with ``synchronous=FULL``, so a
committed record survives a crash or power loss.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from chainaudit.core.errors import WitnessError
from chainaudit.log import database

__all__ = ["Recorded", "WitnessState"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS latest (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL CHECK (size >= 0),
    root BLOB NOT NULL CHECK (length(root) = 32),
    checkpoint TEXT NOT NULL,
    updated INTEGER NOT NULL
)
"""


@dataclass(frozen=True)
class Recorded:
    """The latest cosigned checkpoint of one origin: size, root and the signed note."""

    size: int
    root: bytes
    checkpoint: str


class WitnessState:
    """The witness's state: an SQLite file, or a PostgreSQL database when ``path`` is a
    ``postgresql://`` URL (:mod:`chainaudit.log.database`). Safe to share between threads and
    processes: every call opens its own connection."""

    def __init__(self, path: Path | str) -> None:
        self.location: Path | str = path if database.is_url(path) else Path(path)
        self.path = Path(path) if not database.is_url(path) else None
        """The state file (``None`` when the state is in PostgreSQL)."""
        try:
            with self._connect() as db:
                schema = database.adapt_schema(_SCHEMA, db.engine)
                if db.engine == "sqlite":
                    db.executescript(schema)  # idempotent; SQLite's script commits by itself
                else:
                    with db.write_as("witness_state"):  # two witnesses starting at once
                        db.execute(schema)
        except database.DatabaseError as exc:
            raise WitnessError(f"cannot open the witness state {self._where}: {exc}") from exc

    @property
    def _where(self) -> str:
        return str(self.path) if self.path is not None else "in PostgreSQL"

    @contextmanager
    def _connect(self) -> Iterator[database.Database]:
        db = database.connect(self.location)
        try:
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
        yet), durably, before returning True; False (nothing written) if it changed since.
        The check and the write are one serialised write transaction (SQLite ``BEGIN
        IMMEDIATE``; a PostgreSQL advisory lock), so two requests cannot both pass the check."""
        try:
            with self._connect() as db, db.write_as("witness_state"):
                row = db.execute(
                    "SELECT size, root FROM latest WHERE origin = ?", (origin,)
                ).fetchone()
                current = None if row is None else (int(row[0]), bytes(row[1]))
                wanted = None if expected is None else (expected.size, expected.root)
                if current != wanted:
                    return False
                db.execute(
                    "INSERT INTO latest (origin, size, root, checkpoint, updated) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE SET "
                    "size = excluded.size, root = excluded.root, "
                    "checkpoint = excluded.checkpoint, updated = excluded.updated",
                    (origin, new.size, new.root, new.checkpoint, int(time.time())),
                )
                return True
        except database.DatabaseError as exc:
            raise WitnessError(f"cannot record the witness state {self._where}: {exc}") from exc
