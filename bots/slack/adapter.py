"""Slack events in, core calls out: mentions and DMs, shared files, slash commands, approval buttons.

No assistant logic lives here: the adapter normalises what Slack sends, hands it to the core,
and renders the core's events back with :class:`bots.slack.render.SlackReply`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError

from bots.slack.config import SlackSettings
from bots.slack.render import APPROVE_ACTION, DENY_ACTION, SlackReply, decided_blocks
from bots.slack.status import StatusSupport, Working
from bots.slack.tasks import TaskUpdates
from bots.slack.threads import (
    CONTEXT_MESSAGES,
    Place,
    addressed_elsewhere,
    context_from_replies,
    mentions,
    place_of,
    strip_mentions,
)
from bots.slack.workspaces import NotInstalled, Workspace, Workspaces
from core.commands import handle_command, is_command
from core.events import RunCompleted, RunFailed
from core.handles import RunHandle
from core.images import SharedImage, is_picture
from core.knowledge.base import DownloadFailed, Upload
from core.models import Author, Incoming, parse_channel_key, scope_of, sub_of
from core.notices import CUT_OFF_ANSWER
from core.service import ApprovalError, ChannelNotServed, CutOff, Threadline

__all__ = ["SlackAdapter", "channel_key", "register_listeners"]

_log = logging.getLogger(__name__)

CUT_OFF_NOTE = f":arrows_counterclockwise: {CUT_OFF_ANSWER}"
COMMANDS = ("reset", "files", "forget", "export", "usage", "assistant", "budget")
THREAD_COMMANDS = ("cancel", "help")  # written to the bot only: Slack's commands take other apps' names
NAME_CACHE = 2000
# Why Slack redelivers an event when the earlier delivery reached the bot and only its answer was late.
# Bolt answers before it handles an event, so that earlier delivery is handled (HTTP: X-Slack-Retry-Reason;
# Socket Mode: the envelope's retry_reason, which Bolt passes on as the same header).
LATE_ANSWER_RETRIES = frozenset({"http_timeout", "timeout"})
# How long a slash command's invocation is remembered, to run it once when Slack sends it again: longer than
# the five minutes after which a request in HTTP mode fails its signature check.
COMMAND_REPLAY_SECONDS = 6 * 60


def channel_key(team_id: str, channel_id: str) -> str:
    return f"slack:{team_id}:{channel_id}"


class SlackAdapter:
    def __init__(
        self,
        service: Threadline,
        settings: SlackSettings,
        workspaces: Workspaces,
        http: aiohttp.ClientSession,
    ) -> None:
        self._service = service
        self._settings = settings
        self._workspaces = workspaces
        self._http = http
        self._names: OrderedDict[str, str] = OrderedDict()  # a cache of display names
        self._rendering: set[str] = set()  # runs this process is showing right now
        self._showing: dict[asyncio.Task[Any], RunHandle] = {}  # ... by the task showing each
        self._statuses = StatusSupport(service.metrics)  # where Slack shows a thread's status
        self._tasks = TaskUpdates()  # whether Slack takes task updates in streams

    async def _workspace(self, team_id: str) -> Workspace | None:
        """The workspace's client and bot user; None (logged) when the app is not installed there (any more)."""
        try:
            return await self._workspaces.get(team_id)
        except NotInstalled as exc:
            _log.warning("%s Its event is dropped; install the app there again to serve it.", exc)
            return None

    # -- conversation ---------------------------------------------------------------------------

    async def on_mention(self, event: dict[str, Any], body: dict[str, Any], request: AsyncBoltRequest) -> None:
        if (ws := await self._workspace(_team(body, event))) is not None:
            await self._converse(ws, event, body, request)

    async def on_message(self, event: dict[str, Any], body: dict[str, Any], request: AsyncBoltRequest) -> None:
        subtype = event.get("subtype")
        is_dm, is_reply = event.get("channel_type") == "im", event.get("thread_ts") not in (None, event.get("ts"))
        if subtype != "file_share" and not is_dm and not is_reply:  # a channel's top-level message: for people
            return
        if (ws := await self._workspace(_team(body, event))) is None:
            return
        if subtype == "file_share":
            await self._ingest_files(ws, event, body)
        if subtype not in (None, "file_share", "thread_broadcast"):
            return
        if not (event.get("text") or "").strip() and not _pictures(event):
            return
        if is_dm:  # every message in a DM is for the bot
            await self._converse(ws, event, body, request)
        elif self._may_follow_up(ws, event):
            await self._converse(ws, event, body, request, follow_up=True)
        else:
            _log.debug("message %s in %s is not for the bot", event.get("ts"), event.get("channel"))

    def _may_follow_up(self, ws: Workspace, event: dict[str, Any]) -> bool:
        """A reply in a channel's Slack thread without a mention of the bot (a mention comes as app_mention):
        a follow-up, answered if the bot is part of that thread (:meth:`_converse` asks the store)."""
        text = str(event.get("text") or "")
        thread_ts = event.get("thread_ts")
        return (
            self._settings.thread_followups
            and bool(thread_ts)
            and thread_ts != event.get("ts")
            and not mentions(text, ws.bot_user_id)
            and not addressed_elsewhere(text, ws.bot_user_id)
        )

    async def _converse(
        self,
        ws: Workspace,
        event: dict[str, Any],
        body: dict[str, Any],
        request: AsyncBoltRequest,
        *,
        follow_up: bool = False,
    ) -> None:
        if self._from_a_bot(ws, event):
            return
        team_id = _team(body, event)
        ts, user = event["ts"], event.get("user", "")
        place = place_of(channel_key(team_id, event["channel"]), event)
        text = strip_mentions(event.get("text") or "")
        context: list[dict[str, str]] = []
        if place.thread_ts is not None:
            state = await self._service.conversation_state(place.key)
            if follow_up and not state.known:  # a thread the bot is part of began with a mention it answered
                context = await self._service.exchange(place.channel_key, place.thread_ts)
                if not context:
                    _log.debug("message %s in %s is not for the bot: it is not part of the thread", ts, place.key)
                    return
            elif not state.known:  # (known and not begun: reset, so it begins anew)
                context = await self._thread_context(ws, place, ts)
        if event.get("files") and event.get("subtype") != "file_share":
            await self._ingest_files(ws, event, body)
        images = tuple(self._shared_image(ws, file) for file in _pictures(event))
        if not text and not images:
            return
        author = Author(id=user, name=self._names.get(user, user), key=f"slack:{user}")
        if is_command(text) and text[1:].split(" ", 1)[0].lower().removeprefix(self._settings.command_prefix) in (
            *COMMANDS,
            *THREAD_COMMANDS,
        ):
            await self._command_in_conversation(ws, place, text, author)
            return
        # Post before any other Slack call, so that messages reach the core in the order they came:
        # a name not yet known is looked up afterwards, for the person's next message. (Only the first
        # message of a thread the store knows nothing of waits for conversations.replies.)
        try:
            incoming = Incoming(place.key, author, text, platform_msg_id=ts, context=tuple(context), images=images)
            received = await self._service.receive(incoming)
        except ChannelNotServed as exc:
            # Nothing is stored for a refusal, so the core cannot tell a redelivery from the first delivery.
            # A redelivery because the bot answered Slack late comes after a first delivery that was handled
            # and refused already: stay quiet. After any other failure (an error status, no connection) the
            # earlier delivery most likely never reached the bot, and the person would otherwise hear nothing.
            if _retry_reason(request) in LATE_ANSWER_RETRIES:
                _log.info("not refusing %s again: Slack redelivered %s after a late answer", place.key, ts)
                return
            if follow_up:  # not addressed to the bot: no refusal either
                return
            await ws.client.chat_postMessage(channel=place.channel_id, thread_ts=place.reply_in, text=str(exc))
            return
        if user not in self._names:
            await self._name(ws, user)
        if received.notice is not None:  # about its images: to the person alone
            await self._tell_privately(ws, place, user, received.notice)
        handle = received.handle
        if handle is None:  # Slack delivered this message before (or it had only images, none shown)
            return
        working = self._statuses.working(ws.client, place, ts)  # "is thinking…" in the thread, or :eyes:
        await working.start()
        try:
            await self._render(ws, handle, place.channel_id, place.reply_in, user, working)
        finally:
            await working.end()

    async def _thread_context(self, ws: Workspace, place: Place, ts: str) -> list[dict[str, str]]:
        """What the conversation of a Slack thread begins with: the mention that started it and the bot's
        answer, from the store; else the thread's first messages as Slack has them (a thread of people's the
        bot was called into). Without them (Slack refused), it begins with the message itself."""
        assert place.thread_ts is not None
        stored = await self._service.exchange(place.channel_key, place.thread_ts)
        if stored:
            return stored
        try:
            replies = await ws.client.conversations_replies(
                channel=place.channel_id, ts=place.thread_ts, limit=CONTEXT_MESSAGES
            )
        except SlackApiError as exc:
            _log.warning("conversations.replies in %s failed, the thread begins without its start: %s", place.key, exc)
            self._service.metrics.platform_error("slack", _error_code(exc))
            return []
        messages = replies.get("messages") or []
        for user in {str(m.get("user") or "") for m in messages} - {ws.bot_user_id or ""}:
            await self._name(ws, user)
        return context_from_replies(messages, ts, ws.bot_user_id, self._names)

    async def _command_in_conversation(self, ws: Workspace, place: Place, text: str, person: Author) -> None:
        """A command written to the bot (``@Threadline /reset``): Slack runs no slash command inside a thread, so
        this is how a thread is reset. The answer is shown to the person alone, as a slash command's is."""
        name = text[1:].split(" ", 1)[0]
        text = "/" + name.lower().removeprefix(self._settings.command_prefix) + text[1 + len(name) :]
        reply = await handle_command(self._service, place.key, text, person)
        answer = reply.text
        if reply.file is not None:
            answer = await self._send_privately(ws, person.id, reply.file, answer)
        try:
            await ws.client.chat_postEphemeral(
                channel=place.channel_id, user=person.id, thread_ts=place.reply_in, text=answer
            )
        except SlackApiError as exc:
            _log.warning("could not answer %s in %s: %s", name, place.key, exc)
            self._service.metrics.platform_error("slack", _error_code(exc))

    async def _tell_privately(self, ws: Workspace, place: Place, user: str, text: str) -> None:
        try:
            await ws.client.chat_postEphemeral(channel=place.channel_id, user=user, thread_ts=place.reply_in, text=text)
        except SlackApiError as exc:
            _log.warning("could not tell %s in %s about their images: %s", user, place.key, exc)
            self._service.metrics.platform_error("slack", _error_code(exc))

    async def _render(
        self,
        ws: Workspace,
        handle: RunHandle,
        channel_id: str,
        thread_ts: str,
        user: str,
        working: Working | None = None,
    ) -> None:
        async def posted(ts: str) -> None:  # kept with the run, for whoever takes it over after a crash
            try:
                await self._service.showing(handle.run_id, ts)
            except Exception as exc:  # only a takeover after a crash would miss it: the answer goes on
                _log.warning("could not keep the message of run %s's answer with it: %s", handle.run_id, exc)

        self._rendering.add(handle.run_id)
        task = asyncio.current_task()
        if task is not None:
            self._showing[task] = handle
        try:
            reply = SlackReply(
                ws.client,
                channel_id=channel_id,
                thread_ts=thread_ts,
                team_id=ws.team_id,
                user_id=user or None,
                posted=posted,
                metrics=self._service.metrics,
                working=working,
                tasks=self._tasks,
                stop=lambda: self._service.cancel_run(handle.run_id),
            )
            await reply.render(handle)
        finally:
            self._rendering.discard(handle.run_id)
            if task is not None:
                self._showing.pop(task, None)

    async def drain(self, grace: float) -> None:
        """At a stop, once the core has closed: let the runs it ended be shown to their end (a cut-off answer's
        notice that it will follow, a failure), for at most ``grace`` seconds. Runs waiting for a decision are
        not waited for: their buttons work again after the restart."""
        ending = [task for task, handle in self._showing.items() if handle.done]
        if ending:
            await asyncio.wait(ending, timeout=grace)

    def _from_a_bot(self, ws: Workspace, event: dict[str, Any]) -> bool:
        if event.get("user") and event.get("user") == ws.bot_user_id:
            return True
        return not self._settings.allow_bots and bool(event.get("bot_id") or event.get("subtype") == "bot_message")

    async def _name(self, ws: Workspace, user: str) -> str:
        if not user:
            return ""
        if user in self._names:
            self._names.move_to_end(user)
            return self._names[user]
        name = user
        try:
            response = await ws.client.users_info(user=user)
            profile = (response.get("user") or {}).get("profile") or {}
            name = str(profile.get("display_name") or profile.get("real_name") or user)
        except SlackApiError as exc:
            _log.debug("users.info %s failed: %s", user, exc)
            self._service.metrics.platform_error("slack", _error_code(exc))
        self._names[user] = name
        while len(self._names) > NAME_CACHE:
            self._names.popitem(last=False)
        return name

    # -- files ------------------------------------------------------------------------------------

    async def on_file_shared(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        file_id, channel_id = event.get("file_id"), event.get("channel_id")
        if not file_id or not channel_id:
            return
        team_id = _team(body, event)
        if (ws := await self._workspace(team_id)) is None:
            return
        key = channel_key(team_id, channel_id)
        try:
            info = await ws.client.files_info(file=file_id)
        except SlackApiError as exc:
            _log.warning("files.info %s failed: %s", file_id, exc)
            self._service.metrics.platform_error("slack", _error_code(exc))
            return
        await self._ingest(ws, key, channel_id, None, info.get("file") or {}, event.get("user_id"))

    async def on_file_deleted(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        file_id = event.get("file_id")
        if not file_id:
            return
        for channel_id in event.get("channel_ids") or []:
            await self._service.knowledge.forget_platform_file(channel_key(_team(body, event), channel_id), file_id)

    async def _ingest_files(self, ws: Workspace, event: dict[str, Any], body: dict[str, Any]) -> None:
        if self._from_a_bot(ws, event):
            return
        key = channel_key(_team(body, event), event["channel"])
        for file in event.get("files") or []:
            thread_ts = event.get("thread_ts") or event["ts"]
            await self._ingest(ws, key, event["channel"], thread_ts, file, event.get("user"))

    async def _ingest(
        self, ws: Workspace, key: str, channel_id: str, thread_ts: str | None, file: dict[str, Any], user: str | None
    ) -> None:
        """Hand a shared file to the channel's knowledge base and say what became of it.

        Slack tells of one file more than once (its message and ``file_shared``, redeliveries, to
        any process): the knowledge base decides, by the file id, which delivery adds it.
        """
        file_id, name = file.get("id"), file.get("name") or file.get("title") or "file"
        url = file.get("url_private_download") or file.get("url_private")
        if not file_id or not url or file.get("mode") in {"tombstone", "external"}:
            return
        if is_picture(name, file.get("mimetype")):  # never a document: shown to the model when sent to the bot
            return
        download = self._downloader(ws, url, name)
        upload = Upload(
            name=name,
            mime=file.get("mimetype"),
            uploader_id=user,
            uploader_name=await self._name(ws, user or ""),
            platform_file_id=file_id,
            link=file.get("permalink"),
            declared_size=int(file.get("size") or 0),
            download=download,
        )
        result = await self._service.knowledge.add(key, upload)
        if result.notice is not None:  # None: an earlier delivery of this file was answered
            await ws.client.chat_postMessage(channel=channel_id, thread_ts=thread_ts, text=result.notice)

    def _shared_image(self, ws: Workspace, file: dict[str, Any]) -> SharedImage:
        """A picture in a message to the bot, for the core: downloaded only if the model is shown it."""
        name = str(file.get("name") or file.get("title") or "image")
        url = str(file.get("url_private_download") or file.get("url_private") or "")
        return SharedImage(
            name, file.get("mimetype"), int(file.get("size") or 0), download=self._downloader(ws, url, name)
        )

    def _downloader(self, ws: Workspace, url: str, name: str) -> Callable[[int], Awaitable[bytes]]:
        async def download(limit: int) -> bytes:
            try:
                return await self._download(ws, url, limit)
            except (aiohttp.ClientError, TimeoutError) as exc:
                _log.warning("downloading %s from Slack failed: %s", name, exc)
                raise DownloadFailed(
                    f"I could not download {name} from Slack, so it was not added. Try sharing it again."
                ) from exc

        return download

    async def _download(self, ws: Workspace, url: str, limit: int) -> bytes:
        headers = {"Authorization": f"Bearer {ws.token}"}
        timeout = aiohttp.ClientTimeout(total=300)
        async with self._http.get(url, headers=headers, timeout=timeout) as response:
            response.raise_for_status()
            data = await response.content.read(limit + 1)
        return data

    # -- slash commands -------------------------------------------------------------------------

    async def on_command(self, ack: Any, command: dict[str, Any], respond: Any) -> None:
        invocation = _invocation(command)
        first = invocation is None or await self._service.first_delivery(invocation, COMMAND_REPLAY_SECONDS)
        await ack()
        if not first:  # Slack sent this invocation again: it ran, and its answer went to the same response_url
            _log.info("%s from %s: Slack sent it again, not run twice", command.get("command"), command.get("user_id"))
            return
        name = command["command"].lstrip("/").removeprefix(self._settings.command_prefix)
        team_id = command.get("team_id", "")
        key = channel_key(team_id, command["channel_id"])
        user = command.get("user_id", "")
        person = Author(id=user, name=command.get("user_name", ""), key=f"slack:{user}")
        reply = await handle_command(self._service, key, f"/{name} {command.get('text') or ''}".strip(), person)
        text = reply.text
        if reply.file is not None and (ws := await self._workspace(team_id)) is not None:
            text = await self._send_privately(ws, command.get("user_id", ""), reply.file, text)
        await respond(text=text, response_type="ephemeral")

    async def _send_privately(self, ws: Workspace, user: str, file: tuple[str, bytes], text: str) -> str:
        """Upload a command's file into the person's direct messages with the bot; returns what to tell them."""
        name, data = file
        try:
            opened = await ws.client.conversations_open(users=user)
            dm = str((opened.get("channel") or {}).get("id") or "")
            await ws.client.files_upload_v2(channel=dm, content=data, filename=name, title=name)
        except SlackApiError as exc:
            _log.warning("sending %s to %s failed: %s", name, user, exc)
            return f"I could not send you {name} as a direct message ({exc.response.get('error')}). Try again later."
        return f"{text}\nI sent it to you in a direct message."

    # -- approvals -------------------------------------------------------------------------------

    async def on_approval(self, ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        await ack()
        user = body["user"]["id"]
        channel_id = body["channel"]["id"]
        message = body.get("message") or {}
        team_id = str((body.get("team") or {}).get("id") or body.get("team_id") or "")
        if (ws := await self._workspace(team_id)) is None:
            return
        if not await self._is_member(ws, channel_id, user):
            await respond(
                text=f"Only members of <#{channel_id}> can approve or deny this.",
                response_type="ephemeral",
                replace_original=False,
            )
            return
        approval_id = action["value"]
        approve = action["action_id"] == APPROVE_ACTION
        approval = await self._service.approval(approval_id)
        try:
            handle = await self._service.decide(
                approval_id, approve=approve, decided_by=f"<@{user}>", person=Author(id=user, key=f"slack:{user}")
            )
        except ApprovalError as exc:
            await respond(text=str(exc), response_type="ephemeral", replace_original=False)
            return
        outcome = "approved" if approve else "denied"
        tool = approval.tool_name if approval else "the tool"
        await ws.client.chat_update(
            channel=channel_id,
            ts=message.get("ts", ""),
            text=f"{tool} {outcome} by <@{user}>",
            blocks=decided_blocks(tool, approval.arguments if approval else None, outcome, f"<@{user}>"),
        )
        if handle.run_id not in self._rendering:  # after a restart nobody is showing this run: show it here
            await self._render(ws, handle, channel_id, message.get("thread_ts") or message.get("ts", ""), user)

    async def _is_member(self, ws: Workspace, channel_id: str, user: str) -> bool:
        cursor = None
        try:
            while True:
                response = await ws.client.conversations_members(channel=channel_id, cursor=cursor, limit=1000)
                if user in (response.get("members") or []):
                    return True
                cursor = (response.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    return False
        except SlackApiError as exc:
            _log.warning("conversations.members %s failed: %s", channel_id, exc)
            return False

    # -- runs taken over from a process that stopped ---------------------------------------------

    async def show_adopted(self, handle: RunHandle, ts: str | None) -> None:
        """Show a run this process took over (``service.adopt_with``) as a live mention is shown: in the thread
        of its question, whose message ``ts`` it is, with the same status or reaction."""
        _, team_id, channel_id = parse_channel_key(scope_of(handle.channel))
        if (ws := await self._workspace(team_id)) is None:
            return
        if ts is None:  # not asked in a Slack message: no thread to answer in, so its end as a message of its own
            last = await handle.result()
            if isinstance(last, RunCompleted | RunFailed):
                await self.notify(handle.channel, last.text if isinstance(last, RunCompleted) else last.message)
            return
        earlier = await self._service.earlier_reply(handle.run_id)
        if earlier is not None:  # the stopped process had begun the answer there: close it, and say why
            await self._close_cut_off(ws, channel_id, earlier)
        thread_ts = sub_of(handle.channel) or ts
        working = self._statuses.at(ws.client, channel_id, thread_ts, ts, in_thread=thread_ts != ts)
        await working.start()
        try:
            await self._render(ws, handle, channel_id, thread_ts, "", working)
        finally:
            await working.end()

    async def show_cut_off(self, cut: CutOff) -> None:
        """Tell of a run a restart closed after it had started a tool (``service.adopt_with``), in its question's
        thread: in place of the answer the stopped process had begun there, or as a reply of its own."""
        _, team_id, channel_id = parse_channel_key(scope_of(cut.channel))
        ws = await self._workspaces.get(team_id)  # NotInstalled: the core keeps the notice and tries again
        text = f":warning: {cut.text}"
        thread_ts = sub_of(cut.channel) or cut.question
        if thread_ts is not None and cut.question is not None:  # the stopped process's "is thinking…" or :eyes:
            await self._statuses.at(
                ws.client, channel_id, thread_ts, cut.question, in_thread=thread_ts != cut.question
            ).clear()
        if cut.earlier is not None and await self._close_cut_off(ws, channel_id, cut.earlier, text):
            return
        await ws.client.chat_postMessage(channel=channel_id, text=text, thread_ts=thread_ts)  # (None: the channel)

    async def _close_cut_off(self, ws: Workspace, channel_id: str, ts: str, text: str = CUT_OFF_NOTE) -> bool:
        """A half-written answer a stopped process left: its stream ended, its text replaced by ``text``
        (False when it could not be: deleted since)."""
        with contextlib.suppress(SlackApiError):  # it may never have been a stream, or was stopped already
            await ws.client.chat_stopStream(channel=channel_id, ts=ts)
        try:
            await ws.client.chat_update(channel=channel_id, ts=ts, text=text)
        except SlackApiError as exc:
            _log.warning("could not replace a cut-off answer in %s: %s", channel_id, exc)
            return False
        return True

    # -- messages from the core ------------------------------------------------------------------

    async def notify(self, key: str, text: str) -> None:
        """Post a message from the core (restart notices, expired approvals) to a channel, or into the Slack
        thread a conversation inside the channel names (core/models.py ``sub_of``)."""
        _, team_id, channel_id = parse_channel_key(scope_of(key))
        ws = await self._workspaces.get(team_id)  # NotInstalled: the core keeps the notice and tries again
        thread_ts = sub_of(key)
        if thread_ts is None:
            await ws.client.chat_postMessage(channel=channel_id, text=text)
        else:
            await ws.client.chat_postMessage(channel=channel_id, text=text, thread_ts=thread_ts)


def _pictures(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The pictures among a message's files (core/images.py), which go to the model rather than the files."""
    return [
        file
        for file in event.get("files") or []
        if isinstance(file, dict)
        and (file.get("url_private_download") or file.get("url_private"))
        and file.get("mode") not in {"tombstone", "external"}
        and is_picture(str(file.get("name") or file.get("title") or ""), file.get("mimetype"))
    ]


def _retry_reason(request: AsyncBoltRequest) -> str | None:
    """Why Slack redelivered this event (X-Slack-Retry-Reason), or None for a first delivery."""
    if not request.headers.get("x-slack-retry-num"):
        return None
    return (request.headers.get("x-slack-retry-reason") or [""])[0]


def _invocation(command: dict[str, Any]) -> tuple[str, ...] | None:
    """What identifies one invocation of a slash command: Slack makes a ``trigger_id`` and a ``response_url``
    for each, and sends both again with it. None when it sent neither (then nothing tells a repeat apart)."""
    trigger, response_url = str(command.get("trigger_id") or ""), str(command.get("response_url") or "")
    team = str(command.get("team_id") or "")
    return ("slack command", team, trigger, response_url) if trigger or response_url else None


def _team(body: dict[str, Any], event: dict[str, Any]) -> str:
    return str(body.get("team_id") or event.get("team") or (body.get("team") or {}).get("id") or "")


def register_listeners(app: AsyncApp, adapter: SlackAdapter, settings: SlackSettings) -> None:
    app.event("app_mention")(adapter.on_mention)
    app.event("message")(adapter.on_message)
    app.event("file_shared")(adapter.on_file_shared)
    app.event("file_deleted")(adapter.on_file_deleted)
    for name in COMMANDS:
        app.command(settings.command(name))(adapter.on_command)
    app.action(APPROVE_ACTION)(adapter.on_approval)
    app.action(DENY_ACTION)(adapter.on_approval)
    if not settings.many_workspaces:  # (installed into many, Bolt's token revocation listeners take these)
        app.event("app_uninstalled")(_uninstalled)
        app.event("tokens_revoked")(_uninstalled)


async def _uninstalled(body: dict[str, Any]) -> None:
    _log.error(
        "Slack says the app was uninstalled from workspace %s or its tokens were revoked: SLACK_BOT_TOKEN no longer "
        "works there. Install the app again and copy its new Bot User OAuth Token.",
        body.get("team_id") or "?",
    )


def _error_code(exc: SlackApiError) -> str:
    """Slack's error code (``ratelimited``, ``channel_not_found``...): a bounded label for the metrics."""
    return str(exc.response.get("error") or "unknown")[:40]
