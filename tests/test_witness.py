"""Witnesses (c2sp.org/tlog-witness, tlog-cosignature, tlog-policy): every status of
``POST /add-checkpoint`` over real HTTP, durable state across a restart, a split view refused,
and a log collecting a 2-of-3 quorum with one witness down and one answering 409 first."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from chainaudit.chain.devnet import free_port
from chainaudit.core import merkle, note
from chainaudit.core.errors import ConfigError, NoteError, PolicyError
from chainaudit.core.records import PreparedRecord, prepare
from chainaudit.core.witness_policy import parse_policy
from chainaudit.log.store import Log
from chainaudit.service.cosign import collect_cosignatures, cosign, known_sizes, quorum_met
from chainaudit.service.witness import (
    SIZE_CONTENT_TYPE,
    Witness,
    WitnessThread,
    encode_request,
    load_config,
    read_key_file,
    write_key_file,
)
from chainaudit.service.witness_state import WitnessState

ORIGIN = "example.com/audit-log"


class History:
    """A log's leaves in memory: checkpoints signed by ``signer`` and consistency proofs."""

    def __init__(self, signer: note.Signer, tag: str, size: int) -> None:
        self.signer = signer
        self.leaves = [merkle.hash_leaf(f"{tag}-{i}".encode()) for i in range(size)]

    def checkpoint(self, size: int, signer: note.Signer | None = None) -> note.Note:
        root = merkle.root_hash(self.leaves[:size])
        return note.sign_checkpoint(
            signer or self.signer, note.Checkpoint(self.signer.name, size, root)
        )

    def proof(self, old: int, new: int) -> list[bytes]:
        return merkle.consistency_proof(self.leaves[:new], old)


