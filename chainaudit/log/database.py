"""The storage boundary: one small connection API over SQLite and PostgreSQL.

:func:`connect` opens a database from an SQLite file path or a ``postgresql://`` URL and
returns a :class:`Database`, whose callers write SQL in the subset both engines accept, with
``?`` placeholders (translated to psycopg's ``%s`` here, in :func:`to_pyformat` and nowhere
else), ``INSERT ... ON CONFLICT DO NOTHING`` / ``DO UPDATE SET v = excluded.v`` instead of
SQLite's ``INSERT OR IGNORE`` / ``OR REPLACE``, and :meth:`Database.in_list` for "one of these
values". Schema text is written once for SQLite and adapted by :func:`adapt_schema`.

Writers are serialised (:meth:`Database.write`): SQLite's ``BEGIN IMMEDIATE`` (one writer per
file); on PostgreSQL a transaction that first takes a transaction-scoped advisory lock keyed
by the schema the connection writes to (one writer per schema, across every process and node),
so a writer that reads the state it extends (a log's size) sees every earlier commit.

Every store of the package can be moved onto this module; today :mod:`chainaudit.log.store` (the
log) is, and so are the stores that follow the log into its database: the API keys
(:mod:`chainaudit.service.keys`), the derived tables (:mod:`chainaudit.log.derived`: the record
index, the risk tables) and the data keys (:mod:`chainaudit.log.datakeys`). Those write with
:meth:`Database.write_as` (a lock of their own: a log append stores its data keys while it
holds the log's writer lock), and the audits read with :func:`connect_reader`. The anchor
book, the escrow index and the leader lease (:mod:`chainaudit.service.anchoring`,
:mod:`chainaudit.service.indexer`, :mod:`chainaudit.service.leader`) follow the log too: their
writes check the leader's fencing token in their own transaction
(:meth:`chainaudit.service.leader.Fence.check`).
"""

from __future__ import annotations

import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from chainaudit.core.errors import StoreError

__all__ = [
    "Database",
    "DatabaseError",
    "Engine",
    "IntegrityError",
    "Rows",
    "adapt_schema",
    "connect",
    "connect_reader",
    "is_url",
    "to_pyformat",
]

Engine = Literal["sqlite", "postgresql"]
WRITER_LOCK_CLASS: Final = 0x63_61_6C_67  # "calg": the advisory lock class of the writer lock
"""The first key of the PostgreSQL writer lock; the second is the schema's ``hashtext``."""


class Rows(Protocol):
    """What :meth:`Database.execute` returns: a DB-API cursor with its rows."""

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def fetchmany(self, size: int = ...) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class DatabaseError(StoreError):
    """The database refused an operation (the engine's message is included)."""


class IntegrityError(DatabaseError):
    """A constraint (a primary key, a unique index) refused a write."""


