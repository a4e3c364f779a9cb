"""Messages in, core calls out: mentions and DMs go to the assistant, attachments to the channel's files
(pictures in a message to the bot go to the assistant with it, never to the files).

No assistant logic lives here: the cog normalises what Discord sends, hands it to the core,
and leaves showing the run to :class:`bots.discord.render.Replies`.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Awaitable, Callable

import discord
from discord.ext import commands

from bots.discord.config import DiscordSettings
from bots.discord.people import person
from bots.discord.render import NO_PINGS, Replies
from bots.text import split_message
from core.images import SharedImage, is_picture
from core.knowledge.base import DownloadFailed, Upload
from core.models import Incoming
from core.service import ChannelNotServed, Threadline

__all__ = ["ConversationCog", "channel_key", "parent_key"]

_log = logging.getLogger(__name__)

UNEXPECTED = "Something went wrong on my side with this message; the details are in the bot's log. Please try again."
INDEXED = "📎"
REFUSED = "⚠️"


def channel_key(guild_id: int | None, channel_id: int) -> str:
    """The core's name for a Discord channel; a thread is a channel of its own, a DM is ``discord:dm:<id>``."""
    return f"discord:{guild_id if guild_id is not None else 'dm'}:{channel_id}"


def parent_key(channel: object, guild_id: int | None) -> str | None:
    """For a thread: its parent channel's key, the scope whose files, assistant, policy and budgets the
    thread's conversation shares (core/models.py); None for anything else."""
    if isinstance(channel, discord.Thread) and channel.parent_id:
        return channel_key(guild_id, channel.parent_id)
    return None


