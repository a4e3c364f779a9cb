"""``/v1/files``: upload (multipart), list, retrieve, retrieve content, delete; each key sees only its own files."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from bots.api import serialize_files as serialize
from bots.api.auth import OWNER
from bots.api.errors import ApiError, invalid, not_found
from bots.api.pagination import list_body, page_query, unknown_cursor
from bots.api.uploads import read_upload
from core.api_files import PURPOSES, ApiFiles
from core.errors import UnknownCursor

__all__ = ["FileRoutes"]

MAX_LIST_LIMIT = 10_000  # the old API's files list: up to 10,000 a page, and all of them by default


class FileRoutes:
    def __init__(self, files: ApiFiles) -> None:
        self._files = files

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/files", self.upload),
            web.get("/v1/files", self.list),
            web.get("/v1/files/{file_id}", self.retrieve),
            web.delete("/v1/files/{file_id}", self.delete),
            web.get("/v1/files/{file_id}/content", self.content),
        ]

    def _too_large(self, filename: str, size: int) -> ApiError:
        return ApiError(413, str(self._files.too_large(filename, size)), param="file", code="file_too_large")

    async def upload(self, request: web.Request) -> web.Response:
        received = await read_upload(request, self._files.max_bytes, self._too_large)
        if received.purpose not in PURPOSES:
            raise invalid(
                f"Invalid value for 'purpose': {received.purpose!r}. Threadline keeps files for assistants and "
                "images they are shown, so use purpose 'assistants' (or 'vision' for an image_file).",
                "purpose",
                code="invalid_value",
            )
        record = await self._files.upload(
            request[OWNER],
            filename=received.filename,
            data=received.data,
            mime=received.mime,
            purpose=received.purpose,
        )
        return web.json_response(serialize.file_object(record))

    async def list(self, request: web.Request) -> web.Response:
        query = page_query(request, default_limit=MAX_LIST_LIMIT, max_limit=MAX_LIST_LIMIT)
        try:
            page = await self._files.list(request[OWNER], query, purpose=request.query.get("purpose") or None)
        except UnknownCursor as exc:
            raise unknown_cursor(exc) from None
        return web.json_response(list_body([serialize.file_object(r) for r in page.items], page.has_more))

    async def retrieve(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        record = await self._files.get(request[OWNER], file_id)
        if record is None:
            raise not_found("file", file_id)
        return web.json_response(serialize.file_object(record))

    async def content(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        found = await self._files.content(request[OWNER], file_id)
        if found is None:
            raise not_found("file", file_id)
        record, data = found
        return web.Response(
            body=data,
            content_type="application/octet-stream",
            headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(record.filename)}"},
        )

    async def delete(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        if not await self._files.delete(request[OWNER], file_id):
            raise not_found("file", file_id)
        return web.json_response(serialize.file_deleted(file_id))
