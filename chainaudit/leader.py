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
  :class:`~chainaudit.errors.NotLeaderError` when it is not: a leader that stalled past its
  lease (paused, swapped out) and woke up after a takeover can write nothing more. What it
  sent before its last fenced write is the journal the next leader resumes from (the
  anchoring service records a signed transaction before broadcasting it, and a new leader
  re-broadcasts the same bytes; the indexer's outbox is re-appended idempotently).
* **Signals.** A follower that receives a request for the leader (``POST /v1/anchors``)
  leaves it in ``leader_signals`` (:meth:`Lease.signal`); the leader takes it within a
  second.

The interface (:class:`Lease`, :class:`Fence`, :class:`Elector`) is engine-neutral: an
SQLite implementation lives here (:class:`SqliteLease`, in the log's own file so the fence
is checked in the writer's transaction); a PostgreSQL one can keep the same lease row (or
hold an advisory lock for the term and keep the token in a row).

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
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from chainaudit.errors import NotLeaderError, StoreError

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

    def check(self, db: sqlite3.Connection) -> None:
        """Check, inside the caller's open write transaction on the log's SQLite file
        (``BEGIN IMMEDIATE`` taken), that this term is still the current one.

        Raises :class:`~chainaudit.errors.NotLeaderError` when another process has taken the
        lease since (a larger token), or the lease row is gone; the caller rolls back.
        """
        try:
            row = db.execute(
                "SELECT token, holder FROM leader_lease WHERE name = ?", (self.name,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise NotLeaderError(f"cannot read the {self.name} lease: {exc}") from exc
        if row is None or int(row[0]) != self.token:
            current = "none" if row is None else f"token {row[0]} held by {row[1]}"
            raise NotLeaderError(
                f"leadership of {self.name!r} lost: this process's term has token "
                f"{self.token}, the current one is {current}"
            )

    @contextmanager
    def transaction(self, db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """A write transaction on ``db`` (autocommit mode) that starts with :meth:`check`;
        committed at the end of the block, rolled back on any exception."""
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot start a write transaction: {exc}") from exc
        try:
            self.check(db)
            yield db
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


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


def _now_ms() -> int:
    return int(time.time() * 1000)


class SqliteLease:
    """:class:`Lease` in the SQLite file at ``path`` (the log's, so that :class:`Fence`
    checks run in the writers' own transactions). Thread-safe. Times are this machine's
    clock, which every process sharing the file reads.

    Raises :class:`~chainaudit.errors.StoreError` when the file cannot be opened; each
    method raises it when the database refuses (busy longer than ``busy_seconds``)."""

    def __init__(self, path: Path, name: str = BACKGROUND, *, busy_seconds: float = 2.0) -> None:
        self.name = name
        self.path = path
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                path, isolation_level=None, timeout=30.0, check_same_thread=False
            )
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)  # once: it may wait for the other workers
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_seconds * 1000)}")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the leader lease in {path}: {exc}") from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write the {self.name} lease: {exc}") from exc
            try:
                yield self._db
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                raise StoreError(f"cannot write the {self.name} lease: {exc}") from exc
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def acquire(self, holder: str, seconds: float) -> Term | None:
        with self._transaction() as db:
            now = _now_ms()
            row = db.execute(
                "SELECT holder, token, expires_ms FROM leader_lease WHERE name = ?", (self.name,)
            ).fetchone()
            if row is not None and int(row[2]) > now and row[0] != holder:
                return None
            token = 1 if row is None else int(row[1]) + 1
            expires = now + int(seconds * 1000)
            db.execute(
                "INSERT OR REPLACE INTO leader_lease VALUES (?, ?, ?, ?, ?)",
                (self.name, holder, token, expires, now),
            )
            return Term(self.name, holder, token, expires)

    def renew(self, term: Term, seconds: float) -> Term | None:
        with self._transaction() as db:
            expires = _now_ms() + int(seconds * 1000)
            done = db.execute(
                "UPDATE leader_lease SET expires_ms = ? WHERE name = ? AND token = ? "
                "AND holder = ?",
                (expires, self.name, term.token, term.holder),
            ).rowcount
            return Term(self.name, term.holder, term.token, expires) if done else None

    def release(self, term: Term) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE leader_lease SET expires_ms = 0 WHERE name = ? AND token = ?",
                (self.name, term.token),
            )

    def current(self) -> Term | None:
        with self._lock:
            row = self._db.execute(
                "SELECT holder, token, expires_ms FROM leader_lease WHERE name = ?", (self.name,)
            ).fetchone()
        return None if row is None else Term(self.name, str(row[0]), int(row[1]), int(row[2]))

    def signal(self, what: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO leader_signals VALUES (?, ?)", (what, _now_ms()))

    def take_signal(self, what: str) -> bool:
        with self._lock:  # a cheap read first: the leader polls this every second
            found = self._db.execute(
                "SELECT 1 FROM leader_signals WHERE name = ?", (what,)
            ).fetchone()
        if found is None:
            return False
        with self._transaction() as db:
            return db.execute("DELETE FROM leader_signals WHERE name = ?", (what,)).rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._db.close()


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
