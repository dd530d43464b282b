"""The chain edge: a JSON-RPC endpoint, signing keys, transactions and deployments.

Everything that talks to an Ethereum node goes through :class:`Chain`, which bounds every call
with a timeout and turns transport failures into
:class:`~chainaudit.core.errors.ChainUnavailableError` (retry later) and node refusals into
:class:`~chainaudit.core.errors.ChainError`. Keys come only from the environment or an encrypted
keystore file (:func:`load_account`); they are never logged or printed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar, cast
from urllib.parse import urlsplit

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import (
    ContractLogicError,
    TimeExhausted,
    TransactionNotFound,
    Web3Exception,
)
from web3.types import TxParams, TxReceipt

from chainaudit.chain.anchor_abi import decode_anchor_revert
from chainaudit.chain.toolchain import ContractArtifact
from chainaudit.core.errors import ChainError, ChainUnavailableError, ConfigError
from chainaudit.core.jsonlimits import restore_recursion_limit

__all__ = [
    "Call",
    "Chain",
    "Deployed",
    "SignedTx",
    "T",
    "broadcast",
    "deploy",
    "deployment_block",
    "load_account",
    "read_deployment",
    "shown_endpoint",
    "sign_call",
    "transact",
    "unreachable",
    "wait_for_receipt",
    "write_deployment",
]

restore_recursion_limit()  # web3 imported py_ecc, which raised it to 100,000: see jsonlimits

T = TypeVar("T")
Call = ContractFunction | ContractConstructor

GAS_HEADROOM = 1.25
"""Gas limit = estimate x this, so that a state change between estimate and inclusion fits."""


DEVNET_HINT: Final = (
    "start the local devnet with `chainaudit devnet --detach`, or point --rpc / "
    "CHAINAUDIT_RPC_URL at a running node"
)
"""What to do when the chain endpoint cannot be reached (the end of every such message)."""


def shown_endpoint(rpc_url: str) -> str:
    """``rpc_url`` as messages may show it: scheme, host and port. A credential can sit in
    ``user:password@``, the path (``/v3/<key>``) or the query: none of them is shown."""
    try:
        parts = urlsplit(rpc_url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "<unparsable URL>"
    path = "" if parts.path in ("", "/") else "/…"
    return f"{parts.scheme}://{host}{port}{path}"


def _reason(exc: BaseException) -> str:
    """A few words on why a transport failed, instead of urllib3's nested repr."""
    if isinstance(exc, (requests.Timeout, TimeoutError)):
        return "timed out"
    text = str(exc)
    for needle, reason in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "unknown host"),
        ("nodename nor servname", "unknown host"),
        ("Temporary failure in name resolution", "unknown host"),
        ("No route to host", "no route to host"),
        ("Network is unreachable", "network unreachable"),
        ("Connection reset", "connection reset"),
        ("RemoteDisconnected", "the endpoint closed the connection"),
        ("Read timed out", "timed out"),
    ):
        if needle in text:
            return reason
    return "cannot connect"


def unreachable(what: str, rpc_url: str, exc: BaseException) -> ChainUnavailableError:
    """The one-line error for an endpoint that cannot be reached: where, why, what to do."""
    return ChainUnavailableError(
        f"{what}: chain endpoint unreachable at {shown_endpoint(rpc_url)} ({_reason(exc)}); "
        + DEVNET_HINT
    )


def _revert_bytes(exc: ContractLogicError) -> bytes:
    """The revert data of a web3 contract error (empty when it carries none)."""
    data: Any = exc.data
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return b""
    return b""


@contextmanager
def _rpc(what: str, rpc_url: str) -> Iterator[None]:
    """Translate transport and node failures of one RPC interaction into chainaudit errors."""
    try:
        yield
    except (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError) as exc:
        raise unreachable(what, rpc_url, exc) from exc
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise ChainUnavailableError(
            f"{what}: {shown_endpoint(rpc_url)} does not answer as an Ethereum JSON-RPC node "
            f"(HTTP {status})"
        ) from exc
    except ContractLogicError as exc:
        decoded = decode_anchor_revert(_revert_bytes(exc))
        if decoded is not None:
            raise ChainError(f"{what}: reverted with {decoded}") from exc
        raise ChainError(f"{what}: reverted: {exc}") from exc
    except (Web3Exception, ValueError) as exc:
        raise ChainError(f"{what}: {exc}") from exc


