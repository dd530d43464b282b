"""A real API server (uvicorn on a free loopback port) over a fresh data directory, with the
session's Anvil and a fresh AuditAnchor deployment; keys for every role.

Every test here runs once per engine: ``[sqlite]`` with the log (and the API keys, record
index, risk tables, data keys) in ``data_dir/log.sqlite``, ``[postgresql]`` with them in a
fresh PostgreSQL schema on the session's server (the ``engine`` fixture, autouse). Settings
from :func:`make_settings` name the test's engine; :func:`open_log` and :func:`key_store` open
the stores those settings name. A module or test marked ``one_engine("why")`` is not
parametrised here: it runs once on SQLite, unless it passes ``database_url`` itself or
parametrises ``engine`` itself (indirectly: ``test_schemathesis.py``'s roles).

Once per engine: every module but these (``one_engine``): ``test_workers.py`` (it
parametrises its own engine), ``test_postgresql_state.py`` (about PostgreSQL itself), the
CLI ingest test in ``test_minimum_fields.py`` (no API; asserts no ``log.sqlite`` is made);
``test_schemathesis.py`` runs every role on SQLite and the admin on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from chainaudit.api.server import ServerThread
from chainaudit.app.deploy import deploy_contracts
from chainaudit.app.settings import Settings
from chainaudit.chain.chain import Chain
from chainaudit.chain.devnet import Devnet, free_port
from chainaudit.log import bundles, database
from chainaudit.log.store import DB_NAME, Log
from chainaudit.service.keys import KeyStore
from tests.pgserver import Databases

ENGINES = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "one_engine(reason): not parametrised by engine here (SQLite unless the test names "
        "database_url or parametrises engine itself); the reason says why",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each test once per engine, unless it (or its module) is marked ``one_engine``."""
    if (
        "engine" in metafunc.fixturenames
        and metafunc.definition.get_closest_marker("one_engine") is None
    ):
        metafunc.parametrize("engine", ENGINES, indirect=True)


@dataclass
class Engine:
    """The test's engine: ``databases`` is ``None`` on SQLite. Each data directory gets its
    own database (the first the ``database_url`` fixture's, then fresh ones), the same one
    each time it is named again."""

    name: str
    first_url: str | None = None
    databases: Databases | None = None
    urls: dict[Path, str] = field(default_factory=dict)

    def url_for(self, data_dir: Path) -> str | None:
        """The PostgreSQL URL of ``data_dir``'s stores, or ``None`` on SQLite."""
        if self.databases is None:
            return None
        key = Path(data_dir).resolve()
        if key not in self.urls:
            self.urls[key] = (
                self.first_url
                if self.first_url is not None and not self.urls
                else self.databases.create()
            )
        return self.urls[key]


_current = Engine("sqlite")


@pytest.fixture(autouse=True)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """The engine of this test's stores (see the module docstring); restored after. On
    PostgreSQL ``CHAINAUDIT_DATABASE_URL`` names the first database too, for the settings a
    test builds itself and the processes it starts with the environment."""
    global _current  # noqa: PLW0603
    name = getattr(request, "param", "sqlite")
    chosen = Engine(name)
    if name == "postgresql":
        chosen.first_url = request.getfixturevalue("database_url")
        chosen.databases = request.getfixturevalue("pg_databases")
        monkeypatch.setenv("CHAINAUDIT_DATABASE_URL", chosen.first_url)
    _current = chosen
    try:
        yield chosen
    finally:
        _current = Engine("sqlite")
        if chosen.databases is not None:
            for url in chosen.urls.values():
                if url != chosen.first_url:
                    chosen.databases.drop(url)


def database_url_for(data_dir: Path) -> str | None:
    """The PostgreSQL URL the test's engine gives ``data_dir``, or ``None`` (SQLite)."""
    return _current.url_for(data_dir)


def open_log(where: Settings | Path, **options: object) -> Log:
    """``Log.open`` of the log that settings (or a data directory given to
    :func:`make_settings`) name, on the test's engine."""
    if isinstance(where, Settings):
        return Log.open(where.data_dir, database_url=where.log_database_url, **options)  # type: ignore[arg-type]
    return Log.open(where, database_url=database_url_for(where), **options)  # type: ignore[arg-type]


def stored_bodies(settings: Settings) -> dict[str, bytes]:
    """The bodies of the records as the log of ``settings`` holds them at rest (its bundle
    rows decoded, nothing unsealed), by record id, on either engine."""
    location = settings.log_database_url or settings.data_dir / DB_NAME
    db = database.connect_reader(location)
    try:
        with db.read():
            rows = db.execute("SELECT records FROM bundles ORDER BY id").fetchall()
    finally:
        db.close()
    return {r.record_id: r.body for (blob,) in rows for r in bundles.decode(bytes(blob))}


def key_store(settings: Settings) -> KeyStore:
    """The API key store that ``settings`` name (its data directory created if missing)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return KeyStore(settings.data_dir / DB_NAME, database_url=settings.log_database_url)


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
    then accept its code size: every contract is built to fit EIP-170), with the stores on the
    test's engine unless ``extra`` names ``database_url``."""
    if "database_url" not in extra:
        extra["database_url"] = database_url_for(tmp / "data")
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
    store = key_store(settings)
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
