"""Writing a row from a mapping of column names, for the store's modules (names come from code, values are bound).

``where`` is a fixed condition written by the caller (e.g. ``"id = ? AND owner = ?"``), so an
object is only ever changed within its owner's scope.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.store.sql import SqlDatabase

__all__ = ["insert_row", "update_row"]


def insert_row(db: SqlDatabase, table: str, row: Mapping[str, Any]) -> None:
    db.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))


def update_row(db: SqlDatabase, table: str, columns: Mapping[str, Any], where: str, params: Sequence[Any]) -> None:
    """Set ``columns`` on the rows matching ``where``; nothing to set is a no-op."""
    if columns:
        assignments = ", ".join(f"{name} = ?" for name in columns)
        db.execute(f"UPDATE {table} SET {assignments} WHERE {where}", [*columns.values(), *params])
