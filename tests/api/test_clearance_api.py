"""Issue 13 through the API on a real Anvil: deals opened through the API are under the vault
gate's compliance policy; a direct on-chain call without a clearance is refused by the chain;
the same action through the API is evaluated, cleared and succeeds; a held action gets no
clearance; a partner signs its own transaction with the clearance the API issued."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from chainaudit.app.deploy import DEVNET_PARTIES
from chainaudit.chain.chain import Chain, broadcast, sign_call, wait_for_receipt
from chainaudit.chain.devnet import Devnet, derive_accounts
from chainaudit.chain.escrow import EscrowClient, MilestoneStatus, WithClearance
from chainaudit.core.errors import EscrowError
from tests.api.test_deals_api import AMOUNT, DealsApi, _act, _create, _h, open_deals_api
from tests.escrow_world import now


@pytest.fixture
def gated_api(tmp_path: Path, anvil: Devnet) -> Iterator[DealsApi]:
    with open_deals_api(tmp_path, anvil, gate=True) as api:
        yield api


def test_the_chain_enforces_what_the_api_clears(gated_api: DealsApi) -> None:
    api = gated_api
    chain = Chain(api.devnet.rpc_url)
    client = EscrowClient(chain, api.escrow)
    accounts = derive_accounts(api.devnet.settings.mnemonic, 10)
    buyer = Account.from_key(accounts[DEVNET_PARTIES["buyer"]].private_key)
    stranger = Account.from_key(accounts[DEVNET_PARTIES["auditor"]].private_key)

    created = _create(api)
    deal_id = created["deal"]["deal_id"]
    gate, policy = client.escrow_gate(deal_id)
    assert int(gate, 16) != 0 and policy == 1  # the API's default: a policy deal

    # funding: a direct call is refused, the API's action is evaluated, cleared and sent
    client.approve_token(buyer, created["deal"]["token"])
    with pytest.raises(EscrowError, match="EscrowGateClearanceRequired"):
        client.fund(buyer, deal_id, 0, AMOUNT)
    funded = _act(api, "buyer", deal_id, 0, "fund")
    assert funded.status_code == 200, funded.text
    assert funded.json()["risk"]["outcome"] == "allow"
    assert _act(api, "supplier", deal_id, 0, "ship", document_hash=_h("BOL")).status_code == 200
    assert _act(api, "inspector", deal_id, 0, "attest", document_hash=_h("R")).status_code == 200
    assert _act(api, "buyer", deal_id, 0, "accept").status_code == 200

    # release: a direct on-chain release without a clearance reverts ...
    with pytest.raises(EscrowError, match="EscrowGateClearanceRequired"):
        client.release(stranger, deal_id, 0)
    # ... the same action through the API is evaluated, cleared and succeeds
    released = _act(api, "supplier", deal_id, 0, "release")
    assert released.status_code == 200, released.text
    assert "MilestoneReleased" in released.json()["events"]
    assert client.deal(deal_id).milestones[0].status is MilestoneStatus.RELEASED

    # a partner signing its own transaction asks the API for the clearance first
    with api.client("buyer") as buyer_api:
        granted = buyer_api.post(
            f"/v1/deals/{deal_id}/milestones/1/clearance", json={"action": "fund", "amount": AMOUNT}
        )
        assert granted.status_code == 200, granted.text
        body = granted.json()
        assert body["risk"]["outcome"] == "allow"
        assert body["clearance"]["decision_leaf"].startswith("0x")
        encoded = bytes.fromhex(body["clearance"]["encoded"][2:])
        call = client.contract.functions.fund(deal_id, 1, AMOUNT)
        signed = sign_call(chain, buyer, WithClearance(call, encoded))  # type: ignore[arg-type]
        broadcast(chain, signed)
        assert wait_for_receipt(chain, signed.tx_hash)["status"] == 1
    assert client.deal(deal_id).milestones[1].status is MilestoneStatus.FUNDED

    # a held action gets no clearance (the example rules hold payments above 250,000 mUSDC)
    with api.client("buyer") as buyer_api:
        held = buyer_api.post(
            f"/v1/deals/{deal_id}/milestones/1/clearance",
            json={"action": "fund", "amount": 300_000 * 10**6},
        )
    assert held.status_code == 409, held.text
    assert held.json()["type"].endswith("/risk-hold") and "clearance" not in held.json()
    # and a party may only ask for the movements of its role
    with api.client("supplier") as supplier_api:
        wrong = supplier_api.post(
            f"/v1/deals/{deal_id}/milestones/1/clearance", json={"action": "fund", "amount": 1}
        )
    assert wrong.status_code == 403


def test_a_relayed_payment_without_its_clearance_is_refused_by_the_chain(
    gated_api: DealsApi,
) -> None:
    """POST /v1/transactions has no special path: it relays the partner's transaction as it
    is, and the chain refuses a policy deal's payment that carries no clearance."""
    api = gated_api
    chain = Chain(api.devnet.rpc_url)
    client = EscrowClient(chain, api.escrow)
    accounts = derive_accounts(api.devnet.settings.mnemonic, 10)
    buyer = Account.from_key(accounts[DEVNET_PARTIES["buyer"]].private_key)
    created = _create(api)
    deal_id = created["deal"]["deal_id"]
    client.approve_token(buyer, created["deal"]["token"])
    call = client.contract.functions.fund(deal_id, 0, AMOUNT)
    tx = call.build_transaction(
        {
            "from": buyer.address,
            "nonce": chain.w3.eth.get_transaction_count(buyer.address),
            "gas": 300_000,
            "chainId": chain.chain_id(),
            "maxFeePerGas": 10**10,
            "maxPriorityFeePerGas": 10**9,
        }
    )
    raw = bytes(buyer.sign_transaction(tx).raw_transaction)
    with api.client("buyer") as buyer_api:
        relayed = buyer_api.post("/v1/transactions", json={"raw_transaction": "0x" + raw.hex()})
    assert relayed.status_code == 409, relayed.text
    assert relayed.json()["error"] == "EscrowGateClearanceRequired"
    assert client.deal(deal_id).milestones[0].status is MilestoneStatus.OPEN


def test_a_financier_offered_the_claim_gets_its_finance_clearance(gated_api: DealsApi) -> None:
    """The offered financier signs its own acceptance: the clearance route reads the deal as
    an action does (an offer grants no *read* access, but does let it act), and a party the
    offer does not name still gets nothing."""
    api = gated_api
    a = api.addresses
    created = _create(api, invoices={1: _h("INV-C")})
    deal_id = created["deal"]["deal_id"]
    assert _act(api, "buyer", deal_id, 1, "fund").status_code == 200
    chain = Chain(api.devnet.rpc_url)
    offer = {
        "financier": a["financier"],
        "advance": AMOUNT // 2,
        "invoice_hash": _h("INV-C"),
        "expires_at": now(chain.w3) + 86_400,
    }
    assert _act(api, "supplier", deal_id, 1, "offer-financing", **offer).status_code == 200
    ask = {"action": "finance", "amount": AMOUNT // 2, "invoice_hash": _h("INV-C")}
    with api.client("financier") as financier:
        assert financier.get(f"/v1/deals/{deal_id}").status_code == 404  # no read access
        granted = financier.post(f"/v1/deals/{deal_id}/milestones/1/clearance", json=ask)
    assert granted.status_code == 200, granted.text
    assert granted.json()["clearance"]["encoded"].startswith("0x")
    with api.client("buyer") as buyer:
        refused = buyer.post(f"/v1/deals/{deal_id}/milestones/1/clearance", json=ask)
    assert refused.status_code == 403, refused.text
