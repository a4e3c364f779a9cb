"""Discord threads as conversations, over the fake gateway and REST API: a thread started from an answer (or
from the question) begins with that exchange and takes follow-ups without a mention; a message naming someone
else is left alone; follow-ups need the Message Content intent, asked for only when they are on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bots.discord.app import intents
from bots.discord.config import DiscordSettings
from core.errors import ConfigError
from core.settings import Settings
from tests.fakes.discord_server import BOB, MESSAGE_CONTENT_INTENT
from tests.fakes.openai_server import FakeOpenAI, last_user_text
from tests.test_discord import Harness, running_harness


@pytest.fixture
async def harness(tmp_path: Path, fake_model: FakeOpenAI, settings: Settings) -> AsyncIterator[Harness]:
    async with running_harness(tmp_path, fake_model, settings) as h:
        yield h


def _said(request: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) of a model request after the instructions, people's without their names."""
    out = []
    for m in request["messages"]:
        if m["role"] != "system":
            text = str(m.get("content") or "")
            out.append((m["role"], text.split(": ", 1)[-1] if m["role"] == "user" else text))
    return out


def _request_for(model: FakeOpenAI, text: str) -> dict[str, Any]:
    return next(r for r in reversed(model.chat_requests) if last_user_text(r).endswith(text))


async def _asked_and_answered(harness: Harness, text: str) -> dict[str, Any]:
    question = await harness.fake.send_message(text)
    (answer,) = await harness.answer(question, ending=text)
    return answer


async def test_a_thread_started_from_an_answer_continues_it_without_a_mention(harness: Harness) -> None:
    answer = await _asked_and_answered(harness, "what is the plan")
    thread = await harness.fake.start_thread(answer, "the plan")
    follow_up = await harness.fake.send_message("and the budget", channel_id=thread, mention_bot=False)
    (reply,) = await harness.answer(follow_up, ending="and the budget")
    assert reply["channel_id"] == str(thread)
    assert _said(_request_for(harness.model, "and the budget")) == [
        ("user", "what is the plan"),
        ("assistant", "Answer to: what is the plan"),
        ("user", "and the budget"),
    ]


async def test_a_thread_started_from_the_question_begins_with_it_too(harness: Harness) -> None:
    question = await harness.fake.send_message("where is the offsite")
    await harness.answer(question, ending="where is the offsite")
    thread = await harness.fake.start_thread(question, "offsite")
    follow_up = await harness.fake.send_message("and when", channel_id=thread, mention_bot=False)
    await harness.answer(follow_up, ending="and when")
    assert _said(_request_for(harness.model, "and when"))[:2] == [
        ("user", "where is the offsite"),
        ("assistant", "Answer to: where is the offsite"),
    ]


async def test_a_message_naming_someone_else_is_left_alone(harness: Harness) -> None:
    answer = await _asked_and_answered(harness, "draft the invite")
    thread = await harness.fake.start_thread(answer)
    await harness.fake.send_message(
        f"<@{BOB.id}> can you check it?", channel_id=thread, mention_bot=False, mentions=[BOB]
    )
    follow_up = await harness.fake.send_message("thanks, now shorter", channel_id=thread, mention_bot=False)
    await harness.answer(follow_up, ending="thanks, now shorter")
    assert not any("check it" in last_user_text(r) for r in harness.model.chat_requests)
    assert all("check it" not in text for _, text in _said(_request_for(harness.model, "now shorter")))


async def test_in_a_thread_the_bot_is_not_part_of_it_answers_only_a_mention(harness: Harness) -> None:
    question = await harness.fake.send_message("just people here", mention_bot=False)
    thread = await harness.fake.start_thread(question)
    await harness.fake.send_message("still people", channel_id=thread, mention_bot=False)
    called = await harness.fake.send_message("now you", channel_id=thread)
    await harness.answer(called, ending="now you")
    assert [last_user_text(r).split(": ", 1)[-1] for r in harness.model.chat_requests] == ["now you"]
    # Once called in, the bot is part of the thread: follow-ups need no mention.
    follow_up = await harness.fake.send_message("and then", channel_id=thread, mention_bot=False)
    await harness.answer(follow_up, ending="and then")


async def test_with_follow_ups_off_a_thread_needs_a_mention(harness: Harness) -> None:
    await harness.stop()
    await harness.start(thread_followups=False)
    answer = await _asked_and_answered(harness, "first")
    thread = await harness.fake.start_thread(answer)
    await harness.fake.send_message("no mention", channel_id=thread, mention_bot=False)
    mentioned = await harness.fake.send_message("with one", channel_id=thread)
    await harness.answer(mentioned, ending="with one")
    assert not any(last_user_text(r).endswith("no mention") for r in harness.model.chat_requests)


async def test_follow_ups_without_indexing_every_message_ask_for_the_intent(
    tmp_path: Path, fake_model: FakeOpenAI, settings: Settings
) -> None:
    """Without Message Content, Discord sends a message that does not mention the bot without its text, so a
    follow-up could not be read: asked for follow-ups, the bot asks for the intent; by default with
    DISCORD_INDEX_FILES=mentions, it asks for neither."""
    env = {"DISCORD_TOKEN": "t", "DISCORD_INDEX_FILES": "mentions"}
    assert not intents(DiscordSettings.from_env(env)).message_content
    assert intents(DiscordSettings.from_env(env | {"DISCORD_THREAD_FOLLOWUPS": "on"})).message_content
    assert intents(DiscordSettings.from_env({"DISCORD_TOKEN": "t"})).message_content
    with pytest.raises(ConfigError, match="DISCORD_THREAD_FOLLOWUPS='off' is not a choice"):
        DiscordSettings.from_env(env | {"DISCORD_THREAD_FOLLOWUPS": "off"})

    async with running_harness(tmp_path, fake_model, settings, index_files="mentions") as h:
        fake = h.fake
        assert not fake.identify_payloads[-1]["intents"] & MESSAGE_CONTENT_INTENT
        question = await fake.send_message("hello")
        (answer,) = await h.answer(question, ending="hello")
        thread = await fake.start_thread(answer)
        unread = await fake.send_message("unread follow-up", channel_id=thread, mention_bot=False)
        mentioned = await fake.send_message("read mention", channel_id=thread)
        await h.answer(mentioned, ending="read mention")
        assert not any("unread" in last_user_text(r) for r in fake_model.chat_requests)
        [sent] = [d.data for d in fake.dispatched if d.event == "MESSAGE_CREATE" and d.data["id"] == unread["id"]]
        assert sent["content"] == ""  # as Discord sends it without the intent
