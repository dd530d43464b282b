"""The log, on SQLite and on PostgreSQL: appends, idempotency, proofs from stored subtrees,
restart, audit."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from chainaudit.core import merkle, provenance
from chainaudit.core.errors import ConfigError, ConflictError, NotFoundError, StoreError
from chainaudit.core.records import PreparedRecord, prepare
from chainaudit.core.signing import sign_record
from chainaudit.log import bundles, database
from chainaudit.log.store import Log
from chainaudit.service import erasure
from chainaudit.service.anchoring import AnchorBook
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
def log(tmp_path: Path, log_database: str | None) -> Iterator[Log]:
    with Log.open(tmp_path / "data", database_url=log_database) as opened:
        yield opened


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
    log._db.trace = statements.append
    proof = log.inclusion_proof(377)
    consistency = log.consistency_proof(333)
    log._db.trace = None
    assert len(statements) == 2  # one batched read per proof, never a scan of the tree
    assert len(proof) <= 10 and len(consistency) <= 20


def test_restart_reloads_without_rebuilding(tmp_path: Path, log_database: str | None) -> None:
    records = [make(i) for i in range(101)]
    with Log.open(tmp_path, database_url=log_database) as first:
        first.append(records[:100])
        root = first.root()
    statements: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(database.Database, "trace", statements.append)
        again = Log.open(tmp_path, database_url=log_database)
    with again:
        assert again.size == 100 and again.root() == root
        reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert not any("bundles" in s for s in reads)  # the frontier's tiles, no record
        assert len(reads) <= 4, reads
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


def test_two_connections_see_each_others_appends(tmp_path: Path, log_database: str | None) -> None:
    records = [make(i) for i in range(3)]
    with (
        Log.open(tmp_path, database_url=log_database) as a,
        Log.open(tmp_path, database_url=log_database) as b,
    ):
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


def tamper(log: Log, edit: Callable[[Any], None]) -> None:
    """Run ``edit`` on a connection of its own to the log's database, as one transaction."""
    db = database.connect(log.database_url or log.path)
    try:
        with db.write():
            edit(db)
    finally:
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
    def swap(db: Any) -> None:
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
    def edit(db: Any) -> None:
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
    def edit(db: Any) -> None:
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
    def edit(db: Any) -> None:
        records = list(stored_records(db).values())
        blob = bundles.encode_at([records[1], records[1], records[0]._replace(leaf_index=300)])
        db.execute("UPDATE bundles SET records = ? WHERE id = 0", (blob,))

    tamper(filled, edit)
    found = problems(filled)
    assert ("inserted", 1, "rec-1") in found  # the second copy
    assert ("inserted", 300, "rec-0") in found  # leaf 300 belongs in bundle 1
    assert ("deleted", 0, None) in found and ("deleted", 2, None) in found


def test_audit_names_a_record_whose_stored_id_disagrees_with_its_content(filled: Log) -> None:
    def edit(db: Any) -> None:
        records = stored_records(db)
        records[6] = records[6]._replace(record_id="rec-x6")  # the body still says rec-6
        write_records(db, records.values())
        db.execute("UPDATE record_ids SET record_id = 'rec-x6' WHERE idx = 6")

    tamper(filled, edit)
    assert problems(filled) == [("altered", 6, "rec-x6")]


def test_audit_reports_an_unreadable_bundle(filled: Log) -> None:
    tamper(filled, lambda db: db.execute("UPDATE bundles SET records = ? WHERE id = 0", (b"\x00",)))
    report = filled.audit()
    assert report.findings[0].problem == "altered" and "bundle 0 is damaged" in (
        report.findings[0].detail
    )
    assert [f.index for f in report.findings if f.problem == "deleted"] == list(range(100))
    with pytest.raises(StoreError, match="bundle 0 is damaged"):
        filled.entry_at(3)


