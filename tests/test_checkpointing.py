"""Signed checkpoints (chainaudit/log/checkpointing.py): C2SP tlog-checkpoint notes of the log,
stored in ``signed_checkpoints``, with a cosigning seam; bundles carrying one and the
verifier's ``checkpoint_note`` check (offline; the served and anchored path is in
tests/api/test_signed_checkpoints_api.py)."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from chainaudit.core import note
from chainaudit.core.bundle import Anchor, Bundle, Checkpoint, parse_bundle, schema
from chainaudit.core.errors import InputError, StoreError
from chainaudit.core.records import prepare
from chainaudit.log.checkpointing import CheckpointSigner, sign_at, sign_current
from chainaudit.log.store import Log
from chainaudit.verify.verifier import verify_bundle

ORIGIN = "audit.example.com/chainaudit"


def append(log: Log, start: int, count: int) -> None:
    log.append(
        [
            prepare(
                {
                    "id": f"r-{i}",
                    "kind": "transaction",
                    "timestamp": "2026-11-21T09:30:00Z",
                    "actor": "buyer:acme",
                    "payload": {"n": i},
                }
            )
            for i in range(start, start + count)
        ]
    )


@pytest.fixture
def log(tmp_path: Path) -> Log:
    return Log.open(tmp_path)


def test_table_schema_is_the_agreed_one(log: Log) -> None:
    db = sqlite3.connect(log.path)
    (sql,) = db.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'signed_checkpoints'"
    ).fetchone()
    assert sql == "CREATE TABLE signed_checkpoints (size INTEGER PRIMARY KEY, note TEXT NOT NULL)"
    assert log.signed_checkpoint() is None and log.signed_checkpoint(3) is None
    log.put_signed_checkpoint(3, "three")
    log.put_signed_checkpoint(5, "five")
    log.put_signed_checkpoint(3, "three, cosigned")  # put replaces
    assert log.signed_checkpoint() == "five"
    assert log.signed_checkpoint(3) == "three, cosigned"
    log.put_signed_checkpoint(3, "three")  # but never with a shorter note (fewer cosignatures)
    assert log.signed_checkpoint(3) == "three, cosigned"
    with pytest.raises(StoreError):
        log.put_signed_checkpoint(-1, "x")


def test_sign_current_signs_stores_and_reuses(log: Log) -> None:
    signer = note.Signer.generate(ORIGIN)
    append(log, 0, 7)
    signed = sign_current(log, signer)
    checkpoint, _ = note.open_checkpoint(signed.encode(), signer.verifier())
    assert (checkpoint.origin, checkpoint.size, checkpoint.root) == (ORIGIN, 7, log.root())
    assert signed.encode() == log.signed_checkpoint(7) == log.signed_checkpoint()
    assert signed.encode().startswith(f"{ORIGIN}\n7\n")
    assert sign_at(log, signer, 7) == signed  # once per size
    old = sign_at(log, signer, 3)  # a past size (the anchoring service's)
    assert note.open_checkpoint(old.encode(), signer.verifier())[0].root == log.root_at(3)
    assert log.signed_checkpoint() == signed.encode()  # the latest is still the largest
    with pytest.raises(StoreError, match="the log has 7 leaves"):
        sign_at(log, signer, 8)


def test_cosigning_seam_appends_lines_that_are_stored(log: Log) -> None:
    signer = note.Signer.generate(ORIGIN)
    witness = note.Signer.generate("witness.example/w1", note.COSIGNATURE_V1)

    def cosign(signed: note.Note) -> note.Note:
        return signed.with_signatures((witness.sign(signed.text, timestamp=1_700_000_000),))

    append(log, 0, 4)
    signed = sign_current(log, signer, cosign=cosign)
    stored = note.Note.parse(log.signed_checkpoint(4) or "")
    assert stored == signed and len(stored.signatures) == 2
    assert stored.verified_by([signer.verifier(), witness.verifier()]) == {
        ORIGIN: None,
        "witness.example/w1": 1_700_000_000,
    }
    assert sign_at(log, signer, 4) == signed  # the cosigned note is kept, not re-signed


def test_checkpoint_signer_signs_only_when_the_log_grew(log: Log) -> None:
    signer = note.Signer.generate(ORIGIN)
    ticker = CheckpointSigner(log, signer, interval=0.01)
    assert ticker.tick() is None and log.signed_checkpoint() is None  # empty: nothing
    append(log, 0, 2)
    first = ticker.tick()
    assert first is not None and first.text.startswith(f"{ORIGIN}\n2\n")
    assert ticker.tick() is None
    append(log, 2, 3)
    assert CheckpointSigner(log, signer).tick() is not None  # a new one resumes from the table
    assert log.signed_checkpoint() == log.signed_checkpoint(5)


def offline_bundle(log: Log, signed: str | None) -> Bundle:
    size = log.size
    entry = log.entry_at(1)
    return Bundle(
        record=None,
        leaf_hash=entry.leaf_hash,
        leaf_index=1,
        tree_size=size,
        inclusion_proof=tuple(log.inclusion_proof(1, size)),
        checkpoint=Checkpoint(tree_size=size, root=log.root()),
        anchor=Anchor(
            chain_id=31337,
            contract="0x5FbDB2315678afecb367f032d93F642f64180aa3",
            tx_hash=b"\x01" * 32,
            block_number=1,
            block_hash=b"\x02" * 32,
            checkpoint_seq=0,
            status="confirmed",
        ),
        checkpoint_note=signed,
    )


def test_bundle_note_is_optional_in_the_schema_and_checked_with_the_log_key(log: Log) -> None:
    signer = note.Signer.generate(ORIGIN)
    append(log, 0, 6)
    signed = sign_current(log, signer).encode()
    bundle = offline_bundle(log, signed)
    document = bundle.to_json()
    validator = Draft202012Validator(schema())
    assert not list(validator.iter_errors(document))
    assert parse_bundle(document) == bundle
    old = dict(document)
    del old["checkpoint_note"]
    assert not list(validator.iter_errors(old))
    with pytest.raises(InputError, match="checkpoint_note"):
        parse_bundle({**document, "checkpoint_note": None})

    vkey = signer.verifier().encode()
    verdict = verify_bundle(document, chain=None, log_key=vkey)
    assert verdict.valid and verdict.check("checkpoint_note").ok, verdict.to_json()
    assert "checkpoint_note" not in {c.name for c in verify_bundle(document, chain=None).checks}
    without = verify_bundle(old, chain=None, log_key=vkey)  # an old bundle stays valid
    assert without.valid and without.check("checkpoint_note").status == "skip"

    stranger = note.Signer.generate(ORIGIN).verifier().encode()
    wrong_key = verify_bundle(document, chain=None, log_key=stranger)
    assert wrong_key.failed == ("checkpoint_note",)

    altered = signed.replace(f"{ORIGIN}\n6\n", f"{ORIGIN}\n7\n")  # the size, signature kept
    assert altered != signed
    tampered = verify_bundle({**document, "checkpoint_note": altered}, chain=None, log_key=vkey)
    assert tampered.failed == ("checkpoint_note",)
    assert "does not verify" in tampered.check("checkpoint_note").detail

    other_size = sign_at(log, signer, 5).encode()  # genuine, but of another size
    mismatch = verify_bundle(
        dataclasses.replace(bundle, checkpoint_note=other_size), chain=None, log_key=vkey
    )
    assert mismatch.failed == ("checkpoint_note",)
    assert "signed size 5" in mismatch.check("checkpoint_note").detail

    with pytest.raises(InputError, match="log key"):
        verify_bundle(document, chain=None, log_key="not a key")
