#!/usr/bin/env python3
"""Measure SupplyChainEscrow's whole-transaction gas on a real Anvil, with OpenZeppelin 4.9's
``Escrow`` (deposit and withdraw of ether for a payee) side by side as the baseline.

Starts its own Anvil (free port), deploys the vault, the mock stablecoin and OZ's Escrow, and
runs every action through the Python client (``chainaudit.chain.escrow.EscrowClient``), so each
figure is a receipt's ``gasUsed``: 21,000 base gas, calldata, cold accounts and slots and
refunds included. The scenario is steady state, as in ``contracts/test/EscrowGas.t.sol``: a
first deal is run to the end before measuring, so the vault already holds the token and the
supplier already holds some (no fresh token-balance slots). Writes reports/bench_escrow.json
and prints a table with the goals and, beside each figure, the one measured the same way on
the vault before issue 13 (accepted money never refunded by default, bounded holds, invoice
commitments, the registrar, the controls split out by delegatecall): :data:`BEFORE_ISSUE_13`.
Last, it sets the vault's ``EscrowGate`` and measures a policy deal's create, fund and
release with clearances and a withdrawal with the freeze check against issue 13's budgets
(:data:`GATED_GOALS`).

Usage: .venv/bin/python scripts/bench_escrow.py [--out reports/bench_escrow.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chainaudit.chain.chain import Chain, deploy, transact  # noqa: E402
from chainaudit.chain.devnet import Devnet, free_port  # noqa: E402
from chainaudit.chain.escrow import DealParams, EscrowClient, MilestoneParams, TxResult  # noqa: E402
from chainaudit.chain.escrow_deploy import (  # noqa: E402
    EIP170_CODE_LIMIT,
    deploy_escrow,
    deploy_gate,
    escrow_artifacts,
    mint,
)
from chainaudit.chain.toolchain import compile_contracts  # noqa: E402
from chainaudit.core.errors import ToolchainError  # noqa: E402
from chainaudit.risk.clearance import ClearanceSigner  # noqa: E402

OZ_ESCROW = "node_modules/@openzeppelin/contracts-v4/utils/escrow/Escrow.sol"
EIP170_LIMIT = EIP170_CODE_LIMIT
GOALS = {"create": 180_000, "fund": 80_000, "release": 90_000, "withdraw": 50_000}
# Issue 13's budgets once the vault has its EscrowGate (money movements carry a clearance).
GATED_GOALS = {"create": 200_000, "fund": 90_000, "release": 100_000, "withdraw": 50_000}
BEFORE_ISSUE_13: dict[str, int] = {
    "create (2 milestones, 2-of-3 inspectors)": 172_038,
    "fund (full milestone)": 76_759,
    "ship": 79_167,
    "attest (direct, 1st of 2)": 43_052,
    "attest (EIP-712 relayed, completes inspection)": 78_472,
    "accept": 32_860,
    "release (accepted)": 62_109,
    "withdraw (payee holds the token)": 36_245,
    "release (deemed acceptance)": 64_627,
    "finance: offer (supplier)": 110_952,
    "finance: accept (financier pays the advance)": 110_998,
    "dispute (open)": 58_139,
    "rule (arbiter split 70/30)": 76_659,
    "refund (long stop, 1 milestone)": 42_204,
}
"""Whole-transaction gas of the same operations on the vault before issue 13 (README's table of
that version, measured by this script); the invoice is declared at creation since, so the
financing figures compare an undeclared offer with a declared one."""
DAY = 24 * 3600
AMOUNT = 1_000 * 10**6


def h(text: str) -> bytes:
    return bytes(Web3.keccak(text=text))


class Bench:
    def __init__(self, chain: Chain, accounts: list[LocalAccount]) -> None:
        self.chain = chain
        self.w3 = chain.w3
        names = ["admin", "buyer", "supplier", "arbiter", "financier", "insp1", "insp2", "insp3"]
        self.a = dict(zip(names, accounts, strict=False))
        self.relayer = accounts[8]
        deployed = deploy_escrow(chain, self.a["admin"], None, arbiters=[self.a["arbiter"].address])
        self.token = deployed["MockStablecoin"].address
        self.client = EscrowClient(chain, deployed["SupplyChainEscrow"].address)
        for name in ("insp1", "insp2", "insp3"):
            self.client.register_inspector(self.a["admin"], self.a[name].address)
        for name in ("buyer", "financier"):
            mint(chain, self.a["admin"], self.token, self.a[name].address, 10**9 * 10**6)
            self.client.approve_token(self.a[name], self.token)
        self.rows: list[dict[str, Any]] = []

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def travel(self, seconds: int) -> None:
        self.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def params(self, inspectors: int = 3, threshold: int = 2) -> DealParams:
        return DealParams(
            supplier=self.a["supplier"].address,
            arbiter=self.a["arbiter"].address,
            token=self.token,
            inspectors=[self.a[f"insp{i + 1}"].address for i in range(inspectors)],
            inspector_threshold=threshold,
            inspection_window=7 * DAY,
            dispute_timeout=14 * DAY,
            default_payee_bps=5_000,
            long_stop=self.now() + 180 * DAY,
        )

    def milestones(self, count: int = 2) -> list[MilestoneParams]:
        start = self.now()
        return [
            MilestoneParams(
                amount=AMOUNT, due_date=start + 30 * DAY * (i + 1), document_hash=h(f"PO/{i}")
            )
            for i in range(count)
        ]

    def record(
        self, operation: str, result: TxResult, goal_key: str | None = None, *, gated: bool = False
    ) -> None:
        goal = (GATED_GOALS if gated else GOALS).get(goal_key) if goal_key else None
        self.rows.append(
            {
                "operation": operation,
                "gas_used": result.gas_used,
                "before_issue_13": BEFORE_ISSUE_13.get(operation),
                "goal": goal,
                "pass": None if goal is None else result.gas_used <= goal,
                "tx_hash": result.tx_hash,
            }
        )

    def deal(self, inspectors: int = 3, threshold: int = 2, invoices: str | None = None) -> int:
        milestones = self.milestones(2)
        if invoices is not None:
            milestones = [
                dataclasses.replace(m, invoice_hash=h(f"{invoices} {i}"))
                for i, m in enumerate(milestones)
            ]
        created = self.client.create_deal(
            self.a["buyer"], self.params(inspectors, threshold), milestones
        )
        return created.deal_id

    def inspected(self, deal_id: int, milestone: int) -> None:
        c, a = self.client, self.a
        c.fund(a["buyer"], deal_id, milestone, AMOUNT)
        c.mark_shipped(a["supplier"], deal_id, milestone, h("bill of lading"))
        c.attest(a["insp1"], deal_id, milestone, h("report"))
        c.attest(a["insp2"], deal_id, milestone, h("report"))

    def run(self) -> None:
        c, a = self.client, self.a
        # Warm-up: one deal run to the end, so that neither the vault's nor the supplier's
        # token balance slot is fresh.
        warm = self.deal(1, 1)
        c.fund(a["buyer"], warm, 0, AMOUNT)
        c.mark_shipped(a["supplier"], warm, 0, h("bill of lading"))
        c.attest(a["insp1"], warm, 0, h("report"))
        c.accept(a["buyer"], warm, 0)
        c.release(a["buyer"], warm, 0)
        c.withdraw(a["supplier"], self.token)

        params, milestones = self.params(), self.milestones(2)
        created = c.create_deal(a["buyer"], params, milestones)
        self.record("create (2 milestones, 2-of-3 inspectors)", created, "create")
        deal_id = created.deal_id
        single = c.create_deal(a["buyer"], self.params(1, 1), self.milestones(2))
        self.record("create (2 milestones, 1 inspector)", single, "create")
        declared = [
            dataclasses.replace(m, invoice_hash=h(f"declared {i}"))
            for i, m in enumerate(self.milestones(2))
        ]
        self.record(
            "create (2 milestones, 2-of-3 inspectors, 2 invoices declared)",
            c.create_deal(a["buyer"], self.params(), declared),
        )

        self.record("fund (full milestone)", c.fund(a["buyer"], deal_id, 0, AMOUNT), "fund")
        self.record("ship", c.mark_shipped(a["supplier"], deal_id, 0, h("bill of lading")))
        self.record("attest (direct, 1st of 2)", c.attest(a["insp1"], deal_id, 0, h("report")))
        signed = c.sign_attestation(a["insp2"], deal_id, 0, h("report"), deadline=self.now() + DAY)
        self.record(
            "attest (EIP-712 relayed, completes inspection)",
            c.relay_attestation(self.relayer, signed),
        )
        self.record("accept", c.accept(a["buyer"], deal_id, 0))
        self.record("release (accepted)", c.release(a["buyer"], deal_id, 0), "release")
        self.record(
            "withdraw (payee holds the token)", c.withdraw(a["supplier"], self.token), "withdraw"
        )

        # Deemed acceptance: release after the inspection window, no accept transaction.
        self.inspected(deal_id, 1)
        self.travel(7 * DAY + 1)
        self.record("release (deemed acceptance)", c.release(a["buyer"], deal_id, 1), "release")

        # Financing: the supplier offers, the financier pays the advance and takes the claim.
        financed = self.deal(invoices="invoice")
        c.fund(a["buyer"], financed, 0, AMOUNT)
        offer = c.offer_financing(
            a["supplier"],
            financed,
            0,
            financier=a["financier"].address,
            advance=AMOUNT * 97 // 100,
            invoice_hash=h("invoice 0"),
            expires_at=self.now() + DAY,
        )
        self.record("finance: offer (supplier)", offer)
        accepted = c.accept_financing(
            a["financier"], financed, 0, advance=AMOUNT * 97 // 100, invoice_hash=h("invoice 0")
        )
        self.record("finance: accept (financier pays the advance)", accepted)

        # Dispute and ruling.
        c.fund(a["buyer"], financed, 1, AMOUNT)
        self.record("dispute (open)", c.open_dispute(a["buyer"], financed, 1, h("damaged")))
        self.record(
            "rule (arbiter split 70/30)",
            c.resolve_dispute(a["arbiter"], financed, 1, 7_000, h("ruling")),
        )

        # Long-stop refund of a funded, undelivered deal.
        stale = c.create_deal(
            a["buyer"],
            dataclasses.replace(self.params(), long_stop=self.now() + 60 * DAY),
            [MilestoneParams(amount=AMOUNT, due_date=self.now() + 30 * DAY, document_hash=h("x"))],
        ).deal_id
        c.fund(a["buyer"], stale, 0, AMOUNT)
        self.travel(60 * DAY + 1)
        self.record("refund (long stop, 1 milestone)", c.reclaim_after_long_stop(a["buyer"], stale))

        # New in issue 13: a bounded hold, and the long-stop settlement of a deemed-accepted
        # milestone (paid to its payee, never refunded).
        late = c.create_deal(
            a["buyer"],
            dataclasses.replace(self.params(), long_stop=self.now() + 60 * DAY),
            [MilestoneParams(amount=AMOUNT, due_date=self.now() + 30 * DAY, document_hash=h("y"))],
        ).deal_id
        self.inspected(late, 0)
        officer = a["admin"]
        self.record("hold (place, 1 day)", c.place_hold(officer, late, 0, h("kyc"), DAY))
        self.travel(61 * DAY + 1)
        self.record(
            "settle after long stop (deemed accepted, paid to the payee)",
            c.settle_after_long_stop(a["buyer"], late, 0),
        )
        self.run_gated()

    def run_gated(self) -> None:
        """Issue 13: the vault's EscrowGate set (every policy deal's money movement needs a
        clearance), measured in steady state: a first policy deal is funded and released with
        clearances, so the gate's nonce word is written and the gate is a known contract."""
        c, a = self.client, self.a
        signer_account = self.relayer
        deploy_gate(self.chain, a["admin"], c.address, signer_account.address)
        signer = ClearanceSigner(signer_account, vault=c.address, chain_id=c.chain_id)
        nonce = iter(range(1_000))

        def cleared(deal_id: int, milestone: int, action: str, amount: int) -> bytes:
            clearance = signer.issue(
                deal_id=deal_id,
                milestone=milestone,
                action=action,
                amount=amount,
                decision_leaf=h(f"decision {deal_id}/{milestone}/{action}"),
                nonce=next(nonce),
                now=self.now(),
            )
            return clearance.encoded

        def policy_deal() -> int:
            params = dataclasses.replace(self.params(), policy=1)
            return c.create_deal(a["buyer"], params, self.milestones(2)).deal_id

        def to_accepted(deal_id: int, milestone: int) -> None:
            c.fund(
                a["buyer"],
                deal_id,
                milestone,
                AMOUNT,
                clearance=cleared(deal_id, milestone, "fund", AMOUNT),
            )
            c.mark_shipped(a["supplier"], deal_id, milestone, h("bill of lading"))
            c.attest(a["insp1"], deal_id, milestone, h("report"))
            c.attest(a["insp2"], deal_id, milestone, h("report"))
            c.accept(a["buyer"], deal_id, milestone)

        warm = policy_deal()
        to_accepted(warm, 0)
        c.release(a["buyer"], warm, 0, clearance=cleared(warm, 0, "release", AMOUNT))
        c.withdraw(a["supplier"], self.token)

        params = dataclasses.replace(self.params(), policy=1)
        created = c.create_deal(a["buyer"], params, self.milestones(2))
        self.record("gated: create (policy deal, 2-of-3 inspectors)", created, "create", gated=True)
        deal_id = created.deal_id
        funded = c.fund(
            a["buyer"], deal_id, 0, AMOUNT, clearance=cleared(deal_id, 0, "fund", AMOUNT)
        )
        self.record("gated: fund (with clearance)", funded, "fund", gated=True)
        c.mark_shipped(a["supplier"], deal_id, 0, h("bill of lading"))
        c.attest(a["insp1"], deal_id, 0, h("report"))
        c.attest(a["insp2"], deal_id, 0, h("report"))
        c.accept(a["buyer"], deal_id, 0)
        released = c.release(
            a["buyer"], deal_id, 0, clearance=cleared(deal_id, 0, "release", AMOUNT)
        )
        self.record("gated: release (with clearance)", released, "release", gated=True)
        self.record(
            "gated: withdraw (freeze check)",
            c.withdraw(a["supplier"], self.token),
            "withdraw",
            gated=True,
        )
        plain = self.deal()
        self.record(
            "gated: fund (deal without a policy)",
            c.fund(a["buyer"], plain, 0, AMOUNT),
            "fund",
            gated=True,
        )


