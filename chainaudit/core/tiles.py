"""Tiles: how the log stores the hashes of its tree, 256 leaves to a row.

Pure, no I/O. The log keeps the hash of every *perfect, aligned* subtree of the RFC 9162 tree
(leaves at level 0 and every complete pair above them), so any proof is a fold of stored hashes
(:func:`chainaudit.core.merkle.perfect_blocks`). Storing each hash as its own row made appends pay
two B-tree inserts per record; tiles pack them instead, in the manner of the tiled logs of
C2SP ``tlog-tiles`` (but holding every level, so a read never re-hashes):

* Levels are grouped eight at a time. Group ``g`` covers tree levels ``8g .. 8g+7``.
* Tile ``(g, t)`` holds the nodes of group ``g`` above the 256 nodes of level ``8g`` numbered
  ``256t .. 256t+255``: its *base*. A tile whose base is full is complete and never changes;
  only the tiles on the tree's right edge (one per group) are partial and grow.
* A tile with ``width`` base nodes holds ``width >> k`` nodes at its level ``k`` (exactly the
  complete subtrees there), stored level after level as 32-byte hashes in one blob.

Tile keys are ``g << 48 | t``; positions are ``(key, k, i)``: level ``k`` of the tile, ``i``-th
node from the tile's left.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

__all__ = [
    "GROUP_SHIFT",
    "HASH_SIZE",
    "HEIGHT",
    "WIDTH",
    "address",
    "decode",
    "encode",
    "level_nodes",
    "node",
    "offset",
]

HEIGHT: Final = 8
"""Tree levels per tile."""
WIDTH: Final = 1 << HEIGHT
"""Base nodes of a complete tile."""
GROUP_SHIFT: Final = 48
HASH_SIZE: Final = 32


def address(level: int, index: int) -> tuple[int, int, int]:
    """Return ``(tile key, level in tile, position in that level)`` of node ``(level, index)``.

    Precondition: ``level >= 0`` and ``index >= 0``.
    """
    group, k = divmod(level, HEIGHT)
    tile = (index << k) >> HEIGHT
    return (group << GROUP_SHIFT) | tile, k, index - (tile << (HEIGHT - k))


def group_of(key: int) -> int:
    """The level group of tile ``key``."""
    return key >> GROUP_SHIFT


def offset(width: int, k: int, position: int) -> int | None:
    """Byte offset of node ``(k, position)`` in the blob of a tile of ``width``, or ``None``
    when the tile does not (yet) hold that node."""
    if not 0 <= position < width >> k:
        return None
    before = 0
    for level in range(k):
        before += width >> level
    return HASH_SIZE * (before + position)


def node(width: int, blob: bytes, k: int, position: int) -> bytes | None:
    """The hash of node ``(k, position)`` in a tile, or ``None`` if the tile lacks it or its
    blob is too short (a damaged row)."""
    start = offset(width, k, position)
    if start is None or start + HASH_SIZE > len(blob):
        return None
    return blob[start : start + HASH_SIZE]


def level_nodes(width: int, blob: bytes, k: int) -> list[bytes]:
    """All hashes a tile holds at its level ``k``, left to right (short if the blob is)."""
    start = offset(width, k, 0)
    if start is None:
        return []
    end = start + HASH_SIZE * (width >> k)
    return [blob[i : i + HASH_SIZE] for i in range(start, min(end, len(blob)), HASH_SIZE)]


def encode(levels: Sequence[bytes | bytearray]) -> tuple[int, bytes]:
    """Return ``(width, blob)`` for a tile given its levels, each its hashes back to back.

    Precondition: ``levels[k]`` holds exactly ``width >> k`` hashes, ``width`` being the
    number ``levels[0]`` holds.
    """
    return len(levels[0]) // HASH_SIZE, b"".join(levels)


def decode(width: int, blob: bytes) -> list[bytes]:
    """The inverse of :func:`encode`: the tile's levels, each its hashes back to back (short
    if the blob is)."""
    levels = []
    for k in range(HEIGHT):
        start = offset(width, k, 0)
        levels.append(b"" if start is None else blob[start : start + HASH_SIZE * (width >> k)])
    return levels
