"""After a crash: questions a process stored and never answered are answered by the next one, where they were asked.

Each test leaves a question in the database as a process that died would (stored, its run queued, nobody
answering it), then starts a bot on that database over the real protocols: Slack answers in the question's
thread, Discord replies to the question's message, the console prints the answer as it prints its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bots.discord.app import DiscordBot
from bots.discord.config import DiscordSettings
from bots.discord.render import CUT_OFF_NOTE
from bots.slack.app import SlackBot
from bots.slack.config import SlackSettings
from core.notices import CUT_OFF_AFTER_TOOL
from core.settings import Settings
from core.store import Store
from tests.fakes.discord_server import BOT_TOKEN, CHANNEL_ID, GUILD_ID, FakeDiscord
from tests.fakes.openai_server import FakeOpenAI, Reply, last_user_text
from tests.fakes.slack_server import TEAM_ID, FakeSlack
from tests.test_console import console_env, start_console

SECRET = "adopted-runs-signing-secret"
SLACK_CHANNEL = "C_GENERAL"


def answer(request: dict[str, Any]) -> Reply:
    return Reply(text=f"Answer to: {last_user_text(request).split(': ', 1)[-1]}", chunk_delay=0.001)


def open_store(where: Settings | Path) -> Awaitable[Store]:
    """A store on the database of ``where`` (the settings of a process, or a SQLite file): another process's."""
    if isinstance(where, Path):
        return Store.open(where)
    return Store.open(where.db_path, url=where.database_url)


async def leave_question(where: Settings | Path, channel: str, msg_id: str | None, text: str) -> None:
    """What a process that died leaves of a question it had just stored: the message and its queued run."""
    store = await open_store(where)
    try:
        item = {"role": "user", "content": f"alice: {text}"}
        posted = await store.post_user_message(
            channel=channel,
            author_id="U_ALICE",
            author_name="alice",
            text=text,
            item=item,
            tokens=8,
            platform_msg_id=msg_id,
        )
        assert posted is not None
    finally:
        await store.close()


@pytest.fixture
def answering(settings: Settings, fake_model: FakeOpenAI) -> Settings:
    fake_model.script = answer
    return settings


async def test_slack_answers_a_question_left_by_a_stopped_process_in_its_thread_once(answering: Settings) -> None:
    ts = "1690000000.000100"
    await leave_question(answering, f"slack:{TEAM_ID}:{SLACK_CHANNEL}", ts, "are you back?")
    async with FakeSlack() as slack:
        slack_settings = SlackSettings(
            bot_token=slack.bot_token, signing_secret=SECRET, api_url=slack.api_url, port=0, host="127.0.0.1"
        )
        bot = await SlackBot.start(answering, slack_settings)
        try:

            def answered() -> bool:
                finished = [m for m in slack.thread(SLACK_CHANNEL, ts) if not m.streaming]
                return bool(finished) and bool(slack.calls_to("reactions.remove"))

            await slack.wait_until(answered, timeout=10, what="the answer in the question's thread")
            await bot.service.wait_idle()
        finally:
            await bot.stop()
    replies = [m.text for m in slack.thread(SLACK_CHANNEL, ts)]
    assert replies == ["Answer to: are you back?"]  # once, in the thread
    assert [m for m in slack.messages.values() if m.thread_ts is None] == []  # nothing at the channel's top level
    # The same reactions as for a live mention: "eyes" on the question while it is answered, then off.
    reactions = [(c.method, c.params["timestamp"], c.params["name"]) for c in slack.calls if "reactions." in c.method]
    assert reactions == [("reactions.add", ts, "eyes"), ("reactions.remove", ts, "eyes")]


async def test_slack_replaces_the_half_written_answer_a_stopped_process_left(answering: Settings) -> None:
    """The process died while streaming its answer (no tool had started): the next one closes that message with a
    note and writes the answer again, in full, in the same thread."""
    ts = "1690000000.000300"
    channel = f"slack:{TEAM_ID}:{SLACK_CHANNEL}"
    await leave_question(answering, channel, ts, "tell me a story")
    async with FakeSlack() as slack:
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        started = await client.chat_startStream(channel=SLACK_CHANNEL, thread_ts=ts, markdown_text="Once upon a")
        half = str(started["ts"])
        store = await open_store(answering)
        try:  # the stopped process was answering: its run in progress, in the message it streamed into
            [run] = await store.runs_with_status(["queued"])
            await store.update_run(run.id, status="in_progress", started_at=1.0)
            await store.set_reply_ref(run.id, half)
        finally:
            await store.close()
        slack_settings = SlackSettings(
            bot_token=slack.bot_token, signing_secret=SECRET, api_url=slack.api_url, port=0, host="127.0.0.1"
        )
        bot = await SlackBot.start(answering, slack_settings)
        try:

            def answered() -> bool:
                return any(m.text == "Answer to: tell me a story" and not m.streaming for m in slack.thread(
                    SLACK_CHANNEL, ts
                ))  # fmt: skip

            await slack.wait_until(answered, timeout=10, what="the answer written again")
            await bot.service.wait_idle()
        finally:
            await bot.stop()
    cut = slack.messages[half]
    assert not cut.streaming
    assert "restarted" in cut.text
    assert [m.text for m in slack.thread(SLACK_CHANNEL, ts) if m.ts != half] == ["Answer to: tell me a story"]


