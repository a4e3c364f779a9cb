"""The Slack adapter over real protocols: signed HTTP requests into Bolt, a fake Slack Web API, the scripted model."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bots.slack.adapter import channel_key
from bots.slack.app import SlackBot
from bots.slack.config import SlackSettings
from bots.slack.render import APPROVE_ACTION, DENY_ACTION, NOT_SHOWN_NOTE
from core.errors import ConfigError
from core.models import conversation_key
from core.settings import Settings
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, last_user_text, offered_tools, tool_results
from tests.fakes.slack_server import (
    TEAM_ID,
    FakeSlack,
    Posted,
    app_mention,
    block_action,
    dm_message,
    event_callback,
    file_share_message,
    file_shared,
    signed_headers,
    slash_command_form,
)
from tests.tool_modules import team_tools

SECRET = "test-signing-secret"
SANDBOX_PYTHON = Path(__file__).resolve().parent.parent / ".sandbox" / "bin" / "python"
CHANNEL = "C_GENERAL"
ALICE, MALLORY = "U_ALICE", "U_MALLORY"

SLACK_ASSISTANTS = """
default = "slackbot"
tool_modules = ["tests.tool_modules.team_tools"]

[[assistants]]
name = "slackbot"
instructions = "You help in Slack."
model = "fake-model"
tools = ["deploy", "file_search", "code_interpreter"]
"""


def chat_script(req: dict[str, Any]) -> Reply:
    """Searches files when it can, asks to deploy when told to, and otherwise answers in a few words."""
    question = last_user_text(req).split(": ", 1)[-1]
    if results := tool_results(req):
        return Reply(text=f"Done [1]: {results[0]['content'][:80]}", chunk_delay=0.001)
    if "deploy" in question:
        return Reply(tool_calls=(ToolCall("deploy", {"service": "billing"}),))
    if "chart" in question:
        code = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])"
        return Reply(tool_calls=(ToolCall("code_interpreter", {"code": code}),))
    if "file_search" in offered_tools(req) and question.endswith("?"):
        return Reply(tool_calls=(ToolCall("file_search", {"query": question}),))
    return Reply(text=f"Answer to: {question}", chunk_delay=0.001)


class Harness:
    def __init__(self, slack: FakeSlack, model: FakeOpenAI, settings: Settings, tmp_path: Path) -> None:
        self.slack = slack
        self.model = model
        self.settings = settings
        self.tmp_path = tmp_path
        self.bot: SlackBot | None = None
        self.http = aiohttp.ClientSession()
        self._events = 0

    def slack_settings(self, **overrides: Any) -> SlackSettings:
        base = SlackSettings(
            bot_token=self.slack.bot_token,
            signing_secret=SECRET,
            api_url=self.slack.api_url,
            port=0,
            host="127.0.0.1",
        )
        return replace(base, **overrides)

    async def start(self, **overrides: Any) -> SlackBot:
        self.bot = await SlackBot.start(self.settings, self.slack_settings(**overrides))
        return self.bot

    async def stop(self) -> None:
        if self.bot is not None:
            await self.bot.stop()
            self.bot = None

    @property
    def url(self) -> str:
        assert self.bot is not None
        return f"http://127.0.0.1:{self.bot.port}/slack/events"

    async def send(self, body: bytes, *, secret: str = SECRET, retry_num: int | None = None) -> int:
        headers = signed_headers(secret, body, retry_num=retry_num)
        async with self.http.post(self.url, data=body, headers=headers) as response:
            return response.status

    async def event(self, event: dict[str, Any], *, event_id: str | None = None, retry_num: int | None = None) -> int:
        self._events += 1
        self.slack.say(event)  # what people write is in Slack's history too (conversations.replies)
        body = json.dumps(event_callback(event, event_id or f"Ev{self._events:04d}")).encode()
        return await self.send(body, retry_num=retry_num)

    def replies(self, channel: str, thread_ts: str) -> list[str]:
        """The words of the bot's answers in the thread: not its approval prompts, nor a message that holds only
        the card of a tool waiting for an approval."""
        return [m.text for m in self.slack.thread(channel, thread_ts) if _is_reply(m)]

    async def answer(
        self, channel: str, thread_ts: str, count: int = 1, *, run: bool = True, asked: str | None = None
    ) -> list[str]:
        """Wait until ``count`` finished replies stand in the thread (and, for a run, its end is signalled).

        The bot takes its "eyes" reaction off the person's message when it has finished answering: the
        thread's first message, or ``asked``, a reply in the thread.
        """

        def done() -> bool:
            finished = [m for m in self.slack.thread(channel, thread_ts) if not m.streaming and _is_reply(m)]
            ended = not run or any(
                c.method == "reactions.remove" and c.params.get("timestamp") == (asked or thread_ts)
                for c in self.slack.calls
            )
            return len(finished) >= count and ended

        await self.slack.wait_until(done, timeout=10, what=f"{count} replies in {channel}/{thread_ts}")
        return self.replies(channel, thread_ts)


def _is_reply(message: Posted) -> bool:
    return not message.blocks and bool(message.text or not message.chunks)


@contextlib.asynccontextmanager
async def running_harness(
    tmp_path: Path,
    model: FakeOpenAI,
    settings: Settings,
    *,
    assistants: str = SLACK_ASSISTANTS,
    members: list[str] | None = None,
    **start: Any,
) -> AsyncIterator[Harness]:
    """The bot in Slack's HTTP mode against a fake Slack whose CHANNEL has ``members``, with ``assistants`` as its
    assistants file and the chat script; ``start``: SlackSettings overrides. Stopped at the end."""
    path = tmp_path / "slack-assistants.toml"
    path.write_text(assistants)
    model.script = chat_script
    async with FakeSlack(members={CHANNEL: members or [ALICE, "U_BOB"]}) as slack:
        h = Harness(slack, model, replace(settings, assistants_file=path), tmp_path)
        await h.start(**start)
        try:
            yield h
        finally:
            await h.stop()
            await h.http.close()


@pytest.fixture
async def harness(tmp_path: Path, fake_model: FakeOpenAI, settings: Settings) -> AsyncIterator[Harness]:
    async with running_harness(tmp_path, fake_model, settings) as h:
        yield h


async def test_mention_gets_a_streamed_reply_in_its_thread(harness: Harness) -> None:
    assert await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> hello there", "1700000001.000100")) == 200
    replies = await harness.answer(CHANNEL, "1700000001.000100")
    assert replies == ["Answer to: hello there"]
    start = harness.slack.calls_to("chat.startStream")
    assert len(start) == 1
    assert start[0]["thread_ts"] == "1700000001.000100"
    assert start[0]["recipient_team_id"] == TEAM_ID
    assert start[0]["recipient_user_id"] == ALICE
    assert harness.slack.calls_to("chat.stopStream")
    assert harness.slack.calls_to("reactions.add")[0]["name"] == "eyes"
    await harness.slack.wait_for("reactions.remove")
    assert harness.slack.reactions == set()
    # The model saw the person's name and text, without the mention.
    assert harness.model.chat_requests[-1]["messages"][-1]["content"].endswith(": hello there")
    # No history is read back from Slack: the thread lives in SQLite.
    assert not harness.slack.calls_to("conversations.replies")
    assert not harness.slack.calls_to("conversations.history")


async def test_direct_message_is_answered(harness: Harness) -> None:
    await harness.event(dm_message("D_ALICE", ALICE, "what's up", "1700000002.000100"))
    assert await harness.answer("D_ALICE", "1700000002.000100") == ["Answer to: what's up"]


async def test_a_retried_event_is_answered_once(harness: Harness) -> None:
    event = app_mention(CHANNEL, ALICE, "<@U_BOT> once please", "1700000003.000100")
    await harness.event(event, event_id="EvRETRY")
    await harness.answer(CHANNEL, "1700000003.000100")
    assert await harness.event(event, event_id="EvRETRY", retry_num=1) == 200
    assert await harness.event(event, event_id="EvRETRY", retry_num=2) == 200
    await asyncio.sleep(0.5)  # bounded wait for something that must not happen
    assert len(harness.slack.calls_to("chat.startStream")) == 1
    assert len(harness.model.chat_requests) == 1


async def test_a_restart_between_retries_still_answers_once(harness: Harness) -> None:
    event = app_mention(CHANNEL, ALICE, "<@U_BOT> across a restart", "1700000004.000100")
    await harness.event(event, event_id="EvRESTART")
    await harness.answer(CHANNEL, "1700000004.000100")
    await harness.stop()
    await harness.start()
    assert await harness.event(event, event_id="EvRESTART", retry_num=1) == 200
    await asyncio.sleep(0.5)  # bounded wait for something that must not happen
    assert len(harness.slack.calls_to("chat.startStream")) == 1
    assert len(harness.model.chat_requests) == 1


async def test_a_bad_signature_is_refused_and_nothing_happens(harness: Harness) -> None:
    body = json.dumps(event_callback(app_mention(CHANNEL, ALICE, "<@U_BOT> hi", "1700000005.000100"), "EvBAD"))
    assert await harness.send(body.encode(), secret="not-the-secret") == 401
    await asyncio.sleep(0.3)  # bounded wait for something that must not happen
    assert harness.model.chat_requests == []
    assert {c.method for c in harness.slack.calls} == {"auth.test"}


async def test_a_shared_file_is_indexed_and_answers_cite_it(harness: Harness) -> None:
    info = harness.slack.add_file(
        "F_HANDBOOK", "handbook.md", b"# Holidays\nEvery employee has 27 days of paid holiday.\n", "text/markdown"
    )
    await harness.event(file_share_message(CHANNEL, ALICE, [info], "1700000006.000100"))
    [confirmation] = await harness.answer(CHANNEL, "1700000006.000100", run=False)
    assert confirmation == "Indexed handbook.md (1 chunk)."
    assert [d.authorized for d in harness.slack.downloads] == [True]
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> how many holiday days?", "1700000007.000100"))
    [answer] = await harness.answer(CHANNEL, "1700000007.000100")
    assert answer.startswith("Done [1]: [1] handbook.md, Holidays")
    assert "**Sources**" in answer
    assert f"[handbook.md]({info['permalink']}), Holidays" in answer


async def test_a_refused_file_gets_a_clear_message(harness: Harness) -> None:
    info = harness.slack.add_file(
        "F_EXE", "tool.exe", b"MZ\x90\x00" + bytes(range(256)) * 4, "application/x-msdownload"
    )
    await harness.event(file_share_message(CHANNEL, ALICE, [info], "1700000008.000100"))
    [message] = await harness.answer(CHANNEL, "1700000008.000100", run=False)
    assert "tool.exe is not a kind of file" in message
    assert "PDF" in message


async def test_slash_commands_answer_only_the_person(harness: Harness) -> None:
    info = harness.slack.add_file("F_NOTES", "notes.txt", b"Deploys happen on Tuesdays.")
    await harness.event(file_share_message(CHANNEL, ALICE, [info], "1700000009.000100"))
    await harness.answer(CHANNEL, "1700000009.000100", run=False)

    async def command(name: str, text: str, response_id: str) -> str:
        body = slash_command_form(name, text, CHANNEL, ALICE, harness.slack.response_url(response_id))
        assert await harness.send(body) == 200
        [response] = await harness.slack.wait_for_response(response_id)
        assert response["response_type"] == "ephemeral"
        return str(response["text"])

    assert "notes.txt" in await command("/files", "", "r1")
    assert "1 file stay searchable" in (await command("/reset", "", "r2")).replace("1 file stays", "1 file stay")
    assert "Removed notes.txt" in await command("/forget", "notes.txt", "r3")
    assert "no files yet" in await command("/files", "", "r4")


async def test_export_is_uploaded_into_the_persons_direct_messages(harness: Harness) -> None:
    info = harness.slack.add_file("F_HANDBOOK", "handbook.md", b"# Holidays\nEvery employee has 27 days of holiday.\n")
    await harness.event(file_share_message(CHANNEL, ALICE, [info], "1700000021.000100"))
    await harness.answer(CHANNEL, "1700000021.000100", run=False)
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> how many holiday days?", "1700000022.000100"))
    await harness.answer(CHANNEL, "1700000022.000100")

    body = slash_command_form("/export", "", CHANNEL, ALICE, harness.slack.response_url("r-export"))
    assert await harness.send(body) == 200
    [response] = await harness.slack.wait_for_response("r-export")
    assert response["response_type"] == "ephemeral"
    assert "I sent it to you in a direct message." in response["text"]
    [opened] = harness.slack.calls_to("conversations.open")
    assert opened["users"] == ALICE
    [upload] = harness.slack.uploads
    assert upload.channel == "D_ALICE"  # the person's DM with the bot, not the channel
    assert upload.name.endswith(".md")
    markdown = upload.data.decode()
    assert markdown.startswith(f"# Conversation in slack:{TEAM_ID}:{CHANNEL}")
    assert "how many holiday days?" in markdown
    assert "### Tool call: file_search" in markdown
    assert "Every employee has 27 days" in markdown  # the tool's result
    assert "Sources:\n- [1] handbook.md, Holidays" in markdown


async def approval_message(harness: Harness, thread_ts: str) -> Any:
    def posted() -> bool:
        return any(m.blocks for m in harness.slack.thread(CHANNEL, thread_ts))

    await harness.slack.wait_until(posted, what="the approval message")
    return next(m for m in harness.slack.thread(CHANNEL, thread_ts) if m.blocks)


def button_value(message: Any) -> str:
    actions = next(b for b in message.blocks if b["type"] == "actions")
    return str(actions["elements"][0]["value"])


async def test_approval_buttons_slack_refuses_stop_the_run_with_one_short_message(harness: Harness) -> None:
    """Nobody could press buttons that are not there, and the run would hold its thread until the approval
    expired: it is stopped, the thread told once, and the next question answered at once."""
    harness.slack.fail_next("chat.postMessage", "invalid_blocks", status=200)  # the approval's message
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> deploy billing", "1700000030.000100"))

    def told() -> bool:
        return any("could not show the Approve / Deny buttons" in m.text for m in harness.slack.thread(CHANNEL, TS30))

    await harness.slack.wait_until(told, what="the note that the buttons could not be shown")
    await harness.answer(CHANNEL, TS30, 1)
    assert harness.bot is not None
    run = (await harness.bot.service.store.thread_runs(await harness.bot.service.store.current_thread(KEY30)))[-1]
    assert run.status == "cancelled"
    notes = [m.text for m in harness.slack.thread(CHANNEL, TS30) if "warning" in m.text]
    assert len(notes) == 1, notes  # not also "Cancelled."
    assert team_tools.TIMELINE == []  # the tool never ran
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> and now?", "1700000031.000100"))
    assert await harness.answer(CHANNEL, "1700000031.000100") == ["Answer to: and now?"]


TS30 = "1700000030.000100"
KEY30 = channel_key(TEAM_ID, CHANNEL)


async def test_approve_button_runs_the_tool(harness: Harness) -> None:
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> deploy billing", "1700000010.000100"))
    message = await approval_message(harness, "1700000010.000100")
    assert "deploy" in json.dumps(message.blocks)
    assert "billing" in json.dumps(message.blocks)
    body = block_action(
        APPROVE_ACTION, button_value(message), ALICE, CHANNEL, message.ts, harness.slack.response_url("a1"),
        thread_ts="1700000010.000100",
    )  # fmt: skip
    assert await harness.send(body) == 200
    [answer] = await harness.answer(CHANNEL, "1700000010.000100")
    assert answer.startswith("Done [1]: billing deployed")
    assert team_tools.TIMELINE == ["deployed billing"]
    updated = harness.slack.messages[message.ts]
    assert "approved by <@U_ALICE>" in json.dumps(updated.blocks)
    assert "actions" not in json.dumps(updated.blocks)  # the buttons are gone


async def test_approval_in_a_channel_with_an_earlier_answer(harness: Harness) -> None:
    """The paused run's history holds an answer: it must survive the paused state (issue 14)."""
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> hello there", "1700000030.000100"))
    assert await harness.answer(CHANNEL, "1700000030.000100") == ["Answer to: hello there"]
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> deploy billing", "1700000031.000100"))
    message = await approval_message(harness, "1700000031.000100")
    body = block_action(
        APPROVE_ACTION, button_value(message), ALICE, CHANNEL, message.ts, harness.slack.response_url("a30"),
        thread_ts="1700000031.000100",
    )  # fmt: skip
    assert await harness.send(body) == 200
    [answer] = await harness.answer(CHANNEL, "1700000031.000100")
    assert answer.startswith("Done [1]: billing deployed")
    assert team_tools.TIMELINE == ["deployed billing"]
    sent = harness.model.chat_requests[-1]["messages"]
    assert any(m["role"] == "assistant" and m.get("content") == "Answer to: hello there" for m in sent)


