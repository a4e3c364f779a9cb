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

Tool calls: the calls of one model response are one step (its id, too, is derived:
``core.api_runs.tool_step_id``), created as the model begins its first call; each call is added
to it (index 0, 1, ...) as the model begins it, and what the model writes streams as it writes it: a function's
arguments as fragments, a ``code_interpreter`` call's code as ``code_interpreter.input``. A finished
``code_interpreter`` call's outputs follow in a delta (for the step's last call: the SDK's handler
takes a delta for an earlier call as a new call), and the step completes, typed and with every
output, once all its calls are done.

Images the code interpreter made (core/code_outputs.py) open the next message the model writes,
as its first content parts (``image_file`` deltas, so the SDK's ``on_image_file_done`` fires), its
text following them, as the message the run stores shows them.

A client that goes away does not stop the run: the stream just stops writing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from bots.api import serialize, serialize_runs
from bots.api.serialize_runs import CallStyle
from core.api_objects import ApiObjects
from core.api_runs import AnswerIds, ApiRuns, RunView, answer_ids
from core.errors import UnknownObject
from core.events import (
    ApprovalResolved,
    Citation,
    Event,
    FileOutput,
    RunCompleted,
    RunFailed,
    RunStarted,
    TextDelta,
    ToolCallDelta,
    ToolCallFinished,
    ToolCallStarted,
)
from core.handles import RunHandle
from core.models import Run
from core.streamed_json import StreamedString

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
    annotations: int = 0  # how many its text has so far
    images: list[str] = field(default_factory=list)  # file ids of its image parts, ahead of its text


@dataclass
class _Call:
    """A call the model is writing: its place in its step, the type it shows as, the code it writes."""

    index: int
    kind: str
    code: StreamedString | None = None


@dataclass
class _ToolStep:
    """A tool-call step this stream created, until it ends."""

    id: str
    created_at: float
    calls: dict[str, _Call] = field(default_factory=dict)  # by call id

    @property
    def last(self) -> int:
        return max((call.index for call in self.calls.values()), default=0)


class RunStream:
    """Writes one run's events to one client.

    ``tool_calls_before``: how many tool calls the run had made when the stream began (0 for a new
    run); with those the stream sees, it names the messages the run writes. ``include``: the run's
    ``include[]`` (file search results with their passages).
    """

    def __init__(
        self,
        runs: ApiRuns,
        objects: ApiObjects,
        owner: str,
        run: Run,
        *,
        tool_calls_before: int = 0,
        include: Collection[str] = (),
    ) -> None:
        self._runs = runs
        self._objects = objects
        self._owner = owner
        self._run = run
        self._tool_calls = tool_calls_before
        self._include = include
        self._style: CallStyle | None = None
        self._message: _Message | None = None
        self._steps: dict[str, _ToolStep] = {}  # tool-call steps created in this stream and not ended
        self._ended_steps: set[str] = set()
        self._file_ids: dict[str, str] = {}  # knowledge-base file ids the stream has cited, as their owner knows them
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
        # Decisions are the client's; a call shows as the model writes it (ToolCallDelta).
        if isinstance(event, ApprovalResolved | ToolCallStarted):
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
            await self._text(event)
            return False
        if isinstance(event, ToolCallDelta):
            await self._call_delta(event)
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
        style = await self._call_style()
        for open_step in list(self._steps.values()):
            step = await self._runs.step_of(view.run, open_step.id)
            if step is not None and step.status != "in_progress":
                data = serialize_runs.run_step(step, view.run, message_id="", error=view.error, style=style)
                await self._send(f"thread.run.step.{step.status}", data)
            elif step is None:  # the model was still writing its calls: none was recorded
                data = serialize_runs.tool_step(
                    open_step.id, view.run, status=event.status, created_at=open_step.created_at, ended_at=time.time()
                )
                await self._send(f"thread.run.step.{event.status}", data)
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
        return serialize_runs.run_step(step, view.run, message_id=ids.message_id, error=None, style=CallStyle())

    async def _text(self, event: TextDelta) -> None:
        if self._message is None:
            await self._open_message()
        message = self._message
        assert message is not None
        message.parts.append(event.text)
        cited: list[tuple[int, Citation]] = []
        for citation in await self._owned(event.citations):
            cited.append((message.annotations, citation))
            message.annotations += 1
        await self._send(
            "thread.message.delta",
            serialize_runs.message_delta(message.ids.message_id, event.text, cited, index=len(message.images)),
        )

    async def _owned(self, citations: Sequence[Citation]) -> list[Citation]:
        """The citations with the ids their files were uploaded under (an API upload's, else the knowledge base's)."""
        unknown = [c.file_id for c in citations if c.file_id not in self._file_ids]
        if unknown:
            found = await self._runs.file_ids(unknown)
            self._file_ids.update({file_id: found.get(file_id, file_id) for file_id in unknown})
        return [replace(c, file_id=self._file_ids[c.file_id]) for c in citations]

    async def _call_delta(self, event: ToolCallDelta) -> None:
        """The model begins a call (and its step, with the first), or writes more of one."""
        if event.step_id in self._ended_steps:
            return
        step = self._steps.get(event.step_id)
        if step is None:
            await self._close_message()
            step = self._steps[event.step_id] = _ToolStep(event.step_id, time.time())
            run = (await self._view()).run
            created = serialize_runs.tool_step(step.id, run, status="in_progress", created_at=step.created_at)
            await self._send("thread.run.step.created", created)
            await self._send("thread.run.step.in_progress", created)
        call = step.calls.get(event.call_id)
        if call is None:
            self._tool_calls += 1
            style = await self._call_style()
            kind = style.kind(event.tool)
            code = StreamedString("code") if kind == "code_interpreter" else None
            call = step.calls[event.call_id] = _Call(event.index, kind, code)
            await self._send(
                "thread.run.step.delta",
                serialize_runs.call_begun(step.id, call.index, event.call_id, event.tool, style),
            )
        if not event.arguments:
            return
        if call.kind == "function":
            await self._send(
                "thread.run.step.delta", serialize_runs.function_arguments(step.id, call.index, event.arguments)
            )
        elif call.code is not None and (code_text := call.code.feed(event.arguments)):
            await self._send("thread.run.step.delta", serialize_runs.code_input(step.id, call.index, code_text))

    async def _tool_finished(self, call_id: str) -> None:
        """A call's tool is done: its outputs, and its step once every call of it is."""
        run = (await self._view()).run
        step = await self._runs.tool_step(run, call_id)
        if step is None or step.id in self._ended_steps:
            return
        streamed, record = self._steps.get(step.id), step.call(call_id)
        call = streamed.calls.get(call_id) if streamed is not None else None
        last = streamed.last if streamed is not None else None
        if call is not None and record is not None and call.kind == "code_interpreter" and call.index == last:
            await self._send("thread.run.step.delta", serialize_runs.call_outputs(step.id, call.index, record))
        if step.status == "in_progress":  # other calls of it are still going (or wait for the client)
            return
        self._ended_steps.add(step.id)
        self._steps.pop(step.id, None)
        data = serialize_runs.run_step(step, run, message_id="", error=None, style=await self._call_style())
        await self._send("thread.run.step.completed", data)

    async def _call_style(self) -> CallStyle:
        if self._style is None:
            self._style = CallStyle.of(await self._view(), self._include)
        return self._style

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
