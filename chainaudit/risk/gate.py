"""The risk gate: evaluate an action, record the decision, raise the alert.

:class:`RiskGate` ties the halves together: :func:`~chainaudit.risk.history.gather_inputs`
(I/O) materialises the inputs, :func:`~chainaudit.risk.engine.evaluate` (pure) decides, and
the decision record — with the alert it raises for ``review`` and ``hold`` — is appended to
the log in one durable batch before anything is sent. :class:`~chainaudit.risk.guarded.
GuardedEscrow` calls :meth:`RiskGate.check` before every money-moving escrow action.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chainaudit.core.records import PreparedRecord
from chainaudit.log.store import Log
from chainaudit.risk.book import RiskBook
from chainaudit.risk.decisions import (
    DECISION_ACTOR,
    Announcement,
    alert_id_for,
    alert_opened_record,
    announce_rule_set,
    decision_record,
    find_rule_set,
    make_record,
    new_record_id,
)
from chainaudit.risk.engine import Evaluation, evaluate, inputs_sha256
from chainaudit.risk.history import ActionRequest, gather_inputs, subject_of
from chainaudit.risk.ledger import EventCache, Ledger
from chainaudit.risk.rules import Outcome, RuleSet, load_rule_file

__all__ = ["GateDecision", "RiskGate"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GateDecision:
    """A recorded decision: what the gate decided about one action, and where it is logged."""

    record_id: str
    leaf_index: int
    leaf_hash: bytes
    """The decision record's RFC 9162 leaf hash: the reason hash of a hold it causes."""
    evaluation: Evaluation
    inputs: dict[str, Any]
    inputs_sha256: str
    subject: str
    alert_id: str | None
    rule_set_hash: str

    @property
    def outcome(self) -> Outcome:
        return self.evaluation.outcome


