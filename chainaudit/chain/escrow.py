"""A typed Python client of ``SupplyChainEscrow``, the supply-chain-finance escrow vault.

:class:`EscrowClient` has one method per contract action. Each takes the acting
:class:`~eth_account.signers.local.LocalAccount`, sends one transaction through
:mod:`chainaudit.chain.chain` (estimate, sign, send, wait) and returns a :class:`TxResult` with the
transaction hash, block, gas used and the decoded events. Reads return frozen dataclasses:
:meth:`EscrowClient.deal` gives every party, every term and every milestone's full state,
read at one block so that the picture is consistent.

Refusals raise :class:`~chainaudit.core.errors.EscrowError` carrying the Solidity error name and its
decoded arguments, whether the contract refused at gas estimation (nothing was sent) or a mined
transaction reverted (the revert data is recovered from a ``callTracer`` trace, or by replaying
the call on the block's parent state when the node has no tracer)::

    try:
        client.fund(stranger, deal_id, 0, 1_000)
    except EscrowError as exc:
        assert exc.name == "SupplyChainEscrowUnauthorized"
        assert exc.arguments["expected"] is Party.BUYER

Inspector attestations can be signed off-chain (EIP-712, :func:`sign_attestation`) and relayed
by anyone (:meth:`EscrowClient.relay_attestation`).

The ABI comes from the compiled contracts (:func:`chainaudit.chain.escrow_deploy.escrow_artifacts`,
cached) unless one is passed in.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final, cast

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractEvent, ContractFunction
from web3.exceptions import ContractLogicError, MismatchedABI, Web3Exception
from web3.types import BlockIdentifier, TxParams, TxReceipt

from chainaudit.chain.chain import Chain, SignedTx, broadcast, sign_call, wait_for_receipt
from chainaudit.core.errors import ChainError, ChainUnavailableError, EscrowError, InputError

__all__ = [
    "ATTESTATION_TYPES",
    "MAX_UINT256",
    "ZERO_ADDRESS",
    "ZERO_HASH",
    "Accounting",
    "Deal",
    "DealParams",
    "DecodedEvent",
    "Dispute",
    "ErrorDecoder",
    "EscrowClient",
    "EscrowError",
    "FinancingOffer",
    "Hold",
    "Milestone",
    "MilestoneParams",
    "MilestoneStatus",
    "Party",
    "ReleaseApproval",
    "SignedAttestation",
    "TxResult",
    "WithClearance",
    "attestation_digest",
    "domain_separator",
    "sign_attestation",
]

ZERO_ADDRESS: Final = "0x0000000000000000000000000000000000000000"
ZERO_HASH: Final = bytes(32)
MAX_UINT256: Final = 2**256 - 1
BPS: Final = 10_000

EIP712_NAME: Final = "SupplyChainEscrow"
EIP712_VERSION: Final = "1"

ATTESTATION_TYPES: Final[dict[str, list[dict[str, str]]]] = {
    "InspectionAttestation": [
        {"name": "inspector", "type": "address"},
        {"name": "dealId", "type": "uint256"},
        {"name": "milestone", "type": "uint256"},
        {"name": "reportHash", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ]
}
"""The EIP-712 type of a relayed inspector attestation (``ATTESTATION_TYPEHASH`` on chain)."""

_ATTESTATION_TYPE_STRING: Final = (
    "InspectionAttestation(address inspector,uint256 dealId,uint256 milestone,"
    "bytes32 reportHash,uint256 nonce,uint256 deadline)"
)
_DOMAIN_TYPE_STRING: Final = (
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)


# -- enums mirroring ISupplyChainEscrow -------------------------------------------------------


class MilestoneStatus(IntEnum):
    """``ISupplyChainEscrow.MilestoneStatus``; the values are the Solidity ordinals."""

    NONE = 0
    OPEN = 1
    FUNDED = 2
    SHIPPED = 3
    INSPECTED = 4
    ACCEPTED = 5
    DISPUTED = 6
    RELEASED = 7
    SETTLED = 8
    REFUNDED = 9

    @property
    def final(self) -> bool:
        """Released, settled and refunded milestones never change again."""
        return self >= MilestoneStatus.RELEASED


class Party(IntEnum):
    """``ISupplyChainEscrow.Party``: who a refused function expected its caller to be."""

    BUYER = 0
    SUPPLIER = 1
    ARBITER = 2
    INSPECTOR = 3
    APPROVER = 4
    FINANCIER = 5
    BUYER_OR_SUPPLIER = 6
    BUYER_OR_APPROVER = 7
    PAYEE = 8
    BUYER_OR_PAYEE = 9


_ENUMS: Final[dict[str, type[IntEnum]]] = {
    "MilestoneStatus": MilestoneStatus,
    "Party": Party,
}


# -- inputs -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DealParams:
    """The terms of a new deal (``ISupplyChainEscrow.DealParams``); the caller is the buyer.

    Times are Unix seconds; amounts are token minor units. ``financier`` is optional (the only
    financier allowed to take a claim when set); ``approvals_required`` approvals out of
    ``approvers`` are needed to release milestones above ``approval_threshold`` (0 and no
    approvers: no maker-checker). The contract checks everything (see ``createDeal``).
    """

    supplier: str
    arbiter: str
    token: str
    inspectors: Sequence[str]
    inspector_threshold: int
    inspection_window: int
    dispute_timeout: int
    default_payee_bps: int
    long_stop: int
    financier: str | None = None
    approval_threshold: int = 0
    approvals_required: int = 0
    approvers: Sequence[str] = ()
    #: The EscrowGate compliance policy (0: none); see ``chainaudit.risk.clearance``.
    policy: int = 0

    def as_abi(self) -> tuple[Any, ...]:
        """The ABI tuple, in the field order of the Solidity struct."""
        return (
            _address(self.supplier),
            _address(self.arbiter),
            _address(self.financier or ZERO_ADDRESS),
            _address(self.token),
            [_address(a) for a in self.inspectors],
            self.inspector_threshold,
            self.inspection_window,
            self.dispute_timeout,
            self.default_payee_bps,
            self.long_stop,
            self.approval_threshold,
            self.approvals_required,
            [_address(a) for a in self.approvers],
            self.policy,
        )

    @classmethod
    def from_abi(cls, value: Mapping[str, Any]) -> DealParams:
        """The inverse of :meth:`as_abi`, from a struct web3 decoded (named fields)."""
        financier = str(value["financier"])
        return cls(
            supplier=str(value["supplier"]),
            arbiter=str(value["arbiter"]),
            token=str(value["token"]),
            inspectors=[str(a) for a in value["inspectors"]],
            inspector_threshold=int(value["inspectorThreshold"]),
            inspection_window=int(value["inspectionWindow"]),
            dispute_timeout=int(value["disputeTimeout"]),
            default_payee_bps=int(value["defaultPayeeBps"]),
            long_stop=int(value["longStop"]),
            financier=None if int(financier, 16) == 0 else financier,
            approval_threshold=int(value["approvalThreshold"]),
            approvals_required=int(value["approvalsRequired"]),
            approvers=[str(a) for a in value["approvers"]],
            policy=int(value.get("policy", 0)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MilestoneParams:
    """One milestone of a new deal (``ISupplyChainEscrow.MilestoneParams``).

    ``document_hash`` names the purchase order or contract clause; a non-zero ``proof_leaf``
    (an RFC 9162 leaf hash of a record of the audit log) gates acceptance on a proof that the
    record is in an anchored checkpoint and was signed by ``proof_signer`` (required with a
    proof leaf; issue 13), with chainaudit's EIP-712 record signature
    (:func:`chainaudit.core.signing.sign_record`). A non-zero ``invoice_hash`` declares the invoice
    the milestone pays: its claim can be financed only under that invoice, and no other deal
    between the same supplier and buyer may declare it again.
    """

    amount: int
    due_date: int
    document_hash: bytes
    proof_leaf: bytes = ZERO_HASH
    invoice_hash: bytes = ZERO_HASH
    proof_signer: str | None = None

    def as_abi(self) -> tuple[Any, ...]:
        """The ABI tuple, in the field order of the Solidity struct."""
        return (
            self.amount,
            self.due_date,
            _bytes32(self.document_hash),
            _bytes32(self.proof_leaf),
            _bytes32(self.invoice_hash),
            _address(self.proof_signer or ZERO_ADDRESS),
        )

    @classmethod
    def from_abi(cls, value: Mapping[str, Any]) -> MilestoneParams:
        """The inverse of :meth:`as_abi`, from a struct web3 decoded (named fields)."""
        return cls(
            amount=int(value["amount"]),
            due_date=int(value["dueDate"]),
            document_hash=bytes(value["documentHash"]),
            proof_leaf=bytes(value["proofLeaf"]),
            invoice_hash=bytes(value["invoiceHash"]),
            proof_signer=(
                None if int(str(value["proofSigner"]), 16) == 0 else str(value["proofSigner"])
            ),
        )


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecodedEvent:
    """One decoded contract log.

    ``args`` holds Python values: ``int``, checksum address ``str``, ``bytes`` for fixed and
    dynamic bytes, ``bool``, and ``list`` for arrays. Hashes of the log's position are 0x-hex.
    """

    name: str
    args: Mapping[str, Any]
    address: str
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int


@dataclass(frozen=True, slots=True)
class TxResult:
    """A mined, successful transaction and the events it emitted, in log order."""

    tx_hash: str
    block_number: int
    block_hash: str
    gas_used: int
    events: tuple[DecodedEvent, ...]

    def named(self, name: str) -> list[DecodedEvent]:
        """Every event called ``name``, in log order."""
        return [e for e in self.events if e.name == name]

    def event(self, name: str) -> DecodedEvent:
        """The first event called ``name``; raises :class:`KeyError` if there is none."""
        for event in self.events:
            if event.name == name:
                return event
        raise KeyError(f"transaction {self.tx_hash} emitted no {name} event")

    @property
    def deal_id(self) -> int:
        """The deal id of the first event carrying one (``DealCreated`` for a new deal)."""
        for event in self.events:
            if "dealId" in event.args:
                return int(event.args["dealId"])
        raise KeyError(f"transaction {self.tx_hash} emitted no deal event")


@dataclass(frozen=True, slots=True)
class Dispute:
    """A milestone's dispute: who opened it and when; ``payee_bps`` once settled."""

    opened_by: str
    opened_at: int
    payee_bps: int
    timeout_at: int
    """When anyone may apply the deal's default outcome (``opened_at + dispute_timeout``)."""


