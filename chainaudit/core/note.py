"""C2SP signed notes, checkpoints and cosignatures: the transparency-log ecosystem's formats.

Pure: no I/O. Implements

* ``c2sp.org/signed-note`` v1: a UTF-8 text ending in a newline, a blank line, then one or
  more signature lines ``— <key name> <base64(4-byte key id || signature)>``. Ed25519 keys
  (signature type 0x01) have the key id ``SHA-256(name || 0x0A || 0x01 || public key)[:4]``
  and sign the text (everything before the blank line, final newline included). Verifier keys
  are written ``<name>+<hex key id>+<base64(type || public key)>``; signer keys
  ``PRIVATE+KEY+<name>+<hex key id>+<base64(type || private seed)>``.
* ``c2sp.org/tlog-checkpoint``: the note text is the origin line, the decimal tree size, the
  base64 root hash, then optional extension lines.
* ``c2sp.org/tlog-cosignature`` v1 (signature type 0x04): the signature is an 8-byte
  big-endian POSIX timestamp followed by an Ed25519 signature over
  ``"cosignature/v1\\ntime <timestamp>\\n" || note text``.

Every parser raises :class:`~chainaudit.core.errors.NoteError` with a message naming what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from chainaudit.core.errors import NoteError

__all__ = [
    "COSIGNATURE_V1",
    "ED25519",
    "Checkpoint",
    "Note",
    "Signature",
    "Signer",
    "Verifier",
    "open_checkpoint",
    "sign_checkpoint",
]

ED25519 = 0x01
"""Signature type of a plain Ed25519 note signature (signed-note)."""
COSIGNATURE_V1 = 0x04
"""Signature type of an Ed25519 ``cosignature/v1`` (tlog-cosignature)."""

MAX_NOTE_BYTES = 1 << 20
MAX_SIGNATURES = 100
SIGNATURE_PREFIX = "\u2014 "
_NAME = re.compile(r"[^\s+\u2014]{1,255}")
_ORIGIN = re.compile(r"[^\s][^\x00-\x1f]{0,254}")
_COSIGN_HEADER = "cosignature/v1\ntime {}\n"


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """The 4-byte key id of a note key: ``SHA-256(name || 0x0A || type || public key)[:4]``."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()
    return digest[:4]


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise NoteError(f"key name {name!r}: 1-255 characters, no spaces, '+' or '\u2014'")
    return name


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class Signature:
    """One signature line of a note: who (name, key id) and the signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        """The line as it appears in a note (with its final newline)."""
        blob = base64.b64encode(self.key_id + self.signature).decode()
        return f"{SIGNATURE_PREFIX}{self.name} {blob}\n"


@dataclass(frozen=True)
class Verifier:
    """A public note key: a name, a signature type (0x01 or 0x04) and an Ed25519 key."""

    name: str
    sig_type: int
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.sig_type, self.public_key)

    def encode(self) -> str:
        """The verifier key string ``<name>+<hex key id>+<base64(type || key)>``."""
        blob = base64.b64encode(bytes([self.sig_type]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{blob}"

    @classmethod
    def parse(cls, text: str) -> Verifier:
        """Parse a verifier key string.

        Raises:
            NoteError: not three ``+``-separated parts, an unknown signature type, a key id
                that does not match the key, or a key that is not 32 bytes.
        """
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise NoteError("a verifier key is <name>+<8 hex digits>+<base64 key>")
        name, hex_id, blob = parts
        _check_name(name)
        try:
            raw = base64.b64decode(blob, validate=True)
            wanted = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError) as exc:
            raise NoteError(f"verifier key {name}: bad hex id or base64 key") from exc
        if len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE_V1):
            raise NoteError(f"verifier key {name}: expected type 0x01 or 0x04 and 32 key bytes")
        verifier = cls(name, raw[0], raw[1:])
        if len(wanted) != 4 or verifier.key_id != wanted:
            raise NoteError(f"verifier key {name}: the key id does not match the key")
        return verifier

    def verify(self, text: str, signature: Signature) -> int | None:
        """Check ``signature`` over the note ``text``.

        Returns:
            None for a valid Ed25519 note signature; the timestamp for a valid cosignature.

        Raises:
            NoteError: the signature is not this key's or does not verify.
        """
        if signature.name != self.name or signature.key_id != self.key_id:
            raise NoteError(f"signature of {signature.name} is not by key {self.encode()}")
        key = Ed25519PublicKey.from_public_bytes(self.public_key)
        try:
            if self.sig_type == ED25519:
                if len(signature.signature) != 64:
                    raise NoteError(f"signature of {self.name}: expected 64 bytes")
                key.verify(signature.signature, text.encode())
                return None
            if len(signature.signature) != 72:
                raise NoteError(f"cosignature of {self.name}: expected 8 + 64 bytes")
            timestamp = int.from_bytes(signature.signature[:8], "big")
            if timestamp >= 1 << 63:
                raise NoteError(f"cosignature of {self.name}: timestamp out of range")
            key.verify(signature.signature[8:], cosigned_message(text, timestamp))
            return timestamp
        except InvalidSignature as exc:
            raise NoteError(f"signature of {self.name} does not verify") from exc


def cosigned_message(text: str, timestamp: int) -> bytes:
    """The bytes a ``cosignature/v1`` signs (tlog-cosignature, "Ed25519 signed message")."""
    return (_COSIGN_HEADER.format(timestamp) + text).encode()


@dataclass(frozen=True)
class Signer:
    """A private note key. Keep it secret: :meth:`encode` reveals the seed."""

    name: str
    sig_type: int
    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls, name: str, sig_type: int = ED25519) -> Signer:
        """A fresh key for ``name`` (type 0x01 for a log, 0x04 for a witness)."""
        if sig_type not in (ED25519, COSIGNATURE_V1):
            raise NoteError(f"unsupported signature type {sig_type:#04x}")
        return cls(_check_name(name), sig_type, Ed25519PrivateKey.generate())

    @classmethod
    def parse(cls, text: str) -> Signer:
        """Parse ``PRIVATE+KEY+<name>+<hex id>+<base64(type || seed)>``.

        Raises:
            NoteError: malformed, wrong length, unknown type, or a key id not matching.
        """
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise NoteError("a signer key is PRIVATE+KEY+<name>+<8 hex digits>+<base64 key>")
        name, hex_id, blob = parts[2:]
        _check_name(name)
        try:
            raw = base64.b64decode(blob, validate=True)
            wanted = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError) as exc:
            raise NoteError(f"signer key {name}: bad hex id or base64 key") from exc
        if len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE_V1):
            raise NoteError(f"signer key {name}: expected type 0x01 or 0x04 and a 32-byte seed")
        signer = cls(name, raw[0], Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if signer.verifier().key_id != wanted:
            raise NoteError(f"signer key {name}: the key id does not match the key")
        return signer

    def encode(self) -> str:
        """The signer key string (secret)."""
        seed = self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        blob = base64.b64encode(bytes([self.sig_type]) + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.verifier().key_id.hex()}+{blob}"

    def verifier(self) -> Verifier:
        """The matching public key."""
        return Verifier(self.name, self.sig_type, _raw_public(self.private_key.public_key()))

    def sign(self, text: str, *, timestamp: int | None = None) -> Signature:
        """Sign a note text (type 0x01) or cosign it at ``timestamp`` (type 0x04, required).

        Raises:
            NoteError: the text is not a valid note text, or a cosignature without timestamp.
        """
        check_text(text)
        kid = self.verifier().key_id
        if self.sig_type == ED25519:
            return Signature(self.name, kid, self.private_key.sign(text.encode()))
        if timestamp is None or not 0 <= timestamp < 1 << 63:
            raise NoteError("a cosignature needs a timestamp in 0 .. 2^63-1")
        signed = self.private_key.sign(cosigned_message(text, timestamp))
        return Signature(self.name, kid, timestamp.to_bytes(8, "big") + signed)


def check_text(text: str) -> str:
    """``text`` if it is a valid note text: non-empty, ends in a newline, no other control
    characters than newline, no blank line at its end.

    Raises:
        NoteError: naming what is wrong.
    """
    if not text.endswith("\n") or text.endswith("\n\n") or text == "\n":
        raise NoteError("a note text must end in exactly one newline")
    if any(c < " " and c != "\n" for c in text):
        raise NoteError("a note text may contain no control characters except newline")
    return text


@dataclass(frozen=True)
class Note:
    """A signed note: its text and its signature lines, in order."""

    text: str
    signatures: tuple[Signature, ...]

    def encode(self) -> str:
        """The note as served: text, blank line, signature lines."""
        return self.text + "\n" + "".join(s.line() for s in self.signatures)

    def with_signatures(self, extra: tuple[Signature, ...]) -> Note:
        """The note with ``extra`` signature lines appended (duplicates of a key dropped)."""
        seen = {(s.name, s.key_id) for s in self.signatures}
        added = tuple(s for s in extra if (s.name, s.key_id) not in seen)
        return Note(self.text, self.signatures + added)

    @classmethod
    def parse(cls, message: str | bytes) -> Note:
        """Split a signed note into its text and signature lines.

        Raises:
            NoteError: too large, not UTF-8, no blank line before signatures, a malformed
                signature line, or no signature at all.
        """
        if isinstance(message, bytes):
            if len(message) > MAX_NOTE_BYTES:
                raise NoteError(f"a note is at most {MAX_NOTE_BYTES} bytes")
            try:
                message = message.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise NoteError("a note must be UTF-8") from exc
        if len(message) > MAX_NOTE_BYTES:
            raise NoteError(f"a note is at most {MAX_NOTE_BYTES} bytes")
        split = message.rfind("\n\n")
        if split < 0 or not message.endswith("\n"):
            raise NoteError("a signed note is text, a blank line, then signature lines")
        text, lines = message[: split + 1], message[split + 2 :].splitlines()
        check_text(text)
        if not lines or len(lines) > MAX_SIGNATURES:
            raise NoteError(f"a signed note carries 1-{MAX_SIGNATURES} signature lines")
        return cls(text, tuple(_signature_line(line) for line in lines))

    def verified_by(self, verifiers: list[Verifier]) -> dict[str, int | None]:
        """The names of ``verifiers`` whose signature on this note is valid.

        Lines of unknown keys are ignored (signed-note). Returns name -> cosignature
        timestamp (None for a plain signature).

        Raises:
            NoteError: a line that claims a known key (name and key id) does not verify.
        """
        known = {(v.name, v.key_id): v for v in verifiers}
        good: dict[str, int | None] = {}
        for sig in self.signatures:
            verifier = known.get((sig.name, sig.key_id))
            if verifier is not None:
                good[sig.name] = verifier.verify(self.text, sig)
        return good


def _signature_line(line: str) -> Signature:
    if not line.startswith(SIGNATURE_PREFIX):
        raise NoteError(f"a signature line starts with '\u2014 ': {line[:40]!r}")
    name, _, blob = line[len(SIGNATURE_PREFIX) :].partition(" ")
    _check_name(name)
    try:
        raw = base64.b64decode(blob, validate=True)
    except binascii.Error as exc:
        raise NoteError(f"signature line of {name}: bad base64") from exc
    if len(raw) < 5:
        raise NoteError(f"signature line of {name}: too short")
    return Signature(name, raw[:4], raw[4:])


@dataclass(frozen=True)
class Checkpoint:
    """A ``tlog-checkpoint`` body: origin, tree size, root hash and extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        """The note text of the checkpoint."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return "\n".join([*lines, *self.extensions]) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse a checkpoint note text (not the signatures).

        Raises:
            NoteError: fewer than three lines, a bad origin, a size that is not a canonical
                decimal, or a root that is not base64 of 32 bytes.
        """
        check_text(text)
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError("a checkpoint is an origin, a size and a root hash, one per line")
        origin, size, root = lines[:3]
        if not _ORIGIN.fullmatch(origin):
            raise NoteError(f"checkpoint origin {origin[:60]!r} is not a valid origin line")
        if not size.isdigit() or (size != "0" and size.startswith("0")) or len(size) > 20:
            raise NoteError(f"checkpoint size {size[:30]!r} is not a decimal without zeros")
        try:
            raw = base64.b64decode(root, validate=True)
        except binascii.Error as exc:
            raise NoteError("checkpoint root is not base64") from exc
        if len(raw) != 32:
            raise NoteError("checkpoint root must be 32 bytes")
        if int(size) >= 1 << 64:
            raise NoteError("checkpoint size exceeds 2^64-1")
        if any(not line for line in lines[3:]):
            raise NoteError("checkpoint extension lines may not be empty")
        return cls(origin, int(size), raw, tuple(lines[3:]))


def sign_checkpoint(signer: Signer, checkpoint: Checkpoint) -> Note:
    """The checkpoint as a note signed by the log's key."""
    text = checkpoint.text()
    return Note(text, (signer.sign(text),))


def open_checkpoint(message: str | bytes, log_key: Verifier) -> tuple[Checkpoint, Note]:
    """Parse a signed checkpoint and check the log's signature on it.

    Raises:
        NoteError: malformed, not signed by ``log_key``, or an origin that is not the key's
            name.
    """
    note = Note.parse(message)
    if log_key.name not in note.verified_by([log_key]):
        raise NoteError(f"checkpoint carries no valid signature of {log_key.name}")
    checkpoint = Checkpoint.parse(note.text)
    if checkpoint.origin != log_key.name:
        raise NoteError(f"checkpoint origin {checkpoint.origin} is not the key's {log_key.name}")
    return checkpoint, note
