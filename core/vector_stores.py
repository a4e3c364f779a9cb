"""Vector stores of the Assistants-compatible API: each one is a knowledge base of its own.

A vector store's knowledge base has the key ``api:<owner>:<vector store id>`` (the shape of an
API thread's channel), so the knowledge base's pipeline, chunking, embeddings and search work on
it unchanged, and a run's file search reaches it by that key (``collections`` in the run's
context). Attaching an uploaded file gives it a file in that knowledge base (named after the
upload, its ``platform_file_id`` the upload's id), indexed in the background: the vector store
file's status is that file's, so it moves from ``in_progress`` to ``completed`` or ``failed``
exactly as indexing does. A batch attaches several files at once; cancelling it stops those
still being indexed, which end ``cancelled``.

Everything is scoped by owner: another owner's vector stores, files and batches are not found
(:class:`UnknownObject`), and an owner can only attach its own uploads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.api_objects import api_channel
from core.attribute_filters import passes
from core.errors import UnknownObject
from core.file_records import FileBatchRecord, FileStatus, VectorStoreFileRecord, VectorStoreRecord
from core.knowledge.base import KnowledgeBase, Upload
from core.models import Page, PageQuery
from core.store import Store
from core.store.api_files import ApiFileStore
from core.store.api_vector_stores import VectorStoreStore
from core.store.store import new_id

__all__ = ["FileAttachment", "SearchResult", "VectorStores"]

_log = logging.getLogger(__name__)

# (uploaded file id, attributes or None)
FileAttachment = tuple[str, Mapping[str, Any] | None]

SEARCH_CANDIDATES = 50  # chunks ranked before attribute filters and the score threshold narrow them


@dataclass(frozen=True)
class SearchResult:
    """One chunk a vector store search found, with its file as the API names it."""

    file_id: str  # the uploaded file's id
    filename: str
    score: float  # in (0, 1]: core/knowledge/base.py
    attributes: dict[str, str | float | bool] | None
    text: str


class VectorStores:
    def __init__(self, store: Store, knowledge: KnowledgeBase, uploads: ApiFileStore) -> None:
        self._stores = VectorStoreStore(store)
        self._uploads = uploads
        self._knowledge = knowledge
        # Attaching and detaching check, then write: one at a time, so a file is never attached twice
        # to a store, nor attached while it is being deleted.
        self._lock = asyncio.Lock()

    # -- vector stores ---------------------------------------------------------------------------

    async def create(
        self, owner: str, fields: Mapping[str, Any], files: Sequence[FileAttachment] = ()
    ) -> VectorStoreRecord:
        """A new vector store, with these uploads attached; UnknownObject for a file the owner does not have."""
        vector_store_id = new_id("vs")
        async with self._lock:
            await self._check_uploads(owner, [file_id for file_id, _ in files])
            key = api_channel(owner, vector_store_id)
            await self._stores.create(owner, vector_store_id, key, fields)
            for file_id, attributes in files:
                await self._attach(owner, vector_store_id, key, file_id, attributes)
        return await self._get(owner, vector_store_id)

    async def get(self, owner: str, vector_store_id: str) -> VectorStoreRecord | None:
        return await self._stores.get(owner, vector_store_id)

    async def list_stores(self, owner: str, query: PageQuery) -> Page[VectorStoreRecord]:
        return await self._stores.list_stores(owner, query)

    async def update(self, owner: str, vector_store_id: str, fields: Mapping[str, Any]) -> VectorStoreRecord | None:
        return await self._stores.update(owner, vector_store_id, fields)

    async def delete(self, owner: str, vector_store_id: str) -> bool:
        """Delete the vector store and its knowledge base (indexing in progress is stopped)."""
        async with self._lock:
            key = await self._key(owner, vector_store_id)
            if key is None:
                return False
            await self._knowledge.cancel_indexing(await self._stores.in_progress(key))
            await self._knowledge.forget_all(key)
            return await self._stores.delete(owner, vector_store_id)

    async def search(
        self,
        owner: str,
        vector_store_id: str,
        queries: Sequence[str],
        *,
        max_results: int,
        filters: Mapping[str, Any] | None = None,
        score_threshold: float = 0.0,
    ) -> list[SearchResult]:
        """The store's best chunks for the queries (searched as one), best first; UnknownObject for a store the
        owner does not have. Attribute filters and the threshold apply to the best ``SEARCH_CANDIDATES``."""
        key = await self._key(owner, vector_store_id)
        if key is None:
            raise UnknownObject("vector store", vector_store_id)
        hits = await self._knowledge.search_many([key], " ".join(queries), SEARCH_CANDIDATES)
        files = await self._stores.by_knowledge_ids(vector_store_id, key, [h.file_id for h in hits])
        results = []
        for hit in hits:
            record = files.get(hit.file_id)
            if record is None or hit.score < score_threshold:
                continue
            if filters is not None and not passes(filters, record.attributes):
                continue
            results.append(SearchResult(record.id, hit.file_name, hit.score, record.attributes, hit.text))
        return results[:max_results]

    async def file_content(self, owner: str, vector_store_id: str, file_id: str) -> list[str] | None:
        """The text the store holds of one of its files, chunk by chunk; None when it has no such file."""
        found = await self._stores.file(owner, vector_store_id, file_id)
        if found is None:
            return None
        return await self._knowledge.chunk_texts(found.knowledge_file_id)

    async def knowledge_keys(self, owner: str, vector_store_ids: Sequence[str]) -> list[str]:
        """The knowledge-base keys of the owner's vector stores among these ids, in order (for file search)."""
        keys = await self._stores.knowledge_keys(owner, vector_store_ids)
        return [keys[i] for i in dict.fromkeys(vector_store_ids) if i in keys]

    # -- files -------------------------------------------------------------------------------------

    async def attach(
        self, owner: str, vector_store_id: str, file_id: str, attributes: Mapping[str, Any] | None = None
    ) -> VectorStoreFileRecord:
        """Attach an upload (indexed in the background); attaching it again returns the file as it is.

        Raises UnknownObject for a vector store or a file the owner does not have.
        """
        async with self._lock:
            key = await self._key(owner, vector_store_id)
            if key is None:
                raise UnknownObject("vector store", vector_store_id)
            await self._check_uploads(owner, [file_id])
            return await self._attach(owner, vector_store_id, key, file_id, attributes)

    async def file(self, owner: str, vector_store_id: str, file_id: str) -> VectorStoreFileRecord | None:
        return await self._stores.file(owner, vector_store_id, file_id)

    async def files(
        self, owner: str, vector_store_id: str, query: PageQuery, *, status: FileStatus | None = None
    ) -> Page[VectorStoreFileRecord] | None:
        return await self._stores.files(owner, vector_store_id, query, status=status)

    async def update_file(
        self, owner: str, vector_store_id: str, file_id: str, attributes: Mapping[str, Any] | None
    ) -> VectorStoreFileRecord | None:
        found = await self._stores.file(owner, vector_store_id, file_id)
        if found is None:
            return None
        await self._stores.set_attributes(found.knowledge_file_id, attributes)
        return await self._stores.file(owner, vector_store_id, file_id)

    async def detach(self, owner: str, vector_store_id: str, file_id: str) -> bool:
        """Remove a file from the vector store (the upload stays); False when it is not there."""
        async with self._lock:
            return await self._detach(owner, vector_store_id, file_id)

    async def delete_upload(self, owner: str, file_id: str) -> bool:
        """Delete an upload and remove it from every vector store of its owner, as the old API did."""
        async with self._lock:
            for vector_store in await self._stores.holding(owner, file_id):
                await self._detach(owner, vector_store.id, file_id)
            return await self._uploads.delete(owner, file_id)

    # -- batches -----------------------------------------------------------------------------------

    async def create_batch(self, owner: str, vector_store_id: str, files: Sequence[FileAttachment]) -> FileBatchRecord:
        """Attach several uploads at once; UnknownObject for a vector store or a file the owner does not have."""
        batch_id = new_id("vsfb")
        async with self._lock:
            key = await self._key(owner, vector_store_id)
            if key is None:
                raise UnknownObject("vector store", vector_store_id)
            await self._check_uploads(owner, [file_id for file_id, _ in files])
            for file_id, attributes in files:
                await self._attach(owner, vector_store_id, key, file_id, attributes)
            await self._stores.create_batch(vector_store_id, batch_id, [file_id for file_id, _ in files])
        batch = await self._stores.batch(owner, vector_store_id, batch_id)
        assert batch is not None
        return batch

    async def batch(self, owner: str, vector_store_id: str, batch_id: str) -> FileBatchRecord | None:
        return await self._stores.batch(owner, vector_store_id, batch_id)

    async def cancel_batch(self, owner: str, vector_store_id: str, batch_id: str) -> FileBatchRecord | None:
        """Stop indexing the batch's files that are still in progress (they end ``cancelled``).

        A batch that has finished stays as it is. None when the owner has no such batch.
        """
        async with self._lock:
            batch = await self._stores.batch(owner, vector_store_id, batch_id)
            key = await self._key(owner, vector_store_id)
            if batch is None or key is None:
                return None
            if batch.status == "in_progress":
                pending = await self._stores.in_progress(key, await self._stores.batch_file_ids(batch_id))
                stopped = await self._knowledge.cancel_indexing(pending)
                await self._stores.mark_cancelled(stopped)
                await self._stores.cancel_batch(batch_id)
                _log.info("cancelled batch %s: stopped indexing %d files", batch_id, len(stopped))
        return await self._stores.batch(owner, vector_store_id, batch_id)

    async def batch_files(
        self, owner: str, vector_store_id: str, batch_id: str, query: PageQuery, *, status: FileStatus | None = None
    ) -> Page[VectorStoreFileRecord] | None:
        return await self._stores.files(owner, vector_store_id, query, status=status, batch_id=batch_id)

    # -- the work, under the lock ---------------------------------------------------------------------

    async def _key(self, owner: str, vector_store_id: str) -> str | None:
        return (await self._stores.knowledge_keys(owner, [vector_store_id])).get(vector_store_id)

    async def _get(self, owner: str, vector_store_id: str) -> VectorStoreRecord:
        record = await self._stores.get(owner, vector_store_id)
        assert record is not None
        return record

    async def _check_uploads(self, owner: str, file_ids: Sequence[str]) -> None:
        for file_id in dict.fromkeys(file_ids):
            if await self._uploads.get(owner, file_id) is None:
                raise UnknownObject("file", file_id)

    async def _attach(
        self, owner: str, vector_store_id: str, key: str, file_id: str, attributes: Mapping[str, Any] | None
    ) -> VectorStoreFileRecord:
        existing = await self._stores.file(owner, vector_store_id, file_id)
        if existing is None:
            content = await self._uploads.content(owner, file_id)
            if content is None:
                raise UnknownObject("file", file_id)
            upload, data = content
            row = await self._knowledge.add_in_background(
                key,
                Upload(name=upload.filename, data=data, mime=upload.mime, platform_file_id=file_id),
            )
            if attributes is not None:
                await self._stores.set_attributes(row.id, attributes)
        elif attributes is not None:
            await self._stores.set_attributes(existing.knowledge_file_id, attributes)
        found = await self._stores.file(owner, vector_store_id, file_id)
        assert found is not None
        return found

    async def _detach(self, owner: str, vector_store_id: str, file_id: str) -> bool:
        found = await self._stores.file(owner, vector_store_id, file_id)
        key = await self._key(owner, vector_store_id)
        if found is None or key is None:
            return False
        await self._knowledge.cancel_indexing([found.knowledge_file_id])
        await self._knowledge.forget_platform_file(key, file_id)
        return True
