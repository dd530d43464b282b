"""``/v1/deals``: escrow deals, every party action, and each deal's audited timeline.

On-chain actions are signed by the acting partner's key: in development the service holds the
devnet's well-known keys (``anvil.env``); otherwise the partner signs the transaction itself
and ``POST /v1/transactions`` relays it as it is. The risk gate binds both alike (issue 13):
deals opened here are under the vault gate's compliance policy, so a fund, financing or
release above its threshold needs a clearance on chain; the action routes get one after the
gate allows the action, and a partner signing itself asks
``POST /v1/deals/{id}/milestones/{m}/clearance`` for the one its transaction must carry.

A partner sees only deals where its address is a party and acts only in its role there;
operators and admins have no path to deal funds (they act only as the compliance officer,
placing and lifting holds). Every action is appended to the audit log with the acting key's
id and the deal id, so it appears in the deal's trace.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Annotated, Any, Literal

import rlp
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from hexbytes import HexBytes
from pydantic import BaseModel, ConfigDict, Field
from web3 import Web3

from chainaudit.api.auth import Operator, Reader, ServicesDep, Writer, actor_of
from chainaudit.api.budget import DEAL_READ
from chainaudit.api.problems import Problem
from chainaudit.api.routes.approvals import ApprovalOut, create_request
from chainaudit.api.services import Services
from chainaudit.api.visibility import Viewer, document_of, read_scope, trusted
from chainaudit.chain.chain import SignedTx, broadcast, wait_for_receipt
from chainaudit.chain.escrow import Deal, DealParams, EscrowClient, MilestoneParams, TxResult
from chainaudit.core import provenance
from chainaudit.core.errors import ConfigError, EscrowError, RiskHoldError
from chainaudit.core.records import prepare
from chainaudit.core.wire import hex0x
from chainaudit.log.actions import now_rfc3339
from chainaudit.risk import ClearanceGrant, GuardedResult, HoldResult, holds
from chainaudit.service import integrity
from chainaudit.service.keys import ApiKey

__all__ = ["MilestoneIn", "router"]

router = APIRouter(prefix="/v1", tags=["deals"])

ADDRESS = r"^0x[0-9a-fA-F]{40}$"
HASH = r"^0x[0-9a-fA-F]{64}$"
UINT96 = 2**96 - 1


class Action(StrEnum):
    """Milestone actions, each allowed to one party of the deal (see :data:`WHO`)."""

    fund = "fund"
    ship = "ship"
    attest = "attest"
    accept = "accept"
    request_release = "request-release"
    approve_release = "approve-release"
    release = "release"
    dispute = "dispute"
    resolve = "resolve"
    dispute_timeout = "dispute-timeout"
    offer_financing = "offer-financing"
    cancel_financing = "cancel-financing"
    accept_financing = "accept-financing"
    withdraw_release_request = "withdraw-release-request"
    escalate_release = "escalate-release"
    settle = "settle"


# Which party of the deal may take each action (the contract checks it again).
WHO: dict[Action, tuple[str, ...]] = {
    Action.fund: ("buyer",),
    Action.ship: ("supplier",),
    Action.attest: ("inspector",),
    Action.accept: ("buyer",),
    Action.request_release: ("buyer", "approver"),
    Action.approve_release: ("approver",),
    Action.release: ("buyer", "supplier", "financier", "approver", "arbiter"),
    # the buyer or the payee: the supplier, or the financier once it bought the claim
    Action.dispute: ("buyer", "supplier", "financier"),
    Action.resolve: ("arbiter",),
    Action.dispute_timeout: ("buyer", "supplier", "financier", "arbiter"),
    Action.offer_financing: ("supplier",),
    Action.cancel_financing: ("supplier",),
    Action.accept_financing: ("financier",),
    Action.withdraw_release_request: ("buyer", "approver"),
    Action.escalate_release: ("supplier", "financier"),
    Action.settle: ("buyer", "supplier", "financier", "approver", "arbiter", "inspector"),
}


class MilestoneIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: int = Field(gt=0, le=UINT96, description="token minor units")
    due_date: int = Field(gt=0, lt=2**40, description="Unix seconds")
    document_hash: str = Field(pattern=HASH, description="purchase order or contract clause")
    proof_leaf: str | None = Field(default=None, pattern=HASH, description="proof-gate leaf")
    invoice_hash: str | None = Field(
        default=None, pattern=HASH, description="the invoice this milestone pays (financing)"
    )
    proof_signer: str | None = Field(
        default=None, pattern=ADDRESS, description="who must have signed the gated record"
    )


class DealCreate(BaseModel):
    """A new deal; the calling partner is the buyer."""

    model_config = ConfigDict(extra="forbid")

    supplier: str = Field(pattern=ADDRESS)
    arbiter: str = Field(pattern=ADDRESS)
    token: str | None = Field(default=None, pattern=ADDRESS, description="default: devnet coin")
    inspectors: list[str] = Field(min_length=1, max_length=6)
    inspector_threshold: int = Field(ge=1, le=6)
    inspection_window: int = Field(gt=0, le=365 * 86400)
    dispute_timeout: int = Field(gt=0, le=365 * 86400)
    default_payee_bps: int = Field(ge=0, le=10_000)
    long_stop: int = Field(gt=0, lt=2**40)
    financier: str | None = Field(default=None, pattern=ADDRESS)
    approval_threshold: int = Field(default=0, ge=0, le=UINT96)
    approvals_required: int = Field(default=0, ge=0, le=16)
    approvers: list[str] = Field(default_factory=list, max_length=16)
    milestones: list[MilestoneIn] = Field(min_length=1, max_length=16)


class ActionIn(BaseModel):
    """Arguments of a milestone action; each action reads the fields it needs."""

    model_config = ConfigDict(extra="forbid")

    amount: int | None = Field(default=None, gt=0, le=UINT96)
    document_hash: str | None = Field(default=None, pattern=HASH)
    reason_hash: str | None = Field(default=None, pattern=HASH)
    payee_bps: int | None = Field(default=None, ge=0, le=10_000)
    financier: str | None = Field(default=None, pattern=ADDRESS)
    advance: int | None = Field(default=None, gt=0, le=UINT96)
    invoice_hash: str | None = Field(default=None, pattern=HASH)
    expires_at: int | None = Field(default=None, gt=0, lt=2**40)


class ClearanceIn(BaseModel):
    """A clearance request for a transaction the partner signs itself (issue 13)."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["fund", "finance", "release"]
    amount: int | None = Field(
        default=None, gt=0, le=UINT96, description="fund: the amount; finance: the advance"
    )
    invoice_hash: str | None = Field(default=None, pattern=HASH, description="finance only")


class HoldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason_hash: str = Field(pattern=HASH, description="e.g. the leaf hash of a reason record")
    duration: int | None = Field(default=None, gt=0, le=30 * 86400, description="seconds")
    alert_id: str | None = Field(default=None, max_length=64, description="the alert it serves")


class RawTx(BaseModel):
    model_config = ConfigDict(extra="forbid")

    raw_transaction: str = Field(pattern=r"^0x([0-9a-fA-F]{2})+$", max_length=262_146)


class WithdrawIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(pattern=ADDRESS)


DealId = Annotated[int, Path(ge=1, le=2**63, description="deal id (from 1)")]
MilestoneIndex = Annotated[int, Path(ge=0, le=15, description="milestone index (from 0)")]


# -- helpers ----------------------------------------------------------------------------------


def _escrow(svc: Services) -> EscrowClient:
    if svc.escrow is None:
        raise Problem(
            503,
            "escrow-unavailable",
            "no escrow vault is deployed or configured on this chain",
            headers={"Retry-After": "30"},
        )
    return svc.escrow


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | HexBytes):
        return "0x" + bytes(value).hex()
    if isinstance(value, Enum):
        return value.name.lower()
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {name: _jsonable(getattr(value, name)) for name in value.__dataclass_fields__}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def deal_json(deal: Deal, *, token_decimals: int | None = None) -> dict[str, Any]:
    """The deal as JSON, with ``status`` summarising its milestones' states and, when known,
    the token's decimals (amounts stay integers in minor units)."""
    data: dict[str, Any] = _jsonable(deal)
    data["status"] = ", ".join(m.status.name.lower() for m in deal.milestones)
    if token_decimals is not None:
        data["token_decimals"] = token_decimals
    return data


def _roles_of(deal: Deal, address: str | None) -> set[str]:
    if address is None:
        return set()
    a = address.lower()
    roles = set()
    for role, party in (
        ("buyer", deal.buyer),
        ("supplier", deal.supplier),
        ("arbiter", deal.arbiter),
        ("financier", deal.financier),
    ):
        if party and party.lower() == a:
            roles.add(role)
    if any(i.lower() == a for i in deal.inspectors):
        roles.add("inspector")
    if any(i.lower() == a for i in deal.approvers):
        roles.add("approver")
    for m in deal.milestones:
        if m.payee.lower() == a and m.financed:
            roles.add("financier")
        if m.offer is not None and m.offer.financier.lower() == a:
            roles.add("financier")  # offered a milestone's claim: may accept or look at it
    return roles


