"""Runs, run steps and the events of a streamed run, through the openai SDK's own types.

Shapes as the old Assistants API had them. Threadline records each tool call as a step of its
own (the old API grouped a model turn's parallel calls into one step), and every tool call, its
own ``file_search`` and ``code_interpreter`` included, is shown as a ``function`` call with the
tool's name, its arguments and its output: those are what Threadline keeps of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal, get_args

from openai.types.beta import AssistantStreamEvent
from openai.types.beta.assistant_stream_event import ErrorEvent, ThreadRunIncomplete
from openai.types.beta.threads import Message, MessageDeltaEvent, Run
from openai.types.beta.threads.runs import RunStep, RunStepDeltaEvent
from openai.types.shared import ErrorObject
from pydantic import BaseModel

from core.api_runs import RunStepRecord, RunView
from core.models import TERMINAL_STATUSES
from core.models import Run as RunRecord
from core.run_errors import RunError

__all__ = [
    "STREAM_EVENTS",
    "error_payload",
    "image_delta",
    "message_delta",
    "message_step",
    "run",
    "run_step",
    "stream_event",
    "streamed_message",
    "tool_step_delta",
]

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


def _function_call(step: RunStepRecord, *, output: bool = True) -> dict[str, Any]:
    function: dict[str, str | None] = {"name": step.tool_name or "", "arguments": step.arguments or ""}
    if output:
        function["output"] = step.output
    return {"id": step.call_id or step.id, "type": "function", "function": function}


def run_step(
    step: RunStepRecord, record: RunRecord, *, message_id: str, error: RunError | None, calls: bool = True
) -> dict[str, Any]:
    """A stored step; ``message_id``: the message of a message-creation step. ``calls=False``: a tool-call
    step without its call yet (a stream's ``thread.run.step.created``; the call follows in a delta)."""
    if step.type == "message_creation":
        details: dict[str, Any] = {"type": "message_creation", "message_creation": {"message_id": message_id}}
    else:
        details = {"type": "tool_calls", "tool_calls": [_function_call(step)] if calls else []}
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


def tool_step_delta(step: RunStepRecord) -> dict[str, Any]:
    """The call of a tool-call step, as the one delta that carries it (index 0: one call per step)."""
    call = {"index": 0, **_function_call(step, output=False)}
    return _dump(
        RunStepDeltaEvent.model_validate(
            {
                "id": step.id,
                "object": "thread.run.step.delta",
                "delta": {"step_details": {"type": "tool_calls", "tool_calls": [call]}},
            }
        ),
        delta=True,
    )


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


def message_delta(message_id: str, text: str, index: int = 0) -> dict[str, Any]:
    """Text of the message's content part ``index`` (after its images)."""
    return _dump(
        MessageDeltaEvent.model_validate(
            {
                "id": message_id,
                "object": "thread.message.delta",
                "delta": {"content": [{"index": index, "type": "text", "text": {"value": text, "annotations": []}}]},
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
