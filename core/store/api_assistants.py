"""Assistants created over the Assistants-compatible API: one table, every query scoped by owner.

These are data, owned by an API key; the chat channels' assistants stay in the assistants file.
Same connection and thread as the rest of the store, through ``Store.call``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from core.models import AssistantRecord, Page, PageQuery
from core.store.paging import fetch_page
from core.store.rows import insert_row, update_row
from core.store.sql import SqlDatabase
from core.store.store import Store, new_id

__all__ = ["ASSISTANT_FIELDS", "AssistantStore"]

# What a client may set; the JSON ones are stored as JSON text.
ASSISTANT_FIELDS = frozenset(
    {
        "name",
        "description",
        "instructions",
        "model",
        "tools",
        "tool_resources",
        "metadata",
        "temperature",
        "top_p",
        "response_format",
        "reasoning_effort",
    }
)
_JSON_FIELDS = frozenset({"tools", "tool_resources", "metadata", "response_format"})
_COLUMNS = (
    "id, owner, created_at, model, name, description, instructions, tools, tool_resources, metadata,"
    " temperature, top_p, response_format, reasoning_effort"
)


def _record(row: Sequence[Any]) -> AssistantRecord:
    return AssistantRecord(
        id=row[0],
        owner=row[1],
        created_at=float(row[2]),
        model=row[3],
        name=row[4],
        description=row[5],
        instructions=row[6],
        tools=json.loads(row[7]),
        tool_resources=json.loads(row[8]) if row[8] is not None else None,
        metadata=json.loads(row[9]),
        temperature=row[10],
        top_p=row[11],
        response_format=json.loads(row[12]) if row[12] is not None else None,
        reasoning_effort=row[13],
    )


def _columns(fields: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - ASSISTANT_FIELDS
    if unknown:
        raise ValueError(f"unknown assistant fields: {sorted(unknown)}")
    return {
        name: json.dumps(value) if name in _JSON_FIELDS and value is not None else value
        for name, value in fields.items()
    }


def _get(db: SqlDatabase, owner: str, assistant_id: str) -> AssistantRecord | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM assistants WHERE id = ? AND owner = ?", [assistant_id, owner]).fetchone()
    return _record(row) if row else None


class AssistantStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def create(self, owner: str, fields: Mapping[str, Any]) -> AssistantRecord:
        """A new assistant; ``fields`` must hold ``model``, and may hold any of :data:`ASSISTANT_FIELDS`."""
        row = {"tools": "[]", "metadata": "{}", **_columns(fields)}
        row.update(id=new_id("asst"), owner=owner, created_at=time.time())

        def create(db: SqlDatabase) -> AssistantRecord:
            insert_row(db, "assistants", row)
            record = _get(db, owner, row["id"])
            assert record is not None
            return record

        return await self._store.call(create)

    async def get(self, owner: str, assistant_id: str) -> AssistantRecord | None:
        return await self._store.call(lambda db: _get(db, owner, assistant_id))

    async def update(self, owner: str, assistant_id: str, fields: Mapping[str, Any]) -> AssistantRecord | None:
        """Set the given fields (None clears one); None when the owner has no such assistant."""
        columns = _columns(fields)

        def update(db: SqlDatabase) -> AssistantRecord | None:
            update_row(db, "assistants", columns, "id = ? AND owner = ?", [assistant_id, owner])
            return _get(db, owner, assistant_id)

        return await self._store.call(update)

    async def delete(self, owner: str, assistant_id: str) -> bool:
        """False when the owner has no such assistant."""

        def delete(db: SqlDatabase) -> bool:
            cursor = db.execute("DELETE FROM assistants WHERE id = ? AND owner = ?", [assistant_id, owner])
            return cursor.rowcount == 1

        return await self._store.call(delete)

    async def list(self, owner: str, query: PageQuery) -> Page[AssistantRecord]:
        """The owner's assistants in creation order; raises UnknownCursor for a cursor that is not one of them."""
        return await self._store.call(
            lambda db: fetch_page(
                db,
                columns=_COLUMNS,
                table="assistants",
                where="owner = ?",
                params=[owner],
                key=["rowid"],
                id_column="id",
                query=query,
                convert=_record,
            )
        )