def make_witness(directory: Path, name: str, logs: list[note.Verifier]) -> tuple[Path, Path]:
    """A witness key, a configuration following ``logs`` and a state path, in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    write_key_file(name, directory / "witness.key")
    config = directory / "witness.conf"
    lines = ["# test witness", "key witness.key", *(f"log {v.encode()}" for v in logs)]
    config.write_text("\n".join(lines) + "\n")
    return config, directory / "state.sqlite"


def thread(config: Path, state: Path) -> WitnessThread:
    """A witness server on a free loopback port, not started yet."""
    return WitnessThread(Witness(load_config(config), WitnessState(state)), free_port())


def start(config: Path, state: Path) -> WitnessThread:
    return thread(config, state).start()


@pytest.fixture
def log_key() -> note.Signer:
    return note.Signer.generate(ORIGIN)


@pytest.fixture
def witness(tmp_path: Path, log_key: note.Signer) -> Iterator[WitnessThread]:
    config, state = make_witness(tmp_path / "w", "witness.example/w1", [log_key.verifier()])
    server = start(config, state)
    yield server
    server.stop()


def post(url: str, body: bytes) -> httpx.Response:
    return httpx.post(url + "/add-checkpoint", content=body, timeout=10)


def add(url: str, old: int, history: History, size: int) -> httpx.Response:
    proof = history.proof(old, size) if 0 < old < size else []
    return post(url, encode_request(old, proof, history.checkpoint(size)))


def test_every_status_of_add_checkpoint(witness: WitnessThread, log_key: note.Signer) -> None:
    url = witness.url
    history = History(log_key, "a", 20)
    vkey = witness.witness.config.verifier

    # 200: the body is a cosignature/v1 line that verifies with the witness key.
    first = add(url, 0, history, 5)
    assert first.status_code == 200, first.text
    assert first.text.startswith("\u2014 witness.example/w1 ") and first.text.endswith("\n")
    cosigned = note.Note.parse(history.checkpoint(5).text + "\n" + first.text)
    stamp = cosigned.verified_by([vkey])["witness.example/w1"]
    assert stamp is not None and abs(stamp - time.time()) < 60

    # 409: the old size is not the one it cosigned; the body is its size.
    conflict = add(url, 0, history, 8)
    assert conflict.status_code == 409
    assert conflict.headers["content-type"] == SIZE_CONTENT_TYPE
    assert conflict.content == b"5\n"

    # 422: a wrong consistency proof from its size.
    bad = history.proof(5, 8)
    bad[0] = hashlib.sha256(b"not the hash").digest()
    assert post(url, encode_request(5, bad, history.checkpoint(8))).status_code == 422
    assert post(url, encode_request(5, [], history.checkpoint(8))).status_code == 422

    # 200 again with the right proof; then the same checkpoint again (old == size) is fine.
    assert add(url, 5, history, 8).status_code == 200
    assert add(url, 8, history, 8).status_code == 200

    # 400: malformed bodies, and an old size larger than the checkpoint's.
    text = history.checkpoint(8).encode()
    for body in (
        b"garbage",
        b"\xff\xfe\n\n" + text.encode(),
        ("old 08\n\n" + text).encode(),
        ("old 8\nnot-base64!\n\n" + text).encode(),
        ("old 8\n" + "AAAA\n" + "\n" + text).encode(),
        ("old 8\n\n" + history.checkpoint(8).text).encode(),  # no signature
        ("old 8\n" + "\n".join(["A" * 43 + "="] * 64) + "\n\n" + text).encode(),
    ):
        assert post(url, body).status_code == 400, body[:40]
    assert add(url, 9, history, 8).status_code == 400

    # 422: a checkpoint of the empty tree with another root than SHA-256 of nothing.
    empty = note.sign_checkpoint(log_key, note.Checkpoint(ORIGIN, 0, bytes(32)))
    assert post(url, encode_request(0, [], empty)).status_code == 422

    # 404: an origin the witness does not follow.
    other = History(note.Signer.generate("example.com/other-log"), "o", 4)
    assert add(url, 0, other, 4).status_code == 404

    # 403: the right origin signed by a key the witness does not trust.
    impostor = note.Signer.generate(ORIGIN)
    forged = encode_request(8, history.proof(8, 10), history.checkpoint(10, impostor))
    assert post(url, forged).status_code == 403

    # 409: the same size with another root hash (the body is still its size).
    fork = History(log_key, "b", 8)
    same_size = add(url, 8, fork, 8)
    assert (same_size.status_code, same_size.content) == (409, b"8\n")

    # 413 for a body over the limit; 405 for another method.
    assert post(url, b"old 0\n" + b"A" * 300_000).status_code == 413
    assert httpx.get(url + "/add-checkpoint").status_code == 405


def test_the_state_survives_a_restart(tmp_path: Path, log_key: note.Signer) -> None:
    config, state = make_witness(tmp_path / "w", "witness.example/w1", [log_key.verifier()])
    history = History(log_key, "a", 10)
    with thread(config, state) as first:
        assert add(first.url, 0, history, 6).status_code == 200
    with thread(config, state) as again:
        conflict = add(again.url, 0, history, 10)
        assert (conflict.status_code, conflict.content) == (409, b"6\n")
        assert add(again.url, 6, history, 10).status_code == 200
    assert WitnessState(state).get(ORIGIN) is not None
    assert WitnessState(state).origins()[ORIGIN].size == 10


def test_a_split_view_is_refused(witness: WitnessThread, log_key: note.Signer) -> None:
    """The operator shows history A to one client and B (diverging at leaf 1) to another;
    the witness cosigns A and refuses every checkpoint of B (in memory; with two real stores
    and servers, see tests/tlog/test_split_view.py)."""
    url = witness.url
    a, b = History(log_key, "a", 10), History(log_key, "b", 10)
    b.leaves[0] = a.leaves[0]
    assert add(url, 0, a, 4).status_code == 200
    # B at a larger size, with B's own proof from the witness's size: it does not verify.
    assert add(url, 4, b, 7).status_code == 422
    # B at the witness's size: another root at the same size.
    assert add(url, 4, b, 4).status_code == 409
    # B pretending the witness has seen nothing: 409 with the size it has.
    assert add(url, 0, b, 7).content == b"4\n"
    assert add(url, 4, a, 7).status_code == 200


def test_concurrent_requests_cannot_roll_the_state_back(
    tmp_path: Path, log_database: str | None
) -> None:
    state = WitnessState(log_database or tmp_path / "state.sqlite")  # both engines
    from chainaudit.service.witness_state import Recorded  # noqa: PLC0415

    root = bytes(32)
    assert state.compare_and_swap(ORIGIN, None, Recorded(5, root, "five"))
    assert not state.compare_and_swap(ORIGIN, None, Recorded(3, root, "three"))
    five = state.get(ORIGIN)
    assert five is not None
    assert state.compare_and_swap(ORIGIN, five, Recorded(9, root, "nine"))
    assert not state.compare_and_swap(ORIGIN, five, Recorded(7, root, "seven"))
    got = state.get(ORIGIN)
    assert got is not None and got.size == 9


def test_concurrent_submissions_cosign_one_history(tmp_path: Path, log_key: note.Signer) -> None:
    """Eight threads submit sizes 1..8 from old size 0 at once: exactly one is cosigned and
    recorded, the others get 409 with the recorded size."""
    config, state = make_witness(tmp_path / "w", "witness.example/w1", [log_key.verifier()])
    witness = Witness(load_config(config), WitnessState(state))
    history = History(log_key, "a", 8)
    bodies = [encode_request(0, [], history.checkpoint(n)) for n in range(1, 9)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(witness.add_checkpoint, bodies))
    winners = [n for n, a in enumerate(answers, start=1) if a.status == 200]
    assert len(winners) == 1
    recorded = WitnessState(state).get(ORIGIN)
    assert recorded is not None and recorded.size == winners[0]
    assert all(a.body == f"{winners[0]}\n" for a in answers if a.status != 200)


def make_record(i: int) -> PreparedRecord:
    return prepare(
        {
            "id": f"rec-{i}",
            "kind": "transaction",
            "timestamp": "2026-11-21T09:30:00Z",
            "actor": "supplier:globex",
            "payload": {"amount": i, "currency": "USD"},
        }
    )


def test_the_log_collects_a_quorum_of_two_of_three(tmp_path: Path, log_key: note.Signer) -> None:
    """Three witnesses: w1 is down, w2 has cosigned a later size than the log assumes (it
    answers 409 first), w3 is fresh. The log gets cosignatures from w2 and w3: 2 of 3."""
    log = Log.open(tmp_path / "data")
    log.append([make_record(i) for i in range(3)])
    servers: list[WitnessThread] = []
    vkeys: list[note.Verifier] = []
    for name in ("w2", "w3"):
        config, state = make_witness(
            tmp_path / name, f"witness.example/{name}", [log_key.verifier()]
        )
        servers.append(start(config, state))
        vkeys.append(servers[-1].witness.config.verifier)
    down = note.Signer.generate("witness.example/w1", note.COSIGNATURE_V1).verifier()
    try:
        # w2 saw the log at size 3 already (another log process asked it).
        three = note.sign_checkpoint(log_key, note.Checkpoint(ORIGIN, 3, log.root()))
        assert post(servers[0].url, encode_request(0, [], three)).status_code == 200

        log.append([make_record(i) for i in range(3, 11)])
        policy = parse_policy(
            f"log {log_key.verifier().encode()}\n"
            f"witness w1 {down.encode()} http://127.0.0.1:{free_port()}\n"
            f"witness w2 {vkeys[0].encode()} {servers[0].url}\n"
            f"witness w3 {vkeys[1].encode()}\t{servers[1].url}/\n"
            "group two-of-three 2 w1 w2 w3\n"
            "quorum two-of-three\n"
        )
        signed = note.sign_checkpoint(log_key, note.Checkpoint(ORIGIN, log.size, log.root()))
        assert not quorum_met(signed, policy)
        sizes: dict[str, int] = {}
        result = cosign(signed, policy, log.consistency_proof, sizes, timeout=2.0)
        assert set(result.cosigned) == {"w2", "w3"}
        assert result.resent == {"w2": 3}  # w2 answered 409 with its size, then cosigned
        assert set(result.failures) == {"w1"} and "unreachable" in result.failures["w1"]
        assert sizes == {"w2": 11, "w3": 11}
        assert quorum_met(result.note, policy)
        assert policy.check(result.note).keys() == {"w2", "w3"}
        assert len(result.note.signatures) == 3
        # What the log serves parses and verifies as a whole.
        served = note.Note.parse(result.note.encode())
        assert set(served.verified_by([log_key.verifier(), *vkeys])) == {
            ORIGIN,
            "witness.example/w2",
            "witness.example/w3",
        }

        # The next checkpoint: the log now knows the witnesses' sizes (no 409 needed).
        log.append([make_record(i) for i in range(11, 14)])
        later = note.sign_checkpoint(log_key, note.Checkpoint(ORIGIN, log.size, log.root()))
        cosigned = collect_cosignatures(later, policy, log.consistency_proof, sizes, timeout=2.0)
        assert quorum_met(cosigned, policy) and sizes == {"w2": 14, "w3": 14}

        # After a restart the log finds the sizes again in the notes it stored.
        assert known_sizes([result.note, cosigned, signed], policy) == {"w2": 14, "w3": 14}

        # A cosignature by another key than the policy's is never attached.
        liar = note.Signer.generate("witness.example/w4", note.COSIGNATURE_V1).verifier()
        lying = parse_policy(f"witness w4 {liar.encode()} {servers[1].url}\nquorum w4\n")
        got = cosign(later, lying, log.consistency_proof, {}, timeout=2.0)
        assert got.resent == {"w4": 14} and "no cosignature of its key" in got.failures["w4"]
        assert got.note == later and not quorum_met(got.note, lying)

        # One cosigner is not a quorum; a tampered cosignature is refused, not ignored.
        only_w2 = note.Note(cosigned.text, cosigned.signatures[:2])
        assert not quorum_met(only_w2, policy)
        with pytest.raises(NoteError, match="quorum"):
            policy.check(only_w2)
        broken = cosigned.signatures[1]
        tampered = note.Signature(broken.name, broken.key_id, bytes(72))
        with pytest.raises(NoteError):
            quorum_met(note.Note(cosigned.text, (cosigned.signatures[0], tampered)), policy)
    finally:
        for server in servers:
            server.stop()
        log.close()


SPEC_EXAMPLE = """
# two levels of groups, as in c2sp.org/tlog-policy
log {log}