def _read_deal(svc: Services, key: ApiKey, deal_id: int, *, acting: bool = False) -> Deal:
    """The deal, if the key may see it (404 otherwise, with no existence leak).

    A partner reads a deal it has a part in (:func:`~chainaudit.api.visibility.read_scope`:
    a financing offer grants no read access until accepted); with ``acting`` the deal is
    read for an action, and a financier offered a milestone's claim may then act on it.
    """
    client = _escrow(svc)
    if not 1 <= deal_id <= client.deal_count():
        raise Problem(404, "not-found", f"no deal {deal_id}")
    deal = client.deal(deal_id)
    if key.role == "partner":
        allowed = _roles_of(deal, key.address) if acting else _reads(deal, key)
        if not allowed:
            raise Problem(404, "not-found", f"no deal {deal_id}")  # no existence leak
    return deal


def _reads(deal: Deal, key: ApiKey) -> bool:
    """Whether a partner's key has any read access to ``deal`` (accepted financing counts,
    an offer does not)."""
    return read_scope(deal, key.address) is not False


def _signer(svc: Services, key: ApiKey) -> LocalAccount:
    if key.role != "partner" or key.address is None:
        raise Problem(
            403, "forbidden", "only partner keys act on deals; operators have no path to funds"
        )
    signer = svc.devnet_signer(key.address)
    if signer is None:
        raise Problem(
            409,
            "signature-required",
            f"this service holds no key for {key.address}: sign the transaction yourself and "
            "send it to POST /v1/transactions",
        )
    return signer


def _record(
    svc: Services,
    key: ApiKey,
    action: str,
    deal_id: int | None,
    result: TxResult | GuardedResult,
    **details: Any,
) -> None:
    payload = {
        "action": action,
        "key_id": key.key_id,
        "tx_hash": result.tx_hash,
        "block_number": result.block_number,
        **({"deal_id": deal_id} if deal_id is not None else {}),
        **details,
    }
    record = prepare(
        {
            "id": f"action-{action.replace('.', '-')}-{result.tx_hash[2:26]}",
            "kind": "transaction",
            "timestamp": now_rfc3339(),
            "actor": actor_of(key),
            "payload": payload,
        },
        submitter=provenance.API,
    )
    # The transaction is sent: a taken action id (a relayed transaction's hash is known before
    # it is sent) must not fail the request; the record goes under a derived id with an alarm.
    integrity.append_diverting(
        lambda records: svc.writer.submit(records).result(timeout=60),
        svc.reader,
        [record],
        submitter=provenance.API,
        actor=integrity.API_ACTOR,
        source="api.deal-action",
    )


def _response(result: TxResult | GuardedResult, deal: Deal | None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "tx_hash": result.tx_hash,
        "block_number": result.block_number,
        "gas_used": result.gas_used,
        "events": [e.name for e in result.events],
        "deal": deal_json(deal) if deal is not None else None,
    }
    if isinstance(result, GuardedResult):
        response["risk"] = {
            "decision_id": result.decision.record_id,
            "outcome": str(result.outcome),
            "alert_id": result.decision.alert_id,
        }
    return response


async def _run(call: Callable[[], Any]) -> Any:
    try:
        return await run_in_threadpool(call)
    except RiskHoldError as exc:
        raise Problem(
            409,
            "risk-hold",
            str(exc),
            decision_id=exc.decision_id,
            alert_id=exc.alert_id,
            hold_tx=exc.hold_tx,
            fired=list(exc.fired),
        ) from exc
    except EscrowError as exc:
        raise Problem(
            409,
            "escrow-refused",
            str(exc),
            error=exc.name,
            arguments=_jsonable(getattr(exc, "arguments", {})),
        ) from exc


def _b32(value: str | None, field: str) -> bytes:
    if value is None:
        raise Problem(
            422,
            "validation",
            f"{field} is required for this action",
            errors=[{"in": "body", "pointer": f"/{field}", "message": f"{field} is required"}],
        )
    return bytes.fromhex(value[2:])


def _need(value: int | str | None, field: str) -> Any:
    if value is None:
        raise Problem(
            422,
            "validation",
            f"{field} is required for this action",
            errors=[{"in": "body", "pointer": f"/{field}", "message": f"{field} is required"}],
        )
    return value


# -- routes -----------------------------------------------------------------------------------


