"""Signing keys come only from the environment or an encrypted keystore, and never leak."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account

from chainaudit.app.roles import anchorer_account
from chainaudit.app.settings import Settings
from chainaudit.chain.chain import load_account
from chainaudit.core.errors import ConfigError

KEY = "0x" + "4c" * 32


def test_keystore_round_trip(tmp_path: Path) -> None:
    keystore = tmp_path / "anchorer.json"
    keystore.write_text(json.dumps(Account.encrypt(KEY, "correct horse")))
    account = load_account(keystore=keystore, password="correct horse")
    assert account.address == Account.from_key(KEY).address
    settings = Settings(
        data_dir=tmp_path, anchorer_keystore=keystore, anchorer_password="correct horse"
    )
    assert anchorer_account(settings).address == account.address


def test_bad_keys_are_refused_without_echoing_secrets(tmp_path: Path) -> None:
    keystore = tmp_path / "anchorer.json"
    keystore.write_text(json.dumps(Account.encrypt(KEY, "correct horse")))
    with pytest.raises(ConfigError) as wrong:
        load_account(keystore=keystore, password="battery staple")
    assert "battery" not in str(wrong.value) and KEY[2:] not in str(wrong.value)
    with pytest.raises(ConfigError, match="needs a password"):
        load_account(keystore=keystore)
    with pytest.raises(ConfigError, match="cannot read the keystore"):
        load_account(keystore=tmp_path / "missing.json", password="x")
    bad = "0x" + "zz" * 32
    with pytest.raises(ConfigError) as malformed:
        load_account(private_key=bad)
    assert "zz" not in str(malformed.value)
    with pytest.raises(ConfigError, match="not both"):
        load_account(private_key=KEY, keystore=keystore, password="x")


def test_production_needs_a_configured_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no anchorer key"):
        anchorer_account(
            Settings(data_dir=tmp_path, environment="production", rpc_url="https://rpc.example")
        )
