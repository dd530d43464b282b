"""The native fast path of bulk ingest, when the C extension :mod:`chainaudit._native` is built.

:func:`prepare_lines` takes a chunk of JSON Lines (``raw``, split on ``b"\\n"``, lines numbered
from 0) and returns one item per non-blank line (blank: ``line.strip()`` is empty), in order:

* a tuple with the fields of :class:`chainaudit.core.records.PreparedRecord`, in order
  (``PreparedRecord._make(item)``), for a line the C code is certain it prepares exactly as
  :func:`chainaudit.core.records.parse_json_line` would; or
* the line's offset in the chunk (an ``int``): the caller parses that line with
  :func:`~chainaudit.core.records.parse_json_line`, which also reports any error.

The C code takes only simple records (ASCII, no string escapes, integers of at most 15 digits,
no duplicate keys, a timestamp without fractional seconds, ...) and declines everything else;
it never raises for a bad record. ``kinds`` is the full set of allowed kinds (pass the union
with :data:`chainaudit.core.records.KINDS`). ``salts`` supplies 16 random bytes, consumed in order,
for each accepted record without a salt of its own (``os.urandom(16 * number_of_lines)`` is
always enough); :class:`ValueError` if it runs out.

With a ``submitter`` (:mod:`chainaudit.core.provenance`), :func:`prepare_batch` and
:func:`prepare_records` stamp it into every record's canonical body, as
``records.prepare(..., submitter=...)`` does, and hand back every line that carries its own
``submitter`` field; for a client submitter (``key:…``, ``local:…``) they also hand back every
line of a reserved kind or under a reserved id prefix, for the Python path to refuse
(:func:`chainaudit.core.records.parse_json_line` raises
:class:`~chainaudit.core.errors.ReservedError`).

:func:`hash_pairs` computes many RFC 9162 interior nodes in one call (the log's appends);
:func:`bundle_parts` writes the plain form of a record bundle (:mod:`chainaudit.log.bundles`).
:func:`prepare_batch` prepares a whole chunk as a :class:`Batch` of byte columns, for bulk
appends that make no object per record.

Without the extension (a build without a C compiler), :data:`AVAILABLE` is false,
:func:`prepare_lines` declines every line and :func:`hash_pairs` runs on :mod:`hashlib`, so
callers work either way.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from typing import Any, Final, NamedTuple

from chainaudit.core import provenance
from chainaudit.core.records import PreparedRecord

Prepared = tuple[str, str, str, int, bool, bytes, bytes]
"""The fields of :class:`chainaudit.core.records.PreparedRecord`, in order."""

PrepareLines = Callable[[bytes, frozenset[str], bytes], list[Prepared | int]]


def prepare_lines_fallback(raw: bytes, kinds: frozenset[str], salts: bytes) -> list[Prepared | int]:
    """Decline every non-blank line of ``raw``: the pure-Python stand-in for the extension."""
    del kinds, salts
    return [offset for offset, line in enumerate(raw.split(b"\n")) if line.strip()]


def hash_pairs_fallback(pairs: bytes) -> bytes:
    """RFC 9162 interior-node hashes SHA-256(0x01 || left || right) of 64-byte pairs,
    concatenated; the pure-Python stand-in for the extension's ``hash_pairs``."""
    if len(pairs) % 64:
        raise ValueError("hash_pairs: the length is not a multiple of 64")
    sha256 = hashlib.sha256
    return b"".join(sha256(b"\x01" + pairs[i : i + 64]).digest() for i in range(0, len(pairs), 64))


BundleParts = tuple[bytes, bytes]
"""A run of a record bundle's plain form: header entries joined by commas, and the bodies."""

BATCH_META: Final = struct.Struct("=8Iq2I")
"""One record in :attr:`Batch.meta`: the offsets and lengths, in :attr:`Batch.bodies`, of its
body, id, kind and actor, its timestamp in ms, its salted flag and a spare word."""


class Batch(NamedTuple):
    """A chunk's records as columns of bytes (:func:`prepare_batch`): cheap to hand between
    processes and to append, with no object per record."""

    size: int
    ids_json: bytes
    """The record ids as a JSON array."""
    meta: bytes
    """:data:`BATCH_META` entries, one per record."""
    bodies: bytes
    leaves: bytes
    """The 32-byte leaf hashes, back to back."""
    first: int = -1
    """The leaf index :attr:`packed` assumed for the first record (-1: nothing packed)."""
    packed: tuple[bytes, ...] = ()
    """The stored forms of the complete record bundles that the records make from the first
    multiple of 256 at or after :attr:`first` on (``chainaudit.log.bundles.pack``), made by the
    parsing process ahead of the writer; the writer uses them only if the batch starts at
    leaf :attr:`first` and all its records are new."""
    plain_meta: bytes = b""
    """Non-empty when the batch was sealed at rest for the leaves from :attr:`first` on
    (``chainaudit.log.datakeys.seal_batch``): :attr:`meta` then points at the sealed bodies and
    this, the plain :data:`BATCH_META` entries, at the plain ones (still in :attr:`bodies`)."""
    keys: tuple[Any, ...] = ()
    """With :attr:`plain_meta`: the ``chainaudit.log.datakeys.KeyRun`` rows holding the data keys
    of the sealed bodies, to be stored before the batch is committed."""

    def plain(self) -> Batch:
        """This batch with its plain bodies (and nothing packed) if it was sealed at rest."""
        if not self.plain_meta:
            return self
        return self._replace(meta=self.plain_meta, plain_meta=b"", keys=(), first=-1, packed=())

    def leaf_hashes(self) -> list[bytes]:
        leaves = self.leaves
        return [leaves[i : i + 32] for i in range(0, len(leaves), 32)]

    def records(self) -> list[PreparedRecord]:
        """The records as :class:`PreparedRecord` instances (for the careful paths)."""
        text = self.bodies
        out: list[PreparedRecord] = []
        for (
            body_at,
            body_len,
            id_at,
            id_len,
            kind_at,
            kind_len,
            actor_at,
            actor_len,
            millis,
            salted,
            _,
        ), leaf in zip(BATCH_META.iter_unpack(self.meta), self.leaf_hashes(), strict=True):
            out.append(
                PreparedRecord(
                    text[id_at : id_at + id_len].decode("ascii"),
                    text[kind_at : kind_at + kind_len].decode("ascii"),
                    text[actor_at : actor_at + actor_len].decode("ascii"),
                    millis,
                    bool(salted),
                    text[body_at : body_at + body_len],
                    leaf,
                )
            )
        return out


