"""Shared set-up of the escrow client and indexer tests: a deployed vault, a token and fresh,
funded accounts for every role, on a real Anvil.

The vault is deployed on the session's Anvil, which enforces EIP-170 (at most 24,576 bytes of
deployed code) like every public chain: no test lifts the limit. A vault grown past it fails
``tests/test_toolchain.py::test_deployable_contracts_fit_the_eip170_code_size_limit`` and
``test_escrow_fits_the_eip170_code_size_limit``, and ``deploy_escrow`` refuses with a message
that says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from chainaudit.chain.chain import Chain
from chainaudit.chain.devnet import Devnet
from chainaudit.chain.escrow import DealParams, EscrowClient, MilestoneParams
from chainaudit.chain.escrow_deploy import EIP170_CODE_LIMIT, deploy_escrow, escrow_artifacts, mint

EIP170_LIMIT = EIP170_CODE_LIMIT
DAY = 24 * 3600
AMOUNT = 1_000 * 10**6  # 1,000 mUSDC
WINDOW = 7 * DAY
TIMEOUT = 14 * DAY
ROLES = (
    "admin",
    "buyer",
    "supplier",
    "arbiter",
    "financier",
    "officer",
    "inspector1",
    "inspector2",
    "inspector3",
    "approver1",
    "approver2",
    "approver3",
    "relayer",
    "stranger",
)


def escrow_code_size() -> int:
    """The deployed size of the compiled ``SupplyChainEscrow``, in bytes."""
    return (len(escrow_artifacts()["SupplyChainEscrow"].deployed_bytecode) - 2) // 2


def rpc(w3: Web3, method: str, *params: Any) -> Any:
    reply = w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in reply, reply
    return reply["result"]


def now(w3: Web3) -> int:
    return int(w3.eth.get_block("latest")["timestamp"])


def travel(w3: Web3, seconds: int) -> None:
    """Move the chain's clock forward and mine a block at the new time."""
    rpc(w3, "evm_increaseTime", seconds)
    rpc(w3, "evm_mine")


@contextmanager
def snapshot(w3: Web3) -> Iterator[None]:
    """Undo everything (blocks, state, time, and transactions still in the pool) done inside
    the block: a transaction left pending across a revert would sit behind a nonce gap and
    stall every later transaction of its sender."""
    snap = rpc(w3, "evm_snapshot")
    try:
        yield
    finally:
        rpc(w3, "evm_revert", snap)
        rpc(w3, "anvil_dropAllTransactions")


def h(text: str) -> bytes:
    """A document hash for tests."""
    return bytes(Web3.keccak(text=text))


@dataclass
class World:
    devnet: Devnet
    chain: Chain
    w3: Web3
    client: EscrowClient
    token: str
    accounts: dict[str, LocalAccount]

    def __getattr__(self, name: str) -> LocalAccount:
        try:
            return self.accounts[name]
        except KeyError as exc:
            raise AttributeError(name) from exc

    def params(self, **overrides: Any) -> DealParams:
        """Standard terms: 2-of-3 inspectors, 7-day window, 14-day dispute timeout, 50 %
        default split, long stop in 180 days."""
        terms: dict[str, Any] = {
            "supplier": self.supplier.address,
            "arbiter": self.arbiter.address,
            "token": self.token,
            "inspectors": [
                self.inspector1.address,
                self.inspector2.address,
                self.inspector3.address,
            ],
            "inspector_threshold": 2,
            "inspection_window": WINDOW,
            "dispute_timeout": TIMEOUT,
            "default_payee_bps": 5_000,
            "long_stop": now(self.w3) + 180 * DAY,
        }
        terms.update(overrides)
        return DealParams(**terms)

    def milestones(
        self, count: int = 2, amount: int = AMOUNT, **extra: Any
    ) -> list[MilestoneParams]:
        start = now(self.w3)
        return [
            MilestoneParams(
                amount=amount,
                due_date=start + 30 * DAY * (i + 1),
                document_hash=h(f"purchase order 42 / {i}"),
                **extra,
            )
            for i in range(count)
        ]


def make_world(devnet: Devnet, *, anchor: str | None = None) -> World:
    """Deploy a vault and a token, fund fresh accounts for every role, register inspectors,
    mint to the buyer and the financier and approve the vault for both."""
    chain = Chain(devnet.rpc_url, timeout=30)
    w3 = chain.w3
    accounts: dict[str, LocalAccount] = {role: Account.create() for role in ROLES}
    for account in accounts.values():
        rpc(w3, "anvil_setBalance", account.address, hex(10**21))
    admin = accounts["admin"]
    deployed = deploy_escrow(
        chain,
        admin,
        anchor,
        compliance_officers=[accounts["officer"].address],
        arbiters=[accounts["arbiter"].address],
    )
    token = deployed["MockStablecoin"].address
    client = EscrowClient(chain, deployed["SupplyChainEscrow"].address)
    for role in ("inspector1", "inspector2", "inspector3"):
        client.register_inspector(admin, accounts[role].address)
    for role in ("buyer", "financier"):
        mint(chain, admin, token, accounts[role].address, 1_000_000 * 10**6)
        client.approve_token(accounts[role], token)
    return World(devnet, chain, w3, client, token, accounts)
