"""``python -m bots.api``: the Assistants-compatible HTTP API on PORT (loopback only without THREADLINE_API_KEYS)."""

from __future__ import annotations

import asyncio
import sys

from bots.api.app import main

if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
