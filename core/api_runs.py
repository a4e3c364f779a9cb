"""Runs of the Assistants-compatible API, owned by API keys: create, read, list, cancel, tool outputs, steps.

A run belongs to an API thread (so to its owner's channel, see core/api_objects.py) and runs an
assistant the same owner created, with the run's overrides applied: the result is the run's
:class:`~core.run_spec.RunSpec`, stored with it. File search reaches the vector stores named in
the thread's and the assistant's ``tool_resources`` (the thread's first, as the old API merged
them). Everything else (queueing, one active run per thread, the run loop, pauses for tool
outputs, their 10-minute deadline) is the core's, shared with the chat channels.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from core.api_objects import NewMessage, api_channel
from core.code_files import code_file_ids
from core.errors import ThreadlineError, UnknownObject
from core.handles import RunHandle
from core.models import TERMINAL_STATUSES, AssistantRecord, MessageRecord, Page, PageQuery, Run, ThreadRecord
from core.run_errors import RunError, run_error
from core.run_spec import RunSpec
from core.store.api_outputs import OutputRecord
from core.store.api_runs import AnswerIds, RunActive, RunStepRecord, ToolCallRecord, answer_ids, tool_step_id

if TYPE_CHECKING:
    from core.service import Threadline

__all__ = [
    "AnswerIds",
    "ApiRuns",
    "OutputRecord",
    "PendingCall",
    "RunActive",
    "RunEnded",
    "RunRequest",
    "RunStepRecord",
    "RunView",
    "ToolCallRecord",
    "answer_ids",
    "tool_step_id",
    "vector_store_ids",
]

_log = logging.getLogger(__name__)

CANCEL_WAIT_SECONDS = 10.0  # how long deleting a thread waits for its run to stop
CANCEL_POLL_SECONDS = 0.02


class RunEnded(ThreadlineError):
    """The run has ended, so it cannot be cancelled; the message is the old API's."""

    def __init__(self, run: Run) -> None:
        super().__init__(f"Cannot cancel run with status '{run.status}'.")
        self.run = run


@dataclass(frozen=True)
class PendingCall:
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class RunView:
    """A run as the API shows it.

    ``status`` is the run's, except that a paused run whose calls all have their outputs shows as
    ``queued`` until its thread's lane resumes it (the old API's status after submit_tool_outputs,
    which the SDK's polling helpers rely on). ``pending``: the calls it waits for, while
    ``requires_action``; ``error``: why it failed, for people.
    """

    run: Run
    spec: RunSpec
    status: str
    pending: tuple[PendingCall, ...] = ()
    error: RunError | None = None


@dataclass(frozen=True)
class RunRequest:
    """What a client asks for when it creates a run; None: the assistant's setting."""

    assistant_id: str
    model: str | None = None
    instructions: str | None = None
    additional_instructions: str | None = None
    additional_messages: Sequence[NewMessage] = ()
    tools: Sequence[Mapping[str, Any]] | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    temperature: float | None = None
    top_p: float | None = None
    reasoning_effort: str | None = None
    response_format: Any = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    max_prompt_tokens: int | None = None
    max_completion_tokens: int | None = None
    truncation_strategy: Mapping[str, Any] | None = None


def vector_store_ids(*resources: Mapping[str, Any] | None) -> tuple[str, ...]:
    """``tool_resources.file_search.vector_store_ids`` of each, merged in order without repeats."""
    found: list[str] = []
    for resource in resources:
        search = (resource or {}).get("file_search") or {}
        for store_id in search.get("vector_store_ids") or ():
            if isinstance(store_id, str) and store_id not in found:
                found.append(store_id)
    return tuple(found)


def spec_for(owner: str, assistant: AssistantRecord, thread: ThreadRecord, request: RunRequest) -> RunSpec:
    instructions = request.instructions if request.instructions is not None else assistant.instructions or ""
    if request.additional_instructions:
        extra = request.additional_instructions
        instructions = f"{instructions}\n\n{extra}" if instructions else extra
    stores = vector_store_ids(thread.tool_resources, assistant.tool_resources)
    return RunSpec(
        model=request.model or assistant.model,
        instructions=instructions,
        tools=tuple(dict(t) for t in (request.tools if request.tools is not None else assistant.tools)),
        name=assistant.name or "assistant",
        temperature=request.temperature if request.temperature is not None else assistant.temperature,
        top_p=request.top_p if request.top_p is not None else assistant.top_p,
        reasoning_effort=request.reasoning_effort or assistant.reasoning_effort,
        response_format=request.response_format if request.response_format is not None else assistant.response_format,
        tool_choice=request.tool_choice,
        parallel_tool_calls=True if request.parallel_tool_calls is None else request.parallel_tool_calls,
        max_prompt_tokens=request.max_prompt_tokens,
        max_completion_tokens=request.max_completion_tokens,
        truncation_strategy=dict(request.truncation_strategy or {"type": "auto", "last_messages": None}),
        collections=tuple(api_channel(owner, store_id) for store_id in stores),
        code_files=code_file_ids(thread.tool_resources, assistant.tool_resources),
    )


