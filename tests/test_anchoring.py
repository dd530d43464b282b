"""The anchoring service against a real Anvil: batching, the state machine, restarts, reorgs,
outages and rewritten history; the anchor book beside the log in SQLite and in PostgreSQL
(the suite's server), each test on both engines (``log_database``)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from chainaudit.app.deploy import deploy_contracts
from chainaudit.chain.anchor_abi import AUDIT_ANCHOR_ABI
from chainaudit.chain.chain import Chain
from chainaudit.chain.devnet import Devnet, free_port
from chainaudit.core import merkle
from chainaudit.core.errors import StoreError
from chainaudit.core.records import PreparedRecord, prepare
from chainaudit.log.store import Log
from chainaudit.service import anchoring
from chainaudit.service.anchoring import (
    CONFIRMED,
    FINAL,
    PENDING,
    SUBMITTED,
    Anchorer,
    AnchorPolicy,
    AnchorRecord,
)
from tests.tamper import rewrite_tree, set_body


def records(start: int, count: int) -> list[PreparedRecord]:
    return [
        prepare(
            {
                "id": f"tx-{i}",
                "kind": "transaction",
                "timestamp": "2026-11-21T09:30:00Z",
                "actor": "buyer:acme",
                "payload": {"amount": i},
            }
        )
        for i in range(start, start + count)
    ]


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def account(anvil: Devnet) -> LocalAccount:
    return Account.from_key(anvil.accounts[0].private_key)


@pytest.fixture
def chain(anvil: Devnet) -> Chain:
    return Chain(anvil.rpc_url)


@pytest.fixture
def contract(chain: Chain, account: LocalAccount) -> str:
    return deploy_contracts(chain, account)["AuditAnchor"].address


@pytest.fixture
def log(tmp_path: Path, log_database: str | None) -> Iterator[Log]:
    with Log.open(tmp_path / "data", database_url=log_database) as opened:
        yield opened


@pytest.fixture
def sqlite_log(tmp_path: Path) -> Iterator[Log]:
    with Log.open(tmp_path / "data") as opened:
        yield opened


def make_anchorer(
    log: Log, chain: Chain, account: LocalAccount, contract: str, **policy: Any
) -> Anchorer:
    settings = {"max_batch_records": 50, "max_batch_seconds": 30.0, "finality": 3, **policy}
    return Anchorer(log, chain, account, contract, policy=AnchorPolicy(**settings), clock=Clock())


def settle(anchorer: Anchorer, anchor_id: int, status: str, ticks: int = 100) -> AnchorRecord:
    """Tick until anchor ``anchor_id`` reaches ``status``. Anvil mines a transaction at once,
    but its receipt can trail the broadcast by a moment on a busy machine, so one tick after
    the submission is not always enough."""
    for _ in range(ticks):
        record = anchorer.book.get(anchor_id)
        if record.status == status:
            return record
        anchorer.tick()
        time.sleep(0.02)
    raise AssertionError(f"anchor {anchor_id} stayed {anchorer.book.get(anchor_id).status}")


def mine(w3: Web3, blocks: int) -> None:
    for _ in range(blocks):
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def on_chain(chain: Chain, contract: str) -> list[tuple[int, bytes]]:
    anchor = chain.contract(contract, AUDIT_ANCHOR_ABI)
    count = anchor.functions.checkpointCount().call()
    return [
        (size, bytes(root))
        for size, root, _, _ in (anchor.functions.checkpoint(i).call() for i in range(count))
    ]


def test_batches_by_count_then_by_age_and_reaches_final(
    log: Log, chain: Chain, account: LocalAccount, contract: str, w3: Web3
) -> None:
    anchorer = make_anchorer(log, chain, account, contract)
    log.append(records(0, 10))
    assert anchorer.tick() is None  # 10 < 50 records and not 30 s old: not due
    log.append(records(10, 45))
    first = anchorer.tick()
    assert first is not None and (first.status, first.tree_size) == (PENDING, 55)
    assert first.root == log.root()
    submitted = anchorer.tick()
    assert submitted is not None and submitted.status == SUBMITTED and submitted.tx_hash
    confirmed = settle(anchorer, first.id, CONFIRMED)
    assert confirmed.seq == 0
    assert confirmed.block_hash == chain.block_hash(confirmed.block_number or 0)
    mine(w3, 3)
    final = settle(anchorer, first.id, FINAL)
    assert on_chain(chain, contract) == [(55, log.root())]

    log.append(records(55, 5))
    assert anchorer.tick() is None
    anchorer.clock.now += 31  # type: ignore[attr-defined]
    second = anchorer.tick()
    assert second is not None and (second.status, second.tree_size) == (PENDING, 60)
    settle(anchorer, second.id, CONFIRMED)
    assert on_chain(chain, contract) == [(55, final.root), (60, log.root())]

    index = 57
    proof = log.inclusion_proof(index, 60)
    onchain = chain.contract(contract, AUDIT_ANCHOR_ABI)
    assert onchain.functions.verifyInclusion(1, index, log.leaf_hash(index), proof).call()
    assert not onchain.functions.verifyInclusion(1, index, log.leaf_hash(0), proof).call()


def test_anchor_now_ignores_the_batch_policy(
    log: Log, chain: Chain, account: LocalAccount, contract: str
) -> None:
    log.append(records(0, 3))
    anchorer = make_anchorer(log, chain, account, contract)
    assert anchorer.book.engine == log.engine  # the anchors sit beside the log's tables
    done = anchorer.anchor_now(timeout=30)
    assert done.tree_size == 3 and done.status in (CONFIRMED, FINAL)
    assert on_chain(chain, contract) == [(3, log.root())]
    with sqlite3.connect(log.path) as db:  # on PostgreSQL, nothing of them in the file
        in_file = db.execute("SELECT name FROM sqlite_master WHERE name = 'anchors'").fetchall()
    assert in_file == ([("anchors",)] if log.engine == "sqlite" else [])


def test_restart_after_signing_before_sending_neither_loses_nor_duplicates(
    log: Log, chain: Chain, account: LocalAccount, contract: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between recording the signed transaction and broadcasting it (a fault that
    cannot be caused for real at that exact line, so it is injected)."""
    log.append(records(0, 60))
    crashing = make_anchorer(log, chain, account, contract)
    assert crashing.tick() is not None  # pending

    def crash(*_: object) -> None:
        raise SystemExit("killed")

    monkeypatch.setattr(anchoring, "broadcast", crash)
    with pytest.raises(SystemExit):
        crashing.tick()
    monkeypatch.undo()
    assert crashing.book.active() is not None
    assert crashing.book.active().status == SUBMITTED  # type: ignore[union-attr]
    assert on_chain(chain, contract) == []  # never sent

    restarted = make_anchorer(log, chain, account, contract)
    settle(restarted, 1, CONFIRMED)
    assert [a.status for a in restarted.book.all()] == [CONFIRMED]
    assert on_chain(chain, contract) == [(60, log.root())]  # re-broadcast exactly once


