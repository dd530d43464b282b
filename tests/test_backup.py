"""Backup, restore, export and import (chainaudit.service.backup, chainaudit.service.export) on real
SQLite files and a real Anvil: an online backup while another connection appends, restores refused
for every kind of altered backup, and the engine-neutral export rebuilding the same tree."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account

from chainaudit.app.deploy import deploy_contracts
from chainaudit.chain.chain import Chain
from chainaudit.chain.devnet import Devnet
from chainaudit.core import merkle
from chainaudit.core.records import PreparedRecord, prepare
from chainaudit.log import datakeys
from chainaudit.log.store import Log
from chainaudit.service import erasure
from chainaudit.service.anchoring import Anchorer, AnchorPolicy
from chainaudit.service.backup import (
    MANIFEST,
    BackupError,
    RestoreRefusedError,
    backup,
    backup_order,
    chain_anchors,
    restore,
)
from chainaudit.service.export import ExportError, export_file, import_log
from tests import tamper


def record(i: int) -> PreparedRecord:
    return prepare(
        {
            "id": f"inv-{i:06d}",
            "kind": "transaction",
            "timestamp": "2026-11-21T09:30:00Z",
            "actor": "supplier:globex",
            "payload": {"amount": i * 100, "currency": "EUR", "invoice": f"INV-{i}"},
        }
    )


@dataclass
class World:
    data: Path
    chain: Chain
    contract: str

    def anchors(self) -> list[object]:
        return list(chain_anchors(self.chain, self.contract))

    def restore(self, source: Path, target: Path, **extra: object) -> object:
        return restore(
            source,
            target,
            anchors=lambda: chain_anchors(self.chain, self.contract),
            open_log=Log,
            **extra,  # type: ignore[arg-type]
        )


@pytest.fixture(scope="module")
def world(anvil: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A log anchored at sizes 100 (seq 0) and 250 (seq 1); leaf 7 erased after (its erasure
    record is leaf 250); 30 more records not anchored."""
    root = tmp_path_factory.mktemp("backup")
    chain = Chain(anvil.rpc_url)
    account = Account.from_key(anvil.accounts[0].private_key)
    contract = deploy_contracts(chain, account)["AuditAnchor"].address
    data = root / "data"
    with Log.open(data) as log:
        anchorer = Anchorer(log, chain, account, contract, policy=AnchorPolicy(finality=10_000))
        log.append([record(i) for i in range(100)])
        anchorer.anchor_now(timeout=60)
        log.append([record(i) for i in range(100, 250)])
        anchorer.anchor_now(timeout=60)
        erasure.erase(
            log,
            "inv-000007",
            reason="the data subject asked",
            basis="GDPR Art. 17(1)(a)",
            requested_by="key:aaaaaaaaaaaa",
            approved_by="key:bbbbbbbbbbbb",
        )
        log.append([record(i) for i in range(250, 280)])
        log.put_signed_checkpoint(250, "localhost/chainaudit\n250\nAAAA\n\n— fake sig\n")
        anchorer.close()
    yield World(data, chain, contract)


def _rehash(backup_dir: Path) -> None:
    """Rewrite the manifest's sizes and hashes to the files as they are (what someone who
    alters a backup would do)."""
    manifest = json.loads((backup_dir / MANIFEST).read_text())
    for item in manifest["files"]:
        path = backup_dir / item["name"]
        item["bytes"] = path.stat().st_size
        item["sha256"] = "0x" + hashlib.sha256(path.read_bytes()).hexdigest()
    (backup_dir / MANIFEST).write_text(json.dumps(manifest))


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def test_backup_while_appending_restores_a_consistent_log(world: World, tmp_path: Path) -> None:
    with Log.open(world.data) as log:
        before = log.size
    stop = threading.Event()
    appended: list[int] = []

    def append() -> None:
        with Log.open(world.data) as writer:
            i = 10_000
            while not stop.is_set():
                writer.append([record(i + k) for k in range(10)])
                appended.append(writer.size)
                i += 10

    thread = threading.Thread(target=append)
    thread.start()
    try:
        while len(appended) < 3:  # the backup starts mid-stream
            stop.wait(0.01)
        made = backup(world.data, tmp_path / "bk")
    finally:
        stop.set()
        thread.join()
    size = made.manifest["log"]["tree_size"]
    assert before < size <= appended[-1] and size % 10 == before % 10  # whole batches only
    assert [f["name"] for f in made.manifest["files"]] == ["log.sqlite"]
    assert not list(tmp_path.glob(".bk.*"))

    restored = world.restore(tmp_path / "bk", tmp_path / "restored")
    assert restored.anchors_checked == 2 and restored.tree_size == size  # type: ignore[attr-defined]
    with Log(tmp_path / "restored" / "log.sqlite") as log:
        assert log.size == size and log.audit().clean
        assert log.entry("inv-000007").body is None  # the erasure is in the backup
        assert log.signed_checkpoint(250) is not None


