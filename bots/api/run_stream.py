"""A run streamed to its client as the old API's server-sent events, from the core's events of the run.

Each frame is ``event: NAME`` and ``data: JSON``; the stream ends with ``event: done`` /
``data: [DONE]`` after the run completes, fails, is cancelled or expires, or pauses for tool
outputs (``thread.run.requires_action``: the client submits them, with ``stream`` again to go on),
or when Threadline stops and leaves it queued (``thread.run.queued``: retrieve it later).

Messages: Threadline stores what a run wrote when the run completes, but a stream has to name
each message as its first words arrive. The ids are derived from the run (core.api_runs.answer_ids:
the run's id and how many tool calls came before the message), and the run stores its messages
under the same ids, so the ids a stream announces are the ids the messages keep, the
message-creation step of the run's answer included. A message the model wrote before calling
tools is stored as well, but only the answer has a stored step: the step such a message gets in
the stream cannot be retrieved later.

Images the code interpreter made (core/code_outputs.py) open the next message the model writes,
as its first content parts (``image_file`` deltas, so the SDK's ``on_image_file_done`` fires), its
text following them, as the message the run stores shows them.

A client that goes away does not stop the run: the stream just stops writing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from bots.api import serialize, serialize_runs
from core.api_objects import ApiObjects
from core.api_runs import AnswerIds, ApiRuns, RunView, answer_ids
from core.errors import UnknownObject
from core.events import (
    ApprovalResolved,
    Event,
    FileOutput,
    RunCompleted,
    RunFailed,
    RunStarted,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
)
from core.handles import RunHandle
from core.models import Run

__all__ = ["RunStream"]

_log = logging.getLogger(__name__)

DONE = b"event: done\ndata: [DONE]\n\n"
_UNEXPECTED = (
    "The run's stream failed on Threadline's side; its log has the details. Retrieve the run to see how it ended."
)
_DELETED = "The run's thread was deleted while the run was streaming."


@dataclass
class _Message:
    """The message the model is writing."""

    ids: AnswerIds
    created_at: float
    parts: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # file ids of its image parts, ahead of its text


class RunStream:
    """Writes one run's events to one client.

    ``tool_calls_before``: how many tool calls the run had made when the stream began (0 for a new
    run); with those the stream sees, it names the messages the run writes.
    """

    def __init__(self, runs: ApiRuns, objects: ApiObjects, owner: str, run: Run, *, tool_calls_before: int = 0) -> None:
        self._runs = runs
        self._objects = objects
        self._owner = owner
        self._run = run
        self._tool_calls = tool_calls_before
        self._message: _Message | None = None
        self._open_steps: list[str] = []  # call ids of tool steps started in this stream and not finished
        self._images: list[str] = []  # images the run's code made since the last message: the next one shows them
        self._in_progress = False
        self._response: web.StreamResponse | None = None

    async def respond(
        self, request: web.Request, handle: RunHandle, first: Sequence[tuple[str, dict[str, Any]]]
    ) -> web.StreamResponse:
        """Send ``first`` (events the route has at hand), then the run's events until it ends or pauses."""
        response = self._response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        try:
            for name, data in first:
                await self._send(name, data)
            await self._follow(handle)
        except ConnectionResetError:
            _log.info("the client of run %s's stream went away; the run goes on", self._run.id)
            return response
        except UnknownObject:
            await self._fail(_DELETED)
        except Exception:
            _log.exception("streaming run %s failed", self._run.id)
            await self._fail(_UNEXPECTED)
        return response

    # -- the run's events -------------------------------------------------------------------------

    async def _follow(self, handle: RunHandle) -> None:
        async for event in handle.events():
            if await self._on(event):
                break
        await self._write(DONE)

    async def _on(self, event: Event) -> bool:
        """Send what ``event`` means to the client; True when the stream ends with it."""
        if isinstance(event, FileOutput):  # an image the code made opens the next message; other files are links
            if event.file_id is not None and event.mime.startswith("image/"):
                self._images.append(event.file_id)
            return False
        if isinstance(event, ApprovalResolved):  # decisions are the client's
            return False
        if isinstance(event, RunStarted):
            await self._started()
            return False
        if isinstance(event, RunCompleted):
            await self._completed()
            return True
        if isinstance(event, RunFailed):
            await self._ended(event)
            return True
        if not self._in_progress:  # a stream that began with a submit_tool_outputs: the run resumed
            await self._started()
        if isinstance(event, TextDelta):
            if self._message is None:
                await self._open_message()
            assert self._message is not None
            self._message.parts.append(event.text)
            await self._send(
                "thread.message.delta",
                serialize_runs.message_delta(self._message.ids.message_id, event.text, len(self._message.images)),
            )
            return False
        if isinstance(event, ToolCallStarted):
            await self._close_message()
            await self._tool_started(event.call_id)
            return False
        if isinstance(event, ToolCallFinished):
            await self._tool_finished(event.call_id)
            return False
        return await self._paused()

    async def _started(self) -> None:
        self._in_progress = True
        await self._send_run("thread.run.in_progress", status="in_progress")

    async def _paused(self) -> bool:
        view = await self._view()
        if view.status != "requires_action":  # already answered (by another request): the run goes on
            return False
        await self._send("thread.run.requires_action", serialize_runs.run(view))
        return True

    async def _completed(self) -> None:
        ids = self._message.ids if self._message else answer_ids(self._run.id, self._tool_calls)
        stored = await self._objects.get_message(self._owner, self._run.thread_id, ids.message_id)
        if stored is not None:
            if self._message is None:  # the answer had no text to stream
                await self._open_message()
            view = await self._view()
            await self._send("thread.message.completed", serialize.message(stored, view.run.assistant_id))
            await self._send("thread.run.step.completed", await self._answer_step(view, ids))
            self._message = None
        else:
            await self._close_message()
        await self._send("thread.run.completed", serialize_runs.run(await self._view()))

    async def _ended(self, event: RunFailed) -> None:
        view = await self._view()
        if event.handed_over:  # Threadline is stopping: the run is queued again, to be answered from the start
            await self._send("thread.run.queued", serialize_runs.run(view))
            return
        if self._message is not None:
            message, now = self._message, time.time()
            text = "".join(message.parts)
            await self._send(
                "thread.message.incomplete",
                serialize_runs.streamed_message(
                    message.ids.message_id,
                    view.run,
                    text=text,
                    status="incomplete",
                    created_at=message.created_at,
                    ended_at=now,
                    images=message.images,
                ),
            )
            await self._send(
                f"thread.run.step.{event.status}",
                serialize_runs.message_step(
                    message.ids.step_id,
                    view.run,
                    message_id=message.ids.message_id,
                    status=event.status,
                    created_at=message.created_at,
                    ended_at=now,
                ),
            )
            self._message = None
        for call_id in self._open_steps:
            step = await self._runs.tool_step(view.run, call_id)
            if step is not None and step.status != "in_progress":
                data = serialize_runs.run_step(step, view.run, message_id="", error=view.error)
                await self._send(f"thread.run.step.{step.status}", data)
        await self._send(f"thread.run.{event.status}", serialize_runs.run(view))

    # -- messages and steps --------------------------------------------------------------------------

    async def _open_message(self) -> None:
        ids = answer_ids(self._run.id, self._tool_calls)
        message = self._message = _Message(ids, time.time())
        run = (await self._view()).run
        step = serialize_runs.message_step(
            ids.step_id,
            run,
            message_id=ids.message_id,
            status="in_progress",
            created_at=message.created_at,
            ended_at=None,
        )
        await self._send("thread.run.step.created", step)
        await self._send("thread.run.step.in_progress", step)
        data = serialize_runs.streamed_message(
            ids.message_id, run, text="", status="in_progress", created_at=message.created_at
        )
        await self._send("thread.message.created", data)
        await self._send("thread.message.in_progress", data)
        message.images, self._images = self._images, []
        for index, file_id in enumerate(message.images):
            await self._send("thread.message.delta", serialize_runs.image_delta(ids.message_id, index, file_id))

    async def _close_message(self) -> None:
        """The model wrote text, then called tools: that text is a message of its own, done."""
        if self._message is None:
            return
        message, now = self._message, time.time()
        self._message = None
        run = (await self._view()).run
        text = "".join(message.parts)
        await self._send(
            "thread.message.completed",
            serialize_runs.streamed_message(
                message.ids.message_id,
                run,
                text=text,
                status="completed",
                created_at=message.created_at,
                ended_at=now,
                images=message.images,
            ),
        )
        await self._send(
            "thread.run.step.completed",
            serialize_runs.message_step(
                message.ids.step_id,
                run,
                message_id=message.ids.message_id,
                status="completed",
                created_at=message.created_at,
                ended_at=now,
            ),
        )

    async def _answer_step(self, view: RunView, ids: AnswerIds) -> dict[str, Any]:
        try:
            step = await self._runs.step(self._owner, self._run.thread_id, self._run.id, ids.step_id)
        except UnknownObject:  # a run stored before answers had derived ids
            now = time.time()
            return serialize_runs.message_step(
                ids.step_id, view.run, message_id=ids.message_id, status="completed", created_at=now, ended_at=now
            )
        return serialize_runs.run_step(step, view.run, message_id=ids.message_id, error=None)

    async def _tool_started(self, call_id: str) -> None:
        self._tool_calls += 1
        run = (await self._view()).run
        step = await self._runs.tool_step(run, call_id)
        if step is None:
            return
        self._open_steps.append(call_id)
        created = serialize_runs.run_step(
            replace(step, status="in_progress"), run, message_id="", error=None, calls=False
        )
        await self._send("thread.run.step.created", created)
        await self._send("thread.run.step.in_progress", created)
        await self._send("thread.run.step.delta", serialize_runs.tool_step_delta(step))

    async def _tool_finished(self, call_id: str) -> None:
        run = (await self._view()).run
        step = await self._runs.tool_step(run, call_id)
        if step is None:
            return
        if call_id in self._open_steps:
            self._open_steps.remove(call_id)
        await self._send("thread.run.step.completed", serialize_runs.run_step(step, run, message_id="", error=None))

    # -- writing -----------------------------------------------------------------------------------

    async def _view(self) -> RunView:
        run = await self._runs.get(self._owner, self._run.thread_id, self._run.id)
        return await self._runs.view(run)

    async def _send_run(self, name: str, *, status: str) -> None:
        """A run event of the run's life so far: the run as it is, with the status the event names."""
        view = await self._view()
        await self._send(name, serialize_runs.run(replace(view, status=status, pending=(), error=None)))

    async def _send(self, name: str, data: dict[str, Any]) -> None:
        await self._write(serialize_runs.stream_event(name, data).encode())

    async def _write(self, frame: bytes) -> None:
        assert self._response is not None
        await self._response.write(frame)

    async def _fail(self, message: str) -> None:
        """End the stream with an ``error`` event (the SDK raises it as an APIError) and ``done``."""
        try:
            await self._send("error", serialize_runs.error_payload(message))
            await self._write(DONE)
        except ConnectionResetError:
            pass