def test_restart_after_sending_adopts_the_mined_anchor(
    log: Log, chain: Chain, account: LocalAccount, contract: str
) -> None:
    log.append(records(0, 60))
    first = make_anchorer(log, chain, account, contract)
    first.tick()
    first.tick()  # submitted and mined (Anvil mines at once)
    restarted = make_anchorer(log, chain, account, contract)
    settle(restarted, 1, CONFIRMED)
    assert [a.status for a in restarted.book.all()] == [CONFIRMED]
    assert on_chain(chain, contract) == [(60, log.root())]


def test_reorg_that_drops_the_anchor_is_reanchored(
    log: Log, chain: Chain, account: LocalAccount, contract: str, w3: Web3
) -> None:
    anchorer = make_anchorer(log, chain, account, contract, finality=10)
    log.append(records(0, 60))
    anchorer.tick()
    confirmed = settle(anchorer, 1, CONFIRMED)
    mine(w3, 1)
    w3.provider.make_request("anvil_reorg", [2, []])  # type: ignore[arg-type]
    assert on_chain(chain, contract) == []  # the anchoring block is gone

    reorged = anchorer.tick()
    assert reorged is not None and reorged.status == SUBMITTED
    assert reorged.last_error == "reorganised out of the canonical chain"
    again = settle(anchorer, confirmed.id, CONFIRMED)
    assert again.block_hash != confirmed.block_hash
    assert on_chain(chain, contract) == [(60, log.root())]


