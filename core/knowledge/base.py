"""A channel's knowledge base: add files, list and forget them, search them.

Adapters hand over bytes (:class:`Upload`); extraction and chunking run in worker processes,
embeddings (when ``THREADLINE_EMBEDDING_MODEL`` is set) come from the chat model's OpenAI-compatible
endpoint or their own (``THREADLINE_EMBEDDING_BASE_URL``), and everything is stored in the store's
database (SQLite or PostgreSQL). Search is by keywords always (BM25 over FTS5 on SQLite, each word's
``ts_rank`` weighted by its rarity over a ``tsvector`` on PostgreSQL: core/store/keywords.py), fused
with vector similarity when embeddings exist; vectors are compared in this process on both engines (in
memory, or an HNSW index file beside the store: core/knowledge/vector_index.py). A channel only ever
searches its own files.

A knowledge base is named by a key: a chat channel's key, or ``api:<owner>:<vector store id>``
for a vector store of the Assistants-compatible API. Vector stores keep every file they are given
(no merging of equal contents, no replacing by name) and index in the background
(:meth:`KnowledgeBase.add_in_background`); a run over the API may search several of them at once
(:meth:`KnowledgeBase.search_many`).

A conversation inside a channel (a Slack thread, a Discord thread; core/models.py) has no files of
its own: the methods that take a ``channel`` (add, files, contents, forget, search) accept any
conversation key and act on its scope's knowledge base (``Store.scope``), so a file shared in a
thread is its channel's. :meth:`KnowledgeBase.searchable` and :meth:`KnowledgeBase.search_many` take
knowledge-base keys as they are.

Whether an upload is new is decided here, once, for every adapter: an upload the platform names
(``platform_file_id``: a Slack file, a Discord attachment) is one file of a knowledge base, held by
a unique index in the database, so neither a second event for it, nor a redelivery, nor another
process on the same database downloads or indexes it again (:meth:`KnowledgeBase.add`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from core.errors import ThreadlineError
from core.knowledge import vector_index
from core.knowledge.pipeline import ExtractionPool
from core.knowledge.search import RRF_K, VectorMatrix, reciprocal_rank_fusion, to_blob
from core.knowledge.vector_cache import VectorCache
from core.knowledge.vector_index import INDEX_FROM, ChannelIndex
from core.metrics import Metrics
from core.model_client import ModelClient
from core.models import ChunkHit, FileRecord
from core.settings import Settings
from core.store import Store
from core.store.files import FileStore
from core.store.vectors import VectorReader
from core.tokens import TokenCounter

__all__ = ["AddResult", "DownloadFailed", "KnowledgeBase", "Outcome", "Upload"]

_log = logging.getLogger(__name__)

EMBED_BATCH = 64
CANDIDATES = 40  # per ranking, before fusion
OVERFETCH = 2  # candidates asked of an index per one kept: room for chunks removed since it was written
INDEX_BATCH = 20_000  # vectors read and added to an index at a time

# How a channel's vectors are searched: its matrix (exact), its index file (candidates, scored exactly),
# or None: too large to keep and no index yet, so they are read and scored per query.
Searchable = VectorMatrix | ChannelIndex | None


@dataclass(frozen=True)
class Upload:
    """A file someone shared in a channel, as the adapter received it.

    Its bytes are ``data``, or come from ``download`` (called with the largest size accepted, in
    bytes; it may return one more to show the file is larger): the knowledge base calls it only for
    an upload it is going to index, so a second delivery of the same platform file downloads nothing.
    """

    name: str
    data: bytes = b""
    mime: str | None = None
    uploader_id: str | None = None
    uploader_name: str | None = None
    platform_file_id: str | None = None  # the platform's id of this upload: the same id twice is one file
    link: str | None = None
    declared_size: int | None = None  # the platform's size, when the bytes were not all fetched
    download: Callable[[int], Awaitable[bytes]] | None = None


class DownloadFailed(ThreadlineError):
    """Raised by an :class:`Upload`'s ``download``: the bytes could not be fetched. The message is for people."""


Outcome = Literal["added", "already_there", "refused"]