class RiskGate:
    """Evaluates actions against a rule set and records every decision in ``log``.

    ``log`` is a :class:`~chainaudit.log.store.Log` or a callable returning one for the current
    thread (a ``Log`` serves one thread at a time; the API passes ``services.reader``).
    ``contract`` and ``chain_id`` restrict the history to one escrow vault. ``actor`` is the
    records' actor. The gate is thread-safe when ``log`` is a per-thread callable.

    ``activate``: with ``True`` (the default, for a rule set given in code) ``rule_set`` is
    announced if it is not the version in force. With ``False`` (a rule *file*, see
    :meth:`from_file`) a new version comes into force only through an approved
    ``rules.activate`` request (:mod:`chainaudit.service.approvals`, two officers): when the log
    already announces another version, the gate keeps using that one, rebuilt from the log,
    and logs a warning; only the very first rule set of a log is announced from the file.
    """

    def __init__(
        self,
        log: Log | Callable[[], Log],
        rule_set: RuleSet,
        *,
        contract: str | None = None,
        chain_id: int | None = None,
        actor: str = DECISION_ACTOR,
        source: Path | None = None,
        activate: bool = True,
    ) -> None:
        self._log_source = log
        self.rule_set = rule_set
        self.contract = contract
        self.chain_id = chain_id
        self.actor = actor
        self.source = source
        first = self.log
        self.book = RiskBook(first.path, database_url=first.database_url)
        self._lock = threading.Lock()
        self._events = EventCache(chain_id=chain_id, contract=contract)
        if not activate:
            self.book.sync(first)
            latest = self.book.latest_rule_set()
            if latest is not None and latest.hash != rule_set.hash:
                logger.warning(
                    "risk: the rule file %s (hash %s) is not the rule set in force (%s); it "
                    "comes into force only through an approved rules.activate request",
                    source,
                    rule_set.hash,
                    latest.hash,
                )
                self.rule_set = find_rule_set(first, self.book, latest.hash)
        self.announcement: Announcement = announce_rule_set(
            first,
            self.book,
            self.rule_set,
            actor=actor,
            source=None if source is None else str(source),
        )

    @classmethod
    def from_file(cls, log: Log | Callable[[], Log], path: Path | str, **options: Any) -> RiskGate:
        """Load the rule file at ``path`` and build a gate over the rule set in force.

        The file's rules are announced only when the log has no rule set yet; otherwise a
        differing file waits for an approved ``rules.activate`` (``activate=False``).
        Raises :class:`~chainaudit.core.errors.RiskError` for a missing or invalid rule file.
        """
        source = Path(path)
        options.setdefault("activate", False)
        return cls(log, load_rule_file(source), source=source, **options)

    def use(self, rule_set: RuleSet) -> None:
        """Evaluate with ``rule_set`` from now on: one whose activation was approved and
        announced (:func:`chainaudit.app.controls.execute` did that). Raises
        :class:`~chainaudit.core.errors.NotFoundError` if it is not announced in the log."""
        with self._lock:
            self.book.sync(self.log)
            find_rule_set(self.log, self.book, rule_set.hash)
            entry = self.book.rule_sets(rule_set.hash)[-1]
            self.rule_set = rule_set
            self.announcement = Announcement(entry.record_id, rule_set.hash, changed=False)

    @property
    def log(self) -> Log:
        """The log for the current thread."""
        source = self._log_source
        return source if isinstance(source, Log) else source()

    def reload(self) -> bool:
        """Follow the rule set in force: switch to the version the log announced last (an
        approved activation) if it is not the one in use. A changed rule *file* alone changes
        nothing (a warning is logged): it needs an approved ``rules.activate``. Returns
        whether the rules changed."""
        if self.source is not None:
            fresh = load_rule_file(self.source)
            if fresh.hash != self.rule_set.hash:
                logger.warning(
                    "risk: the rule file %s changed (hash %s); request its activation "
                    "(action rules.activate) to bring it into force",
                    self.source,
                    fresh.hash,
                )
        with self._lock:
            self.book.sync(self.log)
            latest = self.book.latest_rule_set()
            if latest is None or latest.hash == self.rule_set.hash:
                return False
            self.rule_set = find_rule_set(self.log, self.book, latest.hash)
            self.announcement = Announcement(latest.record_id, latest.hash, changed=False)
        return True

    def close(self) -> None:
        self.book.close()

    # -- evaluating --------------------------------------------------------------------------

    def check(
        self, request: ActionRequest, *, at: int, requested_by: str | None = None
    ) -> GateDecision:
        """Evaluate ``request`` at chain time ``at`` and append its decision record (and the
        alert of a ``review`` or ``hold`` outcome) durably; return the decision.

        Nothing is sent to the chain here: the caller sends the action for ``allow`` and
        ``review`` and must not for ``hold``.
        """
        log = self.log
        rule_set = self.rule_set
        ledger = Ledger.replay(self._events.update(log))
        inputs = gather_inputs(
            log,
            self.book,
            rule_set,
            request,
            at=at,
            contract=self.contract,
            chain_id=self.chain_id,
            ledger=ledger,
        )
        evaluation = evaluate(rule_set, inputs)
        subject = subject_of(request)
        record_id = new_record_id("risk:decision")
        alert_id = alert_id_for(record_id) if evaluation.outcome is not Outcome.ALLOW else None
        records: list[PreparedRecord] = [
            decision_record(
                record_id,
                rule_set,
                inputs,
                evaluation,
                subject=subject,
                alert_id=alert_id,
                requested_by=requested_by,
                actor=self.actor,
            )
        ]
        if alert_id is not None:
            records.append(
                alert_opened_record(
                    alert_id, record_id, inputs, evaluation, subject=subject, actor=self.actor
                )
            )
        result = log.append(records)
        self.book.sync(log)
        return GateDecision(
            record_id=record_id,
            leaf_index=result.indexes[0],
            leaf_hash=records[0].leaf_hash,
            evaluation=evaluation,
            inputs=inputs,
            inputs_sha256=inputs_sha256(inputs),
            subject=subject,
            alert_id=alert_id,
            rule_set_hash=rule_set.hash,
        )

    def record_execution(
        self,
        decision: GateDecision,
        *,
        tx_hash: str | None,
        error: str | None = None,
        deal_id: int | None = None,
    ) -> str:
        """Append what became of an allowed (or reviewed) action: its transaction, or the
        error that refused it. ``deal_id`` names a deal created by the action. Returns the
        record id."""
        inputs = decision.inputs
        deal = inputs.get("deal_id") if deal_id is None else str(deal_id)
        record = make_record(
            decision.record_id.replace("risk:decision:", "risk:execution:", 1),
            self.actor,
            {
                "type": "risk_execution",
                "decision_id": decision.record_id,
                "action": inputs["action"],
                "deal_id": deal,
                "milestone": inputs.get("milestone"),
                "party": inputs["party"],
                "amount": inputs["amount"],
                "documents": list(inputs.get("documents", [])),
                "at": inputs["at"],
                "tx_hash": tx_hash,
                "error": error,
            },
        )
        log = self.log
        log.append([record])
        self.book.sync(log)
        return record.record_id
