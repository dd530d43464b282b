"""`make demo`: the log, anchored on a local chain, end to end.

Starts its own Anvil on a free loopback port, deploys AuditAnchor, ingests sample supply-chain
records through the CLI, anchors the log, prints a record's proof, then alters a row behind
the system's back, shows `chainaudit audit` naming it, and restores it. Everything it starts is
stopped on exit or Ctrl-C; running it twice works (each run uses a fresh data directory under
.demo/).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from chainaudit.devnet import Devnet, free_port

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".demo"


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def cli(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "chainaudit", *args],
        cwd=WORK,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    output = (result.stdout + result.stderr).rstrip()
    if output:
        print("   " + output.replace("\n", "\n   "))
    if check and result.returncode != 0:
        raise SystemExit(f"demo: `chainaudit {' '.join(args)}` failed ({result.returncode})")
    return result


def sample_records(path: Path) -> None:
    deals = [
        (
            "transaction",
            "buyer:megacorp",
            {"type": "purchase_order", "po": "PO-1001", "amount": "250000.00", "currency": "USD"},
        ),
        (
            "transaction",
            "supplier:globex",
            {"type": "invoice", "invoice": "INV-7781", "po": "PO-1001", "amount": 12500000},
        ),
        (
            "document",
            "inspector:sgs",
            {"type": "inspection_certificate", "po": "PO-1001", "result": "passed", "lot": "L-42"},
        ),
        (
            "decision",
            "risk:engine",
            {
                "rule": "single_amount_above",
                "outcome": "review",
                "threshold": 10000000,
                "amount": 12500000,
            },
        ),
        ("decision", "approver:alice", {"approval": "PO-1001", "outcome": "approved"}),
    ]
    with path.open("w") as out:
        for i, (kind, actor, payload) in enumerate(deals):
            record = {
                "id": f"demo-{i + 1:03d}",
                "kind": kind,
                "timestamp": f"2026-11-21T09:{10 + i:02d}:00Z",
                "actor": actor,
                "payload": payload,
            }
            out.write(json.dumps(record) + "\n")


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    records = WORK / "records.jsonl"
    sample_records(records)
    port = free_port()
    with Devnet(port=port, log_path=WORK / "anvil.log") as devnet:
        env = {
            **os.environ,
            "CHAINAUDIT_DATA_DIR": str(WORK / "data"),
            "CHAINAUDIT_RPC_URL": devnet.rpc_url,
            "CHAINAUDIT_DEPLOYMENTS_DIR": str(WORK / "deployments"),
        }
        step(f"Anvil devnet at {devnet.rpc_url} (chain id {devnet.chain_id})")
        step("Deploy AuditAnchor")
        cli("deploy", env=env)
        step("Ingest sample purchase-order, invoice, inspection and decision records")
        cli("ingest", str(records), env=env)
        step("Anchor the log's checkpoint on chain")
        cli("anchor", env=env)
        step("The inspection certificate's inclusion proof")
        cli("proof", "demo-003", env=env)
        step("Audit: every leaf re-derived from its record, every node from its leaves")
        cli("audit", env=env)

        step("Someone edits the invoice amount directly in the database ...")
        database = WORK / "data" / "log.sqlite"
        db = sqlite3.connect(database)
        (original,) = db.execute("SELECT body FROM records WHERE record_id = 'demo-002'").fetchone()
        forged = original.replace(b'"amount":12500000', b'"amount":99500000')
        db.execute("UPDATE records SET body = ? WHERE record_id = 'demo-002'", (forged,))
        db.commit()
        audit = cli("audit", env=env, check=False)
        if audit.returncode != 1:
            raise SystemExit("demo: the audit did not catch the altered record")
        step("... and the audit names it (exit code 1). Restoring the original row.")
        db.execute("UPDATE records SET body = ? WHERE record_id = 'demo-002'", (original,))
        db.commit()
        db.close()
        cli("audit", env=env)
    step("Demo finished; Anvil stopped. Data left in .demo/ for a look.")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("\ndemo: interrupted; everything it started has been stopped")
        sys.exit(130)
