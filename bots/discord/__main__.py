"""``python -m bots.discord``: Threadline in Discord, with DISCORD_TOKEN."""

from __future__ import annotations

import asyncio
import sys

from bots.cli import parse_command_line
from bots.discord.app import main

VARIABLES = (
    ("DISCORD_TOKEN", "the bot's token (Developer Portal > Bot); enable the Message Content intent there"),
    ("DISCORD_GUILD_IDS", "servers to register the slash commands in at once (comma-separated ids)"),
    ("DISCORD_SHARD_COUNT", "the total number of shards across all processes; set: this process serves shards"),
    ("DISCORD_SHARD_IDS", "the shards this process serves (comma-separated, e.g. 0,2; default all of them)"),
    ("DISCORD_API_URL", "the REST API base URL (proxies, tests; default Discord's own)"),
    ("DISCORD_GATEWAY_URL", "the gateway URL (proxies, tests; default Discord's own)"),
    ("THREADLINE_METRICS_PORT", "/healthz, /readyz and /metrics (default 9100)"),
)

if __name__ == "__main__":
    parse_command_line("bots.discord", "Threadline in Discord: answers mentions, DMs and slash commands.", VARIABLES)
    sys.exit(asyncio.run(main()))
