"""The data policy: what each record kind may hold, what of it is personal, how it is kept.

Pure: parsing and lookups only; reading the file is the caller's single ``Path.read_text``.
A deployment declares its policy in one JSON file (setting ``data_policy_file``)::

    {"kinds": {
        "transaction": {
            "personal": ["/contact/name", "/contact/email", "/bank_account"],
            "allowed": ["po_number", "amount", "currency", "contact", "bank_account"],
            "encrypt": true,
            "retention_days": 3650
        }
    }}

Every key of a kind is optional:

* ``personal``: RFC 6901 JSON pointers into the record's ``payload`` naming personal data
  (masked for readers without the personal-data permission).
* ``allowed``: the top-level payload fields a record of the kind may carry ("minimum
  necessary"); absent means any field is accepted, so existing kinds keep working.
* ``encrypt``: store the kind's record bodies encrypted at rest (default false).
* ``retention_days``: erase the kind's payloads this many days after the record's timestamp;
  absent means kept for ever.

A kind the file does not name gets :data:`OPEN` (everything allowed, nothing personal, plain,
kept).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from chainaudit.core.errors import ConfigError
from chainaudit.core.provenance import RESERVED_KINDS

__all__ = ["OPEN", "DataPolicy", "KindPolicy", "load", "pointer_parts"]

_KIND_KEYS = frozenset({"personal", "allowed", "encrypt", "retention_days"})
MAX_RETENTION_DAYS = 100 * 366


@dataclass(frozen=True)
class KindPolicy:
    """What one record kind may hold and how it is kept (see the module docstring)."""

    personal: tuple[str, ...] = ()
    allowed: frozenset[str] | None = None
    encrypt: bool = False
    retention_days: int | None = None

    def undeclared(self, payload: Mapping[str, Any]) -> list[str]:
        """The payload's top-level fields the kind does not allow, sorted; [] when open."""
        if self.allowed is None:
            return []
        return sorted(name for name in payload if name not in self.allowed)


OPEN = KindPolicy()
"""The policy of a kind the file does not name."""


@dataclass(frozen=True)
class DataPolicy:
    """The per-kind policies of a deployment; :meth:`for_kind` never fails."""

    kinds: Mapping[str, KindPolicy] = field(default_factory=lambda: MappingProxyType({}))

    def private_kinds(self) -> frozenset[str]:
        """The kinds whose records the policy keeps from anonymous readers: those with
        personal fields or encrypted at rest (their C2SP entry bundles are not published)."""
        return frozenset(k for k, p in self.kinds.items() if p.personal or p.encrypt)

    def for_kind(self, kind: str) -> KindPolicy:
        """The policy of ``kind``, or :data:`OPEN` when the file does not name it."""
        return self.kinds.get(kind, OPEN)

    @classmethod
    def parse(cls, text: str, *, source: str = "data policy") -> DataPolicy:
        """Parse a policy file's text.

        Raises:
            ConfigError: the text is not JSON of the shape in the module docstring; the
                message names the kind and key at fault.
        """
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{source}: not JSON: {exc}") from exc
        if not isinstance(document, dict) or set(document) - {"kinds"}:
            raise ConfigError(f'{source}: expected an object {{"kinds": {{...}}}}')
        kinds = document.get("kinds", {})
        if not isinstance(kinds, dict):
            raise ConfigError(f"{source}: 'kinds' must be an object of kind -> policy")
        return cls(
            MappingProxyType(
                {kind: _kind_policy(kind, spec, source) for kind, spec in kinds.items()}
            )
        )


def _kind_policy(kind: str, spec: object, source: str) -> KindPolicy:
    where = f"{source}: kind {kind!r}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected an object")
    unknown = sorted(set(spec) - _KIND_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; allowed: {sorted(_KIND_KEYS)}")
    personal = spec.get("personal", [])
    if not isinstance(personal, list) or not all(_is_pointer(p) for p in personal):
        raise ConfigError(f"{where}: 'personal' must be a list of JSON pointers like '/name'")
    allowed = spec.get("allowed")
    if allowed is not None and (
        not isinstance(allowed, list) or not all(isinstance(a, str) and a for a in allowed)
    ):
        raise ConfigError(f"{where}: 'allowed' must be a list of payload field names")
    encrypt = spec.get("encrypt", False)
    if not isinstance(encrypt, bool):
        raise ConfigError(f"{where}: 'encrypt' must be true or false")
    days = spec.get("retention_days")
    if days is not None and kind in RESERVED_KINDS:
        raise ConfigError(
            f"{where}: the service's own records ({', '.join(sorted(RESERVED_KINDS))}) carry "
            "the audit trail itself and have no retention period"
        )
    if days is not None and (type(days) is not int or not 1 <= days <= MAX_RETENTION_DAYS):
        raise ConfigError(f"{where}: 'retention_days' must be an integer 1..{MAX_RETENTION_DAYS}")
    return KindPolicy(
        personal=tuple(personal),
        allowed=frozenset(allowed) if allowed is not None else None,
        encrypt=encrypt,
        retention_days=days,
    )


def _is_pointer(value: object) -> bool:
    return isinstance(value, str) and value.startswith("/") and len(value) > 1


def pointer_parts(pointer: str) -> list[str]:
    """The reference tokens of an RFC 6901 JSON pointer (``~1`` -> ``/``, ``~0`` -> ``~``)."""
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]


def load(path: Path | None) -> DataPolicy:
    """The policy in the file at ``path``, or the empty policy (every kind open) for None.

    Raises:
        ConfigError: the file cannot be read or is not a valid policy.
    """
    if path is None:
        return DataPolicy()
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"data policy {path}: cannot read: {exc}") from exc
    return DataPolicy.parse(text, source=f"data policy {path}")
