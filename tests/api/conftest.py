"""A real API server (uvicorn on a free loopback port) over a fresh data directory, with the
session's Anvil and a fresh AuditAnchor deployment; keys for every role."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from chainaudit.api.server import ServerThread
from chainaudit.chain import Chain
from chainaudit.deploy import deploy_contracts
from chainaudit.devnet import Devnet, free_port
from chainaudit.keys import KeyStore
from chainaudit.settings import Settings
from chainaudit.store import DB_NAME


@dataclass
class Api:
    url: str
    settings: Settings
    tokens: dict[str, str]
    partner_address: str
    other_partner_address: str

    def client(self, role: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def make_settings(tmp: Path, anvil: Devnet, *, escrow: bool = False, **extra: object) -> Settings:
    """Settings over a fresh deployment (with the escrow vault when ``escrow``; the anvil must
    then accept its code size: every contract is built to fit EIP-170)."""
    account = Account.from_key(anvil.accounts[0].private_key)
    deployed = deploy_contracts(
        Chain(anvil.rpc_url), account, escrow=escrow, directory=tmp / "deployments"
    )
    return Settings(
        data_dir=tmp / "data",
        rpc_url=anvil.rpc_url,
        deployments_dir=tmp / "deployments",
        anchor_contract=deployed["AuditAnchor"].address,
        anchorer_key=anvil.accounts[0].private_key,
        max_batch_seconds=3600,
        max_batch_records=1_000_000,
        **extra,  # type: ignore[arg-type]
    )


def issue_keys(settings: Settings, anvil: Devnet) -> tuple[dict[str, str], str, str]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = KeyStore(settings.data_dir / DB_NAME, database_url=settings.log_database_url)
    partner, other = anvil.accounts[3].address, anvil.accounts[4].address
    tokens = {}
    for role in ("admin", "operator", "auditor", "regulator"):
        tokens[role] = store.create(role, name=f"test {role}")[1]
    tokens["partner"] = store.create("partner", name="supplier", address=partner)[1]
    tokens["other_partner"] = store.create("partner", name="other", address=other)[1]
    store.close()
    return tokens, partner, other


@pytest.fixture
def api(tmp_path: Path, anvil: Devnet) -> Iterator[Api]:
    settings = make_settings(tmp_path, anvil)
    tokens, partner, other = issue_keys(settings, anvil)
    with ServerThread(settings, free_port()) as server:
        yield Api(server.url, settings, tokens, partner, other)


@pytest.fixture
def api_with_escrow(tmp_path: Path, anvil: Devnet) -> Iterator[Api]:
    """Like ``api``, with the escrow vault deployed (its indexer then adds records too)."""
    settings = make_settings(tmp_path, anvil, escrow=True)
    tokens, partner, other = issue_keys(settings, anvil)
    with ServerThread(settings, free_port()) as server:
        yield Api(server.url, settings, tokens, partner, other)
