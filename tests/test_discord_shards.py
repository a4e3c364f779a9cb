"""Discord with its shards spread over processes: each serves the guilds of its shards, DMs go to shard 0.

Real discord.py (``commands.AutoShardedBot`` with ``shard_count`` and ``shard_ids``) against the fake gateway,
which routes as Discord does: a guild's events to shard ``(guild_id >> 22) % count``, DMs to shard 0. Two bots
share one database, in one test and as two ``python -m bots`` processes. Waiting is on the fakes' records, on
discord.py's own events and on log lines, never on a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import discord
import pytest

from bots.discord.app import DiscordBot, ShardedThreadlineBot, ThreadlineBot
from bots.discord.config import DiscordSettings, parse_shards
from core.errors import ConfigError
from core.settings import Settings
from tests.fakes.discord_server import (
    BOT_TOKEN,
    CHANNEL_ID,
    DM_CHANNEL_ID,
    GUILD_ID,
    SECOND_CHANNEL_ID,
    SECOND_GUILD_ID,
    FakeDiscord,
    shard_of,
)
from tests.fakes.openai_server import FakeOpenAI, Reply, last_user_text
from tests.test_entry_points import clean_env, run
from tests.test_one_process import Bots, assert_one_line_naming, free_port, get, started  # noqa: F401 - fixture


def answer(request: dict[str, Any]) -> Reply:
    return Reply(text=f"Answer to: {last_user_text(request).split(': ', 1)[-1]}", chunk_delay=0.001)


def replies_to(fake: FakeDiscord, question: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        m
        for m in fake.bot_messages(int(question["channel_id"]))
        if (m.get("message_reference") or {}).get("message_id") == question["id"]
    ]


async def wait_answer(fake: FakeDiscord, question: dict[str, Any], timeout: float = 10) -> None:
    text = "Answer to: " + question["content"].split("> ", 1)[-1]
    await fake.wait_until(
        lambda: any(m["content"] == text for m in replies_to(fake, question)),
        timeout=timeout,
        what=f"{text!r} in reply to {question['id']}",
    )


def sessions_sent(fake: FakeDiscord, message: dict[str, Any]) -> list[str]:
    """The gateway sessions the fake sent ``message``'s MESSAGE_CREATE to."""
    return [d.session_id for d in fake.dispatched if d.event == "MESSAGE_CREATE" and d.data["id"] == message["id"]]


def session_of(fake: FakeDiscord, shard: int) -> str:
    (session,) = fake.session_ids(shard)
    return session


class Shard:
    """One bot serving some shards, its core on the shared database; records the messages discord.py gave it."""

    def __init__(self, bot: DiscordBot) -> None:
        self.bot = bot
        self.seen: list[int] = []  # ids of the messages this bot's gateway connections delivered
        bot.client.add_listener(self._on_message, "on_message")

    async def _on_message(self, message: discord.Message) -> None:
        self.seen.append(message.id)


@contextlib.asynccontextmanager
async def shard_bots(
    settings: Settings, fake: FakeDiscord, *shard_sets: tuple[int, ...] | None, count: int = 2
) -> AsyncIterator[list[Shard]]:
    """One bot per entry of ``shard_sets`` (the ids it serves; None: all ``count``), all on one database."""
    fake.patch_discord()
    base = DiscordSettings(
        token=BOT_TOKEN, api_url=fake.api_base, gateway_url=fake.gateway_url, edit_interval=0.2, shard_count=count
    )
    bots: list[Shard] = []
    try:
        for ids in shard_sets:
            bot = await DiscordBot.start(settings, replace(base, shard_ids=ids), guild_ready_timeout=0.05)
            bots.append(Shard(bot))
        yield bots
    finally:
        for shard in reversed(bots):
            await shard.bot.stop()


