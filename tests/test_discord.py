"""The Discord adapter over real protocols: discord.py against a fake Discord API and gateway, the scripted model."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import discord
import pytest
from dotenv import dotenv_values

from bots.discord.app import INTENT_MISSING, PERMISSIONS, DiscordBot, invite_url
from bots.discord.command_sync import definitions_differ
from bots.discord.config import DiscordSettings
from bots.discord.render import NOT_SHOWN_NOTE
from bots.live import EditBudget
from core.errors import ConfigError
from core.settings import Settings
from tests.fakes.discord_server import (
    ALICE,
    BOB,
    BOT_TOKEN,
    BOT_USER_ID,
    CHANNEL_ID,
    DM_CHANNEL_ID,
    EPHEMERAL,
    GUILD_ID,
    MESSAGE_CONTENT_INTENT,
    NO_VIEW_PERMS,
    OTHER_BOT,
    OTHER_CHANNEL_ID,
    TEAM_LEADS_ROLE_ID,
    THREAD_ID,
    FakeDiscord,
)
from tests.fakes.files import pdf_bytes
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, last_user_text, offered_tools, tool_results
from tests.tool_modules import team_tools

ROOT = Path(__file__).resolve().parent.parent
SANDBOX_PYTHON = ROOT / ".sandbox" / "bin" / "python"

DISCORD_ASSISTANTS = """
default = "discordbot"
tool_modules = ["tests.tool_modules.team_tools"]

[[assistants]]
name = "discordbot"
instructions = "You help in Discord."
model = "fake-model"
tools = ["deploy", "file_search", "code_interpreter"]
"""

LONG_CODE = "```python\n" + "\n".join(f"print('line {i:03d} of a long script')" for i in range(120)) + "\n```"


def chat_script(req: dict[str, Any]) -> Reply:
    """Searches files for questions, deploys when told to, writes long code when asked, else answers briefly."""
    question = last_user_text(req).split(": ", 1)[-1]
    if results := tool_results(req):
        return Reply(text=f"Done [1]: {results[0]['content'][:80]}", chunk_delay=0.001)
    if "deploy" in question:
        return Reply(tool_calls=(ToolCall("deploy", {"service": "billing"}),))
    if "chart" in question:
        return Reply(
            tool_calls=(ToolCall("code_interpreter", {"code": "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])"}),)
        )
    if "long script" in question:
        return Reply(text="Here it is:\n\n" + LONG_CODE, chunk_delay=0.0)
    if "slowly" in question:
        return Reply(text=" ".join(f"word{i}" for i in range(80)), chunk_delay=0.004)
    if "file_search" in offered_tools(req) and question.endswith("?"):
        return Reply(tool_calls=(ToolCall("file_search", {"query": question}),))
    return Reply(text=f"Answer to: {question}", chunk_delay=0.001)


class Harness:
    def __init__(self, fake: FakeDiscord, model: FakeOpenAI, settings: Settings) -> None:
        self.fake = fake
        self.model = model
        self.settings = settings
        self.bot: DiscordBot | None = None

    def discord_settings(self, **overrides: Any) -> DiscordSettings:
        base = DiscordSettings(
            token=BOT_TOKEN, api_url=self.fake.api_base, gateway_url=self.fake.gateway_url, edit_interval=0.2
        )
        return replace(base, **overrides)

    async def start(self, **overrides: Any) -> DiscordBot:
        self.bot = await DiscordBot.start(self.settings, self.discord_settings(**overrides), guild_ready_timeout=0.05)
        return self.bot

    async def stop(self) -> None:
        if self.bot is not None:
            await self.bot.stop()
            self.bot = None

    def replies_to(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        """The bot's messages that reply to ``message``."""
        return [
            m
            for m in self.fake.bot_messages(int(message["channel_id"]))
            if (m.get("message_reference") or {}).get("message_id") == message["id"]
        ]

    async def answer(self, message: dict[str, Any], *, pieces: int = 1, ending: str = "") -> list[dict[str, Any]]:
        """Wait until the reply to ``message`` (and ``pieces - 1`` continuations) stand, ending with ``ending``."""
        channel = int(message["channel_id"])

        def after() -> list[dict[str, Any]]:
            mine = self.fake.bot_messages(channel)
            starts = [i for i, m in enumerate(mine) if m in self.replies_to(message)]
            return mine[starts[0] : starts[0] + pieces] if starts else []

        def done() -> bool:
            found = after()
            return len(found) == pieces and found[-1]["content"].endswith(ending)

        await self.fake.wait_until(done, timeout=10, what=f"the answer to {message['content']!r}")
        return after()


@contextlib.asynccontextmanager
async def running_harness(
    tmp_path: Path,
    model: FakeOpenAI,
    settings: Settings,
    *,
    assistants: str = DISCORD_ASSISTANTS,
    fake: FakeDiscord | None = None,
    **start: Any,
) -> AsyncIterator[Harness]:
    """The bot on the fake Discord gateway (a new one, or ``fake``), with ``assistants`` as its assistants file
    and the chat script; ``start``: DiscordSettings overrides. Stopped at the end."""
    path = tmp_path / "discord-assistants.toml"
    path.write_text(assistants)
    model.script = chat_script
    async with contextlib.AsyncExitStack() as stack:
        if fake is None:
            fake = await stack.enter_async_context(FakeDiscord())
        fake.patch_discord()  # discord.py keeps its endpoints on classes: restored when the fake exits
        h = Harness(fake, model, replace(settings, assistants_file=path))
        await h.start(**start)
        try:
            yield h
        finally:
            await h.stop()


