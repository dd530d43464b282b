"""The pure evaluation core: ``evaluate(rule_set, inputs) -> Evaluation``.

No I/O, no clock, no randomness: the same rule set and the same inputs always give the same
evaluation, which is what lets anyone replay a decision from its record
(:mod:`chainaudit.risk.decisions`). Everything a rule needs is in ``inputs``, a JSON object
materialised beforehand by :func:`chainaudit.risk.history.gather_inputs`::

    {
      "schema": 1,
      "action": "release",                 # create | fund | finance | release | refund
      "deal_id": "7",                      # decimal string; null for a deal not created yet
      "milestone": 0,                      # null for whole-deal actions (create, refund)
      "at": 1767225600,                    # evaluation time, Unix seconds (chain time)
      "amount": "250000000000",            # minor units, decimal string
      "token": "0x...",
      "party": "0x...",                    # whose money moves (payer, or payee of a release)
      "actor": "0x...",                    # who sends the transaction
      "parties": {"buyer": "0x...", "supplier": "0x...", "financier": null},
      "documents": ["0x<32-byte hex>", ...],   # purchase-order, shipping, invoice hashes
      "history": {
        "velocity": {"86400": {"count": 3, "total": "1200000000"}},   # before this action
        "document_uses": {"0x<hash>": [{"deal_id": "3", "milestone": 0, "event": "..."}]},
        "exposure": {"financier": "0x...", "buyer": "0x...",
                     "buyer_total": "500", "total": "800"},            # finance only, else null
        "party_records": {"0x<lowercase>": {"matured": 4, "overdue": 1, "defaulted": 0}},
        "clearances": [{"alert_id": "AL-...", "decision_id": "...", "rules": ["..."]}]
      }
    }

**Outcome.** The worst severity among the fired rules is mapped to an outcome by the rule
set's ``[outcomes]`` table (default: low → allow, medium → review, high and critical → hold);
nothing fired → allow. A *clearance* (an alert on the same subject resolved as ``cleared`` by a
person) whose rules include every rule that fired now turns the outcome into ``allow`` and is
named in ``cleared_by``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from chainaudit.core.canonical import canonicalize
from chainaudit.core.errors import RecordError, RiskError
from chainaudit.risk.rules import ACTIONS, BPS, Outcome, Rule, RuleSet, Severity

__all__ = ["INPUTS_SCHEMA", "Evaluation", "Firing", "evaluate", "inputs_sha256"]

INPUTS_SCHEMA: Final = 1
_DECIMAL = re.compile(r"[0-9]{1,80}")
MAX_LISTED_USES: Final = 10


@dataclass(frozen=True, slots=True)
class Firing:
    """A rule that fired, with the figures that made it fire (JSON-able, no floats)."""

    rule: str
    type: str
    severity: Severity
    owner: str
    figures: Mapping[str, Any]
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "type": self.type,
            "severity": self.severity.label,
            "owner": self.owner,
            "figures": dict(self.figures),
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The result of :func:`evaluate`.

    ``severity`` is the worst fired severity (``None`` when nothing fired); ``owner`` the
    owner of the first rule of that severity, else the rule set's owner.
    """

    outcome: Outcome
    severity: Severity | None
    owner: str
    fired: tuple[Firing, ...]
    cleared_by: tuple[str, ...] = ()

    @property
    def fired_ids(self) -> tuple[str, ...]:
        return tuple(f.rule for f in self.fired)

    def to_json(self) -> dict[str, Any]:
        """The evaluation as stored in a decision record."""
        return {
            "outcome": self.outcome.value,
            "severity": None if self.severity is None else self.severity.label,
            "owner": self.owner,
            "fired": [f.to_json() for f in self.fired],
            "cleared_by": list(self.cleared_by),
        }


