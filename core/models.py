"""Platform-neutral nouns: who wrote what, where, and the records the store keeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

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
    "parse_channel_key",
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


@dataclass(frozen=True)
class Author:
    """A person: ``id`` as the platform names them; ``key`` and ``roles`` as access control does."""

    id: str
    name: str = ""
    key: str = ""  # the user key policies name: slack:U123, discord:456, console:NAME
    roles: tuple[str, ...] = ()  # role keys (Discord: discord-role:789)


@dataclass(frozen=True)
class Incoming:
    """One message from a person, normalised by an adapter."""

    channel: str
    author: Author
    text: str
    platform_msg_id: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)


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
