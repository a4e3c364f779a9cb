"""``python -m bots migrate-to-postgres`` as an operator runs it, against a real PostgreSQL server.

A SQLite database gets real history through the service (chat runs with tool calls, an approval, a rolling
summary, budgets and feedback; over the API an assistant, a thread and its run, a vector store with its file's
chunks and embeddings), is moved by the command, and every table is compared on both sides, row by row. Then
what must be refused is: a target with data, a SQLite file at other migrations, a row PostgreSQL cannot take.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import psycopg
import pytest

from core.budgets import Limit
from core.events import ApprovalRequired, RunCompleted
from core.service import Threadline
from core.store import Store
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, last_user_text, offered_tools, tool_results
from tests.helpers import ALICE, CHANNEL, ask, busy_sqlite, post
from tests.test_entry_points import clean_env, closed_port, run  # noqa: F401 - closed_port: a fixture

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks the retired API deprecated

SUMMARY_MARK = "You keep the running summary"
HANDBOOK = b"# Handbook\n\n## Holidays\nEvery employee has 27 days of paid holiday a year.\n"
PASSWORD = "pa55-w0rd-never-shown"


@pytest.fixture
async def service(open_service: Any) -> Threadline:
    return await open_service(embedding_model="fake-embedding")


def script(request: dict[str, Any]) -> Reply:
    """Summaries, a ticket looked up, a deploy that needs approval, file search over the API; else an echo."""
    if request["messages"][0]["content"].startswith(SUMMARY_MARK):
        return Reply(text="SUMMARY: the team planned the quarter")
    if results := tool_results(request):
        return Reply(text=f"Done: {results[0]['content']}")
    asked = last_user_text(request)
    if "file_search" in offered_tools(request):
        return Reply(tool_calls=(ToolCall("file_search", {"query": "holiday days"}),))
    if "ticket" in asked:
        return Reply(tool_calls=(ToolCall("lookup_ticket", {"ticket_id": 7}),))
    if "deploy" in asked:
        return Reply(tool_calls=(ToolCall("deploy", {"service": "billing"}),))
    return Reply(text=f"echo: {asked}")


async def build_history(service: Threadline, client: openai.AsyncOpenAI, fake_model: FakeOpenAI) -> None:
    fake_model.script = script
    thread = await service.store.current_thread(CHANNEL)
    old = [("user" if n % 2 == 0 else "assistant", f"message {n} on the quarter's plans " * 3) for n in range(400)]
    await service.store.import_messages(
        thread, CHANNEL, [(role, text, {"role": role, "content": text}, 30) for role, text in old]
    )
    assert isinstance((await ask(service, "what did we decide?"))[-1], RunCompleted)  # past the window: a summary
    assert (await service.store.thread_summary(thread))[0] is not None
    looked_up = await ask(service, "what is ticket 7?")
    assert isinstance(looked_up[-1], RunCompleted)
    handle = await post(service, "deploy billing")
    approval = None
    async for event in handle.events():
        if isinstance(event, ApprovalRequired):
            approval = event
            break
    assert approval is not None
    await service.decide(approval.approval_id, approve=True, decided_by="U_BOB")
    assert isinstance(await handle.result(), RunCompleted)
    await service.budgets.set_limit("channel", CHANNEL, "day", Limit(100_000), "slack:U_BOSS")
    await service.feedback.vote(handle.run_id, ALICE, "up")

    upload = await client.files.create(file=("handbook.md", HANDBOOK), purpose="assistants")
    store = await client.vector_stores.create(name="Handbook")
    attached = await client.vector_stores.files.create_and_poll(vector_store_id=store.id, file_id=upload.id)
    assert attached.status == "completed"
    batch = await client.vector_stores.file_batches.create_and_poll(vector_store_id=store.id, file_ids=[upload.id])
    assert batch.status == "completed"
    helper = await client.beta.assistants.create(
        model="fake-model",
        instructions="Answer from the handbook.",
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
    )
    api_thread = await client.beta.threads.create(messages=[{"role": "user", "content": "How many holiday days?"}])
    api_run = await client.beta.threads.runs.create_and_poll(
        thread_id=api_thread.id, assistant_id=helper.id, poll_interval_ms=50
    )
    assert api_run.status == "completed"


def fill_the_rest(path: Path) -> None:
    """A row in each table the history above leaves empty (images live only until their run ends, notices
    only until delivered, ...), values of the kinds SQLite holds anywhere, and a table of the team's own."""
    with sqlite3.connect(path) as db:
        (message,) = db.execute("SELECT min(id) FROM messages").fetchone()
        (run_id,) = db.execute("SELECT id FROM runs ORDER BY rowid LIMIT 1").fetchone()
        statements: list[tuple[str, list[Any]]] = [
            (
                "INSERT INTO images (id, message_id, position, name, mime, bytes, data, saved_tokens, created_at)"
                " VALUES ('img_1', ?, 0, 'a.png', 'image/png', 4, x'89504e47', 80, 1.5)",
                [message],
            ),
            ("INSERT INTO notices (channel, platform, text, created_at) VALUES (?, 'slack', 'hello', 2)", [CHANNEL]),
            (
                "INSERT INTO installations (platform, app, enterprise, workspace, data, installed_at)"
                " VALUES ('slack', 'A1', '', 'T1', '{\"bot_token\": \"xoxb-1\"}', 3)",
                [],
            ),
            (
                "INSERT INTO processes (id, pid, host, started, platforms, created_at, lease_until)"
                " VALUES ('proc_gone', 4242, 'host-1', 'boot-1', '[\"slack\"]', 8, 9)",
                [],
            ),
            ("INSERT INTO install_states (state, expires_at) VALUES ('state-1', 4)", []),
            ("INSERT INTO deliveries (key, expires_at) VALUES ('slack:Ev1', 5)", []),
            (
                "INSERT INTO budget_holds (run_id, input_tokens, output_tokens, updated_at) VALUES (?, 10, 20, 6)",
                [run_id],
            ),
            (
                "INSERT INTO budget_notices (scope, subject, period, period_start, limit_text, created_at)"
                " VALUES ('channel', ?, 'day', 0, '100,000 tokens', 7)",
                [CHANNEL],
            ),
            # SQLite keeps any value in any column: UTF-8 bytes in a text column, text in a binary one
            ("UPDATE messages SET author_name = CAST('bob' AS BLOB) WHERE id = ?", [message]),
            ("INSERT INTO file_contents (sha256, data) VALUES ('sha-of-text', 'plain text, not bytes')", []),
            ("CREATE TABLE team_notes (note TEXT)", []),
            ("INSERT INTO team_notes VALUES ('ours, not Threadline''s')", []),
        ]
        for statement, parameters in statements:
            db.execute(statement, parameters)


