"""One leader for background work: a lease row in the database, with a fencing token.

Several processes serve one log (``chainaudit serve --workers N``), but the work that writes
on the service's behalf or sends transactions (the anchoring service, the escrow indexer,
checkpoint signing, the record index follower) must run in exactly one of them at a time.
They elect it through the database they share:

* **The lease** is one row ``(name, holder, token, expires_ms)`` of ``leader_lease``. A
  process takes it when it is free or expired, and the taking increments ``token``: each
  leadership *term* has its own fencing token, larger than every earlier one. The holder
  renews it every :data:`RENEW_SECONDS` for :data:`LEASE_SECONDS`; a follower tries to take
  it every :data:`FOLLOW_SECONDS`, so a dead leader is replaced within about
  ``LEASE_SECONDS + FOLLOW_SECONDS`` (3.5 s) of its last renewal.
* **Fencing.** Leader work checks, inside the same write transaction as its writes
  (:meth:`Fence.check`), that its term's token is still the current one, and stops with
  :class:`~chainaudit.core.errors.NotLeaderError` when it is not: a leader that stalled past its
  lease (paused, swapped out) and woke up after a takeover can write nothing more. What it
  sent before its last fenced write is the journal the next leader resumes from (the
  anchoring service records a signed transaction before broadcasting it, and a new leader
  re-broadcasts the same bytes; the indexer's outbox is re-appended idempotently).
* **Signals.** A follower that receives a request for the leader (``POST /v1/anchors``)
  leaves it in ``leader_signals`` (:meth:`Lease.signal`); the leader takes it within a
  second.

The interface (:class:`Lease`, :class:`Fence`, :class:`Elector`) is engine-neutral, and so
is its one implementation, :class:`DatabaseLease` over :mod:`chainaudit.log.database`, beside
the log's tables (:func:`open_lease` chooses by the setting ``database_url``): in the log's
SQLite file (:class:`SqliteLease`) or the log's PostgreSQL schema (:class:`PostgresLease`),
so that the fence is checked in the leader work's own write transaction on either engine.

On PostgreSQL it is **the same lease row, not an advisory lock held for the term**. A
session-level advisory lock would tie the term to one connection: a leader whose connection
is cut (a proxy, a failover of the server) loses the lock silently, the fencing token would
still need a row, and a pool cannot hold it. The row needs nothing of the connection, the
expiry is read on the *server's* clock (the one clock every node shares; the nodes' clocks
may differ), and a takeover is an ``UPDATE`` of the row that the fence check's ``SELECT ...
FOR SHARE`` makes wait for any leader transaction in flight, so nothing a deposed leader
commits can land after its successor's term began.

:func:`pause_point` is a **test-only** hook (environment variables
:data:`PAUSE_ENV`/:data:`PAUSE_FILE_ENV`, never set in production): the failover tests stop
the leader at an exact step (after an anchor's signed transaction is recorded, after its
broadcast, in the middle of indexing) and ``kill -9`` it there.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from chainaudit.core.errors import NotLeaderError, StoreError
from chainaudit.log import database

__all__ = [
    "ANCHOR_SIGNAL",
    "PAUSE_ENV",
    "PAUSE_FILE_ENV",
    "DatabaseLease",
    "Elector",
    "Fence",
    "Lease",
    "PostgresLease",
    "SqliteLease",
    "Term",
    "open_lease",
    "pause_point",
]

logger = logging.getLogger(__name__)

LEASE_SECONDS: Final = 3.0
"""How long a lease lasts without renewal."""
RENEW_SECONDS: Final = 1.0
"""How often the leader renews its lease."""
FOLLOW_SECONDS: Final = 0.5
"""How often a follower tries to take the lease."""
BACKGROUND: Final = "background"
"""The name of the lease of the service's background work."""
ANCHOR_SIGNAL: Final = "anchor"
"""The signal asking the leader's anchoring service to anchor now."""

