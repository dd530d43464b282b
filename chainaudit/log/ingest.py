"""Bulk ingest of JSON Lines files into the log.

Parsing, validation, canonicalisation and hashing are pure and run in worker processes when a
file is large; the appends run in the calling process, inside the log's write transaction, as
parsed chunks arrive. By default a whole file is one atomic batch: a bad line anywhere leaves
the log exactly as it was. With ``commit_every`` the file is committed in batches of that many
records, each atomic and acknowledged once durable.

Every record is stamped with its submitter (:mod:`chainaudit.core.provenance`): ``local:<user>``,
the operating-system user running the ingest, unless the caller names another. A line that
carries its own ``submitter`` is refused, and so, for a client submitter, is a line of a
reserved kind or under a reserved id prefix (:class:`~chainaudit.core.errors.ReservedError`, with
the line number): only the service writes those.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import multiprocessing
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import BinaryIO

from chainaudit.core import provenance
from chainaudit.core.errors import InputError, RecordError
from chainaudit.core.records import KINDS, SALT_BYTES, PreparedRecord, is_submitter, parse_json_line
from chainaudit.log import bundles, datakeys, native
from chainaudit.log.store import AppendResult, Log

__all__ = [
    "PARALLEL_BYTES",
    "Chunk",
    "IngestResult",
    "Job",
    "Progress",
    "ingest_file",
    "local_submitter",
]

CHUNK_BYTES = 1 << 20
"""Records are parsed, handed over and appended a chunk of about this many bytes at a time."""
PIPE_BYTES = 1 << 20
"""The pipe from a parsing child holds this much (Linux's default limit for F_SETPIPE_SZ)."""
PARALLEL_BYTES = 1 << 21
"""Files smaller than this are parsed in-process (another process costs more than it saves)."""
SLOW_SHARE = 0.25
SLOW_PATH_WORKERS = 2
FAST_PATH_WORKERS = 1
"""By default the first chunk of a file is parsed in the writer's process, and decides how
the rest of a large file is parsed. Simple records take the native fast path (under a
microsecond each) and come as byte columns (:class:`~chainaudit.log.native.Batch`), so one child
process parses them beside the writer and hands them over through a pipe for almost nothing
(``scripts/bench_log.py`` on 2 cores at 1M records: 433,518 records/s with the child,
328,423 with ``--workers 0``). When
more than ``SLOW_SHARE`` of the first chunk's lines take the Python path (about 10 µs each),
``SLOW_PATH_WORKERS`` processes parse the rest instead."""


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


Job = tuple[int, bytes, int, frozenset[str], str]
"""One chunk to parse: its first line's number, its bytes, its line count, the kinds and the
submitter to stamp."""


def local_submitter() -> str:
    """The submitter of records ingested on this machine: ``local:<user>``, the operating
    system user with every character outside ``A-Z a-z 0-9 . _ @ -`` replaced by ``_`` and
    cut to 64 characters (``local:unknown`` when the user cannot be looked up)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = ""
    return provenance.local_submitter(re.sub(r"[^A-Za-z0-9._@-]", "_", user)[:64] or "unknown")


Chunk = list[PreparedRecord] | native.Batch
"""A parsed chunk: byte columns when every line took the native fast path, else records."""


def _prepare(job: Job) -> tuple[Chunk, int]:
    """Parse the lines of one chunk (see :data:`Job`).

    A chunk of simple records comes back as a :class:`~chainaudit.log.native.Batch` from the
    native fast path (:mod:`chainaudit.log.native`). Otherwise every line the fast path declines,
    invalid ones included, goes through :func:`parse_json_line`. Returns the chunk and how
    many of its lines took the Python path.
    """
    first_line, raw, count, kinds, submitter = job
    salts = os.urandom(SALT_BYTES * (count + 1))
    batch = native.prepare_batch(raw, kinds, salts, submitter)
    if batch is not None:
        return batch, 0
    lines: list[bytes] | None = None
    prepared: list[PreparedRecord] = []
    slow = 0
    for item in native.prepare_records(raw, kinds, salts, submitter):
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
        prepared.append(parse_json_line(text, number, kinds=kinds, submitter=submitter))
        slow += 1
    return prepared, slow


def _parse_chunk(job: Job) -> Chunk:
    """The records of one chunk (see :func:`_prepare`)."""
    return _prepare(job)[0]


Wire = native.Batch | tuple[tuple[object, ...], ...]


def _parse_for_wire(job: Job) -> Wire:
    """:func:`_parse_chunk` in a worker, as :func:`_to_wire` sends it."""
    return _to_wire(_parse_chunk(job))


def _to_wire(chunk: Chunk) -> Wire:
    """A chunk to send to another process: a batch as it is (bytes), records field by field,
    which crosses the process boundary several times cheaper than a list of named tuples."""
    return chunk if isinstance(chunk, native.Batch) else tuple(zip(*chunk, strict=True))


def _from_wire(wire: Wire) -> Chunk:
    if isinstance(wire, native.Batch):
        return wire
    return [PreparedRecord._make(fields) for fields in zip(*wire, strict=True)]


def _size(chunk: Chunk) -> int:
    return chunk.size if isinstance(chunk, native.Batch) else len(chunk)


def _chunks(source: BinaryIO, name: str, kinds: frozenset[str], submitter: str) -> Iterator[Job]:
    """Read ``source`` to its end in chunks of about :data:`CHUNK_BYTES`, each cut after a
    line end (the last one may lack it), to be stamped with ``submitter``; raises
    :class:`InputError` if reading fails."""
    line, carry = 1, b""
    while True:
        try:
            block = source.read(CHUNK_BYTES)
        except OSError as exc:
            raise InputError(f"cannot read {name}: {exc.strerror or exc}") from exc
        if not block:
            if carry:
                yield line, carry, carry.count(b"\n"), kinds, submitter
            return
        data = carry + block if carry else block
        cut = data.rfind(b"\n") + 1
        chunk, carry = data[:cut], data[cut:]
        if chunk:
            count = chunk.count(b"\n")
            yield line, chunk, count, kinds, submitter
            line += count


def _parsed(
    jobs: Iterator[Job],
    large: bool,
    workers: int | None,
    first_leaf: Callable[[], int] | None,
    at_rest: datakeys.AtRest | None = None,
) -> Iterator[Chunk]:
    """The records of ``jobs``, chunk by chunk, parsed by ``workers`` processes if the input
    is ``large`` (``None``: chosen from the first chunk, see :data:`FAST_PATH_WORKERS`).
    ``first_leaf()``, asked when the first chunk is wanted, is the leaf the records will
    start at if all are new: a parsing child then also seals the kinds ``at_rest`` names
    (:func:`chainaudit.log.datakeys.seal_batch`) and packs their bundles."""
    start = first_leaf() if first_leaf is not None else None
    if workers is None:
        first = next(jobs, None)
        if first is None:
            return
        chunk, slow = _prepare(first)
        if start is not None:
            start += _size(chunk)
        yield chunk
        workers = SLOW_PATH_WORKERS if slow > SLOW_SHARE * _size(chunk) else FAST_PATH_WORKERS
    if workers < 1 or not large:
        yield from map(_parse_chunk, jobs)
    elif workers == 1:
        yield from _parsed_by_child(jobs, start, at_rest)
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            yield from map(_from_wire, pool.imap(_parse_for_wire, jobs))


def _parsed_by_child(
    jobs: Iterator[Job], next_leaf: int | None, at_rest: datakeys.AtRest | None = None
) -> Iterator[Chunk]:
    """The chunks of ``jobs`` parsed by one forked child, which runs ahead of the caller by
    what the pipe holds. Unlike a pool, this starts no thread in the caller's process, so
    the writer never waits for the GIL while SQLite and Zstandard work."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    with contextlib.suppress(OSError, AttributeError):  # fewer, larger reads (Linux only)
        fcntl.fcntl(receiver.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    child = context.Process(
        target=_parse_into, args=(jobs, sender, receiver, next_leaf, at_rest), daemon=True
    )
    child.start()
    sender.close()
    try:
        while True:
            try:
                kind, payload = receiver.recv()
            except EOFError:
                child.join(timeout=5)  # it closed the pipe in exiting: read its exit code
                raise InputError(
                    f"the parser process stopped unexpectedly (exit code {child.exitcode})"
                ) from None
            if kind == "chunk":
                yield _from_wire(payload)
            elif kind == "error":
                raise payload
            else:
                return
    finally:
        if child.is_alive():
            child.terminate()
        child.join()
        receiver.close()


def _parse_into(
    jobs: Iterator[Job],
    sender: Connection,
    receiver: Connection,
    next_leaf: int | None,
    at_rest: datakeys.AtRest | None = None,
) -> None:
    """The child of :func:`_parsed_by_child`: send each parsed chunk, then ``done`` (or the
    error that stopped it). With ``next_leaf`` (where the records start if all are new) it
    also seals each batch's records of the kinds ``at_rest`` seals for those leaves
    (:func:`chainaudit.log.datakeys.seal_batch`: the writer then only stores the key runs, and
    unseals for nothing if the batch lands elsewhere) and packs its complete bundles
    (:func:`chainaudit.log.bundles.pack`). A batch naming a deal is left plain (the writer
    appends it record by record).

    The child closes its inherited copy of the pipe's reading end first: then, if the writer
    dies, sending fails (``BrokenPipeError``) and the child ends instead of blocking."""
    receiver.close()
    try:
        for job in jobs:
            chunk = _parse_chunk(job)
            if next_leaf is not None:
                if isinstance(chunk, native.Batch):
                    sealed = None
                    if at_rest is not None and b'"deal_id":' not in chunk.bodies:
                        sealed = datakeys.seal_batch(chunk, next_leaf, at_rest)
                    chunk = bundles.pack(sealed or chunk, next_leaf)
                    if sealed is not None:
                        chunk = datakeys.drop_packed(chunk)  # each sealed body crosses once
                next_leaf += _size(chunk)
            sender.send(("chunk", _to_wire(chunk)))
        sender.send(("done", None))
    except BrokenPipeError:  # the writer is gone (it failed, or was killed): nothing to tell
        pass
    except Exception as exc:  # a bad line (RecordError) or a bug: the writer raises it
        with contextlib.suppress(BrokenPipeError):
            sender.send(("error", exc))
    finally:
        sender.close()


def _count_lines(source: BinaryIO) -> int:
    """The lines of ``source`` from where it stands to its end (the last may lack a line
    end); the position is restored. For progress reports only."""
    start, lines, last = source.tell(), 0, b"\n"
    while block := source.read(1 << 24):
        lines += block.count(b"\n")
        last = block[-1:]
    source.seek(start)
    return lines + (last != b"\n")


def ingest_file(
    log: Log,
    path: Path,
    *,
    commit_every: int | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    submitter: str | None = None,
) -> IngestResult:
    """Append every record of the JSON Lines file at ``path`` to ``log``, each stamped with
    ``submitter`` (default :func:`local_submitter`).

    Blank lines are skipped. Without ``commit_every`` the file is appended atomically: any
    invalid line raises :class:`RecordError` (with its line number) — a line with its own
    ``submitter``, or (for a client submitter) of a reserved kind or id, included, the latter
    as :class:`~chainaudit.core.errors.ReservedError` — a re-used id raises
    :class:`~chainaudit.core.errors.ConflictError`, and nothing is written. With ``commit_every``,
    each run of that many records is committed on its own (``progress`` is then called with
    ``committed=True`` after each durable commit) and an error leaves the earlier batches in
    place. ``workers`` parser processes run beside the writer for large files (0: parse in
    this process; 1: one child with a pipe; more: a pool; ``None``: chosen as
    :data:`FAST_PATH_WORKERS` describes). Raises
    :class:`InputError` if the file cannot be read or ``submitter`` is malformed.
    """
    if submitter is None:
        submitter = local_submitter()
    elif not is_submitter(submitter):
        raise InputError(f"submitter {submitter!r} is not key:<id>, local:<user> or service:<name>")
    try:
        source = path.open("rb")
        size = os.fstat(source.fileno()).st_size
        lines = _count_lines(source) if progress is not None else 0
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with source:
        chunks = _chunks(source, str(path), frozenset(log.kinds | KINDS), submitter)
        first_leaf = (lambda: log.size) if commit_every is None else None
        at_rest = log.at_rest if log.at_rest is not None and log.at_rest.kinds else None
        parsed = _parsed(chunks, size >= PARALLEL_BYTES, workers, first_leaf, at_rest)
        return _ingest(log, parsed, lines, commit_every, progress)


def _ingest(
    log: Log,
    parsed: Iterator[Chunk],
    lines: int,
    commit_every: int | None,
    progress: Progress | None,
) -> IngestResult:
    """:func:`ingest_file` once the input is open (``lines``: its line count, for
    ``progress``)."""
    done = appended = duplicates = 0

    def absorb(result: AppendResult, count: int, committed: bool) -> None:
        nonlocal done, appended, duplicates
        done += count
        appended += result.appended
        duplicates += result.duplicates
        if progress is not None:
            progress(done, lines, committed)

    if commit_every is None:
        with log.transaction() as batch:
            for chunk in parsed:
                added = (
                    batch.append_batch(chunk)
                    if isinstance(chunk, native.Batch)
                    else batch.append(chunk)
                )
                absorb(added, _size(chunk), False)
        if progress is not None:
            progress(done, lines, True)
    else:
        if commit_every < 1:
            raise InputError("commit_every must be at least 1")
        pending: list[PreparedRecord] = []
        for chunk in parsed:
            pending.extend(chunk.records() if isinstance(chunk, native.Batch) else chunk)
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
