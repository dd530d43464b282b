"""One JSON scheme for the API, the CLI and bundles (issue 14, ``docs/json.md``): hashes in
``0x``-hex everywhere, a bundle's names for the same things, and ``/v1/anchors`` paged like
``/v1/records``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import httpx

from tests.api.conftest import Api

HASH = re.compile(r"^0x[0-9a-f]{64}$")
BARE = re.compile(r"^[0-9a-f]{64}$")


def _bare(value: object, where: str = "$") -> list[str]:
    """Hashes written without ``0x``, outside record content (hashed as it was written)."""
    if isinstance(value, dict):
        return [f for k, v in value.items() if k != "record" for f in _bare(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [f for i, v in enumerate(value) for f in _bare(v, f"{where}[{i}]")]
    return [where] if isinstance(value, str) and BARE.match(value) else []


def _anchor(client: httpx.Client, records: list[dict[str, object]]) -> None:
    """Append ``records`` and wait until an anchor covering them is confirmed."""
    assert client.post("/v1/records/batch", json={"records": records}).status_code == 201
    size = client.get("/v1/checkpoints/latest").json()["tree_size"]
    assert client.post("/v1/anchors").status_code == 202
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        latest = client.get("/v1/checkpoints/latest").json()["latest_anchor"]
        if latest and latest["tree_size"] >= size and latest["status"] in ("confirmed", "final"):
            return
        time.sleep(0.2)
    raise AssertionError("the anchor did not confirm")


def _records(start: int, count: int) -> list[dict[str, object]]:
    return [
        {
            "id": f"n-{i}",
            "kind": "document",
            "timestamp": "2026-11-21T09:30:00Z",
            "actor": "inspector:sgs",
            "payload": {"lot": i},
        }
        for i in range(start, start + count)
    ]


def test_api_cli_and_bundle_share_names_and_0x_hashes(api: Api) -> None:
    with api.client("operator") as client:
        _anchor(client, _records(0, 4))
        _anchor(client, _records(4, 3))
        _anchor(client, _records(7, 2))
        documents = {
            path: client.get(path)
            for path in (
                "/v1/records/n-1",
                "/v1/records/n-1/proof",
                "/v1/records/n-1/bundle",
                "/v1/records?limit=5",
                "/v1/checkpoints/latest",
                "/v1/consistency?from_size=2",
                "/v1/anchors",
            )
        }
        pages = [client.get("/v1/anchors", params={"limit": 2}).json()]
        while pages[-1]["next_cursor"] is not None:
            cursor = pages[-1]["next_cursor"]
            pages.append(client.get("/v1/anchors", params={"limit": 2, "cursor": cursor}).json())
        refused = client.get("/v1/anchors", params={"cursor": 0})
    for path, response in documents.items():
        assert response.status_code == 200, (path, response.text)
        assert _bare(response.json()) == [], (path, _bare(response.json()))

    # /v1/anchors pages like /v1/records: newest first, every anchor once
    everything = documents["/v1/anchors"].json()
    assert set(everything) == {"items", "next_cursor"} and everything["next_cursor"] is None
    ids = [a["id"] for a in everything["items"]]
    assert len(ids) >= 3 and ids == sorted(ids, reverse=True)
    assert [a["id"] for page in pages for a in page["items"]] == ids
    assert all(len(page["items"]) <= 2 for page in pages) and len(pages) >= 2
    assert all(HASH.match(a["root"]) for a in everything["items"])
    assert refused.status_code == 422

    # the inclusion proof is a bundle without the record and the anchor, by the same names
    proof = documents["/v1/records/n-1/proof"].json()
    bundle = documents["/v1/records/n-1/bundle"].json()
    assert set(proof) == {
        "record_id", "leaf_index", "leaf_hash", "tree_size", "inclusion_proof", "checkpoint"
    }  # fmt: skip
    assert (
        proof["leaf_hash"]
        == bundle["leaf_hash"]
        == documents["/v1/records/n-1"].json()["leaf_hash"]
    )
    assert HASH.match(proof["checkpoint"]["root"])
    assert documents["/v1/checkpoints/latest"].json()["root"] == proof["checkpoint"]["root"]

    # and the CLI prints the very same document for the same log
    env = {
        "PATH": "/usr/bin:/bin",
        "CHAINAUDIT_DATA_DIR": str(api.settings.data_dir),
    }
    if api.settings.log_database_url is not None:  # the CLI is told where the log is
        env["CHAINAUDIT_DATABASE_URL"] = api.settings.log_database_url
    cli = subprocess.run(
        [sys.executable, "-m", "chainaudit", "proof", "n-1", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == proof
