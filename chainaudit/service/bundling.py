"""Building proof bundles from the operator's log and anchor book (the operator's side).

:func:`build_bundle` assembles the :class:`~chainaudit.core.bundle.Bundle` of one record: its
inclusion proof (RFC 9162 §2.1.3) against the newest confirmed or final anchored checkpoint that
contains it, the anchor's position on chain, and optionally a consistency proof (§2.1.4). The
format itself, and reading bundles back, is :mod:`chainaudit.core.bundle`, which the independent
verifier uses without this module.
"""

from __future__ import annotations

import json
from typing import Any

from web3 import Web3

from chainaudit.core import merkle, note
from chainaudit.core.bundle import (
    MAX_WITHHELD_CHARS,
    Anchor,
    Bundle,
    Checkpoint,
    Consistency,
    Erasure,
)
from chainaudit.core.canonical import canonicalize
from chainaudit.core.errors import InputError, NoteError, ProofPendingError, RecordError, StoreError
from chainaudit.log.store import Entry, Log
from chainaudit.service.anchoring import FINAL, AnchorBook
from chainaudit.verify.tlogproof import TlogProof

__all__ = ["build_bundle", "build_tlog_proof"]


def build_bundle(
    log: Log,
    book: AnchorBook,
    record_id: str,
    *,
    include_record: bool = True,
    since_size: int | None = None,
    withheld: str | None = None,
) -> dict[str, Any]:
    """Return the proof bundle (JSON object) of record ``record_id``.

    The bundle proves the record against the newest confirmed or final anchored checkpoint
    that contains it (:meth:`AnchorBook.covering`, final preferred). ``include_record=False``
    leaves the record out (privacy): the bundle then proves only that the leaf hash is in the
    log. ``withheld`` (a reason, e.g. :data:`chainaudit.service.masking.WITHHELD_REASON`) leaves the
    record out too and says why in the bundle's ``withheld`` field (only when the record is
    there to withhold). A record whose content was erased is left out in any case, and the
    bundle then carries its erasure record with that record's own inclusion proof (the
    checkpoint is then one that covers the erasure record too). The log's signed
    checkpoint note of the bundle's size is included when one was stored (the anchoring
    service signs the size it anchors). With ``since_size``, the
    bundle also carries the RFC 9162 §2.1.4.1 consistency proof from the log's root at that
    size to the bundle's checkpoint (which is then one at or past ``since_size``).

    Raises:
        NotFoundError: no record has that id.
        ProofPendingError: no anchored checkpoint covers the record (or ``since_size``, or
            the erasure record of an erased record) yet; the proof can be fetched again after
            the next anchor.
        InputError: ``since_size`` is not between 1 and the log's size.
        StoreError: the log does not reproduce the anchored root, or a record does not hash
            to its stored leaf (run ``chainaudit audit``).
    """
    entry = log.entry(record_id)
    log.refresh()
    needed = entry.index
    if since_size is not None:
        if isinstance(since_size, bool) or not 0 < since_size <= log.size:
            raise InputError(
                f"--since {since_size}: the size must be between 1 and the log's size {log.size}"
            )
        needed = max(needed, since_size - 1)
    erased = None
    if entry.body is None:
        from chainaudit.service.erasure import erasure_of  # noqa: PLC0415 - erasure imports settings

        erased = erasure_of(log, entry.index)
        if erased is not None:
            needed = max(needed, erased[0].index)
    anchor = book.covering(needed)
    if anchor is None:
        if erased is not None and book.covering(entry.index) is not None:
            # the record is anchored, its erasure record not yet: name the one to wait for
            raise ProofPendingError(erased[0].record_id, erased[0].index)
        raise ProofPendingError(record_id, entry.index)
    if (
        anchor.seq is None
        or anchor.tx_hash is None
        or anchor.block_number is None
        or anchor.block_hash is None
    ):
        raise StoreError(f"anchor {anchor.id} is {anchor.status} but lacks its on-chain position")
    size = anchor.tree_size
    root = log.root_at(size)
    if root != anchor.root:
        raise StoreError(
            f"the log's root at size {size} is {root.hex()}, but anchor {anchor.id} holds "
            f"{anchor.root.hex()}: the log was rewritten (run `chainaudit audit`)"
        )
    record: dict[str, Any] | None = None
    if withheld is not None and (not withheld or len(withheld) > MAX_WITHHELD_CHARS):
        raise InputError(f"withheld must be a reason of 1-{MAX_WITHHELD_CHARS} characters")
    if withheld is not None and entry.body is None:
        withheld = None  # erased: there is nothing to withhold
    if include_record and withheld is None and entry.body is not None:
        record = json.loads(entry.body)
        try:
            if merkle.hash_leaf(canonicalize(record)) != entry.leaf_hash:
                raise StoreError(
                    f"record {record_id} no longer hashes to its leaf (run `chainaudit audit`)"
                )
        except RecordError as exc:
            raise StoreError(f"record {record_id} is not canonical JSON: {exc}") from exc
    consistency = None
    if since_size is not None:
        consistency = Consistency(
            from_tree_size=since_size,
            from_root=log.root_at(since_size),
            proof=tuple(log.consistency_proof(since_size, size)),
        )
    bundle = Bundle(
        record=record,
        leaf_hash=entry.leaf_hash,
        leaf_index=entry.index,
        tree_size=size,
        inclusion_proof=tuple(log.inclusion_proof(entry.index, size)),
        checkpoint=Checkpoint(tree_size=size, root=anchor.root),
        anchor=Anchor(
            chain_id=anchor.chain_id,
            contract=Web3.to_checksum_address(anchor.contract),
            tx_hash=anchor.tx_hash,
            block_number=anchor.block_number,
            block_hash=anchor.block_hash,
            checkpoint_seq=anchor.seq,
            status="final" if anchor.status == FINAL else "confirmed",
        ),
        consistency=consistency,
        withheld=withheld,
        erasure=None if erased is None else _erasure_section(log, erased[0], size),
        checkpoint_note=log.signed_checkpoint(size),
    )
    return bundle.to_json()


