"""Emergency response: pausing the escrow, and incidents as linked decision records.

An incident goes through the steps of :data:`STEPS` — detected, assessed, decided, handled,
reviewed — each a ``decision`` record (``payload.type == "incident"``) carrying the incident
id, so the whole response can be read back from the log (:func:`incident_steps`). Opening an
incident records ``detected``; recording ``reviewed`` closes it. Steps may repeat (several
``handled`` actions) but none is accepted after the review.

:func:`emergency_pause` and :func:`emergency_unpause` call the vault's ``pause`` /
``unpause`` (``PAUSER_ROLE``) and append an ``emergency`` record with the transaction; given an
incident id, the record is also that incident's ``handled`` step. Pausing stops new business
only (new deals, funding, financing); releases, refunds, disputes and withdrawals go on.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from eth_account.signers.local import LocalAccount

from chainaudit.chain.escrow import EscrowClient, TxResult
from chainaudit.core.errors import NotFoundError, RiskError
from chainaudit.core.provenance import document_entitled
from chainaudit.log.store import Log
from chainaudit.risk.decisions import make_record

__all__ = [
    "STEPS",
    "IncidentStep",
    "emergency_pause",
    "emergency_unpause",
    "incident_steps",
    "open_incident",
    "record_step",
]

STEPS: Final = ("detected", "assessed", "decided", "handled", "reviewed")
MAX_NOTE: Final = 2_000


@dataclass(frozen=True, slots=True)
class IncidentStep:
    """One recorded step of an incident."""

    incident_id: str
    step: str
    record_id: str
    leaf_index: int
    timestamp_ms: int
    actor: str
    note: str | None
    details: dict[str, Any]


def open_incident(
    log: Log, *, title: str, actor: str, severity: str = "high", note: str | None = None
) -> str:
    """Open an incident: append its ``detected`` step; return the new incident id."""
    if not title.strip() or len(title) > 200:
        raise RiskError("an incident needs a title of 1-200 characters")
    if severity not in ("low", "medium", "high", "critical"):
        raise RiskError("severity must be one of low, medium, high, critical")
    incident_id = f"INC-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(3)}"
    _append_step(log, incident_id, "detected", actor, note, {"title": title, "severity": severity})
    return incident_id


def record_step(
    log: Log,
    incident_id: str,
    step: str,
    *,
    actor: str,
    note: str | None = None,
    details: dict[str, Any] | None = None,
) -> str:
    """Append step ``step`` of an open incident; return the record id.

    Raises :class:`NotFoundError` for an unknown incident and
    :class:`~chainaudit.core.errors.RiskError` for an unknown step or a closed incident.
    """
    if step not in STEPS or step == "detected":
        raise RiskError(f"step must be one of {', '.join(STEPS[1:])} (detected opens it)")
    steps = incident_steps(log, incident_id)
    if any(s.step == "reviewed" for s in steps):
        raise RiskError(f"incident {incident_id} was reviewed and is closed")
    return _append_step(log, incident_id, step, actor, note, details or {})


def incident_steps(log: Log, incident_id: str, *, page: int = 5_000) -> list[IncidentStep]:
    """Every step of ``incident_id`` in log order, from the records the risk service wrote
    (a step forged into the log is ignored); :class:`NotFoundError` if it has none."""
    found: list[IncidentStep] = []
    start = 0
    while True:
        batch = log.scan(start=start, limit=page, kind="decision")
        for entry in batch:
            if entry.body is None or incident_id.encode() not in entry.body:
                continue
            try:
                document = json.loads(entry.body)
                if not document_entitled(document):
                    continue  # not written by the risk service: `reconcile` reports it
                payload = document["payload"]
            except (ValueError, KeyError, AttributeError):
                continue
            if payload.get("incident_id") != incident_id or "step" not in payload:
                continue
            found.append(
                IncidentStep(
                    incident_id=incident_id,
                    step=str(payload["step"]),
                    record_id=entry.record_id,
                    leaf_index=entry.index,
                    timestamp_ms=entry.timestamp_ms,
                    actor=entry.actor,
                    note=payload.get("note"),
                    details=dict(payload.get("details") or {}),
                )
            )
        if len(batch) < page:
            break
        start = batch[-1].index + 1
    if not found:
        raise NotFoundError(f"no incident {incident_id!r}")
    return found


def emergency_pause(
    log: Log,
    client: EscrowClient,
    pauser: LocalAccount,
    *,
    actor: str,
    incident_id: str | None = None,
    note: str | None = None,
) -> tuple[TxResult, str]:
    """Pause the vault and record it; returns the transaction and the record id."""
    return _emergency(log, client, pauser, "pause", actor, incident_id, note)


def emergency_unpause(
    log: Log,
    client: EscrowClient,
    pauser: LocalAccount,
    *,
    actor: str,
    incident_id: str | None = None,
    note: str | None = None,
) -> tuple[TxResult, str]:
    """Resume new business on the vault and record it."""
    return _emergency(log, client, pauser, "unpause", actor, incident_id, note)


def _emergency(
    log: Log,
    client: EscrowClient,
    pauser: LocalAccount,
    action: str,
    actor: str,
    incident_id: str | None,
    note: str | None,
) -> tuple[TxResult, str]:
    if incident_id is not None:
        steps = incident_steps(log, incident_id)  # refuses an unknown incident before acting
        if any(s.step == "reviewed" for s in steps):
            raise RiskError(f"incident {incident_id} was reviewed and is closed")
    tx = client.pause(pauser) if action == "pause" else client.unpause(pauser)
    details = {
        "action": action,
        "contract": client.address,
        "chain_id": client.chain_id,
        "tx_hash": tx.tx_hash,
        "block_number": tx.block_number,
        "account": pauser.address,
    }
    if incident_id is not None:
        return tx, _append_step(log, incident_id, "handled", actor, note, details)
    record = make_record(
        f"risk:emergency:{action}:{int(time.time() * 1000)}:{secrets.token_hex(4)}",
        actor,
        {"type": "emergency", "incident_id": None, "note": _note(note), **details},
    )
    log.append([record])
    return tx, record.record_id


def _note(note: str | None) -> str | None:
    if note is not None and len(note) > MAX_NOTE:
        raise RiskError(f"notes are limited to {MAX_NOTE} characters")
    return note


def _append_step(
    log: Log, incident_id: str, step: str, actor: str, note: str | None, details: dict[str, Any]
) -> str:
    record = make_record(
        f"incident:{incident_id}:{step}:{int(time.time() * 1000)}:{secrets.token_hex(3)}",
        actor,
        {
            "type": "incident",
            "incident_id": incident_id,
            "step": step,
            "note": _note(note),
            "details": details,
        },
    )
    log.append([record])
    return record.record_id
