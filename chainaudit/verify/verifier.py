"""Verifying proof bundles with nothing but the bundle and a chain endpoint.

:func:`verify_bundle` runs these checks, in this order, and reports each one:

``record``
    The record's RFC 8785 canonical bytes hash to ``leaf_hash`` (``SHA-256(0x00 || bytes)``,
    RFC 9162 §2.1.1). Skipped, with a note, when the bundle carries no record.
    A bundle whose record was erased carries none; the check is then skipped and says
    "erased". A verifier told which leaves were erased (``erased``, e.g. the operator's own
    log) fails the check of a bundle that still carries an erased record's content, naming
    the erasure: the content is genuine but must no longer be used.
``inclusion``
    ``leaf_index < tree_size == checkpoint.tree_size`` and the inclusion proof leads from
    ``leaf_hash`` to ``checkpoint.root`` (RFC 9162 §2.1.3.2).
``erasure`` (only when the bundle carries one)
    The erasure record hashes to its leaf, that leaf is in the same checkpoint, after the
    erased leaf, and the record is an erasure written by the privacy service (kind
    ``admin``, id ``erasure:<leaf_index>``, submitter ``service:privacy``) naming the bundle's
    leaf index and leaf hash: the record's content was erased, and when and why is proven.
``consistency`` (only when the bundle carries one)
    The checkpoint extends the older ``(from_tree_size, from_root)`` (RFC 9162 §2.1.4.2).
``checkpoint_note`` (only when the auditor gives the log's verifier key)
    The bundle's ``checkpoint_note`` is the log's signed checkpoint
    (``c2sp.org/tlog-checkpoint``): signed by that key (``c2sp.org/signed-note``, Ed25519),
    its origin the key's name, its size and root the bundle's checkpoint. This catches an
    anchor whose size is not the log's: the chain binds roots, not sizes. Skipped, with a
    note, for a bundle without one (bundles from before signed checkpoints stay valid).
``chain_id``
    ``eth_chainId`` of the endpoint equals ``anchor.chain_id`` (and the id the auditor
    expects, if given). On a mismatch the remaining chain checks are skipped.
``contract``
    Code exists at ``anchor.contract`` (which equals the address the auditor expects, if
    given). The address should come from a source the auditor trusts, not only from the
    bundle: any contract can hold any checkpoint.
``checkpoint``
    ``AuditAnchor.checkpoint(anchor.checkpoint_seq)`` returns the bundle's tree size and root,
    and the block number the bundle names.
``block``
    The canonical block at ``anchor.block_number`` has ``anchor.block_hash`` (the anchor was
    not reorganised away) and is at least ``confirmations`` deep; a bundle whose
    ``anchor.status`` claims ``"final"`` must be at least ``finality`` deep
    (:data:`DEFAULT_FINALITY` unless the auditor says otherwise): the claim is checked, never
    believed.
``transaction``
    The receipt of ``anchor.tx_hash`` succeeded in that block and holds
    ``CheckpointAnchored(seq, treeSize, root)`` emitted by the contract.

Without a chain endpoint the last five are skipped and the verdict says so: the bundle is then
known to be internally consistent, not anchored. Nothing is read from the operator's server.
With an endpoint but no ``expected_contract`` (or no ``expected_chain_id``) the verdict carries
a warning: the bundle's own contract (or the endpoint's chain) was trusted, and anyone can
deploy an ``AuditAnchor`` holding any checkpoint. ``chainaudit verify --rpc`` refuses to judge
without both pins unless told ``--trust-bundle-contract``.

A failed check is a :class:`Check` with status ``"fail"`` in the :class:`Verdict`, never an
exception. Exceptions are only for input that cannot be used
(:class:`~chainaudit.core.errors.InputError`, from parsing) and for an endpoint that cannot be
reached (:class:`~chainaudit.core.errors.ChainUnavailableError`): in both cases nothing was proved
either way. :meth:`Verdict.raise_for_failure` turns a failed verdict into a
:class:`~chainaudit.core.errors.VerificationError` for callers that prefer to raise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import requests
from hexbytes import HexBytes
from web3 import Web3

from chainaudit.chain.anchor_abi import AUDIT_ANCHOR_ABI
from chainaudit.chain.chain import Chain, shown_endpoint
from chainaudit.core import merkle, note
from chainaudit.core.bundle import Bundle, parse_bundle
from chainaudit.core.canonical import canonicalize
from chainaudit.core.errors import (
    ChainError,
    ChainUnavailableError,
    InputError,
    NoteError,
    RecordError,
    VerificationError,
)

__all__ = [
    "CHAIN_CHECKS",
    "CHECKPOINT_ANCHORED_TOPIC",
    "DEFAULT_CONFIRMATIONS",
    "DEFAULT_FINALITY",
    "Check",
    "Verdict",
    "verify_bundle",
    "verify_consistency_bundles",
]

Status = Literal["pass", "fail", "skip"]
Erased = Callable[[int, bytes], str | None]
"""Says how the content of a leaf (index, leaf hash) was erased, or ``None`` if it was not."""

CHAIN_CHECKS: Final = ("chain_id", "contract", "checkpoint", "block", "transaction")
CHECKPOINT_ANCHORED_TOPIC: Final = bytes(
    Web3.keccak(text="CheckpointAnchored(uint256,uint64,bytes32)")
)
"""topic0 of ``AuditAnchor``'s ``CheckpointAnchored(seq, treeSize, root)`` event."""

