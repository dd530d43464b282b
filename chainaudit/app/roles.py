"""The signing keys of the service's roles, resolved in one place from :class:`Settings`.

Every key comes from the settings (and so from ``CHAINAUDIT_<ROLE>_KEY`` or a keystore); the
production checks on them (no public devnet key) are the settings' own
(:meth:`Settings._refuse_unsafe_production_values`), so the API, the CLI and the background
services accept exactly the same keys. In development, a role with no key of its own acts
with the devnet's well-known account for it (:data:`chainaudit.app.deploy.DEVNET_PARTIES`, derived
from the mnemonic in ``anvil.env``).

Roles: the **anchorer** (sends anchors; in development account 0), the **pauser** (holds
``PAUSER_ROLE``; account 0, which deploys the devnet vault), the **compliance** officer (holds,
``COMPLIANCE_ROLE``), each **officer** acting with its own on-chain account, and the
**clearance** signer of the EscrowGate (account 0 in development).
"""

from __future__ import annotations

from typing import Final

from eth_account.signers.local import LocalAccount

from chainaudit.app.deploy import DEVNET_PARTIES
from chainaudit.app.settings import Settings
from chainaudit.chain.chain import load_account
from chainaudit.chain.devnet import derive_accounts
from chainaudit.chain.devnet import load_settings as load_devnet_settings
from chainaudit.core.errors import ConfigError

__all__ = [
    "OPERATING_ROLES",
    "anchorer_account",
    "clearance_account",
    "compliance_account",
    "officer_account",
    "operator_account",
]

OPERATING_ROLES: Final = ("pauser", "compliance")
"""The escrow's operating roles that :func:`operator_account` signs for."""


def _devnet_account(index: int) -> LocalAccount:
    return load_account(
        private_key=derive_accounts(load_devnet_settings().mnemonic, 10)[index].private_key
    )


def anchorer_account(settings: Settings) -> LocalAccount:
    """The anchoring key, from ``CHAINAUDIT_ANCHORER_KEY`` or an encrypted keystore.

    In development only, with neither set, the devnet's first well-known account is used.
    Raises :class:`ConfigError` when neither is set outside development, or the keystore
    cannot be opened.
    """
    if settings.anchorer_key is None and settings.anchorer_keystore is None:
        if settings.environment == "development":
            return _devnet_account(DEVNET_PARTIES["operator"])
        raise ConfigError(
            "no anchorer key: set CHAINAUDIT_ANCHORER_KEY or CHAINAUDIT_ANCHORER_KEYSTORE "
            "(with CHAINAUDIT_ANCHORER_PASSWORD)"
        )
    return load_account(
        private_key=settings.anchorer_key.get_secret_value() if settings.anchorer_key else None,
        keystore=settings.anchorer_keystore if settings.anchorer_key is None else None,
        password=(
            settings.anchorer_password.get_secret_value() if settings.anchorer_password else None
        ),
    )


def compliance_account(settings: Settings) -> LocalAccount | None:
    """The compliance officer's key (``compliance_key``), or the devnet's in development;
    ``None`` when neither applies."""
    if settings.compliance_key is not None:
        return load_account(private_key=settings.compliance_key.get_secret_value())
    if settings.environment == "development":
        return _devnet_account(DEVNET_PARTIES["compliance"])
    return None


def clearance_account(settings: Settings) -> LocalAccount | None:
    """The EscrowGate's clearance signer (``clearance_key``), or the devnet's account 0 (the
    deployer) in development; ``None`` (no gate) otherwise."""
    if settings.clearance_key is not None:
        return load_account(private_key=settings.clearance_key.get_secret_value())
    if settings.environment == "development":
        return _devnet_account(DEVNET_PARTIES["operator"])
    return None


def operator_account(settings: Settings, role: str) -> LocalAccount:
    """The account acting as ``role`` (``"pauser"`` or ``"compliance"``): its configured key
    (``pauser_key``, ``compliance_key``), else in development the devnet's account for it.

    Raises :class:`ConfigError` for an unknown role, or when no key is configured outside
    development.
    """
    if role not in OPERATING_ROLES:
        raise ConfigError(f"no operating role {role!r}; one of {', '.join(OPERATING_ROLES)}")
    configured = settings.pauser_key if role == "pauser" else settings.compliance_key
    if configured is not None:
        return load_account(private_key=configured.get_secret_value())
    if settings.environment == "development":
        index = DEVNET_PARTIES["compliance"] if role == "compliance" else DEVNET_PARTIES["operator"]
        return _devnet_account(index)
    raise ConfigError(f"no {role} key: set CHAINAUDIT_{role.upper()}_KEY")


def officer_account(settings: Settings, address: str | None) -> LocalAccount:
    """The signing key of an officer's own on-chain account ``address`` (the address bound to
    the officer's API key, holding ``COMPLIANCE_ROLE``): holds an officer places, renews or
    lifts are signed with it, never with a key shared by all officers.

    Looked up among ``officer_keys`` and ``compliance_key`` (``CHAINAUDIT_OFFICER_KEYS``,
    ``CHAINAUDIT_COMPLIANCE_KEY``); in development also among the devnet's well-known
    accounts. Raises :class:`ConfigError` when ``address`` is ``None`` (the key is bound to no
    account) or no key of that address is configured.
    """
    if address is None:
        raise ConfigError(
            "this officer's API key is bound to no on-chain account: create the officer's key "
            "with --address (the officer's own account holding COMPLIANCE_ROLE)"
        )
    candidates = [k.get_secret_value() for k in settings.officer_keys]
    if settings.compliance_key is not None:
        candidates.append(settings.compliance_key.get_secret_value())
    if settings.environment == "development":
        devnet = derive_accounts(load_devnet_settings().mnemonic, 10)
        candidates.extend(a.private_key for a in devnet)
    for candidate in candidates:
        account = load_account(private_key=candidate)
        if account.address.lower() == address.lower():
            return account
    raise ConfigError(
        f"no signing key of officer account {address} is configured "
        "(CHAINAUDIT_OFFICER_KEYS, or CHAINAUDIT_COMPLIANCE_KEY on the command line)"
    )
