"""Small helpers for driving the core service in tests."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from agents import FunctionTool
from agents.tool_context import ToolContext

from core.events import Event
from core.handles import RunHandle
from core.models import Author, Incoming
from core.service import Threadline
from core.store import Store

CHANNEL = "console:local:test"
ALICE = Author(id="U_ALICE", name="alice")
# The Assistants-compatible API's two keys in tests (the api_server fixture's).
API_KEY_A = "tl-test-key-a-0123456789abcdef"
API_KEY_B = "tl-test-key-b-0123456789abcdef"


async def post(service: Threadline, text: str, *, channel: str = CHANNEL, msg_id: str | None = None) -> RunHandle:
    handle = await service.post(Incoming(channel, ALICE, text, platform_msg_id=msg_id))
    assert handle is not None
    return handle


async def collect(handle: RunHandle) -> list[Event]:
    return [event async for event in handle.events()]


async def ask(service: Threadline, text: str, *, channel: str = CHANNEL) -> list[Event]:
    return await collect(await post(service, text, channel=channel))


async def invoke_tool(tool: FunctionTool, **arguments: Any) -> str:
    """Call a tool the way openai-agents does, with JSON arguments, and return its result."""
    raw = json.dumps(arguments)
    context = ToolContext(context=None, tool_name=tool.name, tool_call_id="call_1", tool_arguments=raw)
    result = await tool.on_invoke_tool(context, raw)
    assert isinstance(result, str)
    return result


async def channel_in_old_schema(store: Store, key: str) -> str:
    """A channel and its thread as every schema since m001 stores them (the store's own code writes today's
    columns, which an older schema lacks); returns the thread id."""
    platform, workspace, channel_id = key.split(":", 2)
    thread_id = f"thread_{channel_id}"

    def insert(db: Any) -> None:
        db.execute(
            "INSERT INTO channels (key, platform, workspace, channel_id, thread_id, created_at)"
            " VALUES (?, ?, ?, ?, ?, 0)",
            [key, platform, workspace, channel_id, thread_id],
        )
        db.execute("INSERT INTO threads (id, channel, created_at) VALUES (?, ?, 0)", [thread_id, key])

    await store.call(insert)
    return thread_id


@dataclass(frozen=True)
class StoreDatabase:
    """The test's database: the SQLite file at ``path``, or the PostgreSQL database at ``url`` (``path``'s
    folder then holds only what a process caches on disk, as in production)."""

    path: Path
    url: str | None

    @property
    def is_postgres(self) -> bool:
        return self.url is not None

    async def open(self, **options: Any) -> Store:
        """A store on this database (again: each call is another process's connection to the same data)."""
        return await Store.open(self.path, url=self.url, **options)

    def rows(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """``sql``'s rows, read on a connection of its own (as another process would read them), synchronously."""
        if self.url is None:
            with contextlib.closing(sqlite3.connect(self.path)) as conn:
                return list(conn.execute(sql, parameters).fetchall())
        with psycopg.connect(self.url, autocommit=True) as pg:
            return list(pg.execute(sql.replace("?", "%s"), parameters).fetchall())

    def env(self) -> dict[str, str]:
        """The environment that points ``python -m bots`` at this database."""
        return {"THREADLINE_DB": str(self.path), **({"THREADLINE_DATABASE_URL": self.url} if self.url else {})}


@contextlib.contextmanager
def busy_sqlite(path: Path, insert: str, rows: Callable[[int], list[tuple[Any, ...]]]) -> Iterator[threading.Event]:
    """Another connection writes to the SQLite database at ``path`` until the block ends: ``insert`` with
    ``rows(n)``, the n-th transaction's rows, one transaction after another. The event is set after 200."""
    stop, warmed = threading.Event(), threading.Event()

    def write() -> None:
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA busy_timeout=30000")
        pair = 0
        while not stop.is_set():
            db.execute("BEGIN IMMEDIATE")
            db.executemany(insert, rows(pair))
            db.execute("COMMIT")
            pair += 1
            if pair == 200:
                warmed.set()
        db.close()

    writer = threading.Thread(target=write, name="busy writer")
    writer.start()
    try:
        yield warmed
    finally:
        stop.set()
        writer.join()
