"""``python -m bots``: one process for every platform the environment configures (bots/platforms.py)."""

from __future__ import annotations

import asyncio
import sys

from bots.backup import backup_main
from bots.cli import parse_command_line

VARIABLES = (
    ("SLACK_BOT_TOKEN", "Slack: the app's Bot User OAuth Token (xoxb-...); set: Slack is served"),
    ("SLACK_SIGNING_SECRET", "Slack: the app's signing secret (HTTP mode)"),
    ("SLACK_APP_TOKEN", "Slack: an app-level token (xapp-...): Socket Mode; unset: HTTP mode at /slack/events"),
    ("SLACK_CLIENT_ID", "Slack installed into many workspaces (with SLACK_CLIENT_SECRET, SLACK_STATE_SECRET)"),
    ("DISCORD_TOKEN", "Discord: the bot's token; set: Discord is served"),
    ("DISCORD_SHARD_IDS", "Discord: the shards this process serves (with DISCORD_SHARD_COUNT, the total)"),
    ("THREADLINE_API_KEYS", "the Assistants-compatible API's bearer keys; set: the API is served at /v1"),
    ("THREADLINE_API", "on: the API also without keys (this machine only); off: not even with keys"),
    ("PORT", "the one HTTP port: /slack/events, /v1, /healthz, /readyz, /metrics (default 3000)"),
    ("THREADLINE_HTTP_HOST", "where it listens when Slack's HTTP mode or the API with keys is on (default 0.0.0.0)"),
)

if __name__ == "__main__":
    if sys.argv[1:2] == ["backup"]:
        sys.exit(backup_main(sys.argv[2:]))
    if sys.argv[1:2] == ["migrate-to-postgres"]:
        from bots.migrate_to_postgres import migrate_main  # psycopg: loaded for this command only

        sys.exit(migrate_main(sys.argv[2:]))
    parse_command_line(
        "bots",
        "Threadline: one process, one core, every platform the environment configures (Slack, Discord, the\n"
        "Assistants-compatible API), on one HTTP port. python -m bots.slack, bots.discord and bots.api serve one\n"
        "each. python -m bots backup PATH writes a consistent copy of the database while the bot runs;\n"
        "python -m bots migrate-to-postgres [SQLITE_PATH] moves it into PostgreSQL (THREADLINE_DATABASE_URL).",
        VARIABLES,
    )
    from bots.platforms import main  # every platform's libraries: not loaded for a backup

    sys.exit(asyncio.run(main()))
