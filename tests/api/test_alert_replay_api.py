"""``GET /v1/alerts/{id}/replay``: the decision that raised an alert, replayed from the log
over HTTP (as ``chainaudit risk replay`` does); partners may not ask."""

from __future__ import annotations

from chainaudit.risk import Outcome, RiskGate, parse_rule_set
from tests.api.conftest import Api, open_log
from tests.api.test_alerts_api import RULES, request


def test_an_alerts_decision_replays_to_the_recorded_outcome(api: Api) -> None:
    with open_log(api.settings) as log:
        gate = RiskGate(log, parse_rule_set(RULES))
        hold = gate.check(request(2_000_001, deal_id=10), at=1_800_000_000)  # big: hold
        gate.close()
    assert hold.outcome == Outcome.HOLD
    with api.client("regulator") as regulator:
        replay = regulator.get(f"/v1/alerts/{hold.alert_id}/replay")
        assert replay.status_code == 200, replay.text
        report = replay.json()
        assert report["matches"] is True and report["problems"] == []
        assert (report["recorded_outcome"], report["replayed_outcome"]) == ("hold", "hold")
        assert "big" in report["fired"]
        assert regulator.get("/v1/alerts/AL-0000000000000000/replay").status_code == 404
    with api.client("partner") as partner:
        assert partner.get(f"/v1/alerts/{hold.alert_id}/replay").status_code == 403
