"""The log in an engine-neutral file: ``chainaudit export`` and ``chainaudit import``.

The format (JSON Lines, UTF-8, one JSON object a line), version :data:`FORMAT`:

1. a header ``{"format": "chainaudit-log-export/1", "tree_size": N, "root": "0x…",
   "chainaudit_version": "…", "exported_at": "…"}``;
2. the log's local checkpoints, smallest first, ``{"type": "checkpoint", "tree_size": n,
   "root": "0x…"}`` (before the leaves, so that an import checks each root as it passes
   that size, in one pass);
3. one line per leaf, in leaf order: ``{"type": "leaf", "leaf_index": i, "record_id": …,
   "kind": …, "actor": …, "timestamp_ms": …, "body": "<canonical record>" | null,
   "leaf_hash": "0x…", "signature": {"signer": "0x…", "signature": "0x…"} | null}``;
   ``body`` is the record's RFC 8785 canonical text exactly as hashed (``null`` once
   erased: the leaf hash stays);
4. the signed checkpoint notes ``{"type": "signed_checkpoint", "tree_size": n, "note":
   "…"}`` (c2sp.org/tlog-checkpoint).

Checkpoints and notes are those of sizes up to ``N``.

Both directions go through :class:`chainaudit.log.store.Log`'s public methods only, so the file
moves a log between engines (SQLite, PostgreSQL) as well as between machines. It holds the
log itself: the records, the tree (by its leaf hashes), the stored signatures and signed
checkpoints. It does not hold the anchor book, the API keys, the indexer's cursor or the
derived tables (those follow the log and are rebuilt from it, or live on chain).

Bodies of kinds encrypted at rest are written in plain text (the export opens them with the
master key, and the importing log seals them again under its own configuration): treat an
export like the database itself.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

from chainaudit import __version__
from chainaudit.core import merkle
from chainaudit.core.errors import ChainauditError
from chainaudit.core.records import PreparedRecord
from chainaudit.log.store import Log, Transaction
from chainaudit.service.backup import Anchored

__all__ = ["ExportError", "ExportSummary", "export_file", "export_log", "import_log"]

FORMAT: Final = "chainaudit-log-export/1"
_LEAF_PREFIX: Final = b"\x00"
_CHUNK: Final = 4096
"""Leaves handed to one :meth:`chainaudit.log.store.Transaction.append` call on import."""


class ExportError(ChainauditError):
    """An export cannot be written, or a file cannot be imported (the message names the line)."""


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """What :func:`export_log` wrote or :func:`import_log` rebuilt."""

    tree_size: int
    root: bytes
    erased: int
    """Leaves whose content was erased (leaf hash kept, body absent)."""
    signed_checkpoints: int


def export_log(log: Log, out: IO[str]) -> ExportSummary:
    """Write ``log`` as of its size when called to ``out`` in the format above.

    Appends made meanwhile by other connections are not written (the header's tree size is
    taken first; every leaf below it is immutable). A record erased meanwhile may be written
    with or without its body: its leaf hash is the same either way.

    Raises:
        ExportError: a stored record is missing, or the store lacks a leaf hash.
        StoreError, ConfigError: a body sealed at rest cannot be opened (no master key or
            data key): the export needs the master key of the log it reads.
    """
    size = log.refresh()
    root = log.root_at(size)
    _write(
        out,
        {
            "format": FORMAT,
            "tree_size": size,
            "root": _hex(root),
            "chainaudit_version": __version__,
            "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )
    for checkpoint_size, checkpoint_root in log.checkpoints():
        if checkpoint_size <= size:
            _write(
                out,
                {"type": "checkpoint", "tree_size": checkpoint_size, "root": _hex(checkpoint_root)},
            )
    expected, erased = 0, 0
    if size:
        for entry in log.entries(0):
            if entry.index >= size:
                break
            if entry.index != expected:
                raise ExportError(f"the log has no record at leaf {expected}: run chainaudit audit")
            signature = log.signature(entry.record_id)
            erased += entry.body is None
            _write(
                out,
                {
                    "type": "leaf",
                    "leaf_index": entry.index,
                    "record_id": entry.record_id,
                    "kind": entry.kind,
                    "actor": entry.actor,
                    "timestamp_ms": entry.timestamp_ms,
                    "body": None if entry.body is None else entry.body.decode("utf-8"),
                    "leaf_hash": _hex(entry.leaf_hash),
                    "signature": (
                        None
                        if signature is None
                        else {"signer": signature[0], "signature": signature[1]}
                    ),
                },
            )
            expected += 1
    if expected != size:
        raise ExportError(f"the log has no record at leaf {expected}: run chainaudit audit")
    signed = 0
    for signed_size in log.signed_sizes(-1, size + 1):
        note = log.signed_checkpoint(signed_size)
        if note is not None:
            _write(out, {"type": "signed_checkpoint", "tree_size": signed_size, "note": note})
            signed += 1
    return ExportSummary(tree_size=size, root=root, erased=erased, signed_checkpoints=signed)


def import_log(
    log: Log,
    lines: Iterator[str],
    *,
    anchored: Sequence[Anchored] = (),
    allow_behind: bool = False,
) -> ExportSummary:
    """Rebuild, in the empty ``log``, the log that ``lines`` (an export) describe.

    Every leaf with a body is re-hashed (``SHA-256(0x00 || body)``) and must give the line's
    leaf hash, and its body must state the line's id, kind, actor and time; an erased leaf
    is appended with its recorded hash (:meth:`chainaudit.log.store.Transaction.append_erased`).
    The rebuilt tree must give each exported checkpoint's root, and each checkpoint of
    ``anchored`` (read from the chain, :func:`chainaudit.service.backup.chain_anchors`), as it
    passes that size, and the header's size and root at the end. An anchored checkpoint beyond the
    file's tree is refused unless ``allow_behind``. Everything is appended in one
    transaction, which commits only if all of that holds; the signed checkpoint notes are
    stored after it. On any refusal nothing is written.

    Raises:
        ExportError: the log is not empty, a line is malformed or does not match (the
            message names the first such line, 1-based), or the rebuilt tree does not give
            an anchored checkpoint's root (the message names the first such checkpoint).
        ConflictError: a record id appears twice.
    """
    if log.refresh() != 0:
        raise ExportError(
            f"the log already holds {log.size} records: import rebuilds a log only into an "
            "empty one"
        )
    numbered = ((n, line) for n, line in enumerate(lines, start=1) if line.strip())
    tree_size, root = _header(numbered)
    anchors = sorted(anchored, key=lambda a: a.tree_size)
    beyond = [a for a in anchors if a.tree_size > tree_size]
    if beyond and not allow_behind:
        raise ExportError(
            f"anchored checkpoint {beyond[0].seq} (tree size {beyond[0].tree_size}) is beyond "
            f"the file's {tree_size} leaves: the export is older than the chain's history "
            "(export again, or pass --allow-behind to lose the anchored records after it)"
        )
    anchors = [a for a in anchors if a.tree_size <= tree_size]
    checkpoints: list[tuple[int, int, bytes]] = []  # (line, size, root), checked in order
    notes: list[tuple[int, str]] = []
    erased = 0
    pending: list[PreparedRecord] = []
    signatures: dict[str, tuple[str, str]] = {}
    size = 0
    with log.transaction() as batch:

        def reached() -> None:
            """Check every anchored and exported checkpoint of the size the rebuilt log has
            now."""
            while anchors and anchors[0].tree_size == size:
                anchor = anchors.pop(0)
                _flush(batch, pending, signatures)
                if batch.root() != anchor.root:
                    raise ExportError(
                        f"anchored checkpoint {anchor.seq} (tree size {size}, block "
                        f"{anchor.block}) differs: the chain holds root {_hex(anchor.root)}, "
                        f"the file's leaves give {_hex(batch.root())}"
                    )
            while checkpoints and checkpoints[0][1] == size:
                number, _, expected = checkpoints.pop(0)
                _flush(batch, pending, signatures)
                if batch.root() != expected:
                    raise ExportError(
                        f"line {number}: the rebuilt log does not reproduce the checkpoint "
                        f"at size {size}: its root is {_hex(batch.root())}, the line says "
                        f"{_hex(expected)}"
                    )

        for number, line in numbered:
            item = _object(number, line)
            what = item.get("type")
            if what == "checkpoint":
                if size or notes:
                    raise ExportError(f"line {number}: a checkpoint after the leaves")
                at = _size(number, item)
                if at > tree_size or (checkpoints and at <= checkpoints[-1][1]):
                    raise ExportError(
                        f"line {number}: checkpoint size {at} is out of order or beyond "
                        f"the header's {tree_size}"
                    )
                checkpoints.append((number, at, _hash(number, item, "root")))
                reached()  # size 0
            elif what == "leaf":
                if notes:
                    raise ExportError(f"line {number}: a leaf after the signed checkpoints")
                if item.get("leaf_index") != size:
                    raise ExportError(
                        f"line {number}: leaf_index {item.get('leaf_index')!r}, expected {size}"
                    )
                leaf = _leaf(number, item)
                signed = item.get("signature")
                signature = None if signed is None else _signature(number, signed)
                if item.get("body") is None:
                    _flush(batch, pending, signatures)
                    batch.append_erased(
                        leaf.record_id,
                        leaf.kind,
                        leaf.actor,
                        leaf.timestamp_ms,
                        leaf.leaf_hash,
                        signature=signature,
                    )
                    erased += 1
                else:
                    if signature is not None:
                        signatures[leaf.record_id] = signature
                    pending.append(leaf)
                    if len(pending) >= _CHUNK:
                        _flush(batch, pending, signatures)
                size += 1
                reached()
            elif what == "signed_checkpoint":
                note = item.get("note")
                if not isinstance(note, str):
                    raise ExportError(f"line {number}: a signed checkpoint needs its note text")
                notes.append((_size(number, item), note))
            else:
                raise ExportError(f"line {number}: unknown line type {what!r}")
        _flush(batch, pending, signatures)
        if checkpoints:
            number, at, _ = checkpoints[0]
            raise ExportError(f"line {number}: the file ends before size {at}")
        if batch.size != tree_size or batch.root() != root:
            raise ExportError(
                f"the rebuilt log has {batch.size} leaves and root {_hex(batch.root())}, the "
                f"header says {tree_size} and {_hex(root)}: the file is incomplete or altered"
            )
    for note_size, note in notes:
        log.put_signed_checkpoint(note_size, note)
    return ExportSummary(
        tree_size=log.size, root=log.root(), erased=erased, signed_checkpoints=len(notes)
    )


def _flush(
    batch: Transaction, pending: list[PreparedRecord], signatures: dict[str, tuple[str, str]]
) -> None:
    """Append ``pending`` (then empty it): every one must be a new leaf."""
    if not pending:
        return
    result = batch.append(pending, signatures)
    if result.appended != len(pending):
        raise ExportError(f"{result.duplicates} record id(s) of the file appear twice")
    pending.clear()
    signatures.clear()


def _header(numbered: Iterator[tuple[int, str]]) -> tuple[int, bytes]:
    for number, line in numbered:
        item = _object(number, line)
        if item.get("format") != FORMAT:
            raise ExportError(
                f"line {number}: not a chainaudit log export (format {item.get('format')!r}, "
                f"expected {FORMAT!r})"
            )
        return _size(number, item), _hash(number, item, "root")
    raise ExportError("the file is empty: no export header")


def _leaf(number: int, item: dict[str, Any]) -> PreparedRecord:
    """The line's record, checked: its body hashes to its leaf hash and states its fields."""
    record_id, kind, actor, ts = (
        item.get(k) for k in ("record_id", "kind", "actor", "timestamp_ms")
    )
    if not (isinstance(record_id, str) and isinstance(kind, str) and isinstance(actor, str)):
        raise ExportError(f"line {number}: a leaf needs a string record_id, kind and actor")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise ExportError(f"line {number}: a leaf needs an integer timestamp_ms")
    leaf_hash = _hash(number, item, "leaf_hash")
    if "body" not in item:
        raise ExportError(f"line {number}: a leaf needs its body (null when erased)")
    body_text = item["body"]
    if body_text is None:
        return PreparedRecord(record_id, kind, actor, ts, False, b"", leaf_hash)
    if not isinstance(body_text, str):
        raise ExportError(f"line {number}: body must be the canonical record text or null")
    body = body_text.encode("utf-8")
    computed = hashlib.sha256(_LEAF_PREFIX + body).digest()
    if computed != leaf_hash:
        raise ExportError(
            f"line {number}: leaf {item['leaf_index']} (record {record_id!r}): its body hashes to "
            f"{_hex(computed)}, the line says {_hex(leaf_hash)}"
        )
    stated = _stated(body)
    if stated != (record_id, kind, actor, ts):
        raise ExportError(
            f"line {number}: leaf {item['leaf_index']}: the body states id, kind, actor, time "
            f"{stated!r}, the line {(record_id, kind, actor, ts)!r}"
        )
    return PreparedRecord(record_id, kind, actor, ts, False, body, leaf_hash)


