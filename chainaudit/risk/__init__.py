"""Risk controls: rule sets, the pure evaluation core, decision records, alerts, the gate in
front of the escrow, compliance holds, incidents and emergency pauses.

The pieces, from the pure core outwards:

* :mod:`~chainaudit.risk.rules` — the versioned TOML rule file, parsed and hashed;
* :mod:`~chainaudit.risk.engine` — ``evaluate(rule_set, inputs) -> Evaluation``, pure;
* :mod:`~chainaudit.risk.ledger` and :mod:`~chainaudit.risk.history` — the escrow's books
  replayed from the log's indexed events, and the evaluation inputs built from them;
* :mod:`~chainaudit.risk.decisions` — decision records, alerts and replay;
* :mod:`~chainaudit.risk.book` — the alert and rule-set tables, a projection of the log;
* :mod:`~chainaudit.risk.gate` and :mod:`~chainaudit.risk.guarded` — the gate and
  ``GuardedEscrow``, which evaluates every money-moving action before sending it;
* :mod:`~chainaudit.risk.incidents` — pause / unpause and incident steps.

``docs/risk.md`` explains the rule file with an example.
"""

from chainaudit.risk.book import Alert, RiskBook
from chainaudit.risk.clearance import Clearance, ClearanceSigner
from chainaudit.risk.decisions import ReplayReport, replay_decision, transition_alert
from chainaudit.risk.engine import Evaluation, Firing, evaluate, inputs_sha256
from chainaudit.risk.gate import GateDecision, RiskGate
from chainaudit.risk.guarded import ClearanceGrant, GuardedEscrow, GuardedResult, HoldResult
from chainaudit.risk.history import ActionRequest, gather_inputs, subject_of
from chainaudit.risk.rules import Outcome, Rule, RuleSet, Severity, load_rule_file, parse_rule_set

__all__ = [
    "ActionRequest",
    "Alert",
    "Clearance",
    "ClearanceGrant",
    "ClearanceSigner",
    "Evaluation",
    "Firing",
    "GateDecision",
    "GuardedEscrow",
    "GuardedResult",
    "HoldResult",
    "Outcome",
    "ReplayReport",
    "RiskBook",
    "RiskGate",
    "Rule",
    "RuleSet",
    "Severity",
    "evaluate",
    "gather_inputs",
    "inputs_sha256",
    "load_rule_file",
    "parse_rule_set",
    "replay_decision",
    "subject_of",
    "transition_alert",
]
