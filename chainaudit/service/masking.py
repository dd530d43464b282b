"""Masking personal data for readers without the personal-data permission.

Pure, no I/O. The data policy (:mod:`chainaudit.core.datapolicy`) names each kind's personal
fields as RFC 6901 JSON pointers into the record's ``payload``; :func:`mask_document` returns
a copy of a record whose value at each of those pointers is replaced by :data:`MASK`. A
pointer that does not resolve in a given payload (the field is absent) masks nothing there.

Who is masked (:func:`masked_reader`): auditor and regulator keys without the
``personal_data`` permission. Officers (admin, operator) read records whole; a partner reads
only what :mod:`chainaudit.api.visibility` lets it (its own records, its deals' records).
A masked record no longer hashes to its leaf: responses carrying one say ``"masked": true``
and proof bundles for a masked reader carry no record (``"withheld"``, see
:data:`WITHHELD_REASON`), so the leaf hash alone is verified.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, Final

from chainaudit.core.datapolicy import DataPolicy, pointer_parts
from chainaudit.service.keys import READ_ONLY_ROLES, ApiKey

__all__ = ["MASK", "MASKED_ROLES", "WITHHELD_REASON", "mask_document", "mask_payload"]

MASK: Final = "[personal]"
"""What a masked reader sees in place of each personal field's value."""
MASKED_ROLES: Final = frozenset(READ_ONLY_ROLES)
"""The roles whose keys see personal fields masked unless they carry the permission."""
WITHHELD_REASON: Final = (
    "personal data: the record holds fields the data policy marks personal and this key "
    "lacks the personal-data permission; the leaf hash alone is proven"
)
"""The ``withheld`` reason of a proof bundle made for a masked reader."""


def masked_reader(key: ApiKey) -> bool:
    """Whether ``key`` sees personal fields masked (an auditor or regulator key without the
    ``personal_data`` permission)."""
    return key.role in MASKED_ROLES and not key.personal_data


def mask_payload(payload: Any, pointers: Iterable[str]) -> tuple[Any, bool]:
    """``payload`` with the value at each of ``pointers`` replaced by :data:`MASK`.

    Preconditions: each pointer is an RFC 6901 pointer (``/a/b``, ``/list/0``). ``payload`` is
    not changed; the result is a copy when anything was masked. Returns the result and
    whether any value was masked (a pointer that does not resolve is skipped).
    """
    result = payload
    changed = False
    for pointer in pointers:
        parts = pointer_parts(pointer)
        if not _resolves(result, parts):
            continue
        if not changed:
            result = copy.deepcopy(payload)
            changed = True
        parent = result
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if isinstance(parent, list):
            parent[int(last)] = MASK
        else:
            parent[last] = MASK
    return result, changed


def _resolves(value: Any, parts: list[str]) -> bool:
    for part in parts:
        if isinstance(value, Mapping):
            if part not in value:
                return False
            value = value[part]
        elif isinstance(value, list):
            if not part.isdigit() or int(part) >= len(value) or (part != "0" and part[0] == "0"):
                return False
            value = value[int(part)]
        else:
            return False
    return True


def mask_document(
    policy: DataPolicy, kind: str, document: Mapping[str, Any]
) -> tuple[dict[str, Any], bool]:
    """A record ``document`` of ``kind`` with its personal payload fields masked (a new
    object; ``document`` is not changed), and whether anything was masked. When the kind
    names no personal field or the payload holds none, ``document`` itself is returned.

    A masked document also leaves out its ``salt``: with the salt and the leaf hash, a
    guessable personal value (a name from a list, a date) could be confirmed offline by
    hashing guesses; without it the leaf hash reveals nothing (:mod:`chainaudit.core.records`)."""
    pointers = policy.for_kind(kind).personal
    payload = document.get("payload")
    masked, changed = mask_payload(payload, pointers) if pointers and payload else (None, False)
    if not changed:  # nothing personal here: the document itself, uncopied
        return document if isinstance(document, dict) else dict(document), False
    kept = {key: value for key, value in document.items() if key != "salt"}
    return {**kept, "payload": masked}, True
