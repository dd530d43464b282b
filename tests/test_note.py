"""Signed notes, checkpoints and cosignatures (C2SP), against the reference's known answers."""

from __future__ import annotations

import base64

import pytest

from chainaudit.core import note
from chainaudit.core.errors import NoteError

# The example of golang.org/x/mod/sumdb/note's documentation (data only): Ed25519 signing is
# deterministic, so our signer must reproduce the reference's signature byte for byte.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def test_the_reference_example_byte_for_byte() -> None:
    signer = note.Signer.parse(GO_SKEY)
    assert signer.encode() == GO_SKEY
    assert signer.verifier().encode() == GO_VKEY
    assert note.Note(GO_TEXT, (signer.sign(GO_TEXT),)).encode() == GO_NOTE
    parsed = note.Note.parse(GO_NOTE.encode())
    assert parsed.verified_by([note.Verifier.parse(GO_VKEY)]) == {"PeterNeumann": None}


def test_a_forged_or_altered_note_does_not_verify() -> None:
    verifier = note.Verifier.parse(GO_VKEY)
    altered = GO_NOTE.replace("cryptography", "cryptographY")
    with pytest.raises(NoteError, match="does not verify"):
        note.Note.parse(altered).verified_by([verifier])
    other = note.Signer.generate("PeterNeumann")
    # Same name, other key: a different key id, so the line is not the verifier's and is ignored.
    forged = note.Note(GO_TEXT, (other.sign(GO_TEXT),))
    assert note.Note.parse(forged.encode()).verified_by([verifier]) == {}


def test_checkpoint_round_trip_and_cosignature() -> None:
    log = note.Signer.generate("audit.example.com/chainaudit")
    witness = note.Signer.generate("witness.example.com/w1", note.COSIGNATURE_V1)
    cp = note.Checkpoint("audit.example.com/chainaudit", 12, bytes(range(32)))
    signed = note.sign_checkpoint(log, cp)
    assert (
        signed.text
        == f"audit.example.com/chainaudit\n12\n{base64.b64encode(bytes(range(32))).decode()}\n"
    )
    cosigned = signed.with_signatures((witness.sign(signed.text, timestamp=1_700_000_000),))
    parsed, opened = note.open_checkpoint(cosigned.encode(), log.verifier())
    assert parsed == cp
    assert opened.verified_by([witness.verifier()]) == {"witness.example.com/w1": 1_700_000_000}
    # A cosignature over another size is refused.
    moved = note.Note(note.Checkpoint(cp.origin, 13, cp.root).text(), cosigned.signatures[1:])
    with pytest.raises(NoteError, match="does not verify"):
        moved.verified_by([witness.verifier()])
    with pytest.raises(NoteError, match="no valid signature"):
        note.open_checkpoint(cosigned.encode(), note.Signer.generate(cp.origin).verifier())


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("o\n12\n", "origin, a size and a root"),
        ("o\n012\n" + base64.b64encode(bytes(32)).decode() + "\n", "decimal"),
        ("o\n1\n" + base64.b64encode(bytes(31)).decode() + "\n", "32 bytes"),
        ("o\n1\n!!\n", "not base64"),
        ("o\n1\n" + base64.b64encode(bytes(32)).decode(), "end in exactly one newline"),
        ("o\r\n1\n" + base64.b64encode(bytes(32)).decode() + "\n", "control characters"),
    ],
)
def test_malformed_checkpoints_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(NoteError, match=says):
        note.Checkpoint.parse(text)


@pytest.mark.parametrize(
    ("message", "says"),
    [
        (GO_TEXT, "blank line"),
        (GO_TEXT + "\n- PeterNeumann AAAA\n", "starts with"),
        (GO_TEXT + "\n\u2014 PeterNeumann %%%\n", "bad base64"),
        (b"\xff\n\n" + "\u2014 a AAAAAAA=\n".encode(), "UTF-8"),
    ],
)
def test_malformed_notes_say_what_is_wrong(message: str | bytes, says: str) -> None:
    with pytest.raises(NoteError, match=says):
        note.Note.parse(message)


def test_key_strings_are_checked() -> None:
    with pytest.raises(NoteError, match="key id does not match"):
        note.Verifier.parse(GO_VKEY.replace("c74f20a3", "c74f20a4"))
    with pytest.raises(NoteError, match="PRIVATE"):
        note.Signer.parse(GO_VKEY)
    with pytest.raises(NoteError, match="no spaces"):
        note.Signer.generate("bad name")
