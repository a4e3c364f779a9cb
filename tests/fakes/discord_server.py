"""A stand-in for Discord on 127.0.0.1: the REST API, the gateway websocket and the attachment CDN.

The real discord.py client talks to it unmodified once two class attributes point at it
(``point_discord_at(fake, monkeypatch)`` in a test, or ``fake.patch_discord()``, undone on exit)::

    async with FakeDiscord() as fake:
        point_discord_at(fake, monkeypatch)
        client = discord.Client(intents=intents, guild_ready_timeout=0.05)
        ...  # start the client with BOT_TOKEN, then await fake.wait_ready()
        sent = await fake.send_message("hello")            # MESSAGE_CREATE from ALICE, mentioning the bot
        await fake.wait_for("POST", r"/channels/3000/messages")
        assert fake.bot_messages(CHANNEL_ID)[-1]["content"] == "hi alice"

What the bot sees: one guild (``GUILD_ID``) with two text channels (``CHANNEL_ID``,
``OTHER_CHANNEL_ID``, plus ``extra_channels`` more), a public thread (``THREAD_ID``) and a DM
channel with ALICE (``DM_CHANNEL_ID``); with ``second_guild`` also ``SECOND_GUILD_ID`` and its
channel ``SECOND_CHANNEL_ID``. The gateway does HELLO / HEARTBEAT_ACK / IDENTIFY (READY then
GUILD_CREATE) / RESUME (replaying what the client missed, then RESUMED) and answers member chunk
requests; ``dispatch`` pushes any event, and ``send_message``, ``slash_command``, ``autocomplete``
and ``press_button`` build the real payloads for the common ones. ``disconnect`` closes the socket
with a resumable code; events dispatched meanwhile are replayed on RESUME.

Sharding is Discord's: an IDENTIFY with ``shard: [id, count]`` opens that shard's session, whose
READY and GUILD_CREATEs hold the guilds with ``(guild_id >> 22) % count == id`` (``shard_of``);
each event goes to the session(s) of its guild's shard, an event without a guild (a DM) to shard 0.
An IDENTIFY without ``shard`` is shard 0 of 1: every guild and DM. ``GET /gateway/bot`` recommends
``shards`` shards. ``GUILD_ID`` is on shard 0 for any count, ``SECOND_GUILD_ID`` on shard 1 of 2.

REST calls are recorded as ``Call``s and change state the way Discord does: the bot's messages
(``messages``, ``history`` of contents), interaction callbacks and follow-ups (a first follow-up
after a deferred "thinking" answer fills the loading message, as Discord does), reactions,
typing, thread creation and command syncs. Answers have Discord's shapes, including its errors
(``{"code": 50035, "message": "Invalid Form Body", "errors": ...}`` for a 2000+ character message,
10008 Unknown Message, 40060 already acknowledged, 10062 Unknown interaction past the 3 s
deadline...). Message routes carry ``X-RateLimit-*`` headers of a per-channel bucket and answer
429 (with ``Via``, so discord.py retries) when a client ignores them; ``fail_next`` injects a 429
or another error, ``refuse`` answers every matching request with an error until ``allow``.
Waiting is event-driven (``wait_until``, ``wait_for``, ``wait_ready``,
``wait_resumed``): every recorded call or state change wakes the waiters; nothing polls.

JSON answers carry ``Content-Type: application/json`` exactly (discord.py parses nothing else),
and gateway frames are plain-text JSON although the client asks for zlib-stream (discord.py
only inflates binary frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import datetime
import itertools
import json
import math
import mimetypes
import re
import secrets
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote

import discord
import yarl
from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.web_request import FileField

from tests.fakes.loopback import serve_on_loopback

if TYPE_CHECKING:
    import pytest

__all__ = [
    "ADMINISTRATOR",
    "ALICE",
    "ALL_PERMS",
    "APPLICATION_ID",
    "ATTACHMENT_SIZE_LIMIT",
    "BOB",
    "BOT_ROLE_ID",
    "BOT_TOKEN",
    "BOT_USER",
    "BOT_USER_ID",
    "CHANNEL_ID",
    "DM_CHANNEL_ID",
    "EPHEMERAL",
    "EVERYONE_PERMS",
    "GUILD_ID",
    "NO_VIEW_PERMS",
    "OTHER_BOT",
    "OTHER_CHANNEL_ID",
    "SECOND_BOT_ROLE_ID",
    "SECOND_CHANNEL_ID",
    "SECOND_GUILD_ID",
    "TEAM_LEADS_ROLE_ID",
    "THREAD_ID",
    "VIEW_CHANNEL",
    "Attachment",
    "Call",
    "Dispatch",
    "FakeDiscord",
    "Interaction",
    "User",
    "point_discord_at",
    "shard_of",
]

BOT_TOKEN = "fake-bot-token"
BOT_USER_ID = 1000
APPLICATION_ID = 1000  # Discord bots created since 2021 have the application id as user id
GUILD_ID = 2000
BOT_ROLE_ID = 2001  # the bot's managed role in the guild
TEAM_LEADS_ROLE_ID = 2002  # a plain role people can be given (slash_command(roles=...))
OWNER_ID = 4999  # the guild's owner: nobody the tests talk as
CHANNEL_ID = 3000
OTHER_CHANNEL_ID = 3001
THREAD_ID = 3100
DM_CHANNEL_ID = 4000
# A second guild (``FakeDiscord(second_guild=True)``) whose id puts it on shard 1 of 2 (GUILD_ID is on shard 0).
SECOND_GUILD_ID = (1 << 22) | GUILD_ID
SECOND_BOT_ROLE_ID = SECOND_GUILD_ID + 1
SECOND_CHANNEL_ID = SECOND_GUILD_ID + 2

VIEW_CHANNEL = 1 << 10
ADMINISTRATOR = 1 << 3
# discord.Permissions.all(): every bit Discord defines (a few unused bits stay 0).
ALL_PERMS = 0b0000_0000_0001_1111_0111_1111_1111_1111_1111_1111_1111_1111_1111_1111_1111_1111
# Everything but VIEW_CHANNEL. ADMINISTRATOR goes too: Discord never computes an administrator's
# channel permissions without VIEW_CHANNEL.
NO_VIEW_PERMS = ALL_PERMS & ~VIEW_CHANNEL & ~ADMINISTRATOR
# @everyone in the fake guild: view, send, embed, attach, history, react, use commands, threads.
EVERYONE_PERMS = (
    (1 << 6) | VIEW_CHANNEL | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 31) | (1 << 35) | (1 << 38)
)
EPHEMERAL = 1 << 6  # message flag
_LOADING = 1 << 7  # message flag of a deferred ("thinking") interaction response
_COMPONENTS_V2 = 1 << 15

ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024  # per request, for a bot in an unboosted guild
_MAX_CONTENT = 2000
_DISCORD_EPOCH_MS = 1_420_070_400_000
_JOINED_AT = "2024-01-01T00:00:00+00:00"
_API_PREFIX = "/api/v10"
MESSAGE_CONTENT_INTENT = 1 << 15  # the privileged intent's bit in IDENTIFY's intents


@dataclass(frozen=True)
class User:
    """A Discord user the fake knows; ``payload()`` is the user object Discord sends."""

    id: int
    name: str
    bot: bool = False

    def payload(self) -> dict[str, Any]:
        user: dict[str, Any] = {
            "id": str(self.id),
            "username": self.name,
            "discriminator": "0",
            "global_name": None if self.bot else self.name.title(),
            "avatar": None,
            "avatar_decoration_data": None,
            "banner": None,
            "accent_color": None,
            "public_flags": 0,
            "primary_guild": None,
            "collectibles": None,
        }
        if self.bot:
            user["bot"] = True
        return user


BOT_USER = User(BOT_USER_ID, "threadline", bot=True)
ALICE = User(id=5000, name="alice")
BOB = User(id=5001, name="bob")
OTHER_BOT = User(id=5002, name="otherbot", bot=True)
_USERS = {u.id: u for u in (BOT_USER, ALICE, BOB, OTHER_BOT)}


@dataclass(frozen=True)
class Attachment:
    """A file hosted on the fake CDN; ``payload()`` is the attachment object of a message."""

    id: int
    filename: str
    size: int
    url: str
    proxy_url: str
    content_type: str | None = None
    description: str | None = None

    def payload(self) -> dict[str, Any]:
        attachment: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.proxy_url,
            "flags": 0,
        }
        if self.content_type is not None:
            attachment["content_type"] = self.content_type
        if self.description is not None:
            attachment["description"] = self.description
        return attachment


@dataclass(frozen=True)
class Interaction:
    """An interaction the fake dispatched (INTERACTION_CREATE): its id, token and full payload."""

    id: int
    token: str
    payload: dict[str, Any]


class Call(NamedTuple):
    """One REST call: ``path`` is what follows ``/api/v10`` (no query string); ``json`` the parsed body
    (``payload_json`` of a multipart body); ``files`` the uploaded (filename, bytes); ``status`` the answer."""

    method: str
    path: str
    json: Any
    time_monotonic: float
    status: int
    query: dict[str, str]
    files: tuple[tuple[str, bytes], ...]


class Dispatch(NamedTuple):
    """One gateway event (op 0) of a session, in sequence order."""

    session_id: str
    seq: int
    event: str
    data: dict[str, Any]


def shard_of(guild_id: int | None, shard_count: int) -> int:
    """The shard Discord sends a guild's events to; DMs (no guild) go to shard 0."""
    return 0 if guild_id is None else (guild_id >> 22) % shard_count


@dataclass
class _Session:
    """One gateway session: its shard ((0, 1) unsharded), its sequence, its log for RESUME, its live socket."""

    id: str
    shard: tuple[int, int]
    live: web.WebSocketResponse | None
    seq: int = 0
    log: list[tuple[int, str]] = field(default_factory=list)  # (seq, frame)

    def covers(self, guild_id: int | None) -> bool:
        shard_id, count = self.shard
        return shard_of(guild_id, count) == shard_id


