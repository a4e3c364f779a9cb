"""Slack's AI surface over signed Events API requests and Socket Mode, the fake Slack Web API and the scripted
model: the assistant pane (suggested prompts, titles, its messages as conversations of their own), the thread
status while the model works instead of the :eyes: reaction, tool calls as task updates of the stream, and
feedback buttons whose votes are stored with the run and counted in /usage and the metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bots.slack.adapter import channel_key
from bots.slack.pane import thread_title
from core.models import conversation_key
from core.settings import Settings
from core.store import Store
from core.store.feedback import FeedbackStore
from core.suggested_prompts import DEFAULT_SUGGESTED_PROMPTS
from tests.fakes.openai_server import FakeOpenAI, last_user_text
from tests.fakes.slack_server import (
    TEAM_ID,
    FakeSlack,
    Posted,
    app_mention,
    assistant_thread_context_changed,
    assistant_thread_message,
    assistant_thread_started,
    block_action,
    event_callback,
    feedback_press,
    feedback_press_payload,
    file_share_message,
    slash_command_form,
)
from tests.test_slack import ALICE, CHANNEL, SLACK_ASSISTANTS, Harness, running_harness

BOB = "U_BOB"
DM = "D_ALICE"  # Alice's direct message with the bot, where the pane's chats are threads
CHAT = "1700000300.000100"  # an assistant thread (a chat in the pane)

PANE_ASSISTANTS = (
    SLACK_ASSISTANTS
    + """suggested_prompts = [
  { title = "Deploy billing", message = "Please deploy billing" },
  { title = "Search the handbook", message = "How many holiday days do we get?" },
]
"""
)


@pytest.fixture
async def harness(tmp_path: Path, fake_model: FakeOpenAI, settings: Settings) -> AsyncIterator[Harness]:
    async with running_harness(tmp_path, fake_model, settings, assistants=PANE_ASSISTANTS, members=[ALICE, BOB]) as h:
        yield h


def statuses(slack: FakeSlack, channel: str, thread_ts: str) -> list[str]:
    """The statuses the bot set in a thread, in order (Slack's refusals included)."""
    return [
        c["status"]
        for c in slack.calls_to("assistant.threads.setStatus")
        if (c["channel_id"], c["thread_ts"]) == (channel, thread_ts)
    ]


async def answered(harness: Harness, channel: str, thread_ts: str, count: int = 1) -> list[Posted]:
    """Wait until ``count`` answers stand finished in the thread and its status is cleared; return the messages."""

    def done() -> bool:
        finished = [m for m in harness.slack.thread(channel, thread_ts) if not m.streaming and m.text]
        return len(finished) >= count and harness.slack.statuses.get((channel, thread_ts)) == ""

    await harness.slack.wait_until(done, timeout=10, what=f"{count} answers in {channel}/{thread_ts}, status cleared")
    return [m for m in harness.slack.thread(channel, thread_ts) if m.text]


async def share_handbook(harness: Harness, channel: str, ts: str, thread_ts: str | None = None) -> None:
    """A file shared where the bot is, so that file_search is offered there; waits until it is indexed."""
    info = harness.slack.add_file(f"F_{ts}", "handbook.md", b"# Holidays\nEvery employee has 27 days.\n")
    await harness.event(file_share_message(channel, ALICE, [info], ts, thread_ts=thread_ts))
    await harness.slack.wait_until(
        lambda: any("Indexed handbook.md" in m.text for m in harness.slack.messages.values() if m.channel == channel),
        what="the file indexed",
    )


async def open_chat(harness: Harness, thread_ts: str = CHAT) -> None:
    assert await harness.event(assistant_thread_started(DM, ALICE, thread_ts, viewing=CHANNEL)) == 200


def vote_value(message: Posted, vote: str) -> str:
    """The value of the feedback button ``vote`` (up or down) under ``message``."""
    [block] = [b for b in message.stop_blocks or message.blocks or [] if b["type"] == "context_actions"]
    [buttons] = block["elements"]
    return str(buttons["positive_button" if vote == "up" else "negative_button"]["value"])


def feedback_metric(harness: Harness, vote: str) -> float:
    assert harness.bot is not None
    value = harness.bot.service.metrics.registry.get_sample_value("threadline_feedback_total", {"vote": vote})
    return value or 0.0


async def press(harness: Harness, message: Posted, value: str, user: str, response_id: str) -> str:
    assert await harness.send(feedback_press(message, value, user, harness.slack.response_url(response_id))) == 200
    [response] = await harness.slack.wait_for_response(response_id)
    assert (response["response_type"], response["replace_original"]) == ("ephemeral", False)
    return str(response["text"])


async def usage(harness: Harness, response_id: str, channel: str = CHANNEL) -> str:
    body = slash_command_form("/usage", "", channel, ALICE, harness.slack.response_url(response_id))
    assert await harness.send(body) == 200
    [response] = await harness.slack.wait_for_response(response_id)
    return str(response["text"])


# -- the pane ---------------------------------------------------------------------------------------


async def test_a_new_chat_offers_the_assistants_suggested_prompts(harness: Harness) -> None:
    await open_chat(harness)
    [call] = await harness.slack.wait_for("assistant.threads.setSuggestedPrompts")
    assert (call["channel_id"], call["thread_ts"]) == (DM, CHAT)
    assert harness.slack.suggested[(DM, CHAT)] == [
        {"title": "Deploy billing", "message": "Please deploy billing"},
        {"title": "Search the handbook", "message": "How many holiday days do we get?"},
    ]
    assert not harness.slack.calls_to("chat.postMessage")  # no greeting: the prompts are the welcome


async def test_without_prompts_in_the_file_a_chat_offers_the_built_in_ones(harness: Harness) -> None:
    await harness.stop()
    plain = harness.tmp_path / "plain-assistants.toml"
    plain.write_text(SLACK_ASSISTANTS)
    harness.settings = replace(harness.settings, assistants_file=plain)
    await harness.start()
    await open_chat(harness)
    await harness.slack.wait_for("assistant.threads.setSuggestedPrompts")
    assert harness.slack.suggested[(DM, CHAT)] == [
        {"title": p.title, "message": p.message} for p in DEFAULT_SUGGESTED_PROMPTS
    ]


async def test_a_question_in_a_chat_is_answered_there_titled_and_shown_with_a_status(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """The chat's messages are a conversation of their own (the DM's thread), handled once though Bolt's assistant
    middleware and the app's message listener both see them; its first question titles it; "is thinking…"
    stands until the answer's text starts, and no reaction is added."""
    caplog.set_level(logging.INFO, logger="core.service")
    await open_chat(harness)
    await harness.slack.wait_for("assistant.threads.setSuggestedPrompts")
    await harness.event(
        assistant_thread_message(DM, ALICE, "what is the plan for the offsite", "1700000301.000100", CHAT)
    )
    [answer] = await answered(harness, DM, CHAT)
    assert answer.text == "Answer to: what is the plan for the offsite"
    assert harness.slack.titles[(DM, CHAT)] == "what is the plan for the offsite"
    assert statuses(harness.slack, DM, CHAT) == ["is thinking…", ""]
    methods = [c.method for c in harness.slack.calls]
    assert methods.index("assistant.threads.setStatus") < methods.index("chat.startStream")
    assert not harness.slack.calls_to("reactions.add")
    assert len(harness.model.chat_requests) == 1  # handled once
    assert not [r for r in caplog.records if "duplicate delivery" in r.getMessage()]

    await harness.event(assistant_thread_message(DM, ALICE, "and the budget", "1700000302.000100", CHAT))
    second = await answered(harness, DM, CHAT, 2)
    assert second[1].text == "Answer to: and the budget"
    assert len(harness.slack.calls_to("assistant.threads.setTitle")) == 1  # the first question names the chat
    assert harness.bot is not None
    key = conversation_key(channel_key(TEAM_ID, DM), CHAT)
    assert (await harness.bot.service.conversation_state(key)).begun
    history = [m.get("content") for m in harness.model.chat_requests[-1]["messages"]]
    assert any("what is the plan for the offsite" in str(text) for text in history)


async def test_two_chats_keep_their_own_conversations(harness: Harness) -> None:
    other = "1700000400.000100"
    for thread, text, ts in (
        (CHAT, "remember apples", "1700000301.000100"),
        (other, "what fruit", "1700000401.000100"),
    ):
        await open_chat(harness, thread)
        await harness.event(assistant_thread_message(DM, ALICE, text, ts, thread))
        await answered(harness, DM, thread)
    request = next(r for r in harness.model.chat_requests if last_user_text(r).endswith("what fruit"))
    assert not any("apples" in str(m.get("content")) for m in request["messages"])
    assert harness.slack.titles == {(DM, CHAT): "remember apples", (DM, other): "what fruit"}


async def test_a_change_of_the_channel_on_screen_is_acknowledged_and_changes_nothing(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """Bolt's default would read the thread and rewrite the bot's first answer there to keep the context in it."""
    caplog.set_level(logging.DEBUG, logger="bots.slack.pane")
    await open_chat(harness)
    await harness.event(assistant_thread_message(DM, ALICE, "hello", "1700000301.000100", CHAT))
    await answered(harness, DM, CHAT)
    before = len(harness.slack.calls)
    assert await harness.event(assistant_thread_context_changed(DM, ALICE, CHAT, "C_RANDOM")) == 200
    async with asyncio.timeout(10):
        while not any("now looks at C_RANDOM" in r.getMessage() for r in caplog.records):
            await asyncio.sleep(0.01)
    assert harness.slack.calls[before:] == []


async def test_the_pane_over_socket_mode(harness: Harness) -> None:
    await harness.stop()
    await harness.start(app_token=harness.slack.app_token, signing_secret=None)
    await harness.slack.wait_connected()
    for number, event in enumerate(
        (
            assistant_thread_started(DM, ALICE, CHAT),
            assistant_thread_message(DM, ALICE, "over the socket", "1700000301.000100", CHAT),
        )
    ):
        harness.slack.say(event)
        await harness.slack.wait_for_ack(
            await harness.slack.socket_send("events_api", event_callback(event, f"EvP{number}"))
        )
    [answer] = await answered(harness, DM, CHAT)
    assert answer.text == "Answer to: over the socket"
    assert harness.slack.suggested[(DM, CHAT)][0]["title"] == "Deploy billing"
    assert harness.slack.titles[(DM, CHAT)] == "over the socket"
    payload = feedback_press_payload(answer, vote_value(answer, "up"), ALICE, harness.slack.response_url("s1"))
    await harness.slack.wait_for_ack(await harness.slack.socket_send("interactive", payload))
    [response] = await harness.slack.wait_for_response("s1")
    assert "rated this answer helpful" in response["text"]
    assert feedback_metric(harness, "up") == 1


# -- the status while the model works --------------------------------------------------------------


async def test_the_status_says_a_file_search_and_is_cleared_when_the_answer_starts(harness: Harness) -> None:
    """A question the script answers with file_search: thinking, searching, cleared; the tool call is a task
    update of the stream, in progress then complete, in the message that carries the answer."""
    await open_chat(harness)
    await share_handbook(harness, DM, "1700000300.000200", thread_ts=CHAT)
    await harness.event(assistant_thread_message(DM, ALICE, "how many holiday days?", "1700000301.000100", CHAT))
    [*_, answer] = await answered(harness, DM, CHAT, 2)
    assert answer.text.startswith("Done [1]:")
    assert "27 days" in answer.text
    assert statuses(harness.slack, DM, CHAT) == ["is thinking…", "is searching the files…", ""]
    assert [(c["title"], c["status"]) for c in answer.chunks] == [
        ("Searching the files", "in_progress"),
        ("Searching the files", "complete"),
    ]
    assert len(harness.slack.calls_to("chat.startStream")) == 1  # the task cards and the words: one message


async def test_in_a_channel_with_slacks_ai_statuses_the_status_replaces_the_reaction(harness: Harness) -> None:
    harness.slack.status_in_any_thread = True
    ts = "1700000500.000100"
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> hello there", ts))
    [answer] = await answered(harness, CHANNEL, ts)
    assert answer.text == "Answer to: hello there"
    assert statuses(harness.slack, CHANNEL, ts) == ["is thinking…", ""]
    assert not harness.slack.calls_to("reactions.add")


async def test_where_slack_refuses_the_status_the_reaction_is_used_and_the_refusal_remembered(
    harness: Harness,
) -> None:
    """A thread Slack has no status for (invalid_thread_ts) is not asked again; a refusal of another kind (a
    missing scope) stops the bot asking in every place of that kind."""
    top = "1700000600.000100"
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> first", top))
    assert await harness.answer(CHANNEL, top) == ["Answer to: first"]
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> again", "1700000601.000100", thread_ts=top))
    await harness.answer(CHANNEL, top, 2, asked="1700000601.000100")
    assert statuses(harness.slack, CHANNEL, top) == ["is thinking…"]  # refused once, then remembered
    assert [c["timestamp"] for c in harness.slack.calls_to("reactions.add")] == [top, "1700000601.000100"]

    harness.slack.refuse("assistant.threads.setStatus", "missing_scope")
    for ts in ("1700000610.000100", "1700000620.000100"):
        await harness.event(app_mention(CHANNEL, ALICE, f"<@U_BOT> at {ts}", ts))
        await harness.answer(CHANNEL, ts)
    assert len(harness.slack.calls_to("assistant.threads.setStatus")) == 2  # the first new thread only
    assert harness.slack.reactions == set()


async def test_where_slack_refuses_task_updates_the_answer_streams_as_plain_text(harness: Harness) -> None:
    harness.slack.refuse_chunks.add("task_update")
    await share_handbook(harness, CHANNEL, "1700000690.000100")
    for ts in ("1700000700.000100", "1700000710.000100"):
        await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> how many holiday days?", ts))
        [answer] = await harness.answer(CHANNEL, ts)
        assert answer.startswith("Done [1]:")
    refused = len(harness.slack.calls_to("chat.startStream")) - len(
        harness.slack.calls_to("chat.startStream", include_failed=False)
    )
    assert refused == 1  # tried once, then plain text
    assert all(not m.chunks for m in harness.slack.messages.values())


async def test_a_tool_waiting_for_approval_leaves_its_card_pending(harness: Harness) -> None:
    ts = "1700000800.000100"
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> deploy billing", ts))
    await harness.slack.wait_until(lambda: any(m.blocks for m in harness.slack.thread(CHANNEL, ts)), what="approval")
    card, prompt = harness.slack.thread(CHANNEL, ts)
    assert card.text == ""  # the card of the tool, alone: the words come after the decision
    assert [(c["title"], c["status"], c.get("details")) for c in card.chunks] == [
        ("Using deploy", "in_progress", None),
        ("Using deploy", "pending", "Waiting for approval"),
    ]
    actions = next(b for b in prompt.blocks or [] if b["type"] == "actions")
    body = block_action(
        "threadline_approve", actions["elements"][0]["value"], ALICE, CHANNEL, prompt.ts,
        harness.slack.response_url("a1"), thread_ts=ts,
    )  # fmt: skip
    assert await harness.send(body) == 200
    [answer] = await harness.answer(CHANNEL, ts)
    assert answer.startswith("Done [1]:")
    last = harness.slack.thread(CHANNEL, ts)[-1]
    assert [(c["title"], c["status"]) for c in last.chunks] == [("Using deploy", "complete")]


# -- feedback ---------------------------------------------------------------------------------------


async def test_feedback_is_stored_with_the_run_counted_in_usage_and_metrics_and_may_be_changed(
    harness: Harness,
) -> None:
    ts = "1700000900.000100"
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> hello there", ts))
    await harness.answer(CHANNEL, ts)
    [answer] = harness.slack.thread(CHANNEL, ts)
    assert answer.stop_blocks is not None  # the buttons end the streamed answer
    assert "Feedback" not in await usage(harness, "u0")

    assert (
        await press(harness, answer, vote_value(answer, "up"), ALICE, "f1") == "Thanks: you rated this answer helpful."
    )
    assert "Feedback on answers: today 1 helpful, 0 not helpful" in await usage(harness, "u1")
    assert (feedback_metric(harness, "up"), feedback_metric(harness, "down")) == (1, 0)

    assert "already rated this answer helpful" in await press(harness, answer, vote_value(answer, "up"), ALICE, "f2")
    changed = await press(harness, answer, vote_value(answer, "down"), ALICE, "f3")
    assert changed == "Changed: you now rated this answer not helpful."
    await press(harness, answer, vote_value(answer, "up"), BOB, "f4")
    report = await usage(harness, "u2")
    assert "today 1 helpful, 1 not helpful; this month 1 helpful, 1 not helpful" in report
    assert (feedback_metric(harness, "up"), feedback_metric(harness, "down")) == (2, 1)

    assert harness.bot is not None
    run_id = vote_value(answer, "up").split(":", 1)[1]
    run = await harness.bot.service.store.get_run(run_id)
    assert run.channel == channel_key(TEAM_ID, CHANNEL)


async def test_feedback_in_a_thread_counts_in_its_channel(harness: Harness) -> None:
    await open_chat(harness)
    await harness.event(assistant_thread_message(DM, ALICE, "hello", "1700000301.000100", CHAT))
    [answer] = await answered(harness, DM, CHAT)
    await press(harness, answer, vote_value(answer, "down"), ALICE, "f1")
    assert "today 0 helpful, 1 not helpful" in await usage(harness, "u1", channel=DM)
    assert "Feedback" not in await usage(harness, "u2")  # another channel's


async def test_a_vote_on_a_run_unknown_here_gets_a_short_message(harness: Harness) -> None:
    ts = "1700001000.000100"
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> hello there", ts))
    await harness.answer(CHANNEL, ts)
    [answer] = harness.slack.thread(CHANNEL, ts)
    assert answer.stop_blocks is not None
    forged = replace(answer, stop_blocks=_with_value(answer.stop_blocks, "up:run_that_is_not_here"))
    text = await press(harness, forged, "up:run_that_is_not_here", ALICE, "f1")
    assert text == "I no longer have that answer, so your feedback was not recorded."
    elsewhere = replace(answer, channel="C_ELSEWHERE")  # a real run, pressed in another channel
    assert "no longer have that answer" in await press(harness, elsewhere, vote_value(answer, "up"), ALICE, "f2")
    assert feedback_metric(harness, "up") == 0


async def test_without_streaming_the_feedback_buttons_follow_in_a_message_of_their_own(harness: Harness) -> None:
    harness.slack.refuse("chat.startStream")
    ts = "1700001100.000100"
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> hello there", ts))
    assert await harness.answer(CHANNEL, ts) == ["Answer to: hello there"]
    await harness.slack.wait_until(lambda: len(harness.slack.thread(CHANNEL, ts)) == 2, what="the feedback message")
    buttons = harness.slack.thread(CHANNEL, ts)[1]
    assert buttons.text == "Was this answer helpful?"
    assert "helpful" in await press(harness, buttons, vote_value(buttons, "up"), ALICE, "f1")


async def test_an_upgraded_database_takes_votes_and_retention_takes_them_with_their_run(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = await Store.open(path, stop_before="m022_run_feedback")
    await old.close()
    store = await Store.open(path)
    try:
        assert "m022_run_feedback" in await store.applied_migrations()
        votes = FeedbackStore(store)
        assert await votes.record("run_missing", "slack:U1", "up", 1.0) == (False, None)
        run_id = await store.call(_a_run)
        assert await votes.record(run_id, "slack:U1", "up", 1.0) == (True, None)
        assert await votes.record(run_id, "slack:U1", "down", 2.0) == (True, "up")
        assert await votes.record(run_id, "slack:U1", "down", 3.0, scope="slack:T1:C_OTHER") == (False, None)
        counts = await votes.counts("slack:T1:C1", 0.0)
        assert (counts.up, counts.down) == (0, 1)
        await store.call(lambda db: db.execute("DELETE FROM runs WHERE id = ?", [run_id]))
        assert (await votes.counts("slack:T1:C1", 0.0)).total == 0
    finally:
        await store.close()


def test_a_chats_title_is_its_first_question_cut_at_a_word() -> None:
    assert thread_title("<@U_BOT>  what is   the plan") == "what is the plan"
    long = "how do we roll out the new billing service to every region without downtime next week"
    title = thread_title(long)
    assert title.endswith("…")
    assert len(title) <= 60
    assert long.startswith(title.removesuffix("…"))


def _a_run(db: Any) -> str:
    db.execute("INSERT INTO channels (key, platform, workspace, channel_id, created_at) VALUES (?, ?, ?, ?, ?)",
               ["slack:T1:C1", "slack", "T1", "C1", 0.0])  # fmt: skip
    db.execute("INSERT INTO threads (id, channel, created_at) VALUES ('thr_1', 'slack:T1:C1', 0.0)")
    db.execute(
        "INSERT INTO runs (id, thread_id, channel, assistant, status, created_at)"
        " VALUES ('run_1', 'thr_1', 'slack:T1:C1', 'a', 'completed', 0.0)"
    )
    return "run_1"


def _with_value(blocks: list[Any], value: str) -> list[Any]:
    copied = [dict(b) for b in blocks]
    element = dict(copied[0]["elements"][0])
    element["positive_button"] = dict(element["positive_button"], value=value)
    copied[0]["elements"] = [element]
    return copied
