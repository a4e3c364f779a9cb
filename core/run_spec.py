"""Runs of API assistants: the settings a run was created with (its spec), and the agent they make.

A run created over the Assistants-compatible API carries a :class:`RunSpec`: the assistant's
settings with the run's overrides applied (instructions, model, tools, sampling, limits). It is
stored with the run as JSON, so a run paused for tool outputs resumes with exactly the same
settings after a restart, whatever happened to the assistant meanwhile.

Tools, as the old API had them:

- ``file_search``: Threadline's file search over the knowledge bases (vector stores) named in
  the thread's and the assistant's ``tool_resources`` (``collections`` here);
- ``code_interpreter``: Threadline's sandbox, when it works on this machine;
- ``function``: executed by the client. The run pauses in ``requires_action`` with the calls,
  and the client's ``submit_tool_outputs`` resumes it. A function that names one of Threadline's
  own tools and gives no ``parameters`` is that tool, run by Threadline (weather, email... with
  their approval rules: see :func:`decision`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from agents import Agent, FunctionTool, ModelSettings, Tool
from agents.tool_context import ToolContext

from core.assistants import DEFAULT_CONTEXT_TOKENS
from core.knowledge.tool import FILE_SEARCH
from core.model_client import reasoning
from core.tools.code_interpreter import CODE_INTERPRETER
from core.tools.registry import ToolRegistry

__all__ = ["CLIENT_OUTPUT_SECONDS", "RunSpec", "build_agent", "decision"]

CLIENT_OUTPUT_SECONDS = 600.0  # the old API's deadline for submit_tool_outputs
NO_OUTPUT = "The client submitted no output for this call."
_APPROVING = frozenset({"approve", "approved", "yes", "y", "true", "ok", "allow"})


@dataclass(frozen=True)
class RunSpec:
    model: str
    instructions: str = ""
    tools: tuple[dict[str, Any], ...] = ()  # as the API takes them
    name: str = "assistant"
    temperature: float | None = None
    top_p: float | None = None
    reasoning_effort: str | None = None  # None: the model's own
    response_format: Any = None  # "auto", or {"type": "json_object"} / {"type": "json_schema", ...}
    tool_choice: Any = None  # "auto" | "none" | "required" | {"type": "function", "function": {"name": ...}}
    parallel_tool_calls: bool = True
    max_prompt_tokens: int | None = None
    max_completion_tokens: int | None = None
    truncation_strategy: dict[str, Any] = field(default_factory=lambda: {"type": "auto", "last_messages": None})
    collections: tuple[str, ...] = ()  # knowledge bases file search reaches
    code_files: tuple[str, ...] = ()  # ids of the files the code interpreter finds in /mnt/data (core/code_files.py)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        data = json.loads(text)
        data["tools"] = tuple(data.get("tools") or ())
        data["collections"] = tuple(data.get("collections") or ())
        data["code_files"] = tuple(data.get("code_files") or ())
        return cls(**data)

    def client_functions(self, threadline_tools: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The functions the client runs, by name."""
        out = {}
        for tool in self.tools:
            function = tool.get("function") if tool.get("type") == "function" else None
            if isinstance(function, dict) and not _is_threadline(function, threadline_tools):
                out[str(function["name"])] = function
        return out

    def threadline_tools(self, threadline_tools: Sequence[str]) -> list[str]:
        """Threadline's own tools this run may use, by name."""
        names = []
        for tool in self.tools:
            kind = tool.get("type")
            if kind in (FILE_SEARCH, CODE_INTERPRETER):
                names.append(str(kind))
            elif kind == "function" and _is_threadline(tool.get("function") or {}, threadline_tools):
                names.append(str(tool["function"]["name"]))
        return names

    @property
    def last_messages(self) -> int | None:
        if self.truncation_strategy.get("type") == "last_messages":
            value = self.truncation_strategy.get("last_messages")
            return int(value) if value is not None else None
        return None

    @property
    def context_tokens(self) -> int:
        if self.max_prompt_tokens is None:
            return DEFAULT_CONTEXT_TOKENS
        return max(min(self.max_prompt_tokens, DEFAULT_CONTEXT_TOKENS), 256)


def _is_threadline(function: Mapping[str, Any], threadline_tools: Sequence[str]) -> bool:
    return function.get("name") in threadline_tools and function.get("parameters") is None


def client_function(definition: Mapping[str, Any], outputs: Mapping[str, str]) -> FunctionTool:
    """A function the client runs: every call waits for the client's output (the run pauses), then
    returns what the client submitted for that call id."""

    async def invoke(ctx: ToolContext[Any], arguments: str) -> str:
        return outputs.get(ctx.tool_call_id, NO_OUTPUT)

    parameters = definition.get("parameters") or {"type": "object", "properties": {}}
    return FunctionTool(
        name=str(definition["name"]),
        description=str(definition.get("description") or ""),
        params_json_schema=dict(parameters),
        on_invoke_tool=invoke,
        strict_json_schema=bool(definition.get("strict")),
        needs_approval=True,
    )


def build_agent(
    spec: RunSpec,
    *,
    model: Any,
    registry: ToolRegistry,
    instructions: str,
    outputs: Mapping[str, str],
    searchable: bool,
) -> Agent[Any]:
    """The openai-agents Agent for one API run; ``outputs``: what the client submitted, by call id."""
    names = spec.threadline_tools(registry.names())
    tools: list[FunctionTool] = list(registry.select([n for n in names if n != FILE_SEARCH]))
    file_search = registry.channel_tool(FILE_SEARCH, None) if FILE_SEARCH in names and searchable else None
    if file_search is not None:
        tools.append(file_search)
    tools += [client_function(f, outputs) for f in spec.client_functions(registry.names()).values()]
    extra: dict[str, Any] = {}
    if isinstance(spec.response_format, dict) and spec.response_format.get("type") in ("json_object", "json_schema"):
        extra["response_format"] = spec.response_format
    settings = ModelSettings(
        temperature=spec.temperature,
        top_p=spec.top_p,
        reasoning=reasoning(spec.reasoning_effort),
        max_tokens=spec.max_completion_tokens,
        parallel_tool_calls=spec.parallel_tool_calls if tools else None,
        tool_choice=_tool_choice(spec.tool_choice) if tools else None,
        include_usage=True,
        extra_body=extra or None,
    )
    return Agent(
        name=spec.name, instructions=instructions, model=model, tools=list[Tool](tools), model_settings=settings
    )


def _tool_choice(choice: Any) -> str | None:
    if isinstance(choice, str) and choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict):
        function = choice.get("function")
        if choice.get("type") == "function" and isinstance(function, dict) and function.get("name"):
            return str(function["name"])
        if choice.get("type") in (FILE_SEARCH, CODE_INTERPRETER):
            return str(choice["type"])
    return None


def decision(kind: str, output: str) -> str:
    """The status a submitted output gives a pending call: a client function's output is its result
    ("approved": run it, returning the output); for Threadline's own tool that needs a person's
    approval (email), the client's output is the decision: "approve" runs it, anything else denies it."""
    if kind == "client_output":
        return "approved"
    return "approved" if output.strip().lower() in _APPROVING else "denied"
