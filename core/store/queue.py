"""How many runs wait in each thread: the SQL behind ``/metrics``' queue depth per thread.

Same connection and thread as the rest of the store, through ``Store.call``. The query reads only
queued runs (the index on ``runs.status``), never the whole table.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.store.sql import SqlDatabase
from core.store.store import Store

__all__ = ["QueueDepths", "QueueStore", "ThreadQueue"]

MAX_THREADS = 100  # the deepest threads listed one by one; a backlog over more threads shows in the total


@dataclass(frozen=True)
class ThreadQueue:
    """A thread with runs waiting for its lane."""

    channel: str
    thread_id: str
    queued: int


@dataclass(frozen=True)
class QueueDepths:
    """Queued runs: how many in all, and the threads that have any (the deepest first, at most ``limit``)."""

    total: int
    threads: tuple[ThreadQueue, ...]


class QueueStore:
    """Queue depth queries, for the metrics page."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def depths(self, limit: int = MAX_THREADS) -> QueueDepths:
        """Runs with status ``queued``, counted per thread in one round trip."""

        def query(db: SqlDatabase) -> QueueDepths:
            rows = db.execute(
                "SELECT thread_id, MAX(channel), COUNT(*) FROM runs WHERE status = 'queued'"
                " GROUP BY thread_id ORDER BY 3 DESC, 1"
            ).fetchall()
            total = sum(int(row[2]) for row in rows)
            return QueueDepths(total, tuple(ThreadQueue(str(row[1]), str(row[0]), int(row[2])) for row in rows[:limit]))

        return await self._store.call(query)