@pytest.fixture
async def harness(tmp_path: Path, fake_model: FakeOpenAI, settings: Settings) -> AsyncIterator[Harness]:
    async with running_harness(tmp_path, fake_model, settings) as h:
        yield h


# -- conversation ---------------------------------------------------------------------------------


async def test_mention_gets_a_reply_that_streams_through_edits(harness: Harness) -> None:
    fake = harness.fake
    question = await fake.send_message("tell me slowly")
    (reply,) = await harness.answer(question, ending="word79")
    expected = " ".join(f"word{i}" for i in range(80))
    assert reply["content"] == expected
    assert reply["message_reference"]["message_id"] == question["id"]  # a reply to the mention
    shown = fake.history[int(reply["id"])]
    assert len(shown) >= 2, "the answer should appear in steps, not all at the end"
    assert all(expected.startswith(step) for step in shown)
    assert CHANNEL_ID in fake.typing
    (post,) = fake.calls_to("POST", rf"/channels/{CHANNEL_ID}/messages")
    assert post.json["allowed_mentions"]["parse"] == []  # the model's text pings nobody
    assert fake.calls_to("GET", r"/channels/\d+/messages") == []  # never reads channel history
    # What the model saw: the person's words, without the mention.
    assert "<@" not in last_user_text(harness.model.requests[-1])


async def test_typing_is_skipped_when_the_request_budget_is_spent_and_the_answer_still_comes(
    harness: Harness,
) -> None:
    assert harness.bot is not None
    harness.bot.client.replies._budget = EditBudget(per_second=0.01, burst=0.01)  # as if many answers just started
    question = await harness.fake.send_message("tell me slowly")
    (reply,) = await harness.answer(question, ending="word79")
    assert reply["content"] == " ".join(f"word{i}" for i in range(80))
    assert harness.fake.typing == []


async def test_a_long_answer_continues_in_new_messages_without_breaking_code(harness: Harness) -> None:
    fake = harness.fake
    question = await fake.send_message("write a long script")
    pieces = await harness.answer(question, pieces=3, ending="```")
    assert all(len(p["content"]) <= 2000 for p in pieces)
    assert all(p["content"].count("```") % 2 == 0 for p in pieces), "each piece closes the code block it opens"
    assert all(p["content"].lstrip().startswith(("Here it is", "```python")) for p in pieces)
    text = "\n".join(p["content"] for p in pieces)
    assert all(f"line {i:03d}" in text for i in range(120))
    assert "message_reference" not in pieces[1]  # only the first piece replies to the question


async def test_direct_message_needs_no_mention(harness: Harness) -> None:
    question = await harness.fake.send_message("hello in private", channel_id=DM_CHANNEL_ID, mention_bot=False)
    (reply,) = await harness.answer(question, ending="hello in private")
    assert reply["content"] == "Answer to: hello in private"
    assert harness.bot is not None
    thread = await harness.bot.service.store.current_thread(f"discord:dm:{DM_CHANNEL_ID}")
    stored = await harness.bot.service.store.thread_messages(thread)
    assert [m.text for m in stored if m.role == "user"] == ["hello in private"]


async def test_a_thread_is_a_channel_of_its_own(harness: Harness) -> None:
    fake = harness.fake
    in_channel = await fake.send_message("first in the channel")
    await harness.answer(in_channel, ending="channel")
    in_thread = await fake.send_message("first in the thread", channel_id=THREAD_ID)
    await harness.answer(in_thread, ending="thread")
    history = [m for r in harness.model.requests for m in r["messages"] if m["role"] == "user"]
    thread_request = harness.model.requests[-1]["messages"]
    assert not any("in the channel" in str(m.get("content")) for m in thread_request), "the thread has its own history"
    assert len(history) >= 2


async def test_messages_without_a_mention_and_from_bots_are_ignored(harness: Harness) -> None:
    fake = harness.fake
    await fake.send_message("just chatting", mention_bot=False)
    await fake.send_message("a bot talking", author=OTHER_BOT)
    last = await fake.send_message("now you")
    await harness.answer(last, ending="now you")
    assert [m["content"] for m in fake.bot_messages(CHANNEL_ID)] == ["Answer to: now you"]
    assert len(harness.model.requests) == 1


async def test_a_replayed_message_is_answered_once(harness: Harness) -> None:
    fake = harness.fake
    notes = fake.attachment("notes.txt", b"The office opens at 9.")
    question = await fake.send_message("only once", attachments=[notes])
    await fake.wait_until(
        lambda: [m["content"] for m in harness.replies_to(question)][-1:] == ["Answer to: only once"],
        what="the answer",
    )
    await fake.dispatch("MESSAGE_CREATE", question)  # the same message again, as a resume may replay it
    after = await fake.send_message("next one")
    await harness.answer(after, ending="next one")
    contents = [m["content"] for m in fake.bot_messages(CHANNEL_ID)]
    assert contents == [contents[0], "Answer to: only once", "Answer to: next one"]
    assert contents[0].startswith("Indexed notes.txt")  # the file's note, once too
    assert fake.downloads == [notes.url]


