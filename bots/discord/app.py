"""Wiring: the discord.py bot, its cogs and buttons, the core, and start-up errors people can act on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp
import discord
import yarl
from discord.ext import commands

from bots.cli import unreachable
from bots.discord.approvals import ApprovalDesk, approval_button_type
from bots.discord.command_sync import definitions_differ
from bots.discord.commands import CommandsCog, on_tree_error
from bots.discord.config import DiscordSettings
from bots.discord.conversation import ConversationCog
from bots.discord.render import FAILED, NO_PINGS, Replies, message_ids
from bots.entry import read_settings, serve
from bots.health import DEFAULT_METRICS_PORT, Health, HealthServer
from core.errors import ConfigError
from core.handles import RunHandle
from core.logs import configure_logging
from core.service import CutOff, Threadline
from core.settings import Settings

__all__ = [
    "PERMISSIONS",
    "DiscordBot",
    "DiscordFront",
    "ShardedThreadlineBot",
    "ThreadlineBot",
    "discord_client",
    "intents",
    "invite_url",
    "main",
]

_log = logging.getLogger(__name__)

# Exactly what the bot uses: read and answer messages (in threads too), reply to a message
# (which needs Read Message History), react to confirm files, post the code interpreter's files.
PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    read_message_history=True,
    add_reactions=True,
    attach_files=True,
)

INTENT_MISSING = (
    "Discord refused the connection because the bot's Message Content intent is not enabled (close code 4014). "
    "In the Discord Developer Portal open your application, go to Bot, switch on MESSAGE CONTENT INTENT under "
    "Privileged Gateway Intents, save, and start Threadline again. (Or set DISCORD_INDEX_FILES=mentions: the bot "
    "then needs no privileged intent and reads only messages that mention it, and DMs.)"
)
TOKEN_REFUSED = (
    "Discord refused DISCORD_TOKEN. In the Discord Developer Portal open your application, go to Bot, press "
    "Reset Token, and put the new token in .env."
)


def intents(settings: DiscordSettings) -> discord.Intents:
    """Guilds (channels and threads), messages in guilds and DMs; their content (a privileged intent) only
    when files are indexed from every message (DISCORD_INDEX_FILES=all) or follow-ups in threads are answered
    without a mention. Without it Discord still gives the content of messages that mention the bot and of DMs,
    which is all the bot reads otherwise."""
    wanted = discord.Intents.none()
    wanted.guilds = True
    wanted.guild_messages = True
    wanted.dm_messages = True
    wanted.message_content = needs_message_content(settings)
    return wanted


def needs_message_content(settings: DiscordSettings) -> bool:
    return settings.index_files == "all" or settings.follows_up


def invite_url(application_id: int) -> str:
    return discord.utils.oauth_url(application_id, permissions=PERMISSIONS, scopes=("bot", "applications.commands"))


class ThreadlineBot(commands.Bot):
    """The discord.py client: cogs for messages and slash commands, approval buttons that survive restarts."""

    def __init__(self, service: Threadline, settings: DiscordSettings, **options: Any) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents(settings),
            help_command=None,
            allowed_mentions=NO_PINGS,
            chunk_guilds_at_startup=False,
            member_cache_flags=discord.MemberCacheFlags.none(),
            max_messages=None,
            **options,
        )
        self.service = service
        self.settings = settings
        self.replies = Replies(settings.edit_interval, service.metrics, keep=service.showing, stop=service.cancel_run)
        self._logged_in = asyncio.Event()  # set once REST calls can be made (runs taken over wait for it)

    async def setup_hook(self) -> None:
        await self.add_cog(ConversationCog(self, self.service, self.settings, self.replies))
        await self.add_cog(CommandsCog(self.service))
        desk = ApprovalDesk(self.service, self.replies.show, self.replies.showing)
        self.add_dynamic_items(approval_button_type(desk))
        self.tree.error(on_tree_error)
        if 0 in self.settings.served_shards:
            await self._sync_commands()
        else:  # every process of a sharded bot would register the same commands: the one with shard 0 does
            _log.info("the process serving shard 0 registers the slash commands; this one serves other shards")
        if self.application_id is not None:
            _log.info("invite the bot with: %s", invite_url(self.application_id))
        self._logged_in.set()

    async def on_message(self, message: discord.Message, /) -> None:
        """Messages go to the conversation cog only: this bot has no prefix commands."""

    async def on_disconnect(self) -> None:
        """The gateway connection dropped (discord.py reconnects by itself); /readyz shows it meanwhile."""
        if not self.is_closed():
            self.service.metrics.platform_error("discord", "gateway_disconnect")

    async def readiness(self) -> str | None:
        """None while the gateway is connected and the session ready; else what is wrong (for /readyz)."""
        if self.is_closed():
            return "the Discord client is closed"
        if self.ws is None or not self.ws.open or not self.is_ready():
            return "the Discord gateway is not connected (discord.py is reconnecting)"
        return None

    async def _sync_commands(self) -> None:
        """Register the slash commands where they are used, only where Discord's copy differs (command_sync.py)."""
        try:
            if not self.settings.guild_ids:
                await self._sync_if_changed(None, "globally (they can take a while to appear)")
                return
            for guild_id in self.settings.guild_ids:
                guild = discord.Object(id=guild_id)
                self.tree.copy_global_to(guild=guild)
                await self._sync_if_changed(guild, f"to server {guild_id}")
        except discord.HTTPException as exc:
            _log.error(
                "could not register the slash commands (%s). Invite the bot again with the invite URL below "
                "(it includes the applications.commands scope); mentions keep working meanwhile.",
                exc,
            )

    async def _sync_if_changed(self, guild: discord.abc.Snowflake | None, where: str) -> None:
        local = [command.to_dict(self.tree) for command in self.tree.get_commands(guild=guild)]
        remote = [command.to_dict() for command in await self.tree.fetch_commands(guild=guild)]
        if not definitions_differ(local, remote):
            _log.info("the %d slash commands registered %s are up to date", len(local), where.split(" (")[0])
            return
        synced = await self.tree.sync(guild=guild)
        _log.info("synced %d slash commands %s", len(synced), where)

    async def notify(self, key: str, text: str) -> None:
        """Post a message from the core (restart notices, expired approvals) to a channel."""
        channel_id = int(key.split(":", 2)[2])
        await self.get_partial_messageable(channel_id).send(text, allowed_mentions=NO_PINGS)

    async def show_adopted(self, handle: RunHandle, message_id: str | None) -> None:
        """Show a run this process took over (``service.adopt_with``) as a live mention is shown: a reply to its
        question, whose message id ``message_id`` is, written as it comes. Where the stopped process had begun
        the answer, the answer is written into those messages instead."""
        await self._logged_in.wait()
        channel = self.get_partial_messageable(int(handle.channel.split(":", 2)[2]))
        question: discord.Message | None = None
        if message_id is not None and message_id.isdigit():
            try:
                question = await channel.fetch_message(int(message_id))
            except discord.HTTPException as exc:  # deleted since, or out of reach: answered in the channel
                _log.info("question %s of run %s not found (%s); answering beside it", message_id, handle.run_id, exc)
        earlier = [channel.get_partial_message(i) for i in message_ids(await self.service.earlier_reply(handle.run_id))]
        await self.replies.show(handle, channel, reply_to=question, earlier=earlier)

    async def show_cut_off(self, cut: CutOff) -> None:
        """Tell of a run a restart closed after it had started a tool (``service.adopt_with``): in place of the
        answer the stopped process had begun (its other messages deleted), else as a reply to the question."""
        if not self._logged_in.is_set():  # the core keeps the notice and tries again
            raise RuntimeError("Discord is not logged in yet")
        channel = self.get_partial_messageable(int(cut.channel.split(":", 2)[2]))
        text = f"⚠️ {cut.text}"
        earlier = [channel.get_partial_message(i) for i in message_ids(cut.earlier)]
        if earlier:
            try:
                await earlier[0].edit(content=text, allowed_mentions=NO_PINGS)
            except discord.HTTPException as exc:  # deleted since: said below it instead
                _log.info("could not write into the answer run %s had begun (%s); replying instead", cut.run_id, exc)
            else:
                for stale in earlier[1:]:
                    with contextlib.suppress(*FAILED):
                        await stale.delete()
                return
        question = channel.get_partial_message(int(cut.question)) if cut.question and cut.question.isdigit() else None
        reference = question.to_reference(fail_if_not_exists=False) if question is not None else None
        await channel.send(text, reference=reference, allowed_mentions=NO_PINGS)  # type: ignore[arg-type]


