"""Runs, run steps and the events of a streamed run, through the openai SDK's own types.

Shapes as the old Assistants API had them. The tool calls of one model response are one step,
indexed 0, 1, ... A run's ``file_search`` and ``code_interpreter`` tools show as the old API's
typed calls (:class:`CallStyle`): ``code_interpreter`` with its ``input`` (the code) and its
``outputs`` (``logs``, ``image``), ``file_search`` with its ``ranking_options`` and ``results``
(their passages' text only when ``include[]`` asks for it); every other call is a ``function``
call with its name, arguments and output.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, get_args

from openai.types.beta import AssistantStreamEvent
from openai.types.beta.assistant_stream_event import ErrorEvent, ThreadRunIncomplete
from openai.types.beta.threads import Message, MessageDeltaEvent, Run
from openai.types.beta.threads.runs import RunStep, RunStepDeltaEvent
from openai.types.shared import ErrorObject
from pydantic import BaseModel

from core.api_runs import RunStepRecord, RunView, ToolCallRecord
from core.events import Citation
from core.models import TERMINAL_STATUSES
from core.models import Run as RunRecord
from core.run_errors import RunError

__all__ = [
    "FILE_SEARCH_CONTENT",
    "STREAM_EVENTS",
    "CallStyle",
    "call_begun",
    "call_outputs",
    "code_input",
    "error_payload",
    "function_arguments",
    "image_delta",
    "message_delta",
    "message_step",
    "run",
    "run_step",
    "stream_event",
    "streamed_message",
    "tool_step",
]

# The one value of ``include[]`` the old API knew: file search results with their passages' text.
FILE_SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"
TYPED_TOOLS = ("code_interpreter", "file_search")
DEFAULT_RANKING = MappingProxyType({"ranker": "default_2024_08_21", "score_threshold": 0.0})

# The stream's events by name: each one's ``data`` is checked against the SDK's type for it (and the OpenAPI
# document describes the stream with these types).
STREAM_EVENTS: Mapping[str, type[BaseModel]] = MappingProxyType(
    {
        get_args(cls.model_fields["event"].annotation)[0]: cls
        for cls in get_args(get_args(AssistantStreamEvent)[0])  # the SDK's union of stream events
        if cls is not ThreadRunIncomplete  # a Threadline run never ends incomplete
    }
)

StepStatus = Literal["in_progress", "cancelled", "failed", "completed", "expired"]


@dataclass(frozen=True)
class CallStyle:
    """How a run's tool calls show. ``typed``: the tools the run has as the old API's own tool types (a
    ``function`` the client defined is shown as a function, whatever its name); ``ranking``: its file
    search's ranking options; ``contents``: file search results carry their passages."""

    typed: frozenset[str] = frozenset()
    ranking: Mapping[str, Any] = field(default_factory=lambda: DEFAULT_RANKING)
    contents: bool = False

    @classmethod
    def of(cls, view: RunView, include: Collection[str] = ()) -> CallStyle:
        tools = [t for t in view.spec.tools if t.get("type") in TYPED_TOOLS]
        ranking: dict[str, Any] = dict(DEFAULT_RANKING)
        for tool in tools:
            options = (tool.get("file_search") or {}).get("ranking_options") if tool["type"] == "file_search" else None
            ranking.update(options if isinstance(options, dict) else {})
        return cls(frozenset(str(t["type"]) for t in tools), ranking, FILE_SEARCH_CONTENT in include)

    def kind(self, tool: str) -> str:
        """The type a call to ``tool`` shows as."""
        return tool if tool in self.typed else "function"


def _dump(model: BaseModel, *, delta: bool = False) -> dict[str, Any]:
    """As the SDK sends it; a delta carries only what it sets."""
    return model.model_dump(mode="json", by_alias=True, exclude_unset=delta)


def _int(value: float | None) -> int | None:
    return int(value) if value is not None else None