def test_audit_finds_a_rewritten_tree_node(filled: Log) -> None:
    tamper(filled, lambda db: rewrite_node(db, 2, 3, bytes(32)))
    # node (2, 3) over leaves [12, 16) no longer matches its children, nor its parent (3, 1)
    assert problems(filled) == [("tree", 8, None), ("tree", 12, None)]


def test_audit_finds_consistently_rewritten_history(filled: Log) -> None:
    """An attacker who rewrites a record, its leaf and every node above it is still caught
    by the checkpoints recorded at each commit."""
    forged = make(3, payload={"amount": 3000, "currency": "USD"})
    leaves = [filled.leaf_hash(i) for i in range(100)]
    leaves[3] = forged.leaf_hash

    def edit(db: Any) -> None:
        set_body(db, 3, forged.body)
        rewrite_tree(db, leaves)

    tamper(filled, edit)
    found = problems(filled)
    assert ("history", 0, None) in found  # leaves [0, 64) no longer give the first checkpoint


def test_appends_go_on_past_a_damaged_edge_bundle_and_keep_the_damage_visible(
    filled: Log,
) -> None:
    tamper(filled, lambda db: delete_record(db, 42))
    filled.append([make(i) for i in range(100, 110)])
    assert filled.entry("rec-105").index == 105
    assert problems(filled) == [("deleted", 42, None)]
    tamper(filled, lambda db: db.execute("UPDATE bundles SET records = ?", (b"\x00",)))
    with pytest.raises(StoreError, match="bundle 0 is damaged"):
        filled.append([make(200)])
    assert filled.refresh() == 110


# -- audit: what the records say, and the indexes derived from them ---------------------------

CHAIN_ID = 31337
ALICE = Account.from_key("0x" + "a1" * 32)
MALLORY = Account.from_key("0x" + "3a" * 32)


def test_audit_names_an_erased_record_even_when_relabelled(filled: Log) -> None:
    """No erasure record exists yet: a missing body is always reported, and so is one whose
    stored id, kind, actor and time were changed to hide what it was."""

    def edit(db: Any) -> None:
        records = stored_records(db)
        records[7] = records[7]._replace(
            record_id="note-7", kind="document", actor="nobody", timestamp_ms=0, body=None
        )
        records[9] = records[9]._replace(body=None)
        write_records(db, records.values())
        db.execute("UPDATE record_ids SET record_id = 'note-7' WHERE idx = 7")

    tamper(filled, edit)
    assert problems(filled) == [("erased", 7, "note-7"), ("erased", 9, "rec-9")]


def signed_log(log: Log) -> Log:
    """Records rec-0 .. rec-9; rec-5 signed by Alice, rec-6 signed by nobody."""
    records = [make(i) for i in range(10)]
    signature = sign_record(ALICE, CHAIN_ID, "rec-5", records[5].leaf_hash)
    log.append(records, {"rec-5": (ALICE.address, signature)})
    return log


def test_audit_checks_signatures_against_the_chain_the_log_was_anchored_on(log: Log) -> None:
    signed_log(log)
    assert log.audit(chain_id=CHAIN_ID).clean
    assert problems(log) == [("signature", 5, "rec-5")]  # never anchored: no chain to check
    assert "no chain id is known" in log.audit().findings[0].detail
    assert problems_on(log, CHAIN_ID + 1) == [("signature", 5, "rec-5")]
    book = AnchorBook(log)
    book.create(log.size, log.root(), CHAIN_ID, "0x" + "cc" * 20)
    book.close()
    assert log.audit().clean


def problems_on(log: Log, chain_id: int) -> list[tuple[str, int | None, str | None]]:
    return [(f.problem, f.index, f.record_id) for f in log.audit(chain_id=chain_id).findings]


