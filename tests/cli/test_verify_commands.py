"""proof -o and verify as an auditor runs them: real subprocesses, real files, a real Anvil."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from chainaudit.app.deploy import deploy_contracts
from chainaudit.chain.chain import Chain
from chainaudit.chain.devnet import Devnet, free_port
from chainaudit.core.records import prepare
from chainaudit.log.store import Log
from chainaudit.service.anchoring import Anchorer, AnchorPolicy

CHECKS = ["record", "inclusion", "chain_id", "contract", "checkpoint", "block", "transaction"]


@dataclass
class Env:
    data: Path
    rpc: str
    contract: str
    other_contract: str
    old: Path  # the bundle of inv-0000003 at size 20 (checkpoint 0)
    env: dict[str, str]
    key: str  # the deployer's and anchorer's private key

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "chainaudit", "--data-dir", str(self.data), *args]

    @property
    def pinned(self) -> list[str]:
        """``--rpc`` with the chain and the contract an auditor trusts."""
        return ["--rpc", self.rpc, "--chain-id", "31337", "--contract", self.contract]


def run(
    env: Env, *args: str, stdin: str | None = None, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        env.command(*args),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**env.env, **extra},
    )


def run_many(env: Env, *commands: Sequence[str]) -> list[subprocess.CompletedProcess[str]]:
    """Run several CLI invocations at once (independent read-only commands)."""
    processes = [
        subprocess.Popen(
            env.command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env.env,
        )
        for args in commands
    ]
    results = []
    for args, process in zip(commands, processes, strict=True):
        out, err = process.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(list(args), process.returncode, out, err))
    return results


def append(log: Log, start: int, count: int) -> None:
    log.append(
        [
            prepare(
                {
                    "id": f"inv-{i:07d}",
                    "kind": "transaction",
                    "timestamp": "2026-11-21T09:30:00Z",
                    "actor": "supplier:globex",
                    "payload": {"amount": i * 100, "currency": "EUR", "invoice": f"INV-{i}"},
                }
            )
            for i in range(start, start + count)
        ]
    )


@pytest.fixture(scope="module")
def env(anvil: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A log of 40 records: checkpoints at 20 (seq 0) and 37 (seq 1), 3 records pending."""
    root = tmp_path_factory.mktemp("verify-cli")
    chain = Chain(anvil.rpc_url)
    account = Account.from_key(anvil.accounts[0].private_key)
    contract = deploy_contracts(chain, account)["AuditAnchor"].address
    other = deploy_contracts(chain, account)["AuditAnchor"].address
    setup = Env(
        data=root / "data",
        rpc=anvil.rpc_url,
        contract=contract,
        other_contract=other,
        old=root / "old.json",
        env={
            **os.environ,
            "CHAINAUDIT_RPC_URL": anvil.rpc_url,
            "CHAINAUDIT_ANCHOR_CONTRACT": contract,
            "CHAINAUDIT_DEPLOYMENTS_DIR": str(root / "deployments"),
            "PYTHONIOENCODING": "utf-8",
        },
        key=anvil.accounts[0].private_key,
    )
    with Log.open(setup.data) as log:
        anchorer = Anchorer(log, chain, account, contract, policy=AnchorPolicy(finality=10_000))
        append(log, 0, 20)
        anchorer.anchor_now(timeout=60)
        old = run(setup, "proof", "inv-0000003", "-o", str(setup.old))
        assert old.returncode == 0, old.stderr
        append(log, 20, 17)
        anchorer.anchor_now(timeout=60)
        append(log, 37, 3)
        anchorer.close()
    yield setup