def test_backup_leaves_secrets_out_unless_asked(world: World, tmp_path: Path) -> None:
    (world.data / "log-signing.key").write_text("PRIVATE+KEY+fake\n")
    (world.data / "rules.toml").write_text("# rules\n")
    sqlite3.connect(world.data / "keys.sqlite").close()
    try:
        plain = backup(world.data, tmp_path / "plain")
        assert sorted(f["name"] for f in plain.manifest["files"]) == ["log.sqlite", "rules.toml"]
        assert [name for name, _ in plain.left_out] == ["keys.sqlite", "log-signing.key"]
        assert not (tmp_path / "plain" / "keys.sqlite").exists()
        full = backup(world.data, tmp_path / "full", include_secrets=True)
        secret = {f["name"] for f in full.manifest["files"] if f["secret"]}
        assert secret == {"keys.sqlite", "log-signing.key"} and full.left_out == []
    finally:
        for name in ("log-signing.key", "rules.toml", "keys.sqlite"):
            (world.data / name).unlink()


def test_backup_order_puts_what_refers_to_the_log_first() -> None:
    names = ["keys.sqlite", "zeta.sqlite", "log.sqlite", "anchors.sqlite"]
    assert backup_order(names) == ["anchors.sqlite", "log.sqlite", "zeta.sqlite", "keys.sqlite"]


