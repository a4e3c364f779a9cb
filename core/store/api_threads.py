"""Threads and messages as the Assistants-compatible API reaches them: scoped by channel.

The API's threads are core threads, each the thread of a channel of its own (core/api_objects.py
says which), and their messages are rows of the core's message table. Every query here names the
channel as well as the id, so an id from another channel (another API key's, or a chat platform's)
is simply not found. Same connection and thread as the rest of the store, through ``Store.call``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from core.models import MessageRecord, Page, PageQuery, ThreadRecord, parse_channel_key
from core.store.paging import fetch_page
from core.store.rows import update_row
from core.store.sql import SqlDatabase
from core.store.store import Store

__all__ = ["NewMessageRow", "ThreadStore", "item_parts", "item_texts"]

# (role, text, item, tokens, metadata, attachments) of a message a client adds; attachments as the API shows them
NewMessageRow = tuple[str, str, dict[str, Any], int, Mapping[str, str], Sequence[Mapping[str, Any]]]

_THREAD_COLUMNS = "id, channel, created_at, metadata, tool_resources"
_MESSAGE_COLUMNS = (
    "public_id, thread_id, role, item, created_at, metadata, run_id, annotations, attachments, output_images"
)
# The API shows people's and the assistant's messages; tool calls and their results stay inside runs.
_LISTED = "role IN ('user', 'assistant')"


def item_texts(item: Mapping[str, Any]) -> tuple[str, ...]:
    """The text parts of a stored model input item (a string content is one part)."""
    content = item.get("content")
    if isinstance(content, str):
        return (content,)
    if isinstance(content, list):
        return tuple(str(p["text"]) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ()


def item_parts(item: Mapping[str, Any]) -> tuple[str | dict[str, Any], ...]:
    """The content of a stored model input item in order, as the API shows it: each text as a string, each
    image a client sent as the old API's part (``image_file``, ``image_url``; core/images.py)."""
    content = item.get("content")
    if not isinstance(content, list):
        return item_texts(item)
    parts: list[str | dict[str, Any]] = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            parts.append(str(part["text"]))
        elif part.get("type") == "input_image" and part.get("file_id"):
            parts.append({"type": "image_file", "image_file": _detailed({"file_id": part["file_id"]}, part)})
        elif part.get("type") == "input_image" and part.get("image_url"):
            parts.append({"type": "image_url", "image_url": _detailed({"url": part["image_url"]}, part)})
    return tuple(parts)


def _detailed(reference: dict[str, Any], part: Mapping[str, Any]) -> dict[str, Any]:
    return {**reference, "detail": part["detail"]} if part.get("detail") else reference


def _thread(row: Sequence[Any]) -> ThreadRecord:
    return ThreadRecord(
        id=row[0],
        channel=row[1],
        created_at=float(row[2]),
        metadata=json.loads(row[3]) if row[3] else {},
        tool_resources=json.loads(row[4]) if row[4] else None,
    )


def _message(row: Sequence[Any]) -> MessageRecord:
    item = json.loads(row[3])
    images = [{"type": "image_file", "image_file": {"file_id": str(i)}} for i in json.loads(row[9] or "[]")]
    parts = item_parts(item)
    return MessageRecord(
        id=row[0],
        thread_id=row[1],
        role=row[2],
        texts=item_texts(item),
        created_at=float(row[4] or 0),
        metadata=json.loads(row[5]) if row[5] else {},
        run_id=row[6],
        annotations=tuple(json.loads(row[7])) if row[7] else (),
        parts=(*images, *(parts or item_texts(item))) if images else parts,
        attachments=tuple(json.loads(row[8])) if row[8] else (),
    )


def _get_thread(db: SqlDatabase, thread_id: str, channel: str) -> ThreadRecord | None:
    row = db.execute(
        f"SELECT {_THREAD_COLUMNS} FROM threads WHERE id = ? AND channel = ?", [thread_id, channel]
    ).fetchone()
    return _thread(row) if row else None


def _get_message(db: SqlDatabase, channel: str, thread_id: str, message_id: str) -> MessageRecord | None:
    row = db.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE public_id = ? AND channel = ? AND thread_id = ? AND {_LISTED}",
        [message_id, channel, thread_id],
    ).fetchone()
    return _message(row) if row else None


def _insert_messages(db: SqlDatabase, thread_id: str, channel: str, rows: Sequence[NewMessageRow]) -> list[str]:
    """Append messages, each opening its own turn (as a person's message does); returns their public ids."""
    now = time.time()
    ids = []
    for role, text, item, tokens, metadata, attachments in rows:
        cursor = db.execute(
            "INSERT INTO messages (thread_id, channel, turn_id, role, text, item, tokens, metadata, created_at,"
            " attachments) VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            [
                thread_id,
                channel,
                role,
                text,
                json.dumps(item),
                tokens,
                json.dumps(dict(metadata)),
                now,
                json.dumps([dict(a) for a in attachments]) if attachments else None,
            ],
        )
        (message_id,) = cursor.fetchone()
        db.execute("UPDATE messages SET turn_id = id WHERE id = ?", [message_id])
        row = db.execute("SELECT public_id FROM messages WHERE id = ?", [message_id]).fetchone()
        ids.append(str(row[0]))
    return ids


class ThreadStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    # -- threads -------------------------------------------------------------------------------

    async def create(
        self,
        thread_id: str,
        channel: str,
        *,
        metadata: Mapping[str, str],
        tool_resources: Mapping[str, Any] | None,
        messages: Sequence[NewMessageRow] = (),
    ) -> ThreadRecord:
        """A new channel whose current thread is ``thread_id``, with its first messages, in one transaction."""
        platform, workspace, channel_id = parse_channel_key(channel)

        def create(db: SqlDatabase) -> ThreadRecord:
            now = time.time()
            with db.atomic():
                db.execute(
                    "INSERT INTO channels (key, platform, workspace, channel_id, thread_id, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [channel, platform, workspace, channel_id, thread_id, now],
                )
                db.execute(
                    "INSERT INTO threads (id, channel, created_at, metadata, tool_resources) VALUES (?, ?, ?, ?, ?)",
                    [thread_id, channel, now, json.dumps(dict(metadata)), _json_or_null(tool_resources)],
                )
                _insert_messages(db, thread_id, channel, messages)
            record = _get_thread(db, thread_id, channel)
            assert record is not None
            return record

        return await self._store.call(create)

    async def get(self, thread_id: str, channel: str) -> ThreadRecord | None:
        return await self._store.call(lambda db: _get_thread(db, thread_id, channel))

    async def update(self, thread_id: str, channel: str, fields: Mapping[str, Any]) -> ThreadRecord | None:
        """Set ``metadata`` and/or ``tool_resources``; None when the channel has no such thread."""
        unknown = set(fields) - {"metadata", "tool_resources"}
        if unknown:
            raise ValueError(f"unknown thread fields: {sorted(unknown)}")

        def update(db: SqlDatabase) -> ThreadRecord | None:
            columns = {name: _json_or_null(value) for name, value in fields.items()}
            update_row(db, "threads", columns, "id = ? AND channel = ?", [thread_id, channel])
            return _get_thread(db, thread_id, channel)

        return await self._store.call(update)

    async def delete(self, thread_id: str, channel: str) -> bool:
        """Delete the thread, everything in it (messages, runs, their steps and approvals) and its channel."""

        def delete(db: SqlDatabase) -> bool:
            if _get_thread(db, thread_id, channel) is None:
                return False
            runs = "SELECT id FROM runs WHERE thread_id = ?"
            with db.atomic():
                db.execute(f"DELETE FROM approvals WHERE run_id IN ({runs})", [thread_id])
                db.execute(f"DELETE FROM run_steps WHERE run_id IN ({runs})", [thread_id])
                db.execute("DELETE FROM runs WHERE thread_id = ?", [thread_id])
                db.execute("DELETE FROM messages WHERE thread_id = ?", [thread_id])
                db.execute("DELETE FROM threads WHERE id = ?", [thread_id])
                db.execute(
                    "DELETE FROM channels WHERE key = ? AND NOT EXISTS (SELECT 1 FROM threads WHERE channel = ?)",
                    [channel, channel],
                )
            return True

        return await self._store.call(delete)

    # -- messages ------------------------------------------------------------------------------

    async def add_message(self, thread_id: str, channel: str, message: NewMessageRow) -> MessageRecord | None:
        """Append a message; None when the channel has no such thread."""

        def add(db: SqlDatabase) -> MessageRecord | None:
            if _get_thread(db, thread_id, channel) is None:
                return None
            with db.atomic():
                (public_id,) = _insert_messages(db, thread_id, channel, [message])
            return _get_message(db, channel, thread_id, public_id)

        return await self._store.call(add)

    async def get_message(self, thread_id: str, channel: str, message_id: str) -> MessageRecord | None:
        return await self._store.call(lambda db: _get_message(db, channel, thread_id, message_id))

    async def update_message(
        self, thread_id: str, channel: str, message_id: str, metadata: Mapping[str, str]
    ) -> MessageRecord | None:
        def update(db: SqlDatabase) -> MessageRecord | None:
            db.execute(
                f"UPDATE messages SET metadata = ? WHERE public_id = ? AND channel = ? AND thread_id = ? AND {_LISTED}",
                [json.dumps(dict(metadata)), message_id, channel, thread_id],
            )
            return _get_message(db, channel, thread_id, message_id)

        return await self._store.call(update)

    async def delete_message(self, thread_id: str, channel: str, message_id: str) -> bool:
        def delete(db: SqlDatabase) -> bool:
            cursor = db.execute(
                f"DELETE FROM messages WHERE public_id = ? AND channel = ? AND thread_id = ? AND {_LISTED}",
                [message_id, channel, thread_id],
            )
            return cursor.rowcount == 1

        return await self._store.call(delete)

    async def list_messages(
        self, thread_id: str, channel: str, query: PageQuery, *, run_id: str | None = None
    ) -> Page[MessageRecord] | None:
        """The thread's messages in conversation order; None when the channel has no such thread.

        Raises UnknownCursor for a cursor that is not one of the listed messages.
        """
        where = f"thread_id = ? AND channel = ? AND {_LISTED}"
        params: list[Any] = [thread_id, channel]
        if run_id is not None:
            where += " AND run_id = ?"
            params.append(run_id)

        def list_(db: SqlDatabase) -> Page[MessageRecord] | None:
            if _get_thread(db, thread_id, channel) is None:
                return None
            return fetch_page(
                db,
                columns=_MESSAGE_COLUMNS,
                table="messages",
                where=where,
                params=params,
                key=["turn_id", "id"],
                id_column="public_id",
                query=query,
                convert=_message,
            )

        return await self._store.call(list_)


def _json_or_null(value: Any) -> str | None:
    return json.dumps(value) if value is not None else None
