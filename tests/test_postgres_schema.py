"""The PostgreSQL schema (core/store/postgres) against SQLite's, on a real PostgreSQL server.

After every migration both schemas are read back from the engines' own catalogues (SQLite's pragmas,
PostgreSQL's pg_catalog) and compared: tables, columns, keys, indexes, triggers. The same rows written
through both show that the triggers do the same. And the runner applies each migration once, however many
processes start together.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlite_utils import Database

from core.store import Store
from core.store.fulltext import index_text
from core.store.migrations import MIGRATIONS as SQLITE_MIGRATIONS
from core.store.postgres import MIGRATIONS, apply
from core.store.postgres.migrate import MIGRATIONS_TABLE, Migrations

ROOT = Path(__file__).resolve().parent.parent
SQLITE_TYPES = {"TEXT": "text", "INTEGER": "bigint", "REAL": "double precision", "BLOB": "bytea"}
PG_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
# PostgreSQL's own full text (m026), as the FTS5 tables are SQLite's own: (table, column) and (table, index).
PG_FULL_TEXT_COLUMN = ("chunks", "search_vector")
PG_FULL_TEXT_INDEX = ("chunks", "chunks_search_vector")


def sqlite_names() -> list[str]:
    return [migration.name for migration in SQLITE_MIGRATIONS.pending(Database(memory=True))]


# -- both schemas, as their catalogues tell them ---------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # PostgreSQL's spelling
    not_null: bool
    default: str | None


@dataclass(frozen=True)
class ForeignKey:
    columns: tuple[str, ...]
    table: str
    references: tuple[str, ...]
    on_delete: str
    on_update: str


@dataclass(frozen=True)
class Index:
    columns: tuple[str, ...]
    unique: bool
    where: str | None


@dataclass
class Table:
    columns: list[Column]
    primary_key: tuple[str, ...]
    foreign_keys: set[ForeignKey]
    indexes: dict[str, Index]
    checks: int  # CHECK constraints (their effect is compared by writing rows)


@dataclass
class Schema:
    tables: dict[str, Table]
    triggers: set[tuple[str, str]]  # (trigger, table)
    rowid: dict[str, tuple[str, str]]  # PostgreSQL's: table -> (identity, generation) of its rowid column


def _predicate(sql: str | None) -> str | None:
    """An index's WHERE, spelt alike: PostgreSQL writes it back in brackets."""
    return None if sql is None else re.sub(r"\s+", " ", sql.replace("(", "").replace(")", "")).strip().lower()


def _default(value: str | None) -> str | None:
    return None if value is None else re.sub(r"::[a-z ]+$", "", value)


def sqlite_schema(conn: sqlite3.Connection) -> Schema:
    """Every table but sqlite-utils' record, SQLite's own and the FTS5 tables (with their shadow tables)."""
    objects = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    virtual = [name for kind, name, _, sql in objects if kind == "table" and sql.startswith("CREATE VIRTUAL")]

    def ported(name: str) -> bool:
        fts = any(name == v or name.startswith(f"{v}_") for v in virtual)
        return not (fts or name.startswith("sqlite_") or name == "_sqlite_migrations")

    tables: dict[str, Table] = {}
    for kind, name, _, table_sql in objects:
        if kind != "table" or not ported(name):
            continue
        info = conn.execute(f"PRAGMA table_info('{name}')").fetchall()
        key = tuple(row[1] for row in sorted((row for row in info if row[5]), key=lambda row: row[5]))
        columns = [Column(n, SQLITE_TYPES[t], bool(nn) or n in key, d) for _, n, t, nn, d, _ in info]
        keys: dict[int, list[Any]] = {}
        for fk_id, _, table, column, reference, on_update, on_delete, _ in conn.execute(
            f"PRAGMA foreign_key_list('{name}')"
        ):
            keys.setdefault(fk_id, []).append((table, column, reference, on_delete, on_update))
        foreign = {
            ForeignKey(tuple(r[1] for r in rows), rows[0][0], tuple(r[2] for r in rows), rows[0][3], rows[0][4])
            for rows in keys.values()
        }
        indexes = {}
        for _, index, unique, origin, partial in conn.execute(f"PRAGMA index_list('{name}')"):
            if origin == "pk":
                continue
            cols = tuple(row[2] for row in conn.execute(f"PRAGMA index_info('{index}')"))
            sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", [index]).fetchone()[0]
            where = sql.split(" WHERE ", 1)[1] if partial else None
            indexes[index] = Index(cols, bool(unique), _predicate(where))
        tables[name] = Table(columns, key, foreign, indexes, len(re.findall(r"\bCHECK\s*\(", table_sql)))
    triggers = {
        (name, table)
        for kind, name, table, sql in objects
        if kind == "trigger" and ported(table) and not any(v in sql for v in virtual)
    }
    return Schema(tables, triggers, {})


