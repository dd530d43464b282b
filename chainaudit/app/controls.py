"""The controlled actions of :mod:`chainaudit.service.approvals`: their parameters and how each
runs.

:func:`check_params` validates and normalises a request's parameters before it is recorded
(the checker approves exactly what will run); :func:`execute` runs an approved request with the
checker's authority, through the same code paths the single-officer commands used:

``alert.clear``    :func:`~chainaudit.risk.decisions.transition_alert` (resolved, cleared);
``hold.lift``      :func:`~chainaudit.risk.holds.lift_hold`, signed with the checker's own
                   on-chain account (:func:`~chainaudit.app.roles.officer_account`);
``hold.shorten``   :func:`~chainaudit.risk.holds.renew_hold`, signed the same way;
``rules.activate`` :func:`~chainaudit.risk.decisions.announce_rule_set`;
``escrow.pause`` / ``escrow.unpause``  :mod:`chainaudit.risk.incidents`, with the pauser key;
``keys.create``    :meth:`chainaudit.service.keys.KeyStore.create` (the token goes to the checker
only,
                   never into the log);
``party.freeze`` / ``party.unfreeze``  :mod:`chainaudit.risk.freeze`, sent through the vault's
                   ``EscrowGate`` with the checker's own on-chain account (a member of the
                   gate's ``COMPLIANCE_ROLE``);
``record.erase``   :func:`chainaudit.service.erasure.erase` (the requester and the checker are
                   named in the erasure record);
``keys.rotate``    :meth:`chainaudit.service.keys.KeyStore.rotate` (likewise). A holder rotating its
                   own key needs no one: the new token is then seen by no one else, which is
                   how a new officer makes sure the admins who issued its key no longer
                   know it.
``keys.grant-personal-data``  :meth:`chainaudit.service.keys.KeyStore.set_personal_data`: an auditor
                   or regulator key then reads personal fields unmasked (each such read is
                   logged by the read-audit); one admin withdraws it again.

Every record written carries the approval id, so the log links each effect to its two officers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from web3 import Web3

from chainaudit.app.roles import officer_account, operator_account
from chainaudit.app.settings import Settings
from chainaudit.chain.escrow import EscrowClient
from chainaudit.core.errors import RiskError
from chainaudit.log.store import Log
from chainaudit.risk import freeze, holds, incidents
from chainaudit.risk.book import RiskBook
from chainaudit.risk.decisions import announce_rule_set, transition_alert
from chainaudit.risk.rules import RuleSet, parse_rule_set
from chainaudit.service import erasure
from chainaudit.service.approvals import Approval, ApprovalError, Officer
from chainaudit.service.keys import KeyStore, now_ms

__all__ = ["Context", "check_params", "execute"]

_ALERT: Final = re.compile(r"^AL-[0-9a-f]{16}$")
_HASH: Final = re.compile(r"^0x[0-9a-fA-F]{64}$")
_INCIDENT: Final = re.compile(r"^INC-[0-9]{8}-[0-9a-f]{6}$")
_KEY_ID: Final = re.compile(r"^[0-9a-f]{12}$")
KEY_ROLES_NEEDING_TWO: Final = ("admin", "operator", "partner")
"""Key roles whose creation is a controlled action (auditor and regulator keys read only)."""


def _bad(message: str) -> ApprovalError:
    return ApprovalError(message, status=422)


def _note(params: Mapping[str, Any]) -> str | None:
    note = params.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > 2_000):
        raise _bad("note must be a string of at most 2,000 characters")
    return note


def _int(params: Mapping[str, Any], name: str, low: int, high: int) -> int:
    value = params.get(name)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if type(value) is not int or not low <= value <= high:
        raise _bad(f"{name} must be a whole number from {low} to {high}")
    return value


def _match(params: Mapping[str, Any], name: str, pattern: re.Pattern[str], what: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise _bad(f"{name} must be {what}")
    return value


def _expires(params: Mapping[str, Any]) -> int | None:
    expires = params.get("expires_ms")
    if expires is not None and (type(expires) is not int or expires <= now_ms()):
        raise _bad("expires_ms must be a time in the future (Unix milliseconds)")
    return expires


def check_params(action: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The normalised parameters of a request for ``action``.

    Raises :class:`~chainaudit.service.approvals.ApprovalError` (422) naming the first bad
    parameter.
    """
    known: dict[str, tuple[str, ...]] = {
        "alert.clear": ("alert_id", "note"),
        "hold.lift": ("deal_id", "milestone", "reason_hash", "alert_id", "note"),
        "hold.shorten": ("deal_id", "milestone", "reason_hash", "duration", "note"),
        "rules.activate": ("rules", "source"),
        "escrow.pause": ("incident_id", "note"),
        "escrow.unpause": ("incident_id", "note"),
        "keys.create": ("role", "name", "address", "expires_ms"),
        "keys.rotate": ("key_id", "expires_ms"),
        "keys.grant-personal-data": ("key_id", "note"),
        "party.freeze": ("account", "duration", "reason_hash", "note"),
        "party.unfreeze": ("account", "reason_hash", "note"),
        "record.erase": ("record_id", "reason", "basis"),
    }
    if action not in known:
        raise _bad(f"unknown action {action!r}")
    unknown = sorted(set(params) - set(known[action]))
    if unknown:
        raise _bad(f"unknown parameter(s) for {action}: {', '.join(unknown)}")
    out: dict[str, Any] = {}
    if action == "record.erase":
        try:
            return erasure.check_request(params)
        except erasure.ErasureError as exc:
            raise _bad(str(exc)) from exc
    if action == "alert.clear":
        out["alert_id"] = _match(params, "alert_id", _ALERT, "an alert id AL-<16 hex>")
    elif action in ("hold.lift", "hold.shorten"):
        out["deal_id"] = _int(params, "deal_id", 0, 2**53 - 1)
        out["milestone"] = _int(params, "milestone", 0, 255)
        out["reason_hash"] = _match(params, "reason_hash", _HASH, "a 0x-prefixed 32-byte hash")
        if action == "hold.shorten":
            out["duration"] = _int(params, "duration", 1, 30 * 86_400)
        elif params.get("alert_id") is not None:
            out["alert_id"] = _match(params, "alert_id", _ALERT, "an alert id AL-<16 hex>")
    elif action == "rules.activate":
        rules = params.get("rules")
        if not isinstance(rules, dict):
            raise _bad("rules must be the rule set document (a JSON object)")
        try:
            rule_set = parse_rule_set(rules)
        except RiskError as exc:
            raise _bad(f"the rule set is invalid: {exc}") from exc
        source = params.get("source")
        if source is not None and (not isinstance(source, str) or len(source) > 1_000):
            raise _bad("source must be a string of at most 1,000 characters")
        return {
            "rules": dict(rule_set.document),
            "rule_set_hash": rule_set.hash,
            "version": rule_set.version,
            "source": source,
        }
    elif action in ("escrow.pause", "escrow.unpause"):
        if params.get("incident_id") is not None:
            out["incident_id"] = _match(params, "incident_id", _INCIDENT, "an incident id")
    elif action in ("party.freeze", "party.unfreeze"):
        account = params.get("account")
        if not isinstance(account, str) or not Web3.is_address(account):
            raise _bad("account must be the Ethereum address of the party to freeze")
        out["account"] = Web3.to_checksum_address(account)
        out["reason_hash"] = _match(params, "reason_hash", _HASH, "a 0x-prefixed 32-byte hash")
        if action == "party.freeze":
            out["duration"] = _int(params, "duration", 1, freeze.MAX_FREEZE_SECONDS)
    elif action == "keys.grant-personal-data":
        out["key_id"] = _match(params, "key_id", _KEY_ID, "a key id (12 hex digits)")
    elif action == "keys.rotate":
        key_id = _match(params, "key_id", _KEY_ID, "a key id (12 hex digits)")
        return {"key_id": key_id, "expires_ms": _expires(params)}
    else:  # keys.create
        role = params.get("role")
        if role not in KEY_ROLES_NEEDING_TWO:
            raise _bad(f"role must be one of {', '.join(KEY_ROLES_NEEDING_TWO)}")
        name = params.get("name")
        if not isinstance(name, str) or not 0 < len(name) <= 100:
            raise _bad("name must be 1-100 characters")
        address = params.get("address")
        if address is not None:
            if not isinstance(address, str) or not Web3.is_address(address):
                raise _bad("address must be an Ethereum address")
            address = Web3.to_checksum_address(address)
        elif role == "partner":
            raise _bad("a partner key needs the Ethereum address it acts for")
        return {"role": role, "name": name, "address": address, "expires_ms": _expires(params)}
    note = _note(params)
    if note is not None:
        out["note"] = note
    return out


