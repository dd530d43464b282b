"""``chainaudit serve --workers N``: N real processes on one port, over one log.

Real processes (the CLI in a subprocess), the session's Anvil, real HTTP on a free loopback
port; the log in SQLite and in PostgreSQL (the suite's server). Concurrent clients append
overlapping and conflicting ids through every worker; the log must then hold every
acknowledged record exactly once, none of the refused ones, audit clean, with the root of a
fresh in-memory build of its leaves; a worker killed with ``kill -9`` mid-append loses
nothing it acknowledged, and the parent replaces it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from chainaudit.app.settings import Settings
from chainaudit.chain.anchor_abi import AUDIT_ANCHOR_ABI
from chainaudit.chain.chain import Chain
from chainaudit.chain.devnet import Devnet, free_port
from chainaudit.core import merkle
from chainaudit.log.store import DB_NAME, Log
from chainaudit.service.leader import open_lease
from tests.api.conftest import issue_keys, make_settings

# Once, not once per engine (tests/api/conftest.py): its tests choose their engine themselves.
pytestmark = pytest.mark.one_engine("its tests choose their engine themselves")


@dataclass
class Served:
    """A ``chainaudit serve --workers N`` process tree."""

    url: str
    process: subprocess.Popen[str]
    settings: Settings
    tokens: dict[str, str]
    env: dict[str, str]

    def workers(self) -> list[int]:
        """The pids of the live worker processes (the parent's children)."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()]

    def leader(self) -> tuple[int, int] | None:
        """``(pid, token)`` of the lease holder, from the lease row (unexpired; in the log's
        SQLite file or PostgreSQL database), or None."""
        path, url = self.settings.data_dir / DB_NAME, self.settings.log_database_url
        with closing(open_lease(path, database_url=url)) as lease:
            term = lease.live()
        return None if term is None else (int(term.holder.split(":")[1]), term.token)

    def client(self, role: str = "operator", **options: Any) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.tokens[role]}"},
            timeout=30,
            **options,
        )


def serve_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that gives a ``chainaudit`` subprocess these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINAUDIT_")}
    env.update(
        CHAINAUDIT_DATA_DIR=str(settings.data_dir),
        CHAINAUDIT_RPC_URL=settings.rpc_url,
        CHAINAUDIT_DEPLOYMENTS_DIR=str(settings.deployments_dir),
        CHAINAUDIT_ANCHOR_CONTRACT=str(settings.anchor_contract),
        CHAINAUDIT_ANCHORER_KEY=settings.anchorer_key.get_secret_value()
        if settings.anchorer_key
        else "",
        CHAINAUDIT_MAX_BATCH_SECONDS=str(settings.max_batch_seconds),
        CHAINAUDIT_MAX_BATCH_RECORDS=str(settings.max_batch_records),
        **extra,
    )
    if settings.log_database_url is not None:
        env["CHAINAUDIT_DATABASE_URL"] = settings.log_database_url
    return env


@contextmanager
def serve_workers(
    tmp: Path,
    anvil: Devnet,
    workers: int,
    *,
    escrow: bool = False,
    database_url: str | None = None,
    **extra: str,
) -> Iterator[Served]:
    """Deploy, issue keys, run ``chainaudit serve --workers N`` until the block ends (then
    SIGTERM: it must stop every worker and exit 0); the log in PostgreSQL at
    ``database_url`` when given."""
    settings = make_settings(tmp, anvil, escrow=escrow, database_url=database_url)
    tokens, _, _ = issue_keys(settings, anvil)
    env = serve_env(settings, **extra)
    command = ["serve", "--workers", str(workers), "--port", str(free_port())]
    process = subprocess.Popen(
        [sys.executable, "-m", "chainaudit", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # printed once every worker accepts connections
    if "serving the API at" not in line:
        process.kill()
        pytest.fail(f"serve did not start: {line!r} {process.communicate()[1][-3000:]}")
    url = line.split("serving the API at ")[1].split()[0]
    served = Served(url, process, settings, tokens, env)
    try:
        yield served
    finally:
        if process.poll() is None:
            children = served.workers()
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=60)
            assert code == 0, process.stderr.read() if process.stderr else code
            assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]


