"""Request bodies of runs, validated as strictly as the others (bots/api/requests.py): a 400 names the parameter.

Create a run on a thread, create a thread and run it, modify a run, submit tool outputs: the old
API's parameters (the openai SDK's ``run_create_params``, ``thread_create_and_run_params``,
``run_submit_tool_outputs_params``) with its limits.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import Discriminator, Field, Tag

from bots.api.errors import echo, invalid
from bots.api.requests import (
    _TAG,
    MessageCreate,
    Metadata,
    ReasoningEffort,
    ResponseFormat,
    ThreadCreate,
    Tool,
    ToolResources,
    _Body,
    _type_tag,
)
from bots.api.serialize_runs import FILE_SEARCH_CONTENT
from core.api_objects import NewMessage
from core.api_runs import RunRequest

__all__ = ["RunCreate", "RunUpdate", "ThreadAndRunCreate", "ToolOutputsSubmit", "include_query"]


def include_query(request: web.Request) -> frozenset[str]:
    """The ``include[]`` query parameter of runs.create and the steps routes (the SDK sends ``include[]=...``),
    or a 400 naming it: the old API knew one value, file search results with their passages' text."""
    values = [*request.query.getall("include[]", []), *request.query.getall("include", [])]
    for value in values:
        if value != FILE_SEARCH_CONTENT:
            raise invalid(
                f"Invalid value for 'include': {echo(value)!r}. Supported values are: '{FILE_SEARCH_CONTENT}'.",
                "include",
            )
    return frozenset(values)


class FunctionName(_Body):
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]


class FunctionChoice(_Body):
    type: Literal["function"]
    function: FunctionName


class FileSearchChoice(_Body):
    type: Literal["file_search"]


class CodeInterpreterChoice(_Body):
    type: Literal["code_interpreter"]


def _choice_tag(value: Any) -> str | None:
    return _TAG + "mode" if isinstance(value, str) else _type_tag(value)


ToolChoice = Annotated[
    Annotated[Literal["none", "auto", "required"], Tag(_TAG + "mode")]
    | Annotated[FunctionChoice, Tag(_TAG + "function")]
    | Annotated[FileSearchChoice, Tag(_TAG + "file_search")]
    | Annotated[CodeInterpreterChoice, Tag(_TAG + "code_interpreter")],
    Discriminator(_choice_tag),
]


class TruncationStrategy(_Body):
    type: Literal["auto", "last_messages"]
    last_messages: Annotated[int, Field(ge=1)] | None = None


class _RunFields(_Body):
    """What a run may override of its assistant, and ``stream``."""

    assistant_id: Annotated[str, Field(min_length=1)]
    model: Annotated[str, Field(min_length=1)] | None = None
    instructions: Annotated[str, Field(max_length=256_000)] | None = None
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None
    metadata: Metadata | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    reasoning_effort: ReasoningEffort | None = None
    response_format: ResponseFormat | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_prompt_tokens: Annotated[int, Field(ge=256)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=16)] | None = None
    truncation_strategy: TruncationStrategy | None = None
    stream: bool | None = None

    def run_request(self, additional_messages: tuple[NewMessage, ...] = ()) -> RunRequest:
        fields = self.model_dump(exclude_unset=True, by_alias=True)
        return RunRequest(
            assistant_id=self.assistant_id,
            model=self.model,
            instructions=self.instructions,
            additional_instructions=fields.get("additional_instructions"),
            additional_messages=additional_messages,
            tools=fields.get("tools"),
            metadata=self.metadata or {},
            temperature=self.temperature,
            top_p=self.top_p,
            reasoning_effort=self.reasoning_effort,
            response_format=fields.get("response_format"),
            tool_choice=fields.get("tool_choice"),
            parallel_tool_calls=self.parallel_tool_calls,
            max_prompt_tokens=self.max_prompt_tokens,
            max_completion_tokens=self.max_completion_tokens,
            truncation_strategy=fields.get("truncation_strategy"),
        )


class RunCreate(_RunFields):
    additional_instructions: Annotated[str, Field(max_length=256_000)] | None = None
    additional_messages: list[MessageCreate] | None = None

    def request(self) -> RunRequest:
        messages = tuple(
            m.new_message(f"additional_messages[{i}].") for i, m in enumerate(self.additional_messages or [])
        )
        return self.run_request(messages)


class ThreadAndRunCreate(_RunFields):
    thread: ThreadCreate | None = None
    tool_resources: ToolResources | None = None  # the run's: kept with its new thread

    def request(self) -> RunRequest:
        return self.run_request()

    def thread_tool_resources(self) -> dict[str, Any] | None:
        """The new thread's tool_resources: the thread's (its vector stores made inline included), and for each
        tool the run's where the thread names none."""
        resources: dict[str, Any] = {}
        if self.tool_resources is not None:
            resources.update(self.tool_resources.model_dump(exclude_unset=True))
        if self.thread is not None:
            resources.update(self.thread.stored_resources("thread.tool_resources") or {})
        return resources or None


class RunUpdate(_Body):
    metadata: Metadata | None = None


class ToolOutput(_Body):
    tool_call_id: Annotated[str, Field(min_length=1)]
    output: str = ""


class ToolOutputsSubmit(_Body):
    tool_outputs: Annotated[list[ToolOutput], Field(min_length=1, max_length=128)]
    stream: bool | None = None

    def outputs(self) -> dict[str, str]:
        """The outputs by call id (a call named twice keeps its last output)."""
        return {o.tool_call_id: o.output for o in self.tool_outputs}
