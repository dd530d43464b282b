"""Building the I/O-facing objects (chain, signer, anchoring service) from :class:`Settings`."""

from __future__ import annotations

from pathlib import Path

from chainaudit.app.deploy import contract_address
from chainaudit.app.logkey import log_signer
from chainaudit.app.roles import anchorer_account
from chainaudit.app.settings import Settings
from chainaudit.chain.chain import Chain
from chainaudit.core import note
from chainaudit.log.checkpointing import Cosign
from chainaudit.log.store import Log
from chainaudit.service.anchoring import Anchorer, AnchorPolicy

__all__ = ["anchorer_from", "chain_from", "cosigner_from", "rules_path"]


def chain_from(settings: Settings, rpc_url: str | None = None) -> Chain:
    return Chain(rpc_url or settings.rpc_url, timeout=settings.rpc_timeout)


def policy_from(settings: Settings) -> AnchorPolicy:
    return AnchorPolicy(
        max_batch_records=settings.max_batch_records,
        max_batch_seconds=settings.max_batch_seconds,
        confirmations=settings.confirmations,
        finality=settings.finality,
    )


def cosigner_from(settings: Settings, log: Log) -> Cosign | None:
    """The witnesses' cosigning step for checkpoints of ``log`` (``witness_policy_file``),
    or ``None`` without a policy (:func:`chainaudit.service.cosign.log_cosigner`).

    Raises:
        PolicyError: the policy file cannot be read or is malformed (a
            :class:`~chainaudit.core.errors.ConfigError`).
    """
    if settings.witness_policy_file is None:
        return None
    from chainaudit.core.witness_policy import load_policy  # noqa: PLC0415
    from chainaudit.service.cosign import log_cosigner  # noqa: PLC0415 - httpx only when used

    policy = load_policy(settings.witness_policy_file)
    return log_cosigner(policy, log.consistency_proof, log.signed_checkpoint())


def anchorer_from(
    settings: Settings,
    log: Log,
    chain: Chain | None = None,
    *,
    signer: note.Signer | None = None,
) -> Anchorer:
    """An :class:`Anchorer` for ``log`` configured by ``settings``, signing the checkpoint
    note of every size it anchors with ``signer`` (default: the log's key,
    :func:`chainaudit.app.logkey.log_signer`), cosigned by the witnesses of the settings' policy
    (:func:`cosigner_from`).

    Raises:
        ConfigError: no anchorer key, or no log signing key, in production (or a key that
            cannot be used).
    """
    chain = chain or chain_from(settings)
    account = anchorer_account(settings)
    return Anchorer(
        log,
        chain,
        account,
        contract_address(settings, chain),
        policy=policy_from(settings),
        signer=signer or log_signer(settings),
        cosign=cosigner_from(settings, log),
    )


RULES_FILE = "rules.toml"


def rules_path(settings: Settings, override: Path | str | None = None) -> Path:
    """Where the rule file is: ``override``, else the ``rules_file`` setting
    (``CHAINAUDIT_RULES_FILE``), else ``<data_dir>/rules.toml``."""
    if override is not None:
        return Path(override)
    if settings.rules_file is not None:
        return settings.rules_file
    return Path(settings.data_dir) / RULES_FILE