DEFAULT_CONFIRMATIONS: Final = 1
"""Blocks an anchor must be under, counting its own, for a bundle to verify."""

DEFAULT_FINALITY: Final = 12
"""Blocks an anchor must be under, counting its own, for a bundle's ``"final"`` status claim
to hold (the same default as the anchoring service's ``finality`` setting)."""

UNPINNED_CONTRACT: Final = (
    "the AuditAnchor address was not pinned: the bundle's own contract {contract} was "
    "trusted, and anyone can deploy an AuditAnchor holding any checkpoint; pin the address "
    "you trust (--contract)"
)
UNPINNED_CHAIN: Final = (
    "the chain id was not pinned: chain {chain_id} was taken from the endpoint and the "
    "bundle; pin the chain you trust (--chain-id)"
)

_NO_CHAIN: Final = "skipped: no chain endpoint given, so the anchor was not checked"


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of one check: ``status`` is ``"pass"``, ``"fail"`` or ``"skip"``."""

    name: str
    status: Status
    detail: str

    @property
    def ok(self) -> bool:
        """True when the check ran and passed."""
        return self.status == "pass"

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Verdict:
    """Every check's outcome, in order. ``valid`` when none failed."""

    checks: tuple[Check, ...]
    chain_checked: bool
    """Whether the anchor was checked against a chain endpoint."""
    warnings: tuple[str, ...] = ()
    """What the verdict rests on without the auditor having pinned it (see the module)."""

    @property
    def valid(self) -> bool:
        return not any(check.status == "fail" for check in self.checks)

    @property
    def failed(self) -> tuple[str, ...]:
        """The names of the failed checks, in order."""
        return tuple(check.name for check in self.checks if check.status == "fail")

    def check(self, name: str) -> Check:
        """Return the check called ``name``; ``KeyError`` if it was not run."""
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def raise_for_failure(self) -> None:
        """Raise :class:`VerificationError` for the first failed check (its ``check``
        attribute names it); return nothing when the verdict is valid."""
        for check in self.checks:
            if check.status == "fail":
                raise VerificationError(f"{check.name}: {check.detail}", check=check.name)

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "chain_checked": self.chain_checked,
            "failed": list(self.failed),
            "checks": [check.to_json() for check in self.checks],
            "warnings": list(self.warnings),
        }


def _pass(name: str, detail: str) -> Check:
    return Check(name, "pass", detail)


def _fail(name: str, detail: str) -> Check:
    return Check(name, "fail", detail)


def _skip(name: str, detail: str) -> Check:
    return Check(name, "skip", detail)


