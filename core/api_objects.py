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
from typing import TYPE_CHECKING, Any, Literal

from core.errors import ThreadlineError
from core.images import KIND_NAMES, declared_kind
from core.models import MessageRecord, Page, PageQuery, ThreadRecord
from core.store import Store
from core.store.api_assistants import AssistantStore
from core.store.api_files import ApiFileStore
from core.store.api_threads import NewMessageRow, ThreadStore
from core.store.store import new_id
from core.tokens import TokenCounter

if TYPE_CHECKING:
    from core.attachments import ThreadFiles

__all__ = [
    "API_PLATFORM",
    "ApiObjects",
    "AssistantStore",
    "Attachment",
    "AttachmentRefused",
    "ImageFile",
    "ImageRefused",
    "ImageUrl",
    "MessagePart",
    "MessageRefused",
    "NewMessage",
    "api_channel",
    "api_owner",
]

API_PLATFORM = "api"


def api_channel(owner: str, object_id: str) -> str:
    """The channel of an owner's API thread, or the knowledge-base key of an owner's vector store."""
    return f"{API_PLATFORM}:{owner}:{object_id}"


def api_owner(channel: str) -> str | None:
    """The owner of an API thread's channel; None for a chat platform's."""
    platform, owner, _ = channel.split(":", 2) if channel.count(":") >= 2 else ("", "", "")
    return owner if platform == API_PLATFORM and owner else None


@dataclass(frozen=True)
class ImageFile:
    """An ``image_file`` content part: a file the same key uploaded, shown to the model as an image."""

    file_id: str
    detail: str | None = None  # auto | low | high


@dataclass(frozen=True)
class ImageUrl:
    """An ``image_url`` content part: an image the model endpoint fetches (or a ``data:`` URL)."""

    url: str
    detail: str | None = None


MessagePart = str | ImageFile | ImageUrl


@dataclass(frozen=True)
class Attachment:
    """A file attached to a message, and the tools it is for (``file_search``, ``code_interpreter``):
    core/attachments.py gives it to them."""

    file_id: str
    tools: tuple[str, ...] = ()

    def shown(self) -> dict[str, Any]:
        """As the API lists it with its message."""
        return {"file_id": self.file_id, "tools": [{"type": tool} for tool in self.tools]}


@dataclass(frozen=True)
class NewMessage:
    """A message a client adds to a thread: text parts, and image parts (a user's only), in order; the files
    it attaches."""

    role: Literal["user", "assistant"]
    content: tuple[MessagePart, ...]
    metadata: Mapping[str, str] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(part for part in self.content if isinstance(part, str))


class MessageRefused(ThreadlineError):
    """A file a new message names that the key cannot use: ``index`` is the message's place in the request's
    list, ``inside`` the parameter at fault inside the message. The message is for the client's developer."""

    def __init__(self, message: str, index: int, inside: str) -> None:
        super().__init__(message)
        self.index = index
        self.inside = inside

    def param(self, messages: str | None = None) -> str:
        """The parameter at fault, inside the request's list named ``messages`` (None: a lone message)."""
        return f"{messages}[{self.index}].{self.inside}" if messages else self.inside


class ImageRefused(MessageRefused):
    """An ``image_file`` part that names no image the key may show (``part``: its place in the content)."""

    def __init__(self, message: str, index: int, part: int) -> None:
        super().__init__(message, index, f"content[{part}].image_file.file_id")
        self.part = part


class AttachmentRefused(MessageRefused):
    """An attachment naming a file the key does not have (``attachment``: its place in the list)."""

    def __init__(self, message: str, index: int, attachment: int) -> None:
        super().__init__(message, index, f"attachments[{attachment}].file_id")


def message_item(message: NewMessage) -> dict[str, Any]:
    """The model input item a message is replayed as: plain text content when it is one text, which every
    endpoint takes; otherwise its parts (images as core/images.py stores them)."""
    if len(message.content) == 1 and isinstance(message.content[0], str):
        return {"role": message.role, "content": message.content[0]}
    kind = "input_text" if message.role == "user" else "output_text"
    parts: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, str):
            parts.append({"type": kind, "text": part})
        elif isinstance(part, ImageFile):
            parts.append({"type": "input_image", "file_id": part.file_id, "detail": part.detail})
        else:
            parts.append({"type": "input_image", "image_url": part.url, "detail": part.detail})
    return {"role": message.role, "content": parts}


def _text(message: NewMessage) -> str:
    """The message as the thread's text (summaries, exports): its texts, an image as a short mark."""
    marks = [
        part if isinstance(part, str) else f"[image {part.file_id}]" if isinstance(part, ImageFile) else "[image]"
        for part in message.content
    ]
    return "\n\n".join(marks)


