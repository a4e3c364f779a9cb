"""The store: migrations, persistence across restarts, crash recovery, and the loop never waits on SQLite."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from core.events import RunCompleted
from core.store import Store
from core.store.files import FileStore
from core.store.migrations import MIGRATIONS
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers import CHANNEL, StoreDatabase, ask, channel_in_old_schema, post


async def test_blank_database_gets_every_migration_and_wal(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "sub" / "t.db")
    try:
        assert await store.applied_migrations() == [m.name for m in MIGRATIONS._migrations]
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "sub" / "t.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"channels", "threads", "messages", "runs", "run_steps", "approvals", "_sqlite_migrations"} <= tables


def test_every_migration_in_the_file_is_registered() -> None:
    """A numbered migration without its decorator would silently never run."""
    import re

    import core.store.migrations as module

    defined = re.findall(r"^def (m\d{3}_\w+)\(", Path(module.__file__).read_text(), flags=re.MULTILINE)
    assert defined == [m.name for m in MIGRATIONS._migrations]


async def test_upgrade_from_the_previous_schema_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = await Store.open(path, stop_before="m002_approvals_and_summary")
    assert await old.applied_migrations() == ["m001_objects"]
    await old.close()
    # Rows as the previous version wrote them (its own columns only).
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO channels (key, platform, workspace, channel_id, thread_id, created_at)"
            " VALUES (?, 'console', 'local', 'test', 'thread_old', 1.0)",
            [CHANNEL],
        )
        conn.execute("INSERT INTO threads (id, channel, created_at) VALUES ('thread_old', ?, 1.0)", [CHANNEL])
        conn.execute(
            "INSERT INTO messages (id, thread_id, channel, turn_id, role, text, item, tokens, created_at)"
            " VALUES (1, 'thread_old', ?, 1, 'user', 'from the old version', ?, 9, 1.0)",
            [CHANNEL, '{"role": "user", "content": "alice: from the old version"}'],
        )
        conn.execute(
            "INSERT INTO runs (id, thread_id, channel, assistant, model, status, trigger_message_id, created_at)"
            " VALUES ('run_old', 'thread_old', ?, 'threadline', 'm', 'completed', 1, 1.0)",
            [CHANNEL],
        )

    new = await Store.open(path)
    try:
        assert await new.applied_migrations() == [m.name for m in MIGRATIONS._migrations]
        thread = await new.current_thread(CHANNEL)
        assert [m.text for m in await new.thread_messages(thread)] == ["from the old version"]
        run = await new.get_run("run_old")
        assert run.status == "completed"
        assert run.state_json is None
        assert await new.thread_summary(thread) == (None, None)
    finally:
        await new.close()


@pytest.mark.sqlite_only
async def test_upgrade_from_the_previous_version_adds_the_knowledge_base(
    tmp_path: Path, open_service, fake_model: FakeOpenAI
) -> None:
    path = tmp_path / "threadline.db"
    old = await Store.open(path, stop_before="m003_knowledge")
    await old.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'files'").fetchone() == (0,)
    service = await open_service()
    assert "m003_knowledge" in await service.store.applied_migrations()
    await ask(service, "hello")
    from core.knowledge.base import Upload

    added = await service.knowledge.add(CHANNEL, Upload("notes.txt", b"The deploy runs on Tuesdays."))
    assert added.file.status == "completed"
    assert (await service.knowledge.search(CHANNEL, "deploy Tuesdays"))[0].file_name == "notes.txt"


async def test_history_survives_a_restart(open_service, fake_model: FakeOpenAI) -> None:
    first = await open_service()
    await ask(first, "remember the number 42")
    await first.close()

    second = await open_service()
    await ask(second, "what was the number?")
    contents = [m["content"] for m in fake_model.chat_requests[-1]["messages"][1:]]
    assert contents == [
        "alice: remember the number 42",
        "echo: alice: remember the number 42",
        "alice: what was the number?",
    ]


async def _crashed_runs(database: StoreDatabase, channels: list[str]) -> tuple[Store, list[Any]]:
    """A crash: runs queued in the database by a process that is gone, nothing running them."""
    store = await database.open()
    runs = []
    for n, channel in enumerate(channels):
        posted = await store.post_user_message(
            channel=channel,
            author_id="U1",
            author_name="alice",
            text=f"question {n}",
            item={"role": "user", "content": f"alice: question {n}"},
            tokens=5,
            platform_msg_id=None,
        )
        assert posted is not None
        runs.append(posted[1])
    return store, runs


async def test_runs_a_crash_left_are_answered_and_nothing_is_lost(
    open_service, fake_model: FakeOpenAI, database: StoreDatabase
) -> None:
    """Queued runs are answered; one in progress that had not started a tool is answered again."""
    store, runs = await _crashed_runs(database, [CHANNEL, CHANNEL, "slack:T1:C9"])
    await store.update_run(runs[0].id, status="in_progress", started_at=1.0)
    await store.close()

    told: list[tuple[str, str]] = []

    async def notify(channel: str, text: str) -> None:
        told.append((channel, text))

    service = await open_service(notify=notify)
    await service.wait_idle()
    for run in runs:
        assert (await service.store.get_run(run.id)).status == "completed"
    # Nobody watches these runs here: each answer reaches its channel as a message, in order, and once.
    assert told == [
        (CHANNEL, "echo: alice: question 0"),
        (CHANNEL, "echo: alice: question 1"),
        ("slack:T1:C9", "echo: alice: question 2"),
    ] or sorted(told) == sorted(
        [
            (CHANNEL, "echo: alice: question 0"),
            (CHANNEL, "echo: alice: question 1"),
            ("slack:T1:C9", "echo: alice: question 2"),
        ]
    )
    assert [t for c, t in told if c == CHANNEL] == ["echo: alice: question 0", "echo: alice: question 1"]
    history = await service.store.thread_messages(await service.store.current_thread(CHANNEL))
    assert [m.text for m in history] == [
        "question 0",
        "echo: alice: question 0",
        "question 1",
        "echo: alice: question 1",
    ]
    assert len(fake_model.chat_requests) == 3
    await service.close()


async def test_a_run_a_crash_cut_off_after_a_tool_started_is_closed_and_its_channel_told_once(
    open_service, fake_model: FakeOpenAI, database: StoreDatabase
) -> None:
    store, runs = await _crashed_runs(database, [CHANNEL, CHANNEL])
    await store.update_run(runs[0].id, status="in_progress", started_at=1.0)
    await store.add_step(runs[0].id, "tool_calls", tool_name="deploy", call_id="call_1", arguments="{}")
    await store.close()

    told: list[tuple[str, str]] = []

    async def notify(channel: str, text: str) -> None:
        told.append((channel, text))

    service = await open_service(notify=notify)
    await service.wait_idle()
    cut = await service.store.get_run(runs[0].id)
    assert cut.status == "failed"
    assert "stopped" in (cut.last_error or "")
    assert [s.status for s in await service.store.run_steps(cut.id)] == ["failed"]
    assert (await service.store.get_run(runs[1].id)).status == "completed"
    assert [t for _, t in told if "restarted" in t] == [told[0][1]]
    assert "after I had started using a tool" in told[0][1]
    assert told[1:] == [(CHANNEL, "echo: alice: question 1")]
    await service.close()
    again = await open_service(notify=notify)  # a second restart says nothing again
    await again.wait_idle()
    assert len(told) == 2


async def test_reset_starts_a_new_thread_and_keeps_the_old(service, fake_model: FakeOpenAI) -> None:
    await ask(service, "old topic")
    old_thread = await service.store.current_thread(CHANNEL)
    await service.reset(CHANNEL)
    new_thread = await service.store.current_thread(CHANNEL)
    assert new_thread != old_thread
    await ask(service, "new topic")
    assert [m["content"] for m in fake_model.chat_requests[-1]["messages"][1:]] == ["alice: new topic"]
    assert [m.text for m in await service.store.thread_messages(old_thread)] == ["old topic", "echo: alice: old topic"]


async def test_sqlite_runs_on_the_store_thread_not_the_event_loop(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "t.db")
    seen: list[str] = []
    try:
        store._db.conn.set_trace_callback(lambda sql: seen.append(threading.current_thread().name))
        await store.current_thread(CHANNEL)
        assert seen
        assert all(name.startswith("threadline-db") for name in seen)
        assert threading.current_thread().name == "MainThread"
    finally:
        await store.close()


async def test_a_slow_channel_does_not_hold_up_another(service, fake_model: FakeOpenAI) -> None:
    release = asyncio.Event()

    async def script(req):
        if "slow" in req["messages"][-1]["content"]:
            await release.wait()
        from tests.fakes.openai_server import Reply

        return Reply(text="ok")

    fake_model.script = script
    slow = await post(service, "slow one", channel="slack:T1:SLOW")
    fast = await ask(service, "fast one", channel="slack:T1:FAST")
    assert isinstance(fast[-1], RunCompleted)
    assert not slow.done
    release.set()
    assert isinstance(await slow.result(), RunCompleted)


async def test_upgrade_to_the_assistants_api_gives_every_message_a_public_id(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = await Store.open(path, stop_before="m005_assistants_api")

    def message_before(db: Any) -> None:  # as the code of that time wrote it (today's reads later columns)
        db.execute("INSERT INTO channels (key, created_at) VALUES (?, 0)", [CHANNEL])
        db.execute("INSERT INTO threads (id, channel, created_at) VALUES ('thread_old', ?, 0)", [CHANNEL])
        db.execute("UPDATE channels SET thread_id = 'thread_old' WHERE key = ?", [CHANNEL])
        db.execute(
            "INSERT INTO messages (thread_id, channel, turn_id, role, text, item, tokens, created_at)"
            " VALUES ('thread_old', ?, 1, 'user', 'before', '{}', 1, 0)",
            [CHANNEL],
        )

    await old.call(message_before)
    await old.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'assistants'").fetchone() == (0,)

    new = await Store.open(path)
    try:
        assert "m005_assistants_api" in await new.applied_migrations()
        await new.post_user_message(
            channel=CHANNEL, author_id="U1", author_name="alice", text="after", item={}, tokens=1, platform_msg_id=None
        )
        thread = await new.current_thread(CHANNEL)
        run = (await new.thread_runs(thread))[-1]
        await new.finish_run(run, status="completed", items=[("assistant", "answer", {"role": "assistant"}, 1)])

        def public_ids(db: Any) -> list[tuple[str, str]]:
            return db.execute("SELECT text, public_id FROM messages ORDER BY id").fetchall()

        rows = await new.call(public_ids)
        assert [text for text, _ in rows] == ["before", "after", "answer"]
        ids = [public_id for _, public_id in rows]
        assert all(public_id.startswith("msg_") and len(public_id) == 28 for public_id in ids)
        assert len(set(ids)) == 3
        assert await new.call(lambda db: db.table("assistants").count) == 0
    finally:
        await new.close()


async def _post(store: Store, text: str, msg_id: str) -> int:
    posted = await store.post_user_message(
        channel=CHANNEL, author_id="U1", author_name="alice", text=text, item={}, tokens=1, platform_msg_id=msg_id
    )
    assert posted is not None
    return await store.call(
        lambda db: db.execute("SELECT id FROM messages WHERE platform_msg_id = ?", [msg_id]).fetchone()[0]
    )


async def _post_in_old_schema(store: Store, thread_id: str, text: str, msg_id: str) -> int:
    """A person's message as an older schema stores it (the store's own code writes today's columns)."""

    def insert(db: Any) -> int:
        cursor = db.execute(
            "INSERT INTO messages (thread_id, channel, turn_id, role, text, item, tokens, platform_msg_id, created_at)"
            " VALUES (?, ?, 0, 'user', ?, '{}', 1, ?, 0)",
            [thread_id, CHANNEL, text, msg_id],
        )
        return int(cursor.lastrowid)

    return await store.call(insert)


