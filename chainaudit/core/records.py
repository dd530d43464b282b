"""Records: the JSON documents the log holds, and their leaf data.

Pure, no I/O except the operating system's random source for salts. A record is a JSON object::

    {"id": "po-2026-0001", "kind": "transaction", "timestamp": "2026-11-21T09:30:00Z",
     "actor": "buyer:acme", "payload": {...}, "salt": "<32 lowercase hex digits>"}

* ``id`` is chosen by the client and unique in the log; 1-128 characters from
  ``A-Z a-z 0-9 . _ : @ / -``, starting with a letter or digit.
* ``kind`` is one of :data:`KINDS` or a kind the deployment declares.
* ``timestamp`` is RFC 3339 with a time zone (``Z`` or an offset).
* ``actor`` names who made the record (1-256 characters).
* ``payload`` is a JSON object; no floats anywhere (amounts are integers in minor units or
  decimal strings).
* ``salt`` is 16 random bytes in hex, drawn here when the client sends none. It sits inside
  the hashed bytes so an anchored hash reveals nothing about a guessable payload, and a
  payload can later be erased while its proof stays valid.
* ``submitter`` names who appended the record (:mod:`chainaudit.core.provenance`): stamped by the
  API (``key:<key id>``), by ``chainaudit ingest`` (``local:<user>``) or by the service itself
  (``service:<component>``), never taken from a client.

The leaf data is the RFC 8785 canonical form of the whole object (:mod:`chainaudit.core.canonical`)
and the leaf hash is ``SHA-256(0x00 || leaf data)`` (RFC 9162 §2.1.1).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from chainaudit.core import provenance
from chainaudit.core.canonical import MAX_DEPTH, canonicalize, canonicalize_checked, check_value
from chainaudit.core.errors import JsonNestingError, RecordError, ReservedError
from chainaudit.core.jsonlimits import check_nesting
from chainaudit.core.merkle import hash_leaf

__all__ = [
    "KINDS",
    "MAX_RECORD_BYTES",
    "SALT_BYTES",
    "PreparedRecord",
    "is_submitter",
    "new_salt",
    "parse_json_line",
    "parse_timestamp",
    "prepare",
    "same_content",
]

KINDS: frozenset[str] = frozenset(
    {
        "transaction",  # payments, invoices, purchase orders, shipments
        "decision",  # risk decisions, approvals, rule-set versions, incident steps
        "escrow_event",  # on-chain escrow events, indexed
        "document",  # certificates, bills of lading, inspection reports
        "admin",  # privileged actions: keys, roles, pause, settings
    }
)
"""The record kinds every deployment accepts; more can be declared per log."""

FIELDS = ("id", "kind", "timestamp", "actor", "payload", "salt", "submitter")
REQUIRED = frozenset(FIELDS) - {"salt", "submitter"}
MAX_RECORD_BYTES = 64 * 1024
SALT_BYTES = 16

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}")
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")
_SALT = re.compile(r"[0-9a-f]{32}")
_SUBMITTER = re.compile(r"(key|local|service):[A-Za-z0-9._@-]{1,64}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")


class PreparedRecord(NamedTuple):
    """A validated record with its canonical bytes and leaf hash, ready to append."""

    record_id: str
    kind: str
    actor: str
    timestamp_ms: int
    salted: bool
    """True when the client supplied the salt itself."""
    body: bytes
    """The RFC 8785 canonical bytes: the leaf data."""
    leaf_hash: bytes

    def document(self) -> dict[str, Any]:
        """Return the record as a JSON object (parsed back from its canonical bytes)."""
        return dict(json.loads(self.body))


_salt_pool: list[str] = []


def _forget_salts() -> None:
    _salt_pool.clear()


# A forked child must never hand out salts its parent drew too: the pool is emptied in every
# child, so each process draws its own from the OS.
os.register_at_fork(after_in_child=_forget_salts)


def new_salt() -> str:
    """Return a fresh random salt: 16 bytes from the OS CSPRNG, as lowercase hex.

    Salts are drawn 1,024 at a time (one system call) and handed out once each; the pool
    does not survive a fork.
    """
    if not _salt_pool:
        pool = os.urandom(SALT_BYTES * 1024).hex()
        width = 2 * SALT_BYTES
        _salt_pool.extend(pool[i : i + width] for i in range(0, len(pool), width))
    return _salt_pool.pop()


def prepare(
    record: Mapping[str, Any] | Any,
    *,
    kinds: Iterable[str] = KINDS,
    salt: str | None = None,
    submitter: str | None = None,
    domain_checked: bool = False,
) -> PreparedRecord:
    """Validate ``record`` and compute its canonical bytes and leaf hash.

    ``salt`` overrides the random salt drawn when the record has none (for tests and replays).
    ``submitter`` stamps who appends the record (``key:…``, ``local:…`` or ``service:…``); a
    record that already carries a ``submitter`` is then refused, since clients may not set
    it. Without ``submitter`` a stored record's own field is kept (re-preparing a stored body).
    ``domain_checked`` is for :func:`parse_json_line` only: it promises that the payload came
    from a parser that refused floats and holds no integer over 15 digits and no deep
    nesting, so the payload walk of :func:`chainaudit.core.canonical.check_value` can be skipped.
    Raises :class:`RecordError` with a precise message for every malformed field; the record
    is not modified.
    """
    if type(record) is not dict:
        raise RecordError("a record must be a JSON object")
    missing = REQUIRED - record.keys()
    if missing:
        raise RecordError(f"missing field(s): {', '.join(sorted(missing))}")
    if len(record) > len(REQUIRED):
        unknown = record.keys() - set(FIELDS)
        if unknown:
            raise RecordError(f"unknown field(s): {', '.join(sorted(unknown))}")
    record_id, kind = record["id"], record["kind"]
    timestamp, actor, payload = record["timestamp"], record["actor"], record["payload"]
    if type(record_id) is not str or not _ID.fullmatch(record_id):
        raise RecordError(
            "id must be 1-128 characters of A-Z a-z 0-9 . _ : @ / - starting with a letter or digit"
        )
    if type(kind) is not str or (kind not in kinds and kind not in KINDS):
        allowed = ", ".join(sorted(set(kinds) | KINDS))
        raise RecordError(f"kind must be one of: {allowed}")
    if type(actor) is not str or not 0 < len(actor) <= 256 or not actor.isprintable():
        raise RecordError("actor must be 1-256 printable characters")
    timestamp_ms = parse_timestamp(timestamp)
    if type(payload) is not dict:
        raise RecordError("payload must be a JSON object")
    supplied = record.get("salt")
    if supplied is not None and (type(supplied) is not str or not _SALT.fullmatch(supplied)):
        raise RecordError("salt must be 32 lowercase hex digits (16 bytes)")
    stamped = record.get("submitter")
    if submitter is not None:
        if "submitter" in record:
            raise RecordError("submitter is stamped by the server; remove it from the record")
        stamped = submitter
    if stamped is not None and (type(stamped) is not str or not _SUBMITTER.fullmatch(stamped)):
        raise RecordError("submitter must be key:<id>, local:<user> or service:<name>")
    document = {
        "id": record_id,
        "kind": kind,
        "timestamp": timestamp,
        "actor": actor,
        "payload": payload,
        "salt": supplied or salt or new_salt(),
    }
    if stamped is not None:
        document["submitter"] = stamped
    if not actor.isascii():
        check_value(actor, "actor")
    if domain_checked:
        body = _canonical_fast(document)
    else:
        astral = check_value(payload, "payload")
        body = canonicalize(document) if astral else canonicalize_checked(document)
    if len(body) > MAX_RECORD_BYTES:
        raise RecordError(f"record is {len(body)} bytes; the limit is {MAX_RECORD_BYTES}")
    return PreparedRecord(
        record_id=record_id,
        kind=kind,
        actor=actor,
        timestamp_ms=timestamp_ms,
        salted=supplied is not None,
        body=body,
        leaf_hash=hash_leaf(body),
    )


def is_submitter(value: object) -> bool:
    """Whether ``value`` is a well-formed submitter: ``key:<id>``, ``local:<user>`` or
    ``service:<name>``, the name 1-64 characters of ``A-Z a-z 0-9 . _ @ -``."""
    return type(value) is str and _SUBMITTER.fullmatch(value) is not None


def parse_timestamp(value: Any) -> int:
    """Return an RFC 3339 timestamp with a time zone as milliseconds since the epoch.

    Raises :class:`RecordError` for anything else.
    """
    cached = _timestamps.get(value) if type(value) is str else None
    if cached is not None:
        return cached
    if type(value) is not str or not _TIMESTAMP.fullmatch(value):
        raise RecordError("timestamp must be RFC 3339 with a time zone, e.g. 2026-11-21T09:30:00Z")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise RecordError(f"timestamp {value!r} is not a valid date and time") from exc
    if len(_timestamps) >= 4096:
        _timestamps.clear()
    _timestamps[value] = millis = int(moment.timestamp() * 1000)
    return millis


_timestamps: dict[str, int] = {}


def summary(body: bytes) -> tuple[str, str, str, int] | None:
    """``(id, kind, actor, timestamp_ms)`` as stated by a record's canonical bytes, or ``None``
    if they do not hold a record with those fields (what the store keeps beside each body,
    recomputed for :meth:`chainaudit.log.store.Log.audit`)."""
    try:
        document = json.loads(body)
        return (
            document["id"],
            document["kind"],
            document["actor"],
            parse_timestamp(document["timestamp"]),
        )
    except (ValueError, TypeError, KeyError, RecordError):
        return None


def same_content(stored_body: bytes, candidate: PreparedRecord) -> bool:
    """Return whether a re-submitted record carries the same content as the stored one.

    The salt is compared only when the client supplied it; a record re-sent without a salt is
    the same record if everything else is equal.
    """
    if candidate.salted:
        return stored_body == candidate.body
    stored = json.loads(stored_body)
    fresh = json.loads(candidate.body)
    stored.pop("salt", None)
    fresh.pop("salt", None)
    return bool(canonicalize(stored) == canonicalize(fresh))


def _canonical_fast(document: dict[str, Any]) -> bytes:
    """Canonicalise a document whose values are known to be in the JCS domain.

    Falls back to the full check when the bytes hold a lone surrogate (the UTF-8 encode fails)
    or a character outside the Basic Multilingual Plane (key order may then differ).
    """
    try:
        body = canonicalize_checked(document)
    except UnicodeEncodeError:
        body = b""
    if not body or (not body.isascii() and _FOUR_BYTE_UTF8.search(body)):
        check_value(document["payload"], "payload")
        return canonicalize(document)
    return body


class _OutOfDomainError(ValueError):
    """A float, NaN, Infinity or unsafe integer met while parsing (see check_value)."""


def _refuse_float(text: str) -> Any:
    raise _OutOfDomainError(text)


def _safe_int(text: str) -> int:
    if len(text) > 15:  # 15 digits always fit in ±(2**53 - 1); longer ones are checked
        raise _OutOfDomainError(text)
    return int(text)


_decode = json.JSONDecoder(
    parse_float=_refuse_float, parse_constant=_refuse_float, parse_int=_safe_int
).decode
_FOUR_BYTE_UTF8 = re.compile(rb"[\xf0-\xf4]")


def parse_json_line(
    line: str,
    line_number: int | None = None,
    *,
    kinds: Iterable[str] = KINDS,
    submitter: str | None = None,
) -> PreparedRecord:
    """Parse one JSON Lines record and :func:`prepare` it, tagging errors with the line.

    With ``submitter`` the record is stamped with it (:func:`prepare`: a line carrying its own
    ``submitter`` is refused); a client submitter (not ``service:…``) may moreover write no
    reserved kind or id (:func:`chainaudit.core.provenance.check_client_write`).
    Raises :class:`RecordError` (with ``line`` set) for invalid JSON and invalid records, and
    its subclass :class:`ReservedError` (``reserved`` naming the kind or id prefix) for a
    reserved record from a client.
    """
    try:
        try:
            check_nesting(line, source="the record")  # before any parser: see jsonlimits
            value = _decode(line)
            fast = line.count("{") + line.count("[") < MAX_DEPTH
        except _OutOfDomainError:
            value, fast = json.loads(line), False  # the full check names the float's path
        record = prepare(value, kinds=kinds, submitter=submitter, domain_checked=fast)
        if submitter is not None and not provenance.is_service(submitter):
            provenance.check_client_write(record.kind, record.record_id)
        return record
    except ReservedError as exc:
        raise ReservedError(exc.reason, reserved=exc.reserved, line=line_number) from exc
    except RecordError as exc:
        raise RecordError(exc.reason, line=line_number) from exc
    except JsonNestingError as exc:
        raise RecordError(str(exc), line=line_number) from exc
    except (ValueError, RecursionError) as exc:
        raise RecordError(f"invalid JSON: {exc}", line=line_number) from exc