# -- both sides, read back --------------------------------------------------------------------------------


def pg_columns(pg: psycopg.Connection[Any], table: str) -> list[tuple[str, str]]:
    """The table's stored columns (not the generated ones, which PostgreSQL derives, e.g. chunks.search_vector)."""
    return pg.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass"
        " AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
        [table],
    ).fetchall()


def moved_tables(pg: psycopg.Connection[Any]) -> list[str]:
    rows = pg.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"
        " AND relname <> '_migrations' ORDER BY relname"
    ).fetchall()
    return [row[0] for row in rows]


def as_pg(value: Any, kind: str) -> Any:
    """A SQLite value as PostgreSQL's column gives it back."""
    if isinstance(value, bytes) and kind == "text":
        return value.decode()
    if isinstance(value, str) and kind == "bytea":
        return value.encode()
    return value


def both_sides(path: Path, url: str) -> dict[str, tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """table -> (SQLite's rows as PostgreSQL would hold them, PostgreSQL's rows): in rowid order where the
    PostgreSQL table has a rowid column, else sorted."""
    found = {}
    with psycopg.connect(url) as pg, sqlite3.connect(path) as lite:
        for table in moved_tables(pg):
            columns = pg_columns(pg, table)
            names = [name for name, _ in columns]
            listed = ", ".join(f'"{name}"' if name != "rowid" else "rowid" for name in names)
            ordered = "rowid" in names
            order = " ORDER BY rowid" if ordered else ""
            theirs = [
                tuple(as_pg(v, kind) for v, (_, kind) in zip(row, columns, strict=True))
                for row in lite.execute(f'SELECT {listed} FROM "{table}"{order}')
            ]
            ours = [tuple(row) for row in pg.execute(f'SELECT {listed} FROM "{table}"{order}').fetchall()]
            if not ordered:
                theirs, ours = sorted(theirs, key=repr), sorted(ours, key=repr)
            found[table] = (theirs, ours)
    return found


def counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as pg:
        return {t: pg.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in moved_tables(pg)}  # type: ignore[index]


async def migrate(tmp_path: Path, url: str, *args: str, db: Path | None = None) -> tuple[int, str, str]:
    extra = {"THREADLINE_DATABASE_URL": url} if url else {}
    if db is not None:
        extra["THREADLINE_DB"] = str(db)
    env = clean_env(tmp_path, **extra)
    if not url:
        env.pop("THREADLINE_DATABASE_URL", None)
    return await run("bots", "migrate-to-postgres", *args, env=env, cwd=tmp_path)


@pytest.fixture
def url_with_password(postgres_url: str) -> str:
    user = postgres_url.split("://", 1)[1].split("@", 1)[0]
    return postgres_url.replace(f"://{user}@", f"://{user}:{PASSWORD}@", 1)


# -- the move ----------------------------------------------------------------------------------------------


async def test_a_database_with_real_history_moves_whole_and_new_rows_never_collide(
    tmp_path: Path,
    service: Threadline,
    client_a: openai.AsyncOpenAI,
    fake_model: FakeOpenAI,
    url_with_password: str,
) -> None:
    await build_history(service, client_a, fake_model)
    await service.close()
    path = service.settings.db_path
    await asyncio.to_thread(fill_the_rest, path)
    with sqlite3.connect(path) as db:  # the newest message deleted: its id is never handed out again (m013)
        (deleted,) = db.execute("SELECT max(id) FROM messages").fetchone()
        db.execute("DELETE FROM images WHERE message_id = ?", [deleted])
        db.execute("DELETE FROM messages WHERE id = ?", [deleted])
        (last_run_rowid,) = db.execute("SELECT max(rowid) FROM runs").fetchone()

    code, out, err = await migrate(tmp_path, url_with_password, str(path))
    assert (code, err) == (0, ""), err
    assert out.startswith("Moved ")
    assert "each table's row count matches" in out
    assert "Not moved (not in Threadline's schema): team_notes." in out
    assert PASSWORD not in out

    sides = await asyncio.to_thread(both_sides, path, url_with_password)
    assert "chunks_search" not in sides  # SQLite's FTS5 tables are not PostgreSQL's
    empty = sorted(table for table, (theirs, _) in sides.items() if not theirs)
    assert empty == [], f"give the history a row of {empty}, so the move of those tables is checked too"
    for table, (theirs, ours) in sides.items():
        assert ours == theirs, table
    moved = int(out.split("Moved ", 1)[1].split(" ", 1)[0].replace(",", ""))
    assert moved == sum(len(theirs) for theirs, _ in sides.values())
    with psycopg.connect(url_with_password) as pg:
        # what budgets had spent moved as it was: the runs trigger did not count the copied runs again
        assert pg.execute("SELECT sum(input_tokens) FROM budget_spent").fetchone()[0] > 0  # type: ignore[index]
        assert pg.execute("SELECT count(*) FROM chunks WHERE search_text IS NOT NULL OR stemming IS NOT NULL")

        (thread,) = pg.execute("SELECT thread_id FROM channels WHERE key = %s", [CHANNEL]).fetchone()  # type: ignore[misc]
        (message,) = pg.execute(
            "INSERT INTO messages (thread_id, channel, role, item) VALUES (%s, %s, 'user', '{}') RETURNING id",
            [thread, CHANNEL],
        ).fetchone()  # type: ignore[misc]
        assert message > deleted
        (rowid, public_id) = pg.execute(
            "INSERT INTO runs (id, thread_id, channel, status, created_at) VALUES ('run_new', %s, %s, 'queued', 1)"
            " RETURNING rowid, (SELECT public_id FROM messages WHERE id = %s)",
            [thread, CHANNEL, message],
        ).fetchone()  # type: ignore[misc]
        assert rowid > last_run_rowid
        assert public_id.startswith("msg_")  # the messages trigger fills new rows as before
        (notice,) = pg.execute(
            "INSERT INTO notices (channel, platform, text, created_at) VALUES ('c', 'slack', 't', 1) RETURNING id"
        ).fetchone()  # type: ignore[misc]
        assert notice > 1
        pg.rollback()


async def test_a_target_with_data_is_refused_and_left_as_it_was(tmp_path: Path, postgres_url: str) -> None:
    path = tmp_path / "data" / "bot.db"
    store = await Store.open(path)
    thread = await store.current_thread(CHANNEL)
    await store.import_messages(thread, CHANNEL, [("user", "hello", {"role": "user", "content": "hello"}, 2)])
    await store.close()
    code, _, err = await migrate(tmp_path, postgres_url, db=path)  # THREADLINE_DB names it
    assert code == 0, err
    before = await asyncio.to_thread(counts, postgres_url)

    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO deliveries (key, expires_at) VALUES ('later', 1)")
    code, out, err = await migrate(tmp_path, postgres_url, db=path)
    assert (code, out) == (1, "")
    assert err.startswith("threadline: The PostgreSQL database (")
    assert "already holds Threadline data (channels, messages, threads); nothing was written." in err
    assert err.count("\n") == 1
    assert await asyncio.to_thread(counts, postgres_url) == before


async def test_a_sqlite_database_at_other_migrations_is_refused_before_anything_is_written(
    tmp_path: Path, postgres_url: str
) -> None:
    older = tmp_path / "older.db"
    store = await Store.open(older, stop_before="m025_multilingual_search")
    await store.close()
    code, out, err = await migrate(tmp_path, postgres_url, str(older))
    assert (code, out) == (1, "")
    assert err == (
        f"threadline: The database at {older} is older than this Threadline (it lacks m025_multilingual_search)."
        " Start the bot once on it (it migrates itself), stop it, and run this again.\n"
    )

    newer = tmp_path / "newer.db"
    store = await Store.open(newer)
    await store.close()
    with sqlite3.connect(newer) as db:
        db.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('threadline', 'm999_later', '')"
        )
    code, _, err = await migrate(tmp_path, postgres_url, str(newer))
    assert code == 1
    assert "was migrated by a newer Threadline (it has m999_later" in err
    assert await asyncio.to_thread(counts, postgres_url) == {}  # not even the schema