def postgres_schema(conn: psycopg.Connection[Any]) -> Schema:
    """Every table of the public schema but the migrations' record; ``rowid`` columns apart; not the full-text
    column and its index (:data:`PG_FULL_TEXT_COLUMN`, :data:`PG_FULL_TEXT_INDEX`)."""
    names = [
        row[0]
        for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> %s", [MIGRATIONS_TABLE]
        )
    ]
    tables: dict[str, Table] = {}
    rowid: dict[str, tuple[str, str]] = {}
    for name in names:
        columns = []
        for column, kind, nullable, default, identity, generation in conn.execute(
            "SELECT column_name, data_type, is_nullable, column_default, is_identity, identity_generation"
            " FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s"
            " ORDER BY ordinal_position",
            [name],
        ):
            if column == "rowid":
                rowid[name] = (f"{kind} identity={identity}", generation)
            elif (name, column) != PG_FULL_TEXT_COLUMN:
                columns.append(Column(column, kind, nullable == "NO", _default(default)))
        key = tuple(
            row[0]
            for row in conn.execute(
                "SELECT a.attname FROM pg_index i, unnest(i.indkey::int2[]) WITH ORDINALITY AS k (attnum, n)"
                " JOIN pg_attribute a ON a.attnum = k.attnum"
                " WHERE i.indrelid = %s::regclass AND a.attrelid = i.indrelid AND i.indisprimary ORDER BY k.n",
                [name],
            )
        )
        foreign = {
            ForeignKey(tuple(cols), table, tuple(refs), PG_ACTIONS[on_delete], PG_ACTIONS[on_update])
            for table, on_delete, on_update, cols, refs in conn.execute(
                "SELECT c.confrelid::regclass::text, c.confdeltype, c.confupdtype,"
                " ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k (attnum, n)"
                "  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.n),"
                " ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY AS k (attnum, n)"
                "  JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum ORDER BY k.n)"
                " FROM pg_constraint c WHERE c.conrelid = %s::regclass AND c.contype = 'f'",
                [name],
            )
        }
        indexes = {
            index: Index(tuple(cols), unique, _predicate(where))
            for index, unique, where, cols in conn.execute(
                "SELECT x.relname, i.indisunique, pg_get_expr(i.indpred, i.indrelid),"
                " ARRAY(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k (attnum, n)"
                "  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.n)"
                " FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid"
                " WHERE i.indrelid = %s::regclass AND NOT i.indisprimary",
                [name],
            )
            if (name, index) != PG_FULL_TEXT_INDEX
        }
        checks = conn.execute(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'c'", [name]
        ).fetchone()
        tables[name] = Table(columns, key, foreign, indexes, checks[0] if checks else 0)
    triggers = {
        (row[0], row[1])
        for row in conn.execute(
            "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal"
        )
    }
    return Schema(tables, triggers, rowid)


def assert_alike(sqlite: Schema, postgres: Schema, after: str) -> None:
    assert sorted(postgres.tables) == sorted(sqlite.tables), after
    for name, expected in sqlite.tables.items():
        got = postgres.tables[name]
        assert got.columns == expected.columns, f"{name} after {after}"
        assert got.primary_key == expected.primary_key, f"{name} after {after}"
        assert got.foreign_keys == expected.foreign_keys, f"{name} after {after}"
        assert got.indexes == expected.indexes, f"{name} after {after}"
        assert got.checks == expected.checks, f"{name} after {after}"
    assert postgres.triggers == sqlite.triggers, after


