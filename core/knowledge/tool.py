"""The ``file_search`` tool: the assistant searches the files uploaded to its channel and cites them.

A run searches its conversation's scope's knowledge base (a Slack thread: its channel's; see
core/models.py). A run whose context names ``collections`` (knowledge-base keys: an API run's vector
stores) searches those instead, ranked together.
"""

from __future__ import annotations

from typing import Any

from agents import FunctionTool, RunContextWrapper

from core import tool_details
from core.knowledge.base import KnowledgeBase
from core.knowledge.passages import RESULTS, numbered
from core.tools import tool

__all__ = ["FILE_SEARCH", "make_file_search_tool", "run_context"]

FILE_SEARCH = "file_search"


def run_context(channel: str, run_id: str, scope: str | None = None) -> dict[str, Any]:
    """The context a run carries: its conversation (``channel``), the scope whose files it searches (None:
    the conversation's own), its id, and the sources file search found (numbered [1], [2], ...).

    A plain mapping, so that a paused run's state serialises it and a restored run has it back.
    """
    return {"channel": channel, "scope": scope or channel, "run_id": run_id, "sources": []}


def make_file_search_tool(knowledge: KnowledgeBase) -> FunctionTool:
    @tool(name_override=FILE_SEARCH)
    async def file_search(ctx: RunContextWrapper[Any], query: str) -> str:
        """Search the files people uploaded to this channel and return the most relevant passages.

        Use it whenever a question may be answered by the channel's files. Cite what you use with the
        passage's number in square brackets, like [1] or [2][3], right after the statement it supports.

        Args:
            query: What to look for: a question or keywords, in the files' language.
        """
        context = ctx.context if isinstance(ctx.context, dict) else {}
        keys = _knowledge_keys(context)
        if not keys:
            return "File search is not available in this conversation."
        hits = await knowledge.search_many(keys, query, k=RESULTS)
        results = [{"file_id": h.file_id, "file_name": h.file_name, "score": h.score, "content": h.text} for h in hits]
        tool_details.record(ctx, results=results)  # the call's run step shows them
        if not hits:
            where = "the attached files" if "collections" in context else "this channel's files"
            return f"No passage in {where} matches that. Try other words, or say the files don't cover it."
        return "\n\n".join(numbered(hits, context))

    return file_search


def _knowledge_keys(context: dict[str, Any]) -> list[str]:
    """The knowledge bases a run searches: its ``collections`` when it has them, else its scope's (a run
    paused before scopes existed has only its channel)."""
    if "collections" in context:
        collections = context["collections"]
        return [key for key in collections if isinstance(key, str)] if isinstance(collections, (list, tuple)) else []
    scope = context.get("scope", context.get("channel"))
    return [scope] if isinstance(scope, str) else []
