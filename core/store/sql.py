"""What the store's modules may ask of a database connection: the surface SQLite and PostgreSQL share.

The store's SQL is written once, in the subset of SQL both engines run (``?`` parameters, upserts as
``ON CONFLICT``), and its modules reach the connection only through :class:`SqlDatabase`: ``execute``
a statement, ``atomic`` for a transaction (a savepoint inside one), and on the raw connection
``executemany``, ``in_transaction`` and ``rollback``. A new row's id comes from ``RETURNING id``
(SQLite's ``lastrowid`` has no PostgreSQL counterpart). sqlite-utils' ``Database`` is one such connection;
the PostgreSQL store supplies another. Schema changes are not part of it: each engine has its migrations.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import psycopg

__all__ = ["INTEGRITY_ERRORS", "RawConnection", "SqlCursor", "SqlDatabase", "insert_row"]

# What either engine raises for a statement that a key or constraint refuses (a duplicate delivery, say).
INTEGRITY_ERRORS: tuple[type[Exception], ...] = (sqlite3.IntegrityError, psycopg.IntegrityError)


class SqlCursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class RawConnection(Protocol):
    @property
    def in_transaction(self) -> bool: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any: ...

    def rollback(self) -> None: ...


class SqlDatabase(Protocol):
    @property
    def conn(self) -> RawConnection: ...

    def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] | None = None) -> SqlCursor: ...

    def atomic(self) -> AbstractContextManager[Any]: ...


def insert_row(db: SqlDatabase, table: str, row: Mapping[str, Any], *, replace_on: Sequence[str] = ()) -> None:
    """INSERT one row (its keys are the columns: the store's own names, never a caller's); with ``replace_on``,
    the row takes the place of one with the same values in those (key) columns."""
    columns = ", ".join(row)
    sql = f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' for _ in row)})"
    if replace_on:
        updated = ", ".join(f"{c} = excluded.{c}" for c in row if c not in replace_on)
        sql += f" ON CONFLICT ({', '.join(replace_on)}) DO UPDATE SET {updated}"
    db.execute(sql, list(row.values()))