async def test_two_bots_on_shards_0_and_1_answer_each_guild_once_and_dms_on_shard_0(
    settings: Settings, fake_model: FakeOpenAI
) -> None:
    assert (shard_of(GUILD_ID, 2), shard_of(SECOND_GUILD_ID, 2)) == (0, 1)
    fake_model.script = answer
    async with FakeDiscord(second_guild=True) as fake, shard_bots(settings, fake, (0,), (1,)) as (first, second):
        assert isinstance(first.bot.client, ShardedThreadlineBot)
        # Each session got READY and GUILD_CREATE for its own shard's guild only.
        assert fake.shards_identified == [[0, 2], [1, 2]]
        assert [g.id for g in first.bot.client.guilds] == [GUILD_ID]
        assert [g.id for g in second.bot.client.guilds] == [SECOND_GUILD_ID]
        # One process registers the slash commands: the one serving shard 0.
        assert len(fake.calls_to("GET", r"/applications/\d+/commands")) == 1
        assert await first.bot.front.readiness() is None
        assert await second.bot.front.readiness() is None

        on_shard_0 = await fake.send_message("in the first guild", channel_id=CHANNEL_ID)
        on_shard_1 = await fake.send_message("in the second guild", channel_id=SECOND_CHANNEL_ID)
        in_a_dm = await fake.send_message("in private", channel_id=DM_CHANNEL_ID, mention_bot=False)
        for question in (on_shard_0, on_shard_1, in_a_dm):
            await wait_answer(fake, question)
        await first.bot.service.wait_idle()
        await second.bot.service.wait_idle()

        assert sessions_sent(fake, on_shard_0) == [session_of(fake, 0)]
        assert sessions_sent(fake, on_shard_1) == [session_of(fake, 1)]
        assert sessions_sent(fake, in_a_dm) == [session_of(fake, 0)]  # Discord sends DMs to shard 0
        assert first.seen == [int(on_shard_0["id"]), int(in_a_dm["id"])]
        assert second.seen == [int(on_shard_1["id"])]
        for question in (on_shard_0, on_shard_1, in_a_dm):
            assert len(replies_to(fake, question)) == 1, question["content"]
        assert len(fake_model.requests) == 3  # each question reached the model once, through one process

        # Both cores share the database: each channel's thread holds its own question, stored once.
        store = first.bot.service.store
        for key, text in [
            (f"discord:{GUILD_ID}:{CHANNEL_ID}", "in the first guild"),
            (f"discord:{SECOND_GUILD_ID}:{SECOND_CHANNEL_ID}", "in the second guild"),
        ]:
            stored = await store.thread_messages(await store.current_thread(key))
            assert [m.text for m in stored if m.role == "user"] == [text]


async def test_one_process_serving_every_shard_answers_every_guild_and_readyz_names_a_dropped_shard(
    settings: Settings, fake_model: FakeOpenAI
) -> None:
    fake_model.script = answer
    # DISCORD_SHARD_COUNT alone: this process serves all of them (discord.py waits 5 s between IDENTIFYs).
    async with FakeDiscord(second_guild=True) as fake, shard_bots(settings, fake, None) as (only,):
        client = only.bot.client
        assert fake.shards_identified == [[0, 2], [1, 2]]  # discord.py launches them in order
        assert sorted(g.id for g in client.guilds) == [GUILD_ID, SECOND_GUILD_ID]
        for channel_id in (CHANNEL_ID, SECOND_CHANNEL_ID):
            question = await fake.send_message(f"to channel {channel_id}", channel_id=channel_id)
            await wait_answer(fake, question)
            assert len(replies_to(fake, question)) == 1

        assert only.bot.health is not None
        readyz = f"http://127.0.0.1:{only.bot.health.port}/readyz"
        assert (await get(readyz))[0] == 200
        dropped = asyncio.ensure_future(client.wait_for("shard_disconnect", check=lambda shard_id: shard_id == 1))
        async with fake._send_lock:  # shard 1 drops and its gateway stays silent (no HELLO) while this is held
            live = fake.live_socket(shard=1)
            assert live is not None
            await live.close(code=4000, message=b"fake disconnect")
            await dropped
            status, body = await get(readyz)
            assert (status, body["failed"]) == (503, ["platform"])
            assert body["checks"]["platform"] == (
                "the Discord gateway is not connected for shard 1 of 2 (discord.py is reconnecting)"
            )
            resumed = asyncio.ensure_future(client.wait_for("shard_resumed", check=lambda shard_id: shard_id == 1))
        await fake.wait_resumed()
        await resumed
        assert (await get(readyz))[0] == 200


