"""Maker-checker approvals: controlled actions need two distinct officers.

An **officer** is the holder of an admin or operator API key (:data:`chainaudit.service.keys.
OFFICER_ROLES`); the key id is the officer's identity (a rotated key keeps its id), and an
officer key may also be bound to the officer's own on-chain account. Two keys bound to the
same account are the same officer. On the command line an officer identifies with the same
API key (``CHAINAUDIT_API_KEY``), checked against the local key store.

The controlled actions (:data:`ACTIONS`) — clearing an alert, lifting or shortening a
compliance hold, activating a new rule set, pausing or unpausing the escrow, creating an admin,
operator or partner key, rotating someone else's such key, granting a key the personal-data
permission — are never carried out on one
officer's word:

1. the **maker** requests the action (:func:`request`): a ``requested`` record;
2. a **checker**, a different officer (:func:`check_checker`: not the requester, not the same
   on-chain account, a role allowed for the action, the request still pending and not older
   than :data:`MAX_AGE_MS`), approves or rejects it: a ``decided`` record whose id is fixed
   per request, so the log's unique ids let exactly one decision land;
3. on approval the action runs with the checker's authority, and its outcome is recorded:
   an ``executed`` record (with the result) or a ``failed`` one (with the error).

Every step is a record of kind ``admin`` with id ``approval:<approval id>:<step>``, stamped
with a service submitter (:data:`chainaudit.core.provenance.KEYS` for key actions,
:data:`~chainaudit.core.provenance.RISK` for the others), so no client can forge one; readers here
skip any step record whose submitter is not entitled to it (:func:`chainaudit.core.provenance.
document_entitled`). Running the action itself is the caller's (the API or the CLI): it passes
an ``execute`` callable to :func:`approve`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from chainaudit.core import provenance
from chainaudit.core.errors import ChainauditError, ConflictError, NotFoundError, RecordError
from chainaudit.core.records import PreparedRecord, prepare
from chainaudit.log.actions import now_rfc3339
from chainaudit.log.store import Log
from chainaudit.service.keys import ApiKey, now_ms

__all__ = [
    "ACTIONS",
    "MAX_AGE_MS",
    "Approval",
    "ApprovalError",
    "Officer",
    "approve",
    "check_checker",
    "check_maker",
    "load",
    "pending",
    "reject",
    "request",
]

ACTIONS: Final[Mapping[str, str]] = {
    "alert.clear": "resolve an alert as cleared (the held action may then proceed)",
    "hold.lift": "lift a compliance hold on a milestone",
    "hold.shorten": "renew a compliance hold so that it ends sooner than it does now",
    "rules.activate": "bring a new risk rule set into force",
    "escrow.pause": "pause the escrow (no new deals, funding or financing)",
    "escrow.unpause": "resume new business on the escrow",
    "keys.create": "create an admin, operator or partner API key",
    "keys.rotate": "give another holder's admin, operator or partner key a new secret",
    "keys.grant-personal-data": "let an auditor or regulator key read personal fields unmasked",
    "party.freeze": "freeze a party in the vault's gate: no new deals, funding, financing, "
    "payments to it or withdrawals by it, for a bounded period (renewable)",
    "party.unfreeze": "lift a party's freeze before it ends",
    "record.erase": "erase a record's content (personal data) for good; its leaf hash, and so "
    "every proof, stays (chainaudit.service.erasure)",
}
"""Every controlled action and what it does."""

ROLES_FOR: Final[Mapping[str, tuple[str, ...]]] = {
    **{action: ("admin", "operator") for action in ACTIONS},
    "keys.create": ("admin",),
    "keys.rotate": ("admin",),
    "keys.grant-personal-data": ("admin",),
}
"""The officer roles that may request and approve each action."""

MAX_AGE_MS: Final = 7 * 24 * 3600 * 1000
"""A request not decided within this time can no longer be approved (request it again)."""

KIND: Final = "admin"
PREFIX: Final = "approval:"
Status = Literal["pending", "approved", "rejected", "executed", "failed", "expired"]

Append = Callable[[Sequence[PreparedRecord]], object]
"""Appends records durably (``Log.append``, or the API's group writer)."""


class ApprovalError(ChainauditError):
    """A request or decision was refused: unknown action, same officer, not pending, ...

    ``status`` is the HTTP status the API answers with (403 for who may not decide, 409 for a
    request in the wrong state, 422 for a malformed request).
    """

    def __init__(self, message: str, *, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Officer:
    """Who requests or decides: ``actor`` (``key:<id>``), role and on-chain account."""

    actor: str
    role: str
    address: str | None = None

    @classmethod
    def of_key(cls, key: ApiKey) -> Officer:
        """The officer holding ``key``; :class:`ApprovalError` (403) for a non-officer key."""
        if not key.officer:
            raise ApprovalError(
                f"the {key.role} role is not an officer's: only admin and operator keys "
                "request or approve controlled actions",
                status=403,
            )
        return cls(provenance.key_submitter(key.key_id), key.role, key.address)

    def same_as(self, other: Officer) -> bool:
        """The same person: the same key, or keys bound to the same on-chain account."""
        if self.actor == other.actor:
            return True
        return (
            self.address is not None
            and other.address is not None
            and self.address.lower() == other.address.lower()
        )


@dataclass(frozen=True, slots=True)
class Approval:
    """A request and where it stands (rebuilt from its step records)."""

    approval_id: str
    action: str
    params: dict[str, Any]
    requested_by: str
    requester_role: str
    requester_address: str | None
    requested_ms: int
    note: str | None
    status: Status
    decided_by: str | None = None
    decided_ms: int | None = None
    decision_note: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    records: tuple[str, ...] = ()

    @property
    def requester(self) -> Officer:
        return Officer(self.requested_by, self.requester_role, self.requester_address)

    def to_json(self) -> dict[str, Any]:
        """The approval as a JSON object (the API's and the CLI's view)."""
        return {
            "approval_id": self.approval_id,
            "action": self.action,
            "params": self.params,
            "requested_by": self.requested_by,
            "requested_ms": self.requested_ms,
            "note": self.note,
            "status": self.status,
            "decided_by": self.decided_by,
            "decided_ms": self.decided_ms,
            "decision_note": self.decision_note,
            "result": self.result,
            "error": self.error,
            "records": list(self.records),
        }


def submitter_for(action: str) -> str:
    """The service identity that stamps the step records of ``action``."""
    return provenance.KEYS if action.startswith("keys.") else provenance.RISK


def record_id(approval_id: str, step: str) -> str:
    """The id of step ``step`` (``requested``, ``decided``, ``outcome``) of a request."""
    return f"{PREFIX}{approval_id}:{step}"


def _record(
    approval_id: str, step: str, action: str, actor: str, payload: dict[str, Any]
) -> PreparedRecord:
    try:
        return prepare(
            {
                "id": record_id(approval_id, step),
                "kind": KIND,
                "timestamp": now_rfc3339(),
                "actor": actor,
                "payload": {"type": "approval", "approval_id": approval_id, "action": action}
                | payload,
            },
            submitter=submitter_for(action),
        )
    except RecordError as exc:
        raise ApprovalError(f"cannot record the approval step: {exc}", status=422) from exc


def _note(note: str | None) -> str | None:
    if note is not None and len(note) > 2_000:
        raise ApprovalError("a note is limited to 2,000 characters", status=422)
    return note


def check_maker(action: str, maker: Officer) -> None:
    """Refuse an unknown ``action`` (422) or a ``maker`` whose role may not request it (403)."""
    if action not in ACTIONS:
        raise ApprovalError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}", status=422)
    if maker.role not in ROLES_FOR[action]:
        raise ApprovalError(
            f"the {maker.role} role may not request {action}; needs "
            f"{' or '.join(ROLES_FOR[action])}",
            status=403,
        )


def request(
    append: Append, action: str, params: Mapping[str, Any], maker: Officer, note: str | None = None
) -> Approval:
    """Record ``maker``'s request for ``action`` with ``params``; returns the pending request.

    ``params`` must be JSON (integers, strings, ...; no floats) and are what the checker
    approves: the action later runs with exactly these. Raises :class:`ApprovalError` for an
    unknown action (422), a maker whose role may not request it (403) or bad params (422).
    """
    check_maker(action, maker)
    approval_id = "APR-" + secrets.token_hex(8)
    record = _record(
        approval_id,
        "requested",
        action,
        maker.actor,
        {
            "step": "requested",
            "params": dict(params),
            "requested_by": maker.actor,
            "requester_role": maker.role,
            "requester_address": maker.address,
            "note": _note(note),
        },
    )
    append([record])
    return Approval(
        approval_id,
        action,
        dict(params),
        maker.actor,
        maker.role,
        maker.address,
        record.timestamp_ms,
        note,
        "pending",
        records=(record.record_id,),
    )


def _step(log: Log, approval_id: str, step: str) -> tuple[dict[str, Any], int] | None:
    """The payload and time of a step record, or ``None`` (absent, erased or not entitled)."""
    try:
        entry = log.entry(record_id(approval_id, step))
    except NotFoundError:
        return None
    if entry.body is None:
        return None
    document = json.loads(entry.body)
    if not provenance.document_entitled(document) or entry.kind != KIND:
        return None
    payload = document.get("payload")
    if not isinstance(payload, dict) or payload.get("approval_id") != approval_id:
        return None
    return payload, entry.timestamp_ms


def load(log: Log, approval_id: str, *, at_ms: int | None = None) -> Approval:
    """The request ``approval_id`` as its step records in ``log`` say.

    Raises :class:`NotFoundError` when there is no (entitled) request record.
    """
    requested = _step(log, approval_id, "requested")
    if requested is None:
        raise NotFoundError(f"no approval request {approval_id!r}")
    payload, requested_ms = requested
    records = [record_id(approval_id, "requested")]
    status: Status = "pending"
    decided_by = decided_ms = decision_note = result = error = None
    decided = _step(log, approval_id, "decided")
    if decided is not None:
        records.append(record_id(approval_id, "decided"))
        status = "approved" if decided[0].get("step") == "approved" else "rejected"
        decided_by, decided_ms = decided[0].get("by"), decided[1]
        decision_note = decided[0].get("note")
        outcome = _step(log, approval_id, "outcome")
        if outcome is not None and status == "approved":
            records.append(record_id(approval_id, "outcome"))
            status = "executed" if outcome[0].get("step") == "executed" else "failed"
            result, error = outcome[0].get("result"), outcome[0].get("error")
    elif (now_ms() if at_ms is None else at_ms) - requested_ms > MAX_AGE_MS:
        status = "expired"
    return Approval(
        approval_id,
        str(payload.get("action")),
        dict(payload.get("params") or {}),
        str(payload.get("requested_by")),
        str(payload.get("requester_role")),
        payload.get("requester_address"),
        requested_ms,
        payload.get("note"),
        status,
        decided_by,
        decided_ms,
        decision_note,
        result,
        error,
        tuple(records),
    )


def pending(log: Log) -> list[Approval]:
    """Every request still pending, oldest first (a range scan of the id index over the
    ``approval:…:requested`` records: the requests only, never the whole log)."""
    requested = [
        index
        for record_id, index in log.ids_with_prefix(PREFIX)
        if record_id.endswith(":requested")
    ]
    found: list[Approval] = []
    for entry in log.entries_at(requested):
        if entry.kind != KIND:
            continue
        approval = load(log, entry.record_id[len(PREFIX) : -len(":requested")])
        if approval.status == "pending":
            found.append(approval)
    return found


def check_checker(approval: Approval, checker: Officer) -> None:
    """Refuse ``checker`` deciding ``approval`` unless allowed.

    Raises :class:`ApprovalError`: 409 when the request is not pending (decided, expired),
    403 when the checker's role may not decide the action or the checker is the requester
    (the same key, or a key bound to the same on-chain account).
    """
    if approval.status == "expired":
        raise ApprovalError(f"approval {approval.approval_id} expired unapproved; request it again")
    if approval.status != "pending":
        raise ApprovalError(f"approval {approval.approval_id} is already {approval.status}")
    if checker.role not in ROLES_FOR[approval.action]:
        raise ApprovalError(
            f"the {checker.role} role may not approve {approval.action}; needs "
            f"{' or '.join(ROLES_FOR[approval.action])}",
            status=403,
        )
    if checker.same_as(approval.requester):
        raise ApprovalError(
            f"{checker.actor} requested approval {approval.approval_id}: the requester "
            "cannot approve it; a second officer must",
            status=403,
        )


def _decide(
    append: Append, approval: Approval, checker: Officer, verdict: str, note: str | None
) -> PreparedRecord:
    record = _record(
        approval.approval_id,
        "decided",
        approval.action,
        checker.actor,
        {"step": verdict, "by": checker.actor, "by_address": checker.address, "note": _note(note)},
    )
    try:
        append([record])
    except ConflictError as exc:
        raise ApprovalError(f"approval {approval.approval_id} was decided meanwhile") from exc
    return record


def reject(
    log: Log, append: Append, approval_id: str, checker: Officer, note: str | None = None
) -> Approval:
    """Reject a pending request (the same rules as approving); returns it, now ``rejected``."""
    approval = load(log, approval_id)
    check_checker(approval, checker)
    _decide(append, approval, checker, "rejected", note)
    log.refresh()
    return load(log, approval_id)


def approve(
    log: Log,
    append: Append,
    approval_id: str,
    checker: Officer,
    execute: Callable[[Approval], dict[str, Any]],
    note: str | None = None,
) -> Approval:
    """Approve a pending request as ``checker`` and run it with ``execute``.

    ``execute`` carries out the action with the approved params and returns a JSON result
    (recorded in the ``executed`` step; it must hold no secret). If it raises a
    :class:`ChainauditError`, a ``failed`` step with the error is recorded and the error
    re-raised. Returns the request, ``executed``. Raises :class:`NotFoundError` for an unknown
    request and :class:`ApprovalError` as :func:`check_checker` says.
    """
    approval = load(log, approval_id)
    check_checker(approval, checker)
    _decide(append, approval, checker, "approved", note)
    try:
        result = execute(approval)
    except ChainauditError as exc:
        append(
            [
                _record(
                    approval_id,
                    "outcome",
                    approval.action,
                    checker.actor,
                    {"step": "failed", "by": checker.actor, "error": str(exc)[:1_000]},
                )
            ]
        )
        raise
    append(
        [
            _record(
                approval_id,
                "outcome",
                approval.action,
                checker.actor,
                {"step": "executed", "by": checker.actor, "result": result},
            )
        ]
    )
    log.refresh()
    return load(log, approval_id)
