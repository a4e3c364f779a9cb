"""Access control and per-channel assistants over real protocols (Slack, Discord, console); the policy's matching."""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from bots.slack.render import APPROVE_ACTION
from core.errors import ConfigError
from core.models import Author
from core.policy import NOT_SERVED, parse_policy
from core.settings import Settings
from tests.fakes.discord_server import BOB as DISCORD_BOB
from tests.fakes.discord_server import DM_CHANNEL_ID, GUILD_ID, FakeDiscord
from tests.fakes.openai_server import FakeOpenAI, offered_tools, tool_results
from tests.fakes.slack_server import (
    TEAM_ID,
    FakeSlack,
    app_mention,
    block_action,
    dm_message,
    event_callback,
    signed_headers,
    slash_command_form,
)
from tests.test_console import console_env, run_console
from tests.test_discord import DISCORD_ASSISTANTS
from tests.test_discord import Harness as DiscordHarness
from tests.test_discord import chat_script as discord_chat_script
from tests.test_slack import (
    ALICE,
    CHANNEL,
    SECRET,
    SLACK_ASSISTANTS,
    Harness,
    approval_message,
    button_value,
    chat_script,
)
from tests.tool_modules import team_tools

BOB = "U_BOB"
SECRET_CHANNEL = "C_SECRET"
POLICY = """
[policy]
channels.deny = ["slack:*:C_SECRET"]
direct_messages = false
managers = ["slack:U_ALICE"]

[policy.tools.deploy]
use = ["managers", "slack:U_BOB"]
approve = ["slack:U_ALICE"]

[policy.tools.file_search]
use = "managers"
"""


@pytest.fixture
async def harness(tmp_path: Path, fake_model: FakeOpenAI, settings: Settings) -> AsyncIterator[Harness]:
    assistants = tmp_path / "policy-assistants.toml"
    assistants.write_text(SLACK_ASSISTANTS + POLICY)
    fake_model.script = chat_script
    async with FakeSlack(members={CHANNEL: [ALICE, BOB], SECRET_CHANNEL: [ALICE]}) as slack:
        h = Harness(slack, fake_model, replace(settings, assistants_file=assistants), tmp_path)
        await h.start()
        yield h
        await h.stop()
        await h.http.close()


async def command(harness: Harness, name: str, text: str, user: str, response_id: str) -> str:
    body = slash_command_form(name, text, CHANNEL, user, harness.slack.response_url(response_id))
    assert await harness.send(body) == 200
    [response] = await harness.slack.wait_for_response(response_id)
    return str(response["text"])


async def test_a_denied_channels_mention_gets_one_short_refusal(harness: Harness) -> None:
    await harness.event(app_mention(SECRET_CHANNEL, ALICE, "<@U_BOT> hello", "1700000100.000100"))
    replies = await harness.answer(SECRET_CHANNEL, "1700000100.000100", run=False)
    assert replies == ["I do not serve this channel. Ask whoever runs the bot if you need me here."]
    assert harness.model.chat_requests == []


async def test_a_refusal_is_posted_once_when_slack_redelivers_the_event(harness: Harness) -> None:
    """Nothing is stored for a message in a channel not served, so a redelivery is recognised by Slack's retry
    headers: after a late answer (http_timeout) the first delivery was handled and refused; stay quiet."""
    mention = app_mention(SECRET_CHANNEL, ALICE, "<@U_BOT> hello", "1700000106.000100")
    assert await harness.event(mention, event_id="EvREFUSED") == 200
    await harness.answer(SECRET_CHANNEL, "1700000106.000100", run=False)
    for retry_num in (1, 2):  # the fake's retry reason: http_timeout, the bot answered Slack too late
        assert await harness.event(mention, event_id="EvREFUSED", retry_num=retry_num) == 200
    # A message whose first delivery never reached the bot (the connection failed) is still refused, once.
    lost = app_mention(SECRET_CHANNEL, ALICE, "<@U_BOT> are you there?", "1700000107.000100")
    body = json.dumps(event_callback(lost, "EvLOST"))
    headers = signed_headers(SECRET, body, retry_num=1, retry_reason="connection_failed")
    async with harness.http.post(harness.url, data=body, headers=headers) as response:
        assert response.status == 200
    assert len(await harness.answer(SECRET_CHANNEL, "1700000107.000100", run=False)) == 1
    await asyncio.sleep(0.3)  # bounded wait for something that must not happen
    assert harness.replies(SECRET_CHANNEL, "1700000106.000100") == [NOT_SERVED]
    assert harness.replies(SECRET_CHANNEL, "1700000107.000100") == [NOT_SERVED]
    assert harness.model.chat_requests == []


async def test_a_direct_message_with_direct_messages_off_is_refused(harness: Harness) -> None:
    await harness.event(dm_message("D_ALICE", ALICE, "what's up", "1700000101.000100"))
    replies = await harness.answer("D_ALICE", "1700000101.000100", run=False)
    assert len(replies) == 1
    assert "I do not answer direct messages" in replies[0]
    assert harness.model.chat_requests == []


