"""The C2SP ``tlog-tiles`` read path: ``GET /tile/<L>/<N>[.p/<W>]`` and
``GET /tile/entries/<N>[.p/<W>]``, without an API key.

As ``c2sp.org/tlog-tiles`` specifies: ``Content-Type: application/octet-stream``; a hash tile
is the 32-byte hashes of the tree nodes at height ``8L`` numbered ``256N .. 256N+W-1``; an
entry bundle is the leaf data of entries ``256N ..``, each a big-endian ``uint16`` length and
its bytes, gzip-compressed at the HTTP layer when the client accepts it ("entry bundles SHOULD
be compressed"). Full tiles never change: ``Cache-Control: public, max-age=31536000,
immutable``. A partial tile's bytes never change either, but the log may stop serving it once
the full tile exists, so it is cached briefly (:data:`PARTIAL_CACHE`). A tile outside the
current tree is 404, a malformed path 400 (both RFC 9457 problems). The signed ``checkpoint``
that a client verifies before trusting any tile is served elsewhere.

What the entries reveal: each entry is a record's RFC 8785 canonical form, salted
(:mod:`chainaudit.records`), readable by anyone who can reach the server. An operator whose
records must stay with the API's visibility rules sets ``tiles_entries`` to false: the hash
tiles (leaf hashes and above, which reveal nothing about salted records) are still served,
``tile/entries/...`` answers 404 ``entries-not-published``.
"""

from __future__ import annotations

import gzip
from typing import Final

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from chainaudit import tlogtiles
from chainaudit.api.auth import ServicesDep
from chainaudit.api.problems import Problem
from chainaudit.errors import InputError

router = APIRouter(tags=["tlog-tiles"])

OCTET_STREAM: Final = "application/octet-stream"
FULL_CACHE: Final = "public, max-age=31536000, immutable"
PARTIAL_CACHE: Final = "public, max-age=60"
GZIP_OVER: Final = 512
"""Entry bundles larger than this are gzip-compressed for a client that accepts gzip."""


def cache_control(ref: tlogtiles.TileRef) -> str:
    """The ``Cache-Control`` of a tile: long-lived and immutable when full."""
    return PARTIAL_CACHE if ref.partial else FULL_CACHE


def _accepts_gzip(request: Request) -> bool:
    for part in request.headers.get("accept-encoding", "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


@router.get(
    "/tile/{path:path}",
    response_class=Response,
    responses={
        200: {
            "description": "the tile's bytes (c2sp.org/tlog-tiles)",
            "content": {OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}},
        },
        400: {"description": "not a tile path"},
        404: {"description": "the tile is not in the current tree, or entries are not served"},
    },
)
async def tile(path: str, request: Request, svc: ServicesDep) -> Response:
    """A hash tile ``tile/<L>/<N>[.p/<W>]`` or an entry bundle ``tile/entries/<N>[.p/<W>]``
    of the current tree (c2sp.org/tlog-tiles); no API key."""
    try:
        ref = tlogtiles.parse_path("tile/" + path)
    except InputError as exc:
        raise Problem(400, "invalid-tile-path", str(exc)) from exc
    headers = {"Cache-Control": cache_control(ref)}
    if ref.level is None:
        if not svc.settings.tiles_entries:
            raise Problem(
                404,
                "entries-not-published",
                "this log publishes leaf hashes only (tile/0/...), not its entries "
                "(the tiles_entries setting is off)",
            )
        body = await run_in_threadpool(lambda: svc.reader().entry_bundle(ref.index, ref.width))
        headers["Vary"] = "Accept-Encoding"
        if len(body) > GZIP_OVER and _accepts_gzip(request):
            body = await run_in_threadpool(gzip.compress, body, 1, mtime=0)
            headers["Content-Encoding"] = "gzip"
    else:
        level = ref.level
        body = await run_in_threadpool(lambda: svc.reader().hash_tile(level, ref.index, ref.width))
    return Response(body, media_type=OCTET_STREAM, headers=headers)
