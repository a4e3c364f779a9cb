"""``/v1/threads/{thread_id}/runs``, ``/v1/threads/runs`` and run steps: create (polled or streamed), list,
retrieve, modify (POST), cancel, submit_tool_outputs; steps list and retrieve.

The function-calling loop is the old API's: a run that calls a function the client defined
pauses in ``requires_action`` with the calls in ``required_action``; ``submit_tool_outputs``
resumes it (within 10 minutes, or it expires). ``stream: true`` answers with server-sent events
(bots/api/run_stream.py) instead of the run. A run still going carries an ``openai-poll-after-ms``
header, which the SDK's polling helpers follow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace

from aiohttp import web

from bots.api import serialize, serialize_runs
from bots.api.auth import OWNER
from bots.api.errors import invalid, not_found
from bots.api.pagination import list_body, page_query, unknown_cursor
from bots.api.requests import ThreadCreate, read_body
from bots.api.run_requests import RunCreate, RunUpdate, ThreadAndRunCreate, ToolOutputsSubmit, include_query
from bots.api.run_stream import RunStream
from bots.api.serialize_runs import CallStyle
from core.api_objects import ApiObjects, MessageRefused
from core.api_runs import ApiRuns, RunActive, RunEnded, RunView
from core.attachments import ResourcesRefused
from core.errors import UnknownCursor, UnknownObject
from core.models import Run
from core.service import ToolOutputsError

__all__ = ["RunRoutes"]

POLL_AFTER_MS = 100  # how soon the SDK's create_and_poll asks again while a run is going (it waits 1 s without)


@contextlib.contextmanager
def _core_errors() -> Iterator[None]:
    """The core's refusals as the old API's errors: 404 for what the key cannot reach, 400 for the rest."""
    try:
        yield
    except UnknownObject as exc:
        raise not_found(exc.kind, exc.object_id) from None
    except UnknownCursor as exc:
        raise unknown_cursor(exc) from None
    except (RunActive, RunEnded, ToolOutputsError) as exc:  # 400, not 409: the SDK retries a 409
        raise invalid(str(exc)) from None
    except MessageRefused as exc:  # an additional message's image file or attachment
        raise invalid(str(exc), exc.param("additional_messages")) from None


class RunRoutes:
    def __init__(self, objects: ApiObjects, runs: ApiRuns) -> None:
        self._objects = objects
        self._runs = runs

    def routes(self) -> list[web.RouteDef]:
        runs = "/v1/threads/{thread_id}/runs"
        run = runs + "/{run_id}"
        return [
            web.post("/v1/threads/runs", self.create_thread_and_run),
            web.post(runs, self.create),
            web.get(runs, self.list),
            web.get(run, self.retrieve),
            web.post(run, self.modify),
            web.post(run + "/cancel", self.cancel),
            web.post(run + "/submit_tool_outputs", self.submit_tool_outputs),
            web.get(run + "/steps", self.list_steps),
            web.get(run + "/steps/{step_id}", self.retrieve_step),
        ]

    # -- runs ----------------------------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.StreamResponse:
        owner, thread_id = request[OWNER], request.match_info["thread_id"]
        include = include_query(request)  # what the stream's steps show
        body = await read_body(request, RunCreate)
        with _core_errors():
            run, handle = await self._runs.create(owner, thread_id, body.request())
        view = await self._runs.view(run)
        if not body.stream:
            return web.json_response(serialize_runs.run(view))
        data = serialize_runs.run(view)
        first = [("thread.run.created", data), ("thread.run.queued", data)]
        stream = RunStream(self._runs, self._objects, owner, run, include=include)
        return await stream.respond(request, handle, first)

    async def create_thread_and_run(self, request: web.Request) -> web.StreamResponse:
        owner = request[OWNER]
        body = await read_body(request, ThreadAndRunCreate)
        run_request = body.request()
        thread_body = body.thread or ThreadCreate()
        messages = [m.new_message(f"thread.messages[{i}].") for i, m in enumerate(thread_body.messages or [])]
        if await self._objects.assistants.get(owner, body.assistant_id) is None:  # before making a thread for it
            raise not_found("assistant", body.assistant_id)
        try:
            thread = await self._objects.create_thread(
                owner,
                metadata=thread_body.metadata or {},
                tool_resources=body.thread_tool_resources(),
                messages=messages,
            )
        except MessageRefused as exc:
            raise invalid(str(exc), exc.param("thread.messages")) from None
        except ResourcesRefused as exc:
            raise invalid(str(exc), f"thread.{exc.param}") from None
        with _core_errors():
            run, handle = await self._runs.create(owner, thread.id, run_request)
        view = await self._runs.view(run)
        if not body.stream:
            return web.json_response(serialize_runs.run(view))
        data = serialize_runs.run(view)
        first = [("thread.created", serialize.thread(thread))]
        first += [("thread.run.created", data), ("thread.run.queued", data)]
        return await RunStream(self._runs, self._objects, owner, run).respond(request, handle, first)

    async def list(self, request: web.Request) -> web.Response:
        query = page_query(request)
        with _core_errors():
            page = await self._runs.page(request[OWNER], request.match_info["thread_id"], query)
        data = [serialize_runs.run(await self._runs.view(run)) for run in page.items]
        return web.json_response(list_body(data, page.has_more))

    async def retrieve(self, request: web.Request) -> web.Response:
        run = await self._run(request)
        going = run.status in ("queued", "in_progress", "cancelling")
        headers = {"openai-poll-after-ms": str(POLL_AFTER_MS)} if going else None  # the SDK's poll helpers
        return web.json_response(serialize_runs.run(await self._runs.view(run)), headers=headers)

    async def modify(self, request: web.Request) -> web.Response:
        body = await read_body(request, RunUpdate)
        owner, thread_id, run_id = request[OWNER], request.match_info["thread_id"], request.match_info["run_id"]
        with _core_errors():
            if "metadata" in body.model_fields_set:
                run = await self._runs.set_metadata(owner, thread_id, run_id, body.metadata or {})
            else:
                run = await self._runs.get(owner, thread_id, run_id)
        return web.json_response(serialize_runs.run(await self._runs.view(run)))

    async def cancel(self, request: web.Request) -> web.Response:
        owner, thread_id, run_id = request[OWNER], request.match_info["thread_id"], request.match_info["run_id"]
        with _core_errors():
            run = await self._runs.cancel(owner, thread_id, run_id)
        return web.json_response(serialize_runs.run(await self._runs.view(run)))

    async def submit_tool_outputs(self, request: web.Request) -> web.StreamResponse:
        owner = request[OWNER]
        body = await read_body(request, ToolOutputsSubmit)
        paused = await self._run(request)
        # Counted while the run is paused (nothing adds tool calls then): names the messages it writes next.
        before = await self._runs.tool_call_count(paused) if body.stream else 0
        with _core_errors():
            run, handle = await self._runs.submit_tool_outputs(owner, paused.thread_id, paused.id, body.outputs())
        view = await self._runs.view(run)
        if not body.stream:
            return web.json_response(serialize_runs.run(view))
        first = [("thread.run.queued", serialize_runs.run(_queued(view)))]
        stream = RunStream(self._runs, self._objects, owner, run, tool_calls_before=before)
        return await stream.respond(request, handle, first)

    # -- steps ---------------------------------------------------------------------------------------

    async def list_steps(self, request: web.Request) -> web.Response:
        run = await self._run(request)
        query, include = page_query(request), include_query(request)
        with _core_errors():
            page = await self._runs.steps(request[OWNER], run.thread_id, run.id, query)
        view = await self._runs.view(run)
        message_id = ""
        if any(step.type == "message_creation" for step in page.items):
            message_id = await self._runs.answer_message_id(run)
        style = CallStyle.of(view, include)
        data = [
            serialize_runs.run_step(s, run, message_id=message_id, error=view.error, style=style) for s in page.items
        ]
        return web.json_response(list_body(data, page.has_more))

    async def retrieve_step(self, request: web.Request) -> web.Response:
        run = await self._run(request)
        include = include_query(request)
        with _core_errors():
            step = await self._runs.step(request[OWNER], run.thread_id, run.id, request.match_info["step_id"])
        message_id = await self._runs.answer_message_id(run) if step.type == "message_creation" else ""
        view = await self._runs.view(run)
        style = CallStyle.of(view, include)
        return web.json_response(
            serialize_runs.run_step(step, run, message_id=message_id, error=view.error, style=style)
        )

    async def _run(self, request: web.Request) -> Run:
        with _core_errors():
            return await self._runs.get(request[OWNER], request.match_info["thread_id"], request.match_info["run_id"])


def _queued(view: RunView) -> RunView:
    """The run as ``thread.run.queued`` shows it: its outputs are in, it waits to go on."""
    return replace(view, status="queued", pending=())
