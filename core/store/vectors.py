"""Reading a knowledge base's embeddings without the store's thread.

The store's one thread owns its connection (core/store/store.py), so a long read there holds every
channel's store calls. A channel's vectors can be a gigabyte and more: they are read here instead, on
connections of this reader's own threads, in batches of :data:`VECTOR_BATCH` rows, each batch its own
short read. On SQLite those are read-only connections to the file (the database is WAL, so readers never
wait for the writer nor hold it up); on PostgreSQL, psycopg connections of their own (autocommit: each
read sees what is committed, and holds nothing). The SQL is the same on both (``?`` parameters).
Only embeddings of completed files count, as for every search.

:meth:`VectorReader.for_store` reads the store's database, whichever it is. Vectors are compared in this
process on either engine (core/knowledge): PostgreSQL's pgvector is not used
(:meth:`VectorReader.pgvector_available`).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from core.store.postgres.connection import PgDatabase

if TYPE_CHECKING:
    from core.store.store import Store

__all__ = ["VECTOR_BATCH", "VectorReader"]

_log = logging.getLogger(__name__)
T = TypeVar("T")

VECTOR_BATCH = 20_000  # rows a read: ~30 MB of 384-dim float32, a few tens of ms
READERS = 2  # threads (each with its own connection): a long load and a short re-score at once

_LIVE = (
    " FROM embeddings JOIN chunks ON chunks.id = embeddings.chunk_id"
    " JOIN files ON files.id = chunks.file_id AND files.status = 'completed'"
    " WHERE embeddings.channel = ? AND embeddings.model = ?"
)

# Called in the reader's thread before each batch is read (with the rows read so far): progress, and a
# seam for tests that hold a load half-way.
BatchHook = Callable[[int], None]


class _Reading(Protocol):
    """A reader thread's connection: runs the store's ``?`` SQL; closed at the end."""

    def execute(self, sql: str, parameters: Sequence[Any], /) -> Any: ...

    def close(self) -> None: ...


class _PostgresReading:
    """The store's PostgreSQL connection (core/store/postgres/connection.py), opened again when it was lost."""

    def __init__(self, url: str) -> None:
        self._db = PgDatabase.connect(url)

    def execute(self, sql: str, parameters: Sequence[Any], /) -> Any:
        self._db.reopen_if_lost()  # a server restart: opened again for the next read
        return self._db.execute(sql, parameters)

    def close(self) -> None:
        self._db.close()


