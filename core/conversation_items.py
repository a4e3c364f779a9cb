"""Conversation items: the form they are stored in, and the form they are given back to the model in.

A thread's messages are stored as plain, provider-neutral Responses-style input items:
``{"role": "assistant", "content": "text"}``, ``{"type": "function_call", ...}``,
``{"type": "function_call_output", ...}`` — no provider ids, no extras.

Given back to openai-agents, an item must survive a paused run's ``RunState.to_json()`` /
``from_json()`` round trip: the state rewrites an assistant message whose content is a string
into ``{"role", "content": [output_text], "status"}``, a shape the Chat Completions converter
refuses on resume ("Unhandled item type or structure"). So assistant messages go back in the
full output-message form (``type``, ``id``, ``status``, ``output_text`` parts), which the
state keeps as it is and every converter accepts. The id is local: Chat Completions never
sends it, and it names the stored message it came from.
"""

from __future__ import annotations

from typing import Any

__all__ = ["model_input", "stored"]


def stored(item: dict[str, Any]) -> dict[str, Any]:
    """The item in the plainest form every model back end replays: no provider ids or extras."""
    if item.get("role") == "assistant" and item.get("type") in (None, "message"):
        return {"role": "assistant", "content": text_of(item.get("content"))}
    if item.get("type") == "function_call":
        return {k: item[k] for k in ("type", "call_id", "name", "arguments") if k in item}
    if item.get("type") == "function_call_output":
        return {k: item[k] for k in ("type", "call_id", "output") if k in item}
    return {k: v for k, v in item.items() if k not in {"provider_data", "id"}}


def model_input(item: dict[str, Any], ref: int | str) -> dict[str, Any]:
    """A stored item as input to a run, in the form that survives a paused run's state.

    ``ref``: the stored message's id, so that the item's local id is stable across resumes.
    """
    if item.get("role") == "assistant" and item.get("type") in (None, "message"):
        return {
            "type": "message",
            "role": "assistant",
            "id": f"msg_{ref}",
            "status": "completed",
            "content": [{"type": "output_text", "text": text_of(item.get("content")), "annotations": []}],
        }
    return item


def text_of(content: Any) -> str:
    """The text of a message's content, whether a string or a list of text parts."""
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")