def test_audit_names_rewritten_signatures(log: Log) -> None:
    """rec-5 "signed by Mallory", the never-signed rec-6 "signed by Alice" (her signature of
    rec-5 copied), and a signature of a record the log does not hold."""
    signed_log(log)
    (alices,) = log._db.execute("SELECT signature FROM record_signatures").fetchone()

    def edit(db: Any) -> None:
        db.execute("UPDATE record_signatures SET signer = ?", (MALLORY.address,))
        db.execute(
            "INSERT INTO record_signatures VALUES ('rec-6', ?, ?), ('rec-99', ?, ?)",
            (ALICE.address, alices, ALICE.address, alices),
        )

    tamper(log, edit)
    assert log.signature("rec-5") == (MALLORY.address, alices)  # what the API would serve
    findings = log.audit(chain_id=CHAIN_ID).findings
    assert [(f.problem, f.index, f.record_id) for f in findings] == [
        ("signature", None, "rec-99"),
        ("signature", 5, "rec-5"),
        ("signature", 6, "rec-6"),
    ]
    assert f"stored as signed by {MALLORY.address}" in findings[1].detail
    assert f"made by {ALICE.address} on chain {CHAIN_ID}" in findings[1].detail
    assert "for a record the log does not hold" in findings[0].detail
    tamper(log, lambda db: db.execute("UPDATE record_signatures SET signature = '0x00'"))
    assert "nobody (malformed)" in log.audit(chain_id=CHAIN_ID).findings[1].detail


def decision(i: int, submitter: str | None, **change: Any) -> PreparedRecord:
    record = {
        "id": f"dec-{i}",
        "kind": "decision",
        "timestamp": "2026-11-21T09:30:00Z",
        "actor": "risk-engine",
        "payload": {"type": "alert", "alert_id": f"AL-{i}", "transition": "resolved"},
        **change,
    }
    return prepare(record, submitter=submitter)


def test_a_log_written_by_current_code_audits_clean(log: Log) -> None:
    log.append(
        [
            make(0),  # an unreserved record needs no submitter
            make(1, id="po-1", submitter=provenance.key_submitter("k1")),  # via the API
            decision(2, provenance.RISK),
            decision(3, provenance.INDEXER, kind="escrow_event", id="escrow:31337:0xab:0:0"),
            decision(4, provenance.KEYS, kind="admin", id="action-key-created-1"),
        ]
    )
    assert log.audit().clean


def test_audit_reads_one_snapshot_while_another_connection_appends(log: Log) -> None:
    """An audit running beside a live writer (the API appending read records, say) sees the
    log as of one moment: never an id indexed whose record is not yet visible."""
    log.append([make(0)])
    writer = Log(log.path, database_url=log.database_url)
    done = threading.Event()

    def append_many() -> None:
        try:
            for batch in range(1, 150):
                writer.append([make(batch * 4 + k) for k in range(4)])
        finally:
            done.set()

    thread = threading.Thread(target=append_many)
    thread.start()
    audits = 0
    try:
        while not done.is_set() or audits == 0:
            report = log.audit()
            assert report.clean, report.findings[:3]
            audits += 1
    finally:
        thread.join()
        writer.close()
    assert audits > 1 and log.audit().records_checked == 1 + 149 * 4


def test_audit_names_records_their_submitter_may_not_write(log: Log) -> None:
    log.append(
        [
            decision(0, provenance.key_submitter("buyer")),  # a partner's "clearance"
            decision(1, provenance.API, kind="escrow_event"),  # only the indexer's
            make(2, id="escrow:31337:0xab:7:0", submitter="local:ops"),  # a squatted id
            decision(3, provenance.RISK),
            decision(4, None),  # no submitter, after stamping began: forged
        ]
    )
    findings = log.audit().findings
    assert [(f.problem, f.index, f.record_id) for f in findings] == [
        ("unentitled", 0, "dec-0"),
        ("unentitled", 1, "dec-1"),
        ("unentitled", 2, "escrow:31337:0xab:7:0"),
        ("unentitled", 4, "dec-4"),
    ]
    assert findings[0].detail == (
        "submitted by 'key:buyer', which may not write the reserved kind 'decision'; "
        "readers ignore it"
    )
    assert "'service:api', which may not write the reserved kind 'escrow_event'" in (
        findings[1].detail
    )
    assert "'local:ops', which may not write ids in the reserved namespace 'escrow:'" in (
        findings[2].detail
    )
    assert findings[3].detail == (
        "no submitter, though only the service writes the reserved kind 'decision', and it was "
        "appended after leaf 0 was stamped; readers ignore it"
    )