async def test_a_managers_only_tool_is_offered_only_to_managers(harness: Harness) -> None:
    await harness.event(app_mention(CHANNEL, "U_CAROL", "<@U_BOT> hello", "1700000102.000100"))
    await harness.answer(CHANNEL, "1700000102.000100")
    assert "deploy" not in offered_tools(harness.model.chat_requests[-1])
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> hello again", "1700000103.000100"))
    await harness.answer(CHANNEL, "1700000103.000100")
    assert "deploy" in offered_tools(harness.model.chat_requests[-1])


async def test_a_tool_the_person_may_not_use_is_refused_when_the_model_calls_it_anyway(harness: Harness) -> None:
    """Carol may not use deploy, so it is not offered; the scripted model calls it all the same (as one copied
    from the history would): the run completes, deploy never runs, and the refusal is the call's result."""
    await harness.event(app_mention(CHANNEL, "U_CAROL", "<@U_BOT> deploy billing", "1700000105.000100"))
    [answer] = await harness.answer(CHANNEL, "1700000105.000100")
    first, second = harness.model.chat_requests
    assert "deploy" not in offered_tools(first)
    assert team_tools.TIMELINE == []
    assert not any(m.blocks for m in harness.slack.thread(CHANNEL, "1700000105.000100"))  # no approval asked
    [result] = tool_results(second)
    assert result["content"].startswith("Refused: the person who asked may not use deploy here, so it was not run.")
    assert answer.startswith("Done [1]: Refused")
    assert harness.bot is not None
    [run] = await harness.bot.service.store.thread_runs(
        await harness.bot.service.store.current_thread(f"slack:{TEAM_ID}:{CHANNEL}")
    )
    assert run.status == "completed"


async def test_an_approval_pressed_by_someone_not_allowed_is_refused(harness: Harness) -> None:
    await harness.event(app_mention(CHANNEL, BOB, "<@U_BOT> deploy billing", "1700000104.000100"))
    message = await approval_message(harness, "1700000104.000100")
    value = button_value(message)
    press = block_action(APPROVE_ACTION, value, BOB, CHANNEL, message.ts, harness.slack.response_url("p1"))
    assert await harness.send(press) == 200
    [refusal] = await harness.slack.wait_for_response("p1")
    assert refusal["text"] == "You may not approve or deny deploy here; ask a channel manager."
    assert team_tools.TIMELINE == []
    approve = block_action(APPROVE_ACTION, value, ALICE, CHANNEL, message.ts, harness.slack.response_url("p2"))
    assert await harness.send(approve) == 200
    await harness.answer(CHANNEL, "1700000104.000100")
    assert team_tools.TIMELINE == ["deployed billing"]
    assert "approved by <@U_ALICE>" in json.dumps(harness.slack.messages[message.ts].blocks)


async def test_usage_all_and_switching_assistants_are_for_managers(harness: Harness) -> None:
    assert "Only this bot's channel managers" in await command(harness, "/usage", "all", BOB, "u1")
    assert "Only this bot's channel managers" not in await command(harness, "/usage", "all", ALICE, "u2")
    assert "Only this bot's channel managers" in await command(harness, "/assistant", "threadline", BOB, "s1")
    assert "now uses threadline" in await command(harness, "/assistant", "threadline", ALICE, "s2")
    assert "assistant: threadline" in await command(harness, "/assistant", "", BOB, "s3")


# -- the console: /assistant switching survives a restart ------------------------------------------------

CONSOLE_ASSISTANTS = """
default = "helper"

[[assistants]]
name = "helper"
model = "model-a"

[[assistants]]
name = "terse"
model = "model-b"

[policy]
managers = [{manager!r}]
"""


async def test_slash_budget_over_slack_names_a_person_by_their_escaped_mention(harness: Harness) -> None:
    """/budget's manifest entry escapes mentions, so Slack sends <@U_BOB|bob>: the limit is Bob's."""
    change = f"user <@{BOB}|bob> day 5 tokens"
    assert "Only this bot's channel managers may change budgets" in await command(harness, "/budget", change, BOB, "b1")
    assert f"The daily budget of slack:{BOB} is now 5 tokens." in await command(harness, "/budget", change, ALICE, "b2")
    assert "- You, daily budget: 0 tokens of 5 tokens (0%)" in await command(harness, "/budget", "", BOB, "b3")
    assert "No budget applies here" in await command(harness, "/budget", "", ALICE, "b4")

    await harness.event(app_mention(CHANNEL, BOB, "<@U_BOT> deploy please", "1700000300.000100"))
    [reply] = await harness.answer(CHANNEL, "1700000300.000100")
    assert "has 5 tokens left of their daily budget" in reply
    assert harness.model.chat_requests == []  # refused before the model was called