PAUSE_ENV: Final = "CHAINAUDIT_TEST_PAUSE_AT"
"""Test-only: the name of the :func:`pause_point` to stop at."""
PAUSE_FILE_ENV: Final = "CHAINAUDIT_TEST_PAUSE_FILE"
"""Test-only: the marker file the first process to reach the pause point creates."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leader_lease (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    token INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    acquired_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leader_signals (
    name TEXT PRIMARY KEY,
    requested_ms INTEGER NOT NULL
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class Term:
    """One leadership term: who holds lease ``name``, with which token, until when (ms)."""

    name: str
    holder: str
    token: int
    expires_ms: int


@dataclass(frozen=True, slots=True)
class Fence:
    """The fencing token of a term of lease ``name``; leader work checks it before writing."""

    name: str
    token: int

    def check(self, db: database.Database) -> None:
        """Check, inside the caller's open write transaction on the log's database (either
        engine), that this term is still the current one.

        On SQLite the transaction holds the file's writer lock (``BEGIN IMMEDIATE``), so no
        takeover can commit before the caller does. On PostgreSQL the lease row is read
        ``FOR SHARE``: a takeover (an ``UPDATE`` of that row) waits until the caller's
        transaction ends, so what the caller commits was written while its term was current.

        Raises :class:`~chainaudit.core.errors.NotLeaderError` when another process has taken the
        lease since (a larger token), or the lease row is gone; the caller rolls back.
        """
        lock = " FOR SHARE" if db.engine == "postgresql" else ""
        try:
            row = db.execute(
                f"SELECT token, holder FROM leader_lease WHERE name = ?{lock}",  # noqa: S608
                (self.name,),
            ).fetchone()
        except database.DatabaseError as exc:
            raise NotLeaderError(f"cannot read the {self.name} lease: {exc}") from exc
        if row is None or int(row[0]) != self.token:
            current = "none" if row is None else f"token {row[0]} held by {row[1]}"
            raise NotLeaderError(
                f"leadership of {self.name!r} lost: this process's term has token "
                f"{self.token}, the current one is {current}"
            )

    @contextmanager
    def transaction(
        self, db: database.Database, lock: str = "leader_work"
    ) -> Iterator[database.Database]:
        """A write transaction on ``db`` (:meth:`~chainaudit.log.database.Database.write_as`
        ``lock``) that starts with :meth:`check`; committed at the end of the block, rolled
        back on any exception. Raises :class:`StoreError` if it cannot start."""
        with db.write_as(lock):
            self.check(db)
            yield db


class Lease(Protocol):
    """The database side of the election (one implementation per engine)."""

    name: str

    def acquire(self, holder: str, seconds: float) -> Term | None:
        """Take the lease for ``seconds`` with a new token if it is free or expired;
        ``None`` when another holder's lease is still running."""

    def renew(self, term: Term, seconds: float) -> Term | None:
        """Extend ``term`` by ``seconds`` from now; ``None`` when its token is no longer the
        current one (another process took the lease)."""

    def release(self, term: Term) -> None:
        """End ``term`` now (it expires), if it is still the current one."""

    def current(self) -> Term | None:
        """The latest term, expired or not; ``None`` before the first."""

    def signal(self, what: str) -> None:
        """Leave the request ``what`` for the leader."""

    def take_signal(self, what: str) -> bool:
        """Whether the request ``what`` was left; it is consumed."""

    def close(self) -> None:
        """Release the database connection."""


def _changed(cursor: database.Rows) -> int:
    """How many rows the statement of ``cursor`` changed (a DB-API cursor's ``rowcount``)."""
    return max(int(getattr(cursor, "rowcount", 0)), 0)


def _now_ms() -> int:
    return int(time.time() * 1000)


_PG_NOW: Final = "SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint"


