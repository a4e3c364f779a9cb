"""The fake Discord speaks Discord's real protocols: a plain discord.py client and Bot work against it unmodified."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fakes.discord_server import (
    ALICE,
    APPLICATION_ID,
    BOB,
    BOT_TOKEN,
    BOT_USER_ID,
    CHANNEL_ID,
    DM_CHANNEL_ID,
    EPHEMERAL,
    GUILD_ID,
    NO_VIEW_PERMS,
    OTHER_BOT,
    OTHER_CHANNEL_ID,
    THREAD_ID,
    FakeDiscord,
    point_discord_at,
)

EDIT = r"/channels/\d+/messages/\d+"


def intents() -> discord.Intents:
    chosen = discord.Intents.none()
    chosen.guilds = True
    chosen.guild_messages = True
    chosen.dm_messages = True
    chosen.message_content = True
    return chosen


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        point_discord_at(server, monkeypatch)
        yield server


@contextlib.asynccontextmanager
async def running(client: discord.Client) -> AsyncIterator[discord.Client]:
    """Start ``client`` against the fake, wait for on_ready; close it (and its connector) at the end."""
    async with client:
        task = asyncio.create_task(client.start(BOT_TOKEN))
        ready = asyncio.create_task(client.wait_until_ready())
        try:
            done, _ = await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                task.result()  # raises what start() raised
            assert ready in done, "the client did not get ready"
            yield client
        finally:
            ready.cancel()
            await client.close()
            await task


def new_client() -> discord.Client:
    return discord.Client(intents=intents(), guild_ready_timeout=0.05)


def message_queue(client: discord.Client) -> asyncio.Queue[discord.Message]:
    queue: asyncio.Queue[discord.Message] = asyncio.Queue()

    async def on_message(message: discord.Message) -> None:
        if message.author.id != BOT_USER_ID:
            queue.put_nowait(message)

    client.event(on_message)
    return queue


async def test_login_ready_and_the_guild_in_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeDiscord(extra_channels=100) as fake:
        point_discord_at(fake, monkeypatch)
        async with running(new_client()) as client:
            await fake.wait_ready()
            assert client.user is not None
            assert (client.user.id, client.user.bot, client.application_id) == (BOT_USER_ID, True, APPLICATION_ID)
            guild = client.get_guild(GUILD_ID)
            assert guild is not None
            assert [c.id for c in guild.text_channels][:2] == [CHANNEL_ID, OTHER_CHANNEL_ID]
            assert len(guild.text_channels) == 102
            assert THREAD_ID not in [c.id for c in guild.text_channels]
            thread = guild.get_thread(THREAD_ID)
            assert thread is not None
            assert thread.parent_id == CHANNEL_ID
            assert guild.me.id == BOT_USER_ID
            assert guild.default_role.id == GUILD_ID
            general = guild.get_channel(CHANNEL_ID)
            assert isinstance(general, discord.TextChannel)
            assert general.permissions_for(guild.me).send_messages
        assert [c.path for c in fake.calls] == ["/users/@me", "/oauth2/applications/@me"]
        assert fake.identify_payloads[0]["intents"] == intents().value
        assert fake.gateway_queries[0] == {"v": "10", "encoding": "json", "compress": "zlib-stream"}
        # Client.close() asks for 1000, but its reading task races it and usually sends 4000 first
        assert fake.last_close_code in (1000, 4000)


async def test_a_wrong_token_fails_login(fake: FakeDiscord) -> None:
    client = new_client()
    async with client:
        with pytest.raises(discord.LoginFailure):
            await client.login("not-the-token")
    assert fake.calls[0].status == 401


async def test_messages_with_mentions_attachments_dms_and_threads_reach_on_message(fake: FakeDiscord) -> None:
    client = new_client()
    received = message_queue(client)
    async with running(client):
        notes = fake.attachment("notes.txt", b"remember the milk", content_type="text/plain")
        sent = await fake.send_message("summarize this", attachments=[notes])
        message = await asyncio.wait_for(received.get(), 5)

        assert client.user is not None
        assert client.user.mentioned_in(message)
        assert message.content == f"<@{BOT_USER_ID}> summarize this"
        assert (message.id, message.author.id, message.author.bot) == (int(sent["id"]), ALICE.id, False)
        assert isinstance(message.author, discord.Member)
        assert message.guild is not None
        assert message.guild.id == GUILD_ID
        assert [a.filename for a in message.attachments] == ["notes.txt"]
        assert await message.attachments[0].read() == b"remember the milk"
        assert fake.downloads == [notes.url]

        await fake.send_message("hi", channel_id=DM_CHANNEL_ID, mention_bot=False)
        dm = await asyncio.wait_for(received.get(), 5)
        assert dm.guild is None
        assert isinstance(dm.channel, discord.DMChannel)
        assert not client.user.mentioned_in(dm)

        await fake.send_message("in the thread", channel_id=THREAD_ID, author=OTHER_BOT, mention_bot=False)
        in_thread = await asyncio.wait_for(received.get(), 5)
        assert isinstance(in_thread.channel, discord.Thread)
        assert in_thread.author.bot


async def test_send_edit_reply_typing_reactions_and_files_are_recorded(fake: FakeDiscord) -> None:
    client = new_client()
    received = message_queue(client)
    async with running(client):
        channel = client.get_channel(CHANNEL_ID)
        assert isinstance(channel, discord.TextChannel)
        async with channel.typing():
            first = await channel.send("first")
        edited = await first.edit(content="second")
        await first.add_reaction("👀")
        await first.remove_reaction("👀", discord.Object(BOT_USER_ID))

        await fake.send_message("ping")
        question = await asyncio.wait_for(received.get(), 5)
        reply = await question.reply("pong", mention_author=False)

        upload = await channel.send(file=discord.File(io.BytesIO(b"a,b\n1,2\n"), "table.csv"))
        assert await upload.attachments[0].read() == b"a,b\n1,2\n"

        with pytest.raises(discord.HTTPException) as too_long:
            await channel.send("x" * 2001)
        assert too_long.value.code == 50035
        with pytest.raises(discord.Forbidden) as not_ours:
            await question.edit(content="hijacked")
        assert not_ours.value.code == 50005

    assert edited.content == "second"
    assert [m["content"] for m in fake.bot_messages(CHANNEL_ID)] == ["second", "pong", ""]
    assert fake.history[first.id] == ["first", "second"]
    assert fake.typing == [CHANNEL_ID]
    assert fake.reactions == [(CHANNEL_ID, first.id, "👀", True), (CHANNEL_ID, first.id, "👀", False)]
    assert reply.reference is not None
    assert reply.reference.message_id == question.id
    stored_reply = fake.bot_messages(CHANNEL_ID)[1]
    assert stored_reply["message_reference"]["message_id"] == str(question.id)
    assert stored_reply["mentions"] == []  # mention_author=False
    assert fake.calls_to("POST", r"/channels/\d+/messages")[-2].files == (("table.csv", b"a,b\n1,2\n"),)
    assert fake.calls_to("GET", r"/channels/\d+/messages") == []  # nobody read the history


async def test_an_injected_429_is_retried_and_the_edit_lands(fake: FakeDiscord) -> None:
    async with running(new_client()) as client:
        channel = client.get_channel(CHANNEL_ID)
        assert isinstance(channel, discord.TextChannel)
        message = await channel.send("draft")
        fake.fail_next("PATCH", EDIT, retry_after=0.05)
        await message.edit(content="final")

    assert [c.status for c in fake.calls_to("PATCH", EDIT)] == [429, 200]
    assert fake.bot_messages(CHANNEL_ID)[0]["content"] == "final"
    assert fake.rate_limited == 1


async def test_a_refusal_lasts_until_allowed_and_can_pick_requests_by_their_body(fake: FakeDiscord) -> None:
    async with running(new_client()) as client:
        channel = client.get_channel(CHANNEL_ID)
        assert isinstance(channel, discord.TextChannel)
        message = await channel.send("draft")
        fake.refuse("PATCH", EDIT, status=503)  # discord.py gives up on a 503 at once
        for _ in range(2):
            with pytest.raises(discord.DiscordServerError):
                await message.edit(content="final")
        fake.allow("PATCH", EDIT)
        await message.edit(content="final")
        posts = rf"/channels/{CHANNEL_ID}/messages"
        fake.refuse("POST", posts, status=403, when=lambda body: "message_reference" in body)
        with pytest.raises(discord.Forbidden) as refused:
            await message.reply("a reply")
        await channel.send("not a reply")

    assert (refused.value.status, refused.value.code) == (403, 50013)
    assert [c.status for c in fake.calls_to("PATCH", EDIT)] == [503, 503, 200]
    assert [c.status for c in fake.calls_to("POST", posts)] == [200, 403, 200]
    assert [m["content"] for m in fake.bot_messages(CHANNEL_ID)] == ["final", "not a reply"]


async def test_the_rate_limit_bucket_makes_discordpy_wait_instead_of_hitting_429(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with FakeDiscord(rate_limit=(2, 0.3)) as fake:
        point_discord_at(fake, monkeypatch)
        async with running(new_client()) as client:
            channel = client.get_channel(CHANNEL_ID)
            assert isinstance(channel, discord.TextChannel)
            message = await channel.send("0")
            for i in range(1, 8):
                await message.edit(content=str(i))

            # a client that ignores the X-RateLimit headers gets 429s, with the Via header discord.py needs
            url = f"{fake.api_base}/channels/{CHANNEL_ID}/messages/{message.id}"
            async with aiohttp.ClientSession(headers={"Authorization": f"Bot {BOT_TOKEN}"}) as session:
                statuses = []
                for _ in range(3):
                    async with session.patch(url, json={"content": "spam"}) as response:
                        statuses.append(response.status)
                        if response.status == 429:
                            assert response.headers["Via"]
                            assert (await response.json())["retry_after"] > 0

    edits = fake.calls_to("PATCH", EDIT)
    assert [c.status for c in edits[:7]] == [200] * 7
    assert edits[6].time_monotonic - edits[0].time_monotonic >= 0.85  # 4 windows of 0.3 s
    assert fake.history[message.id][:8] == [str(i) for i in range(8)]
    assert 429 in statuses
    assert fake.rate_limited == statuses.count(429)


async def test_a_resumable_disconnect_is_resumed_and_missed_events_are_replayed_once(fake: FakeDiscord) -> None:
    client = new_client()
    received = message_queue(client)
    async with running(client):
        await fake.wait_ready()
        await fake.disconnect(4000)
        missed = await fake.send_message("while you were away")
        assert fake.resumes == 0  # it went into the session's log, not onto a socket
        await fake.wait_resumed()
        live = await fake.send_message("welcome back")

        first = await asyncio.wait_for(received.get(), 5)
        second = await asyncio.wait_for(received.get(), 5)
        assert [first.id, second.id] == [int(missed["id"]), int(live["id"])]
        assert received.empty()

    assert fake.identifies == 1
    resume = fake.resume_payloads[0]
    assert resume["session_id"] == fake.sessions[0]
    assert resume["seq"] == 2  # READY and GUILD_CREATE
    assert [d.event for d in fake.dispatched] == ["READY", "GUILD_CREATE", "MESSAGE_CREATE", "MESSAGE_CREATE"]


class QuickClient(discord.Client):
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None  # discord.py sleeps 5 s before every IDENTIFY but the first


async def test_reconnect_requests_resume_and_an_invalid_session_identifies_again(fake: FakeDiscord) -> None:
    client = QuickClient(intents=intents(), guild_ready_timeout=0.05)
    received = message_queue(client)
    async with running(client):
        await fake.request_reconnect()  # op 7
        during = await fake.send_message("during the reconnect")
        await fake.wait_resumed()
        assert (await asyncio.wait_for(received.get(), 5)).id == int(during["id"])

        await fake.invalidate_session()  # op 9, not resumable
        await fake.wait_ready(count=2)
        after = await fake.send_message("new session")
        assert (await asyncio.wait_for(received.get(), 5)).id == int(after["id"])
        assert received.empty()

    assert (fake.identifies, fake.resumes, len(fake.sessions)) == (2, 1, 2)


@pytest.mark.parametrize(
    ("code", "error"), [(4014, discord.PrivilegedIntentsRequired), (4004, discord.ConnectionClosed)]
)
async def test_a_fatal_close_on_identify_stops_the_client(
    monkeypatch: pytest.MonkeyPatch, code: int, error: type[Exception]
) -> None:
    async with FakeDiscord(close_code_on_identify=code) as fake:
        point_discord_at(fake, monkeypatch)
        client = new_client()
        async with client:
            with pytest.raises(error):
                await asyncio.wait_for(client.start(BOT_TOKEN), 10)
        assert fake.identifies == 1
        assert fake.last_close_code == code


def slash_bot() -> tuple[commands.Bot, list[str]]:
    bot = commands.Bot(command_prefix=commands.when_mentioned, intents=intents(), guild_ready_timeout=0.05)
    seen: list[str] = []
    guild = discord.Object(GUILD_ID)

    @bot.tree.command(name="ask", description="Ask the assistant", guild=guild)
    @app_commands.describe(question="What to ask")
    async def ask(interaction: discord.Interaction, question: str, private: bool = False, tries: int = 1) -> None:
        seen.append(f"{question}/{private}/{tries}/{interaction.permissions.view_channel}")
        await interaction.response.defer(ephemeral=private, thinking=True)
        await interaction.followup.send(f"answer to {question}", ephemeral=private)

    @bot.tree.command(name="weather", description="The weather")  # global: offered in DMs too
    async def weather(interaction: discord.Interaction, city: str) -> None:
        await interaction.response.send_message(f"sunny in {city}")

    @weather.autocomplete("city")
    async def cities(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        names = ("Paris", "Parma", "Berlin")
        return [app_commands.Choice(name=n, value=n) for n in names if n.lower().startswith(current.lower())]

    return bot, seen


async def test_slash_commands_sync_defer_follow_up_and_autocomplete(fake: FakeDiscord) -> None:
    bot, seen = slash_bot()
    async with running(bot):
        assert [c.name for c in await bot.tree.sync(guild=discord.Object(GUILD_ID))] == ["ask"]
        assert [c.name for c in await bot.tree.sync()] == ["weather"]

        private = await fake.slash_command("ask", {"question": "why?", "private": True, "tries": 2})
        await fake.wait_until(lambda: private.token in fake.followups, what="the follow-up")
        public = await fake.slash_command("ask", {"question": "how?"}, user=BOB, permissions=NO_VIEW_PERMS)
        await fake.wait_until(lambda: public.token in fake.followups, what="the follow-up")
        direct = await fake.slash_command("weather", {"city": "Oslo"}, channel_id=DM_CHANNEL_ID)
        await fake.wait_until(lambda: direct.id in fake.interaction_responses, what="the answer")
        typing = await fake.autocomplete("weather", "city", "par")
        await fake.wait_until(lambda: typing.id in fake.interaction_responses, what="the choices")

    assert seen == ["why?/True/2/True", "how?/False/1/False"]
    assert [c["name"] for c in fake.synced_commands[GUILD_ID]] == ["ask"]
    assert [c["name"] for c in fake.synced_commands["global"]] == ["weather"]
    ask = fake.synced_commands[GUILD_ID][0]
    assert [(o["name"], o["type"], o.get("required", False)) for o in ask["options"]] == [
        ("question", 3, True),
        ("private", 5, False),
        ("tries", 4, False),
    ]
    assert fake.interaction_responses[private.id] == [{"type": 5, "data": {"flags": EPHEMERAL}}]
    [answer] = fake.followups[private.token]
    assert answer["content"] == "answer to why?"
    assert answer["flags"] & EPHEMERAL
    assert fake.original_response(private.token) == answer  # the follow-up filled the "thinking" message
    [shown] = fake.bot_messages(CHANNEL_ID)  # the ephemeral answer is not in the channel
    assert shown["content"] == "answer to how?"
    assert shown["interaction_metadata"]["user"]["id"] == str(BOB.id)
    assert fake.interaction_responses[direct.id][0]["data"]["content"] == "sunny in Oslo"
    assert fake.bot_messages(DM_CHANNEL_ID)[0]["content"] == "sunny in Oslo"
    assert fake.interaction_responses[typing.id] == [
        {"type": 8, "data": {"choices": [{"name": "Paris", "value": "Paris"}, {"name": "Parma", "value": "Parma"}]}}
    ]


class Approval(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Approve", custom_id="approve", style=discord.ButtonStyle.success)
    async def approve(self, interaction: discord.Interaction, button: discord.ui.Button[Approval]) -> None:
        await interaction.response.edit_message(content=f"approved by {interaction.user.name}", view=None)


async def test_a_button_press_reaches_the_view_and_edit_message_updates_the_message(fake: FakeDiscord) -> None:
    client = new_client()
    async with running(client):
        client.add_view(Approval())  # persistent: found by custom_id after a restart too
        channel = client.get_channel(CHANNEL_ID)
        assert isinstance(channel, discord.TextChannel)
        await channel.send("Deploy?", view=Approval())
        [stored] = fake.bot_messages(CHANNEL_ID)
        assert stored["components"][0]["components"][0]["custom_id"] == "approve"

        press = await fake.press_button(stored, "approve", user=BOB)
        await fake.wait_until(lambda: stored["content"] != "Deploy?", what="the edit")

    assert stored["content"] == "approved by bob"
    assert stored["components"] == []
    assert fake.history[int(stored["id"])] == ["Deploy?", "approved by bob"]
    assert fake.interaction_responses[press.id][0]["type"] == 7


async def test_threads_dms_original_responses_and_member_chunks(fake: FakeDiscord) -> None:
    chosen = intents()
    chosen.members = True  # discord.py then chunks the guild at startup (op 8)
    client = discord.Client(intents=chosen, guild_ready_timeout=0.05)
    tree = app_commands.CommandTree(client)
    seen: list[str] = []

    @tree.command(name="status", description="Show the status")
    async def status(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("checking")
        seen.append((await interaction.original_response()).content)
        await interaction.edit_original_response(content="all good")
        extra = await interaction.followup.send("details", wait=True)
        seen.append(extra.content)

    async with running(client):
        guild = client.get_guild(GUILD_ID)
        assert guild is not None
        assert sorted(m.name for m in guild.members) == ["alice", "bob", "otherbot", "threadline"]

        channel = client.get_channel(CHANNEL_ID)
        assert isinstance(channel, discord.TextChannel)
        start = await channel.send("a question")
        thread = await start.create_thread(name="the conversation")
        await thread.send("the answer")

        dm = await (await client.fetch_user(BOB.id)).create_dm()
        await dm.send("hello bob")

        await tree.sync()
        command = await fake.slash_command("status")
        await fake.wait_for("POST", r"/webhooks/\d+/.+")

    assert (thread.id, thread.parent_id) == (start.id, CHANNEL_ID)  # a thread on a message takes its id
    assert fake.bot_messages(thread.id)[0]["content"] == "the answer"
    assert [d.event for d in fake.dispatched].count("THREAD_CREATE") == 1
    assert fake.bot_messages(dm.id)[0]["content"] == "hello bob"
    assert seen == ["checking", "details"]
    assert [m["content"] for m in fake.followups[command.token]] == ["all good", "details"]
    assert [m["content"] for m in fake.bot_messages(CHANNEL_ID)][-2:] == ["all good", "details"]


async def test_rest_errors_have_discords_shapes(fake: FakeDiscord) -> None:
    message = await fake_bot_message(fake)
    async with aiohttp.ClientSession() as session:

        async def call(method: str, path: str, body: Any = None, token: str | None = BOT_TOKEN) -> tuple[int, Any]:
            headers = {"Authorization": f"Bot {token}"} if token else {}
            async with session.request(method, fake.api_base + path, json=body, headers=headers) as response:
                assert response.headers.get("Content-Type") in ("application/json", None)
                return response.status, (await response.json()) if response.status != 204 else None

        assert await call("GET", "/users/@me", token=None) == (401, {"code": 0, "message": "401: Unauthorized"})
        assert (await call("POST", "/channels/999/messages", {"content": "x"}))[1]["code"] == 10003
        assert (await call("PATCH", f"/channels/{CHANNEL_ID}/messages/1", {"content": "x"}))[1]["code"] == 10008
        status, body = await call("POST", f"/channels/{CHANNEL_ID}/messages", {"content": ""})
        assert (status, body["code"]) == (400, 50006)
        status, body = await call("PATCH", f"/channels/{CHANNEL_ID}/messages/{message}", {"content": "y" * 2001})
        assert (status, body["code"]) == (400, 50035)
        assert "content" in body["errors"]

        fake.fail_next("GET", r"/users/@me", status=500)
        assert (await call("GET", "/users/@me"))[0] == 500

        async with running(new_client()):  # a plain Client leaves interactions unanswered
            interaction = await fake.slash_command("ask")
            callback = f"/interactions/{interaction.id}/{interaction.token}/callback"
            assert (await call("POST", callback, {"type": 4, "data": {"content": "hi"}}, token=None))[0] == 204
            status, body = await call("POST", callback, {"type": 4, "data": {"content": "again"}}, token=None)
            assert (status, body["code"]) == (400, 40060)


async def fake_bot_message(fake: FakeDiscord) -> int:
    """Post a message as the bot through the REST API; return its id."""
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bot {BOT_TOKEN}"}) as session,
        session.post(f"{fake.api_base}/channels/{CHANNEL_ID}/messages", json={"content": "hello"}) as response,
    ):
        return int((await response.json())["id"])


async def test_snowflakes_increase_and_carry_their_time(fake: FakeDiscord) -> None:
    before = time.time()
    first, second = await fake_bot_message(fake), await fake_bot_message(fake)
    assert second > first
    assert abs(discord.utils.snowflake_time(first).timestamp() - before) < 5
