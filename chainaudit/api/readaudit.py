"""Read-audit: every read of a record, proof, bundle, statement, trace or record listing by an
auditor, regulator or admin key is itself logged — who, what, when — in batches.

A request only notes the read in memory (:meth:`ReadAudit.note`: a lock and a list append);
the reads are written as one ``read:`` record (kind ``admin``, submitter
:data:`chainaudit.core.provenance.API`) through the API's group writer when :attr:`ReadAudit.
max_reads` reads are waiting or when :attr:`ReadAudit.max_seconds` have passed since the
first of them (a background thread looks twice per interval), and on shutdown. The record's
payload lists each read as ``{"key": "key:<id>", "role", "what", "target", "at"}`` (``at`` in
RFC 3339 UTC, milliseconds), plus ``count`` and the time span. A read by a key holding the
personal-data permission (unmasked personal fields) carries ``"personal_data": true``. Reads
by partner and operator keys are not logged here (partners see only their own records;
operators' actions are recorded by the actions themselves).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any, Final

from chainaudit.api.writer import GroupWriter
from chainaudit.core import provenance
from chainaudit.core.records import prepare
from chainaudit.log.store import AppendResult
from chainaudit.service.keys import ApiKey

__all__ = ["ReadAudit"]

logger = logging.getLogger(__name__)

AUDITED_ROLES: Final = frozenset({"admin", "auditor", "regulator"})
"""The roles whose reads are logged."""
ACTOR: Final = "chainaudit:api"
KIND: Final = "admin"


def _rfc3339(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class ReadAudit:
    """Batches reads into ``read:`` records appended by ``writer``.

    ``max_reads``: a batch is written as soon as it holds this many reads; ``max_seconds``:
    no read waits longer than about this before it is written. Thread-safe.
    """

    def __init__(self, writer: GroupWriter, *, max_reads: int = 256, max_seconds: float = 5.0):
        self.writer = writer
        self.max_reads = max_reads
        self.max_seconds = max_seconds
        self._pending: list[dict[str, Any]] = []
        self._first = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0
        """Reads written so far (for tests and metrics)."""

    def start(self) -> None:
        """Start the timer that writes batches older than :attr:`max_seconds`."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="chainaudit-read-audit", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Write what is waiting (before the writer stops) and end the timer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        future = self.flush()
        if future is not None:
            try:
                future.result(timeout=30)
            except Exception:  # the service is stopping: say so, and stop anyway
                logger.exception("read-audit: the last batch of reads was not written")

    def note(self, key: ApiKey, what: str, target: str, **detail: Any) -> None:
        """Note that ``key`` read ``what`` (``record``, ``proof``, ``bundle``, ``statement``,
        ``trace``, ``records``) identified by ``target``; a no-op for unaudited roles."""
        if key.role not in AUDITED_ROLES:
            return
        read: dict[str, Any] = {
            "key": provenance.key_submitter(key.key_id),
            "role": key.role,
            "what": what,
            "target": target[:256],
            "at": _rfc3339(int(time.time() * 1000)),
        }
        if key.personal_data:
            read["personal_data"] = True  # an unmasked read of personal fields
        if detail:
            read["detail"] = detail
        with self._lock:
            if not self._pending:
                self._first = time.monotonic()
            self._pending.append(read)
            full = len(self._pending) >= self.max_reads
        if full:
            self.flush()

    def flush(self) -> Future[AppendResult] | None:
        """Write the waiting reads as one record now; returns the append's future (``None``
        when nothing waits). A failed append is logged; the reads are then lost from the log
        but the requests they served are unaffected."""
        with self._lock:
            reads, self._pending = self._pending, []
        if not reads:
            return None
        record = prepare(
            {
                "id": f"read:{int(time.time() * 1000)}:{secrets.token_hex(6)}",
                "kind": KIND,
                "timestamp": _rfc3339(int(time.time() * 1000)),
                "actor": ACTOR,
                "payload": {
                    "type": "reads",
                    "action": "read",
                    "count": len(reads),
                    "first": reads[0]["at"],
                    "last": reads[-1]["at"],
                    "reads": reads,
                },
            },
            submitter=provenance.API,
        )
        future = self.writer.submit([record])
        future.add_done_callback(self._written(len(reads)))
        return future

    def _written(self, count: int) -> Any:
        def done(future: Future[AppendResult]) -> None:
            if future.exception() is not None:
                logger.error("read-audit: %d reads not written: %s", count, future.exception())
            else:
                self.written += count

        return done

    def _run(self) -> None:
        while not self._stop.wait(self.max_seconds / 2):
            with self._lock:
                due = bool(self._pending) and time.monotonic() - self._first >= self.max_seconds
            if due:
                self.flush()