@dataclass(frozen=True, slots=True)
class ReleaseApproval:
    """A maker-checker release request: its initiator and the approvals gathered so far."""

    initiator: str
    approvals: int


@dataclass(frozen=True, slots=True)
class FinancingOffer:
    """The supplier's open offer of a milestone's claim to a financier."""

    financier: str
    advance: int
    invoice_hash: bytes
    expires_at: int


@dataclass(frozen=True, slots=True)
class Hold:
    """A compliance hold: it blocks release and financing until ``until`` unless lifted."""

    until: int
    reason_hash: bytes
    active: bool
    """Whether the hold was in force at the block the deal was read at."""


@dataclass(frozen=True, slots=True)
class Milestone:
    """A milestone's full state, read at :attr:`Deal.block_number`.

    ``funded == released + refunded + held``: ``released`` went to the payee (a release, or
    the payee's share of a dispute settlement), ``refunded`` back to the buyer (long-stop or
    the buyer's share of a settlement), ``held`` is still escrowed.
    """

    index: int
    status: MilestoneStatus
    amount: int
    funded: int
    released: int
    refunded: int
    held: int
    due_date: int
    document_hash: bytes | None
    """The purchase-order hash from ``MilestoneCreated`` (``None`` when no log was found)."""
    payee: str
    financed: bool
    """True once a financier bought the claim (the payee is then the financier)."""
    attestations: int
    stage_at: int
    """Shipment time (Shipped) or completed-inspection time (Inspected, Accepted); kept as
    last written in later states."""
    window_ends_at: int | None
    """End of the inspection window while ``INSPECTED`` or ``ACCEPTED``; after it an
    inspected milestone is deemed accepted (when its proof gate, if any, is passed)."""
    deemed_accepted: bool
    shipping_document: bytes
    proof_required: bool
    proof_verified: bool
    proof_leaf: bytes
    hold: Hold | None
    dispute: Dispute | None
    approval: ReleaseApproval | None
    offer: FinancingOffer | None


@dataclass(frozen=True, slots=True)
class Deal:
    """A deal's parties, terms and milestones, read at one block."""

    deal_id: int
    buyer: str
    supplier: str
    arbiter: str
    financier: str | None
    token: str
    inspectors: tuple[str, ...]
    inspector_threshold: int
    inspection_window: int
    dispute_timeout: int
    default_payee_bps: int
    long_stop: int
    approval_threshold: int
    approvals_required: int
    approvers: tuple[str, ...]
    milestones: tuple[Milestone, ...]
    funded: int
    released: int
    refunded: int
    held: int
    block_number: int
    timestamp: int
    """The timestamp of :attr:`block_number`, against which holds and windows were judged."""


@dataclass(frozen=True, slots=True)
class Accounting:
    """``dealAccounting``: ``funded == released + refunded + held``."""

    funded: int
    released: int
    refunded: int
    held: int


@dataclass(frozen=True, slots=True)
class SignedAttestation:
    """An inspector's EIP-712 attestation, ready to be relayed by anyone."""

    inspector: str
    deal_id: int
    milestone: int
    report_hash: bytes
    nonce: int
    deadline: int
    signature: bytes


# -- EIP-712 ----------------------------------------------------------------------------------


def domain_separator(chain_id: int, contract: str) -> bytes:
    """The EIP-712 domain separator of the escrow at ``contract`` on ``chain_id``.

    Equals the contract's ``DOMAIN_SEPARATOR()`` (name ``SupplyChainEscrow``, version 1).
    """
    return bytes(
        Web3.keccak(
            abi_encode(
                ["bytes32", "bytes32", "bytes32", "uint256", "address"],
                [
                    Web3.keccak(text=_DOMAIN_TYPE_STRING),
                    Web3.keccak(text=EIP712_NAME),
                    Web3.keccak(text=EIP712_VERSION),
                    chain_id,
                    _address(contract),
                ],
            )
        )
    )


def attestation_digest(
    chain_id: int,
    contract: str,
    *,
    inspector: str,
    deal_id: int,
    milestone: int,
    report_hash: bytes,
    nonce: int,
    deadline: int,
) -> bytes:
    """The EIP-712 digest an inspector signs (``\\x19\\x01 || domain || struct hash``)."""
    struct_hash = Web3.keccak(
        abi_encode(
            ["bytes32", "address", "uint256", "uint256", "bytes32", "uint256", "uint256"],
            [
                Web3.keccak(text=_ATTESTATION_TYPE_STRING),
                _address(inspector),
                deal_id,
                milestone,
                _bytes32(report_hash),
                nonce,
                deadline,
            ],
        )
    )
    return bytes(Web3.keccak(b"\x19\x01" + domain_separator(chain_id, contract) + struct_hash))


