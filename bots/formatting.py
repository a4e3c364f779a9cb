"""Showing the core's results the same way on every platform: source lists and tool arguments.

Each adapter picks the link syntax its platform renders; the wording lives here once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal

from core.events import Source

__all__ = ["LinkStyle", "format_sources", "pretty_arguments"]

LinkStyle = Literal["markdown", "mrkdwn", "plain"]
ARGUMENTS_LIMIT = 1500


def format_sources(sources: Sequence[Source], style: LinkStyle) -> str:
    """A short numbered list of the files an answer cites, each linked to its upload where the platform gave one."""
    heading = {"markdown": "**Sources**", "mrkdwn": "*Sources*", "plain": "Sources:"}[style]
    lines = [heading]
    for s in sources:
        where = f", {s.location}" if s.location else ""
        name = s.file_name
        if s.link and style == "markdown":
            name = f"[{s.file_name}]({s.link})"
        elif s.link and style == "mrkdwn":
            name = f"<{s.link}|{s.file_name}>"
        indent = "  " if style == "plain" else ""
        lines.append(f"{indent}[{s.number}] {name}{where}")
    return "\n".join(lines)


def pretty_arguments(arguments: str, limit: int = ARGUMENTS_LIMIT) -> str:
    """A tool call's JSON arguments, indented for people, cut at ``limit`` characters."""
    try:
        text = json.dumps(json.loads(arguments), indent=2, ensure_ascii=False)
    except (ValueError, TypeError):
        text = arguments
    text = text.replace("```", "'''")  # the arguments are shown inside a code block
    return text if len(text) <= limit else text[:limit] + "\n…"
