"""``python -m bots backup PATH`` as an operator runs it: beside a process that keeps writing, into a folder,
and when it cannot (no database, no such folder)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.store import Store
from tests.helpers import busy_sqlite
from tests.test_entry_points import clean_env, run


def counts(path: Path) -> tuple[int, int]:
    """(pairs written, rows) of the scratch table, read from one snapshot."""
    with sqlite3.connect(path) as db:
        (rows,) = db.execute("SELECT count(*) FROM scratch").fetchone()
        (pairs,) = db.execute("SELECT count(DISTINCT pair) FROM scratch").fetchone()
    return pairs, rows


@pytest.fixture
def busy_database(tmp_path: Path) -> Iterator[tuple[Path, threading.Event]]:
    """A migrated database that another connection keeps writing to, two rows per transaction, until the test
    ends; the event is set once it has written 200 pairs."""
    path = tmp_path / "data" / "bot.db"

    async def migrate() -> None:
        store = await Store.open(path)
        await store.close()

    asyncio.run(migrate())
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE scratch (pair INTEGER, half INTEGER, filler TEXT)")
    with busy_sqlite(
        path, "INSERT INTO scratch VALUES (?, ?, ?)", lambda n: [(n, 0, "x" * 500), (n, 1, "y" * 500)]
    ) as warmed:
        yield path, warmed


async def test_a_backup_beside_a_writer_is_one_consistent_snapshot_that_opens_as_the_database(
    tmp_path: Path, busy_database: tuple[Path, threading.Event]
) -> None:
    source, warmed = busy_database
    assert await asyncio.to_thread(warmed.wait, 30)
    copy = tmp_path / "backups" / "copy.db"
    copy.parent.mkdir()
    code, out, err = await run(
        "bots", "backup", str(copy), env=clean_env(tmp_path, THREADLINE_DB=str(source)), cwd=tmp_path
    )
    assert code == 0, err
    assert out.startswith(f"Backed up {source} to {copy} (")

    pairs, rows = await asyncio.to_thread(counts, copy)
    assert pairs >= 200
    assert rows == 2 * pairs  # no transaction cut in half
    assert sorted(p.name for p in copy.parent.iterdir()) == ["copy.db"]  # no -wal, -shm or partial file
    with sqlite3.connect(copy) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert db.execute("PRAGMA quick_check").fetchone() == ("ok",)
        migrations = db.execute("SELECT name FROM _sqlite_migrations ORDER BY name").fetchall()
    with sqlite3.connect(source) as db:
        assert migrations == db.execute("SELECT name FROM _sqlite_migrations ORDER BY name").fetchall()
    restored = await Store.open(copy)  # a copy put in the database's place is the database
    await restored.close()


async def test_a_backup_into_a_folder_gets_a_dated_name_and_a_second_one_replaces_a_file(tmp_path: Path) -> None:
    source = tmp_path / "data" / "bot.db"
    store = await Store.open(source)
    await store.close()
    env = clean_env(tmp_path, THREADLINE_DB=str(source))
    folder = tmp_path / "backups"
    folder.mkdir()
    code, _, err = await run("bots", "backup", str(folder), env=env, cwd=tmp_path)
    assert code == 0, err
    [dated] = list(folder.iterdir())
    assert dated.name.startswith("threadline-")
    assert dated.suffix == ".db"

    target = tmp_path / "latest.db"
    target.write_bytes(b"an old backup, or anything")
    code, _, err = await run("bots", "backup", str(target), env=env, cwd=tmp_path)
    assert code == 0, err
    with sqlite3.connect(target) as db:
        assert db.execute("PRAGMA quick_check").fetchone() == ("ok",)


async def test_a_backup_that_cannot_be_made_says_why_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "bot.db"
    code, out, err = await run(
        "bots", "backup", str(tmp_path / "copy.db"), env=clean_env(tmp_path, THREADLINE_DB=str(missing)), cwd=tmp_path
    )
    assert (code, out) == (2, "")
    assert err == f"threadline: There is no database at {missing}. Set THREADLINE_DB to the bot's database file.\n"
    assert not missing.parent.exists()  # nothing was created in its place

    source = tmp_path / "data" / "bot.db"
    store = await Store.open(source)
    await store.close()
    target = tmp_path / "no-such-folder" / "copy.db"
    code, _, err = await run(
        "bots", "backup", str(target), env=clean_env(tmp_path, THREADLINE_DB=str(source)), cwd=tmp_path
    )
    assert code == 2
    assert err == f"threadline: The folder {target.parent} does not exist. Create it, or name another path.\n"


async def test_a_backup_of_a_postgresql_bot_points_to_pg_dump_without_its_url(tmp_path: Path) -> None:
    url = "postgresql://bot:s3cret-pw@127.0.0.1:9/threadline"
    env = clean_env(tmp_path, THREADLINE_DATABASE_URL=url)
    code, out, err = await run("bots", "backup", str(tmp_path / "copy.db"), env=env, cwd=tmp_path)
    assert (code, out) == (2, "")
    assert err.startswith("threadline: THREADLINE_DATABASE_URL is set")
    assert "pg_dump" in err
    assert "s3cret-pw" not in err
    assert not (tmp_path / "copy.db").exists()
