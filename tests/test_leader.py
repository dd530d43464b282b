"""One leader for background work (:mod:`chainaudit.service.leader`): the lease row, fencing, and
failover of a real ``chainaudit serve --workers 2`` whose leader is killed with ``kill -9``
mid-anchor (after the signed transaction is recorded, before and after its broadcast) and
mid-index (events in the outbox, not yet in the log; in the log, not yet out of the outbox).
Every test runs on both engines (``log_database``): the lease row, the anchors and the
escrow index in the log's SQLite file, or in its PostgreSQL database (the suite's server);
and two API processes on two data directories ("nodes") sharing one PostgreSQL database
elect one leader and anchor once, as separate machines would.

The pause points are the test-only hook :func:`chainaudit.service.leader.pause_point`, armed by
environment variables no deployment sets. Failover times are printed (``pytest -s``).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from chainaudit.app.deploy import contract_address
from chainaudit.app.settings import Settings
from chainaudit.chain.anchor_abi import AUDIT_ANCHOR_ABI
from chainaudit.chain.chain import Chain, deployment_block
from chainaudit.chain.devnet import Devnet, free_port
from chainaudit.chain.escrow import EscrowClient
from chainaudit.core.errors import NotLeaderError, StoreError
from chainaudit.log import database
from chainaudit.log.store import DB_NAME, Log
from chainaudit.service.anchoring import ANCHORED, SUBMITTED, AnchorBook
from chainaudit.service.indexer import KIND as EVENT_KIND
from chainaudit.service.leader import (
    PAUSE_ENV,
    PAUSE_FILE_ENV,
    DatabaseLease,
    Elector,
    Fence,
    PostgresLease,
    SqliteLease,
    open_lease,
)
from tests.api.conftest import issue_keys, make_settings
from tests.api.test_workers import Served, audit_clean, record, serve_env, serve_workers

TAKEOVER_LIMIT = 5.0


def wait_for(what: str, check: Callable[[], object], timeout: float = 60.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


# -- the lease and the fence, on a real SQLite file and a real PostgreSQL database -------------


def lease_for(tmp_path: Path, log_database: str | None) -> DatabaseLease:
    """The lease of the test's engine: the log's SQLite file, or its PostgreSQL database."""
    return open_lease(tmp_path / DB_NAME, database_url=log_database)


def test_the_lease_is_taken_once_renewed_and_taken_over_with_a_new_token(
    tmp_path: Path, log_database: str | None
) -> None:
    a, b = lease_for(tmp_path, log_database), lease_for(tmp_path, log_database)
    assert isinstance(a, PostgresLease if log_database else SqliteLease)
    first = a.acquire("a", 0.3)
    assert first is not None and first.token == 1
    assert b.acquire("b", 0.3) is None  # running: refused
    renewed = a.renew(first, 0.3)
    assert renewed is not None and renewed.token == 1
    time.sleep(0.35)
    second = b.acquire("b", 5.0)  # expired: taken with a larger token
    assert second is not None and second.token == 2 and second.holder == "b"
    assert a.renew(first, 5.0) is None  # the old term cannot come back
    b.release(second)
    third = a.acquire("a", 5.0)  # released: free at once
    assert third is not None and third.token == 3
    a.close()
    b.close()


def test_a_postgresql_lease_outlives_a_lost_connection(database_url: str) -> None:
    """The server ends the lease's connection (as a restart or a cut link would): that one
    call fails with StoreError (the elector logs it and tries again), the next reconnects."""
    lease = PostgresLease(database_url)
    term = lease.acquire("a", 5.0)
    assert term is not None and lease._db is not None
    (pid,) = lease._db.execute("SELECT pg_backend_pid()").fetchone()
    with closing(database.connect(database_url)) as admin:
        assert admin.execute("SELECT pg_terminate_backend(?)", (pid,)).fetchone()[0] is True
    with pytest.raises(StoreError, match="cannot write the background lease"):
        lease.renew(term, 5.0)
    renewed = lease.renew(term, 5.0)  # on a new connection
    assert renewed is not None and renewed.token == term.token
    assert lease.current() == renewed
    lease.close()


def test_a_deposed_leader_writes_no_anchor(tmp_path: Path, log_database: str | None) -> None:
    """The fence is checked inside the write's own transaction: after a takeover, the old
    term's AnchorBook writes nothing and says why."""
    log = Log.open(tmp_path, database_url=log_database)
    lease = lease_for(tmp_path, log_database)
    old = lease.acquire("old", 0.1)
    assert old is not None
    book = AnchorBook(log, fence=Fence(old.name, old.token))
    anchor = book.create(1, b"\x01" * 32, 31337, "0x" + "00" * 20)
    time.sleep(0.15)
    new = lease.acquire("new", 5.0)
    assert new is not None
    with pytest.raises(NotLeaderError, match=f"token {old.token}"):
        book.update(anchor.id, status=SUBMITTED, tx_hash=b"\x02" * 32)
    with pytest.raises(NotLeaderError):
        book.create(2, b"\x03" * 32, 31337, "0x" + "00" * 20)
    assert [(a.id, a.status, a.tx_hash) for a in book.all()] == [(anchor.id, "pending", None)]
    book.fence = Fence(new.name, new.token)
    assert book.update(anchor.id, status=SUBMITTED).status == SUBMITTED
    book.close()
    lease.close()
    log.close()


