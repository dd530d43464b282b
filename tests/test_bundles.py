"""Record bundles: the stored form of 256 records, and what a damaged one gives."""

from __future__ import annotations

import json

import pytest
import zstandard

from chainaudit import bundles
from chainaudit.records import prepare


def stored(i: int, **change: object) -> bundles.Stored:
    record = prepare(
        {
            "id": f"rec-{i}",
            "kind": "decision",
            "timestamp": "2026-11-21T09:30:00+01:00",
            "actor": 'risk:ünïcode "quoted"',
            "payload": {"i": i},
        }
    )
    return bundles.Stored(*record[:4], i, record.body)._replace(**change)  # type: ignore[arg-type]


def test_encode_and_decode_round_trip() -> None:
    records = [stored(i) for i in range(256, 512)]
    records[7] = records[7]._replace(body=None)  # erased
    blob = bundles.encode(list(records), 256)
    assert bundles.decode(blob) == records
    assert bundles.decode(bundles.encode_at(records)) == records
    assert len(blob) < sum(len(r.body or b"") for r in records) / 3  # compressed
    assert bundles.key(255) == 0 and bundles.key(256) == 1


def test_encode_at_keeps_each_records_own_index() -> None:
    records = [stored(3), stored(1), stored(9)]
    assert [r.leaf_index for r in bundles.decode(bundles.encode_at(records))] == [3, 1, 9]


def compressed(plain: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(plain)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"not zstd", "unreadable bundle"),
        (compressed(b"no header line"), "unreadable bundle"),
        (compressed(b"[[0,\n"), "unreadable bundle"),
        (compressed(b'[[0,"a","k","x",0]]\n'), "malformed bundle header"),
        (compressed(b"[5]\n"), "malformed bundle header"),
        (compressed(b'[[0,1,"k","x",0,0]]\n'), "malformed bundle entry"),
        (compressed(b'[[0,"a","k","x",0.5,0]]\n'), "malformed bundle entry"),
        (compressed(b'[[0,"a","k","x",0,3]]\nab'), "header 3"),
        (compressed(b'[[0,"a","k","x",0,1]]\nabc'), "header 1"),
    ],
)
def test_a_damaged_bundle_is_refused_with_a_bundle_error(blob: bytes, message: str) -> None:
    with pytest.raises(bundles.BundleError, match=message):
        bundles.decode(blob)


def test_the_header_is_json_naming_each_record() -> None:
    record = stored(0)
    plain = zstandard.ZstdDecompressor().decompress(bundles.encode([record], 0))
    header, body = plain.split(b"\n", 1)
    assert json.loads(header) == [
        [0, "rec-0", "decision", record.actor, record.timestamp_ms, len(body)]
    ]
    assert body == record.body
