"""The pure core: parsing and hashing rule files, and evaluating every rule type.

No chain, no log: ``evaluate`` reads nothing but its arguments, so these tests build inputs
by hand and check each rule's boundary (just under: silent; just over: fires, with figures).
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from chainaudit.core.canonical import canonicalize
from chainaudit.core.errors import RiskError
from chainaudit.risk import (
    Outcome,
    Severity,
    evaluate,
    inputs_sha256,
    load_rule_file,
    parse_rule_set,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rules.toml"
BUYER = "0x1111111111111111111111111111111111111111"
SUPPLIER = "0x2222222222222222222222222222222222222222"
FINANCIER = "0x3333333333333333333333333333333333333333"
DOC = "0x" + "ab" * 32
USDC = 10**6


def rules(*rule_tables: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"version": "t1", "owner": "risk@example.com", "rules": list(rule_tables), **top}


def inputs(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schema": 1,
        "action": "fund",
        "deal_id": "7",
        "milestone": 0,
        "at": 1_800_000_000,
        "amount": str(1_234 * USDC),
        "token": "0x4444444444444444444444444444444444444444",
        "party": BUYER,
        "actor": BUYER,
        "parties": {"buyer": BUYER, "supplier": SUPPLIER, "financier": None},
        "documents": [DOC],
        "history": {
            "velocity": {"86400": {"count": 0, "total": "0"}},
            "document_uses": {},
            "exposure": None,
            "party_records": {},
            "clearances": [],
        },
    }
    history = overrides.pop("history", {})
    base.update(overrides)
    base["history"].update(history)
    return base


# -- the rule file ----------------------------------------------------------------------------


def test_example_rule_file_parses_and_its_hash_is_the_canonical_json_hash() -> None:
    rule_set = load_rule_file(EXAMPLE)
    assert rule_set.version == "2026-05-example"
    assert {r.type for r in rule_set.rules} == {
        "amount_above",
        "round_amount",
        "velocity",
        "document_reuse",
        "blocklist",
        "concentration",
        "overdue_rate",
        "default_rate",
    }
    document = tomllib.loads(EXAMPLE.read_text())
    assert rule_set.hash == hashlib.sha256(canonicalize(document)).hexdigest()
    # the announced JSON form parses back to the same rule set
    again = parse_rule_set(json.loads(json.dumps(rule_set.document)))
    assert again.hash == rule_set.hash and again.rules == rule_set.rules


def test_formatting_does_not_change_the_hash_but_meaning_does(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    reformatted = tmp_path / "r.toml"
    reformatted.write_text("# another comment\n" + text.replace(" = ", "="))
    assert load_rule_file(reformatted).hash == load_rule_file(EXAMPLE).hash
    changed = tmp_path / "c.toml"
    changed.write_text(text.replace('threshold = "250000000000"', 'threshold = "250000000001"'))
    assert load_rule_file(changed).hash != load_rule_file(EXAMPLE).hash


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            rules({"id": "a", "type": "amount_above", "severity": "high", "threshold": 1.5}),
            "floating-point",
        ),
        (
            rules({"id": "a", "type": "amount_above", "severity": "high", "threshold": "1e9"}),
            "integer or a decimal string",
        ),
        (
            rules({"id": "a", "type": "amount_above", "severity": "high", "treshold": "1"}),
            "unknown key",
        ),
        (rules({"id": "a", "type": "amount_above", "severity": "high"}), "missing parameter"),
        (rules({"id": "a", "type": "nonsense", "severity": "high"}), "type must be one of"),
        (
            rules({"id": "a", "type": "amount_above", "severity": "dire", "threshold": 1}),
            "severity",
        ),
        (
            rules(
                {"id": "a", "type": "amount_above", "severity": "low", "threshold": 1},
                {"id": "a", "type": "amount_above", "severity": "low", "threshold": 2},
            ),
            "duplicate rule id",
        ),
        (
            rules({"id": "a", "type": "velocity", "severity": "low", "window_seconds": 60}),
            "max_count, max_total",
        ),
        (
            rules({"id": "a", "type": "round_amount", "severity": "low", "unit": 10, "margin": 10}),
            "margin must be smaller",
        ),
        (
            rules({"id": "a", "type": "blocklist", "severity": "low", "addresses": ["nope"]}),
            "Ethereum addresses",
        ),
        (
            rules({"id": "a", "type": "concentration", "severity": "low", "max_share_bps": 10001}),
            "at most 10000",
        ),
        (
            rules(
                {
                    "id": "a",
                    "type": "amount_above",
                    "severity": "low",
                    "threshold": 1,
                    "actions": ["teleport"],
                }
            ),
            "actions",
        ),
        (rules(outcomes={"low": "hold", "high": "allow"}), "milder"),
        (rules(rate=0.5), "floating-point"),
        ({"owner": "x", "rules": []}, "version"),
        (
            rules({"id": "a", "type": "amount_above", "severity": "low", "threshold": 2**60}),
            "decimal string",
        ),
    ],
)
def test_invalid_rule_files_are_refused_with_the_field_named(
    document: dict[str, Any], message: str
) -> None:
    with pytest.raises(RiskError, match=message):
        parse_rule_set(document)


def test_disabled_rules_are_kept_in_the_hash_but_not_evaluated() -> None:
    table = {"id": "big", "type": "amount_above", "severity": "critical", "threshold": 1}
    on = parse_rule_set(rules(table))
    off = parse_rule_set(rules({**table, "enabled": False}))
    assert on.hash != off.hash and not off.rules
    assert evaluate(off, inputs()).outcome is Outcome.ALLOW
    assert evaluate(on, inputs()).outcome is Outcome.HOLD


# -- evaluation -------------------------------------------------------------------------------

Case = tuple[str, dict[str, Any], dict[str, Any], dict[str, Any] | None]

CASES: list[Case] = [
    (
        "amount above threshold",
        {"type": "amount_above", "threshold": str(1_000 * USDC)},
        {"amount": str(1_000 * USDC + 1)},
        {"amount": str(1_000 * USDC + 1), "threshold": str(1_000 * USDC)},
    ),
    (
        "amount at threshold",
        {"type": "amount_above", "threshold": str(1_000 * USDC)},
        {"amount": str(1_000 * USDC)},
        None,
    ),
    (
        "exactly round",
        {"type": "round_amount", "unit": str(10_000 * USDC)},
        {"amount": str(50_000 * USDC)},
        {
            "amount": str(50_000 * USDC),
            "unit": str(10_000 * USDC),
            "round_figure": str(50_000 * USDC),
            "below_by": "0",
            "pattern": "round",
        },
    ),
    (
        "just below a round figure",
        {"type": "round_amount", "unit": str(10_000 * USDC), "margin": str(100 * USDC)},
        {"amount": str(9_950 * USDC)},
        {
            "amount": str(9_950 * USDC),
            "unit": str(10_000 * USDC),
            "round_figure": str(10_000 * USDC),
            "below_by": str(50 * USDC),
            "pattern": "just_below",
        },
    ),
    (
        "too far below a round figure",
        {"type": "round_amount", "unit": str(10_000 * USDC), "margin": str(100 * USDC)},
        {"amount": str(9_899 * USDC)},
        None,
    ),
    (
        "round but under the minimum",
        {"type": "round_amount", "unit": str(1_000 * USDC), "min_amount": str(10_000 * USDC)},
        {"amount": str(5_000 * USDC)},
        None,
    ),
    (
        "velocity count: the action itself is the 4th",
        {"type": "velocity", "window_seconds": 86400, "max_count": 3},
        {"history": {"velocity": {"86400": {"count": 3, "total": "10"}}}, "amount": "5"},
        {
            "party": BUYER,
            "window_seconds": 86400,
            "count": 4,
            "total": "15",
            "max_count": 3,
        },
    ),
    (
        "velocity count within the limit",
        {"type": "velocity", "window_seconds": 86400, "max_count": 3},
        {"history": {"velocity": {"86400": {"count": 2, "total": "10"}}}},
        None,
    ),
    (
        "velocity total",
        {"type": "velocity", "window_seconds": 86400, "max_total": "100"},
        {"history": {"velocity": {"86400": {"count": 1, "total": "60"}}}, "amount": "41"},
        {"party": BUYER, "window_seconds": 86400, "count": 2, "total": "101", "max_total": "100"},
    ),
    (
        "document used in another deal",
        {"type": "document_reuse"},
        {"history": {"document_uses": {DOC: [{"deal_id": "3", "milestone": 0, "event": "X"}]}}},
        {
            "documents": [
                {
                    "document": DOC,
                    "uses": 1,
                    "used_in": [{"deal_id": "3", "milestone": 0, "event": "X"}],
                }
            ]
        },
    ),
    ("no document reuse", {"type": "document_reuse"}, {}, None),
    (
        "blocklisted supplier, any case",
        {"type": "blocklist", "addresses": [SUPPLIER.upper().replace("0X", "0x")]},
        {},
        {"matches": [{"role": "supplier", "address": SUPPLIER}]},
    ),
    (
        "concentration above the limit",
        {"type": "concentration", "max_share_bps": 5000, "min_exposure": "100"},
        {
            "action": "finance",
            "amount": "60",
            "history": {
                "exposure": {
                    "financier": FINANCIER,
                    "buyer": BUYER,
                    "buyer_total": "0",
                    "total": "50",
                }
            },
        },
        {
            "financier": FINANCIER,
            "buyer": BUYER,
            "buyer_exposure": "60",
            "total_exposure": "110",
            "share_bps": 5454,
            "max_share_bps": 5000,
        },
    ),
    (
        "concentration under the minimum exposure",
        {"type": "concentration", "max_share_bps": 5000, "min_exposure": "1000"},
        {
            "action": "finance",
            "history": {
                "exposure": {
                    "financier": FINANCIER,
                    "buyer": BUYER,
                    "buyer_total": "0",
                    "total": "0",
                }
            },
            "amount": "60",
        },
        None,
    ),
    (
        "overdue rate",
        {"type": "overdue_rate", "max_bps": 2500, "min_matured": 4},
        {"history": {"party_records": {SUPPLIER: {"matured": 4, "overdue": 2, "defaulted": 0}}}},
        {
            "parties": [
                {
                    "role": "supplier",
                    "address": SUPPLIER,
                    "matured": 4,
                    "overdue": 2,
                    "rate_bps": 5000,
                }
            ],
            "max_bps": 2500,
        },
    ),
    (
        "overdue rate on too small a sample",
        {"type": "overdue_rate", "max_bps": 2500, "min_matured": 5},
        {"history": {"party_records": {SUPPLIER: {"matured": 4, "overdue": 4, "defaulted": 0}}}},
        None,
    ),
    (
        "default rate of the buyer only",
        {"type": "default_rate", "max_bps": 1000, "roles": ["buyer"]},
        {
            "history": {
                "party_records": {
                    BUYER.lower(): {"matured": 10, "overdue": 0, "defaulted": 2},
                    SUPPLIER: {"matured": 10, "overdue": 0, "defaulted": 9},
                }
            }
        },
        {
            "parties": [
                {"role": "buyer", "address": BUYER, "matured": 10, "defaulted": 2, "rate_bps": 2000}
            ],
            "max_bps": 1000,
        },
    ),
]


@pytest.mark.parametrize(("name", "rule", "given", "figures"), CASES, ids=[c[0] for c in CASES])
def test_each_rule_fires_at_its_boundary_with_its_figures(
    name: str, rule: dict[str, Any], given: dict[str, Any], figures: dict[str, Any] | None
) -> None:
    rule_set = parse_rule_set(rules({"id": "r", "severity": "medium", **rule}))
    evaluation = evaluate(rule_set, inputs(**copy.deepcopy(given)))
    if figures is None:
        assert evaluation.fired == () and evaluation.outcome is Outcome.ALLOW, name
    else:
        assert [f.rule for f in evaluation.fired] == ["r"], name
        assert dict(evaluation.fired[0].figures) == figures, name
        assert evaluation.outcome is Outcome.REVIEW
    json.dumps(evaluation.to_json(), allow_nan=False)
    canonicalize(evaluation.to_json())  # no floats, no unsafe integers


def test_worst_severity_decides_and_its_rule_owner_is_responsible() -> None:
    rule_set = parse_rule_set(
        rules(
            {"id": "low", "type": "amount_above", "severity": "low", "threshold": 0},
            {
                "id": "crit",
                "type": "blocklist",
                "severity": "critical",
                "addresses": [BUYER],
                "owner": "compliance@example.com",
            },
            {"id": "med", "type": "document_reuse", "severity": "medium"},
            outcomes={"critical": "hold"},
        )
    )
    evaluation = evaluate(rule_set, inputs())
    assert evaluation.fired_ids == ("low", "crit")
    assert evaluation.severity is Severity.CRITICAL and evaluation.outcome is Outcome.HOLD
    assert evaluation.owner == "compliance@example.com"
    only_low = evaluate(
        rule_set, inputs(party=SUPPLIER, actor=SUPPLIER, parties={"buyer": SUPPLIER})
    )
    assert only_low.fired_ids == ("low",) and only_low.outcome is Outcome.ALLOW
    assert only_low.owner == "risk@example.com"


def test_rules_apply_only_to_their_actions() -> None:
    rule_set = parse_rule_set(
        rules(
            {
                "id": "a",
                "type": "amount_above",
                "severity": "high",
                "threshold": 0,
                "actions": ["release"],
            }
        )
    )
    assert evaluate(rule_set, inputs(action="fund")).fired == ()
    assert evaluate(rule_set, inputs(action="release")).outcome is Outcome.HOLD


def test_a_clearance_covering_every_fired_rule_allows() -> None:
    rule_set = parse_rule_set(
        rules(
            {"id": "big", "type": "amount_above", "severity": "high", "threshold": 0},
            {"id": "reuse", "type": "document_reuse", "severity": "high"},
        )
    )
    cleared = {"alert_id": "AL-1", "decision_id": "d", "rules": ["big"]}
    evaluation = evaluate(rule_set, inputs(history={"clearances": [cleared]}))
    assert evaluation.outcome is Outcome.ALLOW and evaluation.cleared_by == ("AL-1",)
    assert evaluation.fired_ids == ("big",)  # still recorded as fired
    reused = inputs(
        history={
            "clearances": [cleared],
            "document_uses": {DOC: [{"deal_id": "1", "milestone": 0, "event": "X"}]},
        }
    )
    assert evaluate(rule_set, reused).outcome is Outcome.HOLD  # a new rule fired


def test_evaluation_is_deterministic_and_inputs_hash_is_canonical() -> None:
    rule_set = load_rule_file(EXAMPLE)
    given = inputs(amount=str(300_000 * USDC))
    first, second = evaluate(rule_set, given), evaluate(rule_set, copy.deepcopy(given))
    assert first == second and first.outcome is Outcome.HOLD
    reordered = json.loads(json.dumps(given, sort_keys=True))
    assert inputs_sha256(reordered) == inputs_sha256(given)
    assert inputs_sha256(inputs(amount="1")) != inputs_sha256(given)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda i: i.update(schema=2), "schema"),
        (lambda i: i.update(action="steal"), "action"),
        (lambda i: i.update(amount=12), "amount"),
        (lambda i: i.update(amount="1.5"), "amount"),
        (lambda i: i["history"].update(velocity={}), "velocity figures"),
        (lambda i: i["history"].update(clearances=[{"alert_id": 1}]), "clearances"),
        (lambda i: i.pop("history"), "history"),
    ],
)
def test_malformed_inputs_are_refused(mutate: Any, message: str) -> None:
    rule_set = load_rule_file(EXAMPLE)
    given = inputs()
    mutate(given)
    with pytest.raises(RiskError, match=message):
        evaluate(rule_set, given)


def test_the_documented_rule_file_is_the_example_file() -> None:
    docs = (EXAMPLE.parents[1] / "docs" / "risk.md").read_text()
    block = docs.split("```toml\n", 1)[1].split("```", 1)[0]
    assert block == EXAMPLE.read_text()
    assert parse_rule_set(tomllib.loads(block)).hash == load_rule_file(EXAMPLE).hash
