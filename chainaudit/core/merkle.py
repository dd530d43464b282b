"""The RFC 9162 Merkle tree: hashing, proof building and proof verification.

Pure functions, no I/O. The tree is exactly RFC 9162 §2.1 (the RFC 6962 tree): SHA-256, a leaf
is ``H(0x00 || data)``, an interior node is ``H(0x01 || left || right)``, and a list of ``n > 1``
leaves splits at ``k``, the largest power of two smaller than ``n``. There is no odd-node
duplication and no sorting of pairs.

Two families of helpers live here:

* reference builders over an in-memory list of leaf hashes (:func:`root_hash`,
  :func:`inclusion_proof`, :func:`consistency_proof`), written as the RFC's recursive
  definitions;
* *range* helpers (:func:`inclusion_ranges`, :func:`consistency_ranges`,
  :func:`perfect_blocks`, :func:`fold_blocks`) that describe a proof as the list of leaf ranges
  whose subtree hashes it contains, so a store that keeps the hashes of perfect, aligned
  subtrees can build any proof in ``O(log n)`` reads.

Verifiers follow the "compute the root, then compare" shape and raise
:class:`~chainaudit.core.errors.VerificationError` on every failure, malformed input included.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from chainaudit.core.errors import VerificationError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Range",
    "consistency_proof",
    "consistency_ranges",
    "fold_blocks",
    "hash_children",
    "hash_leaf",
    "inclusion_proof",
    "inclusion_ranges",
    "perfect_blocks",
    "range_hash",
    "root_from_inclusion_proof",
    "root_hash",
    "split_point",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def hash_leaf(data: bytes) -> bytes:
    """Return the leaf hash ``SHA-256(0x00 || data)`` (RFC 9162 §2.1.1)."""
    return _sha256(LEAF_PREFIX + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """Return the interior node hash ``SHA-256(0x01 || left || right)`` (RFC 9162 §2.1.1)."""
    return _sha256(NODE_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """Return ``k``, the largest power of two strictly smaller than ``n``.

    Precondition: ``n > 1``.
    """
    return 1 << ((n - 1).bit_length() - 1)


# ---------------------------------------------------------------------------------------------
# Reference builders over a list (RFC 9162 §2.1.1, §2.1.3.1, §2.1.4.1)
# ---------------------------------------------------------------------------------------------


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return MTH(D[n]) for the given leaf hashes (RFC 9162 §2.1.1).

    The empty tree's root is SHA-256 of the empty string. Runs in ``O(n)`` hashing, level by
    level: a level's unpaired last node is carried up unchanged, which is exactly the RFC's
    split at the largest power of two.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    while len(level) > 1:
        paired = [hash_children(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def inclusion_proof(leaf_hashes: Sequence[bytes], leaf_index: int) -> list[bytes]:
    """Return PATH(m, D[n]), the inclusion proof of leaf ``m`` (RFC 9162 §2.1.3.1).

    Raises ``ValueError`` unless ``0 <= leaf_index < len(leaf_hashes)``.
    """
    if not 0 <= leaf_index < len(leaf_hashes):
        raise ValueError(f"leaf index {leaf_index} is outside a tree of {len(leaf_hashes)}")
    return _path(leaf_index, leaf_hashes)


def _path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = split_point(n)
    if m < k:
        return [*_path(m, leaves[:k]), root_hash(leaves[k:])]
    return [*_path(m - k, leaves[k:]), root_hash(leaves[:k])]


def consistency_proof(leaf_hashes: Sequence[bytes], size1: int) -> list[bytes]:
    """Return PROOF(m, D[n]), the consistency proof from size ``m`` (RFC 9162 §2.1.4.1).

    The proof from ``0`` or from ``n`` itself is empty. Raises ``ValueError`` unless
    ``0 <= size1 <= len(leaf_hashes)``.
    """
    n = len(leaf_hashes)
    if not 0 <= size1 <= n:
        raise ValueError(f"size {size1} is outside a tree of {n}")
    if size1 in (0, n):
        return []
    return _subproof(size1, leaf_hashes, True)


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root_hash(leaves)]
    k = split_point(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), root_hash(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), root_hash(leaves[:k])]


# ---------------------------------------------------------------------------------------------
# Proofs as leaf ranges, for stores that keep perfect subtree hashes
# ---------------------------------------------------------------------------------------------

Range = tuple[int, int]
"""A half-open leaf range ``[start, end)`` of the tree."""


def inclusion_ranges(leaf_index: int, tree_size: int) -> list[Range]:
    """Return the leaf ranges whose subtree hashes form PATH(leaf_index, D[tree_size]).

    The i-th range's MTH is the i-th proof hash (RFC 9162 §2.1.3.1). Every range is a perfect,
    aligned subtree except possibly one that ends at ``tree_size``. Raises ``ValueError``
    unless ``0 <= leaf_index < tree_size``.
    """
    if not 0 <= leaf_index < tree_size:
        raise ValueError(f"leaf index {leaf_index} is outside a tree of {tree_size}")
    ranges: list[Range] = []
    start, end = 0, tree_size
    while end - start > 1:
        k = split_point(end - start)
        mid = start + k
        if leaf_index < mid:
            ranges.append((mid, end))
            end = mid
        else:
            ranges.append((start, mid))
            start = mid
    ranges.reverse()
    return ranges


def consistency_ranges(size1: int, size2: int) -> list[Range]:
    """Return the leaf ranges whose subtree hashes form PROOF(size1, D[size2]).

    Follows SUBPROOF of RFC 9162 §2.1.4.1. Raises ``ValueError`` unless
    ``0 <= size1 <= size2``.
    """
    if not 0 <= size1 <= size2:
        raise ValueError(f"no consistency proof from size {size1} to size {size2}")
    if size1 in (0, size2):
        return []
    ranges: list[Range] = []
    start, end, m, complete = 0, size2, size1, True
    while m != end - start:
        k = split_point(end - start)
        mid = start + k
        if m <= k:
            ranges.append((mid, end))
            end = mid
        else:
            ranges.append((start, mid))
            start, m, complete = mid, m - k, False
    if not complete:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def perfect_blocks(start: int, end: int) -> list[tuple[int, int]]:
    """Split ``[start, end)`` into perfect aligned subtrees, largest first.

    Each block is returned as ``(level, index)``: the subtree of ``2**level`` leaves that
    starts at leaf ``index * 2**level``. Precondition: ``start`` is a multiple of the largest
    power of two not exceeding ``end - start`` (true of every range a proof uses), so the
    blocks are exactly the RFC's left-to-right splits and :func:`fold_blocks` of their hashes
    gives MTH(D[start:end]).
    """
    blocks: list[tuple[int, int]] = []
    while start < end:
        level = (end - start).bit_length() - 1
        low = start & -start
        if low:
            level = min(level, low.bit_length() - 1)
        blocks.append((level, start >> level))
        start += 1 << level
    return blocks


def fold_blocks(hashes: Sequence[bytes]) -> bytes:
    """Combine the hashes of :func:`perfect_blocks` (largest first) into the range's MTH."""
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = hash_children(left, result)
    return result


