"""``python -m bots backup PATH``: a consistent copy of the bot's database while the bot runs (core/backup.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from core.backup import backup_database
from core.errors import ConfigError
from core.settings import Settings, load_dotenv_file

__all__ = ["backup_main"]


def backup_main(argv: Sequence[str]) -> int:
    """Back the database up to the path in ``argv``; the exit status (2 with one line on stderr when it cannot)."""
    parser = argparse.ArgumentParser(
        prog="python -m bots backup",
        description=(
            "Write a consistent copy of Threadline's database (THREADLINE_DB) to PATH while the bot runs: a file,\n"
            "replaced if it exists, or a folder to put threadline-YYYYMMDD-HHMMSS.db in. Restore by stopping the\n"
            "bot and putting the copy in the database's place."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", type=Path, help="where to write the copy")
    arguments = parser.parse_args(argv)
    load_dotenv_file()
    try:
        settings = Settings.from_env()
        if settings.database_url is not None:
            raise ConfigError(
                "THREADLINE_DATABASE_URL is set: the database is PostgreSQL, which this command does not copy."
                " Back it up with pg_dump (or your provider's backups)."
            )
        source = settings.db_path
        done = backup_database(source, arguments.path)
    except ConfigError as exc:
        print(f"threadline: {exc}", file=sys.stderr)  # noqa: T201 - a command-line tool's answer
        return 2
    print(f"Backed up {source} to {done.path} ({done.size / 1_000_000:.1f} MB).")  # noqa: T201
    return 0
