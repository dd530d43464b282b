"""docs/settings.md is generated from `Settings` and stays in sync with it: a setting added,
removed or re-described without regenerating the file fails here."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chainaudit.app.settings import Settings
from chainaudit.app.settings_reference import DOC_PATH, markdown
from chainaudit.chain.toolchain import project_root

REGENERATE = "run `.venv/bin/python -m chainaudit.app.settings_reference --write` and commit"


def test_committed_reference_matches_the_code() -> None:
    assert DOC_PATH.read_text(encoding="utf-8") == markdown(), (
        f"docs/settings.md is stale: {REGENERATE}"
    )


def test_every_setting_is_described_with_its_environment_variable() -> None:
    text = markdown()
    undescribed = [name for name, field in Settings.model_fields.items() if not field.description]
    assert not undescribed, f"give these settings a description=: {undescribed}"
    for name in Settings.model_fields:
        assert f"| `{name}` | `CHAINAUDIT_{name.upper()}` |" in text


def test_the_documented_variable_is_the_one_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAINAUDIT_RPC_TIMEOUT", "3.5")
    monkeypatch.setenv("CHAINAUDIT_OFFICER_KEYS", '["0x' + "11" * 32 + '"]')
    settings = Settings()
    assert settings.rpc_timeout == 3.5
    assert [key.get_secret_value() for key in settings.officer_keys] == ["0x" + "11" * 32]
    assert "| `rpc_timeout` | `CHAINAUDIT_RPC_TIMEOUT` | float, > 0 | `10.0` |" in markdown()


def test_check_mode_exits_zero_when_in_sync_and_the_readme_links_it() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chainaudit.app.settings_reference", "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "(docs/settings.md)" in (project_root() / "README.md").read_text()
