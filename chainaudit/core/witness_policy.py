"""Transparency log trust policies (``c2sp.org/tlog-policy``): which logs, which witnesses,
and the quorum of cosignatures that makes a checkpoint valid.

Pure: no I/O beyond :func:`load_policy`. The file is line based; items are separated by
spaces or tabs; ``#`` starts a comment line; blank lines are ignored::

    log <vkey> [<url>]                  # a log key, signature type 0x01; its name is the origin
    witness <name> <vkey> [<url>]       # a witness key, type 0x04 (cosignature/v1); the URL
                                        # is its tlog-witness submission prefix
    group <name> all|any|<k> <name>...  # witnessed when at least k of its n members are
    quorum <name>|none                  # exactly one line: the witness or group required

Following the spec: a group or the quorum may only name witnesses and groups defined on an
earlier line; witnesses and groups share one namespace; ``none`` is predefined (valid as the
quorum only); a member is listed at most once per group; ``1 <= k <= n``; two logs or two
witnesses may not wrap the same Ed25519 key; the only control characters allowed are tab and
newline. This implementation accepts at most :data:`MAX_ITEMS` logs, witnesses and groups each
(the spec recommends supporting at least 32).

Malformed policies raise :class:`~chainaudit.core.errors.PolicyError` naming the line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from chainaudit.core import note
from chainaudit.core.errors import NoteError, PolicyError

__all__ = ["Group", "Policy", "PolicyLog", "PolicyWitness", "load_policy", "parse_policy"]

NONE = "none"
"""The predefined quorum name that requires no cosignature at all."""
MAX_ITEMS = 256
MAX_POLICY_BYTES = 1 << 20
_SPACE = re.compile(r"[ \t]+")
_BAD_OCTETS = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class PolicyLog:
    """A log the policy accepts: its key (whose name is the origin) and an optional URL."""

    verifier: note.Verifier
    url: str | None = None

    @property
    def origin(self) -> str:
        return self.verifier.name


@dataclass(frozen=True)
class PolicyWitness:
    """A witness: its policy-local name, its ``cosignature/v1`` key and optional URL."""

    name: str
    verifier: note.Verifier
    url: str | None = None


@dataclass(frozen=True)
class Group:
    """A group, witnessed when at least ``threshold`` of its ``members`` are."""

    name: str
    threshold: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    """A parsed ``tlog-policy``: logs, witnesses by name, groups by name, the quorum name."""

    logs: tuple[PolicyLog, ...]
    witnesses: Mapping[str, PolicyWitness]
    groups: Mapping[str, Group]
    quorum: str

    def log_verifiers(self) -> list[note.Verifier]:
        """The keys of every listed log."""
        return [log.verifier for log in self.logs]

    def witnessed(self, name: str, cosigners: Iterable[str]) -> bool:
        """Whether the witness or group ``name`` witnessed, given the witnesses (by policy
        name) whose cosignatures verified."""
        signed = frozenset(cosigners)
        if name == NONE:
            return True
        if name in self.witnesses:
            return name in signed
        group = self.groups[name]
        count = sum(1 for member in group.members if self.witnessed(member, signed))
        return count >= group.threshold

    def quorum_met(self, cosigners: Iterable[str]) -> bool:
        """Whether the quorum is met by these witnesses (policy names) having cosigned."""
        return self.witnessed(self.quorum, cosigners)

    def cosigners(self, signed: note.Note) -> dict[str, int]:
        """The witnesses of this policy whose cosignature on ``signed`` verifies: policy name
        -> cosignature timestamp. Signature lines of other keys are ignored (signed-note).

        Raises:
            NoteError: a line that claims a witness key (its name and key id) does not verify.
        """
        found: dict[str, int] = {}
        for witness in self.witnesses.values():
            stamp = signed.verified_by([witness.verifier]).get(witness.verifier.name)
            if stamp is not None:
                found[witness.name] = stamp
        return found

    def check(self, signed: note.Note) -> dict[str, int]:
        """Check a signed checkpoint against the whole policy: signed by a listed log (when
        any is listed) and cosigned by a quorum. Returns the cosigners as :meth:`cosigners`.

        Raises:
            NoteError: no listed log signed it, a bad cosignature line, or no quorum.
        """
        if self.logs:
            verified = signed.verified_by(self.log_verifiers())
            origin = signed.text.split("\n", 1)[0]
            if not any(log.origin == origin and log.origin in verified for log in self.logs):
                raise NoteError(f"no log of the policy signed the checkpoint of {origin}")
        found = self.cosigners(signed)
        if not self.quorum_met(found):
            named = ", ".join(sorted(found)) or "no witness"
            raise NoteError(f"the witness quorum {self.quorum} is not met (cosigned by {named})")
        return found


def parse_policy(source: str | bytes) -> Policy:
    """Parse a ``tlog-policy`` file's contents.

    Raises:
        PolicyError: a malformed line, an unknown or duplicate name, a duplicate key, a bad
            threshold, no or several quorum lines, a forbidden control character.
    """
    raw = source.encode() if isinstance(source, str) else source
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError(f"a policy file is at most {MAX_POLICY_BYTES} bytes")
    bad = _BAD_OCTETS.search(raw)
    if bad:
        at = raw[: bad.start()].count(b"\n") + 1
        raise PolicyError(f"line {at}: control characters other than tab and newline")
    text = raw.decode("utf-8", errors="surrogateescape")  # high octets stay opaque
    logs: list[PolicyLog] = []
    witnesses: dict[str, PolicyWitness] = {}
    groups: dict[str, Group] = {}
    quorum: str | None = None
    keys: set[bytes] = set()
    for number, line in enumerate(text.split("\n"), start=1):
        items = [item for item in _SPACE.split(line.strip(" \t")) if item]
        if not items or items[0].startswith("#"):
            continue
        where = f"line {number}"
        keyword, args = items[0], items[1:]
        if keyword == "log":
            if not 1 <= len(args) <= 2:
                raise PolicyError(f"{where}: expected `log <vkey> [<url>]`")
            verifier = _vkey(args[0], note.ED25519, where)
            _unique_key(verifier, keys, where)
            logs.append(PolicyLog(verifier, args[1] if len(args) > 1 else None))
        elif keyword == "witness":
            if not 2 <= len(args) <= 3:
                raise PolicyError(f"{where}: expected `witness <name> <vkey> [<url>]`")
            name = _new_name(args[0], witnesses, groups, where)
            verifier = _vkey(args[1], note.COSIGNATURE_V1, where)
            _unique_key(verifier, keys, where)
            witnesses[name] = PolicyWitness(name, verifier, args[2] if len(args) > 2 else None)
        elif keyword == "group":
            if len(args) < 3:
                raise PolicyError(f"{where}: expected `group <name> all|any|<k> <name>...`")
            name = _new_name(args[0], witnesses, groups, where)
            members = tuple(args[2:])
            for member in members:
                if member not in witnesses and member not in groups:
                    raise PolicyError(f"{where}: member {member} is not defined above")
            if len(set(members)) != len(members):
                raise PolicyError(f"{where}: a member is listed twice")
            groups[name] = Group(name, _threshold(args[1], len(members), where), members)
        elif keyword == "quorum":
            if len(args) != 1:
                raise PolicyError(f"{where}: expected `quorum <name>`")
            if quorum is not None:
                raise PolicyError(f"{where}: a policy has exactly one quorum line")
            if args[0] != NONE and args[0] not in witnesses and args[0] not in groups:
                raise PolicyError(f"{where}: quorum {args[0]} is not defined above")
            quorum = args[0]
        else:
            raise PolicyError(f"{where}: unknown keyword {keyword[:40]!r}")
        if max(len(logs), len(witnesses), len(groups)) > MAX_ITEMS:
            raise PolicyError(f"{where}: at most {MAX_ITEMS} logs, witnesses and groups each")
    if quorum is None:
        raise PolicyError("the policy has no quorum line")
    return Policy(tuple(logs), witnesses, groups, quorum)


def load_policy(path: Path | str) -> Policy:
    """Read and parse a policy file.

    Raises:
        PolicyError: unreadable or malformed (the message names the file).
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read the policy file {path}: {exc.strerror or exc}") from exc
    try:
        return parse_policy(raw)
    except PolicyError as exc:
        raise PolicyError(f"{path}: {exc}") from exc


