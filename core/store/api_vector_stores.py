"""Vector stores of the Assistants-compatible API, their files and file batches.

A vector store is a row of ``vector_stores`` (owned by an API key) naming its knowledge base
(``knowledge_key``). Its files are that knowledge base's ``files`` rows, each naming the uploaded
file in ``platform_file_id``: the knowledge base writes them (core/knowledge/base.py), this module
reads them as vector store files and counts them. Every query reaches files through a vector
store of the owner, so another owner's ids are simply not found. Same connection and thread as the
rest of the store, through ``Store.call``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from core.file_records import FileBatchRecord, FileCounts, FileStatus, VectorStoreFileRecord, VectorStoreRecord
from core.models import Page, PageQuery
from core.store.dialect import json_object
from core.store.paging import fetch_page
from core.store.rows import insert_row, update_row
from core.store.sql import SqlDatabase
from core.store.store import Store

__all__ = ["VECTOR_STORE_FIELDS", "VectorStoreStore"]

VECTOR_STORE_FIELDS = frozenset({"name", "description", "metadata", "expires_after"})
_JSON_FIELDS = frozenset({"metadata", "expires_after"})


def _counts(db: SqlDatabase) -> str:
    """One JSON object of counts over a set of files rows (``f``): statuses, and the bytes of those indexed."""
    statuses = [
        (status, f"sum(CASE WHEN f.status = '{status}' THEN 1 ELSE 0 END)")
        for status in ("in_progress", "completed", "failed", "cancelled")
    ]
    return json_object(db, [*statuses, ("usage_bytes", "sum(CASE WHEN f.status = 'completed' THEN f.size ELSE 0 END)")])


def _store_columns(db: SqlDatabase) -> str:
    return (
        "id, owner, knowledge_key, name, description, metadata, expires_after, created_at, last_active_at,"
        f" (SELECT {_counts(db)} FROM files f WHERE f.channel = vector_stores.knowledge_key"
        " AND f.platform_file_id IS NOT NULL)"
    )


# A vector store's files: rows of its knowledge base that name an uploaded file.
_FILE_COLUMNS = "platform_file_id, id, status, created_at, size, error, error_code, attributes"
_STORE_FILES = "channel = ? AND platform_file_id IS NOT NULL"


def _store(row: Sequence[Any]) -> VectorStoreRecord:
    counts = json.loads(row[9]) if row[9] else {}
    return VectorStoreRecord(
        id=row[0],
        owner=row[1],
        knowledge_key=row[2],
        name=row[3],
        description=row[4],
        metadata=json.loads(row[5]) if row[5] else {},
        expires_after=json.loads(row[6]) if row[6] else None,
        created_at=float(row[7]),
        last_active_at=float(row[8]),
        file_counts=FileCounts.from_statuses(counts),
        usage_bytes=int(counts.get("usage_bytes") or 0),
    )


def _file_converter(vector_store_id: str) -> Callable[[Sequence[Any]], VectorStoreFileRecord]:
    def convert(row: Sequence[Any]) -> VectorStoreFileRecord:
        status: FileStatus = row[2] if row[2] in ("in_progress", "completed", "failed", "cancelled") else "failed"
        return VectorStoreFileRecord(
            id=row[0],
            vector_store_id=vector_store_id,
            knowledge_file_id=row[1],
            status=status,
            created_at=float(row[3] or 0),
            size=int(row[4] or 0),
            error=row[5],
            error_code=row[6],
            attributes=json.loads(row[7]) if row[7] else None,
        )

    return convert


def _get_store(db: SqlDatabase, owner: str, vector_store_id: str) -> VectorStoreRecord | None:
    row = db.execute(
        f"SELECT {_store_columns(db)} FROM vector_stores WHERE id = ? AND owner = ?", [vector_store_id, owner]
    ).fetchone()
    return _store(row) if row else None


def _key(db: SqlDatabase, owner: str, vector_store_id: str) -> str | None:
    row = db.execute(
        "SELECT knowledge_key FROM vector_stores WHERE id = ? AND owner = ?", [vector_store_id, owner]
    ).fetchone()
    return str(row[0]) if row else None


def _get_file(db: SqlDatabase, owner: str, vector_store_id: str, file_id: str) -> VectorStoreFileRecord | None:
    key = _key(db, owner, vector_store_id)
    if key is None:
        return None
    row = db.execute(
        f"SELECT {_FILE_COLUMNS} FROM files WHERE {_STORE_FILES} AND platform_file_id = ? ORDER BY rowid DESC LIMIT 1",
        [key, file_id],
    ).fetchone()
    return _file_converter(vector_store_id)(row) if row else None


def _get_batch(db: SqlDatabase, owner: str, vector_store_id: str, batch_id: str) -> FileBatchRecord | None:
    key = _key(db, owner, vector_store_id)
    if key is None:
        return None
    row = db.execute(
        "SELECT id, created_at, cancelled_at FROM vector_store_file_batches WHERE id = ? AND vector_store_id = ?",
        [batch_id, vector_store_id],
    ).fetchone()
    if row is None:
        return None
    counts = db.execute(
        f"SELECT {_counts(db)} FROM files f WHERE f.channel = ?"
        " AND f.platform_file_id IN (SELECT file_id FROM vector_store_batch_files WHERE batch_id = ?)",
        [key, batch_id],
    ).fetchone()[0]
    return FileBatchRecord(
        id=row[0],
        vector_store_id=vector_store_id,
        created_at=float(row[1]),
        file_counts=FileCounts.from_statuses(json.loads(counts) if counts else {}),
        cancelled=row[2] is not None,
    )


def _columns(fields: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - VECTOR_STORE_FIELDS
    if unknown:
        raise ValueError(f"unknown vector store fields: {sorted(unknown)}")
    return {
        name: json.dumps(value) if name in _JSON_FIELDS and value is not None else value
        for name, value in fields.items()
    }


class VectorStoreStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    # -- vector stores ---------------------------------------------------------------------------

    async def create(
        self, owner: str, vector_store_id: str, knowledge_key: str, fields: Mapping[str, Any]
    ) -> VectorStoreRecord:
        now = time.time()
        row = {"metadata": "{}", **_columns(fields)}
        row.update(id=vector_store_id, owner=owner, knowledge_key=knowledge_key, created_at=now, last_active_at=now)

        def create(db: SqlDatabase) -> VectorStoreRecord:
            insert_row(db, "vector_stores", row)
            record = _get_store(db, owner, vector_store_id)
            assert record is not None
            return record

        return await self._store.call(create)

    async def get(self, owner: str, vector_store_id: str) -> VectorStoreRecord | None:
        return await self._store.call(lambda db: _get_store(db, owner, vector_store_id))

    async def update(self, owner: str, vector_store_id: str, fields: Mapping[str, Any]) -> VectorStoreRecord | None:
        """Set the given fields (None clears one); None when the owner has no such vector store."""
        columns = _columns(fields)

        def update(db: SqlDatabase) -> VectorStoreRecord | None:
            update_row(db, "vector_stores", columns, "id = ? AND owner = ?", [vector_store_id, owner])
            return _get_store(db, owner, vector_store_id)

        return await self._store.call(update)

    async def delete(self, owner: str, vector_store_id: str) -> bool:
        """Delete the vector store and its batches (its knowledge base's files are the knowledge base's to remove)."""

        def delete(db: SqlDatabase) -> bool:
            if _key(db, owner, vector_store_id) is None:
                return False
            batches = "SELECT id FROM vector_store_file_batches WHERE vector_store_id = ?"
            with db.atomic():
                db.execute(f"DELETE FROM vector_store_batch_files WHERE batch_id IN ({batches})", [vector_store_id])
                db.execute("DELETE FROM vector_store_file_batches WHERE vector_store_id = ?", [vector_store_id])
                db.execute("DELETE FROM vector_stores WHERE id = ?", [vector_store_id])
            return True

        return await self._store.call(delete)

    async def list_stores(self, owner: str, query: PageQuery) -> Page[VectorStoreRecord]:
        """The owner's vector stores in creation order; raises UnknownCursor for a cursor that is not one of them."""
        return await self._store.call(
            lambda db: fetch_page(
                db,
                columns=_store_columns(db),
                table="vector_stores",
                where="owner = ?",
                params=[owner],
                key=["rowid"],
                id_column="id",
                query=query,
                convert=_store,
            )
        )

    async def holding(self, owner: str, file_id: str) -> list[VectorStoreRecord]:
        """The owner's vector stores that have this uploaded file."""

        def holding(db: SqlDatabase) -> list[VectorStoreRecord]:
            rows = db.execute(
                f"SELECT {_store_columns(db)} FROM vector_stores WHERE owner = ? AND EXISTS (SELECT 1 FROM files"
                " WHERE files.channel = vector_stores.knowledge_key AND files.platform_file_id = ?)",
                [owner, file_id],
            ).fetchall()
            return [_store(row) for row in rows]

        return await self._store.call(holding)

    async def knowledge_keys(self, owner: str, vector_store_ids: Sequence[str]) -> dict[str, str]:
        """Vector store id → knowledge-base key, for those of the ids the owner has."""
        ids = list(vector_store_ids)

        def keys(db: SqlDatabase) -> dict[str, str]:
            if not ids:
                return {}
            rows = db.execute(
                f"SELECT id, knowledge_key FROM vector_stores WHERE owner = ? AND id IN ({', '.join('?' * len(ids))})",
                [owner, *ids],
            ).fetchall()
            return {str(row[0]): str(row[1]) for row in rows}

        return await self._store.call(keys)

    # -- files -------------------------------------------------------------------------------------

    async def file(self, owner: str, vector_store_id: str, file_id: str) -> VectorStoreFileRecord | None:
        return await self._store.call(lambda db: _get_file(db, owner, vector_store_id, file_id))

    async def by_knowledge_ids(
        self, vector_store_id: str, key: str, ids: Sequence[str]
    ) -> dict[str, VectorStoreFileRecord]:
        """The vector store's files among these knowledge-base file ids (the store's knowledge key ``key``)."""
        wanted = list(dict.fromkeys(ids))

        def load(db: SqlDatabase) -> dict[str, VectorStoreFileRecord]:
            if not wanted:
                return {}
            marks = ",".join("?" * len(wanted))
            rows = db.execute(
                f"SELECT {_FILE_COLUMNS} FROM files WHERE {_STORE_FILES} AND id IN ({marks})", [key, *wanted]
            ).fetchall()
            convert = _file_converter(vector_store_id)
            return {record.knowledge_file_id: record for record in map(convert, rows)}

        return await self._store.call(load)

    async def files(
        self,
        owner: str,
        vector_store_id: str,
        query: PageQuery,
        *,
        status: FileStatus | None = None,
        batch_id: str | None = None,
    ) -> Page[VectorStoreFileRecord] | None:
        """The vector store's files in the order they were attached, of one status and one batch if given.

        None when the owner has no such vector store (or it has no such batch); raises UnknownCursor
        for a cursor that is not one of the listed files.
        """

        def list_(db: SqlDatabase) -> Page[VectorStoreFileRecord] | None:
            key = _key(db, owner, vector_store_id)
            if key is None:
                return None
            where, params = _STORE_FILES, [key]
            if status is not None:
                where += " AND status = ?"
                params.append(status)
            if batch_id is not None:
                if _get_batch(db, owner, vector_store_id, batch_id) is None:
                    return None
                where += " AND platform_file_id IN (SELECT file_id FROM vector_store_batch_files WHERE batch_id = ?)"
                params.append(batch_id)
            return fetch_page(
                db,
                columns=_FILE_COLUMNS,
                table="files",
                where=where,
                params=params,
                key=["rowid"],
                id_column="platform_file_id",
                query=query,
                convert=_file_converter(vector_store_id),
            )

        return await self._store.call(list_)

    async def in_progress(self, knowledge_key: str, file_ids: Sequence[str] | None = None) -> list[str]:
        """Knowledge-base file ids of the store's files still being indexed (of these uploaded files, if given)."""

        def find(db: SqlDatabase) -> list[str]:
            sql = f"SELECT id FROM files WHERE {_STORE_FILES} AND status = 'in_progress'"
            params: list[Any] = [knowledge_key]
            if file_ids is not None:
                sql += f" AND platform_file_id IN ({', '.join('?' * len(file_ids))})"
                params += list(file_ids)
            return [str(row[0]) for row in db.execute(sql, params).fetchall()]

        return await self._store.call(find)

    async def set_attributes(self, knowledge_file_id: str, attributes: Mapping[str, Any] | None) -> None:
        await self._store.call(
            lambda db: db.execute(
                "UPDATE files SET attributes = ? WHERE id = ?",
                [json.dumps(dict(attributes)) if attributes is not None else None, knowledge_file_id],
            )
        )

    async def mark_cancelled(self, knowledge_file_ids: Sequence[str]) -> None:
        """Files whose indexing was stopped by a cancel: ``cancelled``, not ``failed``."""
        ids = list(knowledge_file_ids)
        if not ids:
            return
        await self._store.call(
            lambda db: db.execute(
                "UPDATE files SET status = 'cancelled', error = NULL, error_code = NULL"
                f" WHERE id IN ({', '.join('?' * len(ids))}) AND status = 'failed'",
                ids,
            )
        )

    # -- batches -----------------------------------------------------------------------------------

    async def create_batch(self, vector_store_id: str, batch_id: str, file_ids: Sequence[str]) -> None:
        ids = list(dict.fromkeys(file_ids))

        def create(db: SqlDatabase) -> None:
            with db.atomic():
                db.execute(
                    "INSERT INTO vector_store_file_batches (id, vector_store_id, created_at) VALUES (?, ?, ?)",
                    [batch_id, vector_store_id, time.time()],
                )
                db.conn.executemany(
                    "INSERT INTO vector_store_batch_files (batch_id, file_id) VALUES (?, ?)",
                    [(batch_id, file_id) for file_id in ids],
                )

        await self._store.call(create)

    async def batch(self, owner: str, vector_store_id: str, batch_id: str) -> FileBatchRecord | None:
        return await self._store.call(lambda db: _get_batch(db, owner, vector_store_id, batch_id))

    async def batch_file_ids(self, batch_id: str) -> list[str]:
        return await self._store.call(
            lambda db: [
                str(row[0])
                for row in db.execute(
                    "SELECT file_id FROM vector_store_batch_files WHERE batch_id = ?", [batch_id]
                ).fetchall()
            ]
        )

    async def cancel_batch(self, batch_id: str) -> None:
        await self._store.call(
            lambda db: db.execute(
                "UPDATE vector_store_file_batches SET cancelled_at = ? WHERE id = ? AND cancelled_at IS NULL",
                [time.time(), batch_id],
            )
        )
