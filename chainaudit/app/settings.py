"""Settings: one pydantic-settings class, read from the environment (``CHAINAUDIT_*``).

Settings are built by the entry points (CLI, server) and passed down; nothing reads the
environment at import time. Outside ``development`` the class refuses unsafe values: a
well-known devnet key as the anchorer, or a plain-HTTP chain endpoint off this machine (and
``chainaudit serve`` refuses plain HTTP on a non-loopback address unless ``behind_proxy``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from chainaudit.core.errors import ConfigError

__all__ = ["DEVNET_MNEMONIC", "DEV_LOG_ORIGIN", "Settings", "load_settings"]

DEVNET_MNEMONIC = "test test test test test test test test test test test junk"
"""Foundry's public test mnemonic (``anvil.env``): its keys must never guard real value."""
DEV_LOG_ORIGIN = "localhost/chainaudit"
"""The log origin in development when none is set (production requires one)."""
_ORIGIN = re.compile(r"[^\s+\u2014]{1,255}")


class Settings(BaseSettings):
    """Deployment settings. Every field can be set as ``CHAINAUDIT_<FIELD>`` in the environment.

    ``data_dir`` holds the SQLite log (``log.sqlite``) and the service's state files.
    """

    model_config = SettingsConfigDict(env_prefix="CHAINAUDIT_", extra="ignore", frozen=True)

    environment: Literal["development", "production"] = Field(
        default="development",
        description="`production` refuses devnet keys and plain-HTTP remote chain endpoints",
    )
    data_dir: Path = Field(default=Path(".data"), description="where the log and state live")
    database_url: SecretStr | None = Field(
        default=None,
        description="`postgresql://user:password@host/db`: keep the log's tables in this "
        "PostgreSQL database instead of <data_dir>/log.sqlite (the other state, e.g. "
        "keys.sqlite, stays in data_dir); never logged",
    )
    record_kinds: frozenset[str] = Field(
        default=frozenset(), description="record kinds accepted beyond the built-in ones"
    )
    data_policy_file: Path | None = Field(
        default=None,
        description="JSON file declaring per record kind the personal fields, allowed fields, "
        "encryption at rest and retention (see chainaudit/core/datapolicy.py)",
    )
    master_key: SecretStr | None = Field(
        default=None,
        description="base64 of the 32-byte master key that wraps the data keys of records "
        "encrypted at rest (docs/privacy.md); never logged",
    )
    master_key_file: Path | None = Field(
        default=None,
        description="file holding the master key (base64, one line) instead of master_key; "
        "never inside data_dir",
    )
    keys_file: Path | None = Field(
        default=None,
        description="where the wrapped data keys of records encrypted at rest live (default "
        "<data_dir>/keys.sqlite); production requires it outside data_dir, so that a backup "
        "of the data holds no key",
    )

    # -- chain ------------------------------------------------------------------------------
    rpc_url: str = Field(
        default="http://127.0.0.1:8545", description="the chain's JSON-RPC endpoint"
    )
    rpc_timeout: float = Field(default=10.0, gt=0, description="seconds per JSON-RPC request")
    deployments_dir: Path = Field(
        default=Path("deployments"),
        description="where `chainaudit deploy` writes, and everything reads, <chain_id>.json",
    )
    anchor_contract: str | None = Field(
        default=None, description="AuditAnchor address (default: deployments/<chain_id>.json)"
    )
    escrow_contract: str | None = Field(
        default=None, description="SupplyChainEscrow address (default: the deployments file)"
    )
    compliance_key: SecretStr | None = Field(
        default=None, description="key holding COMPLIANCE_ROLE, for holds placed via the API"
    )
    pauser_key: SecretStr | None = Field(
        default=None,
        description="key holding PAUSER_ROLE, for `pause`/`unpause` (devnet: account 0)",
    )
    officer_keys: list[SecretStr] = Field(
        default_factory=list,
        description="private keys of officers' own on-chain accounts (each holding "
        "COMPLIANCE_ROLE), found by the address bound to the officer's API key; a JSON list",
    )
    escrow_gate_contract: str | None = Field(
        default=None, description="EscrowGate address (default: the deployments file)"
    )
    clearance_key: SecretStr | None = Field(
        default=None,
        description="key of the EscrowGate's clearance signer (issue 13; devnet: account 0)",
    )
    rules_file: Path | None = Field(
        default=None, description="the risk rule file (default: `<data_dir>/rules.toml`)"
    )
    gate_policy: int = Field(
        default=1, ge=0, lt=2**16, description="compliance policy of deals opened via the API"
    )
    anchorer_key: SecretStr | None = Field(default=None, description="0x-hex private key")
    anchorer_keystore: Path | None = Field(default=None, description="encrypted keystore file")
    anchorer_password: SecretStr | None = Field(
        default=None, description="password of anchorer_keystore"
    )

    # -- the log's identity (C2SP signed checkpoints) ----------------------------------------
    log_origin: str = Field(
        default=DEV_LOG_ORIGIN,
        description="the log's origin, first line of its signed checkpoints and name of its "
        "key (c2sp.org/tlog-checkpoint), e.g. `audit.example.com/chainaudit`; production "
        "requires it set explicitly",
    )
    log_signing_key: SecretStr | None = Field(
        default=None,
        description="the log's Ed25519 note signer key `PRIVATE+KEY+<origin>+<hex id>+<base64>` "
        "(c2sp.org/signed-note); development without any key generates one into "
        "`<data_dir>/log-signing.key`, production refuses to start",
    )
    log_signing_keystore: Path | None = Field(
        default=None,
        description="encrypted keystore of the log's signer key (scrypt + AES-256-GCM, "
        "written by `chainaudit log-key generate`)",
    )
    log_signing_keystore_password: SecretStr | None = Field(
        default=None, description="password of log_signing_keystore"
    )
    checkpoint_interval: float = Field(
        default=1.0,
        gt=0,
        description="seconds between signed checkpoints of a growing log (`chainaudit serve`)",
    )
    witness_policy_file: Path | None = Field(
        default=None,
        description="a c2sp.org/tlog-policy file: the witnesses the log asks to cosign each "
        "new checkpoint (served at /checkpoint and carried by bundles), and the quorum",
    )

    # -- anchoring --------------------------------------------------------------------------
    max_batch_records: int = Field(
        default=10_000, ge=1, description="anchor once this many records are waiting"
    )
    max_batch_seconds: float = Field(
        default=60.0, gt=0, description="anchor once the oldest waiting record is this old"
    )
    confirmations: int = Field(
        default=1,
        ge=1,
        description="blocks an anchor must be under (its own counted) to be confirmed; also "
        "the default of `verify --confirmations` and of POST /v1/verify",
    )
    finality: int = Field(
        default=12,
        ge=1,
        description="blocks an anchor must be under to be final; a bundle claiming 'final' "
        "is checked against it (`verify --finality`, POST /v1/verify)",
    )

    # -- API --------------------------------------------------------------------------------
    rate_limit_per_second: float = Field(
        default=100.0, gt=0, description="requests per second per API key (429 beyond)"
    )
    rate_limit_burst: float = Field(
        default=200.0, ge=1, description="requests a key may send at once before the rate applies"
    )
    work_budget_per_minute: int = Field(
        default=200_000,
        ge=1,
        description="work units a key may spend a minute (one per record a list examines, "
        "50 per deal read from the chain); over it, 429 work-budget with Retry-After",
    )
    max_body_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="largest request body (413 beyond)"
    )
    max_records_per_request: int = Field(
        default=10_000, ge=1, description="most records in one POST /v1/records/batch"
    )
    read_audit_batch: int = Field(
        default=256, ge=1, description="reads by auditors, regulators, admins per read: record"
    )
    read_audit_seconds: float = Field(
        default=5.0, gt=0, description="the longest a logged read waits to be written"
    )

    tls_cert_file: Path | None = Field(
        default=None,
        description="`serve` terminates TLS itself with this PEM certificate (chain) file; "
        "needs tls_key_file",
    )
    tls_key_file: Path | None = Field(
        default=None, description="the PEM private key of tls_cert_file"
    )
    behind_proxy: bool = Field(
        default=False,
        description="the API sits behind a TLS-terminating reverse proxy: production may then "
        "serve plain HTTP on a non-loopback address",
    )

    metrics_public: bool = Field(
        default=False,
        description="serve /metrics to anyone; by default it needs an API key (any role but "
        "partner), e.g. a Prometheus bearer token",
    )

    tiles_entries: bool = Field(
        default=False,
        description="serve the C2SP tlog-tiles entry bundles (GET /tile/entries/..., no key, "
        "and in `publish`): records' salted canonical form, readable by anyone who reaches "
        "the server, outside the API's visibility rules (kinds the data policy keeps private "
        "and erased records are withheld even then); off: leaf hashes only (hash tiles)",
    )

    # -- web page ---------------------------------------------------------------------------
    public_rpc_url: str | None = Field(
        default=None,
        description="the chain endpoint /v1/config shows browsers (default: rpc_url, unless "
        "it carries user info, a query string or a key-like path segment: then none)",
    )

    @field_validator("log_origin")
    @classmethod
    def _origin_is_a_key_name(cls, value: str) -> str:
        if not _ORIGIN.fullmatch(value):
            raise ValueError(
                "the log origin names the log's key (c2sp.org/signed-note): 1-255 characters, "
                "no spaces, '+' or '\u2014', e.g. audit.example.com/chainaudit"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url_is_postgresql(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError("the database URL must start with postgresql:// (or postgres://)")
        return value

    @property
    def log_database_url(self) -> str | None:
        """The PostgreSQL URL of the log (``database_url``), or ``None``: the SQLite file."""
        return None if self.database_url is None else self.database_url.get_secret_value()

    @model_validator(mode="after")
    def _refuse_unsafe_production_values(self) -> Settings:
        if self.finality < self.confirmations:
            raise ValueError("finality must be at least confirmations")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: set both or neither")
        if self.environment != "production":
            return self
        host = urlparse(self.rpc_url).hostname or ""
        if self.rpc_url.startswith("http://") and host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("in production the chain endpoint must use https")
        # Every role key, checked here once: the API, the CLI and the services read them all
        # through chainaudit.app.roles, so none of them can accept a key another refuses.
        role_keys: dict[str, list[SecretStr | None]] = {
            "anchorer": [self.anchorer_key],
            "clearance": [self.clearance_key],
            "compliance": [self.compliance_key],
            "pauser": [self.pauser_key],
            "officer": list(self.officer_keys),
        }
        for role, keys in role_keys.items():
            if any(k is not None and _is_devnet_key(k.get_secret_value()) for k in keys):
                raise ValueError(f"in production the {role} key must not be a public devnet key")
        return self


def _is_devnet_key(private_key: str) -> bool:
    from chainaudit.chain.devnet import derive_accounts  # noqa: PLC0415 - only needed here

    known = {a.private_key.lower().removeprefix("0x") for a in derive_accounts(DEVNET_MNEMONIC, 10)}
    return private_key.lower().removeprefix("0x") in known


def load_settings(**overrides: object) -> Settings:
    """Build :class:`Settings` from the environment plus ``overrides``; a bad value raises
    :class:`ConfigError` naming the field, never echoing a secret."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigError(f"invalid settings: {_describe(exc)}") from exc


def _describe(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())) or 'settings'}: {e.get('msg', '')}"
            for e in errors()
        )
    return str(exc)
