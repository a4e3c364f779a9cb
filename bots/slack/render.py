"""Rendering one run into a Slack thread: the streamed answer, approval buttons, sources, failures.

The answer streams with Slack's native streaming (chat.startStream / appendStream / stopStream):
the first words are sent as soon as they exist, later ones at most every ``interval`` seconds,
which keeps appendStream inside its rate tier. Where streaming is refused, the answer is posted
with chat.postMessage and kept up to date with throttled chat.update instead, as Slack mrkdwn.
When Slack refuses to show the answer even so, the thread is told in one short message of its own,
and the log has the details.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from markdown_to_mrkdwn import SlackMarkdownConverter
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient

from bots.formatting import LinkStyle, format_sources, pretty_arguments
from bots.live import LiveText
from core.events import ApprovalRequired, ApprovalResolved, Event
from core.handles import RunHandle
from core.metrics import Metrics
from core.notices import ANSWER_NOT_SHOWN

__all__ = [
    "APPROVE_ACTION",
    "DENY_ACTION",
    "SlackReply",
    "approval_blocks",
    "decided_blocks",
    "to_mrkdwn",
]

# Told the ts of a message a run's answer is written into.
Posted = Callable[[str], Awaitable[None]]

_log = logging.getLogger(__name__)

APPROVE_ACTION = "threadline_approve"
DENY_ACTION = "threadline_deny"
POST_LIMIT = 3900  # characters a posted message carries comfortably (Slack truncates text past 40,000)
STREAM_LIMIT = 11000  # a streamed message is closed and a new one started past this
STREAM_INTERVAL = 0.4  # seconds between appendStream calls (tier 4)
UPDATE_INTERVAL = 1.2  # seconds between chat.update calls (tier 3)
NOT_SHOWN_NOTE = f":warning: {ANSWER_NOT_SHOWN}"
# What a failed Slack call raises: an error answer (after the client's retries), a misuse, no connection.
FAILED = (SlackClientError, aiohttp.ClientError, TimeoutError)


def to_mrkdwn(markdown: str) -> str:
    return str(SlackMarkdownConverter().convert(markdown))


def approval_blocks(event: ApprovalRequired) -> list[dict[str, Any]]:
    return [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"The assistant wants to run *{event.tool}* with:\n```{pretty_arguments(event.arguments)}```",
            },
        },
        {
            "type": "actions",
            "block_id": f"approval:{event.approval_id}",
            "elements": [
                {
                    "type": "button",
                    "action_id": APPROVE_ACTION,
                    "text": {"type": "plain_text", "text": "Approve"},
                    "style": "primary",
                    "value": event.approval_id,
                },
                {
                    "type": "button",
                    "action_id": DENY_ACTION,
                    "text": {"type": "plain_text", "text": "Deny"},
                    "style": "danger",
                    "value": event.approval_id,
                },
            ],
        },
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"Only members of this channel can decide. Expires <!date^{int(event.expires_at)}"
                    f"^{{time}}|in a few minutes>.",
                }
            ],
        },
    ]


def decided_blocks(tool: str, arguments: str | None, outcome: str, decided_by: str | None) -> list[dict[str, Any]]:
    icon = {"approved": ":white_check_mark:", "denied": ":no_entry_sign:", "expired": ":hourglass:"}.get(outcome, "")
    who = f" by {decided_by}" if decided_by else ""
    text = f"{icon} *{tool}* {outcome}{who}."
    if arguments:
        text += f"\n```{pretty_arguments(arguments)}```"
    return [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]


@dataclass
class _PostedApproval:
    ts: str
    tool: str
    arguments: str


class _PostAndUpdate:
    """A message in the thread, posted with chat.postMessage and kept up to date with chat.update."""

    def __init__(self, client: AsyncWebClient, channel: str, thread_ts: str, posted: Posted | None = None) -> None:
        self._client = client
        self._channel = channel
        self._thread_ts = thread_ts
        self._posted = posted

    async def post(self, text: str) -> str:
        response = await self._client.chat_postMessage(channel=self._channel, thread_ts=self._thread_ts, text=text)
        ts = str(response.get("ts") or "")
        if self._posted is not None and ts:
            await self._posted(ts)
        return ts

    async def edit(self, message: str, text: str) -> None:
        await self._client.chat_update(channel=self._channel, ts=message, text=text)


class SlackReply:
    """Renders one run's events into a Slack thread."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        channel_id: str,
        thread_ts: str,
        team_id: str | None,
        user_id: str | None,
        stream_interval: float = STREAM_INTERVAL,
        posted: Posted | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """``posted``: told the ts of each message the answer is written into (the core keeps it with the run);
        ``metrics``: counts Slack calls that failed."""
        self._client = client
        self._posted = posted
        self._metrics = metrics or Metrics()
        self._channel = channel_id
        self._thread_ts = thread_ts
        self._team_id = team_id
        self._user_id = user_id
        self._interval = stream_interval
        self._pending = ""  # text not yet sent
        self._sent = ""  # text of the current message so far
        self._stream: AsyncChatStream | None = None
        self._streaming_refused = False
        self._live: LiveText[str] | None = None  # fallback mode: posted messages kept up to date
        self._last_send = 0.0
        self._wake = asyncio.Event()
        self._sending = asyncio.Lock()
        self._approvals: dict[str, _PostedApproval] = {}
        self._not_shown: Exception | None = None  # why some of the answer could not be shown

    async def render(self, handle: RunHandle) -> None:
        """Consume ``handle``'s events until the run ends, keeping Slack up to date."""
        flusher = asyncio.create_task(self._flush_loop(), name=f"slack flush {handle.run_id}")
        try:
            async for event in handle.events():
                try:
                    await self._show(event)
                except FAILED as exc:  # the run goes on; what could not be shown is in the log
                    _log.warning("Slack refused a call while showing run %s: %s", handle.run_id, exc)
                    self._metrics.platform_error("slack", _kind(exc))
            if self._not_shown is not None:
                await self._say_not_shown(handle, self._not_shown)
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            if self._live is not None:
                await self._live.close()

    async def _show(self, event: Event) -> None:
        match event.type:
            case "run_started" | "tool_call_delta" | "tool_call_started" | "tool_call_finished":
                return
            case "text_delta":
                self._pending += event.text
                self._wake.set()
            case "approval_required":
                await self._finish_text()
                await self._post_approval(event)
            case "approval_resolved":
                await self._resolve_approval(event)
            case "file_output":
                await self._finish_text()  # the file follows the words that introduce it
                await self._client.files_upload_v2(
                    channel=self._channel, thread_ts=self._thread_ts, content=event.data, filename=event.name
                )
            case "run_completed":
                if event.sources:
                    style: LinkStyle = "mrkdwn" if self._streaming_refused else "markdown"
                    self._pending += "\n\n" + format_sources(event.sources, style)
                if not self._sent and not self._pending.strip():
                    self._pending = event.text or "(no answer)"
                await self._finish_text()
            case "run_failed":
                await self._finish_text()
                icon = ":arrows_counterclockwise:" if event.handed_over else ":warning:"  # the answer follows
                try:
                    await self._post(f"{icon} {event.message}")
                except FAILED as exc:
                    self._not_shown = exc

    async def _finish_text(self) -> None:
        """Show the rest of the current part of the answer now and close it. If Slack refuses, what it refused is
        given up (the run goes on) and the thread is told at the end of the run."""
        try:
            await self._finish_message()
        except FAILED as exc:
            self._not_shown = exc
            self._stream, self._pending, self._sent = None, "", ""

    async def _say_not_shown(self, handle: RunHandle, error: Exception) -> None:
        """Some of the answer could not be shown: one short message says so (tried once), the log says why."""
        _log.warning(
            "could not show the answer of run %s in %s (%s); telling the thread",
            handle.run_id,
            handle.channel,
            _detail(error),
        )
        self._metrics.platform_error("slack", "answer_not_shown")
        try:
            await self._post(NOT_SHOWN_NOTE)
        except FAILED as exc:
            _log.warning("could not tell %s that its answer was not shown either (%s)", handle.channel, _detail(exc))
            self._metrics.platform_error("slack", _kind(exc))

    # -- text -------------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            wait = self._last_send + self._interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                await self._send_pending()
            except FAILED as exc:  # tried again with the next words, or at the end of the part
                _log.info("Slack refused streamed text in %s, will retry: %s", self._channel, exc)

    async def _send_pending(self) -> None:
        async with self._sending:  # the flusher and the end of the run never send at the same time
            await self._send_pending_locked()

    async def _send_pending_locked(self) -> None:
        text, self._pending = self._pending, ""
        if not text:
            return
        self._last_send = time.monotonic()
        if not self._streaming_refused:
            try:
                await self._stream_append(text)
                return
            except SlackApiError as exc:
                if exc.response.get("error") == "ratelimited":
                    raise
                _log.info("streaming refused in %s (%s); posting and updating instead", self._channel, exc)
                self._streaming_refused = True
                self._stream = None
        self._fallback().append(text)

    def _fallback(self) -> LiveText[str]:
        """Where streaming is refused: post the answer and keep it up to date with chat.update."""
        if self._live is None:
            sink = _PostAndUpdate(self._client, self._channel, self._thread_ts, self._posted)
            self._live = LiveText(
                sink, limit=POST_LIMIT, interval=UPDATE_INTERVAL, render=to_mrkdwn, name=self._channel
            )
        return self._live

    async def _stream_append(self, text: str) -> None:
        if self._stream is not None and len(self._sent) + len(text) > STREAM_LIMIT:
            await self._stop_stream()
        if self._stream is None:
            self._stream = await self._client.chat_stream(
                buffer_size=1,
                channel=self._channel,
                thread_ts=self._thread_ts,
                recipient_team_id=self._team_id,
                recipient_user_id=self._user_id,
            )
        first = not self._sent
        await self._stream.append(markdown_text=text)
        self._sent += text
        if first and self._posted is not None and self._stream.ts:  # buffer_size=1: started by this append
            await self._posted(self._stream.ts)

    async def _stop_stream(self) -> None:
        stream, self._stream = self._stream, None
        self._sent = ""
        if stream is not None:
            await stream.stop()

    async def _finish_message(self) -> None:
        """Send everything pending and close the current message."""
        async with self._sending:
            stream = self._stream
            if stream is not None and self._pending and len(self._sent) + len(self._pending) <= STREAM_LIMIT:
                # The last words go with chatStopStream: one call, not two.
                text, self._pending = self._pending, ""
                self._stream, self._sent = None, ""
                await stream.stop(markdown_text=text)
        await self._send_pending()
        if self._stream is not None:
            await self._stop_stream()
        if self._live is not None:
            await self._live.finish()
        self._sent = ""

    async def _post(self, text: str, blocks: list[dict[str, Any]] | None = None) -> str:
        response = await self._client.chat_postMessage(
            channel=self._channel, thread_ts=self._thread_ts, text=text, blocks=blocks
        )
        return str(response.get("ts") or "")

    # -- approvals ----------------------------------------------------------------------------

    async def _post_approval(self, event: ApprovalRequired) -> None:
        ts = await self._post(f"Approve {event.tool}?", approval_blocks(event))
        self._approvals[event.approval_id] = _PostedApproval(ts, event.tool, event.arguments)

    async def _resolve_approval(self, event: ApprovalResolved) -> None:
        posted = self._approvals.get(event.approval_id)
        if posted is None:
            return
        if event.outcome == "expired":  # people see it expire; decisions are shown by whoever pressed
            await self._client.chat_update(
                channel=self._channel,
                ts=posted.ts,
                text=f"{event.tool} expired",
                blocks=decided_blocks(event.tool, posted.arguments, "expired", None),
            )


def _kind(exc: Exception) -> str:
    """A bounded label for a failed Slack call: Slack's error code (``ratelimited``, ``msg_too_long``...),
    ``connection`` or ``client``."""
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or f"http_{exc.response.status_code // 100}xx")[:40]
    return "connection" if isinstance(exc, aiohttp.ClientError | TimeoutError) else "client"


def _detail(exc: Exception) -> str:
    """What Slack answered, for the log: its error code and HTTP status (never what was sent)."""
    if isinstance(exc, SlackApiError):
        return f"{exc.response.get('error') or 'no error code'}, HTTP {exc.response.status_code}"
    return f"{type(exc).__name__}: {exc}"
