"""A stand-in for Slack on 127.0.0.1: the Web API, file downloads, response URLs and Socket Mode.

The real ``slack_sdk`` / ``slack_bolt`` clients talk to it unmodified. Point the
Web API client at ``fake.api_url`` (it keeps the trailing slash ``/api/``, which
slack_sdk needs)::

    async with FakeSlack() as slack:
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        app = AsyncApp(client=client, signing_secret=SECRET)
        ...
        await slack.wait_for("chat.postMessage")
        assert slack.calls_to("chat.postMessage")[0]["thread_ts"] == "1700000001.000100"

Every Web API call is recorded as a ``Call(method, params, token)``; waiting is
event-driven (``wait_for``, ``wait_until``), never a polling sleep. Answers have
Slack's shapes, including its errors (``invalid_auth``, ``message_not_found``,
``msg_too_long``, ``invalid_blocks``, ``already_reacted``...), and failures can be
injected per method (``fail_next`` for a 429 with ``Retry-After``, ``refuse``
for a permanent ``ok: false``, with an HTTP error status if wanted).

The module also builds what Slack sends *to* an app: signed HTTP headers and
Events API / slash command / interaction payloads, for HTTP mode or Socket Mode.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.web_request import FileField
from slack_sdk.signature import SignatureVerifier

from tests.fakes.loopback import serve_on_loopback

__all__ = [
    "APP_ID",
    "BOT_ID",
    "BOT_USER_ID",
    "TEAM_ID",
    "Call",
    "Download",
    "FakeSlack",
    "Posted",
    "ResponsePost",
    "Uploaded",
    "app_mention",
    "assistant_thread_context_changed",
    "assistant_thread_message",
    "assistant_thread_started",
    "block_action",
    "block_action_payload",
    "bot_message",
    "channel_message",
    "dm_message",
    "event_callback",
    "feedback_press",
    "feedback_press_payload",
    "file_share_message",
    "file_shared",
    "signed_headers",
    "slash_command",
    "slash_command_form",
    "url_verification",
]

TEAM_ID = "T01"
BOT_USER_ID = "U_BOT"
BOT_ID = "B_BOT"
APP_ID = "A01"
WORKSPACE_URL = "https://threadline-test.slack.com/"

_FIRST_TS_SECONDS = 1_700_000_000
_JSON_FIELDS = ("blocks", "attachments", "metadata", "chunks", "unfurls", "files")
_MAX_TEXT = 40_000  # chat.postMessage truncates beyond this; longer answers msg_too_long
_MAX_BLOCKS = 50
_TASK_STATUSES = ("pending", "in_progress", "complete", "error")


class Call(NamedTuple):
    """One Web API call as it arrived: form, JSON and query parameters merged; the token apart."""

    method: str
    params: dict[str, Any]
    token: str | None


class Download(NamedTuple):
    """One attempt to download a file's ``url_private``."""

    file_id: str
    name: str
    token: str | None
    authorized: bool


class Uploaded(NamedTuple):
    """A file the app shared with files.getUploadURLExternal, the upload URL, files.completeUploadExternal."""

    file_id: str
    name: str
    data: bytes
    channel: str
    thread_ts: str | None


class ResponsePost(NamedTuple):
    """One JSON body POSTed to a slash command's or an interaction's ``response_url``."""

    response_id: str
    body: dict[str, Any]


@dataclass
class Posted:
    """A message the bot posted (``chat.postMessage``) or streamed (``chat.startStream``), as it stands now."""

    channel: str
    ts: str
    text: str = ""
    thread_ts: str | None = None
    blocks: list[Any] | None = None
    streaming: bool = False  # True between chat.startStream and chat.stopStream
    updates: int = 0  # chat.update / chat.appendStream calls applied to it
    chunks: list[dict[str, Any]] = field(default_factory=list)  # streamed chunks other than text (task updates)
    stop_blocks: list[Any] | None = None  # the blocks chat.stopStream put at the bottom of a streamed message


@dataclass(frozen=True)
class _Failure:
    error: str
    status: int
    retry_after: int | None