class _DiscordError(Exception):
    def __init__(self, status: int, code: int, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.body: dict[str, Any] = {"code": code, "message": message}
        if errors is not None:
            self.body["errors"] = errors


def _form_error(field_path: str, code: str, message: str) -> _DiscordError:
    """Discord's 50035 Invalid Form Body with one nested field error (``a.b.0.c``)."""
    errors: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(field_path.split(".")):
        errors = {part: errors}
    return _DiscordError(400, 50035, "Invalid Form Body", errors)


def _unknown(what: str, code: int) -> _DiscordError:
    return _DiscordError(404, code, f"Unknown {what}")


@dataclass(frozen=True)
class _Failure:
    status: int
    retry_after: float
    code: int | None
    message: str | None


@dataclass(frozen=True)
class _Refusal:
    method: str
    pattern: re.Pattern[str]
    failure: _Failure
    when: Callable[[Any], bool] | None  # of the request's JSON body (``payload_json`` of a multipart one)


@dataclass
class _Bucket:
    remaining: int
    reset_at: float


@dataclass
class _InteractionState:
    id: int
    token: str
    type: int
    channel_id: int
    user: User
    created: float
    command: str | None = None
    response_type: int | None = None
    original_id: int | None = None  # what @original designates once known
    component_message_id: int | None = None
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)  # reachable through the webhook


class _Reply(NamedTuple):
    status: int
    body: Any = None
    headers: Mapping[str, str] = {}


@dataclass
class _Request:
    method: str
    path: str
    match: re.Match[str]
    body: Any
    files: list[tuple[str, str, bytes]]  # (form field, filename, data)
    query: dict[str, str]

    def group(self, index: int) -> str:
        return self.match.group(index)

    def id(self, index: int) -> int:
        return int(self.match.group(index))

    def json_object(self) -> dict[str, Any]:
        if self.body is None:
            return {}
        if not isinstance(self.body, dict):
            raise _DiscordError(400, 50109, "The request body contains invalid JSON.")
        return self.body


_Handler = Callable[[_Request], Awaitable[_Reply]]


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: _Handler
    bucket: str | None = None  # rate-limit bucket name; the channel id is its major parameter
    auth: bool = True  # interaction callbacks and webhook routes are authorized by their token


def _iso(snowflake: int) -> str:
    ms = (snowflake >> 22) + _DISCORD_EPOCH_MS
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat()


def _json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    # Exactly "application/json": discord.py leaves the body as text for anything else (a charset too).
    all_headers = {"Content-Type": "application/json", "Via": "1.1 google"}
    all_headers.update(headers or {})
    return web.Response(body=json.dumps(body).encode(), status=status, headers=all_headers)


def _member_payload(user: User, *, with_user: bool = True, roles: Iterable[int] = ()) -> dict[str, Any]:
    member: dict[str, Any] = {
        "roles": [str(r) for r in roles],
        "nick": None,
        "avatar": None,
        "banner": None,
        "joined_at": _JOINED_AT,
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "flags": 0,  # discord.py's Member requires it
        "pending": False,
        "communication_disabled_until": None,
    }
    if with_user:
        member["user"] = user.payload()
    return member


def _option_type(value: Any) -> int:
    if isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return 4
    if isinstance(value, float):
        return 10
    if isinstance(value, User):
        return 6
    return 3


_COMMAND_NAME = re.compile(r"[-_\w]{1,32}")
_MENTION = re.compile(r"<@!?(\d+)>")


