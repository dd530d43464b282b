"""The CLI says where it is and what to do (issue 14): real `chainaudit` processes.

Read commands never create a log; a chain that cannot be reached is one line naming the
endpoint and what to run; AuditAnchor reverts are decoded; bundles given in the wrong order
are named as such; `serve` refuses a busy or invalid port in one line and announces itself
only once it accepts connections; `--version` everywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_utils.crypto import keccak

from chainaudit import __version__
from chainaudit.app.deploy import deploy_contracts
from chainaudit.chain.anchor_abi import decode_anchor_revert
from chainaudit.chain.chain import Chain
from chainaudit.chain.devnet import Devnet, free_port
from chainaudit.core.records import prepare
from chainaudit.log.store import Log
from chainaudit.service.anchoring import Anchorer, AnchorPolicy
from tests.api.conftest import make_settings
from tests.api.test_hostile_input import settings_env

NO_DATA_ENV = {k: v for k, v in os.environ.items() if not k.startswith("CHAINAUDIT_")}


def chainaudit(*args: str) -> list[str]:
    return [sys.executable, "-m", "chainaudit", *args]


def run_all(
    commands: Sequence[Sequence[str]], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> list[subprocess.CompletedProcess[str]]:
    """Run independent CLI invocations at once; their results in the same order."""
    processes = [
        subprocess.Popen(
            chainaudit(*args),
            cwd=cwd,
            env=NO_DATA_ENV if env is None else env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    results = []
    for args, process in zip(commands, processes, strict=True):
        out, err = process.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(list(args), process.returncode, out, err))
    return results


def assert_one_line(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert result.returncode == code, (result.args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, (result.args, result.stderr)
    return lines[0]


def test_read_commands_never_create_a_log(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    named = tmp_path / "named"
    reads = [
        ["proof", "po-1"],
        ["proof", "po-1", "-o", "b.json"],
        ["audit"],
        ["audit", "--json"],
        ["keys", "list"],
        ["approvals", "list"],
        ["risk", "alerts"],
        ["risk", "replay", "d-1"],
        ["incident", "show", "inc-1"],
        ["statement", "0x" + "11" * 20],
        ["anchor"],
        ["ingest", "missing.jsonl"],  # a write, but of a file that is not there
    ]
    results = run_all(reads, cwd=elsewhere)
    results += run_all([["--data-dir", str(named), "audit"]], cwd=elsewhere)
    for result in results[:-2]:
        line = assert_one_line(result)
        assert line.startswith(f"chainaudit: no log at {elsewhere / '.data'} ("), line
        assert "--data-dir" in line and "CHAINAUDIT_DATA_DIR" in line
        assert result.stdout == ""
    assert (
        assert_one_line(results[-2])
        == "chainaudit: cannot read missing.jsonl: No such file or directory"
    )
    assert assert_one_line(results[-1]).startswith(f"chainaudit: no log at {named} (")
    assert sorted(p.name for p in elsewhere.iterdir()) == []  # no .data, no b.json
    assert not named.exists()

    # the review's sequence: after the refused read, audit still refuses (it is not "clean")
    env = {**NO_DATA_ENV, "CHAINAUDIT_DATA_DIR": str(named)}
    (audit,) = run_all([["audit"]], cwd=elsewhere, env=env)
    assert "no log at" in assert_one_line(audit)


def test_an_unreachable_chain_is_one_line_with_the_endpoint_and_the_hint(tmp_path: Path) -> None:
    data = tmp_path / "data"
    source = tmp_path / "in.jsonl"
    source.write_text(
        json.dumps(
            {
                "id": "po-1",
                "kind": "transaction",
                "timestamp": "2026-11-21T09:30:00Z",
                "actor": "buyer:acme",
                "payload": {"amount": 100},
            }
        )
        + "\n"
    )
    (made,) = run_all([["--data-dir", str(data), "ingest", "-q", str(source)]])
    assert made.returncode == 0, made.stderr
    port = free_port()  # nothing listens there
    down = f"http://127.0.0.1:{port}"
    env = {
        **NO_DATA_ENV,
        "CHAINAUDIT_DATA_DIR": str(data),
        "CHAINAUDIT_RPC_URL": f"http://auditor:s3cret-token@127.0.0.1:{port}/v3/s3cret-key",
        "CHAINAUDIT_RPC_TIMEOUT": "5",
        "CHAINAUDIT_DEPLOYMENTS_DIR": str(tmp_path / "deployments"),
    }
    results = run_all(
        [
            ["audit", "--chain"],
            ["anchor"],
            ["deploy"],
            ["reconcile"],
            ["risk", "hold", "place", "1", "0", "--reason", "r"],
        ],
        env=env,
    )
    for result in results:
        line = assert_one_line(result)
        assert f"chain endpoint unreachable at {down}/… (connection refused)" in line, line
        assert line.endswith(
            "start the local devnet with `chainaudit devnet --detach`, or point --rpc / "
            "CHAINAUDIT_RPC_URL at a running node"
        ), line
        assert "s3cret" not in line and "HTTPConnectionPool" not in line
        assert "Max retries" not in line


# -- a log anchored twice, for verify ---------------------------------------------------------


@dataclass
class Anchored:
    data: Path
    rpc: str
    contract: str
    old: Path  # po-3 at size 10, checkpoint 0
    new: Path  # po-3 at size 25, checkpoint 1, with a consistency proof from size 10

    def pinned(self) -> list[str]:
        return ["--rpc", self.rpc, "--chain-id", "31337", "--contract", self.contract]


def _append(log: Log, start: int, count: int) -> None:
    log.append(
        [
            prepare(
                {
                    "id": f"po-{i}",
                    "kind": "transaction",
                    "timestamp": "2026-11-21T09:30:00Z",
                    "actor": "buyer:acme",
                    "payload": {"amount": i},
                }
            )
            for i in range(start, start + count)
        ]
    )


@pytest.fixture(scope="module")
def anchored(anvil: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Anchored:
    root = tmp_path_factory.mktemp("edges")
    chain = Chain(anvil.rpc_url)
    account = Account.from_key(anvil.accounts[0].private_key)
    contract = deploy_contracts(chain, account)["AuditAnchor"].address
    setup = Anchored(root / "data", anvil.rpc_url, contract, root / "old.json", root / "new.json")
    with Log.open(setup.data) as log:
        anchorer = Anchorer(log, chain, account, contract, policy=AnchorPolicy(finality=10_000))
        try:
            _append(log, 0, 10)
            anchorer.anchor_now(timeout=60)
            (old,) = run_all(
                [["--data-dir", str(setup.data), "proof", "po-3", "-o", str(setup.old)]]
            )
            assert old.returncode == 0, old.stderr
            _append(log, 10, 15)
            anchorer.anchor_now(timeout=60)
        finally:
            anchorer.close()
    (new,) = run_all(
        [["--data-dir", str(setup.data), "proof", "po-3", "--since", "10", "-o", str(setup.new)]]
    )
    assert new.returncode == 0, new.stderr
    return setup


def test_an_anchor_revert_is_decoded_to_the_contracts_error(
    anchored: Anchored, tmp_path: Path
) -> None:
    wrong = json.loads(anchored.old.read_text())
    wrong["anchor"]["checkpoint_seq"] = 7  # two checkpoints exist
    bundle = tmp_path / "wrong-seq.json"
    bundle.write_text(json.dumps(wrong))
    text, as_json = run_all(
        [
            ["verify", str(bundle), *anchored.pinned()],
            ["verify", str(bundle), *anchored.pinned(), "--json"],
        ]
    )
    decoded = "reverted with AuditAnchorUnknownCheckpoint(seq=7, count=2)"
    assert text.returncode == 1, text.stderr
    assert decoded in text.stderr and "checkpoint" in text.stderr
    assert "('0x" not in text.stdout + text.stderr  # not the raw revert tuple
    assert as_json.returncode == 1
    checks = {c["name"]: c for c in json.loads(as_json.stdout)["checks"]}
    assert checks["checkpoint"]["status"] == "fail"
    assert decoded in checks["checkpoint"]["detail"]


def test_a_refused_anchor_names_the_contracts_error(anvil: Devnet, tmp_path: Path) -> None:
    chain = Chain(anvil.rpc_url)
    contract = deploy_contracts(chain, Account.from_key(anvil.accounts[0].private_key))
    data = tmp_path / "data"
    with Log.open(data) as log:
        _append(log, 0, 2)
    outsider = anvil.accounts[1]  # holds no ANCHORER_ROLE on the contract
    env = {
        **NO_DATA_ENV,
        "CHAINAUDIT_DATA_DIR": str(data),
        "CHAINAUDIT_RPC_URL": anvil.rpc_url,
        "CHAINAUDIT_ANCHOR_CONTRACT": contract["AuditAnchor"].address,
        "CHAINAUDIT_ANCHORER_KEY": outsider.private_key,
    }
    (refused,) = run_all([["anchor", "--timeout", "3"]], env=env)
    line = assert_one_line(refused)
    assert (
        f"reverted with AccessControlUnauthorizedAccount(account={outsider.address}, "
        "neededRole=0x" in line
    ), line


def test_every_anchor_error_decodes_with_its_arguments() -> None:
    def data(signature: str, types: list[str], values: list[object]) -> bytes:
        return keccak(text=signature)[:4] + abi_encode(types, values)

    root = b"\xab" * 32
    assert decode_anchor_revert(
        data("AuditAnchorSizeNotIncreasing(uint64,uint64)", ["uint64", "uint64"], [5, 5])
    ) == ("AuditAnchorSizeNotIncreasing(previousSize=5, newSize=5)")
    assert decode_anchor_revert(
        data(
            "AuditAnchorInconsistentCheckpoint(uint64,bytes32,uint64,bytes32,uint256)",
            ["uint64", "bytes32", "uint64", "bytes32", "uint256"],
            [3, root, 9, root, 4],
        )
    ) == (
        f"AuditAnchorInconsistentCheckpoint(previousSize=3, previousRoot=0x{'ab' * 32}, "
        f"newSize=9, newRoot=0x{'ab' * 32}, proofLength=4)"
    )
    assert decode_anchor_revert(b"\x00\x01\x02\x03") is None
    assert decode_anchor_revert(b"") is None


def test_consistency_bundles_swapped_are_named_as_such(anchored: Anchored) -> None:
    swapped, right = run_all(
        [
            ["verify", "--consistency", str(anchored.new), str(anchored.old)],
            ["verify", "--consistency", str(anchored.old), str(anchored.new), *anchored.pinned()],
        ]
    )
    line = assert_one_line(swapped)
    assert "the bundles are in the wrong order" in line, line
    assert "first (size 25) is newer than the second (size 10)" in line
    assert "carries no consistency proof" not in line
    assert right.returncode == 0, right.stdout + right.stderr


# -- serve ------------------------------------------------------------------------------------


def test_serve_refuses_a_busy_or_invalid_port_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**NO_DATA_ENV, "CHAINAUDIT_DATA_DIR": str(tmp_path / "data")}
        taken, too_big, negative = run_all(
            [
                ["serve", "--port", str(port)],
                ["serve", "--port", "99999"],
                ["serve", "--port", "-1"],
            ],
            env=env,
        )
    assert assert_one_line(taken) == (
        f"chainaudit: cannot serve on 127.0.0.1:{port}: the port is in use by another process "
        "(choose another with --port)"
    )
    for result, number in ((too_big, 99999), (negative, -1)):
        assert assert_one_line(result) == (
            f"chainaudit: cannot serve on port {number}: a TCP port is between 1 and 65535"
        )
    for result in (taken, too_big, negative):
        assert "serving" not in result.stdout

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    (no_dir,) = run_all([["--data-dir", str(blocker / "data"), "serve", "--port", "0"]])
    assert assert_one_line(no_dir) == (
        f"chainaudit: cannot create the data directory {blocker / 'data'}: Not a directory "
        "(choose another with --data-dir or CHAINAUDIT_DATA_DIR)"
    )
    assert no_dir.stdout == ""


@pytest.fixture
def serving(tmp_path: Path, anvil: Devnet) -> Iterator[tuple[subprocess.Popen[str], int]]:
    settings = make_settings(tmp_path, anvil)
    port = free_port()
    process = subprocess.Popen(
        chainaudit("serve", "--port", str(port)),
        env=settings_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        yield process, port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_serve_says_serving_only_once_it_accepts_connections(
    serving: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = serving
    assert process.stdout is not None
    started = time.monotonic()
    line = process.stdout.readline()  # blocks until the announcement
    assert line == (
        f"serving the API at http://127.0.0.1:{port} (docs at /docs); Ctrl-C stops it\n"
    ), line
    assert time.monotonic() - started < 60
    response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)  # no retry needed
    assert response.status_code == 200


def test_version_everywhere() -> None:
    results = run_all(
        [
            ["--version"],
            ["verify", "--version"],
            ["risk", "hold", "--version"],
            ["keys", "list", "--version"],
        ]
    )
    for result in results:
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"chainaudit {__version__}\n"


# -- --json everywhere, hashes in 0x-hex ----------------------------------------------------

BARE_HASH = re.compile(r"^[0-9a-f]{64}$")
# stored inside decision records as they were hashed: renaming it would change old records
BARE_BY_DESIGN = {"rule_set_hash"}


def _bare_hashes(value: object, where: str = "$") -> list[str]:
    """Every string in ``value`` that is a hash written without ``0x``."""
    if isinstance(value, dict):
        return [
            found
            for key, item in value.items()
            if key not in BARE_BY_DESIGN
            for found in _bare_hashes(item, f"{where}.{key}")
        ]
    if isinstance(value, list):
        return [
            found for i, item in enumerate(value) for found in _bare_hashes(item, f"{where}[{i}]")
        ]
    return [where] if isinstance(value, str) and BARE_HASH.match(value) else []


def test_every_command_that_prints_a_result_takes_json() -> None:
    from chainaudit.cli import NO_RESULT_COMMANDS, build_parser  # noqa: PLC0415

    def leaves(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield parser
        for action in subs:
            for sub in dict.fromkeys(action.choices.values()):
                yield from leaves(sub)

    found = list(leaves(build_parser()))
    assert len(found) >= 30
    for parser in found:
        options = {o for a in parser._actions for o in a.option_strings}
        assert "--version" in options, parser.prog
        if parser.prog.split()[-1] not in NO_RESULT_COMMANDS:
            assert "--json" in options, parser.prog


def test_json_results_use_the_shared_names_and_0x_hashes(anvil: Devnet, tmp_path: Path) -> None:
    data = tmp_path / "data"
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"po-{i}",
                    "kind": "transaction",
                    "timestamp": "2026-11-21T09:30:00Z",
                    "actor": "buyer:acme",
                    "payload": {"amount": i},
                }
            )
            + "\n"
            for i in range(5)
        )
    )
    env = {
        **NO_DATA_ENV,
        "CHAINAUDIT_DATA_DIR": str(data),
        "CHAINAUDIT_RPC_URL": anvil.rpc_url,
        "CHAINAUDIT_DEPLOYMENTS_DIR": str(tmp_path / "deployments"),
    }

    def one(*args: str) -> object:
        (result,) = run_all([args], env=env)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        document = json.loads(result.stdout)  # one JSON document, nothing else
        assert _bare_hashes(document) == [], (args, _bare_hashes(document))
        return document

    ingested = one("ingest", "-q", str(source), "--json")
    assert isinstance(ingested, dict) and ingested["appended"] == 5
    assert ingested["checkpoint"]["tree_size"] == 5
    deployed = one("deploy", "--no-escrow", "--json")
    assert isinstance(deployed, dict) and deployed["chain_id"] == 31337
    contract = deployed["contracts"]["AuditAnchor"]["address"]
    anchored = one("anchor", "--json")
    assert isinstance(anchored, dict)
    assert anchored["anchor"]["contract"] == contract
    assert anchored["checkpoint"] == ingested["checkpoint"]
    written = one("proof", "po-2", "-o", str(tmp_path / "b.json"), "--json")
    assert isinstance(written, dict)
    bundle = json.loads((tmp_path / "b.json").read_text())
    for name in ("leaf_index", "leaf_hash", "tree_size", "checkpoint"):
        assert written[name] == bundle[name], name
    plain = one("proof", "po-2", "--json")
    assert isinstance(plain, dict)
    assert plain["checkpoint"] == bundle["checkpoint"]  # the same names for the same things
    assert plain["inclusion_proof"] == bundle["inclusion_proof"]
    assert plain["leaf_hash"] == bundle["leaf_hash"]
    audit = one("audit", "--json")
    assert isinstance(audit, dict) and audit["checkpoint"] == bundle["checkpoint"]
    verdict = one("verify", str(tmp_path / "b.json"), "--rpc", anvil.rpc_url, "--chain-id",
                  "31337", "--contract", contract, "--json")  # fmt: skip
    assert isinstance(verdict, dict) and verdict["valid"] is True
    created = one("keys", "create", "--role", "auditor", "--name", "a", "--json")
    assert isinstance(created, dict) and created["state"] == "active" and created["token"]
    listed = one("keys", "list", "--json")
    assert isinstance(listed, list) and [k["key_id"] for k in listed] == [created["key_id"]]
    assert "token" not in listed[0]
    revoked = one("keys", "revoke", created["key_id"], "--json")
    assert isinstance(revoked, dict) and revoked["state"] == "revoked"
    opened = one("incident", "open", "--title", "t", "--json")
    assert isinstance(opened, dict) and opened["step"] == "detected"
    step = one("incident", "close", str(opened["incident_id"]), "--json")
    assert isinstance(step, dict) and step["closed"] is True
    assert isinstance(one("incident", "show", str(opened["incident_id"]), "--json"), list)
    assert one("approvals", "list", "--json") == []
    assert isinstance(one("risk", "alerts", "--json"), list)
    assert isinstance(one("statement", "0x" + "11" * 20, "--json"), dict)
    stopped = one("devnet", "--stop", "--json")
    assert stopped == {"stopped": False}


def test_the_decoded_errors_are_the_compiled_contracts() -> None:
    """Every custom error ``AuditAnchor`` can revert with is known to the decoder, with the
    same parameter names and types (compiled artifacts are cached)."""
    from chainaudit.chain.anchor_abi import AUDIT_ANCHOR_ERRORS  # noqa: PLC0415
    from chainaudit.chain.toolchain import compile_contracts  # noqa: PLC0415

    compiled = {
        entry["name"]: [(p["name"], p["type"]) for p in entry["inputs"]]
        for entry in compile_contracts()["AuditAnchor"].abi
        if entry["type"] == "error"
    }
    known = {
        entry["name"]: [(p["name"], p["type"]) for p in entry["inputs"]]
        for entry in AUDIT_ANCHOR_ERRORS
    }
    assert set(known) - set(compiled) == {"Error", "Panic"}  # Solidity's own
    for name, params in compiled.items():
        assert known[name] == params, name
