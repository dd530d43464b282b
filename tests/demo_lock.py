"""One demo at a time across the test processes: ``make demo`` takes its fixed ports (Anvil 8545,
the API 8000) when they are free, and ``make test`` runs two pytest-xdist workers."""

from __future__ import annotations

import fcntl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK = Path(tempfile.gettempdir()) / "chainaudit-test-demo.lock"


@contextmanager
def demo_running() -> Iterator[None]:
    """Hold the machine-wide demo lock for the block (another worker's demo waits)."""
    with LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
