"""The log commands as a user runs them: real subprocesses, real files, exit codes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from chainaudit.core import merkle
from chainaudit.log import ingest
from chainaudit.log.store import Log
from tests.tamper import replace_in_body


def run(data_dir: Path, *args: str, check_rc: int | None = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "chainaudit", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check_rc is not None:
        assert result.returncode == check_rc, result.stderr + result.stdout
    return result


def record(i: int, **change: Any) -> dict[str, Any]:
    return {
        "id": f"inv-{i:07d}",
        "kind": "transaction",
        "timestamp": "2026-11-21T09:30:00Z",
        "actor": "supplier:globex",
        "payload": {"amount": i * 100, "currency": "USD", "invoice": f"INV-{i}"},
        **change,
    }


def write_jsonl(path: Path, records: list[dict[str, Any]], extra: Sequence[str] = ()) -> Path:
    lines = [json.dumps(r) for r in records] + list(extra)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ingest_proof_audit_round_trip(tmp_path: Path) -> None:
    data = tmp_path / "data"
    source = write_jsonl(tmp_path / "in.jsonl", [record(i) for i in range(25)])
    out = run(data, "ingest", str(source)).stdout
    with Log.open(data) as log:
        root = log.root()
        stamped = {json.loads(e.body or b"")["submitter"] for e in log.entries()}
    assert stamped == {ingest.local_submitter()}  # the user who ran it, inside the hashed bytes
    assert f"already present) as {ingest.local_submitter()} in " in out
    assert "ingested 25 records (25 new" in out and f"root {root.hex()}" in out
    assert "tree size 25" in out

    proof = json.loads(run(data, "proof", "inv-0000011").stdout)
    assert proof["leaf_index"] == 11 and proof["tree_size"] == 25
    # the names and 0x-hex of a bundle (docs/json.md, issue 14)
    assert proof["checkpoint"] == {"tree_size": 25, "root": "0x" + root.hex()}
    merkle.verify_inclusion(
        bytes.fromhex(proof["leaf_hash"].removeprefix("0x")),
        proof["leaf_index"],
        proof["tree_size"],
        [bytes.fromhex(h.removeprefix("0x")) for h in proof["inclusion_proof"]],
        root,
    )
    assert all(h.startswith("0x") for h in [proof["leaf_hash"], *proof["inclusion_proof"]])
    audit = run(data, "audit")
    assert "audit: clean" in audit.stdout

    again = run(data, "ingest", str(source)).stdout  # idempotent re-run
    assert "(0 new, 25 already present)" in again and "tree size 25" in again


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"id": "x"'], "line 4: invalid JSON"),
        ([json.dumps(record(99, payload={"amount": 1.5}))], "line 4: payload.amount: floating"),
        ([json.dumps(record(99, kind="rumour"))], "line 4: kind must be one of"),
        (["[]"], "line 4: a record must be a JSON object"),
        # only the server stamps who submitted a record
        (
            [json.dumps(record(99, submitter="service:risk"))],
            "line 4: submitter is stamped by the server",
        ),
        # only the service writes what moves money or risk (issue 12), whoever runs ingest
        ([json.dumps(record(99, kind="decision"))], "line 4: kind 'decision' is reserved"),
        ([json.dumps(record(99, kind="escrow_event"))], "line 4: kind 'escrow_event' is reserved"),
        ([json.dumps(record(99, kind="admin"))], "line 4: kind 'admin' is reserved"),
        (
            [json.dumps(record(99, id="escrow:31337:0xab:0:cd"))],
            "line 4: record id 'escrow:31337:0xab:0:cd' is in the reserved namespace 'escrow:'",
        ),
        (
            [json.dumps(record(99, id="action-deal.release-0x01"))],
            "line 4: record id 'action-deal.release-0x01' is in the reserved namespace 'action-'",
        ),
        (
            [json.dumps(record(99, id="risk:alert:AL-1"))],
            "line 4: record id 'risk:alert:AL-1' is in the reserved namespace 'risk:'",
        ),
        (
            ['{"id": "deep", "payload": ' + "[" * 200_000 + "]" * 200_000 + "}"],
            "line 4: the record nests arrays and objects 200001 levels deep; at most 64",
        ),
    ],
)
def test_bad_line_exits_2_and_writes_nothing(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    data = tmp_path / "data"
    run(data, "ingest", str(write_jsonl(tmp_path / "ok.jsonl", [record(0)])))
    bad = write_jsonl(tmp_path / "bad.jsonl", [record(i) for i in range(1, 4)], lines)
    result = run(data, "ingest", str(bad), check_rc=2)
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one line, no traceback
    with Log.open(data) as log:
        assert log.size == 1  # the valid lines before the bad one were not written either


def test_conflicting_resubmission_exits_2(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run(data, "ingest", str(write_jsonl(tmp_path / "a.jsonl", [record(0)])))
    changed = write_jsonl(tmp_path / "b.jsonl", [record(1), record(0, actor="mallory")])
    result = run(data, "ingest", str(changed), check_rc=2)
    assert "already used with different content: inv-0000000" in result.stderr


def test_unreadable_file_and_unknown_record_exit_2(tmp_path: Path) -> None:
    assert "cannot read" in run(tmp_path, "ingest", str(tmp_path / "nope.jsonl"), check_rc=2).stderr
    not_utf8 = tmp_path / "latin1.jsonl"
    not_utf8.write_bytes(b'{"id": "caf\xe9"}\n')
    assert "line 1: not valid UTF-8" in run(tmp_path, "ingest", str(not_utf8), check_rc=2).stderr
    assert "no record with id" in run(tmp_path, "proof", "missing", check_rc=2).stderr
    assert run(tmp_path, "ingest", "x", "--commit-every", "0", check_rc=2).returncode == 2


def test_audit_exits_1_and_names_tampered_record(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run(data, "ingest", str(write_jsonl(tmp_path / "a.jsonl", [record(i) for i in range(10)])))
    db = sqlite3.connect(data / "log.sqlite")
    with db:
        replace_in_body(db, 5, '"amount":500', '"amount":900')
    db.close()
    result = run(data, "audit", check_rc=1)
    assert "ALTERED    index 5 record 'inv-0000005'" in result.stdout
    report = json.loads(run(data, "audit", "--json", check_rc=1).stdout)
    assert report["findings"] == [
        {
            "problem": "altered",
            "index": 5,
            "record_id": "inv-0000005",
            "detail": "content does not hash to the committed leaf",
        }
    ]


def _ingest_until_acks(data: Path, source: Path, acks: int, *extra: str) -> tuple[int, int]:
    """Start an ingest, SIGKILL it after ``acks`` acknowledged commits (or, with no
    commit-every, after it has started writing); return (acknowledged records, exit code)."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chainaudit",
            "--data-dir",
            str(data),
            "ingest",
            str(source),
            *extra,
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    acknowledged = 0
    assert process.stderr is not None
    for _ in range(acks):
        line = process.stderr.readline()
        assert line.startswith("ingest: committed "), line
        acknowledged = int(line.split()[2].split("/")[0])
    os.kill(process.pid, signal.SIGKILL)
    return acknowledged, process.wait(timeout=30)


