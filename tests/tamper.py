"""Tampering with a log's SQLite file the way someone holding the database could."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from chainaudit import merkle, tiles


def rewrite_node(db: sqlite3.Connection, level: int, index: int, value: bytes) -> None:
    """Overwrite the stored hash of node ``(level, index)`` inside its tile."""
    key, k, position = tiles.address(level, index)
    width, blob = db.execute("SELECT width, hashes FROM tiles WHERE id = ?", (key,)).fetchone()
    start = tiles.offset(width, k, position)
    assert start is not None, f"node ({level}, {index}) is not stored"
    patched = blob[:start] + value + blob[start + tiles.HASH_SIZE :]
    db.execute("UPDATE tiles SET hashes = ? WHERE id = ?", (patched, key))


def rewrite_tree(db: sqlite3.Connection, leaves: Sequence[bytes]) -> None:
    """Overwrite every stored node of the tree over ``leaves`` with the values they imply."""
    level, width = 0, list(leaves)
    while width:
        for index, node in enumerate(width):
            rewrite_node(db, level, index, node)
        width = [merkle.hash_children(width[i], width[i + 1]) for i in range(0, len(width) - 1, 2)]
        level += 1
