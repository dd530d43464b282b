"""The record index: the log's records by kind, actor, time and named party.

A derived index beside the log (in its SQLite file, or its PostgreSQL database) that follows
the log from a cursor (as :mod:`chainaudit.risk.book` does): :meth:`RecordIndex.sync` reads
the records appended since its last run (any process may have appended them) and writes, per
record, one ``record_index`` row ``(idx, kind, actor, ts)``; for an ``escrow_event`` record, one
``record_parties`` row per address its ``payload.args`` name (lower case); and for a record whose
payload names a deal (``payload.deal_id``), one ``record_deals`` row, the deal's timeline
(:meth:`RecordIndex.deal_indexes`). Nothing in :meth:`chainaudit.log.store.Log.append` knows
about it, so appends cost what they did and the log holds no escrow knowledge.

Filtered lists (``GET /v1/records?kind=…&actor=…&since=…``) then read the matching leaf
indexes from SQLite indexes, and a partner's list reads only the records it might see
(:meth:`RecordIndex.candidates`: its own, those naming it, those of its deals), never the
whole log. Upgrading an existing log needs nothing but opening it: the tables are created
empty and the first sync fills them.

The index is evidence of nothing: :func:`audit_record_index` (run by ``chainaudit audit``)
re-derives every row from the records and reports each difference as a ``record-index``
finding; :meth:`RecordIndex.rebuild` re-derives the whole index.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from chainaudit.core.errors import StoreError
from chainaudit.log import bundles, database
from chainaudit.log.derived import DerivedTables
from chainaudit.log.store import AuditFinding, Log

__all__ = [
    "PARTY_KIND",
    "Filters",
    "RecordIndex",
    "audit_record_index",
    "deal_named",
    "parties_named",
]

NARROW: Final = 10_000
"""A time range with fewer rows than this is read through the time index."""

PARTY_KIND: Final = "escrow_event"
"""The kind of record whose ``payload.args`` addresses go to ``record_parties``."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS record_index_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    next_index INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS record_index (
    idx INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    ts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS record_index_by_kind ON record_index (kind, idx);
