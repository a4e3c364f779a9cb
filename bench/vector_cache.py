"""A cold channel's first vector search, before and after, and the vector cache under alternating channels.

    .venv/bin/python -m bench.vector_cache [--big 100000] [--a 45000] [--b 30000] [--budget-mb 100]

One SQLite store (``Store.open``), chunks written through ``FileStore.create`` + ``FileStore.complete``
(1,000 a file; short texts, the bag-of-words vectors of bench/vector_index.py, 384 dimensions).

* Cold: the first semantic search of a fresh ``KnowledgeBase`` in a channel of ``--big`` chunks.
  *Before* is what the knowledge base did until issue 18.4, each step timed: ``FileStore.vectors`` on
  the store's thread, then ``VectorMatrix.from_blobs``. *After* is ``KnowledgeBase.nearest`` (a channel
  of 50,000 chunks and more opens its index file, built beforehand as the knowledge base builds it).
  Meanwhile another channel's store call (``FileStore.in_channel``) is made every 5 ms and its
  slowest answer reported: how long the load held everyone else.
* Alternating: ``--rounds`` searches in turn in channels of ``--a`` and ``--b`` chunks (both below the
  index size, so both are matrices), with a cache budget that holds either but not both: the cache as
  built against plain LRU (the same class, every value admitted), with the loads each made.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import machine, percentile, write_result
from bench.vector_index import bag_of_words
from core.knowledge.base import KnowledgeBase
from core.knowledge.search import VectorMatrix
from core.knowledge.vector_cache import VectorCache
from core.model_client import ModelClient
from core.settings import Settings
from core.store import Store
from core.store.files import FileStore
from core.tokens import TokenCounter

MODEL = "bench-embedding"
BIG, A, B, PING = "slack:T1:BIG", "slack:T1:A", "slack:T1:B", "slack:T1:PING"


class PlainLru(VectorCache[Any]):
    """Least recently used by bytes, every value that fits admitted: the policy before issue 18.4."""

    def offer(self, key: str, version: int, value: Any, nbytes: int) -> bool:
        self._entries.pop(key, None)
        if nbytes > self.budget:
            return False
        while self._entries and self.nbytes + nbytes > self.budget:
            self._entries.popitem(last=False)
        return super().offer(key, version, value, nbytes)


async def fill(files: FileStore, channel: str, rows: np.ndarray) -> None:
    for start in range(0, len(rows), 1000):
        part = rows[start : start + 1000]
        record = await files.create(
            channel=channel, name=f"f{start}.txt", size=1, sha256=f"{channel}{start}", mime="text/plain",
            uploader_id=None, uploader_name=None, platform_file_id=None, link=None,
        )  # fmt: skip
        await files.complete(
            record.id, kind="text", pages=None, chunks=[("", f"chunk {start + i}", 3) for i in range(len(part))],
            vectors=[r.astype("<f4").tobytes() for r in part], model=MODEL, dim=part.shape[1],
        )  # fmt: skip


async def while_pinging(files: FileStore, work: Any) -> tuple[float, Any, float]:
    """(ms of ``work``, its value, slowest other-channel store call meanwhile in ms)."""
    slowest = 0.0
    done = asyncio.Event()

    async def ping() -> None:
        nonlocal slowest
        while not done.is_set():
            start = time.perf_counter()
            await files.in_channel(PING)
            slowest = max(slowest, (time.perf_counter() - start) * 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.005)

    pinger = asyncio.create_task(ping())
    start = time.perf_counter()
    value = await work()
    ms = (time.perf_counter() - start) * 1000
    done.set()
    await pinger
    return ms, value, slowest


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="threadline-cache-") as tmp:
        settings = Settings(db_path=Path(tmp) / "t.db", embedding_model=MODEL, openai_base_url="http://127.0.0.1:9/v1")
        store = await Store.open(settings.db_path)
        files = FileStore(store)
        models = ModelClient(settings)
        rows = bag_of_words(args.big + args.a + args.b, seed=1)
        query = rows[-1].tolist()
        print("storing ...", flush=True)
        await fill(files, BIG, rows[: args.big])
        await fill(files, A, rows[args.big : args.big + args.a])
        await fill(files, B, rows[args.big + args.a :])
        await store.call(lambda db: db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())

        def kb(**kwargs: Any) -> KnowledgeBase:
            return KnowledgeBase(settings, store, models, TokenCounter(), **kwargs)

        builder = kb()
        start = time.perf_counter()
        await builder.nearest(BIG, query)
        await builder.vector_indexes_settled()
        out["index_build_s"] = time.perf_counter() - start
        await builder.close()

        cold: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
        for _ in range(args.cold):

            async def before() -> Any:
                ids, blobs, dim = await files.vectors(BIG, MODEL)
                return await asyncio.to_thread(VectorMatrix.from_blobs, ids, blobs, dim)

            ms, _, held = await while_pinging(files, before)
            cold["before"].append({"ms": ms, "other_channel_store_call_max_ms": held})
            for name, exact in (("after", False), ("after, exact matrix", True)):
                fresh = kb(index_from=10**9) if exact else kb()
                ms, _, held = await while_pinging(files, lambda fresh=fresh: fresh.nearest(BIG, query))
                cold.setdefault(name, []).append({"ms": ms, "other_channel_store_call_max_ms": held})
                await fresh.close()
        out["cold"] = {
            name: {
                "median_ms": statistics.median(r["ms"] for r in runs),
                "other_channel_store_call_max_ms": max(r["other_channel_store_call_max_ms"] for r in runs),
                "runs": runs,
            }
            for name, runs in cold.items()
        }
        for name, data in out["cold"].items():
            print(
                f"cold {args.big} chunks, {name}: median {data['median_ms']:.0f} ms; another channel's store call"
                f" waited at most {data['other_channel_store_call_max_ms']:.0f} ms",
                flush=True,
            )

        out["alternating"] = {}
        budget = int(args.budget_mb * 1024 * 1024)
        for name, cache in (("as built", VectorCache[Any](budget)), ("plain LRU", PlainLru(budget))):
            searcher = kb()
            searcher._vectors = cache  # the policy under test; everything else as built
            times: list[float] = []
            for i in range(args.rounds):
                start = time.perf_counter()
                await searcher.nearest(A if i % 2 == 0 else B, query)
                times.append((time.perf_counter() - start) * 1000)
            loads = searcher._reader.loads
            await searcher.close()
            out["alternating"][name] = {
                "loads": loads,
                "p50_ms": percentile(times, 50),
                "p95_ms": percentile(times, 95),
                "mean_ms": statistics.fmean(times),
                "samples_ms": times,
            }
            print(
                f"alternating {args.a}/{args.b} chunks, budget {args.budget_mb:g} MB, {name}: {loads} loads in"
                f" {args.rounds} searches, p50 {percentile(times, 50):.1f} ms, p95 {percentile(times, 95):.1f} ms",
                flush=True,
            )
        await models.close()
        await store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--a", type=int, default=45_000)
    parser.add_argument("--b", type=int, default=30_000)
    parser.add_argument("--budget-mb", type=float, default=100.0)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--cold", type=int, default=3)
    args = parser.parse_args()
    result = {
        "benchmark": "vector_cache",
        "command": ".venv/bin/python -m bench.vector_cache " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "config": vars(args),
        **asyncio.run(main_async(args)),
    }
    print(f"results: {write_result('vector_cache', result)}")


if __name__ == "__main__":
    main()