def test_proof_bundle_verifies_with_and_without_a_chain(env: Env, tmp_path: Path) -> None:
    bundle = tmp_path / "inv-5.json"
    made = run(env, "proof", "inv-0000005", "-o", str(bundle))
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == (
        f"wrote the proof bundle of record inv-0000005 (leaf 5, tree size 37, checkpoint 1 on "
        f"chain 31337, confirmed) to {bundle}"
    )
    document = json.loads(bundle.read_text())
    assert document["record"]["id"] == "inv-0000005" and document["tree_size"] == 37

    online, offline, as_json = run_many(
        env,
        ["verify", str(bundle), *env.pinned],
        ["verify", str(bundle)],
        ["verify", str(bundle), *env.pinned, "--json"],
    )
    assert online.returncode == 0, online.stdout + online.stderr
    lines = online.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:-1]] == [["✓", name] for name in CHECKS]
    assert lines[-1] == (
        f"VALID: record inv-0000005 is leaf 5 of checkpoint 1 (tree size 37) of contract "
        f"{env.contract} on chain 31337"
    )
    assert online.stderr == ""

    assert offline.returncode == 0
    assert [line.split()[0] for line in offline.stdout.splitlines()[:-1]] == ["✓"] * 2 + ["-"] * 5
    assert "chain checks were skipped (no --rpc)" in offline.stdout
    assert "NOT checked against the chain" in offline.stdout

    assert as_json.returncode == 0
    verdict = json.loads(as_json.stdout)
    assert verdict["valid"] is True and verdict["chain_checked"] is True
    assert [c["name"] for c in verdict["checks"]] == CHECKS
    assert {c["status"] for c in verdict["checks"]} == {"pass"}
    assert verdict["warnings"] == []


def test_plain_proof_without_output_has_the_bundle_names(env: Env) -> None:
    plain = run(env, "proof", "inv-0000038")  # not anchored: the plain proof needs no anchor
    assert plain.returncode == 0, plain.stderr
    proof = json.loads(plain.stdout)
    assert (proof["leaf_index"], proof["tree_size"]) == (38, 40)
    assert set(proof) == {
        "record_id",
        "leaf_index",
        "leaf_hash",
        "tree_size",
        "inclusion_proof",
        "checkpoint",
    }
    assert set(proof["checkpoint"]) == {"tree_size", "root"}  # a bundle's names and 0x-hex


def test_unanchored_record_is_pending(env: Env, tmp_path: Path) -> None:
    target = tmp_path / "pending.json"
    result = run(env, "proof", "inv-0000038", "-o", str(target))
    assert result.returncode == 2
    assert result.stderr == (
        "chainaudit: proof pending: record inv-0000038 (leaf 38) is not anchored yet; anchor "
        "with `chainaudit anchor` or fetch again later\n"
    )
    assert not target.exists() and result.stdout == ""


def _tamper(document: dict[str, Any], what: str) -> None:
    if what == "record":
        document["record"]["payload"]["amount"] = 1
    elif what == "inclusion":
        first = document["inclusion_proof"][0]
        document["inclusion_proof"][0] = first[:-1] + ("0" if first[-1] != "0" else "1")
    elif what == "block":
        document["anchor"]["block_hash"] = "0x" + "00" * 32
    elif what == "checkpoint":
        document["anchor"]["checkpoint_seq"] = 0


def test_tampered_bundles_exit_1_naming_the_failed_check(env: Env, tmp_path: Path) -> None:
    made = run(env, "proof", "inv-0000005", "-o", str(tmp_path / "good.json"))
    assert made.returncode == 0, made.stderr
    good = json.loads((tmp_path / "good.json").read_text())
    cases = {"record": "record", "inclusion": "inclusion", "block": "block"}
    cases["checkpoint"] = "checkpoint"
    paths = {}
    for what in cases:
        document = json.loads(json.dumps(good))
        _tamper(document, what)
        paths[what] = tmp_path / f"{what}.json"
        paths[what].write_text(json.dumps(document))
    results = run_many(env, *(["verify", str(paths[w]), *env.pinned] for w in cases))
    for (what, first), result in zip(cases.items(), results, strict=True):
        assert result.returncode == 1, (what, result.stdout, result.stderr)
        assert f"✗ {first}" in result.stdout
        assert "INVALID: failed check(s): " + first in result.stdout
        assert result.stderr.startswith(f"chainaudit: verification failed: {first}: ")
        assert len(result.stderr.splitlines()) == 1


def test_record_can_be_withheld_and_piped(env: Env) -> None:
    made = run(env, "proof", "inv-0000012", "--no-record", "-o", "-")
    assert made.returncode == 0, made.stderr
    document = json.loads(made.stdout)
    assert "record" not in document and document["leaf_index"] == 12
    checked = run(env, "verify", "-", *env.pinned, stdin=made.stdout)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "- record" in checked.stdout and "withheld or erased" in checked.stdout
    assert checked.stdout.splitlines()[-1].startswith("VALID: the leaf is leaf 12")


