"""Slack threads as conversations of their own, over signed Events API requests and Socket Mode, the fake Slack
Web API and the scripted model: each thread has its own history and queue, begins with the message that
started it and the bot's answer, takes follow-ups without a mention, and shares its channel's files."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bots.slack.adapter import channel_key
from bots.slack.config import SlackSettings
from bots.slack.threads import addressed_elsewhere, context_from_replies, place_of
from core.errors import ConfigError
from core.models import conversation_key
from core.settings import Settings
from tests.fakes.openai_server import Answer, FakeOpenAI, Reply, last_user_text
from tests.fakes.slack_server import (
    TEAM_ID,
    app_mention,
    channel_message,
    dm_message,
    event_callback,
    file_share_message,
)
from tests.test_slack import ALICE, CHANNEL, Harness, chat_script, running_harness

BOB = "U_BOB"
TOP = "1700000100.000100"  # a top-level mention; its Slack thread is TOP
KEY = channel_key(TEAM_ID, CHANNEL)


@pytest.fixture
async def harness(
    tmp_path: Path, fake_model: FakeOpenAI, settings: Settings, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Harness]:
    caplog.set_level(logging.DEBUG, logger="bots.slack.adapter")
    async with running_harness(tmp_path, fake_model, settings, members=[ALICE, BOB]) as h:
        yield h


def _contents(request: dict[str, Any], *, names: bool = False) -> list[tuple[str, str]]:
    """(role, text) of a model request's messages after the instructions; people's without their names (a
    person's first message carries their user id, later ones their name) unless ``names``."""
    out = []
    for message in request["messages"]:
        role, text = message["role"], str(message.get("content") or "")
        if role != "system":
            out.append((role, text if names or role != "user" else text.split(": ", 1)[-1]))
    return out


def _request_for(model: FakeOpenAI, text: str) -> dict[str, Any]:
    return next(r for r in reversed(model.chat_requests) if last_user_text(r).endswith(text))


async def _left_alone(caplog: pytest.LogCaptureFixture, ts: str) -> None:
    """Wait until the adapter has decided that the message ``ts`` is not for the bot (its debug line)."""
    async with asyncio.timeout(10):
        while not any(
            f"message {ts} in" in r.getMessage() and "not for the bot" in r.getMessage() for r in caplog.records
        ):
            await asyncio.sleep(0.01)


async def test_a_reply_in_the_thread_of_an_answer_continues_it_without_a_mention(harness: Harness) -> None:
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> what is the plan", TOP))
    assert await harness.answer(CHANNEL, TOP) == ["Answer to: what is the plan"]
    await harness.event(channel_message(CHANNEL, BOB, "and the budget", "1700000101.000100", thread_ts=TOP))
    assert await harness.answer(CHANNEL, TOP, 2) == ["Answer to: what is the plan", "Answer to: and the budget"]

    # The thread's conversation began with the mention that started it and the bot's answer, then the reply.
    assert _contents(_request_for(harness.model, "and the budget")) == [
        ("user", "what is the plan"),
        ("assistant", "Answer to: what is the plan"),
        ("user", "and the budget"),
    ]
    assert not harness.slack.calls_to("conversations.replies")  # the store had the thread's start
    # The channel's own conversation did not take the thread's reply.
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> anything else", "1700000102.000100"))
    await harness.answer(CHANNEL, "1700000102.000100")
    channel_texts = [text for _, text in _contents(_request_for(harness.model, "anything else"))]
    assert not any("budget" in text for text in channel_texts)
    assert any("what is the plan" in text for text in channel_texts)


async def test_a_mention_in_a_thread_of_people_begins_with_that_thread(harness: Harness) -> None:
    start, reply, ask = "1700000110.000100", "1700000111.000100", "1700000112.000100"
    harness.slack.users[BOB] = {"real_name": "Bob Stone"}
    harness.slack.say(channel_message(CHANNEL, BOB, "Where do we hold the offsite?", start))
    harness.slack.say(channel_message(CHANNEL, ALICE, "Lisbon or Porto, I think", reply, thread_ts=start))
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> which is cheaper", ask, thread_ts=start))
    assert await harness.answer(CHANNEL, start, asked=ask) == ["Answer to: which is cheaper"]
    assert _contents(_request_for(harness.model, "which is cheaper"), names=True)[:2] == [
        ("user", "Bob: Where do we hold the offsite?"),
        ("user", "User: Lisbon or Porto, I think"),
    ]
    # Once begun, the thread's conversation is the store's: Slack is not asked again.
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> and in May", "1700000113.000100", thread_ts=start))
    await harness.answer(CHANNEL, start, 2, asked="1700000113.000100")
    assert len(harness.slack.calls_to("conversations.replies")) == 1
    contents = _contents(_request_for(harness.model, "and in May"), names=True)
    assert contents[0] == ("user", "Bob: Where do we hold the offsite?")
    assert ("assistant", "Answer to: which is cheaper") in contents


async def test_a_thread_whose_start_slack_refuses_begins_with_the_message(harness: Harness) -> None:
    harness.slack.refuse("conversations.replies", "missing_scope")
    start = "1700000115.000100"
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> hello from a thread", "1700000116.000100", start))
    assert await harness.answer(CHANNEL, start, asked="1700000116.000100") == ["Answer to: hello from a thread"]
    assert _contents(_request_for(harness.model, "hello from a thread")) == [("user", "hello from a thread")]


async def test_two_threads_are_answered_at_once_and_keep_their_own_context(harness: Harness) -> None:
    """The first thread's model call waits until the second's has begun: one queue for the channel would
    keep the second waiting behind the first, and the first would say so."""
    second_began = asyncio.Event()

    async def script(req: dict[str, Any]) -> Answer:
        question = last_user_text(req).split(": ", 1)[-1]
        if question == "slow one":
            try:
                await asyncio.wait_for(second_began.wait(), timeout=10)
            except TimeoutError:
                return Reply(text="answered alone")
            return Reply(text="answered while the other was asked")
        if question == "slow two":
            second_began.set()
        return chat_script(req)

    harness.model.script = script
    one, two = "1700000120.000100", "1700000130.000100"
    for ts, text in ((one, "thread one"), (two, "thread two")):
        await harness.event(app_mention(CHANNEL, ALICE, f"<@U_BOT> {text}", ts))
        await harness.answer(CHANNEL, ts)
    await harness.event(channel_message(CHANNEL, ALICE, "slow one", "1700000121.000100", thread_ts=one))
    await harness.event(channel_message(CHANNEL, BOB, "slow two", "1700000131.000100", thread_ts=two))
    assert (await harness.answer(CHANNEL, one, 2))[1] == "answered while the other was asked"
    assert (await harness.answer(CHANNEL, two, 2))[1] == "Answer to: slow two"
    texts_one = " ".join(t for _, t in _contents(_request_for(harness.model, "slow one")))
    texts_two = " ".join(t for _, t in _contents(_request_for(harness.model, "slow two")))
    assert "thread one" in texts_one
    assert "thread two" not in texts_one
    assert "thread two" in texts_two
    assert "thread one" not in texts_two


async def test_a_reply_mentioning_someone_else_is_left_alone(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> draft the invite", TOP))
    await harness.answer(CHANNEL, TOP)
    aside = "1700000101.000200"
    await harness.event(channel_message(CHANNEL, ALICE, f"<@{BOB}> can you check this?", aside, thread_ts=TOP))
    await _left_alone(caplog, aside)
    assert len(harness.replies(CHANNEL, TOP)) == 1
    assert not any(last_user_text(r).endswith("can you check this?") for r in harness.model.chat_requests)


async def test_a_reply_in_a_thread_the_bot_is_not_part_of_is_left_alone(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    start, reply = "1700000140.000100", "1700000141.000100"
    harness.slack.say(channel_message(CHANNEL, BOB, "lunch?", start))
    await harness.event(channel_message(CHANNEL, ALICE, "sure", reply, thread_ts=start))
    await _left_alone(caplog, reply)
    assert harness.slack.thread(CHANNEL, start) == []
    assert not harness.model.chat_requests


async def test_follow_ups_need_a_mention_when_so_configured(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    await harness.stop()
    await harness.start(thread_followups=False)
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> first", TOP))
    await harness.answer(CHANNEL, TOP)
    await harness.event(channel_message(CHANNEL, ALICE, "no mention", "1700000101.000300", thread_ts=TOP))
    await _left_alone(caplog, "1700000101.000300")
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> with one", "1700000101.000400", thread_ts=TOP))
    assert await harness.answer(CHANNEL, TOP, 2) == ["Answer to: first", "Answer to: with one"]
    assert SlackSettings.from_env(_env(SLACK_THREAD_FOLLOWUPS="mention")).thread_followups is False
    assert SlackSettings.from_env(_env()).thread_followups is True
    with pytest.raises(ConfigError, match="SLACK_THREAD_FOLLOWUPS='off' is not a choice"):
        SlackSettings.from_env(_env(SLACK_THREAD_FOLLOWUPS="off"))


def _env(**extra: str) -> dict[str, str]:
    return {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", **extra}


async def test_reset_in_a_thread_resets_that_thread_only(harness: Harness) -> None:
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> remember apples", TOP))
    await harness.answer(CHANNEL, TOP)
    await harness.event(channel_message(CHANNEL, ALICE, "and pears", "1700000101.000500", thread_ts=TOP))
    await harness.answer(CHANNEL, TOP, 2)
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> /reset", "1700000101.000600", thread_ts=TOP))
    [note] = await harness.slack.wait_for("chat.postEphemeral")
    assert (note["thread_ts"], note["user"]) == (TOP, ALICE)
    assert note["text"].startswith("Started a new conversation")
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> what fruit", "1700000101.000700", thread_ts=TOP))
    await harness.answer(CHANNEL, TOP, 3)
    assert _contents(_request_for(harness.model, "what fruit")) == [("user", "what fruit")]
    # The channel's conversation still has its history.
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> and now", "1700000150.000100"))
    await harness.answer(CHANNEL, "1700000150.000100")
    assert ("user", "remember apples") in _contents(_request_for(harness.model, "and now"))


async def test_a_file_shared_in_a_thread_is_searched_from_the_channel(harness: Harness) -> None:
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> hi", TOP))
    await harness.answer(CHANNEL, TOP)
    info = harness.slack.add_file("F_T1", "holidays.md", b"# Holidays\nEveryone gets 27 days.\n", channel=CHANNEL)
    await harness.event(file_share_message(CHANNEL, ALICE, [info], "1700000101.000800", thread_ts=TOP))
    await harness.slack.wait_until(
        lambda: any("Indexed holidays.md" in m.text for m in harness.slack.thread(CHANNEL, TOP)), what="indexed"
    )
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> how many holidays?", "1700000160.000100"))
    [answer] = await harness.answer(CHANNEL, "1700000160.000100")
    assert "27 days" in answer


async def test_a_reply_in_a_direct_message_thread_is_its_own_conversation(harness: Harness) -> None:
    dm, first = "D_ALICE", "1700000170.000100"
    await harness.event(dm_message(dm, ALICE, "first in the dm", first))
    await harness.answer(dm, first)
    await harness.event(dm_message(dm, ALICE, "in its thread", "1700000171.000100", thread_ts=first))
    assert (await harness.answer(dm, first, 2))[1] == "Answer to: in its thread"
    assert _contents(_request_for(harness.model, "in its thread"))[0] == ("user", "first in the dm")
    assert harness.bot is not None
    state = await harness.bot.service.conversation_state(conversation_key(channel_key(TEAM_ID, dm), first))
    assert state.begun


async def test_socket_mode_follow_up_in_a_thread(harness: Harness) -> None:
    await harness.stop()
    await harness.start(app_token=harness.slack.app_token, signing_secret=None)
    await harness.slack.wait_connected()
    for number, event in enumerate(
        (
            app_mention(CHANNEL, ALICE, "<@U_BOT> over the socket", TOP),
            channel_message(CHANNEL, ALICE, "and a follow-up", "1700000101.000900", thread_ts=TOP),
        )
    ):
        harness.slack.say(event)
        await harness.slack.wait_for_ack(
            await harness.slack.socket_send("events_api", event_callback(event, f"EvT{number}"))
        )
        await harness.answer(CHANNEL, TOP, number + 1)
    assert harness.replies(CHANNEL, TOP) == ["Answer to: over the socket", "Answer to: and a follow-up"]


# -- pure logic ---------------------------------------------------------------------------------------


def test_where_a_message_belongs() -> None:
    top = place_of(KEY, {"channel": CHANNEL, "ts": "1.1"})
    assert (top.key, top.reply_in, top.thread_ts) == (KEY, "1.1", None)
    first = place_of(KEY, {"channel": CHANNEL, "ts": "1.1", "thread_ts": "1.1"})
    assert first.key == KEY
    reply = place_of(KEY, {"channel": CHANNEL, "ts": "1.2", "thread_ts": "1.1"})
    assert (reply.key, reply.reply_in, reply.thread_ts) == (f"{KEY}/1.1", "1.1", "1.1")


def test_who_a_reply_is_addressed_to() -> None:
    assert not addressed_elsewhere("thanks <@U_BOT>", "U_BOT")
    assert not addressed_elsewhere("thanks", "U_BOT")
    assert addressed_elsewhere("<@U_BOB> look", "U_BOT")
    assert addressed_elsewhere("<!here> look", "U_BOT")
    assert addressed_elsewhere("<!subteam^S123|@design> look", "U_BOT")


def test_a_thread_as_context() -> None:
    messages = [
        {"ts": "1.1", "user": "U_BOB", "text": "<@U_BOT> where?"},
        {"ts": "1.2", "user": "U_BOT", "text": "Lisbon."},
        {"ts": "1.3", "user": "U_ZED", "text": ""},
        {"ts": "1.4", "user": "U_ALICE", "text": "the question itself"},
    ]
    assert context_from_replies(messages, "1.4", "U_BOT", {"U_BOB": "Bob"}) == [
        {"role": "user", "content": "Bob: where?"},
        {"role": "assistant", "content": "Lisbon."},
    ]
