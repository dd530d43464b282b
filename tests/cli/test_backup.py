"""backup, restore, export and import as an operator runs them: real subprocesses, real files,
a real Anvil; old proof bundles verified against the chain after each round trip."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account

from chainaudit.app.deploy import deploy_contracts
from chainaudit.chain.chain import Chain
from chainaudit.chain.devnet import Devnet
from chainaudit.core.records import prepare
from chainaudit.log import database
from chainaudit.log.store import Log
from chainaudit.service.anchoring import Anchorer, AnchorPolicy
from tests import tamper


@dataclass
class Env:
    root: Path
    data: Path
    contract: str
    rpc: str
    bundles: list[Path]  # inv-3 at size 20 (checkpoint 0), inv-30 at size 37 (checkpoint 1)
    env: dict[str, str]

    def run(self, data: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "chainaudit", "--data-dir", str(data), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**self.env, **extra},
        )

    def verify(self, data: Path, bundle: Path) -> subprocess.CompletedProcess[str]:
        pins = ["--rpc", self.rpc, "--chain-id", "31337", "--contract", self.contract]
        return self.run(data, "verify", str(bundle), *pins)


@pytest.fixture(scope="module")
def env(anvil: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A log of 40 records anchored at 20 (seq 0) and 37 (seq 1), two bundles taken."""
    root = tmp_path_factory.mktemp("backup-cli")
    chain = Chain(anvil.rpc_url)
    account = Account.from_key(anvil.accounts[0].private_key)
    contract = deploy_contracts(chain, account)["AuditAnchor"].address
    setup = Env(
        root=root,
        data=root / "data",
        contract=contract,
        rpc=anvil.rpc_url,
        bundles=[root / "inv-3.json", root / "inv-30.json"],
        env={
            **os.environ,
            "CHAINAUDIT_RPC_URL": anvil.rpc_url,
            "CHAINAUDIT_ANCHOR_CONTRACT": contract,
            "CHAINAUDIT_DEPLOYMENTS_DIR": str(root / "deployments"),
            "PYTHONIOENCODING": "utf-8",
        },
    )
    with Log.open(setup.data) as log:
        anchorer = Anchorer(log, chain, account, contract, policy=AnchorPolicy(finality=10_000))
        for start, count in ((0, 20), (20, 17), (37, 3)):
            log.append([_record(i) for i in range(start, start + count)])
            if start < 37:
                anchorer.anchor_now(timeout=60)
            if start == 0:
                made = setup.run(setup.data, "proof", "inv-3", "-o", str(setup.bundles[0]))
                assert made.returncode == 0, made.stderr
        anchorer.close()
    made = setup.run(setup.data, "proof", "inv-30", "-o", str(setup.bundles[1]))
    assert made.returncode == 0, made.stderr
    yield setup


def _record(i: int) -> object:
    return prepare(
        {
            "id": f"inv-{i}",
            "kind": "transaction",
            "timestamp": "2026-11-21T09:30:00Z",
            "actor": "supplier:globex",
            "payload": {"amount": i * 100, "currency": "EUR"},
        }
    )


def _rehash(backup_dir: Path) -> None:
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    for item in manifest["files"]:
        path = backup_dir / item["name"]
        item["bytes"] = path.stat().st_size
        item["sha256"] = "0x" + hashlib.sha256(path.read_bytes()).hexdigest()
    (backup_dir / "manifest.json").write_text(json.dumps(manifest))


def test_drill_back_up_destroy_restore_and_verify_old_bundles(env: Env, tmp_path: Path) -> None:
    live = tmp_path / "live"
    shutil.copytree(env.data, live)
    made = env.run(live, "backup", str(tmp_path / "bk"))
    assert made.returncode == 0, made.stderr
    progress, (first, *rest) = made.stdout.splitlines()[:1], made.stdout.splitlines()[1:]
    assert progress == ["  copying log.sqlite (SQLite online backup)"]
    assert first.startswith(f"backed up 1 file(s) of {live} into {tmp_path / 'bk'} (log: tree ")
    assert "tree size 40, root 0x" in first
    assert rest == [
        "secrets are not in this backup: keep the master key, keystores and data keys with "
        "your key management; a restore of records encrypted at rest needs them"
    ]
    manifest = json.loads((tmp_path / "bk" / "manifest.json").read_text())
    assert manifest["log"]["tree_size"] == 40 and manifest["chainaudit_version"]

    shutil.rmtree(live)  # the disaster
    restored = env.run(live, "restore", str(tmp_path / "bk"))
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.splitlines()[-1].endswith(
        f"every record re-hashed; 2 anchored checkpoint(s) of contract {env.contract} on "
        "chain 31337 reproduced"
    )
    for bundle in env.bundles:
        checked = env.verify(live, bundle)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.splitlines()[-1].startswith("VALID: record inv-")
    audit = env.run(live, "audit", "--chain")
    assert audit.returncode == 0, audit.stdout