class FakeDiscord:
    """Discord's REST API, gateway and CDN on one local server; use as an async context manager.

    Options: ``close_code_on_identify`` closes the gateway with that code right after IDENTIFY (4014:
    disallowed intents, discord.py raises PrivilegedIntentsRequired); ``extra_channels`` adds guild
    text channels; ``rate_limit=(limit, per_seconds)`` sizes the per-channel buckets of
    the message routes (create, edit and delete each have their own, like Discord), None disables
    them; ``interaction_deadline`` is the time to answer an interaction (None: no deadline);
    ``shards`` is the shard count ``GET /gateway/bot`` recommends; ``second_guild`` adds
    ``SECOND_GUILD_ID`` (on shard 1 of 2) with one text channel, ``SECOND_CHANNEL_ID``.
    Extra channels take ids 3002, 3003... skipping THREAD_ID and DM_CHANNEL_ID.

    What it records, for assertions:

    - gateway: ``identify_payloads`` (``identifies``), ``resume_payloads``, ``resumes`` (successful
      ones), ``readies``, ``sessions`` (ids), ``dispatched`` (every op 0 sent or queued),
      ``connections``, ``gateway_queries``, ``gateway_received``, ``last_close_code`` (the close code
      that ended the last connection, whichever side sent it); ``shards_identified`` (the ``[id, count]``
      of each IDENTIFY, None for an unsharded one);
    - REST: ``calls`` (see ``calls_to`` / ``wait_for``); ``messages`` (channel id -> the bot's
      messages, live dicts updated by edits), ``history`` (message id -> every content, first one
      included), ``deleted``, ``interaction_responses`` (interaction id -> accepted callback bodies),
      ``followups`` (token -> a snapshot of the message after each follow-up POST or webhook PATCH),
      ``reactions`` ((channel, message, emoji, added)), ``typing`` (channel ids),
      ``synced_commands`` ("global" or GUILD_ID -> commands as answered), ``threads_created``,
      ``uploads`` ((filename, bytes) the bot sent), ``downloads`` (CDN URLs fetched),
      ``rate_limited`` (429s served), ``errors`` (the fake's own crashes, raised again on exit).
    """

    def __init__(
        self,
        *,
        close_code_on_identify: int | None = None,
        message_content_allowed: bool = True,
        extra_channels: int = 0,
        rate_limit: tuple[int, float] | None = (5, 5.0),
        interaction_deadline: float | None = 3.0,
        heartbeat_interval: int = 41_250,
        shards: int = 1,
        second_guild: bool = False,
    ) -> None:
        self.close_code_on_identify = close_code_on_identify
        # False: the application's Message Content switch is off in the portal, and an IDENTIFY asking for it
        # is closed with 4014 (Disallowed intent), as Discord does.
        self.message_content_allowed = message_content_allowed
        self.rate_limit = rate_limit
        self.interaction_deadline = interaction_deadline  # seconds to answer an interaction; None: forever
        self.heartbeat_interval = heartbeat_interval
        self.shards = shards  # what GET /gateway/bot recommends
        self.guild_ids = [GUILD_ID, *([SECOND_GUILD_ID] if second_guild else [])]

        # gateway
        self.identify_payloads: list[dict[str, Any]] = []
        self.shards_identified: list[list[int] | None] = []
        self.resume_payloads: list[dict[str, Any]] = []
        self.gateway_received: list[dict[str, Any]] = []  # every payload the client sent, heartbeats included
        self.gateway_queries: list[dict[str, str]] = []  # the query string of every connection
        self.sessions: list[str] = []
        self.dispatched: list[Dispatch] = []
        self.connections = 0
        self.readies = 0
        self.resumes = 0  # successful resumes (RESUMED sent)
        self.last_close_code: int | None = None

        # REST
        self.calls: list[Call] = []
        self.messages: dict[int, list[dict[str, Any]]] = {}
        self.history: dict[int, list[str]] = {}
        self.deleted: list[tuple[int, int]] = []
        self.interaction_responses: dict[int, list[dict[str, Any]]] = {}
        self.followups: dict[str, list[dict[str, Any]]] = {}
        self.reactions: list[tuple[int, int, str, bool]] = []
        self.typing: list[int] = []
        self.synced_commands: dict[str | int, list[dict[str, Any]]] = {}
        self.command_puts: list[str | int] = []  # the scope of every bulk overwrite (a sync), in order
        self.threads_created: list[dict[str, Any]] = []
        self.downloads: list[str] = []
        self.uploads: list[tuple[str, bytes]] = []
        self.rate_limited = 0
        self.errors: list[str] = []  # the fake's own crashes, raised again on exit

        self.channels: dict[int, dict[str, Any]] = {}
        names = ["general", "random", *(f"extra-{i}" for i in range(1, extra_channels + 1))]
        free_ids = (i for i in itertools.count(CHANNEL_ID) if i not in (THREAD_ID, DM_CHANNEL_ID))
        for position, (channel_id, name) in enumerate(zip(free_ids, names, strict=False)):
            self.channels[channel_id] = self._text_channel_payload(channel_id, name, position)
        self.channels[THREAD_ID] = self._thread_payload(THREAD_ID, CHANNEL_ID, "a-thread", ALICE.id)
        self.channels[DM_CHANNEL_ID] = self._dm_payload(DM_CHANNEL_ID, ALICE)
        if second_guild:
            self.channels[SECOND_CHANNEL_ID] = self._text_channel_payload(
                SECOND_CHANNEL_ID, "second-general", 0, guild_id=SECOND_GUILD_ID
            )
        self._dm_by_user: dict[int, int] = {ALICE.id: DM_CHANNEL_ID}

        self._by_id: dict[int, dict[str, Any]] = {}  # every message the fake knows (users' and the bot's)
        self._hosted: dict[int, tuple[str, bytes, str]] = {}  # attachment id -> (filename, data, content type)
        self._interactions: dict[int, _InteractionState] = {}
        self._by_token: dict[str, _InteractionState] = {}
        self._command_ids: dict[tuple[str | int, str], int] = {}
        self._fail_next: list[tuple[str, re.Pattern[str], _Failure]] = []
        self._refusals: list[_Refusal] = []
        self._buckets: dict[tuple[str, int], _Bucket] = {}
        self._last_snowflake = 0
        self._counter = itertools.count(1)

        self._sessions: dict[tuple[int, int], _Session] = {}  # by shard: (id, count); (0, 1) unsharded
        self._sockets: set[web.WebSocketResponse] = set()
        self._server_close: dict[web.WebSocketResponse, int] = {}
        self._send_lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._base = ""
        self._patched: list[tuple[object, str, object]] = []
        self._routes = self._build_routes()

    # --- lifecycle and addresses ---------------------------------------------------------------

    async def __aenter__(self) -> FakeDiscord:
        app = web.Application(client_max_size=4 * ATTACHMENT_SIZE_LIMIT)  # so that the fake itself answers 413
        app.router.add_route("*", _API_PREFIX + "/{tail:.*}", self._api)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{id}/{name}", self._cdn)
        self._runner, self._base = await serve_on_loopback(app)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for target, name, value in reversed(self._patched):
            setattr(target, name, value)
        self._patched.clear()
        for ws in list(self._sockets):
            self._server_close[ws] = WSCloseCode.GOING_AWAY
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        if self._runner is not None:
            await self._runner.cleanup()
        if self.errors and exc_type is None:
            raise RuntimeError("FakeDiscord crashed while answering:\n" + "\n".join(self.errors))

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        if not self._base:
            raise RuntimeError("FakeDiscord is not running: use it as `async with FakeDiscord() as fake:`")
        return self._base

    @property
    def api_base(self) -> str:
        """The value for ``discord.http.Route.BASE``."""
        return self.base_url + _API_PREFIX

    @property
    def gateway_url(self) -> str:
        """The value for ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` (as a ``yarl.URL``)."""
        return "ws" + self.base_url.removeprefix("http") + "/gateway"

    def patch_discord(self) -> None:
        """Point discord.py (process-wide) at this fake; undone when the fake exits."""
        self._patch(discord.http.Route, "BASE", self.api_base)
        self._patch(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(self.gateway_url))

    def _patch(self, target: object, name: str, value: object) -> None:
        self._patched.append((target, name, getattr(target, name)))
        setattr(target, name, value)

    # --- waiting --------------------------------------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "a condition") -> None:
        """Wait until ``predicate()`` holds; it is re-checked whenever the fake records something.

        Only the fake's own events wake it: a predicate on the client's state alone (a list an
        ``on_message`` fills...) is not re-checked until the fake sees another call.
        """
        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    await self._changed.wait_for(predicate)
        except TimeoutError:
            seen = ", ".join(f"{c.method} {c.path} {c.status}" for c in self.calls[-15:]) or "none"
            raise TimeoutError(
                f"FakeDiscord: waited {timeout}s for {what}; last REST calls: {seen}; "
                f"identifies={len(self.identify_payloads)} resumes={self.resumes} errors={self.errors}"
            ) from None

    async def wait_for(self, method: str, pattern: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Wait until ``count`` calls matched ``method`` and ``pattern`` (failed attempts included); return them."""
        await self.wait_until(
            lambda: len(self.calls_to(method, pattern)) >= count, timeout, f"{count} call(s) to {method} {pattern}"
        )
        return self.calls_to(method, pattern)

    async def wait_ready(self, timeout: float = 5.0, count: int = 1) -> None:
        """Wait until READY and GUILD_CREATE were sent after an IDENTIFY (``count`` times in all)."""
        await self.wait_until(lambda: self.readies >= count, timeout, f"{count} READY(s)")

    async def wait_resumed(self, timeout: float = 5.0, count: int = 1) -> None:
        """Wait until a RESUME was answered with the missed events and RESUMED (``count`` times in all)."""
        await self.wait_until(lambda: self.resumes >= count, timeout, f"{count} RESUMED")

    # --- what was called ------------------------------------------------------------------------

    @property
    def identifies(self) -> int:
        return len(self.identify_payloads)

    def calls_to(self, method: str, pattern: str) -> list[Call]:
        """Calls whose method matches and whose path (after /api/v10) matches ``pattern`` entirely."""
        regex = re.compile(pattern)
        return [c for c in self.calls if c.method == method.upper() and regex.fullmatch(c.path)]

    def bot_messages(self, channel_id: int) -> list[dict[str, Any]]:
        """The bot's messages in a channel, oldest first, as they stand now (ephemeral ones are not there)."""
        return self.messages.get(channel_id, [])

    def message(self, message_id: int) -> dict[str, Any] | None:
        """Any message the fake knows (a user's or the bot's), as it stands now."""
        return self._by_id.get(message_id)

    def original_response(self, token: str) -> dict[str, Any] | None:
        """The message ``@original`` designates for an interaction token, if any."""
        state = self._by_token.get(token)
        if state is None or state.original_id is None:
            return None
        return state.messages.get(state.original_id)

    # --- failure injection ----------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        pattern: str,
        *,
        status: int = 429,
        retry_after: float = 0.05,
        count: int = 1,
        code: int | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status`` instead of handling them.

        A 429 has Discord's body (``retry_after``, ``global: false``), a ``Via`` header (without it
        discord.py takes the 429 for a Cloudflare ban and gives up) and ``X-RateLimit-*`` headers.
        Other statuses get ``{"code": code, "message": message}`` (defaults from the status).
        ``pattern`` is matched like ``calls_to``; for the CDN, against ``/attachments/{id}/{name}``.
        """
        failure = _Failure(status, retry_after, code, message)
        for _ in range(count):
            self._fail_next.append((method.upper(), re.compile(pattern), failure))

    def refuse(
        self,
        method: str,
        pattern: str,
        *,
        status: int,
        code: int | None = None,
        message: str | None = None,
        when: Callable[[Any], bool] | None = None,
    ) -> None:
        """Answer every matching request with ``status`` (bodies as for ``fail_next``) until ``allow``.

        ``when``: only requests whose JSON body it holds for (e.g. replies: ``"message_reference" in body``).
        discord.py retries 500, 502, 504 and 524 for 25 seconds before it gives up; 503 it raises at once.
        """
        failure = _Failure(status, 0.0, code, message)
        self._refusals.append(_Refusal(method.upper(), re.compile(pattern), failure, when))

    def allow(self, method: str, pattern: str) -> None:
        """Stop the refusals ``refuse(method, pattern, ...)`` set up."""
        self._refusals = [r for r in self._refusals if (r.method, r.pattern.pattern) != (method.upper(), pattern)]

    def _take_failure(self, method: str, path: str, body: Any) -> _Failure | None:
        for index, (wanted, regex, failure) in enumerate(self._fail_next):
            if wanted == method and regex.fullmatch(path):
                del self._fail_next[index]
                return failure
        for refusal in self._refusals:
            if (
                refusal.method == method
                and refusal.pattern.fullmatch(path)
                and (refusal.when is None or refusal.when(body if body is not None else {}))
            ):
                return refusal.failure
        return None

    def _failure_reply(self, failure: _Failure) -> _Reply:
        if failure.status == 429:
            self.rate_limited += 1
            return self._too_many(failure.retry_after, "injected")
        default = {
            400: (50035, "Invalid Form Body"),
            401: (0, "401: Unauthorized"),
            403: (50013, "Missing Permissions"),
            404: (0, "404: Not Found"),
        }.get(failure.status, (0, f"{failure.status}: Server Error"))
        code = default[0] if failure.code is None else failure.code
        body = {"code": code, "message": default[1] if failure.message is None else failure.message}
        return _Reply(failure.status, body)

    @staticmethod
    def _too_many(retry_after: float, bucket: str, limit: int = 1) -> _Reply:
        retry_after = math.ceil(retry_after * 1000) / 1000
        headers = {
            "Retry-After": str(max(1, math.ceil(retry_after))),
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{retry_after:.3f}",
            "X-RateLimit-Bucket": bucket,
            "X-RateLimit-Scope": "user",
        }
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
        return _Reply(429, body, headers)

    def _rate_limit(self, bucket: str, channel_id: int) -> tuple[_Reply | None, dict[str, str]]:
        """Take a token from the channel's bucket: (a 429 if it is empty, else None; headers for the answer)."""
        if self.rate_limit is None:
            return None, {}
        limit, per = self.rate_limit
        now = time.monotonic()
        state = self._buckets.get((bucket, channel_id))
        if state is None or now >= state.reset_at:
            state = self._buckets[(bucket, channel_id)] = _Bucket(limit, now + per)
        reset_after = max(0.0, state.reset_at - now)
        if state.remaining <= 0:
            self.rate_limited += 1
            return self._too_many(reset_after, bucket, limit), {}
        state.remaining -= 1
        reset_after = math.ceil(reset_after * 1000) / 1000  # never announce a reset before the real one
        return None, {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(state.remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket,
        }

    # --- ids, users, channels -------------------------------------------------------------------

    def _snowflake(self) -> int:
        """A real-looking snowflake (creation time in it), strictly increasing."""
        now = ((time.time_ns() // 1_000_000 - _DISCORD_EPOCH_MS) << 22) | (next(self._counter) & 0xFFF)
        self._last_snowflake = max(self._last_snowflake + 1, now)
        return self._last_snowflake

    @staticmethod
    def _text_channel_payload(channel_id: int, name: str, position: int, *, guild_id: int = GUILD_ID) -> dict[str, Any]:
        return {
            "id": str(channel_id),
            "type": 0,
            "guild_id": str(guild_id),
            "name": name,
            "position": position,
            "permission_overwrites": [],
            "parent_id": None,
            "topic": None,
            "nsfw": False,
            "rate_limit_per_user": 0,
            "last_message_id": None,
            "default_auto_archive_duration": 1440,
            "flags": 0,
        }

    def _thread_payload(self, thread_id: int, parent_id: int, name: str, owner_id: int) -> dict[str, Any]:
        created = _iso(thread_id) if thread_id >= 1 << 22 else _JOINED_AT  # a snowflake knows its time
        return {
            "id": str(thread_id),
            "type": 11,
            "guild_id": str(self._guild_of_channel(parent_id) or GUILD_ID),
            "parent_id": str(parent_id),
            "owner_id": str(owner_id),
            "name": name,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": created,
                "locked": False,
                "create_timestamp": created,
            },
        }

    @staticmethod
    def _dm_payload(channel_id: int, user: User) -> dict[str, Any]:
        return {"id": str(channel_id), "type": 1, "last_message_id": None, "recipients": [user.payload()], "flags": 0}

    def _is_guild_channel(self, channel_id: int) -> bool:
        channel = self.channels.get(channel_id)
        return channel is not None and "guild_id" in channel

    def _guild_of_channel(self, channel_id: int) -> int | None:
        """The guild a channel (or thread) is in; None for a DM or an unknown channel."""
        guild = (self.channels.get(channel_id) or {}).get("guild_id")
        return int(guild) if guild is not None else None

    @staticmethod
    def _bot_role(guild_id: int) -> int:
        """The bot's managed role in a guild."""
        return BOT_ROLE_ID if guild_id == GUILD_ID else SECOND_BOT_ROLE_ID

    def _known_guild(self, guild_id: int) -> int:
        if guild_id not in self.guild_ids:
            raise _unknown("Guild", 10004)
        return guild_id

    def _channel(self, channel_id: int) -> dict[str, Any]:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise _unknown("Channel", 10003)
        return channel

    def _guild_payload(self, guild_id: int = GUILD_ID) -> dict[str, Any]:
        mine = [c for c in self.channels.values() if c.get("guild_id") == str(guild_id)]
        guild_channels = [c for c in mine if c["type"] != 11]
        threads = [c for c in mine if c["type"] in (10, 11, 12)]
        roles = [
            _role(guild_id, "@everyone", EVERYONE_PERMS, 0),
            _role(
                self._bot_role(guild_id), BOT_USER.name, ALL_PERMS, 1, managed=True, tags={"bot_id": str(BOT_USER_ID)}
            ),
        ]
        if guild_id == GUILD_ID:
            roles.append(_role(TEAM_LEADS_ROLE_ID, "team-leads", EVERYONE_PERMS, 2))
        text_channels = [c for c in guild_channels if c["type"] == 0]
        return {
            "id": str(guild_id),
            "name": "Threadline Test" if guild_id == GUILD_ID else "Threadline Second",
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(OWNER_ID),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "application_id": None,
            "system_channel_id": text_channels[0]["id"] if text_channels else None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "max_members": 500_000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "vanity_url_code": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "features": [],
            "roles": roles,
            "emojis": [],
            "stickers": [],
            "joined_at": _JOINED_AT,
            "large": False,
            "unavailable": False,
            "lazy": True,
            "member_count": len(_USERS),
            "members": [_member_payload(BOT_USER, roles=[self._bot_role(guild_id)])],
            "channels": guild_channels,
            "threads": threads,
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "embedded_activities": [],
            "incidents_data": None,
        }

    def _user(self, user_id: int) -> User:
        user = _USERS.get(user_id)
        if user is None:
            raise _unknown("User", 10013)
        return user

    # --- the CDN ----------------------------------------------------------------------------------

    def attachment(
        self, name: str, data: bytes, *, content_type: str | None = None, declared_size: int | None = None
    ) -> Attachment:
        """Host ``data`` on the fake CDN; the Attachment's ``payload()`` goes in a message's ``attachments``.

        ``declared_size`` is the size the attachment object claims (default ``len(data)``).
        """
        attachment_id = self._snowflake()
        self._hosted[attachment_id] = (name, data, content_type or "application/octet-stream")
        url = f"{self.base_url}/attachments/{attachment_id}/{quote(name)}"
        return Attachment(
            id=attachment_id,
            filename=name,
            size=len(data) if declared_size is None else declared_size,
            url=url,
            proxy_url=url,
            content_type=content_type,
        )

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        self.downloads.append(str(request.url))
        await self._notify()
        failure = self._take_failure("GET", request.path, None)
        if failure is not None:
            reply = self._failure_reply(failure)
            return _json_response(reply.body, reply.status, reply.headers)
        try:
            hosted = self._hosted.get(int(request.match_info["id"]))
        except ValueError:
            hosted = None
        if hosted is None or hosted[0] != request.match_info["name"]:
            return web.Response(status=404, text="Not Found")
        _, data, content_type = hosted
        return web.Response(body=data, content_type=content_type)

    # --- the gateway ------------------------------------------------------------------------------

    async def dispatch(self, event: str, data: dict[str, Any]) -> int:
        """Send a gateway event (op 0) to the session of its guild's shard (a DM's: shard 0), with that
        session's next sequence number; return that number.

        While the client is disconnected the event waits in the session's log and is replayed
        when the client RESUMEs from an earlier sequence number.
        """
        if not self._sessions:
            raise RuntimeError("no gateway session yet: start the client and await fake.wait_ready() first")
        guild_id = self._guild_of(data)
        if not any(session.covers(guild_id) for session in self._sessions.values()):
            raise RuntimeError(f"no gateway session serves guild {guild_id}'s shard: is that shard's client started?")
        return await self._dispatch(event, data)

    def session_ids(self, shard: int = 0) -> list[str]:
        """The ids of the sessions open now for shard ``shard`` (of any shard count)."""
        return [session.id for key, session in self._sessions.items() if key[0] == shard]

    def live_socket(self, shard: int = 0) -> web.WebSocketResponse | None:
        """The connection that shard ``shard``'s events go to now, if any (an unsharded client's is shard 0)."""
        for (shard_id, _count), session in self._sessions.items():
            if shard_id == shard and session.live is not None and not session.live.closed:
                return session.live
        return None

    @staticmethod
    def _guild_of(data: dict[str, Any]) -> int | None:
        guild = data.get("guild_id")
        return int(guild) if guild is not None else None

    async def _dispatch(self, event: str, data: dict[str, Any]) -> int:
        if event == "MESSAGE_CREATE":
            self._by_id.setdefault(int(data["id"]), data)
        async with self._send_lock:
            seq = await self._dispatch_locked(event, data)
        await self._notify()
        return seq

    async def _dispatch_locked(self, event: str, data: dict[str, Any]) -> int:
        """Send (or log, while disconnected) the event to every session whose shard holds its guild."""
        guild_id = self._guild_of(data)
        seq = 0
        for session in list(self._sessions.values()):
            if session.covers(guild_id):
                seq = await self._send_event(session, event, data)
        return seq

    async def _send_event(self, session: _Session, event: str, data: dict[str, Any]) -> int:
        session.seq += 1
        frame = json.dumps({"op": 0, "t": event, "s": session.seq, "d": data})
        session.log.append((session.seq, frame))
        self.dispatched.append(Dispatch(session.id, session.seq, event, data))
        live = session.live
        if live is not None and not live.closed:
            with contextlib.suppress(ConnectionError):
                await live.send_str(frame)
        return session.seq

    async def _dispatch_if_connected(self, event: str, data: dict[str, Any]) -> None:
        if self._sessions:
            await self._dispatch(event, data)

    def _take_live(self, shard: int) -> tuple[_Session | None, web.WebSocketResponse | None]:
        """Detach shard ``shard``'s live connection from its session (call under the send lock)."""
        for (shard_id, _count), session in self._sessions.items():
            if shard_id == shard and session.live is not None:
                ws, session.live = session.live, None
                return session, ws
        return None, None

    async def disconnect(self, code: int = 4000, *, shard: int = 0) -> None:
        """Close shard ``shard``'s live gateway connection with ``code`` (4000: resumable; discord.py RESUMEs)."""
        async with self._send_lock:
            _session, ws = self._take_live(shard)
        if ws is None:
            raise RuntimeError("no live gateway connection to close")
        self._server_close[ws] = code
        await ws.close(code=code, message=b"fake disconnect")
        await self._notify()

    async def request_reconnect(self, *, shard: int = 0) -> None:
        """Send op 7 RECONNECT: the client closes and resumes on ``resume_gateway_url``."""
        async with self._send_lock:
            _session, ws = self._take_live(shard)
        if ws is None:
            raise RuntimeError("no live gateway connection")
        await ws.send_str(json.dumps({"op": 7, "d": None, "s": None, "t": None}))

    async def invalidate_session(self, *, shard: int = 0) -> None:
        """Send op 9 INVALID_SESSION (not resumable): the client must IDENTIFY again."""
        async with self._send_lock:
            session, ws = self._take_live(shard)
            if session is not None:
                del self._sessions[session.shard]
        if ws is None:
            raise RuntimeError("no live gateway connection")
        await ws.send_str(json.dumps({"op": 9, "d": False, "s": None, "t": None}))

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, timeout=2.0)
        await ws.prepare(request)
        self.connections += 1
        self._sockets.add(ws)
        self.gateway_queries.append(dict(request.query))
        try:
            hello = {"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval}, "s": None, "t": None}
            async with self._send_lock:
                await ws.send_str(json.dumps(hello))
            await self._notify()
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                try:
                    payload = json.loads(message.data)
                    await self._on_gateway_payload(ws, payload)
                except ConnectionError:  # the client went away while we answered
                    break
                except Exception:
                    self.errors.append(traceback.format_exc())
                    await ws.close(code=4002, message=b"Error while decoding payload.")
        finally:
            self._sockets.discard(ws)
            for session in self._sessions.values():
                if session.live is ws:
                    session.live = None
            self.last_close_code = self._server_close.pop(ws, ws.close_code)
            await self._notify()
        return ws

    async def _on_gateway_payload(self, ws: web.WebSocketResponse, payload: dict[str, Any]) -> None:
        self.gateway_received.append(payload)
        op, raw = payload.get("op"), payload.get("d")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if op == 1:
            async with self._send_lock:
                await ws.send_str(json.dumps({"op": 11, "d": None, "s": None, "t": None}))
        elif op == 2:
            await self._identify(ws, data)
        elif op == 6:
            await self._resume(ws, data)
        elif op == 8:
            await self._request_members(data)
        await self._notify()

    async def _close(self, ws: web.WebSocketResponse, code: int, reason: str) -> None:
        self._server_close[ws] = code
        await ws.close(code=code, message=reason.encode())

    @staticmethod
    def _shard_key(raw: Any) -> tuple[int, int] | None:
        """IDENTIFY's ``shard`` as (id, count): (0, 1) when absent, None when invalid (Discord closes 4010)."""
        if raw is None:
            return 0, 1
        if not isinstance(raw, list) or len(raw) != 2 or not all(type(n) is int for n in raw):
            return None
        shard_id, count = raw
        return (shard_id, count) if 0 <= shard_id < count else None

    async def _identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        self.identify_payloads.append(data)
        self.shards_identified.append(data.get("shard"))
        if data.get("token") != BOT_TOKEN:
            await self._close(ws, 4004, "Authentication failed.")
            return
        key = self._shard_key(data.get("shard"))
        if key is None:
            await self._close(ws, 4010, "Invalid shard.")
            return
        if self.close_code_on_identify is not None:
            await self._close(ws, self.close_code_on_identify, "Disallowed intent(s).")
            return
        if not self.message_content_allowed and int(data.get("intents") or 0) & MESSAGE_CONTENT_INTENT:
            await self._close(ws, 4014, "Disallowed intent(s).")
            return
        async with self._send_lock:
            session = self._sessions[key] = _Session(secrets.token_hex(16), key, ws)
            self.sessions.append(session.id)
            guilds = [guild_id for guild_id in self.guild_ids if session.covers(guild_id)]
            ready: dict[str, Any] = {
                "v": 10,
                "user": BOT_USER.payload() | {"verified": True, "mfa_enabled": False, "flags": 0, "email": None},
                "guilds": [{"id": str(guild_id), "unavailable": True} for guild_id in guilds],
                "session_id": session.id,
                "session_type": "normal",
                "resume_gateway_url": self.gateway_url,
                "application": {"id": str(APPLICATION_ID), "flags": 0},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "guild_join_requests": [],
                "user_settings": {},
                "geo_ordered_rtc_regions": ["local"],
                "auth": {},
                "_trace": ['["fake-gateway",{"micros":1}]'],
            }
            if "shard" in data:
                ready["shard"] = data["shard"]
            await self._send_event(session, "READY", ready)
            for guild_id in guilds:
                await self._send_event(session, "GUILD_CREATE", self._guild_payload(guild_id))
            self.readies += 1

    async def _resume(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        self.resume_payloads.append(data)
        if data.get("token") != BOT_TOKEN:
            await self._close(ws, 4004, "Authentication failed.")
            return
        async with self._send_lock:
            found = [s for s in self._sessions.values() if s.id == data.get("session_id")]
            if not found:
                await ws.send_str(json.dumps({"op": 9, "d": False, "s": None, "t": None}))
                return
            session = found[0]
            after = data.get("seq") or 0
            for seq, frame in session.log:
                if seq > after:
                    await ws.send_str(frame)
            await ws.send_str(json.dumps({"op": 0, "t": "RESUMED", "s": None, "d": {"_trace": ["fake-gateway"]}}))
            session.live = ws
            self.resumes += 1

    async def _request_members(self, data: dict[str, Any]) -> None:
        guild_id = int(data.get("guild_id") or GUILD_ID)
        if guild_id not in self.guild_ids or not any(s.covers(guild_id) for s in self._sessions.values()):
            return
        wanted = {int(u) for u in data.get("user_ids") or []}
        query = str(data.get("query") or "").lower()
        users = [u for u in _USERS.values() if (not wanted or u.id in wanted) and u.name.startswith(query)]
        limit = int(data.get("limit") or 0)
        if limit:
            users = users[:limit]
        role = self._bot_role(guild_id)
        chunk: dict[str, Any] = {
            "guild_id": str(guild_id),
            "members": [_member_payload(u, roles=[role] if u is BOT_USER else []) for u in users],
            "chunk_index": 0,
            "chunk_count": 1,
        }
        if data.get("nonce"):
            chunk["nonce"] = data["nonce"]
        await self._dispatch("GUILD_MEMBERS_CHUNK", chunk)

    # --- what users do: dispatch builders -----------------------------------------------------------

    async def send_message(
        self,
        content: str,
        *,
        author: User = ALICE,
        channel_id: int = CHANNEL_ID,
        mention_bot: bool = True,
        attachments: Iterable[Attachment] = (),
        message_id: int | None = None,
        reply_to: dict[str, Any] | None = None,
        mentions: Iterable[User] = (),
    ) -> dict[str, Any]:
        """Dispatch MESSAGE_CREATE for a message ``author`` writes; return its payload.

        With ``mention_bot`` the content starts with ``<@BOT_USER_ID> `` and ``mentions`` holds the bot.
        ``reply_to`` (a message dict, e.g. one of the bot's) makes it a reply to that message. ``mentions``:
        other people it mentions (write ``<@id>`` into ``content`` too).
        """
        message = self.add_message(
            content,
            author=author,
            channel_id=channel_id,
            mention_bot=mention_bot,
            attachments=attachments,
            message_id=message_id,
            reply_to=reply_to,
            mentions=mentions,
        )
        await self.dispatch("MESSAGE_CREATE", self._as_intents_allow(message))
        return message

    def _as_intents_allow(self, message: dict[str, Any]) -> dict[str, Any]:
        """What Discord sends a client without the Message Content intent: a guild message that does not
        mention it, and is not its own, comes without its content, attachments and embeds."""
        intents = int((self.identify_payloads[-1] if self.identify_payloads else {}).get("intents") or 0)
        if intents & MESSAGE_CONTENT_INTENT or "guild_id" not in message:
            return message
        if message["author"]["id"] == str(BOT_USER_ID) or any(m["id"] == str(BOT_USER_ID) for m in message["mentions"]):
            return message
        return message | {"content": "", "attachments": [], "embeds": []}

    async def start_thread(self, message: dict[str, Any], name: str = "a thread", *, owner: User = ALICE) -> int:
        """Someone starts a public thread from ``message`` (one of the bot's answers, or a person's): the thread
        takes the message's id, and THREAD_CREATE is dispatched. Returns the thread's id."""
        thread_id, parent_id = int(message["id"]), int(message["channel_id"])
        thread = self._thread_payload(thread_id, parent_id, name, owner.id)
        self.channels[thread_id] = thread
        message["thread"] = thread
        await self.dispatch("THREAD_CREATE", thread | {"newly_created": True})
        return thread_id

    def add_message(
        self,
        content: str,
        *,
        author: User = ALICE,
        channel_id: int = CHANNEL_ID,
        mention_bot: bool = True,
        attachments: Iterable[Attachment] = (),
        message_id: int | None = None,
        reply_to: dict[str, Any] | None = None,
        mentions: Iterable[User] = (),
    ) -> dict[str, Any]:
        """A message ``author`` wrote, as :meth:`send_message` builds it, kept without dispatching it: the REST
        API knows it (GET, replies to it), the gateway never sends it (it was written while no bot listened)."""
        self._channel(channel_id)
        guild_id = self._guild_of_channel(channel_id)
        guild = guild_id is not None
        if mention_bot:
            content = f"<@{BOT_USER_ID}> {content}"
        mid = self._snowflake() if message_id is None else message_id
        mentioned: list[dict[str, Any]] = []
        if mention_bot:
            mention = BOT_USER.payload()
            if guild_id is not None:
                mention["member"] = _member_payload(BOT_USER, with_user=False, roles=[self._bot_role(guild_id)])
            mentioned.append(mention)
        for user in mentions:
            mention = user.payload()
            if guild:
                mention["member"] = _member_payload(user, with_user=False)
            mentioned.append(mention)
        message: dict[str, Any] = {
            "id": str(mid),
            "channel_id": str(channel_id),
            "type": 0,
            "author": author.payload(),
            "content": content,
            "timestamp": _iso(mid),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": mentioned,
            "mention_roles": [],
            "attachments": [a.payload() for a in attachments],
            "embeds": [],
            "components": [],
            "pinned": False,
            "flags": 0,
            "nonce": str(mid),
        }
        if guild:
            message["guild_id"] = str(guild_id)
            message["member"] = _member_payload(author, with_user=False)
        if reply_to is not None:
            message["type"] = 19
            message["message_reference"] = {
                "type": 0,
                "channel_id": reply_to["channel_id"],
                "message_id": reply_to["id"],
                **({"guild_id": str(guild_id)} if guild else {}),
            }
            message["referenced_message"] = copy.deepcopy(reply_to)
        self._by_id[mid] = message
        self.channels[channel_id]["last_message_id"] = str(mid)
        return message

    def _new_interaction(
        self,
        interaction_type: int,
        data: dict[str, Any],
        *,
        user: User,
        channel_id: int,
        permissions: int,
        command: str | None = None,
        roles: Iterable[int] = (),
    ) -> tuple[_InteractionState, dict[str, Any]]:
        channel = self._channel(channel_id)
        iid = self._snowflake()
        token = "fake-interaction-" + secrets.token_urlsafe(24)
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(APPLICATION_ID),
            "type": interaction_type,
            "data": data,
            "token": token,
            "version": 1,
            "channel_id": str(channel_id),
            "channel": copy.deepcopy(channel),
            "app_permissions": str(ALL_PERMS),
            "locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
        }
        guild_id = self._guild_of_channel(channel_id)
        if guild_id is not None:
            payload |= {
                "guild_id": str(guild_id),
                "guild": {"id": str(guild_id), "locale": "en-US", "features": []},
                "guild_locale": "en-US",
                "member": _member_payload(user, roles=roles) | {"permissions": str(permissions)},
                "authorizing_integration_owners": {"0": str(guild_id)},
                "context": 0,
            }
        else:
            payload |= {"user": user.payload(), "authorizing_integration_owners": {"0": "0"}, "context": 1}
        state = _InteractionState(iid, token, interaction_type, channel_id, user, time.monotonic(), command=command)
        self._interactions[iid] = state
        self._by_token[token] = state
        return state, payload

    def _command_data(self, name: str, options: list[dict[str, Any]], channel_id: int) -> dict[str, Any]:
        data: dict[str, Any] = {"name": name, "type": 1}
        guild_id = self._guild_of_channel(channel_id)
        if guild_id is not None and (guild_id, name) in self._command_ids:
            data["id"] = str(self._command_ids[(guild_id, name)])
            data["guild_id"] = str(guild_id)  # discord.py looks guild commands up by it
        elif ("global", name) in self._command_ids:
            data["id"] = str(self._command_ids[("global", name)])
        elif any((other, name) in self._command_ids for other in self.guild_ids):
            raise ValueError(f"/{name} is synced to a guild only: Discord does not offer it in channel {channel_id}")
        else:
            data["id"] = str(self._snowflake())
        if options:
            data["options"] = options
        return data

    async def slash_command(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        user: User = ALICE,
        channel_id: int = CHANNEL_ID,
        permissions: int = ALL_PERMS,
        roles: Iterable[int] = (),
    ) -> Interaction:
        """Dispatch INTERACTION_CREATE for ``/name`` (type 2); option types follow the Python values.

        A command synced to the guild carries ``data.guild_id`` as Discord sends it (discord.py's
        CommandTree looks guild commands up by it). ``permissions`` are the member's in the channel,
        ``roles`` the ids of the member's roles.
        """
        options_payload: list[dict[str, Any]] = []
        resolved: dict[str, Any] = {}
        for option, value in (options or {}).items():
            kind = _option_type(value)
            if isinstance(value, User):
                resolved.setdefault("users", {})[str(value.id)] = value.payload()
                value = str(value.id)
            options_payload.append({"name": option, "type": kind, "value": value})
        data = self._command_data(name, options_payload, channel_id)
        if resolved:
            data["resolved"] = resolved
        state, payload = self._new_interaction(
            2, data, user=user, channel_id=channel_id, permissions=permissions, command=name, roles=roles
        )
        await self.dispatch("INTERACTION_CREATE", payload)
        return Interaction(state.id, state.token, payload)

    async def autocomplete(
        self,
        name: str,
        option: str,
        value: str,
        *,
        user: User = ALICE,
        channel_id: int = CHANNEL_ID,
        other_options: dict[str, Any] | None = None,
    ) -> Interaction:
        """Dispatch an autocomplete interaction (type 4) for ``option`` of ``/name`` being typed as ``value``."""
        options_payload = [
            {"name": key, "type": _option_type(other), "value": other} for key, other in (other_options or {}).items()
        ]
        options_payload.append({"name": option, "type": 3, "value": value, "focused": True})
        data = self._command_data(name, options_payload, channel_id)
        state, payload = self._new_interaction(
            4, data, user=user, channel_id=channel_id, permissions=ALL_PERMS, command=name
        )
        await self.dispatch("INTERACTION_CREATE", payload)
        return Interaction(state.id, state.token, payload)

    async def press_button(
        self,
        message: dict[str, Any],
        custom_id: str,
        *,
        user: User = ALICE,
        permissions: int = ALL_PERMS,
        component_type: int = 2,
        values: list[str] | None = None,
    ) -> Interaction:
        """Dispatch a component interaction (type 3) on one of the bot's messages (as stored here).

        ``component_type`` 2 is a button; 3 a string select, with the chosen ``values``.
        """
        message_id = int(message["id"])
        current = self._by_id.get(message_id, message)
        channel_id = int(current["channel_id"])
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = values
        state, payload = self._new_interaction(3, data, user=user, channel_id=channel_id, permissions=permissions)
        payload["message"] = copy.deepcopy(current)
        state.component_message_id = message_id
        state.messages[message_id] = current
        await self.dispatch("INTERACTION_CREATE", payload)
        return Interaction(state.id, state.token, payload)

    # --- REST plumbing ----------------------------------------------------------------------------

    def _build_routes(self) -> list[_Route]:
        c, m = r"/channels/(\d+)", r"/messages/(\d+)"
        spec: list[tuple[str, str, _Handler, str | None, bool]] = [
            ("GET", r"/users/@me", self._get_me, None, True),
            ("GET", r"/users/(\d+)", self._get_user, None, True),
            ("POST", r"/users/@me/channels", self._create_dm, None, True),
            ("GET", r"/oauth2/applications/@me", self._get_application, None, True),
            ("GET", r"/applications/@me", self._get_application, None, True),
            ("GET", r"/gateway", self._get_gateway, None, False),
            ("GET", r"/gateway/bot", self._get_gateway_bot, None, True),
            ("GET", r"/applications/(\d+)/commands", self._get_commands, None, True),
            ("PUT", r"/applications/(\d+)/commands", self._put_commands, None, True),
            ("POST", r"/applications/(\d+)/commands", self._post_command, None, True),
            ("GET", r"/applications/(\d+)/guilds/(\d+)/commands", self._get_commands, None, True),
            ("PUT", r"/applications/(\d+)/guilds/(\d+)/commands", self._put_commands, None, True),
            ("POST", r"/applications/(\d+)/guilds/(\d+)/commands", self._post_command, None, True),
            ("GET", r"/guilds/(\d+)", self._get_guild, None, True),
            ("GET", r"/guilds/(\d+)/members/(\d+)", self._get_member, None, True),
            ("GET", c, self._get_channel, None, True),
            ("POST", c + r"/messages", self._create_message, "create-message", True),
            ("GET", c + r"/messages", self._get_history, None, True),
            ("GET", c + m, self._get_message, None, True),
            ("PATCH", c + m, self._edit_message, "edit-message", True),
            ("DELETE", c + m, self._delete_message, "delete-message", True),
            ("PUT", c + m + r"/reactions/([^/]+)/(@me|\d+)", self._react, None, True),
            ("DELETE", c + m + r"/reactions/([^/]+)/(@me|\d+)", self._react, None, True),
            ("POST", c + r"/typing", self._typing, None, True),
            ("POST", c + m + r"/threads", self._thread_from_message, None, True),
            ("POST", c + r"/threads", self._thread_without_message, None, True),
            ("PUT", c + r"/thread-members/@me", self._join_thread, None, True),
            ("POST", r"/interactions/(\d+)/([^/]+)/callback", self._interaction_callback, None, False),
            ("POST", r"/webhooks/(\d+)/([^/]+)", self._execute_webhook, None, False),
            ("GET", r"/webhooks/(\d+)/([^/]+)/messages/(@original|\d+)", self._webhook_get, None, False),
            ("PATCH", r"/webhooks/(\d+)/([^/]+)/messages/(@original|\d+)", self._webhook_edit, None, False),
            ("DELETE", r"/webhooks/(\d+)/([^/]+)/messages/(@original|\d+)", self._webhook_delete, None, False),
        ]
        return [_Route(method, re.compile(path), handler, bucket, auth) for method, path, handler, bucket, auth in spec]

    async def _api(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        path = request.path.removeprefix(_API_PREFIX) or "/"
        query = dict(request.query)
        body: Any = None
        files: list[tuple[str, str, bytes]] = []
        try:
            body, files = await self._read_body(request)
            reply = await self._answer(request, path, body, files, query)
        except _DiscordError as e:
            reply = _Reply(e.status, e.body)
        except Exception:
            self.errors.append(f"{request.method} {path}: {traceback.format_exc()}")
            # not a 5xx: discord.py would retry those for seconds and hide the crash
            reply = _Reply(418, {"code": 0, "message": "FakeDiscord crashed; see fake.errors"})
        self.calls.append(
            Call(request.method, path, body, arrived, reply.status, query, tuple((f[1], f[2]) for f in files))
        )
        await self._notify()
        if reply.status == 204:
            return web.Response(status=204, headers={"Via": "1.1 google", **reply.headers})
        return _json_response(reply.body, reply.status, reply.headers)

    @staticmethod
    async def _read_body(request: web.Request) -> tuple[Any, list[tuple[str, str, bytes]]]:
        if not request.can_read_body:
            return None, []
        if request.content_type == "application/json":
            try:
                return await request.json(), []
            except ValueError:
                raise _DiscordError(400, 50109, "The request body contains invalid JSON.") from None
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            body: Any = None
            files: list[tuple[str, str, bytes]] = []
            for name, value in form.items():
                if isinstance(value, FileField):
                    files.append((name, value.filename, value.file.read()))
                elif name == "payload_json":
                    body = json.loads(str(value))
            return body, files
        raw = await request.read()
        return (raw.decode(errors="replace") or None), []

    async def _answer(
        self,
        request: web.Request,
        path: str,
        body: Any,
        files: list[tuple[str, str, bytes]],
        query: dict[str, str],
    ) -> _Reply:
        failure = self._take_failure(request.method, path, body)
        if failure is not None:
            return self._failure_reply(failure)
        matched = [(route, route.pattern.fullmatch(path)) for route in self._routes]
        candidates = [(route, match) for route, match in matched if match is not None]
        if not candidates:
            return _Reply(404, {"code": 0, "message": "404: Not Found"})
        for route, match in candidates:
            if route.method != request.method:
                continue
            assert match is not None
            if route.auth and request.headers.get("Authorization") != f"Bot {BOT_TOKEN}":
                return _Reply(401, {"code": 0, "message": "401: Unauthorized"})
            headers: dict[str, str] = {}
            if route.bucket is not None:
                limited, headers = self._rate_limit(route.bucket, int(match.group(1)))
                if limited is not None:
                    return limited
            reply = await route.handler(_Request(request.method, path, match, body, files, query))
            return reply._replace(headers={**headers, **reply.headers})
        return _Reply(405, {"code": 0, "message": "405: Method Not Allowed"})

    # --- REST: users, application, gateway, guild ---------------------------------------------------

    async def _get_me(self, request: _Request) -> _Reply:
        return _Reply(200, BOT_USER.payload() | {"verified": True, "mfa_enabled": False, "flags": 0, "email": None})

    async def _get_user(self, request: _Request) -> _Reply:
        return _Reply(200, self._user(request.id(1)).payload())

    async def _create_dm(self, request: _Request) -> _Reply:
        recipient = request.json_object().get("recipient_id")
        if recipient is None:
            raise _form_error("recipient_id", "BASE_TYPE_REQUIRED", "This field is required")
        user = self._user(int(recipient))
        channel_id = self._dm_by_user.get(user.id)
        if channel_id is None:
            channel_id = self._dm_by_user[user.id] = DM_CHANNEL_ID + len(self._dm_by_user)
            self.channels[channel_id] = self._dm_payload(channel_id, user)
        return _Reply(200, self.channels[channel_id])

    async def _get_application(self, request: _Request) -> _Reply:
        owner = User(OWNER_ID, "owner")
        return _Reply(
            200,
            {
                "id": str(APPLICATION_ID),
                "name": BOT_USER.name,
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "rpc_origins": [],
                "bot_public": False,
                "bot_require_code_grant": False,
                "bot": BOT_USER.payload(),
                "owner": owner.payload(),
                "team": None,
                "verify_key": "0" * 64,
                "flags": (1 << 19),  # GATEWAY_MESSAGE_CONTENT_LIMITED: the intent is enabled
                "tags": [],
                "redirect_uris": [],
                "interactions_endpoint_url": None,
                "approximate_guild_count": len(self.guild_ids),
                "integration_types_config": {"0": {}},
            },
        )

    async def _get_gateway(self, request: _Request) -> _Reply:
        return _Reply(200, {"url": self.gateway_url})

    async def _get_gateway_bot(self, request: _Request) -> _Reply:
        limit = {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}
        return _Reply(200, {"url": self.gateway_url, "shards": self.shards, "session_start_limit": limit})

    async def _get_guild(self, request: _Request) -> _Reply:
        guild = self._guild_payload(self._known_guild(request.id(1)))
        for key in ("channels", "threads", "members", "presences", "voice_states", "joined_at", "large", "lazy"):
            guild.pop(key, None)
        return _Reply(200, guild)

    async def _get_member(self, request: _Request) -> _Reply:
        guild_id = self._known_guild(request.id(1))
        user = _USERS.get(request.id(2))
        if user is None:
            raise _unknown("Member", 10007)
        return _Reply(200, _member_payload(user, roles=[self._bot_role(guild_id)] if user is BOT_USER else []))

    # --- REST: application commands -------------------------------------------------------------------

    def _command_scope(self, request: _Request) -> str | int:
        if request.id(1) != APPLICATION_ID:
            raise _unknown("Application", 10002)
        if request.match.re.groups >= 2:
            return self._known_guild(request.id(2))
        return "global"

    def _command(self, scope: str | int, raw: Any, index: int) -> dict[str, Any]:
        prefix = f"{index}." if index >= 0 else ""
        if not isinstance(raw, dict):
            raise _form_error(f"{prefix}name", "BASE_TYPE_REQUIRED", "This field is required")
        name = raw.get("name")
        kind = int(raw.get("type") or 1)
        if not isinstance(name, str) or (kind == 1 and not _COMMAND_NAME.fullmatch(name)) or name != name.lower():
            raise _form_error(f"{prefix}name", "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        description = raw.get("description") or ""
        if kind == 1 and not 1 <= len(description) <= 100:
            raise _form_error(f"{prefix}description", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        command_id = self._command_ids.setdefault((scope, name), self._snowflake())
        command = {
            "id": str(command_id),
            "application_id": str(APPLICATION_ID),
            "version": str(self._snowflake()),
            "type": kind,
            "name": name,
            "description": description,
            "options": raw.get("options") or [],
            "default_member_permissions": raw.get("default_member_permissions"),
            "dm_permission": raw.get("dm_permission", True),
            "contexts": raw.get("contexts"),
            "integration_types": raw.get("integration_types") or [0],
            "nsfw": bool(raw.get("nsfw", False)),
            "name_localizations": raw.get("name_localizations"),
            "description_localizations": raw.get("description_localizations"),
        }
        if scope != "global":
            command["guild_id"] = str(scope)
        return command

    async def _get_commands(self, request: _Request) -> _Reply:
        return _Reply(200, self.synced_commands.get(self._command_scope(request), []))

    async def _put_commands(self, request: _Request) -> _Reply:
        scope = self._command_scope(request)
        if not isinstance(request.body, list):
            raise _DiscordError(400, 50035, "Invalid Form Body")
        if len(request.body) > 100:
            raise _DiscordError(400, 30032, "Maximum number of application commands reached (100)")
        commands = [self._command(scope, raw, i) for i, raw in enumerate(request.body)]
        names = [(c["type"], c["name"]) for c in commands]
        if len(set(names)) != len(names):
            raise _form_error(
                "0.name", "APPLICATION_COMMANDS_DUPLICATE_NAME", "Application command names must be unique"
            )
        for key in [k for k in self._command_ids if k[0] == scope and k[1] not in {n for _, n in names}]:
            del self._command_ids[key]
        self.synced_commands[scope] = commands
        self.command_puts.append(scope)
        return _Reply(200, commands)

    async def _post_command(self, request: _Request) -> _Reply:
        scope = self._command_scope(request)
        command = self._command(scope, request.body, -1)
        existing = [c for c in self.synced_commands.get(scope, []) if c["name"] != command["name"]]
        self.synced_commands[scope] = [*existing, command]
        return _Reply(201, command)

    # --- REST: channels and messages -----------------------------------------------------------------

    async def _get_channel(self, request: _Request) -> _Reply:
        return _Reply(200, self._channel(request.id(1)))

    def _host_uploads(self, files: list[tuple[str, str, bytes]], descriptors: Any) -> tuple[set[str], list[Attachment]]:
        """Host uploaded ``files[n]``; return (ids of existing attachments to keep, the new Attachments).

        ``descriptors`` is the body's ``attachments``: ``{"id": n, "filename": ...}`` for ``files[n]``,
        ``{"id": <attachment id>, ...}`` for an attachment the message keeps.
        """
        by_index: dict[str, dict[str, Any]] = {}
        kept: set[str] = set()
        for descriptor in descriptors if isinstance(descriptors, list) else []:
            if not isinstance(descriptor, dict):
                continue
            attachment_id = str(descriptor.get("id"))
            if attachment_id.isdigit() and int(attachment_id) in self._hosted:
                kept.add(attachment_id)
            else:
                by_index[attachment_id] = descriptor
        if sum(len(data) for _, _, data in files) > ATTACHMENT_SIZE_LIMIT:
            raise _DiscordError(413, 40005, "Request entity too large")
        new: list[Attachment] = []
        for field_name, filename, data in files:
            descriptor = by_index.get(field_name.removeprefix("files[").removesuffix("]"), {})
            name = str(descriptor.get("filename") or filename)
            hosted = self.attachment(name, data, content_type=_guess_type(name))
            if descriptor.get("description"):
                hosted = dataclasses.replace(hosted, description=str(descriptor["description"]))
            self.uploads.append((name, data))
            new.append(hosted)
        return kept, new

    def _check_content(self, body: dict[str, Any], *, has_files: bool, creating: bool) -> None:
        content = body.get("content")
        if content is not None and not isinstance(content, str):
            raise _form_error("content", "STRING_TYPE_CONVERT", "Could not interpret value as string.")
        if isinstance(content, str) and len(content) > _MAX_CONTENT:
            raise _form_error("content", "BASE_TYPE_MAX_LENGTH", f"Must be {_MAX_CONTENT} or fewer in length.")
        embeds = body.get("embeds") or []
        if len(embeds) > 10:
            raise _form_error("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        total = 0
        for i, embed in enumerate(embeds):
            for key, limit in (("title", 256), ("description", 4096)):
                text = str(embed.get(key) or "")
                total += len(text)
                if len(text) > limit:
                    raise _form_error(
                        f"embeds.{i}.{key}", "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length."
                    )
        if total > 6000:
            raise _form_error("embeds", "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
        components = body.get("components") or []
        if not int(body.get("flags") or 0) & _COMPONENTS_V2:
            if len(components) > 5:
                raise _form_error("components", "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
            for i, row in enumerate(components):
                if row.get("type") != 1:
                    raise _form_error(f"components.{i}.type", "UNION_TYPE_CHOICES", "Value must be an action row")
                children = row.get("components") or []
                if not 1 <= len(children) <= 5:
                    raise _form_error(
                        f"components.{i}.components", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length."
                    )
                for j, child in enumerate(children):
                    where = f"components.{i}.components.{j}"
                    if len(str(child.get("custom_id") or "")) > 100:
                        raise _form_error(
                            f"{where}.custom_id", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length."
                        )
                    if len(str(child.get("label") or "")) > 80:
                        raise _form_error(f"{where}.label", "BASE_TYPE_MAX_LENGTH", "Must be 80 or fewer in length.")
                    if child.get("type") == 2 and child.get("style") != 5 and not child.get("custom_id"):
                        raise _form_error(f"{where}.custom_id", "BASE_TYPE_REQUIRED", "This field is required")
        if creating and not (
            content or embeds or components or has_files or body.get("sticker_ids") or body.get("poll")
        ):
            raise _DiscordError(400, 50006, "Cannot send an empty message")

    def _mentions(self, content: str, body: dict[str, Any], referenced: dict[str, Any] | None) -> list[dict[str, Any]]:
        allowed = body.get("allowed_mentions")
        ids: list[int] = []
        for raw in _MENTION.findall(content):
            user_id = int(raw)
            if user_id not in _USERS or user_id in ids:
                continue
            listed = [str(u) for u in allowed.get("users", [])] if isinstance(allowed, dict) else []
            if isinstance(allowed, dict) and "users" not in allowed.get("parse", []) and str(user_id) not in listed:
                continue
            ids.append(user_id)
        if referenced is not None:
            replied = not isinstance(allowed, dict) or allowed.get("replied_user", False)
            author = int(referenced["author"]["id"])
            if replied and author in _USERS and author not in ids:
                ids.append(author)
        return [_USERS[i].payload() for i in ids]

    def _bot_message(
        self,
        channel_id: int,
        body: dict[str, Any],
        files: list[tuple[str, str, bytes]],
        *,
        interaction: _InteractionState | None = None,
        message_type: int = 0,
    ) -> dict[str, Any]:
        """Build (without storing) the message the bot's request creates; raises Discord's errors."""
        self._check_content(body, has_files=bool(files), creating=True)
        _, new = self._host_uploads(files, body.get("attachments"))
        referenced: dict[str, Any] | None = None
        reference = body.get("message_reference")
        if isinstance(reference, dict) and reference.get("message_id") is not None:
            referenced = self._by_id.get(int(reference["message_id"]))
            ref_channel = int(reference.get("channel_id") or channel_id)
            if referenced is None or int(referenced["channel_id"]) != ref_channel:
                if reference.get("fail_if_not_exists", True):
                    raise _form_error("message_reference", "REPLIES_UNKNOWN_MESSAGE", "Unknown message")
                referenced, reference = None, None
        mid = self._snowflake()
        content = str(body.get("content") or "")
        message: dict[str, Any] = {
            "id": str(mid),
            "channel_id": str(channel_id),
            "type": message_type,
            "author": BOT_USER.payload(),
            "content": content,
            "timestamp": _iso(mid),
            "edited_timestamp": None,
            "tts": bool(body.get("tts", False)),
            "mention_everyone": False,
            "mentions": self._mentions(content, body, referenced),
            "mention_roles": [],
            "attachments": [a.payload() for a in new],
            "embeds": body.get("embeds") or [],
            "components": body.get("components") or [],
            "pinned": False,
            "flags": int(body.get("flags") or 0) & (EPHEMERAL | (1 << 2) | (1 << 12) | _COMPONENTS_V2),
        }
        if body.get("nonce") is not None:
            message["nonce"] = body["nonce"]
        if referenced is not None and isinstance(reference, dict):
            message["type"] = 19
            message["message_reference"] = {
                "type": 0,
                "channel_id": referenced["channel_id"],
                "message_id": referenced["id"],
                **({"guild_id": str(guild_id)} if (guild_id := self._guild_of_channel(channel_id)) else {}),
            }
            message["referenced_message"] = copy.deepcopy(referenced)
        if interaction is not None:
            message["webhook_id"] = str(APPLICATION_ID)
            message["application_id"] = str(APPLICATION_ID)
            message["interaction_metadata"] = {
                "id": str(interaction.id),
                "type": interaction.type,
                "user": interaction.user.payload(),
                "authorizing_integration_owners": {"0": str(GUILD_ID)},
            }
            if interaction.command is not None:
                message["interaction_metadata"]["name"] = interaction.command
        return message

    def _store(self, message: dict[str, Any]) -> None:
        """Keep a new message of the bot's: in its channel unless ephemeral, and in the id index."""
        mid, channel_id = int(message["id"]), int(message["channel_id"])
        self._by_id[mid] = message
        self.history[mid] = [message["content"]]
        if not message["flags"] & EPHEMERAL:
            self.messages.setdefault(channel_id, []).append(message)
            self.channels[channel_id]["last_message_id"] = message["id"]

    def _apply_edit(self, message: dict[str, Any], body: dict[str, Any], files: list[tuple[str, str, bytes]]) -> None:
        self._check_content(body, has_files=bool(files), creating=False)
        if "attachments" in body or files:
            kept_ids, new = self._host_uploads(files, body.get("attachments") or [])
            kept = [a for a in message["attachments"] if "attachments" not in body or a["id"] in kept_ids]
            message["attachments"] = kept + [a.payload() for a in new]
        if "content" in body:
            message["content"] = str(body["content"] or "")
            message["mentions"] = self._mentions(message["content"], body, message.get("referenced_message"))
            self.history.setdefault(int(message["id"]), []).append(message["content"])
        for key in ("embeds", "components"):
            if key in body:
                message[key] = body[key] or []
        if "flags" in body and body["flags"] is not None:
            keep = message["flags"] & EPHEMERAL
            message["flags"] = keep | (int(body["flags"]) & ((1 << 2) | _COMPONENTS_V2))
        message["flags"] &= ~_LOADING
        message["edited_timestamp"] = datetime.datetime.now(datetime.UTC).isoformat()

    def _bot_message_in(self, channel_id: int, message_id: int) -> dict[str, Any]:
        self._channel(channel_id)
        message = self._by_id.get(message_id)
        if message is None or int(message["channel_id"]) != channel_id or message["flags"] & EPHEMERAL:
            raise _unknown("Message", 10008)
        if int(message["author"]["id"]) != BOT_USER_ID:
            raise _DiscordError(403, 50005, "Cannot edit a message authored by another user")
        return message

    async def _create_message(self, request: _Request) -> _Reply:
        channel_id = request.id(1)
        self._channel(channel_id)
        message = self._bot_message(channel_id, request.json_object(), request.files)
        self._store(message)
        return _Reply(200, message)

    async def _get_history(self, request: _Request) -> _Reply:
        self._channel(request.id(1))
        return _Reply(200, [])

    async def _get_message(self, request: _Request) -> _Reply:
        channel_id, message_id = request.id(1), request.id(2)
        self._channel(channel_id)
        message = self._by_id.get(message_id)
        if message is None or int(message["channel_id"]) != channel_id or message["flags"] & EPHEMERAL:
            raise _unknown("Message", 10008)
        return _Reply(200, message)

    async def _edit_message(self, request: _Request) -> _Reply:
        message = self._bot_message_in(request.id(1), request.id(2))
        self._apply_edit(message, request.json_object(), request.files)
        return _Reply(200, message)

    async def _delete_message(self, request: _Request) -> _Reply:
        channel_id, message_id = request.id(1), request.id(2)
        self._channel(channel_id)
        message = self._by_id.get(message_id)
        if message is None or int(message["channel_id"]) != channel_id:
            raise _unknown("Message", 10008)
        self._forget(message)
        return _Reply(204)

    def _forget(self, message: dict[str, Any]) -> None:
        mid, channel_id = int(message["id"]), int(message["channel_id"])
        self._by_id.pop(mid, None)
        if message in self.messages.get(channel_id, []):
            self.messages[channel_id].remove(message)
        self.deleted.append((channel_id, mid))

    async def _react(self, request: _Request) -> _Reply:
        channel_id, message_id, emoji, who = request.id(1), request.id(2), request.group(3), request.group(4)
        self._channel(channel_id)
        message = self._by_id.get(message_id)
        if message is None or int(message["channel_id"]) != channel_id:
            raise _unknown("Message", 10008)
        if not emoji or emoji.count(":") > 1:
            raise _unknown("Emoji", 10014)
        if request.method == "PUT" and who != "@me":
            return _Reply(405, {"code": 0, "message": "405: Method Not Allowed"})
        if who == "@me":
            self.reactions.append((channel_id, message_id, emoji, request.method == "PUT"))
        return _Reply(204)

    async def _typing(self, request: _Request) -> _Reply:
        channel_id = request.id(1)
        self._channel(channel_id)
        self.typing.append(channel_id)
        return _Reply(204)

    async def _new_thread(self, parent_id: int, thread_id: int, body: dict[str, Any], thread_type: int) -> _Reply:
        parent = self._channel(parent_id)
        if parent["type"] not in (0, 5):
            raise _DiscordError(400, 50024, "Cannot execute action on this channel type")
        name = body.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            raise _form_error("name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        thread = self._thread_payload(thread_id, parent_id, name, BOT_USER_ID)
        thread["type"] = thread_type
        thread["thread_metadata"]["auto_archive_duration"] = int(body.get("auto_archive_duration") or 1440)
        thread["member"] = {
            "id": str(thread_id),
            "user_id": str(BOT_USER_ID),
            "join_timestamp": _iso(thread_id),
            "flags": 0,
        }
        self.channels[thread_id] = thread
        self.threads_created.append(thread)
        await self._dispatch_if_connected("THREAD_CREATE", thread | {"newly_created": True})
        return _Reply(201, thread)

    async def _thread_from_message(self, request: _Request) -> _Reply:
        channel_id, message_id = request.id(1), request.id(2)
        self._channel(channel_id)
        message = self._by_id.get(message_id)
        if message is None or int(message["channel_id"]) != channel_id:
            raise _unknown("Message", 10008)
        if message_id in self.channels:
            raise _DiscordError(400, 160004, "A thread has already been created for this message")
        reply = await self._new_thread(channel_id, message_id, request.json_object(), 11)
        message["thread"] = reply.body
        return reply

    async def _thread_without_message(self, request: _Request) -> _Reply:
        body = request.json_object()
        return await self._new_thread(request.id(1), self._snowflake(), body, int(body.get("type") or 12))

    async def _join_thread(self, request: _Request) -> _Reply:
        thread = self._channel(request.id(1))
        if thread["type"] not in (10, 11, 12):
            raise _DiscordError(400, 50024, "Cannot execute action on this channel type")
        return _Reply(204)

    # --- REST: interactions and their webhook -------------------------------------------------------

    def _interaction(self, interaction_id: int, token: str) -> _InteractionState:
        state = self._interactions.get(interaction_id)
        if state is None or state.token != token:
            raise _unknown("interaction", 10062)
        return state

    def _webhook(self, request: _Request) -> _InteractionState:
        state = self._by_token.get(request.group(2))
        if request.id(1) != APPLICATION_ID or state is None:
            raise _unknown("Webhook", 10015)
        if state.response_type is None:  # nothing to follow up on yet
            raise _unknown("Webhook", 10015)
        return state

    async def _interaction_callback(self, request: _Request) -> _Reply:
        state = self._interaction(request.id(1), request.group(2))
        body = request.json_object()
        response_type = body.get("type")
        data = body.get("data") or {}
        if state.response_type is not None:
            raise _DiscordError(400, 40060, "Interaction has already been acknowledged.")
        deadline = self.interaction_deadline
        if deadline is not None and time.monotonic() - state.created > deadline:
            raise _unknown("interaction", 10062)
        allowed = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7}}.get(state.type, set())
        if response_type not in allowed:
            raise _form_error("type", "INTERACTION_RESPONSE_TYPE_INVALID", "Invalid interaction response type")
        message: dict[str, Any] | None = None
        if response_type == 4:
            message = self._bot_message(
                state.channel_id, data, request.files, interaction=state, message_type=20 if state.type == 2 else 0
            )
            self._store(message)
        elif response_type == 5:  # "thinking": Discord shows a loading message until it is filled
            message = self._loading_message(state, int(data.get("flags") or 0) & EPHEMERAL)
            self._store(message)
        elif response_type == 7:
            message = self._component_message(state)
            self._apply_edit(message, data, request.files)
        elif response_type == 8:
            choices = data.get("choices")
            if not isinstance(choices, list) or len(choices) > 25:
                raise _form_error("data.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        if response_type in (6, 7):
            state.original_id = int(self._component_message(state)["id"])
        elif message is not None:
            state.original_id = int(message["id"])
            state.messages[int(message["id"])] = message
        state.response_type = int(response_type)
        self.interaction_responses.setdefault(state.id, []).append(body)
        if request.query.get("with_response") not in ("1", "true", "True"):
            return _Reply(204)
        original = state.messages.get(state.original_id) if state.original_id is not None else None
        answer: dict[str, Any] = {
            "interaction": {"id": str(state.id), "type": state.type},
            "resource": {"type": response_type},
        }
        if original is not None and response_type in (4, 5, 7):
            answer["interaction"] |= {
                "response_message_id": original["id"],
                "response_message_loading": bool(original["flags"] & _LOADING),
                "response_message_ephemeral": bool(original["flags"] & EPHEMERAL),
            }
        if message is not None and response_type in (4, 7):
            answer["resource"]["message"] = message
        return _Reply(200, answer)

    def _loading_message(self, state: _InteractionState, flags: int) -> dict[str, Any]:
        mid = self._snowflake()
        return {
            "id": str(mid),
            "channel_id": str(state.channel_id),
            "type": 20 if state.type == 2 else 0,
            "author": BOT_USER.payload(),
            "content": "",
            "timestamp": _iso(mid),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "components": [],
            "pinned": False,
            "flags": flags | _LOADING,
            "webhook_id": str(APPLICATION_ID),
            "application_id": str(APPLICATION_ID),
            "interaction_metadata": {
                "id": str(state.id),
                "type": state.type,
                "user": state.user.payload(),
                "authorizing_integration_owners": {"0": str(GUILD_ID)},
            },
        }

    def _component_message(self, state: _InteractionState) -> dict[str, Any]:
        if state.component_message_id is None:
            raise _form_error("type", "INTERACTION_RESPONSE_TYPE_INVALID", "Invalid interaction response type")
        message = self._by_id.get(state.component_message_id) or state.messages.get(state.component_message_id)
        if message is None:
            raise _unknown("Message", 10008)
        return message

    def _webhook_message(self, state: _InteractionState, which: str) -> dict[str, Any]:
        message_id = state.original_id if which == "@original" else int(which)
        message = state.messages.get(message_id) if message_id is not None else None
        if message is None:
            raise _unknown("Message", 10008)
        return message

    async def _execute_webhook(self, request: _Request) -> _Reply:
        state = self._webhook(request)
        body = request.json_object()
        original = state.messages.get(state.original_id) if state.original_id is not None else None
        if original is not None and original["flags"] & _LOADING:
            # Discord: a follow-up right after a deferred "thinking" answer edits the loading message
            # (keeping the defer's ephemeral flag) instead of creating a new one.
            self._apply_edit(original, {k: v for k, v in body.items() if k != "flags"}, request.files)
            message = original
        else:
            message = self._bot_message(state.channel_id, body, request.files, interaction=state)
            self._store(message)
            state.messages[int(message["id"])] = message
        self.followups.setdefault(state.token, []).append(copy.deepcopy(message))
        if request.query.get("wait") not in ("1", "true", "True"):
            return _Reply(204)
        return _Reply(200, message)

    async def _webhook_get(self, request: _Request) -> _Reply:
        state = self._webhook(request)
        return _Reply(200, self._webhook_message(state, request.group(3)))

    async def _webhook_edit(self, request: _Request) -> _Reply:
        state = self._webhook(request)
        message = self._webhook_message(state, request.group(3))
        self._apply_edit(message, request.json_object(), request.files)
        self.followups.setdefault(state.token, []).append(copy.deepcopy(message))
        return _Reply(200, message)

    async def _webhook_delete(self, request: _Request) -> _Reply:
        state = self._webhook(request)
        message = self._webhook_message(state, request.group(3))
        state.messages.pop(int(message["id"]), None)
        self._forget(message)
        return _Reply(204)


def _guess_type(filename: str) -> str | None:
    return mimetypes.guess_type(filename)[0]


def point_discord_at(fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point discord.py's REST base and default gateway at ``fake`` for one test."""
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url))


def _role(
    role_id: int, name: str, permissions: int, position: int, *, managed: bool = False, **extra: Any
) -> dict[str, Any]:
    """A guild role as the API sends it in GUILD_CREATE."""
    return {
        "id": str(role_id),
        "name": name,
        "permissions": str(permissions),
        "position": position,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "managed": managed,
        "mentionable": False,
        "icon": None,
        "unicode_emoji": None,
        "flags": 0,
        **extra,
    }