_OFFLINE: Final = tuple(_skip(name, _NO_CHAIN) for name in CHAIN_CHECKS)


def _short(value: bytes) -> str:
    return "0x" + value.hex()


def _as_bundle(bundle: Bundle | Mapping[str, Any]) -> Bundle:
    return bundle if isinstance(bundle, Bundle) else parse_bundle(bundle)


# ---------------------------------------------------------------------------------------------
# Local checks (pure)
# ---------------------------------------------------------------------------------------------


def _erasure_summary(record: Mapping[str, Any]) -> str:
    payload = record.get("payload") if isinstance(record.get("payload"), dict) else {}
    assert isinstance(payload, dict)
    who = (
        f"requested by {payload.get('requested_by')}, approved by {payload.get('approved_by')}"
        if "approved_by" in payload
        else f"by the data policy {str(payload.get('policy_sha256', ''))[:16]}… retention"
    )
    return (
        f"erased at {record.get('timestamp')} ({who}; basis: {payload.get('basis')!s}; "
        f"reason: {str(payload.get('reason'))[:200]})"
    )


def _check_record(bundle: Bundle, erased: Erased | None = None) -> Check:
    if bundle.withheld is not None:
        return _skip(
            "record",
            f"skipped: record withheld ({bundle.withheld}); only the leaf hash is proved",
        )
    if bundle.record is None and bundle.erasure is not None:
        return _skip(
            "record",
            f"erased: the record's content was erased ({_erasure_summary(bundle.erasure.record)}); "
            "only its leaf hash is proved",
        )
    if bundle.record is not None and erased is not None:
        said = erased(bundle.leaf_index, bundle.leaf_hash)
        if said is not None:
            return _fail(
                "record",
                f"erased: record {bundle.record_id} (leaf {bundle.leaf_index}) was {said}; "
                "this content was erased and must no longer be used (a new bundle proves the "
                "leaf and the erasure)",
            )
    if bundle.record is None:
        return _skip(
            "record",
            "skipped: the bundle carries no record (withheld or erased); only the leaf hash "
            "is proved",
        )
    try:
        data = canonicalize(bundle.record)
    except RecordError as exc:
        return _fail("record", f"the record cannot be canonicalised (RFC 8785): {exc}")
    leaf = merkle.hash_leaf(data)
    if leaf != bundle.leaf_hash:
        return _fail(
            "record",
            f"the record's canonical bytes hash to leaf {_short(leaf)}, "
            f"the bundle says {_short(bundle.leaf_hash)}: the record was altered",
        )
    return _pass(
        "record",
        f"record {bundle.record_id} hashes to leaf {_short(leaf)} (RFC 8785, RFC 9162 §2.1.1)",
    )


def _check_erasure(bundle: Bundle) -> Check:
    """The ``erasure`` check (see the module docstring)."""
    erasure = bundle.erasure
    assert erasure is not None
    record = erasure.record
    try:
        leaf = merkle.hash_leaf(canonicalize(record))
    except RecordError as exc:
        return _fail("erasure", f"the erasure record cannot be canonicalised: {exc}")
    if leaf != erasure.leaf_hash:
        return _fail("erasure", "the erasure record does not hash to its leaf: it was altered")
    payload = record.get("payload")
    expected_id = f"erasure:{bundle.leaf_index}"
    if (
        record.get("kind") != "admin"
        or record.get("id") != expected_id
        or record.get("submitter") != "service:privacy"
        or not isinstance(payload, dict)
        or payload.get("type") != "erasure"
        or payload.get("leaf_index") != bundle.leaf_index
        or payload.get("leaf_hash") != _short(bundle.leaf_hash)
    ):
        return _fail(
            "erasure",
            f"the erasure record is not an erasure of leaf {bundle.leaf_index} "
            f"({_short(bundle.leaf_hash)}) by the privacy service (id {expected_id}, kind "
            "admin, submitter service:privacy)",
        )
    if erasure.leaf_index <= bundle.leaf_index:
        return _fail("erasure", "the erasure record precedes the record it erases")
    if erasure.leaf_index >= bundle.checkpoint.tree_size:
        return _fail("erasure", "the erasure record is not in the bundle's checkpoint")
    try:
        merkle.verify_inclusion(
            erasure.leaf_hash,
            erasure.leaf_index,
            bundle.checkpoint.tree_size,
            erasure.inclusion_proof,
            bundle.checkpoint.root,
        )
    except VerificationError as exc:
        return _fail("erasure", f"the erasure record is not in the checkpoint: {exc}")
    return _pass(
        "erasure",
        f"erased: leaf {bundle.leaf_index}'s content was {_erasure_summary(record)}; the "
        f"erasure record (leaf {erasure.leaf_index}) is in the same checkpoint",
    )


