"""Cursor pagination as the old Assistants API did it: ``limit``, ``order``, ``after``, ``before``.

Objects are ordered by a key of one or more columns (compared as a row value). ``after`` and
``before`` are object ids, looked up to their keys within the same scope (the same ``where``), so an
id from another list, or another owner's, is an unknown cursor here. ``after`` pages onward in the
order asked for. ``before`` alone pages back: the ``limit`` objects just before it, still in the
order asked for, with ``has_more`` saying whether more lie before those.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from core.errors import UnknownCursor
from core.models import Page, PageQuery
from core.store.sql import SqlDatabase

__all__ = ["fetch_page"]

T = TypeVar("T")


def fetch_page(
    db: SqlDatabase,
    *,
    columns: str,
    table: str,
    where: str,
    params: Sequence[Any],
    key: Sequence[str],
    id_column: str,
    query: PageQuery,
    convert: Callable[[Sequence[Any]], T],
) -> Page[T]:
    """One page of ``SELECT columns FROM table WHERE where``, ordered by ``key``; call on the store's thread."""
    key_sql = f"({', '.join(key)})"
    marks = f"({', '.join('?' * len(key))})"

    def cursor(param: str, value: str) -> list[Any]:
        row = db.execute(
            f"SELECT {', '.join(key)} FROM {table} WHERE {where} AND {id_column} = ?", [*params, value]
        ).fetchone()
        if row is None:
            raise UnknownCursor(param, value)
        return list(row)

    ascending = query.order == "asc"
    conditions = [where]
    args = list(params)
    if query.after is not None:
        conditions.append(f"{key_sql} {'>' if ascending else '<'} {marks}")
        args += cursor("after", query.after)
    if query.before is not None:
        conditions.append(f"{key_sql} {'<' if ascending else '>'} {marks}")
        args += cursor("before", query.before)
    backwards = query.before is not None and query.after is None
    direction = "ASC" if ascending != backwards else "DESC"
    rows = db.execute(
        f"SELECT {columns} FROM {table} WHERE {' AND '.join(conditions)}"
        f" ORDER BY {', '.join(f'{column} {direction}' for column in key)} LIMIT ?",
        [*args, query.limit + 1],
    ).fetchall()
    has_more = len(rows) > query.limit
    rows = rows[: query.limit]
    if backwards:
        rows.reverse()
    return Page([convert(row) for row in rows], has_more)
