"""``/v1/vector_stores``, their files and file batches, as the old API had them.

Objects still being indexed carry an ``openai-poll-after-ms`` header, which the openai SDK's
``*_and_poll`` helpers follow instead of their one-second default.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from bots.api import serialize_files as serialize
from bots.api.auth import OWNER
from bots.api.errors import ApiError, invalid, not_found
from bots.api.file_requests import (
    FileBatchCreate,
    VectorStoreCreate,
    VectorStoreFileCreate,
    VectorStoreFileUpdate,
    VectorStoreSearch,
    VectorStoreUpdate,
)
from bots.api.pagination import list_body, page_query, unknown_cursor
from bots.api.requests import read_body
from core.errors import UnknownCursor, UnknownObject
from core.file_records import FILE_STATUSES, FileStatus
from core.vector_stores import VectorStores

__all__ = ["POLL_AFTER_MS", "VectorStoreRoutes"]

POLL_AFTER_MS = 500


def _json(body: dict[str, Any]) -> web.Response:
    """The object as JSON; with a polling hint while it is still being indexed."""
    in_progress = body.get("status") == "in_progress"
    headers = {"openai-poll-after-ms": str(POLL_AFTER_MS)} if in_progress else None
    return web.json_response(body, headers=headers)


def _status_filter(request: web.Request) -> FileStatus | None:
    raw = request.query.get("filter")
    if raw is None:
        return None
    for status in FILE_STATUSES:
        if raw == status:
            return status
    raise invalid(
        f"Invalid value for 'filter': expected one of {', '.join(FILE_STATUSES)}, but got {raw!r}.",
        "filter",
        code="invalid_value",
    )


def _unknown(exc: UnknownObject) -> ApiError:
    return not_found(exc.kind, exc.object_id)


class VectorStoreRoutes:
    def __init__(self, vector_stores: VectorStores) -> None:
        self._stores = vector_stores

    def routes(self) -> list[web.RouteDef]:
        one = "/v1/vector_stores/{vector_store_id}"
        files = one + "/files"
        batches = one + "/file_batches"
        return [
            web.post("/v1/vector_stores", self.create),
            web.get("/v1/vector_stores", self.list),
            web.get(one, self.retrieve),
            web.post(one, self.modify),
            web.delete(one, self.delete),
            web.post(files, self.create_file),
            web.get(files, self.list_files),
            web.post(one + "/search", self.search),
            web.get(files + "/{file_id}", self.retrieve_file),
            web.get(files + "/{file_id}/content", self.file_content),
            web.post(files + "/{file_id}", self.update_file),
            web.delete(files + "/{file_id}", self.delete_file),
            web.post(batches, self.create_batch),
            web.get(batches + "/{batch_id}", self.retrieve_batch),
            web.post(batches + "/{batch_id}/cancel", self.cancel_batch),
            web.get(batches + "/{batch_id}/files", self.list_batch_files),
        ]

    # -- vector stores ---------------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.Response:
        body = await read_body(request, VectorStoreCreate)
        try:
            record = await self._stores.create(request[OWNER], body.fields(), body.attachments())
        except UnknownObject as exc:
            raise _unknown(exc) from None
        return _json(serialize.vector_store(record, time.time()))

    async def list(self, request: web.Request) -> web.Response:
        query = page_query(request)
        try:
            page = await self._stores.list_stores(request[OWNER], query)
        except UnknownCursor as exc:
            raise unknown_cursor(exc) from None
        now = time.time()
        return web.json_response(list_body([serialize.vector_store(r, now) for r in page.items], page.has_more))

    async def retrieve(self, request: web.Request) -> web.Response:
        vector_store_id = request.match_info["vector_store_id"]
        record = await self._stores.get(request[OWNER], vector_store_id)
        if record is None:
            raise not_found("vector store", vector_store_id)
        return _json(serialize.vector_store(record, time.time()))

    async def modify(self, request: web.Request) -> web.Response:
        vector_store_id = request.match_info["vector_store_id"]
        body = await read_body(request, VectorStoreUpdate)
        record = await self._stores.update(request[OWNER], vector_store_id, body.fields())
        if record is None:
            raise not_found("vector store", vector_store_id)
        return _json(serialize.vector_store(record, time.time()))

    async def delete(self, request: web.Request) -> web.Response:
        vector_store_id = request.match_info["vector_store_id"]
        if not await self._stores.delete(request[OWNER], vector_store_id):
            raise not_found("vector store", vector_store_id)
        return web.json_response(serialize.vector_store_deleted(vector_store_id))

    async def search(self, request: web.Request) -> web.Response:
        vector_store_id = request.match_info["vector_store_id"]
        body = await read_body(request, VectorStoreSearch)
        queries = body.queries()
        threshold = body.ranking_options.score_threshold if body.ranking_options else None
        try:
            results = await self._stores.search(
                request[OWNER],
                vector_store_id,
                queries,
                max_results=body.max_num_results,
                filters=body.filter(),
                score_threshold=threshold or 0.0,
            )
        except UnknownObject as exc:
            raise _unknown(exc) from None
        return web.json_response(serialize.search_results(queries, results))

    # -- files -------------------------------------------------------------------------------------

    async def create_file(self, request: web.Request) -> web.Response:
        vector_store_id = request.match_info["vector_store_id"]
        body = await read_body(request, VectorStoreFileCreate)
        file_id, attributes = body.attachment()
        try:
            record = await self._stores.attach(request[OWNER], vector_store_id, file_id, attributes)
        except UnknownObject as exc:
            raise _unknown(exc) from None
        return _json(serialize.vector_store_file(record))

    async def list_files(self, request: web.Request) -> web.Response:
        vector_store_id = request.match_info["vector_store_id"]
        query, status = page_query(request), _status_filter(request)
        try:
            page = await self._stores.files(request[OWNER], vector_store_id, query, status=status)
        except UnknownCursor as exc:
            raise unknown_cursor(exc) from None
        if page is None:
            raise not_found("vector store", vector_store_id)
        return web.json_response(list_body([serialize.vector_store_file(r) for r in page.items], page.has_more))

    async def retrieve_file(self, request: web.Request) -> web.Response:
        vector_store_id, file_id = request.match_info["vector_store_id"], request.match_info["file_id"]
        record = await self._stores.file(request[OWNER], vector_store_id, file_id)
        if record is None:
            raise await self._file_not_found(request[OWNER], vector_store_id, file_id)
        return _json(serialize.vector_store_file(record))

    async def file_content(self, request: web.Request) -> web.Response:
        vector_store_id, file_id = request.match_info["vector_store_id"], request.match_info["file_id"]
        texts = await self._stores.file_content(request[OWNER], vector_store_id, file_id)
        if texts is None:
            raise await self._file_not_found(request[OWNER], vector_store_id, file_id)
        return web.json_response(serialize.file_contents(texts))

    async def update_file(self, request: web.Request) -> web.Response:
        vector_store_id, file_id = request.match_info["vector_store_id"], request.match_info["file_id"]
        body = await read_body(request, VectorStoreFileUpdate)
        record = await self._stores.update_file(request[OWNER], vector_store_id, file_id, body.attributes)
        if record is None:
            raise await self._file_not_found(request[OWNER], vector_store_id, file_id)
        return _json(serialize.vector_store_file(record))

    async def delete_file(self, request: web.Request) -> web.Response:
        vector_store_id, file_id = request.match_info["vector_store_id"], request.match_info["file_id"]
        if not await self._stores.detach(request[OWNER], vector_store_id, file_id):
            raise await self._file_not_found(request[OWNER], vector_store_id, file_id)
        return web.json_response(serialize.vector_store_file_deleted(file_id))

    async def _file_not_found(self, owner: str, vector_store_id: str, file_id: str) -> ApiError:
        """404 naming what is missing: the vector store, or the file in it."""
        if await self._stores.get(owner, vector_store_id) is None:
            return not_found("vector store", vector_store_id)
        return ApiError(404, f"No file found with id '{file_id}' in vector store '{vector_store_id}'.")

    # -- batches -----------------------------------------------------------------------------------

    async def create_batch(self, request: web.Request) -> web.Response:
        vector_store_id = request.match_info["vector_store_id"]
        body = await read_body(request, FileBatchCreate)
        try:
            record = await self._stores.create_batch(request[OWNER], vector_store_id, body.attachments())
        except UnknownObject as exc:
            raise _unknown(exc) from None
        return _json(serialize.file_batch(record))

    async def retrieve_batch(self, request: web.Request) -> web.Response:
        vector_store_id, batch_id = request.match_info["vector_store_id"], request.match_info["batch_id"]
        record = await self._stores.batch(request[OWNER], vector_store_id, batch_id)
        if record is None:
            raise await self._batch_not_found(request[OWNER], vector_store_id, batch_id)
        return _json(serialize.file_batch(record))

    async def cancel_batch(self, request: web.Request) -> web.Response:
        vector_store_id, batch_id = request.match_info["vector_store_id"], request.match_info["batch_id"]
        record = await self._stores.cancel_batch(request[OWNER], vector_store_id, batch_id)
        if record is None:
            raise await self._batch_not_found(request[OWNER], vector_store_id, batch_id)
        return _json(serialize.file_batch(record))

    async def list_batch_files(self, request: web.Request) -> web.Response:
        vector_store_id, batch_id = request.match_info["vector_store_id"], request.match_info["batch_id"]
        query, status = page_query(request), _status_filter(request)
        try:
            page = await self._stores.batch_files(request[OWNER], vector_store_id, batch_id, query, status=status)
        except UnknownCursor as exc:
            raise unknown_cursor(exc) from None
        if page is None:
            raise await self._batch_not_found(request[OWNER], vector_store_id, batch_id)
        return web.json_response(list_body([serialize.vector_store_file(r) for r in page.items], page.has_more))

    async def _batch_not_found(self, owner: str, vector_store_id: str, batch_id: str) -> ApiError:
        if await self._stores.get(owner, vector_store_id) is None:
            return not_found("vector store", vector_store_id)
        return not_found("vector store file batch", batch_id)