class ShardedThreadlineBot(ThreadlineBot, commands.AutoShardedBot):
    """The same bot on several gateway connections, one per shard it serves (DISCORD_SHARD_COUNT and
    DISCORD_SHARD_IDS). Discord sends a guild's events to shard ``(guild_id >> 22) % shard_count`` and DMs to
    shard 0, so processes that share one database and serve different shards answer each guild once."""

    async def readiness(self) -> str | None:
        """None while every shard this process serves is connected and the sessions are ready."""
        if self.is_closed():
            return "the Discord client is closed"
        down = []
        for shard_id in self.settings.served_shards:
            shard = self.get_shard(shard_id)
            if shard is None or shard.is_closed():
                down.append(shard_id)
        if down:
            named = ", ".join(str(shard_id) for shard_id in down)
            plural = "s" if len(down) > 1 else ""
            return (
                f"the Discord gateway is not connected for shard{plural} {named} of {self.shard_count} "
                "(discord.py is reconnecting)"
            )
        if not self.is_ready():
            return "the Discord gateway is connected but not every shard's session is ready yet"
        return None


def discord_client(service: Threadline, settings: DiscordSettings, **options: Any) -> ThreadlineBot:
    """The bot as the settings ask: one unsharded connection, or the shards they name."""
    if settings.shard_count is None:
        return ThreadlineBot(service, settings, **options)
    shard_ids = list(settings.shard_ids) if settings.shard_ids is not None else None
    return ShardedThreadlineBot(service, settings, shard_count=settings.shard_count, shard_ids=shard_ids, **options)