def test_audit_reports_reserved_records_from_before_stamping_as_unstamped(log: Log) -> None:
    """A log written before submitters existed: its reserved records cannot be attributed to
    the service, and say so under their own name; once stamping begins, a record without a
    stamp is a forgery."""
    log.append([decision(0, None), make(1), decision(2, None)])
    log.append([decision(3, provenance.RISK), decision(4, None)])
    findings = log.audit().findings
    assert [(f.problem, f.index) for f in findings] == [
        ("unstamped", 0),
        ("unstamped", 2),
        ("unentitled", 4),
    ]
    assert "the record predates submitter stamping" in findings[0].detail


def test_audit_of_a_damaged_store_with_signatures_still_reports(log: Log) -> None:
    signed_log(log)
    log.append([make(10, payload={"deal_id": "D-1"})])
    tamper(log, lambda db: db.execute("UPDATE bundles SET records = ? WHERE id = 0", (b"\x00",)))
    found = problems(log)
    assert ("signature", None, "rec-5") in found
    assert [i for p, i, _ in found if p == "deleted"] == list(range(11))


# -- many processes, one tree (PostgreSQL) -----------------------------------------------------

ROUNDS = 150


def shared(i: int) -> PreparedRecord:
    """A record every writer submits with the same content (re-submissions)."""
    return make(i, id=f"c-{i}")


def _append_concurrently(
    url: str, data_dir: str, writer: int, start: Any, out: Any
) -> None:  # pragma: no cover - runs in a child process
    """One writer: ``ROUNDS`` batches, each with a record of its own; every third also with
    two records the other writer submits too (same content), every fifth with an id both use
    with different content (a conflict: the later batch is refused whole). Reports what was
    acknowledged and refused."""
    acknowledged: list[tuple[str, int]] = []
    refused: list[list[str]] = []
    try:
        _append_rounds(url, data_dir, writer, start, acknowledged, refused)
    except Exception as exc:
        out.put(f"writer {writer} failed: {exc!r}")
        raise
    out.put((acknowledged, refused))


def _append_rounds(
    url: str,
    data_dir: str,
    writer: int,
    start: Any,
    acknowledged: list[tuple[str, int]],
    refused: list[list[str]],
) -> None:  # pragma: no cover - runs in a child process
    with Log.open(data_dir, database_url=url) as log:
        start.wait()
        for k in range(ROUNDS):
            batch = [make(k, id=f"w{writer}-{k}")]
            if k % 3 == 0:
                batch += [shared(2 * k), shared(2 * k + 1)]
            if k % 5 == 0:
                batch.append(make(k, id=f"x-{k}", actor=f"writer:{writer}"))
            try:
                result = log.append(batch)
            except ConflictError:
                refused.append([r.record_id for r in batch])
                continue
            acknowledged.extend(zip([r.record_id for r in batch], result.indexes, strict=True))


