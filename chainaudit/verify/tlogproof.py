"""Offline proofs in the ecosystem's format: ``c2sp.org/tlog-proof@v1``.

A tlog-proof (C2SP ``tlog-proof``, "Format") is text, lines separated by newlines::

    c2sp.org/tlog-proof@v1
    extra <base64 of opaque extra data>          (optional line)
    index <zero-based leaf index, decimal, no leading zeros>
    <base64 inclusion proof hash>                (zero or more: RFC 6962 §2.1.1 / RFC 9162
    ...                                           §2.1.3.1 PATH, leaf's sibling first)
    <empty line>
    <the signed checkpoint, verbatim>            (c2sp.org/tlog-checkpoint, with the log's
                                                  signature and witness cosignatures)

chainaudit writes the record's leaf data (its RFC 8785 canonical bytes, salt included) as the
``extra`` data, so the proof carries the entry itself. The spec says extra data is not
authenticated, and it is not trusted here: it is only hashed (``SHA-256(0x00 || data)``,
RFC 9162 §2.1.1) and the leaf hash must be proved included. An auditor may give the entry
from elsewhere instead (``chainaudit verify --entry FILE``).

:func:`build_tlog_proof` makes one from the operator's log and its latest signed checkpoint
(:meth:`chainaudit.log.store.Log.signed_checkpoint`); :func:`parse_tlog_proof` reads one
(malformed input: :class:`~chainaudit.core.errors.InputError`); :func:`verify_tlog_proof` checks it
against the log's key and the auditor's witness policy and returns a
:class:`~chainaudit.verify.verifier.Verdict` (a failed check is a verdict, not an exception).

Witness policy: a ``c2sp.org/tlog-policy`` file (:mod:`chainaudit.core.witness_policy`, groups and
thresholds), or, for a quick check, a list of witness verifier keys (``cosignature/v1``, type
0x04, c2sp.org/tlog-cosignature) and a quorum ``K`` (:class:`WitnessPolicy`): at least ``K``
distinct listed witnesses must have a valid cosignature on the checkpoint.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from chainaudit.core import merkle, note
from chainaudit.core.errors import (
    InputError,
    NoteError,
    VerificationError,
)
from chainaudit.core.witness_policy import Policy
from chainaudit.verify.verifier import Check, Verdict

if TYPE_CHECKING:
    pass

__all__ = [
    "HEADER",
    "TlogProof",
    "WitnessPolicy",
    "is_tlog_proof",
    "parse_tlog_proof",
    "verify_tlog_proof",
]

HEADER: Final = "c2sp.org/tlog-proof@v1"
MAX_PROOF_BYTES: Final = 4 * 1024 * 1024
MAX_PROOF_HASHES: Final = 64
"""An inclusion proof in a tree of fewer than 2^64 leaves has at most 64 hashes."""


@dataclass(frozen=True, slots=True)
class TlogProof:
    """A parsed tlog-proof: leaf ``index``, inclusion ``proof``, the signed ``checkpoint``
    note verbatim, and the optional unauthenticated ``extra`` data."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None

    def encode(self) -> str:
        """The proof as text (C2SP tlog-proof, "Format")."""
        lines = [HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode())
        lines.append(f"index {self.index}")
        lines += [base64.b64encode(h).decode() for h in self.proof]
        return "\n".join(lines) + "\n\n" + self.checkpoint


def is_tlog_proof(data: bytes) -> bool:
    """Whether ``data`` starts like a tlog-proof (its first line is the header)."""
    return data.startswith(HEADER.encode() + b"\n")


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise InputError(f"tlog-proof: {what} is not base64") from exc