class _SlackError(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def _require(params: dict[str, Any], name: str, error: str = "invalid_arguments") -> str:
    value = params.get(name)
    if value is None or value == "":
        raise _SlackError(error)
    return str(value)


@dataclass
class FakeSlack:
    """Slack's Web API, file hosting, response URLs and Socket Mode link on one local server.

    Use as an async context manager. Configure what Slack knows before or during the test:
    ``members[channel]`` (for ``conversations.members``), ``channels[channel]`` and ``users[user]``
    (merged over generated defaults for ``conversations.info`` / ``users.info``), and files through
    ``add_file``. ``max_text``: the longest text chat.postMessage and chat.update take (longer:
    ``msg_too_long``).

    Slack's AI surface: an assistant thread exists once ``say`` records its ``assistant_thread_started``
    event (``assistant_threads``). ``assistant.threads.setStatus`` works there; elsewhere it answers
    ``invalid_thread_ts``, unless ``status_in_any_thread`` (Slack's AI loading states in channels,
    2026). Its current status per thread is in ``statuses``, titles in ``titles``, suggested prompts in
    ``suggested``. ``refuse_chunks``: streamed chunk types refused with ``invalid_chunks`` (a workspace
    without task updates).
    """

    bot_token: str = "xoxb-threadline-test"
    app_token: str = "xapp-1-threadline-test"
    client_id: str = "1111.2222"  # the app's OAuth credentials (oauth.v2.access, HTTP basic auth)
    client_secret: str = "fake-client-secret"
    members: dict[str, list[str]] = field(default_factory=dict)
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Real Slack answers a file URL fetched without the bot token with a 200 HTML login page;
    # by default the fake answers 403, set this to get the login page instead.
    login_page_on_bad_token: bool = False
    max_text: int = _MAX_TEXT
    status_in_any_thread: bool = False
    refuse_chunks: set[str] = field(default_factory=set)

    calls: list[Call] = field(default_factory=list, init=False)
    messages: dict[str, Posted] = field(default_factory=dict, init=False)  # by ts
    reactions: set[tuple[str, str, str]] = field(default_factory=set, init=False)  # (channel, ts, name)
    downloads: list[Download] = field(default_factory=list, init=False)
    responses: list[ResponsePost] = field(default_factory=list, init=False)
    acks: list[dict[str, Any]] = field(default_factory=list, init=False)
    connections: int = field(default=0, init=False)  # Socket Mode connections ever opened
    uploads: list[Uploaded] = field(default_factory=list, init=False)  # files the app shared (upload v2)
    said: list[tuple[str, dict[str, Any]]] = field(default_factory=list, init=False)  # (channel, message): ``say``
    assistant_threads: set[tuple[str, str]] = field(default_factory=set, init=False)  # (channel, thread ts)
    statuses: dict[tuple[str, str], str] = field(default_factory=dict, init=False)  # (channel, thread ts): status
    titles: dict[tuple[str, str], str] = field(default_factory=dict, init=False)
    suggested: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict, init=False)  # prompts

    def __post_init__(self) -> None:
        self._file_data: dict[str, tuple[bytes, str]] = {}
        self._pending_uploads: dict[str, tuple[str, bytes]] = {}  # file id -> (name, bytes) until completed
        self._held: dict[str, asyncio.Event] = {}  # methods whose calls wait: hold(), release()
        self._downloads_open = asyncio.Event()  # cleared by hold_downloads: downloads wait for release_downloads
        self._downloads_open.set()
        self._failed: set[int] = set()  # indexes into calls that were answered ok=false
        self._fail_next: dict[str, deque[_Failure]] = {}
        self._refused: dict[tuple[str, str | None], tuple[str, int]] = {}  # (method, channel) -> (error, status)
        self._ts = itertools.count(1)
        # Bot tokens and the workspace each belongs to: the app's own, and those installs gave (``install``).
        self.tokens: dict[str, str] = {self.bot_token: TEAM_ID}
        self.bot_users: dict[str, str] = {TEAM_ID: BOT_USER_ID}  # each workspace's bot user
        self.revoked: set[str] = set()
        self._codes: dict[str, tuple[str, str]] = {}  # OAuth codes not yet exchanged -> (team id, team name)
        self._tickets = itertools.count(1)
        self._sockets: list[web.WebSocketResponse] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._base = ""
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.getPermalink": self._get_permalink,
            "chat.startStream": self._start_stream,
            "chat.appendStream": self._append_stream,
            "chat.stopStream": self._stop_stream,
            "reactions.add": self._reactions_add,
            "reactions.remove": self._reactions_remove,
            "assistant.threads.setStatus": self._set_status,
            "assistant.threads.setTitle": self._set_title,
            "assistant.threads.setSuggestedPrompts": self._set_suggested_prompts,
            "conversations.members": self._conversations_members,
            "conversations.info": self._conversations_info,
            "conversations.open": self._conversations_open,
            "conversations.replies": self._conversations_replies,
            "files.info": self._files_info,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
            "users.info": self._users_info,
            "apps.connections.open": self._connections_open,
            "oauth.v2.access": self._oauth_v2_access,
        }

    # --- lifecycle and addresses ---------------------------------------------------------------

    async def __aenter__(self) -> FakeSlack:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/files/{file_id}/{name}", self._download)
        app.router.add_post("/respond/{response_id}", self._respond)
        app.router.add_post("/upload/{file_id}", self._receive_upload)
        app.router.add_get("/link", self._link)
        self._runner, self._base = await serve_on_loopback(app)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        if not self._base:
            raise RuntimeError("FakeSlack is not running: use it as `async with FakeSlack() as slack:`")
        return self._base

    @property
    def api_url(self) -> str:
        """The Web API base URL for ``AsyncWebClient(base_url=...)``, with its trailing slash."""
        return f"{self.base_url}/api/"

    @property
    def socket_url(self) -> str:
        return "ws" + self.base_url.removeprefix("http") + "/link"

    def response_url(self, response_id: str) -> str:
        """A ``response_url`` for slash command and interaction payloads; POSTs land in ``responses``."""
        return f"{self.base_url}/respond/{response_id}"

    # --- what was called ------------------------------------------------------------------------

    def calls_to(self, method: str, *, include_failed: bool = True) -> list[dict[str, Any]]:
        """Parameters of each call to ``method``, oldest first.

        Failed attempts (an injected 429, a refusal, a Slack error) are included unless
        ``include_failed=False``: a 429 retried by slack_sdk shows up twice.
        """
        return [
            c.params
            for i, c in enumerate(self.calls)
            if c.method == method and (include_failed or i not in self._failed)
        ]

    def responses_to(self, response_id: str) -> list[dict[str, Any]]:
        return [r.body for r in self.responses if r.response_id == response_id]

    def thread(self, channel: str, thread_ts: str) -> list[Posted]:
        """The bot's messages in one thread, in posting order."""
        return [m for m in self.messages.values() if m.channel == channel and m.thread_ts == thread_ts]

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "a condition") -> None:
        """Wait until ``predicate()`` holds; it is re-checked whenever the fake records something."""
        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    await self._changed.wait_for(predicate)
        except TimeoutError:
            seen = ", ".join(c.method for c in self.calls) or "none"
            raise TimeoutError(f"FakeSlack: waited {timeout}s for {what}; Web API calls so far: {seen}") from None

    async def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until ``method`` has been called ``count`` times (failed attempts included); return their params."""
        await self.wait_until(lambda: len(self.calls_to(method)) >= count, timeout, f"{count} call(s) to {method}")
        return self.calls_to(method)

    async def wait_for_response(self, response_id: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until ``count`` bodies were POSTed to ``response_url(response_id)``; return them."""
        await self.wait_until(
            lambda: len(self.responses_to(response_id)) >= count,
            timeout,
            f"{count} POST(s) to response URL {response_id}",
        )
        return self.responses_to(response_id)

    async def wait_connected(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until ``count`` Socket Mode connections have been opened (and greeted with ``hello``)."""
        await self.wait_until(lambda: self.connections >= count, timeout, f"{count} Socket Mode connection(s)")

    async def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """Wait for the client's acknowledgement of an envelope; return it (it may carry a ``payload``)."""
        await self.wait_until(
            lambda: any(a.get("envelope_id") == envelope_id for a in self.acks), timeout, f"ack of {envelope_id}"
        )
        return next(a for a in self.acks if a.get("envelope_id") == envelope_id)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- failure injection --------------------------------------------------------------------

    def fail_next(
        self, method: str, error: str = "ratelimited", status: int = 429, retry_after: int | None = 1
    ) -> None:
        """Answer the next call to ``method`` with HTTP ``status`` and ``{"ok": false, "error": error}``.

        With status 429 a ``Retry-After`` header is sent (unless ``retry_after`` is None), which
        slack_sdk's ``AsyncRateLimitErrorRetryHandler`` waits for before retrying. Calls stack:
        two ``fail_next`` fail the next two calls.
        """
        self._fail_next.setdefault(method, deque()).append(_Failure(error, status, retry_after))

    def refuse(
        self,
        method: str,
        error: str = "method_not_supported_for_channel_type",
        *,
        status: int = 200,
        channel: str | None = None,
    ) -> None:
        """Answer every call to ``method`` (in ``channel`` only, if given) with HTTP ``status`` and
        ``{"ok": false, "error": error}``, until ``allow``. slack_sdk retries none of them by default."""
        self._refused[(method, channel)] = (error, status)

    def allow(self, method: str, channel: str | None = None) -> None:
        self._refused.pop((method, channel), None)

    # --- installs into many workspaces (OAuth) --------------------------------------------------------

    def authorize(self, team_id: str, team_name: str = "Another Team") -> str:
        """What Slack does when someone approves the app's install into ``team_id``: a one-time ``code`` the
        browser brings to the app's redirect URL; ``oauth.v2.access`` exchanges it for that workspace's token."""
        code = f"code-{team_id}-{next(self._tickets)}"
        self._codes[code] = (team_id, team_name)
        return code

    def revoke_team(self, team_id: str) -> None:
        """An uninstall: the workspace's tokens stop working (``token_revoked``), as Slack does before it sends
        ``app_uninstalled``."""
        self.revoked |= {token for token, team in self.tokens.items() if team == team_id}

    def team_of(self, token: str | None) -> str | None:
        return self.tokens.get(token or "")

    # --- people's messages ----------------------------------------------------------------------

    def say(self, event: dict[str, Any]) -> None:
        """Record a message a person wrote (a ``message`` or ``app_mention`` event, as the builders below
        make), so that ``conversations.replies`` returns it as Slack would. An ``assistant_thread_started``
        event makes its thread an assistant thread, as opening the pane does."""
        if event.get("type") == "assistant_thread_started":
            thread = event.get("assistant_thread") or {}
            channel, thread_ts = str(thread.get("channel_id") or ""), str(thread.get("thread_ts") or "")
            self.assistant_threads.add((channel, thread_ts))
            root = {  # the thread's first message, Slack's own: its title is in assistant_app_thread
                "type": "message",
                "subtype": "assistant_app_thread",
                "user": BOT_USER_ID,
                "bot_id": BOT_ID,
                "text": "",
                "ts": thread_ts,
                "assistant_app_thread": {"title": ""},
            }
            self.said.append((channel, root))
        if event.get("type") in ("message", "app_mention") and event.get("ts") and event.get("user"):
            fields = ("user", "text", "ts", "thread_ts", "team", "blocks")
            message = {"type": "message", **{k: event[k] for k in fields if k in event}}
            self.said.append((str(event.get("channel") or ""), message))

    # --- files -----------------------------------------------------------------------------------

    def add_file(
        self,
        file_id: str,
        name: str,
        data: bytes,
        mimetype: str = "text/plain",
        channel: str | None = None,
        *,
        user: str = "U_USER",
        title: str | None = None,
    ) -> dict[str, Any]:
        """Host a file: ``files.info`` describes it and its ``url_private`` serves ``data`` to the bot token."""
        url = f"{self.base_url}/files/{file_id}/{quote(name)}"
        extension = name.rsplit(".", 1)[-1].lower() if "." in name else "text"
        created = _FIRST_TS_SECONDS + len(self.files)
        channels = [channel] if channel is not None else []
        info: dict[str, Any] = {
            "id": file_id,
            "created": created,
            "timestamp": created,
            "name": name,
            "title": title if title is not None else name,
            "mimetype": mimetype,
            "filetype": extension,
            "pretty_type": extension.upper(),
            "user": user,
            "user_team": TEAM_ID,
            "editable": False,
            "size": len(data),
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": bool(channels) and not channels[0].startswith(("D", "G")),
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": url,
            "url_private_download": f"{url}?download=1",
            "permalink": f"{WORKSPACE_URL}files/{user}/{file_id}/{quote(name)}",
            "permalink_public": f"https://slack-files.com/{TEAM_ID}-{file_id}-0123456789",
            "channels": [c for c in channels if c.startswith("C")],
            "groups": [c for c in channels if c.startswith("G")],
            "ims": [c for c in channels if c.startswith("D")],
            "has_rich_preview": False,
            "file_access": "visible",
        }
        self.files[file_id] = info
        self._file_data[file_id] = (data, mimetype)
        return info

    def hold(self, method: str) -> None:
        """Calls to ``method`` are received (in ``calls``) but answered only after :meth:`release`: a slow Slack."""
        self._held[method] = asyncio.Event()

    def release(self, method: str) -> None:
        held = self._held.pop(method, None)
        if held is not None:
            held.set()

    def hold_downloads(self) -> None:
        """Keep file downloads waiting (each is recorded in ``downloads`` as it arrives) until ``release_downloads``."""
        self._downloads_open.clear()

    def release_downloads(self) -> None:
        self._downloads_open.set()

    # --- Socket Mode ---------------------------------------------------------------------------

    async def socket_send(
        self,
        envelope_type: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
        connection: int = -1,
    ) -> str:
        """Send an envelope (``events_api``, ``slash_commands``, ``interactive``) to the connected client.

        Returns the envelope id; the client's ack appears in ``acks`` (see ``wait_for_ack``).
        ``accepts_response_payload`` defaults to what Slack sends: true for slash commands only.
        ``connection``: which open connection gets it, in the order they connected (Slack spreads an app's
        envelopes over its connections, up to 10; default: the newest).
        """
        envelope_id = str(uuid.uuid4())
        envelope: dict[str, Any] = {"envelope_id": envelope_id, "type": envelope_type, "payload": payload}
        if accepts_response_payload is None:
            accepts_response_payload = envelope_type == "slash_commands"
        envelope["accepts_response_payload"] = accepts_response_payload
        if envelope_type == "events_api":
            envelope["retry_attempt"] = retry_attempt
            envelope["retry_reason"] = retry_reason
        await self._socket(connection).send_json(envelope)
        return envelope_id

    async def socket_disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the client to reconnect, as Slack does every few hours (it calls apps.connections.open again)."""
        await self._socket().send_json({"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}})

    def _socket(self, connection: int = -1) -> web.WebSocketResponse:
        open_sockets = [ws for ws in self._sockets if not ws.closed]
        if not open_sockets:
            raise RuntimeError("no Socket Mode client is connected (await fake.wait_connected() first)")
        return open_sockets[connection]

    async def _link(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len([s for s in self._sockets if not s.closed]),
                "debug_info": {"host": "applink-fake", "build_number": 1, "approximate_connection_time": 18060},
                "connection_info": {"app_id": APP_ID},
            }
        )
        self.connections += 1
        await self._notify()
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                if isinstance(data, dict) and "envelope_id" in data:
                    self.acks.append(data)
                    await self._notify()
        finally:
            self._sockets.remove(ws)
        return ws

    # --- HTTP handlers -------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                if isinstance(body, dict):
                    params.update(body)
            else:
                form = await request.post()
                for key, field_value in form.items():
                    params[key] = field_value.file.read() if isinstance(field_value, FileField) else field_value
        token = params.pop("token", None)
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            token = authorization.removeprefix("Bearer ")
        elif authorization.startswith("Basic "):  # the app's client id and secret (oauth.v2.access)
            with contextlib.suppress(ValueError):
                client_id, _, secret = base64.b64decode(authorization.removeprefix("Basic ")).decode().partition(":")
                params.setdefault("client_id", client_id)
                params.setdefault("client_secret", secret)
        for key in _JSON_FIELDS:  # form bodies carry these as JSON strings; JSON bodies as values
            value = params.get(key)
            if isinstance(value, str) and value[:1] in ("[", "{"):
                with contextlib.suppress(ValueError):
                    params[key] = json.loads(value)
        self.calls.append(Call(method, params, token))
        await self._notify()
        if (held := self._held.get(method)) is not None:
            await held.wait()  # hold(): the call is in flight until release()
        status, answer, headers = self._answer(method, params, token)
        if not answer.get("ok"):
            self._failed.add(len(self.calls) - 1)
        await self._notify()
        return web.json_response(answer, status=status, headers=headers)

    def _answer(
        self, method: str, params: dict[str, Any], token: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        queued = self._fail_next.get(method)
        if queued:
            failure = queued.popleft()
            headers = {}
            if failure.status == 429 and failure.retry_after is not None:
                headers["Retry-After"] = str(failure.retry_after)
            return failure.status, {"ok": False, "error": failure.error}, headers
        refused = self._refused.get((method, str(params.get("channel") or ""))) or self._refused.get((method, None))
        if refused is not None:
            error, status = refused
            return status, {"ok": False, "error": error}, {}
        handler = self._methods.get(method)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method", "req_method": method}, {}
        try:
            if method == "oauth.v2.access":  # the app's credentials, not a token
                return 200, {"ok": True, **handler(params)}, {}
            self._check_token(method, token)
            return 200, {"ok": True, **handler({**params, "_team": self.tokens.get(token or "", TEAM_ID)})}, {}
        except _SlackError as e:
            return 200, {"ok": False, "error": e.error}, {}

    def _check_token(self, method: str, token: str | None) -> None:
        if not token:
            raise _SlackError("not_authed")
        if token in self.revoked:
            raise _SlackError("token_revoked")
        if method == "apps.connections.open":
            if token == self.app_token:
                return
        elif token in self.tokens:
            return
        if token == self.app_token or token in self.tokens:
            raise _SlackError("not_allowed_token_type")
        raise _SlackError("invalid_auth")

    async def _download(self, request: web.Request) -> web.StreamResponse:
        file_id, name = request.match_info["file_id"], request.match_info["name"]
        authorization = request.headers.get("Authorization", "")
        token = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else None
        authorized = token == self.bot_token
        self.downloads.append(Download(file_id, name, token, authorized))
        await self._notify()
        await self._downloads_open.wait()
        if file_id not in self._file_data:
            return web.Response(status=404, text="Not Found")
        if not authorized:
            if self.login_page_on_bad_token:
                return web.Response(text=_LOGIN_PAGE, content_type="text/html")
            return web.Response(status=403, text="Forbidden")
        data, mimetype = self._file_data[file_id]
        return web.Response(body=data, content_type=mimetype)

    async def _receive_upload(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["file_id"]
        if file_id not in self._pending_uploads:
            return web.Response(status=404, text="Not Found")
        self._pending_uploads[file_id] = (self._pending_uploads[file_id][0], await request.read())
        await self._notify()
        return web.Response(text="OK - " + str(len(self._pending_uploads[file_id][1])))

    def _get_upload_url(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _require(params, "filename")
        file_id = f"F_UP{next(self._tickets):04d}"
        self._pending_uploads[file_id] = (name, b"")
        return {"upload_url": f"{self._base}/upload/{file_id}", "file_id": file_id}

    def _complete_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        files = params.get("files")
        if not isinstance(files, list) or not files:
            raise _SlackError("invalid_arguments")
        done = []
        for entry in files:
            file_id = str(entry.get("id"))
            if file_id not in self._pending_uploads:
                raise _SlackError("file_not_found")
            name, data = self._pending_uploads.pop(file_id)
            self.uploads.append(
                Uploaded(file_id, name, data, str(params.get("channel_id") or ""), params.get("thread_ts"))
            )
            done.append({"id": file_id, "name": name, "title": entry.get("title") or name})
        return {"files": done}

    async def _respond(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.responses.append(ResponsePost(request.match_info["response_id"], body))
        await self._notify()
        return web.json_response({"ok": True})

    # --- Web API methods -------------------------------------------------------------------------

    def _next_ts(self) -> str:
        micros = 100 * next(self._ts)
        return f"{_FIRST_TS_SECONDS + micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        team = str(params.get("_team") or TEAM_ID)
        return {
            "url": WORKSPACE_URL,
            "team": "T",
            "user": "threadline",
            "team_id": team,
            "user_id": self.bot_users.get(team, BOT_USER_ID),
            "bot_id": BOT_ID if team == TEAM_ID else f"B_{team}",
            "is_enterprise_install": False,
        }

    def _oauth_v2_access(self, params: dict[str, Any]) -> dict[str, Any]:
        if (params.get("client_id"), params.get("client_secret")) != (self.client_id, self.client_secret):
            raise _SlackError("invalid_client_id" if params.get("client_id") != self.client_id else "bad_client_secret")
        code = str(params.get("code") or "")
        if code not in self._codes:
            raise _SlackError("invalid_code")
        team_id, team_name = self._codes.pop(code)
        token = f"xoxb-{team_id.lower()}-{next(self._tickets)}"
        self.tokens[token] = team_id
        bot_user = self.bot_users.setdefault(team_id, f"U_BOT_{team_id}")
        return {
            "access_token": token,
            "token_type": "bot",
            "scope": "app_mentions:read,chat:write,commands",
            "bot_user_id": bot_user,
            "app_id": APP_ID,
            "team": {"id": team_id, "name": team_name},
            "enterprise": None,
            "is_enterprise_install": False,
            "authed_user": {"id": "U_INSTALLER"},
        }

    def _connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"url": f"{self.socket_url}?ticket={next(self._tickets)}"}

    def _message_json(self, posted: Posted) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "text": posted.text,
            "ts": posted.ts,
        }
        if posted.thread_ts is not None:
            message["thread_ts"] = posted.thread_ts
        if posted.blocks is not None:
            message["blocks"] = posted.blocks
        return message

    def _content(self, params: dict[str, Any]) -> tuple[str, list[Any] | None]:
        """Check a message's text and blocks the way Slack does; return them."""
        text = params.get("text") or params.get("markdown_text") or ""
        blocks = params.get("blocks")
        if not text and not blocks and not params.get("attachments"):
            raise _SlackError("no_text")
        if len(text) > self.max_text:
            raise _SlackError("msg_too_long")
        if blocks is not None:
            _check_blocks(blocks)
        return str(text), blocks

    def _post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _require(params, "channel", "channel_not_found")
        text, blocks = self._content(params)
        posted = Posted(channel, self._next_ts(), text, params.get("thread_ts") or None, blocks)
        self.messages[posted.ts] = posted
        return {"channel": channel, "ts": posted.ts, "message": self._message_json(posted)}

    def _update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _require(params, "channel", "channel_not_found")
        posted = self._own_message(channel, _require(params, "ts", "message_not_found"))
        text, blocks = self._content(params)
        posted.text, posted.blocks = text, blocks
        posted.updates += 1
        return {"channel": channel, "ts": posted.ts, "text": text, "message": self._message_json(posted)}

    def _own_message(self, channel: str, ts: str) -> Posted:
        posted = self.messages.get(ts)
        if posted is None or posted.channel != channel:
            raise _SlackError("message_not_found")
        return posted

    def _post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        _require(params, "channel", "channel_not_found")
        _require(params, "user", "user_not_in_channel")
        self._content(params)
        return {"message_ts": self._next_ts()}

    def _get_permalink(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _require(params, "channel", "channel_not_found")
        ts = _require(params, "message_ts", "message_not_found")
        return {"channel": channel, "permalink": f"{WORKSPACE_URL}archives/{channel}/p{ts.replace('.', '')}"}

    def _stream_chunks(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The chunks of a stream call other than text, checked as Slack does: each has a type, a task update its
        id, title and status; a type in ``refuse_chunks`` is refused."""
        chunks = params.get("chunks") or []
        if not isinstance(chunks, list):
            raise _SlackError("invalid_chunks")
        others = []
        for chunk in chunks:
            if not isinstance(chunk, dict) or not chunk.get("type"):
                raise _SlackError("invalid_chunks")
            task = chunk["type"] == "task_update"
            if chunk["type"] in self.refuse_chunks or (task and not _is_task_update(chunk)):
                raise _SlackError("invalid_chunks")
            if chunk["type"] != "markdown_text":
                others.append(chunk)
        return others

    @staticmethod
    def _stream_text(params: dict[str, Any]) -> str:
        text = str(params.get("markdown_text") or "")
        for chunk in params.get("chunks") or []:
            if isinstance(chunk, dict) and chunk.get("type") == "markdown_text":
                text += str(chunk.get("text", ""))
        return text

    def _start_stream(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _require(params, "channel", "channel_not_found")
        thread_ts = _require(params, "thread_ts")
        chunks = self._stream_chunks(params)
        posted = Posted(channel, self._next_ts(), self._stream_text(params), thread_ts, streaming=True, chunks=chunks)
        self.messages[posted.ts] = posted
        return {"channel": channel, "ts": posted.ts}

    def _streaming_message(self, params: dict[str, Any]) -> Posted:
        channel = _require(params, "channel", "channel_not_found")
        posted = self._own_message(channel, _require(params, "ts", "message_not_found"))
        if not posted.streaming:
            raise _SlackError("message_not_in_streaming_state")
        return posted

    def _append_stream(self, params: dict[str, Any]) -> dict[str, Any]:
        posted = self._streaming_message(params)
        posted.chunks += self._stream_chunks(params)
        posted.text += self._stream_text(params)
        posted.updates += 1
        return {"channel": posted.channel, "ts": posted.ts}

    def _stop_stream(self, params: dict[str, Any]) -> dict[str, Any]:
        posted = self._streaming_message(params)
        chunks = self._stream_chunks(params)
        if params.get("blocks"):
            _check_blocks(params["blocks"])
            posted.stop_blocks = params["blocks"]
        posted.chunks += chunks
        posted.text += self._stream_text(params)
        posted.streaming = False
        return {"channel": posted.channel, "ts": posted.ts, "message": self._message_json(posted)}

    def _reactions_add(self, params: dict[str, Any]) -> dict[str, Any]:
        key = self._reaction(params)
        if key in self.reactions:
            raise _SlackError("already_reacted")
        self.reactions.add(key)
        return {}

    def _reactions_remove(self, params: dict[str, Any]) -> dict[str, Any]:
        key = self._reaction(params)
        if key not in self.reactions:
            raise _SlackError("no_reaction")
        self.reactions.remove(key)
        return {}

    @staticmethod
    def _reaction(params: dict[str, Any]) -> tuple[str, str, str]:
        return (
            _require(params, "channel", "channel_not_found"),
            _require(params, "timestamp", "message_not_found"),
            _require(params, "name", "invalid_name"),
        )

    def _assistant_thread(self, params: dict[str, Any], *, any_thread: bool = False) -> tuple[str, str]:
        """(channel, thread ts) of an assistant.threads.* call: an assistant thread (or, with ``any_thread``,
        any thread), else ``invalid_thread_ts`` as Slack answers."""
        channel = _require(params, "channel_id", "channel_not_found")
        if channel[:1] not in ("C", "D", "G"):
            raise _SlackError("channel_not_found")
        thread_ts = _require(params, "thread_ts", "invalid_thread_ts")
        if not any_thread and (channel, thread_ts) not in self.assistant_threads:
            raise _SlackError("invalid_thread_ts")
        return channel, thread_ts

    def _set_status(self, params: dict[str, Any]) -> dict[str, Any]:
        """Required: channel_id, thread_ts, status (empty clears it). In an assistant thread, or in any thread with
        ``status_in_any_thread``; else invalid_thread_ts."""
        if "status" not in params or not isinstance(params["status"], str):
            raise _SlackError("invalid_arguments")
        where = self._assistant_thread(params, any_thread=self.status_in_any_thread)
        loading = params.get("loading_messages")
        if loading is not None and (not isinstance(loading, list) or len(loading) > 10):
            raise _SlackError("invalid_arguments")
        self.statuses[where] = params["status"]
        return {}

    def _set_title(self, params: dict[str, Any]) -> dict[str, Any]:
        """Required: channel_id, thread_ts, title; in an assistant thread only."""
        where = self._assistant_thread(params)
        self.titles[where] = _require(params, "title")
        for channel, message in self.said:
            if (channel, message.get("ts")) == where and "assistant_app_thread" in message:
                message["assistant_app_thread"] = {"title": self.titles[where]}
        return {}

    def _set_suggested_prompts(self, params: dict[str, Any]) -> dict[str, Any]:
        """Required: channel_id, thread_ts, prompts (1 to 4, each a title and a message); in an assistant thread."""
        where = self._assistant_thread(params)
        prompts = params.get("prompts")
        if not isinstance(prompts, list) or not 1 <= len(prompts) <= 4:
            raise _SlackError("invalid_arguments")
        for prompt in prompts:
            if not isinstance(prompt, dict) or not prompt.get("title") or not prompt.get("message"):
                raise _SlackError("invalid_arguments")
        self.suggested[where] = prompts
        return {}

    def _conversations_members(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _require(params, "channel", "channel_not_found")
        if channel not in self.members:
            raise _SlackError("channel_not_found")
        members = self.members[channel]
        limit = max(1, min(1000, int(params.get("limit") or 100)))
        offset = 0
        if params.get("cursor"):
            try:
                offset = int(base64.b64decode(str(params["cursor"])).decode().removeprefix("offset:"))
            except ValueError:
                raise _SlackError("invalid_cursor") from None
        page = members[offset : offset + limit]
        more = offset + limit < len(members)
        cursor = base64.b64encode(f"offset:{offset + limit}".encode()).decode() if more else ""
        return {"members": page, "response_metadata": {"next_cursor": cursor}}

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        """A thread's messages, people's (``say``) and the bot's: its first message, then the replies, oldest first."""
        channel = _require(params, "channel", "channel_not_found")
        parent = _require(params, "ts", "thread_not_found")
        ours = [
            self._message_json(m)
            for m in self.messages.values()
            if m.channel == channel and (m.ts == parent or m.thread_ts == parent)
        ]
        theirs = [m for c, m in self.said if c == channel and parent in (m.get("ts"), m.get("thread_ts"))]
        thread = sorted(ours + theirs, key=lambda m: float(m["ts"]))
        if not thread or thread[0]["ts"] != parent:
            raise _SlackError("thread_not_found")
        limit = max(1, min(1000, int(params.get("limit") or 1000)))
        page = thread[:limit]
        more = len(thread) > limit
        return {"messages": page, "has_more": more, "response_metadata": {"next_cursor": "more" if more else ""}}

    def _conversations_open(self, params: dict[str, Any]) -> dict[str, Any]:
        """A direct message with one person: its channel id is ``D`` + the user id (``D_ALICE`` for ``U_ALICE``)."""
        users = [u for u in str(params.get("users") or "").split(",") if u]
        if len(users) != 1:
            raise _SlackError("users_list_not_supplied" if not users else "not_enough_users")
        return {"channel": {"id": "D" + users[0].removeprefix("U")}}

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _require(params, "channel", "channel_not_found")
        is_im, is_private = channel.startswith("D"), channel.startswith("G")
        info: dict[str, Any] = {
            "id": channel,
            "created": _FIRST_TS_SECONDS,
            "is_archived": False,
            "is_im": is_im,
            "is_mpim": False,
            "is_private": is_im or is_private,
            "context_team_id": TEAM_ID,
        }
        if is_im:
            info |= {"user": "U_USER", "is_user_deleted": False, "is_open": True, "priority": 0}
        else:
            info |= {
                "name": f"channel-{channel.lower()}",
                "is_channel": not is_private,
                "is_group": is_private,
                "is_general": False,
                "is_shared": False,
                "is_ext_shared": False,
                "is_org_shared": False,
                "is_member": True,
                "creator": "U_USER",
                "topic": {"value": "", "creator": "", "last_set": 0},
                "purpose": {"value": "", "creator": "", "last_set": 0},
            }
        info |= self.channels.get(channel, {})
        return {"channel": info}

    def _files_info(self, params: dict[str, Any]) -> dict[str, Any]:
        file_id = _require(params, "file", "file_not_found")
        if file_id not in self.files:
            raise _SlackError("file_not_found")
        return {"file": self.files[file_id], "comments": [], "response_metadata": {"next_cursor": ""}}

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id = _require(params, "user", "user_not_found")
        override = self.users.get(user_id, {})
        real_name = str(override.get("real_name", f"User {user_id}"))
        user: dict[str, Any] = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": user_id.lower(),
            "deleted": False,
            "real_name": real_name,
            "tz": "Europe/Paris",
            "tz_label": "Central European Summer Time",
            "tz_offset": 7200,
            "profile": {
                "real_name": real_name,
                "real_name_normalized": real_name,
                "display_name": real_name.split(" ")[0],
                "display_name_normalized": real_name.split(" ")[0],
                "team": TEAM_ID,
            },
            "is_admin": False,
            "is_owner": False,
            "is_bot": user_id == BOT_USER_ID,
            "is_app_user": False,
            "updated": _FIRST_TS_SECONDS,
        }
        user |= override
        return {"user": user}


def _check_blocks(blocks: Any) -> None:
    """The Block Kit limits an answer most easily trips over."""
    if not isinstance(blocks, list) or len(blocks) > _MAX_BLOCKS:
        raise _SlackError("invalid_blocks")
    for block in blocks:
        if not isinstance(block, dict) or "type" not in block:
            raise _SlackError("invalid_blocks")
        text = block.get("text")
        text = text.get("text", "") if isinstance(text, dict) else text or ""
        limit = {"section": 3000, "header": 150, "markdown": 12_000}.get(block["type"])
        if limit is not None and len(text) > limit:
            raise _SlackError("invalid_blocks")
        if block["type"] == "actions" and len(block.get("elements", [])) > 25:
            raise _SlackError("invalid_blocks")
        if block["type"] == "context_actions":
            _check_context_actions(block)


def _is_task_update(chunk: dict[str, Any]) -> bool:
    return bool(chunk.get("id")) and bool(chunk.get("title")) and chunk.get("status") in _TASK_STATUSES


def _check_context_actions(block: dict[str, Any]) -> None:
    """A context actions block: 1 to 5 feedback buttons or icon buttons; feedback buttons have a positive and a
    negative button, each a plain-text label (75 characters at most) and a value (2000 at most)."""
    elements = block.get("elements")
    if not isinstance(elements, list) or not 1 <= len(elements) <= 5:
        raise _SlackError("invalid_blocks")
    for element in elements:
        kind = element.get("type") if isinstance(element, dict) else None
        if kind not in ("feedback_buttons", "icon_button"):
            raise _SlackError("invalid_blocks")
        if kind == "feedback_buttons":
            for side in ("positive_button", "negative_button"):
                button = element.get(side)
                text = button.get("text") if isinstance(button, dict) else None
                if (
                    not isinstance(text, dict)
                    or text.get("type") != "plain_text"
                    or not 0 < len(str(text.get("text") or "")) <= 75
                    or not isinstance(button.get("value"), str)
                    or not 0 < len(button["value"]) <= 2000
                ):
                    raise _SlackError("invalid_blocks")


_LOGIN_PAGE = "<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in to Slack</body></html>"


# --- what Slack sends to an app -------------------------------------------------------------------


def signed_headers(
    secret: str,
    body: bytes | str,
    timestamp: int | None = None,
    *,
    content_type: str | None = None,
    retry_num: int | None = None,
    retry_reason: str | None = None,
) -> dict[str, str]:
    """Headers of a request from Slack: ``v0=`` HMAC-SHA256 of ``v0:{timestamp}:{body}`` with the signing secret.

    ``content_type`` defaults to JSON for a body starting with ``{``, else form encoding.
    ``retry_num`` / ``retry_reason`` add Slack's ``X-Slack-Retry-*`` headers of a redelivered event.
    """
    raw = body.encode() if isinstance(body, str) else body
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    if content_type is None:
        content_type = "application/json" if raw.lstrip().startswith(b"{") else "application/x-www-form-urlencoded"
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=raw)
    assert signature is not None  # None only without a signing secret
    headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature}
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
    return headers


