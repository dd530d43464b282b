"""Tiles: addressing and encoding, and a log that grows across tile and group borders."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from chainaudit.core import merkle, tiles
from chainaudit.core.errors import StoreError
from chainaudit.core.records import PreparedRecord
from chainaudit.log.store import Log
from tests.tamper import rewrite_node


def test_address_places_every_node_of_a_tile_in_it() -> None:
    assert tiles.address(0, 0) == (0, 0, 0)
    assert tiles.address(0, 257) == (1, 0, 1)
    assert tiles.address(3, 40) == (1, 3, 8)  # leaves [320, 328) lie in tile 1
    assert tiles.address(8, 5) == (1 << 48, 0, 5)
    assert tiles.address(15, 1) == (1 << 48, 7, 1)  # level-8 nodes [128, 256): tile 0
    assert tiles.address(15, 2) == ((1 << 48) | 1, 7, 0)
    assert tiles.address(16, 300) == ((2 << 48) | 1, 0, 44)
    for level in range(tiles.HEIGHT):  # level k of tile t covers the same leaves as its base
        for index in range(0, 600 >> level):
            key, k, position = tiles.address(level, index)
            base_first = (key << tiles.HEIGHT) + (position << k)
            assert base_first == index << level


def test_encode_decode_and_offsets() -> None:
    for width in (1, 2, 3, 7, 128, 255, 256):
        levels = [
            [hashlib.sha256(bytes([k, i % 256, i // 256])).digest() for i in range(width >> k)]
            for k in range(tiles.HEIGHT)
        ]
        joined = [b"".join(level) for level in levels]
        size, blob = tiles.encode(joined)
        assert size == width and tiles.decode(width, blob) == joined
        for k, level in enumerate(levels):
            for position, value in enumerate(level):
                assert tiles.node(width, blob, k, position) == value
            assert tiles.node(width, blob, k, len(level)) is None
    assert tiles.node(256, b"\x00" * 64, 0, 5) is None  # a short (damaged) blob


def leaf_records(count: int) -> list[PreparedRecord]:
    """Cheap stand-ins with distinct leaves (the store only needs the prepared fields)."""
    out = []
    for i in range(count):
        body = (
            b'{"actor":"x","id":"r-%d","kind":"transaction","timestamp":"1970-01-01T00:00:00Z"}' % i
        )
        out.append(
            PreparedRecord(f"r-{i}", "transaction", "x", 0, True, body, merkle.hash_leaf(body))
        )
    return out


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes]]:
    """A log of 66,000 leaves (three level groups) appended in uneven batches, with a restart
    in the middle of a tile."""
    path = tmp_path_factory.mktemp("tiles")
    records = leaf_records(66_000)
    with Log.open(path) as log:
        start = 0
        for step in (1, 2, 253, 1, 300, 7000, 1000, 20_000, 3):
            log.append(records[start : start + step])
            start += step
    with Log.open(path) as log:
        assert log.size == start
        for chunk in range(start, len(records), 4099):
            log.append(records[chunk : chunk + 4099])
        assert log.size == len(records)
    return path, [r.leaf_hash for r in records]


def test_roots_and_proofs_across_tile_and_group_borders(grown: tuple[Path, list[bytes]]) -> None:
    path, leaves = grown
    with Log.open(path) as log:
        assert log.root() == merkle.root_hash(leaves)
        for size in (1, 255, 256, 257, 511, 513, 65_535, 65_536, 65_537, 66_000):
            assert log.root_at(size) == merkle.root_hash(leaves[:size])
            for index in {0, size // 3, size - 257, size - 1} - {-1}:
                if 0 <= index < size:
                    expected = merkle.inclusion_proof(leaves[:size], index)
                    assert log.inclusion_proof(index, size) == expected
        for old, new in ((256, 65_536), (257, 66_000), (65_536, 65_537), (1, 300)):
            assert log.consistency_proof(old, new) == merkle.consistency_proof(leaves[:new], old)
        assert log.audit().clean


def test_audit_names_a_rewritten_node_in_an_upper_group(
    grown: tuple[Path, list[bytes]], tmp_path: Path
) -> None:
    source, _ = grown
    copy = tmp_path / "copy"
    copy.mkdir()
    with sqlite3.connect(source / "log.sqlite") as src, sqlite3.connect(copy / "log.sqlite") as dst:
        src.backup(dst)
    db = sqlite3.connect(copy / "log.sqlite")
    with db:
        rewrite_node(db, 9, 3, bytes(32))  # over leaves [1536, 2048)
    db.close()
    with Log.open(copy) as log:
        findings = [(f.problem, f.index) for f in log.audit().findings]
    # the node no longer matches its children (level 8) nor its parent (level 10)
    assert ("tree", 1536) in findings and ("tree", 1024) in findings


def write_schema_1_log(path: Path, leaves: list[bytes]) -> None:
    """A log as version 1 stored it: one ``tree`` row per perfect subtree node."""
    db = sqlite3.connect(path / "log.sqlite")
    db.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
        "CREATE TABLE records (idx INTEGER PRIMARY KEY, record_id TEXT NOT NULL UNIQUE,"
        " kind TEXT NOT NULL, actor TEXT NOT NULL, ts INTEGER NOT NULL, body BLOB);"
        "CREATE TABLE tree (id INTEGER PRIMARY KEY, hash BLOB NOT NULL);"
        "CREATE TABLE checkpoints (size INTEGER PRIMARY KEY, root BLOB NOT NULL,"
        " created_ms INTEGER NOT NULL);"
    )
    db.execute("INSERT INTO meta VALUES ('schema', 1), ('tree_size', ?)", (len(leaves),))
    for record in leaf_records(len(leaves)):
        index = int(record.record_id[2:])
        db.execute(
            "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)",
            (index, *record[:4], record.body),
        )
    level, width = 0, leaves
    while width:
        for index, node in enumerate(width):
            db.execute("INSERT INTO tree VALUES (?, ?)", ((level << 48) | index, node))
        width = [merkle.hash_children(width[i], width[i + 1]) for i in range(0, len(width) - 1, 2)]
        level += 1
    db.execute("INSERT INTO checkpoints VALUES (?, ?, 0)", (len(leaves), merkle.root_hash(leaves)))
    db.commit()
    db.close()


def test_a_schema_1_log_is_upgraded_to_tiles(tmp_path: Path) -> None:
    leaves = [r.leaf_hash for r in leaf_records(600)]
    write_schema_1_log(tmp_path, leaves)
    with Log.open(tmp_path) as log:
        assert log.size == 600 and log.root() == merkle.root_hash(leaves)
        assert log.inclusion_proof(513) == merkle.inclusion_proof(leaves, 513)
        assert not log._has_table("tree")
        assert log.audit().clean
        more = leaf_records(601)[600:]
        log.append(more)
        assert log.root() == merkle.root_hash([*leaves, more[0].leaf_hash])


def test_a_damaged_schema_1_log_is_left_as_it_was(tmp_path: Path) -> None:
    leaves = [r.leaf_hash for r in leaf_records(40)]
    write_schema_1_log(tmp_path, leaves)
    db = sqlite3.connect(tmp_path / "log.sqlite")
    with db:
        db.execute("UPDATE tree SET hash = zeroblob(32) WHERE id = 7")
    db.close()
    with pytest.raises(StoreError, match="do not reproduce the checkpoint at size 40"):
        Log.open(tmp_path)
    db = sqlite3.connect(tmp_path / "log.sqlite")
    assert db.execute("SELECT count(*) FROM tree").fetchone()[0] > 40  # untouched
    assert db.execute("SELECT count(*) FROM tiles").fetchone()[0] == 0
    db.close()


def test_a_schema_2_log_is_upgraded_to_record_bundles(tmp_path: Path) -> None:
    """Schema 2 kept one ``records`` row per record beside the tiles."""
    with Log.open(tmp_path) as log:
        log.append(leaf_records(300))
        before = list(log.entries())
        root = log.root()
    db = sqlite3.connect(tmp_path / "log.sqlite")
    with db:
        db.execute(
            "CREATE TABLE records (idx INTEGER PRIMARY KEY, record_id TEXT NOT NULL UNIQUE,"
            " kind TEXT NOT NULL, actor TEXT NOT NULL, ts INTEGER NOT NULL, body BLOB)"
        )
        db.executemany(
            "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)",
            [(e.index, e.record_id, e.kind, e.actor, e.timestamp_ms, e.body) for e in before],
        )
        db.execute("DROP TABLE bundles")
        db.execute("DROP TABLE record_ids")
        db.execute("UPDATE meta SET value = 2 WHERE key = 'schema'")
    db.close()
    with Log.open(tmp_path) as log:
        assert not log._has_table("records")
        assert list(log.entries()) == before and log.root() == root
        assert log.entry("r-299").index == 299 and log.audit().clean
        log.append(leaf_records(301)[300:])
        assert log.entry("r-300").index == 300
