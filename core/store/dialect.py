"""The few forms the store's SQL writes differently for SQLite and PostgreSQL, as small functions of the connection.

Everything else is written once, in what both engines run (core/store/sql.py). These are SQLite's scalar
functions PostgreSQL names otherwise: ``max(a, b)`` (``greatest``), ``instr`` (``strpos``),
``json_extract`` (``->>`` on ``jsonb``) and ``json_object`` (``json_build_object``, as text). Each takes
SQL expressions (the store's own, never a caller's text) and gives the expression for the connection's engine.
And one statement: :func:`begin_deciding`, how a transaction that decides from what it reads begins.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.store.postgres.connection import SCOPE_LOCKS, WRITE_LOCK
from core.store.sql import SqlDatabase

__all__ = ["begin_deciding", "greatest", "is_postgres", "json_object", "json_text", "position"]


def is_postgres(db: SqlDatabase) -> bool:
    return getattr(db, "dialect", "sqlite") == "postgresql"


def greatest(db: SqlDatabase, *expressions: str) -> str:
    """The largest of the expressions (SQLite's ``max`` with two or more arguments is the scalar one)."""
    return f"{'GREATEST' if is_postgres(db) else 'MAX'}({', '.join(expressions)})"


def position(db: SqlDatabase, haystack: str, needle: str) -> str:
    """Where ``needle`` first occurs in ``haystack``, from 1; 0 when it does not."""
    return f"strpos({haystack}, {needle})" if is_postgres(db) else f"instr({haystack}, {needle})"


def json_text(db: SqlDatabase, column: str, key: str) -> str:
    """The value at ``key`` of the JSON object in the text ``column``, as text (NULL when absent)."""
    if not key.isidentifier():
        raise ValueError(f"not a JSON key the store uses: {key!r}")
    return f"(({column})::jsonb ->> '{key}')" if is_postgres(db) else f"json_extract({column}, '$.{key}')"


def json_object(db: SqlDatabase, fields: Sequence[tuple[str, str]]) -> str:
    """A JSON object, as text, of (key, SQL expression) pairs: ``{"key": value, ...}``."""
    if not all(key.isidentifier() for key, _ in fields):
        raise ValueError("not JSON keys the store uses")
    pairs = ", ".join(f"'{key}', {expression}" for key, expression in fields)
    return f"json_build_object({pairs})::text" if is_postgres(db) else f"json_object({pairs})"


def begin_deciding(db: SqlDatabase, scope: str | None) -> None:
    """Begin a transaction that decides from what it reads, serialised with every other one deciding about
    ``scope`` (a thread: ``thread:<id>``), in every process; None: with every other one at all.

    SQLite: ``BEGIN IMMEDIATE`` either way, one writer at a time in the whole database. PostgreSQL: the
    database's write lock (core/store/postgres/connection.py), which a transaction deciding about one scope
    holds shared and takes that scope's lock besides: deciding about two threads happens at once, about
    one thread one at a time, and a transaction deciding about everything (recovering a dead process's
    runs across threads) waits for all of them and they for it. The write lock is always taken first.
    """
    if scope is None or not is_postgres(db):
        db.execute("BEGIN IMMEDIATE")
        return
    db.execute("BEGIN")
    db.execute(
        "SELECT pg_advisory_xact_lock_shared(?), pg_advisory_xact_lock(?, hashtext(?))",
        [WRITE_LOCK, SCOPE_LOCKS, scope],
    )
