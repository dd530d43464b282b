"""Split view, end to end: the operator serves two different histories to two clients.

Two real stores (:class:`chainaudit.log.store.Log`) share their first records and then differ;
each is served by a real ``chainaudit serve`` app signing its checkpoints with the one log
key: client A is given URL A, client B URL B. In that one scenario a real witness cosigns A's
checkpoint and refuses B's, ``chainaudit monitor`` given both URLs reports the split view,
and ``chainaudit verify --state`` accepts a tlog-proof from A, then refuses B's as a fork.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from chainaudit.api.server import ServerThread
from chainaudit.app.settings import Settings
from chainaudit.chain.devnet import free_port
from chainaudit.cli import main
from chainaudit.core import note
from chainaudit.core.records import PreparedRecord, prepare
from chainaudit.log.store import Log
from chainaudit.service.witness import encode_request
from tests.test_witness import make_witness, start

ORIGIN = "example.test/split-log"
SHARED = 4
"""Both histories hold the same first records; A then has 12 in all, B 14 others."""


def records(start: int, count: int, tag: str) -> list[PreparedRecord]:
    return [
        prepare(
            {
                "id": f"rec-{i:04d}",
                "kind": "document",
                "timestamp": "2026-11-21T09:30:00Z",
                "actor": "inspector:sgs",
                "payload": {"lot": i, "history": tag},
            }
        )
        for i in range(start, start + count)
    ]


def settings(data_dir: Path, signer: note.Signer) -> Settings:
    # No chain (the read path needs none); the operator's one log key for both servers.
    return Settings(
        data_dir=data_dir,
        rpc_url="http://127.0.0.1:9",
        log_origin=ORIGIN,
        log_signing_key=signer.encode(),  # type: ignore[arg-type]
        checkpoint_interval=0.1,
    )


def served_checkpoint(url: str, log_key: note.Verifier, size: int) -> note.Note:
    """``GET /checkpoint`` once the server has signed its tree of ``size``."""
    deadline = time.monotonic() + 20
    while True:
        response = httpx.get(f"{url}/checkpoint", timeout=5)
        if response.status_code == 200:
            checkpoint, signed = note.open_checkpoint(response.text, log_key)
            if checkpoint.size == size:
                return signed
        assert time.monotonic() < deadline, (response.status_code, response.text)
        time.sleep(0.05)


@pytest.fixture
def two_views(tmp_path: Path) -> Iterator[tuple[note.Signer, Path, str, Path, str]]:
    """The operator: two stores, one key, two ``chainaudit serve`` apps."""
    signer = note.Signer.generate(ORIGIN)
    shared = records(0, SHARED, "shared")
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    with Log.open(a_dir) as log:
        log.append(shared + records(SHARED, 12 - SHARED, "a"))
    with Log.open(b_dir) as log:
        log.append(shared + records(SHARED, 14 - SHARED, "b"))
    with ExitStack() as stack:
        a = stack.enter_context(
            ServerThread(settings(a_dir, signer), free_port(), run_anchorer=False)
        )
        b = stack.enter_context(
            ServerThread(settings(b_dir, signer), free_port(), run_anchorer=False)
        )
        yield signer, a_dir, a.url, b_dir, b.url


def test_one_operator_two_histories_witness_monitor_and_verify_state(
    two_views: tuple[note.Signer, Path, str, Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    signer, a_dir, a_url, b_dir, b_url = two_views
    log_key = signer.verifier()
    vkey = log_key.encode()
    seen_a = served_checkpoint(a_url, log_key, 12)
    seen_b = served_checkpoint(b_url, log_key, 14)
    assert note.Checkpoint.parse(seen_a.text).origin == note.Checkpoint.parse(seen_b.text).origin

    # (a) a real witness cosigns A's checkpoint, then refuses B's.
    config, state = make_witness(tmp_path / "w", "witness.example/w1", [log_key])
    witness = start(config, state)
    try:
        add = f"{witness.url}/add-checkpoint"
        first = httpx.post(add, content=encode_request(0, [], seen_a), timeout=10)
        assert first.status_code == 200, first.text
        cosigned = note.Note.parse(seen_a.text + "\n" + first.text)
        assert cosigned.verified_by([witness.witness.config.verifier])["witness.example/w1"]
        # B from the witness's size, with the proof B's store gives: it does not verify
        with Log.open(b_dir) as b_log:
            b_proof = b_log.consistency_proof(12, 14)
        refused = httpx.post(add, content=encode_request(12, b_proof, seen_b), timeout=10)
        assert refused.status_code == 422, refused.text
        # B pretending the witness has seen nothing: 409 with the size it cosigned
        conflict = httpx.post(add, content=encode_request(0, [], seen_b), timeout=10)
        assert (conflict.status_code, conflict.content) == (409, b"12\n")
    finally:
        witness.stop()

    # (b) the monitor, given both URLs, reports the split view.
    capsys.readouterr()
    assert main(["monitor", "--log-url", a_url, "--log-url", b_url, "--log-key", vkey]) == 1
    out = capsys.readouterr().out
    findings = [line for line in out.splitlines() if line.startswith("FINDING split-view")]
    assert len(findings) == 1 and a_url in findings[0] and b_url in findings[0], out
    assert main(["monitor", "--log-url", a_url, "--log-key", vkey]) == 0  # A alone is fine

    # (c) verify --state: client A's proof is accepted and remembered; B's is refused.
    state_file = tmp_path / "state.json"
    from_a, from_b = tmp_path / "a.tlog-proof", tmp_path / "b.tlog-proof"
    assert (
        main(
            [
                "--data-dir",
                str(a_dir),
                "proof",
                "rec-0002",
                "--format",
                "tlog-proof",
                "-o",
                str(from_a),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "--data-dir",
                str(b_dir),
                "proof",
                "rec-0002",
                "--format",
                "tlog-proof",
                "-o",
                str(from_b),
            ]
        )
        == 0
    )
    args = ["--log-key", vkey, "--state", str(state_file)]
    assert main(["verify", str(from_a), *args]) == 0
    assert json.loads(state_file.read_text())["origins"][ORIGIN]["size"] == 12
    capsys.readouterr()
    # without a read path: B's larger tree cannot be shown consistent
    assert main(["verify", str(from_b), *args]) == 1
    assert "not consistent" in capsys.readouterr().out
    # with B's read path (the proof B's operator serves): a fork
    assert main(["verify", str(from_b), *args, "--log-url", b_url]) == 1
    assert "fork detected" in capsys.readouterr().out
    assert json.loads(state_file.read_text())["origins"][ORIGIN]["size"] == 12
    # A's proof is still accepted
    assert main(["verify", str(from_a), *args]) == 0
