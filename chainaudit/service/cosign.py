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
import threading
from collections.abc import Callable, Iterable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from chainaudit.core import note
from chainaudit.core.errors import ChainauditError, NoteError
from chainaudit.core.witness_policy import Policy, PolicyWitness
from chainaudit.service.witness import SIZE_CONTENT_TYPE, encode_request

__all__ = [
    "ConsistencyProof",
    "CosignResult",
    "collect_cosignatures",
    "cosign",
    "known_sizes",
    "log_cosigner",
    "quorum_met",
]

log = logging.getLogger("chainaudit.service.cosign")

DEFAULT_TIMEOUT = 5.0
"""Seconds to connect to, and to wait for, each witness."""
MAX_RESPONSE_BYTES = 64 * 1024

ConsistencyProof = Callable[[int, int], list[bytes]]
"""``proof(old_size, new_size)``: the RFC 9162 consistency proof between two sizes of the log
(for instance :meth:`chainaudit.log.store.Log.consistency_proof`)."""


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
class _Reply:
    """A witness's answer (status, content type, body), or why there is none."""

    status: int = 0
    content_type: str = ""
    body: bytes = b""
    failure: str | None = None


def _post(client: httpx.Client, url: str, body: bytes) -> _Reply:
    """POST an add-checkpoint body; never raises (a transport error is a failed reply)."""
    try:
        with client.stream(
            "POST",
            url.rstrip("/") + "/add-checkpoint",
            content=body,
            headers={"Content-Type": "text/plain; charset=utf-8"},
        ) as response:
            read = b""
            for chunk in response.iter_bytes():
                read += chunk
                if len(read) > MAX_RESPONSE_BYTES:
                    return _Reply(failure=f"an answer over {MAX_RESPONSE_BYTES} bytes")
            kind = response.headers.get("content-type", "").split(";")[0].strip()
            return _Reply(response.status_code, kind, read)
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
        return _Reply(failure=f"unreachable ({type(exc).__name__})")


def _conflict_size(reply: _Reply) -> int | None:
    text = reply.body[:32].decode("ascii", errors="replace")
    if reply.content_type != SIZE_CONTENT_TYPE or not text.endswith("\n"):
        return None
    return int(text[:-1]) if text[:-1].isdecimal() else None


