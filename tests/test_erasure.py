"""Erasure: a record's content removed for good from a real SQLite log anchored on a real Anvil,
while every proof and checkpoint stays valid; crypto-shredding of records sealed at rest; and
the audit's view of missing content."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard
from eth_account import Account

from chainaudit.app.deploy import deploy_contracts
from chainaudit.chain.chain import Chain
from chainaudit.chain.devnet import Devnet
from chainaudit.cli import main
from chainaudit.core.bundle import parse_bundle, schema
from chainaudit.core.errors import ConflictError, NotFoundError, ProofPendingError
from chainaudit.core.records import PreparedRecord, prepare
from chainaudit.log import datakeys
from chainaudit.log.store import Log
from chainaudit.service import erasure
from chainaudit.service.anchoring import AnchorBook, Anchorer, AnchorPolicy
from chainaudit.service.bundling import build_bundle
from chainaudit.service.erasure import ErasureError
from chainaudit.verify.verifier import verify_bundle
from tests.tamper import set_body

TOKENS = {i: secrets.token_hex(16) for i in range(40)}
"""A random, incompressible marker in each record's payload, to look for in the raw file."""


def record(
    i: int, kind: str = "transaction", timestamp: str = "2026-11-21T09:30:00Z"
) -> PreparedRecord:
    return prepare(
        {
            "id": f"rec-{i:04d}",
            "kind": kind,
            "timestamp": timestamp,
            "actor": "supplier:acme",
            "payload": {"contact": f"name-{TOKENS[i % 40]}", "amount": i},
        }
    )


def raw_bytes(data_dir: Path, name: str = "log.sqlite") -> bytes:
    """The database file and its WAL, as a backup or a disk image would hold them."""
    raw = (data_dir / name).read_bytes()
    wal = data_dir / f"{name}-wal"
    return raw + (wal.read_bytes() if wal.exists() else b"")


def readable(data_dir: Path) -> bytes:
    """Everything someone holding the raw files can read: their bytes, plus the output of
    every Zstandard frame found anywhere in them (live rows and leftovers in freed pages or
    the WAL alike; a frame contiguous in the file, as a bundle smaller than a page is)."""
    raw = raw_bytes(data_dir)
    found = [raw]
    start = raw.find(ZSTD_MAGIC)
    while start >= 0:
        with contextlib.suppress(zstandard.ZstdError):
            found.append(zstandard.ZstdDecompressor().decompressobj().decompress(raw[start:]))
        start = raw.find(ZSTD_MAGIC, start + 1)
    return b"".join(found)


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def erase(log: Log, record_id: str) -> erasure.Erased:
    return erasure.erase(
        log,
        record_id,
        reason="the data subject asked",
        basis="GDPR Art. 17(1)(a)",
        requested_by="key:aaaaaaaaaaaa",
        approved_by="key:bbbbbbbbbbbb",
        approval_id="APR-0123456789abcdef",
    )


@dataclass
class World:
    log: Log
    book: AnchorBook
    anchorer: Anchorer
    chain: Chain
    contract: str
    data_dir: Path


