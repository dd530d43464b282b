"""`make demo`: a supply-chain-finance deal, end to end, on a local chain.

Starts Anvil (anvil.env) and deploys the contracts, starts the API service (with its anchoring
service and escrow indexer), then plays a scenario through the API with the devnet's accounts
as buyer, supplier, financier, inspector, arbiter, approvers, compliance officer and auditor:

1. a purchase order for two milestones is recorded and the deal funded in the mock stablecoin;
2. the supplier ships milestone 1, the inspector attests, the buyer accepts; release, withdrawal;
3. the supplier finances milestone 2's receivable at a discount; financing the same invoice
   again is refused;
4. milestone 2's payment matches a risk rule and is held; two approvers clear it; it is
   released to the financier;
5. the log is anchored; the auditor downloads the inspection record's proof bundle and
   verifies it with the CLI against the chain;
6. a database row is altered behind the system's back; `chainaudit audit` names it; the demo
   restores it.

Everything runs under .demo/. The chain and the API stay up afterwards for a look (the last
lines say where); `make demo-stop` (or `scripts/demo.py --stop`) stops them, and Ctrl-C during
the demo stops everything it started. Running it again starts afresh.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from web3 import Web3

from chainaudit.app.deploy import DEVNET_PARTIES
from chainaudit.chain.chain import Chain
from chainaudit.chain.devnet import derive_accounts, free_port, stop_detached
from chainaudit.chain.devnet import load_settings as devnet_settings
from chainaudit.chain.escrow import EscrowClient
from chainaudit.chain.escrow_deploy import mint
from chainaudit.log import bundles
from chainaudit.log.store import DB_NAME, Log
from chainaudit.service.keys import KeyStore

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(os.environ.get("CHAINAUDIT_DEMO_DIR", ROOT / ".demo"))  # tests use their own
DATA = WORK / "data"
SERVE_PID = WORK / "serve.pid"
DAY = 86400
UNIT = 10**6  # mUSDC has 6 decimals
HELD = 75_000 * UNIT  # above the demo rules' large-release threshold of 50,000 mUSDC

NAMES = {
    "buyer": "Megacorp (buyer)",
    "supplier": "Globex (supplier)",
    "financier": "First Factor Bank (financier)",
    "inspector": "SGS (inspector)",
    "arbiter": "ICC (arbiter)",
    "approver1": "Alice (approver)",
    "approver2": "Bob (approver)",
    "compliance": "the compliance officer",
    "auditor": "the auditor",
}

DEMO_RULES = """# The demo's risk policy (a smaller cousin of examples/rules.toml).
version = "demo-1"
owner = "risk-office@megacorp.example"

[outcomes]
low = "allow"
medium = "review"
high = "hold"
critical = "hold"

[[rules]]
id = "large-release"
type = "amount_above"
severity = "high"
threshold = "50000000000"        # releases above 50,000 mUSDC wait for a person
actions = ["release"]
owner = "treasury@megacorp.example"

