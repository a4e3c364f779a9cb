"""Files, vector stores, their files and batches to JSON through the openai SDK's own types."""

from __future__ import annotations

from typing import Any

from openai.types import FileDeleted, FileObject, VectorStore, VectorStoreDeleted, VectorStoreSearchResponse
from openai.types.vector_stores import (
    FileContentResponse,
    VectorStoreFile,
    VectorStoreFileBatch,
    VectorStoreFileDeleted,
)

from core.file_records import ApiFileRecord, FileBatchRecord, FileCounts, VectorStoreFileRecord, VectorStoreRecord
from core.vector_stores import SearchResult

__all__ = [
    "file_batch",
    "file_contents",
    "file_deleted",
    "file_object",
    "search_results",
    "vector_store",
    "vector_store_deleted",
    "vector_store_file",
    "vector_store_file_deleted",
]

_LAST_ERROR_CODES = ("server_error", "unsupported_file", "invalid_file")


def file_object(record: ApiFileRecord) -> dict[str, Any]:
    return FileObject.model_validate(
        {
            "id": record.id,
            "object": "file",
            "bytes": record.bytes,
            "created_at": int(record.created_at),
            "filename": record.filename,
            "purpose": record.purpose,
            "status": "processed",  # deprecated in the old API; kept for clients that read it
        }
    ).model_dump(mode="json")


def file_deleted(file_id: str) -> dict[str, Any]:
    return FileDeleted(id=file_id, object="file", deleted=True).model_dump(mode="json")


def _counts(counts: FileCounts) -> dict[str, int]:
    return {
        "in_progress": counts.in_progress,
        "completed": counts.completed,
        "failed": counts.failed,
        "cancelled": counts.cancelled,
        "total": counts.total,
    }


def vector_store(record: VectorStoreRecord, now: float) -> dict[str, Any]:
    expires_at = record.expires_at
    return VectorStore.model_validate(
        {
            "id": record.id,
            "object": "vector_store",
            "created_at": int(record.created_at),
            "name": record.name or "",
            "usage_bytes": record.usage_bytes,
            "file_counts": _counts(record.file_counts),
            "status": record.status(now),
            "expires_after": record.expires_after,
            "expires_at": int(expires_at) if expires_at is not None else None,
            "last_active_at": int(record.last_active_at),
            "metadata": record.metadata,
        }
    ).model_dump(mode="json")


def vector_store_deleted(vector_store_id: str) -> dict[str, Any]:
    return VectorStoreDeleted(id=vector_store_id, object="vector_store.deleted", deleted=True).model_dump(mode="json")


def vector_store_file(record: VectorStoreFileRecord) -> dict[str, Any]:
    last_error = None
    if record.status == "failed":
        code = record.error_code if record.error_code in _LAST_ERROR_CODES else "server_error"
        last_error = {"code": code, "message": record.error or "The file could not be indexed."}
    return VectorStoreFile.model_validate(
        {
            "id": record.id,
            "object": "vector_store.file",
            "created_at": int(record.created_at),
            "vector_store_id": record.vector_store_id,
            "status": record.status,
            "usage_bytes": record.size if record.status == "completed" else 0,
            "last_error": last_error,
            "attributes": record.attributes,
        }
    ).model_dump(mode="json")


def vector_store_file_deleted(file_id: str) -> dict[str, Any]:
    return VectorStoreFileDeleted(id=file_id, object="vector_store.file.deleted", deleted=True).model_dump(mode="json")


def file_batch(record: FileBatchRecord) -> dict[str, Any]:
    return VectorStoreFileBatch.model_validate(
        {
            "id": record.id,
            "object": "vector_store.files_batch",
            "created_at": int(record.created_at),
            "vector_store_id": record.vector_store_id,
            "status": record.status,
            "file_counts": _counts(record.file_counts),
        }
    ).model_dump(mode="json")


def search_results(queries: list[str], results: list[SearchResult]) -> dict[str, Any]:
    """A search's page, as the old API answered it (one page: ``has_more`` is false)."""
    data = [
        VectorStoreSearchResponse.model_validate(
            {
                "file_id": r.file_id,
                "filename": r.filename,
                "score": r.score,
                "attributes": r.attributes,
                "content": [{"type": "text", "text": r.text}],
            }
        ).model_dump(mode="json")
        for r in results
    ]
    return {
        "object": "vector_store.search_results.page",
        "search_query": queries,
        "data": data,
        "has_more": False,
        "next_page": None,
    }


def file_contents(texts: list[str]) -> dict[str, Any]:
    """A vector store file's parsed text, chunk by chunk (one page)."""
    data = [FileContentResponse(type="text", text=text).model_dump(mode="json") for text in texts]
    return {"object": "vector_store.file_content.page", "data": data, "has_more": False, "next_page": None}
