"""Byte columns for bulk appends: ``prepare_batch`` and the bundle encoders, in C and Python."""

from __future__ import annotations

import json
import os
import random

import pytest

from chainaudit import _native
from chainaudit.core.records import KINDS, PreparedRecord
from chainaudit.log import bundles, native
from tests.test_native import bench_record, record_line

ALL_KINDS = frozenset(KINDS)


def chunk(count: int, **changes: object) -> bytes:
    return b"\n".join(record_line(i, **changes) for i in range(count)) + b"\n"


def test_a_batch_holds_exactly_what_prepare_lines_gives() -> None:
    raw = chunk(300) + b"\n  \n" + record_line(300, salt="ab" * 16)  # blank lines, no final \n
    salts = os.urandom(16 * 400)
    batch = native.prepare_batch(raw, ALL_KINDS, salts)
    expected = native.prepare_records(raw, ALL_KINDS, salts)
    assert batch is not None and batch.size == 301 == len(expected)
    assert batch.records() == expected
    assert json.loads(batch.ids_json) == [r.record_id for r in expected]
    assert batch.leaf_hashes() == [r.leaf_hash for r in expected]
    assert batch.bodies == b"".join(r.body for r in expected)
    assert len(batch.meta) == 301 * native.BATCH_META.size
    assert [r.salted for r in batch.records()] == [False] * 300 + [True]


def test_a_stamped_batch_holds_exactly_what_prepare_records_gives() -> None:
    raw = chunk(50) + record_line(50, salt="cd" * 16) + b"\n"
    salts = os.urandom(16 * 60)
    batch = native.prepare_batch(raw, ALL_KINDS, salts, "local:alice")
    expected = native.prepare_records(raw, ALL_KINDS, salts, "local:alice")
    assert batch is not None and batch.records() == expected and len(expected) == 51
    assert {json.loads(r.body)["submitter"] for r in expected} == {"local:alice"}
    # one reserved line sends the whole chunk to the careful path, which refuses it
    for reserved in (record_line(7, kind="decision"), record_line(7, id="escrow:1:0x1:0:ab")):
        odd = chunk(5) + reserved + b"\n"
        assert native.prepare_batch(odd, ALL_KINDS, salts, "local:alice") is None
        assert native.prepare_batch(odd, ALL_KINDS, salts, "service:indexer") is not None


def test_a_batch_is_refused_as_soon_as_one_line_needs_the_python_path() -> None:
    for odd in (
        record_line(5, actor="émile"),  # non-ASCII
        record_line(5, kind="unknown"),  # not a declared kind (the Python path names it)
        b"{not json",
    ):
        raw = chunk(5) + odd + b"\n" + chunk(3)
        assert native.prepare_batch(raw, ALL_KINDS, os.urandom(16 * 10)) is None
    assert native.prepare_batch(b"", ALL_KINDS, b"") == native.Batch(0, b"[]", b"", b"", b"")


def test_a_batch_needs_enough_salts() -> None:
    with pytest.raises(ValueError, match="ran out of salts"):
        native.prepare_batch(chunk(3), ALL_KINDS, os.urandom(16 * 2))


@pytest.mark.parametrize("first", [0, 256, 1 << 40])
def test_bundle_parts_in_c_and_python_agree_byte_for_byte(first: int) -> None:
    rng = random.Random(first)
    records: list[object] = [
        PreparedRecord(
            f"id-{i}",
            "transaction",
            "supplier:x",
            1_700_000_000_000 + i,
            False,
            json.dumps(bench_record(i, rng)).encode(),
            bytes(32),
        )
        for i in range(5)
    ]
    records.append(bundles.Stored('é"\\\n\t\x01\u2028', "k", "a\rb", -5, 9, None))
    records.append(bundles.Stored("x", "k", "a", 0, 10, b""))
    ours = _native.bundle_parts(first, records, bundles.FIELDS)
    assert ours == native.bundle_parts_fallback(first, records, bundles.FIELDS)
    plain = b"[" + ours[0] + b"]\n" + ours[1]
    assert bundles.decode(bundles.assemble([ours])) == [
        bundles.Stored(r[0], r[1], r[2], r[3], first + i, r[5])  # type: ignore[index]
        for i, r in enumerate(records)
    ]
    assert plain.startswith(b"[[%d," % first)


def test_bundle_parts_refuses_wrong_types() -> None:
    good = bundles.Stored("x", "k", "a", 0, 0, b"{}")
    for bad in (
        good._replace(record_id=1),
        good._replace(timestamp_ms="0"),
        good._replace(body="{}"),
    ):
        with pytest.raises(TypeError, match="bundle_parts"):
            _native.bundle_parts(0, [bad], bundles.FIELDS)
    with pytest.raises(TypeError, match="tuples"):
        _native.bundle_parts(0, [["x", "k", "a", 0, 0, b""]], bundles.FIELDS)
    with pytest.raises(IndexError, match="out of range"):
        _native.bundle_parts(0, [good], (0, 1, 2, 3, 6))


def test_batch_bundle_parts_equals_bundle_parts_of_its_records() -> None:
    batch = native.prepare_batch(chunk(40), ALL_KINDS, os.urandom(16 * 41))
    assert batch is not None
    records = batch.records()
    for start, stop in ((0, 40), (3, 17), (39, 40), (5, 5)):
        assert native.batch_bundle_parts(512, batch, start, stop) == native.bundle_parts(
            512, records[start:stop], bundles.FIELDS
        )
    for start, stop in ((-1, 3), (5, 4), (0, 41)):
        with pytest.raises(ValueError, match="no such records"):
            native.batch_bundle_parts(0, batch, start, stop)
    damaged = batch._replace(bodies=batch.bodies[:100])
    with pytest.raises(ValueError, match="out of range"):
        native.batch_bundle_parts(0, damaged, 0, 40)


def test_without_the_extension_batches_are_never_made(monkeypatch: pytest.MonkeyPatch) -> None:
    batch = native.prepare_batch(chunk(10), ALL_KINDS, os.urandom(16 * 11))
    assert batch is not None
    monkeypatch.setattr(native, "AVAILABLE", False)
    assert native.prepare_batch(chunk(10), ALL_KINDS, os.urandom(16 * 11)) is None
    assert native.batch_bundle_parts(0, batch, 2, 6) == native.bundle_parts_fallback(
        0, batch.records()[2:6], bundles.FIELDS
    )