def event_callback(
    event: dict[str, Any],
    event_id: str,
    team_id: str = TEAM_ID,
    *,
    api_app_id: str = APP_ID,
    event_time: int | None = None,
) -> dict[str, Any]:
    """The Events API envelope around an event (the body in HTTP mode, the payload in Socket Mode)."""
    return {
        "token": "verification-token-unused",
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()) if event_time is None else event_time,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-{base64.urlsafe_b64encode(event_id.encode()).decode()}",
    }


def _rich_text(text: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "rich_text",
            "block_id": "rt0",
            "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}],
        }
    ]


def _message_event(
    event_type: str, channel: str, user: str, text: str, ts: str, thread_ts: str | None, channel_type: str | None
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": event_type,
        "client_msg_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{channel}/{ts}")),
        "user": user,
        "text": text,
        "blocks": _rich_text(text),
        "team": TEAM_ID,
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
    }
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    if channel_type is not None:
        event["channel_type"] = channel_type
    return event


def _channel_type(channel: str) -> str:
    return {"D": "im", "G": "group"}.get(channel[:1], "channel")


def app_mention(
    channel: str,
    user: str,
    text: str,
    ts: str,
    thread_ts: str | None = None,
    *,
    files: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An ``app_mention`` event; ``text`` should contain ``<@U_BOT>`` like the real thing. ``files``: the file
    objects of a message that mentions the bot and shares files (Slack sends its ``file_share`` message too)."""
    event = _message_event("app_mention", channel, user, text, ts, thread_ts, None)
    return event | {"files": files, "upload": False} if files else event


def dm_message(channel: str, user: str, text: str, ts: str, thread_ts: str | None = None) -> dict[str, Any]:
    """A ``message`` event in a direct message with the bot (``channel`` should start with ``D``)."""
    return _message_event("message", channel, user, text, ts, thread_ts, "im")


def channel_message(channel: str, user: str, text: str, ts: str, thread_ts: str | None = None) -> dict[str, Any]:
    """A plain ``message`` event in a channel (no mention), e.g. a reply in a thread the bot is in."""
    return _message_event("message", channel, user, text, ts, thread_ts, _channel_type(channel))


def bot_message(channel: str, text: str, ts: str, thread_ts: str | None = None) -> dict[str, Any]:
    """A ``message`` event for the bot's own post, which an app must ignore."""
    event = _message_event("message", channel, BOT_USER_ID, text, ts, thread_ts, _channel_type(channel))
    event.pop("client_msg_id")
    return event | {"bot_id": BOT_ID, "app_id": APP_ID}


def assistant_thread_started(
    channel: str, user: str, thread_ts: str, *, viewing: str | None = None, team_id: str = TEAM_ID
) -> dict[str, Any]:
    """An ``assistant_thread_started`` event: ``user`` opened a new chat in the bot's assistant pane, a thread
    ``thread_ts`` of their direct message ``channel`` with the bot; ``viewing``: the channel they were looking at."""
    return {
        "type": "assistant_thread_started",
        "assistant_thread": {
            "user_id": user,
            "context": {"channel_id": viewing, "team_id": team_id, "enterprise_id": None} if viewing else {},
            "channel_id": channel,
            "thread_ts": thread_ts,
        },
        "event_ts": f"{thread_ts.split('.')[0]}.999999",
    }


def assistant_thread_context_changed(
    channel: str, user: str, thread_ts: str, viewing: str, *, team_id: str = TEAM_ID
) -> dict[str, Any]:
    """An ``assistant_thread_context_changed`` event: with the pane open, ``user`` moved to channel ``viewing``."""
    event = assistant_thread_started(channel, user, thread_ts, viewing=viewing, team_id=team_id)
    return event | {"type": "assistant_thread_context_changed"}


def assistant_thread_message(channel: str, user: str, text: str, ts: str, thread_ts: str) -> dict[str, Any]:
    """A person's ``message`` in an assistant thread: a reply in a thread of their DM with the bot."""
    return dm_message(channel, user, text, ts, thread_ts) | {"parent_user_id": user}


def file_share_message(
    channel: str,
    user: str,
    files: list[dict[str, Any]],
    ts: str,
    text: str = "",
    thread_ts: str | None = None,
) -> dict[str, Any]:
    """A ``message`` event with ``subtype: file_share`` and the file objects (e.g. from ``fake.files``)."""
    event = _message_event("message", channel, user, text, ts, thread_ts, _channel_type(channel))
    return event | {"subtype": "file_share", "files": files, "upload": False, "display_as_bot": False}


def file_shared(file_id: str, user: str, channel: str, event_ts: str) -> dict[str, Any]:
    """A ``file_shared`` event: only the file id; the app calls ``files.info`` for the rest."""
    return {
        "type": "file_shared",
        "channel_id": channel,
        "file_id": file_id,
        "user_id": user,
        "file": {"id": file_id},
        "event_ts": event_ts,
    }


def url_verification(challenge: str) -> dict[str, Any]:
    return {"token": "verification-token-unused", "challenge": challenge, "type": "url_verification"}


def slash_command(
    command: str,
    text: str,
    channel_id: str,
    user_id: str,
    response_url: str,
    *,
    trigger_id: str = "1700000000.1.trigger",
    team_id: str = TEAM_ID,
) -> dict[str, Any]:
    """A slash command's fields (the payload in Socket Mode)."""
    return {
        "token": "verification-token-unused",
        "team_id": team_id,
        "team_domain": "threadline-test",
        "channel_id": channel_id,
        "channel_name": "directmessage" if channel_id.startswith("D") else f"channel-{channel_id.lower()}",
        "user_id": user_id,
        "user_name": user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }


def slash_command_form(
    command: str,
    text: str,
    channel_id: str,
    user_id: str,
    response_url: str,
    *,
    trigger_id: str = "1700000000.1.trigger",
    team_id: str = TEAM_ID,
) -> bytes:
    """A slash command as Slack POSTs it in HTTP mode: form-encoded."""
    fields = slash_command(command, text, channel_id, user_id, response_url, trigger_id=trigger_id, team_id=team_id)
    return urlencode(fields).encode()


def block_action_payload(
    action_id: str,
    value: str,
    user_id: str,
    channel_id: str,
    message_ts: str,
    response_url: str,
    *,
    block_id: str = "actions",
    thread_ts: str | None = None,
    message_text: str = "",
    team_id: str = TEAM_ID,
    action_type: str = "button",
) -> dict[str, Any]:
    """A ``block_actions`` interaction (a button click on the bot's message); the payload in Socket Mode.
    ``action_type``: the element pressed (``button``; ``feedback_buttons`` for a thumbs up or down)."""
    message: dict[str, Any] = {
        "type": "message",
        "user": BOT_USER_ID,
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "team": team_id,
        "text": message_text,
        "ts": message_ts,
    }
    if thread_ts is not None:
        message["thread_ts"] = thread_ts
    return {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": team_id},
        "api_app_id": APP_ID,
        "token": "verification-token-unused",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": False,
            **({"thread_ts": thread_ts} if thread_ts is not None else {}),
        },
        "trigger_id": "1700000000.2.trigger",
        "team": {"id": team_id, "domain": "threadline-test"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": f"channel-{channel_id.lower()}"},
        "message": message,
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "text": {"type": "plain_text", "text": value, "emoji": True},
                "value": value,
                "type": action_type,
                "action_ts": f"{int(time.time())}.000001",
            }
        ],
    }