class Chain:
    """A chain endpoint: web3 with a request timeout and typed errors.

    ``rpc_url`` must be an HTTP(S) JSON-RPC endpoint. Methods raise
    :class:`ChainUnavailableError` when the endpoint cannot be reached and
    :class:`ChainError` when the node refuses a request.
    """

    def __init__(self, rpc_url: str, *, timeout: float = 10.0) -> None:
        if not rpc_url.startswith(("http://", "https://")):
            raise ConfigError(f"the chain endpoint must be an http(s) URL, not {rpc_url!r}")
        self.rpc_url = rpc_url
        self.w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))

    def run(self, what: str, call: Callable[[], T]) -> T:
        """Run ``call`` (which uses :attr:`w3`) under the error translation."""
        with _rpc(what, self.rpc_url):
            return call()

    def chain_id(self) -> int:
        return self.run("eth_chainId", lambda: int(self.w3.eth.chain_id))

    def block_number(self) -> int:
        return self.run("eth_blockNumber", lambda: int(self.w3.eth.block_number))

    def block_hash(self, number: int) -> bytes | None:
        """Return the canonical block hash at ``number``, or ``None`` past the head."""

        def fetch() -> bytes | None:
            try:
                block = self.w3.eth.get_block(number)
            except Web3Exception as exc:
                if "not found" in str(exc).lower():
                    return None
                raise
            return bytes(block["hash"]) if block and "hash" in block else None

        return self.run("eth_getBlockByNumber", fetch)

    def receipt(self, tx_hash: bytes) -> TxReceipt | None:
        """Return the receipt of ``tx_hash``, or ``None`` if it is not in the canonical chain."""

        def fetch() -> TxReceipt | None:
            try:
                return self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
            except TransactionNotFound:
                return None

        return self.run("eth_getTransactionReceipt", fetch)

    def contract(self, address: str, abi: list[dict[str, Any]]) -> Contract:
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi)

    def code_at(self, address: str) -> bytes:
        return self.run(
            "eth_getCode", lambda: bytes(self.w3.eth.get_code(Web3.to_checksum_address(address)))
        )


# -- keys -------------------------------------------------------------------------------------


def load_account(
    *,
    private_key: str | None = None,
    keystore: Path | None = None,
    password: str | None = None,
) -> LocalAccount:
    """Return a signing account from a raw key or an encrypted keystore file (EIP-2335 v3).

    Exactly one of ``private_key`` or ``keystore`` must be given; a keystore needs
    ``password``. Raises :class:`ConfigError` without echoing any secret.
    """
    if (private_key is None) == (keystore is None):
        raise ConfigError("give either an anchorer private key or a keystore file, not both")
    try:
        if private_key is not None:
            return cast(LocalAccount, Account.from_key(private_key))
        assert keystore is not None
        if password is None:
            raise ConfigError(f"the keystore {keystore} needs a password")
        encrypted = json.loads(keystore.read_text(encoding="utf-8"))
        return cast(LocalAccount, Account.from_key(Account.decrypt(encrypted, password)))
    except ConfigError:
        raise
    except OSError as exc:
        raise ConfigError(f"cannot read the keystore {keystore}: {exc.strerror}") from exc
    except (ValueError, TypeError, KeyError) as exc:
        # The message of a failed key parse may contain the key itself: never include it.
        source = "keystore" if keystore is not None else "private key"
        raise ConfigError(f"the {source} is not a valid Ethereum key") from exc


# -- transactions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedTx:
    """A signed transaction, kept so it can be re-broadcast unchanged after a restart."""

    tx_hash: bytes
    raw: bytes
    nonce: int


