"""What the core tells adapters while it runs: a closed union of small frozen dataclasses.

Adapters match on ``event.type`` exhaustively and render each one their way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "ApprovalRequired",
    "ApprovalResolved",
    "Citation",
    "Event",
    "FileOutput",
    "RunCompleted",
    "RunFailed",
    "RunStarted",
    "Source",
    "TextDelta",
    "ToolCallDelta",
    "ToolCallFinished",
    "ToolCallStarted",
]


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    channel: str
    type: Literal["run_started"] = "run_started"


@dataclass(frozen=True)
class Citation:
    """Where an answer cites a passage file search returned: the marker (``[2]``), its offsets in the text of
    the message being written, and the file's id (the knowledge base's; core/citations.py)."""

    text: str
    start_index: int
    end_index: int
    file_id: str


@dataclass(frozen=True)
class TextDelta:
    """The next words of the message the model is writing; ``citations``: the markers these words complete."""

    run_id: str
    text: str
    citations: tuple[Citation, ...] = ()
    type: Literal["text_delta"] = "text_delta"


@dataclass(frozen=True)
class ToolCallDelta:
    """The model is writing a tool call: ``arguments`` is the next fragment of its JSON arguments (empty when
    the call begins).

    The calls of one model response make one step, ``step_id`` (the id it is stored under), and ``index`` is
    the call's place among them (0, 1, ...). ``ToolCallStarted`` follows once the call is complete."""

    run_id: str
    step_id: str
    call_id: str
    index: int
    tool: str
    arguments: str
    type: Literal["tool_call_delta"] = "tool_call_delta"


@dataclass(frozen=True)
class ToolCallStarted:
    run_id: str
    call_id: str
    tool: str
    arguments: str
    type: Literal["tool_call_started"] = "tool_call_started"


@dataclass(frozen=True)
class ToolCallFinished:
    run_id: str
    call_id: str
    tool: str
    output: str
    type: Literal["tool_call_finished"] = "tool_call_finished"


@dataclass(frozen=True)
class ApprovalRequired:
    """The run waits until someone decides; ``approval_id`` goes back to ``Threadline.decide``."""

    run_id: str
    approval_id: str
    tool: str
    arguments: str
    expires_at: float
    type: Literal["approval_required"] = "approval_required"


@dataclass(frozen=True)
class ApprovalResolved:
    run_id: str
    approval_id: str
    tool: str
    outcome: Literal["approved", "denied", "expired"]
    decided_by: str | None
    type: Literal["approval_resolved"] = "approval_resolved"


@dataclass(frozen=True)
class Source:
    """A passage of an uploaded file the answer cites as ``[number]``."""

    number: int
    file_name: str
    location: str  # "page 3", "sheet Revenue", "Install > Linux", or ""
    link: str | None  # the original upload on the platform, when it gave one
    file_id: str | None = None  # the knowledge base's id of the file


@dataclass(frozen=True)
class RunCompleted:
    run_id: str
    text: str
    sources: tuple[Source, ...] = ()
    type: Literal["run_completed"] = "run_completed"


@dataclass(frozen=True)
class RunFailed:
    """A run ended without an answer: ``status`` is failed, cancelled or expired; ``message`` is for people.

    ``handed_over``: not an end, only this process's part in it: the process stopped and left the run
    queued, to be answered from the start by another process (or at the next start); ``message`` says so.
    """

    run_id: str
    status: Literal["failed", "cancelled", "expired"]
    message: str
    handed_over: bool = False
    type: Literal["run_failed"] = "run_failed"


@dataclass(frozen=True)
class FileOutput:
    """A file a tool produced for the channel (a chart, a CSV...): the adapter posts it.

    ``file_id``: the file kept for the run's API key (purpose ``assistants_output``), for an API run;
    ``call_id``: the tool call that wrote it."""

    run_id: str
    name: str
    data: bytes = field(repr=False)
    mime: str = "application/octet-stream"
    file_id: str | None = None
    call_id: str | None = None
    type: Literal["file_output"] = "file_output"


Event = (
    RunStarted
    | TextDelta
    | ToolCallDelta
    | ToolCallStarted
    | ToolCallFinished
    | ApprovalRequired
    | ApprovalResolved
    | FileOutput
    | RunCompleted
    | RunFailed
)
