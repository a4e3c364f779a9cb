"""``python -m bots.api``: the Assistants-compatible HTTP API on PORT (loopback only without THREADLINE_API_KEYS)."""

from __future__ import annotations

import asyncio
import sys

from bots.api.app import main
from bots.cli import parse_command_line

VARIABLES = (
    ("THREADLINE_API_KEYS", "bearer keys, comma-separated; none: no key needed and loopback only"),
    ("PORT", "the HTTP port (default 3000); clients use base_url http://HOST:PORT/v1"),
    ("THREADLINE_HTTP_HOST", "the address to listen on once keys are set (default 0.0.0.0)"),
)

if __name__ == "__main__":
    parse_command_line(
        "bots.api", "Threadline's Assistants-compatible HTTP API, for code written for OpenAI's old one.", VARIABLES
    )
    sys.exit(asyncio.run(main()))
