"""Decision records: rule-set announcements, risk decisions, alerts, executions, and replay.

Every record here is of kind ``decision`` and says what it is in ``payload.type``:

``rule_set``
    A rule-set version came into force: its hash, version label and the full parsed rules
    (so a decision can be replayed from the log alone), and the hash it replaced.
``risk_decision``
    One evaluated action: the rule-set hash, the SHA-256 of the canonical inputs and the
    inputs themselves, every rule that fired with its figures, the outcome, the responsible
    owner, the alert raised (if any), and ``deal_id`` / ``milestone`` so the record is on
    the deal's timeline.
``alert``
    An alert opened (with its decision), acknowledged or resolved.
``risk_execution``
    What happened to an action the gate let through: its transaction hash, or the error that
    refused it.
``hold``
    An on-chain compliance hold placed, renewed or lifted.

:func:`replay_decision` re-evaluates a decision record with the rule set its hash names
(found in the log's announcements) and reports whether the outcome and every fired rule
come out the same; it also checks that the record still hashes to its committed leaf and
that its inputs still hash to the recorded input hash.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from chainaudit.core import provenance
from chainaudit.core.errors import NotFoundError, RecordError, RiskError
from chainaudit.core.merkle import hash_leaf
from chainaudit.core.records import PreparedRecord, prepare
from chainaudit.log.actions import now_rfc3339
from chainaudit.log.store import Log
from chainaudit.risk.book import Alert, RiskBook
from chainaudit.risk.engine import Evaluation, evaluate, inputs_sha256
from chainaudit.risk.rules import RuleSet, parse_rule_set

__all__ = [
    "DECISION_ACTOR",
    "DECISION_KIND",
    "Announcement",
    "ReplayReport",
    "alert_id_for",
    "alert_transition_record",
    "announce_rule_set",
    "decision_record",
    "find_rule_set",
    "make_record",
    "new_record_id",
    "replay_decision",
]

DECISION_KIND: Final = "decision"
DECISION_ACTOR: Final = "chainaudit:risk"


def new_record_id(prefix: str) -> str:
    """A fresh, time-ordered record id ``<prefix>:<ms>:<12 hex>``."""
    return f"{prefix}:{int(time.time() * 1000)}:{secrets.token_hex(6)}"


def alert_id_for(decision_id: str) -> str:
    """The id of the alert a decision raises (deterministic)."""
    return "AL-" + hashlib.sha256(decision_id.encode()).hexdigest()[:16]


def make_record(record_id: str, actor: str, payload: dict[str, Any]) -> PreparedRecord:
    """A ``decision`` record with ``payload``, timestamped now and stamped with the risk
    service's submitter (:data:`chainaudit.core.provenance.RISK`); ``RiskError`` if invalid."""
    try:
        return prepare(
            {
                "id": record_id,
                "kind": DECISION_KIND,
                "timestamp": now_rfc3339(),
                "actor": actor,
                "payload": payload,
            },
            submitter=provenance.RISK,
        )
    except RecordError as exc:
        raise RiskError(f"cannot make decision record {record_id}: {exc}") from exc


# -- rule sets ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Announcement:
    """The announcement in force after :func:`announce_rule_set`."""

    record_id: str
    rule_set_hash: str
    changed: bool
    """True when this call appended a new announcement."""


def rule_set_record(
    rule_set: RuleSet, *, actor: str, previous_hash: str | None, source: str | None
) -> PreparedRecord:
    """The record announcing ``rule_set`` (the full parsed rules are in the payload)."""
    return make_record(
        new_record_id(f"risk:rules:{rule_set.hash[:16]}"),
        actor,
        {
            "type": "rule_set",
            "rule_set_hash": rule_set.hash,
            "version": rule_set.version,
            "owner": rule_set.owner,
            "rules": dict(rule_set.document),
            "previous_hash": previous_hash,
            "source": source,
        },
    )


def announce_rule_set(
    log: Log, book: RiskBook, rule_set: RuleSet, *, actor: str, source: str | None = None
) -> Announcement:
    """Append an announcement of ``rule_set`` unless it is the version announced last.

    Going back to an older version announces it again: the log then shows which rules were
    in force when.
    """
    book.sync(log)
    latest = book.latest_rule_set()
    if latest is not None and latest.hash == rule_set.hash:
        return Announcement(latest.record_id, rule_set.hash, changed=False)
    record = rule_set_record(
        rule_set,
        actor=actor,
        previous_hash=None if latest is None else latest.hash,
        source=source,
    )
    log.append([record])
    book.sync(log)
    return Announcement(record.record_id, rule_set.hash, changed=True)