witness X1 {x1}
witness X2 {x2} https://x2.example/
witness X3 {x3}
group X-witnesses 2 X1 X2 X3

  witness Y1 {y1}
witness Y2 {y2}
witness\tY3 {y3}
group Y-witnesses any Y1 Y2 Y3

group X-and-Y all X-witnesses Y-witnesses
quorum X-and-Y
"""


def test_policy_parsing_and_quorum() -> None:
    keys = {
        k: note.Signer.generate(k, note.COSIGNATURE_V1).verifier().encode()
        for k in ("x1", "x2", "x3", "y1", "y2", "y3")
    }
    log_vkey = note.Signer.generate(ORIGIN).verifier().encode()
    policy = parse_policy(SPEC_EXAMPLE.format(log=log_vkey, **keys))
    assert policy.logs[0].origin == ORIGIN
    assert policy.witnesses["X2"].url == "https://x2.example/"
    assert policy.quorum_met({"X1", "X3", "Y2"})
    assert not policy.quorum_met({"X1", "Y2"})
    assert not policy.quorum_met({"X1", "X2", "X3"})
    assert parse_policy("quorum none\n").quorum_met(set())

    x1, x2 = keys["x1"], keys["x2"]
    for bad, why in (
        ("", "no quorum"),
        (f"witness a {x1}\nquorum a\nquorum a\n", "exactly one"),
        (f"witness a {x1}\ngroup g 1 a b\nquorum g\n", "not defined"),
        (f"witness a {x1}\ngroup g 2 a\nquorum g\n", "between 1 and 1"),
        (f"witness a {x1}\ngroup g 0 a\nquorum g\n", "between"),
        (f"witness a {x1}\ngroup g any a a\nquorum g\n", "twice"),
        (f"witness a {x1}\ngroup g any none\nquorum g\n", "not defined"),
        (f"witness a {x1}\nwitness a {x2}\nquorum a\n", "already defined"),
        (f"witness a {x1}\nwitness b {x1}\nquorum a\n", "listed twice"),
        (f"witness none {x1}\nquorum none\n", "reserved"),
        (f"witness a {log_vkey}\nquorum a\n", "0x04"),
        (f"log {x1}\nquorum none\n", "0x01"),
        ("quorum ghost\n", "not defined"),
        ("frobnicate x\nquorum none\n", "unknown keyword"),
        ("quorum none\x0b\n", "control"),
        (f"witness a {x1[:-4]}AAAA\nquorum a\n", "line 1"),
    ):
        with pytest.raises(PolicyError, match=why):
            parse_policy(bad)


def test_keys_and_configuration(tmp_path: Path, log_key: note.Signer) -> None:
    key = tmp_path / "w.key"
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "chainaudit",
            "witness",
            "keygen",
            "--name",
            "w.example/1",
            "--out",
            str(key),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    vkey = made.stdout.strip()
    assert read_key_file(key).verifier().encode() == vkey
    shown = subprocess.run(
        [sys.executable, "-m", "chainaudit", "witness", "verifier", "--key", str(key)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.strip() == vkey and "PRIVATE" not in shown.stdout
    with pytest.raises(ConfigError, match="never overwritten"):
        write_key_file("w.example/1", key)
    os.chmod(key, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_key_file(key)
    os.chmod(key, 0o600)
    conf = tmp_path / "w.conf"
    conf.write_text(f"key w.key\nlog {log_key.verifier().encode()}\n")
    assert set(load_config(conf).logs) == {ORIGIN}
    for text, why in (
        (f"log {log_key.verifier().encode()}\n", "no `key"),
        ("key w.key\n", "follows no log"),
        (f"key w.key\nlog {vkey}\n", "type 0x01"),
        ("key w.key\nlogs x\n", "expected"),
    ):
        conf.write_text(text)
        with pytest.raises(ConfigError, match=why):
            load_config(conf)


def test_witness_serve_from_the_command_line(tmp_path: Path, log_key: note.Signer) -> None:
    config, state = make_witness(tmp_path / "w", "witness.example/cli", [log_key.verifier()])
    port = free_port()
    command = [sys.executable, "-m", "chainaudit", "witness", "serve", "--config", str(config)]
    command += ["--state", str(state), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert f"http://127.0.0.1:{port}/add-checkpoint" in line and ORIGIN in line
        reply = add(f"http://127.0.0.1:{port}", 0, History(log_key, "a", 3), 3)
        assert reply.status_code == 200 and reply.text.startswith("\u2014 witness.example/cli ")
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert WitnessState(state).origins()[ORIGIN].size == 3
