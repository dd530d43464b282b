"""The pure parts of the one visibility rule: what a deal's party sees of a decision record
(no other party's exposure, track record, velocity, notes or other deals' records)."""

from __future__ import annotations

from chainaudit.api.visibility import milestone_of, redact_decision

BUYER = "0x1111111111111111111111111111111111111111"
FINANCIER = "0x2222222222222222222222222222222222222222"
SUPPLIER = "0x3333333333333333333333333333333333333333"

DECISION = {
    "type": "risk_decision",
    "action": "finance",
    "deal_id": "7",
    "milestone": 1,
    "outcome": "review",
    "severity": "medium",
    "owner": "risk@example.com",
    "requested_by": "key:abc",
    "fired": [
        {
            "rule": "financier-concentration",
            "severity": "medium",
            "figures": {"total_exposure": "900000000000"},
            "message": "buyer would be 8000 bps of financier exposure",
        }
    ],
    "inputs": {
        "action": "finance",
        "party": FINANCIER,
        "amount": "5",
        "parties": {"buyer": BUYER, "supplier": SUPPLIER, "financier": FINANCIER},
        "history": {
            "velocity": {"86400": {"count": 9, "total": "1"}},
            "document_uses": {"0xab": [{"deal_id": "3", "milestone": 0, "event": "X"}]},
            "exposure": {"financier": FINANCIER, "buyer": BUYER, "total": "900000000000"},
            "party_records": {
                BUYER.lower(): {"matured": 1, "overdue": 0, "defaulted": 0},
                SUPPLIER.lower(): {"matured": 5, "overdue": 3, "defaulted": 2},
                FINANCIER.lower(): {"matured": 2, "overdue": 0, "defaulted": 0},
            },
            "clearances": [{"alert_id": "AL-1", "rules": ["x"]}],
        },
    },
}


def test_a_buyer_sees_no_financier_exposure_nor_other_parties_records() -> None:
    shown = redact_decision(DECISION, BUYER)
    assert shown["redacted"] is True
    assert (shown["outcome"], shown["action"], shown["deal_id"]) == ("review", "finance", "7")
    assert shown["fired"] == [{"rule": "financier-concentration", "severity": "medium"}]
    assert "owner" not in shown and "requested_by" not in shown
    assert shown["inputs"]["history"] == {
        "party_records": {BUYER.lower(): {"matured": 1, "overdue": 0, "defaulted": 0}}
    }
    assert "900000000000" not in str(shown) and SUPPLIER.lower() not in str(
        shown["inputs"]["history"]
    )


def test_the_financier_sees_its_own_exposure_and_velocity_only() -> None:
    history = redact_decision(DECISION, FINANCIER.lower())["inputs"]["history"]
    assert history["exposure"]["financier"] == FINANCIER
    assert set(history["party_records"]) == {FINANCIER.lower()}
    assert history["velocity"] == {"86400": {"count": 9, "total": "1"}}
    assert "document_uses" not in history and "clearances" not in history


def test_alert_and_hold_records_lose_summaries_notes_and_officers() -> None:
    alert = {
        "type": "alert",
        "transition": "opened",
        "alert_id": "AL-1",
        "deal_id": "7",
        "summary": "financier 0x22 has 900,000 outstanding",
        "by": "chainaudit:risk",
        "note": "internal",
        "rules": ["financier-concentration"],
    }
    shown = redact_decision(alert, BUYER)
    assert shown == {
        "type": "alert",
        "transition": "opened",
        "alert_id": "AL-1",
        "deal_id": "7",
        "rules": ["financier-concentration"],
        "redacted": True,
    }
    hold = {"type": "hold", "deal_id": "7", "milestone": 0, "officer": FINANCIER, "note": "n"}
    assert redact_decision(hold, BUYER) == {
        "type": "hold",
        "deal_id": "7",
        "milestone": 0,
        "redacted": True,
    }


def test_the_milestone_of_decisions_actions_and_events() -> None:
    assert milestone_of({"milestone": 2}) == 2
    assert milestone_of({"args": {"milestone": "3"}}) == 3
    assert milestone_of({"deal_id": "7"}) is None
    assert milestone_of({"milestone": True}) is None
