"""The C2SP tlog-tiles read path of the store: ``Log.hash_tile`` and ``Log.entry_bundle``
against hashes recomputed from the leaves by :mod:`chainaudit.core.merkle`, at sizes around tile
and level borders; the signed checkpoint table."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chainaudit.core import merkle, note, tlogtiles
from chainaudit.core.errors import NotFoundError
from chainaudit.core.records import prepare
from chainaudit.log import datakeys
from chainaudit.log.store import Log
from tests.test_tiles import leaf_records

SIZES = (0, 1, 255, 256, 257, 511, 512, 65_535, 65_536, 65_539)


def nodes_at(leaves: list[bytes], height: int) -> list[bytes]:
    """The hashes of the complete subtrees at ``height`` (RFC 9162 MTH of 2^height leaves)."""
    row = leaves
    for _ in range(height):
        row = [merkle.hash_children(row[i], row[i + 1]) for i in range(0, len(row) - 1, 2)]
    return row


def test_tiles_and_bundles_match_the_tree_around_tile_borders(tmp_path: Path) -> None:
    records = leaf_records(SIZES[-1])
    leaves = [r.leaf_hash for r in records]
    with Log.open(tmp_path) as log:
        for size in SIZES:
            log.append(records[log.size : size])
            assert log.size == size
            levels = tlogtiles.levels_for(size)
            rows = {level: nodes_at(leaves[:size], 8 * level) for level in range(levels)}
            for level in range(levels):
                refs = tlogtiles.tiles_for(size, level)
                for ref in refs if size < 1000 else refs[:2] + refs[-2:]:
                    first = 256 * ref.index
                    want = b"".join(rows[level][first : first + ref.width])
                    assert log.hash_tile(level, ref.index, ref.width) == want, (size, ref)
            assert tlogtiles.tiles_for(size, levels) == []
            with pytest.raises(NotFoundError):
                log.hash_tile(levels, 0, 1)
            for ref in tlogtiles.tiles_for(size, None)[-2:]:
                bundle = tlogtiles.decode_entries(log.entry_bundle(ref.index, ref.width))
                first = 256 * ref.index
                assert bundle == [r.body for r in records[first : first + ref.width]]
                assert [merkle.hash_leaf(e) for e in bundle] == leaves[first : first + ref.width]


def test_availability_follows_the_spec(tmp_path: Path) -> None:
    records = leaf_records(600)
    with Log.open(tmp_path) as log:
        log.append(records[:300])
        with pytest.raises(NotFoundError):
            log.hash_tile(0, 1)  # the full tile 1 is not complete (44 of 256 leaves)
        with pytest.raises(NotFoundError):
            log.hash_tile(0, 1, 45)  # wider than the tree
        with pytest.raises(NotFoundError):
            log.entry_bundle(1)
        with pytest.raises(NotFoundError):
            log.hash_tile(1, 0, 2)  # one node at height 8
        assert len(log.hash_tile(0, 1, 44)) == 44 * 32
        assert len(log.hash_tile(1, 0, 1)) == 32
        partial = log.hash_tile(0, 1, 44)
        log.append(records[300:])
        # A partial tile stays available once its full tile exists: the same bytes, a prefix.
        assert log.hash_tile(0, 1, 44) == partial == log.hash_tile(0, 1)[: 44 * 32]
        assert tlogtiles.decode_entries(log.entry_bundle(1, 44)) == [
            r.body for r in records[256:300]
        ]
        for bad in ((0, -1, 1), (64, 0, 1), (0, 0, 0), (0, 0, 257)):
            with pytest.raises(NotFoundError):
                log.hash_tile(*bad)


def test_signed_checkpoints_are_stored_by_size(tmp_path: Path) -> None:
    signer = note.Signer.generate("example.com/log")
    with Log.open(tmp_path) as log:
        assert log.signed_checkpoint() is None
        log.append(leaf_records(3))
        for size in (1, 3, 2):
            text = note.sign_checkpoint(
                signer, note.Checkpoint("example.com/log", size, log.root_at(size))
            ).encode()
            log.put_signed_checkpoint(size, text)
        latest = log.signed_checkpoint()
        assert latest is not None
        assert note.open_checkpoint(latest, signer.verifier())[0].size == 3
        assert log.signed_checkpoint(2) is not None and "\n2\n" in (log.signed_checkpoint(2) or "")
        assert log.signed_checkpoint(7) is None


def test_an_erased_record_withholds_its_entry_bundle_not_its_leaf(tmp_path: Path) -> None:
    import sqlite3  # noqa: PLC0415

    from tests.tamper import set_body  # noqa: PLC0415

    with Log.open(tmp_path) as log:
        log.append(leaf_records(10))
    db = sqlite3.connect(tmp_path / "log.sqlite")
    set_body(db, 4, None)
    db.commit()
    db.close()
    with Log.open(tmp_path) as log:
        with pytest.raises(NotFoundError, match="erased"):
            log.entry_bundle(0, 10)
        assert len(log.hash_tile(0, 0, 10)) == 320


def test_an_entry_bundle_of_sealed_records_holds_their_leaf_data(tmp_path: Path) -> None:
    """Records encrypted at rest are opened for an entry bundle (when their kind is not
    withheld): each entry hashes to its leaf, never the ciphertext's hash."""
    at_rest = datakeys.AtRest(os.urandom(32), frozenset({"transaction"}))
    with Log.open(tmp_path / "data", at_rest=at_rest) as log:
        log.append(
            [
                prepare(
                    {
                        "id": f"tx-{i}",
                        "kind": "transaction",
                        "timestamp": "2026-11-21T09:30:00Z",
                        "actor": "supplier:acme",
                        "payload": {"amount": i},
                    }
                )
                for i in range(5)
            ]
        )
        assert all(datakeys.is_sealed(r.body or b"") for r in log._bundles([0])[0])
        entries = tlogtiles.decode_entries(log.entry_bundle(0, 5))
        assert [merkle.hash_leaf(e) for e in entries] == [log.leaf_hash(i) for i in range(5)]
        with pytest.raises(NotFoundError, match="keeps private"):
            log.entry_bundle(0, 5, withhold=frozenset({"transaction"}))