async def test_deny_and_an_outsider_press(harness: Harness) -> None:
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> deploy billing", "1700000011.000100"))
    message = await approval_message(harness, "1700000011.000100")
    value = button_value(message)
    outsider = block_action(APPROVE_ACTION, value, MALLORY, CHANNEL, message.ts, harness.slack.response_url("o1"))
    assert await harness.send(outsider) == 200
    [refusal] = await harness.slack.wait_for_response("o1")
    assert "Only members of" in refusal["text"]
    assert team_tools.TIMELINE == []
    deny = block_action(DENY_ACTION, value, "U_BOB", CHANNEL, message.ts, harness.slack.response_url("d1"))
    assert await harness.send(deny) == 200
    await harness.answer(CHANNEL, "1700000011.000100")
    assert team_tools.TIMELINE == []
    assert "denied by <@U_BOB>" in json.dumps(harness.slack.messages[message.ts].blocks)
    assert "<@U_BOB> denied" in tool_results(harness.model.chat_requests[-1])[0]["content"]


async def test_a_rate_limited_stream_append_is_retried(harness: Harness) -> None:
    harness.slack.fail_next("chat.appendStream", retry_after=1)
    harness.model.script = lambda req: Reply(text="A longer answer " * 10, chunk_delay=0.01)
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> talk", "1700000012.000100"))
    [answer] = await harness.answer(CHANNEL, "1700000012.000100")
    assert answer == ("A longer answer " * 10).rstrip() or answer == "A longer answer " * 10
    assert len(harness.slack.calls_to("chat.appendStream")) > len(
        harness.slack.calls_to("chat.appendStream", include_failed=False)
    )


