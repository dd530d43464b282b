"""Who may write what: submitters, and the record kinds and ids reserved for the service.

Pure, no I/O. Every record carries, inside its hashed canonical bytes, a ``submitter`` field
stamped by whoever appended it — never by the client:

* ``key:<key id>`` — a record appended through the HTTP API with that API key;
* ``local:<user>`` — a record appended with ``chainaudit ingest`` on the operator's machine;
* ``service:<component>`` — a record the service writes itself (:data:`SERVICES`).

Records that drive money or risk are **reserved**: their kind (:data:`RESERVED_KINDS`) or their
id's namespace (:data:`RESERVED_PREFIXES`) may only be written by a service submitter. Clients
(every API key, admin and operator included, and ``chainaudit ingest``) are refused them at
the door (:func:`check_client_write`); readers consume a reserved record only when
:func:`entitled` says its stamped submitter may write it, so a record that reached the log
some other way (direct database access, an older version) is ignored and reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from chainaudit.core.errors import ReservedError

__all__ = [
    "API",
    "INDEXER",
    "KEYS",
    "PRIVACY",
    "RECONCILER",
    "RESERVED_KINDS",
    "RESERVED_PREFIXES",
    "RISK",
    "check_client_write",
    "document_entitled",
    "entitled",
    "is_service",
    "key_submitter",
    "local_submitter",
    "reserved_prefix",
]

INDEXER: Final = "service:indexer"
"""The escrow-event indexer (``escrow_event`` records, ``escrow:`` ids, integrity alarms)."""
RISK: Final = "service:risk"
"""The risk gate and compliance controls: decisions, alerts, holds, rule sets, incidents."""
RECONCILER: Final = "service:reconciler"
"""Reconciliation reports."""
KEYS: Final = "service:keys"
"""Key management: API keys created, rotated, revoked."""
ANCHORING: Final = "service:anchoring"
"""The anchoring service."""
API: Final = "service:api"
"""The API's own records of what a key did (deal actions, appends, reads, approvals)."""
PRIVACY: Final = "service:privacy"
"""Erasure of personal data: ``erasure:`` records (:mod:`chainaudit.service.erasure`)."""

SERVICES: Final = frozenset({INDEXER, RISK, RECONCILER, KEYS, ANCHORING, API, PRIVACY})
"""Every service identity; only these may write reserved kinds and ids."""

RESERVED_KINDS: Final[Mapping[str, frozenset[str]]] = {
    "escrow_event": frozenset({INDEXER}),
    "decision": frozenset({RISK, RECONCILER, API}),
    "admin": frozenset({KEYS, API, RISK, ANCHORING, INDEXER, PRIVACY}),
}
"""Each reserved kind and the services entitled to write it (the indexer writes ``admin`` only
for its integrity alarms, :mod:`chainaudit.service.integrity`)."""

RESERVED_PREFIXES: Final[Mapping[str, frozenset[str]]] = {
    "escrow:": frozenset({INDEXER}),
    "integrity:": frozenset({INDEXER, RECONCILER, API}),
    "action-": frozenset({API, KEYS, RISK}),
    "risk:": frozenset({RISK}),
    "incident:": frozenset({RISK}),
    "reconcile:": frozenset({RECONCILER}),
    "read:": frozenset({API}),
    "approval:": frozenset({API, RISK, KEYS}),
    "erasure:": frozenset({PRIVACY}),
}
"""Each reserved id prefix and the services entitled to write ids under it."""


def key_submitter(key_id: str) -> str:
    """The submitter stamped on records appended with the API key ``key_id``."""
    return f"key:{key_id}"


def local_submitter(user: str) -> str:
    """The submitter stamped on records appended by ``chainaudit ingest`` run by ``user``."""
    return f"local:{user}"


def is_service(submitter: str | None) -> bool:
    """Whether ``submitter`` is one of the service's own identities."""
    return submitter in SERVICES


def reserved_prefix(record_id: str) -> str | None:
    """The reserved prefix ``record_id`` falls under, or ``None``."""
    for prefix in RESERVED_PREFIXES:
        if record_id.startswith(prefix):
            return prefix
    return None


def check_client_write(kind: str, record_id: str) -> None:
    """Refuse a client's record of a reserved kind or under a reserved id prefix.

    Raises :class:`ReservedError` naming the kind or prefix; returns ``None`` otherwise.
    """
    if kind in RESERVED_KINDS:
        raise ReservedError(
            f"kind {kind!r} is reserved: only the service writes {kind} records "
            "(officers act through the dedicated endpoints and commands)",
            reserved=kind,
        )
    prefix = reserved_prefix(record_id)
    if prefix is not None:
        raise ReservedError(
            f"record id {record_id!r} is in the reserved namespace {prefix!r}: "
            "ids under it are written only by the service; choose another id",
            reserved=prefix,
        )


def entitled(submitter: str | None, kind: str, record_id: str) -> bool:
    """Whether ``submitter`` may have written a record of ``kind`` with id ``record_id``.

    Records of unreserved kinds under unreserved ids may come from anyone; a reserved kind or
    prefix needs a submitter in its set (a record with no submitter is entitled to neither).
    """
    allowed = RESERVED_KINDS.get(kind)
    if allowed is not None and submitter not in allowed:
        return False
    prefix = reserved_prefix(record_id)
    return prefix is None or submitter in RESERVED_PREFIXES[prefix]


def document_entitled(document: Mapping[str, Any]) -> bool:
    """:func:`entitled` for a parsed record document (its stamped ``submitter`` field)."""
    submitter = document.get("submitter")
    return entitled(
        submitter if isinstance(submitter, str) else None,
        str(document.get("kind", "")),
        str(document.get("id", "")),
    )