def _check_inclusion(bundle: Bundle) -> Check:
    checkpoint = bundle.checkpoint
    if bundle.tree_size != checkpoint.tree_size:
        return _fail(
            "inclusion",
            f"the proof is for a tree of size {bundle.tree_size}, the checkpoint has size "
            f"{checkpoint.tree_size}",
        )
    try:
        merkle.verify_inclusion(
            bundle.leaf_hash,
            bundle.leaf_index,
            bundle.tree_size,
            bundle.inclusion_proof,
            checkpoint.root,
        )
    except VerificationError as exc:
        return _fail(
            "inclusion",
            f"leaf {bundle.leaf_index} in a tree of size {bundle.tree_size}: {exc}",
        )
    return _pass(
        "inclusion",
        f"leaf {bundle.leaf_index} is in the tree of size {checkpoint.tree_size} with root "
        f"{_short(checkpoint.root)} ({len(bundle.inclusion_proof)} proof hashes, "
        "RFC 9162 §2.1.3.2)",
    )


def _check_consistency(bundle: Bundle, old_size: int, old_root: bytes, name: str) -> Check:
    assert bundle.consistency is not None
    proof = bundle.consistency.proof
    new = bundle.checkpoint
    try:
        merkle.verify_consistency(old_size, new.tree_size, proof, old_root, new.root)
    except VerificationError as exc:
        return _fail(
            name,
            f"from size {old_size} (root {_short(old_root)}) to size {new.tree_size}: {exc}",
        )
    return _pass(
        name,
        f"the tree of size {new.tree_size} extends the tree of size {old_size} with root "
        f"{_short(old_root)} ({len(proof)} proof hashes, RFC 9162 §2.1.4.2)",
    )


def _check_note(bundle: Bundle, log_key: note.Verifier) -> Check:
    """The ``checkpoint_note`` check (see the module docstring)."""
    name = "checkpoint_note"
    if bundle.checkpoint_note is None:
        return _skip(name, "skipped: the bundle carries no signed checkpoint note")
    try:
        signed, parsed = note.open_checkpoint(bundle.checkpoint_note, log_key)
    except NoteError as exc:
        return _fail(name, f"the signed checkpoint does not verify with {log_key.encode()}: {exc}")
    expected = bundle.checkpoint
    if signed.size != expected.tree_size or signed.root != expected.root:
        return _fail(
            name,
            f"the log signed size {signed.size} root {_short(signed.root)}, the bundle's "
            f"checkpoint is size {expected.tree_size} root {_short(expected.root)}",
        )
    others = len(parsed.signatures) - 1
    return _pass(
        name,
        f"{signed.origin} signed size {signed.size} with root {_short(signed.root)} "
        f"(c2sp.org/tlog-checkpoint, key {log_key.key_id.hex()})"
        + (f"; {others} other signature line(s) not checked" if others else ""),
    )


def parse_log_key(log_key: note.Verifier | str | None) -> note.Verifier | None:
    """The auditor's log verifier key, parsed (``<origin>+<hex id>+<base64 key>``).

    Raises:
        InputError: not a verifier key, or not an Ed25519 (type 0x01) key.
    """
    if log_key is None or isinstance(log_key, note.Verifier):
        return log_key
    try:
        parsed = note.Verifier.parse(log_key)
    except NoteError as exc:
        raise InputError(f"the log key is not a note verifier key: {exc}") from exc
    if parsed.sig_type != note.ED25519:
        raise InputError("the log key must be an Ed25519 note key (type 0x01), not a witness's")
    return parsed