def test_consistency_between_an_old_and_a_new_bundle(env: Env, tmp_path: Path) -> None:
    new = tmp_path / "new.json"
    made = run(env, "proof", "inv-0000025", "--since", "20", "-o", str(new))
    assert made.returncode == 0, made.stderr
    document = json.loads(new.read_text())
    assert document["consistency"]["from_tree_size"] == 20
    forked = json.loads(new.read_text())
    proof = forked["consistency"]["proof"]
    proof[-1] = proof[-1][:-1] + ("0" if proof[-1][-1] != "0" else "1")
    (tmp_path / "forked.json").write_text(json.dumps(forked))
    ok, offline, tampered, reversed_, no_proof = run_many(
        env,
        ["verify", "--consistency", str(env.old), str(new), *env.pinned],
        ["verify", "--consistency", str(env.old), str(new)],
        ["verify", "--consistency", str(env.old), str(tmp_path / "forked.json"), *env.pinned],
        ["verify", "--consistency", str(new), str(env.old)],
        ["verify", "--consistency", str(env.old), str(env.old)],
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines()[-1] == (
        "VALID: checkpoint 1 (size 37) extends checkpoint 0 (size 20)"
    )
    assert "✓ new.transaction" in ok.stdout and "✓ sequence" in ok.stdout
    assert offline.returncode == 0 and "chain checks were skipped" in offline.stdout
    assert tampered.returncode == 1
    assert "INVALID: failed check(s): consistency" in tampered.stdout
    for unusable in (reversed_, no_proof):
        assert unusable.returncode == 2
    assert "--since 20 -o new.json" in no_proof.stderr
    assert "the bundles are in the wrong order" in reversed_.stderr  # issue 14


def test_pins_and_confirmations(env: Env) -> None:
    old = str(env.old)
    other, chain_id, deep, matching = run_many(
        env,
        ["verify", old, "--rpc", env.rpc, "--chain-id", "31337", "--contract", env.other_contract],
        ["verify", old, "--rpc", env.rpc, "--chain-id", "1", "--contract", env.contract],
        ["verify", old, *env.pinned, "--confirmations", "100000"],
        ["verify", old, "--rpc", env.rpc, "--chain-id", "31337", "--contract", env.contract],
    )
    assert other.returncode == 1 and "✗ contract" in other.stdout
    assert chain_id.returncode == 1 and "you expect chain 1" in chain_id.stdout
    assert deep.returncode == 1 and "100000 are required" in deep.stdout
    assert matching.returncode == 0, matching.stdout


def test_unusable_input_exits_2_with_one_line(env: Env, tmp_path: Path) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text("{")
    shape = tmp_path / "shape.json"
    shape.write_text(json.dumps({"version": 1}))
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    results = run_many(
        env,
        ["verify", str(tmp_path / "missing.json")],
        ["verify", str(junk)],
        ["verify", str(shape)],
        ["verify", str(env.old), *env.pinned[2:], "--rpc", f"http://127.0.0.1:{free_port()}"],
        ["verify", str(env.old), "--consistency", str(env.old), str(env.old)],
        ["proof", "inv-0000003", "--no-record"],
        ["proof", "inv-0000003", "--since", "99", "-o", "-"],
        ["proof", "inv-0000003", "-o", str(tmp_path / "no-dir" / "b.json")],
        ["verify", str(env.old), "--confirmations", "0"],
        ["verify", str(deep)],
        ["verify", str(env.old), "--rpc", env.rpc],
        ["verify", str(env.old), "--rpc", env.rpc, "--chain-id", "31337"],
    )
    expected = [
        "cannot read",
        "junk.json: not valid JSON",
        "missing field(s)",
        "chain endpoint unreachable",
        "either a bundle or --consistency",
        "add -o FILE",
        "between 1 and the log's size 40",
        "cannot write",
        "argument --confirmations: 0 must be at least 1",
        "deep.json nests arrays and objects 200000 levels deep; at most 64 are allowed",
        "verify --rpc needs the anchor you trust: pass --contract ADDRESS and --chain-id ID",
        "verify --rpc needs the anchor you trust: pass --contract ADDRESS (from a source",
    ]
    for message, result in zip(expected, results, strict=True):
        assert result.returncode == 2, (result.args, result.stdout, result.stderr)
        assert message in result.stderr, (result.args, result.stderr)
        assert "Traceback" not in result.stderr
        if "argument" not in message:  # argparse prints its usage line first
            assert len(result.stderr.splitlines()) == 1, result.stderr


def test_plain_ascii_terminal_gets_ascii_marks(env: Env) -> None:
    result = run(env, "verify", str(env.old), PYTHONIOENCODING="ascii")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("ok   record")
    assert result.stdout.splitlines()[2].startswith("-    chain_id")


def _forged_bundle(env: Env, tmp_path: Path) -> Path:
    """inv-0000005 with an altered amount, in a log of the attacker's own, anchored in an
    AuditAnchor the attacker deployed (``env.other_contract``): internally flawless."""
    forged_data = tmp_path / "forged-data"
    chain = Chain(env.rpc)
    account = Account.from_key(env.key)
    with Log.open(forged_data) as log:
        log.append(
            [
                prepare(
                    {
                        "id": f"inv-{i:07d}",
                        "kind": "transaction",
                        "timestamp": "2026-11-21T09:30:00Z",
                        "actor": "supplier:globex",
                        "payload": {"amount": 999_999_999, "currency": "EUR"},
                    }
                )
                for i in range(8)
            ]
        )
        anchorer = Anchorer(
            log, chain, account, env.other_contract, policy=AnchorPolicy(finality=10_000)
        )
        anchorer.anchor_now(timeout=60)
        anchorer.close()
    path = tmp_path / "forged.json"
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "chainaudit",
            "--data-dir",
            str(forged_data),
            "proof",
            "inv-0000005",
            "-o",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env.env,
    )
    assert made.returncode == 0, made.stderr
    return path