def test_a_takeover_waits_for_the_deposed_leaders_transaction_in_flight(
    tmp_path: Path, log_database: str | None
) -> None:
    """A fenced write that checked its token before the lease expired still commits under its
    term: the takeover waits for that transaction (SQLite: the file's writer lock;
    PostgreSQL: the lease row read ``FOR SHARE``), and the next fenced write is refused."""
    log = Log.open(tmp_path, database_url=log_database)
    lease = lease_for(tmp_path, log_database)
    old = lease.acquire("old", 0.2)
    assert old is not None
    fence = Fence(old.name, old.token)
    db = database.connect(log.database_url or log.path)
    db.execute("CREATE TABLE IF NOT EXISTS work (n INTEGER)")
    taken: list[tuple[float, int]] = []
    with fence.transaction(db):  # checked while current ...
        time.sleep(0.3)  # ... the lease expires meanwhile
        rival = lease_for(tmp_path, log_database)
        started = time.monotonic()

        def take_over() -> None:
            term = rival.acquire("new", 5.0)
            taken.append((time.monotonic() - started, term.token if term else 0))

        thread = threading.Thread(target=take_over)
        thread.start()
        time.sleep(0.5)
        assert not taken, "the takeover did not wait for the transaction in flight"
        db.execute("INSERT INTO work VALUES (1)")
    thread.join(timeout=10)
    assert taken and taken[0][0] >= 0.5 and taken[0][1] == old.token + 1
    assert [tuple(r) for r in db.execute("SELECT n FROM work")] == [(1,)]  # committed
    with pytest.raises(NotLeaderError), fence.transaction(db):
        db.execute("INSERT INTO work VALUES (2)")
    assert [tuple(r) for r in db.execute("SELECT n FROM work")] == [(1,)]
    for closable in (db, rival, lease, log):
        closable.close()


def test_an_elector_leads_alone_at_once_and_hands_over_on_stop(
    tmp_path: Path, log_database: str | None
) -> None:
    events: list[str] = []
    Log.open(tmp_path, database_url=log_database).close()

    def elector(name: str) -> Elector:
        return Elector(
            lease_for(tmp_path, log_database),
            on_elected=lambda fence: events.append(f"{name} leads {fence.token}"),
            on_deposed=lambda: events.append(f"{name} follows"),
            seconds=1.0,
            renew_every=0.2,
            follow_every=0.1,
        )

    one, two = elector("one"), elector("two")
    one.start()
    assert one.is_leader and events == ["one leads 1"]  # no wait for a lone process
    two.start()
    time.sleep(0.5)
    assert not two.is_leader  # renewed: the follower waits
    one.stop()  # releases: the follower takes over within its next try
    wait_for("two to lead", lambda: two.is_leader, timeout=2)
    two.stop()
    assert events == ["one leads 1", "one follows", "two leads 2", "two follows"]


