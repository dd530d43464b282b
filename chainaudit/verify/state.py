"""A verifier that remembers: the last checkpoint accepted per log origin, and fork detection.

``chainaudit verify --state FILE`` and ``chainaudit monitor --state FILE`` keep, per origin
(a tlog-checkpoint origin line; for a v1 bundle, ``anchor:<chain id>/<contract>``), the
largest checkpoint ``(size, root)`` they accepted. A new checkpoint of the same origin is
accepted only if it is provably consistent with the remembered one (RFC 9162 §2.1.4.2), as
the clients and witnesses of transparency logs do (c2sp.org/tlog-witness, "add-checkpoint":
a witness never cosigns a checkpoint that does not extend the one it last cosigned):

* the same size: the same root, or it is a fork;
* a larger size: a consistency proof from the remembered size to the new one (carried by the
  evidence, or fetched from the log's read path);
* a smaller size: a consistency proof from the new size to the remembered one (fetched); the
  remembered checkpoint stays.

The file is JSON: ``{"version": 1, "origins": {ORIGIN: {"size": N, "root": "0x..."}}}``, plus
what a monitor keeps (``"anchors"``). It is replaced atomically (a temporary file, fsync,
rename), and only after a checkpoint was accepted.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from chainaudit.core import jsonlimits, merkle
from chainaudit.core.errors import InputError, VerificationError

__all__ = ["ProofSource", "Remembered", "VerifierState", "check_consistent"]

STATE_VERSION: Final = 1
MAX_STATE_BYTES: Final = 16 * 1024 * 1024
_HASH = re.compile(r"0x[0-9a-f]{64}")

ProofSource = Callable[[int, int], Sequence[bytes]]
"""Returns PROOF(size1, D[size2]) (RFC 9162 §2.1.4.1) from somewhere (a log's read path)."""


@dataclass(frozen=True, slots=True)
class Remembered:
    """A checkpoint a verifier accepted."""

    size: int
    root: bytes

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "root": "0x" + self.root.hex()}


