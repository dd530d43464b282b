"""The per-key work budget: how much a key's requests may make the service examine.

The rate limit (:class:`chainaudit.api.auth.RateLimiter`) counts requests; a request that
lists records or deals may cost thousands of times more than one that reads a record. The
work budget counts that cost in **work units** — one per record examined, :data:`DEAL_READ`
per deal read from the chain — in a token bucket per key, refilled at
``work_budget_per_minute`` units a minute up to one minute's worth. A request is refused
(429 ``work-budget``, with ``Retry-After``) when the key's bucket cannot pay what it is
expected to cost (a page of ``limit`` records, ``limit`` deals); otherwise it runs, bounded
per page, and what it actually cost is charged afterwards (the bucket may go below zero, and
the next request waits until it can pay again).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Final

from chainaudit.api.problems import Problem

__all__ = ["DEAL_READ", "WorkBudget"]

DEAL_READ: Final = 50
"""Work units one deal read from the chain costs (a few dozen RPC calls)."""


class WorkBudget:
    """A token bucket of work units per key: ``per_minute`` units a minute, bursts up to a
    minute's worth. Thread-safe."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._spent: dict[str, int] = {}
        self._lock = threading.Lock()

    def _level(self, key_id: str, now: float) -> float:
        units, last = self._buckets.get(key_id, (float(self.per_minute), now))
        return min(float(self.per_minute), units + (now - last) * self._rate)

    def wait(self, key_id: str, units: int = 1) -> float:
        """0 when ``key_id`` has ``units`` (at most a minute's worth) to spend now, else the
        seconds until it has."""
        need = min(max(units, 1), self.per_minute)
        now = time.monotonic()
        with self._lock:
            level = self._level(key_id, now)
            self._buckets[key_id] = (level, now)
            return 0.0 if level >= need else (need - level) / self._rate

    def check(self, key_id: str, units: int = 1) -> None:
        """Raise 429 ``work-budget`` (with ``Retry-After``) when the key's budget cannot pay
        ``units``, what the request is expected to cost (at most a minute's worth)."""
        wait = self.wait(key_id, units)
        if wait > 0:
            raise Problem(
                429,
                "work-budget",
                f"this key's work budget of {self.per_minute} units a minute cannot pay for "
                f"this request (about {units} units: one per record examined, {DEAL_READ} per "
                f"deal read from the chain); retry after {math.ceil(wait)} s, and make each "
                "request cheaper: narrow a record list with kind, actor, since and until, and "
                "lower limit",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )

    def charge(self, key_id: str, units: int) -> None:
        """Spend ``units`` of the key's budget (after the work is done)."""
        now = time.monotonic()
        with self._lock:
            self._buckets[key_id] = (self._level(key_id, now) - units, now)
            self._spent[key_id] = self._spent.get(key_id, 0) + units

    def spent(self, key_id: str) -> int:
        """The units ``key_id`` spent since the service started (for metrics and tests)."""
        with self._lock:
            return self._spent.get(key_id, 0)