# -- the schema -----------------------------------------------------------------------------------------------


def test_the_migrations_are_sqlite_s_by_name_and_in_order() -> None:
    """A SQLite migration without its PostgreSQL twin fails here."""
    assert MIGRATIONS.names == sqlite_names()


async def test_after_every_migration_the_schema_is_sqlite_s(tmp_path: Path, postgres_url: str) -> None:
    path = tmp_path / "threadline.db"
    names = sqlite_names()
    with await asyncio.to_thread(psycopg.connect, postgres_url, autocommit=True) as pg:
        for name, stop_before in zip(names, [*names[1:], None], strict=True):
            store = await Store.open(path, stop_before=stop_before)
            await store.close()
            assert await asyncio.to_thread(apply, pg, stop_before) == [name]
            with contextlib.closing(sqlite3.connect(path)) as lite:
                sqlite = sqlite_schema(lite)
            assert_alike(sqlite, await asyncio.to_thread(postgres_schema, pg), name)
    assert sqlite.tables.keys() >= {"messages", "runs", "budget_spent", "images", "run_feedback"}
    assert len(sqlite.triggers) == 5  # messages_public_id, runs_spent_insert/_update, images_after_run/_with_message


def test_postgresql_s_full_text_is_a_generated_tsvector_with_a_gin_index(postgres_url: str) -> None:
    """What the schema comparison leaves out is there, and is what core/store/keywords.py searches."""
    table, column = PG_FULL_TEXT_COLUMN
    with psycopg.connect(postgres_url) as conn:
        apply(conn)
        found = conn.execute(
            "SELECT data_type, is_generated FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name = %s AND column_name = %s",
            [table, column],
        ).fetchone()
        index = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [PG_FULL_TEXT_INDEX[1]]).fetchone()
    assert found == ("tsvector", "ALWAYS")
    assert index is not None
    assert f"USING gin ({column})" in index[0]


def _tables_the_store_orders_by_rowid() -> set[str]:
    """The table of each ``rowid`` in core/store's SQL (the nearest ``FROM`` or ``table=`` before it), bar
    SQLite's own uses: ``lastrowid`` and the FTS5 tables' rowids."""
    found = set()
    for path in (ROOT / "core" / "store").glob("*.py"):
        if path.name == "migrations.py":
            continue
        source = path.read_text()
        for match in re.finditer(r"(?<![\w.])(?:\w+\.)?rowid\b", source):
            line = source[source.rfind("\n", 0, match.start()) : source.find("\n", match.start())]
            if "MATCH" in line or "matched." in line:
                continue
            tables = re.findall(r'\bFROM (\w+)|table="(\w+)"', source[max(0, match.start() - 700) : match.start()])
            found.add("".join(tables[-1]))
    return found


