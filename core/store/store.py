"""The store: one connection, owned by one thread, reached through async methods.

The event loop never waits on the database: every call is handed to the store's own
worker thread (a single-thread executor that owns the connection), so calls are
serialised without locks and the loop stays free. The database migrates itself on
open and is the only place state lives: SQLite (a WAL file) by default, PostgreSQL
when a ``postgresql://`` URL is given (core/store/postgres/), with the same SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

from sqlite_utils import Database

from core.models import Approval, Run, RunStep, StoredMessage, parse_channel_key, scope_of, stored_scope
from core.store.dialect import begin_deciding
from core.store.images import ImageRow, insert_images
from core.store.leases import ACTIVE, host_key, live_processes
from core.store.migrations import MIGRATIONS
from core.store.postgres import MIGRATIONS as PG_MIGRATIONS
from core.store.postgres import apply as apply_pg_migrations
from core.store.postgres.pool import POOL_SIZE, PgPool
from core.store.postgres.ranking_index import ensure as ensure_ranking_index
from core.store.postgres.url import PostgresUrl
from core.store.sql import INTEGRITY_ERRORS, SqlDatabase, insert_row

__all__ = ["NewItem", "Store", "immediate", "new_id"]

_log = logging.getLogger(__name__)
T = TypeVar("T")

# (role, text, item, tokens) for one message a run writes
NewItem = tuple[str, str, dict[str, Any], int]
ClaimKind = Literal["start", "take", "resume", "expire", "paused", "busy", "idle"]


LOCKED_RETRIES = 6  # a store call that found the database locked is tried this often in all (~1.3 s)


def thread_scope(thread_id: str) -> str:
    """What a claim decides about: one thread's runs (``immediate``'s scope)."""
    return f"thread:{thread_id}"


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def immediate(db: SqlDatabase, work: Callable[[], T], *, scope: str | None = None) -> T:
    """``work`` in a write transaction taken before its first read (other processes wait, see busy_timeout);
    ``scope``: what it decides about, on PostgreSQL serialised with that alone (core/store/dialect.py)."""
    begin_deciding(db, scope)
    try:
        result = work()
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return result


class Store:
    """Async facade over the database (SQLite, or PostgreSQL: ``url``). Create with :meth:`open`; call
    :meth:`close` at the end."""

    def __init__(self, path: Path, executor: ThreadPoolExecutor, db: Database | PgPool, url: str | None = None) -> None:
        # SQLite: the database file. PostgreSQL: where this process keeps what it caches on disk (its
        # knowledge bases' vector indexes, beside where the SQLite file would be).
        self.path = path
        self.url = url  # the PostgreSQL database's URL; None: SQLite at ``path``
        self._executor = executor
        self._db = db
        # This process, as the runs it queues and claims name it (core/store/leases.py).
        self.process_id = new_id("proc")
        self.host = host_key()
        # PostgreSQL: the keyword ranking index being built in the background by this start, if it is
        # (core/store/postgres/ranking_index.py); tests and benchmarks wait for it with ranking_index_ready.
        self.ranking_index_build: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------

    @classmethod
    async def open(cls, path: str | Path, *, url: str | None = None, stop_before: str | None = None) -> Store:
        """Open (creating the file and folders if needed) and migrate.

        ``url``: a PostgreSQL database (``postgresql://...``) instead of the SQLite file at ``path``.
        ``stop_before`` names a migration not to apply yet: tests use it to build an older schema.
        """
        path = Path(path)
        # SQLite: one thread, one connection (one writer at a time anyway). PostgreSQL: a thread for each
        # connection of the pool (core/store/postgres/pool.py).
        threads = 1 if url is None else POOL_SIZE
        executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="threadline-db")
        loop = asyncio.get_running_loop()

        building: list[threading.Thread] = []

        def connect_postgres(url: str) -> PgPool:
            # One connection first: a server that cannot be reached is said in one line (DatabaseUnreachable),
            # and the schema is migrated on it before the pool opens.
            with PostgresUrl.parse(url).connect() as first:
                apply_pg_migrations(first, stop_before=stop_before)
                if stop_before is None and (build := ensure_ranking_index(first, url)) is not None:
                    building.append(build)
            return PgPool.connect(url)

        def connect() -> Database:
            if str(path) != ":memory:":
                path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            db = Database(conn)
            # Writers of every process on the database take turns; under load one may wait seconds for
            # another's (bench.soak saw "database is locked" at 5 s while a second process started).
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            with _migration_lock(path):
                # Switching a new database to WAL needs it to itself, and SQLite does not wait for that (it
                # answers "database is locked" at once, whatever busy_timeout says, while another process
                # starting at the same moment reads it): so one process at a time, under the start-up lock.
                # Once the file is in WAL mode the pragma changes nothing and takes no such lock.
                db.execute("PRAGMA journal_mode=WAL")
                MIGRATIONS.apply(db, stop_before=stop_before)
            return db

        try:
            db: Database | PgPool = await loop.run_in_executor(
                executor, connect if url is None else lambda: connect_postgres(url)
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        store = cls(path, executor, db, url)
        store.ranking_index_build = building[0] if building else None
        return store

    async def ranking_index_ready(self) -> None:
        """Until the keyword ranking index this start began building is built (or its build gave up)."""
        if self.ranking_index_build is not None:
            await asyncio.to_thread(self.ranking_index_build.join)

    async def close(self) -> None:
        # Not through _call: on PostgreSQL the pool closes with none of its connections lent out.
        await asyncio.get_running_loop().run_in_executor(self._executor, self._db.close)
        self._executor.shutdown(wait=True)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._retrying, fn, *args)

    def _retrying(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` on the store's thread, again when another process's transaction made it fail "locked".

        SQLite waits (busy_timeout) for a lock, except where waiting could deadlock: a transaction that
        has read and then wants to write while another process writes fails at once. Every store call
        is a whole unit (its transaction rolled back on failure), so it is run again, a few times.
        """
        if isinstance(self._db, PgPool):
            return self._db.retrying(fn, *args)
        for attempt in range(LOCKED_RETRIES):
            started = time.monotonic()
            try:
                return fn(*args)
            except sqlite3.OperationalError as exc:
                waited = time.monotonic() - started > 1.0  # it waited out busy_timeout: a lock held that long
                if "locked" not in str(exc) or waited or attempt == LOCKED_RETRIES - 1:
                    raise
                if self._db.conn.in_transaction:
                    self._db.conn.rollback()
                _log.info("the database was locked by another process; trying again (%s)", exc)
                time.sleep(0.02 * 2**attempt)  # the store's own thread, not the event loop
        raise AssertionError("unreachable")

    async def call(self, fn: Callable[[SqlDatabase], T]) -> T:
        """Run ``fn(db)`` on the store's thread: for the store's own modules (see core/store/files.py)."""
        return await self._call(fn, self._db)

    async def applied_migrations(self) -> list[str]:
        db = self._db
        if isinstance(db, PgPool):
            return await self._call(db.with_connection, PG_MIGRATIONS.applied)
        return await self._call(lambda: [m.name for m in MIGRATIONS.applied(db)])

    # -- channels and threads --------------------------------------------------------

    def _ensure_channel(self, key: str, scope: str | None = None) -> str:
        """The conversation's current thread id, creating the conversation (and its thread) on first use.

        ``scope``: the channel an adapter names as the conversation's scope (core/models.py), recorded
        (it replaces what was recorded); None: what is recorded, or for a new conversation what its key says.
        """
        row = self._db.execute("SELECT thread_id, scope FROM channels WHERE key = ?", [key]).fetchone()
        if row is not None:
            if scope is not None and (recorded := stored_scope(key, scope)) != row[1]:
                self._db.execute("UPDATE channels SET scope = ? WHERE key = ?", [recorded, key])
            return str(row[0])
        platform, workspace, channel_id = parse_channel_key(key)
        recorded = stored_scope(key, scope)
        thread_id = new_id("thread")
        now = time.time()

        def create() -> str:
            # Another process may create the same channel at the same moment: the first one's thread counts.
            created = self._db.execute(
                "INSERT INTO channels (key, platform, workspace, channel_id, thread_id, created_at, scope)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [key, platform, workspace, channel_id, thread_id, now, recorded],
            ).rowcount
            if created:
                self._db.execute(
                    "INSERT INTO threads (id, channel, created_at) VALUES (?, ?, ?)", [thread_id, key, now]
                )
            return str(self._db.execute("SELECT thread_id FROM channels WHERE key = ?", [key]).fetchone()[0])

        return create() if self._db.conn.in_transaction else immediate(self._db, create)

    def _scope(self, key: str) -> str:
        row = self._db.execute("SELECT COALESCE(scope, key) FROM channels WHERE key = ?", [key]).fetchone()
        return str(row[0]) if row is not None else scope_of(key)

    async def scope(self, channel: str) -> str:
        """The channel whose knowledge base, assistant, policy and budgets the conversation ``channel``
        shares (core/models.py): the one recorded for it, else the one its key says (itself, for a channel)."""
        return await self._call(self._scope, channel)

    async def set_scope(self, channel: str, scope: str) -> None:
        """Record ``scope`` as the conversation's scope (the conversation is created if new)."""
        await self._call(self._ensure_channel, channel, scope)

    async def channel_info(self, channel: str) -> tuple[str, str | None]:
        """(current thread id, its scope's assistant name or None for the default); created on first use."""

        def info() -> tuple[str, str | None]:
            thread_id = self._ensure_channel(channel)
            return thread_id, self._assistant(channel)

        return await self._call(info)

    def _assistant(self, channel: str) -> str | None:
        row = self._db.execute("SELECT assistant FROM channels WHERE key = ?", [self._scope(channel)]).fetchone()
        return row[0] if row else None  # None: the default assistant

    async def set_channel_assistant(self, channel: str, assistant: str | None) -> None:
        """The assistant the next runs of the channel's scope use (None: the default), in every conversation
        that shares it; the scope's channel is created if new."""

        def update() -> None:
            self._ensure_channel(channel)
            scope = self._scope(channel)
            self._ensure_channel(scope)
            self._db.execute("UPDATE channels SET assistant = ? WHERE key = ?", [assistant, scope])

        await self._call(update)

    async def current_thread(self, channel: str) -> str:
        """The channel's current thread id (the channel and thread are created on first use)."""
        return await self._call(self._ensure_channel, channel)

    async def reset_thread(self, channel: str) -> str:
        """Start a new thread for the channel; the old one is closed and kept."""

        def reset() -> str:
            old = self._ensure_channel(channel)
            thread_id = new_id("thread")
            now = time.time()
            with self._db.atomic():
                self._db.execute("UPDATE threads SET closed_at = ? WHERE id = ?", [now, old])
                insert_row(self._db, "threads", {"id": thread_id, "channel": channel, "created_at": now})
                self._db.execute("UPDATE channels SET thread_id = ? WHERE key = ?", [thread_id, channel])
            return thread_id

        return await self._call(reset)

    async def thread_summary(self, thread_id: str) -> tuple[str | None, tuple[int, int] | None]:
        return await self._call(self._thread_summary, thread_id)

    def _thread_summary(self, thread_id: str) -> tuple[str | None, tuple[int, int] | None]:
        row = self._db.execute(
            "SELECT summary, summary_turn_id, summary_message_id FROM threads WHERE id = ?", [thread_id]
        ).fetchone()
        if row is None or row[1] is None:
            return (row[0] if row else None), None
        return row[0], (int(row[1]), int(row[2]))

    async def set_thread_summary(self, thread_id: str, summary: str, until: tuple[int, int]) -> None:
        await self._call(
            self._db.execute,
            "UPDATE threads SET summary = ?, summary_turn_id = ?, summary_message_id = ? WHERE id = ?",
            [summary, until[0], until[1], thread_id],
        )

    # -- messages ------------------------------------------------------------------------

    async def post_user_message(
        self,
        *,
        channel: str,
        author_id: str,
        author_name: str,
        text: str,
        item: dict[str, Any],
        tokens: int,
        platform_msg_id: str | None,
        actor: str | None = None,
        scope: str | None = None,
        context: Sequence[NewItem] = (),
        images: Sequence[ImageRow] = (),
    ) -> tuple[int, Run] | None:
        """Store a person's message and queue a run for it, atomically.

        Returns None when ``platform_msg_id`` was already stored for this channel: the
        platform delivered the same message twice and it must not be answered twice.
        ``scope``: the conversation's scope as the adapter names it (recorded; see :meth:`scope`).
        ``context``: what a new conversation begins with, stored before the message, each in a turn of
        its own, when the conversation's thread has no messages yet. ``images``: the bytes of the images
        the message shows the model (core/store/images.py).
        """

        def post() -> tuple[int, Run] | None:
            thread_id = self._ensure_channel(channel, scope)
            assistant = self._assistant(channel)  # None: the default assistant, resolved when the run starts
            now = time.time()
            run_id = new_id("run")
            try:
                with self._db.atomic():
                    if context and not self._has_messages(thread_id):
                        self._insert_turns(thread_id, channel, context, now)
                    cursor = self._db.execute(
                        "INSERT INTO messages (thread_id, channel, turn_id, role, text, item, tokens,"
                        " author_id, author_name, platform_msg_id, created_at)"
                        " VALUES (?, ?, 0, 'user', ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                        [
                            thread_id,
                            channel,
                            text,
                            json.dumps(item),
                            tokens,
                            author_id,
                            author_name,
                            platform_msg_id,
                            now,
                        ],
                    )
                    message_id = int(cursor.fetchone()[0])
                    self._db.execute("UPDATE messages SET turn_id = id WHERE id = ?", [message_id])
                    insert_images(self._db, message_id, images)
                    self._db.execute(
                        "INSERT INTO runs (id, thread_id, channel, assistant, status, trigger_message_id, created_at,"
                        " actor, origin) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
                        [run_id, thread_id, channel, assistant, message_id, now, actor, self.process_id],
                    )
            except INTEGRITY_ERRORS:
                if platform_msg_id is not None and self._message_exists(channel, platform_msg_id):
                    return None
                raise
            return message_id, self._get_run(run_id)

        return await self._call(post)

    def _has_messages(self, thread_id: str) -> bool:
        row = self._db.execute("SELECT 1 FROM messages WHERE thread_id = ? LIMIT 1", [thread_id]).fetchone()
        return row is not None

    def _message_exists(self, channel: str, platform_msg_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM messages WHERE channel = ? AND platform_msg_id = ?", [channel, platform_msg_id]
        ).fetchone()
        return row is not None

    async def add_run_messages(self, run: Run, items: Sequence[NewItem]) -> None:
        """Append what a run produced (assistant text, tool calls and results) to its turn."""

        def add() -> None:
            with self._db.atomic():
                self._insert_run_messages(run, items, time.time())

        await self._call(add)

    def _insert_run_messages(
        self, run: Run, items: Sequence[NewItem], now: float, public_ids: Sequence[str | None] = ()
    ) -> None:
        """``public_ids``: the public ids of the first items (None, or none given: the trigger makes one)."""
        self._db.conn.executemany(
            "INSERT INTO messages (thread_id, channel, turn_id, role, text, item, tokens, run_id, created_at,"
            " public_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    run.thread_id,
                    run.channel,
                    run.trigger_message_id or 0,
                    role,
                    text,
                    json.dumps(item),
                    tokens,
                    run.id,
                    now,
                    public_ids[index] if index < len(public_ids) else None,
                )
                for index, (role, text, item, tokens) in enumerate(items)
            ],
        )

    async def context_index(
        self, thread_id: str, up_to_turn: int | None
    ) -> tuple[str | None, tuple[int, int] | None, list[tuple[int, int, int, str]]]:
        """(summary, what it covers, history index) for building a run's context, in one round trip."""

        def index() -> tuple[str | None, tuple[int, int] | None, list[tuple[int, int, int, str]]]:
            summary, until = self._thread_summary(thread_id)
            return summary, until, self._history_index(thread_id, up_to_turn)

        return await self._call(index)

    async def history_index(self, thread_id: str, up_to_turn: int | None) -> list[tuple[int, int, int, str]]:
        """(id, turn_id, tokens, role) of a thread's messages, newest first, up to a turn."""
        return await self._call(self._history_index, thread_id, up_to_turn)

    def _history_index(self, thread_id: str, up_to_turn: int | None) -> list[tuple[int, int, int, str]]:
        sql = "SELECT id, turn_id, tokens, role FROM messages WHERE thread_id = ?"
        params: list[Any] = [thread_id]
        if up_to_turn is not None:
            sql += " AND turn_id <= ?"
            params.append(up_to_turn)
        sql += " ORDER BY turn_id DESC, id DESC"
        return [(int(a), int(b), int(c), str(d)) for a, b, c, d in self._db.execute(sql, params)]

    async def messages_by_id(self, ids: Iterable[int]) -> list[StoredMessage]:
        """Messages with these ids in thread order (turn, then id)."""
        wanted = list(ids)

        def load() -> list[StoredMessage]:
            out: list[StoredMessage] = []
            for start in range(0, len(wanted), 500):
                batch = wanted[start : start + 500]
                marks = ",".join("?" * len(batch))
                rows = self._db.execute(
                    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id IN ({marks})", batch
                ).fetchall()
                out.extend(_message(row) for row in rows)
            out.sort(key=lambda m: (m.turn_id, m.id))
            return out

        return await self._call(load)

    async def thread_messages(self, thread_id: str) -> list[StoredMessage]:
        def load() -> list[StoredMessage]:
            rows = self._db.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE thread_id = ? ORDER BY turn_id, id",
                [thread_id],
            ).fetchall()
            return [_message(row) for row in rows]

        return await self._call(load)

    async def import_messages(self, thread_id: str, channel: str, rows: Sequence[NewItem]) -> None:
        """Bulk-append finished turns (each row opens its own turn); used for imports and benchmarks."""

        def add() -> None:
            with self._db.atomic():
                self._insert_turns(thread_id, channel, rows, time.time())

        await self._call(add)

    def _insert_turns(self, thread_id: str, channel: str, rows: Sequence[NewItem], now: float) -> None:
        for role, text, item, tokens in rows:
            cursor = self._db.execute(
                "INSERT INTO messages (thread_id, channel, turn_id, role, text, item, tokens, created_at)"
                " VALUES (?, ?, 0, ?, ?, ?, ?, ?) RETURNING id",
                [thread_id, channel, role, text, json.dumps(item), tokens, now],
            )
            (message_id,) = cursor.fetchone()
            self._db.execute("UPDATE messages SET turn_id = id WHERE id = ?", [message_id])

    # -- runs ------------------------------------------------------------------------------

    def _get_run(self, run_id: str) -> Run:
        row = self._db.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", [run_id]).fetchone()
        if row is None:
            raise KeyError(run_id)
        return _run(row)

    async def get_run(self, run_id: str) -> Run:
        return await self._call(self._get_run, run_id)

    def _update_run(self, run_id: str, fields: dict[str, Any]) -> None:
        unknown = set(fields) - _RUN_FIELDS
        if unknown:
            raise ValueError(f"unknown run fields: {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self._db.execute(f"UPDATE runs SET {assignments} WHERE id = ?", [*fields.values(), run_id])

    async def update_run_if(self, run_id: str, statuses: Sequence[str], **fields: Any) -> Run | None:
        """Update the run only while its status is one of ``statuses`` (atomic); None when it was not."""

        def update() -> Run | None:
            unknown = set(fields) - _RUN_FIELDS
            if unknown:
                raise ValueError(f"not run fields: {sorted(unknown)}")
            assignments = ", ".join(f"{name} = ?" for name in fields)
            cursor = self._db.execute(
                f"UPDATE runs SET {assignments} WHERE id = ? AND status IN ({','.join('?' * len(statuses))})",
                [*fields.values(), run_id, *statuses],
            )
            return self._get_run(run_id) if cursor.rowcount else None

        return await self._call(update)

    async def question_msg_id(self, run_id: str) -> str | None:
        """The platform's id of the message a run answers (None: none, or not from a platform)."""

        def query() -> str | None:
            row = self._db.execute(
                "SELECT m.platform_msg_id FROM runs r JOIN messages m ON m.id = r.trigger_message_id WHERE r.id = ?",
                [run_id],
            ).fetchone()
            return str(row[0]) if row and row[0] else None

        return await self._call(query)

    async def set_reply_ref(self, run_id: str, ref: str) -> None:
        await self._call(self._db.execute, "UPDATE runs SET reply_ref = ? WHERE id = ?", [ref, run_id])

    async def reply_ref(self, run_id: str) -> str | None:
        def query() -> str | None:
            row = self._db.execute("SELECT reply_ref FROM runs WHERE id = ?", [run_id]).fetchone()
            return str(row[0]) if row and row[0] else None

        return await self._call(query)

    async def delete_message(self, message_id: int) -> None:
        await self._call(self._db.execute, "DELETE FROM messages WHERE id = ?", [message_id])

    async def update_run(self, run_id: str, **fields: Any) -> Run:
        def update() -> Run:
            self._update_run(run_id, fields)
            return self._get_run(run_id)

        return await self._call(update)

    async def claim(
        self, thread_id: str, resolve: Callable[[str | None], tuple[str, str]]
    ) -> tuple[ClaimKind, Run | None, list[Approval]]:
        """The thread's next piece of work for this process, claimed in one write transaction.

        Across every process on the database one run per thread is active, and a process does
        only what is its own or what a process that is gone left behind:

        - ("start", run, []): the oldest queued run, now in progress and owned here, its assistant
          and model resolved by ``resolve`` (assistant name or None → (name, model)), when it was
          queued here; ("take", run, []) the same for one queued by a process that is gone (nobody
          here is showing it yet);
        - ("resume", run, approvals): a paused run whose approvals are all decided, now in progress here;
        - ("expire", run, pending): a paused run whose time ran out, now in progress here, its pending
          approvals expired (the caller ends it);
        - ("paused", run, approvals) while a run waits for people;
        - ("busy", None, []): another live process holds the thread, and a run queued here waits
          behind it (look again soon);
        - ("idle", None, []): nothing for this process.
        """

        def claim() -> tuple[ClaimKind, Run | None, list[Approval]]:
            return immediate(self._db, lambda: self._claim(thread_id, resolve), scope=thread_scope(thread_id))

        return await self._call(claim)

    def _claim(
        self, thread_id: str, resolve: Callable[[str | None], tuple[str, str]]
    ) -> tuple[ClaimKind, Run | None, list[Approval]]:
        db, me, now = self._db, self.process_id, time.time()
        waiting: ClaimKind = (
            "busy"
            if db.execute(
                "SELECT 1 FROM runs WHERE thread_id = ? AND status = 'queued' AND origin = ? LIMIT 1", [thread_id, me]
            ).fetchone()
            else "idle"
        )
        marks = ",".join("?" * len(ACTIVE))
        if db.execute(
            f"SELECT 1 FROM runs WHERE thread_id = ? AND status IN ({marks}) LIMIT 1", [thread_id, *ACTIVE]
        ).fetchone():
            return waiting, None, []  # another process's run (this process's lane does one at a time)
        row = db.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE thread_id = ? AND status = 'requires_action'"
            " ORDER BY created_at, rowid LIMIT 1",
            [thread_id],
        ).fetchone()
        if row is not None:
            run = _run(row)
            approvals = [
                Approval(*a)
                for a in db.execute(
                    f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE run_id = ? ORDER BY created_at, rowid", [run.id]
                ).fetchall()
            ]
            pending = [a for a in approvals if a.status == "pending"]
            if pending and min(a.expires_at for a in pending) > now:
                return "paused", run, approvals
            if pending:
                db.execute(
                    f"UPDATE approvals SET status = 'expired' WHERE id IN ({','.join('?' * len(pending))})",
                    [a.id for a in pending],
                )
            self._update_run(run.id, {"status": "in_progress", "owner": me})
            return ("expire" if pending else "resume"), self._get_run(run.id), pending or approvals
        row = db.execute(
            "SELECT id, assistant, spec IS NOT NULL, origin FROM runs WHERE thread_id = ? AND status = 'queued'"
            " ORDER BY created_at, rowid LIMIT 1",
            [thread_id],
        ).fetchone()
        if row is None:
            return "idle", None, []
        origin = row[3]
        if origin not in (None, me) and origin in live_processes(db, self.host, now):
            return waiting, None, []  # its own process answers it, then this one's turn comes
        fields: dict[str, Any] = {"status": "in_progress", "started_at": now, "owner": me, "origin": me}
        if not row[2]:  # a chat run: its channel's assistant from the assistants file, as it is now
            fields["assistant"], fields["model"] = resolve(row[1])
        self._update_run(row[0], fields)
        return ("start" if origin == me else "take"), self._get_run(row[0]), []

    async def finish_run(
        self,
        run: Run,
        *,
        status: str,
        items: Sequence[NewItem] = (),
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        last_error: str | None = None,
        state_json: str | None = None,
        public_ids: Sequence[str | None] = (),
        step_id: str | None = None,
        expect: Sequence[str] | None = None,
    ) -> Run | None:
        """Record the end of a stretch of a run in one transaction.

        Appends what the run produced to its turn, closes its open steps (a completed run gets its
        message-creation step), and sets its status, usage and error. ``public_ids`` and ``step_id``:
        ids chosen in advance for the items and the message-creation step (API runs announce them
        while they stream); random ones otherwise. The run is no longer any process's to run.

        ``expect``: only if the run is in one of these statuses and not running in another process;
        None (and nothing recorded) otherwise.
        """

        def finish() -> Run | None:
            now = time.time()
            if expect is not None:
                row = self._db.execute("SELECT status, owner FROM runs WHERE id = ?", [run.id]).fetchone()
                if row is None or row[0] not in expect or row[1] not in (None, self.process_id):
                    return None
            fields: dict[str, Any] = {"status": status, "state_json": state_json, "owner": None}
            if input_tokens is not None and output_tokens is not None:
                summary_in, summary_out = self._db.execute(
                    "SELECT summary_input_tokens, summary_output_tokens FROM runs WHERE id = ?", [run.id]
                ).fetchone()
                used_in, used_out = input_tokens + summary_in, output_tokens + summary_out
                fields.update(input_tokens=used_in, output_tokens=used_out, total_tokens=used_in + used_out)
            if status in {"completed", "failed", "cancelled", "expired"}:
                fields.update(completed_at=now, last_error=last_error)
            with self._db.atomic():
                self._insert_run_messages(run, items, now, public_ids)
                if status == "completed":
                    self._db.execute(
                        "INSERT INTO run_steps (id, run_id, type, status, created_at, completed_at)"
                        " VALUES (?, ?, 'message_creation', 'completed', ?, ?)",
                        [step_id or new_id("step"), run.id, now, now],
                    )
                elif status != "requires_action":
                    self._db.execute(
                        "UPDATE run_steps SET status = ?, completed_at = ? WHERE run_id = ? AND status = 'in_progress'",
                        ["cancelled" if status == "cancelled" else status, now, run.id],
                    )
                self._update_run(run.id, fields)
                # its budget reservation ends where its usage is recorded (core/store/budgets.py)
                self._db.execute("DELETE FROM budget_holds WHERE run_id = ?", [run.id])
            return self._get_run(run.id)

        if expect is None:
            return await self._call(finish)
        return await self._call(lambda: immediate(self._db, finish, scope=thread_scope(run.thread_id)))

    async def add_summary_usage(self, run_id: str, input_tokens: int, output_tokens: int) -> None:
        """A summary call made for the run: its tokens count as the run's from now on (finish_run keeps them)."""
        await self._call(
            self._db.execute,
            "UPDATE runs SET summary_input_tokens = summary_input_tokens + ?,"
            " summary_output_tokens = summary_output_tokens + ?, input_tokens = input_tokens + ?,"
            " output_tokens = output_tokens + ?, total_tokens = total_tokens + ? WHERE id = ?",
            [input_tokens, output_tokens, input_tokens, output_tokens, input_tokens + output_tokens, run_id],
        )

    async def add_run_usage(self, run_id: str, input_tokens: int, output_tokens: int) -> None:
        await self._call(
            self._db.execute,
            "UPDATE runs SET input_tokens = input_tokens + ?, output_tokens = output_tokens + ?,"
            " total_tokens = total_tokens + ? WHERE id = ?",
            [input_tokens, output_tokens, input_tokens + output_tokens, run_id],
        )

    async def runs_with_status(
        self, statuses: Iterable[str], *, thread_id: str | None = None, channel: str | None = None
    ) -> list[Run]:
        wanted = list(statuses)

        def query() -> list[Run]:
            marks = ",".join("?" * len(wanted))
            sql = f"SELECT {_RUN_COLUMNS} FROM runs WHERE status IN ({marks})"
            params: list[Any] = list(wanted)
            if thread_id is not None:
                sql += " AND thread_id = ?"
                params.append(thread_id)
            if channel is not None:
                sql += " AND channel = ?"
                params.append(channel)
            sql += " ORDER BY created_at, rowid"
            return [_run(row) for row in self._db.execute(sql, params).fetchall()]

        return await self._call(query)

    async def thread_runs(self, thread_id: str) -> list[Run]:
        def query() -> list[Run]:
            rows = self._db.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE thread_id = ? ORDER BY created_at, rowid", [thread_id]
            ).fetchall()
            return [_run(row) for row in rows]

        return await self._call(query)

    # -- run steps ---------------------------------------------------------------------------

    async def add_step(
        self,
        run_id: str,
        type: str,
        *,
        tool_name: str | None = None,
        call_id: str | None = None,
        arguments: str | None = None,
        status: str = "in_progress",
        output: str | None = None,
    ) -> str:
        step_id = new_id("step")
        now = time.time()
        row = {
            "id": step_id,
            "run_id": run_id,
            "type": type,
            "status": status,
            "tool_name": tool_name,
            "call_id": call_id,
            "arguments": arguments,
            "output": output,
            "created_at": now,
            "completed_at": now if status != "in_progress" else None,
        }
        columns = ", ".join(row)
        marks = ", ".join("?" * len(row))
        await self._call(self._db.execute, f"INSERT INTO run_steps ({columns}) VALUES ({marks})", list(row.values()))
        return step_id

    async def add_tool_step_once(
        self, run_id: str, call_id: str, tool_name: str, arguments: str, step: tuple[str, int] | None = None
    ) -> None:
        """The tool call's step, unless the run has one for ``call_id`` already (a resumed run's paused call).

        ``step``: (step id, index) when the call is one of a model response's calls, which make one step
        (core/store/api_runs.py): the first call's row has the step's id, the others name it."""

        def add() -> None:
            if self._db.execute(
                "SELECT 1 FROM run_steps WHERE run_id = ? AND call_id = ? AND type = 'tool_calls'", [run_id, call_id]
            ).fetchone():
                return
            step_id, index = step if step is not None else (None, None)
            row_id = step_id if step_id and index == 0 else new_id("step")
            self._db.execute(
                "INSERT INTO run_steps (id, run_id, type, status, tool_name, call_id, arguments, created_at,"
                " step_id, call_index) VALUES (?, ?, 'tool_calls', 'in_progress', ?, ?, ?, ?, ?, ?)",
                [row_id, run_id, tool_name, call_id, arguments, time.time(), step_id, index],
            )

        await self._call(add)

    async def finish_tool_step(
        self, run_id: str, call_id: str, status: str, output: str | None, details: Mapping[str, Any] | None = None
    ) -> str | None:
        """Finish the tool-call step for ``call_id``, with what its tool recorded (core/tool_details.py);
        returns the tool's name (None if unknown)."""

        def finish() -> str | None:
            row = self._db.execute(
                "SELECT id, tool_name FROM run_steps WHERE run_id = ? AND call_id = ? ORDER BY created_at DESC",
                [run_id, call_id],
            ).fetchone()
            if row is None:
                return None
            now = time.time()
            self._db.execute(
                "UPDATE run_steps SET status = ?, output = ?, completed_at = ?, details = ?,"
                " duration_ms = CAST((? - created_at) * 1000 AS INTEGER) WHERE id = ?",
                [status, output, now, json.dumps(dict(details)) if details else None, now, row[0]],
            )
            return str(row[1])

        return await self._call(finish)

    async def finish_open_steps(self, run_id: str, status: str) -> None:
        await self._call(
            self._db.execute,
            "UPDATE run_steps SET status = ?, completed_at = ? WHERE run_id = ? AND status = 'in_progress'",
            [status, time.time(), run_id],
        )

    async def run_steps(self, run_id: str) -> list[RunStep]:
        def query() -> list[RunStep]:
            rows = self._db.execute(
                "SELECT id, run_id, type, status, tool_name, call_id, arguments, output, duration_ms"
                " FROM run_steps WHERE run_id = ? ORDER BY created_at, rowid",
                [run_id],
            ).fetchall()
            return [RunStep(*row) for row in rows]

        return await self._call(query)

    # -- approvals ---------------------------------------------------------------------------

    async def add_approvals(
        self,
        run_id: str,
        calls: Sequence[tuple[str, str, str]],
        expires_at: float,
        client_tools: frozenset[str] = frozenset(),
    ) -> list[Approval]:
        """Record pending approvals for (call_id, tool_name, arguments) of a paused run.

        Calls to ``client_tools`` (functions an API client defined) wait for the client's output
        rather than for a person's decision."""

        def add() -> list[Approval]:
            now = time.time()
            out = []
            with self._db.atomic():
                for call_id, tool_name, arguments in calls:
                    approval = Approval(
                        id=new_id("appr"),
                        run_id=run_id,
                        call_id=call_id,
                        tool_name=tool_name,
                        arguments=arguments,
                        status="pending",
                        expires_at=expires_at,
                        kind="client_output" if tool_name in client_tools else "approval",
                    )
                    insert_row(
                        self._db,
                        "approvals",
                        {
                            "id": approval.id,
                            "run_id": run_id,
                            "call_id": call_id,
                            "tool_name": tool_name,
                            "arguments": arguments,
                            "status": "pending",
                            "created_at": now,
                            "expires_at": expires_at,
                            "kind": approval.kind,
                        },
                    )
                    out.append(approval)
            return out

        return await self._call(add)

    async def get_approval(self, approval_id: str) -> Approval | None:
        def get() -> Approval | None:
            row = self._db.execute(f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE id = ?", [approval_id]).fetchone()
            return Approval(*row) if row else None

        return await self._call(get)

    async def run_approvals(self, run_id: str) -> list[Approval]:
        def get() -> list[Approval]:
            rows = self._db.execute(
                f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE run_id = ? ORDER BY created_at, rowid",
                [run_id],
            ).fetchall()
            return [Approval(*row) for row in rows]

        return await self._call(get)

    async def decide_approval(self, approval_id: str, status: str, decided_by: str | None) -> bool:
        """Record a decision; False when it was already decided (first decision wins)."""

        def decide() -> bool:
            cursor = self._db.execute(
                "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ? WHERE id = ? AND status = 'pending'"
                " AND EXISTS (SELECT 1 FROM runs WHERE runs.id = approvals.run_id AND status = 'requires_action')",
                [status, decided_by, time.time(), approval_id],
            )
            return cursor.rowcount == 1

        return await self._call(decide)


_MESSAGE_COLUMNS = "id, thread_id, turn_id, role, text, item, tokens, author_id, author_name, run_id, created_at"
_RUN_COLUMNS = (
    "id, thread_id, channel, assistant, status, trigger_message_id, created_at, started_at, completed_at,"
    " last_error, input_tokens, output_tokens, state_json, model, spec, assistant_id, metadata, expires_at,"
    " incomplete_details, actor"
)
_RUN_FIELDS = frozenset(
    {
        "assistant",
        "model",
        "status",
        "started_at",
        "completed_at",
        "last_error",
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "state_json",
        "notified",
        "metadata",
        "expires_at",
        "incomplete_details",
        "owner",
        "origin",
    }
)
_APPROVAL_COLUMNS = "id, run_id, call_id, tool_name, arguments, status, expires_at, decided_by, kind, output"


def _message(row: Sequence[Any]) -> StoredMessage:
    return StoredMessage(
        id=int(row[0]),
        thread_id=row[1],
        turn_id=int(row[2]),
        role=row[3],
        text=row[4] or "",
        item=json.loads(row[5]),
        tokens=int(row[6] or 0),
        author_id=row[7],
        author_name=row[8],
        run_id=row[9],
        created_at=float(row[10] or 0),
    )


def _run(row: Sequence[Any]) -> Run:
    return Run(
        id=row[0],
        thread_id=row[1],
        channel=row[2],
        assistant=row[3],
        status=row[4],
        trigger_message_id=row[5],
        created_at=float(row[6]),
        started_at=row[7],
        completed_at=row[8],
        last_error=row[9],
        input_tokens=int(row[10] or 0),
        output_tokens=int(row[11] or 0),
        state_json=row[12],
        model=row[13],
        spec=row[14],
        assistant_id=row[15],
        metadata=row[16],
        expires_at=row[17],
        incomplete_details=row[18],
        actor=row[19],
    )


@contextlib.contextmanager
def _migration_lock(path: Path) -> Iterator[None]:
    """Processes starting together on one database migrate it one at a time: each migration is a
    transaction, but which ones are pending is read before the first, so two at once would both
    apply it."""
    if str(path) == ":memory:":
        yield
        return
    with open(path.with_name(path.name + "-migrate.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
