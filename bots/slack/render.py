"""Rendering one run into a Slack thread: the streamed answer, approval buttons, sources, failures.

The answer streams with Slack's native streaming (chat.startStream / appendStream / stopStream):
the first words are sent as soon as they exist, later ones at most every ``interval`` seconds,
which keeps appendStream inside its rate tier. Tool calls show as task updates in the stream
(bots/slack/tasks.py), and the thread's status says what the model is doing (bots/slack/status.py).
A completed answer ends with feedback buttons (thumbs up or down, stored with the run). Where
streaming is refused, the answer is posted with chat.postMessage and kept up to date with throttled
chat.update instead, as Slack mrkdwn, and the feedback buttons follow in a message of their own.
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
from slack_sdk.models.messages.chunk import Chunk, MarkdownTextChunk
from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient

from bots.formatting import LinkStyle, format_sources, pretty_arguments
from bots.live import LiveText
from bots.slack.status import Working
from bots.slack.tasks import CardEnd, TaskUpdates, ended_card, task_chunk
from core.events import ApprovalRequired, ApprovalResolved, Event, ToolCallFinished, ToolCallStarted
from core.handles import RunHandle
from core.metrics import Metrics
from core.notices import ANSWER_NOT_SHOWN, APPROVAL_NOT_SHOWN

__all__ = [
    "APPROVE_ACTION",
    "DENY_ACTION",
    "FEEDBACK_ACTION",
    "FEEDBACK_PROMPT",
    "SlackReply",
    "approval_blocks",
    "decided_blocks",
    "feedback_blocks",
    "to_mrkdwn",
]

# Told the ts of a message a run's answer is written into.
Posted = Callable[[str], Awaitable[None]]

_log = logging.getLogger(__name__)

APPROVE_ACTION = "threadline_approve"
DENY_ACTION = "threadline_deny"
FEEDBACK_ACTION = "threadline_feedback"
FEEDBACK_PROMPT = "Was this answer helpful?"  # the text of the feedback buttons' own message (no streaming)
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


def feedback_blocks(run_id: str) -> list[dict[str, Any]]:
    """Thumbs up and down under an answer (Block Kit's feedback buttons); each button's value is the vote and
    the run (``up:RUN_ID``), which bots/slack/feedback.py records."""

    def button(emoji: str, label: str, vote: str) -> dict[str, Any]:
        return {
            "text": {"type": "plain_text", "text": emoji},
            "accessibility_label": label,
            "value": f"{vote}:{run_id}",
        }

    return [
        {
            "type": "context_actions",
            "block_id": f"feedback:{run_id}",
            "elements": [
                {
                    "type": "feedback_buttons",
                    "action_id": FEEDBACK_ACTION,
                    "positive_button": button("👍", "This answer helped", "up"),
                    "negative_button": button("👎", "This answer did not help", "down"),
                }
            ],
        }
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
        working: Working | None = None,
        tasks: TaskUpdates | None = None,
        feedback: bool = True,
        stop: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """``posted``: told the ts of each message the answer is written into (the core keeps it with the run);
        ``metrics``: counts Slack calls that failed; ``working``: the thread's status, told what the run does;
        ``tasks``: whether Slack takes task updates (shared by a process's replies); ``feedback``: buttons
        under a completed answer; ``stop``: ends the run, when the buttons of an approval it waits for cannot be
        shown (nobody could decide it)."""
        self._client = client
        self._end_run = stop
        self._ended_for_approval = False
        self._posted = posted
        self._metrics = metrics or Metrics()
        self._channel = channel_id
        self._thread_ts = thread_ts
        self._team_id = team_id
        self._user_id = user_id
        self._interval = stream_interval
        self._working = working
        self._tasks = tasks or TaskUpdates()
        self._feedback = feedback
        self._feedback_refused = False  # Slack refused the buttons at the end of the stream
        self._announced: str | None = None  # the streamed message whose ts ``posted`` was told last
        self._cards: dict[str, ToolCallStarted] = {}  # tool cards in progress in the streamed message, by call
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
            case "run_started" | "tool_call_delta":
                return
            case "tool_call_started":
                if self._working is not None:
                    await self._working.tool(event.tool)
                await self._show_task(event)
            case "tool_call_finished":
                await self._show_task(event)
            case "text_delta":
                self._pending += event.text
                self._wake.set()  # the flusher sends it while the status is cleared
                if self._working is not None:
                    await self._working.quiet()
            case "approval_required":
                await self._finish_text(cards="approval")  # its tool's card waits for the decision
                await self._post_approval(event)
                if self._working is not None:
                    await self._working.quiet()  # waiting for people, not working
            case "approval_resolved":
                await self._resolve_approval(event)
                if self._working is not None and event.outcome != "expired":
                    await self._working.thinking()
            case "file_output":
                await self._finish_text()  # the file follows the words that introduce it
                await self._client.files_upload_v2(
                    channel=self._channel, thread_ts=self._thread_ts, content=event.data, filename=event.name
                )
            case "run_completed":
                if event.sources:
                    style: LinkStyle = "mrkdwn" if self._streaming_refused else "markdown"
                    self._pending += "\n\n" + format_sources(event.sources, style)
                async with self._sending:  # words on their way to Slack count as shown once they arrive
                    if not self._sent and not self._pending.strip():
                        self._pending = event.text or "(no answer)"
                blocks = feedback_blocks(event.run_id) if self._feedback else None
                if not await self._finish_text(blocks) and blocks is not None:
                    await self._offer_feedback(blocks)
            case "run_failed":
                await self._finish_text()
                if self._ended_for_approval and event.status == "cancelled":
                    return
                icon = ":arrows_counterclockwise:" if event.handed_over else ":warning:"  # the answer follows
                try:
                    await self._post(f"{icon} {event.message}")
                except FAILED as exc:
                    self._not_shown = exc

    async def _finish_text(self, blocks: list[dict[str, Any]] | None = None, cards: CardEnd = "error") -> bool:
        """Show the rest of the current part of the answer now and close it, with ``blocks`` at its bottom when it
        streams (True: they are there), and its tool cards still in progress ended as ``cards``. If Slack refuses,
        what it refused is given up (the run goes on) and the thread is told at the end of the run."""
        try:
            return await self._finish_message(blocks, cards)
        except FAILED as exc:
            self._not_shown = exc
            self._stream, self._pending, self._sent = None, "", ""
            return False

    async def _offer_feedback(self, blocks: list[dict[str, Any]]) -> None:
        """The feedback buttons in a message of their own, where they could not end the streamed answer (it was
        posted and updated, or its last part was a file); not under an answer Slack refused to show."""
        if self._not_shown is not None or self._feedback_refused:
            return
        try:
            await self._post(FEEDBACK_PROMPT, blocks)
        except FAILED as exc:
            _log.info("could not offer feedback buttons in %s (%s)", self._channel, _detail(exc))
            self._metrics.platform_error("slack", _kind(exc))

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
            await self._stop_stream(cards="continued")
        if self._stream is None:
            self._stream = await self._open_stream()
        await self._stream.append(markdown_text=text)
        self._sent += text
        await self._announce()

    async def _open_stream(self) -> AsyncChatStream:
        """A stream for the next message of the answer; it starts (chat.startStream) with its first append."""
        return await self._client.chat_stream(
            buffer_size=1,  # every append is sent at once: this class decides when
            channel=self._channel,
            thread_ts=self._thread_ts,
            recipient_team_id=self._team_id,
            recipient_user_id=self._user_id,
        )

    async def _announce(self) -> None:
        """Tell ``posted`` the ts of the streamed message once it exists (started by the first append)."""
        ts = self._stream.ts if self._stream is not None else None
        if ts and ts != self._announced:
            self._announced = ts
            if self._posted is not None:
                await self._posted(ts)

    async def _show_task(self, event: ToolCallStarted | ToolCallFinished) -> None:
        """A tool call as a task update in the stream, after the words before it; nothing where Slack does not
        take task updates, or streams nothing here."""
        if self._streaming_refused or self._tasks.refused is not None or self._not_shown is not None:
            return
        async with self._sending:
            text, self._pending = self._pending, ""
            try:
                if self._stream is not None and len(self._sent) + len(text) > STREAM_LIMIT:
                    await self._stop_stream(cards="continued")
                if self._stream is None:
                    self._stream = await self._open_stream()
                await self._stream.append(chunks=[*([MarkdownTextChunk(text=text)] if text else []), task_chunk(event)])
            except FAILED as exc:
                self._pending = text + self._pending  # the words go with the next text instead
                if isinstance(exc, SlackApiError) and _kind(exc) != "ratelimited" and exc.response.status_code < 500:
                    self._tasks.refuse(_kind(exc))  # this workspace takes no task updates: plain text from now on
                _log.info("a task update in %s was not shown: %s", self._channel, _detail(exc))
                return
            self._sent += text
            self._last_send = time.monotonic()
            if event.type == "tool_call_started":
                self._cards[event.call_id or event.tool] = event
            else:
                self._cards.pop(event.call_id or event.tool, None)
            await self._announce()

    def _closing_cards(self, end: CardEnd) -> list[Chunk] | None:
        """The final state of the tool cards of the message being closed that are still in progress."""
        cards, self._cards = self._cards, {}
        return [ended_card(event, end) for event in cards.values()] or None

    async def _stop(
        self, stream: AsyncChatStream, text: str, blocks: list[dict[str, Any]] | None, cards: CardEnd = "error"
    ) -> bool:
        """chat.stopStream with the last words, the cards still in progress ended as ``cards``, and ``blocks`` at
        the bottom (True: they are there). Slack refusing the blocks does not cost the answer its end: it is
        stopped again without them."""
        chunks = self._closing_cards(cards)
        try:
            await stream.stop(markdown_text=text or None, blocks=blocks, chunks=chunks)
        except SlackApiError as exc:
            if blocks is None or _kind(exc) == "ratelimited":
                raise
            _log.info(
                "Slack refused the feedback buttons in %s (%s); the answer ends without them",
                self._channel,
                _detail(exc),
            )
            self._feedback_refused = True
            await stream.stop(chunks=chunks)  # the last words are still in the stream's buffer
            return False
        return blocks is not None

    async def _stop_stream(self, blocks: list[dict[str, Any]] | None = None, cards: CardEnd = "error") -> bool:
        stream, self._stream = self._stream, None
        self._sent = ""
        if stream is None or stream.ts is None:  # never started (a task update Slack refused): nothing to end
            self._cards = {}
            return False
        return await self._stop(stream, "", blocks, cards)

    async def _finish_message(self, blocks: list[dict[str, Any]] | None = None, cards: CardEnd = "error") -> bool:
        """Send everything pending and close the current message, with ``blocks`` at the bottom of a streamed one
        (True: they are there) and its cards still in progress ended as ``cards``."""
        async with self._sending:
            stream = self._stream
            if stream is not None and self._pending and len(self._sent) + len(self._pending) <= STREAM_LIMIT:
                # The last words go with chatStopStream: one call, not two.
                text, self._pending = self._pending, ""
                self._stream, self._sent = None, ""
                return await self._stop(stream, text, blocks, cards)
        await self._send_pending()
        attached = False
        if self._stream is not None:
            attached = await self._stop_stream(blocks, cards)
        if self._live is not None:
            await self._live.finish()
        self._sent = ""
        return attached

    async def _post(self, text: str, blocks: list[dict[str, Any]] | None = None) -> str:
        response = await self._client.chat_postMessage(
            channel=self._channel, thread_ts=self._thread_ts, text=text, blocks=blocks
        )
        return str(response.get("ts") or "")

    # -- approvals ----------------------------------------------------------------------------

    async def _post_approval(self, event: ApprovalRequired) -> None:
        try:
            ts = await self._post(f"Approve {event.tool}?", approval_blocks(event))
        except FAILED as exc:
            # Nobody could press what is not there, and the run would hold its thread until the approval expired.
            _log.warning(
                "could not show the approval buttons for %s in %s (%s)", event.tool, self._channel, _detail(exc)
            )
            self._metrics.platform_error("slack", "approval_not_shown")
            if self._end_run is not None:
                self._ended_for_approval = True  # its "Cancelled." would say it twice
                await self._end_run()
            await self._post(f":warning: {APPROVAL_NOT_SHOWN.format(tool=event.tool)}")  # (refused: logged, below)
            return
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
