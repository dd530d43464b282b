"""Minimum necessary at the door: refuse records carrying payload fields their kind does not
declare.

A kind whose data policy (:mod:`chainaudit.core.datapolicy`) lists ``allowed`` top-level payload
fields accepts only those; a record of it with any other field is refused naming them, by
``POST /v1/records`` and ``/v1/records/batch`` (422) and by ``chainaudit ingest`` (exit 2,
naming the line). Kinds without ``allowed`` accept any payload, so existing kinds keep
working until a policy opts them in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chainaudit.core.datapolicy import DataPolicy
from chainaudit.core.errors import InputError, RecordError

__all__ = ["check_file", "undeclared_message"]


def undeclared_message(policy: DataPolicy, kind: str, payload: Mapping[str, Any]) -> str | None:
    """Why a record of ``kind`` with ``payload`` is refused, or ``None`` when it is not: the
    message names the undeclared fields and the fields the kind allows."""
    spec = policy.for_kind(kind)
    extra = spec.undeclared(payload)
    if not extra:
        return None
    assert spec.allowed is not None  # undeclared() finds fields only for a closed kind
    return (
        f"payload field(s) {', '.join(extra)} are not declared for kind {kind!r} "
        f"(minimum necessary: the data policy allows only {', '.join(sorted(spec.allowed))})"
    )


def check_file(path: Path, policy: DataPolicy) -> None:
    """Refuse a JSON-lines file holding a record with undeclared payload fields.

    Reads the file once before anything is appended, and only when some kind of ``policy``
    declares ``allowed`` fields (otherwise it returns at once). A line that is not a JSON
    object with a string ``kind`` and an object ``payload`` is left to the ingest's own
    checks. Raises :class:`RecordError` naming the first offending line and its fields,
    :class:`InputError` when the file cannot be read.
    """
    closed = {kind for kind, spec in policy.kinds.items() if spec.allowed is not None}
    if not closed:
        return
    needles = [json.dumps(kind).encode() for kind in closed]
    try:
        with path.open("rb") as source:
            for number, raw in enumerate(source, start=1):
                if b"\\u" not in raw and not any(needle in raw for needle in needles):
                    continue  # no closed kind's name on the line (nor an escape that may
                    # spell one): nothing to check
                try:
                    document = json.loads(raw)
                except ValueError:
                    continue  # the ingest refuses it with its own message
                if not isinstance(document, dict):
                    continue
                kind, payload = document.get("kind"), document.get("payload")
                if not isinstance(kind, str) or not isinstance(payload, dict):
                    continue
                message = undeclared_message(policy, kind, payload)
                if message is not None:
                    raise RecordError(message, line=number)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
