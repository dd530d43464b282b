"""c2sp.org/tlog-proof@v1: written by `proof --format tlog-proof`, read by `verify`, with the
log's signature, the witness quorum and `--state` fork detection (in-process CLI, real files)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from chainaudit.cli import main
from chainaudit.core import merkle, note
from chainaudit.core.errors import InputError
from chainaudit.core.records import PreparedRecord, prepare
from chainaudit.log.store import Log
from chainaudit.verify.tlogproof import (
    HEADER,
    TlogProof,
    WitnessPolicy,
    parse_tlog_proof,
    verify_tlog_proof,
)
from tests.tlog.helpers import ORIGIN, serve, write_log


def records(start: int, count: int) -> list[PreparedRecord]:
    return [
        prepare(
            {
                "id": f"rec-{i:04d}",
                "kind": "document",
                "timestamp": "2026-11-21T09:30:00Z",
                "actor": "inspector:sgs",
                "payload": {"lot": i},
            }
        )
        for i in range(start, start + count)
    ]


@pytest.fixture(scope="module")
def signer() -> note.Signer:
    return note.Signer.generate(ORIGIN)


@pytest.fixture(scope="module")
def witnesses() -> list[note.Signer]:
    return [note.Signer.generate(f"witness{i}.test", note.COSIGNATURE_V1) for i in range(3)]


def sign(log: Log, signer: note.Signer, cosigners: list[note.Signer]) -> note.Note:
    checkpoint = note.Checkpoint(signer.name, log.size, log.root())
    signed = note.sign_checkpoint(signer, checkpoint)
    now = int(time.time())
    signed = signed.with_signatures(tuple(w.sign(signed.text, timestamp=now) for w in cosigners))
    log.put_signed_checkpoint(log.size, signed.encode())
    return signed


@pytest.fixture
def data_dir(tmp_path: Path, signer: note.Signer, witnesses: list[note.Signer]) -> Path:
    with Log.open(tmp_path / "data") as log:
        log.append(records(0, 12))
        sign(log, signer, witnesses[:2])
    return tmp_path / "data"


def cli(data_dir: Path, *args: str) -> int:
    return main(["--data-dir", str(data_dir), *args])


def test_writes_and_verifies_a_tlog_proof(
    data_dir: Path,
    tmp_path: Path,
    signer: note.Signer,
    witnesses: list[note.Signer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "rec.tlog-proof"
    assert cli(data_dir, "proof", "rec-0005", "--format", "tlog-proof", "-o", str(out)) == 0
    text = out.read_text()
    assert text.startswith(HEADER + "\nextra ")
    proof = parse_tlog_proof(text)
    assert proof.index == 5 and proof.encode() == text
    assert note.Checkpoint.parse(note.Note.parse(proof.checkpoint).text).size == 12
    vkey = signer.verifier().encode()
    wkeys = [arg for w in witnesses for arg in ("--witness", w.verifier().encode())]
    capsys.readouterr()
    assert cli(data_dir, "verify", str(out), "--log-key", vkey, *wkeys, "--quorum", "2") == 0
    shown = capsys.readouterr().out
    assert "VALID: the entry is leaf 5" in shown and "witness0.test, witness1.test" in shown
    # the quorum of three is not met: exit 1, the check named
    assert cli(data_dir, "verify", str(out), "--log-key", vkey, *wkeys) == 1
    assert "the quorum is 3" in capsys.readouterr().out
    # another log key: the signature check fails
    other = note.Signer.generate(ORIGIN).verifier().encode()
    assert cli(data_dir, "verify", str(out), "--log-key", other) == 1
    # a tlog-proof without --log-key is a usage error
    assert cli(data_dir, "verify", str(out)) == 2
    assert "--log-key" in capsys.readouterr().err


def test_altered_entry_or_proof_fails_and_bundle_v1_detection_stays(
    data_dir: Path, tmp_path: Path, signer: note.Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "p"
    assert cli(data_dir, "proof", "rec-0003", "--format", "tlog-proof", "-o", str(out)) == 0
    proof = parse_tlog_proof(out.read_bytes())
    assert proof.extra is not None
    altered = TlogProof(proof.index, proof.proof, proof.checkpoint, proof.extra + b" ")
    verdict, _ = verify_tlog_proof(altered, log_key=signer.verifier())
    assert verdict.failed == ("inclusion",)
    moved = TlogProof(proof.index + 1, proof.proof, proof.checkpoint, proof.extra)
    assert verify_tlog_proof(moved, log_key=signer.verifier())[0].failed == ("inclusion",)
    # without extra data, the entry comes from --entry
    assert (
        cli(data_dir, "proof", "rec-0003", "--format", "tlog-proof", "--no-record", "-o", str(out))
        == 0
    )
    entry = tmp_path / "entry"
    entry.write_bytes(proof.extra)
    vkey = signer.verifier().encode()
    assert cli(data_dir, "verify", str(out), "--log-key", vkey) == 2
    assert cli(data_dir, "verify", str(out), "--log-key", vkey, "--entry", str(entry)) == 0
    # malformed proofs are input errors (exit 2), JSON still goes to the bundle parser
    out.write_text(HEADER + "\nindex 01\n\n" + proof.checkpoint)
    assert cli(data_dir, "verify", str(out), "--log-key", vkey) == 2
    assert "index '01'" in capsys.readouterr().err
    out.write_text(json.dumps({"version": 1}))
    assert cli(data_dir, "verify", str(out)) == 2
    assert "bundle: missing field" in capsys.readouterr().err  # read as a bundle v1


def test_policy_and_parser_refuse_bad_input(witnesses: list[note.Signer]) -> None:
    with pytest.raises(InputError, match="cannot be met"):
        WitnessPolicy((witnesses[0].verifier(),), 2)
    with pytest.raises(InputError, match="type 0x04"):
        WitnessPolicy((note.Signer.generate("w").verifier(),), 1)
    for bad in ("c2sp.org/tlog-proof@v2\nindex 0\n\n", HEADER + "\nindex 0\nAAAA\n\nx\n"):
        with pytest.raises(InputError):
            parse_tlog_proof(bad)


def test_state_refuses_a_fork(
    data_dir: Path, tmp_path: Path, signer: note.Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    """verify --state keeps the checkpoint it accepted; a larger one of another history is
    refused with 'fork detected', using the proof the log's read path serves."""
    vkey = signer.verifier().encode()
    state = tmp_path / "state.json"
    first = tmp_path / "first"
    assert cli(data_dir, "proof", "rec-0002", "--format", "tlog-proof", "-o", str(first)) == 0
    assert cli(data_dir, "verify", str(first), "--log-key", vkey, "--state", str(state)) == 0
    remembered = json.loads(state.read_text())["origins"][ORIGIN]
    assert remembered["size"] == 12

    # the honest log grows to 20; a forked one rewrites leaf 4 and also has 20 leaves
    with Log.open(data_dir) as log:
        log.append(records(12, 8))
        sign(log, signer, [])
        honest = [e.body or b"" for e in log.entries()]
    grown = tmp_path / "grown"
    assert cli(data_dir, "proof", "rec-0015", "--format", "tlog-proof", "-o", str(grown)) == 0
    # no proof available: refused, state unchanged
    assert cli(data_dir, "verify", str(grown), "--log-key", vkey, "--state", str(state)) == 1
    assert "not consistent" in capsys.readouterr().out
    assert json.loads(state.read_text())["origins"][ORIGIN]["size"] == 12

    forked = list(honest)
    forked[4] = b'{"forged":true}'
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_log(tmp_path / "a", honest, signer)
    fake = write_log(tmp_path / "b", forked, signer)
    with serve(tmp_path / "a") as good, serve(tmp_path / "b") as bad:
        args = ("--log-key", vkey, "--state", str(state))
        # a proof from the forked history (same origin, same key): signed, included, a fork
        fork_proof = TlogProof(
            7,
            tuple(merkle.inclusion_proof([merkle.hash_leaf(e) for e in forked], 7)),
            fake.encode(),
            forked[7],
        )
        (tmp_path / "fork").write_text(fork_proof.encode())
        assert cli(data_dir, "verify", str(tmp_path / "fork"), *args, "--log-url", good) == 1
        assert "fork detected" in capsys.readouterr().out
        assert cli(data_dir, "verify", str(grown), *args, "--log-url", bad) == 1
        assert "fork detected" in capsys.readouterr().out
        assert json.loads(state.read_text())["origins"][ORIGIN]["size"] == 12
        assert cli(data_dir, "verify", str(grown), *args, "--log-url", good) == 0
        assert json.loads(state.read_text())["origins"][ORIGIN]["size"] == 20
        # an older proof (size 12) is still accepted: proved consistent with size 20
        assert cli(data_dir, "verify", str(first), *args, "--log-url", good) == 0
        assert json.loads(state.read_text())["origins"][ORIGIN]["size"] == 20
    # the same size with another root is a fork even without a read path
    assert cli(data_dir, "verify", str(tmp_path / "fork"), *args) == 1
    assert "fork detected: two checkpoints of size 20" in capsys.readouterr().out


