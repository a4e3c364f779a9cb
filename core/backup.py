"""Backups of the database while the bot runs (``python -m bots backup PATH``).

Where the copy goes: a file, replaced if it exists, or a folder to put a dated file in. The copy is
written beside its target under a temporary name and renamed into place only once it is complete and
checked (core/store/backup.py), so a backup that fails halfway leaves no file that looks like a backup.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError
from core.store.backup import copy_database

__all__ = ["Backup", "backup_database"]


@dataclass(frozen=True)
class Backup:
    path: Path
    size: int  # bytes


def backup_database(source: Path, target: Path) -> Backup:
    """Copy the database at ``source`` to ``target``. Blocking: the caller runs it off any event loop.
    ConfigError, its message for the operator, when it cannot be done."""
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
        copy_database(source, partial)
        os.replace(partial, target)
    except OSError as exc:
        raise ConfigError(f"The copy could not be written to {target} ({exc.strerror or exc}).") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return Backup(target, target.stat().st_size)
