"""A channel's vectors: read off the store's thread, one load shared, and an index file for large channels."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.events import RunCompleted
from core.knowledge import vector_index
from core.knowledge.base import KnowledgeBase
from core.knowledge.vector_index import INDEX_FROM, ChannelIndex, index_path
from core.model_client import ModelClient
from core.service import Threadline
from core.store.files import FileStore
from core.store.vectors import VectorReader
from core.tokens import TokenCounter
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers import StoreDatabase, ask

MODEL = "fake-embedding"
BIG = "slack:T1:BIG"
OTHER = "slack:T1:OTHER"
DIM = 8  # FakeOpenAI's embeddings


@pytest.fixture
async def service(open_service) -> Threadline:
    return await open_service(assistants_file=None, embedding_model=MODEL)


async def store_file(service: Threadline, channel: str, name: str, vectors: np.ndarray) -> list[int]:
    """A completed file with one chunk per row of ``vectors`` (float32 blobs, as an add stores them); its chunk ids."""
    files = FileStore(service.store)
    record = await files.create(
        channel=channel, name=name, size=1, sha256=name, mime="text/plain", uploader_id=None,
        uploader_name=None, platform_file_id=None, link=None,
    )  # fmt: skip
    chunks = [(f"part {i}", f"chunk {i} of {name}", 5) for i in range(len(vectors))]
    blobs = [v.astype("<f4").tobytes() for v in vectors]
    await files.complete(
        record.id, kind="text", pages=None, chunks=chunks, vectors=blobs, model=MODEL, dim=vectors.shape[1]
    )
    rows = await service.store.call(
        lambda db: db.execute("SELECT id FROM chunks WHERE file_id = ? ORDER BY id", [record.id]).fetchall()
    )
    return [int(r[0]) for r in rows]


def knowledge(service: Threadline, **kwargs) -> KnowledgeBase:
    return KnowledgeBase(service.settings, service.store, ModelClient(service.settings), TokenCounter(), **kwargs)


async def test_loading_a_large_channel_holds_up_no_other_channel(service, fake_model: FakeOpenAI) -> None:
    rng = np.random.default_rng(1)
    await store_file(service, BIG, "big.txt", rng.standard_normal((3000, DIM)).astype(np.float32))
    entered, release = threading.Event(), threading.Event()
    started = 0

    def hold(done: int) -> None:  # in the reader's thread: the load stops at its first batch until released
        nonlocal started
        if done == 0:
            started += 1
            entered.set()
            assert release.wait(30)

    reader = VectorReader.for_store(service.store, before_batch=hold)
    kb = knowledge(service, vectors=reader)
    try:
        first = asyncio.create_task(kb.search(BIG, "chunk"))
        assert await asyncio.to_thread(entered.wait, 30)
        # The big channel's vectors are being read; another channel's store calls and a whole turn go on.
        assert await asyncio.wait_for(service.knowledge.files(OTHER), 10) == []
        events = await asyncio.wait_for(ask(service, "quick question", channel=OTHER), 30)
        assert isinstance(events[-1], RunCompleted)
        # A second search of the same cold channel waits for the same load rather than starting its own.
        asked = len(fake_model.embedding_requests)
        second = asyncio.create_task(kb.search(BIG, "chunk of"))
        while len(fake_model.embedding_requests) == asked:
            await asyncio.sleep(0.01)
        done, _ = await asyncio.wait({second}, timeout=0.5)
        assert not done
        assert not first.done()
        release.set()
        assert await first
        assert await second
        assert reader.loads == 1
        assert started == 1
    finally:
        release.set()
        await kb.close()


@pytest.mark.parametrize("walk", [False, True], ids=["scanned", "graph-walk"])
async def test_a_large_channel_is_searched_from_its_index_file_and_never_returns_removed_chunks(
    service, monkeypatch: pytest.MonkeyPatch, walk: bool
) -> None:
    """``walk``: the index is searched by walking its HNSW graph, as past SCAN_UP_TO (50,000) chunks, not
    scanned whole: the same results, since candidates are re-scored exactly."""
    if walk:
        monkeypatch.setattr(vector_index, "SCAN_UP_TO", 0)
    rng = np.random.default_rng(2)
    vectors = {name: rng.standard_normal((40, DIM)).astype(np.float32) for name in ("a.txt", "b.txt", "c.txt")}
    ids = {name: await store_file(service, BIG, name, v) for name, v in vectors.items()}
    indexed = knowledge(service, index_from=60)
    exact = knowledge(service, index_from=10**9)
    path = index_path(Path(service.settings.db_path).parent / "vectors", BIG, MODEL)
    queries = rng.standard_normal((20, DIM)).astype(np.float32)
    try:
        await indexed.nearest(BIG, queries[0].tolist())  # the first search finds no file and has one built
        await indexed.vector_indexes_settled()
        view = await asyncio.to_thread(ChannelIndex.open, path)
        assert view is not None
        assert sorted(np.asarray(view.index.keys).tolist()) == sorted(i for v in ids.values() for i in v)
        for q in queries:
            from_index = await indexed.nearest(BIG, q.tolist(), 10)
            assert [i for _, i in from_index] == [i for _, i in await exact.nearest(BIG, q.tolist(), 10)]
            assert from_index[0][0] == pytest.approx(float(np.max(_cosines(vectors, q))), abs=1e-5)  # exact scores

        await indexed.forget(BIG, "a.txt")
        gone = set(ids["a.txt"])
        for q in queries:  # at once, before the file is brought up to date
            assert not gone & {i for _, i in await indexed.nearest(BIG, q.tolist(), 40)}
        await indexed.vector_indexes_settled()
        view = await asyncio.to_thread(ChannelIndex.open, path)
        assert view is not None
        assert not gone & set(np.asarray(view.index.keys).tolist())

        added = await store_file(service, BIG, "d.txt", rng.standard_normal((10, DIM)).astype(np.float32))
        indexed._changed(BIG)  # what an add through the knowledge base does once the file is stored
        await indexed.vector_indexes_settled()
        view = await asyncio.to_thread(ChannelIndex.open, path)
        assert view is not None
        assert set(added) <= set(np.asarray(view.index.keys).tolist())
        assert len(view) == 90

        await indexed.forget(BIG, "b.txt")  # 50 chunks left: below the size for an index
        await indexed.vector_indexes_settled()
        assert not await asyncio.to_thread(path.exists)
        assert len(await indexed.nearest(BIG, queries[0].tolist(), 100)) == 50
    finally:
        await indexed.close()
        await exact.close()


async def test_a_channel_larger_than_the_cache_is_searched_without_being_kept(service) -> None:
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((500, DIM)).astype(np.float32)
    await store_file(service, BIG, "big.txt", rows)
    small = KnowledgeBase(
        replace(service.settings, vector_cache_mb=0.01), service.store, ModelClient(service.settings), TokenCounter()
    )  # 10 kB: less than 500 rows of 8 floats and an id
    exact = knowledge(service)
    try:
        q = rng.standard_normal(DIM).astype(np.float32).tolist()
        streamed, kept = await small.nearest(BIG, q, 5), await exact.nearest(BIG, q, 5)
        assert [i for _, i in streamed] == [i for _, i in kept]
        assert [s for s, _ in streamed] == pytest.approx([s for s, _ in kept])
        assert small._vectors.nbytes == 0
    finally:
        await small.close()
        await exact.close()


def _cosines(vectors: dict[str, np.ndarray], q: np.ndarray) -> np.ndarray:
    rows = np.vstack(list(vectors.values()))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))


async def test_the_start_says_in_one_line_how_vectors_are_searched_on_postgresql(
    open_service, database: StoreDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """pgvector is not in Debian 12's archive, so the test server has none: vectors are compared in this process."""
    with caplog.at_level(logging.INFO, logger="core.knowledge.base"):
        await open_service(assistants_file=None, embedding_model=MODEL)
    lines = [r.getMessage() for r in caplog.records if "pgvector" in r.getMessage()]
    if not database.is_postgres:
        assert lines == []
        return
    assert lines == [
        "pgvector is not installed on the PostgreSQL server; vectors are searched in this process"
        f" (exact below {INDEX_FROM} chunks, an HNSW index above)"
    ]
