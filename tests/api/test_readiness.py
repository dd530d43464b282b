"""/readyz checks that the configured contracts have code and answer, and names the one that
does not (issue 14: after a devnet restart it said "ok" while every bundle failed)."""

from __future__ import annotations

from pathlib import Path

import httpx
from web3 import Web3

from chainaudit.api.server import ServerThread
from chainaudit.app.settings import Settings
from chainaudit.chain.devnet import Devnet, free_port
from tests.api.conftest import make_settings

NOWHERE = Web3.to_checksum_address("0x" + "12" * 20)  # no code on the devnet


def _ready(settings: Settings) -> httpx.Response:
    with (
        ServerThread(settings, free_port(), run_anchorer=False) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        return http.get("/readyz")


def test_ready_when_every_contract_answers(tmp_path: Path, anvil: Devnet) -> None:
    settings = make_settings(tmp_path, anvil, escrow=True)
    answer = _ready(settings)
    assert answer.status_code == 200, answer.text
    assert answer.json()["checks"] == {
        "database": "ok",
        "chain": "ok",
        "AuditAnchor": "ok",
        "SupplyChainEscrow": "ok",
    }


def test_an_anchor_address_without_code_is_not_ready(tmp_path: Path, anvil: Devnet) -> None:
    settings = make_settings(tmp_path, anvil).model_copy(update={"anchor_contract": NOWHERE})
    answer = _ready(settings)
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["checks"]["chain"] == "ok"
    assert problem["checks"]["AuditAnchor"].startswith(f"failed: no contract code at {NOWHERE}")
    assert f"AuditAnchor: failed: no contract code at {NOWHERE}" in problem["detail"]


def test_an_escrow_address_without_code_is_named(tmp_path: Path, anvil: Devnet) -> None:
    settings = make_settings(tmp_path, anvil, escrow_contract=NOWHERE)
    answer = _ready(settings)
    assert answer.status_code == 503
    checks = answer.json()["checks"]
    assert checks["AuditAnchor"] == "ok"
    assert checks["SupplyChainEscrow"].startswith(f"failed: no contract code at {NOWHERE}")
