"""The log's identity: its origin and the Ed25519 key that signs its checkpoints.

The log signs every checkpoint as a ``c2sp.org/tlog-checkpoint`` note
(:mod:`chainaudit.log.checkpointing`) with an Ed25519 note key (``c2sp.org/signed-note``) whose
name is the log's origin. :func:`log_signer` is the one place that resolves that key from the
settings, in this order:

1. ``CHAINAUDIT_LOG_SIGNING_KEY``: the signer key string ``PRIVATE+KEY+<origin>+<hex id>+<b64>``;
2. ``CHAINAUDIT_LOG_SIGNING_KEYSTORE`` (with ``CHAINAUDIT_LOG_SIGNING_KEYSTORE_PASSWORD``): an
   encrypted keystore written by :func:`write_keystore` (``chainaudit log-key generate``);
3. in development only, ``<data_dir>/log-signing.key``: generated once (mode 0600), reused.

Production without 1 or 2, or without an explicit ``CHAINAUDIT_LOG_ORIGIN``, is refused with
:class:`~chainaudit.core.errors.ConfigError`. A key whose name is not the origin is refused too: a
checkpoint's origin line must be its signer's name (:func:`chainaudit.core.note.open_checkpoint`).

The keystore is a JSON object::

    {"version": 1, "kind": "chainaudit-log-signing-key", "name": "<origin>",
     "verifier": "<name>+<hex id>+<base64 key>",
     "kdf": "scrypt", "kdfparams": {"n": 32768, "r": 8, "p": 1, "salt": "<hex, 16 bytes>"},
     "cipher": "aes-256-gcm", "nonce": "<hex, 12 bytes>", "ciphertext": "<hex>"}

The AES-256-GCM key is scrypt(password); the plaintext is the signer key string; the
associated data is the verifier key string, so a keystore whose public fields were edited
does not decrypt. Secrets are never logged nor put in an error message.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from chainaudit.app.settings import DEV_LOG_ORIGIN, Settings
from chainaudit.core import note
from chainaudit.core.errors import ConfigError, NoteError

__all__ = ["DEV_KEY_FILE", "generate_keystore", "log_signer", "read_keystore"]

logger = logging.getLogger(__name__)

DEV_KEY_FILE: Final = "log-signing.key"
"""The development key's file name in the data directory."""
KEYSTORE_KIND: Final = "chainaudit-log-signing-key"
SCRYPT_N: Final = 1 << 15
SCRYPT_MAX_N: Final = 1 << 20
"""The largest scrypt cost a keystore may ask for (1 GiB of memory at r = 8)."""
_MAX_KEYSTORE_BYTES: Final = 64 * 1024


def log_origin(settings: Settings) -> str:
    """The log's origin (``c2sp.org/tlog-checkpoint``): the ``log_origin`` setting.

    Raises:
        ConfigError: in production when ``CHAINAUDIT_LOG_ORIGIN`` was not set explicitly.
    """
    if settings.environment == "production" and (
        "log_origin" not in settings.model_fields_set or settings.log_origin == DEV_LOG_ORIGIN
    ):
        raise ConfigError(
            "no log origin: in production set CHAINAUDIT_LOG_ORIGIN (e.g. "
            "audit.example.com/chainaudit), the name of the log's checkpoints and key"
        )
    return settings.log_origin


def log_signer(settings: Settings) -> note.Signer:
    """The log's checkpoint signer, resolved from ``settings`` (see the module docstring).

    Development with no key configured generates one into ``<data_dir>/log-signing.key``
    (creating the data directory) the first time and reuses it afterwards.

    Returns:
        An Ed25519 (type 0x01) :class:`~chainaudit.core.note.Signer` named the log's origin.

    Raises:
        ConfigError: no key in production, both a key and a keystore set, a key or keystore
            that cannot be read or decrypted, a key that is not an Ed25519 note key, or a key
            whose name is not the origin. The message never contains the key.
    """
    origin = log_origin(settings)
    if settings.log_signing_key is not None and settings.log_signing_keystore is not None:
        raise ConfigError(
            "set either CHAINAUDIT_LOG_SIGNING_KEY or CHAINAUDIT_LOG_SIGNING_KEYSTORE, not both"
        )
    if settings.log_signing_key is not None:
        signer = _parse_signer(
            settings.log_signing_key.get_secret_value(), "CHAINAUDIT_LOG_SIGNING_KEY"
        )
        source = "CHAINAUDIT_LOG_SIGNING_KEY"
    elif settings.log_signing_keystore is not None:
        password = settings.log_signing_keystore_password
        if password is None:
            raise ConfigError(
                f"the log signing keystore {settings.log_signing_keystore} needs its password "
                "in CHAINAUDIT_LOG_SIGNING_KEYSTORE_PASSWORD"
            )
        signer = read_keystore(settings.log_signing_keystore, password.get_secret_value())
        source = f"the keystore {settings.log_signing_keystore}"
    elif settings.environment == "development":
        signer = _development_key(settings.data_dir, origin)
        source = f"{settings.data_dir / DEV_KEY_FILE}"
    else:
        raise ConfigError(
            "no log signing key: in production set CHAINAUDIT_LOG_SIGNING_KEY or "
            "CHAINAUDIT_LOG_SIGNING_KEYSTORE (with CHAINAUDIT_LOG_SIGNING_KEYSTORE_PASSWORD); "
            "create one with `chainaudit log-key generate --origin ORIGIN --keystore FILE`"
        )
    check_signer(signer, origin, source)
    return signer


