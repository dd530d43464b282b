"""``Log.audit`` split over ranges of the log and worker processes (``jobs``) reports exactly
what the one-range audit reports, in the same order, on SQLite and on PostgreSQL, and
``chainaudit audit --jobs N`` prints the same report for every N."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chainaudit.core import provenance
from chainaudit.core.records import PreparedRecord, prepare
from chainaudit.log import bundles, database, datakeys
from chainaudit.log.store import AuditReport, Log
from tests.cli.test_log_commands import run
from tests.tamper import rewrite_node, stored_records, write_records

SIZE = 1300
"""Six ranges of 256 leaves, the last one partial."""


def make(i: int, submitter: str | None = None, **change: Any) -> PreparedRecord:
    record = {
        "id": f"rec-{i}",
        "kind": "transaction",
        "timestamp": "2026-11-21T09:30:00Z",
        "actor": "supplier:globex",
        "payload": {"amount": i, "currency": "USD"},
        **change,
    }
    return prepare(record, submitter=submitter)


def decision(i: int, submitter: str | None) -> PreparedRecord:
    """A reserved record: only the risk service may write it."""
    payload = {"type": "alert", "alert_id": f"AL-{i}", "transition": "resolved"}
    return make(i, submitter, id=f"dec-{i}", kind="decision", actor="risk-engine", payload=payload)


def records() -> list[PreparedRecord]:
    """Leaf 2 reserved and unstamped before stamping began (leaf 3); leaf 600, three ranges
    later, reserved and unstamped after it."""
    special = {2: decision(2, None), 3: decision(3, provenance.RISK), 600: decision(600, None)}
    return [special.get(i) or make(i) for i in range(SIZE)]


@pytest.fixture
def log(tmp_path: Path, log_database: str | None) -> Iterator[Log]:
    with Log.open(tmp_path / "data", database_url=log_database) as opened:
        rows = records()
        for start in range(0, SIZE, 500):
            opened.append(rows[start : start + 500])
        yield opened


def damage(db: Any) -> None:
    """Edits in most ranges: an altered record (300), two swapped across ranges (10, 800),
    records deleted at a range's end and the next one's start (511, 512), a body gone (700),
    a record past the tree (1300), a bundle unreadable (leaves 1024-1151), an id index row for
    no record, a node inside a range (level 2) and one above all ranges (level 9)."""
    stored = stored_records(db)
    stored[300] = stored[300]._replace(
        body=stored[300].body.replace(b'"amount":300', b'"amount":3')
    )
    stored[10], stored[800] = (
        stored[800]._replace(leaf_index=10),
        stored[10]._replace(leaf_index=800),
    )
    del stored[511], stored[512]
    stored[700] = stored[700]._replace(body=None)
    forged = make(SIZE, id="forged")
    stored[SIZE] = bundles.Stored(*forged[:4], SIZE, forged.body)
    write_records(db, stored.values())
    db.execute("UPDATE record_ids SET idx = 810 - idx WHERE idx IN (10, 800)")
    db.execute("DELETE FROM record_ids WHERE idx IN (511, 512)")
    db.execute("INSERT INTO record_ids VALUES ('forged', ?)", (SIZE,))
    db.execute("INSERT INTO record_ids VALUES ('ghost', 900)")
    db.execute("UPDATE bundles SET records = ? WHERE id = ?", (b"\x00", bundles.key(1024)))
    rewrite_node(db, 2, 160, bytes(32))
    rewrite_node(db, 9, 0, bytes(32))


def tamper(log: Log, edit: Callable[[Any], None]) -> None:
    db = database.connect(log.database_url or log.path)
    try:
        with db.write():
            edit(db)
    finally:
        db.close()


def as_dict(report: AuditReport) -> dict[str, Any]:
    return dataclasses.asdict(report)


def test_a_parallel_audit_reports_what_the_serial_one_does(log: Log) -> None:
    tamper(log, damage)
    serial = log.audit()
    kinds = {f.problem for f in serial.findings}
    assert kinds == {
        "altered", "reordered", "deleted", "inserted", "tree", "index", "erased", "unstamped",
        "unentitled", "history",
    }  # fmt: skip
    after = next(f for f in serial.findings if f.index == 600)
    assert after.problem == "unentitled" and "after leaf 3 was stamped" in after.detail
    ranged = log.audit(chunk_leaves=256)
    parallel = log.audit(jobs=2, chunk_leaves=256)
    assert as_dict(ranged) == as_dict(serial)
    assert as_dict(parallel) == as_dict(serial)
    assert parallel.records_checked == SIZE - 2 - 128 + 1


def test_an_undamaged_log_audits_alike_in_parallel(log: Log) -> None:
    report = log.audit(jobs=2, chunk_leaves=256)
    assert [(f.problem, f.index) for f in report.findings] == [
        ("unstamped", 2),
        ("unentitled", 600),
    ]
    assert report.records_checked == SIZE and report.root == log.root()
    assert report.nodes_checked == SIZE - bin(SIZE).count("1")  # every node above the leaves


def test_bad_jobs_or_ranges_are_refused(log: Log) -> None:
    with pytest.raises(ValueError, match="jobs"):
        log.audit(jobs=0)
    with pytest.raises(ValueError, match="power of two"):
        log.audit(chunk_leaves=300)


def test_the_audit_command_prints_the_same_report_for_any_jobs(tmp_path: Path) -> None:
    """5000 records: the command's ranges (4096 leaves at least) are then two."""
    data = tmp_path / "data"
    with Log.open(data) as log:
        rows = [make(i) for i in range(5000)]
        rows[4500] = decision(4500, None)
        rows[10] = decision(10, provenance.RISK)
        log.append(rows)
        tamper(log, lambda db: rewrite_node(db, 3, 300, bytes(32)))
        tamper(log, lambda db: db.execute("DELETE FROM record_ids WHERE record_id = 'rec-4200'"))
    one = run(data, "audit", "--json", "--jobs", "1", check_rc=1)
    two = run(data, "audit", "--json", "--jobs", "2", check_rc=1)
    assert one.stdout == two.stdout
    assert '"problem": "unentitled"' in one.stdout and "after leaf 10 was stamped" in one.stdout
    assert run(data, "audit", "--jobs", "0", check_rc=2).stderr