def _stated(body: bytes) -> tuple[object, ...] | None:
    """``(id, kind, actor, timestamp_ms)`` as a canonical body states them, else ``None``."""
    from chainaudit.core.errors import RecordError  # noqa: PLC0415
    from chainaudit.core.records import parse_timestamp  # noqa: PLC0415

    try:
        document = json.loads(body)
        return (
            document["id"],
            document["kind"],
            document["actor"],
            parse_timestamp(document["timestamp"]),
        )
    except (ValueError, KeyError, TypeError, RecordError):
        return None


def _signature(number: int, value: object) -> tuple[str, str]:
    if not isinstance(value, dict):
        raise ExportError(f"line {number}: signature must be an object or null")
    signer, signature = value.get("signer"), value.get("signature")
    if not (isinstance(signer, str) and isinstance(signature, str)):
        raise ExportError(f"line {number}: a signature needs its signer and signature")
    return signer, signature


def _object(number: int, line: str) -> dict[str, Any]:
    try:
        item = json.loads(line)
    except ValueError as exc:
        raise ExportError(f"line {number}: not JSON: {exc}") from exc
    if not isinstance(item, dict):
        raise ExportError(f"line {number}: not a JSON object")
    return item


def _size(number: int, item: dict[str, Any]) -> int:
    value = item.get("tree_size")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ExportError(f"line {number}: tree_size must be a whole number")
    return value


def _hash(number: int, item: dict[str, Any], name: str) -> bytes:
    value = item.get(name)
    try:
        if not isinstance(value, str) or not value.startswith("0x"):
            raise ValueError(value)
        raw = bytes.fromhex(value[2:])
    except ValueError as exc:
        raise ExportError(f"line {number}: {name} must be 0x and 64 hex digits") from exc
    if len(raw) != merkle.HASH_SIZE:
        raise ExportError(f"line {number}: {name} must be 0x and 64 hex digits")
    return raw


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def _write(out: IO[str], item: dict[str, Any]) -> None:
    out.write(json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n")


def export_file(log: Log, path: Path) -> ExportSummary:
    """:func:`export_log` into ``path`` through a temporary name and a rename (a failed
    export leaves no partial file); raises :class:`ExportError` if ``path`` exists."""
    if path.exists():
        raise ExportError(f"{path} exists already: give a new file name")
    temporary = path.with_name(f".{path.name}.partial")
    try:
        with temporary.open("w", encoding="utf-8") as out:
            summary = export_log(log, out)
            out.flush()
            os.fsync(out.fileno())
        temporary.rename(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return summary
