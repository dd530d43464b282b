"""The part of ``AuditAnchor``'s ABI that the anchoring service and the verifier use.

Kept here, rather than compiled at run time, so that verifying a bundle needs no Solidity
compiler; ``tests/chain/test_anchor_abi.py`` checks it against the compiled contract.
"""

from __future__ import annotations

from typing import Any, Final

from eth_abi.abi import decode as abi_decode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

__all__ = ["AUDIT_ANCHOR_ABI", "AUDIT_ANCHOR_ERRORS", "decode_anchor_revert"]


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


def _error(name: str, inputs: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "type": "error",
        "name": name,
        "inputs": [{"name": n, "type": t, "internalType": t} for n, t in inputs],
    }


AUDIT_ANCHOR_ERRORS: Final[list[dict[str, Any]]] = [
    _error("AuditAnchorSizeNotIncreasing", [("previousSize", "uint64"), ("newSize", "uint64")]),
    _error("AuditAnchorSizeTooLarge", [("newSize", "uint64"), ("maxSize", "uint64")]),
    _error(
        "AuditAnchorInconsistentCheckpoint",
        [
            ("previousSize", "uint64"),
            ("previousRoot", "bytes32"),
            ("newSize", "uint64"),
            ("newRoot", "bytes32"),
            ("proofLength", "uint256"),
        ],
    ),
    _error("AuditAnchorUnexpectedProof", [("proofLength", "uint256")]),
    _error("AuditAnchorUnknownCheckpoint", [("seq", "uint256"), ("count", "uint256")]),
    _error("AccessControlUnauthorizedAccount", [("account", "address"), ("neededRole", "bytes32")]),
    _error("AccessControlBadConfirmation", []),
    _error("AccessControlEnforcedDefaultAdminDelay", [("schedule", "uint48")]),
    _error("AccessControlEnforcedDefaultAdminRules", []),
    _error("AccessControlInvalidDefaultAdmin", [("defaultAdmin", "address")]),
    _error("SafeCastOverflowedUintDowncast", [("bits", "uint8"), ("value", "uint256")]),
    _error("Error", [("message", "string")]),
    _error("Panic", [("code", "uint256")]),
]
"""Every custom error ``AuditAnchor`` can revert with (its own, OpenZeppelin's access control
and SafeCast), and Solidity's ``Error(string)`` and ``Panic(uint256)``."""


def _selector(entry: dict[str, Any]) -> bytes:
    types = ",".join(str(p["type"]) for p in entry["inputs"])
    return keccak(text=f"{entry['name']}({types})")[:4]


_BY_SELECTOR: Final = {_selector(entry): entry for entry in AUDIT_ANCHOR_ERRORS}


def decode_anchor_revert(data: bytes) -> str | None:
    """``AuditAnchorUnknownCheckpoint(seq=7, count=2)`` for revert ``data`` of an error in
    :data:`AUDIT_ANCHOR_ERRORS`; ``None`` for any other data. Hashes are ``0x``-hex."""
    entry = _BY_SELECTOR.get(data[:4]) if len(data) >= 4 else None
    if entry is None:
        return None
    types = [str(p["type"]) for p in entry["inputs"]]
    try:
        values = abi_decode(types, data[4:])
    except Exception:  # malformed arguments: the name alone
        return f"{entry['name']}(<undecodable arguments 0x{data[4:].hex()}>)"
    shown = []
    for param, value in zip(entry["inputs"], values, strict=True):
        if isinstance(value, bytes):
            text = "0x" + value.hex()
        elif param["type"] == "address":
            text = to_checksum_address(value)
        elif isinstance(value, str):
            text = repr(value)
        else:
            text = str(value)
        shown.append(f"{param['name']}={text}")
    return f"{entry['name']}({', '.join(shown)})"
