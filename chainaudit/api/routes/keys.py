"""``/v1/keys``: API key management (admin only). Every change is an audit record.

Auditor and regulator keys are created by one admin; admin, operator and partner keys need
two (``POST /v1/keys`` answers 202 with a ``keys.create`` request that a second admin
approves at ``/v1/approvals/{id}/approve``, which returns the token). A key may expire
(``expires_ms``); ``POST /v1/keys/{id}/rotate`` gives it a new secret (the old token stops
working at once) and a new expiry: by the holder itself alone, by one admin for auditor and
regulator keys, by two admins for another holder's admin, operator or partner key.

The **personal-data permission** of an auditor or regulator key (without it the API masks the
fields the data policy marks personal): ``POST /v1/keys/{id}/personal-data`` records a
``keys.grant-personal-data`` request (202) that a second admin approves;
``DELETE /v1/keys/{id}/personal-data`` withdraws it at once (one admin).
"""

from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from chainaudit.api.auth import Admin, Principal, ServicesDep, actor_of
from chainaudit.api.problems import Problem
from chainaudit.api.routes.approvals import ApprovalOut, create_request
from chainaudit.app.controls import KEY_ROLES_NEEDING_TWO
from chainaudit.core import provenance
from chainaudit.core.errors import InputError, NotFoundError
from chainaudit.core.records import prepare
from chainaudit.log.actions import now_rfc3339
from chainaudit.service.keys import READ_ONLY_ROLES, ROLES, ApiKey

__all__ = ["router"]

router = APIRouter(prefix="/v1/keys", tags=["keys"])


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    role: str = Field(description=f"one of {', '.join(ROLES)}")
    address: str | None = Field(
        default=None,
        pattern=r"^0x[0-9a-fA-F]{40}$",
        description="partners: the address it acts for; officers: their own on-chain account",
    )
    expires_ms: int | None = Field(default=None, gt=0, description="expiry, Unix ms")


class KeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expires_ms: int | None = Field(default=None, gt=0, description="the new expiry, Unix ms")


class KeyPublic(BaseModel):
    key_id: str
    name: str
    role: str
    address: str | None
    created_ms: int
    revoked_ms: int | None
    expires_ms: int | None
    rotated_ms: int | None
    personal_data: bool = Field(
        default=False, description="reads personal fields unmasked (auditor, regulator keys)"
    )


class KeyCreated(KeyPublic):
    token: str = Field(description="shown once; store it safely")


def _public(key: ApiKey) -> KeyPublic:
    return KeyPublic(**{name: getattr(key, name) for name in KeyPublic.model_fields})


async def _audit(svc: ServicesDep, actor: ApiKey, action: str, target: ApiKey) -> None:
    record = prepare(
        {
            "id": f"action-{action}-{target.key_id}-{now_rfc3339()}".replace(":", "-").replace(
                "+", "-"
            ),
            "kind": "admin",
            "timestamp": now_rfc3339(),
            "actor": actor_of(actor),
            "payload": {
                "action": action,
                "key_id": actor.key_id,
                "target_key": target.key_id,
                "role": target.role,
                "address": target.address,
                "expires_ms": target.expires_ms,
            },
        },
        submitter=provenance.KEYS,
    )
    await svc.writer.append([record])


@router.get("", response_model=list[KeyPublic])
async def list_keys(key: Admin, svc: ServicesDep) -> list[KeyPublic]:
    return [_public(k) for k in await run_in_threadpool(svc.keys.list)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=KeyCreated,
    responses={202: {"model": ApprovalOut, "description": "admin, operator, partner: requested"}},
)
async def create_key(body: KeyCreate, key: Admin, svc: ServicesDep) -> KeyCreated | JSONResponse:
    """Create an auditor or regulator key (201 with its token); for an admin, operator or
    partner key record a ``keys.create`` request (202) for a second admin to approve."""
    if body.role in KEY_ROLES_NEEDING_TWO:
        params = body.model_dump()
        requested = await create_request(svc, key, "keys.create", params, None)
        return JSONResponse(status_code=202, content=requested.model_dump())
    try:
        created, token = await run_in_threadpool(
            svc.keys.create,
            body.role,
            name=body.name,
            address=body.address,
            expires_ms=body.expires_ms,
        )
    except InputError as exc:
        raise Problem(
            422, "validation", str(exc), errors=[{"in": "body", "pointer": "", "message": str(exc)}]
        ) from exc
    await _audit(svc, key, "keys.create", created)
    return KeyCreated(**_public(created).model_dump(), token=token)