class ApiRuns:
    def __init__(self, service: Threadline) -> None:
        self._service = service
        self._objects = service.objects
        self._runs = service.runs

    async def create(self, owner: str, thread_id: str, request: RunRequest) -> tuple[Run, RunHandle]:
        """Queue a run; UnknownObject for a thread or assistant the owner cannot reach, RunActive while
        the thread has a run going."""
        thread = await self._thread(owner, thread_id)
        assistant = await self._objects.assistants.get(owner, request.assistant_id)
        if assistant is None:
            raise UnknownObject("assistant", request.assistant_id)
        rows = await self._objects.message_rows(owner, request.additional_messages)
        if any(m.attachments for m in request.additional_messages):  # the run's files include theirs
            if (active := await self._runs.active(thread.id)) is not None:
                raise RunActive(thread.id, *active)
            thread = await self._objects.attach(owner, thread, request.additional_messages)
        return await self._service.queue_run(
            channel=thread.channel,
            thread_id=thread.id,
            spec=spec_for(owner, assistant, thread, request),
            assistant_id=assistant.id,
            metadata=dict(request.metadata),
            messages=rows,
        )

    async def get(self, owner: str, thread_id: str, run_id: str) -> Run:
        run = await self._runs.get(api_channel(owner, thread_id), thread_id, run_id)
        if run is None:
            raise UnknownObject("run", run_id)
        return run

    async def page(self, owner: str, thread_id: str, query: PageQuery) -> Page[Run]:
        thread = await self._thread(owner, thread_id)
        return await self._runs.page(thread.channel, thread.id, query)

    async def set_metadata(self, owner: str, thread_id: str, run_id: str, metadata: Mapping[str, str]) -> Run:
        run = await self.get(owner, thread_id, run_id)
        await self._runs.set_metadata(run.id, metadata)
        return await self.get(owner, thread_id, run_id)

    async def cancel(self, owner: str, thread_id: str, run_id: str) -> Run:
        """Cancel the run (``cancelling`` while a model call stops); RunEnded once it has ended."""
        run = await self.get(owner, thread_id, run_id)
        if run.status in TERMINAL_STATUSES:
            raise RunEnded(run)
        return await self._service.cancel_run(run.id)

    async def submit_tool_outputs(
        self, owner: str, thread_id: str, run_id: str, outputs: Mapping[str, str]
    ) -> tuple[Run, RunHandle]:
        run = await self.get(owner, thread_id, run_id)
        handle = await self._service.submit_tool_outputs(run.id, dict(outputs))
        return await self.get(owner, thread_id, run_id), handle

    def watch(self, run: Run) -> RunHandle:
        return self._service.watch(run)

    async def pending_calls(self, run: Run) -> list[tuple[str, str, str]]:
        """(call id, function name, arguments) the run waits for, when it is in requires_action."""
        if run.status != "requires_action":
            return []
        return [(a.call_id, a.tool_name, a.arguments) for a in await self._runs.pending_calls(run.id)]

    async def view(self, run: Run) -> RunView:
        spec = RunSpec.from_json(run.spec) if run.spec else RunSpec(model=run.model or "")
        pending = tuple(PendingCall(*call) for call in await self.pending_calls(run))
        status = "queued" if run.status == "requires_action" and not pending else run.status
        return RunView(run, spec, status, pending, run_error(run.status, run.last_error, run.model))

    async def tool_step(self, run: Run, call_id: str) -> RunStepRecord | None:
        """The tool-call step one call belongs to."""
        for step in await self._runs.steps(run.id):
            if step.call(call_id) is not None:
                return (await self._shown([step]))[0]
        return None

    async def step_of(self, run: Run, step_id: str) -> RunStepRecord | None:
        for step in await self._runs.steps(run.id):
            if step.id == step_id:
                return (await self._shown([step]))[0]
        return None

    async def file_ids(self, knowledge_ids: Sequence[str]) -> dict[str, str]:
        """The ids their owner uploaded these knowledge-base files under (those that were API uploads)."""
        return await self._runs.upload_ids(sorted(set(knowledge_ids)))

    async def _shown(self, steps: list[RunStepRecord]) -> list[RunStepRecord]:
        """The steps with the file ids their owner knows in their file search results."""
        found = [r["file_id"] for step in steps for call in step.calls for r in _results(call)]
        uploads = await self.file_ids(found) if found else {}
        if not uploads:
            return steps
        return [replace(step, calls=tuple(_with_file_ids(call, uploads) for call in step.calls)) for step in steps]

    async def tool_call_count(self, run: Run) -> int:
        """How many tool calls the run has made so far: with :func:`answer_ids`, names its next message."""
        return await self._runs.tool_call_count(run.id)

    async def answer_message_id(self, run: Run) -> str:
        """The message a completed run's message-creation step created: its last assistant message."""
        ids = await self.message_ids(run)
        return ids[-1] if ids else answer_ids(run.id, await self._runs.tool_call_count(run.id)).message_id

    async def output_files(self, run: Run) -> list[OutputRecord]:
        """The files the run's code interpreter wrote, each with the tool call that wrote it (``call_id``): a
        call's ``image`` outputs are those whose ``is_image``."""
        return await self._service.run_outputs.of_run(run.id)

    async def assistant_ids(self, messages: Sequence[MessageRecord]) -> dict[str, str]:
        """The assistant of each run that wrote one of ``messages``, by run id."""
        return await self._runs.assistant_ids([m.run_id for m in messages if m.run_id])

    # -- what runs change about threads ----------------------------------------------------------

    async def add_message(self, owner: str, thread_id: str, message: NewMessage) -> MessageRecord:
        """Add a client's message; UnknownObject for an unknown thread, RunActive while a run is going on it."""
        (row,) = await self._objects.message_rows(owner, [message])
        record = await self._runs.add_message(api_channel(owner, thread_id), thread_id, row)
        if record is None:
            raise UnknownObject("thread", thread_id)
        if message.attachments:
            await self._objects.attach(owner, await self._thread(owner, thread_id), [message])
        return record

    async def delete_thread(self, owner: str, thread_id: str) -> bool:
        """Delete a thread, cancelling its active run first and waiting (briefly) for it to stop.

        The wait reads the run's status rather than its events: a client may be streaming them.
        """
        thread = await self._objects.get_thread(owner, thread_id)
        if thread is None:
            return False
        active = await self._runs.active(thread.id)
        if active is not None:
            run = await self._service.cancel_run(active[0])
            deadline = asyncio.get_running_loop().time() + CANCEL_WAIT_SECONDS
            while run.status not in TERMINAL_STATUSES and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(CANCEL_POLL_SECONDS)
                run = await self.get(owner, thread.id, run.id)
            if run.status not in TERMINAL_STATUSES:
                _log.warning("run %s did not stop in %gs; deleting its thread anyway", run.id, CANCEL_WAIT_SECONDS)
        return await self._objects.delete_thread(owner, thread_id)

    async def steps(self, owner: str, thread_id: str, run_id: str, query: PageQuery) -> Page[RunStepRecord]:
        run = await self.get(owner, thread_id, run_id)
        page = await self._runs.step_page(run.id, query)
        return replace(page, items=await self._shown(page.items))

    async def step(self, owner: str, thread_id: str, run_id: str, step_id: str) -> RunStepRecord:
        run = await self.get(owner, thread_id, run_id)
        step = await self.step_of(run, step_id)
        if step is None:
            raise UnknownObject("run step", step_id)
        return step

    async def message_ids(self, run: Run) -> list[str]:
        """The assistant messages the run wrote (for its message-creation step)."""
        return await self._runs.run_message_ids(run.id)

    async def _thread(self, owner: str, thread_id: str) -> ThreadRecord:
        thread = await self._objects.get_thread(owner, thread_id)
        if thread is None:
            raise UnknownObject("thread", thread_id)
        return thread


def _results(call: ToolCallRecord) -> list[dict[str, Any]]:
    results = call.details.get("results")
    return [r for r in results if isinstance(r, dict) and r.get("file_id")] if isinstance(results, list) else []


def _with_file_ids(call: ToolCallRecord, uploads: Mapping[str, str]) -> ToolCallRecord:
    if not _results(call):
        return call
    results = [r | {"file_id": uploads.get(r["file_id"], r["file_id"])} for r in _results(call)]
    return replace(call, details={**call.details, "results": results})
