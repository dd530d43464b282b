"""Shared pytest fixtures: a real Anvil devnet for the whole session, and web3 bound to it;
a real PostgreSQL server for the session (:mod:`tests.pgserver`), started on first use.

Anvil and PostgreSQL run on free loopback ports (never 8545 / 5432) and are stopped when the
session ends. Extend here only with fixtures that several test packages need.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from web3 import HTTPProvider, Web3

from chainaudit.chain.devnet import Devnet, free_port
from chainaudit.log.store import Log
from tests.escrow_world import World, make_world, snapshot
from tests.pgserver import URL_ENV, Databases, PgServer


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


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[Databases]:
    """Fresh databases on the session's PostgreSQL: a private server started now, or the
    one ``CHAINAUDIT_TEST_DATABASE_URL`` names."""
    existing = os.environ.get(URL_ENV)
    if existing:
        yield Databases(existing)
        return
    with PgServer() as server:
        yield Databases(server.url)


@pytest.fixture
def database_url(pg_databases: Databases) -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database (a schema of its own), dropped after."""
    url = pg_databases.create()
    yield url
    pg_databases.drop(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def log_database(request: pytest.FixtureRequest) -> str | None:
    """Where a test's log lives, once per engine: ``None`` for the SQLite file in the data
    directory, else a fresh PostgreSQL database's URL (``Log.open(dir, database_url=...)``)."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("database_url")
    return url


@pytest.fixture
def log_at(
    log_database: str | None, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Log]]:
    """``log_at(data_dir, **options)``: ``Log.open`` on the test's engine (see
    :func:`log_database`); on PostgreSQL each data directory gets a fresh database of its own,
    the same one each time it is opened again."""
    urls: dict[Path, str] = {}
    databases: Databases | None = None
    if log_database is not None:
        databases = request.getfixturevalue("pg_databases")

    def open_log(data_dir: Path, **options: Any) -> Log:
        key = Path(data_dir).resolve()
        if databases is not None and key not in urls:
            urls[key] = log_database if not urls else databases.create()
        return Log.open(data_dir, database_url=urls.get(key), **options)

    yield open_log
    if databases is not None:
        for url in list(urls.values())[1:]:
            databases.drop(url)
