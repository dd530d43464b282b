"""Moving an embedded (SQLite) data directory's state into PostgreSQL: ``chainaudit migrate``.

The log moves through the engine-neutral export (:mod:`chainaudit.service.export`): every leaf is
re-hashed on the way in and the rebuilt tree must reproduce every local checkpoint and every
checkpoint anchored on chain (the same check as ``chainaudit import`` and ``restore``), so a
migration cannot carry a damaged or rewritten log into the new database. The state beside the
log in ``log.sqlite`` (API keys, the anchor book, the indexes and the risk tables that follow
the log from a cursor, the leader lease) is then copied table by table, with the schema each
store declares (:func:`chainaudit.log.database.adapt_schema` of SQLite's own text), in one
PostgreSQL transaction; the cursors stay valid because the leaves keep their indexes.

Nothing is half-written: the target must hold no log, the log's import is one transaction and
the copy of the other tables another, and a refusal in either removes what this migration
wrote (the copied tables are dropped, the data directory's ``log.in-postgresql`` marker is
removed). The SQLite files are left as they were; once the marker exists, opening the data
directory without ``CHAINAUDIT_DATABASE_URL`` is refused, so no command can write to the old
copy by mistake.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from chainaudit.core.errors import ChainauditError, InputError
from chainaudit.log import database
from chainaudit.log.datakeys import AtRest
from chainaudit.log.store import DB_NAME, IN_POSTGRESQL, Log
from chainaudit.service.backup import Anchored
from chainaudit.service.export import ExportSummary, export_log, import_log

__all__ = ["LOG_TABLES", "MigrateError", "Migration", "migrate"]

LOG_TABLES = frozenset(
    {
        "meta",
        "record_ids",
        "bundles",
        "tiles",
        "record_signatures",
        "deal_records",
        "checkpoints",
        "signed_checkpoints",
    }
)
"""The log's own tables (moved by the export, never copied row by row)."""
_BATCH = 5_000


class MigrateError(ChainauditError):
    """The migration was refused; nothing of it stays in the target database."""


@dataclass(frozen=True, slots=True)
class Migration:
    """What :func:`migrate` moved."""

    log: ExportSummary
    tables: dict[str, int]
    """Each table copied beside the log, with its number of rows."""


def migrate(
    data_dir: Path,
    url: str,
    *,
    kinds: frozenset[str],
    at_rest: AtRest | None,
    anchored: Sequence[Anchored] = (),
    allow_behind: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Migration:
    """Move the SQLite state of ``data_dir`` into the PostgreSQL database ``url``.

    Preconditions: ``data_dir`` holds an SQLite log (``log.sqlite``) not already moved; the
    database ``url`` names holds no log. ``anchored`` are the checkpoints read from the chain
    (:func:`chainaudit.service.backup.chain_anchors`); the rebuilt log must reproduce each of them
    (one beyond the log is refused unless ``allow_behind``).

    Raises:
        InputError: ``url`` is not a PostgreSQL URL, or ``data_dir`` has no SQLite log.
        MigrateError: the database already holds a log, a table beside the log exists there
            already, or the log does not reproduce an anchored checkpoint (from
            :class:`~chainaudit.service.export.ExportError`, named as the import names it).
        StoreError: a database cannot be read or written.
    """
    say = progress or (lambda _line: None)
    if not database.is_url(url):
        raise InputError("--to takes the PostgreSQL database as a postgresql:// URL")
    source_path = data_dir / DB_NAME
    if (data_dir / IN_POSTGRESQL).exists():
        raise InputError(f"the log of {data_dir} is already in PostgreSQL ({IN_POSTGRESQL})")
    if not source_path.is_file():
        raise InputError(f"no log at {data_dir.resolve()} (no {DB_NAME} there) to migrate")
    if Log.exists(data_dir, database_url=url):
        raise MigrateError("the target database holds a log already: migrate into an empty one")
    before = _tables(url)
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=".migrate-") as scratch:
        exported = Path(scratch) / "log.jsonl"  # plain-text bodies: the directory is 0700
        with Log(source_path, kinds=kinds, at_rest=at_rest) as source:
            say(f"exporting the SQLite log ({source.size} leaves)")
            with exported.open("w", encoding="utf-8") as out:
                export_log(source, out)
        created_mark = False
        try:
            with Log(source_path, kinds=kinds, at_rest=at_rest, database_url=url) as target:
                created_mark = True
                say("importing it into PostgreSQL: every leaf re-hashed, every checkpoint checked")
                with exported.open(encoding="utf-8") as lines:
                    summary = import_log(
                        target, iter(lines), anchored=anchored, allow_behind=allow_behind
                    )
            say("copying the tables beside the log")
            tables = _copy_tables(source_path, url)
        except BaseException as exc:
            if created_mark:
                _undo(data_dir, url, keep=before)
            if isinstance(exc, ChainauditError) and not isinstance(exc, InputError):
                raise MigrateError(str(exc)) from exc
            raise
    return Migration(log=summary, tables=tables)


def _copy_tables(source_path: Path, url: str) -> dict[str, int]:
    """Copy every table of ``source_path`` but the log's into ``url``, in one transaction."""
    copied: dict[str, int] = {}
    with contextlib.closing(
        sqlite3.connect(f"{source_path.resolve().as_uri()}?mode=ro", uri=True)
    ) as src:
        schema = src.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
            "AND name NOT LIKE 'sqlite_%' ORDER BY type DESC, name"  # tables before indexes
        ).fetchall()
        target = database.connect(url)
        try:
            present = set(target.tables(""))
            with target.write():
                for kind, name, sql in schema:
                    owner = name if kind == "table" else _indexed_table(sql)
                    if owner in LOG_TABLES:
                        continue
                    if kind == "table" and name in present:
                        raise MigrateError(
                            f"table {name} exists in the target database already: migrate into "
                            "an empty one"
                        )
                    target.executescript(database.adapt_schema(_if_not_exists(sql), "postgresql"))
                    if kind != "table":
                        continue
                    rows = src.execute(f'SELECT * FROM "{name}"')  # noqa: S608 - a schema name
                    count = 0
                    while batch := rows.fetchmany(_BATCH):
                        marks = ", ".join("?" * len(batch[0]))
                        target.executemany(f'INSERT INTO "{name}" VALUES ({marks})', batch)  # noqa: S608
                        count += len(batch)
                    copied[name] = count
        finally:
            target.close()
    return copied


def _indexed_table(sql: str) -> str:
    match = re.search(r"\bON\s+\"?(\w+)", sql, re.IGNORECASE)
    return match.group(1) if match else ""


def _if_not_exists(sql: str) -> str:
    return re.sub(
        r"^CREATE\s+(UNIQUE\s+)?(TABLE|INDEX)\s+(?!IF NOT EXISTS)",
        lambda m: f"CREATE {m.group(1) or ''}{m.group(2)} IF NOT EXISTS ",
        sql.strip(),
        count=1,
        flags=re.IGNORECASE,
    )


def _tables(url: str) -> frozenset[str]:
    target = database.connect(url)
    try:
        return frozenset(target.tables(""))
    finally:
        target.close()


def _undo(data_dir: Path, url: str, *, keep: frozenset[str]) -> None:
    """Remove what a refused migration wrote: the tables of the target schema that were not
    there before it (``keep``), and the data directory's marker."""
    target = database.connect(url)
    try:
        with target.write():
            for name in set(target.tables("")) - keep:
                target.execute(f'DROP TABLE IF EXISTS "{name}" CASCADE')
    finally:
        target.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(data_dir / IN_POSTGRESQL)