def record(record_id: str, variant: int = 0) -> dict[str, Any]:
    return {
        "id": record_id,
        "kind": "transaction",
        "timestamp": "2026-11-21T09:30:00Z",
        "actor": "buyer:acme",
        "payload": {"amount": 100, "variant": variant},
    }


def body_of(document: dict[str, Any]) -> dict[str, Any]:
    return {k: document[k] for k in ("id", "kind", "actor", "payload")}


def check_log(settings: Settings, acked: dict[str, tuple[int, int]]) -> Log:
    """Every acknowledged id exactly once, at its acknowledged index, with the acknowledged
    variant; the root is a fresh in-memory build of the stored leaves. Returns the log."""
    log = Log.open(settings.data_dir, database_url=settings.log_database_url)
    entries = list(log.entries())
    assert len(entries) == log.size
    ids = [e.record_id for e in entries]
    assert len(ids) == len(set(ids)), "an id is in the log twice"
    by_id = {e.record_id: e for e in entries}
    for record_id, (index, variant) in acked.items():
        entry = by_id[record_id]
        assert entry.index == index
        assert entry.body is not None
        assert json.loads(entry.body)["payload"]["variant"] == variant
    leaves = [merkle.hash_leaf(e.body) for e in entries if e.body is not None]
    assert len(leaves) == log.size
    assert [e.leaf_hash for e in entries] == leaves
    assert merkle.root_hash(leaves) == log.root()
    return log


