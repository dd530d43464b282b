"""The exceptions chainaudit raises.

Every error the package raises on purpose derives from :class:`ChainauditError`, so callers
can catch one type. Subclasses name the part of the system that refused or failed; each
carries a human message, and some carry data (a line number, a check name) as attributes.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = [
    "ChainError",
    "ChainUnavailableError",
    "ChainauditError",
    "ConfigError",
    "ConflictError",
    "DuplicateKeyError",
    "EscrowError",
    "InputError",
    "JsonNestingError",
    "JsonSyntaxError",
    "NotFoundError",
    "NotLeaderError",
    "NoteError",
    "PolicyError",
    "ProofPendingError",
    "RecordError",
    "ReservedError",
    "RiskError",
    "RiskHoldError",
    "StoreError",
    "ToolchainError",
    "VerificationError",
    "WitnessError",
    "WorkersFailedError",
]


class ChainauditError(Exception):
    """Base class of every error raised by chainaudit."""


class VerificationError(ChainauditError):
    """A proof, bundle, checkpoint or anchor did not verify.

    Raised by every verifier for every kind of failure, malformed input included, so that a
    caller needs exactly one ``except`` clause to refuse bad evidence.
    """

    def __init__(self, message: str, *, check: str | None = None) -> None:
        super().__init__(message)
        #: The name of the check that failed (for example ``"inclusion"``), when known.
        self.check = check


class RecordError(ChainauditError):
    """A record is malformed: missing or mistyped fields, floats, oversized values."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line is not None else message)
        #: The 1-based input line the record came from, when it came from a file.
        self.line = line
        self.reason = message

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # Sent whole from a parsing process to the writer (line number and subclass kept).
        return functools.partial(type(self), line=self.line), (self.reason,)


class ConflictError(ChainauditError):
    """A record id was submitted again with different content."""


class ReservedError(RecordError):
    """A client tried to write a record kind or id namespace reserved for the service."""

    def __init__(self, message: str, *, reserved: str, line: int | None = None) -> None:
        super().__init__(message, line=line)
        #: The reserved kind or id prefix the record fell under.
        self.reserved = reserved

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return functools.partial(type(self), reserved=self.reserved, line=self.line), (self.reason,)


class NotFoundError(ChainauditError):
    """A record, checkpoint, anchor or deal does not exist."""


class StoreError(ChainauditError):
    """The record store cannot be opened or is inconsistent with itself."""


class NoteError(VerificationError):
    """A signed note, checkpoint, note key or cosignature is malformed or does not verify."""

    def __init__(self, message: str) -> None:
        super().__init__(message, check="note")


class ConfigError(ChainauditError):
    """Settings are missing, malformed or unsafe."""


class PolicyError(ConfigError):
    """A ``c2sp.org/tlog-policy`` file (logs, witnesses, quorum) is unreadable or malformed."""


class WitnessError(ChainauditError):
    """A witness (``c2sp.org/tlog-witness``) refused, could not be reached, or answered
    something the protocol does not allow; or its configuration or state cannot be used."""


class ToolchainError(ChainauditError):
    """A required tool (solc, anvil, forge, cast) is missing or failed."""


class ChainError(ChainauditError):
    """The chain endpoint failed, timed out, or refused a transaction."""


class ChainUnavailableError(ChainError):
    """The chain endpoint cannot be reached right now; the operation may be retried."""


class InputError(ChainauditError):
    """An input file or argument cannot be used: unreadable, not UTF-8, wrong shape."""


class JsonNestingError(InputError):
    """A JSON input nests arrays and objects deeper than the limit
    (:data:`chainaudit.core.jsonlimits.MAX_JSON_DEPTH`); refused before any parser runs."""

    def __init__(self, message: str, *, depth: int, limit: int) -> None:
        super().__init__(message)
        #: How deeply the input nests (an upper bound for invalid JSON).
        self.depth = depth
        #: The deepest nesting allowed.
        self.limit = limit