# -- failover of real worker processes ----------------------------------------------------------


def leader_of(settings: Settings) -> tuple[int, int] | None:
    """``(pid, token)`` of the unexpired holder of the background lease (either engine)."""
    with closing(
        open_lease(settings.data_dir / DB_NAME, database_url=settings.log_database_url)
    ) as lease:
        term = lease.live()
    return None if term is None else (int(term.holder.split(":")[1]), term.token)


def paused_leader(served: Served, marker: Path) -> tuple[int, int]:
    """Wait for the leader to reach the pause point; ``(its pid, its token)``."""
    wait_for("the pause point", marker.exists, timeout=90)
    wait_for("the marker's pid", lambda: marker.read_text().strip(), timeout=5)
    paused = int(marker.read_text())
    leader = leader_of(served.settings)
    assert leader is not None and leader[0] == paused, "the paused process is the leader"
    return leader


def kill_leader(served: Served, leader: tuple[int, int]) -> float:
    """Kill the paused leader with SIGKILL and wait until another process holds the lease
    with a newer token; returns the seconds that took (asserted under 5)."""
    paused, token = leader
    os.kill(paused, signal.SIGKILL)
    killed_at = time.monotonic()

    def successor() -> tuple[int, int] | None:
        now = leader_of(served.settings)
        return now if now is not None and now[1] > token else None

    new = wait_for("a new leader", successor, timeout=15)
    takeover = time.monotonic() - killed_at
    assert isinstance(new, tuple) and new[0] != paused
    assert takeover < TAKEOVER_LIMIT, f"takeover took {takeover:.2f} s"
    return takeover


def anchors(settings: Settings) -> list[tuple[int, int, str, bytes | None]]:
    """The anchors table beside the log (either engine), in id order."""
    db = database.connect_reader(settings.log_database_url or settings.data_dir / DB_NAME)
    with closing(db):
        if not db.has_table("anchors"):
            return []
        rows = db.execute("SELECT id, tree_size, status, tx_hash FROM anchors ORDER BY id")
        return [(int(r[0]), int(r[1]), str(r[2]), r[3]) for r in rows]


@pytest.mark.parametrize("pause", ["anchor-recorded", "anchor-broadcast"])
def test_leader_killed_mid_anchor_is_replaced_and_anchors_once(
    pause: str, tmp_path: Path, anvil: Devnet, log_database: str | None
) -> None:
    marker = tmp_path / "paused"
    env = {PAUSE_ENV: pause, PAUSE_FILE_ENV: str(marker)}
    with serve_workers(tmp_path, anvil, 2, database_url=log_database, **env) as served:
        with served.client() as http:
            for i in range(5):
                assert http.post("/v1/records", json=record(f"a-{i}")).status_code == 201
            size = http.get("/v1/checkpoints/latest").json()["tree_size"]
            assert http.post("/v1/anchors").status_code == 202  # any worker: to the leader
        leader = paused_leader(served, marker)
        (journaled,) = anchors(
            served.settings
        )  # signed and recorded (and sent, after the broadcast)
        assert journaled[1] == size and journaled[2] == SUBMITTED and journaled[3]
        takeover = kill_leader(served, leader)
        killed_at = time.monotonic() - takeover

        def confirmed() -> bool:
            return any(a[2] in ANCHORED and a[1] >= size for a in anchors(served.settings))

        wait_for("the anchor to be confirmed", confirmed, timeout=30)
        failover = time.monotonic() - killed_at
        print(
            f"\n{pause}: takeover {takeover:.2f} s, leader killed -> anchor confirmed "
            f"{failover:.2f} s"
        )
        (done,) = anchors(served.settings)  # the journaled anchor, finished: no second one
        assert (done[0], done[1], done[3]) == (journaled[0], size, journaled[3])
        contract = Chain(anvil.rpc_url).contract(
            str(served.settings.anchor_contract), AUDIT_ANCHOR_ABI
        )
        assert contract.functions.checkpointCount().call() == 1  # anchored once on chain
        assert contract.functions.latestCheckpoint().call()[1] == size
        # the survivors keep anchoring: a later request makes a second, later checkpoint
        with served.client() as http:
            assert http.post("/v1/records", json=record("a-after")).status_code == 201
            assert http.post("/v1/anchors").status_code == 202
        wait_for("the next anchor", lambda: contract.functions.checkpointCount().call() == 2)
        audit_clean(served)


