"""Candidate retrieval: a lexical (BM25) index, a vector index (FAISS: exact or IVF, with live updates)
and an exact dense index over it.

`BM25Index` and `DenseIndex` return ``(positions int64 (n_queries, k), scores float32 (n_queries, k))`` with
scores descending and ties broken by item position ascending; `VectorIndex.search` returns FAISS's
order, ``(scores, positions)``, ordered the same way. Submodules are
imported lazily, so ``import coldrec.retrieve`` does not load FAISS or jieba.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from coldrec._lazy import lazy_exports

_EXPORTS = {"BM25Index": ".lexical", "tokenize": ".lexical", "DenseIndex": ".dense", "VectorIndex": ".index"}
__all__ = ["top_k", "BM25Index", "tokenize", "DenseIndex", "VectorIndex"]  # top_k and what _EXPORTS names

if TYPE_CHECKING:
    from .dense import DenseIndex
    from .index import VectorIndex
    from .lexical import BM25Index, tokenize


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of each row of a dense (n, n_items) score matrix.

    Scores descending, ties by position ascending (NaN ranks last). ``k`` larger than
    the row length returns the whole row, ordered.
    """
    from coldrec.retrieve.ranking import top_n

    return top_n(np.atleast_2d(np.asarray(scores, dtype=np.float32)), int(k))


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