@dataclass(frozen=True)
class AddResult:
    """What became of an upload, and the line to tell the channel."""

    file: FileRecord
    duplicate: bool = False  # the same bytes were already in the channel: nothing new was indexed
    delivered_before: bool = False  # this platform file was handed over before (and answered then): nothing done
    replaced: list[FileRecord] = field(default_factory=list)  # older versions with the same name
    message_override: str | None = None

    @property
    def outcome(self) -> Outcome:
        """added (indexed, or being indexed in the background), already there, or refused (with a reason)."""
        if self.duplicate or self.delivered_before:
            return "already_there"
        return "refused" if self.file.status == "failed" else "added"

    @property
    def message(self) -> str:
        """One short line for the channel."""
        f = self.file
        if self.message_override:
            return self.message_override
        if self.delivered_before:
            return f"{f.name} is already in this channel's files."
        if self.duplicate:
            return f"{f.name} is already in this channel's files (same content), so nothing changed."
        if f.status == "failed":
            return f.error or f"{f.name} could not be indexed."
        where = f"{f.pages} {'page' if f.pages == 1 else 'pages'}, " if f.pages and f.kind == "pdf" else ""
        done = f"Indexed {f.name} ({where}{f.chunk_count} {'chunk' if f.chunk_count == 1 else 'chunks'})"
        return done + (" and replaced the earlier version." if self.replaced else ".")

    @property
    def notice(self) -> str | None:
        """What to tell the channel: :attr:`message`, or None when an earlier delivery of this upload was told."""
        return None if self.delivered_before else self.message


