"""Interop with an independent implementation: Go's checksum-database packages
(golang.org/x/mod/sumdb/note and sumdb/tlog) verify our signed checkpoint and read our
C2SP tlog-tiles, served by `chainaudit serve` and published as static files by
`chainaudit publish`; they recompute the tree hash and check inclusion and consistency
proofs they build from the tiles. A tampered tile or entry, or the wrong key, fails them."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from chainaudit import note
from chainaudit.publish import Publisher
from chainaudit.store import Log
from tests.interop.tiled import OLD_SIZE, Tiled, make_tiled, serving, static_server


@pytest.fixture(scope="module")
def tiled(tmp_path_factory: pytest.TempPathFactory) -> Tiled:
    return make_tiled(tmp_path_factory.mktemp("tiled"))


@pytest.fixture(scope="module")
def published(tiled: Tiled, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("published")
    with Log.open(tiled.data_dir) as log:
        Publisher(log, out).publish()
    return out


def old_root(tiled: Tiled) -> str:
    with Log.open(tiled.data_dir) as log:
        return base64.b64encode(log.root_at(OLD_SIZE)).decode()


def check(binary: Path, base: str, vkey: str, *extra: str) -> dict[str, Any]:
    done = subprocess.run(
        [str(binary), "-base", base, "-vkey", vkey, "-records", "12", "-seed", "7", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    assert (done.returncode == 0) == result["ok"]
    return result


def assert_all_good(result: dict[str, Any], tiled: Tiled) -> None:
    assert result["ok"], result
    assert result["signature_ok"] and result["tree_hash_ok"] and result["consistency_ok"]
    assert result["origin"] == "chainaudit.example/test-log" and result["size"] == tiled.size
    assert len(result["records"]) == 12
    assert all(r["leaf_matches_tile"] and r["inclusion_ok"] for r in result["records"])
    assert result["records"][0]["index"] == tiled.size - 1  # the partial right edge
    assert result["old_size"] == OLD_SIZE and result["old_root_matches"] is True


def test_go_verifies_the_tiles_chainaudit_serve_serves(
    tlogcheck: Path, tiled: Tiled, tmp_path: Path
) -> None:
    with Log.open(tiled.data_dir) as log:
        stored = log.signed_checkpoint()
    assert stored is not None
    checkpoint = tmp_path / "checkpoint"  # GET /checkpoint is another helper's: from the DB
    checkpoint.write_text(stored)
    with serving(tiled) as url:
        result = check(
            tlogcheck,
            url,
            tiled.vkey,
            "-checkpoint",
            str(checkpoint),
            "-old",
            str(OLD_SIZE),
            "-old-root",
            old_root(tiled),
        )
    assert_all_good(result, tiled)
    assert result["tiles_fetched"] > 0


def test_go_verifies_the_published_files_through_a_static_server(
    tlogcheck: Path, tiled: Tiled, published: Path
) -> None:
    with static_server(published) as url:
        result = check(
            tlogcheck, url, tiled.vkey, "-old", str(OLD_SIZE), "-old-root", old_root(tiled)
        )
    assert_all_good(result, tiled)


def tampered_copy(published: Path, into: Path, path: str) -> Path:
    copy = into / "copy"
    shutil.copytree(published, copy)
    target = copy / path
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    return copy


@pytest.mark.parametrize("path", ["tile/0/004", "tile/1/000", "tile/0/257.p/208"])
def test_a_tampered_hash_tile_fails_the_go_check(
    tlogcheck: Path, tiled: Tiled, published: Path, tmp_path: Path, path: str
) -> None:
    # Tiles the check reads: tile/0/004 holds the old size 1,234 (the consistency check),
    # tile/1/000 is above most records, tile/0/257.p/208 is the right edge.
    with static_server(tampered_copy(published, tmp_path, path)) as url:
        result = check(tlogcheck, url, tiled.vkey, "-old", str(OLD_SIZE))
    assert not result["ok"]
    # Refused when the tile is read ("downloaded inconsistent tile") or, for a tile that
    # Debian's x/mod 0.7.0 TileHashReader leaves unauthenticated (it skips some tiles when
    # the tree hash's tiles repeat), by the proofs checked against the signed root.
    failed = [r for r in result["records"] or [] if not r["inclusion_ok"]]
    assert "tile" in result["error"] or failed or not result["consistency_ok"], result


def test_a_tampered_entry_fails_the_go_check(
    tlogcheck: Path, tiled: Tiled, published: Path, tmp_path: Path
) -> None:
    last = f"tile/entries/257.p/{tiled.size % 256}"  # record size - 1, checked first
    with static_server(tampered_copy(published, tmp_path, last)) as url:
        result = check(tlogcheck, url, tiled.vkey, "-old", str(OLD_SIZE))
    assert not result["ok"] and result["tree_hash_ok"]
    assert result["records"][0]["leaf_matches_tile"] is False


def test_another_key_fails_the_go_check(tlogcheck: Path, published: Path) -> None:
    other = note.Signer.generate("chainaudit.example/test-log").verifier().encode()
    with static_server(published) as url:
        result = check(tlogcheck, url, other)
    assert not result["ok"] and not result["signature_ok"]
    assert "note.Open" in result["error"]