async def test_a_row_postgresql_refuses_leaves_the_target_empty(tmp_path: Path, postgres_url: str) -> None:
    path = tmp_path / "bot.db"
    store = await Store.open(path)
    thread = await store.current_thread(CHANNEL)
    rows = [("user", f"message {n}", {"role": "user", "content": f"message {n}"}, 2) for n in range(50)]
    await store.import_messages(thread, CHANNEL, rows)
    await store.close()
    with sqlite3.connect(path) as db:
        (bad,) = db.execute("SELECT id FROM messages ORDER BY id LIMIT 1 OFFSET 30").fetchone()
        db.execute("UPDATE messages SET tokens = 'a few' WHERE id = ?", [bad])  # text SQLite keeps in an INTEGER

    code, out, err = await migrate(tmp_path, postgres_url, str(path))
    assert (code, out) == (1, "")
    assert err.startswith(f"threadline: PostgreSQL refused messages row id={bad}: invalid input syntax for type bigint")
    assert err.endswith(f"Nothing was moved; fix or delete that row in {path} and run this again.\n")
    assert set((await asyncio.to_thread(counts, postgres_url)).values()) == {0}

    with sqlite3.connect(path) as db:
        db.execute("UPDATE messages SET tokens = 3 WHERE id = ?", [bad])
    code, out, err = await migrate(tmp_path, postgres_url, str(path))  # the empty schema left behind takes it
    assert code == 0, err
    assert (await asyncio.to_thread(counts, postgres_url))["messages"] == 50


