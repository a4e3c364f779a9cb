"""Runs of the Assistants-compatible API, owned by API keys: create, read, list, cancel, tool outputs, steps.

A run belongs to an API thread (so to its owner's channel, see core/api_objects.py) and runs an
assistant the same owner created, with the run's overrides applied: the result is the run's
:class:`~core.run_spec.RunSpec`, stored with it. File search reaches the vector stores named in
the thread's and the assistant's ``tool_resources`` (the thread's first, as the old API merged
them). Everything else (queueing, one active run per thread, the run loop, pauses for tool
outputs, their 10-minute deadline) is the core's, shared with the chat channels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.api_objects import NewMessage, api_channel
from core.errors import UnknownObject
from core.handles import RunHandle
from core.models import AssistantRecord, Page, PageQuery, Run, ThreadRecord
from core.run_spec import RunSpec
from core.store.api_runs import RunStepRecord

if TYPE_CHECKING:
    from core.service import Threadline

__all__ = ["ApiRuns", "RunRequest", "vector_store_ids"]


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
        response_format=request.response_format if request.response_format is not None else assistant.response_format,
        tool_choice=request.tool_choice,
        parallel_tool_calls=True if request.parallel_tool_calls is None else request.parallel_tool_calls,
        max_prompt_tokens=request.max_prompt_tokens,
        max_completion_tokens=request.max_completion_tokens,
        truncation_strategy=dict(request.truncation_strategy or {"type": "auto", "last_messages": None}),
        collections=tuple(api_channel(owner, store_id) for store_id in stores),
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
        return await self._service.queue_run(
            channel=thread.channel,
            thread_id=thread.id,
            spec=spec_for(owner, assistant, thread, request),
            assistant_id=assistant.id,
            metadata=dict(request.metadata),
            messages=[self._objects.message_row(m) for m in request.additional_messages],
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
        run = await self.get(owner, thread_id, run_id)
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

    async def steps(self, owner: str, thread_id: str, run_id: str, query: PageQuery) -> Page[RunStepRecord]:
        run = await self.get(owner, thread_id, run_id)
        return await self._runs.step_page(run.id, query)

    async def step(self, owner: str, thread_id: str, run_id: str, step_id: str) -> RunStepRecord:
        run = await self.get(owner, thread_id, run_id)
        for step in await self._runs.steps(run.id):
            if step.id == step_id:
                return step
        raise UnknownObject("run step", step_id)

    async def message_ids(self, run: Run) -> list[str]:
        """The assistant messages the run wrote (for its message-creation step)."""
        return await self._runs.run_message_ids(run.id)

    async def _thread(self, owner: str, thread_id: str) -> ThreadRecord:
        thread = await self._objects.get_thread(owner, thread_id)
        if thread is None:
            raise UnknownObject("thread", thread_id)
        return thread
