"""The Slack answer renderer against a slow Slack: a run that ends while its first words are still on their way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.render import SlackReply
from core.events import Event, RunCompleted, TextDelta
from tests.fakes.slack_server import FakeSlack

CHANNEL = "C_GENERAL"
RUN = "run_slow_slack"


class QueuedHandle:
    """A run handle whose events the test gives one at a time."""

    run_id = RUN
    channel = f"slack:T1:{CHANNEL}"

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue()

    async def events(self) -> AsyncIterator[Event]:
        while (event := await self.queue.get()) is not None:
            yield event


async def test_an_answer_that_ends_while_its_stream_is_starting_is_shown_once() -> None:
    """The run completes while chat.startStream, carrying all of its words, is still in flight: the end must not
    take the answer for one with nothing shown and send its words again (Slack showed them twice)."""
    async with FakeSlack() as slack:
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url, timeout=5)
        reply = SlackReply(
            client, channel_id=CHANNEL, thread_ts="1700000000.000100", team_id=None, user_id=None, feedback=False
        )
        handle = QueuedHandle()
        slack.hold("chat.startStream")
        rendering = asyncio.create_task(reply.render(handle))  # type: ignore[arg-type]
        await handle.queue.put(TextDelta(RUN, "Hello there."))
        await slack.wait_until(lambda: bool(slack.calls_to("chat.startStream")), what="the stream starting")
        await handle.queue.put(RunCompleted(RUN, "Hello there."))
        while not handle.queue.empty():  # the renderer takes the end of the run while the start is in flight
            await asyncio.sleep(0)
        await asyncio.sleep(0)  # and shows it as far as it can before the start is answered
        slack.release("chat.startStream")
        await handle.queue.put(None)
        await asyncio.wait_for(rendering, timeout=10)
    [answer] = slack.thread(CHANNEL, "1700000000.000100")
    assert (answer.text, answer.streaming) == ("Hello there.", False)
