"""A transparency log witness: ``c2sp.org/tlog-witness`` over HTTP, ``cosignature/v1``.

``POST /add-checkpoint`` takes an ``old <size>`` line, up to 63 base64 consistency proof
lines, an empty line and a signed ``c2sp.org/tlog-checkpoint``. The witness answers, in the
order the spec lists the checks:

* 400 a malformed body (not UTF-8, a bad old line or proof line, not a signed checkpoint) or
  an old size larger than the checkpoint's size;
* 404 an origin the witness does not follow;
* 403 no signature of a key it trusts for the origin verifies;
* 409 the old size is not the size it last cosigned for the origin (body: that size and a
  newline, ``Content-Type: text/x.tlog.size``), or the same size with another root hash;
* 422 the consistency proof (RFC 9162 §2.1.4, ``c2sp.org/merkle-tree``) from its recorded
  checkpoint to the new one does not verify (the request is logged: it may prove a split
  view), or a checkpoint of size 0 has another root than the empty tree's;
* 200 otherwise, once the new checkpoint is durably recorded
  (:meth:`~chainaudit.service.witness_state.WitnessState.compare_and_swap`): the body is the
  witness's ``cosignature/v1`` line (``c2sp.org/tlog-cosignature``), timestamped now.

A body larger than :data:`MAX_BODY_BYTES` gets 413. The configuration file (see
:func:`load_config` and ``docs/witness.md``) names the witness key file and the logs it
follows.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from chainaudit.core import merkle, note
from chainaudit.core.errors import (
    ConfigError,
    NoteError,
    VerificationError,
    WitnessError,
)
from chainaudit.service.serving import ServedThread, serve_bound
from chainaudit.service.witness_state import Recorded, WitnessState

__all__ = [
    "SIZE_CONTENT_TYPE",
    "Answer",
    "Witness",
    "WitnessConfig",
    "WitnessThread",
    "encode_request",
    "load_config",
    "read_key_file",
    "serve",
    "write_key_file",
]

log = logging.getLogger("chainaudit.service.witness")

MAX_BODY_BYTES = 256 * 1024
"""The largest ``add-checkpoint`` body accepted (a checkpoint with 100 signature lines and 63
proof lines is far smaller)."""
MAX_PROOF_LINES = 63
SIZE_CONTENT_TYPE = "text/x.tlog.size"
COSIGNATURE_CONTENT_TYPE = "text/plain; charset=utf-8"
"""The spec fixes only the 200 body (signature lines), not its type: clients must not rely
on it."""
_OLD_LINE = re.compile(r"old (0|[1-9][0-9]{0,19})")


@dataclass(frozen=True)
class WitnessConfig:
    """A witness's identity and the logs it follows: origin -> trusted log keys."""

    signer: note.Signer
    logs: dict[str, tuple[note.Verifier, ...]]

    @property
    def verifier(self) -> note.Verifier:
        return self.signer.verifier()


@dataclass(frozen=True)
class Answer:
    """An ``add-checkpoint`` response: status, content type, body."""

    status: int
    content_type: str
    body: str