def _bundle_v1(leaves: list[bytes], index: int, since: int | None = None) -> dict[str, object]:
    """A bundle v1 (no record) for an offline check; the anchor fields are well-formed only."""
    hexes = ["0x" + h.hex() for h in merkle.inclusion_proof(leaves, index)]
    bundle: dict[str, object] = {
        "version": 1,
        "leaf_hash": "0x" + leaves[index].hex(),
        "leaf_index": index,
        "tree_size": len(leaves),
        "inclusion_proof": hexes,
        "checkpoint": {
            "tree_size": len(leaves),
            "root": "0x" + merkle.root_hash(leaves).hex(),
        },
        "anchor": {
            "chain_id": 31337,
            "contract": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
            "tx_hash": "0x" + "11" * 32,
            "block_number": 5,
            "block_hash": "0x" + "22" * 32,
            "checkpoint_seq": 0,
            "status": "confirmed",
        },
    }
    if since is not None:
        bundle["consistency"] = {
            "from_tree_size": since,
            "from_root": "0x" + merkle.root_hash(leaves[:since]).hex(),
            "proof": ["0x" + h.hex() for h in merkle.consistency_proof(leaves, since)],
        }
    return bundle


def test_state_with_bundle_v1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Bundle v1 stays readable; with --state its consistency proof (proof --since) moves
    the remembered checkpoint forward, and another history of the same anchor is refused."""
    honest = [merkle.hash_leaf(e) for e in entries_of(20)]
    forked = list(honest)
    forked[1] = merkle.hash_leaf(b"forged")
    state = tmp_path / "state.json"
    origin = "anchor:31337/0x5FbDB2315678afecb367f032d93F642f64180aa3"

    def verify(bundle: dict[str, object]) -> int:
        path = tmp_path / "bundle.json"
        path.write_text(json.dumps(bundle))
        return main(["verify", str(path), "--state", str(state)])

    assert verify(_bundle_v1(honest[:12], 3)) == 0
    assert json.loads(state.read_text())["origins"][origin]["size"] == 12
    assert verify(_bundle_v1(forked[:12], 3)) == 1
    assert "fork detected" in capsys.readouterr().out
    assert verify(_bundle_v1(forked, 3, since=12)) == 1  # its proof starts at another root
    assert "not consistent" in capsys.readouterr().out
    assert verify(_bundle_v1(honest, 3, since=12)) == 0
    assert json.loads(state.read_text())["origins"][origin]["size"] == 20


def entries_of(n: int) -> list[bytes]:
    return [f"entry-{i}".encode() for i in range(n)]


def test_verify_applies_a_tlog_policy_file(
    data_dir: Path,
    tmp_path: Path,
    signer: note.Signer,
    witnesses: list[note.Signer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`verify --policy FILE`: the quorum of a c2sp.org/tlog-policy (groups and thresholds)."""
    out = tmp_path / "rec.tlog-proof"
    assert cli(data_dir, "proof", "rec-0001", "--format", "tlog-proof", "-o", str(out)) == 0
    lines = [f"log {signer.verifier().encode()}"]
    lines += [f"witness w{i} {w.verifier().encode()}" for i, w in enumerate(witnesses)]
    two_of_three = tmp_path / "two.policy"
    two_of_three.write_text("\n".join([*lines, "group g 2 w0 w1 w2", "quorum g", ""]))
    every = tmp_path / "all.policy"
    every.write_text("\n".join([*lines, "group g all w0 w1 w2", "quorum g", ""]))
    vkey = signer.verifier().encode()
    capsys.readouterr()
    # the checkpoint is cosigned by w0 and w1: 2 of 3 is met, all 3 is not
    assert cli(data_dir, "verify", str(out), "--log-key", vkey, "--policy", str(two_of_three)) == 0
    assert "quorum 'g' is met (cosigned by: w0, w1" in capsys.readouterr().out
    assert cli(data_dir, "verify", str(out), "--log-key", vkey, "--policy", str(every)) == 1
    assert "quorum 'g' is not met" in capsys.readouterr().out
    # a policy and --witness together, or a malformed policy, are usage errors
    wkey = witnesses[0].verifier().encode()
    args = ["verify", str(out), "--log-key", vkey, "--policy", str(every), "--witness", wkey]
    assert cli(data_dir, *args) == 2
    broken = tmp_path / "broken.policy"
    broken.write_text("quorum nobody\n")
    assert cli(data_dir, "verify", str(out), "--log-key", vkey, "--policy", str(broken)) == 2
    assert "broken.policy" in capsys.readouterr().err