async def test_refused_streaming_falls_back_to_post_and_update(harness: Harness) -> None:
    harness.slack.refuse("chat.startStream")
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> **bold** please", "1700000013.000100"))
    [answer] = await harness.answer(CHANNEL, "1700000013.000100")
    assert answer == "Answer to: *bold* please"  # Markdown rendered as Slack mrkdwn
    assert harness.slack.calls_to("chat.postMessage")


# -- answers Slack refuses to show --------------------------------------------------------------------

STORY = " ".join(f"word{i}" for i in range(200))
OTHER = "C_OTHER"


def story_script(req: dict[str, Any]) -> Reply:
    """A long answer, slowly, to "story"; chat_script's short answers to everything else."""
    if "story" in last_user_text(req):
        return Reply(text=STORY, chunk_delay=0.005)
    return chat_script(req)


def failed(slack: FakeSlack, method: str) -> int:
    return len(slack.calls_to(method)) - len(slack.calls_to(method, include_failed=False))


async def refused_answer_and_another_channel(harness: Harness, ts: str) -> None:
    """Ask for the story in CHANNEL, where Slack refuses calls; once it has refused the first (startStream), ask
    in another channel, which is answered in the meantime; then wait until the story's run has been shown."""
    harness.model.script = story_script
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> tell me a long story", ts))
    await harness.slack.wait_until(lambda: failed(harness.slack, "chat.startStream") > 0, what="a refusal")
    await harness.event(app_mention(OTHER, ALICE, "<@U_BOT> still there?", "1700000090.000100"))
    assert await harness.answer(OTHER, "1700000090.000100") == ["Answer to: still there?"]
    await harness.answer(CHANNEL, ts, count=0)  # the bot took its reaction off the question: it is done


