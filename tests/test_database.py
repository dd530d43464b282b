"""The storage boundary (chainaudit/log/database.py) on both engines: one SQL dialect, writers
serialised, a failed statement never committed."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chainaudit.core.records import prepare
from chainaudit.log import database
from chainaudit.log.store import Log

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BLOB NOT NULL, n INTEGER) WITHOUT ROWID;
"""


@pytest.fixture
def db(tmp_path: Path, log_database: str | None) -> Iterator[database.Database]:
    opened = database.connect(log_database or tmp_path / "test.sqlite")
    opened.executescript(database.adapt_schema(SCHEMA, opened.engine))
    yield opened
    opened.close()


def test_placeholders_are_translated_outside_quotes_only() -> None:
    assert database.to_pyformat("SELECT ? WHERE a = '?' AND b LIKE 'x%'") == (
        "SELECT %s WHERE a = '?' AND b LIKE 'x%%'"
    )
    assert database.to_pyformat('SELECT "we?ird", 5 % ?') == 'SELECT "we?ird", 5 %% %s'
    assert database.to_pyformat("SELECT 'it''s ?', ?") == "SELECT 'it''s ?', %s"
    with pytest.raises(ValueError, match="unterminated"):
        database.to_pyformat("SELECT 'open")


def test_schema_text_is_adapted_for_postgresql() -> None:
    adapted = database.adapt_schema(SCHEMA, "postgresql")
    assert "BYTEA" in adapted and "BIGINT" in adapted and "ROWID" not in adapted
    assert 'k TEXT COLLATE "C" PRIMARY KEY' in adapted
    assert database.adapt_schema(SCHEMA, "sqlite") == SCHEMA
    with pytest.raises(ValueError, match="PRAGMA"):
        database.adapt_schema("PRAGMA journal_mode=WAL;", "postgresql")


def test_one_dialect_on_both_engines(db: database.Database) -> None:
    upsert = "INSERT INTO kv VALUES (?, ?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v"
    db.executemany(upsert, [("a?", b"\x00\x01", 1), ("b%", b"", 2), ("c", b"z", 3)])
    db.execute(upsert, ("a?", b"\xff", 9))
    db.execute("INSERT INTO kv VALUES (?, ?, ?) ON CONFLICT DO NOTHING", ("c", b"no", 0))
    rows = db.execute("SELECT k, v, n FROM kv WHERE k LIKE '%?%' OR k = ?", ("b%",)).fetchall()
    assert sorted(rows) == [("a?", b"\xff", 1), ("b%", b"", 2)]
    chosen = db.execute(
        "SELECT k FROM kv WHERE " + db.in_list("k") + " ORDER BY k",
        (db.list_param(["c", "a?", "zz"]),),
    ).fetchall()
    assert chosen == [("a?",), ("c",)]
    assert db.has_table("kv") and not db.has_table("nope")
    with pytest.raises(database.IntegrityError):
        db.execute("INSERT INTO kv VALUES (?, ?, ?)", ("c", b"", 0))
    # byte order, as SQLite compares text, whatever the server's locale
    db.executemany("INSERT INTO kv VALUES (?, ?, 0)", [("B", b""), ("a", b""), ("_", b"")])
    assert [k for (k,) in db.execute("SELECT k FROM kv ORDER BY k")] == [
        "B",
        "_",
        "a",
        "a?",
        "b%",
        "c",
    ]


def test_a_failed_write_commits_nothing(db: database.Database) -> None:
    with pytest.raises(RuntimeError), db.write():
        db.execute("INSERT INTO kv VALUES ('x', ?, 1)", (b"\x00",))
        raise RuntimeError("crash")
    assert db.execute("SELECT count(*) FROM kv").fetchone()[0] == 0
    assert not db.in_transaction


def test_a_statement_that_failed_inside_a_write_is_not_committed_silently(
    database_url: str,
) -> None:
    """PostgreSQL aborts the whole transaction on an error (a COMMIT would roll it back and
    report success): the boundary says so instead."""
    db = database.connect(database_url)
    try:
        db.executescript(database.adapt_schema(SCHEMA, db.engine))
        db.execute("INSERT INTO kv VALUES ('k', ?, 1)", (b"",))
        with pytest.raises(database.DatabaseError, match="rolled back"), db.write():
            db.execute("INSERT INTO kv VALUES ('new', ?, 1)", (b"",))
            with pytest.raises(database.IntegrityError):
                db.execute("INSERT INTO kv VALUES ('k', ?, 1)", (b"",))
        assert db.execute("SELECT count(*) FROM kv").fetchone()[0] == 1
    finally:
        db.close()


