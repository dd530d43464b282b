"""``/v1/alerts``: the risk gate's alerts — list, read, acknowledge, resolve.

A ``review`` or ``hold`` decision raises an alert (severity, responsible owner, status
``open`` → ``acknowledged`` → ``resolved``). Admins, operators, auditors and regulators read
them; admins and operators acknowledge and resolve them, each transition appended to the log
as a ``decision`` record with the acting key. Resolving says whether the risk was
``cleared`` (the same action may proceed: the gate then allows it) or ``confirmed``.
Clearing needs two officers: ``resolve`` with ``cleared`` answers ``202`` with the recorded
request (action ``alert.clear``), which a different officer approves at
``POST /v1/approvals/{id}/approve``. Partners do not see alerts.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from chainaudit.api.auth import Operator, ServicesDep, actor_of, require
from chainaudit.api.problems import Problem
from chainaudit.api.routes.approvals import ApprovalOut, create_request
from chainaudit.api.services import Services
from chainaudit.core.errors import NotFoundError, RiskError
from chainaudit.risk.book import Alert, RiskBook
from chainaudit.risk.decisions import alert_transition_record, replay_decision
from chainaudit.service.keys import ApiKey

__all__ = ["router"]

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])

AlertReader = Annotated[ApiKey, Depends(require("admin", "operator", "auditor", "regulator"))]
AlertId = Annotated[str, Path(pattern=r"^AL-[0-9a-f]{16}$", examples=["AL-0123456789abcdef"])]


class AlertOut(BaseModel):
    """An alert and where it stands; ``records`` are its decision records, in order."""

    alert_id: str
    decision_id: str = Field(description="the risk decision record that raised it")
    action: str
    deal_id: str | None
    milestone: int | None
    severity: str
    outcome: str = Field(description="review (the action was sent) or hold (it was not)")
    owner: str = Field(description="who is responsible for the rule that fired")
    rules: list[str]
    summary: str
    status: Literal["open", "acknowledged", "resolved"]
    resolution: Literal["cleared", "confirmed"] | None
    note: str | None
    opened_ms: int
    updated_ms: int
    acknowledged_by: str | None
    acknowledged_ms: int | None
    resolved_by: str | None
    resolved_ms: int | None
    records: list[str]


class AlertPage(BaseModel):
    items: list[AlertOut]


class AcknowledgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=2_000)


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: Literal["cleared", "confirmed"] = Field(
        description="cleared: the same action may proceed; confirmed: it stays blocked"
    )
    note: str | None = Field(default=None, max_length=2_000)


class TransitionOut(BaseModel):
    record_id: str = Field(description="the decision record of this transition")
    alert: AlertOut


def _book(request: Request, svc: Services) -> RiskBook:
    """The app's risk tables, synced with the log."""
    book: RiskBook | None = getattr(request.app.state, "risk_book", None)
    if book is None:
        book = RiskBook(svc.log_path, database_url=svc.settings.log_database_url)
        request.app.state.risk_book = book
    book.sync(svc.reader())
    return book


def _out(alert: Alert) -> AlertOut:
    return AlertOut.model_validate(alert.to_json())


@router.get("", response_model=AlertPage)
async def list_alerts(
    request: Request,
    key: AlertReader,
    svc: ServicesDep,
    status: Annotated[Literal["open", "acknowledged", "resolved"] | None, Query()] = None,
    deal_id: Annotated[str | None, Query(pattern=r"^[0-9]{1,78}$")] = None,
    limit: Annotated[int, Query(ge=1, le=1_000)] = 100,
) -> AlertPage:
    """Alerts, newest first, by status and deal."""
    alerts = await run_in_threadpool(
        lambda: _book(request, svc).alerts(status=status, deal_id=deal_id, limit=limit)
    )
    return AlertPage(items=[_out(a) for a in alerts])


