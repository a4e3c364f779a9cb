"""Tool calls in progress as task updates of Slack's native stream: a card per call in the streamed answer
("Searching the files", then done), where the workspace takes them.

A workspace that does not (Slack refuses the chunk) is remembered in this process's memory, and its answers
stream as plain text from then on, with nothing said: the thread status (bots/slack/status.py) still
tells what the model is doing.
"""

from __future__ import annotations

import logging
from typing import Literal

from slack_sdk.models.messages.chunk import TaskUpdateChunk

from core.events import ToolCallFinished, ToolCallStarted
from core.tools import TOOL_FAILED_PREFIX

__all__ = ["CardEnd", "TaskUpdates", "ended_card", "task_chunk", "task_title"]

_log = logging.getLogger(__name__)

# Why a message ends while a tool's card in it is still in progress: the tool waits for an approval, the
# answer goes on in a message of its own (past the length of one), or the run ended without the tool's result.
CardEnd = Literal["approval", "continued", "error"]
TASK_TITLES = {"file_search": "Searching the files", "code_interpreter": "Running code"}


def task_title(tool: str) -> str:
    return TASK_TITLES.get(tool, f"Using {tool[:60]}")


def task_chunk(event: ToolCallStarted | ToolCallFinished) -> TaskUpdateChunk:
    """The card of a tool call as ``event`` leaves it: in progress, done, or failed."""
    if event.type == "tool_call_started":
        status = "in_progress"
    else:
        status = "error" if event.output.startswith(TOOL_FAILED_PREFIX) else "complete"
    return TaskUpdateChunk(id=event.call_id or event.tool, title=task_title(event.tool), status=status)


def ended_card(event: ToolCallStarted, end: CardEnd) -> TaskUpdateChunk:
    """The last state of a card still in progress when its message ends (see :data:`CardEnd`)."""
    status = "error" if end == "error" else "pending"
    details = "Waiting for approval" if end == "approval" else None
    return TaskUpdateChunk(id=event.call_id or event.tool, title=task_title(event.tool), status=status, details=details)


class TaskUpdates:
    """Whether Slack takes task updates in this process's workspace, as its answers have shown."""

    def __init__(self) -> None:
        self.refused: str | None = None  # Slack's error when it refused one

    def refuse(self, error: str) -> None:
        if self.refused is None:
            _log.info("Slack refused a task update (%s): tool calls are not shown in the stream from now on", error)
        self.refused = error