async def test_without_shard_settings_the_bot_keeps_one_unsharded_connection(
    settings: Settings, fake_model: FakeOpenAI
) -> None:
    async with FakeDiscord(second_guild=True) as fake:
        fake.patch_discord()
        plain = DiscordSettings(token=BOT_TOKEN, api_url=fake.api_base, gateway_url=fake.gateway_url)
        bot = await DiscordBot.start(settings, plain, guild_ready_timeout=0.05)
        try:
            assert type(bot.client) is ThreadlineBot
            assert fake.shards_identified == [None]
            assert sorted(g.id for g in bot.client.guilds) == [GUILD_ID, SECOND_GUILD_ID]
            assert fake.calls_to("GET", r"/gateway/bot") == []
        finally:
            await bot.stop()


async def test_the_fake_recommends_its_shard_count_and_refuses_an_invalid_shard() -> None:
    async with FakeDiscord(shards=3) as fake, aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bot {BOT_TOKEN}"}
        async with http.get(f"{fake.api_base}/gateway/bot", headers=headers) as response:
            assert (await response.json())["shards"] == 3
        async with http.ws_connect(fake.gateway_url) as ws:
            assert (await ws.receive_json())["op"] == 10
            await ws.send_json({"op": 2, "d": {"token": BOT_TOKEN, "intents": 0, "shard": [2, 2]}})
            await ws.receive()
            assert ws.close_code == 4010


# -- settings: one clear line naming the variable -------------------------------------------------------


def test_shard_settings_are_read_as_discord_means_them() -> None:
    assert parse_shards(None, None) == (None, None)
    assert parse_shards("4", None) == (4, None)
    assert parse_shards("4", "0, 2,") == (4, (0, 2))
    settings = DiscordSettings.from_env({"DISCORD_TOKEN": "t", "DISCORD_SHARD_COUNT": "3", "DISCORD_SHARD_IDS": "2"})
    assert (settings.shard_count, settings.shard_ids, settings.served_shards) == (3, (2,), (2,))
    assert not settings.serves_dms
    all_shards = DiscordSettings.from_env({"DISCORD_TOKEN": "t", "DISCORD_SHARD_COUNT": "2"})
    assert (all_shards.served_shards, all_shards.serves_dms) == ((0, 1), True)
    unsharded = DiscordSettings.from_env({"DISCORD_TOKEN": "t"})
    assert (unsharded.sharded, unsharded.served_shards) == (False, (0,))


@pytest.mark.parametrize(
    ("count", "ids", "variable", "words"),
    [
        (None, "0", "DISCORD_SHARD_IDS", "needs DISCORD_SHARD_COUNT"),
        ("two", None, "DISCORD_SHARD_COUNT", "whole number"),
        ("0", None, "DISCORD_SHARD_COUNT", "at least 1"),
        ("-1", "0", "DISCORD_SHARD_COUNT", "at least 1"),
        ("2", "2", "DISCORD_SHARD_IDS", "0 to 1"),
        ("2", "0,x", "DISCORD_SHARD_IDS", "'x' is not one"),
        ("2", "-1", "DISCORD_SHARD_IDS", "'-1' is not one"),
        ("4", "1,2,1", "DISCORD_SHARD_IDS", "shard 1 twice"),
        ("4", ",", "DISCORD_SHARD_IDS", "names no shard"),
    ],
)
def test_bad_shard_settings_say_which_variable_is_wrong(
    count: str | None, ids: str | None, variable: str, words: str
) -> None:
    env = {"DISCORD_TOKEN": "t"}
    env |= {"DISCORD_SHARD_COUNT": count} if count is not None else {}
    env |= {"DISCORD_SHARD_IDS": ids} if ids is not None else {}
    with pytest.raises(ConfigError) as raised:
        DiscordSettings.from_env(env)
    message = str(raised.value)
    assert variable in message
    assert words in message
    assert "\n" not in message


