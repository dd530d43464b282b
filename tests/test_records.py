"""Record validation, leaf data and idempotency rules."""

from __future__ import annotations

import json
import multiprocessing
import os
from typing import Any

import pytest
import rfc8785

from chainaudit.core import merkle
from chainaudit.core.errors import RecordError
from chainaudit.core.records import new_salt, parse_json_line, prepare, same_content

BASE: dict[str, Any] = {
    "id": "po-2026-0001",
    "kind": "transaction",
    "timestamp": "2026-11-21T09:30:00Z",
    "actor": "buyer:acme",
    "payload": {"amount": 125000, "currency": "USD", "unit_price": "12.50"},
}


def test_leaf_is_hash_of_rfc8785_form_with_salt() -> None:
    record = prepare(BASE)
    document = json.loads(record.body)
    assert len(document["salt"]) == 32
    assert record.body == rfc8785.dumps(document)
    assert record.leaf_hash == merkle.hash_leaf(record.body)
    assert record.timestamp_ms == 1_795_253_400_000


def test_salts_are_random_unless_supplied() -> None:
    assert prepare(BASE).body != prepare(BASE).body
    salted = {**BASE, "salt": "00" * 16}
    assert prepare(salted).body == prepare(salted).body


def _draw_salts(count: int) -> tuple[int, bytes]:
    """In a worker: this process's id and ``count`` salts from :func:`new_salt`, as bytes."""
    return os.getpid(), bytes.fromhex("".join([new_salt() for _ in range(count)]))


def test_a_million_salts_drawn_in_forked_workers_are_distinct() -> None:
    """Workers forked after the parent drew salts (as ``ingest`` forks its ``Pool(2)``) share
    no salt with the parent or with each other: the salt pool does not survive a fork."""
    parent = {bytes.fromhex(new_salt()) for _ in range(10)}  # the pool is part-used now
    with multiprocessing.get_context("fork").Pool(2) as pool:
        drawn = pool.map(_draw_salts, [125_000] * 8, chunksize=1)
    assert len({pid for pid, _ in drawn}) == 2  # both workers drew salts
    salts = {blob[i : i + 16] for _, blob in drawn for i in range(0, len(blob), 16)}
    assert len(salts) == 1_000_000
    assert not salts & parent
    assert not salts & {bytes.fromhex(new_salt()) for _ in range(2_000)}  # nor after the fork


def test_same_content_ignores_server_drawn_salt_only() -> None:
    first = prepare(BASE)
    assert same_content(first.body, prepare(BASE))
    assert not same_content(first.body, prepare({**BASE, "actor": "buyer:other"}))
    assert not same_content(first.body, prepare({**BASE, "salt": "11" * 16}))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": ""}, "id must be"),
        ({"id": "has space"}, "id must be"),
        ({"id": "x" * 129}, "id must be"),
        ({"kind": "gossip"}, "kind must be one of"),
        ({"timestamp": "2026-11-21 09:30"}, "RFC 3339"),
        ({"timestamp": "2026-11-21T09:30:00"}, "RFC 3339"),
        ({"timestamp": "2026-02-30T09:30:00Z"}, "not a valid date"),
        ({"actor": ""}, "actor must be"),
        ({"actor": 7}, "actor must be"),
        ({"payload": []}, "payload must be a JSON object"),
        ({"payload": {"amount": 1.25}}, "payload.amount: floating-point"),
        ({"payload": {"a": [{"b": 2**60}]}}, r"payload.a\[0\].b: integer"),
        ({"salt": "XYZ"}, "salt must be"),
        ({"extra": 1}, "unknown field"),
    ],
)
def test_invalid_records_are_refused_with_a_precise_message(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(RecordError, match=message):
        prepare({**BASE, **change})


def test_missing_fields_are_named() -> None:
    with pytest.raises(RecordError, match=r"missing field.*actor, payload"):
        prepare({"id": "a", "kind": "transaction", "timestamp": "2026-11-21T09:30:00Z"})


def test_declared_kinds_extend_the_built_in_ones() -> None:
    with pytest.raises(RecordError):
        prepare({**BASE, "kind": "shipment"})
    assert prepare({**BASE, "kind": "shipment"}, kinds={"shipment"}).kind == "shipment"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "must be a JSON object"),
        (json.dumps(BASE)[:-2] + ', "n": NaN}}', "payload.n: floating-point"),
        (json.dumps({**BASE, "payload": {"x": 1e3}}), "payload.x: floating-point"),
        (json.dumps({**BASE, "payload": {"x": 12345678901234567}}), "outside the exact range"),
    ],
)
def test_json_lines_errors_carry_the_line_number(line: str, message: str) -> None:
    with pytest.raises(RecordError, match=message) as info:
        parse_json_line(line, 42)
    assert info.value.line == 42
    assert str(info.value).startswith("line 42: ")


def test_fast_and_full_paths_agree() -> None:
    payload = {"\U0001f600": "astral key", "\ue000": 1, "n": -(2**53 - 1), "nested": [[{"a": 1}]]}
    record = {**BASE, "payload": payload, "salt": "ab" * 16}
    assert parse_json_line(json.dumps(record)).body == prepare(record).body
    assert prepare(record).body == rfc8785.dumps(record)
