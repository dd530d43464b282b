"""Integrity alarms for squatted ids: a service record whose id is already taken is written
anyway, under a fresh derived id, beside an alarm record naming both.

The service derives some record ids deterministically (escrow events
``escrow:<chain>:<tx>:<log>:<bh12>``, deal actions ``action-<action>-<tx hash>``), so an id can
be taken before the service writes it: by direct database access, or by an older version that
let clients write those namespaces. Refusing the service's record would stop the writer for
good (the indexer would fail every tick on the same event). Instead, for every record whose id
the log holds with other content, :func:`divert_conflicts` returns

* the record relabelled ``<id>:conflict:<n>`` (the first ``n >= 1`` whose id is free, or holds
  this very record already: re-running after a crash writes nothing twice), byte for byte the
  same record otherwise (salt and submitter kept); and
* an alarm record (kind ``admin``, id ``integrity:conflict:<32 hex>``, payload ``type``
  ``integrity-alarm``, ``alarm`` ``id-conflict``) naming the squatted id, the leaf hash and
  index of the record found there and its stamped submitter, the leaf hash the service's
  record would have had, and the id and leaf hash it was written under.

Both are stamped with the writing service's submitter (:mod:`chainaudit.core.provenance`), which is
entitled to the ``integrity:`` namespace. :func:`append_diverting` appends records this way
(the API's deal actions); the indexer does the same through its outbox. :func:`count_alarms`
counts the alarms in a log (``/metrics``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from chainaudit.core.errors import ConflictError, NotFoundError, RecordError
from chainaudit.core.records import PreparedRecord, prepare, same_content
from chainaudit.log.actions import now_rfc3339
from chainaudit.log.store import Entry, Log

__all__ = [
    "ALARM_PREFIX",
    "API_ACTOR",
    "Diversion",
    "append_diverting",
    "conflict_id",
    "count_alarms",
    "divert_conflicts",
]

logger = logging.getLogger(__name__)

ALARM_PREFIX: Final = "integrity:conflict:"
"""The id prefix of id-conflict alarms (under the reserved ``integrity:`` namespace)."""
ALARM_KIND: Final = "admin"
API_ACTOR: Final = "chainaudit:api"
"""The actor of the alarms the API raises itself."""
MAX_ID: Final = 128
MAX_ATTEMPTS: Final = 1_000
"""Derived ids tried before giving up (each taken one is another squatted id)."""


@dataclass(frozen=True, slots=True)
class Diversion:
    """One record whose id was taken: what to write instead."""

    squatted_id: str
    relabelled: PreparedRecord
    """The service's record under its fresh derived id."""
    alarm: PreparedRecord
    """The integrity alarm record naming both."""


def conflict_id(record_id: str, n: int) -> str:
    """The ``n``-th derived id for ``record_id``: ``<record_id>:conflict:<n>``, cut at the
    front's end to stay within the 128 characters an id may have (so it keeps its prefix)."""
    suffix = f":conflict:{n}"
    return record_id[: MAX_ID - len(suffix)] + suffix


def _stored(log: Log, record_id: str) -> Entry | None:
    try:
        return log.entry(record_id)
    except NotFoundError:
        return None


def _relabel(record: PreparedRecord, record_id: str) -> PreparedRecord:
    document = json.loads(record.body)
    document["id"] = record_id
    return prepare(document)  # the salt and the submitter stay as they are in the body


def _submitter_of(body: bytes | None) -> Any:
    if body is None:
        return None
    try:
        return json.loads(body).get("submitter")
    except (ValueError, AttributeError):
        return None


def divert_conflicts(
    log: Log,
    records: Sequence[PreparedRecord],
    *,
    submitter: str,
    actor: str,
    source: str,
) -> dict[int, Diversion]:
    """The records among ``records`` (by position) whose id ``log`` holds with other content,
    each with its relabelled record and its alarm (see the module); the others are absent.

    ``submitter`` (a ``service:…`` identity) stamps the alarms, ``actor`` is their actor and
    ``source`` names the writer in their payload (``"indexer"``, ``"api.deal-action"``).
    Reads ``log`` only. Raises :class:`~chainaudit.core.errors.RecordError` if no free derived id
    is found within :data:`MAX_ATTEMPTS`.
    """
    diverted: dict[int, Diversion] = {}
    for position, record in enumerate(records):
        found = _stored(log, record.record_id)
        if found is None or found.body is None or same_content(found.body, record):
            continue
        relabelled = None
        for n in range(1, MAX_ATTEMPTS + 1):
            candidate = _relabel(record, conflict_id(record.record_id, n))
            taken = _stored(log, candidate.record_id)
            if taken is None or (taken.body is not None and same_content(taken.body, candidate)):
                relabelled = candidate
                break
        if relabelled is None:
            raise RecordError(
                f"no free id for {record.record_id}: {MAX_ATTEMPTS} derived ids are taken"
            )
        digest = hashlib.sha256(f"{record.record_id}\n{relabelled.record_id}".encode()).hexdigest()
        alarm = prepare(
            {
                "id": ALARM_PREFIX + digest[:32],
                "kind": ALARM_KIND,
                "timestamp": now_rfc3339(),
                "actor": actor,
                "payload": {
                    "type": "integrity-alarm",
                    "alarm": "id-conflict",
                    "source": source,
                    "squatted_id": record.record_id,
                    "squatted_leaf_index": found.index,
                    "squatted_leaf_hash": found.leaf_hash.hex(),
                    "squatted_submitter": _submitter_of(found.body),
                    "expected_leaf_hash": record.leaf_hash.hex(),
                    "written_as": relabelled.record_id,
                    "written_leaf_hash": relabelled.leaf_hash.hex(),
                },
            },
            submitter=submitter,
        )
        diverted[position] = Diversion(record.record_id, relabelled, alarm)
    return diverted


def count_alarms(log: Log) -> int:
    """How many id-conflict alarms ``log`` holds."""
    return log.count_ids(ALARM_PREFIX)


def append_diverting(
    append: Callable[[list[PreparedRecord]], object],
    reader: Callable[[], Log],
    records: Sequence[PreparedRecord],
    *,
    submitter: str,
    actor: str,
    source: str,
) -> list[PreparedRecord]:
    """Append ``records`` with ``append`` (atomic, raising :class:`ConflictError` on a taken
    id); on a conflict, append instead each conflicting record under its derived id followed
    by its alarm (:func:`divert_conflicts` over ``reader()``, a refreshed read view of the
    same log), logging one warning per alarm. Returns what was appended, in order.

    Tries again if the log changes in between (another writer took the derived id); raises
    the last :class:`ConflictError` after three attempts, and whatever ``append`` raises else.
    """
    batch = list(records)
    for attempt in range(3):
        try:
            append(batch)
            return batch
        except ConflictError:
            if attempt == 2:
                raise
            diverted = divert_conflicts(
                reader(), batch, submitter=submitter, actor=actor, source=source
            )
            rewritten: list[PreparedRecord] = []
            for position, record in enumerate(batch):
                diversion = diverted.get(position)
                if diversion is None:
                    rewritten.append(record)
                    continue
                rewritten += [diversion.relabelled, diversion.alarm]
                logger.warning(
                    "%s: integrity alarm: record id %s is taken by other content; "
                    "recorded as %s, alarm %s",
                    source,
                    diversion.squatted_id,
                    diversion.relabelled.record_id,
                    diversion.alarm.record_id,
                )
            batch = rewritten
    raise AssertionError("unreachable")  # pragma: no cover
