"""``GET /v1/deals/{id}/parties``: a deal's parties by role, named from the party register,
with each party's money in the deal; a partner sees only its own withdrawable credit and
nothing of a deal it is not a party of."""

from __future__ import annotations

from tests.api.test_deals_api import AMOUNT, DealsApi, _act, _create, deals_api  # noqa: F401


def test_parties_are_named_and_their_money_adds_up(deals_api: DealsApi) -> None:  # noqa: F811
    api = deals_api
    deal_id = _create(api)["deal"]["deal_id"]
    for step, who in (("fund", "buyer"), ("ship", "supplier")):
        body = {"document_hash": "0x" + "ab" * 32} if step == "ship" else {}
        assert _act(api, who, deal_id, 0, step, **body).status_code == 200
    with api.client("auditor") as auditor:
        answer = auditor.get(f"/v1/deals/{deal_id}/parties")
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["token_decimals"] == 6
    by_role = {p["role"]: p for p in data["parties"]}
    assert by_role["buyer"]["name"] == "buyer"
    assert by_role["buyer"]["address"] == api.addresses["buyer"]
    assert by_role["buyer"]["key_ids"] and by_role["buyer"]["to_fund"] == AMOUNT  # milestone 2
    supplier = by_role["supplier"]
    assert supplier["name"] == "supplier"
    assert (supplier["in_escrow"], supplier["on_hold"], supplier["released"]) == (AMOUNT, 0, 0)
    assert supplier["credit"] == 0  # nothing released yet, so nothing to withdraw
    assert {"inspector", "arbiter"} <= set(by_role)

    with api.client("supplier") as supplier_key, api.client("stranger") as stranger:
        own = supplier_key.get(f"/v1/deals/{deal_id}/parties").json()["parties"]
        credits = {p["role"]: p["credit"] for p in own}
        assert credits["supplier"] == 0 and credits["buyer"] is None  # only its own balance
        assert stranger.get(f"/v1/deals/{deal_id}/parties").status_code == 404