# ---------------------------------------------------------------------------------------------
# Chain checks
# ---------------------------------------------------------------------------------------------


def _guard(name: str, run: Callable[[], Check]) -> Check:
    """Run one chain check; a node's refusal is that check's failure. An unreachable
    endpoint (:class:`ChainUnavailableError`) propagates: it proves nothing either way."""
    try:
        return run()
    except ChainUnavailableError:
        raise
    except ChainError as exc:
        return _fail(name, str(exc))


def _chain_checks(
    bundle: Bundle,
    chain: Chain,
    confirmations: int,
    finality: int,
    expected_chain_id: int | None,
    expected_contract: str | None,
) -> list[Check]:
    anchor = bundle.anchor
    checks: list[Check] = []

    def chain_id() -> Check:
        if expected_chain_id is not None and anchor.chain_id != expected_chain_id:
            return _fail(
                "chain_id",
                f"the bundle names chain {anchor.chain_id}, you expect chain {expected_chain_id}",
            )
        try:
            actual = chain.chain_id()
        except ChainUnavailableError:
            raise
        except ChainError as exc:  # the first call: an endpoint that fails it is unusable
            raise ChainUnavailableError(
                f"{shown_endpoint(chain.rpc_url)} does not answer as an Ethereum JSON-RPC "
                f"endpoint: {exc}"
            ) from exc
        if actual != anchor.chain_id:
            return _fail(
                "chain_id",
                f"the endpoint serves chain {actual}, the bundle names chain {anchor.chain_id}",
            )
        return _pass("chain_id", f"the endpoint serves chain {actual}")

    checks.append(_guard("chain_id", chain_id))
    if checks[-1].failed:
        reason = "skipped: the endpoint does not serve the bundle's chain"
        return checks + [_skip(name, reason) for name in CHAIN_CHECKS[1:]]

    def contract() -> Check:
        if expected_contract is not None and expected_contract != anchor.contract:
            return _fail(
                "contract",
                f"the bundle names contract {anchor.contract}, you expect {expected_contract}",
            )
        code = chain.code_at(anchor.contract)
        if not code:
            return _fail(
                "contract", f"there is no contract code at {anchor.contract} on this chain"
            )
        return _pass("contract", f"contract {anchor.contract} has {len(code)} bytes of code")

    checks.append(_guard("contract", contract))
    onchain = chain.contract(anchor.contract, AUDIT_ANCHOR_ABI)
    seq = anchor.checkpoint_seq

    def checkpoint() -> Check:
        try:
            size, root, block_number, _ = chain.run(
                f"AuditAnchor.checkpoint({seq})", lambda: onchain.functions.checkpoint(seq).call()
            )
        except ChainUnavailableError:
            raise
        except ChainError as exc:
            return _fail(
                "checkpoint", f"contract {anchor.contract} holds no checkpoint {seq} ({exc})"
            )
        mismatches = []
        if int(size) != bundle.checkpoint.tree_size:
            mismatches.append(f"tree size {size} (bundle: {bundle.checkpoint.tree_size})")
        if bytes(root) != bundle.checkpoint.root:
            mismatches.append(
                f"root {_short(bytes(root))} (bundle: {_short(bundle.checkpoint.root)})"
            )
        if int(block_number) != anchor.block_number:
            mismatches.append(f"block {block_number} (bundle: {anchor.block_number})")
        if mismatches:
            return _fail("checkpoint", f"on chain, checkpoint {seq} has " + "; ".join(mismatches))
        return _pass(
            "checkpoint",
            f"checkpoint {seq} on chain is (size {size}, root {_short(bytes(root))}), "
            f"anchored in block {block_number}",
        )

    if checks[-1].failed:
        checks.append(_skip("checkpoint", "skipped: no contract to ask"))
    else:
        checks.append(_guard("checkpoint", checkpoint))

    def block() -> Check:
        number = anchor.block_number
        canonical = chain.block_hash(number)
        head = chain.block_number()
        if canonical is None:
            return _fail("block", f"block {number} is beyond the chain's head {head}")
        if canonical != anchor.block_hash:
            return _fail(
                "block",
                f"block {number} is {_short(canonical)} on the canonical chain, the bundle "
                f"says {_short(anchor.block_hash)}: the anchor was reorganised away or the "
                "bundle is wrong",
            )
        depth = head - number + 1
        if depth < confirmations:
            return _fail(
                "block",
                f"block {number} has {depth} confirmation(s); {confirmations} are required",
            )
        if anchor.status == "final" and depth < finality:
            return _fail(
                "block",
                f"the bundle says the anchor is final, but block {number} has {depth} "
                f"confirmation(s) and final takes {finality}: the status claim is false",
            )
        claim = f"; final as claimed (at least {finality})" if anchor.status == "final" else ""
        return _pass("block", f"block {number} is canonical with {depth} confirmation(s){claim}")

    checks.append(_guard("block", block))

    def transaction() -> Check:
        receipt = chain.receipt(anchor.tx_hash)
        tx = _short(anchor.tx_hash)
        if receipt is None:
            return _fail("transaction", f"transaction {tx} is not on the canonical chain")
        if receipt["status"] != 1:
            return _fail("transaction", f"transaction {tx} reverted")
        where = (int(receipt["blockNumber"]), bytes(receipt["blockHash"]))
        if where != (anchor.block_number, anchor.block_hash):
            return _fail(
                "transaction",
                f"transaction {tx} is in block {where[0]} ({_short(where[1])}), the bundle "
                f"says block {anchor.block_number} ({_short(anchor.block_hash)})",
            )
        expected = [
            CHECKPOINT_ANCHORED_TOPIC,
            seq.to_bytes(32, "big"),
            bundle.checkpoint.tree_size.to_bytes(32, "big"),
            bundle.checkpoint.root,
        ]
        for entry in receipt["logs"]:
            if Web3.to_checksum_address(entry["address"]) != anchor.contract:
                continue
            if [bytes(HexBytes(topic)) for topic in entry["topics"]] == expected:
                return _pass(
                    "transaction",
                    f"transaction {tx} emitted CheckpointAnchored({seq}, "
                    f"{bundle.checkpoint.tree_size}, {_short(bundle.checkpoint.root)})",
                )
        return _fail(
            "transaction",
            f"transaction {tx} emitted no CheckpointAnchored({seq}, "
            f"{bundle.checkpoint.tree_size}, {_short(bundle.checkpoint.root)}) from "
            f"{anchor.contract}",
        )

    checks.append(_guard("transaction", transaction))
    return checks


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def _bundle_checks(
    bundle: Bundle,
    chain: Chain | None,
    confirmations: int,
    finality: int,
    expected_chain_id: int | None,
    expected_contract: str | None,
    *,
    with_consistency: bool = True,
    erased: Erased | None = None,
    log_key: note.Verifier | None = None,
) -> list[Check]:
    checks = [_check_record(bundle, erased), _check_inclusion(bundle)]
    if bundle.erasure is not None:
        checks.append(_check_erasure(bundle))
    consistency = bundle.consistency
    if with_consistency and consistency is not None:
        checks.append(
            _check_consistency(
                bundle, consistency.from_tree_size, consistency.from_root, "consistency"
            )
        )
    if log_key is not None:
        checks.append(_check_note(bundle, log_key))
    if chain is None:
        checks.extend(_OFFLINE)
    else:
        try:
            checks.extend(
                _chain_checks(
                    bundle, chain, confirmations, finality, expected_chain_id, expected_contract
                )
            )
        except requests.RequestException as exc:  # an HTTP error status, a redirect loop...
            raise ChainUnavailableError(
                f"{shown_endpoint(chain.rpc_url)} does not answer as an Ethereum JSON-RPC "
                f"endpoint: {exc}"
            ) from exc
    return checks


