"""``/v1/records``: append one record or a batch, read one, list with filters."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from chainaudit import provenance
from chainaudit.actions import now_rfc3339
from chainaudit.api.auth import Reader, ServicesDep, Writer, actor_of
from chainaudit.api.problems import Problem
from chainaudit.api.services import Services
from chainaudit.api.visibility import RecordView, Viewer
from chainaudit.errors import NotFoundError, RecordError, ReservedError, VerificationError
from chainaudit.keys import ApiKey
from chainaudit.records import PreparedRecord, parse_timestamp, prepare
from chainaudit.signing import recover_record_signer
from chainaudit.store import AppendResult
from chainaudit.wire import hex0x

router = APIRouter(prefix="/v1/records", tags=["records"])

HEX32 = r"^0x[0-9a-fA-F]{64}$"
PARTNER_SCAN_BUDGET = 20_000
"""The most records one page of a partner's list examines (it may see few of them)."""


class RecordIn(BaseModel):
    """A record to append. ``salt`` is drawn by the server unless given (it must be given
    when the record is signed, since the signature covers the leaf hash).

    The server stamps ``submitter: "key:<key id>"`` into the record's hashed canonical bytes
    (the key id is the middle part of the token ``ca_<key id>_<secret>``); a client may not
    send ``submitter`` itself (422). A signed record's EIP-712 signature therefore covers the
    leaf hash of the record *with* that field: ``records.prepare(record,
    submitter="key:<key id>").leaf_hash``. Kinds ``decision``, ``escrow_event``, ``admin`` and
    ids under ``escrow:``, ``action-``, ``risk:``, ``reconcile:``, ``integrity:`` and the other
    prefixes of :data:`chainaudit.provenance.RESERVED_PREFIXES` are written only by the service:
    403 ``reserved`` for every key, admin and operator included."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=128, examples=["po-2026-0001"])
    kind: str = Field(min_length=1, max_length=32, examples=["transaction"])
    timestamp: str = Field(min_length=20, max_length=40, examples=["2026-11-21T09:30:00Z"])
    actor: str = Field(min_length=1, max_length=256, examples=["buyer:acme"])
    payload: dict[str, Any]
    salt: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    signature: str | None = Field(
        default=None,
        pattern=r"^0x[0-9a-fA-F]{130}$",
        description="EIP-712 AuditRecord signature over the record id and the leaf hash of the "
        'record as stored, i.e. with the "submitter": "key:<key id>" field the server stamps',
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
    record: dict[str, Any] | None = Field(
        description="the stored record, its server-stamped submitter included (key:<key id>, "
        "local:<user> or service:<component>); null once the content was erased"
    )
    signer: str | None = None
    redacted: bool = Field(
        default=False,
        description="true when the record is shown redacted to what concerns the key "
        "(a decision shown to a deal's party): it then no longer hashes to leaf_hash",
    )


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
        try:
            provenance.check_client_write(item.kind, item.id)
        except ReservedError as exc:
            raise Problem(403, "reserved", f"{where}: {exc}") from exc
        document = item.model_dump(exclude={"signature", "signer"}, exclude_none=True)
        try:
            record = prepare(
                document, kinds=svc.kinds, submitter=provenance.key_submitter(key.key_id)
            )
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
            },
            submitter=provenance.API,
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
        root=hex0x(result.root),
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


def record_out(svc: Services, view: RecordView) -> RecordOut:
    """The record as the key of ``view`` may see it (redacted decisions say so)."""
    entry = view.entry
    signed = svc.reader().signature(entry.record_id)
    return RecordOut(
        record_id=entry.record_id,
        leaf_index=entry.index,
        leaf_hash=hex0x(entry.leaf_hash),
        kind=entry.kind,
        actor=entry.actor,
        timestamp_ms=entry.timestamp_ms,
        record=view.document,
        signer=signed[0] if signed else None,
        redacted=view.redacted,
    )


def visible_entry(svc: Services, key: ApiKey, record_id: str) -> RecordView:
    """The record as ``key`` may see it (:class:`~chainaudit.api.visibility.Viewer`, the one
    visibility rule); 404 when it does not exist or the key may not see it (no existence
    leak)."""
    try:
        entry = svc.reader().entry(record_id)
    except NotFoundError as exc:
        raise Problem(404, "not-found", f"no record with id {record_id!r}") from exc
    view = Viewer(svc, key).view(entry)
    if view is None:
        raise Problem(404, "not-found", f"no record with id {record_id!r}")
    return view


@router.get("/{record_id}", response_model=RecordOut)
async def get_record(record_id: str, key: Reader, svc: ServicesDep) -> RecordOut:
    """One record with its leaf index and hash, as the key may see it (404 when it may not)."""
    found = await run_in_threadpool(lambda: record_out(svc, visible_entry(svc, key, record_id)))
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
    """Records in log order from leaf ``cursor``, filtered by kind, actor and time, each
    shown as ``GET /v1/records/{id}`` shows it to the key (:mod:`chainaudit.api.visibility`):
    the records a key may not see are left out. A partner's page may hold fewer than
    ``limit`` records while ``next_cursor`` is set (at most
    :data:`PARTNER_SCAN_BUDGET` records are examined per page); ``next_cursor`` is null at
    the end of the log."""
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

    def page() -> RecordPage:
        log = svc.reader()
        viewer = Viewer(svc, key)
        budget = None if viewer.sees_everything else PARTNER_SCAN_BUDGET
        shown: list[RecordView] = []
        start, examined = cursor, 0
        while True:
            chunk = limit + 1 if budget is None else 1_000
            entries = log.scan(
                start=start,
                limit=chunk,
                kind=kind,
                actor=actor,
                since_ms=since_ms,
                until_ms=until_ms,
            )
            for entry in entries:
                examined += 1
                view = viewer.view(entry)
                if view is not None:
                    shown.append(view)
                    if len(shown) > limit:
                        return RecordPage(
                            items=[record_out(svc, v) for v in shown[:limit]],
                            next_cursor=shown[limit - 1].entry.index + 1,
                        )
                if budget is not None and examined >= budget:
                    return RecordPage(
                        items=[record_out(svc, v) for v in shown], next_cursor=entry.index + 1
                    )
            if len(entries) < chunk:
                return RecordPage(items=[record_out(svc, v) for v in shown], next_cursor=None)
            start = entries[-1].index + 1

    result = await run_in_threadpool(page)
    query = {"kind": kind, "actor": actor, "since": since, "until": until, "cursor": cursor}
    svc.reads.note(
        key,
        "records",
        " ".join(f"{k}={v}" for k, v in query.items() if v is not None),
        count=len(result.items),
    )
    return result
