"""The log's side of ``c2sp.org/tlog-witness``: ask the witnesses of a ``tlog-policy`` to
cosign a freshly signed checkpoint, and attach the ``cosignature/v1`` lines they return.

:func:`collect_cosignatures` posts the checkpoint to every witness of the policy that has a
URL, concurrently, each with a short timeout. The old size sent to a witness is the size it
last cosigned as far as the log knows (``last_sizes``, 0 when unknown), with the consistency
proof from that size. A witness answering 409 (``text/x.tlog.size``) has recorded another
size: the request is sent once more from that size, with a proof from it. A witness that is
down, times out or refuses is skipped with a warning (its URL and the status, never a key).
Every returned cosignature is verified with the witness's key from the policy before it is
attached; lines of other keys are ignored (tlog-witness: "The client MUST ignore any
cosignatures from unknown keys").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from chainaudit import note
from chainaudit.errors import ChainauditError, NoteError, WitnessError
from chainaudit.witness import SIZE_CONTENT_TYPE, encode_request
from chainaudit.witness_policy import Policy, PolicyWitness

log = logging.getLogger("chainaudit.cosign")

DEFAULT_TIMEOUT = 5.0
"""Seconds to connect to, and to wait for, each witness."""
MAX_RESPONSE_BYTES = 64 * 1024

ConsistencyProof = Callable[[int, int], list[bytes]]
"""``proof(old_size, new_size)``: the RFC 9162 consistency proof between two sizes of the log
(for instance :meth:`chainaudit.store.Log.consistency_proof`)."""


@dataclass
class CosignResult:
    """What :func:`cosign` got: the note with the cosignatures attached, the witnesses (policy
    names) that cosigned with their timestamps, each witness's last known size, the witnesses
    that answered 409 (with the size they had, the request then resent from it), and why the
    others did not cosign."""

    note: note.Note
    cosigned: dict[str, int] = field(default_factory=dict)
    resent: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Outcome:
    name: str
    signatures: tuple[note.Signature, ...] = ()
    timestamp: int | None = None
    size: int | None = None
    failure: str | None = None
    resent_from: int | None = None


def _post(client: httpx.Client, url: str, body: bytes) -> httpx.Response:
    return client.post(
        url.rstrip("/") + "/add-checkpoint",
        content=body,
        headers={"Content-Type": "text/plain; charset=utf-8"},
    )


def _conflict_size(response: httpx.Response) -> int:
    kind = response.headers.get("content-type", "").split(";")[0].strip()
    text = response.content[:32].decode("ascii", errors="replace")
    if kind != SIZE_CONTENT_TYPE or not text.endswith("\n") or not text[:-1].isdecimal():
        raise WitnessError(f"409 without a {SIZE_CONTENT_TYPE} body")
    return int(text[:-1])


def _ask(
    client: httpx.Client,
    witness: PolicyWitness,
    url: str,
    signed: note.Note,
    size: int,
    proof: ConsistencyProof,
    old: int,
) -> _Outcome:
    """Ask one witness; resend once after a 409."""
    old = min(max(old, 0), size)
    resent: int | None = None
    for attempt in (1, 2):
        hashes = proof(old, size) if 0 < old < size else []
        try:
            response = _post(client, url, encode_request(old, hashes, signed))
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return _Outcome(witness.name, failure=f"unreachable ({type(exc).__name__})")
        if response.status_code == 409 and attempt == 1:
            try:
                theirs = _conflict_size(response)
            except WitnessError as exc:
                return _Outcome(witness.name, failure=str(exc))
            if theirs > size:
                return _Outcome(
                    witness.name,
                    size=theirs,
                    failure=f"it cosigned size {theirs}, newer than this checkpoint's {size}",
                )
            old = resent = theirs
            continue
        if response.status_code != 200:
            sent = f"old size {old}"
            return _Outcome(witness.name, failure=f"HTTP {response.status_code} ({sent})")
        body = response.content[:MAX_RESPONSE_BYTES]
        try:
            lines = note.Note.parse(signed.text + "\n" + body.decode("utf-8"))
            stamps = lines.verified_by([witness.verifier])
        except (NoteError, UnicodeDecodeError) as exc:
            return _Outcome(witness.name, failure=f"a bad cosignature: {exc}")
        stamp = stamps.get(witness.verifier.name)
        if stamp is None:
            return _Outcome(witness.name, failure="no cosignature of its key in the answer")
        mine = tuple(
            s
            for s in lines.signatures
            if (s.name, s.key_id) == (witness.verifier.name, witness.verifier.key_id)
        )
        return _Outcome(witness.name, mine, stamp, size, resent_from=resent)
    return _Outcome(witness.name, failure="409 twice")  # pragma: no cover - loop returns


def cosign(
    signed: note.Note,
    policy: Policy,
    consistency_proof: ConsistencyProof,
    last_sizes: MutableMapping[str, int] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    transport: httpx.BaseTransport | None = None,
) -> CosignResult:
    """Ask every witness of ``policy`` that has a URL to cosign ``signed`` (a checkpoint note
    signed by the log), concurrently; see the module doc. ``last_sizes`` (witness policy name
    -> size it last cosigned) is read for the old sizes and updated in place with what was
    learned.

    Raises:
        NoteError: ``signed`` is not a checkpoint.
    """
    checkpoint = note.Checkpoint.parse(signed.text)
    known = last_sizes if last_sizes is not None else {}
    asked = [(w, w.url) for w in policy.witnesses.values() if w.url]
    result = CosignResult(signed)
    if not asked:
        return result
    limits = httpx.Timeout(timeout)
    with (
        httpx.Client(timeout=limits, transport=transport) as client,
        ThreadPoolExecutor(max_workers=min(16, len(asked)), thread_name_prefix="cosign") as pool,
    ):
        futures = [
            pool.submit(
                _ask,
                client,
                w,
                url,
                signed,
                checkpoint.size,
                consistency_proof,
                known.get(w.name, 0),
            )
            for w, url in asked
        ]
        outcomes: list[_Outcome] = []
        for (witness, _), future in zip(asked, futures, strict=True):
            try:
                outcomes.append(future.result())
            except (ChainauditError, ValueError) as exc:  # the proof callable refused
                outcomes.append(_Outcome(witness.name, failure=f"no proof: {exc}"))
    extra: list[note.Signature] = []
    for outcome in outcomes:
        if outcome.size is not None:
            known[outcome.name] = outcome.size
            result.sizes[outcome.name] = outcome.size
        if outcome.resent_from is not None:
            result.resent[outcome.name] = outcome.resent_from
        if outcome.failure is not None:
            result.failures[outcome.name] = outcome.failure
            url = policy.witnesses[outcome.name].url
            log.warning(
                "witness %s (%s) did not cosign %s size %d: %s",
                outcome.name,
                url,
                checkpoint.origin,
                checkpoint.size,
                outcome.failure,
            )
            continue
        result.cosigned[outcome.name] = outcome.timestamp or 0
        extra.extend(outcome.signatures)
    result.note = signed.with_signatures(tuple(extra))
    return result


def collect_cosignatures(
    signed_note: note.Note,
    policy: Policy,
    consistency_proof: ConsistencyProof,
    last_sizes: MutableMapping[str, int] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> note.Note:
    """``signed_note`` with the verified cosignatures of the policy's witnesses appended.

    The quorum is not enforced here: check it with :func:`quorum_met` (a log publishes its
    checkpoint whether or not enough witnesses answered). ``last_sizes`` is updated in place.
    """
    return cosign(signed_note, policy, consistency_proof, last_sizes, timeout=timeout).note


def quorum_met(signed_note: note.Note, policy: Policy) -> bool:
    """Whether the verified cosignatures on ``signed_note`` meet the policy's quorum.

    Raises:
        NoteError: a signature line claiming a witness key of the policy does not verify.
    """
    return policy.quorum_met(policy.cosigners(signed_note))