def test_workers_open_sealed_bodies_with_the_master_key(tmp_path: Path) -> None:
    """Records sealed at rest: each worker opens the data keys itself; a destroyed key (the
    body gone, no erasure record) is reported alike."""
    at_rest = datakeys.AtRest(os.urandom(32), frozenset({"transaction"}))
    with Log.open(tmp_path / "data", at_rest=at_rest) as log:
        log.append([make(i) for i in range(700)])
        assert log.destroy_keys([100, 650]) == 2
        serial = log.audit()
        assert [(f.problem, f.index) for f in serial.findings] == [("erased", 100), ("erased", 650)]
        assert as_dict(log.audit(jobs=2, chunk_leaves=256)) == as_dict(serial)


def test_a_parallel_audit_beside_a_live_writer_reports_nothing(
    tmp_path: Path, log_database: str | None
) -> None:
    """Workers read ranges below the size the audit read first; records appended meanwhile
    (in the last range, or past it) are not reported as inserted."""
    with Log.open(tmp_path / "data", database_url=log_database) as log:
        log.append([make(i) for i in range(600)])
        writer = Log(log.path, database_url=log.database_url)
        done = threading.Event()

        def append_many() -> None:
            try:
                for batch in range(150, 300):
                    writer.append([make(batch * 4 + k) for k in range(4)])
            finally:
                done.set()

        thread = threading.Thread(target=append_many)
        thread.start()
        audits = 0
        try:
            while not done.is_set() or audits == 0:
                report = log.audit(jobs=2, chunk_leaves=256)
                assert report.clean, report.findings[:3]
                audits += 1
        finally:
            thread.join()
            writer.close()
        assert log.audit(jobs=2, chunk_leaves=256).records_checked == 1200