def test_restore_of_an_altered_backup_exits_2_naming_the_checkpoint(
    env: Env, tmp_path: Path
) -> None:
    made = env.run(env.data, "backup", str(tmp_path / "bk"))
    assert made.returncode == 0, made.stderr
    with contextlib.closing(sqlite3.connect(tmp_path / "bk" / "log.sqlite")) as db, db:
        tamper.replace_in_body(db, "inv-12", '"amount":1200', '"amount":120')
    _rehash(tmp_path / "bk")
    refused = env.run(tmp_path / "new", "restore", str(tmp_path / "bk"))
    assert refused.returncode == 2
    assert refused.stdout.splitlines() == [
        "  manifest checked: 1 files, SHA-256 as recorded",
        "  checking 40 records against 2 anchored checkpoints",
    ]
    assert refused.stderr.startswith("chainaudit: anchored checkpoint 0 (tree size 20, block ")
    assert "the audit finds 'altered' at leaf 12: content does not hash" in refused.stderr
    assert refused.stderr.count("\n") == 1
    assert not (tmp_path / "new").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".new")] == []


def test_restore_without_a_chain_needs_the_explicit_flag(env: Env, tmp_path: Path) -> None:
    made = env.run(env.data, "backup", str(tmp_path / "bk"))
    assert made.returncode == 0, made.stderr
    refused = env.run(
        tmp_path / "new", "restore", str(tmp_path / "bk"), CHAINAUDIT_ANCHOR_CONTRACT=""
    )
    assert refused.returncode == 2
    assert "pass --no-chain-check to restore without that check" in refused.stderr
    assert not (tmp_path / "new").exists()
    done = env.run(
        tmp_path / "new",
        "restore",
        str(tmp_path / "bk"),
        "--no-chain-check",
        CHAINAUDIT_ANCHOR_CONTRACT="",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(
        "chain check SKIPPED (--no-chain-check): the log was not compared with any anchor"
    )


def test_file_backups_point_a_postgresql_log_to_pg_dump_and_export(
    env: Env, tmp_path: Path
) -> None:
    url = "postgresql://chainaudit@127.0.0.1:1/none"  # refused before any connection
    for args in (("backup", str(tmp_path / "bk")), ("restore", str(env.root / "nowhere"))):
        refused = env.run(tmp_path / "d", *args, CHAINAUDIT_DATABASE_URL=url)
        assert refused.returncode == 2, refused.stderr
        assert "pg_dump" in refused.stderr and "chainaudit export" in refused.stderr
        assert url not in refused.stderr  # a URL may carry a password: never echoed
    assert not (tmp_path / "bk").exists()


def test_export_import_keeps_the_root_and_the_old_bundles_verify(env: Env, tmp_path: Path) -> None:
    out = tmp_path / "log.jsonl"
    exported = env.run(env.data, "export", str(out), "--json")
    assert exported.returncode == 0, exported.stderr
    summary = json.loads(exported.stdout)
    assert summary["tree_size"] == 40 and summary["root"].startswith("0x")
    unchecked = env.run(tmp_path / "new", "import", str(out), CHAINAUDIT_ANCHOR_CONTRACT="")
    assert unchecked.returncode == 2
    assert "pass --no-chain-check to import without that check" in unchecked.stderr
    assert not (tmp_path / "new").exists()
    imported = env.run(tmp_path / "new", "import", str(out), "--json")
    assert imported.returncode == 0, imported.stderr
    result = json.loads(imported.stdout)
    assert result["root"] == summary["root"]
    assert result["chain_checked"] is True and result["anchors_checked"] == 2
    again = env.run(tmp_path / "new", "import", str(out))
    assert again.returncode == 2
    assert again.stderr == (
        "chainaudit: the log already holds 40 records: import rebuilds a log only into an "
        "empty one\n"
    )
    for bundle in env.bundles:
        checked = env.verify(tmp_path / "new", bundle)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_backup_names_the_secrets_configured_elsewhere(env: Env, tmp_path: Path) -> None:
    keys = tmp_path / "vault" / "keys.sqlite"
    made = env.run(env.data, "backup", str(tmp_path / "bk"), CHAINAUDIT_KEYS_FILE=str(keys))
    assert made.returncode == 0, made.stderr
    assert (
        f"not copied: {keys}: the data keys file, configured outside the data directory"
        in made.stdout.splitlines()
    )
    as_json = env.run(env.data, "backup", str(tmp_path / "bk2"), "--json")
    assert as_json.returncode == 0, as_json.stderr
    manifest = json.loads(as_json.stdout)
    assert manifest == json.loads((tmp_path / "bk2" / "manifest.json").read_text())
    assert manifest["format"] == "chainaudit-backup/1" and manifest["left_out"] == []


def test_the_restore_drill_passes() -> None:
    """`make drill`: a real `chainaudit serve` appending through the API while it is backed
    up; restore, verify, altered backups refused, export and import (scripts/drill.py)."""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, str(root / "scripts" / "drill.py")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    out = done.stdout
    assert out.rstrip().endswith(
        "DRILL PASSED: backed up live, restored, checked against the chain, old bundles valid"
    )
    assert out.count("VALID: record drill-") == 6  # 3 bundles after restore, 3 after import
    assert out.count("-> exit 2") == 2 and "ca_" not in out.replace("ca_…", "")


def _pg_tables(url: str) -> set[str]:
    with contextlib.closing(database.connect(url)) as db:
        return set(db.tables(""))


def test_migrate_moves_the_log_and_the_state_beside_it_into_postgresql(
    env: Env, tmp_path: Path, database_url: str
) -> None:
    data = tmp_path / "data"
    shutil.copytree(env.data, data)
    made = env.run(data, "keys", "create", "--role", "auditor", "--name", "ann", "--json")
    assert made.returncode == 0, made.stderr
    moved = env.run(data, "migrate", "--to", database_url, "--json")
    assert moved.returncode == 0, moved.stderr
    result = json.loads(moved.stdout)
    assert result["tree_size"] == 41 and result["anchors_checked"] == 2  # 40 + the key's record
    assert result["tables"]["api_keys"] == 1 and result["tables"]["anchors"] == 2
    assert database_url not in moved.stdout + moved.stderr
    assert {"bundles", "tiles", "record_ids", "api_keys", "anchors"} <= _pg_tables(database_url)
    in_pg = {"CHAINAUDIT_DATABASE_URL": database_url}
    audit = env.run(data, "audit", **in_pg)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    listed = env.run(data, "keys", "list", "--json", **in_pg)
    assert listed.returncode == 0 and "ann" in listed.stdout, listed.stderr
    proof = env.run(data, "proof", "inv-30", "-o", str(tmp_path / "b.json"), **in_pg)
    assert proof.returncode == 0, proof.stderr
    assert env.verify(tmp_path / "auditor", tmp_path / "b.json").returncode == 0
    # the old SQLite copy can no longer be written by mistake
    line = {
        "id": "x-1",
        "kind": "transaction",
        "timestamp": "2026-11-21T09:30:00Z",
        "actor": "supplier:globex",
        "payload": {"amount": 1},
    }
    (tmp_path / "one.jsonl").write_text(json.dumps(line) + "\n")
    stale = env.run(data, "ingest", str(tmp_path / "one.jsonl"))
    assert stale.returncode == 2 and "kept in PostgreSQL" in stale.stderr
    again = env.run(tmp_path / "other", "migrate", "--to", database_url)
    assert again.returncode == 2


def test_a_migration_that_does_not_reproduce_the_anchors_leaves_nothing(
    env: Env, tmp_path: Path, database_url: str
) -> None:
    data = tmp_path / "data"
    shutil.copytree(env.data, data)
    with contextlib.closing(sqlite3.connect(data / "log.sqlite")) as db, db:
        tamper.replace_in_body(db, "inv-12", '"amount":1200', '"amount":120')
    before = _pg_tables(database_url)
    refused = env.run(data, "migrate", "--to", database_url)
    assert refused.returncode == 2, refused.stdout
    assert "line" in refused.stderr and "inv-12" in refused.stderr, refused.stderr
    assert refused.stderr.count("\n") == 1
    assert _pg_tables(database_url) == before
    assert not (data / "log.in-postgresql").exists()
    assert env.run(data, "keys", "list").returncode == 0  # the SQLite log still opens
