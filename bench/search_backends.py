"""Keyword and vector search on SQLite and on PostgreSQL, side by side in one run, at 100k chunks in one channel.

    .venv/bin/python -m bench.search_backends [--chunks 100000] [--queries 100] [--cold 3] [--cache-mb 512]
        [--keep DIR]

``--keep DIR`` keeps both stores (the SQLite file, PostgreSQL's data directory, the index files) in DIR,
and a later run with the same ``--chunks``, ``--words`` and ``--seed`` searches them again instead of
storing everything anew (at a million chunks the storing and the index files take about an hour): for
measuring a change to how a search runs, not to what is stored. Kept PostgreSQL chunks without rum's
ranking index get it at the start, which the run waits for (``ranking_index_wait_s``).

Two stores hold the same chunks: a SQLite file, and a database on a PostgreSQL server started for the run
(tests/postgres_server.py: Debian's PostgreSQL 15 on 127.0.0.1, fsync off as for the tests). The chunks are
bench.search_latency's (English-like text of ``--words`` words, 385 on average; for each the bag-of-words
vector FakeOpenAI would give it, 384 dimensions), written through ``FileStore.create`` + ``FileStore.complete``
as an add stores them, 1,000 a file, into each store from the same seed (then PostgreSQL's tables are
analysed, as autovacuum would have done). Query embeddings come from
FakeOpenAI in a child process on 127.0.0.1, asked once per query before timing.

Measured for every query, each side on each backend once, all in one random order:

* ``keyword``: ``FileStore.keyword_search`` for 40 candidates, as a search asks it (FTS5 and BM25 on
  SQLite; the ``tsvector`` column, its GIN index and rarity-weighted ``ts_rank`` on PostgreSQL, ranked from
  rum's index where the server has it, as the tests' server has: core/store/keywords.py);
* ``vector, exact``: ``KnowledgeBase.nearest`` (40) of a knowledge base whose channel's matrix is cached
  (the same numpy work on both: what differs is only where the vectors were read from);
* ``vector, HNSW index``: the same through the channel's usearch file (built from each store's vectors
  by the knowledge base, beside that store): candidates re-read from the database and scored exactly;
* ``keyword, common words ranked too`` (SQLite alone): the same search with every match of its any-word
  step ranked, a word held by most chunks too, as before ``KeywordIndex.searched`` left such words out;
* ``query embedding (stand-in)``: the query's embedding asked of FakeOpenAI, as a search asks it: the
  part of ``hybrid`` that is the model endpoint's, not the store's (the same server for both backends);
* ``hybrid``: ``KnowledgeBase.search`` (k=5): the keyword search and (the query's embedding, then exact
  vectors) at once, fused, then the best chunks read;
* and ``--cold`` times, the first ``nearest`` of a fresh knowledge base: the channel's vectors read
  through ``VectorReader`` (SQLite read-only connections, or psycopg connections) into the cache.

Reported: p50, p95 and the slowest of each, and PostgreSQL's over SQLite's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.common import bench_settings, forbid_non_loopback, machine, percentile, write_result
from bench.ingest import EMBEDDING_DIM, EMBEDDING_MODEL, Corpus, core_version, embedding_server
from bench.search_latency import CHANNEL, ChunkMaker, fill, make_queries, timed
from core.knowledge.base import CANDIDATES, KnowledgeBase
from core.model_client import ModelClient
from core.settings import Settings
from core.store import Store
from core.store.files import FileStore
from core.store.keywords import SEARCH_INDEX
from core.tokens import TokenCounter
from tests.postgres_server import PostgresServer

BACKENDS = ("sqlite", "postgresql")
SIDES = ("keyword", "vector, exact", "vector, HNSW index", "query embedding (stand-in)", "hybrid")
# SQLite alone: the keyword search with every match of the any-word step ranked, common words too (as before
# KeywordIndex.searched left them out; PostgreSQL has left them out since its full text came).
EVERY_MATCH = "keyword, common words ranked too"


class Backend:
    """One store with the channel's chunks, and the knowledge bases searched on it."""

    def __init__(self, name: str, store: Store, settings: Settings, models: ModelClient) -> None:
        self.name = name
        self.store = store
        self.files = FileStore(store)
        self.settings = settings
        self.models = models
        self.ranking_index_s = 0.0
        self.exact = self.knowledge(index_from=10**12)
        self.indexed = self.knowledge(index_from=1)

    def knowledge(self, index_from: int) -> KnowledgeBase:
        return KnowledgeBase(self.settings, self.store, self.models, TokenCounter(), index_from=index_from)

    async def close(self) -> None:
        await self.exact.close()
        await self.indexed.close()
        await self.store.close()


