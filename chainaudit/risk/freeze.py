"""Freezing a party (issue 13): on chain through the vault's ``EscrowGate``, with a record.

A frozen account can neither open deals nor fund, finance, be paid a release or withdraw in a
gated vault, for a bounded period (``EscrowGate.MAX_FREEZE``, 30 days) that an officer may
renew; refunds to others, disputes and rulings are never blocked. Each freeze and unfreeze is
sent by the compliance officer's key (``COMPLIANCE_ROLE`` of the gate) and recorded in the log
as a ``decision`` record ``risk:freeze:...`` stamped by the risk service. Two officers decide
first (the controlled actions ``party.freeze`` / ``party.unfreeze`` of
:mod:`chainaudit.service.approvals`); the record names that approval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from eth_account.signers.local import LocalAccount
from web3 import Web3

from chainaudit.chain.escrow import EscrowClient, TxResult
from chainaudit.chain.toolchain import compile_contracts
from chainaudit.core import provenance
from chainaudit.core.errors import RiskError
from chainaudit.core.records import prepare
from chainaudit.log.actions import now_rfc3339
from chainaudit.log.store import Log
from chainaudit.risk.decisions import DECISION_KIND, new_record_id

__all__ = [
    "MAX_FREEZE_SECONDS",
    "FreezeResult",
    "freeze_account",
    "frozen_until",
    "unfreeze_account",
]

MAX_FREEZE_SECONDS: Final = 30 * 24 * 3600
"""``EscrowGate.MAX_FREEZE``."""


@dataclass(frozen=True, slots=True)
class FreezeResult:
    """A freeze or unfreeze sent on chain, and its record."""

    tx: TxResult
    record_id: str
    account: str
    until: int
    """When the freeze ends (0 after an unfreeze)."""


def _gate(client: EscrowClient) -> Any:
    address, _ = client.escrow_gate()
    if int(address, 16) == 0:
        raise RiskError("the vault has no EscrowGate: accounts cannot be frozen")
    return client.chain.contract(address, compile_contracts()["EscrowGate"].abi)


def frozen_until(client: EscrowClient, account: str) -> int:
    """When ``account``'s freeze ends in the vault's gate (0 or past: not frozen)."""
    gate = _gate(client)
    call = gate.functions.frozenUntil(Web3.to_checksum_address(account))
    return int(client.chain.run("frozenUntil", call.call))


def freeze_account(
    log: Log,
    client: EscrowClient,
    officer: LocalAccount,
    account: str,
    *,
    duration: int,
    reason_hash: bytes,
    by: str,
    note: str | None = None,
    approval_id: str | None = None,
) -> FreezeResult:
    """Freeze ``account`` (or renew its freeze) for ``duration`` seconds from now, then append
    the ``freeze`` record (``transition`` ``frozen``).

    Raises :class:`~chainaudit.core.errors.RiskError` when the vault has no gate or ``duration`` is
    out of (0, 30 days], :class:`~chainaudit.core.errors.EscrowError` when the gate refuses (for
    example ``officer`` lacks ``COMPLIANCE_ROLE``).
    """
    if not 0 < duration <= MAX_FREEZE_SECONDS:
        raise RiskError(f"a freeze lasts 1 second to {MAX_FREEZE_SECONDS} seconds")
    checksummed = Web3.to_checksum_address(account)
    gate = _gate(client)
    tx = client.transact(officer, gate.functions.freeze(checksummed, duration, reason_hash))
    until = frozen_until(client, checksummed)
    record_id = _record(
        log, client, "frozen", checksummed, until, reason_hash, tx,
        by=by, note=note, approval_id=approval_id,
    )  # fmt: skip
    return FreezeResult(tx, record_id, checksummed, until)


def unfreeze_account(
    log: Log,
    client: EscrowClient,
    officer: LocalAccount,
    account: str,
    *,
    reason_hash: bytes,
    by: str,
    note: str | None = None,
    approval_id: str | None = None,
) -> FreezeResult:
    """Lift ``account``'s active freeze, then append the ``freeze`` record (``unfrozen``)."""
    checksummed = Web3.to_checksum_address(account)
    gate = _gate(client)
    tx = client.transact(officer, gate.functions.unfreeze(checksummed, reason_hash))
    record_id = _record(
        log, client, "unfrozen", checksummed, 0, reason_hash, tx,
        by=by, note=note, approval_id=approval_id,
    )  # fmt: skip
    return FreezeResult(tx, record_id, checksummed, 0)


def _record(
    log: Log,
    client: EscrowClient,
    transition: str,
    account: str,
    until: int,
    reason_hash: bytes,
    tx: TxResult,
    *,
    by: str,
    note: str | None,
    approval_id: str | None,
) -> str:
    record_id = new_record_id("risk:freeze")
    record = prepare(
        {
            "id": record_id,
            "kind": DECISION_KIND,
            "timestamp": now_rfc3339(),
            "actor": by,
            "payload": {
                "type": "freeze",
                "transition": transition,
                "account": account,
                "until": until,
                "reason_hash": "0x" + bytes(reason_hash).hex(),
                "tx_hash": tx.tx_hash,
                "chain_id": client.chain_id,
                "vault": client.address,
                "note": note,
                **({"approval_id": approval_id} if approval_id is not None else {}),
            },
        },
        submitter=provenance.RISK,
    )
    log.append([record])
    return record_id
