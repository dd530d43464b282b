"""The fuzzing budget: small inside `make test`, large under `make fuzz` (``FUZZ=long``).

Every fuzz test takes its hypothesis settings from :func:`fuzz_settings`, so one variable
scales them all. The per-example ``deadline`` is the hang guard: an input that makes a parser
take seconds fails the test with that input (pytest-timeout stops a true infinite loop).
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

LONG = os.environ.get("FUZZ", "") == "long"
"""True under `make fuzz`."""

LONG_FACTOR = 100
"""How many times more examples `make fuzz` runs than `make test`."""


def fuzz_settings(examples: int, *, deadline_seconds: float = 2.0) -> settings:
    """Hypothesis settings for ``examples`` examples (times :data:`LONG_FACTOR` under
    ``FUZZ=long``), no example database (runs are independent), a per-example deadline."""
    return settings(
        max_examples=examples * LONG_FACTOR if LONG else examples,
        deadline=timedelta(seconds=deadline_seconds),
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )
