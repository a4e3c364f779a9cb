"""Vector search alone at 10k, 100k and 1M chunks: exact float32 numpy against the usearch index, with recall.

    .venv/bin/python -m bench.vector_index [--sizes 10000,100000,1000000] [--queries 200] [--threads 2]

The vectors are those of bench/search_latency.py: for each chunk the 384-dimensional bag-of-words
vector FakeOpenAI gives its text (English-like words from :class:`bench.ingest.Corpus`, 385 words on
average), and queries embedded the same way from that benchmark's questions and keywords. For each
size, in one run, on the same vectors and queries:

* ``exact``: what a channel below the index size does, ``VectorMatrix.top_scored`` (``m @ q`` on unit
  float32 rows, ``argpartition``) for 40;
* ``scan``: the index file (``ChannelIndex``, float16 in usearch) scanned whole, 80 candidates, re-scored
  exactly on their float32 rows as ``KnowledgeBase`` does (what channels up to ``SCAN_UP_TO`` get);
* ``hnsw``: the same file walked through its HNSW graph (``exact=False``), same re-scoring (above
  ``SCAN_UP_TO``);

each as the p50/p95 of one query at a time, and recall@10: the share of the exact top 10 found in the
top 10 after re-scoring. The index is built with ``--threads`` (the knowledge base itself leaves one
core free: ``BUILD_THREADS``), saved and opened as a view, as in the knowledge base. A second data set,
``clustered`` (Gaussian clusters, queries near a stored vector), shows the graph on vectors with the
structure real embeddings have; the bag-of-words vectors are nearly all alike (function words
dominate) and short queries fall far from every one of them, the hard case for a graph.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import machine, percentile, write_result
from bench.ingest import EMBEDDING_DIM, Corpus
from bench.search_latency import make_queries
from core.knowledge import vector_index
from core.knowledge.search import VectorMatrix
from core.knowledge.vector_index import ChannelIndex
from tests.fakes.openai_server import _embed, hash_word

K = 10
CANDIDATES = 40


def bag_of_words(n: int, seed: int, words: int = 385) -> np.ndarray:
    corpus = Corpus(seed)
    bucket = np.array([hash_word(str(w)) % EMBEDDING_DIM for w in corpus.words], dtype=np.int64)
    lengths = corpus.rng.integers(words // 2, words * 3 // 2, n)
    out = np.zeros((n, EMBEDDING_DIM), dtype=np.float32)
    for i in range(n):
        out[i] = np.bincount(bucket[corpus.indices(int(lengths[i]))], minlength=EMBEDDING_DIM)
    return out


def clustered(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(n // 500, 20), EMBEDDING_DIM)).astype(np.float32)
    return centres[rng.integers(0, len(centres), n)] + 0.35 * rng.standard_normal((n, EMBEDDING_DIM)).astype(np.float32)


def measure(rows: np.ndarray, queries: np.ndarray, threads: int, folder: Path) -> dict[str, Any]:
    ids = np.arange(1, len(rows) + 1, dtype=np.int64)
    matrix = VectorMatrix.from_array(ids, rows.copy())
    index = vector_index.new_index(EMBEDDING_DIM)
    start = time.perf_counter()
    vector_index.add(index, ids, rows, threads=threads)
    build_s = time.perf_counter() - start
    path = folder / f"{len(rows)}.usearch"
    vector_index.apply(index, np.zeros(0, dtype=np.int64), path)
    del index
    start = time.perf_counter()
    view = ChannelIndex.open(path)
    open_ms = (time.perf_counter() - start) * 1000
    assert view is not None
    out: dict[str, Any] = {"build_s": build_s, "open_ms": open_ms, "file_mb": path.stat().st_size / 1e6}
    times: dict[str, list[float]] = {"exact": [], "scan": [], "hnsw": []}
    recall: dict[str, list[float]] = {"scan": [], "hnsw": []}
    for q in queries:
        start = time.perf_counter()
        truth = matrix.top_scored(q, CANDIDATES)
        times["exact"].append((time.perf_counter() - start) * 1000)
        top = {i for _, i in truth[:K]}
        for mode, exact in (("scan", True), ("hnsw", False)):
            start = time.perf_counter()
            found = view.index.search(q, CANDIDATES * 2, exact=exact)
            keys = np.asarray(found.keys, dtype=np.int64)
            rescored = VectorMatrix(keys, matrix.matrix[keys - 1]).top_scored(q, CANDIDATES)
            times[mode].append((time.perf_counter() - start) * 1000)
            recall[mode].append(len(top & {i for _, i in rescored[:K]}) / K)
    for mode, values in times.items():
        out[mode] = {"p50": percentile(values, 50), "p95": percentile(values, 95), "p99": percentile(values, 99)}
        if mode in recall:
            out[mode]["recall_at_10"] = float(np.mean(recall[mode]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2, help="usearch threads building the index (2)")
    parser.add_argument("--data", default="bag-of-words,clustered")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    result: dict[str, Any] = {
        "benchmark": "vector_index",
        "command": ".venv/bin/python -m bench.vector_index " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "config": vars(args) | {"dim": EMBEDDING_DIM, "k": K, "candidates": CANDIDATES},
        "data": {},
    }
    texts = [q for _, q in make_queries(Corpus(args.seed, stream=args.seed + 1000), args.queries, random.Random(1))]
    with tempfile.TemporaryDirectory(prefix="threadline-vectors-") as tmp:
        for data in args.data.split(","):
            print(f"{data}: making {sizes[-1]} vectors ...", flush=True)
            if data == "bag-of-words":
                rows = bag_of_words(sizes[-1], args.seed)
                queries = np.array([_embed(t, EMBEDDING_DIM) for t in texts], dtype=np.float32)
            else:
                rows = clustered(sizes[-1], args.seed)
                rng = np.random.default_rng(args.seed + 1)
                picked = rows[rng.integers(0, sizes[-1], args.queries)]
                queries = picked + 0.35 * rng.standard_normal(picked.shape).astype(np.float32)
            result["data"][data] = {}
            for size in sizes:
                data_size = measure(rows[:size], queries, args.threads, Path(tmp))
                result["data"][data][str(size)] = data_size
                e, s, h = data_size["exact"], data_size["scan"], data_size["hnsw"]
                print(
                    f"  {size:>8}: exact p50/p95 {e['p50']:.2f}/{e['p95']:.2f} ms; scan {s['p50']:.2f}/{s['p95']:.2f}"
                    f" ms recall {s['recall_at_10']:.3f}; hnsw {h['p50']:.2f}/{h['p95']:.2f} ms recall"
                    f" {h['recall_at_10']:.3f}; build {data_size['build_s']:.1f} s, file {data_size['file_mb']:.0f} MB,"
                    f" open {data_size['open_ms']:.1f} ms",
                    flush=True,
                )
    print(f"results: {write_result('vector_index', result)}")


if __name__ == "__main__":
    main()
