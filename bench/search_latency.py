"""Search latency of ``KnowledgeBase.search`` at 10k and 100k chunks in one channel, keyword-only and hybrid.

    .venv/bin/python -m bench.search_latency [--sizes 10000,100000] [--queries 150] [--cold 5]

One service (``Threadline.open``) with ``THREADLINE_EMBEDDING_MODEL`` set; its query embeddings come
from :class:`FakeOpenAI` with 384 dimensions in a child process on 127.0.0.1. The channel's chunks
are inserted straight through the store layer (``FileStore.create`` + ``FileStore.complete``, 1000
chunks a file, as an add would store them, FTS index and vectors included): English-like text of
``--words`` words a chunk on average (385 words, about 3200 characters: an 800-token chunk by the
project's estimate of 4 characters a token) from :class:`bench.ingest.Corpus`,
and for each the same 384-dimensional bag-of-words float32 vector the fake server would return for it.
Another channel holds ``--other`` chunks too (10000), as a real database would; FTS5 has one index
for every channel, so its searches are measured as well (``keyword, in the other channel``).

Queries come in two kinds, half each: *questions* as a person types them (function words such as
"how do i the for" and 2-4 content words) and *keywords* (2-3 content words). Measured, per query,
in a random order each time, all in the same run:

* ``keyword``: ``KnowledgeBase.search`` of a knowledge base without an embedding model (BM25 only);
* ``hybrid``: ``KnowledgeBase.search`` of one with the service's settings (BM25 + vectors, reciprocal
  rank fusion), warm: the channel's matrix is already cached. Both are built afresh for each size
  on the service's store (a cached matrix must not outlive chunks stored behind its back);
* the parts of a hybrid search, each alone: the query embedding's round trip to the server, the
  FTS5 query (``FileStore.keyword_search``, 40 candidates; and the same over the index as it was
  before m025_multilingual_search, ``porter unicode61``, built beside it:
  bench/fulltext_variants.py), ``VectorMatrix.top`` on the cached matrix;
* ``numpy``: the bare brute force over the same matrix, ``m @ q`` then ``argpartition`` for the top 40.

Cold: the first hybrid search of a fresh ``KnowledgeBase`` (same store), which loads the channel's
vectors from SQLite into the cache, ``--cold`` times. Reported: p50/p95/p99 of each, the ratio
to the bare numpy time, and the goal: hybrid p95 < 20 ms at 100k chunks.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import bench_settings, forbid_non_loopback, machine, peak_rss_kib, percentile, rss_kib, write_result
from bench.fulltext_variants import VARIANTS, build
from bench.ingest import EMBEDDING_DIM, EMBEDDING_MODEL, FUNCTION_WORDS, Corpus, core_version, embedding_server
from core.knowledge.base import CANDIDATES, KnowledgeBase
from core.knowledge.search import VectorMatrix
from core.model_client import ModelClient
from core.service import Threadline
from core.store.files import FileStore
from core.tokens import TokenCounter
from tests.fakes.openai_server import hash_word

GOAL_P95_MS = 20.0
TODAY = VARIANTS[0]  # the full-text index before m025_multilingual_search, built beside the store's own
CHANNEL = "slack:T1:DOCS"
OTHER_CHANNEL = "slack:T1:OTHER"
CHUNKS_PER_FILE = 1000
QUESTION_STARTS = (
    "how do i",
    "what is the",
    "where can i find the",
    "why does the",
    "can we use the",
    "what happens to the",
    "who owns the",
    "when should we",
)


class ChunkMaker:
    """Synthetic chunks: text from :class:`Corpus` and the bag-of-words vector FakeOpenAI would give it."""

    def __init__(self, corpus: Corpus, words: int, dim: int) -> None:
        self.corpus = corpus
        self.words = words
        self.dim = dim
        self.bucket = np.array([hash_word(str(w)) % dim for w in corpus.words], dtype=np.int64)

    def make(self, n: int) -> tuple[list[tuple[str, str, int]], list[bytes]]:
        chunks: list[tuple[str, str, int]] = []
        vectors: list[bytes] = []
        lengths = self.corpus.rng.integers(self.words // 2, self.words * 3 // 2, n)
        for i in range(n):
            idx = self.corpus.indices(int(lengths[i]))
            text = " ".join(self.corpus.words[idx])
            counts = np.bincount(self.bucket[idx], minlength=self.dim).astype(np.float32)
            counts /= np.linalg.norm(counts) or 1.0
            chunks.append((f"section {i % 50 + 1}", text, (len(text) + 3) // 4))
            vectors.append(counts.astype("<f4").tobytes())
        return chunks, vectors


async def fill(files: FileStore, maker: ChunkMaker, channel: str, count: int, start_index: int) -> float:
    """Store ``count`` chunks in files of CHUNKS_PER_FILE; returns the seconds spent in the store calls."""
    spent = 0.0
    done = 0
    index = start_index
    while done < count:
        n = min(CHUNKS_PER_FILE, count - done)
        chunks, vectors = await asyncio.to_thread(maker.make, n)
        start = time.perf_counter()
        record = await files.create(
            channel=channel,
            name=f"doc-{index:04d}.txt",
            size=sum(len(t) for _, t, _ in chunks),
            sha256=f"{channel}-{index}",
            mime="text/plain",
            uploader_id=None,
            uploader_name=None,
            platform_file_id=None,
            link=None,
        )
        await files.complete(
            record.id, kind="text", pages=None, chunks=chunks, vectors=vectors, model=EMBEDDING_MODEL, dim=maker.dim
        )
        spent += time.perf_counter() - start
        done += n
        index += 1
    return spent


def make_queries(corpus: Corpus, count: int, rng: random.Random) -> list[tuple[str, str]]:
    """(kind, query): half questions as typed, half bare keywords; content words from the 5000 most frequent."""
    out: list[tuple[str, str]] = []
    for i in range(count):
        if i % 2 == 0:
            words = corpus.content_words(rng.randint(2, 4), top=5000)
            filler = rng.sample(FUNCTION_WORDS[:40], 2)
            text = f"{rng.choice(QUESTION_STARTS)} {words[0]} {filler[0]} {' '.join(words[1:])} {filler[1]}?"
            out.append(("question", text))
        else:
            out.append(("keywords", " ".join(corpus.content_words(rng.randint(2, 3), top=5000))))
    return out


async def timed(fn: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = await fn()
    return (time.perf_counter() - start) * 1000, value


def stats(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


async def measure(
    service: Threadline,
    models: ModelClient,
    queries: list[tuple[str, str]],
    cold: int,
    rng: random.Random,
    with_other: bool,
) -> dict[str, Any]:
    """One size: cold hybrid searches, then every query through every side in a random order.

    Every knowledge base here is built fresh on the service's store (its cached matrix must not
    outlive chunks stored behind its back): hybrid with the service's settings, keyword without
    an embedding model.
    """
    files = FileStore(service.store)
    settings = service.settings

    def fresh() -> KnowledgeBase:
        return KnowledgeBase(settings, service.store, models, TokenCounter())

    hybrid = fresh()
    keyword_kb = KnowledgeBase(replace(settings, embedding_model=None), service.store, models, TokenCounter())
    try:
        return await _measure(hybrid, keyword_kb, fresh, files, models, queries, cold, rng, with_other)
    finally:
        await hybrid.close()
        await keyword_kb.close()


async def _measure(
    hybrid: KnowledgeBase,
    keyword_kb: KnowledgeBase,
    fresh: Callable[[], KnowledgeBase],
    files: FileStore,
    models: ModelClient,
    queries: list[tuple[str, str]],
    cold: int,
    rng: random.Random,
    with_other: bool,
) -> dict[str, Any]:
    model = EMBEDDING_MODEL

    cold_ms: list[float] = []
    for i in range(cold):
        kb = fresh()
        ms, _ = await timed(functools.partial(kb.search, CHANNEL, queries[i % len(queries)][1], 5))
        cold_ms.append(ms)
        await kb.close()
        gc.collect()
    # The warm side's cache: one search fills it (untimed).
    await hybrid.search(CHANNEL, queries[0][1], 5)
    load_ms, (ids, blobs, dim) = await timed(lambda: files.vectors(CHANNEL, model))
    start = time.perf_counter()
    matrix = VectorMatrix.from_blobs(ids, blobs, dim)
    from_blobs_ms = (time.perf_counter() - start) * 1000
    del blobs
    raw = np.ascontiguousarray(matrix.matrix)

    query_vectors: dict[str, list[float]] = {}
    for _, query in queries:
        [query_vectors[query]] = await models.embed(model, [query])

    async def numpy_top(query: str) -> list[int]:
        q = np.asarray(query_vectors[query], dtype=np.float32)
        scores = raw @ q
        best = np.argpartition(-scores, CANDIDATES - 1)[:CANDIDATES]
        return [int(i) for i in best[np.argsort(-scores[best])]]

    async def matrix_top(query: str) -> list[int]:
        return matrix.top(query_vectors[query], CANDIDATES)

    sides: dict[str, Callable[[str], Awaitable[Any]]] = {
        "keyword": lambda q: keyword_kb.search(CHANNEL, q, 5),
        "hybrid": lambda q: hybrid.search(CHANNEL, q, 5),
        "part: embed query (HTTP round trip)": lambda q: models.embed(model, [q]),
        "part: FTS5 keyword_search (40)": lambda q: files.keyword_search(CHANNEL, q, CANDIDATES),
        "part: FTS5 keyword_search (40), today's index": lambda q: files.keyword_search(
            CHANNEL, q, CANDIDATES, index=TODAY.index
        ),
        "part: VectorMatrix.top (40)": matrix_top,
        "numpy m @ q + argpartition (40)": numpy_top,
    }
    if with_other:
        sides["keyword, in the other channel"] = lambda q: keyword_kb.search(OTHER_CHANNEL, q, 5)
    samples: dict[str, dict[str, list[float]]] = {name: {"question": [], "keywords": []} for name in sides}
    hits_seen = {"keyword": 0, "hybrid": 0}
    for kind, query in queries:
        names = list(sides)
        rng.shuffle(names)
        for name in names:
            ms, value = await timed(functools.partial(sides[name], query))
            samples[name][kind].append(ms)
            if name in hits_seen and value:
                hits_seen[name] += 1
    # The same top 40 from the bare numpy and from VectorMatrix.top (a check that both do the same work).
    same = 0
    for _, q in queries[:20]:
        same += set(await matrix_top(q)) == {int(matrix.ids[i]) for i in await numpy_top(q)}
    out: dict[str, Any] = {
        "cold_hybrid_ms": stats(cold_ms),
        "cold_samples_ms": cold_ms,
        "vectors_load_ms": load_ms,
        "vectors_from_blobs_ms": from_blobs_ms,
        "matrix_mb": matrix.nbytes / 1e6,
        "queries_with_hits": hits_seen,
        "numpy_check_same_top40_of_20": same,
        "sides": {},
    }
    for name, by_kind in samples.items():
        every = by_kind["question"] + by_kind["keywords"]
        out["sides"][name] = {"all": stats(every), **{k: stats(v) for k, v in by_kind.items()}}
    out["samples_ms"] = samples
    base = out["sides"]["numpy m @ q + argpartition (40)"]["all"]
    for side in out["sides"].values():
        side["p50_over_numpy"] = side["all"]["p50"] / base["p50"]
    return out


async def main_async(args: argparse.Namespace) -> int:
    forbid_non_loopback()
    rng = random.Random(args.seed)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    result: dict[str, Any] = {
        "benchmark": "search_latency",
        "command": ".venv/bin/python -m bench.search_latency " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "core": core_version(),
        "config": {
            "sizes": sizes,
            "queries": args.queries,
            "cold": args.cold,
            "words_per_chunk": args.words,
            "other_channel_chunks": args.other,
            "dim": EMBEDDING_DIM,
            "candidates_per_ranking": CANDIDATES,
            "k": 5,
            "seed": args.seed,
            "embedding": f"FakeOpenAI bag-of-words, dim {EMBEDDING_DIM}, child process on 127.0.0.1",
        },
        "numpy": {
            "version": np.__version__,
            "blas_env": {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP_", "MKL_"))},
        },
        "sizes": {},
    }
    corpus = Corpus(args.seed)
    queries = make_queries(Corpus(args.seed, stream=args.seed + 1000), args.queries, rng)  # the chunks' words
    maker = ChunkMaker(corpus, args.words, EMBEDDING_DIM)
    with tempfile.TemporaryDirectory(prefix="threadline-bench-") as tmp:
        async with embedding_server(EMBEDDING_DIM) as server:
            settings = bench_settings(server.base_url, Path(tmp) / "search.db", embedding_model=EMBEDDING_MODEL)
            service = await Threadline.open(settings)
            models = ModelClient(settings)
            files = FileStore(service.store)
            try:
                if args.other:
                    await fill(files, maker, OTHER_CHANNEL, args.other, 0)
                stored = 0
                for size in sizes:
                    print(f"storing chunks up to {size} ...", flush=True)
                    fill_s = await fill(files, maker, CHANNEL, size - stored, stored // CHUNKS_PER_FILE)
                    stored = size
                    await service.store.call(lambda db: build(db, CHANNEL, [TODAY]))
                    await service.store.call(lambda db: db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
                    db_mb = await asyncio.to_thread(lambda: Path(settings.db_path).stat().st_size / 1e6)
                    print(f"measuring at {size} chunks ({db_mb:.0f} MB database) ...", flush=True)
                    data = await measure(service, models, queries, args.cold, rng, args.other > 0)
                    data["store_fill_s"] = fill_s
                    data["database_mb"] = db_mb
                    data["rss_kib"] = rss_kib()
                    result["sizes"][str(size)] = data
                    report_size(size, data)
            finally:
                await models.close()
                await service.close()
    result["peak_rss_kib"] = peak_rss_kib()
    top = result["sizes"][str(sizes[-1])]["sides"]["hybrid"]["all"]["p95"]
    result["goal"] = {"hybrid_p95_ms_at_largest": top, "goal_ms": GOAL_P95_MS, "met": top < GOAL_P95_MS}
    result["loadavg_at_end"] = os.getloadavg()
    path = write_result("search_latency", result)
    print(f"goal: hybrid p95 < {GOAL_P95_MS:g} ms at {sizes[-1]} chunks: {'met' if top < GOAL_P95_MS else 'NOT met'}")
    print(f"results: {path}")
    return 0


def report_size(size: int, data: dict[str, Any]) -> None:
    print(f"{size} chunks in the channel: ms per search ({data['sides']['hybrid']['all']['n']} queries)")
    print(
        f"  {'':48}{'p50':>8}{'p95':>8}{'p99':>8}   {'questions p50/p95':>17}   {'keywords p50/p95':>16}"
        f"{'p50/numpy':>11}"
    )
    for name, side in data["sides"].items():
        a, q, k = side["all"], side["question"], side["keywords"]
        print(
            f"  {name:48}{a['p50']:8.2f}{a['p95']:8.2f}{a['p99']:8.2f}   {q['p50']:8.2f}/{q['p95']:8.2f}"
            f"   {k['p50']:7.2f}/{k['p95']:8.2f}{side['p50_over_numpy']:11.2f}"
        )
    hits = data["queries_with_hits"]
    print(f"  queries that found something: keyword {hits['keyword']}, hybrid {hits['hybrid']} of {a['n']}")
    c = data["cold_hybrid_ms"]
    print(
        f"  cold hybrid (first search, loads {data['matrix_mb']:.0f} MB of vectors): median "
        f"{statistics.median(data['cold_samples_ms']):.1f} ms, max {c['max']:.1f} ms ({c['n']} fresh knowledge bases); "
        f"of which FileStore.vectors {data['vectors_load_ms']:.1f} ms and VectorMatrix.from_blobs "
        f"{data['vectors_from_blobs_ms']:.1f} ms (each alone)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Search latency at 10k and 100k chunks.")
    parser.add_argument("--sizes", default="10000,100000", help="chunks in the channel, measured in turn")
    parser.add_argument("--queries", type=int, default=150, help="queries per size, half questions (150)")
    parser.add_argument("--cold", type=int, default=5, help="cold searches per size (5)")
    parser.add_argument("--words", type=int, default=385, help="mean words per chunk (385: ~3200 chars, 800 tokens)")
    parser.add_argument("--other", type=int, default=10_000, help="chunks in another channel (10000)")
    parser.add_argument("--seed", type=int, default=1)
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
