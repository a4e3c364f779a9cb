"""Passages of a knowledge base as the model reads them: numbered ``[1]``, ``[2]`` ... and kept as the run's
sources, so that an answer citing ``[n]`` lists file, place and link.

The ``file_search`` tool returns them as its result (core/knowledge/tool.py). An assistant whose model has
no tools (``tool_calling = false``) gets the best passages for the question in its instructions instead
(:func:`in_prompt`), within a share of its token budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from core.models import ChunkHit
from core.tokens import TokenCounter

__all__ = ["CITE_HOW", "MAX_CHARS_PER_RESULT", "PROMPT_SHARE", "RESULTS", "in_prompt", "numbered"]

RESULTS = 5  # passages a search returns
MAX_CHARS_PER_RESULT = 4000
PROMPT_SHARE = 4  # passages in the prompt use at most 1/4 of the assistant's token budget
CITE_HOW = (
    "Cite what you use with the passage's number in square brackets, like [1] or [2][3], right after the "
    "statement it supports."
)


def numbered(hits: Sequence[ChunkHit], context: dict[str, Any]) -> list[str]:
    """Each hit as ``[n] file, place`` and its text; a passage the run already has keeps its number, a new one is
    added to the run's ``sources``."""
    sources: list[dict[str, Any]] = context.setdefault("sources", [])
    known = {s["chunk_id"]: s["number"] for s in sources}
    parts = []
    for hit in hits:
        number = known.get(hit.chunk_id)
        if number is None:
            number = len(sources) + 1
            sources.append(
                {
                    "number": number,
                    "chunk_id": hit.chunk_id,
                    "file_id": hit.file_id,
                    "file_name": hit.file_name,
                    "location": hit.location,
                    "link": hit.link,
                }
            )
            known[hit.chunk_id] = number
        where = f"{hit.file_name}, {hit.location}" if hit.location else hit.file_name
        text = hit.text if len(hit.text) <= MAX_CHARS_PER_RESULT else hit.text[:MAX_CHARS_PER_RESULT] + " [...]"
        parts.append(f"[{number}] {where}\n{text}")
    return parts


def in_prompt(hits: Sequence[ChunkHit], context: dict[str, Any], tokens: TokenCounter, budget: int) -> str:
    """The passages for the instructions of a model without tools, best first, as many as fit ``budget`` //
    ``PROMPT_SHARE`` tokens (the best one always, cut to fit); '' when there are none."""
    limit = budget // PROMPT_SHARE
    chosen: list[ChunkHit] = []
    used = 0
    for hit in hits:
        cost = tokens.count(hit.text[:MAX_CHARS_PER_RESULT]) + 20  # and its "[n] file, place" line
        if used + cost > limit:
            if not chosen:  # the best passage, cut to about what fits
                share = max(limit - 20, 50) / max(cost, 1)
                chars = int(min(len(hit.text), MAX_CHARS_PER_RESULT) * share)
                chosen.append(replace(hit, text=hit.text[:chars] + " [...]"))
            break
        chosen.append(hit)
        used += cost
    if not chosen:
        return ""
    return (
        "Passages from the files people uploaded to this channel, found for the latest message. Use them when "
        f"they answer it; say so when they do not cover it. {CITE_HOW}\n\n" + "\n\n".join(numbered(chosen, context))
    )
