"""Proof bundles (version 1): a record's evidence, verifiable without the operator's server.

A bundle is one JSON object (``chainaudit/schemas/proof-bundle-v1.schema.json``, JSON Schema
Draft 2020-12)::

    {
      "version": 1,
      "record": {...},                      # optional: withheld for privacy, or erased
      "leaf_hash": "0x<64 hex>",            # SHA-256(0x00 || RFC 8785 bytes of the record)
      "leaf_index": 11,
      "tree_size": 37,                      # equals checkpoint.tree_size
      "inclusion_proof": ["0x<64 hex>", ...],   # RFC 9162 §2.1.3.1 PATH, leaf side first
      "checkpoint": {"tree_size": 37, "root": "0x<64 hex>"},
      "anchor": {"chain_id": 31337, "contract": "0x<EIP-55 address>", "tx_hash": "0x...",
                 "block_number": 42, "block_hash": "0x...", "checkpoint_seq": 1,
                 "status": "confirmed" | "final"},
      "consistency": {"from_tree_size": 20, "from_root": "0x...", "proof": [...]},  # optional
      "withheld": "personal data: ...",     # optional: why the record is not in the bundle
      "erasure": {"record": {...}, "leaf_hash": "0x...", "leaf_index": 52,   # only when erased
                  "inclusion_proof": [...]}
      "checkpoint_note": "<origin>\\n37\\n<base64 root>\\n\\n— <origin> <base64 sig>\\n"  # optional
    }

* Hashes are written as ``0x`` and 64 hex digits (lowercase when chainaudit writes them; either
  case is read). Sizes, indexes, block numbers and sequence numbers are JSON integers.
* ``record`` is the stored record as a JSON object; its RFC 8785 canonical UTF-8 bytes (salt
  included) are the leaf data (RFC 9162 §2.1.1).
* ``anchor`` says where ``AuditAnchor.checkpoint(checkpoint_seq)`` holds the checkpoint.
  ``status`` is the operator's view when the bundle was made; verifiers do not trust it.
* ``consistency`` (present when asked for with ``since_size``) is the RFC 9162 §2.1.4.1
  PROOF(from_tree_size, D[tree_size]) together with the older root, so an auditor who kept
  an earlier bundle can check that the log only grew since.
* ``withheld`` (optional, never beside ``record``) says why the record was left out, e.g. for
  a reader who may not see its personal fields (:mod:`chainaudit.service.masking`); the bundle then
  proves the leaf hash alone, and verifiers say the record was withheld.
* ``erasure`` (present exactly when the record's content was erased, and then ``record`` is
  absent) is the erasure record (:mod:`chainaudit.service.erasure`: kind ``admin``, id
  ``erasure:<leaf_index>``, submitter ``service:privacy``, its payload naming this leaf index
  and leaf hash) with its own leaf hash, leaf index and inclusion proof in the same
  checkpoint: the bundle proves the leaf *and* that its content was erased, when and on what
  basis.
* ``checkpoint_note`` (present when the log signed the checkpoint of ``tree_size``) is the
  log's signed checkpoint of that size, a ``c2sp.org/tlog-checkpoint`` note
  (``c2sp.org/signed-note``, possibly with witness cosignatures): the log's own statement of
  its size and root, which the chain cannot bind (the anchored size is the anchorer's
  assertion). Verifiers given the log's verifier key check it.

:func:`chainaudit.service.bundling.build_bundle` makes a bundle from the operator's log (this
module is the format alone: the verifier reads bundles without the operator's side);
:func:`parse_bundle`,
:func:`loads_bundle` and :func:`load_bundle` read one back into a typed :class:`Bundle`,
refusing any malformed input with :class:`~chainaudit.core.errors.InputError` (the checks are the
schema's, plus EIP-55 checksums and no duplicate JSON keys). They do not *verify* a bundle:
that is :func:`chainaudit.verify.verifier.verify_bundle`.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal

from web3 import Web3

from chainaudit.core import jsonlimits
from chainaudit.core.errors import InputError

__all__ = [
    "BUNDLE_VERSION",
    "MAX_TREE_SIZE",
    "Anchor",
    "Bundle",
    "Checkpoint",
    "Consistency",
    "Erasure",
    "load_bundle",
    "loads_bundle",
    "parse_bundle",
    "schema",
    "write_bundle",
]

BUNDLE_VERSION: Final = 1
MAX_TREE_SIZE: Final = 2**48 - 1
"""The largest tree size ``AuditAnchor`` can hold (sizes are 48-bit on chain)."""
MAX_SAFE_INTEGER: Final = 2**53 - 1
MAX_INCLUSION_HASHES: Final = 64
MAX_CONSISTENCY_HASHES: Final = 128
MAX_WITHHELD_CHARS: Final = 500
SCHEMA_FILE: Final = "proof-bundle-v1.schema.json"

AnchorStatus = Literal["confirmed", "final"]

_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_SUBMITTER = re.compile(r"(key|local|service):[A-Za-z0-9._@-]{1,64}")
_RECORD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}")
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")
_SALT = re.compile(r"[0-9a-f]{32}")
_RECORD_FIELDS = ("id", "kind", "timestamp", "actor", "payload", "salt", "submitter")
_RECORD_REQUIRED = frozenset(_RECORD_FIELDS) - {"submitter"}
_TOP_FIELDS = frozenset(
    {
        "version",
        "record",
        "leaf_hash",
        "leaf_index",
        "tree_size",
        "inclusion_proof",
        "checkpoint",
        "anchor",
        "consistency",
        "withheld",
        "erasure",
        "checkpoint_note",
    }
)
_TOP_REQUIRED = _TOP_FIELDS - {"record", "consistency", "withheld", "erasure", "checkpoint_note"}
_ERASURE_FIELDS = frozenset({"record", "leaf_hash", "leaf_index", "inclusion_proof"})
MAX_NOTE_CHARS: Final = 65_536
"""The longest ``checkpoint_note`` a bundle may carry (a checkpoint and its cosignatures)."""
_CHECKPOINT_FIELDS = frozenset({"tree_size", "root"})
_ANCHOR_FIELDS = frozenset(
    {"chain_id", "contract", "tx_hash", "block_number", "block_hash", "checkpoint_seq", "status"}
)


# ---------------------------------------------------------------------------------------------
# Typed form
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """A checkpoint of the log: its size and its root MTH(D[tree_size]) (RFC 9162 §2.1.1)."""

    tree_size: int
    root: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Anchor:
    """Where a checkpoint is anchored on chain, as the bundle claims it."""

    chain_id: int
    contract: str
    """The ``AuditAnchor`` address, EIP-55 checksummed."""
    tx_hash: bytes
    block_number: int
    block_hash: bytes
    checkpoint_seq: int
    status: AnchorStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class Consistency:
    """An RFC 9162 §2.1.4.1 consistency proof from an earlier checkpoint to the bundle's."""

    from_tree_size: int
    from_root: bytes
    proof: tuple[bytes, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Erasure:
    """The erasure record of an erased record, with its inclusion proof in the bundle's
    checkpoint."""

    record: dict[str, Any]
    leaf_hash: bytes
    leaf_index: int
    inclusion_proof: tuple[bytes, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Bundle:
    """A parsed proof bundle, version 1. Built by :func:`parse_bundle`; not yet verified."""

    record: dict[str, Any] | None
    leaf_hash: bytes
    leaf_index: int
    tree_size: int
    inclusion_proof: tuple[bytes, ...]
    checkpoint: Checkpoint
    anchor: Anchor
    consistency: Consistency | None = None
    withheld: str | None = None
    """Why the record was left out (then ``record`` is ``None``), e.g. personal data."""
    erasure: Erasure | None = None
    checkpoint_note: str | None = None
    """The log's signed checkpoint note of ``tree_size`` (``c2sp.org/tlog-checkpoint``)."""
    version: int = BUNDLE_VERSION

    @property
    def record_id(self) -> str | None:
        """The record's id, when the bundle carries the record."""
        return None if self.record is None else str(self.record["id"])

    def to_json(self) -> dict[str, Any]:
        """Return the bundle as its JSON object (hashes as lowercase 0x-hex)."""
        document: dict[str, Any] = {"version": self.version}
        if self.record is not None:
            document["record"] = self.record
        document.update(
            {
                "leaf_hash": _hex(self.leaf_hash),
                "leaf_index": self.leaf_index,
                "tree_size": self.tree_size,
                "inclusion_proof": [_hex(h) for h in self.inclusion_proof],
                "checkpoint": {
                    "tree_size": self.checkpoint.tree_size,
                    "root": _hex(self.checkpoint.root),
                },
                "anchor": {
                    "chain_id": self.anchor.chain_id,
                    "contract": self.anchor.contract,
                    "tx_hash": _hex(self.anchor.tx_hash),
                    "block_number": self.anchor.block_number,
                    "block_hash": _hex(self.anchor.block_hash),
                    "checkpoint_seq": self.anchor.checkpoint_seq,
                    "status": self.anchor.status,
                },
            }
        )
        if self.consistency is not None:
            document["consistency"] = {
                "from_tree_size": self.consistency.from_tree_size,
                "from_root": _hex(self.consistency.from_root),
                "proof": [_hex(h) for h in self.consistency.proof],
            }
        if self.withheld is not None:
            document["withheld"] = self.withheld
        if self.erasure is not None:
            document["erasure"] = {
                "record": self.erasure.record,
                "leaf_hash": _hex(self.erasure.leaf_hash),
                "leaf_index": self.erasure.leaf_index,
                "inclusion_proof": [_hex(h) for h in self.erasure.inclusion_proof],
            }
        if self.checkpoint_note is not None:
            document["checkpoint_note"] = self.checkpoint_note
        return document


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


# ---------------------------------------------------------------------------------------------
# Reading and writing
# ---------------------------------------------------------------------------------------------


def schema() -> dict[str, Any]:
    """Return the bundle's JSON Schema (Draft 2020-12) shipped with the package."""
    text = resources.files("chainaudit").joinpath("schemas", SCHEMA_FILE).read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def loads_bundle(text: str | bytes, *, source: str = "bundle") -> Bundle:
    """Parse a bundle from JSON text; see :func:`parse_bundle`.

    Raises :class:`InputError` naming ``source`` for text that is not UTF-8, not JSON, nested
    deeper than :data:`~chainaudit.core.jsonlimits.MAX_JSON_DEPTH` (checked before parsing), holds
    a duplicate object key (which parsers may resolve differently), or is not a bundle.
    """
    value = jsonlimits.loads(text, source=source)
    try:
        return parse_bundle(value)
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from exc


def load_bundle(path: Path | str) -> Bundle:
    """Read and parse the bundle file at ``path``; :class:`InputError` if it cannot be used."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return loads_bundle(data, source=str(path))


def write_bundle(bundle: Mapping[str, Any] | Bundle, path: Path | str) -> None:
    """Write ``bundle`` as indented JSON to ``path`` atomically (a temporary file renamed).

    Raises :class:`InputError` if the file cannot be written.
    """
    document = bundle.to_json() if isinstance(bundle, Bundle) else dict(bundle)
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(
            json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        os.replace(temporary, target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise InputError(f"cannot write {target}: {exc.strerror or exc}") from exc


# -- shape checks (mirroring the JSON Schema) -------------------------------------------------


def _object(value: Any, where: str, fields: frozenset[str], required: frozenset[str]) -> None:
    if type(value) is not dict:
        raise InputError(f"{where} must be a JSON object")
    missing = required - value.keys()
    if missing:
        raise InputError(f"{where}: missing field(s): {', '.join(sorted(missing))}")
    unknown = value.keys() - fields
    if unknown:
        raise InputError(f"{where}: unknown field(s): {', '.join(sorted(unknown))}")


def _integer(value: Any, where: str, low: int, high: int) -> int:
    if type(value) is not int:
        raise InputError(f"{where} must be an integer")
    if not low <= value <= high:
        raise InputError(f"{where} must be between {low} and {high}, not {value}")
    return value


def _hash(value: Any, where: str) -> bytes:
    if type(value) is not str or not _HASH.fullmatch(value):
        raise InputError(f"{where} must be 0x followed by 64 hex digits")
    return bytes.fromhex(value[2:])


def _hashes(value: Any, where: str, limit: int) -> tuple[bytes, ...]:
    if type(value) is not list:
        raise InputError(f"{where} must be a list of hashes")
    if len(value) > limit:
        raise InputError(f"{where} has {len(value)} hashes; at most {limit} are possible")
    return tuple(_hash(item, f"{where}[{i}]") for i, item in enumerate(value))


def _address(value: Any, where: str) -> str:
    if type(value) is not str or not _ADDRESS.fullmatch(value):
        raise InputError(f"{where} must be 0x followed by 40 hex digits")
    checksummed = _checksummed(value)
    digits = value[2:]
    if digits != digits.lower() and digits != digits.upper() and value != checksummed:
        raise InputError(f"{where} {value} has a wrong EIP-55 checksum")
    return checksummed


@functools.lru_cache(maxsize=1024)
def _checksummed(address: str) -> str:
    """EIP-55 form of a well-formed address; cached (bundles mostly name one contract)."""
    return str(Web3.to_checksum_address(address))


def _record(value: Any, where: str = "record") -> dict[str, Any]:
    _object(value, where, frozenset(_RECORD_FIELDS), _RECORD_REQUIRED)
    patterns = {"id": _RECORD_ID, "kind": _KIND, "salt": _SALT, "submitter": _SUBMITTER}
    for name, pattern in patterns.items():
        if name not in value:
            continue  # only the submitter is optional (records written before it existed)
        field = value[name]
        if type(field) is not str or not pattern.fullmatch(field):
            raise InputError(f"{where}.{name} is malformed")
    if type(value["timestamp"]) is not str or not value["timestamp"]:
        raise InputError(f"{where}.timestamp must be a non-empty string")
    actor = value["actor"]
    if type(actor) is not str or not 0 < len(actor) <= 256:
        raise InputError(f"{where}.actor must be a string of 1-256 characters")
    if type(value["payload"]) is not dict:
        raise InputError(f"{where}.payload must be a JSON object")
    return dict(value)


def parse_bundle(value: Any) -> Bundle:
    """Check that ``value`` (parsed JSON) has the shape of a version 1 bundle; return it typed.

    Accepts exactly what ``proof-bundle-v1.schema.json`` accepts, except that integers must
    be JSON integers (not ``1.0``), hashes and addresses must match in full (no trailing
    newline) and a mixed-case address must carry a valid EIP-55 checksum. Nothing is
    verified here: a well-formed bundle can still be false.

    Raises :class:`InputError` naming the first offending field.
    """
    _object(value, "bundle", _TOP_FIELDS, _TOP_REQUIRED)
    version = value["version"]
    if type(version) is not int or version != BUNDLE_VERSION:
        raise InputError(
            f"unsupported bundle version {version!r}; this verifier reads version {BUNDLE_VERSION}"
        )
    record = _record(value["record"]) if "record" in value else None
    withheld = value.get("withheld")
    if "withheld" in value:
        if type(withheld) is not str or not 0 < len(withheld) <= MAX_WITHHELD_CHARS:
            raise InputError(f"withheld must be a reason of 1-{MAX_WITHHELD_CHARS} characters")
        if record is not None:
            raise InputError("a bundle that says its record is withheld must not carry it")
    erasure = None
    if "erasure" in value:
        if record is not None:
            raise InputError("a bundle carries a record or an erasure, not both")
        raw_erasure = value["erasure"]
        _object(raw_erasure, "erasure", _ERASURE_FIELDS, _ERASURE_FIELDS)
        erasure = Erasure(
            record=_record(raw_erasure["record"], "erasure.record"),
            leaf_hash=_hash(raw_erasure["leaf_hash"], "erasure.leaf_hash"),
            leaf_index=_integer(
                raw_erasure["leaf_index"], "erasure.leaf_index", 0, MAX_TREE_SIZE - 1
            ),
            inclusion_proof=_hashes(
                raw_erasure["inclusion_proof"], "erasure.inclusion_proof", MAX_INCLUSION_HASHES
            ),
        )
    checkpoint = value["checkpoint"]
    _object(checkpoint, "checkpoint", _CHECKPOINT_FIELDS, _CHECKPOINT_FIELDS)
    anchor = value["anchor"]
    _object(anchor, "anchor", _ANCHOR_FIELDS, _ANCHOR_FIELDS)
    status = anchor["status"]
    if status not in ("confirmed", "final"):
        raise InputError("anchor.status must be 'confirmed' or 'final'")
    consistency = None
    if "consistency" in value:
        raw = value["consistency"]
        fields = frozenset({"from_tree_size", "from_root", "proof"})
        _object(raw, "consistency", fields, fields)
        consistency = Consistency(
            from_tree_size=_integer(
                raw["from_tree_size"], "consistency.from_tree_size", 1, MAX_TREE_SIZE
            ),
            from_root=_hash(raw["from_root"], "consistency.from_root"),
            proof=_hashes(raw["proof"], "consistency.proof", MAX_CONSISTENCY_HASHES),
        )
    checkpoint_note = value.get("checkpoint_note")
    if "checkpoint_note" in value and (
        type(checkpoint_note) is not str or not 0 < len(checkpoint_note) <= MAX_NOTE_CHARS
    ):
        raise InputError(f"checkpoint_note must be a string of 1-{MAX_NOTE_CHARS} characters")
    return Bundle(
        version=version,
        record=record,
        leaf_hash=_hash(value["leaf_hash"], "leaf_hash"),
        leaf_index=_integer(value["leaf_index"], "leaf_index", 0, MAX_TREE_SIZE - 1),
        tree_size=_integer(value["tree_size"], "tree_size", 1, MAX_TREE_SIZE),
        inclusion_proof=_hashes(value["inclusion_proof"], "inclusion_proof", MAX_INCLUSION_HASHES),
        checkpoint=Checkpoint(
            tree_size=_integer(checkpoint["tree_size"], "checkpoint.tree_size", 1, MAX_TREE_SIZE),
            root=_hash(checkpoint["root"], "checkpoint.root"),
        ),
        anchor=Anchor(
            chain_id=_integer(anchor["chain_id"], "anchor.chain_id", 1, MAX_SAFE_INTEGER),
            contract=_address(anchor["contract"], "anchor.contract"),
            tx_hash=_hash(anchor["tx_hash"], "anchor.tx_hash"),
            block_number=_integer(
                anchor["block_number"], "anchor.block_number", 0, MAX_SAFE_INTEGER
            ),
            block_hash=_hash(anchor["block_hash"], "anchor.block_hash"),
            checkpoint_seq=_integer(
                anchor["checkpoint_seq"], "anchor.checkpoint_seq", 0, MAX_TREE_SIZE - 1
            ),
            status=status,
        ),
        consistency=consistency,
        withheld=withheld,
        erasure=erasure,
        checkpoint_note=checkpoint_note,
    )