@router.get("/deals")
async def list_deals(
    key: Reader,
    svc: ServicesDep,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[
        int | None,
        Query(ge=2, le=2**63, description="list the deals with a lower id (the next page)"),
    ] = None,
) -> list[dict[str, Any]]:
    """Deals, newest first, ``limit`` to a page; a ``Link: <…?before=N>; rel="next"``
    header names the next page. A partner sees only the deals it is a party of, and only
    those are read from the chain: their ids come from the party index the escrow indexer
    keeps (:func:`chainaudit.service.indexer.deals_of`), so a deal appears in a partner's list once
    the indexer has recorded its ``DealCreated`` event (``GET /v1/deals/{id}`` reads it at
    once). Each deal read costs :data:`~chainaudit.api.budget.DEAL_READ` units of the key's
    work budget (429 ``work-budget`` once it is spent)."""
    client = _escrow(svc)
    svc.budget.check(key.key_id, limit * DEAL_READ)

    def read() -> tuple[list[dict[str, Any]], int, int | None]:
        if key.role == "partner":
            ids = svc.party_deals(key.address, before=before, limit=limit + 1)
        else:
            top = client.deal_count() if before is None else min(before - 1, client.deal_count())
            ids = list(range(top, max(top - limit - 1, 0), -1))
        more = len(ids) > limit
        ids = ids[:limit]
        found: list[dict[str, Any]] = []
        for deal_id in ids:
            deal = client.deal(deal_id)
            if key.role == "partner" and not _reads(deal, key):
                continue  # the chain says otherwise than the index (e.g. not yet financed)
            found.append(deal_json(deal, token_decimals=svc.token_decimals(deal.token)))
        return found, len(ids), ids[-1] if more else None

    result, read_count, last = await _run(read)
    svc.budget.charge(key.key_id, read_count * DEAL_READ)
    if last is not None:
        response.headers["Link"] = f'</v1/deals?limit={limit}&before={last}>; rel="next"'
    return list(result)


@router.post("/deals", status_code=201)
async def create_deal(body: DealCreate, key: Writer, svc: ServicesDep) -> dict[str, Any]:
    """Open a deal with the calling partner as buyer."""
    client = _escrow(svc)
    buyer = _signer(svc, key)
    token = body.token or svc.devnet_token
    if token is None:
        raise Problem(
            422,
            "validation",
            "token is required",
            errors=[{"in": "body", "pointer": "/token", "message": "token is required"}],
        )
    params = DealParams(
        supplier=body.supplier,
        arbiter=body.arbiter,
        token=token,
        inspectors=body.inspectors,
        inspector_threshold=body.inspector_threshold,
        inspection_window=body.inspection_window,
        dispute_timeout=body.dispute_timeout,
        default_payee_bps=body.default_payee_bps,
        long_stop=body.long_stop,
        financier=body.financier,
        approval_threshold=body.approval_threshold,
        approvals_required=body.approvals_required,
        approvers=body.approvers,
        policy=await run_in_threadpool(svc.deal_policy, client),  # issue 13: gated by default
    )
    milestones = [
        MilestoneParams(
            amount=m.amount,
            due_date=m.due_date,
            document_hash=bytes.fromhex(m.document_hash[2:]),
            proof_leaf=bytes.fromhex(m.proof_leaf[2:]) if m.proof_leaf else b"\x00" * 32,
            invoice_hash=bytes.fromhex(m.invoice_hash[2:]) if m.invoice_hash else b"\x00" * 32,
            proof_signer=m.proof_signer,
        )
        for m in body.milestones
    ]
    result: GuardedResult = await _run(
        lambda: svc.guard(client).create_deal(buyer, params, milestones)
    )
    deal = await _run(lambda: client.deal(result.deal_id))
    await run_in_threadpool(_record, svc, key, "deal.create", result.deal_id, result)
    return _response(result, deal)


@router.get("/deals/{deal_id}")
async def get_deal(deal_id: DealId, key: Reader, svc: ServicesDep) -> dict[str, Any]:
    """A deal's full state: parties, terms and every milestone."""
    deal: Deal = await _run(lambda: _read_deal(svc, key, deal_id))
    decimals = await _run(lambda: svc.token_decimals(deal.token))
    return deal_json(deal, token_decimals=decimals)


def _party_roles(deal: Deal) -> list[tuple[str, str]]:
    """The deal's parties as (role, address) pairs, in the order a reader expects them: buyer,
    supplier, financier(s), inspectors, approvers, arbiter (an address may hold several
    roles; a milestone's financier is its payee once financed)."""
    pairs: list[tuple[str, str]] = [("buyer", deal.buyer), ("supplier", deal.supplier)]
    financiers = [deal.financier] if deal.financier else []
    financiers += [m.payee for m in deal.milestones if m.financed]
    pairs += [("financier", f) for f in financiers]
    pairs += [("inspector", i) for i in deal.inspectors]
    pairs += [("approver", a) for a in deal.approvers]
    pairs.append(("arbiter", deal.arbiter))
    seen: set[tuple[str, str]] = set()
    out = []
    for role, address in pairs:
        if (role, address.lower()) not in seen:
            seen.add((role, address.lower()))
            out.append((role, address))
    return out


