"""What a built-in tool's call shows in its run step beyond the text the model read back.

The old API's run steps showed a ``file_search`` call's results (file, score, passage) and a
``code_interpreter`` call's outputs (its logs, its images) as fields of the call. A tool records
them here for its call while it runs (:func:`record`, in the run's context, keyed by call id);
the run loop takes them (:func:`take`) as it finishes the call's step, which stores them with it.

What each tool records:

- ``file_search``: ``results``, a list of ``{"file_id", "file_name", "score", "content"}`` (the
  knowledge base's file id; the score in (0, 1]; the passage's text);
- ``code_interpreter``: ``logs`` (what the code printed, its errors) and ``images``, the ids of the
  image files it wrote, as their owner knows them (none until its output files have ids).
"""

from __future__ import annotations

from typing import Any

from agents import RunContextWrapper
from agents.tool_context import ToolContext

__all__ = ["record", "take"]

_KEY = "tool_details"


def record(ctx: RunContextWrapper[Any], **details: Any) -> None:
    """Add ``details`` to what the step of the call ``ctx`` is running shows (JSON values only)."""
    context = ctx.context
    if not isinstance(ctx, ToolContext) or not isinstance(context, dict):
        return
    context.setdefault(_KEY, {}).setdefault(ctx.tool_call_id, {}).update(details)


def take(context: Any, call_id: str) -> dict[str, Any] | None:
    """What the call ``call_id`` recorded (None: nothing), removed from the run's context."""
    if not isinstance(context, dict):
        return None
    recorded = context.get(_KEY)
    if not isinstance(recorded, dict):
        return None
    details = recorded.pop(call_id, None)
    if not recorded:
        context.pop(_KEY, None)
    return details if isinstance(details, dict) else None