def oz_baseline(chain: Chain, owner: LocalAccount, payee: str) -> list[dict[str, Any]]:
    """OpenZeppelin 4.9 ``Escrow``: deposit (to an empty and to a non-empty deposit) and
    withdraw, in ether, by its owner."""
    artifact = compile_contracts(extra_sources=[OZ_ESCROW])["Escrow"]
    deployed = deploy(chain, owner, artifact)
    escrow = chain.contract(deployed.address, artifact.abi)
    rows = []

    def run(label: str, call: Any, value: int = 0) -> None:
        if value:
            tx = call.build_transaction({"from": owner.address, "value": value})
            tx_hash = chain.w3.eth.send_transaction(tx)
            receipt = chain.w3.eth.wait_for_transaction_receipt(tx_hash)
            assert receipt["status"] == 1
        else:
            receipt = transact(chain, owner, call)
        rows.append({"operation": label, "gas_used": int(receipt["gasUsed"])})

    run("OZ 4.9 Escrow.deposit (payee holds no deposit)", escrow.functions.deposit(payee), 10**18)
    run("OZ 4.9 Escrow.deposit (adds to a deposit)", escrow.functions.deposit(payee), 10**18)
    run("OZ 4.9 Escrow.withdraw", escrow.functions.withdraw(payee))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_escrow.json")
    args = parser.parse_args()

    code_size = (len(escrow_artifacts()["SupplyChainEscrow"].deployed_bytecode) - 2) // 2
    extra = [] if code_size <= EIP170_LIMIT else ["--disable-code-size-limit"]
    with Devnet(port=free_port(), extra_args=extra) as devnet:
        chain = Chain(devnet.rpc_url, timeout=30)
        accounts = [Account.from_key(acct.private_key) for acct in devnet.accounts]
        started = time.monotonic()
        bench = Bench(chain, accounts)
        bench.run()
        try:
            baseline = oz_baseline(chain, accounts[0], accounts[9].address)
        except ToolchainError as exc:  # e.g. node_modules linked from outside the checkout
            print(f"baseline skipped: {exc}", file=sys.stderr)
            baseline = []
        client_version = str(chain.w3.client_version)
        elapsed = time.monotonic() - started

    report = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "client": client_version,
        "python": platform.python_version(),
        "method": "receipt gasUsed of each transaction sent through EscrowClient on Anvil; "
        "steady state (vault and supplier already hold the token)",
        "escrow_deployed_bytes": code_size,
        "eip170_limit_bytes": EIP170_LIMIT,
        "eip170_ok": code_size <= EIP170_LIMIT,
        "goals": GOALS,
        "before_issue_13": "gas of the same operation on the vault before issue 13",
        "escrow": [{k: v for k, v in row.items() if k != "tx_hash"} for row in bench.rows],
        "baseline_oz_4_9_escrow": baseline,
        "seconds": round(elapsed, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    width = max(len(r["operation"]) for r in [*bench.rows, *baseline]) + 2
    print(f"\nSupplyChainEscrow whole-transaction gas ({client_version})")
    print(f"{'operation':<{width}}{'gas used':>10}{'before':>10}{'goal':>10}  result")
    for row in bench.rows:
        goal = f"{row['goal']:,}" if row["goal"] else "-"
        before = f"{row['before_issue_13']:,}" if row["before_issue_13"] else "-"
        verdict = "" if row["pass"] is None else ("PASS" if row["pass"] else "FAIL")
        print(f"{row['operation']:<{width}}{row['gas_used']:>10,}{before:>10}{goal:>10}  {verdict}")
    print("\nbaseline: OpenZeppelin 4.9 Escrow (ether, one payee mapping)")
    for row in baseline:
        print(f"{row['operation']:<{width}}{row['gas_used']:>10,}")
    if code_size > EIP170_LIMIT:
        print(
            f"\nWARNING: SupplyChainEscrow is {code_size:,} bytes deployed, over EIP-170's "
            f"{EIP170_LIMIT:,}; measured on an Anvil with the limit disabled."
        )
    failed = [r["operation"] for r in bench.rows if r["pass"] is False]
    print(f"\nreport: {args.out}" + (f"\ngoals missed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
