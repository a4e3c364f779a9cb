"""What every entry point shares on its command line: ``--help``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["COMMON_VARIABLES", "parse_command_line"]

# The variables every entry point reads (the model endpoint, the database, the assistants).
COMMON_VARIABLES: tuple[tuple[str, str], ...] = (
    ("OPENAI_API_KEY", "the model endpoint's key (OpenAI)"),
    ("OPENAI_BASE_URL", "any OpenAI-compatible server instead, e.g. http://localhost:11434/v1 (Ollama)"),
    ("THREADLINE_MODEL", "the chat model (default gpt-5.4-mini)"),
    ("THREADLINE_DB", "the SQLite database file (default ./data/threadline.db)"),
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