async def test_assistant_switch_is_for_managers_and_survives_a_restart(tmp_path: Path) -> None:
    me = f"console:{getpass.getuser() or 'you'}"
    refused, allowed = tmp_path / "refused.toml", tmp_path / "allowed.toml"
    refused.write_text(CONSOLE_ASSISTANTS.format(manager="console:somebody-else"))
    allowed.write_text(CONSOLE_ASSISTANTS.format(manager=me))
    async with FakeOpenAI() as fake:
        env = console_env(tmp_path, OPENAI_BASE_URL=fake.base_url, THREADLINE_ASSISTANTS=str(refused))
        code, out, err = await run_console(env, "/assistant terse\nhi\n", tmp_path)
        assert code == 0, err
        assert "Only this bot's channel managers may switch" in out
        assert fake.chat_requests[-1]["model"] == "model-a"  # still the default, helper

        env["THREADLINE_ASSISTANTS"] = str(allowed)
        code, out, err = await run_console(env, "/assistant nobody\n/assistant terse\n", tmp_path)
        assert code == 0, err
        assert "There is no assistant called nobody. The assistants here: helper, terse, threadline." in out
        assert "This channel now uses terse (model model-b)" in out

        code, out, err = await run_console(env, "/assistant\nhello\n", tmp_path)  # a new process: a restart
        assert code == 0, err
        assert "This channel's assistant: terse (model model-b" in out
        assert fake.chat_requests[-1]["model"] == "model-b"


# -- the policy's matching, as plain units ---------------------------------------------------------------


def test_channel_patterns_direct_messages_and_roles() -> None:
    policy = parse_policy(
        {
            "channels": {"allow": ["slack:T01:*", "discord:*:123"], "deny": ["slack:T01:C9"]},
            "direct_messages": False,
            "managers": ["discord-role:789"],
            "tools": {"send_email": {"use": "managers", "approve": ["discord:42"]}},
        },
        "t.toml",
    )
    assert policy.refusal("slack:T01:C1") is None
    assert policy.refusal("discord:555:123") is None
    assert policy.refusal("slack:T01:C9") is not None  # deny wins
    assert policy.refusal("slack:T02:C1") is not None  # not on the allow list
    assert policy.refusal("discord:dm:77") is not None  # DMs off
    member = Author(id="1", key="discord:1", roles=("discord-role:789",))
    other = Author(id="42", key="discord:42")
    assert policy.is_manager(member)
    assert not policy.is_manager(other)
    assert policy.may_use("send_email", member)
    assert not policy.may_use("send_email", other)
    assert policy.may_approve("send_email", other)
    assert not policy.may_approve("send_email", member)
    assert policy.may_use("get_weather", other)  # no rule: everyone


def test_no_policy_keeps_everything_open() -> None:
    policy = parse_policy({}, "t.toml")
    assert policy.refusal("slack:T01:D1") is None
    assert policy.is_manager(None)
    assert policy.may_use("send_email", None)
    assert policy.may_approve("send_email", None)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"managers": ["U123"]}, "'U123' is not a user or role key"),
        ({"direct_messages": "no"}, "'direct_messages' must be true or false"),
        ({"tools": {"deploy": {"use": "managers"}}}, "names the managers, but [policy] lists none"),
        ({"tools": {"deploy": {"use": "admins"}}}, 'must be "everyone", "managers" or a list'),
        ({"channels": {"allow": "slack:*"}}, "'channels.allow' must be a list of channel keys"),
        ({"colour": 1}, "unknown key 'colour'"),
    ],
)
def test_bad_policies_name_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_policy(table, "t.toml")
    assert message in str(caught.value)


# -- Discord: the @everyone role's id is the server's id ---------------------------------------------------


@pytest.fixture
async def discord_harness(tmp_path: Path, fake_model: FakeOpenAI, settings: Settings) -> AsyncIterator[DiscordHarness]:
    """The Discord bot with deploy ruled to ``discord-role:GUILD_ID``: the server's @everyone role."""
    assistants = tmp_path / "discord-policy.toml"
    assistants.write_text(DISCORD_ASSISTANTS + f'\n[policy.tools.deploy]\nuse = ["discord-role:{GUILD_ID}"]\n')
    fake_model.script = discord_chat_script
    async with FakeDiscord() as fake:
        fake.patch_discord()
        h = DiscordHarness(fake, fake_model, replace(settings, assistants_file=assistants))
        await h.start()
        yield h
        await h.stop()


async def test_the_server_id_as_a_discord_role_names_every_member_of_that_server(
    discord_harness: DiscordHarness,
) -> None:
    fake = discord_harness.fake
    in_server = await fake.send_message("hello", author=DISCORD_BOB)  # Bob has no role of his own
    await discord_harness.answer(in_server, ending="hello")
    assert "deploy" in offered_tools(discord_harness.model.requests[-1])
    in_private = await fake.send_message("hello in private", channel_id=DM_CHANNEL_ID, mention_bot=False)
    await discord_harness.answer(in_private, ending="hello in private")
    assert "deploy" not in offered_tools(discord_harness.model.requests[-1])  # a direct message: no roles
