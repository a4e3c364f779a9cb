"""The Discord adapter's settings, read once from the environment at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, cast

from core.errors import ConfigError

__all__ = ["DiscordSettings", "FileIndexing", "parse_shards"]

FileIndexing = Literal["all", "mentions", "off"]
_INDEXING = ("all", "mentions", "off")


@dataclass(frozen=True)
class DiscordSettings:
    token: str = field(repr=False)
    guild_ids: tuple[int, ...] = ()  # sync slash commands to these guilds at once; empty: global sync
    api_url: str | None = None  # REST base, e.g. https://discord.com/api/v10 (proxies, tests)
    gateway_url: str | None = None  # gateway websocket URL (tests)
    index_files: FileIndexing = "all"  # which messages' attachments join the channel's files
    allow_bots: bool = False  # answer other bots' messages too
    edit_interval: float = 1.0  # seconds between live edits of an answer
    # In a thread the bot is part of, answer people without a mention. Reading a message that does not mention
    # the bot takes the Message Content intent, asked for anyway to index every message's files: so None (not
    # set) means on with DISCORD_INDEX_FILES=all, off otherwise.
    thread_followups: bool | None = None
    # Sharding (several processes sharing Discord's connections): the total number of shards, and the ones this
    # process serves (None: all of them). Both None: one unsharded connection.
    shard_count: int | None = None
    shard_ids: tuple[int, ...] | None = None

    @property
    def follows_up(self) -> bool:
        return self.index_files == "all" if self.thread_followups is None else self.thread_followups

    @property
    def sharded(self) -> bool:
        return self.shard_count is not None

    @property
    def served_shards(self) -> tuple[int, ...]:
        """The shards this process connects (``(0,)`` unsharded: the one connection gets every guild and DM)."""
        if self.shard_count is None:
            return (0,)
        return self.shard_ids if self.shard_ids is not None else tuple(range(self.shard_count))

    @property
    def serves_dms(self) -> bool:
        """Discord sends DMs to shard 0 only."""
        return 0 in self.served_shards

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DiscordSettings:
        env = os.environ if env is None else env

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        token = text("DISCORD_TOKEN")
        if token is None:
            raise ConfigError(
                "DISCORD_TOKEN is not set. In the Discord Developer Portal open your application, go to Bot, "
                "press Reset Token and put the token in .env (see the README's Discord steps)."
            )
        guild_ids: list[int] = []
        for part in (text("DISCORD_GUILD_IDS") or "").split(","):
            part = part.strip()
            if not part:
                continue
            if not part.isdigit():
                raise ConfigError(
                    f"DISCORD_GUILD_IDS should be server ids separated by commas; {part!r} is not one "
                    "(right-click the server with Developer Mode on, Copy Server ID)."
                )
            guild_ids.append(int(part))
        index_files = (text("DISCORD_INDEX_FILES") or "all").lower()
        if index_files not in _INDEXING:
            raise ConfigError(f"DISCORD_INDEX_FILES={index_files!r} should be one of: {', '.join(_INDEXING)}.")
        interval_text = text("DISCORD_EDIT_INTERVAL") or "1.0"
        try:
            interval = float(interval_text)
        except ValueError:
            raise ConfigError(f"DISCORD_EDIT_INTERVAL={interval_text!r} is not a number of seconds.") from None
        if not 0.2 <= interval <= 10:
            raise ConfigError("DISCORD_EDIT_INTERVAL should be between 0.2 and 10 seconds.")
        api_url = text("DISCORD_API_URL")
        followups = (text("DISCORD_THREAD_FOLLOWUPS") or "").lower()
        if followups not in ("", "on", "mention"):
            raise ConfigError(
                f"DISCORD_THREAD_FOLLOWUPS={followups!r} is not a choice: 'on' answers replies in a thread the bot is "
                "part of without a mention (this needs the Message Content intent), 'mention' only when mentioned."
            )
        shard_count, shard_ids = parse_shards(text("DISCORD_SHARD_COUNT"), text("DISCORD_SHARD_IDS"))
        return cls(
            token=token,
            guild_ids=tuple(guild_ids),
            api_url=api_url.rstrip("/") if api_url else None,
            gateway_url=text("DISCORD_GATEWAY_URL"),
            index_files=cast(FileIndexing, index_files),
            allow_bots=(text("DISCORD_ALLOW_BOTS") or "false").lower() in {"1", "true", "yes", "on"},
            edit_interval=interval,
            thread_followups=None if not followups else followups == "on",
            shard_count=shard_count,
            shard_ids=shard_ids,
        )


def parse_shards(count_text: str | None, ids_text: str | None) -> tuple[int | None, tuple[int, ...] | None]:
    """DISCORD_SHARD_COUNT and DISCORD_SHARD_IDS as (count, ids): (None, None) when neither is set.

    A guild's events go to shard ``(guild_id >> 22) % count``, DMs to shard 0; each process names its shards.
    """
    if count_text is None:
        if ids_text is not None:
            raise ConfigError(
                f"DISCORD_SHARD_IDS={ids_text!r} needs DISCORD_SHARD_COUNT, the total number of shards "
                "across all processes (e.g. DISCORD_SHARD_COUNT=4 with DISCORD_SHARD_IDS=0,1 here)."
            )
        return None, None
    if not count_text.isdigit() or int(count_text) < 1:
        raise ConfigError(
            f"DISCORD_SHARD_COUNT={count_text!r} should be the total number of shards across all processes, "
            "a whole number of at least 1."
        )
    count = int(count_text)
    if ids_text is None:
        return count, None
    ids: list[int] = []
    for part in ids_text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit():
            raise ConfigError(
                f"DISCORD_SHARD_IDS should be shard numbers separated by commas, e.g. 0,2; {part!r} is not one."
            )
        shard = int(part)
        if shard >= count:
            raise ConfigError(
                f"DISCORD_SHARD_IDS names shard {shard}, but with DISCORD_SHARD_COUNT={count} the shards are "
                f"0 to {count - 1}."
            )
        if shard in ids:
            raise ConfigError(f"DISCORD_SHARD_IDS names shard {shard} twice; name each shard once.")
        ids.append(shard)
    if not ids:
        raise ConfigError(f"DISCORD_SHARD_IDS={ids_text!r} names no shard; e.g. 0,2, or unset it to serve all of them.")
    return count, tuple(ids)
