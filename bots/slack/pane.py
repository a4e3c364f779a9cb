"""Slack's assistant pane (the AI app surface), on slack-bolt's ``AsyncAssistant`` middleware.

Someone opens a new chat with the bot in the pane: Slack sends ``assistant_thread_started`` and the
bot offers the suggested prompts of the assistant the person's direct message uses (the assistants
file's ``suggested_prompts``, core/suggested_prompts.py). Each chat is a thread of that direct message,
so its messages are replies with ``thread_ts``: they go the way of every message in a DM's thread
(bots/slack/adapter.py), a conversation of its own, ``conversation_key(dm, thread_ts)``. The chat's
first question becomes its title (``assistant.threads.setTitle``), set while the answer is already on
its way. The thread's status while the model works is bots/slack/status.py's, as in any thread.

Events are handled once: the middleware takes every person's message in a thread of a direct message
(and what only edits such a thread, which it acknowledges), and passes nothing of it on to the app's
``message`` listener; the bot's own messages and the rest go on to the other listeners as before.
``assistant_thread_context_changed`` (the person moved to another channel with the pane open) is
acknowledged and logged: the chat's files and assistant are the direct message's, whatever is on screen.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.set_suggested_prompts.async_set_suggested_prompts import AsyncSetSuggestedPrompts
from slack_bolt.context.set_title.async_set_title import AsyncSetTitle
from slack_bolt.middleware.assistant.async_assistant import AsyncAssistant
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.adapter import SlackAdapter, channel_key
from bots.slack.feedback import FeedbackButtons
from bots.slack.render import FEEDBACK_ACTION
from bots.slack.threads import strip_mentions
from core.commands import is_command
from core.models import conversation_key
from core.service import Threadline

__all__ = ["AssistantPane", "register_pane", "thread_title"]

_log = logging.getLogger(__name__)

TITLE_LIMIT = 60  # characters of a chat's title in the pane's history


def thread_title(question: str) -> str:
    """A chat's title from its first question: the words, mentions left out, cut at a word past the limit."""
    words = " ".join(strip_mentions(question).split())
    if len(words) <= TITLE_LIMIT:
        return words
    cut = words[: TITLE_LIMIT - 1].rsplit(" ", 1)[0] or words[: TITLE_LIMIT - 1]
    return cut.rstrip(" ,.;:-") + "…"


class AssistantPane:
    """The pane's listeners: a new chat, a person's message in one, and the channel they look at."""

    def __init__(self, service: Threadline, adapter: SlackAdapter) -> None:
        self._service = service
        self._adapter = adapter

    async def thread_started(
        self,
        event: dict[str, Any],
        body: dict[str, Any],
        client: AsyncWebClient,
        set_suggested_prompts: AsyncSetSuggestedPrompts,
    ) -> None:
        thread = event.get("assistant_thread") or {}
        channel_id, thread_ts = str(thread.get("channel_id") or ""), str(thread.get("thread_ts") or "")
        if not channel_id or not thread_ts:
            return
        key = channel_key(_team(body, event), channel_id)
        refusal = self._service.policy.refusal(key)
        try:
            if refusal is not None:  # said at once, not after the first question
                _log.info("assistant thread in %s not served (policy)", key)
                await client.chat_postMessage(channel=channel_id, thread_ts=thread_ts, text=refusal)
                return
            prompts = (await self._service.channel_assistant(key)).suggested_prompts
            if prompts:
                await set_suggested_prompts(prompts=[{"title": p.title, "message": p.message} for p in prompts])
        except SlackApiError as exc:  # the chat works without them
            _log.warning("could not offer suggested prompts in %s: %s", key, exc.response.get("error"))
            self._service.metrics.platform_error("slack", str(exc.response.get("error") or "unknown")[:40])

    async def context_changed(self, event: dict[str, Any]) -> None:
        thread = event.get("assistant_thread") or {}
        viewing = (thread.get("context") or {}).get("channel_id")
        _log.debug("assistant thread %s: the person now looks at %s", thread.get("thread_ts"), viewing)

    async def user_message(
        self, event: dict[str, Any], body: dict[str, Any], request: AsyncBoltRequest, set_title: AsyncSetTitle
    ) -> None:
        """A person's message in a chat: answered as any DM thread's, and the chat's first one names it."""
        title = await self._title_for(event, body)
        async with asyncio.TaskGroup() as tasks:
            if title:
                tasks.create_task(self._set_title(set_title, title, event))
            await self._adapter.on_message(event, body, request)

    async def _title_for(self, event: dict[str, Any], body: dict[str, Any]) -> str | None:
        """The chat's title when ``event`` is its first question (its conversation is not known yet)."""
        question, thread_ts = strip_mentions(str(event.get("text") or "")), str(event.get("thread_ts") or "")
        if event.get("subtype") not in (None, "file_share") or not question or is_command(question):
            return None
        key = conversation_key(channel_key(_team(body, event), str(event["channel"])), thread_ts)
        if (await self._service.conversation_state(key)).known:
            return None
        return thread_title(question)

    async def _set_title(self, set_title: AsyncSetTitle, title: str, event: dict[str, Any]) -> None:
        try:
            await set_title(title)
        except SlackApiError as exc:  # not an assistant thread (an older DM thread), or a cosmetic failure
            _log.debug("could not title thread %s: %s", event.get("thread_ts"), exc.response.get("error"))


def register_pane(app: AsyncApp, service: Threadline, adapter: SlackAdapter) -> None:
    """Slack's AI surface on ``app``: the pane's listeners as Bolt's assistant middleware, and the feedback
    buttons under answers (bots/slack/feedback.py)."""
    pane = AssistantPane(service, adapter)
    assistant = AsyncAssistant()
    assistant.thread_started(pane.thread_started)
    assistant.thread_context_changed(pane.context_changed)
    assistant.user_message(pane.user_message)
    app.assistant(assistant)
    app.action(FEEDBACK_ACTION)(FeedbackButtons(service).on_press)


def _team(body: dict[str, Any], event: dict[str, Any]) -> str:
    return str(body.get("team_id") or event.get("team") or (body.get("team") or {}).get("id") or "")
