"""The bytes of images shared in chat, kept until the run that answers their message has ended.

A row of ``images`` belongs to one person's message (``message_id``) and is written with it, in the
same transaction. The database lets go of it by itself (m020's triggers): when the message's run ends
(completed, failed, cancelled or expired) the message's stored token count drops by what the image
cost (``saved_tokens``: later runs see a short placeholder, core/images.py) and the row is deleted;
when the message is deleted (retention, an API client), the row goes with it.

Also here: the bytes of files uploaded over the API that a thread's messages show as images
(``image_file``), looked up by the owner the thread's channel names. Same connection and thread as
the rest of the store, through ``Store.call``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from core.models import parse_channel_key
from core.store.sql import SqlDatabase

if TYPE_CHECKING:  # the store inserts images with its messages: no import of it at run time
    from core.store.store import Store

__all__ = ["ApiImageFile", "ImageRow", "ImageStore", "insert_images"]


class ImageRow(NamedTuple):
    """An image to keep with its message."""

    id: str
    name: str
    mime: str
    data: bytes
    saved_tokens: int  # what the message costs less once the image is replaced by its placeholder


class ApiImageFile(NamedTuple):
    """A file uploaded over the API, shown as an image: its name, MIME type (as uploaded) and bytes."""

    filename: str
    mime: str | None
    data: bytes


def insert_images(db: SqlDatabase, message_id: int, images: Sequence[ImageRow]) -> None:
    """Keep the images of a message being stored (inside the caller's transaction)."""
    now = time.time()
    db.conn.executemany(
        "INSERT INTO images (id, message_id, position, name, mime, bytes, data, saved_tokens, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                image.id,
                message_id,
                position,
                image.name,
                image.mime,
                len(image.data),
                image.data,
                image.saved_tokens,
                now,
            )
            for position, image in enumerate(images)
        ],
    )


class ImageStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def chat_images(self, ids: Sequence[str]) -> dict[str, tuple[str, bytes]]:
        """The MIME type and bytes of each of these chat images still kept, by id."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}

        def load(db: SqlDatabase) -> dict[str, tuple[str, bytes]]:
            marks = ",".join("?" * len(wanted))
            rows = db.execute(f"SELECT id, mime, data FROM images WHERE id IN ({marks})", wanted).fetchall()
            return {str(row[0]): (str(row[1]), bytes(row[2])) for row in rows}

        return await self._store.call(load)

    async def api_files(self, thread_id: str, file_ids: Sequence[str]) -> dict[str, ApiImageFile]:
        """The files with these ids uploaded by the owner of the API thread ``thread_id``, by id (another
        owner's, a deleted one's: absent)."""
        wanted = list(dict.fromkeys(file_ids))
        if not wanted:
            return {}

        def load(db: SqlDatabase) -> dict[str, ApiImageFile]:
            row = db.execute("SELECT channel FROM threads WHERE id = ?", [thread_id]).fetchone()
            if row is None:
                return {}
            platform, owner, _ = parse_channel_key(str(row[0]))
            if platform != "api":
                return {}
            marks = ",".join("?" * len(wanted))
            rows = db.execute(
                "SELECT f.id, f.filename, f.mime, c.data FROM api_files f JOIN file_contents c ON c.sha256 = f.sha256"
                f" WHERE f.owner = ? AND f.id IN ({marks})",
                [owner, *wanted],
            ).fetchall()
            return {str(r[0]): ApiImageFile(str(r[1]), r[2], bytes(r[3])) for r in rows}

        return await self._store.call(load)