async def test_discord_replies_to_a_question_left_by_a_stopped_process_once(answering: Settings) -> None:
    async with FakeDiscord() as fake:
        fake.patch_discord()
        question = fake.add_message("are you back?")  # written while no bot listened
        await leave_question(answering, f"discord:{GUILD_ID}:{CHANNEL_ID}", question["id"], "are you back?")
        settings = DiscordSettings(token=BOT_TOKEN, api_url=fake.api_base, gateway_url=fake.gateway_url)
        bot = await DiscordBot.start(answering, replace(settings, edit_interval=0.2), guild_ready_timeout=0.05)
        try:

            def answered() -> bool:
                return any(m["content"] == "Answer to: are you back?" for m in fake.bot_messages(CHANNEL_ID))

            await fake.wait_until(answered, timeout=10, what="the answer to the question left behind")
            await bot.service.wait_idle()
        finally:
            await bot.stop()
        [reply] = fake.bot_messages(CHANNEL_ID)
    assert reply["content"] == "Answer to: are you back?"
    assert reply["message_reference"]["message_id"] == question["id"]  # a reply to the question, not beside it


async def test_the_console_prints_an_answer_left_by_a_stopped_console_as_its_own(
    tmp_path: Path, fake_model: FakeOpenAI
) -> None:
    fake_model.script = answer
    env = console_env(tmp_path, OPENAI_BASE_URL=fake_model.base_url, OPENAI_API_KEY="sk-test-not-a-real-key")
    env["THREADLINE_CODE_INTERPRETER"] = "off"
    await leave_question(tmp_path / "console.db", "console:local:default", None, "are you back?")
    console = await start_console(env, tmp_path)
    try:
        assert console.stdout is not None
        assert console.stdin is not None
        async with asyncio.timeout(30):
            line = (await console.stdout.readline()).decode()
            while line and "are you back?" not in line:
                line = (await console.stdout.readline()).decode()
        assert line == "Answer to: are you back?\n"  # as its own answers are printed, not as a [notice]
        console.stdin.close()
        assert await asyncio.wait_for(console.wait(), timeout=20) == 0
    finally:
        if console.returncode is None:
            console.kill()
            await console.wait()


async def half_written_on_discord(
    where: Settings, fake: FakeDiscord, question: dict[str, Any], pieces: list[str]
) -> list[int]:
    """What a process that died while answering ``question`` leaves: the messages it had posted the answer's
    ``pieces`` in (the first a reply to the question), kept with its run, in progress."""
    posted: list[int] = []
    async with aiohttp.ClientSession(headers={"Authorization": f"Bot {BOT_TOKEN}"}) as http:
        for index, piece in enumerate(pieces):
            body: dict[str, Any] = {"content": piece}
            if index == 0:
                body["message_reference"] = {"message_id": question["id"]}
            async with http.post(f"{fake.api_base}/channels/{CHANNEL_ID}/messages", json=body) as response:
                posted.append(int((await response.json())["id"]))
    store = await open_store(where)
    try:
        [run] = await store.runs_with_status(["queued"])
        await store.update_run(run.id, status="in_progress", started_at=1.0)
        await store.set_reply_ref(run.id, " ".join(str(i) for i in posted))
    finally:
        await store.close()
    return posted


async def discord_answers_what_was_left(answering: Settings, fake: FakeDiscord, text: str) -> None:
    settings = DiscordSettings(token=BOT_TOKEN, api_url=fake.api_base, gateway_url=fake.gateway_url)
    bot = await DiscordBot.start(answering, replace(settings, edit_interval=0.2), guild_ready_timeout=0.05)
    try:
        await fake.wait_until(
            lambda: any(m["content"] == text for m in fake.bot_messages(CHANNEL_ID)), timeout=10, what=repr(text)
        )
        await bot.service.wait_idle()
        await bot.client.replies.wait_idle()
    finally:
        await bot.stop()


