"""Files uploaded over the Assistants-compatible API: one row each in ``api_files``, owned by an API key.

The bytes are kept once per content in ``file_contents`` (by SHA-256), the table the knowledge
base keeps its files' originals in, and go when neither an uploaded file nor a knowledge-base
file has them any more. Every query names the owner as well as the id, so another owner's file
is simply not found. Same connection and thread as the rest of the store, through ``Store.call``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from core.file_records import ApiFileRecord
from core.models import Page, PageQuery
from core.store.files import drop_unused_content
from core.store.paging import fetch_page
from core.store.sql import SqlDatabase
from core.store.store import Store

__all__ = ["ApiFileStore"]

_COLUMNS = "id, owner, filename, bytes, sha256, purpose, created_at, mime"


def _record(row: Sequence[Any]) -> ApiFileRecord:
    return ApiFileRecord(
        id=row[0],
        owner=row[1],
        filename=row[2],
        bytes=int(row[3]),
        sha256=row[4],
        purpose=row[5],
        created_at=float(row[6]),
        mime=row[7],
    )


def _get(db: SqlDatabase, owner: str, file_id: str) -> ApiFileRecord | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM api_files WHERE id = ? AND owner = ?", [file_id, owner]).fetchone()
    return _record(row) if row else None


class ApiFileStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def create(
        self,
        owner: str,
        file_id: str,
        *,
        filename: str,
        mime: str | None,
        purpose: str,
        data: bytes,
        sha256: str,
        run_id: str | None = None,
        call_id: str | None = None,
    ) -> ApiFileRecord:
        """Keep the bytes (once per content) and the file's row, in one transaction. ``run_id``, ``call_id``: the
        run and tool call that wrote it (a code interpreter's output)."""

        def create(db: SqlDatabase) -> ApiFileRecord:
            with db.atomic():
                db.execute(
                    "INSERT INTO file_contents (sha256, data) VALUES (?, ?) ON CONFLICT DO NOTHING", [sha256, data]
                )
                db.execute(
                    "INSERT INTO api_files (id, owner, filename, bytes, sha256, mime, purpose, created_at, run_id,"
                    " call_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [file_id, owner, filename, len(data), sha256, mime, purpose, time.time(), run_id, call_id],
                )
            record = _get(db, owner, file_id)
            assert record is not None
            return record

        return await self._store.call(create)

    async def get(self, owner: str, file_id: str) -> ApiFileRecord | None:
        return await self._store.call(lambda db: _get(db, owner, file_id))

    async def many(self, owner: str, file_ids: Sequence[str]) -> dict[str, ApiFileRecord]:
        """The owner's files among these ids, by id (another owner's, or none, are left out)."""
        wanted = sorted(set(file_ids))
        if not wanted:
            return {}

        def load(db: SqlDatabase) -> dict[str, ApiFileRecord]:
            marks = ", ".join("?" * len(wanted))
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM api_files WHERE owner = ? AND id IN ({marks})", [owner, *wanted]
            ).fetchall()
            return {row[0]: _record(row) for row in rows}

        return await self._store.call(load)

    async def content(self, owner: str, file_id: str) -> tuple[ApiFileRecord, bytes] | None:
        """The file and its bytes; None when the owner has no such file."""

        def load(db: SqlDatabase) -> tuple[ApiFileRecord, bytes] | None:
            record = _get(db, owner, file_id)
            if record is None:
                return None
            row = db.execute("SELECT data FROM file_contents WHERE sha256 = ?", [record.sha256]).fetchone()
            return (record, bytes(row[0])) if row else None

        return await self._store.call(load)

    async def delete(self, owner: str, file_id: str) -> bool:
        """Delete the file's row, and its bytes when nothing else has them; False when the owner has no such file."""

        def delete(db: SqlDatabase) -> bool:
            record = _get(db, owner, file_id)
            if record is None:
                return False
            with db.atomic():
                db.execute("DELETE FROM api_files WHERE id = ?", [file_id])
                drop_unused_content(db, record.sha256)
            return True

        return await self._store.call(delete)

    async def list(self, owner: str, query: PageQuery, *, purpose: str | None = None) -> Page[ApiFileRecord]:
        """The owner's files in upload order, of one purpose if given; raises UnknownCursor for a foreign cursor."""
        where, params = "owner = ?", [owner]
        if purpose is not None:
            where += " AND purpose = ?"
            params.append(purpose)
        return await self._store.call(
            lambda db: fetch_page(
                db,
                columns=_COLUMNS,
                table="api_files",
                where=where,
                params=params,
                key=["rowid"],
                id_column="id",
                query=query,
                convert=_record,
            )
        )
