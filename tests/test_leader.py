"""One leader for background work (:mod:`chainaudit.leader`): the lease row, fencing, and
failover of a real ``chainaudit serve --workers 2`` whose leader is killed with ``kill -9``
mid-anchor (after the signed transaction is recorded, before and after its broadcast) and
mid-index (events in the outbox, not yet in the log; in the log, not yet out of the outbox).

The pause points are the test-only hook :func:`chainaudit.leader.pause_point`, armed by
environment variables no deployment sets. Failover times are printed (``pytest -s``).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from eth_account import Account

from chainaudit.anchor_abi import AUDIT_ANCHOR_ABI
from chainaudit.anchoring import ANCHORED, SUBMITTED, AnchorBook
from chainaudit.chain import Chain, deployment_block
from chainaudit.deploy import contract_address
from chainaudit.devnet import Devnet
from chainaudit.errors import NotLeaderError
from chainaudit.escrow import EscrowClient
from chainaudit.indexer import KIND as EVENT_KIND
from chainaudit.leader import PAUSE_ENV, PAUSE_FILE_ENV, Elector, Fence, SqliteLease
from chainaudit.store import DB_NAME, Log
from tests.api.test_workers import Served, audit_clean, record, serve_workers

TAKEOVER_LIMIT = 5.0


def wait_for(what: str, check: Callable[[], object], timeout: float = 60.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


# -- the lease and the fence, on a real SQLite file -------------------------------------------


def test_the_lease_is_taken_once_renewed_and_taken_over_with_a_new_token(tmp_path: Path) -> None:
    a, b = SqliteLease(tmp_path / DB_NAME), SqliteLease(tmp_path / DB_NAME)
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


def test_a_deposed_leader_writes_no_anchor(tmp_path: Path) -> None:
    """The fence is checked inside the write's own transaction: after a takeover, the old
    term's AnchorBook writes nothing and says why."""
    log = Log.open(tmp_path)
    lease = SqliteLease(log.path)
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


def test_an_elector_leads_alone_at_once_and_hands_over_on_stop(tmp_path: Path) -> None:
    events: list[str] = []
    path = tmp_path / DB_NAME
    Log(path).close()

    def elector(name: str) -> Elector:
        return Elector(
            SqliteLease(path),
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


def paused_leader(served: Served, marker: Path) -> tuple[int, int]:
    """Wait for the leader to reach the pause point; ``(its pid, its token)``."""
    wait_for("the pause point", marker.exists, timeout=90)
    wait_for("the marker's pid", lambda: marker.read_text().strip(), timeout=5)
    paused = int(marker.read_text())
    leader = served.leader()
    assert leader is not None and leader[0] == paused, "the paused process is the leader"
    return leader


def kill_leader(served: Served, leader: tuple[int, int]) -> float:
    """Kill the paused leader with SIGKILL and wait until another process holds the lease
    with a newer token; returns the seconds that took (asserted under 5)."""
    paused, token = leader
    os.kill(paused, signal.SIGKILL)
    killed_at = time.monotonic()

    def successor() -> tuple[int, int] | None:
        now = served.leader()
        return now if now is not None and now[1] > token else None

    new = wait_for("a new leader", successor, timeout=15)
    takeover = time.monotonic() - killed_at
    assert isinstance(new, tuple) and new[0] != paused
    assert takeover < TAKEOVER_LIMIT, f"takeover took {takeover:.2f} s"
    return takeover


def anchors(served: Served) -> list[tuple[int, int, str, bytes | None]]:
    with sqlite3.connect(served.settings.data_dir / DB_NAME, timeout=30) as db:
        return [
            (int(r[0]), int(r[1]), str(r[2]), r[3])
            for r in db.execute("SELECT id, tree_size, status, tx_hash FROM anchors ORDER BY id")
        ]


@pytest.mark.parametrize("pause", ["anchor-recorded", "anchor-broadcast"])
def test_leader_killed_mid_anchor_is_replaced_and_anchors_once(
    pause: str, tmp_path: Path, anvil: Devnet
) -> None:
    marker = tmp_path / "paused"
    env = {PAUSE_ENV: pause, PAUSE_FILE_ENV: str(marker)}
    with serve_workers(tmp_path, anvil, 2, **env) as served:
        with served.client() as http:
            for i in range(5):
                assert http.post("/v1/records", json=record(f"a-{i}")).status_code == 201
            size = http.get("/v1/checkpoints/latest").json()["tree_size"]
            assert http.post("/v1/anchors").status_code == 202  # any worker: to the leader
        leader = paused_leader(served, marker)
        (journaled,) = anchors(served)  # signed and recorded (and sent, after the broadcast)
        assert journaled[1] == size and journaled[2] == SUBMITTED and journaled[3]
        takeover = kill_leader(served, leader)
        killed_at = time.monotonic() - takeover

        def confirmed() -> bool:
            return any(a[2] in ANCHORED and a[1] >= size for a in anchors(served))

        wait_for("the anchor to be confirmed", confirmed, timeout=30)
        failover = time.monotonic() - killed_at
        print(
            f"\n{pause}: takeover {takeover:.2f} s, leader killed -> anchor confirmed "
            f"{failover:.2f} s"
        )
        (done,) = anchors(served)  # the journaled anchor, finished: no second one
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
    with Log.open(served.settings.data_dir) as log:
        return [e.record_id for e in log.scan(start=0, limit=100_000, kind=EVENT_KIND)]


@pytest.mark.parametrize("pause", ["index-outbox", "index-appended"])
def test_leader_killed_mid_index_loses_and_repeats_no_event(
    pause: str, tmp_path: Path, anvil: Devnet
) -> None:
    marker = tmp_path / "paused"
    env = {PAUSE_ENV: pause, PAUSE_FILE_ENV: str(marker), "CHAINAUDIT_CONFIRMATIONS": "1"}
    with serve_workers(tmp_path, anvil, 2, escrow=True, **env) as served:
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
