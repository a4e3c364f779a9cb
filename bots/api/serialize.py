"""Store records to JSON through the openai SDK's own types, so the wire shapes cannot drift from the old API.

Dumped by alias, as the SDK sends them: a JSON schema's ``schema`` is ``schema_`` in Python.
"""

from __future__ import annotations

from typing import Any

from openai.types.beta import Assistant, AssistantDeleted, Thread, ThreadDeleted
from openai.types.beta.threads import Message, MessageDeleted

from core.models import AssistantRecord, MessageRecord, ThreadRecord

__all__ = ["assistant", "assistant_deleted", "message", "message_deleted", "thread", "thread_deleted"]


def assistant(record: AssistantRecord) -> dict[str, Any]:
    return Assistant.model_validate(
        {
            "id": record.id,
            "object": "assistant",
            "created_at": int(record.created_at),
            "name": record.name,
            "description": record.description,
            "model": record.model,
            "instructions": record.instructions,
            "tools": record.tools,
            "tool_resources": record.tool_resources,
            "metadata": record.metadata,
            "temperature": record.temperature,
            "top_p": record.top_p,
            "response_format": record.response_format,
            **({"reasoning_effort": record.reasoning_effort} if record.reasoning_effort else {}),
        }
    ).model_dump(mode="json", by_alias=True)


def assistant_deleted(assistant_id: str) -> dict[str, Any]:
    return AssistantDeleted(id=assistant_id, object="assistant.deleted", deleted=True).model_dump(
        mode="json", by_alias=True
    )


def thread(record: ThreadRecord) -> dict[str, Any]:
    return Thread.model_validate(
        {
            "id": record.id,
            "object": "thread",
            "created_at": int(record.created_at),
            "metadata": record.metadata,
            "tool_resources": record.tool_resources,
        }
    ).model_dump(mode="json", by_alias=True)


def thread_deleted(thread_id: str) -> dict[str, Any]:
    return ThreadDeleted(id=thread_id, object="thread.deleted", deleted=True).model_dump(mode="json", by_alias=True)


def message(record: MessageRecord, assistant_id: str | None = None) -> dict[str, Any]:
    """``assistant_id``: the assistant of the run that wrote it (see ApiRuns.assistant_ids)."""
    created_at = int(record.created_at)
    cited = _annotations(record) if len(record.texts) == 1 else []  # offsets are into the one text part
    return Message.model_validate(
        {
            "id": record.id,
            "object": "thread.message",
            "created_at": created_at,
            "thread_id": record.thread_id,
            "status": "completed",
            "incomplete_details": None,
            "completed_at": created_at if record.run_id else None,  # as the old API: null when added by hand
            "incomplete_at": None,
            "role": record.role,
            "content": [
                {"type": "text", "text": {"value": part, "annotations": cited}} if isinstance(part, str) else part
                for part in record.parts or record.texts
            ],
            "assistant_id": assistant_id,
            "run_id": record.run_id,
            "attachments": list(record.attachments),
            "metadata": record.metadata,
        }
    ).model_dump(mode="json", by_alias=True)


def _annotations(record: MessageRecord) -> list[dict[str, Any]]:
    """The answer's file citations (core/citations.py) and the links to the files its code wrote
    (core/code_outputs.py), in the old API's shape."""
    return [
        {
            "type": kind,
            "text": a["text"],
            "start_index": a["start_index"],
            "end_index": a["end_index"],
            kind: {"file_id": a["file_id"]},
        }
        for a in record.annotations
        for kind in [a.get("type") or "file_citation"]
    ]


def message_deleted(message_id: str) -> dict[str, Any]:
    return MessageDeleted(id=message_id, object="thread.message.deleted", deleted=True).model_dump(
        mode="json", by_alias=True
    )