def _check_pins(
    confirmations: int,
    finality: int,
    expected_chain_id: int | None,
    expected_contract: str | None,
) -> str | None:
    """Check the auditor's own parameters; return the pinned contract address checksummed."""
    for name, value in (("confirmations", confirmations), ("finality", finality)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a whole number of at least 1, not {value}")
    if expected_chain_id is not None and (
        isinstance(expected_chain_id, bool)
        or not isinstance(expected_chain_id, int)
        or expected_chain_id < 1
    ):
        raise InputError(
            f"the expected chain id must be a positive integer, not {expected_chain_id}"
        )
    if expected_contract is None:
        return None
    if not Web3.is_address(expected_contract):
        raise InputError(f"the expected contract {expected_contract!r} is not an address")
    return str(Web3.to_checksum_address(expected_contract))


def _warnings(
    bundles: tuple[Bundle, ...],
    chain: Chain | None,
    expected_chain_id: int | None,
    expected_contract: str | None,
) -> tuple[str, ...]:
    if chain is None:
        return ()
    warnings = []
    if expected_contract is None:
        for contract in dict.fromkeys(b.anchor.contract for b in bundles):
            warnings.append(UNPINNED_CONTRACT.format(contract=contract))
    if expected_chain_id is None:
        for chain_id in dict.fromkeys(b.anchor.chain_id for b in bundles):
            warnings.append(UNPINNED_CHAIN.format(chain_id=chain_id))
    return tuple(warnings)


def verify_bundle(
    bundle: Bundle | Mapping[str, Any],
    *,
    chain: Chain | None,
    confirmations: int = DEFAULT_CONFIRMATIONS,
    finality: int = DEFAULT_FINALITY,
    expected_chain_id: int | None = None,
    expected_contract: str | None = None,
    erased: Erased | None = None,
    log_key: note.Verifier | str | None = None,
) -> Verdict:
    """Verify a proof bundle against the chain; return every check's outcome (see above).

    ``bundle`` is a parsed :class:`Bundle` or its JSON object. ``chain`` is the auditor's own
    endpoint (``None``: skip the chain checks). ``confirmations`` is the depth the anchoring
    block must have; ``finality`` the depth a bundle claiming ``"final"`` must have.
    ``expected_chain_id`` and ``expected_contract`` pin the chain and the ``AuditAnchor``
    address the auditor trusts; a bundle naming others fails, and without them the verdict
    carries a warning (:attr:`Verdict.warnings`). ``erased(leaf_index, leaf_hash)``, when
    given, says how a leaf's content was erased (or ``None``): a bundle still carrying an
    erased record's content then fails its ``record`` check. ``log_key`` (the log's verifier
    key, from a source the auditor trusts) adds the ``checkpoint_note`` check.

    Raises:
        InputError: ``bundle`` is malformed, ``confirmations`` is not at least 1, or
            ``log_key`` is not an Ed25519 note verifier key.
        ChainUnavailableError: the endpoint cannot be reached or is not a JSON-RPC endpoint
            (nothing was proved).
    """
    expected_contract = _check_pins(confirmations, finality, expected_chain_id, expected_contract)
    key = parse_log_key(log_key)
    parsed = _as_bundle(bundle)
    checks = _bundle_checks(
        parsed,
        chain,
        confirmations,
        finality,
        expected_chain_id,
        expected_contract,
        erased=erased,
        log_key=key,
    )
    return Verdict(
        tuple(checks),
        chain_checked=chain is not None,
        warnings=_warnings((parsed,), chain, expected_chain_id, expected_contract),
    )


def verify_consistency_bundles(
    old: Bundle | Mapping[str, Any],
    new: Bundle | Mapping[str, Any],
    chain: Chain | None,
    *,
    confirmations: int = DEFAULT_CONFIRMATIONS,
    finality: int = DEFAULT_FINALITY,
    expected_chain_id: int | None = None,
    expected_contract: str | None = None,
    log_key: note.Verifier | str | None = None,
) -> Verdict:
    """Verify that ``new``'s checkpoint extends ``old``'s: the log only grew in between.

    ``new`` must carry a consistency proof from ``old``'s tree size (``chainaudit proof ID
    --since OLD_SIZE``). The verdict holds both bundles' own checks, named ``old.<check>`` and
    ``new.<check>`` (with a chain: both checkpoints on chain at their sequence numbers; with
    ``log_key``, both signed checkpoint notes), then
    ``consistency`` (RFC 9162 §2.1.4.2 from old's root to new's, verified locally) and
    ``sequence`` (the same chain and contract, sequence numbers in the order of the sizes).

    Raises:
        InputError: a bundle is malformed, the two are given in the wrong order, or ``new``
            carries no consistency proof from ``old``'s size.
        ChainUnavailableError: the endpoint cannot be reached.
    """
    expected_contract = _check_pins(confirmations, finality, expected_chain_id, expected_contract)
    key = parse_log_key(log_key)
    before, after = _as_bundle(old), _as_bundle(new)
    old_size = before.checkpoint.tree_size
    proof = after.consistency
    new_size = after.checkpoint.tree_size
    if new_size < old_size or (proof is None and before.consistency is not None):
        raise InputError(
            f"the bundles are in the wrong order: the first (size {old_size}) is newer than the "
            f"second (size {new_size}); give the older bundle first, then the newer one made "
            "with `proof --since`: verify --consistency OLD NEW"
        )
    if proof is None:
        raise InputError(
            "the new bundle carries no consistency proof; fetch it with "
            f"`chainaudit proof RECORD_ID --since {old_size} -o new.json`"
        )
    if proof.from_tree_size != old_size:
        raise InputError(
            f"the new bundle's consistency proof starts at size {proof.from_tree_size}, the "
            f"old checkpoint has size {old_size}; fetch it with "
            f"`chainaudit proof RECORD_ID --since {old_size} -o new.json`"
        )
    pins = (chain, confirmations, finality, expected_chain_id, expected_contract)
    checks = [
        _prefixed("old", c)
        for c in _bundle_checks(before, *pins, with_consistency=False, log_key=key)
    ]
    checks += [
        _prefixed("new", c)
        for c in _bundle_checks(after, *pins, with_consistency=False, log_key=key)
    ]
    old_root = before.checkpoint.root
    if proof.from_root != old_root:
        checks.append(
            _fail(
                "consistency",
                f"the new bundle's proof starts from root {_short(proof.from_root)} at size "
                f"{old_size}, the old checkpoint's root is {_short(old_root)}: the log shows "
                "two different histories",
            )
        )
    else:
        checks.append(_check_consistency(after, old_size, old_root, "consistency"))
    checks.append(_check_sequence(before, after))
    return Verdict(
        tuple(checks),
        chain_checked=chain is not None,
        warnings=_warnings((before, after), chain, expected_chain_id, expected_contract),
    )


def _prefixed(prefix: str, check: Check) -> Check:
    return Check(f"{prefix}.{check.name}", check.status, check.detail)


def _check_sequence(old: Bundle, new: Bundle) -> Check:
    a, b = old.anchor, new.anchor
    if (a.chain_id, a.contract) != (b.chain_id, b.contract):
        return _fail(
            "sequence",
            f"the checkpoints are anchored in different places: chain {a.chain_id} contract "
            f"{a.contract}, and chain {b.chain_id} contract {b.contract}",
        )
    old_size, new_size = old.checkpoint.tree_size, new.checkpoint.tree_size
    in_order = (
        a.checkpoint_seq < b.checkpoint_seq
        if old_size < new_size
        else a.checkpoint_seq == b.checkpoint_seq
        if old_size == new_size
        else False
    )
    if not in_order:
        return _fail(
            "sequence",
            f"checkpoint {a.checkpoint_seq} (size {old_size}) and checkpoint "
            f"{b.checkpoint_seq} (size {new_size}) are not in append order",
        )
    return _pass(
        "sequence",
        f"checkpoint {a.checkpoint_seq} (size {old_size}) precedes checkpoint "
        f"{b.checkpoint_seq} (size {new_size}) in the same contract",
    )