def check_signer(signer: note.Signer, origin: str, source: str) -> None:
    """Refuse a signer that is not an Ed25519 note key named ``origin``.

    Raises:
        ConfigError: naming ``source``, the key's name and the origin (never the key).
    """
    if signer.sig_type != note.ED25519:
        raise ConfigError(f"{source}: the log signs with an Ed25519 note key (type 0x01)")
    if signer.name != origin:
        raise ConfigError(
            f"{source}: the key is named {signer.name!r} but the log origin is {origin!r}; "
            "a checkpoint's origin must be its key's name (set CHAINAUDIT_LOG_ORIGIN or use "
            "the key of this origin)"
        )


def _parse_signer(text: str, source: str) -> note.Signer:
    try:
        return note.Signer.parse(text)
    except NoteError as exc:
        # NoteError messages name the key's parts, never the seed.
        raise ConfigError(f"{source} is not a valid note signer key: {exc}") from exc
    except ValueError as exc:  # cryptography refusing the seed
        raise ConfigError(f"{source} is not a valid note signer key") from exc


def _development_key(data_dir: Path, origin: str) -> note.Signer:
    """Read ``data_dir/log-signing.key``, creating it (0600) with a fresh key if absent."""
    path = data_dir / DEV_KEY_FILE
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        signer = note.Signer.generate(origin)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            return _parse_signer(path.read_text("utf-8"), str(path))
        except OSError as exc:
            raise ConfigError(f"cannot read the log signing key {path}: {exc.strerror}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot create the log signing key {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(signer.encode() + "\n")
    logger.info(  # not a warning: a CLI's stderr is one line (see `chainaudit log-key verifier`)
        "development: generated the log signing key %s (verifier %s)",
        path,
        signer.verifier().encode(),
    )
    return signer


def _kdf(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(password.encode("utf-8"))


def write_keystore(path: Path, signer: note.Signer, password: str, *, n: int = SCRYPT_N) -> None:
    """Write ``signer`` encrypted with ``password`` to a new file ``path`` (mode 0600).

    Raises:
        ConfigError: an empty password, or the file exists or cannot be written.
    """
    if not password:
        raise ConfigError("the keystore password must not be empty")
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    verifier = signer.verifier().encode()
    sealed = AESGCM(_kdf(password, salt, n, 8, 1)).encrypt(
        nonce, signer.encode().encode(), verifier.encode()
    )
    document = {
        "version": 1,
        "kind": KEYSTORE_KIND,
        "name": signer.name,
        "verifier": verifier,
        "kdf": "scrypt",
        "kdfparams": {"n": n, "r": 8, "p": 1, "salt": salt.hex()},
        "cipher": "aes-256-gcm",
        "nonce": nonce.hex(),
        "ciphertext": sealed.hex(),
    }
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise ConfigError(
            f"{path} exists: choose another file (a key is never overwritten)"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(document, file, indent=2)
        file.write("\n")


def read_keystore(path: Path, password: str) -> note.Signer:
    """Decrypt the keystore at ``path`` with ``password``.

    Raises:
        ConfigError: unreadable, not a log signing keystore, unsupported parameters, a wrong
            password (or altered file), or a decrypted key that does not match the keystore's
            verifier key.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the keystore {path}: {exc.strerror or exc}") from exc
    if len(raw) > _MAX_KEYSTORE_BYTES:
        raise ConfigError(f"{path} is not a log signing keystore (too large)")
    try:
        document = json.loads(raw)
        if not isinstance(document, dict) or document.get("kind") != KEYSTORE_KIND:
            raise ValueError("kind")
        if document.get("version") != 1 or document.get("kdf") != "scrypt":
            raise ValueError("version")
        if document.get("cipher") != "aes-256-gcm":
            raise ValueError("cipher")
        params: dict[str, Any] = document["kdfparams"]
        n, r, p = (int(params[k]) for k in ("n", "r", "p"))
        salt = bytes.fromhex(params["salt"])
        nonce = bytes.fromhex(document["nonce"])
        sealed = bytes.fromhex(document["ciphertext"])
        verifier = str(document["verifier"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path} is not a chainaudit log signing keystore (version 1, scrypt, aes-256-gcm)"
        ) from exc
    if not (1 < n <= SCRYPT_MAX_N and n & (n - 1) == 0 and 0 < r <= 32 and 0 < p <= 16):
        raise ConfigError(f"{path}: unsupported scrypt parameters")
    if len(nonce) != 12 or len(salt) < 8:
        raise ConfigError(f"{path}: malformed nonce or salt")
    try:
        plain = AESGCM(_kdf(password, salt, n, r, p)).decrypt(nonce, sealed, verifier.encode())
    except InvalidTag as exc:
        raise ConfigError(
            f"cannot decrypt the keystore {path}: wrong password, or the file was altered"
        ) from exc
    signer = _parse_signer(plain.decode("utf-8", "replace"), f"the keystore {path}")
    if signer.verifier().encode() != verifier:
        raise ConfigError(f"{path}: the decrypted key does not match the keystore's verifier")
    return signer


def generate_keystore(path: Path, origin: str, password: str) -> note.Signer:
    """Generate a fresh Ed25519 log key named ``origin`` and write it to the keystore ``path``.

    Raises:
        ConfigError: ``origin`` is not a valid key name, an empty password, or ``path``
            exists or cannot be written.
    """
    try:
        signer = note.Signer.generate(origin)
    except NoteError as exc:
        raise ConfigError(f"--origin {origin!r}: {exc}") from exc
    write_keystore(path, signer, password)
    return signer
