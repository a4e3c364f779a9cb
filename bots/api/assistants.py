"""``/v1/assistants``: create, list, retrieve, modify (POST), delete."""

from __future__ import annotations

from aiohttp import web

from bots.api import serialize
from bots.api.auth import OWNER
from bots.api.errors import invalid, not_found
from bots.api.pagination import list_body, page_query, unknown_cursor
from bots.api.requests import AssistantCreate, AssistantUpdate, read_body
from core.api_objects import ApiObjects
from core.attachments import ResourcesRefused
from core.errors import UnknownCursor

__all__ = ["AssistantRoutes"]


class AssistantRoutes:
    def __init__(self, objects: ApiObjects) -> None:
        self._objects = objects
        self._assistants = objects.assistants

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/assistants", self.create),
            web.get("/v1/assistants", self.list),
            web.get("/v1/assistants/{assistant_id}", self.retrieve),
            web.post("/v1/assistants/{assistant_id}", self.modify),
            web.delete("/v1/assistants/{assistant_id}", self.delete),
        ]

    async def create(self, request: web.Request) -> web.Response:
        body = await read_body(request, AssistantCreate)
        fields = body.fields()
        if body.tool_resources is not None:  # its vector stores made inline, first
            try:
                fields["tool_resources"] = await self._objects.inline_resources(
                    request[OWNER], body.tool_resources.stored()
                )
            except ResourcesRefused as exc:
                raise invalid(str(exc), exc.param) from None
        record = await self._assistants.create(request[OWNER], fields)
        return web.json_response(serialize.assistant(record))

    async def list(self, request: web.Request) -> web.Response:
        query = page_query(request)
        try:
            page = await self._assistants.list(request[OWNER], query)
        except UnknownCursor as exc:
            raise unknown_cursor(exc) from None
        return web.json_response(list_body([serialize.assistant(r) for r in page.items], page.has_more))

    async def retrieve(self, request: web.Request) -> web.Response:
        assistant_id = request.match_info["assistant_id"]
        record = await self._assistants.get(request[OWNER], assistant_id)
        if record is None:
            raise not_found("assistant", assistant_id)
        return web.json_response(serialize.assistant(record))

    async def modify(self, request: web.Request) -> web.Response:
        assistant_id = request.match_info["assistant_id"]
        body = await read_body(request, AssistantUpdate)
        record = await self._assistants.update(request[OWNER], assistant_id, body.fields())
        if record is None:
            raise not_found("assistant", assistant_id)
        return web.json_response(serialize.assistant(record))

    async def delete(self, request: web.Request) -> web.Response:
        assistant_id = request.match_info["assistant_id"]
        if not await self._assistants.delete(request[OWNER], assistant_id):
            raise not_found("assistant", assistant_id)
        return web.json_response(serialize.assistant_deleted(assistant_id))
