"""The record index follows the log from a cursor, answers filters and a partner's
candidates from indexes, upgrades an existing log in place and is audited: on SQLite (the
log's file) and on PostgreSQL (the log's database)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chainaudit.core import provenance
from chainaudit.core.records import prepare
from chainaudit.log import database, record_index
from chainaudit.log.record_index import Filters, RecordIndex, audit_record_index
from chainaudit.log.store import Log
from tests.cli.test_log_commands import run

PARTNER = "0x00000000000000000000000000000000000000aa"
OTHER = "0x00000000000000000000000000000000000000bb"


def _record(i: int, **change: Any) -> dict[str, Any]:
    return {
        "id": f"r-{i}",
        "kind": "transaction",
        "timestamp": f"2026-11-{1 + i % 28:02d}T09:30:00Z",
        "actor": f"supplier:{i % 5}",
        "payload": {"amount": i},
        **change,
    }


def _event(i: int, args: dict[str, Any], deal: str = "7") -> dict[str, Any]:
    return _record(
        i,
        kind="escrow_event",
        actor="chainaudit:indexer",
        payload={"type": "event", "event": "MilestoneFunded", "deal_id": deal, "args": args},
    )


@pytest.fixture
def log(tmp_path: Path, log_at: Callable[..., Log]) -> Iterator[Log]:
    log = log_at(tmp_path / "data")
    submitter = provenance.local_submitter("test")
    records = [prepare(_record(i), submitter=submitter) for i in range(1_000)]
    records.append(prepare(_record(1_000, actor=PARTNER, kind="document"), submitter=submitter))
    records.append(
        prepare(_event(1_001, {"buyer": PARTNER.upper().replace("0X", "0x")}), submitter=submitter)
    )
    records.append(prepare(_event(1_002, {"buyer": OTHER}, deal="8"), submitter=submitter))
    records.append(prepare(_record(1_003, payload={"deal_id": 9}), submitter=submitter))
    log.append(records)
    yield log
    log.close()


def _index(log: Log) -> RecordIndex:
    """The record index beside ``log``, on its engine."""
    return RecordIndex(log.path, database_url=log.database_url)


def _execute(log: Log, sql: str) -> None:
    """Run ``sql`` straight on ``log``'s database (tampering behind the index's back)."""
    db = database.connect(log.database_url or log.path)
    try:
        db.execute(sql)
    finally:
        db.close()


def _has_table(log: Log, name: str) -> bool:
    db = database.connect(log.database_url or log.path)
    try:
        return db.has_table(name)
    finally:
        db.close()


def test_sync_indexes_every_record_once_and_catches_up(log: Log) -> None:
    with _index(log) as index:
        assert index.sync(log) == 1_004
        assert index.sync(log) == 0 and index.next_index == 1_004
        log.append([prepare(_record(2_000), submitter=provenance.local_submitter("t"))])
        assert index.sync(log) == 1 and index.next_index == 1_005


def test_filters_and_partner_candidates(log: Log) -> None:
    with _index(log) as index:
        index.sync(log)
        assert index.matching(Filters(kind="document"), start=0, limit=10) == [1_000]
        assert index.matching(Filters(kind="document"), start=1_001, limit=10) == []
        by_actor = index.matching(Filters(actor="supplier:2"), start=0, limit=1_000)
        assert len(by_actor) == 200 and all(i % 5 == 2 for i in by_actor)
        since = Filters(since_ms=log.entry("r-27").timestamp_ms, actor="supplier:2")
        assert index.matching(since, start=0, limit=3) == [27, 167, 307]  # the 28th of the month
        # a partner: its own records, the events naming it, the records of its deals
        assert index.candidates(
            Filters(), start=0, limit=10, actors=[PARTNER], party=PARTNER, deals=["9"]
        ) == [1_000, 1_001, 1_003]
        assert index.candidates(
            Filters(kind="escrow_event"),
            start=0,
            limit=10,
            actors=[PARTNER],
            party=PARTNER,
            deals=[],
        ) == [1_001]
        assert index.candidates(
            Filters(), start=1_001, limit=1, actors=[PARTNER], party=PARTNER, deals=["9"]
        ) == [1_001]
        nobody = "0x00000000000000000000000000000000000000cc"
        assert (
            index.candidates(Filters(), start=0, limit=10, actors=[nobody], party=nobody, deals=[])
            == []
        )


def test_an_existing_log_is_upgraded_in_place(tmp_path: Path, log: Log) -> None:
    """A log written before the index existed has no index tables; opening the index
    creates them and the first sync indexes every record already there."""
    assert not _has_table(log, "record_index")
    with _index(log) as index:
        assert index.next_index == 0
        index.sync(log)
        assert index.matching(Filters(kind="escrow_event"), start=0, limit=10) == [1_001, 1_002]
    assert audit_record_index(log) == []


def _tampered(log: Log, sql: str) -> list[str]:
    with _index(log) as index:
        index.sync(log)
    assert audit_record_index(log) == []
    _execute(log, sql)
    return [f.detail for f in audit_record_index(log)]


def test_audit_names_an_altered_row(log: Log) -> None:
    details = _tampered(log, "UPDATE record_index SET actor = 'x' WHERE idx = 5")
    assert len(details) == 1 and "the record says" in details[0]


def test_audit_names_a_deleted_row(log: Log) -> None:
    details = _tampered(log, "DELETE FROM record_index WHERE idx = 1000")
    assert details == ["record index: missing from the index"]


def test_audit_names_a_forged_party_and_a_hidden_one(log: Log) -> None:
    forged = _tampered(log, f"INSERT INTO record_parties VALUES ('{OTHER}', 1001)")
    assert forged == [f"record index: party {OTHER} not named by the record"]


def test_records_naming_a_deal_are_in_its_timeline(
    tmp_path: Path, log_at: Callable[..., Log]
) -> None:
    with log_at(tmp_path / "deals") as log:
        log.append(
            [
                prepare(_record(1, payload={"deal_id": "7", "event": "MilestoneFunded"})),
                prepare(_record(2)),
                prepare(_record(3, payload={"deal_id": 7, "decision": "allow"})),
                prepare(_record(4, payload={"deal_id": "8"})),
                prepare(_record(5, payload={"note": 'mentions "deal_id": 7 only in text'})),
            ]
        )
        with _index(log) as index:
            index.sync(log)
            assert index.deal_indexes("7") == [0, 2]
            assert index.deal_indexes("8") == [3]
            assert index.deal_indexes("9") == []
        assert not _has_table(log, "deal_records")  # the log itself holds no deal knowledge


def test_audit_names_deal_rows_added_removed_or_relinked(log: Log) -> None:
    with _index(log) as index:
        index.sync(log)
        assert index.deal_indexes("7") == [1001]
    assert audit_record_index(log) == []
    _execute(log, "DELETE FROM record_deals WHERE idx = 1001")  # hidden from the timeline
    _execute(log, "INSERT INTO record_deals VALUES ('7', 4)")  # smuggled into it
    _execute(log, "UPDATE record_deals SET deal_id = '10' WHERE idx = 1002")  # moved
    _execute(log, "INSERT INTO record_deals VALUES ('7', 5000)")  # a leaf that is not there
    found = [(f.problem, f.index, f.detail) for f in audit_record_index(log)]
    assert found == [
        ("record-index", 4, "record index: deal 7 not named by the record"),
        ("record-index", 1001, "record index: names deal 7, missing from the deal's timeline"),
        ("record-index", 1002, "record index: deal 10 not named by the record"),
        ("record-index", 1002, "record index: names deal 8, missing from the deal's timeline"),
        ("record-index", 5000, "record index: deal 7 of no record"),
    ]


def test_audit_names_a_removed_party(log: Log) -> None:
    hidden = _tampered(log, "DELETE FROM record_parties WHERE idx = 1001")
    assert hidden == [f"record index: names {PARTNER}, missing from the index"]


def test_audit_of_a_log_with_no_index_finds_nothing_and_creates_nothing(log: Log) -> None:
    assert audit_record_index(log) == []
    assert not _has_table(log, "record_index")


def test_the_audit_command_names_an_edited_record_index(
    tmp_path: Path,
    log_at: Callable[..., Log],
    log_database: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if log_database is not None:  # the command finds the log (and its index) there
        monkeypatch.setenv("CHAINAUDIT_DATABASE_URL", log_database)
    data = tmp_path / "data"
    with log_at(data) as log:
        submitter = provenance.local_submitter("test")
        log.append([prepare(_record(i), submitter=submitter) for i in range(10)])
        with _index(log) as index:
            index.sync(log)
        run(data, "audit")
        _execute(log, "UPDATE record_index SET kind = 'document' WHERE idx = 3")
    result = run(data, "audit", check_rc=1)
    assert "RECORD-INDEX index 3 record 'r-3'" in result.stdout


@pytest.mark.parametrize("narrow", [10_000, 1], ids=["time index", "leaf order"])
def test_time_filters_agree_with_the_records_narrow_or_wide(
    log: Log, narrow: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(record_index, "NARROW", narrow)
    with _index(log) as index:
        index.sync(log)
        entries = list(log.entries())
        for since, until in ((27, 28), (0, 27), (26, None), (None, 1)):
            lo = None if since is None else log.entry(f"r-{since}").timestamp_ms
            hi = None if until is None else log.entry(f"r-{until}").timestamp_ms
            expected = [
                e.index
                for e in entries
                if (lo is None or e.timestamp_ms >= lo) and (hi is None or e.timestamp_ms < hi)
            ]
            found = index.matching(Filters(since_ms=lo, until_ms=hi), start=5, limit=50)
            assert found == [i for i in expected if i >= 5][:50], (since, until)


def test_two_followers_syncing_at_once_index_every_record_once(log: Log) -> None:
    """Two processes' indexes (two connections) syncing while records are appended: each
    record is indexed once, the cursor never goes back, and the audit is clean."""
    submitter = provenance.local_submitter("t")
    errors: list[BaseException] = []
    stop = threading.Event()

    def follow() -> None:
        try:
            with _index(log) as index, Log(log.path, database_url=log.database_url) as reader:
                while not stop.is_set():
                    index.sync(reader, page=50)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=follow) for _ in range(2)]
    for thread in threads:
        thread.start()
    for n in range(10):
        log.append([prepare(_record(5_000 + 10 * n + i), submitter=submitter) for i in range(10)])
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with _index(log) as index:
        index.sync(log)
        assert index.next_index == log.size
        assert index.matching(Filters(), start=0, limit=10_000) == list(range(log.size))
    assert audit_record_index(log) == []
