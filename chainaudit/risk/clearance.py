"""Clearances: the risk gate's ``allow``, signed so that the chain enforces it (issue 13).

A deal opened under a compliance policy of the vault's ``EscrowGate`` moves money (``fund``,
``acceptFinancing``, ``release``) above the policy's threshold only with a *clearance*: an
EIP-712 message signed by the gate's clearance signer, binding the chain id and the vault (the
domain), the deal, the milestone, the action, the amount, the leaf hash of the decision record
that allowed it, a deadline and a nonce::

    Clearance(uint256 dealId,uint256 milestone,uint8 action,uint256 amount,
              bytes32 decisionLeaf,uint64 deadline,uint256 nonce)

with the domain ``EIP712Domain(name "chainaudit EscrowGate", version "1", chainId,
verifyingContract = the vault)``. The clearance travels in the transaction's call data, after
the function's ABI-encoded arguments, as ``abi.encode(bytes32 decisionLeaf, uint64 deadline,
uint256 nonce, bytes signature)`` (:attr:`Clearance.encoded`): the vault's ABI is unchanged,
and a partner's own signed transaction carries a clearance exactly as the service's does.

:class:`ClearanceSigner` issues them; the nonce of a clearance is the leaf index of its
decision record, so each decision clears at most one action and nonces fill the gate's bitmap
in sequence (cheap on chain). The key comes from the environment or a keystore (settings),
never from code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from eth_abi.abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_typing import Hash32
from web3 import Web3

__all__ = [
    "ACTIONS",
    "CLEARANCE_TYPE",
    "DOMAIN_NAME",
    "DOMAIN_VERSION",
    "Clearance",
    "ClearanceSigner",
    "clearance_digest",
]

DOMAIN_NAME: Final = "chainaudit EscrowGate"
DOMAIN_VERSION: Final = "1"
CLEARANCE_TYPE: Final = (
    "Clearance(uint256 dealId,uint256 milestone,uint8 action,uint256 amount,"
    "bytes32 decisionLeaf,uint64 deadline,uint256 nonce)"
)
_DOMAIN_TYPE: Final = (
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)

ACTIONS: Final[dict[str, int]] = {"fund": 0, "finance": 1, "release": 2}
"""The risk gate's action names and their ``IEscrowGate.Action`` values (money movements)."""

DEFAULT_TTL_SECONDS: Final = 3600
"""How long a clearance stays valid after it is issued (chain time)."""


def _keccak(data: bytes) -> bytes:
    return bytes(Web3.keccak(data))


def domain_separator(chain_id: int, vault: str) -> bytes:
    """The EIP-712 domain separator of clearances for ``vault`` on chain ``chain_id``."""
    return _keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                _keccak(_DOMAIN_TYPE.encode()),
                _keccak(DOMAIN_NAME.encode()),
                _keccak(DOMAIN_VERSION.encode()),
                chain_id,
                Web3.to_checksum_address(vault),
            ],
        )
    )


def clearance_digest(
    *,
    chain_id: int,
    vault: str,
    deal_id: int,
    milestone: int,
    action: int,
    amount: int,
    decision_leaf: bytes,
    deadline: int,
    nonce: int,
) -> bytes:
    """The EIP-712 digest the clearance signer signs (``EscrowGate.clearanceDigest``)."""
    struct = _keccak(
        abi_encode(
            ["bytes32", "uint256", "uint256", "uint8", "uint256", "bytes32", "uint64", "uint256"],
            [
                _keccak(CLEARANCE_TYPE.encode()),
                deal_id,
                milestone,
                action,
                amount,
                decision_leaf,
                deadline,
                nonce,
            ],
        )
    )
    return _keccak(b"\x19\x01" + domain_separator(chain_id, vault) + struct)


@dataclass(frozen=True, slots=True, kw_only=True)
class Clearance:
    """A signed clearance for one money movement of one milestone."""

    vault: str
    chain_id: int
    deal_id: int
    milestone: int
    action: str
    """``fund``, ``finance`` or ``release`` (:data:`ACTIONS`)."""
    amount: int
    decision_leaf: bytes
    deadline: int
    nonce: int
    signature: bytes
    signer: str

    @property
    def encoded(self) -> bytes:
        """The bytes appended to the transaction's call data."""
        return abi_encode(
            ["bytes32", "uint64", "uint256", "bytes"],
            [self.decision_leaf, self.deadline, self.nonce, self.signature],
        )

    def as_json(self) -> dict[str, Any]:
        """The clearance for an API response (hex strings; ``encoded`` ready to append)."""
        return {
            "vault": self.vault,
            "chain_id": self.chain_id,
            "deal_id": self.deal_id,
            "milestone": self.milestone,
            "action": self.action,
            "amount": str(self.amount),
            "decision_leaf": "0x" + self.decision_leaf.hex(),
            "deadline": self.deadline,
            "nonce": str(self.nonce),
            "signature": "0x" + self.signature.hex(),
            "signer": self.signer,
            "encoded": "0x" + self.encoded.hex(),
        }


class ClearanceSigner:
    """Issues clearances for ``vault`` on chain ``chain_id`` with ``account`` (the gate's
    clearance signer; the gate's admin rotates it with ``setClearanceSigner``)."""

    def __init__(
        self,
        account: LocalAccount,
        *,
        vault: str,
        chain_id: int,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self.account = account
        self.vault = Web3.to_checksum_address(vault)
        self.chain_id = chain_id
        self.ttl_seconds = ttl_seconds

    @property
    def address(self) -> str:
        return str(self.account.address)

    def issue(
        self,
        *,
        deal_id: int,
        milestone: int,
        action: str,
        amount: int,
        decision_leaf: bytes,
        nonce: int,
        now: int,
    ) -> Clearance:
        """Sign a clearance valid until ``now`` + the TTL (``now``: chain time).

        Raises :class:`ValueError` for an action that moves no money or a leaf that is not
        32 bytes.
        """
        if action not in ACTIONS:
            raise ValueError(f"{action!r} needs no clearance (only {', '.join(ACTIONS)})")
        if len(decision_leaf) != 32:
            raise ValueError("the decision leaf hash must be 32 bytes")
        deadline = now + self.ttl_seconds
        digest = clearance_digest(
            chain_id=self.chain_id,
            vault=self.vault,
            deal_id=deal_id,
            milestone=milestone,
            action=ACTIONS[action],
            amount=amount,
            decision_leaf=decision_leaf,
            deadline=deadline,
            nonce=nonce,
        )
        signed = self.account.unsafe_sign_hash(Hash32(digest))
        return Clearance(
            vault=self.vault,
            chain_id=self.chain_id,
            deal_id=deal_id,
            milestone=milestone,
            action=action,
            amount=amount,
            decision_leaf=decision_leaf,
            deadline=deadline,
            nonce=nonce,
            signature=bytes(signed.signature),
            signer=self.address,
        )
