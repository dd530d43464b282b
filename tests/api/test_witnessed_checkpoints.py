"""Witnesses in the running service: with a tlog-policy, ``chainaudit serve`` asks the policy's
witnesses (real witness servers) to cosign every checkpoint it signs; ``GET /checkpoint``
and the proof bundles carry the cosignatures, meeting a 2-of-3 quorum with one witness down."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chainaudit.api.server import ServerThread
from chainaudit.chain.devnet import Devnet, free_port
from chainaudit.core import note
from chainaudit.core.witness_policy import Policy, load_policy
from chainaudit.service.witness import WitnessThread
from tests.api.conftest import Api, issue_keys, make_settings, open_log
from tests.api.test_signed_checkpoints_api import records
from tests.test_witness import make_witness, start

ORIGIN = "audit.example.test/chainaudit"


@pytest.fixture
def witnessed(tmp_path: Path, anvil: Devnet) -> Iterator[tuple[Api, Policy, note.Verifier]]:
    signer = note.Signer.generate(ORIGIN)
    servers: list[WitnessThread] = []
    for name in ("w1", "w2"):
        config, state = make_witness(tmp_path / name, f"witness.test/{name}", [signer.verifier()])
        servers.append(start(config, state))
    down = note.Signer.generate("witness.test/w3", note.COSIGNATURE_V1).verifier()
    policy_file = tmp_path / "witnesses.policy"
    policy_file.write_text(
        f"log {signer.verifier().encode()}\n"
        + "".join(
            f"witness w{i + 1} {s.witness.config.verifier.encode()} {s.url}\n"
            for i, s in enumerate(servers)
        )
        + f"witness w3 {down.encode()} http://127.0.0.1:{free_port()}\n"
        "group two-of-three 2 w1 w2 w3\nquorum two-of-three\n"
    )
    settings = make_settings(
        tmp_path,
        anvil,
        checkpoint_interval=0.1,
        log_origin=ORIGIN,
        log_signing_key=signer.encode(),
        witness_policy_file=policy_file,
    )
    tokens, partner, other = issue_keys(settings, anvil)
    try:
        with ServerThread(settings, free_port()) as server:
            yield (
                Api(server.url, settings, tokens, partner, other),
                load_policy(policy_file),
                signer.verifier(),
            )
    finally:
        for witness in servers:
            witness.stop()


def cosigned_checkpoint(
    client: httpx.Client, log_key: note.Verifier, policy: Policy, size: int
) -> tuple[note.Checkpoint, dict[str, int]]:
    """The served checkpoint once it covers ``size`` and carries the policy's quorum."""
    deadline = time.monotonic() + 30
    while True:
        response = client.get("/checkpoint")
        if response.status_code == 200:
            checkpoint, signed = note.open_checkpoint(response.content, log_key)
            cosigners = policy.cosigners(signed)
            if checkpoint.size >= size and policy.quorum_met(cosigners):
                return checkpoint, cosigners
        assert time.monotonic() < deadline, f"no cosigned checkpoint: {response.text}"
        time.sleep(0.1)


def test_served_checkpoints_and_bundles_carry_the_witness_quorum(
    witnessed: tuple[Api, Policy, note.Verifier],
) -> None:
    api, policy, log_key = witnessed
    with httpx.Client(base_url=api.url, timeout=30) as anonymous, api.client("operator") as op:
        for batch, count in (("a", 4), ("b", 3)):  # two checkpoints: the second needs a proof
            posted = op.post("/v1/records/batch", json={"records": records(batch, count)})
            assert posted.status_code == 201, posted.text
            with open_log(api.settings) as log:
                size = log.size
            checkpoint, cosigners = cosigned_checkpoint(anonymous, log_key, policy, size)
            assert set(cosigners) == {"w1", "w2"}  # w3 is down: 2 of 3 is the quorum
            with open_log(api.settings) as log:
                assert checkpoint.root == log.root_at(checkpoint.size)

        assert op.post("/v1/anchors").status_code == 202
        deadline = time.monotonic() + 30
        while True:
            latest = op.get("/v1/checkpoints/latest").json()["latest_anchor"]
            if latest and latest["status"] in ("confirmed", "final"):
                break
            assert time.monotonic() < deadline, "the anchor did not confirm"
            time.sleep(0.2)
    with api.client("auditor") as auditor:
        bundle: dict[str, Any] = auditor.get("/v1/records/b-1/bundle").json()
    signed = note.Note.parse(bundle["checkpoint_note"])
    assert note.Checkpoint.parse(signed.text).size == bundle["tree_size"]
    assert policy.check(signed).keys() == {"w1", "w2"}  # the bundle's note meets the quorum
