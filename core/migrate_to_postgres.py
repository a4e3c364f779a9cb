"""Moving the bot's SQLite database into PostgreSQL (``python -m bots migrate-to-postgres``).

A team that outgrows one machine keeps its history, runs, approvals, budgets, API objects, files and their
chunks and embeddings: one snapshot of the SQLite file goes into an empty PostgreSQL database, all of it or
nothing, and each table's row count is checked on both sides (core/store/postgres/copy.py does the work).
"""

from __future__ import annotations

from pathlib import Path

from core.store.postgres.copy import CopyFailed, CopyReport, copy_to_postgres

__all__ = ["CopyFailed", "CopyReport", "migrate_to_postgres"]


def migrate_to_postgres(source: Path, url: str) -> CopyReport:
    """Move the SQLite database at ``source`` into the empty PostgreSQL database at ``url``. Blocking.

    :raises ConfigError: no database at ``source``, or ``url`` is not a PostgreSQL URL (said without its password).
    :raises CopyFailed: the move could not be made (its message says why and what to do); nothing was moved.
    """
    return copy_to_postgres(source, url)