def parse_tlog_proof(data: bytes | str) -> TlogProof:
    """Parse a tlog-proof; the checkpoint is checked to be a well-formed signed note.

    Raises:
        InputError: not UTF-8, too large, a missing or wrong header, a bad ``extra`` or
            ``index`` line, a proof line that is not base64 of 32 bytes, no empty line before
            the checkpoint, or a malformed checkpoint note.
    """
    if isinstance(data, bytes):
        if len(data) > MAX_PROOF_BYTES:
            raise InputError(f"tlog-proof: larger than {MAX_PROOF_BYTES} bytes")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError("tlog-proof: not UTF-8") from exc
    head, sep, checkpoint = data.partition("\n\n")
    if not sep:
        raise InputError("tlog-proof: no empty line before the checkpoint")
    lines = head.split("\n")
    if lines[0] != HEADER:
        raise InputError(f"tlog-proof: the first line must be {HEADER}")
    rest = lines[1:]
    extra = None
    if rest and rest[0].startswith("extra "):
        extra = _b64(rest.pop(0)[len("extra ") :], "the extra line")
    if not rest or not rest[0].startswith("index "):
        raise InputError("tlog-proof: expected an 'index N' line")
    digits = rest.pop(0)[len("index ") :]
    if not digits.isdigit() or (digits != "0" and digits.startswith("0")) or len(digits) > 20:
        raise InputError(f"tlog-proof: index {digits[:30]!r} is not a decimal without zeros")
    if len(rest) > MAX_PROOF_HASHES:
        raise InputError(f"tlog-proof: more than {MAX_PROOF_HASHES} proof hashes")
    proof = []
    for i, line in enumerate(rest):
        value = _b64(line, f"proof line {i + 1}")
        if len(value) != merkle.HASH_SIZE:
            raise InputError(f"tlog-proof: proof line {i + 1} is not a 32-byte hash")
        proof.append(value)
    try:
        note.Checkpoint.parse(note.Note.parse(checkpoint).text)
    except NoteError as exc:
        raise InputError(f"tlog-proof: the checkpoint: {exc}") from exc
    return TlogProof(int(digits), tuple(proof), checkpoint, extra)


@dataclass(frozen=True, slots=True)
class WitnessPolicy:
    """Witness keys (``cosignature/v1``) and how many of them must cosign (the quorum)."""

    witnesses: tuple[note.Verifier, ...]
    quorum: int

    def __post_init__(self) -> None:
        names = [w.name for w in self.witnesses]
        if len(set(names)) != len(names):
            raise InputError("witness policy: two witness keys with the same name")
        if any(w.sig_type != note.COSIGNATURE_V1 for w in self.witnesses):
            raise InputError("witness policy: witness keys are cosignature/v1 keys (type 0x04)")
        if not 0 <= self.quorum <= len(self.witnesses):
            raise InputError(
                f"witness policy: a quorum of {self.quorum} out of {len(self.witnesses)} "
                "witnesses cannot be met"
            )


def verify_tlog_proof(
    proof: TlogProof,
    *,
    log_key: note.Verifier,
    entry: bytes | None = None,
    policy: WitnessPolicy | Policy | None = None,
) -> tuple[Verdict, note.Checkpoint]:
    """Verify a tlog-proof; return the verdict and the (parsed) checkpoint.

    Checks, in order: ``entry`` (the entry given, else the ``extra`` data, hashes to a leaf,
    RFC 9162 §2.1.1), ``log_signature`` (the checkpoint carries a valid signature of
    ``log_key`` and its origin is the key's name, c2sp.org/tlog-checkpoint and signed-note),
    ``inclusion`` (the leaf is at ``index`` of the checkpoint's tree, RFC 9162 §2.1.3.2) and
    ``witnesses`` (at least ``policy.quorum`` distinct witnesses of a :class:`WitnessPolicy`
    cosigned, or the quorum of a ``tlog-policy`` file is met, c2sp.org/tlog-cosignature;
    skipped without a policy).

    Raises:
        InputError: neither an entry nor extra data (there is no leaf to prove).
    """
    data = entry if entry is not None else proof.extra
    if data is None:
        raise InputError(
            "the tlog-proof carries no entry (no extra line): give the entry with --entry FILE"
        )
    signed = note.Note.parse(proof.checkpoint)
    checkpoint = note.Checkpoint.parse(signed.text)
    leaf = merkle.hash_leaf(data)
    source = "the entry given" if entry is not None else "the proof's extra data"
    checks = [Check("entry", "pass", f"{source} hashes to leaf 0x{leaf.hex()} (RFC 9162 §2.1.1)")]
    checks.append(_check_signature(signed, checkpoint, log_key))
    checks.append(_check_inclusion(proof, checkpoint, leaf))
    checks.append(_check_witnesses(signed, policy))
    return Verdict(tuple(checks), chain_checked=False), checkpoint