@router.get("/deals/{deal_id}/parties")
async def deal_parties(deal_id: DealId, key: Reader, svc: ServicesDep) -> dict[str, Any]:
    """The deal's parties by role, each named from the party register (the API keys bound to
    its address: their names and ids, so a reader can name the ``key:<id>`` actors of the
    deal's records), and the money of the deal per party in the token's minor units:
    ``in_escrow`` (funded, not yet paid out, on the milestones the party is payee of),
    ``on_hold`` (of that, under an active compliance hold), ``released`` (paid to the party)
    and, for the buyer, ``to_fund`` (not yet funded).

    ``credit`` is what the party can withdraw now (``creditOf`` on chain, across all deals in
    the deal's token): shown to officers, auditors and regulators for every party, to a
    partner only for its own address (``null`` for the others). A partner reads this only for
    a deal it may read (404 otherwise, as ``GET /v1/deals/{id}``)."""
    svc.budget.check(key.key_id, DEAL_READ)
    deal: Deal = await _run(lambda: _read_deal(svc, key, deal_id))
    svc.budget.charge(key.key_id, DEAL_READ)
    keys = [k for k in await run_in_threadpool(svc.keys.list) if k.active and k.address]
    client = _escrow(svc)
    mine = (key.address or "").lower()

    credits: dict[str, int] = {}

    def credit(address: str) -> int:
        if address not in credits:
            credits[address] = client.credit_of(address, deal.token)
        return credits[address]

    def money(address: str) -> dict[str, Any]:
        a = address.lower()
        paid_to = [m for m in deal.milestones if m.payee.lower() == a]
        visible = key.role != "partner" or a == mine
        return {
            "in_escrow": sum(m.held for m in paid_to),
            "on_hold": sum(m.held for m in paid_to if m.hold is not None and m.hold.active),
            "released": sum(m.released for m in paid_to),
            "to_fund": sum(m.amount - m.funded for m in deal.milestones)
            if a == deal.buyer.lower()
            else 0,
            "credit": credit(a) if visible else None,
        }

    def build() -> list[dict[str, Any]]:
        parties = []
        for role, address in _party_roles(deal):
            named = [k for k in keys if k.address and k.address.lower() == address.lower()]
            parties.append(
                {
                    "role": role,
                    "address": address,
                    "name": named[0].name if named else None,
                    "key_ids": [k.key_id for k in named],
                    **money(address),
                }
            )
        return parties

    parties = await _run(build)
    decimals = await _run(lambda: svc.token_decimals(deal.token))
    return {
        "deal_id": deal_id,
        "token": deal.token,
        "token_decimals": decimals,
        "parties": parties,
    }


# Which party may ask for a clearance of each money movement (the chain checks the caller).
CLEARED_BY: dict[str, tuple[str, ...]] = {
    "fund": WHO[Action.fund],
    "finance": WHO[Action.accept_financing],
    "release": WHO[Action.release],
}


@router.post("/deals/{deal_id}/milestones/{milestone}/clearance")
async def clearance(
    deal_id: DealId, milestone: MilestoneIndex, body: ClearanceIn, key: Writer, svc: ServicesDep
) -> dict[str, Any]:
    """Evaluate a money movement the calling partner will sign itself, exactly as the action
    route would, and on ``allow`` (or ``review``) return the EscrowGate clearance to append to
    the transaction's call data (``clearance.encoded``); a ``hold`` gets none (409). Read as
    for an action: a financier offered the claim may ask to finance it."""
    deal: Deal = await _run(lambda: _read_deal(svc, key, deal_id, acting=True))
    if not 0 <= milestone < len(deal.milestones):
        raise Problem(404, "not-found", f"deal {deal_id} has no milestone {milestone}")
    roles = _roles_of(deal, key.address)
    allowed = CLEARED_BY[body.action]
    if key.role != "partner" or key.address is None or not roles & set(allowed):
        raise Problem(403, "forbidden", f"a {body.action} is for the deal's {' or '.join(allowed)}")
    if body.action != "release" and body.amount is None:
        _need(None, "amount")
    invoice = _b32(body.invoice_hash, "invoice_hash") if body.action == "finance" else None
    guarded = svc.guard(_escrow(svc))
    if guarded.clearances is None:
        raise Problem(
            503,
            "not-configured",
            "the vault has no EscrowGate or no clearance signer is configured",
            headers={"Retry-After": "60"},
        )
    address = key.address
    grant: ClearanceGrant = await _run(
        lambda: guarded.clearance_for(
            address,
            deal_id,
            milestone,
            body.action,
            amount=body.amount,
            invoice_hash=invoice,
            requested_by=f"key:{key.key_id}",
        )
    )
    return {
        "clearance": grant.clearance.as_json(),
        "risk": {
            "decision_id": grant.decision.record_id,
            "outcome": str(grant.decision.outcome),
            "alert_id": grant.decision.alert_id,
        },
    }