class DatabaseLease:
    """:class:`Lease` as the row ``name`` of ``leader_lease`` in the database at
    ``location``: the log's SQLite file or the log's PostgreSQL database (schema), so that
    :class:`Fence` checks run in the leader work's own transactions on either engine.
    Thread-safe.

    Every change is one transaction serialised by the ``leader_lease`` lock
    (:meth:`~chainaudit.log.database.Database.write_as`). Times are SQLite's machine clock,
    which every process sharing the file reads, or **the PostgreSQL server's clock**, the
    one clock of every node sharing the database (the nodes' own clocks may differ).

    Raises :class:`~chainaudit.core.errors.StoreError` when the database cannot be opened; each
    method raises it when the database refuses (busy longer than ``busy_seconds``, or the
    connection was lost: on PostgreSQL the next call opens a new one).
    """

    def __init__(
        self, location: Path | str, name: str = BACKGROUND, *, busy_seconds: float = 2.0
    ) -> None:
        self.name = name
        self.location = location
        self.busy_seconds = busy_seconds
        self._lock = threading.Lock()
        self._where = "the PostgreSQL database" if database.is_url(location) else str(location)
        self._db: database.Database | None = self._open()
        self.engine: database.Engine = self._db.engine
        """Where the lease is: ``sqlite`` or ``postgresql``."""

    def _open(self) -> database.Database:
        """A new connection, the tables created if missing; raises :class:`StoreError`."""
        try:
            db = database.connect(self.location)
        except database.DatabaseError as exc:
            raise StoreError(f"cannot open the leader lease in {self._where}: {exc}") from exc
        try:
            if db.engine == "sqlite":
                db.executescript(_SCHEMA)  # once: it may wait for the other workers
                db.execute(f"PRAGMA busy_timeout = {int(self.busy_seconds * 1000)}")
            else:
                if not db.has_table("leader_lease"):
                    with db.write_as("leader_lease"):  # several may open at once
                        db.executescript(database.adapt_schema(_SCHEMA, "postgresql"))
                db.execute(f"SET lock_timeout = {int(self.busy_seconds * 1000)}")
        except database.DatabaseError as exc:
            db.close()
            raise StoreError(f"cannot open the leader lease in {self._where}: {exc}") from exc
        return db

    @contextmanager
    def _session(self, what: str) -> Iterator[database.Database]:
        """The connection, under the object's lock. A PostgreSQL connection that failed is
        dropped and a new one opened at the next call (a server restart, a cut connection:
        the election goes on); the failure is raised as :class:`StoreError` ``what``."""
        with self._lock:
            if self._db is None:
                self._db = self._open()
            db = self._db
            try:
                yield db
            except database.DatabaseError as exc:
                if db.engine == "postgresql":
                    self._db = None
                    with suppress(Exception):
                        db.close()
                raise StoreError(f"cannot {what} the {self.name} lease: {exc}") from exc

    @staticmethod
    def _now(db: database.Database) -> int:
        """Now in ms by the shared clock (see the class)."""
        if db.engine == "postgresql":
            return int(db.execute(_PG_NOW).fetchone()[0])
        return _now_ms()

    @contextmanager
    def _transaction(self) -> Iterator[database.Database]:
        with self._session("write") as db, db.write_as("leader_lease"):
            yield db

    def acquire(self, holder: str, seconds: float) -> Term | None:
        with self._transaction() as db:
            now = self._now(db)
            row = db.execute(
                "SELECT holder, token, expires_ms FROM leader_lease WHERE name = ?", (self.name,)
            ).fetchone()
            if row is not None and int(row[2]) > now and row[0] != holder:
                return None
            token = 1 if row is None else int(row[1]) + 1
            expires = now + int(seconds * 1000)
            db.execute(
                "INSERT INTO leader_lease VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE "
                "SET holder = excluded.holder, token = excluded.token, "
                "expires_ms = excluded.expires_ms, acquired_ms = excluded.acquired_ms",
                (self.name, holder, token, expires, now),
            )
            return Term(self.name, holder, token, expires)

    def renew(self, term: Term, seconds: float) -> Term | None:
        with self._transaction() as db:
            expires = self._now(db) + int(seconds * 1000)
            done = _changed(
                db.execute(
                    "UPDATE leader_lease SET expires_ms = ? WHERE name = ? AND token = ? "
                    "AND holder = ?",
                    (expires, self.name, term.token, term.holder),
                )
            )
            return Term(self.name, term.holder, term.token, expires) if done else None

    def release(self, term: Term) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE leader_lease SET expires_ms = 0 WHERE name = ? AND token = ?",
                (self.name, term.token),
            )

    def current(self) -> Term | None:
        with self._session("read") as db:
            row = db.execute(
                "SELECT holder, token, expires_ms FROM leader_lease WHERE name = ?", (self.name,)
            ).fetchone()
        return None if row is None else Term(self.name, str(row[0]), int(row[1]), int(row[2]))

    def live(self) -> Term | None:
        """The current term if it has not expired (by the shared clock), else ``None``."""
        term = self.current()
        with self._session("read") as db:
            now = self._now(db)
        return term if term is not None and term.expires_ms > now else None

    def signal(self, what: str) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO leader_signals VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
                "SET requested_ms = excluded.requested_ms",
                (what, self._now(db)),
            )

    def take_signal(self, what: str) -> bool:
        with self._session("read") as db:  # a cheap read first: the leader polls it every second
            found = db.execute("SELECT 1 FROM leader_signals WHERE name = ?", (what,)).fetchone()
        if found is None:
            return False
        with self._transaction() as db:
            return _changed(db.execute("DELETE FROM leader_signals WHERE name = ?", (what,))) > 0

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class SqliteLease(DatabaseLease):
    """:class:`DatabaseLease` in the SQLite file at ``path`` (the log's)."""

    def __init__(self, path: Path, name: str = BACKGROUND, *, busy_seconds: float = 2.0) -> None:
        super().__init__(path, name, busy_seconds=busy_seconds)
        self.path = path


class PostgresLease(DatabaseLease):
    """:class:`DatabaseLease` in the PostgreSQL database (schema) ``url`` (the log's): the
    same lease row as on SQLite, shared by every process of every node."""

    def __init__(self, url: str, name: str = BACKGROUND, *, busy_seconds: float = 2.0) -> None:
        if not database.is_url(url):
            raise ValueError("a PostgreSQL lease needs a postgresql:// URL")
        super().__init__(url, name, busy_seconds=busy_seconds)


