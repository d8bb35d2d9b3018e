"""`DenseIndex`: exact inner-product search over (by default L2-normalised) float32 vectors.

A thin layer over an exact `coldrec.retrieve.index.VectorIndex`: positions are the order in which
vectors were added; results are ordered by score descending, ties by position ascending (exactly,
also when a tie group reaches past the k-th result).
"""

from __future__ import annotations

import numpy as np

from coldrec.retrieve.index import TIE_MARGIN, VectorIndex, _as_matrix

__all__ = ["TIE_MARGIN", "DenseIndex", "normalize"]


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1)).astype(np.float32)


class DenseIndex:
    """Exact maximum-inner-product (= cosine, for normalised vectors) search.

    ``normalize=True`` (default) L2-normalises added and query vectors; encoders in
    `coldrec.encode` already return normalised vectors, so it is then a no-op.
    """

    def __init__(self, dim: int | None = None, normalize: bool = True) -> None:
        self.dim = dim
        self.normalize = normalize
        self._index: VectorIndex | None = None
        self._vectors = np.zeros((0, dim or 0), np.float32)

    def __len__(self) -> int:
        return len(self._vectors)

    @property
    def vectors(self) -> np.ndarray:
        return self._vectors

    def _prepare(self, vectors: np.ndarray) -> np.ndarray:
        x = _as_matrix(vectors, self.dim)
        return normalize(x) if self.normalize else x

    def add(self, vectors: np.ndarray) -> DenseIndex:
        x = self._prepare(vectors)
        self.dim = x.shape[1]
        self._vectors = np.concatenate([self._vectors, x]) if len(self._vectors) else x
        # refitted on every add: one flat scan over all vectors, so equal vectors score exactly equal
        self._index = VectorIndex(kind="exact").fit(self._vectors)
        return self

    def search(self, query_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k positions (int64) and inner products (float32) per query row."""
        if self._index is None or len(self) == 0:
            n = len(np.atleast_2d(query_vectors))
            return np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float32)
        scores, positions = self._index.search(self._prepare(query_vectors), min(int(k), len(self)))
        return positions, scores

    def score(self, query_vectors: np.ndarray, item_positions) -> list[np.ndarray] | np.ndarray:
        """Inner products of each query with its candidate items (2-D array or list of arrays)."""
        q = self._prepare(query_vectors)
        if len(item_positions) != len(q):
            raise ValueError(f"{len(q)} queries but {len(item_positions)} candidate sets")
        if isinstance(item_positions, np.ndarray) and item_positions.ndim == 2:
            return np.einsum("qd,qkd->qk", q, self._vectors[item_positions]).astype(np.float32)
        return [self._vectors[np.asarray(c, np.int64)] @ q[i] for i, c in enumerate(item_positions)]