def test_two_processes_append_to_one_postgresql_log_as_one_tree(
    tmp_path: Path, database_url: str
) -> None:
    """Two processes append at once, with overlapping and conflicting ids: one tree, no gap
    and no duplicate; every acknowledged id once, at the index its writer was told; every
    refused-only id absent; the audit clean; the root that of a fresh build of the leaves."""
    import multiprocessing  # noqa: PLC0415

    Log.open(tmp_path, database_url=database_url).close()  # the schema, before the writers
    context = multiprocessing.get_context("spawn")
    start, out = context.Barrier(2), context.Queue()
    writers = [
        context.Process(
            target=_append_concurrently, args=(database_url, str(tmp_path), w, start, out)
        )
        for w in (1, 2)
    ]
    for process in writers:
        process.start()
    results = [out.get(timeout=120) for _ in writers]
    assert not [r for r in results if isinstance(r, str)], results
    for process in writers:
        process.join(timeout=30)
        assert process.exitcode == 0
    acknowledged = {rid: idx for done, _ in results for rid, idx in done}
    refused = {rid for _, batches in results for batch in batches for rid in batch}
    assert all(done for done, _ in results)  # both writers got batches in
    conflicting = len(range(0, ROUNDS, 5))
    # each writer submits x-k once, with its own content: one of the two batches k is refused
    assert sum(len(batches) for _, batches in results) == conflicting
    with Log.open(tmp_path, database_url=database_url) as log:
        entries = list(log.entries())
        assert [e.index for e in entries] == list(range(log.size))  # no gap
        ids = [e.record_id for e in entries]
        assert len(ids) == len(set(ids))  # no duplicate
        assert set(ids) == set(acknowledged)  # nothing acknowledged lost, nothing else kept
        for rid, idx in acknowledged.items():
            assert log.entry(rid).index == idx
        assert not (refused - set(acknowledged)) & set(ids)
        assert {rid for rid in ids if rid.startswith("x-")} == {
            f"x-{k}" for k in range(0, ROUNDS, 5)
        }
        assert log.size == 2 * ROUNDS + 2 * len(range(0, ROUNDS, 3))
        assert log.root() == merkle.root_hash([e.leaf_hash for e in entries])
        assert log.audit().clean
        sizes = [size for size, _ in log.checkpoints()]
        assert sizes == sorted(set(sizes)) and sizes[-1] == log.size


def _relation_bytes(log: Log) -> bytes:
    """What someone holding the server's files can read of the bundles table (and its TOAST
    table): the raw bytes plus every Zstandard frame in them decompressed."""
    import zstandard  # noqa: PLC0415

    db = database.connect(str(log.database_url))
    try:
        db.execute("CHECKPOINT")  # shared buffers to the files
        (root,) = db.execute("SHOW data_directory").fetchone()
        paths = db.execute(
            "SELECT pg_relation_filepath(oid), pg_relation_filepath(NULLIF(reltoastrelid, 0)) "
            "FROM pg_class WHERE oid = 'bundles'::regclass"
        ).fetchone()
    finally:
        db.close()
    raw = b"".join(
        file.read_bytes()
        for path in paths
        if path is not None
        for file in Path(root).glob(f"{path}*")  # the main file and its 1 GB segments
        if file.name.split(".")[0] == Path(path).name and not file.name.endswith(("_fsm", "_vm"))
    )
    found = [raw]
    start = raw.find(b"\x28\xb5\x2f\xfd")
    while start >= 0:
        with contextlib.suppress(zstandard.ZstdError):
            found.append(zstandard.ZstdDecompressor().decompressobj().decompress(raw[start:]))
        start = raw.find(b"\x28\xb5\x2f\xfd", start + 1)
    return b"".join(found)


