"""The store's PostgreSQL connections: psycopg_pool's pool, one connection lent to each store call.

SQLite has one writer at a time however many connections ask, so its store keeps one thread and one
connection. PostgreSQL serves many at once, and every statement is a round trip to the server: with one
connection, the store calls of hundreds of runs waited in one line for each other's round trips while the
event loop sat idle (bench.replicas, 1,000 channels: the first seconds spent with 256 runs admitted and
waiting on the store). So a store on PostgreSQL has :data:`POOL_SIZE` threads and as many connections, and
each call runs on one thread with one connection it holds from start to end: its transaction, retries and
all (:meth:`PgDatabase.retrying`). What must be decided one at a time takes the database's write lock
(``BEGIN IMMEDIATE``, core/store/postgres/connection.py) across every thread of every replica alike.

:class:`PgPool` has the surface of one :class:`PgDatabase` (what core/store/sql.py's ``SqlDatabase`` asks),
so the store's modules do not know there is a pool: its ``execute`` and ``atomic`` reach the connection the
current thread's call holds. A connection found lost fails the call that found it; the pool then looks at
every idle connection and replaces the lost ones, so the next call gets one that works.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from core.store.postgres.connection import PgDatabase
from core.store.sql import RawConnection, SqlCursor

__all__ = ["POOL_SIZE", "PgPool"]

T = TypeVar("T")

# Connections (and store threads) per process. Four keep two cores' event loop fed with store calls
# (bench.replicas); replicas × (this + the vector reader's) must stay under the server's max_connections.
POOL_SIZE = 4
OPEN_TIMEOUT = 30.0  # seconds to wait at start for the pool's first connections


class PgPool:
    """The store's connections to one PostgreSQL database, lent one to a call on the store's threads."""

    dialect = "postgresql"

    def __init__(self, pool: ConnectionPool[psycopg.Connection[Any]]) -> None:
        self._pool = pool
        self._local = threading.local()

    @classmethod
    def connect(cls, url: str, size: int = POOL_SIZE) -> PgPool:
        pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url, min_size=size, max_size=size, kwargs={"autocommit": True}, open=False, name="threadline store"
        )
        pool.open(wait=True, timeout=OPEN_TIMEOUT)
        return cls(pool)

    def _held(self) -> PgDatabase:
        db: PgDatabase | None = getattr(self._local, "db", None)
        if db is None:
            raise RuntimeError("a store statement ran outside a store call (PgPool.retrying)")
        return db

    # -- what the store's modules use (SqlDatabase) ---------------------------------

    def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] | None = None) -> SqlCursor:
        return self._held().execute(sql, parameters)

    def atomic(self) -> AbstractContextManager[Any]:
        return self._held().atomic()

    @property
    def conn(self) -> RawConnection:
        return self._held().conn

    # -- what the store itself uses ---------------------------------------------------

    def retrying(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on one connection held throughout (a call inside a call keeps the outer one's)."""
        if getattr(self._local, "db", None) is not None:
            return fn(*args)
        with self._pool.connection() as conn:
            db = self._local.db = PgDatabase(conn)
            try:
                return db.retrying(fn, *args)
            except psycopg.OperationalError:
                if conn.closed or conn.broken:
                    self._pool.check()  # the server went away: replace the other idle ones it took too
                raise
            finally:
                self._local.db = None

    def with_connection(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``fn`` with psycopg's own connection (the migration runner's queries)."""
        with self._pool.connection() as conn:
            return fn(conn)

    def close(self) -> None:
        self._pool.close()