def block_action(
    action_id: str,
    value: str,
    user_id: str,
    channel_id: str,
    message_ts: str,
    response_url: str,
    *,
    block_id: str = "actions",
    thread_ts: str | None = None,
    message_text: str = "",
    team_id: str = TEAM_ID,
) -> bytes:
    """A ``block_actions`` interaction as Slack POSTs it in HTTP mode: form-encoded ``payload=<json>``."""
    payload = block_action_payload(
        action_id,
        value,
        user_id,
        channel_id,
        message_ts,
        response_url,
        block_id=block_id,
        thread_ts=thread_ts,
        message_text=message_text,
        team_id=team_id,
    )
    return urlencode({"payload": json.dumps(payload)}).encode()


def feedback_press_payload(
    message: Posted, value: str, user_id: str, response_url: str, *, team_id: str = TEAM_ID
) -> dict[str, Any]:
    """A press on the feedback buttons the bot put under ``message`` (``chat.stopStream`` blocks, or a message
    of their own): the ``block_actions`` payload Slack sends, for the button whose value is ``value``."""
    blocks = message.stop_blocks or message.blocks or []
    block = next(b for b in blocks if b.get("type") == "context_actions")
    element = next(e for e in block["elements"] if e.get("type") == "feedback_buttons")
    if value not in (element["positive_button"]["value"], element["negative_button"]["value"]):
        raise ValueError(f"no feedback button has the value {value!r}")
    return block_action_payload(
        element.get("action_id", ""),
        value,
        user_id,
        message.channel,
        message.ts,
        response_url,
        block_id=block.get("block_id", ""),
        thread_ts=message.thread_ts,
        message_text=message.text,
        team_id=team_id,
        action_type="feedback_buttons",
    )


def feedback_press(message: Posted, value: str, user_id: str, response_url: str, *, team_id: str = TEAM_ID) -> bytes:
    """:func:`feedback_press_payload` as Slack POSTs it in HTTP mode: form-encoded ``payload=<json>``."""
    payload = feedback_press_payload(message, value, user_id, response_url, team_id=team_id)
    return urlencode({"payload": json.dumps(payload)}).encode()
