"""Bulk ingest of JSON Lines files into the log.

Parsing, validation, canonicalisation and hashing are pure and run in worker processes when a
file is large; the appends run in the calling process, inside the log's write transaction, as
parsed chunks arrive. By default a whole file is one atomic batch: a bad line anywhere leaves
the log exactly as it was. With ``commit_every`` the file is committed in batches of that many
records, each atomic and acknowledged once durable.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from chainaudit import native
from chainaudit.errors import InputError, RecordError
from chainaudit.records import KINDS, SALT_BYTES, PreparedRecord, parse_json_line
from chainaudit.store import AppendResult, Log

CHUNK_BYTES = 1 << 20
"""Records are parsed, handed over and appended a chunk of about this many bytes at a time."""
PARALLEL_THRESHOLD = 20_000
"""Files with fewer lines than this are parsed in-process (a pool costs more than it saves)."""
SLOW_SHARE = 0.25
SLOW_PATH_WORKERS = 2
"""By default a file is parsed in the writer's process: the native fast path parses a simple
record in under a microsecond, less than handing it over from another process costs
(measured on 2 cores: 152-165k records/s in-process, 132-139k with one parser process). When
more than ``SLOW_SHARE`` of the first chunk's lines take the Python path (about 10 µs each),
the rest of a large file is parsed by ``SLOW_PATH_WORKERS`` processes instead."""

Progress = Callable[[int, int, bool], None]
"""Called as ``progress(records_done, records_total, committed)`` after each chunk."""


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What :func:`ingest_file` did."""

    records: int
    appended: int
    duplicates: int
    tree_size: int
    root: bytes


def _prepare(job: tuple[int, bytes, frozenset[str]]) -> tuple[list[PreparedRecord], int]:
    """Parse the lines of one chunk; ``job`` is (first line number, raw bytes, kinds).

    Simple records take the native fast path (:mod:`chainaudit.native`); every line it
    declines, invalid ones included, goes through :func:`parse_json_line`. Returns the
    records and how many took the Python path.
    """
    first_line, raw, kinds = job
    lines: list[bytes] | None = None
    prepared: list[PreparedRecord] = []
    slow = 0
    salts = os.urandom(SALT_BYTES * (raw.count(b"\n") + 1))
    for item in native.prepare_records(raw, kinds, salts):
        if type(item) is PreparedRecord:
            prepared.append(item)
            continue
        assert isinstance(item, int)
        if lines is None:
            lines = raw.split(b"\n")
        number = first_line + item
        try:
            text = lines[item].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordError(f"not valid UTF-8 ({exc.reason})", line=number) from exc
        prepared.append(parse_json_line(text, number, kinds=kinds))
        slow += 1
    return prepared, slow


def _parse_chunk(job: tuple[int, bytes, frozenset[str]]) -> list[PreparedRecord]:
    """The records of one chunk (see :func:`_prepare`)."""
    return _prepare(job)[0]


Columns = tuple[tuple[object, ...], ...]


def _parse_columns(job: tuple[int, bytes, frozenset[str]]) -> Columns:
    """:func:`_parse_chunk` in a worker: the records field by field, which crosses the
    process boundary several times cheaper than a list of named tuples."""
    return tuple(zip(*_parse_chunk(job), strict=True))


def _from_columns(columns: Columns) -> list[PreparedRecord]:
    return [PreparedRecord._make(fields) for fields in zip(*columns, strict=True)]


def _chunks(data: bytes, kinds: frozenset[str]) -> Iterator[tuple[int, bytes, frozenset[str]]]:
    """Cut ``data`` after a line end at least every :data:`CHUNK_BYTES`; each job carries the
    number of its first line."""
    start, line = 0, 1
    while start < len(data):
        end = data.find(b"\n", start + CHUNK_BYTES)
        end = len(data) if end < 0 else end + 1
        chunk = data[start:end]
        yield line, chunk, kinds
        line += chunk.count(b"\n")
        start = end


def _parsed(
    data: bytes, lines: int, kinds: frozenset[str], workers: int | None
) -> Iterator[list[PreparedRecord]]:
    """The records of ``data`` (``lines`` lines), chunk by chunk, parsed by ``workers``
    processes (``None``: in this process unless the first chunk shows the file mostly takes
    the Python path)."""
    jobs = _chunks(data, kinds)
    large = lines >= PARALLEL_THRESHOLD
    if workers is None:
        first = next(jobs, None)
        if first is None:
            return
        records, slow = _prepare(first)
        yield records
        workers = SLOW_PATH_WORKERS if large and slow > SLOW_SHARE * len(records) else 0
    if workers < 1 or not large:
        yield from map(_parse_chunk, jobs)
        return
    context = multiprocessing.get_context("fork")
    with context.Pool(workers) as pool:
        yield from map(_from_columns, pool.imap(_parse_columns, jobs))


def read_input(path: Path) -> bytes:
    """Read a whole input file; raises :class:`InputError` if it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc


def ingest_file(
    log: Log,
    path: Path,
    *,
    commit_every: int | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> IngestResult:
    """Append every record of the JSON Lines file at ``path`` to ``log``.

    Blank lines are skipped. Without ``commit_every`` the file is appended atomically: any
    invalid line raises :class:`RecordError` (with its line number), a re-used id raises
    :class:`~chainaudit.errors.ConflictError`, and nothing is written. With ``commit_every``,
    each run of that many records is committed on its own (``progress`` is then called with
    ``committed=True`` after each durable commit) and an error leaves the earlier batches in
    place. ``workers`` parser processes run beside the writer for large files (0: parse in
    this process; ``None``: chosen as :data:`SLOW_SHARE` describes). Raises
    :class:`InputError` if the file cannot be read.
    """
    data = read_input(path)
    total = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    kinds = frozenset(log.kinds | KINDS)
    done = appended = duplicates = 0

    def absorb(result: AppendResult, count: int, committed: bool) -> None:
        nonlocal done, appended, duplicates
        done += count
        appended += result.appended
        duplicates += result.duplicates
        if progress is not None:
            progress(done, total, committed)

    if commit_every is None:
        with log.transaction() as batch:
            for chunk in _parsed(data, total, kinds, workers):
                absorb(batch.append(chunk), len(chunk), False)
        if progress is not None:
            progress(done, total, True)
    else:
        if commit_every < 1:
            raise InputError("commit_every must be at least 1")
        pending: list[PreparedRecord] = []
        for chunk in _parsed(data, total, kinds, workers):
            pending.extend(chunk)
            while len(pending) >= commit_every:
                head, pending = pending[:commit_every], pending[commit_every:]
                absorb(log.append(head), len(head), True)
        if pending:
            absorb(log.append(pending), len(pending), True)
    return IngestResult(
        records=appended + duplicates,
        appended=appended,
        duplicates=duplicates,
        tree_size=log.size,
        root=log.root(),
    )
