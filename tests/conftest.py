"""Shared pytest fixtures: a real Anvil devnet for the whole session, and web3 bound to it.

Anvil runs on a free loopback port (never 8545) and is stopped when the session ends. Extend
here only with fixtures that several test packages need.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from web3 import HTTPProvider, Web3

from chainaudit.devnet import Devnet, free_port
from tests.escrow_world import World, make_world, snapshot


@pytest.fixture(scope="session")
def anvil() -> Iterator[Devnet]:
    """A running Anvil devnet (``.rpc_url``, ``.chain_id``, ``.accounts``) for the session."""
    with Devnet(port=free_port()) as devnet:
        yield devnet


@pytest.fixture(scope="session")
def w3(anvil: Devnet) -> Web3:
    """A web3 client of the session's Anvil."""
    return Web3(HTTPProvider(anvil.rpc_url, request_kwargs={"timeout": 60}))


@pytest.fixture(scope="module")
def escrow_base(anvil: Devnet) -> World:
    """A deployed escrow vault, a token and funded accounts for every role (one per module)."""
    return make_world(anvil)


@pytest.fixture
def world(escrow_base: World) -> Iterator[World]:
    """The module's escrow world, with everything a test does undone afterwards."""
    with snapshot(escrow_base.w3):
        yield escrow_base
