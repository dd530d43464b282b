"""TlogClient and TileReader against a static tiled log served over loopback HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainaudit.core import merkle, note
from chainaudit.core.errors import InputError, VerificationError
from chainaudit.verify.tlogclient import TileReader, TlogClient
from tests.tlog.helpers import ORIGIN, entries, serve, write_log


@pytest.fixture(scope="module")
def signer() -> note.Signer:
    return note.Signer.generate(ORIGIN)


@pytest.mark.parametrize("size", [1, 6, 12, 255, 256, 257, 600])
def test_reconstructs_roots_and_proofs_from_tiles(
    tmp_path: Path, signer: note.Signer, size: int
) -> None:
    data = entries(size)
    leaves = [merkle.hash_leaf(e) for e in data]
    write_log(tmp_path, data, signer)
    with serve(tmp_path) as url, TlogClient(url) as client:
        checkpoint, _ = client.checkpoint(signer.verifier())
        assert checkpoint.size == size
        reader = TileReader(client, checkpoint.size, checkpoint.root)
        reader.check_root()
        for n in sorted({1, size // 2 or 1, size - 1 or 1, size}):
            assert reader.root_at(n) == merkle.root_hash(leaves[:n])
            assert reader.consistency_proof(n) == merkle.consistency_proof(leaves, n)
        for i in sorted({0, size // 3, size - 1}):
            assert reader.inclusion_proof(i) == merkle.inclusion_proof(leaves, i)
            assert reader.entry(i) == data[i]


def test_refuses_tiles_the_checkpoint_does_not_commit_to(
    tmp_path: Path, signer: note.Signer
) -> None:
    write_log(tmp_path, entries(300), signer)
    tile = tmp_path / "tile" / "0" / "000"  # the full tile of the first 256 leaves
    tile.write_bytes(b"\x00" * 32 + tile.read_bytes()[32:])
    with serve(tmp_path) as url, TlogClient(url) as client:
        checkpoint, _ = client.checkpoint(signer.verifier())
        reader = TileReader(client, checkpoint.size, checkpoint.root)
        reader.check_root()  # the right edge is intact
        with pytest.raises(VerificationError, match="does not hash to its parent"):
            reader.inclusion_proof(3)
        bad = TileReader(client, checkpoint.size, b"\x01" * 32)
        with pytest.raises(VerificationError, match="give root"):
            bad.root_at(10)


def test_clear_errors_for_unreachable_logs_and_bad_signatures(
    tmp_path: Path, signer: note.Signer
) -> None:
    write_log(tmp_path, entries(3), signer)
    other = note.Signer.generate(ORIGIN)
    with serve(tmp_path) as url, TlogClient(url) as client:
        with pytest.raises(VerificationError, match="no valid signature"):
            client.checkpoint(other.verifier())
        with pytest.raises(InputError, match="has no"):
            client.get("tile/9/000", 100)
    with pytest.raises(InputError, match="http"):
        TlogClient("file:///etc/")


def test_size_limits_and_the_full_tile_fallback(tmp_path: Path, signer: note.Signer) -> None:
    """A response over its limit is refused; a partial tile that is gone is read from the
    full tile that replaced it (tlog-tiles: clients fall back to the full tile)."""
    write_log(tmp_path, entries(600), signer)
    (tmp_path / "checkpoint").write_bytes(b"x" * 70_000)
    with serve(tmp_path) as url, TlogClient(url) as client:
        with pytest.raises(VerificationError, match="more than 65536 bytes"):
            client.checkpoint_note()
        # the tree of 260 leaves, read from a log that has grown to 600: tile 0/001.p/4 is
        # gone (0/001 is full now); the level-1 tile of that tree is kept for the test
        leaves = [merkle.hash_leaf(e) for e in entries(600)]
        (tmp_path / "tile" / "1" / "000.p" / "1").write_bytes(merkle.root_hash(leaves[:256]))
        reader = TileReader(client, 260, merkle.root_hash(leaves[:260]))
        assert reader.inclusion_proof(258) == merkle.inclusion_proof(leaves[:260], 258)
        with pytest.raises(InputError, match="has no"):
            TileReader(client, 520, b"\x00" * 32).check_root()
