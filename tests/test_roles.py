"""Role keys are resolved in one place (:mod:`chainaudit.app.roles`), checked once by Settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from eth_account import Account

from chainaudit.app import roles
from chainaudit.app.context import rules_path
from chainaudit.app.deploy import DEVNET_PARTIES
from chainaudit.app.settings import DEVNET_MNEMONIC, load_settings
from chainaudit.chain.devnet import derive_accounts
from chainaudit.core.errors import ConfigError

DEVNET = derive_accounts(DEVNET_MNEMONIC, 10)
OWN_KEY = "0x" + "42" * 32
PACKAGE = Path(__file__).resolve().parents[1] / "chainaudit"


@pytest.mark.parametrize(
    ("field", "role"),
    [
        ("compliance_key", "compliance"),
        ("pauser_key", "pauser"),
        ("clearance_key", "clearance"),
        ("anchorer_key", "anchorer"),
    ],
)
def test_production_refuses_a_devnet_key_for_every_role(field: str, role: str) -> None:
    # The API once took a devnet compliance key in production that the CLI refused.
    devnet_key = DEVNET[DEVNET_PARTIES["compliance"]].private_key
    with pytest.raises(ConfigError, match=f"the {role} key must not be a public devnet key"):
        load_settings(environment="production", **{field: devnet_key})
    assert load_settings(environment="development", **{field: devnet_key}) is not None


def test_production_refuses_a_devnet_officer_key_among_its_own() -> None:
    with pytest.raises(ConfigError, match="the officer key must not be a public devnet key"):
        load_settings(environment="production", officer_keys=[OWN_KEY, DEVNET[6].private_key])
    settings = load_settings(environment="production", officer_keys=[OWN_KEY])
    own = Account.from_key(OWN_KEY).address
    assert roles.officer_account(settings, own).address == own


def test_role_keys_come_from_the_environment_through_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHAINAUDIT_PAUSER_KEY", OWN_KEY)
    settings = load_settings(environment="production")
    assert roles.operator_account(settings, "pauser").address == Account.from_key(OWN_KEY).address
    with pytest.raises(ConfigError, match="no compliance key: set CHAINAUDIT_COMPLIANCE_KEY"):
        roles.operator_account(settings, "compliance")
    assert roles.compliance_account(settings) is None
    assert roles.clearance_account(settings) is None
    with pytest.raises(ConfigError, match="no anchorer key"):
        roles.anchorer_account(settings)


def test_development_acts_with_the_devnets_accounts_for_each_role() -> None:
    settings = load_settings(environment="development")
    operator, compliance = DEVNET[DEVNET_PARTIES["operator"]], DEVNET[DEVNET_PARTIES["compliance"]]
    assert roles.anchorer_account(settings).address == operator.address
    assert roles.operator_account(settings, "pauser").address == operator.address
    assert roles.operator_account(settings, "compliance").address == compliance.address
    assert roles.compliance_account(settings) is not None
    assert roles.compliance_account(settings).address == compliance.address  # type: ignore[union-attr]
    assert roles.clearance_account(settings) is not None
    with pytest.raises(ConfigError, match="no operating role 'arbiter'"):
        roles.operator_account(settings, "arbiter")


def test_the_rules_file_setting_is_honoured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # gate.py once read a `rules_file` setting that did not exist: the variable was ignored.
    monkeypatch.setenv("CHAINAUDIT_DATA_DIR", str(tmp_path / "data"))
    assert rules_path(load_settings()) == tmp_path / "data" / "rules.toml"
    monkeypatch.setenv("CHAINAUDIT_RULES_FILE", str(tmp_path / "rules.toml"))
    assert rules_path(load_settings()) == tmp_path / "rules.toml"
    assert rules_path(load_settings(), tmp_path / "x.toml") == tmp_path / "x.toml"


def test_no_module_but_roles_reads_a_role_key() -> None:
    pattern = re.compile(
        r"\b(compliance|pauser|clearance|anchorer)_key\.get_secret_value|officer_keys\b"
    )
    readers = sorted(
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    )
    assert readers == ["app/roles.py", "app/settings.py"]
