"""Rendering one run into a Discord channel: typing, the live-edited answer, approvals, sources, failures."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
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

__all__ = ["MESSAGE_LIMIT", "DiscordReply", "Replies"]

_log = logging.getLogger(__name__)

MESSAGE_LIMIT = 2000
TYPING_EVERY = 8.0  # Discord shows "typing" for about 10 s after each trigger
TYPING_RETRY = 1.0  # after a trigger skipped for the request budget
NO_PINGS = discord.AllowedMentions.none()  # the model's text never pings anyone
# Discord allows a bot about 50 requests a second in all; in-between edits and typing share 30 of them.
EDITS_PER_SECOND = 30.0


class _ChannelSink:
    """Posts the first piece as a reply to the question, later pieces as plain messages."""

    def __init__(self, channel: discord.abc.Messageable, reply_to: discord.Message | None) -> None:
        self._channel = channel
        self._reply_to = reply_to

    async def post(self, text: str) -> discord.Message:
        reference = self._reply_to.to_reference(fail_if_not_exists=False) if self._reply_to else None
        self._reply_to = None
        return await self._channel.send(text, reference=reference, allowed_mentions=NO_PINGS)  # type: ignore[arg-type]

    async def edit(self, message: discord.Message, text: str) -> None:
        await message.edit(content=text, allowed_mentions=NO_PINGS)


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
    ) -> None:
        self._channel = channel
        self._budget = budget
        self._metrics = metrics or Metrics()
        self._live: LiveText[discord.Message] = LiveText(
            _ChannelSink(channel, reply_to),
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

    @property
    def waiting_for_decision(self) -> bool:
        return any(approval_id not in self._decided for approval_id in self._approvals)

    async def render(self, handle: RunHandle) -> None:
        try:
            async for event in handle.events():
                try:
                    await self._show(event)
                except (discord.HTTPException, aiohttp.ClientError) as exc:  # the run goes on; the log has it
                    _log.warning("Discord refused a call while showing run %s: %s", handle.run_id, exc)
                    self._metrics.platform_error("discord", _kind(exc))
        finally:
            self._stop_typing()
            await self._live.close()

    async def _show(self, event: Event) -> None:
        match event.type:
            case "run_started" | "tool_call_finished":
                if not self._live.visible:
                    self._start_typing()
            case "tool_call_started":
                self._start_typing()
            case "text_delta":
                self._stop_typing()
                self._live.append(event.text)
            case "file_output":
                await self._live.finish()  # the file follows the words that introduce it
                attachment = discord.File(io.BytesIO(event.data), filename=event.name)
                await self._channel.send(file=attachment, allowed_mentions=NO_PINGS)
            case "approval_required":
                self._stop_typing()
                await self._live.finish()
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
                await self._live.finish(tail)
            case "run_failed":
                self._stop_typing()
                with contextlib.suppress(discord.HTTPException, aiohttp.ClientError):
                    await self._live.finish()
                await self._channel.send(f"⚠️ {event.message}", allowed_mentions=NO_PINGS)

    async def _post_approval(self, event: ApprovalRequired) -> None:
        self._answered = True  # text before the question was shown; what follows is a new part
        content, view = approval_message(event)
        message = await self._channel.send(content, view=view, allowed_mentions=NO_PINGS)
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

    def __init__(self, interval: float, metrics: Metrics | None = None) -> None:
        self._interval = interval
        self._metrics = metrics or Metrics()  # counts Discord calls that failed or were retried
        self._budget = EditBudget(EDITS_PER_SECOND)
        self._showing: dict[str, tuple[asyncio.Task[Any], DiscordReply]] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    def showing(self, run_id: str) -> bool:
        return run_id in self._showing

    async def show(
        self, handle: RunHandle, channel: discord.abc.Messageable, reply_to: discord.Message | None = None
    ) -> None:
        reply = DiscordReply(
            channel,
            reply_to=reply_to,
            interval=self._interval,
            budget=self._budget,
            run_id=handle.run_id,
            metrics=self._metrics,
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
