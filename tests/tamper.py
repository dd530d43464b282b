"""Tampering with a log's SQLite file the way someone holding the database could."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from chainaudit.core import merkle, tiles
from chainaudit.log import bundles


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


def stored_records(db: sqlite3.Connection) -> dict[int, bundles.Stored]:
    """Every record in the log's bundles, by the leaf index it is stored for."""
    return {
        record.leaf_index: record
        for (blob,) in db.execute("SELECT records FROM bundles ORDER BY id")
        for record in bundles.decode(blob)
    }


def write_records(db: sqlite3.Connection, records: Iterable[bundles.Stored]) -> None:
    """Replace every bundle with ones holding ``records``, each in the bundle of its leaf."""
    grouped: dict[int, list[bundles.Stored]] = {}
    for record in records:
        grouped.setdefault(bundles.key(record.leaf_index), []).append(record)
    db.execute("DELETE FROM bundles")
    db.executemany(
        "INSERT INTO bundles VALUES (?, ?)",
        [(key, bundles.encode_at(group)) for key, group in grouped.items()],
    )


def _find(records: dict[int, bundles.Stored], record: int | str) -> bundles.Stored:
    if isinstance(record, int):
        return records[record]
    return next(r for r in records.values() if r.record_id == record)


def body_of(db: sqlite3.Connection, record: int | str) -> bytes | None:
    """The stored body of ``record`` (a leaf index or a record id)."""
    return _find(stored_records(db), record).body


def set_body(db: sqlite3.Connection, record: int | str, body: bytes | None) -> None:
    """Overwrite the stored body of ``record`` (a leaf index or a record id); ``None`` erases."""
    records = stored_records(db)
    target = _find(records, record)
    records[target.leaf_index] = target._replace(body=body)
    write_records(db, records.values())


def replace_in_body(db: sqlite3.Connection, record: int | str, old: str, new: str) -> None:
    """Edit the stored body of ``record`` the way SQL's ``replace()`` would."""
    body = body_of(db, record)
    assert body is not None and old.encode() in body, f"{old!r} is not in the record"
    set_body(db, record, body.replace(old.encode(), new.encode()))


def delete_record(db: sqlite3.Connection, record: int | str) -> None:
    """Remove ``record`` (a leaf index or a record id) and its id from the store."""
    records = stored_records(db)
    target = _find(records, record)
    del records[target.leaf_index]
    write_records(db, records.values())
    db.execute("DELETE FROM record_ids WHERE record_id = ?", (target.record_id,))