class ApiObjects:
    def __init__(
        self, store: Store, tokens: TokenCounter, max_image_mb: float, files: ThreadFiles | None = None
    ) -> None:
        """``files``: where attached files and inline vector stores go (None: attachments are refused)."""
        self.assistants = AssistantStore(store)
        self._threads = ThreadStore(store)
        self._uploads = ApiFileStore(store)
        self._tokens = tokens
        self._max_image_mb = max_image_mb
        self._files = files

    async def message_rows(self, owner: str, messages: Sequence[NewMessage]) -> list[NewMessageRow]:
        """The rows to store for a client's messages; ImageRefused for an image file the owner cannot show,
        AttachmentRefused for an attached file the owner does not have."""
        for index, message in enumerate(messages):
            for part_index, part in enumerate(message.content):
                if isinstance(part, ImageFile):
                    await self._check_image_file(owner, part.file_id, index, part_index)
            await self._check_attachments(owner, message, index)
        return [self._row(message) for message in messages]

    def _row(self, message: NewMessage) -> NewMessageRow:
        item = message_item(message)
        shown = [a.shown() for a in message.attachments]
        return message.role, _text(message), item, self._tokens.count_item(item), message.metadata, shown

    async def _check_attachments(self, owner: str, message: NewMessage, index: int) -> None:
        if not message.attachments:
            return
        file_ids = [a.file_id for a in message.attachments]
        missing = await self._files.missing(owner, file_ids) if self._files is not None else file_ids
        if missing:
            raise AttachmentRefused(f"No file found with id '{missing[0]}'.", index, file_ids.index(missing[0]))

    async def attach(self, owner: str, thread: ThreadRecord, messages: Sequence[NewMessage]) -> ThreadRecord:
        """Give the files the messages attach to the thread's tools (checked by :meth:`message_rows`)."""
        attachments = [a for message in messages for a in message.attachments]
        if not attachments or self._files is None:
            return thread
        return await self._files.attach(owner, thread, attachments)

    async def inline_resources(self, owner: str, tool_resources: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """A new assistant's or thread's ``tool_resources`` with its inline vector stores made (ResourcesRefused:
        one names a file the owner does not have)."""
        if self._files is None or tool_resources is None:
            return dict(tool_resources) if tool_resources is not None else None
        return await self._files.inline(owner, tool_resources)

    async def _check_image_file(self, owner: str, file_id: str, index: int, part: int) -> None:
        record = await self._uploads.get(owner, file_id)
        if record is None:
            raise ImageRefused(f"No file found with id '{file_id}'.", index, part)
        if declared_kind(record.filename, record.mime) is None:
            raise ImageRefused(
                f"{record.filename} ({file_id}) is not an image the model can be shown: use a {KIND_NAMES} file.",
                index,
                part,
            )
        if record.bytes > int(self._max_image_mb * 1024 * 1024):
            size = f"{record.bytes / 1024 / 1024:.1f} MB"
            raise ImageRefused(
                f"{record.filename} ({file_id}) is {size}, over the {self._max_image_mb:g} MB limit for images on this "
                "server (THREADLINE_MAX_IMAGE_MB).",
                index,
                part,
            )

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
        rows = await self.message_rows(owner, messages)  # checked before anything is made
        record = await self._threads.create(
            thread_id,
            api_channel(owner, thread_id),
            metadata=metadata,
            tool_resources=await self.inline_resources(owner, tool_resources),
            messages=rows,
        )
        return await self.attach(owner, record, messages)

    async def get_thread(self, owner: str, thread_id: str) -> ThreadRecord | None:
        return await self._threads.get(thread_id, api_channel(owner, thread_id))

    async def update_thread(self, owner: str, thread_id: str, fields: Mapping[str, Any]) -> ThreadRecord | None:
        return await self._threads.update(thread_id, api_channel(owner, thread_id), fields)

    async def delete_thread(self, owner: str, thread_id: str) -> bool:
        return await self._threads.delete(thread_id, api_channel(owner, thread_id))

    # -- messages ------------------------------------------------------------------------------

    async def add_message(self, owner: str, thread_id: str, message: NewMessage) -> MessageRecord | None:
        (row,) = await self.message_rows(owner, [message])
        record = await self._threads.add_message(thread_id, api_channel(owner, thread_id), row)
        thread = await self.get_thread(owner, thread_id) if record is not None else None
        if thread is not None:
            await self.attach(owner, thread, [message])
        return record

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