class JsonSyntaxError(InputError):
    """A JSON input is not valid JSON; says where (a byte offset, and a line and column)."""

    def __init__(self, message: str, *, offset: int, line: int, column: int) -> None:
        super().__init__(message)
        #: The 0-based byte offset in the UTF-8 input where the parser stopped.
        self.offset = offset
        #: The 1-based line of that byte.
        self.line = line
        #: The 1-based column (in characters) of that byte.
        self.column = column


class DuplicateKeyError(InputError):
    """A JSON object in the input names the same member twice."""

    def __init__(self, message: str, *, key: str, pointer: str) -> None:
        super().__init__(message)
        #: The repeated member name.
        self.key = key
        #: The RFC 6901 JSON pointer of the repeated member (of its second occurrence's object).
        self.pointer = pointer


class ProofPendingError(ChainauditError):
    """A record is in the log but no anchored checkpoint covers it yet.

    Not a failure: the proof bundle can be fetched again once the next anchor is confirmed.
    """

    def __init__(self, record_id: str, leaf_index: int) -> None:
        super().__init__(
            f"proof pending: record {record_id} (leaf {leaf_index}) is not anchored yet; "
            "anchor with `chainaudit anchor` or fetch again later"
        )
        #: The record asked for.
        self.record_id = record_id
        #: Its position in the log.
        self.leaf_index = leaf_index


class EscrowError(ChainError):
    """The escrow contract refused a call: a custom error, ``Error(string)`` or ``Panic``.

    Raised when the refusal shows at gas estimation (nothing was sent) and when a mined
    transaction reverted (``tx_hash`` is then set). ``name`` is the Solidity error name, for
    example ``"SupplyChainEscrowUnauthorized"`` (``"Reverted"`` when the revert carried no
    data, the 4-byte selector in hex when the ABI does not know it); ``arguments`` maps each
    error parameter to its decoded value. (Not ``args``: that is the exception's own tuple.)
    """

    def __init__(
        self,
        name: str,
        arguments: dict[str, object] | None = None,
        *,
        data: bytes = b"",
        tx_hash: str | None = None,
        context: str | None = None,
    ) -> None:
        shown = ", ".join(
            f"{key}={'0x' + value.hex() if isinstance(value, bytes) else repr(value)}"
            for key, value in (arguments or {}).items()
        )
        where = f"{context}: " if context else ""
        mined = f" (transaction {tx_hash})" if tx_hash else ""
        super().__init__(f"{where}{name}({shown}){mined}")
        #: The Solidity error name.
        self.name = name
        #: The decoded error arguments by parameter name.
        self.arguments: dict[str, object] = dict(arguments or {})
        #: The raw revert data (selector and ABI-encoded arguments).
        self.data = data
        #: The reverted transaction, when the refusal happened on chain.
        self.tx_hash = tx_hash


class RiskError(ChainauditError):
    """A risk control refused or could not run: a bad rule file, an unknown alert, an
    invalid alert or incident transition."""


class RiskHoldError(RiskError):
    """The risk gate's outcome for an action was ``hold``: the action was **not** sent.

    ``decision_id`` is the decision record that says why (its inputs, rule-set hash and every
    rule that fired), ``alert_id`` the alert raised for it; ``hold_tx`` is the transaction of
    the on-chain compliance hold placed on the milestone, when one was placed.
    """

    def __init__(
        self,
        message: str,
        *,
        decision_id: str,
        alert_id: str | None,
        hold_tx: str | None = None,
        fired: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        #: The id of the decision record (kind ``decision``) of the refused action.
        self.decision_id = decision_id
        #: The id of the alert raised for the decision.
        self.alert_id = alert_id
        #: The on-chain compliance hold's transaction hash (0x-hex), when a hold was placed.
        self.hold_tx = hold_tx
        #: The ids of the rules that fired.
        self.fired = fired


class NotLeaderError(ChainauditError):
    """Leader-only work (anchoring, the escrow indexer, checkpoint signing) was attempted by
    a process whose leadership term has ended: another process holds a newer fencing token
    (:mod:`chainaudit.service.leader`). Nothing of the attempted write was committed."""


class WorkersFailedError(ChainauditError):
    """``chainaudit serve --workers N`` could not keep its worker processes running: they
    kept exiting before they started serving."""
