"""``/v1/records``: append one record or a batch, read one, list with filters."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from chainaudit.actions import now_rfc3339
from chainaudit.api.auth import Reader, ServicesDep, Writer, actor_of
from chainaudit.api.problems import Problem
from chainaudit.api.services import Services
from chainaudit.errors import NotFoundError, RecordError, VerificationError
from chainaudit.keys import ApiKey
from chainaudit.records import PreparedRecord, parse_timestamp, prepare
from chainaudit.signing import recover_record_signer
from chainaudit.store import AppendResult, Entry

router = APIRouter(prefix="/v1/records", tags=["records"])

HEX32 = r"^0x[0-9a-fA-F]{64}$"


class RecordIn(BaseModel):
    """A record to append. ``salt`` is drawn by the server unless given (it must be given
    when the record is signed, since the signature covers the leaf hash)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=128, examples=["po-2026-0001"])
    kind: str = Field(min_length=1, max_length=32, examples=["transaction"])
    timestamp: str = Field(min_length=20, max_length=40, examples=["2026-11-21T09:30:00Z"])
    actor: str = Field(min_length=1, max_length=256, examples=["buyer:acme"])
    payload: dict[str, Any]
    salt: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    signature: str | None = Field(
        default=None, pattern=r"^0x[0-9a-fA-F]{130}$", description="EIP-712 AuditRecord signature"
    )
    signer: str | None = Field(default=None, pattern=r"^0x[0-9a-fA-F]{40}$")


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    records: list[RecordIn] = Field(min_length=1, max_length=10_000)


class Appended(BaseModel):
    record_id: str
    leaf_index: int
    duplicate: bool


class AppendOut(BaseModel):
    appended: int
    duplicates: int
    tree_size: int
    root: str
    results: list[Appended]


class RecordOut(BaseModel):
    record_id: str
    leaf_index: int
    leaf_hash: str
    kind: str
    actor: str
    timestamp_ms: int
    record: dict[str, Any] | None = Field(description="null once the content was erased")
    signer: str | None = None


class RecordPage(BaseModel):
    items: list[RecordOut]
    next_cursor: int | None = Field(description="pass as `cursor` for the next page")


def _prepare_all(
    svc: Services, key: ApiKey, items: list[RecordIn]
) -> tuple[list[PreparedRecord], dict[str, tuple[str, str]]]:
    prepared: list[PreparedRecord] = []
    signatures: dict[str, tuple[str, str]] = {}
    for position, item in enumerate(items):
        where = f"records[{position}]" if len(items) > 1 else "record"
        if key.role == "partner" and item.actor != key.address:
            raise Problem(
                403,
                "forbidden",
                f"{where}: a partner key may only append records whose actor "
                f"is its own address {key.address}",
            )
        document = item.model_dump(exclude={"signature", "signer"}, exclude_none=True)
        try:
            record = prepare(document, kinds=svc.kinds)
        except RecordError as exc:
            raise Problem(
                422,
                "invalid-record",
                f"{where}: {exc}",
                errors=[{"field": where, "message": str(exc)}],
            ) from exc
        if item.signature is not None:
            signatures[record.record_id] = _check_signature(svc, item, record, where)
        elif item.signer is not None:
            raise Problem(422, "invalid-record", f"{where}: signer given without a signature")
        prepared.append(record)
    return prepared, signatures


def _check_signature(
    svc: Services, item: RecordIn, record: PreparedRecord, where: str
) -> tuple[str, str]:
    if item.salt is None:
        raise Problem(422, "invalid-record", f"{where}: a signed record must carry its salt")
    assert item.signature is not None
    try:
        signer = recover_record_signer(
            svc.chain_id(), record.record_id, record.leaf_hash, item.signature
        )
    except VerificationError as exc:
        raise Problem(422, "invalid-signature", f"{where}: {exc}") from exc
    if item.signer is not None and signer.lower() != item.signer.lower():
        raise Problem(
            422,
            "invalid-signature",
            f"{where}: the signature was not made by {item.signer} for this record on chain "
            f"{svc.chain_id()}",
        )
    return signer, item.signature


def _action_for(key: ApiKey, records: list[PreparedRecord]) -> Any:
    digest = hashlib.sha256(b"".join(r.leaf_hash for r in records)).hexdigest()

    def follow_up(result: AppendResult) -> PreparedRecord | None:
        if result.appended == 0:
            return None  # a pure retry changes nothing and is not an action
        return prepare(
            {
                "id": f"action-append-{digest[:24]}-{result.first_index}",
                "kind": "admin",
                "timestamp": now_rfc3339(),
                "actor": actor_of(key),
                "payload": {
                    "action": "records.append",
                    "key_id": key.key_id,
                    "appended": result.appended,
                    "first_index": result.first_index,
                    "leaf_hashes_sha256": digest,
                },
            }
        )

    return follow_up


