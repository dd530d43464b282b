"""API keys: random bearer tokens, stored only as hashes, bound to a role.

A token reads ``ca_<key id>_<secret>``; the store keeps the key id, the SHA-256 of the secret
(secrets are 256-bit random, so a fast hash is safe), the role and an Ethereum address: for
partners the address the key acts for (required), for officers (admin and operator keys) the
officer's own on-chain account, which holds the escrow's compliance role (optional; holds an
officer places or lifts are signed with it). Auditor and regulator keys have no address.

A key may carry an expiry (``expires_ms``): after it, the token still identifies the key but
:meth:`ApiKey.expired` is true and the API answers 401 naming the moment. :meth:`KeyStore.rotate`
gives a key a new secret (the old token stops working at once) and optionally a new expiry; the
key id, role and address stay, so the officer's identity does too. Keys are created, rotated and
revoked with ``chainaudit keys`` or ``/v1/keys``; each action is appended to the audit log by the
caller.

An auditor or regulator key may carry the **personal-data permission** (``personal_data``):
without it the API masks the fields a kind's data policy marks personal
(:mod:`chainaudit.core.datapolicy`). Two admins grant it (the ``keys.grant-personal-data``
approval); one admin withdraws it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from web3 import Web3

from chainaudit.core.errors import InputError, NotFoundError, StoreError
from chainaudit.log import database

__all__ = ["READ_ONLY_ROLES", "ROLES", "ApiKey", "KeyStore", "format_ms", "now_ms"]

ROLES: Final = ("admin", "operator", "partner", "auditor", "regulator")
READ_ONLY_ROLES: Final = ("auditor", "regulator")
OFFICER_ROLES: Final = ("admin", "operator")
"""The roles of officers: the people who may request and approve controlled actions."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    secret_hash BLOB NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    address TEXT,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER,
    expires_ms INTEGER,
    rotated_ms INTEGER,
    personal_data INTEGER NOT NULL DEFAULT 0
);
"""
_ADDED_COLUMNS: Final = (
    ("expires_ms", "INTEGER"),
    ("rotated_ms", "INTEGER"),
    ("personal_data", "INTEGER NOT NULL DEFAULT 0"),
)
"""Columns added after the first release: tables of older data directories get them in place."""
_COLUMNS: Final = (
    "key_id, name, role, address, created_ms, revoked_ms, expires_ms, rotated_ms, personal_data"
)
_SELECT: Final = f"SELECT {_COLUMNS} FROM api_keys"  # noqa: S608 - constant column names


def now_ms() -> int:
    """The current time in Unix milliseconds."""
    return int(time.time() * 1000)


def format_ms(ms: int) -> str:
    """``ms`` (Unix milliseconds) as an RFC 3339 UTC time to the second, e.g. ``2026-…Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key's public description (never its secret)."""

    key_id: str
    name: str
    role: str
    address: str | None
    created_ms: int
    revoked_ms: int | None
    expires_ms: int | None = None
    rotated_ms: int | None = None
    personal_data: bool = False
    """Whether the key reads personal fields unmasked (auditor and regulator keys only;
    granted by two admins, see :meth:`KeyStore.set_personal_data`)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "personal_data", bool(self.personal_data))  # SQLite 0 / 1

    @property
    def active(self) -> bool:
        """Not revoked (an expired key is still active until revoked; see :meth:`expired`)."""
        return self.revoked_ms is None

    @property
    def officer(self) -> bool:
        """Whether the key belongs to an officer (admin or operator)."""
        return self.role in OFFICER_ROLES

    def expired(self, at_ms: int | None = None) -> bool:
        """Whether the key's expiry has passed at ``at_ms`` (default: now)."""
        return self.expires_ms is not None and (now_ms() if at_ms is None else at_ms) >= (
            self.expires_ms
        )

    def expiry_detail(self) -> str:
        """The 401 reason of an expired key (names the moment and the remedy)."""
        assert self.expires_ms is not None
        return (
            f"API key {self.key_id} expired at {format_ms(self.expires_ms)}; "
            "ask an admin to rotate it"
        )


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse_token(token: str) -> tuple[str, str] | None:
    """Split ``ca_<id>_<secret>``; ``None`` if the token does not have that shape."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "ca" or len(parts[1]) != 12 or not parts[2]:
        return None
    return parts[1], parts[2]


class KeyStore:
    """The ``api_keys`` table of the data directory's SQLite file ``path``, or of the
    PostgreSQL database ``database_url`` when given (the log's: the table sits beside the
    log's tables). Every change is one statement, committed on its own.

    Raises :class:`StoreError` when the database cannot be opened or the table not created.
    """

    def __init__(self, path: Path, *, database_url: str | None = None) -> None:
        where = "the PostgreSQL database" if database_url else str(path)
        try:
            self._db = database.connect(database_url or path)
        except database.DatabaseError as exc:
            raise StoreError(f"cannot open the key store in {where}: {exc}") from exc
        try:
            if self._db.engine == "sqlite":
                self._db.executescript(_SCHEMA)
                self._add_columns()
            elif not self._db.has_table("api_keys"):
                with self._db.write_as("api_keys"):  # several processes may open at once
                    self._db.executescript(database.adapt_schema(_SCHEMA, self._db.engine))
        except database.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"cannot open the key store in {where}: {exc}") from exc

    def _add_columns(self) -> None:
        """Give an SQLite table of an older data directory the columns added since."""
        present = {row[1] for row in self._db.execute("PRAGMA table_info(api_keys)")}
        for column, kind in _ADDED_COLUMNS:
            if column not in present:  # a key store from before expiry: upgrade in place
                try:
                    self._db.execute(f"ALTER TABLE api_keys ADD COLUMN {column} {kind}")
                except database.DatabaseError as exc:
                    if "duplicate column" not in str(exc):  # another process was first
                        raise

    @property
    def engine(self) -> database.Engine:
        """Where the table is: ``sqlite`` or ``postgresql``."""
        return self._db.engine

    def close(self) -> None:
        self._db.close()

    def create(
        self,
        role: str,
        *,
        name: str,
        address: str | None = None,
        expires_ms: int | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; returns it and its token (shown once, never stored).

        ``address``: required for a partner (the address it acts for), optional for an officer
        (its own on-chain account), refused for auditors and regulators. ``expires_ms``: when
        the key stops working (Unix ms, in the future), or ``None`` for no expiry.
        Raises :class:`InputError` for an unknown role, a missing or invalid address, an
        address on an auditor or regulator key, a bad name or an expiry in the past.
        """
        if role not in ROLES:
            raise InputError(f"role must be one of: {', '.join(ROLES)}")
        if role == "partner" and address is None:
            raise InputError("a partner key needs the Ethereum address it acts for")
        if address is not None:
            if role in READ_ONLY_ROLES:
                raise InputError(
                    "only partner and officer (admin, operator) keys are bound to an address"
                )
            if not Web3.is_address(address):
                raise InputError(f"{address!r} is not an Ethereum address")
            address = Web3.to_checksum_address(address)
        if not 0 < len(name) <= 100:
            raise InputError("name must be 1-100 characters")
        now = now_ms()
        _check_expiry(expires_ms, now)
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        self._db.execute(
            "INSERT INTO api_keys (key_id, name, role, address, created_ms, expires_ms, "
            "secret_hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key_id, name, role, address, now, expires_ms, _hash(secret)),
        )
        return ApiKey(key_id, name, role, address, now, None, expires_ms), f"ca_{key_id}_{secret}"

    def rotate(self, key_id: str, *, expires_ms: int | None = None) -> tuple[ApiKey, str]:
        """Give key ``key_id`` a new secret and expiry; returns the key and its new token.

        The old token stops working at once; id, name, role and address are kept.
        ``expires_ms`` is the new expiry (``None``: none). Raises :class:`NotFoundError` for
        an unknown key, :class:`InputError` for a revoked key or an expiry in the past.
        """
        key = self.get(key_id)
        if not key.active:
            raise InputError(f"API key {key_id} is revoked; create a new key instead")
        now = now_ms()
        _check_expiry(expires_ms, now)
        secret = secrets.token_urlsafe(32)
        self._db.execute(
            "UPDATE api_keys SET secret_hash = ?, expires_ms = ?, rotated_ms = ? "
            "WHERE key_id = ? AND revoked_ms IS NULL",
            (_hash(secret), expires_ms, now, key_id),
        )
        return self.get(key_id), f"ca_{key_id}_{secret}"

    def set_personal_data(self, key_id: str, granted: bool) -> ApiKey:
        """Grant (``granted``) or withdraw a key's personal-data permission; returns the key.

        Precondition: the caller has the authority (two admins to grant, one to withdraw).
        Only auditor and regulator keys carry the permission (officers read records whole,
        partners their own). Raises :class:`NotFoundError` for an unknown key,
        :class:`InputError` for a revoked key or a key of another role.
        """
        key = self.get(key_id)
        if not key.active:
            raise InputError(f"API key {key_id} is revoked")
        if key.role not in READ_ONLY_ROLES:
            raise InputError(
                f"API key {key_id} is a {key.role} key: only auditor and regulator keys carry "
                "the personal-data permission"
            )
        self._db.execute(
            "UPDATE api_keys SET personal_data = ? WHERE key_id = ?", (int(granted), key_id)
        )
        return self.get(key_id)

    def has_active_admin(self) -> bool:
        """Whether some admin key is neither revoked nor expired (bootstrap is over then)."""
        row = self._db.execute(
            "SELECT 1 FROM api_keys WHERE role = 'admin' AND revoked_ms IS NULL "
            "AND (expires_ms IS NULL OR expires_ms > ?) LIMIT 1",
            (now_ms(),),
        ).fetchone()
        return row is not None

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key (idempotent); raises :class:`NotFoundError` for an unknown id."""
        self._db.execute(
            "UPDATE api_keys SET revoked_ms = COALESCE(revoked_ms, ?) WHERE key_id = ?",
            (int(time.time() * 1000), key_id),
        )
        return self.get(key_id)

    def get(self, key_id: str) -> ApiKey:
        row = self._db.execute(_SELECT + " WHERE key_id = ?", (key_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no API key {key_id!r}")
        return ApiKey(*row)

    def list(self) -> list[ApiKey]:
        return [ApiKey(*row) for row in self._db.execute(_SELECT + " ORDER BY created_ms")]

    def authenticate(self, token: str) -> ApiKey | None:
        """Return the unrevoked key a token belongs to, or ``None`` (constant-time compare).

        An expired key is returned: the caller refuses it with :meth:`ApiKey.expiry_detail`.
        """
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


def _check_expiry(expires_ms: int | None, now: int) -> None:
    if expires_ms is not None and expires_ms <= now:
        raise InputError(f"the expiry {format_ms(expires_ms)} is not in the future")
