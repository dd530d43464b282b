"""The log's signed checkpoints end to end: a real ``chainaudit serve`` app (uvicorn) over a real
Anvil serves ``GET /checkpoint`` (a C2SP tlog-checkpoint note) that verifies with the key
``chainaudit log-key verifier`` prints; anchoring stores the note of the size it anchors;
bundles carry it, and ``verify --log-key`` / ``POST /v1/verify?log_key=`` check it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chainaudit.api.server import ServerThread
from chainaudit.app.logkey import DEV_KEY_FILE
from chainaudit.chain.devnet import Devnet, free_port
from chainaudit.cli import main
from chainaudit.core import note
from tests.api.conftest import Api, issue_keys, make_settings, open_log


@pytest.fixture
def api(tmp_path: Path, anvil: Devnet) -> Iterator[Api]:
    settings = make_settings(tmp_path, anvil, checkpoint_interval=0.1)
    tokens, partner, other = issue_keys(settings, anvil)
    with ServerThread(settings, free_port()) as server:
        yield Api(server.url, settings, tokens, partner, other)


def printed_verifier_key(data_dir: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "chainaudit", "--data-dir", str(data_dir), "log-key", "verifier"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    return done.stdout.strip()


def served_checkpoint(client: httpx.Client, log_key: note.Verifier, size: int) -> note.Checkpoint:
    """The served checkpoint, once it reaches ``size`` (signed every checkpoint_interval)."""
    deadline = time.monotonic() + 20
    while True:
        response = client.get("/checkpoint")
        if response.status_code == 404 and time.monotonic() < deadline:
            time.sleep(0.05)  # the first checkpoint is signed within checkpoint_interval
            continue
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        checkpoint, _ = note.open_checkpoint(response.content, log_key)
        if checkpoint.size >= size or time.monotonic() > deadline:
            return checkpoint
        time.sleep(0.05)


def records(prefix: str, count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{prefix}-{i}",
            "kind": "document",
            "timestamp": "2026-11-21T09:30:00Z",
            "actor": "inspector:sgs",
            "payload": {"lot": i},
        }
        for i in range(count)
    ]


def test_served_checkpoint_anchor_note_and_bundle_check(
    api: Api, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = api.settings.data_dir
    with httpx.Client(base_url=api.url, timeout=30) as anonymous:
        empty = anonymous.get("/checkpoint")  # no API key needed; nothing signed yet
        assert empty.status_code == 404
        assert empty.headers["content-type"].startswith("application/problem+json")
        assert "/checkpoint" in anonymous.get("/openapi.json").json()["paths"]

        vkey = printed_verifier_key(data)
        assert (data / DEV_KEY_FILE).is_file()
        log_key = note.Verifier.parse(vkey)
        assert log_key.name == "localhost/chainaudit"

        with api.client("operator") as operator:
            for batch, count in (("a", 5), ("b", 3)):
                posted = operator.post("/v1/records/batch", json={"records": records(batch, count)})
                assert posted.status_code == 201, posted.text
                with open_log(data) as log:
                    size, root = log.size, log.root()
                checkpoint = served_checkpoint(anonymous, log_key, size)
                with open_log(data) as log:
                    assert checkpoint.root == log.root_at(checkpoint.size)
                assert checkpoint.size >= size
                assert checkpoint.size > size or checkpoint.root == root

            assert operator.post("/v1/anchors").status_code == 202
            deadline = time.monotonic() + 30
            while True:
                latest = operator.get("/v1/checkpoints/latest").json()["latest_anchor"]
                if latest and latest["status"] in ("confirmed", "final"):
                    break
                assert time.monotonic() < deadline, "the anchor did not confirm"
                time.sleep(0.2)

    anchored_size = latest["tree_size"]
    with open_log(data) as log:  # the anchor's note: signed_checkpoints[its size]
        stored = log.signed_checkpoint(anchored_size)
    assert stored is not None
    signed, _ = note.open_checkpoint(stored, log_key)
    assert signed.size == anchored_size and "0x" + signed.root.hex() == latest["root"]

    with api.client("auditor") as auditor:
        bundle: dict[str, Any] = auditor.get("/v1/records/a-2/bundle").json()
        assert bundle["checkpoint_note"] == stored and bundle["tree_size"] == anchored_size
        verdict = auditor.post("/v1/verify", json=bundle, params={"log_key": vkey}).json()
        assert verdict["valid"], verdict
        assert {c["name"]: c["status"] for c in verdict["checks"]}["checkpoint_note"] == "pass"
        stranger = note.Signer.generate(log_key.name).verifier().encode()
        refused = auditor.post("/v1/verify", json=bundle, params={"log_key": stranger}).json()
        assert refused["failed"] == ["checkpoint_note"]
        malformed = auditor.post("/v1/verify", json=bundle, params={"log_key": "nope"})
        assert malformed.status_code == 422
        assert malformed.json()["errors"][0]["pointer"] == "/log_key"

    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    assert main(["--data-dir", str(data), "verify", str(path), "--log-key", vkey]) == 0
    out = capsys.readouterr().out
    assert "checkpoint_note" in out and "VALID offline only" in out

    assert main(["--data-dir", str(data), "verify", str(path), "--log-key", stranger]) == 1
    assert "verification failed: checkpoint_note" in capsys.readouterr().err

    lines = stored.split("\n")
    lines[1] = str(anchored_size + 2)  # claim a larger size, keep the signature
    path.write_text(json.dumps({**bundle, "checkpoint_note": "\n".join(lines)}))
    assert main(["--data-dir", str(data), "verify", str(path), "--log-key", vkey]) == 1
    assert "verification failed: checkpoint_note" in capsys.readouterr().err
