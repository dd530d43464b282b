"""Risk rule sets: the versioned rule file, parsed and hashed. Pure, no I/O but reading the file.

A rule set is a TOML document (``<data_dir>/rules.toml`` by default)::

    version = "2026-05"                  # a label for people; the hash identifies the version
    owner = "risk-office@example.com"    # responsible owner when a rule names none

    [outcomes]                           # worst fired severity -> outcome (these are defaults)
    low = "allow"
    medium = "review"
    high = "hold"
    critical = "hold"

    [[rules]]
    id = "large-payment"
    type = "amount_above"
    severity = "high"
    threshold = "250000000000"           # minor units: an integer or a decimal string

Every rule has an ``id`` (unique), a ``type`` (:data:`RULE_TYPES`), a ``severity`` (``low``,
``medium``, ``high``, ``critical``) and the parameters of its type; optionally an ``owner``,
the ``actions`` it applies to (:data:`ACTIONS`, default all), a ``description`` and
``enabled = false``. Unknown keys are refused (a mistyped parameter must not silently
disable a control), and so are floats and dates: thresholds are integers in the token's minor
units or decimal strings, rates are integer basis points. ``docs/risk.md`` explains each type.

The **rule-set hash** is the SHA-256 of the RFC 8785 canonical form of the parsed document
(:mod:`chainaudit.core.canonical`): formatting, comments and key order do not change it, any
change of meaning does. Decision records name the hash of the rule set that produced them.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any, Final

from chainaudit.core.canonical import canonicalize
from chainaudit.core.errors import RecordError, RiskError

__all__ = [
    "ACTIONS",
    "DEFAULT_OUTCOMES",
    "RULE_TYPES",
    "Outcome",
    "Rule",
    "RuleSet",
    "Severity",
    "load_rule_file",
    "parse_rule_set",
    "rule_set_hash",
]

ACTIONS: Final = ("create", "fund", "finance", "release", "refund")
"""The money-moving deal actions the gate evaluates."""

RULE_TYPES: Final = (
    "amount_above",
    "round_amount",
    "velocity",
    "document_reuse",
    "blocklist",
    "concentration",
    "overdue_rate",
    "default_rate",
)

BPS: Final = 10_000
_RULE_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_DECIMAL = re.compile(r"[0-9]{1,40}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


class Severity(IntEnum):
    """How serious a fired rule is; ordered, so ``max`` gives the worst."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        """The lowercase name used in rule files and records."""
        return self.name.lower()

    @classmethod
    def parse(cls, value: object, where: str) -> Severity:
        """The severity called ``value`` (``"low"`` ... ``"critical"``)."""
        if isinstance(value, str) and value.upper() in cls.__members__:
            return cls[value.upper()]
        raise RiskError(f"{where}: severity must be one of low, medium, high, critical")


class Outcome(StrEnum):
    """What the gate does with an action: send it, send it and alert, or refuse it."""

    ALLOW = "allow"
    REVIEW = "review"
    HOLD = "hold"

    @property
    def rank(self) -> int:
        """0 allow, 1 review, 2 hold."""
        return ("allow", "review", "hold").index(self.value)

    @classmethod
    def parse(cls, value: object, where: str) -> Outcome:
        """The outcome called ``value``."""
        try:
            return cls(str(value))
        except ValueError as exc:
            raise RiskError(f"{where}: outcome must be one of allow, review, hold") from exc


DEFAULT_OUTCOMES: Final[Mapping[Severity, Outcome]] = {
    Severity.LOW: Outcome.ALLOW,
    Severity.MEDIUM: Outcome.REVIEW,
    Severity.HIGH: Outcome.HOLD,
    Severity.CRITICAL: Outcome.HOLD,
}
"""The worst-severity mapping used when the rule file has no ``[outcomes]`` table."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of a rule set: its identity, severity, scope and typed parameters.

    ``params`` holds integers (amounts, counts, seconds, basis points) and, for blocklists,
    a frozenset of lowercase addresses.
    """

    id: str
    type: str
    severity: Severity
    owner: str
    actions: frozenset[str]
    params: Mapping[str, Any]
    description: str = ""

    def applies_to(self, action: str) -> bool:
        """Whether the rule is evaluated for ``action``."""
        return action in self.actions


@dataclass(frozen=True, slots=True)
class RuleSet:
    """A parsed, validated rule set and its canonical hash.

    ``document`` is the parsed rule file as JSON-able data: it is what an announcing record
    stores, and :func:`parse_rule_set` of it gives this rule set back (same hash).
    """

    version: str
    owner: str
    outcomes: Mapping[Severity, Outcome]
    rules: tuple[Rule, ...]
    document: Mapping[str, Any] = field(repr=False)
    hash: str
    """SHA-256 (hex) of the RFC 8785 canonical form of :attr:`document`."""
    description: str = ""

    def outcome_for(self, severity: Severity | None) -> Outcome:
        """The outcome of a worst fired severity (``None``: nothing fired, allow)."""
        return Outcome.ALLOW if severity is None else self.outcomes[severity]

    def velocity_windows(self) -> tuple[int, ...]:
        """Every distinct velocity window (seconds) the enabled rules use, ascending."""
        return tuple(
            sorted({int(r.params["window_seconds"]) for r in self.rules if r.type == "velocity"})
        )


def rule_set_hash(document: Mapping[str, Any]) -> str:
    """The SHA-256 (hex) of the RFC 8785 canonical bytes of a parsed rule document."""
    try:
        return hashlib.sha256(canonicalize(dict(document))).hexdigest()
    except RecordError as exc:
        raise RiskError(f"the rule set is not canonical JSON data: {exc}") from exc


def load_rule_file(path: Path | str) -> RuleSet:
    """Read and parse the TOML rule file at ``path``.

    Raises :class:`~chainaudit.core.errors.RiskError` naming the file for an unreadable file,
    invalid TOML, or any invalid rule.
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise RiskError(
            f"no rule file at {source}; copy examples/rules.toml there (see docs/risk.md)"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise RiskError(f"cannot read the rule file {source}: {exc}") from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RiskError(f"{source}: invalid TOML: {exc}") from exc
    try:
        return parse_rule_set(document)
    except RiskError as exc:
        raise RiskError(f"{source}: {exc}") from exc


def parse_rule_set(document: Mapping[str, Any]) -> RuleSet:
    """Validate a parsed rule document and build its :class:`RuleSet`.

    Accepts the TOML file parsed (:func:`tomllib.loads`) or the JSON ``rules`` of an
    announcing decision record. Raises :class:`~chainaudit.core.errors.RiskError` naming the
    first offending field.
    """
    if not isinstance(document, Mapping):
        raise RiskError("a rule set must be a table (a JSON object)")
    _check_json_domain(document, "$")
    doc = dict(document)
    _only(doc, {"version", "owner", "description", "outcomes", "rules"}, "rule set")
    version = _text(doc.get("version"), "version", limit=64)
    owner = _text(doc.get("owner"), "owner", limit=256)
    description = _text(doc.get("description", ""), "description", limit=2_000, empty=True)
    outcomes = dict(DEFAULT_OUTCOMES)
    table = doc.get("outcomes", {})
    if not isinstance(table, Mapping):
        raise RiskError("outcomes must be a table of severity = outcome")
    for name, value in table.items():
        severity = Severity.parse(name, f"outcomes.{name}")
        outcomes[severity] = Outcome.parse(value, f"outcomes.{name}")
    ranks = [outcomes[s].rank for s in Severity]
    if ranks != sorted(ranks):
        raise RiskError("outcomes must not get milder as the severity rises")
    raw_rules = doc.get("rules", [])
    if not isinstance(raw_rules, list):
        raise RiskError("rules must be an array of tables ([[rules]])")
    rules: list[Rule] = []
    seen: set[str] = set()
    for position, raw in enumerate(raw_rules):
        rule = _parse_rule(raw, position, owner)
        if rule is None:
            continue
        if rule.id in seen:
            raise RiskError(f"rules[{position}]: duplicate rule id {rule.id!r}")
        seen.add(rule.id)
        rules.append(rule)
    return RuleSet(
        version=version,
        owner=owner,
        outcomes=outcomes,
        rules=tuple(rules),
        document=doc,
        hash=rule_set_hash(doc),
        description=description,
    )


# -- rules ------------------------------------------------------------------------------------

_COMMON = {"id", "type", "severity", "owner", "actions", "description", "enabled"}
_PARAMS: Final[dict[str, dict[str, bool]]] = {
    # parameter -> required
    "amount_above": {"threshold": True},
    "round_amount": {"unit": True, "margin": False, "min_amount": False},
    "velocity": {"window_seconds": True, "max_count": False, "max_total": False},
    "document_reuse": {},
    "blocklist": {"addresses": True},
    "concentration": {"max_share_bps": True, "min_exposure": False},
    "overdue_rate": {"max_bps": True, "min_matured": False, "roles": False},
    "default_rate": {"max_bps": True, "min_matured": False, "roles": False},
}
_ROLES: Final = ("buyer", "supplier", "financier")


def _parse_rule(raw: object, position: int, default_owner: str) -> Rule | None:
    where = f"rules[{position}]"
    if not isinstance(raw, Mapping):
        raise RiskError(f"{where}: a rule must be a table")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not _RULE_ID.fullmatch(rule_id):
        raise RiskError(f"{where}.id: 1-64 characters of a-z 0-9 _ . - starting alphanumeric")
    where = f"rule {rule_id!r}"
    rule_type = raw.get("type")
    if rule_type not in _PARAMS:
        raise RiskError(f"{where}: type must be one of {', '.join(RULE_TYPES)}")
    spec = _PARAMS[str(rule_type)]
    _only(raw, _COMMON | spec.keys(), where)
    for name, required in spec.items():
        if required and name not in raw:
            raise RiskError(f"{where}: missing parameter {name!r}")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RiskError(f"{where}.enabled must be true or false")
    severity = Severity.parse(raw.get("severity"), f"{where}.severity")
    owner = _text(raw.get("owner", default_owner), f"{where}.owner", limit=256)
    actions_raw = raw.get("actions", list(ACTIONS))
    if (
        not isinstance(actions_raw, list)
        or not actions_raw
        or any(a not in ACTIONS for a in actions_raw)
    ):
        raise RiskError(f"{where}.actions must be a non-empty list of {', '.join(ACTIONS)}")
    description = _text(raw.get("description", ""), f"{where}.description", 2_000, empty=True)
    params = _parse_params(str(rule_type), raw, where)
    if not enabled:
        return None
    return Rule(
        id=rule_id,
        type=str(rule_type),
        severity=severity,
        owner=owner,
        actions=frozenset(actions_raw),
        params=params,
        description=description,
    )


def _parse_params(rule_type: str, raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    p: dict[str, Any] = {}
    if rule_type == "amount_above":
        p["threshold"] = _amount(raw["threshold"], f"{where}.threshold")
    elif rule_type == "round_amount":
        unit = _amount(raw["unit"], f"{where}.unit", positive=True)
        margin = _amount(raw.get("margin", 0), f"{where}.margin")
        if margin >= unit:
            raise RiskError(f"{where}.margin must be smaller than the unit")
        minimum = _amount(raw.get("min_amount", unit - margin), f"{where}.min_amount")
        p.update(unit=unit, margin=margin, min_amount=minimum)
    elif rule_type == "velocity":
        p["window_seconds"] = _count(raw["window_seconds"], f"{where}.window_seconds", 1)
        if "max_count" not in raw and "max_total" not in raw:
            raise RiskError(f"{where}: give max_count, max_total or both")
        if "max_count" in raw:
            p["max_count"] = _count(raw["max_count"], f"{where}.max_count", 0)
        if "max_total" in raw:
            p["max_total"] = _amount(raw["max_total"], f"{where}.max_total")
    elif rule_type == "blocklist":
        addresses = raw["addresses"]
        if not isinstance(addresses, list) or not all(
            isinstance(a, str) and _ADDRESS.fullmatch(a) for a in addresses
        ):
            raise RiskError(f"{where}.addresses must be a list of 0x-hex Ethereum addresses")
        p["addresses"] = frozenset(a.lower() for a in addresses)
    elif rule_type == "concentration":
        p["max_share_bps"] = _count(raw["max_share_bps"], f"{where}.max_share_bps", 0, BPS)
        p["min_exposure"] = _amount(raw.get("min_exposure", 0), f"{where}.min_exposure")
    elif rule_type in ("overdue_rate", "default_rate"):
        p["max_bps"] = _count(raw["max_bps"], f"{where}.max_bps", 0, BPS)
        p["min_matured"] = _count(raw.get("min_matured", 1), f"{where}.min_matured", 1)
        roles = raw.get("roles", ["buyer", "supplier"])
        if not isinstance(roles, list) or not roles or any(r not in _ROLES for r in roles):
            raise RiskError(f"{where}.roles must be a non-empty list of {', '.join(_ROLES)}")
        p["roles"] = tuple(dict.fromkeys(roles))
    return p


# -- field helpers ----------------------------------------------------------------------------


def _check_json_domain(value: object, path: str) -> None:
    """Refuse floats, dates and other values that are not plain JSON (integers, strings,
    booleans, tables, arrays)."""
    if isinstance(value, bool | str) or value is None:
        return
    if isinstance(value, int):
        return
    if isinstance(value, float):
        raise RiskError(
            f"{path}: floating-point numbers are not allowed; use integer minor units, "
            "basis points, or a decimal string"
        )
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_json_domain(item, f"{path}.{key}")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json_domain(item, f"{path}[{i}]")
        return
    raise RiskError(f"{path}: {type(value).__name__} values are not allowed in a rule file")


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise RiskError(f"{where}: unknown key(s) {', '.join(unknown)}")


def _text(value: object, where: str, limit: int, *, empty: bool = False) -> str:
    if not isinstance(value, str) or len(value) > limit or (not empty and not value.strip()):
        raise RiskError(
            f"{where} must be a {'' if empty else 'non-empty '}string of at most {limit} characters"
        )
    return value


def _amount(value: object, where: str, *, positive: bool = False) -> int:
    """An amount in minor units: a non-negative integer, or a decimal string of digits."""
    if isinstance(value, bool):
        raise RiskError(f"{where} must be an integer or a decimal string")
    if isinstance(value, int):
        amount = value
    elif isinstance(value, str) and _DECIMAL.fullmatch(value):
        amount = int(value)
    else:
        raise RiskError(f"{where} must be an integer or a decimal string of digits")
    if amount < 0 or (positive and amount == 0):
        raise RiskError(f"{where} must be {'positive' if positive else 'non-negative'}")
    return amount


def _count(value: object, where: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RiskError(f"{where} must be an integer")
    if value < minimum or (maximum is not None and value > maximum):
        top = f" and at most {maximum}" if maximum is not None else ""
        raise RiskError(f"{where} must be at least {minimum}{top}")
    return value
