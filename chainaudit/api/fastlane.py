"""A fast lane for the hottest read: ``GET /v1/records/{id}/proof`` without query parameters.

Auditors fetch inclusion proofs in bulk, and FastAPI's per-request machinery (dependency
injection, response-model validation) costs more than the proof itself (two indexed SQLite
reads). This pure ASGI layer answers exactly the successful case of that request with the
same authentication, rate limit and JSON body as the regular route, serving only records the
key sees under the cheap part of the one visibility rule (:mod:`chainaudit.api.visibility`:
officers' and auditors' keys, a partner's own records), and
hands everything else — any other path, query parameters, a missing or bad key, a refused
role, an unknown record — to the FastAPI app unchanged, so every error still comes from one
place as an RFC 9457 problem.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Final

from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from chainaudit.api.auth import READERS, RateLimiter
from chainaudit.api.routes.proofs import PROOF_PATH
from chainaudit.api.services import Services
from chainaudit.api.visibility import Viewer, document_of
from chainaudit.core.errors import ChainauditError
from chainaudit.core.wire import hex0x
from chainaudit.service.keys import ApiKey

__all__ = ["ProofFastLane", "proof_record_id"]

ROUTE: Final = SimpleNamespace(path=PROOF_PATH)
_PATH_REGEX, _, _CONVERTORS = compile_path(ROUTE.path)


def proof_record_id(path: str) -> str | None:
    """The ``{record_id}`` of ``GET /v1/records/{record_id}/proof`` in an ASGI ``path``
    (already percent-decoded once by the server), matched exactly as the regular route's
    router matches it — Starlette's own compiled pattern and convertor, nothing decoded
    again — or ``None`` when the path is not that route's."""
    match = _PATH_REGEX.match(path)
    if match is None:
        return None
    record_id: str = _CONVERTORS["record_id"].convert(match["record_id"])
    return record_id


class ProofFastLane:
    """Serve successful proof fetches directly; defer every other request to ``app``."""

    def __init__(self, app: ASGIApp, services: Services, limiter: RateLimiter) -> None:
        self.app = app
        self.services = services
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self._try(scope) if scope["type"] == "http" else None
        if body is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = ROUTE  # for the request metrics, as the regular route would
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _try(self, scope: Scope) -> bytes | None:
        if scope["method"] != "GET" or scope.get("query_string") or scope.get("root_path"):
            return None
        record_id = proof_record_id(scope["path"])
        if not record_id:
            return None
        key = self._key(scope)
        if key is None or key.role not in READERS or key.expired():
            return None
        if self.limiter.take(key.key_id) > 0:
            return None  # the regular route answers 429 (and spends one more token)
        try:
            log = self.services.reader()
            entry = log.entry(record_id)
            viewer = Viewer(self.services, key)
            if not viewer.sees_everything and not viewer.own(entry, document_of(entry)):
                return None  # the regular route applies the whole rule (it may read the chain)
            root, proof = log.inclusion_proof_with_root(entry.index, log.size)
        except ChainauditError:
            return None
        self.services.reads.note(key, "proof", record_id)
        return json.dumps(
            {
                "record_id": entry.record_id,
                "leaf_index": entry.index,
                "leaf_hash": hex0x(entry.leaf_hash),
                "tree_size": log.size,
                "inclusion_proof": [hex0x(h) for h in proof],
                "checkpoint": {"tree_size": log.size, "root": hex0x(root)},
            },
            separators=(",", ":"),
        ).encode()

    def _key(self, scope: Scope) -> ApiKey | None:
        token = None
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                token = value[7:].decode("latin-1").strip()
            elif name == b"x-api-key":
                token = value.decode("latin-1").strip()
        return self.services.authenticate(token) if token else None
