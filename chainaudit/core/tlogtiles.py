"""The C2SP ``tlog-tiles`` read path: tile paths and entry bundles (pure, no I/O).

A tiled log serves, under its base URL (``c2sp.org/tlog-tiles``):

* ``checkpoint``: the latest signed checkpoint (:mod:`chainaudit.core.note`).
* ``tile/<L>/<N>[.p/<W>]``: the hash tile ``N`` of level ``L``: the 32-byte hashes of the
  tree nodes at height ``8L`` numbered ``256N .. 256N+W-1``, back to back. A full tile has
  ``W = 256`` and never changes; a partial tile (``.p/<W>``, ``1 <= W <= 255``) is the right
  edge of a tree whose size is not a multiple of ``256^(L+1)``.
* ``tile/entries/<N>[.p/<W>]``: the entry bundle ``N``: the leaf data of entries
  ``256N .. 256N+W-1``, each as a big-endian ``uint16`` length followed by the bytes.

``N`` is written in groups of three decimal digits, every group but the last prefixed with
``x`` (``1234067`` -> ``x001/x234/067``).

Errors: :class:`~chainaudit.core.errors.InputError` naming what is wrong with a path or bundle.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from chainaudit.core.errors import InputError

__all__ = [
    "ENTRIES",
    "HASH_SIZE",
    "MAX_ENTRY_BYTES",
    "MAX_LEVEL",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "TileRef",
    "decode_entries",
    "encode_entries",
    "levels_for",
    "parse_path",
    "split_hashes",
    "tiles_for",
]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
HASH_SIZE = 32
MAX_LEVEL = 63
MAX_ENTRY_BYTES = 0xFFFF
ENTRIES = "entries"

_GROUP = re.compile(r"x\d{3}")
_LAST = re.compile(r"\d{3}")
_WIDTH = re.compile(r"[1-9]\d{0,2}")


@dataclass(frozen=True)
class TileRef:
    """One tile: ``level`` (``None`` for an entry bundle), ``index`` and ``width`` (1-256)."""

    level: int | None
    index: int
    width: int = TILE_WIDTH

    @property
    def partial(self) -> bool:
        return self.width < TILE_WIDTH

    def path(self) -> str:
        """The tile's path below the log's base URL, e.g. ``tile/0/x001/234.p/7``."""
        head = ENTRIES if self.level is None else str(self.level)
        tail = f".p/{self.width}" if self.partial else ""
        return f"tile/{head}/{encode_index(self.index)}{tail}"


def encode_index(index: int) -> str:
    """``N`` in the tile path form: three-digit groups, all but the last prefixed with ``x``.

    Precondition: ``index >= 0``.
    """
    digits = str(index)
    digits = digits.zfill(-(-len(digits) // 3) * 3)
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join([f"x{g}" for g in groups[:-1]] + groups[-1:])


def parse_path(path: str) -> TileRef:
    """Parse ``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]`` (leading ``/`` allowed).

    Raises:
        InputError: the path is not a tile path in the canonical form (no leading zeros in
            ``L`` or ``W``, ``W`` in 1-255, ``L`` in 0-63).
    """
    parts = path.lstrip("/").split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise InputError(f"not a tile path: {path[:80]!r} (expected tile/<L>/<N>[.p/<W>])")
    head, rest = parts[1], parts[2:]
    if head == ENTRIES:
        level = None
    elif head.isdigit() and (head == "0" or not head.startswith("0")) and len(head) <= 2:
        level = int(head)
        if level > MAX_LEVEL:
            raise InputError(f"tile level {level} is above {MAX_LEVEL}")
    else:
        raise InputError(f"tile level {head[:20]!r} is not a number 0-{MAX_LEVEL} or 'entries'")
    width = TILE_WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        if not _WIDTH.fullmatch(rest[-1]) or int(rest[-1]) >= TILE_WIDTH:
            raise InputError(f"partial tile width {rest[-1][:10]!r} is not 1-255")
        width = int(rest[-1])
        rest = [*rest[:-2], rest[-2][:-2]]
    if not rest or not _LAST.fullmatch(rest[-1]) or not all(_GROUP.fullmatch(g) for g in rest[:-1]):
        raise InputError(f"tile index in {path[:80]!r} is not of the form x001/x234/067")
    digits = "".join(g[1:] for g in rest[:-1]) + rest[-1]
    if len(rest) > 1 and rest[0] == "x000":
        raise InputError(f"tile index in {path[:80]!r} has a leading zero group")
    if len(digits) > 24:
        raise InputError("tile index is too large")
    return TileRef(level, int(digits), width)


def tiles_for(size: int, level: int | None) -> list[TileRef]:
    """Every tile of ``level`` (``None``: entry bundles) that a tree of ``size`` leaves has,
    the last one partial when the level's node count is not a multiple of 256."""
    height = 0 if level is None else TILE_HEIGHT * level
    nodes = size >> height
    full, rest = divmod(nodes, TILE_WIDTH)
    refs = [TileRef(level, i) for i in range(full)]
    if rest:
        refs.append(TileRef(level, full, rest))
    return refs


def levels_for(size: int) -> int:
    """How many hash tile levels a tree of ``size`` leaves has (0 for the empty tree)."""
    levels = 0
    while size >> (TILE_HEIGHT * levels):
        levels += 1
    return levels


def encode_entries(entries: Iterable[bytes]) -> bytes:
    """An entry bundle: each entry as a big-endian uint16 length and its bytes.

    Raises:
        InputError: an entry is longer than 65,535 bytes.
    """
    out = bytearray()
    for entry in entries:
        if len(entry) > MAX_ENTRY_BYTES:
            raise InputError(f"an entry of {len(entry)} bytes does not fit a uint16 length")
        out += len(entry).to_bytes(2, "big") + entry
    return bytes(out)


def decode_entries(bundle: bytes) -> list[bytes]:
    """The entries of an entry bundle.

    Raises:
        InputError: the bundle ends inside a length or an entry.
    """
    entries, at = [], 0
    while at < len(bundle):
        if at + 2 > len(bundle):
            raise InputError(f"entry bundle ends inside a length at byte {at}")
        length = int.from_bytes(bundle[at : at + 2], "big")
        if at + 2 + length > len(bundle):
            raise InputError(f"entry bundle ends inside the entry at byte {at}")
        entries.append(bundle[at + 2 : at + 2 + length])
        at += 2 + length
    return entries


def split_hashes(tile: bytes) -> list[bytes]:
    """The 32-byte hashes of a hash tile.

    Raises:
        InputError: the tile is empty, longer than 256 hashes or not a multiple of 32 bytes.
    """
    if not tile or len(tile) % HASH_SIZE or len(tile) > TILE_WIDTH * HASH_SIZE:
        raise InputError(f"a hash tile of {len(tile)} bytes is not 1-256 hashes of 32 bytes")
    return [tile[i : i + HASH_SIZE] for i in range(0, len(tile), HASH_SIZE)]


def join_hashes(hashes: Sequence[bytes]) -> bytes:
    """A hash tile's bytes (precondition: 1-256 hashes of 32 bytes)."""
    return b"".join(hashes)