async def test_discord_writes_the_answer_into_the_messages_a_stopped_process_had_begun_it_in(
    answering: Settings,
) -> None:
    """The stopped process had written two messages of a long answer; the new answer fits in one: it goes into
    the first (the reply to the question), and the second, not needed any more, is deleted."""
    async with FakeDiscord() as fake:
        fake.patch_discord()
        question = fake.add_message("tell me a story")
        await leave_question(answering, f"discord:{GUILD_ID}:{CHANNEL_ID}", question["id"], "tell me a story")
        first, second = await half_written_on_discord(answering, fake, question, ["Once upon", "a ti"])
        await discord_answers_what_was_left(answering, fake, "Answer to: tell me a story")
        [answer] = fake.bot_messages(CHANNEL_ID)
    assert (int(answer["id"]), answer["content"]) == (first, "Answer to: tell me a story")
    assert answer["message_reference"]["message_id"] == question["id"]
    assert fake.deleted == [(CHANNEL_ID, second)]


async def test_discord_answers_below_a_half_written_answer_it_cannot_write_into(answering: Settings) -> None:
    """The first message the stopped process had written was deleted since: what is left of the half-written
    answer is closed with a note, and the answer is a new reply to the question."""
    async with FakeDiscord() as fake:
        fake.patch_discord()
        question = fake.add_message("tell me a story")
        await leave_question(answering, f"discord:{GUILD_ID}:{CHANNEL_ID}", question["id"], "tell me a story")
        first, second = await half_written_on_discord(answering, fake, question, ["Once upon", "a ti"])
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bot {BOT_TOKEN}"}) as http,
            http.delete(f"{fake.api_base}/channels/{CHANNEL_ID}/messages/{first}") as response,
        ):
            assert response.status == 204
        await discord_answers_what_was_left(answering, fake, "Answer to: tell me a story")
        cut, answer = fake.bot_messages(CHANNEL_ID)
    assert (int(cut["id"]), cut["content"]) == (second, CUT_OFF_NOTE)
    assert answer["content"] == "Answer to: tell me a story"
    assert answer["message_reference"]["message_id"] == question["id"]


async def cut_off_after_a_tool(where: Settings, reply_ref: str | None) -> str:
    """What a process that died after starting a tool for the question it left leaves: its run in progress with
    the tool's step (and ``reply_ref``, the message it had begun the answer in, if any). Its run id."""
    store = await open_store(where)
    try:
        [run] = await store.runs_with_status(["queued"])
        await store.update_run(run.id, status="in_progress", started_at=1.0)
        await store.add_step(run.id, "tool_calls", tool_name="lookup_ticket", call_id="call_1", arguments="{}")
        if reply_ref is not None:
            await store.set_reply_ref(run.id, reply_ref)
    finally:
        await store.close()
    return run.id


async def slack_recovers(where: Settings, slack: FakeSlack, told: Callable[[], bool]) -> None:
    slack_settings = SlackSettings(
        bot_token=slack.bot_token, signing_secret=SECRET, api_url=slack.api_url, port=0, host="127.0.0.1"
    )
    bot = await SlackBot.start(where, slack_settings)
    try:
        await slack.wait_until(told, timeout=10, what="the cut-off run told of")
        await bot.service.wait_idle()
    finally:
        await bot.stop()


async def test_slack_tells_of_a_run_cut_off_after_a_tool_in_place_of_its_half_written_answer(
    answering: Settings, fake_model: FakeOpenAI
) -> None:
    """The process died after a tool had started, while streaming the answer: that message's stream is stopped
    and its text replaced by the notice, in the question's thread; nothing is posted at the channel's top level,
    and the question is not run again (its tool may have done its work)."""
    ts = "1690000000.000500"
    await leave_question(answering, f"slack:{TEAM_ID}:{SLACK_CHANNEL}", ts, "close ticket 7")
    async with FakeSlack() as slack:
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        started = await client.chat_startStream(channel=SLACK_CHANNEL, thread_ts=ts, markdown_text="Closing the")
        await client.reactions_add(channel=SLACK_CHANNEL, timestamp=ts, name="eyes")  # as the stopped process did
        half = str(started["ts"])
        run_id = await cut_off_after_a_tool(answering, half)
        await slack_recovers(answering, slack, lambda: "started using a tool" in slack.messages[half].text)
    cut = slack.messages[half]
    assert not cut.streaming
    assert cut.text == f":warning: {CUT_OFF_AFTER_TOOL}"
    assert [m.ts for m in slack.thread(SLACK_CHANNEL, ts)] == [half]  # the notice is the thread's only reply
    assert [m for m in slack.messages.values() if m.thread_ts is None] == []
    assert slack.calls_to("reactions.remove")[-1]["timestamp"] == ts  # the stopped process's :eyes: taken off
    assert fake_model.chat_requests == []
    store = await open_store(answering)
    try:
        assert (await store.get_run(run_id)).status == "failed"
        assert await store.runs_with_status(["queued", "in_progress"]) == []
    finally:
        await store.close()


