"""Squatted service ids on a real log file: the derived ids, the alarms, and their count."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chainaudit.core import provenance
from chainaudit.core.errors import ConflictError
from chainaudit.core.records import PreparedRecord, prepare
from chainaudit.log.store import Log
from chainaudit.service import integrity


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Log]:
    with Log.open(tmp_path / "data") as opened:
        yield opened


def make(record_id: str, submitter: str = provenance.API, **payload: Any) -> PreparedRecord:
    return prepare(
        {
            "id": record_id,
            "kind": "transaction",
            "timestamp": "2026-11-21T09:30:00Z",
            "actor": "chainaudit:api",
            "payload": {"action": "relay", **payload},
        },
        submitter=submitter,
    )


def divert(log: Log, records: list[PreparedRecord]) -> dict[int, integrity.Diversion]:
    return integrity.divert_conflicts(
        log, records, submitter=provenance.API, actor="chainaudit:api", source="test"
    )


def test_count_ids_counts_exactly_the_prefix(log: Log) -> None:
    ids = ["integrity:conflict:a", "integrity:conflict:", "integrity:conflicu", "integrity-x"]
    log.append([make(i, provenance.INDEXER) for i in [*ids, "integrity:conflict:zz", "a"]])
    assert log.count_ids("integrity:conflict:") == 3
    assert log.count_ids("integrity:") == 4
    assert log.count_ids("nothing") == 0
    with pytest.raises(ValueError, match="non-empty"):
        log.count_ids("")


def test_derived_ids_keep_their_prefix_and_the_id_limit() -> None:
    assert integrity.conflict_id("action-relay-ab", 3) == "action-relay-ab:conflict:3"
    long = "escrow:" + "9" * 121
    derived = integrity.conflict_id(long, 12)
    assert len(derived) == 128 and derived.startswith("escrow:") and derived.endswith(":12")
    make(derived)  # a valid id


def test_nothing_is_diverted_for_new_ids_and_true_duplicates(log: Log) -> None:
    stored = make("action-relay-1", amount=1)
    log.append([stored])
    assert divert(log, [make("action-relay-2"), stored]) == {}


def test_a_taken_id_is_diverted_to_the_first_free_derived_id(log: Log) -> None:
    squatter = make("action-relay-1", submitter="key:mallory", amount=666)
    squatter_too = make("action-relay-1:conflict:1", submitter="key:mallory", amount=667)
    log.append([squatter, squatter_too])
    mine = make("action-relay-1", amount=1)
    [(position, diversion)] = divert(log, [make("action-relay-0"), mine]).items()
    assert position == 1 and diversion.squatted_id == "action-relay-1"
    relabelled = json.loads(diversion.relabelled.body)
    assert relabelled == {**json.loads(mine.body), "id": "action-relay-1:conflict:2"}
    alarm = json.loads(diversion.alarm.body)
    assert alarm["id"].startswith(integrity.ALARM_PREFIX) and alarm["kind"] == "admin"
    assert alarm["submitter"] == provenance.API and provenance.document_entitled(alarm)
    assert alarm["payload"]["squatted_leaf_hash"] == squatter.leaf_hash.hex()
    assert alarm["payload"]["expected_leaf_hash"] == mine.leaf_hash.hex()
    assert alarm["payload"]["written_leaf_hash"] == diversion.relabelled.leaf_hash.hex()

    # once the diversion is written, diverting again lands on the same ids (no third copy)
    log.append([diversion.relabelled, diversion.alarm])
    again = divert(log, [prepare(json.loads(mine.body))])[0]
    assert again.relabelled.record_id == diversion.relabelled.record_id
    assert again.relabelled.body == diversion.relabelled.body
    assert again.alarm.record_id == diversion.alarm.record_id


def test_append_diverting_writes_the_rest_as_is_and_warns(
    log: Log, caplog: pytest.LogCaptureFixture
) -> None:
    log.append([make("action-relay-1", submitter="key:mallory", amount=666)])
    batch = [make("action-relay-0"), make("action-relay-1", amount=1), make("action-relay-2")]
    with pytest.raises(ConflictError):
        log.append(batch)
    with caplog.at_level("WARNING", logger="chainaudit.service.integrity"):
        written = integrity.append_diverting(
            log.append,
            lambda: log,
            batch,
            submitter=provenance.API,
            actor="chainaudit:api",
            source="test",
        )
    assert [r.record_id for r in written][:3] == [
        "action-relay-0",
        "action-relay-1:conflict:1",
        written[2].record_id,
    ]
    assert written[2].record_id.startswith(integrity.ALARM_PREFIX)
    assert written[3].record_id == "action-relay-2"
    assert [log.entry(r.record_id).leaf_hash for r in written] == [r.leaf_hash for r in written]
    assert integrity.count_alarms(log) == 1
    assert "test: integrity alarm: record id action-relay-1 is taken" in caplog.text