def test_erasure_on_postgresql_leaves_no_live_row_and_vacuum_no_dead_one(
    tmp_path: Path, database_url: str
) -> None:
    """On PostgreSQL an erasure rewrites the bundle row: no live row holds the body; the old
    row version stays in the table's file until :meth:`Log.vacuum` rewrites the table."""
    tokens = [f"secret-{i}-{os.urandom(6).hex()}" for i in range(10)]
    with Log.open(tmp_path, database_url=database_url) as log:
        if not Path(_data_directory(database_url)).is_dir():
            pytest.skip("the server's files are not on this machine")
        log.append([make(i, payload={"note": tokens[i]}) for i in range(10)])
        assert tokens[5].encode() in _relation_bytes(log)
        erasure.erase(
            log,
            "rec-5",
            reason="the data subject asked",
            basis="GDPR Art. 17(1)(a)",
            requested_by="key:aaaaaaaaaaaa",
            approved_by="key:bbbbbbbbbbbb",
        )
        live = [r.body or b"" for r in log.records_from(0)]
        assert not any(tokens[5].encode() in body for body in live)
        assert any(tokens[6].encode() in body for body in live)
        assert tokens[5].encode() in _relation_bytes(log)  # the dead row version, until:
        log.vacuum()
        files = _relation_bytes(log)
        assert tokens[5].encode() not in files and tokens[6].encode() in files
        assert log.entry("rec-5").body is None and log.audit().clean


def _data_directory(url: str) -> str:
    db = database.connect(url)
    try:
        return str(db.execute("SHOW data_directory").fetchone()[0])
    finally:
        db.close()


def test_the_oldest_commit_past_a_size_is_read_from_the_checkpoints(log: Log) -> None:
    assert log.oldest_commit_ms_after(0) is None
    log.append([make(0), make(1)])
    log.append([make(2)])
    first, second = (ms for (ms,) in log._db.execute("SELECT created_ms FROM checkpoints"))
    assert log.oldest_commit_ms_after(0) == first and log.oldest_commit_ms_after(1) == first
    assert log.oldest_commit_ms_after(2) == second and log.oldest_commit_ms_after(3) is None


def test_a_data_directory_whose_log_is_in_postgresql_is_not_opened_as_sqlite(
    tmp_path: Path, database_url: str
) -> None:
    """Else a command run without CHAINAUDIT_DATABASE_URL would start a second, empty log."""
    with Log.open(tmp_path, database_url=database_url) as log:
        log.append([make(0)])
    with pytest.raises(ConfigError, match="kept in PostgreSQL"):
        Log.open(tmp_path)
    with Log.open(tmp_path, database_url=database_url) as log:
        assert log.size == 1


def _append_until_killed(url: str | None, data_dir: str, pipe: Any) -> None:  # pragma: no cover
    """Append one record per transaction for ever, reporting each once it is committed."""
    with Log.open(data_dir, database_url=url) as log:
        for i in range(1_000_000):
            result = log.append([make(i, id=f"k-{i}")])
            pipe.send((f"k-{i}", result.indexes[0]))


def test_a_writer_killed_mid_append_loses_no_acknowledged_record(
    tmp_path: Path, log_database: str | None
) -> None:
    """``kill -9`` of a process while it appends: every record it was told is committed
    survives at its index, the log audits clean, and the next writer is not kept waiting
    (the dead writer's lock went with it)."""
    import multiprocessing  # noqa: PLC0415
    import signal  # noqa: PLC0415

    Log.open(tmp_path, database_url=log_database).close()
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    writer = context.Process(target=_append_until_killed, args=(log_database, tmp_path, theirs))
    writer.start()
    acknowledged: dict[str, int] = {}
    try:
        while len(acknowledged) < 150:
            assert ours.poll(60), "the writer stopped reporting"
            rid, idx = ours.recv()
            acknowledged[rid] = idx
    finally:
        os.kill(writer.pid or 0, signal.SIGKILL)
        writer.join(timeout=30)
    while ours.poll(0.2):  # sent before the kill: acknowledged too
        rid, idx = ours.recv()
        acknowledged[rid] = idx
    started = time.monotonic()
    with Log.open(tmp_path, database_url=log_database) as log:
        log.append([make(-1, id="after-the-kill")])
        assert time.monotonic() - started < 10
        for rid, idx in acknowledged.items():
            assert log.entry(rid).index == idx
        assert log.size - 1 in (len(acknowledged), len(acknowledged) + 1)  # + one in flight
        assert log.audit().clean