class VectorReader:
    """Embeddings of one database, read on connections of their own. :meth:`close` at the end.

    ``path``: the SQLite file; ``url``: a PostgreSQL database instead (``path`` is then not read).
    """

    def __init__(self, path: Path, *, url: str | None = None, before_batch: BatchHook | None = None) -> None:
        self._path = path
        self._url = url
        self._executor = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="threadline-vectors")
        self._local = threading.local()
        self._connections: list[_Reading] = []
        self._lock = threading.Lock()
        self._before_batch = before_batch
        self.loads = 0  # whole channels read (tests: concurrent searches share one)

    @classmethod
    def for_store(cls, store: Store, *, before_batch: BatchHook | None = None) -> VectorReader:
        """A reader of the store's database: its SQLite file, or its PostgreSQL database."""
        return cls(store.path, url=store.url, before_batch=before_batch)

    async def pgvector_available(self) -> bool | None:
        """Whether the PostgreSQL server could give this database pgvector (the ``vector`` extension); None on
        SQLite. This reader does not use it: vectors are compared in this process."""
        if self._url is None:
            return None
        query = "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
        return await self._run(lambda: self._conn().execute(query, []).fetchone() is not None)

    async def close(self) -> None:
        """Close the connections once no read is running: a connection closed under another thread's query
        crashes the process (the reader threads share them with check_same_thread off)."""
        await asyncio.to_thread(self._executor.shutdown, wait=True)  # reads in flight finish first
        self._close_all()  # no thread uses them any more: closing is quick

    def _close_all(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    def _conn(self) -> _Reading:
        conn: _Reading | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _connect(self) -> _Reading:
        if self._url is not None:
            return _PostgresReading(self._url)
        uri = self._path.resolve().as_uri() + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def shape(self, channel: str, model: str) -> tuple[int, int]:
        """(rows, dim) of the channel's embeddings for ``model``; of the largest dim when models' dims differ."""
        return await self._run(lambda: self._shape(channel, model))

    def _shape(self, channel: str, model: str) -> tuple[int, int]:
        rows = self._conn().execute(f"SELECT embeddings.dim, count(*){_LIVE} GROUP BY embeddings.dim", [channel, model])
        counts = {int(dim): int(n) for dim, n in rows.fetchall()}
        if not counts:
            return 0, 0
        dim = max(counts)
        return counts[dim], dim

    async def load(self, channel: str, model: str) -> tuple[np.ndarray, np.ndarray]:
        """Every embedding of the channel: (chunk ids int64, float32 rows), ordered by chunk id.

        The rows go straight into one array of the size counted first (no second copy of a large channel).
        """
        self.loads += 1
        return await self._run(lambda: self._load(channel, model))

    def _load(self, channel: str, model: str) -> tuple[np.ndarray, np.ndarray]:
        count, dim = self._shape(channel, model)
        ids = np.empty(count, dtype=np.int64)
        matrix = np.empty((count, max(dim, 1)), dtype=np.float32)
        filled = 0
        more: list[tuple[np.ndarray, np.ndarray]] = []  # rows written since the count

        def each(batch_ids: np.ndarray, rows: np.ndarray) -> None:
            nonlocal filled
            take = min(len(batch_ids), count - filled)
            ids[filled : filled + take] = batch_ids[:take]
            matrix[filled : filled + take] = rows[:take]
            filled += take
            if take < len(batch_ids):
                more.append((batch_ids[take:], rows[take:].copy()))

        self._scan(channel, model, each, dim)
        ids, matrix = ids[:filled], matrix[:filled]
        if more:
            ids = np.concatenate([ids, *(m[0] for m in more)])
            matrix = np.vstack([matrix, *(m[1] for m in more)])
        return ids, matrix

    async def scan(self, channel: str, model: str, each: Callable[[np.ndarray, np.ndarray], None]) -> int:
        """Call ``each(ids, rows)`` in the reader's thread for every batch of the channel's embeddings; the dim."""
        return await self._run(lambda: self._scan(channel, model, each))

    def _scan(
        self, channel: str, model: str, each: Callable[[np.ndarray, np.ndarray], None], dim: int | None = None
    ) -> int:
        if dim is None:
            _, dim = self._shape(channel, model)
        if dim == 0:
            return 0
        conn = self._conn()
        after, done = -1, 0
        while True:
            if self._before_batch is not None:
                self._before_batch(done)
            rows = conn.execute(
                f"SELECT embeddings.chunk_id, embeddings.vector{_LIVE} AND embeddings.dim = ?"
                " AND embeddings.chunk_id > ? ORDER BY embeddings.chunk_id LIMIT ?",
                [channel, model, dim, after, VECTOR_BATCH],
            ).fetchall()
            if not rows:
                return dim
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), dim)
            each(ids, matrix.astype(np.float32, copy=False))
            after, done = int(ids[-1]), done + len(rows)

    async def ids(self, channel: str, model: str, dim: int) -> np.ndarray:
        """The chunk ids (int64, ascending) of the channel's embeddings of this dim."""

        def read() -> np.ndarray:
            rows = self._conn().execute(
                f"SELECT embeddings.chunk_id{_LIVE} AND embeddings.dim = ? ORDER BY embeddings.chunk_id",
                [channel, model, dim],
            )
            return np.fromiter((r[0] for r in rows), dtype=np.int64)

        return await self._run(read)

    async def by_ids(self, channel: str, model: str, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Those of ``ids`` that are still the channel's (a completed file's), with their float32 rows.

        What a search from an index finds is checked and scored here: a chunk removed since the index
        was written is not among them.
        """
        wanted = [int(i) for i in ids]

        def read() -> tuple[np.ndarray, np.ndarray]:
            found: list[tuple[int, bytes]] = []
            conn = self._conn()
            for start in range(0, len(wanted), 500):
                part = wanted[start : start + 500]
                found += conn.execute(
                    f"SELECT embeddings.chunk_id, embeddings.vector{_LIVE}"
                    f" AND embeddings.chunk_id IN ({', '.join('?' * len(part))})",
                    [channel, model, *part],
                ).fetchall()
            lengths = {len(v) for _, v in found}
            if not found or len(lengths) > 1:
                found = [r for r in found if len(r[1]) == max(lengths)] if found else []
            if not found:
                return np.zeros(0, dtype=np.int64), np.zeros((0, 1), dtype=np.float32)
            dim = len(found[0][1]) // 4
            matrix = np.frombuffer(b"".join(v for _, v in found), dtype="<f4").reshape(len(found), dim)
            return np.array([r[0] for r in found], dtype=np.int64), matrix.astype(np.float32)

        return await self._run(read)
