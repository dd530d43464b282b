"""Fuzzing the native parser (chainaudit._native) with garbage, against the Python reference.

tests/test_native.py checks generated and mutated records line by line; here the C code gets
what no generator of records would write — arbitrary bytes, JSON token soup, valid records
cut, spliced and interleaved with junk, whole chunks of them — through both of its entry points
(``prepare_lines`` and ``prepare_batch``). It must never crash (a crash kills the test
process), never hang (the per-example deadline), return one item per non-blank line, and every
line it accepts must prepare exactly as ``records.parse_json_line`` prepares it.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chainaudit import _native
from chainaudit.log import native
from tests.fuzz.budget import fuzz_settings
from tests.test_native import ALL_KINDS, SUBMITTERS, check_line

pytestmark = pytest.mark.skipif(not native.AVAILABLE, reason="the C extension is not built")

RECORD = {
    "id": "inv-000001",
    "kind": "transaction",
    "timestamp": "2026-11-21T09:30:00Z",
    "actor": "supplier:acme",
    "payload": {"amount": 125000, "currency": "USD", "lines": [1, 2, {"sku": "A-1"}]},
}
VALID = json.dumps(RECORD, separators=(",", ":")).encode()
TOKENS = [
    b"{", b"}", b"[", b"]", b",", b":", b'"', b'"id"', b'"kind"', b'"timestamp"', b'"actor"',
    b'"payload"', b'"salt"', b'"submitter"', b'"transaction"', b'"2026-11-21T09:30:00Z"',
    b'"a:b"', b'"\\u0000"', b'"\\ud800"', b"\\", b"0", b"-0", b"00", b"1e5", b"1.5",
    b"999999999999999", b"9999999999999999", b"-", b"true", b"false", b"null", b"nul", b" ",
    b"\t", b"\r", b"\x00", b"\x80", b"\xc3", b"\xc3\xa9", b"\xff", b"\xed\xa0\x80",
]  # fmt: skip

soup = st.lists(st.sampled_from(TOKENS), max_size=60).map(b"".join)


@st.composite
def spliced(draw: st.DrawFn) -> bytes:
    """A valid record line with a slice replaced by garbage (bytes or tokens)."""
    start = draw(st.integers(0, len(VALID)))
    stop = draw(st.integers(start, len(VALID)))
    junk = draw(st.binary(max_size=8) | soup)
    return VALID[:start] + junk + VALID[stop:]


lines = st.one_of(st.binary(max_size=200), soup, spliced(), st.just(VALID))
chunks = st.lists(lines, max_size=12).map(b"\n".join)


def non_blank(raw: bytes) -> list[tuple[int, bytes]]:
    return [(i, line) for i, line in enumerate(raw.split(b"\n")) if line.strip()]


def test_the_seed_record_takes_the_fast_path() -> None:
    for submitter in SUBMITTERS:
        assert check_line(VALID, submitter=submitter) is not None


@fuzz_settings(1000)
@given(line=lines, submitter=st.sampled_from(SUBMITTERS))
def test_a_garbage_line_is_declined_or_matches_the_python_path(
    line: bytes, submitter: str | None
) -> None:
    line = line.replace(b"\n", b" ")
    if line.strip():
        check_line(line, submitter=submitter)


@fuzz_settings(300)
@given(raw=chunks | st.binary(max_size=2000), submitter=st.sampled_from(SUBMITTERS))
def test_a_garbage_chunk_gives_one_item_per_line_through_both_entry_points(
    raw: bytes, submitter: str | None
) -> None:
    numbered = non_blank(raw)
    salts = os.urandom(16 * max(1, len(numbered)))
    kinds, reserved = native._stamping(ALL_KINDS, submitter)
    result: list[Any] = _native.prepare_lines(raw, kinds, salts, None, submitter, reserved)
    assert len(result) == len(numbered)
    for (number, line), item in zip(numbered, result, strict=True):
        if type(item) is int:
            assert item == number
        else:
            check_line(line, submitter=submitter)  # the line alone is accepted and matches
    batch = native.prepare_batch(raw, ALL_KINDS, salts, submitter)
    if any(type(item) is int for item in result):
        assert batch is None
    else:
        assert batch is not None and batch.size == len(result)
        records = batch.records()
        for got, item in zip(records, result, strict=True):
            assert got[:5] == tuple(item[:5])
            assert json.loads(got.body)["id"] == got.record_id


@fuzz_settings(20, deadline_seconds=5)
@given(depth=st.integers(1, 200_000), opener=st.sampled_from([b"[", b"{", b'{"a":']))
def test_deep_garbage_is_declined_quickly(depth: int, opener: bytes) -> None:
    line = VALID[:-1] + b',"x":' + opener * depth + b"}"
    assert _native.prepare_lines(line, ALL_KINDS, os.urandom(16)) == [0]