@dataclass
class Context:
    """What running an approved action needs.

    ``log``: where its records go (and where the risk state is read); ``settings``: for the
    officers' and the pauser's keys; ``escrow``: returns the escrow client (called only by
    actions on chain); ``keys``: the key store (for ``keys.create``); ``checker``: the
    approving officer; ``on_rules``: told the rule set a ``rules.activate`` brought into force
    (the API's gate switches to it); ``on_key_change``: told a key id whose secret changed
    (the API forgets its cached authentications); ``secrets``: filled with what the checker
    alone may see (a created or rotated key's token), never recorded.
    """

    log: Log
    settings: Settings
    checker: Officer
    escrow: Callable[[], EscrowClient] | None = None
    keys: KeyStore | None = None
    on_rules: Callable[[RuleSet], None] | None = None
    on_key_change: Callable[[str], None] | None = None
    secrets: dict[str, str] = field(default_factory=dict)

    def client(self) -> EscrowClient:
        if self.escrow is None:
            raise ApprovalError("no escrow vault is configured here", status=503)
        return self.escrow()


def execute(ctx: Context, approval: Approval) -> dict[str, Any]:
    """Run the approved ``approval`` as ``ctx.checker``; returns its (public) result.

    Raises what the underlying operation raises (:class:`~chainaudit.core.errors.RiskError`,
    :class:`~chainaudit.core.errors.EscrowError`, :class:`~chainaudit.core.errors.ConfigError`,
    ...).
    """
    p, by, aid = approval.params, ctx.checker.actor, approval.approval_id
    note = p.get("note")
    if approval.action == "alert.clear":
        with RiskBook(ctx.log.path, database_url=ctx.log.database_url) as book:
            record_id, alert = transition_alert(
                ctx.log,
                book,
                p["alert_id"],
                "resolved",
                by=by,
                note=note,
                resolution="cleared",
                approval_id=aid,
            )
        return {"record_id": record_id, "alert_id": alert.alert_id, "status": alert.status}
    if approval.action in ("hold.lift", "hold.shorten"):
        client = ctx.client()
        officer = officer_account(ctx.settings, ctx.checker.address)
        common: dict[str, Any] = {
            "reason_hash": bytes.fromhex(p["reason_hash"][2:]),
            "by": by,
            "note": note,
            "approval_id": aid,
        }
        if approval.action == "hold.lift":
            done = holds.lift_hold(
                ctx.log, client, officer, p["deal_id"], p["milestone"],
                alert_id=p.get("alert_id"), **common,
            )  # fmt: skip
        else:
            done = holds.renew_hold(
                ctx.log, client, officer, p["deal_id"], p["milestone"],
                duration=p["duration"], **common,
            )  # fmt: skip
        return {
            "record_id": done.record_id,
            "tx_hash": done.tx.tx_hash,
            "officer": officer.address,
            "until": done.until,
        }
    if approval.action in ("party.freeze", "party.unfreeze"):
        client = ctx.client()
        officer = officer_account(ctx.settings, ctx.checker.address)
        reason = bytes.fromhex(p["reason_hash"][2:])
        if approval.action == "party.freeze":
            frozen = freeze.freeze_account(
                ctx.log, client, officer, p["account"],
                duration=p["duration"], reason_hash=reason, by=by, note=note, approval_id=aid,
            )  # fmt: skip
        else:
            frozen = freeze.unfreeze_account(
                ctx.log, client, officer, p["account"],
                reason_hash=reason, by=by, note=note, approval_id=aid,
            )  # fmt: skip
        return {
            "record_id": frozen.record_id,
            "tx_hash": frozen.tx.tx_hash,
            "officer": officer.address,
            "account": frozen.account,
            "until": frozen.until,
        }
    if approval.action == "rules.activate":
        rule_set = parse_rule_set(p["rules"])
        if rule_set.hash != p["rule_set_hash"]:
            raise RiskError("the approved rules no longer hash to the approved rule-set hash")
        with RiskBook(ctx.log.path, database_url=ctx.log.database_url) as book:
            announced = announce_rule_set(ctx.log, book, rule_set, actor=by, source=p.get("source"))
        if ctx.on_rules is not None:
            ctx.on_rules(rule_set)
        return {"record_id": announced.record_id, "rule_set_hash": rule_set.hash}
    if approval.action in ("escrow.pause", "escrow.unpause"):
        client = ctx.client()
        run = (
            incidents.emergency_pause
            if approval.action == "escrow.pause"
            else (incidents.emergency_unpause)
        )
        tx, record_id = run(
            ctx.log,
            client,
            operator_account(ctx.settings, "pauser"),
            actor=by,
            incident_id=p.get("incident_id"),
            note=f"approval {aid}" + (f": {note}" if note else ""),
        )
        return {"record_id": record_id, "tx_hash": tx.tx_hash}
    if approval.action == "keys.create":
        if ctx.keys is None:
            raise ApprovalError("no key store here", status=503)
        key, token = ctx.keys.create(
            p["role"], name=p["name"], address=p.get("address"), expires_ms=p.get("expires_ms")
        )
        ctx.secrets["token"] = token
        return {"key_id": key.key_id, "role": key.role, "address": key.address}
    if approval.action == "keys.rotate":
        if ctx.keys is None:
            raise ApprovalError("no key store here", status=503)
        key, token = ctx.keys.rotate(p["key_id"], expires_ms=p.get("expires_ms"))
        ctx.secrets["token"] = token
        if ctx.on_key_change is not None:
            ctx.on_key_change(key.key_id)
        return {"key_id": key.key_id, "role": key.role, "rotated_ms": key.rotated_ms}
    if approval.action == "keys.grant-personal-data":
        if ctx.keys is None:
            raise ApprovalError("no key store here", status=503)
        key = ctx.keys.set_personal_data(p["key_id"], True)
        if ctx.on_key_change is not None:
            ctx.on_key_change(key.key_id)
        return {"key_id": key.key_id, "role": key.role, "personal_data": key.personal_data}
    if approval.action == "record.erase":
        erased = erasure.erase(
            ctx.log,
            p["record_id"],
            reason=p["reason"],
            basis=p["basis"],
            requested_by=approval.requested_by,
            approved_by=by,
            approval_id=aid,
        )
        return erased.to_json()
    raise ApprovalError(f"unknown action {approval.action!r}", status=422)