[[rules]]
id = "reused-document"
type = "document_reuse"
severity = "critical"
"""


def money(minor: int) -> str:
    return f"{minor / UNIT:,.2f} mUSDC"


def short(tx: str | None) -> str:
    return f"{tx[:10]}…" if tx else "-"


def say(text: str) -> None:
    print(text, flush=True)


def h(text: str) -> str:
    return Web3.to_hex(Web3.keccak(text=text))


@contextmanager
def progress(task: str) -> Iterator[None]:
    """Show that a long step is alive: a line every 5 seconds while it runs."""
    done = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        while not done.wait(5):
            say(f"   ... {task} ({time.monotonic() - started:.0f} s)")

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def cli(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "chainaudit", *args],
        cwd=WORK,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if check and result.returncode != 0:
        raise SystemExit(
            f"demo: chainaudit {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
        )
    return result


def edit_record(database: sqlite3.Connection, record_id: str, old: bytes, new: bytes) -> None:
    """Replace ``old`` by ``new`` in one stored record's body behind the system's back, as an
    intruder with the database file would. Read, change and write happen under the database's
    write lock, so records the running service appends meanwhile (read-audit records, say)
    are kept."""
    database.execute("BEGIN IMMEDIATE")
    try:
        (index,) = database.execute(
            "SELECT idx FROM record_ids WHERE record_id = ?", (record_id,)
        ).fetchone()
        (blob,) = database.execute(
            "SELECT records FROM bundles WHERE id = ?", (bundles.key(index),)
        ).fetchone()
        edited = [
            r._replace(body=(r.body or b"").replace(old, new)) if r.record_id == record_id else r
            for r in bundles.decode(blob)
        ]
        database.execute(
            "UPDATE bundles SET records = ? WHERE id = ?",
            (bundles.encode_at(edited), bundles.key(index)),
        )
        database.execute("COMMIT")
    except BaseException:
        database.execute("ROLLBACK")
        raise


def start_api(port: int, env: dict[str, str]) -> tuple[int, str]:
    """Start ``chainaudit serve`` on ``port`` (another free port if that one is taken by the
    time it binds: another demo may have started meanwhile) and wait until *this* server
    announces that it accepts connections. Returns the port and the URL."""
    for candidate in (port, free_port()):
        log_path = WORK / "serve.log"
        with log_path.open("w") as log_file:
            server = subprocess.Popen(
                [sys.executable, "-m", "chainaudit", "serve", "--port", str(candidate)],
                cwd=WORK,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        SERVE_PID.write_text(f"{server.pid}\n")
        deadline = time.monotonic() + 60
        while server.poll() is None and time.monotonic() < deadline:
            if "serving the API at" in log_path.read_text(errors="replace"):
                return candidate, f"http://127.0.0.1:{candidate}"
            time.sleep(0.2)
        if server.poll() is None or "in use by another process" not in log_path.read_text(
            errors="replace"
        ):
            break
    raise SystemExit(f"demo: the API did not start; see {WORK / 'serve.log'}")


def stop() -> None:
    """Stop a demo left running (API, then Anvil); harmless when none is."""
    if SERVE_PID.exists():
        with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
            os.killpg(int(SERVE_PID.read_text()), signal.SIGTERM)
        SERVE_PID.unlink(missing_ok=True)
    stop_detached(DATA / "devnet" / "anvil.pid")


class Api:
    def __init__(self, url: str, tokens: dict[str, str]) -> None:
        self.url = url
        self.tokens = tokens

    def call(
        self,
        who: str,
        method: str,
        path: str,
        body: Any = None,
        expect: int | tuple[int, ...] = (200, 201, 202),
    ) -> dict[str, Any]:
        wanted = (expect,) if isinstance(expect, int) else expect
        with httpx.Client(
            base_url=self.url, timeout=120, headers={"X-API-Key": self.tokens[who]}
        ) as client:
            response = client.request(method, path, json=body)
        if response.status_code not in wanted:
            raise SystemExit(
                f"demo: {method} {path} as {who}: {response.status_code} {response.text[:400]}"
            )
        result: dict[str, Any] = response.json()
        return result

    def act(self, who: str, deal: int, milestone: int, action: str, **body: Any) -> dict[str, Any]:
        return self.call(
            who, "POST", f"/v1/deals/{deal}/milestones/{milestone}/{action}", body or None
        )


def main() -> None:
    stop()
    shutil.rmtree(WORK, ignore_errors=True)
    DATA.mkdir(parents=True)
    (DATA / "rules.toml").write_text(DEMO_RULES)
    devnet = devnet_settings()
    chain_port = devnet.port if port_free(devnet.port) else free_port()
    api_port = 8000 if port_free(8000) else free_port()
    rpc = f"http://127.0.0.1:{chain_port}"
    api_url = f"http://127.0.0.1:{api_port}"
    env = {
        **os.environ,
        "CHAINAUDIT_DATA_DIR": str(DATA),
        "CHAINAUDIT_RPC_URL": rpc,
        "CHAINAUDIT_DEPLOYMENTS_DIR": str(WORK / "deployments"),
        "CHAINAUDIT_MAX_BATCH_SECONDS": "5",
        "CHAINAUDIT_FINALITY": "2",
    }
    accounts = derive_accounts(devnet.mnemonic, 10)
    who = {name: accounts[i] for name, i in DEVNET_PARTIES.items()}
    address = {name: a.address for name, a in who.items()}

    say("== Setting up")
    cli("devnet", "--detach", "--port", str(chain_port), env=env)
    say(f"   Anvil devnet on {rpc} (chain id {devnet.chain_id})")
    with progress("compiling (first run only) and deploying the contracts"):
        cli("deploy", env=env)
    deployed = json.loads((WORK / "deployments" / f"{devnet.chain_id}.json").read_text())
    contracts = {n: c["address"] for n, c in deployed["contracts"].items()}
    say(
        f"   AuditAnchor {contracts['AuditAnchor']}, SupplyChainEscrow "
        f"{contracts['SupplyChainEscrow']}, mUSDC {contracts['MockStablecoin']}"
    )
    chain = Chain(rpc)
    operator = Account.from_key(who["operator"].private_key)
    escrow = EscrowClient(chain, contracts["SupplyChainEscrow"])
    escrow.register_inspector(operator, address["inspector"])  # a no-op: `deploy` did it
    for party, amount in (("buyer", 500_000 * UNIT), ("financier", 200_000 * UNIT)):
        mint(chain, operator, contracts["MockStablecoin"], address[party], amount)
        say(f"   faucet: {money(amount)} minted to {NAMES[party]}")

    Log.open(DATA).close()
    store = KeyStore(DATA / DB_NAME)
    tokens = {
        name: store.create("partner", name=NAMES[name], address=address[name])[1]
        for name in (
            "buyer",
            "supplier",
            "financier",
            "inspector",
            "arbiter",
            "approver1",
            "approver2",
        )
    }
    tokens["operator"] = store.create("operator", name="operations desk")[1]
    # the compliance officer's key is bound to its own account holding COMPLIANCE_ROLE
    tokens["compliance"] = store.create(
        "operator", name="compliance officer", address=address["compliance"]
    )[1]
    tokens["auditor"] = store.create("auditor", name="external auditor")[1]
    tokens["regulator"] = store.create("regulator", name="financial regulator")[1]
    store.close()
    (WORK / "keys.json").write_text(json.dumps(tokens, indent=2) + "\n")

    api_port, api_url = start_api(api_port, env)
    say(f"   API service on {api_url} (anchoring service and escrow indexer running)")
    api = Api(api_url, tokens)
    now = int(chain.w3.eth.get_block("latest")["timestamp"])

    say("\n== 1. Purchase order and funding")
    m1, m2 = 38_412_500_000, 61_337_250_000
    api.call(
        "buyer",
        "POST",
        "/v1/records",
        {
            "id": "PO-1001",
            "kind": "transaction",
            "timestamp": "2026-11-21T09:00:00Z",
            "actor": address["buyer"],
            "payload": {
                "type": "purchase_order",
                "po": "PO-1001",
                "supplier": address["supplier"],
                "lines": [
                    {"sku": "PUMP-7", "qty": 120, "unit_price": "320.10"},
                    {"sku": "VALVE-2", "qty": 400, "unit_price": "153.34"},
                ],
                "total": str(m1 + m2),
            },
        },
    )
    deal = api.call(
        "buyer",
        "POST",
        "/v1/deals",
        {
            "supplier": address["supplier"],
            "arbiter": address["arbiter"],
            "inspectors": [address["inspector"]],
            "inspector_threshold": 1,
            "inspection_window": 7 * DAY,
            "dispute_timeout": 14 * DAY,
            "default_payee_bps": 5000,
            "long_stop": now + 180 * DAY,
            "approvers": [address["approver1"], address["approver2"]],
            "approvals_required": 2,
            "approval_threshold": 50_000 * UNIT,
            "milestones": [
                {"amount": m1, "due_date": now + 30 * DAY, "document_hash": h("PO-1001/1")},
                {
                    "amount": m2,
                    "due_date": now + 60 * DAY,
                    "document_hash": h("PO-1001/2"),
                    "invoice_hash": h("INV-7781"),
                },
            ],
        },
    )
    deal_id = deal["deal"]["deal_id"]
    say(
        f"   {NAMES['buyer']} opened deal {deal_id} with {NAMES['supplier']}: milestones of "
        f"{money(m1)} and {money(m2)} (tx {short(deal['tx_hash'])})"
    )
    for index, amount in ((0, m1), (1, m2)):
        funded = api.act("buyer", deal_id, index, "fund")
        say(
            f"   {NAMES['buyer']} funded milestone {index + 1}: {money(amount)} "
            f"(tx {short(funded['tx_hash'])})"
        )

    say("\n== 2. Shipment, inspection, acceptance, release, withdrawal")
    shipped = api.act("supplier", deal_id, 0, "ship", document_hash=h("BL-77"))
    say(
        f"   {NAMES['supplier']} shipped milestone 1 under bill of lading BL-77 "
        f"(tx {short(shipped['tx_hash'])})"
    )
    certificate = {
        "id": "CERT-SGS-4411",
        "kind": "document",
        "timestamp": "2026-11-28T14:00:00Z",
        "actor": address["inspector"],
        "payload": {
            "type": "inspection_certificate",
            "po": "PO-1001",
            "milestone": 1,
            "lot": "L-42",
            "result": "passed",
            "deal_id": deal_id,
        },
    }
    api.call("inspector", "POST", "/v1/records", certificate)
    cert_hash = api.call("auditor", "GET", "/v1/records/CERT-SGS-4411")["leaf_hash"]
    attested = api.act("inspector", deal_id, 0, "attest", document_hash=cert_hash)
    say(
        f"   {NAMES['inspector']} recorded certificate CERT-SGS-4411 and attested milestone 1 "
        f"(tx {short(attested['tx_hash'])})"
    )
    accepted = api.act("buyer", deal_id, 0, "accept")
    say(f"   {NAMES['buyer']} accepted milestone 1 (tx {short(accepted['tx_hash'])})")
    released = api.act("supplier", deal_id, 0, "release")
    say(
        f"   milestone 1 released: {money(m1)} credited to {NAMES['supplier']} "
        f"(tx {short(released['tx_hash'])})"
    )
    withdrawn = api.call(
        "supplier", "POST", "/v1/withdrawals", {"token": contracts["MockStablecoin"]}
    )
    say(f"   {NAMES['supplier']} withdrew {money(m1)} (tx {short(withdrawn['tx_hash'])})")

    say("\n== 3. Receivables financing")
    advance = m2 * 97 // 100
    offered = api.act(
        "supplier",
        deal_id,
        1,
        "offer-financing",
        financier=address["financier"],
        advance=advance,
        invoice_hash=h("INV-7781"),
        expires_at=now + 10 * DAY,
    )
    say(
        f"   {NAMES['supplier']} offered invoice INV-7781 (milestone 2) at a 3% discount "
        f"(tx {short(offered['tx_hash'])})"
    )
    financed = api.act(
        "financier", deal_id, 1, "accept-financing", advance=advance, invoice_hash=h("INV-7781")
    )
    say(
        f"   {NAMES['financier']} paid {money(advance)} to {NAMES['supplier']} and now owns "
        f"milestone 2's claim (tx {short(financed['tx_hash'])})"
    )
    second = api.call(
        "buyer",
        "POST",
        "/v1/deals",
        {
            "supplier": address["supplier"],
            "arbiter": address["arbiter"],
            "inspectors": [address["inspector"]],
            "inspector_threshold": 1,
            "inspection_window": 7 * DAY,
            "dispute_timeout": 14 * DAY,
            "default_payee_bps": 5000,
            "long_stop": now + 180 * DAY,
            "milestones": [
                {
                    "amount": 9_876_540_000,
                    "due_date": now + 45 * DAY,
                    "document_hash": h("PO-1002/1"),
                }
            ],
        },
    )["deal"]["deal_id"]
    refused = api.call(
        "supplier",
        "POST",
        f"/v1/deals/{second}/milestones/0/offer-financing",
        {
            "financier": address["financier"],
            "advance": 9_000 * UNIT,
            "invoice_hash": h("INV-7781"),
            "expires_at": now + 10 * DAY,
        },
        expect=409,
    )
    say(
        f"   financing INV-7781 again under deal {second} (which did not declare it) "
        f"is refused: {refused['error']}"
    )

    say("\n== 4. A risk rule holds the payment; two approvers clear it")
    api.act("supplier", deal_id, 1, "ship", document_hash=h("BL-78"))
    api.act("inspector", deal_id, 1, "attest", document_hash=h("CERT-SGS-4412"))
    api.act("buyer", deal_id, 1, "accept")
    say("   milestone 2 shipped, inspected and accepted")
    held = api.call("buyer", "POST", f"/v1/deals/{deal_id}/milestones/1/release", expect=409)
    say(
        f"   the release of {money(m2)} matched rule {', '.join(held['fired'])}: held, "
        f"alert {held['alert_id']} raised, compliance hold placed on chain "
        f"(tx {short(held.get('hold_tx'))})"
    )
    requested = api.act("buyer", deal_id, 1, "request-release")
    say(f"   {NAMES['buyer']} asked for the release (tx {short(requested['tx_hash'])})")
    for approver in ("approver1", "approver2"):
        approved = api.act(approver, deal_id, 1, "approve-release")
        say(f"   {NAMES[approver]} approved it (tx {short(approved['tx_hash'])})")
    alert = held["alert_id"]
    api.call("compliance", "POST", f"/v1/alerts/{alert}/acknowledge", {"note": "reviewing"})
    # clearing and lifting free money: the operations desk asks, a second officer approves
    asked = api.call(
        "operator",
        "POST",
        f"/v1/alerts/{alert}/resolve",
        {"resolution": "cleared", "note": "two approvers signed off"},
        expect=202,
    )
    cleared = api.call("compliance", "POST", f"/v1/approvals/{asked['approval_id']}/approve")
    resolution = cleared["result"]["record_id"]
    reason = api.call("auditor", "GET", f"/v1/records/{resolution}")["leaf_hash"]
    asked = api.call(
        "operator",
        "POST",
        f"/v1/deals/{deal_id}/milestones/1/hold/lift",
        {"reason_hash": reason, "alert_id": alert},
        expect=202,
    )
    lifted = api.call("compliance", "POST", f"/v1/approvals/{asked['approval_id']}/approve")
    say(
        f"   the operations desk asked to clear alert {alert} and lift the hold; "
        f"{NAMES['compliance']} approved both as the second officer (lift tx "
        f"{short(lifted['result']['tx_hash'])}, signed with the officer's own key)"
    )
    paid = api.act("financier", deal_id, 1, "release")
    say(
        f"   milestone 2 released: {money(m2)} credited to {NAMES['financier']} "
        f"(tx {short(paid['tx_hash'])})"
    )
    api.call("financier", "POST", "/v1/withdrawals", {"token": contracts["MockStablecoin"]})
    say(f"   {NAMES['financier']} withdrew {money(m2)}")

    say("\n== 5. Anchoring, and the auditor's own verification")
    api.call("operator", "POST", "/v1/anchors")
    bundle_path = WORK / "CERT-SGS-4411.bundle.json"
    deadline = time.monotonic() + 60
    with progress("waiting for the anchor to be confirmed"):
        while True:
            with httpx.Client(
                base_url=api_url, timeout=30, headers={"X-API-Key": tokens["auditor"]}
            ) as client:
                response = client.get("/v1/records/CERT-SGS-4411/bundle")
            if response.status_code == 200:
                bundle_path.write_text(json.dumps(response.json(), indent=2) + "\n")
                break
            if time.monotonic() > deadline:
                raise SystemExit("demo: the log was not anchored in time")
            time.sleep(0.5)
    anchor = json.loads(bundle_path.read_text())["anchor"]
    say(
        f"   the log was anchored: checkpoint {anchor['checkpoint_seq']} in block "
        f"{anchor['block_number']} (tx {short(anchor['tx_hash'])})"
    )
    verdict = cli(
        "verify",
        str(bundle_path),
        "--rpc",
        rpc,
        "--contract",
        contracts["AuditAnchor"],
        "--chain-id",
        str(devnet.chain_id),
        env=env,
    )
    say(
        f"   {NAMES['auditor']} downloaded the inspection certificate's bundle and verified it "
        "against the chain:"
    )
    say("   " + verdict.stdout.strip().splitlines()[-1])

    say("\n== 6. Tampering is caught")
    database = sqlite3.connect(DATA / DB_NAME, isolation_level=None)
    edit_record(database, "PO-1001", b'"qty":400', b'"qty":40')
    say("   someone edits the purchase order's quantity directly in the database ...")
    audit = cli("audit", "--chain", env=env, check=False)
    named = [line for line in audit.stdout.splitlines() if "PO-1001" in line]
    if audit.returncode != 1 or not named:
        raise SystemExit("demo: the audit did not catch the altered record")
    say(f"   chainaudit audit (exit {audit.returncode}): {named[0].strip()}")
    edit_record(database, "PO-1001", b'"qty":40', b'"qty":400')
    database.close()
    clean = cli("audit", "--chain", env=env)
    say("   restored; " + clean.stdout.strip().splitlines()[-1].split(";")[0])

    say("\n== 7. One more held payment, left for the compliance officer in the web page")
    now = int(chain.w3.eth.get_block("latest")["timestamp"])
    third = api.call(
        "buyer",
        "POST",
        "/v1/deals",
        {
            "supplier": address["supplier"],
            "arbiter": address["arbiter"],
            "inspectors": [address["inspector"]],
            "inspector_threshold": 1,
            "inspection_window": 7 * DAY,
            "dispute_timeout": 14 * DAY,
            "default_payee_bps": 5000,
            "long_stop": now + 180 * DAY,
            "milestones": [
                {"amount": HELD, "due_date": now + 30 * DAY, "document_hash": h("PO-1003/1")}
            ],
        },
    )["deal"]["deal_id"]
    api.act("buyer", third, 0, "fund")
    api.act("supplier", third, 0, "ship", document_hash=h("BL-79"))
    api.act("inspector", third, 0, "attest", document_hash=h("CERT-SGS-4413"))
    api.act("buyer", third, 0, "accept")
    left = api.call("supplier", "POST", f"/v1/deals/{third}/milestones/0/release", expect=409)
    say(
        f"   deal {third}: {money(HELD)} funded, shipped, inspected and accepted; its release "
        f"matched rule {', '.join(left['fired'])}: held, alert {left['alert_id']} left open, "
        f"compliance hold left in place (tx {short(left.get('hold_tx'))})"
    )
    say(
        f"   to clear it, open the web page's Compliance view signed in as the compliance "
        f'officer and as the operations desk (keys "compliance" and "operator" in '
        f"{WORK / 'keys.json'}): one asks, the other approves"
    )

    trace = api.call("auditor", "GET", f"/v1/deals/{deal_id}/trace")["entries"]
    say(f"\n== Done. Deal {deal_id}'s timeline holds {len(trace)} audited entries.")
    say(f"   API:      {api_url}/docs")
    say(f"   web page: {api_url}/  (sign in with a key from {WORK / 'keys.json'})")
    say(f"   chain:    {rpc}")
    say("   `make demo-stop` stops the API and the chain.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="chainaudit's end-to-end demo")
    parser.add_argument("--stop", action="store_true", help="stop a demo left running")
    options = parser.parse_args()
    if options.stop:
        stop()
        print("demo stopped")
        sys.exit(0)
    try:
        main()
    except KeyboardInterrupt:
        stop()
        print("\ndemo: interrupted; everything it started has been stopped")
        sys.exit(130)
    except BaseException:
        stop()
        raise
