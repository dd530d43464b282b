"""Record bundles: the stored form of 128 records, and what a damaged one gives."""

from __future__ import annotations

import json
import threading

import pytest
import zstandard

from chainaudit.core.records import prepare
from chainaudit.log import bundles


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
    records = [stored(i) for i in range(bundles.WIDTH, 2 * bundles.WIDTH)]
    records[7] = records[7]._replace(body=None)  # erased
    blob = bundles.encode(list(records), bundles.WIDTH)
    assert bundles.decode(blob) == records
    assert bundles.decode(bundles.encode_at(records)) == records
    assert len(blob) < sum(len(r.body or b"") for r in records) / 3  # compressed
    assert bundles.key(127) == 0 and bundles.key(128) == 1 == bundles.WIDTH // 128


def test_threads_encode_and_decode_at_once() -> None:
    """The API decodes bundles on many threads beside its writer: each thread has its own
    zstandard context (a shared one corrupts output or raises under concurrent use)."""
    records = [stored(i) for i in range(bundles.WIDTH)]
    blob = bundles.encode(list(records), 0)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(300):
                assert bundles.decode(blob) == records
                assert bundles.decode(bundles.encode(list(records), 0)) == records
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_find_reads_one_record() -> None:
    records = [stored(i) for i in range(10)]
    records[4] = records[4]._replace(body=None)
    blob = bundles.encode(list(records), 0)
    assert [bundles.find(blob, i) for i in range(10)] == records
    assert bundles.find(blob, 10) is None
    twice = bundles.encode_at([records[2], records[3]._replace(leaf_index=2)])
    assert bundles.find(twice, 2) == records[2]
    short = compressed(b'[[0,"a","k","x",0,1],[1,"b","k","x",0,5]]\nab')
    assert bundles.find(short, 0) == bundles.Stored("a", "k", "x", 0, 0, b"a")
    with pytest.raises(bundles.BundleError, match="runs past"):
        bundles.find(short, 1)


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
        (compressed(b'{"a":1}\n'), "malformed bundle header"),
        (compressed(b'[[0,"a","k","x",0]]\n'), "malformed bundle entry"),
        (compressed(b"[5]\n"), "malformed bundle entry 5"),
        (compressed(b'[[0,1,"k","x",0,0]]\n'), "malformed bundle entry"),
        (compressed(b'[[0,"a","k","x",0.5,0]]\n'), "malformed bundle entry"),
        (compressed(b'[[0,"a","k","x",0,3]]\nab'), "header says 25"),
        (compressed(b'[[0,"a","k","x",0,1]]\nabc'), "header says 23"),
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