def bundle_parts_fallback(
    first: int, records: list[Any], fields: tuple[int, int, int, int, int]
) -> BundleParts:
    """A run of a record bundle's plain form (:mod:`chainaudit.log.bundles`): the pure-Python
    stand-in for the extension's ``bundle_parts``, byte for byte."""
    at_id, at_kind, at_actor, at_ts, at_body = fields
    header = json.dumps(
        [
            [
                first + i,
                r[at_id],
                r[at_kind],
                r[at_actor],
                r[at_ts],
                -1 if r[at_body] is None else len(r[at_body]),
            ]
            for i, r in enumerate(records)
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    return header[1:-1], b"".join(r[at_body] or b"" for r in records)


prepare_lines: PrepareLines
hash_pairs: Callable[[bytes], bytes]
bundle_parts: Callable[[int, list[Any], tuple[int, int, int, int, int]], BundleParts]
try:
    from chainaudit import _native
except ImportError:  # pragma: no cover - the extension is built by every install in this repo
    AVAILABLE = False
    prepare_lines = prepare_lines_fallback
    hash_pairs = hash_pairs_fallback
    bundle_parts = bundle_parts_fallback
else:
    AVAILABLE = True
    prepare_lines = _native.prepare_lines
    hash_pairs = _native.hash_pairs
    bundle_parts = _native.bundle_parts


_CLIENT_RESERVED: Final = tuple(provenance.RESERVED_PREFIXES)


def _stamping(
    kinds: frozenset[str], submitter: str | None
) -> tuple[frozenset[str], tuple[str, ...] | None]:
    """The kinds and reserved id prefixes to hand the extension for ``submitter``: a client
    (not a service) gets neither the reserved kinds nor the reserved ids, which the fast path
    then declines so that the Python path refuses them by name."""
    if submitter is None or provenance.is_service(submitter):
        return kinds, None
    return kinds - provenance.RESERVED_KINDS.keys(), _CLIENT_RESERVED


def prepare_batch(
    raw: bytes, kinds: frozenset[str], salts: bytes, submitter: str | None = None
) -> Batch | None:
    """The records of a chunk as a :class:`Batch`, or ``None`` if any non-blank line needs
    the Python path (then use :func:`prepare_records`); arguments as :func:`prepare_lines`,
    ``submitter`` as the module describes (:class:`ValueError` if it is malformed)."""
    if not AVAILABLE:
        return None
    fast_kinds, reserved = _stamping(kinds, submitter)
    columns = _native.prepare_batch(raw, fast_kinds, salts, submitter, reserved)
    return None if columns is None else Batch(*columns)


def batch_bundle_parts(first: int, batch: Batch, start: int, stop: int) -> BundleParts:
    """:func:`bundle_parts` for records ``start .. stop - 1`` of ``batch``, the leaves from
    ``first`` on."""
    if AVAILABLE:
        return _native.batch_bundle_parts(first, batch.meta, batch.bodies, start, stop)
    return bundle_parts_fallback(first, batch.records()[start:stop], (0, 1, 2, 3, 5))


def prepare_records(
    raw: bytes, kinds: frozenset[str], salts: bytes, submitter: str | None = None
) -> list[PreparedRecord | int]:
    """:func:`prepare_lines` with each accepted record built as a :class:`PreparedRecord`
    by the extension itself (no second pass over the tuples); ``submitter`` as the module
    describes (:class:`ValueError` if it is malformed)."""
    if AVAILABLE:
        fast_kinds, reserved = _stamping(kinds, submitter)
        return _native.prepare_lines(raw, fast_kinds, salts, PreparedRecord, submitter, reserved)
    return [offset for offset in prepare_lines_fallback(raw, kinds, salts) if type(offset) is int]


__all__ = [
    "AVAILABLE",
    "BATCH_META",
    "Batch",
    "BundleParts",
    "PrepareLines",
    "Prepared",
    "batch_bundle_parts",
    "bundle_parts",
    "bundle_parts_fallback",
    "hash_pairs",
    "hash_pairs_fallback",
    "prepare_batch",
    "prepare_lines",
    "prepare_lines_fallback",
    "prepare_records",
]
