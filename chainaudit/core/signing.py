"""EIP-712 signatures over records, so a party cannot later deny a record it made.

The signed message is ``AuditRecord(string id, bytes32 leafHash)`` in the domain
``{name: "chainaudit", version: "1", chainId}``: the leaf hash commits to the record's RFC 8785
bytes, salt included, so the client supplies the salt when it signs. The chain id binds the
signature to one deployment's chain: a signature made for another chain does not verify.
"""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.exceptions import ValidationError
from web3 import Web3

from chainaudit.core.errors import VerificationError

__all__ = ["recover_record_signer", "sign_record"]

DOMAIN_NAME = "chainaudit"
DOMAIN_VERSION = "1"


def record_typed_data(chain_id: int, record_id: str, leaf_hash: bytes) -> dict[str, Any]:
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
            ],
            "AuditRecord": [
                {"name": "id", "type": "string"},
                {"name": "leafHash", "type": "bytes32"},
            ],
        },
        "primaryType": "AuditRecord",
        "domain": {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id},
        "message": {"id": record_id, "leafHash": leaf_hash},
    }


def sign_record(account: LocalAccount, chain_id: int, record_id: str, leaf_hash: bytes) -> str:
    """Return the 0x-hex EIP-712 signature of a record by ``account``."""
    message = encode_typed_data(full_message=record_typed_data(chain_id, record_id, leaf_hash))
    return Web3.to_hex(account.sign_message(message).signature)


def recover_record_signer(chain_id: int, record_id: str, leaf_hash: bytes, signature: str) -> str:
    """Return the checksummed address that signed the record; raises
    :class:`VerificationError` for a malformed signature."""
    try:
        message = encode_typed_data(full_message=record_typed_data(chain_id, record_id, leaf_hash))
        return str(Account.recover_message(message, signature=signature))
    except (ValueError, TypeError, ValidationError) as exc:
        raise VerificationError("the record signature is malformed", check="signature") from exc
