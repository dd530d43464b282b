"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import time
from collections import Counter
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials

from chainaudit.api.auth import ServicesDep, _bearer, _header, principal, require
from chainaudit.api.problems import problem_response
from chainaudit.app.metrics import LogReading
from chainaudit.service import integrity

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (answered on the event loop: no thread of the pool is needed, so
    it answers however busy the pool is)."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
def readyz(svc: ServicesDep) -> JSONResponse | dict[str, object]:
    """Ready when the database answers, the chain endpoint answers, and each configured
    contract (``AuditAnchor``, and ``SupplyChainEscrow`` when there is one) has code and
    answers a view call; otherwise 503 naming what failed."""
    checks: dict[str, str] = {}
    try:
        svc.reader()
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready
        checks["database"] = f"failed: {exc}"
    ok, detail = svc.chain_ready()
    checks["chain"] = "ok" if ok else f"failed: {detail}"
    if ok:
        checks.update(svc.contracts_ready())
    if all(v == "ok" for v in checks.values()):
        return {"status": "ready", "checks": checks}
    return problem_response(
        503,
        "not-ready",
        "; ".join(f"{k}: {v}" for k, v in checks.items()),
        instance="/readyz",
        headers={"Retry-After": "5"},
        checks=checks,
    )


METRICS_ROLES = ("admin", "operator", "auditor", "regulator")
"""Who may read ``/metrics`` unless ``metrics_public`` is set (not partners: the counters
describe every partner's traffic)."""


async def metrics_reader(
    request: Request,
    svc: ServicesDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> None:
    """Admit anyone when ``metrics_public`` is set, else a key of :data:`METRICS_ROLES`
    (401 without one, 403 for a partner's)."""
    if svc.settings.metrics_public:
        return
    key = await principal(request, svc, bearer, header)
    await require(*METRICS_ROLES)(key)


@router.get("/metrics", response_class=PlainTextResponse, dependencies=[Depends(metrics_reader)])
def metrics(svc: ServicesDep) -> str:
    """Prometheus text format: records appended, anchors by status, anchor lag, integrity
    alarms, record index lag, latency (summed over every worker of ``serve --workers``). Needs
    an API key (any role but partner) unless the ``metrics_public`` setting is on."""
    log = svc.reader()
    book = svc.anchor_book()
    anchors = book.all()
    anchored = book.latest_anchored()
    anchored_size = anchored.tree_size if anchored else 0
    oldest = book.oldest_unanchored_ms(anchored_size)
    reading = LogReading(
        size=log.size,
        anchors=Counter(a.status for a in anchors),
        anchor_lag_records=log.size - anchored_size,
        anchor_lag_seconds=max(0.0, time.time() - oldest / 1000) if oldest is not None else 0.0,
        integrity_alarms=integrity.count_alarms(log),
        record_index_lag=max(0, log.size - svc.record_index.next_index),
    )
    return svc.metrics.exposition(reading)
