"""``python -m bots migrate-to-postgres [SQLITE_PATH]``: the SQLite database moved into PostgreSQL
(core/migrate_to_postgres.py)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from core.errors import ConfigError
from core.migrate_to_postgres import CopyFailed, CopyReport, migrate_to_postgres
from core.settings import Settings, load_dotenv_file

__all__ = ["migrate_main"]

URL_VARIABLE = "THREADLINE_DATABASE_URL"


def migrate_main(argv: Sequence[str]) -> int:
    """Move the database; the exit status: 0 done, 2 a usage error, 1 a move that failed (one line on stderr)."""
    parser = argparse.ArgumentParser(
        prog="python -m bots migrate-to-postgres",
        description=(
            "Move Threadline's SQLite database (SQLITE_PATH, else THREADLINE_DB, else ./data/threadline.db) into\n"
            "the empty PostgreSQL database at THREADLINE_DATABASE_URL (postgresql://USER:PASSWORD@HOST:PORT/DB):\n"
            "every table, in one transaction, each table's row count checked on both sides. It copies one\n"
            "consistent snapshot; stop the bot first, as what it writes after the copy began is not moved."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sqlite_path", nargs="?", type=Path, help="the SQLite database to move")
    arguments = parser.parse_args(argv)
    load_dotenv_file()
    try:
        source = arguments.sqlite_path or Settings.from_env().db_path
        url = os.environ.get(URL_VARIABLE, "").strip()
        if not url:
            raise ConfigError(
                f"{URL_VARIABLE} is not set. Set it to the PostgreSQL database to move into"
                " (postgresql://USER:PASSWORD@HOST:PORT/DATABASE)."
            )
        report = migrate_to_postgres(source, url)
    except ConfigError as exc:
        print(f"threadline: {exc}", file=sys.stderr)  # noqa: T201 - a command-line tool's answer
        return 2
    except CopyFailed as exc:
        print(f"threadline: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    print(summary(report))  # noqa: T201
    return 0


def summary(report: CopyReport) -> str:
    """Two or three lines: what moved where, how fast, and the largest tables."""
    rate = report.rows / report.seconds if report.seconds > 0 else 0.0
    lines = [
        f"Moved {report.rows:,} rows of {len(report.tables)} tables from {report.source} to PostgreSQL"
        f" ({report.target}) in {report.seconds:.1f} s ({rate:,.0f} rows/s); each table's row count matches.",
    ]
    largest = sorted((item for item in report.tables if item[1]), key=lambda item: -item[1])[:5]
    if largest:
        lines.append("Largest: " + ", ".join(f"{table} {rows:,}" for table, rows in largest) + ".")
    if report.not_moved:
        lines.append(f"Not moved (not in Threadline's schema): {', '.join(report.not_moved)}.")
    return "\n".join(lines)
