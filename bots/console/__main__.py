"""``python -m bots.console``: talk to the assistant from a terminal."""

from __future__ import annotations

import asyncio
import sys

from bots.console.app import main

if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        sys.exit(130)