@router.post("/deals/{deal_id}/milestones/{milestone}/{action}")
async def milestone_action(
    deal_id: DealId,
    milestone: MilestoneIndex,
    action: Action,
    key: Writer,
    svc: ServicesDep,
    body: ActionIn | None = None,
) -> dict[str, Any]:
    """Take ``action`` on a milestone as the calling partner, in its role in the deal."""
    args = body or ActionIn()
    deal: Deal = await _run(lambda: _read_deal(svc, key, deal_id, acting=True))
    if not 0 <= milestone < len(deal.milestones):
        raise Problem(404, "not-found", f"deal {deal_id} has no milestone {milestone}")
    signer = _signer(svc, key)
    roles = _roles_of(deal, key.address)
    allowed = WHO[action]
    if not roles & set(allowed):
        raise Problem(
            403,
            "forbidden",
            f"{action.value} is for the deal's {' or '.join(allowed)}; you are "
            f"{', '.join(sorted(roles)) or 'not a party'}",
        )
    client = _escrow(svc)
    guarded = svc.guard(client)
    calls: dict[Action, Callable[[], TxResult | GuardedResult]] = {
        Action.fund: lambda: _fund(client, guarded, signer, deal, milestone, args),
        Action.ship: lambda: client.mark_shipped(
            signer, deal_id, milestone, _b32(args.document_hash, "document_hash")
        ),
        Action.attest: lambda: client.attest(
            signer, deal_id, milestone, _b32(args.document_hash, "document_hash")
        ),
        Action.accept: lambda: client.accept(signer, deal_id, milestone),
        Action.request_release: lambda: guarded.request_release(signer, deal_id, milestone),
        Action.approve_release: lambda: guarded.approve_release(signer, deal_id, milestone),
        Action.release: lambda: guarded.release(signer, deal_id, milestone),
        Action.dispute: lambda: client.open_dispute(
            signer, deal_id, milestone, _b32(args.reason_hash, "reason_hash")
        ),
        Action.resolve: lambda: client.resolve_dispute(
            signer,
            deal_id,
            milestone,
            _need(args.payee_bps, "payee_bps"),
            _b32(args.reason_hash, "reason_hash"),
        ),
        Action.dispute_timeout: lambda: client.apply_dispute_timeout(signer, deal_id, milestone),
        Action.offer_financing: lambda: client.offer_financing(
            signer,
            deal_id,
            milestone,
            financier=_need(args.financier, "financier"),
            advance=_need(args.advance, "advance"),
            invoice_hash=_b32(args.invoice_hash, "invoice_hash"),
            expires_at=_need(args.expires_at, "expires_at"),
        ),
        Action.cancel_financing: lambda: client.cancel_financing_offer(signer, deal_id, milestone),
        Action.accept_financing: lambda: _finance(client, guarded, signer, deal, milestone, args),
        Action.withdraw_release_request: lambda: client.withdraw_release_request(
            signer, deal_id, milestone
        ),
        Action.escalate_release: lambda: client.escalate_release(signer, deal_id, milestone),
        Action.settle: lambda: client.settle_after_long_stop(signer, deal_id, milestone),
    }
    result: TxResult | GuardedResult = await _run(calls[action])
    after = await _run(lambda: client.deal(deal_id))
    await run_in_threadpool(
        _record, svc, key, f"deal.{action.value}", deal_id, result, milestone=milestone
    )
    return _response(result, after)


def _ensure_allowance(client: EscrowClient, signer: LocalAccount, token: str, amount: int) -> None:
    """Let the vault pull ``amount`` of ``token`` from the signer (it pays by pulling)."""
    if client.allowance(token, signer.address) < amount:
        client.approve_token(signer, token)


def _fund(
    client: EscrowClient,
    guarded: Any,
    signer: LocalAccount,
    deal: Deal,
    milestone: int,
    args: ActionIn,
) -> TxResult:
    amount = args.amount or deal.milestones[milestone].amount - deal.milestones[milestone].funded
    _ensure_allowance(client, signer, deal.token, amount)
    result: TxResult = guarded.fund(signer, deal.deal_id, milestone, amount)
    return result


def _finance(
    client: EscrowClient,
    guarded: Any,
    signer: LocalAccount,
    deal: Deal,
    milestone: int,
    args: ActionIn,
) -> TxResult:
    advance = _need(args.advance, "advance")
    _ensure_allowance(client, signer, deal.token, advance)
    result: TxResult = guarded.accept_financing(
        signer,
        deal.deal_id,
        milestone,
        advance=advance,
        invoice_hash=_b32(args.invoice_hash, "invoice_hash"),
    )
    return result


