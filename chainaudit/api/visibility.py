"""One visibility rule for every read of the log through the API.

``GET /v1/records/{id}``, the record list, inclusion proofs (and their fast lane), proof
bundles, statements, alerts and the deal trace all ask :meth:`Viewer.view` what a key may see
of a record; nothing else decides it.

* **Officers and auditors** (admin, operator, auditor, regulator keys) see every record whole.
* **A partner** (a key bound to an address ``A``) sees:

  1. its own records whole: those it appended (``actor == A``) and the service's records of
     the deal actions it took through the API (``transaction`` records with
     ``actor == "key:<its key id>"``, written by a service);
  2. the records the service wrote about a deal of this service's vault it is a party to,
     for the part of the deal that concerns it (:func:`read_scope`): escrow events and the
     API's action records whole, ``decision`` records **redacted** to what concerns it
     (:func:`redact_decision`: no other party's exposure, track record, velocity or other
     deals' records);
  3. the escrow events it took part in (its address is one of the event's arguments: the
     buyer funding, the payee of a release, the account of a withdrawal…), except a
     ``FinancingOffered`` naming it;
  4. nothing else: not another partner's records (even when they name its deal), not admin
     records, not a record whose stamped submitter was not entitled to write it
     (:mod:`chainaudit.core.provenance`).

  A party's scope comes from the deal on chain, read once per request: the buyer, the
  supplier, the arbiter, the inspectors, the approvers and the deal's own financier see the
  whole deal; a financier that **accepted** financing on a milestone sees the deal-wide
  records and those of the milestones it financed. A financing **offer** grants nothing until
  it is accepted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from chainaudit.api.services import Services
from chainaudit.chain.escrow import Deal
from chainaudit.core import provenance
from chainaudit.core.errors import ChainauditError
from chainaudit.log.store import Entry
from chainaudit.service import masking
from chainaudit.service.keys import ApiKey

__all__ = [
    "WHOLE_DEAL",
    "RecordView",
    "Viewer",
    "document_of",
    "milestone_of",
    "read_scope",
    "redact_decision",
    "trusted",
]

WHOLE_DEAL: Final = None
"""The :func:`read_scope` of a party that sees every milestone of the deal."""

_DECISION_KEYS: Final = frozenset(
    {
        "type",
        "schema",
        "transition",
        "status",
        "action",
        "deal_id",
        "milestone",
        "subject",
        "alert_id",
        "decision_id",
        "rule_set_hash",
        "rule_set_version",
        "inputs_sha256",
        "outcome",
        "severity",
        "resolution",
        "tx_hash",
        "until",
        "reason_hash",
        "at",
        "error",
    }
)
"""The fields of a decision payload a deal's party may see (everything else is withheld)."""

_INPUT_KEYS: Final = frozenset(
    {"schema", "action", "deal_id", "milestone", "at", "amount", "token", "party", "actor"}
)
"""The evaluation inputs of a decision a deal's party may see as they are."""


@dataclass(frozen=True, slots=True)
class RecordView:
    """What a key may see of one record: the entry, its document as shown (``None`` once the
    content was erased), whether that document was redacted for the key, and whether its
    personal fields were masked (:mod:`chainaudit.service.masking`)."""

    entry: Entry
    document: dict[str, Any] | None
    redacted: bool
    masked: bool = False


def trusted(document: Mapping[str, Any]) -> bool:
    """Whether a record's stamped submitter was entitled to write it (readers that build a
    deal's timeline or books from records consume only these)."""
    return provenance.document_entitled(document)


def milestone_of(payload: Mapping[str, Any]) -> int | None:
    """The milestone a record's payload is about: ``payload.milestone`` (decisions, actions)
    or ``payload.args.milestone`` (escrow events); ``None`` for deal-wide records or when it
    is not an integer."""
    value = payload.get("milestone")
    if value is None:
        args = payload.get("args")
        value = args.get("milestone") if isinstance(args, Mapping) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def read_scope(deal: Deal, address: str | None) -> frozenset[int] | bool | None:
    """What of ``deal`` the party at ``address`` may read.

    Returns :data:`WHOLE_DEAL` (``None``) for the buyer, supplier, arbiter, an inspector, an
    approver and the deal's own financier; the set of milestone indexes a financier accepted
    financing on (it then also reads the deal-wide records); ``False`` when the address has
    no part in the deal. A financing offer that was not accepted counts for nothing.
    """
    if address is None:
        return False
    a = address.lower()
    parties = [deal.buyer, deal.supplier, deal.arbiter, *deal.inspectors, *deal.approvers]
    if deal.financier:
        parties.append(deal.financier)
    if any(p and p.lower() == a for p in parties):
        return WHOLE_DEAL
    financed = frozenset(m.index for m in deal.milestones if m.financed and m.payee.lower() == a)
    return financed if financed else False


