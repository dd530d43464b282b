"""Recording who did what: every write and privileged action becomes a log record.

The record is of kind ``admin`` (key management, pause, settings) or ``decision``; its actor is
``key:<key id>`` (or ``cli:<user>`` for the command line) and its payload names the action and
its parameters, so the audit trail covers the system's own operation.
"""

from __future__ import annotations

import getpass
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from chainaudit.core import provenance
from chainaudit.core.records import prepare
from chainaudit.log.store import AppendResult, Log

__all__ = ["cli_actor", "now_rfc3339", "record_action"]


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def record_action(
    log: Log,
    *,
    action: str,
    actor: str,
    details: dict[str, Any],
    kind: str = "admin",
    submitter: str = provenance.KEYS,
) -> AppendResult:
    """Append an action record, stamped with the service identity ``submitter`` (key
    management by default), and return where it landed."""
    record = prepare(
        {
            "id": f"action-{int(time.time() * 1000)}-{uuid.uuid4().hex[:12]}",
            "kind": kind,
            "timestamp": now_rfc3339(),
            "actor": actor,
            "payload": {"action": action, **details},
        },
        submitter=submitter,
    )
    return log.append([record])
