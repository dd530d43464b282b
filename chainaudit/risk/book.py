"""The risk tables beside the log (in its SQLite file, or in its PostgreSQL database): an
index of the log's decision records.

The log is the evidence; these tables only make it quick to query. :meth:`RiskBook.sync`
reads the ``decision`` records appended since its last run (any process may have appended
them) and applies those whose stamped ``submitter`` is entitled to write them
(:func:`chainaudit.core.provenance.document_entitled`: the risk service, for alerts, rule sets and
executions under ``risk:`` ids). A decision record that reached the log any other way — a
forged clearance written straight into the database, a record with no submitter — is never
applied: it opens, moves or clears no alert (``chainaudit reconcile`` reports it). The tables:

* ``risk_rule_sets``: every rule-set announcement (hash, version, record id);
* ``risk_alerts``: every alert and its status (open → acknowledged → resolved), from the
  alert records (``payload.type == "alert"``);
* ``risk_executions``: every action the gate let through, with its transaction hash, so the
  risk history counts actions the escrow indexer has not reached yet.

Since the tables are derived from the log, they can always be rebuilt from it
(:meth:`RiskBook.rebuild`), and an alert's state can never disagree with its records. Applying
is idempotent: each alert remembers the leaf index of the last record applied to it, and a
transition that is not allowed from the current status (a second acknowledgement racing the
first) is ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from chainaudit.core import provenance
from chainaudit.core.errors import NotFoundError, RecordError, StoreError
from chainaudit.core.provenance import document_entitled
from chainaudit.core.records import parse_timestamp
from chainaudit.log import database
from chainaudit.log.derived import DerivedTables
from chainaudit.log.store import AuditFinding, Entry, Log

__all__ = ["ALERT_STATUSES", "Alert", "Execution", "RiskBook", "RuleSetEntry", "audit_tables"]

ALERT_STATUSES: Final = ("open", "acknowledged", "resolved")
RESOLUTIONS: Final = ("cleared", "confirmed")
"""``cleared``: a person reviewed the action and lets it proceed (a later evaluation of the
same subject that fires no other rule is allowed); ``confirmed``: the risk is real, it stays
blocked."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS risk_sync (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    next_index INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS risk_rule_sets (
    record_id TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    version TEXT NOT NULL,
    leaf_index INTEGER NOT NULL,
    announced_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS risk_rule_sets_by_hash ON risk_rule_sets (hash);