def test_a_bundle_from_an_attackers_contract_is_not_valid(env: Env, tmp_path: Path) -> None:
    forged = str(_forged_bundle(env, tmp_path))
    unpinned, chain_only, pinned, trusting = run_many(
        env,
        ["verify", forged, "--rpc", env.rpc],
        ["verify", forged, "--rpc", env.rpc, "--chain-id", "31337"],
        ["verify", forged, *env.pinned],
        ["verify", forged, "--rpc", env.rpc, "--trust-bundle-contract"],
    )
    for refused in (unpinned, chain_only):
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "VALID" not in refused.stdout
        assert "--contract ADDRESS" in refused.stderr
        assert "--trust-bundle-contract" in refused.stderr
    assert pinned.returncode == 1, pinned.stdout
    assert "✗ contract" in pinned.stdout and "INVALID: failed check(s): contract" in pinned.stdout
    assert f"you expect {env.contract}" in pinned.stdout
    # told to trust the bundle's contract, the verdict says what it rested on
    assert trusting.returncode == 0, trusting.stdout + trusting.stderr
    assert (
        f"WARNING: the AuditAnchor address was not pinned: the bundle's own contract "
        f"{env.other_contract} was trusted" in trusting.stdout
    )
    assert "WARNING: the chain id was not pinned" in trusting.stdout


def test_a_final_claim_is_checked_against_the_finality(env: Env, tmp_path: Path) -> None:
    document = json.loads(env.old.read_text())
    assert document["anchor"]["status"] == "confirmed"
    document["anchor"]["status"] = "final"
    claimed = tmp_path / "claimed.json"
    claimed.write_text(json.dumps(document))
    strict, lenient, help_ = run_many(
        env,
        ["verify", str(claimed), *env.pinned, "--finality", "100000"],
        ["verify", str(claimed), *env.pinned, "--finality", "1"],
        ["verify", "--help"],
    )
    assert strict.returncode == 1, strict.stdout
    assert "✗ block" in strict.stdout
    assert "the bundle says the anchor is final" in strict.stdout
    assert "final takes 100000" in strict.stdout
    assert lenient.returncode == 0, lenient.stdout
    assert "final as claimed (at least 1)" in lenient.stdout
    configured = run(env, "verify", str(claimed), *env.pinned, CHAINAUDIT_FINALITY="100000")
    assert configured.returncode == 1 and "final takes 100000" in configured.stdout
    assert "$CHAINAUDIT_FINALITY, else 12" in " ".join(help_.stdout.split())