def escrow_address(served: Served, anvil: Devnet) -> str:
    return contract_address(served.settings, Chain(anvil.rpc_url), "SupplyChainEscrow")


def escrow_events(served: Served, anvil: Devnet) -> int:
    """How many events the vault emitted since its deployment (from the chain)."""
    chain = Chain(anvil.rpc_url)
    start = deployment_block(served.settings.deployments_dir, chain.chain_id(), "SupplyChainEscrow")
    query = {"address": escrow_address(served, anvil), "fromBlock": start, "toBlock": "latest"}
    return len(chain.w3.eth.get_logs(query))  # type: ignore[arg-type]


def indexed(served: Served) -> list[str]:
    settings = served.settings
    with Log.open(settings.data_dir, database_url=settings.log_database_url) as log:
        return [e.record_id for e in log.scan(start=0, limit=100_000, kind=EVENT_KIND)]


@pytest.mark.parametrize("pause", ["index-outbox", "index-appended"])
def test_leader_killed_mid_index_loses_and_repeats_no_event(
    pause: str, tmp_path: Path, anvil: Devnet, log_database: str | None
) -> None:
    marker = tmp_path / "paused"
    env = {PAUSE_ENV: pause, PAUSE_FILE_ENV: str(marker), "CHAINAUDIT_CONFIRMATIONS": "1"}
    with serve_workers(tmp_path, anvil, 2, escrow=True, database_url=log_database, **env) as served:
        before = escrow_events(served, anvil)
        assert before > 0  # the deployment's own events: the first tick pauses on them
        takeover = kill_leader(served, paused_leader(served, marker))
        killed_at = time.monotonic() - takeover
        # more events after the takeover, indexed by the new leader
        client = EscrowClient(Chain(anvil.rpc_url), escrow_address(served, anvil))
        deployer = Account.from_key(anvil.accounts[0].private_key)
        client.pause(deployer)
        client.unpause(deployer)
        total = escrow_events(served, anvil)
        assert total == before + 2
        Chain(anvil.rpc_url).w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        wait_for(f"{total} indexed events", lambda: len(indexed(served)) >= total, timeout=30)
        print(
            f"\n{pause}: takeover {takeover:.2f} s, every event indexed "
            f"{time.monotonic() - killed_at:.2f} s after the kill"
        )
        time.sleep(1.5)  # a few more indexer ticks: nothing may come twice
        ids = indexed(served)
        assert len(ids) == total and len(set(ids)) == total
        audit_clean(served)  # includes the escrow index against the log


# -- two nodes: two data directories, one PostgreSQL database -----------------------------------


@dataclasses.dataclass
class Node:
    """A ``chainaudit serve`` process on a data directory of its own."""

    url: str
    process: subprocess.Popen[str]