async def _append(svc: Services, key: ApiKey, items: list[RecordIn]) -> AppendOut:
    prepared, signatures = await run_in_threadpool(_prepare_all, svc, key, items)
    result = await svc.writer.append(prepared, signatures, _action_for(key, prepared))
    first_new = result.first_index
    return AppendOut(
        appended=result.appended,
        duplicates=result.duplicates,
        tree_size=result.tree_size,
        root=result.root.hex(),
        results=[
            Appended(record_id=r.record_id, leaf_index=i, duplicate=i < first_new)
            for r, i in zip(prepared, result.indexes, strict=True)
        ],
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=AppendOut)
async def append_record(record: RecordIn, key: Writer, svc: ServicesDep) -> AppendOut:
    """Append one record (idempotent: the same id and content again is not a new leaf)."""
    return await _append(svc, key, [record])


@router.post("/batch", status_code=status.HTTP_201_CREATED, response_model=AppendOut)
async def append_batch(batch: BatchIn, key: Writer, svc: ServicesDep) -> AppendOut:
    """Append up to 10,000 records, all or nothing."""
    if len(batch.records) > svc.settings.max_records_per_request:
        raise Problem(
            413,
            "too-many-records",
            f"at most {svc.settings.max_records_per_request} records per request",
        )
    return await _append(svc, key, batch.records)


def _visible(key: ApiKey, entry: Entry) -> bool:
    return key.role != "partner" or entry.actor == key.address


def record_out(svc: Services, entry: Entry) -> RecordOut:
    signed = svc.reader().signature(entry.record_id)
    return RecordOut(
        record_id=entry.record_id,
        leaf_index=entry.index,
        leaf_hash=entry.leaf_hash.hex(),
        kind=entry.kind,
        actor=entry.actor,
        timestamp_ms=entry.timestamp_ms,
        record=json.loads(entry.body) if entry.body is not None else None,
        signer=signed[0] if signed else None,
    )


def visible_entry(svc: Services, key: ApiKey, record_id: str) -> Entry:
    """The record if it exists and the key may see it; 404 otherwise (no existence leak)."""
    try:
        entry = svc.reader().entry(record_id)
    except NotFoundError as exc:
        raise Problem(404, "not-found", f"no record with id {record_id!r}") from exc
    if not _visible(key, entry):
        raise Problem(404, "not-found", f"no record with id {record_id!r}")
    return entry


@router.get("/{record_id}", response_model=RecordOut)
async def get_record(record_id: str, key: Reader, svc: ServicesDep) -> RecordOut:
    """One record with its leaf index and hash."""
    found = record_out(svc, visible_entry(svc, key, record_id))
    svc.reads.note(key, "record", record_id)
    return found


@router.get("", response_model=RecordPage)
async def list_records(
    key: Reader,
    svc: ServicesDep,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    actor: Annotated[str | None, Query(max_length=256)] = None,
    since: Annotated[str | None, Query(description="RFC 3339, inclusive")] = None,
    until: Annotated[str | None, Query(description="RFC 3339, exclusive")] = None,
    cursor: Annotated[int, Query(ge=0, le=2**48)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> RecordPage:
    """Records in log order from leaf ``cursor``, filtered by kind, actor and time."""
    if key.role == "partner":
        if actor is not None and actor != key.address:
            return RecordPage(items=[], next_cursor=None)
        actor = key.address
    try:
        since_ms = parse_timestamp(since) if since is not None else None
        until_ms = parse_timestamp(until) if until is not None else None
    except RecordError as exc:
        raise Problem(
            422,
            "validation",
            f"since/until: {exc}",
            errors=[{"field": "query.since", "message": str(exc)}],
        ) from exc
    entries = svc.reader().scan(
        start=cursor,
        limit=limit + 1,
        kind=kind,
        actor=actor,
        since_ms=since_ms,
        until_ms=until_ms,
    )
    more = len(entries) > limit
    entries = entries[:limit]
    query = {"kind": kind, "actor": actor, "since": since, "until": until, "cursor": cursor}
    svc.reads.note(
        key,
        "records",
        " ".join(f"{k}={v}" for k, v in query.items() if v is not None),
        count=len(entries),
    )
    return RecordPage(
        items=[record_out(svc, e) for e in entries],
        next_cursor=entries[-1].index + 1 if more and entries else None,
    )
