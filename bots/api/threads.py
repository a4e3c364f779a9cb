"""``/v1/threads`` and their messages: threads create, retrieve, modify (POST), delete; messages the same plus list.

While a run is active on a thread, messages cannot be added to it (as in the old API); deleting a
thread cancels its active run first.
"""

from __future__ import annotations

from aiohttp import web

from bots.api import serialize
from bots.api.auth import OWNER
from bots.api.errors import invalid, not_found
from bots.api.pagination import list_body, page_query, unknown_cursor
from bots.api.requests import MessageCreate, MessageUpdate, ThreadCreate, ThreadUpdate, read_body
from core.api_objects import ApiObjects, MessageRefused
from core.api_runs import ApiRuns, RunActive
from core.attachments import ResourcesRefused
from core.errors import UnknownCursor, UnknownObject
from core.models import MessageRecord

__all__ = ["ThreadRoutes"]


class ThreadRoutes:
    def __init__(self, objects: ApiObjects, runs: ApiRuns) -> None:
        self._objects = objects
        self._runs = runs

    def routes(self) -> list[web.RouteDef]:
        messages = "/v1/threads/{thread_id}/messages"
        return [
            web.post("/v1/threads", self.create),
            web.get("/v1/threads/{thread_id}", self.retrieve),
            web.post("/v1/threads/{thread_id}", self.modify),
            web.delete("/v1/threads/{thread_id}", self.delete),
            web.post(messages, self.create_message),
            web.get(messages, self.list_messages),
            web.get(messages + "/{message_id}", self.retrieve_message),
            web.post(messages + "/{message_id}", self.modify_message),
            web.delete(messages + "/{message_id}", self.delete_message),
        ]

    # -- threads -------------------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.Response:
        body = await read_body(request, ThreadCreate)
        messages = [m.new_message(f"messages[{i}].") for i, m in enumerate(body.messages or [])]
        tool_resources = body.stored_resources()
        try:
            record = await self._objects.create_thread(
                request[OWNER], metadata=body.metadata or {}, tool_resources=tool_resources, messages=messages
            )
        except MessageRefused as exc:
            raise invalid(str(exc), exc.param("messages")) from None
        except ResourcesRefused as exc:
            raise invalid(str(exc), exc.param) from None
        return web.json_response(serialize.thread(record))

    async def retrieve(self, request: web.Request) -> web.Response:
        thread_id = request.match_info["thread_id"]
        record = await self._objects.get_thread(request[OWNER], thread_id)
        if record is None:
            raise not_found("thread", thread_id)
        return web.json_response(serialize.thread(record))

    async def modify(self, request: web.Request) -> web.Response:
        thread_id = request.match_info["thread_id"]
        body = await read_body(request, ThreadUpdate)
        record = await self._objects.update_thread(request[OWNER], thread_id, body.model_dump(exclude_unset=True))
        if record is None:
            raise not_found("thread", thread_id)
        return web.json_response(serialize.thread(record))

    async def delete(self, request: web.Request) -> web.Response:
        thread_id = request.match_info["thread_id"]
        if not await self._runs.delete_thread(request[OWNER], thread_id):
            raise not_found("thread", thread_id)
        return web.json_response(serialize.thread_deleted(thread_id))

    # -- messages ------------------------------------------------------------------------------

    async def create_message(self, request: web.Request) -> web.Response:
        thread_id = request.match_info["thread_id"]
        body = await read_body(request, MessageCreate)
        try:
            record = await self._runs.add_message(request[OWNER], thread_id, body.new_message())
        except MessageRefused as exc:
            raise invalid(str(exc), exc.param()) from None
        except UnknownObject:
            raise not_found("thread", thread_id) from None
        except RunActive as exc:
            raise invalid(f"Can't add messages to {thread_id} while a run {exc.run_id} is active.") from None
        return web.json_response(serialize.message(record))

    async def list_messages(self, request: web.Request) -> web.Response:
        thread_id = request.match_info["thread_id"]
        query = page_query(request)
        try:
            page = await self._objects.list_messages(
                request[OWNER], thread_id, query, run_id=request.query.get("run_id") or None
            )
        except UnknownCursor as exc:
            raise unknown_cursor(exc) from None
        if page is None:
            raise not_found("thread", thread_id)
        assistants = await self._runs.assistant_ids(page.items)
        data = [serialize.message(m, assistants.get(m.run_id or "")) for m in page.items]
        return web.json_response(list_body(data, page.has_more))

    async def retrieve_message(self, request: web.Request) -> web.Response:
        thread_id, message_id = request.match_info["thread_id"], request.match_info["message_id"]
        record = await self._objects.get_message(request[OWNER], thread_id, message_id)
        if record is None:
            raise await self._message_not_found(request[OWNER], thread_id, message_id)
        return web.json_response(await self._message(record))

    async def modify_message(self, request: web.Request) -> web.Response:
        thread_id, message_id = request.match_info["thread_id"], request.match_info["message_id"]
        body = await read_body(request, MessageUpdate)
        if "metadata" in body.model_fields_set:
            record = await self._objects.update_message(request[OWNER], thread_id, message_id, body.metadata or {})
        else:
            record = await self._objects.get_message(request[OWNER], thread_id, message_id)
        if record is None:
            raise await self._message_not_found(request[OWNER], thread_id, message_id)
        return web.json_response(await self._message(record))

    async def delete_message(self, request: web.Request) -> web.Response:
        thread_id, message_id = request.match_info["thread_id"], request.match_info["message_id"]
        if not await self._objects.delete_message(request[OWNER], thread_id, message_id):
            raise await self._message_not_found(request[OWNER], thread_id, message_id)
        return web.json_response(serialize.message_deleted(message_id))

    async def _message(self, record: MessageRecord) -> dict[str, object]:
        assistants = await self._runs.assistant_ids([record])
        return serialize.message(record, assistants.get(record.run_id or ""))

    async def _message_not_found(self, owner: str, thread_id: str, message_id: str) -> Exception:
        """404 naming what is missing: the thread, or the message in it."""
        if await self._objects.get_thread(owner, thread_id) is None:
            return not_found("thread", thread_id)
        return not_found("message", message_id)
