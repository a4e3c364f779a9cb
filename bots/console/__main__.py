"""``python -m bots.console``: talk to the assistant from a terminal."""

from __future__ import annotations

import asyncio
import sys

from bots.cli import parse_command_line
from bots.console.app import main

VARIABLES = (("THREADLINE_CHANNEL", "the console's channel name (default console:local:default)"),)

if __name__ == "__main__":
    parse_command_line(
        "bots.console",
        "Talk to the assistant in this terminal: type a message, /help for commands (/upload PATH adds a file),\n"
        "/cancel stops an answer, Ctrl-D leaves. Piped input is answered line by line.",
        VARIABLES,
    )
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        sys.exit(130)
