"""The knowledge base's tables: files, chunks (with their full-text index, core/store/keywords.py) and embeddings.

Same connection and thread as the rest of the store, through ``Store.call``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from core.models import ChunkHit, FileRecord
from core.store.fulltext import index_text, is_english, query_words
from core.store.keywords import (
    SEARCH_INDEX,
    FullTextIndex,
    KeywordIndex,
    fts5_match,
    index_for,
    narrowing_steps,
)
from core.store.leases import live_processes
from core.store.sql import SqlDatabase
from core.store.store import Store, new_id

__all__ = ["SEARCH_INDEX", "FileStore", "KeywordIndex", "NewChunk", "drop_unused_content", "fts_query"]

# (location, text, tokens)
NewChunk = tuple[str, str, int]

_FILE_COLUMNS = (
    "id, channel, name, size, sha256, status, error, kind, pages, chunk_count, link, platform_file_id,"
    " uploader_name, created_at"
)
CHUNK_BATCH = 500  # chunks written per transaction
# A chunk's embedding written again (another model, a re-index) replaces the one it had.
_REPLACE_EMBEDDING = (
    "ON CONFLICT (chunk_id) DO UPDATE SET channel = excluded.channel, model = excluded.model, dim = excluded.dim,"
    " vector = excluded.vector"
)


def _search_rows(batch: Sequence[tuple[int, NewChunk]]) -> list[tuple[str | None, str | None]]:
    """New chunks' ``search_text`` and ``stemming`` (m025_multilingual_search)."""
    return [(index_text(text), "english" if is_english(text) else None) for _, (_, text, _) in batch]


def fts_query(text: str, *, every_word: bool = False) -> str | None:
    """A query string for FTS5 MATCH: every word quoted (no syntax from users); any word, or every word."""
    words = query_words(text)
    return fts5_match(words, "AND" if every_word else "OR") if words else None


def _file(row: Sequence[Any]) -> FileRecord:
    return FileRecord(
        id=row[0],
        channel=row[1],
        name=row[2],
        size=int(row[3] or 0),
        sha256=row[4],
        status=row[5],
        error=row[6],
        kind=row[7],
        pages=row[8],
        chunk_count=int(row[9] or 0),
        link=row[10],
        platform_file_id=row[11],
        uploader_name=row[12],
        created_at=float(row[13] or 0),
    )


class FileStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def create(
        self,
        *,
        channel: str,
        name: str,
        size: int,
        sha256: str,
        mime: str | None,
        uploader_id: str | None,
        uploader_name: str | None,
        platform_file_id: str | None,
        link: str | None,
        status: str = "in_progress",
        error: str | None = None,
        error_code: str | None = None,
    ) -> FileRecord:
        """A new file's row. One with a ``platform_file_id`` the channel has already is refused (see :meth:`claim`)."""
        row = {
            "channel": channel, "name": name, "size": size, "sha256": sha256, "mime": mime, "status": status,
            "error": error, "error_code": error_code, "uploader_id": uploader_id, "uploader_name": uploader_name,
            "platform_file_id": platform_file_id, "link": link, "owner": self._store.process_id,
        }  # fmt: skip

        def create(db: SqlDatabase) -> FileRecord:
            file_id = _insert(db, row, or_nothing=False)
            assert file_id is not None
            return _get(db, file_id)

        return await self._store.call(create)

    async def claim(
        self,
        *,
        channel: str,
        name: str,
        size: int,
        mime: str | None,
        uploader_id: str | None,
        uploader_name: str | None,
        platform_file_id: str,
        link: str | None,
    ) -> tuple[FileRecord, bool]:
        """The row of a platform's upload: written now (``in_progress``, no content yet) unless the channel has one.

        Returns (the row, whether it was written now). The database holds one row per (channel,
        platform file id), so of two events, deliveries or processes that bring the same upload at
        once exactly one writes it; the others get that row back. Fill it with :meth:`fill`, or drop
        it with :meth:`release`.
        """
        row = {
            "channel": channel, "name": name, "size": size, "sha256": "", "mime": mime, "status": "in_progress",
            "uploader_id": uploader_id, "uploader_name": uploader_name, "platform_file_id": platform_file_id,
            "link": link, "owner": self._store.process_id,
        }  # fmt: skip

        def claim(db: SqlDatabase) -> tuple[FileRecord, bool]:
            while True:  # the row in the way may be removed before it is read: then this one goes in
                if (file_id := _insert(db, row, or_nothing=True)) is not None:
                    return _get(db, file_id), True
                found = db.execute(
                    f"SELECT {_FILE_COLUMNS} FROM files WHERE channel = ? AND platform_file_id = ?",
                    [channel, platform_file_id],
                ).fetchone()
                if found is not None:
                    return _file(found), False

        return await self._store.call(claim)

    async def fill(self, file_id: str, *, sha256: str, size: int) -> FileRecord | None:
        """A claimed row's content, once its bytes are in; None when the file was removed meanwhile."""

        def fill(db: SqlDatabase) -> FileRecord | None:
            cursor = db.execute(
                "UPDATE files SET sha256 = ?, size = ? WHERE id = ? AND status = 'in_progress'", [sha256, size, file_id]
            )
            return _get(db, file_id) if cursor.rowcount else None

        return await self._store.call(fill)

    async def release(self, file_id: str) -> None:
        """Drop a claimed row that will not be indexed (its bytes could not be fetched, or another file has them)."""

        def release(db: SqlDatabase) -> None:
            with db.atomic():
                _delete_file(db, file_id)

        await self._store.call(release)

    async def fail_interrupted(self, reason: str, *, orphans_only: bool = False) -> list[FileRecord]:
        """Mark files left half-indexed as failed (they are not searchable); returns them.

        ``orphans_only``: only those of processes that are gone, not those this process or another
        one alive on the database is indexing now.
        """

        def fail(db: SqlDatabase) -> list[FileRecord]:
            where, params = "status = 'in_progress'", []
            if orphans_only:
                params = sorted(live_processes(db, self._store.host) | {self._store.process_id})
                where += f" AND (owner IS NULL OR owner NOT IN ({_marks(params)}))"
            with db.atomic():
                rows = db.execute(f"SELECT {_FILE_COLUMNS} FROM files WHERE {where}", params).fetchall()
                for row in rows:
                    _delete_chunks(db, row[0])
                db.execute(
                    "UPDATE files SET status = 'failed', error = ?, error_code = 'server_error', completed_at = ?"
                    f" WHERE {where}",
                    [reason, time.time(), *params],
                )
            return [_file(row) for row in rows]

        return await self._store.call(fail)

    async def find_same_content(self, channel: str, sha256: str) -> FileRecord | None:
        """A file with these bytes already indexed (or being indexed) in the channel."""

        def find(db: SqlDatabase) -> FileRecord | None:
            row = db.execute(
                f"SELECT {_FILE_COLUMNS} FROM files WHERE channel = ? AND sha256 = ?"
                " AND status IN ('completed', 'in_progress') ORDER BY created_at DESC LIMIT 1",
                [channel, sha256],
            ).fetchone()
            return _file(row) if row else None

        return await self._store.call(find)

    async def complete(
        self,
        file_id: str,
        *,
        kind: str,
        pages: int | None,
        chunks: Sequence[NewChunk],
        vectors: Sequence[bytes] | None = None,
        model: str | None = None,
        dim: int = 0,
        replace_same_name: bool = True,
    ) -> tuple[FileRecord, list[FileRecord]] | None:
        """Store a file's chunks (and embeddings), then mark it completed.

        Chunks go in in batches, each a short transaction, so a large file never holds the store
        (and every other channel) for long; they are not searchable until the file is completed.
        Older files of the same name in the channel are replaced (unless ``replace_same_name`` is
        false): returns (the file, the replaced ones), or None when the file was removed while it
        was being indexed.
        """
        if vectors is not None and len(vectors) != len(chunks):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        for start in range(0, len(chunks), CHUNK_BATCH):
            batch = list(enumerate(chunks[start : start + CHUNK_BATCH], start=start))
            blobs = vectors[start : start + CHUNK_BATCH] if vectors is not None and model is not None else None
            search = await asyncio.to_thread(_search_rows, batch)

            def insert(
                db: SqlDatabase, batch: list[tuple[int, NewChunk]] = batch, blobs: Any = blobs, search: Any = search
            ) -> bool:
                row = db.execute(
                    "SELECT channel FROM files WHERE id = ? AND status = 'in_progress'", [file_id]
                ).fetchone()
                if row is None:
                    return False
                with db.atomic():
                    ids = []
                    for (ordinal, (location, text, tokens)), (search_text, stemming) in zip(batch, search, strict=True):
                        cursor = db.execute(
                            "INSERT INTO chunks (file_id, channel, ordinal, location, text, tokens, search_text,"
                            " stemming) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                            [file_id, row[0], ordinal, location, text, tokens, search_text, stemming],
                        )
                        ids.append(int(cursor.fetchone()[0]))
                    if blobs is not None:
                        db.conn.executemany(
                            "INSERT INTO embeddings (chunk_id, channel, model, dim, vector) VALUES (?, ?, ?, ?, ?)"
                            f" {_REPLACE_EMBEDDING}",
                            [(i, row[0], model, dim, v) for i, v in zip(ids, blobs, strict=True)],
                        )
                return True

            if not await self._store.call(insert):
                return None

        def finish(db: SqlDatabase) -> tuple[FileRecord, list[FileRecord]] | None:
            row = db.execute(f"SELECT {_FILE_COLUMNS} FROM files WHERE id = ?", [file_id]).fetchone()
            if row is None:
                return None
            record = _file(row)
            with db.atomic():
                replaced = (
                    [
                        _file(row)
                        for row in db.execute(
                            f"SELECT {_FILE_COLUMNS} FROM files WHERE channel = ? AND name = ? AND id != ?"
                            " AND status != 'in_progress'",
                            [record.channel, record.name, file_id],
                        ).fetchall()
                    ]
                    if replace_same_name
                    else []
                )
                for old in replaced:
                    _delete_file(db, old.id)
                db.execute(
                    "UPDATE files SET status = 'completed', kind = ?, pages = ?, completed_at = ?,"
                    " chunk_count = (SELECT count(*) FROM chunks WHERE file_id = ?) WHERE id = ?",
                    [kind, pages, time.time(), file_id, file_id],
                )
            return _get(db, file_id), replaced

        return await self._store.call(finish)

    async def fail(
        self, file_id: str, error: str, kind: str | None = None, *, code: str = "server_error"
    ) -> FileRecord:
        """Mark a file failed with a reason for people and a code (the old API's ``last_error.code``)."""

        def fail(db: SqlDatabase) -> FileRecord:
            _delete_chunks(db, file_id)
            db.execute(
                "UPDATE files SET status = 'failed', error = ?, error_code = ?, kind = coalesce(?, kind),"
                " completed_at = ? WHERE id = ?",
                [error, code, kind, time.time(), file_id],
            )
            return _get(db, file_id)

        return await self._store.call(fail)

    async def save_content(self, sha256: str, data: bytes) -> None:
        """Keep a file's bytes (once per content), for tools that work on the original files."""
        await self._store.call(
            lambda db: db.execute(
                "INSERT INTO file_contents (sha256, data) VALUES (?, ?) ON CONFLICT DO NOTHING", [sha256, data]
            )
        )

    async def contents(self, channel: str) -> list[tuple[str, bytes]]:
        """The channel's indexed files as (name, bytes), newest version of each name."""

        def load(db: SqlDatabase) -> list[tuple[str, bytes]]:
            rows = db.execute(
                "SELECT f.name, c.data FROM files f JOIN file_contents c ON c.sha256 = f.sha256 "
                "WHERE f.channel = ? AND f.status = 'completed' ORDER BY f.created_at",
                [channel],
            ).fetchall()
            return list({str(name): bytes(data) for name, data in rows}.items())

        return await self._store.call(load)

    async def in_channel(self, channel: str) -> list[FileRecord]:
        def list_(db: SqlDatabase) -> list[FileRecord]:
            rows = db.execute(
                f"SELECT {_FILE_COLUMNS} FROM files WHERE channel = ? ORDER BY created_at, rowid", [channel]
            ).fetchall()
            return [_file(row) for row in rows]

        return await self._store.call(list_)

    async def get(self, file_id: str) -> FileRecord:
        return await self._store.call(lambda db: _get(db, file_id))

    async def remove(
        self, channel: str, *, name: str | None = None, platform_file_id: str | None = None
    ) -> list[FileRecord]:
        """Remove a channel's files by name (every version) or platform id; None for both: all of them."""

        def remove(db: SqlDatabase) -> list[FileRecord]:
            sql = f"SELECT {_FILE_COLUMNS} FROM files WHERE channel = ?"
            params: list[Any] = [channel]
            if name is not None:
                sql += " AND name = ?"
                params.append(name)
            if platform_file_id is not None:
                sql += " AND platform_file_id = ?"
                params.append(platform_file_id)
            files = [_file(row) for row in db.execute(sql, params).fetchall()]
            with db.atomic():
                for record in files:
                    _delete_file(db, record.id)
            return files

        return await self._store.call(remove)

    async def remove_created_before(
        self, cutoff: float, *, skip_prefix: str = "api:", batch: int = 100
    ) -> list[FileRecord]:
        """Remove files added before ``cutoff`` (not those of keys starting ``skip_prefix``, nor any being indexed).

        As :meth:`remove` does, with their chunks, full-text rows, embeddings and unused bytes;
        ``batch`` files per transaction.
        """

        def remove(db: SqlDatabase) -> list[FileRecord]:
            rows = db.execute(
                f"SELECT {_FILE_COLUMNS} FROM files WHERE created_at < ? AND channel NOT LIKE ?"
                " AND status != 'in_progress' ORDER BY created_at LIMIT ?",
                [cutoff, skip_prefix + "%", batch],
            ).fetchall()
            files = [_file(row) for row in rows]
            with db.atomic():
                for record in files:
                    _delete_file(db, record.id)
            return files

        removed: list[FileRecord] = []
        while found := await self._store.call(remove):
            removed += found
            if len(found) < batch:
                break
        return removed

    async def searchable(self, channel: str | Sequence[str]) -> bool:
        """Whether the channel (or any of several) has a file to search."""
        channels = _channels(channel)

        def any_(db: SqlDatabase) -> bool:
            row = db.execute(
                f"SELECT 1 FROM files WHERE channel IN ({_marks(channels)}) AND status = 'completed'"
                " AND chunk_count > 0 LIMIT 1",
                channels,
            ).fetchone()
            return row is not None

        return await self._store.call(any_)

    async def keyword_search(
        self,
        channel: str | Sequence[str],
        query: str,
        limit: int,
        *,
        enough: int = 5,
        index: FullTextIndex | None = None,
    ) -> list[tuple[int, float]]:
        """(chunk id, score; lower is better) of the channel's best keyword matches: BM25 on SQLite, the
        negated rarity-weighted ``ts_rank`` on PostgreSQL (core/store/keywords.py); ``index``: another one (benchmarks).

        Several channels are searched as one: the index is shared, so their scores compare.

        Ranking every chunk that holds any word of a question means scoring most of a large channel,
        so the search narrows first: chunks holding every word; then, while fewer than ``enough`` are
        found, chunks holding all words but one; and only then chunks holding any word.
        """
        channels = _channels(channel)
        if not channels:
            return []

        def search(db: SqlDatabase) -> list[tuple[int, float]]:
            searched = index or index_for(db)
            found: list[tuple[int, float]] = []
            seen: set[int] = set()
            for step in narrowing_steps(searched.words(query)):
                found += [row for row in searched.ranked(db, step, channels, limit) if row[0] not in seen]
                seen = {chunk_id for chunk_id, _ in found}
                if len(found) >= enough:
                    break
            return found[:limit]

        return await self._store.call(search)

    async def vectors(self, channel: str, model: str) -> tuple[list[int], list[bytes], int]:
        """Every embedding of the channel's chunks for ``model``: (chunk ids, float32 blobs, dim)."""

        def load(db: SqlDatabase) -> tuple[list[int], list[bytes], int]:
            rows = db.execute(
                "SELECT embeddings.chunk_id, embeddings.vector, embeddings.dim FROM embeddings"
                " JOIN chunks ON chunks.id = embeddings.chunk_id"
                " JOIN files ON files.id = chunks.file_id AND files.status = 'completed'"
                " WHERE embeddings.channel = ? AND embeddings.model = ? ORDER BY embeddings.chunk_id",
                [channel, model],
            ).fetchall()
            dims = {int(r[2]) for r in rows}
            if len(dims) > 1:
                rows = [r for r in rows if int(r[2]) == max(dims)]
            return [int(r[0]) for r in rows], [bytes(r[1]) for r in rows], (dims.pop() if len(dims) == 1 else 0)

        return await self._store.call(load)

    async def chunk_texts(self, file_id: str) -> list[str]:
        """A file's chunks' text, in the file's order."""

        def load(db: SqlDatabase) -> list[str]:
            rows = db.execute("SELECT text FROM chunks WHERE file_id = ? ORDER BY id", [file_id]).fetchall()
            return [str(r[0]) for r in rows]

        return await self._store.call(load)

    async def hits(self, chunk_ids: Sequence[int]) -> dict[int, ChunkHit]:
        wanted = list(chunk_ids)

        def load(db: SqlDatabase) -> dict[int, ChunkHit]:
            if not wanted:
                return {}
            marks = ",".join("?" * len(wanted))
            rows = db.execute(
                "SELECT chunks.id, chunks.file_id, files.name, chunks.location, chunks.text, files.link"
                f" FROM chunks JOIN files ON files.id = chunks.file_id WHERE chunks.id IN ({marks})",
                wanted,
            ).fetchall()
            return {int(r[0]): ChunkHit(int(r[0]), r[1], r[2], r[3] or "", r[4], r[5]) for r in rows}

        return await self._store.call(load)

    async def missing_embeddings(self, model: str, limit: int) -> list[tuple[int, str, str]]:
        """(chunk id, channel, text) of chunks without an embedding from ``model``."""

        def load(db: SqlDatabase) -> list[tuple[int, str, str]]:
            rows = db.execute(
                "SELECT chunks.id, chunks.channel, chunks.text FROM chunks"
                " LEFT JOIN embeddings ON embeddings.chunk_id = chunks.id AND embeddings.model = ?"
                " WHERE embeddings.chunk_id IS NULL ORDER BY chunks.id LIMIT ?",
                [model, limit],
            ).fetchall()
            return [(int(r[0]), r[1], r[2]) for r in rows]

        return await self._store.call(load)

    async def add_embeddings(self, model: str, dim: int, rows: Sequence[tuple[int, str, bytes]]) -> None:
        """Store (chunk id, channel, float32 blob) rows, replacing embeddings from other models."""

        def add(db: SqlDatabase) -> None:
            with db.atomic():
                db.conn.executemany(
                    "INSERT INTO embeddings (chunk_id, channel, model, dim, vector)"
                    " SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM chunks WHERE id = ?)"
                    f" {_REPLACE_EMBEDDING}",
                    [(chunk_id, channel, model, dim, blob, chunk_id) for chunk_id, channel, blob in rows],
                )

        await self._store.call(add)