async def test_slack_tells_of_a_run_cut_off_after_a_tool_in_its_thread_when_no_answer_was_begun(
    answering: Settings,
) -> None:
    ts = "1690000000.000700"
    await leave_question(answering, f"slack:{TEAM_ID}:{SLACK_CHANNEL}", ts, "close ticket 8")
    async with FakeSlack() as slack:
        await cut_off_after_a_tool(answering, None)
        await slack_recovers(answering, slack, lambda: bool(slack.thread(SLACK_CHANNEL, ts)))
    [notice] = slack.thread(SLACK_CHANNEL, ts)
    assert notice.text == f":warning: {CUT_OFF_AFTER_TOOL}"
    assert [m for m in slack.messages.values() if m.thread_ts is None] == []


async def test_discord_tells_of_a_run_cut_off_after_a_tool_in_place_of_its_half_written_answer(
    answering: Settings, fake_model: FakeOpenAI
) -> None:
    """The stopped process had written two messages of its answer after a tool started: the first becomes the
    notice (still the reply to the question), the second is deleted, and the question is not run again."""
    async with FakeDiscord() as fake:
        fake.patch_discord()
        question = fake.add_message("close ticket 7")
        await leave_question(answering, f"discord:{GUILD_ID}:{CHANNEL_ID}", question["id"], "close ticket 7")
        first, second = await half_written_on_discord(answering, fake, question, ["Closing", "the tick"])
        store = await open_store(answering)
        try:
            [run] = await store.runs_with_status(["in_progress"])
            await store.add_step(run.id, "tool_calls", tool_name="lookup_ticket", call_id="call_1", arguments="{}")
        finally:
            await store.close()
        await discord_answers_what_was_left(answering, fake, f"⚠️ {CUT_OFF_AFTER_TOOL}")
        [notice] = fake.bot_messages(CHANNEL_ID)
    assert int(notice["id"]) == first
    assert notice["message_reference"]["message_id"] == question["id"]
    assert fake.deleted == [(CHANNEL_ID, second)]
    assert fake_model.chat_requests == []


async def test_discord_tells_of_a_run_cut_off_after_a_tool_in_a_reply_to_its_question(answering: Settings) -> None:
    async with FakeDiscord() as fake:
        fake.patch_discord()
        question = fake.add_message("close ticket 8")
        await leave_question(answering, f"discord:{GUILD_ID}:{CHANNEL_ID}", question["id"], "close ticket 8")
        await cut_off_after_a_tool(answering, None)
        await discord_answers_what_was_left(answering, fake, f"⚠️ {CUT_OFF_AFTER_TOOL}")
        [notice] = fake.bot_messages(CHANNEL_ID)
    assert notice["message_reference"]["message_id"] == question["id"]


async def test_slack_tells_of_a_run_cut_off_after_a_tool_inside_a_thread_with_history_in_that_thread(
    answering: Settings, fake_model: FakeOpenAI
) -> None:
    """The conversation is a Slack thread that already holds a question and its answer; its second question, a
    reply inside the thread, was cut off after a tool: the notice goes into that thread (under its first message,
    not under the reply), and nothing is asked of the model again."""
    root, reply = "1690000000.000900", "1690000000.000950"
    conversation = f"slack:{TEAM_ID}:{SLACK_CHANNEL}/{root}"
    await leave_question(answering, conversation, root, "open ticket 9")
    store = await open_store(answering)
    try:  # the first question was answered
        [first] = await store.runs_with_status(["queued"])
        item = ("assistant", "Ticket 9 is open.", {"role": "assistant", "content": "Ticket 9 is open."}, 4)
        await store.finish_run(first, status="completed", items=[item])
    finally:
        await store.close()
    await leave_question(answering, conversation, reply, "now close it")
    async with FakeSlack() as slack:
        await cut_off_after_a_tool(answering, None)
        await slack_recovers(answering, slack, lambda: bool(slack.thread(SLACK_CHANNEL, root)))
    [notice] = slack.thread(SLACK_CHANNEL, root)
    assert notice.text == f":warning: {CUT_OFF_AFTER_TOOL}"
    assert slack.thread(SLACK_CHANNEL, reply) == []
    assert [m for m in slack.messages.values() if m.thread_ts is None] == []
    assert fake_model.chat_requests == []
