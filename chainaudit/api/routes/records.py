"""``/v1/records``: append one record or a batch, read one, list with filters."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, ClassVar

from fastapi import APIRouter, Query, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from chainaudit.api.auth import Reader, ServicesDep, Writer, actor_of
from chainaudit.api.budget import DEAL_READ
from chainaudit.api.problems import Problem
from chainaudit.api.services import Services
from chainaudit.api.visibility import RecordView, Viewer
from chainaudit.core import minimum, provenance
from chainaudit.core.errors import (
    ChainauditError,
    NotFoundError,
    RecordError,
    ReservedError,
    VerificationError,
)
from chainaudit.core.jsonlimits import pointer_token
from chainaudit.core.records import KINDS, PreparedRecord, parse_timestamp, prepare
from chainaudit.core.signing import recover_record_signer
from chainaudit.core.wire import hex0x
from chainaudit.log.actions import now_rfc3339
from chainaudit.log.record_index import Filters, RecordIndex
from chainaudit.log.store import AppendResult, Log
from chainaudit.service.keys import ApiKey

__all__ = ["BatchIn", "RecordIn", "router", "visible_entry"]

router = APIRouter(prefix="/v1/records", tags=["records"])

HEX32 = r"^0x[0-9a-fA-F]{64}$"
NEW_ID = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
"""The grammar of ids the API accepts for new records: :data:`chainaudit.core.records._ID`
without ``/``, which would make the id two segments of the URL ``/v1/records/{id}``."""
PARTNER_SCAN_BUDGET = 2_000
"""The most records one page of a partner's list examines: only records it might see are
examined (from the record index), but the visibility rule may still hide some of them."""


class RecordIn(BaseModel):
    """A record to append. ``salt`` is drawn by the server unless given (it must be given
    when the record is signed, since the signature covers the leaf hash).

    The server stamps ``submitter: "key:<key id>"`` into the record's hashed canonical bytes
    (the key id is the middle part of the token ``ca_<key id>_<secret>``); a client may not
    send ``submitter`` itself (422). A signed record's EIP-712 signature therefore covers the
    leaf hash of the record *with* that field: ``records.prepare(record,
    submitter="key:<key id>").leaf_hash``. Kinds ``decision``, ``escrow_event``, ``admin`` and
    ids under ``escrow:``, ``action-``, ``risk:``, ``reconcile:``, ``integrity:`` and the other
    prefixes of :data:`chainaudit.core.provenance.RESERVED_PREFIXES` are written only by the
    service: 403 ``reserved`` for every key, admin and operator included. A kind whose data policy
    declares its ``allowed`` payload fields refuses any other (422 ``undeclared-fields``,
    one error per field, :mod:`chainaudit.core.minimum`)."""

    model_config = ConfigDict(extra="forbid")
    shape: ClassVar[str] = (
        'a JSON object {"id", "kind", "timestamp", "actor", "payload"} (optional: "salt", '
        '"signature", "signer"), e.g. {"id": "po-1", "kind": "transaction", "timestamp": '
        '"2026-11-21T09:30:00Z", "actor": "buyer:acme", "payload": {"amount": 125000}}'
    )
    hints: ClassVar[dict[str, str]] = {
        "id": "1-128 characters of A-Z a-z 0-9 . _ : @ - starting with a letter or digit, "
        'e.g. "po-2026-0001" (no "/": the id is part of the URL /v1/records/{id})',
        "kind": 'a record kind, e.g. "transaction" (GET /v1/records?kind=x answers an '
        "unknown kind with the list)",
        "timestamp": "RFC 3339 with a time zone, e.g. 2026-11-21T09:30:00Z",
        "actor": "1-256 printable characters, e.g. buyer:acme",
        "payload": 'a JSON object, e.g. {"amount": 125000, "currency": "USD"}',
        "salt": "32 lowercase hex digits (omit it and the server draws one)",
        "signature": "0x followed by 130 hex digits (an EIP-712 AuditRecord signature)",
        "signer": "an Ethereum address: 0x followed by 40 hex digits",
    }

    id: str = Field(
        min_length=1,
        max_length=128,
        pattern=NEW_ID,
        examples=["po-2026-0001"],
        description='No "/": new ids must be readable at /v1/records/{id} (ids with "/" '
        "already in a log, e.g. from `chainaudit ingest`, stay readable there)",
    )
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
    """Records to append all or nothing: ``{"records": [record, ...]}``."""

    model_config = ConfigDict(extra="forbid")
    shape: ClassVar[str] = (
        'a JSON object {"records": [record, ...]} holding 1 to 10,000 records, each as '
        "POST /v1/records takes it"
    )
    hints: ClassVar[dict[str, str]] = {
        "records": 'a JSON array of 1 to 10,000 records; the body is {"records": [record, ...]}'
    }

    records: list[RecordIn] = Field(
        min_length=1,
        json_schema_extra={"maxItems": 10_000},  # the setting, checked by the route: 413
        description="1 to max_records_per_request (10,000) records; more get 413",
    )


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
    masked: bool = Field(
        default=False,
        description='true when fields the data policy marks personal are shown as "[personal]" '
        "(an auditor or regulator key without the personal-data permission): the record then "
        "no longer hashes to leaf_hash",
    )


class RecordPage(BaseModel):
    items: list[RecordOut]
    next_cursor: int | None = Field(description="pass as `cursor` for the next page")


def _prepare_all(
    svc: Services, key: ApiKey, items: list[RecordIn], batch: bool
) -> tuple[list[PreparedRecord], dict[str, tuple[str, str]]]:
    prepared: list[PreparedRecord] = []
    signatures: dict[str, tuple[str, str]] = {}
    for position, item in enumerate(items):
        where = f"records[{position}]" if len(items) > 1 else "record"
        pointer = f"/records/{position}" if batch else ""
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
        refused = minimum.undeclared_message(svc.policy, item.kind, item.payload)
        if refused is not None:  # minimum necessary: the kind's policy declares its fields
            raise Problem(
                422,
                "undeclared-fields",
                f"{where}: {refused}",
                errors=[
                    {
                        "in": "body",
                        "pointer": f"{pointer}/payload/{pointer_token(name)}",
                        "message": f"{where}: {refused}",
                    }
                    for name in svc.policy.for_kind(item.kind).undeclared(item.payload)
                ],
            )
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
                errors=[{"in": "body", "pointer": pointer, "message": str(exc)}],
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


async def _append(svc: Services, key: ApiKey, items: list[RecordIn], *, batch: bool) -> AppendOut:
    prepared, signatures = await run_in_threadpool(_prepare_all, svc, key, items, batch)
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
    return await _append(svc, key, [record], batch=False)


@router.post("/batch", status_code=status.HTTP_201_CREATED, response_model=AppendOut)
async def append_batch(batch: BatchIn, key: Writer, svc: ServicesDep) -> AppendOut:
    """Append up to 10,000 records, all or nothing."""
    if len(batch.records) > svc.settings.max_records_per_request:
        raise Problem(
            413,
            "too-many-records",
            f"at most {svc.settings.max_records_per_request} records per request; "
            f"this one holds {len(batch.records)}: split it",
            errors=[
                {
                    "in": "body",
                    "pointer": "/records",
                    "message": f"at most {svc.settings.max_records_per_request} records",
                }
            ],
        )
    return await _append(svc, key, batch.records, batch=True)


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
        masked=view.masked,
    )


def _paged(svc: Services, shown: list[RecordView], limit: int, resume: int | None) -> RecordPage:
    """A page of the first ``limit`` of ``shown`` (``limit + 1`` were asked for, to know if
    there are more); when there are none, ``next_cursor`` is ``resume``."""
    if len(shown) > limit:
        return RecordPage(
            items=[record_out(svc, v) for v in shown[:limit]],
            next_cursor=shown[limit - 1].entry.index + 1,
        )
    return RecordPage(items=[record_out(svc, v) for v in shown], next_cursor=resume)


def _partner_page(
    svc: Services,
    log: Log,
    index: RecordIndex,
    viewer: Viewer,
    filters: Filters,
    cursor: int,
    limit: int,
) -> tuple[RecordPage, int]:
    """A partner's page: only the records it might see are read (its own, the escrow
    events naming it, the records of the deals the party index lists it in:
    :meth:`~chainaudit.log.record_index.RecordIndex.candidates`), at most
    :data:`PARTNER_SCAN_BUDGET` of them; the visibility rule decides each. Returns the page
    and how many records were examined."""
    key = viewer.key
    actors = [f"key:{key.key_id}"] + ([key.address] if key.address else [])
    try:
        deals = [str(d) for d in svc.party_deals(key.address)]
    except ChainauditError:
        deals = []  # the chain or the party index cannot be read: show nothing of deals
    shown: list[RecordView] = []
    start, examined = cursor, 0
    while True:
        chunk = min(limit + 1, PARTNER_SCAN_BUDGET - examined)
        found = index.candidates(
            filters, start=start, limit=chunk, actors=actors, party=key.address, deals=deals
        )
        entries = log.entries_at(found)
        examined += len(found)
        for entry in entries:
            view = viewer.view(entry)
            if view is not None:
                shown.append(view)
                if len(shown) > limit:
                    return _paged(svc, shown, limit, None), examined
        if len(found) < chunk:
            return _paged(svc, shown, limit, None), examined
        start = found[-1] + 1
        if examined >= PARTNER_SCAN_BUDGET:
            return _paged(svc, shown, limit, start), examined


def visible_entry(svc: Services, key: ApiKey, record_id: str) -> RecordView:
    """The record as ``key`` may see it (:class:`~chainaudit.api.visibility.Viewer`, the one
    visibility rule); 404 when it does not exist or the key may not see it (no existence
    leak)."""
    if not record_id:
        raise Problem(
            404,
            "not-found",
            "no record id given: GET /v1/records/{id}, or list them with GET /v1/records",
        )
    try:
        entry = svc.reader().entry(record_id)
    except NotFoundError as exc:
        raise Problem(404, "not-found", f"no record with id {record_id!r}") from exc
    view = Viewer(svc, key).view(entry)
    if view is None:
        raise Problem(404, "not-found", f"no record with id {record_id!r}")
    return view


@router.get("/{record_id:path}", response_model=RecordOut)
async def get_record(record_id: str, key: Reader, svc: ServicesDep) -> RecordOut:
    """One record with its leaf index and hash, as the key may see it (404 when it may not).

    An id with ``/`` (the API refuses them for new records; a log may hold them from
    ``chainaudit ingest``) is read as it is, ``/v1/records/a/b``, or encoded,
    ``/v1/records/a%2Fb``. This route is registered after ``…/{id}/proof`` and
    ``…/{id}/bundle``, which therefore win for an id whose last segment is ``proof`` or
    ``bundle``."""
    found = await run_in_threadpool(lambda: record_out(svc, visible_entry(svc, key, record_id)))
    svc.reads.note(key, "record", record_id)
    return found


def check_filters(
    svc: Services, kind: str | None, since: str | None, until: str | None
) -> tuple[int | None, int | None]:
    """Validate the list filters (422 saying why: an unknown kind, a time that is not RFC 3339,
    ``since`` after ``until``); return ``since`` and ``until`` in milliseconds."""
    errors: list[dict[str, str]] = []
    if kind is not None and kind not in svc.kinds | KINDS:
        allowed = ", ".join(sorted(svc.kinds | KINDS))
        errors.append(
            {"in": "query", "pointer": "/kind", "message": f"kind must be one of: {allowed}"}
        )
    times: dict[str, int | None] = {}
    for name, value in (("since", since), ("until", until)):
        try:
            times[name] = parse_timestamp(value) if value is not None else None
        except RecordError:
            times[name] = None
            errors.append(
                {
                    "in": "query",
                    "pointer": f"/{name}",
                    "message": f"{name} must be RFC 3339 with a time zone, e.g. "
                    f"2026-11-21T09:30:00Z; got {value!r}",
                }
            )
    since_ms, until_ms = times["since"], times["until"]
    if since_ms is not None and until_ms is not None and since_ms > until_ms:
        errors.append(
            {
                "in": "query",
                "pointer": "/since",
                "message": f"since ({since}) is after until ({until}): since is inclusive, "
                "until exclusive, so since must not be later than until",
            }
        )
    if errors:
        raise Problem(422, "validation", "; ".join(e["message"] for e in errors), errors=errors)
    return since_ms, until_ms


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
    the records a key may not see are left out. Filters read the record index
    (:mod:`chainaudit.log.record_index`), never the whole log; a partner's list reads only the
    records it might see (its own, the escrow events naming it, the records of its deals).
    A partner's page may hold fewer than ``limit`` records while ``next_cursor`` is set (at
    most :data:`PARTNER_SCAN_BUDGET` records are examined per page); ``next_cursor`` is null
    at the end of the log. Every record examined costs a unit of the key's work budget, every
    deal read from the chain to decide what a partner sees
    :data:`~chainaudit.api.budget.DEAL_READ` (:mod:`chainaudit.api.budget`): 429
    ``work-budget`` once it is spent."""
    since_ms, until_ms = check_filters(svc, kind, since, until)

    filters = Filters(kind=kind, actor=actor, since_ms=since_ms, until_ms=until_ms)
    svc.budget.check(key.key_id, limit + 1)

    def page() -> tuple[RecordPage, int]:
        log, index = svc.indexed()
        viewer = Viewer(svc, key)
        if viewer.sees_everything:
            if filters.empty:
                entries = log.scan(start=cursor, limit=limit + 1)
            else:
                entries = log.entries_at(index.matching(filters, start=cursor, limit=limit + 1))
            views = [v for e in entries if (v := viewer.view(e)) is not None]
            return _paged(svc, views, limit, None), len(entries)
        page, examined = _partner_page(svc, log, index, viewer, filters, cursor, limit)
        return page, examined + viewer.deals_read * DEAL_READ

    result, examined = await run_in_threadpool(page)
    svc.budget.charge(key.key_id, examined)
    query = {"kind": kind, "actor": actor, "since": since, "until": until, "cursor": cursor}
    svc.reads.note(
        key,
        "records",
        " ".join(f"{k}={v}" for k, v in query.items() if v is not None),
        count=len(result.items),
    )
    return result