def test_each_table_the_store_orders_by_rowid_has_one(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        apply(conn)
        schema = postgres_schema(conn)
    expected = {"assistants", "api_files", "files", "runs", "run_steps", "approvals", "vector_stores"}
    assert _tables_the_store_orders_by_rowid() == expected
    assert schema.rowid == dict.fromkeys(expected, ("bigint identity=YES", "ALWAYS"))


def test_rows_come_back_in_the_order_written_as_in_sqlite(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        apply(conn)
        for name in ("b", "c", "a"):
            conn.execute(
                "INSERT INTO approvals (id, run_id, status, created_at) VALUES (%s, NULL, 'pending', 1.0)", [name]
            )
        rows = conn.execute("SELECT id FROM approvals ORDER BY created_at, rowid").fetchall()
        assert rows == [("b",), ("c",), ("a",)]
        with pytest.raises(psycopg.errors.GeneratedAlways):
            conn.execute("INSERT INTO approvals (rowid, id) VALUES (7, 'd')")


# -- the runner -----------------------------------------------------------------------------------------------


def test_stop_before_builds_an_older_schema_and_the_rest_follows(postgres_url: str) -> None:
    names = MIGRATIONS.names
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert MIGRATIONS.applied(conn) == []
        assert apply(conn, stop_before="m011_budgets") == names[:10]
        assert MIGRATIONS.applied(conn) == names[:10]
        assert conn.execute("SELECT to_regclass('budget_spent'), to_regclass('runs')").fetchone() == (None, "runs")
        assert "actor" in {c.name for c in postgres_schema(conn).tables["runs"].columns}
        with pytest.raises(ValueError, match="m005_assistants_api"):
            apply(conn, stop_before="m005_assistants_api")
        assert apply(conn) == names[10:]
        assert apply(conn) == []
        assert MIGRATIONS.applied(conn) == names


def test_processes_starting_together_apply_each_migration_once(postgres_url: str) -> None:
    """Four connections (a server process each, as four bots would have) apply at the same moment."""
    appliers = 4
    start = threading.Barrier(appliers)

    def one() -> list[str]:
        with psycopg.connect(postgres_url) as conn:
            start.wait(timeout=30)
            return apply(conn)

    with ThreadPoolExecutor(appliers) as pool:
        results = [future.result() for future in [pool.submit(one) for _ in range(appliers)]]
    assert sorted(name for applied in results for name in applied) == sorted(MIGRATIONS.names)
    with psycopg.connect(postgres_url) as conn:
        assert MIGRATIONS.applied(conn) == MIGRATIONS.names
        counts = conn.execute(f"SELECT count(*), count(DISTINCT name) FROM {MIGRATIONS_TABLE}").fetchone()
    assert counts == (len(MIGRATIONS.names), len(MIGRATIONS.names))


def test_a_failing_migration_leaves_nothing_and_stays_pending(postgres_url: str) -> None:
    migrations = Migrations("trial")

    @migrations()
    def m001_good(conn: psycopg.Connection[Any]) -> None:
        conn.execute("CREATE TABLE good (x bigint)")

    @migrations()
    def m002_bad(conn: psycopg.Connection[Any]) -> None:
        conn.execute("CREATE TABLE half (x bigint)")
        conn.execute("SELECT no_such_function()")

    with psycopg.connect(postgres_url) as conn:
        with pytest.raises(psycopg.errors.UndefinedFunction):
            migrations.apply(conn)
        assert migrations.applied(conn) == ["m001_good"]
        assert conn.execute("SELECT to_regclass('good'), to_regclass('half')").fetchone() == ("good", None)
        conn.rollback()
        conn.execute("SELECT 1")  # a transaction open on the connection: migrating would commit inside it
        with pytest.raises(ValueError, match="transaction"):
            migrations.apply(conn)
    with pytest.raises(ValueError, match="already registered"):
        migrations()(m001_good)


# -- triggers: the same rows through both ---------------------------------------------------------------------

DAY = 1_773_532_800  # 2026-03-15 00:00 UTC
MONTH = 1_772_323_200  # 2026-03-01
FEBRUARY = 1_769_904_000  # 2026-02-01
FEB_28 = 1_772_236_800  # 2026-02-28

MESSAGE = "INSERT INTO messages (thread_id, channel, role, item, tokens, public_id) VALUES (?, ?, 'user', '{}', ?, ?)"
IMAGE = "INSERT INTO images (id, message_id, name, mime, data, saved_tokens) VALUES (?, ?, 'x.png', 'image/png', ?, ?)"
RUN = (
    "INSERT INTO runs (id, thread_id, channel, model, status, trigger_message_id, created_at, input_tokens,"
    " output_tokens, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
ACTOR = '{"key": "slack:U1", "roles": []}'
VOTE = "INSERT INTO run_feedback (run_id, voter, vote, voted_at) VALUES (?, 'slack:U1', 'up', 1.0)"

SCENARIO: list[tuple[str, Sequence[Any]]] = [
    ("INSERT INTO channels (key, platform, scope) VALUES (?, 'slack', NULL)", ["slack:T1:C1"]),
    ("INSERT INTO channels (key, platform, scope) VALUES (?, 'slack', ?)", ["slack:T1:C1:1700.1", "slack:T1:C1"]),
    ("INSERT INTO channels (key, platform) VALUES (?, 'discord')", ["discord:G:X"]),
    ("INSERT INTO threads (id, channel) VALUES ('thr_a', 'slack:T1:C1'), ('thr_b', 'slack:T1:C1:1700.1')", []),
    ("INSERT INTO threads (id, channel) VALUES ('thr_c', 'discord:G:X')", []),
    (MESSAGE, ["thr_b", "slack:T1:C1:1700.1", 1000, None]),  # 1: two images, 500 tokens saved
    (MESSAGE, ["thr_a", "slack:T1:C1", 10, None]),  # 2: deleted with its image
    (MESSAGE, ["thr_c", "discord:G:X", None, None]),  # 3: no count: none after
    (MESSAGE, ["thr_a", "slack:T1:C1", 50, "msg_given"]),  # 4: saves more than it counts: 0 after
    (IMAGE, ["img_1", 1, b"\x89PNG", 300]),
    (IMAGE, ["img_2", 1, b"\x89PNG", 200]),
    (IMAGE, ["img_3", 3, b"\x89PNG", 100]),
    (IMAGE, ["img_4", 4, b"\x89PNG", 80]),
    (IMAGE, ["img_5", 2, b"\x89PNG", 10]),
    (RUN, ["run_1", "thr_b", "slack:T1:C1:1700.1", "gpt-x", "in_progress", 1, DAY + 3600.25, 100, 20, ACTOR]),
    (RUN, ["run_2", "thr_c", "discord:G:X", None, "queued", 3, FEB_28 + 86_399.5, None, None, None]),
    (RUN, ["run_3", "thr_a", "slack:T1:C1", "gpt-x", "in_progress", 4, DAY + 60, 5, 5, '{"key": ""}']),
    ("UPDATE runs SET input_tokens = 150, output_tokens = 30 WHERE id = 'run_1'", []),
    ("UPDATE runs SET input_tokens = 150 WHERE id = 'run_1'", []),  # no change: nothing added
    ("UPDATE runs SET input_tokens = 40, output_tokens = 2, status = 'in_progress' WHERE id = 'run_2'", []),
    ("UPDATE runs SET status = 'completed' WHERE id = 'run_1'", []),
    ("UPDATE runs SET status = 'failed' WHERE id = 'run_2'", []),
    ("UPDATE runs SET status = 'completed' WHERE id = 'run_3'", []),
    ("UPDATE runs SET status = 'cancelled' WHERE id = 'run_3'", []),  # ended already
    ("DELETE FROM messages WHERE id = 2", []),
    (VOTE, ["run_3"]),
    ("INSERT INTO budget_holds (run_id, input_tokens, output_tokens, updated_at) VALUES ('run_3', 1, 1, 1.0)", []),
    (VOTE, ["run_2"]),
    ("DELETE FROM runs WHERE id = 'run_2'", []),  # its vote goes with it
]

READ_BACK = [
    "SELECT scope, subject, period, period_start, model, input_tokens, output_tokens FROM budget_spent"
    " ORDER BY scope, subject, period, model",
    "SELECT id, tokens, public_id FROM messages ORDER BY id",
    "SELECT id, message_id FROM images ORDER BY id",
    "SELECT run_id, voter, vote FROM run_feedback ORDER BY run_id",
    "SELECT run_id FROM budget_holds",
]


def _public(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Messages' public ids are random: their form is what is alike."""
    return [(*row[:-1], "msg_<24 hex>" if re.fullmatch(r"msg_[0-9a-f]{24}", row[-1]) else row[-1]) for row in rows]


async def test_the_triggers_do_on_postgresql_what_they_do_on_sqlite(tmp_path: Path, postgres_url: str) -> None:
    store = await Store.open(tmp_path / "threadline.db")
    await store.close()

    def through_both() -> tuple[list[list[Any]], list[list[Any]]]:
        lite = sqlite3.connect(tmp_path / "threadline.db", isolation_level=None)
        lite.execute("PRAGMA foreign_keys=ON")
        with contextlib.closing(lite), psycopg.connect(postgres_url, autocommit=True) as pg:
            apply(pg)
            for sql, params in SCENARIO:
                lite.execute(sql, params)
                pg.execute(sql.replace("?", "%s"), params)
            bad_vote = "INSERT INTO run_feedback (run_id, voter, vote, voted_at) VALUES ('run_3', 'x', 'sideways', 1)"
            with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
                lite.execute(bad_vote)
            with pytest.raises(psycopg.errors.CheckViolation):
                pg.execute(bad_vote)
            return [lite.execute(sql).fetchall() for sql in READ_BACK], [
                pg.execute(sql).fetchall() for sql in READ_BACK
            ]

    on_sqlite, on_postgres = await asyncio.to_thread(through_both)
    on_sqlite[1], on_postgres[1] = _public(on_sqlite[1]), _public(on_postgres[1])
    assert on_postgres == on_sqlite
    spent, messages, images, feedback, holds = on_postgres
    assert spent == [
        ("channel", "discord:G:X", "day", FEB_28, "unknown model", 40, 2),
        ("channel", "discord:G:X", "month", FEBRUARY, "unknown model", 40, 2),
        ("channel", "slack:T1:C1", "day", DAY, "gpt-x", 155, 35),  # a conversation spends its scope's budget
        ("channel", "slack:T1:C1", "month", MONTH, "gpt-x", 155, 35),
        ("user", "slack:U1", "day", DAY, "gpt-x", 150, 30),
        ("user", "slack:U1", "month", MONTH, "gpt-x", 150, 30),
    ]
    assert messages == [(1, 500, "msg_<24 hex>"), (3, None, "msg_<24 hex>"), (4, 0, "msg_given")]
    assert images == []
    assert feedback == [("run_3", "slack:U1", "up")]
    assert holds == [("run_3",)]


# -- data steps: an older schema with rows, migrated on ------------------------------------------------------

FILE = "INSERT INTO files (id, channel, platform_file_id, status, sha256) VALUES (?, 'slack:T1:C1', ?, ?, ?)"

UPGRADE: list[tuple[str, list[tuple[str, Sequence[Any]]]]] = [
    # rows written at the schema just before each named migration, which then changes them
    (
        "m005_assistants_api",  # gives the message a public id
        [
            ("INSERT INTO channels (key, platform) VALUES ('slack:T1:C1', 'slack')", []),
            ("INSERT INTO threads (id, channel) VALUES ('thr_a', 'slack:T1:C1')", []),
            ("INSERT INTO messages (thread_id, channel, role, item) VALUES ('thr_a', 'slack:T1:C1', 'user', '{}')", []),
        ],
    ),
    (
        "m011_budgets",  # counts what these runs spent
        [
            (RUN, ["run_1", "thr_a", "slack:T1:C1", "gpt-x", "completed", 1, DAY + 5.5, 10, 2, ACTOR]),
            (RUN, ["run_2", "thr_a", "slack:T1:C1", None, "completed", 1, DAY + 7, 3, 1, None]),
            (RUN, ["run_3", "thr_a", "slack:T1:C1", "gpt-x", "completed", 1, FEB_28, 4, 4, ACTOR]),
        ],
    ),
    (
        "m015_one_file_per_platform_upload",  # keeps the newest completed upload of F1, with its bytes only
        [
            *[
                (FILE, [file_id, upload, status, sha])
                for file_id, upload, status, sha in (
                    ("file_1", "F1", "failed", "s1"),
                    ("file_2", "F1", "completed", "s2"),
                    ("file_3", "F1", "completed", "s3"),
                    ("file_4", "F1", "in_progress", "s3"),
                    ("file_5", "F2", "failed", "s5"),
                )
            ],
            *[("INSERT INTO file_contents (sha256, data) VALUES (?, ?)", [sha, b"x"]) for sha in ("s1", "s2", "s3")],
            ("INSERT INTO chunks (id, file_id, channel, text) VALUES (1, 'file_2', 'slack:T1:C1', 'old')", []),
            (
                "INSERT INTO embeddings (chunk_id, channel, model, dim, vector) VALUES (1, 'slack:T1:C1', 'e', 1, ?)",
                [b"v"],
            ),
        ],
    ),
    (
        "m025_multilingual_search",  # fills in what full text reads of each chunk
        [
            *[
                ("INSERT INTO chunks (id, file_id, channel, text) VALUES (?, 'file_3', 'slack:T1:C1', ?)", [i, text])
                for i, text in ((2, "東京の売上は増加"), (3, "The report and the figures of the year"), (4, None))
            ],
        ],
    ),
]

UPGRADE_READ_BACK = [
    "SELECT id, public_id FROM messages ORDER BY id",
    "SELECT scope, subject, period, period_start, model, input_tokens, output_tokens FROM budget_spent"
    " ORDER BY scope, subject, period, period_start, model",
    "SELECT id, status FROM files ORDER BY id",
    "SELECT sha256 FROM file_contents ORDER BY sha256",
    "SELECT id, file_id, search_text, stemming FROM chunks ORDER BY id",
    "SELECT chunk_id FROM embeddings",
]


async def test_data_steps_change_older_rows_as_sqlite_s_do(tmp_path: Path, postgres_url: str) -> None:
    path = tmp_path / "threadline.db"
    with await asyncio.to_thread(psycopg.connect, postgres_url, autocommit=True) as pg:

        def write(statements: list[tuple[str, Sequence[Any]]]) -> None:
            with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as lite:
                lite.execute("PRAGMA foreign_keys=ON")
                for sql, params in statements:
                    lite.execute(sql, params)
                    pg.execute(sql.replace("?", "%s"), params)

        for stop_before, statements in [*UPGRADE, (None, [])]:
            store = await Store.open(path, stop_before=stop_before)
            await store.close()
            await asyncio.to_thread(apply, pg, stop_before)
            await asyncio.to_thread(write, statements)

        def read() -> tuple[list[Any], list[Any]]:
            with contextlib.closing(sqlite3.connect(path)) as lite:
                return [lite.execute(q).fetchall() for q in UPGRADE_READ_BACK], [
                    pg.execute(q).fetchall() for q in UPGRADE_READ_BACK
                ]

        on_sqlite, on_postgres = await asyncio.to_thread(read)
    on_sqlite[0], on_postgres[0] = _public(on_sqlite[0]), _public(on_postgres[0])
    assert on_postgres == on_sqlite
    messages, spent, files, contents, chunks, embeddings = on_postgres
    assert messages == [(1, "msg_<24 hex>")]
    assert spent == [
        ("channel", "slack:T1:C1", "day", FEB_28, "gpt-x", 4, 4),
        ("channel", "slack:T1:C1", "day", DAY, "gpt-x", 10, 2),
        ("channel", "slack:T1:C1", "day", DAY, "unknown model", 3, 1),
        ("channel", "slack:T1:C1", "month", FEBRUARY, "gpt-x", 4, 4),
        ("channel", "slack:T1:C1", "month", MONTH, "gpt-x", 10, 2),
        ("channel", "slack:T1:C1", "month", MONTH, "unknown model", 3, 1),
        ("user", "slack:U1", "day", FEB_28, "gpt-x", 4, 4),
        ("user", "slack:U1", "day", DAY, "gpt-x", 10, 2),
        ("user", "slack:U1", "month", FEBRUARY, "gpt-x", 4, 4),
        ("user", "slack:U1", "month", MONTH, "gpt-x", 10, 2),
    ]
    assert files == [("file_3", "completed"), ("file_5", "failed")]
    assert contents == [("s3",)]
    assert chunks == [
        (2, "file_3", index_text("東京の売上は増加"), None),  # bigrams of each run, spaced
        (3, "file_3", None, "english"),
        (4, "file_3", None, "english"),
    ]
    assert embeddings == []