def test_writers_are_serialised(db: database.Database, log_database: str | None) -> None:
    """A second writer waits for the first to commit, then reads what it wrote."""
    other = database.connect(log_database or db.location)
    order: list[str] = []
    try:
        db.begin_write()
        db.execute("INSERT INTO kv VALUES ('first', ?, 1)", (b"",))

        def second() -> None:
            with other.write():
                seen = other.execute("SELECT count(*) FROM kv").fetchone()[0]
                order.append(f"second saw {seen}")

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        order.append("first commits")
        db.commit()
        thread.join(timeout=30)
    finally:
        other.close()
    assert order == ["first commits", "second saw 1"]


def test_a_bulk_append_of_new_ids_takes_the_set_based_path(
    tmp_path: Path, log_database: str | None
) -> None:
    """New ids are indexed with one statement (JSON on both engines), no fallback."""
    records = [
        prepare(
            {
                "id": f"r-{i}",
                "kind": "transaction",
                "timestamp": "2026-11-21T09:30:00Z",
                "actor": "a:b",
                "payload": {"i": i},
            }
        )
        for i in range(300)
    ]
    with Log.open(tmp_path, database_url=log_database) as log:
        statements: list[str] = []
        log._db.trace = statements.append
        log.append(records)
        assert not any("ROLLBACK TO" in s for s in statements)
        assert sum("INSERT INTO record_ids" in s for s in statements) == 1
        statements.clear()
        assert log.append(records[:10]).duplicates == 10  # re-submitted: the careful path
        # new ids first, then one indexed already: what the set-based try added is taken back
        more = [prepare({**json.loads(r.body), "id": f"n-{i}"}) for i, r in enumerate(records[:5])]
        statements.clear()
        result = log.append([*more, records[7]])
        assert any("ROLLBACK TO" in s or "DELETE FROM record_ids" in s for s in statements)
        assert (result.appended, result.duplicates, result.indexes) == (
            5,
            1,
            (300, 301, 302, 303, 304, 7),
        )
        assert log.size == 305 and log.audit().clean
        assert [log.entry(f"n-{i}").index for i in range(5)] == list(range(300, 305))


def test_a_named_writer_waits_for_its_own_name_only(tmp_path: Path, database_url: str) -> None:
    """On PostgreSQL ``write_as(name)`` is serialised with the other writers of that name, not
    with the log's writer (a log append stores its data keys while it holds that lock)."""
    schema = "CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB NOT NULL, n INTEGER NOT NULL);"
    holder, other = database.connect(database_url), database.connect(database_url)
    holder.executescript(database.adapt_schema(schema, holder.engine))
    other.execute("SET lock_timeout = '5s'")  # a wait on the wrong lock fails, never hangs
    order: list[str] = []
    try:
        with holder.write():  # the log's writer lock: a named writer goes straight on
            with other.write_as("data_keys"):
                other.execute("INSERT INTO kv VALUES ('keys', ?, 1)", (b"",))
            order.append("named writer done under the log's lock")
        holder.begin_named("data_keys")

        def second() -> None:
            with other.write_as("data_keys"):
                order.append("second named writer")

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        order.append("first named writer commits")
        holder.commit()
        thread.join(timeout=30)
    finally:
        holder.close()
        other.close()
    assert order == [
        "named writer done under the log's lock",
        "first named writer commits",
        "second named writer",
    ]
    checked = database.connect(database_url)
    with pytest.raises(ValueError, match="lower-case"):
        checked.begin_named("x'; DROP TABLE kv; --")
    checked.close()


def test_tables_and_the_read_only_reader(db: database.Database, tmp_path: Path) -> None:
    db.executescript(
        database.adapt_schema("CREATE TABLE risk_a (k TEXT PRIMARY KEY);", db.engine)
        + database.adapt_schema("CREATE TABLE riskb (k TEXT PRIMARY KEY);", db.engine)
    )
    assert db.tables("risk_") == ["risk_a"]
    assert set(db.tables("")) >= {"kv", "risk_a", "riskb"}
    reader = database.connect_reader(db.location)
    try:
        with reader.read():
            assert reader.has_table("risk_a") and reader.tables("risk_") == ["risk_a"]
        if reader.engine == "sqlite":
            with pytest.raises(database.DatabaseError, match="readonly"):
                reader.execute("INSERT INTO risk_a VALUES ('x')")
    finally:
        reader.close()
    missing = tmp_path / "none.sqlite"
    with pytest.raises(database.DatabaseError):
        database.connect_reader(missing)
    assert not missing.exists()  # a reader never creates the file