async def test_an_error_on_our_side_gets_a_short_answer_and_other_channels_go_on(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = harness.fake
    assert harness.bot is not None
    knowledge = harness.bot.service.knowledge

    async def broken_add(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(knowledge, "add", broken_add)  # fault injection: the knowledge base fails unexpectedly
    broken = await fake.send_message("take this", attachments=[fake.attachment("a.txt", b"text")])
    await fake.wait_until(lambda: bool(harness.replies_to(broken)), what="the apology")
    (apology,) = harness.replies_to(broken)
    assert "went wrong on my side" in apology["content"]
    assert "disk on fire" not in apology["content"]  # the detail goes to the log only
    other = await fake.send_message("still there?", channel_id=OTHER_CHANNEL_ID)
    await harness.answer(other, ending="still there?")


async def test_gateway_disconnect_and_resume_lose_and_double_nothing(harness: Harness) -> None:
    fake = harness.fake
    before = await fake.send_message("before the drop")
    await fake.disconnect(4000)
    during = await fake.send_message("while disconnected")  # waits in the session log for the RESUME
    await fake.wait_resumed()
    after = await fake.send_message("after the resume")
    for message in (before, during, after):
        await harness.answer(message, ending=message["content"].removeprefix(f"<@{BOT_USER_ID}> "))
    contents = [m["content"] for m in fake.bot_messages(CHANNEL_ID)]
    assert sorted(contents) == sorted(
        ["Answer to: before the drop", "Answer to: while disconnected", "Answer to: after the resume"]
    )
    assert fake.identifies == 1
    assert fake.resumes == 1


async def test_a_rate_limited_edit_is_retried_and_the_answer_completes(harness: Harness) -> None:
    fake = harness.fake
    fake.fail_next("PATCH", r"/channels/\d+/messages/\d+", status=429, retry_after=0.05)
    question = await fake.send_message("tell me slowly")
    (reply,) = await harness.answer(question, ending="word79")
    assert reply["content"] == " ".join(f"word{i}" for i in range(80))
    assert next(c.status for c in fake.calls_to("PATCH", r"/channels/\d+/messages/\d+")) == 429


# -- answers Discord refuses to show -----------------------------------------------------------------

SLOW_ANSWER = " ".join(f"word{i}" for i in range(80))  # chat_script's answer to "tell me slowly"
POSTS = rf"/channels/{CHANNEL_ID}/messages"
EDITS = rf"/channels/{CHANNEL_ID}/messages/\d+"


async def refused_answer_and_another_channel(harness: Harness) -> None:
    """Ask in CHANNEL_ID, where Discord refuses calls; once it has refused one, ask in another channel, which is
    answered in the meantime; then wait until the bot has tried to say that the answer was not shown."""
    fake = harness.fake
    await fake.send_message("tell me slowly")
    await fake.wait_until(lambda: any(c.status >= 400 for c in fake.calls if c.path.startswith(POSTS)), what="refusals")
    other = await fake.send_message("still there?", channel_id=OTHER_CHANNEL_ID)
    assert (await harness.answer(other, ending="still there?"))[0]["content"] == "Answer to: still there?"
    await fake.wait_until(lambda: bool(notes_tried(fake)), what="the message saying the answer was not shown")
    assert harness.bot is not None
    await harness.bot.service.wait_idle()
    await harness.bot.client.replies.wait_idle()


def notes_tried(fake: FakeDiscord) -> list[Any]:
    return [c for c in fake.calls_to("POST", POSTS) if (c.json or {}).get("content") == NOT_SHOWN_NOTE]


def not_shown_count(harness: Harness) -> float | None:
    assert harness.bot is not None
    labels = {"platform": "discord", "kind": "answer_not_shown"}
    return harness.bot.service.metrics.registry.get_sample_value("threadline_platform_errors_total", labels)


def warnings_about_it(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warnings that say the answer was not shown; no warning carries the answer, no log the token."""
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [w for w in warnings if "word1" in w]
    assert BOT_TOKEN not in caplog.text
    return [w for w in warnings if "could not show the answer" in w]


@pytest.mark.parametrize(
    ("method", "path", "status", "when"),
    [
        pytest.param("PATCH", EDITS, 403, None, id="every edit 403"),
        # discord.py gives a 500 up after 25 seconds of retries, then raises as for this 503
        pytest.param("PATCH", EDITS, 503, None, id="every edit 503"),
        pytest.param("POST", POSTS, 503, lambda body: "word" in str(body.get("content")), id="every answer post 503"),
    ],
)
async def test_an_answer_discord_refuses_to_show_ends_with_one_short_message(
    harness: Harness,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    status: int,
    when: Any,
) -> None:
    """Discord refuses the calls that show the answer, every time: whatever of it could be shown stands, one
    message of its own says the answer could not be posted in full, the log says why once, and another channel
    is answered meanwhile."""
    caplog.set_level(logging.INFO)
    fake = harness.fake
    fake.refuse(method, path, status=status, when=when)
    await refused_answer_and_another_channel(harness)
    *shown, note = fake.bot_messages(CHANNEL_ID)
    assert note["content"] == NOT_SHOWN_NOTE
    assert "ask again" in note["content"]
    assert "log" in note["content"]
    assert "message_reference" not in note
    assert all(SLOW_ANSWER.startswith(m["content"]) and m["content"] != SLOW_ANSWER for m in shown)
    assert len(shown) == (0 if method == "POST" else 1)
    assert not_shown_count(harness) == 1
    [warning] = warnings_about_it(caplog)
    assert f"HTTP {status}" in warning


async def test_when_discord_refuses_the_short_message_too_the_bot_logs_it_and_goes_on(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fake = harness.fake
    fake.refuse("POST", POSTS, status=503)
    fake.refuse("PATCH", EDITS, status=503)
    await refused_answer_and_another_channel(harness)
    assert len(notes_tried(fake)) == 1  # tried once
    assert fake.bot_messages(CHANNEL_ID) == []
    assert len(warnings_about_it(caplog)) == 1
    assert any("was not shown either" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    fake.allow("POST", POSTS)
    fake.allow("PATCH", EDITS)
    again = await fake.send_message("and now?")
    assert (await harness.answer(again, ending="and now?"))[0]["content"] == "Answer to: and now?"


# -- files ------------------------------------------------------------------------------------------


async def test_an_attachment_is_indexed_confirmed_and_cited(harness: Harness) -> None:
    fake = harness.fake
    pdf = fake.attachment("handbook.pdf", pdf_bytes(["Expenses are approved by the team lead within 5 days."]))
    shared = await fake.send_message("our handbook", mention_bot=False, attachments=[pdf])
    await fake.wait_until(lambda: bool(harness.replies_to(shared)), what="the note about the file")
    (note,) = harness.replies_to(shared)
    assert note["content"].startswith("Indexed handbook.pdf")
    assert (CHANNEL_ID, int(shared["id"]), "📎", True) in fake.reactions
    question = await fake.send_message("who approves expenses?")
    (reply,) = await harness.answer(question, ending="page 1")
    assert "team lead" in reply["content"]
    jump = f"https://discord.com/channels/{GUILD_ID}/{CHANNEL_ID}/{shared['id']}"
    assert f"[handbook.pdf]({jump})" in reply["content"], reply["content"]


async def test_a_refused_attachment_says_why_and_nothing_else_breaks(harness: Harness) -> None:
    fake = harness.fake
    blob = fake.attachment("tool.exe", b"MZ\x90\x00" + bytes(range(256)) * 8, content_type="application/octet-stream")
    shared = await fake.send_message("here you go", attachments=[blob])
    await fake.wait_until(
        lambda: "Answer to: here you go" in [m["content"] for m in harness.replies_to(shared)], what="the answer"
    )
    notes = [m["content"] for m in harness.replies_to(shared)]
    assert any("tool.exe" in n and "Indexed" not in n for n in notes), notes
    assert (CHANNEL_ID, int(shared["id"]), "⚠️", True) in fake.reactions


async def test_a_failed_download_is_refused_and_the_replayed_message_adds_the_file(harness: Harness) -> None:
    fake = harness.fake
    notes = fake.attachment("notes.txt", b"Deploys happen on Tuesdays.")
    fake.fail_next("GET", r"/attachments/\d+/notes\.txt", status=503)
    shared = await fake.send_message("notes", mention_bot=False, attachments=[notes])
    await fake.wait_until(lambda: bool(harness.replies_to(shared)), what="the note about the download")
    [refusal] = [m["content"] for m in harness.replies_to(shared)]
    assert refusal == "I could not download notes.txt from Discord, so it was not added; try again."
    assert (CHANNEL_ID, int(shared["id"]), "⚠️", True) in fake.reactions
    assert harness.bot is not None
    key = f"discord:{GUILD_ID}:{CHANNEL_ID}"
    assert await harness.bot.service.knowledge.files(key) == []  # nothing kept: the next delivery tries again
    await fake.dispatch("MESSAGE_CREATE", shared)
    await fake.wait_until(lambda: len(harness.replies_to(shared)) == 2, what="the note about the file")
    assert harness.replies_to(shared)[-1]["content"] == "Indexed notes.txt (1 chunk)."
    assert [f.status for f in await harness.bot.service.knowledge.files(key)] == ["completed"]
    assert fake.downloads == [notes.url, notes.url]


async def test_attachments_can_be_limited_to_messages_for_the_bot(harness: Harness) -> None:
    await harness.stop()
    await harness.start(index_files="mentions")
    fake = harness.fake
    ignored = fake.attachment("chatter.txt", b"not for the bot")
    await fake.send_message("fyi", mention_bot=False, attachments=[ignored])
    kept = fake.attachment("notes.txt", b"Deploys happen on Tuesdays.")
    question = await fake.send_message("keep this", attachments=[kept])
    await fake.wait_until(
        lambda: "Answer to: keep this" in [m["content"] for m in harness.replies_to(question)], what="the answer"
    )
    assert harness.bot is not None
    names = [f.name for f in await harness.bot.service.knowledge.files(f"discord:{GUILD_ID}:{CHANNEL_ID}")]
    assert names == ["notes.txt"]
    assert fake.downloads == [kept.url]


async def test_export_attaches_the_conversation_to_an_ephemeral_follow_up(harness: Harness) -> None:
    fake = harness.fake
    notes = fake.attachment("notes.txt", b"The office opens at 9 on weekdays.")
    shared = await fake.send_message("notes", mention_bot=False, attachments=[notes])
    await fake.wait_until(lambda: bool(harness.replies_to(shared)), what="the note about the file")
    question = await fake.send_message("when does the office open?")
    await harness.answer(question)
    assert harness.bot is not None
    await harness.bot.service.wait_idle()
    assert {c["name"] for c in fake.synced_commands["global"]} >= {"export"}

    export = await fake.slash_command("export")
    await fake.wait_until(lambda: bool(fake.followups.get(export.token)), what="the /export answer")
    assert fake.interaction_responses[export.id][0]["data"]["flags"] & EPHEMERAL
    answer = fake.followups[export.token][-1]
    assert answer["flags"] & EPHEMERAL
    assert "as Markdown" in answer["content"]
    [attachment] = answer["attachments"]
    assert attachment["filename"].endswith(".md")
    [markdown] = [data.decode() for name, data in fake.uploads if name == attachment["filename"]]
    assert markdown.startswith(f"# Conversation in discord:{GUILD_ID}:{CHANNEL_ID}")
    assert "when does the office open?" in markdown
    assert "### Tool call: file_search" in markdown
    assert "The office opens at 9" in markdown  # the tool's result
    assert "Sources:\n- [1] notes.txt" in markdown


async def test_a_chart_from_the_code_interpreter_is_posted_as_a_file(harness: Harness) -> None:
    await harness.stop()
    harness.settings = replace(harness.settings, code_interpreter=True, sandbox_python=SANDBOX_PYTHON)
    await harness.start()
    fake = harness.fake
    await fake.send_message("draw a chart")
    await fake.wait_until(lambda: any(name == "figure-1.png" for name, _ in fake.uploads), timeout=20, what="the PNG")
    (data,) = [data for name, data in fake.uploads if name == "figure-1.png"]
    assert data.startswith(b"\x89PNG")
    await fake.wait_until(
        lambda: any(m["content"].startswith("Done") for m in fake.bot_messages(CHANNEL_ID)), what="the answer"
    )


# -- slash commands -----------------------------------------------------------------------------


async def test_slash_commands_are_deferred_ephemeral_and_act_on_their_channel(harness: Harness) -> None:
    fake = harness.fake
    assert {c["name"] for c in fake.synced_commands["global"]} >= {"reset", "files", "forget"}
    notes = fake.attachment("notes.txt", b"The office opens at 9.")
    other = fake.attachment("other.txt", b"Another channel's file.")
    for message in (
        await fake.send_message("notes", mention_bot=False, attachments=[notes]),
        await fake.send_message("other", mention_bot=False, attachments=[other], channel_id=OTHER_CHANNEL_ID),
    ):
        await fake.wait_until(lambda m=message: bool(harness.replies_to(m)), what="a file note")

    listing = await fake.slash_command("files")
    await fake.wait_until(lambda: bool(fake.followups.get(listing.token)), what="the /files answer")
    first = fake.interaction_responses[listing.id][0]
    assert first["type"] == 5
    assert first["data"]["flags"] & EPHEMERAL
    text = fake.followups[listing.token][-1]["content"]
    assert "notes.txt" in text
    assert "other.txt" not in text

    suggestions = await fake.autocomplete("forget", "name", "no")
    await fake.wait_until(lambda: bool(fake.interaction_responses.get(suggestions.id)), what="autocomplete")
    choices = fake.interaction_responses[suggestions.id][0]["data"]["choices"]
    assert [c["value"] for c in choices] == ["notes.txt"]

    forget = await fake.slash_command("forget", {"name": "notes.txt"})
    await fake.wait_until(lambda: bool(fake.followups.get(forget.token)), what="the /forget answer")
    assert fake.followups[forget.token][-1]["content"] == "Removed notes.txt from this channel's files."
    assert harness.bot is not None
    service = harness.bot.service
    assert await service.knowledge.files(f"discord:{GUILD_ID}:{CHANNEL_ID}") == []
    assert len(await service.knowledge.files(f"discord:{GUILD_ID}:{OTHER_CHANNEL_ID}")) == 1

    question = await fake.send_message("remember me")
    await harness.answer(question, ending="remember me")
    reset = await fake.slash_command("reset")
    await fake.wait_until(lambda: bool(fake.followups.get(reset.token)), what="the /reset answer")
    assert fake.followups[reset.token][-1]["content"].startswith("Started a new conversation")
    after = await fake.send_message("who am I")
    await harness.answer(after, ending="who am I")
    assert not any("remember me" in str(m.get("content")) for m in harness.model.requests[-1]["messages"])


async def test_guild_ids_sync_the_commands_to_those_guilds_only(harness: Harness) -> None:
    await harness.stop()
    harness.fake.synced_commands.clear()
    await harness.start(guild_ids=(GUILD_ID,))
    assert {c["name"] for c in harness.fake.synced_commands[GUILD_ID]} >= {"reset", "files", "forget"}
    assert "global" not in harness.fake.synced_commands


# -- approvals ------------------------------------------------------------------------------------


def _buttons(message: dict[str, Any]) -> dict[str, str]:
    return {b["label"]: b["custom_id"] for row in message.get("components") or [] for b in row["components"]}


async def _approval_message(harness: Harness) -> dict[str, Any]:
    fake = harness.fake
    await fake.wait_until(lambda: any(_buttons(m) for m in fake.bot_messages(CHANNEL_ID)), what="the approval buttons")
    return next(m for m in fake.bot_messages(CHANNEL_ID) if _buttons(m))


async def test_approval_buttons_discord_refuses_stop_the_run_with_one_short_message(harness: Harness) -> None:
    """Nobody could press buttons that are not there, and the run would hold its channel until the approval
    expired: it is stopped, the channel told once, and the next question answered at once."""
    fake = harness.fake
    fake.refuse("POST", POSTS, status=400, code=50035, when=lambda body: bool((body or {}).get("components")))
    await fake.send_message("please deploy billing")

    def notes() -> list[str]:
        return [m["content"] for m in fake.bot_messages(CHANNEL_ID) if m["content"].startswith("⚠️")]

    await fake.wait_until(lambda: bool(notes()), what="the note that the buttons could not be shown")
    assert harness.bot is not None
    store = harness.bot.service.store
    later = await fake.send_message("still there?")
    await harness.answer(later, ending="still there?")
    [note] = notes()  # not also "Cancelled."
    assert "could not show the Approve / Deny buttons" in note
    runs = await store.thread_runs(await store.current_thread(f"discord:{GUILD_ID}:{CHANNEL_ID}"))
    assert runs[0].status == "cancelled"
    assert not [e for e in team_tools.TIMELINE if e.startswith("deploy")]


async def test_approve_runs_the_tool_and_a_refused_press_changes_nothing(harness: Harness) -> None:
    fake = harness.fake
    question = await fake.send_message("please deploy billing")
    approval = await _approval_message(harness)
    assert "**deploy**" in approval["content"]
    assert '"service": "billing"' in approval["content"]

    refused = await fake.press_button(approval, _buttons(approval)["Approve"], user=BOB, permissions=NO_VIEW_PERMS)
    await fake.wait_until(lambda: bool(fake.followups.get(refused.token)), what="the refusal")
    assert fake.followups[refused.token][-1]["flags"] & EPHEMERAL
    assert "can see this channel" in fake.followups[refused.token][-1]["content"]
    assert team_tools.TIMELINE == []

    await fake.press_button(approval, _buttons(approval)["Approve"], user=ALICE)
    await fake.wait_until(
        lambda: (fake.message(int(approval["id"])) or {}).get("content", "").startswith("✅"), what="the decision"
    )
    decided = fake.message(int(approval["id"]))
    assert decided is not None
    assert f"approved by <@{ALICE.id}>" in decided["content"]
    assert not decided.get("components")
    await fake.wait_until(
        lambda: any(m["content"].startswith("Done") for m in fake.bot_messages(CHANNEL_ID)), what="the answer"
    )
    assert [e for e in team_tools.TIMELINE if e.startswith("deploy")] != []
    assert question["id"]


async def test_approval_in_a_channel_with_an_earlier_answer(harness: Harness) -> None:
    """The paused run's history holds an answer: it must survive the paused state (issue 14)."""
    fake = harness.fake
    await fake.send_message("hello there")
    await fake.wait_until(
        lambda: any(m["content"] == "Answer to: hello there" for m in fake.bot_messages(CHANNEL_ID)),
        what="the first answer",
    )
    await fake.send_message("please deploy billing")
    approval = await _approval_message(harness)
    await fake.press_button(approval, _buttons(approval)["Approve"], user=ALICE)
    await fake.wait_until(
        lambda: any(m["content"].startswith("Done [1]: billing deployed") for m in fake.bot_messages(CHANNEL_ID)),
        what="the answer after the approval",
    )
    assert team_tools.TIMELINE == ["deployed billing"]


async def test_deny_tells_the_model_and_the_channel(harness: Harness) -> None:
    fake = harness.fake
    await fake.send_message("please deploy billing")
    approval = await _approval_message(harness)
    await fake.press_button(approval, _buttons(approval)["Deny"], user=ALICE)
    await fake.wait_until(
        lambda: "denied by" in (fake.message(int(approval["id"])) or {}).get("content", ""), what="the decision"
    )
    await fake.wait_until(lambda: len(harness.model.requests) >= 2, what="the model hearing of the denial")
    assert team_tools.TIMELINE == []


async def test_approval_buttons_work_after_a_restart(harness: Harness) -> None:
    fake = harness.fake
    await fake.send_message("please deploy billing")
    approval = await _approval_message(harness)
    await harness.stop()
    await harness.start()
    await fake.wait_ready(count=2)
    await fake.press_button(approval, _buttons(approval)["Approve"], user=ALICE)
    await fake.wait_until(
        lambda: any(m["content"].startswith("Done") for m in fake.bot_messages(CHANNEL_ID)),
        timeout=10,
        what="the answer after the restart",
    )
    assert [e for e in team_tools.TIMELINE if e.startswith("deploy")] != []


async def test_an_expired_approval_loses_its_buttons(harness: Harness) -> None:
    await harness.stop()
    harness.settings = replace(harness.settings, approval_timeout=0.3)
    await harness.start()
    fake = harness.fake
    await fake.send_message("please deploy billing")
    approval = await _approval_message(harness)
    await fake.wait_until(
        lambda: (fake.message(int(approval["id"])) or {}).get("content", "").startswith("⌛"), what="expiry"
    )
    assert not (fake.message(int(approval["id"])) or {}).get("components")


# -- start-up ---------------------------------------------------------------------------------------


async def test_missing_message_content_intent_stops_with_what_to_enable(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeDiscord(close_code_on_identify=4014) as fake:
        fake.patch_discord()
        ds = DiscordSettings(token=BOT_TOKEN, api_url=fake.api_base, gateway_url=fake.gateway_url)
        with pytest.raises(ConfigError) as caught:
            await DiscordBot.start(settings, ds, guild_ready_timeout=0.05)
    assert str(caught.value) == INTENT_MISSING
    assert "MESSAGE CONTENT INTENT" in INTENT_MISSING


async def test_a_wrong_token_stops_with_what_to_do(settings: Settings) -> None:
    async with FakeDiscord() as fake:
        fake.patch_discord()
        ds = DiscordSettings(token="not-the-token", api_url=fake.api_base, gateway_url=fake.gateway_url)
        with pytest.raises(ConfigError, match="Reset Token"):
            await DiscordBot.start(settings, ds)


async def _run_entry_point(tmp_path: Path, **extra: str) -> tuple[int, str]:
    """``python -m bots.discord`` in a clean environment; returns its exit code and everything it wrote."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SMTP_", "THREADLINE_", "DISCORD_"))}
    env |= {
        "THREADLINE_DB": str(tmp_path / "entry.db"),
        "THREADLINE_TOKENIZER": "estimate",
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "PYTHONPATH": str(ROOT),
        **extra,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots.discord",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(60):
        out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def test_the_entry_point_says_what_to_do_without_a_token_or_the_intent(tmp_path: Path) -> None:
    code, out = await _run_entry_point(tmp_path)
    assert code == 2
    assert "DISCORD_TOKEN is not set" in out
    async with FakeDiscord(close_code_on_identify=4014) as fake:
        code, out = await _run_entry_point(
            tmp_path, DISCORD_TOKEN=BOT_TOKEN, DISCORD_API_URL=fake.api_base, DISCORD_GATEWAY_URL=fake.gateway_url
        )
    assert code == 2
    assert INTENT_MISSING in out
    assert BOT_TOKEN not in out  # the token never reaches the log
    assert "Traceback" not in out


def test_settings_name_the_variable_and_the_example_holds_the_defaults() -> None:
    with pytest.raises(ConfigError, match="DISCORD_TOKEN"):
        DiscordSettings.from_env({})
    with pytest.raises(ConfigError, match="DISCORD_GUILD_IDS"):
        DiscordSettings.from_env({"DISCORD_TOKEN": "t", "DISCORD_GUILD_IDS": "123,abc"})
    with pytest.raises(ConfigError, match="DISCORD_INDEX_FILES"):
        DiscordSettings.from_env({"DISCORD_TOKEN": "t", "DISCORD_INDEX_FILES": "some"})
    example = {k: v or "" for k, v in dotenv_values(ROOT / ".env.example").items() if k.startswith("DISCORD_")}
    assert DiscordSettings.from_env(example | {"DISCORD_TOKEN": "t"}) == DiscordSettings(token="t")
    parsed = DiscordSettings.from_env({"DISCORD_TOKEN": "t", "DISCORD_GUILD_IDS": " 1, 2 "})
    assert parsed.guild_ids == (1, 2)


def test_the_invite_url_asks_for_exactly_what_the_bot_uses() -> None:
    url = invite_url(1234)
    permissions = int(re.search(r"permissions=(\d+)", url).group(1))  # type: ignore[union-attr]
    assert discord.Permissions(permissions) == PERMISSIONS
    assert "scope=bot+applications.commands" in url
    assert not PERMISSIONS.administrator
    assert not PERMISSIONS.mention_everyone


async def test_usage_is_registered_and_answers_only_the_person_who_asked(harness: Harness) -> None:
    fake = harness.fake
    [synced] = [c for c in fake.synced_commands["global"] if c["name"] == "usage"]
    assert [choice["value"] for choice in synced["options"][0]["choices"]] == ["all"]
    question = await fake.send_message("hello")
    await harness.answer(question)
    assert harness.bot is not None
    await harness.bot.service.wait_idle()
    [run] = await harness.bot.service.store.runs_with_status(["completed"])

    usage = await fake.slash_command("usage")
    await fake.wait_until(lambda: bool(fake.followups.get(usage.token)), what="the /usage answer")
    assert fake.interaction_responses[usage.id][0]["data"]["flags"] & EPHEMERAL
    answer = fake.followups[usage.token][-1]
    assert answer["flags"] & EPHEMERAL
    tokens = f"{run.input_tokens + run.output_tokens} tokens ({run.input_tokens} in, {run.output_tokens} out)"
    assert f"Today: {tokens} in 1 run, no price set for fake-model" in answer["content"]

    everything = await fake.slash_command("usage", {"scope": "all"})
    await fake.wait_until(lambda: bool(fake.followups.get(everything.token)), what="the /usage all answer")
    assert (
        f"- discord:{GUILD_ID}:{CHANNEL_ID}: {run.input_tokens + run.output_tokens} tokens"
        in (fake.followups[everything.token][-1]["content"])
    )


async def test_a_member_with_the_manager_role_switches_the_assistant_and_others_cannot(
    harness: Harness, tmp_path: Path
) -> None:
    await harness.stop()
    assistants = tmp_path / "discord-policy.toml"
    assistants.write_text(
        DISCORD_ASSISTANTS
        + '\n[[assistants]]\nname = "terse"\ninstructions = "Be terse."\nmodel = "terse-model"\n'
        + f'\n[policy]\nmanagers = ["discord-role:{TEAM_LEADS_ROLE_ID}"]\n'
    )
    harness.settings = replace(harness.settings, assistants_file=assistants)
    await harness.start()
    fake = harness.fake

    async def switch(**member: Any) -> str:
        interaction = await fake.slash_command("assistant", {"name": "terse"}, **member)
        await fake.wait_until(lambda: bool(fake.followups.get(interaction.token)), what="the /assistant answer")
        return str(fake.followups[interaction.token][-1]["content"])

    assert "managers" in await switch(user=BOB)  # no manager role: refused
    question = await fake.send_message("hello")
    await harness.answer(question)
    assert harness.model.requests[-1]["model"] == "fake-model"

    assert "terse" in await switch(user=BOB, roles=[TEAM_LEADS_ROLE_ID])
    question = await fake.send_message("hello again")
    await harness.answer(question)
    assert harness.model.requests[-1]["model"] == "terse-model"


async def test_a_manager_sets_a_members_budget_with_slash_budget_and_it_holds(harness: Harness, tmp_path: Path) -> None:
    await harness.stop()
    assistants = tmp_path / "discord-budgets.toml"
    assistants.write_text(DISCORD_ASSISTANTS + f'\n[policy]\nmanagers = ["discord-role:{TEAM_LEADS_ROLE_ID}"]\n')
    harness.settings = replace(harness.settings, assistants_file=assistants)
    await harness.start()
    fake = harness.fake

    async def budget(options: dict[str, Any], **member: Any) -> str:
        interaction = await fake.slash_command("budget", options, **member)
        await fake.wait_until(lambda: bool(fake.followups.get(interaction.token)), what="the /budget answer")
        return str(fake.followups[interaction.token][-1]["content"])

    limit = {"scope": "user", "member": ALICE, "period": "day", "limit": "10 tokens"}
    assert "Only this bot's channel managers may change budgets" in await budget(limit, user=BOB)
    assert f"The daily budget of discord:{ALICE.id} is now 10 tokens." in await budget(
        limit, user=BOB, roles=[TEAM_LEADS_ROLE_ID]
    )
    assert "- You, daily budget: 0 tokens of 10 tokens (0%), resets at 00:00 UTC" in await budget({}, user=ALICE)

    requests = len(harness.model.requests)
    await fake.send_message("hello", author=ALICE)

    def refusals() -> list[str]:
        return [m["content"] for m in fake.bot_messages(CHANNEL_ID) if "budget" in m["content"]]

    await fake.wait_until(lambda: bool(refusals()), what="the budget refusal")
    [refusal] = refusals()
    assert "Alice has 10 tokens left of their daily budget" in refusal
    assert "a manager can raise it with /budget" in refusal
    assert len(harness.model.requests) == requests  # refused before the model was called

    question = await fake.send_message("hello", author=BOB)  # Bob has no limit
    [reply] = await harness.answer(question)
    assert "limit" not in reply["content"]
    assert len(harness.model.requests) == requests + 1


async def test_without_indexing_every_message_the_bot_runs_without_the_privileged_intent(
    tmp_path: Path, fake_model: FakeOpenAI, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """DISCORD_INDEX_FILES=mentions on an application whose Message Content switch is off: Discord would close
    an IDENTIFY asking for it (4014); the bot does not ask, says so at start, and answers mentions."""
    caplog.set_level(logging.INFO)
    assistants = tmp_path / "discord-assistants.toml"
    assistants.write_text(DISCORD_ASSISTANTS)
    fake_model.script = chat_script
    async with FakeDiscord(message_content_allowed=False) as fake:
        fake.patch_discord()
        h = Harness(fake, fake_model, replace(settings, assistants_file=assistants))
        await h.start(index_files="mentions")
        try:
            assert not fake.identify_payloads[-1]["intents"] & MESSAGE_CONTENT_INTENT
            question = await fake.send_message("hello there")
            (reply,) = await h.answer(question, ending="hello there")
            assert reply["content"] == "Answer to: hello there"
            assert "without the privileged Message Content intent" in caplog.text
        finally:
            await h.stop()


async def test_with_every_message_indexed_the_bot_asks_for_the_intent_and_says_how_to_do_without(
    settings: Settings,
) -> None:
    async with FakeDiscord(message_content_allowed=False) as fake:
        fake.patch_discord()
        ds = DiscordSettings(token=BOT_TOKEN, api_url=fake.api_base, gateway_url=fake.gateway_url, index_files="all")
        with pytest.raises(ConfigError) as caught:
            await DiscordBot.start(settings, ds, guild_ready_timeout=0.05)
    assert fake.identify_payloads[-1]["intents"] & MESSAGE_CONTENT_INTENT
    assert "DISCORD_INDEX_FILES=mentions" in str(caught.value)


async def test_slash_commands_are_registered_again_only_when_they_changed(harness: Harness) -> None:
    """discord.py advises against syncing at every start (the bulk overwrite is rate limited per day)."""
    fake = harness.fake
    assert fake.command_puts == ["global"]  # the first start registers them
    await harness.stop()
    await harness.start()
    assert fake.command_puts == ["global"]  # the same definitions: read, not overwritten
    await harness.stop()
    fake.synced_commands["global"] = [c for c in fake.synced_commands["global"] if c["name"] != "reset"]
    await harness.start()
    assert fake.command_puts == ["global", "global"]  # Discord's copy lost one: registered again
    assert "reset" in {c["name"] for c in fake.synced_commands["global"]}


def test_what_discord_fills_in_by_itself_is_not_a_change() -> None:
    local = [{"name": "reset", "description": "Start over", "options": [], "nsfw": False, "type": 1}]
    remote = [
        {
            "id": "9",
            "application_id": "1",
            "version": "3",
            "name": "reset",
            "description": "Start over",
            "type": 1,
            "default_member_permissions": None,
            "name_localizations": {},
            "contexts": None,
        },
    ]
    assert not definitions_differ(local, remote)
    assert definitions_differ(local, [{**remote[0], "description": "Begin again"}])
    option = {"name": "name", "description": "the file", "type": 3, "required": True}
    assert definitions_differ([{**local[0], "options": [option]}], remote)
    assert not definitions_differ([{**local[0], "options": [option]}], [{**remote[0], "options": [option]}])
    assert not definitions_differ([local[0], {**local[0], "name": "files"}], [{**local[0], "name": "files"}, local[0]])
    second = {"name": "all", "description": "every file", "type": 5}
    assert definitions_differ([{**local[0], "options": [option, second]}], [{**local[0], "options": [second, option]}])


async def test_a_thread_shares_its_parent_channels_files(harness: Harness) -> None:
    """A file shared in the channel is the thread's too (issue 15): /files in the thread lists it, and a file
    shared in the thread joins the channel's files. The thread's history stays its own (test above)."""
    fake = harness.fake
    notes = fake.attachment("notes.txt", b"The office opens at 9.")
    shared = await fake.send_message("notes", mention_bot=False, attachments=[notes])
    await fake.wait_until(lambda: bool(harness.replies_to(shared)), what="a file note")
    listing = await fake.slash_command("files", channel_id=THREAD_ID)
    await fake.wait_until(lambda: bool(fake.followups.get(listing.token)), what="the /files answer in the thread")
    assert "notes.txt" in fake.followups[listing.token][-1]["content"]
    plan = fake.attachment("plan.txt", b"The plan: ship on Friday.")
    in_thread = await fake.send_message("plan", mention_bot=False, attachments=[plan], channel_id=THREAD_ID)
    await fake.wait_until(lambda: bool(harness.replies_to(in_thread)), what="a file note in the thread")
    assert harness.bot is not None
    names = {f.name for f in await harness.bot.service.knowledge.files(f"discord:{GUILD_ID}:{CHANNEL_ID}")}
    assert names == {"notes.txt", "plan.txt"}
