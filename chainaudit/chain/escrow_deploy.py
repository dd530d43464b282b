"""Deploying the escrow vault and its devnet stablecoin, and the devnet faucet.

:func:`deploy_escrow` deploys ``MockStablecoin`` and ``SupplyChainEscrow`` (bound to an
``AuditAnchor`` for proof-gated milestones), allow-lists the token and grants the operating
roles, so that a fresh devnet can open deals at once. :func:`mint` is the faucet: the
stablecoin's owner mints to anyone. Neither is meant for production tokens: a real deployment
allow-lists real stablecoins and grants roles to separate operators.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_account.signers.local import LocalAccount
from web3 import Web3

from chainaudit.chain.chain import Chain, Deployed, deploy, transact
from chainaudit.chain.toolchain import ContractArtifact, compile_contracts
from chainaudit.core.errors import ChainError, ChainUnavailableError, ConfigError

__all__ = [
    "EIP170_CODE_LIMIT",
    "GATE_POLICY_ID",
    "deploy_escrow",
    "deploy_gate",
    "escrow_artifacts",
    "mint",
]

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

ESCROW_ROLES: tuple[str, ...] = (
    "TOKEN_MANAGER_ROLE",
    "PAUSER_ROLE",
    "COMPLIANCE_ROLE",
    "REGISTRAR_ROLE",
)
"""The operating roles of ``SupplyChainEscrow`` (granted by ``DEFAULT_ADMIN_ROLE``)."""

ADMIN_DELAY_SECONDS = 2 * 24 * 3600
"""Default-admin transfers of the escrow wait two days (AccessControlDefaultAdminRules)."""

EIP170_CODE_LIMIT = 24_576
"""The most deployed code a contract may have on Ethereum (EIP-170), in bytes."""

STABLECOIN_NAME = "Mock USD Coin"
STABLECOIN_SYMBOL = "mUSDC"
STABLECOIN_DECIMALS = 6


def escrow_artifacts() -> dict[str, ContractArtifact]:
    """The compiled ``SupplyChainEscrow`` and ``MockStablecoin`` (compile cache permitting).

    Raises :class:`~chainaudit.core.errors.ToolchainError` when no compiler is available and the
    cache misses.
    """
    artifacts = compile_contracts()
    return {name: artifacts[name] for name in ("SupplyChainEscrow", "MockStablecoin")}


def deploy_escrow(
    chain: Chain,
    admin: LocalAccount,
    anchor_address: str | None,
    *,
    compliance_officers: Sequence[str] = (),
    pausers: Sequence[str] = (),
    token_managers: Sequence[str] = (),
    arbiters: Sequence[str] = (),
    inspectors: Sequence[str] = (),
    admin_delay: int = ADMIN_DELAY_SECONDS,
) -> dict[str, Deployed]:
    """Deploy ``MockStablecoin`` and ``SupplyChainEscrow`` for a devnet and make them usable.

    Preconditions: ``admin`` holds ether on ``chain``; ``anchor_address`` is the
    ``AuditAnchor`` that proof-gated milestones are checked against, or ``None`` (no proof
    gates: deals naming a proof leaf are then refused by the contract).

    Result: ``{"MockStablecoin": ..., "SupplyChainEscrow": ...}``. ``admin`` owns the
    stablecoin (it can :func:`mint`), holds ``DEFAULT_ADMIN_ROLE`` of the escrow (transfers
    wait ``admin_delay`` seconds) and every operating role of :data:`ESCROW_ROLES`; each
    address in ``compliance_officers``, ``pausers`` and ``token_managers`` gets that role too.
    The stablecoin is allow-listed for new deals; ``admin``, as registrar, accredits each of
    ``arbiters`` and registers each of ``inspectors`` (deals may name only those).

    Raises :class:`~chainaudit.core.errors.ConfigError` for a malformed address,
    :class:`~chainaudit.core.errors.ChainError` when a transaction fails (saying so when the
    vault's code is over the chain's EIP-170 size limit) and
    :class:`~chainaudit.core.errors.ToolchainError` when the contracts cannot be compiled.
    """
    anchor = _checksum(anchor_address) if anchor_address else ZERO_ADDRESS
    arbiter_list = [_checksum(a) for a in arbiters]
    inspector_list = [_checksum(a) for a in inspectors]
    extra = {
        "COMPLIANCE_ROLE": [_checksum(a) for a in compliance_officers],
        "PAUSER_ROLE": [_checksum(a) for a in pausers],
        "TOKEN_MANAGER_ROLE": [_checksum(a) for a in token_managers],
        "REGISTRAR_ROLE": [],
    }
    artifacts = escrow_artifacts()
    token = deploy(
        chain,
        admin,
        artifacts["MockStablecoin"],
        STABLECOIN_NAME,
        STABLECOIN_SYMBOL,
        admin.address,
    )
    vault_artifact = artifacts["SupplyChainEscrow"]
    try:
        escrow = deploy(chain, admin, vault_artifact, admin.address, admin_delay, anchor)
    except ChainUnavailableError:
        raise
    except ChainError as exc:
        size = (len(vault_artifact.deployed_bytecode) - 2) // 2
        if size <= EIP170_CODE_LIMIT:
            raise
        raise ChainError(
            f"SupplyChainEscrow is {size:,} bytes of deployed code, over the EIP-170 limit of "
            f"{EIP170_CODE_LIMIT:,} that this chain enforces; on a devnet, start Anvil with "
            f"--disable-code-size-limit ({exc})"
        ) from exc
    vault = chain.contract(escrow.address, vault_artifact.abi)
    for role_name in ESCROW_ROLES:
        role = chain.run(role_name, getattr(vault.functions, role_name)().call)
        for holder in dict.fromkeys([admin.address, *extra[role_name]]):
            transact(chain, admin, vault.functions.grantRole(role, holder))
    transact(chain, admin, vault.functions.setTokenAllowed(token.address, True))
    for arbiter in dict.fromkeys(arbiter_list):
        transact(chain, admin, vault.functions.setArbiterAccredited(arbiter, True))
    for inspector in dict.fromkeys(inspector_list):
        transact(chain, admin, vault.functions.registerInspector(inspector))
    return {"MockStablecoin": token, "SupplyChainEscrow": escrow}


GATE_POLICY_ID = 1
"""The compliance policy of deals created through the API (issue 13)."""


def deploy_gate(
    chain: Chain,
    admin: LocalAccount,
    vault_address: str,
    clearance_signer: str,
    *,
    policy_threshold: int = 0,
    policy_id: int = GATE_POLICY_ID,
    compliance_officers: Sequence[str] = (),
    admin_delay: int = ADMIN_DELAY_SECONDS,
) -> Deployed:
    """Deploy an ``EscrowGate`` and make it the vault's gate (issue 13).

    Preconditions: ``admin`` holds ``DEFAULT_ADMIN_ROLE`` of the vault at ``vault_address``,
    which has no gate yet. Result: the gate, with ``clearance_signer`` signing clearances,
    policy ``policy_id`` (moves of milestones above ``policy_threshold`` need a clearance),
    ``COMPLIANCE_ROLE`` (freezes) held by ``admin`` and ``compliance_officers``, and set on
    the vault (once: it can never be replaced). Raises as :func:`deploy_escrow`.
    """
    artifacts = compile_contracts()
    gate_artifact = artifacts["EscrowGate"]
    gate = deploy(
        chain, admin, gate_artifact, admin.address, admin_delay, _checksum(clearance_signer)
    )
    contract = chain.contract(gate.address, gate_artifact.abi)
    transact(chain, admin, contract.functions.createPolicy(policy_id, policy_threshold))
    role = chain.run("COMPLIANCE_ROLE", contract.functions.COMPLIANCE_ROLE().call)
    for holder in dict.fromkeys([admin.address, *(_checksum(a) for a in compliance_officers)]):
        transact(chain, admin, contract.functions.grantRole(role, holder))
    vault = chain.contract(_checksum(vault_address), artifacts["SupplyChainEscrow"].abi)
    transact(chain, admin, vault.functions.setEscrowGate(gate.address))
    return gate


def mint(chain: Chain, owner: LocalAccount, token: str, to: str, amount: int) -> str:
    """Faucet: mint ``amount`` (minor units, 6 decimals) of the mock stablecoin to ``to``.

    Preconditions: ``owner`` owns the ``MockStablecoin`` at ``token``; ``amount > 0``.
    Returns the transaction hash (0x-hex). Raises :class:`~chainaudit.core.errors.ConfigError` for
    a bad amount or address and :class:`~chainaudit.core.errors.ChainError` when the mint fails
    (for example ``owner`` is not the token's owner).
    """
    if amount <= 0:
        raise ConfigError(f"the amount to mint must be positive, not {amount}")
    contract = chain.contract(_checksum(token), escrow_artifacts()["MockStablecoin"].abi)
    receipt = transact(chain, owner, contract.functions.mint(_checksum(to), amount))
    return Web3.to_hex(receipt["transactionHash"])


def _checksum(address: str) -> str:
    try:
        return str(Web3.to_checksum_address(address))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{address!r} is not an Ethereum address") from exc
