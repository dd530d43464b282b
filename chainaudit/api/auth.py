"""Authentication (API keys), authorisation (roles) and per-key rate limiting."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from chainaudit.api.problems import Problem
from chainaudit.api.services import Services
from chainaudit.service.keys import ApiKey

__all__ = [
    "READERS",
    "Admin",
    "Operator",
    "Principal",
    "RateLimiter",
    "Reader",
    "ServicesDep",
    "Writer",
    "actor_of",
    "principal",
    "require",
]

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer ca_<id>_<secret>`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False)


class RateLimiter:
    """A token bucket per key: ``rate`` requests per second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one token; return 0 if allowed, else the seconds until one is available."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


async def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


ServicesDep = Annotated[Services, Depends(services)]


async def principal(
    request: Request,
    svc: ServicesDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> ApiKey:
    """The API key of the request; 401 without a valid key (naming the expiry of an expired
    one), 429 over its rate."""
    token = bearer.credentials if bearer is not None else header
    if not token:
        raise Problem(
            401,
            "unauthenticated",
            "send an API key as `Authorization: Bearer <key>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    key = svc.cached_key(token)
    if key is None:  # the key store is SQLite: read it off the event loop
        key = await run_in_threadpool(svc.authenticate, token)
    if key is None:
        raise Problem(
            401,
            "unauthenticated",
            "the API key is unknown or revoked",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if key.expired():
        raise Problem(
            401,
            "key-expired",
            key.expiry_detail(),
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    limiter: RateLimiter = request.app.state.limiter
    wait = limiter.take(key.key_id)
    if wait > 0:
        raise Problem(
            429,
            "rate-limited",
            f"rate limit of {limiter.rate:g} requests/s exceeded",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    request.state.key = key
    return key


Principal = Annotated[ApiKey, Depends(principal)]


def require(*roles: str) -> Callable[[ApiKey], Awaitable[ApiKey]]:
    """A dependency admitting only keys with one of ``roles`` (403 otherwise)."""

    async def check(key: Principal) -> ApiKey:
        if key.role not in roles:
            raise Problem(
                403, "forbidden", f"the {key.role} role may not do this; needs {', '.join(roles)}"
            )
        return key

    return check


READERS = ("admin", "operator", "partner", "auditor", "regulator")
WRITERS = ("admin", "operator", "partner")
Reader = Annotated[ApiKey, Depends(require(*READERS))]
Writer = Annotated[ApiKey, Depends(require(*WRITERS))]
Operator = Annotated[ApiKey, Depends(require("admin", "operator"))]
Admin = Annotated[ApiKey, Depends(require("admin"))]


def actor_of(key: ApiKey) -> str:
    return f"key:{key.key_id}"
