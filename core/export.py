"""``/export``: a channel's current conversation as a Markdown document.

A title with the channel and the date, then every message in order: who wrote it (or the
assistant), when, its text; tool calls with their arguments and results (shortened); and after
each answer the files it cited. Built from the stored messages, so it shows what the assistant
saw, not what a platform rendered.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from core.models import StoredMessage
from core.store import Store

__all__ = ["Export", "export_conversation", "render_markdown"]

SHORT = 600  # characters of a tool's arguments or result shown
_SOURCE = re.compile(r"^\[(\d{1,3})\] (.+)$", re.MULTILINE)
_CITED = re.compile(r"\[(\d{1,3})\]")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Export:
    name: str  # a file name
    data: bytes  # UTF-8 Markdown
    messages: int


async def export_conversation(store: Store, channel: str, now: float) -> Export | None:
    """The channel's current thread as Markdown; None when it has no messages yet."""
    thread_id = await store.current_thread(channel)
    messages = await store.thread_messages(thread_id)
    if not messages:
        return None
    text = render_markdown(channel, messages, now)
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d-%H%M")
    name = f"threadline-{_UNSAFE.sub('-', channel).strip('-')}-{stamp}.md"
    return Export(name, text.encode(), len(messages))


def render_markdown(channel: str, messages: Sequence[StoredMessage], now: float) -> str:
    lines = [
        f"# Conversation in {channel}",
        "",
        f"Exported {_when(now)} · {len(messages)} message{'s' if len(messages) != 1 else ''}"
        f" since {_when(messages[0].created_at)}",
    ]
    calls: dict[str, str] = {}  # call id → tool name
    sources: dict[int, str] = {}  # [n] → "file, location", per turn (file search numbers per run)
    turn: int | None = None
    for message in messages:
        if message.turn_id != turn:
            turn, sources = message.turn_id, {}
        lines += ["", *_render(message, calls, sources)]
    return "\n".join(lines).rstrip() + "\n"


def _render(message: StoredMessage, calls: dict[str, str], sources: dict[int, str]) -> list[str]:
    when = _when(message.created_at)
    item = message.item
    if message.role == "user":
        who = message.author_name or message.author_id or "someone"
        return [f"## {who} · {when}", "", message.text]
    if message.role == "tool_call":
        name = str(item.get("name") or "tool")
        calls[str(item.get("call_id") or "")] = name
        return [f"### Tool call: {name} · {when}", "", _block(_short(_arguments(item.get("arguments"))), "json")]
    if message.role == "tool_result":
        output = message.text
        name = calls.get(str(item.get("call_id") or ""), "tool")
        if name == "file_search":
            for number, where in _SOURCE.findall(output):
                sources.setdefault(int(number), where)
        return [f"### Result of {name}", "", _block(_short(output))]
    if message.role == "assistant":
        out = [f"## Assistant · {when}", "", message.text]
        cited = [n for n in dict.fromkeys(int(c) for c in _CITED.findall(message.text)) if n in sources]
        if cited:
            out += ["", "Sources:", *(f"- [{n}] {sources[n]}" for n in cited)]
        return out
    return [f"## {message.role} · {when}", "", message.text]


def _arguments(raw: object) -> str:
    if not isinstance(raw, str):
        return json.dumps(raw, ensure_ascii=False)
    try:
        return json.dumps(json.loads(raw), ensure_ascii=False)
    except ValueError:
        return raw


def _short(text: str) -> str:
    return text if len(text) <= SHORT else text[:SHORT].rstrip() + f" … ({len(text) - SHORT} more characters)"


def _block(text: str, language: str = "") -> str:
    """A fenced code block whose fence no run of backticks in ``text`` can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")
