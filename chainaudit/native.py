"""The native fast path of bulk ingest, when the C extension :mod:`chainaudit._native` is built.

:func:`prepare_lines` takes a chunk of JSON Lines (``raw``, split on ``b"\\n"``, lines numbered
from 0) and returns one item per non-blank line (blank: ``line.strip()`` is empty), in order:

* a tuple with the fields of :class:`chainaudit.records.PreparedRecord`, in order
  (``PreparedRecord._make(item)``), for a line the C code is certain it prepares exactly as
  :func:`chainaudit.records.parse_json_line` would; or
* the line's offset in the chunk (an ``int``): the caller parses that line with
  :func:`~chainaudit.records.parse_json_line`, which also reports any error.

The C code takes only simple records (ASCII, no string escapes, integers of at most 15 digits,
no duplicate keys, a timestamp without fractional seconds, ...) and declines everything else;
it never raises for a bad record. ``kinds`` is the full set of allowed kinds (pass the union
with :data:`chainaudit.records.KINDS`). ``salts`` supplies 16 random bytes, consumed in order,
for each accepted record without a salt of its own (``os.urandom(16 * number_of_lines)`` is
always enough); :class:`ValueError` if it runs out.

:func:`hash_pairs` computes many RFC 9162 interior nodes in one call (the log's appends).

Without the extension (a build without a C compiler), :data:`AVAILABLE` is false,
:func:`prepare_lines` declines every line and :func:`hash_pairs` runs on :mod:`hashlib`, so
callers work either way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from chainaudit.records import PreparedRecord

Prepared = tuple[str, str, str, int, bool, bytes, bytes]
"""The fields of :class:`chainaudit.records.PreparedRecord`, in order."""

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


prepare_lines: PrepareLines
hash_pairs: Callable[[bytes], bytes]
try:
    from chainaudit import _native
except ImportError:  # pragma: no cover - the extension is built by every install in this repo
    AVAILABLE = False
    prepare_lines = prepare_lines_fallback
    hash_pairs = hash_pairs_fallback
else:
    AVAILABLE = True
    prepare_lines = _native.prepare_lines
    hash_pairs = _native.hash_pairs


def prepare_records(raw: bytes, kinds: frozenset[str], salts: bytes) -> list[PreparedRecord | int]:
    """:func:`prepare_lines` with each accepted record built as a :class:`PreparedRecord`
    by the extension itself (no second pass over the tuples)."""
    if AVAILABLE:
        return _native.prepare_lines(raw, kinds, salts, PreparedRecord)
    return [offset for offset in prepare_lines_fallback(raw, kinds, salts) if type(offset) is int]


__all__ = [
    "AVAILABLE",
    "PrepareLines",
    "Prepared",
    "hash_pairs",
    "hash_pairs_fallback",
    "prepare_lines",
    "prepare_lines_fallback",
    "prepare_records",
]
