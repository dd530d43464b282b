"""A deal's timeline as the service reads it: the record index, caught up with the log."""

from __future__ import annotations

from chainaudit.log.record_index import RecordIndex
from chainaudit.log.store import Entry, Log


def deal_entries(log: Log, deal_id: str) -> list[Entry]:
    """Every record of ``log`` whose payload names ``deal_id``, in log order."""
    with RecordIndex(log.path, database_url=log.database_url) as index:
        index.sync(log)
        return log.entries_at(index.deal_indexes(deal_id))