CREATE TABLE IF NOT EXISTS risk_alerts (
    alert_id TEXT PRIMARY KEY,
    decision_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    action TEXT NOT NULL,
    deal_id TEXT,
    milestone INTEGER,
    severity TEXT NOT NULL,
    outcome TEXT NOT NULL,
    owner TEXT NOT NULL,
    rules TEXT NOT NULL,
    summary TEXT NOT NULL,
    status TEXT NOT NULL,
    resolution TEXT,
    note TEXT,
    opened_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    acknowledged_by TEXT,
    acknowledged_ms INTEGER,
    resolved_by TEXT,
    resolved_ms INTEGER,
    records TEXT NOT NULL,
    applied_index INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS risk_alerts_by_status ON risk_alerts (status, opened_ms);
CREATE INDEX IF NOT EXISTS risk_alerts_by_subject ON risk_alerts (subject);
CREATE TABLE IF NOT EXISTS risk_executions (
    decision_id TEXT PRIMARY KEY,
    record_id TEXT NOT NULL,
    action TEXT NOT NULL,
    party TEXT NOT NULL,
    amount TEXT NOT NULL,
    documents TEXT NOT NULL,
    deal_id TEXT,
    tx_hash TEXT NOT NULL,
    at INTEGER NOT NULL,
    leaf_index INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO risk_sync VALUES (1, 0) ON CONFLICT DO NOTHING;
"""

_ALERT_COLUMNS = (
    "alert_id, decision_id, subject, action, deal_id, milestone, severity, outcome, owner, "
    "rules, summary, status, resolution, note, opened_ms, updated_ms, acknowledged_by, "
    "acknowledged_ms, resolved_by, resolved_ms, records"
)


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert raised by a ``review`` or ``hold`` decision, and where it stands."""

    alert_id: str
    decision_id: str
    subject: str
    action: str
    deal_id: str | None
    milestone: int | None
    severity: str
    outcome: str
    owner: str
    rules: tuple[str, ...]
    summary: str
    status: str
    resolution: str | None
    note: str | None
    opened_ms: int
    updated_ms: int
    acknowledged_by: str | None
    acknowledged_ms: int | None
    resolved_by: str | None
    resolved_ms: int | None
    records: tuple[str, ...]
    """The ids of the alert's records (opened, acknowledged, resolved), in order."""

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__}
        data["rules"] = list(self.rules)
        data["records"] = list(self.records)
        return data


@dataclass(frozen=True, slots=True)
class RuleSetEntry:
    """An announcement of a rule-set version in the log."""

    record_id: str
    hash: str
    version: str
    leaf_index: int
    announced_ms: int


@dataclass(frozen=True, slots=True)
class Execution:
    """An action the gate let through and that was sent (its transaction hash)."""

    decision_id: str
    record_id: str
    action: str
    party: str
    amount: int
    documents: tuple[str, ...]
    deal_id: int | None
    tx_hash: str
    at: int
    leaf_index: int


class RiskBook(DerivedTables):
    """The risk tables of the log at ``path`` (its SQLite file), or in the log's PostgreSQL
    database ``database_url`` when given. Thread-safe."""

    def __init__(self, path: Path | str, *, database_url: str | None = None) -> None:
        super().__init__(
            path,
            what="the risk tables",
            schema=_SCHEMA,
            synchronous="FULL",
            database_url=database_url,
        )

    # -- syncing with the log ----------------------------------------------------------------

    def sync(self, log: Log, *, page: int = 2_000) -> int:
        """Apply every entitled decision record appended since the last sync; return how
        many were applied (records of unentitled submitters are skipped, never applied)."""
        with self._lock:
            size = log.refresh()  # every leaf below this size is committed
            start = int(self._db.execute("SELECT next_index FROM risk_sync").fetchone()[0])
            applied = 0
            while start < size:
                batch = log.scan(start=start, limit=page, kind="decision")
                with self._transaction() as db:
                    for entry in batch:
                        if entry.body is None:
                            continue
                        try:
                            document = json.loads(entry.body)
                        except ValueError:
                            continue  # an altered record: `chainaudit audit` reports it
                        if (
                            not isinstance(document, Mapping)
                            or not document_entitled(document)
                            or document.get("submitter") != provenance.RISK
                        ):
                            # not written by the risk service: a forged record (`reconcile`
                            # reports it) or another service's decision (a reconciliation)
                            continue
                        payload = document.get("payload")
                        if isinstance(payload, Mapping):
                            applied += self._apply(db, entry.index, document, payload)
                    done = len(batch) < page
                    start = batch[-1].index + 1 if batch else start
                    if done:
                        start = max(start, size)  # no decision record left below the size
                    db.execute(
                        "UPDATE risk_sync SET next_index = ? WHERE next_index < ?", (start, start)
                    )
                if done:
                    break
            return applied

    def rebuild(self, log: Log) -> int:
        """Forget the tables and re-derive them from the whole log."""
        with self._transaction() as db:
            for table in ("risk_rule_sets", "risk_alerts", "risk_executions"):
                db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
            db.execute("UPDATE risk_sync SET next_index = 0")
        return self.sync(log)

    def _apply(
        self, db: database.Database, index: int, record: Mapping[str, Any], p: Mapping[str, Any]
    ) -> int:
        kind = p.get("type")
        try:
            if kind == "rule_set":
                db.execute(
                    "INSERT INTO risk_rule_sets VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (
                        str(record["id"]),
                        str(p["rule_set_hash"]),
                        str(p.get("version", "")),
                        index,
                        _ms(record),
                    ),
                )
                return 1
            if kind == "alert":
                return self._apply_alert(db, index, record, p)
            if kind == "risk_execution" and p.get("tx_hash") and not p.get("error"):
                deal = p.get("deal_id")
                db.execute(
                    "INSERT INTO risk_executions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    (
                        str(p["decision_id"]),
                        str(record["id"]),
                        str(p["action"]),
                        str(p["party"]),
                        str(p["amount"]),
                        json.dumps(list(p.get("documents", []))),
                        None if deal is None else str(deal),
                        str(p["tx_hash"]),
                        int(p["at"]),
                        index,
                    ),
                )
                return 1
        except (KeyError, TypeError, ValueError):
            return 0  # not one of ours, or malformed: the log keeps it, the index skips it
        return 0

    def _apply_alert(
        self, db: database.Database, index: int, record: Mapping[str, Any], p: Mapping[str, Any]
    ) -> int:
        alert_id = str(p["alert_id"])
        when = _ms(record)
        transition = p.get("transition")
        if transition == "opened":
            deal = p.get("deal_id")
            milestone = p.get("milestone")
            db.execute(
                f"INSERT INTO risk_alerts ({_ALERT_COLUMNS}, applied_index) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', NULL, NULL, ?, ?, NULL, NULL, "
                "NULL, NULL, ?, ?) ON CONFLICT DO NOTHING",
                (
                    alert_id,
                    str(p["decision_id"]),
                    str(p["subject"]),
                    str(p["action"]),
                    None if deal is None else str(deal),
                    None if milestone is None else int(milestone),
                    str(p["severity"]),
                    str(p["outcome"]),
                    str(p["owner"]),
                    json.dumps([str(r) for r in p.get("rules", [])]),
                    str(p.get("summary", "")),
                    when,
                    when,
                    json.dumps([str(record["id"])]),
                    index,
                ),
            )
            return 1
        row = db.execute(
            "SELECT status, records, applied_index FROM risk_alerts WHERE alert_id = ?",
            (alert_id,),
        ).fetchone()
        if row is None or int(row[2]) >= index:
            return 0
        status = str(row[0])
        records = [*json.loads(row[1]), str(record["id"])]
        by, note = p.get("by"), p.get("note")
        if transition == "acknowledged" and status == "open":
            db.execute(
                "UPDATE risk_alerts SET status = 'acknowledged', acknowledged_by = ?, "
                "acknowledged_ms = ?, note = COALESCE(?, note), updated_ms = ?, records = ?, "
                "applied_index = ? WHERE alert_id = ?",
                (by, when, note, when, json.dumps(records), index, alert_id),
            )
            return 1
        if transition == "resolved" and status in ("open", "acknowledged"):
            db.execute(
                "UPDATE risk_alerts SET status = 'resolved', resolved_by = ?, resolved_ms = ?, "
                "resolution = ?, note = COALESCE(?, note), updated_ms = ?, records = ?, "
                "applied_index = ? WHERE alert_id = ?",
                (by, when, p.get("resolution"), note, when, json.dumps(records), index, alert_id),
            )
            return 1
        return 0

    # -- queries -----------------------------------------------------------------------------

    def rule_sets(self, rule_set_hash: str | None = None) -> list[RuleSetEntry]:
        """Announcements, oldest first; only those of ``rule_set_hash`` when given."""
        sql = "SELECT record_id, hash, version, leaf_index, announced_ms FROM risk_rule_sets"
        params: tuple[Any, ...] = ()
        if rule_set_hash is not None:
            sql += " WHERE hash = ?"
            params = (rule_set_hash,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY leaf_index", params).fetchall()
        return [RuleSetEntry(str(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4])) for r in rows]

    def latest_rule_set(self) -> RuleSetEntry | None:
        """The rule set announced last, if any."""
        entries = self.rule_sets()
        return entries[-1] if entries else None

    def alert(self, alert_id: str) -> Alert:
        """The alert ``alert_id``; :class:`NotFoundError` if there is none."""
        found = self._alerts("WHERE alert_id = ?", (alert_id,))
        if not found:
            raise NotFoundError(f"no alert {alert_id!r}")
        return found[0]

    def alerts(
        self,
        *,
        status: str | None = None,
        deal_id: str | None = None,
        limit: int = 1_000,
    ) -> list[Alert]:
        """Alerts, newest first, filtered by status and deal."""
        clauses, params = [], []
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if deal_id is not None:
            clauses.append("deal_id = ?")
            params.append(deal_id)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        return self._alerts(f"{where} ORDER BY opened_ms DESC, alert_id LIMIT ?", (*params, limit))

    def clearances(self, subject: str) -> list[dict[str, Any]]:
        """The alerts on ``subject`` resolved as ``cleared``, as evaluation inputs."""
        return [
            {"alert_id": a.alert_id, "decision_id": a.decision_id, "rules": list(a.rules)}
            for a in self._alerts(
                "WHERE subject = ? AND status = 'resolved' AND resolution = 'cleared' "
                "ORDER BY opened_ms, alert_id",
                (subject,),
            )
        ]

    def executions(self) -> list[Execution]:
        """Every recorded execution, in log order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT decision_id, record_id, action, party, amount, documents, deal_id, "
                "tx_hash, at, leaf_index FROM risk_executions ORDER BY leaf_index"
            ).fetchall()
        return [
            Execution(
                decision_id=str(r[0]),
                record_id=str(r[1]),
                action=str(r[2]),
                party=str(r[3]),
                amount=int(r[4]),
                documents=tuple(json.loads(r[5])),
                deal_id=None if r[6] is None else int(r[6]),
                tx_hash=str(r[7]),
                at=int(r[8]),
                leaf_index=int(r[9]),
            )
            for r in rows
        ]

    def _alerts(self, tail: str, params: tuple[Any, ...]) -> list[Alert]:
        sql = f"SELECT {_ALERT_COLUMNS} FROM risk_alerts {tail}"  # noqa: S608 - fixed columns
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [
            Alert(
                alert_id=str(r[0]),
                decision_id=str(r[1]),
                subject=str(r[2]),
                action=str(r[3]),
                deal_id=r[4],
                milestone=r[5],
                severity=str(r[6]),
                outcome=str(r[7]),
                owner=str(r[8]),
                rules=tuple(json.loads(r[9])),
                summary=str(r[10]),
                status=str(r[11]),
                resolution=r[12],
                note=r[13],
                opened_ms=int(r[14]),
                updated_ms=int(r[15]),
                acknowledged_by=r[16],
                acknowledged_ms=r[17],
                resolved_by=r[18],
                resolved_ms=r[19],
                records=tuple(json.loads(r[20])),
            )
            for r in rows
        ]


def _ms(record: Mapping[str, Any]) -> int:
    try:
        return parse_timestamp(record.get("timestamp"))
    except RecordError:
        return 0


# -- audit -------------------------------------------------------------------------------------


def audit_tables(log: Log) -> list[AuditFinding]:
    """Check the risk tables of ``log``'s file against what its decision records imply.

    Reads the stored tables and how far they were synced (``risk_sync``) in one snapshot,
    rebuilds the tables in memory from the log's records below that point with
    :meth:`RiskBook.sync` (so they are read exactly as the service reads them), and compares
    them row by row. Returns one ``risk`` finding per stored row no record implies, per
    implied row that is missing, and per row whose values differ (naming the columns), plus
    one if the tables claim a sync point beyond the log; an empty list when they match or when
    the file has no risk tables (none is created). Writes nothing; raises
    :class:`~chainaudit.core.errors.StoreError` if the file cannot be read.
    """
    size = log.refresh()
    where = "the log's PostgreSQL database" if log.database_url else str(log.path)
    try:
        db = database.connect_reader(log.database_url or log.path)
    except database.DatabaseError as exc:
        raise StoreError(f"cannot read the risk tables in {where}: {exc}") from exc
    try:
        with db.read():  # one snapshot: the sync point and the rows it produced
            tables = db.tables("risk_")
            if "risk_sync" not in tables:
                return []
            synced = int(db.execute("SELECT next_index FROM risk_sync").fetchone()[0])
            stored = {t: _table_rows(db, t) for t in tables if t != "risk_sync"}
    except database.DatabaseError as exc:
        raise StoreError(f"cannot read the risk tables in {where}: {exc}") from exc
    finally:
        db.close()
    findings: list[AuditFinding] = []
    if synced > size:
        findings.append(
            AuditFinding(
                "risk",
                None,
                None,
                f"risk_sync says the tables hold the log's decisions up to leaf {synced}, "
                f"beyond the log's size {size}",
            )
        )
        synced = size
    with (
        RiskBook(":memory:") as fresh,
        _LogPrefix(log.path, synced, database_url=log.database_url) as prefix,
    ):
        fresh.sync(prefix)
        implied = {t: _table_rows(fresh._db, t) for t in (*stored, *_tables(fresh._db))}
    for table in sorted(implied):
        findings.extend(_compare(table, stored.get(table, {}), implied[table]))
    return findings


Row = dict[str, Any]


def _tables(db: database.Database) -> list[str]:
    """The risk tables in ``db`` other than ``risk_sync``."""
    return [name for name in db.tables("risk_") if name != "risk_sync"]


def _table_rows(db: database.Database, table: str) -> dict[str, Row]:
    """Every row of ``table``, by its first column (the key of every risk table)."""
    cursor: Any = db.execute(f"SELECT * FROM {table}")  # noqa: S608 - names from the catalogue
    columns = [d[0] for d in cursor.description]
    return {str(row[0]): dict(zip(columns, row, strict=True)) for row in cursor}


def _compare(
    table: str, stored: Mapping[str, Row], implied: Mapping[str, Row]
) -> list[AuditFinding]:
    """The ``risk`` findings of one table: rows only stored, only implied, or different."""
    findings: list[AuditFinding] = []
    for key in sorted(stored.keys() | implied.keys()):
        have, want = stored.get(key), implied.get(key)
        row = want or have or {}
        index = row.get("leaf_index", row.get("applied_index"))
        where = index if isinstance(index, int) else None
        record_id = row.get("record_id")
        record = str(record_id) if record_id is not None else None
        if want is None:
            detail = f"{table} row {key!r} is implied by no decision record of the log"
        elif have is None:
            detail = f"{table} row {key!r} is missing: the log's decision records imply it"
        else:
            changed = [c for c in want if have.get(c) != want[c]]
            if not changed:
                continue
            values = "; ".join(
                f"{c} is {have.get(c)!r}, the records say {want[c]!r}" for c in changed
            )
            detail = f"{table} row {key!r} differs from what its decision records imply: {values}"
        findings.append(AuditFinding("risk", where, record, detail))
    return findings


class _LogPrefix(Log):
    """``log`` as it was at ``size`` leaves, for replaying exactly what a sync had seen:
    :meth:`refresh` and :meth:`scan` stop there."""

    def __init__(self, path: Path, size: int, *, database_url: str | None = None) -> None:
        super().__init__(path, database_url=database_url)
        self._cut = size

    def refresh(self) -> int:
        return min(super().refresh(), self._cut)

    def scan(
        self,
        *,
        start: int = 0,
        limit: int = 100,
        kind: str | None = None,
        actor: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> list[Entry]:
        found = super().scan(
            start=start, limit=limit, kind=kind, actor=actor, since_ms=since_ms, until_ms=until_ms
        )
        return [entry for entry in found if entry.index < self._cut]