def find_rule_set(log: Log, book: RiskBook, rule_set_hash: str) -> RuleSet:
    """The rule set whose hash is ``rule_set_hash``, rebuilt from its announcement in the log.

    The announced rules are re-hashed: an announcement whose rules no longer hash to the
    name it was found under is not used. Raises :class:`NotFoundError` when no announcement
    holds that rule set.
    """
    book.sync(log)
    for entry in book.rule_sets(rule_set_hash):
        try:
            stored = log.entry(entry.record_id)
            if stored.body is None:
                continue
            rules = json.loads(stored.body)["payload"]["rules"]
            rule_set = parse_rule_set(rules)
        except (NotFoundError, RiskError, ValueError, KeyError, TypeError):
            continue
        if rule_set.hash == rule_set_hash:
            return rule_set
    raise NotFoundError(f"no announcement of rule set {rule_set_hash} in the log")


# -- decisions and alerts --------------------------------------------------------------------


def decision_record(
    record_id: str,
    rule_set: RuleSet,
    inputs: Mapping[str, Any],
    evaluation: Evaluation,
    *,
    subject: str,
    alert_id: str | None,
    requested_by: str | None,
    actor: str = DECISION_ACTOR,
) -> PreparedRecord:
    """The ``risk_decision`` record of one evaluation."""
    return make_record(
        record_id,
        actor,
        {
            "type": "risk_decision",
            "schema": 1,
            "action": inputs["action"],
            "deal_id": inputs.get("deal_id"),
            "milestone": inputs.get("milestone"),
            "subject": subject,
            "rule_set_hash": rule_set.hash,
            "rule_set_version": rule_set.version,
            "inputs_sha256": inputs_sha256(inputs),
            "inputs": dict(inputs),
            **evaluation.to_json(),
            "alert_id": alert_id,
            "requested_by": requested_by,
        },
    )


def alert_opened_record(
    alert_id: str,
    decision_id: str,
    inputs: Mapping[str, Any],
    evaluation: Evaluation,
    *,
    subject: str,
    actor: str = DECISION_ACTOR,
) -> PreparedRecord:
    """The record opening the alert of a ``review`` or ``hold`` decision."""
    assert evaluation.severity is not None
    summary = "; ".join(f.message for f in evaluation.fired)[:1_000]
    return make_record(
        f"risk:alert:{alert_id}:opened",
        actor,
        {
            "type": "alert",
            "transition": "opened",
            "status": "open",
            "alert_id": alert_id,
            "decision_id": decision_id,
            "subject": subject,
            "action": inputs["action"],
            "deal_id": inputs.get("deal_id"),
            "milestone": inputs.get("milestone"),
            "severity": evaluation.severity.label,
            "outcome": evaluation.outcome.value,
            "owner": evaluation.owner,
            "rules": list(evaluation.fired_ids),
            "summary": summary,
            "by": actor,
        },
    )


_TRANSITIONS: Final = {"acknowledged": ("open",), "resolved": ("open", "acknowledged")}


def alert_transition_record(
    book: RiskBook,
    alert_id: str,
    transition: str,
    *,
    by: str,
    note: str | None = None,
    resolution: str | None = None,
    approval_id: str | None = None,
) -> PreparedRecord:
    """The record moving alert ``alert_id`` to ``acknowledged`` or ``resolved``.

    Clearing (``resolution="cleared"``) frees the held action, so it needs a second officer:
    ``approval_id`` names the executed maker-checker request (:mod:`chainaudit.service.approvals`)
    and is recorded in the payload; ``by`` is then the approving officer.
    Raises :class:`NotFoundError` for an unknown alert and
    :class:`~chainaudit.core.errors.RiskError` for a transition its status does not allow, a
    resolution other than ``cleared`` / ``confirmed`` (required to resolve), or a clearance
    without ``approval_id``.
    """
    if transition not in _TRANSITIONS:
        raise RiskError(f"an alert can be acknowledged or resolved, not {transition!r}")
    alert = book.alert(alert_id)
    if alert.status not in _TRANSITIONS[transition]:
        raise RiskError(f"alert {alert_id} is {alert.status}; it cannot be {transition}")
    if transition == "resolved" and resolution not in ("cleared", "confirmed"):
        raise RiskError("resolving an alert needs a resolution: cleared or confirmed")
    if transition != "resolved" and resolution is not None:
        raise RiskError("only a resolution carries cleared / confirmed")
    if resolution == "cleared" and approval_id is None:
        raise RiskError(
            f"clearing alert {alert_id} needs two officers: request it (action alert.clear) "
            "and have a second officer approve it"
        )
    if note is not None and len(note) > 2_000:
        raise RiskError("the note is limited to 2,000 characters")
    return make_record(
        new_record_id(f"risk:alert:{alert_id}:{transition}"),
        by,
        {
            "type": "alert",
            "transition": transition,
            "status": transition,
            "alert_id": alert_id,
            "decision_id": alert.decision_id,
            "deal_id": alert.deal_id,
            "milestone": alert.milestone,
            "by": by,
            "note": note,
            "resolution": resolution,
            **({} if approval_id is None else {"approval_id": approval_id}),
        },
    )