class KnowledgeBase:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        models: ModelClient,
        tokens: TokenCounter,
        metrics: Metrics | None = None,
        vectors: VectorReader | None = None,
        index_from: int = INDEX_FROM,
    ) -> None:
        self._settings = settings
        self._metrics = metrics or Metrics()
        self._store = store
        self._files = FileStore(store)
        self._models = models
        self._tokens = tokens
        self._pool = ExtractionPool(workers=settings.extraction_workers)
        # Vectors are read on connections of their own (core/store/vectors.py), never on the store's thread.
        self._reader = vectors or VectorReader.for_store(store)
        self._vectors: VectorCache[VectorMatrix | ChannelIndex] = VectorCache(
            int(settings.vector_cache_mb * 1024 * 1024)
        )
        self._versions: dict[str, int] = {}  # bumped when a channel's chunks change, to drop stale matrices
        self._loads: dict[tuple[str, int], asyncio.Task[Searchable]] = {}  # one load of a channel, shared
        self._index_folder = store.path.parent / "vectors"
        self._index_from = index_from  # chunks from which a channel is searched from an index file
        self._refreshing: dict[str, asyncio.Task[None]] = {}  # key → the task bringing its index file up to date
        self._stale: set[str] = set()  # keys changed again while their index was being brought up to date
        self._closing = False
        self._reembed: asyncio.Task[None] | None = None
        self._indexing: dict[str, asyncio.Task[AddResult]] = {}  # file id → its background indexing
        self._indexing_in: dict[str, str] = {}  # file id → the key of the knowledge base it is indexed into

    @property
    def embedding_model(self) -> str | None:
        return self._settings.embedding_model

    @property
    def max_file_bytes(self) -> int:
        """The largest file accepted (``THREADLINE_MAX_FILE_MB``)."""
        return int(self._settings.max_file_mb * 1024 * 1024)

    @property
    def max_file_mb(self) -> float:
        return self._settings.max_file_mb

    async def recover(self) -> None:
        """Files a stop left half-indexed are marked failed, with a reason people can act on.

        Only those of processes that are gone: another process on the database may be indexing its own.
        """
        interrupted = await self._files.fail_interrupted(
            "Indexing was interrupted because the bot restarted; upload the file again.", orphans_only=True
        )
        if interrupted:
            _log.warning("marked %d half-indexed files as failed", len(interrupted))

    async def describe_vector_search(self) -> None:
        """Log, once at start, how vectors are searched on PostgreSQL (nothing on SQLite, nor without embeddings)."""
        if not self.embedding_model:
            return
        pgvector = await self._reader.pgvector_available()
        if pgvector is None:
            return
        where = f"vectors are searched in this process (exact below {self._index_from} chunks, an HNSW index above)"
        if pgvector:
            _log.info("pgvector is available on the PostgreSQL server but not used; %s", where)
        else:
            _log.info("pgvector is not installed on the PostgreSQL server; %s", where)

    def start(self) -> None:
        """Embed chunks that have no embedding from the configured model (a new model re-embeds)."""
        if self.embedding_model and self._settings.embeddings_configured and self._reembed is None:
            self._reembed = asyncio.create_task(self._embed_missing(), name="re-embed")

    async def settle(self) -> None:
        """Wait until background re-embedding has finished (tests and benchmarks)."""
        if self._reembed is not None:
            await asyncio.shield(self._reembed)

    async def close(self) -> None:
        self._closing = True
        await self.cancel_indexing(list(self._indexing))
        if self._reembed is not None:
            self._reembed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reembed
        background = [*self._loads.values(), *self._refreshing.values()]
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await self._reader.close()
        await self._pool.close()

    async def vector_indexes_settled(self) -> None:
        """Wait until every index file this knowledge base is bringing up to date is written (tests, benchmarks)."""
        while tasks := [t for t in self._refreshing.values() if not t.done()]:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- files ----------------------------------------------------------------------------------

    async def add(self, channel: str, upload: Upload) -> AddResult:
        """Index a file for a channel. Bad input ends as a ``failed`` file with a reason, never an exception.

        The decision about repeats is made here, for every adapter and every process on the
        database: an upload with a ``platform_file_id`` the channel has already (another event for
        the same file, a redelivery, another process) is ``already_there`` with
        ``delivered_before``, and nothing is downloaded or indexed again. The same bytes twice are
        indexed once; a new file with an old file's name replaces it.
        """
        started = await self._begin(await self._store.scope(channel), upload, dedupe=True)
        if isinstance(started, AddResult):
            return started
        record, data = started
        return await self._index(record, data, upload, replace_same_name=True)

    async def add_in_background(self, channel: str, upload: Upload) -> FileRecord:
        """Register a file (``in_progress``) and index it in a task this knowledge base owns; returns at once.

        For vector stores: every file is kept as given (equal contents and equal names included),
        but a ``platform_file_id`` the key has already returns that file's row.
        The file's row tells when indexing is done; :meth:`cancel_indexing` and :meth:`close` stop it.
        """
        started = await self._begin(channel, upload, dedupe=False)
        if isinstance(started, AddResult):
            return started.file
        record, data = started
        task = asyncio.create_task(
            self._index(record, data, upload, replace_same_name=False), name=f"index {record.id}"
        )
        self._indexing[record.id] = task
        self._indexing_in[record.id] = channel
        task.add_done_callback(lambda done: self._indexed(record.id, done))
        return record

    async def indexed(self, keys: Sequence[str], within: float) -> None:
        """Wait, ``within`` seconds at the most, until this process has indexed the files it is indexing in
        these knowledge bases (an API run waits for its vector stores, as the old API held runs back)."""
        wanted = set(keys)
        tasks = [task for file_id, task in self._indexing.items() if self._indexing_in.get(file_id) in wanted]
        if tasks:
            await asyncio.wait(tasks, timeout=within)

    def _indexed(self, file_id: str, task: asyncio.Task[AddResult]) -> None:
        self._indexing.pop(file_id, None)
        self._indexing_in.pop(file_id, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            _log.error("indexing file %s failed", file_id, exc_info=exc)

    async def cancel_indexing(self, file_ids: Iterable[str]) -> list[str]:
        """Stop indexing these files (each ends ``failed``); returns the ids that were still being indexed."""
        tasks = {file_id: task for file_id in file_ids if (task := self._indexing.get(file_id)) and not task.done()}
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        return list(tasks)

    async def _begin(self, channel: str, upload: Upload, *, dedupe: bool) -> tuple[FileRecord, bytes] | AddResult:
        """The file's row, ready to index, and its bytes; or the final result when there is nothing to index.

        An upload with a platform file id is claimed first: its row goes in before the bytes are
        fetched, and the database keeps one row per (channel, platform file id), so whoever comes
        second finds it and does nothing. A claim that ends in nothing to index (the bytes could not
        be fetched, another file has them, an error) is dropped again, as if it had never been made.
        """
        declared = max(len(upload.data), upload.declared_size or 0)
        row: dict[str, Any] = {
            "channel": channel,
            "name": upload.name,
            "mime": upload.mime,
            "uploader_id": upload.uploader_id,
            "uploader_name": upload.uploader_name,
            "link": upload.link,
        }
        if upload.platform_file_id is None:
            return await self._register(upload, row, declared, None, dedupe=dedupe)
        claim, new = await self._files.claim(**row, size=declared, platform_file_id=upload.platform_file_id)
        if not new:
            _log.info("%s (%s) in %s was added before: not again", upload.name, upload.platform_file_id, channel)
            return AddResult(claim, delivered_before=True)
        try:
            return await self._register(upload, row, declared, claim, dedupe=dedupe)
        except BaseException:
            await asyncio.shield(self._files.release(claim.id))
            raise

    async def _register(
        self, upload: Upload, row: dict[str, Any], declared: int, claim: FileRecord | None, *, dedupe: bool
    ) -> tuple[FileRecord, bytes] | AddResult:
        """Fetch the bytes, refuse a file over the limit, look for equal bytes; then write the row or fill the claim."""
        limit = self.max_file_bytes
        data = upload.data
        if upload.download is not None and declared <= limit:
            try:
                data = await upload.download(limit)
            except DownloadFailed as exc:
                if claim is not None:
                    await self._files.release(claim.id)
                file_id = claim.id if claim else ""
                return AddResult(FileRecord(file_id, row["channel"], upload.name, declared, "", "failed", str(exc)))
        size = max(len(data), declared)
        if size > limit:
            error = (
                f"{upload.name} is {size / 1024 / 1024:.1f} MB, over the {self.max_file_mb:g} MB limit for files here. "
                "Upload a smaller file, or split it."
            )
            self._metrics.file_indexed(False)
            if claim is None:
                failed = await self._files.create(
                    **row, size=size, platform_file_id=None, sha256="", status="failed", error=error,
                    error_code="invalid_file",
                )  # fmt: skip
                return AddResult(failed)
            await self._files.fill(claim.id, sha256="", size=size)
            return AddResult(await self._files.fail(claim.id, error, code="invalid_file"))
        sha256 = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        if dedupe:
            same = await self._files.find_same_content(row["channel"], sha256)
            if same is not None:
                if claim is not None:  # as before claims: the second platform id is not kept
                    await self._files.release(claim.id)
                return AddResult(same, duplicate=True)
        if claim is None:
            return await self._files.create(**row, platform_file_id=None, sha256=sha256, size=size), data
        filled = await self._files.fill(claim.id, sha256=sha256, size=size)
        if filled is None:  # forgotten while it was being downloaded
            return self._removed(claim, upload)
        return filled, data

    async def _index(self, record: FileRecord, data: bytes, upload: Upload, *, replace_same_name: bool) -> AddResult:
        """Extract, chunk, embed and store a registered file; bad input ends as a failed file, never an exception."""
        result = await self._index_file(record, data, upload, replace_same_name=replace_same_name)
        self._metrics.file_indexed(result.file.status == "completed")
        return result

    async def _index_file(
        self, record: FileRecord, data: bytes, upload: Upload, *, replace_same_name: bool
    ) -> AddResult:
        channel, sha256 = record.channel, record.sha256
        try:
            prepared = await self._pool.prepare(
                upload.name,
                data,
                upload.mime,
                size=self._settings.chunk_tokens,
                overlap=self._settings.chunk_overlap,
                exact_tokens=self._tokens.exact,
            )
            if prepared.error is not None:
                _log.info("file %s in %s refused: %s", upload.name, channel, prepared.error)
                failed = await self._files.fail(record.id, prepared.error, prepared.kind, code=prepared.error_code)
                return AddResult(failed)
            texts = [c.text for c in prepared.chunks]
            vectors, dim = await self._embed(texts)
            await self._files.save_content(sha256, data)
            completed = await self._files.complete(
                record.id,
                kind=prepared.kind or "text",
                pages=prepared.pages,
                chunks=[(c.location, c.text, c.tokens) for c in prepared.chunks],
                vectors=vectors,
                model=self.embedding_model if vectors is not None else None,
                dim=dim,
                replace_same_name=replace_same_name,
            )
            if completed is None:  # forgotten while it was being read
                return self._removed(record, upload)
            done, replaced = completed
        except asyncio.CancelledError:
            await asyncio.shield(self._files.fail(record.id, f"Indexing {upload.name} was interrupted."))
            raise
        except Exception:
            _log.exception("indexing %s in %s failed", upload.name, channel)
            error = f"{upload.name} could not be indexed because of an error on the bot's side; try again later."
            return AddResult(await self._files.fail(record.id, error))
        self._changed(channel)
        _log.info("indexed %s in %s: %d chunks", upload.name, channel, done.chunk_count)
        return AddResult(done, replaced=replaced)

    @staticmethod
    def _removed(record: FileRecord, upload: Upload) -> AddResult:
        gone = FileRecord(record.id, record.channel, upload.name, record.size, record.sha256, "failed")
        return AddResult(gone, message_override=f"{upload.name} was removed while it was being indexed.")

    async def files(self, channel: str) -> list[FileRecord]:
        return await self._files.in_channel(await self._store.scope(channel))

    async def contents(self, channel: str) -> list[tuple[str, bytes]]:
        """The channel's indexed files as (name, bytes): what the code interpreter finds in its working directory."""
        return await self._files.contents(await self._store.scope(channel))

    async def forget(self, channel: str, name: str) -> list[FileRecord]:
        key = await self._store.scope(channel)
        removed = await self._files.remove(key, name=name)
        self._changed(key)
        return removed

    async def forget_all(self, channel: str) -> list[FileRecord]:
        key = await self._store.scope(channel)
        removed = await self._files.remove(key)
        self._changed(key)
        return removed

    async def forget_platform_file(self, channel: str, platform_file_id: str) -> list[FileRecord]:
        key = await self._store.scope(channel)
        removed = await self._files.remove(key, platform_file_id=platform_file_id)
        self._changed(key)
        return removed

    async def forget_older_than(self, cutoff: float) -> list[FileRecord]:
        """Remove chat channels' files added before ``cutoff`` (retention); vector stores' files stay."""
        removed = await self._files.remove_created_before(cutoff)
        for channel in {f.channel for f in removed}:
            self._changed(channel)
        return removed

    async def searchable(self, keys: str | Sequence[str]) -> bool:
        """Whether the knowledge base (or any of several) has a file to search."""
        return await self._files.searchable(keys)

    # -- search -----------------------------------------------------------------------------------

    async def chunk_texts(self, file_id: str) -> list[str]:
        """A file's text as it was indexed, chunk by chunk."""
        return await self._files.chunk_texts(file_id)

    async def search(self, channel: str, query: str, k: int = 5) -> list[ChunkHit]:
        """The channel's ``k`` best chunks for ``query``: BM25, fused with embeddings when there are any."""
        return await self.search_many([await self._store.scope(channel)], query, k)

    async def search_many(self, keys: Sequence[str], query: str, k: int = 5) -> list[ChunkHit]:
        """The ``k`` best chunks for ``query`` across several knowledge bases, ranked together.

        One BM25 ranking over all of them (the full-text index is shared, so scores compare) and
        one cosine ranking merged from each one's embeddings, fused as for a single channel.
        """
        keys = list(dict.fromkeys(keys))
        if not keys:
            return []
        if self.embedding_model:  # the keyword search and the query's embedding at once
            matches, semantic = await asyncio.gather(
                self._files.keyword_search(keys, query, CANDIDATES), self._semantic(keys, query)
            )
        else:
            matches, semantic = await self._files.keyword_search(keys, query, CANDIDATES), []
        keyword = [chunk_id for chunk_id, _ in matches]
        rankings = [keyword, semantic] if semantic else [keyword]
        # Scores in (0, 1]: the fused reciprocal ranks over what first place in every ranking would score.
        best = len(rankings) / (RRF_K + 1)
        fused = [(chunk_id, score / best) for chunk_id, score in reciprocal_rank_fusion(rankings)[:k]]
        hits = await self._files.hits([chunk_id for chunk_id, _ in fused])
        return [
            ChunkHit(h.chunk_id, h.file_id, h.file_name, h.location, h.text, h.link, score)
            for chunk_id, score in fused
            if (h := hits.get(chunk_id)) is not None
        ]

    async def _semantic(self, keys: Sequence[str], query: str) -> list[int]:
        model = self.embedding_model
        assert model is not None
        try:
            [vector] = await self._models.embed(model, [query])
        except Exception as exc:
            _log.warning("embedding a query failed (%s: %s); keyword search only", type(exc).__name__, exc)
            return []
        rankings = await asyncio.gather(*(self._top_scored(key, model, vector, CANDIDATES) for key in keys))
        scored = sorted((pair for ranking in rankings for pair in ranking), key=lambda pair: (-pair[0], pair[1]))
        return [chunk_id for _, chunk_id in scored[:CANDIDATES]]

    async def nearest(self, key: str, vector: Sequence[float], k: int = CANDIDATES) -> list[tuple[float, int]]:
        """(cosine, chunk id) of the knowledge base's ``k`` chunks nearest to ``vector``: the semantic ranking
        alone, as a search uses it (from the channel's matrix or its index file)."""
        model = self.embedding_model
        return await self._top_scored(key, model, vector, k) if model else []

    async def _top_scored(self, key: str, model: str, vector: Sequence[float], k: int) -> list[tuple[float, int]]:
        """(cosine, chunk id) of the knowledge base's ``k`` chunks nearest to ``vector``, best first."""
        found = await self._searchable(key, model)
        if isinstance(found, VectorMatrix):
            return await asyncio.to_thread(found.top_scored, vector, k)
        if isinstance(found, ChannelIndex):
            if len(vector) != found.dim:
                return []
            candidates = await asyncio.to_thread(found.candidates, np.asarray(vector, dtype=np.float32), k * OVERFETCH)
            ids, rows = await self._reader.by_ids(key, model, candidates.tolist())  # only live chunks come back
            return await asyncio.to_thread(lambda: VectorMatrix.from_array(ids, rows).top_scored(vector, k))
        return await self._streamed(key, model, vector, k)

    async def _streamed(self, key: str, model: str, vector: Sequence[float], k: int) -> list[tuple[float, int]]:
        """The ``k`` best of a channel too large to keep in memory, scored batch by batch as they are read."""
        best: list[tuple[float, int]] = []

        def each(ids: np.ndarray, rows: np.ndarray) -> None:
            best.extend(VectorMatrix.from_array(ids, rows.copy()).top_scored(vector, k))
            best.sort(key=lambda pair: (-pair[0], pair[1]))
            del best[k:]

        await self._reader.scan(key, model, each)
        return best

    async def _searchable(self, key: str, model: str) -> Searchable:
        """How to search ``key`` now: from the cache, or loaded once however many searches wait for it."""
        version = self._versions.get(key, 0)
        cached = self._vectors.get(key, version)
        if cached is not None:
            return cached
        task = self._loads.get((key, version))
        if task is None:
            task = asyncio.create_task(self._load(key, model, version), name=f"load vectors {key}")
            self._loads[(key, version)] = task
            task.add_done_callback(lambda _: self._loads.pop((key, version), None))
        return await asyncio.shield(task)  # one searcher giving up does not stop the others' load

    async def _load(self, key: str, model: str, version: int) -> Searchable:
        count, dim = await self._reader.shape(key, model)
        if count >= self._index_from:
            path = vector_index.index_path(self._index_folder, key, model)
            index = await asyncio.to_thread(ChannelIndex.open, path)
            self._refresh_index(key)  # a file written before changes this process has not seen, or none yet
            if index is not None and index.dim == dim:
                self._vectors.offer(key, version, index, index.nbytes)
                return index
        if count * (dim * 4 + 8) > self._vectors.budget:
            _log.info("the vectors of %s (%d) are more than the cache holds: read per search", key, count)
            return None
        ids, rows = await self._reader.load(key, model)
        matrix = await asyncio.to_thread(VectorMatrix.from_array, ids, rows)
        self._vectors.offer(key, version, matrix, matrix.nbytes)
        return matrix

    def _changed(self, channel: str) -> None:
        self._invalidate(channel)
        self._refresh_index(channel)

    def _invalidate(self, channel: str) -> None:
        self._versions[channel] = self._versions.get(channel, 0) + 1
        self._vectors.drop(channel)

    # -- index files ------------------------------------------------------------------------------

    def _refresh_index(self, key: str) -> None:
        """Bring ``key``'s index file up to date in a task of its own (one at a time; a change meanwhile reruns it)."""
        model = self.embedding_model
        if not model or self._closing:
            return
        running = self._refreshing.get(key)
        if running is not None and not running.done():
            self._stale.add(key)
            return
        task = asyncio.create_task(self._update_index(key, model), name=f"vector index {key}")
        self._refreshing[key] = task
        task.add_done_callback(functools.partial(self._index_updated, key))

    def _index_updated(self, key: str, task: asyncio.Task[None]) -> None:
        if self._refreshing.get(key) is task:
            del self._refreshing[key]
        if not task.cancelled() and (exc := task.exception()) is not None:
            _log.error("updating the vector index of %s failed", key, exc_info=exc)
        if key in self._stale:
            self._stale.discard(key)
            self._refresh_index(key)

    async def _update_index(self, key: str, model: str) -> None:
        """Make the file hold exactly the channel's live embeddings: new ones added, removed ones dropped.

        CPU and disk work in worker threads (usearch adds on :data:`vector_index.BUILD_THREADS`), reads
        on the reader's connections: neither the event loop nor the store's thread waits for it.
        """
        count, dim = await self._reader.shape(key, model)
        path = vector_index.index_path(self._index_folder, key, model)
        if count < self._index_from:
            if await asyncio.to_thread(path.exists):
                await asyncio.to_thread(vector_index.delete, path)
                self._invalidate(key)
            return
        wanted = await self._reader.ids(key, model, dim)
        view = await asyncio.to_thread(ChannelIndex.open, path)
        if view is not None and view.dim == dim:
            to_add, to_remove = await asyncio.to_thread(vector_index.diff, view.index, wanted)
            if not len(to_add) and not len(to_remove):
                return
        del view
        index = await asyncio.to_thread(vector_index.open_for_update, path, dim)
        to_add, to_remove = await asyncio.to_thread(vector_index.diff, index, wanted)
        _log.info("vector index of %s: adding %d, removing %d", key, len(to_add), len(to_remove))
        for start in range(0, len(to_add), INDEX_BATCH):
            ids, rows = await self._reader.by_ids(key, model, to_add[start : start + INDEX_BATCH].tolist())
            await asyncio.to_thread(vector_index.add, index, ids, rows)
        await asyncio.to_thread(vector_index.apply, index, to_remove, path)
        self._invalidate(key)  # the next search opens the new file

    # -- embeddings -------------------------------------------------------------------------------

    async def _embed(self, texts: Sequence[str]) -> tuple[list[bytes] | None, int]:
        """float32 blobs for ``texts``; (None, 0) when embeddings are off or fail (keyword search still works)."""
        model = self.embedding_model
        if not model or not texts or not self._settings.embeddings_configured:
            return None, 0
        blobs: list[bytes] = []
        dim = 0
        try:
            for start in range(0, len(texts), EMBED_BATCH):
                vectors = await self._models.embed(model, list(texts[start : start + EMBED_BATCH]))
                dim = len(vectors[0]) if vectors else dim
                blobs.extend(to_blob(v) for v in vectors)
        except Exception as exc:
            _log.warning("embedding failed (%s: %s); the file is searchable by keywords only", type(exc).__name__, exc)
            return None, 0
        return blobs, dim

    async def _embed_missing(self) -> None:
        model = self.embedding_model
        assert model is not None
        try:
            while rows := await self._files.missing_embeddings(model, EMBED_BATCH):
                vectors, dim = await self._embed([text for _, _, text in rows])
                if vectors is None:
                    _log.warning("re-embedding paused: the embeddings endpoint failed; it resumes at the next start")
                    return
                await self._files.add_embeddings(
                    model, dim, [(cid, channel, blob) for (cid, channel, _), blob in zip(rows, vectors, strict=True)]
                )
                for channel in {channel for _, channel, _ in rows}:
                    self._changed(channel)
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("re-embedding stopped")