class ConversationCog(commands.Cog):
    def __init__(self, bot: commands.Bot, service: Threadline, settings: DiscordSettings, replies: Replies) -> None:
        self._bot = bot
        self._service = service
        self._settings = settings
        self._replies = replies

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        try:
            await self._take(message)
        except Exception:
            _log.exception("could not take message %s in channel %s", message.id, message.channel.id)
            with contextlib.suppress(discord.HTTPException):
                await message.reply(UNEXPECTED, mention_author=False, allowed_mentions=NO_PINGS)

    async def _take(self, message: discord.Message) -> None:
        me = self._bot.user
        if me is None or message.author.id == me.id:
            return
        if message.author.bot and not self._settings.allow_bots:
            return
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return  # joins, pins, thread-created notices...
        guild_id = message.guild.id if message.guild else None
        key, scope = channel_key(guild_id, message.channel.id), parent_key(message.channel, guild_id)
        addressed = message.guild is None or self._mentions_me(message)
        context: list[dict[str, str]] = []
        if scope is not None and (addressed or self._may_follow_up(message)):
            # A thread: its conversation begins with the exchange it was started from, and the bot is part of it
            # once it is known or was started from an exchange (then a follow-up needs no mention).
            state = await self._service.conversation_state(key)
            if not state.known:
                context = await self._service.exchange(scope, str(message.channel.id))
            addressed = addressed or state.known or bool(context)
        if message.attachments and self._indexes_files(addressed):
            await self._add_files(message)
        if not addressed:
            return
        text = self._without_my_mention(message).strip()
        images = tuple(self._image(a) for a in message.attachments if is_picture(a.filename, a.content_type))
        if not text and not images:
            return
        try:
            received = await self._service.receive(
                Incoming(
                    key,
                    person(message.author),
                    text,
                    platform_msg_id=str(message.id),
                    scope=scope,
                    context=tuple(context),
                    images=images,
                )
            )
        except ChannelNotServed as exc:
            await message.reply(str(exc), mention_author=False, allowed_mentions=NO_PINGS)
            return
        if received.notice is not None:  # about its images
            try:
                await message.reply(received.notice, mention_author=False, allowed_mentions=NO_PINGS)
            except discord.HTTPException as exc:
                _log.warning("could not tell about the images of %s: %s", message.id, exc)
                self._service.metrics.platform_error("discord", "http")
        handle = received.handle
        if handle is None:  # Discord delivered this message before (a replay after a resume), or images alone
            _log.debug("message %s already seen", message.id)
            return
        await self._replies.show(handle, message.channel, reply_to=message)

    def _may_follow_up(self, message: discord.Message) -> bool:
        """A message in a thread that mentions nobody (a message naming someone else is for them): answered
        without a mention when the bot is part of the thread (DISCORD_THREAD_FOLLOWUPS=on)."""
        return (
            self._settings.follows_up
            and not message.mentions
            and not message.role_mentions
            and not message.mention_everyone
        )

    def _mentions_me(self, message: discord.Message) -> bool:
        me = self._bot.user
        if me is None:
            return False
        if any(user.id == me.id for user in message.mentions):
            return True
        # People often pick the bot's role from the @ menu instead of the bot itself.
        own_role = message.guild.self_role if message.guild else None
        return own_role is not None and own_role in message.role_mentions

    def _without_my_mention(self, message: discord.Message) -> str:
        me = self._bot.user
        patterns = [rf"<@!?{me.id}>"] if me else []
        own_role = message.guild.self_role if message.guild else None
        if own_role is not None:
            patterns.append(rf"<@&{own_role.id}>")
        return re.sub("|".join(patterns), "", message.content) if patterns else message.content

    def _indexes_files(self, addressed: bool) -> bool:
        match self._settings.index_files:
            case "all":
                return True
            case "mentions":
                return addressed
            case "off":
                return False

    async def _add_files(self, message: discord.Message) -> None:
        guild_id = message.guild.id if message.guild else None
        key = channel_key(guild_id, message.channel.id)
        if (parent := parent_key(message.channel, guild_id)) is not None:
            await self._service.scope(key, parent)  # a file shared in a thread joins its channel's files
        notes: list[str] = []
        refused = False
        for attachment in message.attachments:
            if is_picture(attachment.filename, attachment.content_type):
                continue  # never a document: shown to the model when it comes with a message to the bot
            result = await self._service.knowledge.add(key, self._upload(message, attachment))
            if result.notice is None:
                continue  # added before (a replay after a resume, another process): that delivery was answered
            notes.append(result.notice)
            refused = refused or result.outcome == "refused"
        if not notes:
            return
        try:
            await message.add_reaction(REFUSED if refused else INDEXED)
            for piece in split_message("\n".join(notes), 2000):
                await message.reply(piece, mention_author=False, allowed_mentions=NO_PINGS)
        except discord.HTTPException as exc:
            _log.warning("could not confirm files in channel %s: %s", message.channel.id, exc)
            self._service.metrics.platform_error("discord", "http")

    def _image(self, attachment: discord.Attachment) -> SharedImage:
        """A picture in a message to the bot, for the core: downloaded only if the model is shown it."""
        return SharedImage(
            attachment.filename, attachment.content_type, attachment.size, download=self._downloader(attachment)
        )

    def _downloader(self, attachment: discord.Attachment) -> Callable[[int], Awaitable[bytes]]:
        async def download(limit: int) -> bytes:
            try:
                return await attachment.read()
            except discord.HTTPException as exc:
                _log.warning("downloading %s from Discord failed: %s", attachment.filename, exc)
                self._service.metrics.platform_error("discord", "download")
                raise DownloadFailed(
                    f"I could not download {attachment.filename} from Discord, so it was not added; try again."
                ) from exc

        return download

    def _upload(self, message: discord.Message, attachment: discord.Attachment) -> Upload:
        """One attachment, for the channel's knowledge base: it downloads the bytes if it adds the file."""
        return Upload(
            name=attachment.filename,
            mime=attachment.content_type,
            uploader_id=str(message.author.id),
            uploader_name=message.author.display_name,
            platform_file_id=str(attachment.id),
            link=message.jump_url,
            declared_size=attachment.size,
            download=self._downloader(attachment),
        )
