"""``POST /v1/records/{record_id}/erasure``: request the erasure of a record's content.

Erasure is a two-officer action (``record.erase``, :mod:`chainaudit.service.approvals`): an officer
(admin or operator key) requests it here with a reason and a legal basis and gets ``202`` with
the request; a **different** officer approves it at ``POST /v1/approvals/{id}/approve``, which
erases the content (:func:`chainaudit.service.erasure.erase`) and appends the erasure record naming
both. The record must exist, still have its content and not be one the service writes itself.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from chainaudit.api.auth import Operator, ServicesDep
from chainaudit.api.problems import Problem
from chainaudit.api.routes.approvals import ApprovalOut, create_request
from chainaudit.core.errors import NotFoundError
from chainaudit.service import erasure

__all__ = ["router"]

router = APIRouter(prefix="/v1/records", tags=["records"])


class ErasureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=erasure.MAX_REASON, description="why")
    basis: str = Field(
        min_length=1,
        max_length=erasure.MAX_BASIS,
        description="the legal basis, e.g. 'GDPR Art. 17(1)(a)' or 'PIPL Art. 47'",
    )
    note: str | None = Field(default=None, max_length=2_000)


RecordId = Annotated[str, Path(min_length=1, max_length=128)]


@router.post(
    "/{record_id:path}/erasure",
    status_code=202,
    response_model=ApprovalOut,
    responses={
        404: {"description": "no such record"},
        409: {"description": "already erased"},
        422: {"description": "a service record, or a bad reason or basis"},
    },
)
async def request_erasure(
    record_id: RecordId, body: ErasureIn, key: Operator, svc: ServicesDep
) -> JSONResponse:
    """Request the erasure of a record's content; a second officer approves it."""

    def check() -> None:
        try:
            entry = svc.reader().entry(record_id)
        except NotFoundError as exc:
            raise Problem(404, "not-found", str(exc)) from exc
        try:
            erasure.check_erasable(entry)
        except erasure.ErasureError as exc:
            slug = "already-erased" if exc.status == 409 else "not-erasable"
            raise Problem(exc.status, slug, str(exc)) from exc

    await run_in_threadpool(check)
    params = {"record_id": record_id, "reason": body.reason, "basis": body.basis}
    requested = await create_request(svc, key, "record.erase", params, body.note)
    return JSONResponse(status_code=202, content=requested.model_dump())
