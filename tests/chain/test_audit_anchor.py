"""AuditAnchor on a real Anvil: deployed with web3, fed proofs built by chainaudit.core.merkle.

Also runs the shared RFC 6962 test vectors (transparency-dev) through the contract: every vector
that fits the ABI (32-byte hashes, non-empty trees) must verify on chain exactly when it is
expected to.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_abi import encode
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError

from chainaudit.chain.devnet import Devnet
from chainaudit.chain.toolchain import compile_contracts
from chainaudit.core.merkle import consistency_proof, hash_leaf, inclusion_proof, root_hash

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "rfc6962"


def selector(signature: str) -> bytes:
    return Web3.keccak(text=signature)[:4]


def custom_error(signature: str, types: list[str], values: list[Any]) -> str:
    return "0x" + (selector(signature) + encode(types, values)).hex()


INCONSISTENT = "AuditAnchorInconsistentCheckpoint(uint64,bytes32,uint64,bytes32,uint256)"
NOT_INCREASING = "AuditAnchorSizeNotIncreasing(uint64,uint64)"
UNAUTHORIZED = "AccessControlUnauthorizedAccount(address,bytes32)"
UNKNOWN = "AuditAnchorUnknownCheckpoint(uint256,uint256)"


def expect_revert(call: Callable[[], object], data: str) -> None:
    with pytest.raises(ContractCustomError) as info:
        call()
    assert info.value.data == data


@pytest.fixture(scope="module")
def anchor_artifact() -> Any:
    return compile_contracts()["AuditAnchor"]


@pytest.fixture
def snapshot(w3: Web3) -> Iterator[None]:
    """Run the test on a snapshot of the chain, reverted afterwards, from an empty pool (the
    session's chain is shared: a transaction another module left behind a nonce gap would
    stall this one's senders)."""
    w3.provider.make_request("anvil_dropAllTransactions", [])  # type: ignore[arg-type]
    snap = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    yield
    assert w3.provider.make_request("evm_revert", [snap])["result"] is True  # type: ignore[arg-type]
    assert_pool_empty(w3)


def assert_pool_empty(w3: Web3) -> None:
    """Nothing may wait in Anvil's pool after a revert: it would stall every later sender."""
    status = w3.provider.make_request("txpool_status", [])["result"]  # type: ignore[arg-type]
    assert status == {"pending": "0x0", "queued": "0x0"}, status


@pytest.fixture
def anchor(w3: Web3, anvil: Devnet, anchor_artifact: Any, snapshot: None) -> Contract:
    admin, anchorer = anvil.accounts[0].address, anvil.accounts[1].address
    factory = w3.eth.contract(abi=anchor_artifact.abi, bytecode=anchor_artifact.bytecode)
    tx = factory.constructor(0, admin, anchorer).transact({"from": admin})
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    assert receipt["status"] == 1
    return w3.eth.contract(address=receipt["contractAddress"], abi=anchor_artifact.abi)


def leaves(n: int, tag: bytes = b"record") -> list[bytes]:
    return [hash_leaf(tag + i.to_bytes(8, "big")) for i in range(n)]


def do_anchor(
    w3: Web3, contract: Contract, sender: str, size: int, root: bytes, proof: list[bytes]
) -> dict[str, Any]:
    tx = contract.functions.anchor(size, root, proof).transact({"from": sender})
    receipt = dict(w3.eth.wait_for_transaction_receipt(tx))
    assert receipt["status"] == 1
    return receipt


def test_anchors_a_history_and_reads_it_back(w3: Web3, anvil: Devnet, anchor: Contract) -> None:
    anchorer = anvil.accounts[1].address
    data = leaves(300)
    sizes = [1, 2, 3, 8, 9, 100, 128, 299, 300]
    previous = 0
    for seq, size in enumerate(sizes):
        proof = consistency_proof(data[:size], previous) if previous else []
        receipt = do_anchor(w3, anchor, anchorer, size, root_hash(data[:size]), proof)
        events = anchor.events.CheckpointAnchored().process_receipt(receipt)
        assert [(e.args.seq, e.args.treeSize, bytes(e.args.root)) for e in events] == [
            (seq, size, root_hash(data[:size]))
        ]
        block = w3.eth.get_block(receipt["blockNumber"])
        assert anchor.functions.checkpoint(seq).call() == [
            size,
            root_hash(data[:size]),
            receipt["blockNumber"],
            block["timestamp"],
        ]
        previous = size
    assert anchor.functions.checkpointCount().call() == len(sizes)
    latest = anchor.functions.latestCheckpoint().call()
    assert latest[:3] == [len(sizes) - 1, 300, root_hash(data)]


def test_verify_inclusion_true_for_valid_false_for_tampered(
    w3: Web3, anvil: Devnet, anchor: Contract
) -> None:
    anchorer = anvil.accounts[1].address
    data = leaves(37)
    do_anchor(w3, anchor, anchorer, 20, root_hash(data[:20]), [])
    do_anchor(w3, anchor, anchorer, 37, root_hash(data), consistency_proof(data, 20))
    verify = anchor.functions.verifyInclusion
    for index in range(37):
        proof = inclusion_proof(data, index)
        assert verify(1, index, data[index], proof).call() is True
        assert verify(1, index, hash_leaf(b"forged"), proof).call() is False
        assert verify(1, (index + 1) % 37, data[index], proof).call() is False
        assert verify(1, index, data[index], proof[:-1]).call() is False
        assert verify(1, index, data[index], [*proof, data[0]]).call() is False
        flipped = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
        assert verify(1, index, data[index], flipped).call() is False
        if index < 20:
            assert verify(0, index, data[index], inclusion_proof(data[:20], index)).call() is True
        else:
            assert verify(0, index, data[index], proof).call() is False
    expect_revert(
        lambda: verify(2, 0, data[0], []).call(), custom_error(UNKNOWN, ["uint256"] * 2, [2, 2])
    )


def test_refuses_rewritten_history_and_bad_proofs(
    w3: Web3, anvil: Devnet, anchor: Contract
) -> None:
    anchorer = anvil.accounts[1].address
    data = leaves(50)
    root1 = root_hash(data[:21])
    do_anchor(w3, anchor, anchorer, 21, root1, [])

    rewritten = list(data)
    rewritten[5] = hash_leaf(b"a different record at an old position")
    forged_root = root_hash(rewritten)
    forged_proof = consistency_proof(rewritten, 21)
    expect_revert(
        lambda: anchor.functions.anchor(50, forged_root, forged_proof).transact({"from": anchorer}),
        custom_error(
            INCONSISTENT,
            ["uint64", "bytes32", "uint64", "bytes32", "uint256"],
            [21, root1, 50, forged_root, len(forged_proof)],
        ),
    )
    honest = consistency_proof(data, 21)
    for bad in ([], honest[:-1], [*honest, honest[0]], honest[::-1]):
        expect_revert(
            lambda bad=bad: anchor.functions.anchor(50, root_hash(data), bad).transact(
                {"from": anchorer}
            ),
            custom_error(
                INCONSISTENT,
                ["uint64", "bytes32", "uint64", "bytes32", "uint256"],
                [21, root1, 50, root_hash(data), len(bad)],
            ),
        )
    expect_revert(
        lambda: anchor.functions.anchor(21, root1, []).transact({"from": anchorer}),
        custom_error(NOT_INCREASING, ["uint64", "uint64"], [21, 21]),
    )
    do_anchor(w3, anchor, anchorer, 50, root_hash(data), honest)
    assert anchor.functions.checkpointCount().call() == 2


def test_only_anchorers_anchor(w3: Web3, anvil: Devnet, anchor: Contract) -> None:
    role = anchor.functions.ANCHORER_ROLE().call()
    stranger = anvil.accounts[2]
    expect_revert(
        lambda: anchor.functions.anchor(1, hash_leaf(b"x"), []).transact(
            {"from": stranger.address}
        ),
        custom_error(UNAUTHORIZED, ["address", "bytes32"], [stranger.address, role]),
    )
    # The same refusal for a transaction signed locally with the derived key.
    tx = anchor.functions.anchor(1, hash_leaf(b"x"), []).build_transaction(
        {
            "from": stranger.address,
            "gas": 200_000,
            "nonce": w3.eth.get_transaction_count(stranger.address),
        }
    )
    signed = w3.eth.account.sign_transaction(tx, stranger.private_key)
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(signed.raw_transaction)
    )
    assert receipt["status"] == 0
    assert anchor.functions.checkpointCount().call() == 0


