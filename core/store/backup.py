"""A consistent copy of the database while the bot runs, with SQLite's online backup API.

The copy is one snapshot of the database: what every process had committed when the backup
began, nothing half-written, whatever is being written meanwhile. It is taken in one step (the
backup API's ``pages=-1``): in WAL mode that holds a read snapshot, which keeps no writer waiting,
and it cannot be restarted over and over by a busy writer as a copy in small steps would be.

The copy is written beside its target under a temporary name, checked (``PRAGMA quick_check``),
switched out of WAL mode so that it is one self-contained file, flushed to disk, and only then
renamed into place: a backup that fails halfway leaves no file that looks like a backup.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError

__all__ = ["Backup", "backup_database"]


@dataclass(frozen=True)
class Backup:
    path: Path
    size: int  # bytes


def backup_database(source: Path, target: Path) -> Backup:
    """Copy the database at ``source`` to ``target`` (a file, replaced if it exists, or a folder to put a
    dated file in). Blocking: the caller runs it off any event loop. ConfigError when it cannot be done."""
    if not source.is_file():
        raise ConfigError(f"There is no database at {source}. Set THREADLINE_DB to the bot's database file.")
    if target.is_dir():
        target = target / time.strftime("threadline-%Y%m%d-%H%M%S.db", time.gmtime())
    if not target.parent.is_dir():
        raise ConfigError(f"The folder {target.parent} does not exist. Create it, or name another path.")
    if target.exists() and target.resolve() == source.resolve():
        raise ConfigError(f"{target} is the database itself. Name another path for the copy.")
    partial = target.with_name(f".{target.name}.partial")
    try:
        _copy(source, partial)
        os.replace(partial, target)
    except sqlite3.Error as exc:
        raise ConfigError(f"The database at {source} could not be copied ({exc}).") from exc
    except OSError as exc:
        raise ConfigError(f"The copy could not be written to {target} ({exc.strerror or exc}).") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return Backup(target, target.stat().st_size)


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