@router.post("/deals/{deal_id}/reclaim")
async def reclaim(deal_id: DealId, key: Writer, svc: ServicesDep) -> dict[str, Any]:
    """After the long-stop date the buyer reclaims unreleased, undisputed funds."""
    deal: Deal = await _run(lambda: _read_deal(svc, key, deal_id, acting=True))
    signer = _signer(svc, key)
    if "buyer" not in _roles_of(deal, key.address):
        raise Problem(403, "forbidden", "only the deal's buyer reclaims after the long stop")
    client = _escrow(svc)
    result: TxResult = await _run(
        lambda: svc.guard(client).reclaim_after_long_stop(signer, deal_id)
    )
    after = await _run(lambda: client.deal(deal_id))
    await run_in_threadpool(_record, svc, key, "deal.reclaim", deal_id, result)
    return _response(result, after)


@router.post(
    "/deals/{deal_id}/milestones/{milestone}/hold/{verb}",
    responses={202: {"model": ApprovalOut, "description": "lift or shorten: request recorded"}},
)
async def compliance_hold(
    deal_id: DealId,
    milestone: MilestoneIndex,
    verb: Annotated[str, Path(pattern=r"^(place|renew|lift)$")],
    body: HoldIn,
    key: Operator,
    svc: ServicesDep,
) -> Any:
    """Place, renew or lift a compliance hold, signed with the calling officer's own on-chain
    account (the address bound to its key, holding ``COMPLIANCE_ROLE``).

    Placing, and renewing to end later, act at once. Lifting, and renewing to end sooner
    than the hold does now, free money: they answer 202 with a maker-checker request
    (``hold.lift`` / ``hold.shorten``) that a second officer approves."""
    deal: Deal = await _run(lambda: _read_deal(svc, key, deal_id))
    if not 0 <= milestone < len(deal.milestones):
        raise Problem(404, "not-found", f"deal {deal_id} has no milestone {milestone}")
    client = _escrow(svc)
    hold = deal.milestones[milestone].hold
    duration = body.duration or 7 * 86_400
    active = hold is not None and hold.active
    shortens = (
        verb == "renew" and active and deal.timestamp + duration < (hold.until if hold else 0)
    )
    if verb == "lift" or shortens:
        params: dict[str, Any] = {
            "deal_id": deal_id,
            "milestone": milestone,
            "reason_hash": body.reason_hash,
        }
        if verb == "lift":
            params |= {} if body.alert_id is None else {"alert_id": body.alert_id}
        else:
            params["duration"] = duration
        requested = await create_request(
            svc, key, "hold.lift" if verb == "lift" else "hold.shorten", params, None
        )
        return JSONResponse(status_code=202, content=requested.model_dump())
    try:
        officer = svc.officer_account(key)
    except ConfigError as exc:
        raise Problem(409, "officer-account-required", str(exc)) from exc
    reason = bytes.fromhex(body.reason_hash[2:])
    by = actor_of(key)

    def act() -> HoldResult:
        log = svc.reader()
        if verb == "place":
            return holds.place_hold(
                log, client, officer, deal_id, milestone, reason_hash=reason, by=by,
                duration=duration, alert_id=body.alert_id,
            )  # fmt: skip
        return holds.renew_hold(
            log, client, officer, deal_id, milestone, reason_hash=reason, by=by,
            duration=duration, alert_id=body.alert_id,
        )  # fmt: skip

    held: HoldResult = await _run(act)
    result = held.tx
    after = await _run(lambda: client.deal(deal_id))
    await run_in_threadpool(
        _record,
        svc,
        key,
        f"hold.{verb}",
        deal_id,
        result,
        milestone=milestone,
        reason_hash=body.reason_hash,
        officer=officer.address,
    )
    return _response(result, after)


@router.post("/withdrawals")
async def withdraw(body: WithdrawIn, key: Writer, svc: ServicesDep) -> dict[str, Any]:
    """Withdraw the calling partner's credited balance of ``token``."""
    client = _escrow(svc)
    signer = _signer(svc, key)
    result: TxResult = await _run(lambda: client.withdraw(signer, body.token))
    await run_in_threadpool(_record, svc, key, "withdraw", None, result, token=body.token)
    return _response(result, None)


@router.post("/transactions")
async def relay(body: RawTx, key: Writer, svc: ServicesDep) -> dict[str, Any]:
    """Relay a transaction the partner signed itself (to the escrow vault, from its address),
    as it is: a money movement of a policy deal carries its clearance (see ``.../clearance``)."""
    client = _escrow(svc)
    if key.role != "partner" or key.address is None:
        raise Problem(403, "forbidden", "only partners relay their own signed transactions")
    raw = bytes.fromhex(body.raw_transaction[2:])
    try:
        sender = Account.recover_transaction(raw)
        to, _ = _decode_tx(raw)
    except (ValueError, TypeError, KeyError, IndexError, rlp.exceptions.RLPException) as exc:
        raise Problem(422, "invalid-transaction", f"not a signed transaction: {exc}") from exc
    if sender.lower() != key.address.lower():
        raise Problem(
            403, "forbidden", f"the transaction is signed by {sender}, not by {key.address}"
        )
    if to.lower() != client.address.lower():
        raise Problem(403, "forbidden", "only transactions to the escrow vault are relayed")
    tx = SignedTx(bytes(Web3.keccak(raw)), raw, -1)

    def send() -> TxResult:
        broadcast(svc.chain, tx)
        wait_for_receipt(svc.chain, tx.tx_hash)
        return client.result(tx.tx_hash)

    # No special path (issue 13): the chain checks the clearance of a policy deal's money
    # movement, whoever sends the transaction.
    result: TxResult = await _run(send)
    deal_id = next((int(e.args["dealId"]) for e in result.events if "dealId" in e.args), None)
    await run_in_threadpool(_record, svc, key, "relay", deal_id, result)
    return _response(result, None)