def open_lease(
    log_path: Path, *, database_url: str | None = None, name: str = BACKGROUND
) -> DatabaseLease:
    """The lease beside the log: in PostgreSQL ``database_url`` when given (the setting
    ``database_url``), else in the log's SQLite file ``log_path``. Raises
    :class:`~chainaudit.core.errors.StoreError` as :class:`DatabaseLease` does."""
    if database_url:
        return PostgresLease(database_url, name)
    return SqliteLease(log_path, name)


def holder_id() -> str:
    """A holder name unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Elector:
    """Keeps trying to lead through ``lease``: calls ``on_elected(fence)`` when this process
    starts a term and ``on_deposed()`` when it ends (lost, expired, or :meth:`stop`); on each
    leader cycle, ``on_duty()`` (e.g. to take signals). The callbacks run on the elector's
    thread (and on the caller's for the first attempt in :meth:`start`); ``on_deposed``
    must stop every piece of leader work before it returns.
    """

    def __init__(
        self,
        lease: Lease,
        *,
        on_elected: Callable[[Fence], None],
        on_deposed: Callable[[], None],
        on_duty: Callable[[], None] | None = None,
        seconds: float = LEASE_SECONDS,
        renew_every: float = RENEW_SECONDS,
        follow_every: float = FOLLOW_SECONDS,
        holder: str | None = None,
    ) -> None:
        if not 0 < renew_every < seconds or follow_every <= 0:
            raise ValueError("need 0 < renew_every < seconds and 0 < follow_every")
        self.lease = lease
        self.holder = holder or holder_id()
        self.seconds = seconds
        self.renew_every = renew_every
        self.follow_every = follow_every
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self._on_duty = on_duty
        self._term: Term | None = None
        self._valid_until = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.terms = 0
        """How many terms this process has led."""

    @property
    def term(self) -> Term | None:
        """This process's current term, or ``None`` while it follows."""
        return self._term

    @property
    def is_leader(self) -> bool:
        return self._term is not None

    def start(self) -> None:
        """Try once now (a lone process leads from its first moment), then keep trying in a
        daemon thread."""
        self._cycle()
        self._thread = threading.Thread(target=self._run, name="chainaudit-elector", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop trying; if leading, end the leader work and release the lease at once (a
        successor need not wait for it to expire)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        term = self._term
        if term is not None:
            self._depose("stopping")
            try:
                self.lease.release(term)
            except StoreError as exc:
                logger.warning("leader: could not release the lease: %s", exc)

    def _run(self) -> None:
        while not self._stop.wait(self.renew_every if self.is_leader else self.follow_every):
            self._cycle()

    def _cycle(self) -> None:
        started = time.monotonic()
        term = self._term
        try:
            if term is None:
                term = self.lease.acquire(self.holder, self.seconds)
                if term is not None:
                    self._elect(term, started)
                return
            renewed = self.lease.renew(term, self.seconds)
        except StoreError as exc:
            logger.warning("leader: the lease could not be read or written: %s", exc)
            if self._term is not None and time.monotonic() > self._valid_until:
                self._depose("its lease expired while the database was busy")
            return
        if renewed is None:
            self._depose(f"token {term.token} was superseded")
            return
        self._term = renewed
        self._valid_until = started + self.seconds
        if self._on_duty is not None:
            try:
                self._on_duty()
            except Exception:  # the elector must outlive any failure of a duty; it is logged
                logger.exception("leader: a duty failed")

    def _elect(self, term: Term, started: float) -> None:
        self._term = term
        self._valid_until = started + self.seconds
        self.terms += 1
        logger.info("leader: %s leads %r with token %d", self.holder, term.name, term.token)
        try:
            self._on_elected(Fence(term.name, term.token))
        except Exception:  # a failed start of the work: give the lease up for another
            logger.exception("leader: starting the leader work failed")
            self._depose("its work did not start")
            with suppress(StoreError):
                self.lease.release(term)

    def _depose(self, why: str) -> None:
        term, self._term = self._term, None
        if term is None:
            return
        logger.warning("leader: %s no longer leads %r: %s", self.holder, term.name, why)
        self._on_deposed()


def pause_point(name: str) -> None:
    """**Test-only.** Stop this thread for good at the step ``name`` when the environment
    variable :data:`PAUSE_ENV` names it and :data:`PAUSE_FILE_ENV` names a marker file that
    does not exist yet: the file is created (holding this process's id) and the thread
    sleeps until the process is killed. Only the first process to get there pauses (the
    marker exists afterwards), so the process that takes over runs through. Does nothing
    when the variables are unset, as in every deployment."""
    if os.environ.get(PAUSE_ENV) != name:
        return
    marker = os.environ.get(PAUSE_FILE_ENV)
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)
    logger.warning("test pause point %r reached: this thread waits to be killed", name)
    while True:
        time.sleep(3600)