def run(view: RunView) -> dict[str, Any]:
    record, spec, status = view.run, view.spec, view.status
    ended = status in TERMINAL_STATUSES
    required_action = None
    if status == "requires_action" and view.pending:
        calls = [
            {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in view.pending
        ]
        required_action = {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": calls}}
    usage = None
    if ended:
        usage = {
            "prompt_tokens": record.input_tokens,
            "completion_tokens": record.output_tokens,
            "total_tokens": record.input_tokens + record.output_tokens,
        }
    return _dump(
        Run.model_validate(
            {
                "id": record.id,
                "object": "thread.run",
                "created_at": int(record.created_at),
                "thread_id": record.thread_id,
                "assistant_id": record.assistant_id or "",
                "status": status,
                "required_action": required_action,
                "last_error": _error(view.error),
                "expires_at": None if ended else _int(record.expires_at),
                "started_at": _int(record.started_at),
                "cancelled_at": _int(record.completed_at) if status == "cancelled" else None,
                "failed_at": _int(record.completed_at) if status == "failed" else None,
                "completed_at": _int(record.completed_at) if status == "completed" else None,
                "incomplete_details": json.loads(record.incomplete_details) if record.incomplete_details else None,
                "model": record.model or spec.model,
                "instructions": spec.instructions,
                "tools": list(spec.tools),
                "metadata": json.loads(record.metadata) if record.metadata else {},
                "usage": usage,
                "temperature": spec.temperature,
                "top_p": spec.top_p,
                **({"reasoning_effort": spec.reasoning_effort} if spec.reasoning_effort else {}),
                "response_format": spec.response_format if spec.response_format is not None else "auto",
                "tool_choice": spec.tool_choice if spec.tool_choice is not None else "auto",
                "parallel_tool_calls": spec.parallel_tool_calls,
                "max_prompt_tokens": spec.max_prompt_tokens,
                "max_completion_tokens": spec.max_completion_tokens,
                "truncation_strategy": spec.truncation_strategy,
            }
        )
    )


def _error(error: RunError | None) -> dict[str, str] | None:
    return {"code": error.code, "message": error.message} if error else None


def _step_times(status: str, ended_at: float | None) -> dict[str, int | None]:
    at = _int(ended_at)
    return {
        "completed_at": at if status == "completed" else None,
        "failed_at": at if status == "failed" else None,
        "cancelled_at": at if status == "cancelled" else None,
        "expired_at": at if status == "expired" else None,
    }


def _step(
    step_id: str,
    record: RunRecord,
    *,
    kind: str,
    status: str,
    created_at: float,
    ended_at: float | None,
    details: dict[str, Any],
    error: RunError | None,
) -> dict[str, Any]:
    last_error = None
    if status == "failed" and error is not None:  # a step's codes are the run's, less invalid_prompt
        last_error = {"code": "rate_limit_exceeded" if error.code == "rate_limit_exceeded" else "server_error"}
        last_error["message"] = error.message
    return _dump(
        RunStep.model_validate(
            {
                "id": step_id,
                "object": "thread.run.step",
                "created_at": int(created_at),
                "run_id": record.id,
                "assistant_id": record.assistant_id or "",
                "thread_id": record.thread_id,
                "type": kind,
                "status": status,
                "step_details": details,
                "last_error": last_error,
                "usage": None,
                "metadata": {},
                **_step_times(status, ended_at),
            }
        )
    )


def _tool_call(call: ToolCallRecord, style: CallStyle) -> dict[str, Any]:
    """A call as a step shows it, typed by its tool."""
    kind = style.kind(call.tool_name)
    done = call.status != "in_progress"
    if kind == "code_interpreter":
        outputs = _code_outputs(call) if done else []
        return {"id": call.call_id, "type": kind, kind: {"input": _code(call.arguments), "outputs": outputs}}
    if kind == "file_search":
        results = [_result(r, style) for r in call.details.get("results") or ()] if done else []
        return {"id": call.call_id, "type": kind, kind: {"ranking_options": dict(style.ranking), "results": results}}
    function = {"name": call.tool_name, "arguments": call.arguments, "output": call.output}
    return {"id": call.call_id, "type": "function", "function": function}


def _code(arguments: str) -> str:
    """The code a code_interpreter call runs: its ``code`` argument (the arguments as they are if not JSON)."""
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments
    code = parsed.get("code") if isinstance(parsed, dict) else None
    return code if isinstance(code, str) else arguments


def _code_outputs(call: ToolCallRecord) -> list[dict[str, Any]]:
    """Its ``logs`` (what the code printed, else what the model read back), then its images."""
    logs = call.details.get("logs") if "logs" in call.details else call.output
    outputs: list[dict[str, Any]] = [{"type": "logs", "logs": logs}] if logs else []
    images = call.details.get("images") or ()
    outputs += [{"type": "image", "image": {"file_id": str(file_id)}} for file_id in images]
    return outputs


def _result(result: Mapping[str, Any], style: CallStyle) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "file_id": str(result.get("file_id") or ""),
        "file_name": str(result.get("file_name") or ""),
        "score": float(result.get("score") or 0.0),
    }
    if style.contents:
        shown["content"] = [{"type": "text", "text": str(result.get("content") or "")}]
    return shown


def run_step(
    step: RunStepRecord,
    record: RunRecord,
    *,
    message_id: str,
    error: RunError | None,
    style: CallStyle,
) -> dict[str, Any]:
    """A stored step; ``message_id``: the message of a message-creation step."""
    if step.type == "message_creation":
        details: dict[str, Any] = {"type": "message_creation", "message_creation": {"message_id": message_id}}
    else:
        details = {"type": "tool_calls", "tool_calls": [_tool_call(call, style) for call in step.calls]}
    return _step(
        step.id,
        record,
        kind=step.type,
        status=step.status,
        created_at=step.created_at,
        ended_at=step.completed_at,
        details=details,
        error=error,
    )


def tool_step(
    step_id: str, record: RunRecord, *, status: StepStatus, created_at: float, ended_at: float | None = None
) -> dict[str, Any]:
    """A tool-call step as a stream knows it before it is stored: begun (``thread.run.step.created``; its
    calls follow in deltas), or ended while the model was still writing its calls."""
    details = {"type": "tool_calls", "tool_calls": []}
    return _step(
        step_id,
        record,
        kind="tool_calls",
        status=status,
        created_at=created_at,
        ended_at=ended_at,
        details=details,
        error=None,
    )


def message_step(
    step_id: str, record: RunRecord, *, message_id: str, status: StepStatus, created_at: float, ended_at: float | None
) -> dict[str, Any]:
    """The message-creation step of a message a stream is writing."""
    details = {"type": "message_creation", "message_creation": {"message_id": message_id}}
    return _step(
        step_id,
        record,
        kind="message_creation",
        status=status,
        created_at=created_at,
        ended_at=ended_at,
        details=details,
        error=None,
    )


def _step_delta(step_id: str, call: dict[str, Any]) -> dict[str, Any]:
    return _dump(
        RunStepDeltaEvent.model_validate(
            {
                "id": step_id,
                "object": "thread.run.step.delta",
                "delta": {"step_details": {"type": "tool_calls", "tool_calls": [call]}},
            }
        ),
        delta=True,
    )


def call_begun(step_id: str, index: int, call_id: str, tool: str, style: CallStyle) -> dict[str, Any]:
    """The delta that adds a call to its step, as the model begins it: nothing written yet."""
    kind = style.kind(tool)
    begun: dict[str, dict[str, Any]] = {
        "code_interpreter": {"input": "", "outputs": []},
        "file_search": {},
        "function": {"name": tool, "arguments": "", "output": None},
    }
    return _step_delta(step_id, {"index": index, "id": call_id, "type": kind, kind: begun[kind]})


def function_arguments(step_id: str, index: int, fragment: str) -> dict[str, Any]:
    """The next fragment of a function call's arguments."""
    return _step_delta(step_id, {"index": index, "type": "function", "function": {"arguments": fragment}})


def code_input(step_id: str, index: int, code: str) -> dict[str, Any]:
    """The next characters of the code a code_interpreter call runs."""
    return _step_delta(step_id, {"index": index, "type": "code_interpreter", "code_interpreter": {"input": code}})


def call_outputs(step_id: str, index: int, call: ToolCallRecord) -> dict[str, Any]:
    """A finished code_interpreter call's outputs, as the delta that carries them."""
    outputs = [{"index": i, **output} for i, output in enumerate(_code_outputs(call))]
    return _step_delta(step_id, {"index": index, "type": "code_interpreter", "code_interpreter": {"outputs": outputs}})


def streamed_message(
    message_id: str,
    record: RunRecord,
    *,
    text: str,
    status: Literal["in_progress", "incomplete", "completed"],
    created_at: float,
    ended_at: float | None = None,
    images: Sequence[str] = (),
) -> dict[str, Any]:
    """A message a stream is writing: empty while ``in_progress``, its images (file ids) and text once done."""
    content: list[dict[str, Any]] = []
    if status != "in_progress":
        content = [{"type": "image_file", "image_file": {"file_id": file_id}} for file_id in images]
        content.append({"type": "text", "text": {"value": text, "annotations": []}})
    incomplete = status == "incomplete"
    reason = {"cancelled": "run_cancelled", "expired": "run_expired"}.get(record.status, "run_failed")
    return _dump(
        Message.model_validate(
            {
                "id": message_id,
                "object": "thread.message",
                "created_at": int(created_at),
                "thread_id": record.thread_id,
                "status": status,
                "incomplete_details": {"reason": reason} if incomplete else None,
                "completed_at": _int(ended_at) if status == "completed" else None,
                "incomplete_at": _int(ended_at) if incomplete else None,
                "role": "assistant",
                "content": content,
                "assistant_id": record.assistant_id,
                "run_id": record.id,
                "attachments": [],
                "metadata": {},
            }
        )
    )


def message_delta(
    message_id: str, text: str, cited: Sequence[tuple[int, Citation]] = (), index: int = 0
) -> dict[str, Any]:
    """The next words of the message's content part ``index`` (after its images), with the file citations they
    complete: (the annotation's index in the message's text, the citation with the file id its owner knows)."""
    annotations = [
        {
            "index": at,
            "type": "file_citation",
            "text": c.text,
            "start_index": c.start_index,
            "end_index": c.end_index,
            "file_citation": {"file_id": c.file_id},
        }
        for at, c in cited
    ]
    text_delta = {"value": text, "annotations": annotations}
    return _dump(
        MessageDeltaEvent.model_validate(
            {
                "id": message_id,
                "object": "thread.message.delta",
                "delta": {"content": [{"index": index, "type": "text", "text": text_delta}]},
            }
        ),
        delta=True,
    )


def image_delta(message_id: str, index: int, file_id: str) -> dict[str, Any]:
    """An image file the code interpreter made, as the message's content part ``index`` (ahead of its text)."""
    part = {"index": index, "type": "image_file", "image_file": {"file_id": file_id}}
    return _dump(
        MessageDeltaEvent.model_validate(
            {"id": message_id, "object": "thread.message.delta", "delta": {"content": [part]}}
        ),
        delta=True,
    )


def error_payload(message: str) -> dict[str, Any]:
    """The ``data`` of an ``error`` event: the old API's error object, under ``error`` as its error bodies
    have it (the SDK raises an APIError with the message)."""
    return {"error": _dump(ErrorObject(message=message, type="server_error", param=None, code="server_error"))}


def stream_event(name: str, data: dict[str, Any]) -> str:
    """One server-sent event: ``event: NAME`` and its ``data``, checked against the SDK's type of that event."""
    kind = STREAM_EVENTS[name]
    if kind is ErrorEvent:
        ErrorEvent.model_validate({"event": name, "data": data["error"]})
    else:
        kind.model_validate({"event": name, "data": data})
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
