"""The restore drill (`make drill`): back up a live service, lose it, restore, verify.

Every step prints what it did. On a temporary data directory with its own Anvil:

1. deploy the AuditAnchor, start a real `chainaudit serve`, append records through the API,
   anchor them, and take proof bundles of a few records;
2. `chainaudit backup` while a client keeps appending through the API;
3. stop the service and delete the data directory (the disaster);
4. `chainaudit restore` (checked against every checkpoint anchored on chain), then
   `chainaudit verify` each old bundle against the chain and `chainaudit audit --chain`;
5. alter one record body, then one tile, in copies of the backup (rewriting the manifest,
   as whoever altered them would): `restore` must refuse both, naming the checkpoint;
6. `chainaudit export`, `chainaudit import` into a new data directory: the same root, and
   the old bundles verify there too.

Exits 0 when every step behaved as it must, 1 (naming the step) otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chainaudit.chain.devnet import Devnet, free_port  # noqa: E402
from tests import tamper  # noqa: E402

CHAINAUDIT = (sys.executable, "-m", "chainaudit")


class DrillError(Exception):
    """A step did not behave as it must."""


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def cli(env: dict[str, str], data: Path, *args: str, expect: int = 0) -> str:
    """Run ``chainaudit --data-dir DATA ARGS``; its output, shown indented; fail unless it
    exits ``expect``."""
    done = subprocess.run(
        [sys.executable, "-m", "chainaudit", "--data-dir", str(data), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    shown = " ".join(a if len(a) < 60 else "…" + a[-40:] for a in args)
    print(f"$ chainaudit {shown}   -> exit {done.returncode}")
    for line in (done.stdout + done.stderr).splitlines():
        print(f"    {'ca_… (an API token, not shown)' if line.startswith('ca_') else line}")
    if done.returncode != expect:
        raise DrillError(f"`chainaudit {args[0]}` exited {done.returncode}, not {expect}")
    return done.stdout + done.stderr


def record(i: int) -> dict[str, object]:
    return {
        "id": f"drill-{i:06d}",
        "kind": "transaction",
        "timestamp": "2026-12-06T09:30:00Z",
        "actor": "supplier:globex",
        "payload": {"amount": 1000 + i, "currency": "EUR", "invoice": f"INV-{i}"},
    }


def rehash(backup: Path) -> None:
    manifest = json.loads((backup / "manifest.json").read_text())
    for item in manifest["files"]:
        path = backup / item["name"]
        item["bytes"] = path.stat().st_size
        item["sha256"] = "0x" + hashlib.sha256(path.read_bytes()).hexdigest()
    (backup / "manifest.json").write_text(json.dumps(manifest))


def start_service(env: dict[str, str], data: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        server = subprocess.Popen(
            [*CHAINAUDIT, "--data-dir", str(data), "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return server
        if time.monotonic() > deadline or server.poll() is not None:
            raise DrillError(f"chainaudit serve did not start: see {log}")
        time.sleep(0.3)


def drill(work: Path, anvil: Devnet) -> None:
    data, backup = work / "data", work / "backup"
    contract_env = {
        **os.environ,
        "CHAINAUDIT_RPC_URL": anvil.rpc_url,
        "CHAINAUDIT_DEPLOYMENTS_DIR": str(work / "deployments"),
        "CHAINAUDIT_MAX_BATCH_SECONDS": "3600",  # anchors only when asked: a fixed history
        "PYTHONIOENCODING": "utf-8",
    }
    step(f"1. a live service: Anvil on {anvil.rpc_url}, data in {data}")
    cli(contract_env, data, "deploy", "--no-escrow")
    deployed = json.loads((work / "deployments" / f"{anvil.chain_id}.json").read_text())
    contract = deployed["contracts"]["AuditAnchor"]["address"]
    env = {**contract_env, "CHAINAUDIT_ANCHOR_CONTRACT": contract}
    operator = cli(env, data, "keys", "create", "--role", "operator", "--name", "ops")
    auditor = cli(env, data, "keys", "create", "--role", "auditor", "--name", "aud")
    ops_key, aud_key = operator.splitlines()[-1], auditor.splitlines()[-1]
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    server = start_service(env, data, port, work / "serve.log")
    try:
        with httpx.Client(base_url=api, timeout=30) as client:
            ops = {"Authorization": f"Bearer {ops_key}"}
            aud = {"Authorization": f"Bearer {aud_key}"}
            batch = client.post(
                "/v1/records/batch", json={"records": [record(i) for i in range(200)]}, headers=ops
            )
            if batch.status_code not in (200, 201):
                raise DrillError(f"POST /v1/records/batch: {batch.status_code} {batch.text}")
            print("appended 200 records through POST /v1/records/batch")
            anchored = client.post("/v1/anchors", headers=ops)
            if anchored.status_code >= 300:
                raise DrillError(f"POST /v1/anchors: {anchored.status_code} {anchored.text}")
            print("asked the service to anchor them (POST /v1/anchors)")
            bundles = []
            for i in (3, 99, 199):
                path = work / f"drill-{i}.json"
                deadline = time.monotonic() + 60
                while (
                    got := client.get(f"/v1/records/drill-{i:06d}/bundle", headers=aud)
                ).status_code != 200:
                    if time.monotonic() > deadline:
                        raise DrillError(f"no bundle for drill-{i}: {got.status_code} {got.text}")
                    time.sleep(0.5)
                path.write_text(got.text)
                bundles.append(path)
                print(
                    f"took the proof bundle of drill-{i:06d} (tree size {got.json()['tree_size']})"
                )

            step("2. backup while a client keeps appending through the API")
            stop, sent = threading.Event(), [0]

            def append() -> None:
                i = 1000
                while not stop.is_set():
                    response = client.post("/v1/records", json=record(i), headers=ops)
                    if response.status_code in (200, 201):
                        sent[0] += 1
                    i += 1

            writer = threading.Thread(target=append)
            writer.start()
            try:
                while sent[0] < 20:
                    time.sleep(0.05)
                cli(env, data, "backup", str(backup))
            finally:
                stop.set()
                writer.join()
            print(f"the client appended {sent[0]} records meanwhile")
    finally:
        step("3. the disaster: stop the service, delete the data directory")
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(data)
        print(f"deleted {data}")

    step("4. restore, checked against every anchored checkpoint; verify the old bundles")
    cli(env, data, "restore", str(backup))
    for bundle in bundles:
        cli(
            env,
            data,
            "verify",
            str(bundle),
            "--rpc",
            anvil.rpc_url,
            "--chain-id",
            str(anvil.chain_id),
            "--contract",
            contract,
        )
    cli(env, data, "audit", "--chain")

    step("5. altered backups are refused, naming the first checkpoint that differs")
    for what in ("body", "tile"):
        altered = work / f"backup-{what}"
        shutil.copytree(backup, altered)
        with contextlib.closing(sqlite3.connect(altered / "log.sqlite")) as db, db:
            if what == "body":
                tamper.replace_in_body(db, "drill-000150", '"amount":1150', '"amount":1151')
            else:
                tamper.rewrite_node(db, 0, 42, b"\x11" * 32)
        rehash(altered)
        print(f"altered one {what} in a copy of the backup; rewrote its manifest")
        out = cli(env, work / f"restored-{what}", "restore", str(altered), expect=2)
        if "anchored checkpoint" not in out or (work / f"restored-{what}").exists():
            raise DrillError(f"the restore of the altered {what} did not refuse as it must")

    step("6. export and import (engine-neutral): the same root, the old bundles verify")
    exported = work / "log.jsonl"
    cli(env, data, "export", str(exported))
    out = cli(env, work / "imported", "import", str(exported))
    header = json.loads(exported.read_text().splitlines()[0])
    if header["root"] not in out:
        raise DrillError("the imported log's root is not the exported one")
    for bundle in bundles:
        cli(
            env,
            work / "imported",
            "verify",
            str(bundle),
            "--rpc",
            anvil.rpc_url,
            "--chain-id",
            str(anvil.chain_id),
            "--contract",
            contract,
        )


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="chainaudit-drill-"))
    try:
        with Devnet(port=free_port()) as anvil:
            drill(work, anvil)
    except DrillError as exc:
        print(f"\nDRILL FAILED: {exc} (files kept in {work})")
        return 1
    print("\nDRILL PASSED: backed up live, restored, checked against the chain, old bundles valid")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
