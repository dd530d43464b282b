"""The SQLite log: appends, idempotency, proofs from stored subtrees, restart, audit."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from chainaudit import merkle
from chainaudit.errors import ConflictError, NotFoundError, StoreError
from chainaudit.records import PreparedRecord, prepare
from chainaudit.store import Log
from tests.tamper import rewrite_node, rewrite_tree


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


def tamper(log: Log, *statements: str) -> None:
    db = sqlite3.connect(log.path)
    for statement in statements:
        db.execute(statement)
    db.commit()
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
    tamper(
        filled,
        "UPDATE records SET body = replace(body, '\"amount\":7,', '\"amount\":70,') WHERE idx = 7",
    )
    assert problems(filled) == [("altered", 7, "rec-7")]


def test_audit_names_reordered_records(filled: Log) -> None:
    tamper(
        filled,
        "UPDATE records SET idx = -1 WHERE idx = 10",
        "UPDATE records SET idx = 10 WHERE idx = 42",
        "UPDATE records SET idx = 42 WHERE idx = -1",
    )
    assert problems(filled) == [("reordered", 10, "rec-42"), ("reordered", 42, "rec-10")]


def test_audit_names_deleted_and_inserted_records(filled: Log) -> None:
    tamper(
        filled,
        "DELETE FROM records WHERE idx IN (5, 99)",
        "INSERT INTO records VALUES (100, 'forged', 'transaction', 'x', 0, X'7b7d')",
    )
    assert problems(filled) == [
        ("deleted", 5, None),
        ("deleted", 99, None),
        ("inserted", 100, "forged"),
    ]


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
        db.execute("UPDATE records SET body = ? WHERE idx = 3", (forged.body,))
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