@router.post(
    "/{key_id}/rotate",
    response_model=KeyCreated,
    responses={202: {"model": ApprovalOut, "description": "another holder's key: requested"}},
)
async def rotate_key(
    key_id: str, key: Principal, svc: ServicesDep, body: KeyRotate | None = None
) -> KeyCreated | JSONResponse:
    """Give a key a new secret (the old token is refused from now on) and a new expiry (none
    unless given); returns the new token once.

    A holder rotates its own key alone (then no one else ever saw the token); an admin rotates
    an auditor's or regulator's key alone; another holder's admin, operator or partner key
    needs a second admin (202 with a ``keys.rotate`` request)."""
    expires = body.expires_ms if body is not None else None
    if key_id != key.key_id:
        if key.role != "admin":
            raise Problem(403, "forbidden", "only admins rotate another holder's key")
        try:
            target = await run_in_threadpool(svc.keys.get, key_id)
        except NotFoundError as exc:
            raise Problem(404, "not-found", str(exc)) from exc
        if target.role in KEY_ROLES_NEEDING_TWO:
            params = {"key_id": key_id, "expires_ms": expires}
            requested = await create_request(svc, key, "keys.rotate", params, None)
            return JSONResponse(status_code=202, content=requested.model_dump())
    try:
        rotated, token = await run_in_threadpool(svc.keys.rotate, key_id, expires_ms=expires)
    except NotFoundError as exc:
        raise Problem(404, "not-found", str(exc)) from exc
    except InputError as exc:
        raise Problem(409, "key-state", str(exc)) from exc
    svc.forget_key(rotated.key_id)
    await _audit(svc, key, "keys.rotate", rotated)
    return KeyCreated(**_public(rotated).model_dump(), token=token)


@router.delete("/{key_id}", response_model=KeyPublic)
async def revoke_key(key_id: str, key: Admin, svc: ServicesDep) -> KeyPublic:
    try:
        revoked = await run_in_threadpool(svc.keys.revoke, key_id)
    except NotFoundError as exc:
        raise Problem(404, "not-found", str(exc)) from exc
    svc.forget_key(revoked.key_id)
    await _audit(svc, key, "keys.revoke", revoked)
    return _public(revoked)


async def _read_only_key(svc: ServicesDep, key_id: str) -> ApiKey:
    """The active auditor or regulator key ``key_id`` (404 unknown, 409 another role)."""
    try:
        target = await run_in_threadpool(svc.keys.get, key_id)
    except NotFoundError as exc:
        raise Problem(404, "not-found", str(exc)) from exc
    if not target.active or target.role not in READ_ONLY_ROLES:
        raise Problem(
            409,
            "key-state",
            f"API key {key_id} is {'revoked' if not target.active else 'a ' + target.role} "
            "key: only active auditor and regulator keys carry the personal-data permission",
        )
    return target


@router.post(
    "/{key_id}/personal-data",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ApprovalOut,
)
async def grant_personal_data(key_id: str, key: Admin, svc: ServicesDep) -> ApprovalOut:
    """Request the personal-data permission for an auditor or regulator key: a
    ``keys.grant-personal-data`` request (202) that a second admin approves at
    ``/v1/approvals/{id}/approve``. 404 for an unknown key, 409 for a revoked key or a key
    of another role."""
    await _read_only_key(svc, key_id)
    return await create_request(svc, key, "keys.grant-personal-data", {"key_id": key_id}, None)


@router.delete("/{key_id}/personal-data", response_model=KeyPublic)
async def withdraw_personal_data(key_id: str, key: Admin, svc: ServicesDep) -> KeyPublic:
    """Withdraw a key's personal-data permission at once (one admin: it only narrows what the
    key reads); the key's next request is masked again. Audited as ``keys.withdraw-personal-
    data``."""
    await _read_only_key(svc, key_id)
    try:
        changed = await run_in_threadpool(svc.keys.set_personal_data, key_id, False)
    except (NotFoundError, InputError) as exc:
        raise Problem(409, "key-state", str(exc)) from exc
    svc.forget_key(changed.key_id)
    await _audit(svc, key, "keys.withdraw-personal-data", changed)
    return _public(changed)