def test_a_policy_counts_only_its_listed_logs(
    data_dir: Path,
    tmp_path: Path,
    signer: note.Signer,
    witnesses: list[note.Signer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """c2sp.org/tlog-policy: a checkpoint counts only if a listed log signed it. With the
    policy, --log-key is optional (the listed key is used) and must be a listed one."""
    out = tmp_path / "rec.tlog-proof"
    assert cli(data_dir, "proof", "rec-0002", "--format", "tlog-proof", "-o", str(out)) == 0
    wlines = [f"witness w{i} {w.verifier().encode()}" for i, w in enumerate(witnesses)]
    quorum = [*wlines, "group g 2 w0 w1 w2", "quorum g", ""]
    ours = tmp_path / "ours.policy"
    ours.write_text("\n".join([f"log {signer.verifier().encode()}", *quorum]))
    other = note.Signer.generate(ORIGIN)  # same origin, another key: not the log we trust
    theirs = tmp_path / "theirs.policy"
    theirs.write_text("\n".join([f"log {other.verifier().encode()}", *quorum]))
    capsys.readouterr()
    assert cli(data_dir, "verify", str(out), "--policy", str(ours)) == 0  # no --log-key needed
    assert cli(data_dir, "verify", str(out), "--policy", str(theirs)) == 1
    assert "no log of the policy signed" in capsys.readouterr().err
    given = ["--log-key", signer.verifier().encode()]
    assert cli(data_dir, "verify", str(out), *given, "--policy", str(theirs)) == 2
    assert "is not a log of the --policy file" in capsys.readouterr().err
