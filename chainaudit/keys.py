"""API keys: random bearer tokens, stored only as hashes, bound to a role.

A token reads ``ca_<key id>_<secret>``; the store keeps the key id, the SHA-256 of the secret
(secrets are 256-bit random, so a fast hash is safe), the role and, for partners, the Ethereum
address the key acts for. Keys are created and revoked with ``chainaudit keys``; each of those
actions is appended to the audit log by the caller.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from web3 import Web3

from chainaudit.errors import InputError, NotFoundError, StoreError

ROLES: Final = ("admin", "operator", "partner", "auditor", "regulator")
READ_ONLY_ROLES: Final = ("auditor", "regulator")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    secret_hash BLOB NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    address TEXT,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
"""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key's public description (never its secret)."""

    key_id: str
    name: str
    role: str
    address: str | None
    created_ms: int
    revoked_ms: int | None

    @property
    def active(self) -> bool:
        return self.revoked_ms is None


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse_token(token: str) -> tuple[str, str] | None:
    """Split ``ca_<id>_<secret>``; ``None`` if the token does not have that shape."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "ca" or len(parts[1]) != 12 or not parts[2]:
        return None
    return parts[1], parts[2]


class KeyStore:
    """The ``api_keys`` table of the data directory's SQLite file."""

    def __init__(self, path: Path) -> None:
        try:
            self._db = sqlite3.connect(
                path, isolation_level=None, timeout=30.0, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the key store at {path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def create(self, role: str, *, name: str, address: str | None = None) -> tuple[ApiKey, str]:
        """Create a key; returns it and its token (shown once, never stored).

        Raises :class:`InputError` for an unknown role, a partner without a valid address, or an
        address on a non-partner key.
        """
        if role not in ROLES:
            raise InputError(f"role must be one of: {', '.join(ROLES)}")
        if role == "partner":
            if address is None or not Web3.is_address(address):
                raise InputError("a partner key needs the Ethereum address it acts for")
            address = Web3.to_checksum_address(address)
        elif address is not None:
            raise InputError("only partner keys are bound to an address")
        if not 0 < len(name) <= 100:
            raise InputError("name must be 1-100 characters")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        now = int(time.time() * 1000)
        self._db.execute(
            "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, NULL)",
            (key_id, _hash(secret), name, role, address, now),
        )
        return ApiKey(key_id, name, role, address, now, None), f"ca_{key_id}_{secret}"

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key (idempotent); raises :class:`NotFoundError` for an unknown id."""
        self._db.execute(
            "UPDATE api_keys SET revoked_ms = COALESCE(revoked_ms, ?) WHERE key_id = ?",
            (int(time.time() * 1000), key_id),
        )
        return self.get(key_id)

    def get(self, key_id: str) -> ApiKey:
        row = self._db.execute(
            "SELECT key_id, name, role, address, created_ms, revoked_ms FROM api_keys "
            "WHERE key_id = ?",
            (key_id,),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no API key {key_id!r}")
        return ApiKey(*row)

    def list(self) -> list[ApiKey]:
        return [
            ApiKey(*row)
            for row in self._db.execute(
                "SELECT key_id, name, role, address, created_ms, revoked_ms FROM api_keys "
                "ORDER BY created_ms"
            )
        ]

    def authenticate(self, token: str) -> ApiKey | None:
        """Return the active key a token belongs to, or ``None`` (constant-time compare)."""
        parsed = parse_token(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        row = self._db.execute(
            "SELECT secret_hash, revoked_ms FROM api_keys WHERE key_id = ?", (key_id,)
        ).fetchone()
        if row is None or row[1] is not None:
            return None
        if not hmac.compare_digest(row[0], _hash(secret)):
            return None
        return self.get(key_id)
