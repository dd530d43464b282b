"""Bulk ingest: the native fast path and the Python reference path build the same log, on
SQLite and on PostgreSQL (``log_at``)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chainaudit.core.errors import ConflictError, InputError, RecordError, ReservedError
from chainaudit.core.records import KINDS, prepare
from chainaudit.log import bundles, ingest, native
from chainaudit.log.record_index import RecordIndex
from chainaudit.log.store import Log, Transaction

LARGE = 20_000
"""Records enough for a file over ``ingest.PARALLEL_BYTES`` (the tests check)."""


def record(i: int) -> dict[str, Any]:
    """Mostly simple records, and every few lines one the fast path must hand back."""
    doc: dict[str, Any] = {
        "id": f"inv-{i:07d}",
        "kind": "transaction",
        "timestamp": f"2026-11-{1 + i % 28:02d}T09:{i % 60:02d}:00Z",
        "actor": "supplier:globex",
        "payload": {"amount": i * 100, "currency": "USD", "lines": [i, {"sku": f"S-{i}"}]},
        "salt": os.urandom(16).hex(),
    }
    if i % 7 == 1:
        doc["actor"] = "supplier:société"  # non-ASCII
    elif i % 7 == 2:
        doc["payload"]["note"] = 'a "quoted" word'  # escapes
    elif i % 7 == 3:
        doc["timestamp"] = "2026-11-21T09:30:00.250+02:00"  # fractional seconds
    elif i % 7 == 4:
        del doc["salt"]  # a salt drawn by the server
    return doc


def write(path: Path, count: int) -> Path:
    lines = [json.dumps(record(i), ensure_ascii=i % 2 == 0) for i in range(count)]
    lines[10:10] = ["", "   "]  # blank lines are skipped
    path.write_text("\r\n".join(lines) + "\r\n")
    return path


def test_the_fast_path_takes_most_lines() -> None:
    assert native.AVAILABLE  # every install of this repository builds the extension
    raw = "\n".join(json.dumps(record(i)) for i in range(70)).encode()
    items = native.prepare_lines(raw, frozenset(KINDS), os.urandom(16 * 70))
    accepted = sum(1 for item in items if not isinstance(item, int))
    assert accepted == 40  # all but the non-ASCII, escaped and fractional-second records


@pytest.mark.parametrize("workers", [None, 0, 1])
def test_fast_and_reference_paths_build_the_same_log(
    log_at: Callable[..., Log], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int | None
) -> None:
    """``None`` picks two parser processes here (three lines in seven take the Python path);
    0 parses in the writer's process; 1 hands chunks over from one parser process."""
    source = write(tmp_path / "mixed.jsonl", LARGE + 5_000)
    assert source.stat().st_size >= ingest.PARALLEL_BYTES
    with log_at(tmp_path / "fast") as fast:
        result = ingest.ingest_file(fast, source, workers=workers)
        assert result.appended == LARGE + 5_000
        fast_entries = fast.scan(limit=100_000)
        fast_root = fast.root()
    monkeypatch.setattr(native, "AVAILABLE", False)  # prepare_records declines every line
    with log_at(tmp_path / "reference") as reference:
        ingest.ingest_file(reference, source, workers=0)
        reference_entries = reference.scan(limit=100_000)
        reference_root = reference.root()
    stamp = ingest.local_submitter()
    for entries in (fast_entries, reference_entries):  # both paths stamp every record
        assert {json.loads(e.body or b"")["submitter"] for e in entries} == {stamp}
    drawn = [i for i, e in enumerate(fast_entries) if i % 7 == 4]
    assert drawn  # records without a salt differ only by the salt the server drew
    for i, (ours, theirs) in enumerate(zip(fast_entries, reference_entries, strict=True)):
        assert (ours.index, ours.record_id, ours.kind, ours.actor, ours.timestamp_ms) == (
            theirs.index,
            theirs.record_id,
            theirs.kind,
            theirs.actor,
            theirs.timestamp_ms,
        )
        if i % 7 != 4:
            assert ours.body == theirs.body and ours.leaf_hash == theirs.leaf_hash
        else:
            mine, other = json.loads(ours.body or b""), json.loads(theirs.body or b"")
            assert mine.pop("salt") != other.pop("salt") and mine == other
    assert fast_root != reference_root  # the drawn salts differ