def sign_attestation(
    inspector: LocalAccount,
    *,
    chain_id: int,
    contract: str,
    deal_id: int,
    milestone: int,
    report_hash: bytes,
    deadline: int,
    nonce: int | None = None,
) -> SignedAttestation:
    """Sign an inspection attestation as EIP-712 typed data with ``inspector``'s key.

    ``nonce`` defaults to a random 64-bit value (any unused nonce works; the contract keeps a
    set per inspector). The signature is only accepted by the escrow at ``contract`` on
    ``chain_id``, until ``deadline`` (Unix seconds), once. Nothing is sent.
    """
    use_nonce = secrets.randbits(64) if nonce is None else nonce
    message = {
        "inspector": _address(inspector.address),
        "dealId": deal_id,
        "milestone": milestone,
        "reportHash": _bytes32(report_hash),
        "nonce": use_nonce,
        "deadline": deadline,
    }
    domain = {
        "name": EIP712_NAME,
        "version": EIP712_VERSION,
        "chainId": chain_id,
        "verifyingContract": _address(contract),
    }
    signed = inspector.sign_typed_data(domain, ATTESTATION_TYPES, message)
    return SignedAttestation(
        inspector=_address(inspector.address),
        deal_id=deal_id,
        milestone=milestone,
        report_hash=_bytes32(report_hash),
        nonce=use_nonce,
        deadline=deadline,
        signature=bytes(signed.signature),
    )


# -- errors -----------------------------------------------------------------------------------


def _canonical_type(param: Mapping[str, Any]) -> str:
    """The canonical ABI type of a parameter (tuples spelled out, for selectors and eth_abi)."""
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in param.get("components", []))
        return f"({inner}){kind[len('tuple') :]}"
    return kind


class ErrorDecoder:
    """Maps revert data to ``(error name, {parameter: value})`` using ABIs' error entries.

    Knows every ``error`` of the given ABIs plus Solidity's ``Error(string)`` and
    ``Panic(uint256)``. Enum parameters of :class:`MilestoneStatus` and :class:`Party` are
    returned as those enums.
    """

    def __init__(self, *abis: Iterable[Mapping[str, Any]]) -> None:
        self._errors: dict[bytes, tuple[str, list[Mapping[str, Any]]]] = {}
        builtin: list[Mapping[str, Any]] = [
            {"type": "error", "name": "Error", "inputs": [{"name": "message", "type": "string"}]},
            {"type": "error", "name": "Panic", "inputs": [{"name": "code", "type": "uint256"}]},
        ]
        for abi in (*abis, builtin):
            for entry in abi:
                if entry.get("type") != "error":
                    continue
                inputs = list(entry.get("inputs", []))
                signature = f"{entry['name']}({','.join(_canonical_type(p) for p in inputs)})"
                self._errors[bytes(Web3.keccak(text=signature))[:4]] = (str(entry["name"]), inputs)

    def names(self) -> list[str]:
        """Every error name the decoder knows."""
        return sorted(name for name, _ in self._errors.values())

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """Decode revert ``data``; unknown selectors give ``("0x<selector>", {"data": ...})``
        and empty data gives ``("Reverted", {})``. Never raises."""
        if len(data) < 4:
            return ("Reverted", {}) if not data else ("0x" + data.hex(), {})
        known = self._errors.get(data[:4])
        if known is None:
            return "0x" + data[:4].hex(), {"data": "0x" + data.hex()}
        name, inputs = known
        try:
            values = abi_decode([_canonical_type(p) for p in inputs], data[4:])
        except Exception:  # malformed arguments: keep the name, show the raw bytes
            return name, {"data": "0x" + data[4:].hex()}
        return name, {
            str(param.get("name") or f"arg{i}"): _error_value(param, value)
            for i, (param, value) in enumerate(zip(inputs, values, strict=True))
        }


def _error_value(param: Mapping[str, Any], value: Any) -> Any:
    internal = str(param.get("internalType", ""))
    if internal.startswith("enum "):
        enum = _ENUMS.get(internal.rsplit(".", 1)[-1])
        if enum is not None:
            try:
                return enum(value)
            except ValueError:
                return value
    if param["type"] == "address":
        return Web3.to_checksum_address(value)
    return _python(value)


def _revert_data(exc: BaseException | None) -> bytes | None:
    """The revert data carried by a web3 ``ContractLogicError`` in ``exc``'s cause chain."""
    while exc is not None:
        if isinstance(exc, ContractLogicError):
            data = exc.data
            if isinstance(data, dict):
                data = data.get("data")
            if isinstance(data, str) and data.startswith("0x"):
                try:
                    return bytes.fromhex(data[2:])
                except ValueError:
                    return None
            return b""
        exc = exc.__cause__
    return None


# -- the client -------------------------------------------------------------------------------


class WithClearance:
    """A vault call whose transaction data carries a clearance after the ABI-encoded arguments
    (issue 13: the vault forwards those bytes to its ``EscrowGate``)."""

    def __init__(self, call: ContractFunction, clearance: bytes) -> None:
        self._call = call
        self._clearance = bytes(clearance)
        self.fn_name = call.fn_name

    def build_transaction(self, params: TxParams) -> TxParams:
        # A placeholder gas limit keeps web3 from estimating the call without its clearance
        # (which would revert); the caller estimates the transaction as it will be sent.
        with_gas: TxParams = {**params, "gas": 1}
        tx = self._call.build_transaction(with_gas)
        del tx["gas"]
        tx["data"] = Web3.to_hex(bytes(HexBytes(tx["data"])) + self._clearance)
        return tx


def gate_error_abi() -> list[dict[str, Any]]:
    """The ``error`` entries of ``EscrowGate``: the vault bubbles its gate's reverts up, so a
    vault call can fail with them (``EscrowGateClearanceRequired`` ...)."""
    from chainaudit.chain.toolchain import compile_contracts  # noqa: PLC0415 - avoids a cycle

    abi = compile_contracts()["EscrowGate"].abi
    return [dict(entry) for entry in abi if entry.get("type") == "error"]