# ----------------------------------------------------------------- shared RFC 6962 vectors


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value) if value else b""


def _vector_files(kind: str) -> list[Path]:
    return sorted((VECTORS / kind).rglob("*.json")) if VECTORS.is_dir() else []


def _fits_abi(*hashes: bytes) -> bool:
    return all(len(h) == 32 for h in hashes)


@pytest.mark.skipif(not VECTORS.is_dir(), reason="shared/vectors/rfc6962 is not beside the project")
def test_shared_vectors(w3: Web3, anvil: Devnet, anchor: Contract) -> None:
    """Every representable inclusion and consistency vector behaves as the vector says."""
    anchorer = anvil.accounts[1].address
    checked = {"inclusion": 0, "consistency": 0}
    mismatches: list[str] = []

    def on_fresh_chain(check: Callable[[], bool]) -> bool:
        snap = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
        try:
            return check()
        finally:
            reverted = w3.provider.make_request("evm_revert", [snap])  # type: ignore[arg-type]
            assert reverted["result"] is True
            assert_pool_empty(w3)

    for path in _vector_files("inclusion"):
        v = json.loads(path.read_text())
        root, leaf = _b64(v["root"]), _b64(v["leafHash"])
        proof = [_b64(p) for p in v["proof"] or []]
        if v["treeSize"] < 1 or v["treeSize"] >= 2**48 or not _fits_abi(root, leaf, *proof):
            continue

        def included(
            v: dict[str, Any] = v,
            root: bytes = root,
            leaf: bytes = leaf,
            proof: list[bytes] = proof,
        ) -> bool:
            do_anchor(w3, anchor, anchorer, v["treeSize"], root, [])
            return bool(anchor.functions.verifyInclusion(0, v["leafIdx"], leaf, proof).call())

        if on_fresh_chain(included) != (not v["wantErr"]):
            mismatches.append(str(path.relative_to(VECTORS)))
        checked["inclusion"] += 1

    for path in _vector_files("consistency"):
        v = json.loads(path.read_text())
        root1, root2 = _b64(v["root1"]), _b64(v["root2"])
        proof = [_b64(p) for p in v["proof"] or []]
        if (
            not 1 <= v["size1"] < 2**48
            or v["size2"] >= 2**48
            or not _fits_abi(root1, root2, *proof)
        ):
            continue

        def accepted(
            v: dict[str, Any] = v,
            root1: bytes = root1,
            root2: bytes = root2,
            proof: list[bytes] = proof,
        ) -> bool:
            do_anchor(w3, anchor, anchorer, v["size1"], root1, [])
            try:
                tx = anchor.functions.anchor(v["size2"], root2, proof).transact({"from": anchorer})
            except ContractCustomError:
                return False
            # Wait for it: a revert that overtakes the mining of a sent transaction leaves it in
            # the pool with a nonce gap, and every later transaction of the anchorer then waits
            # behind it for ever.
            return bool(w3.eth.wait_for_transaction_receipt(tx)["status"] == 1)

        # Policy: the log must grow between anchors, so equal sizes are refused too.
        expected = not v["wantErr"] and v["size1"] < v["size2"]
        if on_fresh_chain(accepted) != expected:
            mismatches.append(str(path.relative_to(VECTORS)))
        checked["consistency"] += 1

    assert mismatches == []
    print(f"shared vectors checked on chain: {checked}")
    assert checked["inclusion"] >= 50 and checked["consistency"] >= 50, checked


def test_tree_is_sha256_rfc9162_not_keccak_sorted_pairs(
    w3: Web3, anvil: Devnet, anchor: Contract
) -> None:
    """A 3-leaf tree hashed by hand with hashlib verifies; a keccak sorted-pair node does not."""
    a, b, c = (hashlib.sha256(b"\x00" + d).digest() for d in (b"a", b"b", b"c"))
    ab = hashlib.sha256(b"\x01" + a + b).digest()
    root = hashlib.sha256(b"\x01" + ab + c).digest()
    do_anchor(w3, anchor, anvil.accounts[1].address, 3, root, [])
    verify = anchor.functions.verifyInclusion
    assert verify(0, 0, a, [b, c]).call() is True
    assert verify(0, 1, b, [a, c]).call() is True
    assert verify(0, 2, c, [ab]).call() is True
    assert verify(0, 0, a, [c, b]).call() is False
    assert verify(0, 2, c, [Web3.keccak(b"".join(sorted([a, b])))]).call() is False
