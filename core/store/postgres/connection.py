"""A PostgreSQL connection with the surface the store's modules use (core/store/sql.py: ``SqlDatabase``).

The store's statements are written once, with SQLite's ``?`` parameters; here they are turned into
psycopg's ``%s`` (a ``?`` inside a quoted string or identifier stays; every ``%`` is doubled, since
psycopg reads the whole text for placeholders once parameters are given), each statement's form kept
after its first use. The connection runs in autocommit, as the SQLite one does (``isolation_level=None``):
a statement outside a transaction is its own. ``BEGIN IMMEDIATE`` (SQLite's write transaction taken
before its first read) is a plain ``BEGIN`` here: PostgreSQL locks the rows a transaction writes as it
writes them, and the statements that must see no other writer lock what they read (``FOR UPDATE``).
``atomic`` is psycopg's transaction, a savepoint when nested. A statement that needs the new row's id
says ``RETURNING id``, on both engines.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import pq

__all__ = ["PgDatabase", "to_psycopg"]

_ONLY_SQLITE = {"BEGIN IMMEDIATE": "BEGIN"}


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

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        conn.autocommit = True
        self._conn = conn
        self._raw = _Raw(conn)

    @classmethod
    def connect(cls, url: str) -> PgDatabase:
        return cls(psycopg.connect(url, autocommit=True))

    @property
    def conn(self) -> _Raw:
        return self._raw

    def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] | None = None) -> _Cursor:
        statement = _ONLY_SQLITE.get(sql.strip().upper())
        if statement is not None or not parameters:
            return _Cursor(self._conn.execute(statement or sql))  # no parameters: psycopg reads no placeholder
        if isinstance(parameters, dict):
            raise TypeError("the store's statements take ? parameters, not named ones")
        return _Cursor(self._conn.execute(to_psycopg(sql), list(parameters)))

    def atomic(self) -> AbstractContextManager[Any]:
        return self._conn.transaction()

    def close(self) -> None:
        self._conn.close()