def default_abis() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The compiled ABIs of ``SupplyChainEscrow`` and ``MockStablecoin`` (an ERC-20)."""
    from chainaudit.chain.escrow_deploy import escrow_artifacts  # noqa: PLC0415 - avoids a cycle

    artifacts = escrow_artifacts()
    return artifacts["SupplyChainEscrow"].abi, artifacts["MockStablecoin"].abi


class EscrowClient:
    """A client of the ``SupplyChainEscrow`` at ``address`` on ``chain``.

    ``abi`` and ``token_abi`` default to the compiled contracts; ``token_abi`` is used for the
    ERC-20 helpers and must contain ``approve``, ``allowance``, ``balanceOf`` (and ``mint`` for
    the devnet faucet). ``from_block`` bounds log searches (the block the vault was deployed
    at, 0 on a devnet); ``timeout`` bounds the wait for each receipt, in seconds.

    Every action raises :class:`EscrowError` when the contract refuses it,
    :class:`~chainaudit.core.errors.ChainUnavailableError` when the endpoint is unreachable and
    :class:`~chainaudit.core.errors.ChainError` for any other failure (timeouts included).
    """

    def __init__(
        self,
        chain: Chain,
        address: str,
        *,
        abi: list[dict[str, Any]] | None = None,
        token_abi: list[dict[str, Any]] | None = None,
        from_block: int = 0,
        timeout: float = 60.0,
    ) -> None:
        if abi is None or token_abi is None:
            default_escrow, default_token = default_abis()
            abi = abi if abi is not None else default_escrow
            token_abi = token_abi if token_abi is not None else default_token
        self.chain = chain
        self.address = _address(address)
        self.abi = abi
        self.token_abi = token_abi
        self.from_block = from_block
        self.timeout = timeout
        self.contract: Contract = chain.contract(self.address, abi)
        self.errors = ErrorDecoder(abi, token_abi, gate_error_abi())
        self._escrow_events = _event_map(self.contract)
        self._token_events = _event_map(chain.contract(ZERO_ADDRESS, token_abi))
        self._chain_id: int | None = None

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def chain_id(self) -> int:
        """The chain id of the endpoint (read once)."""
        if self._chain_id is None:
            self._chain_id = self.chain.chain_id()
        return self._chain_id

    def token(self, address: str) -> Contract:
        """An ERC-20 contract object at ``address`` (with :attr:`token_abi`)."""
        return self.chain.contract(_address(address), self.token_abi)

    def submit(self, account: LocalAccount, call: ContractFunction) -> SignedTx:
        """Estimate, sign and broadcast ``call`` from ``account``; do not wait.

        Raises :class:`EscrowError` if the call would revert (decoded from the estimate).
        Use :meth:`result` to wait for the receipt.
        """
        label = str(getattr(call, "fn_name", "call"))
        try:
            signed = sign_call(self.chain, account, call)
        except ChainUnavailableError:
            raise
        except ChainError as exc:
            data = _revert_data(exc)
            if data is None:
                raise
            name, arguments = self.errors.decode(data)
            raise EscrowError(name, arguments, data=data, context=label) from exc
        broadcast(self.chain, signed)
        return signed

    def result(self, tx_hash: bytes | str) -> TxResult:
        """Wait for ``tx_hash``'s receipt and return it with its decoded events.

        Raises :class:`EscrowError` (with ``tx_hash`` set) if the transaction reverted, and
        :class:`ChainError` if it is not mined within :attr:`timeout`.
        """
        raw = HexBytes(tx_hash)
        receipt = wait_for_receipt(self.chain, bytes(raw), timeout=self.timeout)
        tx_hex = Web3.to_hex(receipt["transactionHash"])
        if receipt["status"] != 1:
            data = self._revert_data_of(receipt)
            name, arguments = self.errors.decode(data)
            raise EscrowError(name, arguments, data=data, tx_hash=tx_hex, context="mined")
        return TxResult(
            tx_hash=tx_hex,
            block_number=int(receipt["blockNumber"]),
            block_hash=Web3.to_hex(receipt["blockHash"]),
            gas_used=int(receipt["gasUsed"]),
            events=tuple(
                event
                for event in (self.decode_log(entry) for entry in receipt["logs"])
                if event is not None
            ),
        )

    def transact(self, account: LocalAccount, call: ContractFunction) -> TxResult:
        """:meth:`submit` then :meth:`result`."""
        return self.result(self.submit(account, call).tx_hash)

    def _send(
        self, account: LocalAccount, function: str, *args: Any, clearance: bytes = b""
    ) -> TxResult:
        call = self.contract.functions[function](*args)
        if clearance:
            return self.transact(account, WithClearance(call, clearance))  # type: ignore[arg-type]
        return self.transact(account, call)

    def _revert_data_of(self, receipt: TxReceipt) -> bytes:
        """The revert data of a failed transaction: from a call trace when the node has one,
        else by replaying the call on the parent block's state (best effort)."""
        tx_hash = Web3.to_hex(receipt["transactionHash"])
        try:
            reply = self.chain.run(
                "debug_traceTransaction",
                lambda: self.chain.w3.provider.make_request(
                    "debug_traceTransaction",  # type: ignore[arg-type]
                    [tx_hash, {"tracer": "callTracer"}],
                ),
            )
            result = reply.get("result") if isinstance(reply, dict) else None
            output = result.get("output") if isinstance(result, dict) else None
            if isinstance(output, str) and output.startswith("0x"):
                return bytes.fromhex(output[2:])
        except ChainUnavailableError:
            raise
        except (ChainError, ValueError):
            pass
        tx = self.chain.run(
            "eth_getTransactionByHash", lambda: self.chain.w3.eth.get_transaction(tx_hash)
        )
        replay = {"from": tx["from"], "to": tx["to"], "data": tx["input"], "value": tx["value"]}
        try:
            self.chain.run(
                "eth_call",
                lambda: self.chain.w3.eth.call(
                    replay,  # type: ignore[arg-type]
                    int(receipt["blockNumber"]) - 1,
                ),
            )
        except ChainUnavailableError:
            raise
        except ChainError as exc:
            return _revert_data(exc) or b""
        return b""

    def decode_log(self, entry: Mapping[str, Any]) -> DecodedEvent | None:
        """Decode one log of the escrow (or an ERC-20 ``Transfer``/``Approval`` of any token);
        ``None`` for a log neither ABI knows."""
        topics = entry.get("topics") or []
        if not topics:
            return None
        topic = bytes(HexBytes(topics[0]))
        address = _address(str(entry["address"]))
        event = (
            self._escrow_events.get(topic)
            if address == self.address
            else self._token_events.get(topic)
        )
        if event is None:
            return None
        try:
            data = event.process_log(entry)
        except (MismatchedABI, Web3Exception, ValueError):
            return None
        return DecodedEvent(
            name=str(data["event"]),
            args={str(k): _python(v) for k, v in data["args"].items()},
            address=address,
            block_number=int(entry["blockNumber"]),
            block_hash=Web3.to_hex(HexBytes(entry["blockHash"])),
            tx_hash=Web3.to_hex(HexBytes(entry["transactionHash"])),
            log_index=int(entry["logIndex"]),
        )

    def events(
        self,
        from_block: int,
        to_block: int | None = None,
        *,
        deal_id: int | None = None,
        block_hash: bytes | None = None,
    ) -> list[DecodedEvent]:
        """The vault's events in ``[from_block, to_block]`` (default: to the head), or in the
        one block ``block_hash``; only deal ``deal_id``'s when given. Logs the ABI does not
        know are skipped."""
        query: dict[str, Any] = {"address": self.address}
        if block_hash is not None:
            query["blockHash"] = Web3.to_hex(block_hash)
        else:
            query["fromBlock"] = from_block
            query["toBlock"] = "latest" if to_block is None else to_block
        if deal_id is not None:
            query["topics"] = [None, "0x" + deal_id.to_bytes(32, "big").hex()]
        logs = self.chain.run(
            "eth_getLogs",
            lambda: self.chain.w3.eth.get_logs(query),  # type: ignore[arg-type]
        )
        decoded = (self.decode_log(entry) for entry in logs)
        return [e for e in decoded if e is not None]

    def escrow_gate(self, deal_id: int = 0) -> tuple[str, int]:
        """The vault's ``EscrowGate`` (the zero address: none) and deal ``deal_id``'s
        compliance policy (0: none, or no such deal)."""
        gate, policy = self._call("escrowGate", deal_id)
        return str(gate), int(policy)

    def _call(self, function: str, *args: Any, block: BlockIdentifier = "latest") -> Any:
        fn = self.contract.functions[function](*args)
        try:
            return self.chain.run(function, lambda: fn.call(block_identifier=block))
        except ChainUnavailableError:
            raise
        except ChainError as exc:
            data = _revert_data(exc)
            if data is None:
                raise
            name, arguments = self.errors.decode(data)
            raise EscrowError(name, arguments, data=data, context=function) from exc

    def _struct(
        self, function: str, *args: Any, block: BlockIdentifier = "latest"
    ) -> dict[str, Any]:
        """Call a view returning one struct and name its fields from the ABI."""
        value = self._call(function, *args, block=block)
        outputs = self.contract.get_function_by_name(function).abi["outputs"]
        components = outputs[0].get("components", []) if len(outputs) == 1 else outputs
        values = value if len(outputs) != 1 or components else [value]
        return {c["name"]: v for c, v in zip(components, values, strict=True)}

    # -- administration ----------------------------------------------------------------------

    def role(self, name: str) -> bytes:
        """The id of role ``name`` (``"COMPLIANCE_ROLE"``, ``"PAUSER_ROLE"``, ...)."""
        if name == "DEFAULT_ADMIN_ROLE":
            return ZERO_HASH
        return bytes(self._call(name))

    def has_role(self, name: str, account: str) -> bool:
        """Whether ``account`` holds role ``name``."""
        return bool(self._call("hasRole", self.role(name), _address(account)))

    def grant_role(self, admin: LocalAccount, name: str, account: str) -> TxResult:
        """Grant role ``name`` to ``account``. Precondition: ``admin`` holds the role's admin
        role (``DEFAULT_ADMIN_ROLE``). Emits ``RoleGranted``."""
        return self._send(admin, "grantRole", self.role(name), _address(account))

    def set_token_allowed(self, manager: LocalAccount, token: str, allowed: bool) -> TxResult:
        """Add ``token`` to (or remove it from) the allow-list of new deals.

        Preconditions: ``manager`` has ``TOKEN_MANAGER_ROLE``; ``token`` is a contract.
        Emits ``TokenAllowListUpdated``.
        """
        return self._send(manager, "setTokenAllowed", _address(token), allowed)

    def pause(self, pauser: LocalAccount) -> TxResult:
        """Stop new deals, funding and financing. Preconditions: ``PAUSER_ROLE``; not paused.
        Emits ``Paused``."""
        return self._send(pauser, "pause")

    def unpause(self, pauser: LocalAccount) -> TxResult:
        """Resume new business. Preconditions: ``PAUSER_ROLE``; paused. Emits ``Unpaused``."""
        return self._send(pauser, "unpause")

    def register_inspector(self, registrar: LocalAccount, inspector: str) -> TxResult:
        """Register ``inspector`` in the vault's inspector registry (deals name only
        registered inspectors); a no-op for one already registered.
        Preconditions: ``registrar`` has ``REGISTRAR_ROLE``.
        Emits ``InspectorRegistered`` the first time."""
        return self._send(registrar, "registerInspector", _address(inspector))

    def revoke_inspector(self, registrar: LocalAccount, inspector: str) -> TxResult:
        """Withdraw ``inspector``'s accreditation: new deals may no longer name it (existing
        deals keep it; :meth:`register_inspector` reinstates it). Preconditions:
        ``REGISTRAR_ROLE``; registered, not revoked. Emits ``InspectorRevoked``."""
        return self._send(registrar, "revokeInspector", _address(inspector))

    def is_inspector_accredited(self, inspector: str) -> bool:
        """Whether new deals may name ``inspector`` (registered, not revoked)."""
        return bool(self._call("isInspectorAccredited", _address(inspector)))

    def set_arbiter_accredited(
        self, registrar: LocalAccount, arbiter: str, accredited: bool = True
    ) -> TxResult:
        """Accredit ``arbiter`` for new deals (or withdraw its accreditation).
        Preconditions: ``registrar`` has ``REGISTRAR_ROLE``. Emits
        ``ArbiterAccreditationUpdated``."""
        return self._send(registrar, "setArbiterAccredited", _address(arbiter), accredited)

    def is_arbiter_accredited(self, arbiter: str) -> bool:
        """Whether new deals may name ``arbiter``."""
        return bool(self._call("isArbiterAccredited", _address(arbiter)))

    def set_hold_cap(self, admin: LocalAccount, cap: int) -> TxResult:
        """Change the cap on a milestone's total hold time (seconds): a lower cap applies at
        once, a higher one 7 days later (:meth:`apply_hold_cap`). Preconditions: ``admin``
        has ``DEFAULT_ADMIN_ROLE``; 30 days <= cap <= 365 days.
        Emits ``HoldCapChanged`` or ``HoldCapChangeScheduled``."""
        return self._send(admin, "setHoldCap", cap)

    def apply_hold_cap(self, caller: LocalAccount) -> TxResult:
        """Apply a scheduled rise of the hold cap once due; anyone may call.
        Emits ``HoldCapChanged``."""
        return self._send(caller, "applyHoldCap")

    def hold_cap(self) -> tuple[int, int, int]:
        """``(cap, pending_cap, pending_at)``: the total-hold cap in seconds and a scheduled
        rise (zeros: none)."""
        cap, pending, at = self._call("holdCap")
        return int(cap), int(pending), int(at)

    def hold_time(self, deal_id: int, milestone: int) -> tuple[int, int]:
        """``(held_seconds, long_stop)``: the milestone's total hold time (past and scheduled)
        and its own long stop (the deal's, pushed back by that time)."""
        held, long_stop = self._call("holdTime", deal_id, milestone)
        return int(held), int(long_stop)

    # -- deals -------------------------------------------------------------------------------

    def create_deal(
        self, buyer: LocalAccount, params: DealParams, milestones: Sequence[MilestoneParams]
    ) -> TxResult:
        """Open a deal with ``buyer`` as the buyer; the new id is ``result.deal_id``.

        Preconditions (checked by the contract): not paused; token allow-listed; 1-16
        milestones with non-zero amounts and document hashes, due dates in the future with
        ``due_date + inspection_window <= long_stop``; distinct, non-zero parties; an
        accredited arbiter; 1-6 registered inspectors, none a party,
        ``1 <= threshold <= inspectors``; a consistent approval policy whose approvers are none
        of the buyer, supplier or financier; windows in ``(0, 365 days]``;
        ``default_payee_bps <= 10000``; an anchor for proof leaves; declared invoices new for
        this supplier and buyer. Emits ``DealCreated``, ``DealControlsSet`` (financier or
        approvers), ``MilestoneCreated`` per milestone, ``ProofGateSet`` per proof-gated
        milestone and ``InvoiceDeclared`` per declared invoice.
        """
        return self._send(buyer, "createDeal", params.as_abi(), [m.as_abi() for m in milestones])

    def approve_token(self, owner: LocalAccount, token: str, amount: int = MAX_UINT256) -> TxResult:
        """ERC-20 ``approve`` of the vault by ``owner`` for ``amount`` (default: unlimited),
        needed before :meth:`fund` and :meth:`accept_financing`. Emits ``Approval``."""
        return self.transact(owner, self.token(token).functions.approve(self.address, amount))

    def fund(
        self,
        buyer: LocalAccount,
        deal_id: int,
        milestone: int,
        amount: int,
        *,
        clearance: bytes = b"",
    ) -> TxResult:
        """Escrow ``amount`` for a milestone (partial funding allowed).

        ``clearance`` (``chainaudit.risk.clearance.Clearance.encoded``) is appended to the call
        data; a deal under the gate's compliance policy needs one above the policy's threshold
        (else ``EscrowGateClearanceRequired``).

        Preconditions: not paused; ``buyer`` is the deal's buyer and approved the vault (see
        :meth:`approve_token`); milestone ``OPEN``; long-stop not passed;
        ``0 < amount <= amount - funded``. Emits ``MilestoneFunded``.
        """
        return self._send(buyer, "fund", deal_id, milestone, amount, clearance=clearance)

    def mark_shipped(
        self, supplier: LocalAccount, deal_id: int, milestone: int, document_hash: bytes
    ) -> TxResult:
        """Declare shipment with a bill-of-lading hash. Preconditions: the deal's supplier;
        milestone ``FUNDED``; non-zero hash. Emits ``MilestoneShipped``."""
        return self._send(supplier, "markShipped", deal_id, milestone, _bytes32(document_hash))

    def attest(
        self, inspector: LocalAccount, deal_id: int, milestone: int, report_hash: bytes
    ) -> TxResult:
        """Record ``inspector``'s attestation directly. Preconditions: an inspector of the
        deal who has not attested this milestone; milestone ``SHIPPED``; non-zero hash.
        Emits ``InspectionAttested`` and, at the threshold, ``MilestoneInspected``."""
        return self._send(inspector, "attestInspection", deal_id, milestone, _bytes32(report_hash))

    def sign_attestation(
        self,
        inspector: LocalAccount,
        deal_id: int,
        milestone: int,
        report_hash: bytes,
        *,
        deadline: int,
        nonce: int | None = None,
    ) -> SignedAttestation:
        """Sign an attestation for this vault off-chain (see :func:`sign_attestation`)."""
        return sign_attestation(
            inspector,
            chain_id=self.chain_id,
            contract=self.address,
            deal_id=deal_id,
            milestone=milestone,
            report_hash=report_hash,
            deadline=deadline,
            nonce=nonce,
        )

    def relay_attestation(self, relayer: LocalAccount, signed: SignedAttestation) -> TxResult:
        """Submit a signed attestation; ``relayer`` can be anyone (it pays the gas).

        Preconditions: not past the deadline; the nonce unused; the signature valid for this
        vault and chain; then as :meth:`attest`. Emits as :meth:`attest`.
        """
        return self._send(
            relayer,
            "attestInspectionBySig",
            signed.deal_id,
            signed.milestone,
            signed.inspector,
            signed.report_hash,
            signed.nonce,
            signed.deadline,
            signed.signature,
        )

    def invalidate_attestation_nonce(self, inspector: LocalAccount, nonce: int) -> TxResult:
        """Void any signature ``inspector`` made with ``nonce``. Precondition: unused nonce.
        Emits ``AttestationNonceInvalidated``."""
        return self._send(inspector, "invalidateAttestationNonce", nonce)

    def prove_record(
        self,
        prover: LocalAccount,
        deal_id: int,
        milestone: int,
        checkpoint_seq: int,
        leaf_index: int,
        proof: Sequence[bytes],
        *,
        record_id: str,
        signature: bytes,
    ) -> TxResult:
        """Pass a milestone's proof gate: its record leaf is included in anchored checkpoint
        ``checkpoint_seq`` at ``leaf_index`` (RFC 9162 inclusion ``proof``), and ``signature``
        is the milestone's proof signer's record signature of (``record_id``, leaf)
        (:func:`chainaudit.core.signing.sign_record`). Anyone may call.

        Preconditions: the milestone is gated and not final; ``AuditAnchor.verifyInclusion``
        accepts the proof; the signature is the proof signer's (else
        ``SupplyChainEscrowInvalidSignature``). Emits ``RecordProven``.
        """
        return self._send(
            prover,
            "proveRecord",
            deal_id,
            milestone,
            checkpoint_seq,
            leaf_index,
            [_bytes32(p) for p in proof],
            record_id,
            bytes(signature),
        )

    def accept(self, buyer: LocalAccount, deal_id: int, milestone: int) -> TxResult:
        """Accept an inspected milestone. Preconditions: the buyer; ``INSPECTED``; proof gate
        passed if any. Emits ``MilestoneAccepted``."""
        return self._send(buyer, "acceptMilestone", deal_id, milestone)

    def request_release(self, maker: LocalAccount, deal_id: int, milestone: int) -> TxResult:
        """Start the maker-checker approval of a release above the approval threshold.

        Preconditions: the deal requires approvals for this amount; ``maker`` is the buyer or
        an approver; milestone accepted or deemed accepted; not requested yet.
        Emits ``ReleaseRequested``.
        """
        return self._send(maker, "requestRelease", deal_id, milestone)

    def approve_release(self, checker: LocalAccount, deal_id: int, milestone: int) -> TxResult:
        """Approve a requested release. Preconditions: an approver, not the maker, not yet
        approved. Emits ``ReleaseApproved``."""
        return self._send(checker, "approveRelease", deal_id, milestone)

    def release(
        self, caller: LocalAccount, deal_id: int, milestone: int, *, clearance: bytes = b""
    ) -> TxResult:
        """Credit an accepted (or deemed accepted) milestone to its payee; anyone may call.

        ``clearance``: as for :meth:`fund` (a ``release`` clearance for the escrowed amount).

        Preconditions: ``ACCEPTED``, or ``INSPECTED`` with the window passed (and proof gate
        passed); no active hold; enough approvals above the threshold. Emits
        ``MilestoneAccepted`` (deemed) when applicable, then ``MilestoneReleased``.
        """
        return self._send(caller, "release", deal_id, milestone, clearance=clearance)

    def open_dispute(
        self, party: LocalAccount, deal_id: int, milestone: int, reason_hash: bytes
    ) -> TxResult:
        """Freeze a milestone in dispute. Preconditions: buyer or supplier; long-stop not
        passed; ``FUNDED``, ``SHIPPED`` or ``INSPECTED`` within the window; non-zero hash.
        Emits ``DisputeOpened``."""
        return self._send(party, "openDispute", deal_id, milestone, _bytes32(reason_hash))

    def resolve_dispute(
        self,
        arbiter: LocalAccount,
        deal_id: int,
        milestone: int,
        payee_bps: int,
        ruling_hash: bytes,
    ) -> TxResult:
        """Settle a dispute: ``payee_bps`` basis points to the payee, the rest to the buyer.
        Preconditions: the deal's arbiter; ``DISPUTED``; ``payee_bps <= 10000``.
        Emits ``DisputeSettled``."""
        return self._send(
            arbiter, "resolveDispute", deal_id, milestone, payee_bps, _bytes32(ruling_hash)
        )

    def apply_dispute_timeout(self, caller: LocalAccount, deal_id: int, milestone: int) -> TxResult:
        """Apply the deal's default split to a dispute older than the dispute timeout; anyone
        may call. Emits ``DisputeSettled`` (``byDefault``)."""
        return self._send(caller, "applyDisputeTimeout", deal_id, milestone)

    def reclaim_after_long_stop(self, buyer: LocalAccount, deal_id: int) -> TxResult:
        """After the long-stop date, credit back to the buyer every milestone that is neither
        accepted (nor deemed accepted) nor financed and whose own long stop (pushed back by its
        hold time, never before its inspection window ends) has passed. Preconditions: the
        buyer; past the long stop; something to reclaim. Emits ``MilestoneRefunded`` per
        closed milestone."""
        return self._send(buyer, "reclaimAfterLongStop", deal_id)

    def settle_after_long_stop(
        self, caller: LocalAccount, deal_id: int, milestone: int
    ) -> TxResult:
        """Close one milestone past its own long stop; anyone may call. Not accepted nor
        financed: refunded to the buyer. Accepted: released to the payee, or escalated to the
        arbiter (default: the payee in full) when a hold or missing approvals stand in the
        way. Financed but not accepted: escalated (default: the deal's split).
        Emits ``MilestoneRefunded``, ``MilestoneReleased`` or ``MilestoneEscalated``."""
        return self._send(caller, "settleAfterLongStop", deal_id, milestone)

    def withdraw_release_request(
        self, caller: LocalAccount, deal_id: int, milestone: int
    ) -> TxResult:
        """Withdraw a pending release request and its approvals (its initiator or the buyer),
        so it can be made again. Emits ``ReleaseRequestWithdrawn``."""
        return self._send(caller, "withdrawReleaseRequest", deal_id, milestone)

    def escalate_release(self, payee: LocalAccount, deal_id: int, milestone: int) -> TxResult:
        """The payee sends an accepted milestone whose approvals are still missing after the
        approval deadline (end of the inspection window plus the dispute timeout) to the
        arbiter; if the arbiter does not rule in time the payee is paid in full.
        Emits ``MilestoneEscalated``."""
        return self._send(payee, "escalateRelease", deal_id, milestone)

    # -- financing ---------------------------------------------------------------------------

    def offer_financing(
        self,
        supplier: LocalAccount,
        deal_id: int,
        milestone: int,
        *,
        financier: str,
        advance: int,
        invoice_hash: bytes,
        expires_at: int,
    ) -> TxResult:
        """Offer a milestone's claim to ``financier`` for ``advance``; replaces an earlier offer.

        Preconditions: not paused; the supplier (the payee: a financed milestone cannot be
        financed again); milestone not final, disputed or on hold; ``financier`` not a party
        (and the designated one if set); ``0 < advance <= amount``; ``invoice_hash`` the
        invoice declared for this milestone at creation, never financed; ``expires_at`` in the
        future.
        Emits ``FinancingOffered``.
        """
        return self._send(
            supplier,
            "offerFinancing",
            deal_id,
            milestone,
            _address(financier),
            advance,
            _bytes32(invoice_hash),
            expires_at,
        )

    def cancel_financing_offer(
        self, supplier: LocalAccount, deal_id: int, milestone: int
    ) -> TxResult:
        """Withdraw the supplier's open offer. Emits ``FinancingOfferCancelled``."""
        return self._send(supplier, "cancelFinancingOffer", deal_id, milestone)

    def accept_financing(
        self,
        financier: LocalAccount,
        deal_id: int,
        milestone: int,
        *,
        advance: int,
        invoice_hash: bytes,
        clearance: bytes = b"",
    ) -> TxResult:
        """Take the offer: pay ``advance`` (credited to the supplier) and become the payee.

        ``clearance``: as for :meth:`fund` (a ``finance`` clearance for ``advance``).

        ``advance`` and ``invoice_hash`` must repeat the offer's terms. Preconditions: not
        paused; an unexpired offer to ``financier``; the invoice never financed (else
        ``SupplyChainEscrowInvoiceAlreadyFinanced``); the vault approved for ``advance``.
        Emits ``ReceivableFinanced``.
        """
        return self._send(
            financier,
            "acceptFinancing",
            deal_id,
            milestone,
            advance,
            _bytes32(invoice_hash),
            clearance=clearance,
        )

    # -- compliance holds --------------------------------------------------------------------

    def place_hold(
        self,
        officer: LocalAccount,
        deal_id: int,
        milestone: int,
        reason_hash: bytes,
        duration: int,
    ) -> TxResult:
        """Hold a milestone for ``duration`` seconds (at most 30 days): blocks release and
        financing. Preconditions: ``COMPLIANCE_ROLE``; not final; no active hold.
        Emits ``ComplianceHoldPlaced``."""
        return self._send(officer, "placeHold", deal_id, milestone, _bytes32(reason_hash), duration)

    def renew_hold(
        self,
        officer: LocalAccount,
        deal_id: int,
        milestone: int,
        reason_hash: bytes,
        duration: int,
    ) -> TxResult:
        """Extend an active hold to ``duration`` seconds from now. Emits
        ``ComplianceHoldRenewed``."""
        return self._send(officer, "renewHold", deal_id, milestone, _bytes32(reason_hash), duration)

    def lift_hold(
        self, officer: LocalAccount, deal_id: int, milestone: int, reason_hash: bytes
    ) -> TxResult:
        """Lift an active hold. Emits ``ComplianceHoldLifted``."""
        return self._send(officer, "liftHold", deal_id, milestone, _bytes32(reason_hash))

    # -- withdrawals -------------------------------------------------------------------------

    def withdraw(self, account: LocalAccount, token: str) -> TxResult:
        """Pay out ``account``'s whole credit of ``token``. Works while paused.
        Precondition: a non-zero credit. Emits ``Withdrawn`` (and the token's ``Transfer``)."""
        return self._send(account, "withdraw", _address(token))

    # -- reads -------------------------------------------------------------------------------

    def deal(self, deal_id: int, *, block: int | None = None) -> Deal:
        """Every party, term and milestone state of deal ``deal_id``, read at one block
        (default: the latest). Raises :class:`EscrowError` (``SupplyChainEscrowUnknownDeal``)
        for an unknown id."""
        number = self.chain.block_number() if block is None else block
        header = self.chain.run("eth_getBlockByNumber", lambda: self.chain.w3.eth.get_block(number))
        now = int(header["timestamp"])
        view = self._struct("getDeal", deal_id, block=number)
        accounting = self._call("dealAccounting", deal_id, block=number)
        financier = _address(view["financier"])
        created: dict[int, bytes] = {}
        approvers: tuple[str, ...] = ()
        for event in self.events(self.from_block, number, deal_id=deal_id):
            if event.name == "MilestoneCreated":
                created[int(event.args["milestone"])] = bytes(event.args["documentHash"])
            elif event.name == "DealControlsSet":
                approvers = tuple(_address(a) for a in event.args["approvers"])
        milestones = tuple(
            self._milestone(deal_id, i, view, now, number, created.get(i))
            for i in range(int(view["milestoneCount"]))
        )
        return Deal(
            deal_id=deal_id,
            buyer=_address(view["buyer"]),
            supplier=_address(view["supplier"]),
            arbiter=_address(view["arbiter"]),
            financier=None if financier == ZERO_ADDRESS else financier,
            token=_address(view["token"]),
            inspectors=tuple(_address(a) for a in view["inspectors"]),
            inspector_threshold=int(view["inspectorThreshold"]),
            inspection_window=int(view["inspectionWindow"]),
            dispute_timeout=int(view["disputeTimeout"]),
            default_payee_bps=int(view["defaultPayeeBps"]),
            long_stop=int(view["longStop"]),
            approval_threshold=int(view["approvalThreshold"]),
            approvals_required=int(view["approvalsRequired"]),
            approvers=approvers,
            milestones=milestones,
            funded=int(accounting[0]),
            released=int(accounting[1]),
            refunded=int(accounting[2]),
            held=int(accounting[3]),
            block_number=number,
            timestamp=now,
        )

    def _milestone(
        self,
        deal_id: int,
        index: int,
        deal: Mapping[str, Any],
        now: int,
        block: int,
        document_hash: bytes | None,
    ) -> Milestone:
        m = self._struct("getMilestone", deal_id, index, block=block)
        status = MilestoneStatus(int(m["status"]))
        funded = int(m["funded"])
        opened_by, opened_at, payee_bps = self._call("getDispute", deal_id, index, block=block)
        initiator, approvals = self._call("getReleaseApproval", deal_id, index, block=block)
        financier, advance, invoice, expires = self._call(
            "getFinancingOffer", deal_id, index, block=block
        )
        reason = bytes(self._call("holdReason", deal_id, index, block=block))
        released = refunded = 0
        if status is MilestoneStatus.RELEASED:
            released = funded
        elif status is MilestoneStatus.REFUNDED:
            refunded = funded
        elif status is MilestoneStatus.SETTLED:
            released = funded * int(payee_bps) // BPS
            refunded = funded - released
        stage_at = int(m["stageAt"])
        inspected = status in (MilestoneStatus.INSPECTED, MilestoneStatus.ACCEPTED)
        window_end = stage_at + int(deal["inspectionWindow"]) if inspected else None
        proof_ok = not m["proofRequired"] or bool(m["proofVerified"])
        hold_until = int(m["holdUntil"])
        payee = _address(m["payee"])
        return Milestone(
            index=index,
            status=status,
            amount=int(m["amount"]),
            funded=funded,
            released=released,
            refunded=refunded,
            held=funded - released - refunded,
            due_date=int(m["dueDate"]),
            document_hash=document_hash,
            payee=payee,
            financed=payee != _address(deal["supplier"]),
            attestations=int(m["attestations"]),
            stage_at=stage_at,
            window_ends_at=window_end,
            deemed_accepted=(
                status is MilestoneStatus.INSPECTED
                and window_end is not None
                and now > window_end
                and proof_ok
            ),
            shipping_document=bytes(m["shippingDocument"]),
            proof_required=bool(m["proofRequired"]),
            proof_verified=bool(m["proofVerified"]),
            proof_leaf=bytes(m["proofLeaf"]),
            hold=(
                Hold(until=hold_until, reason_hash=reason, active=hold_until > now)
                if hold_until
                else None
            ),
            dispute=(
                Dispute(
                    opened_by=_address(opened_by),
                    opened_at=int(opened_at),
                    payee_bps=int(payee_bps),
                    timeout_at=int(opened_at) + int(deal["disputeTimeout"]),
                )
                if int(opened_at)
                else None
            ),
            approval=(
                ReleaseApproval(initiator=_address(initiator), approvals=int(approvals))
                if _address(initiator) != ZERO_ADDRESS
                else None
            ),
            offer=(
                FinancingOffer(
                    financier=_address(financier),
                    advance=int(advance),
                    invoice_hash=bytes(invoice),
                    expires_at=int(expires),
                )
                if _address(financier) != ZERO_ADDRESS
                else None
            ),
        )

    def accounting(self, deal_id: int) -> Accounting:
        """The deal's ``funded == released + refunded + held`` accounting."""
        funded, released, refunded, held = self._call("dealAccounting", deal_id)
        return Accounting(int(funded), int(released), int(refunded), int(held))

    def credit_of(self, account: str, token: str) -> int:
        """The amount of ``token`` that ``account`` can :meth:`withdraw`."""
        return int(self._call("creditOf", _address(account), _address(token)))

    def token_balance(self, token: str, account: str) -> int:
        """``account``'s ERC-20 balance of ``token``."""
        fn = self.token(token).functions.balanceOf(_address(account))
        return int(self.chain.run("balanceOf", fn.call))

    def allowance(self, token: str, owner: str) -> int:
        """How much of ``owner``'s ``token`` the vault may pull."""
        fn = self.token(token).functions.allowance(_address(owner), self.address)
        return int(self.chain.run("allowance", fn.call))

    def invoice_commitment(self, supplier: str, buyer: str, invoice_hash: bytes) -> bytes:
        """The registry key of an invoice declared by a deal between ``supplier`` and
        ``buyer``."""
        return bytes(
            self._call(
                "invoiceCommitment", _address(supplier), _address(buyer), _bytes32(invoice_hash)
            )
        )

    def is_invoice_financed(self, invoice_hash: bytes, *, supplier: str, buyer: str) -> bool:
        """Whether the invoice ``invoice_hash`` of ``supplier`` to ``buyer`` was financed."""
        commitment = self.invoice_commitment(supplier, buyer, invoice_hash)
        return bool(self._call("isInvoiceFinanced", commitment))

    def is_nonce_used(self, inspector: str, nonce: int) -> bool:
        """Whether ``inspector``'s attestation ``nonce`` was used or invalidated."""
        return bool(self._call("isNonceUsed", _address(inspector), nonce))

    def is_token_allowed(self, token: str) -> bool:
        """Whether new deals may use ``token``."""
        return bool(self._call("isTokenAllowed", _address(token)))

    def is_inspector(self, deal_id: int, account: str) -> bool:
        """Whether ``account`` is one of the deal's inspectors."""
        return bool(self._call("isInspector", deal_id, _address(account)))

    def is_approver(self, deal_id: int, account: str) -> bool:
        """Whether ``account`` is one of the deal's release approvers."""
        return bool(self._call("isApprover", deal_id, _address(account)))

    def has_attested(self, deal_id: int, milestone: int, inspector: str) -> bool:
        """Whether ``inspector`` attested the milestone."""
        return bool(self._call("hasAttested", deal_id, milestone, _address(inspector)))

    def inspector_id(self, inspector: str) -> int:
        """``inspector``'s registry id (0: not registered)."""
        return int(self._call("inspectorId", _address(inspector)))

    def paused(self) -> bool:
        """Whether new business is paused."""
        return bool(self._call("paused"))

    def deal_count(self) -> int:
        """How many deals exist (ids run from 1 to this number)."""
        return int(self._call("dealCount"))

    def onchain_domain_separator(self) -> bytes:
        """The contract's own ``DOMAIN_SEPARATOR()``."""
        return bytes(self._call("DOMAIN_SEPARATOR"))


# -- helpers ----------------------------------------------------------------------------------


def _event_map(contract: Contract) -> dict[bytes, ContractEvent]:
    events: dict[bytes, ContractEvent] = {}
    for entry in cast(list[dict[str, Any]], contract.abi):
        if entry.get("type") == "event" and not entry.get("anonymous"):
            name = str(entry["name"])
            inputs = ",".join(_canonical_type(p) for p in entry.get("inputs", []))
            topic = bytes(Web3.keccak(text=f"{name}({inputs})"))
            events[topic] = contract.events[name]()
    return events


def _python(value: Any) -> Any:
    """web3 values as plain Python: bytes for HexBytes, lists for tuples and arrays."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, list | tuple):
        return [_python(v) for v in value]
    return value


def _address(value: str) -> str:
    try:
        return str(Web3.to_checksum_address(value))
    except (ValueError, TypeError) as exc:
        raise InputError(f"{value!r} is not an Ethereum address") from exc


def _bytes32(value: bytes | str) -> bytes:
    raw = bytes(HexBytes(value)) if isinstance(value, str) else bytes(value)
    if len(raw) != 32:
        raise InputError(f"expected 32 bytes, got {len(raw)}")
    return raw
