"""``python -m bots.slack``: Threadline in Slack (Socket Mode with SLACK_APP_TOKEN, else HTTP on PORT)."""

from __future__ import annotations

import asyncio
import sys

from bots.slack.app import main

if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