@pytest.fixture(scope="module")
def world(anvil: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    chain = Chain(anvil.rpc_url)
    account = Account.from_key(anvil.accounts[0].private_key)
    contract = deploy_contracts(chain, account)["AuditAnchor"].address
    data_dir = tmp_path_factory.mktemp("erasure")
    with Log.open(data_dir) as log:
        anchorer = Anchorer(log, chain, account, contract, policy=AnchorPolicy(finality=10_000))
        log.append([record(i) for i in range(20)])
        anchorer.anchor_now(timeout=60)
        book = AnchorBook(log)
        yield World(log, book, anchorer, chain, contract, data_dir)
        book.close()
        anchorer.close()


def test_erasing_an_anchored_record_keeps_every_proof_and_the_bundle_says_erased(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    log, book = world.log, world.book
    old_bundle = build_bundle(log, book, "rec-0007")
    assert old_bundle["record"]["payload"]["contact"].endswith(TOKENS[7])
    checkpoints = log.checkpoints()
    anchored = [(a.tree_size, a.root) for a in book.all()]
    proofs = {i: log.inclusion_proof(i, 20) for i in range(20)}
    leaf = log.leaf_hash(7)

    done = erase(log, "rec-0007")
    assert (done.leaf_index, done.leaf_hash, done.erasure_id) == (7, leaf, "erasure:7")

    # The tree, every anchored checkpoint and every other proof are unchanged.
    assert log.checkpoints()[: len(checkpoints)] == checkpoints
    assert all(log.root_at(size) == root for size, root in anchored)
    assert {i: log.inclusion_proof(i, 20) for i in range(20)} == proofs
    assert log.entry("rec-0007").body is None and log.leaf_hash(7) == leaf
    assert log.audit().clean

    # Until the erasure is anchored there is no bundle; then one proving leaf and erasure.
    with pytest.raises(ProofPendingError, match="erasure:7"):
        build_bundle(log, book, "rec-0007")
    world.anchorer.anchor_now(timeout=60)
    new_bundle = build_bundle(log, book, "rec-0007")
    assert "record" not in new_bundle and new_bundle["leaf_hash"] == "0x" + leaf.hex()
    assert new_bundle["erasure"]["record"]["id"] == "erasure:7"
    assert new_bundle["erasure"]["record"]["payload"]["approved_by"] == "key:bbbbbbbbbbbb"
    assert TOKENS[7] not in json.dumps(new_bundle)
    from jsonschema import Draft202012Validator  # noqa: PLC0415

    assert list(Draft202012Validator(schema()).iter_errors(new_bundle)) == []
    pins = {"expected_chain_id": 31337, "expected_contract": world.contract}
    verdict = verify_bundle(new_bundle, chain=world.chain, **pins)
    assert verdict.valid, verdict.to_json()
    assert verdict.check("erasure").ok and "erased" in verdict.check("erasure").detail
    assert verdict.check("record").status == "skip"
    assert "erased" in verdict.check("record").detail

    # The old bundle (with the content) now fails its record check only, naming the erasure.
    told = verify_bundle(old_bundle, chain=world.chain, erased=erasure.erased_leaves(log), **pins)
    assert told.failed == ("record",)
    assert "erased" in told.check("record").detail and "erasure:7" in told.check("record").detail
    # So does `chainaudit verify` run beside the log (offline: the record check alone).
    old_file = world.data_dir.parent / "old-bundle.json"
    old_file.write_text(json.dumps(old_bundle))
    assert main(["--data-dir", str(world.data_dir), "verify", str(old_file)]) == 1
    assert "record: erased" in capsys.readouterr().err
    # Any other record's old bundle still verifies in full.
    other = verify_bundle(
        build_bundle(log, book, "rec-0008"),
        chain=world.chain,
        erased=erasure.erased_leaves(log),
        **pins,
    )
    assert other.valid


def test_a_forged_erasure_section_fails_the_erasure_check(world: World) -> None:
    bundle = build_bundle(world.log, world.book, "rec-0007")
    bundle["erasure"]["record"]["payload"]["basis"] = "none"
    assert verify_bundle(bundle, chain=None).failed == ("erasure",)
    bundle = build_bundle(world.log, world.book, "rec-0007")
    bundle["record"] = bundle["erasure"]["record"]
    with pytest.raises(Exception, match="not both"):
        parse_bundle(bundle)


def test_a_body_removed_without_an_erasure_record_fails_the_audit(world: World) -> None:
    assert main(["--data-dir", str(world.data_dir), "audit"]) == 0
    with sqlite3.connect(world.data_dir / "log.sqlite") as db:
        set_body(db, "rec-0003", None)
    world.log.refresh()
    findings = [(f.problem, f.index) for f in world.log.audit().findings]
    assert findings == [("erased", 3)]
    assert main(["--data-dir", str(world.data_dir), "audit"]) == 1


def test_service_records_and_erased_records_cannot_be_erased(tmp_path: Path) -> None:
    with Log.open(tmp_path) as log:
        log.append([record(0)])
        erase(log, "rec-0000")
        with pytest.raises(ErasureError, match="already erased") as caught:
            erase(log, "rec-0000")
        assert caught.value.status == 409
        with pytest.raises(ErasureError, match="written by the service"):
            erase(log, "erasure:0")
        with pytest.raises(NotFoundError):
            erase(log, "no-such-record")
        with pytest.raises(ErasureError, match="two officers"):
            erasure.erase(
                log, "x", reason="r", basis="b", requested_by="key:a", approved_by="key:a"
            )
        with pytest.raises(ErasureError, match="reason"):
            erasure.erase(
                log, "x", reason=" ", basis="b", requested_by="key:a", approved_by="key:b"
            )
        assert log.size == 2 and log.audit().clean


def test_no_copy_of_the_erased_payload_is_left_in_the_file_after_a_checkpoint_or_vacuum(
    tmp_path: Path,
) -> None:
    with Log.open(tmp_path) as log:
        log.append([record(i) for i in range(10)])  # one bundle, smaller than a page
        log.append([record(10)])  # the bundle row rewritten: an older copy in the WAL
        assert TOKENS[5].encode() in readable(tmp_path)  # the check sees compressed content
        erase(log, "rec-0005")
        assert TOKENS[5].encode() not in readable(tmp_path)
        assert TOKENS[6].encode() in readable(tmp_path)
        log.vacuum()
        assert TOKENS[5].encode() not in readable(tmp_path)
        assert TOKENS[6].encode() in readable(tmp_path)
        assert log.audit().clean


def test_without_secure_delete_the_old_bundle_would_survive(tmp_path: Path) -> None:
    """The control: the same rewrite done naively leaves the payload in the file."""
    with Log.open(tmp_path) as log:
        log.append([record(i) for i in range(10)])
        log.checkpoint_wal()
    with sqlite3.connect(tmp_path / "log.sqlite") as db:
        db.execute("PRAGMA secure_delete=OFF")
        set_body(db, "rec-0005", None)
    assert TOKENS[5].encode() in readable(tmp_path)


def test_a_backup_taken_before_the_erasure_cannot_be_decrypted_for_that_record(
    tmp_path: Path,
) -> None:
    live, backup = tmp_path / "live", tmp_path / "backup"
    at_rest = datakeys.AtRest(os.urandom(32), frozenset({"transaction"}))
    with Log.open(live, at_rest=at_rest) as log:
        log.append([record(i) for i in range(10)] + [record(i, "document") for i in range(10, 12)])
        assert TOKENS[4].encode() not in readable(live)  # sealed at rest
        assert TOKENS[10].encode() in readable(live)  # a kind without "encrypt": plain
        sealed = next(
            r.body for r in log._bundles([0])[0] if r.leaf_index == 4 and r.body is not None
        )
        assert datakeys.is_sealed(sealed) and sealed[20:52] in readable(live)
        log.checkpoint_wal()
        backup.mkdir()
        shutil.copy(live / "log.sqlite", backup / "log.sqlite")  # the data, not the keys
        erase(log, "rec-0004")
        assert sealed[20:52] not in readable(live)  # the ciphertext is gone from the file too
        log.vacuum()
        assert sealed[20:52] not in readable(live)
        assert not log.keyring().has_key(4) and log.keyring().has_key(5)
        assert log.audit().clean
    # The old data with today's keys: every other record opens, the erased one never does.
    shutil.copy(live / datakeys.KEYS_DB, backup / datakeys.KEYS_DB)
    with Log.open(backup, at_rest=at_rest) as old:
        assert old.entry("rec-0005").body is not None
        assert sealed[20:52] in readable(backup)  # the backup still holds the ciphertext...
        assert old.entry("rec-0004").body is None  # ...which no key opens any more
        bodies = b"".join(e.body for e in old.entries() if e.body is not None)
        assert TOKENS[5].encode() in bodies and TOKENS[4].encode() not in bodies


def test_a_sealed_log_needs_its_master_key(tmp_path: Path) -> None:
    at_rest = datakeys.AtRest(os.urandom(32), frozenset({"transaction"}))
    with Log.open(tmp_path, at_rest=at_rest) as log:
        log.append([record(0)])
    with Log.open(tmp_path) as log, pytest.raises(Exception, match="no master key"):
        log.entry("rec-0000")
    wrong = datakeys.AtRest(os.urandom(32))
    with Log.open(tmp_path, at_rest=wrong) as log, pytest.raises(Exception, match="master key"):
        log.entry("rec-0000")


def test_a_failed_erasure_changes_nothing(tmp_path: Path) -> None:
    with Log.open(tmp_path) as log:
        log.append([record(0)])
        squatter = prepare(
            {
                "id": "erasure:0",
                "kind": "admin",
                "timestamp": "2026-11-21T09:30:00Z",
                "actor": "service:privacy",
                "payload": {"type": "note"},
            },
            submitter="service:privacy",
        )
        log.append([squatter])  # the erasure record's id is taken: the append must fail
        with pytest.raises(ConflictError):
            erase(log, "rec-0000")
        assert log.entry("rec-0000").body is not None and log.size == 2
        assert TOKENS[0] in (log.entry("rec-0000").body or b"").decode()
        assert log.audit().clean


def test_bulk_ingest_seals_only_the_encrypted_kinds_and_keeps_the_leaves(tmp_path: Path) -> None:
    from chainaudit.log.ingest import ingest_file  # noqa: PLC0415

    lines = [
        json.dumps(
            {
                "id": f"bulk-{i}",
                "kind": "transaction" if i % 3 else "document",
                "timestamp": "2026-11-21T09:30:00Z",
                "actor": "supplier:acme",
                "payload": {"contact": f"name-{TOKENS[i % 40]}", "amount": i},
                "salt": f"{i:032x}",
            }
        )
        for i in range(600)
    ]
    source = tmp_path / "records.jsonl"
    source.write_text("\n".join(lines) + "\n")
    at_rest = datakeys.AtRest(os.urandom(32), frozenset({"transaction"}))
    with (
        Log.open(tmp_path / "plain") as plain,
        Log.open(tmp_path / "sealed", at_rest=at_rest) as log,
    ):
        ingest_file(plain, source, workers=0)
        ingest_file(log, source, workers=0)
        assert log.root() == plain.root()  # encryption is a storage matter only
        assert log.keyring().count() == 400
        assert [e.body for e in log.entries()] == [e.body for e in plain.entries()]
        stored = log._bundles([0])[0]
        assert datakeys.is_sealed(stored[1].body) and not datakeys.is_sealed(stored[0].body)
        assert log.audit().clean


def bulk_lines(count: int, kind_of: Callable[[int], str]) -> list[str]:
    """Simple records (the native fast path takes them all), ``kind_of(i)`` each."""
    return [
        json.dumps(
            {
                "id": f"big-{i:07d}",
                "kind": kind_of(i),
                "timestamp": "2026-11-21T09:30:00Z",
                "actor": "supplier:acme",
                "payload": {"contact": f"name-{i:07d}-{TOKENS[i % 40]}", "amount": i},
                "salt": f"{i:032x}",
            }
        )
        for i in range(count)
    ]


@pytest.mark.parametrize("resubmit", [False, True])
def test_a_parsing_child_seals_and_the_writer_stores_one_key_row_per_bundle(
    tmp_path: Path, resubmit: bool
) -> None:
    """With a large file the parsing child seals (for the leaves it assumes) and packs; the
    writer only stores the key runs. Re-submissions mid-file move the later records to
    other leaves: the writer then unseals those batches and seals them again itself."""
    from chainaudit.log import ingest  # noqa: PLC0415

    count = 14_000
    lines = bulk_lines(count, lambda i: "document" if i % 5 == 0 else "transaction")
    if resubmit:
        lines[7_000:7_000] = lines[:300]
    source = tmp_path / "big.jsonl"
    source.write_text("\n".join(lines) + "\n")
    assert source.stat().st_size >= ingest.PARALLEL_BYTES
    at_rest = datakeys.AtRest(os.urandom(32), frozenset({"transaction"}))
    with (
        Log.open(tmp_path / "plain") as plain,
        Log.open(tmp_path / "sealed", at_rest=at_rest) as log,
    ):
        ingest.ingest_file(plain, source, workers=1)
        result = ingest.ingest_file(log, source, workers=1)
        assert (result.appended, result.duplicates) == (count, 300 if resubmit else 0)
        assert log.root() == plain.root()  # the leaves never change
        assert log.keyring().count() == count - count // 5
        assert [e.body for e in log.entries()] == [e.body for e in plain.entries()]
        rows = log.keyring()._db.execute("SELECT first, length FROM key_runs").fetchall()
        width = datakeys.RUN_WIDTH
        assert all(f // width == (f + n - 1) // width for f, n in rows)  # within one bundle
        assert len(rows) <= count // width + 20  # one per bundle, and one more per chunk
        stored = log._bundles([10])[10]
        assert datakeys.is_sealed(stored[1].body) and not datakeys.is_sealed(stored[0].body)
        assert TOKENS[7].encode() not in readable(tmp_path / "sealed")
        assert log.audit().clean
        # Erasing one record destroys only its key: the rest of its bundle still opens.
        erase(log, "big-0002563")
        assert log.entry("big-0002563").body is None
        assert not log.keyring().has_key(2563) and log.keyring().has_key(2564)
        neighbours = [log.entry(f"big-{i:07d}").body for i in (2561, 2562, 2564, 2600)]
        assert all(b is not None and b"name-" in b for b in neighbours)
        assert log.keyring().count() == count - count // 5 - 1


def test_the_keys_are_committed_before_the_log_and_a_rollback_leaves_nothing_staged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at_rest = datakeys.AtRest(os.urandom(32), frozenset({"transaction"}))
    seen: list[int] = []
    store = datakeys.Keyring.store

    def spying_store(ring: datakeys.Keyring, runs: list[datakeys.KeyRun]) -> None:
        reader = sqlite3.connect(tmp_path / "log.sqlite")  # the log is not committed yet
        seen.append(
            int(reader.execute("SELECT value FROM meta WHERE key = 'tree_size'").fetchone()[0])
        )
        reader.close()
        store(ring, runs)
        fresh = sqlite3.connect(tmp_path / datakeys.KEYS_DB)  # ...and the keys are
        seen.append(fresh.execute("SELECT count(*) FROM key_runs").fetchone()[0])
        fresh.close()

    monkeypatch.setattr(datakeys.Keyring, "store", spying_store)
    with Log.open(tmp_path, at_rest=at_rest) as log:
        log.append([record(0)])
        with contextlib.suppress(RuntimeError), log.transaction() as batch:
            batch.append([record(i) for i in range(1, 5)])
            raise RuntimeError("the writer fails after sealing")
        assert log._staged == [] and log.size == 1
        log.append([record(i) for i in range(5, 8)])
        assert seen == [0, 1, 1, 2]  # the log's size then, the key rows committed
        assert [log.entry(f"rec-{i:04d}").body is not None for i in (0, 5, 6, 7)] == [True] * 4
        assert log.keyring().count() == 4 and log.audit().clean


def test_a_sealed_body_that_does_not_open_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    """A sealed body whose key is gone without an erasure record is reported (``erased``: its
    content is gone and nothing covers it); bodies that do not open (their key row damaged)
    are reported as ``altered``: the audit goes on, it does not stop."""
    at_rest = datakeys.AtRest(os.urandom(32), frozenset({"transaction"}))
    with Log.open(tmp_path / "data", at_rest=at_rest) as log:
        log.append([record(i) for i in range(4)] + [record(4, "document")])
        assert log.audit().clean
        log.keyring().destroy([2])  # the key only: the body stays, sealed
        report = log.audit()
    assert [(f.problem, f.index) for f in report.findings] == [("erased", 2)]
    with contextlib.closing(sqlite3.connect(tmp_path / "data" / datakeys.KEYS_DB)) as keys:
        (wrapped,) = keys.execute("SELECT wrapped FROM key_runs").fetchone()
        flipped = bytes(wrapped[:-1]) + bytes([wrapped[-1] ^ 1])
        keys.execute("UPDATE key_runs SET wrapped = ?", (flipped,))
        keys.commit()
    with Log.open(tmp_path / "data", at_rest=at_rest) as log:
        report = log.audit()
    altered = [f for f in report.findings if f.problem == "altered"]
    assert [f.index for f in altered] == [0, 1, 3]  # the plain document (4) still audits clean
    assert all("does not open" in f.detail for f in altered)
