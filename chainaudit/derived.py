"""Tables derived from the log, kept in the log's own SQLite file beside it.

A derived table set (the risk tables, the record index, ...) follows the log from a cursor of
its own and can always be rebuilt from the records; :class:`DerivedTables` holds what they
share: one connection, the schema created on open, and a write transaction under a lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, Self

from chainaudit.errors import StoreError


class DerivedTables:
    """Tables derived from the log at ``path`` (its SQLite file). Thread-safe.

    ``schema`` is an SQL script run on open (``CREATE TABLE IF NOT EXISTS`` and the cursor's
    first row); ``what`` names the tables in errors ("the risk tables"); ``synchronous`` is
    the SQLite durability of their commits (``NORMAL`` is enough for rows that a crash may
    lose with their cursor, since the next sync redoes them).
    Raises :class:`StoreError` when the file cannot be opened or the schema not created.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        what: str,
        schema: str,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
    ) -> None:
        self.path = Path(path)
        self._what = what
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, timeout=30.0, check_same_thread=False
            )
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(schema)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {what} in {self.path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``), committed at the end of the block and
        rolled back on any exception; :class:`StoreError` if the write lock is not had."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write {self._what}: {exc}") from exc
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
