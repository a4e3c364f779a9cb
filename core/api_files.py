"""Files uploaded over the Assistants-compatible API, owned by API keys, and the vector stores they go into.

An upload keeps its bytes in the store (once per content, shared with the knowledge base) and is
limited by ``THREADLINE_MAX_FILE_MB``, the knowledge base's own limit. Purposes ``assistants`` and
``vision`` (images a message shows the model as ``image_file``) are the ones Threadline keeps.
Deleting an upload removes it from its owner's vector stores too.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid

from core.errors import ThreadlineError
from core.file_records import ApiFileRecord
from core.knowledge.base import KnowledgeBase
from core.models import Page, PageQuery
from core.store import Store
from core.store.api_files import ApiFileStore
from core.vector_stores import VectorStores

__all__ = ["PURPOSES", "ApiFiles", "FileTooLarge"]

PURPOSES = ("assistants", "vision")


class FileTooLarge(ThreadlineError):
    """An upload over ``THREADLINE_MAX_FILE_MB``; the message says so to the client's developer."""

    def __init__(self, filename: str, size: int, limit_mb: float) -> None:
        size_mb = f"{size / 1024 / 1024:.1f} MB" if size >= 1024 * 1024 else f"{size:,} bytes"
        super().__init__(
            f"{filename} is {size_mb}, over the {limit_mb:g} MB limit for files on this server "
            "(THREADLINE_MAX_FILE_MB). Upload a smaller file, or split it."
        )


def new_file_id() -> str:
    """An uploaded file's id, shaped like the old API's (``file-...``)."""
    return f"file-{uuid.uuid4().hex[:24]}"


class ApiFiles:
    def __init__(self, store: Store, knowledge: KnowledgeBase) -> None:
        self._uploads = ApiFileStore(store)
        self._knowledge = knowledge
        self.vector_stores = VectorStores(store, knowledge, self._uploads)

    @property
    def max_bytes(self) -> int:
        return self._knowledge.max_file_bytes

    def too_large(self, filename: str, size: int) -> FileTooLarge:
        """The error for an upload of ``size`` bytes, over the limit (callers check while the bytes arrive)."""
        return FileTooLarge(filename, size, self._knowledge.max_file_mb)

    async def upload(self, owner: str, *, filename: str, data: bytes, mime: str | None, purpose: str) -> ApiFileRecord:
        """Keep an uploaded file; raises FileTooLarge over the limit and ValueError for a purpose not kept here."""
        if purpose not in PURPOSES:
            raise ValueError(f"purpose {purpose!r} is not one of {PURPOSES}")
        if len(data) > self.max_bytes:
            raise self.too_large(filename, len(data))
        sha256 = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        return await self._uploads.create(
            owner, new_file_id(), filename=filename, mime=mime, purpose=purpose, data=data, sha256=sha256
        )

    async def get(self, owner: str, file_id: str) -> ApiFileRecord | None:
        return await self._uploads.get(owner, file_id)

    async def content(self, owner: str, file_id: str) -> tuple[ApiFileRecord, bytes] | None:
        return await self._uploads.content(owner, file_id)

    async def list(self, owner: str, query: PageQuery, *, purpose: str | None = None) -> Page[ApiFileRecord]:
        return await self._uploads.list(owner, query, purpose=purpose)

    async def delete(self, owner: str, file_id: str) -> bool:
        """Delete the file and take it out of the owner's vector stores; False when the owner has no such file."""
        return await self.vector_stores.delete_upload(owner, file_id)
