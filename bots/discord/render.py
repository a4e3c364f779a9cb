"""Rendering one run into a Discord channel: typing, the live-edited answer, approvals, sources, failures.

The messages that show a run's answer are kept with the run (``service.showing``, as Slack does): a
process that takes the run over after a crash writes the new answer into them instead of below them.
When Discord refuses to show an answer even after discord.py's retries, the person is told so in one
short message of its own, and the log has the details.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import aiohttp
import discord

from bots.discord.approvals import approval_message, decided_message
from bots.formatting import format_sources
from bots.live import EditBudget, LiveText
from core.events import ApprovalRequired, Event
from core.handles import RunHandle
from core.metrics import Metrics
from core.notices import ANSWER_NOT_SHOWN, APPROVAL_NOT_SHOWN, CUT_OFF_ANSWER

__all__ = ["MESSAGE_LIMIT", "DiscordReply", "Replies", "message_ids", "reply_ref"]

_log = logging.getLogger(__name__)

MESSAGE_LIMIT = 2000
TYPING_EVERY = 8.0  # Discord shows "typing" for about 10 s after each trigger
TYPING_RETRY = 1.0  # after a trigger skipped for the request budget
NO_PINGS = discord.AllowedMentions.none()  # the model's text never pings anyone
# Discord allows a bot about 50 requests a second in all; in-between edits and typing share 30 of them.
EDITS_PER_SECOND = 30.0
CUT_OFF_NOTE = f"🔄 {CUT_OFF_ANSWER}"
NOT_SHOWN_NOTE = f"⚠️ {ANSWER_NOT_SHOWN}"
# What a failed Discord call raises: an error status (after discord.py's own retries), or no connection.
FAILED = (discord.HTTPException, aiohttp.ClientError)

# Told the ids of the messages showing a run's answer (``reply_ref``), each time one is added.
Posted = Callable[[str], Awaitable[None]]
# Keeps them with the run: ``service.showing(run_id, reply_ref)``.
Keep = Callable[[str, str], Awaitable[None]]


def reply_ref(message_ids: Sequence[int]) -> str:
    """The messages that show an answer, as the core keeps them with its run."""
    return " ".join(str(message_id) for message_id in message_ids)


def message_ids(ref: str | None) -> list[int]:
    """The message ids in a ``reply_ref`` (none for a missing or foreign one)."""
    return [int(part) for part in (ref or "").split() if part.isdigit()]


class _ChannelSink:
    """Posts the first piece as a reply to the question, later pieces as plain messages.

    ``earlier``: the messages in which a process that is gone had begun this answer. The pieces are
    written into them first, in order, and new messages follow only when they run out. If one cannot
    be edited (deleted, out of reach), it and the rest are closed with a note where they still stand,
    and the answer goes on in new messages below, the first a reply to the question. :meth:`settle`
    deletes the ones the answer did not need. ``posted``: told the messages showing the answer (and
    the earlier ones not yet written into) each time one is added.
    """

    def __init__(
        self,
        channel: discord.abc.Messageable,
        reply_to: discord.Message | None,
        *,
        earlier: Sequence[discord.PartialMessage] = (),
        posted: Posted | None = None,
    ) -> None:
        self._channel = channel
        self._reply_to = reply_to
        self._earlier = list(earlier)
        self._posted = posted
        self._ids: list[int] = []  # the messages showing the current part of the answer

    async def post(self, text: str) -> discord.Message:
        if self._earlier:
            message = await self._write_into_earlier(text)
            if message is not None:
                return message
        reference = self._reply_to.to_reference(fail_if_not_exists=False) if self._reply_to else None
        self._reply_to = None
        message = await self._channel.send(text, reference=reference, allowed_mentions=NO_PINGS)  # type: ignore[arg-type]
        await self._shows(message.id)
        return message

    async def edit(self, message: discord.Message, text: str) -> None:
        await message.edit(content=text, allowed_mentions=NO_PINGS)

    async def settle(self) -> None:
        """The current part of the answer is complete: earlier messages it did not need are deleted."""
        left, self._earlier = self._earlier, []
        self._ids = []
        for message in left:
            try:
                await message.delete()
            except FAILED as exc:
                _log.info("could not delete message %s, left over from a stopped process: %s", message.id, exc)

    async def _write_into_earlier(self, text: str) -> discord.Message | None:
        """The next piece, in the next earlier message; None when that one could not be edited."""
        try:
            message = await self._earlier[0].edit(content=text, allowed_mentions=NO_PINGS)
        except discord.HTTPException as exc:
            _log.info(
                "could not write into message %s a stopped process left (%s); answering below it",
                self._earlier[0].id,
                exc,
            )
            left, self._earlier = self._earlier, []
            for stale in left:
                if stale is not left[0] or not isinstance(exc, discord.NotFound):
                    await self._close_cut_off(stale)
            return None
        self._earlier.pop(0)
        self._reply_to = None  # it replies to the question already, if it was the first
        await self._shows(message.id)
        return message

    async def _close_cut_off(self, message: discord.PartialMessage) -> None:
        """A half-written answer a stopped process left and this one cannot write into: say where the answer is."""
        try:
            await message.edit(content=CUT_OFF_NOTE, allowed_mentions=NO_PINGS)
        except FAILED as exc:
            _log.warning("could not close message %s, cut off by a stopped process: %s", message.id, exc)

    async def _shows(self, message_id: int) -> None:
        self._ids.append(message_id)
        if self._posted is None:
            return
        try:
            await self._posted(reply_ref(self._ids + [m.id for m in self._earlier]))
        except Exception as exc:  # only a takeover after a crash would miss it: the answer goes on
            _log.warning("could not keep the messages of an answer with its run: %s", exc)


class DiscordReply:
    """Shows one run's events in a channel."""

    def __init__(
        self,
        channel: discord.abc.Messageable,
        *,
        reply_to: discord.Message | None,
        interval: float,
        budget: EditBudget | None = None,
        run_id: str = "",
        metrics: Metrics | None = None,
        earlier: Sequence[discord.PartialMessage] = (),
        posted: Posted | None = None,
        stop: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """``earlier``: the messages a stopped process had begun this run's answer in (written into, not below);
        ``posted``: told the messages that show the answer (``reply_ref``), for a takeover after a crash;
        ``stop``: ends the run, when the buttons of an approval it waits for cannot be shown."""
        self._channel = channel
        self._end_run = stop
        self._ended_for_approval = False
        self._budget = budget
        self._metrics = metrics or Metrics()
        self._sink = _ChannelSink(channel, reply_to, earlier=earlier, posted=posted)
        self._live: LiveText[discord.Message] = LiveText(
            self._sink,
            limit=MESSAGE_LIMIT,
            interval=interval,
            name=run_id,
            budget=budget,
            on_retry=partial(self._metrics.platform_retry, "discord", "edit"),
        )
        self._approvals: dict[str, tuple[discord.Message, str]] = {}
        self._decided: set[str] = set()
        self._typing: asyncio.Task[None] | None = None
        self._answered = False
        self._not_shown: Exception | None = None  # why some of the answer could not be shown

    @property
    def waiting_for_decision(self) -> bool:
        return any(approval_id not in self._decided for approval_id in self._approvals)

    async def render(self, handle: RunHandle) -> None:
        try:
            async for event in handle.events():
                try:
                    await self._show(event)
                except FAILED as exc:  # the run goes on; the log has it
                    _log.warning("Discord refused a call while showing run %s: %s", handle.run_id, exc)
                    self._metrics.platform_error("discord", _kind(exc))
            await self._sink.settle()
            if self._not_shown is not None:
                await self._say_not_shown(handle, self._not_shown)
        finally:
            self._stop_typing()
            await self._live.close()

    async def _show(self, event: Event) -> None:
        match event.type:
            case "run_started" | "tool_call_delta" | "tool_call_finished":
                if not self._live.visible:
                    self._start_typing()
            case "tool_call_started":
                self._start_typing()
            case "text_delta":
                self._stop_typing()
                self._live.append(event.text)
            case "file_output":
                await self._finish_text()  # the file follows the words that introduce it
                attachment = discord.File(io.BytesIO(event.data), filename=event.name)
                await self._channel.send(file=attachment, allowed_mentions=NO_PINGS)
            case "approval_required":
                self._stop_typing()
                await self._finish_text()
                await self._post_approval(event)
            case "approval_resolved":
                self._decided.add(event.approval_id)
                posted = self._approvals.get(event.approval_id)
                if posted is not None and event.outcome == "expired":  # decisions are shown by whoever pressed
                    message, arguments = posted
                    await message.edit(content=decided_message(event.tool, arguments, "expired", None), view=None)
            case "run_completed":
                self._stop_typing()
                tail = ""
                if event.sources:
                    tail = "\n\n" + format_sources(event.sources, "markdown")
                if not self._live.pending and not self._answered:
                    tail = (event.text or "(no answer)") + tail
                await self._finish_text(tail)
            case "run_failed":
                self._stop_typing()
                await self._finish_text()
                if self._ended_for_approval and event.status == "cancelled":
                    return  # its "Cancelled." would say it twice
                try:
                    await self._channel.send(f"⚠️ {event.message}", allowed_mentions=NO_PINGS)
                except FAILED as exc:
                    self._not_shown = exc

    async def _finish_text(self, tail: str = "") -> None:
        """Show the rest of the current part of the answer now and close it. If Discord refuses, what it refused
        is given up (the run goes on) and the person is told at the end of the run."""
        try:
            await self._live.finish(tail)
        except FAILED as exc:
            self._not_shown = exc
        await self._sink.settle()

    async def _say_not_shown(self, handle: RunHandle, error: Exception) -> None:
        """Some of the answer could not be shown: one short message says so (tried once), the log says why."""
        _log.warning(
            "could not show the answer of run %s in %s (%s); telling the channel",
            handle.run_id,
            handle.channel,
            _detail(error),
        )
        self._metrics.platform_error("discord", "answer_not_shown")
        try:
            await self._channel.send(NOT_SHOWN_NOTE, allowed_mentions=NO_PINGS)
        except FAILED as exc:
            _log.warning("could not tell %s that its answer was not shown either (%s)", handle.channel, _detail(exc))
            self._metrics.platform_error("discord", _kind(exc))

    async def _post_approval(self, event: ApprovalRequired) -> None:
        self._answered = True  # text before the question was shown; what follows is a new part
        content, view = approval_message(event)
        try:
            message = await self._channel.send(content, view=view, allowed_mentions=NO_PINGS)
        except FAILED as exc:
            # Nobody could press what is not there, and the run would hold its channel until the approval expired.
            _log.warning("could not show the approval buttons for %s (%s)", event.tool, _detail(exc))
            self._metrics.platform_error("discord", "approval_not_shown")
            if self._end_run is not None:
                self._ended_for_approval = True
                await self._end_run()
            await self._channel.send(f"⚠️ {APPROVAL_NOT_SHOWN.format(tool=event.tool)}", allowed_mentions=NO_PINGS)
            return
        self._approvals[event.approval_id] = (message, event.arguments)

    # -- typing -------------------------------------------------------------------------------

    def _start_typing(self) -> None:
        if self._typing is None or self._typing.done():
            self._typing = asyncio.create_task(self._keep_typing(), name="discord typing")

    def _stop_typing(self) -> None:
        if self._typing is not None:
            self._typing.cancel()
            self._typing = None

    async def _keep_typing(self) -> None:
        """Show "typing" while the answer is prepared. Cosmetic, so it draws on the process's request
        budget without waiting: when many answers start at once it is skipped (retried a second later)
        rather than pushing the bot past Discord's global rate limit."""
        while True:
            if self._budget is not None and self._budget.reserve(max_wait=0.0) is None:
                await asyncio.sleep(TYPING_RETRY)
                continue
            try:
                await self._channel.typing()
            except discord.HTTPException as exc:  # cosmetic
                _log.debug("typing indicator failed: %s", exc)
                return
            await asyncio.sleep(TYPING_EVERY)


class Replies:
    """Which runs this process is showing, and how a run is shown."""

    def __init__(
        self,
        interval: float,
        metrics: Metrics | None = None,
        keep: Keep | None = None,
        stop: Callable[[str], Awaitable[object]] | None = None,
    ) -> None:
        """``keep``: keeps the messages that show a run's answer with the run (``service.showing``); ``stop``: ends
        a run by its id (``service.cancel_run``), when an approval it waits for cannot be shown."""
        self._interval = interval
        self._stop = stop
        self._metrics = metrics or Metrics()  # counts Discord calls that failed or were retried
        self._keep = keep
        self._budget = EditBudget(EDITS_PER_SECOND)
        self._showing: dict[str, tuple[asyncio.Task[Any], DiscordReply]] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    def showing(self, run_id: str) -> bool:
        return run_id in self._showing

    async def show(
        self,
        handle: RunHandle,
        channel: discord.abc.Messageable,
        reply_to: discord.Message | None = None,
        earlier: Sequence[discord.PartialMessage] = (),
    ) -> None:
        """Show a run in ``channel``, replying to ``reply_to``; ``earlier``: messages a stopped process had begun
        its answer in, written into before any new one is posted."""
        reply = DiscordReply(
            channel,
            reply_to=reply_to,
            interval=self._interval,
            budget=self._budget,
            run_id=handle.run_id,
            metrics=self._metrics,
            earlier=earlier,
            posted=partial(self._keep, handle.run_id) if self._keep is not None else None,
            stop=partial(self._stop, handle.run_id) if self._stop is not None else None,
        )
        task = asyncio.current_task()
        assert task is not None
        self._showing[handle.run_id] = (task, reply)
        self._idle.clear()
        try:
            await reply.render(handle)
        finally:
            self._showing.pop(handle.run_id, None)
            if not self._showing:
                self._idle.set()

    async def wait_idle(self) -> None:
        """Until no run is being shown here."""
        await self._idle.wait()

    async def drain(self, grace: float) -> None:
        """At shutdown: let runs show their last words (at most ``grace`` seconds), stop watching the rest.

        Runs waiting for a decision are left at once: their buttons work again after the restart.
        """
        for task, reply in list(self._showing.values()):
            if reply.waiting_for_decision:
                task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._idle.wait()
        for task, _ in list(self._showing.values()):
            task.cancel()


def _kind(exc: Exception) -> str:
    """A bounded label for a failed Discord call: ``ratelimited``, ``http_4xx``, ``http_5xx`` or ``connection``."""
    if isinstance(exc, discord.HTTPException):
        return "ratelimited" if exc.status == 429 else f"http_{exc.status // 100}xx"
    return "connection"


def _detail(exc: Exception) -> str:
    """What Discord answered, for the log: its status, error code and message (never what was sent)."""
    if isinstance(exc, discord.HTTPException):
        return f"HTTP {exc.status}, Discord error {exc.code}: {exc.text or 'no message'}"
    return f"{type(exc).__name__}: {exc}"
