"""The PostgreSQL connection the store's modules will run on (core/store/postgres/connection.py), against a real
server: the store's own helpers (insert_row, immediate, atomic) and its statement forms behave as on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from core.store.postgres.connection import PgDatabase, to_psycopg
from core.store.sql import SqlDatabase, insert_row
from core.store.store import Store, immediate
from core.store.vectors import VectorReader
from tests.postgres_server import PostgresServer


@pytest.mark.parametrize(
    ("sqlite", "psycopg"),
    [
        ("SELECT * FROM t WHERE a = ? AND b = ?", "SELECT * FROM t WHERE a = %s AND b = %s"),
        ("SELECT '?' || ? FROM t", "SELECT '?' || %s FROM t"),  # a quoted ? is text
        ('SELECT "odd?name" FROM t WHERE x = ?', 'SELECT "odd?name" FROM t WHERE x = %s'),
        ("SELECT * FROM t WHERE name LIKE '%' || ? || '%'", "SELECT * FROM t WHERE name LIKE '%%' || %s || '%%'"),
        ("SELECT 'it''s' WHERE ? > 1", "SELECT 'it''s' WHERE %s > 1"),  # a doubled quote ends and reopens
    ],
)
def test_statements_get_psycopgs_placeholders(sqlite: str, psycopg: str) -> None:
    assert to_psycopg(sqlite) == psycopg


@pytest.fixture
def db(postgres_url: str) -> Iterator[SqlDatabase]:
    connection = PgDatabase.connect(postgres_url)
    connection.execute("CREATE TABLE items (id text PRIMARY KEY, name text NOT NULL, n bigint NOT NULL DEFAULT 0)")
    yield connection
    connection.close()


def names(db: SqlDatabase) -> list[tuple[str, str, int]]:
    return [tuple(row) for row in db.execute("SELECT id, name, n FROM items ORDER BY id").fetchall()]


def test_insert_row_inserts_and_with_its_key_replaces(db: SqlDatabase) -> None:
    insert_row(db, "items", {"id": "a", "name": "first", "n": 1})
    insert_row(db, "items", {"id": "a", "name": "again", "n": 2}, replace_on=("id",))
    assert names(db) == [("a", "again", 2)]


def test_on_conflict_do_nothing_counts_no_row_as_sqlite_does(db: SqlDatabase) -> None:
    statement = "INSERT INTO items (id, name) VALUES (?, ?) ON CONFLICT DO NOTHING"
    assert db.execute(statement, ["a", "x"]).rowcount == 1
    assert db.execute(statement, ["a", "y"]).rowcount == 0  # first_delivery and the budget notices rely on it
    assert names(db) == [("a", "x", 0)]


def test_immediate_commits_its_work_and_rolls_it_back_on_an_error(db: SqlDatabase) -> None:
    immediate(db, lambda: db.execute("INSERT INTO items (id, name) VALUES (?, ?)", ["kept", "k"]))
    assert not db.conn.in_transaction

    def failing() -> None:
        db.execute("INSERT INTO items (id, name) VALUES (?, ?)", ["lost", "l"])
        raise RuntimeError("the work failed")

    with pytest.raises(RuntimeError):
        immediate(db, failing)
    assert not db.conn.in_transaction
    assert [row[0] for row in names(db)] == ["kept"]


def inner_part(db: SqlDatabase) -> None:
    with db.atomic():
        db.execute("INSERT INTO items (id, name) VALUES (?, ?)", ["inner", "i"])
        raise ValueError("the inner part fails")


def test_atomic_nests_as_savepoints(db: SqlDatabase) -> None:
    with db.atomic():
        db.execute("INSERT INTO items (id, name) VALUES (?, ?)", ["outer", "o"])
        assert db.conn.in_transaction
        with pytest.raises(ValueError, match="inner"):
            inner_part(db)
    assert [row[0] for row in names(db)] == ["outer"]


def test_executemany_parameters_with_percent_signs_and_quoted_question_marks(db: SqlDatabase) -> None:
    db.conn.executemany("INSERT INTO items (id, name) VALUES (?, ?)", [("a", "50% off?"), ("b", "plain")])
    found = db.execute("SELECT id FROM items WHERE name LIKE '%' || ? || '%' AND name <> '?'", ["off"]).fetchall()
    assert [tuple(row) for row in found] == [("a",)]


def test_a_new_rows_id_comes_from_returning(db: SqlDatabase) -> None:
    cursor = db.execute("INSERT INTO items (id, name) VALUES (?, ?) RETURNING id", ["r", "x"])
    assert tuple(cursor.fetchone()) == ("r",)


def _cut_off(postgres_server: PostgresServer, url: str) -> int:
    """End every connection to the database at ``url`` from the server's side (a restart, a proxy's timeout)."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(postgres_server.admin_url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        ).fetchall()
    return len(rows)


async def test_a_lost_connection_fails_the_call_that_finds_it_and_is_opened_again_for_the_next(
    tmp_path: Path, postgres_server: PostgresServer, postgres_url: str
) -> None:
    """Whether the call's last statement committed is unknown, so that call fails; the store and the vector
    reader each open their connection again for the next one."""
    store = await Store.open(tmp_path / "cache.db", url=postgres_url)
    reader = VectorReader.for_store(store)
    try:
        assert await reader.pgvector_available() in (True, False)  # the reader's connection is open
        assert _cut_off(postgres_server, postgres_url) >= 2
        with pytest.raises(psycopg.OperationalError):
            await store.current_thread("console:local:lost")
        thread = await store.current_thread("console:local:lost")  # opened again
        assert await store.current_thread("console:local:lost") == thread
        with pytest.raises(psycopg.OperationalError):
            await reader.pgvector_available()
        assert await reader.pgvector_available() in (True, False)
    finally:
        await reader.close()
        await store.close()