@dataclass
class VerifierState:
    """The remembered checkpoints, per origin, of one state file."""

    path: Path | None
    """``None``: kept in memory only (a monitor without ``--state``)."""
    origins: dict[str, Remembered] = field(default_factory=dict)
    anchors: dict[str, int] = field(default_factory=dict)
    """Per ``<chain id>/<contract>``, how many on-chain anchors a monitor checked clean."""

    @classmethod
    def load(cls, path: Path | str) -> VerifierState:
        """Read the state file; a missing file is an empty state.

        Raises:
            InputError: unreadable or malformed.
        """
        path = Path(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls(path)
        except OSError as exc:
            raise InputError(f"cannot read the state file {path}: {exc.strerror}") from exc
        if len(raw) > MAX_STATE_BYTES:
            raise InputError(f"the state file {path} is larger than {MAX_STATE_BYTES} bytes")
        document = jsonlimits.loads(raw, source=f"the state file {path}")
        return cls(path, *_parse(document, path))

    def get(self, origin: str) -> Remembered | None:
        return self.origins.get(origin)

    def save(self) -> None:
        """Replace the file atomically with the current state (nothing without a path)."""
        if self.path is None:
            return
        document = {
            "version": STATE_VERSION,
            "origins": {o: r.to_json() for o, r in sorted(self.origins.items())},
            "anchors": dict(sorted(self.anchors.items())),
        }
        data = json.dumps(document, indent=2).encode() + b"\n"
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise InputError(f"cannot write the state file {self.path}: {exc.strerror}") from exc

    def accept(
        self,
        origin: str,
        size: int,
        root: bytes,
        *,
        given: tuple[int, bytes, Sequence[bytes]] | None = None,
        proofs: ProofSource | None = None,
    ) -> str:
        """Check ``(size, root)`` against the remembered checkpoint of ``origin`` with
        :func:`check_consistent`, then remember the larger of the two and save the file.

        Raises:
            VerificationError: a fork, or no proof of consistency (nothing is saved).
        """
        remembered = self.get(origin)
        detail = check_consistent(remembered, size, root, given=given, proofs=proofs)
        if remembered is None or size > remembered.size:
            self.origins[origin] = Remembered(size, root)
        self.save()
        return detail


def _parse(document: Any, path: Path) -> tuple[dict[str, Remembered], dict[str, int]]:
    bad = InputError(
        f'the state file {path} is not {{"version": 1, "origins": {{ORIGIN: {{"size": N, '
        '"root": "0x<64 hex>"}}}}'
    )
    if not isinstance(document, dict) or document.get("version") != STATE_VERSION:
        raise bad
    origins, anchors = document.get("origins", {}), document.get("anchors", {})
    if not isinstance(origins, dict) or not isinstance(anchors, dict):
        raise bad
    parsed: dict[str, Remembered] = {}
    for origin, value in origins.items():
        if not isinstance(value, dict) or set(value) != {"size", "root"}:
            raise bad
        size, root = value["size"], value["root"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise bad
        if not isinstance(root, str) or not _HASH.fullmatch(root):
            raise bad
        parsed[origin] = Remembered(size, bytes.fromhex(root[2:]))
    for key, count in anchors.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise bad
        anchors[key] = count
    return parsed, anchors


def check_consistent(
    remembered: Remembered | None,
    size: int,
    root: bytes,
    *,
    given: tuple[int, bytes, Sequence[bytes]] | None = None,
    proofs: ProofSource | None = None,
) -> str:
    """Check that the checkpoint ``(size, root)`` and the ``remembered`` one are the same
    history (RFC 9162 §2.1.4.2); return what was proved.

    ``given`` is a consistency proof the evidence carries: ``(from_size, from_root, proof)``
    up to ``size``; it is used when it starts at the remembered checkpoint. ``proofs``
    fetches any other proof needed.

    Raises:
        VerificationError: ``"fork detected: ..."`` when a proof or the roots show two
            histories; ``"not consistent: ..."`` when no proof can be had.
    """
    if remembered is None:
        return f"first checkpoint of this log: size {size} remembered"
    old = remembered
    if size == old.size:
        if root != old.root:
            raise VerificationError(
                f"fork detected: two checkpoints of size {size} with different roots "
                f"(remembered 0x{old.root.hex()}, now 0x{root.hex()})",
                check="state",
            )
        return f"the same checkpoint as remembered (size {size})"
    small, big = (old, Remembered(size, root)) if size > old.size else (Remembered(size, root), old)
    if small.size == 0:
        if small.root != merkle.EMPTY_ROOT:
            raise VerificationError("fork detected: an empty tree with a root", check="state")
        return f"extends the empty tree (size {big.size})"
    proof: Sequence[bytes] | None = None
    source = ""
    if given is not None and size > old.size and given[0] == old.size and given[1] == old.root:
        proof, source = given[2], "the evidence's"
    elif proofs is not None:
        proof, source = proofs(small.size, big.size), "the log's"
    if proof is None:
        raise VerificationError(
            f"not consistent: nothing proves that size {size} and the remembered size "
            f"{old.size} are one history; give the log's read path (--log-url) or evidence "
            f"with a consistency proof from size {old.size}",
            check="state",
        )
    try:
        merkle.verify_consistency(small.size, big.size, proof, small.root, big.root)
    except VerificationError as exc:
        raise VerificationError(
            f"fork detected: the checkpoint of size {size} (root 0x{root.hex()}) is not "
            f"consistent with the remembered size {old.size} (root 0x{old.root.hex()}): {exc}",
            check="state",
        ) from exc
    if size < old.size:
        return (
            f"an older checkpoint (size {size}) of the remembered size {old.size} "
            "(the log's consistency proof, RFC 9162 §2.1.4.2); the remembered one is kept"
        )
    return (
        f"extends the remembered size {old.size} ({source} consistency proof, "
        f"RFC 9162 §2.1.4.2); size {size} remembered"
    )