def audit_clean(served: Served) -> None:
    audit = subprocess.run(
        [sys.executable, "-m", "chainaudit", "audit"],
        check=False,
        env=served.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "audit: clean" in audit.stdout


def test_workers_sequence_concurrent_clients_into_one_tree(
    tmp_path: Path, anvil: Devnet, log_database: str | None
) -> None:
    """3 workers x 6 clients, 40 appends each, over 60 ids: overlapping ids with the same
    content are idempotent, a different variant of a taken id is refused (409); every
    acknowledged record is readable with its proof right after the acknowledgement through
    a fresh connection (any worker), at a tree size not behind it."""
    acked: dict[str, tuple[int, int]] = {}
    refused: list[tuple[str, int]] = []
    problems: list[str] = []
    lock = threading.Lock()

    def client(seed: int, served: Served) -> None:
        rng = random.Random(seed)
        for _ in range(40):
            record_id, variant = f"w-{rng.randrange(60)}", rng.randrange(2)
            with served.client(limits=httpx.Limits(max_keepalive_connections=0)) as http:
                answer = http.post("/v1/records", json=record(record_id, variant))
                if answer.status_code == 409:
                    with lock:
                        refused.append((record_id, variant))
                    continue
                if answer.status_code != 201:
                    problems.append(f"{answer.status_code} {answer.text}")
                    continue
                index = answer.json()["results"][0]["leaf_index"]
                with lock:
                    if acked.setdefault(record_id, (index, variant)) != (index, variant):
                        problems.append(f"{record_id} acknowledged twice differently")
            with served.client(limits=httpx.Limits(max_keepalive_connections=0)) as http:
                proof = http.get(f"/v1/records/{record_id}/proof")
                latest = http.get("/v1/checkpoints/latest").json()["tree_size"]
            if proof.status_code != 200:
                problems.append(f"proof of {record_id}: {proof.status_code} {proof.text}")
                continue
            got = proof.json()
            root = bytes.fromhex(got["checkpoint"]["root"][2:])
            merkle.verify_inclusion(
                bytes.fromhex(got["leaf_hash"][2:]),
                index,
                got["tree_size"],
                [bytes.fromhex(h[2:]) for h in got["inclusion_proof"]],
                root,
            )
            if min(got["tree_size"], latest) <= index:
                problems.append(f"tree size behind the acknowledged leaf {index}")

    with serve_workers(tmp_path, anvil, 3, database_url=log_database) as served:
        assert len(served.workers()) == 3
        threads = [threading.Thread(target=client, args=(n, served)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert not problems, problems[:5]
        assert acked and refused
        for record_id, variant in refused:
            assert acked[record_id][1] != variant  # refused only because the id was taken
        with served.client() as http:
            size = http.get("/v1/checkpoints/latest").json()["tree_size"]
        log = check_log(served.settings, acked)
        assert log.size == size
        for record_id, variant in refused:  # the refused content is nowhere in the log
            entry = log.entry(record_id)
            assert entry.body is not None
            assert json.loads(entry.body)["payload"]["variant"] != variant
        log.close()
        # /metrics, whichever worker answers, sums every worker's appends (the records; the
        # action record that follows each is not counted)
        with served.client("admin") as http:
            exposition = http.get("/metrics").text
        (appended,) = [
            float(line.split()[-1])
            for line in exposition.splitlines()
            if line.startswith("chainaudit_records_appended_total ")
        ]
        assert appended == len(acked)
        # one leader among the workers anchors, whichever worker got the requests
        leader = served.leader()
        assert leader is not None and leader[0] in served.workers()
        for _ in range(3):
            with served.client(limits=httpx.Limits(max_keepalive_connections=0)) as http:
                assert http.post("/v1/anchors").status_code == 202
        contract = Chain(served.settings.rpc_url).contract(
            str(served.settings.anchor_contract), AUDIT_ANCHOR_ABI
        )
        deadline = time.monotonic() + 30
        while contract.functions.checkpointCount().call() == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # time for a second anchor, were a second process anchoring
        assert contract.functions.checkpointCount().call() == 1
        assert contract.functions.latestCheckpoint().call()[1] == size
        audit_clean(served)


def test_a_worker_killed_mid_append_loses_nothing_acknowledged(
    tmp_path: Path, anvil: Devnet, log_database: str | None
) -> None:
    acked: dict[str, tuple[int, int]] = {}
    failed: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client(n: int, served: Served) -> None:
        i = 0
        while not stop.is_set():
            record_id = f"k-{n}-{i}"
            i += 1
            try:
                with served.client(limits=httpx.Limits(max_keepalive_connections=0)) as http:
                    answer = http.post("/v1/records", json=record(record_id))
            except httpx.TransportError:
                failed.append(record_id)  # the killed worker's connection: not acknowledged
                continue
            if answer.status_code == 201:
                with lock:
                    acked[record_id] = (answer.json()["results"][0]["leaf_index"], 0)

    with serve_workers(tmp_path, anvil, 2, database_url=log_database) as served:
        first = served.workers()
        threads = [threading.Thread(target=client, args=(n, served)) for n in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(2.0)
        before = len(acked)
        victim = first[-1]
        os.kill(victim, signal.SIGKILL)
        time.sleep(3.0)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        assert before > 0 and len(acked) > before  # appends went on through the other worker
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the parent replaces the dead worker
            now = served.workers()
            if len(now) == 2 and victim not in now:
                break
            time.sleep(0.2)
        assert len(served.workers()) == 2 and victim not in served.workers()
        check_log(served.settings, acked).close()
        audit_clean(served)
        assert served.process.stderr is not None
    err = served.process.stderr.read()
    assert f"(pid {victim}) was killed by signal 9 (SIGKILL); starting another" in err


def test_workers_that_cannot_start_make_serve_exit_2(tmp_path: Path) -> None:
    """A setting every worker refuses (production without a log key): the parent gives up
    with one clear line, instead of restarting them for ever."""
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINAUDIT_")}
    env.update(CHAINAUDIT_DATA_DIR=str(data), CHAINAUDIT_ENVIRONMENT="production")
    done = subprocess.run(
        [sys.executable, "-m", "chainaudit", "serve", "--workers", "2", "--port", "0"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "the API workers keep exiting before they serve" in last, done.stderr


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_workers_end_with_their_parent(tmp_path: Path) -> None:
    """``kill -9`` of the supervising parent leaves no orphaned worker serving the port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINAUDIT_")}
    env.update(
        CHAINAUDIT_DATA_DIR=str(tmp_path / "data"),
        CHAINAUDIT_RPC_URL=f"http://127.0.0.1:{free_port()}",  # no chain: nothing to anchor
    )
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "chainaudit", "serve", "--workers", "2", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    assert "with 2 worker processes" in process.stdout.readline()
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    assert len(children) == 2
    process.kill()
    process.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(alive(int(pid)) for pid in children):
        assert time.monotonic() < deadline, "a worker outlived its parent"
        time.sleep(0.1)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
