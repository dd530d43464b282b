"""``GET /checkpoint``: the log's latest signed checkpoint, for transparency-log tools.

The body is a ``c2sp.org/tlog-checkpoint`` signed note (``c2sp.org/signed-note``), exactly as
stored by :mod:`chainaudit.log.checkpointing` (with any witness cosignatures): the origin, the
tree size, the base64 root, a blank line and the signature lines. Served without an API key
(the path of ``c2sp.org/tlog-tiles``); verify it with the log's verifier key
(``chainaudit log-key verifier``), e.g. :func:`chainaudit.core.note.open_checkpoint`.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

from chainaudit.api.auth import ServicesDep
from chainaudit.api.problems import Problem

__all__ = ["router"]

router = APIRouter(tags=["transparency log"])

CHECKPOINT_CACHE: str = "no-cache"
"""A new checkpoint is signed within ``checkpoint_interval``: clients revalidate each time."""


@router.get(
    "/checkpoint",
    response_class=PlainTextResponse,
    responses={
        200: {
            "description": "The latest signed checkpoint note (c2sp.org/tlog-checkpoint)",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        404: {"description": "No checkpoint was signed yet (the log is empty)"},
    },
)
async def checkpoint(svc: ServicesDep) -> PlainTextResponse:
    """The log's latest signed checkpoint, a C2SP signed note (``text/plain; charset=utf-8``,
    no API key needed); 404 before the first one (an empty log)."""
    signed = await run_in_threadpool(lambda: svc.reader().signed_checkpoint())
    if signed is None:
        raise Problem(
            404,
            "not-found",
            "no signed checkpoint yet: the log is empty (the first record is signed within "
            "the checkpoint_interval setting)",
        )
    return PlainTextResponse(
        signed,
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": CHECKPOINT_CACHE},
    )
