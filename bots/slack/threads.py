"""Slack threads as conversations: which conversation a message belongs to, whether a message in a
thread is meant for the bot, and what a new thread's conversation begins with.

A channel's (or a DM's) top-level messages continue its own conversation. A reply inside a Slack
thread (``thread_ts`` set and not its own ``ts``) belongs to the thread's conversation,
``conversation_key(channel, thread_ts)``, which shares the channel's files, assistant, policy and
budgets (core/models.py). The bot answers every message in the thread of the message it answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from core.models import conversation_key

__all__ = [
    "CONTEXT_MESSAGES",
    "Place",
    "addressed_elsewhere",
    "context_from_replies",
    "mentions",
    "place_of",
    "strip_mentions",
]

# How many of a Slack thread's messages a new conversation is given when the store has no record of its
# start: conversations.replies returns at most 15 for apps outside the Marketplace (Slack's 2025 limits).
CONTEXT_MESSAGES = 15

_MENTION = re.compile(r"<@([A-Z0-9_]+)(?:\|[^>]*)?>")
# A message for people, not the bot: @here, @channel, @everyone, a user group.
_BROADCAST = re.compile(r"<!(?:here|channel|everyone|subteam\^[A-Z0-9]+)(?:\|[^>]*)?>")


@dataclass(frozen=True)
class Place:
    """Where a Slack message was written and where its answer goes."""

    channel_id: str
    channel_key: str  # the channel's own conversation (its scope)
    key: str  # the message's conversation: the channel's, or its Slack thread's
    reply_in: str  # the thread_ts the answer is posted under
    thread_ts: str | None  # the Slack thread the message is a reply in; None at the top level

    @property
    def in_thread(self) -> bool:
        return self.thread_ts is not None


def place_of(channel_key: str, event: Mapping[str, Any]) -> Place:
    channel_id, ts = str(event["channel"]), str(event["ts"])
    thread_ts = str(event.get("thread_ts") or "") or None
    if thread_ts == ts:  # the thread's first message: at the top level
        thread_ts = None
    key = conversation_key(channel_key, thread_ts)
    return Place(channel_id, channel_key, key, thread_ts or ts, thread_ts)


def strip_mentions(text: str) -> str:
    return _MENTION.sub("", text).strip()


def addressed_elsewhere(text: str, bot_user_id: str | None) -> bool:
    """Whether a message names someone other than the bot (a person, @here, a user group): a follow-up
    in a thread the bot is in that is meant for them."""
    if _BROADCAST.search(text):
        return True
    return any(user != bot_user_id for user in _MENTION.findall(text))


def mentions(text: str, user_id: str | None) -> bool:
    return user_id is not None and user_id in _MENTION.findall(text)


def context_from_replies(
    messages: Iterable[Mapping[str, Any]], before_ts: str, bot_user_id: str | None, names: Mapping[str, str]
) -> list[dict[str, str]]:
    """``Incoming.context`` from a Slack thread's messages (conversations.replies, oldest first): those
    written before ``before_ts``, the bot's as the assistant's, people's as theirs with their names."""
    items: list[dict[str, str]] = []
    for message in messages:
        ts = str(message.get("ts") or "")
        if not ts or float(ts) >= float(before_ts) or message.get("subtype") == "assistant_app_thread":
            continue  # (an assistant thread's first message is Slack's own: its title, no words)
        text = strip_mentions(str(message.get("text") or ""))
        if not text:
            continue
        user = str(message.get("user") or "")
        if bot_user_id is not None and user == bot_user_id:
            items.append({"role": "assistant", "content": text})
        else:
            name = names.get(user) or str(message.get("username") or "") or user
            items.append({"role": "user", "content": f"{name}: {text}" if name else text})
    return items
