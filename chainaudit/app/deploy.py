"""Deploying chainaudit's contracts and finding them again.

``deploy_contracts`` compiles (cached) and deploys ``AuditAnchor`` and records the addresses in
``deployments/<chain_id>.json``; the anchoring service, the CLI and the API read them back
with :func:`contract_address` unless an address is configured explicitly.
"""

from __future__ import annotations

from pathlib import Path

from eth_account.signers.local import LocalAccount

from chainaudit.app.settings import Settings
from chainaudit.chain.chain import Chain, Deployed, deploy, read_deployment, write_deployment
from chainaudit.chain.escrow_deploy import deploy_escrow, deploy_gate
from chainaudit.chain.toolchain import compile_contracts
from chainaudit.core.errors import ConfigError

__all__ = ["DEVNET_PARTIES", "contract_address", "deploy_contracts"]

ADMIN_DELAY_SECONDS = 2 * 24 * 3600
"""Default-admin transfers wait two days (OpenZeppelin AccessControlDefaultAdminRules)."""


DEVNET_PARTIES: dict[str, int] = {
    "operator": 0,
    "buyer": 1,
    "supplier": 2,
    "financier": 3,
    "inspector": 4,
    "arbiter": 5,
    "compliance": 6,
    "approver1": 7,
    "approver2": 8,
    "auditor": 9,
}
"""Which well-known devnet account (index into the ``anvil.env`` mnemonic) plays which part in
the demo and the development service: account 0 deploys, anchors and administers."""


def deploy_contracts(
    chain: Chain,
    deployer: LocalAccount,
    *,
    anchorer: str | None = None,
    directory: Path | None = None,
    escrow: bool = False,
    compliance_officers: tuple[str, ...] = (),
    arbiters: tuple[str, ...] = (),
    inspectors: tuple[str, ...] = (),
    clearance_signer: str | None = None,
) -> dict[str, Deployed]:
    """Deploy ``AuditAnchor`` with ``deployer`` as admin and ``anchorer`` (default: the
    deployer) holding ANCHORER_ROLE; with ``escrow``, also the ``SupplyChainEscrow`` vault
    bound to it and its devnet stablecoin (``compliance_officers`` get COMPLIANCE_ROLE;
    ``arbiters`` are accredited and ``inspectors`` registered by the deployer as registrar);
    with ``escrow`` and ``clearance_signer``, also the vault's ``EscrowGate`` (issue 13: policy
    1 clears every amount; the officers may freeze). Writes ``<directory>/<chain_id>.json``
    when given."""
    artifacts = compile_contracts()
    anchor = deploy(
        chain,
        deployer,
        artifacts["AuditAnchor"],
        ADMIN_DELAY_SECONDS,
        deployer.address,
        anchorer or deployer.address,
    )
    deployed = {"AuditAnchor": anchor}
    if escrow:
        deployed.update(
            deploy_escrow(
                chain,
                deployer,
                anchor.address,
                compliance_officers=compliance_officers,
                arbiters=arbiters,
                inspectors=inspectors,
            )
        )
        if clearance_signer is not None:
            deployed["EscrowGate"] = deploy_gate(
                chain,
                deployer,
                deployed["SupplyChainEscrow"].address,
                clearance_signer,
                compliance_officers=compliance_officers,
            )
    if directory is not None:
        write_deployment(directory, chain.chain_id(), deployer.address, deployed)
    return deployed


def contract_address(settings: Settings, chain: Chain, name: str = "AuditAnchor") -> str:
    """The configured address of ``name``, else the one in the deployments file."""
    if name == "AuditAnchor" and settings.anchor_contract:
        return settings.anchor_contract
    if name == "SupplyChainEscrow" and settings.escrow_contract:
        return settings.escrow_contract
    if name == "EscrowGate" and settings.escrow_gate_contract:
        return settings.escrow_gate_contract
    addresses = read_deployment(settings.deployments_dir, chain.chain_id())
    if name not in addresses:
        raise ConfigError(f"{name} is not in the deployment for chain {chain.chain_id()}")
    return addresses[name]