def range_hash(start: int, end: int, node: Callable[[int, int], bytes]) -> bytes:
    """Return MTH of leaves ``[start, end)`` given ``node(level, index)`` for perfect subtrees."""
    return fold_blocks([node(level, index) for level, index in perfect_blocks(start, end)])


# ---------------------------------------------------------------------------------------------
# Verification (RFC 9162 §2.1.3.2, §2.1.4.2)
# ---------------------------------------------------------------------------------------------


def _check_hash(value: object, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        raise VerificationError(f"{what} must be {HASH_SIZE} bytes", check="format")
    return bytes(value)


def _check_proof(proof: object) -> list[bytes]:
    if not isinstance(proof, list | tuple):
        raise VerificationError("proof must be a list of hashes", check="format")
    return [_check_hash(item, f"proof[{i}]") for i, item in enumerate(proof)]


def _check_size(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise VerificationError(f"{what} must be a non-negative integer", check="format")
    return value


def root_from_inclusion_proof(
    leaf_hash: bytes, leaf_index: int, tree_size: int, proof: Sequence[bytes]
) -> bytes:
    """Return the root that ``proof`` implies for the leaf (RFC 9162 §2.1.3.2 steps 1-5).

    Raises :class:`VerificationError` if the inputs are malformed or the proof has the wrong
    length for the position; the caller compares the result with the trusted root.
    """
    leaf = _check_hash(leaf_hash, "leaf hash")
    index = _check_size(leaf_index, "leaf index")
    size = _check_size(tree_size, "tree size")
    hashes = _check_proof(proof)
    if index >= size:
        raise VerificationError(
            f"leaf index {index} is outside a tree of {size}", check="inclusion"
        )
    fn, sn, r = index, size - 1, leaf
    for p in hashes:
        if sn == 0:
            raise VerificationError("inclusion proof is too long", check="inclusion")
        if fn & 1 or fn == sn:
            r = hash_children(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = hash_children(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("inclusion proof is too short", check="inclusion")
    return r


def verify_inclusion(
    leaf_hash: bytes, leaf_index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``leaf_index`` of the tree of ``tree_size`` with ``root``.

    Implements RFC 9162 §2.1.3.2. Returns nothing on success; raises
    :class:`VerificationError` on any failure, malformed input included.
    """
    expected = _check_hash(root, "root")
    if root_from_inclusion_proof(leaf_hash, leaf_index, tree_size, proof) != expected:
        raise VerificationError("inclusion proof does not lead to the root", check="inclusion")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree of ``size2`` with ``root2`` extends the one of ``size1``, ``root1``.

    Implements RFC 9162 §2.1.4.2. Between equal sizes the proof must be empty and the roots
    equal; a proof from size 0 is refused, since it would prove nothing.
    Returns nothing on success; raises :class:`VerificationError` on any failure, malformed
    input included.
    """
    m = _check_size(size1, "size1")
    n = _check_size(size2, "size2")
    hashes = _check_proof(proof)
    if m > n:
        raise VerificationError(f"size1 {m} is larger than size2 {n}", check="consistency")
    if m == 0:
        # Every tree extends the empty tree: such a "proof" proves nothing and is refused.
        raise VerificationError(
            "a consistency proof from size 0 is meaningless", check="consistency"
        )
    if m == n:
        if hashes:
            raise VerificationError("proof between equal sizes must be empty", check="consistency")
        if not isinstance(root1, bytes | bytearray) or not isinstance(root2, bytes | bytearray):
            raise VerificationError("roots must be bytes", check="format")
        if bytes(root1) != bytes(root2):
            raise VerificationError("roots differ at the same size", check="consistency")
        return
    old_root = _check_hash(root1, "root1")
    new_root = _check_hash(root2, "root2")
    if not hashes:
        raise VerificationError("consistency proof is empty", check="consistency")
    if m & (m - 1) == 0:  # size1 is a power of two: its root is the proof's implicit first node
        hashes = [old_root, *hashes]
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = hashes[0]
    for c in hashes[1:]:
        if sn == 0:
            raise VerificationError("consistency proof is too long", check="consistency")
        if fn & 1 or fn == sn:
            fr = hash_children(c, fr)
            sr = hash_children(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = hash_children(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("consistency proof is too short", check="consistency")
    if fr != old_root:
        raise VerificationError("consistency proof does not lead to root1", check="consistency")
    if sr != new_root:
        raise VerificationError("consistency proof does not lead to root2", check="consistency")
