"""Compliance holds on chain, each one a decision record.

:func:`place_hold`, :func:`renew_hold` and :func:`lift_hold` send the vault's ``placeHold`` /
``renewHold`` / ``liftHold`` (``COMPLIANCE_ROLE``) and append a ``decision`` record
(``payload.type == "hold"``) with the transition, the deal and milestone (so the record is on
the deal's timeline), the reason hash, the end of the hold, the transaction, the officer's
address and who decided. :func:`reason_record` appends a written reason first and returns its
record, whose RFC 9162 leaf hash is then the hold's on-chain reason hash: anyone holding the
hold's reason can prove which decision it points at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount

from chainaudit.chain.escrow import EscrowClient, TxResult
from chainaudit.core.errors import RiskError
from chainaudit.core.records import PreparedRecord
from chainaudit.log.store import Log
from chainaudit.risk.decisions import DECISION_ACTOR, make_record, new_record_id

__all__ = ["HoldResult", "lift_hold", "place_hold", "reason_record", "renew_hold"]


@dataclass(frozen=True, slots=True)
class HoldResult:
    """A compliance hold placed, renewed or lifted, and its decision record."""

    tx: TxResult
    record_id: str
    until: int | None


def reason_record(
    log: Log, *, deal_id: int, milestone: int, reason: str, by: str, alert_id: str | None = None
) -> PreparedRecord:
    """Append a written reason for a hold decision; its leaf hash is the hold's reason hash."""
    if not reason.strip() or len(reason) > 2_000:
        raise RiskError("a hold needs a reason of 1-2,000 characters")
    record = make_record(
        new_record_id("risk:hold-reason"),
        by,
        {
            "type": "hold_reason",
            "deal_id": str(deal_id),
            "milestone": milestone,
            "reason": reason,
            "alert_id": alert_id,
            "by": by,
        },
    )
    log.append([record])
    return record


def place_hold(
    log: Log,
    client: EscrowClient,
    officer: LocalAccount,
    deal_id: int,
    milestone: int,
    *,
    reason_hash: bytes,
    duration: int,
    by: str,
    note: str | None = None,
    decision_id: str | None = None,
    alert_id: str | None = None,
) -> HoldResult:
    """Hold a milestone for ``duration`` seconds and record it."""
    tx = client.place_hold(officer, deal_id, milestone, reason_hash, duration)
    until = int(tx.event("ComplianceHoldPlaced").args["until"])
    return _hold_record(
        log, "placed", tx, officer, deal_id, milestone, reason_hash, until, by, note,
        decision_id, alert_id,
    )  # fmt: skip


def renew_hold(
    log: Log,
    client: EscrowClient,
    officer: LocalAccount,
    deal_id: int,
    milestone: int,
    *,
    reason_hash: bytes,
    duration: int,
    by: str,
    note: str | None = None,
    alert_id: str | None = None,
    approval_id: str | None = None,
) -> HoldResult:
    """Renew an active hold to end ``duration`` seconds from now and record it
    (``approval_id``: the approved request, when the renewal shortens the hold)."""
    tx = client.renew_hold(officer, deal_id, milestone, reason_hash, duration)
    until = int(tx.event("ComplianceHoldRenewed").args["until"])
    return _hold_record(
        log, "renewed", tx, officer, deal_id, milestone, reason_hash, until, by, note,
        None, alert_id, approval_id,
    )  # fmt: skip


def lift_hold(
    log: Log,
    client: EscrowClient,
    officer: LocalAccount,
    deal_id: int,
    milestone: int,
    *,
    reason_hash: bytes,
    by: str,
    note: str | None = None,
    alert_id: str | None = None,
    approval_id: str | None = None,
) -> HoldResult:
    """Lift an active hold and record it (``approval_id``: the approved request to lift it;
    the API and the CLI lift only through one)."""
    tx = client.lift_hold(officer, deal_id, milestone, reason_hash)
    return _hold_record(
        log, "lifted", tx, officer, deal_id, milestone, reason_hash, None, by, note,
        None, alert_id, approval_id,
    )  # fmt: skip


def _hold_record(
    log: Log,
    transition: str,
    tx: TxResult,
    officer: LocalAccount,
    deal_id: int,
    milestone: int,
    reason_hash: bytes,
    until: int | None,
    by: str,
    note: str | None,
    decision_id: str | None,
    alert_id: str | None,
    approval_id: str | None = None,
) -> HoldResult:
    if note is not None and len(note) > 2_000:
        raise RiskError("the note is limited to 2,000 characters")
    payload: dict[str, Any] = {
        "type": "hold",
        "transition": transition,
        "deal_id": str(deal_id),
        "milestone": milestone,
        "reason_hash": "0x" + bytes(reason_hash).hex(),
        "until": until,
        "tx_hash": tx.tx_hash,
        "officer": officer.address,
        "by": by,
        "note": note,
        "decision_id": decision_id,
        "alert_id": alert_id,
    }
    if approval_id is not None:
        payload["approval_id"] = approval_id
    record = make_record(new_record_id(f"risk:hold:{transition}"), DECISION_ACTOR, payload)
    log.append([record])
    return HoldResult(tx, record.record_id, until)
