"""Tests of the pure RFC 9162 tree: published vectors, reference builders, range helpers."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainaudit.core import merkle
from chainaudit.core.errors import VerificationError

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "rfc6962"
needs_vectors = pytest.mark.skipif(
    not VECTORS.is_dir(), reason="shared/vectors/rfc6962 is not beside the project"
)


def _vector_files(kind: str) -> list[Path]:
    return sorted((VECTORS / kind).rglob("*.json")) if VECTORS.is_dir() else []


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _proof(raw: list[str] | None) -> list[bytes]:
    return [_b64(item) for item in raw or []]


def _id(path: Path) -> str:
    return str(path.relative_to(VECTORS))


@needs_vectors
def test_vector_folders_are_populated() -> None:
    assert len(_vector_files("inclusion")) > 50
    assert len(_vector_files("consistency")) > 50


@needs_vectors
@pytest.mark.parametrize("path", _vector_files("inclusion"), ids=_id)
def test_inclusion_vector(path: Path) -> None:
    case: dict[str, Any] = json.loads(path.read_text())
    args = (
        _b64(case["leafHash"]),
        case["leafIdx"],
        case["treeSize"],
        _proof(case["proof"]),
        _b64(case["root"]),
    )
    if case["wantErr"]:
        with pytest.raises(VerificationError):
            merkle.verify_inclusion(*args)
    else:
        merkle.verify_inclusion(*args)


@needs_vectors
@pytest.mark.parametrize("path", _vector_files("consistency"), ids=_id)
def test_consistency_vector(path: Path) -> None:
    case: dict[str, Any] = json.loads(path.read_text())
    args = (
        case["size1"],
        case["size2"],
        _proof(case["proof"]),
        _b64(case["root1"]),
        _b64(case["root2"]),
    )
    if case["wantErr"]:
        with pytest.raises(VerificationError):
            merkle.verify_consistency(*args)
    else:
        merkle.verify_consistency(*args)


def _leaves(n: int) -> list[bytes]:
    return [merkle.hash_leaf(i.to_bytes(8, "big")) for i in range(n)]


def test_known_roots() -> None:
    """Roots of the RFC 6962 reference data (the eight leaves used by transparency-dev)."""
    data = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ]
    leaves = [merkle.hash_leaf(d) for d in data]
    assert merkle.root_hash([]).hex() == hashlib.sha256(b"").hexdigest()
    assert merkle.root_hash(leaves[:1]).hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert merkle.root_hash(leaves).hex() == (
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    )


def test_hash_prefixes_give_domain_separation() -> None:
    left, right = _leaves(2)
    assert merkle.hash_children(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    # An interior node is never a valid leaf of the same bytes: the second-preimage attack on
    # unprefixed trees (such as merkletools') does not apply.
    assert merkle.hash_leaf(left + right) != merkle.hash_children(left, right)


def test_root_matches_recursive_definition() -> None:
    def mth(leaves: list[bytes]) -> bytes:
        if len(leaves) == 1:
            return leaves[0]
        k = merkle.split_point(len(leaves))
        return merkle.hash_children(mth(leaves[:k]), mth(leaves[k:]))

    for n in range(1, 70):
        assert merkle.root_hash(_leaves(n)) == mth(_leaves(n)), n


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=300), st.data())
def test_reference_inclusion_proofs_verify(n: int, data: st.DataObject) -> None:
    leaves = _leaves(n)
    root = merkle.root_hash(leaves)
    index = data.draw(st.integers(min_value=0, max_value=n - 1))
    proof = merkle.inclusion_proof(leaves, index)
    merkle.verify_inclusion(leaves[index], index, n, proof, root)
    other = (index + 1) % n
    if other != index:
        with pytest.raises(VerificationError):
            merkle.verify_inclusion(leaves[other], index, n, proof, root)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=300), st.data())
def test_reference_consistency_proofs_verify(n: int, data: st.DataObject) -> None:
    leaves = _leaves(n)
    m = data.draw(st.integers(min_value=1, max_value=n))
    proof = merkle.consistency_proof(leaves, m)
    root1, root2 = merkle.root_hash(leaves[:m]), merkle.root_hash(leaves)
    merkle.verify_consistency(m, n, proof, root1, root2)
    if m < n:
        with pytest.raises(VerificationError):
            merkle.verify_consistency(m, n, proof, root2, root2)
        with pytest.raises(VerificationError):
            merkle.verify_consistency(m, n, [*proof[::-1], root1], root1, root2)


def _node_table(leaves: list[bytes]) -> dict[tuple[int, int], bytes]:
    """Every perfect aligned subtree hash, keyed by (level, index)."""
    table = {(0, i): leaf for i, leaf in enumerate(leaves)}
    level, width = 0, len(leaves)
    while width > 1:
        for i in range(width // 2):
            table[(level + 1, i)] = merkle.hash_children(
                table[(level, 2 * i)], table[(level, 2 * i + 1)]
            )
        level, width = level + 1, width // 2
    return table


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 31, 32, 33, 100, 257])
def test_range_helpers_rebuild_reference_proofs(n: int) -> None:
    leaves = _leaves(n)
    table = _node_table(leaves)

    def node(level: int, index: int) -> bytes:
        return table[(level, index)]

    for index in range(n):
        proof = [merkle.range_hash(s, e, node) for s, e in merkle.inclusion_ranges(index, n)]
        assert proof == merkle.inclusion_proof(leaves, index)
    for m in range(0, n + 1):
        proof = [merkle.range_hash(s, e, node) for s, e in merkle.consistency_ranges(m, n)]
        assert proof == merkle.consistency_proof(leaves, m)
    assert merkle.range_hash(0, n, node) == merkle.root_hash(leaves)


@pytest.mark.parametrize(
    "args",
    [
        ("not bytes", 0, 1, [], b"\x00" * 32),
        (b"\x00" * 32, -1, 1, [], b"\x00" * 32),
        (b"\x00" * 32, True, 2, [b"\x00" * 32], b"\x00" * 32),
        (b"\x00" * 32, 0, 2, "proof", b"\x00" * 32),
        (b"\x00" * 32, 0, 2, [b"short"], b"\x00" * 32),
        (b"\x00" * 32, 0, 2, [None], b"\x00" * 32),
        (b"\x00" * 32, 0, 1, [], None),
        (b"\x00" * 32, 5, 3, [], b"\x00" * 32),
    ],
)
def test_malformed_inclusion_input_raises_verification_error_only(args: tuple[Any, ...]) -> None:
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(*args)


@pytest.mark.parametrize(
    "args",
    [
        ("1", 2, [], b"\x00" * 32, b"\x00" * 32),
        (1, 2, [b"\x00" * 31], b"\x00" * 32, b"\x00" * 32),
        (1, 2, None, b"\x00" * 32, b"\x00" * 32),
        (3, 2, [], b"\x00" * 32, b"\x00" * 32),
        (1, 2, [b"\x00" * 32], 7, b"\x00" * 32),
    ],
)
def test_malformed_consistency_input_raises_verification_error_only(
    args: tuple[Any, ...],
) -> None:
    with pytest.raises(VerificationError):
        merkle.verify_consistency(*args)


def test_builders_refuse_out_of_range_positions() -> None:
    with pytest.raises(ValueError, match="outside"):
        merkle.inclusion_proof(_leaves(3), 3)
    with pytest.raises(ValueError, match="outside"):
        merkle.consistency_proof(_leaves(3), 4)
    with pytest.raises(ValueError, match="outside"):
        merkle.inclusion_ranges(0, 0)
