"""The exceptions chainaudit raises.

Every error the package raises on purpose derives from :class:`ChainauditError`, so callers
can catch one type. Subclasses name the part of the system that refused or failed; each
carries a human message, and some carry data (a line number, a check name) as attributes.
"""

from __future__ import annotations


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


class ConflictError(ChainauditError):
    """A record id was submitted again with different content."""


class NotFoundError(ChainauditError):
    """A record, checkpoint, anchor or deal does not exist."""


class StoreError(ChainauditError):
    """The record store cannot be opened or is inconsistent with itself."""


class ConfigError(ChainauditError):
    """Settings are missing, malformed or unsafe."""


class ToolchainError(ChainauditError):
    """A required tool (solc, anvil, forge, cast) is missing or failed."""


class ChainError(ChainauditError):
    """The chain endpoint failed, timed out, or refused a transaction."""


class ChainUnavailableError(ChainError):
    """The chain endpoint cannot be reached right now; the operation may be retried."""


class InputError(ChainauditError):
    """An input file or argument cannot be used: unreadable, not UTF-8, wrong shape."""


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
