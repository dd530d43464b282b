"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials

from chainaudit import integrity
from chainaudit.api.auth import ServicesDep, _bearer, _header, principal, require
from chainaudit.api.problems import problem_response

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
    alarms, record index lag, latency. Needs an API key (any role but partner) unless the
    ``metrics_public`` setting is on."""
    log = svc.reader()
    book = svc.anchor_book()
    anchors = book.all()
    anchored = book.latest_anchored()
    anchored_size = anchored.tree_size if anchored else 0
    oldest = book.oldest_unanchored_ms(anchored_size)
    lag_seconds = max(0.0, time.time() - oldest / 1000) if oldest is not None else 0.0
    lines = [
        "# HELP chainaudit_log_size Leaves in the log.",
        "# TYPE chainaudit_log_size gauge",
        f"chainaudit_log_size {log.size}",
        "# HELP chainaudit_records_appended_total Records appended through this API process.",
        "# TYPE chainaudit_records_appended_total counter",
        f"chainaudit_records_appended_total {svc.writer.appended_total}",
        "# HELP chainaudit_anchors Anchors by status.",
        "# TYPE chainaudit_anchors gauge",
    ]
    for status in ("pending", "submitted", "confirmed", "final", "superseded"):
        count = sum(1 for a in anchors if a.status == status)
        lines.append(f'chainaudit_anchors{{status="{status}"}} {count}')
    lines += [
        "# HELP chainaudit_anchor_lag_records Leaves not yet in an anchored checkpoint.",
        "# TYPE chainaudit_anchor_lag_records gauge",
        f"chainaudit_anchor_lag_records {log.size - anchored_size}",
        "# HELP chainaudit_anchor_lag_seconds Age of the oldest leaf not yet anchored.",
        "# TYPE chainaudit_anchor_lag_seconds gauge",
        f"chainaudit_anchor_lag_seconds {lag_seconds:.3f}",
        "# HELP chainaudit_integrity_alarms_total Integrity alarms in the log: a service "
        "record whose id another record had taken, written under a derived id.",
        "# TYPE chainaudit_integrity_alarms_total counter",
        f'chainaudit_integrity_alarms_total{{alarm="id-conflict"}} {integrity.count_alarms(log)}',
        "# HELP chainaudit_record_index_lag_records Leaves the record index has not indexed "
        "yet (record lists index them before answering).",
        "# TYPE chainaudit_record_index_lag_records gauge",
        f"chainaudit_record_index_lag_records {max(0, log.size - svc.record_index.next_index)}",
        "# HELP chainaudit_http_requests_total Requests by method, route and status.",
        "# TYPE chainaudit_http_requests_total counter",
    ]
    m = svc.metrics
    with m.lock:
        for (method, route, code), count in sorted(m.requests.items()):
            lines.append(
                f'chainaudit_http_requests_total{{method="{method}",route="{route}",'
                f'status="{code}"}} {count}'
            )
        lines += [
            "# HELP chainaudit_http_request_seconds Request latency.",
            "# TYPE chainaudit_http_request_seconds histogram",
        ]
        for route, counts in sorted(m.latency_counts.items()):
            for bound, count in zip(m.buckets, counts, strict=False):
                lines.append(
                    f'chainaudit_http_request_seconds_bucket{{route="{route}",le="{bound}"}} '
                    f"{count}"
                )
            lines.append(
                f'chainaudit_http_request_seconds_bucket{{route="{route}",le="+Inf"}} {counts[-1]}'
            )
            lines.append(f'chainaudit_http_request_seconds_count{{route="{route}"}} {counts[-1]}')
            lines.append(
                f'chainaudit_http_request_seconds_sum{{route="{route}"}} {m.latency_sum[route]:.6f}'
            )
    return "\n".join(lines) + "\n"
