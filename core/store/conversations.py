"""What an adapter asks about a conversation before it posts into it: is it known, has it begun, and
what did the bot answer to a given platform message.

A Slack thread becomes a conversation of its own (core/models.py): the adapter answers follow-ups in
it without a mention only once the bot has been part of it, and a new one begins with the message that
started the Slack thread and the bot's answer, which the store has when that message was a mention.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from core.images import described
from core.store.dialect import position
from core.store.sql import SqlDatabase
from core.store.store import Store

__all__ = ["ConversationState", "conversation_state", "exchange"]


class ConversationState(NamedTuple):
    known: bool  # the conversation was ever posted to (or reset, or given a scope)
    begun: bool  # its current thread has messages


async def conversation_state(store: Store, key: str) -> ConversationState:
    def query(db: SqlDatabase) -> ConversationState:
        row = db.execute(
            "SELECT EXISTS (SELECT 1 FROM messages m WHERE m.thread_id = c.thread_id) FROM channels c WHERE c.key = ?",
            [key],
        ).fetchone()
        return ConversationState(False, False) if row is None else ConversationState(True, bool(row[0]))

    return await store.call(query)


async def exchange(store: Store, channel: str, platform_msg_id: str) -> list[dict[str, str]]:
    """A question and its answer in the conversation ``channel``, found by the platform id of either message
    (the person's, or one that shows the answer: a run's ``reply_ref``), as context items
    (``{"role", "content"}``, the person's with their name as the model saw it, then the assistant's last
    words in its turn); [] when neither is stored."""

    def query(db: SqlDatabase) -> list[dict[str, str]]:
        row = db.execute(
            "SELECT thread_id, turn_id, item FROM messages WHERE channel = ? AND platform_msg_id = ?",
            [channel, platform_msg_id],
        ).fetchone()
        if row is None:
            found = position(db, "' ' || r.reply_ref || ' '", "' ' || ? || ' '")
            row = db.execute(
                "SELECT m.thread_id, m.turn_id, m.item FROM runs r JOIN messages m ON m.id = r.trigger_message_id"
                " WHERE r.thread_id IN (SELECT id FROM threads WHERE channel = ?) AND r.reply_ref IS NOT NULL"
                f" AND {found} > 0 LIMIT 1",
                [channel, platform_msg_id],
            ).fetchone()
        if row is None:
            return []
        thread_id, turn_id, item = row
        items = [{"role": "user", "content": described(json.loads(item).get("content"))}]
        answer = db.execute(
            "SELECT text FROM messages WHERE thread_id = ? AND turn_id = ? AND role = 'assistant' AND text != ''"
            " ORDER BY id DESC LIMIT 1",
            [thread_id, turn_id],
        ).fetchone()
        if answer is not None:
            items.append({"role": "assistant", "content": str(answer[0])})
        return items

    return await store.call(query)