def read_key_file(path: Path | str) -> note.Signer:
    """Read a witness signer key written by :func:`write_key_file`.

    Raises:
        ConfigError: unreadable, readable by others than its owner, or not a
            ``cosignature/v1`` signer key.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the witness key {path}: {exc}") from exc
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"the witness key {path} is readable by others: chmod 600 it")
    try:
        signer = note.Signer.parse(text)
    except NoteError as exc:
        raise ConfigError(f"the witness key {path}: {exc}") from exc
    if signer.sig_type != note.COSIGNATURE_V1:
        raise ConfigError(f"the witness key {path} is not a cosignature/v1 (0x04) key")
    return signer


def write_key_file(name: str, path: Path | str) -> note.Signer:
    """Generate a ``cosignature/v1`` key named ``name`` and write it to a new file, mode 0600.

    Raises:
        ConfigError: the file exists or cannot be written; a bad key name.
    """
    try:
        signer = note.Signer.generate(name, note.COSIGNATURE_V1)
    except NoteError as exc:
        raise ConfigError(str(exc)) from exc
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise ConfigError(f"{path} exists: the witness key is never overwritten") from exc
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(signer.encode() + "\n")
        out.flush()
        os.fsync(out.fileno())
    return signer


def parse_config(text: str, base: Path) -> WitnessConfig:
    """Parse a witness configuration::

        # comments and blank lines are ignored
        key witness.key        # the signer key file (relative to the config file)
        log <vkey>             # a followed log; the vkey's name is its origin (type 0x01)

    Several ``log`` lines may name the same origin (key rotation): any of them is trusted.

    Raises:
        ConfigError: a malformed line, no key line or several, no log.
    """
    key: note.Signer | None = None
    logs: dict[str, tuple[note.Verifier, ...]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        items = line.split()
        if not items or items[0].startswith("#"):
            continue
        where = f"line {number}"
        if items[0] == "key" and len(items) == 2:
            if key is not None:
                raise ConfigError(f"{where}: a witness has one key line")
            key = read_key_file(base / items[1])
        elif items[0] == "log" and len(items) == 2:
            try:
                verifier = note.Verifier.parse(items[1])
            except NoteError as exc:
                raise ConfigError(f"{where}: {exc}") from exc
            if verifier.sig_type != note.ED25519:
                raise ConfigError(f"{where}: a log key has signature type 0x01")
            logs[verifier.name] = (*logs.get(verifier.name, ()), verifier)
        else:
            raise ConfigError(f"{where}: expected `key <file>` or `log <vkey>`")
    if key is None:
        raise ConfigError("the witness configuration has no `key <file>` line")
    if not logs:
        raise ConfigError("the witness configuration follows no log (`log <vkey>` lines)")
    return WitnessConfig(key, logs)


def load_config(path: Path | str) -> WitnessConfig:
    """Read :func:`parse_config` from a file (key paths are relative to its directory).

    Raises:
        ConfigError: unreadable or malformed (the message names the file).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the witness configuration {path}: {exc}") from exc
    try:
        return parse_config(text, path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


@dataclass(frozen=True)
class Submission:
    """A parsed ``add-checkpoint`` body."""

    old_size: int
    proof: list[bytes]
    signed: note.Note
    checkpoint: note.Checkpoint


def parse_request(body: bytes) -> Submission:
    """Parse an ``add-checkpoint`` body (tlog-witness, "add-checkpoint").

    Raises:
        WitnessError: not UTF-8, a bad old size line, a proof line that is not base64 of a
            32-byte hash, more than 63 proof lines, no empty line, or not a signed checkpoint.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WitnessError("the body is not UTF-8") from exc
    head, sep, message = text.partition("\n\n")
    if not sep:
        raise WitnessError("the body has no empty line before the checkpoint")
    lines = head.split("\n")
    match = _OLD_LINE.fullmatch(lines[0])
    if not match:
        raise WitnessError("the first line is `old <size>`, a decimal without leading zeros")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise WitnessError(f"at most {MAX_PROOF_LINES} consistency proof lines")
    proof: list[bytes] = []
    for i, line in enumerate(lines[1:], start=1):
        try:
            digest = base64.b64decode(line, validate=True)
        except binascii.Error as exc:
            raise WitnessError(f"proof line {i} is not base64") from exc
        if len(digest) != merkle.HASH_SIZE:
            raise WitnessError(f"proof line {i} is not a {merkle.HASH_SIZE}-byte hash")
        proof.append(digest)
    try:
        signed = note.Note.parse(message)
        checkpoint = note.Checkpoint.parse(signed.text)
    except NoteError as exc:
        raise WitnessError(f"not a signed checkpoint: {exc}") from exc
    return Submission(int(match.group(1)), proof, signed, checkpoint)


def encode_request(old_size: int, proof: list[bytes], signed: note.Note) -> bytes:
    """The ``add-checkpoint`` body for a checkpoint note, an old size and its proof."""
    lines = [f"old {old_size}", *(base64.b64encode(h).decode() for h in proof)]
    return ("\n".join(lines) + "\n\n" + signed.encode()).encode()


class Witness:
    """The witness's logic, independent of HTTP: :meth:`add_checkpoint` answers a body."""

    def __init__(
        self, config: WitnessConfig, state: WitnessState, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.state = state
        self._clock = clock

    def add_checkpoint(self, body: bytes) -> Answer:
        """Check a submitted checkpoint and cosign it, or refuse it (see the module doc)."""
        try:
            request = parse_request(body)
        except WitnessError as exc:
            return _text(400, f"{exc}\n")
        checkpoint = request.checkpoint
        origin = checkpoint.origin
        trusted = self.config.logs.get(origin)
        if trusted is None:
            return _text(404, "unknown log origin\n")
        try:
            signed_by = request.signed.verified_by(list(trusted))
        except NoteError:
            signed_by = {}
        if not signed_by:
            return _text(403, "no signature of a trusted key for this origin verifies\n")
        if request.old_size > checkpoint.size:
            return _text(400, "the old size is larger than the checkpoint's size\n")
        if checkpoint.size == 0 and checkpoint.root != merkle.EMPTY_ROOT:
            return _text(422, "the root of an empty tree is SHA-256 of the empty string\n")
        recorded = self.state.get(origin)
        size = recorded.size if recorded else 0
        if request.old_size != size:
            return _size_conflict(size)
        new = Recorded(checkpoint.size, checkpoint.root, request.signed.encode())
        if recorded is not None and checkpoint.size == recorded.size:
            if checkpoint.root != recorded.root:
                log.warning(
                    "log %s: two checkpoints of size %d with different roots (split view?)",
                    origin,
                    size,
                )
                return _size_conflict(size)
            if request.proof:
                return _text(422, "a consistency proof between equal sizes must be empty\n")
        elif recorded is None or recorded.size == 0:
            if request.proof:
                return _text(422, "a consistency proof from size 0 must be empty\n")
        else:
            try:
                merkle.verify_consistency(
                    recorded.size, checkpoint.size, request.proof, recorded.root, checkpoint.root
                )
            except VerificationError as exc:
                log.warning(
                    "log %s: no valid consistency proof from %d to %d (%s); possible split "
                    "view, checkpoint refused:\n%s",
                    origin,
                    recorded.size,
                    checkpoint.size,
                    exc,
                    request.signed.encode(),
                )
                return _text(422, f"the consistency proof does not verify: {exc}\n")
        if not self.state.compare_and_swap(origin, recorded, new):
            latest = self.state.get(origin)
            return _size_conflict(latest.size if latest else 0)
        stamp = int(self._clock())
        cosignature = self.config.signer.sign(request.signed.text, timestamp=stamp)
        return Answer(200, COSIGNATURE_CONTENT_TYPE, cosignature.line())


def _text(status: int, body: str) -> Answer:
    return Answer(status, "text/plain; charset=utf-8", body)


def _size_conflict(size: int) -> Answer:
    return Answer(409, SIZE_CONTENT_TYPE, f"{size}\n")


def create_app(witness: Witness) -> Starlette:
    """The witness as an ASGI app: ``POST /add-checkpoint`` only."""

    async def add_checkpoint(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
            return PlainTextResponse("the body is too large\n", status_code=413)
        chunks: list[bytes] = []
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > MAX_BODY_BYTES:
                return PlainTextResponse("the body is too large\n", status_code=413)
            chunks.append(chunk)
        # The state is SQLite (fsync on commit): run it off the event loop.
        from starlette.concurrency import run_in_threadpool  # noqa: PLC0415

        answer = await run_in_threadpool(witness.add_checkpoint, b"".join(chunks))
        # The content type exactly as the spec writes it (Starlette would add a charset).
        return Response(
            answer.body.encode(),
            status_code=answer.status,
            headers={"Content-Type": answer.content_type},
        )

    return Starlette(routes=[Route("/add-checkpoint", add_checkpoint, methods=["POST"])])


def _uvicorn_config(witness: Witness, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(witness), host=host, port=port, log_level="warning", access_log=False
    )


def serve(
    witness: Witness,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    on_started: Callable[[str], None] | None = None,
) -> None:
    """Serve the witness until interrupted; ``on_started`` gets the URL once it accepts.

    Raises:
        InputError: the socket cannot be bound.
    """
    serve_bound(
        host, port, lambda bound: _uvicorn_config(witness, host, bound), on_started=on_started
    )


class WitnessThread(ServedThread):
    """A witness served by uvicorn in a background thread (tests); a context manager."""

    def __init__(self, witness: Witness, port: int, *, host: str = "127.0.0.1") -> None:
        super().__init__(
            _uvicorn_config(witness, host, port), f"http://{host}:{port}", what="witness"
        )
        self.witness = witness