def redact_decision(payload: Mapping[str, Any], address: str) -> dict[str, Any]:
    """A decision payload as a deal's party at ``address`` may see it.

    Keeps what the decision was about and what came of it (action, deal, milestone, outcome,
    severity, the ids of the rules that fired, the rule set and input hashes, the alert and
    transaction); withholds every figure about someone else: the fired rules' figures and
    messages, the owner, notes and who acted, and of the inputs the history except the
    party's own track record, its own velocity and — for a financier — its own exposure.
    The result carries ``"redacted": true``.
    """
    a = address.lower()
    shown: dict[str, Any] = {k: v for k, v in payload.items() if k in _DECISION_KEYS}
    rules = payload.get("rules")
    if isinstance(rules, list):
        shown["rules"] = [r for r in rules if isinstance(r, str)]
    fired = payload.get("fired")
    if isinstance(fired, list):
        shown["fired"] = [
            {"rule": f.get("rule"), "severity": f.get("severity")}
            for f in fired
            if isinstance(f, Mapping)
        ]
    inputs = payload.get("inputs")
    if isinstance(inputs, Mapping):
        own_inputs: dict[str, Any] = {k: v for k, v in inputs.items() if k in _INPUT_KEYS}
        parties = inputs.get("parties")
        if isinstance(parties, Mapping):
            own_inputs["parties"] = dict(parties)  # the deal's own parties, known to each
        history = inputs.get("history")
        if isinstance(history, Mapping):
            own: dict[str, Any] = {}
            records = history.get("party_records")
            if isinstance(records, Mapping) and a in records:
                own["party_records"] = {a: records[a]}
            exposure = history.get("exposure")
            if isinstance(exposure, Mapping) and str(exposure.get("financier", "")).lower() == a:
                own["exposure"] = dict(exposure)
            if str(inputs.get("party", "")).lower() == a and "velocity" in history:
                own["velocity"] = history["velocity"]
            own_inputs["history"] = own
        shown["inputs"] = own_inputs
    shown["redacted"] = True
    return shown


_NAMES_NO_PARTY: Final = frozenset({"FinancingOffered"})
"""Events that name an address without making it a party (an offer is not an acceptance)."""


def _names(args: Any, address: str) -> bool:
    """Whether an event's arguments name ``address`` (lowercase), in a list or not."""
    if not isinstance(args, Mapping):
        return False
    for value in args.values():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and v.lower() == address for v in values):
            return True
    return False


class Viewer:
    """What one API key may see (see the module); built per request, it reads each deal it
    needs from the chain once. Preconditions: ``svc`` is started; ``key`` authenticated."""

    def __init__(self, svc: Services, key: ApiKey) -> None:
        self.svc = svc
        self.key = key
        self._scopes: dict[int, frozenset[int] | bool | None] = {}
        self.masks = masking.masked_reader(key)
        """Whether this key sees personal fields masked."""

    @property
    def sees_everything(self) -> bool:
        """Officers and auditors see every record whole."""
        return self.key.role != "partner"

    @property
    def deals_read(self) -> int:
        """How many deals this viewer read from the chain (each once)."""
        return len(self._scopes)

    def own(self, entry: Entry, document: Mapping[str, Any] | None) -> bool:
        """Whether ``entry`` is the partner's own record (rule 1); needs no chain read."""
        if self.key.address is not None and entry.actor == self.key.address:
            return True
        if (
            entry.actor == f"key:{self.key.key_id}"
            and entry.kind == "transaction"
            and document is not None
        ):
            return provenance.is_service(_submitter(document)) and trusted(document)
        return False

    def deal_scope(self, deal_id: int) -> frozenset[int] | bool | None:
        """:func:`read_scope` of the key in deal ``deal_id`` (``False`` when the deal does
        not exist or cannot be read: a partner is then shown nothing of it)."""
        if deal_id not in self._scopes:
            scope: frozenset[int] | bool | None = False
            client = self.svc.escrow
            if client is not None:
                try:
                    if 1 <= deal_id <= client.deal_count():
                        scope = read_scope(client.deal(deal_id), self.key.address)
                except ChainauditError:
                    scope = False  # the chain is down: show nothing rather than guess
            self._scopes[deal_id] = scope
        return self._scopes[deal_id]

    def view(self, entry: Entry) -> RecordView | None:
        """The record as this key may see it, or ``None`` when it may not see it at all; an
        auditor's or regulator's view without the personal-data permission is masked."""
        document = document_of(entry)
        if self.sees_everything:
            if self.masks and document is not None:
                shown, masked = masking.mask_document(self.svc.policy, entry.kind, document)
                return RecordView(entry, shown, redacted=False, masked=masked)
            return RecordView(entry, document, redacted=False)
        if self.own(entry, document):
            return RecordView(entry, document, redacted=False)
        if document is None or not trusted(document) or self.key.address is None:
            return None
        payload = document.get("payload")
        if not isinstance(payload, Mapping) or entry.kind not in (
            "escrow_event",
            "decision",
            "transaction",
        ):
            return None
        if entry.kind == "transaction" and not provenance.is_service(_submitter(document)):
            return None  # another partner's transaction record
        if not self._concerns(entry.kind, payload):
            return None
        if entry.kind == "decision":
            shown = {k: v for k, v in document.items() if k not in ("payload", "salt")}
            shown["payload"] = redact_decision(payload, self.key.address)
            return RecordView(entry, shown, redacted=True)
        return RecordView(entry, document, redacted=False)

    def _concerns(self, kind: str, payload: Mapping[str, Any]) -> bool:
        if kind == "escrow_event":
            if payload.get("event") not in _NAMES_NO_PARTY and _names(
                payload.get("args"), str(self.key.address).lower()
            ):
                return True  # the partner took part in the event itself
            client = self.svc.escrow
            contract = str(payload.get("contract", "")).lower()
            if client is None or contract != client.address.lower():
                return False  # another vault's deal: its parties are not read here
        deal = payload.get("deal_id")
        if deal is None:
            return False
        try:
            deal_id = int(str(deal))
        except ValueError:
            return False
        scope = self.deal_scope(deal_id)
        if scope is False:
            return False
        if scope is WHOLE_DEAL:
            return True
        milestone = milestone_of(payload)
        return milestone is None or (isinstance(scope, frozenset) and milestone in scope)


def document_of(entry: Entry) -> dict[str, Any] | None:
    """The parsed record of ``entry``; ``None`` when erased or not a JSON object."""
    if entry.body is None:
        return None
    try:
        document = json.loads(entry.body)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _submitter(document: Mapping[str, Any]) -> str | None:
    value = document.get("submitter")
    return value if isinstance(value, str) else None