def inputs_sha256(inputs: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the RFC 8785 canonical bytes of ``inputs``."""
    try:
        return hashlib.sha256(canonicalize(dict(inputs))).hexdigest()
    except RecordError as exc:
        raise RiskError(f"inputs are not canonical JSON data: {exc}") from exc


def evaluate(rule_set: RuleSet, inputs: Mapping[str, Any]) -> Evaluation:
    """Evaluate every rule of ``rule_set`` that applies to the action in ``inputs``.

    Raises :class:`~chainaudit.core.errors.RiskError` if ``inputs`` is malformed or lacks a figure
    a rule needs (for example a velocity window the rule set uses).
    """
    view = _Inputs.parse(inputs)
    fired: list[Firing] = []
    for rule in rule_set.rules:
        if not rule.applies_to(view.action):
            continue
        figures = _CHECKS[rule.type](rule, view)
        if figures is not None:
            message, data = figures
            fired.append(Firing(rule.id, rule.type, rule.severity, rule.owner, data, message))
    if not fired:
        return Evaluation(Outcome.ALLOW, None, rule_set.owner, ())
    worst = max(f.severity for f in fired)
    owner = next(f.owner for f in fired if f.severity == worst)
    outcome = rule_set.outcome_for(worst)
    ids = {f.rule for f in fired}
    cleared = tuple(c["alert_id"] for c in view.clearances if ids <= set(c["rules"]))
    if cleared and outcome is not Outcome.ALLOW:
        return Evaluation(Outcome.ALLOW, worst, owner, tuple(fired), cleared)
    return Evaluation(outcome, worst, owner, tuple(fired))


# -- the inputs, checked ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Inputs:
    action: str
    amount: int
    party: str
    actor: str
    parties: Mapping[str, str | None]
    documents: tuple[str, ...]
    velocity: Mapping[str, tuple[int, int]]
    document_uses: Mapping[str, Sequence[Mapping[str, Any]]]
    exposure: Mapping[str, Any] | None
    party_records: Mapping[str, Mapping[str, int]]
    clearances: tuple[Mapping[str, Any], ...]

    @classmethod
    def parse(cls, inputs: Mapping[str, Any]) -> _Inputs:
        if not isinstance(inputs, Mapping):
            raise RiskError("inputs must be a JSON object")
        if inputs.get("schema") != INPUTS_SCHEMA:
            raise RiskError(f"inputs.schema must be {INPUTS_SCHEMA}")
        action = inputs.get("action")
        if action not in ACTIONS:
            raise RiskError(f"inputs.action must be one of {', '.join(ACTIONS)}")
        parties = _mapping(inputs.get("parties"), "inputs.parties")
        for role, address in parties.items():
            if address is not None and not isinstance(address, str):
                raise RiskError(f"inputs.parties.{role} must be an address or null")
        documents = inputs.get("documents", [])
        if not isinstance(documents, list) or not all(isinstance(d, str) for d in documents):
            raise RiskError("inputs.documents must be a list of hashes")
        history = _mapping(inputs.get("history"), "inputs.history")
        velocity: dict[str, tuple[int, int]] = {}
        for window, raw_stats in _mapping(history.get("velocity", {}), "velocity").items():
            stats = _mapping(raw_stats, f"history.velocity.{window}")
            velocity[str(window)] = (
                _int(stats.get("count"), f"history.velocity.{window}.count"),
                _decimal(stats.get("total"), f"history.velocity.{window}.total"),
            )
        uses = _mapping(history.get("document_uses", {}), "history.document_uses")
        for document, listed in uses.items():
            if not isinstance(listed, list):
                raise RiskError(f"history.document_uses.{document} must be a list")
        exposure = history.get("exposure")
        if exposure is not None:
            exposure = _mapping(exposure, "history.exposure")
            _decimal(exposure.get("buyer_total"), "history.exposure.buyer_total")
            _decimal(exposure.get("total"), "history.exposure.total")
        records: dict[str, Mapping[str, int]] = {}
        for address, raw_record in _mapping(
            history.get("party_records", {}), "history.party_records"
        ).items():
            record = _mapping(raw_record, f"history.party_records.{address}")
            records[str(address).lower()] = {
                k: _int(record.get(k), f"history.party_records.{address}.{k}")
                for k in ("matured", "overdue", "defaulted")
            }
        clearances = history.get("clearances", [])
        if not isinstance(clearances, list) or not all(
            isinstance(c, Mapping)
            and isinstance(c.get("alert_id"), str)
            and isinstance(c.get("rules"), list)
            for c in clearances
        ):
            raise RiskError("history.clearances must be a list of {alert_id, rules}")
        return cls(
            action=str(action),
            amount=_decimal(inputs.get("amount"), "inputs.amount"),
            party=_address(inputs.get("party"), "inputs.party"),
            actor=_address(inputs.get("actor"), "inputs.actor"),
            parties=parties,
            documents=tuple(documents),
            velocity=velocity,
            document_uses=uses,
            exposure=exposure,
            party_records=records,
            clearances=tuple(clearances),
        )


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RiskError(f"{where} must be a JSON object")
    return value


def _int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RiskError(f"{where} must be a non-negative integer")
    return value


def _decimal(value: object, where: str) -> int:
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return int(value)
    raise RiskError(f"{where} must be a decimal string of digits")


def _address(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise RiskError(f"{where} must be an address")
    return value


# -- the checks -------------------------------------------------------------------------------

_Result = tuple[str, dict[str, Any]] | None


def _amount_above(rule: Rule, view: _Inputs) -> _Result:
    threshold = int(rule.params["threshold"])
    if view.amount <= threshold:
        return None
    return (
        f"amount {view.amount} is above the threshold {threshold}",
        {"amount": str(view.amount), "threshold": str(threshold)},
    )


def _round_amount(rule: Rule, view: _Inputs) -> _Result:
    unit, margin = int(rule.params["unit"]), int(rule.params["margin"])
    if view.amount < int(rule.params["min_amount"]) or view.amount == 0:
        return None
    remainder = view.amount % unit
    if remainder == 0:
        pattern, gap = "round", 0
    elif unit - remainder <= margin:
        pattern, gap = "just_below", unit - remainder
    else:
        return None
    figure = view.amount + gap
    text = "a round figure" if gap == 0 else f"{gap} below the round figure {figure}"
    return (
        f"amount {view.amount} is {text} (unit {unit})",
        {
            "amount": str(view.amount),
            "unit": str(unit),
            "round_figure": str(figure),
            "below_by": str(gap),
            "pattern": pattern,
        },
    )


def _velocity(rule: Rule, view: _Inputs) -> _Result:
    window = int(rule.params["window_seconds"])
    stats = view.velocity.get(str(window))
    if stats is None:
        raise RiskError(f"inputs lack the velocity figures of the {window}-second window")
    count, total = stats[0] + 1, stats[1] + view.amount
    over: list[str] = []
    figures: dict[str, Any] = {
        "party": view.party,
        "window_seconds": window,
        "count": count,
        "total": str(total),
    }
    if "max_count" in rule.params:
        figures["max_count"] = int(rule.params["max_count"])
        if count > int(rule.params["max_count"]):
            over.append(f"{count} actions (limit {rule.params['max_count']})")
    if "max_total" in rule.params:
        figures["max_total"] = str(rule.params["max_total"])
        if total > int(rule.params["max_total"]):
            over.append(f"a total of {total} (limit {rule.params['max_total']})")
    if not over:
        return None
    return (f"{view.party} reaches {' and '.join(over)} within {window} s", figures)


def _document_reuse(rule: Rule, view: _Inputs) -> _Result:
    reused: list[dict[str, Any]] = []
    for document in view.documents:
        uses = view.document_uses.get(document) or []
        if uses:
            reused.append(
                {"document": document, "uses": len(uses), "used_in": list(uses[:MAX_LISTED_USES])}
            )
    if not reused:
        return None
    names = ", ".join(str(r["document"])[:12] + "..." for r in reused)
    return (f"document(s) {names} already used in another deal", {"documents": reused})


def _blocklist(rule: Rule, view: _Inputs) -> _Result:
    blocked: frozenset[str] = rule.params["addresses"]
    candidates = [(role, a) for role, a in sorted(view.parties.items()) if a is not None]
    candidates += [("party", view.party), ("actor", view.actor)]
    matches: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for role, address in candidates:
        key = (role, address.lower())
        if address.lower() in blocked and key not in seen:
            seen.add(key)
            matches.append({"role": role, "address": address})
    if not matches:
        return None
    listed = ", ".join(f"{m['role']} {m['address']}" for m in matches)
    return (f"blocklisted: {listed}", {"matches": matches})


def _concentration(rule: Rule, view: _Inputs) -> _Result:
    exposure = view.exposure
    if exposure is None:
        return None
    buyer_total = int(exposure["buyer_total"]) + view.amount
    total = int(exposure["total"]) + view.amount
    if total == 0 or total < int(rule.params["min_exposure"]):
        return None
    share = buyer_total * BPS // total
    limit = int(rule.params["max_share_bps"])
    if share <= limit:
        return None
    return (
        f"buyer {exposure.get('buyer')} would be {share} bps of financier "
        f"{exposure.get('financier')}'s exposure (limit {limit} bps)",
        {
            "financier": exposure.get("financier"),
            "buyer": exposure.get("buyer"),
            "buyer_exposure": str(buyer_total),
            "total_exposure": str(total),
            "share_bps": share,
            "max_share_bps": limit,
        },
    )


def _rate(field: str) -> Callable[[Rule, _Inputs], _Result]:
    def check(rule: Rule, view: _Inputs) -> _Result:
        limit = int(rule.params["max_bps"])
        flagged: list[dict[str, Any]] = []
        for role in rule.params["roles"]:
            address = view.parties.get(role)
            if address is None:
                continue
            record = view.party_records.get(address.lower())
            if record is None or record["matured"] < int(rule.params["min_matured"]):
                continue
            rate = record[field] * BPS // record["matured"]
            if rate > limit:
                flagged.append(
                    {
                        "role": role,
                        "address": address,
                        "matured": record["matured"],
                        field: record[field],
                        "rate_bps": rate,
                    }
                )
        if not flagged:
            return None
        listed = ", ".join(f"{f['role']} {f['address']} {f['rate_bps']} bps" for f in flagged)
        return (f"{field} rate above {limit} bps: {listed}", {"parties": flagged, "max_bps": limit})

    return check


_CHECKS: Final[dict[str, Callable[[Rule, _Inputs], _Result]]] = {
    "amount_above": _amount_above,
    "round_amount": _round_amount,
    "velocity": _velocity,
    "document_reuse": _document_reuse,
    "blocklist": _blocklist,
    "concentration": _concentration,
    "overdue_rate": _rate("overdue"),
    "default_rate": _rate("defaulted"),
}
