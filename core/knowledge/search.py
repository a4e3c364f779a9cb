"""Ranking: BM25 from SQLite FTS5, cosine similarity over embeddings, and reciprocal rank fusion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["VectorMatrix", "reciprocal_rank_fusion"]

RRF_K = 60


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Fuse several best-first rankings of ids: score(id) = Σ 1 / (k + rank). Best first."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))


@dataclass(frozen=True)
class VectorMatrix:
    """One channel's embeddings, unit-normalised, for brute-force cosine search."""

    ids: np.ndarray  # int64, shape (n,)
    matrix: np.ndarray  # float32, shape (n, dim)

    @classmethod
    def from_blobs(cls, ids: Sequence[int], blobs: Sequence[bytes], dim: int) -> VectorMatrix:
        if not ids or dim == 0:
            return cls(np.zeros(0, dtype=np.int64), np.zeros((0, max(dim, 1)), dtype=np.float32))
        matrix = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(ids), dim).astype(np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return cls(np.asarray(ids, dtype=np.int64), matrix / norms)

    @classmethod
    def from_array(cls, ids: np.ndarray, rows: np.ndarray) -> VectorMatrix:
        """From float32 rows the caller hands over: they are normalised in place (no copy of a large matrix)."""
        if len(ids) == 0:
            return cls(np.zeros(0, dtype=np.int64), np.zeros((0, max(rows.shape[1], 1)), dtype=np.float32))
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        rows /= norms
        return cls(np.asarray(ids, dtype=np.int64), rows)

    @property
    def nbytes(self) -> int:
        return int(self.matrix.nbytes + self.ids.nbytes)

    def top(self, query: Sequence[float], k: int) -> list[int]:
        """Ids of the ``k`` rows most similar to ``query``, best first."""
        return [chunk_id for _, chunk_id in self.top_scored(query, k)]

    def top_scored(self, query: Sequence[float], k: int) -> list[tuple[float, int]]:
        """(cosine similarity, id) of the ``k`` rows most similar to ``query``, best first."""
        if len(self.ids) == 0 or k <= 0:
            return []
        vector = np.asarray(query, dtype=np.float32)
        if vector.shape[0] != self.matrix.shape[1]:
            return []
        norm = float(np.linalg.norm(vector)) or 1.0
        scores = self.matrix @ (vector / norm)
        k = min(k, len(scores))
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best])]
        return [(float(scores[i]), int(self.ids[i])) for i in best]


def to_blob(vector: Sequence[float]) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()
