"""A PostgreSQL connection with the surface the store's modules use (core/store/sql.py: ``SqlDatabase``).

The store's statements are written once, with SQLite's ``?`` parameters; here they are turned into
psycopg's ``%s`` (a ``?`` inside a quoted string or identifier stays; every ``%`` is doubled, since
psycopg reads the whole text for placeholders once parameters are given), each statement's form kept
after its first use. The connection runs in autocommit, as the SQLite one does (``isolation_level=None``):
a statement outside a transaction is its own. ``atomic`` is psycopg's transaction, a savepoint when
nested. A statement that needs the new row's id says ``RETURNING id``, on both engines.

``BEGIN IMMEDIATE`` is SQLite's write transaction taken before its first read: one at a time in the
whole database, so what it reads no other such transaction changes before it commits. The store relies
on that where it decides from what it reads (claiming a thread's next run, recovering a dead process's
runs, reserving a budget). Here it is ``BEGIN`` and then the database's write lock, an advisory lock
held until the transaction ends (:data:`WRITE_LOCK`): the same guarantee across every replica, for the
same few short transactions, while every other statement runs beside them under PostgreSQL's row locks.

What fails for a reason of the moment is tried again (:meth:`PgDatabase.retrying`): a serialisation
failure or a deadlock PostgreSQL broke. A connection that was lost (the server restarted, a proxy closed
it) is opened again for the next call; the call that found it lost fails, since whether its last
statement committed is unknown.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from functools import lru_cache
from typing import Any, TypeVar

import psycopg
from psycopg import errors, pq

__all__ = ["SCOPE_LOCKS", "WRITE_LOCK", "PgDatabase", "to_psycopg"]

_log = logging.getLogger(__name__)
T = TypeVar("T")

# The advisory lock a write transaction (``BEGIN IMMEDIATE``) holds: a number of the application's own
# choosing, the bytes of "threadwr" (migrating takes another, core/store/postgres/migrate.py).
WRITE_LOCK = 0x7468726561647772
# The advisory locks of one scope each (core/store/dialect.py ``begin_deciding``): this class (the bytes of
# "thrd"), and the hash of the scope's name.
SCOPE_LOCKS = 0x74687264
RETRIES = 6  # a call PostgreSQL broke off (serialisation failure, deadlock) is tried this often in all
_TRANSIENT = (errors.SerializationFailure, errors.DeadlockDetected, errors.LockNotAvailable)


@lru_cache(maxsize=4096)
def to_psycopg(sql: str) -> str:
    """``sql`` with psycopg's placeholders: ``?`` → ``%s`` outside quotes, ``%`` → ``%%`` everywhere."""
    out: list[str] = []
    quote: str | None = None
    for char in sql:
        if quote is not None:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "?":
            out.append("%s")
            continue
        out.append("%%" if char == "%" else char)
    return "".join(out)


class _Cursor:
    """psycopg's cursor, as the store reads a sqlite3 one."""

    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def fetchone(self) -> Any:
        return self._cursor.fetchone() if self._cursor.description is not None else None

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall() if self._cursor.description is not None else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class _Raw:
    """What the store asks of the raw connection: ``executemany``, ``in_transaction``, ``rollback``."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    @property
    def in_transaction(self) -> bool:
        return self._conn.info.transaction_status != pq.TransactionStatus.IDLE

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any:
        with self._conn.cursor() as cursor:
            cursor.executemany(to_psycopg(sql), list(parameters))
            return cursor.rowcount

    def rollback(self) -> None:
        self._conn.execute("ROLLBACK")


class PgDatabase:
    """One psycopg connection (synchronous: it lives on a store thread, as SQLite's does), in autocommit."""

    dialect = "postgresql"

    def __init__(self, conn: psycopg.Connection[Any], url: str | None = None) -> None:
        conn.autocommit = True
        self._conn = conn
        self._raw = _Raw(conn)
        self._url = url

    @classmethod
    def connect(cls, url: str) -> PgDatabase:
        return cls(psycopg.connect(url, autocommit=True), url)

    @property
    def conn(self) -> _Raw:
        return self._raw

    @property
    def connection(self) -> psycopg.Connection[Any]:
        """psycopg's own connection (migrations run on it)."""
        return self._conn

    def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] | None = None) -> _Cursor:
        if sql.strip().upper() == "BEGIN IMMEDIATE":
            self._conn.execute("BEGIN")
            return _Cursor(self._conn.execute("SELECT pg_advisory_xact_lock(%s)", [WRITE_LOCK]))
        if not parameters:
            return _Cursor(self._conn.execute(sql))  # no parameters: psycopg reads no placeholder
        if isinstance(parameters, dict):
            raise TypeError("the store's statements take ? parameters, not named ones")
        return _Cursor(self._conn.execute(to_psycopg(sql), list(parameters)))

    def retrying(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, again when PostgreSQL broke it off for a reason of the moment; a lost connection is
        opened again for the next call (this one fails: whether its last statement committed is unknown)."""
        self.reopen_if_lost()
        for attempt in range(RETRIES):
            try:
                return fn(*args)
            except _TRANSIENT as exc:
                self._end_transaction()
                if attempt == RETRIES - 1:
                    raise
                _log.info("PostgreSQL broke a transaction off (%s); trying again", type(exc).__name__)
                time.sleep(0.02 * 2**attempt)  # the store's own thread, not the event loop
            except BaseException:
                self._end_transaction()
                raise
        raise AssertionError("unreachable")

    def _end_transaction(self) -> None:
        """Roll back what a failed call left open, so the next call starts clean."""
        if self._conn.closed:
            return
        if self._conn.info.transaction_status != pq.TransactionStatus.IDLE:
            with contextlib.suppress(psycopg.Error):
                self._conn.execute("ROLLBACK")

    def reopen_if_lost(self) -> None:
        """A connection that was lost (the server restarted, a proxy closed it) is opened again."""
        if self._conn.closed and self._url is not None:
            self._reconnect()

    def _reconnect(self) -> None:
        assert self._url is not None
        _log.warning("the connection to PostgreSQL was lost; connecting again")
        self._conn = psycopg.connect(self._url, autocommit=True)
        self._raw = _Raw(self._conn)

    def atomic(self) -> AbstractContextManager[Any]:
        return self._conn.transaction()

    def close(self) -> None:
        self._conn.close()