@contextmanager
def serve_node(settings: Settings) -> Iterator[Node]:
    """Run ``chainaudit serve`` with ``settings`` until the block ends (then SIGTERM, unless
    the test killed it)."""
    command = [sys.executable, "-m", "chainaudit", "serve", "--port", str(free_port())]
    process = subprocess.Popen(
        command, env=serve_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "serving the API at" not in line:
        process.kill()
        pytest.fail(f"serve did not start: {line!r} {process.communicate()[1][-3000:]}")
    try:
        yield Node(line.split("serving the API at ")[1].split()[0], process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def test_two_nodes_sharing_one_postgresql_database_elect_one_leader_and_anchor_once(
    tmp_path: Path, anvil: Devnet, database_url: str
) -> None:
    """What separate machines do: two API processes on two data directories, one database.
    One of them leads; records appended through both are in one tree; an anchor requested
    at the follower is made once, by the leader; killed, the leader is replaced by the other
    node within 5 s, which anchors the next checkpoint."""
    one = make_settings(tmp_path, anvil, database_url=database_url)
    two = one.model_copy(update={"data_dir": tmp_path / "node-two"})
    tokens, _, _ = issue_keys(one, anvil)
    headers = {"Authorization": f"Bearer {tokens['operator']}"}
    contract = Chain(anvil.rpc_url).contract(str(one.anchor_contract), AUDIT_ANCHOR_ABI)
    with serve_node(one) as a, serve_node(two) as b:
        pids = {a.process.pid: a, b.process.pid: b}
        leader = wait_for("a leader", lambda: leader_of(one), timeout=10)
        assert isinstance(leader, tuple) and leader[0] in pids
        follower = next(node for pid, node in pids.items() if pid != leader[0])
        indices, size = [], 0
        for i in range(6):
            node = (a, b)[i % 2]
            answer = httpx.post(f"{node.url}/v1/records", json=record(f"n-{i}"), headers=headers)
            assert answer.status_code == 201, answer.text
            indices.append(answer.json()["results"][0]["leaf_index"])
            size = answer.json()["tree_size"]
        assert indices == sorted(set(indices)) and indices[-1] < size  # one tree, in order
        assert httpx.post(f"{follower.url}/v1/anchors", headers=headers).status_code == 202

        def confirmed(size: int) -> Callable[[], bool]:
            return lambda: any(s in ANCHORED and t >= size for _, t, s, _ in anchors(one))

        wait_for("the anchor to be confirmed", confirmed(size), timeout=30)
        assert contract.functions.checkpointCount().call() == 1
        ((_, anchored, _, _),) = anchors(one)  # one anchor (its request is a record too)
        assert anchored >= size
        for node in (a, b):
            listed = httpx.get(f"{node.url}/v1/anchors", headers=headers).json()
            assert [x["tree_size"] for x in listed["items"]] == [anchored]  # the same
        for data_dir in (one.data_dir, two.data_dir):  # nothing of it in the nodes' files
            with closing(database.connect_reader(data_dir / DB_NAME)) as local:
                assert local.tables("anchors") == local.tables("leader_") == []

        os.kill(leader[0], signal.SIGKILL)
        killed_at = time.monotonic()

        def successor() -> tuple[int, int] | None:
            now = leader_of(one)
            return now if now is not None and now[1] > leader[1] else None

        new = wait_for("the other node to lead", successor, timeout=15)
        takeover = time.monotonic() - killed_at
        assert isinstance(new, tuple) and new[0] == follower.process.pid
        assert takeover < TAKEOVER_LIMIT, f"takeover took {takeover:.2f} s"
        answer = httpx.post(f"{follower.url}/v1/records", json=record("n-6"), headers=headers)
        assert answer.status_code == 201 and answer.json()["results"][0]["leaf_index"] >= size
        later = answer.json()["tree_size"]
        assert httpx.post(f"{follower.url}/v1/anchors", headers=headers).status_code == 202
        wait_for("the next anchor", confirmed(later), timeout=30)
        print(f"\ntwo nodes: takeover {takeover:.2f} s")
    assert contract.functions.checkpointCount().call() == 2
    first, second = anchors(one)
    assert first[1] == anchored and second[1] >= later
