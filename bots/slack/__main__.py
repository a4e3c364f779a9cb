"""``python -m bots.slack``: Threadline in Slack (Socket Mode with SLACK_APP_TOKEN, else HTTP on PORT)."""

from __future__ import annotations

import asyncio
import sys

from bots.cli import parse_command_line
from bots.slack.app import main

VARIABLES = (
    ("SLACK_BOT_TOKEN", "the app's Bot User OAuth Token (xoxb-...)"),
    ("SLACK_SIGNING_SECRET", "the app's signing secret (HTTP mode)"),
    ("SLACK_APP_TOKEN", "an app-level token (xapp-...): Socket Mode; unset: HTTP mode on PORT"),
    ("SLACK_CLIENT_ID", "instead of SLACK_BOT_TOKEN: installed into many workspaces from /slack/install"),
    ("SLACK_CLIENT_SECRET", "the app's client secret (many workspaces)"),
    ("SLACK_STATE_SECRET", "a long random value signing install flows (many workspaces)"),
    ("PORT", "the HTTP port for /slack/events and health checks (default 3000)"),
    ("SLACK_API_URL", "the Slack Web API base URL (default https://slack.com/api/)"),
    ("SLACK_COMMAND_PREFIX", "prefix of the slash commands, e.g. tl- for /tl-reset"),
    ("SLACK_THREAD_FOLLOWUPS", "on: answer replies in a thread the bot is part of without a mention; mention"),
)

if __name__ == "__main__":
    parse_command_line("bots.slack", "Threadline in Slack: answers mentions, DMs and slash commands.", VARIABLES)
    sys.exit(asyncio.run(main()))
