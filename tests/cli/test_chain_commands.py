"""devnet, deploy and anchor as a user runs them: real subprocesses against a real Anvil."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from chainaudit.chain.anchor_abi import AUDIT_ANCHOR_ABI
from chainaudit.chain.chain import Chain
from chainaudit.chain.devnet import free_port
from chainaudit.log.store import Log


def run(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chainaudit", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_devnet_deploy_ingest_anchor_and_stop(tmp_path: Path) -> None:
    port = free_port()
    rpc = f"http://127.0.0.1:{port}"
    started = run(tmp_path, "devnet", "--detach", "--port", str(port))
    assert started.returncode == 0, started.stderr
    pid = int((tmp_path / ".data" / "devnet" / "anvil.pid").read_text())
    try:
        deployed = run(tmp_path, "deploy", "--rpc", rpc)
        assert deployed.returncode == 0, deployed.stderr
        deployment = json.loads((tmp_path / "deployments" / "31337.json").read_text())
        address = deployment["contracts"]["AuditAnchor"]["address"]

        source = tmp_path / "in.jsonl"
        source.write_text(
            "".join(
                json.dumps(
                    {
                        "id": f"r{i}",
                        "kind": "transaction",
                        "timestamp": "2026-11-21T10:00:00+01:00",
                        "actor": "risk:engine",
                        "payload": {"outcome": "allow", "score": i},
                    }
                )
                + "\n"
                for i in range(12)
            )
        )
        assert run(tmp_path, "ingest", "-q", str(source)).returncode == 0
        anchored = run(tmp_path, "anchor", env={"CHAINAUDIT_RPC_URL": rpc})
        assert anchored.returncode == 0, anchored.stderr
        with Log.open(tmp_path / ".data") as log:
            root = log.root()
        assert f"anchored tree size 12 root {root.hex()} as checkpoint 0" in anchored.stdout
        contract = Chain(rpc).contract(address, AUDIT_ANCHOR_ABI)
        assert contract.functions.checkpoint(0).call()[:2] == [12, root]
        audited = run(tmp_path, "audit", "--chain", "--rpc", rpc)
        assert audited.returncode == 0 and "audit: clean" in audited.stdout, audited.stderr

        production = run(
            tmp_path,
            "anchor",
            env={"CHAINAUDIT_RPC_URL": rpc, "CHAINAUDIT_ENVIRONMENT": "production"},
        )
        assert production.returncode == 2 and "no anchorer key" in production.stderr
    finally:
        stopped = run(tmp_path, "devnet", "--stop")
    assert stopped.returncode == 0 and "devnet stopped" in stopped.stdout
    assert (
        not Path(f"/proc/{pid}").exists()
        or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    )


def test_production_refuses_a_devnet_key(tmp_path: Path) -> None:
    devnet_key = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
    result = run(
        tmp_path,
        "anchor",
        env={
            "CHAINAUDIT_ENVIRONMENT": "production",
            "CHAINAUDIT_ANCHORER_KEY": devnet_key,
            "CHAINAUDIT_RPC_URL": "https://rpc.invalid",
        },
    )
    assert result.returncode == 2
    assert "must not be a public devnet key" in result.stderr
    assert devnet_key[2:] not in result.stderr  # the secret is never echoed


def test_keys_commands_and_audit_against_the_chain(tmp_path: Path, anvil: object) -> None:
    created = run(
        tmp_path,
        "keys",
        "create",
        "--role",
        "partner",
        "--name",
        "Globex",
        "--address",
        "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    key_id = token.split("_")[1]
    listed = run(tmp_path, "keys", "list").stdout
    assert key_id in listed and "partner" in listed and "active" in listed
    assert token.split("_", 2)[2] not in listed  # the secret (may hold "_") is never shown again
    assert run(tmp_path, "keys", "revoke", key_id).returncode == 0
    assert "revoked" in run(tmp_path, "keys", "list").stdout
    bad = run(tmp_path, "keys", "create", "--role", "partner", "--name", "x")
    assert bad.returncode == 2 and "needs the Ethereum address" in bad.stderr
    with Log.open(tmp_path / ".data") as log:
        actions = [json.loads(e.body or b"{}")["payload"]["action"] for e in log.scan(kind="admin")]
    assert actions == ["keys.create", "keys.revoke"]
