"""The escrow indexer against a real Anvil: every event becomes exactly one record with a
deterministic id, across restarts and crashes; blocks under the confirmation depth wait; a
reorganisation that drops a block retracts its events and indexes the replacement."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chainaudit.chain.devnet import Devnet, free_port
from chainaudit.chain.escrow import DecodedEvent
from chainaudit.core import provenance
from chainaudit.core.records import PreparedRecord, prepare
from chainaudit.log import database
from chainaudit.log.store import Entry, Log
from chainaudit.service import integrity
from chainaudit.service.indexer import Indexer, audit_index, event_record_id, events_for_deal
from tests.escrow_world import AMOUNT, World, h, make_world, rpc

MAX_SAFE = 2**53 - 1


@pytest.fixture(scope="module")
def escrow_base() -> Iterator[World]:
    """This module's own Anvil and escrow world: its reorganisations (``anvil_reorg``) must not
    depend on what other modules did to the session's chain (the two pytest-xdist workers run
    the modules in different orders, and a reorg here once met a state it did not expect)."""
    with Devnet(port=free_port()) as devnet:
        yield make_world(devnet)


@pytest.fixture
def log(tmp_path: Path, log_database: str | None) -> Iterator[Log]:
    """The log (and the indexer's tables beside it) on each engine in turn."""
    with Log.open(tmp_path / "data", database_url=log_database) as opened:
        yield opened


def raw(log: Log) -> database.Database:
    """A plain connection to the database of ``log``'s tables (to tamper with them)."""
    return database.connect(log.database_url or log.path)


def indexer(log: Log, world: World, **options: Any) -> Indexer:
    return Indexer(log, world.chain, world.client.address, **options)


def expected_ids(world: World, events: list[DecodedEvent]) -> list[str]:
    chain_id = world.client.chain_id
    return [event_record_id(chain_id, e.tx_hash, e.log_index, e.block_hash) for e in events]


def escrow_records(log: Log) -> list[Entry]:
    return log.scan(kind="escrow_event", limit=10_000)


def payload(entry: Entry) -> dict[str, Any]:
    assert entry.body is not None
    return dict(json.loads(entry.body)["payload"])


def walk(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)
    else:
        yield value


def open_and_fund(world: World) -> int:
    client = world.client
    deal_id = client.create_deal(world.buyer, world.params(), world.milestones(2)).deal_id
    client.fund(world.buyer, deal_id, 0, AMOUNT)
    return deal_id


def test_every_event_becomes_one_record_with_a_deterministic_id(log: Log, world: World) -> None:
    deal_id = open_and_fund(world)
    client = world.client
    client.mark_shipped(world.supplier, deal_id, 0, h("bill of lading"))
    client.attest(world.inspector1, deal_id, 0, h("report"))

    service = indexer(log, world)
    onchain = client.events(0)
    appended = service.tick()
    assert appended == len(onchain) > 8  # set-up events (roles, inspectors) and the deal's
    records = escrow_records(log)
    assert [r.record_id for r in records] == expected_ids(world, onchain)
    assert service.tick() == 0
    assert service.cursor().number == world.w3.eth.block_number

    by_name = {payload(r)["event"]: (r, payload(r)) for r in records}
    entry, funded = by_name["MilestoneFunded"]
    event = next(e for e in onchain if e.name == "MilestoneFunded")
    block = world.w3.eth.get_block(event.block_number)
    assert funded == {
        "type": "event",
        "chain_id": client.chain_id,
        "contract": client.address,
        "block_number": event.block_number,
        "block_hash": event.block_hash,
        "tx_hash": event.tx_hash,
        "tx_from": world.buyer.address,
        "log_index": event.log_index,
        "event": "MilestoneFunded",
        "deal_id": str(deal_id),
        "args": {
            "dealId": str(deal_id),
            "milestone": "0",
            "buyer": world.buyer.address,
            "amount": str(AMOUNT),
            "fundedTotal": str(AMOUNT),
        },
    }
    assert entry.actor == f"eth:{world.buyer.address}"
    assert entry.timestamp_ms == int(block["timestamp"]) * 1000
    shipped = by_name["MilestoneShipped"][1]
    assert shipped["args"]["documentHash"] == "0x" + h("bill of lading").hex()
    created = by_name["DealCreated"][1]["args"]
    assert created["inspectors"] == list(world.params().inspectors)
    for record in records:
        for value in walk(payload(record)):
            assert not isinstance(value, float)
            assert not isinstance(value, int) or abs(value) <= MAX_SAFE


def test_restarts_and_crashes_neither_lose_nor_duplicate(
    log: Log, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Crashes between the outbox commit and the log append (and right after the append)
    cannot be caused for real at those lines, so they are injected around Log.append."""
    first = indexer(log, world)
    first.tick()
    size = log.size
    deal_id = open_and_fund(world)
    new_events = world.client.events(0, deal_id=deal_id)

    def crash_before(records: list[PreparedRecord], *_: object) -> None:
        raise SystemExit("killed before the append")

    monkeypatch.setattr(log, "append", crash_before)
    with pytest.raises(SystemExit):
        first.tick()
    monkeypatch.undo()
    assert log.refresh() == size and first.pending() == len(new_events)
    first.close()

    restarted = indexer(log, world)
    assert restarted.tick() == len(new_events)
    assert restarted.pending() == 0 and log.size == size + len(new_events)

    world.client.fund(world.buyer, deal_id, 1, AMOUNT)
    real_append = log.append

    def crash_after(records: list[PreparedRecord], *args: Any) -> Any:
        real_append(records, *args)
        raise SystemExit("killed after the append")

    monkeypatch.setattr(log, "append", crash_after)
    with pytest.raises(SystemExit):
        restarted.tick()
    monkeypatch.undo()
    restarted.close()
    assert log.refresh() == size + len(new_events) + 1

    again = indexer(log, world)
    assert again.tick() == 0  # the outbox is re-appended as duplicates, then cleared
    assert again.pending() == 0
    ids = [r.record_id for r in escrow_records(log)]
    assert len(ids) == len(set(ids)) == log.size
    assert ids == expected_ids(world, world.client.events(0))


def test_blocks_wait_for_their_confirmations(log: Log, world: World) -> None:
    service = indexer(log, world, confirmations=3)
    service.tick()
    before = log.size
    world.client.create_deal(world.buyer, world.params(), world.milestones(1))
    assert service.tick() == 0
    rpc(world.w3, "evm_mine")
    assert service.tick() == 0
    rpc(world.w3, "evm_mine")
    assert service.tick() == 2  # DealCreated, MilestoneCreated
    assert service.cursor().number == world.w3.eth.block_number - 2
    assert log.size == before + 2


def test_a_reorg_retracts_dropped_events_and_indexes_the_replacement(
    log: Log, world: World
) -> None:
    client = world.client
    deal_id = client.create_deal(world.buyer, world.params(), world.milestones(2)).deal_id
    service = indexer(log, world)
    service.tick()

    # The funding transaction is mined and indexed; a reorganisation of depth 2 then replaces
    # its block with an empty one and re-mines it in the next block (Anvil may rebuild an
    # identical block when the same transaction lands at the same height, parent and time).
    signed = client.submit(world.buyer, client.contract.functions.fund(deal_id, 0, AMOUNT))
    original = client.result(signed.tx_hash).event("MilestoneFunded")
    assert service.tick() == 1
    original_id = escrow_records(log)[-1].record_id
    rpc(world.w3, "evm_mine")
    assert service.tick() == 0
    rpc(world.w3, "anvil_reorg", 2, [["0x" + signed.raw.hex(), 1]])
    replacement = client.events(original.block_number, deal_id=deal_id)[0]
    assert replacement.tx_hash == original.tx_hash
    assert replacement.block_number == original.block_number + 1
    emptied = world.w3.eth.get_block(original.block_number)
    assert not emptied["transactions"]

    assert service.tick() == 2
    retraction, reindexed = escrow_records(log)[-2:]
    assert retraction.record_id == f"{original_id}:retracted"
    retracted = payload(retraction)
    assert (retracted["type"], retracted["retracts"], retracted["reason"]) == (
        "retraction",
        original_id,
        "reorg",
    )
    assert retracted["block_hash"] == original.block_hash
    assert retracted["canonical_block_hash"] == "0x" + bytes(emptied["hash"]).hex()
    assert (retracted["event"], retracted["deal_id"]) == ("MilestoneFunded", str(deal_id))
    assert reindexed.record_id == expected_ids(world, [replacement])[0] != original_id
    assert payload(reindexed)["block_hash"] == replacement.block_hash
    assert service.tick() == 0

    # A block dropped for good: its event is retracted and nothing replaces it.
    client.fund(world.buyer, deal_id, 1, AMOUNT)
    assert service.tick() == 1
    dropped_id = escrow_records(log)[-1].record_id
    rpc(world.w3, "anvil_reorg", 1, [])
    assert service.tick() == 1
    assert escrow_records(log)[-1].record_id == f"{dropped_id}:retracted"
    assert service.tick() == 0

    history = [(payload(e)["type"], payload(e)["event"]) for e in events_for_deal(log, deal_id)]
    assert history == [
        ("event", "DealCreated"),
        ("event", "MilestoneCreated"),
        ("event", "MilestoneCreated"),
        ("event", "MilestoneFunded"),
        ("retraction", "MilestoneFunded"),
        ("event", "MilestoneFunded"),
        ("event", "MilestoneFunded"),
        ("retraction", "MilestoneFunded"),
    ]
    assert audit_index(log) == []  # the index agrees with the records, retractions included


def test_a_reorg_while_stopped_is_caught_up_after_restart(log: Log, world: World) -> None:
    client = world.client
    deal_id = client.create_deal(world.buyer, world.params(), world.milestones(2)).deal_id
    first = indexer(log, world)
    first.tick()
    client.fund(world.buyer, deal_id, 0, AMOUNT)
    rpc(world.w3, "evm_mine")
    first.tick()
    first.close()

    rpc(world.w3, "anvil_reorg", 2, [])  # drops the funding block and one more, while stopped
    client.fund(world.buyer, deal_id, 1, AMOUNT)
    restarted = indexer(log, world)
    assert restarted.tick() == 2  # one retraction, one new event
    kinds = [payload(e)["type"] for e in events_for_deal(log, deal_id)]
    assert kinds[-3:] == ["event", "retraction", "event"]
    assert payload(events_for_deal(log, deal_id)[-1])["args"]["milestone"] == "1"


def test_events_for_deal_keeps_deals_apart(log: Log, world: World) -> None:
    first = open_and_fund(world)
    second = world.client.create_deal(world.buyer, world.params(), world.milestones(1)).deal_id
    indexer(log, world).tick()
    assert [payload(e)["event"] for e in events_for_deal(log, first)] == [
        "DealCreated",
        "MilestoneCreated",
        "MilestoneCreated",
        "MilestoneFunded",
    ]
    assert [payload(e)["event"] for e in events_for_deal(log, second)] == [
        "DealCreated",
        "MilestoneCreated",
    ]
    assert events_for_deal(log, second, chain_id=world.client.chain_id + 1) == []
    assert events_for_deal(log, 999) == []
    assert len(events_for_deal(log, first, page=2)) == 4


def test_run_indexes_in_the_background_until_stopped(log: Log, world: World) -> None:
    service = indexer(log, world, poll_interval=0.05)
    watcher = indexer(log, world)  # its own connection: reads the cursor the thread commits
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        deal_id = open_and_fund(world)
        deadline = time.monotonic() + 10
        while watcher.cursor().number < world.w3.eth.block_number:
            assert time.monotonic() < deadline, "the indexer did not catch up"
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive() and service.last_error is None
    log.refresh()
    assert len(events_for_deal(log, deal_id)) == 4


def test_audit_index_names_rows_that_do_not_match_the_event_records(log: Log, world: World) -> None:
    assert audit_index(log) == []  # no escrow index in the file: nothing checked
    deal_id = open_and_fund(world)
    service = indexer(log, world)
    service.tick()
    assert audit_index(log) == []
    funded = next(r for r in escrow_records(log) if payload(r)["event"] == "MilestoneFunded")
    created = next(r for r in escrow_records(log) if payload(r)["event"] == "DealCreated")
    first = escrow_records(log)[0]
    db = raw(log)
    with db.write():
        db.execute(
            "UPDATE escrow_index_events SET deal_id = '999' WHERE record_id = ?",
            (funded.record_id,),
        )
        db.execute(
            "UPDATE escrow_index_events SET status = 'retracted' WHERE record_id = ?",
            (created.record_id,),
        )
        db.execute("DELETE FROM escrow_index_events WHERE record_id = ?", (first.record_id,))
        db.execute(
            "INSERT INTO escrow_index_events SELECT 'escrow:ghost', base_id, generation, "
            "chain_id, contract, block_number, block_hash, tx_hash, log_index, event, deal_id, "
            "status FROM escrow_index_events WHERE record_id = ?",
            (funded.record_id,),
        )
    db.close()
    findings = {f.record_id: (f.problem, f.index, f.detail) for f in audit_index(log)}
    assert findings == {
        funded.record_id: (
            "escrow",
            funded.index,
            f"escrow index row: deal_id is '999', the record says '{deal_id}'",
        ),
        created.record_id: (
            "escrow",
            created.index,
            "escrow index row: status is 'retracted', the records say 'live'",
        ),
        first.record_id: (
            "escrow",
            first.index,
            "an event record of a vault the escrow index follows, missing from the index",
        ),
        "escrow:ghost": (
            "escrow",
            None,
            "escrow index row: it lists an event record the log does not hold",
        ),
    }
    service.close()


def squat(log: Log, record_id: str, deal_id: int) -> PreparedRecord:
    """Write a forged record under ``record_id`` straight into the log, as someone with
    direct database access could (the API refuses the ``escrow:`` namespace)."""
    forged = prepare(
        {
            "id": record_id,
            "kind": "escrow_event",
            "timestamp": "2026-11-21T09:30:00Z",
            "actor": "eth:mallory",
            "payload": {"type": "event", "event": "DealCreated", "deal_id": str(deal_id)},
        },
        submitter="key:mallory",
    )
    log.append([forged])
    return forged


def test_a_squatted_event_id_raises_an_alarm_and_indexing_goes_on(
    log: Log, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12: a record written under the next event's id used to fail every tick for ever
    (ConflictError); now the event goes under a derived id beside an integrity alarm."""
    client = world.client
    service = indexer(log, world, confirmations=2)
    rpc(world.w3, "evm_mine")
    service.tick()
    deal_id = client.create_deal(world.buyer, world.params(), world.milestones(2)).deal_id
    events = client.events(0, deal_id=deal_id)
    assert service.tick() == 0  # mined, not yet confirmed: the squatter gets there first
    squatted = expected_ids(world, events)[1]  # the first MilestoneCreated
    forged = squat(log, squatted, deal_id)

    rpc(world.w3, "evm_mine")
    with caplog.at_level("WARNING", logger="chainaudit.service.indexer"):
        assert service.tick() == len(events) + 1  # the events and one alarm
    assert service.pending() == 0 and service.alarms == 1
    assert f"integrity alarm: record id {squatted} is taken" in caplog.text

    diverted = log.entry(f"{squatted}:conflict:1")
    document = json.loads(diverted.body or b"")
    assert document["submitter"] == "service:indexer"
    assert document["payload"]["event"] == "MilestoneCreated"
    assert document["payload"]["log_index"] == events[1].log_index
    [alarm] = [e for e in log.scan(kind="admin", limit=1000) if e.record_id.startswith("integ")]
    body = json.loads(alarm.body or b"")
    assert body["submitter"] == "service:indexer" and body["actor"] == "chainaudit:indexer"
    assert body["payload"] == {
        "type": "integrity-alarm",
        "alarm": "id-conflict",
        "source": "indexer",
        "squatted_id": squatted,
        "squatted_leaf_index": log.entry(squatted).index,
        "squatted_leaf_hash": forged.leaf_hash.hex(),
        "squatted_submitter": "key:mallory",
        "expected_leaf_hash": body["payload"]["expected_leaf_hash"],
        "written_as": diverted.record_id,
        "written_leaf_hash": diverted.leaf_hash.hex(),
    }
    assert body["payload"]["expected_leaf_hash"] not in (forged.leaf_hash.hex(), "")
    assert provenance.document_entitled(body) and provenance.document_entitled(document)
    assert integrity.count_alarms(log) == 1
    others = set(expected_ids(world, events)) - {squatted}
    assert others <= {r.record_id for r in escrow_records(log)}

    # A later real event is still indexed, and the alarm is not raised again.
    client.fund(world.buyer, deal_id, 0, AMOUNT)
    rpc(world.w3, "evm_mine")
    assert service.tick() == 1
    funded = client.events(0, deal_id=deal_id)[-1]
    assert escrow_records(log)[-1].record_id == expected_ids(world, [funded])[0]
    assert service.tick() == 0 and integrity.count_alarms(log) == 1 and service.alarms == 1


def test_a_crash_after_the_diversion_writes_each_record_once(
    log: Log, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The diversion is committed to the outbox before the append: a crash right after it
    leaves the derived record and the alarm to the next indexer, which appends them once."""
    client = world.client
    first = indexer(log, world, confirmations=2)
    rpc(world.w3, "evm_mine")
    first.tick()
    deal_id = client.create_deal(world.buyer, world.params(), world.milestones(1)).deal_id
    events = client.events(0, deal_id=deal_id)
    squatted = expected_ids(world, events)[0]
    squat(log, squatted, deal_id)
    rpc(world.w3, "evm_mine")
    real_append = log.append
    calls: list[int] = []

    def crash_on_retry(records: list[PreparedRecord], *args: Any) -> Any:
        calls.append(len(records))
        if len(calls) > 1:
            raise SystemExit("killed after the diversion")
        return real_append(records, *args)

    monkeypatch.setattr(log, "append", crash_on_retry)
    with pytest.raises(SystemExit):
        first.tick()
    monkeypatch.undo()
    assert first.pending() == len(events) + 1  # the events, one of them relabelled, the alarm
    first.close()
    size = log.refresh()

    restarted = indexer(log, world, confirmations=2)
    assert restarted.tick() == len(events) + 1 and restarted.alarms == 0
    assert log.size == size + len(events) + 1
    assert integrity.count_alarms(log) == 1
    assert log.entry(f"{squatted}:conflict:1").kind == "escrow_event"
    assert restarted.tick() == 0