@pytest.mark.parametrize("module", ["bots", "bots.discord"])
@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"DISCORD_SHARD_IDS": "0"}, "DISCORD_SHARD_IDS"),
        ({"DISCORD_SHARD_COUNT": "2", "DISCORD_SHARD_IDS": "0,5"}, "DISCORD_SHARD_IDS"),
        ({"DISCORD_SHARD_COUNT": "many"}, "DISCORD_SHARD_COUNT"),
    ],
)
async def test_bad_shard_settings_stop_the_start_with_one_line(
    tmp_path: Path, module: str, extra: dict[str, str], variable: str
) -> None:
    env = clean_env(tmp_path, DISCORD_TOKEN="t", OPENAI_API_KEY="sk-test-not-a-real-key", **extra)
    code, _out, err = await run(module, env=env, cwd=tmp_path)
    assert code == 2
    assert_one_line_naming(err, variable)
    assert not (tmp_path / "data").exists()  # stopped before it opened anything


# -- one python -m bots per shard -------------------------------------------------------------------------


async def test_one_python_m_bots_per_shard_answers_its_own_guild(tmp_path: Path, started: list[Bots]) -> None:  # noqa: F811
    async with FakeOpenAI(answer) as model, FakeDiscord(second_guild=True) as fake:
        common = {
            "OPENAI_BASE_URL": model.base_url,
            "OPENAI_API_KEY": "sk-test-not-a-real-key",
            "DISCORD_TOKEN": BOT_TOKEN,
            "DISCORD_API_URL": fake.api_base,
            "DISCORD_GATEWAY_URL": fake.gateway_url,
            "DISCORD_SHARD_COUNT": "2",
            "THREADLINE_HTTP_HOST": "127.0.0.1",
        }
        ports = [free_port(), free_port()]
        processes = []
        for shard, port in enumerate(ports):  # one database: clean_env puts it in tmp_path for both
            env = clean_env(tmp_path, **common, DISCORD_SHARD_IDS=str(shard), PORT=str(port))
            bots = await Bots.start(env, tmp_path)
            started.append(bots)
            processes.append(bots)
        first, second = processes
        assert "on shard 0 of 2" in await first.wait_line("serving Discord")
        line = await second.wait_line("serving Discord")
        assert "on shard 1 of 2 (DMs go to the process serving shard 0)" in line
        await fake.wait_ready(count=2)

        on_shard_0 = await fake.send_message("for the first process", channel_id=CHANNEL_ID)
        on_shard_1 = await fake.send_message("for the second process", channel_id=SECOND_CHANNEL_ID)
        await wait_answer(fake, on_shard_0, timeout=30)
        await wait_answer(fake, on_shard_1, timeout=30)
        assert sessions_sent(fake, on_shard_0) == [session_of(fake, 0)]
        assert sessions_sent(fake, on_shard_1) == [session_of(fake, 1)]
        for port in ports:
            status, ready = await get(f"http://127.0.0.1:{port}/readyz")
            assert (status, ready["checks"]["platform"]) == (200, "ok")

        assert await first.stop() == 0
        assert await second.stop() == 0
        assert len(replies_to(fake, on_shard_0)) == 1
        assert len(replies_to(fake, on_shard_1)) == 1
        assert len(model.requests) == 2
    for bots in processes:
        assert "Traceback" not in bots.log, bots.log
        assert BOT_TOKEN not in bots.log
