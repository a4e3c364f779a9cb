"""The objects of the Assistants-compatible API, owned by API keys: assistants, threads, messages.

Owners: each API key has an owner id (derived from the key by the API adapter; never the key
itself). Every lookup is scoped by it, so another owner's id is simply not found.

Threads and channels: an API thread is a core thread like any other, and each one is the thread
of a channel of its own, ``api:<owner>:<thread id>`` (platform ``api``, workspace the owner,
channel id the thread id). Its messages are rows of the core's message table, so runs, the
context window, the summary and file search work on it as on a Slack or Discord channel. The
thread's id is the core thread's id (``thread_...``); a message's id is its public id
(``msg_...``), which every stored message has, however it was written. Chat channels' threads
are not API threads: their channel keys never match ``api:<owner>:<id>``, so they stay out of reach.

Assistants created here are data in the store, owned by a key; the chat channels' assistants
stay in the assistants file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from core.models import MessageRecord, Page, PageQuery, ThreadRecord
from core.store import Store
from core.store.api_assistants import AssistantStore
from core.store.api_threads import NewMessageRow, ThreadStore
from core.store.store import new_id
from core.tokens import TokenCounter

__all__ = ["API_PLATFORM", "ApiObjects", "AssistantStore", "NewMessage", "api_channel"]

API_PLATFORM = "api"


def api_channel(owner: str, object_id: str) -> str:
    """The channel of an owner's API thread, or the knowledge-base key of an owner's vector store."""
    return f"{API_PLATFORM}:{owner}:{object_id}"


@dataclass(frozen=True)
class NewMessage:
    """A message a client adds to a thread: one or more text parts."""

    role: Literal["user", "assistant"]
    texts: tuple[str, ...]
    metadata: Mapping[str, str] = field(default_factory=dict)


def message_item(message: NewMessage) -> dict[str, Any]:
    """The model input item a message is replayed as (one part: plain text content, which every endpoint takes)."""
    if len(message.texts) == 1:
        return {"role": message.role, "content": message.texts[0]}
    kind = "input_text" if message.role == "user" else "output_text"
    return {"role": message.role, "content": [{"type": kind, "text": text} for text in message.texts]}


class ApiObjects:
    def __init__(self, store: Store, tokens: TokenCounter) -> None:
        self.assistants = AssistantStore(store)
        self._threads = ThreadStore(store)
        self._tokens = tokens

    def message_row(self, message: NewMessage) -> NewMessageRow:
        item = message_item(message)
        return message.role, "\n\n".join(message.texts), item, self._tokens.count_item(item), message.metadata

    # -- threads -------------------------------------------------------------------------------

    async def create_thread(
        self,
        owner: str,
        *,
        metadata: Mapping[str, str],
        tool_resources: Mapping[str, Any] | None,
        messages: Sequence[NewMessage] = (),
    ) -> ThreadRecord:
        thread_id = new_id("thread")
        return await self._threads.create(
            thread_id,
            api_channel(owner, thread_id),
            metadata=metadata,
            tool_resources=tool_resources,
            messages=[self.message_row(m) for m in messages],
        )

    async def get_thread(self, owner: str, thread_id: str) -> ThreadRecord | None:
        return await self._threads.get(thread_id, api_channel(owner, thread_id))

    async def update_thread(self, owner: str, thread_id: str, fields: Mapping[str, Any]) -> ThreadRecord | None:
        return await self._threads.update(thread_id, api_channel(owner, thread_id), fields)

    async def delete_thread(self, owner: str, thread_id: str) -> bool:
        return await self._threads.delete(thread_id, api_channel(owner, thread_id))

    # -- messages ------------------------------------------------------------------------------

    async def add_message(self, owner: str, thread_id: str, message: NewMessage) -> MessageRecord | None:
        return await self._threads.add_message(thread_id, api_channel(owner, thread_id), self.message_row(message))

    async def get_message(self, owner: str, thread_id: str, message_id: str) -> MessageRecord | None:
        return await self._threads.get_message(thread_id, api_channel(owner, thread_id), message_id)

    async def update_message(
        self, owner: str, thread_id: str, message_id: str, metadata: Mapping[str, str]
    ) -> MessageRecord | None:
        return await self._threads.update_message(thread_id, api_channel(owner, thread_id), message_id, metadata)

    async def delete_message(self, owner: str, thread_id: str, message_id: str) -> bool:
        return await self._threads.delete_message(thread_id, api_channel(owner, thread_id), message_id)

    async def list_messages(
        self, owner: str, thread_id: str, query: PageQuery, *, run_id: str | None = None
    ) -> Page[MessageRecord] | None:
        return await self._threads.list_messages(thread_id, api_channel(owner, thread_id), query, run_id=run_id)