def test_acknowledged_batches_survive_kill_9(tmp_path: Path) -> None:
    data = tmp_path / "data"
    total = 60_000
    source = write_jsonl(tmp_path / "big.jsonl", [record(i) for i in range(total)])
    acknowledged, code = _ingest_until_acks(data, source, 3, "--commit-every", "1000")
    assert code == -signal.SIGKILL
    with Log.open(data) as log:
        size = log.size
        assert acknowledged <= size < total  # every acknowledged record survived the kill
        assert size % 1000 == 0  # and no batch is half-written
        assert log.entry(f"inv-{acknowledged - 1:07d}").index == acknowledged - 1
        assert log.audit().clean
    finish = run(data, "ingest", str(source), "--commit-every", "5000").stdout
    assert f"({total - size} new, {size} already present)" in finish
    assert "audit: clean" in run(data, "audit").stdout


def _state(pid: int) -> str:
    """The state letter of process ``pid`` (``Z`` once it has exited), "" if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def test_atomic_ingest_killed_midway_leaves_log_unchanged(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run(data, "ingest", str(write_jsonl(tmp_path / "a.jsonl", [record(i) for i in range(10)])))
    with Log.open(data) as log:
        root = log.root()
    source = write_jsonl(tmp_path / "big.jsonl", [record(i) for i in range(10, 200_010)])
    process = subprocess.Popen(
        [sys.executable, "-m", "chainaudit", "--data-dir", str(data), "ingest", str(source)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # The parsing child exists only inside the ingest's open write transaction: kill then.
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    deadline = 400
    while deadline and process.poll() is None and not children.read_text().strip():
        deadline -= 1
        time.sleep(0.01)
    assert process.poll() is None, "ingest finished before it could be killed"
    (child,) = [int(pid) for pid in children.read_text().split()]
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    # The orphaned parsing child finds the pipe closed and ends instead of hanging on.
    assert _ended(child), "the parsing child lives on"
    with Log.open(data) as log:
        assert log.size == 10 and log.root() == root
        assert log.audit().clean


def _ended(pid: int) -> bool:
    """Wait up to 3 s for process ``pid`` to exit; whether it did."""
    deadline = 300
    while deadline and Path(f"/proc/{pid}").exists() and "Z" not in _state(pid):
        deadline -= 1
        time.sleep(0.01)
    return not Path(f"/proc/{pid}").exists() or "Z" in _state(pid)


def test_parser_processes_end_when_the_writer_is_killed(tmp_path: Path) -> None:
    """Records the native path declines are parsed by a pool of two processes; they must not
    outlive a writer killed with SIGKILL (they end on the broken pipe to it)."""
    slow = [{**record(i), "actor": "supplier:société"} for i in range(60_000)]
    source = write_jsonl(tmp_path / "slow.jsonl", slow)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chainaudit",
            "--data-dir",
            str(tmp_path / "data"),
            "ingest",
            str(source),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    deadline = 1000
    while deadline and process.poll() is None and len(children.read_text().split()) < 2:
        deadline -= 1
        time.sleep(0.01)
    assert process.poll() is None, "ingest finished before it could be killed"
    workers = [int(pid) for pid in children.read_text().split()]
    assert len(workers) == 2
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert all(_ended(pid) for pid in workers), "a parser process lives on"