async def open_backend(
    name: str, folder: Path, url: str | None, base_url: str, models: ModelClient, cache_mb: float
) -> Backend:
    # each store its own folder (Store.open makes it): its vector index files go to folder/vectors
    settings = bench_settings(
        base_url, folder / "search.db", embedding_model=EMBEDDING_MODEL, database_url=url, vector_cache_mb=cache_mb
    )
    store = await Store.open(settings.db_path, url=url)
    start = time.perf_counter()
    await store.ranking_index_ready()  # PostgreSQL, kept chunks without rum's index yet: built now
    backend = Backend(name, store, settings, models)
    backend.ranking_index_s = time.perf_counter() - start
    return backend


def stats(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95), "max": max(values)}


async def stored_chunks(backend: Backend) -> int:
    return int(
        await backend.store.call(
            lambda db: db.execute("SELECT count(*) FROM chunks WHERE channel = ?", [CHANNEL]).fetchone()[0]
        )
    )


async def prepare(backend: Backend, chunks: int, words: int, seed: int) -> dict[str, float | None]:
    """The same chunks in every store (one seed), the exact matrix cached and the index file written."""
    fill_s: float | None = None
    held = await stored_chunks(backend)
    if held == chunks:
        print(f"{backend.name}: {chunks} chunks kept from an earlier run", flush=True)
    elif held:
        raise SystemExit(f"{backend.name} holds {held} chunks, not {chunks}: remove the --keep folder and run again")
    else:
        maker = ChunkMaker(Corpus(seed), words, EMBEDDING_DIM)
        print(f"{backend.name}: storing {chunks} chunks ...", flush=True)
        fill_s = await fill(backend.files, maker, CHANNEL, chunks, 0)
        if backend.store.url is not None:  # the statistics autovacuum would have gathered by now on a live server
            await backend.store.call(lambda db: db.execute("ANALYZE chunks, files, embeddings"))
    start = time.perf_counter()
    await backend.indexed.search(CHANNEL, "index", 5)  # no file yet: exact; starts writing the index file
    await backend.indexed.vector_indexes_settled()
    index_s = time.perf_counter() - start
    await backend.exact.search(CHANNEL, "warm", 5)
    await backend.indexed.search(CHANNEL, "warm", 5)  # opens the new file
    print(f"{backend.name}: stored in {fill_s or 0:.0f} s, index file in {index_s:.0f} s", flush=True)
    return {"store_fill_s": fill_s, "index_build_s": index_s, "ranking_index_wait_s": backend.ranking_index_s}


async def main_async(args: argparse.Namespace) -> int:
    forbid_non_loopback()
    rng = random.Random(args.seed)
    queries = [q for _, q in make_queries(Corpus(args.seed, stream=args.seed + 1000), args.queries, rng)]
    result: dict[str, Any] = {
        "benchmark": "search_backends",
        "command": ".venv/bin/python -m bench.search_backends " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "core": core_version(),
        "config": {"chunks": args.chunks, "queries": args.queries, "cold": args.cold, "words": args.words,
                   "cache_mb": args.cache_mb,
                   "dim": EMBEDDING_DIM, "candidates": CANDIDATES, "seed": args.seed},
    }  # fmt: skip
    with contextlib.ExitStack() as scope:
        tmp = (
            kept_folder(args)
            if args.keep
            else Path(scope.enter_context(tempfile.TemporaryDirectory(prefix="threadline-bench-")))
        )
        server = scope.enter_context(PostgresServer.running(tmp / "postgres-server" if args.keep else None))
        async with embedding_server(EMBEDDING_DIM) as embeddings:
            models = ModelClient(bench_settings(embeddings.base_url, tmp / "unused.db"))
            urls = {"sqlite": None, "postgresql": await asyncio.to_thread(server.database, "search_backends")}
            backends = {
                name: await open_backend(name, tmp / name, urls[name], embeddings.base_url, models, args.cache_mb)
                for name in BACKENDS
            }
            try:
                result["prepare"] = {
                    name: await prepare(b, args.chunks, args.words, args.seed) for name, b in backends.items()
                }
                result["postgres_version"] = await backends["postgresql"].store.call(
                    lambda db: db.execute("SELECT version()").fetchone()[0]
                )
                vectors = {q: (await models.embed(EMBEDDING_MODEL, [q]))[0] for q in queries}
                result.update(await measure(backends, queries, vectors, args.cold, rng))
            finally:
                for b in backends.values():
                    await b.close()
                await models.close()
    report(result)
    result["loadavg_at_end"] = os.getloadavg()
    print(f"results: {write_result('search_backends', result)}")
    return 0


def kept_folder(args: argparse.Namespace) -> Path:
    """``--keep``'s folder, refused when it holds stores made with other chunks."""
    folder = Path(args.keep)
    folder.mkdir(parents=True, exist_ok=True)
    made_with = {"chunks": args.chunks, "words": args.words, "seed": args.seed}
    recorded = folder / "made-with.json"
    if recorded.exists() and json.loads(recorded.read_text()) != made_with:
        raise SystemExit(f"{folder} holds stores made with {recorded.read_text().strip()}: use another folder")
    recorded.write_text(json.dumps(made_with))
    return folder