def test_the_same_file_ingested_twice_gets_different_salts(
    log_at: Callable[..., Log], tmp_path: Path
) -> None:
    """A large file with no salts, three lines in seven on the Python path: the writer draws
    salts for its first chunk, then forks a ``Pool(2)``; no salt may repeat, within one
    ingest or across two."""
    lines = []
    for i in range(LARGE + 5_000):
        doc = record(i)
        doc.pop("salt", None)
        lines.append(json.dumps(doc))
    source = tmp_path / "unsalted.jsonl"
    source.write_text("\n".join(lines) + "\n")
    assert source.stat().st_size >= ingest.PARALLEL_BYTES
    ingests: list[set[str]] = []
    for name in ("first", "second"):
        with log_at(tmp_path / name) as log:
            assert ingest.ingest_file(log, source).appended == len(lines)
            salts = {json.loads(e.body or b"")["salt"] for e in log.entries()}
            assert len(salts) == len(lines)  # within one ingest, every salt is new
            ingests.append(salts)
    assert not ingests[0] & ingests[1]


def test_a_bad_line_deep_in_a_large_file_is_named_and_nothing_is_written(
    log_at: Callable[..., Log],
    tmp_path: Path,
) -> None:
    count = LARGE + 3_000
    lines = [json.dumps(record(i)) for i in range(count)]
    lines[21_500] = lines[21_500].replace('"amount": ', '"amount": 1.5, "x": ')
    source = tmp_path / "bad.jsonl"
    source.write_text("\n".join(lines) + "\n")
    with log_at(tmp_path / "data") as log:
        with pytest.raises(RecordError, match=r"line 21501: .*float"):
            ingest.ingest_file(log, source)
        assert log.size == 0 and log.refresh() == 0


@pytest.mark.parametrize("workers", [None, 0, 1, 2])
@pytest.mark.parametrize(
    ("change", "reserved"),
    [
        ({"kind": "decision"}, "decision"),  # a line the fast path would take, but for its kind
        ({"kind": "escrow_event", "actor": "société"}, "escrow_event"),  # a Python-path line
        ({"id": "escrow:31337:0xab:0:cd"}, "escrow:"),
        ({"id": "risk:alert:AL-1", "timestamp": "2026-11-21T09:30:00.5Z"}, "risk:"),
        ({"submitter": "service:indexer"}, None),  # a client may not stamp itself
    ],
)
def test_a_reserved_or_self_stamped_line_in_a_large_file_is_refused_and_nothing_is_written(
    log_at: Callable[..., Log],
    tmp_path: Path,
    workers: int | None,
    change: dict[str, Any],
    reserved: str | None,
) -> None:
    count = LARGE + 3_000
    lines = [simple(i) for i in range(count)]
    lines[22_222] = json.dumps({**json.loads(lines[22_222]), **change})
    source = tmp_path / "reserved.jsonl"
    source.write_text("\n".join(lines) + "\n")
    assert source.stat().st_size >= ingest.PARALLEL_BYTES
    with log_at(tmp_path / "data") as log:
        with pytest.raises(RecordError, match="line 22223: ") as caught:
            ingest.ingest_file(log, source, workers=workers)
        if reserved is None:
            assert "submitter is stamped by the server" in str(caught.value)
        else:
            assert isinstance(caught.value, ReservedError) and caught.value.reserved == reserved
            assert repr(reserved) in str(caught.value)
        assert log.size == 0 and log.refresh() == 0


def test_a_service_submitter_may_ingest_reserved_records_and_a_bad_one_is_refused(
    log_at: Callable[..., Log],
    tmp_path: Path,
) -> None:
    source = tmp_path / "service.jsonl"
    source.write_text(json.dumps({**json.loads(simple(1)), "kind": "decision"}) + "\n")
    with log_at(tmp_path / "data") as log:
        ingest.ingest_file(log, source, submitter="service:risk")
        assert json.loads(log.entry("inv-0000001").body or b"")["submitter"] == "service:risk"
        with pytest.raises(InputError, match="submitter 'alice' is not"):
            ingest.ingest_file(log, source, submitter="alice")


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("alice", "local:alice"),
        ("J. Doe/ä", "local:J._Doe__"),
        ("u" * 80, "local:" + "u" * 64),
        ("", "local:unknown"),
    ],
)
def test_the_local_submitter_is_the_os_user_made_safe(
    monkeypatch: pytest.MonkeyPatch, user: str, expected: str
) -> None:
    monkeypatch.setattr(ingest.getpass, "getuser", lambda: user)
    assert ingest.local_submitter() == expected


