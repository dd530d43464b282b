"""``chainaudit keys personal-data``: one admin requests the permission for an auditor key, a
second approves it (``chainaudit approvals approve``), one admin withdraws it; other keys are
refused in one line. A real key store and log."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainaudit.log.store import DB_NAME
from chainaudit.service.keys import KeyStore
from tests.officers import issue, requested, run_as


def test_granting_takes_two_admins_and_withdrawing_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    one, two = issue(data, "admin"), issue(data, "admin")
    store = KeyStore(data / DB_NAME)
    auditor = store.create("auditor", name="external auditor")[0]
    partner = store.create(
        "partner", name="supplier", address="0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    )[0]

    assert run_as(monkeypatch, one, data, "keys", "personal-data", auditor.key_id) == 0
    approval = requested(capsys.readouterr().out)
    assert store.get(auditor.key_id).personal_data is False  # a request changes nothing
    assert run_as(monkeypatch, one, data, "approvals", "approve", approval) == 2
    assert "the requester cannot approve" in capsys.readouterr().err
    assert run_as(monkeypatch, two, data, "approvals", "approve", approval) == 0
    assert store.get(auditor.key_id).personal_data is True
    capsys.readouterr()
    assert run_as(monkeypatch, one, data, "keys", "list") == 0
    assert "(reads personal data)" in capsys.readouterr().out

    withdraw = ("keys", "personal-data", "--withdraw", auditor.key_id)
    assert run_as(monkeypatch, one, data, *withdraw) == 0
    assert "withdrew the personal-data permission" in capsys.readouterr().out
    assert store.get(auditor.key_id).personal_data is False

    assert run_as(monkeypatch, one, data, "keys", "personal-data", partner.key_id) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"chainaudit: key {partner.key_id} is a partner key: only active auditor and "
        "regulator keys carry the personal-data permission"
    ]
    store.close()
