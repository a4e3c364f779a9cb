"""Suggested prompts: what a chat surface offers people to start a conversation with (Slack's assistant pane).

Each assistant of the assistants file may name its own, at most four (what Slack's pane shows)::

    [[assistants]]
    name = "helper"
    suggested_prompts = [
      { title = "Summarise a document", message = "Summarise the file I just shared in five bullet points." },
    ]

Without the key an assistant offers :data:`DEFAULT_SUGGESTED_PROMPTS`; ``suggested_prompts = []`` offers none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.errors import ConfigError

__all__ = ["DEFAULT_SUGGESTED_PROMPTS", "MAX_SUGGESTED_PROMPTS", "SuggestedPrompt", "parse_suggested_prompts"]

MAX_SUGGESTED_PROMPTS = 4  # Slack's assistant pane shows four
MAX_TITLE = 75  # a short label: Slack cuts longer ones
MAX_MESSAGE = 2000
_KEYS = {"title", "message"}


@dataclass(frozen=True)
class SuggestedPrompt:
    """``title``: the short label people see; ``message``: what is sent as their message when they pick it."""

    title: str
    message: str


DEFAULT_SUGGESTED_PROMPTS: tuple[SuggestedPrompt, ...] = (
    SuggestedPrompt("What can you do?", "What can you help me with here, and which tools can you use?"),
    SuggestedPrompt("Search the shared files", "Which files have been shared with you, and what is in each?"),
    SuggestedPrompt("Draft a message", "Help me draft a short, friendly message to my team announcing "),
    SuggestedPrompt("Explain simply", "Explain this to me simply, in a few sentences: "),
)


def parse_suggested_prompts(value: Any, where: str) -> tuple[SuggestedPrompt, ...]:
    """The ``suggested_prompts`` key of one assistant (``where`` names it in errors)."""
    shape = 'a list of tables with a title and a message, e.g. [{ title = "...", message = "..." }]'
    if not isinstance(value, list):
        raise ConfigError(f"{where}: key 'suggested_prompts' must be {shape}.")
    if len(value) > MAX_SUGGESTED_PROMPTS:
        raise ConfigError(
            f"{where}: key 'suggested_prompts' has {len(value)} prompts; Slack shows {MAX_SUGGESTED_PROMPTS} at most."
        )
    prompts = []
    for position, entry in enumerate(value, start=1):
        at = f"{where}: suggested_prompts #{position}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{at}: must be a table with a title and a message.")
        for key in entry:
            if key not in _KEYS:
                raise ConfigError(f"{at}: unknown key {key!r} (expected title and message).")
        fields = []
        for key, limit in (("title", MAX_TITLE), ("message", MAX_MESSAGE)):
            text = entry.get(key)
            if not isinstance(text, str) or not text.strip():
                raise ConfigError(f"{at}: key {key!r} is required and must be a non-empty string.")
            if len(text.strip()) > limit:
                raise ConfigError(f"{at}: key {key!r} is {len(text.strip())} characters long; at most {limit}.")
            fields.append(text.strip())
        prompts.append(SuggestedPrompt(fields[0], fields[1]))
    return tuple(prompts)
