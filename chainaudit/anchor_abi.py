"""The part of ``AuditAnchor``'s ABI that the anchoring service and the verifier use.

Kept here, rather than compiled at run time, so that verifying a bundle needs no Solidity
compiler; ``tests/chain/test_anchor_abi.py`` checks it against the compiled contract.
"""

from __future__ import annotations

from typing import Any, Final


def _fn(
    name: str, inputs: list[tuple[str, str]], outputs: list[tuple[str, str]], mutability: str
) -> dict[str, Any]:
    return {
        "type": "function",
        "name": name,
        "inputs": [{"name": n, "type": t, "internalType": t} for n, t in inputs],
        "outputs": [{"name": n, "type": t, "internalType": t} for n, t in outputs],
        "stateMutability": mutability,
    }


CHECKPOINT_OUTPUTS: Final = [
    ("treeSize", "uint64"),
    ("root", "bytes32"),
    ("blockNumber", "uint64"),
    ("timestamp", "uint64"),
]

AUDIT_ANCHOR_ABI: Final[list[dict[str, Any]]] = [
    _fn(
        "anchor",
        [("newSize", "uint64"), ("newRoot", "bytes32"), ("consistencyProof", "bytes32[]")],
        [("seq", "uint256")],
        "nonpayable",
    ),
    _fn("checkpoint", [("seq", "uint256")], CHECKPOINT_OUTPUTS, "view"),
    _fn("checkpointCount", [], [("", "uint256")], "view"),
    _fn("latestCheckpoint", [], [("seq", "uint256"), *CHECKPOINT_OUTPUTS], "view"),
    _fn(
        "verifyInclusion",
        [
            ("checkpointSeq", "uint256"),
            ("leafIndex", "uint256"),
            ("leafHash", "bytes32"),
            ("proof", "bytes32[]"),
        ],
        [("", "bool")],
        "view",
    ),
    {
        "type": "event",
        "name": "CheckpointAnchored",
        "anonymous": False,
        "inputs": [
            {"name": "seq", "type": "uint256", "indexed": True, "internalType": "uint256"},
            {"name": "treeSize", "type": "uint64", "indexed": True, "internalType": "uint64"},
            {"name": "root", "type": "bytes32", "indexed": True, "internalType": "bytes32"},
        ],
    },
]
