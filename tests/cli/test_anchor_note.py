"""``chainaudit anchor`` signs and stores the log's checkpoint note of the size it anchors
(a real Anvil, the CLI in-process), and ``chainaudit proof`` bundles carry it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account

from chainaudit.app.deploy import deploy_contracts
from chainaudit.app.logkey import log_signer
from chainaudit.app.settings import Settings
from chainaudit.chain.chain import Chain
from chainaudit.chain.devnet import Devnet
from chainaudit.cli import main
from chainaudit.core import note
from chainaudit.log.store import Log
from tests.test_checkpointing import append

ORIGIN = "audit.example.com/chainaudit"


def test_anchor_stores_and_prints_the_note_of_its_size(
    anvil: Devnet,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    account = Account.from_key(anvil.accounts[0].private_key)
    contract = deploy_contracts(Chain(anvil.rpc_url), account)["AuditAnchor"].address
    key = note.Signer.generate(ORIGIN)
    for name, value in {
        "RPC_URL": anvil.rpc_url,
        "ANCHOR_CONTRACT": contract,
        "ANCHORER_KEY": anvil.accounts[0].private_key,
        "DEPLOYMENTS_DIR": str(tmp_path / "deployments"),
        "LOG_ORIGIN": ORIGIN,
        "LOG_SIGNING_KEY": key.encode(),
    }.items():
        monkeypatch.setenv(f"CHAINAUDIT_{name}", value)
    data = tmp_path / "data"
    with Log.open(data) as log:
        append(log, 0, 9)
        root = log.root()

    assert main(["--data-dir", str(data), "anchor", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    checkpoint, _ = note.open_checkpoint(printed["checkpoint_note"], key.verifier())
    assert (checkpoint.origin, checkpoint.size, checkpoint.root) == (ORIGIN, 9, root)
    with Log.open(data) as log:
        assert log.signed_checkpoint(9) == printed["checkpoint_note"]

    bundle_file = tmp_path / "r-4.json"
    assert main(["--data-dir", str(data), "proof", "r-4", "-o", str(bundle_file)]) == 0
    assert json.loads(bundle_file.read_text())["checkpoint_note"] == printed["checkpoint_note"]
    capsys.readouterr()
    vkey = log_signer(Settings(data_dir=data)).verifier().encode()
    assert main(["verify", str(bundle_file), "--log-key", vkey, "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert {c["name"]: c["status"] for c in verdict["checks"]}["checkpoint_note"] == "pass"