def test_backup_refuses_an_existing_destination(world: World, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    with pytest.raises(BackupError, match="not an empty directory"):
        backup(world.data, tmp_path / "taken")
    with pytest.raises(BackupError, match="no log at"):
        backup(tmp_path / "nothing", tmp_path / "new")
    assert not (tmp_path / "new").exists()


@pytest.fixture
def copy(world: World, tmp_path: Path) -> Path:
    backup(world.data, tmp_path / "bk")
    return tmp_path / "bk"


def test_restore_refuses_an_altered_body_naming_the_first_checkpoint(
    world: World, copy: Path, tmp_path: Path
) -> None:
    with contextlib.closing(sqlite3.connect(copy / "log.sqlite")) as db, db:
        tamper.replace_in_body(db, "inv-000150", '"amount":15000', '"amount":15001')
    _rehash(copy)
    target = tmp_path / "restored"
    with pytest.raises(RestoreRefusedError) as refused:
        world.restore(copy, target)
    message = str(refused.value)
    assert message.startswith("anchored checkpoint 1 (tree size 250, block ")
    assert message.endswith(
        "; in the restored log the audit finds 'altered' at leaf 150: content does not hash "
        "to the committed leaf"
    )
    assert not target.exists() and _siblings(target) == []


@pytest.mark.parametrize(
    ("node", "seq", "found"),
    [
        ((0, 42), 0, "'altered' at leaf 42: content does not hash to the committed leaf"),
        ((3, 2), 0, "'tree' at leaf 16: node (3, 2) over leaves [16, 24) does not match"),
        ((7, 1), None, "'tree' at leaf 0: node (8, 0) over leaves [0, 256) does not match"),
    ],
    ids=["leaf", "interior", "on-the-root-path"],
)
def test_restore_refuses_an_altered_tile_naming_the_first_checkpoint(
    world: World, copy: Path, tmp_path: Path, node: tuple[int, int], seq: int | None, found: str
) -> None:
    """A node that an anchored tree contains names the first such anchor; one that none
    contains (node (7, 1) is complete only from 256 leaves on) is damage past the anchors."""
    with contextlib.closing(sqlite3.connect(copy / "log.sqlite")) as db, db:
        tamper.rewrite_node(db, *node, b"\x11" * 32)
    _rehash(copy)
    with pytest.raises(RestoreRefusedError) as refused:
        world.restore(copy, tmp_path / "restored")
    message = str(refused.value)
    if seq is None:
        assert message.startswith(
            f"the restored log is damaged past its last anchor: the audit finds {found}"
        )
    else:
        size = (100, 250)[seq]
        assert message.startswith(f"anchored checkpoint {seq} (tree size {size}, block ")
        assert f"; in the restored log the audit finds {found}" in message
    assert not (tmp_path / "restored").exists()


def test_restore_refuses_a_file_that_differs_from_the_manifest(
    world: World, copy: Path, tmp_path: Path
) -> None:
    with (copy / "log.sqlite").open("r+b") as fh:
        fh.seek(200)
        fh.write(b"\xff")
    with pytest.raises(RestoreRefusedError, match=r"^log\.sqlite of the backup differs from its"):
        world.restore(copy, tmp_path / "restored")
    assert not (tmp_path / "restored").exists() and _siblings(tmp_path / "restored") == []


def test_restore_refuses_a_non_empty_target(world: World, copy: Path, tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "log.sqlite").write_bytes(b"old")
    with pytest.raises(BackupError, match="is not empty"):
        world.restore(copy, target)
    assert (target / "log.sqlite").read_bytes() == b"old"


def test_restore_refuses_a_log_shorter_than_the_chain(anvil: Devnet, tmp_path: Path) -> None:
    chain = Chain(anvil.rpc_url)
    account = Account.from_key(anvil.accounts[0].private_key)
    contract = deploy_contracts(chain, account)["AuditAnchor"].address
    data = tmp_path / "data"
    with Log.open(data) as log:
        anchorer = Anchorer(log, chain, account, contract, policy=AnchorPolicy(finality=10_000))
        log.append([record(i) for i in range(10)])
        anchorer.anchor_now(timeout=60)
        backup(data, tmp_path / "old")
        log.append([record(i) for i in range(10, 16)])
        anchorer.anchor_now(timeout=60)
        anchorer.close()
    world = World(data, chain, contract)
    with pytest.raises(RestoreRefusedError, match=r"anchored checkpoint 1 \(tree size 16, .*"):
        world.restore(tmp_path / "old", tmp_path / "r1")
    assert not (tmp_path / "r1").exists()
    done = world.restore(tmp_path / "old", tmp_path / "r2", allow_behind=True)
    assert done.behind == 6 and done.anchors_checked == 1  # type: ignore[attr-defined]


def test_restore_without_a_chain_check_still_rehashes(
    world: World, copy: Path, tmp_path: Path
) -> None:
    with contextlib.closing(sqlite3.connect(copy / "log.sqlite")) as db, db:
        tamper.replace_in_body(db, "inv-000270", '"amount":27000', '"amount":1')
    _rehash(copy)
    damaged = r"^the restored log is damaged: the audit finds 'altered' at leaf 271: content"
    with pytest.raises(RestoreRefusedError, match=damaged):
        restore(copy, tmp_path / "r", anchors=None, open_log=Log)
    shutil.rmtree(copy)
    backup(world.data, copy)
    done = restore(copy, tmp_path / "r", anchors=None, open_log=Log)
    assert done.chain_checked is False and done.anchors_checked == 0


# -- export / import ---------------------------------------------------------------------------


def test_export_import_rebuilds_the_same_tree(world: World, tmp_path: Path) -> None:
    out = tmp_path / "log.jsonl"
    with Log.open(world.data) as source:
        summary = export_file(source, out)
        leaves = [source.leaf_hash(i) for i in range(summary.tree_size)]
        checkpoints = [(s, r) for s, r in source.checkpoints() if s <= summary.tree_size]
    lines = out.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["format"] == "chainaudit-log-export/1"
    assert (header["tree_size"], header["root"]) == (summary.tree_size, "0x" + summary.root.hex())
    assert summary.erased == 1 and summary.signed_checkpoints == 1
    with Log.open(tmp_path / "imported") as log:
        rebuilt = import_log(log, iter(lines))
        assert (rebuilt.tree_size, rebuilt.root) == (summary.tree_size, summary.root)
        assert [log.leaf_hash(i) for i in range(log.size)] == leaves
        assert all(log.root_at(s) == r for s, r in checkpoints)
        assert log.entry("inv-000007").body is None
        assert log.signed_checkpoint(250) is not None
        assert log.audit().clean


def _export_lines(world: World, tmp_path: Path) -> list[str]:
    out = tmp_path / "log.jsonl"
    with Log.open(world.data) as source:
        export_file(source, out)
    return out.read_text().splitlines()


def _leaf_line(lines: list[str], index: int) -> int:
    return next(n for n, line in enumerate(lines) if json.loads(line).get("leaf_index") == index)


def test_import_refuses_an_altered_body_naming_the_line(world: World, tmp_path: Path) -> None:
    lines = _export_lines(world, tmp_path)
    at = _leaf_line(lines, 42)
    lines[at] = lines[at].replace('\\"amount\\":4200', '\\"amount\\":4201')
    with Log.open(tmp_path / "imported") as log:
        with pytest.raises(ExportError, match=rf"^line {at + 1}: leaf 42 \(record 'inv-000042'\)"):
            import_log(log, iter(lines))
        assert log.refresh() == 0  # nothing written


def test_import_refuses_an_altered_erased_leaf_by_the_checkpoint(
    world: World, tmp_path: Path
) -> None:
    lines = _export_lines(world, tmp_path)
    at = _leaf_line(lines, 7)
    item = json.loads(lines[at])
    assert item["body"] is None
    item["leaf_hash"] = "0x" + "22" * 32
    lines[at] = json.dumps(item)
    with Log.open(tmp_path / "imported") as log:
        with pytest.raises(ExportError, match="does not reproduce the checkpoint at size 100"):
            import_log(log, iter(lines))
        assert log.refresh() == 0


def test_import_refuses_a_non_empty_log(world: World, tmp_path: Path) -> None:
    lines = _export_lines(world, tmp_path)
    with Log.open(tmp_path / "imported") as log:
        log.append([record(1)])
        with pytest.raises(ExportError, match="already holds 1 records"):
            import_log(log, iter(lines))
        assert log.size == 1


def test_records_encrypted_at_rest_need_their_data_keys(anvil: Devnet, tmp_path: Path) -> None:
    """Without --include-secrets the data keys stay out, and a restore whose sealed bodies
    cannot be opened refuses (their content reads as gone, unexplained); with them and the
    master key it restores, and an export/import re-seals the bodies under the importing
    log's keys, with the same root."""
    chain = Chain(anvil.rpc_url)
    account = Account.from_key(anvil.accounts[0].private_key)
    contract = deploy_contracts(chain, account)["AuditAnchor"].address
    at_rest = datakeys.AtRest(os.urandom(32), frozenset({"transaction"}))
    data = tmp_path / "data"
    with Log.open(data, at_rest=at_rest) as log:
        anchorer = Anchorer(log, chain, account, contract, policy=AnchorPolicy(finality=10_000))
        log.append([record(i) for i in range(30)])
        anchorer.anchor_now(timeout=60)
        anchorer.close()
        assert b"INV-3" not in (data / "log.sqlite").read_bytes()  # sealed in the file
        root = log.root()
    world = World(data, chain, contract)

    def sealed_log(path: Path) -> Log:
        return Log(path, at_rest=at_rest)

    plain = backup(data, tmp_path / "plain")
    assert [name for name, _ in plain.left_out] == ["keys.sqlite"]
    with pytest.raises(RestoreRefusedError) as refused:
        restore(
            tmp_path / "plain",
            tmp_path / "r1",
            anchors=lambda: chain_anchors(chain, contract),
            open_log=sealed_log,
        )
    assert str(refused.value).startswith("anchored checkpoint 0 (tree size 30, block ")
    assert "the audit finds 'erased' at leaf 0: the record's content is gone" in str(refused.value)
    assert "restore the data keys too" in str(refused.value)
    assert not (tmp_path / "r1").exists()

    backup(data, tmp_path / "full", include_secrets=True)
    done = restore(
        tmp_path / "full",
        tmp_path / "r2",
        anchors=lambda: chain_anchors(chain, contract),
        open_log=sealed_log,
    )
    assert done.anchors_checked == 1 and done.root == root
    assert sorted(p.name for p in (tmp_path / "r2").iterdir()) == ["keys.sqlite", "log.sqlite"]

    with Log.open(data, at_rest=at_rest) as source:
        export_file(source, tmp_path / "log.jsonl")
    assert "INV-3" in (tmp_path / "log.jsonl").read_text()  # exported in plain text
    other = datakeys.AtRest(os.urandom(32), frozenset({"transaction"}))
    with Log.open(tmp_path / "imported", at_rest=other) as log:
        rebuilt = import_log(log, iter((tmp_path / "log.jsonl").read_text().splitlines()))
        assert rebuilt.root == root and log.entry("inv-000003").body is not None
    assert b"INV-3" not in (tmp_path / "imported" / "log.sqlite").read_bytes()
    assert world.anchors()  # the chain still holds the anchor the copies reproduce


def test_export_import_keeps_signatures_of_kept_and_erased_records(tmp_path: Path) -> None:
    signer = "0x" + "ab" * 20
    signed = {f"inv-{i:06d}": (signer, "0x" + f"{i:02x}" * 65) for i in (1, 2)}
    with Log.open(tmp_path / "data") as log:
        log.append([record(i) for i in range(5)], signatures=signed)
        erasure.erase(
            log,
            "inv-000002",
            reason="the data subject asked",
            basis="GDPR Art. 17(1)(a)",
            requested_by="key:aaaaaaaaaaaa",
            approved_by="key:bbbbbbbbbbbb",
        )
        export_file(log, tmp_path / "log.jsonl")
        root = log.root()
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    erased_line = json.loads(lines[_leaf_line(lines, 2)])
    assert erased_line["body"] is None and erased_line["signature"]["signer"] == signer
    with Log.open(tmp_path / "imported") as log:
        assert import_log(log, iter(lines)).root == root
        assert {rid: log.signature(rid) for rid in signed} == signed
        assert log.signature("inv-000003") is None


def test_backup_of_sealed_appends_holds_every_data_key(tmp_path: Path) -> None:
    """The keys are copied after the log: every record sealed in the copied log has its
    data key in the copied keys, while another connection keeps appending sealed records."""
    at_rest = datakeys.AtRest(os.urandom(32), frozenset({"transaction"}))
    data = tmp_path / "data"
    with Log.open(data, at_rest=at_rest) as log:
        log.append([record(i) for i in range(5)])
    stop = threading.Event()
    batches: list[int] = []

    def append() -> None:
        with Log.open(data, at_rest=at_rest) as writer:
            i = 100
            while not stop.is_set():
                writer.append([record(i + k) for k in range(5)])
                batches.append(writer.size)
                i += 5

    thread = threading.Thread(target=append)
    thread.start()
    try:
        while len(batches) < 3:
            stop.wait(0.01)
        made = backup(data, tmp_path / "bk", include_secrets=True)
    finally:
        stop.set()
        thread.join()
    assert [f["name"] for f in made.manifest["files"]] == ["log.sqlite", "keys.sqlite"]
    done = restore(
        tmp_path / "bk", tmp_path / "r", anchors=None, open_log=lambda p: Log(p, at_rest=at_rest)
    )
    assert done.tree_size == made.manifest["log"]["tree_size"] > 5
    with Log(tmp_path / "r" / "log.sqlite", at_rest=at_rest) as log:
        assert all(entry.body is not None for entry in log.entries(0))


def test_import_checks_the_anchors_a_consistent_forgery_cannot_pass(
    world: World, tmp_path: Path
) -> None:
    """A file rewritten consistently (body, leaf hash, header root; its own checkpoints
    dropped) passes every check the file can make of itself, and only the chain refuses it."""
    lines = _export_lines(world, tmp_path)
    at = _leaf_line(lines, 150)
    item = json.loads(lines[at])
    item["body"] = item["body"].replace('"amount":15000', '"amount":15001')
    item["leaf_hash"] = "0x" + merkle.hash_leaf(item["body"].encode()).hex()
    lines[at] = json.dumps(item)
    lines = [line for line in lines if json.loads(line).get("type") != "checkpoint"]
    leaves = [
        bytes.fromhex(json.loads(line)["leaf_hash"][2:])
        for line in lines
        if json.loads(line).get("type") == "leaf"
    ]
    header = json.loads(lines[0])
    header["root"] = "0x" + merkle.root_hash(leaves).hex()
    lines[0] = json.dumps(header)
    anchored = chain_anchors(world.chain, world.contract)
    with Log.open(tmp_path / "checked") as log:
        with pytest.raises(ExportError) as refused:
            import_log(log, iter(lines), anchored=anchored)
        assert str(refused.value).startswith("anchored checkpoint 1 (tree size 250, block ")
        assert log.refresh() == 0
    with Log.open(tmp_path / "unchecked") as log:  # what the file alone cannot tell
        assert import_log(log, iter(lines)).tree_size == len(leaves)
    with Log.open(tmp_path / "short") as log:
        short = [lines[0].replace(f'"tree_size": {len(leaves)}', '"tree_size": 200')]
        with pytest.raises(
            ExportError, match=r"^anchored checkpoint 1 \(tree size 250\) is beyond"
        ):
            import_log(log, iter(short), anchored=anchored)