def not_shown_count(harness: Harness) -> float | None:
    assert harness.bot is not None
    labels = {"platform": "slack", "kind": "answer_not_shown"}
    return harness.bot.service.metrics.registry.get_sample_value("threadline_platform_errors_total", labels)


def warnings_about_it(harness: Harness, caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warnings that say the answer was not shown; no warning carries the answer, no log the token."""
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [w for w in warnings if "word1" in w]
    assert harness.slack.bot_token not in caplog.text
    return [w for w in warnings if "could not show the answer" in w]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        pytest.param("msg_too_long", 200, id="msg_too_long"),
        pytest.param("internal_error", 500, id="HTTP 500"),
    ],
)
async def test_an_answer_slack_refuses_to_show_ends_with_one_short_message(
    harness: Harness, caplog: pytest.LogCaptureFixture, error: str, status: int
) -> None:
    """Streaming is refused, and so is every chat.update with the growing answer (Slack's limit lower than the
    answer; or an HTTP 500 each time): the first words stand, one message of its own says the answer could not
    be posted in full, the log says why once, and another channel is answered meanwhile."""
    caplog.set_level(logging.INFO)
    slack, ts = harness.slack, "1700000091.000100"
    if error == "msg_too_long":
        slack.refuse("chat.startStream")  # where streaming is not offered: posted and updated
        slack.max_text = 300
    else:
        for method in ("chat.startStream", "chat.appendStream", "chat.stopStream", "chat.update"):
            slack.refuse(method, error, status=status, channel=CHANNEL)
    await refused_answer_and_another_channel(harness, ts)
    *shown, note = harness.replies(CHANNEL, ts)
    assert note == NOT_SHOWN_NOTE
    assert "ask again" in note
    assert "log" in note
    [first_words] = shown
    assert STORY.startswith(first_words)
    assert first_words != STORY
    assert failed(slack, "chat.update") > 0
    assert not_shown_count(harness) == 1
    [warning] = warnings_about_it(harness, caplog)
    assert f"{error}, HTTP {status}" in warning


async def test_when_slack_refuses_the_short_message_too_the_bot_logs_it_and_goes_on(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    slack, ts = harness.slack, "1700000092.000100"
    for method in ("chat.startStream", "chat.postMessage", "chat.update"):
        slack.refuse(method, "internal_error", status=500, channel=CHANNEL)
    await refused_answer_and_another_channel(harness, ts)
    assert [c["text"] for c in slack.calls_to("chat.postMessage") if c["text"] == NOT_SHOWN_NOTE] == [NOT_SHOWN_NOTE]
    assert harness.replies(CHANNEL, ts) == []
    assert len(warnings_about_it(harness, caplog)) == 1
    assert any("was not shown either" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    for method in ("chat.startStream", "chat.postMessage", "chat.update"):
        slack.allow(method, channel=CHANNEL)
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> and now?", "1700000093.000100"))
    assert await harness.answer(CHANNEL, "1700000093.000100") == ["Answer to: and now?"]


async def test_a_chart_from_the_code_interpreter_is_shared_in_the_thread(harness: Harness) -> None:
    await harness.stop()
    harness.settings = replace(harness.settings, code_interpreter=True, sandbox_python=SANDBOX_PYTHON)
    await harness.start()
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> draw a chart", "1700000015.000100"))
    await harness.slack.wait_until(lambda: bool(harness.slack.uploads), timeout=20, what="the uploaded PNG")
    (upload,) = harness.slack.uploads
    assert (upload.name, upload.channel, upload.thread_ts) == ("figure-1.png", CHANNEL, "1700000015.000100")
    assert upload.data.startswith(b"\x89PNG")


async def test_socket_mode_mention_gets_a_reply(harness: Harness) -> None:
    await harness.stop()
    await harness.start(app_token=harness.slack.app_token, signing_secret=None)
    await harness.slack.wait_connected()
    envelope = await harness.slack.socket_send(
        "events_api", event_callback(app_mention(CHANNEL, ALICE, "<@U_BOT> via socket", "1700000014.000100"), "EvS1")
    )
    await harness.slack.wait_for_ack(envelope)
    assert await harness.answer(CHANNEL, "1700000014.000100") == ["Answer to: via socket"]


def test_missing_or_wrong_tokens_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN is not set"):
        SlackSettings.from_env({})
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN should be a bot token"):
        SlackSettings.from_env({"SLACK_BOT_TOKEN": "xapp-wrong"})
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET is not set"):
        SlackSettings.from_env({"SLACK_BOT_TOKEN": "xoxb-1"})
    assert SlackSettings.from_env({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"}).socket_mode


async def test_a_refused_token_stops_the_start_with_one_clear_line(harness: Harness) -> None:
    with pytest.raises(ConfigError, match=r"Slack refused SLACK_BOT_TOKEN \(invalid_auth\)"):
        await SlackBot.start(harness.settings, harness.slack_settings(bot_token="xoxb-wrong"))


async def test_a_deleted_file_leaves_the_knowledge_base(harness: Harness) -> None:
    info = harness.slack.add_file("F_GONE", "plan.txt", b"The launch is on the 3rd of March.", channel=CHANNEL)
    await harness.event(file_share_message(CHANNEL, ALICE, [info], "1700000015.000100"))
    await harness.answer(CHANNEL, "1700000015.000100", run=False)
    assert harness.bot is not None
    key = f"slack:{TEAM_ID}:{CHANNEL}"
    assert await harness.bot.service.knowledge.search(key, "launch March")
    deleted = {"type": "file_deleted", "file_id": "F_GONE", "channel_ids": [CHANNEL], "event_ts": "1700000016.000100"}
    await harness.event(deleted)

    # Bolt acknowledges first and handles the event after: poll the knowledge base, bounded.
    async def gone() -> bool:
        assert harness.bot is not None
        return not await harness.bot.service.knowledge.files(key)

    for _ in range(100):
        if await gone():
            break
        await asyncio.sleep(0.02)
    assert await gone()
    assert await harness.bot.service.knowledge.search(key, "launch March") == []


async def test_an_expired_approval_is_shown(harness: Harness) -> None:
    await harness.stop()
    harness.settings = replace(harness.settings, approval_timeout=0.5)
    await harness.start()
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> deploy billing", "1700000017.000100"))
    message = await approval_message(harness, "1700000017.000100")

    def expired() -> bool:
        return "expired" in json.dumps(harness.slack.messages[message.ts].blocks)

    await harness.slack.wait_until(expired, what="the approval shown as expired")
    [notice] = await harness.answer(CHANNEL, "1700000017.000100")
    assert "Nobody approved deploy" in notice
    assert team_tools.TIMELINE == []


async def test_messages_reach_the_core_in_the_order_they_came(harness: Harness) -> None:
    harness.slack.fail_next("users.info", retry_after=1)  # the first person's name takes a while to look up
    await harness.event(app_mention(CHANNEL, "U_NEW", "<@U_BOT> first", "1700000018.000100"))
    await harness.slack.wait_for("users.info")
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> second", "1700000019.000100"))
    await harness.answer(CHANNEL, "1700000018.000100")
    await harness.answer(CHANNEL, "1700000019.000100")
    assert harness.bot is not None
    store = harness.bot.service.store
    messages = await store.thread_messages(await store.current_thread(f"slack:{TEAM_ID}:{CHANNEL}"))
    assert [m.text for m in messages if m.role == "user"] == ["first", "second"]


# -- one Slack file, delivered more than once -------------------------------------------------------

HANDBOOK = b"# Holidays\nEvery employee has 27 days of paid holiday.\n"
INDEXED = "Indexed handbook.md (1 chunk)."


async def _until(predicate: Any, what: str, timeout: float = 10.0) -> None:
    """Poll a condition the fake cannot see (the bot's log), bounded."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def _added_before(caplog: pytest.LogCaptureFixture) -> int:
    """How many deliveries the knowledge base turned away as added before."""
    return sum("was added before" in r.getMessage() for r in caplog.records if r.name == "core.knowledge.base")


def _notes(harness: Harness) -> list[str]:
    return [c["text"] for c in harness.slack.calls_to("chat.postMessage") if c.get("channel") == CHANNEL]


async def _send_to(harness: Harness, bot: SlackBot, event: dict[str, Any], event_id: str, **retry: Any) -> int:
    body = json.dumps(event_callback(event, event_id)).encode()
    url = f"http://127.0.0.1:{bot.port}/slack/events"
    async with harness.http.post(url, data=body, headers=signed_headers(SECRET, body, **retry)) as response:
        return response.status


async def test_a_file_in_its_message_and_in_file_shared_at_once_is_downloaded_and_indexed_once(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="core.knowledge.base")
    info = harness.slack.add_file("F_TWICE", "handbook.md", HANDBOOK, "text/markdown", channel=CHANNEL)
    harness.slack.hold_downloads()  # the first delivery is mid-download while the second one is handled
    statuses = await asyncio.gather(
        harness.event(file_share_message(CHANNEL, ALICE, [info], "1700000020.000100")),
        harness.event(file_shared("F_TWICE", ALICE, CHANNEL, "1700000020.000200")),
    )
    assert list(statuses) == [200, 200]
    await harness.slack.wait_until(lambda: len(harness.slack.downloads) == 1, what="the first download")
    await _until(lambda: _added_before(caplog) == 1 or len(harness.slack.downloads) > 1, "the second delivery")
    harness.slack.release_downloads()
    await harness.slack.wait_until(lambda: INDEXED in _notes(harness), what="the confirmation")
    assert [d.file_id for d in harness.slack.downloads] == ["F_TWICE"]
    assert _notes(harness) == [INDEXED]
    assert harness.bot is not None
    [record] = await harness.bot.service.knowledge.files(f"slack:{TEAM_ID}:{CHANNEL}")
    assert (record.platform_file_id, record.status, record.chunk_count) == ("F_TWICE", "completed", 1)


async def test_a_file_redelivered_to_another_process_is_downloaded_and_indexed_once(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """Two processes on one database: the message reaches one; file_shared and Slack's retry reach the other."""
    caplog.set_level(logging.INFO, logger="core.knowledge.base")
    first = harness.bot
    assert first is not None
    second = await SlackBot.start(harness.settings, harness.slack_settings())
    try:
        info = harness.slack.add_file("F_SHARED", "handbook.md", HANDBOOK, "text/markdown", channel=CHANNEL)
        message = file_share_message(CHANNEL, ALICE, [info], "1700000021.000100")
        harness.slack.hold_downloads()
        assert await _send_to(harness, first, message, "EvShare") == 200
        await harness.slack.wait_until(lambda: len(harness.slack.downloads) == 1, what="the first process downloading")
        shared = file_shared("F_SHARED", ALICE, CHANNEL, "1700000021.000200")
        assert await _send_to(harness, second, shared, "EvFileShared") == 200
        assert await _send_to(harness, second, message, "EvShare", retry_num=1, retry_reason="http_timeout") == 200
        await _until(lambda: _added_before(caplog) == 2 or len(harness.slack.downloads) > 1, "the later deliveries")
        harness.slack.release_downloads()
        assert [d.file_id for d in harness.slack.downloads] == ["F_SHARED"]
        await harness.answer(CHANNEL, "1700000021.000100", run=False)
        assert [d.file_id for d in harness.slack.downloads] == ["F_SHARED"]
        assert _notes(harness) == [INDEXED]
        for bot in (first, second):
            [record] = await bot.service.knowledge.files(f"slack:{TEAM_ID}:{CHANNEL}")
            assert (record.platform_file_id, record.status) == ("F_SHARED", "completed")
    finally:
        await second.stop()


async def test_a_failed_download_adds_nothing_and_sharing_again_adds_the_file(harness: Harness) -> None:
    info = harness.slack.add_file("F_FLAKY", "handbook.md", HANDBOOK, "text/markdown", channel=CHANNEL)
    broken = dict(info, url_private_download=f"{harness.slack.base_url}/files/F_MISSING/handbook.md")
    await harness.event(file_share_message(CHANNEL, ALICE, [broken], "1700000022.000100"))
    [refusal] = await harness.answer(CHANNEL, "1700000022.000100", run=False)
    assert refusal == "I could not download handbook.md from Slack, so it was not added. Try sharing it again."
    assert harness.bot is not None
    assert await harness.bot.service.knowledge.files(f"slack:{TEAM_ID}:{CHANNEL}") == []
    await harness.event(file_share_message(CHANNEL, ALICE, [info], "1700000023.000100"))
    assert await harness.answer(CHANNEL, "1700000023.000100", run=False) == [INDEXED]


async def test_a_restart_mid_answer_says_the_answer_will_follow_and_the_next_process_writes_it_in_full(
    harness: Harness,
) -> None:
    """A graceful stop while an answer streams (no tool yet): the thread is told the answer will follow, not to ask
    again; the next process replaces the half-written message and writes the answer from the start."""
    asked: list[str] = []

    def script(req: dict[str, Any]) -> Reply:
        asked.append(last_user_text(req))
        if len(asked) == 1:  # the first attempt streams a few words, then the model goes quiet
            return Reply(text="Once upon a time", stall=True)
        return Reply(text="Once upon a time, in full.", chunk_delay=0.001)

    harness.model.script = script
    await harness.stop()
    harness.settings = replace(harness.settings, shutdown_grace_seconds=0.2)
    await harness.start()
    ts = "1700000090.000100"
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> tell me a story", ts))

    def streaming() -> bool:
        return any(m.streaming and "Once upon" in m.text for m in harness.slack.thread(CHANNEL, ts))

    await harness.slack.wait_until(streaming, timeout=10, what="the answer streaming")
    [half] = [m.ts for m in harness.slack.thread(CHANNEL, ts)]
    await harness.stop()
    notes = [m.text for m in harness.slack.thread(CHANNEL, ts) if m.ts != half]
    assert len(notes) == 1
    assert notes[0].startswith(":arrows_counterclockwise:")
    assert "will follow" in notes[0]
    await harness.start()  # the next start of the only process takes the answer over
    assert harness.bot is not None

    def answered() -> bool:
        thread = harness.slack.thread(CHANNEL, ts)
        return any(m.text == "Once upon a time, in full." and not m.streaming for m in thread)

    await harness.slack.wait_until(answered, timeout=10, what="the answer written again")
    await harness.bot.service.wait_idle()
    thread = harness.slack.thread(CHANNEL, ts)
    assert "restarted" in harness.slack.messages[half].text  # the half-written answer, replaced by a note
    assert [m.text for m in thread if m.ts != half] == [notes[0], "Once upon a time, in full."]
    assert not any("ask again" in m.text for m in thread)
    assert len(asked) == 2


async def test_a_notice_for_a_conversation_inside_a_channel_goes_into_its_slack_thread(harness: Harness) -> None:
    """The core's keys for conversations inside a channel (core/models.py) end in the Slack thread's ts: a
    notice for one (a restart notice, an expired approval) is posted in that thread, not in the channel."""
    assert harness.bot is not None
    thread_ts = "1700000099.000100"
    await harness.bot.adapter.notify(conversation_key(channel_key(TEAM_ID, CHANNEL), thread_ts), "in the thread")
    await harness.bot.adapter.notify(channel_key(TEAM_ID, CHANNEL), "in the channel")
    assert [m.text for m in harness.slack.thread(CHANNEL, thread_ts)] == ["in the thread"]
    assert [m.text for m in harness.slack.messages.values() if m.channel == CHANNEL and m.thread_ts is None] == [
        "in the channel"
    ]
