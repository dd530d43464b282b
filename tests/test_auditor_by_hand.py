"""The by-hand audit of docs/auditor.md, run as written: the real `cast` binary, sha256sum, an
independent RFC 8785 library and the shipped docs/fold.py (which docs/auditor.md prints), against
a real Anvil."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from chainaudit.app.deploy import deploy_contracts
from chainaudit.chain.chain import Chain
from chainaudit.chain.devnet import Devnet
from chainaudit.chain.toolchain import project_root, tool_path
from chainaudit.core.bundle import write_bundle
from chainaudit.core.records import prepare
from chainaudit.log.store import Log
from chainaudit.service.anchoring import AnchorBook, Anchorer, AnchorPolicy
from chainaudit.service.bundling import build_bundle

JQ_BLOCK = """\
CONTRACT=$(jq -r .anchor.contract bundle.json)
SEQ=$(jq -r .anchor.checkpoint_seq bundle.json)
BLOCK=$(jq -r .anchor.block_number bundle.json)
TX=$(jq -r .anchor.tx_hash bundle.json)
LEAF=$(jq -r .leaf_hash bundle.json)
INDEX=$(jq -r .leaf_index bundle.json)
SIZE=$(jq -r .checkpoint.tree_size bundle.json)
ROOT=$(jq -r .checkpoint.root bundle.json)
PROOF=$(jq -r '.inclusion_proof | join(",")' bundle.json)
"""
VARIABLES = ["CONTRACT", "SEQ", "BLOCK", "TX", "LEAF", "INDEX", "SIZE", "ROOT", "PROOF"]


@dataclass
class Audit:
    directory: Path
    bundle: dict[str, Any]
    env: dict[str, str]

    def sh(self, command: str, *, check: bool = True) -> str:
        """Run one documented shell command in the bundle's directory; return stdout."""
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check:
            assert result.returncode == 0, (command, result.stderr)
        return result.stdout


FOLD = project_root() / "docs" / "fold.py"


def test_the_guide_shows_the_shipped_fold_py() -> None:
    """docs/auditor.md prints fold.py inline for a reader without the repository: it must be
    the shipped docs/fold.py, byte for byte."""
    guide = (project_root() / "docs" / "auditor.md").read_text()
    found = re.search(r"```python\n(# fold\.py.*?)```", guide, re.S)
    assert found is not None, "docs/auditor.md lost its fold.py"
    assert found.group(1) == FOLD.read_text()


def test_fold_py_uses_only_the_standard_library() -> None:
    imports = re.findall(r"^(?:import|from) (.+)$", FOLD.read_text(), re.M)
    modules = {name.strip().split(".")[0] for line in imports for name in line.split(",")}
    assert modules <= {"hashlib", "json", "sys"}, modules


@pytest.fixture(scope="module")
def audit(anvil: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audit]:
    chain = Chain(anvil.rpc_url)
    account = Account.from_key(anvil.accounts[0].private_key)
    contract = deploy_contracts(chain, account)["AuditAnchor"].address
    directory = tmp_path_factory.mktemp("by-hand")
    with Log.open(directory / "data") as log:
        anchorer = Anchorer(log, chain, account, contract, policy=AnchorPolicy(finality=10_000))
        for start, count in ((0, 13), (13, 16)):
            log.append(
                [
                    prepare(
                        {
                            "id": f"bl-{i}",
                            "kind": "document",
                            "timestamp": "2026-11-21T09:30:00+08:00",
                            "actor": "logistics:cosco",
                            "payload": {
                                "bill_of_lading": f"COSU{i:06d}",
                                "port": "Ningbo\u2013Zhoushan",
                            },
                        }
                    )
                    for i in range(start, start + count)
                ]
            )
            anchorer.anchor_now(timeout=60)
        book = AnchorBook(log)
        bundle = build_bundle(log, book, "bl-6")
        book.close()
        anchorer.close()
    write_bundle(bundle, directory / "bundle.json")
    shutil.copy(FOLD, directory / "fold.py")  # what an auditor downloads
    anchor = bundle["anchor"]
    tools = os.pathsep.join([str(tool_path("cast").parent), str(Path(sys.executable).parent)])
    env = {
        **os.environ,
        "PATH": tools + os.pathsep + os.environ.get("PATH", ""),
        "RPC": anvil.rpc_url,
        "CONTRACT": anchor["contract"],
        "SEQ": str(anchor["checkpoint_seq"]),
        "BLOCK": str(anchor["block_number"]),
        "TX": anchor["tx_hash"],
        "LEAF": bundle["leaf_hash"],
        "INDEX": str(bundle["leaf_index"]),
        "SIZE": str(bundle["checkpoint"]["tree_size"]),
        "ROOT": bundle["checkpoint"]["root"],
        "PROOF": ",".join(bundle["inclusion_proof"]),
    }
    yield Audit(directory, bundle, env)


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
def test_jq_reads_the_variables(audit: Audit) -> None:
    echo = "; ".join(f'echo "${name}"' for name in VARIABLES)
    printed = audit.sh(JQ_BLOCK + echo).splitlines()
    assert printed == [audit.env[name] for name in VARIABLES]


