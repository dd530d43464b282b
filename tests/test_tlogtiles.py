"""tlog-tiles paths and entry bundles, as C2SP writes them."""

from __future__ import annotations

import pytest

from chainaudit.core import tlogtiles
from chainaudit.core.errors import InputError
from chainaudit.core.tlogtiles import TileRef


@pytest.mark.parametrize(
    ("ref", "path"),
    [
        (TileRef(0, 0), "tile/0/000"),
        (TileRef(1, 1234067), "tile/1/x001/x234/067"),
        (TileRef(0, 1000, 7), "tile/0/x001/000.p/7"),
        (TileRef(None, 5, 255), "tile/entries/005.p/255"),
        (TileRef(63, 999), "tile/63/999"),
    ],
)
def test_paths_round_trip(ref: TileRef, path: str) -> None:
    assert ref.path() == path
    assert tlogtiles.parse_path(path) == ref
    assert tlogtiles.parse_path("/" + path) == ref


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("tile/0/1", "x001/x234/067"),
        ("tile/00/000", "not a number"),
        ("tile/64/000", "above 63"),
        ("tile/0/000.p/256", "1-255"),
        ("tile/0/000.p/0", "1-255"),
        ("tile/0/000.p/07", "1-255"),
        ("tile/0/x000/001", "leading zero group"),
        ("tiles/0/000", "not a tile path"),
        ("tile/0/x1/000", "x001/x234/067"),
    ],
)
def test_non_canonical_paths_are_refused(path: str, says: str) -> None:
    with pytest.raises(InputError, match=says):
        tlogtiles.parse_path(path)


def test_tiles_of_a_tree() -> None:
    assert tlogtiles.tiles_for(0, 0) == []
    assert tlogtiles.tiles_for(300, 0) == [TileRef(0, 0), TileRef(0, 1, 44)]
    assert tlogtiles.tiles_for(300, 1) == [TileRef(1, 0, 1)]
    assert tlogtiles.tiles_for(300, None) == [TileRef(None, 0), TileRef(None, 1, 44)]
    assert [tlogtiles.levels_for(n) for n in (0, 1, 255, 256, 65535, 65536)] == [0, 1, 1, 2, 2, 3]


def test_entry_bundles() -> None:
    entries = [b"", b"a", bytes(300)]
    bundle = tlogtiles.encode_entries(entries)
    assert bundle[:3] == b"\x00\x00\x00" and tlogtiles.decode_entries(bundle) == entries
    with pytest.raises(InputError, match="inside the entry"):
        tlogtiles.decode_entries(bundle[:-1])
    with pytest.raises(InputError, match="uint16"):
        tlogtiles.encode_entries([bytes(70000)])
    with pytest.raises(InputError, match="1-256 hashes"):
        tlogtiles.split_hashes(bytes(33))
