"""A large channel's vector index: usearch, in a file beside the database, memory-mapped to search.

Below :data:`INDEX_FROM` chunks a channel's float32 matrix is searched exactly (core/knowledge/search.py).
From there on its vectors also go into a usearch index (float16 copies of the unit vectors, with an
HNSW graph over them) saved as ``<folder of THREADLINE_DB>/vectors/<hash of key and model>.usearch``
and opened as a view: the file is mapped, not read, so a cold channel is searchable in milliseconds
and its pages are the operating system's cache, not this process's memory. Up to
:data:`SCAN_UP_TO` chunks the view is scanned whole (SIMD float16, recall ≈ 1); above, the HNSW graph
is walked (recall 0.985 at 1M on clustered vectors, BENCHMARKS.md 4.1). Either way the index only
proposes candidates: the caller keeps those still in the database and scores them exactly on their
float32 vectors (core/knowledge/base.py), so a chunk removed since the file was written is never
returned and every score is exact.

Files are kept in step incrementally (:func:`diff`, :func:`apply`): keys of new chunks added, keys of
removed ones dropped, the file replaced atomically; a search still holding the old view keeps it.
Every function here is CPU or disk work for a worker thread, never for the event loop.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from usearch.index import Index

__all__ = [
    "BUILD_THREADS",
    "INDEX_FROM",
    "SCAN_UP_TO",
    "ChannelIndex",
    "add",
    "apply",
    "delete",
    "diff",
    "index_path",
    "new_index",
    "open_for_update",
]

_log = logging.getLogger(__name__)

INDEX_FROM = 50_000  # chunks from which a channel gets an index file (BENCHMARKS.md, section 4)
# Up to this many vectors the index is scanned whole rather than walked: only an index smaller than any
# channel gets one at (tests' small ones). Measured (BENCHMARKS.md 4.1, clustered vectors): the HNSW walk
# keeps recall@10 at 0.998 at 100k and 0.985 at 1M and is 18x and 29x faster than exact at p50, while a
# whole scan is slower than numpy's exact search at every size (12.99 vs 10.56 ms at 100k).
SCAN_UP_TO = 50_000
CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 256
# Index building is CPU work: one core is left to the event loop and the store.
BUILD_THREADS = max(1, (os.cpu_count() or 2) - 1)


def index_path(folder: Path, key: str, model: str) -> Path:
    """Where the index of knowledge base ``key``'s embeddings from ``model`` lives."""
    digest = hashlib.sha256(f"{key}\0{model}".encode()).hexdigest()[:32]
    return folder / f"{digest}.usearch"


def new_index(dim: int) -> Index:
    return Index(
        ndim=dim,
        metric="cos",
        dtype="f16",
        connectivity=CONNECTIVITY,
        expansion_add=EXPANSION_ADD,
        expansion_search=EXPANSION_SEARCH,
    )


@dataclass(frozen=True)
class ChannelIndex:
    """A saved index opened for searching: a read-only view of its file."""

    index: Index
    path: Path

    @classmethod
    def open(cls, path: Path) -> ChannelIndex | None:
        """The view of the file at ``path``; None when there is none (or it cannot be read)."""
        if not path.is_file():
            return None
        try:
            index = Index.restore(str(path), view=True)
        except Exception:
            _log.warning("the vector index %s could not be opened; it will be rebuilt", path, exc_info=True)
            return None
        if index is None:
            return None
        index.expansion_search = EXPANSION_SEARCH  # type: ignore[misc]  # a setter usearch defines after the getter
        return cls(index, path)

    @property
    def nbytes(self) -> int:
        """This process's memory for it (the mapped file is the page cache's)."""
        return int(self.index.memory_usage)

    @property
    def dim(self) -> int:
        return int(self.index.ndim)

    def __len__(self) -> int:
        return len(self.index)

    def candidates(self, vector: np.ndarray, count: int) -> np.ndarray:
        """Keys (int64) of about the ``count`` nearest vectors to ``vector``, nearest first."""
        if len(self.index) == 0 or count <= 0:
            return np.zeros(0, dtype=np.int64)
        exact = len(self.index) <= SCAN_UP_TO
        matches = self.index.search(vector.astype(np.float32), min(count, len(self.index)), exact=exact)
        return np.asarray(matches.keys, dtype=np.int64)


def open_for_update(path: Path, dim: int) -> Index:
    """The index at ``path`` loaded to change it, or a new empty one (none yet, another dim, unreadable)."""
    if path.is_file():
        try:
            index = Index.restore(str(path))
            if index is not None and int(index.ndim) == dim:
                return index
        except Exception:
            _log.warning("the vector index %s could not be read; building it again", path, exc_info=True)
    return new_index(dim)


def diff(index: Index, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keys to add, keys to remove) for ``index`` to hold exactly the ids ``wanted``."""
    have = np.asarray(index.keys, dtype=np.int64) if len(index) else np.zeros(0, dtype=np.int64)
    return np.setdiff1d(wanted, have, assume_unique=True), np.setdiff1d(have, wanted, assume_unique=True)


def add(index: Index, ids: np.ndarray, rows: np.ndarray, threads: int = BUILD_THREADS) -> None:
    if len(ids):
        index.add(ids.astype(np.uint64), rows, threads=threads)


def apply(index: Index, remove: np.ndarray, path: Path) -> None:
    """Remove ``remove`` from ``index`` and save it over ``path`` (a new file renamed into place)."""
    if len(remove):
        index.remove(remove.astype(np.uint64))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    try:
        index.save(str(partial))
        os.replace(partial, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def delete(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