def test_step1_record_hashes_to_the_leaf(audit: Audit) -> None:
    audit.sh(
        "python3 -c 'import json, sys, rfc8785; sys.stdout.buffer.write(rfc8785.dumps("
        'json.load(open("bundle.json"))["record"]))\' > record.jcs'
    )
    digest = audit.sh("{ printf '\\000'; cat record.jcs; } | sha256sum").split()[0]
    assert "0x" + digest == audit.bundle["leaf_hash"]
    assert (audit.directory / "record.jcs").read_bytes().startswith(b'{"actor":"logistics:cosco"')


def test_step2_fold_and_the_contract_agree_on_the_root(audit: Audit) -> None:
    assert audit.sh("python3 fold.py bundle.json").strip() == audit.bundle["checkpoint"]["root"]
    in_place = audit.sh(f"python3 {FOLD} bundle.json").strip()  # the repository's own copy
    assert in_place == audit.bundle["checkpoint"]["root"]
    onchain = (
        'cast call $CONTRACT "verifyInclusion(uint256,uint256,bytes32,bytes32[])(bool)" '
        '$SEQ $INDEX $LEAF "[$PROOF]" --rpc-url $RPC'
    )
    assert audit.sh(onchain).strip() == "true"

    tampered = json.loads(json.dumps(audit.bundle))
    tampered["inclusion_proof"] = tampered["inclusion_proof"][:-1]
    (audit.directory / "short.json").write_text(json.dumps(tampered))
    short = subprocess.run(
        ["bash", "-c", "python3 fold.py short.json"],
        cwd=audit.directory,
        env=audit.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert short.returncode == 1 and "proof too short" in short.stderr
    tampered = json.loads(json.dumps(audit.bundle))
    tampered["leaf_index"] -= 1
    (audit.directory / "moved.json").write_text(json.dumps(tampered))
    assert audit.sh("python3 fold.py moved.json").strip() != audit.bundle["checkpoint"]["root"]
    wrong_leaf = {**audit.env, "INDEX": str(audit.bundle["leaf_index"] - 1)}
    assert Audit(audit.directory, audit.bundle, wrong_leaf).sh(onchain).strip() == "false"


def test_step3_checkpoint_is_on_chain(audit: Audit) -> None:
    anchor = audit.bundle["anchor"]
    assert audit.sh("cast chain-id --rpc-url $RPC").strip() == str(anchor["chain_id"])
    code = audit.sh("cast code $CONTRACT --rpc-url $RPC").strip()
    assert code.startswith("0x") and len(code) > 2
    lines = audit.sh(
        'cast call $CONTRACT "checkpoint(uint256)(uint64,bytes32,uint64,uint64)" $SEQ '
        "--rpc-url $RPC"
    ).splitlines()
    size, root, block, timestamp = (line.split()[0] for line in lines)
    assert (int(size), root, int(block)) == (
        audit.bundle["checkpoint"]["tree_size"],
        audit.bundle["checkpoint"]["root"],
        anchor["block_number"],
    )
    assert int(timestamp) > 0
    unknown = {**audit.env, "SEQ": "99"}
    missing = subprocess.run(
        [
            "bash",
            "-c",
            'cast call $CONTRACT "checkpoint(uint256)(uint64,bytes32,uint64,uint64)" $SEQ '
            "--rpc-url $RPC",
        ],
        env=unknown,
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode != 0 and "revert" in missing.stderr.lower()


def test_step4_block_is_canonical_and_deep_enough(audit: Audit) -> None:
    anchor = audit.bundle["anchor"]
    assert (
        audit.sh("cast block $BLOCK --field hash --rpc-url $RPC").strip() == (anchor["block_hash"])
    )
    head = int(audit.sh("cast block-number --rpc-url $RPC"))
    assert head - anchor["block_number"] + 1 >= 1


def test_step5_transaction_emitted_the_checkpoint(audit: Audit) -> None:
    anchor = audit.bundle["anchor"]
    fields = {}
    for line in audit.sh("cast receipt $TX --rpc-url $RPC").splitlines():
        key, _, value = line.strip().partition(" ")
        fields[key] = value.strip()
    assert fields["status"] == "1 (success)"
    assert int(fields["blockNumber"]) == anchor["block_number"]
    assert fields["blockHash"] == anchor["block_hash"]
    topic0 = audit.sh('cast keccak "CheckpointAnchored(uint256,uint64,bytes32)"').strip()
    seq = audit.sh("cast to-uint256 $SEQ").strip()
    size = audit.sh("cast to-uint256 $SIZE").strip()
    expected = [topic0, seq, size, audit.bundle["checkpoint"]["root"]]
    logs = json.loads(fields["logs"])
    assert [
        entry["topics"] for entry in logs if entry["address"].lower() == anchor["contract"].lower()
    ] == [expected]