def test_chain_outage_keeps_records_flowing_and_anchors_on_return(
    tmp_path: Path, account: LocalAccount, log_database: str | None
) -> None:
    port = free_port()
    state = tmp_path / "anvil-state.json"
    with Log.open(tmp_path / "data", database_url=log_database) as log:
        devnet = Devnet(port=port, extra_args=["--state", str(state)])
        devnet.start()
        chain = Chain(devnet.rpc_url, timeout=2)
        contract = deploy_contracts(chain, account)["AuditAnchor"].address
        anchorer = make_anchorer(log, chain, account, contract)
        log.append(records(0, 60))
        anchorer.tick()  # pending
        devnet.stop()  # Anvil saves its state on a clean stop

        assert anchorer.tick() is not None  # no exception: the outage is recorded
        assert anchorer.last_error is not None and "unreachable" in anchorer.last_error
        log.append(records(60, 40))  # the log keeps accepting records meanwhile
        assert log.size == 100

        with Devnet(port=port, extra_args=["--state", str(state)]):
            anchored = settle(anchorer, 1, CONFIRMED)
            assert anchorer.last_error is None and anchored.tree_size == 60
            anchorer.request()
            anchorer.tick()
            settle(anchorer, 2, CONFIRMED)
            assert on_chain(chain, contract) == [(60, log.root_at(60)), (100, log.root())]


def test_rewritten_history_cannot_be_anchored(
    tmp_path: Path,
    chain: Chain,
    account: LocalAccount,
    contract: str,
    log_at: Callable[..., Log],
) -> None:
    honest, forged = records(0, 60), records(0, 60)
    with log_at(tmp_path / "honest") as log:
        log.append(honest)
        make_anchorer(log, chain, account, contract).anchor_now(timeout=30)
    with log_at(tmp_path / "forged") as other:
        other.append(forged[:59] + records(500, 1) + records(60, 10))
        rewriter = make_anchorer(other, chain, account, contract)
        rewriter.request()
        rewriter.tick()
        with pytest.raises(StoreError, match="history was rewritten"):
            rewriter.tick()
    assert on_chain(chain, contract) == [(60, merkle.root_hash([r.leaf_hash for r in honest]))]


def test_audit_against_chain_catches_a_consistent_rewrite(
    sqlite_log: Log, chain: Chain, account: LocalAccount, contract: str
) -> None:
    """SQLite only: the rewrite is done on the file by hand (tests/tamper.py)."""
    log = sqlite_log
    honest = records(0, 40)
    log.append(honest)
    make_anchorer(log, chain, account, contract).anchor_now(timeout=30)
    assert anchoring.audit_against_chain(log, chain, contract) == []

    # Rewrite record 5 and every tree node above it, as someone with the database would.
    forged = records(5, 1)[0]
    leaves = [log.leaf_hash(i) for i in range(40)]
    leaves[5] = forged.leaf_hash
    db = sqlite3.connect(log.path)
    set_body(db, 5, forged.body)
    rewrite_tree(db, leaves)
    db.execute("UPDATE checkpoints SET root = ?", (merkle.root_hash(leaves),))
    db.commit()
    db.close()
    with Log.open(log.path.parent) as reopened:
        assert reopened.audit().clean  # the local view is consistent with itself ...
        findings = anchoring.audit_against_chain(reopened, chain, contract)
    assert [(f.problem, f.index) for f in findings] == [("history", 0)]  # ... the chain is not
    assert "differ from anchored checkpoint 0" in findings[0].detail
