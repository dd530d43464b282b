"""Record bundles: how the log stores its records, 128 to a compressed row.

Pure, no I/O. Records are stored the way tiled logs store entries (C2SP ``tlog-tiles``'
"entry bundles"): the records of leaves ``128b .. 128b+127`` form bundle ``b``, one SQLite row
holding them Zstandard-compressed. Only the bundle on the log's right edge is partial and grows;
every other bundle never changes. Writing one row per 128 records, and a seventh of their
bytes, is what lets a durable bulk append keep pace with parsing; reading one record costs
one small decompression and header parse (tens of microseconds). 128 keeps nearly all of
256's compression (7.2x against 7.6x on typical records) at half the cost of a read.

A bundle's plain form is a JSON header line, then the bodies back to back::

    [[index, record_id, kind, actor, timestamp_ms, body_length], ...]\\n<body><body>...

``body_length`` is ``-1`` for a record whose content was erased (its leaf hash, kept in the
tiles, still proves it). The header repeats what each canonical body says so that lists and
filters need no JSON parsing of bodies, and names each record's leaf index so that a record
removed from or moved inside a bundle is visible to :meth:`chainaudit.log.store.Log.audit`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

import zstandard

from chainaudit.log import native

__all__ = [
    "FIELDS",
    "HEIGHT",
    "WIDTH",
    "BundleError",
    "Stored",
    "assemble",
    "decode",
    "encode",
    "encode_at",
    "find",
    "key",
    "pack",
    "parts_at",
]

HEIGHT: Final = 7
WIDTH: Final = 1 << HEIGHT
"""Records per complete bundle."""
LEVEL: Final = 1
"""Zstandard level: about 1 GB/s and 7-8x smaller on typical records."""

_codecs = threading.local()
"""One compressor and decompressor per thread: a zstandard context is not safe to share
between threads (the API reads bundles from many at once, beside its writer thread)."""


def _compressor() -> zstandard.ZstdCompressor:
    try:
        return _codecs.compressor  # type: ignore[no-any-return]
    except AttributeError:
        _codecs.compressor = zstandard.ZstdCompressor(level=LEVEL)
        return _codecs.compressor  # type: ignore[no-any-return]


def _decompressor() -> zstandard.ZstdDecompressor:
    try:
        return _codecs.decompressor  # type: ignore[no-any-return]
    except AttributeError:
        _codecs.decompressor = zstandard.ZstdDecompressor()
        return _codecs.decompressor  # type: ignore[no-any-return]


class Stored(NamedTuple):
    """One record as a bundle holds it (fields 0-3 and 5 where ``PreparedRecord`` has them)."""

    record_id: str
    kind: str
    actor: str
    timestamp_ms: int
    leaf_index: int
    body: bytes | None
    """The RFC 8785 canonical bytes, ``None`` once erased."""


class BundleError(ValueError):
    """A stored bundle cannot be decoded (only a damaged or edited store has one)."""


def key(index: int) -> int:
    """The bundle that holds leaf ``index``."""
    return index >> HEIGHT


FIELDS: Final = (0, 1, 2, 3, 5)
"""Where record_id, kind, actor, timestamp_ms and body sit in ``PreparedRecord`` and
:class:`Stored` alike (for the native encoder)."""


def encode(records: list[Any], first: int) -> bytes:
    """Return the stored (compressed) form of ``records``, ``PreparedRecord`` or
    :class:`Stored` tuples, as the leaves from ``first`` on (a multiple of :data:`WIDTH`)."""
    return assemble([native.bundle_parts(first, records, FIELDS)])


def assemble(parts: Sequence[native.BundleParts]) -> bytes:
    """Return the stored form of a bundle from its runs (:func:`native.bundle_parts`), in
    leaf order."""
    items = b",".join(run[0] for run in parts if run[0])
    return _compressor().compress(b"".join([b"[", items, b"]\n", *(run[1] for run in parts)]))


def pack(batch: native.Batch, first: int) -> native.Batch:
    """``batch`` with the stored forms of the complete bundles its records make if they are
    the leaves from ``first`` on (:attr:`native.Batch.packed`): the bundles' compression
    moved off the writer, into the process that parses."""
    head = -first % WIDTH
    blobs = []
    for start in range(head, batch.size - WIDTH + 1, WIDTH):
        parts = native.batch_bundle_parts(first + start, batch, start, start + WIDTH)
        blobs.append(assemble([parts]))
    return batch._replace(first=first, packed=tuple(blobs))


def encode_at(records: Sequence[Stored]) -> bytes:
    """Return the stored form of ``records``, each at its own ``leaf_index`` (for upgrades
    and for tests that edit a store the way an attacker could)."""
    return assemble([parts_at(records)])


def parts_at(records: Sequence[Stored]) -> native.BundleParts:
    """The plain form of ``records``, each at its own ``leaf_index``, as one run."""
    header = json.dumps(
        [
            [r.leaf_index, r.record_id, r.kind, r.actor, r.timestamp_ms, _length(r.body)]
            for r in records
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    return header[1:-1], b"".join(r.body or b"" for r in records)


def _length(body: bytes | None) -> int:
    return -1 if body is None else len(body)


def decode(blob: bytes) -> list[Stored]:
    """Return the records of a stored bundle, in stored order.

    Raises :class:`BundleError` if ``blob`` is not a bundle :func:`encode` could have written.
    """
    plain, offset, header = _open(blob)
    records: list[Stored] = []
    for item in header:
        index, record_id, kind, actor, timestamp_ms, length = _entry(item)
        body = None if length < 0 else plain[offset : offset + length]
        offset += max(length, 0)
        records.append(Stored(record_id, kind, actor, timestamp_ms, index, body))
    if offset != len(plain):
        raise BundleError(f"bundle bodies end at byte {len(plain)}, its header says {offset}")
    return records


def find(blob: bytes, leaf_index: int) -> Stored | None:
    """The record a stored bundle holds for ``leaf_index`` (the first, in a damaged bundle
    that names it twice), or ``None``: :func:`decode` for one record, reading the header only
    up to it. Raises :class:`BundleError` as :func:`decode` does on the part it reads."""
    plain, offset, header = _open(blob)
    for item in header:
        index, record_id, kind, actor, timestamp_ms, length = _entry(item)
        if index == leaf_index:
            if offset + max(length, 0) > len(plain):
                raise BundleError(f"the body of leaf {index} runs past the bundle's end")
            body = None if length < 0 else plain[offset : offset + length]
            return Stored(record_id, kind, actor, timestamp_ms, index, body)
        offset += max(length, 0)
    return None


def _open(blob: bytes) -> tuple[bytes, int, list[Any]]:
    """The plain form of a stored bundle, where its bodies start, and its parsed header."""
    try:
        plain = _decompressor().decompress(blob)
        end = plain.index(b"\n")
        header = json.loads(plain[:end])
    except (zstandard.ZstdError, ValueError) as exc:
        raise BundleError(f"unreadable bundle: {exc}") from exc
    if type(header) is not list:
        raise BundleError("malformed bundle header: not a JSON array")
    return plain, end + 1, header


def _entry(item: Any) -> tuple[int, str, str, str, int, int]:
    """One header entry, checked: ``[index, record_id, kind, actor, timestamp_ms, length]``."""
    if type(item) is list and len(item) == 6:
        index, record_id, kind, actor, timestamp_ms, length = item
        if (
            type(index) is int
            and type(record_id) is str
            and type(kind) is str
            and type(actor) is str
            and type(timestamp_ms) is int
            and type(length) is int
        ):
            return index, record_id, kind, actor, timestamp_ms, length
    raise BundleError(f"malformed bundle entry {json.dumps(item)[:80]}")
