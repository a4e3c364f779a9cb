"""Platform-neutral nouns: who wrote what, where, and the records the store keeps.

Where: a *conversation key*. A channel's own conversation is its channel key,
``platform:workspace:channel``; a conversation inside a channel (a Slack thread) adds a part after
a slash, ``platform:workspace:channel/sub`` (:func:`conversation_key`). Each conversation has its
own thread (history), queue, ``/reset`` and ``/cancel``; it shares its *scope*'s knowledge base,
assistant, policy and budgets. The scope is the channel before the slash (:func:`scope_of`), unless
an adapter names another one (``Incoming.scope``: a Discord thread, a channel of its own whose parent
only the adapter knows); the store records it with the conversation (``channels.scope``,
``Store.scope``), so every later lookup finds the same scope without the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

if TYPE_CHECKING:
    from core.images import SharedImage

__all__ = [
    "TERMINAL_STATUSES",
    "Approval",
    "AssistantRecord",
    "Author",
    "ChunkHit",
    "FileRecord",
    "Incoming",
    "MessageRecord",
    "Page",
    "PageQuery",
    "Run",
    "RunStatus",
    "RunStep",
    "StoredMessage",
    "ThreadRecord",
    "conversation_key",
    "parse_channel_key",
    "scope_of",
    "stored_scope",
    "sub_of",
]

T = TypeVar("T")

RunStatus = Literal[
    "queued", "in_progress", "requires_action", "cancelling", "cancelled", "failed", "completed", "expired"
]
TERMINAL_STATUSES: frozenset[str] = frozenset({"cancelled", "failed", "completed", "expired"})


def parse_channel_key(key: str) -> tuple[str, str, str]:
    """``platform:workspace:channel`` → its three parts; raises ValueError with the expected shape."""
    parts = key.split(":", 2)
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"channel {key!r} is not of the form platform:workspace:channel")
    return parts[0], parts[1], parts[2]


def conversation_key(channel: str, sub: str | None = None) -> str:
    """The key of the conversation ``sub`` inside ``channel`` (a Slack thread's ``thread_ts``); the
    channel's own conversation when ``sub`` is None or empty."""
    parse_channel_key(channel)
    if scope_of(channel) != channel:
        raise ValueError(f"{channel!r} is a conversation inside a channel, not a channel")
    if not sub:
        return channel
    if "/" in sub:
        raise ValueError(f"a sub-conversation's name may not contain '/': {sub!r}")
    return f"{channel}/{sub}"


def scope_of(key: str) -> str:
    """The channel a conversation key lies in, as the key says: the part before the first ``/``
    (a key without one is its own scope). The store may know better (``Store.scope``)."""
    return key.split("/", 1)[0]


def sub_of(key: str) -> str | None:
    """The sub-conversation a key names inside its channel (a Slack thread's ``thread_ts``), or None."""
    _, _, sub = key.partition("/")
    return sub or None


def stored_scope(conversation: str, scope: str | None = None) -> str | None:
    """What the store records as ``conversation``'s scope: None when it is its own.

    ``scope``: the channel an adapter names (None: the one the key says). ValueError when it is not
    a channel key of its own (scopes do not nest)."""
    scope = scope_of(conversation) if scope is None else scope
    parse_channel_key(scope)
    if scope_of(scope) != scope:
        raise ValueError(f"scope {scope!r} is a conversation inside a channel; name the channel")
    return None if scope == conversation else scope


@dataclass(frozen=True)
class Author:
    """A person: ``id`` as the platform names them; ``key`` and ``roles`` as access control does."""

    id: str
    name: str = ""
    key: str = ""  # the user key policies name: slack:U123, discord:456, console:NAME
    roles: tuple[str, ...] = ()  # role keys (Discord: discord-role:789)


@dataclass(frozen=True)
class Incoming:
    """One message from a person, normalised by an adapter.

    ``channel``: the conversation key (see the module docstring). ``scope``: the channel whose
    knowledge base, assistant, policy and budgets the conversation shares, when the adapter knows
    it and the key does not say it (a Discord thread's parent channel); it is remembered, so later
    messages, commands and tool calls find it without being told. None: as remembered, else
    :func:`scope_of` the key. ``context``: what the conversation begins with when it is new (its
    thread has no messages yet), such as the message that started a Slack thread and the bot's
    answer: plain items, ``{"role": "user" | "assistant", "content": "..."}``, stored in order
    before this message as ordinary messages; ignored once the conversation has begun. ``images``: the
    pictures that came with the message (core/images.py); ``text`` may be empty when there are some.
    """

    channel: str
    author: Author
    text: str
    platform_msg_id: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    scope: str | None = None
    context: tuple[dict[str, Any], ...] = ()
    images: tuple[SharedImage, ...] = ()


@dataclass(frozen=True)
class StoredMessage:
    id: int
    thread_id: str
    turn_id: int
    role: str
    text: str
    item: dict[str, Any]
    tokens: int
    author_id: str | None = None
    author_name: str | None = None
    run_id: str | None = None
    created_at: float = 0.0


@dataclass(frozen=True)
class Run:
    id: str
    thread_id: str
    channel: str
    assistant: str
    status: str
    trigger_message_id: int | None
    created_at: float
    started_at: float | None = None
    completed_at: float | None = None
    last_error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    state_json: str | None = None
    model: str | None = None
    spec: str | None = None  # JSON RunSpec for runs created over the API; None: the assistants file's
    assistant_id: str | None = None  # asst_... for API runs
    metadata: str | None = None  # JSON object
    expires_at: float | None = None
    incomplete_details: str | None = None  # JSON object
    actor: str | None = None  # who asked for a chat run (JSON: the policy's key and roles)


@dataclass(frozen=True)
class RunStep:
    id: str
    run_id: str
    type: str
    status: str
    tool_name: str | None = None
    call_id: str | None = None
    arguments: str | None = None
    output: str | None = None
    duration_ms: int | None = None


@dataclass(frozen=True)
class Approval:
    id: str
    run_id: str
    call_id: str
    tool_name: str
    arguments: str
    status: str
    expires_at: float
    decided_by: str | None = None
    kind: str = "approval"  # approval (a person decides) | client_output (the API client runs the function)
    output: str | None = None  # what the client submitted, for client_output


@dataclass(frozen=True)
class FileRecord:
    """A file in a channel's knowledge base."""

    id: str
    channel: str
    name: str
    size: int
    sha256: str
    status: str  # in_progress | completed | failed
    error: str | None = None
    kind: str | None = None
    pages: int | None = None
    chunk_count: int = 0
    link: str | None = None
    platform_file_id: str | None = None
    uploader_name: str | None = None
    created_at: float = 0.0


@dataclass(frozen=True)
class ChunkHit:
    """One search result: a chunk of a file, where it is, and how it ranked."""

    chunk_id: int
    file_id: str
    file_name: str
    location: str
    text: str
    link: str | None
    score: float = 0.0


# -- the Assistants-compatible API's objects ------------------------------------------------


@dataclass(frozen=True)
class AssistantRecord:
    """An assistant created over the API, owned by one API key (the chat channels' are in the assistants file)."""

    id: str
    owner: str
    created_at: float
    model: str
    name: str | None = None
    description: str | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_resources: dict[str, Any] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    temperature: float | None = None
    top_p: float | None = None
    response_format: Any = None  # "auto", an object, or None
    reasoning_effort: str | None = None  # None: the model's own


@dataclass(frozen=True)
class ThreadRecord:
    """A core thread as the API shows it; ``channel`` is the channel it belongs to."""

    id: str
    channel: str
    created_at: float
    metadata: dict[str, str] = field(default_factory=dict)
    tool_resources: dict[str, Any] | None = None


@dataclass(frozen=True)
class MessageRecord:
    """A person's or the assistant's message of a thread, as the API shows it: ``id`` is its public id."""

    id: str
    thread_id: str
    role: Literal["user", "assistant"]
    texts: tuple[str, ...]
    created_at: float
    metadata: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None
    annotations: tuple[dict[str, Any], ...] = ()  # file citations in its text (core/citations.py)
    # Its content in order: texts, and image parts in the old API's shape ({"type": "image_file", ...}, and
    # image_url); empty: its texts alone.
    parts: tuple[str | dict[str, Any], ...] = ()
    attachments: tuple[dict[str, Any], ...] = ()  # the files its client attached: {"file_id", "tools"}


@dataclass(frozen=True)
class PageQuery:
    """One page of a list: ``after`` and ``before`` are ids of listed objects, in the order asked for."""

    limit: int = 20
    order: Literal["asc", "desc"] = "desc"
    after: str | None = None
    before: str | None = None


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool  # more objects lie beyond this page, in the direction it was asked for