def fee_fields(chain: Chain) -> dict[str, int]:
    """Return EIP-1559 fee fields from the node: ``maxFeePerGas = 2 * baseFee + tip``."""

    def fetch() -> dict[str, int]:
        base = int(chain.w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
        try:
            tip = int(chain.w3.eth.max_priority_fee)
        except (Web3Exception, ValueError):
            tip = Web3.to_wei(1, "gwei")
        return {"maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip}

    return chain.run("fee estimate", fetch)


def sign_call(
    chain: Chain,
    account: LocalAccount,
    call: Call,
    *,
    nonce: int | None = None,
) -> SignedTx:
    """Build, estimate and sign a contract call as an EIP-1559 transaction.

    ``nonce`` defaults to the account's pending nonce. A call that would revert raises
    :class:`ChainError` (from the gas estimate) before anything is signed.
    """

    def build() -> SignedTx:
        use_nonce = (
            nonce
            if nonce is not None
            else int(chain.w3.eth.get_transaction_count(account.address, "pending"))
        )
        params: TxParams = {
            "from": account.address,
            "nonce": use_nonce,
            "chainId": int(chain.w3.eth.chain_id),
            **fee_fields(chain),  # type: ignore[typeddict-item]
        }
        tx = call.build_transaction(params)
        tx["gas"] = int(int(chain.w3.eth.estimate_gas(tx)) * GAS_HEADROOM)
        signed = account.sign_transaction(tx)  # type: ignore[arg-type]
        return SignedTx(bytes(signed.hash), bytes(signed.raw_transaction), use_nonce)

    return chain.run(f"sign {_label(call)}", build)


def broadcast(chain: Chain, tx: SignedTx) -> None:
    """Send a signed transaction. Sending one the node already knows is not an error."""
    try:
        chain.run("eth_sendRawTransaction", lambda: chain.w3.eth.send_raw_transaction(tx.raw))
    except ChainUnavailableError:
        raise
    except ChainError as exc:
        text = str(exc).lower()
        if "already known" in text or "already imported" in text or "known transaction" in text:
            return
        raise


def transact(
    chain: Chain, account: LocalAccount, call: Call, *, timeout: float = 60.0
) -> TxReceipt:
    """Sign, send and wait for a call's receipt; raises :class:`ChainError` if it reverted."""
    tx = sign_call(chain, account, call)
    broadcast(chain, tx)
    receipt = wait_for_receipt(chain, tx.tx_hash, timeout=timeout)
    if receipt["status"] != 1:
        raise ChainError(f"transaction {tx.tx_hash.hex()} ({_label(call)}) reverted")
    return receipt


def _label(call: Call) -> str:
    return str(getattr(call, "fn_name", "constructor"))


def wait_for_receipt(chain: Chain, tx_hash: bytes, *, timeout: float = 60.0) -> TxReceipt:
    """Wait until ``tx_hash`` is mined; raises :class:`ChainError` after ``timeout`` seconds."""

    def wait() -> TxReceipt:
        try:
            return chain.w3.eth.wait_for_transaction_receipt(
                HexBytes(tx_hash), timeout=timeout, poll_latency=0.05
            )
        except TimeExhausted as exc:
            raise ChainError(f"transaction {tx_hash.hex()} not mined in {timeout}s") from exc

    return chain.run("wait for receipt", wait)


# -- deployment -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deployed:
    """A deployed contract."""

    name: str
    address: str
    tx_hash: str
    block_number: int


def deploy(chain: Chain, account: LocalAccount, artifact: ContractArtifact, *args: Any) -> Deployed:
    """Deploy ``artifact`` with constructor ``args`` and wait for it to be mined."""
    if artifact.bytecode in ("", "0x"):
        raise ConfigError(f"{artifact.name} has no bytecode (an interface or abstract contract)")
    factory = chain.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    receipt = transact(chain, account, factory.constructor(*args))
    address = receipt.get("contractAddress")
    if not address:
        raise ChainError(f"deploying {artifact.name} created no contract")
    return Deployed(
        artifact.name,
        str(address),
        Web3.to_hex(receipt["transactionHash"]),
        receipt["blockNumber"],
    )


def deployment_path(directory: Path, chain_id: int) -> Path:
    return directory / f"{chain_id}.json"


def write_deployment(
    directory: Path, chain_id: int, deployer: str, contracts: dict[str, Deployed]
) -> Path:
    """Write ``deployments/<chain_id>.json`` atomically and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = deployment_path(directory, chain_id)
    document = {
        "chain_id": chain_id,
        "deployer": deployer,
        "contracts": {
            name: {"address": d.address, "tx_hash": d.tx_hash, "block_number": d.block_number}
            for name, d in contracts.items()
        },
    }
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


def read_deployment(directory: Path, chain_id: int) -> dict[str, str]:
    """Return ``{contract name: address}`` from ``deployments/<chain_id>.json``.

    Raises :class:`ConfigError` if the file is missing or malformed.
    """
    path = deployment_path(directory, chain_id)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return {name: str(entry["address"]) for name, entry in document["contracts"].items()}
    except FileNotFoundError as exc:
        raise ConfigError(
            f"no deployment for chain {chain_id} at {path}: run `chainaudit deploy` first"
        ) from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"the deployment file {path} is malformed: {exc}") from exc


def deployment_block(directory: Path, chain_id: int, name: str) -> int:
    """The block ``name`` was deployed in, from the deployments file (0 when unknown)."""
    try:
        document = json.loads(deployment_path(directory, chain_id).read_text(encoding="utf-8"))
        return int(document["contracts"][name]["block_number"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0
