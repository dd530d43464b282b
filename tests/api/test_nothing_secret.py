"""Nothing secret is served (issue 14): /v1/config shows no credential, /metrics needs a key
unless told otherwise, and the proof fast lane decodes paths exactly as the regular route."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from chainaudit.api.fastlane import proof_record_id
from chainaudit.api.routes.web import publishable_rpc_url
from chainaudit.api.server import ServerThread
from chainaudit.chain.devnet import Devnet, free_port
from chainaudit.core.records import prepare
from tests.api.conftest import Api, issue_keys, make_settings, open_log


@pytest.mark.parametrize(
    ("rpc_url", "shown"),
    [
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
        ("https://rpc.example.org/chain", "https://rpc.example.org/chain"),
        ("http://user:TOKEN@rpc.example.org", None),
        ("http://TOKEN@rpc.example.org", None),
        ("https://rpc.example.org/?apikey=TOKEN", None),
        ("https://rpc.example.org/#TOKEN", None),
        ("https://mainnet.example.io/v3/9aa3d95b3bc440fa88ea12eaa4456161", None),
    ],
)
def test_only_a_credential_free_rpc_url_is_published(rpc_url: str, shown: str | None) -> None:
    assert publishable_rpc_url(None, rpc_url) == shown
    assert publishable_rpc_url("https://public.example.org", rpc_url) == (
        "https://public.example.org"
    )


def test_config_never_shows_the_rpc_credential(tmp_path: Path, anvil: Devnet) -> None:
    port = anvil.rpc_url.rsplit(":", 1)[1]
    secret_url = f"http://operator:s3cr3t-TOKEN@127.0.0.1:{port}"
    settings = make_settings(tmp_path, anvil).model_copy(update={"rpc_url": secret_url})
    with (
        ServerThread(settings, free_port(), run_anchorer=False) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        answer = http.get("/v1/config")
        assert answer.status_code == 200
        assert answer.json()["rpc_url"] is None
        assert "s3cr3t" not in answer.text and "operator:" not in answer.text
        assert answer.json()["chain_id"] == anvil.chain_id  # the service itself still uses it


def test_metrics_need_a_key_unless_public(tmp_path: Path, anvil: Devnet) -> None:
    settings = make_settings(tmp_path / "closed", anvil)
    tokens, _, _ = issue_keys(settings, anvil)
    with ServerThread(settings, free_port(), run_anchorer=False) as server:
        with httpx.Client(base_url=server.url, timeout=30) as anonymous:
            refused = anonymous.get("/metrics")
            assert refused.status_code == 401
            assert refused.headers["content-type"] == "application/problem+json"
        for role, status in (("auditor", 200), ("operator", 200), ("partner", 403)):
            headers = {"Authorization": f"Bearer {tokens[role]}"}
            with httpx.Client(base_url=server.url, timeout=30, headers=headers) as client:
                answer = client.get("/metrics")
                assert answer.status_code == status, (role, answer.text)
                if status == 200:
                    assert "chainaudit_log_size" in answer.text
    public = make_settings(tmp_path / "open", anvil, metrics_public=True)
    with (
        ServerThread(public, free_port(), run_anchorer=False) as server,
        httpx.Client(base_url=server.url, timeout=30) as anonymous,
    ):
        assert anonymous.get("/metrics").status_code == 200


ODD_PATHS = [
    "ops-secret",
    "ops%2Dsecret",
    "ops%252Dsecret",
    "ops%252dsecret",
    "ops%25252Dsecret",
    "%6Fps-secret",
    "%256Fps-secret",
    "a.b",
    "a%2Eb",
    "a%252Eb",
    "x:y@z",
    "x%3Ay%40z",
    "x%253Ay%2540z",
    "a%2Fb",
    "a%252Fb",
    "ops-secret%00",
    "ops-secret%2500",
    "ops-secret%20",
    "ops-secret;x",
    "ops-secret%3Bx",
    "%C3%A9",
    "%25",
    "%",
    "%%32%44",
]


def test_proof_path_decoding_matches_the_router() -> None:
    assert proof_record_id("/v1/records/ops%2Dsecret/proof") == "ops%2Dsecret"
    assert proof_record_id("/v1/records/ops-secret/proof") == "ops-secret"
    assert proof_record_id("/v1/records/a/b/proof") == "a/b"  # an id with "/" (issue 14)
    assert not proof_record_id("/v1/records//proof")
    assert proof_record_id("/v1/records/a/proof/") is None


def _answer(response: httpx.Response) -> tuple[int, Any]:
    body = response.json()
    if response.status_code == 200:
        return 200, body["record_id"]
    return response.status_code, body["type"]


def test_fast_lane_and_regular_route_agree_on_odd_paths(api: Api) -> None:
    ids = ["ops-secret", "ops%2Dsecret", "a.b", "x:y@z", "a/b"]
    records = [
        {
            "id": record_id,
            "kind": "document",
            "timestamp": "2026-11-21T09:30:00Z",
            "actor": "ops",
            "payload": {"n": n},
        }
        for n, record_id in enumerate(ids)
        if "%" not in record_id  # not a valid id: its path can only name another record
    ]
    with api.client("operator") as operator:
        made = operator.post("/v1/records/batch", json={"records": records[:-1]})
        assert made.status_code == 201, made.text
    with open_log(api.settings) as log:  # the API refuses new ids with "/"
        log.append([prepare(records[-1])])
        size = log.size
    with api.client("auditor") as auditor:
        found = 0
        for odd in ODD_PATHS:
            path = f"/v1/records/{odd}/proof"
            fast = auditor.get(httpx.URL(api.url + path))  # no query: the fast lane's case
            regular = auditor.get(httpx.URL(api.url + path + f"?tree_size={size}"))
            assert _answer(fast) == _answer(regular), (odd, fast.text, regular.text)
            found += fast.status_code == 200
        assert found >= 6  # the corpus reaches real records, not only 404s
        leaked = auditor.get(httpx.URL(api.url + "/v1/records/ops%252Dsecret/proof"))
        assert leaked.status_code == 404