# Position of ``to`` in each transaction type's RLP list (EIP-2718 envelopes; legacy = None).
_TO_FIELD = {None: 3, 1: 4, 2: 5, 3: 5, 4: 5}


def _decode_tx(raw: bytes) -> tuple[str, bytes]:
    """The ``to`` address and the data of a signed transaction (legacy or EIP-2718 typed);
    in every type the data follows ``to`` and the value."""
    kind = raw[0] if raw and raw[0] <= 0x7F else None
    if kind not in _TO_FIELD:
        raise ValueError(f"unknown transaction type {kind}")
    fields = rlp.decode(raw[1:] if kind is not None else raw)
    to = fields[_TO_FIELD[kind]]
    if not to:
        raise ValueError("the transaction creates a contract")
    return Web3.to_checksum_address(bytes(to)), bytes(fields[_TO_FIELD[kind] + 2])


@router.get("/deals/{deal_id}/trace")
async def trace(deal_id: DealId, key: Reader, svc: ServicesDep) -> dict[str, Any]:
    """The deal's whole timeline: indexed on-chain events and off-chain records (decisions,
    actions) in log order, each with its leaf index, proof status and anchor transaction.

    Each record is shown as ``GET /v1/records/{id}`` shows it to the key
    (:mod:`chainaudit.api.visibility`: a partner sees what concerns it, decisions redacted,
    and nothing of a deal it was merely offered financing on); a record of a reserved kind
    whose submitter was not entitled to write it is never on the timeline. Each record on
    the deal's index costs a unit of the key's work budget, the deal read
    :data:`~chainaudit.api.budget.DEAL_READ` (429 ``work-budget`` once it is spent)."""
    svc.budget.check(key.key_id, DEAL_READ)
    await _run(lambda: _read_deal(svc, key, deal_id))
    result, examined = await run_in_threadpool(_trace, svc, key, deal_id)
    svc.budget.charge(key.key_id, DEAL_READ + examined)
    return result


def _trace(svc: Services, key: ApiKey, deal_id: int) -> tuple[dict[str, Any], int]:
    """The timeline as :func:`trace` returns it, and how many records were examined."""
    log, index = svc.indexed()  # the deal's timeline: the record index, caught up
    viewer = Viewer(svc, key)
    anchors = sorted(
        (a for a in svc.anchor_book().all() if a.status in ("confirmed", "final")),
        key=lambda a: a.tree_size,
    )
    final_size = max((a.tree_size for a in anchors if a.status == "final"), default=0)
    out = []
    entries = log.entries_at(index.deal_indexes(str(deal_id)))
    for entry in entries:
        stored = document_of(entry)
        if stored is not None and not trusted(stored):
            continue  # forged: `chainaudit reconcile` reports it, no reader uses it
        view = viewer.view(entry)
        if view is None:
            continue
        document = view.document or {}
        payload = document.get("payload", {})
        covering = next((a for a in anchors if a.tree_size > entry.index), None)
        status = "final" if entry.index < final_size else "anchored" if covering else "pending"
        out.append(
            {
                "record_id": entry.record_id,
                "leaf_index": entry.index,
                "leaf_hash": hex0x(entry.leaf_hash),
                "kind": entry.kind,
                "actor": entry.actor,
                "timestamp": datetime.fromtimestamp(entry.timestamp_ms / 1000, UTC)
                .isoformat(timespec="seconds")
                .replace("+00:00", "Z"),
                "event": payload.get("event") or payload.get("action") or payload.get("outcome"),
                "tx_hash": payload.get("tx_hash"),
                "proof_status": status,
                "anchor_tx": "0x" + covering.tx_hash.hex()
                if covering and covering.tx_hash
                else None,
                "checkpoint_seq": covering.seq if covering else None,
                "payload": payload,
                "redacted": view.redacted,
                "masked": view.masked,
            }
        )
    svc.reads.note(key, "trace", str(deal_id), count=len(out))
    return {"deal_id": deal_id, "entries": out}, len(entries) + viewer.deals_read * DEAL_READ
