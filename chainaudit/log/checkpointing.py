"""Signed checkpoints: the log's tree head as a ``c2sp.org/tlog-checkpoint`` signed note.

:func:`sign_at` is the one function that makes them; ``chainaudit serve``
(:class:`CheckpointSigner`, whenever the log has grown) and the anchoring service (for the
size it anchors, :class:`chainaudit.service.anchoring.Anchorer`) both use it. A checkpoint note is::

    <origin>
    <tree size, decimal>
    <base64 root hash>

    — <origin> <base64(key id || Ed25519 signature)>

(``c2sp.org/tlog-checkpoint`` over ``c2sp.org/signed-note``; the origin is the name of the
log's key, :mod:`chainaudit.app.logkey`). Notes are stored in the log's ``signed_checkpoints``
table by tree size (:meth:`chainaudit.log.store.Log.put_signed_checkpoint`) and served at
``GET /checkpoint``.

Cosigning seam: :func:`sign_at` takes an optional ``cosign`` step, called with the freshly
signed note; it returns the note with witness cosignature lines appended
(``c2sp.org/tlog-cosignature``), which is then stored in place of the plain one. A failing
witness must not stop the log: the step should return the note it could gather.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from chainaudit.core import note
from chainaudit.core.errors import ChainauditError, NoteError, StoreError
from chainaudit.log.store import Log

__all__ = ["CheckpointSigner", "Cosign", "sign_at", "sign_current"]

logger = logging.getLogger(__name__)

Cosign = Callable[[note.Note], note.Note]
"""A cosigning step: the log's signed note in, the note with cosignature lines appended out."""


def sign_at(
    log: Log,
    signer: note.Signer,
    size: int | None = None,
    *,
    cosign: Cosign | None = None,
) -> note.Note:
    """Sign (once) the checkpoint of ``log`` at tree ``size`` (``None``: its current size).

    An existing note of that size signed by ``signer`` over the same root is reused as
    stored (with any cosignatures it gathered); otherwise the checkpoint
    ``(signer.name, size, root_at(size))`` is signed, passed to ``cosign`` if given, and
    stored with :meth:`Log.put_signed_checkpoint`.

    Preconditions: ``signer`` is the log's Ed25519 key, named the origin
    (:func:`chainaudit.app.logkey.log_signer`); ``0 <= size <= log.size`` after a refresh.

    Returns:
        The stored signed note.

    Raises:
        StoreError: ``size`` is beyond the log, or the database refuses the write.
    """
    current = log.refresh()
    if size is None:
        size = current
    if not 0 <= size <= current:
        raise StoreError(f"cannot sign a checkpoint of size {size}: the log has {current} leaves")
    root = log.root_at(size)
    existing = log.signed_checkpoint(size)
    if existing is not None:
        try:
            checkpoint, stored = note.open_checkpoint(existing, signer.verifier())
        except NoteError:
            logger.warning("re-signing checkpoint %d: the stored note is not this key's", size)
        else:
            if checkpoint.size == size and checkpoint.root == root:
                return stored
            raise StoreError(
                f"the signed checkpoint of size {size} holds root {checkpoint.root.hex()}, the "
                f"log gives {root.hex()}: the log was rewritten (run `chainaudit audit`)"
            )
    signed = note.sign_checkpoint(signer, note.Checkpoint(signer.name, size, root))
    log.put_signed_checkpoint(size, signed.encode())
    if cosign is not None:
        cosigned = cosign(signed)
        if cosigned.text != signed.text:
            raise StoreError("the cosigning step changed the checkpoint text")
        if cosigned != signed:
            signed = cosigned
            log.put_signed_checkpoint(size, signed.encode())
    return signed


def sign_current(log: Log, signer: note.Signer, *, cosign: Cosign | None = None) -> note.Note:
    """Sign the checkpoint of the log's current size (:func:`sign_at` with ``size=None``)."""
    return sign_at(log, signer, cosign=cosign)


def latest_signed_size(log: Log) -> int | None:
    """The tree size of the latest stored signed checkpoint, or ``None`` before the first."""
    latest = log.signed_checkpoint()
    if latest is None:
        return None
    try:
        return note.Checkpoint.parse(note.Note.parse(latest).text).size
    except NoteError:
        return None


class CheckpointSigner:
    """Signs a checkpoint whenever ``log`` has grown, at most every ``interval`` seconds.

    :meth:`run` is the loop of ``chainaudit serve``'s checkpoint thread; :meth:`tick` one step
    of it (signs when the log is larger than the latest signed checkpoint; an empty log is
    not signed). Failures are logged and retried at the next tick: the log keeps accepting
    records.
    """

    def __init__(
        self,
        log: Log,
        signer: note.Signer,
        *,
        interval: float = 1.0,
        cosign: Cosign | None = None,
    ) -> None:
        self.log = log
        self.signer = signer
        self.interval = interval
        self.cosign = cosign
        self._signed = latest_signed_size(log) or 0

    def tick(self) -> note.Note | None:
        """Sign the current checkpoint if the log grew since the last one; return it."""
        size = self.log.refresh()
        if size <= self._signed:
            return None
        signed = sign_at(self.log, self.signer, size, cosign=self.cosign)
        self._signed = size
        return signed

    def run(self, stop: threading.Event) -> None:
        """Tick every ``interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                self.tick()
            except ChainauditError:
                logger.exception("checkpoints: signing failed")
            except Exception:  # the service must outlive any single failure; it is logged
                logger.exception("checkpoints: unexpected failure")
            stop.wait(self.interval)

    def close(self) -> None:
        self.log.close()
