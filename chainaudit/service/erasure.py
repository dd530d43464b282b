"""Erasing a record's content (personal data), for good, while every proof stays valid.

An erasure removes the record's canonical body from storage (:meth:`chainaudit.log.store.Log.erase`:
the bundle row rewritten without it, freed bytes zeroed, WAL truncated, and its data key
destroyed when it was sealed at rest, :mod:`chainaudit.log.datakeys`) and appends, in the same
transaction, an **erasure record**: kind ``admin``, id ``erasure:<leaf index>``, stamped by
:data:`chainaudit.core.provenance.PRIVACY`, whose payload says which record (id, leaf index, leaf
hash, kind), why (``reason``, legal ``basis``), on whose word and when::

    {"type": "erasure", "record_id": "...", "leaf_index": 7, "leaf_hash": "0x…",
     "erased_kind": "transaction", "reason": "...", "basis": "GDPR Art. 17(1)(a)",
     "requested_by": "key:…", "approved_by": "key:…", "approval_id": "APR-…"}

An officer erasure needs two officers: it is the controlled action ``record.erase`` of
:mod:`chainaudit.service.approvals` (:func:`chainaudit.app.controls.execute` calls :func:`erase`
with the requester and the approving checker). A retention erasure (:func:`run_retention`) is
approved by the data policy instead: its record names the policy file's SHA-256, the kind and its
``retention_days`` rather than two officers.

The leaf hash stays in the tree, so inclusion and consistency proofs and every anchored
checkpoint remain valid; :meth:`chainaudit.log.store.Log.audit` accepts a missing body exactly
when an erasure record names it. Records the service writes itself (reserved kinds and id
prefixes, :mod:`chainaudit.core.provenance`) cannot be erased: they hold no personal data and
readers rely on them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from chainaudit.core import provenance
from chainaudit.core.datapolicy import DataPolicy
from chainaudit.core.errors import ChainauditError, NotFoundError, RecordError
from chainaudit.core.records import PreparedRecord, prepare
from chainaudit.log.actions import now_rfc3339
from chainaudit.log.store import ERASURE_PREFIX, Entry, Log

__all__ = [
    "ERASURE_PREFIX",
    "Erased",
    "ErasureError",
    "erase",
    "erased_leaves",
    "erasure_id",
    "erasure_of",
    "run_retention",
]

MAX_REASON: Final = 2_000
MAX_BASIS: Final = 500
DAY_MS: Final = 86_400_000


class ErasureError(ChainauditError):
    """An erasure was refused: a reserved record, an empty reason or basis, ...

    ``status`` is the HTTP status the API answers with (409 already erased, 422 bad input).
    """

    def __init__(self, message: str, *, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Erased:
    """What one erasure did."""

    record_id: str
    leaf_index: int
    leaf_hash: bytes
    erasure_id: str
    erasure_index: int

    def to_json(self) -> dict[str, Any]:
        return {
            "record_id": self.record_id,
            "leaf_index": self.leaf_index,
            "leaf_hash": "0x" + self.leaf_hash.hex(),
            "erasure_record_id": self.erasure_id,
            "erasure_leaf_index": self.erasure_index,
        }


def erasure_id(leaf_index: int) -> str:
    """The id of the erasure record of the record at ``leaf_index`` (one per leaf)."""
    return f"{ERASURE_PREFIX}{leaf_index}"


def erasure_of(log: Log, leaf_index: int) -> tuple[Entry, dict[str, Any]] | None:
    """The entitled erasure record of leaf ``leaf_index`` and its payload, or ``None``."""
    try:
        entry = log.entry(erasure_id(leaf_index))
    except NotFoundError:
        return None
    if entry.body is None or entry.kind != "admin":
        return None
    document = json.loads(entry.body)
    payload = document.get("payload")
    if (
        not provenance.document_entitled(document)
        or not isinstance(payload, dict)
        or payload.get("type") != "erasure"
        or payload.get("leaf_index") != leaf_index
    ):
        return None
    return entry, payload


def erased_leaves(log: Log) -> Callable[[int, bytes], str | None]:
    """A lookup for :func:`chainaudit.verify.verifier.verify_bundle`'s ``erased``: how the content
    of a leaf (index, leaf hash) was erased according to ``log``, or ``None``."""

    def erased(leaf_index: int, leaf_hash: bytes) -> str | None:
        if not 0 <= leaf_index < log.refresh():
            return None
        found = erasure_of(log, leaf_index)
        if found is None or found[1].get("leaf_hash") != "0x" + leaf_hash.hex():
            return None
        entry, payload = found
        return (
            f"erased by erasure record {entry.record_id} (leaf {entry.index}) on "
            f"{payload.get('basis')!s}: {str(payload.get('reason'))[:200]}"
        )

    return erased


def check_erasable(entry: Entry) -> None:
    """Refuse erasing a service record (reserved kind or id) or one already erased.

    Raises :class:`ErasureError` (422 reserved, 409 already erased).
    """
    try:
        provenance.check_client_write(entry.kind, entry.record_id)
    except RecordError as exc:
        raise ErasureError(
            f"record {entry.record_id!r} is written by the service itself and cannot be "
            f"erased ({exc})"
        ) from exc
    if entry.body is None:
        raise ErasureError(
            f"the content of record {entry.record_id!r} is already erased", status=409
        )


def _text(value: object, name: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise ErasureError(f"{name} must be a non-empty string of at most {limit:,} characters")
    return value


def _erasure_record(entry: Entry, actor: str, fields: Mapping[str, Any]) -> PreparedRecord:
    try:
        return prepare(
            {
                "id": erasure_id(entry.index),
                "kind": "admin",
                "timestamp": now_rfc3339(),
                "actor": actor,
                "payload": {
                    "type": "erasure",
                    "record_id": entry.record_id,
                    "leaf_index": entry.index,
                    "leaf_hash": "0x" + entry.leaf_hash.hex(),
                    "erased_kind": entry.kind,
                    **fields,
                },
            },
            submitter=provenance.PRIVACY,
        )
    except RecordError as exc:
        raise ErasureError(f"cannot record the erasure: {exc}") from exc


def _perform(log: Log, entry: Entry, record: PreparedRecord) -> Erased:
    result = log.erase(entry.index, entry.record_id, record)
    return Erased(
        entry.record_id, entry.index, entry.leaf_hash, record.record_id, result.first_index
    )


def erase(
    log: Log,
    record_id: str,
    *,
    reason: str,
    basis: str,
    requested_by: str,
    approved_by: str,
    approval_id: str | None = None,
) -> Erased:
    """Erase the content of ``record_id`` on two officers' word; append its erasure record.

    Preconditions: ``requested_by`` and ``approved_by`` are two distinct officers (the
    approvals machinery has checked it); ``reason`` and ``basis`` are non-empty text.

    Raises:
        NotFoundError: no record ``record_id``.
        ErasureError: a service record, already erased (409), or a bad reason or basis.
        StoreError: the store cannot be written (nothing changed).
    """
    _text(reason, "reason", MAX_REASON)
    _text(basis, "basis", MAX_BASIS)
    if requested_by == approved_by:
        raise ErasureError(
            "an erasure needs two officers: the requester cannot approve it", status=403
        )
    entry = log.entry(record_id)
    check_erasable(entry)
    fields: dict[str, Any] = {
        "reason": reason,
        "basis": basis,
        "requested_by": requested_by,
        "approved_by": approved_by,
    }
    if approval_id is not None:
        fields["approval_id"] = approval_id
    return _perform(log, entry, _erasure_record(entry, approved_by, fields))


def check_request(params: Mapping[str, Any]) -> dict[str, Any]:
    """The normalised parameters of a ``record.erase`` request: ``record_id``, ``reason``,
    ``basis``. Raises :class:`ErasureError` (422) naming the first bad one."""
    unknown = sorted(set(params) - {"record_id", "reason", "basis"})
    if unknown:
        raise ErasureError(f"unknown parameter(s) for record.erase: {', '.join(unknown)}")
    return {
        "record_id": _text(params.get("record_id"), "record_id", 128),
        "reason": _text(params.get("reason"), "reason", MAX_REASON),
        "basis": _text(params.get("basis"), "basis", MAX_BASIS),
    }


# -- retention ---------------------------------------------------------------------------------


def run_retention(
    log: Log,
    policy: DataPolicy,
    policy_sha256: str,
    *,
    now_ms: int | None = None,
    batch: int = 1_000,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Erase up to ``batch`` records whose kind's ``retention_days`` have passed.

    A record expires at its timestamp plus its kind's ``retention_days``; records already
    erased are skipped, so a run repeated (after a restart, or with the same clock) erases
    nothing twice. Each erasure is its own transaction (:meth:`Log.erase`), named by the
    policy (``policy_sha256``, the kind, ``retention_days``) instead of two officers. With
    ``dry_run`` nothing is written: the summary lists what would be erased.

    Returns the summary ``{"erased": n, "would_erase": n, "remaining": n, "by_kind": {...},
    "records": [...] (at most 100), "dry_run": bool, "policy_sha256": ...,
    "orphan_keys_destroyed": n}``; ``remaining`` counts the expired records left for a later
    run. A data key still present for a record already erased (an erasure interrupted between
    its commit and the key's deletion) is destroyed too.
    """
    if batch < 1:
        raise ErasureError("the batch size must be at least 1")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    kept = {kind: p.retention_days for kind, p in policy.kinds.items() if p.retention_days}
    expired: list[tuple[int, str, str]] = []
    gone: list[int] = []
    if kept or log.at_rest is not None:
        for index, record_id, kind, timestamp_ms, present in log.stored_headers():
            if not present:
                gone.append(index)
                continue
            days = kept.get(kind)
            if (
                present
                and days is not None
                and timestamp_ms + days * DAY_MS <= now
                and provenance.reserved_prefix(record_id) is None
                and kind not in provenance.RESERVED_KINDS
            ):
                expired.append((index, record_id, kind))
    # A key left behind by an erasure interrupted between its commit and the key's deletion.
    orphans = log.destroy_keys(gone) if gone and not dry_run and log.at_rest is not None else 0
    chosen, remaining = expired[:batch], len(expired) - min(len(expired), batch)
    done: list[dict[str, Any]] = []
    by_kind: dict[str, int] = {}
    for index, record_id, kind in chosen:
        if not dry_run:
            entry = log.entry_at(index)
            if entry.body is None:  # erased meanwhile by another run
                continue
            fields = {
                "reason": f"retention period of {kept[kind]} days ended",
                "basis": "data policy retention",
                "policy_sha256": policy_sha256,
                "retention_days": kept[kind],
            }
            _perform(log, entry, _erasure_record(entry, provenance.PRIVACY, fields))
        by_kind[kind] = by_kind.get(kind, 0) + 1
        done.append({"record_id": record_id, "leaf_index": index, "kind": kind})
    count = sum(by_kind.values())
    return {
        "dry_run": dry_run,
        "erased": 0 if dry_run else count,
        "would_erase": count if dry_run else 0,
        "remaining": remaining,
        "by_kind": by_kind,
        "records": done[:100],
        "policy_sha256": policy_sha256,
        "orphan_keys_destroyed": orphans,
        "now_ms": now,
    }
