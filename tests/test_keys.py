"""The key store on a real SQLite file and a real PostgreSQL database: expiry, rotation,
officer addresses, keys kept across a restart, and the in-place upgrade of an SQLite key table
from before expiry."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chainaudit.core.errors import InputError, NotFoundError
from chainaudit.log import database
from chainaudit.service.keys import KeyStore, format_ms, now_ms

OFFICER = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"


@pytest.fixture
def open_store(tmp_path: Path, log_database: str | None) -> Iterator[Callable[[], KeyStore]]:
    """``open_store()``: the key store of one data directory on the test's engine (the
    SQLite file, or a fresh PostgreSQL database), opened anew at each call."""
    opened: list[KeyStore] = []

    def open_() -> KeyStore:
        opened.append(KeyStore(tmp_path / "log.sqlite", database_url=log_database))
        return opened[-1]

    yield open_
    for store in opened:
        store.close()


def test_keys_survive_a_restart_and_live_on_the_chosen_engine(
    tmp_path: Path, log_database: str | None, open_store: Callable[[], KeyStore]
) -> None:
    store = open_store()
    assert store.engine == ("sqlite" if log_database is None else "postgresql")
    key, token = store.create("admin", name="first admin")
    store.close()
    again = open_store()  # a restart: nothing rebuilt, the key still authenticates
    found = again.authenticate(token)
    assert found is not None and found.key_id == key.key_id and again.has_active_admin()
    assert again.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    file = sqlite3.connect(tmp_path / "log.sqlite")
    in_file = file.execute("SELECT 1 FROM sqlite_master WHERE name = 'api_keys'").fetchone()
    file.close()
    assert (in_file is not None) == (log_database is None)
    if log_database is not None:
        db = database.connect(log_database)
        assert db.execute("SELECT count(*) FROM api_keys").fetchone()[0] == 1
        db.close()


def test_an_old_key_table_is_upgraded_in_place_and_its_keys_still_work(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    store = KeyStore(path)
    key, token = store.create("auditor", name="before the upgrade")
    store.close()
    db = sqlite3.connect(path)  # rebuild the table as the first release made it
    with db:
        db.execute("ALTER TABLE api_keys RENAME TO old")
        db.execute(
            "CREATE TABLE api_keys (key_id TEXT PRIMARY KEY, secret_hash BLOB NOT NULL, "
            "name TEXT NOT NULL, role TEXT NOT NULL, address TEXT, created_ms INTEGER NOT NULL, "
            "revoked_ms INTEGER)"
        )
        db.execute(
            "INSERT INTO api_keys SELECT key_id, secret_hash, name, role, address, created_ms, "
            "revoked_ms FROM old"
        )
        db.execute("DROP TABLE old")
    db.close()
    upgraded = KeyStore(path)
    found = upgraded.authenticate(token)
    assert found is not None and found.key_id == key.key_id
    assert (found.expires_ms, found.rotated_ms, found.expired()) == (None, None, False)
    assert found.personal_data is False  # the permission column is added, not granted
    columns = {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(api_keys)")}
    assert {"expires_ms", "rotated_ms"} <= columns
    KeyStore(path).close()  # opening an upgraded store again changes nothing
    upgraded.close()


def test_expiry_and_rotation(open_store: Callable[[], KeyStore]) -> None:
    store = open_store()
    soon = now_ms() + 300
    key, token = store.create("regulator", name="regulator", expires_ms=soon)
    assert not key.expired() and key.expired(soon)
    with pytest.raises(InputError, match="not in the future"):
        store.create("auditor", name="late", expires_ms=now_ms() - 1)
    time.sleep(0.4)
    expired = store.authenticate(token)
    assert expired is not None and expired.expired()  # identified, refused by the caller
    assert expired.expiry_detail() == (
        f"API key {key.key_id} expired at {format_ms(soon)}; ask an admin to rotate it"
    )
    rotated, new_token = store.rotate(key.key_id, expires_ms=now_ms() + 3_600_000)
    assert rotated.key_id == key.key_id and rotated.rotated_ms is not None
    assert store.authenticate(token) is None  # the old secret is refused at once
    fresh = store.authenticate(new_token)
    assert fresh is not None and not fresh.expired()
    store.revoke(key.key_id)
    with pytest.raises(InputError, match="revoked"):
        store.rotate(key.key_id)
    with pytest.raises(NotFoundError):
        store.rotate("000000000000")
    store.close()


def test_officer_keys_may_bind_their_own_account_read_only_keys_may_not(
    open_store: Callable[[], KeyStore],
) -> None:
    store = open_store()
    officer, _ = store.create("operator", name="compliance", address=OFFICER.lower())
    assert (officer.address, officer.officer) == (OFFICER, True)
    assert store.create("admin", name="admin")[0].address is None
    with pytest.raises(InputError, match="only partner and officer"):
        store.create("auditor", name="auditor", address=OFFICER)
    with pytest.raises(InputError, match="needs the Ethereum address"):
        store.create("partner", name="partner")
    assert store.has_active_admin()
    store.close()


def test_the_personal_data_permission_is_for_active_auditor_and_regulator_keys(
    open_store: Callable[[], KeyStore],
) -> None:
    store = open_store()
    auditor, token = store.create("auditor", name="auditor")
    regulator, _ = store.create("regulator", name="regulator")
    partner, _ = store.create("partner", name="supplier", address=OFFICER)
    assert auditor.personal_data is False
    granted = store.set_personal_data(auditor.key_id, True)
    assert granted.personal_data is True
    found = store.authenticate(token)
    assert found is not None and found.personal_data is True
    assert store.set_personal_data(regulator.key_id, True).personal_data is True
    assert store.set_personal_data(auditor.key_id, False).personal_data is False
    with pytest.raises(InputError, match="only auditor and regulator keys"):
        store.set_personal_data(partner.key_id, True)
    store.revoke(regulator.key_id)
    with pytest.raises(InputError, match="revoked"):
        store.set_personal_data(regulator.key_id, True)
    with pytest.raises(NotFoundError):
        store.set_personal_data("0123456789ab", True)
