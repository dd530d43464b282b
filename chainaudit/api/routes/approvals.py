"""``/v1/approvals``: maker-checker requests for the controlled actions (:mod:`chainaudit.
approvals`).

An officer (admin or operator key) requests an action — or calls its dedicated endpoint
(clearing an alert, lifting or shortening a hold, creating an admin, operator or partner key),
which answers ``202`` with the request it recorded; a **different** officer approves it, and
the action then runs with the approver's authority (a hold is signed with the approver's own
on-chain account). Each step is an ``approval:`` record. Auditors and regulators read requests;
partners see none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from chainaudit.api.auth import Principal, ServicesDep, require
from chainaudit.api.problems import Problem
from chainaudit.api.services import Services
from chainaudit.app import controls
from chainaudit.core.errors import (
    ChainauditError,
    ConfigError,
    EscrowError,
    InputError,
    NotFoundError,
    RiskError,
)
from chainaudit.risk.rules import RuleSet
from chainaudit.service import approvals
from chainaudit.service.erasure import ErasureError
from chainaudit.service.keys import ApiKey

__all__ = ["ApprovalOut", "create_request", "router"]

router = APIRouter(prefix="/v1/approvals", tags=["approvals"])

ApprovalReader = Annotated[ApiKey, Depends(require("admin", "operator", "auditor", "regulator"))]
ApprovalId = Annotated[str, Path(pattern=r"^APR-[0-9a-f]{16}$", examples=["APR-0123456789abcdef"])]


class ApprovalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str = Field(description=", ".join(approvals.ACTIONS))
    params: dict[str, Any] = Field(default_factory=dict, description="the action's parameters")
    note: str | None = Field(default=None, max_length=2_000)


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=2_000)


class ApprovalOut(BaseModel):
    """A maker-checker request and where it stands."""

    approval_id: str
    action: str
    params: dict[str, Any]
    requested_by: str
    requested_ms: int
    note: str | None
    status: Literal["pending", "approved", "rejected", "executed", "failed", "expired"]
    decided_by: str | None
    decided_ms: int | None
    decision_note: str | None
    result: dict[str, Any] | None
    error: str | None
    records: list[str] = Field(description="the request's step records, in order")
    token: str | None = Field(
        default=None, description="keys.create only: the new key's token, shown once"
    )


class ApprovalPage(BaseModel):
    items: list[ApprovalOut]


def out(approval: approvals.Approval, token: str | None = None) -> ApprovalOut:
    return ApprovalOut(**approval.to_json(), token=token)


def _problem(exc: ChainauditError) -> Problem:
    if isinstance(exc, approvals.ApprovalError):
        slug = {403: "forbidden", 409: "approval-state", 422: "validation"}.get(
            exc.status, "approval"
        )
        return Problem(exc.status, slug, str(exc))
    if isinstance(exc, NotFoundError):
        return Problem(404, "not-found", str(exc))
    if isinstance(exc, ErasureError):
        return Problem(exc.status, "erasure-refused", str(exc))
    if isinstance(exc, EscrowError):
        return Problem(409, "escrow-refused", str(exc), error=exc.name)
    if isinstance(exc, ConfigError):
        return Problem(503, "not-configured", str(exc), headers={"Retry-After": "60"})
    if isinstance(exc, RiskError | InputError):
        return Problem(409, "approval-failed", str(exc))
    return Problem(500, "internal", str(exc))


async def _guarded(call: Callable[[], Any]) -> Any:
    try:
        return await run_in_threadpool(call)
    except ChainauditError as exc:
        raise _problem(exc) from exc


def _append(svc: Services) -> approvals.Append:
    return lambda records: svc.writer.submit(records).result()


async def create_request(
    svc: Services, key: ApiKey, action: str, params: dict[str, Any], note: str | None
) -> ApprovalOut:
    """Record ``key``'s request for ``action`` (the dedicated endpoints call this too)."""

    def run() -> approvals.Approval:
        maker = approvals.Officer.of_key(key)
        approvals.check_maker(action, maker)
        checked = controls.check_params(action, params)
        on_chain = ("hold.lift", "hold.shorten", "escrow.pause", "escrow.unpause")
        if action in on_chain and svc.escrow is None:
            raise approvals.ApprovalError("no escrow vault is configured here", status=503)
        return approvals.request(_append(svc), action, checked, maker, note)

    return out(await _guarded(run))


def _on_rules(svc: Services) -> Callable[[RuleSet], None]:
    def switch(rule_set: RuleSet) -> None:
        guarded = svc.guarded
        if guarded is not None:
            guarded.gate.use(rule_set)

    return switch


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApprovalOut)
async def request_approval(body: ApprovalIn, key: Principal, svc: ServicesDep) -> ApprovalOut:
    """Request a controlled action; a second officer approves it."""
    return await create_request(svc, key, body.action, body.params, body.note)


@router.get("", response_model=ApprovalPage)
async def list_pending(key: ApprovalReader, svc: ServicesDep) -> ApprovalPage:
    """The requests awaiting a decision, oldest first."""
    found = await _guarded(lambda: approvals.pending(svc.reader()))
    return ApprovalPage(items=[out(a) for a in found])


@router.get("/{approval_id}", response_model=ApprovalOut)
async def get_approval(
    approval_id: ApprovalId, key: ApprovalReader, svc: ServicesDep
) -> ApprovalOut:
    """One request, with its decision and outcome."""
    return out(await _guarded(lambda: approvals.load(svc.reader(), approval_id)))


@router.post("/{approval_id}/approve", response_model=ApprovalOut)
async def approve(
    request: Request,
    approval_id: ApprovalId,
    key: Principal,
    svc: ServicesDep,
    body: DecisionIn | None = None,
) -> ApprovalOut:
    """Approve a pending request as a second officer and run it (403 for the requester)."""
    note = body.note if body is not None else None

    def run() -> tuple[approvals.Approval, str | None]:
        checker = approvals.Officer.of_key(key)
        log = svc.reader()
        ctx = controls.Context(
            log=log,
            settings=svc.settings,
            checker=checker,
            escrow=lambda: _escrow(svc),
            keys=svc.keys,
            on_rules=_on_rules(svc),
            on_key_change=svc.forget_key,
        )
        done = approvals.approve(
            log,
            _append(svc),
            approval_id,
            checker,
            lambda approval: controls.execute(ctx, approval),
            note,
        )
        return done, ctx.secrets.get("token")

    done, token = await _guarded(run)
    return out(done, token)


@router.post("/{approval_id}/reject", response_model=ApprovalOut)
async def reject(
    approval_id: ApprovalId, key: Principal, svc: ServicesDep, body: DecisionIn | None = None
) -> ApprovalOut:
    """Reject a pending request as a second officer."""
    note = body.note if body is not None else None
    return out(
        await _guarded(
            lambda: approvals.reject(
                svc.reader(), _append(svc), approval_id, approvals.Officer.of_key(key), note
            )
        )
    )


def _escrow(svc: Services) -> Any:
    if svc.escrow is None:
        raise approvals.ApprovalError("no escrow vault is configured here", status=503)
    return svc.escrow
