"""The SQLite log: appends, idempotency, proofs from stored subtrees, restart, audit."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chainaudit import bundles, merkle
from chainaudit.errors import ConflictError, NotFoundError, StoreError
from chainaudit.records import PreparedRecord, prepare
from chainaudit.store import Log
from tests.tamper import (
    delete_record,
    replace_in_body,
    rewrite_node,
    rewrite_tree,
    set_body,
    stored_records,
    write_records,
)


def make(i: int, **change: Any) -> PreparedRecord:
    record = {
        "id": f"rec-{i}",
        "kind": "transaction",
        "timestamp": "2026-11-21T09:30:00Z",
        "actor": "supplier:globex",
        "payload": {"amount": i, "currency": "USD"},
        **change,
    }
    return prepare(record)


@pytest.fixture
def log(tmp_path: Path) -> Log:
    return Log.open(tmp_path / "data")


def test_empty_log(log: Log) -> None:
    assert log.size == 0
    assert log.root() == merkle.EMPTY_ROOT
    assert log.audit().clean


def test_proofs_match_reference_builders_at_every_size(log: Log) -> None:
    records = [make(i) for i in range(70)]
    leaves = [r.leaf_hash for r in records]
    for start in range(0, 70, 9):  # uneven batches exercise every frontier shape
        log.append(records[start : start + 9])
    assert log.root() == merkle.root_hash(leaves)
    for size in range(1, 71):
        assert log.root_at(size) == merkle.root_hash(leaves[:size])
        for index in range(size):
            assert log.inclusion_proof(index, size) == merkle.inclusion_proof(leaves[:size], index)
        for old in range(size + 1):
            assert log.consistency_proof(old, size) == merkle.consistency_proof(leaves[:size], old)


def test_proof_reads_are_logarithmic(log: Log) -> None:
    log.append([make(i) for i in range(1000)])
    statements: list[str] = []
    log._db.set_trace_callback(statements.append)
    proof = log.inclusion_proof(377)
    consistency = log.consistency_proof(333)
    log._db.set_trace_callback(None)
    assert len(statements) == 2  # one batched read per proof, never a scan of the tree
    assert len(proof) <= 10 and len(consistency) <= 20


def test_restart_reloads_without_rebuilding(tmp_path: Path) -> None:
    records = [make(i) for i in range(101)]
    with Log.open(tmp_path) as first:
        first.append(records[:100])
        root = first.root()
    with Log.open(tmp_path) as again:
        assert again.size == 100 and again.root() == root
        again.append(records[100:])
        assert again.root() == merkle.root_hash([r.leaf_hash for r in records])


def test_resubmission_is_idempotent_and_conflicts_are_refused(log: Log) -> None:
    first = log.append([make(1), make(2)])
    again = log.append([make(2), make(3), make(3)])
    assert (again.appended, again.duplicates) == (1, 2)
    assert again.indexes == (1, 2, 2)
    assert first.indexes == (0, 1)
    root = log.root()
    with pytest.raises(ConflictError, match="rec-1"):
        log.append([make(9), make(1, actor="someone:else")])
    assert log.size == 3 and log.root() == root  # nothing of the refused batch was written
    with pytest.raises(ConflictError):
        log.append([make(7), make(7, payload={"amount": 8})])
    assert log.size == 3


def test_failed_transaction_leaves_nothing(log: Log) -> None:
    log.append([make(0)])
    with pytest.raises(RuntimeError), log.transaction() as batch:
        batch.append([make(1), make(2)])
        raise RuntimeError("crash in the middle")
    assert log.size == 1
    assert log.refresh() == 1
    with pytest.raises(NotFoundError):
        log.entry("rec-1")
    assert log.audit().clean


def test_two_connections_see_each_others_appends(tmp_path: Path) -> None:
    records = [make(i) for i in range(3)]
    with Log.open(tmp_path) as a, Log.open(tmp_path) as b:
        a.append(records[:1])
        b.append(records[1:2])  # b re-reads the size before extending it
        a.append(records[2:])
        assert b.refresh() == 3
        assert a.root() == b.root() == merkle.root_hash([r.leaf_hash for r in records])


def test_entries_and_errors(log: Log) -> None:
    log.append([make(i) for i in range(5)])
    entry = log.entry("rec-3")
    assert entry.index == 3 and entry.leaf_hash == merkle.hash_leaf(entry.body or b"")
    assert log.entry_at(3) == entry
    with pytest.raises(NotFoundError):
        log.entry("absent")
    with pytest.raises(NotFoundError):
        log.inclusion_proof(5)
    with pytest.raises(NotFoundError):
        log.consistency_proof(6)
    with pytest.raises(NotFoundError):
        log.root_at(6)


def test_unopenable_store_raises_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError):
        Log.open(blocker / "sub")


# -- audit: every kind of tampering is found and named ----------------------------------------


def tamper(log: Log, edit: Callable[[sqlite3.Connection], None]) -> None:
    db = sqlite3.connect(log.path)
    with db:
        edit(db)
    db.close()


@pytest.fixture
def filled(log: Log) -> Log:
    log.append([make(i) for i in range(64)])
    log.append([make(i) for i in range(64, 100)])
    return log


def problems(log: Log) -> list[tuple[str, int | None, str | None]]:
    return [(f.problem, f.index, f.record_id) for f in log.audit().findings]


def test_audit_clean(filled: Log) -> None:
    report = filled.audit()
    assert report.clean and report.records_checked == 100 and report.root == filled.root()


def test_audit_names_altered_record(filled: Log) -> None:
    tamper(filled, lambda db: replace_in_body(db, 7, '"amount":7,', '"amount":70,'))
    assert problems(filled) == [("altered", 7, "rec-7")]


def test_audit_names_reordered_records(filled: Log) -> None:
    def swap(db: sqlite3.Connection) -> None:
        records = stored_records(db)
        records[10], records[42] = (
            records[42]._replace(leaf_index=10),
            records[10]._replace(leaf_index=42),
        )
        write_records(db, records.values())
        db.execute("UPDATE record_ids SET idx = 52 - idx WHERE idx IN (10, 42)")

    tamper(filled, swap)
    assert problems(filled) == [("reordered", 10, "rec-42"), ("reordered", 42, "rec-10")]


def test_audit_names_deleted_and_inserted_records(filled: Log) -> None:
    def edit(db: sqlite3.Connection) -> None:
        records = stored_records(db)
        del records[5], records[99]
        forged = make(100, id="forged")
        records[100] = bundles.Stored(*forged[:4], 100, forged.body)
        write_records(db, records.values())
        db.execute("DELETE FROM record_ids WHERE idx IN (5, 99)")
        db.execute("INSERT INTO record_ids VALUES ('forged', 100)")

    tamper(filled, edit)
    assert problems(filled) == [
        ("deleted", 5, None),
        ("deleted", 99, None),
        ("inserted", 100, "forged"),
    ]


def test_audit_names_records_the_id_index_misleads_about(filled: Log) -> None:
    def edit(db: sqlite3.Connection) -> None:
        db.execute("UPDATE record_ids SET idx = 3 WHERE record_id = 'rec-4'")
        db.execute("DELETE FROM record_ids WHERE record_id = 'rec-8'")
        db.execute("INSERT INTO record_ids VALUES ('ghost', 50)")

    tamper(filled, edit)
    assert problems(filled) == [
        ("index", None, "ghost"),
        ("index", 4, "rec-4"),
        ("index", 8, "rec-8"),
    ]
    with pytest.raises(NotFoundError):
        filled.entry("rec-4")  # the index points at rec-3, which is not served as rec-4
    assert filled.entry_at(4).record_id == "rec-4"


def test_audit_reports_a_record_stored_twice_or_in_the_wrong_bundle(filled: Log) -> None:
    def edit(db: sqlite3.Connection) -> None:
        records = list(stored_records(db).values())
        blob = bundles.encode_at([records[1], records[1], records[0]._replace(leaf_index=300)])
        db.execute("UPDATE bundles SET records = ? WHERE id = 0", (blob,))

    tamper(filled, edit)
    found = problems(filled)
    assert ("inserted", 1, "rec-1") in found  # the second copy
    assert ("inserted", 300, "rec-0") in found  # leaf 300 belongs in bundle 1
    assert ("deleted", 0, None) in found and ("deleted", 2, None) in found


def test_audit_names_a_record_whose_stored_id_disagrees_with_its_content(filled: Log) -> None:
    def edit(db: sqlite3.Connection) -> None:
        records = stored_records(db)
        records[6] = records[6]._replace(record_id="rec-x6")  # the body still says rec-6
        write_records(db, records.values())
        db.execute("UPDATE record_ids SET record_id = 'rec-x6' WHERE idx = 6")

    tamper(filled, edit)
    assert problems(filled) == [("altered", 6, "rec-x6")]


def test_audit_reports_an_unreadable_bundle(filled: Log) -> None:
    tamper(filled, lambda db: db.execute("UPDATE bundles SET records = X'00' WHERE id = 0"))
    report = filled.audit()
    assert report.findings[0].problem == "altered" and "bundle 0 is damaged" in (
        report.findings[0].detail
    )
    assert [f.index for f in report.findings if f.problem == "deleted"] == list(range(100))
    with pytest.raises(StoreError, match="bundle 0 is damaged"):
        filled.entry_at(3)


def test_audit_finds_a_rewritten_tree_node(filled: Log) -> None:
    db = sqlite3.connect(filled.path)
    with db:
        rewrite_node(db, 2, 3, bytes(32))
    db.close()
    # node (2, 3) over leaves [12, 16) no longer matches its children, nor its parent (3, 1)
    assert problems(filled) == [("tree", 8, None), ("tree", 12, None)]


def test_audit_finds_consistently_rewritten_history(filled: Log) -> None:
    """An attacker who rewrites a record, its leaf and every node above it is still caught
    by the checkpoints recorded at each commit."""
    forged = make(3, payload={"amount": 3000, "currency": "USD"})
    leaves = [filled.leaf_hash(i) for i in range(100)]
    leaves[3] = forged.leaf_hash
    db = sqlite3.connect(filled.path)
    with db:
        set_body(db, 3, forged.body)
        rewrite_tree(db, leaves)
    db.close()
    found = problems(filled)
    assert ("history", 0, None) in found  # leaves [0, 64) no longer give the first checkpoint


def test_records_naming_a_deal_are_linked_to_it(log: Log) -> None:
    log.append(
        [
            make(1, payload={"deal_id": "7", "event": "MilestoneFunded"}),
            make(2),
            make(3, payload={"deal_id": 7, "decision": "allow"}),
            make(4, payload={"deal_id": "8"}),
            make(5, payload={"note": 'mentions "deal_id": 7 only in text'}),
        ]
    )
    assert [e.record_id for e in log.deal_entries("7")] == ["rec-1", "rec-3"]
    assert [e.record_id for e in log.deal_entries("8")] == ["rec-4"]
    assert log.deal_entries("9") == []


def test_appends_go_on_past_a_damaged_edge_bundle_and_keep_the_damage_visible(
    filled: Log,
) -> None:
    tamper(filled, lambda db: delete_record(db, 42))
    filled.append([make(i) for i in range(100, 110)])
    assert filled.entry("rec-105").index == 105
    assert problems(filled) == [("deleted", 42, None)]
    tamper(filled, lambda db: db.execute("UPDATE bundles SET records = X'00'"))
    with pytest.raises(StoreError, match="bundle 0 is damaged"):
        filled.append([make(200)])
    assert filled.refresh() == 110