def _cosignatures(
    reply: _Reply, witness: PolicyWitness, signed: note.Note
) -> tuple[tuple[note.Signature, ...], int] | str:
    """The witness's verified cosignature lines and timestamp in a 200 body, or why not."""
    try:
        lines = note.Note.parse(signed.text + "\n" + reply.body.decode("utf-8"))
        stamps = lines.verified_by([witness.verifier])
    except (NoteError, UnicodeDecodeError) as exc:
        return f"a bad cosignature: {exc}"
    stamp = stamps.get(witness.verifier.name)
    if stamp is None:
        return "no cosignature of its key in the answer"
    key = (witness.verifier.name, witness.verifier.key_id)
    return tuple(s for s in lines.signatures if (s.name, s.key_id) == key), stamp


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

    ``consistency_proof`` is only called from the calling thread (the HTTP requests run in a
    pool): a :class:`~chainaudit.log.store.Log` method can be passed as it is. A proof it cannot
    build (it raises a :class:`~chainaudit.core.errors.ChainauditError` or ``ValueError``) skips
    that witness.

    Raises:
        NoteError: ``signed`` is not a checkpoint.
    """
    checkpoint = note.Checkpoint.parse(signed.text)
    size = checkpoint.size
    known = last_sizes if last_sizes is not None else {}
    witnesses = {w.name: (w, w.url) for w in policy.witnesses.values() if w.url}
    result = CosignResult(signed)
    extra: list[note.Signature] = []

    def fail(name: str, why: str) -> None:
        result.failures[name] = why
        log.warning(
            "witness %s (%s) did not cosign %s size %d: %s",
            name,
            witnesses[name][1],
            checkpoint.origin,
            size,
            why,
        )

    def bodies(olds: dict[str, int]) -> dict[str, bytes]:
        made: dict[str, bytes] = {}
        for name, old in olds.items():
            try:
                hashes = consistency_proof(old, size) if 0 < old < size else []
            except (ChainauditError, ValueError) as exc:
                fail(name, f"no consistency proof from {old} to {size}: {exc}")
                continue
            made[name] = encode_request(old, hashes, signed)
        return made

    if not witnesses:
        return result
    olds = {name: min(max(known.get(name, 0), 0), size) for name in witnesses}
    with (
        httpx.Client(timeout=httpx.Timeout(timeout), transport=transport) as client,
        ThreadPoolExecutor(max_workers=min(16, len(witnesses))) as pool,
    ):

        def send(requests: dict[str, bytes]) -> dict[str, _Reply]:
            futures = {
                name: pool.submit(_post, client, str(witnesses[name][1]), body)
                for name, body in requests.items()
            }
            return {name: future.result() for name, future in futures.items()}

        replies = send(bodies(olds))
        retry: dict[str, int] = {}
        for name, reply in replies.items():
            if reply.status == 409:
                theirs = _conflict_size(reply)
                if theirs is None:
                    fail(name, f"409 without a {SIZE_CONTENT_TYPE} body")
                elif theirs > size:
                    known[name] = result.sizes[name] = theirs
                    fail(name, f"it cosigned size {theirs}, newer than this checkpoint")
                else:
                    retry[name] = result.resent[name] = theirs
        replies.update(send(bodies(retry)))
    for name, reply in replies.items():
        if name in result.failures:
            continue
        if reply.failure is not None:
            fail(name, reply.failure)
            continue
        if reply.status != 200:
            fail(name, f"HTTP {reply.status} (old size {retry.get(name, olds[name])})")
            continue
        found = _cosignatures(reply, witnesses[name][0], signed)
        if isinstance(found, str):
            fail(name, found)
            continue
        lines, stamp = found
        known[name] = result.sizes[name] = size
        result.cosigned[name] = stamp
        extra.extend(lines)
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


def known_sizes(cosigned: Iterable[note.Note], policy: Policy) -> dict[str, int]:
    """The size each witness of ``policy`` last cosigned, as far as these checkpoint notes
    (for instance the log's stored signed checkpoints, after a restart) show: the largest size
    among the notes it has a valid cosignature on. Use it as ``last_sizes``; a witness that
    has moved on since answers 409 and is asked again from its size anyway.

    Raises:
        NoteError: a note that is not a checkpoint, or a cosignature claiming a witness key
            of the policy that does not verify.
    """
    sizes: dict[str, int] = {}
    for signed in cosigned:
        size = note.Checkpoint.parse(signed.text).size
        for name in policy.cosigners(signed):
            sizes[name] = max(size, sizes.get(name, 0))
    return sizes


def log_cosigner(
    policy: Policy, consistency_proof: ConsistencyProof, latest: str | None = None
) -> Callable[[note.Note], note.Note]:
    """The log's cosigning step (:data:`chainaudit.log.checkpointing.Cosign`): each freshly signed
    checkpoint is sent to the policy's witnesses (:func:`cosign`) and comes back with the
    cosignatures they gave. What it learns of each witness's size is kept between calls,
    starting from ``latest`` (the log's latest stored note, after a restart). A witness that
    fails is logged by name and reason (never a key); a quorum not met is logged as a warning:
    the plain checkpoint is still served, and clients that require the quorum refuse it.

    ``consistency_proof`` is called on the caller's thread only (one per log connection).
    """
    sizes: dict[str, int] = {}
    if latest is not None:
        try:
            sizes.update(known_sizes([note.Note.parse(latest)], policy))
        except NoteError as exc:
            log.warning("cosign: the latest stored checkpoint does not parse: %s", exc)
    lock = threading.Lock()

    def step(signed: note.Note) -> note.Note:
        with lock:
            result = cosign(signed, policy, consistency_proof, sizes)
        for name, why in sorted(result.failures.items()):
            log.warning("cosign: witness %s gave no cosignature: %s", name, why)
        if not quorum_met(result.note, policy):
            log.warning(
                "cosign: the checkpoint of size %s has no quorum (%s): cosigned by %s",
                note.Checkpoint.parse(signed.text).size,
                policy.quorum,
                ", ".join(sorted(result.cosigned)) or "no witness",
            )
        return result.note

    return step