def transition_alert(
    log: Log,
    book: RiskBook,
    alert_id: str,
    transition: str,
    *,
    by: str,
    note: str | None = None,
    resolution: str | None = None,
    approval_id: str | None = None,
) -> tuple[str, Alert]:
    """Append the transition record of an alert and apply it; returns ``(record id, alert)``.

    Errors as :func:`alert_transition_record` (a clearance needs ``approval_id``)."""
    book.sync(log)
    record = alert_transition_record(
        book,
        alert_id,
        transition,
        by=by,
        note=note,
        resolution=resolution,
        approval_id=approval_id,
    )
    log.append([record])
    book.sync(log)
    return record.record_id, book.alert(alert_id)


# -- replay ---------------------------------------------------------------------------------


@dataclass
class ReplayReport:
    """The outcome of :func:`replay_decision`: ``matches`` when ``problems`` is empty."""

    record_id: str
    recorded_outcome: str | None
    replayed_outcome: str | None
    rule_set_hash: str | None
    fired: tuple[str, ...] = ()
    problems: list[str] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "record_id": self.record_id,
            "matches": self.matches,
            "recorded_outcome": self.recorded_outcome,
            "replayed_outcome": self.replayed_outcome,
            "rule_set_hash": self.rule_set_hash,
            "fired": list(self.fired),
            "problems": list(self.problems),
        }


def replay_decision(log: Log, book: RiskBook, record_id: str) -> ReplayReport:
    """Re-evaluate the ``risk_decision`` record ``record_id`` and compare.

    Checks, in order: the record's stored bytes still hash to the leaf the log committed;
    its stamped submitter was entitled to write it (:mod:`chainaudit.core.provenance`);
    its inputs still hash to ``inputs_sha256``; the rule set ``rule_set_hash`` is announced in
    the log (and its rules hash to that); evaluating those inputs with it gives the recorded
    outcome, severity, owner, clearances and fired rules with the same figures.

    Raises :class:`NotFoundError` for an unknown record and
    :class:`~chainaudit.core.errors.RiskError` for a record that is not a risk decision or whose
    content was erased (nothing to replay).
    """
    entry = log.entry(record_id)
    if entry.kind != DECISION_KIND:
        raise RiskError(f"record {record_id} is a {entry.kind} record, not a decision")
    if entry.body is None:
        raise RiskError(f"record {record_id}'s content was erased: there is nothing to replay")
    report = ReplayReport(record_id, None, None, None)
    if hash_leaf(bytes(entry.body)) != entry.leaf_hash:
        report.problems.append(
            "the stored record no longer hashes to the leaf the log committed (altered)"
        )
    try:
        document = json.loads(entry.body)
        payload = document["payload"]
        if payload.get("type") != "risk_decision":
            raise RiskError(
                f"record {record_id} is not a risk decision (type {payload.get('type')!r})"
            )
        inputs = payload["inputs"]
        recorded_hash = str(payload["rule_set_hash"])
    except RiskError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        report.problems.append(f"the record is not a readable decision: {exc!r}")
        return report
    report.recorded_outcome = payload.get("outcome")
    report.rule_set_hash = recorded_hash
    if not provenance.document_entitled(document):
        report.problems.append(
            f"the record was not written by the risk service (submitter "
            f"{document.get('submitter') or 'none'}): no reader uses it"
        )
    try:
        if inputs_sha256(inputs) != payload.get("inputs_sha256"):
            report.problems.append("the inputs no longer hash to the recorded inputs_sha256")
    except RiskError as exc:
        report.problems.append(str(exc))
    try:
        rule_set = find_rule_set(log, book, recorded_hash)
    except NotFoundError as exc:
        report.problems.append(str(exc))
        return report
    try:
        evaluation = evaluate(rule_set, inputs)
    except RiskError as exc:
        report.problems.append(f"the inputs cannot be evaluated: {exc}")
        return report
    report.replayed_outcome = evaluation.outcome.value
    report.fired = evaluation.fired_ids
    replayed = evaluation.to_json()
    for name in ("outcome", "severity", "owner", "cleared_by"):
        if payload.get(name) != replayed[name]:
            report.problems.append(
                f"{name}: recorded {payload.get(name)!r}, replayed {replayed[name]!r}"
            )
    if payload.get("fired") != replayed["fired"]:
        recorded_ids = [f.get("rule") for f in payload.get("fired") or [] if isinstance(f, dict)]
        report.problems.append(
            f"fired rules: recorded {recorded_ids} with their figures, replayed "
            f"{list(evaluation.fired_ids)}"
            + (" with other figures" if recorded_ids == list(evaluation.fired_ids) else "")
        )
    return report