def _erasure_section(log: Log, entry: Entry, size: int) -> Erasure:
    """The ``erasure`` section: the erasure record ``entry`` and its proof at ``size``."""
    assert entry.body is not None
    return Erasure(
        record=json.loads(entry.body),
        leaf_hash=entry.leaf_hash,
        leaf_index=entry.index,
        inclusion_proof=tuple(log.inclusion_proof(entry.index, size)),
    )


def build_tlog_proof(log: Log, record_id: str, *, size: int | None = None) -> TlogProof:
    """The tlog-proof of ``record_id`` against the log's signed checkpoint of ``size``
    (default: the latest one the log keeps), with the record's leaf data as ``extra``.

    Raises:
        NotFoundError: no such record.
        InputError: the log keeps no signed checkpoint (of that size).
        ProofPendingError: the record is newer than the checkpoint.
        StoreError: the signed checkpoint's root is not the log's root at its size.
    """
    entry = log.entry(record_id)
    text = log.signed_checkpoint(size)
    if text is None:
        which = "any" if size is None else f"a signed checkpoint of size {size}"
        raise InputError(
            f"the log keeps no signed checkpoint ({which}): a tlog-proof needs the log's "
            "signed checkpoint; sign one first"
        )
    try:
        checkpoint = note.Checkpoint.parse(note.Note.parse(text).text)
    except NoteError as exc:
        raise StoreError(f"the stored signed checkpoint is malformed: {exc}") from exc
    if entry.index >= checkpoint.size:
        raise ProofPendingError(record_id, entry.index)
    root, proof = log.inclusion_proof_with_root(entry.index, checkpoint.size)
    if root != checkpoint.root:
        raise StoreError(
            f"the signed checkpoint of size {checkpoint.size} has root "
            f"0x{checkpoint.root.hex()}, the log has 0x{root.hex()} at that size"
        )
    return TlogProof(entry.index, tuple(proof), text, entry.body)