async def test_a_deleted_newest_messages_id_is_never_handed_out_again(tmp_path: Path) -> None:
    """Upgraded from the schema before m013: ids, public ids, indexes and triggers are kept, and an id freed
    by deleting the newest message stays unused (a plain rowid table hands it out again)."""
    path = tmp_path / "ids.db"
    old = await Store.open(path, stop_before="m013_message_ids_never_reused")
    try:
        thread_id = await channel_in_old_schema(old, CHANNEL)
        first = await _post_in_old_schema(old, thread_id, "first", "m1")
        newest = await _post_in_old_schema(old, thread_id, "newest", "m2")
        await old.call(lambda db: db.execute("DELETE FROM messages WHERE id = ?", [newest]))
        reused = await _post_in_old_schema(old, thread_id, "reused", "m3")
        assert reused == newest  # the hazard, before the migration
        before = await old.call(lambda db: db.execute("SELECT id, public_id, text FROM messages").fetchall())
    finally:
        await old.close()

    new = await Store.open(path)
    try:
        assert await new.call(lambda db: db.execute("SELECT id, public_id, text FROM messages").fetchall()) == before
        indexes = await new.call(
            lambda db: {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'messages'")}
        )
        assert {"idx_messages_thread_id_turn_id_id", "idx_messages_public_id", "messages_public_id"} <= indexes
        await new.call(lambda db: db.execute("DELETE FROM messages WHERE id = ?", [reused]))
        after = await _post(new, "after", "m4")
        assert after > reused > first
        public_id = await new.call(
            lambda db: db.execute("SELECT public_id FROM messages WHERE id = ?", [after]).fetchone()[0]
        )
        assert public_id.startswith("msg_")  # the public-id trigger is back
        duplicate = await new.post_user_message(
            channel=CHANNEL, author_id="U1", author_name="alice", text="again", item={}, tokens=1, platform_msg_id="m4"
        )
        assert duplicate is None  # the unique index on (channel, platform_msg_id) is back
    finally:
        await new.close()


async def test_upgrade_merges_repeated_platform_files_and_then_refuses_them(tmp_path: Path) -> None:
    """Before m015 two deliveries of one upload could leave two rows: the best stays, and then one is the rule."""
    path = tmp_path / "files.db"
    old = await Store.open(path, stop_before="m015_one_file_per_platform_upload")

    def old_rows(db: Any) -> None:
        for file_id, platform_id, status, created, sha256 in [
            ("file_failed", "F1", "failed", 1.0, "aa"),
            ("file_done", "F1", "completed", 2.0, "bb"),
            ("file_retry", "F1", "failed", 3.0, "cc"),
            ("file_other", "F2", "completed", 4.0, "dd"),
            ("file_plain", None, "completed", 5.0, "ee"),
            ("file_plain_too", None, "completed", 6.0, "ff"),
        ]:
            db.execute(
                "INSERT INTO files (id, channel, name, size, sha256, status, platform_file_id, chunk_count, created_at)"
                " VALUES (?, ?, 'notes.txt', 4, ?, ?, ?, 0, ?)",
                [file_id, CHANNEL, sha256, status, platform_id, created],
            )
            db.execute("INSERT INTO file_contents (sha256, data) VALUES (?, x'00')", [sha256])
        db.execute(
            "INSERT INTO chunks (file_id, channel, ordinal, location, text, tokens)"
            " VALUES ('file_retry', ?, 0, '', 'stale words', 2)",
            [CHANNEL],
        )

    try:
        await old.call(old_rows)
    finally:
        await old.close()

    new = await Store.open(path)
    try:
        rows = await new.call(lambda db: db.execute("SELECT id FROM files ORDER BY created_at").fetchall())
        assert [r[0] for r in rows] == ["file_done", "file_other", "file_plain", "file_plain_too"]
        left = await new.call(lambda db: {r[0] for r in db.execute("SELECT sha256 FROM file_contents")})
        assert left == {"bb", "dd", "ee", "ff"}  # the bytes went with the rows that were merged away
        assert await new.call(lambda db: db.execute("SELECT count(*) FROM chunks").fetchone()[0]) == 0
        files = FileStore(new)
        common: dict[str, Any] = {
            "channel": CHANNEL, "name": "notes.txt", "size": 4, "mime": None, "uploader_id": None,
            "uploader_name": None, "link": None,
        }  # fmt: skip
        found, written = await files.claim(**common, platform_file_id="F1")
        assert (found.id, written) == ("file_done", False)
        with pytest.raises(sqlite3.IntegrityError):  # a second row for one platform file
            await files.create(**common, sha256="gg", platform_file_id="F2")
        _, written = await files.claim(**common, platform_file_id="F3")
        assert written
    finally:
        await new.close()


async def test_a_call_that_another_process_locked_out_at_once_is_run_again(tmp_path: Path) -> None:
    """A transaction that read, then wants to write while another process has written, fails "database is
    locked" at once (SQLite does not wait there: it could deadlock). The store runs the call again."""
    path = tmp_path / "locked.db"
    store = await Store.open(path)
    attempts: list[int] = []

    def read_then_write(db: Any) -> int:
        attempts.append(1)
        db.execute("BEGIN")
        db.execute("SELECT COUNT(*) FROM channels").fetchone()
        if len(attempts) == 1:  # meanwhile, another process writes
            with sqlite3.connect(path, isolation_level=None) as other:
                other.execute("INSERT INTO processes (id, created_at, lease_until) VALUES ('proc_other', 0, 0)")
        db.execute("INSERT INTO processes (id, created_at, lease_until) VALUES ('proc_mine', 0, 0)")
        db.execute("COMMIT")
        return int(db.execute("SELECT COUNT(*) FROM processes").fetchone()[0])

    try:
        assert await store.call(read_then_write) == 2
        assert len(attempts) == 2
    finally:
        await store.close()