def _vkey(text: str, sig_type: int, where: str) -> note.Verifier:
    try:
        verifier = note.Verifier.parse(text)
    except NoteError as exc:
        raise PolicyError(f"{where}: {exc}") from exc
    if verifier.sig_type != sig_type:
        what = "a log key has type 0x01" if sig_type == note.ED25519 else "a witness key 0x04"
        raise PolicyError(f"{where}: {what} (got {verifier.sig_type:#04x})")
    return verifier


def _unique_key(verifier: note.Verifier, keys: set[bytes], where: str) -> None:
    if verifier.public_key in keys:
        raise PolicyError(f"{where}: the key of {verifier.name} is listed twice")
    keys.add(verifier.public_key)


def _new_name(
    name: str, witnesses: Mapping[str, object], groups: Mapping[str, object], where: str
) -> str:
    if name == NONE or name in witnesses or name in groups:
        raise PolicyError(f"{where}: the name {name} is already defined (or reserved)")
    return name


def _threshold(text: str, n: int, where: str) -> int:
    if text == "all":
        return n
    if text == "any":
        return 1
    if not text.isdecimal() or not text.isascii() or len(text) > 4:
        raise PolicyError(f"{where}: the threshold is all, any or a decimal k")
    k = int(text)
    if not 1 <= k <= n:
        raise PolicyError(f"{where}: the threshold {k} is not between 1 and {n}")
    return k
