"""``/v1/statements/{address}``: a party's statement — every movement of its money in the
escrow, each with the record that proves it and its proof status — as JSON or CSV.

The same statement as ``chainaudit statement`` (:mod:`chainaudit.service.statements`). A partner key
reads only the statement of its own address, and of it only the lines whose records it may
see (:mod:`chainaudit.api.visibility`, the rule of ``GET /v1/records/{id}``); admins,
operators, auditors and regulators read any. Lines come only from records the indexer wrote.
An embedded bundle of a record whose personal fields a key sees masked carries no record
(``withheld``, :mod:`chainaudit.service.masking`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from chainaudit.api.auth import Reader, ServicesDep
from chainaudit.api.problems import Problem
from chainaudit.api.services import Services
from chainaudit.api.visibility import Viewer
from chainaudit.core.errors import NotFoundError
from chainaudit.service import masking
from chainaudit.service.keys import ApiKey
from chainaudit.service.statements import build_statement

__all__ = ["router"]

router = APIRouter(prefix="/v1/statements", tags=["statements"])

AddressPath = Annotated[
    str,
    Path(
        pattern=r"^0x[0-9a-fA-F]{40}$",
        examples=["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"],
    ),
]


def _statement(svc: Services, key: ApiKey, address: str, bundles: bool) -> Any:
    log = svc.reader()
    viewer = Viewer(svc, key)

    def shown(record_id: str) -> bool:
        try:
            return viewer.view(log.entry(record_id)) is not None
        except NotFoundError:
            return False

    def withheld(record_id: str) -> str | None:
        try:
            view = viewer.view(log.entry(record_id))
        except NotFoundError:
            return None
        return masking.WITHHELD_REASON if view is not None and view.masked else None

    return build_statement(
        log,
        svc.anchor_book(),
        address,
        bundles=bundles,
        shown=None if viewer.sees_everything else shown,
        events=svc.events,
        withheld=withheld if viewer.masks else None,
    )


@router.get(
    "/{address}",
    responses={
        200: {
            "description": "the statement (JSON by default, CSV with format=csv)",
            "content": {"application/json": {}, "text/csv": {"schema": {"type": "string"}}},
        }
    },
)
async def get_statement(
    address: AddressPath,
    key: Reader,
    svc: ServicesDep,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
    bundles: Annotated[
        bool, Query(description="JSON: embed each anchored line's proof bundle")
    ] = False,
) -> Response:
    """Every movement of ``address``'s money with its record id, leaf index and proof status
    (``pending``, ``anchored``, ``final``), and totals per token."""
    if key.role == "partner" and (key.address or "").lower() != address.lower():
        raise Problem(403, "forbidden", "a partner key reads only its own address's statement")
    statement = await run_in_threadpool(_statement, svc, key, address, bundles)
    svc.reads.note(key, "statement", address, format=format)
    if format == "csv":
        name = f"statement-{address.lower()}.csv"
        return Response(
            statement.to_csv(),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return JSONResponse(statement.to_json())