def _point_at(settings: DiscordSettings) -> None:
    """Use another REST base or gateway (a proxy, a test server). discord.py keeps both on its classes."""
    if settings.api_url:
        discord.http.Route.BASE = settings.api_url
    if settings.gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)


class DiscordFront:
    """Discord attached to a running service: the discord.py client and its gateway connection.

    :meth:`attach` builds the client on the service; :meth:`start` logs in and connects, and returns once the
    session is ready (ConfigError people can act on when Discord refuses). :meth:`close`, once the core has
    closed (so that each run's end is shown), lets the answers finish and disconnects.
    """

    platform = "discord"

    def __init__(self, settings: DiscordSettings, **options: Any) -> None:
        """``options``: for discord.py's client (tests: ``guild_ready_timeout``)."""
        self.settings = settings
        self._options = options
        self.client: ThreadlineBot | None = None
        self._connection: asyncio.Task[None] | None = None

    def attach(self, service: Threadline) -> ThreadlineBot:
        _point_at(self.settings)
        self.client = discord_client(service, self.settings, **self._options)
        return self.client

    async def start(self) -> None:
        client = self.client
        if client is None:
            raise RuntimeError("attach Discord to a service before starting it")
        try:
            await client.login(self.settings.token)
        except discord.LoginFailure:
            raise ConfigError(TOKEN_REFUSED) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise unreachable("Discord", discord.http.Route.BASE, exc, "DISCORD_API_URL") from None
        connection = self._connection = asyncio.create_task(client.connect(reconnect=True), name="discord gateway")
        ready = asyncio.create_task(client.wait_until_ready(), name="discord ready")
        await asyncio.wait({connection, ready}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            error = connection.exception()
            if isinstance(error, discord.PrivilegedIntentsRequired):
                raise ConfigError(INTENT_MISSING) from None
            if isinstance(error, discord.LoginFailure):
                raise ConfigError(TOKEN_REFUSED) from None
            raise ConfigError(f"Could not connect to Discord: {error}") from error

    def describe(self, origin: str) -> str:
        """Who it is connected as, for the start-up log."""
        client = self.client
        if client is None:
            return "Discord"
        described = f"Discord as {client.user} in {len(client.guilds)} servers"
        if self.settings.shard_count is not None:
            served = self.settings.served_shards
            shards = ", ".join(str(shard_id) for shard_id in served)
            described += f" on shard{'s' if len(served) > 1 else ''} {shards} of {self.settings.shard_count}"
            if not self.settings.serves_dms:
                described += " (DMs go to the process serving shard 0)"
        if not needs_message_content(self.settings):
            described += (
                f" (without the privileged Message Content intent, DISCORD_INDEX_FILES={self.settings.index_files}"
                " and DISCORD_THREAD_FOLLOWUPS=mention: it reads messages that mention it, and DMs)"
            )
        return described

    async def readiness(self) -> str | None:
        if self.client is None:
            return "the Discord client is not started"
        return await self.client.readiness()

    async def notify(self, channel: str, text: str) -> None:
        """A message from the core for a Discord channel (raises before :meth:`start`: the core tries again)."""
        if self.client is None:
            raise RuntimeError("Discord is not attached yet")
        await self.client.notify(channel, text)

    async def wait_closed(self) -> None:
        """Wait until the gateway connection ends for good (it reconnects by itself otherwise)."""
        if self._connection is not None:
            await asyncio.shield(self._connection)

    async def detach(self) -> None:
        """Nothing: the gateway stays up while the core closes, so that each run's end is shown."""

    async def close(self) -> None:
        """Let runs show their last words, then disconnect."""
        client = self.client
        if client is None:
            return
        await client.replies.drain(grace=5.0)
        await client.close()
        if self._connection is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._connection


class DiscordBot:
    """Discord alone, with a core of its own (``python -m bots.discord``): build with :meth:`start`, stop with
    :meth:`stop`."""

    def __init__(self, front: DiscordFront, client: ThreadlineBot, service: Threadline) -> None:
        self.front = front
        self.client = client
        self.service = service
        self.health: HealthServer | None = None  # /healthz, /readyz, /metrics on THREADLINE_METRICS_PORT

    @classmethod
    async def start(cls, settings: Settings, discord_settings: DiscordSettings, **options: Any) -> DiscordBot:
        """Open the core, log in and connect; returns once the bot is ready. Raises ConfigError people can act on."""
        front = DiscordFront(discord_settings, **options)
        service = await Threadline.open(settings, notify=front.notify, platforms={"discord"})
        client = front.attach(service)
        service.adopt_with(client.show_adopted, client.show_cut_off)  # runs taken over from a stopped process
        try:
            await front.start()
        except BaseException:
            await front.close()
            await service.close()
            raise
        _log.info("connected to %s", front.describe("discord"))
        bot = cls(front, client, service)
        health = Health(service, front.readiness)
        bot.health = await HealthServer.start(health, settings, default_port=DEFAULT_METRICS_PORT)
        return bot

    async def wait_closed(self) -> None:
        """Wait until the gateway connection ends for good (it reconnects by itself otherwise)."""
        await self.front.wait_closed()

    async def stop(self) -> None:
        """Stop the runs (each channel is told its answer stopped), let that be shown, then disconnect."""
        if self.health is not None:
            await self.health.stop()
        await self.service.close()
        await self.front.close()


async def main() -> int:
    read = read_settings(DiscordSettings.from_env)
    if read is None:
        return 2
    settings, discord_settings = read
    configure_logging(settings, extra_secrets=[discord_settings.token])
    try:
        bot = await DiscordBot.start(settings, discord_settings)
    except ConfigError as exc:
        _log.error("%s", exc)
        return 2
    return await serve(bot.stop, bot.wait_closed())
