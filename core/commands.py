"""Slash commands, once for every platform: adapters pass the text, render the reply."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from core.budget_command import budget_reply
from core.export import export_conversation
from core.feedback import feedback_lines
from core.models import Author, FileRecord
from core.service import Threadline
from core.store.usage import UsageStore
from core.tools.mcp import McpStatus
from core.usage import all_channels_report, channel_report, period_starts

__all__ = ["CommandReply", "format_files", "handle_command", "help_text", "is_command", "mcp_lines", "usage_reply"]

_log = logging.getLogger(__name__)

TOP_USERS = 5
MANAGERS_ONLY = "Only this bot's channel managers may {what}. Ask one of them."

_COMMANDS = """\
/files          list this channel's files (status, size, chunks)
/forget NAME    remove a file from this channel's files; /forget --all removes every file
/reset          start a new conversation here (in a thread: only there; files are kept; the old one stays stored)
/cancel         stop the answer being written and any queued ones
/export         this conversation (the channel's, or the thread's) as a Markdown file, sent only to you
/usage          this channel's tokens and cost today and this month (UTC), and its top users; /usage all: every channel
/assistant      this channel's assistant (name, model, tools); /assistant NAME switches it (managers)
/budget         this channel's budgets and yours, and how much is used; managers change them (/budget help)
/help           this list
"""


def help_text(extra: Sequence[str] = ()) -> str:
    """The /help list; ``extra``: lines for commands only one adapter has (the console's /upload), listed first."""
    lines = [*extra, *_COMMANDS.splitlines()]
    return "\n".join(["Commands:", *lines, "Anything else is a message for the assistant."])


HELP = help_text()


@dataclass(frozen=True)
class CommandReply:
    """What a command answers: text for the person, and maybe a file (name, bytes) the adapter sends them."""

    text: str
    file: tuple[str, bytes] | None = None


def is_command(text: str) -> bool:
    return text.startswith("/") and not text.startswith("//")


async def handle_command(
    service: Threadline, channel: str, text: str, person: Author | None = None, *, scope: str | None = None
) -> CommandReply:
    """Run one command given in the conversation ``channel``; ``person``: who asked (for manager-only commands;
    None: nobody in particular).

    /reset, /cancel and /export act on this conversation; /files, /forget, /usage, /assistant and /budget
    on what it shares with its scope's other conversations (core/models.py), and the policy is the
    scope's. ``scope``: the conversation's channel when the adapter knows it and the key does not say
    it (a Discord thread's parent), remembered from now on (None: as remembered).
    """
    name, _, argument = text.strip().partition(" ")
    name, argument = name.lower(), argument.strip()
    shared = await service.scope(channel, scope)
    refusal = service.policy.refusal(shared)
    if refusal is not None:
        _log.info("command %s from %s in %s not served (policy)", name, _who(person), channel)
        return CommandReply(refusal)
    if name == "/reset":
        await service.reset(channel)
        files = [f for f in await service.knowledge.files(shared) if f.status == "completed"]
        kept = f" The channel's {len(files)} file{'s' if len(files) != 1 else ''} stay searchable." if files else ""
        return CommandReply(f"Started a new conversation; the earlier one is kept but no longer used.{kept}")
    if name == "/cancel":
        count = await service.cancel(channel)
        return CommandReply(f"Cancelled {count} run{'s' if count != 1 else ''}." if count else "Nothing to cancel.")
    if name == "/files":
        return CommandReply(format_files(await service.knowledge.files(shared)))
    if name == "/forget":
        return CommandReply(await _forget(service, shared, argument))
    if name == "/export":
        export = await export_conversation(service.store, channel, time.time())
        if export is None:
            return CommandReply("This channel's conversation has no messages yet, so there is nothing to export.")
        size = f"{export.messages} message{'s' if export.messages != 1 else ''}"
        text = f"This channel's conversation ({size}) as Markdown: {export.name}"
        return CommandReply(text, (export.name, export.data))
    if name == "/usage":
        if argument.lower() == "all" and not service.policy.is_manager(person):
            _log.info("/usage all from %s in %s refused: not a manager (policy)", _who(person), channel)
            return CommandReply(MANAGERS_ONLY.format(what="see every channel's usage"))
        return CommandReply(await usage_reply(service, shared, argument, time.time()))
    if name == "/assistant":
        return CommandReply(await _assistant(service, shared, argument, person))
    if name == "/budget":
        return CommandReply(await budget_reply(service, shared, argument, person))
    if name == "/help":
        return CommandReply(HELP)
    return CommandReply(f"Unknown command {name}. Try /help.")


async def _assistant(service: Threadline, channel: str, argument: str, person: Author | None) -> str:
    names = ", ".join(sorted(service.assistants.assistants))
    if not argument:
        current = await service.channel_assistant(channel)
        tools = current.tools if current.tools is not None else service.tools.builtin_names
        servers = "".join(f"\n{line}" for line in mcp_lines(service.mcp.statuses(current.tools)))
        return (
            f"This channel's assistant: {current.name} (model {current.model}; "
            f"tools: {', '.join(tools) or 'none'}). Others: {names}.{servers}"
        )
    if argument not in service.assistants.assistants:
        return f"There is no assistant called {argument}. The assistants here: {names}."
    if not service.policy.is_manager(person):
        _log.info("/assistant %s from %s in %s refused: not a manager (policy)", argument, _who(person), channel)
        return MANAGERS_ONLY.format(what="switch this channel's assistant")
    switched = await service.set_channel_assistant(channel, argument)
    _log.info("%s switched %s to assistant %s", _who(person), channel, switched.name)
    return f"This channel now uses {switched.name} (model {switched.model}) from its next message on."


def mcp_lines(statuses: list[McpStatus]) -> list[str]:
    """One line for each MCP server an assistant names: up or down, its tools, which need approval."""
    lines = []
    for status in statuses:
        state = "up" if status.up else "down"
        tools = ", ".join(f"{t} (needs approval)" if t in status.needs_approval else t for t in status.tools)
        if not status.tools:
            tools = "not listed yet" if not status.up else "none"
        lines.append(f"MCP server {status.server} ({state}): {tools}")
    return lines


def _who(person: Author | None) -> str:
    return person.key if person is not None and person.key else "someone"


async def _forget(service: Threadline, channel: str, argument: str) -> str:
    if not argument:
        return "Say which file: /forget NAME (see /files), or /forget --all."
    if argument == "--all":
        removed = await service.knowledge.forget_all(channel)
        if not removed:
            return "This channel has no files."
        return f"Removed all {len(removed)} file{'s' if len(removed) != 1 else ''} from this channel."
    removed = await service.knowledge.forget(channel, argument)
    if not removed:
        return f"No file called {argument} here. /files lists this channel's files."
    return f"Removed {argument} from this channel's files."


async def usage_reply(service: Threadline, channel: str, argument: str, now: float) -> str:
    """/usage (this channel, the conversations inside it included) or /usage all (every channel's totals this
    month), priced from the assistants file. ``channel``: a scope (``Threadline.scope``)."""
    usage, prices = UsageStore(service.store), service.assistants.prices
    day, month = period_starts(now)
    if argument.lower() == "all":
        return all_channels_report(await usage.channels(month), prices)
    if argument:
        return f"/usage takes nothing or 'all', not {argument!r}."
    today = await usage.by_model(day, channel=channel)
    this_month = await usage.by_model(month, channel=channel)
    users = await usage.top_users(channel, month, limit=TOP_USERS)
    votes = feedback_lines(await service.feedback.counts(channel, day), await service.feedback.counts(channel, month))
    return channel_report(channel, today, this_month, users, prices, votes)


def format_files(files: list[FileRecord]) -> str:
    if not files:
        return "This channel has no files yet. Share one and the assistant can search it."
    lines = [f"{len(files)} file{'s' if len(files) != 1 else ''}:"]
    for f in files:
        if f.status == "completed":
            state = f"{f.chunk_count} chunk{'s' if f.chunk_count != 1 else ''}"
            if f.kind == "pdf" and f.pages:
                state = f"{f.pages} pages, {state}"
        elif f.status == "in_progress":
            state = "indexing…"
        else:
            state = f"failed: {f.error}"
        lines.append(f"- {f.name} ({_size(f.size)}) — {state}")
    return "\n".join(lines)


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / 1024 / 1024:.1f} MB"