def is_url(location: str | Path) -> bool:
    """Whether ``location`` names a PostgreSQL database rather than an SQLite file."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def to_pyformat(sql: str) -> str:
    """``sql`` with its ``?`` placeholders as psycopg's ``%s`` and its literal ``%`` doubled;
    a ``?`` or ``%`` inside a quoted literal or identifier is kept as it is written.

    Raises :class:`ValueError` for an unterminated quote.
    """
    out: list[str] = []
    quote: str | None = None
    for char in sql:
        if quote is not None:
            out.append("%%" if char == "%" else char)
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
            out.append(char)
        elif char == "?":
            out.append("%s")
        elif char == "%":
            out.append("%%")
        else:
            out.append(char)
    if quote is not None:
        raise ValueError(f"unterminated {quote} in SQL: {sql[:80]!r}")
    return "".join(out)


_TYPES: Final = (
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\)\s*WITHOUT ROWID"), ")"),
    (re.compile(r"\bTEXT\b"), 'TEXT COLLATE "C"'),  # SQLite's BINARY order: byte order
)


def adapt_schema(schema: str, engine: Engine) -> str:
    """``schema`` (``CREATE TABLE`` / ``CREATE INDEX`` text written for SQLite) for
    ``engine``: on PostgreSQL ``BLOB`` is ``BYTEA``, ``INTEGER`` is ``BIGINT``, ``TEXT``
    compares byte by byte as in SQLite (``COLLATE "C"``) and ``WITHOUT ROWID`` goes.
    ``PRAGMA`` lines must not be in it (:func:`connect` takes SQLite's)."""
    if engine == "sqlite":
        return schema
    if "PRAGMA" in schema.upper():
        raise ValueError("schema text must not hold PRAGMAs: they are SQLite's alone")
    for pattern, replacement in _TYPES:
        schema = pattern.sub(replacement, schema)
    return schema


class Database(ABC):
    """One connection to an SQLite file or a PostgreSQL database (see :func:`connect`).

    One object serves one thread at a time. Outside :meth:`write` / :meth:`read` every
    statement commits on its own (autocommit).
    """

    engine: Engine
    location: str
    """The SQLite file path or the PostgreSQL URL this connection was opened with."""
    Error: tuple[type[Exception], ...]
    """The engine's exception classes (what a caller catches around :meth:`execute`)."""
    trace: Callable[[str], None] | None = None
    """Called with each statement's text before it runs (tests count statements)."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        """Run one statement with ``?`` placeholders; returns its cursor. Raises
        :class:`IntegrityError` when a constraint refuses it, :class:`DatabaseError` for any
        other refusal."""

    @abstractmethod
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per row of ``rows`` (errors as :meth:`execute`)."""

    @abstractmethod
    def executescript(self, script: str) -> None:
        """Run several ``;``-separated statements with no parameters (schema text, adapted
        by :func:`adapt_schema` first)."""

    def stream(self, sql: str, params: Sequence[Any] = ()) -> Generator[Any, None, None]:
        """The rows of a query that may be large, without holding them all in memory (on
        PostgreSQL a server-side cursor inside :meth:`read` or :meth:`write`); close the
        generator when leaving it before its end."""
        yield from self.execute(sql, params)

    @abstractmethod
    def in_list(self, column: str) -> str:
        """The condition "``column`` is one of the values of the one parameter", whose
        value :meth:`list_param` gives."""

    @abstractmethod
    def list_param(self, values: Sequence[Any]) -> Any:
        """The parameter of :meth:`in_list` for ``values``."""

    @abstractmethod
    def has_table(self, name: str) -> bool:
        """Whether the database (on PostgreSQL: the connection's schema) has table ``name``."""

    @property
    @abstractmethod
    def in_transaction(self) -> bool:
        """Whether a transaction is open on this connection."""

    @abstractmethod
    def begin_write(self) -> None:
        """Start a write transaction (see :meth:`write`); end it with :meth:`commit` or
        :meth:`rollback`. Waits for the writer before it; raises :class:`DatabaseError`."""

    @abstractmethod
    def begin_read(self) -> None:
        """Start a read-only snapshot transaction (see :meth:`read`)."""

    def commit(self) -> None:
        """Commit the open transaction; raises :class:`DatabaseError` if it cannot be (on
        PostgreSQL also when a statement of it failed: it is rolled back then)."""
        self.execute("COMMIT")

    @contextmanager
    def write(self) -> Iterator[Database]:
        """A write transaction, serialised with every other writer of the same database
        (schema): committed at the end of the block, rolled back (and the exception
        re-raised) if it raises. Raises :class:`DatabaseError` if it cannot start."""
        self.begin_write()
        try:
            yield self
            self.commit()
        except BaseException:
            self.rollback()
            raise

    @contextmanager
    def write_as(self, name: str) -> Iterator[Database]:
        """A write transaction serialised only with the other ``write_as(name)`` blocks of
        the same database (schema), not with :meth:`write` (the log's writer): SQLite's
        ``BEGIN IMMEDIATE`` (one writer per file anyway); on PostgreSQL a transaction that
        first takes an advisory lock keyed by the schema and ``name``. For stores beside the
        log (keys, derived tables), so that one may write while a log append holds the
        writer lock on another connection. Commits at the end of the block, rolls back (and
        re-raises) if it raises; raises :class:`DatabaseError` if it cannot start."""
        self.begin_named(name)
        try:
            yield self
            self.commit()
        except BaseException:
            self.rollback()
            raise

    def begin_named(self, name: str) -> None:
        """Start a write transaction serialised by lock ``name`` (see :meth:`write_as`)."""
        self.begin_write()

    @abstractmethod
    def tables(self, prefix: str) -> list[str]:
        """The names of the tables (on PostgreSQL: of the connection's schema) that start
        with ``prefix`` (taken literally), sorted."""

    @contextmanager
    def read(self) -> Iterator[Database]:
        """A read-only snapshot: every query in the block sees the database as of one moment
        (SQLite: one WAL snapshot; PostgreSQL: ``REPEATABLE READ``). Nested in an open
        transaction it uses that one."""
        if self.in_transaction:
            yield self
            return
        self.begin_read()
        try:
            yield self
        finally:
            self.rollback()

    def rollback(self) -> None:
        """Roll back the open transaction, if any."""
        if self.in_transaction:
            self.execute("ROLLBACK")

    @abstractmethod
    def close(self) -> None:
        """Close the connection (an open transaction is rolled back)."""


class SqliteDatabase(Database):
    """An SQLite file in WAL mode, ``synchronous=FULL`` (see :func:`connect`)."""

    engine: Engine = "sqlite"

    def __init__(self, path: Path | str, *, pragmas: str = "") -> None:
        self.location = str(path)
        self.Error = (sqlite3.Error,)
        try:
            self.raw = sqlite3.connect(
                path, isolation_level=None, timeout=30.0, check_same_thread=False
            )
            self.raw.executescript(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
                + pragmas
            )
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open the database at {path}: {exc}") from exc

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        if self.trace is not None:
            self.trace(sql)
        try:
            return self.raw.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc
        except sqlite3.Error as exc:
            raise DatabaseError(str(exc)) from exc

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if self.trace is not None:
            self.trace(sql)
        try:
            self.raw.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc
        except sqlite3.Error as exc:
            raise DatabaseError(str(exc)) from exc

    def executescript(self, script: str) -> None:
        try:
            self.raw.executescript(script)
        except sqlite3.Error as exc:
            raise DatabaseError(str(exc)) from exc

    def in_list(self, column: str) -> str:
        return f"{column} IN (SELECT value FROM json_each(?))"  # noqa: S608 - a column name

    def list_param(self, values: Sequence[Any]) -> Any:
        import json  # noqa: PLC0415

        return json.dumps(list(values))

    def has_table(self, name: str) -> bool:
        query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return self.execute(query, (name,)).fetchone() is not None

    def tables(self, prefix: str) -> list[str]:
        query = "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, ?) = ?"
        return sorted(str(n) for (n,) in self.execute(query, (len(prefix), prefix)))

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    def begin_write(self) -> None:
        self.execute("BEGIN IMMEDIATE")

    def begin_read(self) -> None:
        self.execute("BEGIN")  # deferred: the first read pins the snapshot

    def close(self) -> None:
        self.raw.close()


class PostgresDatabase(Database):
    """A PostgreSQL database through psycopg 3, autocommit outside transactions."""

    engine: Engine = "postgresql"

    def __init__(self, url: str) -> None:
        import psycopg  # noqa: PLC0415 - only a PostgreSQL deployment needs it

        self.location = url
        self._psycopg = psycopg
        self.Error = (psycopg.Error,)
        self._sql: dict[str, str] = {}
        self._cursors = 0
        try:
            self.raw = psycopg.connect(url, autocommit=True, connect_timeout=30)
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot connect to the database: {_redacted(exc)}") from exc

    def _translate(self, sql: str) -> str:
        found = self._sql.get(sql)
        if found is None:
            found = self._sql[sql] = to_pyformat(sql)
        return found

    def _raise(self, exc: Exception) -> None:
        if isinstance(exc, self._psycopg.errors.IntegrityError):
            raise IntegrityError(str(exc)) from exc
        raise DatabaseError(str(exc)) from exc

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        if self.trace is not None:
            self.trace(sql)
        try:
            if params:
                return self.raw.execute(self._translate(sql), params)
            return self.raw.execute(sql.encode())
        except self._psycopg.Error as exc:
            self._raise(exc)
            raise  # unreachable

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        if self.trace is not None:
            self.trace(sql)
        try:
            with self.raw.cursor() as cursor:
                cursor.executemany(self._translate(sql), rows)
        except self._psycopg.Error as exc:
            self._raise(exc)

    def executescript(self, script: str) -> None:
        try:
            self.raw.execute(script.encode())
        except self._psycopg.Error as exc:
            self._raise(exc)

    def stream(self, sql: str, params: Sequence[Any] = ()) -> Generator[Any, None, None]:
        if not self.in_transaction:
            yield from self.execute(sql, params)
            return
        self._cursors += 1
        cursor = self.raw.cursor(name=f"stream_{self._cursors}")
        cursor.itersize = 256
        try:
            try:
                cursor.execute(self._translate(sql) if params else sql, params or None)
            except self._psycopg.Error as exc:
                self._raise(exc)
            yield from cursor
        finally:
            if self.in_transaction and not self.raw.closed:
                cursor.close()

    def commit(self) -> None:
        if self.raw.info.transaction_status == self._psycopg.pq.TransactionStatus.INERROR:
            self.rollback()
            raise DatabaseError("the transaction was rolled back: one of its statements failed")
        self.execute("COMMIT")

    def in_list(self, column: str) -> str:
        return f"{column} = ANY(?)"

    def list_param(self, values: Sequence[Any]) -> Any:
        return list(values)

    def has_table(self, name: str) -> bool:
        return self.execute("SELECT to_regclass(?) IS NOT NULL", (name,)).fetchone()[0] is True

    def tables(self, prefix: str) -> list[str]:
        query = (
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            "current_schema() AND table_type = 'BASE TABLE' AND left(table_name, ?) = ?"
        )
        return sorted(str(n) for (n,) in self.execute(query, (len(prefix), prefix)))

    def begin_named(self, name: str) -> None:
        if not _LOCK_NAME.fullmatch(name):
            raise ValueError(f"a lock name is lower-case letters and underscores: {name!r}")
        try:  # one round trip: the transaction and its lock
            self.execute(_BEGIN_NAMED.format(name=name))
        except BaseException:
            self.rollback()
            raise

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != self._psycopg.pq.TransactionStatus.IDLE

    def begin_write(self) -> None:
        try:  # one round trip: the transaction and its lock
            self.execute(_BEGIN_WRITE)
        except BaseException:
            self.rollback()
            raise

    def begin_read(self) -> None:
        self.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def close(self) -> None:
        self.raw.close()


_BEGIN_WRITE: Final = (
    f"BEGIN; SELECT pg_advisory_xact_lock({WRITER_LOCK_CLASS}, hashtext(current_schema()))"
)


_BEGIN_NAMED: Final = (
    f"BEGIN; SELECT pg_advisory_xact_lock({WRITER_LOCK_CLASS + 1}, "
    "hashtext(current_schema() || ':{name}'))"
)
_LOCK_NAME: Final = re.compile(r"[a-z_]{1,40}")


class ReadOnlySqliteDatabase(SqliteDatabase):
    """An existing SQLite file opened read-only (``mode=ro``): no PRAGMA, no file created."""

    def __init__(self, path: Path | str) -> None:
        self.location = str(path)
        self.Error = (sqlite3.Error,)
        try:
            self.raw = sqlite3.connect(
                f"{Path(path).resolve().as_uri()}?mode=ro",
                uri=True,
                isolation_level=None,
                timeout=30.0,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open the database at {path}: {exc}") from exc


def connect_reader(location: str | Path) -> Database:
    """Open the database at ``location`` for reading only: a ``postgresql://`` URL (a plain
    connection; read inside :meth:`Database.read`), else an existing SQLite file opened with
    ``mode=ro`` (never created, no PRAGMA written). Raises :class:`DatabaseError` as
    :func:`connect` does."""
    if is_url(location):
        return PostgresDatabase(str(location))
    return ReadOnlySqliteDatabase(location)


def _redacted(exc: Exception) -> str:
    """An engine's message with any password of a connection string left out."""
    return re.sub(r"password=\S+", "password=***", str(exc))


def connect(location: str | Path, *, pragmas: str = "") -> Database:
    """Open the database at ``location``: a ``postgresql://`` URL, else an SQLite file path
    (created if missing; ``pragmas`` are extra ``PRAGMA ...;`` statements for it).

    Raises :class:`DatabaseError` when it cannot be opened or reached (a URL's password is
    never in the message).
    """
    if is_url(location):
        return PostgresDatabase(str(location))
    return SqliteDatabase(location, pragmas=pragmas)