async def measure(
    backends: dict[str, Backend],
    queries: list[str],
    vectors: dict[str, list[float]],
    cold: int,
    rng: random.Random,
) -> dict[str, Any]:
    every_match = replace(SEARCH_INDEX, counted_from=10**12)

    def sides(b: Backend) -> dict[str, Callable[[str], Awaitable[Any]]]:
        out: dict[str, Callable[[str], Awaitable[Any]]] = {
            "keyword": lambda q: b.files.keyword_search(CHANNEL, q, CANDIDATES),
            "vector, exact": lambda q: b.exact.nearest(CHANNEL, vectors[q], CANDIDATES),
            "vector, HNSW index": lambda q: b.indexed.nearest(CHANNEL, vectors[q], CANDIDATES),
            "query embedding (stand-in)": lambda q: b.models.embed(EMBEDDING_MODEL, [q]),
            "hybrid": lambda q: b.exact.search(CHANNEL, q, 5),
        }
        if b.store.url is None:
            out[EVERY_MATCH] = lambda q: b.files.keyword_search(CHANNEL, q, CANDIDATES, index=every_match)
        return out

    runs = [(name, side, fn) for name, b in backends.items() for side, fn in sides(b).items()]
    samples: dict[str, dict[str, list[float]]] = {name: {side: [] for side in sides(b)} for name, b in backends.items()}
    found: dict[str, dict[str, int]] = {name: dict.fromkeys(sides(b), 0) for name, b in backends.items()}
    for query in queries:
        rng.shuffle(runs)
        for name, side, fn in runs:
            ms, value = await timed(functools.partial(fn, query))
            samples[name][side].append(ms)
            found[name][side] += bool(value)
    cold_ms: dict[str, list[float]] = {name: [] for name in backends}
    for i in range(cold):
        for name, b in backends.items():
            kb = b.knowledge(index_from=10**12)
            ms, _ = await timed(functools.partial(kb.nearest, CHANNEL, vectors[queries[i % len(queries)]]))
            cold_ms[name].append(ms)
            await kb.close()
    out: dict[str, Any] = {
        "sides": {name: {side: stats(v) for side, v in by_side.items()} for name, by_side in samples.items()},
        "cold_nearest_ms": {name: stats(v) for name, v in cold_ms.items()},
        "queries_that_found_something": found,
        "samples_ms": samples,
        "cold_samples_ms": cold_ms,
    }
    return out


def report(result: dict[str, Any]) -> None:
    sides, cold = result["sides"], result["cold_nearest_ms"]
    print(f"{result['config']['chunks']} chunks in one channel, {result['config']['queries']} queries, ms")
    print(f"  {'':34}{'SQLite p50':>11}{'p95':>8}{'PG p50':>9}{'p95':>8}{'PG/SQLite p50':>15}{'p95':>7}")
    rows = [(side, sides["sqlite"][side], sides["postgresql"][side]) for side in SIDES]
    rows.append(("cold: first nearest, vectors read", cold["sqlite"], cold["postgresql"]))
    for label, lite, pg in rows:
        print(
            f"  {label:34}{lite['p50']:11.2f}{lite['p95']:8.2f}{pg['p50']:9.2f}{pg['p95']:8.2f}"
            f"{pg['p50'] / lite['p50']:15.2f}{pg['p95'] / lite['p95']:7.2f}"
        )
    lite = sides["sqlite"][EVERY_MATCH]
    print(f"  {EVERY_MATCH + ', SQLite':34}{lite['p50']:11.2f}{lite['p95']:8.2f}   max {lite['max']:.2f}")
    print(
        f"  keyword max: SQLite {sides['sqlite']['keyword']['max']:.2f}, PG {sides['postgresql']['keyword']['max']:.2f}"
    )
    print(f"  queries that found something: {result['queries_that_found_something']}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Keyword and vector search, SQLite and PostgreSQL side by side.")
    parser.add_argument("--chunks", type=int, default=100_000, help="chunks in the channel (100000)")
    parser.add_argument("--queries", type=int, default=100, help="queries, half questions (100)")
    parser.add_argument("--cold", type=int, default=3, help="cold first searches per backend (3)")
    parser.add_argument("--words", type=int, default=385, help="mean words per chunk (385)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--cache-mb", type=float, default=512.0, help="THREADLINE_VECTOR_CACHE_MB (512; 1M chunks' matrix is 1.5 GB)"
    )
    parser.add_argument("--keep", metavar="DIR", help="keep the stores in DIR, and search them again in a later run")
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
