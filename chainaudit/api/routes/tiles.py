"""The C2SP ``tlog-tiles`` read path: ``GET /tile/<L>/<N>[.p/<W>]`` and
``GET /tile/entries/<N>[.p/<W>]``, without an API key.

As ``c2sp.org/tlog-tiles`` specifies: ``Content-Type: application/octet-stream``; a hash tile
is the 32-byte hashes of the tree nodes at height ``8L`` numbered ``256N .. 256N+W-1``; an
entry bundle is the leaf data of entries ``256N ..``, each a big-endian ``uint16`` length and
its bytes, gzip-compressed at the HTTP layer when the client accepts it ("entry bundles SHOULD
be compressed"). Full hash tiles never change: ``Cache-Control: public, max-age=31536000,
immutable``. A partial tile's bytes never change either, but the log may stop serving it once
the full tile exists, so it is cached briefly (:data:`PARTIAL_CACHE`). An entry bundle, full
or partial, is cached for five minutes and never ``immutable`` (:data:`ENTRIES_CACHE`): an
erasure withdraws it, and caches must let go of the erased record soon after. A tile outside the
current tree is 404, a malformed path 400 (both RFC 9457 problems). The signed ``checkpoint``
that a client verifies before trusting any tile is served elsewhere.

What the entries reveal: each entry is a record's RFC 8785 canonical form, salted
(:mod:`chainaudit.core.records`), readable by anyone who can reach the server, outside the API's
visibility rules. So entries are off by default (``tiles_entries``): the hash tiles (leaf
hashes and above, which reveal nothing about salted records) are served and
``tile/entries/...`` answers 404 ``entries-not-published``. An operator whose records may be
public turns them on; even then a bundle holding a record of a kind the data policy keeps
private (personal fields, or encrypted at rest) or an erased record is not served (404).
"""

from __future__ import annotations

import gzip
from types import SimpleNamespace
from typing import Final

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from chainaudit.api.auth import ServicesDep
from chainaudit.api.problems import Problem
from chainaudit.api.services import Services
from chainaudit.core import tlogtiles
from chainaudit.core.errors import ChainauditError, InputError

__all__ = ["TileFastLane", "router"]

router = APIRouter(tags=["tlog-tiles"])

OCTET_STREAM: Final = "application/octet-stream"
FULL_CACHE: Final = "public, max-age=31536000, immutable"
PARTIAL_CACHE: Final = "public, max-age=60"
ENTRIES_CACHE: Final = "public, max-age=300"
"""An entry bundle, full or partial, is cached for minutes, never ``immutable``: its bytes
never change, but once one of its records is erased (or its kind made private) the bundle
is no longer served, and a cache must not keep serving the erased record for a year."""
GZIP_OVER: Final = 512
"""Entry bundles larger than this are gzip-compressed for a client that accepts gzip."""


def cache_control(ref: tlogtiles.TileRef) -> str:
    """The ``Cache-Control`` of a tile: long-lived and immutable for a full hash tile
    (leaf hashes never change, erasure included), minutes for an entry bundle
    (:data:`ENTRIES_CACHE`), a minute for a partial hash tile."""
    if ref.level is None:
        return ENTRIES_CACHE
    return PARTIAL_CACHE if ref.partial else FULL_CACHE


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` header admits gzip."""
    for part in accept_encoding.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def tile_bytes(
    svc: Services, ref: tlogtiles.TileRef, gzip_ok: bool
) -> tuple[bytes, dict[str, str]]:
    """The body and headers answering a request for tile ``ref``.

    Raises:
        Problem: 404 ``entries-not-published`` when ``tiles_entries`` is off.
        NotFoundError: the tile is not within the current tree.
    """
    headers = {"Cache-Control": cache_control(ref)}
    log = svc.reader()
    if ref.level is None:
        if not svc.settings.tiles_entries:
            raise Problem(
                404,
                "entries-not-published",
                "this log publishes leaf hashes only (tile/0/...), not its entries "
                "(the tiles_entries setting is off)",
            )
        body = log.entry_bundle(ref.index, ref.width, withhold=svc.policy.private_kinds())
        headers["Vary"] = "Accept-Encoding"
        if len(body) > GZIP_OVER and gzip_ok:
            body = gzip.compress(body, 1, mtime=0)
            headers["Content-Encoding"] = "gzip"
        return body, headers
    return log.hash_tile(ref.level, ref.index, ref.width), headers


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
    gzip_ok = accepts_gzip(request.headers.get("accept-encoding", ""))
    body, headers = await run_in_threadpool(tile_bytes, svc, ref, gzip_ok)
    return Response(body, media_type=OCTET_STREAM, headers=headers)


ROUTE: Final = SimpleNamespace(path="/tile/{path:path}")


class TileFastLane:
    """Serve successful tile requests directly, as :class:`chainaudit.api.fastlane.
    ProofFastLane` serves proofs: a pure ASGI layer that skips FastAPI's per-request
    machinery (the read itself is one SQLite row, or two for an entry bundle). Anything that
    is not a successful ``GET /tile/...`` (a bad path, a tile outside the tree, entries off)
    goes on to the app unchanged, whose route answers it with the same problem as ever."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = self._try(scope) if scope["type"] == "http" else None
        if answer is None:
            await self.app(scope, receive, send)
            return
        body, headers = answer
        scope["route"] = ROUTE  # for the request metrics, as the regular route would
        raw = [(b"content-type", OCTET_STREAM.encode()), (b"content-length", b"%d" % len(body))]
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": 200, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    def _try(self, scope: Scope) -> tuple[bytes, dict[str, str]] | None:
        path: str = scope["path"]
        if scope["method"] != "GET" or not path.startswith("/tile/") or scope.get("root_path"):
            return None
        try:
            ref = tlogtiles.parse_path(path)
        except InputError:
            return None
        accept = b""
        for name, value in scope["headers"]:
            if name == b"accept-encoding":
                accept = value
        try:
            return tile_bytes(self.services, ref, accepts_gzip(accept.decode("latin-1")))
        except (ChainauditError, Problem):
            return None
