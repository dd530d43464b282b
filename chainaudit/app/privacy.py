"""How the settings configure personal data: the data policy file and encryption at rest
(the master key, the kinds it seals, where the data keys live)."""

from __future__ import annotations

import hashlib

from chainaudit.app.settings import Settings
from chainaudit.core import datapolicy
from chainaudit.core.datapolicy import DataPolicy
from chainaudit.core.errors import ConfigError
from chainaudit.log import datakeys

__all__ = ["at_rest_from", "policy_from"]


def policy_from(settings: Settings) -> tuple[DataPolicy, str]:
    """The data policy of ``settings`` and the SHA-256 (hex) of its file's bytes (of ``""``
    without one). Raises :class:`ConfigError` for an unreadable or invalid file."""

    path = settings.data_policy_file
    if path is None:
        return DataPolicy(), hashlib.sha256(b"").hexdigest()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"data policy {path}: cannot read: {exc}") from exc
    return datapolicy.load(path), hashlib.sha256(raw).hexdigest()


def at_rest_from(settings: Settings) -> datakeys.AtRest | None:
    """How the log of ``settings`` encrypts at rest: the master key and the kinds whose
    policy says ``encrypt``; ``None`` when no master key is configured.

    Raises:
        ConfigError: a kind is to be encrypted but no master key is configured, the key is
            malformed, the master key file is inside the data directory, or (in production)
            the keys file is.
    """
    data_dir = settings.data_dir.resolve()
    if settings.master_key_file is not None and settings.master_key_file.resolve().is_relative_to(
        data_dir
    ):
        raise ConfigError(
            f"the master key file {settings.master_key_file} is inside the data directory "
            f"{settings.data_dir}: keep it elsewhere, or a copy of the data holds its key"
        )
    policy, _ = policy_from(settings)
    kinds = frozenset(k for k, p in policy.kinds.items() if p.encrypt)
    secret = settings.master_key.get_secret_value() if settings.master_key is not None else None
    master = datakeys.master_key_from(secret, settings.master_key_file)
    if master is None:
        if kinds:
            raise ConfigError(
                f"the data policy encrypts {', '.join(sorted(kinds))} at rest, but no master "
                "key is configured: set CHAINAUDIT_MASTER_KEY or CHAINAUDIT_MASTER_KEY_FILE"
            )
        return None
    keys_file = settings.keys_file
    inside = (keys_file or settings.data_dir / datakeys.KEYS_DB).resolve().is_relative_to(data_dir)
    if settings.environment == "production" and inside:
        raise ConfigError(
            "the data keys would live in the data directory: set CHAINAUDIT_KEYS_FILE to a "
            "path outside it (another volume and backup set), so that a backup of the data "
            "holds no key (docs/privacy.md)"
        )
    return datakeys.AtRest(master, kinds, keys_file)
