"""Opening the log the settings name, for the command line: light to import (the command's
start-up time), with a one-line error naming where it looked."""

from __future__ import annotations

from chainaudit.app.settings import Settings
from chainaudit.core.errors import InputError
from chainaudit.log.store import Log

__all__ = ["open_log"]


def open_log(settings: Settings, *, create: bool = False) -> Log:
    """The log the settings name: in the data directory, or in PostgreSQL with
    ``database_url``. Only commands that write records pass ``create``: a command that reads
    refuses a directory with no log rather than leave an empty one there (which a later
    ``audit`` would call clean). Raises :class:`~chainaudit.core.errors.InputError` naming
    where it looked."""
    from chainaudit.log.store import DB_NAME  # noqa: PLC0415

    url = settings.log_database_url
    if not create and not Log.exists(settings.data_dir, database_url=url):
        if url is not None:
            raise InputError(
                "no log in the database CHAINAUDIT_DATABASE_URL names (it has no log tables): "
                "start one with `chainaudit ingest FILE`"
            )
        raise InputError(
            f"no log at {settings.data_dir.resolve()} (no {DB_NAME} there): give the data "
            "directory with --data-dir DIR or CHAINAUDIT_DATA_DIR (the default is ./.data of "
            "the current folder), or start a log with `chainaudit ingest FILE`"
        )
    from chainaudit.app.privacy import at_rest_from  # noqa: PLC0415

    return Log.open(
        settings.data_dir,
        kinds=settings.record_kinds,
        at_rest=at_rest_from(settings),
        database_url=url,
    )
