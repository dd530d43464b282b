"""The keys of the escrow's operating roles (pauser, compliance officer), from settings.

A key is looked up, in order, in a ``<role>_key`` field of the settings (when the deployment's
:class:`~chainaudit.settings.Settings` has one), then in the environment variable
``CHAINAUDIT_<ROLE>_KEY`` (read when the key is needed, never at import). In development,
with neither set, the devnet's well-known accounts are used (``DEVNET_PARTIES``): the
compliance officer's for holds, and account 0 — which deploys the devnet vault and holds
``PAUSER_ROLE`` — for pausing. Production refuses to run without a key and refuses the
public devnet keys.
"""

from __future__ import annotations

import os
from typing import Final

from eth_account.signers.local import LocalAccount
from pydantic import SecretStr

from chainaudit.chain import Chain, load_account
from chainaudit.deploy import DEVNET_PARTIES, contract_address
from chainaudit.devnet import derive_accounts
from chainaudit.devnet import load_settings as load_devnet_settings
from chainaudit.errors import ConfigError
from chainaudit.settings import DEVNET_MNEMONIC, Settings

__all__ = ["ROLES", "escrow_address", "officer_account", "operator_account"]

ROLES: Final = ("pauser", "compliance")


def operator_account(settings: Settings, role: str) -> LocalAccount:
    """The account acting as ``role`` (``"pauser"`` or ``"compliance"``)."""
    if role not in ROLES:
        raise ConfigError(f"no operating role {role!r}; one of {', '.join(ROLES)}")
    configured = getattr(settings, f"{role}_key", None)
    if isinstance(configured, SecretStr):
        configured = configured.get_secret_value()
    key = configured or os.environ.get(f"CHAINAUDIT_{role.upper()}_KEY")
    if key:
        if settings.environment == "production" and _is_devnet_key(str(key)):
            raise ConfigError(f"in production the {role} key must not be a public devnet key")
        return load_account(private_key=str(key))
    if settings.environment == "development":
        accounts = derive_accounts(load_devnet_settings().mnemonic, 10)
        index = DEVNET_PARTIES["compliance"] if role == "compliance" else DEVNET_PARTIES["operator"]
        return load_account(private_key=accounts[index].private_key)
    raise ConfigError(f"no {role} key: set CHAINAUDIT_{role.upper()}_KEY")


def officer_account(settings: Settings, address: str | None) -> LocalAccount:
    """The signing key of an officer's own on-chain account ``address`` (the address bound to
    the officer's API key, holding ``COMPLIANCE_ROLE``): holds an officer places, renews or
    lifts are signed with it, never with a key shared by all officers.

    Looked up among ``officer_keys`` and ``compliance_key`` of the settings and the
    ``CHAINAUDIT_COMPLIANCE_KEY`` environment variable (the officer's own key on the command
    line); in development also among the devnet's well-known accounts. Raises
    :class:`ConfigError` when ``address`` is ``None`` (the key is bound to no account) or no
    key of that address is configured.
    """
    if address is None:
        raise ConfigError(
            "this officer's API key is bound to no on-chain account: create the officer's key "
            "with --address (the officer's own account holding COMPLIANCE_ROLE)"
        )
    candidates = [k.get_secret_value() for k in settings.officer_keys]
    if settings.compliance_key is not None:
        candidates.append(settings.compliance_key.get_secret_value())
    if os.environ.get("CHAINAUDIT_COMPLIANCE_KEY"):
        candidates.append(os.environ["CHAINAUDIT_COMPLIANCE_KEY"])
    if settings.environment == "development":
        devnet = derive_accounts(load_devnet_settings().mnemonic, 10)
        candidates.extend(a.private_key for a in devnet)
    for candidate in candidates:
        account = load_account(private_key=candidate)
        if account.address.lower() == address.lower():
            if settings.environment == "production" and _is_devnet_key(candidate):
                raise ConfigError("in production an officer key must not be a public devnet key")
            return account
    raise ConfigError(
        f"no signing key of officer account {address} is configured "
        "(CHAINAUDIT_OFFICER_KEYS, or CHAINAUDIT_COMPLIANCE_KEY on the command line)"
    )


def _is_devnet_key(private_key: str) -> bool:
    known = {a.private_key.lower().removeprefix("0x") for a in derive_accounts(DEVNET_MNEMONIC, 10)}
    return private_key.lower().removeprefix("0x") in known


def escrow_address(settings: Settings, chain: Chain, override: str | None = None) -> str:
    """The ``SupplyChainEscrow`` address: ``override``, else an ``escrow_contract`` setting
    when the deployment's settings have one, else the deployments file of the chain."""
    if override:
        return override
    configured = getattr(settings, "escrow_contract", None)
    if configured:
        return str(configured)
    return contract_address(settings, chain, "SupplyChainEscrow")
