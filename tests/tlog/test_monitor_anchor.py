"""The mis-sized anchor on a real Anvil: for a 12-leaf log, the genuine 6 -> 12 consistency
proof is accepted on chain as ``anchor(14, root12)`` (the contract checks the proof's hashes,
which the same path also satisfies for 14 leaves). The monitor compares the anchor with the
tree served by the tiles and reports it, naming size 12."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from chainaudit.chain.devnet import Devnet
from chainaudit.chain.toolchain import compile_contracts
from chainaudit.cli import main
from chainaudit.core import merkle, note
from tests.tlog.helpers import ORIGIN, entries, serve, write_log


def anchor(
    w3: Web3, contract: Any, sender: str, size: int, root: bytes, proof: list[bytes]
) -> None:
    tx = contract.functions.anchor(size, root, proof).transact({"from": sender})
    assert w3.eth.wait_for_transaction_receipt(tx)["status"] == 1


def test_monitor_reports_a_mis_sized_anchor(
    w3: Web3, anvil: Devnet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    artifact = compile_contracts()["AuditAnchor"]
    admin, anchorer = anvil.accounts[0].address, anvil.accounts[1].address
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    receipt = w3.eth.wait_for_transaction_receipt(
        factory.constructor(0, admin, anchorer).transact({"from": admin})
    )
    address = receipt["contractAddress"]
    contract = w3.eth.contract(address=address, abi=artifact.abi)

    signer = note.Signer.generate(ORIGIN)
    data = entries(12)
    leaves = [merkle.hash_leaf(e) for e in data]
    write_log(tmp_path / "log", data, signer)
    root6, root12 = merkle.root_hash(leaves[:6]), merkle.root_hash(leaves)
    anchor(w3, contract, anchorer, 6, root6, [])
    state = tmp_path / "state.json"
    with serve(tmp_path / "log") as url:
        args = [
            "monitor",
            "--log-url",
            url,
            "--log-key",
            signer.verifier().encode(),
            "--rpc",
            anvil.rpc_url,
            "--chain-id",
            str(anvil.chain_id),
            "--contract",
            address,
            "--state",
            str(state),
        ]
        assert main(args) == 0  # anchor 0 is (6, root6): clean
        assert json.loads(state.read_text())["anchors"] == {f"{anvil.chain_id}/{address}": 1}
        capsys.readouterr()

        # the anchorer (a stolen key, a bug) anchors (14, root12) with the genuine 6->12 proof
        anchor(w3, contract, anchorer, 14, root12, merkle.consistency_proof(leaves, 6))
        assert contract.functions.checkpointCount().call() == 2
        assert main(args) == 1
        out = capsys.readouterr().out
        assert f"FINDING anchor anchor 1 of {address}" in out
        assert "anchors size 14" in out and "beyond the served tree of 12 leaves" in out
        assert "the tiles support size 12" in out
        # reported again on the next run: a bad anchor is never marked checked
        assert main([*args, "--json"]) == 1
        findings = json.loads(capsys.readouterr().out)["findings"]
        assert [f["kind"] for f in findings] == ["anchor"]
        # without --chain-id the monitor refuses to judge (exit 2)
        assert main([a for a in args if a not in ("--chain-id", str(anvil.chain_id))]) == 2
