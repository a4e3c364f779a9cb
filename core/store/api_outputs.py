"""The code interpreter's files of API runs (``api_files`` rows naming their run) and the messages that show them.

Same connection and thread as the rest of the store, through ``Store.call``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.store.sql import SqlDatabase
from core.store.store import Store

__all__ = ["MessageFiles", "OutputRecord", "OutputStore", "RunMessage"]


@dataclass(frozen=True)
class OutputRecord:
    """A file the code interpreter wrote during a run, kept for the run's key."""

    file_id: str
    run_id: str
    call_id: str | None
    filename: str  # its path in the session: /mnt/data/NAME
    mime: str | None

    @property
    def name(self) -> str:
        return self.filename.rsplit("/", 1)[-1]

    @property
    def is_image(self) -> bool:
        return (self.mime or "").startswith("image/")


@dataclass(frozen=True)
class RunMessage:
    """One of the items a run stored in its thread (an assistant message, a tool call or its result)."""

    row_id: int
    role: str
    item: dict[str, Any]
    annotations: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class MessageFiles:
    """What a message shows of the code's files: images ahead of its text, and its annotations."""

    row_id: int
    images: tuple[str, ...]
    annotations: tuple[dict[str, Any], ...]


_OUTPUT_COLUMNS = "f.id, f.run_id, f.call_id, f.filename, f.mime"


def _output(row: Sequence[Any]) -> OutputRecord:
    return OutputRecord(file_id=row[0], run_id=row[1], call_id=row[2], filename=row[3], mime=row[4])


class OutputStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def of_run(self, run_id: str) -> list[OutputRecord]:
        """The files the run's code wrote, in the order it wrote them."""

        def load(db: SqlDatabase) -> list[OutputRecord]:
            rows = db.execute(
                f"SELECT {_OUTPUT_COLUMNS} FROM api_files f WHERE f.run_id = ? ORDER BY f.created_at, f.rowid",
                [run_id],
            ).fetchall()
            return [_output(row) for row in rows]

        return await self._store.call(load)

    async def of_thread(self, thread_id: str) -> list[OutputRecord]:
        """The files the code of any of the thread's runs wrote, oldest first."""

        def load(db: SqlDatabase) -> list[OutputRecord]:
            rows = db.execute(
                f"SELECT {_OUTPUT_COLUMNS} FROM api_files f JOIN runs r ON r.id = f.run_id WHERE r.thread_id = ?"
                " ORDER BY f.created_at, f.rowid",
                [thread_id],
            ).fetchall()
            return [_output(row) for row in rows]

        return await self._store.call(load)

    async def run_messages(self, run_id: str) -> list[RunMessage]:
        """What the run stored in its thread, in order."""

        def load(db: SqlDatabase) -> list[RunMessage]:
            rows = db.execute(
                "SELECT id, role, item, annotations FROM messages WHERE run_id = ? ORDER BY id", [run_id]
            ).fetchall()
            return [
                RunMessage(int(row[0]), str(row[1]), json.loads(row[2]), tuple(json.loads(row[3] or "[]")))
                for row in rows
            ]

        return await self._store.call(load)

    async def show(self, messages: Sequence[MessageFiles]) -> None:
        """Set what each message shows, in one transaction."""

        def update(db: SqlDatabase) -> None:
            with db.atomic():
                for message in messages:
                    db.execute(
                        "UPDATE messages SET output_images = ?, annotations = ? WHERE id = ?",
                        [
                            json.dumps(list(message.images)) if message.images else None,
                            json.dumps(list(message.annotations)) if message.annotations else None,
                            message.row_id,
                        ],
                    )

        if messages:
            await self._store.call(update)
