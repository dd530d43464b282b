"""``chainaudit erase`` (two officers), ``retention run`` and ``master-key generate|rotate``
against a real log in a data directory."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from chainaudit.cli import main
from chainaudit.log import datakeys
from chainaudit.log.datakeys import AtRest
from chainaudit.log.store import Log
from tests.officers import issue, requested, run_as

SECRET = "Zhang San 13800138000"


def write_records(path: Path, count: int = 4, *, timestamp: str = "2026-01-05T10:00:00Z") -> Path:
    lines = [
        json.dumps(
            {
                "id": f"tx-{i}",
                "kind": "transaction",
                "timestamp": timestamp,
                "actor": "supplier:acme",
                "payload": {"contact": f"{SECRET} #{i}", "amount": 100 + i},
            }
        )
        for i in range(count)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    assert main(["--data-dir", str(data), "ingest", "-q", str(write_records(tmp_path / "r"))]) == 0
    return data


def test_erasure_needs_a_second_officer_and_then_is_done_and_recorded(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = issue(data_dir), issue(data_dir, "admin")
    capsys.readouterr()
    code = run_as(
        monkeypatch, first, data_dir, "erase", "tx-1", "--reason", "asked", "--basis", "PIPL 47"
    )
    assert code == 0
    approval_id = requested(capsys.readouterr().out)
    with Log.open(data_dir) as log:
        assert log.entry("tx-1").body is not None  # a request alone changes nothing
    assert run_as(monkeypatch, first, data_dir, "approvals", "approve", approval_id) == 2
    assert "cannot approve" in capsys.readouterr().err
    assert run_as(monkeypatch, second, data_dir, "approvals", "approve", approval_id) == 0
    assert "erasure:1" in capsys.readouterr().out
    with Log.open(data_dir) as log:
        assert log.entry("tx-1").body is None and log.entry("tx-2").body is not None
        payload = json.loads(log.entry("erasure:1").body or b"")["payload"]
    assert payload["reason"] == "asked" and payload["basis"] == "PIPL 47"
    assert payload["requested_by"] != payload["approved_by"]
    assert payload["approval_id"] == approval_id
    assert main(["--data-dir", str(data_dir), "audit"]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["erase", "no-such", "--reason", "r", "--basis", "b"], "no record"),
        (["erase", "tx-0", "--reason", " ", "--basis", "b"], "reason must be"),
        (["erase", "approval:x", "--reason", "r", "--basis", "b"], "no record"),
    ],
)
def test_bad_erasure_requests_exit_2(
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    token = issue(data_dir)
    assert run_as(monkeypatch, token, data_dir, *argv) == 2
    assert message in capsys.readouterr().err


def test_erase_without_an_officer_key_or_reason_is_refused(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run_as(monkeypatch, None, data_dir, "erase", "tx-0", "--reason", "r", "--basis", "b") == 2
    )
    assert "two officers" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["--data-dir", str(data_dir), "erase", "tx-0", "--basis", "b"])
    assert exited.value.code == 2


def test_retention_run_reports_and_is_idempotent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    main(["--data-dir", str(data), "ingest", "-q", str(write_records(tmp_path / "r", 3))])
    assert main(["--data-dir", str(data), "retention", "run"]) == 2
    assert "no data policy" in capsys.readouterr().err
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"kinds": {"transaction": {"retention_days": 30}}}))
    monkeypatch.setenv("CHAINAUDIT_DATA_POLICY_FILE", str(policy))
    now = str(1_800_000_000_000)  # 2027: every record is older than 30 days
    argv = ["--data-dir", str(data), "retention", "run", "--now-ms", now]
    capsys.readouterr()
    assert main([*argv, "--batch", "2"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["erased"], first["remaining"]) == (2, 1)
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["erased"] == 1
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["erased"] == 0
    assert main(["--data-dir", str(data), "audit"]) == 0


def test_master_key_rotation_rewraps_the_keys_and_retires_the_old_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"kinds": {"transaction": {"encrypt": True}}}))
    monkeypatch.setenv("CHAINAUDIT_DATA_POLICY_FILE", str(policy))
    records = write_records(tmp_path / "r")
    monkeypatch.delenv("CHAINAUDIT_MASTER_KEY", raising=False)
    assert main(["--data-dir", str(data), "ingest", "-q", str(records)]) == 2
    assert "no master key is configured" in capsys.readouterr().err

    assert main(["master-key", "generate"]) == 0
    old = capsys.readouterr().out.strip()
    assert len(base64.b64decode(old)) == 32
    monkeypatch.setenv("CHAINAUDIT_MASTER_KEY", old)
    assert main(["--data-dir", str(data), "ingest", "-q", str(records)]) == 0
    assert SECRET.encode() not in (data / "log.sqlite").read_bytes()

    new = base64.b64encode(os.urandom(32)).decode()
    key_file = tmp_path / "new.key"
    key_file.write_text(new + "\n")
    capsys.readouterr()
    rotate = ["--data-dir", str(data), "master-key", "rotate", "--new-key-file", str(key_file)]
    assert main(rotate) == 0
    assert "rewrapped 4 data key(s)" in capsys.readouterr().out
    assert old not in (data / datakeys.KEYS_DB).read_text("latin-1")

    assert main(["--data-dir", str(data), "audit"]) == 2  # the old key no longer opens them
    assert "wrapped by master key" in capsys.readouterr().err
    monkeypatch.delenv("CHAINAUDIT_MASTER_KEY")
    monkeypatch.setenv("CHAINAUDIT_MASTER_KEY_FILE", str(key_file))
    assert main(["--data-dir", str(data), "audit"]) == 0
    with Log.open(data, at_rest=AtRest(base64.b64decode(new))) as log:
        assert SECRET in (log.entry("tx-3").body or b"").decode()

    bad = tmp_path / "bad.key"
    bad.write_text(base64.b64encode(b"short").decode())
    assert main(["--data-dir", str(data), "master-key", "rotate", "--new-key-file", str(bad)]) == 2
    assert "5 bytes after base64 decoding" in capsys.readouterr().err


def test_vacuum_finishes_an_erasure_on_disk(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`chainaudit vacuum` rebuilds the log file and truncates the WALs: after it, no copy of
    the erased payload is in any file of the data directory."""
    first, second = issue(data_dir), issue(data_dir, "admin")
    capsys.readouterr()
    erase = ["erase", "tx-1", "--reason", "asked", "--basis", "GDPR Art. 17"]
    assert run_as(monkeypatch, first, data_dir, *erase) == 0
    approval_id = requested(capsys.readouterr().out)
    assert run_as(monkeypatch, second, data_dir, "approvals", "approve", approval_id) == 0
    capsys.readouterr()
    assert main(["--data-dir", str(data_dir), "vacuum", "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done == {"vacuumed": True, "log_wal_truncated": True, "keys_wal_truncated": True}
    for path in data_dir.iterdir():
        if path.is_file():
            assert f"{SECRET} #1".encode() not in path.read_bytes(), path
    with Log.open(data_dir) as log:
        assert log.entry("tx-2").body is not None and log.audit().clean
