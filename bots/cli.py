"""What every entry point shares on its command line: ``--help``, and start-up failures said in one line."""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Sequence

import aiohttp
import yarl

from core.errors import ConfigError

__all__ = ["COMMON_VARIABLES", "parse_command_line", "unreachable"]

# The variables every entry point reads (the model endpoint, the database, the assistants).
COMMON_VARIABLES: tuple[tuple[str, str], ...] = (
    ("OPENAI_API_KEY", "the model endpoint's key (OpenAI)"),
    ("OPENAI_BASE_URL", "any OpenAI-compatible server instead, e.g. http://localhost:11434/v1 (Ollama)"),
    ("THREADLINE_MODEL", "the chat model (default gpt-5.4-mini)"),
    ("THREADLINE_DB", "the SQLite database file (default ./data/threadline.db)"),
    ("THREADLINE_DATABASE_URL", "PostgreSQL instead (postgresql://...), for replicas on several machines"),
    ("THREADLINE_ASSISTANTS", "the assistants file (default ./assistants.toml if present)"),
)


def parse_command_line(
    module: str, summary: str, variables: Sequence[tuple[str, str]], argv: Sequence[str] | None = None
) -> None:
    """Answer ``--help`` (``-h``) with what ``python -m module`` does and what it reads, then exit 0.

    Entry points take no arguments: settings come from the environment, so anything else is a usage error.
    """
    rows = [*variables, *COMMON_VARIABLES]
    width = max(len(name) for name, _ in rows) + 2
    listed = "\n".join(f"  {name.ljust(width)}{meaning}" for name, meaning in rows)
    epilog = (
        "Settings come from the environment and from a .env file in the current folder (the environment wins);\n"
        f".env.example lists every variable with its default. The main ones here:\n{listed}"
    )
    parser = argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=summary,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)


def unreachable(platform: str, url: str, error: BaseException, variable: str) -> ConfigError:
    """The error to stop with when ``platform`` cannot be reached at ``url``: one line naming the host."""
    parsed = yarl.URL(url)
    host = parsed.host or url
    if parsed.explicit_port is not None:
        host = f"{host}:{parsed.explicit_port}"
    return ConfigError(
        f"Could not reach {platform} at {host} ({_reason(error)}). Check this machine's network connection, "
        f"and {variable} if it is set."
    )


def _reason(error: BaseException) -> str:
    if isinstance(error, aiohttp.ClientConnectorError):
        error = error.os_error
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, socket.gaierror) and error.strerror:
        return error.strerror.lower()  # "name or service not known"
    if isinstance(error, OSError) and error.errno is not None:
        return os.strerror(error.errno).lower()  # "connection refused", not asyncio's "Connect call failed (...)"
    return str(error) or type(error).__name__
