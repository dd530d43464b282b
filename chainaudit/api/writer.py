"""Group commit for the API: concurrent append requests share one durable transaction.

Requests hand their prepared records to :meth:`GroupWriter.submit` and await the result; one
writer thread drains everything queued, appends each request inside a single
:meth:`~chainaudit.log.store.Log.transaction`, commits once (one fsync for all of them), and only
then resolves the requests' futures, so an acknowledged append is always durable. A request
whose ids conflict fails alone (nothing of it is written); the others still commit.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path

from chainaudit.core.errors import ConflictError, StoreError
from chainaudit.core.records import PreparedRecord
from chainaudit.log import datakeys
from chainaudit.log.store import AppendResult, Log

__all__ = ["FollowUp", "GroupWriter", "Signatures"]

logger = logging.getLogger(__name__)

MAX_GROUP_RECORDS = 50_000
FLAGS = os.O_CREAT | os.O_RDWR

Signatures = dict[str, tuple[str, str]]
FollowUp = Callable[[AppendResult], PreparedRecord | None]
"""Called inside the transaction after a request's append; a record it returns (the action
record naming who appended) is committed atomically with the request."""
_Item = tuple[Sequence[PreparedRecord], Signatures, FollowUp | None, "Future[AppendResult]"]


class GroupWriter:
    """The single writer of a log inside the API process. The writers of several processes
    (``chainaudit serve --workers N``) on an SQLite log take turns through an advisory lock
    on the file ``<log file>.writers``."""

    def __init__(
        self,
        path: Path,
        kinds: frozenset[str],
        at_rest: datakeys.AtRest | None = None,
        on_appended: Callable[[int], None] | None = None,
        *,
        database_url: str | None = None,
    ) -> None:
        """``on_appended`` is told how many records of a request were appended, once they are
        durable (the metrics)."""
        self._path = path
        self._database_url = database_url
        """The log's PostgreSQL database (:class:`~chainaudit.log.store.Log`), else ``path``."""
        self._kinds = kinds
        self._at_rest = at_rest
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="chainaudit-writer", daemon=True)
        self._started = False
        self._on_appended = on_appended or (lambda appended: None)

    def start(self) -> None:
        if not self._started:
            self._thread.start()
            self._started = True

    def stop(self) -> None:
        if self._started:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._started = False

    async def append(
        self,
        records: Sequence[PreparedRecord],
        signatures: Signatures | None = None,
        follow_up: FollowUp | None = None,
    ) -> AppendResult:
        """Append ``records`` as one all-or-nothing unit; returns once durable."""
        return await asyncio.wrap_future(self.submit(records, signatures, follow_up))

    def submit(
        self,
        records: Sequence[PreparedRecord],
        signatures: Signatures | None = None,
        follow_up: FollowUp | None = None,
    ) -> Future[AppendResult]:
        """Queue ``records``; the future resolves once they are durable."""
        future: Future[AppendResult] = Future()
        self._queue.put((records, signatures or {}, follow_up, future))
        return future

    def _run(self) -> None:
        log = Log(
            self._path, kinds=self._kinds, at_rest=self._at_rest, database_url=self._database_url
        )
        # SQLite only: PostgreSQL queues its writers itself
        turn = None if self._database_url else os.open(f"{self._path}.writers", FLAGS, 0o600)
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                # The writers of every process sharing the file take turns on this lock
                # (the kernel wakes the next at once, where SQLite's busy handler would sleep
                # and poll); what queued meanwhile joins the group.
                if turn is not None:
                    fcntl.flock(turn, fcntl.LOCK_EX)
                try:
                    self._commit(log, self._group(first))
                finally:
                    if turn is not None:
                        fcntl.flock(turn, fcntl.LOCK_UN)
        finally:
            if turn is not None:
                os.close(turn)
            log.close()

    def _group(self, first: _Item) -> list[_Item]:
        """``first`` and what else is queued, up to :data:`MAX_GROUP_RECORDS` records."""
        group = [first]
        count = len(first[0])
        while count < MAX_GROUP_RECORDS:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)
                break
            group.append(item)
            count += len(item[0])
        return group

    def _commit(self, log: Log, group: list[_Item]) -> None:
        outcomes: list[tuple[Future[AppendResult], AppendResult | BaseException]] = []
        try:
            with log.transaction() as batch:
                for records, signatures, follow_up, future in group:
                    try:
                        result = batch.append(records, signatures)
                    except ConflictError as exc:
                        outcomes.append((future, exc))
                        continue
                    extra = follow_up(result) if follow_up is not None else None
                    if extra is not None:
                        batch.append([extra])
                    outcomes.append((future, result))
        except Exception as exc:  # the commit failed: nothing of the group is durable
            logger.exception("group commit failed")
            failure = StoreError(f"the append could not be committed: {exc}")
            for *_, future in group:
                future.set_exception(failure)
            return
        for future, outcome in outcomes:
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                self._on_appended(outcome.appended)
                future.set_result(outcome)