def _insert(db: SqlDatabase, fields: dict[str, Any], *, or_nothing: bool) -> str | None:
    """Insert a file's row; its new id, or None when ``or_nothing`` and the channel has its platform id already."""
    file_id = new_id("file")
    now = time.time()
    row = {
        "id": file_id,
        **fields,
        "chunk_count": 0,
        "created_at": now,
        "completed_at": now if fields["status"] != "in_progress" else None,
    }
    conflict = " ON CONFLICT DO NOTHING" if or_nothing else ""
    cursor = db.execute(
        f"INSERT INTO files ({', '.join(row)}) VALUES ({_marks(list(row))}){conflict}", list(row.values())
    )
    return file_id if cursor.rowcount else None


def _get(db: SqlDatabase, file_id: str) -> FileRecord:
    row = db.execute(f"SELECT {_FILE_COLUMNS} FROM files WHERE id = ?", [file_id]).fetchone()
    if row is None:
        raise KeyError(file_id)
    return _file(row)


def _delete_chunks(db: SqlDatabase, file_id: str) -> None:
    db.execute("DELETE FROM embeddings WHERE chunk_id IN (SELECT id FROM chunks WHERE file_id = ?)", [file_id])
    db.execute("DELETE FROM chunks WHERE file_id = ?", [file_id])


def _delete_file(db: SqlDatabase, file_id: str) -> None:
    _delete_chunks(db, file_id)
    row = db.execute("SELECT sha256 FROM files WHERE id = ?", [file_id]).fetchone()
    db.execute("DELETE FROM files WHERE id = ?", [file_id])
    if row is not None:  # the bytes go with the last file that has them
        drop_unused_content(db, row[0])


def drop_unused_content(db: SqlDatabase, sha256: str) -> None:
    """Delete stored bytes that no knowledge-base file and no file uploaded over the API has any more."""
    db.execute(
        "DELETE FROM file_contents WHERE sha256 = ? AND NOT EXISTS (SELECT 1 FROM files WHERE sha256 = ?)"
        " AND NOT EXISTS (SELECT 1 FROM api_files WHERE sha256 = ?)",
        [sha256, sha256, sha256],
    )


def _channels(channel: str | Sequence[str]) -> list[str]:
    return [channel] if isinstance(channel, str) else list(dict.fromkeys(channel))


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))