def test_the_local_submitter_without_a_user_name(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> str:
        raise KeyError("no passwd entry")

    monkeypatch.setattr(ingest.getpass, "getuser", missing)
    assert ingest.local_submitter() == "local:unknown"


def test_resubmitted_and_conflicting_ids_in_bulk(
    log_at: Callable[..., Log], tmp_path: Path
) -> None:
    first = [json.dumps(record(i)) for i in range(100) if i % 7 != 4]  # salts supplied
    (tmp_path / "a.jsonl").write_text("\n".join(first[:60]) + "\n")
    (tmp_path / "b.jsonl").write_text("\n".join(first[40:] + first[40:45]) + "\n")
    with log_at(tmp_path / "data") as log:
        ingest.ingest_file(log, tmp_path / "a.jsonl")
        again = ingest.ingest_file(log, tmp_path / "b.jsonl")
        assert (again.appended, again.duplicates) == (len(first) - 60, 25)
        size, root = log.size, log.root()
        changed = json.loads(first[3])
        changed["payload"]["amount"] += 1
        (tmp_path / "c.jsonl").write_text(json.dumps(record(500)) + "\n" + json.dumps(changed))
        with pytest.raises(ConflictError, match="inv-0000003"):
            ingest.ingest_file(log, tmp_path / "c.jsonl")
        assert (log.refresh(), log.root()) == (size, root)


def simple(i: int, **payload: Any) -> str:
    """A record every line of which the native fast path takes (so chunks come as batches)."""
    return json.dumps(
        {
            "id": f"inv-{i:07d}",
            "kind": "transaction",
            "timestamp": f"2026-11-{1 + i % 28:02d}T09:{i % 60:02d}:00Z",
            "actor": "supplier:globex",
            "payload": {"amount": i * 100, "currency": "USD", **payload},
            "salt": f"{i:032x}",
        }
    )


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the records appended through the byte-column lane."""
    counted: list[int] = []
    lane = Transaction.append_batch

    def spy(self: Transaction, batch: native.Batch) -> Any:
        counted.append(batch.size)
        return lane(self, batch)

    monkeypatch.setattr(Transaction, "append_batch", spy)
    return counted


@pytest.mark.parametrize("workers", [None, 0, 1, 2])
def test_the_batch_lane_builds_the_log_the_reference_path_does(
    log_at: Callable[..., Log],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    batches: list[int],
    workers: int | None,
) -> None:
    count = LARGE + 1_234
    source = tmp_path / "simple.jsonl"
    source.write_text("\n".join(simple(i) for i in range(count)) + "\n")
    assert source.stat().st_size >= ingest.PARALLEL_BYTES
    with log_at(tmp_path / "fast") as fast:
        fast.append([prepare(json.loads(simple(10**6)))])  # bundle 0 is partly stored already
        result = ingest.ingest_file(fast, source, workers=workers)
        assert (result.appended, result.tree_size) == (count, count + 1)
        assert sum(batches) == count  # every chunk took the lane
        fast_entries, fast_root = list(fast.entries()), fast.root()
        assert fast.audit().clean
    monkeypatch.setattr(native, "AVAILABLE", False)
    with log_at(tmp_path / "reference") as reference:
        reference.append([prepare(json.loads(simple(10**6)))])
        ingest.ingest_file(reference, source, workers=0)
        assert list(reference.entries()) == fast_entries and reference.root() == fast_root
    assert sum(batches) == count  # the reference path made no batch


def test_the_batch_lane_hands_resubmissions_to_the_careful_path(
    log_at: Callable[..., Log], tmp_path: Path, batches: list[int]
) -> None:
    (tmp_path / "a.jsonl").write_text("\n".join(simple(i) for i in range(100)) + "\n")
    (tmp_path / "b.jsonl").write_text("\n".join(simple(i) for i in range(50, 150)) + "\n")
    deals = [simple(200, deal_id="D-1"), simple(201), simple(202, deal_id=7)]
    (tmp_path / "c.jsonl").write_text("\n".join(deals) + "\n")
    with log_at(tmp_path / "data") as log:
        assert ingest.ingest_file(log, tmp_path / "a.jsonl").appended == 100
        again = ingest.ingest_file(log, tmp_path / "b.jsonl")
        assert (again.appended, again.duplicates, log.size) == (50, 50, 150)
        assert log.entry("inv-0000149").index == 149
        ingest.ingest_file(log, tmp_path / "c.jsonl")
        with RecordIndex(log.path, database_url=log.database_url) as index:
            index.sync(log)  # the deals' timelines follow the log (no deal index in append)
            assert [log.entry_at(i).record_id for i in index.deal_indexes("D-1")] == ["inv-0000200"]
            assert [log.entry_at(i).record_id for i in index.deal_indexes("7")] == ["inv-0000202"]
        assert batches == [100, 100, 3] and log.audit().clean


@pytest.mark.parametrize("size", [1, 7, 64, 1 << 20])
def test_chunks_cover_the_file_at_line_ends_with_their_first_line_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    monkeypatch.setattr(ingest, "CHUNK_BYTES", size)
    data = b"first\n\nthird line\r\n" + b"x" * 100 + b"\nlast, no line end"
    source = tmp_path / "lines.jsonl"
    source.write_bytes(data)
    with source.open("rb") as stream:
        jobs = list(ingest._chunks(stream, "lines.jsonl", frozenset(), "local:alice"))
    assert b"".join(raw for _, raw, _, _, _ in jobs) == data
    assert {submitter for *_, submitter in jobs} == {"local:alice"}
    line = 1
    for first, raw, count, _, _ in jobs:
        assert (first, count) == (line, raw.count(b"\n"))
        assert raw.endswith(b"\n") or raw.endswith(b"last, no line end")
        line += count
    with source.open("rb") as stream:
        assert ingest._count_lines(stream) == 5 and stream.tell() == 0


def test_bundles_packed_ahead_are_dropped_when_resubmissions_shift_the_leaves(
    log_at: Callable[..., Log], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parsing child packs bundles assuming every record is new; re-submitted ids in
    the file move the later records to other leaves, so the writer must not use them."""
    count = LARGE + 2_000
    lines = [simple(i) for i in range(count)]
    lines[9_000:9_000] = [simple(i) for i in range(300)]  # 300 re-submissions mid-file
    source = tmp_path / "resubmits.jsonl"
    source.write_text("\n".join(lines) + "\n")
    assert source.stat().st_size >= ingest.PARALLEL_BYTES
    logs = {}
    for name, workers in (("child", 1), ("reference", 0)):
        if name == "reference":
            monkeypatch.setattr(native, "AVAILABLE", False)
        with log_at(tmp_path / name) as log:
            result = ingest.ingest_file(log, source, workers=workers)
            assert (result.appended, result.duplicates) == (count, 300)
            assert log.audit().clean
            logs[name] = (list(log.entries()), log.root())
    assert logs["child"] == logs["reference"]


def test_pack_makes_the_complete_bundles_of_a_batch() -> None:
    raw = "\n".join(simple(i) for i in range(700)).encode()
    batch = native.prepare_batch(raw, frozenset(KINDS), os.urandom(16 * 701))
    assert batch is not None
    width = bundles.WIDTH
    packed = bundles.pack(batch, width - 6)  # leaves 122..821: bundles 1 to 5 are complete
    assert packed.first == width - 6 and len(packed.packed) == (700 - 6) // width
    records = batch.records()
    for j, blob in enumerate(packed.packed):
        stored = bundles.decode(blob)
        first = width * (j + 1)
        assert [r.leaf_index for r in stored] == list(range(first, first + width))
        assert [r.body for r in stored] == [
            r.body for r in records[6 + width * j : 6 + width * (j + 1)]
        ]
    assert bundles.pack(batch, 0).packed[1] == bundles.encode(records[width : 2 * width], width)


def test_a_parsing_child_that_dies_fails_the_ingest_and_nothing_is_written(
    log_at: Callable[..., Log], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "simple.jsonl"
    source.write_text("\n".join(simple(i) for i in range(LARGE + 500)) + "\n")
    parse = ingest._parse_chunk

    def dies_at_the_third_chunk(job: ingest.Job) -> ingest.Chunk:
        if job[0] > 2 * 5_000:  # a later chunk: only the child (forked with this patch) gets it
            os._exit(3)
        return parse(job)

    monkeypatch.setattr(ingest, "_parse_chunk", dies_at_the_third_chunk)
    with log_at(tmp_path / "data") as log:
        with pytest.raises(
            InputError, match=r"parser process stopped unexpectedly \(exit code 3\)"
        ):
            ingest.ingest_file(log, source, workers=1)
        assert log.refresh() == 0


def test_the_cli_keeps_the_log_in_the_postgresql_database_the_settings_name(
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``CHAINAUDIT_DATABASE_URL``: ``ingest`` writes the log there (no ``log.sqlite`` in the
    data directory), ``audit`` reads it; a reading command refuses a database with no log."""
    from chainaudit.cli import main  # noqa: PLC0415

    data = tmp_path / "data"
    monkeypatch.setenv("CHAINAUDIT_DATABASE_URL", database_url)
    assert main(["--data-dir", str(data), "audit"]) == 2
    assert "no log in the database CHAINAUDIT_DATABASE_URL names" in capsys.readouterr().err
    source = tmp_path / "records.jsonl"
    source.write_text("\n".join(simple(i) for i in range(300)) + "\n")
    assert main(["--data-dir", str(data), "ingest", "-q", str(source)]) == 0
    assert (data / "log.sqlite").stat().st_size == 0  # only the other stores' file, empty
    assert main(["--data-dir", str(data), "audit"]) == 0
    with Log.open(tmp_path / "elsewhere", database_url=database_url) as log:
        assert log.size == 300 and log.engine == "postgresql"
    monkeypatch.delenv("CHAINAUDIT_DATABASE_URL")  # the data directory alone: refused
    assert main(["--data-dir", str(data), "audit"]) == 2
    assert "is kept in PostgreSQL" in capsys.readouterr().err
    monkeypatch.setenv("CHAINAUDIT_DATABASE_URL", "mysql://nope")
    assert main(["--data-dir", str(data), "audit"]) == 2
    assert "must start with postgresql://" in capsys.readouterr().err
