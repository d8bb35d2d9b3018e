"""`DenseIndex`: exact inner-product search over L2-normalised float32 vectors (FAISS).

Positions are the order in which vectors were added. Results are ordered by score
descending, ties by position ascending: FAISS is asked for a few extra neighbours and
the result re-sorted; a row whose tie group may reach past what FAISS returned is
recomputed exactly with numpy.
"""

from __future__ import annotations

import numpy as np

from coldrec.retrieve import top_k

#: Extra neighbours fetched from FAISS so that ties at the k-th score can be ordered.
TIE_MARGIN = 16


def _as_matrix(vectors: np.ndarray, dim: int | None = None) -> np.ndarray:
    x = np.ascontiguousarray(np.atleast_2d(np.asarray(vectors, dtype=np.float32)))
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array of vectors, got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"vectors have dimension {x.shape[1]}, the index has {dim}")
    if not np.isfinite(x).all():
        raise ValueError("vectors contain NaN or infinite values")
    return x


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
        self._index = None
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
        import faiss

        x = self._prepare(vectors)
        if self._index is None:
            self.dim = x.shape[1]
            self._index = faiss.IndexFlatIP(self.dim)
            self._vectors = np.zeros((0, self.dim), np.float32)
        self._index.add(x)
        self._vectors = np.concatenate([self._vectors, x]) if len(self._vectors) else x
        return self

    def search(self, query_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k positions (int64) and inner products (float32) per query row."""
        if self._index is None or len(self) == 0:
            n = len(np.atleast_2d(query_vectors))
            return np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float32)
        q = self._prepare(query_vectors)
        n_items = len(self)
        k = max(0, min(int(k), n_items))
        fetch = min(k + TIE_MARGIN, n_items)
        scores, positions = self._index.search(q, fetch)
        positions = positions.astype(np.int64)
        # order by (score desc, position asc) within what FAISS returned
        order = np.lexsort((positions, -scores), axis=-1) if len(q) else np.zeros_like(positions)
        positions = np.take_along_axis(positions, order, axis=1)
        scores = np.take_along_axis(scores, order, axis=1)
        if fetch < n_items and k > 0:
            # a tie at the k-th score that runs to the last fetched neighbour may continue beyond it
            unsure = np.flatnonzero(scores[:, k - 1] <= scores[:, fetch - 1])
            if len(unsure):
                exact_pos, exact_scores = top_k(q[unsure] @ self._vectors.T, fetch)
                positions[unsure], scores[unsure] = exact_pos, exact_scores
        return positions[:, :k], scores[:, :k].astype(np.float32)

    def score(self, query_vectors: np.ndarray, item_positions) -> list[np.ndarray] | np.ndarray:
        """Inner products of each query with its candidate items (2-D array or list of arrays)."""
        q = self._prepare(query_vectors)
        if len(item_positions) != len(q):
            raise ValueError(f"{len(q)} queries but {len(item_positions)} candidate sets")
        if isinstance(item_positions, np.ndarray) and item_positions.ndim == 2:
            return np.einsum("qd,qkd->qk", q, self._vectors[item_positions]).astype(np.float32)
        return [self._vectors[np.asarray(c, np.int64)] @ q[i] for i, c in enumerate(item_positions)]