def _check_signature(signed: note.Note, checkpoint: note.Checkpoint, key: note.Verifier) -> Check:
    try:
        valid = signed.verified_by([key])
    except NoteError as exc:
        return Check("log_signature", "fail", str(exc))
    if key.name not in valid:
        return Check(
            "log_signature", "fail", f"the checkpoint carries no signature of {key.encode()}"
        )
    if checkpoint.origin != key.name:
        return Check(
            "log_signature",
            "fail",
            f"the checkpoint's origin {checkpoint.origin} is not the key's name {key.name}",
        )
    return Check(
        "log_signature",
        "pass",
        f"checkpoint of {checkpoint.origin} (size {checkpoint.size}) signed by the log's key "
        f"{key.key_id.hex()} (c2sp.org/signed-note)",
    )


def _check_inclusion(proof: TlogProof, checkpoint: note.Checkpoint, leaf: bytes) -> Check:
    try:
        merkle.verify_inclusion(leaf, proof.index, checkpoint.size, proof.proof, checkpoint.root)
    except VerificationError as exc:
        return Check(
            "inclusion", "fail", f"leaf {proof.index} in a tree of size {checkpoint.size}: {exc}"
        )
    return Check(
        "inclusion",
        "pass",
        f"leaf {proof.index} is in the tree of size {checkpoint.size} with root "
        f"0x{checkpoint.root.hex()} ({len(proof.proof)} proof hashes, RFC 9162 §2.1.3.2)",
    )


def _check_witnesses(signed: note.Note, policy: WitnessPolicy | Policy | None) -> Check:
    if policy is None:
        return Check(
            "witnesses", "skip", "skipped: no witness policy given (--policy, or --witness)"
        )
    if isinstance(policy, Policy):
        return _check_policy(signed, policy)
    try:
        valid = signed.verified_by(list(policy.witnesses))
    except NoteError as exc:
        return Check("witnesses", "fail", f"a witness cosignature does not verify: {exc}")
    if len(valid) < policy.quorum:
        return Check(
            "witnesses",
            "fail",
            f"{len(valid)} of the {len(policy.witnesses)} trusted witnesses cosigned "
            f"({', '.join(sorted(valid)) or 'none'}); the quorum is {policy.quorum}",
        )
    return Check(
        "witnesses",
        "pass",
        f"{len(valid)} trusted witness(es) cosigned ({', '.join(sorted(valid))}); quorum "
        f"{policy.quorum} (c2sp.org/tlog-cosignature)",
    )


def _check_policy(signed: note.Note, policy: Policy) -> Check:
    """The quorum of a ``tlog-policy`` file (groups and thresholds) over the cosignatures."""
    try:
        found = policy.cosigners(signed)
    except NoteError as exc:
        return Check("witnesses", "fail", f"a witness cosignature does not verify: {exc}")
    named = ", ".join(sorted(found)) or "none"
    if not policy.quorum_met(found):
        return Check(
            "witnesses",
            "fail",
            f"the policy's quorum {policy.quorum!r} is not met (cosigned by: {named})",
        )
    return Check(
        "witnesses",
        "pass",
        f"the policy's quorum {policy.quorum!r} is met (cosigned by: {named}; "
        "c2sp.org/tlog-cosignature)",
    )


def parse_keys(texts: Sequence[str], what: str) -> list[note.Verifier]:
    """Parse verifier key strings; a bad one is an :class:`InputError` naming ``what``."""
    keys = []
    for text in texts:
        try:
            keys.append(note.Verifier.parse(text))
        except NoteError as exc:
            raise InputError(f"{what}: {exc}") from exc
    return keys