@pytest.fixture
def busy_database(tmp_path: Path) -> Iterator[tuple[Path, threading.Event]]:
    """A migrated database another connection keeps writing to, two deliveries per transaction, until the
    test ends; the event is set once it has written 200 pairs."""
    path = tmp_path / "busy.db"

    async def migrate_it() -> None:
        store = await Store.open(path)
        await store.close()

    asyncio.run(migrate_it())
    with busy_sqlite(
        path, "INSERT INTO deliveries (key, expires_at) VALUES (?, 0)", lambda n: [(f"{n}a",), (f"{n}b",)]
    ) as warmed:
        yield path, warmed


async def test_a_database_in_use_moves_as_one_snapshot(
    tmp_path: Path, postgres_url: str, busy_database: tuple[Path, threading.Event]
) -> None:
    path, warmed = busy_database
    assert await asyncio.to_thread(warmed.wait, 30)
    code, _, err = await migrate(tmp_path, postgres_url, str(path))
    assert code == 0, err
    moved = (await asyncio.to_thread(counts, postgres_url))["deliveries"]
    assert moved >= 400
    assert moved % 2 == 0  # no transaction cut in half


# -- what it says when it cannot --------------------------------------------------------------------------


async def test_each_problem_is_one_line_without_the_password(
    tmp_path: Path,
    url_with_password: str,
    closed_port: int,  # noqa: F811 - the fixture imported above
) -> None:
    code, out, err = await migrate(tmp_path, "", str(tmp_path / "bot.db"))
    assert (code, out) == (2, "")
    assert err == (
        "threadline: THREADLINE_DATABASE_URL is not set. Set it to the PostgreSQL database to move into"
        " (postgresql://USER:PASSWORD@HOST:PORT/DATABASE).\n"
    )

    missing = tmp_path / "nowhere" / "bot.db"
    code, out, err = await migrate(tmp_path, url_with_password, db=missing)
    assert (code, out) == (2, "")
    assert err == f"threadline: There is no database at {missing}. Name the bot's SQLite file, or set THREADLINE_DB.\n"

    path = tmp_path / "bot.db"
    store = await Store.open(path)
    await store.close()
    for url, status, said in [
        (f"mysql://me:{PASSWORD}@db/threadline", 2, "THREADLINE_DATABASE_URL is not a PostgreSQL URL."),
        (f"postgresql://me:{PASSWORD}@db:port/threadline", 2, "has a port that is not a number"),
        (
            f"postgresql://me:{PASSWORD}@127.0.0.1:{closed_port}/threadline",
            1,
            f"Could not connect to PostgreSQL (threadline on 127.0.0.1:{closed_port}): Connection refused.",
        ),
    ]:
        code, out, err = await migrate(tmp_path, url, str(path))
        assert (code, out) == (status, ""), url
        assert said in err
        assert err.count("\n") == 1
        assert PASSWORD not in err

    code, out, err = await migrate(tmp_path, url_with_password, str(path))
    assert code == 0, err
    assert PASSWORD not in out + err


async def test_help_says_what_it_does(tmp_path: Path) -> None:
    code, out, _ = await migrate(tmp_path, "", "--help")
    assert code == 0
    assert "usage: python -m bots migrate-to-postgres [-h] [sqlite_path]" in out
    assert "THREADLINE_DATABASE_URL" in out
    code, _, err = await migrate(tmp_path, "", "one.db", "two.db")
    assert code == 2
    assert "unrecognized arguments: two.db" in err
