"""Tables derived from the log, kept beside it: in the log's own SQLite file, or in the
log's PostgreSQL database (schema) when it has one.

A derived table set (the risk tables, the record index, ...) follows the log from a cursor of
its own and can always be rebuilt from the records; :class:`DerivedTables` holds what they
share: one connection (:mod:`chainaudit.log.database`), the schema created on open, and a write
transaction under a lock of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, Self

from chainaudit.core.errors import StoreError
from chainaudit.log import database

__all__ = ["DerivedTables"]


class DerivedTables:
    """Tables derived from the log at ``path`` (its SQLite file), or in the PostgreSQL
    database ``database_url`` when given (the log's). Thread-safe.

    ``schema`` is an SQL script run on open (``CREATE TABLE IF NOT EXISTS`` and the cursor's
    first row, in the SQL both engines accept: :func:`database.adapt_schema` adapts it);
    ``what`` names the tables in errors ("the risk tables") and, in lower case with
    underscores, their write lock; ``synchronous`` is the SQLite durability of their commits
    (``NORMAL`` is enough for rows that a crash may lose with their cursor, since the next
    sync redoes them; PostgreSQL commits are always durable).
    Raises :class:`StoreError` when the database cannot be opened or the schema not created.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        what: str,
        schema: str,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        database_url: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.database_url = database_url
        self._what = what
        self._lock_name = "derived_" + "".join(c if c.isalpha() else "_" for c in what.lower())
        self._lock = threading.RLock()
        where = "the PostgreSQL database" if database_url else str(self.path)
        location: str | Path = database_url or (
            ":memory:" if str(path) == ":memory:" else self.path
        )
        try:
            self._db = database.connect(location, pragmas=f"PRAGMA synchronous={synchronous};")
        except database.DatabaseError as exc:
            raise StoreError(f"cannot open {what} in {where}: {exc}") from exc
        try:
            create = database.adapt_schema(schema, self._db.engine)
            if self._db.engine == "sqlite":
                self._db.executescript(create)
            else:  # several processes may open at once: create under the lock
                with self._db.write_as(self._lock_name):
                    self._db.executescript(create)
        except database.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"cannot open {what} in {where}: {exc}") from exc

    @property
    def engine(self) -> database.Engine:
        """Where the tables are: ``sqlite`` or ``postgresql``."""
        return self._db.engine

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[database.Database]:
        """One write transaction (SQLite ``BEGIN IMMEDIATE``; PostgreSQL: under this table
        set's advisory lock), committed at the end of the block and rolled back on any
        exception; :class:`StoreError` if it cannot start or commit."""
        with self._lock:
            try:
                with self._db.write_as(self._lock_name) as db:
                    yield db
            except database.DatabaseError as exc:
                raise StoreError(f"cannot write {self._what}: {exc}") from exc
