"""A consistent copy of a SQLite database while other processes write to it: the online backup API.

The copy is one snapshot: what every process had committed when it began, nothing half-written.
It is taken in one step (``pages=-1``): in WAL mode that holds a read snapshot, which keeps no writer
waiting, and it cannot be restarted over and over by a busy writer as a copy in small steps would be.
The copy is checked (``PRAGMA quick_check``), switched out of WAL mode so that it is one
self-contained file, and flushed to disk. Where it goes, and under what name, is core/backup.py's.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from core.errors import ConfigError

__all__ = ["copy_database"]


def copy_database(source: Path, destination: Path) -> None:
    """Write a checked snapshot of ``source`` to ``destination`` (replaced). Blocking. ConfigError when the
    database cannot be read, OSError when the copy cannot be written."""
    try:
        _copy(source, destination)
    except sqlite3.Error as exc:
        raise ConfigError(f"The database at {source} could not be copied ({exc}).") from exc


def _copy(source: Path, destination: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        destination.unlink()  # what an interrupted backup left
    origin = sqlite3.connect(source, isolation_level=None)
    try:
        origin.execute("PRAGMA busy_timeout=30000")
        copy = sqlite3.connect(destination, isolation_level=None)
        try:
            origin.backup(copy)  # one step: one snapshot
            (verdict,) = copy.execute("PRAGMA quick_check").fetchone()
            if verdict != "ok":
                raise sqlite3.DatabaseError(f"the copy failed its check: {verdict}")
            copy.execute("PRAGMA journal_mode=DELETE")  # one file, readable without its -wal and -shm
        finally:
            copy.close()
    finally:
        origin.close()
    with open(destination, "rb") as written:
        os.fsync(written.fileno())
