"""``GET /tile/...`` on a real server (c2sp.org/tlog-tiles): the bytes the store gives, content
type, cache headers, gzip for entry bundles, 400 and 404 problems, ``tiles_entries`` off."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chainaudit.api.server import ServerThread
from chainaudit.app.settings import Settings
from chainaudit.chain.devnet import free_port
from chainaudit.core import tlogtiles
from chainaudit.log.store import Log
from tests.interop.tiled import Tiled, make_tiled, serving


@pytest.fixture(scope="module")
def tiled(tmp_path_factory: pytest.TempPathFactory) -> Tiled:
    return make_tiled(tmp_path_factory.mktemp("tiled"), size=70_000)


@pytest.fixture(scope="module")
def url(tiled: Tiled) -> Iterator[str]:
    with serving(tiled) as served:
        yield served


def test_tiles_are_the_stored_bytes_with_the_spec_headers(tiled: Tiled, url: str) -> None:
    paths = {  # the spec's own example: a tree of 70,000 entries
        "tile/0/272": (0, 272, 256),
        "tile/0/273.p/112": (0, 273, 112),
        "tile/1/000": (1, 0, 256),
        "tile/1/001.p/17": (1, 1, 17),
        "tile/2/000.p/1": (2, 0, 1),
        "tile/0/001.p/9": (0, 1, 9),  # a partial whose full tile exists (the spec allows it)
    }
    with Log.open(tiled.data_dir) as log, httpx.Client(base_url=url) as client:
        for path, (level, index, width) in paths.items():
            response = client.get(f"/{path}")
            assert response.status_code == 200, (path, response.text)
            assert response.headers["content-type"] == "application/octet-stream"
            assert response.content == log.hash_tile(level, index, width)
            assert len(response.content) == 32 * width
            cache = response.headers["cache-control"]
            if width == 256:
                assert cache == "public, max-age=31536000, immutable"
            else:
                assert "immutable" not in cache and "max-age=60" in cache
        full = client.get("/tile/entries/272", headers={"Accept-Encoding": "gzip"})
        assert full.headers["content-encoding"] == "gzip"  # httpx decoded it
        assert full.content == log.entry_bundle(272)
        # Not immutable: an erasure withdraws a bundle, and caches must let it go soon.
        assert full.headers["cache-control"] == "public, max-age=300"
        plain = client.get("/tile/entries/273.p/112", headers={"Accept-Encoding": "identity"})
        assert plain.headers["cache-control"] == "public, max-age=300"
        assert "content-encoding" not in plain.headers
        assert plain.content == log.entry_bundle(273, 112)
        assert len(tlogtiles.decode_entries(plain.content)) == 112
        assert gzip.decompress(gzip.compress(plain.content)) == plain.content


@pytest.mark.parametrize(
    "path",
    ["tile/0/01", "tile/00/000", "tile/0/000.p/256", "tile/0/000.p/0", "tile/64/000", "tile/a/1"],
)
def test_a_malformed_path_is_400(url: str, path: str) -> None:
    response = httpx.get(f"{url}/{path}")
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/invalid-tile-path")


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/273",
        "tile/0/273.p/113",
        "tile/1/001",
        "tile/2/000",
        "tile/3/000.p/1",
        "tile/entries/274.p/1",
    ],
)
def test_a_tile_outside_the_tree_is_404(url: str, path: str) -> None:
    response = httpx.get(f"{url}/{path}")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_leaf_hashes_only_when_entries_are_off(tiled: Tiled) -> None:
    with serving(tiled, tiles_entries=False) as url:
        refused = httpx.get(f"{url}/tile/entries/000")
        assert refused.status_code == 404
        assert refused.json()["type"].endswith("/entries-not-published")
        assert httpx.get(f"{url}/tile/0/000").status_code == 200


def test_tiles_need_no_key_and_follow_growth(tmp_path: Path) -> None:
    tiled = make_tiled(tmp_path, size=300)
    with serving(tiled) as url:
        assert httpx.get(f"{url}/tile/0/001.p/44").status_code == 200
        assert httpx.get(f"{url}/tile/0/001").status_code == 404
        with Log.open(tiled.data_dir) as log:
            from tests.test_tiles import leaf_records  # noqa: PLC0415

            log.append(leaf_records(600)[300:])
        assert httpx.get(f"{url}/tile/0/001").status_code == 200


def test_the_fast_lane_answers_like_the_route(tiled: Tiled) -> None:
    from chainaudit.api.app import create_app  # noqa: PLC0415
    from chainaudit.api.routes.tiles import TileFastLane  # noqa: PLC0415

    with_lane = create_app(tiled.settings(), run_anchorer=False)
    route_only = create_app(tiled.settings(), run_anchorer=False)
    route_only.user_middleware = [
        m for m in route_only.user_middleware if m.cls is not TileFastLane
    ]
    assert len(route_only.user_middleware) == len(with_lane.user_middleware) - 1
    paths = ["tile/0/000", "tile/1/001.p/17", "tile/entries/005", "tile/entries/273.p/112"]

    async def compare() -> None:
        # The tile reads need no started services (no lifespan): ASGI in-process.
        fast = httpx.AsyncClient(transport=httpx.ASGITransport(with_lane), base_url="http://t")
        regular = httpx.AsyncClient(transport=httpx.ASGITransport(route_only), base_url="http://t")
        async with fast, regular:
            for path in paths:
                for encoding in ("gzip", "identity"):
                    headers = {"Accept-Encoding": encoding}
                    a = await fast.get(f"/{path}", headers=headers)
                    b = await regular.get(f"/{path}", headers=headers)
                    assert a.status_code == b.status_code == 200
                    assert a.content == b.content
                    for name in ("content-type", "cache-control", "content-encoding", "vary"):
                        assert a.headers.get(name) == b.headers.get(name), (path, name)

    asyncio.run(compare())


def test_entries_are_off_by_default_and_private_kinds_never_served(
    tiled: Tiled, tmp_path: Path
) -> None:
    """Entry bundles are readable by anyone, outside the API's visibility rules: off unless the
    operator turns them on, and even then a bundle holding a record of a kind the data policy
    keeps private (personal fields, or encrypted at rest) is not served."""
    with ServerThread(
        Settings(data_dir=tiled.data_dir, rpc_url="http://127.0.0.1:9"),
        free_port(),
        run_anchorer=False,
    ) as server:
        assert httpx.get(f"{server.url}/tile/entries/000").status_code == 404
        assert httpx.get(f"{server.url}/tile/0/000").status_code == 200
    with Log.open(tiled.data_dir) as log:
        kind = log.entry_at(0).kind
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"kinds": {kind: {"personal": ["/lot"]}}}))
    with serving(tiled, data_policy_file=policy) as url:
        withheld = httpx.get(f"{url}/tile/entries/000")
        assert withheld.status_code == 404
        assert f"kind '{kind}', which the data policy keeps private" in withheld.text
        assert httpx.get(f"{url}/tile/0/000").status_code == 200
