"""Slash commands, once for every platform: adapters pass the text, render the reply."""

from __future__ import annotations

from dataclasses import dataclass

from core.service import Threadline

__all__ = ["CommandReply", "handle_command", "is_command"]

HELP = """Commands:
/reset   start a new conversation in this channel (the old one stays stored)
/cancel  stop the answer being written and any queued ones
/help    this list
Anything else is a message for the assistant."""


@dataclass(frozen=True)
class CommandReply:
    text: str


def is_command(text: str) -> bool:
    return text.startswith("/") and not text.startswith("//")


async def handle_command(service: Threadline, channel: str, text: str) -> CommandReply:
    name, _, _argument = text.strip().partition(" ")
    name = name.lower()
    if name == "/reset":
        await service.reset(channel)
        return CommandReply("Started a new conversation. The earlier one is kept but no longer used.")
    if name == "/cancel":
        count = await service.cancel(channel)
        return CommandReply(f"Cancelled {count} run{'s' if count != 1 else ''}." if count else "Nothing to cancel.")
    if name == "/help":
        return CommandReply(HELP)
    return CommandReply(f"Unknown command {name}. Try /help.")