CREATE INDEX IF NOT EXISTS record_index_by_actor ON record_index (actor, idx);
CREATE INDEX IF NOT EXISTS record_index_by_time ON record_index (ts, idx);
CREATE TABLE IF NOT EXISTS record_parties (
    party TEXT NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (party, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS record_deals (
    deal_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (deal_id, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS record_deals_by_leaf ON record_deals (idx);
INSERT INTO record_index_cursor VALUES (1, 0) ON CONFLICT DO NOTHING;
"""


class Filters:
    """The optional filters of a record list, as SQL over ``record_index`` aliased ``r``."""

    def __init__(
        self,
        *,
        kind: str | None = None,
        actor: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> None:
        self.kind, self.actor, self.since_ms, self.until_ms = kind, actor, since_ms, until_ms

    @property
    def empty(self) -> bool:
        """Whether no filter is set."""
        return all(v is None for v in (self.kind, self.actor, self.since_ms, self.until_ms))

    def sql(self) -> tuple[str, list[Any]]:
        """``" AND …"`` conditions on ``r`` and their parameters."""
        parts: list[str] = []
        params: list[Any] = []
        for column, op, value in (
            ("kind", "=", self.kind),
            ("actor", "=", self.actor),
            ("ts", ">=", self.since_ms),
            ("ts", "<", self.until_ms),
        ):
            if value is not None:
                parts.append(f" AND r.{column} {op} ?")
                params.append(value)
        return "".join(parts), params


def parties_named(body: bytes | None) -> set[str]:
    """The addresses (``0x`` + 40 hex digits, lower case) an escrow event record's
    ``payload.args`` name, in a list or not; empty for anything else."""
    if body is None:
        return set()
    try:
        document = json.loads(body)
    except ValueError:
        return set()
    payload = document.get("payload") if isinstance(document, dict) else None
    args = payload.get("args") if isinstance(payload, dict) else None
    if not isinstance(args, Mapping):
        return set()
    found: set[str] = set()
    for value in args.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and len(item) == 42 and item[:2] in ("0x", "0X"):
                try:
                    int(item[2:], 16)
                except ValueError:
                    continue
                found.add(item.lower())
    return found


def deal_named(body: bytes | None) -> str | None:
    """The deal a record's canonical bytes name (``payload.deal_id``, a string or an integer,
    as a string), or ``None``."""
    if body is None or b'"deal_id":' not in body:
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return None
    payload = document.get("payload") if isinstance(document, dict) else None
    deal = payload.get("deal_id") if isinstance(payload, dict) else None
    if isinstance(deal, bool) or not isinstance(deal, str | int):
        return None
    return str(deal)


def _rows(
    records: Iterable[bundles.Stored],
) -> tuple[list[tuple[int, str, str, int]], list[tuple[str, int]], list[tuple[str, int]]]:
    index_rows: list[tuple[int, str, str, int]] = []
    party_rows: list[tuple[str, int]] = []
    deal_rows: list[tuple[str, int]] = []
    for r in records:
        index_rows.append((r.leaf_index, r.kind, r.actor, r.timestamp_ms))
        if r.kind == PARTY_KIND:
            party_rows.extend((party, r.leaf_index) for party in parties_named(r.body))
        if (deal := deal_named(r.body)) is not None:
            deal_rows.append((deal, r.leaf_index))
    return index_rows, party_rows, deal_rows


class RecordIndex(DerivedTables):
    """The record index of the log at ``path`` (its SQLite file), or in the log's
    PostgreSQL database ``database_url`` when given. Thread-safe."""

    def __init__(self, path: Path | str, *, database_url: str | None = None) -> None:
        super().__init__(
            path,
            what="the record index",
            schema=_SCHEMA,
            synchronous="NORMAL",
            database_url=database_url,
        )

    @property
    def next_index(self) -> int:
        """The first leaf not indexed yet."""
        with self._lock:
            return int(self._db.execute("SELECT next_index FROM record_index_cursor").fetchone()[0])

    def sync(self, log: Log, *, page: int = 8_192) -> int:
        """Index every record appended since the last sync, ``page`` records to a
        transaction; return how many were indexed. Idempotent (rows are keyed by leaf)."""
        with self._lock:
            size = log.refresh()  # every leaf below this size is committed
            start = self.next_index
            if start >= size:
                return 0
            done = 0
            batch: list[bundles.Stored] = []
            for record in log.records_from(start):
                if record.leaf_index >= size:
                    break
                batch.append(record)
                if len(batch) == page:
                    done += self._write(batch)
                    batch = []
            done += self._write(batch)
            with self._transaction() as db:
                db.execute(_ADVANCE, (size, size))
            return done

    def _write(self, batch: Sequence[bundles.Stored]) -> int:
        if not batch:
            return 0
        index_rows, party_rows, deal_rows = _rows(batch)
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO record_index VALUES (?, ?, ?, ?) ON CONFLICT (idx) DO UPDATE SET "
                "kind = excluded.kind, actor = excluded.actor, ts = excluded.ts",
                index_rows,
            )
            db.executemany(
                "INSERT INTO record_parties VALUES (?, ?) ON CONFLICT DO NOTHING", party_rows
            )
            db.executemany(
                "INSERT INTO record_deals VALUES (?, ?) ON CONFLICT DO NOTHING", deal_rows
            )
            after = batch[-1].leaf_index + 1
            db.execute(_ADVANCE, (after, after))
        return len(batch)

    def rebuild(self, log: Log) -> int:
        """Forget the index and re-derive it from the whole log."""
        with self._transaction() as db:
            db.execute("DELETE FROM record_index")
            db.execute("DELETE FROM record_parties")
            db.execute("DELETE FROM record_deals")
            db.execute("UPDATE record_index_cursor SET next_index = 0")
        return self.sync(log)

    def deal_indexes(self, deal_id: str) -> list[int]:
        """The leaf indexes of the records whose payload names ``deal_id``, in log order (as
        of the last :meth:`sync`): the deal's timeline."""
        with self._lock:
            query = "SELECT idx FROM record_deals WHERE deal_id = ? ORDER BY idx"
            return [int(i) for (i,) in self._db.execute(query, (deal_id,))]

    def matching(self, filters: Filters, *, start: int, limit: int) -> list[int]:
        """The leaf indexes from ``start`` on that match ``filters``, in log order, at most
        ``limit`` of them (read from the SQLite indexes)."""
        where, params = filters.sql()
        table = "record_index r"
        with self._lock:
            if filters.kind is None and filters.actor is None and not filters.empty:
                # a time filter alone: walk the time index when the range is narrow (few
                # rows to sort), the leaves in order when it is wide (matches come soon)
                lower = -(2**63) if filters.since_ms is None else filters.since_ms
                upper = 2**63 - 1 if filters.until_ms is None else filters.until_ms
                (within,) = self._db.execute(
                    "SELECT count(*) FROM (SELECT 1 FROM record_index "
                    "WHERE ts >= ? AND ts < ? LIMIT ?) AS narrow",
                    (lower, upper, NARROW),
                ).fetchone()
                if within < NARROW and self._db.engine == "sqlite":
                    table = "record_index r INDEXED BY record_index_by_time"
            query = f"SELECT r.idx FROM {table} WHERE r.idx >= ?{where} ORDER BY r.idx LIMIT ?"  # noqa: S608 - fixed text
            return [int(i) for (i,) in self._db.execute(query, [start, *params, limit])]

    def candidates(
        self,
        filters: Filters,
        *,
        start: int,
        limit: int,
        actors: Sequence[str],
        party: str | None,
        deals: Sequence[str],
    ) -> list[int]:
        """The leaf indexes from ``start`` on, matching ``filters``, of the records by one
        of ``actors``, naming ``party`` in an escrow event or linked to one of ``deals``
        (``record_deals``), in log order, at most ``limit``: every record a partner might
        see, and only those (its visibility rule then decides each)."""
        where, params = filters.sql()
        parts: list[str] = []
        args: list[Any] = []
        if actors:
            parts.append(
                "SELECT r.idx FROM record_index r WHERE "  # noqa: S608 - fixed text
                f"{self._db.in_list('r.actor')} AND r.idx >= ?{where} ORDER BY r.idx LIMIT ?"
            )
            args += [self._db.list_param(list(actors)), start, *params, limit]
        if party is not None:
            parts.append(
                "SELECT p.idx FROM record_parties p JOIN record_index r ON r.idx = p.idx "  # noqa: S608 - fixed text
                f"WHERE p.party = ? AND p.idx >= ?{where} ORDER BY p.idx LIMIT ?"
            )
            args += [party.lower(), start, *params, limit]
        if deals:
            parts.append(
                "SELECT d.idx FROM record_deals d JOIN record_index r ON r.idx = d.idx "  # noqa: S608 - fixed text
                f"WHERE {self._db.in_list('d.deal_id')} AND d.idx >= ?"
                f"{where} ORDER BY d.idx LIMIT ?"
            )
            args += [self._db.list_param(list(deals)), start, *params, limit]
        if not parts:
            return []
        union = " UNION ".join(
            f"SELECT idx FROM ({p}) AS part{n}"  # noqa: S608 - fixed text
            for n, p in enumerate(parts)
        )
        query = f"SELECT idx FROM ({union}) AS found ORDER BY idx LIMIT ?"  # noqa: S608
        with self._lock:
            return [int(i) for (i,) in self._db.execute(query, [*args, limit])]


def audit_record_index(log: Log, *, page: int = 8_192) -> list[AuditFinding]:
    """Check the record index beside ``log`` (its SQLite file or PostgreSQL database)
    against the records: every indexed leaf must
    hold a record of the indexed kind, actor and time, every escrow event naming an address
    must have its ``record_parties`` row and no row may name a party its record does not, and
    likewise every record naming a deal its ``record_deals`` row (the deal's timeline);
    every record below the index's cursor must be indexed. Returns one ``record-index``
    finding per difference; an empty list when there is no record index (none is created).
    Writes nothing (reads one snapshot); raises :class:`~chainaudit.core.errors.StoreError` if the
    index cannot be read."""
    where = "the log's PostgreSQL database" if log.database_url else str(log.path)
    try:
        db = database.connect_reader(log.database_url or log.path)
    except database.DatabaseError as exc:
        raise StoreError(f"cannot read the record index in {where}: {exc}") from exc
    findings: list[AuditFinding] = []
    try:
        with db.read():  # one snapshot of the index and its cursor
            if not db.has_table("record_index_cursor"):
                return []
            (cursor,) = db.execute("SELECT next_index FROM record_index_cursor").fetchone()
            rows = db.stream("SELECT idx, kind, actor, ts FROM record_index ORDER BY idx")
            parties = db.stream("SELECT idx, party FROM record_parties ORDER BY idx, party")
            deals = db.stream("SELECT idx, deal_id FROM record_deals ORDER BY idx, deal_id")
            try:
                _check_index(log, page, cursor, rows, _Links(parties), _Links(deals), findings)
            finally:
                rows.close()
                parties.close()
                deals.close()
    except database.DatabaseError as exc:
        raise StoreError(f"cannot read the record index in {where}: {exc}") from exc
    finally:
        db.close()
    return findings


class _Links:
    """A stream of ``(leaf index, value)`` rows in leaf order (parties or deals), read one leaf
    at a time."""

    def __init__(self, rows: Iterator[Any]) -> None:
        self._rows = rows
        self._row = next(rows, None)

    def take(self, idx: int) -> tuple[set[str], list[tuple[int, str]]]:
        """The values stored at leaf ``idx``, and the rows before it (leaves already passed:
        rows of no record)."""
        here: set[str] = set()
        before: list[tuple[int, str]] = []
        while self._row is not None and self._row[0] <= idx:
            if self._row[0] < idx:
                before.append((int(self._row[0]), str(self._row[1])))
            else:
                here.add(str(self._row[1]))
            self._row = next(self._rows, None)
        return here, before

    def rest(self) -> list[tuple[int, str]]:
        """Every row not taken yet."""
        left: list[tuple[int, str]] = []
        while self._row is not None:
            left.append((int(self._row[0]), str(self._row[1])))
            self._row = next(self._rows, None)
        return left


def _check_index(
    log: Log,
    page: int,
    cursor: int,
    rows: Iterator[Any],
    parties: _Links,
    deals: _Links,
    findings: list[AuditFinding],
) -> None:
    """Compare the index's ``rows``, ``parties`` and ``deals`` (all in leaf order) with the
    records of ``log``, appending a finding per difference (see :func:`audit_record_index`)."""
    row = next(rows, None)
    batch: list[bundles.Stored] = []

    def check_links(
        record: bundles.Stored, links: _Links, implied: set[str], what: str, names: str
    ) -> None:
        idx = record.leaf_index
        named, orphans = links.take(idx)
        findings.extend(_finding(at, None, f"{what} {value} of no record") for at, value in orphans)
        if record.body is None:
            return  # erased content: its rows cannot be checked
        if idx >= cursor and not named:
            return  # not indexed yet
        for value in sorted(named - implied):
            findings.append(
                _finding(idx, record.record_id, f"{what} {value} not named by the record")
            )
        for value in sorted(implied - named):
            findings.append(_finding(idx, record.record_id, names.format(value)))

    def check(records: Sequence[bundles.Stored]) -> None:
        nonlocal row
        for record in records:
            idx = record.leaf_index
            while row is not None and row[0] < idx:
                findings.append(_finding(row[0], None, "indexes a leaf with no record"))
                row = next(rows, None)
            if row is not None and row[0] == idx:
                want = (record.kind, record.actor, record.timestamp_ms)
                if tuple(row[1:]) != want:
                    findings.append(
                        _finding(
                            idx,
                            record.record_id,
                            f"indexed as kind/actor/time {tuple(row[1:])!r}, the record "
                            f"says {want!r}",
                        )
                    )
                row = next(rows, None)
            elif idx < cursor:
                findings.append(_finding(idx, record.record_id, "missing from the index"))
            party_implied = parties_named(record.body) if record.kind == PARTY_KIND else set()
            check_links(record, parties, party_implied, "party", "names {}, missing from the index")
            deal = deal_named(record.body)
            check_links(
                record,
                deals,
                set() if deal is None else {deal},
                "deal",
                "names deal {}, missing from the deal's timeline",
            )

    for record in log.records_from(0):
        batch.append(record)
        if len(batch) == page:
            check(batch)
            batch = []
    check(batch)
    while row is not None:
        findings.append(_finding(row[0], None, "indexes a leaf with no record"))
        row = next(rows, None)
    for what, links in (("party", parties), ("deal", deals)):
        findings.extend(
            _finding(at, None, f"{what} {value} of no record") for at, value in links.rest()
        )


_ADVANCE: Final = "UPDATE record_index_cursor SET next_index = ? WHERE next_index < ?"
"""Move the cursor forward to the parameter (never back: another process may be ahead)."""


def _finding(index: int, record_id: str | None, detail: str) -> AuditFinding:
    return AuditFinding("record-index", int(index), record_id, f"record index: {detail}")