@router.get("/{alert_id}", response_model=AlertOut)
async def get_alert(
    request: Request, alert_id: AlertId, key: AlertReader, svc: ServicesDep
) -> AlertOut:
    """One alert."""
    try:
        return _out(await run_in_threadpool(lambda: _book(request, svc).alert(alert_id)))
    except NotFoundError as exc:
        raise Problem(404, "not-found", str(exc)) from exc


class ReplayOut(BaseModel):
    """:func:`chainaudit.risk.decisions.replay_decision`'s report on the alert's decision."""

    record_id: str
    matches: bool
    recorded_outcome: str | None
    replayed_outcome: str | None
    rule_set_hash: str | None
    fired: list[str]
    problems: list[str]


@router.get("/{alert_id}/replay", response_model=ReplayOut)
async def replay_alert_decision(
    request: Request, alert_id: AlertId, key: AlertReader, svc: ServicesDep
) -> ReplayOut:
    """Replay the risk decision that raised the alert: its inputs evaluated again with the
    rule set its hash names, compared with what was recorded (``chainaudit risk replay``).
    ``matches`` is false, with the ``problems`` named, when the record was altered, written
    by someone else than the risk service, or evaluates otherwise today."""

    def run() -> ReplayOut:
        book = _book(request, svc)
        alert = book.alert(alert_id)
        report = replay_decision(svc.reader(), book, alert.decision_id)
        return ReplayOut.model_validate(report.to_json())

    try:
        return await run_in_threadpool(run)
    except NotFoundError as exc:
        raise Problem(404, "not-found", str(exc)) from exc
    except RiskError as exc:
        raise Problem(409, "not-replayable", str(exc)) from exc


async def _transition(
    request: Request,
    svc: Services,
    key: ApiKey,
    alert_id: str,
    transition: str,
    note: str | None,
    resolution: str | None,
) -> TransitionOut:
    book = await run_in_threadpool(_book, request, svc)
    try:
        record = await run_in_threadpool(
            lambda: alert_transition_record(
                book, alert_id, transition, by=actor_of(key), note=note, resolution=resolution
            )
        )
    except NotFoundError as exc:
        raise Problem(404, "not-found", str(exc)) from exc
    except RiskError as exc:
        raise Problem(409, "alert-transition", str(exc)) from exc
    await svc.writer.append([record])
    await run_in_threadpool(lambda: book.sync(svc.reader()))
    alert = await run_in_threadpool(book.alert, alert_id)
    return TransitionOut(record_id=record.record_id, alert=_out(alert))


@router.post("/{alert_id}/acknowledge", response_model=TransitionOut)
async def acknowledge_alert(
    request: Request,
    alert_id: AlertId,
    key: Operator,
    svc: ServicesDep,
    body: AcknowledgeIn | None = None,
) -> TransitionOut:
    """Acknowledge an open alert (409 otherwise)."""
    note = body.note if body is not None else None
    return await _transition(request, svc, key, alert_id, "acknowledged", note, None)


@router.post(
    "/{alert_id}/resolve",
    response_model=TransitionOut,
    responses={202: {"model": ApprovalOut, "description": "clearing: the request recorded"}},
)
async def resolve_alert(
    request: Request, alert_id: AlertId, body: ResolveIn, key: Operator, svc: ServicesDep
) -> TransitionOut | JSONResponse:
    """Resolve an open or acknowledged alert (409 when resolved): ``confirmed`` at once;
    ``cleared`` is requested (202) and takes effect when a second officer approves it."""
    if body.resolution == "cleared":
        try:
            alert = await run_in_threadpool(lambda: _book(request, svc).alert(alert_id))
        except NotFoundError as exc:
            raise Problem(404, "not-found", str(exc)) from exc
        if alert.status == "resolved":
            raise Problem(409, "alert-transition", f"alert {alert_id} is resolved already")
        params = {"alert_id": alert_id} | ({} if body.note is None else {"note": body.note})
        requested = await create_request(svc, key, "alert.clear", params, body.note)
        return JSONResponse(status_code=202, content=requested.model_dump())
    return await _transition(request, svc, key, alert_id, "resolved", body.note, body.resolution)
