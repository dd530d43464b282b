"""Proof bundles over HTTP: fetch a record's bundle, and verify any bundle.

The bundle is the same one ``chainaudit proof -o`` writes; the verdict the same checks as
``chainaudit verify`` (against this service's chain endpoint). An auditor need not trust
either: the bundle verifies offline with ``chainaudit verify`` or by hand.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from chainaudit.api.auth import Reader, ServicesDep
from chainaudit.api.problems import Problem
from chainaudit.api.routes.records import visible_entry
from chainaudit.core.bundle import parse_bundle, schema
from chainaudit.core.errors import InputError, ProofPendingError
from chainaudit.service import masking
from chainaudit.service.bundling import build_bundle
from chainaudit.service.erasure import erased_leaves
from chainaudit.verify.verifier import Verdict, parse_log_key, verify_bundle

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["proofs"])


class CheckOut(BaseModel):
    name: str
    status: str
    detail: str


class VerdictOut(BaseModel):
    valid: bool
    chain_checked: bool
    failed: list[str]
    checks: list[CheckOut]
    warnings: list[str]


@router.get("/records/{record_id:path}/bundle", tags=["records"])
async def record_bundle(
    record_id: str,
    key: Reader,
    svc: ServicesDep,
    include_record: Annotated[bool, Query(description="false withholds the record")] = True,
    since_size: Annotated[
        int | None, Query(ge=1, le=2**48, description="add a consistency proof from this size")
    ] = None,
) -> dict[str, Any]:
    """The record's proof bundle v1 (409 with Retry-After while its leaf is not anchored).

    404 for a record the key may not see (the visibility of ``GET /v1/records/{id}``); a
    record the key sees only redacted is bundled without its content (the leaf hash alone);
    so is a record whose personal fields the key sees masked, and the bundle then says so in
    ``withheld`` (:mod:`chainaudit.service.masking`).
    """
    view = await run_in_threadpool(visible_entry, svc, key, record_id)
    try:
        bundle = await run_in_threadpool(
            lambda: build_bundle(
                svc.reader(),
                svc.anchor_book(),
                record_id,
                include_record=include_record and not view.redacted,
                since_size=since_size,
                withheld=masking.WITHHELD_REASON if view.masked else None,
            )
        )
        svc.reads.note(key, "bundle", record_id)
        return bundle
    except ProofPendingError as exc:
        raise Problem(409, "proof-pending", str(exc), headers={"Retry-After": "30"}) from exc
    except InputError as exc:
        raise Problem(
            422,
            "validation",
            str(exc),
            errors=[{"in": "query", "pointer": "/since_size", "message": str(exc)}],
        ) from exc


@router.post("/verify", response_model=VerdictOut)
async def verify(
    key: Reader,
    svc: ServicesDep,
    bundle: Annotated[dict[str, Any], Body(description="a proof bundle v1", openapi_examples={})],
    confirmations: Annotated[
        int | None,
        Query(ge=1, le=10_000, description="default: the service's `confirmations` setting"),
    ] = None,
    log_key: Annotated[
        str | None,
        Query(
            max_length=512,
            description="the log's verifier key `<origin>+<hex id>+<base64 key>` (from a "
            "source you trust): adds the `checkpoint_note` check of the bundle's signed "
            "checkpoint",
        ),
    ] = None,
) -> VerdictOut:
    """Run every check of ``chainaudit verify`` on a bundle against this service's chain,
    pinned to this service's own ``AuditAnchor`` and chain id (a bundle anchored anywhere
    else is not valid), with a ``"final"`` status claim checked against the service's
    ``finality`` setting. A bundle that still carries the content of a record this service
    has erased fails its ``record`` check, naming the erasure. With ``log_key``, the bundle's
    signed checkpoint note is checked too (signature, origin, size and root)."""
    try:
        parsed = parse_bundle(bundle)
    except InputError as exc:
        raise Problem(
            422,
            "invalid-bundle",
            str(exc),
            errors=[{"in": "body", "pointer": "", "message": str(exc)}],
        ) from exc
    try:
        verifier = parse_log_key(log_key)
    except InputError as exc:
        raise Problem(
            422,
            "validation",
            str(exc),
            errors=[{"in": "query", "pointer": "/log_key", "message": str(exc)}],
        ) from exc

    def run() -> Verdict:
        return verify_bundle(
            parsed,
            chain=svc.chain,
            confirmations=svc.settings.confirmations if confirmations is None else confirmations,
            finality=svc.settings.finality,
            expected_chain_id=svc.chain_id(),
            expected_contract=svc.anchor_contract(),
            erased=erased_leaves(svc.reader()),
            log_key=verifier,
        )

    verdict = await run_in_threadpool(run)
    return VerdictOut(**verdict.to_json())


@router.get("/schemas/proof-bundle-v1", tags=["proofs"])
async def bundle_schema() -> dict[str, Any]:
    """The JSON Schema (Draft 2020-12) of proof bundle v1."""
    return schema()
