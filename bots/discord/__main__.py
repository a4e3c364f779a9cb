"""``python -m bots.discord``: Threadline in Discord, with DISCORD_TOKEN."""

from __future__ import annotations

import asyncio
import sys

from bots.discord.app import main

if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
