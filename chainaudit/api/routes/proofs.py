"""Proofs and checkpoints: inclusion proofs, the latest checkpoint, consistency proofs and
the anchors with their status."""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from chainaudit.api.auth import Operator, Reader, ServicesDep
from chainaudit.api.problems import Problem
from chainaudit.api.routes.records import visible_entry
from chainaudit.core.errors import NotFoundError
from chainaudit.core.wire import hex0x

__all__ = ["PROOF_PATH", "router"]

router = APIRouter(prefix="/v1", tags=["proofs"])


class CheckpointRef(BaseModel):
    """A checkpoint of the log, as a proof bundle names it."""

    tree_size: int
    root: str = Field(description="0x-hex RFC 9162 root hash")


class InclusionOut(BaseModel):
    """A bundle's fields without the record and the anchor (``docs/json.md``)."""

    record_id: str
    leaf_index: int
    leaf_hash: str = Field(description="0x-hex")
    tree_size: int
    inclusion_proof: list[str] = Field(description="0x-hex, RFC 9162 §2.1.3.1 PATH")
    checkpoint: CheckpointRef


class AnchorOut(BaseModel):
    id: int
    tree_size: int
    root: str
    status: str = Field(description="pending, submitted, confirmed, final or superseded")
    chain_id: int
    contract: str
    checkpoint_seq: int | None
    tx_hash: str | None
    block_number: int | None
    block_hash: str | None
    attempts: int
    last_error: str | None


class CheckpointOut(BaseModel):
    tree_size: int
    root: str
    latest_anchor: AnchorOut | None
    unanchored_records: int


class ConsistencyOut(BaseModel):
    from_size: int
    to_size: int
    from_root: str
    to_root: str
    proof: list[str]


PROOF_PATH: Final = "/v1/records/{record_id:path}/proof"
"""The path of the inclusion proof route, shared with the fast lane
(:mod:`chainaudit.api.fastlane`) so that both match and decode a path alike. ``:path``: an id
with ``/`` (from ``chainaudit ingest`` or an older log) is readable too."""


@router.get(PROOF_PATH.removeprefix("/v1"), response_model=InclusionOut, tags=["records"])
async def inclusion(
    record_id: str,
    key: Reader,
    svc: ServicesDep,
    tree_size: Annotated[int | None, Query(ge=1, le=2**48)] = None,
) -> InclusionOut:
    """The record's RFC 9162 inclusion proof in the tree of ``tree_size`` (default: now);
    404 for a record the key may not see (the visibility of ``GET /v1/records/{id}``)."""
    entry = (await run_in_threadpool(visible_entry, svc, key, record_id)).entry

    def prove() -> tuple[int, bytes, list[bytes]]:
        log = svc.reader()
        size = tree_size or log.size
        if entry.index >= size or size > log.size:
            raise Problem(404, "not-found", f"leaf {entry.index} is not in a tree of size {size}")
        return size, *log.inclusion_proof_with_root(entry.index, size)

    size, root, proof = await run_in_threadpool(prove)
    svc.reads.note(key, "proof", record_id)
    return InclusionOut(
        record_id=entry.record_id,
        leaf_index=entry.index,
        leaf_hash=hex0x(entry.leaf_hash),
        tree_size=size,
        inclusion_proof=[hex0x(h) for h in proof],
        checkpoint=CheckpointRef(tree_size=size, root=hex0x(root)),
    )


def anchor_out(data: dict[str, Any]) -> AnchorOut:
    return AnchorOut(**data)


@router.get("/checkpoints/latest", response_model=CheckpointOut)
async def latest_checkpoint(key: Reader, svc: ServicesDep) -> CheckpointOut:
    """The log's current size and root, and the newest anchored checkpoint."""

    def read() -> CheckpointOut:
        log = svc.reader()
        anchored = svc.anchor_book().latest_anchored()
        return CheckpointOut(
            tree_size=log.size,
            root=hex0x(log.root()),
            latest_anchor=anchor_out(anchored.public()) if anchored else None,
            unanchored_records=log.size - (anchored.tree_size if anchored else 0),
        )

    return await run_in_threadpool(read)


@router.get("/consistency", response_model=ConsistencyOut)
def consistency(
    key: Reader,
    svc: ServicesDep,
    from_size: Annotated[int, Query(ge=1, le=2**48)],
    to_size: Annotated[int | None, Query(ge=1, le=2**48)] = None,
) -> ConsistencyOut:
    """The RFC 9162 consistency proof from ``from_size`` to ``to_size`` (default: now).
    (A plain function: FastAPI runs it in the thread pool, off the event loop.)"""
    if to_size is not None and from_size > to_size:
        message = (
            f"from_size ({from_size}) is larger than to_size ({to_size}): a consistency proof "
            "goes from an older, smaller tree to a newer one"
        )
        raise Problem(
            422,
            "validation",
            message,
            errors=[{"in": "query", "pointer": "/from_size", "message": message}],
        )
    log = svc.reader()
    new = to_size or log.size
    try:
        proof = log.consistency_proof(from_size, new)
        return ConsistencyOut(
            from_size=from_size,
            to_size=new,
            from_root=hex0x(log.root_at(from_size)),
            to_root=hex0x(log.root_at(new)),
            proof=[hex0x(h) for h in proof],
        )
    except NotFoundError as exc:
        raise Problem(404, "not-found", str(exc)) from exc


class AnchorPage(BaseModel):
    items: list[AnchorOut]
    next_cursor: int | None = Field(description="pass as `cursor` for the next (older) page")


@router.get("/anchors", response_model=AnchorPage)
async def anchors(
    key: Reader,
    svc: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        int | None, Query(ge=1, description="an anchor id: the page starts below it")
    ] = None,
) -> AnchorPage:
    """Anchors, newest first, with their status; paged like ``GET /v1/records``."""
    anchors = await run_in_threadpool(lambda: svc.anchor_book().all())
    rows = [a for a in anchors[::-1] if cursor is None or a.id < cursor]
    page = rows[:limit]
    more = len(rows) > limit
    return AnchorPage(
        items=[anchor_out(a.public()) for a in page], next_cursor=page[-1].id if more else None
    )


class AnchorRequested(BaseModel):
    requested: bool
    tree_size: int
    detail: str


@router.post("/anchors", status_code=status.HTTP_202_ACCEPTED, response_model=AnchorRequested)
def request_anchor(key: Operator, svc: ServicesDep) -> AnchorRequested:
    """Ask the anchoring service to anchor the current log at its next step."""
    if not svc.anchoring_running():
        raise Problem(
            503,
            "chain-unavailable",
            "the anchoring service is not running (no chain or deployment configured)",
            headers={"Retry-After": "30"},
        )
    ready, detail = svc.chain_ready()
    if not ready:
        raise Problem(503, "chain-unavailable", detail, headers={"Retry-After": "5"})
    svc.request_anchor()  # the leader's, which may be another worker
    return AnchorRequested(
        requested=True, tree_size=svc.reader().size, detail="the anchor will be submitted shortly"
    )
